/*
 * Tests for the Flux helpers: post-build substitution (defaults, escapes, strict mode),
 * Kustomization path cleaning, the directory walk and generated kustomization used
 * when a path has no kustomization file, and inventory ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "sim/flux-util.h"

static void subst_ok(const json_t *vars, const char *in, const char *want)
{
	struct co_error err = CO_ERROR_INIT;
	char *out = NULL;

	assert_int_equal(ks_flux_subst(&out, in, vars, false, &err), 0);
	assert_string_equal(out, want);
	free(out);
}

static void test_subst(void **state)
{
	json_t *vars = json_pack("{s:s, s:s, s:s}", "CLUSTER", "cluster1", "EMPTY", "",
				 "replicas", "3");
	struct co_error err = CO_ERROR_INIT;
	char *out = NULL;

	subst_ok(vars, "name: ${CLUSTER}-x", "name: cluster1-x");
	subst_ok(vars, "r: ${replicas}", "r: 3");
	subst_ok(vars, "${MISSING}|", "|");
	subst_ok(vars, "${MISSING:=west}", "west");
	subst_ok(vars, "${MISSING:-west}", "west");
	subst_ok(vars, "${EMPTY:=d}", "d");
	subst_ok(vars, "${EMPTY=d}", "");
	subst_ok(vars, "${EMPTY-d}", "");
	subst_ok(vars, "${MISSING-d}", "d");
	subst_ok(vars, "${CLUSTER:=d}", "cluster1");
	subst_ok(vars, "$${CLUSTER} and $CLUSTER", "${CLUSTER} and $CLUSTER");
	subst_ok(vars, "cost: $5 ${ not a var", "cost: $5 ${ not a var");
	subst_ok(vars, "${CLUSTER:=a b c}/${EMPTY:-x:y}", "cluster1/x:y");
	assert_int_equal(ks_flux_subst(&out, "${MISSING}", vars, true, &err), -EINVAL);
	assert_string_equal(err.msg, "variable not set (strict mode): \"MISSING\"");
	assert_int_equal(ks_flux_subst(&out, "a: ${CLUSTER", vars, false, &err), -EINVAL);
	assert_int_equal(ks_flux_subst(&out, "${CLUSTER/a/b}", vars, false, &err),
			 -EINVAL);
	assert_true(ks_flux_var_name_ok("_a1"));
	assert_false(ks_flux_var_name_ok("1a"));
	assert_false(ks_flux_var_name_ok("a-b"));
	json_decref(vars);
}

static void clean_ok(const char *in, const char *want)
{
	struct co_error err = CO_ERROR_INIT;
	char *out = NULL;

	assert_int_equal(ks_kpath_clean(&out, in, &err), 0);
	assert_string_equal(out, want);
	free(out);
}

static void test_path_clean(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	char *out = NULL;

	clean_ok("./clusters/staging/northeurope", "clusters/staging/northeurope");
	clean_ok("/apps//x/./y/", "apps/x/y");
	clean_ok("./", "");
	clean_ok("", "");
	clean_ok(NULL, "");
	clean_ok("a/b/../c", "a/c");
	assert_int_equal(ks_kpath_clean(&out, "../etc", &err), -EINVAL);
	assert_int_equal(ks_kpath_clean(&out, "a/../../b", &err), -EINVAL);
	assert_non_null(strstr(err.msg, "outside"));
}

static void sh(const char *cmd)
{
	assert_int_equal(system(cmd), 0);
}

static void test_collect_and_generate(void **state)
{
	char dir[] = "/tmp/ks-kpath-XXXXXX";
	struct co_error err = CO_ERROR_INIT;
	json_t *files = NULL, *kdirs = NULL;
	struct co_buf b = CO_BUF_INIT, cmd = CO_BUF_INIT;

	assert_non_null(mkdtemp(dir));
	co_buf_printf(
		&cmd,
		"cd %s && mkdir -p apps/web base/nested overlay .hidden && "
		"touch b.yaml a.yml README.md apps/web/deploy.yaml base/nested/x.yaml "
		"overlay/kustomization.yaml overlay/p.yaml .hidden/h.yaml",
		dir);
	sh(co_buf_cstr(&cmd));
	assert_null(ks_kpath_kustomization_file(dir));
	co_buf_reset(&cmd);
	co_buf_printf(&cmd, "%s/overlay", dir);
	assert_string_equal(ks_kpath_kustomization_file(co_buf_cstr(&cmd)),
			    "kustomization.yaml");
	assert_int_equal(ks_kpath_collect(dir, &files, &kdirs, &err), 0);
	assert_int_equal(json_array_size(files), 4);
	assert_string_equal(json_string_value(json_array_get(files, 0)), "a.yml");
	assert_string_equal(json_string_value(json_array_get(files, 1)),
			    "apps/web/deploy.yaml");
	assert_string_equal(json_string_value(json_array_get(files, 2)), "b.yaml");
	assert_string_equal(json_string_value(json_array_get(files, 3)),
			    "base/nested/x.yaml");
	assert_int_equal(json_array_size(kdirs), 1);
	assert_string_equal(json_string_value(json_array_get(kdirs, 0)), "overlay");
	ks_kpath_generate(&b, files, kdirs);
	assert_non_null(
		strstr(co_buf_cstr(&b), "kind: Kustomization\nresources:\n- 'a.yml'\n"));
	assert_non_null(strstr(co_buf_cstr(&b), "- 'overlay'\n"));
	json_decref(files);
	json_decref(kdirs);
	co_buf_reset(&cmd);
	co_buf_printf(&cmd, "%s/missing", dir);
	assert_int_equal(ks_kpath_collect(co_buf_cstr(&cmd), &files, &kdirs, &err),
			 -ENOENT);
	co_buf_reset(&cmd);
	co_buf_printf(&cmd, "rm -rf %s", dir);
	sh(co_buf_cstr(&cmd));
	co_buf_release(&cmd);
	co_buf_release(&b);
}

static void test_inventory_id(void **state)
{
	char *id = ks_inventory_id("core", "web", "apps", "Deployment");
	char *parts[4];

	assert_string_equal(id, "core_web_apps_Deployment");
	assert_int_equal(ks_inventory_parse(id, parts), 0);
	assert_string_equal(parts[0], "core");
	assert_string_equal(parts[1], "web");
	assert_string_equal(parts[2], "apps");
	assert_string_equal(parts[3], "Deployment");
	for (int i = 0; i < 4; i++)
		free(parts[i]);
	free(id);
	id = ks_inventory_id("", "core", "", "Namespace");
	assert_string_equal(id, "_core__Namespace");
	assert_int_equal(ks_inventory_parse(id, parts), 0);
	assert_string_equal(parts[0], "");
	assert_string_equal(parts[2], "");
	for (int i = 0; i < 4; i++)
		free(parts[i]);
	free(id);
	assert_int_equal(ks_inventory_parse("a_b_c", parts), -EINVAL);
	assert_int_equal(ks_inventory_parse("a_b_c_d_e", parts), -EINVAL);
	assert_int_equal(ks_inventory_parse("a__c_d", parts), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_subst),
		cmocka_unit_test(test_path_clean),
		cmocka_unit_test(test_collect_and_generate),
		cmocka_unit_test(test_inventory_id),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
