/*
 * The judge: compares a candidate (the new cluster) with a baseline (the old cluster)
 * over one window, metric by metric, and sums the classifications into a score and a
 * verdict, in the manner of Kayenta's judge with Keptn-style threshold rules.
 *
 * Per metric, on already-fetched sample series (the judge does no I/O):
 *   1. NaN handling: remove, or replace with a value (0 by default).
 *   2. No values on either side: NoData. It fails the metric only with mustHaveData.
 *   3. Threshold rules on the aggregate (mean by default) of each side, e.g.
 *      "<= 0.01" (absolute), "<= baseline * 1.2" (relative), "<= +10%" (Keptn: at
 *      most 10% above the baseline). A violated "<"/"<=" rule makes the metric High,
 *      a violated ">"/">=" rule Low.
 *   4. The Mann-Whitney U test of candidate against baseline: the metric is High when
 *      the lower confidence limit of the shift lies above effectSize * |estimate| (and
 *      the candidate/baseline mean ratio exceeds allowedIncrease), Low symmetrically;
 *      only the configured direction (increase, decrease, either) is judged.
 * Classification: Pass, High, Low, NoData, Error (fetch failed or the test could
 * not run), each with a reason that quotes the numbers behind it.
 *
 * Scoring: a group's score is 100 * passed / scored metrics; NoData does not count
 * unless mustHaveData (then it is a failure); Error always counts as a failure. The
 * summary is the weighted mean of group scores over groups that were scored; groups
 * without a configured weight share what the configured weights leave of 100
 * (Kayenta's rule), equally. Any critical metric that fails forces the score to 0.
 * Verdict: Pass at or above passScore (95), Marginal at or above marginalScore (75),
 * else Fail.
 */
#ifndef CO_ANALYSIS_JUDGE_H
#define CO_ANALYSIS_JUDGE_H

#include <jansson.h>
#include <stddef.h>

#include "analysis/mannwhitney.h"
#include "base/error.h"

#define CO_JUDGE_DEFAULT_PASS 95.0
#define CO_JUDGE_DEFAULT_MARGINAL 75.0
#define CO_JUDGE_DEFAULT_EFFECT_SIZE 0.25
#define CO_JUDGE_MAX_METRICS 256
#define CO_JUDGE_MAX_RULES 16

enum co_judge_direction {
	CO_JUDGE_INCREASE,   /* only an increase is bad (latency, errors) */
	CO_JUDGE_DECREASE,   /* only a decrease is bad (throughput) */
	CO_JUDGE_EITHER,
};

enum co_judge_nan {
	CO_JUDGE_NAN_REMOVE,
	CO_JUDGE_NAN_REPLACE,
};

enum co_judge_aggregate {
	CO_JUDGE_AGG_MEAN,
	CO_JUDGE_AGG_MEDIAN,
	CO_JUDGE_AGG_MAX,
	CO_JUDGE_AGG_MIN,
	CO_JUDGE_AGG_LAST,
};

enum co_judge_class {
	CO_JUDGE_PASS,
	CO_JUDGE_HIGH,
	CO_JUDGE_LOW,
	CO_JUDGE_NODATA,
	CO_JUDGE_ERROR,
};

enum co_judge_verdict {
	CO_JUDGE_VERDICT_PASS,
	CO_JUDGE_VERDICT_MARGINAL,
	CO_JUDGE_VERDICT_FAIL,
};

enum co_judge_op { CO_JUDGE_LE, CO_JUDGE_LT, CO_JUDGE_GE, CO_JUDGE_GT };

enum co_judge_rule_kind {
	CO_JUDGE_RULE_ABSOLUTE,  /* "<= 0.01": the limit is value */
	CO_JUDGE_RULE_FACTOR,    /* "<= baseline * 1.2": the limit is baseline * value */
	CO_JUDGE_RULE_PERCENT,   /* "<= +10%": the limit is baseline + |baseline| * v/100 */
};

struct co_judge_rule {
	enum co_judge_op op;
	enum co_judge_rule_kind kind;
	double value;
	char text[64];           /* normalised, e.g. "<= baseline * 1.2" */
};

struct co_judge_metric {
	char *name;
	char *query;             /* template, see analysis/template.h */
	char *group;
	enum co_judge_direction direction;
	enum co_judge_nan nan_strategy;
	double nan_value;        /* replacement, default 0 */
	enum co_judge_aggregate aggregate;
	int critical;
	int must_have_data;
	int mann_whitney;        /* run the U test (default 1) */
	double effect_size;      /* Kayenta's fraction of |estimate|, default 0.25 */
	double allowed_increase; /* mean ratio above which High is allowed, default 1 */
	double allowed_decrease; /* mean ratio below which Low is allowed, default 1 */
	struct co_judge_rule rules[CO_JUDGE_MAX_RULES];
	size_t n_rules;
};

struct co_judge_group_weight {
	char *name;
	double weight;
};

struct co_judge_config {
	struct co_judge_metric *metrics;
	size_t n_metrics;
	struct co_judge_group_weight *weights;  /* configured weights (percent) */
	size_t n_weights;
	double pass_score;
	double marginal_score;
	double conf_level;       /* Mann-Whitney confidence level, default 0.98 */
	char *interval;          /* value of {{ interval }} in queries, default "1m" */
};

/*
 * Build a config from JSON (or YAML loaded into JSON), e.g.
 *   { "passScore": 95, "marginalScore": 75, "confidenceLevel": 0.98,
 *     "interval": "1m", "groups": { "errors": 50, "latency": 30 },
 *     "metrics": [ { "name": "p99-latency", "query": "...", "group": "latency",
 *                    "direction": "increase", "nanStrategy": "remove",
 *                    "critical": false, "mustHaveData": true, "effectSize": 0.25,
 *                    "thresholds": ["<= baseline * 1.2"] } ] }
 * Unknown keys are rejected so typos do not silently weaken a gate. A document of
 * the form {"preset": "istio", ...} starts from that preset and overrides its
 * top-level keys. New config in *ret_cfg (co_judge_config_free()), or -EINVAL with
 * err naming the key ("metrics[2].direction: 'up' is not increase|decrease|either").
 */
int co_judge_config_from_json(struct co_judge_config **ret_cfg, const json_t *doc,
			      struct co_error *err);

/* A built-in metric set: "kubesim" (default; cAdvisor names), "istio", "nginx".
 * Returns -ENOENT for an unknown name. */
int co_judge_config_preset(struct co_judge_config **ret_cfg, const char *name,
			   struct co_error *err);

/* The preset's JSON (a new reference), e.g. to print it as a starting point. */
json_t *co_judge_preset_json(const char *name);

void co_judge_config_free(struct co_judge_config *cfg);

/* Parse one threshold rule ("<= 0.01", "< baseline*1.2", "<=+10%", ">= -5%"). */
int co_judge_parse_rule(struct co_judge_rule *ret_rule, const char *text,
			struct co_error *err);

/*
 * Render metric m's query for one cluster: {{ cluster }}, {{ namespace }} and
 * {{ app }} (regexes; NULL = ".*"), {{ interval }} from the config; values are
 * escaped for PromQL strings. New string in *ret_query (caller frees), or -EINVAL
 * with err ("metric 'x': unknown variable 'y' in template at offset 3").
 */
int co_judge_render_query(char **ret_query, const struct co_judge_config *cfg,
			  const struct co_judge_metric *m, const char *cluster,
			  const char *namespace_re, const char *app_re,
			  struct co_error *err);

/* ---- judging ---- */

/* The samples of one side of one metric; values borrowed for co_judge_run(). */
struct co_judge_series {
	const double *values;
	size_t n;
	const char *error;       /* fetch failed: message (the metric becomes Error) */
};

struct co_judge_input {
	struct co_judge_series baseline;
	struct co_judge_series candidate;
};

struct co_judge_metric_result {
	const struct co_judge_metric *metric;   /* borrowed from the config */
	enum co_judge_class classification;
	char reason[512];
	int scored;              /* counted in its group */
	int failed;              /* counted as not passing */
	size_t n_baseline;       /* samples after NaN handling */
	size_t n_candidate;
	double baseline;         /* aggregates (NAN without data) */
	double candidate;
	double change;           /* (candidate - baseline) / |baseline|; NAN if undefined */
	double mean_ratio;       /* candidate mean / baseline mean */
	int violated_rule;       /* index into metric->rules, -1 if none */
	int mw_done;             /* the U test ran; mw and bound are valid */
	struct co_mw_result mw;
	double bound;            /* effect_size * |estimate| */
};

struct co_judge_group_result {
	char *name;
	double weight;           /* effective, before normalisation */
	double score;            /* 0..100, NAN when nothing was scored */
	size_t n_pass;
	size_t n_scored;
};

struct co_judge_result {
	struct co_judge_metric_result *metrics;   /* one per config metric, same order */
	size_t n_metrics;
	struct co_judge_group_result *groups;
	size_t n_groups;
	double score;            /* 0..100 */
	int critical_failure;    /* a critical metric failed: score forced to 0 */
	enum co_judge_verdict verdict;
	char reason[512];        /* one line for the verdict */
	double pass_score;
	double marginal_score;
};

/*
 * Judge in[0..cfg->n_metrics) against cfg. Pure: no I/O. New result in *ret_res
 * (co_judge_result_free()); the result borrows cfg, which must outlive it.
 */
int co_judge_run(struct co_judge_result **ret_res, const struct co_judge_config *cfg,
		 const struct co_judge_input *in, struct co_error *err);

void co_judge_result_free(struct co_judge_result *res);

/* Everything behind the verdict as JSON (new reference). */
json_t *co_judge_result_json(const struct co_judge_result *res);

const char *co_judge_class_name(enum co_judge_class c);     /* "Pass", "High", ... */
const char *co_judge_verdict_name(enum co_judge_verdict v); /* "Pass", "Marginal", "Fail" */
const char *co_judge_direction_name(enum co_judge_direction d);

#endif
