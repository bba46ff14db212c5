/*
 * Kubernetes APIs removed by a release: which apiVersion/kind pairs a cluster at a
 * given version no longer serves, and what replaces them. Preflight checks every
 * manifest Flux would apply against this table before a cluster at the target version
 * is built, so a tenant still shipping policy/v1beta1 PodSecurityPolicy is told
 * before anything is created.
 *
 * The table follows the upstream deprecation guide
 * (kubernetes.io/docs/reference/using-api/deprecation-guide/).
 */
#ifndef CO_CLIENTS_KUBE_APIS_H
#define CO_CLIENTS_KUBE_APIS_H

#include <stdbool.h>

struct co_kube_removed_api {
	const char *api_version; /* "policy/v1beta1" */
	const char *kind;	 /* "PodSecurityPolicy" */
	int removed_minor;	 /* removed in v1.<removed_minor> */
	const char *replacement; /* "policy/v1" or advice ("Pod Security Admission") */
};

/* A Kubernetes version: "v1.27.1+k3s1", "1.25", "v1.29.2". */
struct co_kube_version {
	int major;
	int minor;
	int patch;
};

/* Parse a version string; 0 or -EINVAL. Only major 1 is accepted. */
int co_kube_version_parse(const char *s, struct co_kube_version *ret);

/*
 * The table entry when api_version/kind is no longer served at target (its removal
 * release is <= target), else NULL. Entries are static.
 */
const struct co_kube_removed_api *
co_kube_api_removed(const char *api_version, const char *kind,
		    const struct co_kube_version *target);

/* The whole table, terminated by an entry with api_version NULL. */
const struct co_kube_removed_api *co_kube_removed_apis(void);

#endif
