/*
 * Mann-Whitney U test with the Hodges-Lehmann estimate and its confidence interval.
 *
 * The standardised statistic W(d) of the samples (x - d, y) is the workhorse: it
 * ranks the combined sample with mid-ranks, corrects the variance for ties and
 * (optionally) applies a continuity correction of 0.5 towards zero, exactly as R's
 * wilcox.test does in its asymptotic branch. W(0) gives the p-value. W(d) is a
 * non-increasing step function of d that jumps only where d equals a pairwise
 * difference x_i - y_j, so the confidence limits, the roots of W(d) = +-z(alpha/2),
 * are pairwise differences: we bracket each root on [min x - max y, max x - min y]
 * (returning an end of that range when the root lies beyond it, as R does), bisect
 * until the bracket is a few ulps wide and snap to the nearest pairwise difference.
 *
 * The estimate is the median of the n*m pairwise differences, found without
 * materialising them: with both samples sorted, the number of differences <= d is
 * counted in O(n + m), a bisection on d finds the bracket of the k-th smallest, and
 * the smallest difference above the lower bracket is computed exactly. Memory stays
 * O(n + m) for samples of any size.
 */
#include "analysis/mannwhitney.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "base/buf.h"

struct sample {
	double v;
	int is_x;
};

struct mw_ctx {
	const double *x;      /* sorted ascending */
	const double *y;      /* sorted ascending */
	size_t n, m;
	struct sample *scratch; /* n + m entries */
	int correct;
};

static int cmp_double(const void *a, const void *b)
{
	double da = *(const double *)a, db = *(const double *)b;

	return (da > db) - (da < db);
}

static int cmp_sample(const void *a, const void *b)
{
	return cmp_double(&((const struct sample *)a)->v, &((const struct sample *)b)->v);
}

double co_mw_pnorm(double z)
{
	return 0.5 * erfc(-z / M_SQRT2);
}

/* Acklam's rational approximation, polished by two Halley steps on erfc. */
double co_mw_qnorm(double p)
{
	static const double a[] = { -3.969683028665376e+01, 2.209460984245205e+02,
				    -2.759285104469687e+02, 1.383577518672690e+02,
				    -3.066479806614716e+01, 2.506628277459239e+00 };
	static const double b[] = { -5.447609879822406e+01, 1.615858368580409e+02,
				    -1.556989798598866e+02, 6.680131188771972e+01,
				    -1.328068155288572e+01 };
	static const double c[] = { -7.784894002430293e-03, -3.223964580411365e-01,
				    -2.400758277161838e+00, -2.549732539343734e+00,
				    4.374664141464968e+00, 2.938163982698783e+00 };
	static const double d[] = { 7.784695709041462e-03, 3.224671290700398e-01,
				    2.445134137142996e+00, 3.754408661907416e+00 };
	const double plow = 0.02425;
	double q, r, x;

	if (isnan(p) || p < 0 || p > 1)
		return NAN;
	if (p == 0)
		return -INFINITY;
	if (p == 1)
		return INFINITY;
	if (p < plow) {
		q = sqrt(-2 * log(p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	} else if (p <= 1 - plow) {
		q = p - 0.5;
		r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
		    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
	} else {
		q = sqrt(-2 * log1p(-p));
		x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
		    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
	}
	for (int i = 0; i < 2; i++) {
		/* Work in the tail nearer to p so the residual keeps its precision. */
		double e = p < 0.5 ? co_mw_pnorm(x) - p : (1 - p) - co_mw_pnorm(-x);
		double u = e * sqrt(2 * M_PI) * exp(x * x / 2);

		x = x - u / (1 + x * u / 2);
	}
	return x;
}

/* Standardised rank-sum statistic of (x - d, y); *ret_sigma0 set when all tied. */
static double w_stat(struct mw_ctx *c, double d, double *ret_u, int *ret_sigma0)
{
	size_t n = c->n, m = c->m, total = n + m, i = 0, k;
	double rank_sum = 0, ties = 0, dz, corr = 0, sigma;
	double nd = (double)n, md = (double)m, td = (double)total;

	for (k = 0; k < n; k++)
		c->scratch[k] = (struct sample){ c->x[k] - d, 1 };
	for (k = 0; k < m; k++)
		c->scratch[n + k] = (struct sample){ c->y[k], 0 };
	qsort(c->scratch, total, sizeof(*c->scratch), cmp_sample);
	while (i < total) {
		size_t j = i + 1, nx_group = 0;
		double t, mid;

		while (j < total && c->scratch[j].v == c->scratch[i].v)
			j++;
		for (k = i; k < j; k++)
			nx_group += (size_t)c->scratch[k].is_x;
		t = (double)(j - i);
		mid = ((double)i + 1 + (double)j) / 2; /* mean of ranks i+1 .. j */
		rank_sum += mid * (double)nx_group;
		ties += t * t * t - t;
		i = j;
	}
	if (ret_u)
		*ret_u = rank_sum - nd * (nd + 1) / 2;
	dz = rank_sum - nd * (nd + 1) / 2 - nd * md / 2;
	if (c->correct)
		corr = dz > 0 ? 0.5 : dz < 0 ? -0.5 : 0;
	sigma = sqrt((nd * md / 12) * ((td + 1) - ties / (td * (td - 1))));
	*ret_sigma0 = !(sigma > 0);
	if (*ret_sigma0)
		return 0;
	return (dz - corr) / sigma;
}

/* The pairwise difference x_i - y_j nearest to v (both samples sorted). */
static double nearest_difference(const struct mw_ctx *c, double v)
{
	double best = NAN, best_dist = INFINITY;

	for (size_t i = 0; i < c->n; i++) {
		/* x_i - y_j is non-increasing in j: find the first j with x_i - y_j <= v */
		size_t lo = 0, hi = c->m;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (c->x[i] - c->y[mid] <= v)
				hi = mid;
			else
				lo = mid + 1;
		}
		for (size_t j = lo > 0 ? lo - 1 : 0; j <= lo && j < c->m; j++) {
			double diff = c->x[i] - c->y[j], dist = fabs(diff - v);

			if (dist < best_dist) {
				best_dist = dist;
				best = diff;
			}
		}
	}
	return best;
}

/* Root of W(d) = zq on [lo, hi], R's convention for roots outside the range. */
static double ci_root(struct mw_ctx *c, double mumin, double mumax, double zq)
{
	double lo = mumin, hi = mumax;
	int sigma0;

	if (w_stat(c, mumin, NULL, &sigma0) - zq <= 0)
		return mumin;
	if (w_stat(c, mumax, NULL, &sigma0) - zq >= 0)
		return mumax;
	/* Invariant: W(lo) > zq, W(hi) < zq. */
	for (int iter = 0; iter < 2000; iter++) {
		double mid = lo + (hi - lo) / 2;

		if (mid <= lo || mid >= hi)
			break;
		if (w_stat(c, mid, NULL, &sigma0) - zq > 0)
			lo = mid;
		else
			hi = mid;
	}
	return nearest_difference(c, hi);
}

/* Number of pairwise differences x_i - y_j <= d. */
static double count_le(const struct mw_ctx *c, double d)
{
	double count = 0;
	size_t p = 0;

	for (size_t i = 0; i < c->n; i++) {
		while (p < c->m && c->x[i] - c->y[p] > d)
			p++;
		count += (double)(c->m - p);
	}
	return count;
}

/* The smallest pairwise difference strictly above v (INFINITY if none). */
static double min_difference_above(const struct mw_ctx *c, double v)
{
	double best = INFINITY;

	for (size_t i = 0; i < c->n; i++) {
		/* x_i - y_j > v holds for a prefix of j: find its end */
		size_t lo = 0, hi = c->m;

		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (c->x[i] - c->y[mid] > v)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo > 0 && c->x[i] - c->y[lo - 1] < best)
			best = c->x[i] - c->y[lo - 1];
	}
	return best;
}

/* The k-th smallest (1-based) pairwise difference. */
static double kth_difference(const struct mw_ctx *c, double k, double mumin, double mumax)
{
	double lo, hi = mumax, v;

	if (count_le(c, mumin) >= k)
		return mumin;
	lo = mumin; /* count_le(lo) < k <= count_le(hi) */
	for (int iter = 0; iter < 2000; iter++) {
		double mid = lo + (hi - lo) / 2;

		if (mid <= lo || mid >= hi)
			break;
		if (count_le(c, mid) >= k)
			hi = mid;
		else
			lo = mid;
	}
	/* (lo, hi] holds the k-th difference and, at double resolution, nothing else
	 * except values equal to it; walk up in case of rounding at the bracket. */
	v = min_difference_above(c, lo);
	while (count_le(c, v) < k && isfinite(v))
		v = min_difference_above(c, v);
	return v;
}

static double *clean_sorted(const double *v, size_t n, size_t *ret_n, int *ret_inf)
{
	double *out = co_malloc((n ? n : 1) * sizeof(*out));
	size_t k = 0;

	*ret_inf = 0;
	for (size_t i = 0; i < n; i++) {
		if (isnan(v[i]))
			continue;
		if (isinf(v[i]))
			*ret_inf = 1;
		out[k++] = v[i];
	}
	qsort(out, k, sizeof(*out), cmp_double);
	*ret_n = k;
	return out;
}

int co_mw_test(struct co_mw_result *ret, const double *x, size_t nx, const double *y,
	       size_t ny, const struct co_mw_opts *opts, struct co_error *err)
{
	struct co_mw_result res = { 0 };
	struct mw_ctx c = { 0 };
	double conf = opts && opts->conf_level > 0 ? opts->conf_level
						   : CO_MW_DEFAULT_CONF_LEVEL;
	double *xs = NULL, *ys = NULL, mumin, mumax, zq, total;
	int inf_x, inf_y, sigma0, rc = 0;

	if (!(conf > 0 && conf < 1))
		return co_error_set(err, -EINVAL, "confidence level %g is not in (0, 1)",
				    conf);
	if (nx > CO_MW_MAX_SAMPLES || ny > CO_MW_MAX_SAMPLES)
		return co_error_set(err, -E2BIG, "samples of %zu and %zu values exceed %d",
				    nx, ny, CO_MW_MAX_SAMPLES);
	xs = clean_sorted(x, nx, &c.n, &inf_x);
	ys = clean_sorted(y, ny, &c.m, &inf_y);
	if (c.n == 0 || c.m == 0) {
		rc = co_error_set(err, -ENODATA, "no values in the %s sample",
				  c.n == 0 ? "candidate" : "baseline");
		goto out;
	}
	if (inf_x || inf_y) {
		rc = co_error_set(err, -EDOM, "the %s sample holds an infinite value",
				  inf_x ? "candidate" : "baseline");
		goto out;
	}
	c.x = xs;
	c.y = ys;
	c.correct = !(opts && opts->no_correct);
	c.scratch = co_malloc((c.n + c.m) * sizeof(*c.scratch));

	res.n_x = c.n;
	res.n_y = c.m;
	res.conf_level = conf;
	res.z = w_stat(&c, 0, &res.u, &sigma0);
	if (sigma0) {
		rc = co_error_set(err, -EDOM, "all %zu observations are tied",
				  c.n + c.m);
		goto out;
	}
	res.p_value = erfc(fabs(res.z) / M_SQRT2);
	if (res.p_value > 1)
		res.p_value = 1;

	mumin = xs[0] - ys[c.m - 1];
	mumax = xs[c.n - 1] - ys[0];
	zq = co_mw_qnorm(1 - (1 - conf) / 2);
	res.ci_low = ci_root(&c, mumin, mumax, zq);
	res.ci_high = ci_root(&c, mumin, mumax, -zq);

	/* Hodges-Lehmann: the median of the n*m differences. */
	total = (double)c.n * (double)c.m;
	if (fmod(total, 2) == 1) {
		res.estimate = kth_difference(&c, (total + 1) / 2, mumin, mumax);
	} else {
		res.estimate = (kth_difference(&c, total / 2, mumin, mumax) +
				kth_difference(&c, total / 2 + 1, mumin, mumax)) / 2;
	}
	*ret = res;
out:
	free(c.scratch);
	free(xs);
	free(ys);
	return rc;
}
