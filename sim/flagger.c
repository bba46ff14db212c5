/*
 * Flagger: Canary (flagger.app/v1beta1) bound to the phase machine of canary.c.
 *
 * One state per Canary: the machine, a repeating timer of spec.analysis.interval
 * (scaled) that ticks it, and the webhook round in flight. The ops table binds the
 * machine to this cluster: the target's checksum is a hash of its pod template; the
 * primary is the Deployment "<target>-primary" (its app label rewritten), created with
 * the Services "<svc>", "<svc>-primary" and "<svc>-canary"; traffic for "<svc>" is
 * split between primary and canary pods by canaryWeight (ks_apps_set_split); the
 * canary's traffic sample is what its pods served since the previous tick; webhooks
 * of one type are POSTed one after the other with Flagger's payload {name,
 * namespace, phase, checksum, metadata}, and only 200-202 count as success (for
 * rollback hooks a success asks for the rollback). Status is written after each tick.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/time.h"
#include "net/http-client.h"
#include "sim/canary.h"
#include "sim/ctl.h"
#include "sim/metrics.h"

#define MANAGER		    "flagger"
#define DEFAULT_INTERVAL_MS 60000
#define HOOK_TIMEOUT_MS	    10000

struct cnry {
	struct ks_controllers *c;
	int refs;
	char *ns, *name, *target, *svc;
	json_t *obj;
	uv_timer_t timer;
	bool gone;
	int64_t interval_ms;
	struct ks_canary m;
	/* webhook round */
	enum ks_hook_type hook_type;
	json_t *hooks; /* webhooks of the round */
	size_t hook_idx;
	bool hook_any_ok, hook_all_ok;
	struct co_http_call *call;
};

struct ks_flagger {
	struct ks_watch *watch;
	struct cnry **items;
	size_t n, cap;
};

static void cn_unref(struct cnry *k)
{
	struct ks_controllers *c = k->c;

	if (--k->refs > 0)
		return;
	json_decref(k->obj);
	json_decref(k->hooks);
	free(k->ns);
	free(k->name);
	free(k->target);
	free(k->svc);
	free(k);
	ks_ctl_unref(c);
}

static void cn_closed(uv_handle_t *h)
{
	cn_unref(h->data);
}

static char *primary_name(struct cnry *k)
{
	return co_asprintf("%s-primary", k->target);
}

/* ---- ops ---- */

static int64_t op_now(void *data)
{
	return co_time_wall_ms();
}

static json_t *get_deploy(struct cnry *k, const char *name)
{
	struct ks_key key = {"apps", "deployments", k->ns, name};
	json_t *obj = NULL;

	return ks_store_get(k->c->store, &key, &obj, NULL) == 0 ? obj : NULL;
}

static int op_checksum(void *data, char *buf, size_t n)
{
	struct cnry *k = data;
	json_t *d = get_deploy(k, k->target);

	if (!d)
		return -ENOENT;
	ks_json_hash(ks_jget(d, "spec.template"), buf, n);
	json_decref(d);
	return 0;
}

static bool op_target_ready(void *data)
{
	struct cnry *k = data;

	return ks_apps_ready(k->c, k->ns, k->target);
}

static bool op_primary_ready(void *data)
{
	struct cnry *k = data;
	char *p = primary_name(k);
	bool ok = ks_apps_ready(k->c, k->ns, p);

	free(p);
	return ok;
}

/* The label key the target selects on: app, app.kubernetes.io/name or name. */
static const char *label_key(const json_t *deploy)
{
	static const char *const keys[] = {"app", "app.kubernetes.io/name", "name"};
	json_t *ml = ks_jget(deploy, "spec.selector.matchLabels");

	for (size_t i = 0; i < 3; i++)
		if (json_object_get(ml, keys[i]))
			return keys[i];
	return "app";
}

/* The primary's spec from the target: template copied, app label -> <t>-primary. */
static json_t *primary_spec(struct cnry *k, const json_t *target, const char *primary)
{
	json_t *spec = json_deep_copy(json_object_get(target, "spec"));
	const char *lk = label_key(target);
	json_t *ml, *tl;
	int64_t replicas = ks_jint(target, "spec.replicas", 1);

	if (!json_is_object(spec)) {
		json_decref(spec);
		spec = json_object();
	}
	ml = ks_jget(spec, "selector.matchLabels");
	if (!json_is_object(ml)) {
		json_object_set_new(spec, "selector", json_pack("{s:{}}", "matchLabels"));
		ml = ks_jget(spec, "selector.matchLabels");
	}
	json_object_set_new(ml, lk, json_string(primary));
	tl = ks_jget(spec, "template.metadata.labels");
	if (json_is_object(tl))
		json_object_set_new(tl, lk, json_string(primary));
	json_object_set_new(spec, "replicas", json_integer(replicas > 0 ? replicas : 1));
	return spec;
}

static int apply(struct cnry *k, const char *group, const char *resource, json_t *obj,
		 char *msg, size_t n)
{
	struct ks_key key = {group, resource, k->ns, ks_jstr(obj, "metadata.name")};
	struct co_error err = CO_ERROR_INIT;
	int r = ks_store_apply(k->c->store, &key, obj, MANAGER, true, 0, NULL, NULL,
			       &err);

	if (r < 0 && msg)
		snprintf(msg, n, "%s", err.msg);
	json_decref(obj);
	return r;
}

static int write_primary(struct cnry *k, bool create_services, char *msg, size_t n)
{
	json_t *t = get_deploy(k, k->target), *obj;
	char *p = primary_name(k);
	const char *lk;
	int64_t port = ks_jint(k->obj, "spec.service.port", 80);
	int64_t tport = ks_jint(k->obj, "spec.service.targetPort", port);
	int r;

	if (!t) {
		snprintf(msg, n, "deployment '%s/%s' not found", k->ns, k->target);
		free(p);
		return -ENOENT;
	}
	lk = label_key(t);
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:o}", "apiVersion", "apps/v1",
			"kind", "Deployment", "metadata", "name", p, "namespace", k->ns,
			"labels", lk, p, "spec", primary_spec(k, t, p));
	r = apply(k, "apps", "deployments", obj, msg, n);
	if (r == 0 && create_services) {
		const char *names[3] = {k->svc, NULL, NULL};
		char *sp = co_asprintf("%s-primary", k->svc),
		     *sc = co_asprintf("%s-canary", k->svc);

		names[1] = sp;
		names[2] = sc;
		for (int i = 0; i < 3 && r == 0; i++) {
			const char *sel = i == 2 ? k->target : p;

			obj = json_pack(
				"{s:s, s:s, s:{s:s, s:s}, s:{s:{s:s}, s:[{s:s, s:I, "
				"s:I, s:s}]}}",
				"apiVersion", "v1", "kind", "Service", "metadata", "name",
				names[i], "namespace", k->ns, "spec", "selector", lk, sel,
				"ports", "name", "http", "port", (json_int_t)port,
				"targetPort", (json_int_t)tport, "protocol", "TCP");
			r = apply(k, "", "services", obj, msg, n);
		}
		free(sp);
		free(sc);
		if (r == 0)
			ks_apps_set_split(k->c, k->ns, k->svc, p, k->target,
					  k->m.canary_weight);
	}
	json_decref(t);
	free(p);
	return r;
}

static int op_init_primary(void *data, char *msg, size_t n)
{
	return write_primary(data, true, msg, n);
}

static int op_promote(void *data, char *msg, size_t n)
{
	return write_primary(data, false, msg, n);
}

static void op_scale_target(void *data, bool up)
{
	struct cnry *k = data;
	struct ks_key key = {"apps", "deployments", k->ns, k->target};
	json_t *prim;
	char *p = primary_name(k);
	int64_t replicas = 0;
	json_t *patch;

	if (up) {
		prim = get_deploy(k, p);
		replicas = prim ? ks_jint(prim, "spec.replicas", 1) : 1;
		json_decref(prim);
		if (replicas < 1)
			replicas = 1;
	}
	free(p);
	patch = json_pack("{s:{s:I}}", "spec", "replicas", (json_int_t)replicas);
	ks_store_patch(k->c->store, &key, patch, KS_PATCH_MERGE, false, MANAGER, 0, NULL,
		       NULL);
	json_decref(patch);
}

static void op_set_weight(void *data, int w)
{
	struct cnry *k = data;
	char *p = primary_name(k);

	ks_apps_set_split(k->c, k->ns, k->svc, p, k->target, w);
	free(p);
}

static void op_take_sample(void *data, struct ks_canary_sample *s)
{
	struct cnry *k = data;

	ks_apps_take_window(k->c, k->ns, k->target, &s->requests, &s->errors, &s->p99_ms);
}

static json_t *payload(struct cnry *k, const json_t *hook, const char *extra_msg)
{
	json_t *md = json_deep_copy(json_object_get(hook, "metadata"));
	json_t *p;

	if (!json_is_object(md)) {
		json_decref(md);
		md = json_object();
	}
	if (extra_msg) {
		json_object_set_new(md, "eventMessage", json_string(extra_msg));
		json_object_set_new(md, "eventType", json_string("Normal"));
	}
	/* post-rollout runs once the outcome is known: Flagger reports it as the phase */
	const char *phase = ks_canary_phase_name(k->m.phase);

	if (k->hook_type == KS_HOOK_POST_ROLLOUT && !extra_msg)
		phase = k->m.phase == KS_CANARY_FAILED ? "Failed" : "Succeeded";
	p = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", k->name, "namespace", k->ns,
		      "phase", phase, "checksum",
		      k->m.last_applied[0] ? k->m.last_applied : k->m.checksum,
		      "metadata", md);
	return p;
}

static void next_hook(struct cnry *k);

static void hook_done(struct co_http_response *res, void *data)
{
	struct cnry *k = data;
	bool ok = res->status == 0 && res->code >= 200 && res->code <= 202;

	k->call = NULL;
	if (k->gone || k->c->stopped) {
		cn_unref(k);
		return;
	}
	co_log_debug("kubesim", "canary '%s/%s' %s webhook: %ld", k->ns, k->name,
		     ks_hook_type_name(k->hook_type), res->code);
	k->hook_any_ok |= ok;
	k->hook_all_ok &= ok;
	k->hook_idx++;
	next_hook(k);
	cn_unref(k);
}

static void next_hook(struct cnry *k)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *hook, *body;
	int64_t timeout;
	int r;

	while ((hook = json_array_get(k->hooks, k->hook_idx))) {
		const char *url = json_string_value(json_object_get(hook, "url"));

		timeout = ks_jduration(hook, "timeout", HOOK_TIMEOUT_MS);
		if (timeout <= 0 || timeout > HOOK_TIMEOUT_MS * 6)
			timeout = HOOK_TIMEOUT_MS;
		body = payload(k, hook, NULL);
		struct co_http_req_opts base = {.timeout_ms = (uint64_t)timeout};

		k->refs++;
		r = url ? co_http_request_json(k->c->http, &k->call, "POST", url, body,
					       &base, hook_done, k, &err)
			: -EINVAL;
		json_decref(body);
		if (r == 0)
			return;
		k->refs--;
		k->hook_all_ok = false;
		k->hook_idx++;
	}
	json_decref(k->hooks);
	k->hooks = NULL;
	ks_canary_hooks_done(&k->m, k->hook_type == KS_HOOK_ROLLBACK ? k->hook_any_ok
								     : k->hook_all_ok);
}

static void op_run_hooks(void *data, enum ks_hook_type type)
{
	struct cnry *k = data;
	json_t *h;
	size_t i;

	k->hook_type = type;
	k->hooks = json_array();
	k->hook_idx = 0;
	k->hook_any_ok = false;
	k->hook_all_ok = true;
	json_array_foreach(ks_jget(k->obj, "spec.analysis.webhooks"), i, h)
	{
		const char *t =
			ks_or(json_string_value(json_object_get(h, "type")), "rollout");

		if (!strcmp(t, ks_hook_type_name(type)))
			json_array_append(k->hooks, h);
	}
	next_hook(k);
}

static void event_done(struct co_http_response *res, void *data)
{
	cn_unref(data);
}

static void op_event(void *data, bool warning, const char *msg)
{
	struct cnry *k = data;
	json_t *h;
	size_t i;

	co_log_debug("kubesim", "canary '%s/%s': %s", k->ns, k->name, msg);
	json_array_foreach(ks_jget(k->obj, "spec.analysis.webhooks"), i, h)
	{
		const char *t = ks_or(json_string_value(json_object_get(h, "type")), "");
		const char *url = json_string_value(json_object_get(h, "url"));
		json_t *body;

		if (strcmp(t, "event") || !url)
			continue;
		body = payload(k, h, msg);
		struct co_http_req_opts base = {.timeout_ms = HOOK_TIMEOUT_MS};

		k->refs++;
		if (co_http_request_json(k->c->http, NULL, "POST", url, body, &base,
					 event_done, k, NULL) < 0)
			k->refs--;
		json_decref(body);
	}
}

static void op_status(void *data)
{
	struct cnry *k = data;
	struct ks_key key = {"flagger.app", "canaries", k->ns, k->name};
	struct co_error err = CO_ERROR_INIT;
	char tt[40], ct[40], now[40];
	json_t *st;

	co_time_rfc3339(k->m.last_transition_ms, tt, sizeof(tt));
	co_time_rfc3339(k->m.cond_transition_ms, ct, sizeof(ct));
	ks_now_rfc3339(now, sizeof(now));
	st = json_pack(
		"{s:s, s:i, s:i, s:i, s:s, s:s, s:s, s:{}, s:[{s:s, s:s, s:s, s:s, "
		"s:s, s:s}]}",
		"phase", ks_canary_phase_name(k->m.phase), "canaryWeight",
		k->m.canary_weight, "failedChecks", k->m.failed_checks, "iterations",
		k->m.iterations, "lastAppliedSpec", k->m.last_applied, "lastPromotedSpec",
		k->m.last_promoted, "lastTransitionTime", tt, "trackedConfigs",
		"conditions", "type", "Promoted", "status", k->m.cond_status, "reason",
		k->m.cond_reason, "message", k->m.cond_message, "lastUpdateTime", now,
		"lastTransitionTime", ct);
	json_object_set_new(st, "observedGeneration",
			    json_integer(ks_jint(k->obj, "metadata.generation", 1)));
	if (ks_ctl_write_status(k->c, &key, st, MANAGER, &err) < 0)
		co_log_debug("kubesim", "canary '%s/%s' status: %s", k->ns, k->name,
			     err.msg);
	json_decref(st);
}

static const struct ks_canary_ops ops = {
	.now_ms = op_now,
	.target_checksum = op_checksum,
	.target_ready = op_target_ready,
	.primary_ready = op_primary_ready,
	.init_primary = op_init_primary,
	.promote = op_promote,
	.scale_target = op_scale_target,
	.set_weight = op_set_weight,
	.take_sample = op_take_sample,
	.run_hooks = op_run_hooks,
	.status_changed = op_status,
	.event = op_event,
};

/* ---- spec ---- */

static void load_analysis(struct cnry *k)
{
	struct ks_canary_analysis an = {0};
	json_t *a = ks_jget(k->obj, "spec.analysis"), *v;
	size_t i;

	k->interval_ms = ks_jduration(a, "interval", DEFAULT_INTERVAL_MS);
	if (k->interval_ms <= 0)
		k->interval_ms = DEFAULT_INTERVAL_MS;
	an.interval_ms = k->interval_ms;
	an.threshold = (int)ks_jint(a, "threshold", 5);
	an.max_weight = (int)ks_jint(a, "maxWeight", 0);
	an.step_weight = (int)ks_jint(a, "stepWeight", 0);
	an.iterations = (int)ks_jint(a, "iterations", 0);
	json_array_foreach(json_object_get(a, "metrics"), i, v)
	{
		const char *name =
			ks_or(json_string_value(json_object_get(v, "name")), "");
		json_t *tr = json_object_get(v, "thresholdRange");

		if (!strcmp(name, "request-success-rate")) {
			an.success_rate = true;
			an.success_min = json_number_value(json_object_get(tr, "min"));
			if (!json_object_get(tr, "min"))
				an.success_min = 99;
		} else if (!strcmp(name, "request-duration")) {
			an.duration = true;
			an.duration_max_ms =
				json_number_value(json_object_get(tr, "max"));
			if (!json_object_get(tr, "max"))
				an.duration_max_ms = 500;
		}
	}
	json_array_foreach(json_object_get(a, "webhooks"), i, v)
	{
		enum ks_hook_type t;

		if (ks_hook_type_parse(
			    ks_or(json_string_value(json_object_get(v, "type")),
				  "rollout"),
			    &t) == 0)
			an.hooks[t] = true;
	}
	ks_canary_analysis_defaults(&an);
	k->m.an = an;
}

static void restore(struct cnry *k)
{
	const json_t *st = json_object_get(k->obj, "status");
	enum ks_canary_phase p;
	const char *s;

	if (!st || ks_canary_phase_parse(ks_jstr(st, "phase"), &p) < 0)
		return;
	k->m.phase = p;
	k->m.canary_weight = (int)ks_jint(st, "canaryWeight", 0);
	k->m.failed_checks = (int)ks_jint(st, "failedChecks", 0);
	k->m.iterations = (int)ks_jint(st, "iterations", 0);
	snprintf(k->m.last_applied, sizeof(k->m.last_applied), "%s",
		 ks_or(ks_jstr(st, "lastAppliedSpec"), ""));
	snprintf(k->m.last_promoted, sizeof(k->m.last_promoted), "%s",
		 ks_or(ks_jstr(st, "lastPromotedSpec"), ""));
	if ((s = ks_jstr(st, "lastTransitionTime")))
		co_time_parse_rfc3339(s, &k->m.last_transition_ms);
	json_t *cd = ks_cond_get(k->obj, "Promoted");

	if (cd) {
		snprintf(k->m.cond_status, sizeof(k->m.cond_status), "%s",
			 ks_or(json_string_value(json_object_get(cd, "status")),
			       "Unknown"));
		snprintf(k->m.cond_reason, sizeof(k->m.cond_reason), "%s",
			 ks_or(json_string_value(json_object_get(cd, "reason")), ""));
		snprintf(k->m.cond_message, sizeof(k->m.cond_message), "%s",
			 ks_or(json_string_value(json_object_get(cd, "message")), ""));
	}
	k->m.primary_created = p != KS_CANARY_INITIALIZING;
	k->m.confirmed = p != KS_CANARY_WAITING;
	k->m.pre_done = k->m.canary_weight > 0 || k->m.iterations > 0;
	k->m.analysis_start_ms = co_time_wall_ms();
	if (k->m.primary_created) {
		char *prim = primary_name(k);

		ks_apps_set_split(k->c, k->ns, k->svc, prim, k->target,
				  k->m.canary_weight);
		free(prim);
	}
}

static void tick_cb(uv_timer_t *t)
{
	struct cnry *k = t->data;

	if (!k->gone && !k->c->stopped)
		ks_canary_tick(&k->m);
}

static void arm(struct cnry *k)
{
	uint64_t ms = ks_ctl_scaled(k->c, k->interval_ms);

	uv_timer_start(&k->timer, tick_cb, ms, ms);
}

static struct cnry *find(struct ks_flagger *f, const char *ns, const char *name,
			 size_t *idx)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->items[i]->ns, ns) && !strcmp(f->items[i]->name, name)) {
			if (idx)
				*idx = i;
			return f->items[i];
		}
	return NULL;
}

static void drop(struct cnry *k)
{
	k->gone = true;
	ks_apps_set_split(k->c, k->ns, k->svc, "", "", -1);
	if (k->call)
		co_http_cancel(k->call);
	uv_close((uv_handle_t *)&k->timer, cn_closed);
}

static void on_event(const struct ks_event *ev, void *data)
{
	struct ks_controllers *c = data;
	struct ks_flagger *f = c->flagger;
	const char *ns = ks_or(ks_jstr(ev->obj, "metadata.namespace"), "");
	const char *name = ks_or(ks_jstr(ev->obj, "metadata.name"), "");
	size_t idx = 0;
	struct cnry *k = find(f, ns, name, &idx);
	int64_t old_interval;

	if (ev->type == KS_EVENT_DELETED) {
		if (k) {
			f->items[idx] = f->items[--f->n];
			drop(k);
		}
		return;
	}
	if (!k) {
		const char *target = ks_jstr(ev->obj, "spec.targetRef.name");

		if (!target)
			return;
		k = co_calloc(1, sizeof(*k));
		k->c = c;
		k->refs = 1;
		k->ns = co_strdup(ns);
		k->name = co_strdup(name);
		k->target = co_strdup(target);
		k->svc = co_strdup(ks_or(ks_jstr(ev->obj, "spec.service.name"), target));
		k->obj = json_incref(ev->obj);
		uv_timer_init(c->loop, &k->timer);
		k->timer.data = k;
		ks_ctl_ref(c);
		ks_canary_init(&k->m, &ops, k);
		load_analysis(k);
		restore(k);
		if (f->n == f->cap) {
			f->cap = f->cap ? 2 * f->cap : 8;
			f->items = co_realloc(f->items, f->cap * sizeof(*f->items));
		}
		f->items[f->n++] = k;
		arm(k);
		return;
	}
	json_decref(k->obj);
	k->obj = json_incref(ev->obj);
	old_interval = k->interval_ms;
	load_analysis(k);
	if (old_interval != k->interval_ms)
		arm(k);
}

int ks_flagger_start(struct ks_controllers *c, struct co_error *err)
{
	struct ks_watch_filter flt = {.group = "flagger.app", .resource = "canaries"};

	c->flagger = co_calloc(1, sizeof(*c->flagger));
	return ks_store_watch(&c->flagger->watch, c->store, &flt, 0, on_event, c, err);
}

void ks_flagger_stop(struct ks_controllers *c)
{
	struct ks_flagger *f = c->flagger;

	if (!f)
		return;
	ks_watch_cancel(f->watch);
	for (size_t i = 0; i < f->n; i++)
		drop(f->items[i]);
	free(f->items);
	free(f);
	c->flagger = NULL;
}

size_t ks_flagger_series(struct ks_controllers *c, struct ks_metrics_canary **ret)
{
	struct ks_flagger *f = c->flagger;
	size_t n = f ? f->n : 0;
	struct ks_metrics_canary *v = co_calloc(n ? n : 1, sizeof(*v));

	for (size_t i = 0; i < n; i++) {
		struct cnry *k = f->items[i];

		v[i].ns = co_strdup(k->ns);
		v[i].name = co_strdup(k->name);
		v[i].target = co_strdup(k->target);
		v[i].status = ks_canary_status_metric(&k->m);
		v[i].weight = k->m.canary_weight;
		v[i].duration_seconds = (double)k->m.last_duration_ms / 1000.0;
	}
	*ret = v;
	return n;
}

void ks_flagger_series_free(struct ks_metrics_canary *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)v[i].ns);
		free((char *)v[i].name);
		free((char *)v[i].target);
	}
	free(v);
}
