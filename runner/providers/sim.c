/*
 * The `sim` provider: clusters from kubesim's control API (sim/README.md), the
 * embedded default.
 *
 *   create  GET /clusters/NAME; if missing POST /clusters {name, image, ingressPort};
 *           then poll GET until "ready" (kubesim answers 503 on the cluster's API
 *           while it boots) under a deadline scaled by the time scale
 *   get     GET /clusters/NAME (404 -> -ENOENT)
 *   list    GET /clusters
 *   delete  DELETE /clusters/NAME (404 -> existed false)
 *
 * Each call is a small state machine (struct op) driven by HTTP completions and, while
 * waiting for readiness, by one poll timer. kubesim reports the kubeconfig as a path it
 * wrote (0600); the answer carries its text, read with a size bound, so callers never
 * depend on where kubesim keeps its files. The control URL is read per call when it
 * comes from the URL file, so a restarted kubesim on another port is found again.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/time.h"
#include "net/http-client.h"
#include "providers/impl.h"

#define SIM_HTTP_TIMEOUT_MS 30000
#define SIM_READY_DEADLINE_MS 120000 /* unscaled: kubesim boots in ~3 s */
#define SIM_POLL_MS 500
#define SIM_POLL_MIN_MS 20
#define SIM_KUBECONFIG_MAX (1u << 20)
#define SIM_URL_MAX 4096

struct sim {
	struct co_provider base;
	char *url; /* fixed control URL, or NULL: read <state>/kubesim/kubesim.url */
};

enum op_kind { OP_CREATE, OP_GET, OP_LIST, OP_DELETE };

enum op_state {
	ST_LOOKUP,  /* create: does the cluster exist already? */
	ST_POST,    /* create: POST /clusters */
	ST_WAIT,    /* create: polling GET until ready */
	ST_REQUEST, /* get, list, delete: the one request */
	ST_DONE,
};

static const char *const state_names[] = { "lookup", "post", "wait", "request", "done" };

struct op {
	struct sim *sim;
	enum op_kind kind;
	enum op_state state;
	char *base_url;
	char *name;
	char *image;
	int port;
	co_provider_cb cb;
	void *data;
	uv_timer_t timer;
	int timer_started;
	uint64_t deadline_ms; /* monotonic */
	int retried_conflict;
	/* result, reported once the timer handle is closed */
	int status;
	json_t *result;
	struct co_error err;
};

static int step(struct op *op);
static void on_response(struct co_http_response *res, void *data);

static void set_state(struct op *op, enum op_state s)
{
	if (op->state != s)
		co_log_msg(CO_LOG_DEBUG, "provider", "sim '%s': %s -> %s",
			   op->name ? op->name : "*", state_names[op->state], state_names[s]);
	op->state = s;
}

static void op_free(struct op *op)
{
	json_decref(op->result);
	free(op->base_url);
	free(op->name);
	free(op->image);
	free(op);
}

static void timer_closed(uv_handle_t *h)
{
	struct op *op = h->data;

	co_provider_report(op->cb, op->data, op->status, op->result, &op->err);
	op_free(op);
}

static void finish(struct op *op, int status, json_t *result)
{
	set_state(op, ST_DONE);
	op->status = status;
	op->result = result;
	if (op->timer_started) {
		uv_close((uv_handle_t *)&op->timer, timer_closed);
		return;
	}
	co_provider_report(op->cb, op->data, op->status, op->result, &op->err);
	op_free(op);
}

static void fail(struct op *op, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct op *op, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(&op->err, code, fmt, ap);
	va_end(ap);
	finish(op, code, NULL);
}

/* kubesim's description -> the provider's common shape. Reads the kubeconfig text
 * when with_kubeconfig; fails only when a ready cluster's kubeconfig is unreadable. */
static int describe(const json_t *ks, int with_kubeconfig, json_t **ret,
		    struct co_error *err)
{
	const char *name = json_string_value(json_object_get(ks, "name"));
	const char *kc_path = json_string_value(json_object_get(ks, "kubeconfig"));
	json_int_t ingress_port = json_integer_value(json_object_get(ks, "ingressPort"));
	int ready = json_is_true(json_object_get(ks, "ready"));
	json_t *d;

	if (!name)
		return co_error_set(err, -EPROTO, "kubesim answered a cluster without a name");
	d = json_pack("{s:s, s:s, s:s}", "name", name, "provider", "sim", "state",
		      ready ? "ready" : "creating");
	if (json_is_string(json_object_get(ks, "image")))
		json_object_set(d, "image", json_object_get(ks, "image"));
	if (json_is_string(json_object_get(ks, "version")))
		json_object_set(d, "version", json_object_get(ks, "version"));
	if (json_is_string(json_object_get(ks, "server")))
		json_object_set(d, "apiServer", json_object_get(ks, "server"));
	if (ingress_port > 0 && ingress_port < 65536)
		json_object_set_new(d, "ingress", json_sprintf("http://127.0.0.1:%d",
							       (int)ingress_port));
	if (with_kubeconfig && kc_path) {
		struct co_buf b = CO_BUF_INIT;
		int rc = co_fs_read(kc_path, SIM_KUBECONFIG_MAX, &b, err);

		if (rc < 0 && ready) {
			co_buf_release(&b);
			json_decref(d);
			co_error_prefix(err, "cluster '%s' kubeconfig", name);
			return rc;
		}
		if (rc == 0)
			json_object_set_new(d, "kubeconfig", json_string(co_buf_cstr(&b)));
		co_buf_release(&b);
	}
	*ret = d;
	return 0;
}

/* Start one request; on failure the error is in op->err and nothing will call back. */
static int request(struct op *op, const char *method, const char *path, const json_t *body)
{
	struct co_http_req_opts base = { .timeout_ms = SIM_HTTP_TIMEOUT_MS,
					 .max_body = 8u << 20 };
	char *url = co_asprintf("%s%s", op->base_url, path);
	struct co_error err = CO_ERROR_INIT;
	int rc;

	rc = co_http_request_json(op->sim->base.http, NULL, method, url, body, &base,
				  on_response, op, &err);
	free(url);
	if (rc < 0)
		co_error_copy(&op->err, &err);
	return rc;
}

/* Advance from a callback: a request that cannot start ends the call. */
static void advance(struct op *op)
{
	int rc = step(op);

	if (rc < 0)
		finish(op, rc, NULL);
}

static void poll_due(uv_timer_t *t)
{
	struct op *op = t->data;
	char *path = co_asprintf("/clusters/%s", op->name);
	int rc = request(op, "GET", path, NULL);

	free(path);
	if (rc < 0)
		finish(op, rc, NULL);
}

static void schedule_poll(struct op *op)
{
	uint64_t delay = co_time_scaled(SIM_POLL_MS), now = co_time_mono_ms();

	if (delay < SIM_POLL_MIN_MS)
		delay = SIM_POLL_MIN_MS;
	if (now >= op->deadline_ms) {
		char d[32];

		co_time_format_duration((int64_t)co_time_scaled(SIM_READY_DEADLINE_MS), d,
					sizeof(d));
		fail(op, -ETIMEDOUT, "cluster '%s' not ready after %s", op->name, d);
		return;
	}
	if (now + delay > op->deadline_ms)
		delay = op->deadline_ms - now;
	if (!op->timer_started) {
		uv_timer_init(op->sim->base.loop, &op->timer);
		op->timer.data = op;
		op->timer_started = 1;
	}
	uv_timer_start(&op->timer, poll_due, delay, 0);
}

/* The message kubesim put in {"error": ...}, or the status line. */
static void answer_error(struct op *op, const struct co_http_response *res,
			 const char *what)
{
	json_t *j = json_loadb(res->body.data ? res->body.data : "", res->body.len, 0, NULL);
	const char *msg = json_string_value(json_object_get(j, "error"));
	int code = res->code == 404 ? -ENOENT :
		   res->code == 409 ? -EEXIST :
		   res->code >= 400 && res->code < 500 ? -EINVAL : -EIO;

	co_error_set(&op->err, code, "kubesim %s: %ld %.300s", what, res->code,
		     msg ? msg : "unexpected answer");
	json_decref(j);
	finish(op, code, NULL);
}

static void got_cluster(struct op *op, const struct co_http_response *res)
{
	json_t *ks = NULL, *d = NULL;
	const char *image;
	int rc;

	if (co_http_response_json(res, &ks, &op->err) < 0) {
		finish(op, -EPROTO, NULL);
		return;
	}
	switch (op->state) {
	case ST_LOOKUP:
		image = json_string_value(json_object_get(ks, "image"));
		if (!image || strcmp(image, op->image) != 0) {
			co_error_set(&op->err, -EEXIST,
				     "cluster '%s' exists with image '%s', not '%s'", op->name,
				     image ? image : "?", op->image);
			finish(op, -EEXIST, NULL);
			break;
		}
		/* it may be ready already */
		/* FALLTHROUGH */
	case ST_POST:
	case ST_WAIT:
		set_state(op, ST_WAIT);
		if (!json_is_true(json_object_get(ks, "ready"))) {
			schedule_poll(op);
			break;
		}
		rc = describe(ks, 1, &d, &op->err);
		finish(op, rc, d);
		break;
	default:
		rc = describe(ks, 1, &d, &op->err);
		finish(op, rc, d);
		break;
	}
	json_decref(ks);
}

static void got_list(struct op *op, const struct co_http_response *res)
{
	json_t *ks = NULL, *arr, *c, *out;
	size_t i;

	if (co_http_response_json(res, &ks, &op->err) < 0) {
		finish(op, -EPROTO, NULL);
		return;
	}
	arr = json_object_get(ks, "clusters");
	if (!json_is_array(arr)) {
		json_decref(ks);
		fail(op, -EPROTO, "kubesim list: no \"clusters\" array");
		return;
	}
	out = json_array();
	json_array_foreach(arr, i, c) {
		json_t *d;

		if (describe(c, 0, &d, &op->err) == 0)
			json_array_append_new(out, d);
	}
	co_error_clear(&op->err);
	json_decref(ks);
	finish(op, 0, out);
}

static void on_response(struct co_http_response *res, void *data)
{
	struct op *op = data;

	if (res->status < 0) {
		co_error_copy(&op->err, &res->err);
		co_error_prefix(&op->err, "kubesim at '%s'", op->base_url);
		finish(op, res->status, NULL);
		return;
	}
	switch (op->kind) {
	case OP_CREATE:
		if (op->state == ST_LOOKUP && res->code == 404) {
			set_state(op, ST_POST);
			advance(op);
		} else if (op->state == ST_POST && res->code == 409 && !op->retried_conflict) {
			/* created meanwhile by someone else: judge it like an existing one */
			op->retried_conflict = 1;
			set_state(op, ST_LOOKUP);
			advance(op);
		} else if (res->code == 200 || res->code == 201) {
			got_cluster(op, res);
		} else {
			answer_error(op, res, op->state == ST_POST ? "create" : "get");
		}
		break;
	case OP_GET:
		if (res->code == 200)
			got_cluster(op, res);
		else
			answer_error(op, res, "get");
		break;
	case OP_LIST:
		if (res->code == 200)
			got_list(op, res);
		else
			answer_error(op, res, "list");
		break;
	case OP_DELETE:
		if (res->code == 200 || res->code == 404)
			finish(op, 0, json_pack("{s:s, s:b}", "name", op->name, "existed",
						res->code == 200));
		else
			answer_error(op, res, "delete");
		break;
	}
}

static int step(struct op *op)
{
	char *path = op->name ? co_asprintf("/clusters/%s", op->name) : NULL;
	json_t *body;
	int rc = 0;

	switch (op->state) {
	case ST_LOOKUP:
		rc = request(op, "GET", path, NULL);
		break;
	case ST_POST:
		body = json_pack("{s:s, s:s}", "name", op->name, "image", op->image);
		if (op->port > 0)
			json_object_set_new(body, "ingressPort", json_integer(op->port));
		rc = request(op, "POST", "/clusters", body);
		json_decref(body);
		break;
	case ST_REQUEST:
		if (op->kind == OP_LIST)
			rc = request(op, "GET", "/clusters", NULL);
		else
			rc = request(op, op->kind == OP_DELETE ? "DELETE" : "GET", path, NULL);
		break;
	case ST_WAIT:
	case ST_DONE:
		break;
	}
	free(path);
	return rc;
}

static int control_url(struct sim *s, char **ret, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	char *path;
	int rc;

	if (s->url) {
		*ret = co_strdup(s->url);
		return 0;
	}
	path = co_asprintf("%s/kubesim/kubesim.url", s->base.state_dir);
	rc = co_fs_read(path, SIM_URL_MAX, &b, err);
	if (rc < 0) {
		co_error_set(err, rc, "kubesim is not running: no control URL in '%s'", path);
		free(path);
		co_buf_release(&b);
		return rc;
	}
	free(path);
	b.len = strcspn(co_buf_cstr(&b), "\r\n");
	if (b.len == 0 || strncmp(co_buf_cstr(&b), "http://", 7) != 0) {
		co_buf_release(&b);
		return co_error_set(err, -EINVAL, "kubesim URL file holds no http:// URL");
	}
	*ret = co_strndup(co_buf_cstr(&b), b.len);
	co_buf_release(&b);
	return 0;
}

static int start(struct co_provider *p, enum op_kind kind, const char *name,
		 const struct co_provider_spec *spec, co_provider_cb cb, void *data,
		 struct co_error *err)
{
	struct sim *s = (struct sim *)p;
	struct op *op;
	char *url = NULL;
	int rc;

	if (kind != OP_LIST && !co_provider_name_valid(name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    name ? name : "");
	rc = control_url(s, &url, err);
	if (rc < 0)
		return rc;
	op = co_calloc(1, sizeof(*op));
	op->sim = s;
	op->kind = kind;
	op->base_url = url;
	op->name = name ? co_strdup(name) : NULL;
	op->cb = cb;
	op->data = data;
	if (spec) {
		op->image = co_strdup(spec->image);
		op->port = spec->port;
	}
	op->state = kind == OP_CREATE ? ST_LOOKUP : ST_REQUEST;
	op->deadline_ms = co_time_mono_ms() + co_time_scaled(SIM_READY_DEADLINE_MS);
	rc = step(op);
	if (rc < 0) {
		/* nothing started: report synchronously, the callback never runs */
		co_error_copy(err, &op->err);
		op_free(op);
		return rc;
	}
	return 0;
}

static int sim_create(struct co_provider *p, const json_t *spec, co_provider_cb cb,
		      void *data, struct co_error *err)
{
	struct co_provider_spec s;
	char *version;
	int rc = co_provider_spec_parse(spec, &s, err);

	if (rc < 0)
		return rc;
	version = co_provider_version_from_image(s.image);
	if (!version)
		return co_error_set(err, -EINVAL, "image '%s' has no Kubernetes version tag",
				    s.image);
	free(version);
	return start(p, OP_CREATE, s.name, &s, cb, data, err);
}

static int sim_remove(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		      struct co_error *err)
{
	return start(p, OP_DELETE, name, NULL, cb, data, err);
}

static int sim_get(struct co_provider *p, const char *name, co_provider_cb cb, void *data,
		   struct co_error *err)
{
	return start(p, OP_GET, name, NULL, cb, data, err);
}

static int sim_list(struct co_provider *p, co_provider_cb cb, void *data,
		    struct co_error *err)
{
	return start(p, OP_LIST, NULL, NULL, cb, data, err);
}

static void sim_free(struct co_provider *p)
{
	struct sim *s = (struct sim *)p;

	co_provider_base_release(p);
	free(s->url);
	free(s);
}

static const struct co_provider_ops sim_ops = {
	.name = "sim",
	.caps = CO_PROVIDER_CAP_INGRESS_PORT | CO_PROVIDER_CAP_LIST | CO_PROVIDER_CAP_FAULTS,
	.create = sim_create,
	.remove = sim_remove,
	.get = sim_get,
	.list = sim_list,
	.free = sim_free,
};

int co_provider_sim_new(struct co_provider **ret, uv_loop_t *loop,
			struct co_http_client *http, const struct co_provider_opts *opts,
			struct co_error *err)
{
	struct sim *s;

	if (!http)
		return co_error_set(err, -EINVAL, "provider 'sim' needs an HTTP client");
	s = co_calloc(1, sizeof(*s));
	co_provider_base_init(&s->base, &sim_ops, loop, http, opts->state_dir);
	if (opts->sim_url && *opts->sim_url) {
		size_t n = strlen(opts->sim_url);

		while (n > 0 && opts->sim_url[n - 1] == '/')
			n--;
		s->url = co_strndup(opts->sim_url, n);
	}
	*ret = &s->base;
	return 0;
}
