/*
 * Cluster providers: what creates and deletes clusters. The pipeline only ever sees
 * this interface; `sim` (kubesim's control API, the embedded default), `k3d` (the k3d
 * CLI) and `exec` (any executable speaking the JSON contract in docs/providers.md:
 * EKS, GKE, AKS, Cluster API...) implement it.
 *
 * Cluster descriptions travel as JSON objects:
 *   {"name", "image", "version", "env", "location", "port",        (request)
 *    "kubeconfig": "<YAML text>", "ingress": "http://127.0.0.1:8080",
 *    "apiServer": "https://...", "state": "creating|ready|deleting"}  (answers)
 *
 * Async contract: if a call returns an error the callback never runs; otherwise it
 * runs exactly once, from the loop. create is idempotent for a cluster that already
 * exists with the same image (answers it as it is); delete of a missing cluster is
 * success with "existed": false, so cleanup and resume can repeat them safely.
 */
#ifndef CO_PROVIDERS_PROVIDER_H
#define CO_PROVIDERS_PROVIDER_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"

struct co_http_client;
struct co_provider;

enum {
	CO_PROVIDER_CAP_INGRESS_PORT = 1 << 0, /* honours a requested ingress port */
	CO_PROVIDER_CAP_LIST = 1 << 1,
	CO_PROVIDER_CAP_FAULTS = 1 << 2,       /* can inject faults (kubesim) */
};

struct co_provider_result {
	int status;            /* 0, -ENOENT (get of a missing cluster), or negative */
	struct co_error err;
	json_t *cluster;       /* get/create: the cluster; list: array; delete:
				* {"existed": bool}. Borrowed for the callback. */
};

typedef void (*co_provider_cb)(struct co_provider_result *res, void *data);

struct co_provider_ops {
	const char *name;
	unsigned caps;
	int (*create)(struct co_provider *p, const json_t *spec, co_provider_cb cb, void *data,
		      struct co_error *err);
	int (*remove)(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		      struct co_error *err);
	int (*get)(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		   struct co_error *err);
	int (*list)(struct co_provider *p, co_provider_cb cb, void *data,
		    struct co_error *err);
	void (*free)(struct co_provider *p);
};

/* Common part every provider embeds first. */
struct co_provider {
	const struct co_provider_ops *ops;
	uv_loop_t *loop;
	struct co_http_client *http;  /* borrowed */
	char *state_dir;
};

struct co_provider_opts {
	const char *name;         /* "sim" (default), "k3d", "exec" */
	const char *state_dir;    /* where kubeconfigs and provider state live */
	const char *sim_url;      /* sim: kubesim control URL (default: read from
				   * <state_dir>/kubesim/kubesim.url) */
	const char *exec_path;    /* exec: the plugin executable */
	uint64_t exec_timeout_ms; /* exec: deadline of one plugin run; 0 = 30 min for
				   * create and delete, 2 min for get and list */
	const char *k3d_path;     /* k3d: binary, default "k3d" from PATH */
};

/* Create a provider by name. -EINVAL with err for an unknown name or missing
 * option. */
int co_provider_new(struct co_provider **ret, uv_loop_t *loop, struct co_http_client *http,
		    const struct co_provider_opts *opts, struct co_error *err);
void co_provider_free(struct co_provider *p);

static inline int co_provider_create(struct co_provider *p, const json_t *spec,
				     co_provider_cb cb, void *data, struct co_error *err)
{
	return p->ops->create(p, spec, cb, data, err);
}

static inline int co_provider_delete(struct co_provider *p, const char *name,
				     co_provider_cb cb, void *data, struct co_error *err)
{
	return p->ops->remove(p, name, cb, data, err);
}

static inline int co_provider_get(struct co_provider *p, const char *name,
				  co_provider_cb cb, void *data, struct co_error *err)
{
	return p->ops->get(p, name, cb, data, err);
}

static inline int co_provider_list(struct co_provider *p, co_provider_cb cb, void *data,
				   struct co_error *err)
{
	return p->ops->list(p, cb, data, err);
}

/* 1 when name is a DNS-1123 label (at most 63 of a-z, 0-9, '-', not starting or
 * ending with '-'): what every provider accepts as a cluster name. */
int co_provider_name_valid(const char *name);

/* "rancher/k3s:v1.27.1-k3s1" -> "v1.27.1+k3s1"; "kindest/node:v1.29.2" -> "v1.29.2".
 * Returns a new string or NULL when the tag is not a Kubernetes version. */
char *co_provider_version_from_image(const char *image);

#endif
