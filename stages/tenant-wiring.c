/*
 * Tenant wiring helpers, see tenant-wiring.h. Pure: JSON in, JSON out, so the rules
 * (what counts as a tenant, what a new tenant's wiring looks like) are unit tested
 * without git or a cluster. The generated wiring mirrors tenants/base/core of the
 * embedded fleet, so a tenant added by cutover looks like one a person wrote.
 */
#include "stages/tenant-wiring.h"
#include "base/buf.h"
#include "stages/common.h"

#include <stdlib.h>
#include <string.h>

static const json_t *obj_of(const json_t *item)
{
	const json_t *o = json_object_get(item, "object");

	return o ? o : item;
}

static const char *str_at(const json_t *o, const char *a, const char *b)
{
	const json_t *v = json_object_get(o, a);

	return json_string_value(b ? json_object_get(v, b) : v);
}

json_t *co_tenants_from_objects(const json_t *items)
{
	json_t *out = json_array();
	const json_t *item;
	size_t i;

	json_array_foreach(items, i, item)
	{
		const json_t *o = obj_of(item), *meta = json_object_get(o, "metadata");
		const char *av = str_at(o, "apiVersion", NULL);
		const char *kind = str_at(o, "kind", NULL);
		const char *ns = str_at(meta, "namespace", NULL);
		const char *name = str_at(meta, "name", NULL);
		const char *label = str_at(json_object_get(meta, "labels"),
					   "toolkit.fluxcd.io/tenant", NULL);
		const json_t *src =
			json_object_get(json_object_get(o, "spec"), "sourceRef");
		const char *src_name = str_at(src, "name", NULL);
		const char *src_ns = str_at(src, "namespace", NULL);
		const json_t *repo = NULL, *it2;
		size_t j;
		json_t *t;

		if (!av || !kind || !name || !ns || !*ns ||
		    strncmp(av, "kustomize.toolkit.fluxcd.io/", 28) != 0 ||
		    strcmp(kind, "Kustomization") != 0 || strcmp(ns, "flux-system") == 0)
			continue;
		if (!src_ns || !*src_ns)
			src_ns = ns;
		json_array_foreach(items, j, it2)
		{
			const json_t *r = obj_of(it2),
				     *rm = json_object_get(r, "metadata");
			const char *rav = str_at(r, "apiVersion", NULL);

			if (rav && strncmp(rav, "source.toolkit.fluxcd.io/", 25) == 0 &&
			    strcmp(str_at(r, "kind", NULL) ? str_at(r, "kind", NULL) : "",
				   "GitRepository") == 0 &&
			    src_name && str_at(rm, "name", NULL) &&
			    strcmp(str_at(rm, "name", NULL), src_name) == 0 &&
			    str_at(rm, "namespace", NULL) &&
			    strcmp(str_at(rm, "namespace", NULL), src_ns) == 0)
				repo = r;
		}
		t = json_pack("{s:s, s:s, s:s++}", "name", label && *label ? label : ns,
			      "namespace", ns, "kustomization", ns, "/", name);
		if (src_name)
			json_object_set_new(t, "gitRepository",
					    json_sprintf("%s/%s", src_ns, src_name));
		if (repo) {
			const json_t *spec = json_object_get(repo, "spec");
			const char *url = str_at(spec, "url", NULL);
			const char *branch =
				str_at(json_object_get(spec, "ref"), "branch", NULL);
			const char *secret =
				str_at(json_object_get(spec, "secretRef"), "name", NULL);

			if (url)
				json_object_set_new(t, "url", json_string(url));
			json_object_set_new(t, "branch",
					    json_string(branch ? branch : "main"));
			if (secret)
				json_object_set_new(t, "secretRef", json_string(secret));
		}
		json_array_append_new(out, t);
	}
	return out;
}

json_t *co_tenants_wiring_refs(const json_t *items, const char *namespace_)
{
	static const char *const kinds[] = {"Namespace",   "ServiceAccount", "Role",
					    "RoleBinding", "ConfigMap",	     "Secret",
					    NULL};
	json_t *out = json_array();
	const json_t *item;
	size_t i;

	json_array_foreach(items, i, item)
	{
		const json_t *o = obj_of(item), *meta = json_object_get(o, "metadata");
		const char *kind = str_at(o, "kind", NULL);
		const char *av = str_at(o, "apiVersion", NULL);
		const char *name = str_at(meta, "name", NULL);
		const char *ns = str_at(meta, "namespace", NULL);
		bool wanted = false;

		if (!kind || !av || !name)
			continue;
		for (size_t k = 0; kinds[k]; k++)
			if (strcmp(kind, kinds[k]) == 0)
				wanted = true;
		if (!wanted)
			continue;
		if (strcmp(kind, "Namespace") == 0) {
			if (strcmp(name, namespace_) != 0)
				continue;
			ns = "";
		} else if (!ns || strcmp(ns, namespace_) != 0) {
			continue;
		}
		json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s}", "apiVersion",
						     av, "kind", kind, "namespace", ns,
						     "name", name));
	}
	return out;
}

/* "tenants/staging/northeurope" -> "../../" (one ".." per component below tenants/). */
static char *ups_to_tenants(const char *overlay_dir)
{
	struct co_buf b;
	const char *p = overlay_dir;
	unsigned parts = 1;

	while (*p == '/' || *p == '.')
		p++;
	for (const char *c = p; *c; c++)
		if (*c == '/' && c[1] && c[1] != '/')
			parts++;
	co_buf_init(&b);
	co_buf_puts(&b, "");
	for (unsigned i = 1; i < parts; i++)
		co_buf_puts(&b, "../");
	return co_buf_detach(&b, NULL);
}

static char *add_resource(const char *text, const char *entry)
{
	struct co_buf b;
	const char *res = text ? strstr(text, "\nresources:") : NULL;

	co_buf_init(&b);
	if (text && strncmp(text, "resources:", 10) == 0)
		res = text - 1;
	if (!text) {
		co_buf_printf(&b,
			      "apiVersion: kustomize.config.k8s.io/v1beta1\n"
			      "kind: Kustomization\n"
			      "resources:\n"
			      "  - %s\n",
			      entry);
	} else if (!res) {
		size_t n = strlen(text);

		co_buf_printf(&b, "%s%sresources:\n  - %s\n", text,
			      n && text[n - 1] != '\n' ? "\n" : "", entry);
	} else {
		const char *eol = strchr(res + 1, '\n');
		size_t head = eol ? (size_t)(eol - text) + 1 : strlen(text);

		co_buf_append(&b, text, head);
		if (!eol)
			co_buf_putc(&b, '\n');
		co_buf_printf(&b, "  - %s\n", entry);
		co_buf_puts(&b, text + head);
	}
	return co_buf_detach(&b, NULL);
}

json_t *co_tenants_wiring_changes(const char *tenant, const char *overlay_dir,
				  const char *overlay_text, int base_exists)
{
	json_t *ch;
	char *ups, *entry, *kpath, *ktext, *p;

	if (!co_stages_dns1123_label(tenant))
		return NULL;
	ch = json_object();
	if (!base_exists) {
		p = co_asprintf("tenants/base/%s/kustomization.yaml", tenant);
		json_object_set_new(
			ch, p,
			json_sprintf(
				"# Wiring for tenant \"%s\", written by cutover: its "
				"namespace, the service\n"
				"# account its Flux Kustomization impersonates, RBAC "
				"limited to the namespace,\n"
				"# the cluster variables and the GitRepository + "
				"Kustomization of its repo.\n"
				"apiVersion: kustomize.config.k8s.io/v1beta1\n"
				"kind: Kustomization\n"
				"namespace: %s\n"
				"resources:\n"
				"  - namespace.yaml\n"
				"  - rbac.yaml\n"
				"  - cluster-vars.yaml\n"
				"  - sync.yaml\n",
				tenant, tenant));
		free(p);
		p = co_asprintf("tenants/base/%s/namespace.yaml", tenant);
		json_object_set_new(ch, p,
				    json_sprintf("apiVersion: v1\n"
						 "kind: Namespace\n"
						 "metadata:\n"
						 "  name: %s\n"
						 "  labels:\n"
						 "    toolkit.fluxcd.io/tenant: %s\n",
						 tenant, tenant));
		free(p);
		p = co_asprintf("tenants/base/%s/rbac.yaml", tenant);
		json_object_set_new(
			ch, p,
			json_sprintf("apiVersion: v1\n"
				     "kind: ServiceAccount\n"
				     "metadata:\n"
				     "  name: %s\n"
				     "  labels:\n"
				     "    toolkit.fluxcd.io/tenant: %s\n"
				     "---\n"
				     "apiVersion: rbac.authorization.k8s.io/v1\n"
				     "kind: RoleBinding\n"
				     "metadata:\n"
				     "  name: %s-reconciler\n"
				     "  labels:\n"
				     "    toolkit.fluxcd.io/tenant: %s\n"
				     "roleRef:\n"
				     "  apiGroup: rbac.authorization.k8s.io\n"
				     "  kind: ClusterRole\n"
				     "  name: admin\n"
				     "subjects:\n"
				     "  - kind: ServiceAccount\n"
				     "    name: %s\n"
				     "    namespace: %s\n",
				     tenant, tenant, tenant, tenant, tenant, tenant));
		free(p);
		p = co_asprintf("tenants/base/%s/cluster-vars.yaml", tenant);
		json_object_set_new(
			ch, p,
			json_string("apiVersion: v1\n"
				    "kind: ConfigMap\n"
				    "metadata:\n"
				    "  name: cluster-vars\n"
				    "data:\n"
				    "  CLUSTER_NAME: \"${CLUSTER_NAME}\"\n"
				    "  CLUSTER_ENV: \"${CLUSTER_ENV}\"\n"
				    "  CLUSTER_LOCATION: \"${CLUSTER_LOCATION}\"\n"
				    "  CUTOVER_GATE_URL: \"${CUTOVER_GATE_URL}\"\n"
				    "  INGRESS_URL: \"${INGRESS_URL}\"\n"));
		free(p);
		p = co_asprintf("tenants/base/%s/sync.yaml", tenant);
		json_object_set_new(
			ch, p,
			json_sprintf("apiVersion: source.toolkit.fluxcd.io/v1\n"
				     "kind: GitRepository\n"
				     "metadata:\n"
				     "  name: %s\n"
				     "spec:\n"
				     "  interval: 1m\n"
				     "  url: ${GIT_BASE_URL}/tenant-%s.git\n"
				     "  ref:\n"
				     "    branch: main\n"
				     "---\n"
				     "apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
				     "kind: Kustomization\n"
				     "metadata:\n"
				     "  name: %s\n"
				     "spec:\n"
				     "  interval: 1m\n"
				     "  retryInterval: 30s\n"
				     "  timeout: 5m\n"
				     "  serviceAccountName: %s\n"
				     "  sourceRef:\n"
				     "    kind: GitRepository\n"
				     "    name: %s\n"
				     "  path: ./deploy/${CLUSTER_ENV}\n"
				     "  prune: true\n"
				     "  targetNamespace: %s\n"
				     "  postBuild:\n"
				     "    substituteFrom:\n"
				     "      - kind: ConfigMap\n"
				     "        name: cluster-vars\n",
				     tenant, tenant, tenant, tenant, tenant, tenant));
		free(p);
	}
	ups = ups_to_tenants(overlay_dir);
	entry = co_asprintf("%sbase/%s", ups, tenant);
	kpath = co_asprintf("%s/kustomization.yaml", overlay_dir);
	ktext = add_resource(overlay_text, entry);
	json_object_set_new(ch, kpath, json_string(ktext));
	free(ups);
	free(entry);
	free(kpath);
	free(ktext);
	return ch;
}
