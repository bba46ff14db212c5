/*
 * What the stages share: a small state-machine base that owns the stage's one timer
 * and its one operation in flight (so cancel, deadlines and the final co_stage_done()
 * follow one rule everywhere), request accessors with the embedded defaults, git
 * options per repository, Kubernetes clients from kubeconfig paths, and Flux-style
 * variable substitution.
 */
#ifndef CO_STAGES_COMMON_H
#define CO_STAGES_COMMON_H

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"
#include "clients/git.h"
#include "engine/stage.h"

struct co_kube;

/*
 * The code of a failure that is a verdict rather than an accident (a check exited
 * non-zero, a canary Failed): the engine retries transient codes (-EIO among them),
 * and a verdict must not be retried, so it gets a code the engine treats as
 * permanent.
 */
#define CO_STAGES_VERDICT (-EREMOTEIO)

/*
 * Embedded first in each stage's private struct. At most one operation is in flight
 * (busy); the timer paces polling. Operation callbacks start with
 * `if (co_sm_op_done(sm)) return;` so a cancel that arrived meanwhile ends the stage.
 */
struct co_sm {
	struct co_stage_run *run;
	uv_timer_t timer;
	bool busy;
	bool cancelled;
	bool finishing;
	void (*step)(struct co_sm *sm); /* run after a co_sm_sleep() */
	void (*on_cancel)(
		struct co_sm *sm); /* abort the operation in flight; may be NULL */
	void (*release)(struct co_sm *sm); /* free the stage's own resources */
};

/* Set up sm (allocated by the caller, at least size bytes, zeroed) and attach it to
 * run as its priv. */
void co_sm_init(struct co_sm *sm, struct co_stage_run *run);

/* Mark an operation started / finished. op_done returns true when the stage was
 * cancelled meanwhile (it is then finishing with -ECANCELED: return at once). */
void co_sm_op_start(struct co_sm *sm);
bool co_sm_op_done(struct co_sm *sm);

/* Call sm->step after ms (already scaled). */
void co_sm_sleep(struct co_sm *sm, uint64_t ms);

/* End the stage: closes the timer, releases, frees sm and calls co_stage_done(). */
void co_sm_finish(struct co_sm *sm, int status, const struct co_error *err);

/* ops->cancel for stages built on co_sm. */
void co_sm_cancel(struct co_stage_run *run);

/* Journal a state; on a journal error finish the stage and return false. Honours
 * CUTOVER_CRASH_AT="stage:state[+ms]" (SIGKILL for crash tests, see common.c). */
bool co_sm_set_state(struct co_sm *sm, const char *state, const json_t *details);

/* ---- request ---- */

/* Request string with a default. */
const char *co_stages_req(struct co_stage_run *run, const char *key, const char *def);
/* "clusters/<env>/<location>" (new string). */
char *co_stages_cluster_path(struct co_stage_run *run);
/* Branch of the fleet repo ("main" unless the request says). */
const char *co_stages_branch(struct co_stage_run *run);

/* The pipeline's own scratch path <state>/pipelines/<id>/<leaf> (new string). */
char *co_stages_workdir(struct co_stage_run *run, const char *leaf);

/* Fill opts for a remote; cache_dir is allocated into *ret_cache (caller frees) under
 * <state>/pipelines/<id>/git-cache/<sanitised url>. */
void co_stages_git_opts(struct co_stage_run *run, const char *url,
			struct co_git_opts *opts, char **ret_cache);

/* rm -rf of a stage's own scratch directory (never follows symlinks). 0 or negative. */
int co_stages_remove_tree(const char *path);

/* A Kubernetes client from a kubeconfig file (path) or text. */
int co_stages_kube_from_path(struct co_stage_run *run, const char *path,
			     struct co_kube **ret, struct co_error *err);
int co_stages_kube_from_text(struct co_stage_run *run, const char *yaml,
			     struct co_kube **ret, struct co_error *err);

/*
 * A string about the cluster the pipeline works on ("kubeconfig", "ingress"): what
 * create-cluster recorded, else the request's field of that name (pipelines on an
 * existing cluster, such as `cutover tenant deploy`). Borrowed, or NULL.
 */
const char *co_stages_new_cluster(struct co_stage_run *run, const char *key);

/* The URL canaries reach cutover's gate and load tester at: the request's gateUrl
 * when the user runs their own `cutover serve`, else the surface the runner hosts
 * for this pipeline, else "". Borrowed. */
const char *co_stages_gate_url(struct co_stage_run *run);

/* The cluster variables bootstrap writes into flux-system/cluster-vars (new object). */
json_t *co_stages_cluster_vars(struct co_stage_run *run);

/* ---- pure helpers (unit tested) ---- */

/* RFC 1123 label as Kubernetes validates cluster and namespace names. */
bool co_stages_dns1123_label(const char *name);

/*
 * Flux's post-build substitution on a text: ${VAR}, ${VAR:=default} and ${VAR:-default}
 * from vars (object of strings); $${VAR} escapes. Unknown variables without a default
 * become "" (Flux's behaviour with substituteFrom). Returns a new string.
 */
char *co_stages_substitute(const char *text, const json_t *vars);

/* The same over every string of a JSON value, in place. */
void co_stages_substitute_json(json_t *value, const json_t *vars);

/* The revision Flux reports for a commit on a branch: "main@sha1:<sha>" (new string). */
char *co_stages_revision(const char *branch, const char *sha);

/*
 * The flux-system sync folder as `flux bootstrap` writes it for a cluster path:
 * {"<cluster_path>/flux-system/gotk-sync.yaml": "...",
 *  "<cluster_path>/flux-system/kustomization.yaml": "..."} (new object). The
 * GitRepository and Kustomization are both named flux-system in namespace flux-system.
 */
json_t *co_stages_flux_sync_files(const char *url, const char *branch,
				  const char *cluster_path);

/*
 * The Flux Kustomizations defined in a set of files ({"path": "yaml text"}, as
 * co_git_read_tree() gives them) as "namespace/name" (namespace defaults to
 * flux-system), sorted by path then document order, without duplicates (new array).
 * Files that do not parse are skipped: Flux reports them itself.
 */
json_t *co_stages_flux_kustomizations(const json_t *files);

#endif
