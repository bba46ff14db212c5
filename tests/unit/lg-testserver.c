/*
 * The test server behind lg-testserver.h. Answers are one static buffer written with
 * uv_try_write (falling back to uv_write with a heap request), so the server keeps up
 * with the load generator on a two-core machine.
 */
#include "lg-testserver.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

struct ts_conn {
	uv_tcp_t tcp;
	http_parser parser;
	struct ts_server *s;
	struct ts_conn *next, **prevp;
	unsigned pending;        /* answers held by the stall */
	unsigned answered;
	int is_post;
	char rbuf[16384];
};

static const char ok_resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
static const char close_resp[] =
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

static void on_conn_closed(uv_handle_t *h)
{
	struct ts_conn *c = h->data;

	free(c);
}

static void conn_close(struct ts_conn *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	*c->prevp = c->next;
	if (c->next)
		c->next->prevp = c->prevp;
	uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
	free(w);
}

static void write_all(struct ts_conn *c, const char *data, size_t len)
{
	uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
	int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	uv_write_t *w;

	if (n == (int)len)
		return;
	if (n < 0 && n != UV_EAGAIN) {
		conn_close(c);
		return;
	}
	if (n < 0)
		n = 0;
	b = uv_buf_init((char *)data + n, (unsigned)(len - (size_t)n));
	w = malloc(sizeof(*w));
	if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
		free(w);
		conn_close(c);
	}
}

/* Returns 1 if the connection was closed. */
static int answer(struct ts_conn *c)
{
	struct ts_server *s = c->s;

	c->answered++;
	if (s->close_every && c->answered % s->close_every == 0) {
		write_all(c, close_resp, sizeof(close_resp) - 1);
		conn_close(c);
		return 1;
	}
	write_all(c, ok_resp, sizeof(ok_resp) - 1);
	return 0;
}

static void on_stall_end(uv_timer_t *t)
{
	struct ts_server *s = t->data;
	struct ts_conn *c, *next;

	s->stalled = 0;
	for (c = s->conns; c; c = next) {
		next = c->next;
		while (c->pending) {
			c->pending--;
			if (answer(c))
				break;
		}
	}
}

static int on_headers(http_parser *p)
{
	struct ts_conn *c = p->data;

	c->is_post = p->method == HTTP_POST;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
	struct ts_conn *c = p->data;

	c->s->body_bytes += len;
	return 0;
}

static int on_message(http_parser *p)
{
	struct ts_conn *c = p->data;
	struct ts_server *s = c->s;

	s->requests++;
	s->posts += c->is_post;
	if (s->stall_at && !s->stall_done && s->requests >= s->stall_at) {
		s->stall_done = 1;
		s->stalled = 1;
		uv_timer_start(&s->stall_timer, on_stall_end, s->stall_ms, 0);
	}
	if (s->stalled)
		c->pending++;
	else if (answer(c))
		http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_headers_complete = on_headers,
	.on_body = on_body,
	.on_message_complete = on_message,
};

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ts_conn *c = h->data;

	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ts_conn *c = st->data;
	size_t n;

	if (nread == 0)
		return;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	n = http_parser_execute(&c->parser, &settings, buf->base, (size_t)nread);
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (n != (size_t)nread)
		conn_close(c);
}

static void on_connection(uv_stream_t *l, int status)
{
	struct ts_server *s = l->data;
	struct ts_conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	c->s = s;
	uv_tcp_init(s->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
		return;
	}
	s->connections++;
	c->next = s->conns;
	if (c->next)
		c->next->prevp = &c->next;
	c->prevp = &s->conns;
	s->conns = c;
	http_parser_init(&c->parser, HTTP_REQUEST);
	c->parser.data = c;
	uv_tcp_nodelay(&c->tcp, 1);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int ts_server_start(struct ts_server *s, uv_loop_t *loop)
{
	struct sockaddr_in addr;
	struct sockaddr_storage bound;
	int len = sizeof(bound), rc;

	s->loop = loop;
	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_init(loop, &s->listener);
	s->listener.data = s;
	uv_timer_init(loop, &s->stall_timer);
	s->stall_timer.data = s;
	rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 1024, on_connection);
	if (rc == 0)
		rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
	if (rc < 0)
		return rc;
	s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
	return 0;
}

void ts_server_close(struct ts_server *s)
{
	while (s->conns)
		conn_close(s->conns);
	uv_close((uv_handle_t *)&s->listener, NULL);
	uv_close((uv_handle_t *)&s->stall_timer, NULL);
}
