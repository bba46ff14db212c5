/*
 * The pipeline engine, see pipeline.h and stage.h.
 *
 * One pipeline runs one stage at a time. The engine keeps a small state machine of its
 * own (RUNNING a stage, WAITING to retry it, CLEANING UP after a failure, DONE), and
 * every transition that matters for resume is journaled before it takes effect. The
 * stage list is fixed at open; which stages finished is derived from the journal, so
 * a resumed runner and a fresh one make the same decision from the same file.
 */
#include "engine/pipeline.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/time.h"
#include "engine/journal.h"
#include "engine/lock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum phase {
	PHASE_IDLE,      /* opened, not running */
	PHASE_STAGE,     /* a stage is running */
	PHASE_BACKOFF,   /* waiting to retry the current stage */
	PHASE_CLEANUP,   /* running cleanups in reverse order */
	PHASE_DONE,      /* the done callback has run */
};

static const char *const phase_names[] = {
	[PHASE_IDLE] = "idle",       [PHASE_STAGE] = "stage", [PHASE_BACKOFF] = "backoff",
	[PHASE_CLEANUP] = "cleanup", [PHASE_DONE] = "done",
};

struct co_stage_run {
	struct co_pipeline *p;
	const struct co_stage_ops *ops;
	char *state;
	char *waiting;
	void *priv;
	bool cleanup;
	bool finished;
	uint64_t started_ms;
};

struct co_pipeline {
	uv_loop_t *loop;
	char *state_dir;
	char *id;
	char *dir;
	struct co_lock *lock;
	struct co_journal *journal;
	json_t *request;
	json_t *outputs;            /* stage -> {key: value} */
	struct co_pipeline_services svc;
	const struct co_stage_ops *const *stages;
	unsigned nstages;
	unsigned max_attempts;
	bool keep_failed;
	char *stop_after;
	co_pipeline_progress_cb progress;
	void *progress_data;

	enum phase phase;
	unsigned current;           /* index of the running stage */
	unsigned attempts;
	unsigned cleanup_index;     /* next stage (exclusive, counting down) to clean */
	struct co_stage_run *run;
	uv_timer_t deadline;        /* stage deadline */
	uv_timer_t retry;           /* backoff before a retry */
	int timers_open;
	bool deadline_hit;
	bool stopping;
	uint64_t started_ms;
	uint64_t stage_deadline_ms; /* absolute mono ms of the current stage's deadline */

	struct co_pipeline_result result;
	char failed_stage[64];
	co_pipeline_done_cb done_cb;
	void *done_data;
	bool free_requested;
};

static void run_next(struct co_pipeline *p);
static void cleanup_next(struct co_pipeline *p);
static void finish(struct co_pipeline *p);

/* ---- helpers ---- */

char *co_pipeline_dir(const char *state_dir, const char *id)
{
	return co_asprintf("%s/pipelines/%s", state_dir, id);
}

static bool valid_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > 128)
		return false;
	for (const char *c = id; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
		      *c == '.' || *c == '_'))
			return false;
	return true;
}

static int journal(struct co_pipeline *p, json_t *entry, struct co_error *err)
{
	int rc = co_journal_append(p->journal, entry, err);

	json_decref(entry);
	return rc;
}

static void notify(struct co_pipeline *p)
{
	struct co_pipeline_progress pr = { 0 };
	uint64_t now = co_time_mono_ms();

	if (!p->progress)
		return;
	pr.count = p->nstages;
	pr.elapsed_ms = now - p->started_ms;
	if (p->run) {
		pr.stage = p->run->ops->name;
		pr.state = p->run->state ? p->run->state : "";
		pr.waiting = p->run->waiting ? p->run->waiting : "";
		pr.index = p->current + 1;
		pr.stage_elapsed_ms = now - p->run->started_ms;
	}
	p->progress(&pr, p->progress_data);
}

static const char *stage_last_state(struct co_pipeline *p, const char *name,
				    const json_t **ret_details)
{
	const json_t *e = co_journal_last(p->journal, "stage", "stage", name);

	if (ret_details)
		*ret_details = e ? json_object_get(e, "details") : NULL;
	return e ? json_string_value(json_object_get(e, "to")) : NULL;
}

static bool stage_done(struct co_pipeline *p, const char *name)
{
	const char *s = stage_last_state(p, name, NULL);

	return s && strcmp(s, "done") == 0;
}

static bool stage_started(struct co_pipeline *p, const char *name)
{
	return stage_last_state(p, name, NULL) != NULL;
}

/* ---- stage-facing API ---- */

uv_loop_t *co_stage_loop(const struct co_stage_run *run)
{
	return run->p->loop;
}

struct co_pipeline *co_stage_pipeline(const struct co_stage_run *run)
{
	return run->p;
}

const char *co_stage_name(const struct co_stage_run *run)
{
	return run->ops->name;
}

const json_t *co_stage_request(const struct co_stage_run *run)
{
	return run->p->request;
}

const char *co_stage_request_str(const struct co_stage_run *run, const char *key)
{
	return json_string_value(json_object_get(run->p->request, key));
}

const json_t *co_stage_output(const struct co_stage_run *run, const char *stage)
{
	return json_object_get(run->p->outputs, stage);
}

void co_stage_set_priv(struct co_stage_run *run, void *priv)
{
	run->priv = priv;
}

void *co_stage_get_priv(const struct co_stage_run *run)
{
	return run->priv;
}

bool co_stage_is_cleanup(const struct co_stage_run *run)
{
	return run->cleanup;
}

int co_stage_set_state(struct co_stage_run *run, const char *state, const json_t *details,
		       struct co_error *err)
{
	struct co_pipeline *p = run->p;
	json_t *e;
	int rc;

	co_log_info("engine", "pipeline '%s' stage '%s'%s: %s -> %s", p->id, run->ops->name,
		    run->cleanup ? " (cleanup)" : "", run->state ? run->state : "(start)",
		    state);
	e = json_pack("{s:s, s:s, s:s}", "type", "stage", "stage", run->ops->name, "to", state);
	if (details)
		json_object_set(e, "details", (json_t *)details);
	if (run->cleanup)
		json_object_set_new(e, "cleanup", json_true());
	rc = journal(p, e, err);
	if (rc < 0)
		return rc;
	free(run->state);
	run->state = co_strdup(state);
	free(run->waiting);
	run->waiting = NULL;
	notify(p);
	return 0;
}

const char *co_stage_state(const struct co_stage_run *run)
{
	return run->state;
}

int co_stage_record(struct co_stage_run *run, const char *key, json_t *value,
		    struct co_error *err)
{
	struct co_pipeline *p = run->p;
	json_t *e = json_pack("{s:s, s:s, s:s, s:O}", "type", "output", "stage",
			      run->ops->name, "key", key, "value", value);
	json_t *mine;
	int rc = journal(p, e, err);

	if (rc == 0) {
		mine = json_object_get(p->outputs, run->ops->name);
		if (!mine) {
			mine = json_object();
			json_object_set_new(p->outputs, run->ops->name, mine);
		}
		json_object_set(mine, key, value);
	}
	json_decref(value);
	return rc;
}

void co_stage_waiting(struct co_stage_run *run, const char *fmt, ...)
{
	struct co_buf b = CO_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (run->waiting && strcmp(run->waiting, co_buf_cstr(&b)) == 0) {
		co_buf_release(&b);
		return;
	}
	free(run->waiting);
	run->waiting = co_buf_detach(&b, NULL);
	co_log_debug("engine", "stage '%s' waiting for %s", run->ops->name, run->waiting);
	notify(run->p);
}

void co_stage_log(struct co_stage_run *run, int level, const char *fmt, ...)
{
	struct co_buf b = CO_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	co_log_msg((enum co_log_level)level, run->ops->name, "%s", co_buf_cstr(&b));
	co_buf_release(&b);
}

uint64_t co_stage_backoff(unsigned attempt, uint64_t base_ms, uint64_t cap_ms)
{
	uint64_t d = base_ms;

	for (unsigned i = 0; i < attempt && d < cap_ms; i++)
		d *= 2;
	if (d > cap_ms)
		d = cap_ms;
	/* Full jitter in [d/2, d]: spreads retries of many tenants apart. */
	d = d / 2 + (uint64_t)(random() % (long)(d / 2 + 1));
	return co_time_scaled((int64_t)d);
}

bool co_error_is_transient(int code)
{
	switch (code) {
	case -EAGAIN:
	case -ETIMEDOUT:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EPIPE:
	case -EIO:
		return true;
	default:
		return false;
	}
}

/* ---- running stages ---- */

static void run_free(struct co_stage_run *run)
{
	if (!run)
		return;
	free(run->state);
	free(run->waiting);
	free(run);
}

static uint64_t stage_deadline(struct co_pipeline *p, const struct co_stage_ops *ops)
{
	const json_t *d = json_object_get(json_object_get(p->request, "deadlines"), ops->name);
	int64_t ms = (int64_t)ops->deadline_ms;

	if (json_is_string(d))
		co_time_parse_duration(json_string_value(d), &ms);
	return co_time_scaled(ms ? ms : 600000);
}

static void deadline_cb(uv_timer_t *t)
{
	struct co_pipeline *p = t->data;

	if (!p->run || p->run->finished)
		return;
	p->deadline_hit = true;
	co_log_warn("engine", "pipeline '%s' stage '%s': deadline reached%s%s", p->id,
		    p->run->ops->name, p->run->waiting ? " while waiting for " : "",
		    p->run->waiting ? p->run->waiting : "");
	if (p->run->ops->cancel)
		p->run->ops->cancel(p->run);
}

static void start_stage(struct co_pipeline *p)
{
	const struct co_stage_ops *ops = p->stages[p->current];
	struct co_stage_run *run = co_calloc(1, sizeof(*run));
	struct co_error err = CO_ERROR_INIT;
	const json_t *details = NULL;
	const char *last = stage_last_state(p, ops->name, &details);
	char *last_copy = last ? co_strdup(last) : NULL;
	json_t *details_copy = details ? json_deep_copy(details) : NULL;
	int rc;

	run->p = p;
	run->ops = ops;
	run->started_ms = co_time_mono_ms();
	p->run = run;
	p->phase = PHASE_STAGE;
	p->deadline_hit = false;
	if (p->attempts == 0)
		p->stage_deadline_ms = co_time_mono_ms() + stage_deadline(p, ops);
	/* "retry"/"failed" are the engine's marks; the stage resumes from its own. */
	if (last_copy && (strcmp(last_copy, "retry") == 0 || strcmp(last_copy, "failed") == 0)) {
		const json_t *e;

		free(last_copy);
		last_copy = NULL;
		json_decref(details_copy);
		details_copy = NULL;
		for (size_t i = json_array_size(co_journal_entries(p->journal)); i-- > 0;) {
			const char *to, *st;

			e = json_array_get(co_journal_entries(p->journal), i);
			st = json_string_value(json_object_get(e, "stage"));
			to = json_string_value(json_object_get(e, "to"));
			if (!st || strcmp(st, ops->name) != 0 || !to)
				continue;
			if (strcmp(to, "retry") == 0 || strcmp(to, "failed") == 0)
				continue;
			last_copy = co_strdup(to);
			details = json_object_get(e, "details");
			details_copy = details ? json_deep_copy(details) : NULL;
			break;
		}
	}
	if (!last_copy) {
		rc = co_stage_set_state(run, "started", NULL, &err);
		if (rc < 0)
			goto fail;
	} else {
		run->state = co_strdup(last_copy);
		co_log_info("engine", "pipeline '%s' stage '%s': resuming from '%s'", p->id,
			    ops->name, last_copy);
	}
	uv_timer_start(&p->deadline, deadline_cb,
		       p->stage_deadline_ms > co_time_mono_ms()
			       ? p->stage_deadline_ms - co_time_mono_ms()
			       : 1,
		       0);
	notify(p);
	rc = ops->start(run, strcmp(run->state, "started") == 0 ? NULL : run->state,
			details_copy, &err);
	free(last_copy);
	json_decref(details_copy);
	if (rc < 0)
		co_stage_done(run, rc, &err);
	return;
fail:
	free(last_copy);
	json_decref(details_copy);
	co_stage_done(run, rc, &err);
}

static void retry_cb(uv_timer_t *t)
{
	struct co_pipeline *p = t->data;

	if (p->stopping) {
		finish(p);
		return;
	}
	start_stage(p);
}

static void fail_pipeline(struct co_pipeline *p, const char *stage, int status,
			  const struct co_error *err)
{
	const struct co_stage_ops *ops = p->stages[p->current];
	json_t *e;
	struct co_error jerr = CO_ERROR_INIT;

	p->result.status = status;
	snprintf(p->failed_stage, sizeof(p->failed_stage), "%s", stage);
	p->result.failed_stage = p->failed_stage;
	co_error_set(&p->result.err, status, "stage '%s': %s", stage, co_error_str(err));
	co_log_err("engine", "pipeline '%s' failed: %s", p->id, p->result.err.msg);
	if (ops->before_switch) {
		e = json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "pipeline", "event", "cleanup",
			      "stage", stage, "error", p->result.err.msg, "keepFailed",
			      p->keep_failed);
		if (journal(p, e, &jerr) < 0)
			co_log_err("engine", "%s", jerr.msg);
		p->phase = PHASE_CLEANUP;
		p->cleanup_index = p->current + 1;
		cleanup_next(p);
		return;
	}
	e = json_pack("{s:s, s:s, s:s, s:s}", "type", "pipeline", "event", "failed", "stage",
		      stage, "error", p->result.err.msg);
	if (journal(p, e, &jerr) < 0)
		co_log_err("engine", "%s", jerr.msg);
	finish(p);
}

void co_stage_done(struct co_stage_run *run, int status, const struct co_error *err)
{
	struct co_pipeline *p = run->p;
	const struct co_stage_ops *ops = run->ops;
	struct co_error e = CO_ERROR_INIT;
	struct co_error jerr = CO_ERROR_INIT;
	uint64_t now = co_time_mono_ms();

	if (run->finished)
		return; /* a programming error in a stage; ignore the second call */
	run->finished = true;
	uv_timer_stop(&p->deadline);
	if (err)
		co_error_copy(&e, err);
	if (status < 0 && !e.msg[0])
		co_error_set(&e, status, "%s", co_error_str(&(struct co_error){ .code = status }));

	if (run->cleanup) {
		json_t *j = json_pack("{s:s, s:s, s:s, s:b}", "type", "stage", "stage", ops->name,
				      "to", status == 0 ? "cleaned" : "cleanup-failed", "cleanup",
				      1);

		if (status < 0) {
			json_object_set_new(j, "error", json_string(e.msg));
			co_log_err("engine", "pipeline '%s' cleanup of '%s' failed: %s", p->id,
				   ops->name, e.msg);
		}
		journal(p, j, &jerr);
		p->run = NULL;
		run_free(run);
		cleanup_next(p);
		return;
	}

	if (status == 0) {
		co_stage_set_state(run, "done", NULL, &jerr);
		co_log_info("engine", "pipeline '%s' stage '%s' done in %.1fs", p->id, ops->name,
			    (double)(now - run->started_ms) / 1000.0);
		p->run = NULL;
		run_free(run);
		p->attempts = 0;
		p->current++;
		if (p->stopping) {
			finish(p);
			return;
		}
		run_next(p);
		return;
	}

	if (p->stopping && !p->deadline_hit) {
		/* Interrupted by a signal: resumable, no cleanup, no failure mark. */
		p->run = NULL;
		run_free(run);
		finish(p);
		return;
	}
	if (p->deadline_hit) {
		status = -ETIMEDOUT;
		co_error_set(&e, status, "did not finish within its deadline%s%s",
			     run->waiting ? "; waiting for " : "",
			     run->waiting ? run->waiting : "");
	} else if (co_error_is_transient(status) && ++p->attempts < p->max_attempts &&
		   now < p->stage_deadline_ms) {
		uint64_t delay = co_stage_backoff(p->attempts - 1, 1000, 30000);
		json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i}", "type", "stage", "stage",
				      ops->name, "to", "retry", "error", e.msg, "attempt",
				      p->attempts);

		co_log_warn("engine", "pipeline '%s' stage '%s': %s; retrying in %.1fs "
			    "(attempt %u of %u)", p->id, ops->name, e.msg,
			    (double)delay / 1000.0, p->attempts + 1, p->max_attempts);
		journal(p, j, &jerr);
		p->run = NULL;
		run_free(run);
		p->phase = PHASE_BACKOFF;
		uv_timer_start(&p->retry, retry_cb, delay, 0);
		return;
	}
	{
		json_t *j = json_pack("{s:s, s:s, s:s, s:s}", "type", "stage", "stage", ops->name,
				      "to", "failed", "error", e.msg);

		journal(p, j, &jerr);
	}
	p->run = NULL;
	run_free(run);
	fail_pipeline(p, ops->name, status, &e);
}

static void run_next(struct co_pipeline *p)
{
	struct co_error jerr = CO_ERROR_INIT;

	while (p->current < p->nstages && stage_done(p, p->stages[p->current]->name))
		p->current++;
	if (p->current >= p->nstages ||
	    (p->stop_after && p->current > 0 &&
	     strcmp(p->stages[p->current - 1]->name, p->stop_after) == 0)) {
		json_t *e = json_pack("{s:s, s:s}", "type", "pipeline", "event", "succeeded");

		if (p->current < p->nstages)
			json_object_set_new(e, "stoppedAfter", json_string(p->stop_after));
		journal(p, e, &jerr);
		co_log_info("engine", "pipeline '%s' succeeded in %.1fs", p->id,
			    (double)(co_time_mono_ms() - p->started_ms) / 1000.0);
		finish(p);
		return;
	}
	start_stage(p);
}

/* ---- cleanup ---- */

static void cleanup_next(struct co_pipeline *p)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_error jerr = CO_ERROR_INIT;

	while (p->cleanup_index > 0) {
		const struct co_stage_ops *ops = p->stages[--p->cleanup_index];
		struct co_stage_run *run;
		int rc;

		if (!ops->cleanup || !stage_started(p, ops->name))
			continue;
		if (p->keep_failed) {
			co_log_warn("engine", "pipeline '%s': --keep-failed: skipping cleanup of "
				    "'%s'", p->id, ops->name);
			continue;
		}
		run = co_calloc(1, sizeof(*run));
		run->p = p;
		run->ops = ops;
		run->cleanup = true;
		run->started_ms = co_time_mono_ms();
		p->run = run;
		co_log_info("engine", "pipeline '%s': cleaning up after '%s'", p->id, ops->name);
		rc = ops->cleanup(run, &err);
		if (rc < 0)
			co_stage_done(run, rc, &err);
		return;
	}
	p->result.cleaned_up = !p->keep_failed;
	journal(p, json_pack("{s:s, s:s, s:s, s:s, s:b}", "type", "pipeline", "event",
			     "failed", "stage", p->failed_stage, "error", p->result.err.msg,
			     "cleanedUp", p->result.cleaned_up),
		&jerr);
	finish(p);
}

/* ---- lifecycle ---- */

static void finish(struct co_pipeline *p)
{
	struct co_error jerr = CO_ERROR_INIT;

	if (p->phase == PHASE_DONE)
		return;
	if (p->stopping && p->result.status == 0 && p->current < p->nstages) {
		p->result.status = -EINTR;
		co_error_set(&p->result.err, -EINTR, "pipeline '%s' interrupted; run "
			     "'cutover resume %s' to continue", p->id, p->id);
		journal(p, json_pack("{s:s, s:s}", "type", "pipeline", "event", "interrupted"),
			&jerr);
	}
	p->phase = PHASE_DONE;
	notify(p);
	if (p->done_cb)
		p->done_cb(&p->result, p->done_data);
}

static bool requests_equal(const json_t *a, const json_t *b)
{
	return json_equal((json_t *)a, (json_t *)b);
}

int co_pipeline_open(struct co_pipeline **ret, uv_loop_t *loop,
		     const struct co_pipeline_opts *opts,
		     const struct co_pipeline_services *svc, struct co_error *err)
{
	struct co_pipeline *p;
	char *path;
	const json_t *created, *last;
	int rc;

	if (!opts->id || !valid_id(opts->id))
		return co_error_set(err, -EINVAL, "pipeline id '%s' is not valid (use a-z, 0-9, "
				    "'-', '.', '_')", opts->id ? opts->id : "");
	if (!opts->stages || !opts->stages[0])
		return co_error_set(err, -EINVAL, "pipeline '%s': no stages", opts->id);
	p = co_calloc(1, sizeof(*p));
	p->loop = loop;
	p->state_dir = co_strdup(opts->state_dir);
	p->id = co_strdup(opts->id);
	p->dir = co_pipeline_dir(opts->state_dir, opts->id);
	p->stages = opts->stages;
	while (p->stages[p->nstages])
		p->nstages++;
	p->max_attempts = opts->max_attempts ? opts->max_attempts : 5;
	p->keep_failed = opts->keep_failed;
	p->stop_after = opts->stop_after ? co_strdup(opts->stop_after) : NULL;
	p->progress = opts->progress;
	p->progress_data = opts->progress_data;
	p->outputs = json_object();
	if (svc)
		p->svc = *svc;

	path = co_asprintf("%s/lock", p->dir);
	rc = co_lock_acquire(&p->lock, path, err);
	free(path);
	if (rc < 0)
		goto fail;
	path = co_asprintf("%s/journal.jsonl", p->dir);
	rc = co_journal_open(&p->journal, path, err);
	free(path);
	if (rc < 0)
		goto fail;

	created = co_journal_last(p->journal, "pipeline", "event", "created");
	if (!created && !opts->request) {
		rc = co_error_set(err, -ENOENT, "no pipeline '%s' in '%s'", opts->id,
				  opts->state_dir);
		goto fail;
	}
	if (created && opts->request &&
	    !requests_equal(json_object_get(created, "request"), opts->request)) {
		rc = co_error_set(err, -EEXIST, "pipeline '%s' already exists with another "
				  "request; use 'cutover resume %s' or pick another name",
				  opts->id, opts->id);
		goto fail;
	}
	last = co_journal_last(p->journal, "pipeline", NULL, NULL);
	if (last) {
		const char *ev = json_string_value(json_object_get(last, "event"));

		if (ev && (strcmp(ev, "succeeded") == 0 || strcmp(ev, "failed") == 0)) {
			rc = co_error_set(err, -EALREADY, "pipeline '%s' already %s%s%s", opts->id,
					  ev, strcmp(ev, "failed") == 0 ? ": " : "",
					  strcmp(ev, "failed") == 0
						  ? json_string_value(json_object_get(last, "error"))
						  : "");
			goto fail;
		}
	}
	if (created) {
		p->request = json_deep_copy(json_object_get(created, "request"));
	} else {
		p->request = json_deep_copy(opts->request);
		rc = journal(p, json_pack("{s:s, s:s, s:s, s:O}", "type", "pipeline", "event",
					  "created", "id", p->id, "request", p->request),
			     err);
		if (rc < 0)
			goto fail;
	}
	/* Rebuild recorded outputs. */
	{
		const json_t *entries = co_journal_entries(p->journal);
		json_t *e;
		size_t i;

		json_array_foreach(entries, i, e) {
			const char *type = json_string_value(json_object_get(e, "type"));
			const char *st = json_string_value(json_object_get(e, "stage"));
			const char *key = json_string_value(json_object_get(e, "key"));
			json_t *mine;

			if (!type || strcmp(type, "output") != 0 || !st || !key)
				continue;
			mine = json_object_get(p->outputs, st);
			if (!mine) {
				mine = json_object();
				json_object_set_new(p->outputs, st, mine);
			}
			json_object_set(mine, key, json_object_get(e, "value"));
		}
	}
	uv_timer_init(loop, &p->deadline);
	uv_timer_init(loop, &p->retry);
	p->deadline.data = p;
	p->retry.data = p;
	p->timers_open = 2;
	*ret = p;
	return 0;
fail:
	co_pipeline_free(p);
	return rc;
}

int co_pipeline_run(struct co_pipeline *p, co_pipeline_done_cb cb, void *data,
		    struct co_error *err)
{
	const json_t *cleanup;
	const json_t *last;

	if (p->phase != PHASE_IDLE)
		return co_error_set(err, -EBUSY, "pipeline '%s' is already %s", p->id,
				    phase_names[p->phase]);
	p->done_cb = cb;
	p->done_data = data;
	p->started_ms = co_time_mono_ms();
	/* A runner that died during cleanup resumes the cleanup, not the stages. */
	cleanup = co_journal_last(p->journal, "pipeline", "event", "cleanup");
	last = co_journal_last(p->journal, "pipeline", NULL, NULL);
	if (cleanup && last == cleanup) {
		const char *stage = json_string_value(json_object_get(cleanup, "stage"));

		for (p->current = 0; p->current < p->nstages; p->current++)
			if (strcmp(p->stages[p->current]->name, stage ? stage : "") == 0)
				break;
		if (p->current >= p->nstages)
			p->current = p->nstages - 1;
		snprintf(p->failed_stage, sizeof(p->failed_stage), "%s", stage ? stage : "");
		p->result.failed_stage = p->failed_stage;
		p->result.status = -EIO;
		co_error_set(&p->result.err, -EIO, "%s",
			     json_string_value(json_object_get(cleanup, "error")));
		p->phase = PHASE_CLEANUP;
		p->cleanup_index = p->current + 1;
		co_log_info("engine", "pipeline '%s': resuming cleanup after failed stage '%s'",
			    p->id, p->failed_stage);
		cleanup_next(p);
		return 0;
	}
	run_next(p);
	return 0;
}

void co_pipeline_stop(struct co_pipeline *p)
{
	if (p->stopping || p->phase == PHASE_DONE)
		return;
	p->stopping = true;
	co_log_warn("engine", "pipeline '%s': stopping", p->id);
	if (p->phase == PHASE_BACKOFF) {
		uv_timer_stop(&p->retry);
		finish(p);
		return;
	}
	if (p->phase == PHASE_STAGE && p->run && !p->run->finished && p->run->ops->cancel)
		p->run->ops->cancel(p->run);
	/* During cleanup the stop is noted but cleanup finishes: leaving a half-deleted
	 * cluster behind is worse than a slower exit. */
}

void co_pipeline_notify_push(struct co_pipeline *p, const char *const *urls)
{
	struct co_stage_run *run = p ? p->run : NULL;

	if (!run || run->finished || run->cleanup || p->stopping ||
	    p->phase != PHASE_STAGE || !run->ops->on_push || !run->priv)
		return;
	run->ops->on_push(run, urls);
}

static void timer_closed(uv_handle_t *h)
{
	struct co_pipeline *p = h->data;

	if (--p->timers_open == 0)
		free(p);
}

void co_pipeline_free(struct co_pipeline *p)
{
	if (!p)
		return;
	co_journal_free(p->journal);
	co_lock_release(p->lock);
	json_decref(p->request);
	json_decref(p->outputs);
	run_free(p->run);
	free(p->state_dir);
	free(p->id);
	free(p->dir);
	free(p->stop_after);
	if (p->timers_open) {
		uv_close((uv_handle_t *)&p->deadline, timer_closed);
		uv_close((uv_handle_t *)&p->retry, timer_closed);
		return;
	}
	free(p);
}

const char *co_pipeline_id(const struct co_pipeline *p)
{
	return p->id;
}

const char *co_pipeline_state_dir(const struct co_pipeline *p)
{
	return p->state_dir;
}

const json_t *co_pipeline_request(const struct co_pipeline *p)
{
	return p->request;
}

const struct co_pipeline_services *co_pipeline_services(const struct co_pipeline *p)
{
	return &p->svc;
}

/* ---- summary ---- */

int co_pipeline_summary(json_t **ret, const char *state_dir, const char *id,
			const struct co_stage_ops *const *stages, struct co_error *err)
{
	char *dir = co_pipeline_dir(state_dir, id);
	char *path = co_asprintf("%s/journal.jsonl", dir);
	json_t *entries = NULL, *out, *list, *by_name, *outputs, *e;
	const char *state = "running";
	size_t i;
	int rc;

	rc = co_journal_read(&entries, path, err);
	free(path);
	free(dir);
	if (rc == -ENOENT)
		return co_error_set(err, -ENOENT, "no pipeline '%s' in '%s'", id, state_dir);
	if (rc < 0)
		return rc;
	out = json_pack("{s:s}", "id", id);
	list = json_array();
	by_name = json_object();
	outputs = json_object();
	for (unsigned k = 0; stages && stages[k]; k++) {
		json_t *s = json_pack("{s:s, s:s}", "name", stages[k]->name, "state", "pending");

		json_array_append_new(list, s);
		json_object_set(by_name, stages[k]->name, s);
	}
	json_array_foreach(entries, i, e) {
		const char *type = json_string_value(json_object_get(e, "type"));
		const char *st = json_string_value(json_object_get(e, "stage"));
		const char *ev = json_string_value(json_object_get(e, "event"));
		const char *ts = json_string_value(json_object_get(e, "ts"));
		json_t *s;

		if (!type)
			continue;
		if (strcmp(type, "pipeline") == 0 && ev) {
			if (strcmp(ev, "created") == 0) {
				json_object_set(out, "request", json_object_get(e, "request"));
				json_object_set_new(out, "created", json_string(ts ? ts : ""));
				state = "running";
			} else if (strcmp(ev, "cleanup") == 0) {
				state = "cleaning-up";
			} else {
				state = ev;
			}
			if (json_object_get(e, "error"))
				json_object_set(out, "error", json_object_get(e, "error"));
			continue;
		}
		if (!st)
			continue;
		if (strcmp(type, "output") == 0) {
			json_t *mine = json_object_get(outputs, st);
			const char *key = json_string_value(json_object_get(e, "key"));

			if (!key)
				continue;
			if (!mine) {
				mine = json_object();
				json_object_set_new(outputs, st, mine);
			}
			json_object_set(mine, key, json_object_get(e, "value"));
			continue;
		}
		if (strcmp(type, "stage") != 0)
			continue;
		s = json_object_get(by_name, st);
		if (!s) {
			s = json_pack("{s:s, s:s}", "name", st, "state", "pending");
			json_array_append_new(list, s);
			json_object_set(by_name, st, s);
		}
		if (json_is_true(json_object_get(e, "cleanup"))) {
			json_object_set(s, "cleanup", json_object_get(e, "to"));
			continue;
		}
		json_object_set(s, "state", json_object_get(e, "to"));
		if (!json_object_get(s, "started") && ts)
			json_object_set_new(s, "started", json_string(ts));
		if (ts && json_string_value(json_object_get(e, "to")) &&
		    (strcmp(json_string_value(json_object_get(e, "to")), "done") == 0 ||
		     strcmp(json_string_value(json_object_get(e, "to")), "failed") == 0))
			json_object_set_new(s, "finished", json_string(ts));
		if (json_object_get(e, "error"))
			json_object_set(s, "error", json_object_get(e, "error"));
		if (json_object_get(e, "details"))
			json_object_set(s, "details", json_object_get(e, "details"));
	}
	json_object_set_new(out, "state", json_string(state));
	json_object_set_new(out, "stages", list);
	json_object_set_new(out, "outputs", outputs);
	json_decref(by_name);
	json_decref(entries);
	*ret = out;
	return 0;
}
