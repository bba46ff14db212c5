/*
 * The Mann-Whitney U test (Wilcoxon rank-sum test) of two samples, as canary judges
 * use it: does the candidate's sample x sit higher or lower than the baseline's
 * sample y, and by how much?
 *
 * Semantics follow R's wilcox.test(x, y, conf.int = TRUE, exact = FALSE,
 * correct = TRUE) and Kayenta's judge built on it: mid-ranks for ties, the normal
 * approximation with tie correction of the variance and a continuity correction,
 * a two-sided p-value; the Hodges-Lehmann shift estimate (the median of all pairwise
 * differences x_i - y_j) and its confidence interval, found by root-finding on the
 * standardised statistic of (x - d, y) as a function of the shift d. NaN values are
 * removed from both samples first.
 *
 * Pure functions: no allocation survives a call, no global state.
 */
#ifndef CO_ANALYSIS_MANNWHITNEY_H
#define CO_ANALYSIS_MANNWHITNEY_H

#include <stddef.h>

#include "base/error.h"

#define CO_MW_DEFAULT_CONF_LEVEL 0.98
/* Bound on each sample so the O(n log n) work per root-finding step stays small. */
#define CO_MW_MAX_SAMPLES 1000000

struct co_mw_opts {
	double conf_level;   /* in (0, 1); 0 = CO_MW_DEFAULT_CONF_LEVEL */
	int no_correct;      /* 1 = no continuity correction (R's correct = FALSE) */
};

struct co_mw_result {
	size_t n_x, n_y;     /* sample sizes after NaN removal */
	double u;            /* U of x: #(x_i > y_j) + 0.5 #(x_i == y_j) (R's W) */
	double z;            /* standardised U, tie- and continuity-corrected */
	double p_value;      /* two-sided */
	double estimate;     /* Hodges-Lehmann: median of x_i - y_j */
	double ci_low;       /* confidence interval of the shift at conf_level */
	double ci_high;
	double conf_level;
};

/*
 * Run the test on x[0..nx) (candidate) and y[0..ny) (baseline); NaNs are skipped.
 * Returns 0 and fills *ret; or -ENODATA when a sample has no values left, -EDOM when
 * a sample holds an infinite value or all observations are tied (the variance is then
 * zero and no interval exists), -EINVAL for a confidence level outside (0, 1), -E2BIG
 * over CO_MW_MAX_SAMPLES; err says which, *ret untouched. opts may be NULL.
 */
int co_mw_test(struct co_mw_result *ret, const double *x, size_t nx, const double *y,
	       size_t ny, const struct co_mw_opts *opts, struct co_error *err);

/* Standard normal distribution function and its inverse (|error| < 1e-14). */
double co_mw_pnorm(double z);
double co_mw_qnorm(double p);

#endif
