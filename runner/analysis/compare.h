/*
 * The comparison driver: renders each judge metric's query for the baseline and the
 * candidate cluster, fetches both series with Prometheus range queries over the same
 * window, and runs the judge on them (analysis/judge.h stays free of I/O).
 *
 * Each query must return at most one series (metric queries aggregate, e.g. with
 * sum()); several series are an error for that side of that metric, because
 * silently pooling or picking one would judge something else than configured. An
 * empty result is "no data"; a failed query makes the metric Error with
 * Prometheus's message.
 *
 * Async contract: if co_compare_start() returns an error the callback never runs;
 * otherwise it runs exactly once, after every query has completed, with status 0 and
 * a result, or -ECANCELED after co_compare_cancel().
 */
#ifndef CO_ANALYSIS_COMPARE_H
#define CO_ANALYSIS_COMPARE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "analysis/judge.h"
#include "base/error.h"

struct co_prom_client;
struct co_compare;

struct co_compare_params {
	const char *baseline;        /* cluster names, the {{ cluster }} values */
	const char *candidate;
	const char *namespace_re;    /* {{ namespace }}; NULL = ".*" */
	const char *app_re;          /* {{ app }}; NULL = ".*" */
	double start;                /* window, unix seconds */
	double end;
	double step;                 /* seconds, > 0 */
	uint64_t query_timeout_ms;   /* per query; 0 = the client's default */
};

/* One side of one metric as fetched. */
struct co_compare_side {
	char *query;                 /* rendered PromQL */
	double *times;               /* unix seconds; n entries */
	double *values;
	size_t n;
	size_t n_series;             /* series in the answer (0 = no data) */
	char *error;                 /* NULL on success */
};

struct co_compare_result {
	struct co_judge_result *judge;      /* borrows the config given to start */
	struct co_compare_side *baseline;   /* one per metric */
	struct co_compare_side *candidate;
	size_t n_metrics;
	double start, end, step;
};

typedef void (*co_compare_cb)(int status, struct co_compare_result *res,
			      const struct co_error *err, void *data);

/*
 * Start fetching. prom and cfg are borrowed and must outlive the comparison (and cfg
 * the result). Queries that do not render (an unknown template variable) fail here
 * with -EINVAL. The result passes to the callback (co_compare_result_free()).
 */
int co_compare_start(struct co_compare **ret_cmp, struct co_prom_client *prom,
		     const struct co_judge_config *cfg, const struct co_compare_params *p,
		     co_compare_cb cb, void *data, struct co_error *err);

void co_compare_cancel(struct co_compare *cmp);

void co_compare_result_free(struct co_compare_result *res);

/* The judge's JSON plus the window, the rendered queries and the samples. */
json_t *co_compare_result_json(const struct co_compare_result *res);

#endif
