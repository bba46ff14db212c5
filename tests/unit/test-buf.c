/* Unit tests for co_buf and the allocation helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

static void test_append_and_grow(void **state)
{
	struct co_buf b = CO_BUF_INIT;

	assert_string_equal(co_buf_cstr(&b), "");
	for (int i = 0; i < 1000; i++)
		co_buf_putc(&b, (char)('a' + i % 26));
	assert_int_equal(b.len, 1000);
	assert_true(b.cap > 1000);
	assert_int_equal(b.data[1000], '\0');
	assert_int_equal(b.data[27], 'b');
	co_buf_release(&b);
	assert_null(b.data);
}

static void test_printf_large(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	co_buf_printf(&b, "[%s]%d", big, 42);
	assert_int_equal(b.len, 4999 + 4);
	assert_memory_equal(b.data + b.len - 3, "]42", 3);
	co_buf_release(&b);
}

static void test_consume_detach(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	size_t len;
	char *s;

	co_buf_puts(&b, "hello world");
	co_buf_consume(&b, 6);
	assert_string_equal(co_buf_cstr(&b), "world");
	co_buf_consume(&b, 100);
	assert_int_equal(b.len, 0);
	co_buf_puts(&b, "abc");
	s = co_buf_detach(&b, &len);
	assert_int_equal(len, 3);
	assert_string_equal(s, "abc");
	assert_null(b.data);
	free(s);
	s = co_buf_detach(&b, &len);
	assert_int_equal(len, 0);
	assert_string_equal(s, "");
	free(s);
}

static void test_strings(void **state)
{
	char *s = co_asprintf("%s-%03d", "node", 7);

	assert_string_equal(s, "node-007");
	free(s);
	s = co_strndup("abcdef", 3);
	assert_string_equal(s, "abc");
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_grow),
		cmocka_unit_test(test_printf_large),
		cmocka_unit_test(test_consume_detach),
		cmocka_unit_test(test_strings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
