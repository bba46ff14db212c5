/*
 * Internals shared by the controllers of one cluster (not a public contract): the
 * ks_controllers struct, each controller's start/stop, and small JSON, condition and
 * status helpers.
 *
 * Lifetime: every per-object state holds a reference on the ks_controllers (ks_ctl_ref)
 * and drops it when its last handle is closed and no operation is in flight; the
 * controllers struct is freed when stopped and unreferenced. After stop, callbacks of
 * operations still in flight (git on the thread pool, subprocesses, HTTP calls) see
 * c->stopped and only release what they hold.
 */
#ifndef KS_CTL_H
#define KS_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"
#include "sim/controllers.h"
#include "sim/store.h"

struct co_http_client;
struct ks_metrics;
struct ks_apps;
struct ks_traffic;
struct ks_fsrc;
struct ks_fkust;
struct ks_fhelm;
struct ks_flagger;

struct ks_controllers {
	uv_loop_t *loop;
	struct ks_store *store;
	struct co_http_server *ingress_srv;
	char *name, *state_dir, *version, *kubectl;
	double scale;
	double overhead;
	bool ingress_down;
	bool stopped;
	int refs;
	int64_t started_wall_ms;
	ks_resolve_fn resolve;
	void *resolve_data;
	struct co_http_client *http;
	struct ks_metrics *metrics;
	struct ks_apps *apps;
	struct ks_traffic *traffic;
	struct ks_fsrc *fsrc;
	struct ks_fkust *fkust;
	struct ks_fhelm *fhelm;
	struct ks_flagger *flagger;
};

void ks_ctl_ref(struct ks_controllers *c);
void ks_ctl_unref(struct ks_controllers *c);

/* ms (from an object's spec) times the time scale, at least 1. */
uint64_t ks_ctl_scaled(const struct ks_controllers *c, int64_t ms);

int ks_ctl_resolve(struct ks_controllers *c, const char *api_version, const char *kind,
		   struct ks_gvr *ret, struct co_error *err);

/* ---- JSON helpers ---- */

/* A copy of s, or NULL for NULL. */
static inline char *ks_strdup0(const char *s)
{
	return s ? co_strdup(s) : NULL;
}

/* a if not NULL, else b */
static inline const char *ks_or(const char *a, const char *b)
{
	return a ? a : b;
}

/* Value at a dotted path ("spec.ref.branch"), borrowed, or NULL. */
json_t *ks_jget(const json_t *obj, const char *path);
/* String at path or NULL. */
const char *ks_jstr(const json_t *obj, const char *path);
/* Integer at path or def. */
int64_t ks_jint(const json_t *obj, const char *path, int64_t def);
/* Boolean at path or def. */
bool ks_jbool(const json_t *obj, const char *path, bool def);
/* Go duration at path in ms, or def when missing or malformed. */
int64_t ks_jduration(const json_t *obj, const char *path, int64_t def);

/* RFC 3339 now. buf >= 32. */
const char *ks_now_rfc3339(char *buf, size_t n);

/*
 * Set condition type in the array conds (created in status when missing) the way
 * Kubernetes controllers do: lastTransitionTime only moves when status changes.
 * generation > 0 sets observedGeneration.
 */
void ks_cond_set(json_t *status, const char *type, const char *cstatus,
		 const char *reason, const char *message, int64_t generation);
/* Remove condition type from status.conditions. */
void ks_cond_remove(json_t *status, const char *type);
/* The condition object of type in obj's status, or NULL (borrowed). */
json_t *ks_cond_get(const json_t *obj, const char *type);
/* Whether obj has condition type with status "True". */
bool ks_cond_true(const json_t *obj, const char *type);

/* Write status (borrowed) of the object at key through the status subresource. */
int ks_ctl_write_status(struct ks_controllers *c, const struct ks_key *key,
			const json_t *status, const char *manager, struct co_error *err);

/* Stable short hash of a JSON value (Flagger/ReplicaSet style: FNV-32a of the
 * canonical text in a safe alphabet). buf >= 16. */
const char *ks_json_hash(const json_t *v, char *buf, size_t n);

/* "<ns>/<name>" map keys for per-object state. New string. */
char *ks_objkey(const char *ns, const char *name);

/* ---- controllers (each file's entry points) ---- */

int ks_apps_start(struct ks_controllers *c, struct co_error *err);
void ks_apps_stop(struct ks_controllers *c);
int ks_traffic_start(struct ks_controllers *c, struct co_error *err);
void ks_traffic_stop(struct ks_controllers *c);
int ks_fsrc_start(struct ks_controllers *c, struct co_error *err);
void ks_fsrc_stop(struct ks_controllers *c);
int ks_fkust_start(struct ks_controllers *c, struct co_error *err);
void ks_fkust_stop(struct ks_controllers *c);
/* A GitRepository's artifact revision changed: reconcile its Kustomizations now. */
void ks_fkust_source_changed(struct ks_controllers *c, const char *ns, const char *name);
int ks_fhelm_start(struct ks_controllers *c, struct co_error *err);
void ks_fhelm_stop(struct ks_controllers *c);
int ks_flagger_start(struct ks_controllers *c, struct co_error *err);
void ks_flagger_stop(struct ks_controllers *c);

/* ---- pods and traffic (apps.c), used by the ingress and Flagger ---- */

struct ks_pod;

/* A ready pod of the Service (ns, svc) chosen round-robin, honouring a traffic split
 * set by Flagger; NULL when the service or ready endpoints are missing (*ret_svc_found
 * tells which). */
struct ks_pod *ks_apps_pick(struct ks_controllers *c, const char *ns, const char *svc,
			    bool *ret_svc_found);

/* Serve one request on pod: records metrics, answers (possibly later). */
struct co_http_req;
void ks_pod_serve(struct ks_controllers *c, struct ks_pod *pod, struct co_http_req *req,
		  const char *path);

/* Flagger's split for Service (ns, svc): weight percent of its traffic goes to the
 * pods of Deployment canary, the rest to primary. weight < 0 removes the split. */
void ks_apps_set_split(struct ks_controllers *c, const char *ns, const char *svc,
		       const char *primary, const char *canary, int weight);

/* Whether Deployment (ns, name) is fully rolled out and ready. */
bool ks_apps_ready(struct ks_controllers *c, const char *ns, const char *name);

/* Requests, 5xx and p99 (ms) served by the pods of Deployment (ns, name) since the
 * previous call; resets the window. */
void ks_apps_take_window(struct ks_controllers *c, const char *ns, const char *name,
			 uint64_t *ret_requests, uint64_t *ret_errors,
			 double *ret_p99_ms);

/* Fill metrics pod series; returns a new array (caller frees with
 * ks_apps_pods_free). */
struct ks_metrics_pod;
size_t ks_apps_pods(struct ks_controllers *c, struct ks_metrics_pod **ret);
void ks_apps_pods_free(struct ks_metrics_pod *pods, size_t n);

/* Flagger series for /metrics (flagger.c). */
struct ks_metrics_canary;
size_t ks_flagger_series(struct ks_controllers *c, struct ks_metrics_canary **ret);
void ks_flagger_series_free(struct ks_metrics_canary *v, size_t n);

#endif
