/*
 * The cluster registry (contract in registry.h).
 *
 * The whole registry is one small JSON document, {"version": 1, "clusters": {name:
 * {...}}}, held in memory and rewritten in full after every change. A change is made
 * on a deep copy which replaces the in-memory document only once the file is safely
 * renamed into place, so a failed write leaves memory and disk agreeing on the old
 * content. The file is read with a size bound and checked for shape: it lives in a
 * state dir users may edit by hand.
 *
 * Names become path components (clusters/<name>/kubeconfig), so only DNS-1123 labels
 * are accepted; roles are limited to the four the header lists.
 */
#include "providers/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"

#define REGISTRY_MAX_BYTES (16u << 20)
#define NAME_MAX_LEN 63

struct co_registry {
	char *state_dir;
	char *path;
	json_t *root;     /* {"version": 1, "clusters": {...}} */
};

static const char *const roles[] = { "active", "candidate", "standby", "retired", NULL };

static int valid_name(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > NAME_MAX_LEN || name[0] == '-' || name[n - 1] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return 0;
	}
	return 1;
}

static int valid_role(const char *role)
{
	for (size_t i = 0; roles[i]; i++)
		if (role && strcmp(role, roles[i]) == 0)
			return 1;
	return 0;
}

static json_t *empty_root(void)
{
	return json_pack("{s:i, s:o}", "version", 1, "clusters", json_object());
}

static int load(const char *path, json_t **ret, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	json_error_t jerr;
	json_t *root = NULL, *clusters, *c;
	const char *key;
	int rc;

	if (access(path, F_OK) != 0) {
		*ret = empty_root();
		return 0;
	}
	rc = co_fs_read(path, REGISTRY_MAX_BYTES, &b, err);
	if (rc < 0)
		goto out;
	root = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
	if (!root) {
		rc = co_error_set(err, -EINVAL, "registry '%s': line %d: %s", path, jerr.line,
				  jerr.text);
		goto out;
	}
	clusters = json_object_get(root, "clusters");
	if (!json_is_object(root) || !json_is_object(clusters)) {
		rc = co_error_set(err, -EINVAL, "registry '%s': no \"clusters\" object", path);
		goto out;
	}
	json_object_foreach(clusters, key, c) {
		if (!json_is_object(c) || !valid_name(key)) {
			rc = co_error_set(err, -EINVAL, "registry '%s': bad entry '%.80s'", path,
					  key);
			goto out;
		}
	}
	*ret = root;
	root = NULL;
out:
	json_decref(root);
	co_buf_release(&b);
	return rc;
}

/* Write root to disk; on success the registry takes it over. Steals root either way. */
static int commit(struct co_registry *r, json_t *root, struct co_error *err)
{
	char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	size_t len = strlen(text);
	int rc;

	text = co_realloc(text, len + 2);
	text[len++] = '\n';
	text[len] = '\0';
	rc = co_fs_write_atomic(r->path, text, len, 0600, err);
	free(text);
	if (rc < 0) {
		json_decref(root);
		return rc;
	}
	json_decref(r->root);
	r->root = root;
	return 0;
}

int co_registry_open(struct co_registry **ret, const char *state_dir, struct co_error *err)
{
	struct co_registry *r;
	json_t *root;
	char *path;
	int rc;

	rc = co_fs_mkdir_p(state_dir, 0700);
	if (rc < 0)
		return co_error_set(err, rc, "create state dir '%s': %s", state_dir,
				    strerror(-rc));
	path = co_asprintf("%s/clusters.json", state_dir);
	rc = load(path, &root, err);
	if (rc < 0) {
		free(path);
		return rc;
	}
	r = co_calloc(1, sizeof(*r));
	r->state_dir = co_strdup(state_dir);
	r->path = path;
	r->root = root;
	*ret = r;
	return 0;
}

void co_registry_free(struct co_registry *r)
{
	if (!r)
		return;
	json_decref(r->root);
	free(r->path);
	free(r->state_dir);
	free(r);
}

int co_registry_reload(struct co_registry *r, struct co_error *err)
{
	json_t *root;
	int rc = load(r->path, &root, err);

	if (rc < 0)
		return rc;
	json_decref(r->root);
	r->root = root;
	return 0;
}

const json_t *co_registry_all(const struct co_registry *r)
{
	return json_object_get(r->root, "clusters");
}

const json_t *co_registry_get(const struct co_registry *r, const char *name)
{
	return name ? json_object_get(co_registry_all(r), name) : NULL;
}

int co_registry_put(struct co_registry *r, const char *name, const json_t *fields,
		    struct co_error *err)
{
	json_t *root, *clusters, *c, *role;
	char stamp[32];

	if (!valid_name(name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    name ? name : "");
	if (fields && !json_is_object(fields))
		return co_error_set(err, -EINVAL, "cluster '%s': fields must be an object",
				    name);
	role = json_object_get(fields, "role");
	if (role && !valid_role(json_string_value(role)))
		return co_error_set(err, -EINVAL, "cluster '%s': unknown role", name);

	co_time_rfc3339(co_time_wall_ms(), stamp, sizeof(stamp));
	root = json_deep_copy(r->root);
	clusters = json_object_get(root, "clusters");
	c = json_object_get(clusters, name);
	if (!c) {
		c = json_object();
		json_object_set_new(c, "created", json_string(stamp));
		json_object_set_new(clusters, name, c);
	}
	if (fields) {
		const char *key;
		json_t *v;

		json_object_foreach((json_t *)fields, key, v) {
			if (json_is_null(v))
				json_object_del(c, key);
			else
				json_object_set(c, key, v);
		}
	}
	/* the key is the truth; a field cannot rename an entry */
	json_object_set_new(c, "name", json_string(name));
	json_object_set_new(c, "updated", json_string(stamp));
	return commit(r, root, err);
}

int co_registry_set_role(struct co_registry *r, const char *name, const char *role,
			 struct co_error *err)
{
	json_t *fields;
	int rc;

	if (!co_registry_get(r, name))
		return co_error_set(err, -ENOENT, "cluster '%.80s' is not registered",
				    name ? name : "");
	if (!valid_role(role))
		return co_error_set(err, -EINVAL, "role '%.40s' is not one of active, "
				    "candidate, standby, retired", role ? role : "");
	fields = json_pack("{s:s}", "role", role);
	rc = co_registry_put(r, name, fields, err);
	json_decref(fields);
	return rc;
}

static char *kubeconfig_path(const struct co_registry *r, const char *name)
{
	return co_asprintf("%s/clusters/%s/kubeconfig", r->state_dir, name);
}

int co_registry_remove(struct co_registry *r, const char *name, struct co_error *err)
{
	json_t *root;
	char *path, *dir;
	int rc;

	if (!co_registry_get(r, name))
		return co_error_set(err, -ENOENT, "cluster '%.80s' is not registered",
				    name ? name : "");
	root = json_deep_copy(r->root);
	json_object_del(json_object_get(root, "clusters"), name);
	rc = commit(r, root, err);
	if (rc < 0)
		return rc;
	/* the credentials this registry wrote go with the entry */
	path = kubeconfig_path(r, name);
	dir = co_asprintf("%s/clusters/%s", r->state_dir, name);
	unlink(path);
	rmdir(dir);
	free(dir);
	free(path);
	return 0;
}

int co_registry_write_kubeconfig(struct co_registry *r, const char *name,
				 const char *kubeconfig_yaml, char **ret_path,
				 struct co_error *err)
{
	char *path, *dir;
	int rc;

	if (!valid_name(name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    name ? name : "");
	if (!kubeconfig_yaml || !*kubeconfig_yaml)
		return co_error_set(err, -EINVAL, "cluster '%s': empty kubeconfig", name);
	dir = co_asprintf("%s/clusters/%s", r->state_dir, name);
	rc = co_fs_mkdir_p(dir, 0700);
	free(dir);
	if (rc < 0)
		return co_error_set(err, rc, "cluster '%s': create kubeconfig directory: %s",
				    name, strerror(-rc));
	path = kubeconfig_path(r, name);
	rc = co_fs_write_atomic(path, kubeconfig_yaml, strlen(kubeconfig_yaml), 0600, err);
	if (rc < 0) {
		free(path);
		return rc;
	}
	*ret_path = path;
	return 0;
}

const char *co_registry_state_dir(const struct co_registry *r)
{
	return r->state_dir;
}
