/* Unit tests for hey command parsing: shell-like quoting without a shell, hey's
 * flags and defaults, Flagger's example command, and clear rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "analysis/heycmd.h"

static void split_ok(const char *cmd, int n, const char *const *want)
{
	struct co_error err = CO_ERROR_INIT;
	char **argv;
	int argc;

	assert_int_equal(co_heycmd_split(cmd, &argv, &argc, &err), 0);
	assert_int_equal(argc, n);
	for (int i = 0; i < n; i++)
		assert_string_equal(argv[i], want[i]);
	assert_null(argv[n]);
	co_heycmd_argv_free(argv);
}

static void test_split(void **state)
{
	split_ok("hey  -z 1m\t-c 2 http://x/", 6,
		 (const char *[]){ "hey", "-z", "1m", "-c", "2", "http://x/" });
	split_ok("hey -H 'Authorization: Bearer a b' -H \"X-A: \\\"q\\\" \\\\ \\n\"", 5,
		 (const char *[]){ "hey", "-H", "Authorization: Bearer a b", "-H",
				   "X-A: \"q\" \\ \\n" });
	split_ok("a\\ b 'it'\"'\"'s' \"\" ''", 4,
		 (const char *[]){ "a b", "it's", "", "" });
	split_ok("hey -d '$HOME {\"k\":1}' $PATH", 4,
		 (const char *[]){ "hey", "-d", "$HOME {\"k\":1}", "$PATH" });
	split_ok("one \\\n two", 2, (const char *[]){ "one", "two" });
	split_ok("x'|'y \"a;b\"", 2, (const char *[]){ "x|y", "a;b" });
}

static void split_bad(const char *cmd, const char *msg)
{
	struct co_error err = CO_ERROR_INIT;
	char **argv = NULL;
	int argc = -1;

	assert_int_equal(co_heycmd_split(cmd, &argv, &argc, &err), -EINVAL);
	assert_null(argv);
	assert_int_equal(argc, -1);
	assert_non_null(strstr(err.msg, msg));
}

static void test_split_errors(void **state)
{
	split_bad("hey 'abc", "unterminated single quote");
	split_bad("hey \"abc", "unterminated double quote");
	split_bad("hey abc\\", "trailing backslash");
	split_bad("   ", "empty command");
	split_bad("hey http://x/ | tee out", "shell syntax '|'");
	split_bad("hey http://x/; rm -rf /", "shell syntax ';'");
	split_bad("hey $(cat url)", "shell syntax '$'");
	split_bad("hey http://x/ > out", "shell syntax '>'");
	split_bad("hey `x`", "shell syntax '`'");
	split_bad("sleep 1 &", "shell syntax '&'");
}

static void test_flagger_example(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_heycmd *c;

	assert_int_equal(co_heycmd_parse(&c,
		"hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/", &err), 0);
	assert_string_equal(c->opts.url, "http://podinfo-canary.test:9898/");
	assert_int_equal(c->opts.duration_ms, 60000);
	assert_int_equal(c->opts.requests, 0);
	assert_int_equal(c->opts.connections, 2);
	assert_true(c->opts.rate == 20.0);   /* -q is per worker: c * q */
	assert_int_equal(c->opts.timeout_ms, 20000);
	assert_null(c->opts.method);
	co_heycmd_free(c);
}

static void test_flags(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_heycmd *c;

	assert_int_equal(co_heycmd_parse(&c,
		"/usr/local/bin/hey -n 1000 -c=10 --m post -d '{\"a\": 1}' "
		"-H 'X-One: 1' -H 'X-Two: two words' -host app.example -t 5 "
		"-A 'probe/1' http://127.0.0.1:8080/api?x=1", &err), 0);
	assert_int_equal(c->opts.requests, 1000);
	assert_int_equal(c->opts.duration_ms, 0);
	assert_int_equal(c->opts.connections, 10);
	assert_string_equal(c->opts.method, "POST");
	assert_int_equal(c->opts.body_len, 8);
	assert_memory_equal(c->opts.body, "{\"a\": 1}", 8);
	assert_string_equal(c->opts.content_type, "text/html");
	assert_int_equal(c->opts.n_headers, 2);
	assert_string_equal(c->opts.headers[1], "X-Two: two words");
	assert_string_equal(c->opts.host, "app.example");
	assert_int_equal(c->opts.timeout_ms, 5000);
	assert_string_equal(c->opts.user_agent, "probe/1");
	assert_true(c->opts.rate == 0);
	co_heycmd_free(c);

	/* defaults: 200 requests, 50 connections; -z wins over -n; -T */
	assert_int_equal(co_heycmd_parse(&c, "hey http://h/", &err), 0);
	assert_int_equal(c->opts.requests, 200);
	assert_int_equal(c->opts.connections, 50);
	assert_null(c->opts.content_type);
	co_heycmd_free(c);
	assert_int_equal(co_heycmd_parse(&c, "hey -n 5 -c 1 -z 2s -T a/b -t 0 http://h/",
					 &err), 0);
	assert_int_equal(c->opts.requests, 0);
	assert_int_equal(c->opts.duration_ms, 2000);
	assert_string_equal(c->opts.content_type, "a/b");
	assert_true(c->opts.timeout_ms >= 86400000ull);
	co_heycmd_free(c);
}

static void test_cli_flags(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_heycmd *c;
	char *argv[] = { "loadtest", "http://h/", "--rate", "2000", "--warmup", "1s",
			 "--threads", "2", "-o", "json", "-z", "10s", NULL };

	assert_int_equal(co_heycmd_parse_argv(&c, 12, argv, CO_HEYCMD_CLI, &err), 0);
	assert_true(c->opts.rate == 2000.0);
	assert_int_equal(c->opts.warmup_ms, 1000);
	assert_int_equal(c->opts.threads, 2);
	assert_int_equal(c->output_json, 1);
	assert_int_equal(c->opts.duration_ms, 10000);
	co_heycmd_free(c);
	/* the extras are not hey's: refused in a webhook command */
	assert_int_equal(co_heycmd_parse(&c, "hey --rate 5 http://h/", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "'-rate' is not supported"));
}

static void parse_bad(const char *cmd, const char *msg)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_heycmd *c = NULL;

	assert_int_equal(co_heycmd_parse(&c, cmd, &err), -EINVAL);
	assert_null(c);
	if (!strstr(err.msg, msg))
		fail_msg("'%s': got '%s', want '%s'", cmd, err.msg, msg);
}

static void test_rejections(void **state)
{
	parse_bad("curl -s http://h/", "program 'curl' is not supported");
	parse_bad("hey -h2 http://h/", "flag '-h2' is not supported natively");
	parse_bad("hey -disable-keepalive http://h/", "'-disable-keepalive' is not supp");
	parse_bad("hey -o csv http://h/", "'-o' is not supported");
	parse_bad("hey -D body.txt http://h/", "'-D' is not supported");
	parse_bad("hey -n 10 -c 20 http://h/", "-n cannot be less than -c");
	parse_bad("hey -c 300 http://h/", "-n cannot be less than -c");
	parse_bad("hey -z 1m", "no url given");
	parse_bad("hey http://a/ http://b/", "unexpected argument 'http://b/'");
	parse_bad("hey -z soon http://h/", "invalid value 'soon' for flag '-z'");
	parse_bad("hey -c -1 http://h/", "invalid value '-1' for flag '-c'");
	parse_bad("hey -q x http://h/", "invalid value 'x' for flag '-q'");
	parse_bad("hey -H NoColon http://h/", "invalid value 'NoColon' for flag '-H'");
	parse_bad("hey http://h/ -c", "flag '-c' needs a value");
	parse_bad("hey 'http://h/", "unterminated single quote");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_split_errors),
		cmocka_unit_test(test_flagger_example),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_cli_flags),
		cmocka_unit_test(test_rejections),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
