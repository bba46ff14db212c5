/*
 * Unit tests for the HTTP client, against a small HTTP/1.1 test server written here on
 * raw libuv streams (TCP on an ephemeral 127.0.0.1 port, and a unix socket) with
 * http-parser, running in the same loop as the client. Its routes return canned
 * responses, answer slowly, never answer, stream chunks over time, send oversized or
 * truncated bodies, or garbage. The last tests talk to the project's own HTTP server
 * (net/http-server.h) in the same loop: JSON round trip, keep-alive reuse, and a
 * watch-style chunked stream. Every test counts callbacks and ends by asserting
 * uv_loop_close() == 0.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/log.h"
#include "base/time.h"
#include "net/http-client.h"
#include "net/http-server.h"

/* --- the test server ---------------------------------------------------------- */

struct tsrv;

struct tconn {
	union {
		uv_stream_t stream;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} h;
	uv_timer_t timer;
	int open_handles;
	struct tsrv *srv;
	struct tconn *prev, *next;
	http_parser parser;
	struct co_buf url, body, headers, field;
	int in_value;
	int ticks;          /* /stream: chunks left */
	int keep_alive;
	char method[16];
};

struct tsrv {
	uv_loop_t *loop;
	uv_tcp_t tcp;
	uv_pipe_t unix_listener;
	int has_unix;
	int port;
	char sock_path[108];
	struct tconn *conns;
	int accepted;
	int requests;
	int open_handles;
};

static void conn_close(struct tconn *c);
static void on_conn_close(uv_handle_t *h);

static void on_write_done(uv_write_t *req, int status)
{
	free(req->data);
	free(req);
}

static void conn_send(struct tconn *c, const char *s, size_t n)
{
	uv_write_t *req;
	uv_buf_t b;

	if (uv_is_closing((uv_handle_t *)&c->h.stream))
		return;
	req = co_malloc(sizeof(*req));
	req->data = co_malloc(n ? n : 1);
	memcpy(req->data, s, n);
	b = uv_buf_init(req->data, (unsigned int)n);
	if (uv_write(req, &c->h.stream, &b, 1, on_write_done) < 0) {
		free(req->data);
		free(req);
	}
}

static void send_response(struct tconn *c, int code, const char *ctype, const char *body,
			  size_t len)
{
	char *head = co_asprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\n"
				 "Content-Length: %zu\r\n%s\r\n",
				 code, ctype, len,
				 c->keep_alive ? "" : "Connection: close\r\n");

	conn_send(c, head, strlen(head));
	free(head);
	if (strcmp(c->method, "HEAD"))
		conn_send(c, body, len);
}

/* Header value of the current request, or NULL (caller frees). */
static char *req_header(struct tconn *c, const char *name)
{
	const char *p = co_buf_cstr(&c->headers);
	size_t nlen = strlen(name);

	while (*p) {
		const char *eol = strchr(p, '\n');

		if (!strncasecmp(p, name, nlen) && p[nlen] == ':')
			return co_strndup(p + nlen + 2, (size_t)(eol - p) - nlen - 2);
		p = eol + 1;
	}
	return NULL;
}

static void on_stream_tick(uv_timer_t *t)
{
	struct tconn *c = t->data;
	char chunk[64];
	char line[32];

	if (c->ticks == 0) {
		conn_send(c, "0\r\n\r\n", 5);
		uv_timer_stop(t);
		return;
	}
	snprintf(line, sizeof(line), "event %d\n", 5 - c->ticks);
	snprintf(chunk, sizeof(chunk), "%zx\r\n%s\r\n", strlen(line), line);
	conn_send(c, chunk, strlen(chunk));
	c->ticks--;
}

static void on_slow(uv_timer_t *t)
{
	struct tconn *c = t->data;

	send_response(c, 200, "text/plain", "slow", 4);
}

static void respond_echo(struct tconn *c)
{
	static const char *const names[] = { "authorization", "x-test", "content-type",
					     "accept", "expect" };
	json_t *o = json_object();
	json_t *parsed;
	char *text;

	json_object_set_new(o, "method", json_string(c->method));
	json_object_set_new(o, "url", json_string(co_buf_cstr(&c->url)));
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *v = req_header(c, names[i]);

		if (v)
			json_object_set_new(o, names[i], json_string(v));
		free(v);
	}
	json_object_set_new(o, "body_len", json_integer((json_int_t)c->body.len));
	parsed = json_loadb(co_buf_cstr(&c->body), c->body.len, JSON_DECODE_ANY, NULL);
	json_object_set_new(o, "body", parsed ? parsed : json_null());
	text = json_dumps(o, JSON_COMPACT);
	send_response(c, 200, "application/json", text, strlen(text));
	free(text);
	json_decref(o);
}

static void route(struct tconn *c)
{
	const char *url = co_buf_cstr(&c->url);

	c->srv->requests++;
	if (!strncmp(url, "/echo", 5)) {
		respond_echo(c);
	} else if (!strcmp(url, "/slow")) {
		uv_timer_start(&c->timer, on_slow, 2000, 0);
	} else if (!strcmp(url, "/hang")) {
		/* never answers */
	} else if (!strcmp(url, "/stream")) {
		static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
					   "Transfer-Encoding: chunked\r\n\r\n";

		conn_send(c, head, sizeof(head) - 1);
		c->ticks = 5;
		uv_timer_start(&c->timer, on_stream_tick, 60, 60);
	} else if (!strcmp(url, "/big")) {
		char *b = co_malloc(100000);

		memset(b, 'x', 100000);
		send_response(c, 200, "text/plain", b, 100000);
		free(b);
	} else if (!strcmp(url, "/bigchunked")) {
		static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
		char *b = co_malloc(10000 + 16);
		int n = snprintf(b, 16, "%x\r\n", 10000);

		conn_send(c, head, sizeof(head) - 1);
		memset(b + n, 'y', 10000);
		memcpy(b + n + 10000, "\r\n", 2);
		for (int i = 0; i < 10; i++)
			conn_send(c, b, (size_t)n + 10002);
		conn_send(c, "0\r\n\r\n", 5);
		free(b);
	} else if (!strcmp(url, "/early")) {
		static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";

		conn_send(c, r, sizeof(r) - 1);
		conn_close(c);
	} else if (!strcmp(url, "/reset")) {
		/* Abortive close: the client sees a TCP reset, not an EOF. */
		if (!uv_is_closing((uv_handle_t *)&c->h.stream)) {
			uv_close((uv_handle_t *)&c->timer, on_conn_close);
			uv_tcp_close_reset(&c->h.tcp, on_conn_close);
		}
	} else if (!strcmp(url, "/garbage")) {
		static const char r[] = "NOT HTTP AT ALL\r\n\r\n";

		conn_send(c, r, sizeof(r) - 1);
		conn_close(c);
	} else {
		send_response(c, 404, "text/plain", "not found", 9);
	}
}

static void flush_header(struct tconn *c)
{
	if (c->field.len) {
		co_buf_putc(&c->headers, '\n');
		co_buf_reset(&c->field);
	}
}

static int p_begin(http_parser *p)
{
	struct tconn *c = p->data;

	co_buf_reset(&c->url);
	co_buf_reset(&c->body);
	co_buf_reset(&c->headers);
	co_buf_reset(&c->field);
	c->in_value = 0;
	return 0;
}

static int p_url(http_parser *p, const char *at, size_t n)
{
	co_buf_append(&((struct tconn *)p->data)->url, at, n);
	return 0;
}

static int p_field(http_parser *p, const char *at, size_t n)
{
	struct tconn *c = p->data;

	if (c->in_value)
		flush_header(c);
	c->in_value = 0;
	co_buf_append(&c->field, at, n);
	co_buf_append(&c->headers, at, n);
	return 0;
}

static int p_value(http_parser *p, const char *at, size_t n)
{
	struct tconn *c = p->data;

	if (!c->in_value)
		co_buf_puts(&c->headers, ": ");
	c->in_value = 1;
	co_buf_append(&c->headers, at, n);
	return 0;
}

static int p_headers_done(http_parser *p)
{
	flush_header(p->data);
	return 0;
}

static int p_body(http_parser *p, const char *at, size_t n)
{
	co_buf_append(&((struct tconn *)p->data)->body, at, n);
	return 0;
}

static int p_done(http_parser *p)
{
	struct tconn *c = p->data;

	snprintf(c->method, sizeof(c->method), "%s", http_method_str(p->method));
	c->keep_alive = http_should_keep_alive(p);
	route(c);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_message_begin = p_begin,
	.on_url = p_url,
	.on_header_field = p_field,
	.on_header_value = p_value,
	.on_headers_complete = p_headers_done,
	.on_body = p_body,
	.on_message_complete = p_done,
};

static void on_conn_close(uv_handle_t *h)
{
	struct tconn *c = h->data;

	if (--c->open_handles)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	co_buf_release(&c->url);
	co_buf_release(&c->body);
	co_buf_release(&c->headers);
	co_buf_release(&c->field);
	free(c);
}

static void conn_close(struct tconn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->h.stream))
		return;
	uv_close((uv_handle_t *)&c->timer, on_conn_close);
	uv_close((uv_handle_t *)&c->h.stream, on_conn_close);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = co_malloc(suggested);
	buf->len = suggested;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct tconn *c = s->data;

	if (nread > 0) {
		size_t done = http_parser_execute(&c->parser, &parser_settings, buf->base,
						  (size_t)nread);

		if (done != (size_t)nread || c->parser.http_errno)
			conn_close(c);
	} else if (nread < 0) {
		conn_close(c);
	}
	free(buf->base);
}

static void on_connection(uv_stream_t *listener, int status)
{
	struct tsrv *srv = listener->data;
	struct tconn *c;

	assert_int_equal(status, 0);
	c = co_calloc(1, sizeof(*c));
	c->srv = srv;
	if (listener->type == UV_TCP)
		uv_tcp_init(srv->loop, &c->h.tcp);
	else
		uv_pipe_init(srv->loop, &c->h.pipe, 0);
	uv_timer_init(srv->loop, &c->timer);
	c->h.stream.data = c->timer.data = c;
	c->open_handles = 2;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	assert_int_equal(uv_accept(listener, &c->h.stream), 0);
	srv->accepted++;
	uv_read_start(&c->h.stream, on_alloc, on_read);
}

static void tsrv_start(struct tsrv *srv, uv_loop_t *loop, int with_unix)
{
	struct sockaddr_in addr;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
	assert_int_equal(uv_tcp_init(loop, &srv->tcp), 0);
	srv->tcp.data = srv;
	assert_int_equal(uv_tcp_bind(&srv->tcp, (struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_listen((uv_stream_t *)&srv->tcp, 256, on_connection), 0);
	assert_int_equal(uv_tcp_getsockname(&srv->tcp, (struct sockaddr *)&ss, &len), 0);
	srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (with_unix) {
		snprintf(srv->sock_path, sizeof(srv->sock_path), "/tmp/co-test-http-%d.sock",
			 (int)getpid());
		unlink(srv->sock_path);
		assert_int_equal(uv_pipe_init(loop, &srv->unix_listener, 0), 0);
		srv->unix_listener.data = srv;
		assert_int_equal(uv_pipe_bind(&srv->unix_listener, srv->sock_path), 0);
		assert_int_equal(uv_listen((uv_stream_t *)&srv->unix_listener, 16,
					   on_connection),
				 0);
		srv->has_unix = 1;
	}
}

static void tsrv_stop(struct tsrv *srv)
{
	uv_close((uv_handle_t *)&srv->tcp, NULL);
	if (srv->has_unix) {
		uv_close((uv_handle_t *)&srv->unix_listener, NULL);
		unlink(srv->sock_path);
	}
	for (struct tconn *c = srv->conns; c; c = c->next)
		conn_close(c);
}

/* --- fixture: one loop, one server, one client ------------------------------- */

/* Responses seen since the fixture started: the server keeps its connections
 * alive, so tests run the loop until they have what they wait for. */
static int responses;

struct fx {
	uv_loop_t loop;
	struct tsrv srv;
	struct co_http_client *client;
	int closed;
	char base[64];
};

static void on_client_closed(void *data)
{
	((struct fx *)data)->closed++;
}

static void fx_init(struct fx *f, int with_unix)
{
	struct co_error err = CO_ERROR_INIT;

	memset(f, 0, sizeof(*f));
	responses = 0;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	tsrv_start(&f->srv, &f->loop, with_unix);
	assert_int_equal(co_http_client_new(&f->client, &f->loop, &err), 0);
	snprintf(f->base, sizeof(f->base), "http://127.0.0.1:%d", f->srv.port);
}

/* Run the loop until n responses arrived (bounded: a hang fails the test). */
static void fx_run(struct fx *f, int n)
{
	uint64_t t0 = co_time_mono_ms();

	while (responses < n) {
		uv_run(&f->loop, UV_RUN_ONCE);
		assert_true(co_time_mono_ms() - t0 < 20000);
	}
}

static char *fx_url(struct fx *f, const char *path)
{
	return co_asprintf("%s%s", f->base, path);
}

/* Close client and server, drain the loop, and require it to be empty. */
static void fx_finish(struct fx *f)
{
	co_http_client_close(f->client, on_client_closed, f);
	tsrv_stop(&f->srv);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f->closed, 1);
	assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* One recorded response. */
struct got {
	int calls;
	int status;
	long code;
	char *body;
	size_t body_len;
	char *ctype;
	char *allow;
	char err[CO_ERROR_MSG_MAX];
	json_t *json;
	uint64_t elapsed_ms;
	int *counter;        /* optional shared completion counter */
};

static void on_response(struct co_http_response *res, void *data)
{
	struct got *g = data;

	responses++;
	g->calls++;
	g->status = res->status;
	g->code = res->code;
	g->body = co_strndup(co_buf_cstr(&res->body), res->body.len);
	g->body_len = res->body.len;
	g->ctype = co_http_response_header(res, "content-type");
	g->allow = co_http_response_header(res, "Allow");
	snprintf(g->err, sizeof(g->err), "%s", res->err.msg);
	g->elapsed_ms = res->elapsed_ms;
	if (res->status == 0 && res->body.len)
		co_http_response_json(res, &g->json, NULL);
	if (g->counter)
		(*g->counter)++;
}

static void got_release(struct got *g)
{
	free(g->body);
	free(g->ctype);
	free(g->allow);
	json_decref(g->json);
	memset(g, 0, sizeof(*g));
}

static void request(struct fx *f, const struct co_http_req_opts *o, struct got *g,
		    struct co_http_call **ret_call)
{
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_http_request(f->client, ret_call, o, on_response, g, &err), 0);
}

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* --- tests --------------------------------------------------------------------- */

static void test_json_round_trip(void **state)
{
	const char *headers[] = { "X-Test: yes", NULL };
	struct co_error err = CO_ERROR_INIT;
	struct got g = { 0 };
	json_t *body = json_pack("{s:i, s:s, s:[b,n]}", "a", 1, "s", "naïve", "l", 1);
	char *url;
	struct fx f;

	/* Debug logging on, into memory, to prove the token never reaches it. */
	char *logtext = NULL;
	size_t logsize = 0;
	FILE *logf = open_memstream(&logtext, &logsize);

	co_log_setup(CO_LOG_DEBUG, CO_LOG_JSON, logf);
	fx_init(&f, 0);
	url = fx_url(&f, "/echo");
	assert_int_equal(co_http_request_json(f.client, NULL, "POST", url, body,
					      &(struct co_http_req_opts){
						      .headers = headers,
						      .bearer_token = "s3cr3t-token",
						      .timeout_ms = 5000 },
					      on_response, &g, &err),
			 0);
	assert_int_equal(g.calls, 0);   /* never synchronous */
	fx_run(&f, 1);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.code, 200);
	assert_string_equal(g.ctype, "application/json");
	assert_non_null(g.json);
	assert_string_equal(jstr(g.json, "method"), "POST");
	assert_string_equal(jstr(g.json, "authorization"), "Bearer s3cr3t-token");
	assert_string_equal(jstr(g.json, "x-test"), "yes");
	assert_string_equal(jstr(g.json, "content-type"), "application/json");
	assert_string_equal(jstr(g.json, "accept"), "application/json");
	assert_null(json_object_get(g.json, "expect"));
	assert_true(json_equal(json_object_get(g.json, "body"), body));
	got_release(&g);
	co_log_setup(CO_LOG_OFF, CO_LOG_JSON, NULL);
	fclose(logf);
	assert_non_null(strstr(logtext, "/echo"));      /* the call was logged */
	assert_null(strstr(logtext, "s3cr3t"));
	free(logtext);

	/* A non-JSON body gives a located parse error. */
	struct co_http_response fake = { 0 };
	json_t *j = NULL;

	co_buf_init(&fake.body);
	co_buf_puts(&fake.body, "{\"a\":");
	assert_int_equal(co_http_response_json(&fake, &j, &err), -EINVAL);
	assert_null(j);
	assert_non_null(strstr(err.msg, "invalid json at line 1"));
	co_buf_release(&fake.body);

	json_decref(body);
	free(url);
	fx_finish(&f);
}

static void test_methods_and_auth(void **state)
{
	static const char *const methods[] = { "GET", "PUT", "PATCH", "DELETE", "HEAD",
					       "POST" };
	struct got g[6] = { 0 }, basic = { 0 }, nobody = { 0 };
	char *url;
	struct fx f;

	fx_init(&f, 0);
	url = fx_url(&f, "/echo");
	for (int i = 0; i < 6; i++)
		request(&f,
			&(struct co_http_req_opts){ .method = methods[i], .url = url,
						    .body = i % 2 ? "{\"k\":\"v\"}" : NULL,
						    .body_len = i % 2 ? 9 : 0 },
			&g[i], NULL);
	request(&f,
		&(struct co_http_req_opts){ .url = url, .basic_user = "user",
					    .basic_password = "pass" },
		&basic, NULL);
	/* body set and method NULL means POST */
	request(&f, &(struct co_http_req_opts){ .url = url, .body = "x", .body_len = 1 },
		&nobody, NULL);
	fx_run(&f, 8);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].status, 0);
		assert_int_equal(g[i].code, 200);
		if (!strcmp(methods[i], "HEAD")) {
			assert_int_equal(g[i].body_len, 0);
		} else {
			assert_string_equal(jstr(g[i].json, "method"), methods[i]);
			/* No invented form type for a raw body. */
			assert_null(json_object_get(g[i].json, "content-type"));
			assert_int_equal(json_integer_value(
						 json_object_get(g[i].json, "body_len")),
					 i % 2 ? 9 : 0);
		}
		got_release(&g[i]);
	}
	assert_string_equal(jstr(basic.json, "authorization"), "Basic dXNlcjpwYXNz");
	assert_string_equal(jstr(nobody.json, "method"), "POST");
	got_release(&basic);
	got_release(&nobody);
	free(url);
	fx_finish(&f);
}

struct chain {
	struct co_http_client *client;
	char *url;
	int left;
	int ok;
};

static void on_chain(struct co_http_response *res, void *data)
{
	struct chain *ch = data;
	struct co_error err = CO_ERROR_INIT;

	responses++;
	if (res->status == 0 && res->code / 100 == 2)
		ch->ok++;
	/* The next request starts from inside this callback. */
	if (--ch->left > 0)
		assert_int_equal(co_http_request(ch->client, NULL,
						 &(struct co_http_req_opts){ .url = ch->url },
						 on_chain, ch, &err),
				 0);
}

static void test_keepalive_reuse(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct chain ch;
	struct fx f;

	fx_init(&f, 0);
	ch = (struct chain){ .client = f.client, .url = fx_url(&f, "/echo"), .left = 5 };
	assert_int_equal(co_http_request(f.client, NULL,
					 &(struct co_http_req_opts){ .url = ch.url },
					 on_chain, &ch, &err),
			 0);
	fx_run(&f, 5);
	assert_int_equal(ch.ok, 5);
	assert_int_equal(f.srv.requests, 5);
	/* One connection carried all five requests. */
	assert_int_equal(f.srv.accepted, 1);
	free(ch.url);
	fx_finish(&f);
}

static void test_concurrent_100(void **state)
{
	struct got g[100];
	char *urls[100];
	int done = 0;
	uint64_t t0;
	struct fx f;

	memset(g, 0, sizeof(g));
	fx_init(&f, 0);
	for (int i = 0; i < 100; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/echo?i=%d", i);
		urls[i] = fx_url(&f, path);
		g[i].counter = &done;
		request(&f, &(struct co_http_req_opts){ .url = urls[i], .timeout_ms = 10000 },
			&g[i], NULL);
	}
	t0 = co_time_mono_ms();
	fx_run(&f, 100);
	print_message("100 concurrent requests: %llu ms, %d connections\n",
		      (unsigned long long)(co_time_mono_ms() - t0), f.srv.accepted);
	assert_int_equal(done, 100);
	assert_int_equal(f.srv.requests, 100);
	for (int i = 0; i < 100; i++) {
		char want[32];

		assert_int_equal(g[i].status, 0);
		snprintf(want, sizeof(want), "/echo?i=%d", i);
		assert_string_equal(jstr(g[i].json, "url"), want);
		got_release(&g[i]);
		free(urls[i]);
	}
	fx_finish(&f);
}

static void test_deadline(void **state)
{
	struct got g = { 0 };
	char *url, *want;
	struct fx f;

	fx_init(&f, 0);
	url = fx_url(&f, "/slow");
	request(&f, &(struct co_http_req_opts){ .url = url, .timeout_ms = 200 }, &g, NULL);
	fx_run(&f, 1);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, -ETIMEDOUT);
	assert_int_equal(g.code, 0);
	assert_true(g.elapsed_ms >= 200);
	assert_true(g.elapsed_ms < 1500);
	want = co_asprintf("GET '%s': timed out after", url);
	assert_memory_equal(g.err, want, strlen(want));
	free(want);
	got_release(&g);
	free(url);
	fx_finish(&f);
}

static void test_connection_refused(void **state)
{
	struct got g = { 0 };
	struct fx f;

	fx_init(&f, 0);
	request(&f, &(struct co_http_req_opts){ .url = "http://127.0.0.1:1/x" }, &g, NULL);
	fx_run(&f, 1);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, -ECONNREFUSED);
	assert_string_equal(g.err, "GET 'http://127.0.0.1:1/x': connection refused");
	got_release(&g);
	fx_finish(&f);
}

struct cancel_ctx {
	struct co_http_call *call;
	struct got *g;
	int calls_at_cancel;
};

static void on_cancel_timer(uv_timer_t *t)
{
	struct cancel_ctx *cc = t->data;

	co_http_cancel(cc->call);
	/* Never reported from inside co_http_cancel(). */
	cc->calls_at_cancel = cc->g->calls;
	co_http_cancel(cc->call);  /* a second cancel is harmless */
	uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void **state)
{
	struct got g = { 0 }, g2 = { 0 }, g3 = { 0 };
	struct co_http_call *call = NULL, *call2 = NULL;
	struct cancel_ctx cc = { .g = &g, .calls_at_cancel = -1 };
	uv_timer_t t;
	char *url, *ok;
	struct fx f;

	fx_init(&f, 0);
	url = fx_url(&f, "/hang");
	ok = fx_url(&f, "/echo");
	request(&f, &(struct co_http_req_opts){ .url = url }, &g, &call);
	assert_non_null(call);
	cc.call = call;
	uv_timer_init(&f.loop, &t);
	t.data = &cc;
	uv_update_time(&f.loop);
	uv_timer_start(&t, on_cancel_timer, 100, 0);
	/* Cancelled before any I/O happened. */
	request(&f, &(struct co_http_req_opts){ .url = ok }, &g2, &call2);
	co_http_cancel(call2);
	assert_int_equal(g2.calls, 0);
	/* Unaffected neighbour. */
	request(&f, &(struct co_http_req_opts){ .url = ok }, &g3, NULL);
	fx_run(&f, 3);
	assert_int_equal(cc.calls_at_cancel, 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, -ECANCELED);
	assert_true(g.elapsed_ms >= 90);   /* millisecond clocks truncate */
	assert_int_equal(g2.calls, 1);
	assert_int_equal(g2.status, -ECANCELED);
	assert_int_equal(g3.calls, 1);
	assert_int_equal(g3.status, 0);
	assert_int_equal(g3.code, 200);
	got_release(&g);
	got_release(&g2);
	got_release(&g3);
	free(url);
	free(ok);
	fx_finish(&f);
}

/* A streaming request's state; the response record comes first so on_response()
 * can take the same data pointer. */
struct stream_got {
	struct got g;
	struct co_buf data;
	int pieces;
	uint64_t first_ms, last_ms;
	int stop_after;   /* return non-zero after this many pieces; 0 = never */
};

static int on_piece(const char *chunk, size_t len, void *data)
{
	struct stream_got *s = data;
	uint64_t now = co_time_mono_ms();

	if (!s->pieces)
		s->first_ms = now;
	s->last_ms = now;
	s->pieces++;
	co_buf_append(&s->data, chunk, len);
	return s->stop_after && s->pieces >= s->stop_after;
}

static void test_streaming(void **state)
{
	struct stream_got s = { 0 }, s2 = { .stop_after = 2 };
	char *url;
	struct fx f;

	fx_init(&f, 0);
	url = fx_url(&f, "/stream");
	request(&f, &(struct co_http_req_opts){ .url = url, .on_data = on_piece }, &s.g,
		NULL);
	request(&f, &(struct co_http_req_opts){ .url = url, .on_data = on_piece }, &s2.g,
		NULL);
	fx_run(&f, 2);
	assert_int_equal(s.g.calls, 1);
	assert_int_equal(s.g.status, 0);
	assert_int_equal(s.g.code, 200);
	assert_int_equal(s.g.body_len, 0);   /* not accumulated when streaming */
	assert_string_equal(co_buf_cstr(&s.data),
			    "event 0\nevent 1\nevent 2\nevent 3\nevent 4\n");
	/* Pieces arrive over time, as the server sends them, not all at the end. */
	assert_true(s.pieces >= 5);
	assert_true(s.last_ms - s.first_ms >= 200);
	/* A data callback that asks to stop ends the transfer with -ECANCELED. */
	assert_int_equal(s2.g.calls, 1);
	assert_int_equal(s2.g.status, -ECANCELED);
	assert_int_equal(s2.pieces, 2);
	co_buf_release(&s.data);
	co_buf_release(&s2.data);
	got_release(&s.g);
	got_release(&s2.g);
	free(url);
	fx_finish(&f);
}

static void test_max_body(void **state)
{
	struct got small = { 0 }, chunked = { 0 }, fits = { 0 };
	char *big, *bigc;
	struct fx f;

	fx_init(&f, 0);
	big = fx_url(&f, "/big");
	bigc = fx_url(&f, "/bigchunked");
	/* Content-Length known up front, and a chunked body only found out while
	 * reading. */
	request(&f, &(struct co_http_req_opts){ .url = big, .max_body = 1000 }, &small,
		NULL);
	request(&f, &(struct co_http_req_opts){ .url = bigc, .max_body = 50000 }, &chunked,
		NULL);
	request(&f, &(struct co_http_req_opts){ .url = bigc, .max_body = 100000 }, &fits,
		NULL);
	fx_run(&f, 3);
	assert_int_equal(small.status, -E2BIG);
	assert_non_null(strstr(small.err, "response body over 1000 bytes"));
	assert_int_equal(chunked.status, -E2BIG);
	assert_int_equal(fits.status, 0);
	assert_int_equal(fits.body_len, 100000);
	got_release(&small);
	got_release(&chunked);
	got_release(&fits);
	free(big);
	free(bigc);
	fx_finish(&f);
}

static void test_bad_responses(void **state)
{
	struct got early = { 0 }, garbage = { 0 }, missing = { 0 }, tls = { 0 }, reset = { 0 };
	char *u1, *u2, *u3, *u4, *u5;
	static const char junk_ca[] = "-----BEGIN CERTIFICATE-----\nnot a cert\n"
				      "-----END CERTIFICATE-----\n";
	struct fx f;

	fx_init(&f, 0);
	u1 = fx_url(&f, "/early");
	u2 = fx_url(&f, "/garbage");
	u3 = fx_url(&f, "/missing");
	u4 = co_asprintf("https://127.0.0.1:%d/echo", f.srv.port);
	u5 = fx_url(&f, "/reset");
	request(&f, &(struct co_http_req_opts){ .url = u5 }, &reset, NULL);
	request(&f, &(struct co_http_req_opts){ .url = u1 }, &early, NULL);
	request(&f, &(struct co_http_req_opts){ .url = u2 }, &garbage, NULL);
	request(&f, &(struct co_http_req_opts){ .url = u3 }, &missing, NULL);
	/* TLS to a plain-HTTP port fails the handshake. */
	request(&f,
		&(struct co_http_req_opts){ .url = u4, .ca_pem = junk_ca,
					    .ca_pem_len = sizeof(junk_ca) - 1,
					    .timeout_ms = 5000 },
		&tls, NULL);
	fx_run(&f, 5);
	assert_int_equal(reset.calls, 1);
	assert_int_equal(reset.status, -ECONNRESET);
	assert_int_equal(early.calls, 1);
	assert_int_equal(early.status, -EIO);
	assert_int_equal(early.code, 200);
	assert_int_equal(garbage.calls, 1);
	assert_int_equal(garbage.status, -EPROTO);
	assert_int_equal(missing.status, 0);
	assert_int_equal(missing.code, 404);
	assert_string_equal(missing.body, "not found");
	assert_int_equal(tls.calls, 1);
	assert_int_equal(tls.status, -EPROTO);
	assert_memory_equal(tls.err, "GET 'https://", 13);
	got_release(&early);
	got_release(&garbage);
	got_release(&missing);
	got_release(&tls);
	got_release(&reset);
	free(u5);
	free(u1);
	free(u2);
	free(u3);
	free(u4);
	fx_finish(&f);
}

static void test_unix_socket(void **state)
{
	struct got g = { 0 }, gone = { 0 };
	struct fx f;

	fx_init(&f, 1);
	request(&f,
		&(struct co_http_req_opts){ .url = "http://localhost/echo?via=unix",
					    .unix_socket = f.srv.sock_path },
		&g, NULL);
	request(&f,
		&(struct co_http_req_opts){ .url = "http://localhost/echo",
					    .unix_socket = "/nonexistent/co.sock" },
		&gone, NULL);
	fx_run(&f, 2);
	assert_int_equal(g.status, 0);
	assert_string_equal(jstr(g.json, "url"), "/echo?via=unix");
	assert_int_equal(gone.calls, 1);
	assert_int_equal(gone.status, -ENOENT);
	got_release(&g);
	got_release(&gone);
	fx_finish(&f);
}

struct close_ctx {
	struct fx *f;
	int cbs_before_close;
	int *done;
};

static void on_close_timer(uv_timer_t *t)
{
	struct close_ctx *cc = t->data;

	cc->cbs_before_close = *cc->done;
	co_http_client_close(cc->f->client, on_client_closed, cc->f);
	/* Callbacks come later, from the loop. */
	assert_int_equal(*cc->done, cc->cbs_before_close);
	/* A closing client refuses new requests without a callback. */
	struct co_error err = CO_ERROR_INIT;
	struct got g = { 0 };

	assert_int_equal(co_http_request(cc->f->client, NULL,
					 &(struct co_http_req_opts){ .url = "http://127.0.0.1:1/" },
					 on_response, &g, &err),
			 -ECANCELED);
	assert_int_equal(g.calls, 0);
	uv_close((uv_handle_t *)t, NULL);
}

static void test_client_close_outstanding(void **state)
{
	struct got g[6];
	struct close_ctx cc;
	int done = 0;
	char *hang, *stream;
	uv_timer_t t;
	struct fx f;

	memset(g, 0, sizeof(g));
	fx_init(&f, 0);
	hang = fx_url(&f, "/hang");
	stream = fx_url(&f, "/stream");
	for (int i = 0; i < 5; i++) {
		g[i].counter = &done;
		request(&f, &(struct co_http_req_opts){ .url = hang }, &g[i], NULL);
	}
	g[5].counter = &done;
	request(&f, &(struct co_http_req_opts){ .url = stream }, &g[5], NULL);
	cc = (struct close_ctx){ .f = &f, .done = &done };
	uv_timer_init(&f.loop, &t);
	t.data = &cc;
	uv_timer_start(&t, on_close_timer, 100, 0);
	/* Run until the client is gone; the server still has its connections. */
	while (!f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	assert_int_equal(cc.cbs_before_close, 0);
	assert_int_equal(done, 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].status, -ECANCELED);
		got_release(&g[i]);
	}
	tsrv_stop(&f.srv);
	assert_int_equal(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f.closed, 1);
	assert_int_equal(f.srv.requests, 6);
	assert_int_equal(uv_loop_close(&f.loop), 0);
	free(hang);
	free(stream);
}


/* --- against the project's own HTTP server, in the same loop --------------------- */

struct sfx {
	uv_loop_t loop;
	struct co_http_server *srv;
	struct co_http_client *client;
	int watch_gone;       /* watches whose client went away */
	int closed;
};

struct watch {
	uv_timer_t timer;
	struct co_http_req *req;
	struct sfx *sf;
	int sent;
};

static void on_watch_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_watch_tick(uv_timer_t *t)
{
	struct watch *w = t->data;
	char line[64];

	if (w->sent == 3) {
		co_http_end(w->req);
		uv_close((uv_handle_t *)&w->timer, on_watch_timer_closed);
		return;
	}
	snprintf(line, sizeof(line), "{\"type\":\"ADDED\",\"n\":%d}\n", w->sent++);
	assert_int_equal(co_http_write(w->req, line, strlen(line)), 0);
}

static void on_watch_gone(struct co_http_req *req, void *data)
{
	struct watch *w = data;

	w->sf->watch_gone++;
	uv_close((uv_handle_t *)&w->timer, on_watch_timer_closed);
}

static void handle_watch(struct co_http_req *req, void *data)
{
	struct watch *w = co_calloc(1, sizeof(*w));

	w->req = req;
	w->sf = data;
	uv_timer_init(&w->sf->loop, &w->timer);
	w->timer.data = w;
	co_http_req_on_close(req, on_watch_gone, w);
	co_http_begin_chunked(req, 200, "application/json");
	uv_timer_start(&w->timer, on_watch_tick, 80, 80);
}

static void handle_item(struct co_http_req *req, void *data)
{
	const char *auth = co_http_req_header(req, "Authorization");
	size_t len;
	const char *body = co_http_req_body(req, &len);
	json_t *in = json_loadb(body, len, 0, NULL);

	co_http_respond_json(req, 201,
			     json_pack("{s:s, s:s, s:o*, s:s*}", "method",
				       co_http_req_method(req), "name",
				       co_http_req_param(req, "name"), "got", in, "auth",
				       auth));
}

static void on_sfx_closed(void *data)
{
	((struct sfx *)data)->closed++;
}

static void sfx_init(struct sfx *sf)
{
	struct co_error err = CO_ERROR_INIT;

	memset(sf, 0, sizeof(*sf));
	responses = 0;
	assert_int_equal(uv_loop_init(&sf->loop), 0);
	assert_int_equal(co_http_server_new(&sf->srv, &sf->loop,
					    &(struct co_http_server_opts){
						    .close_grace_ms = 200 },
					    &err),
			 0);
	co_http_server_route(sf->srv, "*", "/items/{name}", handle_item, sf);
	co_http_server_route(sf->srv, "GET", "/watch", handle_watch, sf);
	assert_int_equal(co_http_client_new(&sf->client, &sf->loop, &err), 0);
}

static void sfx_run(struct sfx *sf, int n)
{
	uint64_t t0 = co_time_mono_ms();

	while (responses < n) {
		uv_run(&sf->loop, UV_RUN_ONCE);
		assert_true(co_time_mono_ms() - t0 < 20000);
	}
}

static void sfx_finish(struct sfx *sf)
{
	co_http_client_close(sf->client, on_sfx_closed, sf);
	co_http_server_close(sf->srv, on_sfx_closed, sf);
	assert_int_equal(uv_run(&sf->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(sf->closed, 2);
	assert_int_equal(uv_loop_close(&sf->loop), 0);
}

static void test_server_json_and_keepalive(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_http_server_stats st;
	json_t *body = json_pack("{s:i, s:{s:s}}", "replicas", 3, "labels", "app", "podinfo");
	struct got g = { 0 }, wrong = { 0 };
	char *url, *watch;
	struct chain ch;
	struct sfx sf;

	sfx_init(&sf);
	url = co_asprintf("http://127.0.0.1:%d/items/podinfo", co_http_server_port(sf.srv));
	watch = co_asprintf("http://127.0.0.1:%d/watch", co_http_server_port(sf.srv));
	assert_int_equal(co_http_request_json(sf.client, NULL, "POST", url, body,
					      &(struct co_http_req_opts){
						      .bearer_token = "t0ken-value",
						      .timeout_ms = 5000 },
					      on_response, &g, &err),
			 0);
	sfx_run(&sf, 1);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.code, 201);
	assert_non_null(strstr(g.ctype, "application/json"));
	assert_string_equal(jstr(g.json, "method"), "POST");
	assert_string_equal(jstr(g.json, "name"), "podinfo");
	assert_string_equal(jstr(g.json, "auth"), "Bearer t0ken-value");
	assert_true(json_equal(json_object_get(g.json, "got"), body));

	/* Five GETs, each started from the previous one's callback, ride the same
	 * kept-alive connection as the POST. */
	ch = (struct chain){ .client = sf.client, .url = url, .left = 5 };
	assert_int_equal(co_http_request(sf.client, NULL, &(struct co_http_req_opts){ .url = url },
					 on_chain, &ch, &err),
			 0);
	sfx_run(&sf, 6);
	assert_int_equal(ch.ok, 5);
	co_http_server_stats(sf.srv, &st);
	assert_int_equal(st.requests_total, 6);
	assert_int_equal(st.connections_total, 1);

	/* The server's own 405 carries Allow, read back through the header helper. */
	assert_int_equal(co_http_request(sf.client, NULL,
					 &(struct co_http_req_opts){ .method = "DELETE",
								     .url = watch },
					 on_response, &wrong, &err),
			 0);
	sfx_run(&sf, 7);
	assert_int_equal(wrong.status, 0);
	assert_int_equal(wrong.code, 405);
	assert_non_null(wrong.allow);
	assert_non_null(strstr(wrong.allow, "GET"));
	got_release(&g);
	got_release(&wrong);
	json_decref(body);
	free(url);
	free(watch);
	sfx_finish(&sf);
}

struct lines {
	struct got g;
	struct co_buf buf;
	int events;
	int stop_after;    /* 0 = read to the end */
	uint64_t first_ms, last_ms;
};

/* Parse newline-delimited JSON events as a Kubernetes watch client does. */
static int on_watch_data(const char *chunk, size_t len, void *data)
{
	struct lines *l = data;
	char *nl;

	co_buf_append(&l->buf, chunk, len);
	while ((nl = memchr(l->buf.data, '\n', l->buf.len))) {
		size_t n = (size_t)(nl - l->buf.data);
		json_t *ev = json_loadb(l->buf.data, n, 0, NULL);
		uint64_t now = co_time_mono_ms();

		assert_non_null(ev);
		assert_int_equal(json_integer_value(json_object_get(ev, "n")), l->events);
		json_decref(ev);
		if (!l->events)
			l->first_ms = now;
		l->last_ms = now;
		l->events++;
		co_buf_consume(&l->buf, n + 1);
		if (l->stop_after && l->events >= l->stop_after)
			return 1;
	}
	return 0;
}

static void test_server_streaming(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct lines all = { 0 }, one = { .stop_after = 1 };
	uint64_t t0;
	char *url;
	struct sfx sf;

	sfx_init(&sf);
	url = co_asprintf("http://127.0.0.1:%d/watch", co_http_server_port(sf.srv));
	assert_int_equal(co_http_request(sf.client, NULL,
					 &(struct co_http_req_opts){ .url = url,
								     .on_data = on_watch_data },
					 on_response, &all.g, &err),
			 0);
	assert_int_equal(co_http_request(sf.client, NULL,
					 &(struct co_http_req_opts){ .url = url,
								     .on_data = on_watch_data },
					 on_response, &one.g, &err),
			 0);
	sfx_run(&sf, 2);
	assert_int_equal(all.g.status, 0);
	assert_int_equal(all.g.code, 200);
	assert_int_equal(all.events, 3);
	assert_int_equal(all.buf.len, 0);
	assert_true(all.last_ms - all.first_ms >= 120);   /* events came over time */
	/* The watch dropped after one event: the server's handler hears about it. */
	assert_int_equal(one.g.status, -ECANCELED);
	assert_int_equal(one.events, 1);
	t0 = co_time_mono_ms();
	while (sf.watch_gone < 1) {
		uv_run(&sf.loop, UV_RUN_ONCE);
		assert_true(co_time_mono_ms() - t0 < 5000);
	}
	assert_int_equal(sf.watch_gone, 1);
	co_buf_release(&all.buf);
	co_buf_release(&one.buf);
	got_release(&all.g);
	got_release(&one.g);
	free(url);
	sfx_finish(&sf);
}

static void test_close_idle_client(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_http_client *c = NULL;
	struct fx f = { 0 };
	uv_loop_t loop;

	/* With and without a close callback. */
	assert_int_equal(uv_loop_init(&loop), 0);
	assert_int_equal(co_http_client_new(&c, &loop, &err), 0);
	co_http_client_close(c, on_client_closed, &f);
	assert_int_equal(f.closed, 0);
	assert_int_equal(co_http_client_new(&c, &loop, &err), 0);
	co_http_client_close(c, NULL, NULL);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(f.closed, 1);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_methods_and_auth),
		cmocka_unit_test(test_keepalive_reuse),
		cmocka_unit_test(test_concurrent_100),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_streaming),
		cmocka_unit_test(test_max_body),
		cmocka_unit_test(test_bad_responses),
		cmocka_unit_test(test_unix_socket),
		cmocka_unit_test(test_client_close_outstanding),
		cmocka_unit_test(test_close_idle_client),
		cmocka_unit_test(test_server_json_and_keepalive),
		cmocka_unit_test(test_server_streaming),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
