/*
 * The HTTP/1.1 server: connections, routing and responses on one libuv loop.
 *
 * Each connection owns a TCP handle, one timer and a co_http_parser (http-request.c).
 * At most one request per connection is being answered at a time: while it is, input
 * is only buffered (up to a bound), so pipelined requests are answered in order and a
 * client cannot make us queue unbounded work. When the response ends the buffered
 * input is parsed again from a zero-delay timer rather than from inside the caller of
 * co_http_respond(), so a handler never runs nested inside another handler.
 *
 * The connection timer has one job at a time (enum timer_mode): the read deadline of
 * the current request (set when its first byte arrives, or at accept), the keep-alive
 * idle timeout, the deferred parse above, or the linger period of a closing
 * connection. A closing connection first sends FIN after its last write and keeps
 * reading (discarding) for a moment, so an error answer sent before the client has
 * finished sending is not destroyed by a TCP reset.
 *
 * Writes own their bytes until the write callback; handles are freed only in close
 * callbacks; a request whose connection goes away is either handed to the handler's
 * on_close callback and freed, or, if the handler registered none, detached so that its
 * later co_http_respond()/co_http_write() are harmless (-EPIPE) and free it.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "base/buf.h"
#include "net/http-request.h"
#include "net/http-server.h"

#define DEFAULT_MAX_HEADER_BYTES (16u * 1024)
#define DEFAULT_MAX_BODY_BYTES (4u * 1024 * 1024)
#define DEFAULT_READ_TIMEOUT_MS 30000u
#define DEFAULT_IDLE_TIMEOUT_MS 60000u
#define DEFAULT_CLOSE_GRACE_MS 5000u
#define DEFAULT_MAX_CONNECTIONS 4096u
#define LINGER_MS 1000u
#define READ_BUF_SIZE (64u * 1024)

enum timer_mode {
	TIMER_NONE,    /* stopped: a request is being answered */
	TIMER_READ,    /* the current request must complete by read_deadline */
	TIMER_IDLE,    /* keep-alive connection waiting for the next request */
	TIMER_DEFER,   /* parse buffered input on the next loop iteration */
	TIMER_LINGER,  /* FIN sent; wait briefly for the peer's before closing */
};

enum resp_state {
	RESP_NONE,     /* nothing sent yet */
	RESP_STREAM,   /* head sent, chunks may follow */
	RESP_ENDED,
};

struct route {
	char *method;
	char *pattern;
	co_http_handler handler;
	void *data;
};

struct conn;

struct co_http_server {
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t grace;
	struct co_http_server_opts opts;
	char *host;
	int port;

	struct route *routes;
	size_t n_routes;
	co_http_handler fallback;
	void *fallback_data;

	struct conn *conns;          /* every connection not yet freed */
	struct co_http_server_stats stats;
	struct co_http_request_limits limits;

	int closing;
	int grace_closed;
	unsigned handles;            /* listener + grace timer still open */
	co_http_server_close_cb close_cb;
	void *close_data;

	time_t date_sec;
	char date[40];
	char rbuf[READ_BUF_SIZE];    /* shared: libuv reads right after allocating */
};

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_shutdown_t shutdown;
	struct co_http_server *srv;
	struct conn *prev, *next;
	struct co_http_parser *parser;
	struct co_buf in;            /* received, not yet parsed */
	struct co_http_req *req;     /* being answered, NULL if none */
	size_t pending_bytes;        /* queued in uv_write, not yet written */
	uint64_t read_deadline;      /* uv_now() by which the request must complete */
	enum timer_mode tmode;
	int handles;
	unsigned closing : 1;        /* uv_close called */
	unsigned draining : 1;       /* final answer queued, FIN follows */
	unsigned reading : 1;
	unsigned eof : 1;
	unsigned processing : 1;
	unsigned broken : 1;         /* a write failed: only closing is left to do */
	char peer[64];
};

struct co_http_req {
	struct conn *conn;           /* NULL once the connection has gone */
	struct co_http_msg *msg;
	struct co_http_header *params;
	size_t n_params;
	struct co_buf headers;       /* extra response header lines */
	enum resp_state state;
	int is_head;
	int keep_alive;
	int raw_stream;              /* HTTP/1.0 streaming: no chunk framing, close ends */
	int in_close_cb;             /* the handler's on_close runs; we free req after */
	co_http_req_close_cb close_cb;
	void *close_data;
	void *user_data;
	char peer[64];
};

struct write_req {
	uv_write_t w;
	struct conn *conn;
	size_t len;
	char *data;
};

static void conn_close(struct conn *c);
static void conn_finish(struct conn *c);
static void conn_process(struct conn *c);
static void srv_maybe_done(struct co_http_server *srv);
static void on_conn_timer(uv_timer_t *t);

/* ---- small helpers ---- */

const char *co_http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 303: return "See Other";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 308: return "Permanent Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 422: return "Unprocessable Content";
	case 426: return "Upgrade Required";
	case 428: return "Precondition Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Unknown";
	}
}

/* RFC 9110 IMF-fixdate, cached per second; independent of the C locale. */
static const char *http_date(struct co_http_server *srv)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri",
					     "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t now = time(NULL);
	struct tm tm;

	if (now != srv->date_sec && gmtime_r(&now, &tm)) {
		snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
			 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
			 tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		srv->date_sec = now;
	}
	return srv->date;
}

static void param_list_clear(struct co_http_header **v, size_t *n)
{
	for (size_t i = 0; i < *n; i++) {
		free((*v)[i].name);
		free((*v)[i].value);
	}
	free(*v);
	*v = NULL;
	*n = 0;
}

/* ---- writing ---- */

static void on_write(uv_write_t *w, int status)
{
	struct write_req *wr = (struct write_req *)w;
	struct conn *c = wr->conn;

	c->pending_bytes -= wr->len;
	free(wr->data);
	free(wr);
	if (status < 0 && !c->closing)
		conn_close(c);
}

static void defer(struct conn *c, enum timer_mode mode)
{
	c->tmode = c->broken ? TIMER_LINGER : mode;
	uv_timer_start(&c->timer, on_conn_timer, 0, 0);
}

/* Queue len bytes of data (ownership taken). Returns 0 or -EPIPE. */
static int conn_write(struct conn *c, char *data, size_t len)
{
	struct write_req *wr;
	uv_buf_t b;
	int r;

	if (c->closing || c->broken || len == 0) {
		free(data);
		return c->closing || c->broken ? -EPIPE : 0;
	}
	wr = co_calloc(1, sizeof(*wr));
	wr->conn = c;
	wr->len = len;
	wr->data = data;
	b = uv_buf_init(data, (unsigned)len);
	r = uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
	if (r < 0) {
		free(data);
		free(wr);
		/* Close from the loop, not under the caller (who may be a handler). */
		c->broken = 1;
		defer(c, TIMER_LINGER);
		return -EPIPE;
	}
	c->pending_bytes += len;
	return 0;
}

static int conn_write_buf(struct conn *c, struct co_buf *b)
{
	size_t len;
	char *data = co_buf_detach(b, &len);

	return conn_write(c, data, len);
}

/* A complete answer generated by the server itself, followed by closing. */
static void conn_error(struct conn *c, int status, const char *reason)
{
	struct co_buf b = CO_BUF_INIT;
	const char *text = reason ? reason : co_http_status_text(status);

	if (status >= 400 && status < 500)
		c->srv->stats.errors_total++;
	co_buf_printf(&b,
		      "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; "
		      "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s\n",
		      status, co_http_status_text(status), http_date(c->srv),
		      strlen(text) + 1, text);
	conn_write_buf(c, &b);
	conn_finish(c);
}

/* ---- connection lifetime ---- */

static void on_conn_handle_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct co_http_server *srv = c->srv;

	if (--c->handles > 0)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->stats.connections_open--;
	co_http_parser_free(c->parser);
	co_buf_release(&c->in);
	free(c);
	srv_maybe_done(srv);
}

static void req_free(struct co_http_req *req)
{
	co_http_msg_free(req->msg);
	param_list_clear(&req->params, &req->n_params);
	co_buf_release(&req->headers);
	free(req);
}

/* The connection is going away with req unanswered. */
static void req_abort(struct co_http_req *req)
{
	req->conn = NULL;
	if (req->close_cb) {
		co_http_req_close_cb cb = req->close_cb;

		req->close_cb = NULL;
		req->in_close_cb = 1;
		cb(req, req->close_data);
		req_free(req);
	}
	/* Otherwise the handler still holds req: it is freed when the handler ends it. */
}

static void conn_close(struct conn *c)
{
	struct co_http_req *req = c->req;

	if (c->closing)
		return;
	c->closing = 1;
	c->req = NULL;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	if (req)
		req_abort(req);
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
	struct conn *c = s->data;

	if (c->closing)
		return;
	if (status < 0 || c->eof) {
		conn_close(c);
		return;
	}
	c->tmode = TIMER_LINGER;
	uv_timer_start(&c->timer, on_conn_timer, LINGER_MS, 0);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

static void conn_read_start(struct conn *c)
{
	if (c->reading || c->eof || c->closing)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
		c->reading = 1;
}

static void conn_read_stop(struct conn *c)
{
	if (!c->reading)
		return;
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = 0;
}

/* Send FIN once queued writes are out, then close. No more requests are parsed. */
static void conn_finish(struct conn *c)
{
	if (c->closing || c->draining)
		return;
	c->draining = 1;
	uv_timer_stop(&c->timer);
	c->tmode = TIMER_NONE;
	c->shutdown.data = c;
	if (c->broken) {
		defer(c, TIMER_LINGER);
		return;
	}
	if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
		conn_close(c);
		return;
	}
	conn_read_start(c); /* keep reading (and discarding) until the peer's FIN */
}

static void arm_timer(struct conn *c)
{
	struct co_http_server *srv = c->srv;
	uint64_t now = uv_now(srv->loop);

	if (c->broken) {
		defer(c, TIMER_LINGER);
	} else if (c->read_deadline) {
		c->tmode = TIMER_READ;
		uv_timer_start(&c->timer, on_conn_timer,
			       c->read_deadline > now ? c->read_deadline - now : 0, 0);
	} else {
		c->tmode = TIMER_IDLE;
		uv_timer_start(&c->timer, on_conn_timer, srv->opts.idle_timeout_ms, 0);
	}
}

static void on_conn_timer(uv_timer_t *t)
{
	struct conn *c = t->data;
	enum timer_mode mode = c->tmode;

	c->tmode = TIMER_NONE;
	switch (mode) {
	case TIMER_DEFER:
		conn_process(c);
		break;
	case TIMER_READ:
		if (!c->req)
			conn_error(c, 408, "request timeout");
		break;
	case TIMER_IDLE:
		if (!c->req)
			conn_close(c);
		break;
	case TIMER_LINGER:
		conn_close(c);
		break;
	case TIMER_NONE:
		break;
	}
}

/* ---- routing ---- */

static int param_add(struct co_http_header **v, size_t *n, const char *name,
		     size_t name_len, const char *raw, size_t raw_len)
{
	char *value = co_http_url_decode(raw, raw_len, 0);

	if (!value)
		return -1;
	*v = co_realloc(*v, (*n + 1) * sizeof(**v));
	(*v)[*n].name = co_strndup(name, name_len);
	(*v)[*n].value = value;
	(*n)++;
	return 0;
}

/* Is p (just after a '/') exactly "{name...}"? Sets the name span. */
static int is_rest_tail(const char *p, const char **ret_name, size_t *ret_len)
{
	size_t len = strlen(p);

	if (len < 6 || p[0] != '{' || strcmp(p + len - 4, "...}") != 0)
		return 0;
	*ret_name = p + 1;
	*ret_len = len - 5;
	return 1;
}

/* Match a raw path against a pattern; captures decoded parameters into v/n. */
static int route_match(const char *pat, const char *path, struct co_http_header **v,
		       size_t *n)
{
	const char *p = pat, *s = path, *name;
	size_t name_len;

	while (*p) {
		if (*p == '{' && strchr(p, '}')) {
			const char *close = strchr(p, '}');
			size_t nlen = (size_t)(close - p - 1);

			if (nlen > 3 && memcmp(close - 3, "...", 3) == 0) {
				if (param_add(v, n, p + 1, nlen - 3, s, strlen(s)))
					goto fail;
				return 1;
			}
			size_t slen = strcspn(s, "/");

			if (slen == 0 || param_add(v, n, p + 1, nlen, s, slen))
				goto fail;
			p = close + 1;
			s += slen;
			continue;
		}
		if (*p != *s) {
			/* "/files/{rest...}" also matches "/files", with an empty rest */
			if (*s == '\0' && *p == '/' && is_rest_tail(p + 1, &name, &name_len)) {
				if (param_add(v, n, name, name_len, "", 0))
					goto fail;
				return 1;
			}
			goto fail;
		}
		p++;
		s++;
	}
	if (*s == '\0')
		return 1;
fail:
	param_list_clear(v, n);
	return 0;
}

static int method_match(const char *route_method, const char *method)
{
	return strcmp(route_method, "*") == 0 || strcmp(route_method, method) == 0 ||
	       (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

static void allow_add(struct co_buf *allow, const char *method)
{
	const char *s = co_buf_cstr(allow);
	size_t len = strlen(method);

	while ((s = strstr(s, method)) != NULL) {
		if ((s == allow->data || s[-1] == ' ') && (s[len] == ',' || s[len] == '\0'))
			return;
		s += len;
	}
	if (allow->len)
		co_buf_puts(allow, ", ");
	co_buf_puts(allow, method);
}

static void dispatch(struct conn *c, struct co_http_msg *msg)
{
	struct co_http_server *srv = c->srv;
	struct co_http_req *req = co_calloc(1, sizeof(*req));
	struct co_buf allow = CO_BUF_INIT;

	req->conn = c;
	req->msg = msg;
	req->is_head = strcmp(msg->method, "HEAD") == 0;
	req->keep_alive = msg->keep_alive;
	memcpy(req->peer, c->peer, sizeof(req->peer));
	c->req = req;
	srv->stats.requests_total++;

	for (size_t i = 0; i < srv->n_routes; i++) {
		struct route *r = &srv->routes[i];

		if (!route_match(r->pattern, msg->raw_path, &req->params, &req->n_params))
			continue;
		if (method_match(r->method, msg->method)) {
			r->handler(req, r->data);
			co_buf_release(&allow);
			return;
		}
		param_list_clear(&req->params, &req->n_params);
		allow_add(&allow, r->method);
		if (strcmp(r->method, "GET") == 0)
			allow_add(&allow, "HEAD");
	}
	if (allow.len) {
		srv->stats.errors_total++;
		co_http_add_header(req, "Allow", co_buf_cstr(&allow));
		co_buf_release(&allow);
		co_http_respond_text(req, 405, "method not allowed\n");
		return;
	}
	if (srv->fallback) {
		srv->fallback(req, srv->fallback_data);
		return;
	}
	srv->stats.errors_total++;
	co_http_respond_text(req, 404, "not found\n");
}

/* ---- input ---- */

static size_t input_cap(const struct co_http_server *srv)
{
	return srv->limits.max_header_bytes + READ_BUF_SIZE;
}

static void conn_process(struct conn *c)
{
	struct co_http_server *srv = c->srv;
	enum co_http_parse_event ev;
	const char *reason;
	int status;

	if (c->closing || c->draining || c->processing || c->req || c->broken)
		return;
	c->processing = 1;
	while (!c->closing && !c->draining && !c->broken && !c->req && c->in.len > 0) {
		size_t n = co_http_parser_feed(c->parser, c->in.data, c->in.len, &ev);

		co_buf_consume(&c->in, n);
		if (co_http_parser_in_message(c->parser) && !c->read_deadline)
			c->read_deadline = uv_now(srv->loop) + srv->opts.read_timeout_ms;
		if (ev == CO_HTTP_PARSE_MORE)
			break;
		if (ev == CO_HTTP_PARSE_HEAD) {
			const struct co_http_msg *m = co_http_parser_msg(c->parser);

			if (m && m->expect_continue)
				conn_write(c, co_strdup("HTTP/1.1 100 Continue\r\n\r\n"), 25);
			continue;
		}
		if (ev == CO_HTTP_PARSE_DONE) {
			struct co_http_msg *m = co_http_parser_take(c->parser);

			c->read_deadline = 0;
			uv_timer_stop(&c->timer);
			c->tmode = TIMER_NONE;
			if (srv->closing || m->upgrade)
				m->keep_alive = 0;
			dispatch(c, m);
			continue;
		}
		status = co_http_parser_error(c->parser, &reason);
		conn_error(c, status ? status : 400, reason);
	}
	c->processing = 0;
	if (c->closing || c->draining || c->req)
		return;
	if (c->eof) {
		conn_finish(c);
		return;
	}
	if (c->in.len < input_cap(srv))
		conn_read_start(c);
	arm_timer(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	buf->base = c->srv->rbuf;
	buf->len = sizeof(c->srv->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (c->closing)
		return;
	if (nread > 0) {
		if (c->draining)
			return; /* lingering: discard */
		co_buf_append(&c->in, buf->base, (size_t)nread);
		if (c->in.len >= input_cap(c->srv))
			conn_read_stop(c);
		conn_process(c);
		return;
	}
	if (nread == 0)
		return;
	if (nread != UV_EOF || c->draining) {
		conn_close(c);
		return;
	}
	/* The peer will send no more. A request being answered has lost its client;
	 * otherwise buffered pipelined requests are still answered, then FIN. */
	c->eof = 1;
	conn_read_stop(c);
	if (c->req)
		conn_close(c);
	else
		conn_process(c);
}

/* ---- accepting ---- */

static void format_peer(uv_tcp_t *tcp, char *out, size_t n)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

			uv_ip6_name(a, ip, sizeof(ip));
			port = ntohs(a->sin6_port);
			snprintf(out, n, "[%s]:%d", ip, port);
			return;
		}
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		uv_ip4_name(a, ip, sizeof(ip));
		port = ntohs(a->sin_port);
	}
	snprintf(out, n, "%s:%d", ip, port);
}

static void on_connection(uv_stream_t *server, int status)
{
	struct co_http_server *srv = server->data;
	struct conn *c;

	if (status < 0 || srv->closing)
		return;
	c = co_calloc(1, sizeof(*c));
	c->srv = srv;
	uv_tcp_init(srv->loop, &c->tcp);
	uv_timer_init(srv->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->stats.connections_open++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	srv->stats.connections_total++;
	uv_tcp_nodelay(&c->tcp, 1);
	format_peer(&c->tcp, c->peer, sizeof(c->peer));
	c->parser = co_http_parser_new(&srv->limits);
	if (srv->stats.connections_open > srv->opts.max_connections) {
		struct co_buf b = CO_BUF_INIT;

		co_buf_printf(&b,
			      "HTTP/1.1 503 Service Unavailable\r\nDate: %s\r\nContent-Type: "
			      "text/plain; charset=utf-8\r\nContent-Length: 20\r\n"
			      "Connection: close\r\n\r\ntoo many connections",
			      http_date(srv));
		conn_write_buf(c, &b);
		conn_finish(c);
		return;
	}
	c->read_deadline = uv_now(srv->loop) + srv->opts.read_timeout_ms;
	conn_read_start(c);
	arm_timer(c);
}

/* ---- server ---- */

static void srv_free(struct co_http_server *srv)
{
	for (size_t i = 0; i < srv->n_routes; i++) {
		free(srv->routes[i].method);
		free(srv->routes[i].pattern);
	}
	free(srv->routes);
	free(srv->host);
	free(srv);
}

static void on_srv_handle_closed(uv_handle_t *h)
{
	struct co_http_server *srv = h->data;

	srv->handles--;
	srv_maybe_done(srv);
}

static void srv_maybe_done(struct co_http_server *srv)
{
	if (!srv->closing)
		return;
	if (!srv->conns && !srv->grace_closed) {
		srv->grace_closed = 1;
		uv_close((uv_handle_t *)&srv->grace, on_srv_handle_closed);
	}
	if (srv->handles == 0 && !srv->conns) {
		co_http_server_close_cb cb = srv->close_cb;
		void *data = srv->close_data;

		srv_free(srv);
		if (cb)
			cb(data);
	}
}

static int make_listener(const char *host, int port, int *ret_fd, int *ret_port,
			 struct co_error *err)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	int fd, one = 1, r;

	memset(&ss, 0, sizeof(ss));
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) {
		slen = sizeof(struct sockaddr_in);
	} else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
		slen = sizeof(struct sockaddr_in6);
	} else {
		return co_error_set(err, UV_EINVAL, "listen on '%s:%d': invalid address",
				    host, port);
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		return co_error_set(err, r, "listen on '%s:%d': %s", host, port,
				    uv_strerror(r));
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 511) < 0) {
		r = -errno;
		close(fd);
		return co_error_set(err, r, "listen on '%s:%d': %s", host, port,
				    uv_strerror(r));
	}
	slen = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &slen);
	*ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	*ret_fd = fd;
	return 0;
}

static void ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_IGN;
		sigaction(SIGPIPE, &sa, NULL);
	}
}

int co_http_server_new(struct co_http_server **ret_srv, uv_loop_t *loop,
		       const struct co_http_server_opts *opts, struct co_error *err)
{
	struct co_http_server_opts o = { 0 };
	struct co_http_server *srv;
	int fd = -1, port = 0, r;

	if (opts)
		o = *opts;
	if (!o.host)
		o.host = "127.0.0.1";
	if (!o.max_header_bytes)
		o.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
	if (!o.max_body_bytes)
		o.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
	if (!o.read_timeout_ms)
		o.read_timeout_ms = DEFAULT_READ_TIMEOUT_MS;
	if (!o.idle_timeout_ms)
		o.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	if (!o.close_grace_ms)
		o.close_grace_ms = DEFAULT_CLOSE_GRACE_MS;
	if (!o.max_connections)
		o.max_connections = DEFAULT_MAX_CONNECTIONS;

	/* libuv writes with write(2): a peer that resets would otherwise kill the
	 * process with SIGPIPE. Only the default disposition is changed. */
	ignore_sigpipe();
	r = make_listener(o.host, o.port, &fd, &port, err);
	if (r < 0)
		return r;

	srv = co_calloc(1, sizeof(*srv));
	srv->loop = loop;
	srv->host = co_strdup(o.host);
	srv->opts = o;
	srv->opts.host = srv->host;
	srv->port = port;
	srv->limits.max_header_bytes = o.max_header_bytes;
	srv->limits.max_body_bytes = o.max_body_bytes;
	srv->date_sec = (time_t)-1;

	uv_tcp_init(loop, &srv->listener);
	uv_timer_init(loop, &srv->grace);
	srv->listener.data = srv;
	srv->grace.data = srv;
	srv->handles = 2;
	r = uv_tcp_open(&srv->listener, fd);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
	if (r < 0) {
		if (uv_fileno((uv_handle_t *)&srv->listener, &(uv_os_fd_t){ 0 }) != 0)
			close(fd);
		co_error_set(err, r, "listen on '%s:%d': %s", o.host, o.port, uv_strerror(r));
		/* handles close asynchronously; the server frees itself once they have */
		srv->closing = 1;
		srv->grace_closed = 1;
		uv_close((uv_handle_t *)&srv->listener, on_srv_handle_closed);
		uv_close((uv_handle_t *)&srv->grace, on_srv_handle_closed);
		return r;
	}
	*ret_srv = srv;
	return 0;
}

int co_http_server_port(const struct co_http_server *srv)
{
	return srv->port;
}

void co_http_server_route(struct co_http_server *srv, const char *method,
			  const char *pattern, co_http_handler handler, void *data)
{
	struct route *r;
	const char *rest = strstr(pattern, "...}");

	/* programming errors: patterns are paths, and "{name...}" ends them */
	assert(pattern[0] == '/');
	assert(!rest || rest[4] == '\0');
	(void)rest;
	srv->routes = co_realloc(srv->routes, (srv->n_routes + 1) * sizeof(*srv->routes));
	r = &srv->routes[srv->n_routes++];
	r->method = co_strdup(method);
	r->pattern = co_strdup(pattern);
	r->handler = handler;
	r->data = data;
}

void co_http_server_fallback(struct co_http_server *srv, co_http_handler handler,
			     void *data)
{
	srv->fallback = handler;
	srv->fallback_data = data;
}

static void on_grace(uv_timer_t *t)
{
	struct co_http_server *srv = t->data;

	for (struct conn *c = srv->conns; c; c = c->next)
		conn_close(c);
}

void co_http_server_close(struct co_http_server *srv, co_http_server_close_cb cb,
			  void *data)
{
	srv->closing = 1;
	srv->close_cb = cb;
	srv->close_data = data;
	uv_close((uv_handle_t *)&srv->listener, on_srv_handle_closed);
	for (struct conn *c = srv->conns; c; c = c->next)
		if (!c->req && !c->draining)
			conn_close(c);
	uv_timer_start(&srv->grace, on_grace, srv->opts.close_grace_ms, 0);
	srv_maybe_done(srv);
}

void co_http_server_stats(const struct co_http_server *srv,
			  struct co_http_server_stats *ret_stats)
{
	*ret_stats = srv->stats;
}

/* ---- request accessors ---- */

const char *co_http_req_method(const struct co_http_req *req)
{
	return req->msg->method;
}

const char *co_http_req_path(const struct co_http_req *req)
{
	return req->msg->path;
}

const char *co_http_req_raw_path(const struct co_http_req *req)
{
	return req->msg->raw_path;
}

const char *co_http_req_query(const struct co_http_req *req)
{
	return req->msg->query;
}

const char *co_http_req_query_param(const struct co_http_req *req, const char *name)
{
	return co_http_msg_query_param(req->msg, name);
}

const char *co_http_req_param(const struct co_http_req *req, const char *name)
{
	for (size_t i = 0; i < req->n_params; i++)
		if (strcmp(req->params[i].name, name) == 0)
			return req->params[i].value;
	return NULL;
}

const char *co_http_req_header(const struct co_http_req *req, const char *name)
{
	return co_http_msg_header(req->msg, name);
}

const char *co_http_req_body(const struct co_http_req *req, size_t *ret_len)
{
	if (ret_len)
		*ret_len = req->msg->body.len;
	return co_buf_cstr(&req->msg->body);
}

const char *co_http_req_peer(const struct co_http_req *req)
{
	return req->peer;
}

void co_http_req_set_data(struct co_http_req *req, void *data)
{
	req->user_data = data;
}

void *co_http_req_get_data(const struct co_http_req *req)
{
	return req->user_data;
}

void co_http_req_on_close(struct co_http_req *req, co_http_req_close_cb cb, void *data)
{
	req->close_cb = cb;
	req->close_data = data;
}

/* ---- responses ---- */

static int header_ok(const char *s)
{
	return strpbrk(s, "\r\n") == NULL;
}

void co_http_add_header(struct co_http_req *req, const char *name, const char *value)
{
	if (req->state != RESP_NONE || !header_ok(name) || !header_ok(value) ||
	    strchr(name, ':') || !name[0])
		return; /* no header injection, no late headers */
	co_buf_printf(&req->headers, "%s: %s\r\n", name, value);
}

/* The response is complete: release req and move the connection on. */
static void end_response(struct co_http_req *req)
{
	struct conn *c = req->conn;
	int keep_alive = req->keep_alive;

	if (req->in_close_cb)
		return; /* req_abort() frees it when the callback returns */
	req_free(req);
	if (!c)
		return;
	c->req = NULL;
	if (c->broken) {
		defer(c, TIMER_LINGER);
		return;
	}
	if (!keep_alive || c->srv->closing) {
		conn_finish(c);
		return;
	}
	if (!c->processing)
		defer(c, TIMER_DEFER);
}

static void build_head(struct co_http_req *req, struct co_buf *b, int status,
		       const char *content_type)
{
	struct conn *c = req->conn;

	req->keep_alive = req->keep_alive && !c->srv->closing && !c->eof;
	co_buf_printf(b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", status,
		      co_http_status_text(status), http_date(c->srv));
	if (content_type && header_ok(content_type))
		co_buf_printf(b, "Content-Type: %s\r\n", content_type);
	co_buf_append(b, req->headers.data ? req->headers.data : "", req->headers.len);
	if (!req->keep_alive)
		co_buf_puts(b, "Connection: close\r\n");
	else if (req->msg->http_major == 1 && req->msg->http_minor == 0)
		co_buf_puts(b, "Connection: keep-alive\r\n");
}

void co_http_respond(struct co_http_req *req, int status, const char *content_type,
		     const void *body, size_t len)
{
	struct co_buf b = CO_BUF_INIT;
	int bodyless = status == 204 || status == 304 || (status >= 100 && status < 200);

	if (req->state != RESP_NONE)
		return;
	req->state = RESP_ENDED;
	if (req->conn && !req->conn->closing) {
		build_head(req, &b, status, content_type);
		if (!bodyless)
			co_buf_printf(&b, "Content-Length: %zu\r\n", len);
		co_buf_puts(&b, "\r\n");
		if (!bodyless && !req->is_head && len)
			co_buf_append(&b, body, len);
		conn_write_buf(req->conn, &b);
	}
	end_response(req);
}

void co_http_respond_json(struct co_http_req *req, int status, struct json_t *body)
{
	char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;

	if (!s) {
		co_http_respond_text(req, 500, "cannot encode response\n");
	} else {
		co_http_respond(req, status, "application/json", s, strlen(s));
		free(s);
	}
	json_decref(body);
}

void co_http_respond_text(struct co_http_req *req, int status, const char *fmt, ...)
{
	struct co_buf b = CO_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	co_http_respond(req, status, "text/plain; charset=utf-8", co_buf_cstr(&b), b.len);
	co_buf_release(&b);
}

void co_http_begin_chunked(struct co_http_req *req, int status, const char *content_type)
{
	struct co_buf b = CO_BUF_INIT;

	if (req->state != RESP_NONE)
		return;
	req->state = RESP_STREAM;
	if (!req->conn || req->conn->closing)
		return;
	if (req->msg->http_major == 1 && req->msg->http_minor == 0) {
		/* HTTP/1.0 has no chunked coding: the body ends when we close. */
		req->keep_alive = 0;
		req->raw_stream = 1;
	}
	build_head(req, &b, status, content_type);
	if (!req->raw_stream)
		co_buf_puts(&b, "Transfer-Encoding: chunked\r\n");
	co_buf_puts(&b, "\r\n");
	conn_write_buf(req->conn, &b);
}

int co_http_write(struct co_http_req *req, const void *data, size_t len)
{
	struct co_buf b = CO_BUF_INIT;

	if (!req->conn || req->conn->closing || req->conn->broken ||
	    req->state != RESP_STREAM)
		return -EPIPE;
	if (len == 0 || req->is_head)
		return 0;
	if (req->raw_stream) {
		co_buf_append(&b, data, len);
	} else {
		co_buf_printf(&b, "%zx\r\n", len);
		co_buf_append(&b, data, len);
		co_buf_puts(&b, "\r\n");
	}
	return conn_write_buf(req->conn, &b);
}

void co_http_end(struct co_http_req *req)
{
	if (req->state == RESP_ENDED)
		return;
	if (req->state == RESP_NONE) {
		/* ending without a body: an empty 200 is the least surprising answer */
		co_http_respond(req, 200, NULL, NULL, 0);
		return;
	}
	req->state = RESP_ENDED;
	if (req->conn && !req->conn->closing && !req->is_head && !req->raw_stream)
		conn_write(req->conn, co_strdup("0\r\n\r\n"), 5);
	end_response(req);
}

size_t co_http_pending_bytes(const struct co_http_req *req)
{
	return req->conn ? req->conn->pending_bytes : 0;
}
