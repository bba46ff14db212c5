/*
 * The runner's HTTP surface, shared by `cutover serve` and `cutover upgrade` (which
 * hosts it so Flagger canaries can reach the gate and load tester while tenants
 * deploy):
 *
 *   GET  /healthz                      "ok"
 *   GET  /metrics                      the runner's metrics (Prometheus text)
 *   GET  /api/v1/pipelines             summaries of every pipeline in the state dir
 *   GET  /api/v1/pipelines/{id}        one pipeline's summary (404 if unknown)
 *   POST /hooks/git                    signed git push webhook -> on_push callback,
 *                                      and a line in <state>/events/git-push.jsonl
 *   POST /, /gate/..., /rollback/...   the Flagger-loadtester-compatible endpoint
 *
 * Webhooks are verified (HMAC-SHA256 / GitLab token, see clients/git-webhook.h) when
 * a secret is configured; bodies are bounded. The push is answered 202 at once; the
 * reconciliation it triggers runs asynchronously through on_push.
 */
#ifndef CO_ENGINE_SERVE_H
#define CO_ENGINE_SERVE_H

#include <uv.h>

#include "base/error.h"
#include "base/metrics.h"
#include "clients/git-webhook.h"
#include "engine/stage.h"

struct co_serve;

/* A verified push arrived (push borrowed for the call). */
typedef void (*co_serve_push_cb)(const struct co_git_push *push, void *data);

struct co_serve_opts {
	const char *host;                          /* NULL = 127.0.0.1 */
	int port;                                  /* 0 = ephemeral */
	const char *state_dir;
	const char *webhook_secret;                /* NULL/"": unsigned webhooks accepted */
	const struct co_stage_ops *const *stages;  /* names for pipeline summaries */
	struct co_metrics *metrics;                /* borrowed; NULL = a private registry */
	co_serve_push_cb on_push;
	void *push_data;
};

int co_serve_new(struct co_serve **ret, uv_loop_t *loop, const struct co_serve_opts *opts,
		 struct co_error *err);

int co_serve_port(const struct co_serve *s);
/* "http://127.0.0.1:PORT" (borrowed). */
const char *co_serve_url(const struct co_serve *s);
struct co_metrics *co_serve_metrics(struct co_serve *s);

/* Open the confirm-rollout gate of canary ns/name (what POST /gate/open does), for
 * a runner that approves its own rollouts. 0 or a negative code. */
int co_serve_gate_open(struct co_serve *s, const char *ns, const char *name);

/* Stop listening, finish in-flight answers, cancel load tests, free; cb may be NULL. */
typedef void (*co_serve_close_cb)(void *data);
void co_serve_close(struct co_serve *s, co_serve_close_cb cb, void *data);

#endif
