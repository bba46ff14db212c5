/*
 * Tests for the removed-API table and version parsing: removals apply from their
 * release on and not before, replacements are named, unknown or current APIs pass,
 * and malformed versions are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "clients/kube-apis.h"

static struct co_kube_version v(const char *s)
{
	struct co_kube_version ver = {0};

	assert_int_equal(co_kube_version_parse(s, &ver), 0);
	return ver;
}

static void test_version_parse(void **state)
{
	struct co_kube_version ver = {0};

	(void)state;
	ver = v("v1.27.1+k3s1");
	assert_int_equal(ver.major, 1);
	assert_int_equal(ver.minor, 27);
	assert_int_equal(ver.patch, 1);
	ver = v("1.25");
	assert_int_equal(ver.minor, 25);
	assert_int_equal(ver.patch, 0);
	ver = v("v1.29.0-rc.1");
	assert_int_equal(ver.minor, 29);
	assert_int_equal(co_kube_version_parse("v2.1.0", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("latest", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("v1", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("v1.x", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("v1.27.1x", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("", &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse(NULL, &ver), -EINVAL);
	assert_int_equal(co_kube_version_parse("v1.99999999999.0", &ver), -EINVAL);
	/* untouched on failure */
	assert_int_equal(ver.minor, 29);
}

static void test_removals_by_release(void **state)
{
	struct co_kube_version v124 = v("v1.24.9"), v125 = v("v1.25.10+k3s1");
	struct co_kube_version v121 = v("v1.21.0"), v122 = v("v1.22.0");
	struct co_kube_version v128 = v("v1.28.3"), v129 = v("v1.29.2");
	const struct co_kube_removed_api *r;

	(void)state;
	assert_null(co_kube_api_removed("policy/v1beta1", "PodSecurityPolicy", &v124));
	r = co_kube_api_removed("policy/v1beta1", "PodSecurityPolicy", &v125);
	assert_non_null(r);
	assert_int_equal(r->removed_minor, 25);
	assert_string_equal(r->replacement, "Pod Security Admission");

	assert_null(co_kube_api_removed("extensions/v1beta1", "Ingress", &v121));
	r = co_kube_api_removed("networking.k8s.io/v1beta1", "Ingress", &v122);
	assert_non_null(r);
	assert_string_equal(r->replacement, "networking.k8s.io/v1");

	r = co_kube_api_removed("autoscaling/v2beta2", "HorizontalPodAutoscaler", &v128);
	assert_non_null(r);
	assert_int_equal(r->removed_minor, 26);
	assert_string_equal(r->replacement, "autoscaling/v2");
	assert_null(co_kube_api_removed("autoscaling/v2beta2", "HorizontalPodAutoscaler",
					&v125));
	assert_non_null(co_kube_api_removed("autoscaling/v2beta1",
					    "HorizontalPodAutoscaler", &v125));
	assert_non_null(co_kube_api_removed("batch/v1beta1", "CronJob", &v125));
	assert_non_null(
		co_kube_api_removed("policy/v1beta1", "PodDisruptionBudget", &v125));
	assert_non_null(
		co_kube_api_removed("discovery.k8s.io/v1beta1", "EndpointSlice", &v125));
	assert_null(co_kube_api_removed("storage.k8s.io/v1beta1", "CSIStorageCapacity",
					&v125));
	assert_non_null(co_kube_api_removed("storage.k8s.io/v1beta1",
					    "CSIStorageCapacity", &v128));
	assert_null(co_kube_api_removed("flowcontrol.apiserver.k8s.io/v1beta2",
					"FlowSchema", &v128));
	assert_non_null(co_kube_api_removed("flowcontrol.apiserver.k8s.io/v1beta2",
					    "FlowSchema", &v129));
}

static void test_current_apis_pass(void **state)
{
	struct co_kube_version latest = v("v1.32.0");

	(void)state;
	assert_null(co_kube_api_removed("apps/v1", "Deployment", &latest));
	assert_null(co_kube_api_removed("networking.k8s.io/v1", "Ingress", &latest));
	assert_null(co_kube_api_removed("autoscaling/v2", "HorizontalPodAutoscaler",
					&latest));
	assert_null(co_kube_api_removed("flagger.app/v1beta1", "Canary", &latest));
	/* kind matters, not only the group-version */
	assert_null(co_kube_api_removed("policy/v1beta1", "Eviction", &latest));
	assert_null(co_kube_api_removed(NULL, "Deployment", &latest));
	assert_null(co_kube_api_removed("apps/v1", NULL, &latest));
}

static void test_table_is_well_formed(void **state)
{
	const struct co_kube_removed_api *t = co_kube_removed_apis();
	size_t n = 0;

	(void)state;
	for (; t->api_version; t++, n++) {
		assert_non_null(t->kind);
		assert_non_null(t->replacement);
		assert_true(t->removed_minor >= 16 && t->removed_minor <= 40);
		assert_non_null(strchr(t->api_version, '/'));
		/* no duplicate rows */
		for (const struct co_kube_removed_api *u = t + 1; u->api_version; u++)
			assert_false(strcmp(t->api_version, u->api_version) == 0 &&
				     strcmp(t->kind, u->kind) == 0);
	}
	assert_true(n >= 40);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_parse),
		cmocka_unit_test(test_removals_by_release),
		cmocka_unit_test(test_current_apis_pass),
		cmocka_unit_test(test_table_is_well_formed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
