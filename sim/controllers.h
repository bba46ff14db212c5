/*
 * ks_controllers: everything that makes a simulated cluster behave like a live one.
 *
 * One ks_controllers runs per virtual cluster, on the process loop, next to that
 * cluster's object store and API server. It owns:
 *   - Flux source-controller (GitRepository) and kustomize-controller (Kustomization),
 *     plus HelmRepository/HelmRelease acceptance (marked Ready, simulated);
 *   - the Deployment controller and the in-process pods it runs;
 *   - the cluster's ingress: every request on ctx->ingress that no other route took is
 *     routed (Ingress objects, else Host "<service>.<namespace>") to a simulated pod,
 *     and GET /metrics answers in Prometheus text format;
 *   - Flagger (Canary).
 * Controllers react to store watches (ks_store_watch) and timers. Every interval and
 * delay taken from an object (Flux intervals, Flagger analysis intervals, pod start
 * delays) is multiplied by ctx->time_scale.
 *
 * Threading: single-threaded on ctx->loop. libgit2 work runs on the uv thread pool
 * through the git client; its callbacks come back on the loop.
 */
#ifndef KS_CONTROLLERS_H
#define KS_CONTROLLERS_H

#include <stdbool.h>
#include <uv.h>

#include "base/error.h"

struct ks_store;
struct co_http_server;
struct ks_controllers;

/* What an apiVersion + kind is served as by a cluster. */
struct ks_gvr {
	char group[128];    /* "" for core */
	char version[64];   /* "v1" */
	char resource[128]; /* lowercase plural, "deployments" */
	bool namespaced;
};

/*
 * Resolve apiVersion/kind the way the cluster's API server would: 0 and *ret filled,
 * or -ENOENT with err "no matches for kind \"X\" in version \"Y\"" for kinds it does
 * not serve (including removed apiVersions). data is ctx->resolve_data.
 */
typedef int (*ks_resolve_fn)(void *data, const char *api_version, const char *kind,
			     struct ks_gvr *ret, struct co_error *err);

struct ks_cluster_ctx {
	uv_loop_t *loop;
	struct ks_store *store;		/* borrowed; outlives the controllers */
	const char *name;		/* cluster name */
	const char *state_dir;		/* per-cluster dir (git caches, checkouts) */
	const char *version;		/* "v1.27.1+k3s1" */
	struct co_http_server *ingress; /* borrowed; the controllers install the
					 * fallback handler and GET /metrics */
	double time_scale;		/* <= 0: co_time_scale() */
	ks_resolve_fn resolve;		/* NULL: a built-in table of common kinds */
	void *resolve_data;
	const char *kubectl;	 /* NULL: "kubectl" from PATH */
	double version_overhead; /* <= 0: 1.0, see set_version_overhead */
};

/*
 * Start the controllers of one cluster. ctx is copied (strings included); the store,
 * loop and ingress server are borrowed and must outlive the controllers until
 * ks_controllers_stop() has been called. Existing objects are picked up at once
 * (a restored cluster resumes reconciling). *ret untouched on failure.
 */
int ks_controllers_start(struct ks_controllers **ret, const struct ks_cluster_ctx *ctx,
			 struct co_error *err);

/*
 * Stop: cancel watches and timers, kill builds, answer pending app requests with 503,
 * put a 503 fallback on the ingress server, and free. Work in flight on the thread
 * pool (git) finishes in the background without touching the store; its memory is
 * released when it completes, so the loop must keep running (as for any uv handle
 * close). After this returns the store may be freed. Takes NULL.
 */
void ks_controllers_stop(struct ks_controllers *c);

/* Resource overhead factor of the cluster's Kubernetes version (1.0 = none): CPU and
 * memory series of every pod are multiplied by it (kubesim_version_overhead). */
void ks_controllers_set_version_overhead(struct ks_controllers *c, double factor);
double ks_controllers_version_overhead(const struct ks_controllers *c);

/* Ingress-down fault: apps answer 503 (GET /metrics keeps working). */
void ks_controllers_set_ingress_down(struct ks_controllers *c, bool down);
bool ks_controllers_ingress_down(const struct ks_controllers *c);

/* The built-in resolver used when ctx->resolve is NULL (exported for tests). */
int ks_builtin_resolve(void *data, const char *api_version, const char *kind,
		       struct ks_gvr *ret, struct co_error *err);

#endif
