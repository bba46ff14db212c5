/*
 * ks_cluster: one simulated Kubernetes cluster.
 *
 * Owns the cluster's object store (persisted as DIR/<name>/objects.json), its
 * API-resource registry (kept in sync with the CRDs in the store), the API server
 * (HTTPS on the public API port through a ks_tls_proxy, certificate in
 * DIR/<name>/tls.crt), the ingress listener, the kubeconfig file
 * (DIR/<name>/kubeconfig, mode 0600, https server with certificate-authority-data,
 * bearer token, context "kubesim-<name>"), the injected faults and the readiness clock: a new
 * cluster answers 503 on its API for a few (scaled) seconds, like one booting.
 */
#ifndef KS_CLUSTER_H
#define KS_CLUSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"
#include "sim/apiserver.h"
#include "sim/store.h"

#define KS_CLUSTER_BOOT_MS 3000 /* unscaled time a new cluster takes to become ready */

struct ks_cluster;

struct ks_cluster_opts {
	const char *state_dir;   /* the cluster's files go to state_dir/<name> */
	const char *name;        /* DNS-1123 label */
	const char *image;       /* "rancher/k3s:v1.27.1-k3s1" */
	int api_port;            /* 0 = ephemeral */
	int ingress_port;        /* 0 = ephemeral */
	const char *token;       /* NULL = generate a new one */
	bool ready;              /* restored cluster that was ready: no boot delay */
	int64_t created_ms;      /* wall clock; 0 = now */
	struct ks_faults faults;
	/* Called (may be NULL) when the cluster's persisted description changes
	 * (readiness reached). */
	void (*on_change)(struct ks_cluster *c, void *data);
	void *data;
};

/* Create (or restore) and start serving. -EINVAL for a bad name or image, the
 * listener's error for a busy port, -EIO for state files; err filled. */
int ks_cluster_new(struct ks_cluster **ret, uv_loop_t *loop,
		   const struct ks_cluster_opts *opts, struct co_error *err);

const char *ks_cluster_name(const struct ks_cluster *c);
struct ks_store *ks_cluster_store(struct ks_cluster *c);
int ks_cluster_api_port(const struct ks_cluster *c);
int ks_cluster_ingress_port(const struct ks_cluster *c);
bool ks_cluster_ready(const struct ks_cluster *c);

/* Replace the faults. */
void ks_cluster_set_faults(struct ks_cluster *c, const struct ks_faults *f);

/* Description: name, image, version, apiPort, ingressPort, server, kubeconfig, ready,
 * status, createdAt, faults, objects; with_secrets adds the token (for the state file
 * only, never for the control API). New reference. */
json_t *ks_cluster_describe(const struct ks_cluster *c, bool with_secrets);

/* Faults from a JSON object {apiErrorRate, apiLatencyMs, ingressDown}, starting from
 * base (fields absent keep base's value). -EINVAL with err for bad values. */
int ks_faults_from_json(struct ks_faults *ret, const struct ks_faults *base,
			const json_t *j, struct co_error *err);
json_t *ks_faults_to_json(const struct ks_faults *f);

/* Stop serving, flush the store (or, with remove_files, delete the cluster's
 * directory), free; cb (may be NULL) runs when everything is closed. */
void ks_cluster_close(struct ks_cluster *c, bool remove_files, void (*cb)(void *data),
		      void *data);

#endif
