/*
 * libFuzzer target for the HTTP request parser (runner/net/http-request.c).
 *
 * The first input byte chooses how the rest is split into feeds (1 byte at a time up
 * to whole), the way a connection's reads split a stream; the rest is fed as one
 * connection: every complete request is taken, inspected and freed, and feeding goes
 * on with the unconsumed bytes, so pipelined sequences are exercised. Small limits
 * make the 413/431 paths reachable. Invariants are checked with abort() so libFuzzer
 * reports them as crashes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http-request.h"
#include "net/http-server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond))                                                          \
			abort();                                                      \
	} while (0)

static void inspect(const struct co_http_msg *m, const struct co_http_request_limits *lim)
{
	CHECK(m->method && m->url && m->raw_path && m->path && m->query);
	CHECK(m->body.len <= lim->max_body_bytes);
	CHECK(m->n_headers <= lim->max_headers);
	CHECK(strlen(m->path) <= strlen(m->raw_path));
	for (size_t i = 0; i < m->n_headers; i++) {
		CHECK(m->headers[i].name && m->headers[i].value);
		/* joined: the first lookup finds this very entry */
		CHECK(co_http_msg_header(m, m->headers[i].name) == m->headers[i].value);
	}
	for (size_t i = 0; i < m->n_params; i++)
		CHECK(co_http_msg_query_param(m, m->params[i].name) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct co_http_request_limits lim = {
		.max_header_bytes = 2048,
		.max_body_bytes = 4096,
		.max_headers = 32,
	};
	struct co_http_parser *p;
	const char *in;
	size_t len, off = 0, step;
	int requests = 0;

	if (size < 1)
		return 0;
	step = data[0] == 0 ? (size_t)-1 : data[0];
	in = (const char *)data + 1;
	len = size - 1;

	/* the decoder on raw bytes, both flavours */
	for (int plus = 0; plus < 2; plus++) {
		char *d = co_http_url_decode(in, len, plus);

		CHECK(!d || strlen(d) <= len);
		free(d);
	}

	p = co_http_parser_new(&lim);
	while (off < len) {
		enum co_http_parse_event ev;
		size_t chunk = len - off < step ? len - off : step;
		size_t n = co_http_parser_feed(p, in + off, chunk, &ev);

		CHECK(n <= chunk);
		off += n;
		if (ev == CO_HTTP_PARSE_ERROR) {
			int status = co_http_parser_error(p, NULL);

			CHECK(status == 400 || status == 413 || status == 431);
			break;
		}
		if (ev == CO_HTTP_PARSE_HEAD) {
			const struct co_http_msg *m = co_http_parser_msg(p);

			CHECK(m != NULL);
			CHECK(m->path != NULL);
			continue;
		}
		if (ev == CO_HTTP_PARSE_DONE) {
			struct co_http_msg *m = co_http_parser_take(p);

			CHECK(m != NULL);
			inspect(m, &lim);
			requests++;
			co_http_msg_free(m);
			continue;
		}
		/* MORE: the whole chunk was consumed */
		CHECK(n == chunk);
	}
	co_http_parser_free(p);
	return requests >= 0 ? 0 : 1;
}
