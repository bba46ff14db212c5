/*
 * The command-line pipeline runner, see pipeline-run.h.
 *
 * Everything happens on one loop: the pipeline, its clients and two signal handles.
 * Progress lines come from the engine's progress callback; on a TTY one line is
 * redrawn in place (stage n/N, state, elapsed, what it waits for), otherwise each
 * change is a JSON line on stdout for supervisors and tests. Teardown is ordered so
 * that uv_loop_close() finds nothing open: pipeline, provider, then the HTTP client
 * (asynchronous close), then the signal handles.
 */
#include "cli/pipeline-run.h"
#include "base/log.h"
#include "base/time.h"
#include "cli/cli.h"
#include "engine/pipeline.h"
#include "engine/serve.h"
#include "net/http-client.h"
#include "providers/provider.h"
#include "providers/registry.h"
#include "stages/registry.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

struct runner {
	uv_loop_t *loop;
	struct co_pipeline *p;
	struct co_http_client *http;
	struct co_provider *provider;
	struct co_registry *registry;
	struct co_serve *serve;
	uv_signal_t sigint, sigterm;
	int signal; /* first signal received, 0 if none */
	bool done;
	bool tty;
	size_t line_len; /* TTY: length of the line drawn last */
	struct {
		unsigned index, count;
		char stage[64], state[64], waiting[512];
		uint64_t stage_t0, t0; /* mono ms the stage / pipeline started */
	} shown;		       /* TTY: what the progress line shows */
	uv_timer_t tick;	       /* TTY: redraws the line every second */
	char last[768];		       /* last progress line, to skip repeats */
	struct co_pipeline_result res;
	char failed_stage[64];
};

const char *co_cli_state_dir(const char *opt)
{
	const char *env = getenv("CUTOVER_STATE_DIR");

	if (opt && *opt)
		return opt;
	return env && *env ? env : "./.cutover";
}

char *co_cli_missing_stages(void)
{
	size_t first = co_stages_runnable_count();
	char buf[512];
	size_t n = 0;

	if (first >= CO_STAGE_COUNT)
		return NULL;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "stages %u-%u (",
			      co_stage_slots[first].number,
			      co_stage_slots[CO_STAGE_COUNT - 1].number);
	for (size_t i = first; i < CO_STAGE_COUNT && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s",
				      i > first ? ", " : "", co_stage_slots[i].name);
	if (n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - n, ") are not part of this build");
	return co_strdup(buf);
}

/* TTY: redraw the one progress line from what the engine said last, with the
 * elapsed times as of now (the tick timer calls this every second). */
static void draw(struct runner *r)
{
	uint64_t now = co_time_mono_ms();
	char line[768];
	int n;

	if (!r->shown.index)
		return;
	n = snprintf(line, sizeof(line), "[%u/%u] %s: %s %.1fs (total %.1fs)%s%s",
		     r->shown.index, r->shown.count, r->shown.stage, r->shown.state,
		     (double)(now - r->shown.stage_t0) / 1000.0,
		     (double)(now - r->shown.t0) / 1000.0,
		     r->shown.waiting[0] ? " - waiting for " : "", r->shown.waiting);
	if (n < 0)
		return;
	if ((size_t)n > 160) {
		line[157] = line[158] = line[159] = '.';
		line[160] = '\0';
		n = 160;
	}
	co_log_status(line);
	r->line_len = (size_t)n;
}

static void tick_cb(uv_timer_t *t)
{
	draw(t->data);
}

static void progress_cb(const struct co_pipeline_progress *pr, void *data)
{
	struct runner *r = data;
	uint64_t now = co_time_mono_ms();

	if (!pr->stage)
		return;
	if (r->tty) {
		r->shown.index = pr->index;
		r->shown.count = pr->count;
		snprintf(r->shown.stage, sizeof(r->shown.stage), "%s", pr->stage);
		snprintf(r->shown.state, sizeof(r->shown.state), "%s",
			 pr->state ? pr->state : "");
		snprintf(r->shown.waiting, sizeof(r->shown.waiting), "%s",
			 pr->waiting ? pr->waiting : "");
		r->shown.stage_t0 = now - pr->stage_elapsed_ms;
		r->shown.t0 = now - pr->elapsed_ms;
		draw(r);
		return;
	} else {
		json_t *j =
			json_pack("{s:s, s:i, s:i, s:s, s:s, s:s}", "event", "progress",
				  "index", (int)pr->index, "count", (int)pr->count,
				  "stage", pr->stage, "state", pr->state ? pr->state : "",
				  "waiting", pr->waiting ? pr->waiting : "");
		char *s = json_dumps(j, JSON_COMPACT);

		json_decref(j);
		if (s && strcmp(s, r->last) != 0) {
			snprintf(r->last, sizeof(r->last), "%s", s);
			json_t *full = json_loads(s, 0, NULL);

			json_object_set_new(full, "elapsedMs",
					    json_integer((json_int_t)pr->elapsed_ms));
			free(s);
			s = json_dumps(full, JSON_COMPACT);
			json_decref(full);
			printf("%s\n", s);
			fflush(stdout);
		}
		free(s);
	}
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct runner *r = h->data;

	if (r->signal) {
		/* second signal: stop at once; the journal is fsync'd and the kernel
		 * drops the lock, so `cutover resume` picks up from here */
		fprintf(stderr, "\ncutover: second signal, exiting now\n");
		_exit(r->signal == SIGTERM ? CO_EXIT_SIGTERM : CO_EXIT_SIGINT);
	}
	r->signal = signum;
	if (r->tty)
		fputc('\n', stderr);
	co_log_warn("cli",
		    "%s received: stopping after the current operation (again to "
		    "exit now)",
		    signum == SIGTERM ? "SIGTERM" : "SIGINT");
	if (r->p && !r->done)
		co_pipeline_stop(r->p);
}

static void done_cb(const struct co_pipeline_result *res, void *data)
{
	struct runner *r = data;

	r->done = true;
	r->res = *res;
	if (res->failed_stage) {
		snprintf(r->failed_stage, sizeof(r->failed_stage), "%s",
			 res->failed_stage);
		r->res.failed_stage = r->failed_stage;
	}
	if (r->tty && r->line_len)
		co_log_status(NULL);
	uv_signal_stop(&r->sigint);
	uv_signal_stop(&r->sigterm);
	uv_timer_stop(&r->tick);
	/* the gate and webhooks live as long as the pipeline: the loop can end now */
	if (r->serve) {
		co_serve_close(r->serve, NULL, NULL);
		r->serve = NULL;
	}
}

static void print_report(const struct co_cli_pipeline *o, struct runner *r)
{
	json_t *sum = NULL;
	struct co_error err = CO_ERROR_INIT;
	const json_t *blocking, *outs;
	const char *key;
	json_t *v;
	size_t i;

	if (co_pipeline_summary(&sum, o->state_dir, o->id,
				o->stages ? o->stages : co_stages_runnable(), &err) < 0)
		return;
	blocking = json_object_get(
		json_object_get(json_object_get(sum, "outputs"), "preflight"),
		"blocking");
	if (r->res.status < 0 && r->res.status != -EINTR && !o->quiet_report) {
		const json_t *req = json_object_get(sum, "request");
		const char *new = json_string_value(json_object_get(req, "new"));
		const json_t *cc = NULL;

		if (json_array_size(blocking)) {
			fprintf(stderr, "objects blocking the upgrade:\n");
			json_array_foreach(blocking, i, v)
				fprintf(stderr, "  %s\n", json_string_value(v));
		}
		json_array_foreach(
			json_object_get(sum, "stages"), i,
			v) if (strcmp(json_string_value(json_object_get(v, "name")),
				      "create-cluster") == 0) cc = v;
		if (!cc || strcmp(json_string_value(json_object_get(cc, "state")),
				  "pending") == 0)
			fprintf(stderr,
				"cutover: no cluster was created; the old cluster and "
				"the load balancer are untouched\n");
		else if (o->keep_failed ||
			 json_is_true(json_object_get(req, "keepFailed")))
			fprintf(stderr,
				"cutover: --keep-failed: cluster '%s' is kept for "
				"inspection\n",
				new ? new : "?");
		else if (json_object_get(cc, "cleanup") &&
			 strcmp(json_string_value(json_object_get(cc, "cleanup")),
				"cleaned") == 0)
			fprintf(stderr,
				"cutover: cluster '%s' deleted; the old cluster and the "
				"load balancer are untouched\n",
				new ? new : "?");
		else
			fprintf(stderr,
				"cutover: cleanup of cluster '%s' did not finish; see "
				"'cutover status %s'\n",
				new ? new : "?", o->id);
	}
	if (r->res.status == 0) {
		outs = json_object_get(json_object_get(sum, "outputs"), "create-cluster");
		json_object_foreach((json_t *)outs, key, v) if (json_is_string(v))
			printf("%s: %s\n", key, json_string_value(v));
	}
	json_decref(sum);
}

static void http_closed(void *data)
{
	(void)data;
}

int co_cli_parse_listen(const char *s, char *host, size_t host_len, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *num = colon ? colon + 1 : s;
	size_t hl = colon ? (size_t)(colon - s) : 0;
	char *end;
	long p;

	if (hl >= host_len)
		return -EINVAL;
	p = strtol(num, &end, 10);
	if (*num == '\0' || *end || p < 0 || p > 65535)
		return -EINVAL;
	if (hl)
		memcpy(host, s, hl);
	else
		snprintf(host, host_len, "127.0.0.1"), hl = strlen(host);
	host[hl] = '\0';
	*port = (int)p;
	return 0;
}

/* A verified push reached the hosted webhook: the running stage checks at once. */
static void on_push(const struct co_git_push *push, void *data)
{
	struct runner *r = data;

	if (r->p && !r->done)
		co_pipeline_notify_push(r->p, (const char *const *)push->urls);
}

static void gate_open(const char *ns, const char *name, void *data)
{
	struct runner *r = data;

	if (r->serve && co_serve_gate_open(r->serve, ns, name) == 0)
		co_log_info("cli", "gate of canary '%s/%s' opened on %s", ns, name,
			    co_serve_url(r->serve));
}

/* Host the serve module for the pipeline's lifetime: canaries call its gate and
 * load tester, git webhooks reach the running stage. */
static int start_serve(struct runner *r, const struct co_cli_pipeline *o,
		       struct co_error *err)
{
	struct co_serve_opts so = {0};
	char host[256];
	int port = 0;

	if (co_cli_parse_listen(o->listen ? o->listen : "127.0.0.1:0", host, sizeof(host),
				&port) < 0)
		return co_error_set(err, -EINVAL, "bad --listen '%s' (want HOST:PORT)",
				    o->listen);
	so.host = host;
	so.port = port;
	so.state_dir = o->state_dir;
	so.webhook_secret = getenv("CUTOVER_WEBHOOK_SECRET");
	so.stages = co_stages_runnable();
	so.on_push = on_push;
	so.push_data = r;
	return co_serve_new(&r->serve, r->loop, &so, err);
}

int co_cli_run_pipeline(const struct co_cli_pipeline *o)
{
	struct runner r = {0};
	uv_loop_t loop;
	struct co_error err = CO_ERROR_INIT;
	struct co_pipeline_services svc = {0};
	struct co_pipeline_opts popts = {0};
	struct co_provider_opts prov = {0};
	json_t *sum = NULL;
	const json_t *req = o->request;
	char *missing = o->stages ? NULL : co_cli_missing_stages();
	const struct co_stage_ops *named[CO_STAGE_COUNT + 1];
	struct co_cli_pipeline named_o;
	int rc, code = CO_EXIT_FAILED;

	uv_loop_init(&loop);
	r.loop = &loop;
	r.tty = isatty(STDERR_FILENO) && isatty(STDOUT_FILENO);
	if (!req) {
		if (co_pipeline_summary(&sum, o->state_dir, o->id, NULL, &err) < 0) {
			fprintf(stderr, "cutover: %s\n", err.msg);
			goto out;
		}
		req = json_object_get(sum, "request");
	}
	/* a pipeline whose request names its stages (cutover tenant deploy) runs
	 * those, when resumed too */
	if (!o->stages && json_is_array(json_object_get(req, "stages"))) {
		const json_t *names = json_object_get(req, "stages"), *nm;
		size_t i, k = 0;

		json_array_foreach(names, i, nm)
		{
			const struct co_stage_slot *slot =
				co_stage_slot_find(json_string_value(nm) ? json_string_value(nm)
									 : "");

			if (!slot || !slot->ops || k >= CO_STAGE_COUNT) {
				fprintf(stderr, "cutover: pipeline '%s' names unknown stage '%s'\n",
					o->id, json_string_value(nm) ? json_string_value(nm) : "?");
				goto out;
			}
			named[k++] = slot->ops;
		}
		named[k] = NULL;
		named_o = *o;
		named_o.stages = named;
		named_o.quiet_report = true;
		o = &named_o;
		free(missing);
		missing = NULL;
	}
	if (co_http_client_new(&r.http, &loop, &err) < 0 ||
	    co_registry_open(&r.registry, o->state_dir, &err) < 0) {
		fprintf(stderr, "cutover: %s\n", err.msg);
		goto out;
	}
	prov.name = json_string_value(json_object_get(req, "provider"));
	prov.state_dir = o->state_dir;
	prov.sim_url = json_string_value(json_object_get(req, "simUrl"));
	prov.exec_path = json_string_value(json_object_get(req, "providerExec"));
	if (!prov.name)
		prov.name = "sim";
	if (co_provider_new(&r.provider, &loop, r.http, &prov, &err) < 0) {
		fprintf(stderr, "cutover: provider '%s': %s\n", prov.name, err.msg);
		goto out;
	}
	if (start_serve(&r, o, &err) < 0) {
		fprintf(stderr, "cutover: gate and webhook server: %s\n", err.msg);
		goto out;
	}
	co_log_info("cli", "gate, load tester and webhooks at %s (POST /hooks/git)",
		    co_serve_url(r.serve));
	svc.http = r.http;
	svc.provider = r.provider;
	svc.registry = r.registry;
	svc.gate_url = co_serve_url(r.serve);
	svc.gate_open = gate_open;
	svc.gate_data = &r;
	popts.state_dir = o->state_dir;
	popts.id = o->id;
	popts.request = o->request;
	popts.stages = o->stages ? o->stages : co_stages_runnable();
	popts.keep_failed =
		o->keep_failed || json_is_true(json_object_get(req, "keepFailed"));
	popts.stop_after = o->stop_after;
	popts.progress = progress_cb;
	popts.progress_data = &r;
	rc = co_pipeline_open(&r.p, &loop, &popts, &svc, &err);
	if (rc < 0) {
		fprintf(stderr, "cutover: %s\n", err.msg);
		code = rc == -EALREADY ? CO_EXIT_OK : CO_EXIT_FAILED;
		if (rc == -EALREADY && strstr(err.msg, "failed"))
			code = CO_EXIT_FAILED;
		goto out;
	}
	if (missing)
		co_log_info("cli", "pipeline '%s': running stages 1-%zu; %s", o->id,
			    co_stages_runnable_count(), missing);
	uv_timer_init(&loop, &r.tick);
	r.tick.data = &r;
	if (r.tty)
		uv_timer_start(&r.tick, tick_cb, 1000, 1000);
	uv_signal_init(&loop, &r.sigint);
	uv_signal_init(&loop, &r.sigterm);
	r.sigint.data = r.sigterm.data = &r;
	uv_signal_start(&r.sigint, signal_cb, SIGINT);
	uv_signal_start(&r.sigterm, signal_cb, SIGTERM);
	if (co_pipeline_run(r.p, done_cb, &r, &err) < 0) {
		fprintf(stderr, "cutover: %s\n", err.msg);
		uv_signal_stop(&r.sigint);
		uv_signal_stop(&r.sigterm);
	} else {
		uv_run(&loop, UV_RUN_DEFAULT);
	}
	uv_timer_stop(&r.tick);
	uv_close((uv_handle_t *)&r.tick, NULL);
	uv_close((uv_handle_t *)&r.sigint, NULL);
	uv_close((uv_handle_t *)&r.sigterm, NULL);
	if (r.done) {
		if (r.res.status == 0) {
			printf("pipeline '%s' succeeded\n", o->id);
			if (missing)
				printf("note: %s; the traffic switch is not done by this "
				       "build\n",
				       missing);
			code = CO_EXIT_OK;
		} else if (r.res.status == -EINTR) {
			fprintf(stderr, "cutover: %s\n", r.res.err.msg);
			code = r.signal == SIGTERM ? CO_EXIT_SIGTERM : CO_EXIT_SIGINT;
		} else {
			fprintf(stderr, "cutover: pipeline '%s' failed: %s\n", o->id,
				r.res.err.msg);
			code = CO_EXIT_FAILED;
		}
		print_report(o, &r);
	}
out:
	co_pipeline_free(r.p);
	co_provider_free(r.provider);
	co_registry_free(r.registry);
	if (r.serve)
		co_serve_close(r.serve, NULL, NULL);
	if (r.http)
		co_http_client_close(r.http, http_closed, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		co_log_debug("cli", "loop closed with handles still open");
	json_decref(sum);
	free(missing);
	return code;
}
