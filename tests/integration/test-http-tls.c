/*
 * Integration test for the HTTP client's TLS options: a throw-away CA, server and
 * client certificates made with the openssl CLI (through co_subproc_run_sync), and a
 * real `openssl s_server` requiring a client certificate on an ephemeral 127.0.0.1
 * port, started on the test's loop with co_subproc_run and cancelled at the end. The
 * PEM files are read back into memory and handed to the client as blobs, the way
 * kubeconfig *-data fields arrive.
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

#include "base/subproc.h"
#include "base/time.h"
#include "net/http-client.h"

static char dir[] = "/tmp/co-tls-XXXXXX";

static char *path_of(const char *name)
{
	return co_asprintf("%s/%s", dir, name);
}

static void run_ok(const char *const *argv)
{
	struct co_subproc_result res;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_subproc_run_sync(&(struct co_subproc_opts){ .argv = argv,
									.cwd = dir,
									.timeout_ms = 30000 },
					     &res, &err),
			 0);
	if (res.exit_code != 0)
		print_message("%s failed: %s\n", argv[1], co_buf_cstr(&res.err));
	assert_int_equal(res.status, 0);
	assert_int_equal(res.exit_code, 0);
	co_subproc_result_release(&res);
}

static void make_leaf(const char *name, const char *subject, const char *san)
{
	char *key = co_asprintf("%s.key", name), *csr = co_asprintf("%s.csr", name);
	char *pem = co_asprintf("%s.pem", name);
	const char *req[] = { "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
			      "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
			      "-out", csr, "-subj", subject, san ? "-addext" : NULL, san,
			      NULL };
	const char *sign[] = { "openssl", "x509", "-req", "-in", csr, "-CA", "ca.pem",
			       "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
			       "-copy_extensions", "copy", "-out", pem, NULL };

	run_ok(req);
	run_ok(sign);
	free(key);
	free(csr);
	free(pem);
}

static char *slurp(const char *name, size_t *len)
{
	char *p = path_of(name);
	FILE *f = fopen(p, "rb");
	struct co_buf b = CO_BUF_INIT;
	char chunk[4096];
	size_t n;

	assert_non_null(f);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		co_buf_append(&b, chunk, n);
	fclose(f);
	free(p);
	return co_buf_detach(&b, len);
}

static int free_port(uv_loop_t *loop)
{
	struct sockaddr_in addr;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_t t;
	int port;

	uv_ip4_addr("127.0.0.1", 0, &addr);
	uv_tcp_init(loop, &t);
	assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&addr, 0), 0);
	assert_int_equal(uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len), 0);
	port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return port;
}

struct got {
	int calls;
	int status;
	long code;
	char err[CO_ERROR_MSG_MAX];
	char *body;
};

static void on_response(struct co_http_response *res, void *data)
{
	struct got *g = data;

	g->calls++;
	g->status = res->status;
	g->code = res->code;
	snprintf(g->err, sizeof(g->err), "%s", res->err.msg);
	free(g->body);
	g->body = co_strdup(co_buf_cstr(&res->body));
}

static void fetch(uv_loop_t *loop, struct co_http_client *c,
		  const struct co_http_req_opts *o, struct got *g)
{
	struct co_error err = CO_ERROR_INIT;
	uint64_t t0 = co_time_mono_ms();

	g->calls = 0;
	assert_int_equal(co_http_request(c, NULL, o, on_response, g, &err), 0);
	while (!g->calls) {
		uv_run(loop, UV_RUN_ONCE);
		assert_true(co_time_mono_ms() - t0 < 10000);
	}
}

struct server {
	int calls;
	int status;
};

static void on_server_exit(struct co_subproc_result *res, void *data)
{
	struct server *s = data;

	s->calls++;
	s->status = res->status;
}

static void test_tls_blobs(void **state)
{
	const char *ca[] = { "openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
			     "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key",
			     "-out", "ca.pem", "-days", "2", "-subj", "/CN=cutover test ca",
			     NULL };
	struct co_error err = CO_ERROR_INIT;
	struct co_http_client *client;
	struct co_subproc *proc;
	struct server srv = { 0 };
	struct got g = { 0 };
	size_t ca_len, cert_len, key_len;
	char *ca_pem, *cert_pem, *key_pem, *url, *accept;
	uint64_t t0;
	uv_loop_t loop;
	int port;

	assert_non_null(mkdtemp(dir));
	run_ok(ca);
	make_leaf("srv", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1");
	make_leaf("cli", "/CN=cutover-client", NULL);
	ca_pem = slurp("ca.pem", &ca_len);
	cert_pem = slurp("cli.pem", &cert_len);
	key_pem = slurp("cli.key", &key_len);

	assert_int_equal(uv_loop_init(&loop), 0);
	port = free_port(&loop);
	accept = co_asprintf("127.0.0.1:%d", port);
	url = co_asprintf("https://127.0.0.1:%d/", port);
	{
		/* -Verify 1: a client certificate signed by the CA is required. */
		const char *argv[] = { "openssl", "s_server", "-accept", accept, "-cert",
				       "srv.pem", "-key", "srv.key", "-CAfile", "ca.pem",
				       "-Verify", "1", "-www", "-quiet", NULL };

		assert_int_equal(co_subproc_run(&loop, &proc,
						&(struct co_subproc_opts){
							.argv = argv, .cwd = dir,
							.timeout_ms = 60000,
							.kill_grace_ms = 500 },
						on_server_exit, &srv, &err),
				 0);
	}
	assert_int_equal(co_http_client_new(&client, &loop, &err), 0);

	/* Trusted CA and client certificate from memory: the page comes back. Retry
	 * while s_server is still starting. */
	t0 = co_time_mono_ms();
	do {
		if (g.calls)
			usleep(50000);
		fetch(&loop, client,
		      &(struct co_http_req_opts){ .url = url, .ca_pem = ca_pem,
						  .ca_pem_len = ca_len, .cert_pem = cert_pem,
						  .cert_pem_len = cert_len, .key_pem = key_pem,
						  .key_pem_len = key_len, .timeout_ms = 5000 },
		      &g);
		assert_true(co_time_mono_ms() - t0 < 10000);
	} while (g.status == -ECONNREFUSED);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.code, 200);
	assert_non_null(strstr(g.body, "s_server"));

	/* Without our CA the server certificate is not trusted. */
	fetch(&loop, client,
	      &(struct co_http_req_opts){ .url = url, .cert_pem = cert_pem,
					  .cert_pem_len = cert_len, .key_pem = key_pem,
					  .key_pem_len = key_len, .timeout_ms = 5000 },
	      &g);
	assert_int_equal(g.status, -EPROTO);
	assert_non_null(strstr(g.err, "tls: "));
	print_message("untrusted: %s\n", g.err);

	/* Unless verification is explicitly skipped. */
	fetch(&loop, client,
	      &(struct co_http_req_opts){ .url = url, .cert_pem = cert_pem,
					  .cert_pem_len = cert_len, .key_pem = key_pem,
					  .key_pem_len = key_len, .insecure_skip_verify = 1,
					  .timeout_ms = 5000 },
	      &g);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.code, 200);

	/* No client certificate: the server refuses the handshake. */
	fetch(&loop, client,
	      &(struct co_http_req_opts){ .url = url, .ca_pem = ca_pem, .ca_pem_len = ca_len,
					  .timeout_ms = 5000 },
	      &g);
	print_message("no client cert: %s\n", g.err);
	assert_int_equal(g.status, -EPROTO);
	assert_int_equal(g.code, 0);

	co_http_client_close(client, NULL, NULL);
	co_subproc_cancel(proc);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(srv.calls, 1);
	assert_int_equal(srv.status, -ECANCELED);
	assert_int_equal(uv_loop_close(&loop), 0);

	{
		const char *rm[] = { "rm", "-rf", dir, NULL };

		run_ok(rm);
	}
	free(g.body);
	free(ca_pem);
	free(cert_pem);
	free(key_pem);
	free(url);
	free(accept);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tls_blobs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
