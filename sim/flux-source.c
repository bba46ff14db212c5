/*
 * Flux source-controller: GitRepository (source.toolkit.fluxcd.io/v1).
 *
 * One state per GitRepository, driven by its watch events and an interval timer. A
 * reconcile fetches spec.url (file:// or a local path) at spec.ref (commit, tag or
 * branch, default branch "master" as Flux) into a bare cache under the cluster's state
 * dir with the git client (libgit2 on the thread pool), then records the artifact
 * (revision "<branch>@sha1:<sha>", path, url, digest, lastUpdateTime) and the Ready /
 * ArtifactInStorage conditions with source-controller's reasons; a failed fetch sets
 * Ready False and FetchFailed with reason GitOperationFailed and the git error. A new
 * generation or a reconcile.fluxcd.io/requestedAt annotation reconciles at once (the
 * annotation is echoed in status.lastHandledReconcileAt); suspend stops reconciling.
 * When the revision changes the Kustomizations using the source are told at once.
 */
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/time.h"
#include "clients/git.h"
#include "sim/ctl.h"

#define MANAGER		    "source-controller"
#define DEFAULT_INTERVAL_MS 60000
#define REQ_AT		    "reconcile.fluxcd.io/requestedAt"

struct repo {
	struct ks_controllers *c;
	int refs;
	char *ns, *name;
	json_t *obj;
	uv_timer_t timer;
	bool busy, again, gone, seen;
	int64_t gen_started;
	char *handled_at;
	char *ref_label; /* "main" / "v1" for the revision */
};

/* reconcile.fluxcd.io/requestedAt (the key has dots, so no ks_jget path) */
static const char *requested_at(const json_t *obj)
{
	return json_string_value(
		json_object_get(ks_jget(obj, "metadata.annotations"), REQ_AT));
}

struct ks_fsrc {
	struct ks_watch *watch;
	struct repo **items;
	size_t n, cap;
};

static void reconcile(struct repo *r);

static void repo_unref(struct repo *r)
{
	struct ks_controllers *c = r->c;

	if (--r->refs > 0)
		return;
	json_decref(r->obj);
	free(r->ns);
	free(r->name);
	free(r->handled_at);
	free(r->ref_label);
	free(r);
	ks_ctl_unref(c);
}

static void repo_closed(uv_handle_t *h)
{
	repo_unref(h->data);
}

static void repo_drop(struct repo *r)
{
	r->gone = true;
	uv_close((uv_handle_t *)&r->timer, repo_closed);
}

static void timer_cb(uv_timer_t *t)
{
	reconcile(t->data);
}

static void arm(struct repo *r)
{
	int64_t ms = ks_jduration(r->obj, "spec.interval", DEFAULT_INTERVAL_MS);

	if (ms <= 0)
		ms = DEFAULT_INTERVAL_MS;
	uv_timer_start(&r->timer, timer_cb, ks_ctl_scaled(r->c, ms), 0);
}

static json_t *base_status(struct repo *r)
{
	json_t *st = json_deep_copy(json_object_get(r->obj, "status"));
	const char *req = requested_at(r->obj);

	if (!json_is_object(st)) {
		json_decref(st);
		st = json_object();
	}
	if (req) {
		json_object_set_new(st, "lastHandledReconcileAt", json_string(req));
		free(r->handled_at);
		r->handled_at = co_strdup(req);
	}
	return st;
}

static void put_status(struct repo *r, json_t *st)
{
	struct ks_key key = {"source.toolkit.fluxcd.io", "gitrepositories", r->ns,
			     r->name};
	struct co_error err = CO_ERROR_INIT;

	if (ks_ctl_write_status(r->c, &key, st, MANAGER, &err) < 0)
		co_log_debug("kubesim", "gitrepository '%s/%s' status: %s", r->ns,
			     r->name, err.msg);
	json_decref(st);
}

static void finish(struct repo *r)
{
	r->busy = false;
	if (r->gone || r->c->stopped)
		return;
	if (r->again) {
		r->again = false;
		reconcile(r);
		return;
	}
	arm(r);
}

static void fetched(struct co_git_result *res, void *data)
{
	struct repo *r = data;
	int64_t gen = r->gen_started;
	json_t *st, *art;
	char rev[256], now[40], msg[CO_ERROR_MSG_MAX + 64], digest[72];
	unsigned char md[SHA256_DIGEST_LENGTH];
	const char *old;

	if (r->gone || r->c->stopped) {
		repo_unref(r);
		return;
	}
	st = base_status(r);
	json_object_set_new(st, "observedGeneration", json_integer(gen));
	ks_cond_remove(st, "Reconciling");
	if (res->status < 0) {
		snprintf(msg, sizeof(msg),
			 "failed to checkout and determine revision: %s",
			 res->err.msg[0] ? res->err.msg : co_error_str(&res->err));
		ks_cond_set(st, "Ready", "False", "GitOperationFailed", msg, gen);
		ks_cond_set(st, "FetchFailed", "True", "GitOperationFailed", msg, gen);
		put_status(r, st);
		finish(r);
		repo_unref(r);
		return;
	}
	if (r->ref_label && *r->ref_label)
		snprintf(rev, sizeof(rev), "%s@sha1:%s", r->ref_label, res->sha);
	else
		snprintf(rev, sizeof(rev), "sha1:%s", res->sha);
	old = ks_jstr(r->obj, "status.artifact.revision");
	bool changed = !old || strcmp(old, rev);

	SHA256((const unsigned char *)rev, strlen(rev), md);
	snprintf(digest, sizeof(digest), "sha256:");
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(digest + 7 + 2 * i, 3, "%02x", md[i]);
	art = json_pack(
		"{s:s, s:s, s:s, s:s, s:s}", "path", "", "url", "", "revision", rev,
		"digest", digest, "lastUpdateTime",
		changed ? ks_now_rfc3339(now, sizeof(now))
			: (ks_or(ks_jstr(r->obj, "status.artifact.lastUpdateTime"), "")));
	char *path =
		co_asprintf("gitrepository/%s/%s/%s.tar.gz", r->ns, r->name, res->sha);
	char *url = co_asprintf(
		"http://source-controller.flux-system.svc.cluster.local./%s", path);

	json_object_set_new(art, "path", json_string(path));
	json_object_set_new(art, "url", json_string(url));
	free(path);
	free(url);
	json_object_set_new(st, "artifact", art);
	snprintf(msg, sizeof(msg), "stored artifact for revision '%s'", rev);
	ks_cond_remove(st, "FetchFailed");
	ks_cond_set(st, "Ready", "True", "Succeeded", msg, gen);
	ks_cond_set(st, "ArtifactInStorage", "True", "Succeeded", msg, gen);
	put_status(r, st);
	if (changed && !r->c->stopped)
		ks_fkust_source_changed(r->c, r->ns, r->name);
	finish(r);
	repo_unref(r);
}

static void reconcile(struct repo *r)
{
	struct ks_controllers *c = r->c;
	struct co_error err = CO_ERROR_INIT;
	const char *url = ks_jstr(r->obj, "spec.url");
	const char *commit = ks_jstr(r->obj, "spec.ref.commit");
	const char *tag = ks_jstr(r->obj, "spec.ref.tag");
	const char *branch = ks_jstr(r->obj, "spec.ref.branch");
	const char *name = ks_jstr(r->obj, "spec.ref.name");
	const char *ref;
	char *cache;
	int rc;

	if (r->gone || c->stopped)
		return;
	if (r->busy) {
		r->again = true;
		return;
	}
	uv_timer_stop(&r->timer);
	if (ks_jbool(r->obj, "spec.suspend", false))
		return;
	r->gen_started = ks_jint(r->obj, "metadata.generation", 1);
	free(r->ref_label);
	if (commit) {
		ref = commit;
		r->ref_label = co_strdup(branch ? branch : "");
	} else if (tag) {
		ref = tag;
		r->ref_label = co_strdup(tag);
	} else if (name) {
		ref = name;
		r->ref_label = co_strdup(name);
	} else {
		ref = branch ? branch : "master";
		r->ref_label = co_strdup(ref);
	}
	if (ks_jint(r->obj, "status.observedGeneration", 0) != r->gen_started) {
		json_t *st = base_status(r);

		ks_cond_set(st, "Reconciling", "True", "Progressing",
			    "reconciliation in progress", r->gen_started);
		if (!ks_cond_get(r->obj, "Ready"))
			ks_cond_set(st, "Ready", "Unknown", "Progressing",
				    "reconciliation in progress", r->gen_started);
		put_status(r, st);
		if (r->gone || c->stopped)
			return;
	}
	cache = co_asprintf("%s/flux/gitrepositories/%s/%s.git", c->state_dir, r->ns,
			    r->name);
	struct co_git_opts opts = {.url = url ? url : "", .cache_dir = cache};

	r->busy = true;
	r->refs++;
	rc = url ? co_git_fetch(c->loop, &opts, ref, fetched, r, &err)
		 : co_error_set(&err, -EINVAL, "spec.url is required");
	free(cache);
	if (rc < 0) {
		struct co_git_result res = {.status = rc};

		co_error_copy(&res.err, &err);
		fetched(&res, r);
	}
}

static struct repo *find(struct ks_fsrc *s, const char *ns, const char *name, size_t *idx)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->items[i]->ns, ns) && !strcmp(s->items[i]->name, name)) {
			if (idx)
				*idx = i;
			return s->items[i];
		}
	return NULL;
}

static void on_event(const struct ks_event *ev, void *data)
{
	struct ks_controllers *c = data;
	struct ks_fsrc *s = c->fsrc;
	const char *ns = ks_or(ks_jstr(ev->obj, "metadata.namespace"), "");
	const char *name = ks_or(ks_jstr(ev->obj, "metadata.name"), "");
	size_t idx = 0;
	struct repo *r = find(s, ns, name, &idx);
	const char *req;
	int64_t gen;

	if (ev->type == KS_EVENT_DELETED) {
		if (r) {
			s->items[idx] = s->items[--s->n];
			repo_drop(r);
		}
		return;
	}
	if (!r) {
		r = co_calloc(1, sizeof(*r));
		r->c = c;
		r->refs = 1;
		r->ns = co_strdup(ns);
		r->name = co_strdup(name);
		uv_timer_init(c->loop, &r->timer);
		r->timer.data = r;
		ks_ctl_ref(c);
		if (s->n == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 8;
			s->items = co_realloc(s->items, s->cap * sizeof(*s->items));
		}
		s->items[s->n++] = r;
		r->handled_at =
			ks_strdup0(ks_jstr(ev->obj, "status.lastHandledReconcileAt"));
	}
	json_decref(r->obj);
	r->obj = json_incref(ev->obj);
	req = requested_at(r->obj);
	gen = ks_jint(r->obj, "metadata.generation", 1);
	if (!r->seen || gen != r->gen_started ||
	    (req && (!r->handled_at || strcmp(req, r->handled_at)))) {
		r->seen = true;
		reconcile(r);
	}
}

int ks_fsrc_start(struct ks_controllers *c, struct co_error *err)
{
	struct ks_watch_filter f = {.group = "source.toolkit.fluxcd.io",
				    .resource = "gitrepositories"};

	co_git_global_init();
	c->fsrc = co_calloc(1, sizeof(*c->fsrc));
	return ks_store_watch(&c->fsrc->watch, c->store, &f, 0, on_event, c, err);
}

void ks_fsrc_stop(struct ks_controllers *c)
{
	struct ks_fsrc *s = c->fsrc;

	if (!s)
		return;
	ks_watch_cancel(s->watch);
	for (size_t i = 0; i < s->n; i++)
		repo_drop(s->items[i]);
	free(s->items);
	free(s);
	c->fsrc = NULL;
}
