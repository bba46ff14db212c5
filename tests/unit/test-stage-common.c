/*
 * Tests for the helpers every stage shares: DNS-1123 names, Flux's ${VAR}
 * substitution, the flux-system sync folder as flux bootstrap writes it, listing the
 * Flux Kustomizations of the real fleet content, and the co_sm base driven by the
 * engine: polling with a timer, a cancel while sleeping, a cancel while an operation
 * is in flight, a deadline, each ending with exactly one co_stage_done() and nothing
 * left on the loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"
#include "base/yaml.h"
#include "engine/pipeline.h"
#include "stages/common.h"

static void test_dns1123(void **state)
{
	(void)state;
	assert_true(co_stages_dns1123_label("cluster2"));
	assert_true(co_stages_dns1123_label("a"));
	assert_true(co_stages_dns1123_label("prod-weu-01"));
	assert_false(co_stages_dns1123_label(""));
	assert_false(co_stages_dns1123_label(NULL));
	assert_false(co_stages_dns1123_label("Cluster2"));
	assert_false(co_stages_dns1123_label("-lead"));
	assert_false(co_stages_dns1123_label("trail-"));
	assert_false(co_stages_dns1123_label("has_underscore"));
	assert_false(co_stages_dns1123_label("dots.are.subdomains"));
	assert_true(co_stages_dns1123_label(
		"a23456789012345678901234567890123456789012345678901234567890123"));
	assert_false(co_stages_dns1123_label(
		"a234567890123456789012345678901234567890123456789012345678901234"));
}

static void test_substitute(void **state)
{
	json_t *vars = json_pack("{s:s, s:s, s:s}", "CLUSTER_NAME", "cluster2",
				 "GIT_BASE_URL", "file:///s/repos", "EMPTY", "");
	struct {
		const char *in, *out;
	} cases[] = {
		{"${GIT_BASE_URL}/tenant-core.git", "file:///s/repos/tenant-core.git"},
		{"name: ${CLUSTER_NAME}-x", "name: cluster2-x"},
		{"${MISSING}", ""},
		{"${MISSING:=fallback}", "fallback"},
		{"${MISSING:-dash}", "dash"},
		{"${CLUSTER_NAME:=unused}", "cluster2"},
		{"${EMPTY:=def}", "def"},
		{"$${CLUSTER_NAME}", "${CLUSTER_NAME}"},
		{"$CLUSTER_NAME stays", "$CLUSTER_NAME stays"},
		{"${1BAD}", "${1BAD}"},
		{"${UNCLOSED", "${UNCLOSED"},
		{"${X:=unclosed", "${X:=unclosed"},
		{"cost $5 and ${CLUSTER_NAME}", "cost $5 and cluster2"},
		{"", ""},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *s = co_stages_substitute(cases[i].in, vars);

		if (strcmp(s, cases[i].out) != 0)
			fail_msg("'%s' -> '%s', want '%s'", cases[i].in, s, cases[i].out);
		free(s);
	}
	{
		json_t *obj = json_pack("{s:{s:s}, s:[s, i, {s:s}]}", "spec", "url",
					"${GIT_BASE_URL}/a.git", "list",
					"${CLUSTER_NAME}", 7, "k", "${MISSING:=d}");

		co_stages_substitute_json(obj, vars);
		assert_string_equal(json_string_value(json_object_get(
					    json_object_get(obj, "spec"), "url")),
				    "file:///s/repos/a.git");
		assert_string_equal(json_string_value(json_array_get(
					    json_object_get(obj, "list"), 0)),
				    "cluster2");
		assert_int_equal(json_integer_value(
					 json_array_get(json_object_get(obj, "list"), 1)),
				 7);
		assert_string_equal(
			json_string_value(json_object_get(
				json_array_get(json_object_get(obj, "list"), 2), "k")),
			"d");
		json_decref(obj);
	}
	json_decref(vars);
}

static void test_flux_sync_files(void **state)
{
	json_t *files = co_stages_flux_sync_files("file:///s/repos/fleet.git", "main",
						  "clusters/staging/northeurope");
	const char *sync = json_string_value(json_object_get(
		files, "clusters/staging/northeurope/flux-system/gotk-sync.yaml"));
	const char *kust = json_string_value(json_object_get(
		files, "clusters/staging/northeurope/flux-system/kustomization.yaml"));
	json_t *docs = NULL, *k = NULL;
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	assert_int_equal(json_object_size(files), 2);
	assert_non_null(sync);
	assert_non_null(kust);
	assert_int_equal(co_yaml_load_all(&docs, sync, strlen(sync), "sync", &err), 0);
	assert_int_equal(json_array_size(docs), 2);
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(docs, 0), "kind")),
		"GitRepository");
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(json_array_get(docs, 0), "spec"), "url")),
		"file:///s/repos/fleet.git");
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(json_object_get(json_array_get(docs, 0), "spec"),
					"ref"),
			"branch")),
		"main");
	assert_string_equal(
		json_string_value(json_object_get(json_array_get(docs, 1), "kind")),
		"Kustomization");
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(json_array_get(docs, 1), "spec"), "path")),
		"./clusters/staging/northeurope");
	assert_true(json_is_true(json_object_get(
		json_object_get(json_array_get(docs, 1), "spec"), "prune")));
	assert_int_equal(co_yaml_load_one(&k, kust, strlen(kust), "kust", &err), 0);
	assert_string_equal(
		json_string_value(json_array_get(json_object_get(k, "resources"), 0)),
		"gotk-sync.yaml");
	json_decref(k);
	json_decref(docs);
	json_decref(files);
}

/* Read every file under dir into {"rel": "content"}. */
static void read_tree(json_t *files, const char *root, const char *rel)
{
	char *abs = *rel ? co_asprintf("%s/%s", root, rel) : co_strdup(root);
	DIR *d = opendir(abs);
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char *r, *a;
		struct co_buf b = CO_BUF_INIT;
		struct co_error err = CO_ERROR_INIT;

		if (de->d_name[0] == '.')
			continue;
		r = *rel ? co_asprintf("%s/%s", rel, de->d_name) : co_strdup(de->d_name);
		a = co_asprintf("%s/%s", root, r);
		if (de->d_type == DT_DIR)
			read_tree(files, root, r);
		else if (co_fs_read(a, 1 << 20, &b, &err) == 0)
			json_object_set_new(files, r, json_string(co_buf_cstr(&b)));
		co_buf_release(&b);
		free(r);
		free(a);
	}
	closedir(d);
	free(abs);
}

static void test_flux_kustomizations_of_fleet(void **state)
{
	json_t *files = json_object();
	json_t *sync = co_stages_flux_sync_files("file:///x", "main",
						 "clusters/staging/"
						 "northeurope");
	const char *k;
	json_t *v, *names;

	(void)state;
	read_tree(files, CO_SOURCE_ROOT "/clusters/staging/northeurope", "");
	names = co_stages_flux_kustomizations(files);
	assert_int_equal(json_array_size(names), 2);
	assert_string_equal(json_string_value(json_array_get(names, 0)),
			    "flux-system/operations");
	assert_string_equal(json_string_value(json_array_get(names, 1)),
			    "flux-system/tenants");
	json_decref(names);

	/* with the bootstrap folder, a broken file and a non-YAML file */
	json_object_foreach(sync, k, v)
		json_object_set(files, k + strlen("clusters/staging/northeurope/"), v);
	json_object_set_new(files, "broken.yaml", json_string("kind: [unclosed"));
	json_object_set_new(
		files, "README.md",
		json_string("apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
			    "kind: Kustomization\nmetadata: {name: readme}\n"));
	json_object_set_new(
		files, "dup.yaml",
		json_string("apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
			    "kind: Kustomization\nmetadata: {name: tenants, "
			    "namespace: flux-system}\n---\n"
			    "apiVersion: kustomize.config.k8s.io/v1beta1\n"
			    "kind: Kustomization\nresources: [a.yaml]\n---\n"
			    "apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
			    "kind: Kustomization\nmetadata: {name: apps, namespace: "
			    "team-a}\n"));
	names = co_stages_flux_kustomizations(files);
	assert_int_equal(json_array_size(names), 4);
	assert_string_equal(json_string_value(json_array_get(names, 0)),
			    "flux-system/tenants");
	assert_string_equal(json_string_value(json_array_get(names, 1)), "team-a/apps");
	assert_string_equal(json_string_value(json_array_get(names, 2)),
			    "flux-system/flux-system");
	assert_string_equal(json_string_value(json_array_get(names, 3)),
			    "flux-system/operations");
	json_decref(names);
	json_decref(sync);
	json_decref(files);
}

static void test_revision(void **state)
{
	char *r = co_stages_revision("main", "0123456789abcdef0123456789abcdef01234567");

	(void)state;
	assert_string_equal(r, "main@sha1:0123456789abcdef0123456789abcdef01234567");
	free(r);
}

/* ---- the co_sm base under the engine ---- */

enum mode { POLL, HANG_SLEEP, HANG_BUSY };

struct probe {
	struct co_sm sm;
	int polls;
	uv_timer_t *op; /* a fake operation in flight */
};

static enum mode MODE;
static int released, op_callbacks;
static struct co_pipeline *PIPE;

static void op_closed(uv_handle_t *h)
{
	free(h);
}

static void probe_step(struct co_sm *sm);

static void op_fire(uv_timer_t *t)
{
	struct probe *p = t->data;

	uv_close((uv_handle_t *)t, op_closed);
	p->op = NULL;
	op_callbacks++;
	if (co_sm_op_done(&p->sm))
		return;
	probe_step(&p->sm);
}

static void start_op(struct probe *p, uint64_t ms)
{
	p->op = co_calloc(1, sizeof(*p->op));
	uv_timer_init(co_stage_loop(p->sm.run), p->op);
	p->op->data = p;
	uv_timer_start(p->op, op_fire, ms, 0);
	co_sm_op_start(&p->sm);
}

static void probe_step(struct co_sm *sm)
{
	struct probe *p = (struct probe *)sm;

	if (MODE == HANG_BUSY) {
		start_op(p, 50);
		co_pipeline_stop(PIPE);
		return;
	}
	if (MODE == HANG_SLEEP) {
		co_stage_waiting(sm->run, "something that never comes");
		co_sm_sleep(sm, 60000);
		return;
	}
	if (++p->polls < 4) {
		co_stage_waiting(sm->run, "poll %d", p->polls);
		co_sm_sleep(sm, 2);
		return;
	}
	co_stage_record(sm->run, "polls", json_integer(p->polls), NULL);
	co_sm_finish(sm, 0, NULL);
}

static void probe_release(struct co_sm *sm)
{
	(void)sm;
	released++;
}

static void probe_on_cancel(struct co_sm *sm)
{
	(void)sm; /* let the fake operation run out, like libgit2 work */
}

static int probe_start(struct co_stage_run *run, const char *state, const json_t *details,
		       struct co_error *err)
{
	struct probe *p = co_calloc(1, sizeof(*p));

	(void)state;
	(void)details;
	(void)err;
	co_sm_init(&p->sm, run);
	p->sm.step = probe_step;
	p->sm.release = probe_release;
	p->sm.on_cancel = probe_on_cancel;
	if (!co_sm_set_state(&p->sm, "polling", NULL))
		return 0;
	probe_step(&p->sm);
	return 0;
}

static const struct co_stage_ops probe_ops = {"probe",	   "test",	 60000, true,
					      probe_start, co_sm_cancel, NULL};
static const struct co_stage_ops *const probe_stages[] = {&probe_ops, NULL};

struct outcome {
	int calls;
	int status;
	char msg[512];
};

static void done_cb(const struct co_pipeline_result *res, void *data)
{
	struct outcome *o = data;

	o->calls++;
	o->status = res->status;
	snprintf(o->msg, sizeof(o->msg), "%s", res->err.msg);
}

static void stop_soon(uv_timer_t *t)
{
	co_pipeline_stop(PIPE);
	uv_close((uv_handle_t *)t, NULL);
}

static void run_probe(enum mode mode, const char *deadline, struct outcome *o)
{
	char tmpl[] = "/tmp/co-sm-XXXXXX";
	uv_loop_t loop;
	json_t *req = json_pack("{s:s, s:s}", "old", "a", "new", "b");
	struct co_pipeline_opts opts = {.id = "a-to-b", .stages = probe_stages};
	struct co_error err = CO_ERROR_INIT;
	uv_timer_t stopper;
	char *cmd;

	assert_non_null(mkdtemp(tmpl));
	if (deadline)
		json_object_set_new(req, "deadlines",
				    json_pack("{s:s}", "probe", deadline));
	opts.state_dir = tmpl;
	opts.request = req;
	MODE = mode;
	released = op_callbacks = 0;
	uv_loop_init(&loop);
	assert_int_equal(co_pipeline_open(&PIPE, &loop, &opts, NULL, &err), 0);
	assert_int_equal(co_pipeline_run(PIPE, done_cb, o, &err), 0);
	if (mode == HANG_SLEEP && !deadline) {
		uv_timer_init(&loop, &stopper);
		uv_timer_start(&stopper, stop_soon, 20, 0);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	co_pipeline_free(PIPE);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	json_decref(req);
	cmd = co_asprintf("rm -rf %s", tmpl);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void test_sm_polls_to_done(void **state)
{
	struct outcome o = {0};

	(void)state;
	run_probe(POLL, NULL, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, 0);
	assert_int_equal(released, 1);
}

static void test_sm_cancel_while_sleeping(void **state)
{
	struct outcome o = {0};

	(void)state;
	run_probe(HANG_SLEEP, NULL, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EINTR);
	assert_int_equal(released, 1);
}

static void test_sm_cancel_while_busy(void **state)
{
	struct outcome o = {0};

	(void)state;
	run_probe(HANG_BUSY, NULL, &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -EINTR);
	/* the operation ran out and its callback ended the stage */
	assert_int_equal(op_callbacks, 1);
	assert_int_equal(released, 1);
}

static void test_sm_deadline(void **state)
{
	struct outcome o = {0};

	(void)state;
	run_probe(HANG_SLEEP, "30ms", &o);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.status, -ETIMEDOUT);
	assert_non_null(strstr(o.msg, "something that never comes"));
	assert_int_equal(released, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns1123),
		cmocka_unit_test(test_substitute),
		cmocka_unit_test(test_flux_sync_files),
		cmocka_unit_test(test_flux_kustomizations_of_fleet),
		cmocka_unit_test(test_revision),
		cmocka_unit_test(test_sm_polls_to_done),
		cmocka_unit_test(test_sm_cancel_while_sleeping),
		cmocka_unit_test(test_sm_cancel_while_busy),
		cmocka_unit_test(test_sm_deadline),
	};

	co_time_set_scale(1.0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
