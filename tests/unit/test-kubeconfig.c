/*
 * Tests for kubeconfig loading: the usual credential shapes (token, client
 * certificate, CA data, insecure), context selection, exec plugins, KUBECONFIG with
 * several files (first definition wins, missing files skipped, relative paths
 * resolved per file), malformed documents named in the error, and ExecCredential
 * parsing.
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

#include "base/base64.h"
#include "base/buf.h"
#include "clients/kubeconfig.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/co-kubeconfig-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static char *write_file(const char *name, const char *text)
{
	char *path = co_asprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static struct co_kubeconfig *parse_ok(const char *text, const char *context)
{
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;
	int rc =
		co_kubeconfig_parse(&cfg, text, strlen(text), "test", dir, context, &err);

	if (rc != 0)
		fail_msg("parse failed: %s", err.msg);
	return cfg;
}

static int parse_err(const char *text, const char *context, struct co_error *err)
{
	struct co_kubeconfig *cfg = (struct co_kubeconfig *)0x1;
	int rc = co_kubeconfig_parse(&cfg, text, strlen(text), "bad", dir, context, err);

	assert_true(rc < 0);
	assert_ptr_equal(cfg, (struct co_kubeconfig *)0x1); /* untouched on failure */
	assert_true(err->msg[0] != '\0');
	return rc;
}

#define TWO_CONTEXTS                                                                     \
	"apiVersion: v1\n"                                                               \
	"kind: Config\n"                                                                 \
	"current-context: dev\n"                                                         \
	"clusters:\n"                                                                    \
	"- name: c1\n"                                                                   \
	"  cluster:\n"                                                                   \
	"    server: https://127.0.0.1:6443/\n"                                          \
	"    certificate-authority-data: %s\n"                                           \
	"- name: c2\n"                                                                   \
	"  cluster:\n"                                                                   \
	"    server: https://10.0.0.2:6443\n"                                            \
	"    insecure-skip-tls-verify: true\n"                                           \
	"    tls-server-name: api.internal\n"                                            \
	"users:\n"                                                                       \
	"- name: u1\n"                                                                   \
	"  user:\n"                                                                      \
	"    token: secret-token-1\n"                                                    \
	"- name: u2\n"                                                                   \
	"  user:\n"                                                                      \
	"    client-certificate-data: %s\n"                                              \
	"    client-key-data: %s\n"                                                      \
	"contexts:\n"                                                                    \
	"- name: dev\n"                                                                  \
	"  context:\n"                                                                   \
	"    cluster: c1\n"                                                              \
	"    user: u1\n"                                                                 \
	"    namespace: team-a\n"                                                        \
	"- name: prod\n"                                                                 \
	"  context:\n"                                                                   \
	"    cluster: c2\n"                                                              \
	"    user: u2\n"

static char *two_contexts(void)
{
	char *ca = co_base64_encode("-----BEGIN CERTIFICATE-----\nCA\n", 31);
	char *cert = co_base64_encode("CERT-PEM", 8);
	char *key = co_base64_encode("KEY-PEM", 7);
	char *text = co_asprintf(TWO_CONTEXTS, ca, cert, key);

	free(ca);
	free(cert);
	free(key);
	return text;
}

static void test_token_context(void **state)
{
	char *text = two_contexts();
	struct co_kubeconfig *cfg = parse_ok(text, NULL);

	(void)state;
	assert_string_equal(cfg->context, "dev");
	assert_string_equal(cfg->cluster_name, "c1");
	assert_string_equal(cfg->server, "https://127.0.0.1:6443");
	assert_string_equal(cfg->namespace_, "team-a");
	assert_string_equal(cfg->token, "secret-token-1");
	assert_int_equal(cfg->ca_pem_len, 31);
	assert_memory_equal(cfg->ca_pem, "-----BEGIN CERTIFICATE-----\nCA\n", 31);
	assert_null(cfg->cert_pem);
	assert_null(cfg->exec);
	assert_int_equal(cfg->insecure_skip_verify, 0);
	co_kubeconfig_free(cfg);
	free(text);
}

static void test_cert_context_selected(void **state)
{
	char *text = two_contexts();
	struct co_kubeconfig *cfg = parse_ok(text, "prod");

	(void)state;
	assert_string_equal(cfg->context, "prod");
	assert_string_equal(cfg->server, "https://10.0.0.2:6443");
	assert_string_equal(cfg->namespace_, "default");
	assert_null(cfg->token);
	assert_int_equal(cfg->cert_pem_len, 8);
	assert_memory_equal(cfg->cert_pem, "CERT-PEM", 8);
	assert_int_equal(cfg->key_pem_len, 7);
	assert_memory_equal(cfg->key_pem, "KEY-PEM", 7);
	assert_int_equal(cfg->insecure_skip_verify, 1);
	assert_string_equal(cfg->tls_server_name, "api.internal");
	assert_null(cfg->ca_pem);
	co_kubeconfig_free(cfg);
	free(text);
}

static void test_context_errors(void **state)
{
	char *text = two_contexts();
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	assert_int_equal(parse_err(text, "staging", &err), -ENOENT);
	assert_non_null(strstr(err.msg, "context 'staging' not found"));
	assert_int_equal(
		parse_err("apiVersion: v1\nkind: Config\nclusters: []\n", NULL, &err),
		-EINVAL);
	assert_non_null(strstr(err.msg, "no current-context"));
	assert_int_equal(
		parse_err("current-context: x\ncontexts:\n- name: x\n  context:\n"
			  "    cluster: nowhere\n",
			  NULL, &err),
		-ENOENT);
	assert_non_null(strstr(err.msg, "cluster 'nowhere'"));
	assert_int_equal(
		parse_err("current-context: x\ncontexts:\n- name: x\n  context:\n"
			  "    cluster: c\n    user: ghost\nclusters:\n- name: c\n"
			  "  cluster:\n    server: https://h:1\n",
			  NULL, &err),
		-ENOENT);
	assert_non_null(strstr(err.msg, "user 'ghost'"));
	free(text);
}

static void test_anonymous_context(void **state)
{
	struct co_kubeconfig *cfg =
		parse_ok("current-context: x\ncontexts:\n- name: x\n"
			 "  context:\n    cluster: c\nclusters:\n- name: c\n"
			 "  cluster:\n    server: http://127.0.0.1:8001\n",
			 NULL);

	(void)state;
	assert_string_equal(cfg->server, "http://127.0.0.1:8001");
	assert_null(cfg->token);
	assert_null(cfg->exec);
	co_kubeconfig_free(cfg);
}

static const char exec_cfg[] =
	"current-context: eks\n"
	"contexts:\n- name: eks\n  context: {cluster: c, user: aws}\n"
	"clusters:\n- name: c\n  cluster: {server: 'https://abc.eks.amazonaws.com'}\n"
	"users:\n"
	"- name: aws\n"
	"  user:\n"
	"    exec:\n"
	"      apiVersion: client.authentication.k8s.io/v1beta1\n"
	"      command: aws\n"
	"      args: [eks, get-token, --cluster-name, prod]\n"
	"      env:\n"
	"      - name: AWS_PROFILE\n"
	"        value: platform\n"
	"      interactiveMode: Never\n";

static void test_exec_plugin(void **state)
{
	struct co_kubeconfig *cfg = parse_ok(exec_cfg, NULL);

	(void)state;
	assert_non_null(cfg->exec);
	assert_string_equal(cfg->exec->command, "aws");
	assert_string_equal(cfg->exec->api_version,
			    "client.authentication.k8s.io/v1beta1");
	assert_string_equal(cfg->exec->args[0], "eks");
	assert_string_equal(cfg->exec->args[3], "prod");
	assert_null(cfg->exec->args[4]);
	assert_string_equal(cfg->exec->env[0], "AWS_PROFILE=platform");
	assert_null(cfg->exec->env[1]);
	assert_int_equal(cfg->exec->interactive_never, 1);
	assert_null(cfg->token);
	co_kubeconfig_free(cfg);
}

static void test_exec_plugin_malformed(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	const char *head =
		"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, "
		"user: u}\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
		"users:\n- name: u\n  user:\n    exec:\n";
	char *t;

	(void)state;
	t = co_asprintf("%s      apiVersion: client.authentication.k8s.io/v1\n", head);
	assert_int_equal(parse_err(t, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no command"));
	free(t);
	t = co_asprintf("%s      apiVersion: client.authentication.k8s.io/v1alpha1\n"
			"      command: x\n",
			head);
	assert_int_equal(parse_err(t, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "v1alpha1"));
	free(t);
	t = co_asprintf("%s      command: x\n      args: [ok, {not: a string}]\n", head);
	assert_int_equal(parse_err(t, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "args[1]"));
	free(t);
	t = co_asprintf("%s      command: x\n      env:\n      - name: ONLY_NAME\n",
			head);
	assert_int_equal(parse_err(t, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "env[0]"));
	free(t);
}

static void test_malformed_documents(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	char *big;

	(void)state;
	parse_err("clusters: [unclosed", NULL, &err);
	parse_err("- just\n- a list\n", NULL, &err);
	assert_non_null(strstr(err.msg, "bad"));
	parse_err("clusters: {c1: {server: x}}\n", NULL, &err);
	assert_non_null(strstr(err.msg, "'clusters' is not a list"));
	parse_err("clusters:\n- cluster: {server: 'https://h'}\n", NULL, &err);
	assert_non_null(strstr(err.msg, "has no name"));
	parse_err("current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, "
		  "user: u}\n"
		  "clusters:\n- name: c\n  cluster: {server: 'https://h'}\nusers:\n- "
		  "name: u\n"
		  "  user:\n    token: [1, 2]\n",
		  NULL, &err);
	assert_non_null(strstr(err.msg, "'token' is not a string"));
	parse_err("current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
		  "clusters:\n- name: c\n  cluster: {server: 'ftp://h'}\n",
		  NULL, &err);
	assert_non_null(strstr(err.msg, "not an http(s) URL"));
	parse_err("current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\n"
		  "clusters:\n- name: c\n  cluster: {server: 'https://h', "
		  "certificate-authority-data: '!!not base64!!'}\n",
		  NULL, &err);
	assert_non_null(strstr(err.msg, "base64"));
	parse_err("current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, "
		  "user: u}\n"
		  "clusters:\n- name: c\n  cluster: {server: 'https://h'}\nusers:\n- "
		  "name: u\n"
		  "  user:\n    client-certificate-data: Q0VSVA==\n",
		  NULL, &err);
	assert_non_null(strstr(err.msg, "together"));
	assert_int_equal(
		parse_err("current-context: x\ncontexts:\n- name: x\n  context: "
			  "{cluster: c, user: u}\nclusters:\n- name: c\n  cluster: "
			  "{server: 'https://h'}\nusers:\n- name: u\n  user:\n"
			  "    auth-provider: {name: gcp}\n",
			  NULL, &err),
		-ENOTSUP);
	/* bounded input */
	big = co_calloc(1, CO_KUBECONFIG_MAX_BYTES + 2);
	memset(big, '#', CO_KUBECONFIG_MAX_BYTES + 1);
	{
		struct co_kubeconfig *cfg = NULL;

		assert_int_equal(co_kubeconfig_parse(&cfg, big,
						     CO_KUBECONFIG_MAX_BYTES + 1, "big",
						     NULL, NULL, &err),
				 -E2BIG);
		assert_null(cfg);
	}
	free(big);
}

static void test_multiple_files(void **state)
{
	char *a = write_file(
		"a.yaml",
		"clusters:\n- name: shared\n  cluster: {server: 'https://first:1'}\n"
		"users:\n- name: me\n  user: {tokenFile: token.txt}\n");
	char *b = write_file(
		"b.yaml",
		"current-context: b-ctx\n"
		"clusters:\n- name: shared\n  cluster: {server: 'https://second:2'}\n"
		"contexts:\n- name: b-ctx\n  context: {cluster: shared, user: me, "
		"namespace: ns-b}\n"
		"users:\n- name: me\n  user: {token: from-b}\n");
	char *c = write_file("c.yaml", "current-context: c-ctx\n");
	char *tok = write_file("token.txt", "from-file\n");
	char *paths = co_asprintf("%s/missing.yaml:%s:%s:%s", dir, a, b, c);
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	assert_int_equal(co_kubeconfig_load(&cfg, paths, NULL, &err), 0);
	assert_string_equal(cfg->context, "b-ctx");	     /* first current-context */
	assert_string_equal(cfg->server, "https://first:1"); /* first definition wins */
	assert_string_equal(cfg->token, "from-file");	     /* relative to a.yaml */
	assert_string_equal(cfg->namespace_, "ns-b");
	co_kubeconfig_free(cfg);
	cfg = NULL;

	/* KUBECONFIG is read when no paths are given */
	setenv("KUBECONFIG", paths, 1);
	assert_int_equal(co_kubeconfig_load(&cfg, NULL, NULL, &err), 0);
	assert_string_equal(cfg->context, "b-ctx");
	co_kubeconfig_free(cfg);
	cfg = NULL;
	unsetenv("KUBECONFIG");

	free(paths);
	paths = co_asprintf("%s/none-1:%s/none-2", dir, dir);
	assert_int_equal(co_kubeconfig_load(&cfg, paths, NULL, &err), -ENOENT);
	assert_null(cfg);
	assert_non_null(strstr(err.msg, "no such file"));

	/* an error in a later file names that file */
	free(paths);
	free(c);
	c = write_file("c.yaml", "clusters: 7\n");
	paths = co_asprintf("%s:%s", a, c);
	assert_int_equal(co_kubeconfig_load(&cfg, paths, NULL, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "c.yaml"));

	free(a);
	free(b);
	free(c);
	free(tok);
	free(paths);
}

static void test_cert_files_relative(void **state)
{
	char *cert = write_file("client.crt", "CERT FROM FILE");
	char *key = write_file("client.key", "KEY FROM FILE");
	char *cfgp = write_file(
		"cfg.yaml",
		"current-context: x\ncontexts:\n- name: x\n  context: {cluster: "
		"c, user: u}\nclusters:\n- name: c\n  cluster: {server: "
		"'https://h:6443', certificate-authority: missing-ca.crt}\n"
		"users:\n- name: u\n  user: {client-certificate: client.crt, "
		"client-key: client.key}\n");
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;

	(void)state;
	assert_int_equal(co_kubeconfig_load(&cfg, cfgp, NULL, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "certificate-authority"));
	free(cfgp);
	cfgp = write_file(
		"cfg.yaml",
		"current-context: x\ncontexts:\n- name: x\n  context: {cluster: "
		"c, user: u}\nclusters:\n- name: c\n  cluster: {server: "
		"'https://h:6443'}\nusers:\n- name: u\n  user: {client-certificate: "
		"client.crt, client-key: client.key}\n");
	assert_int_equal(co_kubeconfig_load(&cfg, cfgp, NULL, &err), 0);
	assert_int_equal(cfg->cert_pem_len, 14);
	assert_memory_equal(cfg->cert_pem, "CERT FROM FILE", 14);
	assert_memory_equal(cfg->key_pem, "KEY FROM FILE", 13);
	co_kubeconfig_free(cfg);
	free(cert);
	free(key);
	free(cfgp);
}

static void test_exec_credential(void **state)
{
	char *tok = NULL, *cert = NULL, *key = NULL;
	int64_t exp = -1;
	struct co_error err = CO_ERROR_INIT;
	const char *ok = "{\"apiVersion\":\"client.authentication.k8s.io/v1\","
			 "\"kind\":\"ExecCredential\",\"status\":{\"token\":\"t0k3n\","
			 "\"expirationTimestamp\":\"2030-01-02T03:04:05Z\"}}";
	const char *certs = "{\"kind\":\"ExecCredential\",\"status\":{"
			    "\"clientCertificateData\":\"C\",\"clientKeyData\":\"K\"}}";

	(void)state;
	assert_int_equal(co_kubeconfig_parse_exec_credential(ok, strlen(ok), &tok, &cert,
							     &key, &exp, &err),
			 0);
	assert_string_equal(tok, "t0k3n");
	assert_null(cert);
	assert_null(key);
	assert_int_equal(exp, 1893553445000LL);
	free(tok);
	tok = NULL;
	assert_int_equal(co_kubeconfig_parse_exec_credential(certs, strlen(certs), &tok,
							     &cert, &key, &exp, &err),
			 0);
	assert_null(tok);
	assert_string_equal(cert, "C");
	assert_string_equal(key, "K");
	assert_int_equal(exp, 0);
	free(cert);
	free(key);

	tok = (char *)0x1;
	assert_int_equal(co_kubeconfig_parse_exec_credential("not json", 8, &tok, &cert,
							     &key, &exp, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "invalid JSON"));
	assert_int_equal(co_kubeconfig_parse_exec_credential("{\"kind\":\"Secret\"}", 17,
							     &tok, &cert, &key, &exp,
							     &err),
			 -EINVAL);
	assert_int_equal(co_kubeconfig_parse_exec_credential(
				 "{\"kind\":\"ExecCredential\",\"status\":{}}", 37, &tok,
				 &cert, &key, &exp, &err),
			 -EINVAL);
	assert_non_null(strstr(err.msg, "neither token"));
	{
		const char *bad =
			"{\"kind\":\"ExecCredential\",\"status\":{\"token\":\"x\","
			"\"expirationTimestamp\":\"tomorrow\"}}";

		assert_int_equal(co_kubeconfig_parse_exec_credential(
					 bad, strlen(bad), &tok, &cert, &key, &exp, &err),
				 -EINVAL);
		assert_non_null(strstr(err.msg, "tomorrow"));
	}
	assert_ptr_equal(tok, (char *)0x1); /* untouched on failure */
}

static void test_render_round_trip(void **state)
{
	char *text =
		co_kubeconfig_render_token("cluster2", "https://127.0.0.1:41234", "abc",
					   "-----BEGIN CERTIFICATE-----\nX\n");
	struct co_kubeconfig *cfg = parse_ok(text, NULL);

	(void)state;
	assert_string_equal(cfg->context, "cluster2");
	assert_string_equal(cfg->server, "https://127.0.0.1:41234");
	assert_string_equal(cfg->token, "abc");
	assert_memory_equal(cfg->ca_pem, "-----BEGIN CERTIFICATE-----\nX\n",
			    cfg->ca_pem_len);
	co_kubeconfig_free(cfg);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_context),
		cmocka_unit_test(test_cert_context_selected),
		cmocka_unit_test(test_context_errors),
		cmocka_unit_test(test_anonymous_context),
		cmocka_unit_test(test_exec_plugin),
		cmocka_unit_test(test_exec_plugin_malformed),
		cmocka_unit_test(test_malformed_documents),
		cmocka_unit_test(test_multiple_files),
		cmocka_unit_test(test_cert_files_relative),
		cmocka_unit_test(test_exec_credential),
		cmocka_unit_test(test_render_round_trip),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
