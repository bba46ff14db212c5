/*
 * ks_resources: the API-resource table of a simulated cluster.
 *
 * A static table describes every built-in kind per group/version: plural, singular,
 * short names, scope, verbs, whether it has a status subresource, and the Kubernetes
 * minor version range in which that apiVersion is served ([added, removed)). Per
 * cluster, a ks_registry combines the table with the cluster's Kubernetes version and
 * with the CustomResourceDefinitions applied to the cluster, and answers the questions
 * the API server asks: is group/version/plural served (and if not, was it removed),
 * what is its kind, and what does discovery list.
 *
 * Storage is version-agnostic per (group, plural): the API server stores a
 * policy/v1 and a policy/v1beta1 PodDisruptionBudget under the same key.
 */
#ifndef KS_RESOURCES_H
#define KS_RESOURCES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

struct ks_resource {
	const char *group;       /* "" = core */
	const char *version;     /* "v1", "v1beta1" */
	const char *kind;        /* "Deployment" */
	const char *plural;      /* "deployments" */
	const char *singular;    /* "deployment" */
	const char *short_names; /* comma-separated: "deploy"; "" for none */
	bool namespaced;
	bool has_status;         /* a "status" subresource is served */
	const char *verbs;       /* comma-separated */
	int added_minor;         /* served from 1.<added_minor>; 0 = always */
	int removed_minor;       /* no longer served from 1.<removed_minor>; 0 = never */
};

/* The built-in table (terminated by an entry with kind NULL). */
extern const struct ks_resource ks_builtin_resources[];

/* Whether r is served by Kubernetes 1.<minor>. */
bool ks_resource_served(const struct ks_resource *r, int minor);

/*
 * Kubernetes version from a node image reference: "rancher/k3s:v1.27.1-k3s1" ->
 * git_version "v1.27.1+k3s1", major 1, minor 27; "kindest/node:v1.29.2" -> "v1.29.2".
 * A digest suffix ("@sha256:...") is ignored. -EINVAL (err filled) when the tag is not
 * a "vMAJOR.MINOR.PATCH[-extra]" version; outputs untouched then.
 */
int ks_version_from_image(const char *image, char *git_version, size_t n, int *ret_major,
			  int *ret_minor, struct co_error *err);

/* Kubernetes' version priority ordering for "v1" / "v2beta1" / "v1alpha1": negative
 * when a sorts before b (a is preferred). */
int ks_version_priority_cmp(const char *a, const char *b);

struct ks_registry;

/* A registry for Kubernetes 1.<minor>. Free with ks_registry_free() (takes NULL). */
struct ks_registry *ks_registry_new(int minor);
void ks_registry_free(struct ks_registry *reg);

int ks_registry_minor(const struct ks_registry *reg);

/*
 * Add (or replace) the kinds a CustomResourceDefinition object defines (its served
 * versions). -EINVAL with err for a CRD without group/names/versions, or whose
 * metadata.name is not "<plural>.<group>". Returns 0 and changes nothing for a CRD
 * whose group/plural is built in (Flux and Flagger kinds are built in already).
 */
int ks_registry_add_crd(struct ks_registry *reg, const json_t *crd, struct co_error *err);
/* Remove the kinds of the CRD named name ("<plural>.<group>"); no-op if unknown. */
void ks_registry_remove_crd(struct ks_registry *reg, const char *name);

/* Served resource for group/version/plural (plural may also be a "plural/status"
 * request: pass the plural only), or NULL. Borrowed until the registry changes. */
const struct ks_resource *ks_registry_find(const struct ks_registry *reg,
					   const char *group, const char *version,
					   const char *plural);
/* Served resource for an apiVersion ("apps/v1", "v1") and kind, or NULL. */
const struct ks_resource *ks_registry_find_kind(const struct ks_registry *reg,
						const char *api_version, const char *kind);
/* Any resource of this group and plural (any version), to map a key to a kind. */
const struct ks_resource *ks_registry_find_any(const struct ks_registry *reg,
					       const char *group, const char *plural);
/* Whether group/version exists in the table but is not served by this version
 * (removed, or not yet added): a request for it gets a 404 like a real server. */
bool ks_registry_unserved(const struct ks_registry *reg, const char *group,
			  const char *version);

/* Discovery documents (new references): /api (APIVersions), /apis (APIGroupList),
 * /apis/{group} (APIGroup, NULL if not served) and the APIResourceList of
 * group/version (NULL if not served; group "" is /api/v1). */
json_t *ks_registry_api_versions(const struct ks_registry *reg, const char *server_addr);
json_t *ks_registry_group_list(const struct ks_registry *reg);
json_t *ks_registry_group(const struct ks_registry *reg, const char *group);
json_t *ks_registry_resource_list(const struct ks_registry *reg, const char *group,
				  const char *version);

#endif
