/*
 * A pipeline: one cluster replacement, an ordered list of stages run one after the
 * other on the loop, journaled and locked.
 *
 * Lifecycle: co_pipeline_open() takes the lock (<state>/pipelines/<id>/lock) and
 * replays the journal (<state>/pipelines/<id>/journal.jsonl); co_pipeline_run() runs
 * from the first unfinished stage; the done callback reports success, failure (after
 * cleanup) or interruption. A pipeline interrupted by a signal or a crash resumes
 * where it stopped: finished stages are skipped and the current one restarts from
 * its last journaled state.
 *
 * Failures: a transient failure (co_error_is_transient) restarts the stage with
 * backoff while its deadline allows; any other failure, or the deadline, fails the
 * pipeline. When the failing stage is before the traffic switch, every started
 * stage's cleanup runs in reverse order (create-cluster deletes the new cluster)
 * unless keep_failed is set; the load balancer and the old cluster are never touched
 * by cleanup (invariant I3).
 *
 * Journal entries written here:
 *   {"type":"pipeline","event":"created","request":{...}}
 *   {"type":"stage","stage":S,"to":STATE,"details":{...}}   (STATE "started",
 *        stage-defined states, "done", "failed", "retry")
 *   {"type":"output","stage":S,"key":K,"value":V}
 *   {"type":"pipeline","event":"interrupted"|"cleanup"|"failed"|"succeeded",...}
 */
#ifndef CO_ENGINE_PIPELINE_H
#define CO_ENGINE_PIPELINE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "base/error.h"
#include "engine/stage.h"

struct co_http_client;
struct co_provider;
struct co_registry;
struct co_pipeline;

/* Shared clients, borrowed: they must outlive the pipeline. */
struct co_pipeline_services {
	struct co_http_client *http;
	struct co_provider *provider;
	struct co_registry *registry;
	void *extra;                 /* for the CLI's own use (serve, webhooks) */
	/* The runner's own HTTP surface when the CLI hosts it for the pipeline (Flagger
	 * gate and load tester): its live URL ("http://127.0.0.1:PORT"), or NULL. */
	const char *gate_url;
	/* Open the confirm-rollout gate of canary ns/name on that surface; NULL when no
	 * gate is hosted. */
	void (*gate_open)(const char *ns, const char *name, void *data);
	void *gate_data;
};

struct co_pipeline_progress {
	const char *stage;           /* current stage or NULL */
	const char *state;           /* its state */
	const char *waiting;         /* what it waits for, may be "" */
	unsigned index;              /* 1-based position */
	unsigned count;              /* stages in the list */
	uint64_t stage_elapsed_ms;
	uint64_t elapsed_ms;
};
typedef void (*co_pipeline_progress_cb)(const struct co_pipeline_progress *p, void *data);

struct co_pipeline_opts {
	const char *state_dir;
	const char *id;                         /* [a-z0-9-]+ */
	const json_t *request;                  /* new pipeline; NULL to resume */
	const struct co_stage_ops *const *stages; /* NULL-terminated */
	bool keep_failed;
	const char *stop_after;                 /* last stage to run; NULL = all */
	unsigned max_attempts;                  /* per stage for transient failures;
						 * 0 = 5 */
	co_pipeline_progress_cb progress;       /* called on every state change and
						 * waiting update; may be NULL */
	void *progress_data;
};

struct co_pipeline_result {
	int status;                  /* 0 ok, -EINTR interrupted (resumable), or the
				      * failing stage's code */
	const char *failed_stage;    /* or NULL */
	struct co_error err;         /* "stage 'deploy-tenants': canary core/podinfo
				      * failed: ..." */
	bool cleaned_up;             /* cleanup ran (and finished) */
};
typedef void (*co_pipeline_done_cb)(const struct co_pipeline_result *res, void *data);

/*
 * Open (create or resume). -EBUSY when another runner holds the lock; -ENOENT when
 * resuming a pipeline that does not exist; -EEXIST when creating one whose journal
 * holds another request; -EALREADY when the pipeline already finished (succeeded or
 * failed): err says which.
 */
int co_pipeline_open(struct co_pipeline **ret, uv_loop_t *loop,
		     const struct co_pipeline_opts *opts,
		     const struct co_pipeline_services *svc, struct co_error *err);

/* Run; cb runs exactly once when the pipeline ends (if this returns 0). */
int co_pipeline_run(struct co_pipeline *p, co_pipeline_done_cb cb, void *data,
		    struct co_error *err);

/* Graceful stop (first signal): cancel the current stage, journal "interrupted", end
 * with -EINTR. No cleanup: the pipeline is resumable. */
void co_pipeline_stop(struct co_pipeline *p);

/* Hand a verified git push (urls NULL-terminated, borrowed) to the running stage's
 * on_push, if it has one. Safe at any time; does nothing between stages. */
void co_pipeline_notify_push(struct co_pipeline *p, const char *const *urls);

/* Release the lock, close the journal, free. Only after the done callback (or when
 * never run). NULL is fine. */
void co_pipeline_free(struct co_pipeline *p);

const char *co_pipeline_id(const struct co_pipeline *p);
const char *co_pipeline_state_dir(const struct co_pipeline *p);
const json_t *co_pipeline_request(const struct co_pipeline *p);
const struct co_pipeline_services *co_pipeline_services(const struct co_pipeline *p);

/*
 * Summarise a pipeline from its journal without taking the lock (status while a
 * runner works): {"id", "request", "state": "running|succeeded|failed|interrupted",
 * "stages": [{"name", "state", "started", "finished", "error"}...], "outputs"}.
 * stages gives the names in order (may be NULL: only journaled ones).
 */
int co_pipeline_summary(json_t **ret, const char *state_dir, const char *id,
			const struct co_stage_ops *const *stages, struct co_error *err);

/* Journal and lock paths of a pipeline (new strings). */
char *co_pipeline_dir(const char *state_dir, const char *id);

#endif
