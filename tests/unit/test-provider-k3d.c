/*
 * The k3d provider against a recording fake `k3d` (a shell script this test writes into
 * a temporary directory put first on PATH): the exact argv of each call, idempotent
 * create and delete, -ENOENT for get, the kubeconfig rewrite from 0.0.0.0 to 127.0.0.1
 * and its storage at 0600 through the registry, and k3d's stderr in errors.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/fs.h"
#include "providers/provider.h"
#include "providers/registry.h"

static const char fake_k3d[] =
	"#!/bin/sh\n"
	"# recording fake k3d: state in $FAKE_K3D_DIR/clusters/NAME (image, port)\n"
	"d=\"$FAKE_K3D_DIR\"\n"
	"mkdir -p \"$d/clusters\"\n"
	"line=''\n"
	"for a in \"$@\"; do line=\"$line|$a\"; done\n"
	"echo \"${line#|}\" >> \"$d/calls\"\n"
	"if [ -n \"$FAKE_K3D_FAIL\" ] && [ \"$FAKE_K3D_FAIL\" = \"$1 $2\" ]; then\n"
	"  echo 'INFO[0000] starting' >&2\n"
	"  echo 'FATA[0001] docker is not running' >&2\n"
	"  exit 1\n"
	"fi\n"
	"case \"$1 $2\" in\n"
	"'cluster list')\n"
	"  printf '['; sep=''\n"
	"  for f in \"$d\"/clusters/*; do\n"
	"    [ -f \"$f\" ] || continue\n"
	"    n=$(basename \"$f\"); read -r img port < \"$f\"\n"
	"    printf '%s{\"name\":\"%s\",\"serversCount\":1,\"agentsCount\":2,\"nodes\":["
	"{\"name\":\"k3d-%s-server-0\",\"role\":\"server\",\"image\":\"%s\"},"
	"{\"name\":\"k3d-%s-serverlb\",\"role\":\"loadbalancer\",\"image\":\"ghcr.io/k3d-io/"
	"k3d-proxy:5\",\"portMappings\":{\"80/tcp\":[{\"HostIp\":\"0.0.0.0\","
	"\"HostPort\":\"%s\"}]}}]}' \"$sep\" \"$n\" \"$n\" \"$img\" \"$n\" \"$port\"\n"
	"    sep=','\n"
	"  done\n"
	"  printf ']\\n' ;;\n"
	"'cluster create')\n"
	"  n=$3; shift 3; port=''; img=''\n"
	"  while [ $# -gt 0 ]; do\n"
	"    case \"$1\" in -p) port=${2%%:*}; shift ;; --image) img=$2; shift ;; esac\n"
	"    shift\n"
	"  done\n"
	"  echo \"$img $port\" > \"$d/clusters/$n\" ;;\n"
	"'kubeconfig get')\n"
	"  [ -f \"$d/clusters/$3\" ] || { echo \"FATA cluster $3 not found\" >&2; exit 1; }\n"
	"  cat <<EOF\n"
	"apiVersion: v1\n"
	"clusters:\n"
	"- cluster:\n"
	"    certificate-authority-data: Q0EK\n"
	"    server: https://0.0.0.0:6443\n"
	"  name: k3d-$3\n"
	"contexts:\n"
	"- context:\n"
	"    cluster: k3d-$3\n"
	"    user: admin@k3d-$3\n"
	"  name: k3d-$3\n"
	"current-context: k3d-$3\n"
	"kind: Config\n"
	"users:\n"
	"- name: admin@k3d-$3\n"
	"  user:\n"
	"    client-certificate-data: Q0VSVAo=\n"
	"EOF\n"
	"  ;;\n"
	"'cluster delete')\n"
	"  rm -f \"$d/clusters/$3\"; echo \"INFO deleted $3\" >&2 ;;\n"
	"*) echo \"fake k3d: unexpected $*\" >&2; exit 2 ;;\n"
	"esac\n";

struct fixture {
	char dir[64];
	char *state;
	char *old_path;
	uv_loop_t loop;
	struct co_provider *p;
	int calls;             /* provider callbacks */
	int status;
	struct co_error err;
	json_t *cluster;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct co_error err = CO_ERROR_INIT;
	char *script, *path;
	struct co_provider_opts o = { .name = "k3d" };

	strcpy(f->dir, "/tmp/co-k3d-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	script = co_asprintf("%s/bin/k3d", f->dir);
	assert_int_equal(co_fs_write_atomic(script, fake_k3d, strlen(fake_k3d), 0755, &err), 0);
	f->old_path = co_strdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	path = co_asprintf("%s/bin:%s", f->dir, f->old_path);
	setenv("PATH", path, 1);
	setenv("FAKE_K3D_DIR", f->dir, 1);
	unsetenv("FAKE_K3D_FAIL");
	f->state = co_asprintf("%s/state", f->dir);
	o.state_dir = f->state;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(co_provider_new(&f->p, &f->loop, NULL, &o, &err), 0);
	assert_string_equal(f->p->ops->name, "k3d");
	free(script);
	free(path);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char *cmd = co_asprintf("rm -rf '%s'", f->dir);

	co_provider_free(f->p);
	/* a failed spawn closes its pipes asynchronously */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	setenv("PATH", f->old_path, 1);
	assert_int_equal(system(cmd), 0);
	json_decref(f->cluster);
	free(cmd);
	free(f->old_path);
	free(f->state);
	free(f);
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

/* Run the loop until the call is answered; returns its status. */
static int wait_result(struct fixture *f)
{
	int before = f->calls;

	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(f->calls, before + 1);
	return f->status;
}

/* The calls the fake recorded since the last look, then forget them. */
static char *take_calls(struct fixture *f)
{
	struct co_buf b = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;
	char *path = co_asprintf("%s/calls", f->dir);

	if (access(path, F_OK) == 0)
		assert_int_equal(co_fs_read(path, 1 << 20, &b, &err), 0);
	unlink(path);
	free(path);
	return co_buf_detach(&b, NULL);
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
	assert_int_equal(rc, 0);
	return wait_result(f);
}

static void test_create_argv_and_kubeconfig(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg;
	struct co_buf b = CO_BUF_INIT;
	struct stat st;
	const char *kc;
	char *calls, *path = NULL;

	assert_int_equal(create(f, "cluster1", "rancher/k3s:v1.27.1-k3s1", 8081), 0);
	calls = take_calls(f);
	assert_string_equal(calls,
		"cluster|list|-o|json\n"
		"cluster|create|cluster1|-p|8081:80@loadbalancer|--agents|2|--image|"
		"rancher/k3s:v1.27.1-k3s1|--k3s-arg|--disable=traefik@server:0|--wait\n"
		"kubeconfig|get|cluster1\n");
	free(calls);

	assert_string_equal(json_string_value(json_object_get(f->cluster, "name")), "cluster1");
	assert_string_equal(json_string_value(json_object_get(f->cluster, "version")),
			    "v1.27.1+k3s1");
	assert_string_equal(json_string_value(json_object_get(f->cluster, "ingress")),
			    "http://127.0.0.1:8081");
	assert_string_equal(json_string_value(json_object_get(f->cluster, "apiServer")),
			    "https://127.0.0.1:6443");
	kc = json_string_value(json_object_get(f->cluster, "kubeconfig"));
	assert_non_null(kc);
	assert_null(strstr(kc, "0.0.0.0"));
	assert_non_null(strstr(kc, "    server: https://127.0.0.1:6443\n"));
	assert_non_null(strstr(kc, "current-context: k3d-cluster1\n"));
	assert_non_null(strstr(kc, "client-certificate-data: Q0VSVAo=\n"));

	/* what the CLI does with it: a 0600 file under the state dir */
	assert_int_equal(co_registry_open(&reg, f->state, &err), 0);
	assert_int_equal(co_registry_write_kubeconfig(reg, "cluster1", kc, &path, &err), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(co_fs_read(path, 1 << 20, &b, &err), 0);
	assert_string_equal(co_buf_cstr(&b), kc);
	co_buf_release(&b);
	free(path);
	co_registry_free(reg);
}

static void test_create_is_idempotent(void **state)
{
	struct fixture *f = *state;
	char *calls;

	assert_int_equal(create(f, "c2", "rancher/k3s:v1.25.10-k3s1", 0), 0);
	calls = take_calls(f);
	/* the lab scripts' default port */
	assert_non_null(strstr(calls, "|-p|8080:80@loadbalancer|"));
	free(calls);

	assert_int_equal(create(f, "c2", "rancher/k3s:v1.25.10-k3s1", 0), 0);
	calls = take_calls(f);
	assert_string_equal(calls, "cluster|list|-o|json\nkubeconfig|get|c2\n");
	free(calls);
	assert_string_equal(json_string_value(json_object_get(f->cluster, "ingress")),
			    "http://127.0.0.1:8080");

	/* same name, other image: refused without touching k3d */
	assert_int_equal(create(f, "c2", "rancher/k3s:v1.27.1-k3s1", 0), -EEXIST);
	assert_non_null(strstr(f->err.msg, "v1.25.10-k3s1"));
	calls = take_calls(f);
	assert_string_equal(calls, "cluster|list|-o|json\n");
	free(calls);
}

static void test_get_list_delete(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	json_t *e;
	char *calls;

	assert_int_equal(co_provider_get(f->p, "nope", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), -ENOENT);
	assert_non_null(strstr(f->err.msg, "nope"));

	assert_int_equal(create(f, "c3", "kindest/node:v1.29.2", 9090), 0);
	assert_int_equal(co_provider_get(f->p, "c3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_string_equal(json_string_value(json_object_get(f->cluster, "ingress")),
			    "http://127.0.0.1:9090");
	assert_string_equal(json_string_value(json_object_get(f->cluster, "version")),
			    "v1.29.2");

	assert_int_equal(co_provider_list(f->p, on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_array(f->cluster));
	assert_int_equal(json_array_size(f->cluster), 1);
	e = json_array_get(f->cluster, 0);
	assert_string_equal(json_string_value(json_object_get(e, "name")), "c3");
	assert_string_equal(json_string_value(json_object_get(e, "image")),
			    "kindest/node:v1.29.2");
	free(take_calls(f));

	assert_int_equal(co_provider_delete(f->p, "c3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_true(json_object_get(f->cluster, "existed")));
	calls = take_calls(f);
	assert_string_equal(calls, "cluster|list|-o|json\ncluster|delete|c3\n");
	free(calls);

	assert_int_equal(co_provider_delete(f->p, "c3", on_result, f, &err), 0);
	assert_int_equal(wait_result(f), 0);
	assert_true(json_is_false(json_object_get(f->cluster, "existed")));
	calls = take_calls(f);
	assert_string_equal(calls, "cluster|list|-o|json\n");
	free(calls);

	/* names go into argv: never anything that could be read as an option */
	assert_int_equal(co_provider_delete(f->p, "--all", on_result, f, &err), -EINVAL);
	assert_int_equal(co_provider_get(f->p, "", on_result, f, &err), -EINVAL);
}

static void test_failure_carries_stderr(void **state)
{
	struct fixture *f = *state;

	setenv("FAKE_K3D_FAIL", "cluster create", 1);
	assert_int_equal(create(f, "c4", "rancher/k3s:v1.27.1-k3s1", 0), -EIO);
	assert_non_null(strstr(f->err.msg, "cluster create 'c4'"));
	assert_non_null(strstr(f->err.msg, "exit 1: FATA[0001] docker is not running"));
	unsetenv("FAKE_K3D_FAIL");
}

static void test_missing_binary(void **state)
{
	struct fixture *f = *state;
	struct co_error err = CO_ERROR_INIT;
	struct co_provider *p;
	struct co_provider_opts o = { .name = "k3d", .state_dir = f->state,
				      .k3d_path = "/nonexistent/k3d" };
	int rc;

	assert_int_equal(co_provider_new(&p, &f->loop, NULL, &o, &err), 0);
	rc = co_provider_list(p, on_result, f, &err);
	if (rc == 0) {
		/* some libuv versions report a failed exec through the exit callback */
		assert_int_not_equal(wait_result(f), 0);
	} else {
		assert_int_equal(rc, -ENOENT);
		assert_int_equal(f->calls, 0);
	}
	co_provider_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_argv_and_kubeconfig, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_create_is_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_list_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_carries_stderr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
