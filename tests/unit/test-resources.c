/*
 * Unit tests for the kubesim API-resource table: image tag -> version, the
 * removed-apiVersion rules, version priority, discovery documents and CRD kinds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "sim/resources.h"

static void test_version_from_image(void **state)
{
	static const struct {
		const char *image, *git;
		int minor;
	} ok[] = {
		{ "rancher/k3s:v1.27.1-k3s1", "v1.27.1+k3s1", 27 },
		{ "kindest/node:v1.29.2", "v1.29.2", 29 },
		{ "localhost:5000/kindest/node:v1.30.0@sha256:abcd", "v1.30.0", 30 },
		{ "docker.io/rancher/k3s:v1.24.17-k3s1", "v1.24.17+k3s1", 24 },
	};
	static const char *const bad[] = { "kindest/node", "kindest/node:latest",
					   "host:5000/node", "k3s:v1.x.2", "k3s:v1.2",
					   "k3s:v1.27.1 x", "" };
	struct co_error err = CO_ERROR_INIT;
	char git[64];
	int major, minor;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_int_equal(ks_version_from_image(ok[i].image, git, sizeof(git), &major,
						       &minor, &err), 0);
		assert_string_equal(git, ok[i].git);
		assert_int_equal(major, 1);
		assert_int_equal(minor, ok[i].minor);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		minor = -7;
		assert_int_equal(ks_version_from_image(bad[i], git, sizeof(git), &major,
						       &minor, &err), -EINVAL);
		assert_int_equal(minor, -7);
	}
}

static void test_removed_apis(void **state)
{
	static const struct {
		const char *group, *version, *plural;
		int last_served; /* last minor that serves it */
	} cases[] = {
		{ "policy", "v1beta1", "podsecuritypolicies", 24 },
		{ "extensions", "v1beta1", "ingresses", 21 },
		{ "networking.k8s.io", "v1beta1", "ingresses", 21 },
		{ "autoscaling", "v2beta2", "horizontalpodautoscalers", 25 },
		{ "autoscaling", "v2beta1", "horizontalpodautoscalers", 24 },
		{ "batch", "v1beta1", "cronjobs", 24 },
		{ "flowcontrol.apiserver.k8s.io", "v1beta2", "flowschemas", 28 },
		{ "flowcontrol.apiserver.k8s.io", "v1beta1", "flowschemas", 25 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ks_registry *old = ks_registry_new(cases[i].last_served);
		struct ks_registry *cur = ks_registry_new(cases[i].last_served + 1);
		assert_non_null(ks_registry_find(old, cases[i].group, cases[i].version,
						 cases[i].plural));
		assert_null(ks_registry_find(cur, cases[i].group, cases[i].version,
					     cases[i].plural));
		assert_true(ks_registry_unserved(cur, cases[i].group, cases[i].version));
		ks_registry_free(old);
		ks_registry_free(cur);
	}
	struct ks_registry *r = ks_registry_new(27);
	assert_true(ks_registry_unserved(r, "policy", "v1beta1"));
	assert_false(ks_registry_unserved(r, "apps", "v1"));
	const struct ks_resource *res = ks_registry_find_kind(r, "apps/v1", "Deployment");
	assert_non_null(res);
	assert_string_equal(res->plural, "deployments");
	assert_true(res->namespaced);
	assert_null(ks_registry_find_kind(r, "policy/v1beta1", "PodSecurityPolicy"));
	res = ks_registry_find_kind(r, "v1", "Namespace");
	assert_non_null(res);
	assert_false(res->namespaced);
	assert_non_null(ks_registry_find_kind(r, "autoscaling/v2", "HorizontalPodAutoscaler"));
	assert_non_null(ks_registry_find_kind(r, "kustomize.toolkit.fluxcd.io/v1beta1",
					      "Kustomization"));
	assert_non_null(ks_registry_find_kind(r, "helm.toolkit.fluxcd.io/v2beta1",
					      "HelmRelease"));
	assert_non_null(ks_registry_find_kind(r, "flagger.app/v1beta1", "Canary"));
	/* autoscaling/v2 arrived in 1.23 */
	struct ks_registry *r22 = ks_registry_new(22);
	assert_null(ks_registry_find(r22, "autoscaling", "v2", "horizontalpodautoscalers"));
	ks_registry_free(r22);
	ks_registry_free(r);
}

static void test_priority(void **state)
{
	assert_true(ks_version_priority_cmp("v1", "v1beta1") < 0);
	assert_true(ks_version_priority_cmp("v2", "v1") < 0);
	assert_true(ks_version_priority_cmp("v1beta2", "v1beta1") < 0);
	assert_true(ks_version_priority_cmp("v1beta1", "v1alpha1") < 0);
	assert_true(ks_version_priority_cmp("v2beta1", "v1") > 0);
	assert_true(ks_version_priority_cmp("v1alpha1", "foo") < 0);
	assert_int_equal(ks_version_priority_cmp("v1", "v1"), 0);
}

static json_t *find_res(json_t *list, const char *name)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(list, "resources"), i, e) {
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return e;
	}
	return NULL;
}

static void test_discovery(void **state)
{
	struct ks_registry *r = ks_registry_new(29);
	json_t *v1 = ks_registry_resource_list(r, "", "v1");
	assert_string_equal(json_string_value(json_object_get(v1, "groupVersion")), "v1");
	json_t *ns = find_res(v1, "namespaces");
	assert_non_null(ns);
	assert_false(json_is_true(json_object_get(ns, "namespaced")));
	assert_string_equal(json_string_value(json_object_get(ns, "kind")), "Namespace");
	assert_string_equal(json_string_value(json_array_get(json_object_get(ns, "shortNames"),
							      0)), "ns");
	assert_non_null(find_res(v1, "namespaces/status"));
	assert_null(find_res(v1, "configmaps/status"));
	json_decref(v1);

	json_t *apps = ks_registry_resource_list(r, "apps", "v1");
	json_t *d = find_res(apps, "deployments");
	assert_string_equal(json_string_value(json_object_get(d, "singularName")), "deployment");
	assert_true(json_array_size(json_object_get(d, "verbs")) >= 7);
	json_decref(apps);
	assert_null(ks_registry_resource_list(r, "policy", "v1beta1"));
	assert_null(ks_registry_resource_list(r, "nope.io", "v1"));

	json_t *groups = ks_registry_group_list(r);
	size_t i;
	json_t *g;
	bool saw_kustomize = false, saw_flowcontrol = false;
	json_array_foreach(json_object_get(groups, "groups"), i, g) {
		const char *name = json_string_value(json_object_get(g, "name"));
		const char *pref = json_string_value(json_object_get(
			json_object_get(g, "preferredVersion"), "version"));
		if (!strcmp(name, "kustomize.toolkit.fluxcd.io")) {
			saw_kustomize = true;
			assert_string_equal(pref, "v1");
			assert_int_equal(json_array_size(json_object_get(g, "versions")), 3);
		}
		if (!strcmp(name, "flowcontrol.apiserver.k8s.io")) {
			saw_flowcontrol = true;
			assert_string_equal(pref, "v1");
			/* v1beta2 is gone at 1.29, v1beta3 still served */
			assert_int_equal(json_array_size(json_object_get(g, "versions")), 2);
		}
		assert_string_not_equal(name, "");
	}
	assert_true(saw_kustomize && saw_flowcontrol);
	json_decref(groups);
	ks_registry_free(r);
}

static void test_crd(void **state)
{
	struct ks_registry *r = ks_registry_new(28);
	struct co_error err = CO_ERROR_INIT;
	json_t *crd = json_loads(
		"{\"apiVersion\":\"apiextensions.k8s.io/v1\",\"kind\":\"CustomResourceDefinition\","
		"\"metadata\":{\"name\":\"widgets.example.com\"},\"spec\":{\"group\":\"example.com\","
		"\"scope\":\"Cluster\",\"names\":{\"plural\":\"widgets\",\"singular\":\"widget\","
		"\"kind\":\"Widget\",\"shortNames\":[\"wd\",\"wdg\"]},\"versions\":["
		"{\"name\":\"v1alpha1\",\"served\":true,\"storage\":false},"
		"{\"name\":\"v1\",\"served\":true,\"storage\":true,\"subresources\":{\"status\":{}}},"
		"{\"name\":\"v0\",\"served\":false}]}}", 0, NULL);
	assert_non_null(crd);
	assert_null(ks_registry_find(r, "example.com", "v1", "widgets"));
	assert_int_equal(ks_registry_add_crd(r, crd, &err), 0);
	const struct ks_resource *w = ks_registry_find(r, "example.com", "v1", "widgets");
	assert_non_null(w);
	assert_false(w->namespaced);
	assert_true(w->has_status);
	assert_string_equal(w->short_names, "wd,wdg");
	assert_non_null(ks_registry_find(r, "example.com", "v1alpha1", "widgets"));
	assert_null(ks_registry_find(r, "example.com", "v0", "widgets"));
	json_t *g = ks_registry_group(r, "example.com");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(g, "preferredVersion"), "version")), "v1");
	json_decref(g);
	/* re-adding replaces, removing drops */
	assert_int_equal(ks_registry_add_crd(r, crd, &err), 0);
	json_t *l = ks_registry_resource_list(r, "example.com", "v1");
	assert_int_equal(json_array_size(json_object_get(l, "resources")), 2);
	json_decref(l);
	ks_registry_remove_crd(r, "widgets.example.com");
	assert_null(ks_registry_find(r, "example.com", "v1", "widgets"));

	/* invalid: name does not match plural.group */
	json_object_set_new(json_object_get(crd, "metadata"), "name", json_string("x.y"));
	assert_int_equal(ks_registry_add_crd(r, crd, &err), -EINVAL);
	json_object_del(json_object_get(crd, "spec"), "versions");
	assert_int_equal(ks_registry_add_crd(r, crd, &err), -EINVAL);
	json_decref(crd);
	ks_registry_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_from_image),
		cmocka_unit_test(test_removed_apis),
		cmocka_unit_test(test_priority),
		cmocka_unit_test(test_discovery),
		cmocka_unit_test(test_crd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
