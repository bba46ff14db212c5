/*
 * Unit tests for the kubesim object store: selectors, metadata rules (uid,
 * resourceVersion, generation), server-side apply merge and ownership, merge patch,
 * namespace cascade, watch events and resume, persistence round trip.
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
#include <unistd.h>

#include "sim/store.h"

static const struct ks_key DEPLOY = { "apps", "deployments", "default", "web" };
static const struct ks_key CM = { "", "configmaps", "default", "cfg" };

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, 0, &e);
	if (!v)
		fail_msg("bad test json: %s: %s", e.text, text);
	return v;
}

static struct ks_store *new_store(void)
{
	struct ks_store *s;
	struct co_error err = CO_ERROR_INIT;
	assert_int_equal(ks_store_new(&s, NULL, NULL, &err), 0);
	assert_int_equal(ks_store_bootstrap(s, &err), 0);
	return s;
}

static const char *meta(const json_t *o, const char *f)
{
	return json_string_value(json_object_get(json_object_get(o, "metadata"), f));
}

static json_int_t generation(const json_t *o)
{
	return json_integer_value(json_object_get(json_object_get(o, "metadata"),
						  "generation"));
}

static const char *deploy_json =
	"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
	"\"metadata\":{\"name\":\"web\",\"labels\":{\"app\":\"web\"}},"
	"\"spec\":{\"replicas\":2,\"template\":{\"spec\":{\"containers\":["
	"{\"name\":\"app\",\"image\":\"podinfo:1\",\"env\":[{\"name\":\"A\",\"value\":\"1\"}]}"
	"]}}}}";

static void test_dns1123(void **state)
{
	assert_true(ks_dns1123_label("a"));
	assert_true(ks_dns1123_label("web-1"));
	assert_false(ks_dns1123_label("-web"));
	assert_false(ks_dns1123_label("web-"));
	assert_false(ks_dns1123_label("Web"));
	assert_false(ks_dns1123_label("a.b"));
	assert_false(ks_dns1123_label(""));
	char long64[65];
	memset(long64, 'a', 64);
	long64[64] = '\0';
	assert_false(ks_dns1123_label(long64));
	assert_true(ks_dns1123_subdomain("a.b-c.d"));
	assert_false(ks_dns1123_subdomain("a..b"));
	assert_false(ks_dns1123_subdomain("a_b"));
}

static void test_selectors(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct ks_selector *sel;
	json_t *o = parse("{\"metadata\":{\"name\":\"x\",\"namespace\":\"ns1\","
			  "\"labels\":{\"app\":\"web\",\"tier\":\"fe\"}},"
			  "\"status\":{\"phase\":\"Running\"}}");
	static const struct {
		char kind;
		const char *text;
		bool match;
	} cases[] = {
		{ 'l', "", true },
		{ 'l', "app=web", true },
		{ 'l', "app==web", true },
		{ 'l', "app!=web", false },
		{ 'l', "app=db", false },
		{ 'l', "app in (db, web)", true },
		{ 'l', "app notin (db,web)", false },
		{ 'l', "tier", true },
		{ 'l', "!tier", false },
		{ 'l', "!missing", true },
		{ 'l', "missing!=x", true },
		{ 'l', "app=web,tier=fe", true },
		{ 'l', "app=web,tier=be", false },
		{ 'f', "metadata.name=x", true },
		{ 'f', "metadata.name!=x", false },
		{ 'f', "metadata.namespace==ns1", true },
		{ 'f', "metadata.namespace=ns2", false },
		{ 'f', "status.phase=Running,metadata.name=x", true },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ks_selector_parse(&sel, cases[i].kind, cases[i].text, &err), 0);
		if (ks_selector_match(sel, o) != cases[i].match)
			fail_msg("selector '%s' should %smatch", cases[i].text,
				 cases[i].match ? "" : "not ");
		ks_selector_free(sel);
	}
	static const char *const bad_l[] = { "app in (a", "a=b,", "a b c", "app=we b" };
	for (size_t i = 0; i < sizeof(bad_l) / sizeof(bad_l[0]); i++) {
		sel = NULL;
		assert_int_equal(ks_selector_parse(&sel, 'l', bad_l[i], &err), -EBADMSG);
		assert_null(sel);
	}
	assert_int_equal(ks_selector_parse(&sel, 'f', "metadata.name", &err), -EBADMSG);
	json_decref(o);
}

static void test_create_get_list(void **state)
{
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	json_t *o = parse(deploy_json), *got, *items;
	uint64_t rv0 = ks_store_rv(s), rv;

	assert_int_equal(ks_store_create(s, &DEPLOY, o, "test", 0, &got, &err), 0);
	assert_non_null(meta(got, "uid"));
	assert_int_equal(strlen(meta(got, "uid")), 36);
	assert_non_null(meta(got, "creationTimestamp"));
	assert_int_equal(generation(got), 1);
	assert_int_equal(strtoull(meta(got, "resourceVersion"), NULL, 10), rv0 + 1);
	assert_string_equal(meta(got, "namespace"), "default");
	json_decref(got);

	/* second create: AlreadyExists */
	assert_int_equal(ks_store_create(s, &DEPLOY, o, "test", 0, NULL, &err), -EEXIST);
	assert_string_equal(err.msg, "deployments.apps \"web\" already exists");
	int http;
	assert_string_equal(ks_store_status_reason(err.code, &http), "AlreadyExists");
	assert_int_equal(http, 409);

	/* missing namespace, bad name, name mismatch */
	struct ks_key k = DEPLOY;
	k.ns = "nope";
	assert_int_equal(ks_store_create(s, &k, o, "test", 0, NULL, &err), -ENOENT);
	json_t *bad = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
			    "\"metadata\":{\"name\":\"Bad_Name\"}}");
	k = CM;
	k.name = NULL;
	assert_int_equal(ks_store_create(s, &k, bad, "test", 0, NULL, &err), -EINVAL);
	k.name = "other";
	assert_int_equal(ks_store_create(s, &k, bad, "test", 0, NULL, &err), -EBADMSG);
	json_decref(bad);

	/* dry run commits nothing */
	json_t *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
			   "\"metadata\":{\"name\":\"cfg\",\"labels\":{\"app\":\"x\"}}}");
	rv = ks_store_rv(s);
	assert_int_equal(ks_store_create(s, &CM, cm, "t", KS_WRITE_DRY_RUN, &got, &err), 0);
	json_decref(got);
	assert_int_equal(ks_store_rv(s), rv);
	assert_int_equal(ks_store_get(s, &CM, &got, &err), -ENOENT);
	assert_string_equal(err.msg, "configmaps \"cfg\" not found");
	assert_int_equal(ks_store_create(s, &CM, cm, "t", 0, NULL, &err), 0);

	/* list with selectors, across namespaces, sorted */
	struct ks_key all = { "", "configmaps", NULL, NULL };
	assert_int_equal(ks_store_list(s, &all, NULL, &items, &rv, &err), 0);
	assert_int_equal(json_array_size(items), 1);
	assert_int_equal(rv, ks_store_rv(s));
	json_decref(items);
	struct ks_list_opts lo = { .label_selector = "app=y" };
	assert_int_equal(ks_store_list(s, &all, &lo, &items, NULL, &err), 0);
	assert_int_equal(json_array_size(items), 0);
	json_decref(items);
	lo = (struct ks_list_opts){ .field_selector = "metadata.name=cfg" };
	assert_int_equal(ks_store_list(s, &all, &lo, &items, NULL, &err), 0);
	assert_int_equal(json_array_size(items), 1);
	json_decref(items);
	lo = (struct ks_list_opts){ .label_selector = "a in (" };
	assert_int_equal(ks_store_list(s, &all, &lo, &items, NULL, &err), -EBADMSG);
	struct ks_key nsk = { "", "namespaces", NULL, NULL };
	assert_int_equal(ks_store_list(s, &nsk, NULL, &items, NULL, &err), 0);
	assert_int_equal(json_array_size(items), 4);
	assert_string_equal(meta(json_array_get(items, 0), "name"), "default");
	assert_string_equal(meta(json_array_get(items, 3), "name"), "kube-system");
	json_decref(items);

	json_decref(cm);
	json_decref(o);
	ks_store_free(s);
}

static void test_update_generation_rv(void **state)
{
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	json_t *o = parse(deploy_json), *v1, *v2;
	assert_int_equal(ks_store_create(s, &DEPLOY, o, "t", 0, &v1, &err), 0);
	const char *uid = meta(v1, "uid");

	/* label change: rv bumps, generation does not */
	json_t *u = json_deep_copy(v1);
	json_object_set_new(json_object_get(json_object_get(u, "metadata"), "labels"), "x",
			    json_string("y"));
	assert_int_equal(ks_store_update(s, &DEPLOY, u, "t", 0, &v2, &err), 0);
	assert_int_equal(generation(v2), 1);
	assert_string_equal(meta(v2, "uid"), uid);
	assert_true(strtoull(meta(v2, "resourceVersion"), NULL, 10) >
		    strtoull(meta(v1, "resourceVersion"), NULL, 10));

	/* the stale rv of v1 now conflicts */
	assert_int_equal(ks_store_update(s, &DEPLOY, u, "t", 0, NULL, &err), -ESTALE);
	json_decref(u);

	/* spec change: generation bumps */
	u = json_deep_copy(v2);
	json_object_set_new(json_object_get(u, "spec"), "replicas", json_integer(5));
	json_t *v3;
	assert_int_equal(ks_store_update(s, &DEPLOY, u, "t", 0, &v3, &err), 0);
	assert_int_equal(generation(v3), 2);
	json_decref(u);

	/* no-op update: nothing committed */
	uint64_t rv = ks_store_rv(s);
	json_t *v4;
	assert_int_equal(ks_store_update(s, &DEPLOY, v3, "t", 0, &v4, &err), 0);
	assert_int_equal(ks_store_rv(s), rv);
	assert_string_equal(meta(v4, "resourceVersion"), meta(v3, "resourceVersion"));
	json_decref(v4);

	/* status update: only status, no generation bump */
	json_t *st = parse("{\"status\":{\"readyReplicas\":5},\"spec\":{\"replicas\":9}}");
	assert_int_equal(ks_store_update_status(s, &DEPLOY, st, "ctl", 0, &v4, &err), 0);
	assert_int_equal(generation(v4), 2);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v4, "spec"),
							    "replicas")), 5);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(v4, "status"),
							    "readyReplicas")), 5);
	json_decref(st);

	/* main-resource update with KEEP_STATUS keeps the stored status */
	u = json_deep_copy(v4);
	json_object_set_new(u, "status", json_object());
	json_t *v5;
	assert_int_equal(ks_store_update(s, &DEPLOY, u, "t", KS_WRITE_KEEP_STATUS, &v5, &err),
			 0);
	assert_non_null(json_object_get(json_object_get(v5, "status"), "readyReplicas"));
	json_decref(u);

	/* update of a missing object */
	struct ks_key k = DEPLOY;
	k.name = "missing";
	assert_int_equal(ks_store_update(s, &k, o, "t", 0, NULL, &err), -ENOENT);

	json_decref(v1);
	json_decref(v2);
	json_decref(v3);
	json_decref(v4);
	json_decref(v5);
	json_decref(o);
	ks_store_free(s);
}

static void test_merge_patch(void **state)
{
	json_t *t = parse("{\"a\":\"b\",\"c\":{\"d\":\"e\",\"f\":\"g\"},\"l\":[1,2]}");
	json_t *p = parse("{\"a\":\"z\",\"c\":{\"f\":null},\"l\":[3],\"n\":{\"x\":null}}");
	json_t *r = ks_merge_patch(t, p, false);
	json_t *want = parse("{\"a\":\"z\",\"c\":{\"d\":\"e\"},\"l\":[3],\"n\":{}}");
	assert_true(json_equal(r, want));
	json_decref(r);
	json_decref(want);
	/* RFC 7386 appendix examples: non-object patch replaces */
	json_t *arr = parse("[\"c\"]");
	r = ks_merge_patch(t, arr, false);
	assert_true(json_equal(r, arr));
	json_decref(r);
	json_decref(arr);

	/* list-maps: strategic merges containers by name; plain merge replaces */
	json_t *live = parse("{\"containers\":[{\"name\":\"a\",\"image\":\"1\"},"
			     "{\"name\":\"b\",\"image\":\"2\"}],\"args\":[\"x\"]}");
	json_t *patch = parse("{\"containers\":[{\"name\":\"b\",\"image\":\"3\"}],"
			      "\"args\":[\"y\"]}");
	r = ks_merge_patch(live, patch, true);
	want = parse("{\"containers\":[{\"name\":\"b\",\"image\":\"3\"},"
		     "{\"name\":\"a\",\"image\":\"1\"}],\"args\":[\"y\"]}");
	assert_true(json_equal(r, want));
	json_decref(r);
	json_decref(want);
	r = ks_merge_patch(live, patch, false);
	assert_int_equal(json_array_size(json_object_get(r, "containers")), 1);
	json_decref(r);
	json_decref(live);
	json_decref(patch);

	/* ports without names merge by port and protocol */
	live = parse("{\"ports\":[{\"port\":80,\"targetPort\":8080},"
		     "{\"port\":53,\"protocol\":\"UDP\"}]}");
	patch = parse("{\"ports\":[{\"port\":80,\"protocol\":\"TCP\",\"targetPort\":9090}]}");
	r = ks_merge_patch(live, patch, true);
	assert_int_equal(json_array_size(json_object_get(r, "ports")), 2);
	assert_int_equal(json_integer_value(json_object_get(
				 json_array_get(json_object_get(r, "ports"), 0), "targetPort")),
			 9090);
	json_decref(r);
	json_decref(live);
	json_decref(patch);
	json_decref(t);
	json_decref(p);

	/* through the store: patch, status patch, strategic directives rejected */
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	json_t *o = parse(deploy_json), *got;
	assert_int_equal(ks_store_create(s, &DEPLOY, o, "t", 0, NULL, &err), 0);
	p = parse("{\"metadata\":{\"labels\":{\"app\":null,\"v\":\"2\"}},"
		  "\"spec\":{\"replicas\":3}}");
	assert_int_equal(ks_store_patch(s, &DEPLOY, p, KS_PATCH_MERGE, false, "kubectl", 0,
					&got, &err), 0);
	json_t *labels = json_object_get(json_object_get(got, "metadata"), "labels");
	assert_null(json_object_get(labels, "app"));
	assert_string_equal(json_string_value(json_object_get(labels, "v")), "2");
	assert_int_equal(generation(got), 2);
	json_decref(got);
	json_decref(p);
	p = parse("{\"status\":{\"replicas\":3},\"spec\":{\"replicas\":7}}");
	assert_int_equal(ks_store_patch(s, &DEPLOY, p, KS_PATCH_MERGE, true, "ctl", 0, &got,
					&err), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "spec"),
							    "replicas")), 3);
	assert_int_equal(generation(got), 2);
	json_decref(got);
	json_decref(p);
	p = parse("{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"app\","
		  "\"$patch\":\"delete\"}]}}}}");
	assert_int_equal(ks_store_patch(s, &DEPLOY, p, KS_PATCH_STRATEGIC, false, "k", 0,
					NULL, &err), -EINVAL);
	json_decref(p);
	json_decref(o);
	ks_store_free(s);
}

static json_t *container(json_t *deploy, size_t i)
{
	json_t *spec = json_object_get(json_object_get(deploy, "spec"), "template");
	return json_array_get(json_object_get(json_object_get(spec, "spec"), "containers"), i);
}

static void test_apply(void **state)
{
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	json_t *cfg = parse(deploy_json), *got;
	bool created = false;

	assert_int_equal(ks_store_apply(s, &DEPLOY, cfg, "flux", false, 0, &got, &created,
					&err), 0);
	assert_true(created);
	json_t *mf = json_object_get(json_object_get(got, "metadata"), "managedFields");
	assert_int_equal(json_array_size(mf), 1);
	json_t *entry = json_array_get(mf, 0);
	assert_string_equal(json_string_value(json_object_get(entry, "manager")), "flux");
	assert_string_equal(json_string_value(json_object_get(entry, "operation")), "Apply");
	assert_string_equal(json_string_value(json_object_get(entry, "fieldsType")),
			    "FieldsV1");
	json_t *f = json_object_get(json_object_get(entry, "fieldsV1"), "f:spec");
	assert_non_null(json_object_get(f, "f:replicas"));
	f = json_object_get(json_object_get(json_object_get(f, "f:template"), "f:spec"),
			    "f:containers");
	assert_non_null(json_object_get(f, "k:{\"name\":\"app\"}"));
	json_decref(got);

	/* identical re-apply: no write */
	uint64_t rv = ks_store_rv(s);
	assert_int_equal(ks_store_apply(s, &DEPLOY, cfg, "flux", false, 0, &got, &created,
					&err), 0);
	assert_false(created);
	assert_int_equal(ks_store_rv(s), rv);
	json_decref(got);

	/* another manager adds a container and an env var: list-maps merge by name */
	json_t *other = parse(
		"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
		"\"web\"},\"spec\":{\"template\":{\"spec\":{\"containers\":["
		"{\"name\":\"app\",\"env\":[{\"name\":\"B\",\"value\":\"2\"}]},"
		"{\"name\":\"sidecar\",\"image\":\"envoy\"}]}}}}");
	if (ks_store_apply(s, &DEPLOY, other, "mesh", false, 0, &got, NULL, &err) != 0)
		fail_msg("apply: %s", err.msg);
	assert_string_equal(json_string_value(json_object_get(container(got, 0), "image")),
			    "podinfo:1");
	assert_int_equal(json_array_size(json_object_get(container(got, 0), "env")), 2);
	assert_string_equal(json_string_value(json_object_get(container(got, 1), "name")),
			    "sidecar");
	assert_int_equal(generation(got), 2);
	json_decref(got);
	json_decref(other);

	/* conflict: mesh sets replicas owned by flux to another value */
	other = parse("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":"
		      "{\"name\":\"web\"},\"spec\":{\"replicas\":9}}");
	assert_int_equal(ks_store_apply(s, &DEPLOY, other, "scaler", false, 0, NULL, NULL,
					&err), -EBUSY);
	assert_non_null(strstr(err.msg, ".spec.replicas"));
	int http;
	assert_string_equal(ks_store_status_reason(err.code, &http), "Conflict");
	assert_int_equal(http, 409);
	/* force takes ownership */
	assert_int_equal(ks_store_apply(s, &DEPLOY, other, "scaler", true, 0, &got, NULL,
					&err), 0);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "spec"),
							    "replicas")), 9);
	json_decref(got);
	json_decref(other);

	/* flux drops env A and the replicas field: A is removed (only flux owned it),
	 * replicas stays (scaler owns it now) */
	json_t *cfg2 = parse(
		"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
		"\"metadata\":{\"name\":\"web\",\"labels\":{\"app\":\"web\"}},"
		"\"spec\":{\"template\":{\"spec\":{\"containers\":["
		"{\"name\":\"app\",\"image\":\"podinfo:2\"}]}}}}");
	assert_int_equal(ks_store_apply(s, &DEPLOY, cfg2, "flux", false, 0, &got, NULL, &err),
			 0);
	json_t *env = json_object_get(container(got, 0), "env");
	assert_int_equal(json_array_size(env), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(env, 0), "name")),
			    "B");
	assert_string_equal(json_string_value(json_object_get(container(got, 0), "image")),
			    "podinfo:2");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(got, "spec"),
							    "replicas")), 9);
	json_decref(got);

	/* stale resourceVersion in the applied config */
	json_t *stale = json_deep_copy(cfg2);
	json_object_set_new(json_object_get(stale, "metadata"), "resourceVersion",
			    json_string("1"));
	assert_int_equal(ks_store_apply(s, &DEPLOY, stale, "flux", false, 0, NULL, NULL,
					&err), -ESTALE);
	json_decref(stale);

	json_decref(cfg2);
	json_decref(cfg);
	ks_store_free(s);
}

struct recorder {
	json_t *events; /* ["ADDED web 12", ...] */
	struct ks_store *store;
	struct ks_watch *self;
	int writes_left;
	int cancel_after;
};

static void record_cb(const struct ks_event *ev, void *data)
{
	struct recorder *r = data;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s %s/%s %s", ks_event_type_name(ev->type), ev->resource,
		 meta(ev->obj, "name"), meta(ev->obj, "resourceVersion"));
	json_array_append_new(r->events, json_string(buf));
	if (r->writes_left > 0 && ev->type == KS_EVENT_ADDED) {
		/* a controller reacting with a write of its own */
		r->writes_left--;
		json_t *p = parse("{\"metadata\":{\"annotations\":{\"seen\":\"1\"}}}");
		struct ks_key k = { ev->group, ev->resource,
				    meta(ev->obj, "namespace"), meta(ev->obj, "name") };
		ks_store_patch(r->store, &k, p, KS_PATCH_MERGE, false, "ctl", 0, NULL, NULL);
		json_decref(p);
	}
	if (r->cancel_after > 0 && --r->cancel_after == 0)
		ks_watch_cancel(r->self);
}

static const char *ev_at(struct recorder *r, size_t i)
{
	return json_string_value(json_array_get(r->events, i));
}

static void test_watch(void **state)
{
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	struct recorder all = { json_array(), s, NULL, 0, 0 };
	struct recorder cms = { json_array(), s, NULL, 1, 0 };
	struct ks_watch *w_all, *w_cm;
	struct ks_watch_filter f_cm = { .group = "", .resource = "configmaps",
					.ns = "default" };

	/* from 0: ADDED for the four namespaces first */
	assert_int_equal(ks_store_watch(&w_all, s, NULL, 0, record_cb, &all, &err), 0);
	assert_int_equal(json_array_size(all.events), 4);
	assert_int_equal(ks_store_watch(&w_cm, s, &f_cm, 0, record_cb, &cms, &err), 0);
	assert_int_equal(json_array_size(cms.events), 0);
	uint64_t rv_before = ks_store_rv(s);

	json_t *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
			   "\"metadata\":{\"name\":\"cfg\"},\"data\":{\"a\":\"1\"}}");
	assert_int_equal(ks_store_create(s, &CM, cm, "t", 0, NULL, &err), 0);
	/* cms patched from its callback: both watchers see ADDED then MODIFIED, in order */
	char want[64];
	assert_int_equal(json_array_size(cms.events), 2);
	snprintf(want, sizeof(want), "ADDED configmaps/cfg %llu",
		 (unsigned long long)rv_before + 1);
	assert_string_equal(ev_at(&cms, 0), want);
	snprintf(want, sizeof(want), "MODIFIED configmaps/cfg %llu",
		 (unsigned long long)rv_before + 2);
	assert_string_equal(ev_at(&cms, 1), want);
	assert_string_equal(ev_at(&all, 5), want);

	/* a secret in default: cms (configmaps only) does not see it */
	struct ks_key sk = { "", "secrets", "default", "s" };
	json_t *sec = parse("{\"apiVersion\":\"v1\",\"kind\":\"Secret\","
			    "\"metadata\":{\"name\":\"s\"}}");
	assert_int_equal(ks_store_create(s, &sk, sec, "t", 0, NULL, &err), 0);
	assert_int_equal(json_array_size(cms.events), 2);
	assert_int_equal(json_array_size(all.events), 7);

	/* namespace deletion cascades: DELETED for the objects, then the namespace */
	struct ks_key nk = { "", "namespaces", NULL, "default" };
	assert_int_equal(ks_store_delete(s, &nk, 0, NULL, &err), 0);
	assert_int_equal(json_array_size(cms.events), 3);
	assert_non_null(strstr(ev_at(&cms, 2), "DELETED configmaps/cfg"));
	assert_non_null(strstr(ev_at(&all, json_array_size(all.events) - 1),
			       "DELETED namespaces/default"));
	assert_int_equal(ks_store_get(s, &sk, &sec, NULL), -ENOENT);
	json_decref(sec);
	sec = NULL;

	/* resume from a resourceVersion replays what came after it */
	struct recorder resume = { json_array(), s, NULL, 0, 0 };
	struct ks_watch *w_res;
	assert_int_equal(ks_store_watch(&w_res, s, &f_cm, rv_before, record_cb, &resume,
					&err), 0);
	assert_int_equal(json_array_size(resume.events), 3);
	assert_true(json_equal(resume.events, cms.events));

	/* a watch cancelling itself from its callback sees exactly one live event */
	struct recorder once = { json_array(), s, NULL, 0, 0 };
	struct ks_watch *w_once;
	assert_int_equal(ks_store_watch(&w_once, s, NULL, 0, record_cb, &once, &err), 0);
	once.self = w_once;
	once.cancel_after = 1;
	size_t n_once = json_array_size(once.events);
	assert_int_equal(ks_store_bootstrap(s, &err), 0); /* recreates default */
	assert_int_equal(ks_store_create(s, &CM, cm, "t", 0, NULL, &err), 0);
	assert_int_equal(json_array_size(once.events), n_once + 1);

	ks_watch_cancel(w_cm);
	ks_watch_cancel(w_res);
	json_decref(cm);
	json_decref(all.events);
	json_decref(cms.events);
	json_decref(resume.events);
	json_decref(once.events);
	ks_store_free(s);
}

static void test_watch_too_old(void **state)
{
	struct ks_store *s = new_store();
	struct co_error err = CO_ERROR_INIT;
	json_t *cm = parse("{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\","
			   "\"metadata\":{\"name\":\"cfg\"},\"data\":{\"n\":\"0\"}}");
	assert_int_equal(ks_store_create(s, &CM, cm, "t", 0, NULL, &err), 0);
	for (int i = 0; i < KS_STORE_HISTORY + 10; i++) {
		char n[16];
		snprintf(n, sizeof(n), "%d", i + 1);
		json_object_set_new(json_object_get(cm, "data"), "n", json_string(n));
		assert_int_equal(ks_store_update(s, &CM, cm, "t", 0, NULL, &err), 0);
	}
	struct ks_watch *w = NULL;
	struct recorder r = { json_array(), s, NULL, 0, 0 };
	assert_int_equal(ks_store_watch(&w, s, NULL, 2, record_cb, &r, &err), -ERANGE);
	assert_null(w);
	assert_int_equal(json_array_size(r.events), 0);
	assert_int_equal(ks_store_watch(&w, s, NULL, ks_store_rv(s) - 5, record_cb, &r, &err),
			 0);
	assert_int_equal(json_array_size(r.events), 5);
	json_decref(r.events);
	json_decref(cm);
	ks_store_free(s);
}

static void test_persistence(void **state)
{
	char dir[] = "/tmp/ks-store-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256];
	snprintf(path, sizeof(path), "%s/objects.json", dir);
	struct ks_store_opts opts = { .snapshot_path = path };
	struct co_error err = CO_ERROR_INIT;
	struct ks_store *s;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);

	assert_int_equal(ks_store_new(&s, &loop, &opts, &err), 0);
	assert_int_equal(ks_store_bootstrap(s, &err), 0);
	json_t *o = parse(deploy_json), *before, *after;
	assert_int_equal(ks_store_apply(s, &DEPLOY, o, "flux", false, 0, &before, NULL, &err),
			 0);
	uint64_t rv = ks_store_rv(s);
	/* debounced: nothing on disk until the timer fires */
	struct stat st;
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	ks_store_free(s);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);

	assert_int_equal(ks_store_new(&s, &loop, &opts, &err), 0);
	assert_int_equal(ks_store_rv(s), rv);
	assert_int_equal(ks_store_count(s), 5);
	assert_int_equal(ks_store_get(s, &DEPLOY, &after, &err), 0);
	assert_true(json_equal(before, after));
	json_decref(after);
	/* the rv counter continues; a write after reload is flushed by free */
	struct ks_key k = { "", "namespaces", NULL, "x" };
	json_t *ns = parse("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\","
			   "\"metadata\":{\"name\":\"x\"}}");
	assert_int_equal(ks_store_create(s, &k, ns, "t", 0, &after, &err), 0);
	assert_int_equal(strtoull(meta(after, "resourceVersion"), NULL, 10), rv + 1);
	json_decref(after);
	ks_store_free(s);
	assert_int_equal(ks_store_new(&s, NULL, &opts, &err), 0);
	assert_int_equal(ks_store_count(s), 6);
	ks_store_forget(s);
	assert_int_equal(stat(path, &st), -1);
	ks_store_free(s);

	/* a corrupt snapshot is an error, not an empty store */
	FILE *fp = fopen(path, "w");
	fputs("{\"objects\": [", fp);
	fclose(fp);
	s = NULL;
	assert_int_equal(ks_store_new(&s, NULL, &opts, &err), -EINVAL);
	assert_null(s);
	unlink(path);

	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	json_decref(ns);
	json_decref(before);
	json_decref(o);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dns1123),
		cmocka_unit_test(test_selectors),
		cmocka_unit_test(test_create_get_list),
		cmocka_unit_test(test_update_generation_rv),
		cmocka_unit_test(test_merge_patch),
		cmocka_unit_test(test_apply),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_watch_too_old),
		cmocka_unit_test(test_persistence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
