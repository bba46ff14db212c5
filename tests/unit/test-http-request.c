/* Unit tests for the request parser (no sockets): splitting, limits, pipelining. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "net/http-request.h"
#include "net/http-server.h"

/*
 * Feed data in pieces of at most step bytes until a request is DONE or an error;
 * counts HEAD events. Returns the last event; *ret_used the bytes consumed.
 */
static enum co_http_parse_event feed(struct co_http_parser *p, const char *data,
				     size_t len, size_t step, size_t *ret_used,
				     int *ret_heads)
{
	enum co_http_parse_event ev = CO_HTTP_PARSE_MORE;
	size_t off = 0, limit = 0;

	while (off < len) {
		size_t chunk;

		if (limit <= off)
			limit = off + step < len ? off + step : len;
		chunk = limit - off;
		off += co_http_parser_feed(p, data + off, chunk, &ev);
		if (ev == CO_HTTP_PARSE_HEAD) {
			if (ret_heads)
				(*ret_heads)++;
			continue;
		}
		if (ev != CO_HTTP_PARSE_MORE)
			break;
	}
	if (ret_used)
		*ret_used = off;
	return ev;
}

static void test_simple_get(void **state)
{
	static const char req[] =
		"GET /a%20b/c?x=1&name=J%C3%BCrgen+M&bad=%zz&flag&x=2#frag HTTP/1.1\r\n"
		"Host: example\r\n"
		"Accept: text/plain\r\n"
		"accept: application/json\r\n"
		"X-Empty:\r\n"
		"\r\n";
	struct co_http_parser *p = co_http_parser_new(NULL);
	struct co_http_msg *m;
	size_t used;
	int heads = 0;

	assert_int_equal(feed(p, req, strlen(req), 1000, &used, &heads), CO_HTTP_PARSE_DONE);
	assert_int_equal(used, strlen(req));
	assert_int_equal(heads, 1);
	assert_false(co_http_parser_in_message(p));
	m = co_http_parser_take(p);
	assert_non_null(m);
	assert_null(co_http_parser_take(p));
	assert_string_equal(m->method, "GET");
	assert_string_equal(m->raw_path, "/a%20b/c");
	assert_string_equal(m->path, "/a b/c");
	assert_string_equal(m->query, "x=1&name=J%C3%BCrgen+M&bad=%zz&flag&x=2");
	assert_string_equal(co_http_msg_query_param(m, "x"), "1");
	assert_string_equal(co_http_msg_query_param(m, "name"), "J\xc3\xbcrgen M");
	assert_string_equal(co_http_msg_query_param(m, "flag"), "");
	assert_null(co_http_msg_query_param(m, "bad"));
	assert_string_equal(co_http_msg_header(m, "ACCEPT"), "text/plain, application/json");
	assert_string_equal(co_http_msg_header(m, "host"), "example");
	assert_string_equal(co_http_msg_header(m, "x-empty"), "");
	assert_null(co_http_msg_header(m, "missing"));
	assert_true(m->keep_alive);
	assert_false(m->expect_continue);
	assert_int_equal(m->body.len, 0);
	co_http_msg_free(m);
	co_http_parser_free(p);
}

static void test_post_split_byte_by_byte(void **state)
{
	static const char req[] = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n"
				  "Expect: 100-continue\r\n\r\nhello world";
	struct co_http_parser *p = co_http_parser_new(NULL);
	enum co_http_parse_event ev = CO_HTTP_PARSE_MORE;
	const struct co_http_msg *head = NULL;
	struct co_http_msg *m;
	size_t off = 0;

	/* One byte at a time: every split point of field names and values is hit. */
	while (off < strlen(req)) {
		off += co_http_parser_feed(p, req + off, 1, &ev);
		if (off > 0 && off < strlen(req))
			assert_true(co_http_parser_in_message(p));
		if (ev == CO_HTTP_PARSE_HEAD) {
			head = co_http_parser_msg(p);
			assert_non_null(head);
			assert_true(head->expect_continue);
			assert_int_equal(head->body.len, 0);
		}
		assert_int_not_equal(ev, CO_HTTP_PARSE_ERROR);
	}
	assert_non_null(head);
	assert_int_equal(ev, CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_string_equal(m->method, "POST");
	assert_int_equal(m->body.len, 11);
	assert_memory_equal(m->body.data, "hello world", 11);
	co_http_msg_free(m);
	co_http_parser_free(p);
}

static void test_chunked_body(void **state)
{
	static const char req[] = "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				  "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\n"
				  "Trailer: x\r\nTrailer-Two: y\r\n\r\n";
	struct co_http_parser *p = co_http_parser_new(NULL);
	struct co_http_msg *m;

	assert_int_equal(feed(p, req, strlen(req), 7, NULL, NULL), CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_int_equal(m->body.len, 11);
	assert_memory_equal(m->body.data, "hello world", 11);
	/* trailers are not mixed into the headers */
	assert_int_equal(m->n_headers, 1);
	assert_null(co_http_msg_header(m, "Trailer"));
	co_http_msg_free(m);
	co_http_parser_free(p);
}

static void test_pipelined(void **state)
{
	static const char req[] = "GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
				  "POST /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
				  "GET /three HTTP/1.1\r\nConnection: close\r\n\r\n";
	static const char *const paths[] = { "/one", "/two", "/three" };
	struct co_http_parser *p = co_http_parser_new(NULL);
	size_t off = 0;

	for (int i = 0; i < 3; i++) {
		struct co_http_msg *m;
		size_t used;

		assert_int_equal(feed(p, req + off, strlen(req) - off, 4096, &used, NULL),
				 CO_HTTP_PARSE_DONE);
		off += used;
		m = co_http_parser_take(p);
		assert_string_equal(m->path, paths[i]);
		assert_int_equal(m->keep_alive, i < 2);
		if (i == 1)
			assert_memory_equal(m->body.data, "abc", 3);
		co_http_msg_free(m);
	}
	assert_int_equal(off, strlen(req));
	co_http_parser_free(p);
}

static void test_header_limits(void **state)
{
	struct co_http_request_limits lim = { .max_header_bytes = 1024, .max_headers = 5 };
	struct co_http_parser *p = co_http_parser_new(&lim);
	struct co_buf b = CO_BUF_INIT;
	const char *reason;

	co_buf_puts(&b, "GET / HTTP/1.1\r\nX-Big: ");
	for (int i = 0; i < 2000; i++)
		co_buf_putc(&b, 'a');
	co_buf_puts(&b, "\r\n\r\n");
	assert_int_equal(feed(p, b.data, b.len, 100, NULL, NULL), CO_HTTP_PARSE_ERROR);
	assert_int_equal(co_http_parser_error(p, &reason), 431);
	assert_non_null(reason);
	/* errors are final */
	assert_int_equal(feed(p, "GET / HTTP/1.1\r\n\r\n", 18, 100, NULL, NULL),
			 CO_HTTP_PARSE_ERROR);
	co_http_parser_free(p);

	p = co_http_parser_new(&lim);
	co_buf_reset(&b);
	co_buf_puts(&b, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 6; i++)
		co_buf_printf(&b, "X-%d: v\r\n", i);
	co_buf_puts(&b, "\r\n");
	assert_int_equal(feed(p, b.data, b.len, 100, NULL, NULL), CO_HTTP_PARSE_ERROR);
	assert_int_equal(co_http_parser_error(p, NULL), 431);
	co_http_parser_free(p);

	/* a long URL counts too */
	p = co_http_parser_new(&lim);
	co_buf_reset(&b);
	co_buf_puts(&b, "GET /");
	for (int i = 0; i < 1100; i++)
		co_buf_putc(&b, 'u');
	co_buf_puts(&b, " HTTP/1.1\r\n\r\n");
	assert_int_equal(feed(p, b.data, b.len, 64, NULL, NULL), CO_HTTP_PARSE_ERROR);
	assert_int_equal(co_http_parser_error(p, NULL), 431);
	co_http_parser_free(p);
	co_buf_release(&b);
}

static void test_body_limits(void **state)
{
	struct co_http_request_limits lim = { .max_body_bytes = 10 };
	static const char cl[] = "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
	static const char ok[] = "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
	static const char chunked[] = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
				      "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n";
	struct co_http_parser *p = co_http_parser_new(&lim);
	struct co_http_msg *m;

	/* rejected on the announced length, before any body byte */
	assert_int_equal(feed(p, cl, strlen(cl), 1000, NULL, NULL), CO_HTTP_PARSE_ERROR);
	assert_int_equal(co_http_parser_error(p, NULL), 413);
	co_http_parser_free(p);

	p = co_http_parser_new(&lim);
	assert_int_equal(feed(p, ok, strlen(ok), 1000, NULL, NULL), CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_int_equal(m->body.len, 10);
	co_http_msg_free(m);
	co_http_parser_free(p);

	p = co_http_parser_new(&lim);
	assert_int_equal(feed(p, chunked, strlen(chunked), 3, NULL, NULL),
			 CO_HTTP_PARSE_ERROR);
	assert_int_equal(co_http_parser_error(p, NULL), 413);
	co_http_parser_free(p);
}

static void test_bad_input(void **state)
{
	static const char *const bad[] = {
		"BLAH\r\n\r\n",
		"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
		"GET /%zz HTTP/1.1\r\n\r\n",
		"GET /%00 HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET / HTTP/9.9x\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct co_http_parser *p = co_http_parser_new(NULL);

		assert_int_equal(feed(p, bad[i], strlen(bad[i]), 1000, NULL, NULL),
				 CO_HTTP_PARSE_ERROR);
		assert_int_equal(co_http_parser_error(p, NULL), 400);
		co_http_parser_free(p);
	}
}

static void test_versions_and_targets(void **state)
{
	static const char req[] = "GET http://example.com:8080/abs/p?q=1 HTTP/1.0\r\n\r\n"
				  "OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
	struct co_http_parser *p = co_http_parser_new(NULL);
	struct co_http_msg *m;
	size_t used;

	assert_int_equal(feed(p, req, strlen(req), 1000, &used, NULL), CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_string_equal(m->path, "/abs/p");
	assert_string_equal(m->query, "q=1");
	assert_int_equal(m->http_minor, 0);
	assert_false(m->keep_alive); /* HTTP/1.0 without keep-alive */
	co_http_msg_free(m);
	assert_int_equal(feed(p, req + used, strlen(req) - used, 1000, NULL, NULL),
			 CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_string_equal(m->method, "OPTIONS");
	assert_string_equal(m->path, "*");
	assert_true(m->keep_alive);
	co_http_msg_free(m);
	co_http_parser_free(p);
}

static void test_upgrade_stops(void **state)
{
	static const char req[] = "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\n"
				  "Upgrade: websocket\r\n\r\n\x81\x05hello";
	struct co_http_parser *p = co_http_parser_new(NULL);
	struct co_http_msg *m;
	size_t used;

	assert_int_equal(feed(p, req, sizeof(req) - 1, 1000, &used, NULL),
			 CO_HTTP_PARSE_DONE);
	m = co_http_parser_take(p);
	assert_true(m->upgrade);
	assert_false(m->keep_alive);
	co_http_msg_free(m);
	/* what follows is not HTTP: the parser refuses it */
	assert_int_equal(feed(p, req + used, sizeof(req) - 1 - used, 1000, NULL, NULL),
			 CO_HTTP_PARSE_ERROR);
	co_http_parser_free(p);
}

static void test_url_decode(void **state)
{
	char *s;

	s = co_http_url_decode("a%2Fb+c%41", 10, 0);
	assert_string_equal(s, "a/b+cA");
	free(s);
	s = co_http_url_decode("a%2fb+c", 7, 1);
	assert_string_equal(s, "a/b c");
	free(s);
	s = co_http_url_decode("abc", 2, 0);
	assert_string_equal(s, "ab");
	free(s);
	assert_null(co_http_url_decode("%4", 2, 0));
	assert_null(co_http_url_decode("%g1", 3, 0));
	assert_null(co_http_url_decode("a%00", 4, 0));
	assert_null(co_http_url_decode("ab%", 3, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_post_split_byte_by_byte),
		cmocka_unit_test(test_chunked_body),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_header_limits),
		cmocka_unit_test(test_body_limits),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_versions_and_targets),
		cmocka_unit_test(test_upgrade_stops),
		cmocka_unit_test(test_url_decode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
