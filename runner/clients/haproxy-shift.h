/*
 * Stepwise traffic shift between two servers of one HAProxy backend.
 *
 * The shift moves the share of traffic of `to` through the given percentages (for
 * example 10, 25, 50, 100) by setting weights (to = total * p / 100, from = the rest;
 * the weight that rises is set first so the backend never has zero weight). After each
 * step it watches `to` for the interval, running a check every check_every_ms over the
 * window since the step began; a failing check returns all weight to `from` at once
 * and ends the shift. The last step is watched like the others before the shift
 * reports success.
 *
 * The check is pluggable. The default compares the error ratio of `to` measured from
 * "show stat" deltas: (hrsp_5xx + econ + eresp) / (responses + econ + eresp). Another
 * check (the engine's Prometheus judge) receives the same window, including its wall
 * clock bounds, and answers asynchronously.
 *
 * This module knows nothing of pipelines or clusters beyond two server names.
 *
 * Async contract: co_haproxy_shift_start() returning 0 calls cb exactly once. Status 0:
 * the last step passed. -EIO: a check failed and the weights went back to `from`
 * (result.rolled_back). -ECANCELED: canceled. Other negatives: HAProxy failed (the
 * message says whether the return to `from` succeeded).
 */
#ifndef CO_CLIENTS_HAPROXY_SHIFT_H
#define CO_CLIENTS_HAPROXY_SHIFT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/error.h"
#include "clients/haproxy.h"

/* What a check looks at: the traffic `to` received since its step began. */
struct co_haproxy_shift_window {
	const char *backend, *from, *to;
	int step;                      /* 0-based index into steps */
	int percent;                   /* share of `to` during the window */
	int64_t start_wall_ms, end_wall_ms;
	struct co_haproxy_server_stat to_stat;    /* `to` at the end of the window */
	struct co_haproxy_server_stat from_stat;  /* `from` at the end of the window */
	uint64_t requests;             /* responses + connection/response errors */
	uint64_t errors;               /* 5xx + connection/response errors */
	double error_ratio;            /* errors / requests; NaN without requests */
};

/* done(status, pass, reason): status < 0 when the check could not be made (counted as
 * a failure); reason is borrowed for the call and shown to users. */
typedef void (*co_haproxy_check_done_cb)(int status, int pass, const char *reason,
					 void *done_data);

struct co_haproxy_check {
	/* Judge w (borrowed for the call) and call done exactly once, now or later. */
	void (*fn)(const struct co_haproxy_shift_window *w, co_haproxy_check_done_cb done,
		   void *done_data, void *data);
	void *data;
};

/* The default check: fail when requests >= min_requests and error_ratio > max. */
struct co_haproxy_stat_check {
	double max_error_ratio;
	uint64_t min_requests;
};
void co_haproxy_stat_check_fn(const struct co_haproxy_shift_window *w,
			      co_haproxy_check_done_cb done, void *done_data, void *data);

enum co_haproxy_shift_event_kind {
	CO_HAPROXY_SHIFT_STEP,       /* weights set for a step */
	CO_HAPROXY_SHIFT_CHECK,      /* a check answered */
	CO_HAPROXY_SHIFT_ROLLBACK,   /* all weight returned to `from` */
};

struct co_haproxy_shift_event {
	enum co_haproxy_shift_event_kind kind;
	int step;
	int percent;
	int from_weight, to_weight;
	const struct co_haproxy_shift_window *window;   /* CHECK only */
	int pass;                                       /* CHECK only */
	const char *reason;                             /* CHECK, ROLLBACK */
};

struct co_haproxy_shift_opts {
	const char *backend;           /* NULL = "clusters" */
	const char *from, *to;         /* server names, required, different */
	const int *steps;              /* percentages 1-100, strictly increasing */
	size_t n_steps;                /* >= 1 */
	uint64_t interval_ms;          /* watch time per step */
	uint64_t check_every_ms;       /* 0 = interval_ms */
	int total_weight;              /* 0 = 100; 1-256 */
	const struct co_haproxy_check *check;   /* NULL: stat check with the two below */
	double max_error_ratio;        /* default check; 0 means 0.01 */
	uint64_t min_requests;         /* default check; 0 means 1 */
	void (*progress)(const struct co_haproxy_shift_event *ev, void *data);
	void *progress_data;
};

struct co_haproxy_shift_result {
	int completed;                 /* the last step passed */
	int rolled_back;               /* weights returned to `from` */
	int step;                      /* step reached (index) */
	int percent;                   /* share of `to` at the end */
	double error_ratio;            /* of the last window checked, NaN if none */
	uint64_t requests;             /* of the last window checked */
};

struct co_haproxy_shift;

typedef void (*co_haproxy_shift_cb)(int status, const struct co_haproxy_shift_result *res,
				    const struct co_error *err, void *data);

/* Validate opts (copied) and start. hx is borrowed and must outlive the shift. */
int co_haproxy_shift_start(struct co_haproxy_shift **ret, uv_loop_t *loop,
			   struct co_haproxy *hx, const struct co_haproxy_shift_opts *opts,
			   co_haproxy_shift_cb cb, void *data, struct co_error *err);

/* Stop: with rollback, weights go back to `from` first. cb then runs with -ECANCELED.
 * No effect once the shift has ended or was already canceled. */
void co_haproxy_shift_cancel(struct co_haproxy_shift *s, int rollback);

/* Parse "10,25,50,100" into steps (at most max); returns count or -EINVAL. */
int co_haproxy_shift_parse_steps(const char *s, int *steps, size_t max);

#endif
