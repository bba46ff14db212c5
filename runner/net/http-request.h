/*
 * HTTP/1.1 request parsing for the server, without sockets.
 *
 * A co_http_parser turns a byte stream from one connection into whole requests
 * (co_http_msg): request line, headers (repeated ones joined ", "), the target split
 * into raw path, decoded path and raw query, decoded query parameters, and the body
 * (Content-Length or chunked). It wraps http-parser and adds the limits an exposed
 * server needs: header bytes and count (431), body bytes (413), anything else malformed
 * (400).
 *
 * Feeding stops at two points so the caller stays in control of pipelined input:
 * after the headers of a request (so it can answer "Expect: 100-continue" before the
 * body arrives) and after a complete request (so the next pipelined request is not
 * parsed until the caller has answered this one). Unconsumed bytes stay with the
 * caller, who feeds them again.
 *
 * Memory: everything is bounded by the limits; nothing is retained between requests
 * except the parser itself.
 */
#ifndef CO_NET_HTTP_REQUEST_H
#define CO_NET_HTTP_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct co_http_header {
	char *name;   /* as sent (case preserved) */
	char *value;
};

/* One parsed request. All strings are owned by the message. */
struct co_http_msg {
	const char *method;           /* static string, "GET" */
	unsigned short http_major;
	unsigned short http_minor;
	int keep_alive;               /* the connection may carry another request */
	int upgrade;                  /* Upgrade/CONNECT: bytes after it are not HTTP */
	int expect_continue;          /* "Expect: 100-continue" on HTTP/1.1 */
	char *url;                    /* request target as sent */
	char *raw_path;               /* target without query, as sent */
	char *path;                   /* raw_path percent-decoded */
	char *query;                  /* raw query, "" if none */
	struct co_http_header *headers;
	size_t n_headers;
	struct co_http_header *params; /* decoded query parameters, in order */
	size_t n_params;
	struct co_buf body;
};

void co_http_msg_free(struct co_http_msg *msg);
/* Case-insensitive header lookup; borrowed until the message is freed, or NULL. */
const char *co_http_msg_header(const struct co_http_msg *msg, const char *name);
/* First decoded query parameter called name, or NULL. */
const char *co_http_msg_query_param(const struct co_http_msg *msg, const char *name);

struct co_http_request_limits {
	size_t max_header_bytes;      /* request line + headers; 0 = 16 KiB */
	size_t max_body_bytes;        /* 0 = 4 MiB */
	unsigned max_headers;         /* header lines; 0 = 100 */
};

enum co_http_parse_event {
	CO_HTTP_PARSE_MORE,   /* input consumed; no request complete yet (or none begun) */
	CO_HTTP_PARSE_HEAD,   /* headers of the current request complete, see _msg() */
	CO_HTTP_PARSE_DONE,   /* a whole request is ready, take it with _take() */
	CO_HTTP_PARSE_ERROR,  /* bad input, see co_http_parser_error(); final */
};

struct co_http_parser;

/* limits may be NULL for the defaults. Never fails (allocation aborts). */
struct co_http_parser *co_http_parser_new(const struct co_http_request_limits *limits);
void co_http_parser_free(struct co_http_parser *p);

/*
 * Parse up to len bytes; returns how many were consumed and sets *ret_event. The
 * caller keeps the rest and feeds it again after handling HEAD or DONE. After DONE the
 * request must be taken before feeding more. After ERROR every feed consumes nothing.
 * A zero len is a no-op (end of input is the caller's business).
 */
size_t co_http_parser_feed(struct co_http_parser *p, const char *data, size_t len,
			   enum co_http_parse_event *ret_event);

/* The request being parsed, valid after HEAD until it is taken; NULL before. */
const struct co_http_msg *co_http_parser_msg(const struct co_http_parser *p);

/* After DONE: the request (caller owns, free with co_http_msg_free()). The parser is
 * ready for the next request. NULL if no request is complete. */
struct co_http_msg *co_http_parser_take(struct co_http_parser *p);

/* Non-zero while bytes of a request have been seen but it is not complete. */
int co_http_parser_in_message(const struct co_http_parser *p);

/* After ERROR: the status to answer (400, 413 or 431) and a short reason
 * (static string) in *ret_reason if not NULL; 0 if there was no error. */
int co_http_parser_error(const struct co_http_parser *p, const char **ret_reason);

#endif
