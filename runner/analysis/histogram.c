/*
 * The log-linear histogram. Index layout: values below 2*SUB (256) map to themselves;
 * a larger value v with highest set bit b (b >= 8) is shifted right by s = b - 7 so the
 * top 8 bits remain (128..255), and lands at index (s + 1) * SUB + (top - SUB). Each
 * shift level therefore owns SUB consecutive counters, the bucket width at level s is
 * 2^s and its lower bound is at least SUB * 2^s: relative width <= 1/128.
 *
 * Mean and standard deviation come from exact running sums (long double for the sum
 * of squares, so 10^9 samples of a minute do not lose the variance), not from the
 * buckets.
 */
#include "analysis/histogram.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)        /* sub-buckets per power of two */
#define MAX_SHIFT 33                /* values up to 2^41 ns (~36 min) */
#define NBUCKETS ((MAX_SHIFT + 2) * SUB)

struct co_histogram {
	uint64_t total;
	uint64_t min;
	uint64_t max;
	long double sum;
	long double sumsq;
	uint64_t counts[NBUCKETS];
};

static unsigned bucket_index(uint64_t v)
{
	unsigned b, s;

	if (v < 2 * SUB)
		return (unsigned)v;
	b = 63u - (unsigned)__builtin_clzll(v);
	s = b - SUB_BITS;
	if (s > MAX_SHIFT)
		return NBUCKETS - 1;
	return (s + 1) * SUB + (unsigned)((v >> s) - SUB);
}

/* Lowest value and width of the bucket at index i. */
static void bucket_range(unsigned i, uint64_t *ret_low, uint64_t *ret_width)
{
	unsigned s;

	if (i < 2 * SUB) {
		*ret_low = i;
		*ret_width = 1;
		return;
	}
	s = i / SUB - 1;
	*ret_low = ((uint64_t)(i % SUB) + SUB) << s;
	*ret_width = (uint64_t)1 << s;
}

struct co_histogram *co_histogram_new(void)
{
	struct co_histogram *h = co_malloc(sizeof(*h));

	co_histogram_reset(h);
	return h;
}

void co_histogram_free(struct co_histogram *h)
{
	free(h);
}

void co_histogram_reset(struct co_histogram *h)
{
	memset(h, 0, sizeof(*h));
}

void co_histogram_record_n(struct co_histogram *h, uint64_t ns, uint64_t count)
{
	if (!count)
		return;
	if (h->total == 0 || ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
	h->total += count;
	h->sum += (long double)ns * count;
	h->sumsq += (long double)ns * ns * count;
	h->counts[bucket_index(ns)] += count;
}

void co_histogram_record(struct co_histogram *h, uint64_t ns)
{
	co_histogram_record_n(h, ns, 1);
}

void co_histogram_merge(struct co_histogram *dst, const struct co_histogram *src)
{
	if (!src->total)
		return;
	if (dst->total == 0 || src->min < dst->min)
		dst->min = src->min;
	if (src->max > dst->max)
		dst->max = src->max;
	dst->total += src->total;
	dst->sum += src->sum;
	dst->sumsq += src->sumsq;
	for (unsigned i = 0; i < NBUCKETS; i++)
		dst->counts[i] += src->counts[i];
}

uint64_t co_histogram_count(const struct co_histogram *h)
{
	return h->total;
}

uint64_t co_histogram_min(const struct co_histogram *h)
{
	return h->total ? h->min : 0;
}

uint64_t co_histogram_max(const struct co_histogram *h)
{
	return h->max;
}

double co_histogram_mean(const struct co_histogram *h)
{
	return h->total ? (double)(h->sum / h->total) : 0.0;
}

double co_histogram_stddev(const struct co_histogram *h)
{
	long double mean, var;

	if (!h->total)
		return 0.0;
	mean = h->sum / h->total;
	var = h->sumsq / h->total - mean * mean;
	return var > 0 ? sqrt((double)var) : 0.0;
}

uint64_t co_histogram_percentile(const struct co_histogram *h, double p)
{
	uint64_t rank, seen = 0, low, width, v;

	if (!h->total)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	rank = (uint64_t)ceil(p / 100.0 * (double)h->total);
	if (rank < 1)
		rank = 1;
	for (unsigned i = 0; i < NBUCKETS; i++) {
		seen += h->counts[i];
		if (seen < rank)
			continue;
		bucket_range(i, &low, &width);
		v = low + width / 2;
		if (v < h->min)
			v = h->min;
		if (v > h->max)
			v = h->max;
		return v;
	}
	return h->max;
}
