/*
 * ks_controllers: the per-cluster bundle of controllers and the helpers they share.
 *
 * Start builds the shared pieces (metrics registry, HTTP client for webhooks) and
 * starts each controller; each one subscribes to the store with ks_store_watch() from
 * resourceVersion 0, so objects restored from a snapshot are picked up like new ones.
 * Stop tears down in reverse order. The struct is reference counted because per-object
 * states and operations in flight (git on the thread pool, subprocesses, HTTP calls)
 * may outlive stop; they drop their reference when their handles are closed.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/time.h"
#include "net/http-client.h"
#include "sim/ctl.h"
#include "sim/metrics.h"

void ks_ctl_ref(struct ks_controllers *c)
{
	c->refs++;
}

static void ctl_free(struct ks_controllers *c)
{
	ks_metrics_free(c->metrics);
	free(c->name);
	free(c->state_dir);
	free(c->version);
	free(c->kubectl);
	free(c);
}

void ks_ctl_unref(struct ks_controllers *c)
{
	if (--c->refs == 0)
		ctl_free(c);
}

uint64_t ks_ctl_scaled(const struct ks_controllers *c, int64_t ms)
{
	double v;

	if (ms <= 0)
		return 0;
	v = (double)ms * c->scale;
	return v < 1 ? 1 : (uint64_t)v;
}

/* ---- the built-in resolver ---- */

struct kind_row {
	const char *kind, *group, *versions, *resource;
	bool namespaced;
};

static const struct kind_row kinds[] = {
	{"Namespace", "", "v1", "namespaces", false},
	{"ConfigMap", "", "v1", "configmaps", true},
	{"Secret", "", "v1", "secrets", true},
	{"Service", "", "v1", "services", true},
	{"ServiceAccount", "", "v1", "serviceaccounts", true},
	{"Pod", "", "v1", "pods", true},
	{"PersistentVolumeClaim", "", "v1", "persistentvolumeclaims", true},
	{"Endpoints", "", "v1", "endpoints", true},
	{"Event", "", "v1", "events", true},
	{"Deployment", "apps", "v1", "deployments", true},
	{"StatefulSet", "apps", "v1", "statefulsets", true},
	{"DaemonSet", "apps", "v1", "daemonsets", true},
	{"ReplicaSet", "apps", "v1", "replicasets", true},
	{"Ingress", "networking.k8s.io", "v1", "ingresses", true},
	{"NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", true},
	{"Role", "rbac.authorization.k8s.io", "v1", "roles", true},
	{"RoleBinding", "rbac.authorization.k8s.io", "v1", "rolebindings", true},
	{"ClusterRole", "rbac.authorization.k8s.io", "v1", "clusterroles", false},
	{"ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "clusterrolebindings",
	 false},
	{"CustomResourceDefinition", "apiextensions.k8s.io", "v1",
	 "customresourcedefinitions", false},
	{"HorizontalPodAutoscaler", "autoscaling", "v1,v2", "horizontalpodautoscalers",
	 true},
	{"PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets", true},
	{"Job", "batch", "v1", "jobs", true},
	{"CronJob", "batch", "v1", "cronjobs", true},
	{"GitRepository", "source.toolkit.fluxcd.io", "v1,v1beta2,v1beta1",
	 "gitrepositories", true},
	{"HelmRepository", "source.toolkit.fluxcd.io", "v1,v1beta2,v1beta1",
	 "helmrepositories", true},
	{"Kustomization", "kustomize.toolkit.fluxcd.io", "v1,v1beta2,v1beta1",
	 "kustomizations", true},
	{"HelmRelease", "helm.toolkit.fluxcd.io", "v2,v2beta2,v2beta1", "helmreleases",
	 true},
	{"Canary", "flagger.app", "v1beta1", "canaries", true},
	{"MetricTemplate", "flagger.app", "v1beta1", "metrictemplates", true},
	{"AlertProvider", "flagger.app", "v1beta1", "alertproviders", true},
};

static bool version_listed(const char *list, const char *v)
{
	size_t n = strlen(v);

	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == n && !strncmp(p, v, n))
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

int ks_builtin_resolve(void *data, const char *api_version, const char *kind,
		       struct ks_gvr *ret, struct co_error *err)
{
	const char *slash = api_version ? strchr(api_version, '/') : NULL;
	char group[128] = "";
	const char *version = slash ? slash + 1 : api_version;
	size_t i, n;

	if (!api_version || !*api_version || !kind || !*kind)
		return co_error_set(err, -EINVAL, "object has no apiVersion or kind");
	if (slash)
		snprintf(group, sizeof(group), "%.*s", (int)(slash - api_version),
			 api_version);
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		if (strcmp(kinds[i].kind, kind) || strcmp(kinds[i].group, group))
			continue;
		if (!version_listed(kinds[i].versions, version))
			break;
		memset(ret, 0, sizeof(*ret));
		snprintf(ret->group, sizeof(ret->group), "%s", group);
		snprintf(ret->version, sizeof(ret->version), "%s", version);
		snprintf(ret->resource, sizeof(ret->resource), "%s", kinds[i].resource);
		ret->namespaced = kinds[i].namespaced;
		return 0;
	}
	if (i < sizeof(kinds) / sizeof(kinds[0]) || !*group || !strchr(group, '.') ||
	    !strcmp(group, "extensions") || strstr(group, ".k8s.io"))
		return co_error_set(err, -ENOENT,
				    "no matches for kind \"%s\" in version \"%s\"", kind,
				    api_version);
	/* a custom resource: lowercase plural, namespaced */
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->group, sizeof(ret->group), "%s", group);
	snprintf(ret->version, sizeof(ret->version), "%s", version);
	n = strlen(kind);
	for (i = 0; i < n && i + 3 < sizeof(ret->resource); i++)
		ret->resource[i] = (char)tolower((unsigned char)kind[i]);
	if (i && ret->resource[i - 1] == 'y')
		snprintf(ret->resource + i - 1, sizeof(ret->resource) - i + 1, "ies");
	else if (i && (ret->resource[i - 1] == 's' || ret->resource[i - 1] == 'x'))
		snprintf(ret->resource + i, sizeof(ret->resource) - i, "es");
	else
		snprintf(ret->resource + i, sizeof(ret->resource) - i, "s");
	ret->namespaced = true;
	return 0;
}

int ks_ctl_resolve(struct ks_controllers *c, const char *api_version, const char *kind,
		   struct ks_gvr *ret, struct co_error *err)
{
	if (!api_version || !*api_version || !kind || !*kind)
		return co_error_set(err, -EINVAL, "object has no apiVersion or kind");
	return c->resolve(c->resolve_data, api_version, kind, ret, err);
}

/* ---- JSON helpers ---- */

json_t *ks_jget(const json_t *obj, const char *path)
{
	const json_t *cur = obj;
	const char *p = path;

	while (cur && *p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		char key[128];

		if (n >= sizeof(key) || !json_is_object(cur))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		cur = json_object_get(cur, key);
		p += n + (dot ? 1 : 0);
	}
	return (json_t *)cur;
}

const char *ks_jstr(const json_t *obj, const char *path)
{
	return json_string_value(ks_jget(obj, path));
}

int64_t ks_jint(const json_t *obj, const char *path, int64_t def)
{
	json_t *v = ks_jget(obj, path);

	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return (int64_t)json_real_value(v);
	return def;
}

bool ks_jbool(const json_t *obj, const char *path, bool def)
{
	json_t *v = ks_jget(obj, path);

	return json_is_boolean(v) ? json_is_true(v) : def;
}

int64_t ks_jduration(const json_t *obj, const char *path, int64_t def)
{
	const char *s = ks_jstr(obj, path);
	int64_t ms;

	if (!s || co_time_parse_duration(s, &ms) < 0)
		return def;
	return ms;
}

const char *ks_now_rfc3339(char *buf, size_t n)
{
	return co_time_rfc3339(co_time_wall_ms(), buf, n);
}

json_t *ks_cond_get(const json_t *obj, const char *type)
{
	json_t *conds = ks_jget(obj, "status.conditions"), *v;
	size_t i;

	json_array_foreach(
		conds, i,
		v) if (!strcmp(ks_or(json_string_value(json_object_get(v, "type")), ""),
			       type)) return v;
	return NULL;
}

bool ks_cond_true(const json_t *obj, const char *type)
{
	json_t *cd = ks_cond_get(obj, type);

	return cd && !strcmp(ks_or(json_string_value(json_object_get(cd, "status")), ""),
			     "True");
}

void ks_cond_set(json_t *status, const char *type, const char *cstatus,
		 const char *reason, const char *message, int64_t generation)
{
	json_t *conds = json_object_get(status, "conditions"), *v, *cd = NULL;
	char now[40];
	size_t i;

	if (!json_is_array(conds)) {
		conds = json_array();
		json_object_set_new(status, "conditions", conds);
	}
	json_array_foreach(
		conds, i,
		v) if (!strcmp(ks_or(json_string_value(json_object_get(v, "type")), ""),
			       type)) cd = v;
	ks_now_rfc3339(now, sizeof(now));
	if (!cd) {
		cd = json_object();
		json_object_set_new(cd, "type", json_string(type));
		json_array_append_new(conds, cd);
	}
	if (strcmp(ks_or(json_string_value(json_object_get(cd, "status")), ""),
		   cstatus) ||
	    !json_object_get(cd, "lastTransitionTime"))
		json_object_set_new(cd, "lastTransitionTime", json_string(now));
	json_object_set_new(cd, "status", json_string(cstatus));
	json_object_set_new(cd, "reason", json_string(reason));
	json_object_set_new(cd, "message", json_string(message ? message : ""));
	if (generation > 0)
		json_object_set_new(cd, "observedGeneration", json_integer(generation));
}

void ks_cond_remove(json_t *status, const char *type)
{
	json_t *conds = json_object_get(status, "conditions"), *v;
	size_t i;

	json_array_foreach(
		conds, i,
		v) if (!strcmp(ks_or(json_string_value(json_object_get(v, "type")), ""),
			       type))
	{
		json_array_remove(conds, i);
		return;
	}
}

int ks_ctl_write_status(struct ks_controllers *c, const struct ks_key *key,
			const json_t *status, const char *manager, struct co_error *err)
{
	json_t *obj = json_object(), *md = json_object();
	int r;

	json_object_set_new(md, "name", json_string(key->name));
	if (key->ns && *key->ns)
		json_object_set_new(md, "namespace", json_string(key->ns));
	json_object_set_new(obj, "metadata", md);
	json_object_set(obj, "status", (json_t *)status);
	r = ks_store_update_status(c->store, key, obj, manager, 0, NULL, err);
	json_decref(obj);
	return r;
}

const char *ks_json_hash(const json_t *v, char *buf, size_t n)
{
	static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
	char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	uint32_t h = 2166136261u;
	size_t i = 0;

	for (const char *p = text ? text : ""; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 16777619u;
	}
	free(text);
	/* decimal digits of the hash mapped onto the alphabet, as Kubernetes'
	 * SafeEncodeString does for pod-template-hash */
	char dec[16];

	snprintf(dec, sizeof(dec), "%u", h);
	for (; dec[i] && i + 1 < n; i++)
		buf[i] = alphabet[(dec[i] - '0') % (sizeof(alphabet) - 1)];
	buf[i] = '\0';
	return buf;
}

char *ks_objkey(const char *ns, const char *name)
{
	return co_asprintf("%s/%s", ns ? ns : "", name ? name : "");
}

/* ---- lifecycle ---- */

int ks_controllers_start(struct ks_controllers **ret, const struct ks_cluster_ctx *ctx,
			 struct co_error *err)
{
	struct ks_controllers *c;
	int r;

	if (!ctx || !ctx->loop || !ctx->store || !ctx->state_dir)
		return co_error_set(err, -EINVAL,
				    "controllers need a loop, store and state dir");
	c = co_calloc(1, sizeof(*c));
	c->refs = 1;
	c->loop = ctx->loop;
	c->store = ctx->store;
	c->ingress_srv = ctx->ingress;
	c->name = co_strdup(ctx->name ? ctx->name : "");
	c->state_dir = co_strdup(ctx->state_dir);
	c->version = co_strdup(ctx->version ? ctx->version : "");
	c->kubectl = co_strdup(ctx->kubectl ? ctx->kubectl : "kubectl");
	c->scale = ctx->time_scale > 0 ? ctx->time_scale : co_time_scale();
	c->overhead = ctx->version_overhead > 0 ? ctx->version_overhead : 1.0;
	c->resolve = ctx->resolve ? ctx->resolve : ks_builtin_resolve;
	c->resolve_data = ctx->resolve ? ctx->resolve_data : NULL;
	c->started_wall_ms = co_time_wall_ms();
	c->metrics = ks_metrics_new();
	r = co_http_client_new(&c->http, c->loop, err);
	if (r < 0)
		goto fail;
	if ((r = ks_apps_start(c, err)) < 0 || (r = ks_traffic_start(c, err)) < 0 ||
	    (r = ks_fsrc_start(c, err)) < 0 || (r = ks_fkust_start(c, err)) < 0 ||
	    (r = ks_fhelm_start(c, err)) < 0 || (r = ks_flagger_start(c, err)) < 0)
		goto fail;
	*ret = c;
	return 0;
fail:
	co_error_prefix(err, "start controllers of '%s'", c->name);
	ks_controllers_stop(c);
	return r;
}

static void http_closed(void *data)
{
	ks_ctl_unref(data);
}

void ks_controllers_stop(struct ks_controllers *c)
{
	if (!c || c->stopped)
		return;
	c->stopped = true;
	ks_flagger_stop(c);
	ks_fhelm_stop(c);
	ks_fkust_stop(c);
	ks_fsrc_stop(c);
	ks_traffic_stop(c);
	ks_apps_stop(c);
	if (c->http) {
		ks_ctl_ref(c);
		co_http_client_close(c->http, http_closed, c);
		c->http = NULL;
	}
	ks_ctl_unref(c);
}

void ks_controllers_set_version_overhead(struct ks_controllers *c, double factor)
{
	c->overhead = factor > 0 ? factor : 1.0;
}

double ks_controllers_version_overhead(const struct ks_controllers *c)
{
	return c->overhead;
}

void ks_controllers_set_ingress_down(struct ks_controllers *c, bool down)
{
	c->ingress_down = down;
}

bool ks_controllers_ingress_down(const struct ks_controllers *c)
{
	return c->ingress_down;
}
