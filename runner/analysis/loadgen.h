/*
 * co_loadgen: an HTTP/1.1 load generator (wrk-class) on libuv + http-parser.
 *
 * Each of opts.threads worker threads runs its own uv loop with its share of the
 * connections; each connection is a raw uv_tcp keep-alive socket sending one
 * prebuilt request at a time (no pipelining) and parsing the answer incrementally.
 * A connection the server closes is reopened.
 *
 * Two load models:
 *  - closed (rate == 0): every connection sends its next request as soon as the
 *    previous answer arrived; latency is measured from the send.
 *  - open (rate > 0): requests follow a fixed plan of rate requests/s in total,
 *    spread evenly over the connections (wrk2's model). Latency is measured from each
 *    request's planned send time, so a server stall that delays sending is charged to
 *    the requests it delayed (coordinated omission corrected); the latency from the
 *    actual send is kept too ("uncorrected").
 *
 * The run ends after duration_ms (requests still in flight are dropped, as wrk does),
 * or after exactly `requests` requests have completed or failed (count mode). A
 * warm-up period runs the same load first and is not counted.
 *
 * Async contract: co_loadgen_start() resolves the host on the caller's loop, then
 * starts the threads; if it returns 0, cb runs exactly once on the caller's loop when
 * every thread has finished, with 0, -ECANCELED after co_loadgen_cancel(), or a
 * negative code (resolution failure) with err filled. The result is valid from the
 * callback on until co_loadgen_free().
 */
#ifndef CO_ANALYSIS_LOADGEN_H
#define CO_ANALYSIS_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "analysis/histogram.h"
#include "base/error.h"

struct json_t;
struct co_loadgen;

struct co_loadgen_opts {
	const char *url;                 /* http://host[:port]/path?query (no TLS) */
	const char *method;              /* NULL = "GET" */
	const char *const *headers;      /* "Name: value" lines, n_headers of them */
	size_t n_headers;
	const char *host;                /* Host header override; NULL = from url */
	const char *content_type;        /* NULL = none (or hey's text/html if body) */
	const char *user_agent;          /* NULL = "cutover-loadgen" */
	const void *body;                /* request body, may be NULL */
	size_t body_len;
	unsigned connections;            /* 0 = 50 */
	unsigned threads;                /* 0 = 1; at most connections */
	uint64_t duration_ms;            /* run length; 0 = count mode */
	uint64_t requests;               /* count mode: exact number of requests */
	double rate;                     /* open model: requests/s in total; 0 = closed */
	uint64_t timeout_ms;             /* per request; 0 = 20 s (hey's default) */
	uint64_t warmup_ms;              /* uncounted warm-up before measuring */
};

enum co_loadgen_error_kind {
	CO_LOADGEN_ERR_CONNECT,
	CO_LOADGEN_ERR_READ,
	CO_LOADGEN_ERR_WRITE,
	CO_LOADGEN_ERR_TIMEOUT,
	CO_LOADGEN_ERR_MAX,
};

struct co_loadgen_result {
	int open_model;
	double target_rate;              /* opts.rate */
	uint64_t requests;               /* completed responses (any status) */
	uint64_t status[6];              /* [1]..[5]: 1xx..5xx; [0]: other codes */
	uint64_t errors[CO_LOADGEN_ERR_MAX];
	uint64_t errors_total;
	uint64_t bytes_read;             /* counted period only */
	uint64_t bytes_written;
	double duration_s;               /* measured period */
	double rps;                      /* requests / duration_s */
	/* latency in ns: corrected (from the planned time in the open model; from the
	 * send in the closed model) and uncorrected (always from the send) */
	struct co_histogram *latency;
	struct co_histogram *latency_uncorrected;
	uint64_t *per_second;            /* completed responses in each second */
	size_t n_seconds;
};

/* Validate opts and build the request; copies everything it needs. Returns 0 or
 * -EINVAL with err filled ("url 'https://x': only http:// is supported"). */
int co_loadgen_new(struct co_loadgen **ret_lg, const struct co_loadgen_opts *opts,
		   struct co_error *err);
void co_loadgen_free(struct co_loadgen *lg);   /* takes NULL; not while running */

typedef void (*co_loadgen_cb)(struct co_loadgen *lg, int status,
			      const struct co_error *err, void *data);
int co_loadgen_start(struct co_loadgen *lg, uv_loop_t *loop, co_loadgen_cb cb,
		     void *data, struct co_error *err);
/* Stop early; cb runs with -ECANCELED and the partial result. No-op when idle. */
void co_loadgen_cancel(struct co_loadgen *lg);

/* Borrowed until co_loadgen_free(); complete once cb ran. */
const struct co_loadgen_result *co_loadgen_result(const struct co_loadgen *lg);

/* The result as a new JSON object (caller owns). Latencies in milliseconds. */
struct json_t *co_loadgen_result_json(const struct co_loadgen_result *r);
/* A hey/wrk-like human summary. */
void co_loadgen_print_summary(const struct co_loadgen_result *r, FILE *out);

/* Blocking convenience for the CLI and tests: a private loop, start, run, close.
 * Returns the callback's status. */
int co_loadgen_run(struct co_loadgen *lg, struct co_error *err);

#endif
