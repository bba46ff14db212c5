/*
 * Tests for the tenant wiring rules: which tenants a built overlay defines (the
 * Kustomization outside flux-system, its GitRepository, label or namespace as the
 * name), which objects the tenant-namespaces stage waits for, and the files that
 * wire a new tenant (valid YAML, the overlay's resources extended in place or
 * created, the base left alone when it exists, names checked).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/yaml.h"
#include "stages/tenant-wiring.h"

static json_t *load(const char *yaml)
{
	json_t *docs = NULL;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_yaml_load_all(&docs, yaml, strlen(yaml), "test", &err), 0);
	return docs;
}

static const char built[] =
	"apiVersion: v1\n"
	"kind: Namespace\n"
	"metadata: {name: core, labels: {toolkit.fluxcd.io/tenant: core}}\n"
	"---\n"
	"apiVersion: v1\n"
	"kind: ServiceAccount\n"
	"metadata: {name: core, namespace: core}\n"
	"---\n"
	"apiVersion: rbac.authorization.k8s.io/v1\n"
	"kind: RoleBinding\n"
	"metadata: {name: core-reconciler, namespace: core}\n"
	"---\n"
	"apiVersion: v1\n"
	"kind: ConfigMap\n"
	"metadata: {name: cluster-vars, namespace: core}\n"
	"---\n"
	"apiVersion: v1\n"
	"kind: ConfigMap\n"
	"metadata: {name: elsewhere, namespace: other}\n"
	"---\n"
	"apiVersion: source.toolkit.fluxcd.io/v1\n"
	"kind: GitRepository\n"
	"metadata: {name: core, namespace: core}\n"
	"spec:\n"
	"  url: file:///repos/tenant-core.git\n"
	"  ref: {branch: release}\n"
	"  secretRef: {name: core-git}\n"
	"---\n"
	"apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
	"kind: Kustomization\n"
	"metadata: {name: core, namespace: core}\n"
	"spec: {sourceRef: {kind: GitRepository, name: core}, path: ./d}\n"
	"---\n"
	"apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
	"kind: Kustomization\n"
	"metadata: {name: platform, namespace: flux-system}\n"
	"spec: {sourceRef: {kind: GitRepository, name: flux-system}}\n"
	"---\n"
	"apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
	"kind: Kustomization\n"
	"metadata:\n"
	"  name: web\n"
	"  namespace: shop\n"
	"  labels: {toolkit.fluxcd.io/tenant: webshop}\n"
	"spec: {sourceRef: {kind: GitRepository, name: web, namespace: "
	"src}}\n";

static void test_tenants_from_objects(void **state)
{
	json_t *docs = load(built), *ts, *t;

	(void)state;
	ts = co_tenants_from_objects(docs);
	assert_int_equal(json_array_size(ts), 2);
	t = json_array_get(ts, 0);
	assert_string_equal(json_string_value(json_object_get(t, "name")), "core");
	assert_string_equal(json_string_value(json_object_get(t, "kustomization")),
			    "core/core");
	assert_string_equal(json_string_value(json_object_get(t, "gitRepository")),
			    "core/core");
	assert_string_equal(json_string_value(json_object_get(t, "url")),
			    "file:///repos/tenant-core.git");
	assert_string_equal(json_string_value(json_object_get(t, "branch")), "release");
	assert_string_equal(json_string_value(json_object_get(t, "secretRef")),
			    "core-git");
	/* label names the tenant; a source in another namespace without its object */
	t = json_array_get(ts, 1);
	assert_string_equal(json_string_value(json_object_get(t, "name")), "webshop");
	assert_string_equal(json_string_value(json_object_get(t, "namespace")), "shop");
	assert_string_equal(json_string_value(json_object_get(t, "gitRepository")),
			    "src/web");
	assert_null(json_object_get(t, "url"));
	json_decref(ts);

	/* wrapped items as co_manifests_build() gives them */
	{
		json_t *wrapped = json_array(), *o;
		size_t i;

		json_array_foreach(docs, i, o)
			json_array_append_new(wrapped, json_pack("{s:O, s:s}", "object",
								 o, "source", "x.yaml"));
		ts = co_tenants_from_objects(wrapped);
		assert_int_equal(json_array_size(ts), 2);
		json_decref(ts);
		json_decref(wrapped);
	}
	json_decref(docs);
}

static void test_wiring_refs(void **state)
{
	json_t *docs = load(built), *refs;
	char *s;

	(void)state;
	refs = co_tenants_wiring_refs(docs, "core");
	s = json_dumps(refs, JSON_COMPACT);
	assert_string_equal(
		s,
		"[{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"namespace\":\"\","
		"\"name\":\"core\"},{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\","
		"\"namespace\":\"core\",\"name\":\"core\"},{\"apiVersion\":"
		"\"rbac.authorization.k8s.io/v1\",\"kind\":\"RoleBinding\","
		"\"namespace\":\"core\",\"name\":\"core-reconciler\"},{\"apiVersion\":"
		"\"v1\",\"kind\":\"ConfigMap\",\"namespace\":\"core\",\"name\":"
		"\"cluster-vars\"}]");
	free(s);
	json_decref(refs);
	refs = co_tenants_wiring_refs(docs, "nobody");
	assert_int_equal(json_array_size(refs), 0);
	json_decref(refs);
	json_decref(docs);
}

static void test_wiring_changes(void **state)
{
	const char *overlay = "# Tenants of staging clusters in northeurope.\n"
			      "apiVersion: kustomize.config.k8s.io/v1beta1\n"
			      "kind: Kustomization\n"
			      "resources:\n"
			      "  - ../base\n"
			      "labels:\n"
			      "  - pairs: {cutover.io/location: northeurope}\n";
	json_t *ch, *docs, *k;
	const char *key;
	json_t *v;
	size_t nfiles = 0;

	(void)state;
	ch = co_tenants_wiring_changes("shop", "tenants/staging/northeurope", overlay, 0);
	assert_non_null(ch);
	json_object_foreach(ch, key, v)
	{
		json_t *d = load(json_string_value(v));

		assert_true(json_array_size(d) >= 1);
		json_decref(d);
		nfiles++;
	}
	assert_int_equal(nfiles, 6);
	k = json_object_get(ch, "tenants/staging/northeurope/kustomization.yaml");
	docs = load(json_string_value(k));
	{
		json_t *res = json_object_get(json_array_get(docs, 0), "resources");

		assert_int_equal(json_array_size(res), 2);
		assert_string_equal(json_string_value(json_array_get(res, 0)),
				    "../../base/shop");
		assert_string_equal(json_string_value(json_array_get(res, 1)), "../base");
		/* the rest of the file is kept */
		assert_non_null(json_object_get(json_array_get(docs, 0), "labels"));
	}
	json_decref(docs);
	assert_non_null(strstr(
		json_string_value(json_object_get(ch, "tenants/base/shop/sync.yaml")),
		"url: ${GIT_BASE_URL}/tenant-shop.git"));
	assert_non_null(strstr(
		json_string_value(json_object_get(ch, "tenants/base/shop/sync.yaml")),
		"path: ./deploy/${CLUSTER_ENV}"));
	json_decref(ch);

	/* base already there: only the overlay; no overlay yet: created */
	ch = co_tenants_wiring_changes("shop", "tenants/production/westeurope", NULL, 1);
	assert_int_equal(json_object_size(ch), 1);
	docs = load(json_string_value(
		json_object_get(ch, "tenants/production/westeurope/kustomization.yaml")));
	assert_string_equal(
		json_string_value(json_array_get(
			json_object_get(json_array_get(docs, 0), "resources"), 0)),
		"../../base/shop");
	json_decref(docs);
	json_decref(ch);

	/* an overlay without resources gets the list appended */
	ch = co_tenants_wiring_changes("a1", "tenants/x/y", "kind: Kustomization", 1);
	docs = load(
		json_string_value(json_object_get(ch, "tenants/x/y/kustomization.yaml")));
	assert_int_equal(
		json_array_size(json_object_get(json_array_get(docs, 0), "resources")),
		1);
	json_decref(docs);
	json_decref(ch);

	assert_null(co_tenants_wiring_changes("Bad_Name", "tenants/x/y", NULL, 0));
	assert_null(co_tenants_wiring_changes("../etc", "tenants/x/y", NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenants_from_objects),
		cmocka_unit_test(test_wiring_refs),
		cmocka_unit_test(test_wiring_changes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
