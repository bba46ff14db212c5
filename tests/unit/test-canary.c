/*
 * Tests for the Flagger phase machine (sim/canary.c) on a fake clock: fakes stand in
 * for deployments, traffic and webhooks, and each test drives ticks by hand and checks
 * phases, weights, failed checks, the Promoted condition and the webhook order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sim/canary.h"

struct fake {
	int64_t now;
	char checksum[64];
	bool target_ready, primary_ready, target_up;
	int weight;
	int promotions, inits;
	struct ks_canary_sample next; /* traffic served in the coming interval */
	bool hook_ok[KS_HOOK_NTYPES];
	bool async; /* hooks answer later via answer() */
	bool pending;
	enum ks_hook_type pending_type;
	char order[512]; /* hook types called, space separated */
	int status_writes;
	struct ks_canary *cn;
};

static int64_t f_now(void *d)
{
	return ((struct fake *)d)->now;
}
static int f_sum(void *d, char *buf, size_t n)
{
	snprintf(buf, n, "%s", ((struct fake *)d)->checksum);
	return 0;
}
static bool f_tready(void *d)
{
	return ((struct fake *)d)->target_ready;
}
static bool f_pready(void *d)
{
	return ((struct fake *)d)->primary_ready;
}
static int f_init(void *d, char *m, size_t n)
{
	((struct fake *)d)->inits++;
	return 0;
}
static int f_promote(void *d, char *m, size_t n)
{
	((struct fake *)d)->promotions++;
	return 0;
}
static void f_scale(void *d, bool up)
{
	((struct fake *)d)->target_up = up;
}
static void f_weight(void *d, int w)
{
	((struct fake *)d)->weight = w;
}
static void f_sample(void *d, struct ks_canary_sample *s)
{
	struct fake *f = d;

	*s = f->next;
}
static void f_hooks(void *d, enum ks_hook_type t)
{
	struct fake *f = d;

	strcat(f->order, ks_hook_type_name(t));
	strcat(f->order, " ");
	if (f->async) {
		f->pending = true;
		f->pending_type = t;
		return;
	}
	ks_canary_hooks_done(f->cn, f->hook_ok[t]);
}
static void f_status(void *d)
{
	((struct fake *)d)->status_writes++;
}

static const struct ks_canary_ops ops = {
	.now_ms = f_now,
	.target_checksum = f_sum,
	.target_ready = f_tready,
	.primary_ready = f_pready,
	.init_primary = f_init,
	.promote = f_promote,
	.scale_target = f_scale,
	.set_weight = f_weight,
	.take_sample = f_sample,
	.run_hooks = f_hooks,
	.status_changed = f_status,
};

static void setup_canary(struct fake *f, struct ks_canary *cn)
{
	memset(f, 0, sizeof(*f));
	for (int i = 0; i < KS_HOOK_NTYPES; i++)
		f->hook_ok[i] = true;
	f->hook_ok[KS_HOOK_ROLLBACK] = false;
	f->now = 1000;
	f->target_ready = f->primary_ready = true;
	snprintf(f->checksum, sizeof(f->checksum), "rev1");
	f->cn = cn;
	ks_canary_init(cn, &ops, f);
	cn->an = (struct ks_canary_analysis){.threshold = 2,
					     .max_weight = 30,
					     .step_weight = 10,
					     .success_rate = true,
					     .success_min = 99,
					     .duration = true,
					     .duration_max_ms = 500};
	for (int i = 0; i < KS_HOOK_NTYPES; i++)
		cn->an.hooks[i] = i != KS_HOOK_EVENT;
	f->next = (struct ks_canary_sample){.requests = 100, .errors = 0, .p99_ms = 20};
}

static void tick(struct fake *f, struct ks_canary *cn)
{
	f->now += 10000;
	ks_canary_tick(cn);
}

static void initialised(struct fake *f, struct ks_canary *cn)
{
	tick(f, cn);
	assert_int_equal(cn->phase, KS_CANARY_INITIALIZED);
	assert_int_equal(f->inits, 1);
	assert_false(f->target_up);
	assert_string_equal(cn->cond_reason, "Initialized");
	assert_string_equal(cn->last_applied, "rev1");
}

static void test_initialise_waits_for_primary(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	f.primary_ready = false;
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_INITIALIZING);
	f.primary_ready = true;
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_INITIALIZED);
	assert_int_equal(f.inits, 1);
	assert_int_equal(cn.last_transition_ms, 21000);
	/* nothing changes without a new revision */
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_INITIALIZED);
	assert_string_equal(f.order, "");
}

static void test_good_release_succeeds(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	initialised(&f, &cn);
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_PROGRESSING);
	assert_string_equal(cn.cond_status, "Unknown");
	assert_string_equal(cn.cond_message,
			    "New revision detected, progressing canary analysis.");
	/* the confirm-rollout gate opens on the next tick */
	tick(&f, &cn);
	assert_true(f.target_up);
	assert_int_equal(cn.canary_weight, 10);
	tick(&f, &cn);
	assert_int_equal(cn.canary_weight, 20);
	tick(&f, &cn);
	assert_int_equal(cn.canary_weight, 30);
	assert_int_equal(f.weight, 30);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_PROMOTING);
	assert_int_equal(f.promotions, 1);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_FINALISING);
	assert_int_equal(f.weight, 0);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_SUCCEEDED);
	assert_false(f.target_up);
	assert_int_equal(cn.failed_checks, 0);
	assert_string_equal(cn.cond_status, "True");
	assert_string_equal(cn.cond_reason, "Succeeded");
	assert_string_equal(cn.last_promoted, "rev2");
	assert_int_equal(ks_canary_status_metric(&cn), 1);
	assert_string_equal(f.order, "rollback confirm-rollout pre-rollout rollout "
				     "rollback rollout rollback rollout rollback rollout "
				     "confirm-promotion post-rollout ");
}

static void test_errors_fail_and_roll_back(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	initialised(&f, &cn);
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	tick(&f, &cn);
	assert_int_equal(cn.canary_weight, 10);
	f.next = (struct ks_canary_sample){.requests = 100, .errors = 50, .p99_ms = 20};
	tick(&f, &cn);
	assert_int_equal(cn.failed_checks, 1);
	assert_int_equal(cn.canary_weight, 10);
	assert_int_equal(ks_canary_status_metric(&cn), 0);
	tick(&f, &cn);
	assert_int_equal(cn.failed_checks, 2);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_FAILED);
	assert_int_equal(cn.canary_weight, 0);
	assert_int_equal(f.weight, 0);
	assert_false(f.target_up);
	assert_int_equal(f.promotions, 0);
	assert_string_equal(cn.cond_status, "False");
	assert_string_equal(cn.cond_reason, "Failed");
	assert_string_equal(cn.last_promoted, "rev1");
	assert_int_equal(ks_canary_status_metric(&cn), 2);
	/* the failed revision is not analysed again */
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_FAILED);
	/* a new one is */
	snprintf(f.checksum, sizeof(f.checksum), "rev3");
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_PROGRESSING);
	assert_int_equal(cn.failed_checks, 0);
}

static void test_latency_and_no_traffic_fail_checks(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	initialised(&f, &cn);
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	tick(&f, &cn);
	f.next = (struct ks_canary_sample){.requests = 100, .errors = 0, .p99_ms = 900};
	tick(&f, &cn);
	assert_int_equal(cn.failed_checks, 1);
	f.next = (struct ks_canary_sample){0};
	tick(&f, &cn);
	assert_int_equal(cn.failed_checks, 2);
}

static void test_failing_webhook_counts(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	initialised(&f, &cn);
	f.hook_ok[KS_HOOK_ROLLOUT] = false;
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	tick(&f, &cn);
	assert_int_equal(cn.failed_checks, 1);
	assert_int_equal(cn.canary_weight, 0);
	tick(&f, &cn);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_FAILED);
	assert_int_equal(f.promotions, 0);
}

static void test_gates_and_manual_rollback(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	initialised(&f, &cn);
	f.hook_ok[KS_HOOK_CONFIRM_ROLLOUT] = false;
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_WAITING);
	assert_false(f.target_up);
	f.hook_ok[KS_HOOK_CONFIRM_ROLLOUT] = true;
	f.hook_ok[KS_HOOK_CONFIRM_PROMOTION] = false;
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_PROGRESSING);
	assert_true(f.target_up);
	assert_int_equal(cn.canary_weight, 10);
	tick(&f, &cn);
	tick(&f, &cn);
	assert_int_equal(cn.canary_weight, 30);
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_WAITING_PROMOTION);
	assert_int_equal(f.promotions, 0);
	f.hook_ok[KS_HOOK_ROLLBACK] = true;
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_FAILED);
	assert_int_equal(cn.canary_weight, 0);
}

static void test_async_hooks_and_blue_green(void **state)
{
	struct fake f;
	struct ks_canary cn;

	setup_canary(&f, &cn);
	cn.an.step_weight = 0;
	cn.an.max_weight = 0;
	cn.an.iterations = 2;
	initialised(&f, &cn);
	f.async = true;
	snprintf(f.checksum, sizeof(f.checksum), "rev2");
	tick(&f, &cn);
	assert_int_equal(cn.phase, KS_CANARY_PROGRESSING);
	int rounds = 0;

	while (cn.phase != KS_CANARY_SUCCEEDED && rounds++ < 50) {
		tick(&f, &cn);
		/* a tick while hooks are in flight is ignored */
		tick(&f, &cn);
		while (f.pending) {
			f.pending = false;
			ks_canary_hooks_done(&cn, f.hook_ok[f.pending_type]);
		}
	}
	assert_int_equal(cn.phase, KS_CANARY_SUCCEEDED);
	assert_int_equal(cn.iterations, 2);
	assert_int_equal(f.promotions, 1);
	assert_int_equal(cn.canary_weight, 0);
}

static void test_names(void **state)
{
	enum ks_canary_phase p;
	enum ks_hook_type t;

	assert_int_equal(ks_canary_phase_parse("Finalising", &p), 0);
	assert_int_equal(p, KS_CANARY_FINALISING);
	assert_int_equal(ks_canary_phase_parse("Nope", &p), -EINVAL);
	assert_int_equal(ks_hook_type_parse("confirm-promotion", &t), 0);
	assert_int_equal(t, KS_HOOK_CONFIRM_PROMOTION);
	assert_string_equal(ks_hook_type_name(KS_HOOK_PRE_ROLLOUT), "pre-rollout");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_initialise_waits_for_primary),
		cmocka_unit_test(test_good_release_succeeds),
		cmocka_unit_test(test_errors_fail_and_roll_back),
		cmocka_unit_test(test_latency_and_no_traffic_fail_checks),
		cmocka_unit_test(test_failing_webhook_counts),
		cmocka_unit_test(test_gates_and_manual_rollback),
		cmocka_unit_test(test_async_hooks_and_blue_green),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
