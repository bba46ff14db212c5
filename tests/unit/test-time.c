/* Unit tests for the time helpers: Go durations, RFC 3339, time scale. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>

#include "base/time.h"

static void test_parse_duration(void **state)
{
	static const struct {
		const char *in;
		int64_t ms;
	} ok[] = {
		{ "0", 0 },         { "1s", 1000 },        { "500ms", 500 },
		{ "1m30s", 90000 }, { "1.5h", 5400000 },   { "2h45m", 9900000 },
		{ "-10s", -10000 }, { "1500us", 2 },       { "10m", 600000 },
		{ "1h0m0s", 3600000 },
	};
	static const char *const bad[] = { "", "10", "s", "1x", "1..s", "m5", "1s ", "-" };
	int64_t ms;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(co_time_parse_duration(ok[i].in, &ms), 0);
		assert_int_equal(ms, ok[i].ms);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ms = 12345;
		assert_int_equal(co_time_parse_duration(bad[i], &ms), -EINVAL);
		assert_int_equal(ms, 12345);
	}
}

static void test_format_duration(void **state)
{
	char buf[32];

	assert_string_equal(co_time_format_duration(0, buf, sizeof(buf)), "0s");
	assert_string_equal(co_time_format_duration(250, buf, sizeof(buf)), "250ms");
	assert_string_equal(co_time_format_duration(90000, buf, sizeof(buf)), "1m30s");
	assert_string_equal(co_time_format_duration(3600500, buf, sizeof(buf)), "1h0m0.5s");
}

static void test_rfc3339(void **state)
{
	char buf[32];
	int64_t ms;

	assert_string_equal(co_time_rfc3339(1700000000123, buf, sizeof(buf)),
			    "2023-11-14T22:13:20Z");
	assert_int_equal(co_time_parse_rfc3339("2023-11-14T22:13:20Z", &ms), 0);
	assert_int_equal(ms, 1700000000000);
	assert_int_equal(co_time_parse_rfc3339("2023-11-14T23:13:20.5+01:00", &ms), 0);
	assert_int_equal(ms, 1700000000500);
	assert_int_equal(co_time_parse_rfc3339("2023-11-14 22:13:20", &ms), -EINVAL);
	assert_int_equal(co_time_parse_rfc3339("2023-11-14T22:13:20", &ms), -EINVAL);
}

static void test_scale(void **state)
{
	co_time_set_scale(0.01);
	assert_int_equal(co_time_scaled(60000), 600);
	assert_int_equal(co_time_scaled(10), 1);
	assert_int_equal(co_time_scaled(0), 0);
	co_time_set_scale(1.0);
	assert_int_equal(co_time_scaled(60000), 60000);
}

static void test_monotonic(void **state)
{
	uint64_t a = co_time_mono_ns(), b = co_time_mono_ns();

	assert_true(b >= a);
	assert_true(co_time_wall_ms() > 1600000000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_rfc3339),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_monotonic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
