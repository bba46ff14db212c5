/*
 * kubeconfig loading. Several files are merged the way kubectl merges them (first
 * definition of a name wins), then the chosen context is resolved into one flat
 * struct with credentials decoded, so the REST client never looks at YAML.
 */
#include "clients/kubeconfig.h"
#include "base/base64.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"
#include "base/yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct merged {
	json_t *clusters;   /* name -> {cluster, dir, file} */
	json_t *users;
	json_t *contexts;
	char *current;
	char *current_file;
};

static int read_file(const char *path, struct co_buf *out, struct co_error *err)
{
	int rc = co_fs_read(path, CO_KUBECONFIG_MAX_BYTES, out, err);

	if (rc < 0)
		co_error_prefix(err, "kubeconfig");
	return rc;
}

/* Merge one document's named list (clusters/users/contexts) into map. */
static int merge_named(json_t *map, json_t *doc, const char *list, const char *inner,
		       const char *name, const char *dir, struct co_error *err)
{
	json_t *arr = json_object_get(doc, list);
	json_t *item;
	size_t i;

	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr))
		return co_error_set(err, -EINVAL, "kubeconfig '%s': '%s' is not a list", name,
				    list);
	json_array_foreach(arr, i, item) {
		const char *n = json_string_value(json_object_get(item, "name"));
		json_t *body = json_object_get(item, inner);

		if (!n || !*n)
			return co_error_set(err, -EINVAL, "kubeconfig '%s': %s[%zu] has no name",
					    name, list, i);
		if (body && !json_is_object(body))
			return co_error_set(err, -EINVAL,
					    "kubeconfig '%s': %s '%s': '%s' is not a map", name,
					    list, n, inner);
		if (json_object_get(map, n))
			continue;
		json_object_set_new(map, n,
				    json_pack("{s:O, s:s, s:s}", "body", body ? body : json_null(),
					      "dir", dir ? dir : ".", "file", name));
	}
	return 0;
}

static int merge_doc(struct merged *m, const char *text, size_t len, const char *name,
		     const char *dir, struct co_error *err)
{
	json_t *doc = NULL;
	const char *cur;
	int rc;

	if (len == 0)
		return 0;
	rc = co_yaml_load_one(&doc, text, len, name, err);
	if (rc < 0)
		return rc;
	if (json_is_null(doc)) {
		json_decref(doc);
		return 0;
	}
	if (!json_is_object(doc)) {
		json_decref(doc);
		return co_error_set(err, -EINVAL, "kubeconfig '%s': not a map", name);
	}
	rc = merge_named(m->clusters, doc, "clusters", "cluster", name, dir, err);
	if (rc == 0)
		rc = merge_named(m->users, doc, "users", "user", name, dir, err);
	if (rc == 0)
		rc = merge_named(m->contexts, doc, "contexts", "context", name, dir, err);
	cur = json_string_value(json_object_get(doc, "current-context"));
	if (rc == 0 && !m->current && cur && *cur) {
		m->current = co_strdup(cur);
		m->current_file = co_strdup(name);
	}
	json_decref(doc);
	return rc;
}

static const char *str_field(json_t *body, const char *key, const char *file,
			     const char *what, struct co_error *err, int *rc)
{
	json_t *v = json_object_get(body, key);

	if (!v || json_is_null(v))
		return NULL;
	if (!json_is_string(v)) {
		*rc = co_error_set(err, -EINVAL, "kubeconfig '%s': %s: '%s' is not a string",
				   file, what, key);
		return NULL;
	}
	return json_string_value(v);
}

static char *resolve_path(const char *dir, const char *p)
{
	if (p[0] == '/')
		return co_strdup(p);
	return co_asprintf("%s/%s", dir, p);
}

/* Fill ret and ret_len from "<key>-data" (base64) or "<key>" (a file path). */
static int load_blob(json_t *entry, const char *key, const char *what, char **ret,
		     size_t *ret_len, struct co_error *err)
{
	json_t *body = json_object_get(entry, "body");
	const char *file = json_string_value(json_object_get(entry, "file"));
	const char *dir = json_string_value(json_object_get(entry, "dir"));
	char *data_key = co_asprintf("%s-data", key);
	const char *data, *path;
	int rc = 0;

	data = str_field(body, data_key, file, what, err, &rc);
	path = rc == 0 ? str_field(body, key, file, what, err, &rc) : NULL;
	if (rc < 0)
		goto out;
	if (data) {
		*ret = co_base64_decode(data, strlen(data), ret_len);
		if (!*ret)
			rc = co_error_set(err, -EINVAL, "kubeconfig '%s': %s: '%s' is not valid "
					  "base64", file, what, data_key);
	} else if (path) {
		struct co_buf b = CO_BUF_INIT;
		char *full = resolve_path(dir, path);

		rc = read_file(full, &b, err);
		if (rc < 0)
			co_error_prefix(err, "kubeconfig '%s': %s: '%s'", file, what, key);
		else
			*ret = co_buf_detach(&b, ret_len);
		co_buf_release(&b);
		free(full);
	}
out:
	free(data_key);
	return rc;
}

static char **string_list(json_t *arr, int env_style, const char *file, int *rc,
			  struct co_error *err)
{
	size_t n = json_array_size(arr), i;
	char **out = co_calloc(n + 1, sizeof(char *));
	json_t *v;

	json_array_foreach(arr, i, v) {
		if (env_style) {
			const char *name = json_string_value(json_object_get(v, "name"));
			const char *value = json_string_value(json_object_get(v, "value"));

			if (!name || !value) {
				*rc = co_error_set(err, -EINVAL, "kubeconfig '%s': exec env[%zu] "
						   "needs name and value", file, i);
				break;
			}
			out[i] = co_asprintf("%s=%s", name, value);
		} else {
			if (!json_is_string(v)) {
				*rc = co_error_set(err, -EINVAL, "kubeconfig '%s': exec args[%zu] "
						   "is not a string", file, i);
				break;
			}
			out[i] = co_strdup(json_string_value(v));
		}
	}
	return out;
}

static void free_list(char **l)
{
	for (size_t i = 0; l && l[i]; i++)
		free(l[i]);
	free(l);
}

static int load_exec(struct co_kubeconfig *cfg, json_t *exec, const char *file,
		     struct co_error *err)
{
	struct co_kubeconfig_exec *e;
	const char *cmd = json_string_value(json_object_get(exec, "command"));
	const char *api = json_string_value(json_object_get(exec, "apiVersion"));
	const char *mode = json_string_value(json_object_get(exec, "interactiveMode"));
	int rc = 0;

	if (!cmd || !*cmd)
		return co_error_set(err, -EINVAL, "kubeconfig '%s': user '%s': exec has no "
				    "command", file, cfg->user_name);
	if (api && strcmp(api, "client.authentication.k8s.io/v1") != 0 &&
	    strcmp(api, "client.authentication.k8s.io/v1beta1") != 0)
		return co_error_set(err, -EINVAL, "kubeconfig '%s': user '%s': exec apiVersion "
				    "'%s' is not supported", file, cfg->user_name, api);
	e = co_calloc(1, sizeof(*e));
	e->command = co_strdup(cmd);
	e->api_version = co_strdup(api ? api : "client.authentication.k8s.io/v1");
	e->interactive_never = !mode || strcmp(mode, "Never") == 0;
	e->args = string_list(json_object_get(exec, "args"), 0, file, &rc, err);
	if (rc == 0)
		e->env = string_list(json_object_get(exec, "env"), 1, file, &rc, err);
	cfg->exec = e;
	return rc;
}

static int resolve(struct merged *m, const char *context, const char *label,
		   struct co_kubeconfig **ret_cfg, struct co_error *err)
{
	struct co_kubeconfig *cfg = co_calloc(1, sizeof(*cfg));
	const char *ctx_name = context ? context : m->current;
	json_t *ctx, *cl, *us, *body;
	const char *file, *s;
	int rc = 0;

	if (!ctx_name || !*ctx_name) {
		rc = co_error_set(err, -EINVAL, "kubeconfig '%s': no current-context set and "
				  "no context given", label);
		goto out;
	}
	ctx = json_object_get(m->contexts, ctx_name);
	if (!ctx) {
		rc = co_error_set(err, -ENOENT, "kubeconfig '%s': context '%s' not found", label,
				  ctx_name);
		goto out;
	}
	cfg->context = co_strdup(ctx_name);
	file = json_string_value(json_object_get(ctx, "file"));
	body = json_object_get(ctx, "body");
	s = str_field(body, "cluster", file, "context", err, &rc);
	if (rc < 0)
		goto out;
	if (!s) {
		rc = co_error_set(err, -EINVAL, "kubeconfig '%s': context '%s' has no cluster",
				  file, ctx_name);
		goto out;
	}
	cfg->cluster_name = co_strdup(s);
	s = str_field(body, "user", file, "context", err, &rc);
	cfg->user_name = co_strdup(s ? s : "");
	s = str_field(body, "namespace", file, "context", err, &rc);
	cfg->namespace_ = co_strdup(s && *s ? s : "default");
	if (rc < 0)
		goto out;

	cl = json_object_get(m->clusters, cfg->cluster_name);
	if (!cl) {
		rc = co_error_set(err, -ENOENT, "kubeconfig '%s': cluster '%s' of context '%s' "
				  "not found", label, cfg->cluster_name, ctx_name);
		goto out;
	}
	file = json_string_value(json_object_get(cl, "file"));
	body = json_object_get(cl, "body");
	s = str_field(body, "server", file, "cluster", err, &rc);
	if (rc < 0)
		goto out;
	if (!s || (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)) {
		rc = co_error_set(err, -EINVAL, "kubeconfig '%s': cluster '%s': server '%s' is "
				  "not an http(s) URL", file, cfg->cluster_name, s ? s : "");
		goto out;
	}
	cfg->server = co_strdup(s);
	while (strlen(cfg->server) > 8 && cfg->server[strlen(cfg->server) - 1] == '/')
		cfg->server[strlen(cfg->server) - 1] = '\0';
	cfg->insecure_skip_verify =
		json_is_true(json_object_get(body, "insecure-skip-tls-verify"));
	s = str_field(body, "tls-server-name", file, "cluster", err, &rc);
	if (s)
		cfg->tls_server_name = co_strdup(s);
	if (rc == 0)
		rc = load_blob(cl, "certificate-authority", "cluster", &cfg->ca_pem,
			       &cfg->ca_pem_len, err);
	if (rc < 0)
		goto out;

	us = json_object_get(m->users, cfg->user_name);
	if (!us) {
		/* A context without a user is legal (anonymous access). */
		if (cfg->user_name[0])
			rc = co_error_set(err, -ENOENT, "kubeconfig '%s': user '%s' of context "
					  "'%s' not found", label, cfg->user_name, ctx_name);
		goto out;
	}
	file = json_string_value(json_object_get(us, "file"));
	body = json_object_get(us, "body");
	s = str_field(body, "token", file, "user", err, &rc);
	if (s)
		cfg->token = co_strdup(s);
	s = rc == 0 ? str_field(body, "tokenFile", file, "user", err, &rc) : NULL;
	if (s && !cfg->token) {
		struct co_buf b = CO_BUF_INIT;
		char *full = resolve_path(json_string_value(json_object_get(us, "dir")), s);

		rc = read_file(full, &b, err);
		free(full);
		while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
			b.data[--b.len] = '\0';
		if (rc == 0)
			cfg->token = co_buf_detach(&b, NULL);
		co_buf_release(&b);
	}
	s = rc == 0 ? str_field(body, "username", file, "user", err, &rc) : NULL;
	if (s)
		cfg->username = co_strdup(s);
	s = rc == 0 ? str_field(body, "password", file, "user", err, &rc) : NULL;
	if (s)
		cfg->password = co_strdup(s);
	if (rc == 0)
		rc = load_blob(us, "client-certificate", "user", &cfg->cert_pem,
			       &cfg->cert_pem_len, err);
	if (rc == 0)
		rc = load_blob(us, "client-key", "user", &cfg->key_pem, &cfg->key_pem_len, err);
	if (rc == 0 && (cfg->cert_pem != NULL) != (cfg->key_pem != NULL))
		rc = co_error_set(err, -EINVAL, "kubeconfig '%s': user '%s': client certificate "
				  "and key must be given together", file, cfg->user_name);
	if (rc == 0 && json_is_object(json_object_get(body, "exec")))
		rc = load_exec(cfg, json_object_get(body, "exec"), file, err);
	if (rc == 0 && json_object_get(body, "auth-provider"))
		rc = co_error_set(err, -ENOTSUP, "kubeconfig '%s': user '%s': auth-provider "
				  "plugins are not supported, use an exec plugin", file,
				  cfg->user_name);
out:
	if (rc < 0) {
		co_kubeconfig_free(cfg);
		return rc;
	}
	*ret_cfg = cfg;
	return 0;
}

static void merged_init(struct merged *m)
{
	m->clusters = json_object();
	m->users = json_object();
	m->contexts = json_object();
	m->current = NULL;
	m->current_file = NULL;
}

static void merged_release(struct merged *m)
{
	json_decref(m->clusters);
	json_decref(m->users);
	json_decref(m->contexts);
	free(m->current);
	free(m->current_file);
}

int co_kubeconfig_parse(struct co_kubeconfig **ret_cfg, const char *text, size_t len,
			const char *name, const char *dir, const char *context,
			struct co_error *err)
{
	struct merged m;
	int rc;

	if (len > CO_KUBECONFIG_MAX_BYTES)
		return co_error_set(err, -E2BIG, "kubeconfig '%s': larger than %d bytes",
				    name ? name : "<input>", CO_KUBECONFIG_MAX_BYTES);
	merged_init(&m);
	rc = merge_doc(&m, text, len, name ? name : "<input>", dir, err);
	if (rc == 0)
		rc = resolve(&m, context, name ? name : "<input>", ret_cfg, err);
	merged_release(&m);
	return rc;
}

int co_kubeconfig_load(struct co_kubeconfig **ret_cfg, const char *paths,
		       const char *context, struct co_error *err)
{
	struct merged m;
	char *list, *save = NULL, *tok, *def = NULL;
	const char *env = getenv("KUBECONFIG");
	int rc = 0, loaded = 0;

	if (!paths || !*paths)
		paths = env && *env ? env : NULL;
	if (!paths) {
		const char *home = getenv("HOME");

		def = co_asprintf("%s/.kube/config", home ? home : "");
		paths = def;
	}
	merged_init(&m);
	list = co_strdup(paths);
	for (tok = strtok_r(list, ":", &save); tok && rc == 0; tok = strtok_r(NULL, ":", &save)) {
		struct co_buf b = CO_BUF_INIT;
		char *copy = co_strdup(tok);

		rc = read_file(tok, &b, err);
		/* Like kubectl: a listed file that does not exist is skipped. */
		if (rc == -ENOENT) {
			rc = 0;
		} else if (rc == 0) {
			rc = merge_doc(&m, co_buf_cstr(&b), b.len, tok, dirname(copy), err);
			loaded++;
		}
		free(copy);
		co_buf_release(&b);
	}
	if (rc == 0 && !loaded)
		rc = co_error_set(err, -ENOENT, "kubeconfig '%s': no such file", paths);
	if (rc == 0)
		rc = resolve(&m, context, paths, ret_cfg, err);
	merged_release(&m);
	free(list);
	free(def);
	return rc;
}

int co_kubeconfig_parse_exec_credential(const char *text, size_t len, char **ret_token,
					char **ret_cert_pem, char **ret_key_pem,
					int64_t *ret_expiry_ms, struct co_error *err)
{
	json_error_t jerr;
	json_t *doc = json_loadb(text, len, 0, &jerr);
	json_t *status;
	const char *kind, *tok, *cert, *key, *exp;
	int64_t expiry = 0;
	int rc = 0;

	if (!doc)
		return co_error_set(err, -EINVAL, "exec credential: invalid JSON at line %d: %s",
				    jerr.line, jerr.text);
	kind = json_string_value(json_object_get(doc, "kind"));
	status = json_object_get(doc, "status");
	if (!kind || strcmp(kind, "ExecCredential") != 0 || !json_is_object(status)) {
		rc = co_error_set(err, -EINVAL, "exec credential: expected kind ExecCredential "
				  "with a status");
		goto out;
	}
	tok = json_string_value(json_object_get(status, "token"));
	cert = json_string_value(json_object_get(status, "clientCertificateData"));
	key = json_string_value(json_object_get(status, "clientKeyData"));
	exp = json_string_value(json_object_get(status, "expirationTimestamp"));
	if (!tok && !(cert && key)) {
		rc = co_error_set(err, -EINVAL, "exec credential: status has neither token nor "
				  "client certificate and key");
		goto out;
	}
	if (exp) {
		if (co_time_parse_rfc3339(exp, &expiry) < 0) {
			rc = co_error_set(err, -EINVAL, "exec credential: expirationTimestamp "
					  "'%s' is not RFC 3339", exp);
			goto out;
		}
	}
	*ret_expiry_ms = expiry;
	*ret_token = tok ? co_strdup(tok) : NULL;
	*ret_cert_pem = cert ? co_strdup(cert) : NULL;
	*ret_key_pem = key ? co_strdup(key) : NULL;
out:
	json_decref(doc);
	return rc;
}

char *co_kubeconfig_render_token(const char *name, const char *server, const char *token,
				 const char *ca_pem)
{
	struct co_buf b = CO_BUF_INIT;
	char *ca = ca_pem ? co_base64_encode(ca_pem, strlen(ca_pem)) : NULL;

	co_buf_printf(&b,
		      "apiVersion: v1\n"
		      "kind: Config\n"
		      "clusters:\n"
		      "- name: %s\n"
		      "  cluster:\n"
		      "    server: %s\n",
		      name, server);
	if (ca)
		co_buf_printf(&b, "    certificate-authority-data: %s\n", ca);
	co_buf_printf(&b,
		      "users:\n"
		      "- name: %s\n"
		      "  user:\n"
		      "    token: %s\n"
		      "contexts:\n"
		      "- name: %s\n"
		      "  context:\n"
		      "    cluster: %s\n"
		      "    user: %s\n"
		      "current-context: %s\n",
		      name, token, name, name, name, name);
	free(ca);
	return co_buf_detach(&b, NULL);
}

static void exec_free(struct co_kubeconfig_exec *e)
{
	if (!e)
		return;
	free(e->api_version);
	free(e->command);
	free_list(e->args);
	free_list(e->env);
	free(e);
}

void co_kubeconfig_free(struct co_kubeconfig *cfg)
{
	if (!cfg)
		return;
	free(cfg->context);
	free(cfg->cluster_name);
	free(cfg->user_name);
	free(cfg->server);
	free(cfg->namespace_);
	free(cfg->ca_pem);
	free(cfg->cert_pem);
	free(cfg->key_pem);
	free(cfg->token);
	free(cfg->username);
	free(cfg->password);
	free(cfg->tls_server_name);
	exec_free(cfg->exec);
	free(cfg);
}
