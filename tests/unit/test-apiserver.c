/*
 * Unit test for the kubesim API server: a real server on an ephemeral port, driven by
 * the project's HTTP client through a scripted sequence of requests (auth, version,
 * discovery, CRUD, Status errors, apply, patch, removed apiVersions, Table output,
 * faults) plus a watch that must see an event written while it is open.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "net/http-client.h"
#include "sim/apiserver.h"

struct step {
	const char *method;
	const char *path;
	const char *body;
	const char *content_type; /* NULL = application/json */
	const char *accept;
	bool no_token;
	long code;
	const char *expect; /* substring of the body, or NULL */
};

static const struct step steps[] = {
	{ "GET", "/healthz", NULL, NULL, NULL, true, 200, "ok" },
	{ "GET", "/api/v1/namespaces", NULL, NULL, NULL, true, 401, "\"Unauthorized\"" },
	{ "GET", "/version", NULL, NULL, NULL, false, 200, "\"gitVersion\":\"v1.29.2\"" },
	{ "GET", "/api", NULL, NULL, NULL, false, 200, "\"APIVersions\"" },
	{ "GET", "/apis", NULL, NULL,
	  "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
	  false, 200, "\"APIGroupList\"" },
	{ "GET", "/apis/apps/v1", NULL, NULL, NULL, false, 200, "\"deployments\"" },
	{ "GET", "/apis/policy/v1beta1", NULL, NULL, NULL, false, 404, NULL },
	{ "GET", "/apis/policy/v1beta1/podsecuritypolicies", NULL, NULL, NULL, false, 404,
	  "the server could not find the requested resource" },
	{ "POST", "/api/v1/namespaces", "{\"metadata\":{\"name\":\"x\"}}", NULL, NULL, false,
	  201, "\"kind\":\"Namespace\"" },
	{ "POST", "/api/v1/namespaces", "{\"metadata\":{\"name\":\"x\"}}", NULL, NULL, false,
	  409, "\"AlreadyExists\"" },
	{ "WATCH", "/api/v1/namespaces/x/configmaps?watch=1&timeoutSeconds=1", NULL, NULL,
	  NULL, false, 200, NULL },
	{ "POST", "/api/v1/namespaces/x/configmaps",
	  "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c1\","
	  "\"labels\":{\"a\":\"b\"}},\"data\":{\"k\":\"v\"}}", NULL, NULL, false, 201,
	  "\"uid\"" },
	{ "POST", "/api/v1/namespaces/x/configmaps", "{\"metadata\":{\"name\":\"Bad_Name\"}}",
	  NULL, NULL, false, 422, "\"Invalid\"" },
	{ "POST", "/api/v1/namespaces/x/configmaps", "{\"metadata\":", NULL, NULL, false, 400,
	  "\"BadRequest\"" },
	{ "POST", "/api/v1/namespaces/x/configmaps",
	  "{\"apiVersion\":\"apps/v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"c\"}}",
	  NULL, NULL, false, 400, "does not match" },
	{ "POST", "/api/v1/namespaces/nope/configmaps", "{\"metadata\":{\"name\":\"c\"}}",
	  NULL, NULL, false, 404, "namespaces \\\"nope\\\" not found" },
	{ "GET", "/api/v1/namespaces/x/configmaps/c1", NULL, NULL, NULL, false, 200,
	  "\"apiVersion\":\"v1\"" },
	{ "GET", "/api/v1/namespaces/x/configmaps/c2", NULL, NULL, NULL, false, 404,
	  "\"NotFound\"" },
	{ "GET", "/api/v1/configmaps?labelSelector=a%3Db", NULL, NULL, NULL, false, 200,
	  "\"ConfigMapList\"" },
	{ "GET", "/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dc1", NULL,
	  NULL, "application/json;as=Table;v=v1;g=meta.k8s.io,application/json", false, 200,
	  "\"cells\":[\"c1\"" },
	{ "GET", "/api/v1/namespaces/x/configmaps?labelSelector=a+in+(", NULL, NULL, NULL,
	  false, 400, "\"BadRequest\"" },
	{ "PATCH", "/api/v1/namespaces/x/configmaps/c1", "{\"data\":{\"k\":\"w\"}}",
	  "application/merge-patch+json", NULL, false, 200, "\"k\":\"w\"" },
	{ "PATCH", "/api/v1/namespaces/x/configmaps/c1", "[]", "application/json-patch+json",
	  NULL, false, 415, "UnsupportedMediaType" },
	{ "PATCH", "/apis/apps/v1/namespaces/x/deployments/web?fieldManager=t",
	  "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
	  "application/apply-patch+yaml", NULL, false, 201, "\"replicas\":2" },
	{ "PATCH", "/apis/apps/v1/namespaces/x/deployments/web",
	  "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
	  "application/apply-patch+yaml", NULL, false, 400, "fieldManager" },
	{ "PATCH", "/apis/apps/v1/namespaces/x/deployments/web?fieldManager=other",
	  "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\"},"
	  "\"spec\":{\"replicas\":5}}", "application/apply-patch+yaml", NULL, false, 409,
	  "\"Conflict\"" },
	{ "PUT", "/apis/apps/v1/namespaces/x/deployments/web",
	  "{\"metadata\":{\"name\":\"web\",\"resourceVersion\":\"1\"},\"spec\":{}}", NULL, NULL,
	  false, 409, "the object has been modified" },
	{ "PATCH", "/apis/apps/v1/namespaces/x/deployments/web/status?fieldManager=ctl",
	  "{\"status\":{\"readyReplicas\":2}}", "application/merge-patch+json", NULL, false,
	  200, "\"readyReplicas\":2" },
	{ "POST", "/api/v1/namespaces/x/configmaps?dryRun=All",
	  "{\"metadata\":{\"name\":\"dry\"}}", NULL, NULL, false, 201, "\"dry\"" },
	{ "GET", "/api/v1/namespaces/x/configmaps/dry", NULL, NULL, NULL, false, 404, NULL },
	{ "DELETE", "/api/v1/namespaces/x/configmaps/c1", NULL, NULL, NULL, false, 200,
	  "\"c1\"" },
	{ "POST", "/api/v1/namespaces/x/configmaps/c1", "{}", NULL, NULL, false, 405,
	  "\"MethodNotAllowed\"" },
	{ "DELETE", "/api/v1/namespaces/x", NULL, NULL, NULL, false, 200, NULL },
	{ "GET", "/apis/apps/v1/namespaces/x/deployments/web", NULL, NULL, NULL, false, 404,
	  NULL },
	{ "FAULT", NULL, NULL, NULL, NULL, false, 0, NULL },
	{ "GET", "/api/v1/namespaces", NULL, NULL, NULL, false, 500, "\"InternalError\"" },
	{ "GET", "/healthz", NULL, NULL, NULL, true, 200, "ok" },
};
#define N_STEPS (sizeof(steps) / sizeof(steps[0]))

struct ctx {
	uv_loop_t loop;
	struct ks_store *store;
	struct ks_registry *reg;
	struct ks_cluster_state state;
	struct ks_apiserver *srv;
	struct co_http_client *client;
	char base[64];
	size_t next;
	int responses;
	struct co_buf watch_body;
	int watch_done;
	long watch_code;
	int closed;
};

static void run_step(struct ctx *c);

static int watch_data(const char *chunk, size_t len, void *data)
{
	struct ctx *c = data;
	co_buf_append(&c->watch_body, chunk, len);
	return 0;
}

static void watch_cb(struct co_http_response *res, void *data)
{
	struct ctx *c = data;
	c->watch_done++;
	c->watch_code = res->code;
}

static void step_cb(struct co_http_response *res, void *data)
{
	struct ctx *c = data;
	const struct step *s = &steps[c->next];
	c->responses++;
	if (res->status < 0)
		fail_msg("step %zu %s %s: %s", c->next, s->method, s->path, res->err.msg);
	if (res->code != s->code || (s->expect && !strstr(co_buf_cstr(&res->body), s->expect)))
		fail_msg("step %zu %s %s: got %ld %s", c->next, s->method, s->path, res->code,
			 co_buf_cstr(&res->body));
	c->next++;
	run_step(c);
}

static void client_closed(void *data)
{
	struct ctx *c = data;
	c->closed++;
}

static void server_closed(void *data)
{
	struct ctx *c = data;
	c->closed++;
}

static void run_step(struct ctx *c)
{
	struct co_error err = CO_ERROR_INIT;
	if (c->next == N_STEPS) {
		co_http_client_close(c->client, client_closed, c);
		ks_apiserver_close(c->srv, server_closed, c);
		return;
	}
	const struct step *s = &steps[c->next];
	if (!strcmp(s->method, "FAULT")) {
		c->state.faults.api_error_rate = 1.0;
		c->next++;
		run_step(c);
		return;
	}
	char *url = co_asprintf("%s%s", c->base, s->path);
	char ct[128], accept[256];
	snprintf(ct, sizeof(ct), "Content-Type: %s",
		 s->content_type ? s->content_type : "application/json");
	snprintf(accept, sizeof(accept), "Accept: %s", s->accept ? s->accept :
		 "application/json");
	const char *headers[] = { ct, accept, NULL };
	struct co_http_req_opts o = {
		.method = strcmp(s->method, "WATCH") ? s->method : "GET",
		.url = url,
		.headers = headers,
		.body = s->body,
		.body_len = s->body ? strlen(s->body) : 0,
		.bearer_token = s->no_token ? NULL : "secret-token",
		.timeout_ms = 5000,
	};
	if (!strcmp(s->method, "WATCH")) {
		o.on_data = watch_data;
		assert_int_equal(co_http_request(c->client, NULL, &o, watch_cb, c, &err), 0);
		/* the next steps run while the watch is open */
		c->next++;
		free(url);
		run_step(c);
		return;
	}
	assert_int_equal(co_http_request(c->client, NULL, &o, step_cb, c, &err), 0);
	free(url);
}

static void test_api_sequence(void **state)
{
	struct ctx c = { 0 };
	struct co_error err = CO_ERROR_INIT;
	assert_int_equal(uv_loop_init(&c.loop), 0);
	assert_int_equal(ks_store_new(&c.store, NULL, NULL, &err), 0);
	assert_int_equal(ks_store_bootstrap(c.store, &err), 0);
	c.reg = ks_registry_new(29);
	c.state.ready = true;
	struct ks_apiserver_opts o = {
		.token = "secret-token",
		.git_version = "v1.29.2",
		.major = 1,
		.minor = 29,
		.store = c.store,
		.reg = c.reg,
		.state = &c.state,
	};
	assert_int_equal(ks_apiserver_new(&c.srv, &c.loop, &o, &err), 0);
	snprintf(c.base, sizeof(c.base), "http://127.0.0.1:%d", ks_apiserver_port(c.srv));
	assert_int_equal(co_http_client_new(&c.client, &c.loop, &err), 0);
	co_buf_init(&c.watch_body);
	run_step(&c);
	assert_int_equal(uv_run(&c.loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(c.next, N_STEPS);
	assert_int_equal(c.responses, (int)N_STEPS - 2);
	assert_int_equal(c.closed, 2);
	/* the watch saw the configmap created while it was open, and its deletion */
	assert_int_equal(c.watch_done, 1);
	const char *w = co_buf_cstr(&c.watch_body);
	assert_non_null(strstr(w, "{\"type\":\"ADDED\",\"object\":{"));
	assert_non_null(strstr(w, "\"name\":\"c1\""));
	assert_non_null(strstr(w, "\"type\":\"DELETED\""));
	assert_non_null(strchr(w, '\n'));
	co_buf_release(&c.watch_body);
	assert_int_equal(uv_loop_close(&c.loop), 0);
	ks_registry_free(c.reg);
	ks_store_free(c.store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api_sequence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
