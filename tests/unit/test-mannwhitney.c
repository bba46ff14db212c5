/*
 * Unit tests for the Mann-Whitney U test: literal results of R's wilcox.test for fixed
 * vectors, and random samples with ties checked against a second, deliberately naive
 * O(n^2) implementation written here from the textbook definitions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/mannwhitney.h"

/* ---- the naive reference ---- */

/* Mid-rank of v among all n + m values: #less + (#equal + 1) / 2. O(N) per value. */
static double naive_rank(double v, const double *a, size_t na, const double *b, size_t nb)
{
	double less = 0, equal = 0;

	for (size_t i = 0; i < na; i++) {
		less += a[i] < v;
		equal += a[i] == v;
	}
	for (size_t i = 0; i < nb; i++) {
		less += b[i] < v;
		equal += b[i] == v;
	}
	return less + (equal + 1) / 2;
}

/* Standardised, tie- and continuity-corrected statistic of (x - d, y). */
static double naive_w(const double *x, size_t n, const double *y, size_t m, double d,
		      int correct)
{
	double *xd = malloc(n * sizeof(*xd)), rx = 0, ties = 0, dz, s, nd = (double)n,
	       md = (double)m, td = nd + md;

	for (size_t i = 0; i < n; i++)
		xd[i] = x[i] - d;
	for (size_t i = 0; i < n; i++)
		rx += naive_rank(xd[i], xd, n, y, m);
	/* tie term: each value contributes (t^2 - 1) where t is its group size, which
	 * sums to t^3 - t per group */
	for (size_t i = 0; i < n + m; i++) {
		double v = i < n ? xd[i] : y[i - n], t = 0;

		for (size_t j = 0; j < n; j++)
			t += xd[j] == v;
		for (size_t j = 0; j < m; j++)
			t += y[j] == v;
		ties += t * t - 1;
	}
	free(xd);
	dz = rx - nd * (nd + 1) / 2 - nd * md / 2;
	s = sqrt(nd * md / 12 * ((td + 1) - ties / (td * (td - 1))));
	return (dz - (correct ? (dz > 0 ? 0.5 : dz < 0 ? -0.5 : 0) : 0)) / s;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

struct naive {
	double u, p, est, lo, hi;
};

/* The confidence limit where W crosses zq: scan the sorted pairwise differences and
 * pick the jump whose left side is above zq and right side below (R's convention
 * for limits beyond the range returns the range's ends). */
static double naive_limit(const double *x, size_t n, const double *y, size_t m,
			  const double *diffs, size_t k, double zq)
{
	if (naive_w(x, n, y, m, diffs[0], 1) - zq <= 0)
		return diffs[0];
	if (naive_w(x, n, y, m, diffs[k - 1], 1) - zq >= 0)
		return diffs[k - 1];
	for (size_t i = 0; i + 1 < k; i++) {
		double mid;

		if (diffs[i + 1] == diffs[i])
			continue;
		mid = (diffs[i] + diffs[i + 1]) / 2;
		if (naive_w(x, n, y, m, mid, 1) < zq)
			return diffs[i]; /* W steps below zq at this difference */
	}
	return diffs[k - 1];
}

static void naive_test(struct naive *r, const double *x, size_t n, const double *y,
		       size_t m, double conf)
{
	size_t k = n * m;
	double *diffs = malloc(k * sizeof(*diffs)), zq = co_mw_qnorm(1 - (1 - conf) / 2);

	r->u = 0;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < m; j++) {
			r->u += x[i] > y[j] ? 1 : x[i] == y[j] ? 0.5 : 0;
			diffs[i * m + j] = x[i] - y[j];
		}
	qsort(diffs, k, sizeof(*diffs), cmp_d);
	r->est = k % 2 ? diffs[k / 2] : (diffs[k / 2 - 1] + diffs[k / 2]) / 2;
	r->p = 2 * fmin(co_mw_pnorm(naive_w(x, n, y, m, 0, 1)),
			1 - co_mw_pnorm(naive_w(x, n, y, m, 0, 1)));
	r->lo = naive_limit(x, n, y, m, diffs, k, zq);
	r->hi = naive_limit(x, n, y, m, diffs, k, -zq);
	free(diffs);
}

/* ---- tests ---- */

static void test_qnorm(void **state)
{
	assert_true(fabs(co_mw_qnorm(0.975) - 1.959963984540054) < 1e-12);
	assert_true(fabs(co_mw_qnorm(0.99) - 2.326347874040841) < 1e-12);
	assert_true(fabs(co_mw_qnorm(0.01) + 2.326347874040841) < 1e-12);
	assert_true(fabs(co_mw_qnorm(0.5)) < 1e-15);
	assert_true(fabs(co_mw_qnorm(1e-10) + 6.361340902404056) < 1e-9);
	for (double p = 0.001; p < 1; p += 0.0137)
		assert_true(fabs(co_mw_pnorm(co_mw_qnorm(p)) - p) < 1e-14);
}

/*
 * Hollander & Wolfe (1973), p. 69f, the example in R's ?wilcox.test:
 *   x <- c(0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46)
 *   y <- c(1.15, 0.88, 0.90, 0.74, 1.21)
 * R documents the large-sample one-sided p of W = 35 as 0.1103 (correct = FALSE).
 * wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE) gives W = 35,
 * p-value = 0.2446, 95 percent CI -0.15 0.76. R is not installed on the build
 * machines, so the digits beyond those were computed with an independent
 * transcription of stats:::wilcox.test.default's asymptotic branch (Python, bisection
 * in place of uniroot); R's uniroot(tol = 1e-4) agrees within 1e-4, hence the
 * tolerance on interval ends. The estimate there is a root of W(d) = 0 which is
 * the Hodges-Lehmann median only when n*m is odd; n*m = 50 here, so the estimate is
 * checked as the median of differences: 0.305.
 */
static void test_r_hollander_wolfe(void **state)
{
	static const double x[] = { 0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73,
				    1.46 };
	static const double y[] = { 1.15, 0.88, 0.90, 0.74, 1.21 };
	struct co_mw_opts o = { .conf_level = 0.95 };
	struct co_mw_result r;

	assert_int_equal(co_mw_test(&r, x, 10, y, 5, &o, NULL), 0);
	assert_true(r.u == 35);
	assert_true(fabs(r.p_value - 0.24462360512698) < 1e-9);
	assert_true(fabs(r.ci_low - -0.15) < 1e-4);
	assert_true(fabs(r.ci_high - 0.76) < 1e-4);
	assert_true(fabs(r.estimate - 0.305) < 1e-12);
	o.no_correct = 1;
	assert_int_equal(co_mw_test(&r, x, 10, y, 5, &o, NULL), 0);
	assert_true(fabs(r.p_value / 2 - 0.1103) < 5e-5); /* H&W's one-sided figure */
	assert_true(fabs(r.p_value - 0.22067136191985) < 1e-9);
}

/*
 * Ties in y, n*m = 81 (odd, so R's asymptotic estimate is the Hodges-Lehmann median):
 *   x <- c(1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30)
 *   y <- c(0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29)
 *   wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE, conf.level=0.98)
 *     W = 58, p-value = 0.1329, 98 percent CI -0.560 1.233, estimate 0.56
 *   ... conf.level=0.95: CI -0.370 1.183
 * Values from the same independent transcription of R's algorithm as above.
 */
static void test_r_ties(void **state)
{
	static const double x[] = { 1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30 };
	static const double y[] = { 0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14,
				    1.29 };
	struct co_mw_result r;
	struct co_mw_opts o95 = { .conf_level = 0.95 };

	assert_int_equal(co_mw_test(&r, x, 9, y, 9, NULL, NULL), 0);
	assert_true(r.conf_level == 0.98);
	assert_true(r.u == 58);
	assert_true(fabs(r.z - 1.502688234205555) < 1e-12);
	assert_true(fabs(r.p_value - 0.1329194581853188) < 1e-12);
	assert_true(fabs(r.estimate - 0.56) < 1e-12);
	assert_true(fabs(r.ci_low - -0.56) < 1e-4);
	assert_true(fabs(r.ci_high - 1.233) < 1e-4);
	assert_int_equal(co_mw_test(&r, x, 9, y, 9, &o95, NULL), 0);
	assert_true(fabs(r.ci_low - -0.37) < 1e-4);
	assert_true(fabs(r.ci_high - 1.183) < 1e-4);
}

/*
 * Kayenta's own MannWhitney test case (experiment 10,20,30,40 against control
 * 1,2,3,4 at 95%): interval 6 .. 39 (both ends clamp to the range of differences)
 * and the Hodges-Lehmann estimate 22.5.
 */
static void test_kayenta_case(void **state)
{
	static const double x[] = { 10, 20, 30, 40 }, y[] = { 1, 2, 3, 4 };
	struct co_mw_opts o = { .conf_level = 0.95 };
	struct co_mw_result r;

	assert_int_equal(co_mw_test(&r, x, 4, y, 4, &o, NULL), 0);
	assert_true(r.ci_low == 6);
	assert_true(r.ci_high == 39);
	assert_true(r.estimate == 22.5);
	assert_true(r.u == 16);
	assert_true(fabs(r.p_value - 0.03038282197657738) < 1e-12);
}

static uint64_t lcg_state;

static double lcg_uniform(void)
{
	lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(lcg_state >> 11) / 9007199254740992.0;
}

/* Random samples with plenty of ties (values on a 0.1 grid) against the naive code. */
static void test_against_naive(void **state)
{
	static const size_t sizes[][2] = { { 5, 7 },   { 12, 12 }, { 21, 21 }, { 30, 9 },
					   { 1, 10 },  { 40, 33 }, { 8, 3 },   { 17, 25 } };
	double x[64], y[64];

	lcg_state = 42;
	for (int it = 0; it < 40; it++) {
		size_t n = sizes[it % 8][0], m = sizes[it % 8][1];
		double shift = (it % 5 - 2) * 0.7, conf = it % 2 ? 0.95 : 0.98;
		struct co_mw_opts o = { .conf_level = conf };
		struct co_mw_result r;
		struct naive ref;

		for (size_t i = 0; i < n; i++)
			x[i] = round(lcg_uniform() * 50) / 10 + shift;
		for (size_t i = 0; i < m; i++)
			y[i] = round(lcg_uniform() * 50) / 10;
		assert_int_equal(co_mw_test(&r, x, n, y, m, &o, NULL), 0);
		naive_test(&ref, x, n, y, m, conf);
		assert_true(r.n_x == n && r.n_y == m);
		assert_true(r.u == ref.u);
		assert_true(fabs(r.p_value - ref.p) < 1e-12);
		assert_true(fabs(r.estimate - ref.est) < 1e-12);
		assert_true(fabs(r.ci_low - ref.lo) < 1e-9);
		assert_true(fabs(r.ci_high - ref.hi) < 1e-9);
		assert_true(r.ci_low <= r.estimate && r.estimate <= r.ci_high);
	}
}

/* Continuous samples (no ties), larger, one of them shifted: the interval must
 * exclude zero and the p-value be tiny; the naive code agrees. */
static void test_shifted_continuous(void **state)
{
	double x[50], y[50];
	struct co_mw_result r;
	struct naive ref;

	lcg_state = 7;
	for (int i = 0; i < 50; i++) {
		x[i] = 1.5 + lcg_uniform();
		y[i] = 1.0 + lcg_uniform();
	}
	assert_int_equal(co_mw_test(&r, x, 50, y, 50, NULL, NULL), 0);
	naive_test(&ref, x, 50, y, 50, 0.98);
	assert_true(r.p_value < 1e-6);
	assert_true(r.ci_low > 0);
	assert_true(fabs(r.estimate - ref.est) < 1e-12);
	assert_true(fabs(r.ci_low - ref.lo) < 1e-9);
	assert_true(fabs(r.ci_high - ref.hi) < 1e-9);
	assert_true(fabs(r.estimate - 0.5) < 0.15);
}

static void test_nan_and_errors(void **state)
{
	static const double x[] = { NAN, 3, 4, NAN, 5 }, y[] = { 1, NAN, 2, 3 };
	static const double xc[] = { 3, 4, 5 }, yc[] = { 1, 2, 3 };
	static const double nans[] = { NAN, NAN }, same[] = { 2, 2, 2 };
	static const double inf[] = { 1, INFINITY };
	struct co_mw_result r, rc, untouched;
	struct co_error err = CO_ERROR_INIT;
	struct co_mw_opts bad = { .conf_level = 1.5 };

	assert_int_equal(co_mw_test(&r, x, 5, y, 4, NULL, NULL), 0);
	assert_int_equal(co_mw_test(&rc, xc, 3, yc, 3, NULL, NULL), 0);
	assert_true(r.n_x == 3 && r.n_y == 3);
	assert_memory_equal(&r, &rc, sizeof(r));

	memset(&untouched, 0x5a, sizeof(untouched));
	r = untouched;
	assert_int_equal(co_mw_test(&r, nans, 2, y, 4, NULL, &err), -ENODATA);
	assert_string_equal(err.msg, "no values in the candidate sample");
	assert_int_equal(co_mw_test(&r, x, 5, nans, 0, NULL, &err), -ENODATA);
	assert_int_equal(co_mw_test(&r, same, 3, same, 2, NULL, &err), -EDOM);
	assert_string_equal(err.msg, "all 5 observations are tied");
	assert_int_equal(co_mw_test(&r, inf, 2, y, 4, NULL, &err), -EDOM);
	assert_int_equal(co_mw_test(&r, x, 5, y, 4, &bad, &err), -EINVAL);
	assert_memory_equal(&r, &untouched, sizeof(r));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_qnorm),
		cmocka_unit_test(test_r_hollander_wolfe),
		cmocka_unit_test(test_r_ties),
		cmocka_unit_test(test_kayenta_case),
		cmocka_unit_test(test_against_naive),
		cmocka_unit_test(test_shifted_continuous),
		cmocka_unit_test(test_nan_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
