/*
 * An asynchronous HTTP client: libcurl's multi-socket API driven by libuv polls and one
 * uv timer, so any number of requests (Kubernetes watches, Prometheus queries,
 * webhooks) progress concurrently on the caller's loop.
 *
 * Async contract: if co_http_request() returns an error the callback never runs;
 * otherwise it runs exactly once with the response. co_http_cancel() makes the
 * callback run with status -ECANCELED (from the loop, never re-entrantly from inside
 * co_http_cancel()).
 *
 * Integration notes (libcurl docs, multi-uv example): poll contexts are freed only in
 * their uv close callback; CURL_CSELECT_ERR is passed when a poll reports an error;
 * curl_multi_socket_action() always gets a valid running-handles pointer.
 */
#ifndef CO_NET_HTTP_CLIENT_H
#define CO_NET_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"

struct co_http_client;
struct co_http_call;

struct co_http_response {
	int status;                  /* 0 on success of the transfer, or negative: -ETIMEDOUT
				      * (deadline or connect timeout), -ECONNREFUSED,
				      * -ECONNRESET and other socket errnos (-ENOENT for a
				      * missing unix socket), -EHOSTUNREACH (name not
				      * resolved), -ECANCELED, -EPROTO (TLS, bad response),
				      * -E2BIG (body over max_body), -EIO (anything else,
				      * e.g. a body cut short) */
	long code;                   /* HTTP status code, 0 when no response arrived */
	struct co_buf headers;       /* raw header block of the final response */
	struct co_buf body;          /* whole body unless on_data was set */
	struct co_error err;         /* filled when status < 0: "GET 'url': ..." */
	uint64_t elapsed_ms;
};

/* Returns one header's value from a response ("Content-Type", case-insensitive), copied
 * into a new string (caller frees), or NULL. */
char *co_http_response_header(const struct co_http_response *res, const char *name);

/* Parse the body as JSON; new reference in *ret, -EINVAL with err on bad JSON. */
int co_http_response_json(const struct co_http_response *res, json_t **ret,
			  struct co_error *err);

/* Response borrowed for the duration of the callback. */
typedef void (*co_http_cb)(struct co_http_response *res, void *data);
/* Streaming body: called for each piece as it arrives. Return 0 to continue, non-zero
 * to abort the transfer (the final callback then reports -ECANCELED). */
typedef int (*co_http_data_cb)(const char *chunk, size_t len, void *data);

struct co_http_req_opts {
	const char *method;          /* NULL = "GET" (or "POST" when body is set) */
	const char *url;
	const char *const *headers;  /* "Name: value" entries, NULL-terminated; may be NULL */
	const void *body;            /* copied; may be NULL */
	size_t body_len;
	const char *bearer_token;    /* adds "Authorization: Bearer ..." (never logged) */
	const char *basic_user;      /* with basic_password: HTTP basic auth */
	const char *basic_password;
	uint64_t timeout_ms;         /* whole request; 0 = none (watches) */
	uint64_t connect_timeout_ms; /* 0 = 10 s */
	size_t max_body;             /* cap on the accumulated body; 0 = 64 MiB */
	co_http_data_cb on_data;     /* streaming; body not accumulated when set */
	/* TLS: PEM blobs in memory (kubeconfig's *-data fields, decoded) */
	const char *ca_pem;
	size_t ca_pem_len;
	const char *cert_pem;
	size_t cert_pem_len;
	const char *key_pem;
	size_t key_pem_len;
	int insecure_skip_verify;    /* only when explicitly asked for */
	const char *unix_socket;     /* connect through a unix socket instead */
};

int co_http_client_new(struct co_http_client **ret_client, uv_loop_t *loop,
		       struct co_error *err);

/* Cancels outstanding calls (their callbacks run with -ECANCELED), closes handles and
 * frees the client once they are closed; cb (may be NULL) runs then. */
typedef void (*co_http_client_close_cb)(void *data);
void co_http_client_close(struct co_http_client *client, co_http_client_close_cb cb,
			  void *data);

/* Start a request. *ret_call (may be NULL) is valid until the callback has run. */
int co_http_request(struct co_http_client *client, struct co_http_call **ret_call,
		    const struct co_http_req_opts *opts, co_http_cb cb, void *data,
		    struct co_error *err);

/* Convenience: method + url + JSON body (borrowed, serialised compactly) with
 * Content-Type and Accept set to application/json. Other options from base (may be
 * NULL). */
int co_http_request_json(struct co_http_client *client, struct co_http_call **ret_call,
			 const char *method, const char *url, const json_t *body,
			 const struct co_http_req_opts *base, co_http_cb cb, void *data,
			 struct co_error *err);

void co_http_cancel(struct co_http_call *call);

#endif
