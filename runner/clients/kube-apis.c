/*
 * The removed-API table, see kube-apis.h. A flat array searched linearly: it has a few
 * dozen rows and preflight looks up each manifest object once.
 */
#include "clients/kube-apis.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct co_kube_removed_api removed[] = {
	/* 1.16 */
	{"extensions/v1beta1", "NetworkPolicy", 16, "networking.k8s.io/v1"},
	{"extensions/v1beta1", "PodSecurityPolicy", 16, "policy/v1beta1"},
	{"extensions/v1beta1", "DaemonSet", 16, "apps/v1"},
	{"extensions/v1beta1", "Deployment", 16, "apps/v1"},
	{"extensions/v1beta1", "ReplicaSet", 16, "apps/v1"},
	{"apps/v1beta1", "Deployment", 16, "apps/v1"},
	{"apps/v1beta1", "StatefulSet", 16, "apps/v1"},
	{"apps/v1beta2", "DaemonSet", 16, "apps/v1"},
	{"apps/v1beta2", "Deployment", 16, "apps/v1"},
	{"apps/v1beta2", "ReplicaSet", 16, "apps/v1"},
	{"apps/v1beta2", "StatefulSet", 16, "apps/v1"},
	/* 1.22 */
	{"admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration", 22,
	 "admissionregistration.k8s.io/v1"},
	{"admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration", 22,
	 "admissionregistration.k8s.io/v1"},
	{"apiextensions.k8s.io/v1beta1", "CustomResourceDefinition", 22,
	 "apiextensions.k8s.io/v1"},
	{"apiregistration.k8s.io/v1beta1", "APIService", 22, "apiregistration.k8s.io/v1"},
	{"authentication.k8s.io/v1beta1", "TokenReview", 22, "authentication.k8s.io/v1"},
	{"authorization.k8s.io/v1beta1", "SubjectAccessReview", 22,
	 "authorization.k8s.io/v1"},
	{"authorization.k8s.io/v1beta1", "LocalSubjectAccessReview", 22,
	 "authorization.k8s.io/v1"},
	{"authorization.k8s.io/v1beta1", "SelfSubjectAccessReview", 22,
	 "authorization.k8s.io/v1"},
	{"certificates.k8s.io/v1beta1", "CertificateSigningRequest", 22,
	 "certificates.k8s.io/v1"},
	{"coordination.k8s.io/v1beta1", "Lease", 22, "coordination.k8s.io/v1"},
	{"extensions/v1beta1", "Ingress", 22, "networking.k8s.io/v1"},
	{"networking.k8s.io/v1beta1", "Ingress", 22, "networking.k8s.io/v1"},
	{"networking.k8s.io/v1beta1", "IngressClass", 22, "networking.k8s.io/v1"},
	{"rbac.authorization.k8s.io/v1beta1", "ClusterRole", 22,
	 "rbac.authorization.k8s.io/v1"},
	{"rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding", 22,
	 "rbac.authorization.k8s.io/v1"},
	{"rbac.authorization.k8s.io/v1beta1", "Role", 22, "rbac.authorization.k8s.io/v1"},
	{"rbac.authorization.k8s.io/v1beta1", "RoleBinding", 22,
	 "rbac.authorization.k8s.io/v1"},
	{"scheduling.k8s.io/v1beta1", "PriorityClass", 22, "scheduling.k8s.io/v1"},
	{"storage.k8s.io/v1beta1", "CSIDriver", 22, "storage.k8s.io/v1"},
	{"storage.k8s.io/v1beta1", "CSINode", 22, "storage.k8s.io/v1"},
	{"storage.k8s.io/v1beta1", "StorageClass", 22, "storage.k8s.io/v1"},
	{"storage.k8s.io/v1beta1", "VolumeAttachment", 22, "storage.k8s.io/v1"},
	/* 1.25 */
	{"batch/v1beta1", "CronJob", 25, "batch/v1"},
	{"discovery.k8s.io/v1beta1", "EndpointSlice", 25, "discovery.k8s.io/v1"},
	{"events.k8s.io/v1beta1", "Event", 25, "events.k8s.io/v1"},
	{"autoscaling/v2beta1", "HorizontalPodAutoscaler", 25, "autoscaling/v2"},
	{"policy/v1beta1", "PodDisruptionBudget", 25, "policy/v1"},
	{"policy/v1beta1", "PodSecurityPolicy", 25, "Pod Security Admission"},
	{"node.k8s.io/v1beta1", "RuntimeClass", 25, "node.k8s.io/v1"},
	/* 1.26 */
	{"flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema", 26,
	 "flowcontrol.apiserver.k8s.io/v1"},
	{"flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration", 26,
	 "flowcontrol.apiserver.k8s.io/v1"},
	{"autoscaling/v2beta2", "HorizontalPodAutoscaler", 26, "autoscaling/v2"},
	/* 1.27 */
	{"storage.k8s.io/v1beta1", "CSIStorageCapacity", 27, "storage.k8s.io/v1"},
	/* 1.29 */
	{"flowcontrol.apiserver.k8s.io/v1beta2", "FlowSchema", 29,
	 "flowcontrol.apiserver.k8s.io/v1"},
	{"flowcontrol.apiserver.k8s.io/v1beta2", "PriorityLevelConfiguration", 29,
	 "flowcontrol.apiserver.k8s.io/v1"},
	/* 1.32 */
	{"flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema", 32,
	 "flowcontrol.apiserver.k8s.io/v1"},
	{"flowcontrol.apiserver.k8s.io/v1beta3", "PriorityLevelConfiguration", 32,
	 "flowcontrol.apiserver.k8s.io/v1"},
	{NULL, NULL, 0, NULL},
};

const struct co_kube_removed_api *co_kube_removed_apis(void)
{
	return removed;
}

static int parse_num(const char **s, int *ret)
{
	char *end;
	long v;

	if (**s < '0' || **s > '9')
		return -EINVAL;
	v = strtol(*s, &end, 10);
	if (v < 0 || v > 10000)
		return -EINVAL;
	*ret = (int)v;
	*s = end;
	return 0;
}

int co_kube_version_parse(const char *s, struct co_kube_version *ret)
{
	struct co_kube_version v = {0};

	if (!s)
		return -EINVAL;
	if (*s == 'v')
		s++;
	if (parse_num(&s, &v.major) < 0 || *s != '.')
		return -EINVAL;
	s++;
	if (parse_num(&s, &v.minor) < 0)
		return -EINVAL;
	if (*s == '.') {
		s++;
		if (parse_num(&s, &v.patch) < 0)
			return -EINVAL;
	}
	/* build metadata or a pre-release may follow: "+k3s1", "-rc.1" */
	if (*s && *s != '+' && *s != '-')
		return -EINVAL;
	if (v.major != 1)
		return -EINVAL;
	*ret = v;
	return 0;
}

const struct co_kube_removed_api *
co_kube_api_removed(const char *api_version, const char *kind,
		    const struct co_kube_version *target)
{
	if (!api_version || !kind || !target)
		return NULL;
	for (const struct co_kube_removed_api *r = removed; r->api_version; r++)
		if (target->minor >= r->removed_minor && strcmp(r->kind, kind) == 0 &&
		    strcmp(r->api_version, api_version) == 0)
			return r;
	return NULL;
}
