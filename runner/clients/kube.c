/*
 * Kubernetes REST client, see kube.h.
 *
 * Every call is an "op" that goes through up to three steps: credentials (only with an
 * exec plugin whose credential is missing or expired), mapping (discovery of the
 * group-version when the kind is not cached yet) and the request itself. Each step is
 * one asynchronous operation whose callback calls op_step(); an op is always waiting
 * on exactly one HTTP call or on the credential refresh, so cancelling those is
 * enough to drain everything at co_kube_free().
 */
#include "clients/kube.h"
#include "base/buf.h"
#include "base/subproc.h"
#include "base/time.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum op_kind { OP_VERSION, OP_GET, OP_LIST, OP_CREATE, OP_APPLY, OP_PATCH, OP_DELETE,
	       OP_DISCOVERY };

static const char *const op_verbs[] = {
	[OP_VERSION] = "version", [OP_GET] = "get",       [OP_LIST] = "list",
	[OP_CREATE] = "create",   [OP_APPLY] = "apply",   [OP_PATCH] = "patch",
	[OP_DELETE] = "delete",   [OP_DISCOVERY] = "discover",
};

struct op {
	struct co_kube *kube;
	struct op *prev, *next;        /* kube->ops */
	enum op_kind kind;
	char *api_version;
	char *obj_kind;
	char *ns;
	char *name;
	char *query;                   /* without '?' */
	json_t *body;                  /* request body, owned */
	const char *content_type;
	bool status_sub;
	bool discovery_refreshed;
	bool waiting_discovery;        /* for the in-flight discovery of api_version */
	bool auth_retried;
	bool waiting_creds;
	char *plural;                  /* resolved */
	bool namespaced;
	struct co_http_call *call;
	co_kube_cb cb;
	void *data;
};

struct co_kube {
	uv_loop_t *loop;
	struct co_http_client *http;
	struct co_kubeconfig cfg;      /* owned copies of the fields used */
	struct co_kubeconfig_exec *exec;
	json_t *discovery;             /* "group/version" -> {Kind: {name, namespaced}} */
	json_t *discovering;           /* group-versions with a discovery in flight */
	uint64_t timeout_ms;
	struct op *ops;
	struct co_kube_watch *watches;
	/* exec plugin credential */
	char *exec_token;
	char *exec_cert;
	char *exec_key;
	int64_t exec_expiry_ms;
	struct co_subproc *exec_proc;
	unsigned in_callback;          /* user callbacks running: defer the free */
	bool freeing;
};

struct co_kube_watch {
	struct co_kube *kube;
	struct co_kube_watch *prev, *next;
	char *api_version;
	char *obj_kind;
	char *ns;
	char *selector;
	char *rv;
	struct op *resolver;           /* discovery in flight */
	char *path;                    /* collection path, once resolved */
	struct co_http_call *call;
	uv_timer_t timer;              /* reconnect backoff */
	struct co_buf line;
	unsigned failures;
	bool cancelled;
	bool timer_closed;
	co_kube_event_cb cb;
	void *data;
};

static void op_step(struct op *op);
static void maybe_free_kube(struct co_kube *kube);
static void watch_connect(struct co_kube_watch *w);

/* ---- helpers ---- */

static char *dup_or_null(const char *s)
{
	return s ? co_strdup(s) : NULL;
}

static char *dup_blob(const char *s, size_t len)
{
	char *p;

	if (!s)
		return NULL;
	p = co_malloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static void url_escape(struct co_buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			co_buf_putc(out, (char)c);
		} else {
			co_buf_putc(out, '%');
			co_buf_putc(out, hex[c >> 4]);
			co_buf_putc(out, hex[c & 15]);
		}
	}
}

static void split_gv(const char *api_version, char **ret_group, char **ret_version)
{
	const char *slash = strchr(api_version, '/');

	if (slash) {
		*ret_group = co_strndup(api_version, (size_t)(slash - api_version));
		*ret_version = co_strdup(slash + 1);
	} else {
		*ret_group = co_strdup("");
		*ret_version = co_strdup(api_version);
	}
}

static char *gv_path(const char *api_version)
{
	return strchr(api_version, '/') ? co_asprintf("/apis/%s", api_version)
					: co_asprintf("/api/%s", api_version);
}

/* "deployments.apps" for messages. */
static char *resource_label(const struct op *op)
{
	char *group, *version, *s;

	split_gv(op->api_version ? op->api_version : "v1", &group, &version);
	if (op->plural)
		s = group[0] ? co_asprintf("%s.%s", op->plural, group) : co_strdup(op->plural);
	else
		s = co_strdup(op->obj_kind ? op->obj_kind : "object");
	free(group);
	free(version);
	return s;
}

static int status_code_map(long code, const char *reason)
{
	if (code == 404)
		return -ENOENT;
	if (code == 409)
		return reason && strcmp(reason, "AlreadyExists") == 0 ? -EEXIST : -ESTALE;
	if (code == 400 || code == 422 || code == 415 || code == 413)
		return -EINVAL;
	if (code == 401 || code == 403)
		return -EACCES;
	if (code == 410)
		return -ERANGE;
	if (code == 429 || code >= 500)
		return -EAGAIN;
	return -EPROTO;
}

bool co_kube_transient(const struct co_kube_result *res)
{
	if (res->status == 0 || res->status == -ECANCELED)
		return false;
	if (res->code == 0)
		return true; /* transport: refused, reset, timeout */
	return res->code == 429 || res->code >= 500;
}

/* ---- op lifecycle ---- */

static void op_link(struct co_kube *kube, struct op *op)
{
	op->kube = kube;
	op->next = kube->ops;
	if (kube->ops)
		kube->ops->prev = op;
	kube->ops = op;
}

static void op_unlink(struct op *op)
{
	struct co_kube *kube = op->kube;

	if (op->prev)
		op->prev->next = op->next;
	else
		kube->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	op->prev = op->next = NULL;
}

static void op_free(struct op *op)
{
	free(op->api_version);
	free(op->obj_kind);
	free(op->ns);
	free(op->name);
	free(op->query);
	free(op->plural);
	json_decref(op->body);
	free(op);
}

static void op_finish(struct op *op, struct co_kube_result *res)
{
	struct co_kube *kube = op->kube;

	op_unlink(op);
	/* A callback may free the client (the usual way to end a one-shot client):
	 * the free waits until the callback has returned. */
	kube->in_callback++;
	if (op->cb)
		op->cb(res, op->data);
	kube->in_callback--;
	op_free(op);
	maybe_free_kube(kube);
}

static void op_fail(struct op *op, int status, long code, const char *reason,
		    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void op_fail(struct op *op, int status, long code, const char *reason,
		    const char *fmt, ...)
{
	struct co_kube_result res = { .status = status, .code = code,
				      .reason = reason ? reason : "" };
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(&res.err, status, fmt, ap);
	va_end(ap);
	op_finish(op, &res);
}

static struct op *op_new(struct co_kube *kube, enum op_kind kind, const char *api_version,
			 const char *obj_kind, const char *ns, const char *name, co_kube_cb cb,
			 void *data)
{
	struct op *op = co_calloc(1, sizeof(*op));

	op->kind = kind;
	op->api_version = dup_or_null(api_version);
	op->obj_kind = dup_or_null(obj_kind);
	op->ns = ns && *ns ? co_strdup(ns) : NULL;
	op->name = name && *name ? co_strdup(name) : NULL;
	op->cb = cb;
	op->data = data;
	op_link(kube, op);
	return op;
}

/* ---- credentials ---- */

static bool creds_needed(struct co_kube *kube)
{
	if (!kube->exec)
		return false;
	if (!kube->exec_token && !kube->exec_cert)
		return true;
	return kube->exec_expiry_ms && co_time_wall_ms() + 10000 >= kube->exec_expiry_ms;
}

static void resume_waiting(struct co_kube *kube)
{
	struct op *op, *next;

	for (op = kube->ops; op; op = next) {
		next = op->next;
		if (op->waiting_creds) {
			op->waiting_creds = false;
			op_step(op);
		}
	}
}

static void exec_done(struct co_subproc_result *res, void *data)
{
	struct co_kube *kube = data;
	struct co_error err = CO_ERROR_INIT;
	char *tok = NULL, *cert = NULL, *key = NULL;
	int64_t exp = 0;
	struct op *op, *next;
	int rc;

	kube->exec_proc = NULL;
	if (res->status < 0) {
		rc = co_error_set(&err, res->status, "exec credential plugin '%s': %s",
				  kube->exec->command, res->status == -ETIMEDOUT ? "timed out"
									      : "cancelled");
	} else if (res->term_signal || res->exit_code != 0) {
		/* stderr may hold a useful hint; keep the first line only. */
		char *nl = strchr(co_buf_cstr(&res->err), '\n');

		if (nl)
			*nl = '\0';
		rc = co_error_set(&err, -EACCES, "exec credential plugin '%s' failed (exit %lld): %s",
				  kube->exec->command, (long long)res->exit_code,
				  co_buf_cstr(&res->err));
	} else {
		rc = co_kubeconfig_parse_exec_credential(co_buf_cstr(&res->out), res->out.len,
							 &tok, &cert, &key, &exp, &err);
	}
	if (rc == 0) {
		free(kube->exec_token);
		free(kube->exec_cert);
		free(kube->exec_key);
		kube->exec_token = tok;
		kube->exec_cert = cert;
		kube->exec_key = key;
		kube->exec_expiry_ms = exp;
		resume_waiting(kube);
		return;
	}
	for (op = kube->ops; op; op = next) {
		next = op->next;
		if (!op->waiting_creds)
			continue;
		op->waiting_creds = false;
		op_fail(op, rc, 0, "", "%s", err.msg);
	}
}

static int start_exec(struct co_kube *kube, struct co_error *err)
{
	struct co_kubeconfig_exec *e = kube->exec;
	const char **argv;
	const char **env;
	size_t na = 0, ne = 0, i;
	char *info;
	struct co_subproc_opts o = { 0 };
	int rc;

	while (e->args && e->args[na])
		na++;
	while (e->env && e->env[ne])
		ne++;
	argv = co_calloc(na + 2, sizeof(char *));
	env = co_calloc(ne + 2, sizeof(char *));
	argv[0] = e->command;
	for (i = 0; i < na; i++)
		argv[i + 1] = e->args[i];
	for (i = 0; i < ne; i++)
		env[i] = e->env[i];
	info = co_asprintf("KUBERNETES_EXEC_INFO={\"apiVersion\":\"%s\",\"kind\":"
			   "\"ExecCredential\",\"spec\":{\"interactive\":false}}",
			   e->api_version);
	env[ne] = info;
	o.argv = argv;
	o.env = env;
	o.timeout_ms = 60000;
	o.max_output = 1 << 20;
	rc = co_subproc_run(kube->loop, &kube->exec_proc, &o, exec_done, kube, err);
	free(argv);
	free(env);
	free(info);
	return rc;
}

/* ---- discovery ---- */

static const json_t *mapping_lookup(struct co_kube *kube, const char *api_version,
				    const char *kind)
{
	return json_object_get(json_object_get(kube->discovery, api_version), kind);
}

static void cache_discovery(struct co_kube *kube, const char *api_version, json_t *list)
{
	json_t *kinds = json_object();
	json_t *resources = json_object_get(list, "resources");
	json_t *r;
	size_t i;

	json_array_foreach(resources, i, r) {
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *kind = json_string_value(json_object_get(r, "kind"));

		/* Subresources ("deployments/status") are not kinds of their own. */
		if (!name || !kind || strchr(name, '/'))
			continue;
		json_object_set_new(kinds, kind,
				    json_pack("{s:s, s:b}", "name", name, "namespaced",
					      json_is_true(json_object_get(r, "namespaced"))));
	}
	json_object_set_new(kube->discovery, api_version, kinds);
}

/* ---- the request step ---- */

static void apply_auth(struct co_kube *kube, struct co_http_req_opts *o)
{
	o->bearer_token = kube->exec_token ? kube->exec_token : kube->cfg.token;
	o->basic_user = kube->cfg.username;
	o->basic_password = kube->cfg.password;
	o->ca_pem = kube->cfg.ca_pem;
	o->ca_pem_len = kube->cfg.ca_pem_len;
	if (kube->exec_cert && kube->exec_key) {
		o->cert_pem = kube->exec_cert;
		o->cert_pem_len = strlen(kube->exec_cert);
		o->key_pem = kube->exec_key;
		o->key_pem_len = strlen(kube->exec_key);
	} else {
		o->cert_pem = kube->cfg.cert_pem;
		o->cert_pem_len = kube->cfg.cert_pem_len;
		o->key_pem = kube->cfg.key_pem;
		o->key_pem_len = kube->cfg.key_pem_len;
	}
	o->insecure_skip_verify = kube->cfg.insecure_skip_verify;
}

static char *op_url(struct op *op)
{
	struct co_kube *kube = op->kube;
	struct co_buf b = CO_BUF_INIT;
	char *gv;

	co_buf_puts(&b, kube->cfg.server);
	if (op->kind == OP_VERSION) {
		co_buf_puts(&b, "/version");
		return co_buf_detach(&b, NULL);
	}
	gv = gv_path(op->api_version);
	co_buf_puts(&b, gv);
	free(gv);
	if (op->kind == OP_DISCOVERY)
		return co_buf_detach(&b, NULL);
	if (op->namespaced && op->ns) {
		co_buf_puts(&b, "/namespaces/");
		url_escape(&b, op->ns);
	}
	co_buf_putc(&b, '/');
	co_buf_puts(&b, op->plural);
	if (op->name) {
		co_buf_putc(&b, '/');
		url_escape(&b, op->name);
	}
	if (op->status_sub)
		co_buf_puts(&b, "/status");
	if (op->query && *op->query) {
		co_buf_putc(&b, '?');
		co_buf_puts(&b, op->query);
	}
	return co_buf_detach(&b, NULL);
}

static const char *op_method(const struct op *op)
{
	switch (op->kind) {
	case OP_CREATE:
		return "POST";
	case OP_APPLY:
	case OP_PATCH:
		return "PATCH";
	case OP_DELETE:
		return "DELETE";
	default:
		return "GET";
	}
}

static void http_done(struct co_http_response *hr, void *data);

static void op_send(struct op *op)
{
	struct co_kube *kube = op->kube;
	struct co_http_req_opts o = { 0 };
	struct co_error err = CO_ERROR_INIT;
	char *url = op_url(op);
	char *body = op->body ? json_dumps(op->body, JSON_COMPACT) : NULL;
	char ctype[96];
	const char *headers[3] = { "Accept: application/json", NULL, NULL };
	int rc;

	if (body) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", op->content_type);
		headers[1] = ctype;
	}
	o.method = op_method(op);
	o.url = url;
	o.headers = headers;
	o.body = body;
	o.body_len = body ? strlen(body) : 0;
	o.timeout_ms = kube->timeout_ms;
	o.max_body = 256u << 20;
	apply_auth(kube, &o);
	rc = co_http_request(kube->http, &op->call, &o, http_done, op, &err);
	free(url);
	free(body);
	if (rc < 0) {
		char *label = resource_label(op);

		op->call = NULL;
		op_fail(op, rc, 0, "", "%s %s: %s", op_verbs[op->kind], label, err.msg);
		free(label);
	}
}

static void fail_from_response(struct op *op, struct co_http_response *hr, json_t *doc)
{
	const char *reason = json_string_value(json_object_get(doc, "reason"));
	const char *message = json_string_value(json_object_get(doc, "message"));
	char *label = resource_label(op);
	char where[600];
	int status = status_code_map(hr->code, reason);

	if (op->name)
		snprintf(where, sizeof(where), " '%s%s%s'", op->ns ? op->ns : "",
			 op->ns ? "/" : "", op->name);
	else if (op->ns)
		snprintf(where, sizeof(where), " in '%s'", op->ns);
	else
		where[0] = '\0';
	{
		struct co_kube_result res = { .status = status, .code = hr->code,
					      .reason = reason ? reason : "" };

		co_error_set(&res.err, status, "%s %s%s: %ld %s%s%s", op_verbs[op->kind],
			     label, where, hr->code, reason ? reason : "",
			     message ? ": " : "", message ? message : co_buf_cstr(&hr->body));
		res.obj = doc;
		free(label);
		op_finish(op, &res);
	}
}

static void http_done(struct co_http_response *hr, void *data)
{
	struct op *op = data;
	struct co_kube *kube = op->kube;
	json_t *doc = NULL;
	json_error_t jerr;

	op->call = NULL;
	if (hr->status < 0) {
		char *label = resource_label(op);

		op_fail(op, hr->status, 0, "", "%s %s: %s", op_verbs[op->kind], label,
			hr->err.msg);
		free(label);
		return;
	}
	if (hr->body.len)
		doc = json_loadb(hr->body.data, hr->body.len, 0, &jerr);

	if (hr->code == 401 && kube->exec && !op->auth_retried && !kube->freeing) {
		/* The plugin's credential may have been revoked early: refresh once. */
		op->auth_retried = true;
		free(kube->exec_token);
		kube->exec_token = NULL;
		free(kube->exec_cert);
		kube->exec_cert = NULL;
		json_decref(doc);
		op_step(op);
		return;
	}
	if (op->kind == OP_DISCOVERY) {
		if (hr->code == 200 && json_is_object(doc))
			cache_discovery(kube, op->api_version, doc);
		else if (hr->code == 404)
			json_object_set_new(kube->discovery, op->api_version, json_object());
		if (hr->code != 200 && hr->code != 404) {
			fail_from_response(op, hr, doc);
			json_decref(doc);
			return;
		}
		json_decref(doc);
		op_finish(op, &(struct co_kube_result){ .status = 0, .reason = "" });
		return;
	}
	if (hr->code >= 200 && hr->code < 300) {
		struct co_kube_result res = { .status = 0, .code = hr->code, .reason = "",
					      .obj = doc };

		if (!doc && hr->body.len) {
			char *label = resource_label(op);

			op_fail(op, -EPROTO, hr->code, "", "%s %s: invalid JSON in response: %s",
				op_verbs[op->kind], label, jerr.text);
			free(label);
			return;
		}
		op_finish(op, &res);
		json_decref(doc);
		return;
	}
	fail_from_response(op, hr, doc);
	json_decref(doc);
}

/* Discovery for an op: a private OP_DISCOVERY op whose completion resumes the parent. */
/*
 * A discovery finished: every op waiting for that group-version continues (or fails
 * with the discovery's error). One fetch serves all the ops that needed it, so
 * applying a hundred objects of one group at once costs one discovery request.
 */
struct disc_ctx {
	struct co_kube *kube;
	char *gv;
};

static void discovery_done(struct co_kube_result *res, void *data)
{
	struct disc_ctx *d = data;
	struct co_kube *kube = d->kube;
	struct op *op, *next;

	json_object_del(kube->discovering, d->gv);
	/* Ops only ever unlink themselves here, and new ones go to the head: next
	 * stays valid. */
	for (op = kube->ops; op; op = next) {
		next = op->next;
		if (!op->waiting_discovery || strcmp(op->api_version, d->gv) != 0)
			continue;
		op->waiting_discovery = false;
		if (res->status < 0)
			op_fail(op, res->status, res->code, res->reason, "%s", res->err.msg);
		else
			op_step(op);
	}
	free(d->gv);
	free(d);
}

static void op_step(struct op *op)
{
	struct co_kube *kube = op->kube;
	const json_t *m;

	if (kube->freeing) {
		op_fail(op, -ECANCELED, 0, "", "%s: cancelled", op_verbs[op->kind]);
		return;
	}
	if (creds_needed(kube)) {
		struct co_error err = CO_ERROR_INIT;

		op->waiting_creds = true;
		if (!kube->exec_proc && start_exec(kube, &err) < 0) {
			op->waiting_creds = false;
			op_fail(op, err.code, 0, "", "%s", err.msg);
		}
		return;
	}
	if (op->kind == OP_VERSION || op->kind == OP_DISCOVERY) {
		op_send(op);
		return;
	}
	if (!op->plural) {
		m = mapping_lookup(kube, op->api_version, op->obj_kind);
		if (!m && (!json_object_get(kube->discovery, op->api_version) ||
			   !op->discovery_refreshed)) {
			/* Unknown group-version, or a kind missing from a cached list (a CRD
			 * applied since): fetch the list, at most once per op, and join a
			 * fetch already in flight. */
			op->discovery_refreshed = true;
			op->waiting_discovery = true;
			if (!json_object_get(kube->discovering, op->api_version)) {
				struct disc_ctx *d = co_calloc(1, sizeof(*d));
				struct op *dop;

				d->kube = kube;
				d->gv = co_strdup(op->api_version);
				json_object_set_new(kube->discovering, op->api_version,
						    json_true());
				dop = op_new(kube, OP_DISCOVERY, op->api_version, NULL, NULL,
					     NULL, discovery_done, d);
				op_step(dop);
			}
			return;
		}
		if (!m) {
			op_fail(op, -ENOENT, 404, "NotFound",
				"%s: no matches for kind \"%s\" in version \"%s\"",
				op_verbs[op->kind], op->obj_kind, op->api_version);
			return;
		}
		op->plural = co_strdup(json_string_value(json_object_get(m, "name")));
		op->namespaced = json_is_true(json_object_get(m, "namespaced"));
		if (op->namespaced && !op->ns && op->kind != OP_LIST)
			op->ns = co_strdup(kube->cfg.namespace_);
		if (!op->namespaced) {
			free(op->ns);
			op->ns = NULL;
		}
	}
	op_send(op);
}

/* Start an op from a public call on the next loop iteration (a 0 ms one-shot timer),
 * so a callback never runs inside the call that started it, even when discovery is
 * cached and validation fails early. */
struct deferred {
	uv_timer_t timer;
	struct op *op;
};

static void deferred_close(uv_handle_t *h)
{
	free(h->data);
}

static void deferred_run(uv_timer_t *t)
{
	struct deferred *d = t->data;

	uv_close((uv_handle_t *)t, deferred_close);
	op_step(d->op);
}

static void op_start(struct op *op)
{
	struct deferred *d = co_calloc(1, sizeof(*d));

	d->op = op;
	uv_timer_init(op->kube->loop, &d->timer);
	d->timer.data = d;
	uv_timer_start(&d->timer, deferred_run, 0, 0);
}

/* ---- public API ---- */

int co_kube_new(struct co_kube **ret_kube, uv_loop_t *loop, struct co_http_client *http,
		const struct co_kubeconfig *cfg, struct co_error *err)
{
	struct co_kube *kube;

	if (!cfg || !cfg->server)
		return co_error_set(err, -EINVAL, "kube: kubeconfig has no server");
	kube = co_calloc(1, sizeof(*kube));
	kube->loop = loop;
	kube->http = http;
	kube->timeout_ms = 30000;
	kube->discovery = json_object();
	kube->discovering = json_object();
	kube->cfg.server = co_strdup(cfg->server);
	kube->cfg.namespace_ = co_strdup(cfg->namespace_ ? cfg->namespace_ : "default");
	kube->cfg.context = dup_or_null(cfg->context);
	kube->cfg.token = dup_or_null(cfg->token);
	kube->cfg.username = dup_or_null(cfg->username);
	kube->cfg.password = dup_or_null(cfg->password);
	kube->cfg.ca_pem = dup_blob(cfg->ca_pem, cfg->ca_pem_len);
	kube->cfg.ca_pem_len = cfg->ca_pem_len;
	kube->cfg.cert_pem = dup_blob(cfg->cert_pem, cfg->cert_pem_len);
	kube->cfg.cert_pem_len = cfg->cert_pem_len;
	kube->cfg.key_pem = dup_blob(cfg->key_pem, cfg->key_pem_len);
	kube->cfg.key_pem_len = cfg->key_pem_len;
	kube->cfg.insecure_skip_verify = cfg->insecure_skip_verify;
	if (cfg->exec) {
		struct co_kubeconfig_exec *e = co_calloc(1, sizeof(*e));
		size_t n;

		e->command = co_strdup(cfg->exec->command);
		e->api_version = co_strdup(cfg->exec->api_version);
		for (n = 0; cfg->exec->args && cfg->exec->args[n]; n++)
			;
		e->args = co_calloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			e->args[i] = co_strdup(cfg->exec->args[i]);
		for (n = 0; cfg->exec->env && cfg->exec->env[n]; n++)
			;
		e->env = co_calloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			e->env[i] = co_strdup(cfg->exec->env[i]);
		kube->exec = e;
	}
	*ret_kube = kube;
	return 0;
}

static void really_free(struct co_kube *kube)
{
	struct co_kubeconfig_exec *e = kube->exec;

	if (e) {
		for (size_t i = 0; e->args[i]; i++)
			free(e->args[i]);
		for (size_t i = 0; e->env[i]; i++)
			free(e->env[i]);
		free(e->args);
		free(e->env);
		free(e->command);
		free(e->api_version);
		free(e);
	}
	free(kube->cfg.server);
	free(kube->cfg.namespace_);
	free(kube->cfg.context);
	free(kube->cfg.token);
	free(kube->cfg.username);
	free(kube->cfg.password);
	free(kube->cfg.ca_pem);
	free(kube->cfg.cert_pem);
	free(kube->cfg.key_pem);
	free(kube->exec_token);
	free(kube->exec_cert);
	free(kube->exec_key);
	json_decref(kube->discovery);
	json_decref(kube->discovering);
	free(kube);
}

static void maybe_free_kube(struct co_kube *kube)
{
	if (kube->freeing && !kube->in_callback && !kube->ops && !kube->watches &&
	    !kube->exec_proc)
		really_free(kube);
}

void co_kube_free(struct co_kube *kube)
{
	struct op *op;
	struct co_kube_watch *w, *next;

	if (!kube)
		return;
	kube->freeing = true;
	for (w = kube->watches; w; w = next) {
		next = w->next;
		co_kube_watch_cancel(w);
	}
	for (op = kube->ops; op; op = op->next)
		if (op->call)
			co_http_cancel(op->call);
	if (kube->exec_proc)
		co_subproc_cancel(kube->exec_proc);
	maybe_free_kube(kube);
}

const char *co_kube_server(const struct co_kube *kube)
{
	return kube->cfg.server;
}

const char *co_kube_namespace(const struct co_kube *kube)
{
	return kube->cfg.namespace_;
}

void co_kube_set_timeout(struct co_kube *kube, uint64_t timeout_ms)
{
	kube->timeout_ms = timeout_ms;
}

static int check_ref(const struct co_kube_ref *ref, bool need_name, const char *verb,
		     struct co_error *err)
{
	if (!ref || !ref->api_version || !*ref->api_version || !ref->kind || !*ref->kind)
		return co_error_set(err, -EINVAL, "%s: apiVersion and kind are required", verb);
	if (need_name && (!ref->name || !*ref->name))
		return co_error_set(err, -EINVAL, "%s %s: a name is required", verb, ref->kind);
	return 0;
}

int co_kube_version(struct co_kube *kube, co_kube_cb cb, void *data, struct co_error *err)
{
	if (kube->freeing)
		return co_error_set(err, -ECANCELED, "kube: client is closing");
	op_start(op_new(kube, OP_VERSION, NULL, NULL, NULL, NULL, cb, data));
	return 0;
}

int co_kube_get(struct co_kube *kube, const struct co_kube_ref *ref, co_kube_cb cb,
		void *data, struct co_error *err)
{
	int rc = check_ref(ref, true, "get", err);

	if (rc < 0)
		return rc;
	op_start(op_new(kube, OP_GET, ref->api_version, ref->kind, ref->ns, ref->name, cb,
			data));
	return 0;
}

int co_kube_list(struct co_kube *kube, const struct co_kube_ref *ref,
		 const char *label_selector, const char *field_selector, co_kube_cb cb,
		 void *data, struct co_error *err)
{
	struct co_buf q = CO_BUF_INIT;
	struct op *op;
	int rc = check_ref(ref, false, "list", err);

	if (rc < 0)
		return rc;
	op = op_new(kube, OP_LIST, ref->api_version, ref->kind, ref->ns, NULL, cb, data);
	if (label_selector && *label_selector) {
		co_buf_puts(&q, "labelSelector=");
		url_escape(&q, label_selector);
	}
	if (field_selector && *field_selector) {
		co_buf_puts(&q, q.len ? "&fieldSelector=" : "fieldSelector=");
		url_escape(&q, field_selector);
	}
	op->query = co_buf_detach(&q, NULL);
	op_start(op);
	return 0;
}

static int obj_ref(const json_t *obj, struct co_kube_ref *ref, const char *verb,
		   struct co_error *err)
{
	const json_t *meta = json_object_get(obj, "metadata");

	if (!json_is_object(obj))
		return co_error_set(err, -EINVAL, "%s: object is not a map", verb);
	ref->api_version = json_string_value(json_object_get(obj, "apiVersion"));
	ref->kind = json_string_value(json_object_get(obj, "kind"));
	ref->name = json_string_value(json_object_get(meta, "name"));
	ref->ns = json_string_value(json_object_get(meta, "namespace"));
	return check_ref(ref, true, verb, err);
}

int co_kube_create(struct co_kube *kube, const json_t *obj, co_kube_cb cb, void *data,
		   struct co_error *err)
{
	struct co_kube_ref ref;
	struct op *op;
	int rc = obj_ref(obj, &ref, "create", err);

	if (rc < 0)
		return rc;
	op = op_new(kube, OP_CREATE, ref.api_version, ref.kind, ref.ns, NULL, cb, data);
	op->body = json_deep_copy(obj);
	op->content_type = "application/json";
	op_start(op);
	return 0;
}

int co_kube_apply(struct co_kube *kube, const json_t *obj, const char *default_ns,
		  co_kube_cb cb, void *data, struct co_error *err)
{
	struct co_kube_ref ref;
	struct op *op;
	int rc = obj_ref(obj, &ref, "apply", err);

	if (rc < 0)
		return rc;
	op = op_new(kube, OP_APPLY, ref.api_version, ref.kind,
		    ref.ns ? ref.ns : default_ns, ref.name, cb, data);
	op->body = json_deep_copy(obj);
	/* managedFields/resourceVersion in an applied config are rejected or ignored by
	 * real API servers; a config read back from a cluster often has them. */
	json_object_del(json_object_get(op->body, "metadata"), "managedFields");
	json_object_del(json_object_get(op->body, "metadata"), "resourceVersion");
	json_object_del(json_object_get(op->body, "metadata"), "uid");
	json_object_del(json_object_get(op->body, "metadata"), "creationTimestamp");
	op->content_type = "application/apply-patch+yaml";
	op->query = co_strdup("fieldManager=cutover&force=true");
	op_start(op);
	return 0;
}

int co_kube_merge_patch(struct co_kube *kube, const struct co_kube_ref *ref,
			const json_t *patch, bool status, co_kube_cb cb, void *data,
			struct co_error *err)
{
	struct op *op;
	int rc = check_ref(ref, true, "patch", err);

	if (rc < 0)
		return rc;
	if (!json_is_object(patch))
		return co_error_set(err, -EINVAL, "patch %s '%s': patch is not a map", ref->kind,
				    ref->name);
	op = op_new(kube, OP_PATCH, ref->api_version, ref->kind, ref->ns, ref->name, cb, data);
	op->body = json_deep_copy(patch);
	op->content_type = "application/merge-patch+json";
	op->status_sub = status;
	op->query = co_strdup("fieldManager=cutover");
	op_start(op);
	return 0;
}

int co_kube_delete(struct co_kube *kube, const struct co_kube_ref *ref,
		   const char *propagation, co_kube_cb cb, void *data, struct co_error *err)
{
	struct op *op;
	int rc = check_ref(ref, true, "delete", err);

	if (rc < 0)
		return rc;
	op = op_new(kube, OP_DELETE, ref->api_version, ref->kind, ref->ns, ref->name, cb, data);
	op->body = json_pack("{s:s, s:s, s:s}", "kind", "DeleteOptions", "apiVersion", "v1",
			     "propagationPolicy", propagation ? propagation : "Background");
	op->content_type = "application/json";
	op_start(op);
	return 0;
}

/* ---- apply_all ---- */

struct apply_all {
	struct co_kube *kube;
	json_t *objs;      /* sorted copy */
	json_t *applied;
	char *default_ns;
	size_t next;
	co_kube_cb cb;
	void *data;
};

static int apply_rank(const json_t *obj)
{
	const char *kind = json_string_value(json_object_get(obj, "kind"));

	if (!kind)
		return 9;
	if (strcmp(kind, "Namespace") == 0)
		return 0;
	if (strcmp(kind, "CustomResourceDefinition") == 0)
		return 1;
	if (strcmp(kind, "ServiceAccount") == 0 || strcmp(kind, "ClusterRole") == 0 ||
	    strcmp(kind, "Role") == 0 || strcmp(kind, "ConfigMap") == 0 ||
	    strcmp(kind, "Secret") == 0)
		return 2;
	if (strcmp(kind, "ClusterRoleBinding") == 0 || strcmp(kind, "RoleBinding") == 0)
		return 3;
	return 5;
}

static void apply_all_next(struct apply_all *aa);

static void apply_all_done(struct co_kube_result *res, void *data)
{
	struct apply_all *aa = data;

	if (res->status < 0) {
		aa->cb(res, aa->data);
		goto out;
	}
	json_array_append(aa->applied, res->obj);
	if (aa->next < json_array_size(aa->objs)) {
		apply_all_next(aa);
		return;
	}
	{
		struct co_kube_result ok = { .status = 0, .code = 200, .reason = "",
					     .obj = aa->applied };

		aa->cb(&ok, aa->data);
	}
out:
	json_decref(aa->objs);
	json_decref(aa->applied);
	free(aa->default_ns);
	free(aa);
}

static void apply_all_next(struct apply_all *aa)
{
	struct co_error err = CO_ERROR_INIT;
	json_t *obj = json_array_get(aa->objs, aa->next++);

	if (co_kube_apply(aa->kube, obj, aa->default_ns, apply_all_done, aa, &err) < 0) {
		struct co_kube_result res = { .status = err.code, .reason = "" };

		co_error_copy(&res.err, &err);
		/* Keep "exactly once, from the loop": this path only runs from a callback
		 * of the previous apply, or from co_kube_apply_all() after validation. */
		aa->cb(&res, aa->data);
		json_decref(aa->objs);
		json_decref(aa->applied);
		free(aa->default_ns);
		free(aa);
	}
}

int co_kube_apply_all(struct co_kube *kube, const json_t *objs, const char *default_ns,
		      co_kube_cb cb, void *data, struct co_error *err)
{
	struct apply_all *aa;
	struct co_kube_ref ref;
	json_t *sorted;
	size_t n = json_array_size(objs);

	if (!json_is_array(objs) || n == 0)
		return co_error_set(err, -EINVAL, "apply: no objects");
	/* Validate everything first: nothing is applied when one object is malformed. */
	for (size_t i = 0; i < n; i++) {
		int rc = obj_ref(json_array_get(objs, i), &ref, "apply", err);

		if (rc < 0) {
			co_error_prefix(err, "object %zu", i + 1);
			return rc;
		}
	}
	sorted = json_array();
	for (int rank = 0; rank <= 9; rank++)
		for (size_t i = 0; i < n; i++)
			if (apply_rank(json_array_get(objs, i)) == rank)
				json_array_append(sorted, json_array_get(objs, i));
	aa = co_calloc(1, sizeof(*aa));
	aa->kube = kube;
	aa->objs = sorted;
	aa->applied = json_array();
	aa->default_ns = dup_or_null(default_ns);
	aa->cb = cb;
	aa->data = data;
	apply_all_next(aa);
	return 0;
}

/* ---- watch ---- */

static void watch_unlink(struct co_kube_watch *w)
{
	struct co_kube *kube = w->kube;

	if (w->prev)
		w->prev->next = w->next;
	else if (kube->watches == w)
		kube->watches = w->next;
	if (w->next)
		w->next->prev = w->prev;
	w->prev = w->next = NULL;
}

static void watch_maybe_free(struct co_kube_watch *w)
{
	struct co_kube *kube = w->kube;

	if (!w->cancelled || w->call || w->resolver || !w->timer_closed)
		return;
	watch_unlink(w);
	free(w->api_version);
	free(w->obj_kind);
	free(w->ns);
	free(w->selector);
	free(w->rv);
	free(w->path);
	co_buf_release(&w->line);
	free(w);
	maybe_free_kube(kube);
}

static void watch_timer_closed(uv_handle_t *h)
{
	struct co_kube_watch *w = h->data;

	w->timer_closed = true;
	watch_maybe_free(w);
}

static void watch_line(struct co_kube_watch *w, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *ev = json_loadb(line, len, 0, &jerr);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	const char *rv = json_string_value(
		json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));

	if (!type || !json_is_object(obj)) {
		json_decref(ev);
		return;
	}
	if (strcmp(type, "ERROR") == 0) {
		/* 410 Expired: our resourceVersion is too old; restart from now. */
		if (json_integer_value(json_object_get(obj, "code")) == 410) {
			free(w->rv);
			w->rv = NULL;
		}
		json_decref(ev);
		return;
	}
	if (rv) {
		free(w->rv);
		w->rv = co_strdup(rv);
	}
	if (strcmp(type, "BOOKMARK") != 0 && !w->cancelled) {
		w->kube->in_callback++;
		w->cb(type, obj, w->data);
		w->kube->in_callback--;
	}
	json_decref(ev);
}

static int watch_data(const char *chunk, size_t len, void *data)
{
	struct co_kube_watch *w = data;
	size_t start = 0;

	if (w->cancelled)
		return 1;
	co_buf_append(&w->line, chunk, len);
	if (w->line.len > (16u << 20))
		return 1; /* a runaway line: drop the stream, reconnect */
	for (size_t i = 0; i < w->line.len && !w->cancelled; i++) {
		if (w->line.data[i] != '\n')
			continue;
		if (i > start)
			watch_line(w, w->line.data + start, i - start);
		start = i + 1;
	}
	co_buf_consume(&w->line, start);
	w->failures = 0;
	return w->cancelled ? 1 : 0;
}

static void watch_retry(uv_timer_t *t)
{
	watch_connect(t->data);
}

static void watch_done(struct co_http_response *hr, void *data)
{
	struct co_kube_watch *w = data;
	uint64_t delay;

	w->call = NULL;
	co_buf_reset(&w->line);
	if (w->cancelled) {
		watch_maybe_free(w);
		return;
	}
	if (hr->status < 0 || hr->code >= 300) {
		w->failures++;
		if (hr->code == 410) {
			free(w->rv);
			w->rv = NULL;
		}
	}
	/* Backoff: immediate after a clean end, then 100 ms doubling to 5 s. */
	delay = w->failures ? 100u << (w->failures > 6 ? 6 : w->failures - 1) : 0;
	if (delay > 5000)
		delay = 5000;
	uv_timer_start(&w->timer, watch_retry, delay, 0);
}

static void watch_connect(struct co_kube_watch *w)
{
	struct co_kube *kube = w->kube;
	struct co_http_req_opts o = { 0 };
	struct co_buf url = CO_BUF_INIT;
	const char *headers[] = { "Accept: application/json", NULL };
	struct co_error err = CO_ERROR_INIT;

	if (w->cancelled)
		return;
	co_buf_printf(&url, "%s%s?watch=1&allowWatchBookmarks=true&timeoutSeconds=300",
		      kube->cfg.server, w->path);
	if (w->rv && *w->rv)
		co_buf_printf(&url, "&resourceVersion=%s", w->rv);
	if (w->selector && *w->selector) {
		co_buf_puts(&url, "&labelSelector=");
		url_escape(&url, w->selector);
	}
	o.url = co_buf_cstr(&url);
	o.headers = headers;
	o.on_data = watch_data;
	apply_auth(kube, &o);
	if (co_http_request(kube->http, &w->call, &o, watch_done, w, &err) < 0) {
		w->call = NULL;
		w->failures++;
		uv_timer_start(&w->timer, watch_retry, 1000, 0);
	}
	co_buf_release(&url);
}

static void watch_resolved(struct co_kube_result *res, void *data);
static void watch_resolve(struct co_kube_watch *w);

static void watch_resolve_timer(uv_timer_t *t)
{
	watch_resolve(t->data);
}

static void watch_resolve(struct co_kube_watch *w)
{
	struct op *op = op_new(w->kube, OP_LIST, w->api_version, w->obj_kind, w->ns, NULL,
			       watch_resolved, w);

	/* A list op resolves the mapping; we use only the path it would take. */
	w->resolver = op;
	op->query = co_strdup("limit=1");
	op_start(op);
}

static void watch_resolved(struct co_kube_result *res, void *data)
{
	struct co_kube_watch *w = data;

	w->resolver = NULL;
	if (w->cancelled) {
		watch_maybe_free(w);
		return;
	}
	if (res->status < 0) {
		w->failures++;
		uv_timer_start(&w->timer, watch_resolve_timer, 1000, 0);
		return;
	}
	/* The mapping is cached now; build the collection path once. */
	{
		const json_t *m = mapping_lookup(w->kube, w->api_version, w->obj_kind);
		char *gv = gv_path(w->api_version);
		bool namespaced = json_is_true(json_object_get(m, "namespaced"));

		if (namespaced && w->ns)
			w->path = co_asprintf("%s/namespaces/%s/%s", gv, w->ns,
					      json_string_value(json_object_get(m, "name")));
		else
			w->path = co_asprintf("%s/%s", gv,
					      json_string_value(json_object_get(m, "name")));
		free(gv);
	}
	/* Without a resourceVersion the server replays current state as ADDED events
	 * before live ones, which is what callers waiting for a condition want. */
	watch_connect(w);
}

int co_kube_watch(struct co_kube_watch **ret_watch, struct co_kube *kube,
		  const struct co_kube_ref *ref, const char *label_selector,
		  const char *resource_version, co_kube_event_cb ev_cb, void *data,
		  struct co_error *err)
{
	struct co_kube_watch *w;
	int rc = check_ref(ref, false, "watch", err);

	if (rc < 0)
		return rc;
	w = co_calloc(1, sizeof(*w));
	w->kube = kube;
	w->api_version = co_strdup(ref->api_version);
	w->obj_kind = co_strdup(ref->kind);
	w->ns = ref->ns && *ref->ns ? co_strdup(ref->ns) : NULL;
	w->selector = dup_or_null(label_selector);
	w->rv = resource_version && *resource_version ? co_strdup(resource_version) : NULL;
	w->cb = ev_cb;
	w->data = data;
	uv_timer_init(kube->loop, &w->timer);
	w->timer.data = w;
	w->next = kube->watches;
	if (kube->watches)
		kube->watches->prev = w;
	kube->watches = w;
	watch_resolve(w);
	if (ret_watch)
		*ret_watch = w;
	return 0;
}

void co_kube_watch_cancel(struct co_kube_watch *w)
{
	if (!w || w->cancelled)
		return;
	w->cancelled = true;
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, watch_timer_closed);
	if (w->call)
		co_http_cancel(w->call);
}

/* ---- readiness ---- */

const json_t *co_kube_condition(const json_t *obj, const char *type)
{
	const json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions");
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));

		if (t && strcmp(t, type) == 0)
			return c;
	}
	return NULL;
}

int co_kube_ready(const json_t *obj, const char *expected_revision, char *reason,
		  size_t reason_len)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const json_t *status = json_object_get(obj, "status");
	const json_t *ready;
	const char *st, *why, *msg, *rev;
	json_int_t gen, observed;
	char dummy[8];

	if (!reason) {
		reason = dummy;
		reason_len = sizeof(dummy);
	}
	reason[0] = '\0';
	if (json_is_true(json_object_get(json_object_get(obj, "spec"), "suspend"))) {
		snprintf(reason, reason_len, "reconciliation is suspended");
		return -EPERM;
	}
	gen = json_integer_value(json_object_get(meta, "generation"));
	observed = json_integer_value(json_object_get(status, "observedGeneration"));
	if (gen && observed != gen) {
		snprintf(reason, reason_len, "observedGeneration %lld, want %lld",
			 (long long)observed, (long long)gen);
		return 0;
	}
	ready = co_kube_condition(obj, "Ready");
	if (!ready) {
		snprintf(reason, reason_len, "no Ready condition yet");
		return 0;
	}
	st = json_string_value(json_object_get(ready, "status"));
	if (!st || strcmp(st, "True") != 0) {
		why = json_string_value(json_object_get(ready, "reason"));
		msg = json_string_value(json_object_get(ready, "message"));
		snprintf(reason, reason_len, "Ready=%s: %s: %s", st ? st : "Unknown",
			 why ? why : "", msg ? msg : "");
		return 0;
	}
	if (expected_revision && *expected_revision) {
		rev = json_string_value(json_object_get(status, "lastAppliedRevision"));
		if (!rev)
			rev = json_string_value(
				json_object_get(json_object_get(status, "artifact"), "revision"));
		if (!rev || strcmp(rev, expected_revision) != 0) {
			snprintf(reason, reason_len, "revision %s, want %s", rev ? rev : "(none)",
				 expected_revision);
			return 0;
		}
	}
	return 1;
}
