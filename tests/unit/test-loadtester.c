/* Unit tests for the Flagger-loadtester core: webhook commands (202, dedup, 400 for
 * bash/helm and bad input), running a command against a local server, gates and
 * rollback gates with Flagger's 200/202/403 semantics, cancellation on close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "analysis/loadtester.h"
#include "lg-testserver.h"

struct fixture {
	uv_loop_t loop;
	struct ts_server srv;
	struct co_loadtester *lt;
	int done;
	int last_status;
	uint64_t last_requests;
	int closed;
};

static int call(struct fixture *f, const char *path, const char *body, const char *want)
{
	struct co_buf out = CO_BUF_INIT;
	int status = co_loadtester_handle(f->lt, path, body, body ? strlen(body) : 0, &out);

	if (want && !strstr(co_buf_cstr(&out), want))
		fail_msg("%s: answer '%s' lacks '%s'", path, co_buf_cstr(&out), want);
	co_buf_release(&out);
	return status;
}

static void on_cmd_done(const char *canary, const char *cmd, int status,
			const struct co_loadgen_result *r, void *data)
{
	struct fixture *f = data;

	f->done++;
	f->last_status = status;
	f->last_requests = r->requests;
}

static void on_closed(void *data)
{
	struct fixture *f = data;

	f->closed++;
}

static void setup_fixture(struct fixture *f)
{
	struct co_error err = CO_ERROR_INIT;

	memset(f, 0, sizeof(*f));
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(ts_server_start(&f->srv, &f->loop), 0);
	assert_int_equal(co_loadtester_new(&f->lt, &f->loop, NULL, &err), 0);
	co_loadtester_on_done(f->lt, on_cmd_done, f);
}

static void teardown_fixture(struct fixture *f)
{
	if (f->lt)
		co_loadtester_close(f->lt, on_closed, f);
	ts_server_close(&f->srv);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->closed, 1);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_cmd_runs_and_dedups(void **state)
{
	struct fixture f;
	struct co_loadtester_stats st;
	char body[512];

	setup_fixture(&f);
	snprintf(body, sizeof(body),
		 "{\"name\":\"podinfo\",\"namespace\":\"test\",\"phase\":\"Progressing\","
		 "\"checksum\":\"abc\",\"metadata\":{\"type\":\"cmd\",\"cmd\":"
		 "\"hey -z 300ms -q 50 -c 2 -H 'X-Canary: yes' http://127.0.0.1:%d/\"}}",
		 f.srv.port);
	assert_int_equal(call(&f, "/", body, "started for podinfo.test"), 202);
	/* the same command for the same canary while it runs: accepted, not started */
	assert_int_equal(call(&f, "/", body, "already running"), 202);
	co_loadtester_stats(f.lt, &st);
	assert_int_equal(st.started, 1);
	assert_int_equal(st.deduplicated, 1);
	assert_int_equal(st.running, 1);
	uv_run(&f.loop, UV_RUN_ONCE);
	while (f.done == 0)
		uv_run(&f.loop, UV_RUN_ONCE);
	assert_int_equal(f.last_status, 0);
	/* 2 connections x 50/s for 0.3 s */
	assert_true(f.last_requests >= 20 && f.last_requests <= 40);
	assert_true(f.srv.requests >= f.last_requests);
	co_loadtester_stats(f.lt, &st);
	assert_int_equal(st.running, 0);
	assert_int_equal(st.finished, 1);
	/* once finished the same command starts again; close cancels it */
	assert_int_equal(call(&f, "/", body, "started"), 202);
	co_loadtester_stats(f.lt, &st);
	assert_int_equal(st.started, 2);
	teardown_fixture(&f);
	assert_int_equal(f.done, 2);
	assert_int_equal(f.last_status, -ECANCELED);
}

static void test_cmd_rejections(void **state)
{
	struct fixture f;
	struct co_loadtester_stats st;

	setup_fixture(&f);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"type\":\"bash\","
		"\"cmd\":\"curl -s http://x/\"}}", "only native hey commands"), 400);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"type\":\"helmv3\","
		"\"cmd\":\"test run\"}}", "task type 'helmv3' is not supported"), 400);
	assert_int_equal(call(&f, "/", "{\"name\":\"a\",\"namespace\":\"b\"}",
			      "metadata not found"), 400);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"type\":\"cmd\"}}",
		"metadata.cmd is missing"), 400);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"cmd\":"
		"\"curl http://x/\"}}", "only hey commands run natively"), 400);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"cmd\":"
		"\"hey -h2 http://x/\"}}", "'-h2' is not supported"), 400);
	assert_int_equal(call(&f, "/",
		"{\"name\":\"a\",\"namespace\":\"b\",\"metadata\":{\"cmd\":"
		"\"hey -z 1s http://x/ | tee log\"}}", "shell syntax"), 400);
	assert_int_equal(call(&f, "/", "{not json", "decoding the request body failed"),
			 400);
	assert_int_equal(call(&f, "/", "{\"name\":\"a\"}", "name and namespace"), 400);
	assert_int_equal(call(&f, "/", "[]", "not an object"), 400);
	assert_int_equal(call(&f, "/nope", "{}", "not found"), 404);
	co_loadtester_stats(f.lt, &st);
	assert_int_equal(st.started, 0);
	teardown_fixture(&f);
	assert_int_equal(f.done, 0);
}

static void test_gates(void **state)
{
	static const char *const p1 = "{\"name\":\"podinfo\",\"namespace\":\"test\"}";
	static const char *const p2 = "{\"name\":\"podinfo\",\"namespace\":\"prod\"}";
	struct fixture f;

	setup_fixture(&f);
	assert_int_equal(call(&f, "/gate/approve", NULL, "Approved"), 200);
	assert_int_equal(call(&f, "/gate/halt", NULL, "Forbidden"), 403);
	/* closed until opened */
	assert_int_equal(call(&f, "/gate/check", p1, "Forbidden"), 403);
	assert_int_equal(call(&f, "/gate/open", p1, "podinfo.test opened"), 202);
	assert_int_equal(call(&f, "/gate/check", p1, "Approved"), 200);
	/* keyed by name.namespace */
	assert_int_equal(call(&f, "/gate/check", p2, NULL), 403);
	/* the rollback gate is separate */
	assert_int_equal(call(&f, "/rollback/check", p1, "Forbidden"), 403);
	assert_int_equal(call(&f, "/rollback/open", p1, "rollback.podinfo.test opened"),
			 202);
	assert_int_equal(call(&f, "/rollback/check", p1, "Approved"), 200);
	assert_int_equal(call(&f, "/gate/close", p1, "closed"), 202);
	assert_int_equal(call(&f, "/gate/check", p1, NULL), 403);
	assert_int_equal(call(&f, "/rollback/check", p1, NULL), 200);
	assert_int_equal(call(&f, "/rollback/close", p1, NULL), 202);
	assert_int_equal(call(&f, "/rollback/check", p1, NULL), 403);
	/* closing a gate never opened is fine; bad payloads are 400 */
	assert_int_equal(call(&f, "/gate/close", p2, NULL), 202);
	assert_int_equal(call(&f, "/gate/check", "", NULL), 400);
	assert_int_equal(call(&f, "/gate/open", "{\"name\":1,\"namespace\":\"x\"}", NULL),
			 400);
	teardown_fixture(&f);
}

static void test_gate_bound(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_loadtester_opts o = { .max_gates = 2 };
	struct fixture f;

	setup_fixture(&f);
	co_loadtester_close(f.lt, on_closed, &f);   /* replace with a bounded one */
	assert_int_equal(f.closed, 1);
	f.closed = 0;
	assert_int_equal(co_loadtester_new(&f.lt, &f.loop, &o, &err), 0);
	assert_int_equal(call(&f, "/gate/open", "{\"name\":\"a\",\"namespace\":\"n\"}",
			      NULL), 202);
	assert_int_equal(call(&f, "/gate/open", "{\"name\":\"b\",\"namespace\":\"n\"}",
			      NULL), 202);
	assert_int_equal(call(&f, "/gate/open", "{\"name\":\"c\",\"namespace\":\"n\"}",
			      "too many gates"), 503);
	assert_int_equal(call(&f, "/gate/open", "{\"name\":\"a\",\"namespace\":\"n\"}",
			      NULL), 202);
	teardown_fixture(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_runs_and_dedups),
		cmocka_unit_test(test_cmd_rejections),
		cmocka_unit_test(test_gates),
		cmocka_unit_test(test_gate_bound),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
