/*
 * Unit tests for the subprocess runner: exit codes, signals, output capture and caps,
 * stdin, environment overlay, cwd, spawn failure, deadline kill and cancel. Every
 * loop test counts callbacks and ends with uv_loop_close() == 0 so a leaked handle
 * fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/subproc.h"
#include "base/time.h"

struct outcome {
	int calls;
	int status;
	int64_t exit_code;
	int term_signal;
	char *out;
	char *err;
	size_t out_len;
	int out_truncated;
	int err_truncated;
	uint64_t elapsed_ms;
};

static void on_done(struct co_subproc_result *res, void *data)
{
	struct outcome *o = data;

	o->calls++;
	o->status = res->status;
	o->exit_code = res->exit_code;
	o->term_signal = res->term_signal;
	o->out = co_buf_detach(&res->out, &o->out_len);
	o->err = co_buf_detach(&res->err, NULL);
	o->out_truncated = res->out_truncated;
	o->err_truncated = res->err_truncated;
	o->elapsed_ms = res->elapsed_ms;
}

static void outcome_release(struct outcome *o)
{
	free(o->out);
	free(o->err);
}

/* Run opts to completion on a fresh loop; asserts one callback and a clean loop. */
static void run(const struct co_subproc_opts *opts, struct outcome *o)
{
	struct co_error err = CO_ERROR_INIT;
	uv_loop_t loop;

	memset(o, 0, sizeof(*o));
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(co_subproc_run(&loop, NULL, opts, on_done, o, &err), 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(o->calls, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_exit_codes(void **state)
{
	const char *t[] = { "true", NULL };
	const char *f[] = { "false", NULL };
	const char *e7[] = { "sh", "-c", "exit 7", NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = t }, &o);
	assert_int_equal(o.status, 0);
	assert_int_equal(o.exit_code, 0);
	assert_int_equal(o.term_signal, 0);
	outcome_release(&o);

	run(&(struct co_subproc_opts){ .argv = f }, &o);
	assert_int_equal(o.status, 0);
	assert_int_equal(o.exit_code, 1);
	outcome_release(&o);

	run(&(struct co_subproc_opts){ .argv = e7 }, &o);
	assert_int_equal(o.exit_code, 7);
	outcome_release(&o);
}

static void test_signal(void **state)
{
	const char *argv[] = { "sh", "-c", "kill -9 $$", NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv }, &o);
	assert_int_equal(o.status, 0);
	assert_int_equal(o.term_signal, SIGKILL);
	outcome_release(&o);
}

static void test_capture(void **state)
{
	const char *argv[] = { "sh", "-c", "printf 'hello\\nworld'; printf oops >&2", NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv }, &o);
	assert_int_equal(o.exit_code, 0);
	assert_string_equal(o.out, "hello\nworld");
	assert_string_equal(o.err, "oops");
	assert_false(o.out_truncated);
	assert_false(o.err_truncated);
	outcome_release(&o);
}

static void test_truncation(void **state)
{
	/* 200000 bytes on stdout, 3 on stderr; cap 1000: the child still runs to its
	 * end because excess output is read and discarded. */
	const char *argv[] = { "sh", "-c",
			       "head -c 200000 /dev/zero | tr '\\0' x; printf abc >&2; exit 3",
			       NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv, .max_output = 1000 }, &o);
	assert_int_equal(o.exit_code, 3);
	assert_int_equal(o.out_len, 1000);
	assert_true(o.out_truncated);
	assert_string_equal(o.err, "abc");
	assert_false(o.err_truncated);
	for (size_t i = 0; i < o.out_len; i++)
		assert_int_equal(o.out[i], 'x');
	outcome_release(&o);
}

static void test_stdin_echo(void **state)
{
	const char *argv[] = { "cat", NULL };
	size_t n = 300000;  /* larger than a pipe buffer */
	char *in = malloc(n);
	struct outcome o;

	for (size_t i = 0; i < n; i++)
		in[i] = (char)('a' + i % 26);
	run(&(struct co_subproc_opts){ .argv = argv, .stdin_data = in, .stdin_len = n,
				       .max_output = n },
	    &o);
	assert_int_equal(o.exit_code, 0);
	assert_int_equal(o.out_len, n);
	assert_memory_equal(o.out, in, n);
	assert_false(o.out_truncated);
	outcome_release(&o);
	free(in);
}

static void test_stdin_default_devnull(void **state)
{
	/* Without stdin data, cat reads /dev/null and ends at once. */
	const char *argv[] = { "cat", NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv, .timeout_ms = 5000 }, &o);
	assert_int_equal(o.status, 0);
	assert_int_equal(o.out_len, 0);
	outcome_release(&o);
}

static void test_env_overlay(void **state)
{
	const char *argv[] = { "sh", "-c", "echo \"$CO_X|$CO_Y|${HOME:+home}\"", NULL };
	const char *env[] = { "CO_X=overlay", "CO_Y=one", "CO_Y=two", NULL };
	struct outcome o;

	setenv("CO_X", "parent", 1);
	setenv("HOME", "/nonexistent-home", 1);
	run(&(struct co_subproc_opts){ .argv = argv, .env = env }, &o);
	assert_string_equal(o.out, "overlay|two|home\n");
	outcome_release(&o);

	/* No overlay: the parent environment as is. */
	run(&(struct co_subproc_opts){ .argv = argv }, &o);
	assert_string_equal(o.out, "parent||home\n");
	outcome_release(&o);
	unsetenv("CO_X");
}

static void test_cwd(void **state)
{
	const char *argv[] = { "pwd", NULL };
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv, .cwd = "/tmp" }, &o);
	assert_string_equal(o.out, "/tmp\n");
	outcome_release(&o);
}

static void test_spawn_missing(void **state)
{
	const char *argv[] = { "co-no-such-program-xyz", NULL };
	struct co_error err = CO_ERROR_INIT;
	struct co_subproc *proc = NULL;
	struct outcome o = { 0 };
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(co_subproc_run(&loop, &proc, &(struct co_subproc_opts){ .argv = argv },
					on_done, &o, &err),
			 -ENOENT);
	assert_null(proc);
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.msg,
			    "spawn 'co-no-such-program-xyz': no such file or directory");
	/* Internal handles close on the next loop turn; the callback never runs. */
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(o.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);

	/* A bad cwd is a spawn error too. */
	const char *t[] = { "true", NULL };
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_true(co_subproc_run(&loop, NULL,
				   &(struct co_subproc_opts){ .argv = t,
							      .cwd = "/nonexistent/dir" },
				   on_done, &o, &err) < 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(o.calls, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_timeout_kill(void **state)
{
	const char *argv[] = { "sleep", "10", NULL };
	uint64_t t0 = co_time_mono_ms();
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv, .timeout_ms = 200 }, &o);
	assert_int_equal(o.status, -ETIMEDOUT);
	assert_int_equal(o.term_signal, SIGTERM);
	assert_true(o.elapsed_ms >= 190);
	assert_true(co_time_mono_ms() - t0 < 2000);
	outcome_release(&o);
}

static void test_timeout_sigkill_after_grace(void **state)
{
	/* The shell ignores SIGTERM, so only the SIGKILL after the grace ends it. The
	 * trailing "wait" keeps sh from exec'ing sleep. */
	const char *argv[] = { "sh", "-c", "trap '' TERM; sleep 10 & wait; wait", NULL };
	uint64_t t0 = co_time_mono_ms();
	struct outcome o;

	run(&(struct co_subproc_opts){ .argv = argv, .timeout_ms = 150,
				       .kill_grace_ms = 200 },
	    &o);
	assert_int_equal(o.status, -ETIMEDOUT);
	assert_int_equal(o.term_signal, SIGKILL);
	assert_true(o.elapsed_ms >= 340);   /* millisecond clocks truncate */
	/* The grandchild sleep was killed with its group, so the pipes closed. */
	assert_true(co_time_mono_ms() - t0 < 2000);
	outcome_release(&o);
}

static void on_cancel_timer(uv_timer_t *t)
{
	co_subproc_cancel(t->data);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
	const char *argv[] = { "sleep", "10", NULL };
	struct co_error err = CO_ERROR_INIT;
	struct co_subproc *proc = NULL;
	uint64_t t0 = co_time_mono_ms();
	struct outcome o = { 0 };
	uv_timer_t timer;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(co_subproc_run(&loop, &proc, &(struct co_subproc_opts){ .argv = argv },
					on_done, &o, &err),
			 0);
	assert_non_null(proc);
	uv_timer_init(&loop, &timer);
	timer.data = proc;
	uv_timer_start(&timer, on_cancel_timer, 50, 0);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -ECANCELED);
	assert_int_equal(o.term_signal, SIGTERM);
	assert_true(co_time_mono_ms() - t0 < 2000);
	assert_int_equal(uv_loop_close(&loop), 0);
	outcome_release(&o);
}

static void test_run_sync(void **state)
{
	const char *argv[] = { "echo", "sync", NULL };
	struct co_subproc_result res;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_subproc_run_sync(&(struct co_subproc_opts){ .argv = argv }, &res,
					     &err),
			 0);
	assert_int_equal(res.status, 0);
	assert_int_equal(res.exit_code, 0);
	assert_string_equal(co_buf_cstr(&res.out), "sync\n");
	co_subproc_result_release(&res);

	const char *missing[] = { "co-no-such-program-xyz", NULL };
	assert_int_equal(co_subproc_run_sync(&(struct co_subproc_opts){ .argv = missing },
					     &res, &err),
			 -ENOENT);
	co_subproc_result_release(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exit_codes),
		cmocka_unit_test(test_signal),
		cmocka_unit_test(test_capture),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_stdin_echo),
		cmocka_unit_test(test_stdin_default_devnull),
		cmocka_unit_test(test_env_overlay),
		cmocka_unit_test(test_cwd),
		cmocka_unit_test(test_spawn_missing),
		cmocka_unit_test(test_timeout_kill),
		cmocka_unit_test(test_timeout_sigkill_after_grace),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_run_sync),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
