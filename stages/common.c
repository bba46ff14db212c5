/*
 * Shared stage helpers, see common.h.
 *
 * The co_sm base keeps one invariant that makes cancel safe: the stage finishes only
 * when nothing it started can still call back. A cancel while an operation is in
 * flight aborts that operation (or lets it run out, for libgit2 work on the thread
 * pool) and the operation's callback ends the stage; a cancel while only the timer is
 * armed ends it on the next loop turn (or through the callback of an operation that
 * was being started when the cancel came). The timer is closed before co_stage_done()
 * runs, so the loop holds nothing of a finished stage.
 */
#include "stages/common.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/yaml.h"
#include "engine/pipeline.h"

#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

void co_sm_init(struct co_sm *sm, struct co_stage_run *run)
{
	sm->run = run;
	uv_timer_init(co_stage_loop(run), &sm->timer);
	sm->timer.data = sm;
	co_stage_set_priv(run, sm);
}

void co_sm_op_start(struct co_sm *sm)
{
	sm->busy = true;
}

bool co_sm_op_done(struct co_sm *sm)
{
	sm->busy = false;
	if (sm->cancelled && !sm->finishing) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, -ECANCELED, "cancelled");
		co_sm_finish(sm, -ECANCELED, &err);
		return true;
	}
	return sm->finishing;
}

static void timer_fired(uv_timer_t *t)
{
	struct co_sm *sm = t->data;

	if (sm->finishing)
		return;
	if (sm->cancelled) {
		/* an operation started since the cancel: its callback ends the stage */
		if (!sm->busy)
			co_sm_finish(sm, -ECANCELED, NULL);
		return;
	}
	sm->step(sm);
}

void co_sm_sleep(struct co_sm *sm, uint64_t ms)
{
	uv_timer_start(&sm->timer, timer_fired, ms ? ms : 1, 0);
}

/* The end record travels in a small allocation so sm can be freed before done. */
struct closing {
	struct co_sm *sm;
	int status;
	struct co_error err;
};

static void closed_cb(uv_handle_t *h)
{
	struct closing *c = h->data;
	struct co_sm *sm = c->sm;
	struct co_stage_run *run = sm->run;

	if (sm->release)
		sm->release(sm);
	co_stage_set_priv(run, NULL);
	free(sm);
	co_stage_done(run, c->status, c->status < 0 ? &c->err : NULL);
	free(c);
}

void co_sm_finish(struct co_sm *sm, int status, const struct co_error *err)
{
	struct closing *c;

	if (sm->finishing)
		return;
	sm->finishing = true;
	c = co_calloc(1, sizeof(*c));
	c->sm = sm;
	c->status = status;
	if (err)
		co_error_copy(&c->err, err);
	if (status < 0 && !c->err.msg[0])
		co_error_set(&c->err, status, "%s",
			     co_error_str(&(struct co_error){.code = status}));
	uv_timer_stop(&sm->timer);
	sm->timer.data = c;
	uv_close((uv_handle_t *)&sm->timer, closed_cb);
}

void co_sm_cancel(struct co_stage_run *run)
{
	struct co_sm *sm = co_stage_get_priv(run);

	if (!sm || sm->finishing || sm->cancelled)
		return;
	sm->cancelled = true;
	if (sm->busy) {
		if (sm->on_cancel)
			sm->on_cancel(sm);
		return;
	}
	/*
	 * Not from here: the cancel may come from inside a call that is starting an
	 * operation (a stop requested while the provider is being called), which then
	 * marks itself busy on return. The timer decides on the next loop turn.
	 */
	uv_timer_start(&sm->timer, timer_fired, 0, 0);
}

static void crash_now(uv_timer_t *t)
{
	(void)t;
	raise(SIGKILL);
}

/*
 * Crash tests: CUTOVER_CRASH_AT="stage:state" kills the runner with SIGKILL right
 * after that state is journaled, "stage:state+MS" MS milliseconds later (while the
 * state's operation is in flight). Resume must then reach the same end state.
 */
static void crash_hook(struct co_sm *sm, const char *state)
{
	const char *spec = getenv("CUTOVER_CRASH_AT");
	const char *stage = co_stage_name(sm->run);
	size_t sl = strlen(stage), tl = strlen(state);
	uv_timer_t *t;

	if (!spec || strncmp(spec, stage, sl) != 0 || spec[sl] != ':' ||
	    strncmp(spec + sl + 1, state, tl) != 0)
		return;
	spec += sl + 1 + tl;
	if (*spec == '\0')
		raise(SIGKILL);
	if (*spec != '+')
		return;
	t = co_calloc(1, sizeof(*t));
	uv_timer_init(co_stage_loop(sm->run), t);
	uv_timer_start(t, crash_now, strtoull(spec + 1, NULL, 10), 0);
	uv_unref((uv_handle_t *)t);
}

bool co_sm_set_state(struct co_sm *sm, const char *state, const json_t *details)
{
	struct co_error err = CO_ERROR_INIT;

	if (co_stage_set_state(sm->run, state, details, &err) < 0) {
		co_sm_finish(sm, err.code ? err.code : -EIO, &err);
		return false;
	}
	crash_hook(sm, state);
	return true;
}

/* ---- request ---- */

const char *co_stages_req(struct co_stage_run *run, const char *key, const char *def)
{
	const char *v = co_stage_request_str(run, key);

	return v && *v ? v : def;
}

char *co_stages_cluster_path(struct co_stage_run *run)
{
	return co_asprintf("clusters/%s/%s", co_stages_req(run, "env", "staging"),
			   co_stages_req(run, "location", "northeurope"));
}

const char *co_stages_branch(struct co_stage_run *run)
{
	return co_stages_req(run, "branch", "main");
}

char *co_stages_workdir(struct co_stage_run *run, const char *leaf)
{
	struct co_pipeline *p = co_stage_pipeline(run);
	char *dir = co_pipeline_dir(co_pipeline_state_dir(p), co_pipeline_id(p));
	char *path = co_asprintf("%s/%s", dir, leaf);

	free(dir);
	return path;
}

void co_stages_git_opts(struct co_stage_run *run, const char *url,
			struct co_git_opts *opts, char **ret_cache)
{
	char *dir = co_stages_workdir(run, "git-cache");
	struct co_buf b;

	/* per pipeline: two runners on one fleet repo never share a cache directory */
	co_buf_init(&b);
	co_buf_printf(&b, "%s/", dir);
	for (const char *c = url; *c; c++)
		co_buf_putc(&b, isalnum((unsigned char)*c) || *c == '-' || *c == '.'
					? *c
					: '_');
	free(dir);
	*ret_cache = co_buf_detach(&b, NULL);
	memset(opts, 0, sizeof(*opts));
	opts->url = url;
	opts->cache_dir = *ret_cache;
	opts->token_env = co_stages_req(run, "gitTokenEnv", NULL);
	opts->ssh_key = co_stages_req(run, "gitSshKey", NULL);
}

int co_stages_remove_tree(const char *path)
{
	struct stat st;
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) < 0 ? -errno : 0;
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char *child;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		child = co_asprintf("%s/%s", path, de->d_name);
		if (co_stages_remove_tree(child) < 0)
			rc = -EIO;
		free(child);
	}
	closedir(d);
	if (rmdir(path) < 0)
		rc = -errno;
	return rc;
}

const char *co_stages_new_cluster(struct co_stage_run *run, const char *key)
{
	const char *v = json_string_value(
		json_object_get(co_stage_output(run, "create-cluster"), key));

	return v ? v : co_stage_request_str(run, key);
}

const char *co_stages_gate_url(struct co_stage_run *run)
{
	const struct co_pipeline_services *svc =
		co_pipeline_services(co_stage_pipeline(run));
	const char *req = co_stages_req(run, "gateUrl", NULL);

	if (req)
		return req;
	return svc && svc->gate_url ? svc->gate_url : "";
}

json_t *co_stages_cluster_vars(struct co_stage_run *run)
{
	const char *ingress = co_stages_new_cluster(run, "ingress");
	const char *fleet = co_stages_req(run, "fleetRepo", "");
	const char *base = co_stages_req(run, "gitBaseUrl", NULL);
	char *derived = NULL;
	json_t *v;

	if (!base) {
		const char *slash = strrchr(fleet, '/');

		derived = slash ? co_asprintf("%.*s", (int)(slash - fleet), fleet)
				: co_strdup(fleet);
		base = derived;
	}
	v = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "CLUSTER_NAME",
		      co_stages_req(run, "new", ""), "CLUSTER_ENV",
		      co_stages_req(run, "env", "staging"), "CLUSTER_LOCATION",
		      co_stages_req(run, "location", "northeurope"), "CUTOVER_GATE_URL",
		      co_stages_gate_url(run), "INGRESS_URL",
		      ingress ? ingress : "", "GIT_BASE_URL", base);
	free(derived);
	return v;
}

/* ---- pure helpers ---- */

bool co_stages_dns1123_label(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return name[0] != '-' && name[n - 1] != '-';
}

static bool var_char(char c, bool first)
{
	return c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (!first && c >= '0' && c <= '9');
}

char *co_stages_substitute(const char *text, const json_t *vars)
{
	struct co_buf b;
	const char *p = text;

	co_buf_init(&b);
	co_buf_puts(&b, "");
	while (*p) {
		const char *end, *name, *def = NULL;
		size_t name_len, def_len = 0;
		const char *val;

		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			co_buf_puts(&b, "${");
			p += 3;
			continue;
		}
		if (p[0] != '$' || p[1] != '{' || !var_char(p[2], true)) {
			co_buf_putc(&b, *p++);
			continue;
		}
		name = p + 2;
		end = name;
		while (var_char(*end, false))
			end++;
		name_len = (size_t)(end - name);
		if ((end[0] == ':' && (end[1] == '=' || end[1] == '-'))) {
			def = end + 2;
			end = strchr(def, '}');
			if (!end) {
				co_buf_putc(&b, *p++);
				continue;
			}
			def_len = (size_t)(end - def);
		} else if (*end != '}') {
			co_buf_putc(&b, *p++);
			continue;
		}
		{
			char *key = co_asprintf("%.*s", (int)name_len, name);

			val = json_string_value(json_object_get(vars, key));
			free(key);
		}
		if (val && *val)
			co_buf_puts(&b, val);
		else if (def)
			co_buf_append(&b, def, def_len);
		p = end + 1;
	}
	return co_buf_detach(&b, NULL);
}

void co_stages_substitute_json(json_t *value, const json_t *vars)
{
	size_t i;
	const char *k;
	json_t *v;

	if (json_is_string(value)) {
		char *s = co_stages_substitute(json_string_value(value), vars);

		json_string_set(value, s);
		free(s);
	} else if (json_is_array(value)) {
		json_array_foreach(value, i, v) co_stages_substitute_json(v, vars);
	} else if (json_is_object(value)) {
		json_object_foreach(value, k, v) co_stages_substitute_json(v, vars);
	}
}

char *co_stages_revision(const char *branch, const char *sha)
{
	return co_asprintf("%s@sha1:%s", branch, sha);
}

json_t *co_stages_flux_sync_files(const char *url, const char *branch,
				  const char *cluster_path)
{
	char *sync = co_asprintf("# This manifest was generated by flux. DO NOT EDIT.\n"
				 "---\n"
				 "apiVersion: source.toolkit.fluxcd.io/v1\n"
				 "kind: GitRepository\n"
				 "metadata:\n"
				 "  name: flux-system\n"
				 "  namespace: flux-system\n"
				 "spec:\n"
				 "  interval: 1m0s\n"
				 "  ref:\n"
				 "    branch: %s\n"
				 "  url: %s\n"
				 "---\n"
				 "apiVersion: kustomize.toolkit.fluxcd.io/v1\n"
				 "kind: Kustomization\n"
				 "metadata:\n"
				 "  name: flux-system\n"
				 "  namespace: flux-system\n"
				 "spec:\n"
				 "  interval: 10m0s\n"
				 "  path: ./%s\n"
				 "  prune: true\n"
				 "  sourceRef:\n"
				 "    kind: GitRepository\n"
				 "    name: flux-system\n",
				 branch, url, cluster_path);
	static const char kust[] = "apiVersion: kustomize.config.k8s.io/v1beta1\n"
				   "kind: Kustomization\n"
				   "resources:\n"
				   "- gotk-sync.yaml\n";
	char *p1 = co_asprintf("%s/flux-system/gotk-sync.yaml", cluster_path);
	char *p2 = co_asprintf("%s/flux-system/kustomization.yaml", cluster_path);
	json_t *files = json_pack("{s:s, s:s}", p1, sync, p2, kust);

	free(sync);
	free(p1);
	free(p2);
	return files;
}

/*
 * The Flux Kustomizations in a set of files ({"path": "yaml"}), as "ns/name" (new
 * array, file order, duplicates dropped). Files that do not parse are skipped:
 * Flux itself reports them through the Kustomization that applies them.
 */
json_t *co_stages_flux_kustomizations(const json_t *files)
{
	json_t *names = json_array();
	const char *path;
	json_t *content;
	json_t *keys = json_array();

	json_object_foreach((json_t *)files, path, content)
		json_array_append_new(keys, json_string(path));
	/* stable order: sort the paths */
	for (size_t i = 1; i < json_array_size(keys); i++)
		for (size_t j = i;
		     j > 0 && strcmp(json_string_value(json_array_get(keys, j - 1)),
				     json_string_value(json_array_get(keys, j))) > 0;
		     j--) {
			json_t *a = json_incref(json_array_get(keys, j - 1));

			json_array_set(keys, j - 1, json_array_get(keys, j));
			json_array_set_new(keys, j, a);
		}
	for (size_t i = 0; i < json_array_size(keys); i++) {
		const char *p = json_string_value(json_array_get(keys, i));
		const char *text = json_string_value(json_object_get(files, p));
		size_t n = strlen(p);
		json_t *docs = NULL, *doc;
		struct co_error err = CO_ERROR_INIT;
		size_t k;

		if (!text || !((n > 5 && strcmp(p + n - 5, ".yaml") == 0) ||
			       (n > 4 && strcmp(p + n - 4, ".yml") == 0)))
			continue;
		if (co_yaml_load_all(&docs, text, strlen(text), p, &err) < 0)
			continue;
		json_array_foreach(docs, k, doc)
		{
			const char *av =
				json_string_value(json_object_get(doc, "apiVersion"));
			const char *kind =
				json_string_value(json_object_get(doc, "kind"));
			const json_t *meta = json_object_get(doc, "metadata");
			const char *name =
				json_string_value(json_object_get(meta, "name"));
			const char *ns =
				json_string_value(json_object_get(meta, "namespace"));
			char *id;
			bool dup = false;
			size_t m;
			json_t *e;

			if (!av || !kind || !name ||
			    strncmp(av, "kustomize.toolkit.fluxcd.io/", 28) != 0 ||
			    strcmp(kind, "Kustomization") != 0)
				continue;
			id = co_asprintf("%s/%s", ns && *ns ? ns : "flux-system", name);
			json_array_foreach(names, m, e) if (strcmp(json_string_value(e),
								   id) == 0) dup = true;
			if (!dup)
				json_array_append_new(names, json_string(id));
			free(id);
		}
		json_decref(docs);
	}
	json_decref(keys);
	return names;
}
