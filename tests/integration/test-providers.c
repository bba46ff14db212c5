/*
 * The sim and exec providers against a real kubesim ($KUBESIM, started here with a
 * temporary state dir and --time-scale 0.01, stopped at the end).
 *
 *   test-providers sim    kubesim's control API through the HTTP client
 *   test-providers exec   the plugin contract, proven with $PLUGIN (a shell plugin
 *                         driving kubesim), plus small inline plugins for the edges:
 *                         error answers, bad JSON, missing kubeconfig, output cap,
 *                         deadline, and the exact request a plugin receives
 *
 * Exit 77 (skipped) when $KUBESIM is not set, or for exec when jq is missing.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"
#include "net/http-client.h"
#include "providers/provider.h"

extern char **environ;

static char g_dir[64];
static char *g_state;
static pid_t g_kubesim;

struct fixture {
	uv_loop_t loop;
	struct co_http_client *http;
	struct co_provider *p;
	int calls;
	int status;
	struct co_error err;
	json_t *cluster;
};

/* ---- kubesim process ---- */

static int start_kubesim(void)
{
	const char *bin = getenv("KUBESIM");
	char *ks_dir = co_asprintf("%s/kubesim", g_state), *url_file;
	char *argv[] = { (char *)bin, "serve", "--state-dir", ks_dir, "--control",
			 "127.0.0.1:0", "--time-scale", "0.01", NULL };
	int rc;

	co_fs_mkdir_p(ks_dir, 0700);
	url_file = co_asprintf("%s/kubesim.url", ks_dir);
	rc = posix_spawn(&g_kubesim, bin, NULL, NULL, argv, environ);
	if (rc != 0) {
		fprintf(stderr, "spawn '%s': %s\n", bin, strerror(rc));
		return -1;
	}
	for (int i = 0; i < 500 && access(url_file, F_OK) != 0; i++)
		usleep(10000);
	rc = access(url_file, F_OK);
	free(url_file);
	free(ks_dir);
	return rc;
}

static void stop_kubesim(void)
{
	int st;

	if (g_kubesim > 0) {
		kill(g_kubesim, SIGTERM);
		waitpid(g_kubesim, &st, 0);
		g_kubesim = 0;
	}
}

static int group_setup(void **state)
{
	strcpy(g_dir, "/tmp/co-providers-XXXXXX");
	if (!mkdtemp(g_dir))
		return -1;
	g_state = co_asprintf("%s/state", g_dir);
	return start_kubesim();
}

static int group_teardown(void **state)
{
	char *cmd = co_asprintf("rm -rf '%s'", g_dir);

	stop_kubesim();
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of '%s' failed\n", g_dir);
	free(cmd);
	free(g_state);
	return 0;
}

/* ---- per-test provider ---- */

static struct fixture *fixture_new(const struct co_provider_opts *o)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(co_http_client_new(&f->http, &f->loop, &err), 0);
	if (co_provider_new(&f->p, &f->loop, f->http, o, &err) < 0)
		fail_msg("provider: %s", err.msg);
	return f;
}

static int fixture_free(void **state)
{
	struct fixture *f = *state;

	co_provider_free(f->p);
	co_http_client_close(f->http, NULL, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	json_decref(f->cluster);
	free(f);
	return 0;
}

static int sim_setup(void **state)
{
	struct co_provider_opts o = { .name = "sim", .state_dir = g_state };

	*state = fixture_new(&o);
	return 0;
}

static const char *plugin_path(void)
{
	const char *p = getenv("PLUGIN");

	return p && *p ? p : "tests/integration/plugins/kubesim-plugin.sh";
}

static int exec_setup(void **state)
{
	struct co_provider_opts o = { .name = "exec", .state_dir = g_state,
				      .exec_path = plugin_path() };

	*state = fixture_new(&o);
	return 0;
}

static void on_result(struct co_provider_result *res, void *data)
{
	struct fixture *f = data;

	f->calls++;
	f->status = res->status;
	co_error_copy(&f->err, &res->err);
	json_decref(f->cluster);
	f->cluster = json_incref(res->cluster);
}

static int wait_result(struct fixture *f)
{
	int before = f->calls;

	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->calls, before + 1);
	return f->status;
}

static int create(struct fixture *f, const char *name, const char *image, int port)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *spec = json_pack("{s:s, s:s, s:s, s:s}", "name", name, "image", image, "env",
				 "staging", "location", "northeurope");
	int rc;

	if (port)
		json_object_set_new(spec, "port", json_integer(port));
	rc = co_provider_create(f->p, spec, on_result, f, &err);
	json_decref(spec);
	if (rc < 0)
		fail_msg("create '%s': %s", name, err.msg);
	return wait_result(f);
}

static const char *field(const json_t *j, const char *key)
{
	const char *v = json_string_value(json_object_get(j, key));

	return v ? v : "";
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* The cluster's API answers /version with the expected version, through the
 * kubeconfig's server and token. */
static void assert_api_answers(const json_t *c, const char *version)
{
	const char *kc = field(c, "kubeconfig");
	const char *tok = strstr(kc, "token: ");
	char *token, *url, *auth, *body = NULL;
	size_t body_len = 0;
	struct curl_slist *h = NULL;
	CURL *curl = curl_easy_init();
	long code = 0;

	assert_non_null(tok);
	token = co_strndup(tok + 7, strcspn(tok + 7, "\r\n"));
	url = co_asprintf("%s/version", field(c, "apiServer"));
	auth = co_asprintf("Authorization: Bearer %s", token);
	h = curl_slist_append(h, auth);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, (curl_write_callback)NULL);
	{
		FILE *mem = open_memstream(&body, &body_len);

		curl_easy_setopt(curl, CURLOPT_WRITEDATA, mem);
		assert_int_equal(curl_easy_perform(curl), CURLE_OK);
		fclose(mem);
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	assert_int_equal(code, 200);
	assert_non_null(strstr(body, version));
	free(body);
	curl_slist_free_all(h);
	curl_easy_cleanup(curl);
	free(auth);
	free(url);
	free(token);
}

/* ---- sim ---- */

static void test_sim_create_idempotent(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	int port = free_port();
	uint64_t t0 = co_time_mono_ms();
	char *ingress, *want = co_asprintf("http://127.0.0.1:%d", port);

	assert_int_equal(create(f, "sim1", "rancher/k3s:v1.27.1-k3s1", port), 0);
	printf("# sim create (boot at time scale 0.01): %llu ms\n",
	       (unsigned long long)(co_time_mono_ms() - t0));
	assert_string_equal(field(f->cluster, "name"), "sim1");
	assert_string_equal(field(f->cluster, "provider"), "sim");
	assert_string_equal(field(f->cluster, "state"), "ready");
	assert_string_equal(field(f->cluster, "version"), "v1.27.1+k3s1");
	assert_string_equal(field(f->cluster, "ingress"), want);
	assert_non_null(strstr(field(f->cluster, "kubeconfig"), "kubesim-sim1"));
	assert_api_answers(f->cluster, "v1.27.1+k3s1");
	ingress = co_strdup(field(f->cluster, "ingress"));

	/* again: same cluster, answered as it is */
	assert_int_equal(create(f, "sim1", "rancher/k3s:v1.27.1-k3s1", port), 0);
	assert_string_equal(field(f->cluster, "ingress"), ingress);
	assert_int_equal(co_provider_list(f->p, on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_int_equal(json_array_size(f->cluster), 1);
	assert_string_equal(field(json_array_get(f->cluster, 0), "name"), "sim1");

	/* same name, other image: refused */
	assert_int_equal(create(f, "sim1", "rancher/k3s:v1.25.10-k3s1", 0), -EEXIST);
	assert_non_null(strstr(f->err.msg, "v1.27.1-k3s1"));

	/* a port already taken (by sim1's ingress) is kubesim's 409, reported */
	assert_int_equal(create(f, "sim2", "rancher/k3s:v1.27.1-k3s1", port), -EEXIST);
	assert_non_null(strstr(f->err.msg, "kubesim create: 409"));

	assert_int_equal(co_provider_delete(f->p, "sim1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	free(ingress);
	free(want);
}

static void test_sim_get_delete_missing(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	json_t *spec;
	int calls;

	assert_int_equal(co_provider_get(f->p, "ghost", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), -ENOENT);
	assert_null(f->cluster);
	assert_non_null(strstr(f->err.msg, "ghost"));

	assert_int_equal(co_provider_delete(f->p, "ghost", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_false(json_object_get(f->cluster, "existed")));

	assert_int_equal(create(f, "sim3", "kindest/node:v1.29.2", 0), 0);
	assert_int_equal(co_provider_get(f->p, "sim3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_string_equal(field(f->cluster, "version"), "v1.29.2");
	assert_string_equal(field(f->cluster, "state"), "ready");
	assert_int_equal(co_provider_delete(f->p, "sim3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_true(json_object_get(f->cluster, "existed")));
	assert_int_equal(co_provider_get(f->p, "sim3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), -ENOENT);

	/* checked before anything is sent, and then no callback */
	calls = f->calls;
	spec = json_pack("{s:s, s:s}", "name", "x", "image", "k3s:latest");
	assert_int_equal(co_provider_get(f->p, "../x", on_result, f, &err), -EINVAL);
	assert_int_equal(co_provider_create(f->p, spec, on_result, f, &err), -EINVAL);
	json_decref(spec);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->calls, calls);
}

static void test_sim_unreachable(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_provider *p;
	char *url = co_asprintf("http://127.0.0.1:%d", free_port());
	struct co_provider_opts o = { .name = "sim", .state_dir = g_state, .sim_url = url };
	struct co_provider_opts none = { .name = "sim", .state_dir = g_dir };

	assert_int_equal(co_provider_new(&p, &f->loop, f->http, &o, &err), 0);
	assert_int_equal(co_provider_get(p, "x", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), -ECONNREFUSED);
	assert_non_null(strstr(f->err.msg, url));
	co_provider_free(p);

	/* no kubesim.url under the state dir: refused at once, no callback */
	assert_int_equal(co_provider_new(&p, &f->loop, f->http, &none, &err), 0);
	assert_int_equal(co_provider_list(p, on_result, f, &err), -ENOENT);
	assert_non_null(strstr(err.msg, "kubesim is not running"));
	co_provider_free(p);
	free(url);
}

/* ---- exec ---- */

static void test_exec_contract_with_kubesim(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	int port = free_port();
	char *want = co_asprintf("http://127.0.0.1:%d", port);
	uint64_t t0 = co_time_mono_ms();

	assert_int_equal(create(f, "ex1", "rancher/k3s:v1.27.1-k3s1", port), 0);
	printf("# exec create through the shell plugin: %llu ms\n",
	       (unsigned long long)(co_time_mono_ms() - t0));
	assert_string_equal(field(f->cluster, "provider"), "exec");
	assert_string_equal(field(f->cluster, "name"), "ex1");
	assert_string_equal(field(f->cluster, "state"), "ready");
	assert_string_equal(field(f->cluster, "version"), "v1.27.1+k3s1");
	assert_string_equal(field(f->cluster, "ingress"), want);
	assert_api_answers(f->cluster, "v1.27.1+k3s1");

	assert_int_equal(create(f, "ex1", "rancher/k3s:v1.27.1-k3s1", port), 0);
	assert_string_equal(field(f->cluster, "ingress"), want);
	assert_int_equal(create(f, "ex1", "rancher/k3s:v1.25.10-k3s1", 0), -EIO);
	assert_non_null(strstr(f->err.msg, "exists with image"));

	assert_int_equal(co_provider_get(f->p, "ghost", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), -ENOENT);
	assert_int_equal(co_provider_get(f->p, "ex1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_string_equal(field(f->cluster, "version"), "v1.27.1+k3s1");

	assert_int_equal(co_provider_list(f->p, on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_int_equal(json_array_size(f->cluster), 1);
	assert_string_equal(field(json_array_get(f->cluster, 0), "name"), "ex1");
	assert_string_equal(field(json_array_get(f->cluster, 0), "provider"), "exec");

	assert_int_equal(co_provider_delete(f->p, "ex1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_true(json_object_get(f->cluster, "existed")));
	assert_int_equal(co_provider_delete(f->p, "ex1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_false(json_object_get(f->cluster, "existed")));
	free(want);
}

/* A provider running an inline shell plugin written by the test. */
static struct co_provider *inline_plugin(struct fixture *f, const char *body,
					 uint64_t timeout_ms)
{
	static int n;
	struct co_error err = CO_ERROR_INIT;
	struct co_provider *p;
	char *path = co_asprintf("%s/plugin-%d.sh", g_dir, n++);
	char *text = co_asprintf("#!/bin/sh\n%s\n", body);
	struct co_provider_opts o = { .name = "exec", .state_dir = g_state, .exec_path = path,
				      .exec_timeout_ms = timeout_ms };

	assert_int_equal(co_fs_write_atomic(path, text, strlen(text), 0755, &err), 0);
	assert_int_equal(co_provider_new(&p, &f->loop, NULL, &o, &err), 0);
	free(text);
	free(path);
	return p;
}

static int run_get(struct fixture *f, struct co_provider *p)
{
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_provider_get(p, "c1", on_result, f, &err), 0);
	return wait_result(f);
}

static void test_exec_request_and_edges(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_buf b = CO_BUF_INIT;
	struct co_provider *p;
	json_t *req, *spec;
	char *body, *req_file = co_asprintf("%s/request.json", g_dir);
	uint64_t t0;

	/* the request: argv[1] is the op, stdin one JSON document, state dir in env */
	body = co_asprintf("cat > '%s'\necho \"$1 $CUTOVER_STATE_DIR\" >> '%s.argv'\n"
			   "printf '%%s\\n' '{\"kubeconfig\": \"apiVersion: v1\\n\", "
			   "\"ingress\": \"http://127.0.0.1:1\"}'", req_file, req_file);
	p = inline_plugin(f, body, 0);
	free(body);
	spec = json_pack("{s:s, s:s, s:s, s:s, s:i}", "name", "c1", "image",
			 "rancher/k3s:v1.27.1-k3s1", "env", "production", "location",
			 "westeurope", "port", 8088);
	assert_int_equal(co_provider_create(p, spec, on_result, f, &err), 0);
	json_decref(spec);
	assert_int_equal(wait_result(f), 0);
	assert_string_equal(field(f->cluster, "version"), "v1.27.1+k3s1");
	assert_string_equal(field(f->cluster, "image"), "rancher/k3s:v1.27.1-k3s1");
	assert_string_equal(field(f->cluster, "state"), "ready");
	req = json_load_file(req_file, 0, NULL);
	assert_non_null(req);
	assert_int_equal(json_integer_value(json_object_get(req, "protocol")), 1);
	assert_string_equal(field(req, "op"), "create");
	spec = json_object_get(req, "cluster");
	assert_string_equal(field(spec, "name"), "c1");
	assert_string_equal(field(spec, "version"), "v1.27.1+k3s1");
	assert_string_equal(field(spec, "env"), "production");
	assert_string_equal(field(spec, "location"), "westeurope");
	assert_int_equal(json_integer_value(json_object_get(spec, "port")), 8088);
	json_decref(req);
	assert_int_equal(run_get(f, p), 0);
	body = co_asprintf("%s.argv", req_file);
	assert_int_equal(co_fs_read(body, 4096, &b, &err), 0);
	{
		char *want = co_asprintf("create %s\nget %s\n", g_state, g_state);

		assert_string_equal(co_buf_cstr(&b), want);
		free(want);
	}
	free(body);
	co_buf_release(&b);
	co_provider_free(p);

	/* a failure with {"error"} on stdout */
	p = inline_plugin(f, "echo '{\"error\": \"quota exceeded in westeurope\"}'; exit 1", 0);
	assert_int_equal(run_get(f, p), -EIO);
	assert_non_null(strstr(f->err.msg, "quota exceeded in westeurope"));
	co_provider_free(p);

	/* a failure with only stderr */
	p = inline_plugin(f, "echo progress >&2; echo 'auth: token expired' >&2; exit 7", 0);
	assert_int_equal(run_get(f, p), -EIO);
	assert_non_null(strstr(f->err.msg, "exit 7: auth: token expired"));
	co_provider_free(p);

	/* not JSON, and JSON without a kubeconfig */
	p = inline_plugin(f, "echo 'created!'", 0);
	assert_int_equal(run_get(f, p), -EPROTO);
	co_provider_free(p);
	p = inline_plugin(f, "echo '{\"ingress\": \"http://127.0.0.1:1\"}'", 0);
	assert_int_equal(run_get(f, p), -EPROTO);
	assert_non_null(strstr(f->err.msg, "kubeconfig"));
	co_provider_free(p);
	p = inline_plugin(f, "echo '{\"name\": \"other\", \"kubeconfig\": \"x\"}'", 0);
	assert_int_equal(run_get(f, p), -EPROTO);
	co_provider_free(p);

	/* output over the cap */
	p = inline_plugin(f, "yes 0123456789abcdef | head -c 5000000", 0);
	assert_int_equal(run_get(f, p), -E2BIG);
	co_provider_free(p);

	/* a plugin that hangs is stopped at its deadline */
	p = inline_plugin(f, "exec sleep 30", 300);
	t0 = co_time_mono_ms();
	assert_int_equal(run_get(f, p), -ETIMEDOUT);
	assert_true(co_time_mono_ms() - t0 < 5000);
	co_provider_free(p);

	/* delete: exit 3 and {"existed": false} both mean it was not there */
	p = inline_plugin(f, "exit 3", 0);
	assert_int_equal(co_provider_delete(p, "c1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_false(json_object_get(f->cluster, "existed")));
	co_provider_free(p);
	p = inline_plugin(f, "true", 0);
	assert_int_equal(co_provider_delete(p, "c1", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_true(json_object_get(f->cluster, "existed")));
	co_provider_free(p);

	/* a missing plugin fails at once */
	{
		struct co_provider_opts o = { .name = "exec", .state_dir = g_state,
					      .exec_path = "/nonexistent/plugin" };
		int rc;

		assert_int_equal(co_provider_new(&p, &f->loop, NULL, &o, &err), 0);
		rc = co_provider_get(p, "c1", on_result, f, &err);
		if (rc == 0)
			assert_int_not_equal(wait_result(f), 0);
		else
			assert_int_equal(rc, -ENOENT);
		co_provider_free(p);
	}
	free(req_file);
}

int main(int argc, char **argv)
{
	const char *group = argc > 1 ? argv[1] : "sim";
	const struct CMUnitTest sim_tests[] = {
		cmocka_unit_test_setup_teardown(test_sim_create_idempotent, sim_setup,
						fixture_free),
		cmocka_unit_test_setup_teardown(test_sim_get_delete_missing, sim_setup,
						fixture_free),
		cmocka_unit_test_setup_teardown(test_sim_unreachable, sim_setup, fixture_free),
	};
	const struct CMUnitTest exec_tests[] = {
		cmocka_unit_test_setup_teardown(test_exec_contract_with_kubesim, exec_setup,
						fixture_free),
		cmocka_unit_test_setup_teardown(test_exec_request_and_edges, exec_setup,
						fixture_free),
	};
	int rc;

	if (!getenv("KUBESIM") || access(getenv("KUBESIM"), X_OK) != 0) {
		printf("# KUBESIM not set to a kubesim binary: skipped\n");
		return 77;
	}
	if (strcmp(group, "exec") == 0 && system("command -v jq >/dev/null 2>&1") != 0) {
		printf("# jq is missing (the shell plugin needs it): skipped\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(group, "exec") == 0)
		rc = cmocka_run_group_tests_name("exec", exec_tests, group_setup,
						 group_teardown);
	else
		rc = cmocka_run_group_tests_name("sim", sim_tests, group_setup, group_teardown);
	curl_global_cleanup();
	return rc;
}
