/*
 * Unit tests for the judge: classification of synthetic baseline/candidate series
 * against the kubesim preset and small hand-written configs, scoring, verdicts,
 * threshold rule parsing and config validation.
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

#include "analysis/judge.h"

#define N 21   /* a 5 minute window at a 15 s step */

/* preset metric order: error-ratio, latency-p50, latency-p99, cpu-per-request,
 * memory-working-set */
enum { ERR, P50, P99, CPU, MEM, NMET };

static uint64_t rng = 1;

static double noise(void)   /* uniform in [-1, 1) */
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (double)(rng >> 11) / 4503599627370496.0 - 1;
}

struct fixture {
	double base[NMET][N], cand[NMET][N];
	struct co_judge_input in[NMET];
};

/* Realistic-looking series: a level with +-5% noise, independently per side. */
static void fill(struct fixture *f, const double *cand_factor)
{
	static const double level[NMET] = { 0.001, 0.05, 0.2, 0.002, 250e6 };

	rng = 12345;
	for (int m = 0; m < NMET; m++) {
		for (int i = 0; i < N; i++) {
			f->base[m][i] = level[m] * (1 + 0.05 * noise());
			f->cand[m][i] = level[m] * cand_factor[m] * (1 + 0.05 * noise());
		}
		f->in[m] = (struct co_judge_input){ { f->base[m], N, NULL },
						    { f->cand[m], N, NULL } };
	}
}

static struct co_judge_config *preset(void)
{
	struct co_judge_config *cfg = NULL;

	assert_int_equal(co_judge_config_preset(&cfg, "kubesim", NULL), 0);
	assert_int_equal(cfg->n_metrics, NMET);
	assert_string_equal(cfg->metrics[P99].name, "latency-p99");
	return cfg;
}

static void test_identical_pass(void **state)
{
	static const double same[NMET] = { 1, 1, 1, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;

	fill(&f, same);
	for (int m = 0; m < NMET; m++)
		f.in[m].candidate.values = f.base[m];
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	for (int m = 0; m < NMET; m++) {
		assert_int_equal(res->metrics[m].classification, CO_JUDGE_PASS);
		assert_true(res->metrics[m].change == 0);
	}
	assert_string_equal(res->metrics[P99].reason, "identical samples");
	assert_true(res->score == 100);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_PASS);
	co_judge_result_free(res);

	/* independent noise, same level: still Pass everywhere */
	fill(&f, same);
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	for (int m = 0; m < NMET; m++)
		assert_int_equal(res->metrics[m].classification, CO_JUDGE_PASS);
	assert_true(res->metrics[P99].mw_done);
	assert_true(res->metrics[P99].mw.ci_low < 0 && res->metrics[P99].mw.ci_high > 0);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_PASS);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_latency_plus_50_fails(void **state)
{
	static const double worse[NMET] = { 1, 1.5, 1.5, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;

	fill(&f, worse);
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[P50].classification, CO_JUDGE_HIGH);
	assert_int_equal(res->metrics[P99].classification, CO_JUDGE_HIGH);
	assert_int_equal(res->metrics[ERR].classification, CO_JUDGE_PASS);
	assert_int_equal(res->metrics[CPU].classification, CO_JUDGE_PASS);
	/* the rule decides, and the U test agrees: the interval lies above the bound */
	assert_int_equal(res->metrics[P99].violated_rule, 0);
	assert_non_null(strstr(res->metrics[P99].reason, "violates '<= baseline * 1.2'"));
	assert_true(res->metrics[P99].mw.ci_low > res->metrics[P99].bound);
	assert_true(fabs(res->metrics[P99].change - 0.5) < 0.05);
	assert_true(res->metrics[P99].mw.p_value < 1e-6);
	/* latency group 0 of weight 40: 40*100 + 20*100 over 100 */
	assert_true(fabs(res->score - 60) < 1e-9);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_FAIL);
	assert_false(res->critical_failure);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_latency_plus_2_passes(void **state)
{
	static const double slight[NMET] = { 1, 1.02, 1.02, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;

	fill(&f, slight);
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	for (int m = 0; m < NMET; m++)
		assert_int_equal(res->metrics[m].classification, CO_JUDGE_PASS);
	assert_true(res->score == 100);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_PASS);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

/* Without noise a 2% shift is significant: the U test alone calls it High unless
 * the allowed mean ratio covers it. */
static void test_effect_tolerance(void **state)
{
	json_t *doc = json_loads("{\"metrics\":[{\"name\":\"lat\",\"query\":\"q\","
				 "\"direction\":\"increase\"}]}", 0, NULL);
	struct co_judge_config *cfg = NULL;
	struct co_judge_result *res = NULL;
	double b[N], c[N];
	struct co_judge_input in = { { b, N, NULL }, { c, N, NULL } };

	for (int i = 0; i < N; i++) {
		b[i] = 100 + i * 0.01;
		c[i] = 102 + i * 0.01;
	}
	assert_int_equal(co_judge_config_from_json(&cfg, doc, NULL), 0);
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_HIGH);
	assert_true(fabs(res->metrics[0].mw.estimate - 2) < 1e-9);
	assert_true(fabs(res->metrics[0].bound - 0.5) < 1e-9);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_FAIL);
	co_judge_result_free(res);

	cfg->metrics[0].allowed_increase = 1.05;
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_PASS);
	co_judge_result_free(res);

	/* a decrease is not judged for direction increase, but is for either */
	in.candidate.values = b;
	in.baseline.values = c;
	cfg->metrics[0].allowed_increase = 1;
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_PASS);
	co_judge_result_free(res);
	cfg->metrics[0].direction = CO_JUDGE_EITHER;
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_LOW);
	assert_non_null(strstr(res->metrics[0].reason, "candidate lower"));
	co_judge_result_free(res);
	co_judge_config_free(cfg);
	json_decref(doc);
}

static void test_critical_zeroes_score(void **state)
{
	static const double bad_errors[NMET] = { 50, 1, 1, 1, 1 };  /* 0.1% -> 5% */
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;

	fill(&f, bad_errors);
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[ERR].classification, CO_JUDGE_HIGH);
	assert_non_null(strstr(res->metrics[ERR].reason, "violates '<= 0.01'"));
	assert_false(res->metrics[ERR].mw_done);   /* thresholds only for error ratio */
	assert_true(res->critical_failure);
	assert_true(res->score == 0);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_FAIL);
	assert_string_equal(res->reason, "critical metric 'error-ratio' is High");
	/* the same failure on a non-critical metric only costs its group */
	co_judge_result_free(res);
	cfg->metrics[ERR].critical = 0;
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_true(fabs(res->score - 60) < 1e-9);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_nodata(void **state)
{
	static const double same[NMET] = { 1, 1, 1, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;
	double nans[3] = { NAN, NAN, NAN };

	fill(&f, same);
	/* p50 has no mustHaveData: NoData is not scored */
	f.in[P50].candidate.n = 0;
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[P50].classification, CO_JUDGE_NODATA);
	assert_string_equal(res->metrics[P50].reason, "no data for the candidate");
	assert_false(res->metrics[P50].scored);
	assert_true(res->score == 100);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_PASS);
	co_judge_result_free(res);

	/* p99 has mustHaveData: NoData fails it; latency group 50% -> score 80 */
	f.in[P50].candidate.n = N;
	f.in[P99].baseline.values = nans;   /* NaN only: removed, nothing left */
	f.in[P99].baseline.n = 3;
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[P99].classification, CO_JUDGE_NODATA);
	assert_string_equal(res->metrics[P99].reason,
			    "no data for the baseline (mustHaveData)");
	assert_true(res->metrics[P99].failed);
	assert_true(fabs(res->score - 80) < 1e-9);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_MARGINAL);
	assert_non_null(strstr(res->reason, "needs approval"));
	co_judge_result_free(res);

	/* error ratio replaces NaN (0/0 without traffic) by 0: data again */
	f.in[ERR].candidate.values = nans;
	f.in[ERR].candidate.n = 3;
	f.in[P99].baseline = (struct co_judge_series){ f.base[P99], N, NULL };
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[ERR].classification, CO_JUDGE_PASS);
	assert_int_equal(res->metrics[ERR].n_candidate, 3);
	assert_true(res->metrics[ERR].candidate == 0);
	co_judge_result_free(res);

	/* nothing at all: Fail, not a vacuous Pass */
	for (int m = 0; m < NMET; m++) {
		f.in[m].baseline.n = 0;
		cfg->metrics[m].must_have_data = 0;
	}
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_FAIL);
	assert_string_equal(res->reason, "no metric had data to judge");
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_error_and_inf(void **state)
{
	static const double same[NMET] = { 1, 1, 1, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;

	fill(&f, same);
	f.in[CPU].candidate.error = "prometheus 422 execution: boom";
	f.base[P50][3] = INFINITY;
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	assert_int_equal(res->metrics[CPU].classification, CO_JUDGE_ERROR);
	assert_string_equal(res->metrics[CPU].reason,
			    "candidate query failed: prometheus 422 execution: boom");
	assert_int_equal(res->metrics[P50].classification, CO_JUDGE_ERROR);
	assert_non_null(strstr(res->metrics[P50].reason, "infinite"));
	/* latency 50, resources 50: 40*100 + 40*50 + 20*50 */
	assert_true(fabs(res->score - 70) < 1e-9);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_FAIL);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_rules(void **state)
{
	static const struct {
		const char *in, *text;
		enum co_judge_op op;
		enum co_judge_rule_kind kind;
		double value;
	} ok[] = {
		{ "<= 0.01", "<= 0.01", CO_JUDGE_LE, CO_JUDGE_RULE_ABSOLUTE, 0.01 },
		{ "<=+10%", "<= +10%", CO_JUDGE_LE, CO_JUDGE_RULE_PERCENT, 10 },
		{ " <= +10 % ", "<= +10%", CO_JUDGE_LE, CO_JUDGE_RULE_PERCENT, 10 },
		{ ">=-5%", ">= -5%", CO_JUDGE_GE, CO_JUDGE_RULE_PERCENT, -5 },
		{ "<10%", "< +10%", CO_JUDGE_LT, CO_JUDGE_RULE_PERCENT, 10 },
		{ "< baseline*1.2", "< baseline * 1.2", CO_JUDGE_LT, CO_JUDGE_RULE_FACTOR, 1.2 },
		{ "<= baseline * 1.2", "<= baseline * 1.2", CO_JUDGE_LE, CO_JUDGE_RULE_FACTOR,
		  1.2 },
		{ "> 600", "> 600", CO_JUDGE_GT, CO_JUDGE_RULE_ABSOLUTE, 600 },
		{ ">=-1e3", ">= -1000", CO_JUDGE_GE, CO_JUDGE_RULE_ABSOLUTE, -1000 },
	};
	static const char *const bad[] = { "", "0.01", "=< 1", "== 1", "<= ", "<= 1 %x",
					   "<= baseline 1.2", "<= baseline *", "<= nan",
					   "<= 0x10", "<= inf", "<= 1 2" };
	struct co_judge_rule r;
	struct co_error err = CO_ERROR_INIT;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(co_judge_parse_rule(&r, ok[i].in, NULL), 0);
		assert_string_equal(r.text, ok[i].text);
		assert_int_equal(r.op, ok[i].op);
		assert_int_equal(r.kind, ok[i].kind);
		assert_true(r.value == ok[i].value);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(co_judge_parse_rule(&r, bad[i], &err), -EINVAL);
	assert_non_null(strstr(err.msg, "threshold '<= 1 2'"));
}

/* Keptn's "<= +10%" against a baseline of 100: 110 holds, 110.5 does not; negative
 * baselines grow by |baseline| too. Aggregates other than the mean. */
static void test_rule_evaluation(void **state)
{
	json_t *doc = json_loads("{\"metrics\":[{\"name\":\"m\",\"query\":\"q\","
				 "\"mannWhitney\":false,\"aggregate\":\"max\","
				 "\"thresholds\":\"<= +10%\"}]}", 0, NULL);
	struct co_judge_config *cfg = NULL;
	struct co_judge_result *res = NULL;
	double b[] = { 90, 100, 95 }, c[] = { 105, 110, 80 };
	struct co_judge_input in = { { b, 3, NULL }, { c, 3, NULL } };

	assert_int_equal(co_judge_config_from_json(&cfg, doc, NULL), 0);
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_PASS);
	assert_true(res->metrics[0].baseline == 100 && res->metrics[0].candidate == 110);
	assert_true(fabs(res->metrics[0].change - 0.1) < 1e-12);
	co_judge_result_free(res);
	c[1] = 110.5;
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_HIGH);
	assert_string_equal(res->metrics[0].reason, "candidate max 110.5 violates '<= +10%' "
						    "(limit 110 from baseline 100)");
	co_judge_result_free(res);
	b[0] = b[1] = b[2] = -100;
	c[0] = c[1] = c[2] = -90;
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_PASS);
	c[1] = -89;
	co_judge_result_free(res);
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_HIGH);
	co_judge_result_free(res);
	/* ">=" rules make a metric Low */
	assert_int_equal(co_judge_parse_rule(&cfg->metrics[0].rules[0], ">= 0", NULL), 0);
	assert_int_equal(co_judge_run(&res, cfg, &in, NULL), 0);
	assert_int_equal(res->metrics[0].classification, CO_JUDGE_LOW);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
	json_decref(doc);
}

static void test_config_errors(void **state)
{
	static const struct {
		const char *json, *msg;
	} cases[] = {
		{ "{\"metrics\":[]}", "config.metrics: a non-empty list is required" },
		{ "{\"passScore\":95,\"metrcs\":[]}", "config: unknown key 'metrcs'" },
		{ "{\"metrics\":[{\"name\":\"a\",\"query\":\"q\",\"direction\":\"up\"}]}",
		  "metrics[0].direction: 'up' is not increase|decrease|either" },
		{ "{\"metrics\":[{\"name\":\"a\",\"query\":\"q\"},{\"name\":\"a\",\"query\":"
		  "\"q\"}]}", "metrics[1].name: 'a' is used twice" },
		{ "{\"metrics\":[{\"name\":\"a\"}]}", "metrics[0].query: missing" },
		{ "{\"metrics\":[{\"name\":\"a\",\"query\":\"q\",\"critcal\":true}]}",
		  "metrics[0]: unknown key 'critcal'" },
		{ "{\"passScore\":70,\"marginalScore\":80,\"metrics\":[{\"name\":\"a\","
		  "\"query\":\"q\"}]}", "config: need 0 <= marginalScore (80) <= passScore (70) "
		  "<= 100" },
		{ "{\"preset\":\"linkerd\"}", "config.preset: 'linkerd' is not kubesim|istio|nginx" },
		{ "{\"metrics\":[{\"name\":\"a\",\"query\":\"q\",\"thresholds\":[\"<= 1\","
		  "\"about 2\"]}]}", "metrics[0].thresholds: threshold 'about 2' is not" },
	};
	struct co_judge_config *cfg = (struct co_judge_config *)0x1;
	struct co_error err = CO_ERROR_INIT;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *doc = json_loads(cases[i].json, 0, NULL);

		assert_non_null(doc);
		assert_int_equal(co_judge_config_from_json(&cfg, doc, &err), -EINVAL);
		assert_ptr_equal(cfg, (struct co_judge_config *)0x1);
		assert_memory_equal(err.msg, cases[i].msg, strlen(cases[i].msg));
		json_decref(doc);
	}
	assert_int_equal(co_judge_config_preset(&cfg, "nope", &err), -ENOENT);
}

static void test_presets_and_weights(void **state)
{
	json_t *doc = json_loads("{\"preset\":\"istio\",\"passScore\":90,"
				 "\"groups\":{\"errors\":50}}", 0, NULL);
	struct co_judge_config *cfg = NULL;
	struct co_judge_result *res = NULL;
	static const char *const names[] = { "kubesim", "istio", "nginx" };
	static const char *const metric_names[] = { "http_requests_total",
						    "istio_request_duration_milliseconds_bucket",
						    "nginx_ingress_controller_requests" };
	double one[1] = { 1 }, two[1] = { 2 }, zero[1] = { 0 };
	struct co_judge_input in[NMET];

	for (int i = 0; i < 3; i++) {
		assert_int_equal(co_judge_config_preset(&cfg, names[i], NULL), 0);
		int found = 0;

		for (size_t m = 0; m < cfg->n_metrics; m++) {
			found |= strstr(cfg->metrics[m].query, metric_names[i]) != NULL;
			assert_non_null(strstr(cfg->metrics[m].query, "cluster=\"{{ cluster }}\""));
		}
		assert_true(found);
		co_judge_config_free(cfg);
	}
	assert_int_equal(co_judge_config_from_json(&cfg, doc, NULL), 0);
	assert_true(cfg->pass_score == 90);
	assert_int_equal(cfg->n_weights, 1);
	assert_string_equal(cfg->metrics[2].name, "latency-p99-ms");
	/* errors fixed at 50; latency and resources share the other 50 */
	for (int m = 0; m < NMET; m++)
		in[m] = (struct co_judge_input){ { one, 1, NULL }, { one, 1, NULL } };
	in[ERR] = (struct co_judge_input){ { zero, 1, NULL }, { zero, 1, NULL } };
	in[CPU].candidate.values = two;   /* +100%: violates "<= +25%" */
	assert_int_equal(co_judge_run(&res, cfg, in, NULL), 0);
	assert_int_equal(res->n_groups, 3);
	assert_string_equal(res->groups[2].name, "resources");
	assert_true(res->groups[1].weight == 25 && res->groups[2].weight == 25);
	assert_true(res->groups[2].score == 50);
	assert_true(fabs(res->score - 87.5) < 1e-9);
	assert_int_equal(res->verdict, CO_JUDGE_VERDICT_MARGINAL);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
	json_decref(doc);
}

static void test_json(void **state)
{
	static const double worse[NMET] = { 1, 1.5, 1.5, 1, 1 };
	struct co_judge_config *cfg = preset();
	struct co_judge_result *res = NULL;
	struct fixture f;
	json_t *j, *p99;

	fill(&f, worse);
	assert_int_equal(co_judge_run(&res, cfg, f.in, NULL), 0);
	j = co_judge_result_json(res);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "verdict")), "Fail");
	assert_true(json_real_value(json_object_get(j, "score")) == res->score);
	p99 = json_array_get(json_object_get(j, "metrics"), P99);
	assert_string_equal(json_string_value(json_object_get(p99, "classification")), "High");
	assert_string_equal(json_string_value(json_object_get(p99, "violatedThreshold")),
			    "<= baseline * 1.2");
	assert_true(json_real_value(json_object_get(json_object_get(p99, "mannWhitney"),
						    "pValue")) == res->metrics[P99].mw.p_value);
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(j, "metrics"),
								ERR), "mannWhitney")) ||
		    !json_object_get(json_array_get(json_object_get(j, "metrics"), ERR),
				     "mannWhitney"));
	json_decref(j);
	co_judge_result_free(res);
	co_judge_config_free(cfg);
}

static void test_render(void **state)
{
	static const char *const names[] = { "kubesim", "istio", "nginx" };
	struct co_judge_config *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;
	char *q;

	for (int i = 0; i < 3; i++) {
		assert_int_equal(co_judge_config_preset(&cfg, names[i], NULL), 0);
		for (size_t m = 0; m < cfg->n_metrics; m++) {
			assert_int_equal(co_judge_render_query(&q, cfg, &cfg->metrics[m],
							       "green", "core", NULL, NULL), 0);
			assert_null(strstr(q, "{{"));
			assert_non_null(strstr(q, "cluster=\"green\""));
			assert_non_null(strstr(q, "=~\"core\""));
			free(q);
		}
		co_judge_config_free(cfg);
	}
	assert_int_equal(co_judge_config_preset(&cfg, "kubesim", NULL), 0);
	assert_int_equal(co_judge_render_query(&q, cfg, &cfg->metrics[ERR], "a\"b", NULL,
					       "pod\\.info", NULL), 0);
	assert_string_equal(q, "(sum(rate(http_requests_total{cluster=\"a\\\"b\","
			       "namespace=~\".*\",app=~\"pod\\\\.info\",code=~\"5..\"}[1m])) "
			       "or on() vector(0)) / sum(rate(http_requests_total{cluster="
			       "\"a\\\"b\",namespace=~\".*\",app=~\"pod\\\\.info\"}[1m]))");
	free(q);
	free(cfg->metrics[ERR].query);
	cfg->metrics[ERR].query = strdup("x{cluster=\"{{ cluster }}\",pod=\"{{ pod }}\"}");
	assert_int_equal(co_judge_render_query(&q, cfg, &cfg->metrics[ERR], "a", NULL, NULL,
					       &err), -EINVAL);
	assert_string_equal(err.msg, "metric 'error-ratio': unknown variable 'pod' in template "
				     "at offset 31");
	co_judge_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_identical_pass),
		cmocka_unit_test(test_latency_plus_50_fails),
		cmocka_unit_test(test_latency_plus_2_passes),
		cmocka_unit_test(test_effect_tolerance),
		cmocka_unit_test(test_critical_zeroes_score),
		cmocka_unit_test(test_nodata),
		cmocka_unit_test(test_error_and_inf),
		cmocka_unit_test(test_rules),
		cmocka_unit_test(test_rule_evaluation),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_presets_and_weights),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
