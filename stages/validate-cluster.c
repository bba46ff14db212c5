/*
 * Stage 5, validate-cluster: the new cluster works from the outside before any tenant
 * lands on it.
 *
 *   probing       GET <ingress>/healthz with Host: health.cutover.local, the ingress
 *                 health app of operators/ingress-health, through the new cluster's
 *                 ingress; retried with jittered backoff until it answers 200 (the
 *                 stage deadline bounds the wait)
 *   fetching      the fleet repo's branch tip
 *   checking-out  the tree at that commit into a scratch directory under the
 *                 pipeline's dir (the checks are programs, they need files on disk)
 *   checking      every executable of clusters/<env>/<location>/checks/, in name
 *                 order, one at a time, with CLUSTER, KUBECONFIG and INGRESS_URL set
 *                 (argv only, a deadline each, output captured); the first failure
 *                 fails the stage with the check's name, exit code and last stderr
 *                 line
 *
 * Read-only towards the cluster and the repo: a resume starts over, which is what a
 * validation should do anyway.
 */
#include "stages/common.h"
#include "stages/registry.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/subproc.h"
#include "base/time.h"
#include "clients/git.h"
#include "engine/pipeline.h"
#include "net/http-client.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HEALTH_HOST	 "health.cutover.local"
#define CHECK_TIMEOUT_MS (5 * 60 * 1000) /* per check, not scaled: real programs */
#define PROBE_TIMEOUT_MS 5000

enum state {
	ST_PROBING,	 /* ingress health app answers */
	ST_FETCHING,	 /* fleet tip */
	ST_CHECKING_OUT, /* tree on disk */
	ST_CHECKING,	 /* run the checks */
	ST_DONE,	 /* not journaled: the engine marks done */
};

static const char *const state_names[] = {
	[ST_PROBING] = "probing",
	[ST_FETCHING] = "fetching",
	[ST_CHECKING_OUT] = "checking-out",
	[ST_CHECKING] = "checking",
};

struct validate {
	struct co_sm sm;
	enum state state;
	unsigned attempt;
	char *url;
	char *cache;
	struct co_git_opts git;
	char sha[CO_GIT_SHA_HEX + 1];
	char *workdir;	  /* scratch checkout */
	char *checks_dir; /* <workdir>/clusters/<env>/<location>/checks */
	json_t *checks;	  /* names, sorted */
	size_t next;	  /* check being run */
	json_t *passed;	  /* names that passed */
	struct co_http_call *call;
	struct co_subproc *proc;
};

static void step(struct co_sm *sm);

static void set_state(struct validate *v, enum state s, const json_t *details)
{
	v->state = s;
	v->attempt = 0;
	if (s == ST_DONE || co_sm_set_state(&v->sm, state_names[s], details))
		step(&v->sm);
}

static void fail(struct validate *v, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct validate *v, int code, const char *fmt, ...)
{
	struct co_error err = CO_ERROR_INIT;
	char msg[sizeof(err.msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	co_error_set(&err, code, "%s", msg);
	co_sm_finish(&v->sm, code, &err);
}

/* ---- probing ---- */

static void probe_cb(struct co_http_response *res, void *data)
{
	struct validate *v = data;
	const char *ingress = co_stages_new_cluster(v->sm.run, "ingress");
	char why[160];

	v->call = NULL;
	if (co_sm_op_done(&v->sm))
		return;
	if (res->status == 0 && res->code == 200) {
		co_stage_log(v->sm.run, CO_LOG_INFO, "ingress health app answers at '%s'",
			     ingress);
		set_state(v, ST_FETCHING, NULL);
		return;
	}
	if (res->status < 0)
		snprintf(why, sizeof(why), "%s", res->err.msg);
	else
		snprintf(why, sizeof(why), "HTTP %ld", res->code);
	co_stage_waiting(v->sm.run, "ingress health app at '%s/healthz' (Host %s): %s",
			 ingress, HEALTH_HOST, why);
	co_sm_sleep(&v->sm, co_stage_backoff(v->attempt++, 500, 10000));
}

static void enter_probing(struct validate *v)
{
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(v->sm.run));
	const char *ingress = co_stages_new_cluster(v->sm.run, "ingress");
	const char *headers[] = {"Host: " HEALTH_HOST, NULL};
	struct co_error err = CO_ERROR_INIT;
	char *url;
	int rc;

	if (!ingress || !*ingress) {
		fail(v, -EINVAL, "no ingress URL recorded for the new cluster");
		return;
	}
	url = co_asprintf("%s/healthz", ingress);
	rc = co_http_request(
		svc->http, &v->call,
		&(struct co_http_req_opts){.url = url,
					   .headers = headers,
					   .timeout_ms = PROBE_TIMEOUT_MS,
					   .connect_timeout_ms = PROBE_TIMEOUT_MS,
					   .max_body = 64 * 1024},
		probe_cb, v, &err);
	free(url);
	if (rc < 0) {
		co_sm_finish(&v->sm, rc, &err);
		return;
	}
	co_sm_op_start(&v->sm);
}

/* ---- fetching, checking out ---- */

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Executables directly under dir, sorted, hidden entries skipped (new array; empty
 * when dir does not exist). */
static json_t *list_checks(const char *dir)
{
	json_t *out = json_array();
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;

	while (d && (de = readdir(d))) {
		struct stat st;
		char *path;

		if (de->d_name[0] == '.')
			continue;
		path = co_asprintf("%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    access(path, X_OK) == 0) {
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				names = co_realloc(names, cap * sizeof(*names));
			}
			names[n++] = co_strdup(de->d_name);
		}
		free(path);
	}
	if (d)
		closedir(d);
	if (n)
		qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(out, json_string(names[i]));
		free(names[i]);
	}
	free(names);
	return out;
}

static void git_cb(struct co_git_result *res, void *data)
{
	struct validate *v = data;
	json_t *details;
	char *path;

	if (co_sm_op_done(&v->sm))
		return;
	if (res->status < 0) {
		co_error_prefix(&res->err, "fleet repo");
		co_sm_finish(&v->sm, res->status, &res->err);
		return;
	}
	if (v->state == ST_FETCHING) {
		memcpy(v->sha, res->sha, sizeof(v->sha));
		details = json_pack("{s:s}", "commit", v->sha);
		set_state(v, ST_CHECKING_OUT, details);
		json_decref(details);
		return;
	}
	path = co_stages_cluster_path(v->sm.run);
	v->checks_dir = co_asprintf("%s/%s/checks", v->workdir, path);
	free(path);
	v->checks = list_checks(v->checks_dir);
	details = json_pack("{s:s, s:O}", "commit", v->sha, "checks", v->checks);
	set_state(v, ST_CHECKING, details);
	json_decref(details);
}

static void enter_git(struct validate *v)
{
	struct co_stage_run *run = v->sm.run;
	struct co_error err = CO_ERROR_INIT;
	int rc;

	if (v->state == ST_FETCHING) {
		co_stage_waiting(run, "fetch the fleet repo");
		rc = co_git_fetch(co_stage_loop(run), &v->git, co_stages_branch(run),
				  git_cb, v, &err);
	} else {
		co_stage_waiting(run, "check out the fleet repo at %.12s", v->sha);
		/* a previous run's checkout may hold files this commit deleted */
		co_stages_remove_tree(v->workdir);
		rc = co_git_checkout(co_stage_loop(run), &v->git, v->sha, v->workdir,
				     git_cb, v, &err);
	}
	if (rc < 0) {
		co_sm_finish(&v->sm, rc, &err);
		return;
	}
	co_sm_op_start(&v->sm);
}

/* ---- checking ---- */

static void run_next(struct validate *v);

/* The last non-empty line of a captured stream (new string, at most 200 chars). */
static char *last_line(const struct co_buf *b)
{
	const char *s = b->data ? b->data : "";
	size_t n = b->len;
	size_t end, start;

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		n--;
	end = n;
	start = end;
	while (start > 0 && s[start - 1] != '\n')
		start--;
	if (end - start > 200)
		start = end - 200;
	return co_asprintf("%.*s", (int)(end - start), s + start);
}

static void check_cb(struct co_subproc_result *res, void *data)
{
	struct validate *v = data;
	const char *name = json_string_value(json_array_get(v->checks, v->next));
	char *line;

	v->proc = NULL;
	if (co_sm_op_done(&v->sm))
		return;
	if (res->status == -ETIMEDOUT) {
		fail(v, -ETIMEDOUT, "check '%s' did not finish within %d s", name,
		     CHECK_TIMEOUT_MS / 1000);
		return;
	}
	if (res->status < 0 || res->term_signal || res->exit_code != 0) {
		line = last_line(&res->err);
		if (!*line) {
			free(line);
			line = last_line(&res->out);
		}
		if (res->term_signal)
			fail(v, CO_STAGES_VERDICT, "check '%s' killed by signal %d%s%s",
			     name, res->term_signal, *line ? ": " : "", line);
		else
			fail(v, CO_STAGES_VERDICT,
			     "check '%s' failed with exit code %lld%s%s", name,
			     (long long)res->exit_code, *line ? ": " : "", line);
		free(line);
		return;
	}
	line = last_line(&res->out);
	co_stage_log(v->sm.run, CO_LOG_INFO, "check '%s' passed in %llu ms%s%s", name,
		     (unsigned long long)res->elapsed_ms, *line ? ": " : "", line);
	free(line);
	json_array_append_new(v->passed, json_string(name));
	v->next++;
	run_next(v);
}

static void run_next(struct validate *v)
{
	struct co_stage_run *run = v->sm.run;
	const char *name = json_string_value(json_array_get(v->checks, v->next));
	const char *kc = co_stages_new_cluster(run, "kubeconfig");
	const char *ingress = co_stages_new_cluster(run, "ingress");
	struct co_error err = CO_ERROR_INIT;
	char *prog, *e_cluster, *e_kc, *e_ingress;
	int rc;

	if (!name) {
		set_state(v, ST_DONE, NULL);
		return;
	}
	prog = co_asprintf("%s/%s", v->checks_dir, name);
	e_cluster = co_asprintf("CLUSTER=%s", co_stages_req(run, "new", ""));
	e_kc = co_asprintf("KUBECONFIG=%s", kc ? kc : "");
	e_ingress = co_asprintf("INGRESS_URL=%s", ingress ? ingress : "");
	{
		const char *argv[] = {prog, NULL};
		const char *env[] = {e_cluster, e_kc, e_ingress, NULL};
		struct co_subproc_opts o = {.argv = argv,
					    .env = env,
					    .cwd = v->workdir,
					    .max_output = 64 * 1024,
					    .timeout_ms = CHECK_TIMEOUT_MS};

		co_stage_waiting(run, "check '%s'", name);
		rc = co_subproc_run(co_stage_loop(run), &v->proc, &o, check_cb, v, &err);
	}
	free(prog);
	free(e_cluster);
	free(e_kc);
	free(e_ingress);
	if (rc < 0) {
		co_error_prefix(&err, "check");
		co_sm_finish(&v->sm, rc, &err);
		return;
	}
	co_sm_op_start(&v->sm);
}

static void step(struct co_sm *sm)
{
	struct validate *v = (struct validate *)sm;

	switch (v->state) {
	case ST_PROBING:
		enter_probing(v);
		return;
	case ST_FETCHING:
	case ST_CHECKING_OUT:
		enter_git(v);
		return;
	case ST_CHECKING:
		v->next = 0;
		json_array_clear(v->passed);
		run_next(v);
		return;
	case ST_DONE:
		co_stage_record(sm->run, "checks", json_incref(v->passed), NULL);
		co_stage_record(sm->run, "fleetCommit", json_string(v->sha), NULL);
		co_stage_log(sm->run, CO_LOG_INFO, "%zu cluster checks passed",
			     json_array_size(v->passed));
		co_sm_finish(sm, 0, NULL);
		return;
	}
}

static void on_cancel(struct co_sm *sm)
{
	struct validate *v = (struct validate *)sm;

	/* libgit2 work runs out on the thread pool; the others stop now */
	if (v->call)
		co_http_cancel(v->call);
	if (v->proc)
		co_subproc_cancel(v->proc);
}

static void release(struct co_sm *sm)
{
	struct validate *v = (struct validate *)sm;

	if (v->workdir)
		co_stages_remove_tree(v->workdir);
	free(v->workdir);
	free(v->checks_dir);
	free(v->url);
	free(v->cache);
	json_decref(v->checks);
	json_decref(v->passed);
}

static int validate_start(struct co_stage_run *run, const char *state,
			  const json_t *details, struct co_error *err)
{
	const char *url = co_stage_request_str(run, "fleetRepo");
	struct validate *v;

	(void)state;
	(void)details;
	if (!url)
		return co_error_set(err, -EINVAL, "no fleet repository in the request");
	v = co_calloc(1, sizeof(*v));
	co_sm_init(&v->sm, run);
	v->sm.step = step;
	v->sm.on_cancel = on_cancel;
	v->sm.release = release;
	v->url = co_strdup(url);
	v->passed = json_array();
	co_stages_git_opts(run, v->url, &v->git, &v->cache);
	v->workdir = co_stages_workdir(run, "validate-checkout");
	set_state(v, ST_PROBING, NULL);
	return 0;
}

const struct co_stage_ops co_stage_validate_cluster = {
	.name = "validate-cluster",
	.summary = "ingress health through the new cluster, then the fleet repo's checks",
	.deadline_ms = 10 * 60 * 1000,
	.before_switch = true,
	.start = validate_start,
	.cancel = co_sm_cancel,
	.cleanup = NULL,
};
