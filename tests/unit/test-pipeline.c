/*
 * Engine tests with scripted stages: ordering and journaling, transient retries,
 * permanent failure with reverse-order cleanup, --keep-failed, deadlines, a graceful
 * stop resumed from the stage's journaled state, the lock, and the summary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/time.h"
#include "engine/pipeline.h"

/* What each scripted stage does, per test. */
struct script {
	int fail_times[4];        /* transient failures before success */
	int fail_permanent[4];    /* fail with -EINVAL */
	int hang[4];              /* never finish until cancelled */
	int stop_in[4];           /* set state "phase-a" then stop the pipeline */
	char log[512];            /* "a b c- ..." trace of starts/cleanups */
	char resumed_from[4][32];
	struct co_pipeline *p;
};

static struct script S;

struct pending {
	uv_timer_t t;
	struct co_stage_run *run;
	int status;
};

static void pending_closed(uv_handle_t *h)
{
	free(h->data);
}

static void pending_fire(uv_timer_t *t)
{
	struct pending *pd = t->data;
	struct co_error err = CO_ERROR_INIT;

	if (pd->status < 0)
		co_error_set(&err, pd->status, "scripted failure %d", pd->status);
	co_stage_done(pd->run, pd->status, pd->status < 0 ? &err : NULL);
	uv_close((uv_handle_t *)t, pending_closed);
}

/* Finish the stage from the loop a moment later, like real stages do. */
static void later(struct co_stage_run *run, int status)
{
	struct pending *pd = co_calloc(1, sizeof(*pd));

	pd->run = run;
	pd->status = status;
	uv_timer_init(co_stage_loop(run), &pd->t);
	pd->t.data = pd;
	uv_timer_start(&pd->t, pending_fire, 1, 0);
}

static int idx(struct co_stage_run *run)
{
	return co_stage_name(run)[0] - 'a';
}

static void trace(const char *fmt, ...)
{
	va_list ap;
	size_t n = strlen(S.log);

	va_start(ap, fmt);
	vsnprintf(S.log + n, sizeof(S.log) - n, fmt, ap);
	va_end(ap);
}

static int stage_start(struct co_stage_run *run, const char *state, const json_t *details,
		       struct co_error *err)
{
	int i = idx(run);

	trace("%s ", co_stage_name(run));
	if (state)
		snprintf(S.resumed_from[i], sizeof(S.resumed_from[i]), "%s", state);
	if (S.stop_in[i] && !state) {
		json_t *d = json_pack("{s:i}", "step", 1);

		assert_int_equal(co_stage_set_state(run, "phase-a", d, err), 0);
		json_decref(d);
		co_stage_waiting(run, "something slow");
		co_pipeline_stop(S.p);
		return 0;
	}
	if (S.hang[i]) {
		co_stage_waiting(run, "Kustomization flux-system/tenants Ready");
		return 0;
	}
	if (S.fail_times[i] > 0) {
		S.fail_times[i]--;
		later(run, -ECONNREFUSED);
		return 0;
	}
	if (S.fail_permanent[i]) {
		later(run, -EINVAL);
		return 0;
	}
	co_stage_record(run, "value", json_integer(i * 10), err);
	later(run, 0);
	return 0;
}

static void stage_cancel(struct co_stage_run *run)
{
	later(run, -ECANCELED);
}

static int stage_cleanup(struct co_stage_run *run, struct co_error *err)
{
	trace("%s- ", co_stage_name(run));
	later(run, 0);
	return 0;
}

static const struct co_stage_ops stage_a = { "a", "first", 60000, true, stage_start,
					     stage_cancel, stage_cleanup };
static const struct co_stage_ops stage_b = { "b", "second", 60000, true, stage_start,
					     stage_cancel, NULL };
static const struct co_stage_ops stage_c = { "c", "third", 20000, true, stage_start,
					     stage_cancel, stage_cleanup };
static const struct co_stage_ops *const stages[] = { &stage_a, &stage_b, &stage_c, NULL };

struct outcome {
	int calls;
	int status;
	char failed[32];
	char msg[512];
	int cleaned;
};

static void done_cb(const struct co_pipeline_result *res, void *data)
{
	struct outcome *o = data;

	o->calls++;
	o->status = res->status;
	snprintf(o->failed, sizeof(o->failed), "%s", res->failed_stage ? res->failed_stage : "");
	snprintf(o->msg, sizeof(o->msg), "%s", res->err.msg);
	o->cleaned = res->cleaned_up;
}

static char *state_dir(void)
{
	char tmpl[] = "/tmp/co-pipeline-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return co_strdup(tmpl);
}

static void run_pipeline(const char *dir, const json_t *req, bool keep_failed,
			 struct outcome *o, int expect_open)
{
	uv_loop_t loop;
	struct co_pipeline_opts opts = { .state_dir = dir, .id = "cluster1-to-cluster2",
					 .request = req, .stages = stages,
					 .keep_failed = keep_failed };
	struct co_error err = CO_ERROR_INIT;
	struct co_pipeline *p = NULL;
	int rc;

	uv_loop_init(&loop);
	rc = co_pipeline_open(&p, &loop, &opts, NULL, &err);
	assert_int_equal(rc, expect_open);
	if (rc == 0) {
		S.p = p;
		assert_int_equal(co_pipeline_run(p, done_cb, o, &err), 0);
		uv_run(&loop, UV_RUN_DEFAULT);
		co_pipeline_free(p);
		uv_run(&loop, UV_RUN_DEFAULT);
	} else {
		snprintf(o->msg, sizeof(o->msg), "%s", err.msg);
	}
	assert_int_equal(uv_loop_close(&loop), 0);
}

static json_t *request(void)
{
	return json_pack("{s:s, s:s, s:s}", "old", "cluster1", "new", "cluster2", "image",
			 "rancher/k3s:v1.27.1-k3s1");
}

static void test_success_and_rerun(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 }, again = { 0 };
	json_t *sum = NULL;
	struct co_error err = CO_ERROR_INIT;

	memset(&S, 0, sizeof(S));
	run_pipeline(dir, req, false, &o, 0);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, 0);
	assert_string_equal(S.log, "a b c ");
	run_pipeline(dir, req, false, &again, -EALREADY);
	assert_non_null(strstr(again.msg, "already succeeded"));

	assert_int_equal(co_pipeline_summary(&sum, dir, "cluster1-to-cluster2", stages, &err), 0);
	assert_string_equal(json_string_value(json_object_get(sum, "state")), "succeeded");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(sum, "stages"), 2), "state")),
			    "done");
	assert_int_equal(json_integer_value(json_object_get(
				 json_object_get(json_object_get(sum, "outputs"), "b"), "value")),
			 10);
	json_decref(sum);
	json_decref(req);
	free(dir);
}

static void test_transient_retry(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 };

	memset(&S, 0, sizeof(S));
	S.fail_times[1] = 2;
	run_pipeline(dir, req, false, &o, 0);
	assert_int_equal(o.status, 0);
	assert_string_equal(S.log, "a b b b c ");
	json_decref(req);
	free(dir);
}

static void test_permanent_failure_cleans_up_in_reverse(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 };

	memset(&S, 0, sizeof(S));
	S.fail_permanent[2] = 1;
	run_pipeline(dir, req, false, &o, 0);
	assert_int_equal(o.status, -EINVAL);
	assert_string_equal(o.failed, "c");
	assert_true(o.cleaned);
	assert_non_null(strstr(o.msg, "stage 'c': scripted failure"));
	/* c and a have cleanups; b has none; reverse order. */
	assert_string_equal(S.log, "a b c c- a- ");
	json_decref(req);
	free(dir);
}

static void test_keep_failed(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 };

	memset(&S, 0, sizeof(S));
	S.fail_permanent[1] = 1;
	run_pipeline(dir, req, true, &o, 0);
	assert_int_equal(o.status, -EINVAL);
	assert_false(o.cleaned);
	assert_string_equal(S.log, "a b ");
	json_decref(req);
	free(dir);
}

static void test_deadline(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 };

	memset(&S, 0, sizeof(S));
	S.hang[2] = 1; /* stage c: 20 s deadline, 200 ms at the 0.01 scale below */
	run_pipeline(dir, req, false, &o, 0);
	assert_int_equal(o.status, -ETIMEDOUT);
	assert_string_equal(o.failed, "c");
	assert_non_null(strstr(o.msg, "deadline"));
	assert_non_null(strstr(o.msg, "Kustomization flux-system/tenants Ready"));
	assert_string_equal(S.log, "a b c c- a- ");
	json_decref(req);
	free(dir);
}

static void test_stop_and_resume(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	struct outcome o = { 0 }, r = { 0 }, bad = { 0 };
	json_t *other = json_pack("{s:s}", "old", "x");

	memset(&S, 0, sizeof(S));
	S.stop_in[1] = 1;
	run_pipeline(dir, req, false, &o, 0);
	assert_int_equal(o.status, -EINTR);
	assert_non_null(strstr(o.msg, "cutover resume"));
	assert_string_equal(S.log, "a b ");

	/* Another request under the same id is refused. */
	run_pipeline(dir, other, false, &bad, -EEXIST);

	/* Resume: a is skipped, b restarts from its journaled state. */
	S.log[0] = '\0';
	run_pipeline(dir, NULL, false, &r, 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(S.log, "b c ");
	assert_string_equal(S.resumed_from[1], "phase-a");
	json_decref(other);
	json_decref(req);
	free(dir);
}

static void test_lock_and_missing(void **state)
{
	char *dir = state_dir();
	json_t *req = request();
	uv_loop_t loop;
	struct co_pipeline_opts opts = { .state_dir = dir, .id = "p1", .request = req,
					 .stages = stages };
	struct co_pipeline_opts resume = { .state_dir = dir, .id = "nope", .stages = stages };
	struct co_pipeline_opts badid = { .state_dir = dir, .id = "Bad/Id", .stages = stages };
	struct co_error err = CO_ERROR_INIT;
	struct co_pipeline *p = NULL, *q = NULL;

	uv_loop_init(&loop);
	assert_int_equal(co_pipeline_open(&p, &loop, &opts, NULL, &err), 0);
	assert_int_equal(co_pipeline_open(&q, &loop, &opts, NULL, &err), -EBUSY);
	assert_non_null(strstr(err.msg, "held by pid"));
	assert_int_equal(co_pipeline_open(&q, &loop, &resume, NULL, &err), -ENOENT);
	assert_int_equal(co_pipeline_open(&q, &loop, &badid, NULL, &err), -EINVAL);
	co_pipeline_free(p);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	json_decref(req);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_and_rerun),
		cmocka_unit_test(test_transient_retry),
		cmocka_unit_test(test_permanent_failure_cleans_up_in_reverse),
		cmocka_unit_test(test_keep_failed),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_stop_and_resume),
		cmocka_unit_test(test_lock_and_missing),
	};

	co_time_set_scale(0.01);
	co_log_setup(CO_LOG_OFF, CO_LOG_HUMAN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
