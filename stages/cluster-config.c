/*
 * Stage 4, cluster-config: the cluster-specific Kustomizations (operations, tenants,
 * whatever the cluster path defines) are all Ready at the fleet repo's HEAD.
 *
 *   reading    fetch the fleet repo and list the Flux Kustomizations defined under
 *              clusters/<env>/<location> (the flux-system one included)
 *   waiting    poll them in order: each Ready, observedGeneration current and
 *              lastAppliedRevision at HEAD (Flux honours dependsOn, so a dependent
 *              one reports DependencyNotReady until its dependency is Ready; that
 *              reason is what co_stage_waiting() shows). HEAD is re-read every
 *              round, so a push meanwhile is waited for.
 *
 * Read-only: a resume starts over.
 */
#include "stages/common.h"
#include "stages/registry.h"
#include "base/log.h"
#include "base/yaml.h"
#include "clients/git.h"
#include "clients/kube.h"
#include "engine/pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum state {
	ST_READING, /* fleet tip and the cluster path's Kustomizations */
	ST_WAITING, /* all Ready at HEAD */
	ST_DONE,    /* outputs recorded; not journaled (the engine marks done) */
};

static const char *const state_names[] = {
	[ST_READING] = "reading",
	[ST_WAITING] = "waiting",
};

struct config {
	struct co_sm sm;
	enum state state;
	char *url;
	char *cache;
	struct co_git_opts git;
	char *cluster_path;
	char sha[CO_GIT_SHA_HEX + 1];
	int reading_step; /* 0 fetch, 1 read_tree */
	json_t *names;	  /* ["ns/name"...] in file order */
	size_t next;	  /* index being checked this round; SIZE_MAX = HEAD */
	unsigned attempt;
	struct co_kube *kube;
};

static void step(struct co_sm *sm);

static void set_state(struct config *c, enum state s, const json_t *details)
{
	c->state = s;
	/* the engine journals "done" itself, after the outputs are recorded */
	if (s == ST_DONE || co_sm_set_state(&c->sm, state_names[s], details))
		step(&c->sm);
}

static void fail_err(struct config *c, struct co_error *err, int fallback)
{
	co_sm_finish(&c->sm, err->code ? err->code : fallback, err);
}

/* ---- reading ---- */

static void git_cb(struct co_git_result *res, void *data)
{
	struct config *c = data;
	json_t *details;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "fleet repo");
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	}
	if (c->reading_step == 0) {
		memcpy(c->sha, res->sha, sizeof(c->sha));
		c->reading_step = 1;
		step(&c->sm);
		return;
	}
	c->names = co_stages_flux_kustomizations(res->files);
	if (json_array_size(c->names) == 0) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, -ENOENT, "'%s' defines no Flux Kustomization",
			     c->cluster_path);
		fail_err(c, &err, -ENOENT);
		return;
	}
	details = json_pack("{s:O}", "kustomizations", c->names);
	set_state(c, ST_WAITING, details);
	json_decref(details);
}

static void enter_reading(struct config *c)
{
	struct co_stage_run *run = c->sm.run;
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (c->reading_step == 0) {
		co_stage_waiting(run, "fetch the fleet repo");
		rc = co_git_fetch(co_stage_loop(run), &c->git, co_stages_branch(run),
				  git_cb, c, &err);
	} else {
		rc = co_git_read_tree(co_stage_loop(run), &c->git, c->sha,
				      c->cluster_path, 0, 0, git_cb, c, &err);
	}
	if (rc < 0) {
		fail_err(c, &err, -EIO);
		return;
	}
	co_sm_op_start(&c->sm);
}

/* ---- waiting ---- */

static void check_next(struct config *c);

static void get_cb(struct co_kube_result *res, void *data)
{
	struct config *c = data;
	const char *id = json_string_value(json_array_get(c->names, c->next));
	char *rev, reason[256];
	int r;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status < 0 && res->status != -ENOENT && !co_kube_transient(res)) {
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	}
	rev = co_stages_revision(co_stages_branch(c->sm.run), c->sha);
	if (res->status < 0) {
		snprintf(reason, sizeof(reason), "%s",
			 res->status == -ENOENT ? "not created yet"
						: co_error_str(&res->err));
		r = 0;
	} else {
		r = co_kube_ready(res->obj, rev, reason, sizeof(reason));
	}
	if (r < 0) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, r, "Kustomization %s: %s", id, reason);
		free(rev);
		fail_err(c, &err, r);
		return;
	}
	if (r == 0) {
		co_stage_waiting(c->sm.run, "Kustomization %s Ready at %s (%s)", id, rev,
				 reason);
		free(rev);
		co_sm_sleep(&c->sm, co_stage_backoff(c->attempt++, 300, 5000));
		return;
	}
	free(rev);
	c->next++;
	check_next(c);
}

static void head_cb(struct co_git_result *res, void *data)
{
	struct config *c = data;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status == 0 && strcmp(res->sha, c->sha) != 0) {
		co_stage_log(c->sm.run, CO_LOG_INFO,
			     "fleet repo moved to %.12s; waiting for it", res->sha);
		memcpy(c->sha, res->sha, sizeof(c->sha));
	}
	c->next = 0;
	check_next(c);
}

static void check_next(struct config *c)
{
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (c->next == SIZE_MAX) {
		rc = co_git_ls_remote(co_stage_loop(c->sm.run), &c->git,
				      co_stages_branch(c->sm.run), head_cb, c, &err);
	} else if (c->next >= json_array_size(c->names)) {
		set_state(c, ST_DONE, NULL);
		return;
	} else {
		const char *id = json_string_value(json_array_get(c->names, c->next));
		const char *slash = strchr(id, '/');
		char *ns = co_asprintf("%.*s", (int)(slash - id), id);
		struct co_kube_ref ref = {.api_version = "kustomize.toolkit.fluxcd.io/v1",
					  .kind = "Kustomization",
					  .ns = ns,
					  .name = slash + 1};

		rc = co_kube_get(c->kube, &ref, get_cb, c, &err);
		free(ns);
	}
	if (rc < 0) {
		fail_err(c, &err, -EIO);
		return;
	}
	co_sm_op_start(&c->sm);
}

static void enter_waiting(struct config *c)
{
	struct co_error err = CO_ERROR_INIT;
	const char *kc = co_stages_new_cluster(c->sm.run, "kubeconfig");

	if (!c->kube) {
		if (!kc) {
			co_error_set(&err, -EINVAL,
				     "no kubeconfig recorded by create-cluster");
			fail_err(c, &err, -EINVAL);
			return;
		}
		if (co_stages_kube_from_path(c->sm.run, kc, &c->kube, &err) < 0) {
			fail_err(c, &err, -EINVAL);
			return;
		}
	}
	c->next = SIZE_MAX;
	check_next(c);
}

static void step(struct co_sm *sm)
{
	struct config *c = (struct config *)sm;
	char *rev;

	switch (c->state) {
	case ST_READING:
		enter_reading(c);
		return;
	case ST_WAITING:
		enter_waiting(c);
		return;
	case ST_DONE:
		rev = co_stages_revision(co_stages_branch(sm->run), c->sha);
		co_stage_record(sm->run, "kustomizations", json_incref(c->names), NULL);
		co_stage_record(sm->run, "fleetRevision", json_string(rev), NULL);
		co_stage_log(sm->run, CO_LOG_INFO, "%zu Kustomizations Ready at %s",
			     json_array_size(c->names), rev);
		free(rev);
		co_sm_finish(sm, 0, NULL);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct config *c = (struct config *)sm;

	if (c->kube) {
		co_kube_free(c->kube);
		c->kube = NULL;
	}
}

static void release(struct co_sm *sm)
{
	struct config *c = (struct config *)sm;

	co_kube_free(c->kube);
	free(c->url);
	free(c->cache);
	free(c->cluster_path);
	json_decref(c->names);
}

static int config_start(struct co_stage_run *run, const char *state,
			const json_t *details, struct co_error *err)
{
	struct config *c;
	const char *url = co_stage_request_str(run, "fleetRepo");

	(void)state;
	(void)details;
	if (!url)
		return co_error_set(err, -EINVAL, "no fleet repository in the request");
	c = co_calloc(1, sizeof(*c));
	co_sm_init(&c->sm, run);
	c->sm.step = step;
	c->sm.on_cancel = on_cancel;
	c->sm.release = release;
	c->url = co_strdup(url);
	co_stages_git_opts(run, c->url, &c->git, &c->cache);
	c->cluster_path = co_stages_cluster_path(run);
	set_state(c, ST_READING, NULL);
	return 0;
}

const struct co_stage_ops co_stage_cluster_config = {
	.name = "cluster-config",
	.summary = "wait for every Kustomization of the cluster path to be Ready at HEAD",
	.deadline_ms = 15 * 60 * 1000,
	.before_switch = true,
	.start = config_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
};
