/* Unit tests for the pipeline journal: append, replay, torn tail, corrupt middle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "engine/journal.h"

static char *tmp_path(const char *leaf)
{
	char tmpl[] = "/tmp/co-journal-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return co_asprintf("%s/nested/dir/%s", tmpl, leaf);
}

static void append_raw(const char *path, const char *text)
{
	FILE *f = fopen(path, "a");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_append_replay(void **state)
{
	char *path = tmp_path("journal.jsonl");
	struct co_error err = CO_ERROR_INIT;
	struct co_journal *j = NULL;
	struct stat st;
	json_t *e;

	assert_int_equal(co_journal_open(&j, path, &err), 0);
	assert_int_equal(json_array_size(co_journal_entries(j)), 0);
	e = json_pack("{s:s, s:s, s:s}", "type", "stage", "stage", "preflight", "to", "done");
	assert_int_equal(co_journal_append(j, e, &err), 0);
	json_decref(e);
	e = json_pack("{s:s, s:s, s:s}", "type", "stage", "stage", "create-cluster", "to",
		      "creating");
	assert_int_equal(co_journal_append(j, e, &err), 0);
	json_decref(e);
	co_journal_free(j);

	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(co_journal_open(&j, path, &err), 0);
	assert_int_equal(json_array_size(co_journal_entries(j)), 2);
	e = (json_t *)co_journal_last(j, "stage", NULL, NULL);
	assert_string_equal(json_string_value(json_object_get(e, "stage")), "create-cluster");
	assert_non_null(json_object_get(e, "ts"));
	e = (json_t *)co_journal_last(j, "stage", "stage", "preflight");
	assert_string_equal(json_string_value(json_object_get(e, "to")), "done");
	assert_null(co_journal_last(j, "stage", "stage", "compare"));
	assert_null(co_journal_last(j, "lock", NULL, NULL));
	co_journal_free(j);
	free(path);
}

static void test_torn_tail_dropped(void **state)
{
	char *path = tmp_path("journal.jsonl");
	struct co_error err = CO_ERROR_INIT;
	struct co_journal *j = NULL;
	json_t *e;

	assert_int_equal(co_journal_open(&j, path, &err), 0);
	co_journal_free(j);
	append_raw(path, "{\"type\":\"stage\",\"stage\":\"a\"}\n{\"type\":\"sta");
	assert_int_equal(co_journal_open(&j, path, &err), 0);
	assert_int_equal(json_array_size(co_journal_entries(j)), 1);
	assert_int_equal(co_journal_dropped_bytes(j), strlen("{\"type\":\"sta"));
	/* The next append starts on a clean line. */
	e = json_pack("{s:s, s:s}", "type", "stage", "stage", "b");
	assert_int_equal(co_journal_append(j, e, &err), 0);
	json_decref(e);
	co_journal_free(j);
	assert_int_equal(co_journal_open(&j, path, &err), 0);
	assert_int_equal(json_array_size(co_journal_entries(j)), 2);
	assert_int_equal(co_journal_dropped_bytes(j), 0);
	co_journal_free(j);
	free(path);
}

static void test_corrupt_middle_is_error(void **state)
{
	char *path = tmp_path("journal.jsonl");
	struct co_error err = CO_ERROR_INIT;
	struct co_journal *j = NULL;

	assert_int_equal(co_journal_open(&j, path, &err), 0);
	co_journal_free(j);
	j = NULL;
	append_raw(path, "{\"type\":\"a\"}\nnot json\n{\"type\":\"b\"}\n");
	assert_int_equal(co_journal_open(&j, path, &err), -EINVAL);
	assert_null(j);
	assert_non_null(strstr(err.msg, "line 2"));
	free(path);
}

static void test_rejects_non_object(void **state)
{
	char *path = tmp_path("journal.jsonl");
	struct co_error err = CO_ERROR_INIT;
	struct co_journal *j = NULL;
	json_t *e = json_string("x");

	assert_int_equal(co_journal_open(&j, path, &err), 0);
	assert_int_equal(co_journal_append(j, e, &err), -EINVAL);
	json_decref(e);
	co_journal_free(j);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_replay),
		cmocka_unit_test(test_torn_tail_dropped),
		cmocka_unit_test(test_corrupt_middle_is_error),
		cmocka_unit_test(test_rejects_non_object),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
