/*
 * Building manifests the way Flux does, see manifests.h.
 *
 * The directory walk runs on the loop thread (repositories here are small, and the
 * walk is bounded by MAX_UNITS); only `kubectl kustomize` leaves the process. Units
 * (a plain file, or a directory to build with kustomize) are processed one after the
 * other so at most one child runs per build.
 */
#include "stages/manifests.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/subproc.h"
#include "base/yaml.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_UNITS	     5000
#define MAX_DEPTH	     24
#define KUSTOMIZE_TIMEOUT_MS 60000

struct unit {
	char *abs; /* file or directory */
	char *rel; /* relative to root */
	int kustomize;
};

struct co_manifests {
	uv_loop_t *loop;
	char *root;
	struct unit *units;
	size_t n, cap, next;
	json_t *items;
	json_t *index; /* built lazily for kustomize outputs */
	struct co_subproc *proc;
	uv_idle_t idle; /* defers the callback out of co_manifests_build */
	int cancelled;
	int status;
	struct co_error err;
	co_manifests_cb cb;
	void *data;
};

static const char *const kustomization_names[] = {
	"kustomization.yaml", "kustomization.yml", "Kustomization", NULL};

static int has_kustomization(const char *dir)
{
	for (const char *const *n = kustomization_names; *n; n++) {
		char *p = co_asprintf("%s/%s", dir, *n);
		int ok = access(p, F_OK) == 0;

		free(p);
		if (ok)
			return 1;
	}
	return 0;
}

static int is_yaml(const char *name)
{
	size_t n = strlen(name);

	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

static int add_unit(struct co_manifests *m, const char *abs, const char *rel, int kust,
		    struct co_error *err)
{
	if (m->n >= MAX_UNITS)
		return co_error_set(err, -E2BIG,
				    "build '%s': more than %d manifest files", m->root,
				    MAX_UNITS);
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->units = realloc(m->units, m->cap * sizeof(*m->units));
		if (!m->units)
			abort();
	}
	m->units[m->n].abs = co_strdup(abs);
	m->units[m->n].rel = co_strdup(rel);
	m->units[m->n].kustomize = kust;
	m->n++;
	return 0;
}

/* Sorted entry names of dir, hidden ones skipped; NULL (n 0) when it cannot be read. */
static char **list_dir(const char *dir, size_t *ret_n)
{
	char **names = NULL;

	*ret_n = 0;
	if (co_fs_list_dir(dir, &names, ret_n, NULL) < 0)
		return NULL;
	return names;
}

static int walk(struct co_manifests *m, const char *abs, const char *rel, int depth,
		struct co_error *err)
{
	char **names;
	size_t n;
	int rc = 0;

	if (depth > MAX_DEPTH)
		return co_error_set(err, -ELOOP,
				    "build '%s': directories nested too deep", abs);
	if (has_kustomization(abs))
		return add_unit(m, abs, rel, 1, err);
	names = list_dir(abs, &n);
	for (size_t i = 0; i < n; i++) {
		char *a = co_asprintf("%s/%s", abs, names[i]);
		char *r =
			*rel ? co_asprintf("%s/%s", rel, names[i]) : co_strdup(names[i]);
		struct stat st;

		if (rc == 0 && lstat(a, &st) == 0) {
			if (S_ISDIR(st.st_mode))
				rc = walk(m, a, r, depth + 1, err);
			else if (S_ISREG(st.st_mode) && is_yaml(names[i]))
				rc = add_unit(m, a, r, 0, err);
		}
		free(a);
		free(r);
		free(names[i]);
	}
	free(names);
	return rc;
}

static void index_walk(json_t *idx, const char *abs, const char *rel, int depth)
{
	char **names;
	size_t n;

	if (depth > MAX_DEPTH || json_object_size(idx) > 50000)
		return;
	names = list_dir(abs, &n);
	for (size_t i = 0; i < n; i++) {
		char *a = co_asprintf("%s/%s", abs, names[i]);
		char *r =
			*rel ? co_asprintf("%s/%s", rel, names[i]) : co_strdup(names[i]);
		struct stat st;
		json_t *docs = NULL;
		struct co_error err = CO_ERROR_INIT;
		size_t j;
		json_t *doc;

		if (lstat(a, &st) == 0 && S_ISDIR(st.st_mode)) {
			index_walk(idx, a, r, depth + 1);
		} else if (is_yaml(names[i]) && co_yaml_load_file(&docs, a, &err) == 0) {
			json_array_foreach(docs, j, doc)
			{
				const char *av = json_string_value(
					json_object_get(doc, "apiVersion"));
				const char *k =
					json_string_value(json_object_get(doc, "kind"));
				const char *nm = json_string_value(json_object_get(
					json_object_get(doc, "metadata"), "name"));
				char *key;

				if (!av || !k || !nm)
					continue;
				key = co_asprintf("%s|%s|%s", av, k, nm);
				if (!json_object_get(idx, key))
					json_object_set_new(idx, key, json_string(r));
				free(key);
			}
			json_decref(docs);
		}
		free(a);
		free(r);
		free(names[i]);
	}
	free(names);
}

json_t *co_manifests_index(const char *root)
{
	json_t *idx = json_object();

	index_walk(idx, root, "", 0);
	return idx;
}

static void add_items(struct co_manifests *m, json_t *docs, const struct unit *u)
{
	size_t i;
	json_t *doc;

	json_array_foreach(docs, i, doc)
	{
		const char *src = u->rel;

		if (!json_is_object(doc))
			continue;
		if (u->kustomize) {
			const char *av =
				json_string_value(json_object_get(doc, "apiVersion"));
			const char *k = json_string_value(json_object_get(doc, "kind"));
			const char *nm = json_string_value(json_object_get(
				json_object_get(doc, "metadata"), "name"));
			char *key;
			const char *f;

			if (!m->index)
				m->index = co_manifests_index(m->root);
			key = co_asprintf("%s|%s|%s", av ? av : "", k ? k : "",
					  nm ? nm : "");
			f = json_string_value(json_object_get(m->index, key));
			free(key);
			if (f)
				src = f;
		}
		json_array_append_new(
			m->items, json_pack("{s:O, s:s}", "object", doc, "source", src));
	}
}

static void free_build(uv_handle_t *h)
{
	struct co_manifests *m = h->data;

	for (size_t i = 0; i < m->n; i++) {
		free(m->units[i].abs);
		free(m->units[i].rel);
	}
	free(m->units);
	json_decref(m->items);
	json_decref(m->index);
	free(m->root);
	free(m);
}

static void end(struct co_manifests *m, int status)
{
	m->status = status;
	m->cb(m->status, m->status == 0 ? m->items : NULL, &m->err, m->data);
	uv_close((uv_handle_t *)&m->idle, free_build);
}

static void next_unit(struct co_manifests *m);

static void kustomize_done(struct co_subproc_result *res, void *data)
{
	struct co_manifests *m = data;
	const struct unit *u = &m->units[m->next - 1];
	json_t *docs = NULL;

	m->proc = NULL;
	if (m->cancelled || res->status == -ECANCELED) {
		co_error_set(&m->err, -ECANCELED, "build cancelled");
		end(m, -ECANCELED);
		return;
	}
	if (res->status < 0 || res->exit_code != 0 || res->term_signal) {
		char *msg = co_strdup(co_buf_cstr(&res->err));
		char *nl;

		while ((nl = strchr(msg, '\n')) && nl[1] == '\0')
			*nl = '\0';
		co_error_set(&m->err, res->status < 0 ? res->status : -EINVAL,
			     "kubectl kustomize '%s': %s", u->rel[0] ? u->rel : ".",
			     res->status < 0 ? "did not finish" : msg);
		free(msg);
		end(m, m->err.code);
		return;
	}
	if (co_yaml_load_all(&docs, co_buf_cstr(&res->out), res->out.len, u->rel,
			     &m->err) < 0) {
		end(m, m->err.code ? m->err.code : -EINVAL);
		return;
	}
	add_items(m, docs, u);
	json_decref(docs);
	next_unit(m);
}

static void next_unit(struct co_manifests *m)
{
	while (m->next < m->n) {
		const struct unit *u = &m->units[m->next++];
		json_t *docs = NULL;

		if (m->cancelled) {
			co_error_set(&m->err, -ECANCELED, "build cancelled");
			end(m, -ECANCELED);
			return;
		}
		if (u->kustomize) {
			const char *argv[] = {"kubectl", "kustomize", u->abs, NULL};
			struct co_subproc_opts opts = {.argv = argv,
						       .max_output = 32 * 1024 * 1024,
						       .timeout_ms =
							       KUSTOMIZE_TIMEOUT_MS};

			if (co_subproc_run(m->loop, &m->proc, &opts, kustomize_done, m,
					   &m->err) < 0) {
				end(m, m->err.code ? m->err.code : -EIO);
				return;
			}
			return;
		}
		if (co_yaml_load_file(&docs, u->abs, &m->err) < 0) {
			co_error_prefix(&m->err, "%s", u->rel);
			end(m, m->err.code ? m->err.code : -EINVAL);
			return;
		}
		add_items(m, docs, u);
		json_decref(docs);
	}
	end(m, 0);
}

static void start_cb(uv_idle_t *idle)
{
	struct co_manifests *m = idle->data;

	uv_idle_stop(idle);
	next_unit(m);
}

int co_manifests_build(struct co_manifests **ret, uv_loop_t *loop, const char *root,
		       const char *path, co_manifests_cb cb, void *data,
		       struct co_error *err)
{
	struct co_manifests *m;
	char *abs, *rel;
	struct stat st;
	int rc;

	while (path && path[0] == '.' && path[1] == '/')
		path += 2;
	if (!path || strcmp(path, ".") == 0)
		path = "";
	if (strstr(path, ".."))
		return co_error_set(err, -EINVAL,
				    "build: path '%s' leaves the repository", path);
	abs = *path ? co_asprintf("%s/%s", root, path) : co_strdup(root);
	if (stat(abs, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = co_error_set(err, -ENOENT,
				  "build: path '%s' not found in the repository",
				  *path ? path : ".");
		free(abs);
		return rc;
	}
	m = co_calloc(1, sizeof(*m));
	m->loop = loop;
	m->root = co_strdup(root);
	m->items = json_array();
	m->cb = cb;
	m->data = data;
	rel = co_strdup(path);
	{
		size_t n = strlen(rel);

		while (n > 0 && rel[n - 1] == '/')
			rel[--n] = '\0';
	}
	rc = walk(m, abs, rel, 0, err);
	free(abs);
	free(rel);
	uv_idle_init(loop, &m->idle);
	m->idle.data = m;
	if (rc < 0) {
		uv_close((uv_handle_t *)&m->idle, free_build);
		return rc;
	}
	uv_idle_start(&m->idle, start_cb);
	if (ret)
		*ret = m;
	return 0;
}

void co_manifests_cancel(struct co_manifests *m)
{
	if (!m || m->cancelled)
		return;
	m->cancelled = 1;
	if (m->proc)
		co_subproc_cancel(m->proc);
}
