/* Unit tests for the pipeline lock: exclusion (also across processes), release on
 * death, the holder named in the refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "engine/lock.h"

static char *tmp_lock(void)
{
	char tmpl[] = "/tmp/co-lock-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return co_asprintf("%s/pipeline.lock", tmpl);
}

static void test_exclusive(void **state)
{
	char *path = tmp_lock();
	struct co_error err = CO_ERROR_INIT;
	struct co_lock *a = NULL, *b = NULL;
	char pid[32];

	assert_int_equal(co_lock_acquire(&a, path, &err), 0);
	assert_int_equal(co_lock_acquire(&b, path, &err), -EBUSY);
	assert_null(b);
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	assert_non_null(strstr(err.msg, pid));
	co_lock_release(a);
	assert_int_equal(co_lock_acquire(&b, path, &err), 0);
	co_lock_release(b);
	co_lock_release(NULL);
	free(path);
}

static void test_other_process_and_death(void **state)
{
	char *path = tmp_lock();
	struct co_error err = CO_ERROR_INIT;
	struct co_lock *l = NULL;
	int ready[2], status;
	pid_t child;
	char c;

	assert_int_equal(pipe(ready), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct co_lock *held = NULL;

		if (co_lock_acquire(&held, path, NULL) < 0)
			_exit(3);
		if (write(ready[1], "x", 1) != 1)
			_exit(4);
		pause(); /* killed by the parent, lock never released by hand */
		_exit(0);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(co_lock_acquire(&l, path, &err), -EBUSY);
	kill(child, SIGKILL);
	waitpid(child, &status, 0);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(co_lock_acquire(&l, path, &err), 0);
	co_lock_release(l);
	close(ready[0]);
	close(ready[1]);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exclusive),
		cmocka_unit_test(test_other_process_and_death),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
