/*
 * Load generator accuracy against the local test server (lg-testserver): exact
 * request counts in count mode (with reconnects, warm-up and several threads), the
 * open model's rate over 5 s at 2,000 requests/s, coordinated-omission correction
 * across a one-second server stall, timeouts and connect errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/loadgen.h"
#include "lg-testserver.h"

struct run {
	uv_loop_t loop;
	struct ts_server srv;
	struct co_loadgen *lg;
	int done;
	int status;
};

static void on_done(struct co_loadgen *lg, int status, const struct co_error *err,
		    void *data)
{
	struct run *r = data;

	r->done++;
	r->status = status;
	ts_server_close(&r->srv);
}

/* Start the server, run opts against it, close everything; returns the result. */
static const struct co_loadgen_result *run(struct run *r, struct co_loadgen_opts *opts,
					   const char *path)
{
	struct co_error err = CO_ERROR_INIT;
	char url[128];

	assert_int_equal(uv_loop_init(&r->loop), 0);
	assert_int_equal(ts_server_start(&r->srv, &r->loop), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", r->srv.port, path);
	opts->url = url;
	assert_int_equal(co_loadgen_new(&r->lg, opts, &err), 0);
	assert_int_equal(co_loadgen_start(r->lg, &r->loop, on_done, r, &err), 0);
	uv_run(&r->loop, UV_RUN_DEFAULT);
	assert_int_equal(r->done, 1);
	assert_int_equal(uv_loop_close(&r->loop), 0);
	return co_loadgen_result(r->lg);
}

static void test_exact_count(void **state)
{
	struct run r = { .status = 1 };
	struct co_loadgen_opts o = { .connections = 7, .threads = 2, .requests = 1000 };
	const struct co_loadgen_result *res = run(&r, &o, "/");

	assert_int_equal(r.status, 0);
	assert_int_equal(r.srv.requests, 1000);
	assert_int_equal(res->requests, 1000);
	assert_int_equal(res->status[2], 1000);
	assert_int_equal(res->errors_total, 0);
	assert_int_equal(co_histogram_count(res->latency), 1000);
	assert_int_equal(r.srv.connections, 7);
	co_loadgen_free(r.lg);
}

static void test_exact_count_reconnect_post(void **state)
{
	struct run r = { .srv.close_every = 10 };
	struct co_loadgen_opts o = {
		.connections = 5, .requests = 503, .method = "POST",
		.body = "hello", .body_len = 5,
	};
	const struct co_loadgen_result *res = run(&r, &o, "/x?y=1");

	assert_int_equal(r.status, 0);
	assert_int_equal(r.srv.requests, 503);
	assert_int_equal(r.srv.posts, 503);
	assert_int_equal(r.srv.body_bytes, 503 * 5);
	assert_int_equal(res->requests, 503);
	assert_int_equal(res->errors_total, 0);
	/* the server closed after every 10th answer: the generator reconnected */
	assert_true(r.srv.connections >= 50);
	co_loadgen_free(r.lg);
}

static void test_count_with_warmup(void **state)
{
	struct run r = { 0 };
	struct co_loadgen_opts o = { .connections = 4, .requests = 300, .warmup_ms = 200 };
	const struct co_loadgen_result *res = run(&r, &o, "/");

	assert_int_equal(r.status, 0);
	assert_int_equal(res->requests, 300);
	assert_int_equal(co_histogram_count(res->latency), 300);
	/* warm-up requests reached the server but are not in the result */
	assert_true(r.srv.requests > 300);
	co_loadgen_free(r.lg);
}

static void test_open_rate(void **state)
{
	struct run r = { 0 };
	struct co_loadgen_opts o = { .connections = 10, .rate = 2000, .duration_ms = 5000 };
	const struct co_loadgen_result *res = run(&r, &o, "/");

	assert_int_equal(r.status, 0);
	printf("open model: %.1f req/s over %.3f s (%llu requests)\n", res->rps,
	       res->duration_s, (unsigned long long)res->requests);
	assert_true(res->open_model);
	assert_true(fabs(res->duration_s - 5.0) < 0.05);
	assert_true(fabs(res->rps - 2000.0) / 2000.0 < 0.02);
	assert_int_equal(res->errors_total, 0);
	assert_true(res->n_seconds >= 5);
	for (size_t s = 1; s + 1 < res->n_seconds; s++)
		assert_true(llabs((long long)res->per_second[s] - 2000) < 100);
	co_loadgen_free(r.lg);
}

static void test_coordinated_omission(void **state)
{
	struct run r = { .srv.stall_at = 1000, .srv.stall_ms = 1000 };
	struct co_loadgen_opts o = { .connections = 10, .rate = 1000, .duration_ms = 3000 };
	const struct co_loadgen_result *res = run(&r, &o, "/");
	uint64_t p99 = co_histogram_percentile(res->latency, 99);
	uint64_t p99u = co_histogram_percentile(res->latency_uncorrected, 99);

	assert_int_equal(r.status, 0);
	printf("stall: corrected p99 %.1f ms, uncorrected p99 %.1f ms, max %.1f ms\n",
	       p99 / 1e6, p99u / 1e6, co_histogram_max(res->latency_uncorrected) / 1e6);
	/* the stall was seen by the in-flight requests... */
	assert_true(co_histogram_max(res->latency_uncorrected) >= 900000000ull);
	/* ...and charged to every request it delayed only by the corrected figures */
	assert_true(p99 >= 500000000ull);
	assert_true(p99u < 100000000ull);
	assert_true(p99u * 5 < p99);
	co_loadgen_free(r.lg);
}

static void test_timeouts(void **state)
{
	struct run r = { .srv.stall_at = 5, .srv.stall_ms = 1500 };
	struct co_loadgen_opts o = { .connections = 2, .requests = 20, .timeout_ms = 200 };
	const struct co_loadgen_result *res = run(&r, &o, "/");

	assert_int_equal(r.status, 0);
	assert_true(res->errors[CO_LOADGEN_ERR_TIMEOUT] >= 1);
	/* every one of the 20 requests ended in an answer or a counted error */
	assert_int_equal(res->requests + res->errors_total, 20);
	co_loadgen_free(r.lg);
}

static void test_connect_errors(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_loadgen_opts o = { .connections = 2, .requests = 6 };
	struct co_loadgen *lg;
	struct ts_server s = { 0 };
	uv_loop_t loop;
	char url[64];
	int port;

	/* a port nobody listens on: bind one, remember it, close it */
	uv_loop_init(&loop);
	assert_int_equal(ts_server_start(&s, &loop), 0);
	port = s.port;
	ts_server_close(&s);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	o.url = url;
	assert_int_equal(co_loadgen_new(&lg, &o, &err), 0);
	assert_int_equal(co_loadgen_run(lg, &err), 0);
	assert_int_equal(co_loadgen_result(lg)->requests, 0);
	assert_int_equal(co_loadgen_result(lg)->errors[CO_LOADGEN_ERR_CONNECT], 6);
	co_loadgen_free(lg);
}

static void test_bad_opts(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_loadgen *lg = NULL;
	const char *bad_hdr[] = { "NoColon" };
	struct co_loadgen_opts o = { .url = "https://127.0.0.1/", .requests = 1 };

	assert_int_equal(co_loadgen_new(&lg, &o, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "only http://"));
	o.url = "http://127.0.0.1/";
	o.headers = bad_hdr;
	o.n_headers = 1;
	assert_int_equal(co_loadgen_new(&lg, &o, &err), -EINVAL);
	o.n_headers = 0;
	o.requests = 0;
	assert_int_equal(co_loadgen_new(&lg, &o, &err), -EINVAL);
	assert_null(lg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_count),
		cmocka_unit_test(test_exact_count_reconnect_post),
		cmocka_unit_test(test_count_with_warmup),
		cmocka_unit_test(test_open_rate),
		cmocka_unit_test(test_coordinated_omission),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_connect_errors),
		cmocka_unit_test(test_bad_opts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
