/*
 * Kubernetes client units: Flux-style readiness rules, transient-error classification,
 * and REST mapping against a scripted API server on the same loop (discovery, a kind
 * that appears after a CRD is applied, namespaced and cluster-scoped paths, the exact
 * apply, list and delete requests, Status errors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "clients/kube.h"
#include "net/http-server.h"

static json_t *obj(const char *text)
{
	json_error_t e;
	json_t *o = json_loads(text, 0, &e);

	assert_non_null(o);
	return o;
}

static void test_ready_rules(void **state)
{
	char why[256];
	json_t *o;

	o = obj("{\"metadata\":{\"generation\":2},\"status\":{\"observedGeneration\":1}}");
	assert_int_equal(co_kube_ready(o, NULL, why, sizeof(why)), 0);
	assert_string_equal(why, "observedGeneration 1, want 2");
	json_decref(o);

	o = obj("{\"metadata\":{\"generation\":2},\"status\":{\"observedGeneration\":2,"
		"\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\",\"reason\":"
		"\"DependencyNotReady\",\"message\":\"dependency 'flux-system/operations' is not "
		"ready\"}]}}");
	assert_int_equal(co_kube_ready(o, NULL, why, sizeof(why)), 0);
	assert_string_equal(why, "Ready=False: DependencyNotReady: dependency "
				 "'flux-system/operations' is not ready");
	assert_non_null(co_kube_condition(o, "Ready"));
	assert_null(co_kube_condition(o, "Reconciling"));
	json_decref(o);

	/* Kustomization: lastAppliedRevision decides. */
	o = obj("{\"metadata\":{\"generation\":1},\"status\":{\"observedGeneration\":1,"
		"\"lastAppliedRevision\":\"main@sha1:aaa\",\"conditions\":[{\"type\":\"Ready\","
		"\"status\":\"True\"}]}}");
	assert_int_equal(co_kube_ready(o, "main@sha1:aaa", why, sizeof(why)), 1);
	assert_int_equal(co_kube_ready(o, "main@sha1:bbb", why, sizeof(why)), 0);
	assert_string_equal(why, "revision main@sha1:aaa, want main@sha1:bbb");
	assert_int_equal(co_kube_ready(o, NULL, NULL, 0), 1);
	json_decref(o);

	/* GitRepository: the artifact's revision decides. */
	o = obj("{\"metadata\":{\"generation\":1},\"status\":{\"observedGeneration\":1,"
		"\"artifact\":{\"revision\":\"main@sha1:ccc\"},\"conditions\":[{\"type\":"
		"\"Ready\",\"status\":\"True\"}]}}");
	assert_int_equal(co_kube_ready(o, "main@sha1:ccc", why, sizeof(why)), 1);
	json_decref(o);

	o = obj("{\"metadata\":{\"generation\":1},\"spec\":{\"suspend\":true},\"status\":{"
		"\"observedGeneration\":1,\"conditions\":[{\"type\":\"Ready\",\"status\":"
		"\"True\"}]}}");
	assert_int_equal(co_kube_ready(o, NULL, why, sizeof(why)), -EPERM);
	assert_string_equal(why, "reconciliation is suspended");
	json_decref(o);

	o = obj("{\"metadata\":{\"generation\":1},\"status\":{}}");
	assert_int_equal(co_kube_ready(o, NULL, why, sizeof(why)), 0);
	json_decref(o);
}

static void test_transient(void **state)
{
	struct co_kube_result r = { 0 };

	r.status = -ECONNREFUSED;
	assert_true(co_kube_transient(&r));
	r.status = -EAGAIN;
	r.code = 503;
	assert_true(co_kube_transient(&r));
	r.code = 429;
	assert_true(co_kube_transient(&r));
	r.status = -EINVAL;
	r.code = 422;
	assert_false(co_kube_transient(&r));
	r.status = -EACCES;
	r.code = 401;
	assert_false(co_kube_transient(&r));
	r.status = -ECANCELED;
	r.code = 0;
	assert_false(co_kube_transient(&r));
	r.status = 0;
	assert_false(co_kube_transient(&r));
}

/* ---- a scripted API server ---- */

struct api {
	struct co_http_server *srv;
	int crd_applied;       /* once set, discovery of example.com/v1 lists Widget */
	int discovery_hits;
	struct co_buf log;     /* "METHOD path?query content-type\n" per request */
};

static void log_req(struct api *a, struct co_http_req *req)
{
	const char *ct = co_http_req_header(req, "Content-Type");
	const char *q = co_http_req_query(req);

	co_buf_printf(&a->log, "%s %s%s%s %s\n", co_http_req_method(req),
		      co_http_req_raw_path(req), q[0] ? "?" : "", q, ct ? ct : "-");
}

static void on_any(struct co_http_req *req, void *data)
{
	struct api *a = data;
	const char *path = co_http_req_path(req);
	const char *auth = co_http_req_header(req, "Authorization");

	log_req(a, req);
	if (!auth || strcmp(auth, "Bearer t0ken") != 0) {
		co_http_respond_json(req, 401, json_pack("{s:s, s:s, s:s, s:i}", "kind", "Status",
							 "reason", "Unauthorized", "message",
							 "Unauthorized", "code", 401));
		return;
	}
	if (strcmp(path, "/api/v1") == 0) {
		a->discovery_hits++;
		co_http_respond_json(req, 200, obj("{\"kind\":\"APIResourceList\",\"resources\":["
			"{\"name\":\"namespaces\",\"kind\":\"Namespace\",\"namespaced\":false},"
			"{\"name\":\"configmaps\",\"kind\":\"ConfigMap\",\"namespaced\":true},"
			"{\"name\":\"pods/status\",\"kind\":\"Pod\",\"namespaced\":true}]}"));
		return;
	}
	if (strcmp(path, "/apis/example.com/v1") == 0) {
		a->discovery_hits++;
		if (!a->crd_applied)
			co_http_respond_json(req, 200, obj("{\"kind\":\"APIResourceList\","
							   "\"resources\":[]}"));
		else
			co_http_respond_json(req, 200, obj("{\"kind\":\"APIResourceList\","
				"\"resources\":[{\"name\":\"widgets\",\"kind\":\"Widget\","
				"\"namespaced\":true}]}"));
		return;
	}
	if (strcmp(path, "/apis/policy/v1beta1") == 0) {
		co_http_respond_json(req, 404, json_pack("{s:s, s:s, s:i}", "kind", "Status",
							 "reason", "NotFound", "code", 404));
		return;
	}
	if (strcmp(path, "/api/v1/namespaces/core/configmaps/missing") == 0) {
		co_http_respond_json(req, 404, obj("{\"kind\":\"Status\",\"reason\":\"NotFound\","
			"\"message\":\"configmaps \\\"missing\\\" not found\",\"code\":404}"));
		return;
	}
	if (strcmp(path, "/api/v1/namespaces/core/configmaps/bad") == 0) {
		co_http_respond_json(req, 422, obj("{\"kind\":\"Status\",\"reason\":\"Invalid\","
			"\"message\":\"data: Invalid value\",\"code\":422}"));
		return;
	}
	/* Everything else echoes what it was asked, as an object. */
	co_http_respond_json(req, 200, json_pack("{s:s, s:{s:s}}", "kind", "Echo", "metadata",
						 "name", path));
}

struct got {
	int calls;
	int status;
	long code;
	char reason[32];
	char msg[512];
	char name[256];
};

static void got_cb(struct co_kube_result *res, void *data)
{
	struct got *g = data;
	const char *name;

	g->calls++;
	g->status = res->status;
	g->code = res->code;
	snprintf(g->reason, sizeof(g->reason), "%s", res->reason);
	snprintf(g->msg, sizeof(g->msg), "%s", res->err.msg);
	name = json_string_value(json_object_get(json_object_get(res->obj, "metadata"), "name"));
	snprintf(g->name, sizeof(g->name), "%s", name ? name : "");
}

/* Keep-alive connections keep the loop alive: run until the calls have answered. */
static void run_until(uv_loop_t *loop, const struct got *g, int n)
{
	for (;;) {
		int done = 1;

		for (int i = 0; i < n; i++)
			done &= g[i].calls > 0;
		if (done)
			return;
		uv_run(loop, UV_RUN_ONCE);
	}
}

static void test_rest_mapping(void **state)
{
	uv_loop_t loop;
	struct api a = { 0 };
	struct co_http_server_opts so = { 0 };
	struct co_http_client *http = NULL;
	struct co_kube *kube = NULL;
	struct co_kubeconfig cfg = { 0 };
	struct co_error err = CO_ERROR_INIT;
	char server[64];
	struct got g[8];
	struct co_kube_ref cm = { "v1", "ConfigMap", "core", "web" };
	struct co_kube_ref ns = { "v1", "Namespace", "ignored-ns", "core" };
	struct co_kube_ref widget = { "example.com/v1", "Widget", NULL, "w1" };
	struct co_kube_ref psp = { "policy/v1beta1", "PodSecurityPolicy", NULL, "r" };
	struct co_kube_ref missing = { "v1", "ConfigMap", "core", "missing" };
	struct co_kube_ref bad = { "v1", "ConfigMap", "core", "bad" };
	struct co_kube_ref list = { "v1", "ConfigMap", NULL, NULL };
	json_t *apply = obj("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{"
			    "\"name\":\"web\",\"resourceVersion\":\"7\",\"managedFields\":[]},"
			    "\"data\":{\"a\":\"b\"}}");

	memset(g, 0, sizeof(g));
	uv_loop_init(&loop);
	assert_int_equal(co_http_server_new(&a.srv, &loop, &so, &err), 0);
	co_http_server_fallback(a.srv, on_any, &a);
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", co_http_server_port(a.srv));
	cfg.server = server;
	cfg.namespace_ = "default";
	cfg.token = "t0ken";
	assert_int_equal(co_http_client_new(&http, &loop, &err), 0);
	assert_int_equal(co_kube_new(&kube, &loop, http, &cfg, &err), 0);

	assert_int_equal(co_kube_get(kube, &cm, got_cb, &g[0], &err), 0);
	assert_int_equal(co_kube_get(kube, &ns, got_cb, &g[1], &err), 0);
	run_until(&loop, g, 2);
	assert_string_equal(g[0].name, "/api/v1/namespaces/core/configmaps/web");
	assert_string_equal(g[1].name, "/api/v1/namespaces/core"); /* cluster-scoped */

	/* Unknown kind, then the CRD is applied: one discovery refresh finds it. */
	assert_int_equal(co_kube_get(kube, &widget, got_cb, &g[2], &err), 0);
	run_until(&loop, g, 3);
	assert_int_equal(g[2].status, -ENOENT);
	assert_non_null(strstr(g[2].msg, "no matches for kind \"Widget\" in version "
					 "\"example.com/v1\""));
	a.crd_applied = 1;
	assert_int_equal(co_kube_get(kube, &widget, got_cb, &g[3], &err), 0);
	run_until(&loop, g, 4);
	assert_int_equal(g[3].status, 0);
	assert_string_equal(g[3].name, "/apis/example.com/v1/namespaces/default/widgets/w1");

	/* A group-version the server no longer serves. */
	assert_int_equal(co_kube_get(kube, &psp, got_cb, &g[4], &err), 0);
	/* Status errors keep reason and message. */
	assert_int_equal(co_kube_get(kube, &missing, got_cb, &g[5], &err), 0);
	assert_int_equal(co_kube_delete(kube, &bad, "Foreground", got_cb, &g[6], &err), 0);
	run_until(&loop, g, 7);
	assert_int_equal(g[4].status, -ENOENT);
	assert_non_null(strstr(g[4].msg, "PodSecurityPolicy"));
	assert_int_equal(g[5].status, -ENOENT);
	assert_string_equal(g[5].reason, "NotFound");
	assert_non_null(strstr(g[5].msg, "get configmaps 'core/missing': 404 NotFound: "
					 "configmaps \"missing\" not found"));
	assert_int_equal(g[6].status, -EINVAL);
	assert_int_equal(g[6].code, 422);

	/* Request shapes: list with selectors, apply, delete. */
	co_buf_reset(&a.log);
	assert_int_equal(co_kube_list(kube, &list, "app=web,tier in (a,b)",
				      "metadata.name=web", got_cb, &g[7], &err), 0);
	run_until(&loop, &g[7], 1);
	g[7].calls = 0;
	assert_int_equal(co_kube_apply(kube, apply, "core", got_cb, &g[7], &err), 0);
	run_until(&loop, &g[7], 1);
	g[7].calls = 0;
	assert_int_equal(co_kube_delete(kube, &cm, NULL, got_cb, &g[7], &err), 0);
	run_until(&loop, &g[7], 1);
	assert_non_null(strstr(co_buf_cstr(&a.log),
			       "GET /api/v1/configmaps?labelSelector=app%3Dweb%2Ctier%20in%20"
			       "%28a%2Cb%29&fieldSelector=metadata.name%3Dweb -\n"));
	assert_non_null(strstr(co_buf_cstr(&a.log),
			       "PATCH /api/v1/namespaces/core/configmaps/web?fieldManager=cutover"
			       "&force=true application/apply-patch+yaml\n"));
	assert_non_null(strstr(co_buf_cstr(&a.log),
			       "DELETE /api/v1/namespaces/core/configmaps/web application/json\n"));
	/* Discovery of v1 happened once: the mapping is cached. */
	assert_int_equal(a.discovery_hits, 1 + 2);

	json_decref(apply);
	co_kube_free(kube);
	co_http_client_close(http, NULL, NULL);
	co_http_server_close(a.srv, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	co_buf_release(&a.log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ready_rules),
		cmocka_unit_test(test_transient),
		cmocka_unit_test(test_rest_mapping),
	};

	co_log_setup(CO_LOG_OFF, CO_LOG_HUMAN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
