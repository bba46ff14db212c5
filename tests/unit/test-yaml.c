/*
 * Unit tests for YAML <-> JSON: real-world manifests round-trip (load -> dump -> load
 * gives equal JSON), Kubernetes-style scalar resolution, anchors and merge keys, the
 * emitter's quoting, located errors, and the limits for hostile input.
 * Fixtures live in tests/fixtures/yaml/ (CO_TEST_FIXTURES points at tests/fixtures).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/yaml.h"

static char *fixture_path(const char *name)
{
	const char *dir = getenv("CO_TEST_FIXTURES");

	assert_non_null(dir);
	return co_asprintf("%s/yaml/%s", dir, name);
}

static json_t *load_fixture(const char *name)
{
	struct co_error err = CO_ERROR_INIT;
	char *path = fixture_path(name);
	json_t *docs = NULL;
	int r;

	r = co_yaml_load_file(&docs, path, &err);
	if (r < 0)
		fail_msg("load '%s': %s", path, err.msg);
	free(path);
	return docs;
}

static json_t *load_str(const char *yaml)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *docs = NULL;

	if (co_yaml_load_all(&docs, yaml, strlen(yaml), "t.yaml", &err) < 0)
		fail_msg("load: %s\n%s", err.msg, yaml);
	return docs;
}

/* The value of key "v" in the only document of yaml. */
static json_t *load_v(const char *yaml)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *doc = NULL, *v;

	if (co_yaml_load_one(&doc, yaml, strlen(yaml), NULL, &err) < 0)
		fail_msg("load: %s\n%s", err.msg, yaml);
	v = json_incref(json_object_get(doc, "v"));
	assert_non_null(v);
	json_decref(doc);
	return v;
}

/* Expect yaml to be rejected with code, and the message to start with prefix. */
static void expect_error(const char *yaml, size_t len, int code, const char *prefix)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *sentinel = json_string("untouched"), *docs = sentinel;

	assert_int_equal(co_yaml_load_all(&docs, yaml, len, "bad.yaml", &err), code);
	assert_ptr_equal(docs, sentinel);
	assert_int_equal(err.code, code);
	if (strncmp(err.msg, prefix, strlen(prefix)) != 0)
		fail_msg("error '%s' does not start with '%s'", err.msg, prefix);
	json_decref(sentinel);
}

/* dump_all then load again: must give equal JSON. Returns the YAML text (free()). */
static char *round_trip(const json_t *docs)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_buf out = CO_BUF_INIT;
	json_t *again = NULL;

	assert_int_equal(co_yaml_dump_all(&out, docs, &err), 0);
	if (co_yaml_load_all(&again, co_buf_cstr(&out), out.len, "dumped", &err) < 0)
		fail_msg("reload: %s\n%s", err.msg, co_buf_cstr(&out));
	if (!json_equal(docs, again)) {
		char *a = json_dumps(docs, JSON_ENCODE_ANY);
		char *b = json_dumps(again, JSON_ENCODE_ANY);

		fail_msg("round trip changed value\n%s\n%s\n%s", a, b, co_buf_cstr(&out));
	}
	json_decref(again);
	return co_buf_detach(&out, NULL);
}

static const char *str_at(const json_t *doc, const char *path)
{
	json_t *v = (json_t *)doc;
	char *copy = co_strdup(path), *save = NULL;

	for (char *tok = strtok_r(copy, ".", &save); tok;
	     tok = strtok_r(NULL, ".", &save))
		v = json_is_array(v) ? json_array_get(v, strtoul(tok, NULL, 10))
				     : json_object_get(v, tok);
	free(copy);
	if (!json_is_string(v))
		fail_msg("'%s' is not a string", path);
	return json_string_value(v);
}

static void test_flux_sync(void **state)
{
	json_t *docs = load_fixture("gotk-sync.yaml"), *d0, *d1;
	char *text;

	assert_int_equal(json_array_size(docs), 2);
	d0 = json_array_get(docs, 0);
	d1 = json_array_get(docs, 1);
	assert_string_equal(str_at(d0, "kind"), "GitRepository");
	assert_string_equal(str_at(d0, "spec.url"),
			    "ssh://git@github.com/example/fleet-infra");
	assert_string_equal(str_at(d0, "spec.ref.branch"), "main");
	assert_string_equal(str_at(d0, "spec.interval"), "1m0s");
	assert_string_equal(str_at(d1, "kind"), "Kustomization");
	assert_string_equal(str_at(d1, "spec.path"), "./clusters/staging/northeurope");
	assert_true(json_is_true(json_object_get(json_object_get(d1, "spec"), "prune")));

	text = round_trip(docs);
	/* no leading "---", one separator, kubectl-like block layout */
	assert_int_equal(strncmp(text, "apiVersion: source.toolkit.fluxcd.io/v1\n", 40),
			 0);
	assert_non_null(
		strstr(text, "\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\n"));
	assert_non_null(
		strstr(text, "spec:\n  interval: 1m0s\n  ref:\n    branch: main\n"));
	assert_null(strstr(strstr(text, "---") + 3, "---"));
	free(text);
	json_decref(docs);
}

static void test_deployment_service_ingress(void **state)
{
	json_t *docs = load_fixture("app.yaml"), *dep, *c0, *ing;
	char *text;

	assert_int_equal(json_array_size(docs), 3);
	dep = json_array_get(docs, 0);
	assert_string_equal(str_at(dep, "kind"), "Deployment");
	assert_string_equal(str_at(json_array_get(docs, 1), "kind"), "Service");
	ing = json_array_get(docs, 2);
	assert_string_equal(str_at(ing, "kind"), "Ingress");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(dep, "spec"),
							    "replicas")),
			 2);
	/* quoted scalars stay strings */
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(json_object_get(dep, "metadata"), "annotations"),
			"deployment.kubernetes.io/revision")),
		"3");
	c0 = json_array_get(
		json_object_get(
			json_object_get(
				json_object_get(json_object_get(dep, "spec"), "template"),
				"spec"),
			"containers"),
		0);
	assert_string_equal(str_at(c0, "env.0.value"), "#34577c");
	assert_string_equal(str_at(c0, "env.1.value"), "");
	assert_string_equal(str_at(c0, "resources.limits.cpu"), "2000m");
	assert_int_equal(
		json_integer_value(json_object_get(json_object_get(c0, "readinessProbe"),
						   "initialDelaySeconds")),
		5);
	/* flow mapping inside block style */
	assert_string_equal(str_at(c0, "readinessProbe.httpGet.path"), "/readyz");
	/* YAML 1.1 boolean */
	assert_true(json_is_true(
		json_object_get(json_object_get(c0, "securityContext"), "runAsNonRoot")));
	assert_true(json_is_array(json_object_get(json_object_get(ing, "spec"), "tls")));

	text = round_trip(docs);
	assert_non_null(strstr(text, "    prometheus.io/scrape: \"true\"\n"));
	assert_non_null(strstr(text, "    deployment.kubernetes.io/revision: \"3\"\n"));
	assert_non_null(strstr(text, "          value: '#34577c'\n"));
	assert_non_null(strstr(text, "          value: \"\"\n"));
	assert_non_null(strstr(text, "      containers:\n      - name: podinfod\n"));
	assert_non_null(strstr(text, "  tls: []\n"));
	assert_non_null(strstr(text, "        runAsNonRoot: true\n"));
	free(text);
	json_decref(docs);
}

static void test_kustomization_json6902(void **state)
{
	json_t *docs = load_fixture("kustomization.yaml"), *k, *all, *ops;
	const char *patch;
	char *text;

	assert_int_equal(json_array_size(docs), 1);
	k = json_array_get(docs, 0);
	patch = str_at(k, "patches.0.patch");
	assert_int_equal(
		strncmp(patch, "- op: replace\n  path: /spec/replicas\n  value: 3\n", 47),
		0);
	assert_int_equal(patch[strlen(patch) - 1], '\n');
	assert_string_equal(str_at(k, "images.0.newTag"), "6.4.1");
	assert_true(json_is_true(json_object_get(
		json_object_get(
			json_array_get(json_object_get(k, "configMapGenerator"), 0),
			"options"),
		"disableNameSuffixHash")));

	/* the block string is itself YAML: a JSON6902 patch with an int value */
	all = load_str(patch);
	assert_int_equal(json_array_size(all), 1);
	ops = json_array_get(all, 0);
	assert_int_equal(json_array_size(ops), 2);
	assert_int_equal(
		json_integer_value(json_object_get(json_array_get(ops, 0), "value")), 3);
	assert_string_equal(str_at(ops, "1.value.value"), "hello: world # not a comment");
	json_decref(all);

	text = round_trip(docs);
	assert_non_null(strstr(
		text, "  patch: |\n    - op: replace\n      path: /spec/replicas\n"));
	free(text);
	json_decref(docs);
}

struct scalar_case {
	const char *yaml; /* the value after "v: " */
	const char *json; /* expected, as JSON text */
};

static void test_scalar_resolution(void **state)
{
	static const struct scalar_case cases[] = {
		{"\"true\"", "\"true\""},
		{"'yes'", "\"yes\""},
		{"true", "true"},
		{"False", "false"},
		{"yes", "true"},
		{"No", "false"},
		{"ON", "true"},
		{"off", "false"},
		{"y", "true"},
		{"N", "false"},
		{"yES", "\"yES\""},
		{"0777", "511"},
		{"0o777", "511"},
		{"0x1F", "31"},
		{"-0x10", "-16"},
		{"0b1010", "10"},
		{"1_000_000", "1000000"},
		{"+12", "12"},
		{"0", "0"},
		{"-0", "0"},
		{"08", "8.0"},
		{"1e3", "1000.0"},
		{"-2.5E-3", "-0.0025"},
		{".5", "0.5"},
		{"1.", "1.0"},
		{"1.20", "1.2"},
		{"9223372036854775807", "9223372036854775807"},
		{"-9223372036854775808", "-9223372036854775808"},
		{"18446744073709551615", "18446744073709551615.0"},
		{"1e999", "\"1e999\""},
		{"~", "null"},
		{"", "null"},
		{"null", "null"},
		{"Null", "null"},
		{"NULL", "null"},
		{"nULL", "\"nULL\""},
		{"\".inf\"", "\".inf\""},
		{"!!str 123", "\"123\""},
		{"!!str true", "\"true\""},
		{"!!int \"42\"", "42"},
		{"!!float 3", "3.0"},
		{"!!bool \"on\"", "true"},
		{"!custom 12", "12"},
		{"! 12", "\"12\""},
		{"2001-12-14", "\"2001-12-14\""},
		{"1.2.3", "\"1.2.3\""},
		{"0x", "\"0x\""},
		{"12:30", "\"12:30\""},
		{"|\n  true\n", "\"true\\n\""},
		{">-\n  12\n", "\"12\""},
		{"'0777'", "\"0777\""},
		{"<<", "\"<<\""},
		{"a b  c", "\"a b  c\""},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *yaml = co_asprintf("v: %s\n", cases[i].yaml);
		json_t *want = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
		json_t *got = load_v(yaml);

		assert_non_null(want);
		if (!json_equal(got, want)) {
			char *g = json_dumps(got, JSON_ENCODE_ANY);

			fail_msg("'%s' resolved to %s, want %s", yaml, g, cases[i].json);
		}
		json_decref(want);
		json_decref(got);
		free(yaml);
	}
}

static void test_non_finite_rejected(void **state)
{
	expect_error("a: 1\nv: .inf\n", 13, -EINVAL,
		     "bad.yaml:2:4: '.inf' is a float json cannot represent");
	expect_error("v: [-.Inf]\n", 11, -EINVAL, "bad.yaml:1:5: '-.Inf'");
	expect_error("v: .NaN\n", 8, -EINVAL, "bad.yaml:1:4: '.NaN'");
	expect_error("v: !!int abc\n", 12, -EINVAL,
		     "bad.yaml:1:4: 'abc' is not a valid !!int");
}

static void test_keys_become_strings(void **state)
{
	json_t *docs =
		load_str("1: a\n0x10: b\nyes: c\n~: d\n2.50: e\n\"q\": f\n? g\n: h\n");
	json_t *d = json_array_get(docs, 0);
	const char *want[] = {"1", "16", "true", "null", "2.5", "q", "g"};
	const char *key;
	json_t *v;
	size_t i = 0;

	assert_int_equal(json_object_size(d), 7);
	json_object_foreach(d, key, v)
		assert_string_equal(key, want[i++]);
	json_decref(docs);

	expect_error("a: 1\nb: 2\na: 3\n", 15, -EINVAL,
		     "bad.yaml:3:1: duplicate mapping key 'a'");
	expect_error("x:\n  ? [a]\n  : b\n", 17, -EINVAL,
		     "bad.yaml:2:5: mapping keys must be scalars");
}

static void test_anchors_and_merge(void **state)
{
	static const char yaml[] =
		"base: &base\n  adapter: postgres\n  host: localhost\n  port: 5432\n"
		"extra: &extra {pool: 5, port: 1}\n"
		"dev:\n  <<: *base\n  database: dev\n"
		"test:\n  port: 5433\n  <<: [*extra, *base]\n  database: test\n"
		"list: &l [a, &s b]\ncopy: *l\nagain: *s\n"
		"quoted:\n  \"<<\": literal\n";
	json_t *docs = load_str(yaml), *d = json_array_get(docs, 0), *dev, *t, *copy;
	char *text;

	dev = json_object_get(d, "dev");
	assert_string_equal(str_at(dev, "adapter"), "postgres");
	assert_int_equal(json_integer_value(json_object_get(dev, "port")), 5432);
	assert_null(json_object_get(dev, "<<"));
	t = json_object_get(d, "test");
	/* explicit keys win, even written before "<<"; earlier merge sources win */
	assert_int_equal(json_integer_value(json_object_get(t, "port")), 5433);
	assert_int_equal(json_integer_value(json_object_get(t, "pool")), 5);
	assert_string_equal(str_at(t, "host"), "localhost");
	assert_int_equal(json_object_size(t), 5);
	assert_string_equal(str_at(d, "again"), "b");
	/* an alias is a copy: editing it leaves the anchored node alone */
	copy = json_object_get(d, "copy");
	assert_true(json_equal(copy, json_object_get(d, "list")));
	json_array_append_new(copy, json_string("added"));
	assert_int_equal(json_array_size(json_object_get(d, "list")), 2);
	/* a quoted "<<" is an ordinary key */
	assert_string_equal(str_at(d, "quoted.<<"), "literal");
	text = round_trip(docs);
	assert_non_null(strstr(text, "  \"<<\": literal\n"));
	free(text);
	json_decref(docs);

	expect_error("a: *nope\n", 9, -EINVAL, "bad.yaml:1:4: unknown anchor 'nope'");
	/* an anchor is usable only once its node is complete: no cycles */
	expect_error("a: &x [*x]\n", 11, -EINVAL, "bad.yaml:1:8: unknown anchor 'x'");
	expect_error("a: &x 1\nb:\n  <<: *x\n", 20, -EINVAL,
		     "bad.yaml:3:7: merge key '<<' needs a mapping");
}

static void test_flow_style(void **state)
{
	json_t *docs =
		load_str("{kind: ConfigMap, data: {a: \"1\", b: 2}, l: [1, 2.5, ~, [x, "
			 "{k: v}]], e: {}, none: []}\n");
	json_t *want = json_loads(
		"{\"kind\":\"ConfigMap\",\"data\":{\"a\":\"1\",\"b\":2},"
		"\"l\":[1,2.5,null,[\"x\",{\"k\":\"v\"}]],\"e\":{},\"none\":[]}",
		0, NULL);
	char *text;

	assert_true(json_equal(json_array_get(docs, 0), want));
	text = round_trip(docs);
	assert_string_equal(text,
			    "kind: ConfigMap\ndata:\n  a: \"1\"\n  b: 2\nl:\n- 1\n- 2.5\n"
			    "- null\n- - x\n  - k: v\ne: {}\nnone: []\n");
	free(text);
	json_decref(want);
	json_decref(docs);
}

static void test_documents(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *docs, *doc;

	docs = load_str(
		"# only a comment\n---\n---\na: 1\n--- ~\n---\n- x\n...\n--- text\n");
	assert_int_equal(json_array_size(docs), 3);
	assert_true(json_is_object(json_array_get(docs, 0)));
	assert_true(json_is_array(json_array_get(docs, 1)));
	assert_string_equal(json_string_value(json_array_get(docs, 2)), "text");
	json_decref(docs);

	docs = load_str("# nothing here\n");
	assert_int_equal(json_array_size(docs), 0);
	json_decref(docs);
	assert_int_equal(co_yaml_load_all(&docs, NULL, 0, NULL, &err), 0);
	assert_int_equal(json_array_size(docs), 0);
	json_decref(docs);

	assert_int_equal(
		co_yaml_load_one(&doc, "a: 1\n---\nb: 2\n", 14, "two.yaml", &err),
		-EINVAL);
	assert_string_equal(err.msg, "two.yaml: expected one yaml document, found 2");
	assert_int_equal(co_yaml_load_one(&doc, "---\n", 4, NULL, &err), -EINVAL);
	assert_string_equal(err.msg, "<input>: expected one yaml document, found 0");

	assert_int_equal(co_yaml_load_file(&docs, "/nonexistent/x.yaml", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "'/nonexistent/x.yaml'"));
}

static void test_malformed_located(void **state)
{
	expect_error("a: b\n  c: d\n", 12, -EINVAL,
		     "bad.yaml:2:4: mapping values are not allowed in this context");
	expect_error("kind: x\nl: [a, b\n", 17, -EINVAL,
		     "bad.yaml:3:1: did not find expected ',' or ']'");
	expect_error("a:\n\t- b\n", 8, -EINVAL,
		     "bad.yaml:2:1: found character that cannot");
	expect_error("a: \"unterminated\n", 17, -EINVAL,
		     "bad.yaml:2:1: found unexpected end of stream");
	expect_error("ok: 1\nbad: \xff\n", 12, -EINVAL,
		     "bad.yaml:2:6: invalid leading UTF-8 octet");
	expect_error("- a\nb: c\n", 8, -EINVAL,
		     "bad.yaml:2:1: did not find expected '-'");
}

static void test_billion_laughs(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	json_t *docs;

	co_buf_puts(&b, "l0: &l0 \"lol\"\n");
	for (int i = 1; i <= 9; i++) {
		co_buf_printf(&b, "l%d: &l%d [", i, i);
		for (int j = 0; j < 9; j++)
			co_buf_printf(&b, "*l%d, ", i - 1);
		co_buf_printf(&b, "*l%d]\n", i - 1);
	}
	expect_error(b.data, b.len, -E2BIG, "bad.yaml:");
	{
		struct co_error err = CO_ERROR_INIT;

		assert_int_equal(co_yaml_load_all(&docs, b.data, b.len, "b.yaml", &err),
				 -E2BIG);
		assert_non_null(
			strstr(err.msg, "aliases expand to more than 100000 nodes"));
	}
	co_buf_release(&b);

	/* a modest amount of reuse is fine: 3 * 3 * 3 * 2 leaves */
	docs = load_str("a: &a [x, x, x]\nb: &b [*a, *a, *a]\nc: &c [*b, *b, *b]\n"
			"d: [*c, *c]\n");
	assert_int_equal(json_array_size(json_array_get(
				 json_object_get(json_array_get(docs, 0), "d"), 1)),
			 3);
	json_decref(docs);
}

static void test_depth_bomb(void **state)
{
	struct co_buf b = CO_BUF_INIT;
	json_t *docs;

	for (int i = 0; i < 100000; i++)
		co_buf_putc(&b, '[');
	expect_error(b.data, b.len, -E2BIG,
		     "bad.yaml:1:257: nesting deeper than 256 levels");
	co_buf_reset(&b);

	/* block mappings: 256 levels load, 257 do not */
	for (int i = 0; i < 256; i++)
		co_buf_printf(&b, "%*sk:\n", i, "");
	co_buf_printf(&b, "%*sleaf\n", 256, "");
	docs = load_str(b.data);
	json_decref(docs);
	co_buf_reset(&b);
	for (int i = 0; i < 257; i++)
		co_buf_printf(&b, "%*sk:\n", i, "");
	co_buf_printf(&b, "%*sleaf\n", 257, "");
	expect_error(b.data, b.len, -E2BIG, "bad.yaml:257:257: nesting deeper than 256");
	co_buf_reset(&b);

	/* an alias cannot smuggle in depth beyond the limit */
	co_buf_puts(&b, "a: &deep ");
	for (int i = 0; i < 200; i++)
		co_buf_putc(&b, '[');
	for (int i = 0; i < 200; i++)
		co_buf_putc(&b, ']');
	co_buf_puts(
		&b,
		"\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*deep"
		"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n");
	expect_error(b.data, b.len, -E2BIG, "bad.yaml:2:64: alias 'deep' nests deeper");
	co_buf_release(&b);
}

static void test_emitter_quoting(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_buf out = CO_BUF_INIT;
	json_t *doc, *docs, *deep;
	char *text;

	doc = json_loads(
		"{\"t\":\"true\",\"y\":\"y\",\"f\":\"1.0\",\"o\":\"0777\",\"n\":\"null\","
		"\"e\":\"\",\"sp\":\" lead\",\"tr\":\"trail \",\"c\":\"a: b\","
		"\"h\":\"a #b\",\"m\":\"<<\",\"inf\":\".inf\",\"p\":\"plain text\","
		"\"ml\":\"one\\ntwo\\n\",\"ms\":\"x\\ny\",\"i\":7,\"r\":1000.0,"
		"\"r2\":0.25,\"b\":false,\"z\":null,\"eo\":{},\"ea\":[],"
		"\"true\":1,\"s\":[\"a\",{\"k\":\"v\",\"k2\":[]}]}",
		0, NULL);
	assert_non_null(doc);
	assert_int_equal(co_yaml_dump(&out, doc, &err), 0);
	assert_string_equal(co_buf_cstr(&out), "t: \"true\"\n"
					       "\"y\": \"y\"\n"
					       "f: \"1.0\"\n"
					       "o: \"0777\"\n"
					       "\"n\": \"null\"\n"
					       "e: \"\"\n"
					       "sp: ' lead'\n"
					       "tr: 'trail '\n"
					       "c: 'a: b'\n"
					       "h: 'a #b'\n"
					       "m: \"<<\"\n"
					       "inf: \".inf\"\n"
					       "p: plain text\n"
					       "ml: |\n  one\n  two\n"
					       "ms: |-\n  x\n  y\n"
					       "i: 7\n"
					       "r: 1000.0\n"
					       "r2: 0.25\n"
					       "b: false\n"
					       "z: null\n"
					       "eo: {}\n"
					       "ea: []\n"
					       "\"true\": 1\n"
					       "s:\n- a\n- k: v\n  k2: []\n");
	docs = json_pack("[O]", doc);
	text = round_trip(docs);
	free(text);
	json_decref(docs);
	json_decref(doc);

	/* breaks a block scalar would normalise to \n stay escaped in double quotes */
	co_buf_reset(&out);
	doc = json_pack("{s:s,s:s}", "crlf", "x\r\ny\n", "ls", "p\xe2\x80\xa8q\nr");
	assert_int_equal(co_yaml_dump(&out, doc, &err), 0);
	assert_string_equal(co_buf_cstr(&out),
			    "crlf: \"x\\r\\ny\\n\"\nls: \"p\\Lq\\nr\"\n");
	docs = json_pack("[o]", doc);
	free(round_trip(docs));
	json_decref(docs);

	/* dump_all separates documents; a failed dump leaves out unchanged */
	co_buf_reset(&out);
	docs = json_pack("[{s:i},[s],s]", "a", 1, "b", "c");
	assert_int_equal(co_yaml_dump_all(&out, docs, &err), 0);
	assert_string_equal(co_buf_cstr(&out), "a: 1\n---\n- b\n---\nc\n");
	json_decref(docs);

	deep = json_array();
	for (int i = 0; i < 300; i++)
		deep = json_pack("[o]", deep);
	co_buf_reset(&out);
	co_buf_puts(&out, "keep");
	assert_int_equal(co_yaml_dump(&out, deep, &err), -E2BIG);
	assert_string_equal(co_buf_cstr(&out), "keep");
	assert_int_equal(co_yaml_dump_all(&out, deep, &err), -E2BIG);
	assert_string_equal(co_buf_cstr(&out), "keep");
	json_decref(deep);
	doc = json_object();
	assert_int_equal(co_yaml_dump_all(&out, doc, &err), -EINVAL);
	json_decref(doc);
	co_buf_release(&out);
}

/* Dumping the manifests is stable: dump(load(dump(x))) == dump(x). */
static void test_corpus_fixtures_round_trip(void **state)
{
	static const char *const names[] = {"gotk-sync.yaml", "app.yaml",
					    "kustomization.yaml"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *docs = load_fixture(names[i]);
		char *text = round_trip(docs);
		json_t *again = load_str(text);
		char *text2 = round_trip(again);

		/* dumping is deterministic: a second trip writes the same text */
		assert_string_equal(text, text2);
		free(text);
		free(text2);
		json_decref(again);
		json_decref(docs);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_flux_sync),
		cmocka_unit_test(test_deployment_service_ingress),
		cmocka_unit_test(test_kustomization_json6902),
		cmocka_unit_test(test_scalar_resolution),
		cmocka_unit_test(test_non_finite_rejected),
		cmocka_unit_test(test_keys_become_strings),
		cmocka_unit_test(test_anchors_and_merge),
		cmocka_unit_test(test_flow_style),
		cmocka_unit_test(test_documents),
		cmocka_unit_test(test_malformed_located),
		cmocka_unit_test(test_billion_laughs),
		cmocka_unit_test(test_depth_bomb),
		cmocka_unit_test(test_emitter_quoting),
		cmocka_unit_test(test_corpus_fixtures_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
