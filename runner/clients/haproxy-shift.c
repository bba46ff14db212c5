/*
 * Traffic shift state machine (see haproxy-shift.h).
 *
 *   PRECHECK -> SET_WEIGHTS -> BASELINE -> WATCH <-> SAMPLE -> CHECK
 *                    ^                                  |
 *                    +------------ next step -----------+
 *   CHECK (fail) or cancel-with-rollback -> ROLLBACK -> DONE
 *
 * One operation is in flight at a time (an HAProxy command, a check, or the timer), so
 * every callback first clears `busy`, honours a pending cancel, then moves on. Counters
 * come from "show stat"; a counter that went backwards (HAProxy reloaded) is read as
 * restarted from zero.
 */
#include "clients/haproxy-shift.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/time.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

enum shift_state {
	S_PRECHECK,      /* reading show stat: both servers exist, `to` is usable */
	S_SET_WEIGHTS,   /* setting the two weights of a step */
	S_BASELINE,      /* counters of `to` at the start of the step */
	S_WATCH,         /* timer until the next sample */
	S_SAMPLE,        /* counters of `to` now */
	S_CHECK,         /* the check judging the window */
	S_ROLLBACK,      /* weights back to `from` */
	S_DONE,
};

static const char *const state_names[] = {
	"precheck", "set-weights", "baseline", "watch", "sample", "check", "rollback",
	"done",
};

struct co_haproxy_shift {
	uv_loop_t *loop;
	struct co_haproxy *hx;
	char *backend, *from, *to;
	int *steps;
	size_t n_steps;
	uint64_t interval_ms, every_ms;
	int total;
	struct co_haproxy_check check;
	struct co_haproxy_stat_check stat_check;
	void (*progress)(const struct co_haproxy_shift_event *ev, void *data);
	void *progress_data;
	co_haproxy_shift_cb cb;
	void *data;

	enum shift_state state;
	int step;
	int from_w, to_w;              /* weights currently set */
	int want_from, want_to;        /* weights of the step being set */
	int weights_pending;           /* set_weight calls left for this step */
	struct co_haproxy_server_stat base;   /* `to` at step start */
	int64_t step_wall_ms;
	uint64_t step_mono_ms;
	struct co_haproxy_shift_window window;
	uv_timer_t timer;
	int busy;
	int canceled, cancel_rollback;
	int rollback_status;           /* status to report once rolled back */
	int rollback_pending;
	struct co_error err;
	struct co_haproxy_shift_result res;
};

static void enter_step(struct co_haproxy_shift *s);
static void enter_rollback(struct co_haproxy_shift *s, int status, const char *why);
static void finish(struct co_haproxy_shift *s, int status);
static void arm_tick(struct co_haproxy_shift *s);

static void set_state(struct co_haproxy_shift *s, enum shift_state st)
{
	co_log_debug("haproxy-shift", "'%s' -> '%s': %s -> %s", s->from, s->to,
		     state_names[s->state], state_names[st]);
	s->state = st;
}

static void emit(struct co_haproxy_shift *s, enum co_haproxy_shift_event_kind kind,
		 int pass, const char *reason)
{
	struct co_haproxy_shift_event ev = {
		.kind = kind,
		.step = s->step,
		.percent = s->steps[s->step],
		.from_weight = s->from_w,
		.to_weight = s->to_w,
		.window = kind == CO_HAPROXY_SHIFT_CHECK ? &s->window : NULL,
		.pass = pass,
		.reason = reason,
	};

	if (kind == CO_HAPROXY_SHIFT_ROLLBACK)
		ev.percent = 0;
	if (s->progress)
		s->progress(&ev, s->progress_data);
}

/* A callback's common prologue: returns 1 when the caller must stop (canceled). */
static int take_cancel(struct co_haproxy_shift *s)
{
	s->busy = 0;
	if (!s->canceled || s->state == S_ROLLBACK)
		return 0;
	if (s->cancel_rollback)
		enter_rollback(s, -ECANCELED, "canceled");
	else
		finish(s, -ECANCELED);
	return 1;
}

static void timer_closed(uv_handle_t *h)
{
	struct co_haproxy_shift *s = h->data;

	s->cb(s->res.completed ? 0 : s->err.code, &s->res, s->res.completed ? NULL : &s->err,
	      s->data);
	free(s->backend);
	free(s->from);
	free(s->to);
	free(s->steps);
	free(s);
}

static void finish(struct co_haproxy_shift *s, int status)
{
	set_state(s, S_DONE);
	if (status == 0) {
		s->res.completed = 1;
		co_error_clear(&s->err);
	} else if (s->err.code == 0) {
		co_error_set(&s->err, status, "shift '%s' -> '%s': %s", s->from, s->to,
			     status == -ECANCELED ? "canceled" : "failed");
	}
	s->err.code = status;
	s->res.percent = s->to_w * 100 / s->total;
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, timer_closed);
}

static void fail(struct co_haproxy_shift *s, int status, const struct co_error *err)
{
	co_error_copy(&s->err, err);
	if (s->err.code == 0)
		s->err.code = status;
	co_error_prefix(&s->err, "shift '%s' -> '%s'", s->from, s->to);
	/* an HAProxy failure mid-shift: try to give everything back to `from` */
	if (s->state != S_ROLLBACK && s->state != S_PRECHECK && s->to_w > 0) {
		char why[CO_ERROR_MSG_MAX];

		snprintf(why, sizeof(why), "%s", s->err.msg);
		enter_rollback(s, status, why);
		return;
	}
	finish(s, status);
}

/* ---- stat helpers ---- */

static int find_server(const struct co_haproxy_csv *csv, const char *backend,
		       const char *server, struct co_haproxy_server_stat *ret)
{
	long row = co_haproxy_csv_find(csv, backend, server);

	if (row < 0)
		return -ENOENT;
	return co_haproxy_csv_server(csv, (size_t)row, ret);
}

static uint64_t delta(uint64_t now, uint64_t then)
{
	return now >= then ? now - then : now;
}

static void compute_window(struct co_haproxy_shift *s)
{
	struct co_haproxy_shift_window *w = &s->window;
	uint64_t resp = 0, errs;

	for (int i = 0; i < 6; i++)
		resp += delta(w->to_stat.hrsp[i], s->base.hrsp[i]);
	errs = delta(w->to_stat.econ, s->base.econ) + delta(w->to_stat.eresp, s->base.eresp);
	w->requests = resp + errs;
	w->errors = delta(w->to_stat.hrsp[4], s->base.hrsp[4]) + errs;
	w->error_ratio = w->requests ? (double)w->errors / (double)w->requests : NAN;
	w->backend = s->backend;
	w->from = s->from;
	w->to = s->to;
	w->step = s->step;
	w->percent = s->steps[s->step];
	w->start_wall_ms = s->step_wall_ms;
	w->end_wall_ms = co_time_wall_ms();
}

void co_haproxy_stat_check_fn(const struct co_haproxy_shift_window *w,
			      co_haproxy_check_done_cb done, void *done_data, void *data)
{
	const struct co_haproxy_stat_check *c = data;
	char reason[256];

	if (w->requests < c->min_requests || w->requests == 0) {
		snprintf(reason, sizeof(reason),
			 "%llu requests to '%s', fewer than %llu: not judged",
			 (unsigned long long)w->requests, w->to,
			 (unsigned long long)c->min_requests);
		done(0, 1, reason, done_data);
		return;
	}
	snprintf(reason, sizeof(reason), "error ratio of '%s' %.4f (%llu/%llu) %s %.4f",
		 w->to, w->error_ratio, (unsigned long long)w->errors,
		 (unsigned long long)w->requests,
		 w->error_ratio > c->max_error_ratio ? ">" : "<=", c->max_error_ratio);
	done(0, w->error_ratio <= c->max_error_ratio, reason, done_data);
}

/* ---- rollback ---- */

static void on_rollback_weight(int status, const char *answer, const struct co_error *err,
			       void *data)
{
	struct co_haproxy_shift *s = data;
	struct co_error local = CO_ERROR_INIT;

	s->busy = 0;
	if (status < 0) {
		co_error_copy(&local, err);
		co_error_set(&s->err, status, "shift '%s' -> '%s': return to '%s' failed: %s",
			     s->from, s->to, s->from, local.msg);
		finish(s, status);
		return;
	}
	if (--s->weights_pending > 0) {
		/* `from` is at full weight: now take `to` out */
		s->from_w = s->total;
		s->busy = 1;
		if (co_haproxy_set_weight(s->hx, s->backend, s->to, 0, on_rollback_weight, s,
					  &local) < 0) {
			on_rollback_weight(local.code, "", &local, s);
		}
		return;
	}
	s->to_w = 0;
	s->res.rolled_back = 1;
	emit(s, CO_HAPROXY_SHIFT_ROLLBACK, 0, s->err.msg);
	finish(s, s->rollback_status);
}

static void enter_rollback(struct co_haproxy_shift *s, int status, const char *why)
{
	struct co_error local = CO_ERROR_INIT;

	set_state(s, S_ROLLBACK);
	uv_timer_stop(&s->timer);
	s->rollback_status = status;
	if (status == -ECANCELED)
		co_error_set(&s->err, status, "shift '%s' -> '%s' canceled at %d%%, "
			     "weights returned to '%s'", s->from, s->to, s->steps[s->step],
			     s->from);
	else if (status == -EIO)
		co_error_set(&s->err, status, "shift '%s' -> '%s' rolled back at %d%%: %s",
			     s->from, s->to, s->steps[s->step], why);
	else
		co_error_set(&s->err, status, "%s (weights returned to '%s')", why, s->from);
	s->weights_pending = 2;
	s->busy = 1;
	if (co_haproxy_set_weight(s->hx, s->backend, s->from, s->total, on_rollback_weight, s,
				  &local) < 0)
		on_rollback_weight(local.code, "", &local, s);
}

/* ---- watching a step ---- */

static void on_check_done(int status, int pass, const char *reason, void *data)
{
	struct co_haproxy_shift *s = data;
	char why[256];

	if (take_cancel(s))
		return;
	if (status < 0) {
		snprintf(why, sizeof(why), "check could not be made: %s",
			 reason ? reason : "unknown error");
		pass = 0;
		reason = why;
	}
	s->res.error_ratio = s->window.error_ratio;
	s->res.requests = s->window.requests;
	emit(s, CO_HAPROXY_SHIFT_CHECK, pass, reason);
	if (!pass) {
		enter_rollback(s, -EIO, reason ? reason : "check failed");
		return;
	}
	if (co_time_mono_ms() - s->step_mono_ms + 5 < s->interval_ms) {
		arm_tick(s);
		return;
	}
	if ((size_t)s->step + 1 < s->n_steps) {
		s->step++;
		s->res.step = s->step;
		enter_step(s);
	} else {
		finish(s, 0);
	}
}

static void on_sample(int status, const struct co_haproxy_csv *csv,
		      const struct co_error *err, void *data)
{
	struct co_haproxy_shift *s = data;
	struct co_error local = CO_ERROR_INIT;

	if (take_cancel(s))
		return;
	if (status < 0) {
		fail(s, status, err);
		return;
	}
	if (find_server(csv, s->backend, s->to, &s->window.to_stat) < 0 ||
	    find_server(csv, s->backend, s->from, &s->window.from_stat) < 0) {
		co_error_set(&local, -ENOENT, "server '%s' or '%s' gone from backend '%s'",
			     s->from, s->to, s->backend);
		fail(s, -ENOENT, &local);
		return;
	}
	compute_window(s);
	set_state(s, S_CHECK);
	s->busy = 1;
	s->check.fn(&s->window, on_check_done, s, s->check.data);
}

static void on_tick(uv_timer_t *t)
{
	struct co_haproxy_shift *s = t->data;
	struct co_error local = CO_ERROR_INIT;

	set_state(s, S_SAMPLE);
	s->busy = 1;
	if (co_haproxy_show_stat(s->hx, on_sample, s, &local) < 0)
		on_sample(local.code, NULL, &local, s);
}

static void arm_tick(struct co_haproxy_shift *s)
{
	uint64_t elapsed = co_time_mono_ms() - s->step_mono_ms;
	uint64_t left = s->interval_ms > elapsed ? s->interval_ms - elapsed : 0;
	uint64_t wait = s->every_ms < left ? s->every_ms : left;

	set_state(s, S_WATCH);
	uv_timer_start(&s->timer, on_tick, wait, 0);
}

static void on_baseline(int status, const struct co_haproxy_csv *csv,
			const struct co_error *err, void *data)
{
	struct co_haproxy_shift *s = data;
	struct co_error local = CO_ERROR_INIT;

	if (take_cancel(s))
		return;
	if (status < 0) {
		fail(s, status, err);
		return;
	}
	if (find_server(csv, s->backend, s->to, &s->base) < 0) {
		co_error_set(&local, -ENOENT, "server '%s' gone from backend '%s'", s->to,
			     s->backend);
		fail(s, -ENOENT, &local);
		return;
	}
	s->step_wall_ms = co_time_wall_ms();
	s->step_mono_ms = co_time_mono_ms();
	arm_tick(s);
}

static void on_step_weight(int status, const char *answer, const struct co_error *err,
			   void *data)
{
	struct co_haproxy_shift *s = data;
	struct co_error local = CO_ERROR_INIT;

	if (take_cancel(s))
		return;
	if (status < 0) {
		fail(s, status, err);
		return;
	}
	/* the first call raised one weight; record it, then lower the other */
	if (s->weights_pending == 2) {
		int to_first = s->want_to >= s->to_w;

		if (to_first)
			s->to_w = s->want_to;
		else
			s->from_w = s->want_from;
		s->weights_pending = 1;
		s->busy = 1;
		if ((to_first ? co_haproxy_set_weight(s->hx, s->backend, s->from,
						      s->want_from, on_step_weight, s, &local)
			      : co_haproxy_set_weight(s->hx, s->backend, s->to, s->want_to,
						      on_step_weight, s, &local)) < 0)
			on_step_weight(local.code, "", &local, s);
		return;
	}
	s->from_w = s->want_from;
	s->to_w = s->want_to;
	s->weights_pending = 0;
	emit(s, CO_HAPROXY_SHIFT_STEP, 1, NULL);
	set_state(s, S_BASELINE);
	s->busy = 1;
	if (co_haproxy_show_stat(s->hx, on_baseline, s, &local) < 0)
		on_baseline(local.code, NULL, &local, s);
}

static void enter_step(struct co_haproxy_shift *s)
{
	struct co_error local = CO_ERROR_INIT;
	int to_first;

	set_state(s, S_SET_WEIGHTS);
	s->want_to = (s->total * s->steps[s->step] + 50) / 100;
	s->want_from = s->total - s->want_to;
	to_first = s->want_to >= s->to_w;
	s->weights_pending = 2;
	s->busy = 1;
	if ((to_first ? co_haproxy_set_weight(s->hx, s->backend, s->to, s->want_to,
					      on_step_weight, s, &local)
		      : co_haproxy_set_weight(s->hx, s->backend, s->from, s->want_from,
					      on_step_weight, s, &local)) < 0)
		on_step_weight(local.code, "", &local, s);
}

/*
 * May this server receive traffic? HAProxy reports a server it has just learned of as
 * UP before its first health check has run, and "UP 1/3" while checks are failing on
 * the way down; neither is proof of health. A checked server must be plainly "UP" with
 * a completed passing check; an unchecked one ("no check") is taken at its word,
 * since the configuration chose not to check it.
 */
static bool server_healthy(const struct co_haproxy_server_stat *st)
{
	static const char *const ok[] = { "L4OK", "L6OK", "L7OK", "L7OKC" };

	if (strcmp(st->status, "no check") == 0)
		return true;
	if (strcmp(st->status, "UP") != 0)
		return false;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strcmp(st->check_status, ok[i]) == 0)
			return true;
	return false;
}

static void on_precheck(int status, const struct co_haproxy_csv *csv,
			const struct co_error *err, void *data)
{
	struct co_haproxy_shift *s = data;
	struct co_haproxy_server_stat from, to;
	struct co_error local = CO_ERROR_INIT;

	if (take_cancel(s))
		return;
	if (status < 0) {
		fail(s, status, err);
		return;
	}
	if (find_server(csv, s->backend, s->from, &from) < 0) {
		co_error_set(&local, -ENOENT, "no server '%s' in backend '%s'", s->from,
			     s->backend);
		fail(s, -ENOENT, &local);
		return;
	}
	if (find_server(csv, s->backend, s->to, &to) < 0) {
		co_error_set(&local, -ENOENT, "no server '%s' in backend '%s'", s->to,
			     s->backend);
		fail(s, -ENOENT, &local);
		return;
	}
	if (!server_healthy(&to)) {
		co_error_set(&local, -EHOSTUNREACH,
			     "server '%s' is '%s' (last check '%s'), not UP with a passing "
			     "health check: refusing to send traffic to it",
			     s->to, to.status, to.check_status[0] ? to.check_status : "none");
		fail(s, -EHOSTUNREACH, &local);
		return;
	}
	s->from_w = from.uweight;
	s->to_w = to.uweight;
	enter_step(s);
}

/* ---- public ---- */

static void free_unstarted(uv_handle_t *h)
{
	struct co_haproxy_shift *s = h->data;

	free(s->backend);
	free(s->from);
	free(s->to);
	free(s->steps);
	free(s);
}

int co_haproxy_shift_parse_steps(const char *str, int *steps, size_t max)
{
	size_t n = 0;
	const char *p = str;

	if (!str || !*str)
		return -EINVAL;
	while (*p) {
		char *end;
		long v;

		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		v = strtol(p, &end, 10);
		if (v < 1 || v > 100 || n >= max || (n > 0 && v <= steps[n - 1]))
			return -EINVAL;
		steps[n++] = (int)v;
		p = end;
		if (*p == ',' && p[1])
			p++;
		else if (*p)
			return -EINVAL;
	}
	return (int)n;
}

int co_haproxy_shift_start(struct co_haproxy_shift **ret, uv_loop_t *loop,
			   struct co_haproxy *hx, const struct co_haproxy_shift_opts *opts,
			   co_haproxy_shift_cb cb, void *data, struct co_error *err)
{
	const char *backend = opts->backend ? opts->backend : "clusters";
	struct co_haproxy_shift *s;
	struct co_error local = CO_ERROR_INIT;

	if (!co_haproxy_valid_name(backend) || !co_haproxy_valid_name(opts->from) ||
	    !co_haproxy_valid_name(opts->to))
		return co_error_set(err, -EINVAL, "shift: invalid backend or server name");
	if (strcmp(opts->from, opts->to) == 0)
		return co_error_set(err, -EINVAL, "shift: from and to are both '%s'",
				    opts->from);
	if (opts->n_steps == 0 || !opts->steps)
		return co_error_set(err, -EINVAL, "shift: no steps");
	for (size_t i = 0; i < opts->n_steps; i++)
		if (opts->steps[i] < 1 || opts->steps[i] > 100 ||
		    (i > 0 && opts->steps[i] <= opts->steps[i - 1]))
			return co_error_set(err, -EINVAL,
					    "shift: steps must be increasing percentages "
					    "1-100");
	if (opts->total_weight < 0 || opts->total_weight > 256)
		return co_error_set(err, -EINVAL, "shift: total weight %d out of range 1-256",
				    opts->total_weight);
	if (opts->max_error_ratio < 0 || opts->max_error_ratio > 1)
		return co_error_set(err, -EINVAL, "shift: error ratio must be within 0-1");

	s = co_calloc(1, sizeof(*s));
	s->loop = loop;
	s->hx = hx;
	s->backend = co_strdup(backend);
	s->from = co_strdup(opts->from);
	s->to = co_strdup(opts->to);
	s->steps = co_calloc(opts->n_steps, sizeof(int));
	memcpy(s->steps, opts->steps, opts->n_steps * sizeof(int));
	s->n_steps = opts->n_steps;
	s->interval_ms = opts->interval_ms;
	s->every_ms = opts->check_every_ms && opts->check_every_ms < opts->interval_ms
			      ? opts->check_every_ms
			      : opts->interval_ms;
	s->total = opts->total_weight ? opts->total_weight : 100;
	s->stat_check.max_error_ratio = opts->max_error_ratio > 0 ? opts->max_error_ratio
								  : 0.01;
	s->stat_check.min_requests = opts->min_requests ? opts->min_requests : 1;
	if (opts->check) {
		s->check = *opts->check;
	} else {
		s->check.fn = co_haproxy_stat_check_fn;
		s->check.data = &s->stat_check;
	}
	s->progress = opts->progress;
	s->progress_data = opts->progress_data;
	s->cb = cb;
	s->data = data;
	s->res.error_ratio = NAN;
	uv_timer_init(loop, &s->timer);
	s->timer.data = s;
	s->state = S_PRECHECK;
	s->busy = 1;
	if (co_haproxy_show_stat(hx, on_precheck, s, &local) < 0) {
		co_error_copy(err, &local);
		/* nothing started: close the timer without calling back */
		uv_close((uv_handle_t *)&s->timer, free_unstarted);
		return local.code;
	}
	*ret = s;
	return 0;
}

void co_haproxy_shift_cancel(struct co_haproxy_shift *s, int rollback)
{
	if (!s || s->canceled || s->state == S_DONE || s->state == S_ROLLBACK)
		return;
	s->canceled = 1;
	s->cancel_rollback = rollback && s->to_w > 0;
	if (s->busy)
		return;   /* the pending callback sees the flag */
	uv_timer_stop(&s->timer);
	if (s->cancel_rollback)
		enter_rollback(s, -ECANCELED, "canceled");
	else
		finish(s, -ECANCELED);
}
