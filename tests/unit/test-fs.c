/* base/fs: mkdir -p, bounded reads, atomic replacement, sorted directory listings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"

static void rm_rf(char *dir)
{
	char *cmd = co_asprintf("rm -rf '%s'", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(dir);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/co-fs-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return co_strdup(tmpl);
}

static void test_write_read(void **state)
{
	char *dir = tmpdir();
	char *path = co_asprintf("%s/a/b/c/file.json", dir);
	struct co_error err = CO_ERROR_INIT;
	struct co_buf b = CO_BUF_INIT;
	struct stat st;

	assert_int_equal(co_fs_write_atomic(path, "first", 5, 0600, &err), 0);
	assert_int_equal(co_fs_write_atomic(path, "second", 6, 0600, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(co_fs_read(path, 100, &b, &err), 0);
	assert_string_equal(co_buf_cstr(&b), "second");
	co_buf_reset(&b);
	assert_int_equal(co_fs_read(path, 3, &b, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "larger than 3 bytes"));
	co_buf_reset(&b);
	free(path);
	path = co_asprintf("%s/missing", dir);
	assert_int_equal(co_fs_read(path, 3, &b, &err), -ENOENT);
	assert_non_null(strstr(err.msg, path));
	/* no temporary file is left behind */
	free(path);
	path = co_asprintf("%s/a/b/c", dir);
	{
		char **names;
		size_t n;

		assert_int_equal(co_fs_list_dir(path, &names, &n, &err), 0);
		assert_int_equal(n, 1);
		assert_string_equal(names[0], "file.json");
		co_fs_names_free(names);
	}
	co_buf_release(&b);
	free(path);
	rm_rf(dir);
}

static void test_list_dir(void **state)
{
	char *dir = tmpdir();
	const char *files[] = { "zeta.yaml", "alpha.yaml", ".hidden", "Mid.yaml" };
	struct co_error err = CO_ERROR_INIT;
	char **names = NULL;
	size_t n = 99;
	char *missing;

	for (size_t i = 0; i < 4; i++) {
		char *p = co_asprintf("%s/%s", dir, files[i]);

		assert_int_equal(co_fs_write_atomic(p, "x", 1, 0644, &err), 0);
		free(p);
	}
	assert_int_equal(co_fs_list_dir(dir, &names, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "Mid.yaml");
	assert_string_equal(names[1], "alpha.yaml");
	assert_string_equal(names[2], "zeta.yaml");
	assert_null(names[3]);
	co_fs_names_free(names);

	missing = co_asprintf("%s/nope", dir);
	names = NULL;
	n = 99;
	assert_int_equal(co_fs_list_dir(missing, &names, &n, &err), -ENOENT);
	assert_null(names);
	assert_int_equal(n, 99);
	assert_non_null(strstr(err.msg, "open '"));
	co_fs_names_free(NULL);
	free(missing);
	rm_rf(dir);
}

static void test_mkdir(void **state)
{
	char *dir = tmpdir();
	char *deep = co_asprintf("%s/x/y/z", dir);
	char *file = co_asprintf("%s/x/y/z/f", dir);
	struct stat st;

	assert_int_equal(co_fs_mkdir_p(deep, 0700), 0);
	assert_int_equal(co_fs_mkdir_p(deep, 0700), 0); /* idempotent */
	assert_int_equal(stat(deep, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(co_fs_mkdir_parent(file, 0700), 0);
	free(deep);
	free(file);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read),
		cmocka_unit_test(test_list_dir),
		cmocka_unit_test(test_mkdir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
