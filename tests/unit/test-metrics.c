/*
 * Metrics registry: counters, gauges, histograms with labels, escaping, and the text
 * format checked by Prometheus' own `promtool check metrics` when it is installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/metrics.h"

static void test_render(void **state)
{
	static const char *const op_labels[] = { "operation", "result", NULL };
	static const char *const stage_labels[] = { "stage", NULL };
	static const double buckets[] = { 1, 10, 60 };
	struct co_metrics *m = co_metrics_new();
	struct co_metric *ops = co_metrics_family(m, "cutover_operations_total",
						  "Operations by result.", CO_METRIC_COUNTER,
						  op_labels, NULL, 0);
	struct co_metric *up = co_metrics_family(m, "cutover_up", "Whether the runner is up.",
						 CO_METRIC_GAUGE, NULL, NULL, 0);
	struct co_metric *dur = co_metrics_family(m, "cutover_stage_duration_seconds",
						  "Stage durations.", CO_METRIC_HISTOGRAM,
						  stage_labels, buckets, 3);
	struct co_buf out = CO_BUF_INIT;
	const char *v1[] = { "apply", "succeeded", NULL };
	const char *v2[] = { "apply \"x\"\n", "failed", NULL };
	const char *st[] = { "preflight", NULL };
	const char *none[] = { NULL };
	const char *wrong[] = { "only-one", NULL };

	assert_non_null(ops);
	assert_non_null(up);
	assert_non_null(dur);
	co_metric_add(ops, v1, 1);
	co_metric_add(ops, v1, 2);
	co_metric_add(ops, v1, -5); /* counters never go down */
	co_metric_add(ops, v2, 1);
	co_metric_add(ops, wrong, 1); /* ignored: label count mismatch */
	co_metric_set(up, none, 1);
	co_metric_observe(dur, st, 0.5);
	co_metric_observe(dur, st, 30);
	co_metric_observe(dur, st, 120);
	assert_true(co_metric_get(ops, v1) == 3);
	co_metrics_render(m, &out);
	assert_non_null(strstr(out.data, "# TYPE cutover_operations_total counter\n"));
	assert_non_null(strstr(out.data, "cutover_operations_total{operation=\"apply\","
					 "result=\"succeeded\"} 3\n"));
	assert_non_null(strstr(out.data, "operation=\"apply \\\"x\\\"\\n\""));
	assert_non_null(strstr(out.data, "cutover_up 1\n"));
	assert_non_null(strstr(out.data, "cutover_stage_duration_seconds_bucket{stage="
					 "\"preflight\",le=\"1\"} 1\n"));
	assert_non_null(strstr(out.data, "le=\"60\"} 2\n"));
	assert_non_null(strstr(out.data, "le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(out.data, "cutover_stage_duration_seconds_sum{stage="
					 "\"preflight\"} 150.5\n"));
	assert_non_null(strstr(out.data, "cutover_stage_duration_seconds_count{stage="
					 "\"preflight\"} 3\n"));

	if (access("/usr/bin/promtool", X_OK) == 0) {
		char path[] = "/tmp/co-metrics-XXXXXX";
		int fd = mkstemp(path);
		char *cmd;

		assert_true(fd >= 0);
		assert_int_equal(write(fd, out.data, out.len), (ssize_t)out.len);
		close(fd);
		cmd = co_asprintf("promtool check metrics < %s", path);
		assert_int_equal(system(cmd), 0);
		free(cmd);
		unlink(path);
	}
	co_buf_release(&out);
	co_metrics_free(m);
}

static void test_invalid(void **state)
{
	static const char *const bad_label[] = { "__reserved", NULL };
	static const char *const le[] = { "le", NULL };
	static const double unsorted[] = { 5, 1 };
	struct co_metrics *m = co_metrics_new();

	assert_null(co_metrics_family(m, "9bad", "", CO_METRIC_COUNTER, NULL, NULL, 0));
	assert_null(co_metrics_family(m, "ok_name", "", CO_METRIC_COUNTER, bad_label, NULL, 0));
	assert_null(co_metrics_family(m, "h", "", CO_METRIC_HISTOGRAM, le, NULL, 0));
	assert_null(co_metrics_family(m, "h2", "", CO_METRIC_HISTOGRAM, NULL, unsorted, 2));
	assert_non_null(co_metrics_family(m, "c", "", CO_METRIC_COUNTER, NULL, NULL, 0));
	assert_null(co_metrics_family(m, "c", "", CO_METRIC_GAUGE, NULL, NULL, 0));
	assert_true(co_metrics_valid_name("a:b_c", 0));
	assert_false(co_metrics_valid_name("a:b", 1));
	co_metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_invalid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
