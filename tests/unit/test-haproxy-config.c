/* Unit tests for the embedded default's HAProxy configuration: content, validation of
 * every input, and acceptance by the real haproxy -c when it is installed. */
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

#include "clients/haproxy-config.h"

static const struct co_haproxy_config_cluster two[] = {
	{ "blue", "127.0.0.1:8001", 100 },
	{ "green", "127.0.0.1:8002", 0 },
};

static struct co_haproxy_config base(void)
{
	return (struct co_haproxy_config){
		.stats_socket = "/tmp/cutover-test/admin.sock",
		.state_file = "/tmp/cutover-test/server-state",
		.public_port = 18080,
		.preview_port = 18081,
		.prom_port = 18405,
		.clusters = two,
		.n_clusters = 2,
	};
}

static void test_content(void **state)
{
	struct co_haproxy_config cfg = base();
	struct co_buf b = CO_BUF_INIT;
	const char *t;

	assert_int_equal(co_haproxy_config_format(&b, &cfg, NULL), 0);
	t = co_buf_cstr(&b);
	assert_non_null(strstr(t, "stats socket /tmp/cutover-test/admin.sock mode 600 "
				  "level admin expose-fd listeners\n"));
	assert_non_null(strstr(t, "server-state-file /tmp/cutover-test/server-state\n"));
	assert_non_null(strstr(t, "load-server-state-from-file global\n"));
	assert_non_null(strstr(t, "frontend public\n    bind 127.0.0.1:18080\n"
				  "    default_backend clusters\n"));
	assert_non_null(strstr(t, "backend clusters\n    balance roundrobin\n"));
	assert_non_null(strstr(t, "http-check send meth GET uri /healthz\n"));
	assert_non_null(strstr(t, "server blue 127.0.0.1:8001 weight 100 check\n"));
	assert_non_null(strstr(t, "server green 127.0.0.1:8002 weight 0 check\n"));
	assert_non_null(strstr(t, "use_backend preview_green if "
				  "{ req.hdr(X-Cutover-Cluster) -m str green }\n"));
	assert_non_null(strstr(t, "backend preview_green\n"));
	assert_non_null(strstr(t, "bind 127.0.0.1:18405\n"));
	assert_non_null(strstr(t, "http-request use-service prometheus-exporter if "
				  "{ path /metrics }\n"));
	assert_null(strstr(t, "log stderr"));
	co_buf_release(&b);

	/* without preview and exporter, with logging and another backend/health path */
	cfg.preview_port = 0;
	cfg.prom_port = 0;
	cfg.log_stderr = 1;
	cfg.backend = "edge";
	cfg.health_path = "/ready?full=1";
	assert_int_equal(co_haproxy_config_format(&b, &cfg, NULL), 0);
	t = co_buf_cstr(&b);
	assert_null(strstr(t, "frontend preview"));
	assert_null(strstr(t, "prometheus-exporter"));
	assert_non_null(strstr(t, "log stderr format raw local0"));
	assert_non_null(strstr(t, "backend edge\n"));
	assert_non_null(strstr(t, "uri /ready?full=1\n"));
	co_buf_release(&b);
}

static void expect_invalid(struct co_haproxy_config *cfg, const char *needle)
{
	struct co_buf b = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;

	assert_int_equal(co_haproxy_config_format(&b, cfg, &err), -EINVAL);
	if (!strstr(err.msg, needle))
		fail_msg("'%s' does not mention '%s'", err.msg, needle);
	assert_int_equal(b.len, 0);
	co_buf_release(&b);
}

static void test_validation(void **state)
{
	struct co_haproxy_config cfg;
	struct co_haproxy_config_cluster bad[2] = { two[0], two[1] };

	cfg = base();
	cfg.stats_socket = "/tmp/a b.sock";
	expect_invalid(&cfg, "stats socket");
	cfg = base();
	cfg.state_file = NULL;
	expect_invalid(&cfg, "state file");
	cfg = base();
	cfg.public_port = 0;
	expect_invalid(&cfg, "port");
	cfg = base();
	cfg.prom_port = cfg.public_port;
	expect_invalid(&cfg, "differ");
	cfg = base();
	cfg.health_path = "healthz";
	expect_invalid(&cfg, "health path");
	cfg = base();
	cfg.health_path = "/x y";
	expect_invalid(&cfg, "health path");
	cfg = base();
	cfg.bind_host = "0.0.0.0 ssl";
	expect_invalid(&cfg, "bind host");

	cfg = base();
	cfg.clusters = bad;
	bad[1].name = "green\n    server evil 1.2.3.4:80";
	expect_invalid(&cfg, "cluster name");
	bad[1] = two[1];
	bad[1].address = "127.0.0.1:8002 backup";
	expect_invalid(&cfg, "invalid address");
	bad[1] = two[1];
	bad[1].weight = 300;
	expect_invalid(&cfg, "weight 300");
	bad[1] = two[1];
	bad[1].name = "blue";
	expect_invalid(&cfg, "duplicate cluster 'blue'");
}

static void test_haproxy_accepts(void **state)
{
	char dir[] = "/tmp/cutover-cfg-XXXXXX";
	char path[64], sock[64], st[64];
	struct co_haproxy_config cfg = base();
	struct co_error err = CO_ERROR_INIT;
	FILE *f;

	if (access("/usr/sbin/haproxy", X_OK) != 0)
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/haproxy.cfg", dir);
	snprintf(sock, sizeof(sock), "%s/admin.sock", dir);
	snprintf(st, sizeof(st), "%s/state", dir);
	cfg.stats_socket = sock;
	cfg.state_file = st;
	assert_int_equal(co_haproxy_config_write(path, &cfg, &err), 0);
	if (co_haproxy_config_check("/usr/sbin/haproxy", path, &err) < 0)
		fail_msg("%s", err.msg);
	/* zero clusters is valid too: servers are added at run time */
	cfg.n_clusters = 0;
	assert_int_equal(co_haproxy_config_write(path, &cfg, &err), 0);
	if (co_haproxy_config_check("/usr/sbin/haproxy", path, &err) < 0)
		fail_msg("%s", err.msg);

	/* a file HAProxy rejects gives its alert */
	f = fopen(path, "w");
	fputs("global\n    no-such-keyword 1\n", f);
	fclose(f);
	assert_int_equal(co_haproxy_config_check("/usr/sbin/haproxy", path, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "haproxy rejected"));
	assert_int_equal(co_haproxy_config_check("/nonexistent/haproxy", path, &err),
			 -ENOENT);
	unlink(path);
	unlink(st);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content),
		cmocka_unit_test(test_validation),
		cmocka_unit_test(test_haproxy_accepts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
