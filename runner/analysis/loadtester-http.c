/*
 * HTTP glue for the loadtester: one route per loadtester path on a co_http_server,
 * each handing method-independent requests to co_loadtester_handle() and answering
 * with its status and text. Kept apart from loadtester.c so programs and tests that
 * use the core do not link the server.
 */
#include "analysis/loadtester.h"

#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "net/http-server.h"

static const char *const paths[] = {
	"/", "/gate/approve", "/gate/halt", "/gate/check", "/gate/open", "/gate/close",
	"/rollback/check", "/rollback/open", "/rollback/close",
};
#define N_PATHS (sizeof(paths) / sizeof(paths[0]))

/* The loadtester path a request was routed by: the longest known path the request
 * path ends with (the mount prefix precedes it). */
static const char *loadtester_path(const char *path)
{
	size_t len = strlen(path), best = 0;
	const char *found = "/";

	for (size_t i = 0; i < N_PATHS; i++) {
		size_t n = strlen(paths[i]);

		if (n <= len && n > best && strcmp(path + len - n, paths[i]) == 0) {
			best = n;
			found = paths[i];
		}
	}
	return found;
}

static void handler(struct co_http_req *req, void *data)
{
	struct co_loadtester *lt = data;
	struct co_buf out = CO_BUF_INIT;
	const char *body;
	size_t len;
	int status;

	body = co_http_req_body(req, &len);
	status = co_loadtester_handle(lt, loadtester_path(co_http_req_path(req)), body,
				      len, &out);
	co_http_respond(req, status, "text/plain; charset=utf-8", co_buf_cstr(&out),
			out.len);
	co_buf_release(&out);
}

void co_loadtester_mount(struct co_loadtester *lt, struct co_http_server *srv,
			 const char *prefix)
{
	const char *pre = prefix ? prefix : "";

	for (size_t i = 0; i < N_PATHS; i++) {
		char *pattern = co_asprintf("%s%s", pre, paths[i]);

		co_http_server_route(srv, "*", pattern, handler, lt);
		free(pattern);
	}
}
