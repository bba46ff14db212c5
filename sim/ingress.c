/*
 * The ingress listener of a simulated cluster (contract in ingress.h).
 *
 * Requests pass a gate first: while the "ingress down" fault is set every request gets
 * 503, as if the cluster's load balancer had lost its backends. Every route registered
 * with ks_ingress_route() is wrapped by the gate, so a workload handler never sees a
 * request during an outage.
 */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "sim/ingress.h"

struct ks_ingress {
	struct co_http_server *http;
	struct ks_store *store;
	const struct ks_cluster_state *state;
	struct gated *gates; /* registered routes, freed with the ingress */
	void (*close_cb)(void *data);
	void *close_data;
};

/* Wraps each registered route with the outage gate. */
struct gated {
	struct ks_ingress *ing;
	co_http_handler handler;
	void *data;
	struct gated *next;
};

static bool down(struct ks_ingress *ing, struct co_http_req *req)
{
	if (!ing->state->faults.ingress_down)
		return false;
	co_http_respond_text(req, 503, "ingress unavailable\n");
	return true;
}

static void healthz(struct co_http_req *req, void *data)
{
	struct ks_ingress *ing = data;
	if (!down(ing, req))
		co_http_respond_text(req, 200, "ok");
}

static void not_found(struct co_http_req *req, void *data)
{
	struct ks_ingress *ing = data;
	if (!down(ing, req))
		co_http_respond_text(req, 404, "404 page not found\n");
}

static void gated_handler(struct co_http_req *req, void *data)
{
	struct gated *g = data;
	if (!down(g->ing, req))
		g->handler(req, g->data);
}

int ks_ingress_new(struct ks_ingress **ret, uv_loop_t *loop,
		   const struct ks_ingress_opts *opts, struct co_error *err)
{
	struct ks_ingress *ing = co_calloc(1, sizeof(*ing));
	struct co_http_server_opts hopts = { .host = "127.0.0.1", .port = opts->port };
	int rc = co_http_server_new(&ing->http, loop, &hopts, err);
	if (rc < 0) {
		free(ing);
		return rc;
	}
	ing->store = opts->store;
	ing->state = opts->state;
	co_http_server_route(ing->http, "GET", "/healthz", healthz, ing);
	co_http_server_fallback(ing->http, not_found, ing);
	*ret = ing;
	return 0;
}

struct co_http_server *ks_ingress_http(struct ks_ingress *ing)
{
	return ing->http;
}

int ks_ingress_port(const struct ks_ingress *ing)
{
	return co_http_server_port(ing->http);
}

void ks_ingress_route(struct ks_ingress *ing, const char *method, const char *pattern,
		      co_http_handler handler, void *data)
{
	struct gated *g = co_calloc(1, sizeof(*g));
	g->ing = ing;
	g->handler = handler;
	g->data = data;
	g->next = ing->gates;
	ing->gates = g;
	co_http_server_route(ing->http, method, pattern, gated_handler, g);
}

static void closed(void *data)
{
	struct ks_ingress *ing = data;
	void (*cb)(void *) = ing->close_cb;
	void *cb_data = ing->close_data;
	while (ing->gates) {
		struct gated *g = ing->gates;
		ing->gates = g->next;
		free(g);
	}
	free(ing);
	if (cb)
		cb(cb_data);
}

void ks_ingress_close(struct ks_ingress *ing, void (*cb)(void *data), void *data)
{
	ing->close_cb = cb;
	ing->close_data = data;
	co_http_server_close(ing->http, closed, ing);
}
