/*
 * A Kubernetes REST client for one cluster, on the shared HTTP client and loop.
 *
 * Objects are jansson values exactly as the API serves them. Kinds are mapped to
 * resource paths through discovery (GET /api/v1, /apis/<group>/<version>), cached per
 * group-version and refreshed once when a kind is missing (a CRD applied a moment
 * ago). Writes use server-side apply with fieldManager "cutover" and force, like
 * `kubectl apply --server-side --force-conflicts`.
 *
 * Credentials come from a resolved kubeconfig: bearer token, client certificate, or an
 * exec plugin run through runner/base/subproc (its ExecCredential cached until its
 * expiry, refreshed once on a 401).
 *
 * Async contract: if a call returns an error the callback never runs; otherwise it
 * runs exactly once, always from the loop (never from inside the call).
 * co_kube_free() cancels everything outstanding: pending callbacks then run with
 * -ECANCELED.
 *
 * Error results carry the API's Status: HTTP code, reason (NotFound, Conflict,
 * Invalid...) and message, so callers can tell permanent failures from transient
 * ones with co_kube_transient().
 */
#ifndef CO_CLIENTS_KUBE_H
#define CO_CLIENTS_KUBE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"
#include "clients/kubeconfig.h"
#include "net/http-client.h"

struct co_kube;
struct co_kube_watch;

/* Identifies an object or, without name, a collection. Borrowed for the call. */
struct co_kube_ref {
	const char *api_version;  /* "v1", "apps/v1", "kustomize.toolkit.fluxcd.io/v1" */
	const char *kind;         /* "Deployment" */
	const char *ns;           /* NULL/"" for cluster-scoped, or all namespaces in list */
	const char *name;
};

struct co_kube_result {
	int status;           /* 0, or negative: -ENOENT (404), -EEXIST (409
			       * AlreadyExists), -ESTALE (409 Conflict), -EINVAL (422/400),
			       * -EACCES (401/403), -EAGAIN (429/5xx), transport errors
			       * from the HTTP client, -ECANCELED */
	long code;            /* HTTP status code, 0 if none */
	const char *reason;   /* Status reason ("NotFound"), "" if none; borrowed */
	json_t *obj;          /* the object / list / version document; borrowed for the
			       * callback, json_incref() to keep */
	struct co_error err;  /* "get deployments.apps 'core/podinfo': 404 NotFound: ..." */
};

typedef void (*co_kube_cb)(struct co_kube_result *res, void *data);

/*
 * Create a client. cfg is copied (the caller may free it). http is borrowed and must
 * outlive the client. Returns 0 or -EINVAL for an unusable config.
 */
int co_kube_new(struct co_kube **ret_kube, uv_loop_t *loop, struct co_http_client *http,
		const struct co_kubeconfig *cfg, struct co_error *err);

/* Cancel outstanding calls and watches (their callbacks run with -ECANCELED, from the
 * loop) and free the client once they have. NULL is fine. */
void co_kube_free(struct co_kube *kube);

/* The kubeconfig's server URL and context namespace. */
const char *co_kube_server(const struct co_kube *kube);
const char *co_kube_namespace(const struct co_kube *kube);

/* Per-request deadline (ms) for non-watch calls; default 30 s. */
void co_kube_set_timeout(struct co_kube *kube, uint64_t timeout_ms);

/* GET /version: res->obj is the version document (gitVersion...). */
int co_kube_version(struct co_kube *kube, co_kube_cb cb, void *data, struct co_error *err);

int co_kube_get(struct co_kube *kube, const struct co_kube_ref *ref, co_kube_cb cb,
		void *data, struct co_error *err);

/* res->obj is the List (items, metadata.resourceVersion). Selectors may be NULL. */
int co_kube_list(struct co_kube *kube, const struct co_kube_ref *ref,
		 const char *label_selector, const char *field_selector, co_kube_cb cb,
		 void *data, struct co_error *err);

int co_kube_create(struct co_kube *kube, const json_t *obj, co_kube_cb cb, void *data,
		   struct co_error *err);

/* Server-side apply of one object (borrowed). Namespaced objects without a namespace
 * get default_ns (NULL = the kubeconfig's). */
int co_kube_apply(struct co_kube *kube, const json_t *obj, const char *default_ns,
		  co_kube_cb cb, void *data, struct co_error *err);

/* Apply every object of an array in order (namespaces and CRDs first, like kubectl),
 * stopping at the first failure. res->obj is an array of the applied objects. */
int co_kube_apply_all(struct co_kube *kube, const json_t *objs, const char *default_ns,
		      co_kube_cb cb, void *data, struct co_error *err);

/* JSON merge patch (RFC 7386) of the object, or of its status when status is true. */
int co_kube_merge_patch(struct co_kube *kube, const struct co_kube_ref *ref,
			const json_t *patch, bool status, co_kube_cb cb, void *data,
			struct co_error *err);

/* Delete with propagationPolicy (NULL = "Background"). A missing object is status
 * -ENOENT (callers treating delete as idempotent check for it). */
int co_kube_delete(struct co_kube *kube, const struct co_kube_ref *ref,
		   const char *propagation, co_kube_cb cb, void *data, struct co_error *err);

/*
 * Watch a collection from resource_version (NULL/"" = current state first, as ADDED
 * events). The stream is reconnected from the last seen resourceVersion when it ends;
 * a 410 Expired restarts from the current state. ev_cb runs for every event with
 * type "ADDED"/"MODIFIED"/"DELETED" and the object (borrowed); it may cancel the
 * watch. The watch runs until co_kube_watch_cancel() (no final callback).
 */
typedef void (*co_kube_event_cb)(const char *type, json_t *obj, void *data);
int co_kube_watch(struct co_kube_watch **ret_watch, struct co_kube *kube,
		  const struct co_kube_ref *ref, const char *label_selector,
		  const char *resource_version, co_kube_event_cb ev_cb, void *data,
		  struct co_error *err);
void co_kube_watch_cancel(struct co_kube_watch *watch);

/* True for failures worth retrying: transport errors, timeouts, 429, 5xx. */
bool co_kube_transient(const struct co_kube_result *res);

/*
 * Flux-style readiness of a reconciled object (GitRepository, Kustomization,
 * HelmRelease...): returns 1 when metadata.generation == status.observedGeneration,
 * the Ready condition is True and, when expected_revision is given, the object's
 * revision (status.lastAppliedRevision, else status.artifact.revision) equals it;
 * 0 when not yet (reason filled: "Ready=False: DependencyNotReady: ..." or "revision
 * main@sha1:abc, want main@sha1:def"); -EPERM when spec.suspend is true, -EINVAL when
 * the Ready condition is False with a reason Flux treats as terminal is not decided
 * here (callers judge by deadline). reason may be NULL.
 */
int co_kube_ready(const json_t *obj, const char *expected_revision, char *reason,
		  size_t reason_len);

/* The condition of type in status.conditions, or NULL (borrowed). */
const json_t *co_kube_condition(const json_t *obj, const char *type);

#endif
