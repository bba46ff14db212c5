/*
 * The control API and the fleet (contract in control.h).
 *
 * Clusters live in a list owned here. The state file is the fleet's only index: it is
 * rewritten (temporary file, fsync, rename) after every change, and each cluster's
 * objects are persisted by its own store, so a SIGKILL loses at most the last store
 * debounce interval. A deletion answers only once the cluster's listeners have closed
 * and its files are gone, so a client that re-creates the same name right after finds
 * a clean directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "net/http-server.h"
#include "sim/cluster.h"
#include "sim/control.h"
#include "sim/resources.h"

struct member {
	struct ks_cluster *cluster;
	struct member *next;
};

struct ks_control {
	uv_loop_t *loop;
	char *dir;
	char *url;
	struct co_http_server *http;
	struct member *members;
	int closing;
	void (*close_cb)(void *data);
	void *close_data;
};

/* A DELETE waiting for its cluster to close. */
struct pending_delete {
	struct co_http_req *req; /* NULL once the client went away */
	char *name;
};

static int save_file(const char *path, const char *text, struct co_error *err)
{
	return co_fs_write_atomic(path, text, strlen(text), 0600, err);
}

static void save_state(struct ks_control *ctl)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *list = json_array();
	for (struct member *m = ctl->members; m; m = m->next)
		json_array_append_new(list, ks_cluster_describe(m->cluster, true));
	json_t *root = json_pack("{s:i, s:o}", "version", 1, "clusters", list);
	char *text = json_dumps(root, JSON_INDENT(1));
	json_decref(root);
	char *path = co_asprintf("%s/kubesim.json", ctl->dir);
	if (save_file(path, text, &err) < 0)
		co_log_msg(CO_LOG_ERROR, "kubesim", "save state: %s", err.msg);
	free(path);
	free(text);
}

static struct member *find(struct ks_control *ctl, const char *name)
{
	for (struct member *m = ctl->members; m; m = m->next)
		if (!strcmp(ks_cluster_name(m->cluster), name))
			return m;
	return NULL;
}

static void cluster_changed(struct ks_cluster *c, void *data)
{
	struct ks_control *ctl = data;
	co_log_msg(CO_LOG_INFO, "kubesim", "cluster '%s' ready", ks_cluster_name(c));
	save_state(ctl);
}

static int add_cluster(struct ks_control *ctl, const struct ks_cluster_opts *base,
		       struct ks_cluster **ret, struct co_error *err)
{
	struct ks_cluster_opts o = *base;
	struct ks_cluster *c;
	o.state_dir = ctl->dir;
	o.on_change = cluster_changed;
	o.data = ctl;
	int rc = ks_cluster_new(&c, ctl->loop, &o, err);
	if (rc < 0)
		return rc;
	struct member *m = co_calloc(1, sizeof(*m));
	m->cluster = c;
	/* append, so listings keep creation order */
	struct member **pp = &ctl->members;
	while (*pp)
		pp = &(*pp)->next;
	*pp = m;
	*ret = c;
	return 0;
}

/* ---- HTTP handlers ---- */

static void respond_err(struct co_http_req *req, int http, const char *msg)
{
	co_http_respond_json(req, http, json_pack("{s:s}", "error", msg));
}

static int port_field(const json_t *body, const char *name, int *ret, struct co_error *err)
{
	json_t *v = json_object_get(body, name);
	*ret = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
		return co_error_set(err, -EINVAL, "%s must be an integer in 0..65535", name);
	*ret = (int)json_integer_value(v);
	return 0;
}

static void post_cluster(struct co_http_req *req, void *data)
{
	struct ks_control *ctl = data;
	struct co_error err = CO_ERROR_INIT;
	size_t len;
	const char *body = co_http_req_body(req, &len);
	json_error_t jerr;
	json_t *j = body ? json_loadb(body, len, 0, &jerr) : NULL;
	struct ks_cluster_opts o = { 0 };
	struct ks_cluster *c;
	char git[64];
	if (!json_is_object(j)) {
		respond_err(req, 400, "body must be a JSON object {name, image}");
		goto out;
	}
	o.name = json_string_value(json_object_get(j, "name"));
	o.image = json_string_value(json_object_get(j, "image"));
	if (!o.name || !o.image) {
		respond_err(req, 400, "name and image are required strings");
		goto out;
	}
	if (port_field(j, "apiPort", &o.api_port, &err) < 0 ||
	    port_field(j, "ingressPort", &o.ingress_port, &err) < 0) {
		respond_err(req, 400, err.msg);
		goto out;
	}
	if (!ks_dns1123_label(o.name)) {
		char *msg = co_asprintf("cluster name '%.80s' is not a DNS-1123 label", o.name);
		respond_err(req, 422, msg);
		free(msg);
		goto out;
	}
	if (ks_version_from_image(o.image, git, sizeof(git), NULL, NULL, &err) < 0) {
		respond_err(req, 422, err.msg);
		goto out;
	}
	if (find(ctl, o.name)) {
		char *msg = co_asprintf("cluster '%s' already exists", o.name);
		respond_err(req, 409, msg);
		free(msg);
		goto out;
	}
	int rc = add_cluster(ctl, &o, &c, &err);
	if (rc < 0) {
		respond_err(req, rc == -EADDRINUSE ? 409 : rc == -EINVAL ? 422 : 500, err.msg);
		goto out;
	}
	co_log_msg(CO_LOG_INFO, "kubesim", "cluster '%s' created (%s, api port %d)", o.name,
		   git, ks_cluster_api_port(c));
	save_state(ctl);
	co_http_respond_json(req, 201, ks_cluster_describe(c, false));
out:
	json_decref(j);
}

static void list_clusters(struct co_http_req *req, void *data)
{
	struct ks_control *ctl = data;
	json_t *list = json_array();
	for (struct member *m = ctl->members; m; m = m->next)
		json_array_append_new(list, ks_cluster_describe(m->cluster, false));
	co_http_respond_json(req, 200, json_pack("{s:o}", "clusters", list));
}

static struct member *lookup_param(struct ks_control *ctl, struct co_http_req *req)
{
	const char *name = co_http_req_param(req, "name");
	struct member *m = name ? find(ctl, name) : NULL;
	if (!m) {
		char *msg = co_asprintf("cluster '%.80s' not found", name ? name : "");
		respond_err(req, 404, msg);
		free(msg);
	}
	return m;
}

static void get_cluster(struct co_http_req *req, void *data)
{
	struct member *m = lookup_param(data, req);
	if (m)
		co_http_respond_json(req, 200, ks_cluster_describe(m->cluster, false));
}

static void delete_client_gone(struct co_http_req *req, void *data)
{
	struct pending_delete *pd = data;
	pd->req = NULL;
}

static void deleted(void *data)
{
	struct pending_delete *pd = data;
	if (pd->req) {
		co_http_req_on_close(pd->req, NULL, NULL);
		co_http_respond_json(pd->req, 200, json_pack("{s:s}", "deleted", pd->name));
	}
	free(pd->name);
	free(pd);
}

static void delete_cluster(struct co_http_req *req, void *data)
{
	struct ks_control *ctl = data;
	struct member *m = lookup_param(ctl, req);
	if (!m)
		return;
	struct member **pp = &ctl->members;
	while (*pp != m)
		pp = &(*pp)->next;
	*pp = m->next;
	struct pending_delete *pd = co_calloc(1, sizeof(*pd));
	pd->req = req;
	pd->name = co_strdup(ks_cluster_name(m->cluster));
	co_http_req_on_close(req, delete_client_gone, pd);
	co_log_msg(CO_LOG_INFO, "kubesim", "cluster '%s' deleted", pd->name);
	ks_cluster_close(m->cluster, true, deleted, pd);
	free(m);
	save_state(ctl);
}

static void post_faults(struct co_http_req *req, void *data)
{
	struct ks_control *ctl = data;
	struct member *m = lookup_param(ctl, req);
	struct co_error err = CO_ERROR_INIT;
	if (!m)
		return;
	size_t len;
	const char *body = co_http_req_body(req, &len);
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *cur = ks_cluster_describe(m->cluster, false);
	struct ks_faults base, f;
	ks_faults_from_json(&base, NULL, json_object_get(cur, "faults"), NULL);
	json_decref(cur);
	if (ks_faults_from_json(&f, &base, j, &err) < 0) {
		respond_err(req, 400, err.msg);
	} else {
		ks_cluster_set_faults(m->cluster, &f);
		save_state(ctl);
		co_http_respond_json(req, 200, ks_faults_to_json(&f));
	}
	json_decref(j);
}

static void healthz(struct co_http_req *req, void *data)
{
	co_http_respond_text(req, 200, "ok");
}

/* ---- lifecycle ---- */

static int restore(struct ks_control *ctl, struct co_error *err)
{
	char *path = co_asprintf("%s/kubesim.json", ctl->dir);
	json_error_t jerr;
	int rc = 0;
	if (access(path, F_OK) != 0) {
		free(path);
		return 0;
	}
	json_t *root = json_load_file(path, 0, &jerr);
	json_t *list = json_object_get(root, "clusters");
	if (!json_is_array(list)) {
		rc = co_error_set(err, -EINVAL, "state file '%s' is not valid: %s", path,
				  root ? "no clusters list" : jerr.text);
		goto out;
	}
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e) {
		struct co_error cerr = CO_ERROR_INIT;
		struct ks_cluster *c;
		struct ks_cluster_opts o = {
			.name = json_string_value(json_object_get(e, "name")),
			.image = json_string_value(json_object_get(e, "image")),
			.api_port = (int)json_integer_value(json_object_get(e, "apiPort")),
			.ingress_port = (int)json_integer_value(json_object_get(e, "ingressPort")),
			.token = json_string_value(json_object_get(e, "token")),
			.ready = json_is_true(json_object_get(e, "ready")),
			.created_ms = json_integer_value(json_object_get(e, "createdMs")),
		};
		ks_faults_from_json(&o.faults, NULL, json_object_get(e, "faults"), NULL);
		if (!o.token || add_cluster(ctl, &o, &c, &cerr) < 0) {
			/* keep the others running; report the first failure */
			if (!err || !err->code)
				co_error_set(err, cerr.code ? cerr.code : -EINVAL,
					     "restore cluster '%s': %s", o.name ? o.name : "?",
					     cerr.code ? cerr.msg : "no token");
			continue;
		}
		co_log_msg(CO_LOG_INFO, "kubesim", "cluster '%s' restored (api port %d)",
			   o.name, ks_cluster_api_port(c));
	}
out:
	json_decref(root);
	free(path);
	return rc;
}

int ks_control_new(struct ks_control **ret, uv_loop_t *loop,
		   const struct ks_control_opts *opts, struct co_error *err)
{
	char host[64];
	int port;
	const char *colon = strrchr(opts->listen ? opts->listen : "", ':');
	char *end;
	if (!colon || colon == opts->listen || (size_t)(colon - opts->listen) >= sizeof(host))
		return co_error_set(err, -EINVAL, "control address '%s' is not HOST:PORT",
				    opts->listen ? opts->listen : "");
	memcpy(host, opts->listen, (size_t)(colon - opts->listen));
	host[colon - opts->listen] = '\0';
	port = (int)strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return co_error_set(err, -EINVAL, "control address '%s': bad port", opts->listen);
	if (mkdir(opts->state_dir, 0700) < 0 && errno != EEXIST)
		return co_error_set(err, -EIO, "create state dir '%s': %s", opts->state_dir,
				    strerror(errno));

	struct ks_control *ctl = co_calloc(1, sizeof(*ctl));
	ctl->loop = loop;
	ctl->dir = co_strdup(opts->state_dir);
	struct co_http_server_opts ho = { .host = host, .port = port };
	int rc = co_http_server_new(&ctl->http, loop, &ho, err);
	if (rc < 0) {
		free(ctl->dir);
		free(ctl);
		return rc;
	}
	co_http_server_route(ctl->http, "GET", "/healthz", healthz, ctl);
	co_http_server_route(ctl->http, "POST", "/clusters", post_cluster, ctl);
	co_http_server_route(ctl->http, "GET", "/clusters", list_clusters, ctl);
	co_http_server_route(ctl->http, "GET", "/clusters/{name}", get_cluster, ctl);
	co_http_server_route(ctl->http, "DELETE", "/clusters/{name}", delete_cluster, ctl);
	co_http_server_route(ctl->http, "POST", "/clusters/{name}/faults", post_faults, ctl);
	ctl->url = co_asprintf("http://%s:%d", host, co_http_server_port(ctl->http));

	struct co_error rerr = CO_ERROR_INIT;
	rc = restore(ctl, &rerr);
	if (rc < 0) {
		co_error_copy(err, &rerr);
		ks_control_close(ctl, NULL, NULL);
		return rc;
	}
	save_state(ctl);
	char *url_path = co_asprintf("%s/kubesim.url", ctl->dir);
	char *url_line = co_asprintf("%s\n", ctl->url);
	rc = save_file(url_path, url_line, err);
	free(url_path);
	free(url_line);
	if (rc < 0) {
		ks_control_close(ctl, NULL, NULL);
		return rc;
	}
	if (rerr.code)
		co_error_copy(err, &rerr);
	*ret = ctl;
	return 0;
}

const char *ks_control_url(const struct ks_control *ctl)
{
	return ctl->url;
}

static void part_closed(void *data)
{
	struct ks_control *ctl = data;
	if (--ctl->closing > 0)
		return;
	void (*cb)(void *) = ctl->close_cb;
	void *cb_data = ctl->close_data;
	free(ctl->dir);
	free(ctl->url);
	free(ctl);
	if (cb)
		cb(cb_data);
}

void ks_control_close(struct ks_control *ctl, void (*cb)(void *data), void *data)
{
	ctl->close_cb = cb;
	ctl->close_data = data;
	ctl->closing = 1;
	while (ctl->members) {
		struct member *m = ctl->members;
		ctl->members = m->next;
		ctl->closing++;
		ks_cluster_close(m->cluster, false, part_closed, ctl);
		free(m);
	}
	co_http_server_close(ctl->http, part_closed, ctl);
}
