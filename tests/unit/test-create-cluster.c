/*
 * create-cluster under the engine with a fake provider and a fake Kubernetes API (the
 * project's HTTP server answering /version): the cluster is created once, the stage
 * waits through 503s until /version answers the target, registers the cluster as
 * candidate with a 0600 kubeconfig and records its outputs; a runner stopped while
 * the provider call is in flight resumes without creating a second cluster; a later
 * failure runs the cleanup (provider delete, role retired) unless keep_failed; a
 * cluster registered by someone else is neither adopted nor deleted. Also
 * the stage table: eleven names in order, and the built ones runnable as a prefix.
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
#include <sys/stat.h>

#include "base/buf.h"
#include "base/time.h"
#include "clients/kubeconfig.h"
#include "engine/pipeline.h"
#include "net/http-client.h"
#include "net/http-server.h"
#include "providers/provider.h"
#include "providers/registry.h"
#include "stages/registry.h"

/* ---- fake provider ---- */

struct fake {
	struct co_provider base;
	json_t *clusters;
	int creates, deletes, gets;
	int port;	     /* the fake API */
	bool stop_on_create; /* stop the pipeline while create is in flight */
	struct co_pipeline *p;
};

struct pending {
	uv_timer_t t;
	co_provider_cb cb;
	void *data;
	struct co_provider_result res;
};

static void pending_closed(uv_handle_t *h)
{
	struct pending *pd = h->data;

	json_decref(pd->res.cluster);
	free(pd);
}

static void pending_fire(uv_timer_t *t)
{
	struct pending *pd = t->data;

	pd->cb(&pd->res, pd->data);
	uv_close((uv_handle_t *)t, pending_closed);
}

static void later(struct fake *f, int status, json_t *cluster, co_provider_cb cb,
		  void *data)
{
	struct pending *pd = co_calloc(1, sizeof(*pd));

	pd->cb = cb;
	pd->data = data;
	pd->res.status = status;
	pd->res.cluster = cluster;
	if (status < 0)
		co_error_set(&pd->res.err, status, "fake: %d", status);
	uv_timer_init(f->base.loop, &pd->t);
	pd->t.data = pd;
	uv_timer_start(&pd->t, pending_fire, 5, 0);
}

static int f_create(struct co_provider *p, const json_t *spec, co_provider_cb cb,
		    void *data, struct co_error *err)
{
	struct fake *f = (struct fake *)p;
	const char *name = json_string_value(json_object_get(spec, "name"));
	char *server = co_asprintf("http://127.0.0.1:%d", f->port);
	char *kc = co_kubeconfig_render_token(name, server, "tok", NULL);
	json_t *c = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "kubeconfig", kc,
			      "ingress", "http://127.0.0.1:9", "state", "ready");

	(void)err;
	f->creates++;
	json_object_set(f->clusters, name, c);
	later(f, 0, c, cb, data);
	if (f->stop_on_create)
		co_pipeline_stop(f->p);
	free(server);
	free(kc);
	return 0;
}

static int f_remove(struct co_provider *p, const char *name, co_provider_cb cb,
		    void *data, struct co_error *err)
{
	struct fake *f = (struct fake *)p;
	bool existed = json_object_get(f->clusters, name) != NULL;

	(void)err;
	f->deletes++;
	json_object_del(f->clusters, name);
	later(f, 0, json_pack("{s:b}", "existed", existed), cb, data);
	return 0;
}

static int f_get(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		 struct co_error *err)
{
	struct fake *f = (struct fake *)p;
	json_t *c = json_object_get(f->clusters, name);

	(void)err;
	f->gets++;
	later(f, c ? 0 : -ENOENT, c ? json_incref(c) : NULL, cb, data);
	return 0;
}

static int f_list(struct co_provider *p, co_provider_cb cb, void *data,
		  struct co_error *err)
{
	(void)p;
	(void)cb;
	(void)data;
	return co_error_set(err, -ENOTSUP, "not used");
}

static const struct co_provider_ops fake_ops = {"fake", 0,	f_create, f_remove,
						f_get,	f_list, NULL};

/* ---- fake API ---- */

static int version_calls;

static void on_version(struct co_http_req *req, void *data)
{
	const char *auth = co_http_req_header(req, "Authorization");

	(void)data;
	if (!auth || strcmp(auth, "Bearer tok") != 0) {
		co_http_respond_text(req, 401, "unauthorized");
		return;
	}
	if (++version_calls < 3) {
		co_http_respond_text(req, 503, "booting");
		return;
	}
	co_http_respond_json(req, 200,
			     json_pack("{s:s, s:s, s:s}", "major", "1", "minor", "27",
				       "gitVersion", "v1.27.1+k3s1"));
}

/* ---- a stage that fails permanently, to trigger cleanup ---- */

static int failing_start(struct co_stage_run *run, const char *state,
			 const json_t *details, struct co_error *err)
{
	(void)run;
	(void)state;
	(void)details;
	return co_error_set(err, -EINVAL, "scripted failure after create-cluster");
}

static const struct co_stage_ops failing = {"fails",	   "fails", 10000, true,
					    failing_start, NULL,    NULL};

/* ---- harness ---- */

struct env {
	char dir[64];
	uv_loop_t loop;
	struct co_http_server *srv;
	struct co_http_client *http;
	struct co_registry *reg;
	struct fake fake;
};

struct outcome {
	uv_loop_t *loop; /* stopped when the pipeline ends: the server keeps it
			  * alive */
	int calls;
	int status;
	char msg[512];
	bool cleaned;
};

static void done_cb(const struct co_pipeline_result *res, void *data)
{
	struct outcome *o = data;

	o->calls++;
	o->status = res->status;
	o->cleaned = res->cleaned_up;
	uv_stop(o->loop);
	snprintf(o->msg, sizeof(o->msg), "%s", res->err.msg);
}

static void env_init(struct env *e)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_http_server_opts so = {0};

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/co-create-XXXXXX");
	assert_non_null(mkdtemp(e->dir));
	uv_loop_init(&e->loop);
	assert_int_equal(co_http_server_new(&e->srv, &e->loop, &so, &err), 0);
	co_http_server_route(e->srv, "GET", "/version", on_version, NULL);
	assert_int_equal(co_http_client_new(&e->http, &e->loop, &err), 0);
	assert_int_equal(co_registry_open(&e->reg, e->dir, &err), 0);
	e->fake.base.ops = &fake_ops;
	e->fake.base.loop = &e->loop;
	e->fake.clusters = json_object();
	e->fake.port = co_http_server_port(e->srv);
	version_calls = 0;
}

static void env_release(struct env *e)
{
	char *cmd = co_asprintf("rm -rf %s", e->dir);

	co_registry_free(e->reg);
	co_http_client_close(e->http, NULL, NULL);
	co_http_server_close(e->srv, NULL, NULL);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&e->loop), 0);
	json_decref(e->fake.clusters);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void run(struct env *e, const struct co_stage_ops *const *stages,
		const json_t *req, bool keep_failed, struct outcome *o)
{
	struct co_pipeline_opts opts = {.state_dir = e->dir,
					.id = "cluster1-to-cluster2",
					.request = req,
					.stages = stages,
					.keep_failed = keep_failed};
	struct co_pipeline_services svc = {
		.http = e->http, .provider = &e->fake.base, .registry = e->reg};
	struct co_pipeline *p = NULL;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_pipeline_open(&p, &e->loop, &opts, &svc, &err), 0);
	e->fake.p = p;
	o->loop = &e->loop;
	assert_int_equal(co_pipeline_run(p, done_cb, o, &err), 0);
	uv_run(&e->loop, UV_RUN_DEFAULT);
	co_pipeline_free(p);
	e->fake.p = NULL;
}

static json_t *request(void)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "old", "cluster1", "new",
			 "cluster2", "image", "rancher/k3s:v1.27.1-k3s1", "env",
			 "staging", "location", "westeurope");
}

static const struct co_stage_ops *const only_create[] = {&co_stage_create_cluster, NULL};
static const struct co_stage_ops *const create_then_fail[] = {&co_stage_create_cluster,
							      &failing, NULL};

static void test_create_wait_register(void **state)
{
	struct env e;
	struct outcome o = {0};
	json_t *req = request(), *sum = NULL;
	const json_t *c, *out;
	struct co_error err = CO_ERROR_INIT;
	struct stat st;

	(void)state;
	env_init(&e);
	run(&e, only_create, req, false, &o);
	assert_int_equal(o.calls, 1);
	if (o.status != 0)
		fail_msg("pipeline failed: %s", o.msg);
	assert_int_equal(e.fake.creates, 1);
	assert_true(version_calls >= 3); /* waited through the 503s */

	co_registry_reload(e.reg, &err);
	c = co_registry_get(e.reg, "cluster2");
	assert_non_null(c);
	assert_string_equal(json_string_value(json_object_get(c, "role")), "candidate");
	assert_string_equal(json_string_value(json_object_get(c, "pipeline")),
			    "cluster1-to-cluster2");
	assert_string_equal(json_string_value(json_object_get(c, "location")),
			    "westeurope");
	assert_string_equal(json_string_value(json_object_get(c, "provider")), "fake");
	assert_int_equal(stat(json_string_value(json_object_get(c, "kubeconfig")), &st),
			 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	assert_int_equal(co_pipeline_summary(&sum, e.dir, "cluster1-to-cluster2",
					     only_create, &err),
			 0);
	out = json_object_get(json_object_get(sum, "outputs"), "create-cluster");
	assert_string_equal(json_string_value(json_object_get(out, "version")),
			    "v1.27.1+k3s1");
	assert_string_equal(json_string_value(json_object_get(out, "ingress")),
			    "http://127.0.0.1:9");
	assert_string_equal(json_string_value(json_object_get(out, "kubeconfig")),
			    json_string_value(json_object_get(c, "kubeconfig")));
	/* the spec was journaled with "creating" */
	{
		const json_t *d = json_object_get(
			json_array_get(json_object_get(sum, "stages"), 0), "details");

		assert_string_equal(json_string_value(json_object_get(d, "name")),
				    "cluster2");
		assert_string_equal(json_string_value(json_object_get(d, "version")),
				    "v1.27.1+k3s1");
	}
	json_decref(sum);
	json_decref(req);
	env_release(&e);
}

static void test_stop_during_create_then_resume(void **state)
{
	struct env e;
	struct outcome o = {0}, o2 = {0};
	json_t *req = request();

	(void)state;
	env_init(&e);
	e.fake.stop_on_create = true;
	run(&e, only_create, req, false, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EINTR);
	assert_int_equal(e.fake.creates, 1);
	assert_non_null(json_object_get(e.fake.clusters, "cluster2"));

	e.fake.stop_on_create = false;
	run(&e, only_create, NULL, false, &o2);
	assert_int_equal(o2.calls, 1);
	if (o2.status != 0)
		fail_msg("resume failed: %s", o2.msg);
	assert_int_equal(e.fake.creates, 1); /* found by get, never created twice */
	assert_true(e.fake.gets >= 2);
	json_decref(req);
	env_release(&e);
}

static void test_cleanup_after_later_failure(void **state)
{
	struct env e;
	struct outcome o = {0};
	json_t *req = request();
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	env_init(&e);
	run(&e, create_then_fail, req, false, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EINVAL);
	assert_non_null(strstr(o.msg, "scripted failure"));
	assert_true(o.cleaned);
	assert_int_equal(e.fake.creates, 1);
	assert_int_equal(e.fake.deletes, 1);
	assert_null(json_object_get(e.fake.clusters, "cluster2"));
	co_registry_reload(e.reg, &err);
	assert_string_equal(json_string_value(json_object_get(
				    co_registry_get(e.reg, "cluster2"), "role")),
			    "retired");
	json_decref(req);
	env_release(&e);
}

static void test_keep_failed(void **state)
{
	struct env e;
	struct outcome o = {0};
	json_t *req = request();

	(void)state;
	env_init(&e);
	run(&e, create_then_fail, req, true, &o);
	assert_int_equal(o.status, -EINVAL);
	assert_false(o.cleaned);
	assert_int_equal(e.fake.deletes, 0);
	assert_non_null(json_object_get(e.fake.clusters, "cluster2"));
	json_decref(req);
	env_release(&e);
}

static void test_never_adopts_or_deletes_foreign_cluster(void **state)
{
	struct env e;
	struct outcome o = {0};
	json_t *req = request();
	json_t *fields = json_pack("{s:s, s:s}", "role", "active", "pipeline", "other");
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	env_init(&e);
	assert_int_equal(co_registry_put(e.reg, "cluster2", fields, &err), 0);
	json_object_set_new(e.fake.clusters, "cluster2",
			    json_pack("{s:s}", "name", "cluster2"));
	run(&e, create_then_fail, req, false, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EEXIST);
	assert_non_null(strstr(o.msg, "belongs to someone else"));
	assert_int_equal(e.fake.creates, 0);
	assert_int_equal(e.fake.deletes, 0); /* the cleanup left it alone */
	assert_non_null(json_object_get(e.fake.clusters, "cluster2"));
	co_registry_reload(e.reg, &err);
	assert_string_equal(json_string_value(json_object_get(
				    co_registry_get(e.reg, "cluster2"), "role")),
			    "active");
	json_decref(fields);
	json_decref(req);
	env_release(&e);
}

static void test_stage_table(void **state)
{
	static const char *const names[] = {
		"preflight",	  "create-cluster",   "bootstrap-flux",
		"cluster-config", "validate-cluster", "tenant-namespaces",
		"deploy-tenants", "load-test",	      "compare",
		"switch-traffic", "retire-old"};
	const struct co_stage_ops *const *r = co_stages_runnable();
	size_t n = co_stages_runnable_count();

	(void)state;
	for (size_t i = 0; i < CO_STAGE_COUNT; i++) {
		assert_string_equal(co_stage_slots[i].name, names[i]);
		assert_int_equal(co_stage_slots[i].number, i + 1);
		if (co_stage_slots[i].ops)
			assert_string_equal(co_stage_slots[i].ops->name, names[i]);
		assert_ptr_equal(co_stage_slot_find(names[i]), &co_stage_slots[i]);
	}
	assert_true(n >= 4);
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(r[i], co_stage_slots[i].ops);
	assert_null(r[n]);
	assert_null(co_stage_slot_find("nonsense"));
	/* stages 1-9 fail before traffic moves: cleanup applies */
	for (size_t i = 0; i < n; i++)
		assert_true(r[i]->before_switch);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_wait_register),
		cmocka_unit_test(test_stop_during_create_then_resume),
		cmocka_unit_test(test_cleanup_after_later_failure),
		cmocka_unit_test(test_keep_failed),
		cmocka_unit_test(test_never_adopts_or_deletes_foreign_cluster),
		cmocka_unit_test(test_stage_table),
	};

	co_time_set_scale(0.01);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
