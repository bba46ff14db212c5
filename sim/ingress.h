/*
 * ks_ingress: the ingress port of one simulated cluster.
 *
 * Each cluster has a second HTTP port where its workloads are reached (routing by
 * Ingress objects and Service selectors, podinfo-like apps, /metrics). This module
 * owns that listener. It currently answers /healthz (200 "ok") and 404 for every
 * other path, and 503 for everything while the cluster's "ingress down" fault is set;
 * the workload and metrics handlers plug in through ks_ingress_route().
 */
#ifndef KS_INGRESS_H
#define KS_INGRESS_H

#include <uv.h>

#include "base/error.h"
#include "net/http-server.h"
#include "sim/apiserver.h"
#include "sim/store.h"

struct ks_ingress_opts {
	int port;                             /* 0 = ephemeral */
	struct ks_store *store;               /* borrowed, outlives the ingress */
	const struct ks_cluster_state *state; /* borrowed, outlives the ingress */
};

struct ks_ingress;

int ks_ingress_new(struct ks_ingress **ret, uv_loop_t *loop,
		   const struct ks_ingress_opts *opts, struct co_error *err);
int ks_ingress_port(const struct ks_ingress *ing);

/* Add a handler for method/pattern (see co_http_server_route()); it runs only while
 * the ingress is up. Routes added later are tried after the built-in /healthz. */
void ks_ingress_route(struct ks_ingress *ing, const char *method, const char *pattern,
		      co_http_handler handler, void *data);

/* The underlying server, for the controllers' fallback handler (apps, /metrics).
 * Borrowed until ks_ingress_close(). */
struct co_http_server *ks_ingress_http(struct ks_ingress *ing);

/* Close the listener; cb (may be NULL) runs once it is closed and freed. */
void ks_ingress_close(struct ks_ingress *ing, void (*cb)(void *data), void *data);

#endif
