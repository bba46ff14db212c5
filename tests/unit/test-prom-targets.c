/* Unit tests for the Prometheus file_sd targets writer and the atomic file helper. */
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
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "clients/prom-targets.h"

static void test_format_and_write(void **state)
{
	const char *blue[] = { "127.0.0.1:9101" };
	const char *green[] = { "127.0.0.1:9102", "127.0.0.1:9103" };
	struct co_prom_target t[] = {
		{ "blue", blue, 1, NULL },
		{ "green \"quoted\"", green, 2, "kubesim" },
	};
	char dir[] = "/tmp/cutover-prom-XXXXXX", path[64], tmp[96];
	json_error_t jerr;
	json_t *doc;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/targets.json", dir);
	assert_int_equal(co_prom_targets_write(path, t, 2, NULL), 0);
	doc = json_load_file(path, 0, &jerr);
	assert_non_null(doc);
	assert_int_equal(json_array_size(doc), 2);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_array_get(doc, 0), "labels"), "cluster")),
			    "blue");
	assert_string_equal(json_string_value(json_array_get(
				    json_object_get(json_array_get(doc, 1), "targets"), 1)),
			    "127.0.0.1:9103");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_array_get(doc, 1), "labels"), "cluster")),
			    "green \"quoted\"");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_array_get(doc, 1), "labels"), "job")),
			    "kubesim");
	json_decref(doc);

	/* replacing with none leaves an empty array, and no temporary file behind */
	assert_int_equal(co_prom_targets_write(path, NULL, 0, NULL), 0);
	doc = json_load_file(path, 0, &jerr);
	assert_true(json_is_array(doc) && json_array_size(doc) == 0);
	json_decref(doc);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	assert_int_not_equal(access(tmp, F_OK), 0);
	unlink(path);
	rmdir(dir);
}

static void test_invalid_keeps_old_file(void **state)
{
	const char *bad[] = { "no-port" };
	const char *ok[] = { "127.0.0.1:1" };
	struct co_prom_target t_bad = { "blue", bad, 1, NULL };
	struct co_prom_target t_empty = { "", ok, 1, NULL };
	struct co_prom_target t_none = { "blue", ok, 0, NULL };
	struct co_error err = CO_ERROR_INIT;
	char dir[] = "/tmp/cutover-prom-XXXXXX", path[64], buf[16] = { 0 };
	FILE *f;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/targets.json", dir);
	assert_int_equal(co_fs_write_atomic(path, "[]\n", 3, 0644, NULL), 0);
	assert_int_equal(co_prom_targets_write(path, &t_bad, 1, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no-port"));
	assert_int_equal(co_prom_targets_write(path, &t_empty, 1, &err), -EINVAL);
	assert_int_equal(co_prom_targets_write(path, &t_none, 1, &err), -EINVAL);
	f = fopen(path, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	assert_string_equal(buf, "[]\n");
	/* a parent that cannot be a directory (a regular file): error with the path */
	{
		char under_file[128];

		snprintf(under_file, sizeof(under_file), "%s/x", path);
		assert_int_equal(co_fs_write_atomic(under_file, "a", 1, 0644, &err), -ENOTDIR);
	}
	assert_non_null(strstr(err.msg, path));
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_and_write),
		cmocka_unit_test(test_invalid_keeps_old_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
