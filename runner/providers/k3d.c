/*
 * The `k3d` provider: local k3s clusters in Docker through the k3d CLI, with exactly
 * the arguments of the original lab scripts:
 *
 *   k3d cluster create NAME -p PORT:80@loadbalancer --agents 2 --image IMAGE
 *       --k3s-arg --disable=traefik@server:0 --wait
 *   k3d kubeconfig get NAME
 *   k3d cluster delete NAME
 *   k3d cluster list -o json
 *
 * Every call starts with `cluster list -o json`, which makes create and delete
 * idempotent (an existing cluster is not created again, a missing one is not deleted)
 * and gives get its -ENOENT. Each call is a chain of subprocesses (argv arrays, never a
 * shell) with bounded output and a deadline. The kubeconfig k3d prints points at
 * https://0.0.0.0:PORT; it is rewritten to 127.0.0.1, which k3d puts in the server
 * certificate as well and which every client can connect to.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/subproc.h"
#include "providers/impl.h"

#define K3D_CREATE_TIMEOUT_MS (15 * 60 * 1000)
#define K3D_TIMEOUT_MS (2 * 60 * 1000)
#define K3D_MAX_OUTPUT (4u << 20)
#define K3D_DEFAULT_PORT 8080

struct k3d {
	struct co_provider base;
	char *bin;
};

enum op_kind { OP_CREATE, OP_GET, OP_LIST, OP_DELETE };

enum op_state {
	ST_LIST,       /* k3d cluster list -o json */
	ST_CREATE,     /* k3d cluster create ... --wait */
	ST_KUBECONFIG, /* k3d kubeconfig get NAME */
	ST_DELETE,     /* k3d cluster delete NAME */
	ST_DONE,
};

static const char *const state_names[] = { "list", "create", "kubeconfig", "delete",
					   "done" };

struct op {
	struct k3d *k;
	enum op_kind kind;
	enum op_state state;
	char *name;
	char *image;
	int port;
	co_provider_cb cb;
	void *data;
	json_t *found;   /* the cluster's entry in k3d's list, when it exists */
	struct co_error err;
};

static int step(struct op *op);

static void set_state(struct op *op, enum op_state s)
{
	if (op->state != s)
		co_log_msg(CO_LOG_DEBUG, "provider", "k3d '%s': %s -> %s",
			   op->name ? op->name : "*", state_names[op->state], state_names[s]);
	op->state = s;
}

static void op_free(struct op *op)
{
	json_decref(op->found);
	free(op->name);
	free(op->image);
	free(op);
}

static void finish(struct op *op, int status, json_t *result)
{
	set_state(op, ST_DONE);
	co_provider_report(op->cb, op->data, status, result, &op->err);
	json_decref(result);
	op_free(op);
}

/* The host port mapped to the load balancer's port 80, or 0. */
static int ingress_port(const json_t *entry)
{
	json_t *nodes = json_object_get(entry, "nodes"), *n;
	size_t i;

	json_array_foreach(nodes, i, n) {
		json_t *maps = json_object_get(json_object_get(n, "portMappings"), "80/tcp");
		const char *port = json_string_value(
			json_object_get(json_array_get(maps, 0), "HostPort"));

		if (port && atoi(port) > 0 && atoi(port) < 65536)
			return atoi(port);
	}
	return 0;
}

static const char *server_image(const json_t *entry)
{
	json_t *nodes = json_object_get(entry, "nodes"), *n;
	size_t i;

	json_array_foreach(nodes, i, n) {
		const char *role = json_string_value(json_object_get(n, "role"));

		if (role && strcmp(role, "server") == 0)
			return json_string_value(json_object_get(n, "image"));
	}
	return NULL;
}

/* A k3d list entry (may be NULL for a cluster just created) -> common shape. */
static json_t *describe(const char *name, const json_t *entry, const char *image, int port)
{
	json_t *d = json_pack("{s:s, s:s, s:s}", "name", name, "provider", "k3d", "state",
			      "ready");
	const char *img = entry && server_image(entry) ? server_image(entry) : image;
	int p = entry && ingress_port(entry) ? ingress_port(entry) : port;
	char *version = co_provider_version_from_image(img);

	if (img)
		json_object_set_new(d, "image", json_string(img));
	if (version)
		json_object_set_new(d, "version", json_string(version));
	if (p > 0)
		json_object_set_new(d, "ingress", json_sprintf("http://127.0.0.1:%d", p));
	free(version);
	return d;
}

/* k3d's kubeconfig with 0.0.0.0 servers pointed at 127.0.0.1; *ret_server gets the
 * first server URL (new string) or NULL. */
static char *fix_kubeconfig(const char *text, char **ret_server)
{
	static const char from[] = "https://0.0.0.0:", to[] = "https://127.0.0.1:";
	struct co_buf b = CO_BUF_INIT;
	const char *p = text, *hit, *srv;

	while ((hit = strstr(p, from))) {
		co_buf_append(&b, p, (size_t)(hit - p));
		co_buf_puts(&b, to);
		p = hit + sizeof(from) - 1;
	}
	co_buf_puts(&b, p);
	*ret_server = NULL;
	srv = strstr(co_buf_cstr(&b), "server: ");
	if (srv) {
		srv += 8;
		*ret_server = co_strndup(srv, strcspn(srv, " \r\n"));
	}
	return co_buf_detach(&b, NULL);
}

/* Report a failed k3d run with the last non-empty line of its stderr. */
static void failure(struct op *op, const struct co_subproc_result *res, const char *what)
{
	const char *e = co_buf_cstr(&res->err), *line;
	size_t len = res->err.len;
	int code = res->status < 0 ? res->status : -EIO;

	while (len > 0 && (e[len - 1] == '\n' || e[len - 1] == '\r' || e[len - 1] == ' '))
		len--;
	line = e + len;
	while (line > e && line[-1] != '\n')
		line--;
	if (res->status < 0)
		co_error_set(&op->err, code, "k3d %s '%s': %s", what, op->name ? op->name : "",
			     res->status == -ETIMEDOUT ? "timed out" : strerror(-res->status));
	else if (res->term_signal)
		co_error_set(&op->err, code, "k3d %s '%s': killed by signal %d", what,
			     op->name ? op->name : "", res->term_signal);
	else if (len)
		co_error_set(&op->err, code, "k3d %s '%s': exit %lld: %.*s", what,
			     op->name ? op->name : "", (long long)res->exit_code,
			     (int)(e + len - line > 300 ? 300 : e + len - line), line);
	else
		co_error_set(&op->err, code, "k3d %s '%s': exit %lld", what,
			     op->name ? op->name : "", (long long)res->exit_code);
	finish(op, code, NULL);
}

static void got_list(struct op *op, const struct co_subproc_result *res)
{
	json_error_t jerr;
	json_t *arr = json_loadb(res->out.data ? res->out.data : "", res->out.len, 0, &jerr);
	json_t *e, *out;
	size_t i;

	if (!json_is_array(arr)) {
		json_decref(arr);
		co_error_set(&op->err, -EPROTO, "k3d cluster list: not a JSON array");
		finish(op, -EPROTO, NULL);
		return;
	}
	if (op->kind == OP_LIST) {
		out = json_array();
		json_array_foreach(arr, i, e) {
			const char *n = json_string_value(json_object_get(e, "name"));

			if (n)
				json_array_append_new(out, describe(n, e, NULL, 0));
		}
		json_decref(arr);
		finish(op, 0, out);
		return;
	}
	json_array_foreach(arr, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		if (n && strcmp(n, op->name) == 0) {
			op->found = json_incref(e);
			break;
		}
	}
	json_decref(arr);
	switch (op->kind) {
	case OP_CREATE:
		if (op->found) {
			const char *img = server_image(op->found);

			if (img && strcmp(img, op->image) != 0) {
				co_error_set(&op->err, -EEXIST,
					     "cluster '%s' exists with image '%s', not '%s'",
					     op->name, img, op->image);
				finish(op, -EEXIST, NULL);
				return;
			}
			set_state(op, ST_KUBECONFIG);
		} else {
			set_state(op, ST_CREATE);
		}
		break;
	case OP_GET:
		if (!op->found) {
			co_error_set(&op->err, -ENOENT, "cluster '%s' not found", op->name);
			finish(op, -ENOENT, NULL);
			return;
		}
		set_state(op, ST_KUBECONFIG);
		break;
	case OP_DELETE:
		if (!op->found) {
			finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed", 0));
			return;
		}
		set_state(op, ST_DELETE);
		break;
	case OP_LIST:
		break;
	}
	if (step(op) < 0)
		finish(op, op->err.code ? op->err.code : -EIO, NULL);
}

static void got_kubeconfig(struct op *op, const struct co_subproc_result *res)
{
	char *server = NULL, *kc;
	json_t *d;

	if (res->out.len == 0 || !strstr(co_buf_cstr(&res->out), "clusters:")) {
		co_error_set(&op->err, -EPROTO, "k3d kubeconfig get '%s': no kubeconfig",
			     op->name);
		finish(op, -EPROTO, NULL);
		return;
	}
	kc = fix_kubeconfig(co_buf_cstr(&res->out), &server);
	d = describe(op->name, op->found, op->image, op->port);
	json_object_set_new(d, "kubeconfig", json_string(kc));
	if (server)
		json_object_set_new(d, "apiServer", json_string(server));
	free(server);
	free(kc);
	finish(op, 0, d);
}

static void on_exit_cb(struct co_subproc_result *res, void *data)
{
	struct op *op = data;
	static const char *const what[] = { "cluster list", "cluster create",
					    "kubeconfig get", "cluster delete", "" };

	if (res->status < 0 || res->term_signal || res->exit_code != 0) {
		failure(op, res, what[op->state]);
		return;
	}
	if (res->out_truncated) {
		co_error_set(&op->err, -E2BIG, "k3d %s: output over %u bytes", what[op->state],
			     K3D_MAX_OUTPUT);
		finish(op, -E2BIG, NULL);
		return;
	}
	switch (op->state) {
	case ST_LIST:
		got_list(op, res);
		break;
	case ST_CREATE:
		set_state(op, ST_KUBECONFIG);
		if (step(op) < 0)
			finish(op, op->err.code ? op->err.code : -EIO, NULL);
		break;
	case ST_KUBECONFIG:
		got_kubeconfig(op, res);
		break;
	case ST_DELETE:
		finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed", 1));
		break;
	case ST_DONE:
		break;
	}
}

static int run(struct op *op, const char *const *argv, uint64_t timeout_ms)
{
	struct co_subproc_opts o = {
		.argv = argv,
		.max_output = K3D_MAX_OUTPUT,
		.timeout_ms = timeout_ms,
	};

	co_error_clear(&op->err);
	return co_subproc_run(op->k->base.loop, NULL, &o, on_exit_cb, op, &op->err);
}

static int step(struct op *op)
{
	const char *bin = op->k->bin;
	char portmap[32];

	switch (op->state) {
	case ST_LIST:
		return run(op, (const char *const[]){ bin, "cluster", "list", "-o", "json",
						      NULL }, K3D_TIMEOUT_MS);
	case ST_CREATE:
		snprintf(portmap, sizeof(portmap), "%d:80@loadbalancer",
			 op->port > 0 ? op->port : K3D_DEFAULT_PORT);
		return run(op, (const char *const[]){ bin, "cluster", "create", op->name, "-p",
						      portmap, "--agents", "2", "--image",
						      op->image, "--k3s-arg",
						      "--disable=traefik@server:0", "--wait",
						      NULL }, K3D_CREATE_TIMEOUT_MS);
	case ST_KUBECONFIG:
		return run(op, (const char *const[]){ bin, "kubeconfig", "get", op->name,
						      NULL }, K3D_TIMEOUT_MS);
	case ST_DELETE:
		return run(op, (const char *const[]){ bin, "cluster", "delete", op->name,
						      NULL }, K3D_CREATE_TIMEOUT_MS);
	case ST_DONE:
		break;
	}
	return 0;
}

static int start(struct co_provider *p, enum op_kind kind, const char *name,
		 const struct co_provider_spec *spec, co_provider_cb cb, void *data,
		 struct co_error *err)
{
	struct op *op;
	int rc;

	if (kind != OP_LIST && !co_provider_name_valid(name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    name ? name : "");
	op = co_calloc(1, sizeof(*op));
	op->k = (struct k3d *)p;
	op->kind = kind;
	op->state = ST_LIST;
	op->name = name ? co_strdup(name) : NULL;
	op->cb = cb;
	op->data = data;
	if (spec) {
		op->image = co_strdup(spec->image);
		op->port = spec->port > 0 ? spec->port : K3D_DEFAULT_PORT;
	}
	rc = step(op);
	if (rc < 0) {
		co_error_copy(err, &op->err);
		op_free(op);
	}
	return rc;
}

static int k3d_create(struct co_provider *p, const json_t *spec, co_provider_cb cb,
		      void *data, struct co_error *err)
{
	struct co_provider_spec s;
	int rc = co_provider_spec_parse(spec, &s, err);

	if (rc < 0)
		return rc;
	return start(p, OP_CREATE, s.name, &s, cb, data, err);
}

static int k3d_remove(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		      struct co_error *err)
{
	return start(p, OP_DELETE, name, NULL, cb, data, err);
}

static int k3d_get(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		   struct co_error *err)
{
	return start(p, OP_GET, name, NULL, cb, data, err);
}

static int k3d_list(struct co_provider *p, co_provider_cb cb, void *data,
		    struct co_error *err)
{
	return start(p, OP_LIST, NULL, NULL, cb, data, err);
}

static void k3d_free(struct co_provider *p)
{
	struct k3d *k = (struct k3d *)p;

	co_provider_base_release(p);
	free(k->bin);
	free(k);
}

static const struct co_provider_ops k3d_ops = {
	.name = "k3d",
	.caps = CO_PROVIDER_CAP_INGRESS_PORT | CO_PROVIDER_CAP_LIST,
	.create = k3d_create,
	.remove = k3d_remove,
	.get = k3d_get,
	.list = k3d_list,
	.free = k3d_free,
};

int co_provider_k3d_new(struct co_provider **ret, uv_loop_t *loop,
			const struct co_provider_opts *opts, struct co_error *err)
{
	struct k3d *k = co_calloc(1, sizeof(*k));

	co_provider_base_init(&k->base, &k3d_ops, loop, NULL, opts->state_dir);
	k->bin = co_strdup(opts->k3d_path && *opts->k3d_path ? opts->k3d_path : "k3d");
	*ret = &k->base;
	return 0;
}
