/*
 * Tests for building manifests the way Flux does: plain YAML files recursively, a
 * directory with a kustomization.yaml through `kubectl kustomize` (with objects
 * traced back to the file that defines them), empty documents skipped, errors that
 * name the path, a path outside the repository refused, and cancel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "stages/manifests.h"

static char root[64];

static void put(const char *rel, const char *text)
{
	char *path = co_asprintf("%s/%s", root, rel);
	char *dir = co_strdup(path);
	char *cmd;
	FILE *f;

	*strrchr(dir, '/') = '\0';
	cmd = co_asprintf("mkdir -p '%s'", dir);
	assert_int_equal(system(cmd), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	free(cmd);
	free(dir);
	free(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/co-manifests-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	put("clusters/a/operations.yaml",
	    "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
	    "metadata: {name: operations, namespace: flux-system}\n"
	    "spec: {path: ./operators, sourceRef: {kind: GitRepository, name: "
	    "flux-system}}\n"
	    "---\n# only a comment\n---\n");
	put("clusters/a/nested/extra.yml", "apiVersion: v1\nkind: ConfigMap\n"
					   "metadata: {name: extra, namespace: x}\n");
	put("clusters/a/README.md", "not: yaml: at all: [\n");
	put("clusters/a/app/kustomization.yaml",
	    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	    "namespace: team\nresources: [psp.yaml, deploy.yaml]\n");
	put("clusters/a/app/psp.yaml",
	    "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\n"
	    "metadata: {name: restricted}\nspec: {privileged: false}\n");
	put("clusters/a/app/deploy.yaml",
	    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
	    "spec: {selector: {matchLabels: {app: web}}, template: {metadata: {labels: "
	    "{app: web}}, spec: {containers: [{name: web, image: nginx}]}}}\n");
	/* app/ is built by kustomize; its files must not also be read raw */
	put("broken/kustomization.yaml", "resources: [missing.yaml]\n");
	put("bad/x.yaml", "a: [unclosed\n");
	return 0;
}

static int teardown(void **state)
{
	char *cmd = co_asprintf("rm -rf %s", root);
	int rc;

	(void)state;
	rc = system(cmd);
	free(cmd);
	return rc;
}

struct outcome {
	int calls;
	int status;
	json_t *items;
	char msg[512];
};

static void done_cb(int status, json_t *items, const struct co_error *err, void *data)
{
	struct outcome *o = data;

	o->calls++;
	o->status = status;
	o->items = items ? json_incref(items) : NULL;
	snprintf(o->msg, sizeof(o->msg), "%s", err ? err->msg : "");
}

static void run(const char *path, struct outcome *o, int expect_rc, bool cancel)
{
	uv_loop_t loop;
	struct co_manifests *m = NULL;
	struct co_error err = CO_ERROR_INIT;

	uv_loop_init(&loop);
	assert_int_equal(co_manifests_build(&m, &loop, root, path, done_cb, o, &err),
			 expect_rc);
	if (expect_rc < 0)
		snprintf(o->msg, sizeof(o->msg), "%s", err.msg);
	else if (cancel)
		co_manifests_cancel(m);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static const json_t *find(const json_t *items, const char *kind, const char **ret_source)
{
	size_t i;
	json_t *it;

	json_array_foreach(items, i, it)
	{
		const json_t *obj = json_object_get(it, "object");

		if (strcmp(json_string_value(json_object_get(obj, "kind")), kind) == 0) {
			*ret_source = json_string_value(json_object_get(it, "source"));
			return obj;
		}
	}
	return NULL;
}

static void test_build_like_flux(void **state)
{
	struct outcome o = {0};
	const char *src = NULL;
	const json_t *obj;

	(void)state;
	run("./clusters/a", &o, 0, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, 0);
	assert_int_equal(json_array_size(o.items), 4);
	obj = find(o.items, "Kustomization", &src);
	assert_non_null(obj);
	assert_string_equal(src, "clusters/a/operations.yaml");
	obj = find(o.items, "ConfigMap", &src);
	assert_string_equal(src, "clusters/a/nested/extra.yml");
	/* from kubectl kustomize: namespace set by the kustomization, traced to its file
	 */
	obj = find(o.items, "PodSecurityPolicy", &src);
	assert_non_null(obj);
	assert_string_equal(src, "clusters/a/app/psp.yaml");
	obj = find(o.items, "Deployment", &src);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(obj, "metadata"), "namespace")),
			    "team");
	assert_string_equal(src, "clusters/a/app/deploy.yaml");
	json_decref(o.items);
}

static void test_errors_name_the_path(void **state)
{
	struct outcome o = {0};

	(void)state;
	run("broken", &o, 0, false);
	assert_int_equal(o.calls, 1);
	assert_true(o.status < 0);
	assert_null(o.items);
	assert_non_null(strstr(o.msg, "kubectl kustomize 'broken'"));

	memset(&o, 0, sizeof(o));
	run("bad", &o, 0, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EINVAL);
	assert_non_null(strstr(o.msg, "bad/x.yaml"));

	memset(&o, 0, sizeof(o));
	run("nowhere", &o, -ENOENT, false);
	assert_int_equal(o.calls, 0);
	assert_non_null(strstr(o.msg, "'nowhere' not found"));

	memset(&o, 0, sizeof(o));
	run("clusters/../..", &o, -EINVAL, false);
	assert_int_equal(o.calls, 0);
}

static void test_cancel(void **state)
{
	struct outcome o = {0};

	(void)state;
	run("clusters/a", &o, 0, true);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -ECANCELED);
	assert_null(o.items);
}

static void test_index(void **state)
{
	json_t *idx = co_manifests_index(root);

	(void)state;
	assert_string_equal(json_string_value(json_object_get(
				    idx, "policy/v1beta1|PodSecurityPolicy|restricted")),
			    "clusters/a/app/psp.yaml");
	assert_null(json_object_get(idx, "v1|ConfigMap|missing"));
	json_decref(idx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_like_flux),
		cmocka_unit_test(test_errors_name_the_path),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_index),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
