/*
 * The Kubernetes client against a real kubesim ($KUBESIM, started here on 127.0.0.1
 * with ephemeral ports): /version, discovery-mapped apply of an array with the
 * namespace ordered first, get/list with a label selector, merge patch, create of an
 * existing object, delete twice, Status errors mapped to codes (NotFound, Conflict,
 * no kind mapping, a removed API, a wrong token), a watch seeing ADDED/MODIFIED/
 * DELETED, and co_kube_free() with calls in flight and from inside a callback.
 * Exit 77 (skipped) when $KUBESIM is not set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "clients/kube.h"
#include "clients/kubeconfig.h"
#include "net/http-client.h"

extern char **environ;

static char g_dir[64];
static char *g_state;
static pid_t g_kubesim;
static uv_loop_t g_loop;
static struct co_http_client *g_http;
static struct co_kube *g_kube;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	struct co_buf cmd = CO_BUF_INIT;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	co_buf_vprintf(&cmd, fmt, ap);
	va_end(ap);
	rc = system(co_buf_cstr(&cmd));
	co_buf_release(&cmd);
	return rc;
}

static int start_kubesim(void)
{
	const char *bin = getenv("KUBESIM");
	char *ks_dir = co_asprintf("%s/kubesim", g_state);
	char *url_file = co_asprintf("%s/kubesim.url", ks_dir);
	char *argv[] = {(char *)bin,   "serve",	       "--state-dir", ks_dir, "--control",
			"127.0.0.1:0", "--time-scale", "0.01",	      NULL};
	int rc;

	co_fs_mkdir_p(ks_dir, 0700);
	rc = posix_spawn(&g_kubesim, bin, NULL, NULL, argv, environ);
	for (int i = 0; rc == 0 && i < 500 && access(url_file, F_OK) != 0; i++)
		usleep(10000);
	if (rc == 0)
		rc = access(url_file, F_OK);
	/* one 1.27 cluster, ready */
	if (rc == 0)
		rc = sh("url=$(cat %s) && curl -sf -X POST -d "
			"'{\"name\":\"k1\",\"image\":\"rancher/k3s:v1.27.1-k3s1\"}' "
			"$url/clusters "
			">/dev/null && for i in $(seq 300); do curl -sf $url/clusters/k1 "
			"| "
			"grep -q '\"ready\": *true' && exit 0; sleep 0.01; done; exit 1",
			url_file);
	free(url_file);
	free(ks_dir);
	return rc;
}

static int group_setup(void **state)
{
	char *kc;
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	strcpy(g_dir, "/tmp/co-kube-it-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	g_state = co_asprintf("%s/state", g_dir);
	if (start_kubesim() != 0)
		return -1;
	uv_loop_init(&g_loop);
	if (co_http_client_new(&g_http, &g_loop, &err) < 0)
		return -1;
	kc = co_asprintf("%s/kubesim/k1/kubeconfig", g_state);
	if (co_kubeconfig_load(&cfg, kc, NULL, &err) < 0 ||
	    co_kube_new(&g_kube, &g_loop, g_http, cfg, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	co_kubeconfig_free(cfg);
	free(kc);
	return 0;
}

static int group_teardown(void **state)
{
	int st;

	(void)state;
	co_kube_free(g_kube);
	co_http_client_close(g_http, NULL, NULL);
	uv_run(&g_loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&g_loop), 0);
	if (g_kubesim > 0) {
		kill(g_kubesim, SIGTERM);
		waitpid(g_kubesim, &st, 0);
	}
	sh("rm -rf '%s'", g_dir);
	free(g_state);
	return 0;
}

/* ---- synchronous wrappers for a readable test ---- */

struct res {
	int calls;
	int status;
	long code;
	char reason[64];
	char msg[512];
	json_t *obj;
};

static void res_cb(struct co_kube_result *r, void *data)
{
	struct res *o = data;

	o->calls++;
	o->status = r->status;
	o->code = r->code;
	snprintf(o->reason, sizeof(o->reason), "%s", r->reason ? r->reason : "");
	snprintf(o->msg, sizeof(o->msg), "%s", r->err.msg);
	o->obj = r->obj ? json_incref(r->obj) : NULL;
}

static void wait_res(struct res *o)
{
	for (int i = 0; o->calls == 0 && i < 100000; i++)
		uv_run(&g_loop, UV_RUN_ONCE);
	assert_int_equal(o->calls, 1);
}

static void res_release(struct res *o)
{
	json_decref(o->obj);
	memset(o, 0, sizeof(*o));
}

static json_t *yaml_obj(const char *json)
{
	json_error_t jerr;
	json_t *o = json_loads(json, 0, &jerr);

	assert_non_null(o);
	return o;
}

static void test_version_and_apply(void **state)
{
	struct res r = {0};
	struct co_error err = CO_ERROR_INIT;
	json_t *objs = json_array();

	(void)state;
	assert_int_equal(co_kube_version(g_kube, res_cb, &r, &err), 0);
	assert_int_equal(r.calls, 0); /* never from inside the call */
	wait_res(&r);
	assert_int_equal(r.status, 0);
	assert_string_equal(json_string_value(json_object_get(r.obj, "gitVersion")),
			    "v1.27.1+k3s1");
	res_release(&r);

	/* the ConfigMaps come first in the array; the Namespace must be applied first */
	json_array_append_new(objs,
			      yaml_obj("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
				       "\"metadata\":{\"name\":\"a\",\"labels\":{\"app\":"
				       "\"x\"}},\"data\":{\"k\":\"1\"}}"));
	json_array_append_new(objs,
			      yaml_obj("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
				       "\"metadata\":{\"name\":\"b\",\"labels\":{\"app\":"
				       "\"y\"}},\"data\":{\"k\":\"2\"}}"));
	json_array_append_new(objs,
			      yaml_obj("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
				       "\"metadata\":{\"name\":\"demo\"}}"));
	assert_int_equal(co_kube_apply_all(g_kube, objs, "demo", res_cb, &r, &err), 0);
	wait_res(&r);
	if (r.status != 0)
		fail_msg("apply_all: %s", r.msg);
	assert_int_equal(json_array_size(r.obj), 3);
	res_release(&r);
	json_decref(objs);
}

static void test_get_list_patch(void **state)
{
	struct co_kube_ref cm = {
		.api_version = "v1", .kind = "ConfigMap", .ns = "demo", .name = "a"};
	struct co_kube_ref all = {.api_version = "v1", .kind = "ConfigMap", .ns = "demo"};
	struct res r = {0};
	struct co_error err = CO_ERROR_INIT;
	json_t *patch = yaml_obj("{\"data\":{\"k\":\"patched\",\"new\":\"v\"}}");

	(void)state;
	assert_int_equal(co_kube_get(g_kube, &cm, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, 0);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(r.obj, "data"), "k")),
		"1");
	res_release(&r);

	assert_int_equal(co_kube_list(g_kube, &all, "app=y", NULL, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, 0);
	assert_int_equal(json_array_size(json_object_get(r.obj, "items")), 1);
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(
				json_array_get(json_object_get(r.obj, "items"), 0),
				"metadata"),
			"name")),
		"b");
	res_release(&r);

	assert_int_equal(co_kube_merge_patch(g_kube, &cm, patch, false, res_cb, &r, &err),
			 0);
	wait_res(&r);
	assert_int_equal(r.status, 0);
	res_release(&r);
	assert_int_equal(co_kube_get(g_kube, &cm, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(r.obj, "data"), "k")),
		"patched");
	res_release(&r);
	json_decref(patch);
}

static void test_errors(void **state)
{
	struct co_kube_ref missing = {
		.api_version = "v1", .kind = "ConfigMap", .ns = "demo", .name = "nope"};
	struct co_kube_ref nokind = {.api_version = "example.com/v1",
				     .kind = "Widget",
				     .ns = "demo",
				     .name = "w"};
	struct res r = {0};
	struct co_error err = CO_ERROR_INIT;
	json_t *dup =
		yaml_obj("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
			 "{\"name\":\"a\",\"namespace\":\"demo\"}}");
	json_t *psp =
		yaml_obj("{\"apiVersion\":\"policy/v1beta1\",\"kind\":"
			 "\"PodSecurityPolicy\",\"metadata\":{\"name\":\"restricted\"}}");

	(void)state;
	assert_int_equal(co_kube_get(g_kube, &missing, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, -ENOENT);
	assert_int_equal(r.code, 404);
	assert_string_equal(r.reason, "NotFound");
	assert_non_null(strstr(r.msg, "nope"));
	res_release(&r);

	assert_int_equal(co_kube_create(g_kube, dup, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, -EEXIST);
	assert_int_equal(r.code, 409);
	assert_string_equal(r.reason, "AlreadyExists");
	res_release(&r);

	assert_int_equal(co_kube_get(g_kube, &nokind, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, -ENOENT);
	assert_non_null(strstr(r.msg, "no matches for kind"));
	res_release(&r);

	/* a 1.27 cluster no longer serves policy/v1beta1 */
	assert_int_equal(co_kube_apply(g_kube, psp, NULL, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_true(r.status < 0);
	assert_false(co_kube_transient(
		&(struct co_kube_result){.status = r.status, .code = r.code}));
	res_release(&r);
	json_decref(dup);
	json_decref(psp);
}

static void test_bad_token(void **state)
{
	struct co_kubeconfig *cfg = NULL;
	struct co_kube *k = NULL;
	struct co_error err = CO_ERROR_INIT;
	struct res r = {0};
	char *kc = co_asprintf("%s/kubesim/k1/kubeconfig", g_state);

	(void)state;
	assert_int_equal(co_kubeconfig_load(&cfg, kc, NULL, &err), 0);
	free(cfg->token);
	cfg->token = co_strdup("wrong");
	assert_int_equal(co_kube_new(&k, &g_loop, g_http, cfg, &err), 0);
	assert_int_equal(co_kube_version(k, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, -EACCES);
	assert_int_equal(r.code, 401);
	res_release(&r);
	co_kube_free(k);
	co_kubeconfig_free(cfg);
	free(kc);
}

struct events {
	int added, modified, deleted;
	char last_name[64];
};

static void ev_cb(const char *type, json_t *obj, void *data)
{
	struct events *e = data;
	const char *name = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "name"));

	if (!name || strncmp(name, "w-", 2) != 0)
		return;
	snprintf(e->last_name, sizeof(e->last_name), "%s", name);
	if (strcmp(type, "ADDED") == 0)
		e->added++;
	else if (strcmp(type, "MODIFIED") == 0)
		e->modified++;
	else if (strcmp(type, "DELETED") == 0)
		e->deleted++;
}

static void test_watch_and_delete(void **state)
{
	struct co_kube_ref all = {.api_version = "v1", .kind = "ConfigMap", .ns = "demo"};
	struct co_kube_ref w1 = {
		.api_version = "v1", .kind = "ConfigMap", .ns = "demo", .name = "w-1"};
	struct co_kube_watch *w = NULL;
	struct events ev = {0};
	struct res r = {0};
	struct co_error err = CO_ERROR_INIT;
	json_t *obj = yaml_obj(
		"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":"
		"{\"name\":\"w-1\",\"namespace\":\"demo\"},\"data\":{\"a\":\"1\"}}");
	json_t *patch = yaml_obj("{\"data\":{\"a\":\"2\"}}");

	(void)state;
	assert_int_equal(co_kube_watch(&w, g_kube, &all, NULL, NULL, ev_cb, &ev, &err),
			 0);
	assert_int_equal(co_kube_apply(g_kube, obj, NULL, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, 0);
	res_release(&r);
	assert_int_equal(co_kube_merge_patch(g_kube, &w1, patch, false, res_cb, &r, &err),
			 0);
	wait_res(&r);
	res_release(&r);
	assert_int_equal(co_kube_delete(g_kube, &w1, NULL, res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, 0);
	res_release(&r);
	for (int i = 0; i < 200000 && ev.deleted == 0; i++)
		uv_run(&g_loop, UV_RUN_ONCE);
	assert_int_equal(ev.added, 1);
	assert_true(ev.modified >= 1);
	assert_int_equal(ev.deleted, 1);
	co_kube_watch_cancel(w);

	/* deleting again: NotFound, which idempotent callers accept */
	assert_int_equal(co_kube_delete(g_kube, &w1, "Foreground", res_cb, &r, &err), 0);
	wait_res(&r);
	assert_int_equal(r.status, -ENOENT);
	res_release(&r);
	json_decref(obj);
	json_decref(patch);
}

struct freer {
	int calls;
	int status;
	struct co_kube *k;
};

static void free_inside_cb(struct co_kube_result *r, void *data)
{
	struct freer *f = data;

	f->calls++;
	f->status = r->status;
	co_kube_free(f->k); /* from inside the callback: must be safe */
}

static void count_cb(struct co_kube_result *r, void *data)
{
	struct freer *f = data;

	f->calls++;
	f->status = r->status;
}

static void test_free_with_calls_in_flight(void **state)
{
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;
	struct freer a = {0}, b = {0};
	char *kc = co_asprintf("%s/kubesim/k1/kubeconfig", g_state);

	(void)state;
	assert_int_equal(co_kubeconfig_load(&cfg, kc, NULL, &err), 0);
	assert_int_equal(co_kube_new(&a.k, &g_loop, g_http, cfg, &err), 0);
	assert_int_equal(co_kube_version(a.k, free_inside_cb, &a, &err), 0);
	for (int i = 0; i < 100000 && a.calls == 0; i++)
		uv_run(&g_loop, UV_RUN_ONCE);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.status, 0);

	assert_int_equal(co_kube_new(&b.k, &g_loop, g_http, cfg, &err), 0);
	assert_int_equal(co_kube_version(b.k, count_cb, &b, &err), 0);
	co_kube_free(b.k);
	assert_int_equal(b.calls, 0);
	for (int i = 0; i < 100000 && b.calls == 0; i++)
		uv_run(&g_loop, UV_RUN_ONCE);
	assert_int_equal(b.calls, 1);
	assert_int_equal(b.status, -ECANCELED);
	co_kubeconfig_free(cfg);
	free(kc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_and_apply),
		cmocka_unit_test(test_get_list_patch),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_bad_token),
		cmocka_unit_test(test_watch_and_delete),
		cmocka_unit_test(test_free_with_calls_in_flight),
	};

	if (!getenv("KUBESIM") || access(getenv("KUBESIM"), X_OK) != 0) {
		printf("no kubesim in this build\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
