/*
 * Stage 2, create-cluster: the provider builds the new cluster; it takes no traffic.
 *
 *   creating          journaled with the cluster spec BEFORE the provider is called;
 *                     the provider is asked for the cluster first and create is only
 *                     called when it is missing, so a runner killed mid-create and
 *                     resumed never builds a second one
 *   registering       kubeconfig written under the state dir (0600), the cluster
 *                     recorded in the registry as role "candidate" with this
 *                     pipeline's id (preflight uses it to recognise its own cluster)
 *   waiting-version   /version polled with backoff until it answers the target
 *
 * Every resume goes through creating again: looking at the world is cheap and the
 * only way to know what a killed runner left behind.
 *
 * Cleanup (a later stage failed before traffic moved): delete the cluster through the
 * provider (a missing cluster is fine) and mark it retired in the registry.
 */
#include "stages/common.h"
#include "stages/registry.h"
#include "base/log.h"
#include "base/time.h"
#include "clients/kube-apis.h"
#include "clients/kube.h"
#include "engine/pipeline.h"
#include "providers/provider.h"
#include "providers/registry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum state {
	ST_CREATING,	    /* provider get, then create when missing */
	ST_REGISTERING,	    /* kubeconfig and registry entry */
	ST_WAITING_VERSION, /* /version answers the target */
	ST_DONE,	    /* outputs recorded; not journaled (the engine marks done) */
};

static const char *const state_names[] = {
	[ST_CREATING] = "creating",
	[ST_REGISTERING] = "registering",
	[ST_WAITING_VERSION] = "waiting-version",
};

struct create {
	struct co_sm sm;
	enum state state;
	json_t *spec;
	json_t *cluster;  /* the provider's answer */
	char *kubeconfig; /* path */
	struct co_kube *kube;
	unsigned attempt;
	char last[160];
	bool created;
	/* cleanup */
	bool cleanup;
};

static void step(struct co_sm *sm);

static const struct co_pipeline_services *svc_of(struct create *c)
{
	return co_pipeline_services(co_stage_pipeline(c->sm.run));
}

static void set_state(struct create *c, enum state s, const json_t *details)
{
	c->state = s;
	/* the engine journals "done" itself, after the outputs are recorded */
	if (s == ST_DONE || co_sm_set_state(&c->sm, state_names[s], details))
		step(&c->sm);
}

static void finish_err(struct create *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void finish_err(struct create *c, int code, const char *fmt, ...)
{
	struct co_error err = CO_ERROR_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(&err, code, fmt, ap);
	va_end(ap);
	co_sm_finish(&c->sm, code, &err);
}

static json_t *build_spec(struct co_stage_run *run)
{
	const char *image = co_stage_request_str(run, "image");
	char *version = co_provider_version_from_image(image ? image : "");
	const json_t *port = json_object_get(co_stage_request(run), "port");
	json_t *spec = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name",
				 co_stages_req(run, "new", ""), "image",
				 image ? image : "", "version", version ? version : "",
				 "env", co_stages_req(run, "env", "staging"), "location",
				 co_stages_req(run, "location", "northeurope"));

	if (json_is_integer(port) && json_integer_value(port) > 0)
		json_object_set(spec, "port", (json_t *)port);
	free(version);
	return spec;
}

/*
 * Whether an existing cluster of that name may be this pipeline's: registered by it,
 * or not registered at all (created by an earlier run of this stage that was killed
 * before registering). A cluster registered by anyone else is never adopted, nor
 * deleted by the cleanup.
 */
static bool ours(struct co_stage_run *run, const char *name)
{
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(run));
	struct co_error err = CO_ERROR_INIT;
	const json_t *entry;
	const char *owner;

	co_registry_reload(svc->registry, &err);
	entry = co_registry_get(svc->registry, name);
	if (!entry)
		return true;
	owner = json_string_value(json_object_get(entry, "pipeline"));
	return owner && strcmp(owner, co_pipeline_id(co_stage_pipeline(run))) == 0;
}

/* ---- creating ---- */

static void create_cb(struct co_provider_result *res, void *data)
{
	struct create *c = data;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "create cluster '%s'",
				json_string_value(json_object_get(c->spec, "name")));
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	}
	c->cluster = json_incref(res->cluster);
	c->created = true;
	co_stage_log(c->sm.run, CO_LOG_INFO, "cluster '%s' created",
		     json_string_value(json_object_get(c->spec, "name")));
	set_state(c, ST_REGISTERING, NULL);
}

static void get_cb(struct co_provider_result *res, void *data)
{
	struct create *c = data;
	struct co_error err = CO_ERROR_INIT;
	const char *name = json_string_value(json_object_get(c->spec, "name"));

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status == 0 && !ours(c->sm.run, name)) {
		finish_err(c, -EEXIST,
			   "cluster '%s' appeared meanwhile and belongs to someone else; "
			   "not adopting it",
			   name);
		return;
	}
	if (res->status == 0) {
		co_stage_log(c->sm.run, CO_LOG_INFO,
			     "cluster '%s' already exists (%s); not "
			     "creating it again",
			     name,
			     json_string_value(json_object_get(res->cluster, "state"))
				     ? json_string_value(
					       json_object_get(res->cluster, "state"))
				     : "found");
		c->cluster = json_incref(res->cluster);
		set_state(c, ST_REGISTERING, NULL);
		return;
	}
	if (res->status != -ENOENT) {
		co_error_prefix(&res->err, "look up cluster '%s'", name);
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	}
	co_stage_waiting(c->sm.run, "provider '%s' creating cluster '%s'",
			 svc_of(c)->provider->ops->name, name);
	if (co_provider_create(svc_of(c)->provider, c->spec, create_cb, c, &err) < 0) {
		co_sm_finish(&c->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_sm_op_start(&c->sm);
}

static void enter_creating(struct create *c)
{
	struct co_error err = CO_ERROR_INIT;
	const char *name = json_string_value(json_object_get(c->spec, "name"));

	if (co_provider_get(svc_of(c)->provider, name, get_cb, c, &err) < 0) {
		co_sm_finish(&c->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_stage_waiting(c->sm.run, "provider lookup of '%s'", name);
	co_sm_op_start(&c->sm);
}

/* ---- registering ---- */

static void enter_registering(struct create *c)
{
	struct co_stage_run *run = c->sm.run;
	struct co_registry *reg = svc_of(c)->registry;
	const char *name = json_string_value(json_object_get(c->spec, "name"));
	const char *kc = json_string_value(json_object_get(c->cluster, "kubeconfig"));
	const char *ingress = json_string_value(json_object_get(c->cluster, "ingress"));
	struct co_error err = CO_ERROR_INIT;
	json_t *fields;
	int rc;

	if (!kc || !*kc) {
		finish_err(c, -EPROTO, "provider gave no kubeconfig for cluster '%s'",
			   name);
		return;
	}
	rc = co_registry_write_kubeconfig(reg, name, kc, &c->kubeconfig, &err);
	if (rc < 0) {
		co_sm_finish(&c->sm, rc, &err);
		return;
	}
	fields = json_pack("{s:s, s:s, s:O, s:O, s:O, s:s, s:s, s:s}", "provider",
			   svc_of(c)->provider->ops->name, "role", "candidate", "env",
			   json_object_get(c->spec, "env"), "location",
			   json_object_get(c->spec, "location"), "image",
			   json_object_get(c->spec, "image"), "version",
			   json_string_value(json_object_get(c->spec, "version")),
			   "kubeconfig", c->kubeconfig, "pipeline",
			   co_pipeline_id(co_stage_pipeline(run)));
	if (ingress)
		json_object_set_new(fields, "ingress", json_string(ingress));
	rc = co_registry_put(reg, name, fields, &err);
	json_decref(fields);
	if (rc < 0) {
		co_sm_finish(&c->sm, rc, &err);
		return;
	}
	set_state(c, ST_WAITING_VERSION, NULL);
}

/* ---- waiting-version ---- */

static bool same_version(const char *a, const char *b)
{
	struct co_kube_version va, vb;

	if (!a || !b)
		return false;
	if (strcmp(a, b) == 0)
		return true;
	return co_kube_version_parse(a, &va) == 0 && co_kube_version_parse(b, &vb) == 0 &&
	       va.minor == vb.minor && va.patch == vb.patch;
}

static void version_cb(struct co_kube_result *res, void *data)
{
	struct create *c = data;
	const char *want = json_string_value(json_object_get(c->spec, "version"));
	const char *got;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status == 0) {
		got = json_string_value(json_object_get(res->obj, "gitVersion"));
		if (same_version(got, want)) {
			set_state(c, ST_DONE, NULL);
			return;
		}
		snprintf(c->last, sizeof(c->last), "answers %s",
			 got ? got : "no gitVersion");
	} else if (!co_kube_transient(res) && res->status != -EACCES) {
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	} else {
		snprintf(c->last, sizeof(c->last), "%s", co_error_str(&res->err));
	}
	co_stage_waiting(c->sm.run, "cluster '%s' /version %s (%s)",
			 json_string_value(json_object_get(c->spec, "name")), want,
			 c->last);
	co_sm_sleep(&c->sm, co_stage_backoff(c->attempt++, 500, 5000));
}

static void poll_version(struct create *c)
{
	struct co_error err = CO_ERROR_INIT;

	if (co_kube_version(c->kube, version_cb, c, &err) < 0) {
		co_sm_finish(&c->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_sm_op_start(&c->sm);
}

static void enter_waiting_version(struct create *c)
{
	struct co_error err = CO_ERROR_INIT;

	if (!c->kube &&
	    co_stages_kube_from_path(c->sm.run, c->kubeconfig, &c->kube, &err) < 0) {
		co_sm_finish(&c->sm, err.code ? err.code : -EINVAL, &err);
		return;
	}
	co_kube_set_timeout(c->kube,
			    co_time_scaled(10000) < 2000 ? 2000 : co_time_scaled(10000));
	co_stage_waiting(c->sm.run, "cluster '%s' /version %s",
			 json_string_value(json_object_get(c->spec, "name")),
			 json_string_value(json_object_get(c->spec, "version")));
	poll_version(c);
}

static void finish_done(struct create *c)
{
	struct co_stage_run *run = c->sm.run;
	const char *ingress = json_string_value(json_object_get(c->cluster, "ingress"));

	co_stage_record(run, "cluster",
			json_string(json_string_value(json_object_get(c->spec, "name"))),
			NULL);
	co_stage_record(run, "kubeconfig", json_string(c->kubeconfig), NULL);
	co_stage_record(run, "ingress", json_string(ingress ? ingress : ""), NULL);
	co_stage_record(run, "version", json_incref(json_object_get(c->spec, "version")),
			NULL);
	co_sm_finish(&c->sm, 0, NULL);
}

static void step(struct co_sm *sm)
{
	struct create *c = (struct create *)sm;

	switch (c->state) {
	case ST_CREATING:
		enter_creating(c);
		return;
	case ST_REGISTERING:
		enter_registering(c);
		return;
	case ST_WAITING_VERSION:
		if (c->kube && !sm->busy && c->attempt > 0) {
			poll_version(c); /* a backoff sleep ended */
			return;
		}
		enter_waiting_version(c);
		return;
	case ST_DONE:
		finish_done(c);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct create *c = (struct create *)sm;

	if (c->kube) {
		co_kube_free(c->kube);
		c->kube = NULL;
	}
}

static void release(struct co_sm *sm)
{
	struct create *c = (struct create *)sm;

	co_kube_free(c->kube);
	json_decref(c->spec);
	json_decref(c->cluster);
	free(c->kubeconfig);
}

static int check_services(struct co_stage_run *run, struct co_error *err)
{
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(run));

	if (!svc || !svc->provider || !svc->registry)
		return co_error_set(err, -EINVAL,
				    "create-cluster needs a provider and a "
				    "registry");
	return 0;
}

static int create_start(struct co_stage_run *run, const char *state,
			const json_t *details, struct co_error *err)
{
	struct create *c;
	int rc = check_services(run, err);

	if (rc < 0)
		return rc;
	c = co_calloc(1, sizeof(*c));
	co_sm_init(&c->sm, run);
	c->sm.step = step;
	c->sm.on_cancel = on_cancel;
	c->sm.release = release;
	c->spec = build_spec(run);
	if (state)
		co_stage_log(run, CO_LOG_INFO,
			     "resuming from '%s': asking the provider what "
			     "exists before anything else",
			     state);
	(void)details;
	set_state(c, ST_CREATING, c->spec);
	return 0;
}

/* ---- cleanup ---- */

static void delete_cb(struct co_provider_result *res, void *data)
{
	struct create *c = data;
	struct co_stage_run *run = c->sm.run;
	struct co_registry *reg = svc_of(c)->registry;
	const char *name = json_string_value(json_object_get(c->spec, "name"));
	struct co_error err = CO_ERROR_INIT;

	if (co_sm_op_done(&c->sm))
		return;
	if (res->status < 0 && res->status != -ENOENT) {
		co_error_prefix(&res->err, "delete cluster '%s'", name);
		co_sm_finish(&c->sm, res->status, &res->err);
		return;
	}
	co_stage_log(run, CO_LOG_INFO, "cluster '%s' %s", name,
		     json_is_false(json_object_get(res->cluster, "existed"))
			     ? "was already gone"
			     : "deleted");
	co_registry_reload(reg, &err);
	if (co_registry_get(reg, name) &&
	    co_registry_set_role(reg, name, "retired", &err) < 0) {
		co_sm_finish(&c->sm, err.code ? err.code : -EIO, &err);
		return;
	}
	co_sm_finish(&c->sm, 0, NULL);
}

static int create_cleanup(struct co_stage_run *run, struct co_error *err)
{
	struct create *c;
	int rc = check_services(run, err);

	if (rc < 0)
		return rc;
	c = co_calloc(1, sizeof(*c));
	co_sm_init(&c->sm, run);
	c->sm.release = release;
	c->cleanup = true;
	c->spec = build_spec(run);
	if (!ours(run, co_stages_req(run, "new", ""))) {
		co_stage_log(
			run, CO_LOG_WARN,
			"cluster '%s' is registered by someone else: not deleting it",
			co_stages_req(run, "new", ""));
		co_sm_finish(&c->sm, 0, NULL);
		return 0;
	}
	co_stage_waiting(run, "provider deleting cluster '%s'",
			 co_stages_req(run, "new", ""));
	rc = co_provider_delete(svc_of(c)->provider, co_stages_req(run, "new", ""),
				delete_cb, c, err);
	if (rc < 0) {
		/* nothing in flight: end through the base so the timer is closed */
		co_sm_finish(&c->sm, rc, err);
		return 0;
	}
	co_sm_op_start(&c->sm);
	return 0;
}

const struct co_stage_ops co_stage_create_cluster = {
	.name = "create-cluster",
	.summary = "create the new cluster through the provider and wait for its API",
	.deadline_ms = 15 * 60 * 1000,
	.before_switch = true,
	.start = create_start,
	.cancel = co_sm_cancel,
	.cleanup = create_cleanup,
};
