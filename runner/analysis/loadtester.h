/*
 * A Flagger-loadtester compatible endpoint, so Flagger canaries can call cutover
 * (`cutover serve` mounts it) instead of the flagger-loadtester pod.
 *
 * Routes (any method, as Flagger's loadtester accepts):
 *   POST /                Flagger's webhook JSON {name, namespace, phase, checksum,
 *                         metadata}. metadata.type "cmd" (the default) runs the hey
 *                         command in metadata.cmd natively on co_loadgen, in the
 *                         background: 202 at once; while the same command for the
 *                         same canary still runs, a repeat is answered 202 and not
 *                         started again. Other types (bash, helm, helmv3, ...) get 400
 *                         saying only native commands are supported; no metadata, no
 *                         cmd or a bad command also 400.
 *   /gate/approve         200 always          /gate/halt      403 always
 *   /gate/check           200 if the canary's gate is open, else 403 (closed by default)
 *   /gate/open|close      202, open or close the gate of name.namespace
 *   /rollback/check       200 if rollback is open for the canary, else 403
 *   /rollback/open|close  202
 * Flagger counts only 200-202 as success, so 403 holds a canary at a gate.
 *
 * Everything runs on the loop given to co_loadtester_new(); the load itself runs on
 * the load generator's threads.
 */
#ifndef CO_ANALYSIS_LOADTESTER_H
#define CO_ANALYSIS_LOADTESTER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "analysis/loadgen.h"
#include "base/buf.h"
#include "base/error.h"

struct co_loadtester;
struct co_http_server;

struct co_loadtester_opts {
	unsigned max_running;   /* concurrent commands; beyond, 429; 0 = 16 */
	unsigned max_gates;     /* gate entries kept; 0 = 10000 */
};

int co_loadtester_new(struct co_loadtester **ret_lt, uv_loop_t *loop,
		      const struct co_loadtester_opts *opts, struct co_error *err);

/*
 * Close: cancel running commands; cb (may be NULL) runs once they all finished, and
 * the loadtester is freed. Routes mounted on a server must be gone (server closed)
 * before the call.
 */
typedef void (*co_loadtester_close_cb)(void *data);
void co_loadtester_close(struct co_loadtester *lt, co_loadtester_close_cb cb,
			 void *data);

/* Mount the routes above on srv under prefix ("" for the root; "/loadtester"
 * gives /loadtester/ and /loadtester/gate/...). lt must outlive srv's use of it. */
void co_loadtester_mount(struct co_loadtester *lt, struct co_http_server *srv,
			 const char *prefix);

/*
 * The transport-independent core behind the routes: handle one request for path
 * ("/", "/gate/check", ...) with body; returns the HTTP status and appends a short
 * text answer to ret_body. Unknown paths give 404.
 */
int co_loadtester_handle(struct co_loadtester *lt, const char *path, const char *body,
			 size_t len, struct co_buf *ret_body);

/* Called on the loop each time a command finishes (status 0, -ECANCELED or an error;
 * r is borrowed for the call). For logging by the owner and for tests. */
typedef void (*co_loadtester_done_cb)(const char *canary, const char *cmd, int status,
				      const struct co_loadgen_result *r, void *data);
void co_loadtester_on_done(struct co_loadtester *lt, co_loadtester_done_cb cb,
			   void *data);

struct co_loadtester_stats {
	uint64_t started;        /* commands started */
	uint64_t deduplicated;   /* repeats answered while the same command ran */
	uint64_t finished;
	unsigned running;
};
void co_loadtester_stats(const struct co_loadtester *lt,
			 struct co_loadtester_stats *ret_stats);

#endif
