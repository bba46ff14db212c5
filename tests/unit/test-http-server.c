/*
 * Tests for the HTTP server: its loop runs in a background thread while the test
 * thread plays client with the real curl CLI, libcurl and raw sockets. Every test
 * starts a fresh loop and server, stops it through a uv_async, and asserts that the
 * close callback ran once and uv_loop_close() returns 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "net/http-server.h"

extern char **environ;

struct fx {
	uv_loop_t loop;
	uv_async_t stop;
	struct co_http_server *srv;
	pthread_t thread;
	int port;
	atomic_int closed;
	atomic_int close_now;         /* ask for close while a request is in flight */
	struct co_http_server_stats stats;
	/* handler observations */
	atomic_int on_close_calls;
	atomic_int slow_started;
	atomic_int chunks_written;
	atomic_long max_pending;
	int stream_chunks;            /* chunks /stream writes before ending */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wait_for(atomic_int *v, int want, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;

	while (atomic_load(v) < want && now_ms() < end)
		usleep(2000);
}

/* ---- handlers (run on the loop thread) ---- */

static void h_hello(struct co_http_req *req, void *data)
{
	co_http_respond(req, 200, "text/plain", "hello", 5);
}

static void h_item(struct co_http_req *req, void *data)
{
	const char *q = co_http_req_query_param(req, "q");

	co_http_add_header(req, "X-Peer", co_http_req_peer(req));
	co_http_respond_text(req, 200, "id=%s rest=%s q=%s path=%s", co_http_req_param(req, "id"),
			     co_http_req_param(req, "rest"), q ? q : "(null)",
			     co_http_req_path(req));
}

static void h_echo(struct co_http_req *req, void *data)
{
	size_t len;
	const char *body = co_http_req_body(req, &len);

	co_http_respond(req, 201, "application/octet-stream", body, len);
}

static void h_fallback(struct co_http_req *req, void *data)
{
	co_http_respond_text(req, 200, "fallback %s", co_http_req_path(req));
}

/* /slow: answers from a timer 100 ms later; handles the client going away. */
struct slow {
	uv_timer_t timer;
	struct co_http_req *req;
	struct fx *fx;
};

static void slow_free(uv_handle_t *h)
{
	free(h->data);
}

static void slow_fire(uv_timer_t *t)
{
	struct slow *s = t->data;

	co_http_respond(s->req, 200, "text/plain", "slow", 4);
	uv_close((uv_handle_t *)t, slow_free);
}

static void slow_gone(struct co_http_req *req, void *data)
{
	struct slow *s = data;

	atomic_fetch_add(&s->fx->on_close_calls, 1);
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, slow_free);
}

static void h_slow(struct co_http_req *req, void *data)
{
	struct fx *fx = data;
	struct slow *s = calloc(1, sizeof(*s));

	s->req = req;
	s->fx = fx;
	uv_timer_init(&fx->loop, &s->timer);
	s->timer.data = s;
	co_http_req_on_close(req, slow_gone, s);
	uv_timer_start(&s->timer, slow_fire, 100, 0);
	atomic_fetch_add(&fx->slow_started, 1);
	if (atomic_load(&fx->close_now))
		uv_async_send(&fx->stop);
}

/* /stream: chunks from a timer every 20 ms; /flood: big chunks until the client goes. */
struct stream {
	uv_timer_t timer;
	struct co_http_req *req;
	struct fx *fx;
	int n;
	int flood;
};

static void stream_tick(uv_timer_t *t)
{
	struct stream *s = t->data;
	struct fx *fx = s->fx;

	if (s->flood) {
		static char block[64 * 1024];
		long pending;

		while (co_http_pending_bytes(s->req) < 512 * 1024) {
			if (co_http_write(s->req, block, sizeof(block)) < 0)
				return;
		}
		pending = (long)co_http_pending_bytes(s->req);
		if (pending > atomic_load(&fx->max_pending))
			atomic_store(&fx->max_pending, pending);
		return;
	}
	char line[32];
	int len = snprintf(line, sizeof(line), "chunk %d\n", s->n);

	/* no cmocka assertions on the loop thread: failures show in the client */
	if (co_http_write(s->req, line, (size_t)len) == 0)
		atomic_fetch_add(&fx->chunks_written, 1);
	if (++s->n == fx->stream_chunks) {
		co_http_end(s->req);
		uv_close((uv_handle_t *)t, slow_free);
	}
}

static void stream_gone(struct co_http_req *req, void *data)
{
	struct stream *s = data;

	/* writes fail now, and ending inside the callback is harmless */
	if (co_http_write(req, "x", 1) == -EPIPE && co_http_pending_bytes(req) == 0)
		atomic_fetch_add(&s->fx->on_close_calls, 1);
	co_http_end(req);
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, slow_free);
}

static void start_stream(struct co_http_req *req, struct fx *fx, int flood)
{
	struct stream *s = calloc(1, sizeof(*s));

	s->req = req;
	s->fx = fx;
	s->flood = flood;
	uv_timer_init(&fx->loop, &s->timer);
	s->timer.data = s;
	co_http_req_on_close(req, stream_gone, s);
	co_http_begin_chunked(req, 200, "text/plain");
	uv_timer_start(&s->timer, stream_tick, 20, 20);
}

static void h_stream(struct co_http_req *req, void *data)
{
	start_stream(req, data, 0);
}

static void h_flood(struct co_http_req *req, void *data)
{
	start_stream(req, data, 1);
}

/* ---- fixture ---- */

static void on_srv_closed(void *data)
{
	struct fx *fx = data;

	atomic_fetch_add(&fx->closed, 1);
}

static void on_stop(uv_async_t *a)
{
	struct fx *fx = a->data;

	co_http_server_stats(fx->srv, &fx->stats);
	co_http_server_close(fx->srv, on_srv_closed, fx);
	uv_close((uv_handle_t *)a, NULL);
}

static void *run_loop(void *arg)
{
	struct fx *fx = arg;

	uv_run(&fx->loop, UV_RUN_DEFAULT);
	return NULL;
}

static struct fx *fx_start_with(const struct co_http_server_opts *opts, int fallback)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	struct co_error err = CO_ERROR_INIT;

	fx->stream_chunks = 5;
	assert_int_equal(uv_loop_init(&fx->loop), 0);
	assert_int_equal(co_http_server_new(&fx->srv, &fx->loop, opts, &err), 0);
	fx->port = co_http_server_port(fx->srv);
	assert_true(fx->port > 0);
	co_http_server_route(fx->srv, "GET", "/", h_hello, fx);
	co_http_server_route(fx->srv, "GET", "/items/{id}/files/{rest...}", h_item, fx);
	co_http_server_route(fx->srv, "GET", "/items/{id}", h_item, fx);
	co_http_server_route(fx->srv, "POST", "/echo", h_echo, fx);
	co_http_server_route(fx->srv, "PUT", "/echo", h_echo, fx);
	co_http_server_route(fx->srv, "GET", "/slow", h_slow, fx);
	co_http_server_route(fx->srv, "GET", "/stream", h_stream, fx);
	co_http_server_route(fx->srv, "GET", "/flood", h_flood, fx);
	if (fallback)
		co_http_server_fallback(fx->srv, h_fallback, NULL);
	assert_int_equal(uv_async_init(&fx->loop, &fx->stop, on_stop), 0);
	fx->stop.data = fx;
	assert_int_equal(pthread_create(&fx->thread, NULL, run_loop, fx), 0);
	return fx;
}

static struct fx *fx_start(const struct co_http_server_opts *opts)
{
	return fx_start_with(opts, 0);
}

/* Stop the server, check the loop ends clean; the stats as they were at close. */
static struct co_http_server_stats fx_stop(struct fx *fx)
{
	struct co_http_server_stats stats;

	uv_async_send(&fx->stop);
	assert_int_equal(pthread_join(fx->thread, NULL), 0);
	assert_int_equal(atomic_load(&fx->closed), 1);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	stats = fx->stats;
	free(fx);
	return stats;
}

/* ---- raw socket client ---- */

static int raw_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void raw_send(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL);

		assert_true(n > 0);
		data += n;
		len -= (size_t)n;
	}
}

/*
 * Read into out (NUL-terminated) until needle appears (if given), EOF or error,
 * or timeout_ms. Returns bytes read; *ret_eof says whether the peer closed.
 */
static size_t raw_read(int fd, char *out, size_t cap, const char *needle, int timeout_ms,
		       int *ret_eof)
{
	uint64_t end = now_ms() + (uint64_t)timeout_ms;
	size_t len = 0;

	if (ret_eof)
		*ret_eof = 0;
	out[0] = '\0';
	while (len + 1 < cap) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ms();
		ssize_t n;

		if (needle && strstr(out, needle))
			break;
		if (now >= end || poll(&pfd, 1, (int)(end - now)) <= 0)
			break;
		n = recv(fd, out + len, cap - 1 - len, 0);
		if (n <= 0) {
			if (ret_eof)
				*ret_eof = 1;
			break;
		}
		len += (size_t)n;
		out[len] = '\0';
	}
	return len;
}

static int count_str(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

/* ---- curl CLI ---- */

/* Run curl with argv (no shell), capturing stdout and stderr together. */
static int run_curl(char *const argv[], char *out, size_t cap)
{
	posix_spawn_file_actions_t fa;
	int pipefd[2], status;
	size_t len = 0;
	pid_t pid;
	ssize_t n;

	assert_int_equal(pipe(pipefd), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
	posix_spawn_file_actions_addclose(&fa, pipefd[0]);
	assert_int_equal(posix_spawnp(&pid, "curl", &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pipefd[1]);
	while ((n = read(pipefd[0], out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_curl_cli_keepalive(void **state)
{
	struct fx *fx = fx_start(NULL);
	char url1[128], url2[128], out[16384];

	snprintf(url1, sizeof(url1), "http://127.0.0.1:%d/", fx->port);
	snprintf(url2, sizeof(url2), "http://127.0.0.1:%d/items/7?q=a%%20b", fx->port);
	{
		char *argv[] = { "curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-o",
				 "/dev/null", "--write-out", "%{http_code}:%{num_connects}\n",
				 url1, url2, NULL };

		assert_int_equal(run_curl(argv, out, sizeof(out)), 0);
		assert_string_equal(out, "200:1\n200:0\n");
	}
	{
		char *argv[] = { "curl", "-sS", "-v", "--max-time", "5", url1, url2, NULL };

		assert_int_equal(run_curl(argv, out, sizeof(out)), 0);
		assert_non_null(strstr(out, "Re-using existing connection"));
		assert_non_null(strstr(out, "hello"));
		assert_non_null(strstr(out, "id=7 rest=(null) q=a b path=/items/7"));
		assert_non_null(strstr(out, "< Date: "));
	}
	/* two curl runs, one connection each */
	assert_int_equal(fx_stop(fx).connections_total, 2);
}

/* ---- libcurl ---- */

struct resp {
	char body[65536];
	size_t len;
	char headers[8192];
	size_t hlen;
	int writes;
	uint64_t first_ms, last_ms;
};

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
	struct resp *r = data;
	size_t len = size * n;

	if (r->len + len >= sizeof(r->body))
		return 0;
	memcpy(r->body + r->len, p, len);
	r->len += len;
	r->body[r->len] = '\0';
	if (!r->writes++)
		r->first_ms = now_ms();
	r->last_ms = now_ms();
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
	struct resp *r = data;
	size_t len = size * n;

	if (r->hlen + len < sizeof(r->headers)) {
		memcpy(r->headers + r->hlen, p, len);
		r->hlen += len;
		r->headers[r->hlen] = '\0';
	}
	return len;
}

static long easy_get(CURL *h, int port, const char *path, struct resp *r)
{
	char url[512];
	long code = 0;

	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	return code;
}

static void test_libcurl_keepalive_and_routing(void **state)
{
	struct fx *fx = fx_start(NULL);
	CURL *h = curl_easy_init();
	struct resp *r = calloc(1, sizeof(*r));
	struct co_http_server_stats stats;
	long connects = -1;

	assert_int_equal(easy_get(h, fx->port, "/", r), 200);
	assert_string_equal(r->body, "hello");
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 1);

	assert_int_equal(easy_get(h, fx->port,
				  "/items/a%2Fb/files/x/y%20z/?q=1+2%3D3&q=second", r), 200);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 0); /* the connection was reused */
	assert_string_equal(r->body, "id=a/b rest=x/y z/ q=1 2=3 path=/items/a/b/files/x/y z/");
	assert_non_null(strstr(r->headers, "X-Peer: 127.0.0.1:"));

	/* "{rest...}" may be empty; "{id}" may not */
	assert_int_equal(easy_get(h, fx->port, "/items/9/files", r), 200);
	assert_string_equal(r->body, "id=9 rest= q=(null) path=/items/9/files");
	assert_int_equal(easy_get(h, fx->port, "/items/", r), 404);
	assert_int_equal(easy_get(h, fx->port, "/nowhere", r), 404);

	/* a known path with another method */
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
	assert_int_equal(easy_get(h, fx->port, "/echo", r), 405);
	assert_non_null(strstr(r->headers, "Allow: POST, PUT\r\n"));
	assert_int_equal(easy_get(h, fx->port, "/", r), 405);
	assert_non_null(strstr(r->headers, "Allow: GET, HEAD\r\n"));
	curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);

	/* POST echo with keep-alive still on the first connection */
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, "payload=1");
	assert_int_equal(easy_get(h, fx->port, "/echo", r), 201);
	assert_string_equal(r->body, "payload=1");
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(connects, 0);

	curl_easy_cleanup(h);
	free(r);
	stats = fx_stop(fx);
	assert_int_equal(stats.connections_total, 1);
	assert_int_equal(stats.requests_total, 8);
	assert_int_equal(stats.errors_total, 4);
}

static void test_fallback(void **state)
{
	struct fx *fx = fx_start_with(NULL, 1);
	CURL *h = curl_easy_init();
	struct resp *r = calloc(1, sizeof(*r));

	assert_int_equal(easy_get(h, fx->port, "/some%20where", r), 200);
	assert_string_equal(r->body, "fallback /some where");
	curl_easy_cleanup(h);
	free(r);
	fx_stop(fx);
}

/* ---- raw-socket behaviour ---- */

static void test_pipelined_in_order(void **state)
{
	struct fx *fx = fx_start(NULL);
	static const char reqs[] = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
				   "GET / HTTP/1.1\r\nHost: t\r\n\r\n"
				   "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
				   "GET /items/3 HTTP/1.1\r\nHost: t\r\n\r\n";
	char out[8192];
	const char *a, *b, *c, *d;
	int fd = raw_connect(fx->port);

	raw_send(fd, reqs, strlen(reqs)); /* one write: all requests pipelined */
	raw_read(fd, out, sizeof(out), "id=3 rest=(null) q=(null) path=/items/3", 3000,
		 NULL);
	a = strstr(out, "slow");
	b = strstr(out, "hello");
	c = strstr(b ? b : out, "HTTP/1.1 200 OK\r\n");
	d = strstr(out, "id=3");
	/* /slow answers 100 ms late but still first */
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_non_null(d);
	assert_true(a < b && b < c && c < d);
	assert_int_equal(count_str(out, "HTTP/1.1 200 OK\r\n"), 4);
	/* HEAD: the length of the body it would get, but no body */
	assert_int_equal(count_str(out, "hello"), 1);
	assert_int_equal(count_str(out, "Content-Length: 5\r\n"), 2);
	close(fd);
	assert_int_equal(fx_stop(fx).requests_total, 4);
}

static void test_limits(void **state)
{
	struct co_http_server_opts opts = { .max_header_bytes = 2048, .max_body_bytes = 1024 };
	struct fx *fx = fx_start(&opts);
	char *big = malloc(8192), out[4096];
	struct co_http_server_stats stats;
	int fd, eof;

	/* 431 for an oversized header, then the connection closes */
	fd = raw_connect(fx->port);
	snprintf(big, 8192, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: %04000d\r\n\r\n", 0);
	raw_send(fd, big, strlen(big));
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_non_null(strstr(out, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_true(eof);
	close(fd);

	/* 413 on Content-Length, before the body is sent */
	fd = raw_connect(fx->port);
	snprintf(big, 8192, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
	raw_send(fd, big, strlen(big));
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_non_null(strstr(out, "HTTP/1.1 413 "));
	assert_true(eof);
	close(fd);

	/* 413 while reading a chunked body */
	fd = raw_connect(fx->port);
	snprintf(big, 8192, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
			    "\r\n300\r\n%0768d\r\n300\r\n%0768d\r\n0\r\n\r\n", 0, 0);
	raw_send(fd, big, strlen(big));
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_non_null(strstr(out, "HTTP/1.1 413 "));
	close(fd);

	/* 400 on garbage */
	fd = raw_connect(fx->port);
	raw_send(fd, "NOT HTTP AT ALL\r\n\r\n", 19);
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_non_null(strstr(out, "HTTP/1.1 400 Bad Request\r\n"));
	assert_true(eof);
	close(fd);

	/* libcurl sees the same 413 for a large POST */
	{
		CURL *h = curl_easy_init();
		struct resp *r = calloc(1, sizeof(*r));

		memset(big, 'x', 4096);
		big[4096] = '\0';
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, big);
		assert_int_equal(easy_get(h, fx->port, "/echo", r), 413);
		curl_easy_cleanup(h);
		free(r);
	}
	free(big);
	stats = fx_stop(fx);
	assert_int_equal(stats.errors_total, 5);
	assert_int_equal(stats.requests_total, 0);
}

static void test_slowloris_and_idle(void **state)
{
	struct co_http_server_opts opts = { .read_timeout_ms = 300, .idle_timeout_ms = 200 };
	struct fx *fx = fx_start(&opts);
	char out[4096];
	uint64_t start, took;
	int fd, eof;

	/* a request that trickles in and stalls: 408 then close after read_timeout */
	fd = raw_connect(fx->port);
	start = now_ms();
	raw_send(fd, "GET / HTTP/1.1\r\n", 16);
	/* a header byte every 100 ms: trickling does not extend the deadline */
	for (int i = 0; i < 6; i++) {
		usleep(100 * 1000);
		if (send(fd, "X", 1, MSG_NOSIGNAL) != 1)
			break;
	}
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	took = now_ms() - start;
	assert_true(eof);
	assert_non_null(strstr(out, "HTTP/1.1 408 Request Timeout\r\n"));
	assert_true(took >= 250 && took < 1000);
	close(fd);

	/* idle keep-alive: answered, then closed silently after idle_timeout */
	fd = raw_connect(fx->port);
	raw_send(fd, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27);
	raw_read(fd, out, sizeof(out), "hello", 3000, NULL);
	assert_non_null(strstr(out, "hello"));
	start = now_ms();
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	took = now_ms() - start;
	assert_true(eof);
	assert_int_equal(out[0], '\0');
	assert_true(took >= 150 && took < 1500);
	close(fd);
	assert_int_equal(fx_stop(fx).errors_total, 1);
}

static void test_chunked_streaming(void **state)
{
	struct fx *fx = fx_start(NULL);
	CURL *h = curl_easy_init();
	struct resp *r = calloc(1, sizeof(*r));

	fx->stream_chunks = 6;
	assert_int_equal(easy_get(h, fx->port, "/stream", r), 200);
	assert_string_equal(r->body, "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\nchunk 5\n");
	assert_non_null(strstr(r->headers, "Transfer-Encoding: chunked"));
	/* delivered as written (every 20 ms), not buffered until the end */
	assert_true(r->writes >= 3);
	assert_true(r->last_ms - r->first_ms >= 60);
	assert_int_equal(atomic_load(&fx->on_close_calls), 0);
	curl_easy_cleanup(h);
	free(r);
	fx_stop(fx);
}

static void test_stream_client_leaves(void **state)
{
	struct fx *fx = fx_start(NULL);
	char out[4096];
	int fd;

	/* a reader that stops reading then disconnects: back-pressure, then on_close */
	fd = raw_connect(fx->port);
	raw_send(fd, "GET /flood HTTP/1.1\r\nHost: t\r\n\r\n", 32);
	raw_read(fd, out, 512, "\r\n\r\n", 3000, NULL);
	assert_non_null(strstr(out, "Transfer-Encoding: chunked"));
	usleep(200 * 1000);
	assert_true(atomic_load(&fx->max_pending) >= 512 * 1024);
	close(fd);
	wait_for(&fx->on_close_calls, 1, 3000);
	assert_int_equal(atomic_load(&fx->on_close_calls), 1);

	/* the same for a slow (not yet started) answer */
	fd = raw_connect(fx->port);
	raw_send(fd, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", 31);
	wait_for(&fx->slow_started, 1, 3000);
	close(fd);
	wait_for(&fx->on_close_calls, 2, 3000);
	assert_int_equal(atomic_load(&fx->on_close_calls), 2);
	fx_stop(fx);
}

static void test_expect_continue(void **state)
{
	struct fx *fx = fx_start(NULL);
	static const char head[] = "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
				   "Expect: 100-continue\r\n\r\n";
	char out[4096];
	int fd = raw_connect(fx->port);

	raw_send(fd, head, strlen(head));
	/* the interim answer comes before we send any body byte */
	raw_read(fd, out, sizeof(out), "\r\n\r\n", 3000, NULL);
	assert_string_equal(out, "HTTP/1.1 100 Continue\r\n\r\n");
	raw_send(fd, "data", 4);
	raw_read(fd, out, sizeof(out), "data", 3000, NULL);
	assert_non_null(strstr(out, "HTTP/1.1 201 Created\r\n"));
	close(fd);

	/* too large: 413 instead of 100 */
	fd = raw_connect(fx->port);
	raw_send(fd, "PUT /echo HTTP/1.1\r\nContent-Length: 99999999\r\n"
		     "Expect: 100-continue\r\n\r\n", 70);
	raw_read(fd, out, sizeof(out), NULL, 3000, NULL);
	assert_null(strstr(out, "100 Continue"));
	assert_non_null(strstr(out, "HTTP/1.1 413 "));
	close(fd);
	fx_stop(fx);
}

static void test_http10(void **state)
{
	struct fx *fx = fx_start(NULL);
	char out[4096];
	int fd, eof;

	/* HTTP/1.0: one response, then close */
	fd = raw_connect(fx->port);
	raw_send(fd, "GET / HTTP/1.0\r\n\r\n", 18);
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "hello"));
	close(fd);

	/* HTTP/1.0 with keep-alive stays open */
	fd = raw_connect(fx->port);
	raw_send(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 42);
	raw_read(fd, out, sizeof(out), "hello", 3000, NULL);
	assert_non_null(strstr(out, "Connection: keep-alive\r\n"));
	raw_send(fd, "GET / HTTP/1.0\r\n\r\n", 18);
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	assert_non_null(strstr(out, "hello"));
	close(fd);
	fx_stop(fx);
}

static void test_graceful_close(void **state)
{
	struct co_http_server_opts opts = { .close_grace_ms = 2000 };
	struct fx *fx = fx_start(&opts);
	char out[4096];
	int fd, idle, eof;

	uint64_t start = now_ms();

	idle = raw_connect(fx->port);
	fd = raw_connect(fx->port);
	atomic_store(&fx->close_now, 1);
	/* /slow triggers the close while its answer is still 100 ms away */
	raw_send(fd, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n", 31);
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(out, "Connection: close\r\n"));
	assert_non_null(strstr(out, "slow"));
	/* the idle connection was closed at once */
	raw_read(idle, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	assert_true(now_ms() - start < 1000); /* well before the 2 s grace period */
	close(idle);
	close(fd);
	assert_int_equal(pthread_join(fx->thread, NULL), 0);
	assert_int_equal(atomic_load(&fx->closed), 1);
	assert_int_equal(atomic_load(&fx->on_close_calls), 0);
	assert_int_equal(fx->stats.connections_open, 2);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
}

static void test_grace_expires(void **state)
{
	struct co_http_server_opts opts = { .close_grace_ms = 100 };
	struct fx *fx = fx_start(&opts);
	char out[4096];
	uint64_t start;
	int fd, eof;

	/* a stream that never ends is cut at the end of the grace period */
	fd = raw_connect(fx->port);
	fx->stream_chunks = 1000000;
	raw_send(fd, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n", 33);
	raw_read(fd, out, sizeof(out), "chunk 1", 3000, NULL);
	start = now_ms();
	uv_async_send(&fx->stop);
	assert_int_equal(pthread_join(fx->thread, NULL), 0);
	assert_true(now_ms() - start < 1500);
	raw_read(fd, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	close(fd);
	assert_int_equal(atomic_load(&fx->closed), 1);
	assert_int_equal(atomic_load(&fx->on_close_calls), 1);
	assert_int_equal(uv_loop_close(&fx->loop), 0);
	free(fx);
}

static void test_max_connections(void **state)
{
	struct co_http_server_opts opts = { .max_connections = 1 };
	struct fx *fx = fx_start(&opts);
	char out[4096];
	int first, second, eof;

	first = raw_connect(fx->port);
	raw_send(first, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", 27);
	raw_read(first, out, sizeof(out), "hello", 3000, NULL);
	second = raw_connect(fx->port);
	raw_read(second, out, sizeof(out), NULL, 3000, &eof);
	assert_true(eof);
	assert_non_null(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n"));
	close(second);
	close(first);
	assert_int_equal(fx_stop(fx).connections_total, 2);
}

static void test_bind_error(void **state)
{
	struct fx *fx = fx_start(NULL);
	struct co_http_server_opts opts = { .port = fx->port };
	struct co_error err = CO_ERROR_INIT;
	struct co_http_server *srv = NULL;
	uv_loop_t loop;

	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(co_http_server_new(&srv, &loop, &opts, &err), UV_EADDRINUSE);
	assert_null(srv);
	assert_non_null(strstr(err.msg, "listen on '127.0.0.1:"));
	assert_non_null(strstr(err.msg, "address already in use"));
	opts.host = "not-an-address";
	assert_int_equal(co_http_server_new(&srv, &loop, &opts, &err), UV_EINVAL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	fx_stop(fx);
}

static void test_status_text(void **state)
{
	assert_string_equal(co_http_status_text(404), "Not Found");
	assert_string_equal(co_http_status_text(431), "Request Header Fields Too Large");
	assert_string_equal(co_http_status_text(799), "Unknown");
}

static int global_setup(void **state)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int global_teardown(void **state)
{
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_curl_cli_keepalive),
		cmocka_unit_test(test_libcurl_keepalive_and_routing),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_pipelined_in_order),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_slowloris_and_idle),
		cmocka_unit_test(test_chunked_streaming),
		cmocka_unit_test(test_stream_client_leaves),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_http10),
		cmocka_unit_test(test_graceful_close),
		cmocka_unit_test(test_grace_expires),
		cmocka_unit_test(test_max_connections),
		cmocka_unit_test(test_bind_error),
		cmocka_unit_test(test_status_text),
	};

	return cmocka_run_group_tests(tests, global_setup, global_teardown);
}
