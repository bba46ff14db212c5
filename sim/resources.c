/*
 * The API-resource table and per-cluster registry (contract in resources.h).
 *
 * The built-in table is plain data: one row per (group, version, kind), with the minor
 * versions between which Kubernetes served that apiVersion, taken from the upstream
 * deprecation guide. The registry filters the table by the cluster's minor version
 * once at creation and appends the kinds of applied CRDs; lookups are linear over a
 * few dozen rows, which costs less than hashing would for this size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "sim/resources.h"

#define VERBS_ALL "create,delete,deletecollection,get,list,patch,update,watch"
#define VERBS_NS "create,delete,get,list,patch,update,watch"

/* group, version, kind, plural, singular, short names, namespaced, status, verbs,
 * added, removed */
const struct ks_resource ks_builtin_resources[] = {
	{ "", "v1", "Namespace", "namespaces", "namespace", "ns", false, true, VERBS_NS, 0, 0 },
	{ "", "v1", "ConfigMap", "configmaps", "configmap", "cm", true, false, VERBS_ALL, 0, 0 },
	{ "", "v1", "Secret", "secrets", "secret", "", true, false, VERBS_ALL, 0, 0 },
	{ "", "v1", "Service", "services", "service", "svc", true, true, VERBS_NS, 0, 0 },
	{ "", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", "sa", true, false,
	  VERBS_ALL, 0, 0 },
	{ "", "v1", "Pod", "pods", "pod", "po", true, true, VERBS_ALL, 0, 0 },
	{ "", "v1", "Event", "events", "event", "ev", true, false, VERBS_ALL, 0, 0 },
	{ "", "v1", "Endpoints", "endpoints", "endpoints", "ep", true, false, VERBS_ALL, 0, 0 },
	{ "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
	  "pvc", true, true, VERBS_ALL, 0, 0 },
	{ "", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", "pv", false,
	  true, VERBS_ALL, 0, 0 },
	{ "", "v1", "Node", "nodes", "node", "no", false, true, VERBS_ALL, 0, 0 },
	{ "", "v1", "LimitRange", "limitranges", "limitrange", "limits", true, false, VERBS_ALL,
	  0, 0 },
	{ "", "v1", "ResourceQuota", "resourcequotas", "resourcequota", "quota", true, true,
	  VERBS_ALL, 0, 0 },

	{ "apps", "v1", "Deployment", "deployments", "deployment", "deploy", true, true,
	  VERBS_ALL, 0, 0 },
	{ "apps", "v1", "ReplicaSet", "replicasets", "replicaset", "rs", true, true, VERBS_ALL,
	  0, 0 },
	{ "apps", "v1", "StatefulSet", "statefulsets", "statefulset", "sts", true, true,
	  VERBS_ALL, 0, 0 },
	{ "apps", "v1", "DaemonSet", "daemonsets", "daemonset", "ds", true, true, VERBS_ALL, 0,
	  0 },

	{ "batch", "v1", "Job", "jobs", "job", "", true, true, VERBS_ALL, 0, 0 },
	{ "batch", "v1", "CronJob", "cronjobs", "cronjob", "cj", true, true, VERBS_ALL, 21, 0 },
	{ "batch", "v1beta1", "CronJob", "cronjobs", "cronjob", "cj", true, true, VERBS_ALL, 0,
	  25 },

	{ "networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", "ing", true, true,
	  VERBS_ALL, 19, 0 },
	{ "networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", "", false,
	  false, VERBS_ALL, 19, 0 },
	{ "networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy",
	  "netpol", true, false, VERBS_ALL, 0, 0 },
	{ "networking.k8s.io", "v1beta1", "Ingress", "ingresses", "ingress", "ing", true, true,
	  VERBS_ALL, 0, 22 },
	{ "networking.k8s.io", "v1beta1", "IngressClass", "ingressclasses", "ingressclass", "",
	  false, false, VERBS_ALL, 18, 22 },
	{ "extensions", "v1beta1", "Ingress", "ingresses", "ingress", "ing", true, true,
	  VERBS_ALL, 0, 22 },

	{ "policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget",
	  "pdb", true, true, VERBS_ALL, 21, 0 },
	{ "policy", "v1beta1", "PodDisruptionBudget", "poddisruptionbudgets",
	  "poddisruptionbudget", "pdb", true, true, VERBS_ALL, 0, 25 },
	{ "policy", "v1beta1", "PodSecurityPolicy", "podsecuritypolicies", "podsecuritypolicy",
	  "psp", false, false, VERBS_ALL, 0, 25 },

	{ "rbac.authorization.k8s.io", "v1", "Role", "roles", "role", "", true, false, VERBS_ALL,
	  0, 0 },
	{ "rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", "",
	  true, false, VERBS_ALL, 0, 0 },
	{ "rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", "",
	  false, false, VERBS_ALL, 0, 0 },
	{ "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
	  "clusterrolebinding", "", false, false, VERBS_ALL, 0, 0 },

	{ "autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
	  "horizontalpodautoscaler", "hpa", true, true, VERBS_ALL, 0, 0 },
	{ "autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
	  "horizontalpodautoscaler", "hpa", true, true, VERBS_ALL, 23, 0 },
	{ "autoscaling", "v2beta2", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
	  "horizontalpodautoscaler", "hpa", true, true, VERBS_ALL, 0, 26 },
	{ "autoscaling", "v2beta1", "HorizontalPodAutoscaler", "horizontalpodautoscalers",
	  "horizontalpodautoscaler", "hpa", true, true, VERBS_ALL, 0, 25 },

	{ "apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
	  "customresourcedefinition", "crd,crds", false, true, VERBS_ALL, 0, 0 },
	{ "coordination.k8s.io", "v1", "Lease", "leases", "lease", "", true, false, VERBS_ALL, 0,
	  0 },
	{ "storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", "sc", false,
	  false, VERBS_ALL, 0, 0 },
	{ "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", "", true,
	  false, VERBS_ALL, 21, 0 },
	{ "discovery.k8s.io", "v1beta1", "EndpointSlice", "endpointslices", "endpointslice", "",
	  true, false, VERBS_ALL, 0, 25 },
	{ "admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
	  "validatingwebhookconfigurations", "validatingwebhookconfiguration", "", false, false,
	  VERBS_ALL, 0, 0 },
	{ "admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
	  "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", "", false, false,
	  VERBS_ALL, 0, 0 },

	{ "flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", "",
	  false, true, VERBS_ALL, 29, 0 },
	{ "flowcontrol.apiserver.k8s.io", "v1", "PriorityLevelConfiguration",
	  "prioritylevelconfigurations", "prioritylevelconfiguration", "", false, true,
	  VERBS_ALL, 29, 0 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta3", "FlowSchema", "flowschemas", "flowschema",
	  "", false, true, VERBS_ALL, 26, 32 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta3", "PriorityLevelConfiguration",
	  "prioritylevelconfigurations", "prioritylevelconfiguration", "", false, true,
	  VERBS_ALL, 26, 32 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta2", "FlowSchema", "flowschemas", "flowschema",
	  "", false, true, VERBS_ALL, 23, 29 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta2", "PriorityLevelConfiguration",
	  "prioritylevelconfigurations", "prioritylevelconfiguration", "", false, true,
	  VERBS_ALL, 23, 29 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta1", "FlowSchema", "flowschemas", "flowschema",
	  "", false, true, VERBS_ALL, 20, 26 },
	{ "flowcontrol.apiserver.k8s.io", "v1beta1", "PriorityLevelConfiguration",
	  "prioritylevelconfigurations", "prioritylevelconfiguration", "", false, true,
	  VERBS_ALL, 20, 26 },

	/* Flux and Flagger, as if their CRDs were installed */
	{ "source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories", "gitrepository",
	  "gitrepo", true, true, VERBS_ALL, 0, 0 },
	{ "source.toolkit.fluxcd.io", "v1beta2", "GitRepository", "gitrepositories",
	  "gitrepository", "gitrepo", true, true, VERBS_ALL, 0, 0 },
	{ "source.toolkit.fluxcd.io", "v1", "HelmRepository", "helmrepositories",
	  "helmrepository", "helmrepo", true, true, VERBS_ALL, 0, 0 },
	{ "source.toolkit.fluxcd.io", "v1beta2", "HelmRepository", "helmrepositories",
	  "helmrepository", "helmrepo", true, true, VERBS_ALL, 0, 0 },
	{ "kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations",
	  "kustomization", "ks", true, true, VERBS_ALL, 0, 0 },
	{ "kustomize.toolkit.fluxcd.io", "v1beta2", "Kustomization", "kustomizations",
	  "kustomization", "ks", true, true, VERBS_ALL, 0, 0 },
	{ "kustomize.toolkit.fluxcd.io", "v1beta1", "Kustomization", "kustomizations",
	  "kustomization", "ks", true, true, VERBS_ALL, 0, 0 },
	{ "helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases", "helmrelease", "hr",
	  true, true, VERBS_ALL, 0, 0 },
	{ "helm.toolkit.fluxcd.io", "v2beta1", "HelmRelease", "helmreleases", "helmrelease",
	  "hr", true, true, VERBS_ALL, 0, 0 },
	{ "flagger.app", "v1beta1", "Canary", "canaries", "canary", "canary", true, true,
	  VERBS_ALL, 0, 0 },

	{ NULL, NULL, NULL, NULL, NULL, NULL, false, false, NULL, 0, 0 },
};

bool ks_resource_served(const struct ks_resource *r, int minor)
{
	if (r->added_minor && minor < r->added_minor)
		return false;
	if (r->removed_minor && minor >= r->removed_minor)
		return false;
	return true;
}

int ks_version_from_image(const char *image, char *git_version, size_t n, int *ret_major,
			  int *ret_minor, struct co_error *err)
{
	const char *slash = strrchr(image ? image : "", '/');
	const char *name = slash ? slash + 1 : (image ? image : "");
	const char *colon = strchr(name, ':');
	unsigned major, minor, patch;
	int used = 0;
	if (!colon || colon[1] != 'v')
		return co_error_set(err, -EINVAL, "image '%s' has no vMAJOR.MINOR.PATCH tag",
				    image ? image : "");
	char tag[128];
	size_t tlen = strcspn(colon + 1, "@");
	if (tlen >= sizeof(tag))
		return co_error_set(err, -EINVAL, "image '%s': tag too long", image);
	memcpy(tag, colon + 1, tlen);
	tag[tlen] = '\0';
	if (sscanf(tag, "v%u.%u.%u%n", &major, &minor, &patch, &used) != 3 || major == 0 ||
	    major > 9 || minor > 99 || patch > 999 ||
	    (tag[used] && tag[used] != '-' && tag[used] != '+'))
		return co_error_set(err, -EINVAL,
				    "image '%s': tag '%s' is not a Kubernetes version", image,
				    tag);
	for (const char *p = tag + used; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '+' || *p == '.'))
			return co_error_set(err, -EINVAL, "image '%s': bad tag '%s'", image,
					    tag);
	if (tag[used] == '-')
		tag[used] = '+';
	if (strlen(tag) >= n)
		return co_error_set(err, -EINVAL, "image '%s': tag too long", image);
	strcpy(git_version, tag);
	if (ret_major)
		*ret_major = (int)major;
	if (ret_minor)
		*ret_minor = (int)minor;
	return 0;
}

/* "v2beta1" -> major 2, level 1 (beta), sub 1; level 2 = GA, 1 = beta, 0 = alpha;
 * -1 for names that do not follow the pattern (sorted last, alphabetically). */
static int parse_kversion(const char *v, int *major, int *sub)
{
	int used = 0;
	*major = 0;
	*sub = 0;
	if (sscanf(v, "v%d%n", major, &used) != 1 || *major <= 0)
		return -1;
	if (!v[used])
		return 2;
	if (!strncmp(v + used, "beta", 4) && sscanf(v + used + 4, "%d", sub) == 1)
		return 1;
	if (!strncmp(v + used, "alpha", 5) && sscanf(v + used + 5, "%d", sub) == 1)
		return 0;
	return -1;
}

int ks_version_priority_cmp(const char *a, const char *b)
{
	int ma, sa, mb, sb;
	int la = parse_kversion(a, &ma, &sa), lb = parse_kversion(b, &mb, &sb);
	if (la != lb)
		return lb - la;
	if (la < 0)
		return strcmp(a, b);
	if (ma != mb)
		return mb - ma;
	return sb - sa;
}

/* ---- registry ---- */

struct crd_kind {
	struct ks_resource r; /* strings owned */
	char *crd_name;
};

struct ks_registry {
	int minor;
	const struct ks_resource **served; /* built-ins served by this version */
	size_t n_served;
	struct crd_kind **crds;
	size_t n_crds;
};

struct ks_registry *ks_registry_new(int minor)
{
	struct ks_registry *reg = co_calloc(1, sizeof(*reg));
	size_t n = 0;
	reg->minor = minor;
	while (ks_builtin_resources[n].kind)
		n++;
	reg->served = co_calloc(n + 1, sizeof(*reg->served));
	for (size_t i = 0; i < n; i++)
		if (ks_resource_served(&ks_builtin_resources[i], minor))
			reg->served[reg->n_served++] = &ks_builtin_resources[i];
	return reg;
}

static void crd_kind_free(struct crd_kind *c)
{
	free((char *)c->r.group);
	free((char *)c->r.version);
	free((char *)c->r.kind);
	free((char *)c->r.plural);
	free((char *)c->r.singular);
	free((char *)c->r.short_names);
	free(c->crd_name);
	free(c);
}

void ks_registry_free(struct ks_registry *reg)
{
	if (!reg)
		return;
	for (size_t i = 0; i < reg->n_crds; i++)
		crd_kind_free(reg->crds[i]);
	free(reg->crds);
	free(reg->served);
	free(reg);
}

int ks_registry_minor(const struct ks_registry *reg)
{
	return reg->minor;
}

/* Visit every served resource: built-ins then CRD kinds. */
static const struct ks_resource *nth(const struct ks_registry *reg, size_t i)
{
	if (i < reg->n_served)
		return reg->served[i];
	i -= reg->n_served;
	return i < reg->n_crds ? &reg->crds[i]->r : NULL;
}

const struct ks_resource *ks_registry_find(const struct ks_registry *reg,
					   const char *group, const char *version,
					   const char *plural)
{
	const struct ks_resource *r;
	group = group ? group : "";
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++)
		if (!strcmp(r->plural, plural) && !strcmp(r->version, version) &&
		    !strcmp(r->group, group))
			return r;
	return NULL;
}

static void split_api_version(const char *api_version, char *group, size_t n,
			      const char **ret_version)
{
	const char *slash = strchr(api_version, '/');
	if (!slash) {
		group[0] = '\0';
		*ret_version = api_version;
		return;
	}
	size_t len = (size_t)(slash - api_version);
	if (len >= n)
		len = n - 1;
	memcpy(group, api_version, len);
	group[len] = '\0';
	*ret_version = slash + 1;
}

const struct ks_resource *ks_registry_find_kind(const struct ks_registry *reg,
						const char *api_version, const char *kind)
{
	char group[256];
	const char *version;
	const struct ks_resource *r;
	if (!api_version || !kind)
		return NULL;
	split_api_version(api_version, group, sizeof(group), &version);
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++)
		if (!strcmp(r->kind, kind) && !strcmp(r->version, version) &&
		    !strcmp(r->group, group))
			return r;
	return NULL;
}

const struct ks_resource *ks_registry_find_any(const struct ks_registry *reg,
					       const char *group, const char *plural)
{
	const struct ks_resource *r;
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++)
		if (!strcmp(r->plural, plural) && !strcmp(r->group, group ? group : ""))
			return r;
	for (size_t i = 0; ks_builtin_resources[i].kind; i++) {
		r = &ks_builtin_resources[i];
		if (!strcmp(r->plural, plural) && !strcmp(r->group, group ? group : ""))
			return r;
	}
	return NULL;
}

bool ks_registry_unserved(const struct ks_registry *reg, const char *group,
			  const char *version)
{
	group = group ? group : "";
	for (size_t i = 0; ks_builtin_resources[i].kind; i++) {
		const struct ks_resource *r = &ks_builtin_resources[i];
		if (!strcmp(r->group, group) && !strcmp(r->version, version) &&
		    !ks_resource_served(r, reg->minor))
			return true;
	}
	return false;
}

static bool builtin_group_plural(const char *group, const char *plural)
{
	for (size_t i = 0; ks_builtin_resources[i].kind; i++)
		if (!strcmp(ks_builtin_resources[i].group, group) &&
		    !strcmp(ks_builtin_resources[i].plural, plural))
			return true;
	return false;
}

int ks_registry_add_crd(struct ks_registry *reg, const json_t *crd, struct co_error *err)
{
	json_t *spec = json_object_get(crd, "spec");
	json_t *names = json_object_get(spec, "names");
	const char *name = json_string_value(
		json_object_get(json_object_get(crd, "metadata"), "name"));
	const char *group = json_string_value(json_object_get(spec, "group"));
	const char *plural = json_string_value(json_object_get(names, "plural"));
	const char *kind = json_string_value(json_object_get(names, "kind"));
	const char *singular = json_string_value(json_object_get(names, "singular"));
	const char *scope = json_string_value(json_object_get(spec, "scope"));
	json_t *versions = json_object_get(spec, "versions");

	if (!name || !group || !group[0] || !plural || !kind || !json_is_array(versions) ||
	    json_array_size(versions) == 0)
		return co_error_set(err, -EINVAL,
				    "customresourcedefinition '%s': spec.group, spec.names "
				    "(plural, kind) and spec.versions are required",
				    name ? name : "");
	char *want = co_asprintf("%s.%s", plural, group);
	bool name_ok = !strcmp(want, name);
	free(want);
	if (!name_ok)
		return co_error_set(err, -EINVAL,
				    "customresourcedefinition '%s': metadata.name must be "
				    "spec.names.plural+\".\"+spec.group", name);
	if (scope && strcmp(scope, "Namespaced") && strcmp(scope, "Cluster"))
		return co_error_set(err, -EINVAL,
				    "customresourcedefinition '%s': spec.scope must be "
				    "Namespaced or Cluster", name);
	if (builtin_group_plural(group, plural))
		return 0;
	ks_registry_remove_crd(reg, name);

	struct co_buf sn = CO_BUF_INIT;
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(names, "shortNames"), i, v) {
		if (!json_is_string(v))
			continue;
		if (sn.len)
			co_buf_putc(&sn, ',');
		co_buf_puts(&sn, json_string_value(v));
	}
	json_array_foreach(versions, i, v) {
		const char *vname = json_string_value(json_object_get(v, "name"));
		json_t *served = json_object_get(v, "served");
		if (!vname || (served && !json_is_true(served)))
			continue;
		struct crd_kind *c = co_calloc(1, sizeof(*c));
		c->r.group = co_strdup(group);
		c->r.version = co_strdup(vname);
		c->r.kind = co_strdup(kind);
		c->r.plural = co_strdup(plural);
		if (singular && singular[0])
			c->r.singular = co_strdup(singular);
		else {
			char *low = co_strdup(kind);
			for (char *p = low; *p; p++)
				if (*p >= 'A' && *p <= 'Z')
					*p = (char)(*p - 'A' + 'a');
			c->r.singular = low;
		}
		c->r.short_names = co_strdup(co_buf_cstr(&sn));
		c->r.namespaced = !scope || !strcmp(scope, "Namespaced");
		c->r.has_status = json_object_get(json_object_get(v, "subresources"),
						  "status") != NULL;
		c->r.verbs = VERBS_ALL;
		c->crd_name = co_strdup(name);
		reg->crds = co_realloc(reg->crds, (reg->n_crds + 1) * sizeof(*reg->crds));
		reg->crds[reg->n_crds++] = c;
	}
	co_buf_release(&sn);
	return 0;
}

void ks_registry_remove_crd(struct ks_registry *reg, const char *name)
{
	size_t out = 0;
	for (size_t i = 0; i < reg->n_crds; i++) {
		if (!strcmp(reg->crds[i]->crd_name, name))
			crd_kind_free(reg->crds[i]);
		else
			reg->crds[out++] = reg->crds[i];
	}
	reg->n_crds = out;
}

/* ---- discovery ---- */

json_t *ks_registry_api_versions(const struct ks_registry *reg, const char *server_addr)
{
	return json_pack("{s:s, s:[s], s:[{s:s, s:s}]}", "kind", "APIVersions", "versions",
			 "v1", "serverAddressByClientCIDRs", "clientCIDR", "0.0.0.0/0",
			 "serverAddress", server_addr ? server_addr : "127.0.0.1");
}

/* Served versions of group, in priority order (array of strings). */
static json_t *group_versions(const struct ks_registry *reg, const char *group)
{
	json_t *vs = json_array();
	const struct ks_resource *r;
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++) {
		if (strcmp(r->group, group))
			continue;
		size_t j, at = json_array_size(vs);
		json_t *v;
		bool dup = false;
		json_array_foreach(vs, j, v) {
			if (!strcmp(json_string_value(v), r->version))
				dup = true;
		}
		if (dup)
			continue;
		json_array_foreach(vs, j, v) {
			if (ks_version_priority_cmp(r->version, json_string_value(v)) < 0) {
				at = j;
				break;
			}
		}
		json_array_insert_new(vs, at, json_string(r->version));
	}
	return vs;
}

static json_t *group_doc(const struct ks_registry *reg, const char *group)
{
	json_t *vs = group_versions(reg, group);
	if (json_array_size(vs) == 0) {
		json_decref(vs);
		return NULL;
	}
	json_t *list = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(vs, i, v) {
		char *gv = co_asprintf("%s/%s", group, json_string_value(v));
		json_array_append_new(list, json_pack("{s:s, s:O}", "groupVersion", gv,
						      "version", v));
		free(gv);
	}
	json_t *pref = json_deep_copy(json_array_get(list, 0));
	json_decref(vs);
	return json_pack("{s:s, s:o, s:o}", "name", group, "versions", list,
			 "preferredVersion", pref);
}

json_t *ks_registry_group(const struct ks_registry *reg, const char *group)
{
	json_t *g = group_doc(reg, group);
	if (!g)
		return NULL;
	json_object_set_new(g, "kind", json_string("APIGroup"));
	json_object_set_new(g, "apiVersion", json_string("v1"));
	return g;
}

json_t *ks_registry_group_list(const struct ks_registry *reg)
{
	json_t *groups = json_array();
	json_t *seen = json_object();
	const struct ks_resource *r;
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++) {
		if (!r->group[0] || json_object_get(seen, r->group))
			continue;
		json_object_set_new(seen, r->group, json_true());
		json_t *g = group_doc(reg, r->group);
		if (g)
			json_array_append_new(groups, g);
	}
	json_decref(seen);
	return json_pack("{s:s, s:s, s:o}", "kind", "APIGroupList", "apiVersion", "v1",
			 "groups", groups);
}

static json_t *split_list(const char *csv)
{
	json_t *arr = json_array();
	const char *p = csv;
	while (p && *p) {
		size_t n = strcspn(p, ",");
		char *s = co_strndup(p, n);
		json_array_append_new(arr, json_string(s));
		free(s);
		p += n;
		if (*p == ',')
			p++;
	}
	return arr;
}

json_t *ks_registry_resource_list(const struct ks_registry *reg, const char *group,
				  const char *version)
{
	json_t *res = json_array();
	const struct ks_resource *r;
	group = group ? group : "";
	for (size_t i = 0; (r = nth(reg, i)) != NULL; i++) {
		if (strcmp(r->group, group) || strcmp(r->version, version))
			continue;
		json_t *e = json_pack("{s:s, s:s, s:b, s:s, s:o}", "name", r->plural,
				      "singularName", r->singular, "namespaced", r->namespaced,
				      "kind", r->kind, "verbs", split_list(r->verbs));
		if (r->short_names[0])
			json_object_set_new(e, "shortNames", split_list(r->short_names));
		if (!strcmp(r->group, "apps") && !strcmp(r->plural, "deployments"))
			json_object_set_new(e, "categories", json_pack("[s]", "all"));
		else if (!r->group[0] && (!strcmp(r->plural, "pods") ||
					  !strcmp(r->plural, "services")))
			json_object_set_new(e, "categories", json_pack("[s]", "all"));
		json_array_append_new(res, e);
		if (r->has_status) {
			char *sub = co_asprintf("%s/status", r->plural);
			json_array_append_new(res, json_pack(
				"{s:s, s:s, s:b, s:s, s:[sss]}", "name", sub, "singularName", "",
				"namespaced", r->namespaced, "kind", r->kind, "verbs", "get",
				"patch", "update"));
			free(sub);
		}
	}
	if (json_array_size(res) == 0) {
		json_decref(res);
		return NULL;
	}
	char *gv = group[0] ? co_asprintf("%s/%s", group, version) : co_strdup(version);
	json_t *doc = json_pack("{s:s, s:s, s:s, s:o}", "kind", "APIResourceList",
				"apiVersion", "v1", "groupVersion", gv, "resources", res);
	free(gv);
	return doc;
}
