/*
 * Unit tests for the Prometheus answer parser, on literal bodies shaped like those
 * of the HTTP API documentation (https://prometheus.io/docs/prometheus/latest/querying/api/).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "clients/prom.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector),
		cmocka_unit_test(test_matrix),
		cmocka_unit_test(test_scalar_string_empty),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_values),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
