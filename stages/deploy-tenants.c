/*
 * Stage 7, deploy-tenants: every tenant of the cluster (tenant-namespaces' output)
 * runs at its repo's HEAD, and every Flagger Canary of it has passed an analysis of
 * that revision on the new cluster.
 *
 * Stage states (journaled):
 *   gate        cluster-vars' CUTOVER_GATE_URL is the live URL of the gate the runner
 *               hosts (a resumed runner listens elsewhere): patch it and ask Flux to
 *               reapply the tenants' wiring when it is not
 *   waiting     the tenants progress, each on its own small machine, at most
 *               tenantConcurrency (default 4) at once
 *   analysing   a canary was stamped for a revision (details: tenant, canary,
 *               revision) - see below
 *   tenant-ready a tenant reached its HEAD with every canary Succeeded
 *
 * Per tenant (not journaled; a resume goes through them again, which is safe):
 *   head        ls-remote of the tenant repo's branch; a new sha restarts the tenant
 *               from source, with a reconcile request so Flux fetches it now
 *   source      GitRepository Ready at <branch>@sha1:<sha>
 *   kustomization  Kustomization Ready at that revision (co_kube_ready)
 *   list        the Canaries (flagger.app/v1beta1) of the tenant's namespace; the
 *               confirm-rollout gate of each is opened on the hosted gate unless the
 *               request asks for manual approval (manualGate)
 *   stamp       per canary, once it has settled (Initialized, Succeeded or Failed):
 *               Flagger promotes a release without analysis on its first install, so
 *               on a new cluster nothing would be proven. Like `kubectl rollout
 *               restart`, cutover stamps the target's pod template with the
 *               annotation cutover.io/revision=<revision>; Flagger sees a new
 *               revision and runs the full analysis (gate, load test, metrics,
 *               rollback). The canary's status.lastAppliedSpec before the stamp is
 *               kept, so only an analysis that started after it counts. A template
 *               that already carries the stamp (resume) is not stamped again.
 *   canary      wait for Succeeded (done) or Failed (the stage fails with the
 *               canary's condition message)
 *   done        at HEAD; HEAD is checked once more before the tenant counts as done
 *
 * Pushes meanwhile: every tenant re-reads its HEAD every few (scaled) seconds; a
 * verified webhook (ops->on_push, from the runner's hosted serve module) or a new
 * line in <state>/events/git-push.jsonl (written by any `cutover serve` on this state
 * dir, watched with uv_fs_event) makes the matching tenants check at once and asks
 * Flux on the new cluster to reconcile the pushed repository's GitRepositories.
 *
 * Operations in flight are counted; a failure or a cancel stops new ones and the
 * stage finishes when the count drops to zero (kube calls are cancelled by freeing
 * the client, libgit2 work runs out).
 */
#include "stages/common.h"
#include "stages/registry.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/time.h"
#include "clients/flux.h"
#include "clients/git-webhook.h"
#include "clients/git.h"
#include "clients/kube.h"
#include "engine/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAMP_ANNOTATION "cutover.io/revision"
#define CANARY_API	 "flagger.app/v1beta1"
#define PUSH_LOG	 "git-push.jsonl"
#define PUSH_READ_MAX	 (256 * 1024)

enum tstate {
	T_PENDING,	 /* waiting for a concurrency slot */
	T_SOURCE,	 /* GitRepository Ready at the revision */
	T_KUSTOMIZATION, /* Kustomization Ready at the revision */
	T_LIST,		 /* list canaries */
	T_STAMP,	 /* per canary: settle, stamp */
	T_CANARY,	 /* per canary: Succeeded */
	T_DONE,		 /* at HEAD */
};

enum stamp_step { S_DEPLOYMENT, S_CANARY, S_PATCH };

enum dphase { D_GATE_GET, D_GATE_PATCH, D_GATE_RECONCILE, D_RUN };

struct canary {
	char *name;
	char *target; /* Deployment name, or NULL for other kinds */
	char *before; /* lastAppliedSpec before the stamp; NULL = accept any */
	bool stamped;
	char *phase;
};

struct deploy;

struct tenant {
	struct deploy *d;
	char *name, *ns, *ks_ns, *ks_name, *src_ns, *src_name, *url, *branch;
	char *cache;
	struct co_git_opts git;
	enum tstate st;
	char sha[CO_GIT_SHA_HEX + 1]; /* HEAD being rolled out ("" before the first) */
	char *rev;		      /* <branch>@sha1:<sha> */
	bool busy;
	bool head_due;	     /* check HEAD before the next step */
	bool want_reconcile; /* ask Flux to fetch the new HEAD */
	bool verified;	     /* T_DONE and HEAD re-read unchanged */
	uint64_t next_at;    /* mono ms of the next step */
	uint64_t head_at;    /* mono ms of the next HEAD check */
	unsigned attempt;
	struct canary *canaries;
	size_t ncanaries, ci;
	enum stamp_step sstep;
	char waiting[320];
};

struct deploy {
	struct co_sm sm;
	enum dphase phase;
	struct co_kube *kube;
	struct tenant *t;
	size_t n;
	unsigned concurrency;
	unsigned ops; /* operations in flight */
	bool failing;
	int fail_status;
	struct co_error fail_err;
	uint64_t head_interval_ms;
	/* push log watch */
	uv_fs_event_t *watch;
	char *push_log;
	int64_t push_off;
	char waiting[1024];
};

static void pump(struct co_sm *sm);
static void start_op(struct tenant *t);

/* ---- operation accounting ---- */

static void end(struct deploy *d)
{
	if (d->failing) {
		co_sm_finish(&d->sm, d->fail_status, &d->fail_err);
		return;
	}
	co_sm_finish(&d->sm, -ECANCELED, NULL);
}

static void op_begin(struct deploy *d, struct tenant *t)
{
	d->ops++;
	d->sm.busy = true;
	if (t)
		t->busy = true;
}

/* True when the stage is stopping: the caller returns at once. */
static bool op_end(struct deploy *d, struct tenant *t)
{
	if (t)
		t->busy = false;
	d->ops--;
	d->sm.busy = d->ops > 0;
	if (d->sm.finishing)
		return true;
	if (d->sm.cancelled || d->failing) {
		if (d->ops == 0)
			end(d);
		return true;
	}
	return false;
}

static void fail(struct deploy *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct deploy *d, int code, const char *fmt, ...)
{
	va_list ap;
	char msg[sizeof(d->fail_err.msg)];

	if (d->failing || d->sm.finishing)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->failing = true;
	d->fail_status = code;
	co_error_set(&d->fail_err, code, "%s", msg);
	if (d->ops == 0) {
		end(d);
		return;
	}
	/* kube calls in flight end with -ECANCELED; the last one ends the stage */
	if (d->kube) {
		co_kube_free(d->kube);
		d->kube = NULL;
	}
}

static void kick(struct deploy *d)
{
	if (!d->sm.finishing && !d->failing && !d->sm.cancelled)
		co_sm_sleep(&d->sm, 0);
}

/* ---- progress text ---- */

static void show(struct deploy *d)
{
	struct co_buf b;
	unsigned shown = 0;

	co_buf_init(&b);
	co_buf_puts(&b, "");
	for (size_t i = 0; i < d->n; i++) {
		struct tenant *t = &d->t[i];

		if (t->st == T_DONE || !t->waiting[0])
			continue;
		if (shown++ == 3) {
			co_buf_puts(&b, "; ...");
			break;
		}
		co_buf_printf(&b, "%s%s", shown > 1 ? "; " : "", t->waiting);
	}
	if (b.len && strcmp(b.data, d->waiting) != 0) {
		snprintf(d->waiting, sizeof(d->waiting), "%s", b.data);
		co_stage_waiting(d->sm.run, "%s", d->waiting);
	}
	co_buf_release(&b);
}

static void twait(struct tenant *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void twait(struct tenant *t, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(t->waiting, sizeof(t->waiting), "%s: ", t->name);

	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(t->waiting))
		vsnprintf(t->waiting + n, sizeof(t->waiting) - (size_t)n, fmt, ap);
	va_end(ap);
	show(t->d);
}

/* Retry this tenant's step later (polling). */
static void later(struct tenant *t, uint64_t base_ms, uint64_t cap_ms)
{
	t->next_at = co_time_mono_ms() + co_stage_backoff(t->attempt++, base_ms, cap_ms);
	kick(t->d);
}

static void go(struct tenant *t, enum tstate st)
{
	t->st = st;
	t->attempt = 0;
	t->next_at = 0;
	kick(t->d);
}

static void canaries_clear(struct tenant *t)
{
	for (size_t i = 0; i < t->ncanaries; i++) {
		free(t->canaries[i].name);
		free(t->canaries[i].target);
		free(t->canaries[i].before);
		free(t->canaries[i].phase);
	}
	free(t->canaries);
	t->canaries = NULL;
	t->ncanaries = t->ci = 0;
}

/* ---- HEAD ---- */

static void head_cb(struct co_git_result *res, void *data)
{
	struct tenant *t = data;
	struct deploy *d = t->d;

	if (op_end(d, t))
		return;
	t->head_at = co_time_mono_ms() + d->head_interval_ms;
	if (res->status < 0) {
		/* an unreachable repo is waited for, within the deadline */
		twait(t, "tenant repo '%s': %s", t->url, res->err.msg);
		later(t, 500, 10000);
		return;
	}
	if (strcmp(res->sha, t->sha) != 0) {
		if (t->sha[0])
			co_stage_log(d->sm.run, CO_LOG_INFO,
				     "tenant '%s': repo moved to %.12s; rolling it out",
				     t->name, res->sha);
		memcpy(t->sha, res->sha, sizeof(t->sha));
		free(t->rev);
		t->rev = co_stages_revision(t->branch, t->sha);
		t->want_reconcile = true;
		t->verified = false;
		canaries_clear(t);
		go(t, T_SOURCE);
		return;
	}
	if (t->st == T_DONE)
		t->verified = true;
	kick(d);
}

/* ---- source, kustomization ---- */

static void reconcile_cb(struct co_kube_result *res, void *data)
{
	struct tenant *t = data;

	if (op_end(t->d, t))
		return;
	if (res->status < 0 && res->status != -ENOENT)
		co_stage_log(t->d->sm.run, CO_LOG_DEBUG, "tenant '%s': reconcile: %s",
			     t->name, res->err.msg);
	kick(t->d);
}

static void ready_cb(struct co_kube_result *res, void *data)
{
	struct tenant *t = data;
	const char *kind = t->st == T_SOURCE ? "GitRepository" : "Kustomization";
	const char *ns = t->st == T_SOURCE ? t->src_ns : t->ks_ns;
	const char *name = t->st == T_SOURCE ? t->src_name : t->ks_name;
	char reason[256];
	int r;

	if (op_end(t->d, t))
		return;
	if (res->status < 0 && res->status != -ENOENT && !co_kube_transient(res)) {
		fail(t->d, res->status, "tenant '%s': %s", t->name, res->err.msg);
		return;
	}
	if (res->status < 0) {
		snprintf(reason, sizeof(reason), "%s",
			 res->status == -ENOENT ? "not created yet" : res->err.msg);
		r = 0;
	} else {
		r = co_kube_ready(res->obj, t->rev, reason, sizeof(reason));
	}
	if (r < 0) {
		fail(t->d, r, "tenant '%s': %s %s/%s: %s", t->name, kind, ns, name,
		     reason);
		return;
	}
	if (r == 0) {
		twait(t, "%s %s/%s Ready at %s (%s)", kind, ns, name, t->rev, reason);
		later(t, 200, 5000);
		return;
	}
	go(t, t->st == T_SOURCE ? T_KUSTOMIZATION : T_LIST);
}

/* ---- canaries ---- */

static void list_cb(struct co_kube_result *res, void *data)
{
	struct tenant *t = data;
	struct deploy *d = t->d;
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(d->sm.run));
	bool manual =
		json_is_true(json_object_get(co_stage_request(d->sm.run), "manualGate"));
	json_t *items, *c;
	size_t i;

	if (op_end(d, t))
		return;
	if (res->status < 0 && res->status != -ENOENT) {
		if (co_kube_transient(res)) {
			twait(t, "list canaries: %s", res->err.msg);
			later(t, 500, 10000);
			return;
		}
		fail(d, res->status, "tenant '%s': %s", t->name, res->err.msg);
		return;
	}
	canaries_clear(t);
	items = res->status == 0 ? json_object_get(res->obj, "items") : NULL;
	t->canaries = co_calloc(json_array_size(items) + 1, sizeof(*t->canaries));
	json_array_foreach(items, i, c)
	{
		const json_t *tr =
			json_object_get(json_object_get(c, "spec"), "targetRef");
		const char *kind = json_string_value(json_object_get(tr, "kind"));
		const char *tname = json_string_value(json_object_get(tr, "name"));
		const char *name = json_string_value(
			json_object_get(json_object_get(c, "metadata"), "name"));
		struct canary *k;

		if (!name)
			continue;
		k = &t->canaries[t->ncanaries++];
		k->name = co_strdup(name);
		if (tname && (!kind || strcmp(kind, "Deployment") == 0))
			k->target = co_strdup(tname);
		if (svc && svc->gate_open && !manual)
			svc->gate_open(t->ns, name, svc->gate_data);
	}
	if (t->ncanaries && manual)
		co_stage_log(d->sm.run, CO_LOG_INFO,
			     "tenant '%s': manual approval: open each canary's gate with "
			     "POST <gate>/gate/open",
			     t->name);
	t->ci = 0;
	t->sstep = S_DEPLOYMENT;
	go(t, t->ncanaries ? T_STAMP : T_DONE);
	if (!t->ncanaries) {
		t->head_due = true; /* confirm HEAD did not move meanwhile */
		co_stage_log(d->sm.run, CO_LOG_INFO, "tenant '%s' at %s (no canaries)",
			     t->name, t->rev);
		t->waiting[0] = '\0';
	}
}

static const char *canary_phase(const json_t *obj)
{
	const char *p = json_string_value(
		json_object_get(json_object_get(obj, "status"), "phase"));

	return p && *p ? p : "Initializing";
}

static void next_canary(struct tenant *t)
{
	t->ci++;
	t->sstep = S_DEPLOYMENT;
	t->attempt = 0;
	t->next_at = 0;
	if (t->ci < t->ncanaries) {
		kick(t->d);
		return;
	}
	if (t->st == T_STAMP) {
		t->ci = 0;
		go(t, T_CANARY);
		return;
	}
	/* every canary Succeeded at this revision */
	{
		json_t *dd =
			json_pack("{s:s, s:s}", "tenant", t->name, "revision", t->rev);

		co_stage_log(t->d->sm.run, CO_LOG_INFO,
			     "tenant '%s' at %s, %zu %s Succeeded", t->name, t->rev,
			     t->ncanaries, t->ncanaries == 1 ? "canary" : "canaries");
		t->waiting[0] = '\0';
		if (!co_sm_set_state(&t->d->sm, "tenant-ready", dd)) {
			json_decref(dd);
			return;
		}
		json_decref(dd);
	}
	t->head_due = true; /* confirm HEAD did not move meanwhile */
	go(t, T_DONE);
}

static void stamp_cb(struct co_kube_result *res, void *data)
{
	struct tenant *t = data;
	struct deploy *d = t->d;
	struct canary *k = &t->canaries[t->ci];
	const json_t *ann;
	const char *have, *phase;

	if (op_end(d, t))
		return;
	if (res->status < 0) {
		if (res->status == -ENOENT || co_kube_transient(res)) {
			twait(t, "canary %s/%s: %s", t->ns, k->name, res->err.msg);
			later(t, 300, 5000);
			return;
		}
		fail(d, res->status, "tenant '%s': %s", t->name, res->err.msg);
		return;
	}
	switch (t->sstep) {
	case S_DEPLOYMENT:
		ann = json_object_get(
			json_object_get(json_object_get(json_object_get(res->obj, "spec"),
							"template"),
					"metadata"),
			"annotations");
		have = json_string_value(json_object_get(ann, STAMP_ANNOTATION));
		if (have && strcmp(have, t->rev) == 0) {
			/* stamped before (a resumed run): take the outcome as it is */
			k->stamped = true;
			free(k->before);
			k->before = NULL;
			next_canary(t);
			return;
		}
		t->sstep = S_CANARY;
		kick(d);
		return;
	case S_CANARY:
		phase = canary_phase(res->obj);
		if (strcmp(phase, "Initialized") != 0 &&
		    strcmp(phase, "Succeeded") != 0 && strcmp(phase, "Failed") != 0) {
			twait(t, "canary %s/%s to settle (%s) before its analysis", t->ns,
			      k->name, phase);
			later(t, 300, 3000);
			return;
		}
		free(k->before);
		have = json_string_value(json_object_get(
			json_object_get(res->obj, "status"), "lastAppliedSpec"));
		k->before = co_strdup(have ? have : "");
		t->sstep = S_PATCH;
		kick(d);
		return;
	case S_PATCH: {
		json_t *dd = json_pack("{s:s, s:s, s:s}", "tenant", t->name, "canary",
				       k->name, "revision", t->rev);

		k->stamped = true;
		co_stage_log(d->sm.run, CO_LOG_INFO,
			     "canary %s/%s: analysing %s on the new cluster", t->ns,
			     k->name, t->rev);
		if (!co_sm_set_state(&d->sm, "analysing", dd)) {
			json_decref(dd);
			return;
		}
		json_decref(dd);
		next_canary(t);
		return;
	}
	}
}

static void canary_cb(struct co_kube_result *res, void *data)
{
	struct tenant *t = data;
	struct deploy *d = t->d;
	struct canary *k = &t->canaries[t->ci];
	const json_t *st;
	const char *phase, *applied;
	bool fresh;

	if (op_end(d, t))
		return;
	if (res->status < 0) {
		if (res->status == -ENOENT) {
			/* the revision removed it: list again */
			go(t, T_LIST);
			return;
		}
		if (co_kube_transient(res)) {
			twait(t, "canary %s/%s: %s", t->ns, k->name, res->err.msg);
			later(t, 300, 5000);
			return;
		}
		fail(d, res->status, "tenant '%s': %s", t->name, res->err.msg);
		return;
	}
	st = json_object_get(res->obj, "status");
	phase = canary_phase(res->obj);
	applied = json_string_value(json_object_get(st, "lastAppliedSpec"));
	fresh = !k->before || !applied || strcmp(applied, k->before) != 0;
	free(k->phase);
	k->phase = co_strdup(phase);
	if (fresh && strcmp(phase, "Succeeded") == 0) {
		next_canary(t);
		return;
	}
	if (fresh && strcmp(phase, "Failed") == 0) {
		const json_t *cond = co_kube_condition(res->obj, "Promoted");
		const char *msg = json_string_value(json_object_get(cond, "message"));
		const char *reason = json_string_value(json_object_get(cond, "reason"));

		fail(d, CO_STAGES_VERDICT,
		     "tenant '%s': canary %s/%s failed at %s: %s%s%s (failed checks "
		     "%lld)",
		     t->name, t->ns, k->name, t->rev, reason ? reason : "Failed",
		     msg ? ": " : "", msg ? msg : "",
		     (long long)json_integer_value(json_object_get(st, "failedChecks")));
		return;
	}
	twait(t, "canary %s/%s Succeeded at %s (%s, weight %lld%%)", t->ns, k->name,
	      t->rev, phase,
	      (long long)json_integer_value(json_object_get(st, "canaryWeight")));
	later(t, 200, 2000);
}

/* ---- driver ---- */

static void start_op(struct tenant *t)
{
	struct deploy *d = t->d;
	struct co_stage_run *run = d->sm.run;
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (t->head_due || !t->sha[0] || co_time_mono_ms() >= t->head_at) {
		t->head_due = false;
		rc = co_git_ls_remote(co_stage_loop(run), &t->git, t->branch, head_cb, t,
				      &err);
		if (rc == 0)
			op_begin(d, t);
		goto out;
	}
	if (t->want_reconcile) {
		struct co_kube_ref ref = {.api_version = CO_FLUX_SOURCE_API,
					  .kind = "GitRepository",
					  .ns = t->src_ns,
					  .name = t->src_name};

		t->want_reconcile = false;
		rc = co_flux_request_reconcile(d->kube, &ref, reconcile_cb, t, &err);
		if (rc == 0)
			op_begin(d, t);
		goto out;
	}
	switch (t->st) {
	case T_SOURCE:
	case T_KUSTOMIZATION: {
		bool src = t->st == T_SOURCE;
		struct co_kube_ref ref = {.api_version = src ? CO_FLUX_SOURCE_API
							     : CO_FLUX_KUSTOMIZE_API,
					  .kind = src ? "GitRepository" : "Kustomization",
					  .ns = src ? t->src_ns : t->ks_ns,
					  .name = src ? t->src_name : t->ks_name};

		rc = co_kube_get(d->kube, &ref, ready_cb, t, &err);
		break;
	}
	case T_LIST: {
		struct co_kube_ref ref = {
			.api_version = CANARY_API, .kind = "Canary", .ns = t->ns};

		twait(t, "list canaries in '%s'", t->ns);
		rc = co_kube_list(d->kube, &ref, NULL, NULL, list_cb, t, &err);
		break;
	}
	case T_STAMP: {
		struct canary *k = &t->canaries[t->ci];

		if (!k->target) {
			/* not a Deployment: Flagger alone decides; wait for the outcome
			 */
			k->stamped = true;
			next_canary(t);
			return;
		}
		if (t->sstep == S_DEPLOYMENT) {
			struct co_kube_ref ref = {.api_version = "apps/v1",
						  .kind = "Deployment",
						  .ns = t->ns,
						  .name = k->target};

			rc = co_kube_get(d->kube, &ref, stamp_cb, t, &err);
		} else if (t->sstep == S_CANARY) {
			struct co_kube_ref ref = {.api_version = CANARY_API,
						  .kind = "Canary",
						  .ns = t->ns,
						  .name = k->name};

			rc = co_kube_get(d->kube, &ref, stamp_cb, t, &err);
		} else {
			struct co_kube_ref ref = {.api_version = "apps/v1",
						  .kind = "Deployment",
						  .ns = t->ns,
						  .name = k->target};
			json_t *patch = json_pack("{s:{s:{s:{s:{s:s}}}}}", "spec",
						  "template", "metadata", "annotations",
						  STAMP_ANNOTATION, t->rev);

			rc = co_kube_merge_patch(d->kube, &ref, patch, false, stamp_cb, t,
						 &err);
			json_decref(patch);
		}
		break;
	}
	case T_CANARY: {
		struct co_kube_ref ref = {.api_version = CANARY_API,
					  .kind = "Canary",
					  .ns = t->ns,
					  .name = t->canaries[t->ci].name};

		rc = co_kube_get(d->kube, &ref, canary_cb, t, &err);
		break;
	}
	default:
		return;
	}
	if (rc == 0)
		op_begin(d, t);
out:
	if (rc < 0)
		fail(d, rc, "tenant '%s': %s", t->name, err.msg);
}

static void record_and_finish(struct deploy *d)
{
	json_t *out = json_object();

	for (size_t i = 0; i < d->n; i++) {
		struct tenant *t = &d->t[i];
		json_t *cs = json_object();

		for (size_t j = 0; j < t->ncanaries; j++)
			json_object_set_new(cs, t->canaries[j].name,
					    json_string(t->canaries[j].phase
								? t->canaries[j].phase
								: "Succeeded"));
		json_object_set_new(out, t->name,
				    json_pack("{s:s, s:o}", "revision",
					      t->rev ? t->rev : "", "canaries", cs));
	}
	co_stage_record(d->sm.run, "tenants", out, NULL);
	co_stage_log(d->sm.run, CO_LOG_INFO, "%zu %s at %s HEAD", d->n,
		     d->n == 1 ? "tenant" : "tenants", d->n == 1 ? "its" : "their");
	co_sm_finish(&d->sm, 0, NULL);
}

static void pump(struct co_sm *sm)
{
	struct deploy *d = (struct deploy *)sm;
	uint64_t now = co_time_mono_ms(), wake = UINT64_MAX;
	unsigned active = 0;
	bool all_done = true;

	if (sm->finishing || d->failing || sm->cancelled || d->phase != D_RUN)
		return;
	for (size_t i = 0; i < d->n; i++)
		if (d->t[i].st != T_PENDING && d->t[i].st != T_DONE)
			active++;
	for (size_t i = 0; i < d->n && !d->failing && !sm->finishing; i++) {
		struct tenant *t = &d->t[i];
		uint64_t due;

		if (!(t->st == T_DONE && t->verified))
			all_done = false;
		if (t->busy)
			continue;
		if (t->st == T_PENDING) {
			if (active >= d->concurrency)
				continue;
			active++;
			t->st = T_SOURCE;
			t->head_due = true;
		}
		due = t->st == T_DONE ? (t->head_due ? 0 : t->head_at) : t->next_at;
		if (t->st == T_DONE && t->verified && !t->head_due) {
			/* at HEAD: only the periodic check */
			due = t->head_at;
		}
		if (due > now) {
			if (due < wake)
				wake = due;
			continue;
		}
		start_op(t);
	}
	if (sm->finishing || d->failing)
		return;
	if (all_done && d->ops == 0) {
		record_and_finish(d);
		return;
	}
	/* operations in flight kick the driver when they end */
	if (wake != UINT64_MAX)
		co_sm_sleep(sm, wake - now);
}

/* ---- pushes ---- */

static void push_reconcile_cb(struct co_kube_result *res, void *data)
{
	struct deploy *d = data;
	size_t i;
	json_t *id;

	if (op_end(d, NULL))
		return;
	if (res->status == 0)
		json_array_foreach(res->obj, i, id)
			co_stage_log(d->sm.run, CO_LOG_INFO,
				     "push: reconcile requested for GitRepository '%s'",
				     json_string_value(id));
	kick(d);
}

static void handle_push(struct deploy *d, const char *const *urls)
{
	struct co_error err = CO_ERROR_INIT;
	bool ours = false;

	if (d->sm.finishing || d->failing || d->sm.cancelled || !d->kube)
		return;
	for (size_t i = 0; i < d->n; i++)
		for (size_t j = 0; urls[j]; j++)
			if (d->t[i].url && co_git_url_same(d->t[i].url, urls[j])) {
				d->t[i].head_due = true;
				d->t[i].verified = false;
				ours = true;
			}
	if (!ours)
		return;
	if (co_flux_reconcile_sources(d->kube, urls, NULL, push_reconcile_cb, d, &err) ==
	    0)
		op_begin(d, NULL);
	kick(d);
}

static void push_on_push(struct co_stage_run *run, const char *const *urls)
{
	struct deploy *d = co_stage_get_priv(run);

	if (d)
		handle_push(d, urls);
}

/* New lines of the push log since the last read. */
static void read_push_log(struct deploy *d)
{
	struct stat st;
	int fd;
	char *buf;
	ssize_t r;
	size_t len, start = 0;

	if (stat(d->push_log, &st) < 0)
		return;
	if (st.st_size < d->push_off)
		d->push_off = 0; /* rotated */
	if (st.st_size == d->push_off)
		return;
	len = (size_t)(st.st_size - d->push_off);
	if (len > PUSH_READ_MAX) {
		d->push_off = st.st_size - PUSH_READ_MAX;
		len = PUSH_READ_MAX;
	}
	fd = open(d->push_log, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	buf = co_calloc(1, len + 1);
	r = pread(fd, buf, len, d->push_off);
	close(fd);
	if (r <= 0) {
		free(buf);
		return;
	}
	for (size_t i = 0; i < (size_t)r; i++) {
		json_t *ev, *u;
		const char *urls[17];
		size_t k, nu = 0;

		if (buf[i] != '\n')
			continue;
		buf[i] = '\0';
		ev = json_loads(buf + start, 0, NULL);
		start = i + 1;
		json_array_foreach(json_object_get(ev, "urls"), k,
				   u) if (nu < 16 && json_string_value(u)) urls[nu++] =
			json_string_value(u);
		urls[nu] = NULL;
		if (nu)
			handle_push(d, urls);
		json_decref(ev);
	}
	/* a line still being written is read next time */
	d->push_off += (int64_t)start;
	free(buf);
}

static void push_log_changed(uv_fs_event_t *h, const char *filename, int events,
			     int status)
{
	struct deploy *d = h->data;

	(void)events;
	if (!d || status < 0)
		return;
	if (filename && strcmp(filename, PUSH_LOG) != 0)
		return;
	read_push_log(d);
}

static void watch_closed(uv_handle_t *h)
{
	free(h);
}

static void watch_push_log(struct deploy *d)
{
	struct co_pipeline *p = co_stage_pipeline(d->sm.run);
	char *dir = co_asprintf("%s/events", co_pipeline_state_dir(p));
	struct stat st;

	d->push_log = co_asprintf("%s/%s", dir, PUSH_LOG);
	d->push_off = stat(d->push_log, &st) == 0 ? st.st_size : 0;
	if (co_fs_mkdir_p(dir, 0700) == 0) {
		d->watch = co_calloc(1, sizeof(*d->watch));
		uv_fs_event_init(co_stage_loop(d->sm.run), d->watch);
		d->watch->data = d;
		if (uv_fs_event_start(d->watch, push_log_changed, dir, 0) < 0) {
			co_stage_log(d->sm.run, CO_LOG_DEBUG,
				     "cannot watch '%s': relying on HEAD polling", dir);
			uv_close((uv_handle_t *)d->watch, watch_closed);
			d->watch = NULL;
		}
	}
	free(dir);
}

/* ---- gate URL ---- */

static void gate_cb(struct co_kube_result *res, void *data)
{
	struct deploy *d = data;
	const char *live = co_stages_gate_url(d->sm.run);
	json_t *dd;

	if (op_end(d, NULL))
		return;
	switch (d->phase) {
	case D_GATE_GET: {
		const char *have = res->status == 0
					   ? json_string_value(json_object_get(
						     json_object_get(res->obj, "data"),
						     "CUTOVER_GATE_URL"))
					   : NULL;

		if (res->status < 0 || (have && strcmp(have, live) == 0)) {
			/* no cluster-vars (a cluster bootstrapped elsewhere) or current
			 */
			d->phase = D_RUN;
			break;
		}
		dd = json_pack("{s:s, s:s}", "from", have ? have : "", "to", live);
		co_stage_log(
			d->sm.run, CO_LOG_INFO,
			"gate URL in cluster-vars is '%s'; the runner's gate is at '%s'",
			have ? have : "", live);
		if (!co_sm_set_state(&d->sm, "gate", dd)) {
			json_decref(dd);
			return;
		}
		json_decref(dd);
		d->phase = D_GATE_PATCH;
		break;
	}
	case D_GATE_PATCH:
		if (res->status < 0) {
			fail(d, res->status, "patch cluster-vars: %s", res->err.msg);
			return;
		}
		d->phase = D_GATE_RECONCILE;
		break;
	default:
		d->phase = D_RUN; /* best effort: Flux reapplies at its interval */
		break;
	}
	if (d->phase == D_RUN) {
		json_t *names = json_array();

		for (size_t i = 0; i < d->n; i++)
			json_array_append_new(names, json_string(d->t[i].name));
		dd = json_pack("{s:o}", "tenants", names);
		if (!co_sm_set_state(&d->sm, "waiting", dd)) {
			json_decref(dd);
			return;
		}
		json_decref(dd);
		watch_push_log(d);
		kick(d);
		return;
	}
	/* next gate step */
	{
		struct co_error err = CO_ERROR_INIT;
		int rc;

		if (d->phase == D_GATE_PATCH) {
			struct co_kube_ref ref = {.api_version = "v1",
						  .kind = "ConfigMap",
						  .ns = "flux-system",
						  .name = "cluster-vars"};
			json_t *patch =
				json_pack("{s:{s:s}}", "data", "CUTOVER_GATE_URL", live);

			rc = co_kube_merge_patch(d->kube, &ref, patch, false, gate_cb, d,
						 &err);
			json_decref(patch);
		} else {
			struct co_kube_ref ref = {.api_version = CO_FLUX_KUSTOMIZE_API,
						  .kind = "Kustomization",
						  .ns = "flux-system",
						  .name = "tenants"};

			rc = co_flux_request_reconcile(d->kube, &ref, gate_cb, d, &err);
		}
		if (rc < 0) {
			fail(d, rc, "%s", err.msg);
			return;
		}
		op_begin(d, NULL);
	}
}

/* ---- lifecycle ---- */

static void on_cancel(struct co_sm *sm)
{
	struct deploy *d = (struct deploy *)sm;

	if (d->kube) {
		co_kube_free(d->kube);
		d->kube = NULL;
	}
}

static void release(struct co_sm *sm)
{
	struct deploy *d = (struct deploy *)sm;

	if (d->watch) {
		d->watch->data = NULL;
		uv_fs_event_stop(d->watch);
		uv_close((uv_handle_t *)d->watch, watch_closed);
	}
	co_kube_free(d->kube);
	for (size_t i = 0; i < d->n; i++) {
		struct tenant *t = &d->t[i];

		canaries_clear(t);
		free(t->name);
		free(t->ns);
		free(t->ks_ns);
		free(t->ks_name);
		free(t->src_ns);
		free(t->src_name);
		free(t->url);
		free(t->branch);
		free(t->cache);
		free(t->rev);
	}
	free(d->t);
	free(d->push_log);
}

static char *part(const char *id, bool ns_part, const char *def_ns)
{
	const char *slash = id ? strchr(id, '/') : NULL;

	if (!id)
		return NULL;
	if (!slash)
		return co_strdup(ns_part ? def_ns : id);
	return ns_part ? co_asprintf("%.*s", (int)(slash - id), id)
		       : co_strdup(slash + 1);
}

static int deploy_start(struct co_stage_run *run, const char *state,
			const json_t *details, struct co_error *err)
{
	const json_t *tenants =
		json_object_get(co_stage_output(run, "tenant-namespaces"), "tenants");
	const char *kc = co_stages_new_cluster(run, "kubeconfig");
	const json_t *conc = json_object_get(co_stage_request(run), "tenantConcurrency");
	struct deploy *d;
	const json_t *tj;
	size_t i;
	int rc;

	(void)state;
	(void)details;
	if (!json_is_array(tenants))
		return co_error_set(err, -EINVAL,
				    "no tenant list from tenant-namespaces");
	if (!kc)
		return co_error_set(err, -EINVAL,
				    "no kubeconfig recorded for the new cluster");
	d = co_calloc(1, sizeof(*d));
	rc = co_stages_kube_from_path(run, kc, &d->kube, err);
	if (rc < 0) {
		free(d);
		return rc;
	}
	co_sm_init(&d->sm, run);
	d->sm.step = pump;
	d->sm.on_cancel = on_cancel;
	d->sm.release = release;
	d->concurrency =
		json_integer_value(conc) > 0 ? (unsigned)json_integer_value(conc) : 4;
	d->head_interval_ms = co_time_scaled(5000);
	if (d->head_interval_ms < 20)
		d->head_interval_ms = 20;
	d->t = co_calloc(json_array_size(tenants) + 1, sizeof(*d->t));
	json_array_foreach(tenants, i, tj)
	{
		struct tenant *t = &d->t[d->n];
		const char *url = json_string_value(json_object_get(tj, "url"));
		const char *ks = json_string_value(json_object_get(tj, "kustomization"));
		const char *src = json_string_value(json_object_get(tj, "gitRepository"));
		const char *ns = json_string_value(json_object_get(tj, "namespace"));

		if (!url || !ks || !src || !ns) {
			co_stage_log(
				run, CO_LOG_WARN,
				"tenant '%s': no GitRepository with a URL in its wiring; "
				"skipped",
				json_string_value(json_object_get(tj, "name")));
			continue;
		}
		t->d = d;
		t->name = co_strdup(json_string_value(json_object_get(tj, "name")));
		t->ns = co_strdup(ns);
		t->ks_ns = part(ks, true, ns);
		t->ks_name = part(ks, false, ns);
		t->src_ns = part(src, true, ns);
		t->src_name = part(src, false, ns);
		t->url = co_strdup(url);
		t->branch = co_strdup(
			json_object_get(tj, "branch")
				? json_string_value(json_object_get(tj, "branch"))
				: "main");
		co_stages_git_opts(run, t->url, &t->git, &t->cache);
		t->st = T_PENDING;
		d->n++;
	}
	/* first make sure the canaries will reach this runner's gate */
	if (*co_stages_gate_url(run)) {
		struct co_kube_ref ref = {.api_version = "v1",
					  .kind = "ConfigMap",
					  .ns = "flux-system",
					  .name = "cluster-vars"};

		d->phase = D_GATE_GET;
		rc = co_kube_get(d->kube, &ref, gate_cb, d, err);
		if (rc < 0) {
			/* sm owns d now: end through it */
			co_sm_finish(&d->sm, rc, err);
			return 0;
		}
		op_begin(d, NULL);
		return 0;
	}
	d->phase = D_GATE_RECONCILE;
	op_begin(d, NULL);
	{
		struct co_kube_result res = {.status = 0};

		gate_cb(&res, d);
	}
	return 0;
}

const struct co_stage_ops co_stage_deploy_tenants = {
	.name = "deploy-tenants",
	.summary = "every tenant Ready at its repo's HEAD, every canary Succeeded",
	.deadline_ms = 30 * 60 * 1000,
	.before_switch = true,
	.start = deploy_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
	.on_push = push_on_push,
};
