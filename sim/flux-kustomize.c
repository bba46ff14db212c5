/*
 * Flux kustomize-controller: Kustomization (kustomize.toolkit.fluxcd.io v1, v1beta2,
 * v1beta1; the store key is version-agnostic).
 *
 * One state machine per Kustomization:
 *
 *   IDLE -> (deps ready, source has an artifact) FETCH -> CHECKOUT -> BUILD -> APPLY
 *        -> [HEALTH, polling until ready or timeout] -> IDLE
 *
 * FETCH/CHECKOUT mirror the GitRepository's url at the artifact's commit into this
 * Kustomization's own cache and work tree (git client, thread pool), so no cache dir
 * is shared between concurrent operations. BUILD runs `kubectl kustomize
 * --load-restrictor=LoadRestrictionsNone` on spec.path when it holds a kustomization
 * file, otherwise reads every YAML file under it (generating a kustomization only when
 * subdirectories carry their own, as kustomize-controller does), then applies
 * postBuild substitution. APPLY resolves every object against the cluster's served
 * kinds (unknown or removed apiVersions fail the way the API server rejects them),
 * applies Namespaces and CRDs first, dry-runs the rest, then applies everything
 * server-side (field manager kustomize-controller, forced) and prunes what left the
 * inventory. Results land in status with Flux's reasons; the timer re-arms at
 * spec.interval after success and spec.retryInterval after failure, both scaled.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/subproc.h"
#include "base/time.h"
#include "base/yaml.h"
#include "clients/git.h"
#include "sim/ctl.h"
#include "sim/flux-util.h"

#define MANAGER		    "kustomize-controller"
#define DEFAULT_INTERVAL_MS 600000
#define DEP_REQUEUE_MS	    30000
#define HEALTH_POLL_MS	    2000
#define BUILD_TIMEOUT_MS    60000
#define REQ_AT		    "reconcile.fluxcd.io/requestedAt"
#define MAX_MSG		    4096

enum kstate {
	K_IDLE,	    /* waiting for the timer or an event */
	K_FETCH,    /* git fetch of the artifact commit in flight */
	K_CHECKOUT, /* git checkout in flight */
	K_BUILD,    /* kubectl kustomize running */
	K_HEALTH,   /* polling health of applied objects */
};

static const char *const state_names[] = {"idle", "fetch", "checkout", "build", "health"};

struct kust {
	struct ks_controllers *c;
	int refs;
	char *ns, *name;
	json_t *obj;
	uv_timer_t timer;
	enum kstate state;
	bool again, gone, seen, waiting_deps;
	int64_t gen_started;
	char *handled_at;
	/* the run in progress */
	char *revision, *sha, *url, *cache, *work;
	struct co_subproc *proc;
	json_t *inventory; /* new entries while applying */
	json_t *health;	   /* [{kind, group, resource, ns, name}] */
	uint64_t health_deadline;
	uint64_t health_start;
};

/* reconcile.fluxcd.io/requestedAt (the key has dots, so no ks_jget path) */
static const char *requested_at(const json_t *obj)
{
	return json_string_value(
		json_object_get(ks_jget(obj, "metadata.annotations"), REQ_AT));
}

struct ks_fkust {
	struct ks_watch *watch;
	struct kust **items;
	size_t n, cap;
};

static void reconcile(struct kust *k);

static void set_state(struct kust *k, enum kstate s)
{
	if (k->state != s)
		co_log_debug("kubesim", "kustomization '%s/%s': %s -> %s", k->ns, k->name,
			     state_names[k->state], state_names[s]);
	k->state = s;
}

static void run_clear(struct kust *k)
{
	free(k->revision);
	free(k->sha);
	free(k->url);
	free(k->cache);
	free(k->work);
	k->revision = k->sha = k->url = k->cache = k->work = NULL;
	json_decref(k->inventory);
	json_decref(k->health);
	k->inventory = k->health = NULL;
}

static void kust_unref(struct kust *k)
{
	struct ks_controllers *c = k->c;

	if (--k->refs > 0)
		return;
	run_clear(k);
	json_decref(k->obj);
	free(k->ns);
	free(k->name);
	free(k->handled_at);
	free(k);
	ks_ctl_unref(c);
}

static void kust_closed(uv_handle_t *h)
{
	kust_unref(h->data);
}

static void kust_drop(struct kust *k)
{
	k->gone = true;
	if (k->proc)
		co_subproc_cancel(k->proc);
	uv_close((uv_handle_t *)&k->timer, kust_closed);
}

static bool dead(struct kust *k)
{
	return k->gone || k->c->stopped;
}

static void timer_cb(uv_timer_t *t)
{
	struct kust *k = t->data;

	if (k->state == K_HEALTH)
		return; /* replaced by the health poller, see health_cb */
	reconcile(k);
}

static void arm(struct kust *k, bool failed)
{
	int64_t interval = ks_jduration(k->obj, "spec.interval", DEFAULT_INTERVAL_MS);
	int64_t ms = interval;

	if (failed)
		ms = ks_jduration(k->obj, "spec.retryInterval", interval);
	if (ms <= 0)
		ms = DEFAULT_INTERVAL_MS;
	if (k->waiting_deps && ms > DEP_REQUEUE_MS)
		ms = DEP_REQUEUE_MS;
	uv_timer_start(&k->timer, timer_cb, ks_ctl_scaled(k->c, ms), 0);
}

static json_t *base_status(struct kust *k)
{
	json_t *st = json_deep_copy(json_object_get(k->obj, "status"));
	const char *req = requested_at(k->obj);

	if (!json_is_object(st)) {
		json_decref(st);
		st = json_object();
	}
	if (req) {
		json_object_set_new(st, "lastHandledReconcileAt", json_string(req));
		free(k->handled_at);
		k->handled_at = co_strdup(req);
	}
	return st;
}

static void put_status(struct kust *k, json_t *st)
{
	struct ks_key key = {"kustomize.toolkit.fluxcd.io", "kustomizations", k->ns,
			     k->name};
	struct co_error err = CO_ERROR_INIT;

	if (ks_ctl_write_status(k->c, &key, st, MANAGER, &err) < 0)
		co_log_debug("kubesim", "kustomization '%s/%s' status: %s", k->ns,
			     k->name, err.msg);
	json_decref(st);
}

/* End the run: Ready False with reason and message, retry later. */
static void fail(struct kust *k, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct kust *k, const char *reason, const char *fmt, ...)
{
	char msg[MAX_MSG];
	va_list ap;
	json_t *st;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_state(k, K_IDLE);
	if (dead(k))
		return;
	st = base_status(k);
	json_object_set_new(st, "observedGeneration", json_integer(k->gen_started));
	if (k->revision)
		json_object_set_new(st, "lastAttemptedRevision",
				    json_string(k->revision));
	if (k->inventory) {
		/* objects applied before the failure stay tracked for pruning */
		json_t *inv = ks_jget(k->obj, "status.inventory.entries"), *e;
		json_t *merged = json_deep_copy(k->inventory);
		size_t i, j;

		json_array_foreach(inv, i, e)
		{
			bool have = false;
			json_t *m;

			json_array_foreach(merged, j, m) have |= json_equal(
				json_object_get(m, "id"), json_object_get(e, "id"));
			if (!have)
				json_array_append(merged, e);
		}
		json_object_set_new(st, "inventory",
				    json_pack("{s:o}", "entries", merged));
	}
	ks_cond_remove(st, "Reconciling");
	ks_cond_set(st, "Ready", "False", reason, msg, k->gen_started);
	put_status(k, st);
	run_clear(k);
	if (dead(k))
		return;
	if (k->again) {
		k->again = false;
		reconcile(k);
		return;
	}
	arm(k, true);
}

static void succeed(struct kust *k)
{
	json_t *st = base_status(k);
	char msg[512];

	set_state(k, K_IDLE);
	json_object_set_new(st, "observedGeneration", json_integer(k->gen_started));
	json_object_set_new(st, "lastAppliedRevision", json_string(k->revision));
	json_object_set_new(st, "lastAttemptedRevision", json_string(k->revision));
	json_object_set_new(st, "inventory", json_pack("{s:O}", "entries", k->inventory));
	ks_cond_remove(st, "Reconciling");
	if (k->health) {
		snprintf(msg, sizeof(msg), "Health check passed in %llums",
			 (unsigned long long)(uv_now(k->c->loop) - k->health_start));
		ks_cond_set(st, "Healthy", "True", "Succeeded", msg, k->gen_started);
	}
	snprintf(msg, sizeof(msg), "Applied revision: %s", k->revision);
	ks_cond_set(st, "Ready", "True", "ReconciliationSucceeded", msg, k->gen_started);
	put_status(k, st);
	run_clear(k);
	if (dead(k))
		return;
	if (k->again) {
		k->again = false;
		reconcile(k);
		return;
	}
	arm(k, false);
}

/* ---- health ---- */

static bool object_healthy(struct kust *k, const json_t *t, char *why, size_t n)
{
	struct ks_key key = {json_string_value(json_object_get(t, "group")),
			     json_string_value(json_object_get(t, "resource")),
			     json_string_value(json_object_get(t, "ns")),
			     json_string_value(json_object_get(t, "name"))};
	const char *kind = json_string_value(json_object_get(t, "kind"));
	json_t *obj = NULL;
	bool ok = true;

	if (ks_store_get(k->c->store, &key, &obj, NULL) < 0) {
		snprintf(why, n, "NotFound");
		return false;
	}
	if (!strcmp(kind, "Deployment")) {
		int64_t want = ks_jint(obj, "spec.replicas", 1);

		ok = ks_jint(obj, "status.observedGeneration", 0) >=
			     ks_jint(obj, "metadata.generation", 1) &&
		     ks_jint(obj, "status.updatedReplicas", 0) >= want &&
		     ks_jint(obj, "status.readyReplicas", 0) >= want &&
		     ks_jint(obj, "status.replicas", 0) == want;
	} else if (ks_jget(obj, "status.conditions") && ks_cond_get(obj, "Ready")) {
		ok = ks_cond_true(obj, "Ready") &&
		     ks_jint(obj, "status.observedGeneration", 0) ==
			     ks_jint(obj, "metadata.generation", 1);
	}
	if (!ok)
		snprintf(why, n, "InProgress");
	json_decref(obj);
	return ok;
}

static void health_check(struct kust *k);

static void health_cb(uv_timer_t *t)
{
	struct kust *k = t->data;

	if (k->state == K_HEALTH)
		health_check(k);
	else
		reconcile(k);
}

static void health_check(struct kust *k)
{
	struct co_buf pending = CO_BUF_INIT;
	json_t *t;
	size_t i;
	char why[32];

	json_array_foreach(k->health, i, t)
	{
		if (object_healthy(k, t, why, sizeof(why)))
			continue;
		const char *ns = json_string_value(json_object_get(t, "ns"));

		co_buf_printf(&pending, "%s%s/%s%s%s status: '%s'",
			      pending.len ? ", " : "",
			      json_string_value(json_object_get(t, "kind")), ns ? ns : "",
			      ns && *ns ? "/" : "",
			      json_string_value(json_object_get(t, "name")), why);
	}
	if (!pending.len) {
		succeed(k);
		return;
	}
	if (uv_now(k->c->loop) >= k->health_deadline) {
		char dur[32];

		co_time_format_duration(ks_jduration(k->obj, "spec.timeout",
						     ks_jduration(k->obj, "spec.interval",
								  DEFAULT_INTERVAL_MS)),
					dur, sizeof(dur));
		fail(k, "HealthCheckFailed",
		     "health check failed after %s: timeout waiting for: [%s]", dur,
		     co_buf_cstr(&pending));
		co_buf_release(&pending);
		return;
	}
	co_buf_release(&pending);
	uint64_t poll = ks_ctl_scaled(k->c, HEALTH_POLL_MS);

	uv_timer_start(&k->timer, health_cb, poll < 5 ? 5 : poll, 0);
}

static void add_health(struct kust *k, const char *kind, const struct ks_gvr *g,
		       const char *ns, const char *name)
{
	json_array_append_new(k->health,
			      json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", kind,
					"group", g->group, "resource", g->resource, "ns",
					ns ? ns : "", "name", name));
}

/* ---- apply ---- */

static int kind_rank(const char *kind)
{
	if (!strcmp(kind, "CustomResourceDefinition"))
		return 0;
	if (!strcmp(kind, "Namespace"))
		return 1;
	return 2;
}

struct item {
	json_t *obj;
	struct ks_gvr gvr;
	const char *kind, *ns, *name;
	char *id;
};

static int item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	return kind_rank(x->kind) - kind_rank(y->kind);
}

static void objref(struct co_buf *b, const struct item *it)
{
	co_buf_printf(b, "%s/%s%s%s", it->kind, it->ns && *it->ns ? it->ns : "",
		      it->ns && *it->ns ? "/" : "", it->name);
}

static bool prune_disabled(const json_t *obj)
{
	const char *v =
		json_string_value(json_object_get(ks_jget(obj, "metadata.annotations"),
						  "kustomize.toolkit.fluxcd.io/prune"));

	return v && !strcmp(v, "disabled");
}

/* Delete the objects of inventory entries old that keep (may be NULL) does not list,
 * except those annotated kustomize.toolkit.fluxcd.io/prune: disabled. */
static void prune_entries(struct ks_controllers *c, const json_t *old, const json_t *keep)
{
	json_t *e, *m;
	size_t i, j;

	json_array_foreach(old, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *v = ks_or(json_string_value(json_object_get(e, "v")), "v1");
		json_t *live = NULL;
		bool kept = false;
		char *p[4];
		char *apiv;
		struct ks_gvr g;

		json_array_foreach(keep, j, m) kept |=
			id &&
			!strcmp(ks_or(json_string_value(json_object_get(m, "id")), ""),
				id);
		if (kept || !id || ks_inventory_parse(id, p) < 0)
			continue;
		apiv = *p[2] ? co_asprintf("%s/%s", p[2], v) : co_strdup(v);
		if (ks_ctl_resolve(c, apiv, p[3], &g, NULL) == 0) {
			struct ks_key key = {g.group, g.resource, p[0], p[1]};

			if (ks_store_get(c->store, &key, &live, NULL) == 0 &&
			    !prune_disabled(live))
				ks_store_delete(c->store, &key, 0, NULL, NULL);
			json_decref(live);
		}
		free(apiv);
		for (int x = 0; x < 4; x++)
			free(p[x]);
	}
}

static void apply_all(struct kust *k, json_t *docs)
{
	struct ks_controllers *c = k->c;
	const char *target_ns = ks_jstr(k->obj, "spec.targetNamespace");
	size_t n = json_array_size(docs), i;
	struct item *items = co_calloc(n ? n : 1, sizeof(*items));
	struct co_buf errs = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;
	bool wait = ks_jbool(k->obj, "spec.wait", false);
	json_t *e;

	for (i = 0; i < n; i++) {
		struct item *it = &items[i];
		json_t *obj = json_deep_copy(json_array_get(docs, i)), *md, *labels;

		it->obj = obj;
		it->kind = json_string_value(json_object_get(obj, "kind"));
		it->name = ks_jstr(obj, "metadata.name");
		if (ks_ctl_resolve(c,
				   json_string_value(json_object_get(obj, "apiVersion")),
				   it->kind, &it->gvr, &err) < 0 ||
		    !it->name) {
			co_buf_printf(&errs, "%s%s/%s dry-run failed: %s",
				      errs.len ? "\n" : "",
				      it->kind ? it->kind : "<no kind>",
				      it->name ? it->name : "",
				      it->name ? err.msg : "metadata.name is required");
			continue;
		}
		md = json_object_get(obj, "metadata");
		if (it->gvr.namespaced) {
			const char *ns = target_ns ? target_ns
						   : ks_jstr(obj, "metadata.namespace");

			json_object_set_new(md, "namespace",
					    json_string(ns ? ns : "default"));
		} else {
			json_object_del(md, "namespace");
		}
		it->ns = ks_jstr(obj, "metadata.namespace");
		labels = json_object_get(md, "labels");
		if (!json_is_object(labels)) {
			labels = json_object();
			json_object_set_new(md, "labels", labels);
		}
		json_object_set_new(labels, "kustomize.toolkit.fluxcd.io/name",
				    json_string(k->name));
		json_object_set_new(labels, "kustomize.toolkit.fluxcd.io/namespace",
				    json_string(k->ns));
		it->id = ks_inventory_id(it->ns, it->name, it->gvr.group, it->kind);
	}
	if (errs.len)
		goto failed;
	qsort(items, n, sizeof(*items), item_cmp);
	/* Namespaces and CRDs first, then a dry run of the rest, then the rest */
	for (int pass = 0; pass < 3; pass++) {
		for (i = 0; i < n; i++) {
			struct item *it = &items[i];
			struct ks_key key = {it->gvr.group, it->gvr.resource, it->ns,
					     it->name};
			bool early = kind_rank(it->kind) < 2;
			int r;

			if ((pass == 0) != early)
				continue;
			if (pass == 2 && early)
				continue;
			r = ks_store_apply(c->store, &key, it->obj, MANAGER, true,
					   pass == 1 ? KS_WRITE_DRY_RUN : 0, NULL, NULL,
					   &err);
			if (r < 0) {
				int http = 0;
				const char *reason = ks_store_status_reason(r, &http);

				co_buf_printf(&errs, "%s", errs.len ? "\n" : "");
				objref(&errs, it);
				co_buf_printf(&errs, " %s failed, reason: %s: %s",
					      pass == 1 ? "dry-run" : "apply", reason,
					      err.msg);
				continue;
			}
			if (pass == 1)
				continue;
			json_array_append_new(k->inventory,
					      json_pack("{s:s, s:s}", "id", it->id, "v",
							it->gvr.version));
			if (wait && (!strcmp(it->kind, "Deployment") ||
				     !strcmp(it->kind, "Kustomization")))
				add_health(k, it->kind, &it->gvr, it->ns, it->name);
		}
		if (errs.len && pass >= 1)
			goto failed;
	}
	if (errs.len)
		goto failed;
	/* prune what left the inventory */
	if (ks_jbool(k->obj, "spec.prune", false))
		prune_entries(c, ks_jget(k->obj, "status.inventory.entries"),
			      k->inventory);
	/* explicit health checks */
	json_array_foreach(ks_jget(k->obj, "spec.healthChecks"), i, e)
	{
		struct ks_gvr g;
		const char *kind = json_string_value(json_object_get(e, "kind"));
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *ns = json_string_value(json_object_get(e, "namespace"));

		if (name &&
		    ks_ctl_resolve(c, json_string_value(json_object_get(e, "apiVersion")),
				   kind, &g, NULL) == 0)
			add_health(k, kind, &g, g.namespaced ? (ns ? ns : k->ns) : "",
				   name);
	}
	for (i = 0; i < n; i++) {
		json_decref(items[i].obj);
		free(items[i].id);
	}
	free(items);
	co_buf_release(&errs);
	if (dead(k))
		return;
	if (json_array_size(k->health)) {
		int64_t timeout = ks_jduration(
			k->obj, "spec.timeout",
			ks_jduration(k->obj, "spec.interval", DEFAULT_INTERVAL_MS));

		set_state(k, K_HEALTH);
		k->health_start = uv_now(c->loop);
		k->health_deadline = k->health_start + ks_ctl_scaled(c, timeout);
		health_check(k);
		return;
	}
	json_decref(k->health);
	k->health = NULL;
	succeed(k);
	return;
failed:
	for (i = 0; i < n; i++) {
		json_decref(items[i].obj);
		free(items[i].id);
	}
	free(items);
	fail(k, "ReconciliationFailed", "%s", co_buf_cstr(&errs));
	co_buf_release(&errs);
}

/* ---- build ---- */

static int vars_from(struct kust *k, json_t *vars, struct co_error *err)
{
	json_t *ref, *sub = ks_jget(k->obj, "spec.postBuild.substitute");
	size_t i;
	const char *key;
	json_t *v;

	json_array_foreach(ks_jget(k->obj, "spec.postBuild.substituteFrom"), i, ref)
	{
		const char *kind =
			ks_or(json_string_value(json_object_get(ref, "kind")), "");
		const char *name =
			ks_or(json_string_value(json_object_get(ref, "name")), "");
		bool optional = json_is_true(json_object_get(ref, "optional"));
		bool secret = !strcmp(kind, "Secret");
		struct ks_key okey = {"", secret ? "secrets" : "configmaps", k->ns, name};
		json_t *obj = NULL;

		if (!secret && strcmp(kind, "ConfigMap"))
			return co_error_set(
				err, -EINVAL,
				"substitute from '%s/%s/%s' error: unsupported kind",
				kind, k->ns, name);
		if (ks_store_get(k->c->store, &okey, &obj, NULL) < 0) {
			if (optional)
				continue;
			return co_error_set(
				err, -ENOENT,
				"substitute from '%s/%s/%s' error: %s \"%s\" not found",
				kind, k->ns, name, okey.resource, name);
		}
		json_object_foreach(json_object_get(obj, "data"), key, v)
		{
			const char *s = json_string_value(v);

			if (!s)
				continue;
			if (secret) {
				/* base64 data */
				static const char tbl[] =
					"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
					"wxyz0123456789+/";
				struct co_buf out = CO_BUF_INIT;
				uint32_t acc = 0;
				int bits = 0;

				for (const char *p = s; *p && *p != '='; p++) {
					const char *q = strchr(tbl, *p);

					if (!q || !*p)
						continue;
					acc = (acc << 6) | (uint32_t)(q - tbl);
					bits += 6;
					if (bits >= 8) {
						bits -= 8;
						co_buf_putc(&out,
							    (char)((acc >> bits) & 0xff));
					}
				}
				json_object_set_new(vars, key,
						    json_string(co_buf_cstr(&out)));
				co_buf_release(&out);
			} else {
				json_object_set_new(vars, key, json_string(s));
			}
		}
		if (secret)
			json_object_foreach(json_object_get(obj, "stringData"), key,
					    v) if (json_is_string(v))
				json_object_set(vars, key, v);
		json_decref(obj);
	}
	json_object_foreach(sub, key, v) if (json_is_string(v))
		json_object_set(vars, key, v);
	return 0;
}

static bool subst_disabled(const json_t *obj)
{
	const char *a = json_string_value(
		json_object_get(ks_jget(obj, "metadata.annotations"),
				"kustomize.toolkit.fluxcd.io/substitute"));
	const char *l = json_string_value(
		json_object_get(ks_jget(obj, "metadata.labels"),
				"kustomize.toolkit.fluxcd.io/substitute"));

	return (a && !strcmp(a, "disabled")) || (l && !strcmp(l, "disabled"));
}

/* Post-build substitution on each object's YAML text, then apply. Takes docs. */
static void post_build(struct kust *k, json_t *docs)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *vars, *out, *d;
	size_t i;

	if (!ks_jget(k->obj, "spec.postBuild")) {
		apply_all(k, docs);
		json_decref(docs);
		return;
	}
	vars = json_object();
	if (vars_from(k, vars, &err) < 0) {
		json_decref(vars);
		json_decref(docs);
		fail(k, "BuildFailed", "%s", err.msg);
		return;
	}
	out = json_array();
	json_array_foreach(docs, i, d)
	{
		struct co_buf y = CO_BUF_INIT;
		char *text = NULL;
		json_t *nd = NULL;

		if (subst_disabled(d)) {
			json_array_append(out, d);
			continue;
		}
		if (co_yaml_dump(&y, d, &err) < 0 ||
		    ks_flux_subst(&text, co_buf_cstr(&y), vars, false, &err) < 0 ||
		    co_yaml_load_one(&nd, text, strlen(text), NULL, &err) < 0) {
			fail(k, "BuildFailed", "%s/%s var substitution failed: %s",
			     ks_or(json_string_value(json_object_get(d, "kind")), ""),
			     ks_or(ks_jstr(d, "metadata.name"), ""), err.msg);
			co_buf_release(&y);
			free(text);
			json_decref(out);
			json_decref(vars);
			json_decref(docs);
			return;
		}
		json_array_append_new(out, nd);
		co_buf_release(&y);
		free(text);
	}
	json_decref(vars);
	json_decref(docs);
	apply_all(k, out);
	json_decref(out);
}

/* Keep only documents that are Kubernetes objects; flatten List kinds. */
static void add_docs(json_t *all, json_t *docs)
{
	json_t *d, *it;
	size_t i, j;

	json_array_foreach(docs, i, d)
	{
		const char *kind = json_string_value(json_object_get(d, "kind"));

		if (!json_is_object(d) || !kind || !json_object_get(d, "apiVersion"))
			continue;
		if (!strcmp(kind, "List")) {
			json_array_foreach(json_object_get(d, "items"), j,
					   it) if (json_is_object(it))
				json_array_append(all, it);
			continue;
		}
		json_array_append(all, d);
	}
}

static void built(struct co_subproc_result *res, void *data)
{
	struct kust *k = data;
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = NULL, *all;

	k->proc = NULL;
	if (dead(k)) {
		kust_unref(k);
		return;
	}
	if (res->status < 0 || res->term_signal || res->exit_code != 0) {
		char *msg = co_strndup(res->err.data ? res->err.data : "", res->err.len);

		co_log_scrub(msg);
		for (char *p = msg; *p; p++)
			if (*p == '\n')
				*p = ' ';
		fail(k, "BuildFailed", "kustomize build failed: %s",
		     res->status == -ETIMEDOUT ? "timeout"
					       : (*msg ? msg : "kubectl failed"));
		free(msg);
		kust_unref(k);
		return;
	}
	if (co_yaml_load_all(&docs, res->out.data ? res->out.data : "", res->out.len,
			     "kustomize output", &err) < 0) {
		fail(k, "BuildFailed", "kustomize build failed: %s", err.msg);
		kust_unref(k);
		return;
	}
	all = json_array();
	add_docs(all, docs);
	json_decref(docs);
	post_build(k, all);
	kust_unref(k);
}

static void run_kubectl(struct kust *k, const char *dir)
{
	const char *argv[] = {k->c->kubectl, "kustomize",
			      "--load-restrictor=LoadRestrictionsNone", dir, NULL};
	struct co_subproc_opts o = {
		.argv = argv, .timeout_ms = BUILD_TIMEOUT_MS, .max_output = 64u << 20};
	struct co_error err = CO_ERROR_INIT;

	set_state(k, K_BUILD);
	k->refs++;
	if (co_subproc_run(k->c->loop, &k->proc, &o, built, k, &err) < 0) {
		k->refs--;
		k->proc = NULL;
		fail(k, "BuildFailed", "kustomize build failed: %s", err.msg);
	}
}

static void build(struct kust *k)
{
	struct co_error err = CO_ERROR_INIT;
	char *rel = NULL, *dir;
	json_t *files = NULL, *kdirs = NULL, *all, *v;
	size_t i;

	if (ks_kpath_clean(&rel, ks_jstr(k->obj, "spec.path"), &err) < 0) {
		fail(k, "BuildFailed", "%s", err.msg);
		return;
	}
	dir = *rel ? co_asprintf("%s/%s", k->work, rel) : co_strdup(k->work);
	free(rel);
	if (ks_kpath_kustomization_file(dir)) {
		run_kubectl(k, dir);
		free(dir);
		return;
	}
	if (ks_kpath_collect(dir, &files, &kdirs, &err) < 0) {
		fail(k, "BuildFailed",
		     "kustomization path not found: stat %s: no such file or "
		     "directory",
		     dir);
		free(dir);
		return;
	}
	if (json_array_size(kdirs)) {
		/* nested kustomizations: generate the root one, as Flux does */
		struct co_buf y = CO_BUF_INIT;
		char *f = co_asprintf("%s/kustomization.yaml", dir);
		FILE *fp = fopen(f, "w");

		ks_kpath_generate(&y, files, kdirs);
		if (fp) {
			fwrite(y.data, 1, y.len, fp);
			fclose(fp);
		}
		free(f);
		co_buf_release(&y);
		json_decref(files);
		json_decref(kdirs);
		run_kubectl(k, dir);
		free(dir);
		return;
	}
	all = json_array();
	json_array_foreach(files, i, v)
	{
		char *f = co_asprintf("%s/%s", dir, json_string_value(v));
		json_t *docs = NULL;

		if (co_yaml_load_file(&docs, f, &err) < 0) {
			free(f);
			json_decref(all);
			json_decref(files);
			json_decref(kdirs);
			free(dir);
			fail(k, "BuildFailed", "%s", err.msg);
			return;
		}
		add_docs(all, docs);
		json_decref(docs);
		free(f);
	}
	json_decref(files);
	json_decref(kdirs);
	free(dir);
	post_build(k, all);
}

/* ---- source ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	remove(path);
	return 0;
}

static void checked_out(struct co_git_result *res, void *data)
{
	struct kust *k = data;

	if (dead(k)) {
		kust_unref(k);
		return;
	}
	if (res->status < 0)
		fail(k, "ArtifactFailed", "failed to extract artifact: %s", res->err.msg);
	else
		build(k);
	kust_unref(k);
}

static void fetched(struct co_git_result *res, void *data)
{
	struct kust *k = data;
	struct co_git_opts o = {.url = k->url, .cache_dir = k->cache};
	struct co_error err = CO_ERROR_INIT;

	if (dead(k)) {
		kust_unref(k);
		return;
	}
	if (res->status < 0) {
		fail(k, "ArtifactFailed", "failed to download artifact: %s",
		     res->err.msg);
		kust_unref(k);
		return;
	}
	nftw(k->work, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	set_state(k, K_CHECKOUT);
	if (co_git_checkout(k->c->loop, &o, k->sha, k->work, checked_out, k, &err) < 0) {
		fail(k, "ArtifactFailed", "failed to extract artifact: %s", err.msg);
		kust_unref(k);
		return;
	}
	/* the reference moves to the checkout */
}

static bool dep_ready(struct kust *k, const json_t *dep, char *msg, size_t n)
{
	const char *name = ks_or(json_string_value(json_object_get(dep, "name")), "");
	const char *ns =
		ks_or(json_string_value(json_object_get(dep, "namespace")), k->ns);
	struct ks_key key = {"kustomize.toolkit.fluxcd.io", "kustomizations", ns, name};
	json_t *obj = NULL;
	bool ok;

	if (ks_store_get(k->c->store, &key, &obj, NULL) < 0) {
		snprintf(msg, n,
			 "unable to get '%s/%s' dependency: kustomizations.kustomize."
			 "toolkit.fluxcd.io \"%s\" not found",
			 ns, name, name);
		return false;
	}
	ok = ks_cond_true(obj, "Ready") && ks_jint(obj, "status.observedGeneration", 0) ==
						   ks_jint(obj, "metadata.generation", 1);
	json_decref(obj);
	if (!ok)
		snprintf(msg, n, "dependency '%s/%s' is not ready", ns, name);
	return ok;
}

static void reconcile(struct kust *k)
{
	struct ks_controllers *c = k->c;
	struct co_error err = CO_ERROR_INIT;
	const char *skind =
		ks_or(ks_jstr(k->obj, "spec.sourceRef.kind"), "GitRepository");
	const char *sname = ks_or(ks_jstr(k->obj, "spec.sourceRef.name"), "");
	const char *sns = ks_or(ks_jstr(k->obj, "spec.sourceRef.namespace"), k->ns);
	struct ks_key skey = {"source.toolkit.fluxcd.io", "gitrepositories", sns, sname};
	json_t *src = NULL, *dep;
	const char *rev, *sha;
	char msg[512];
	size_t i;

	if (dead(k))
		return;
	if (k->state != K_IDLE) {
		k->again = true;
		return;
	}
	uv_timer_stop(&k->timer);
	if (ks_jbool(k->obj, "spec.suspend", false))
		return;
	k->gen_started = ks_jint(k->obj, "metadata.generation", 1);
	if (ks_jint(k->obj, "status.observedGeneration", 0) != k->gen_started) {
		json_t *st = base_status(k);

		ks_cond_set(st, "Reconciling", "True", "Progressing",
			    "Reconciliation in progress", k->gen_started);
		if (!ks_cond_get(k->obj, "Ready"))
			ks_cond_set(st, "Ready", "Unknown", "Progressing",
				    "Reconciliation in progress", k->gen_started);
		put_status(k, st);
		if (dead(k))
			return;
	}
	k->waiting_deps = false;
	json_array_foreach(ks_jget(k->obj, "spec.dependsOn"), i,
			   dep) if (!dep_ready(k, dep, msg, sizeof(msg)))
	{
		k->waiting_deps = true;
		fail(k, "DependencyNotReady", "%s", msg);
		return;
	}
	if (strcmp(skind, "GitRepository")) {
		fail(k, "ArtifactFailed", "source kind '%s' is not supported by kubesim",
		     skind);
		return;
	}
	if (ks_store_get(c->store, &skey, &src, NULL) < 0) {
		fail(k, "ArtifactFailed", "Source '%s/%s/%s' not found", skind, sns,
		     sname);
		return;
	}
	rev = ks_jstr(src, "status.artifact.revision");
	sha = rev ? strstr(rev, "sha1:") : NULL;
	if (!sha || strlen(sha + 5) != CO_GIT_SHA_HEX) {
		json_decref(src);
		fail(k, "ArtifactFailed", "Source artifact not found, retrying in %s",
		     "30s");
		return;
	}
	k->revision = co_strdup(rev);
	k->sha = co_strdup(sha + 5);
	k->url = co_strdup(ks_or(ks_jstr(src, "spec.url"), ""));
	json_decref(src);
	k->cache = co_asprintf("%s/flux/kustomizations/%s/%s.git", c->state_dir, k->ns,
			       k->name);
	k->work = co_asprintf("%s/flux/kustomizations/%s/%s.src", c->state_dir, k->ns,
			      k->name);
	k->inventory = json_array();
	k->health = json_array();
	struct co_git_opts o = {.url = k->url, .cache_dir = k->cache};

	set_state(k, K_FETCH);
	k->refs++;
	if (co_git_fetch(c->loop, &o, k->sha, fetched, k, &err) < 0) {
		k->refs--;
		fail(k, "ArtifactFailed", "failed to download artifact: %s", err.msg);
	}
}

static struct kust *find(struct ks_fkust *s, const char *ns, const char *name,
			 size_t *idx)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->items[i]->ns, ns) && !strcmp(s->items[i]->name, name)) {
			if (idx)
				*idx = i;
			return s->items[i];
		}
	return NULL;
}

void ks_fkust_source_changed(struct ks_controllers *c, const char *ns, const char *name)
{
	struct ks_fkust *s = c->fkust;

	for (size_t i = 0; s && i < s->n; i++) {
		struct kust *k = s->items[i];
		const char *sns =
			ks_or(ks_jstr(k->obj, "spec.sourceRef.namespace"), k->ns);
		const char *sname = ks_or(ks_jstr(k->obj, "spec.sourceRef.name"), "");

		if (!strcmp(sns, ns) && !strcmp(sname, name))
			reconcile(k);
	}
}

static void on_event(const struct ks_event *ev, void *data)
{
	struct ks_controllers *c = data;
	struct ks_fkust *s = c->fkust;
	const char *ns = ks_or(ks_jstr(ev->obj, "metadata.namespace"), "");
	const char *name = ks_or(ks_jstr(ev->obj, "metadata.name"), "");
	size_t idx = 0;
	struct kust *k = find(s, ns, name, &idx);
	const char *req;
	int64_t gen;

	if (ev->type == KS_EVENT_DELETED) {
		if (k) {
			s->items[idx] = s->items[--s->n];
			kust_drop(k);
		}
		/* Flux's finalizer: a pruning Kustomization takes its objects with it */
		if (ks_jbool(ev->obj, "spec.prune", false) &&
		    !ks_jbool(ev->obj, "spec.suspend", false))
			prune_entries(c, ks_jget(ev->obj, "status.inventory.entries"),
				      NULL);
		return;
	}
	if (!k) {
		k = co_calloc(1, sizeof(*k));
		k->c = c;
		k->refs = 1;
		k->ns = co_strdup(ns);
		k->name = co_strdup(name);
		uv_timer_init(c->loop, &k->timer);
		k->timer.data = k;
		ks_ctl_ref(c);
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 8;
			s->items = co_realloc(s->items, s->cap * sizeof(*s->items));
		}
		s->items[s->n++] = k;
		k->handled_at =
			ks_strdup0(ks_jstr(ev->obj, "status.lastHandledReconcileAt"));
	}
	json_decref(k->obj);
	k->obj = json_incref(ev->obj);
	req = requested_at(k->obj);
	gen = ks_jint(k->obj, "metadata.generation", 1);
	if (!k->seen || gen != k->gen_started ||
	    (req && (!k->handled_at || strcmp(req, k->handled_at)))) {
		k->seen = true;
		reconcile(k);
	}
	/* a Kustomization became ready: its dependents need not wait for their timer */
	if (ks_cond_true(ev->obj, "Ready"))
		for (size_t i = 0; i < s->n; i++) {
			struct kust *o = s->items[i];
			json_t *dep;
			size_t j;

			if (!o->waiting_deps || o->state != K_IDLE)
				continue;
			json_array_foreach(ks_jget(o->obj, "spec.dependsOn"), j, dep)
			{
				const char *dn = ks_or(
					json_string_value(json_object_get(dep, "name")),
					"");
				const char *dns = ks_or(json_string_value(json_object_get(
								dep, "namespace")),
							o->ns);

				if (!strcmp(dn, name) && !strcmp(dns, ns)) {
					reconcile(o);
					break;
				}
			}
		}
}

int ks_fkust_start(struct ks_controllers *c, struct co_error *err)
{
	struct ks_watch_filter f = {.group = "kustomize.toolkit.fluxcd.io",
				    .resource = "kustomizations"};

	c->fkust = co_calloc(1, sizeof(*c->fkust));
	return ks_store_watch(&c->fkust->watch, c->store, &f, 0, on_event, c, err);
}

void ks_fkust_stop(struct ks_controllers *c)
{
	struct ks_fkust *s = c->fkust;

	if (!s)
		return;
	ks_watch_cancel(s->watch);
	for (size_t i = 0; i < s->n; i++)
		kust_drop(s->items[i]);
	free(s->items);
	free(s);
	c->fkust = NULL;
}
