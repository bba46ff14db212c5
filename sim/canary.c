/*
 * Flagger's canary analysis as a state machine, free of I/O.
 *
 * Two levels: the Canary's phase (what Flagger reports) and, inside one analysis
 * tick, a stage (which webhook round the tick is waiting for). run() drives the
 * stages in a loop; a stage that needs webhooks calls run_hooks() and either gets the
 * answer at once (no hooks of that type, or a synchronous binding) and goes on, or
 * returns and is resumed by ks_canary_hooks_done(). The order within a tick follows
 * Flagger's scheduler: rollback hooks, the failed-checks threshold, the confirm-rollout
 * gate, readiness, pre-rollout (once), rollout hooks, metric checks, then one step of
 * weight (or iterations) or the confirm-promotion gate and promotion.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sim/canary.h"

static const char *const phase_names[KS_CANARY_NPHASES] = {
	[KS_CANARY_INITIALIZING] = "Initializing",
	[KS_CANARY_INITIALIZED] = "Initialized",
	[KS_CANARY_WAITING] = "Waiting",
	[KS_CANARY_PROGRESSING] = "Progressing",
	[KS_CANARY_WAITING_PROMOTION] = "WaitingPromotion",
	[KS_CANARY_PROMOTING] = "Promoting",
	[KS_CANARY_FINALISING] = "Finalising",
	[KS_CANARY_SUCCEEDED] = "Succeeded",
	[KS_CANARY_FAILED] = "Failed",
};

static const char *const hook_names[KS_HOOK_NTYPES] = {
	[KS_HOOK_CONFIRM_ROLLOUT] = "confirm-rollout",
	[KS_HOOK_PRE_ROLLOUT] = "pre-rollout",
	[KS_HOOK_ROLLOUT] = "rollout",
	[KS_HOOK_CONFIRM_PROMOTION] = "confirm-promotion",
	[KS_HOOK_POST_ROLLOUT] = "post-rollout",
	[KS_HOOK_ROLLBACK] = "rollback",
	[KS_HOOK_EVENT] = "event",
};

/* stages of one tick */
enum {
	S_IDLE,
	S_START,
	S_ROLLBACK,	/* rollback hooks answered */
	S_CONFIRM,	/* confirm-rollout answered */
	S_READY,	/* gate open: check readiness */
	S_PRE,		/* pre-rollout answered */
	S_ROLLOUT_CALL, /* call rollout hooks */
	S_ROLLOUT,	/* rollout hooks answered: analyse and advance */
	S_PROMO,	/* confirm-promotion answered */
	S_POST_SUCCESS, /* post-rollout answered after promotion */
	S_POST_FAIL,	/* post-rollout answered after rollback */
};

const char *ks_canary_phase_name(enum ks_canary_phase p)
{
	return p < KS_CANARY_NPHASES ? phase_names[p] : "Unknown";
}

int ks_canary_phase_parse(const char *s, enum ks_canary_phase *ret)
{
	for (int i = 0; s && i < KS_CANARY_NPHASES; i++)
		if (!strcmp(s, phase_names[i])) {
			*ret = (enum ks_canary_phase)i;
			return 0;
		}
	return -EINVAL;
}

const char *ks_hook_type_name(enum ks_hook_type t)
{
	return t < KS_HOOK_NTYPES ? hook_names[t] : "unknown";
}

int ks_hook_type_parse(const char *s, enum ks_hook_type *ret)
{
	for (int i = 0; s && i < KS_HOOK_NTYPES; i++)
		if (!strcmp(s, hook_names[i])) {
			*ret = (enum ks_hook_type)i;
			return 0;
		}
	return -EINVAL;
}

void ks_canary_analysis_defaults(struct ks_canary_analysis *an)
{
	if (an->threshold <= 0)
		an->threshold = 5;
	if (an->iterations <= 0 && an->step_weight <= 0)
		an->step_weight = 10;
	if (an->step_weight > 0 && an->max_weight <= 0)
		an->max_weight = 50;
	if (an->max_weight > 100)
		an->max_weight = 100;
}

void ks_canary_init(struct ks_canary *cn, const struct ks_canary_ops *ops, void *data)
{
	memset(cn, 0, sizeof(*cn));
	cn->ops = ops;
	cn->data = data;
	cn->phase = KS_CANARY_INITIALIZING;
	cn->last_transition_ms = ops->now_ms(data);
	snprintf(cn->cond_status, sizeof(cn->cond_status), "Unknown");
	snprintf(cn->cond_reason, sizeof(cn->cond_reason), "Initializing");
	snprintf(cn->cond_message, sizeof(cn->cond_message), "Initializing canary");
	cn->cond_transition_ms = cn->last_transition_ms;
	ks_canary_analysis_defaults(&cn->an);
}

static void set_phase(struct ks_canary *cn, enum ks_canary_phase p)
{
	if (cn->phase != p) {
		cn->phase = p;
		cn->last_transition_ms = cn->ops->now_ms(cn->data);
	}
}

static void cond(struct ks_canary *cn, const char *status, const char *reason,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void cond(struct ks_canary *cn, const char *status, const char *reason,
		 const char *fmt, ...)
{
	va_list ap;

	if (strcmp(cn->cond_status, status))
		cn->cond_transition_ms = cn->ops->now_ms(cn->data);
	snprintf(cn->cond_status, sizeof(cn->cond_status), "%s", status);
	snprintf(cn->cond_reason, sizeof(cn->cond_reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(cn->cond_message, sizeof(cn->cond_message), fmt, ap);
	va_end(ap);
}

static void event(struct ks_canary *cn, bool warning, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void event(struct ks_canary *cn, bool warning, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!cn->ops->event)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cn->ops->event(cn->data, warning, msg);
}

/* Start hooks of type and move to stage next. Returns true when the answer is
 * already in cn->hooks_ok. */
static bool call_hooks(struct ks_canary *cn, enum ks_hook_type type, int next,
		       bool none_ok)
{
	cn->stage = next;
	if (!cn->an.hooks[type]) {
		cn->hooks_ok = none_ok;
		return true;
	}
	cn->hooks_pending = true;
	cn->ops->run_hooks(cn->data, type);
	return !cn->hooks_pending;
}

static void set_weight(struct ks_canary *cn, int w)
{
	cn->canary_weight = w;
	cn->ops->set_weight(cn->data, w);
}

static void initialize(struct ks_canary *cn)
{
	char msg[256] = "";

	if (!cn->primary_created) {
		if (cn->ops->init_primary(cn->data, msg, sizeof(msg)) < 0) {
			cond(cn, "Unknown", "Initializing", "%s", msg);
			return;
		}
		cn->primary_created = true;
	}
	if (!cn->ops->primary_ready(cn->data)) {
		cond(cn, "Unknown", "Initializing",
		     "Waiting for the primary to be ready");
		return;
	}
	cn->ops->scale_target(cn->data, false);
	set_weight(cn, 0);
	snprintf(cn->last_applied, sizeof(cn->last_applied), "%s", cn->checksum);
	snprintf(cn->last_promoted, sizeof(cn->last_promoted), "%s", cn->checksum);
	set_phase(cn, KS_CANARY_INITIALIZED);
	cond(cn, "True", "Initialized", "Deployment initialization completed.");
	event(cn, false, "Initialization done!");
}

static void start_analysis(struct ks_canary *cn, bool restart)
{
	snprintf(cn->last_applied, sizeof(cn->last_applied), "%s", cn->checksum);
	cn->failed_checks = 0;
	cn->iterations = 0;
	cn->confirmed = false;
	cn->pre_done = false;
	cn->analysis_start_ms = cn->ops->now_ms(cn->data);
	set_weight(cn, 0);
	cn->ops->take_sample(cn->data, &(struct ks_canary_sample){0});
	set_phase(cn, KS_CANARY_PROGRESSING);
	cond(cn, "Unknown", "Progressing",
	     "New revision detected, progressing canary analysis.");
	event(cn, false,
	      restart ? "New revision detected! Restarting analysis"
		      : "New revision detected! Scaling up");
	if (!cn->an.hooks[KS_HOOK_CONFIRM_ROLLOUT]) {
		cn->confirmed = true;
		cn->ops->scale_target(cn->data, true);
	}
}

static void rollback(struct ks_canary *cn, const char *why)
{
	set_weight(cn, 0);
	cn->ops->scale_target(cn->data, false);
	set_phase(cn, KS_CANARY_FAILED);
	cn->last_duration_ms = cn->ops->now_ms(cn->data) - cn->analysis_start_ms;
	cond(cn, "False", "Failed", "Canary analysis failed, Deployment scaled to zero.");
	event(cn, true, "%s", why);
}

/* The metric checks over the traffic of the last interval; false with a reason. */
static bool analyse(struct ks_canary *cn)
{
	struct ks_canary_sample s = {0};
	bool live =
		cn->canary_weight > 0 || (cn->an.step_weight <= 0 && cn->iterations > 0);

	cn->ops->take_sample(cn->data, &s);
	if (!live || (!cn->an.success_rate && !cn->an.duration))
		return true;
	if (s.requests == 0) {
		event(cn, true, "Halt advancement no values found for metric %s",
		      cn->an.success_rate ? "request-success-rate" : "request-duration");
		return false;
	}
	if (cn->an.success_rate) {
		double rate =
			100.0 * (double)(s.requests - s.errors) / (double)s.requests;

		if (rate < cn->an.success_min) {
			event(cn, true,
			      "Halt advancement request-success-rate %.2f%% < %g%%", rate,
			      cn->an.success_min);
			return false;
		}
	}
	if (cn->an.duration && s.p99_ms > cn->an.duration_max_ms) {
		event(cn, true, "Halt advancement request-duration %.0fms > %gms",
		      s.p99_ms, cn->an.duration_max_ms);
		return false;
	}
	return true;
}

static void run(struct ks_canary *cn)
{
	const struct ks_canary_ops *ops = cn->ops;
	char msg[256] = "";

	cn->in_tick = true;
	for (;;) {
		switch (cn->stage) {
		case S_IDLE:
			cn->in_tick = false;
			return;
		case S_START:
			if (ops->target_checksum(cn->data, cn->checksum,
						 sizeof(cn->checksum)) < 0) {
				cond(cn, cn->cond_status, cn->cond_reason,
				     "Target deployment not found");
				goto done;
			}
			switch (cn->phase) {
			case KS_CANARY_INITIALIZING:
				initialize(cn);
				goto done;
			case KS_CANARY_INITIALIZED:
			case KS_CANARY_SUCCEEDED:
			case KS_CANARY_FAILED:
				if (strcmp(cn->checksum, cn->last_applied))
					start_analysis(cn, false);
				goto done;
			case KS_CANARY_PROMOTING:
				if (!ops->primary_ready(cn->data))
					goto done;
				set_weight(cn, 0);
				set_phase(cn, KS_CANARY_FINALISING);
				cond(cn, "Unknown", "Finalising",
				     "Routing all traffic to primary.");
				goto done;
			case KS_CANARY_FINALISING:
				ops->scale_target(cn->data, false);
				if (!call_hooks(cn, KS_HOOK_POST_ROLLOUT, S_POST_SUCCESS,
						true))
					goto wait;
				continue;
			default:
				if (strcmp(cn->checksum, cn->last_applied)) {
					start_analysis(cn, true);
					goto done;
				}
				if (!call_hooks(cn, KS_HOOK_ROLLBACK, S_ROLLBACK, false))
					goto wait;
				continue;
			}
			goto done;
		case S_ROLLBACK:
			if (cn->hooks_ok) {
				rollback(cn, "Rolling back: manual webhook invoked");
			} else if (cn->failed_checks >= cn->an.threshold) {
				rollback(cn,
					 "Rolling back: failed checks threshold reached");
			} else if (!cn->confirmed) {
				if (!call_hooks(cn, KS_HOOK_CONFIRM_ROLLOUT, S_CONFIRM,
						true))
					goto wait;
				continue;
			} else {
				cn->stage = S_READY;
				continue;
			}
			if (!call_hooks(cn, KS_HOOK_POST_ROLLOUT, S_POST_FAIL, true))
				goto wait;
			continue;
		case S_CONFIRM:
			if (!cn->hooks_ok) {
				set_phase(cn, KS_CANARY_WAITING);
				cond(cn, "Unknown", "Waiting",
				     "Halt advancement waiting for approval");
				goto done;
			}
			cn->confirmed = true;
			if (cn->phase == KS_CANARY_WAITING)
				set_phase(cn, KS_CANARY_PROGRESSING);
			ops->scale_target(cn->data, true);
			cn->stage = S_READY;
			continue;
		case S_READY:
			if (!ops->target_ready(cn->data)) {
				cond(cn, "Unknown", "Progressing",
				     "Waiting for the canary deployment to be ready");
				goto done;
			}
			if (cn->phase == KS_CANARY_WAITING_PROMOTION) {
				if (!call_hooks(cn, KS_HOOK_CONFIRM_PROMOTION, S_PROMO,
						true))
					goto wait;
				continue;
			}
			if (!cn->pre_done) {
				if (!call_hooks(cn, KS_HOOK_PRE_ROLLOUT, S_PRE, true))
					goto wait;
				continue;
			}
			cn->stage = S_ROLLOUT_CALL;
			continue;
		case S_PRE:
			if (!cn->hooks_ok) {
				cn->failed_checks++;
				event(cn, true,
				      "Halt advancement pre-rollout check failed");
				goto done;
			}
			cn->pre_done = true;
			cn->stage = S_ROLLOUT_CALL;
			continue;
		case S_ROLLOUT_CALL:
			if (!call_hooks(cn, KS_HOOK_ROLLOUT, S_ROLLOUT, true))
				goto wait;
			continue;
		case S_ROLLOUT:
			if (!cn->hooks_ok) {
				cn->failed_checks++;
				event(cn, true, "Halt advancement rollout check failed");
				goto done;
			}
			if (!analyse(cn)) {
				cn->failed_checks++;
				goto done;
			}
			if (cn->an.step_weight > 0) {
				if (cn->canary_weight < cn->an.max_weight) {
					int w = cn->canary_weight + cn->an.step_weight;

					set_weight(cn, w > cn->an.max_weight
							       ? cn->an.max_weight
							       : w);
					cond(cn, "Unknown", "Progressing",
					     "Advance canary weight %d",
					     cn->canary_weight);
					goto done;
				}
			} else if (cn->iterations < cn->an.iterations) {
				cn->iterations++;
				cond(cn, "Unknown", "Progressing",
				     "Advance canary iteration %d/%d", cn->iterations,
				     cn->an.iterations);
				goto done;
			}
			if (!call_hooks(cn, KS_HOOK_CONFIRM_PROMOTION, S_PROMO, true))
				goto wait;
			continue;
		case S_PROMO:
			if (!cn->hooks_ok) {
				set_phase(cn, KS_CANARY_WAITING_PROMOTION);
				cond(cn, "Unknown", "WaitingPromotion",
				     "Halt advancement waiting for promotion approval");
				goto done;
			}
			if (ops->promote(cn->data, msg, sizeof(msg)) < 0) {
				cn->failed_checks++;
				event(cn, true, "Promotion failed: %s", msg);
				goto done;
			}
			set_phase(cn, KS_CANARY_PROMOTING);
			cond(cn, "Unknown", "Promoting",
			     "Copying canary template spec to primary.");
			event(cn, false, "Copying canary template spec to primary");
			goto done;
		case S_POST_SUCCESS:
			snprintf(cn->last_promoted, sizeof(cn->last_promoted), "%s",
				 cn->checksum);
			cn->last_duration_ms =
				ops->now_ms(cn->data) - cn->analysis_start_ms;
			set_phase(cn, KS_CANARY_SUCCEEDED);
			cond(cn, "True", "Succeeded",
			     "Canary analysis completed successfully, promotion "
			     "finished.");
			event(cn, false, "Promotion completed!");
			goto done;
		case S_POST_FAIL:
			goto done;
		default:
			goto done;
		}
	}
done:
	cn->stage = S_IDLE;
	cn->in_tick = false;
	ops->status_changed(cn->data);
	return;
wait:
	cn->in_tick = false;
}

void ks_canary_tick(struct ks_canary *cn)
{
	if (cn->in_tick || cn->hooks_pending || cn->stage != S_IDLE)
		return;
	cn->stage = S_START;
	run(cn);
}

void ks_canary_hooks_done(struct ks_canary *cn, bool ok)
{
	if (!cn->hooks_pending)
		return;
	cn->hooks_pending = false;
	cn->hooks_ok = ok;
	if (!cn->in_tick)
		run(cn);
}

int ks_canary_status_metric(const struct ks_canary *cn)
{
	switch (cn->phase) {
	case KS_CANARY_WAITING:
	case KS_CANARY_PROGRESSING:
	case KS_CANARY_WAITING_PROMOTION:
	case KS_CANARY_PROMOTING:
	case KS_CANARY_FINALISING:
		return 0;
	case KS_CANARY_FAILED:
		return 2;
	default:
		return 1;
	}
}
