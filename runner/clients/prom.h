/*
 * A Prometheus HTTP API client: instant queries (/api/v1/query) and range queries
 * (/api/v1/query_range) on the asynchronous HTTP client, results parsed into plain C
 * structs.
 *
 * Results: vector, matrix, scalar and string results are all represented by
 * struct co_prom_result; sample values keep Prometheus's special values ("NaN",
 * "+Inf", "-Inf" become NAN, INFINITY, -INFINITY). A successful query whose result
 * holds no samples is not an error: co_prom_result_no_data() says so, and callers
 * decide what "no data" means to them. Native histogram samples are skipped (the
 * judge works on float series).
 *
 * Errors: Prometheus's error bodies ({"status":"error","errorType":"bad_data",
 * "error":"..."}, as sent with 400, 422 and 503) are surfaced verbatim in err as
 * "prometheus 400 bad_data: <error>"; the code maps the errorType: bad_data ->
 * -EINVAL, execution -> -EPROTO, timeout -> -ETIMEDOUT, canceled -> -ECANCELED,
 * unavailable -> -EAGAIN, others -> -EIO. Other non-2xx answers (a proxy's HTML
 * page) give -EIO with the status and the start of the body.
 *
 * Async contract: if co_prom_query*() returns an error the callback never runs;
 * otherwise it runs exactly once, with status 0 and a result, or a negative status
 * and err (-ETIMEDOUT when the per-query deadline passed, -ECANCELED after
 * co_prom_cancel()). Long queries are sent as a form POST (same endpoint), short ones
 * as GET, so URLs stay within proxies' limits.
 */
#ifndef CO_CLIENTS_PROM_H
#define CO_CLIENTS_PROM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct co_http_client;

enum co_prom_type {
	CO_PROM_VECTOR,
	CO_PROM_MATRIX,
	CO_PROM_SCALAR,
	CO_PROM_STRING,
};

struct co_prom_point {
	double t;   /* unix seconds */
	double v;   /* may be NAN or +-INFINITY */
};

struct co_prom_series {
	json_t *labels;               /* object: label name -> string; owned */
	struct co_prom_point *points; /* one for a vector, ascending t for a matrix */
	size_t n_points;
};

struct co_prom_result {
	enum co_prom_type type;
	struct co_prom_series *series;   /* vector and matrix */
	size_t n_series;
	struct co_prom_point scalar;     /* scalar (and the time of a string) */
	char *string;                    /* string result; owned */
	json_t *warnings;                /* array of strings, or NULL; owned */
};

/* Bounds on untrusted answers. */
#define CO_PROM_MAX_SERIES 100000
#define CO_PROM_MAX_POINTS 10000000  /* over all series */
#define CO_PROM_MAX_BODY (256u << 20)

/* "vector", "matrix", "scalar", "string". */
const char *co_prom_type_name(enum co_prom_type type);

/* True when the result holds no sample at all (empty vector or matrix, or only
 * series without points). Scalars and strings always hold data. */
int co_prom_result_no_data(const struct co_prom_result *res);

void co_prom_result_free(struct co_prom_result *res);

/*
 * Parse an HTTP answer of the query API. http_code is the response status. On
 * success *ret_res is a new result (free with co_prom_result_free()); on failure see
 * the error mapping above, *ret_res untouched.
 */
int co_prom_parse_response(struct co_prom_result **ret_res, long http_code,
			   const char *body, size_t len, struct co_error *err);

/* Parse one sample value string ("1.5", "NaN", "+Inf", "-Inf"); 0 or -EINVAL. */
int co_prom_parse_value(const char *s, double *ret_v);

/* ---- the asynchronous client ---- */

struct co_prom_client;
struct co_prom_query;

struct co_prom_opts {
	const char *url;              /* base URL, e.g. "http://127.0.0.1:9090" (a path
				       * prefix is kept); copied */
	uint64_t timeout_ms;          /* default per-query deadline; 0 = 30 s */
	const char *bearer_token;     /* optional; copied; never logged */
	const char *basic_user;       /* optional basic auth; copied */
	const char *basic_password;
	size_t post_threshold;        /* queries longer than this are POSTed; 0 = 1024 */
};

/* http is borrowed and must outlive the client and its queries. */
int co_prom_client_new(struct co_prom_client **ret_client, struct co_http_client *http,
		       const struct co_prom_opts *opts, struct co_error *err);
/* Outstanding queries keep running (they hold what they need); NULL is fine. */
void co_prom_client_free(struct co_prom_client *client);

/* res: ownership passes to the callback (free with co_prom_result_free()); NULL when
 * status < 0. err: borrowed for the callback, filled when status < 0. */
typedef void (*co_prom_cb)(int status, struct co_prom_result *res,
			   const struct co_error *err, void *data);

/* Instant query at time t (unix seconds; NAN = the server's now). timeout_ms 0 =
 * the client's default. *ret_query (may be NULL) is valid until the callback ran. */
int co_prom_query(struct co_prom_client *client, struct co_prom_query **ret_query,
		  const char *promql, double t, uint64_t timeout_ms, co_prom_cb cb,
		  void *data, struct co_error *err);

/* Range query over [start, end] (unix seconds) every step seconds (> 0). */
int co_prom_query_range(struct co_prom_client *client, struct co_prom_query **ret_query,
			const char *promql, double start, double end, double step,
			uint64_t timeout_ms, co_prom_cb cb, void *data,
			struct co_error *err);

/* The callback then runs with -ECANCELED (from the loop, not from inside this call). */
void co_prom_cancel(struct co_prom_query *query);

#endif
