/*
 * Built-in metric sets for the judge, produced as the same JSON a user writes in a
 * config file, so a preset can be printed, edited and loaded back.
 *
 * The presets differ only in metric and label names, so one table row describes each
 * and one function builds the metric list: error ratio (critical, absolute
 * threshold), p50 and p99 latency from the histogram (Mann-Whitney plus a threshold
 * relative to the baseline), CPU cores per request and memory working set from
 * cAdvisor (Mann-Whitney plus a Keptn-style "+25%" threshold).
 *
 * Every query filters on the `cluster` label, which Prometheus's scrape config
 * attaches to each cluster's targets, and on namespace/app regexes (".*" when not
 * given). Error ratios add "or on() vector(0)" to the numerator: with no 5xx series
 * at all the ratio is 0, not "no data"; with no traffic at all it stays empty.
 */
#include "analysis/judge.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

struct preset {
	const char *name;
	const char *requests;      /* request counter */
	const char *selector;      /* cluster/namespace/app matchers of its labels */
	const char *error_matcher; /* 5xx matcher */
	const char *histogram;     /* latency histogram buckets */
	const char *latency_suffix;/* metric name suffix showing the unit */
};

#define CLUSTER "cluster=\"{{ cluster }}\""

static const struct preset presets[] = {
	{ "kubesim", "http_requests_total",
	  CLUSTER ",namespace=~\"{{ namespace }}\",app=~\"{{ app }}\"", "code=~\"5..\"",
	  "http_request_duration_seconds_bucket", "" },
	{ "istio", "istio_requests_total",
	  CLUSTER ",reporter=\"destination\",destination_workload_namespace=~\"{{ namespace }}\","
	  "destination_workload=~\"{{ app }}\"", "response_code=~\"5.*\"",
	  "istio_request_duration_milliseconds_bucket", "-ms" },
	{ "nginx", "nginx_ingress_controller_requests",
	  CLUSTER ",namespace=~\"{{ namespace }}\",ingress=~\"{{ app }}\"", "status=~\"5..\"",
	  "nginx_ingress_controller_request_duration_seconds_bucket", "" },
};

#define CADVISOR_SEL CLUSTER ",namespace=~\"{{ namespace }}\",pod=~\"{{ app }}.*\"," \
	"container!=\"\",container!=\"POD\""

static json_t *metric(const char *name, const char *group, char *query /* freed */,
		      const char *threshold)
{
	json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:[s]}", "name", name, "group", group,
			      "query", query, "direction", "increase", "thresholds",
			      threshold);

	free(query);
	return m;
}

static json_t *build(const struct preset *p)
{
	json_t *metrics = json_array(), *m;
	char name[64];

	m = metric("error-ratio", "errors",
		   co_asprintf("(sum(rate(%s{%s,%s}[{{ interval }}])) or on() vector(0)) / "
			       "sum(rate(%s{%s}[{{ interval }}]))",
			       p->requests, p->selector, p->error_matcher, p->requests,
			       p->selector),
		   "<= 0.01");
	json_object_set_new(m, "critical", json_true());
	json_object_set_new(m, "nanStrategy", json_string("replace"));
	json_object_set_new(m, "mannWhitney", json_false());
	json_array_append_new(metrics, m);

	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "latency-%s%s", i ? "p99" : "p50",
			 p->latency_suffix);
		m = metric(name, "latency",
			   co_asprintf("histogram_quantile(%s, sum by (le) (rate(%s{%s}"
				       "[{{ interval }}])))",
				       i ? "0.99" : "0.5", p->histogram, p->selector),
			   "<= baseline * 1.2");
		json_object_set_new(m, "allowedIncrease", json_real(1.1));
		if (i)
			json_object_set_new(m, "mustHaveData", json_true());
		json_array_append_new(metrics, m);
	}

	m = metric("cpu-per-request", "resources",
		   co_asprintf("sum(rate(container_cpu_usage_seconds_total{%s}"
			       "[{{ interval }}])) / sum(rate(%s{%s}[{{ interval }}]))",
			       CADVISOR_SEL, p->requests, p->selector),
		   "<= +25%");
	json_object_set_new(m, "allowedIncrease", json_real(1.1));
	json_array_append_new(metrics, m);
	m = metric("memory-working-set", "resources",
		   co_asprintf("sum(container_memory_working_set_bytes{%s})", CADVISOR_SEL),
		   "<= +25%");
	json_object_set_new(m, "allowedIncrease", json_real(1.1));
	json_array_append_new(metrics, m);

	return json_pack("{s:f, s:f, s:f, s:s, s:{s:i, s:i, s:i}, s:o}", "passScore",
			 CO_JUDGE_DEFAULT_PASS, "marginalScore", CO_JUDGE_DEFAULT_MARGINAL,
			 "confidenceLevel", CO_MW_DEFAULT_CONF_LEVEL, "interval", "1m",
			 "groups", "errors", 40, "latency", 40, "resources", 20, "metrics",
			 metrics);
}

json_t *co_judge_preset_json(const char *name)
{
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcmp(presets[i].name, name) == 0)
			return build(&presets[i]);
	return NULL;
}
