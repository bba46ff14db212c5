/*
 * Stage 3, bootstrap-flux: Flux on the new cluster, syncing the fleet repo.
 *
 *   fetching       resolve the fleet repo's branch tip
 *   reading        does <cluster path>/flux-system/ hold the sync manifests?
 *   committing     write gotk-sync.yaml + kustomization.yaml (as `flux bootstrap`
 *                  does) and push; git's commit_push is a no-op when they are there
 *   checking-api   does the cluster serve kustomize.toolkit.fluxcd.io?
 *   installing     apply Flux's components from `flux install --export` (flux CLI on
 *                  PATH) or from the request's fluxComponents file
 *   applying       namespace flux-system, ConfigMap cluster-vars and the sync objects
 *                  (server-side apply; the same objects the repo holds)
 *   waiting        GitRepository and Kustomization flux-system Ready at the fleet
 *                  repo's HEAD (main@sha1:<sha>); HEAD is re-read on every round so a
 *                  push meanwhile is waited for too
 *
 * Every step is idempotent (commit only when different, apply is declarative), so a
 * resume simply goes through them again.
 */
#include "stages/common.h"
#include "stages/registry.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/subproc.h"
#include "base/time.h"
#include "base/yaml.h"
#include "clients/git.h"
#include "clients/kube.h"
#include "engine/pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum state {
	ST_FETCHING,	 /* fleet repo tip */
	ST_READING,	 /* sync folder present? */
	ST_COMMITTING,	 /* write and push the sync folder */
	ST_CHECKING_API, /* Flux kinds served? */
	ST_INSTALLING,	 /* apply Flux components */
	ST_APPLYING,	 /* namespace, cluster-vars, sync objects */
	ST_WAITING,	 /* both Ready at HEAD */
	ST_DONE,	 /* outputs recorded; not journaled (the engine marks done) */
};

static const char *const state_names[] = {
	[ST_FETCHING] = "fetching",	[ST_READING] = "reading",
	[ST_COMMITTING] = "committing", [ST_CHECKING_API] = "checking-api",
	[ST_INSTALLING] = "installing", [ST_APPLYING] = "applying",
	[ST_WAITING] = "waiting",
};

enum wait_step { W_HEAD, W_SOURCE, W_KUSTOMIZATION };

struct bootstrap {
	struct co_sm sm;
	enum state state;
	char *url;
	char *cache;
	struct co_git_opts git;
	char *cluster_path;
	char sha[CO_GIT_SHA_HEX + 1];
	json_t *files; /* the sync folder as it should be */
	struct co_kube *kube;
	struct co_subproc *proc;
	enum wait_step wstep;
	unsigned attempt;
	char source_reason[256];
};

static void step(struct co_sm *sm);

static void set_state(struct bootstrap *b, enum state s, const json_t *details)
{
	b->state = s;
	/* the engine journals "done" itself, after the outputs are recorded */
	if (s == ST_DONE || co_sm_set_state(&b->sm, state_names[s], details))
		step(&b->sm);
}

static void fail_err(struct bootstrap *b, struct co_error *err, int fallback)
{
	co_sm_finish(&b->sm, err->code ? err->code : fallback, err);
}

static char *revision(struct bootstrap *b)
{
	return co_stages_revision(co_stages_branch(b->sm.run), b->sha);
}

/* ---- fetching / reading / committing ---- */

static void git_cb(struct co_git_result *res, void *data)
{
	struct bootstrap *b = data;
	const char *key;
	json_t *v;
	bool missing = false;

	if (co_sm_op_done(&b->sm))
		return;
	if (res->status < 0 && !(b->state == ST_READING && res->status == -ENOENT)) {
		co_error_prefix(&res->err, "fleet repo");
		co_sm_finish(&b->sm, res->status, &res->err);
		return;
	}
	switch (b->state) {
	case ST_FETCHING:
		memcpy(b->sha, res->sha, sizeof(b->sha));
		set_state(b, ST_READING, NULL);
		return;
	case ST_READING:
		json_object_foreach(b->files, key, v)
		{
			const char *base =
				key + strlen(b->cluster_path) + strlen("/flux-system/");

			if (res->status < 0 || !json_object_get(res->files, base))
				missing = true;
		}
		if (!missing) {
			co_stage_log(b->sm.run, CO_LOG_INFO,
				     "'%s/flux-system' is in the fleet repo "
				     "at %.12s",
				     b->cluster_path, b->sha);
			set_state(b, ST_CHECKING_API, NULL);
			return;
		}
		set_state(b, ST_COMMITTING, NULL);
		return;
	case ST_COMMITTING:
		memcpy(b->sha, res->sha, sizeof(b->sha));
		co_stage_log(b->sm.run, CO_LOG_INFO, "%s '%s/flux-system' at %.12s",
			     res->changed ? "committed and pushed" : "already present:",
			     b->cluster_path, b->sha);
		set_state(b, ST_CHECKING_API, NULL);
		return;
	default:
		return;
	}
}

static void enter_git(struct bootstrap *b)
{
	struct co_stage_run *run = b->sm.run;
	struct co_error err = CO_ERROR_INIT;
	char *dir;
	int rc = 0;

	switch (b->state) {
	case ST_FETCHING:
		co_stage_waiting(run, "fetch the fleet repo");
		rc = co_git_fetch(co_stage_loop(run), &b->git, co_stages_branch(run),
				  git_cb, b, &err);
		break;
	case ST_READING:
		dir = co_asprintf("%s/flux-system", b->cluster_path);
		rc = co_git_read_tree(co_stage_loop(run), &b->git, b->sha, dir, 64,
				      4 << 20, git_cb, b, &err);
		free(dir);
		break;
	case ST_COMMITTING: {
		char *msg =
			co_asprintf("Add Flux sync manifests for %s", b->cluster_path);
		struct co_git_commit c = {.branch = co_stages_branch(run),
					  .message = msg,
					  .changes = b->files};

		co_stage_waiting(run, "push '%s/flux-system' to the fleet repo",
				 b->cluster_path);
		rc = co_git_commit_push(co_stage_loop(run), &b->git, &c, git_cb, b, &err);
		free(msg);
		break;
	}
	default:
		break;
	}
	if (rc < 0) {
		fail_err(b, &err, -EIO);
		return;
	}
	co_sm_op_start(&b->sm);
}

/* ---- checking-api / installing / applying ---- */

static void applied_cb(struct co_kube_result *res, void *data)
{
	struct bootstrap *b = data;

	if (co_sm_op_done(&b->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "%s",
				b->state == ST_INSTALLING ? "apply Flux components"
							  : "apply flux-system sync");
		co_sm_finish(&b->sm, res->status, &res->err);
		return;
	}
	set_state(b, b->state == ST_INSTALLING ? ST_APPLYING : ST_WAITING, NULL);
}

static void apply_docs(struct bootstrap *b, json_t *docs)
{
	struct co_error err = CO_ERROR_INIT;

	if (co_kube_apply_all(b->kube, docs, "flux-system", applied_cb, b, &err) < 0) {
		fail_err(b, &err, -EIO);
		return;
	}
	co_sm_op_start(&b->sm);
}

static void api_cb(struct co_kube_result *res, void *data)
{
	struct bootstrap *b = data;

	if (co_sm_op_done(&b->sm))
		return;
	if (res->status == 0) {
		co_stage_log(b->sm.run, CO_LOG_INFO, "the cluster serves Flux's APIs");
		set_state(b, ST_APPLYING, NULL);
		return;
	}
	if (res->status == -ENOENT) {
		set_state(b, ST_INSTALLING, NULL);
		return;
	}
	co_sm_finish(&b->sm, res->status, &res->err);
}

static void enter_checking_api(struct bootstrap *b)
{
	struct co_kube_ref ref = {.api_version = "kustomize.toolkit.fluxcd.io/v1",
				  .kind = "Kustomization",
				  .ns = "flux-system"};
	struct co_error err = CO_ERROR_INIT;
	const char *kc = co_stages_new_cluster(b->sm.run, "kubeconfig");

	if (!kc) {
		co_error_set(&err, -EINVAL, "no kubeconfig recorded by create-cluster");
		fail_err(b, &err, -EINVAL);
		return;
	}
	if (!b->kube && co_stages_kube_from_path(b->sm.run, kc, &b->kube, &err) < 0) {
		fail_err(b, &err, -EINVAL);
		return;
	}
	co_stage_waiting(b->sm.run, "discovery of kustomize.toolkit.fluxcd.io");
	if (co_kube_list(b->kube, &ref, NULL, NULL, api_cb, b, &err) < 0) {
		fail_err(b, &err, -EIO);
		return;
	}
	co_sm_op_start(&b->sm);
}

static void flux_export_cb(struct co_subproc_result *res, void *data)
{
	struct bootstrap *b = data;
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = NULL;

	b->proc = NULL;
	if (co_sm_op_done(&b->sm))
		return;
	if (res->status < 0 || res->exit_code != 0 || res->term_signal) {
		co_error_set(&err, res->status < 0 ? res->status : -EIO,
			     "flux install --export: %s",
			     res->status < 0 ? "did not finish" : co_buf_cstr(&res->err));
		fail_err(b, &err, -EIO);
		return;
	}
	if (co_yaml_load_all(&docs, co_buf_cstr(&res->out), res->out.len, "flux install",
			     &err) < 0) {
		fail_err(b, &err, -EINVAL);
		return;
	}
	co_stage_waiting(b->sm.run, "apply %zu Flux component objects",
			 json_array_size(docs));
	apply_docs(b, docs);
	json_decref(docs);
}

static void enter_installing(struct bootstrap *b)
{
	static const char *const argv[] = {"flux", "install", "--export", NULL};
	struct co_subproc_opts opts = {
		.argv = argv, .max_output = 16 * 1024 * 1024, .timeout_ms = 120000};
	const char *file = co_stage_request_str(b->sm.run, "fluxComponents");
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = NULL;

	if (file && *file) {
		if (co_yaml_load_file(&docs, file, &err) < 0) {
			fail_err(b, &err, -EINVAL);
			return;
		}
		co_stage_waiting(b->sm.run, "apply Flux components from '%s'", file);
		apply_docs(b, docs);
		json_decref(docs);
		return;
	}
	co_stage_waiting(b->sm.run, "flux install --export");
	if (co_subproc_run(co_stage_loop(b->sm.run), &b->proc, &opts, flux_export_cb, b,
			   &err) < 0) {
		co_error_set(
			&err, -ENOENT,
			"the cluster does not serve Flux's APIs and neither "
			"a flux CLI on PATH nor a components file (--flux-components) is "
			"available to install them");
		fail_err(b, &err, -ENOENT);
		return;
	}
	co_sm_op_start(&b->sm);
}

static void enter_applying(struct bootstrap *b)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = json_array();
	json_t *vars = co_stages_cluster_vars(b->sm.run);
	const char *key;
	json_t *v;

	json_array_append_new(docs,
			      json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind",
					"Namespace", "metadata", "name", "flux-system"));
	json_array_append_new(docs, json_pack("{s:s, s:s, s:{s:s, s:s}, s:O}",
					      "apiVersion", "v1", "kind", "ConfigMap",
					      "metadata", "name", "cluster-vars",
					      "namespace", "flux-system", "data", vars));
	json_decref(vars);
	json_object_foreach(b->files, key, v)
	{
		json_t *objs = NULL;

		if (!strstr(key, "gotk-sync.yaml"))
			continue;
		if (co_yaml_load_all(&objs, json_string_value(v),
				     strlen(json_string_value(v)), key, &err) < 0) {
			json_decref(docs);
			fail_err(b, &err, -EINVAL);
			return;
		}
		json_array_extend(docs, objs);
		json_decref(objs);
	}
	co_stage_waiting(b->sm.run, "apply flux-system namespace, cluster-vars and sync");
	apply_docs(b, docs);
	json_decref(docs);
}

/* ---- waiting ---- */

static void wait_round(struct bootstrap *b);

static void not_ready(struct bootstrap *b, const char *what, const char *reason)
{
	char *rev = revision(b);

	co_stage_waiting(b->sm.run, "%s flux-system/flux-system Ready at %s (%s)", what,
			 rev, reason);
	free(rev);
	co_sm_sleep(&b->sm, co_stage_backoff(b->attempt++, 300, 5000));
}

static void ready_cb(struct co_kube_result *res, void *data)
{
	struct bootstrap *b = data;
	char reason[256];
	char *rev;
	int r;
	const char *what = b->wstep == W_SOURCE ? "GitRepository" : "Kustomization";

	if (co_sm_op_done(&b->sm))
		return;
	if (res->status < 0) {
		if (res->status == -ENOENT || co_kube_transient(res)) {
			not_ready(b, what, co_error_str(&res->err));
			return;
		}
		co_sm_finish(&b->sm, res->status, &res->err);
		return;
	}
	rev = revision(b);
	r = co_kube_ready(res->obj, rev, reason, sizeof(reason));
	free(rev);
	if (r < 0) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, r, "%s flux-system/flux-system: %s", what, reason);
		fail_err(b, &err, r);
		return;
	}
	if (r == 0) {
		not_ready(b, what, reason);
		return;
	}
	if (b->wstep == W_SOURCE) {
		b->wstep = W_KUSTOMIZATION;
		wait_round(b);
		return;
	}
	set_state(b, ST_DONE, NULL);
}

static void head_cb(struct co_git_result *res, void *data)
{
	struct bootstrap *b = data;

	if (co_sm_op_done(&b->sm))
		return;
	if (res->status == 0 && strcmp(res->sha, b->sha) != 0) {
		co_stage_log(b->sm.run, CO_LOG_INFO,
			     "fleet repo moved to %.12s; waiting for it", res->sha);
		memcpy(b->sha, res->sha, sizeof(b->sha));
	}
	b->wstep = W_SOURCE;
	wait_round(b);
}

static void wait_round(struct bootstrap *b)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_kube_ref ref = {.ns = "flux-system", .name = "flux-system"};
	int rc;

	switch (b->wstep) {
	case W_HEAD:
		rc = co_git_ls_remote(co_stage_loop(b->sm.run), &b->git,
				      co_stages_branch(b->sm.run), head_cb, b, &err);
		break;
	case W_SOURCE:
		ref.api_version = "source.toolkit.fluxcd.io/v1";
		ref.kind = "GitRepository";
		rc = co_kube_get(b->kube, &ref, ready_cb, b, &err);
		break;
	default:
		ref.api_version = "kustomize.toolkit.fluxcd.io/v1";
		ref.kind = "Kustomization";
		rc = co_kube_get(b->kube, &ref, ready_cb, b, &err);
		break;
	}
	if (rc < 0) {
		fail_err(b, &err, -EIO);
		return;
	}
	co_sm_op_start(&b->sm);
}

/* ---- the machine ---- */

static void step(struct co_sm *sm)
{
	struct bootstrap *b = (struct bootstrap *)sm;
	char *rev;

	switch (b->state) {
	case ST_FETCHING:
	case ST_READING:
	case ST_COMMITTING:
		enter_git(b);
		return;
	case ST_CHECKING_API:
		enter_checking_api(b);
		return;
	case ST_INSTALLING:
		enter_installing(b);
		return;
	case ST_APPLYING:
		enter_applying(b);
		return;
	case ST_WAITING:
		b->wstep = W_HEAD; /* each round (and each wake-up) starts at HEAD */
		wait_round(b);
		return;
	case ST_DONE:
		rev = revision(b);
		co_stage_record(sm->run, "fleetRevision", json_string(rev), NULL);
		co_stage_log(sm->run, CO_LOG_INFO, "Flux ready at %s", rev);
		free(rev);
		co_sm_finish(sm, 0, NULL);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct bootstrap *b = (struct bootstrap *)sm;

	if (b->kube) {
		co_kube_free(b->kube);
		b->kube = NULL;
	}
	if (b->proc)
		co_subproc_cancel(b->proc);
}

static void release(struct co_sm *sm)
{
	struct bootstrap *b = (struct bootstrap *)sm;

	co_kube_free(b->kube);
	free(b->url);
	free(b->cache);
	free(b->cluster_path);
	json_decref(b->files);
}

static int bootstrap_start(struct co_stage_run *run, const char *state,
			   const json_t *details, struct co_error *err)
{
	struct bootstrap *b;
	const char *url = co_stage_request_str(run, "fleetRepo");

	(void)state;
	(void)details;
	if (!url)
		return co_error_set(err, -EINVAL, "no fleet repository in the request");
	b = co_calloc(1, sizeof(*b));
	co_sm_init(&b->sm, run);
	b->sm.step = step;
	b->sm.on_cancel = on_cancel;
	b->sm.release = release;
	b->url = co_strdup(url);
	co_stages_git_opts(run, b->url, &b->git, &b->cache);
	b->cluster_path = co_stages_cluster_path(run);
	b->files =
		co_stages_flux_sync_files(b->url, co_stages_branch(run), b->cluster_path);
	set_state(b, ST_FETCHING, NULL);
	return 0;
}

const struct co_stage_ops co_stage_bootstrap_flux = {
	.name = "bootstrap-flux",
	.summary = "install Flux on the new cluster and sync it to the fleet repo",
	.deadline_ms = 10 * 60 * 1000,
	.before_switch = true,
	.start = bootstrap_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
};
