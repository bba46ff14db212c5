/*
 * Tiny HTTP/1.1 backends for integration tests, on their own thread and loop so the
 * test can block (libcurl, waiting for wrk) while they keep answering. Each answers
 * its own name ("blue\n") to every request, /healthz with "ok", and 500 instead when
 * its fail flag is set (health stays 200: an application regression, not an outage).
 */
#ifndef CO_TESTS_BACKENDS_H
#define CO_TESTS_BACKENDS_H

#include <stdatomic.h>

#define TEST_BACKENDS_MAX 4

struct test_backend {
	char name[32];
	int port;
	atomic_int fail;          /* answer 500 to application requests */
	atomic_long served;       /* application requests answered */
};

/* Start n backends named names[i] on 127.0.0.1 ephemeral ports; 0 or negative. */
int test_backends_start(const char *const *names, int n);
struct test_backend *test_backend(int i);
/* Stop the thread and close every handle; returns uv_loop_close()'s result. */
int test_backends_stop(void);

#endif
