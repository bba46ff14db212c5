/*
 * httpd-demo: the smallest program on co_http_server, for load tests.
 *
 * GET / answers "ok". The bound port is printed on stdout as "port N" once the
 * server listens, so scripts can start it on an ephemeral port. SIGINT or SIGTERM
 * closes the server gracefully and the program exits 0.
 *
 * usage: httpd-demo [PORT]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <uv.h>

#include "net/http-server.h"

static void handle_root(struct co_http_req *req, void *data)
{
	co_http_respond(req, 200, "text/plain", "ok", 2);
}

static void on_closed(void *data)
{
	uv_signal_t *sigs = data;

	uv_close((uv_handle_t *)&sigs[0], NULL);
	uv_close((uv_handle_t *)&sigs[1], NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct co_http_server *srv = s->data;

	uv_signal_stop(s);
	co_http_server_close(srv, on_closed, s->loop->data);
}

int main(int argc, char **argv)
{
	struct co_http_server_opts opts = { .port = argc > 1 ? atoi(argv[1]) : 0 };
	struct co_error err = CO_ERROR_INIT;
	struct co_http_server *srv;
	uv_loop_t *loop = uv_default_loop();
	uv_signal_t sigs[2];
	int r;

	r = co_http_server_new(&srv, loop, &opts, &err);
	if (r < 0) {
		fprintf(stderr, "httpd-demo: %s\n", err.msg);
		return 1;
	}
	co_http_server_route(srv, "GET", "/", handle_root, NULL);
	loop->data = sigs;
	for (int i = 0; i < 2; i++) {
		uv_signal_init(loop, &sigs[i]);
		sigs[i].data = srv;
		uv_signal_start(&sigs[i], on_signal, i ? SIGTERM : SIGINT);
	}
	printf("port %d\n", co_http_server_port(srv));
	fflush(stdout);
	uv_run(loop, UV_RUN_DEFAULT);
	return uv_loop_close(loop) == 0 ? 0 : 1;
}
