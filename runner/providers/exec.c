/*
 * The `exec` provider: any executable speaking the plugin contract of
 * docs/providers.md (DESIGN.md §7), which is how EKS, GKE, AKS, Cluster API or an
 * in-house tool plug in, in any language.
 *
 * One call = one run of the plugin: the request {"protocol": 1, "op", "cluster"} goes
 * to its stdin, one JSON document comes back on stdout. Exit 0 is success, exit 3
 * means "no such cluster" (get: -ENOENT; delete: existed false), anything else is a
 * failure whose message is the "error" field of stdout's JSON, else the last line of
 * stderr. Output is capped and every run has a deadline (SIGTERM, then SIGKILL), so a
 * hung or chatty plugin cannot hold the pipeline. Answers are checked for shape before
 * they reach the caller: a create or get must carry a kubeconfig.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/subproc.h"
#include "base/time.h"
#include "providers/impl.h"

#define EXEC_PROTOCOL 1
#define EXEC_EXIT_NOT_FOUND 3
#define EXEC_MAX_OUTPUT (4u << 20)
#define EXEC_LONG_TIMEOUT_MS (30 * 60 * 1000)  /* create, delete */
#define EXEC_SHORT_TIMEOUT_MS (2 * 60 * 1000)  /* get, list */

struct exec_provider {
	struct co_provider base;
	char *path;
	uint64_t timeout_ms;
};

enum op_kind { OP_CREATE, OP_GET, OP_LIST, OP_DELETE };
static const char *const op_names[] = { "create", "get", "list", "delete" };

struct op {
	struct exec_provider *ep;
	enum op_kind kind;
	char *name;
	char *image;
	co_provider_cb cb;
	void *data;
	struct co_error err;
};

static void op_free(struct op *op)
{
	free(op->name);
	free(op->image);
	free(op);
}

static void finish(struct op *op, int status, json_t *result)
{
	co_provider_report(op->cb, op->data, status, result, &op->err);
	json_decref(result);
	op_free(op);
}

static int fail(struct op *op, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct op *op, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(&op->err, code, fmt, ap);
	va_end(ap);
	co_error_prefix(&op->err, "plugin '%s' %s%s%s", op->ep->path, op_names[op->kind],
			op->name ? " " : "", op->name ? op->name : "");
	finish(op, code, NULL);
	return code;
}

/* A cluster answer for create/get: must be an object with a kubeconfig string; the
 * optional fields must have the documented types. Returns a new normalised object. */
static int check_cluster(struct op *op, json_t *j, const char *fallback_name,
			 int need_kubeconfig, json_t **ret)
{
	static const char *const strings[] = { "name", "kubeconfig", "ingress", "version",
					       "apiServer", "state", "image", NULL };
	const char *name;
	json_t *d;

	if (!json_is_object(j))
		return co_error_set(&op->err, -EPROTO, "answer is not a JSON object");
	for (size_t i = 0; strings[i]; i++) {
		json_t *v = json_object_get(j, strings[i]);

		if (v && !json_is_null(v) && !json_is_string(v))
			return co_error_set(&op->err, -EPROTO, "\"%s\" must be a string",
					    strings[i]);
	}
	if (need_kubeconfig && !json_string_length(json_object_get(j, "kubeconfig")))
		return co_error_set(&op->err, -EPROTO, "answer has no \"kubeconfig\"");
	name = json_string_value(json_object_get(j, "name"));
	if (!name)
		name = fallback_name;
	if (!co_provider_name_valid(name))
		return co_error_set(&op->err, -EPROTO, "answer names cluster '%.80s'",
				    name ? name : "");
	if (fallback_name && strcmp(name, fallback_name) != 0)
		return co_error_set(&op->err, -EPROTO, "answer is about cluster '%.80s'",
				    name);
	d = json_deep_copy(j);
	json_object_set_new(d, "name", json_string(name));
	json_object_set_new(d, "provider", json_string("exec"));
	if (!json_is_string(json_object_get(d, "state")))
		json_object_set_new(d, "state", json_string("ready"));
	if (!json_is_string(json_object_get(d, "image")) && op->image)
		json_object_set_new(d, "image", json_string(op->image));
	if (!json_is_string(json_object_get(d, "version"))) {
		char *v = co_provider_version_from_image(
			json_string_value(json_object_get(d, "image")));

		if (v)
			json_object_set_new(d, "version", json_string(v));
		free(v);
	}
	*ret = d;
	return 0;
}

/* Message of a failed run: {"error"} on stdout, else stderr's last line. */
static void failed_run(struct op *op, const struct co_subproc_result *res)
{
	json_t *j = json_loadb(res->out.data ? res->out.data : "", res->out.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	const char *e = co_buf_cstr(&res->err), *line;
	size_t len = res->err.len;

	if (msg) {
		fail(op, -EIO, "exit %lld: %.300s", (long long)res->exit_code, msg);
		json_decref(j);
		return;
	}
	json_decref(j);
	while (len > 0 && (e[len - 1] == '\n' || e[len - 1] == '\r' || e[len - 1] == ' '))
		len--;
	line = e + len;
	while (line > e && line[-1] != '\n')
		line--;
	if (len)
		fail(op, -EIO, "exit %lld: %.*s", (long long)res->exit_code,
		     (int)(e + len - line > 300 ? 300 : e + len - line), line);
	else
		fail(op, -EIO, "exit %lld without a message", (long long)res->exit_code);
}

static void on_exit_cb(struct co_subproc_result *res, void *data)
{
	struct op *op = data;
	json_error_t jerr;
	json_t *j = NULL, *d = NULL, *out, *e;
	char msg[CO_ERROR_MSG_MAX];
	size_t i;
	int rc = 0;

	if (res->status == -ETIMEDOUT) {
		fail(op, -ETIMEDOUT, "timed out after %llu ms",
		     (unsigned long long)res->elapsed_ms);
		return;
	}
	if (res->status < 0) {
		fail(op, res->status, "%s", strerror(-res->status));
		return;
	}
	if (res->term_signal) {
		fail(op, -EIO, "killed by signal %d", res->term_signal);
		return;
	}
	if (res->out_truncated) {
		fail(op, -E2BIG, "answer over %u bytes", EXEC_MAX_OUTPUT);
		return;
	}
	if (res->exit_code == EXEC_EXIT_NOT_FOUND && op->kind == OP_GET) {
		fail(op, -ENOENT, "not found");
		return;
	}
	if (res->exit_code == EXEC_EXIT_NOT_FOUND && op->kind == OP_DELETE) {
		finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed", 0));
		return;
	}
	if (res->exit_code != 0) {
		failed_run(op, res);
		return;
	}
	if (op->kind == OP_DELETE && res->out.len == strspn(co_buf_cstr(&res->out), " \t\r\n")) {
		finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed", 1));
		return;
	}
	j = json_loadb(res->out.data ? res->out.data : "", res->out.len, 0, &jerr);
	if (!j) {
		fail(op, -EPROTO, "answer is not JSON: %s", jerr.text);
		return;
	}
	switch (op->kind) {
	case OP_CREATE:
	case OP_GET:
		rc = check_cluster(op, j, op->name, 1, &d);
		if (rc < 0) {
			snprintf(msg, sizeof(msg), "%s", op->err.msg);
			fail(op, rc, "%s", msg);
			break;
		}
		finish(op, 0, d);
		break;
	case OP_LIST:
		if (!json_is_array(j)) {
			fail(op, -EPROTO, "answer is not a JSON array");
			break;
		}
		out = json_array();
		json_array_foreach(j, i, e) {
			rc = check_cluster(op, e, NULL, 0, &d);
			if (rc < 0)
				break;
			json_array_append_new(out, d);
		}
		if (rc < 0) {
			json_decref(out);
			snprintf(msg, sizeof(msg), "%s", op->err.msg);
			fail(op, rc, "list entry %zu: %s", i, msg);
			break;
		}
		finish(op, 0, out);
		break;
	case OP_DELETE: {
		json_t *existed = json_object_get(j, "existed");

		if (!json_is_object(j) || (existed && !json_is_boolean(existed))) {
			fail(op, -EPROTO, "delete answer must be {\"existed\": bool}");
			break;
		}
		finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed",
					!existed || json_is_true(existed)));
		break;
	}
	}
	json_decref(j);
}

static int start(struct co_provider *p, enum op_kind kind, const char *name,
		 const json_t *cluster, co_provider_cb cb, void *data, struct co_error *err)
{
	struct exec_provider *ep = (struct exec_provider *)p;
	json_t *req;
	char *text, *env_state, *env_scale;
	struct op *op;
	int rc;

	if ((kind == OP_GET || kind == OP_DELETE) && !co_provider_name_valid(name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    name ? name : "");
	op = co_calloc(1, sizeof(*op));
	op->ep = ep;
	op->kind = kind;
	op->name = name ? co_strdup(name) : NULL;
	if (json_is_string(json_object_get(cluster, "image")))
		op->image = co_strdup(json_string_value(json_object_get(cluster, "image")));
	op->cb = cb;
	op->data = data;

	req = json_pack("{s:i, s:s, s:O}", "protocol", EXEC_PROTOCOL, "op", op_names[kind],
			"cluster", cluster);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	env_state = co_asprintf("CUTOVER_STATE_DIR=%s", p->state_dir);
	env_scale = co_asprintf("CUTOVER_TIME_SCALE=%g", co_time_scale());

	struct co_subproc_opts o = {
		.argv = (const char *const[]){ ep->path, op_names[kind], NULL },
		.env = (const char *const[]){ env_state, env_scale, NULL },
		.stdin_data = text,
		.stdin_len = strlen(text),
		.max_output = EXEC_MAX_OUTPUT,
		.timeout_ms = ep->timeout_ms ? ep->timeout_ms :
			      kind == OP_CREATE || kind == OP_DELETE ? EXEC_LONG_TIMEOUT_MS :
			      EXEC_SHORT_TIMEOUT_MS,
		.kill_grace_ms = 2000,
	};
	rc = co_subproc_run(p->loop, NULL, &o, on_exit_cb, op, err);
	free(text);
	free(env_state);
	free(env_scale);
	if (rc < 0) {
		co_error_prefix(err, "provider plugin");
		op_free(op);
	}
	return rc;
}

static int exec_create(struct co_provider *p, const json_t *spec, co_provider_cb cb,
		       void *data, struct co_error *err)
{
	struct co_provider_spec s;
	json_t *cluster;
	char *version;
	int rc = co_provider_spec_parse(spec, &s, err);

	if (rc < 0)
		return rc;
	cluster = json_deep_copy(spec);
	version = co_provider_version_from_image(s.image);
	if (version && !json_is_string(json_object_get(cluster, "version")))
		json_object_set_new(cluster, "version", json_string(version));
	free(version);
	rc = start(p, OP_CREATE, s.name, cluster, cb, data, err);
	json_decref(cluster);
	return rc;
}

static int exec_named(struct co_provider *p, enum op_kind kind, const char *name,
		      co_provider_cb cb, void *data, struct co_error *err)
{
	json_t *cluster = json_pack("{s:s?}", "name", name);
	int rc = start(p, kind, name, cluster, cb, data, err);

	json_decref(cluster);
	return rc;
}

static int exec_remove(struct co_provider *p, const char *name, co_provider_cb cb,
		       void *data, struct co_error *err)
{
	return exec_named(p, OP_DELETE, name, cb, data, err);
}

static int exec_get(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		    struct co_error *err)
{
	return exec_named(p, OP_GET, name, cb, data, err);
}

static int exec_list(struct co_provider *p, co_provider_cb cb, void *data,
		     struct co_error *err)
{
	json_t *cluster = json_object();
	int rc = start(p, OP_LIST, NULL, cluster, cb, data, err);

	json_decref(cluster);
	return rc;
}

static void exec_free(struct co_provider *p)
{
	struct exec_provider *ep = (struct exec_provider *)p;

	co_provider_base_release(p);
	free(ep->path);
	free(ep);
}

static const struct co_provider_ops exec_ops = {
	.name = "exec",
	.caps = CO_PROVIDER_CAP_INGRESS_PORT | CO_PROVIDER_CAP_LIST,
	.create = exec_create,
	.remove = exec_remove,
	.get = exec_get,
	.list = exec_list,
	.free = exec_free,
};

int co_provider_exec_new(struct co_provider **ret, uv_loop_t *loop,
			 const struct co_provider_opts *opts, struct co_error *err)
{
	struct exec_provider *ep;

	if (!opts->exec_path || !*opts->exec_path)
		return co_error_set(err, -EINVAL, "provider 'exec' needs a plugin path");
	ep = co_calloc(1, sizeof(*ep));
	co_provider_base_init(&ep->base, &exec_ops, loop, NULL, opts->state_dir);
	ep->path = co_strdup(opts->exec_path);
	ep->timeout_ms = opts->exec_timeout_ms;
	*ret = &ep->base;
	return 0;
}
