/*
 * `cutover compare`: judge a candidate cluster against a baseline cluster from
 * Prometheus data over one window, print every number behind the verdict, and exit
 * 0 on Pass, 1 on Fail or Marginal (Marginal needs a human's approval), 2 on usage.
 *
 * The command wires the pieces on one loop: HTTP client -> Prometheus client ->
 * comparison driver -> judge. SIGINT cancels the queries in flight.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "analysis/compare.h"
#include "analysis/judge.h"
#include "base/log.h"
#include "base/time.h"
#include "base/yaml.h"
#include "clients/prom.h"
#include "net/http-client.h"

static const char usage_text[] =
	"usage: cutover compare --prometheus URL --baseline CLUSTER --candidate CLUSTER\n"
	"                       [--window 5m] [--step 15s] [--namespace NS] [--app APP]\n"
	"                       [--config FILE | --preset kubesim|istio|nginx]\n"
	"                       [--timeout 30s] [-o table|json]\n"
	"\n"
	"Compare the candidate cluster with the baseline cluster over the last WINDOW:\n"
	"each metric's query is run for both clusters as a range query, then judged with\n"
	"its threshold rules and a Mann-Whitney U test. NS and APP are PromQL regexes\n"
	"(default '.*'). FILE is YAML or JSON with passScore, marginalScore,\n"
	"confidenceLevel, interval, groups and metrics (or preset plus overrides).\n"
	"\n"
	"exit status: 0 Pass, 1 Fail or Marginal (Marginal needs approval), 2 usage\n";

struct run {
	uv_loop_t loop;
	uv_signal_t sigint;
	struct co_http_client *http;
	struct co_prom_client *prom;
	struct co_compare *cmp;
	struct co_compare_result *res;
	struct co_error err;
	int status;
	int done;
};

static void on_sigint(uv_signal_t *h, int signum)
{
	struct run *r = h->data;

	if (r->cmp && !r->done)
		co_compare_cancel(r->cmp);
}

static void on_http_closed(void *data)
{
	(void)data;
}

static void on_compared(int status, struct co_compare_result *res,
			const struct co_error *err, void *data)
{
	struct run *r = data;

	r->done = 1;
	r->status = status;
	r->res = res;
	r->cmp = NULL;
	if (status < 0)
		co_error_copy(&r->err, err);
	uv_close((uv_handle_t *)&r->sigint, NULL);
	co_http_client_close(r->http, on_http_closed, r);
}

static int load_config(struct co_judge_config **ret, const char *file, const char *preset)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = NULL;
	int rc;

	if (!file) {
		rc = co_judge_config_preset(ret, preset ? preset : "kubesim", &err);
		if (rc < 0)
			return co_cli_usage_error("compare", "%s", err.msg);
		return 0;
	}
	rc = co_yaml_load_file(&docs, file, &err);
	if (rc == 0 && json_array_size(docs) != 1)
		rc = co_error_set(&err, -EINVAL, "'%s': expected one document, found %zu", file,
				  json_array_size(docs));
	if (rc == 0 && preset && !json_object_get(json_array_get(docs, 0), "preset"))
		json_object_set_new(json_array_get(docs, 0), "preset", json_string(preset));
	if (rc == 0) {
		rc = co_judge_config_from_json(ret, json_array_get(docs, 0), &err);
		if (rc < 0)
			co_error_prefix(&err, "'%s'", file);
	}
	json_decref(docs);
	if (rc < 0) {
		fprintf(stderr, "cutover compare: %s\n", err.msg);
		return CO_EXIT_USAGE;
	}
	return 0;
}

static const char *fmt_num(double v, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.4g", v);
	return buf;
}

static const char *fmt_change(double v, char *buf, size_t n)
{
	if (isnan(v))
		snprintf(buf, n, "n/a");
	else
		snprintf(buf, n, "%+.1f%%", v * 100);
	return buf;
}

static void print_table(const struct co_compare_result *res)
{
	const struct co_judge_result *j = res->judge;
	size_t wname = 6, wrule = 4;
	char b1[32], b2[32], b3[32], b4[32], b5[32], b6[32], rule[64];

	for (size_t i = 0; i < j->n_metrics; i++) {
		const struct co_judge_metric *m = j->metrics[i].metric;
		size_t len = 0;

		if (strlen(m->name) > wname)
			wname = strlen(m->name);
		for (size_t k = 0; k < m->n_rules; k++)
			len += strlen(m->rules[k].text) + (k ? 2 : 0);
		if (len > wrule)
			wrule = len < 40 ? len : 40;
	}
	printf("%-*s  %-10s  %-10s  %-8s  %-*s  %-6s  %-9s  %s\n", (int)wname, "METRIC",
	       "BASELINE", "CANDIDATE", "CHANGE", (int)wrule, "RULE", "CLASS", "P-VALUE",
	       "SHIFT (CI)");
	for (size_t i = 0; i < j->n_metrics; i++) {
		const struct co_judge_metric_result *r = &j->metrics[i];
		const struct co_judge_metric *m = r->metric;

		rule[0] = '\0';
		for (size_t k = 0; k < m->n_rules; k++) {
			if (k)
				strncat(rule, ", ", sizeof(rule) - strlen(rule) - 1);
			strncat(rule, m->rules[k].text, sizeof(rule) - strlen(rule) - 1);
		}
		if (!rule[0])
			snprintf(rule, sizeof(rule), "-");
		printf("%-*s  %-10s  %-10s  %-8s  %-*s  %-6s  ", (int)wname, m->name,
		       fmt_num(r->baseline, b1, sizeof(b1)),
		       fmt_num(r->candidate, b2, sizeof(b2)),
		       fmt_change(r->change, b3, sizeof(b3)), (int)wrule, rule,
		       co_judge_class_name(r->classification));
		if (r->mw_done)
			printf("%-9.3g  %s (%s .. %s)\n", r->mw.p_value,
			       fmt_num(r->mw.estimate, b4, sizeof(b4)),
			       fmt_num(r->mw.ci_low, b5, sizeof(b5)),
			       fmt_num(r->mw.ci_high, b6, sizeof(b6)));
		else
			printf("%-9s  -\n", "-");
	}
	printf("\n");
	for (size_t i = 0; i < j->n_metrics; i++) {
		const struct co_judge_metric_result *r = &j->metrics[i];

		printf("%-*s  %s [%zu/%zu samples]\n", (int)wname, r->metric->name, r->reason,
		       r->n_baseline, r->n_candidate);
	}
	printf("\ngroups:");
	for (size_t k = 0; k < j->n_groups; k++) {
		const struct co_judge_group_result *g = &j->groups[k];

		if (isnan(g->score))
			printf(" %s (weight %.4g) not scored;", g->name, g->weight);
		else
			printf(" %s (weight %.4g) %.1f [%zu/%zu];", g->name, g->weight, g->score,
			       g->n_pass, g->n_scored);
	}
	printf("\nscore %.1f (pass >= %.4g, marginal >= %.4g)\n", j->score, j->pass_score,
	       j->marginal_score);
	printf("verdict: %s: %s\n", co_judge_verdict_name(j->verdict), j->reason);
}

static int parse_seconds(const char *flag, const char *s, double *ret)
{
	int64_t ms;

	if (co_time_parse_duration(s, &ms) < 0 || ms <= 0)
		return co_cli_usage_error("compare", "%s '%s' is not a positive duration",
					  flag, s);
	*ret = (double)ms / 1000;
	return 0;
}

int cmd_compare(int argc, char **argv)
{
	const char *url = NULL, *baseline = NULL, *candidate = NULL, *ns = NULL,
		   *app = NULL, *config = NULL, *preset = NULL, *output = "table";
	const char *window_s = "5m", *step_s = "15s", *timeout_s = "30s";
	struct co_judge_config *cfg = NULL;
	struct co_compare_params params = { 0 };
	struct co_prom_opts popts = { 0 };
	struct run r = { 0 };
	double window = 0, step = 0, timeout = 0;
	int rc, exit_code = CO_EXIT_FAILED;

	for (int i = 1; i < argc; i++) {
		const struct {
			const char *name;
			const char **dst;
		} opts[] = {
			{ "--prometheus", &url }, { "--baseline", &baseline },
			{ "--candidate", &candidate }, { "--window", &window_s },
			{ "--step", &step_s }, { "--namespace", &ns }, { "--app", &app },
			{ "--config", &config }, { "--preset", &preset }, { "-o", &output },
			{ "--output", &output }, { "--timeout", &timeout_s },
		};
		const char *arg = argv[i], *eq = strchr(arg, '=');
		size_t k, nlen = eq ? (size_t)(eq - arg) : strlen(arg);

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			fputs(usage_text, stdout);
			return CO_EXIT_OK;
		}
		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, arg, nlen) == 0)
				break;
		if (k == sizeof(opts) / sizeof(opts[0]))
			return co_cli_usage_error("compare", "unknown option '%s'", arg);
		if (eq) {
			*opts[k].dst = eq + 1;
		} else {
			if (i + 1 >= argc)
				return co_cli_usage_error("compare", "%s needs a value", arg);
			*opts[k].dst = argv[++i];
		}
	}
	if (!url || !baseline || !candidate)
		return co_cli_usage_error("compare",
					  "--prometheus, --baseline and --candidate are required");
	if (strcmp(output, "table") != 0 && strcmp(output, "json") != 0)
		return co_cli_usage_error("compare", "-o '%s' is not table or json", output);
	if ((rc = parse_seconds("--window", window_s, &window)) != 0 ||
	    (rc = parse_seconds("--step", step_s, &step)) != 0 ||
	    (rc = parse_seconds("--timeout", timeout_s, &timeout)) != 0)
		return rc;
	if (step > window)
		return co_cli_usage_error("compare", "--step %s is longer than --window %s",
					  step_s, window_s);
	if ((rc = load_config(&cfg, config, preset)) != 0)
		return rc;

	params.baseline = baseline;
	params.candidate = candidate;
	params.namespace_re = ns;
	params.app_re = app;
	params.end = floor((double)co_time_wall_ms() / 1000);
	params.start = params.end - window;
	params.step = step;
	params.query_timeout_ms = (uint64_t)(timeout * 1000);
	popts.url = url;
	popts.timeout_ms = params.query_timeout_ms;

	uv_loop_init(&r.loop);
	if (co_http_client_new(&r.http, &r.loop, &r.err) < 0)
		goto fail_loop;
	if (co_prom_client_new(&r.prom, r.http, &popts, &r.err) < 0) {
		co_http_client_close(r.http, on_http_closed, &r);
		uv_run(&r.loop, UV_RUN_DEFAULT);
		fprintf(stderr, "cutover compare: %s\n", r.err.msg);
		exit_code = CO_EXIT_USAGE;
		goto out_loop;
	}
	uv_signal_init(&r.loop, &r.sigint);
	r.sigint.data = &r;
	uv_signal_start(&r.sigint, on_sigint, SIGINT);
	if (co_compare_start(&r.cmp, r.prom, cfg, &params, on_compared, &r, &r.err) < 0) {
		uv_close((uv_handle_t *)&r.sigint, NULL);
		co_http_client_close(r.http, on_http_closed, &r);
		uv_run(&r.loop, UV_RUN_DEFAULT);
		goto fail_loop;
	}
	co_log_debug("compare", "judging '%s' against '%s' over %s", candidate, baseline,
		     window_s);
	uv_run(&r.loop, UV_RUN_DEFAULT);
	if (r.status < 0) {
		fprintf(stderr, "cutover compare: %s\n", r.err.msg);
		exit_code = r.status == -ECANCELED ? CO_EXIT_SIGINT : CO_EXIT_FAILED;
		goto out_loop;
	}
	if (strcmp(output, "json") == 0) {
		json_t *j = co_compare_result_json(r.res);

		json_object_set_new(j, "baseline", json_string(baseline));
		json_object_set_new(j, "candidate", json_string(candidate));
		json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
		putchar('\n');
		json_decref(j);
	} else {
		printf("baseline '%s', candidate '%s', window %s at %s steps\n\n", baseline,
		       candidate, window_s, step_s);
		print_table(r.res);
	}
	exit_code = r.res->judge->verdict == CO_JUDGE_VERDICT_PASS ? CO_EXIT_OK
								    : CO_EXIT_FAILED;
	goto out_loop;
fail_loop:
	fprintf(stderr, "cutover compare: %s\n", r.err.msg);
out_loop:
	co_compare_result_free(r.res);
	co_prom_client_free(r.prom);
	if (uv_loop_close(&r.loop) != 0)
		co_log_debug("compare", "loop closed with handles still open");
	co_judge_config_free(cfg);
	return exit_code;
}
