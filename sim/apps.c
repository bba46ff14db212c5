/*
 * Deployments and their simulated pods.
 *
 * A watch on apps/deployments keeps one state per Deployment. reconcile() compares the
 * pods with the spec: pods of the current template (by its hash) are created up to
 * spec.replicas, each becoming ready after a scaled start delay; when every new pod is
 * ready the pods of older templates go away (a rollout), and status (replicas,
 * updatedReplicas, readyReplicas, availableReplicas, observedGeneration, Available and
 * Progressing) is written through the status subresource. Pods are in-process objects:
 * each carries what its template says about its behaviour (image tag as version,
 * FAULT_ERROR_RATE, FAULT_LATENCY_MS, CPU_COST_MS, MEMORY_MB) and serves requests the
 * ingress hands it, podinfo-style. Each is mirrored by a Pod object (Pending, then
 * Running and Ready) so kubectl sees them; the mirror is annotated
 * kubesim.io/simulated and the ones a previous process left behind are deleted at
 * start, since their pods died with it. Pods are reference counted
 * because a delayed response may outlive a rollout; a response is recorded in the
 * metrics registry and in the Deployment's analysis window (for Flagger) when it is
 * sent.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/time.h"
#include "net/http-server.h"
#include "sim/ctl.h"
#include "sim/metrics.h"

#define START_DELAY_MS 2000   /* unscaled pod start delay */
#define MAX_DELAY_S    60     /* cap for /delay/{s} */
#define WINDOW_MAX     100000 /* latency samples kept per analysis window */

struct deploy;

struct ks_pod {
	int refs;
	char *ns, *deploy, *name, *hash, *version, *app, *container, *message, *image;
	uint64_t ready_at; /* loop time (ms) the pod becomes ready */
	bool ready;
	double error_rate;
	int64_t latency_ms;
	double cpu_cost_ms;
	double memory_mb;
	uint64_t requests;
	uint64_t inflight;
	int64_t started_ms; /* loop time */
};

struct deploy {
	struct ks_controllers *c;
	char *ns, *name;
	json_t *obj;
	char hash[16];
	struct ks_pod **pods;
	size_t n_pods, cap_pods;
	uv_timer_t timer;
	bool timer_open;
	unsigned rr;
	/* analysis window */
	uint64_t win_requests, win_errors;
	double *win_lat;
	size_t win_n, win_cap;
};

struct split {
	char *ns, *svc, *primary, *canary;
	int weight;
};

struct pending {
	struct pending *next, **prev;
	struct ks_controllers *c;
	struct co_http_req *req;
	struct ks_pod *pod;
	uv_timer_t timer;
	int code;
	char *body;
	uint64_t start_ns;
};

struct ks_apps {
	struct ks_watch *watch;
	struct deploy **items;
	size_t n, cap;
	struct split *splits;
	size_t n_splits;
	struct pending *pending;
	uint64_t rng;
	unsigned rr;
};

static double rnd(struct ks_apps *a)
{
	/* xorshift64*: cheap, good enough for fault injection and pod names */
	a->rng ^= a->rng >> 12;
	a->rng ^= a->rng << 25;
	a->rng ^= a->rng >> 27;
	return (double)((a->rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

static void pod_unref(struct ks_pod *p)
{
	if (!p || --p->refs > 0)
		return;
	free(p->ns);
	free(p->deploy);
	free(p->name);
	free(p->hash);
	free(p->version);
	free(p->app);
	free(p->container);
	free(p->message);
	free(p->image);
	free(p);
}

static struct deploy *find(struct ks_apps *a, const char *ns, const char *name)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->items[i]->ns, ns) && !strcmp(a->items[i]->name, name))
			return a->items[i];
	return NULL;
}

/* Image tag: "ghcr.io/stefanprodan/podinfo:6.5.0" -> "6.5.0", digest dropped. */
static char *image_tag(const char *image)
{
	const char *at, *colon, *slash;

	if (!image)
		return co_strdup("latest");
	at = strchr(image, '@');
	colon = strrchr(image, ':');
	slash = strrchr(image, '/');
	if (colon && (!slash || colon > slash) && (!at || colon < at))
		return at ? co_strndup(colon + 1, (size_t)(at - colon - 1))
			  : co_strdup(colon + 1);
	return co_strdup("latest");
}

static const char *env_of(const json_t *container, const char *name)
{
	json_t *env = json_object_get(container, "env"), *v;
	size_t i;

	json_array_foreach(
		env, i,
		v) if (!strcmp(ks_or(json_string_value(json_object_get(v, "name")), ""),
			       name)) return json_string_value(json_object_get(v,
									       "value"));
	return NULL;
}

static double env_num(const json_t *container, const char *name, double def)
{
	const char *s = env_of(container, name);
	char *end;
	double v;

	if (!s)
		return def;
	v = strtod(s, &end);
	return end == s || !isfinite(v) ? def : v;
}

static struct ks_pod *pod_new(struct deploy *d, const json_t *tmpl)
{
	struct ks_apps *a = d->c->apps;
	json_t *ct = json_array_get(ks_jget(tmpl, "spec.containers"), 0);
	const char *app = ks_jstr(tmpl, "metadata.labels.app");
	struct ks_pod *p = co_calloc(1, sizeof(*p));
	static const char chars[] = "bcdfghjklmnpqrstvwxz2456789";
	char suffix[6];
	const char *msg;

	for (int i = 0; i < 5; i++)
		suffix[i] = chars[(int)(rnd(a) * (sizeof(chars) - 1))];
	suffix[5] = '\0';
	if (!app)
		app = json_string_value(json_object_get(ks_jget(tmpl, "metadata.labels"),
							"app.kubernetes.io/name"));
	p->refs = 1;
	p->ns = co_strdup(d->ns);
	p->deploy = co_strdup(d->name);
	p->name = co_asprintf("%s-%s-%s", d->name, d->hash, suffix);
	p->hash = co_strdup(d->hash);
	p->image = co_strdup(ks_or(json_string_value(json_object_get(ct, "image")), ""));
	p->version = image_tag(json_string_value(json_object_get(ct, "image")));
	p->app = co_strdup(app ? app : d->name);
	p->container =
		co_strdup(ks_or(json_string_value(json_object_get(ct, "name")), "app"));
	msg = env_of(ct, "PODINFO_UI_MESSAGE");
	p->message = msg ? co_strdup(msg)
			 : co_asprintf("greetings from podinfo v%s", p->version);
	p->error_rate = env_num(ct, "FAULT_ERROR_RATE", 0);
	p->latency_ms = (int64_t)env_num(ct, "FAULT_LATENCY_MS", 0);
	p->cpu_cost_ms = env_num(ct, "CPU_COST_MS", 0);
	p->memory_mb = env_num(ct, "MEMORY_MB", 0);
	p->started_ms = (int64_t)uv_now(d->c->loop);
	p->ready_at = uv_now(d->c->loop) + ks_ctl_scaled(d->c, START_DELAY_MS);
	return p;
}

/* ---- Pod objects: what kubectl get pods shows of the in-process pods ---- */

#define SIM_ANNOTATION "kubesim.io/simulated"

static void pod_object_create(struct deploy *d, struct ks_pod *p, const json_t *tmpl)
{
	struct ks_key key = {"", "pods", p->ns, p->name};
	json_t *labels = json_deep_copy(ks_jget(tmpl, "metadata.labels"));
	json_t *spec = json_deep_copy(json_object_get(tmpl, "spec"));
	char *rs = co_asprintf("%s-%s", d->name, d->hash);
	json_t *obj;

	if (!json_is_object(labels)) {
		json_decref(labels);
		labels = json_object();
	}
	if (!json_is_object(spec)) {
		json_decref(spec);
		spec = json_object();
	}
	json_object_set_new(labels, "pod-template-hash", json_string(d->hash));
	json_object_set_new(spec, "nodeName", json_sprintf("%s-server-0", d->c->name));
	obj = json_pack("{s:s, s:s, s:{s:s, s:s, s:o, s:{s:s}, s:[{s:s, s:s, s:s, s:b, "
			"s:b}]}, s:o, s:{s:s}}",
			"apiVersion", "v1", "kind", "Pod", "metadata", "name", p->name,
			"namespace", p->ns, "labels", labels, "annotations",
			SIM_ANNOTATION, "true", "ownerReferences", "apiVersion",
			"apps/v1", "kind", "ReplicaSet", "name", rs, "controller", 1,
			"blockOwnerDeletion", 1, "spec", spec, "status", "phase",
			"Pending");
	ks_store_create(d->c->store, &key, obj, "k3s", 0, NULL, NULL);
	json_decref(obj);
	free(rs);
}

static void pod_object_ready(struct deploy *d, struct ks_pod *p)
{
	struct ks_key key = {"", "pods", p->ns, p->name};
	struct ks_apps *a = d->c->apps;
	char now[40];
	json_t *obj;
	unsigned ip = (unsigned)(rnd(a) * 65000) + 2;

	ks_now_rfc3339(now, sizeof(now));
	obj = json_pack("{s:{s:s, s:s}, s:{s:s, s:s, s:s, s:[{s:s, s:s}, {s:s, s:s}, "
			"{s:s, s:s}], s:[{s:s, s:s, s:b, s:b, s:i, s:{s:{s:s}}}]}}",
			"metadata", "name", p->name, "namespace", p->ns, "status",
			"phase", "Running", "podIP", "", "startTime", now, "conditions",
			"type", "Initialized", "status", "True", "type", "Ready",
			"status", "True", "type", "ContainersReady", "status", "True",
			"containerStatuses", "name", p->container, "image", p->image,
			"ready", 1, "started", 1, "restartCount", 0, "state", "running",
			"startedAt", now);
	json_object_set_new(json_object_get(obj, "status"), "podIP",
			    json_sprintf("10.42.%u.%u", ip / 256, ip % 256));
	ks_store_update_status(d->c->store, &key, obj, "k3s", 0, NULL, NULL);
	json_decref(obj);
}

static void remove_pod(struct deploy *d, size_t i)
{
	struct ks_key key = {"", "pods", d->pods[i]->ns, d->pods[i]->name};

	/* at stop the store is left alone: a restored cluster replaces stale pods */
	if (!d->c->stopped)
		ks_store_delete(d->c->store, &key, 0, NULL, NULL);
	pod_unref(d->pods[i]);
	memmove(&d->pods[i], &d->pods[i + 1], (d->n_pods - i - 1) * sizeof(*d->pods));
	d->n_pods--;
}

static void timer_cb(uv_timer_t *t);

static void write_status(struct deploy *d, int64_t replicas, size_t updated, size_t ready,
			 bool complete)
{
	json_t *status = json_deep_copy(json_object_get(d->obj, "status"));
	struct co_error err = CO_ERROR_INIT;
	struct ks_key key = {"apps", "deployments", d->ns, d->name};
	char msg[256];

	if (!json_is_object(status)) {
		json_decref(status);
		status = json_object();
	}
	json_object_set_new(status, "observedGeneration",
			    json_integer(ks_jint(d->obj, "metadata.generation", 1)));
	json_object_set_new(status, "replicas", json_integer((json_int_t)d->n_pods));
	json_object_set_new(status, "updatedReplicas", json_integer((json_int_t)updated));
	json_object_set_new(status, "readyReplicas", json_integer((json_int_t)ready));
	json_object_set_new(status, "availableReplicas", json_integer((json_int_t)ready));
	if ((int64_t)d->n_pods > (int64_t)ready)
		json_object_set_new(status, "unavailableReplicas",
				    json_integer((json_int_t)(d->n_pods - ready)));
	else
		json_object_del(status, "unavailableReplicas");
	if ((int64_t)ready >= replicas)
		ks_cond_set(status, "Available", "True", "MinimumReplicasAvailable",
			    "Deployment has minimum availability.", 0);
	else
		ks_cond_set(status, "Available", "False", "MinimumReplicasUnavailable",
			    "Deployment does not have minimum availability.", 0);
	if (complete) {
		snprintf(msg, sizeof(msg),
			 "ReplicaSet \"%s-%s\" has successfully progressed.", d->name,
			 d->hash);
		ks_cond_set(status, "Progressing", "True", "NewReplicaSetAvailable", msg,
			    0);
	} else {
		snprintf(msg, sizeof(msg), "ReplicaSet \"%s-%s\" is progressing.",
			 d->name, d->hash);
		ks_cond_set(status, "Progressing", "True", "ReplicaSetUpdated", msg, 0);
	}
	if (ks_ctl_write_status(d->c, &key, status, "k3s", &err) < 0 &&
	    err.code != -ENOENT)
		co_log_debug("kubesim", "deployment '%s/%s' status: %s", d->ns, d->name,
			     err.msg);
	json_decref(status);
}

static void reconcile(struct deploy *d)
{
	const json_t *tmpl = ks_jget(d->obj, "spec.template");
	int64_t replicas = ks_jint(d->obj, "spec.replicas", 1);
	uint64_t now = uv_now(d->c->loop), next = 0;
	size_t cur = 0, ready_new = 0, ready = 0, i;
	bool complete;

	if (replicas < 0)
		replicas = 0;
	if (replicas > 1000)
		replicas = 1000;
	ks_json_hash(tmpl, d->hash, sizeof(d->hash));
	for (i = 0; i < d->n_pods; i++) {
		struct ks_pod *p = d->pods[i];

		if (!p->ready && p->ready_at <= now) {
			p->ready = true;
			pod_object_ready(d, p);
		}
		if (!strcmp(p->hash, d->hash))
			cur++;
	}
	/* scale the current template's pods to the spec: not-ready ones go first */
	for (i = d->n_pods; i-- > 0 && (int64_t)cur > replicas;)
		if (!strcmp(d->pods[i]->hash, d->hash) && !d->pods[i]->ready) {
			remove_pod(d, i);
			cur--;
		}
	for (i = d->n_pods; i-- > 0 && (int64_t)cur > replicas;)
		if (!strcmp(d->pods[i]->hash, d->hash)) {
			remove_pod(d, i);
			cur--;
		}
	while ((int64_t)cur < replicas) {
		if (d->n_pods == d->cap_pods) {
			d->cap_pods = d->cap_pods ? 2 * d->cap_pods : 4;
			d->pods = co_realloc(d->pods, d->cap_pods * sizeof(*d->pods));
		}
		d->pods[d->n_pods] = pod_new(d, tmpl);
		pod_object_create(d, d->pods[d->n_pods++], tmpl);
		cur++;
	}
	for (i = 0; i < d->n_pods; i++)
		if (!strcmp(d->pods[i]->hash, d->hash) && d->pods[i]->ready)
			ready_new++;
	/* rollout: old pods leave once the new ones all serve */
	if ((int64_t)ready_new >= replicas)
		for (i = d->n_pods; i-- > 0;)
			if (strcmp(d->pods[i]->hash, d->hash))
				remove_pod(d, i);
	for (i = 0; i < d->n_pods; i++) {
		if (d->pods[i]->ready)
			ready++;
		else if (!next || d->pods[i]->ready_at < next)
			next = d->pods[i]->ready_at;
	}
	complete = (int64_t)ready_new >= replicas && d->n_pods == cur;
	write_status(d, replicas, cur, ready, complete);
	if (next && d->timer_open)
		uv_timer_start(&d->timer, timer_cb, next > now ? next - now : 1, 0);
}

static void timer_cb(uv_timer_t *t)
{
	struct deploy *d = t->data;

	if (!d->c->stopped)
		reconcile(d);
}

static void deploy_closed(uv_handle_t *h)
{
	struct deploy *d = h->data;
	struct ks_controllers *c = d->c;

	free(d->ns);
	free(d->name);
	free(d->win_lat);
	free(d);
	ks_ctl_unref(c);
}

static void deploy_free(struct deploy *d)
{
	while (d->n_pods)
		remove_pod(d, d->n_pods - 1);
	free(d->pods);
	d->pods = NULL;
	json_decref(d->obj);
	d->obj = NULL;
	d->timer_open = false;
	uv_close((uv_handle_t *)&d->timer, deploy_closed);
}

static void on_event(const struct ks_event *ev, void *data)
{
	struct ks_controllers *c = data;
	struct ks_apps *a = c->apps;
	const char *ns = ks_or(ks_jstr(ev->obj, "metadata.namespace"), "");
	const char *name = ks_or(ks_jstr(ev->obj, "metadata.name"), "");
	struct deploy *d = find(a, ns, name);

	if (ev->type == KS_EVENT_DELETED) {
		if (!d)
			return;
		for (size_t i = 0; i < a->n; i++)
			if (a->items[i] == d) {
				memmove(&a->items[i], &a->items[i + 1],
					(a->n - i - 1) * sizeof(*a->items));
				a->n--;
				break;
			}
		deploy_free(d);
		return;
	}
	if (!d) {
		d = co_calloc(1, sizeof(*d));
		d->c = c;
		d->ns = co_strdup(ns);
		d->name = co_strdup(name);
		uv_timer_init(c->loop, &d->timer);
		d->timer.data = d;
		d->timer_open = true;
		ks_ctl_ref(c);
		if (a->n == a->cap) {
			a->cap = a->cap ? 2 * a->cap : 16;
			a->items = co_realloc(a->items, a->cap * sizeof(*a->items));
		}
		a->items[a->n++] = d;
	}
	json_decref(d->obj);
	d->obj = json_incref(ev->obj);
	reconcile(d);
}

int ks_apps_start(struct ks_controllers *c, struct co_error *err)
{
	struct ks_watch_filter f = {.group = "apps", .resource = "deployments"};

	struct ks_key pods = {"", "pods", NULL, NULL};
	json_t *items = NULL, *v;
	size_t i;

	c->apps = co_calloc(1, sizeof(*c->apps));
	c->apps->rng = (uint64_t)co_time_mono_ns() | 1;
	/* pods of a previous run (restored snapshot) are gone with that process */
	if (ks_store_list(c->store, &pods, NULL, &items, NULL, NULL) == 0)
		json_array_foreach(items, i, v)
		{
			struct ks_key k = {"", "pods", ks_jstr(v, "metadata.namespace"),
					   ks_jstr(v, "metadata.name")};

			if (json_object_get(ks_jget(v, "metadata.annotations"),
					    SIM_ANNOTATION))
				ks_store_delete(c->store, &k, 0, NULL, NULL);
		}
	json_decref(items);
	return ks_store_watch(&c->apps->watch, c->store, &f, 0, on_event, c, err);
}

static void pending_finish(struct pending *pd, bool respond);

void ks_apps_stop(struct ks_controllers *c)
{
	struct ks_apps *a = c->apps;

	if (!a)
		return;
	ks_watch_cancel(a->watch);
	while (a->pending)
		pending_finish(a->pending, false);
	for (size_t i = 0; i < a->n; i++)
		deploy_free(a->items[i]);
	free(a->items);
	for (size_t i = 0; i < a->n_splits; i++) {
		free(a->splits[i].ns);
		free(a->splits[i].svc);
		free(a->splits[i].primary);
		free(a->splits[i].canary);
	}
	free(a->splits);
	free(a);
	c->apps = NULL;
}

/* ---- traffic ---- */

void ks_apps_set_split(struct ks_controllers *c, const char *ns, const char *svc,
		       const char *primary, const char *canary, int weight)
{
	struct ks_apps *a = c->apps;
	size_t i;

	if (!a)
		return;
	for (i = 0; i < a->n_splits; i++)
		if (!strcmp(a->splits[i].ns, ns) && !strcmp(a->splits[i].svc, svc))
			break;
	if (weight < 0) {
		if (i == a->n_splits)
			return;
		free(a->splits[i].ns);
		free(a->splits[i].svc);
		free(a->splits[i].primary);
		free(a->splits[i].canary);
		a->splits[i] = a->splits[--a->n_splits];
		return;
	}
	if (i == a->n_splits) {
		a->splits = co_realloc(a->splits, (a->n_splits + 1) * sizeof(*a->splits));
		a->splits[i] = (struct split){co_strdup(ns), co_strdup(svc),
					      co_strdup(primary), co_strdup(canary), 0};
		a->n_splits++;
	}
	a->splits[i].weight = weight;
}

static struct ks_pod *pick_in(struct deploy *d)
{
	size_t n = 0, k;

	if (!d)
		return NULL;
	for (size_t i = 0; i < d->n_pods; i++)
		n += d->pods[i]->ready;
	if (!n)
		return NULL;
	k = d->rr++ % n;
	for (size_t i = 0; i < d->n_pods; i++)
		if (d->pods[i]->ready && k-- == 0)
			return d->pods[i];
	return NULL;
}

static bool labels_match(const json_t *selector, const json_t *labels)
{
	const char *k;
	json_t *v;

	if (!json_is_object(selector) || json_object_size(selector) == 0)
		return false;
	json_object_foreach((json_t *)selector, k, v)
	{
		const char *have = json_string_value(json_object_get(labels, k));

		if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)))
			return false;
	}
	return true;
}

struct ks_pod *ks_apps_pick(struct ks_controllers *c, const char *ns, const char *svc,
			    bool *ret_svc_found)
{
	struct ks_apps *a = c->apps;
	struct ks_key key = {"", "services", ns, svc};
	json_t *obj = NULL, *sel;
	struct ks_pod *cands[64], *p;
	size_t n = 0;

	*ret_svc_found = false;
	for (size_t i = 0; i < a->n_splits; i++) {
		struct split *s = &a->splits[i];

		if (strcmp(s->ns, ns) || strcmp(s->svc, svc))
			continue;
		*ret_svc_found = true;
		if (s->weight > 0 && rnd(a) * 100.0 < s->weight &&
		    (p = pick_in(find(a, ns, s->canary))))
			return p;
		if ((p = pick_in(find(a, ns, s->primary))))
			return p;
		return pick_in(find(a, ns, s->canary));
	}
	if (ks_store_get(c->store, &key, &obj, NULL) < 0)
		return NULL;
	*ret_svc_found = true;
	sel = ks_jget(obj, "spec.selector");
	for (size_t i = 0; i < a->n; i++) {
		struct deploy *d = a->items[i];

		if (strcmp(d->ns, ns) ||
		    !labels_match(sel, ks_jget(d->obj, "spec.template.metadata.labels")))
			continue;
		for (size_t j = 0; j < d->n_pods && n < 64; j++)
			if (d->pods[j]->ready)
				cands[n++] = d->pods[j];
	}
	json_decref(obj);
	return n ? cands[a->rr++ % n] : NULL;
}

bool ks_apps_ready(struct ks_controllers *c, const char *ns, const char *name)
{
	struct deploy *d = c->apps ? find(c->apps, ns, name) : NULL;
	int64_t replicas;
	size_t ready = 0;

	if (!d || !d->obj)
		return false;
	replicas = ks_jint(d->obj, "spec.replicas", 1);
	for (size_t i = 0; i < d->n_pods; i++) {
		if (strcmp(d->pods[i]->hash, d->hash))
			return false;
		ready += d->pods[i]->ready;
	}
	return (int64_t)ready >= replicas && replicas > 0;
}

static int dbl_cmp(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

void ks_apps_take_window(struct ks_controllers *c, const char *ns, const char *name,
			 uint64_t *ret_requests, uint64_t *ret_errors, double *ret_p99_ms)
{
	struct deploy *d = c->apps ? find(c->apps, ns, name) : NULL;

	*ret_requests = *ret_errors = 0;
	*ret_p99_ms = 0;
	if (!d)
		return;
	*ret_requests = d->win_requests;
	*ret_errors = d->win_errors;
	if (d->win_n) {
		size_t idx;

		qsort(d->win_lat, d->win_n, sizeof(double), dbl_cmp);
		idx = (size_t)ceil(0.99 * (double)d->win_n);
		*ret_p99_ms = d->win_lat[idx ? idx - 1 : 0];
	}
	d->win_requests = d->win_errors = 0;
	d->win_n = 0;
}

size_t ks_apps_pods(struct ks_controllers *c, struct ks_metrics_pod **ret)
{
	struct ks_apps *a = c->apps;
	size_t n = 0, k = 0;
	uint64_t now = uv_now(c->loop);
	struct ks_metrics_pod *v;

	for (size_t i = 0; a && i < a->n; i++)
		n += a->items[i]->n_pods;
	v = co_calloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; a && i < a->n; i++)
		for (size_t j = 0; j < a->items[i]->n_pods; j++) {
			struct ks_pod *p = a->items[i]->pods[j];
			double up = (double)(now - (uint64_t)p->started_ms) / 1000.0;

			v[k].ns = co_strdup(p->ns);
			v[k].pod = co_strdup(p->name);
			v[k].container = co_strdup(p->container);
			v[k].cpu_seconds = ks_cost_cpu_seconds(
				up, p->requests, p->cpu_cost_ms, c->overhead);
			v[k].memory_bytes = ks_cost_memory_bytes(
				p->memory_mb, p->inflight, c->overhead);
			k++;
		}
	*ret = v;
	return k;
}

void ks_apps_pods_free(struct ks_metrics_pod *pods, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)pods[i].ns);
		free((char *)pods[i].pod);
		free((char *)pods[i].container);
	}
	free(pods);
}

/* ---- serving ---- */

static void record(struct ks_controllers *c, struct ks_pod *p, int code,
		   uint64_t start_ns)
{
	double secs = (double)(co_time_mono_ns() - start_ns) / 1e9;
	struct deploy *d = c->apps ? find(c->apps, p->ns, p->deploy) : NULL;

	ks_metrics_observe(c->metrics, p->ns, p->app, p->version, code, secs);
	if (!d)
		return;
	d->win_requests++;
	if (code >= 500)
		d->win_errors++;
	if (d->win_n < WINDOW_MAX) {
		if (d->win_n == d->win_cap) {
			d->win_cap = d->win_cap ? 2 * d->win_cap : 256;
			d->win_lat = co_realloc(d->win_lat, d->win_cap * sizeof(double));
		}
		d->win_lat[d->win_n++] = secs * 1000.0;
	}
}

static void pending_closed(uv_handle_t *h)
{
	struct pending *pd = h->data;

	pod_unref(pd->pod);
	free(pd->body);
	ks_ctl_unref(pd->c);
	free(pd);
}

/* Unlink, answer (respond) or drop the request, close the timer. */
static void pending_finish(struct pending *pd, bool respond)
{
	struct ks_controllers *c = pd->c;

	*pd->prev = pd->next;
	if (pd->next)
		pd->next->prev = pd->prev;
	pd->pod->inflight--;
	if (respond) {
		record(c, pd->pod, pd->code, pd->start_ns);
		co_http_respond(pd->req, pd->code, "application/json", pd->body,
				strlen(pd->body));
	} else if (pd->req) {
		co_http_respond_text(pd->req, 503, "service unavailable\n");
	}
	uv_timer_stop(&pd->timer);
	uv_close((uv_handle_t *)&pd->timer, pending_closed);
}

static void pending_timer(uv_timer_t *t)
{
	pending_finish(t->data, true);
}

static void pending_gone(struct co_http_req *req, void *data)
{
	struct pending *pd = data;

	pd->req = NULL;
	pending_finish(pd, false);
}

void ks_pod_serve(struct ks_controllers *c, struct ks_pod *p, struct co_http_req *req,
		  const char *path)
{
	struct ks_apps *a = c->apps;
	uint64_t start_ns = co_time_mono_ns();
	int64_t delay_ms = p->latency_ms;
	int code = 200;
	json_t *body;
	bool probe = !strcmp(path, "/healthz") || !strcmp(path, "/readyz");

	p->requests++;
	if (!strcmp(path, "/") || !strcmp(path, "/api/info")) {
		body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "hostname", p->name,
				 "version", p->version, "revision", p->hash, "color",
				 "#34577c", "message", p->message, "runtime", "kubesim");
	} else if (probe) {
		body = json_pack("{s:s}", "status", "OK");
	} else if (!strcmp(path, "/version")) {
		body = json_pack("{s:s, s:s}", "version", p->version, "commit", p->hash);
	} else if (!strncmp(path, "/status/", 8)) {
		char *end;
		long v = strtol(path + 8, &end, 10);

		code = (*end || v < 100 || v > 599) ? 400 : (int)v;
		body = json_pack("{s:i}", "status", code);
	} else if (!strncmp(path, "/delay/", 7)) {
		char *end;
		double s = strtod(path + 7, &end);

		if (*end || !(s >= 0) || s > MAX_DELAY_S) {
			code = 400;
			body = json_pack("{s:s}", "error", "bad delay");
		} else {
			delay_ms += (int64_t)(s * 1000);
			body = json_pack("{s:f}", "delay", s);
		}
	} else {
		code = 404;
		body = json_pack("{s:i, s:s}", "code", 404, "message", "not found");
	}
	if (!probe && p->error_rate > 0 && rnd(a) < p->error_rate) {
		json_decref(body);
		code = 500;
		body = json_pack("{s:i, s:s}", "code", 500, "message", "injected fault");
	}
	co_http_add_header(req, "X-Pod", p->name);
	if (delay_ms <= 0) {
		char *text = json_dumps(body, JSON_COMPACT);

		record(c, p, code, start_ns);
		co_http_respond(req, code, "application/json", text, strlen(text));
		free(text);
		json_decref(body);
		return;
	}
	struct pending *pd = co_calloc(1, sizeof(*pd));

	pd->c = c;
	ks_ctl_ref(c);
	pd->req = req;
	pd->pod = p;
	p->refs++;
	p->inflight++;
	pd->code = code;
	pd->body = json_dumps(body, JSON_COMPACT);
	pd->start_ns = start_ns;
	json_decref(body);
	pd->next = a->pending;
	if (pd->next)
		pd->next->prev = &pd->next;
	pd->prev = &a->pending;
	a->pending = pd;
	uv_timer_init(c->loop, &pd->timer);
	pd->timer.data = pd;
	uv_timer_start(&pd->timer, pending_timer, (uint64_t)delay_ms, 0);
	co_http_req_on_close(req, pending_gone, pd);
}
