/*
 * ks_store: the object store of one simulated cluster.
 *
 * Objects are jansson objects keyed by (group, resource, namespace, name). The key is
 * version-agnostic: "apps"/"deployments" holds a Deployment whatever apiVersion wrote
 * it; the object keeps the apiVersion and kind of its last write and the API server
 * stamps the requested apiVersion on the way out (no field conversion is simulated).
 * group is "" for the core group, resource is the lowercase plural ("deployments"),
 * namespace is "" (or NULL) for cluster-scoped objects.
 *
 * Immutability: a stored object is never modified in place. Every write builds a new
 * object and swaps it in, so a reference handed out by get/list/watch is a stable
 * snapshot. Callers must not modify returned objects (json_deep_copy() to edit).
 *
 * Metadata the store maintains (client values are ignored or checked):
 *   - metadata.uid            random UUID, set on create, kept for the object's life
 *   - metadata.creationTimestamp  RFC 3339, set on create
 *   - metadata.resourceVersion    decimal string of a cluster-wide counter that every
 *                             committed write (create, update, apply, patch, delete,
 *                             status) increments; the object carries the rv of its
 *                             last write, a delete event carries the rv of the delete
 *   - metadata.generation     1 on create; +1 on a write that changes anything outside
 *                             "metadata" and "status" (the spec, data, rules, ...)
 *   - metadata.managedFields  one entry per (manager, operation) as Kubernetes writes
 *                             them (fieldsType FieldsV1); see server-side apply below
 * Writes that change nothing (same content after the write) are not committed: no rv
 * bump, no event, the current object is returned.
 *
 * Write rules:
 *   - create: -EEXIST if the key exists. metadata.name is required and must be a
 *     DNS-1123 subdomain (namespaces: label); a namespaced create needs the namespace
 *     object to exist (-ENOENT "namespaces 'x' not found"), except for namespaces
 *     "default", "kube-system", "kube-public", "kube-node-lease" which the store creates
 *     with the cluster (ks_store_bootstrap()).
 *   - update (PUT): -ENOENT if missing; if obj carries metadata.resourceVersion it must
 *     equal the stored one, else -ESTALE (409 Conflict). uid/creationTimestamp are kept.
 *   - KS_WRITE_KEEP_STATUS (the API server sets it for writes to the main resource of a
 *     kind with a status subresource): "status" of the stored object is kept, the
 *     client's is ignored. ks_store_update_status() does the converse: only "status"
 *     is taken from obj (and metadata.resourceVersion is checked as for update).
 *   - KS_WRITE_DRY_RUN: everything is computed and validated, nothing is committed, no
 *     event is sent; the would-be object is returned.
 *
 * Server-side apply (ks_store_apply):
 *   - missing object: created from the applied config (with managedFields for manager).
 *   - merge: maps are merged recursively; scalars and lists are replaced by the applied
 *     value, EXCEPT "list-maps": a list whose field name is one of
 *       containers, initContainers, ephemeralContainers, env, ports, volumes,
 *       volumeMounts, imagePullSecrets, conditions, hostAliases
 *     and whose elements (in both the live and the applied list) are all objects
 *     carrying that list's key field is merged element-wise by key:
 *       name for containers/initContainers/ephemeralContainers/env/volumes/
 *       imagePullSecrets; mountPath for volumeMounts; type for conditions; ip for
 *       hostAliases; ports by "name" when every element has one, else by
 *       (containerPort or port, protocol defaulting to TCP).
 *     Matching elements are merged recursively (same rules); live elements with keys
 *     the applied list does not mention are kept; order is the applied order followed
 *     by the remaining live elements. A null value in the applied config removes the
 *     field.
 *   - ownership: the set of field paths in the applied config (FieldsV1: "f:<field>"
 *     for map keys, "k:{...}" for list-map elements, lists otherwise atomic) is recorded
 *     for the manager in managedFields with operation "Apply". Fields the manager
 *     applied last time and omits now are removed from the object, unless another
 *     manager also owns them.
 *   - conflicts: applying a leaf field owned by another "Apply" manager with a
 *     different value fails with -EBUSY (409 Conflict, "Apply failed with 1 conflict:
 *     conflict with \"other\": .spec.replicas") unless force is set, in which case the
 *     field's ownership moves to this manager. Updates (PUT, merge patch) record their
 *     manager with operation "Update" and never conflict.
 *
 * JSON merge patch (RFC 7386, ks_store_patch KS_PATCH_MERGE): objects merge
 * recursively, null deletes, everything else (lists included) replaces.
 * KS_PATCH_STRATEGIC: as merge patch, but list-maps (the rule above) merge by key;
 * the "$patch"/"$retainKeys" directives are not supported (-EINVAL).
 *
 * Delete: removes the object at once (finalizers and graceful deletion are not
 * simulated). Deleting a Namespace first deletes every object in it (a DELETED event
 * each), then the namespace.
 *
 * Watch: a subscription to events for one (group, resource) or all of them, in one
 * namespace or all, optionally filtered by label and field selectors. Events are
 * delivered synchronously after the write is committed, in resourceVersion order. A
 * callback may call any store function, including writes: events caused from inside a
 * callback are queued and delivered after the current event has reached every watcher,
 * so every watcher sees one global order. A callback may cancel any watch (its own
 * included). from_rv:
 *   - 0: an ADDED event for every existing matching object first (in key order), then
 *     live events (Kubernetes' "get state and start at most recent").
 *   - N > 0: every event with rv > N still in the history (the last
 *     KS_STORE_HISTORY events), then live events; -ERANGE (410 Expired,
 *     "too old resource version") if events after N were dropped from the history.
 *
 * Persistence: with opts.snapshot_path set, the store is loaded from that file by
 * ks_store_new() (a missing file is an empty store) and written back as one JSON
 * document ({"resourceVersion": N, "objects": [{"group", "resource", "object"}...]})
 * via a temporary file, fsync and rename, so a crash leaves the old or the new
 * snapshot and never a torn one. Writes are debounced: the first commit after a save
 * arms a timer of opts.debounce_ms on the loop; ks_store_flush() saves at once.
 * ks_store_free() flushes pending changes.
 *
 * Errors: functions return 0 or a negative code and fill err with a one-line message
 * in Kubernetes' wording (e.g. "deployments.apps \"web\" not found"); the code maps to a
 * Status through ks_store_status_reason():
 *   -ENOENT  NotFound 404          -EEXIST  AlreadyExists 409
 *   -ESTALE  Conflict 409 (stale resourceVersion)
 *   -EBUSY   Conflict 409 (apply conflict)
 *   -EINVAL  Invalid 422           -EBADMSG BadRequest 400 (bad selector, bad patch)
 *   -ERANGE  Expired 410           -EIO     InternalError 500 (snapshot I/O)
 *
 * Threading: single-threaded, on the loop given at creation.
 */
#ifndef KS_STORE_H
#define KS_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"

#define KS_STORE_HISTORY 4096 /* watch events kept for resume from a resourceVersion */

struct ks_store;
struct ks_watch;

/* An object's key. group "" = core; ns "" or NULL = cluster-scoped. Borrowed. */
struct ks_key {
	const char *group;
	const char *resource; /* lowercase plural: "deployments" */
	const char *ns;
	const char *name;
};

struct ks_store_opts {
	const char *snapshot_path; /* NULL: in memory only */
	uint64_t debounce_ms;      /* 0 = 200 ms (already scaled by the caller) */
};

/*
 * Create a store. loop may be NULL when snapshot_path is NULL or the caller only saves
 * with ks_store_flush(). Loads the snapshot if one exists: -EINVAL with err if it is
 * not a valid snapshot, -EIO if it cannot be read. *ret_store untouched on failure.
 */
int ks_store_new(struct ks_store **ret_store, uv_loop_t *loop,
		 const struct ks_store_opts *opts, struct co_error *err);

/* Flush pending changes (errors are ignored here: call ks_store_flush() first to see
 * them), cancel every watch without calling it, free. The debounce timer is closed
 * asynchronously and frees itself; the loop must run once more. Takes NULL. */
void ks_store_free(struct ks_store *store);

/* Create the built-in namespaces (default, kube-system, kube-public, kube-node-lease)
 * if missing. Idempotent. */
int ks_store_bootstrap(struct ks_store *store, struct co_error *err);

/* Save now if anything changed since the last save. */
int ks_store_flush(struct ks_store *store, struct co_error *err);

/* Delete the snapshot file and stop persisting (cluster deletion). */
void ks_store_forget(struct ks_store *store);

/* Current cluster-wide resourceVersion (of the last committed write). */
uint64_t ks_store_rv(const struct ks_store *store);

/* Number of objects (all kinds). */
size_t ks_store_count(const struct ks_store *store);

/* ---- reads ---- */

/* The object, or -ENOENT. *ret_obj: new reference to an immutable snapshot. */
int ks_store_get(struct ks_store *store, const struct ks_key *key, json_t **ret_obj,
		 struct co_error *err);

struct ks_list_opts {
	const char *label_selector; /* "app=web,tier!=db,env in (a,b),!x,y"; NULL/"" = all */
	const char *field_selector; /* metadata.name / metadata.namespace with = == != */
};

/*
 * List the objects of (key->group, key->resource) in key->ns (NULL or "" = all
 * namespaces; key->name is ignored), sorted by namespace then name. *ret_items: new
 * array (caller decrefs) of immutable snapshots; *ret_rv (may be NULL): the store's rv
 * at the time of the list. -EBADMSG for a malformed selector or an unsupported field.
 */
int ks_store_list(struct ks_store *store, const struct ks_key *key,
		  const struct ks_list_opts *opts, json_t **ret_items, uint64_t *ret_rv,
		  struct co_error *err);

/* ---- selectors (also usable on their own) ---- */

struct ks_selector;
/* Parse a label selector (kind 'l') or field selector (kind 'f'). NULL or "" parses
 * to a selector matching everything. -EBADMSG on a syntax error. Free with
 * ks_selector_free(). */
int ks_selector_parse(struct ks_selector **ret_sel, char kind, const char *text,
		      struct co_error *err);
bool ks_selector_match(const struct ks_selector *sel, const json_t *obj);
void ks_selector_free(struct ks_selector *sel);

/* ---- writes ---- */

enum {
	KS_WRITE_DRY_RUN = 1 << 0,     /* validate and compute, commit nothing */
	KS_WRITE_KEEP_STATUS = 1 << 1, /* keep the stored status (main resource write) */
};

/*
 * All writes: obj is borrowed (never modified, never stolen); its metadata.name and
 * metadata.namespace must agree with key (a missing one is filled from key; a
 * different one is -EBADMSG). *ret_obj (may be NULL): new reference to the committed
 * (or dry-run) object. manager (may be NULL = "unknown") names the field manager.
 */
int ks_store_create(struct ks_store *store, const struct ks_key *key, const json_t *obj,
		    const char *manager, unsigned flags, json_t **ret_obj,
		    struct co_error *err);

int ks_store_update(struct ks_store *store, const struct ks_key *key, const json_t *obj,
		    const char *manager, unsigned flags, json_t **ret_obj,
		    struct co_error *err);

/* Only obj's "status" is used (absent = remove status). */
int ks_store_update_status(struct ks_store *store, const struct ks_key *key,
			   const json_t *obj, const char *manager, unsigned flags,
			   json_t **ret_obj, struct co_error *err);

/* Server-side apply, see above. *ret_created (may be NULL): whether it was created. */
int ks_store_apply(struct ks_store *store, const struct ks_key *key, const json_t *obj,
		   const char *manager, bool force, unsigned flags, json_t **ret_obj,
		   bool *ret_created, struct co_error *err);

enum ks_patch_type {
	KS_PATCH_MERGE,     /* application/merge-patch+json, RFC 7386 */
	KS_PATCH_STRATEGIC, /* application/strategic-merge-patch+json, list-maps by key */
};

/* Patch the object (-ENOENT if missing). With status set the patch applies to the
 * status subresource: only the patched "status" is kept. */
int ks_store_patch(struct ks_store *store, const struct ks_key *key, const json_t *patch,
		   enum ks_patch_type type, bool status, const char *manager,
		   unsigned flags, json_t **ret_obj, struct co_error *err);

/* Delete (-ENOENT if missing). *ret_obj (may be NULL): the object as it was. */
int ks_store_delete(struct ks_store *store, const struct ks_key *key, unsigned flags,
		    json_t **ret_obj, struct co_error *err);

/* ---- pure helpers (exported for the API server and the tests) ---- */

/* RFC 7386 merge patch of target by patch: returns a new value (caller decrefs). With
 * list_maps set, list-maps merge by key as described above. */
json_t *ks_merge_patch(const json_t *target, const json_t *patch, bool list_maps);

/* DNS-1123 label (max 63, [a-z0-9]([-a-z0-9]*[a-z0-9])?) and subdomain (max 253,
 * labels joined by '.'). */
bool ks_dns1123_label(const char *s);
bool ks_dns1123_subdomain(const char *s);

/* Kubernetes reason and HTTP code for a store error code (0 -> "", 200). */
const char *ks_store_status_reason(int code, int *ret_http);

/* ---- watch ---- */

enum ks_event_type {
	KS_EVENT_ADDED,
	KS_EVENT_MODIFIED,
	KS_EVENT_DELETED,
};
/* "ADDED", "MODIFIED", "DELETED" */
const char *ks_event_type_name(enum ks_event_type type);

struct ks_event {
	enum ks_event_type type;
	const char *group;    /* of the object's key; borrowed for the callback */
	const char *resource;
	uint64_t rv;          /* the event's resourceVersion */
	json_t *obj;          /* the object (DELETED: as it was, with the delete's rv);
			       * borrowed for the callback, json_incref() to keep; do
			       * not modify */
};

typedef void (*ks_watch_cb)(const struct ks_event *ev, void *data);

struct ks_watch_filter {
	const char *group;    /* NULL = any group (then resource must be NULL too) */
	const char *resource; /* NULL = any resource of the group */
	const char *ns;       /* NULL or "" = all namespaces */
	const char *label_selector; /* NULL = all */
	const char *field_selector; /* NULL = all */
};

/*
 * Subscribe. The filter strings are copied. Replayed events (from_rv, see above) are
 * delivered before this call returns. cb runs for every matching event until
 * ks_watch_cancel(). -ERANGE if from_rv is too old, -EBADMSG for a bad selector;
 * *ret_watch untouched and cb never called on failure.
 */
int ks_store_watch(struct ks_watch **ret_watch, struct ks_store *store,
		   const struct ks_watch_filter *filter, uint64_t from_rv, ks_watch_cb cb,
		   void *data, struct co_error *err);

/* Stop a watch; cb is not called again. Safe from inside any watch callback. Takes
 * NULL. */
void ks_watch_cancel(struct ks_watch *watch);

#endif
