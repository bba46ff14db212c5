/*
 * `cutover traffic`: the embedded default load balancer from the command line.
 *
 *   status   weights, health, session rate and 5xx per server (show stat)
 *   shift    stepwise shift from one server to another with checks and automatic
 *            return on regression (clients/haproxy-shift.h)
 *   config   write the HAProxy configuration for the embedded default and check it
 *            with haproxy -c (used by scripts/lb-local.sh)
 *
 * The socket and server-state file default to ${CUTOVER_STATE_DIR:-./.cutover}/haproxy.
 */
#include "cli/cli.h"
#include "base/log.h"
#include "base/time.h"
#include "clients/haproxy-config.h"
#include "clients/haproxy-shift.h"
#include "clients/haproxy.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_STEPS 32
#define MAX_CLUSTERS 64

static const char usage[] =
	"usage: cutover traffic status [--socket PATH] [--backend NAME] [-o text|json]\n"
	"       cutover traffic shift --from OLD --to NEW [--steps 10,25,50,100]\n"
	"               [--interval 30s] [--check-every DURATION] [--max-error-ratio 0.01]\n"
	"               [--min-requests N] [--total-weight 100] [--socket PATH]\n"
	"               [--state-file PATH] [--backend clusters]\n"
	"       cutover traffic config --out FILE --port N [--preview-port N]\n"
	"               [--prom-port N] [--cluster NAME=HOST:PORT[@WEIGHT]]...\n"
	"               [--socket PATH] [--state-file PATH] [--pid-file PATH]\n"
	"               [--health-path /healthz] [--log-stderr] [--no-check]\n"
	"\n"
	"The socket is a unix path or a TCP stats socket HOST:PORT; it defaults to\n"
	"${CUTOVER_STATE_DIR:-./.cutover}/haproxy/admin.sock, and the server-state file\n"
	"(rewritten after every change so a reload keeps the weights) to server-state\n"
	"next to it.\n";

struct common {
	char *socket;
	char *state_file;
	const char *backend;
};

static void defaults(struct common *c)
{
	const char *dir = getenv("CUTOVER_STATE_DIR");

	if (!dir || !*dir)
		dir = "./.cutover";
	if (!c->socket)
		c->socket = co_asprintf("%s/haproxy/admin.sock", dir);
	if (!c->state_file)
		c->state_file = co_asprintf("%s/haproxy/server-state", dir);
	if (!c->backend)
		c->backend = "clusters";
}

static void common_release(struct common *c)
{
	free(c->socket);
	free(c->state_file);
}

/* Options taking a value: returns 1 when argv[*i] was one of the common ones. */
static int common_opt(struct common *c, int argc, char **argv, int *i)
{
	const char *a = argv[*i];

	if (*i + 1 >= argc)
		return 0;
	if (strcmp(a, "--socket") == 0) {
		free(c->socket);
		c->socket = co_strdup(argv[++*i]);
	} else if (strcmp(a, "--state-file") == 0) {
		free(c->state_file);
		c->state_file = co_strdup(argv[++*i]);
	} else if (strcmp(a, "--backend") == 0) {
		c->backend = argv[++*i];
	} else {
		return 0;
	}
	return 1;
}

static int close_loop(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
	return uv_loop_close(loop);
}

/* ---- status ---- */

struct status_ctx {
	const char *backend;
	int json;
	int rc;
};

static void print_status(const struct co_haproxy_csv *csv, struct status_ctx *ctx)
{
	json_t *servers = json_array();
	int found = 0;

	if (!ctx->json)
		printf("%-20s %-12s %-8s %6s %8s %7s %10s %8s\n", "SERVER", "STATUS", "CHECK",
		       "WEIGHT", "SESSIONS", "RATE/S", "RESPONSES", "5XX");
	for (size_t r = 0; r < co_haproxy_csv_rows(csv); r++) {
		struct co_haproxy_server_stat s;
		uint64_t resp = 0;

		if (co_haproxy_csv_server(csv, r, &s) < 0 || strcmp(s.backend, ctx->backend))
			continue;
		found++;
		for (int i = 0; i < 6; i++)
			resp += s.hrsp[i];
		if (ctx->json) {
			json_array_append_new(
				servers,
				json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:I}",
					  "server", s.server, "address", s.addr, "status",
					  s.status, "check", s.check_status, "weight",
					  s.weight, "uweight", s.uweight, "sessions",
					  (json_int_t)s.scur, "rate", (json_int_t)s.rate,
					  "responses", (json_int_t)resp, "hrsp_5xx",
					  (json_int_t)s.hrsp[4], "connection_errors",
					  (json_int_t)s.econ));
		} else {
			printf("%-20s %-12s %-8s %6d %8llu %7llu %10llu %8llu\n", s.server,
			       s.status, s.check_status, s.uweight,
			       (unsigned long long)s.scur, (unsigned long long)s.rate,
			       (unsigned long long)resp, (unsigned long long)s.hrsp[4]);
		}
	}
	if (ctx->json) {
		json_t *doc = json_pack("{s:s,s:o}", "backend", ctx->backend, "servers",
					servers);

		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(doc);
	} else {
		json_decref(servers);
	}
	if (!found) {
		fprintf(stderr, "cutover traffic: no servers in backend '%s'\n", ctx->backend);
		ctx->rc = CO_EXIT_FAILED;
	}
}

static void on_status(int status, const struct co_haproxy_csv *csv,
		      const struct co_error *err, void *data)
{
	struct status_ctx *ctx = data;

	if (status < 0) {
		co_log_err("traffic", "%s", co_error_str(err));
		ctx->rc = CO_EXIT_FAILED;
		return;
	}
	print_status(csv, ctx);
}

static int traffic_status(int argc, char **argv)
{
	struct common c = { 0 };
	struct status_ctx ctx = { .rc = CO_EXIT_OK };
	struct co_error err = CO_ERROR_INIT;
	struct co_haproxy *hx = NULL;
	uv_loop_t loop;
	int rc = CO_EXIT_OK;

	for (int i = 1; i < argc; i++) {
		if (common_opt(&c, argc, argv, &i))
			continue;
		if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "json") == 0)
				ctx.json = 1;
			else if (strcmp(argv[i], "text") != 0) {
				rc = co_cli_usage_error("traffic", "unknown output '%s'", argv[i]);
				goto out;
			}
		} else {
			rc = co_cli_usage_error("traffic", "unknown option '%s'", argv[i]);
			goto out;
		}
	}
	defaults(&c);
	ctx.backend = c.backend;
	uv_loop_init(&loop);
	if (co_haproxy_new(&hx, &loop, &(struct co_haproxy_opts){ .socket = c.socket },
			   &err) < 0 ||
	    co_haproxy_show_stat(hx, on_status, &ctx, &err) < 0) {
		co_log_err("traffic", "%s", co_error_str(&err));
		ctx.rc = CO_EXIT_FAILED;
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	co_haproxy_free(hx);
	close_loop(&loop);
	rc = ctx.rc;
out:
	common_release(&c);
	return rc;
}

/* ---- shift ---- */

struct shift_ctx {
	struct co_haproxy_shift *shift;
	uv_signal_t sigint, sigterm;
	int rc;
	int done;
};

static void on_progress(const struct co_haproxy_shift_event *ev, void *data)
{
	switch (ev->kind) {
	case CO_HAPROXY_SHIFT_STEP:
		co_log_info("traffic", "step %d: %d%% to the new server (weights %d/%d)",
			    ev->step + 1, ev->percent, ev->from_weight, ev->to_weight);
		break;
	case CO_HAPROXY_SHIFT_CHECK:
		if (ev->pass)
			co_log_info("traffic", "check passed: %s", ev->reason);
		else
			co_log_warn("traffic", "check failed: %s", ev->reason);
		break;
	case CO_HAPROXY_SHIFT_ROLLBACK:
		co_log_warn("traffic", "all traffic returned to the old server");
		break;
	}
}

static void close_signals(struct shift_ctx *ctx)
{
	uv_close((uv_handle_t *)&ctx->sigint, NULL);
	uv_close((uv_handle_t *)&ctx->sigterm, NULL);
}

static void on_shift_done(int status, const struct co_haproxy_shift_result *res,
			  const struct co_error *err, void *data)
{
	struct shift_ctx *ctx = data;

	ctx->done = 1;
	close_signals(ctx);
	if (status == 0) {
		co_log_info("traffic", "shift complete: %d%% on the new server", res->percent);
		ctx->rc = CO_EXIT_OK;
		return;
	}
	co_log_err("traffic", "%s", co_error_str(err));
	ctx->rc = status == -ECANCELED ? CO_EXIT_SIGINT : CO_EXIT_FAILED;
}

static void on_signal(uv_signal_t *sig, int signum)
{
	struct shift_ctx *ctx = sig->data;

	co_log_warn("traffic", "interrupted: returning traffic to the old server");
	co_haproxy_shift_cancel(ctx->shift, 1);
}

static int parse_duration_opt(const char *s, uint64_t *ret)
{
	int64_t ms;

	if (co_time_parse_duration(s, &ms) < 0 || ms < 0)
		return -EINVAL;
	*ret = (uint64_t)ms;
	return 0;
}

static int traffic_shift(int argc, char **argv)
{
	struct common c = { 0 };
	struct co_haproxy_shift_opts opts = { .interval_ms = 30000 };
	struct shift_ctx ctx = { .rc = CO_EXIT_FAILED };
	struct co_error err = CO_ERROR_INIT;
	struct co_haproxy *hx = NULL;
	int steps[MAX_STEPS] = { 10, 25, 50, 100 };
	int n = 4, rc = CO_EXIT_OK;
	uv_loop_t loop;
	char *end;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (common_opt(&c, argc, argv, &i))
			continue;
		if (!v) {
			rc = co_cli_usage_error("traffic", "option '%s' needs a value", a);
			goto out;
		}
		i++;
		if (strcmp(a, "--from") == 0) {
			opts.from = v;
		} else if (strcmp(a, "--to") == 0) {
			opts.to = v;
		} else if (strcmp(a, "--steps") == 0) {
			n = co_haproxy_shift_parse_steps(v, steps, MAX_STEPS);
			if (n < 0) {
				rc = co_cli_usage_error("traffic", "bad --steps '%s'", v);
				goto out;
			}
		} else if (strcmp(a, "--interval") == 0 || strcmp(a, "--check-every") == 0) {
			uint64_t *dst = a[2] == 'i' ? &opts.interval_ms : &opts.check_every_ms;

			if (parse_duration_opt(v, dst) < 0) {
				rc = co_cli_usage_error("traffic", "bad duration '%s'", v);
				goto out;
			}
		} else if (strcmp(a, "--max-error-ratio") == 0) {
			opts.max_error_ratio = strtod(v, &end);
			if (*end || !(opts.max_error_ratio > 0 && opts.max_error_ratio <= 1)) {
				rc = co_cli_usage_error("traffic", "bad error ratio '%s'", v);
				goto out;
			}
		} else if (strcmp(a, "--min-requests") == 0) {
			opts.min_requests = strtoull(v, &end, 10);
			if (*end || *v == '-') {
				rc = co_cli_usage_error("traffic", "bad count '%s'", v);
				goto out;
			}
		} else if (strcmp(a, "--total-weight") == 0) {
			opts.total_weight = (int)strtol(v, &end, 10);
			if (*end || opts.total_weight < 1 || opts.total_weight > 256) {
				rc = co_cli_usage_error("traffic", "bad total weight '%s'", v);
				goto out;
			}
		} else {
			rc = co_cli_usage_error("traffic", "unknown option '%s'", a);
			goto out;
		}
	}
	if (!opts.from || !opts.to) {
		rc = co_cli_usage_error("traffic", "shift needs --from and --to");
		goto out;
	}
	defaults(&c);
	opts.backend = c.backend;
	opts.steps = steps;
	opts.n_steps = (size_t)n;
	opts.interval_ms = co_time_scaled((int64_t)opts.interval_ms);
	if (opts.check_every_ms)
		opts.check_every_ms = co_time_scaled((int64_t)opts.check_every_ms);
	opts.progress = on_progress;

	uv_loop_init(&loop);
	if (co_haproxy_new(&hx, &loop,
			   &(struct co_haproxy_opts){ .socket = c.socket,
						      .state_file = c.state_file },
			   &err) < 0 ||
	    co_haproxy_shift_start(&ctx.shift, &loop, hx, &opts, on_shift_done, &ctx,
				   &err) < 0) {
		co_log_err("traffic", "%s", co_error_str(&err));
	} else {
		uv_signal_init(&loop, &ctx.sigint);
		uv_signal_init(&loop, &ctx.sigterm);
		ctx.sigint.data = ctx.sigterm.data = &ctx;
		uv_signal_start(&ctx.sigint, on_signal, SIGINT);
		uv_signal_start(&ctx.sigterm, on_signal, SIGTERM);
		uv_unref((uv_handle_t *)&ctx.sigint);
		uv_unref((uv_handle_t *)&ctx.sigterm);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	co_haproxy_free(hx);
	close_loop(&loop);
	rc = ctx.rc;
out:
	common_release(&c);
	return rc;
}

/* ---- config ---- */

static int parse_cluster(char *spec, struct co_haproxy_config_cluster *ret)
{
	char *eq = strchr(spec, '='), *at;

	if (!eq)
		return -EINVAL;
	*eq = '\0';
	ret->name = spec;
	ret->address = eq + 1;
	ret->weight = 100;
	at = strchr(eq + 1, '@');
	if (at) {
		char *end;

		*at = '\0';
		ret->weight = (int)strtol(at + 1, &end, 10);
		if (*end || at[1] == '\0')
			return -EINVAL;
	}
	return 0;
}

static int parse_port(const char *s, int *ret)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*end || v < 1 || v > 65535)
		return -EINVAL;
	*ret = (int)v;
	return 0;
}

static int traffic_config(int argc, char **argv)
{
	struct common c = { 0 };
	struct co_haproxy_config cfg = { 0 };
	struct co_haproxy_config_cluster clusters[MAX_CLUSTERS];
	struct co_error err = CO_ERROR_INIT;
	const char *out = NULL;
	int check = 1, rc = CO_EXIT_OK;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (common_opt(&c, argc, argv, &i))
			continue;
		if (strcmp(a, "--log-stderr") == 0) {
			cfg.log_stderr = 1;
			continue;
		}
		if (strcmp(a, "--no-check") == 0) {
			check = 0;
			continue;
		}
		if (!v) {
			rc = co_cli_usage_error("traffic", "option '%s' needs a value", a);
			goto out;
		}
		i++;
		if (strcmp(a, "--out") == 0) {
			out = v;
		} else if (strcmp(a, "--port") == 0 || strcmp(a, "--preview-port") == 0 ||
			   strcmp(a, "--prom-port") == 0) {
			int *dst = a[3] == 'o' ? &cfg.public_port
				   : a[3] == 'r' && a[4] == 'e' ? &cfg.preview_port
								: &cfg.prom_port;

			if (parse_port(v, dst) < 0) {
				rc = co_cli_usage_error("traffic", "bad port '%s'", v);
				goto out;
			}
		} else if (strcmp(a, "--cluster") == 0) {
			if (cfg.n_clusters == MAX_CLUSTERS ||
			    parse_cluster(v, &clusters[cfg.n_clusters]) < 0) {
				rc = co_cli_usage_error("traffic", "bad --cluster '%s'", v);
				goto out;
			}
			cfg.n_clusters++;
		} else if (strcmp(a, "--pid-file") == 0) {
			cfg.pid_file = v;
		} else if (strcmp(a, "--health-path") == 0) {
			cfg.health_path = v;
		} else {
			rc = co_cli_usage_error("traffic", "unknown option '%s'", a);
			goto out;
		}
	}
	if (!out || !cfg.public_port) {
		rc = co_cli_usage_error("traffic", "config needs --out and --port");
		goto out;
	}
	defaults(&c);
	cfg.stats_socket = c.socket;
	cfg.state_file = c.state_file;
	cfg.backend = c.backend;
	cfg.clusters = clusters;
	if (co_haproxy_config_write(out, &cfg, &err) < 0 ||
	    (check && co_haproxy_config_check(NULL, out, &err) < 0)) {
		co_log_err("traffic", "%s", co_error_str(&err));
		rc = CO_EXIT_FAILED;
	}
out:
	common_release(&c);
	return rc;
}

int cmd_traffic(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CO_EXIT_USAGE : CO_EXIT_OK;
	}
	if (strcmp(argv[1], "status") == 0)
		return traffic_status(argc - 1, argv + 1);
	if (strcmp(argv[1], "shift") == 0)
		return traffic_shift(argc - 1, argv + 1);
	if (strcmp(argv[1], "config") == 0)
		return traffic_config(argc - 1, argv + 1);
	return co_cli_usage_error("traffic", "unknown subcommand '%s'", argv[1]);
}
