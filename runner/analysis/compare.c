/*
 * Fetch-then-judge: 2 x n metrics range queries in flight at once on the caller's
 * loop, a counter of outstanding queries, and the judge run when it reaches zero.
 * Every query's callback stores its side's samples (or error) in the result under
 * construction, so the judge sees exactly what was fetched and the report can show
 * it.
 */
#include "analysis/compare.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "clients/prom.h"

struct query_slot {
	struct co_compare *cmp;
	struct co_compare_side *side;
	struct co_prom_query *q;     /* NULL once completed */
};

struct co_compare {
	const struct co_judge_config *cfg;
	struct co_compare_result *res;
	struct query_slot *slots;    /* 2 per metric */
	size_t pending;
	int canceled;
	co_compare_cb cb;
	void *data;
};

static void side_release(struct co_compare_side *s)
{
	free(s->query);
	free(s->times);
	free(s->values);
	free(s->error);
}

void co_compare_result_free(struct co_compare_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n_metrics; i++) {
		side_release(&res->baseline[i]);
		side_release(&res->candidate[i]);
	}
	free(res->baseline);
	free(res->candidate);
	co_judge_result_free(res->judge);
	free(res);
}

static void finish(struct co_compare *cmp)
{
	struct co_compare_result *res = cmp->res;
	struct co_judge_input *in;
	struct co_error err = CO_ERROR_INIT;
	int rc = 0;

	if (cmp->canceled) {
		rc = co_error_set(&err, -ECANCELED, "comparison canceled");
		co_compare_result_free(res);
		res = NULL;
		goto out;
	}
	in = co_calloc(res->n_metrics, sizeof(*in));
	for (size_t i = 0; i < res->n_metrics; i++) {
		in[i].baseline = (struct co_judge_series){ res->baseline[i].values,
							   res->baseline[i].n,
							   res->baseline[i].error };
		in[i].candidate = (struct co_judge_series){ res->candidate[i].values,
							    res->candidate[i].n,
							    res->candidate[i].error };
	}
	rc = co_judge_run(&res->judge, cmp->cfg, in, &err);
	free(in);
	if (rc < 0) {
		co_compare_result_free(res);
		res = NULL;
	}
out:
	cmp->cb(rc, res, &err, cmp->data);
	free(cmp->slots);
	free(cmp);
}

static void on_query(int status, struct co_prom_result *pr, const struct co_error *err,
		     void *data)
{
	struct query_slot *slot = data;
	struct co_compare_side *side = slot->side;
	struct co_compare *cmp = slot->cmp;

	slot->q = NULL;
	if (status < 0) {
		side->error = co_strdup(err && err->msg[0] ? err->msg : "query failed");
	} else if (pr->type != CO_PROM_MATRIX) {
		side->error = co_asprintf("expected a matrix, got a %s",
					  co_prom_type_name(pr->type));
	} else if (pr->n_series > 1) {
		side->n_series = pr->n_series;
		side->error = co_asprintf("query returned %zu series; aggregate it to one "
					  "(e.g. with sum())", pr->n_series);
	} else if (pr->n_series == 1) {
		const struct co_prom_series *s = &pr->series[0];

		side->n_series = 1;
		side->times = co_malloc((s->n_points + 1) * sizeof(double));
		side->values = co_malloc((s->n_points + 1) * sizeof(double));
		for (size_t k = 0; k < s->n_points; k++) {
			side->times[k] = s->points[k].t;
			side->values[k] = s->points[k].v;
		}
		side->n = s->n_points;
	}
	co_prom_result_free(pr);
	if (--cmp->pending == 0)
		finish(cmp);
}

int co_compare_start(struct co_compare **ret_cmp, struct co_prom_client *prom,
		     const struct co_judge_config *cfg, const struct co_compare_params *p,
		     co_compare_cb cb, void *data, struct co_error *err)
{
	struct co_compare *cmp;
	struct co_compare_result *res;
	size_t n = cfg->n_metrics;
	int rc = 0;

	if (!p->baseline || !p->candidate || !(p->step > 0) || !(p->end > p->start))
		return co_error_set(err, -EINVAL,
				    "compare needs two clusters, a window and a positive step");
	res = co_calloc(1, sizeof(*res));
	res->n_metrics = n;
	res->baseline = co_calloc(n, sizeof(*res->baseline));
	res->candidate = co_calloc(n, sizeof(*res->candidate));
	res->start = p->start;
	res->end = p->end;
	res->step = p->step;
	for (size_t i = 0; i < n && rc == 0; i++) {
		rc = co_judge_render_query(&res->baseline[i].query, cfg, &cfg->metrics[i],
				       p->baseline, p->namespace_re, p->app_re, err);
		if (rc == 0)
			rc = co_judge_render_query(&res->candidate[i].query, cfg, &cfg->metrics[i],
					       p->candidate, p->namespace_re, p->app_re, err);
	}
	if (rc < 0) {
		co_compare_result_free(res);
		return rc;
	}
	cmp = co_calloc(1, sizeof(*cmp));
	cmp->cfg = cfg;
	cmp->res = res;
	cmp->cb = cb;
	cmp->data = data;
	cmp->slots = co_calloc(2 * n, sizeof(*cmp->slots));
	/* Hold one reference of our own so a query failing to start cannot finish the
	 * comparison while we are still issuing the others. */
	cmp->pending = 1;
	for (size_t i = 0; i < 2 * n; i++) {
		struct query_slot *slot = &cmp->slots[i];
		struct co_error qerr = CO_ERROR_INIT;

		slot->cmp = cmp;
		slot->side = i % 2 ? &res->candidate[i / 2] : &res->baseline[i / 2];
		if (co_prom_query_range(prom, &slot->q, slot->side->query, p->start, p->end,
					p->step, p->query_timeout_ms, on_query, slot,
					&qerr) < 0) {
			slot->q = NULL;
			slot->side->error = co_strdup(qerr.msg[0] ? qerr.msg : "query failed");
			continue;
		}
		cmp->pending++;
	}
	if (ret_cmp)
		*ret_cmp = cmp;
	/* Drop our reference; if nothing started, finish from here is not allowed by
	 * the contract (no callback from inside start), so fail instead. */
	if (cmp->pending == 1) {
		rc = co_error_set(err, -EIO, "no query could be started: %s",
				  res->baseline[0].error ? res->baseline[0].error : "unknown");
		co_compare_result_free(res);
		free(cmp->slots);
		free(cmp);
		return rc;
	}
	cmp->pending--;
	return 0;
}

void co_compare_cancel(struct co_compare *cmp)
{
	if (!cmp)
		return;
	cmp->canceled = 1;
	for (size_t i = 0; i < 2 * cmp->res->n_metrics; i++)
		if (cmp->slots[i].q)
			co_prom_cancel(cmp->slots[i].q);
}

static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *side_json(const struct co_compare_side *s)
{
	json_t *samples = json_array();

	for (size_t k = 0; k < s->n; k++)
		json_array_append_new(samples, json_pack("[o, o]", num(s->times[k]),
							 num(s->values[k])));
	return json_pack("{s:s, s:I, s:o, s:s?}", "query", s->query, "series",
			 (json_int_t)s->n_series, "samples", samples, "error", s->error);
}

json_t *co_compare_result_json(const struct co_compare_result *res)
{
	json_t *j = co_judge_result_json(res->judge);
	json_t *metrics = json_object_get(j, "metrics");

	for (size_t i = 0; i < res->n_metrics; i++) {
		json_t *m = json_array_get(metrics, i);

		json_object_set_new(m, "baselineSeries", side_json(&res->baseline[i]));
		json_object_set_new(m, "candidateSeries", side_json(&res->candidate[i]));
	}
	json_object_set_new(j, "window", json_pack("{s:o, s:o, s:o}", "start",
						   num(res->start), "end", num(res->end),
						   "step", num(res->step)));
	return j;
}
