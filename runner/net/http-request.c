/*
 * Request parsing on top of http-parser, with the server's limits.
 *
 * http-parser is a callback-driven state machine that never buffers; this module
 * collects what it reports into a co_http_msg: the target and header fields arrive in
 * pieces (a header name may be split across reads), so a "last callback" marker tells
 * whether a piece continues the previous field or starts a new one. Limits are checked
 * as the pieces arrive, so a hostile client can never make us hold more than
 * max_header_bytes of head or max_body_bytes of body.
 *
 * Pausing: on_headers_complete and on_message_complete pause the parser, which makes
 * http_parser_execute() return right there with the count of bytes that belong to what
 * was parsed so far; the rest stays with the caller. Pausing is undone at once, so
 * the next feed simply continues.
 *
 * Once the head is complete the target is split and decoded and duplicate headers are
 * joined, so the message is ready for routing before its body arrives. Trailer fields
 * of a chunked body count against the header limit but are not kept.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "net/http-request.h"
#include "net/http-server.h"

#define DEFAULT_MAX_HEADER_BYTES (16u * 1024)
#define DEFAULT_MAX_BODY_BYTES (4u * 1024 * 1024)
#define DEFAULT_MAX_HEADERS 100u

enum last_cb {
	LAST_NONE,
	LAST_FIELD,
	LAST_VALUE,
};

struct co_http_parser {
	http_parser hp;
	http_parser_settings settings;
	struct co_http_request_limits limits;

	struct co_http_msg *msg;   /* being parsed, NULL between requests */
	struct co_buf url;
	struct co_buf field;       /* header name being accumulated */
	struct co_buf value;       /* header value being accumulated */
	enum last_cb last;
	size_t head_bytes;         /* request line + header bytes seen for msg */
	size_t hdr_cap;

	int head_done;             /* pause reason: headers complete */
	int msg_done;              /* pause reason: message complete */
	int error_status;          /* our own verdict, 0 until an error */
	const char *error_reason;
};

static const char HEX[] = "0123456789abcdef";

static int hexval(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(HEX, c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
	return p ? (int)(p - HEX) : -1;
}

char *co_http_url_decode(const char *src, size_t len, int plus_is_space)
{
	char *out = co_malloc(len + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		char c = src[i];

		if (c == '%') {
			int hi, lo;

			if (len - i < 3)
				goto bad;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad; /* %00 would cut the C string short */
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (c == '+' && plus_is_space) {
			out[o++] = ' ';
		} else if (c == '\0') {
			goto bad;
		} else {
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

void co_http_msg_free(struct co_http_msg *msg)
{
	if (!msg)
		return;
	free(msg->url);
	free(msg->raw_path);
	free(msg->path);
	free(msg->query);
	for (size_t i = 0; i < msg->n_headers; i++) {
		free(msg->headers[i].name);
		free(msg->headers[i].value);
	}
	free(msg->headers);
	for (size_t i = 0; i < msg->n_params; i++) {
		free(msg->params[i].name);
		free(msg->params[i].value);
	}
	free(msg->params);
	co_buf_release(&msg->body);
	free(msg);
}

const char *co_http_msg_header(const struct co_http_msg *msg, const char *name)
{
	for (size_t i = 0; i < msg->n_headers; i++)
		if (strcasecmp(msg->headers[i].name, name) == 0)
			return msg->headers[i].value;
	return NULL;
}

const char *co_http_msg_query_param(const struct co_http_msg *msg, const char *name)
{
	for (size_t i = 0; i < msg->n_params; i++)
		if (strcmp(msg->params[i].name, name) == 0)
			return msg->params[i].value;
	return NULL;
}

static int fail(struct co_http_parser *p, int status, const char *reason)
{
	if (!p->error_status) {
		p->error_status = status;
		p->error_reason = reason;
	}
	return -1; /* makes http-parser stop with a callback error */
}

static int count_head(struct co_http_parser *p, size_t n)
{
	p->head_bytes += n;
	if (p->head_bytes > p->limits.max_header_bytes)
		return fail(p, 431, "request header fields too large");
	return 0;
}

/* Move the accumulated field/value pair into the message. */
static int flush_header(struct co_http_parser *p)
{
	struct co_http_msg *m = p->msg;

	if (p->last != LAST_VALUE)
		return 0;
	if (m->n_headers >= p->limits.max_headers)
		return fail(p, 431, "too many header fields");
	if (m->n_headers == p->hdr_cap) {
		p->hdr_cap = p->hdr_cap ? p->hdr_cap * 2 : 16;
		m->headers = co_realloc(m->headers, p->hdr_cap * sizeof(*m->headers));
	}
	m->headers[m->n_headers].name = co_strndup(p->field.data ? p->field.data : "",
						   p->field.len);
	m->headers[m->n_headers].value = co_strndup(p->value.data ? p->value.data : "",
						    p->value.len);
	m->n_headers++;
	co_buf_reset(&p->field);
	co_buf_reset(&p->value);
	p->last = LAST_NONE;
	return 0;
}

static int on_message_begin(http_parser *hp)
{
	struct co_http_parser *p = hp->data;

	co_http_msg_free(p->msg);
	p->msg = co_calloc(1, sizeof(*p->msg));
	co_buf_reset(&p->url);
	co_buf_reset(&p->field);
	co_buf_reset(&p->value);
	p->last = LAST_NONE;
	p->head_bytes = 0;
	p->hdr_cap = 0;
	/* method, spaces, version and line ends of the request line */
	return count_head(p, 16);
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct co_http_parser *p = hp->data;

	if (count_head(p, len))
		return -1;
	co_buf_append(&p->url, at, len);
	return 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct co_http_parser *p = hp->data;

	if (p->msg->url) /* a chunked trailer: counted against the limit, not kept */
		return count_head(p, len + 4);
	if (p->last == LAST_VALUE && flush_header(p))
		return -1;
	if (p->last != LAST_FIELD && count_head(p, 4)) /* ": " and CRLF */
		return -1;
	if (count_head(p, len))
		return -1;
	co_buf_append(&p->field, at, len);
	p->last = LAST_FIELD;
	return 0;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct co_http_parser *p = hp->data;

	if (count_head(p, len))
		return -1;
	if (p->msg->url)
		return 0;
	co_buf_append(&p->value, at, len);
	p->last = LAST_VALUE;
	return 0;
}

/* Join repeated headers into the first occurrence ("a, b"), keeping order. */
static void join_headers(struct co_http_msg *m)
{
	size_t out = 0;

	for (size_t i = 0; i < m->n_headers; i++) {
		struct co_http_header *h = &m->headers[i];
		size_t j;

		for (j = 0; j < out; j++)
			if (strcasecmp(m->headers[j].name, h->name) == 0)
				break;
		if (j < out) {
			char *joined = co_asprintf("%s, %s", m->headers[j].value, h->value);

			free(m->headers[j].value);
			m->headers[j].value = joined;
			free(h->name);
			free(h->value);
		} else {
			m->headers[out++] = *h;
		}
	}
	m->n_headers = out;
}

static void parse_query(struct co_http_msg *m)
{
	const char *s = m->query;
	size_t cap = 0;

	while (*s) {
		size_t n = strcspn(s, "&");
		const char *eq = memchr(s, '=', n);
		char *name, *value;

		if (n == 0) {
			s++;
			continue;
		}
		name = co_http_url_decode(s, eq ? (size_t)(eq - s) : n, 1);
		value = eq ? co_http_url_decode(eq + 1, n - (size_t)(eq + 1 - s), 1)
			   : co_strdup("");
		if (name && value) {
			if (m->n_params == cap) {
				cap = cap ? cap * 2 : 8;
				m->params = co_realloc(m->params, cap * sizeof(*m->params));
			}
			m->params[m->n_params].name = name;
			m->params[m->n_params].value = value;
			m->n_params++;
		} else {
			/* A pair with a broken escape is skipped, like most servers do. */
			free(name);
			free(value);
		}
		s += n;
		if (*s == '&')
			s++;
	}
}

/* Split the request target into raw path and query; 0 or -1 on a bad target. */
static int split_target(struct co_http_msg *m, int is_connect)
{
	const char *u = m->url;
	size_t len = strlen(u);

	if (u[0] == '/') {
		size_t plen = strcspn(u, "?#");

		m->raw_path = co_strndup(u, plen);
		if (u[plen] == '?')
			m->query = co_strndup(u + plen + 1, strcspn(u + plen + 1, "#"));
	} else if (strcmp(u, "*") == 0 || is_connect) {
		m->raw_path = co_strdup(u);
	} else {
		struct http_parser_url pu;

		http_parser_url_init(&pu);
		if (http_parser_parse_url(u, len, 0, &pu) != 0)
			return -1;
		if (pu.field_set & (1 << UF_PATH))
			m->raw_path = co_strndup(u + pu.field_data[UF_PATH].off,
						 pu.field_data[UF_PATH].len);
		else
			m->raw_path = co_strdup("/");
		if (pu.field_set & (1 << UF_QUERY))
			m->query = co_strndup(u + pu.field_data[UF_QUERY].off,
					      pu.field_data[UF_QUERY].len);
	}
	if (!m->query)
		m->query = co_strdup("");
	m->path = co_http_url_decode(m->raw_path, strlen(m->raw_path), 0);
	return m->path ? 0 : -1;
}

static int on_headers_complete(http_parser *hp)
{
	struct co_http_parser *p = hp->data;
	struct co_http_msg *m = p->msg;
	const char *expect;

	if (flush_header(p))
		return -1;
	join_headers(m);
	m->method = http_method_str((enum http_method)hp->method);
	m->http_major = hp->http_major;
	m->http_minor = hp->http_minor;
	m->url = co_strndup(p->url.data ? p->url.data : "", p->url.len);
	if (m->url[0] == '\0' || split_target(m, hp->method == HTTP_CONNECT))
		return fail(p, 400, "bad request target");
	parse_query(m);
	if ((hp->flags & F_CONTENTLENGTH) && hp->content_length > p->limits.max_body_bytes)
		return fail(p, 413, "content too large");
	expect = co_http_msg_header(m, "Expect");
	m->expect_continue = expect && strcasecmp(expect, "100-continue") == 0 &&
			     (m->http_major > 1 || (m->http_major == 1 && m->http_minor >= 1));
	p->head_done = 1;
	http_parser_pause(hp, 1);
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct co_http_parser *p = hp->data;
	struct co_http_msg *m = p->msg;

	if (len > p->limits.max_body_bytes - m->body.len)
		return fail(p, 413, "content too large");
	co_buf_append(&m->body, at, len);
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	struct co_http_parser *p = hp->data;

	p->msg->keep_alive = http_should_keep_alive(hp) && !hp->upgrade;
	p->msg->upgrade = hp->upgrade;
	p->msg_done = 1;
	http_parser_pause(hp, 1);
	return 0;
}

struct co_http_parser *co_http_parser_new(const struct co_http_request_limits *limits)
{
	struct co_http_parser *p = co_calloc(1, sizeof(*p));

	if (limits)
		p->limits = *limits;
	if (!p->limits.max_header_bytes)
		p->limits.max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
	if (!p->limits.max_body_bytes)
		p->limits.max_body_bytes = DEFAULT_MAX_BODY_BYTES;
	if (!p->limits.max_headers)
		p->limits.max_headers = DEFAULT_MAX_HEADERS;
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	http_parser_settings_init(&p->settings);
	p->settings.on_message_begin = on_message_begin;
	p->settings.on_url = on_url;
	p->settings.on_header_field = on_header_field;
	p->settings.on_header_value = on_header_value;
	p->settings.on_headers_complete = on_headers_complete;
	p->settings.on_body = on_body;
	p->settings.on_message_complete = on_message_complete;
	return p;
}

void co_http_parser_free(struct co_http_parser *p)
{
	if (!p)
		return;
	co_http_msg_free(p->msg);
	co_buf_release(&p->url);
	co_buf_release(&p->field);
	co_buf_release(&p->value);
	free(p);
}

static size_t set_error(struct co_http_parser *p, size_t n,
			enum co_http_parse_event *ret_event)
{
	if (!p->error_status) {
		if (HTTP_PARSER_ERRNO(&p->hp) == HPE_HEADER_OVERFLOW)
			fail(p, 431, "request header fields too large");
		else
			fail(p, 400, http_errno_description(HTTP_PARSER_ERRNO(&p->hp)));
	}
	*ret_event = CO_HTTP_PARSE_ERROR;
	return n;
}

size_t co_http_parser_feed(struct co_http_parser *p, const char *data, size_t len,
			   enum co_http_parse_event *ret_event)
{
	enum http_errno e;
	size_t n;

	if (p->error_status) {
		*ret_event = CO_HTTP_PARSE_ERROR;
		return 0;
	}
	/* A finished request must be taken first. */
	if (p->msg_done)
		return set_error(p, 0, ret_event);
	if (len == 0) {
		*ret_event = CO_HTTP_PARSE_MORE;
		return 0;
	}
	n = http_parser_execute(&p->hp, &p->settings, data, len);
	e = HTTP_PARSER_ERRNO(&p->hp);
	if (e == HPE_PAUSED) {
		http_parser_pause(&p->hp, 0);
		if (p->msg_done) {
			*ret_event = CO_HTTP_PARSE_DONE;
		} else {
			p->head_done = 0;
			*ret_event = CO_HTTP_PARSE_HEAD;
		}
		return n;
	}
	if (e != HPE_OK)
		return set_error(p, n, ret_event);
	if (n != len)
		return set_error(p, n, ret_event);
	*ret_event = CO_HTTP_PARSE_MORE;
	return n;
}

const struct co_http_msg *co_http_parser_msg(const struct co_http_parser *p)
{
	return p->msg && p->msg->url ? p->msg : NULL;
}

struct co_http_msg *co_http_parser_take(struct co_http_parser *p)
{
	struct co_http_msg *m;

	if (!p->msg_done)
		return NULL;
	m = p->msg;
	p->msg = NULL;
	p->msg_done = 0;
	p->head_done = 0;
	if (m->upgrade)
		fail(p, 400, "protocol upgrade not supported"); /* what follows is not HTTP */
	return m;
}

int co_http_parser_in_message(const struct co_http_parser *p)
{
	return p->msg != NULL && !p->msg_done;
}

int co_http_parser_error(const struct co_http_parser *p, const char **ret_reason)
{
	if (ret_reason)
		*ret_reason = p->error_reason;
	return p->error_status;
}
