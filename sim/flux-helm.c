/*
 * HelmRepository and HelmRelease: accepted and marked Ready, simulated.
 *
 * kubesim renders no charts; a fleet repo that carries Helm objects must still
 * converge, so each HelmRepository (source.toolkit.fluxcd.io) and HelmRelease
 * (helm.toolkit.fluxcd.io) gets Ready True with observedGeneration and a message that
 * says plainly nothing was installed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "sim/ctl.h"

struct ks_fhelm {
	struct ks_watch *repos;
	struct ks_watch *releases;
};

static void on_event(const struct ks_event *ev, void *data)
{
	struct ks_controllers *c = data;
	struct co_error err = CO_ERROR_INIT;
	bool release = !strcmp(ev->resource, "helmreleases");
	struct ks_key key = {ev->group, ev->resource,
			     ks_jstr(ev->obj, "metadata.namespace"),
			     ks_jstr(ev->obj, "metadata.name")};
	int64_t gen = ks_jint(ev->obj, "metadata.generation", 1);
	json_t *st;
	char msg[256];

	if (ev->type == KS_EVENT_DELETED || !key.name || c->stopped)
		return;
	if (ks_jint(ev->obj, "status.observedGeneration", 0) == gen &&
	    ks_cond_true(ev->obj, "Ready"))
		return;
	st = json_deep_copy(json_object_get(ev->obj, "status"));
	if (!json_is_object(st)) {
		json_decref(st);
		st = json_object();
	}
	json_object_set_new(st, "observedGeneration", json_integer(gen));
	if (release) {
		snprintf(msg, sizeof(msg),
			 "simulated by kubesim: chart '%s' accepted, nothing rendered or "
			 "installed",
			 ks_or(ks_jstr(ev->obj, "spec.chart.spec.chart"), ""));
		ks_cond_set(st, "Ready", "True", "InstallSucceeded", msg, gen);
		ks_cond_set(st, "Released", "True", "InstallSucceeded", msg, gen);
	} else {
		snprintf(msg, sizeof(msg),
			 "simulated by kubesim: repository '%s' accepted, no index "
			 "fetched",
			 ks_or(ks_jstr(ev->obj, "spec.url"), ""));
		ks_cond_set(st, "Ready", "True", "Succeeded", msg, gen);
	}
	if (ks_ctl_write_status(c, &key, st,
				release ? "helm-controller" : "source-controller",
				&err) < 0)
		co_log_debug("kubesim", "helm object '%s' status: %s", key.name, err.msg);
	json_decref(st);
}

int ks_fhelm_start(struct ks_controllers *c, struct co_error *err)
{
	struct ks_watch_filter repos = {.group = "source.toolkit.fluxcd.io",
					.resource = "helmrepositories"};
	struct ks_watch_filter rels = {.group = "helm.toolkit.fluxcd.io",
				       .resource = "helmreleases"};
	int r;

	c->fhelm = co_calloc(1, sizeof(*c->fhelm));
	r = ks_store_watch(&c->fhelm->repos, c->store, &repos, 0, on_event, c, err);
	if (r < 0)
		return r;
	return ks_store_watch(&c->fhelm->releases, c->store, &rels, 0, on_event, c, err);
}

void ks_fhelm_stop(struct ks_controllers *c)
{
	if (!c->fhelm)
		return;
	ks_watch_cancel(c->fhelm->repos);
	ks_watch_cancel(c->fhelm->releases);
	free(c->fhelm);
	c->fhelm = NULL;
}
