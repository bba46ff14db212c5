/*
 * `cutover loadtest URL [flags]`: run the load generator from the command line with
 * hey's flag names (see analysis/heycmd.h) plus --rate, --warmup, --threads and
 * -o json, and print a hey/wrk-like summary or a JSON document. Ctrl-C stops the run
 * early and still prints what was measured.
 */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "analysis/heycmd.h"
#include "analysis/loadgen.h"

static const char usage[] =
	"usage: cutover loadtest URL [flags]\n"
	"\n"
	"HTTP/1.1 load generator (hey's flag names for the supported subset):\n"
	"  -z DURATION    run for this long (e.g. 10s, 1m); wins over -n\n"
	"  -n N           exact number of requests (default 200)\n"
	"  -c N           connections (default 50)\n"
	"  -q QPS         rate limit per connection, total rate = c*q (open model)\n"
	"  --rate R       total requests/s on a fixed plan (open model, latency\n"
	"                 corrected for coordinated omission)\n"
	"  -m METHOD      request method (default GET)\n"
	"  -H 'K: V'      extra header, repeatable\n"
	"  -host HOST     Host header\n"
	"  -d BODY        request body\n"
	"  -T TYPE        content type (default text/html when a body is given)\n"
	"  -A AGENT       user agent\n"
	"  -t SECONDS     per-request timeout (default 20, 0 = none)\n"
	"  --warmup DUR   uncounted warm-up before measuring\n"
	"  --threads N    worker threads, each with its own event loop (default 1)\n"
	"  -o text|json   output format (default text)\n";

struct run {
	uv_signal_t sigint;
	struct co_loadgen *lg;
	int status;
	int signalled;
	struct co_error err;
};

static void on_sigint(uv_signal_t *s, int signum)
{
	struct run *r = s->data;

	r->signalled = 1;
	co_loadgen_cancel(r->lg);
}

static void on_done(struct co_loadgen *lg, int status, const struct co_error *err,
		    void *data)
{
	struct run *r = data;

	r->status = status;
	if (err)
		co_error_copy(&r->err, err);
	uv_close((uv_handle_t *)&r->sigint, NULL);
}

int cmd_loadtest(int argc, char **argv)
{
	struct co_heycmd *cmd = NULL;
	struct co_error err = CO_ERROR_INIT;
	struct run r = { .status = 0 };
	const struct co_loadgen_result *res;
	uv_loop_t loop;
	int rc = CO_EXIT_FAILED;

	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return CO_EXIT_OK;
		}
	if (co_heycmd_parse_argv(&cmd, argc, argv, CO_HEYCMD_CLI, &err) < 0)
		return co_cli_usage_error("loadtest", "%s", err.msg);
	if (co_loadgen_new(&r.lg, &cmd->opts, &err) < 0) {
		co_heycmd_free(cmd);
		return co_cli_usage_error("loadtest", "%s", err.msg);
	}
	uv_loop_init(&loop);
	uv_signal_init(&loop, &r.sigint);
	r.sigint.data = &r;
	uv_signal_start(&r.sigint, on_sigint, SIGINT);
	if (co_loadgen_start(r.lg, &loop, on_done, &r, &err) < 0) {
		fprintf(stderr, "cutover loadtest: %s\n", err.msg);
		uv_close((uv_handle_t *)&r.sigint, NULL);
		uv_run(&loop, UV_RUN_DEFAULT);
		goto out;
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (r.status < 0 && r.status != -ECANCELED) {
		fprintf(stderr, "cutover loadtest: %s\n", r.err.msg);
		goto out;
	}
	res = co_loadgen_result(r.lg);
	if (cmd->output_json) {
		json_t *j = co_loadgen_result_json(res);

		json_dumpf(j, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(j);
	} else {
		co_loadgen_print_summary(res, stdout);
	}
	if (r.signalled)
		rc = CO_EXIT_SIGINT;
	else
		rc = res->requests > 0 ? CO_EXIT_OK : CO_EXIT_FAILED;
out:
	uv_loop_close(&loop);
	co_loadgen_free(r.lg);
	co_heycmd_free(cmd);
	return rc;
}
