/* Unit tests for co_error and the logger (JSON lines, redaction, scrubbing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/log.h"

static void test_error(void **state)
{
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_error_set(&err, -EINVAL, "apply '%s': %d\nInvalid", "core/podinfo",
				      422),
			 -EINVAL);
	assert_string_equal(err.msg, "apply 'core/podinfo': 422 Invalid");
	co_error_prefix(&err, "stage '%s'", "deploy-tenants");
	assert_string_equal(err.msg, "stage 'deploy-tenants': apply 'core/podinfo': 422 Invalid");
	assert_int_equal(err.code, -EINVAL);
	co_error_clear(&err);
	err.code = -ENOENT;
	assert_string_equal(co_error_str(&err), "No such file or directory");
	co_error_prefix(&err, "open 'x'");
	assert_string_equal(err.msg, "open 'x': No such file or directory");
	assert_int_equal(co_error_set(NULL, -EIO, "ignored"), -EIO);
}

static void test_json_lines(void **state)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	json_t *o;
	json_error_t jerr;

	co_log_setup(CO_LOG_INFO, CO_LOG_JSON, f);
	co_log_debug("engine", "hidden");
	co_log_info("engine", "stage '%s' -> '%s'", "preflight", "create-cluster");
	fflush(f);
	assert_non_null(strchr(mem, '\n'));
	assert_null(strchr(strchr(mem, '\n') + 1, '\n'));
	o = json_loads(mem, JSON_DISABLE_EOF_CHECK, &jerr);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(o, "module")), "engine");
	assert_string_equal(json_string_value(json_object_get(o, "msg")),
			    "stage 'preflight' -> 'create-cluster'");
	json_decref(o);
	fclose(f);
	free(mem);
	co_log_setup(CO_LOG_INFO, CO_LOG_AUTO, NULL);
}

static void test_redact(void **state)
{
	char out[64];
	char text[] = "Authorization: Bearer abcdef123456\n{\"token\":\"s3cr3t\",\"x\":1}";

	assert_string_equal(co_log_redact("short", out, sizeof(out)), "<redacted>");
	assert_string_equal(co_log_redact("0123456789abcdef", out, sizeof(out)),
			    "0123…(16 chars)");
	co_log_scrub(text);
	assert_null(strstr(text, "abcdef123456"));
	assert_null(strstr(text, "s3cr3t"));
	assert_non_null(strstr(text, "\"x\":1"));
}

static void test_status_line(void **state)
{
	char *mem = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&mem, &len);
	const char *msg;

	co_log_setup(CO_LOG_INFO, CO_LOG_HUMAN, f);
	co_log_status("[1/7] preflight: scanning");
	co_log_info("engine", "stage 'preflight' done");
	co_log_status(NULL);
	fflush(f);
	/* drawn, cleared before the log line, drawn again after it, cleared at the end */
	assert_memory_equal(mem, "\r\033[K[1/7] preflight: scanning\r\033[K", 33);
	msg = strstr(mem, "engine: stage 'preflight' done\n[1/7] preflight: scanning");
	assert_non_null(msg);
	assert_string_equal(mem + len - 4, "\r\033[K");
	fclose(f);
	free(mem);

	/* JSON logs (not a terminal) ignore the status line entirely */
	mem = NULL;
	f = open_memstream(&mem, &len);
	co_log_setup(CO_LOG_INFO, CO_LOG_JSON, f);
	co_log_status("[1/7] preflight");
	co_log_info("engine", "x");
	fflush(f);
	assert_null(strstr(mem, "preflight"));
	assert_null(strchr(mem, '\r'));
	fclose(f);
	free(mem);
	co_log_setup(CO_LOG_INFO, CO_LOG_AUTO, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error),
		cmocka_unit_test(test_json_lines),
		cmocka_unit_test(test_redact),
		cmocka_unit_test(test_status_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
