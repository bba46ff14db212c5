/* Unit tests for query templates: substitution, spacing, escaping, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "analysis/template.h"

static const struct co_template_var vars[] = {
	{ "cluster", "cluster2" },
	{ "namespace", "core" },
	{ "app", ".*" },
	{ "interval", "1m" },
	{ "unset", NULL },
};

static void test_render(void **state)
{
	struct co_buf b = CO_BUF_INIT;

	assert_int_equal(co_template_render(&b,
		"sum(rate(http_requests_total{cluster=\"{{ cluster }}\",namespace=\"{{namespace}}\","
		"app=~\"{{  app\t}}\",code=~\"5..\"}[{{ interval }}]))", vars, 5,
		CO_TEMPLATE_PROMQL, NULL), 0);
	assert_string_equal(co_buf_cstr(&b),
		"sum(rate(http_requests_total{cluster=\"cluster2\",namespace=\"core\","
		"app=~\".*\",code=~\"5..\"}[1m]))");
	co_buf_reset(&b);
	assert_int_equal(co_template_render(&b, "", vars, 5, CO_TEMPLATE_RAW, NULL), 0);
	assert_string_equal(co_buf_cstr(&b), "");
	assert_int_equal(co_template_render(&b, "{ a } {x}", vars, 5, CO_TEMPLATE_RAW, NULL),
			 0);
	assert_string_equal(co_buf_cstr(&b), "{ a } {x}");
	co_buf_release(&b);
}

static void test_escape(void **state)
{
	static const struct co_template_var evil[] = { { "cluster", "a\"} or vector(1) #\\\n" } };
	struct co_buf b = CO_BUF_INIT;

	assert_int_equal(co_template_render(&b, "x{cluster=\"{{ cluster }}\"}", evil, 1,
					    CO_TEMPLATE_PROMQL, NULL), 0);
	assert_string_equal(co_buf_cstr(&b), "x{cluster=\"a\\\"} or vector(1) #\\\\\\n\"}");
	co_buf_reset(&b);
	assert_int_equal(co_template_render(&b, "{{cluster}}", evil, 1, CO_TEMPLATE_RAW, NULL),
			 0);
	assert_string_equal(co_buf_cstr(&b), evil[0].value);
	co_buf_release(&b);
}

static void test_errors(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_template_render(&b, "x{{ nope }}", vars, 5, CO_TEMPLATE_RAW, &err),
			 -EINVAL);
	assert_string_equal(err.msg, "unknown variable 'nope' in template at offset 1");
	assert_int_equal(co_template_render(&b, "{{ unset }}", vars, 5, CO_TEMPLATE_RAW, &err),
			 -EINVAL);
	assert_int_equal(co_template_render(&b, "ab{{ cluster ", vars, 5, CO_TEMPLATE_RAW,
					    &err), -EINVAL);
	assert_string_equal(err.msg, "unterminated or malformed '{{' at offset 2");
	assert_int_equal(co_template_render(&b, "{{ 1x }}", vars, 5, CO_TEMPLATE_RAW, &err),
			 -EINVAL);
	co_buf_release(&b);
}

static void test_uses(void **state)
{
	assert_true(co_template_uses("a{{ cluster }}b", "cluster"));
	assert_true(co_template_uses("{{x}}{{app}}", "app"));
	assert_false(co_template_uses("{{ cluster }}", "app"));
	assert_false(co_template_uses("{{ app", "app"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_uses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
