/*
 * Tests for the per-cluster metrics registry: the Prometheus text format (HELP/TYPE
 * once per family, label escaping, cumulative buckets with +Inf, _sum/_count), the
 * cost model and the Flagger and kubesim series.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "sim/metrics.h"

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_requests_and_histogram(void **state)
{
	struct ks_metrics *m = ks_metrics_new();
	struct co_buf b = CO_BUF_INIT;
	const char *t;

	ks_metrics_observe(m, "core", "podinfo", "6.5.0", 200, 0.003);
	ks_metrics_observe(m, "core", "podinfo", "6.5.0", 200, 0.2);
	ks_metrics_observe(m, "core", "podinfo", "6.5.0", 500, 20);
	ks_metrics_observe(m, "core", "we\"ird\\", "1", 200, 0.01);
	assert_int_equal(ks_metrics_requests(m), 4);
	ks_metrics_render(&b, m, NULL);
	t = co_buf_cstr(&b);
	assert_int_equal(count(t, "# TYPE http_requests_total counter\n"), 1);
	assert_int_equal(count(t, "# TYPE http_request_duration_seconds histogram\n"), 1);
	assert_non_null(strstr(t,
			       "http_requests_total{namespace=\"core\",app=\"podinfo\","
			       "version=\"6.5.0\",code=\"200\"} 2\n"));
	assert_non_null(strstr(t, "code=\"500\"} 1\n"));
	assert_non_null(strstr(t, "app=\"we\\\"ird\\\\\""));
	assert_non_null(strstr(t,
			       "http_request_duration_seconds_bucket{namespace=\"core\","
			       "app=\"podinfo\",version=\"6.5.0\",le=\"0.005\"} 1\n"));
	assert_non_null(strstr(t, "version=\"6.5.0\",le=\"0.25\"} 2\n"));
	assert_non_null(strstr(t, "version=\"6.5.0\",le=\"10\"} 2\n"));
	assert_non_null(strstr(t, "version=\"6.5.0\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(t, "http_request_duration_seconds_sum{namespace=\"core\","
				  "app=\"podinfo\",version=\"6.5.0\"} 20.203"));
	assert_non_null(strstr(t,
			       "http_request_duration_seconds_count{namespace=\"core\","
			       "app=\"podinfo\",version=\"6.5.0\"} 3\n"));
	/* every line is a comment or "name{labels} value" */
	for (const char *line = t; *line;) {
		const char *nl = strchr(line, '\n');

		assert_non_null(nl);
		if (*line != '#')
			assert_non_null(memchr(line, ' ', (size_t)(nl - line)));
		line = nl + 1;
	}
	co_buf_release(&b);
	ks_metrics_free(m);
}

static void test_extra_series_and_cost(void **state)
{
	struct ks_metrics *m = ks_metrics_new();
	struct co_buf b = CO_BUF_INIT;
	double cpu = ks_cost_cpu_seconds(100, 1000, 5, 1.0);
	double cpu2 = ks_cost_cpu_seconds(100, 1000, 5, 1.5);
	struct ks_metrics_pod pods[] = {
		{"core", "podinfo-abc-12345", "podinfo", cpu,
		 ks_cost_memory_bytes(64, 0, 1)},
	};
	struct ks_metrics_canary can[] = {{"core", "podinfo", "podinfo", 0, 20, 0}};
	struct ks_metrics_extra x = {.cluster = "c1",
				     .version = "v1.27.1+k3s1",
				     .overhead = 1.5,
				     .pods = pods,
				     .n_pods = 1,
				     .canaries = can,
				     .n_canaries = 1,
				     .objects = 7,
				     .uptime_seconds = 3};
	const char *t;

	assert_true(fabs(cpu - (0.2 + 1000 * 5.2 / 1000)) < 1e-9);
	assert_true(fabs(cpu2 - cpu * 1.5) < 1e-9);
	assert_true(fabs(ks_cost_memory_bytes(64, 0, 2) - 2 * 80 * 1048576.0) < 1e-3);
	ks_metrics_render(&b, m, &x);
	t = co_buf_cstr(&b);
	assert_non_null(strstr(t,
			       "container_cpu_usage_seconds_total{namespace=\"core\","
			       "pod=\"podinfo-abc-12345\",container=\"podinfo\"} 5.4"));
	assert_non_null(
		strstr(t, "container_memory_working_set_bytes{namespace=\"core\","
			  "pod=\"podinfo-abc-12345\",container=\"podinfo\"} 83886080\n"));
	assert_non_null(strstr(t, "flagger_canary_status{name=\"podinfo\","
				  "namespace=\"core\"} 0\n"));
	assert_non_null(strstr(t, "flagger_canary_weight{workload=\"podinfo\","
				  "namespace=\"core\"} 20\n"));
	assert_non_null(strstr(t, "flagger_canary_weight{workload=\"podinfo-primary\","
				  "namespace=\"core\"} 80\n"));
	assert_non_null(strstr(t, "kubesim_version_overhead 1.5\n"));
	assert_non_null(strstr(t, "kubesim_objects 7\n"));
	assert_non_null(strstr(t, "kubesim_cluster_info{cluster=\"c1\","
				  "version=\"v1.27.1+k3s1\"} 1\n"));
	co_buf_release(&b);
	ks_metrics_free(m);
	ks_metrics_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests_and_histogram),
		cmocka_unit_test(test_extra_series_and_cost),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
