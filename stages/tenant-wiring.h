/*
 * Tenant wiring in the fleet repo, as pure functions the tenant stages share (and the
 * unit tests drive): which tenants an overlay's build defines, and the files that
 * wire a new tenant into a cluster's env/location.
 *
 * A tenant is a Flux Kustomization outside flux-system in the build of
 * tenants/<env>/<location> (the path the cluster's "tenants" Kustomization applies),
 * named by its toolkit.fluxcd.io/tenant label or else its namespace, deployed from
 * the GitRepository its sourceRef names.
 */
#ifndef CO_STAGES_TENANT_WIRING_H
#define CO_STAGES_TENANT_WIRING_H

#include <jansson.h>

/*
 * From built objects ([{"object": {...}}...] as co_manifests_build() gives them, or
 * plain objects), already substituted: [{"name", "namespace", "kustomization",
 * "gitRepository", "url", "branch", "secretRef"?}...] in build order (new array).
 * "kustomization" and "gitRepository" are "namespace/name".
 */
json_t *co_tenants_from_objects(const json_t *items);

/*
 * The objects of a tenant's namespace the wiring creates and the tenant-namespaces
 * stage waits for (Namespace, ServiceAccount, Role, RoleBinding, ConfigMap, Secret),
 * as [{"apiVersion", "kind", "namespace", "name"}...] (new array).
 */
json_t *co_tenants_wiring_refs(const json_t *items, const char *namespace_);

/*
 * The changes that wire tenant into overlay_dir ("tenants/staging/northeurope"):
 * tenants/base/<tenant>/ (namespace, service account, RoleBinding to the namespace's
 * admin, cluster-vars copy, GitRepository ${GIT_BASE_URL}/tenant-<tenant>.git and a
 * Kustomization of ./deploy/${CLUSTER_ENV}) unless base_exists, and overlay_dir's
 * kustomization.yaml with "../../base/<tenant>" added to its resources (created when
 * overlay_text is NULL). Returns {"path": "content"...} for co_git_commit_push (new
 * object), or NULL when tenant is not a DNS-1123 label.
 */
json_t *co_tenants_wiring_changes(const char *tenant, const char *overlay_dir,
				  const char *overlay_text, int base_exists);

#endif
