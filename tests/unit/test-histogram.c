/* Unit tests for the log-linear histogram: the 1% error bound against sorted exact
 * values over 1 us .. 60 s, exact extremes and moments, merge, edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>

#include "analysis/histogram.h"

#define N 200000

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64*: deterministic, so a failure reproduces */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double rel_err(uint64_t got, uint64_t want)
{
	return fabs((double)got - (double)want) / (double)want;
}

static void test_error_bound(void **state)
{
	static const double ps[] = { 0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99 };
	uint64_t *v = malloc(N * sizeof(*v));
	struct co_histogram *h = co_histogram_new();
	long double sum = 0, sumsq = 0;
	double worst = 0;

	/* log-uniform from 1 us to 60 s */
	for (size_t i = 0; i < N; i++) {
		double u = (double)(rng() >> 11) / 9007199254740992.0;

		v[i] = (uint64_t)(1e3 * pow(6e7, u));
		co_histogram_record(h, v[i]);
		sum += v[i];
		sumsq += (long double)v[i] * v[i];
	}
	qsort(v, N, sizeof(*v), cmp_u64);
	assert_int_equal(co_histogram_count(h), N);
	assert_int_equal(co_histogram_min(h), v[0]);
	assert_int_equal(co_histogram_max(h), v[N - 1]);
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
		size_t rank = (size_t)ceil(ps[i] / 100.0 * N);
		double e = rel_err(co_histogram_percentile(h, ps[i]), v[rank - 1]);

		if (e > worst)
			worst = e;
		assert_true(e <= 0.01);
	}
	/* every rank, not only the usual percentiles */
	for (size_t rank = 1; rank <= N; rank += 97) {
		double p = 100.0 * (double)rank / N;
		size_t r = (size_t)ceil(p / 100.0 * N);
		double e = rel_err(co_histogram_percentile(h, p), v[r - 1]);

		if (e > worst)
			worst = e;
		assert_true(e <= 0.01);
	}
	print_message("worst relative error %.4f%%\n", worst * 100);
	assert_true(fabs(co_histogram_mean(h) - (double)(sum / N)) <
		    1e-9 * (double)(sum / N));
	{
		long double m = sum / N;
		double sd = sqrt((double)(sumsq / N - m * m));

		assert_true(fabs(co_histogram_stddev(h) - sd) < 1e-6 * sd);
	}
	co_histogram_free(h);
	free(v);
}

static void test_single_values(void **state)
{
	struct co_histogram *h = co_histogram_new();

	/* one value at a time, across bucket boundaries: p50 within 1% of it */
	for (uint64_t base = 1000; base <= 60000000000ull; base *= 2)
		for (int d = -2; d <= 2; d++) {
			uint64_t x = base + (uint64_t)(int64_t)d;

			co_histogram_reset(h);
			co_histogram_record(h, x);
			co_histogram_record(h, x);
			co_histogram_record(h, x + x / 200);  /* +0.5% */
			assert_true(rel_err(co_histogram_percentile(h, 50), x) <= 0.01);
		}
	/* small values are exact */
	co_histogram_reset(h);
	for (uint64_t x = 0; x < 256; x++)
		co_histogram_record(h, x);
	for (uint64_t x = 1; x < 256; x++)
		assert_int_equal(co_histogram_percentile(h, 100.0 * (double)(x + 1) / 256),
				 x);
	co_histogram_free(h);
}

static void test_merge_and_edges(void **state)
{
	struct co_histogram *a = co_histogram_new(), *b = co_histogram_new();
	struct co_histogram *all = co_histogram_new();

	assert_int_equal(co_histogram_percentile(a, 99), 0);
	assert_int_equal(co_histogram_min(a), 0);
	assert_true(co_histogram_mean(a) == 0.0);
	co_histogram_merge(a, b);   /* empty into empty */
	assert_int_equal(co_histogram_count(a), 0);
	for (uint64_t i = 1; i <= 10000; i++) {
		uint64_t x = i * 7919 % 100000 * 1000 + 500;

		co_histogram_record(i % 3 ? a : b, x);
		co_histogram_record(all, x);
	}
	co_histogram_merge(a, b);
	assert_int_equal(co_histogram_count(a), co_histogram_count(all));
	assert_int_equal(co_histogram_min(a), co_histogram_min(all));
	assert_int_equal(co_histogram_max(a), co_histogram_max(all));
	for (double p = 1; p < 100; p += 7)
		assert_int_equal(co_histogram_percentile(a, p),
				 co_histogram_percentile(all, p));
	assert_true(fabs(co_histogram_mean(a) - co_histogram_mean(all)) < 1e-6);
	/* a huge value is clamped into the last bucket but max stays exact */
	co_histogram_record(b, UINT64_MAX / 2);
	assert_int_equal(co_histogram_max(b), UINT64_MAX / 2);
	assert_int_equal(co_histogram_percentile(b, 100), UINT64_MAX / 2);
	co_histogram_record_n(b, 5000, 0);
	co_histogram_free(a);
	co_histogram_free(b);
	co_histogram_free(all);
	co_histogram_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_bound),
		cmocka_unit_test(test_single_values),
		cmocka_unit_test(test_merge_and_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
