/*
 * The asynchronous Prometheus client: builds the form-encoded parameters of a query,
 * sends them with GET (short) or POST (long) through the shared HTTP client, and
 * turns the answer into a result with co_prom_parse_response().
 *
 * A query object lives from the request until its callback has run; it owns copies
 * of everything it needs, so the client may be freed while queries are in flight.
 * The per-query deadline is enforced twice: as the HTTP transfer timeout (the one
 * that counts) and as Prometheus's own `timeout` parameter, so the server stops
 * evaluating a query nobody waits for any more.
 */
#include "clients/prom.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "net/http-client.h"

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_POST_THRESHOLD 1024

struct co_prom_client {
	struct co_http_client *http;
	char *url;             /* without trailing '/' */
	char *bearer_token;
	char *basic_user;
	char *basic_password;
	uint64_t timeout_ms;
	size_t post_threshold;
};

struct co_prom_query {
	struct co_http_call *call;
	co_prom_cb cb;
	void *data;
	char *desc;            /* "query 'up'" for error messages, shortened */
	uint64_t timeout_ms;
};

static void form_escape(struct co_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~') {
			co_buf_putc(b, (char)c);
		} else {
			co_buf_putc(b, '%');
			co_buf_putc(b, hex[c >> 4]);
			co_buf_putc(b, hex[c & 15]);
		}
	}
}

static char *dup_or_null(const char *s)
{
	return s ? co_strdup(s) : NULL;
}

int co_prom_client_new(struct co_prom_client **ret_client, struct co_http_client *http,
		       const struct co_prom_opts *opts, struct co_error *err)
{
	struct co_prom_client *c;
	size_t len;

	if (!opts || !opts->url || (strncmp(opts->url, "http://", 7) != 0 &&
				    strncmp(opts->url, "https://", 8) != 0))
		return co_error_set(err, -EINVAL, "prometheus url '%s' is not http(s)",
				    opts && opts->url ? opts->url : "");
	c = co_calloc(1, sizeof(*c));
	c->http = http;
	c->url = co_strdup(opts->url);
	len = strlen(c->url);
	while (len > 0 && c->url[len - 1] == '/')
		c->url[--len] = '\0';
	c->bearer_token = dup_or_null(opts->bearer_token);
	c->basic_user = dup_or_null(opts->basic_user);
	c->basic_password = dup_or_null(opts->basic_password);
	c->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	c->post_threshold = opts->post_threshold ? opts->post_threshold
						 : DEFAULT_POST_THRESHOLD;
	*ret_client = c;
	return 0;
}

void co_prom_client_free(struct co_prom_client *client)
{
	if (!client)
		return;
	free(client->url);
	if (client->bearer_token)
		memset(client->bearer_token, 0, strlen(client->bearer_token));
	free(client->bearer_token);
	free(client->basic_user);
	if (client->basic_password)
		memset(client->basic_password, 0, strlen(client->basic_password));
	free(client->basic_password);
	free(client);
}

static void query_free(struct co_prom_query *q)
{
	free(q->desc);
	free(q);
}

static void on_response(struct co_http_response *res, void *data)
{
	struct co_prom_query *q = data;
	struct co_prom_result *result = NULL;
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (res->status == -ETIMEDOUT) {
		rc = co_error_set(&err, -ETIMEDOUT, "%s: deadline of %llu ms exceeded", q->desc,
				  (unsigned long long)q->timeout_ms);
	} else if (res->status < 0) {
		co_error_copy(&err, &res->err);
		err.code = res->status;
		if (!err.msg[0])
			co_error_set(&err, res->status, "%s", co_error_str(&res->err));
		co_error_prefix(&err, "%s", q->desc);
		rc = res->status;
	} else {
		rc = co_prom_parse_response(&result, res->code, res->body.data ? res->body.data
									       : "",
					    res->body.len, &err);
		if (rc < 0)
			co_error_prefix(&err, "%s", q->desc);
	}
	q->cb(rc, rc < 0 ? NULL : result, &err, q->data);
	query_free(q);
}

static int start(struct co_prom_client *c, struct co_prom_query **ret_query,
		 const char *endpoint, const char *promql, struct co_buf *params,
		 uint64_t timeout_ms, co_prom_cb cb, void *data, struct co_error *err)
{
	static const char *const form_headers[] = {
		"Content-Type: application/x-www-form-urlencoded",
		"Accept: application/json",
		NULL,
	};
	static const char *const get_headers[] = { "Accept: application/json", NULL };
	struct co_prom_query *q = co_calloc(1, sizeof(*q));
	struct co_buf url = CO_BUF_INIT;
	struct co_http_req_opts o = { 0 };
	char tbuf[32];
	int rc;

	q->cb = cb;
	q->data = data;
	q->timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms;
	q->desc = co_asprintf("query '%.80s%s'", promql, strlen(promql) > 80 ? "..." : "");
	/* Prometheus's own evaluation timeout, a little under ours so its error wins;
	 * plain seconds, because its duration syntax has no fractions ("1.5s"). */
	snprintf(tbuf, sizeof(tbuf), "%.3f",
		 q->timeout_ms > 200 ? (double)(q->timeout_ms - 100) / 1000
				     : (double)q->timeout_ms / 1000);
	co_buf_puts(params, "&timeout=");
	form_escape(params, tbuf);

	co_buf_printf(&url, "%s%s", c->url, endpoint);
	o.timeout_ms = q->timeout_ms;
	o.bearer_token = c->bearer_token;
	o.basic_user = c->basic_user;
	o.basic_password = c->basic_password;
	o.max_body = CO_PROM_MAX_BODY;
	if (strlen(promql) > c->post_threshold) {
		o.method = "POST";
		o.headers = form_headers;
		o.body = params->data;
		o.body_len = params->len;
	} else {
		o.method = "GET";
		o.headers = get_headers;
		co_buf_putc(&url, '?');
		co_buf_append(&url, params->data, params->len);
	}
	o.url = co_buf_cstr(&url);
	rc = co_http_request(c->http, &q->call, &o, on_response, q, err);
	co_buf_release(&url);
	if (rc < 0) {
		query_free(q);
		return rc;
	}
	if (ret_query)
		*ret_query = q;
	return 0;
}

int co_prom_query(struct co_prom_client *client, struct co_prom_query **ret_query,
		  const char *promql, double t, uint64_t timeout_ms, co_prom_cb cb,
		  void *data, struct co_error *err)
{
	struct co_buf p = CO_BUF_INIT;
	int rc;

	co_buf_puts(&p, "query=");
	form_escape(&p, promql);
	if (!isnan(t))
		co_buf_printf(&p, "&time=%.3f", t);
	rc = start(client, ret_query, "/api/v1/query", promql, &p, timeout_ms, cb, data,
		   err);
	co_buf_release(&p);
	return rc;
}

int co_prom_query_range(struct co_prom_client *client, struct co_prom_query **ret_query,
			const char *promql, double start_t, double end_t, double step,
			uint64_t timeout_ms, co_prom_cb cb, void *data,
			struct co_error *err)
{
	struct co_buf p = CO_BUF_INIT;
	int rc;

	if (!(step > 0) || !(end_t >= start_t))
		return co_error_set(err, -EINVAL,
				    "range query needs start <= end and a positive step");
	co_buf_puts(&p, "query=");
	form_escape(&p, promql);
	co_buf_printf(&p, "&start=%.3f&end=%.3f&step=%.3f", start_t, end_t, step);
	rc = start(client, ret_query, "/api/v1/query_range", promql, &p, timeout_ms, cb,
		   data, err);
	co_buf_release(&p);
	return rc;
}

void co_prom_cancel(struct co_prom_query *query)
{
	if (query && query->call)
		co_http_cancel(query->call);
}
