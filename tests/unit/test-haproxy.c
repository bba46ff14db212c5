/* Unit tests for the HAProxy driver's pure parts: show stat CSV by header name,
 * command formatting and validation, answer classification, socket addresses, and the
 * async contract when the socket is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clients/haproxy-shift.h"
#include "clients/haproxy.h"

static const char stat_text[] =
	"# pxname,svname,qcur,scur,stot,status,weight,type,rate,hrsp_1xx,hrsp_2xx,"
	"hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,econ,eresp,check_status,addr,uweight,"
	"check_desc,\n"
	"public,FRONTEND,,3,100,OPEN,,0,5,0,90,0,0,10,0,,,,,,,\n"
	"clusters,blue,0,2,60,UP,90,2,4,0,55,0,1,4,0,1,0,L7OK,127.0.0.1:8001,90,"
	"\"Layer7 check, passed\",\n"
	"clusters,green,0,1,40,DRAIN,0,2,1,0,35,0,0,5,0,0,2,L7OK,127.0.0.1:8002,10,"
	"\"say \"\"hi\"\"\",\n"
	"clusters,BACKEND,0,3,100,UP,90,1,5,0,90,0,1,9,0,1,2,,,,,\n"
	"\n";

/* The same data with the columns in another order and one short row. */
static const char stat_shuffled[] =
	"# type,addr,hrsp_5xx,svname,weight,econ,status,pxname,hrsp_2xx,scur,stot\n"
	"2,127.0.0.1:8002,5,green,0,0,DRAIN,clusters,35,1,40\n"
	"2,127.0.0.1:8001,4,blue,90,1,UP,clusters,55,2,60\n"
	"1,,9,BACKEND,90,1,UP,clusters\n";

static void test_csv_by_header(void **state)
{
	struct co_haproxy_csv *csv = NULL;
	struct co_haproxy_server_stat s;
	long row;

	assert_int_equal(co_haproxy_csv_parse(&csv, stat_text, strlen(stat_text), NULL), 0);
	assert_int_equal(co_haproxy_csv_rows(csv), 4);
	assert_int_equal(co_haproxy_csv_column(csv, "pxname"), 0);
	assert_int_equal(co_haproxy_csv_column(csv, "nope"), -1);
	assert_int_equal(co_haproxy_csv_column(csv, ""), -1);
	row = co_haproxy_csv_find(csv, "clusters", "blue");
	assert_int_equal(row, 1);
	assert_string_equal(co_haproxy_csv_get(csv, (size_t)row, "check_desc"),
			    "Layer7 check, passed");
	assert_string_equal(co_haproxy_csv_get(csv, 2, "check_desc"), "say \"hi\"");
	assert_null(co_haproxy_csv_get(csv, 1, "nope"));
	assert_int_equal(co_haproxy_csv_server(csv, (size_t)row, &s), 0);
	assert_string_equal(s.backend, "clusters");
	assert_string_equal(s.server, "blue");
	assert_string_equal(s.status, "UP");
	assert_string_equal(s.addr, "127.0.0.1:8001");
	assert_int_equal(s.weight, 90);
	assert_int_equal(s.uweight, 90);
	assert_int_equal(s.hrsp[1], 55);
	assert_int_equal(s.hrsp[4], 4);
	assert_int_equal(s.econ, 1);
	assert_int_equal(s.rate, 4);
	assert_int_equal(co_haproxy_csv_server(csv, 0, &s), -ENOENT);   /* FRONTEND */
	assert_int_equal(co_haproxy_csv_server(csv, 3, &s), -ENOENT);   /* BACKEND */
	assert_int_equal(co_haproxy_csv_find(csv, "clusters", "red"), -1);
	co_haproxy_csv_free(csv);
}

static void test_csv_shuffled_columns(void **state)
{
	struct co_haproxy_csv *csv = NULL;
	struct co_haproxy_server_stat s;
	long row;

	assert_int_equal(
		co_haproxy_csv_parse(&csv, stat_shuffled, strlen(stat_shuffled), NULL), 0);
	assert_int_equal(co_haproxy_csv_rows(csv), 3);
	row = co_haproxy_csv_find(csv, "clusters", "green");
	assert_int_equal(row, 0);
	assert_int_equal(co_haproxy_csv_server(csv, (size_t)row, &s), 0);
	assert_string_equal(s.status, "DRAIN");
	assert_int_equal(s.weight, 0);
	assert_int_equal(s.uweight, 0);          /* no uweight column: the weight */
	assert_int_equal(s.hrsp[1], 35);
	assert_int_equal(s.hrsp[4], 5);
	assert_int_equal(s.rate, 0);             /* missing column reads as 0 */
	row = co_haproxy_csv_find(csv, "clusters", "blue");
	assert_int_equal(co_haproxy_csv_server(csv, (size_t)row, &s), 0);
	assert_int_equal(s.weight, 90);
	assert_int_equal(s.scur, 2);
	/* the short BACKEND row reads missing fields as empty */
	assert_string_equal(co_haproxy_csv_get(csv, 2, "stot"), "");
	co_haproxy_csv_free(csv);
}

static void test_csv_rejects(void **state)
{
	struct co_haproxy_csv *csv = NULL;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_haproxy_csv_parse(&csv, "pxname,svname\n", 14, &err), -EBADMSG);
	assert_non_null(strstr(err.msg, "header"));
	assert_null(csv);
	assert_int_equal(co_haproxy_csv_parse(&csv, "", 0, NULL), -EBADMSG);
	/* leading blank line and CRLF are tolerated */
	assert_int_equal(co_haproxy_csv_parse(&csv, "\n# a,b\r\n1,2\r\n", 13, NULL), 0);
	assert_string_equal(co_haproxy_csv_get(csv, 0, "b"), "2");
	co_haproxy_csv_free(csv);
	co_haproxy_csv_free(NULL);
}

static void test_names_and_addresses(void **state)
{
	char long_name[200];

	assert_true(co_haproxy_valid_name("blue"));
	assert_true(co_haproxy_valid_name("kube-a_1.prod:x"));
	assert_false(co_haproxy_valid_name(""));
	assert_false(co_haproxy_valid_name(NULL));
	assert_false(co_haproxy_valid_name("a b"));
	assert_false(co_haproxy_valid_name("a;b"));
	assert_false(co_haproxy_valid_name("a/b"));
	assert_false(co_haproxy_valid_name("a\nb"));
	memset(long_name, 'a', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_false(co_haproxy_valid_name(long_name));
	long_name[127] = '\0';
	assert_true(co_haproxy_valid_name(long_name));

	assert_true(co_haproxy_valid_address("127.0.0.1:8080"));
	assert_true(co_haproxy_valid_address("ingress.blue.local:443"));
	assert_true(co_haproxy_valid_address("[::1]:80"));
	assert_false(co_haproxy_valid_address("127.0.0.1"));
	assert_false(co_haproxy_valid_address("127.0.0.1:0"));
	assert_false(co_haproxy_valid_address("127.0.0.1:65536"));
	assert_false(co_haproxy_valid_address(":80"));
	assert_false(co_haproxy_valid_address("a b:80"));
	assert_false(co_haproxy_valid_address("[zz]:80"));
	assert_false(co_haproxy_valid_address("h:80x"));
}

static void test_format_commands(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;
	struct co_haproxy_server_spec spec = { "10.0.0.5:80", 25, 1, 1 };

	assert_int_equal(co_haproxy_format_set_weight(&b, "clusters", "green", 25, NULL), 0);
	assert_string_equal(co_buf_cstr(&b), "set server clusters/green weight 25");
	co_buf_reset(&b);
	assert_int_equal(co_haproxy_format_set_weight(&b, "clusters", "green", 256, NULL), 0);
	co_buf_reset(&b);
	assert_int_equal(co_haproxy_format_set_weight(&b, "clusters", "green", 257, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "0-256"));
	assert_int_equal(co_haproxy_format_set_weight(&b, "clusters", "green", -1, NULL),
			 -EINVAL);
	/* an injected second command never reaches the socket */
	assert_int_equal(co_haproxy_format_set_weight(&b, "clusters",
						      "green; shutdown frontend public", 1,
						      &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "server name"));
	assert_int_equal(b.len, 0);

	assert_int_equal(co_haproxy_format_set_state(&b, "clusters", "blue",
						     CO_HAPROXY_DRAIN, NULL),
			 0);
	assert_string_equal(co_buf_cstr(&b), "set server clusters/blue state drain");
	co_buf_reset(&b);
	assert_int_equal(co_haproxy_format_set_state(&b, "clu sters", "blue",
						     CO_HAPROXY_MAINT, NULL),
			 -EINVAL);

	assert_int_equal(co_haproxy_format_add_server(&b, "clusters", "red", &spec, NULL),
			 0);
	assert_string_equal(co_buf_cstr(&b), "add server clusters/red 10.0.0.5:80 weight 25 check");
	co_buf_reset(&b);
	spec.check = 0;
	spec.address = "10.0.0.5:80 ssl verify none";
	assert_int_equal(co_haproxy_format_add_server(&b, "clusters", "red", &spec, NULL),
			 -EINVAL);
	co_buf_release(&b);

	{
		enum co_haproxy_state st;

		assert_int_equal(co_haproxy_parse_state("maint", &st), 0);
		assert_int_equal(st, CO_HAPROXY_MAINT);
		assert_int_equal(co_haproxy_parse_state("MAINT", &st), -EINVAL);
		assert_string_equal(co_haproxy_state_name(CO_HAPROXY_READY), "ready");
	}
}

static void check_answer(const char *raw, int want_rc, const char *want_text)
{
	struct co_buf t = CO_BUF_INIT;

	assert_int_equal(co_haproxy_parse_answer(raw, strlen(raw), &t), want_rc);
	assert_string_equal(co_buf_cstr(&t), want_text);
	co_buf_release(&t);
}

static void test_parse_answer(void **state)
{
	/* answers as HAProxy 2.6 writes them after "set severity-output number;" */
	check_answer("\n\n", 0, "");
	check_answer("\n[3]: No such server.\n\n", -EIO, "No such server.");
	check_answer("\n[6]: New server registered.\n\n", 0, "New server registered.");
	check_answer("\n100 (initial 100)\n\n", 0, "100 (initial 100)");
	check_answer("\n[4]: something odd\n", -EIO, "something odd");
	check_answer("\n[6]: Unknown command, but maybe one of the following ones is a "
		     "better match:\n  help\n\n",
		     -EIO,
		     "Unknown command, but maybe one of the following ones is a better "
		     "match:\n  help");
	check_answer("\n[3]: 'set server <srv> state' expects 'ready', 'drain' and "
		     "'maint'.\n\n",
		     -EIO, "'set server <srv> state' expects 'ready', 'drain' and 'maint'.");
	check_answer("\n# pxname,svname\nclusters,blue\n\n", 0,
		     "# pxname,svname\nclusters,blue");
	check_answer("", 0, "");
}

static void test_steps(void **state)
{
	int steps[8];

	assert_int_equal(co_haproxy_shift_parse_steps("10,25,50,100", steps, 8), 4);
	assert_int_equal(steps[0], 10);
	assert_int_equal(steps[3], 100);
	assert_int_equal(co_haproxy_shift_parse_steps("100", steps, 8), 1);
	assert_int_equal(co_haproxy_shift_parse_steps("50,25", steps, 8), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("0,50", steps, 8), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("10,101", steps, 8), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("10,", steps, 8), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("10,,20", steps, 8), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("1,2,3", steps, 2), -EINVAL);
	assert_int_equal(co_haproxy_shift_parse_steps("", steps, 8), -EINVAL);
}

struct verdict {
	int calls, status, pass;
	char reason[256];
};

static void on_verdict(int status, int pass, const char *reason, void *d)
{
	struct verdict *v = d;

	v->calls++;
	v->status = status;
	v->pass = pass;
	snprintf(v->reason, sizeof(v->reason), "%s", reason);
}

static void test_stat_check(void **state)
{
	struct co_haproxy_stat_check c = { .max_error_ratio = 0.01, .min_requests = 100 };
	struct co_haproxy_shift_window w = { .to = "green" };
	struct verdict v = { 0 };

	w.requests = 50;
	w.errors = 50;
	w.error_ratio = 1.0;
	co_haproxy_stat_check_fn(&w, on_verdict, &v, &c);
	assert_int_equal(v.calls, 1);
	assert_true(v.pass);                     /* too few requests to judge */
	assert_non_null(strstr(v.reason, "not judged"));
	w.requests = 1000;
	w.errors = 10;
	w.error_ratio = 0.01;
	co_haproxy_stat_check_fn(&w, on_verdict, &v, &c);
	assert_true(v.pass);
	w.errors = 11;
	w.error_ratio = 0.011;
	co_haproxy_stat_check_fn(&w, on_verdict, &v, &c);
	assert_false(v.pass);
	assert_int_equal(v.calls, 3);
	assert_non_null(strstr(v.reason, "11/1000"));
}

/* Async contract with nothing listening: the callback runs once, later, with the
 * connect error; invalid input fails at once without a callback. */
struct done {
	int calls, status;
	struct co_error err;
};

static void on_text(int status, const char *answer, const struct co_error *err, void *d)
{
	struct done *x = d;

	x->calls++;
	x->status = status;
	co_error_copy(&x->err, err);
	assert_string_equal(answer, "");
}

static void test_missing_socket(void **state)
{
	uv_loop_t loop;
	struct co_haproxy *hx = NULL;
	struct co_error err = CO_ERROR_INIT;
	struct done a = { 0 }, b = { 0 };

	uv_loop_init(&loop);
	assert_int_equal(co_haproxy_new(&hx, &loop,
					&(struct co_haproxy_opts){
						.socket = "/nonexistent/cutover/admin.sock" },
					&err),
			 0);
	assert_int_equal(co_haproxy_set_weight(hx, "clusters", "blue", 10, on_text, &a,
					       &err),
			 0);
	assert_int_equal(a.calls, 0);
	assert_int_equal(co_haproxy_set_weight(hx, "clusters", "bl ue", 10, on_text, &b,
					       &err),
			 -EINVAL);
	assert_int_equal(co_haproxy_command(hx, "show stat; show info", on_text, &b, &err),
			 -EINVAL);
	assert_int_equal(co_haproxy_command(hx, "", on_text, &b, &err), -EINVAL);
	assert_int_equal(co_haproxy_dump_state(hx, on_text, &b, &err), -EINVAL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, UV_ENOENT);
	assert_non_null(strstr(a.err.msg, "set server 'clusters/blue' weight 10"));
	assert_non_null(strstr(a.err.msg, "connect"));
	assert_int_equal(b.calls, 0);

	/* free with a command in flight: -ECANCELED, exactly once */
	assert_int_equal(co_haproxy_command(hx, "show info", on_text, &b, &err), 0);
	co_haproxy_free(hx);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.status, -ECANCELED);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_socket_addresses(void **state)
{
	uv_loop_t loop;
	struct co_haproxy *hx = NULL;
	struct co_error err = CO_ERROR_INIT;
	static const char *const good[] = { "127.0.0.1:9999", "ipv4@127.0.0.1:9999",
					    "[::1]:9999", "unix:/run/x.sock", "rel.sock",
					    "tcp://127.0.0.1:1" };
	static const char *const bad[] = { "127.0.0.1:0", "localhost:9999", "unix:",
					   "1.2.3.4:99999", "" };

	uv_loop_init(&loop);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(co_haproxy_new(&hx, &loop,
						&(struct co_haproxy_opts){ .socket = good[i] },
						&err),
				 0);
		co_haproxy_free(hx);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(co_haproxy_new(&hx, &loop,
						&(struct co_haproxy_opts){ .socket = bad[i] },
						&err),
				 -EINVAL);
	co_haproxy_free(NULL);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv_by_header),
		cmocka_unit_test(test_csv_shuffled_columns),
		cmocka_unit_test(test_csv_rejects),
		cmocka_unit_test(test_names_and_addresses),
		cmocka_unit_test(test_format_commands),
		cmocka_unit_test(test_parse_answer),
		cmocka_unit_test(test_steps),
		cmocka_unit_test(test_stat_check),
		cmocka_unit_test(test_missing_socket),
		cmocka_unit_test(test_socket_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
