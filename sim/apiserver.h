/*
 * ks_apiserver: the Kubernetes API endpoint of one simulated cluster.
 *
 * Serves, on its own port (plain HTTP on 127.0.0.1), the subset of the Kubernetes API
 * that kubectl and cutover use: /version, /healthz, /livez, /readyz, discovery, CRUD,
 * list, watch, server-side apply, merge and strategic merge patch on the standard
 * paths, with errors as Kubernetes Status objects. Every request except the health
 * endpoints needs "Authorization: Bearer <token>". Objects live in the cluster's
 * ks_store; which group/version/resources are served comes from its ks_registry.
 *
 * Faults (API error rate, API latency) and readiness are read on every request from
 * a struct the owner keeps updating (borrowed pointer).
 */
#ifndef KS_APISERVER_H
#define KS_APISERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"
#include "sim/resources.h"
#include "sim/store.h"

/* Per-cluster faults, set through the control API. */
struct ks_faults {
	double api_error_rate;   /* 0..1: share of API requests answered 500 */
	uint64_t api_latency_ms; /* added before answering each API request (unscaled) */
	bool ingress_down;       /* the ingress port answers 503 */
	double version_overhead; /* pods' CPU/memory factor (controllers); 0 = 1.0 */
};

/* Live cluster state the API server reads on each request (borrowed). */
struct ks_cluster_state {
	bool ready;              /* false: every API request gets 503 */
	struct ks_faults faults;
};

struct ks_apiserver_opts {
	int port;                /* 0 = ephemeral */
	const char *token;       /* required bearer token (copied) */
	const char *git_version; /* "v1.27.1+k3s1" (copied) */
	int major, minor;
	struct ks_store *store;  /* borrowed, outlives the server */
	struct ks_registry *reg; /* borrowed, outlives the server */
	const struct ks_cluster_state *state; /* borrowed, outlives the server */
	size_t max_body_bytes;   /* request bodies above get 413 Status; 0 = 3 MiB */
};

struct ks_apiserver;

/* Bind and serve. -EADDRINUSE etc. with err ("listen on '127.0.0.1:6443': ..."). */
int ks_apiserver_new(struct ks_apiserver **ret, uv_loop_t *loop,
		     const struct ks_apiserver_opts *opts, struct co_error *err);

int ks_apiserver_port(const struct ks_apiserver *srv);

/* Requests served so far (all answers, including errors). */
uint64_t ks_apiserver_requests(const struct ks_apiserver *srv);

/* Stop: ends open watches, closes the listener; cb (may be NULL) runs once everything
 * is closed and the server freed. */
void ks_apiserver_close(struct ks_apiserver *srv, void (*cb)(void *data), void *data);

#endif
