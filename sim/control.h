/*
 * ks_control: the kubesim process's control API and its fleet of clusters.
 *
 * JSON over HTTP on the --control address:
 *   POST   /clusters               {name, image, apiPort?, ingressPort?} -> 201 cluster
 *   GET    /clusters               {"clusters": [cluster...]}
 *   GET    /clusters/{name}        cluster
 *   DELETE /clusters/{name}        {"deleted": name}; the cluster's files are removed
 *   POST   /clusters/{name}/faults {apiErrorRate?, apiLatencyMs?, ingressDown?} -> faults
 *   GET    /healthz                "ok"
 * Errors are {"error": "..."} with 400 (bad body), 404 (no such cluster), 409 (exists,
 * or a port in use), 422 (invalid name or image).
 *
 * State: DIR/kubesim.json lists the clusters (name, image, ports, token, readiness,
 * faults), written atomically on every change; each cluster keeps its objects and
 * kubeconfig under DIR/<name>/. Starting on an existing state dir restores every
 * cluster on the same ports with the same token. DIR/kubesim.url holds the control
 * URL.
 */
#ifndef KS_CONTROL_H
#define KS_CONTROL_H

#include <uv.h>

#include "base/error.h"

struct ks_control_opts {
	const char *state_dir; /* created if missing */
	const char *listen;    /* "127.0.0.1:PORT" (PORT 0 = ephemeral) */
};

struct ks_control;

/* Load state, restore clusters, start the control API, write DIR/kubesim.url. A
 * cluster that cannot be restored (port taken) is reported in err and the others keep
 * running: returns 0 then, with err->code set. */
int ks_control_new(struct ks_control **ret, uv_loop_t *loop,
		   const struct ks_control_opts *opts, struct co_error *err);

/* "http://127.0.0.1:PORT" */
const char *ks_control_url(const struct ks_control *ctl);

/* Stop everything, flushing every store; cb (may be NULL) runs when all is closed. */
void ks_control_close(struct ks_control *ctl, void (*cb)(void *data), void *data);

#endif
