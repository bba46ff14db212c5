/*
 * Test backends (see backends.h): a raw libuv TCP server per name, requests framed by
 * the blank line that ends their headers (tests send no bodies), answered in order on
 * a keep-alive connection.
 */
#include "backends.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct bconn {
	uv_tcp_t tcp;
	struct test_backend *b;
	char buf[16384];
	size_t len;
	int close_after;
};

static uv_loop_t loop;
static uv_tcp_t servers[TEST_BACKENDS_MAX];
static struct test_backend backends[TEST_BACKENDS_MAX];
static int n_backends;
static uv_async_t stop_async;
static pthread_t thread;
static uv_sem_t ready;

static void on_close_conn(uv_handle_t *h)
{
	free(h->data);
}

static void on_written(uv_write_t *w, int status)
{
	struct bconn *c = w->data;

	if (c && c->close_after && !uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_close_conn);
	free(w);
}

static void respond(struct bconn *c, const char *reqline, int last)
{
	char out[256];
	const char *body = c->b->name;
	int status = 200, n;
	uv_write_t *w = malloc(sizeof(*w) + sizeof(out));
	uv_buf_t ub;

	if (strncmp(reqline, "GET /healthz", 12) == 0 ||
	    strncmp(reqline, "OPTIONS", 7) == 0) {
		body = "ok";
	} else {
		if (atomic_load(&c->b->fail))
			status = 500;
		atomic_fetch_add(&c->b->served, 1);
	}
	n = snprintf((char *)(w + 1), sizeof(out),
		     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
		     "%s\r\n%s\n",
		     status, status == 200 ? "OK" : "Internal Server Error", strlen(body) + 1,
		     c->close_after ? "Connection: close\r\n" : "", body);
	w->data = last ? c : NULL;
	ub = uv_buf_init((char *)(w + 1), (unsigned)n);
	if (uv_write(w, (uv_stream_t *)&c->tcp, &ub, 1, on_written) < 0)
		free(w);
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	struct bconn *c = h->data;

	buf->base = c->buf + c->len;
	buf->len = sizeof(c->buf) - c->len - 1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct bconn *c = s->data;
	char *end;

	if (nread < 0 || (nread == 0 && c->len == sizeof(c->buf) - 1)) {
		if (!uv_is_closing((uv_handle_t *)s))
			uv_close((uv_handle_t *)s, on_close_conn);
		return;
	}
	c->len += (size_t)nread;
	c->buf[c->len] = '\0';
	while (!c->close_after && (end = strstr(c->buf, "\r\n\r\n"))) {
		size_t used = (size_t)(end + 4 - c->buf);

		c->close_after = strstr(c->buf, "HTTP/1.0") != NULL &&
				 strstr(c->buf, "Keep-Alive") == NULL;
		respond(c, c->buf, c->close_after);
		memmove(c->buf, c->buf + used, c->len - used + 1);
		c->len -= used;
	}
}

static void on_connection(uv_stream_t *srv, int status)
{
	struct bconn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	c->b = srv->data;
	uv_tcp_init(&loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) == 0)
		uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	else
		uv_close((uv_handle_t *)&c->tcp, on_close_conn);
}

static void close_all(uv_handle_t *h, void *arg)
{
	int ours = h->type == UV_TCP;

	for (int i = 0; i < n_backends; i++)
		if (h == (uv_handle_t *)&servers[i])
			ours = 0;
	if (!uv_is_closing(h))
		uv_close(h, ours ? on_close_conn : NULL);
}

static void on_stop(uv_async_t *a)
{
	uv_walk(&loop, close_all, NULL);
}

static void *run(void *arg)
{
	uv_sem_post(&ready);
	uv_run(&loop, UV_RUN_DEFAULT);
	return NULL;
}

int test_backends_start(const char *const *names, int n)
{
	uv_loop_init(&loop);
	n_backends = n;
	for (int i = 0; i < n; i++) {
		struct sockaddr_storage ss;
		struct sockaddr_in sin;
		int len = sizeof(ss), rc;

		snprintf(backends[i].name, sizeof(backends[i].name), "%s", names[i]);
		uv_tcp_init(&loop, &servers[i]);
		servers[i].data = &backends[i];
		uv_ip4_addr("127.0.0.1", 0, &sin);
		rc = uv_tcp_bind(&servers[i], (struct sockaddr *)&sin, 0);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&servers[i], 256, on_connection);
		if (rc < 0)
			return rc;
		uv_tcp_getsockname(&servers[i], (struct sockaddr *)&ss, &len);
		backends[i].port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	uv_async_init(&loop, &stop_async, on_stop);
	uv_sem_init(&ready, 0);
	if (pthread_create(&thread, NULL, run, NULL))
		return -1;
	uv_sem_wait(&ready);
	return 0;
}

struct test_backend *test_backend(int i)
{
	return &backends[i];
}

int test_backends_stop(void)
{
	uv_async_send(&stop_async);
	pthread_join(thread, NULL);
	uv_sem_destroy(&ready);
	return uv_loop_close(&loop);
}
