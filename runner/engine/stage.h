/*
 * The stage contract: one file per pipeline stage under stages/, each a state machine
 * that the engine starts, may cancel, and that ends by calling co_stage_done() exactly
 * once. A table of co_stage_ops (stages/registry.c) orders them, like git's
 * commands[].
 *
 * Stages are idempotent: started again after a crash (or a transient failure) with the
 * state they last journaled, they look at the world (does the cluster exist? is the
 * commit pushed?) and continue. A stage never assumes it starts from scratch.
 *
 * What a stage may use comes through its run: the loop, the pipeline request, outputs
 * of earlier stages, shared clients (HTTP, Kubernetes per cluster, git, provider), and
 * the journal through co_stage_set_state()/co_stage_record(). Stages log through the
 * engine's helpers, which prefix the stage name.
 */
#ifndef CO_ENGINE_STAGE_H
#define CO_ENGINE_STAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"

struct co_stage_run;
struct co_pipeline;

struct co_stage_ops {
	const char *name;            /* "create-cluster" */
	const char *summary;         /* one line for help and status */
	uint64_t deadline_ms;        /* unscaled default; the request may override */
	bool before_switch;          /* failure here triggers cleanup (stages 1-9) */

	/*
	 * Start or resume. state is the stage's last journaled state name (NULL on a
	 * fresh start) and details its last recorded details (borrowed; may be NULL).
	 * Returns 0 when the stage is under way (it will call co_stage_done()), or a
	 * negative code with err filled when it cannot start (done is then implied).
	 */
	int (*start)(struct co_stage_run *run, const char *state, const json_t *details,
		     struct co_error *err);

	/* Stop what is in flight (deadline, signal). The stage must then call
	 * co_stage_done() with -ECANCELED (or whatever it finished with). May be NULL
	 * for stages whose every operation is cancelled by the engine's clients. */
	void (*cancel)(struct co_stage_run *run);

	/*
	 * Undo on pipeline failure, for stages that made something the failed pipeline
	 * must not leave behind (create-cluster deletes the new cluster). Runs for every
	 * stage that started, in reverse order; must be idempotent; calls
	 * co_stage_done() when finished. NULL when nothing to undo.
	 */
	int (*cleanup)(struct co_stage_run *run, struct co_error *err);

	/*
	 * A verified git push reached the runner (webhook) while this stage runs:
	 * urls names the pushed repository (NULL-terminated, borrowed for the call).
	 * Stages that wait for a repository's HEAD check it at once instead of at the
	 * next poll. May be NULL; never called during cleanup.
	 */
	void (*on_push)(struct co_stage_run *run, const char *const *urls);
};

/* ---- what a stage can reach ---- */

uv_loop_t *co_stage_loop(const struct co_stage_run *run);
struct co_pipeline *co_stage_pipeline(const struct co_stage_run *run);
const char *co_stage_name(const struct co_stage_run *run);

/* The pipeline request (borrowed): {"old", "new", "image", "env", "location", ...}. */
const json_t *co_stage_request(const struct co_stage_run *run);
/* A string field of the request, or NULL. */
const char *co_stage_request_str(const struct co_stage_run *run, const char *key);

/* Outputs recorded by an earlier (finished) stage, or NULL. Borrowed. */
const json_t *co_stage_output(const struct co_stage_run *run, const char *stage);

/* Per-stage private pointer for the stage's own state struct. */
void co_stage_set_priv(struct co_stage_run *run, void *priv);
void *co_stage_get_priv(const struct co_stage_run *run);

/* True when the run is a cleanup pass rather than a normal start. */
bool co_stage_is_cleanup(const struct co_stage_run *run);

/* ---- progress, journal, logging ---- */

/*
 * Enter a new state: logs "stage 'x': old -> new" and journals it with details
 * (borrowed, may be NULL) before returning, so the state is durable before the
 * operation it announces starts. Returns 0 or the journal's error.
 */
int co_stage_set_state(struct co_stage_run *run, const char *state, const json_t *details,
		       struct co_error *err);
const char *co_stage_state(const struct co_stage_run *run);

/* Record an output (key -> value, value stolen) that later stages read with
 * co_stage_output(). Journaled at once. */
int co_stage_record(struct co_stage_run *run, const char *key, json_t *value,
		    struct co_error *err);

/* Say what the stage is waiting for ("Kustomization flux-system/tenants Ready at
 * main@sha1:1a2b3c"); shown by the progress display and in a deadline error. */
void co_stage_waiting(struct co_stage_run *run, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void co_stage_log(struct co_stage_run *run, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The stage has finished: status 0 or negative with err (copied). Exactly once per
 * start/cleanup. The engine journals the result and moves on. */
void co_stage_done(struct co_stage_run *run, int status, const struct co_error *err);

/*
 * Jittered exponential backoff for a stage's own polling and retries: attempt 0..n,
 * base and cap in (unscaled) ms; returns the scaled delay.
 */
uint64_t co_stage_backoff(unsigned attempt, uint64_t base_ms, uint64_t cap_ms);

/* A transient failure is worth retrying: -EAGAIN, -ETIMEDOUT, -ECONNREFUSED,
 * -ECONNRESET, -EHOSTUNREACH, -EIO from a transport, 429/5xx mapped to -EAGAIN. */
bool co_error_is_transient(int code);

#endif
