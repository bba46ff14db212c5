/*
 * Stage 6, tenant-namespaces: every tenant of the cluster has its namespace, service
 * account, RBAC, cluster variables and (when its repo needs credentials) git secret,
 * the GitOps way: the wiring is files under tenants/ in the fleet repo, applied by the
 * cluster's "tenants" Kustomization; this stage commits what is missing and waits
 * until the objects exist.
 *
 *   fetching      the fleet repo's branch tip
 *   checking-out  the tree at that commit into a scratch directory (kustomize builds
 *                 need files on disk)
 *   building      what Flux applies for tenants/<env>/<location> (co_manifests_build,
 *                 substituted with the cluster variables): the tenants it defines;
 *                 tenants the request names that are not wired go to committing
 *   committing    tenants/base/<tenant>/ and the overlay's resources entry (only what
 *                 is missing: the sample fleet already wires "core"), pushed with
 *                 git's compare-and-swap; then fetching again
 *   waiting       ask Flux to fetch the fleet repo now, give a tenant GitRepository
 *                 that names a secretRef its secret (from the request's gitTokenEnv,
 *                 applied directly: secrets never go to git), then poll until every
 *                 wiring object of every tenant exists in the cluster
 *
 * Output "tenants": [{name, namespace, kustomization, gitRepository, url, branch}],
 * which deploy-tenants reads. Every step is idempotent, so a resume starts over.
 */
#include "stages/common.h"
#include "stages/manifests.h"
#include "stages/registry.h"
#include "stages/tenant-wiring.h"
#include "base/base64.h"
#include "base/log.h"
#include "clients/flux.h"
#include "clients/git.h"
#include "clients/kube.h"
#include "engine/pipeline.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum state {
	ST_FETCHING,	 /* fleet tip */
	ST_CHECKING_OUT, /* tree on disk */
	ST_BUILDING,	 /* build the overlay, find the tenants */
	ST_COMMITTING,	 /* wire missing tenants */
	ST_WAITING,	 /* objects exist */
	ST_DONE,	 /* not journaled */
};

static const char *const state_names[] = {
	[ST_FETCHING] = "fetching", [ST_CHECKING_OUT] = "checking-out",
	[ST_BUILDING] = "building", [ST_COMMITTING] = "committing",
	[ST_WAITING] = "waiting",
};

enum wait_step { W_RECONCILE, W_SECRETS, W_OBJECTS };

struct namespaces {
	struct co_sm sm;
	enum state state;
	char *url;
	char *cache;
	struct co_git_opts git;
	char sha[CO_GIT_SHA_HEX + 1];
	char *workdir;
	char *overlay; /* tenants/<env>/<location> */
	struct co_manifests *build;
	json_t *items;	  /* built objects, substituted */
	json_t *tenants;  /* co_tenants_from_objects(), filtered by the request */
	json_t *missing;  /* requested tenant names not wired */
	json_t *refs;	  /* objects to wait for */
	json_t *secrets;  /* Secret objects to apply */
	unsigned commits; /* pushes made (bounded) */
	enum wait_step wstep;
	size_t next;
	unsigned attempt;
	struct co_kube *kube;
};

static void step(struct co_sm *sm);

static void set_state(struct namespaces *n, enum state s, const json_t *details)
{
	n->state = s;
	if (s == ST_DONE || co_sm_set_state(&n->sm, state_names[s], details))
		step(&n->sm);
}

static void fail(struct namespaces *n, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct namespaces *n, int code, const char *fmt, ...)
{
	struct co_error err = CO_ERROR_INIT;
	char msg[sizeof(err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	co_error_set(&err, code, "%s", msg);
	co_sm_finish(&n->sm, code, &err);
}

/* ---- git ---- */

static void git_cb(struct co_git_result *res, void *data)
{
	struct namespaces *n = data;
	json_t *d;

	if (co_sm_op_done(&n->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "fleet repo");
		co_sm_finish(&n->sm, res->status, &res->err);
		return;
	}
	switch (n->state) {
	case ST_FETCHING:
		memcpy(n->sha, res->sha, sizeof(n->sha));
		d = json_pack("{s:s}", "commit", n->sha);
		set_state(n, ST_CHECKING_OUT, d);
		json_decref(d);
		return;
	case ST_CHECKING_OUT:
		set_state(n, ST_BUILDING, NULL);
		return;
	case ST_COMMITTING:
		co_stage_log(n->sm.run, CO_LOG_INFO,
			     "tenant wiring committed to the fleet repo as %.12s",
			     res->sha);
		n->commits++;
		set_state(n, ST_FETCHING, NULL);
		return;
	default:
		return;
	}
}

static void enter_git(struct namespaces *n)
{
	struct co_stage_run *run = n->sm.run;
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (n->state == ST_FETCHING) {
		co_stage_waiting(run, "fetch the fleet repo");
		rc = co_git_fetch(co_stage_loop(run), &n->git, co_stages_branch(run),
				  git_cb, n, &err);
	} else {
		co_stage_waiting(run, "check out the fleet repo at %.12s", n->sha);
		co_stages_remove_tree(n->workdir);
		rc = co_git_checkout(co_stage_loop(run), &n->git, n->sha, n->workdir,
				     git_cb, n, &err);
	}
	if (rc < 0) {
		co_sm_finish(&n->sm, rc, &err);
		return;
	}
	co_sm_op_start(&n->sm);
}

/* ---- building ---- */

static bool requested(struct namespaces *n, const char *name)
{
	const json_t *want = json_object_get(co_stage_request(n->sm.run), "tenants");
	const json_t *v;
	size_t i;

	if (!json_is_array(want) || json_array_size(want) == 0)
		return true;
	json_array_foreach(want, i,
			   v) if (json_string_value(v) &&
				  strcmp(json_string_value(v), name) == 0) return true;
	return false;
}

static void build_cb(int status, json_t *items, const struct co_error *err, void *data)
{
	struct namespaces *n = data;
	const json_t *want = json_object_get(co_stage_request(n->sm.run), "tenants");
	json_t *all, *vars, *t, *v, *d;
	size_t i, j;

	n->build = NULL;
	if (co_sm_op_done(&n->sm))
		return;
	if (status < 0) {
		struct co_error e = CO_ERROR_INIT;

		co_error_copy(&e, err);
		co_error_prefix(&e, "%s", n->overlay);
		co_sm_finish(&n->sm, status, &e);
		return;
	}
	json_decref(n->items);
	n->items = json_array();
	vars = co_stages_cluster_vars(n->sm.run);
	json_array_foreach(items, i, v)
	{
		json_t *o = json_deep_copy(json_object_get(v, "object"));

		co_stages_substitute_json(o, vars);
		json_array_append_new(n->items, o);
	}
	json_decref(vars);
	all = co_tenants_from_objects(n->items);
	json_decref(n->tenants);
	n->tenants = json_array();
	json_array_foreach(
		all, i,
		t) if (requested(n, json_string_value(json_object_get(t, "name"))))
		json_array_append(n->tenants, t);
	json_array_clear(n->missing);
	json_array_foreach(want, i, v)
	{
		bool found = false;

		json_array_foreach(
			all, j,
			t) if (json_string_value(v) &&
			       strcmp(json_string_value(json_object_get(t, "name")),
				      json_string_value(v)) == 0) found = true;
		if (!found && json_string_value(v))
			json_array_append(n->missing, v);
	}
	json_decref(all);
	if (json_array_size(n->missing)) {
		if (n->commits > 0) {
			/* committed, and the build still lacks it: the overlay is not
			 * shaped the way the wiring expects */
			fail(n, -EINVAL,
			     "tenant '%s' is still not defined by '%s' after committing "
			     "its wiring",
			     json_string_value(json_array_get(n->missing, 0)),
			     n->overlay);
			return;
		}
		d = json_pack("{s:O}", "tenants", n->missing);
		set_state(n, ST_COMMITTING, d);
		json_decref(d);
		return;
	}
	if (json_array_size(n->tenants) == 0)
		co_stage_log(n->sm.run, CO_LOG_INFO, "'%s' defines no tenant",
			     n->overlay);
	d = json_pack("{s:s, s:O}", "commit", n->sha, "tenants", n->tenants);
	set_state(n, ST_WAITING, d);
	json_decref(d);
}

static void enter_building(struct namespaces *n)
{
	struct co_error err = CO_ERROR_INIT;
	char *dir = co_asprintf("%s/%s", n->workdir, n->overlay);
	struct stat st;
	int rc;

	if (stat(dir, &st) < 0) {
		/* no overlay yet: no tenants, unless the request names some */
		free(dir);
		build_cb(0, NULL, NULL, n);
		return;
	}
	free(dir);
	co_stage_waiting(n->sm.run, "build '%s'", n->overlay);
	rc = co_manifests_build(&n->build, co_stage_loop(n->sm.run), n->workdir,
				n->overlay, build_cb, n, &err);
	if (rc < 0) {
		co_sm_finish(&n->sm, rc, &err);
		return;
	}
	co_sm_op_start(&n->sm);
}

/* ---- committing ---- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	{
		char chunk[4096];
		size_t r;

		while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0 && len < (1u << 20)) {
			buf = co_realloc(buf, len + r + 1);
			memcpy(buf + len, chunk, r);
			len += r;
		}
	}
	fclose(f);
	if (!buf)
		buf = co_strdup("");
	else
		buf[len] = '\0';
	return buf;
}

static void enter_committing(struct namespaces *n)
{
	struct co_stage_run *run = n->sm.run;
	struct co_error err = CO_ERROR_INIT;
	char *kpath = co_asprintf("%s/%s/kustomization.yaml", n->workdir, n->overlay);
	char *overlay_text = read_file(kpath);
	json_t *changes = json_object(), *v;
	size_t i;
	char *msg;
	int rc;

	free(kpath);
	json_array_foreach(n->missing, i, v)
	{
		const char *t = json_string_value(v);
		char *base = co_asprintf("%s/tenants/base/%s", n->workdir, t);
		struct stat st;
		json_t *ch = co_tenants_wiring_changes(t, n->overlay, overlay_text,
						       stat(base, &st) == 0);
		const char *k;
		json_t *c;

		free(base);
		if (!ch) {
			free(overlay_text);
			json_decref(changes);
			fail(n, -EINVAL, "tenant name '%s' is not a DNS-1123 label", t);
			return;
		}
		json_object_foreach(ch, k, c)
		{
			json_object_set(changes, k, c);
			/* the next tenant's overlay entry goes on top of this one */
			if (strstr(k, "/kustomization.yaml") &&
			    strncmp(k, n->overlay, strlen(n->overlay)) == 0) {
				free(overlay_text);
				overlay_text = co_strdup(json_string_value(c));
			}
		}
		json_decref(ch);
	}
	free(overlay_text);
	msg = co_asprintf("Wire tenants into %s\n\nNamespace, service account, RBAC and "
			  "sync objects, committed by cutover for cluster '%s'.",
			  n->overlay, co_stages_req(run, "new", "?"));
	co_stage_waiting(run, "push the tenant wiring to the fleet repo");
	rc = co_git_commit_push(co_stage_loop(run), &n->git,
				&(struct co_git_commit){.branch = co_stages_branch(run),
							.message = msg,
							.changes = changes},
				git_cb, n, &err);
	free(msg);
	json_decref(changes);
	if (rc < 0) {
		co_sm_finish(&n->sm, rc, &err);
		return;
	}
	co_sm_op_start(&n->sm);
}

/* ---- waiting ---- */

static void wait_next(struct namespaces *n);

static void kube_cb(struct co_kube_result *res, void *data)
{
	struct namespaces *n = data;

	if (co_sm_op_done(&n->sm))
		return;
	switch (n->wstep) {
	case W_RECONCILE:
		/* best effort: Flux fetches at its interval anyway */
		if (res->status < 0)
			co_stage_log(n->sm.run, CO_LOG_DEBUG, "reconcile request: %s",
				     res->err.msg);
		n->wstep = W_SECRETS;
		n->next = 0;
		break;
	case W_SECRETS:
		if (res->status < 0 && !co_kube_transient(res)) {
			co_sm_finish(&n->sm, res->status, &res->err);
			return;
		}
		if (res->status < 0) {
			co_stage_waiting(n->sm.run, "apply git secret: %s", res->err.msg);
			co_sm_sleep(&n->sm, co_stage_backoff(n->attempt++, 500, 10000));
			return;
		}
		if (res->status == 0)
			n->next++;
		if (n->next >= json_array_size(n->secrets)) {
			n->wstep = W_OBJECTS;
			n->next = 0;
		}
		break;
	case W_OBJECTS: {
		const json_t *r = json_array_get(n->refs, n->next);

		if (res->status == 0) {
			n->next++;
			n->attempt = 0;
			break;
		}
		if (res->status != -ENOENT && !co_kube_transient(res)) {
			co_sm_finish(&n->sm, res->status, &res->err);
			return;
		}
		co_stage_waiting(n->sm.run,
				 "%s %s%s%s from Kustomization flux-system/tenants at "
				 "main@sha1:%.12s",
				 json_string_value(json_object_get(r, "kind")),
				 json_string_value(json_object_get(r, "namespace")),
				 *json_string_value(json_object_get(r, "namespace")) ? "/"
										     : "",
				 json_string_value(json_object_get(r, "name")), n->sha);
		co_sm_sleep(&n->sm, co_stage_backoff(n->attempt++, 200, 5000));
		return;
	}
	}
	wait_next(n);
}

static void wait_next(struct namespaces *n)
{
	struct co_error err = CO_ERROR_INIT;
	int rc;

	switch (n->wstep) {
	case W_RECONCILE: {
		const char *urls[] = {n->url, NULL};

		rc = co_flux_reconcile_sources(n->kube, urls, co_stages_branch(n->sm.run),
					       kube_cb, n, &err);
		break;
	}
	case W_SECRETS:
		if (n->next >= json_array_size(n->secrets)) {
			n->wstep = W_OBJECTS;
			n->next = 0;
			wait_next(n);
			return;
		}
		rc = co_kube_apply(n->kube, json_array_get(n->secrets, n->next), NULL,
				   kube_cb, n, &err);
		break;
	case W_OBJECTS:
	default: {
		const json_t *r = json_array_get(n->refs, n->next);
		struct co_kube_ref ref;

		if (!r) {
			set_state(n, ST_DONE, NULL);
			return;
		}
		ref = (struct co_kube_ref){
			.api_version =
				json_string_value(json_object_get(r, "apiVersion")),
			.kind = json_string_value(json_object_get(r, "kind")),
			.ns = json_string_value(json_object_get(r, "namespace")),
			.name = json_string_value(json_object_get(r, "name"))};
		rc = co_kube_get(n->kube, &ref, kube_cb, n, &err);
		break;
	}
	}
	if (rc < 0) {
		co_sm_finish(&n->sm, rc, &err);
		return;
	}
	co_sm_op_start(&n->sm);
}

/* Secrets for tenant GitRepositories that name a secretRef, from the token in the
 * request's gitTokenEnv (basic auth, as Flux's source-controller reads it). */
static int collect_secrets(struct namespaces *n, struct co_error *err)
{
	const char *env = co_stages_req(n->sm.run, "gitTokenEnv", NULL);
	const char *token = env ? getenv(env) : NULL;
	json_t *t;
	size_t i;

	json_array_clear(n->secrets);
	json_array_foreach(n->tenants, i, t)
	{
		const char *secret = json_string_value(json_object_get(t, "secretRef"));
		const char *ns = json_string_value(json_object_get(t, "namespace"));
		char *u, *p;

		if (!secret)
			continue;
		if (!token || !*token)
			return co_error_set(err, -EINVAL,
					    "tenant '%s' needs git secret '%s/%s': set "
					    "gitTokenEnv to a variable holding the token",
					    json_string_value(json_object_get(t, "name")),
					    ns, secret);
		u = co_base64_encode("git", 3);
		p = co_base64_encode(token, strlen(token));
		json_array_append_new(
			n->secrets,
			json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:{s:s, s:s}}",
				  "apiVersion", "v1", "kind", "Secret", "metadata",
				  "name", secret, "namespace", ns, "labels",
				  "app.kubernetes.io/managed-by", "cutover", "type",
				  "Opaque", "data", "username", u, "password", p));
		free(u);
		free(p);
	}
	return 0;
}

static void enter_waiting(struct namespaces *n)
{
	struct co_error err = CO_ERROR_INIT;
	const char *kc = co_stages_new_cluster(n->sm.run, "kubeconfig");
	json_t *t;
	size_t i;

	if (!n->kube) {
		if (!kc) {
			fail(n, -EINVAL, "no kubeconfig recorded for the new cluster");
			return;
		}
		if (co_stages_kube_from_path(n->sm.run, kc, &n->kube, &err) < 0) {
			co_sm_finish(&n->sm, err.code ? err.code : -EINVAL, &err);
			return;
		}
	}
	if (collect_secrets(n, &err) < 0) {
		co_sm_finish(&n->sm, err.code, &err);
		return;
	}
	json_array_clear(n->refs);
	json_array_foreach(n->tenants, i, t)
	{
		json_t *r = co_tenants_wiring_refs(
			n->items, json_string_value(json_object_get(t, "namespace")));

		json_array_extend(n->refs, r);
		json_decref(r);
	}
	n->wstep = W_RECONCILE;
	n->next = 0;
	n->attempt = 0;
	wait_next(n);
}

static void step(struct co_sm *sm)
{
	struct namespaces *n = (struct namespaces *)sm;

	switch (n->state) {
	case ST_FETCHING:
	case ST_CHECKING_OUT:
		enter_git(n);
		return;
	case ST_BUILDING:
		enter_building(n);
		return;
	case ST_COMMITTING:
		enter_committing(n);
		return;
	case ST_WAITING:
		if (n->wstep == W_OBJECTS && n->kube)
			wait_next(n); /* a poll round after a sleep */
		else
			enter_waiting(n);
		return;
	case ST_DONE:
		co_stage_record(sm->run, "tenants", json_incref(n->tenants), NULL);
		co_stage_record(sm->run, "fleetCommit", json_string(n->sha), NULL);
		co_stage_log(sm->run, CO_LOG_INFO,
			     "%zu tenants wired, %zu objects present",
			     json_array_size(n->tenants), json_array_size(n->refs));
		co_sm_finish(sm, 0, NULL);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct namespaces *n = (struct namespaces *)sm;

	if (n->build) {
		co_manifests_cancel(n->build);
		n->build = NULL;
	}
	if (n->kube) {
		co_kube_free(n->kube);
		n->kube = NULL;
	}
}

static void release(struct co_sm *sm)
{
	struct namespaces *n = (struct namespaces *)sm;

	co_kube_free(n->kube);
	if (n->workdir)
		co_stages_remove_tree(n->workdir);
	free(n->workdir);
	free(n->overlay);
	free(n->url);
	free(n->cache);
	json_decref(n->items);
	json_decref(n->tenants);
	json_decref(n->missing);
	json_decref(n->refs);
	json_decref(n->secrets);
}

static int namespaces_start(struct co_stage_run *run, const char *state,
			    const json_t *details, struct co_error *err)
{
	const char *url = co_stage_request_str(run, "fleetRepo");
	struct namespaces *n;

	(void)state;
	(void)details;
	if (!url)
		return co_error_set(err, -EINVAL, "no fleet repository in the request");
	n = co_calloc(1, sizeof(*n));
	co_sm_init(&n->sm, run);
	n->sm.step = step;
	n->sm.on_cancel = on_cancel;
	n->sm.release = release;
	n->url = co_strdup(url);
	co_stages_git_opts(run, n->url, &n->git, &n->cache);
	n->workdir = co_stages_workdir(run, "tenants-checkout");
	n->overlay = co_asprintf("tenants/%s/%s", co_stages_req(run, "env", "staging"),
				 co_stages_req(run, "location", "northeurope"));
	n->missing = json_array();
	n->refs = json_array();
	n->secrets = json_array();
	n->items = json_array();
	n->tenants = json_array();
	set_state(n, ST_FETCHING, NULL);
	return 0;
}

const struct co_stage_ops co_stage_tenant_namespaces = {
	.name = "tenant-namespaces",
	.summary = "namespace, service account, RBAC and git secret per tenant, from the "
		   "fleet repo",
	.deadline_ms = 10 * 60 * 1000,
	.before_switch = true,
	.start = namespaces_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
};
