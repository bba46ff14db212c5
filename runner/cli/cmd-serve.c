/*
 * `cutover serve`: the runner as a daemon. It serves the HTTP surface of engine/serve
 * (health, metrics, pipeline API, Flagger gates and load tester, git webhooks) and,
 * for every verified git push, asks Flux on each cluster in the registry to reconcile
 * the GitRepositories that follow the pushed repository: a push rolls out on every
 * live cluster within seconds instead of at the next interval.
 *
 * SIGINT/SIGTERM close the server gracefully (in-flight answers finish, load tests
 * are cancelled) and the command exits 0.
 */
#include "cli/cli.h"
#include "cli/pipeline-run.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "clients/flux.h"
#include "clients/kube.h"
#include "clients/kubeconfig.h"
#include "engine/serve.h"
#include "net/http-client.h"
#include "providers/registry.h"

static const char usage_text[] =
	"usage: cutover serve [--listen HOST:PORT] [--state-dir DIR]\n"
	"                     [--webhook-secret-file FILE]\n"
	"\n"
	"Serves /healthz, /metrics, /api/v1/pipelines[/ID], the git webhook /hooks/git and\n"
	"the Flagger-loadtester-compatible endpoint (POST /, /gate/*, /rollback/*).\n"
	"\n"
	"  --listen HOST:PORT          address (default 127.0.0.1:8090; port 0: any)\n"
	"  --state-dir DIR             state dir (default $CUTOVER_STATE_DIR or ./.cutover)\n"
	"  --webhook-secret-file FILE  HMAC secret for webhooks (default:\n"
	"                              $CUTOVER_WEBHOOK_SECRET); without one, unsigned\n"
	"                              pushes are accepted\n"
	"\n"
	"A verified push to a repository makes every registered cluster reconcile the\n"
	"GitRepositories whose URL names it (annotation reconcile.fluxcd.io/requestedAt).\n";

struct serve_ctx {
	uv_loop_t *loop;
	struct co_serve *srv;
	struct co_http_client *http;
	char *state_dir;
	struct co_metric *m_reconciles;
	uv_signal_t sigint, sigterm;
	int stopping;
};

struct reconcile {
	struct serve_ctx *ctx;
	struct co_kube *kube;
	char *cluster;
};

static void reconciled(struct co_kube_result *res, void *data)
{
	struct reconcile *r = data;
	const char *v[] = { r->cluster, res->status == 0 ? "succeeded" : "failed", NULL };
	size_t i;
	json_t *id;

	co_metric_add(r->ctx->m_reconciles, v, 1);
	if (res->status < 0) {
		co_log_warn("serve", "cluster '%s': reconcile request failed: %s", r->cluster,
			    res->err.msg);
	} else if (json_array_size(res->obj) == 0) {
		co_log_info("serve", "cluster '%s': no GitRepository follows the pushed "
			    "repository", r->cluster);
	} else {
		json_array_foreach(res->obj, i, id)
			co_log_info("serve", "cluster '%s': reconcile requested for "
				    "GitRepository '%s'", r->cluster, json_string_value(id));
	}
	co_kube_free(r->kube);
	free(r->cluster);
	free(r);
}

static void reconcile_cluster(struct serve_ctx *ctx, const char *name, const json_t *c,
			      const struct co_git_push *push)
{
	const char *kcfg = json_string_value(json_object_get(c, "kubeconfig"));
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;
	struct reconcile *r;

	if (!kcfg) {
		co_log_warn("serve", "cluster '%s' has no kubeconfig in the registry", name);
		return;
	}
	if (co_kubeconfig_load(&cfg, kcfg, NULL, &err) < 0) {
		co_log_warn("serve", "cluster '%s': %s", name, err.msg);
		return;
	}
	r = co_calloc(1, sizeof(*r));
	r->ctx = ctx;
	r->cluster = co_strdup(name);
	if (co_kube_new(&r->kube, ctx->loop, ctx->http, cfg, &err) < 0 ||
	    co_flux_reconcile_sources(r->kube, (const char *const *)push->urls, push->branch,
				      reconciled, r, &err) < 0) {
		co_log_warn("serve", "cluster '%s': %s", name, err.msg);
		co_kube_free(r->kube);
		free(r->cluster);
		free(r);
	}
	co_kubeconfig_free(cfg);
}

static void on_push(const struct co_git_push *push, void *data)
{
	struct serve_ctx *ctx = data;
	struct co_registry *reg = NULL;
	struct co_error err = CO_ERROR_INIT;
	const char *name;
	json_t *c;

	if (co_registry_open(&reg, ctx->state_dir, &err) < 0) {
		co_log_warn("serve", "push not propagated: %s", err.msg);
		return;
	}
	json_object_foreach((json_t *)co_registry_all(reg), name, c) {
		const char *role = json_string_value(json_object_get(c, "role"));

		/* Retired clusters are gone; every other cluster follows git. */
		if (role && strcmp(role, "retired") == 0)
			continue;
		reconcile_cluster(ctx, name, c, push);
	}
	co_registry_free(reg);
}

static void closed(void *data)
{
	struct serve_ctx *ctx = data;

	co_http_client_close(ctx->http, NULL, NULL);
	uv_close((uv_handle_t *)&ctx->sigint, NULL);
	uv_close((uv_handle_t *)&ctx->sigterm, NULL);
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct serve_ctx *ctx = sig->data;

	if (ctx->stopping) {
		co_log_warn("serve", "second signal: exiting at once");
		exit(signum == SIGINT ? CO_EXIT_SIGINT : CO_EXIT_SIGTERM);
	}
	ctx->stopping = 1;
	co_log_info("serve", "%s: shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
	co_serve_close(ctx->srv, closed, ctx);
}

int cmd_serve(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "webhook-secret-file", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const rec_labels[] = { "cluster", "result", NULL };
	const char *listen = "127.0.0.1:8090", *secret_file = NULL;
	const char *state_dir = getenv("CUTOVER_STATE_DIR");
	struct co_buf secret = CO_BUF_INIT;
	struct co_error err = CO_ERROR_INIT;
	struct serve_ctx ctx = { 0 };
	struct co_serve_opts so = { 0 };
	struct co_metrics *metrics;
	char host[256];
	uv_loop_t loop;
	int c, port, rc = CO_EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			listen = optarg;
			break;
		case 's':
			state_dir = optarg;
			break;
		case 'w':
			secret_file = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CO_EXIT_OK;
		case ':':
			return co_cli_usage_error("serve", "option '%s' needs a value",
						  argv[optind - 1]);
		default:
			return co_cli_usage_error("serve", "unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return co_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
	if (co_cli_parse_listen(listen, host, sizeof(host), &port) < 0)
		return co_cli_usage_error("serve", "bad --listen '%s' (want HOST:PORT)", listen);
	if (!state_dir || !*state_dir)
		state_dir = ".cutover";
	if (secret_file) {
		if (co_fs_read(secret_file, 4096, &secret, &err) < 0) {
			fprintf(stderr, "cutover serve: webhook secret: %s\n", err.msg);
			return CO_EXIT_FAILED;
		}
		while (secret.len && (secret.data[secret.len - 1] == '\n' ||
				      secret.data[secret.len - 1] == '\r'))
			secret.data[--secret.len] = '\0';
	} else if (getenv("CUTOVER_WEBHOOK_SECRET")) {
		co_buf_puts(&secret, getenv("CUTOVER_WEBHOOK_SECRET"));
	}

	uv_loop_init(&loop);
	metrics = co_metrics_new();
	ctx.loop = &loop;
	ctx.state_dir = (char *)state_dir;
	ctx.m_reconciles = co_metrics_family(metrics, "cutover_reconcile_requests_total",
					     "Flux reconcile requests sent after git pushes.",
					     CO_METRIC_COUNTER, rec_labels, NULL, 0);
	if (co_http_client_new(&ctx.http, &loop, &err) < 0) {
		fprintf(stderr, "cutover serve: %s\n", err.msg);
		rc = CO_EXIT_FAILED;
		goto out;
	}
	so.host = host;
	so.port = port;
	so.state_dir = state_dir;
	so.webhook_secret = secret.len ? co_buf_cstr(&secret) : NULL;
	so.metrics = metrics;
	so.on_push = on_push;
	so.push_data = &ctx;
	if (co_serve_new(&ctx.srv, &loop, &so, &err) < 0) {
		fprintf(stderr, "cutover serve: %s\n", err.msg);
		co_http_client_close(ctx.http, NULL, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		rc = CO_EXIT_FAILED;
		goto out;
	}
	uv_signal_init(&loop, &ctx.sigint);
	uv_signal_init(&loop, &ctx.sigterm);
	ctx.sigint.data = ctx.sigterm.data = &ctx;
	uv_signal_start(&ctx.sigint, on_signal, SIGINT);
	uv_signal_start(&ctx.sigterm, on_signal, SIGTERM);
	co_log_info("serve", "listening on %s (state dir '%s')", co_serve_url(ctx.srv),
		    state_dir);
	/* A line on stdout for scripts that started us with port 0. */
	printf("%s\n", co_serve_url(ctx.srv));
	fflush(stdout);
	uv_run(&loop, UV_RUN_DEFAULT);
out:
	uv_loop_close(&loop);
	co_metrics_free(metrics);
	co_buf_release(&secret);
	return rc;
}
