/*
 * Cluster registry: persistence across opens, merge semantics, roles, removal,
 * kubeconfig files at 0600, rejection of bad names and of a corrupt file, and
 * co_provider_version_from_image.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/fs.h"
#include "providers/provider.h"
#include "providers/registry.h"

struct fixture {
	char dir[64];
	char *state;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/co-registry-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->state = co_asprintf("%s/state", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = co_asprintf("rm -rf '%s'", f->dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(f->state);
	free(f);
	return 0;
}

static void test_put_persists_and_merges(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *r, *r2;
	json_t *fields;
	const json_t *c;
	struct stat st;
	char *path;

	assert_int_equal(co_registry_open(&r, f->state, &err), 0);
	assert_null(co_registry_get(r, "cluster1"));
	assert_int_equal(json_object_size(co_registry_all(r)), 0);

	fields = json_pack("{s:s, s:s, s:s, s:s, s:s}", "provider", "sim", "env", "staging",
			   "location", "northeurope", "version", "v1.25.10+k3s1", "role",
			   "active");
	assert_int_equal(co_registry_put(r, "cluster1", fields, &err), 0);
	json_decref(fields);
	fields = json_pack("{s:s, s:s}", "ingress", "http://127.0.0.1:8080", "name", "evil");
	assert_int_equal(co_registry_put(r, "cluster1", fields, &err), 0);
	json_decref(fields);

	c = co_registry_get(r, "cluster1");
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "name")), "cluster1");
	assert_string_equal(json_string_value(json_object_get(c, "env")), "staging");
	assert_string_equal(json_string_value(json_object_get(c, "ingress")),
			    "http://127.0.0.1:8080");
	assert_non_null(json_object_get(c, "created"));
	assert_non_null(json_object_get(c, "updated"));

	path = co_asprintf("%s/clusters.json", f->state);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	free(path);

	/* a second registry sees the same content */
	assert_int_equal(co_registry_open(&r2, f->state, &err), 0);
	c = co_registry_get(r2, "cluster1");
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "role")), "active");
	assert_string_equal(json_string_value(json_object_get(c, "version")),
			    "v1.25.10+k3s1");

	/* reload picks up another writer's change */
	assert_int_equal(co_registry_set_role(r2, "cluster1", "standby", &err), 0);
	assert_string_equal(json_string_value(json_object_get(co_registry_get(r, "cluster1"),
							      "role")), "active");
	assert_int_equal(co_registry_reload(r, &err), 0);
	assert_string_equal(json_string_value(json_object_get(co_registry_get(r, "cluster1"),
							      "role")), "standby");
	co_registry_free(r2);
	co_registry_free(r);
	co_registry_free(NULL);
}

static void test_roles_and_names(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *r;
	json_t *fields;

	assert_int_equal(co_registry_open(&r, f->state, &err), 0);
	assert_int_equal(co_registry_set_role(r, "missing", "active", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "missing"));
	assert_int_equal(co_registry_put(r, "c1", NULL, &err), 0);
	for (const char *const *role = (const char *const[]){ "active", "candidate", "standby",
							       "retired", NULL };
	     *role; role++) {
		assert_int_equal(co_registry_set_role(r, "c1", *role, &err), 0);
		assert_string_equal(json_string_value(json_object_get(
					    co_registry_get(r, "c1"), "role")), *role);
	}
	assert_int_equal(co_registry_set_role(r, "c1", "primary", &err), -EINVAL);
	fields = json_pack("{s:s}", "role", "boss");
	assert_int_equal(co_registry_put(r, "c1", fields, &err), -EINVAL);
	json_decref(fields);
	assert_string_equal(json_string_value(json_object_get(co_registry_get(r, "c1"),
							      "role")), "retired");

	assert_int_equal(co_registry_put(r, "../etc", NULL, &err), -EINVAL);
	assert_int_equal(co_registry_put(r, "Upper", NULL, &err), -EINVAL);
	assert_int_equal(co_registry_put(r, "-x", NULL, &err), -EINVAL);
	assert_int_equal(co_registry_put(r, "", NULL, &err), -EINVAL);
	assert_int_equal(co_registry_put(r, NULL, NULL, &err), -EINVAL);
	assert_int_equal(json_object_size(co_registry_all(r)), 1);
	co_registry_free(r);
}

static void test_kubeconfig_and_remove(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *r;
	struct co_buf b = CO_BUF_INIT;
	struct stat st;
	char *path = NULL, *want;

	assert_int_equal(co_registry_open(&r, f->state, &err), 0);
	assert_string_equal(co_registry_state_dir(r), f->state);
	assert_int_equal(co_registry_put(r, "c2", NULL, &err), 0);
	assert_int_equal(co_registry_write_kubeconfig(r, "c2", "apiVersion: v1\n", &path,
						      &err), 0);
	want = co_asprintf("%s/clusters/c2/kubeconfig", f->state);
	assert_string_equal(path, want);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(co_fs_read(path, 1024, &b, &err), 0);
	assert_string_equal(co_buf_cstr(&b), "apiVersion: v1\n");
	assert_int_equal(co_registry_write_kubeconfig(r, "c2", "", &path, &err), -EINVAL);
	assert_int_equal(co_registry_write_kubeconfig(r, "a/b", "x", &path, &err), -EINVAL);

	assert_int_equal(co_registry_remove(r, "c2", &err), 0);
	assert_null(co_registry_get(r, "c2"));
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(co_registry_remove(r, "c2", &err), -ENOENT);
	co_registry_free(r);

	assert_int_equal(co_registry_open(&r, f->state, &err), 0);
	assert_null(co_registry_get(r, "c2"));
	co_registry_free(r);
	co_buf_release(&b);
	free(want);
	free(path);
}

static void test_corrupt_file(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *r = NULL;
	char *path = co_asprintf("%s/clusters.json", f->state);

	assert_int_equal(co_fs_write_atomic(path, "{\"clusters\": [", 14, 0600, &err), 0);
	assert_int_equal(co_registry_open(&r, f->state, &err), -EINVAL);
	assert_null(r);
	assert_non_null(strstr(err.msg, "clusters.json"));
	assert_int_equal(co_fs_write_atomic(path, "{\"clusters\": []}", 16, 0600, &err), 0);
	assert_int_equal(co_registry_open(&r, f->state, &err), -EINVAL);
	assert_int_equal(co_fs_write_atomic(path, "{\"clusters\": {\"A/\": {}}}", 24, 0600,
					    &err), 0);
	assert_int_equal(co_registry_open(&r, f->state, &err), -EINVAL);
	free(path);
}

static void test_version_from_image(void **state)
{
	static const char *const cases[][2] = {
		{ "rancher/k3s:v1.27.1-k3s1", "v1.27.1+k3s1" },
		{ "rancher/k3s:v1.25.10-k3s1", "v1.25.10+k3s1" },
		{ "kindest/node:v1.29.2", "v1.29.2" },
		{ "registry.local:5000/k3s:v1.28.3-k3s2", "v1.28.3+k3s2" },
		{ "kindest/node:v1.29.2@sha256:abcd", "v1.29.2" },
		{ "rancher/k3s:latest", NULL },
		{ "rancher/k3s", NULL },
		{ "registry.local:5000/k3s", NULL },
		{ "k3s:v1.2", NULL },
		{ "k3s:v1.2.3x", NULL },
		{ "k3s:v1.2.3-", NULL },
		{ "", NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *v = co_provider_version_from_image(cases[i][0]);

		if (cases[i][1]) {
			assert_non_null(v);
			assert_string_equal(v, cases[i][1]);
		} else {
			if (v)
				fail_msg("'%s' gave '%s'", cases[i][0], v);
		}
		free(v);
	}
	assert_null(co_provider_version_from_image(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_persists_and_merges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_roles_and_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kubeconfig_and_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_file, setup, teardown),
		cmocka_unit_test(test_version_from_image),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
