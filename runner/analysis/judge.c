/*
 * The judge: configuration, threshold rules, per-metric classification and scoring.
 *
 * Everything here is a pure function of the config and the fetched samples, so the
 * whole decision can be unit-tested and replayed from a JSON dump. The fetching
 * lives in analysis/compare.c. Classification follows the order documented in
 * judge.h: no data, then threshold rules, then the Mann-Whitney test; a violated
 * threshold decides the class even when the U test saw no significant shift, and
 * both results are kept so the report shows every number behind the decision.
 */
#include "analysis/judge.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/template.h"
#include "base/buf.h"

/* ---- names ---- */

const char *co_judge_class_name(enum co_judge_class c)
{
	static const char *const names[] = { "Pass", "High", "Low", "NoData", "Error" };

	return (unsigned)c < 5 ? names[c] : "Unknown";
}

const char *co_judge_verdict_name(enum co_judge_verdict v)
{
	static const char *const names[] = { "Pass", "Marginal", "Fail" };

	return (unsigned)v < 3 ? names[v] : "Unknown";
}

const char *co_judge_direction_name(enum co_judge_direction d)
{
	static const char *const names[] = { "increase", "decrease", "either" };

	return (unsigned)d < 3 ? names[d] : "unknown";
}

static const char *op_text(enum co_judge_op op)
{
	static const char *const names[] = { "<=", "<", ">=", ">" };

	return names[op];
}

static const char *const agg_names[] = { "mean", "median", "max", "min", "last" };

/* ---- threshold rules ---- */

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* A plain decimal number (optionally signed); advances *s. */
static int parse_number(const char **s, double *ret)
{
	const char *p = *s;
	char *end;
	double v;

	if (!(*p == '+' || *p == '-' || *p == '.' || (*p >= '0' && *p <= '9')))
		return -EINVAL;
	v = strtod(p, &end);
	if (end == p || !isfinite(v))
		return -EINVAL;
	for (const char *q = p; q < end; q++)
		if (*q == 'x' || *q == 'X' || *q == 'n' || *q == 'N' || *q == 'i' || *q == 'I')
			return -EINVAL;
	*s = end;
	*ret = v;
	return 0;
}

int co_judge_parse_rule(struct co_judge_rule *ret_rule, const char *text,
			struct co_error *err)
{
	struct co_judge_rule r = { 0 };
	const char *p = skip_ws(text);

	if (strncmp(p, "<=", 2) == 0) {
		r.op = CO_JUDGE_LE;
		p += 2;
	} else if (strncmp(p, ">=", 2) == 0) {
		r.op = CO_JUDGE_GE;
		p += 2;
	} else if (*p == '<') {
		r.op = CO_JUDGE_LT;
		p++;
	} else if (*p == '>') {
		r.op = CO_JUDGE_GT;
		p++;
	} else {
		goto bad;
	}
	p = skip_ws(p);
	if (strncmp(p, "baseline", 8) == 0) {
		p = skip_ws(p + 8);
		if (*p != '*')
			goto bad;
		p = skip_ws(p + 1);
		if (parse_number(&p, &r.value) < 0)
			goto bad;
		r.kind = CO_JUDGE_RULE_FACTOR;
	} else {
		if (parse_number(&p, &r.value) < 0)
			goto bad;
		p = skip_ws(p);
		if (*p == '%') {
			r.kind = CO_JUDGE_RULE_PERCENT;
			p++;
		} else {
			r.kind = CO_JUDGE_RULE_ABSOLUTE;
		}
	}
	p = skip_ws(p);
	if (*p)
		goto bad;
	switch (r.kind) {
	case CO_JUDGE_RULE_ABSOLUTE:
		snprintf(r.text, sizeof(r.text), "%s %g", op_text(r.op), r.value);
		break;
	case CO_JUDGE_RULE_FACTOR:
		snprintf(r.text, sizeof(r.text), "%s baseline * %g", op_text(r.op), r.value);
		break;
	case CO_JUDGE_RULE_PERCENT:
		snprintf(r.text, sizeof(r.text), "%s %+g%%", op_text(r.op), r.value);
		break;
	}
	*ret_rule = r;
	return 0;
bad:
	return co_error_set(err, -EINVAL,
			    "threshold '%.60s' is not 'OP NUMBER', 'OP baseline * NUMBER' or "
			    "'OP +-NUMBER%%' with OP one of <= < >= >", text);
}

static double rule_limit(const struct co_judge_rule *r, double baseline)
{
	switch (r->kind) {
	case CO_JUDGE_RULE_ABSOLUTE:
		return r->value;
	case CO_JUDGE_RULE_FACTOR:
		return baseline * r->value;
	case CO_JUDGE_RULE_PERCENT:
		return baseline + fabs(baseline) * r->value / 100;
	}
	return NAN;
}

static int rule_holds(const struct co_judge_rule *r, double value, double limit)
{
	switch (r->op) {
	case CO_JUDGE_LE:
		return value <= limit;
	case CO_JUDGE_LT:
		return value < limit;
	case CO_JUDGE_GE:
		return value >= limit;
	case CO_JUDGE_GT:
		return value > limit;
	}
	return 0;
}

/* ---- configuration ---- */

static void metric_release(struct co_judge_metric *m)
{
	free(m->name);
	free(m->query);
	free(m->group);
}

void co_judge_config_free(struct co_judge_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->n_metrics; i++)
		metric_release(&cfg->metrics[i]);
	free(cfg->metrics);
	for (size_t i = 0; i < cfg->n_weights; i++)
		free(cfg->weights[i].name);
	free(cfg->weights);
	free(cfg->interval);
	free(cfg);
}

static int check_keys(const json_t *obj, const char *const *allowed, const char *where,
		      struct co_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		size_t i;

		(void)v;
		for (i = 0; allowed[i]; i++)
			if (strcmp(allowed[i], key) == 0)
				break;
		if (!allowed[i])
			return co_error_set(err, -EINVAL, "%s: unknown key '%s'", where, key);
	}
	return 0;
}

static int get_number(const json_t *obj, const char *key, double *ret, const char *where,
		      struct co_error *err)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_number(v))
		return co_error_set(err, -EINVAL, "%s.%s: not a number", where, key);
	*ret = json_number_value(v);
	return 0;
}

static int get_bool(const json_t *obj, const char *key, int *ret, const char *where,
		    struct co_error *err)
{
	const json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return co_error_set(err, -EINVAL, "%s.%s: not a boolean", where, key);
	*ret = json_is_true(v);
	return 0;
}

static int get_enum(const json_t *obj, const char *key, const char *const *names, size_t n,
		    int *ret, const char *where, struct co_error *err)
{
	const json_t *v = json_object_get(obj, key);
	const char *s = json_string_value(v);
	char allowed[128] = "";

	if (!v)
		return 0;
	for (size_t i = 0; s && i < n; i++)
		if (strcmp(names[i], s) == 0) {
			*ret = (int)i;
			return 0;
		}
	for (size_t i = 0; i < n; i++) {
		strncat(allowed, names[i], sizeof(allowed) - strlen(allowed) - 2);
		if (i + 1 < n)
			strncat(allowed, "|", sizeof(allowed) - strlen(allowed) - 1);
	}
	return co_error_set(err, -EINVAL, "%s.%s: '%.40s' is not %s", where, key,
			    s ? s : "(not a string)", allowed);
}

static int parse_metric(struct co_judge_metric *m, const json_t *j, const char *where,
			struct co_error *err)
{
	static const char *const keys[] = {
		"name", "query", "group", "direction", "nanStrategy", "nanValue",
		"aggregate", "critical", "mustHaveData", "mannWhitney", "effectSize",
		"allowedIncrease", "allowedDecrease", "thresholds", NULL,
	};
	static const char *const dirs[] = { "increase", "decrease", "either" };
	static const char *const nans[] = { "remove", "replace" };
	const json_t *th;
	int v, rc;

	m->effect_size = CO_JUDGE_DEFAULT_EFFECT_SIZE;
	m->allowed_increase = 1;
	m->allowed_decrease = 1;
	m->mann_whitney = 1;
	if (!json_is_object(j))
		return co_error_set(err, -EINVAL, "%s: not an object", where);
	if ((rc = check_keys(j, keys, where, err)) < 0)
		return rc;
	if (!json_string_value(json_object_get(j, "name")) ||
	    !*json_string_value(json_object_get(j, "name")))
		return co_error_set(err, -EINVAL, "%s.name: missing", where);
	if (!json_string_value(json_object_get(j, "query")) ||
	    !*json_string_value(json_object_get(j, "query")))
		return co_error_set(err, -EINVAL, "%s.query: missing", where);
	m->name = co_strdup(json_string_value(json_object_get(j, "name")));
	m->query = co_strdup(json_string_value(json_object_get(j, "query")));
	if (json_object_get(j, "group") && !json_is_string(json_object_get(j, "group")))
		return co_error_set(err, -EINVAL, "%s.group: not a string", where);
	m->group = co_strdup(json_object_get(j, "group")
				     ? json_string_value(json_object_get(j, "group"))
				     : "default");
	v = CO_JUDGE_INCREASE;
	if ((rc = get_enum(j, "direction", dirs, 3, &v, where, err)) < 0)
		return rc;
	m->direction = (enum co_judge_direction)v;
	v = CO_JUDGE_NAN_REMOVE;
	if ((rc = get_enum(j, "nanStrategy", nans, 2, &v, where, err)) < 0)
		return rc;
	m->nan_strategy = (enum co_judge_nan)v;
	v = CO_JUDGE_AGG_MEAN;
	if ((rc = get_enum(j, "aggregate", agg_names, 5, &v, where, err)) < 0)
		return rc;
	m->aggregate = (enum co_judge_aggregate)v;
	if ((rc = get_number(j, "nanValue", &m->nan_value, where, err)) < 0 ||
	    (rc = get_number(j, "effectSize", &m->effect_size, where, err)) < 0 ||
	    (rc = get_number(j, "allowedIncrease", &m->allowed_increase, where, err)) < 0 ||
	    (rc = get_number(j, "allowedDecrease", &m->allowed_decrease, where, err)) < 0 ||
	    (rc = get_bool(j, "critical", &m->critical, where, err)) < 0 ||
	    (rc = get_bool(j, "mustHaveData", &m->must_have_data, where, err)) < 0 ||
	    (rc = get_bool(j, "mannWhitney", &m->mann_whitney, where, err)) < 0)
		return rc;
	if (!(m->effect_size >= 0))
		return co_error_set(err, -EINVAL, "%s.effectSize: must be >= 0", where);
	th = json_object_get(j, "thresholds");
	if (json_is_string(th)) {
		m->n_rules = 1;
		rc = co_judge_parse_rule(&m->rules[0], json_string_value(th), err);
	} else if (json_is_array(th)) {
		if (json_array_size(th) > CO_JUDGE_MAX_RULES)
			return co_error_set(err, -EINVAL, "%s.thresholds: more than %d rules",
					    where, CO_JUDGE_MAX_RULES);
		for (size_t i = 0; i < json_array_size(th); i++) {
			const char *s = json_string_value(json_array_get(th, i));

			if (!s)
				return co_error_set(err, -EINVAL,
						    "%s.thresholds[%zu]: not a string", where, i);
			if ((rc = co_judge_parse_rule(&m->rules[i], s, err)) < 0)
				break;
			m->n_rules++;
		}
	} else if (th) {
		return co_error_set(err, -EINVAL, "%s.thresholds: not a string or a list",
				    where);
	}
	if (rc < 0)
		co_error_prefix(err, "%s.thresholds", where);
	return rc;
}

static int parse_config(struct co_judge_config *cfg, const json_t *doc,
			struct co_error *err)
{
	static const char *const keys[] = {
		"preset", "passScore", "marginalScore", "confidenceLevel", "interval",
		"groups", "metrics", NULL,
	};
	const json_t *groups, *metrics, *v;
	const char *key;
	int rc;

	if (!json_is_object(doc))
		return co_error_set(err, -EINVAL, "judge config: not an object");
	if ((rc = check_keys(doc, keys, "config", err)) < 0)
		return rc;
	cfg->pass_score = CO_JUDGE_DEFAULT_PASS;
	cfg->marginal_score = CO_JUDGE_DEFAULT_MARGINAL;
	cfg->conf_level = CO_MW_DEFAULT_CONF_LEVEL;
	if ((rc = get_number(doc, "passScore", &cfg->pass_score, "config", err)) < 0 ||
	    (rc = get_number(doc, "marginalScore", &cfg->marginal_score, "config", err)) < 0 ||
	    (rc = get_number(doc, "confidenceLevel", &cfg->conf_level, "config", err)) < 0)
		return rc;
	if (!(cfg->conf_level > 0 && cfg->conf_level < 1))
		return co_error_set(err, -EINVAL, "config.confidenceLevel: %g is not in (0, 1)",
				    cfg->conf_level);
	if (!(cfg->marginal_score <= cfg->pass_score) || cfg->pass_score > 100 ||
	    cfg->marginal_score < 0)
		return co_error_set(err, -EINVAL,
				    "config: need 0 <= marginalScore (%g) <= passScore (%g) <= 100",
				    cfg->marginal_score, cfg->pass_score);
	v = json_object_get(doc, "interval");
	if (v && !json_is_string(v))
		return co_error_set(err, -EINVAL, "config.interval: not a string");
	cfg->interval = co_strdup(v ? json_string_value(v) : "1m");

	groups = json_object_get(doc, "groups");
	if (groups && !json_is_object(groups))
		return co_error_set(err, -EINVAL, "config.groups: not an object of weights");
	cfg->weights = co_calloc(json_object_size(groups) + 1, sizeof(*cfg->weights));
	json_object_foreach((json_t *)groups, key, v) {
		if (!json_is_number(v) || json_number_value(v) < 0)
			return co_error_set(err, -EINVAL,
					    "config.groups.%s: weight is not a number >= 0", key);
		cfg->weights[cfg->n_weights].name = co_strdup(key);
		cfg->weights[cfg->n_weights++].weight = json_number_value(v);
	}

	metrics = json_object_get(doc, "metrics");
	if (!json_is_array(metrics) || json_array_size(metrics) == 0)
		return co_error_set(err, -EINVAL, "config.metrics: a non-empty list is required");
	if (json_array_size(metrics) > CO_JUDGE_MAX_METRICS)
		return co_error_set(err, -EINVAL, "config.metrics: more than %d metrics",
				    CO_JUDGE_MAX_METRICS);
	cfg->metrics = co_calloc(json_array_size(metrics), sizeof(*cfg->metrics));
	for (size_t i = 0; i < json_array_size(metrics); i++) {
		char where[32];

		snprintf(where, sizeof(where), "metrics[%zu]", i);
		rc = parse_metric(&cfg->metrics[i], json_array_get(metrics, i), where, err);
		cfg->n_metrics++;
		if (rc < 0)
			return rc;
		for (size_t k = 0; k < i; k++)
			if (strcmp(cfg->metrics[k].name, cfg->metrics[i].name) == 0)
				return co_error_set(err, -EINVAL, "%s.name: '%s' is used twice",
						    where, cfg->metrics[i].name);
	}
	return 0;
}

int co_judge_config_from_json(struct co_judge_config **ret_cfg, const json_t *doc,
			      struct co_error *err)
{
	struct co_judge_config *cfg = co_calloc(1, sizeof(*cfg));
	const char *preset = json_string_value(json_object_get(doc, "preset"));
	json_t *merged = NULL;
	int rc;

	if (json_object_get(doc, "preset")) {
		const char *key;
		json_t *v;

		merged = preset ? co_judge_preset_json(preset) : NULL;
		if (!merged) {
			rc = co_error_set(err, -EINVAL,
					  "config.preset: '%.40s' is not kubesim|istio|nginx",
					  preset ? preset : "(not a string)");
			goto out;
		}
		json_object_foreach((json_t *)doc, key, v)
			if (strcmp(key, "preset") != 0)
				json_object_set(merged, key, v);
		doc = merged;
	}
	rc = parse_config(cfg, doc, err);
out:
	json_decref(merged);
	if (rc < 0) {
		co_judge_config_free(cfg);
		return rc;
	}
	*ret_cfg = cfg;
	return 0;
}

int co_judge_config_preset(struct co_judge_config **ret_cfg, const char *name,
			   struct co_error *err)
{
	json_t *doc = co_judge_preset_json(name);
	int rc;

	if (!doc)
		return co_error_set(err, -ENOENT, "unknown preset '%s' (kubesim|istio|nginx)",
				    name);
	rc = co_judge_config_from_json(ret_cfg, doc, err);
	json_decref(doc);
	return rc;
}

int co_judge_render_query(char **ret_query, const struct co_judge_config *cfg,
			  const struct co_judge_metric *m, const char *cluster,
			  const char *namespace_re, const char *app_re,
			  struct co_error *err)
{
	const struct co_template_var vars[] = {
		{ "cluster", cluster },
		{ "namespace", namespace_re ? namespace_re : ".*" },
		{ "app", app_re ? app_re : ".*" },
		{ "interval", cfg->interval },
	};
	struct co_buf b = CO_BUF_INIT;
	int rc;

	rc = co_template_render(&b, m->query, vars, sizeof(vars) / sizeof(vars[0]),
				CO_TEMPLATE_PROMQL, err);
	if (rc < 0) {
		co_error_prefix(err, "metric '%s'", m->name);
		co_buf_release(&b);
		return rc;
	}
	*ret_query = co_buf_detach(&b, NULL);
	return 0;
}

/* ---- classification ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Apply the NaN strategy; returns a new array (caller frees) of *ret_n values. */
static double *clean(const struct co_judge_metric *m, const struct co_judge_series *s,
		     size_t *ret_n)
{
	double *out = co_malloc((s->n ? s->n : 1) * sizeof(*out));
	size_t k = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (isnan(s->values[i])) {
			if (m->nan_strategy == CO_JUDGE_NAN_REPLACE)
				out[k++] = m->nan_value;
			continue;
		}
		out[k++] = s->values[i];
	}
	*ret_n = k;
	return out;
}

static double mean(const double *v, size_t n)
{
	double sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += v[i];
	return sum / (double)n;
}

static double aggregate(enum co_judge_aggregate a, const double *v, size_t n)
{
	double *sorted, r;

	switch (a) {
	case CO_JUDGE_AGG_MEAN:
		return mean(v, n);
	case CO_JUDGE_AGG_LAST:
		return v[n - 1];
	case CO_JUDGE_AGG_MAX:
	case CO_JUDGE_AGG_MIN:
		r = v[0];
		for (size_t i = 1; i < n; i++)
			r = a == CO_JUDGE_AGG_MAX ? fmax(r, v[i]) : fmin(r, v[i]);
		return r;
	case CO_JUDGE_AGG_MEDIAN:
		sorted = co_malloc(n * sizeof(*sorted));
		memcpy(sorted, v, n * sizeof(*sorted));
		qsort(sorted, n, sizeof(*sorted), cmp_double);
		r = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
		free(sorted);
		return r;
	}
	return NAN;
}

static int has_inf(const double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isinf(v[i]))
			return 1;
	return 0;
}

static void classify_mw(struct co_judge_metric_result *r, const struct co_judge_metric *m,
			const double *b, size_t nb, const double *c, size_t nc,
			double conf_level)
{
	struct co_mw_opts o = { .conf_level = conf_level };
	struct co_error e = CO_ERROR_INIT;
	int pct = (int)lround(conf_level * 100);
	int high, low;

	if (nb == nc && memcmp(b, c, nb * sizeof(*b)) == 0) {
		r->classification = CO_JUDGE_PASS;
		snprintf(r->reason, sizeof(r->reason), "identical samples");
		return;
	}
	if (has_inf(b, nb) || has_inf(c, nc)) {
		r->classification = CO_JUDGE_ERROR;
		snprintf(r->reason, sizeof(r->reason),
			 "the %s samples hold an infinite value (a histogram quantile beyond "
			 "the highest bucket?)", has_inf(c, nc) ? "candidate" : "baseline");
		return;
	}
	if (co_mw_test(&r->mw, c, nc, b, nb, &o, &e) < 0) {
		if (e.code == -EDOM) {  /* every value equal on both sides */
			r->classification = CO_JUDGE_PASS;
			snprintf(r->reason, sizeof(r->reason), "no difference: %s", e.msg);
		} else {
			r->classification = CO_JUDGE_ERROR;
			snprintf(r->reason, sizeof(r->reason), "mann-whitney: %s", e.msg);
		}
		return;
	}
	r->mw_done = 1;
	r->bound = m->effect_size * fabs(r->mw.estimate);
	high = (m->direction != CO_JUDGE_DECREASE) && r->mw.ci_low > r->bound &&
	       !(r->mean_ratio <= m->allowed_increase);
	low = (m->direction != CO_JUDGE_INCREASE) && r->mw.ci_high < -r->bound &&
	      !(r->mean_ratio >= m->allowed_decrease);
	if (high || low) {
		r->classification = high ? CO_JUDGE_HIGH : CO_JUDGE_LOW;
		snprintf(r->reason, sizeof(r->reason),
			 "candidate %s: shift %+.4g (%d%% CI %.4g .. %.4g) beyond tolerance "
			 "%.4g, p=%.3g, mean ratio %.3f",
			 high ? "higher" : "lower", r->mw.estimate, pct, r->mw.ci_low,
			 r->mw.ci_high, high ? r->bound : -r->bound, r->mw.p_value,
			 r->mean_ratio);
		return;
	}
	r->classification = CO_JUDGE_PASS;
	snprintf(r->reason, sizeof(r->reason),
		 "no significant %s: shift %+.4g (%d%% CI %.4g .. %.4g), p=%.3g, mean "
		 "ratio %.3f",
		 m->direction == CO_JUDGE_INCREASE ? "increase"
		 : m->direction == CO_JUDGE_DECREASE ? "decrease" : "change",
		 r->mw.estimate, pct, r->mw.ci_low, r->mw.ci_high, r->mw.p_value,
		 r->mean_ratio);
}

static void classify(struct co_judge_metric_result *r, const struct co_judge_metric *m,
		     const struct co_judge_input *in, double conf_level)
{
	double *b = NULL, *c = NULL, bmean, cmean;
	size_t nb = 0, nc = 0;

	r->metric = m;
	r->violated_rule = -1;
	r->baseline = r->candidate = r->change = r->mean_ratio = NAN;
	if (in->baseline.error || in->candidate.error) {
		r->classification = CO_JUDGE_ERROR;
		snprintf(r->reason, sizeof(r->reason), "%s query failed: %s",
			 in->candidate.error && in->baseline.error ? "baseline and candidate"
			 : in->candidate.error			  ? "candidate"
								  : "baseline",
			 in->candidate.error ? in->candidate.error : in->baseline.error);
		goto out;
	}
	b = clean(m, &in->baseline, &nb);
	c = clean(m, &in->candidate, &nc);
	r->n_baseline = nb;
	r->n_candidate = nc;
	if (nb == 0 || nc == 0) {
		r->classification = CO_JUDGE_NODATA;
		snprintf(r->reason, sizeof(r->reason), "no data for the %s%s",
			 nb == 0 && nc == 0 ? "baseline and the candidate"
			 : nb == 0	    ? "baseline"
					    : "candidate",
			 m->must_have_data ? " (mustHaveData)" : "");
		goto out;
	}
	r->baseline = aggregate(m->aggregate, b, nb);
	r->candidate = aggregate(m->aggregate, c, nc);
	if (r->baseline != 0)
		r->change = (r->candidate - r->baseline) / fabs(r->baseline);
	else if (r->candidate == 0)
		r->change = 0;
	bmean = mean(b, nb);
	cmean = mean(c, nc);
	if (bmean != 0)
		r->mean_ratio = cmean / bmean;
	else if (cmean == 0)
		r->mean_ratio = 1;

	if (m->mann_whitney)
		classify_mw(r, m, b, nb, c, nc, conf_level);
	else
		snprintf(r->reason, sizeof(r->reason), "all thresholds hold");

	for (size_t i = 0; i < m->n_rules; i++) {
		const struct co_judge_rule *rule = &m->rules[i];
		double limit = rule_limit(rule, r->baseline);

		if (rule_holds(rule, r->candidate, limit))
			continue;
		r->violated_rule = (int)i;
		r->classification = rule->op == CO_JUDGE_LE || rule->op == CO_JUDGE_LT
					    ? CO_JUDGE_HIGH
					    : CO_JUDGE_LOW;
		if (rule->kind == CO_JUDGE_RULE_ABSOLUTE)
			snprintf(r->reason, sizeof(r->reason), "candidate %s %.4g violates '%s'",
				 agg_names[m->aggregate], r->candidate, rule->text);
		else
			snprintf(r->reason, sizeof(r->reason),
				 "candidate %s %.4g violates '%s' (limit %.4g from baseline "
				 "%.4g)",
				 agg_names[m->aggregate], r->candidate, rule->text, limit,
				 r->baseline);
		break;
	}
	if (r->violated_rule < 0 && !m->mann_whitney)
		r->classification = CO_JUDGE_PASS;
out:
	switch (r->classification) {
	case CO_JUDGE_PASS:
		r->scored = 1;
		break;
	case CO_JUDGE_HIGH:
	case CO_JUDGE_LOW:
	case CO_JUDGE_ERROR:
		r->scored = r->failed = 1;
		break;
	case CO_JUDGE_NODATA:
		r->scored = r->failed = m->must_have_data;
		break;
	}
	free(b);
	free(c);
}

/* ---- scoring ---- */

static double configured_weight(const struct co_judge_config *cfg, const char *group,
				int *found)
{
	for (size_t i = 0; i < cfg->n_weights; i++)
		if (strcmp(cfg->weights[i].name, group) == 0) {
			*found = 1;
			return cfg->weights[i].weight;
		}
	*found = 0;
	return 0;
}

static void score(struct co_judge_result *res, const struct co_judge_config *cfg)
{
	double configured_sum = 0, share, wsum = 0, acc = 0;
	size_t unweighted = 0, scored_groups = 0;
	const char *critical = NULL;
	enum co_judge_class critical_class = CO_JUDGE_PASS;

	res->groups = co_calloc(res->n_metrics + 1, sizeof(*res->groups));
	for (size_t i = 0; i < res->n_metrics; i++) {
		const struct co_judge_metric_result *r = &res->metrics[i];
		struct co_judge_group_result *g = NULL;

		for (size_t k = 0; k < res->n_groups; k++)
			if (strcmp(res->groups[k].name, r->metric->group) == 0)
				g = &res->groups[k];
		if (!g) {
			g = &res->groups[res->n_groups++];
			g->name = co_strdup(r->metric->group);
		}
		g->n_scored += (size_t)r->scored;
		g->n_pass += (size_t)(r->scored && !r->failed);
		if (r->metric->critical && r->failed && !critical) {
			critical = r->metric->name;
			critical_class = r->classification;
		}
	}
	for (size_t i = 0; i < cfg->n_weights; i++)
		configured_sum += cfg->weights[i].weight;
	for (size_t k = 0; k < res->n_groups; k++) {
		int found;

		res->groups[k].weight = configured_weight(cfg, res->groups[k].name, &found);
		unweighted += (size_t)!found;
	}
	/* Kayenta: groups without a weight share what is left of 100, equally. */
	share = unweighted && configured_sum < 100 ? (100 - configured_sum) / (double)unweighted
						   : 0;
	for (size_t k = 0; k < res->n_groups; k++) {
		struct co_judge_group_result *g = &res->groups[k];
		int found;

		configured_weight(cfg, g->name, &found);
		if (!found)
			g->weight = share;
		g->score = g->n_scored ? 100.0 * (double)g->n_pass / (double)g->n_scored : NAN;
		if (g->n_scored) {
			wsum += g->weight;
			acc += g->weight * g->score;
			scored_groups++;
		}
	}
	if (scored_groups && wsum > 0) {
		res->score = acc / wsum;
	} else if (scored_groups) {
		/* all scored groups weigh 0: fall back to equal weights */
		for (size_t k = 0; k < res->n_groups; k++)
			if (res->groups[k].n_scored)
				acc += res->groups[k].score;
		res->score = acc / (double)scored_groups;
	} else {
		res->score = 0;
	}
	res->pass_score = cfg->pass_score;
	res->marginal_score = cfg->marginal_score;
	if (critical) {
		res->critical_failure = 1;
		res->score = 0;
		res->verdict = CO_JUDGE_VERDICT_FAIL;
		snprintf(res->reason, sizeof(res->reason), "critical metric '%s' is %s", critical,
			 co_judge_class_name(critical_class));
	} else if (!scored_groups) {
		res->verdict = CO_JUDGE_VERDICT_FAIL;
		snprintf(res->reason, sizeof(res->reason), "no metric had data to judge");
	} else if (res->score >= cfg->pass_score) {
		res->verdict = CO_JUDGE_VERDICT_PASS;
		snprintf(res->reason, sizeof(res->reason), "score %.1f >= pass %.1f", res->score,
			 cfg->pass_score);
	} else if (res->score >= cfg->marginal_score) {
		res->verdict = CO_JUDGE_VERDICT_MARGINAL;
		snprintf(res->reason, sizeof(res->reason),
			 "score %.1f below pass %.1f but >= marginal %.1f: needs approval",
			 res->score, cfg->pass_score, cfg->marginal_score);
	} else {
		res->verdict = CO_JUDGE_VERDICT_FAIL;
		snprintf(res->reason, sizeof(res->reason), "score %.1f < marginal %.1f",
			 res->score, cfg->marginal_score);
	}
}

int co_judge_run(struct co_judge_result **ret_res, const struct co_judge_config *cfg,
		 const struct co_judge_input *in, struct co_error *err)
{
	struct co_judge_result *res;

	if (!cfg || cfg->n_metrics == 0)
		return co_error_set(err, -EINVAL, "judge: no metrics configured");
	res = co_calloc(1, sizeof(*res));
	res->metrics = co_calloc(cfg->n_metrics, sizeof(*res->metrics));
	res->n_metrics = cfg->n_metrics;
	for (size_t i = 0; i < cfg->n_metrics; i++)
		classify(&res->metrics[i], &cfg->metrics[i], &in[i], cfg->conf_level);
	score(res, cfg);
	*ret_res = res;
	return 0;
}

void co_judge_result_free(struct co_judge_result *res)
{
	if (!res)
		return;
	for (size_t k = 0; k < res->n_groups; k++)
		free(res->groups[k].name);
	free(res->groups);
	free(res->metrics);
	free(res);
}

/* ---- JSON ---- */

/* JSON has no NaN or infinities: those become null. */
static json_t *num(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *co_judge_result_json(const struct co_judge_result *res)
{
	json_t *metrics = json_array(), *groups = json_array();

	for (size_t i = 0; i < res->n_metrics; i++) {
		const struct co_judge_metric_result *r = &res->metrics[i];
		const struct co_judge_metric *m = r->metric;
		json_t *rules = json_array(), *o;

		for (size_t k = 0; k < m->n_rules; k++)
			json_array_append_new(rules, json_string(m->rules[k].text));
		o = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b, s:s, s:s, s:o, s:o, s:o, s:o, "
			      "s:I, s:I, s:o, s:b, s:b}",
			      "name", m->name, "group", m->group, "direction",
			      co_judge_direction_name(m->direction), "aggregate",
			      agg_names[m->aggregate], "critical", m->critical,
			      "mustHaveData", m->must_have_data, "classification",
			      co_judge_class_name(r->classification), "reason", r->reason,
			      "baseline", num(r->baseline), "candidate", num(r->candidate),
			      "change", num(r->change), "meanRatio", num(r->mean_ratio),
			      "baselineSamples", (json_int_t)r->n_baseline, "candidateSamples",
			      (json_int_t)r->n_candidate, "thresholds", rules, "scored",
			      r->scored, "failed", r->failed);
		if (r->violated_rule >= 0)
			json_object_set_new(o, "violatedThreshold",
					    json_string(m->rules[r->violated_rule].text));
		if (r->mw_done)
			json_object_set_new(
				o, "mannWhitney",
				json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "u",
					  num(r->mw.u), "z", num(r->mw.z), "pValue",
					  num(r->mw.p_value), "estimate", num(r->mw.estimate),
					  "ciLow", num(r->mw.ci_low), "ciHigh", num(r->mw.ci_high),
					  "confidenceLevel", num(r->mw.conf_level), "tolerance",
					  num(r->bound), "effectSize", num(m->effect_size)));
		json_array_append_new(metrics, o);
	}
	for (size_t k = 0; k < res->n_groups; k++) {
		const struct co_judge_group_result *g = &res->groups[k];

		json_array_append_new(groups,
				      json_pack("{s:s, s:o, s:o, s:I, s:I}", "name", g->name,
						"weight", num(g->weight), "score", num(g->score),
						"passed", (json_int_t)g->n_pass, "scored",
						(json_int_t)g->n_scored));
	}
	return json_pack("{s:o, s:o, s:o, s:b, s:s, s:s, s:o, s:o}", "metrics", metrics,
			 "groups", groups, "score", num(res->score), "criticalFailure",
			 res->critical_failure, "verdict", co_judge_verdict_name(res->verdict),
			 "reason", res->reason, "passScore", num(res->pass_score),
			 "marginalScore", num(res->marginal_score));
}
