/*
 * Stage 1, preflight: everything that can be known before a cluster is built.
 *
 *   validating          request fields, DNS-1123 names, image tag -> target version
 *   checking-old        the old cluster is in the registry and answers /version
 *   checking-new        the new name is free (or is ours from this pipeline's journal)
 *   scanning            fetch the fleet repo, build what Flux would apply for the
 *                       cluster path, follow every Flux Kustomization to the paths and
 *                       repositories it references (tenant repos included), and check
 *                       each object's apiVersion/kind against the APIs the target
 *                       version no longer serves
 *   checking-reach      the load balancer and Prometheus answer, when configured
 *
 * The scan is a work queue of (repository, path) units; each repository is fetched
 * and checked out once. Everything here only reads, so a resumed preflight simply
 * starts over. A blocking object fails the stage permanently with a report, before
 * any cluster exists.
 */
#include "stages/common.h"
#include "stages/manifests.h"
#include "base/buf.h"
#include "base/log.h"
#include "clients/git.h"
#include "clients/kube-apis.h"
#include "clients/kube.h"
#include "engine/pipeline.h"
#include "net/http-client.h"
#include "providers/provider.h"
#include "providers/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UNITS  256
#define MAX_REPORT 200

enum state {
	ST_VALIDATING,	   /* checking the request itself */
	ST_CHECKING_OLD,   /* old cluster in the registry and answering */
	ST_CHECKING_NEW,   /* new cluster name not taken */
	ST_SCANNING,	   /* removed-API scan of the fleet and tenant repos */
	ST_CHECKING_REACH, /* load balancer and Prometheus reachable */
	ST_DONE,	   /* outputs recorded; not journaled (the engine marks done) */
};

static const char *const state_names[] = {
	[ST_VALIDATING] = "validating",		[ST_CHECKING_OLD] = "checking-old",
	[ST_CHECKING_NEW] = "checking-new",	[ST_SCANNING] = "scanning",
	[ST_CHECKING_REACH] = "checking-reach",
};

enum scan_step { SCAN_FETCH, SCAN_CHECKOUT, SCAN_BUILD };

struct preflight {
	struct co_sm sm;
	enum state state;
	struct co_kube_version target;
	char *target_version;
	char *old_version;
	char *cluster_path;
	char *work_dir; /* <pipeline>/work/preflight: checkouts, removed at the end */
	struct co_kube *kube;
	json_t *vars;
	/* scan */
	json_t *units; /* [{"url", "path", "done"}] */
	size_t unit;
	enum scan_step scan_step;
	json_t *repos;	  /* url -> {"sha", "dir", "label"} */
	json_t *sources;  /* "ns/name" -> url (GitRepository objects seen) */
	json_t *pending;  /* Flux Kustomizations whose source is not known yet */
	json_t *blocking; /* report lines */
	size_t objects;
	char *cache;
	struct co_manifests *build;
	/* reachability */
	json_t *probes; /* [{"what", "url"}] */
	size_t probe;
	struct co_http_call *call;
};

static void step(struct co_sm *sm);

static struct co_pipeline_services const *svc_of(struct preflight *pf)
{
	return co_pipeline_services(co_stage_pipeline(pf->sm.run));
}

static void fail(struct preflight *pf, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct preflight *pf, int code, const char *fmt, ...)
{
	struct co_error err = CO_ERROR_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(&err, code, fmt, ap);
	va_end(ap);
	co_sm_finish(&pf->sm, code, &err);
}

static void set_state(struct preflight *pf, enum state s)
{
	pf->state = s;
	/* the engine journals "done" itself, after the outputs are recorded */
	if (s != ST_DONE && !co_sm_set_state(&pf->sm, state_names[s], NULL))
		return;
	step(&pf->sm);
}

/* ---- validating ---- */

static int validate(struct preflight *pf, struct co_error *err)
{
	struct co_stage_run *run = pf->sm.run;
	const char *old = co_stage_request_str(run, "old");
	const char *new = co_stage_request_str(run, "new");
	const char *image = co_stage_request_str(run, "image");
	const char *env = co_stages_req(run, "env", "staging");
	const char *loc = co_stages_req(run, "location", "northeurope");

	if (!old || !co_stages_dns1123_label(old))
		return co_error_set(err, -EINVAL,
				    "old cluster name '%s' is not a DNS-1123 label",
				    old ? old : "");
	if (!new || !co_stages_dns1123_label(new))
		return co_error_set(err, -EINVAL,
				    "new cluster name '%s' is not a DNS-1123 label",
				    new ? new : "");
	if (strcmp(old, new) == 0)
		return co_error_set(err, -EINVAL, "old and new cluster are both '%s'",
				    old);
	if (!co_stages_dns1123_label(env) || !co_stages_dns1123_label(loc))
		return co_error_set(err, -EINVAL,
				    "env '%s' and location '%s' must be DNS-1123 "
				    "labels",
				    env, loc);
	if (!image || !*image)
		return co_error_set(err, -EINVAL, "no image given");
	pf->target_version = co_provider_version_from_image(image);
	if (!pf->target_version ||
	    co_kube_version_parse(pf->target_version, &pf->target) < 0)
		return co_error_set(err, -EINVAL,
				    "image '%s' has no Kubernetes version tag "
				    "(like rancher/k3s:v1.27.1-k3s1)",
				    image);
	if (!co_stage_request_str(run, "fleetRepo"))
		return co_error_set(err, -EINVAL, "no fleet repository in the request");
	return 0;
}

/* ---- checking-old ---- */

static void old_version_cb(struct co_kube_result *res, void *data)
{
	struct preflight *pf = data;
	struct co_kube_version old;
	const char *gv;

	if (co_sm_op_done(&pf->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "old cluster '%s' does not answer",
				co_stage_request_str(pf->sm.run, "old"));
		co_sm_finish(&pf->sm, res->status, &res->err);
		return;
	}
	gv = json_string_value(json_object_get(res->obj, "gitVersion"));
	pf->old_version = co_strdup(gv ? gv : "unknown");
	co_stage_log(pf->sm.run, CO_LOG_INFO, "old cluster '%s' answers at %s, target %s",
		     co_stage_request_str(pf->sm.run, "old"), pf->old_version,
		     pf->target_version);
	/* A replacement never goes back: workloads and stored objects may already use
	 * APIs the older version does not serve. The same version is fine (a rebuild on
	 * new nodes or a new provider). */
	if (co_kube_version_parse(pf->old_version, &old) == 0 &&
	    (pf->target.minor < old.minor ||
	     (pf->target.minor == old.minor && pf->target.patch < old.patch))) {
		fail(pf, -EINVAL,
		     "target %s is older than '%s' (%s): a replacement cluster must not go "
		     "back a version",
		     pf->target_version, co_stage_request_str(pf->sm.run, "old"),
		     pf->old_version);
		return;
	}
	set_state(pf, ST_CHECKING_NEW);
}

static void enter_checking_old(struct preflight *pf)
{
	const char *old = co_stage_request_str(pf->sm.run, "old");
	struct co_registry *reg = svc_of(pf) ? svc_of(pf)->registry : NULL;
	const json_t *c;
	const char *kc;
	struct co_error err = CO_ERROR_INIT;

	if (!reg) {
		fail(pf, -EINVAL, "no cluster registry");
		return;
	}
	co_registry_reload(reg, &err);
	c = co_registry_get(reg, old);
	if (!c) {
		fail(pf, -ENOENT, "old cluster '%s' is not in the registry under '%s'",
		     old, co_registry_state_dir(reg));
		return;
	}
	kc = json_string_value(json_object_get(c, "kubeconfig"));
	if (!kc) {
		fail(pf, -EINVAL, "old cluster '%s' has no kubeconfig in the registry",
		     old);
		return;
	}
	if (co_stages_kube_from_path(pf->sm.run, kc, &pf->kube, &err) < 0 ||
	    co_kube_version(pf->kube, old_version_cb, pf, &err) < 0) {
		co_sm_finish(&pf->sm, err.code ? err.code : -EINVAL, &err);
		return;
	}
	co_stage_waiting(pf->sm.run, "old cluster '%s' /version", old);
	co_sm_op_start(&pf->sm);
}

/* ---- checking-new ---- */

static void new_get_cb(struct co_provider_result *res, void *data)
{
	struct preflight *pf = data;
	const char *new = co_stage_request_str(pf->sm.run, "new");
	struct co_registry *reg = svc_of(pf)->registry;
	const json_t *c;
	const char *owner;

	if (co_sm_op_done(&pf->sm))
		return;
	if (res->status == -ENOENT) {
		set_state(pf, ST_SCANNING);
		return;
	}
	if (res->status < 0) {
		co_error_prefix(&res->err, "look up new cluster '%s'", new);
		co_sm_finish(&pf->sm, res->status, &res->err);
		return;
	}
	c = co_registry_get(reg, new);
	owner = json_string_value(json_object_get(c, "pipeline"));
	if (owner && strcmp(owner, co_pipeline_id(co_stage_pipeline(pf->sm.run))) == 0) {
		co_stage_log(pf->sm.run, CO_LOG_INFO,
			     "cluster '%s' exists and was created by this pipeline", new);
		set_state(pf, ST_SCANNING);
		return;
	}
	fail(pf, -EEXIST,
	     "cluster '%s' already exists; choose another name or delete it "
	     "with 'cutover cluster delete %s'",
	     new, new);
}

static void enter_checking_new(struct preflight *pf)
{
	struct co_error err = CO_ERROR_INIT;
	const struct co_pipeline_services *svc = svc_of(pf);

	if (!svc || !svc->provider) {
		fail(pf, -EINVAL, "no cluster provider");
		return;
	}
	if (co_provider_get(svc->provider, co_stage_request_str(pf->sm.run, "new"),
			    new_get_cb, pf, &err) < 0) {
		co_sm_finish(&pf->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_stage_waiting(pf->sm.run, "provider lookup of '%s'",
			 co_stage_request_str(pf->sm.run, "new"));
	co_sm_op_start(&pf->sm);
}

/* ---- scanning ---- */

static const char *repo_label(const char *url)
{
	const char *s = strrchr(url, '/');

	return s && s[1] ? s + 1 : url;
}

static void add_unit(struct preflight *pf, const char *url, const char *path)
{
	size_t i;
	json_t *u;
	const char *p = path;

	while (p[0] == '.' && p[1] == '/')
		p += 2;
	json_array_foreach(
		pf->units, i,
		u) if (strcmp(json_string_value(json_object_get(u, "url")), url) == 0 &&
		       strcmp(json_string_value(json_object_get(u, "path")), p) ==
			       0) return;
	if (json_array_size(pf->units) >= MAX_UNITS)
		return;
	json_array_append_new(pf->units, json_pack("{s:s, s:s}", "url", url, "path", p));
}

static bool is_flux_kustomization(const json_t *obj)
{
	const char *av = json_string_value(json_object_get(obj, "apiVersion"));
	const char *k = json_string_value(json_object_get(obj, "kind"));

	return av && k && strncmp(av, "kustomize.toolkit.fluxcd.io/", 28) == 0 &&
	       strcmp(k, "Kustomization") == 0;
}

static bool is_git_repository(const json_t *obj)
{
	const char *av = json_string_value(json_object_get(obj, "apiVersion"));
	const char *k = json_string_value(json_object_get(obj, "kind"));

	return av && k && strncmp(av, "source.toolkit.fluxcd.io/", 25) == 0 &&
	       strcmp(k, "GitRepository") == 0;
}

static const char *obj_ns(const json_t *obj, const char *def)
{
	const char *ns = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "namespace"));

	return ns && *ns ? ns : def;
}

/* Resolve pending Kustomizations whose GitRepository is now known. */
static void resolve_pending(struct preflight *pf)
{
	const char *fleet = co_stage_request_str(pf->sm.run, "fleetRepo");

	for (size_t i = 0; i < json_array_size(pf->pending);) {
		json_t *k = json_array_get(pf->pending, i);
		const json_t *ref =
			json_object_get(json_object_get(k, "spec"), "sourceRef");
		const char *name = json_string_value(json_object_get(ref, "name"));
		const char *kind = json_string_value(json_object_get(ref, "kind"));
		const char *ns = json_string_value(json_object_get(ref, "namespace"));
		const char *path = json_string_value(
			json_object_get(json_object_get(k, "spec"), "path"));
		const char *url = NULL;
		char *key;

		if (!ns)
			ns = obj_ns(k, "flux-system");
		if (kind && strcmp(kind, "GitRepository") != 0) {
			json_array_remove(pf->pending, i); /* OCI, Bucket: not scanned */
			continue;
		}
		key = co_asprintf("%s/%s", ns, name ? name : "");
		url = json_string_value(json_object_get(pf->sources, key));
		if (!url && name && strcmp(name, "flux-system") == 0 &&
		    strcmp(ns, "flux-system") == 0)
			url = fleet;
		free(key);
		if (!url) {
			i++;
			continue;
		}
		add_unit(pf, url, path ? path : "");
		json_array_remove(pf->pending, i);
	}
}

static void record_blocking(struct preflight *pf, const char *repo, const char *source,
			    const json_t *obj, const struct co_kube_removed_api *r)
{
	const char *name = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "name"));
	bool advice = strchr(r->replacement, '/') == NULL;
	char *line =
		co_asprintf("%s %s: %s %s '%s' is removed in v1.%d; use %s%s", repo,
			    source, r->api_version, r->kind, name ? name : "?",
			    r->removed_minor, r->replacement, advice ? "" : " instead");

	if (json_array_size(pf->blocking) < MAX_REPORT)
		json_array_append_new(pf->blocking, json_string(line));
	free(line);
}

static void analyse(struct preflight *pf, const char *url, json_t *items)
{
	const char *repo = repo_label(url);
	size_t i;
	json_t *it;

	json_array_foreach(items, i, it)
	{
		json_t *obj = json_deep_copy(json_object_get(it, "object"));
		const char *source = json_string_value(json_object_get(it, "source"));
		const struct co_kube_removed_api *r;

		co_stages_substitute_json(obj, pf->vars);
		pf->objects++;
		r = co_kube_api_removed(
			json_string_value(json_object_get(obj, "apiVersion")),
			json_string_value(json_object_get(obj, "kind")), &pf->target);
		if (r)
			record_blocking(pf, repo, source ? source : "?", obj, r);
		if (is_git_repository(obj)) {
			const char *gurl = json_string_value(
				json_object_get(json_object_get(obj, "spec"), "url"));
			const char *name = json_string_value(json_object_get(
				json_object_get(obj, "metadata"), "name"));
			/* tenant wiring is namespaced by its kustomization, default to it
			 */
			char *key = co_asprintf("%s/%s", obj_ns(obj, "flux-system"),
						name ? name : "");

			if (gurl)
				json_object_set_new(pf->sources, key, json_string(gurl));
			free(key);
			if (name && gurl) {
				/* a Kustomization in another namespace may reference it
				 * too */
				key = co_asprintf("*/%s", name);
				json_object_set_new(pf->sources, key, json_string(gurl));
				free(key);
			}
		}
		if (is_flux_kustomization(obj))
			json_array_append(pf->pending, obj);
		json_decref(obj);
	}
	/* sourceRefs without a namespace resolve against any namespace by name */
	for (size_t j = 0; j < json_array_size(pf->pending); j++) {
		json_t *k = json_array_get(pf->pending, j);
		json_t *ref = json_object_get(json_object_get(k, "spec"), "sourceRef");
		const char *name = json_string_value(json_object_get(ref, "name"));
		const char *ns = obj_ns(k, NULL);
		char *key, *any;

		if (!name || json_object_get(ref, "namespace") || !ns)
			continue;
		key = co_asprintf("%s/%s", ns, name);
		any = co_asprintf("*/%s", name);
		if (!json_object_get(pf->sources, key) &&
		    json_object_get(pf->sources, any))
			json_object_set(pf->sources, key,
					json_object_get(pf->sources, any));
		free(key);
		free(any);
	}
	resolve_pending(pf);
}

static void scan_next(struct preflight *pf);

static void build_cb(int status, json_t *items, const struct co_error *err, void *data)
{
	struct preflight *pf = data;
	const json_t *u = json_array_get(pf->units, pf->unit);
	const char *url = json_string_value(json_object_get(u, "url"));

	pf->build = NULL;
	if (co_sm_op_done(&pf->sm))
		return;
	if (status < 0) {
		struct co_error e = CO_ERROR_INIT;

		co_error_copy(&e, err);
		co_error_prefix(&e, "build %s '%s'", repo_label(url),
				json_string_value(json_object_get(u, "path")));
		co_sm_finish(&pf->sm, status == -ECANCELED ? status : -EINVAL, &e);
		return;
	}
	analyse(pf, url, items);
	pf->unit++;
	pf->scan_step = SCAN_FETCH;
	scan_next(pf);
}

static void git_cb(struct co_git_result *res, void *data)
{
	struct preflight *pf = data;
	const json_t *u = json_array_get(pf->units, pf->unit);
	const char *url = json_string_value(json_object_get(u, "url"));
	json_t *repo;

	free(pf->cache);
	pf->cache = NULL;
	if (co_sm_op_done(&pf->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "%s", repo_label(url));
		co_sm_finish(&pf->sm, res->status, &res->err);
		return;
	}
	repo = json_object_get(pf->repos, url);
	if (pf->scan_step == SCAN_FETCH) {
		char *dir = co_asprintf("%s/%zu-%s", pf->work_dir,
					json_object_size(pf->repos), repo_label(url));

		repo = json_pack("{s:s, s:s}", "sha", res->sha, "dir", dir);
		json_object_set_new(pf->repos, url, repo);
		free(dir);
		if (strcmp(url, co_stage_request_str(pf->sm.run, "fleetRepo")) == 0)
			co_stage_record(pf->sm.run, "fleetRevision",
					json_string(res->sha), NULL);
		pf->scan_step = SCAN_CHECKOUT;
	} else {
		json_object_set_new(repo, "checkedOut", json_true());
		pf->scan_step = SCAN_BUILD;
	}
	scan_next(pf);
}

static void scan_next(struct preflight *pf)
{
	struct co_stage_run *run = pf->sm.run;
	struct co_error err = CO_ERROR_INIT;
	const json_t *u;
	const char *url, *path;
	json_t *repo;
	struct co_git_opts opts;
	int rc = 0;

	if (pf->unit >= json_array_size(pf->units)) {
		size_t n = json_array_size(pf->blocking);

		co_stage_record(run, "scanned",
				json_pack("{s:i, s:i, s:i}", "repositories",
					  (int)json_object_size(pf->repos), "paths",
					  (int)json_array_size(pf->units), "objects",
					  (int)pf->objects),
				NULL);
		if (n == 0) {
			co_stage_log(run, CO_LOG_INFO,
				     "scanned %zu objects in %zu paths of %zu "
				     "repositories: no API removed by %s is used",
				     pf->objects, json_array_size(pf->units),
				     json_object_size(pf->repos), pf->target_version);
			set_state(pf, ST_CHECKING_REACH);
			return;
		}
		for (size_t i = 0; i < n; i++)
			co_stage_log(run, CO_LOG_ERROR, "%s",
				     json_string_value(json_array_get(pf->blocking, i)));
		co_stage_record(run, "blocking", json_deep_copy(pf->blocking), NULL);
		fail(pf, -EINVAL, "%zu object%s use%s APIs removed by %s: %s%s", n,
		     n == 1 ? "" : "s", n == 1 ? "s" : "", pf->target_version,
		     json_string_value(json_array_get(pf->blocking, 0)),
		     n > 1 ? " (and more, see the report)" : "");
		return;
	}
	u = json_array_get(pf->units, pf->unit);
	url = json_string_value(json_object_get(u, "url"));
	path = json_string_value(json_object_get(u, "path"));
	repo = json_object_get(pf->repos, url);
	if (pf->scan_step == SCAN_FETCH && repo)
		pf->scan_step = json_is_true(json_object_get(repo, "checkedOut"))
					? SCAN_BUILD
					: SCAN_CHECKOUT;
	switch (pf->scan_step) {
	case SCAN_FETCH:
		co_stages_git_opts(run, url, &opts, &pf->cache);
		co_stage_waiting(run, "fetch %s", repo_label(url));
		rc = co_git_fetch(co_stage_loop(run), &opts, co_stages_branch(run),
				  git_cb, pf, &err);
		break;
	case SCAN_CHECKOUT:
		co_stages_git_opts(run, url, &opts, &pf->cache);
		co_stage_waiting(run, "check out %s", repo_label(url));
		rc = co_git_checkout(co_stage_loop(run), &opts,
				     json_string_value(json_object_get(repo, "sha")),
				     json_string_value(json_object_get(repo, "dir")),
				     git_cb, pf, &err);
		break;
	case SCAN_BUILD:
		co_stage_waiting(run, "build %s '%s'", repo_label(url),
				 *path ? path : ".");
		rc = co_manifests_build(&pf->build, co_stage_loop(run),
					json_string_value(json_object_get(repo, "dir")),
					path, build_cb, pf, &err);
		break;
	}
	if (rc < 0) {
		free(pf->cache);
		pf->cache = NULL;
		if (pf->scan_step == SCAN_BUILD)
			co_error_prefix(&err, "%s", repo_label(url));
		co_sm_finish(&pf->sm, rc, &err);
		return;
	}
	co_sm_op_start(&pf->sm);
}

static void enter_scanning(struct preflight *pf)
{
	pf->units = json_array();
	pf->repos = json_object();
	pf->sources = json_object();
	pf->pending = json_array();
	pf->blocking = json_array();
	pf->vars = co_stages_cluster_vars(pf->sm.run);
	{
		pf->work_dir = co_stages_workdir(pf->sm.run, "work/preflight");
		/* a checkout left by an earlier attempt may hold files since deleted */
		co_stages_remove_tree(pf->work_dir);
	}
	add_unit(pf, co_stage_request_str(pf->sm.run, "fleetRepo"), pf->cluster_path);
	pf->unit = 0;
	pf->scan_step = SCAN_FETCH;
	scan_next(pf);
}

/* ---- checking-reach ---- */

static void probe_next(struct preflight *pf);

static void probe_cb(struct co_http_response *res, void *data)
{
	struct preflight *pf = data;
	const json_t *p = json_array_get(pf->probes, pf->probe);

	pf->call = NULL;
	if (co_sm_op_done(&pf->sm))
		return;
	if (res->status < 0 || res->code == 0 || res->code >= 500) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, res->status < 0 ? res->status : -EAGAIN,
			     "%s '%s' does not "
			     "answer: %s",
			     json_string_value(json_object_get(p, "what")),
			     json_string_value(json_object_get(p, "url")),
			     res->status < 0 ? co_error_str(&res->err) : "server error");
		co_sm_finish(&pf->sm, err.code, &err);
		return;
	}
	pf->probe++;
	probe_next(pf);
}

static void probe_next(struct preflight *pf)
{
	const json_t *p = json_array_get(pf->probes, pf->probe);
	const struct co_pipeline_services *svc = svc_of(pf);
	struct co_http_req_opts o = {.timeout_ms = 10000};
	struct co_error err = CO_ERROR_INIT;

	if (!p) {
		set_state(pf, ST_DONE);
		return;
	}
	if (!svc || !svc->http) {
		fail(pf, -EINVAL, "no http client for reachability checks");
		return;
	}
	o.url = json_string_value(json_object_get(p, "url"));
	co_stage_waiting(pf->sm.run, "%s at '%s'",
			 json_string_value(json_object_get(p, "what")), o.url);
	if (co_http_request(svc->http, &pf->call, &o, probe_cb, pf, &err) < 0) {
		co_sm_finish(&pf->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_sm_op_start(&pf->sm);
}

static void enter_checking_reach(struct preflight *pf)
{
	const char *lb = co_stage_request_str(pf->sm.run, "lbUrl");
	const char *prom = co_stage_request_str(pf->sm.run, "prometheusUrl");

	pf->probes = json_array();
	if (lb && *lb)
		json_array_append_new(pf->probes, json_pack("{s:s, s:s}", "what",
							    "load balancer", "url", lb));
	if (prom && *prom) {
		char *u = co_asprintf("%s/-/ready", prom);

		json_array_append_new(pf->probes, json_pack("{s:s, s:s}", "what",
							    "prometheus", "url", u));
		free(u);
	}
	pf->probe = 0;
	probe_next(pf);
}

/* ---- the machine ---- */

static void step(struct co_sm *sm)
{
	struct preflight *pf = (struct preflight *)sm;
	struct co_error err = CO_ERROR_INIT;

	switch (pf->state) {
	case ST_VALIDATING:
		if (validate(pf, &err) < 0) {
			co_sm_finish(sm, err.code, &err);
			return;
		}
		set_state(pf, ST_CHECKING_OLD);
		return;
	case ST_CHECKING_OLD:
		enter_checking_old(pf);
		return;
	case ST_CHECKING_NEW:
		co_kube_free(pf->kube);
		pf->kube = NULL;
		enter_checking_new(pf);
		return;
	case ST_SCANNING:
		enter_scanning(pf);
		return;
	case ST_CHECKING_REACH:
		enter_checking_reach(pf);
		return;
	case ST_DONE:
		co_stage_record(sm->run, "targetVersion", json_string(pf->target_version),
				NULL);
		co_stage_record(sm->run, "oldVersion", json_string(pf->old_version),
				NULL);
		co_sm_finish(sm, 0, NULL);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct preflight *pf = (struct preflight *)sm;

	if (pf->kube) {
		co_kube_free(pf->kube); /* its callback reports -ECANCELED */
		pf->kube = NULL;
	}
	if (pf->build)
		co_manifests_cancel(pf->build);
	if (pf->call)
		co_http_cancel(pf->call);
	/* git work and provider calls run out; their callbacks end the stage */
}

static void release(struct co_sm *sm)
{
	struct preflight *pf = (struct preflight *)sm;

	co_kube_free(pf->kube);
	if (pf->work_dir)
		co_stages_remove_tree(pf->work_dir);
	free(pf->work_dir);
	free(pf->target_version);
	free(pf->old_version);
	free(pf->cluster_path);
	free(pf->cache);
	json_decref(pf->vars);
	json_decref(pf->units);
	json_decref(pf->repos);
	json_decref(pf->sources);
	json_decref(pf->pending);
	json_decref(pf->blocking);
	json_decref(pf->probes);
}

static int preflight_start(struct co_stage_run *run, const char *state,
			   const json_t *details, struct co_error *err)
{
	struct preflight *pf = co_calloc(1, sizeof(*pf));

	(void)state; /* read-only checks: a resumed preflight starts over */
	co_sm_init(&pf->sm, run);
	pf->sm.step = step;
	pf->sm.on_cancel = on_cancel;
	pf->sm.release = release;
	pf->cluster_path = co_stages_cluster_path(run);
	pf->state = ST_VALIDATING;
	if (!co_sm_set_state(&pf->sm, state_names[ST_VALIDATING], NULL))
		return 0;
	step(&pf->sm);
	return 0;
}

const struct co_stage_ops co_stage_preflight = {
	.name = "preflight",
	.summary = "validate the request, scan manifests for removed APIs, check "
		   "reachability",
	.deadline_ms = 10 * 60 * 1000,
	.before_switch = true,
	.start = preflight_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
};
