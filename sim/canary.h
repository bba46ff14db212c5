/*
 * ks_canary: Flagger's canary analysis as a pure state machine.
 *
 * The machine holds a Canary's status (phase, canaryWeight, failedChecks, iterations,
 * lastAppliedSpec, the Promoted condition) and advances it one analysis step per
 * ks_canary_tick(). Everything it needs from the world goes through ks_canary_ops:
 * the clock, the target's pod-template checksum, deployment readiness, the traffic
 * the canary served since the last look, scaling, weights, promotion, and webhooks.
 * flagger.c binds the ops to the store, the pods and the HTTP client; the unit test
 * binds them to a fake clock and fakes, so the phase machine is tested without
 * sockets or timers.
 *
 * Webhooks are asynchronous: run_hooks() starts the calls of one type and the binding
 * reports with ks_canary_hooks_done() exactly once, synchronously or later. The tick
 * is resumed from there; a tick never overlaps another (a tick arriving while hooks are
 * in flight is ignored).
 */
#ifndef KS_CANARY_H
#define KS_CANARY_H

#include <stdbool.h>
#include <stdint.h>

enum ks_canary_phase {
	KS_CANARY_INITIALIZING,	     /* creating the primary from the target */
	KS_CANARY_INITIALIZED,	     /* primary serves, target scaled to zero */
	KS_CANARY_WAITING,	     /* confirm-rollout gate closed */
	KS_CANARY_PROGRESSING,	     /* analysis running */
	KS_CANARY_WAITING_PROMOTION, /* confirm-promotion gate closed */
	KS_CANARY_PROMOTING,	     /* primary rolling out the canary's template */
	KS_CANARY_FINALISING,	     /* traffic back to primary, canary scaling down */
	KS_CANARY_SUCCEEDED,	     /* promoted */
	KS_CANARY_FAILED,	     /* rolled back */
	KS_CANARY_NPHASES,
};
const char *ks_canary_phase_name(enum ks_canary_phase p);
int ks_canary_phase_parse(const char *s, enum ks_canary_phase *ret);

enum ks_hook_type {
	KS_HOOK_CONFIRM_ROLLOUT,
	KS_HOOK_PRE_ROLLOUT,
	KS_HOOK_ROLLOUT,
	KS_HOOK_CONFIRM_PROMOTION,
	KS_HOOK_POST_ROLLOUT,
	KS_HOOK_ROLLBACK,
	KS_HOOK_EVENT,
	KS_HOOK_NTYPES,
};
/* "confirm-rollout", "pre-rollout", ... as in spec.analysis.webhooks[].type */
const char *ks_hook_type_name(enum ks_hook_type t);
int ks_hook_type_parse(const char *s, enum ks_hook_type *ret);

struct ks_canary_analysis {
	int64_t interval_ms;	/* unscaled, informational; the binding ticks */
	int threshold;		/* failed checks before rollback (default 5) */
	int max_weight;		/* canary mode: weight cap (default 50) */
	int step_weight;	/* canary mode step; 0 with iterations > 0 = blue/green */
	int iterations;		/* blue/green iterations */
	bool success_rate;	/* request-success-rate configured */
	double success_min;	/* thresholdRange.min, percent */
	bool duration;		/* request-duration configured */
	double duration_max_ms; /* thresholdRange.max, milliseconds */
	bool hooks[KS_HOOK_NTYPES]; /* which webhook types are configured */
};

struct ks_canary_sample {
	uint64_t requests;
	uint64_t errors; /* 5xx */
	double p99_ms;
};

struct ks_canary;

struct ks_canary_ops {
	int64_t (*now_ms)(void *data); /* wall clock */
	/* Pod-template checksum of the target into buf; -ENOENT if it is missing. */
	int (*target_checksum)(void *data, char *buf, size_t n);
	bool (*target_ready)(void *data);
	bool (*primary_ready)(void *data);
	/* Create or update the primary from the target's current template. */
	int (*init_primary)(void *data, char *msg, size_t n);
	/* Copy the target's template into the primary (promotion). */
	int (*promote)(void *data, char *msg, size_t n);
	void (*scale_target)(void *data, bool up);
	void (*set_weight)(void *data, int canary_weight);
	/* Traffic served by the canary since the previous call (and reset). */
	void (*take_sample)(void *data, struct ks_canary_sample *ret);
	/* Start every webhook of type; report with ks_canary_hooks_done(). */
	void (*run_hooks)(void *data, enum ks_hook_type type);
	/* Status changed: persist it. */
	void (*status_changed)(void *data);
	/* An event worth recording (Flagger's Kubernetes events); may be NULL. */
	void (*event)(void *data, bool warning, const char *msg);
};

struct ks_canary {
	/* status */
	enum ks_canary_phase phase;
	int canary_weight;
	int failed_checks;
	int iterations;
	char last_applied[64];	/* checksum the analysis started for */
	char last_promoted[64]; /* checksum the primary runs */
	int64_t last_transition_ms;
	int64_t analysis_start_ms;
	int64_t last_duration_ms;
	char cond_status[8]; /* Promoted: "True", "False", "Unknown" */
	char cond_reason[32];
	char cond_message[256];
	int64_t cond_transition_ms;
	/* the analysis in force */
	struct ks_canary_analysis an;
	/* private */
	const struct ks_canary_ops *ops;
	void *data;
	int stage;
	bool in_tick;
	bool hooks_pending;
	bool hooks_ok;
	bool confirmed;
	bool pre_done;
	bool primary_created;
	char checksum[64];
};

/* Defaults applied to an analysis (threshold 5, maxWeight 50, stepWeight 10 unless
 * iterations is set). */
void ks_canary_analysis_defaults(struct ks_canary_analysis *an);

/* A fresh machine in Initializing. ops and data are borrowed for its life. */
void ks_canary_init(struct ks_canary *cn, const struct ks_canary_ops *ops, void *data);

/* One analysis step (the binding calls it every analysis interval). */
void ks_canary_tick(struct ks_canary *cn);

/* Report the webhooks started by run_hooks(): ok is whether they passed (for rollback
 * hooks: whether a rollback was asked for). */
void ks_canary_hooks_done(struct ks_canary *cn, bool ok);

/* Flagger's flagger_canary_status value: 0 running, 1 successful/idle, 2 failed. */
int ks_canary_status_metric(const struct ks_canary *cn);

#endif
