/*
 * Unit tests for the Prometheus client: the answer parser on literal bodies shaped
 * like those of the HTTP API documentation
 * (https://prometheus.io/docs/prometheus/latest/querying/api/), and the asynchronous
 * client against a loopback fixture server that echoes what it received, answers
 * 503 with an error body, or never answers (deadline, cancel).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "base/time.h"
#include "clients/prom.h"
#include "net/http-client.h"
#include "net/http-server.h"

static int parse(struct co_prom_result **r, long code, const char *body,
		 struct co_error *err)
{
	return co_prom_parse_response(r, code, body, strlen(body), err);
}

static void test_vector(void **state)
{
	struct co_prom_result *r = NULL;
	const char *body =
		"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":["
		"{\"metric\":{\"__name__\":\"up\",\"job\":\"prometheus\",\"instance\":"
		"\"localhost:9090\"},\"value\":[1435781451.781,\"1\"]},"
		"{\"metric\":{\"__name__\":\"up\",\"job\":\"node\"},\"value\":[1435781451.781,"
		"\"NaN\"]},"
		"{\"metric\":{},\"value\":[1435781451.781,\"+Inf\"]},"
		"{\"metric\":{},\"value\":[1435781451.781,\"-Inf\"]},"
		"{\"metric\":{},\"value\":[1435781451.781,\"-1.5e-3\"]}]}}";

	assert_int_equal(parse(&r, 200, body, NULL), 0);
	assert_int_equal(r->type, CO_PROM_VECTOR);
	assert_int_equal(r->n_series, 5);
	assert_false(co_prom_result_no_data(r));
	assert_string_equal(json_string_value(json_object_get(r->series[0].labels, "job")),
			    "prometheus");
	assert_int_equal(r->series[0].n_points, 1);
	assert_true(r->series[0].points[0].t == 1435781451.781);
	assert_true(r->series[0].points[0].v == 1);
	assert_true(isnan(r->series[1].points[0].v));
	assert_true(isinf(r->series[2].points[0].v) && r->series[2].points[0].v > 0);
	assert_true(isinf(r->series[3].points[0].v) && r->series[3].points[0].v < 0);
	assert_true(r->series[4].points[0].v == -1.5e-3);
	assert_int_equal(json_object_size(r->series[2].labels), 0);
	assert_null(r->warnings);
	co_prom_result_free(r);
}

static void test_matrix(void **state)
{
	struct co_prom_result *r = NULL;
	const char *body =
		"{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":["
		"{\"metric\":{\"cluster\":\"a\"},\"values\":[[1435781430.781,\"1\"],"
		"[1435781445.781,\"2.5\"],[1435781460.781,\"NaN\"]]},"
		"{\"metric\":{\"cluster\":\"b\"},\"values\":[]}]},"
		"\"warnings\":[\"PromQL info: metric might not be a counter\"]}";

	assert_int_equal(parse(&r, 200, body, NULL), 0);
	assert_int_equal(r->type, CO_PROM_MATRIX);
	assert_int_equal(r->n_series, 2);
	assert_int_equal(r->series[0].n_points, 3);
	assert_true(r->series[0].points[1].t == 1435781445.781);
	assert_true(r->series[0].points[1].v == 2.5);
	assert_true(isnan(r->series[0].points[2].v));
	assert_int_equal(r->series[1].n_points, 0);
	assert_int_equal(json_array_size(r->warnings), 1);
	assert_string_equal(co_prom_type_name(r->type), "matrix");
	co_prom_result_free(r);
}

static void test_scalar_string_empty(void **state)
{
	struct co_prom_result *r = NULL;

	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"scalar\",\"result\":[1700000000,\"0.25\"]}}", NULL), 0);
	assert_int_equal(r->type, CO_PROM_SCALAR);
	assert_true(r->scalar.v == 0.25 && r->scalar.t == 1700000000);
	assert_false(co_prom_result_no_data(r));
	co_prom_result_free(r);

	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"string\",\"result\":[1700000000,\"hello\"]}}", NULL), 0);
	assert_int_equal(r->type, CO_PROM_STRING);
	assert_string_equal(r->string, "hello");
	co_prom_result_free(r);

	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"vector\",\"result\":[]}}", NULL), 0);
	assert_int_equal(r->n_series, 0);
	assert_true(co_prom_result_no_data(r));
	co_prom_result_free(r);

	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"matrix\",\"result\":[{\"metric\":{},\"values\":[]}]}}",
			       NULL), 0);
	assert_true(co_prom_result_no_data(r));
	co_prom_result_free(r);
}

static void test_errors(void **state)
{
	struct co_prom_result *r = (struct co_prom_result *)0x1;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(parse(&r, 400, "{\"status\":\"error\",\"errorType\":\"bad_data\","
				      "\"error\":\"invalid parameter \\\"query\\\": 1:5: parse "
				      "error: unexpected end of input\"}", &err), -EINVAL);
	assert_string_equal(err.msg, "prometheus 400 bad_data: invalid parameter \"query\": "
				     "1:5: parse error: unexpected end of input");
	assert_int_equal(parse(&r, 422, "{\"status\":\"error\",\"errorType\":\"execution\","
				      "\"error\":\"vector cannot contain metrics with the same "
				      "labelset\"}", &err), -EPROTO);
	assert_string_equal(err.msg, "prometheus 422 execution: vector cannot contain metrics "
				     "with the same labelset");
	assert_int_equal(parse(&r, 503, "{\"status\":\"error\",\"errorType\":\"timeout\","
				      "\"error\":\"query timed out in expression evaluation\"}",
			       &err), -ETIMEDOUT);
	assert_string_equal(err.msg, "prometheus 503 timeout: query timed out in expression "
				     "evaluation");
	assert_int_equal(parse(&r, 503, "{\"status\":\"error\",\"errorType\":\"unavailable\","
				      "\"error\":\"TSDB not ready\"}", &err), -EAGAIN);
	assert_int_equal(parse(&r, 502, "<html>Bad Gateway</html>", &err), -EIO);
	assert_string_equal(err.msg, "prometheus http 502: <html>Bad Gateway</html>");
	assert_int_equal(parse(&r, 200, "{\"status\":\"success\"}", &err), -EPROTO);
	assert_int_equal(parse(&r, 200, "not json", &err), -EPROTO);
	/* malformed samples */
	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"vector\",\"result\":[{\"metric\":{},\"value\":[1,2]}]}}",
			       &err), -EINVAL);
	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"vector\",\"result\":[{\"metric\":{},\"value\":[1,\"x\"]}]"
				      "}}", &err), -EINVAL);
	assert_string_equal(err.msg, "prometheus: bad sample value 'x'");
	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"matrix\",\"result\":[{\"metric\":{},\"values\":[[1,\"1\"],"
				      "[2]]}]}}", &err), -EINVAL);
	assert_int_equal(parse(&r, 200, "{\"status\":\"success\",\"data\":{\"resultType\":"
				      "\"hologram\",\"result\":[]}}", &err), -EPROTO);
	assert_ptr_equal(r, (struct co_prom_result *)0x1);
}

static void test_values(void **state)
{
	double v;

	assert_int_equal(co_prom_parse_value("1e3", &v), 0);
	assert_true(v == 1000);
	assert_int_equal(co_prom_parse_value("NaN", &v), 0);
	assert_true(isnan(v));
	assert_int_equal(co_prom_parse_value("", &v), -EINVAL);
	assert_int_equal(co_prom_parse_value("0x10", &v), -EINVAL);
	assert_int_equal(co_prom_parse_value("nan", &v), -EINVAL);
	assert_int_equal(co_prom_parse_value("1 ", &v), -EINVAL);
}

/* ---- the client on a loop ---- */

struct held {
	struct co_http_req *req;
	struct held *next;
};

struct lfx {
	uv_loop_t loop;
	struct co_http_server *srv;
	struct co_http_client *http;
	struct co_prom_client *prom;
	struct co_prom_client *prom_post;
	struct held *held;
	int cb_count;
	int closed;
	/* outcomes */
	int status[8];
	char err[8][CO_ERROR_MSG_MAX];
	struct co_prom_result *res[8];
	uint64_t elapsed_ms[8];
	uint64_t started_ms;
	struct co_prom_query *to_cancel;
	uv_timer_t cancel_timer;
};

struct call {
	struct lfx *f;
	int idx;
};

/* The query of a request: from the URL for GET, from the form body for POST. */
static char *request_param(struct co_http_req *req, const char *name)
{
	size_t len, nlen = strlen(name);
	const char *body, *p, *end;
	const char *v = co_http_req_query_param(req, name);

	if (strcmp(co_http_req_method(req), "GET") == 0)
		return v ? strdup(v) : NULL;
	body = co_http_req_body(req, &len);
	for (p = body; p && p < body + len; p = end + 1) {
		end = memchr(p, '&', (size_t)(body + len - p));
		if (!end)
			end = body + len;
		if ((size_t)(end - p) > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=')
			return co_http_url_decode(p + nlen + 1, (size_t)(end - p) - nlen - 1, 1);
	}
	return NULL;
}

static void on_held_close(struct co_http_req *req, void *data)
{
	struct lfx *f = data;

	for (struct held **h = &f->held; *h; h = &(*h)->next)
		if ((*h)->req == req) {
			struct held *gone = *h;

			*h = gone->next;
			free(gone);
			return;
		}
}

static void on_api(struct co_http_req *req, void *data)
{
	struct lfx *f = data;
	char *q = request_param(req, "query"), *timeout = request_param(req, "timeout");

	if (q && strcmp(q, "slow") == 0) {
		struct held *h = calloc(1, sizeof(*h));

		h->req = req;
		h->next = f->held;
		f->held = h;
		co_http_req_on_close(req, on_held_close, f);
	} else if (q && strcmp(q, "unavailable") == 0) {
		static const char body[] = "{\"status\":\"error\",\"errorType\":\"unavailable\","
					   "\"error\":\"TSDB not ready\"}";

		co_http_respond(req, 503, "application/json", body, sizeof(body) - 1);
	} else {
		json_t *metric = json_pack("{s:s, s:s, s:s, s:s}", "method",
					   co_http_req_method(req), "query", q ? q : "",
					   "timeout", timeout ? timeout : "", "path",
					   co_http_req_path(req));
		co_http_respond_json(req, 200, json_pack("{s:s, s:{s:s, s:[{s:o, s:[f, s]}]}}",
					"status", "success", "data", "resultType", "vector",
					"result", "metric", metric, "value", 1700000000.5, "7"));
	}
	free(q);
	free(timeout);
}

static void on_closed(void *data)
{
	((struct lfx *)data)->closed++;
}

static void finish_if_done(struct lfx *f, int expected)
{
	if (f->cb_count < expected)
		return;
	/* requests whose client went away without the server noticing yet */
	while (f->held) {
		struct held *h = f->held;

		f->held = h->next;
		co_http_respond(h->req, 200, "text/plain", "late", 4);
		free(h);
	}
	co_prom_client_free(f->prom);
	co_prom_client_free(f->prom_post);
	co_http_client_close(f->http, on_closed, f);
	co_http_server_close(f->srv, on_closed, f);
}

static void on_q(int status, struct co_prom_result *res, const struct co_error *err,
		 void *data)
{
	struct call *c = data;
	struct lfx *f = c->f;

	f->status[c->idx] = status;
	f->res[c->idx] = res;
	f->elapsed_ms[c->idx] = co_time_mono_ms() - f->started_ms;
	if (status < 0)
		snprintf(f->err[c->idx], sizeof(f->err[c->idx]), "%s", err->msg);
	f->cb_count++;
	finish_if_done(f, 5);
}

static void on_cancel_timer(uv_timer_t *t)
{
	struct lfx *f = t->data;

	co_prom_cancel(f->to_cancel);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_client_loop(void **state)
{
	static const char odd[] = "up{a=\"b c\",d=~\"x+y&z%\"} / 2 # ünïcode";
	struct lfx *f = calloc(1, sizeof(*f));
	struct co_http_server_opts so = { .host = "127.0.0.1" };
	struct co_prom_opts po = { 0 }, pp = { 0 };
	struct co_error err = CO_ERROR_INIT;
	struct call calls[5];
	char url[64];

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(co_http_server_new(&f->srv, &f->loop, &so, &err), 0);
	co_http_server_route(f->srv, "*", "/prefix/api/v1/{endpoint}", on_api, f);
	assert_int_equal(co_http_client_new(&f->http, &f->loop, &err), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/prefix/", co_http_server_port(f->srv));
	po.url = url;
	pp.url = url;
	pp.post_threshold = 8;
	assert_int_equal(co_prom_client_new(&f->prom, f->http, &po, &err), 0);
	assert_int_equal(co_prom_client_new(&f->prom_post, f->http, &pp, &err), 0);
	for (int i = 0; i < 5; i++)
		calls[i] = (struct call){ f, i };
	f->started_ms = co_time_mono_ms();

	assert_int_equal(co_prom_query(f->prom, NULL, odd, NAN, 2500, on_q, &calls[0], &err), 0);
	assert_int_equal(co_prom_query_range(f->prom_post, NULL, odd, 100, 200, 15, 0, on_q,
					     &calls[1], &err), 0);
	assert_int_equal(co_prom_query(f->prom, NULL, "unavailable", NAN, 0, on_q, &calls[2],
				       &err), 0);
	assert_int_equal(co_prom_query(f->prom, NULL, "slow", NAN, 300, on_q, &calls[3], &err),
			 0);
	assert_int_equal(co_prom_query(f->prom, &f->to_cancel, "slow", NAN, 10000, on_q,
				       &calls[4], &err), 0);
	uv_timer_init(&f->loop, &f->cancel_timer);
	f->cancel_timer.data = f;
	uv_timer_start(&f->cancel_timer, on_cancel_timer, 100, 0);
	/* a range query needs a positive step: refused at once, no callback */
	assert_int_equal(co_prom_query_range(f->prom, NULL, "up", 200, 100, 15, 0, on_q,
					     &calls[0], &err), -EINVAL);

	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f->cb_count, 5);
	assert_int_equal(f->closed, 2);
	assert_int_equal(uv_loop_close(&f->loop), 0);

	/* GET: the query arrives intact, with Prometheus's own timeout */
	assert_int_equal(f->status[0], 0);
	{
		json_t *m = f->res[0]->series[0].labels;

		assert_string_equal(json_string_value(json_object_get(m, "method")), "GET");
		assert_string_equal(json_string_value(json_object_get(m, "query")), odd);
		assert_string_equal(json_string_value(json_object_get(m, "timeout")), "2.400");
		assert_string_equal(json_string_value(json_object_get(m, "path")),
				    "/prefix/api/v1/query");
		assert_true(f->res[0]->series[0].points[0].v == 7);
	}
	/* long query: form POST to query_range */
	assert_int_equal(f->status[1], 0);
	assert_string_equal(json_string_value(json_object_get(f->res[1]->series[0].labels,
							      "method")), "POST");
	assert_string_equal(json_string_value(json_object_get(f->res[1]->series[0].labels,
							      "query")), odd);
	assert_string_equal(json_string_value(json_object_get(f->res[1]->series[0].labels,
							      "path")), "/prefix/api/v1/query_range");
	/* 503 with Prometheus's error body, verbatim */
	assert_int_equal(f->status[2], -EAGAIN);
	assert_string_equal(f->err[2],
			    "query 'unavailable': prometheus 503 unavailable: TSDB not ready");
	/* the per-query deadline */
	assert_int_equal(f->status[3], -ETIMEDOUT);
	assert_string_equal(f->err[3], "query 'slow': deadline of 300 ms exceeded");
	assert_true(f->elapsed_ms[3] >= 290 && f->elapsed_ms[3] < 2000);
	/* cancel */
	assert_int_equal(f->status[4], -ECANCELED);
	assert_true(f->elapsed_ms[4] < 2000);
	for (int i = 0; i < 5; i++)
		co_prom_result_free(f->res[i]);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector),
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_scalar_string_empty),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_client_loop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
