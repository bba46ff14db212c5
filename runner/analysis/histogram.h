/*
 * co_histogram: a log-linear (HDR-style) latency histogram.
 *
 * Values are nanoseconds. Below 256 ns every value has its own bucket; above, each
 * power-of-two range is split into 128 equal sub-buckets, so a bucket is never wider
 * than 1/128 of its lower bound. Percentiles report the bucket midpoint (clamped to
 * the exact min and max), which bounds the relative error by 1/256 (0.4%), well under
 * 1% over the whole range the project needs (1 us to 60 s; values up to about 18
 * minutes are kept, larger ones are clamped to the last bucket).
 *
 * Memory is fixed (one array of counters, about 35 KiB), recording is O(1) with no
 * allocation, and two histograms merge by adding counters, so each load generator
 * thread keeps its own and the results are merged at the end. Not thread-safe: one
 * writer at a time.
 */
#ifndef CO_ANALYSIS_HISTOGRAM_H
#define CO_ANALYSIS_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

struct co_histogram;

/* Allocation aborts on failure (see base/buf.h), so new never fails. */
struct co_histogram *co_histogram_new(void);
void co_histogram_free(struct co_histogram *h);   /* takes NULL */
void co_histogram_reset(struct co_histogram *h);

/* Record one value (ns). O(1). */
void co_histogram_record(struct co_histogram *h, uint64_t ns);
/* Record the same value count times. */
void co_histogram_record_n(struct co_histogram *h, uint64_t ns, uint64_t count);

/* dst += src (counts, min, max, sums). */
void co_histogram_merge(struct co_histogram *dst, const struct co_histogram *src);

uint64_t co_histogram_count(const struct co_histogram *h);
/* Exact extremes; 0 when empty. */
uint64_t co_histogram_min(const struct co_histogram *h);
uint64_t co_histogram_max(const struct co_histogram *h);
/* Exact mean and population standard deviation (ns); 0 when empty. */
double co_histogram_mean(const struct co_histogram *h);
double co_histogram_stddev(const struct co_histogram *h);
/*
 * The value at percentile p (0 < p <= 100): the smallest recorded value v such that
 * at least p% of the values are <= v, within the error bound above. 0 when empty;
 * p <= 0 gives the min, p >= 100 the max.
 */
uint64_t co_histogram_percentile(const struct co_histogram *h, double p);

#endif
