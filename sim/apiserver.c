/*
 * The Kubernetes API server of one simulated cluster (contract in apiserver.h).
 *
 * One fallback handler parses every path itself: the Kubernetes URL space (group,
 * version, optional namespace, resource, name, subresource) is regular enough that a
 * small parser reads better than two dozen route patterns. A request goes through
 * authentication, readiness, the injected faults (latency is a uv timer before the
 * request is handled, error rate a 500 Status), then resolution against the registry:
 * an unknown or no longer served group/version/resource is a 404 with the API
 * server's own "the server could not find the requested resource".
 *
 * Objects are stored version-agnostic; on the way out each one is a shallow copy with
 * the apiVersion of the request and the kind of the resource. When the client asks for
 * a Table (kubectl get does), lists, single objects and watch events are rendered as
 * meta.k8s.io/v1 Tables with the Name and Age columns the API server uses for kinds
 * without printer columns; anything else gets plain JSON.
 *
 * Watches are chunked responses fed by ks_store watch callbacks, one JSON event per
 * line; they end at timeoutSeconds, when the client goes away, when the client reads
 * too slowly (more than WATCH_MAX_PENDING queued), or when the server closes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/time.h"
#include "base/yaml.h"
#include "net/http-server.h"
#include "sim/apiserver.h"

#define DEFAULT_MAX_BODY (3u * 1024 * 1024)
#define WATCH_MAX_PENDING (16u * 1024 * 1024)
#define WATCH_DEFAULT_TIMEOUT_S 1800
#define MAX_SEGMENTS 12

struct delayed;
struct watch;

struct ks_apiserver {
	uv_loop_t *loop;
	struct co_http_server *http;
	char *token;
	char *git_version;
	int major, minor;
	struct ks_store *store;
	struct ks_registry *reg;
	const struct ks_cluster_state *state;
	size_t max_body;
	uint64_t requests;
	struct delayed *delayed;
	struct watch *watches;
	bool closing;
	void (*close_cb)(void *data);
	void *close_data;
};

/* A request held back by the latency fault. */
struct delayed {
	uv_timer_t timer;
	struct ks_apiserver *srv;
	struct co_http_req *req; /* NULL once the client went away */
	struct delayed *next, **pprev;
};

/* An open watch response. */
struct watch {
	struct ks_apiserver *srv;
	struct co_http_req *req;
	struct ks_watch *sw;
	uv_timer_t *timeout;  /* heap, freed in its close callback */
	uv_timer_t *bookmark; /* heap, NULL without allowWatchBookmarks */
	char *api_version;
	const struct ks_resource *res;
	bool table;
	bool starting; /* inside ks_store_watch(): release is deferred */
	bool ended;
	struct watch *next, **pprev;
};

/* A parsed request path. */
struct kpath {
	char *segs[MAX_SEGMENTS];
	size_t n;
	const char *group;   /* "" core */
	const char *version;
	const char *ns;      /* NULL cluster path */
	const char *resource;
	const char *name;    /* NULL collection */
	const char *sub;     /* NULL or "status", ... */
};

static void handle(struct co_http_req *req, void *data);

/* ---- Status answers ---- */

static json_t *status_obj(int http, const char *reason, const char *msg,
			  const struct ks_resource *res, const char *name)
{
	json_t *st = json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:i}", "kind", "Status",
			       "apiVersion", "v1", "metadata", "status", "Failure", "message",
			       msg, "reason", reason, "code", http);
	if (res || name) {
		json_t *d = json_object();
		if (name)
			json_object_set_new(d, "name", json_string(name));
		if (res) {
			json_object_set_new(d, "group", json_string(res->group));
			json_object_set_new(d, "kind", json_string(res->plural));
		}
		json_object_set_new(st, "details", d);
	}
	return st;
}

static void respond_status(struct co_http_req *req, int http, const char *reason,
			   const char *msg, const struct ks_resource *res, const char *name)
{
	co_http_respond_json(req, http, status_obj(http, reason, msg, res, name));
}

static void respond_error(struct co_http_req *req, int code, const char *msg,
			  const struct ks_resource *res, const char *name)
{
	int http;
	const char *reason = ks_store_status_reason(code, &http);
	respond_status(req, http, reason, msg, res, name);
}

static void not_found_path(struct co_http_req *req)
{
	respond_status(req, 404, "NotFound", "the server could not find the requested resource",
		       NULL, NULL);
}

/* ---- rendering ---- */

static char *api_version_of(const struct ks_resource *r)
{
	return r->group[0] ? co_asprintf("%s/%s", r->group, r->version) : co_strdup(r->version);
}

/* Shallow copy of a stored object with the request's apiVersion and kind. */
static json_t *present(const json_t *obj, const struct ks_resource *r, const char *av)
{
	json_t *o = json_copy((json_t *)obj);
	json_object_set_new(o, "apiVersion", json_string(av));
	json_object_set_new(o, "kind", json_string(r->kind));
	return o;
}

static bool wants_table(struct co_http_req *req)
{
	const char *accept = co_http_req_header(req, "Accept");
	return accept && strstr(accept, "as=Table");
}

static void format_age(const char *created, char *buf, size_t n)
{
	int64_t ms;
	if (!created || co_time_parse_rfc3339(created, &ms) < 0) {
		snprintf(buf, n, "<unknown>");
		return;
	}
	int64_t s = (co_time_wall_ms() - ms) / 1000;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, n, "%llds", (long long)s);
	else if (s < 600)
		snprintf(buf, n, "%lldm%llds", (long long)(s / 60), (long long)(s % 60));
	else if (s < 3 * 3600)
		snprintf(buf, n, "%lldm", (long long)(s / 60));
	else if (s < 48 * 3600)
		snprintf(buf, n, "%lldh", (long long)(s / 3600));
	else
		snprintf(buf, n, "%lldd", (long long)(s / 86400));
}

static json_t *table_row(const json_t *obj)
{
	json_t *m = json_object_get(obj, "metadata");
	char age[32];
	format_age(json_string_value(json_object_get(m, "creationTimestamp")), age,
		   sizeof(age));
	const char *name = json_string_value(json_object_get(m, "name"));
	return json_pack("{s:[s,s], s:{s:s, s:s, s:O}}", "cells", name ? name : "", age,
			 "object", "kind", "PartialObjectMetadata", "apiVersion",
			 "meta.k8s.io/v1", "metadata", m);
}

static json_t *table_of(const json_t *items, uint64_t rv)
{
	json_t *rows = json_array();
	size_t i;
	json_t *o;
	json_array_foreach(items, i, o)
		json_array_append_new(rows, table_row(o));
	char rvs[24];
	snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
	return json_pack(
		"{s:s, s:s, s:{s:s}, s:[{s:s, s:s, s:s, s:s, s:i}, {s:s, s:s, s:s, s:s, s:i}], "
		"s:o}",
		"kind", "Table", "apiVersion", "meta.k8s.io/v1", "metadata", "resourceVersion",
		rvs, "columnDefinitions", "name", "Name", "type", "string", "format", "name",
		"description", "Name must be unique within a namespace.", "priority", 0,
		"name", "Age", "type", "string", "format", "", "description",
		"CreationTimestamp is a timestamp representing the server time when this "
		"object was created.", "priority", 0, "rows", rows);
}

/* ---- path parsing ---- */

static void kpath_release(struct kpath *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->segs[i]);
}

/* Split path into segments; -1 on too many or empty segments. */
static int split_path(const char *path, struct kpath *p)
{
	memset(p, 0, sizeof(*p));
	const char *s = path;
	while (*s == '/')
		s++;
	while (*s) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 0 || p->n == MAX_SEGMENTS)
			return -1;
		p->segs[p->n++] = co_strndup(s, len);
		s += len;
		while (*s == '/')
			s++;
	}
	return 0;
}

/* After the group/version prefix: [namespaces/{ns}/]{resource}[/{name}[/{sub}]]. */
static int parse_resource_path(struct kpath *p, size_t at)
{
	size_t rest = p->n - at;
	char **s = p->segs + at;
	if (rest >= 3 && !strcmp(s[0], "namespaces") && strcmp(s[2], "status") &&
	    strcmp(s[2], "finalize")) {
		p->ns = s[1];
		s += 2;
		rest -= 2;
	}
	if (rest < 1 || rest > 3)
		return -1;
	p->resource = s[0];
	p->name = rest >= 2 ? s[1] : NULL;
	p->sub = rest == 3 ? s[2] : NULL;
	return 0;
}

/* ---- small request helpers ---- */

static bool flag_param(struct co_http_req *req, const char *name)
{
	const char *v = co_http_req_query_param(req, name);
	return v && (!strcmp(v, "1") || !strcmp(v, "true"));
}

static unsigned write_flags(struct co_http_req *req, const struct ks_resource *r,
			    bool status_path)
{
	unsigned flags = 0;
	const char *dry = co_http_req_query_param(req, "dryRun");
	if (dry && !strcmp(dry, "All"))
		flags |= KS_WRITE_DRY_RUN;
	if (r->has_status && !status_path)
		flags |= KS_WRITE_KEEP_STATUS;
	return flags;
}

/* fieldManager, else the user agent's program name (like the API server). */
static char *manager_of(struct co_http_req *req)
{
	const char *fm = co_http_req_query_param(req, "fieldManager");
	if (fm && *fm)
		return co_strndup(fm, 128);
	const char *ua = co_http_req_header(req, "User-Agent");
	if (ua && *ua)
		return co_strndup(ua, strcspn(ua, "/ "));
	return co_strdup("unknown");
}

/* Decode a JSON (or, with yaml_ok, YAML) body. NULL with a 400 already sent. */
static json_t *read_body(struct co_http_req *req, bool yaml_ok)
{
	size_t len;
	const char *body = co_http_req_body(req, &len);
	json_error_t jerr;
	json_t *v;
	if (!body || len == 0) {
		respond_status(req, 400, "BadRequest", "the request body is empty", NULL, NULL);
		return NULL;
	}
	if (yaml_ok) {
		struct co_error err = CO_ERROR_INIT;
		if (co_yaml_load_one(&v, body, len, "body", &err) < 0) {
			char *msg = co_asprintf("error decoding YAML: %s", err.msg);
			respond_status(req, 400, "BadRequest", msg, NULL, NULL);
			free(msg);
			return NULL;
		}
	} else {
		v = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
		if (!v) {
			char *msg = co_asprintf("couldn't get version/kind; json parse error: %s",
						jerr.text);
			respond_status(req, 400, "BadRequest", msg, NULL, NULL);
			free(msg);
			return NULL;
		}
	}
	if (!json_is_object(v)) {
		json_decref(v);
		respond_status(req, 400, "BadRequest", "the request body is not an object", NULL,
			       NULL);
		return NULL;
	}
	return v;
}

/* The body's apiVersion/kind must name the resource of the URL (a missing one is
 * taken from the URL). false with a 400 sent. */
static bool check_type(struct co_http_req *req, json_t *obj, const struct ks_resource *r,
		       const char *av)
{
	const char *bav = json_string_value(json_object_get(obj, "apiVersion"));
	const char *bkind = json_string_value(json_object_get(obj, "kind"));
	char *msg = NULL;
	if (bav && strcmp(bav, av))
		msg = co_asprintf("the API version in the data (%s) does not match the expected "
				  "API version (%s)", bav, av);
	else if (bkind && strcmp(bkind, r->kind))
		msg = co_asprintf("the kind in the data (%s) does not match the expected kind "
				  "(%s)", bkind, r->kind);
	if (msg) {
		respond_status(req, 400, "BadRequest", msg, r, NULL);
		free(msg);
		return false;
	}
	if (!bav)
		json_object_set_new(obj, "apiVersion", json_string(av));
	if (!bkind)
		json_object_set_new(obj, "kind", json_string(r->kind));
	return true;
}

static void respond_obj(struct co_http_req *req, int http, const json_t *obj,
			const struct ks_resource *r, const char *av)
{
	json_t *o = present(obj, r, av);
	if (wants_table(req)) {
		json_t *items = json_pack("[O]", o);
		const char *rvs = json_string_value(
			json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
		json_decref(o);
		o = table_of(items, rvs ? strtoull(rvs, NULL, 10) : 0);
		json_decref(items);
	}
	co_http_respond_json(req, http, o);
}

/* ---- watch ---- */

static void watch_timer_close_cb(uv_handle_t *h)
{
	free(h);
}

/* Release everything but the response; the caller ends it (or the client is gone). */
static void watch_release(struct watch *w)
{
	ks_watch_cancel(w->sw);
	w->sw = NULL;
	if (w->timeout) {
		uv_timer_stop(w->timeout);
		uv_close((uv_handle_t *)w->timeout, watch_timer_close_cb);
		w->timeout = NULL;
	}
	if (w->bookmark) {
		uv_timer_stop(w->bookmark);
		uv_close((uv_handle_t *)w->bookmark, watch_timer_close_cb);
		w->bookmark = NULL;
	}
	if (w->pprev) {
		*w->pprev = w->next;
		if (w->next)
			w->next->pprev = w->pprev;
		w->pprev = NULL;
	}
	free(w->api_version);
	free(w);
}

static void watch_end(struct watch *w)
{
	if (w->ended)
		return;
	w->ended = true;
	co_http_req_on_close(w->req, NULL, NULL);
	co_http_req_set_data(w->req, NULL);
	co_http_end(w->req);
	if (!w->starting)
		watch_release(w);
}

static void watch_client_gone(struct co_http_req *req, void *data)
{
	struct watch *w = data;
	w->ended = true;
	watch_release(w);
}

/* Send one event (obj stolen). Returns -1 when the watch ended (w is gone then, unless
 * it is starting). */
static int watch_send(struct watch *w, const char *type, json_t *obj)
{
	json_t *ev = json_pack("{s:s, s:o}", "type", type, "object", obj);
	char *line = json_dumps(ev, JSON_COMPACT);
	json_decref(ev);
	size_t len = strlen(line);
	line[len] = '\n';
	int rc = co_http_write(w->req, line, len + 1);
	free(line);
	if (rc < 0 || co_http_pending_bytes(w->req) > WATCH_MAX_PENDING) {
		watch_end(w); /* slow or gone: the client re-lists, as with a real server */
		return -1;
	}
	return 0;
}

static void watch_event_cb(const struct ks_event *ev, void *data)
{
	struct watch *w = data;
	if (w->ended)
		return;
	json_t *o = present(ev->obj, w->res, w->api_version);
	if (w->table) {
		json_t *items = json_pack("[o]", o);
		o = table_of(items, ev->rv);
		json_decref(items);
	}
	watch_send(w, ks_event_type_name(ev->type), o);
}

static void watch_timeout_cb(uv_timer_t *t)
{
	watch_end(t->data);
}

static void watch_bookmark_cb(uv_timer_t *t)
{
	struct watch *w = t->data;
	char rvs[24];
	snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)ks_store_rv(w->srv->store));
	watch_send(w, "BOOKMARK",
		   json_pack("{s:s, s:s, s:{s:s}}", "kind", w->res->kind, "apiVersion",
			     w->api_version, "metadata", "resourceVersion", rvs));
}

static void start_watch(struct ks_apiserver *srv, struct co_http_req *req,
			const struct kpath *p, const struct ks_resource *r)
{
	struct co_error err = CO_ERROR_INIT;
	const char *rvs = co_http_req_query_param(req, "resourceVersion");
	const char *tos = co_http_req_query_param(req, "timeoutSeconds");
	uint64_t from = 0;
	long timeout_s = WATCH_DEFAULT_TIMEOUT_S;
	char *end;
	if (rvs && *rvs) {
		errno = 0;
		from = strtoull(rvs, &end, 10);
		if (*end || errno) {
			respond_status(req, 400, "BadRequest", "invalid resourceVersion", r, NULL);
			return;
		}
	}
	if (tos && *tos) {
		timeout_s = strtol(tos, &end, 10);
		if (*end || timeout_s < 0) {
			respond_status(req, 400, "BadRequest", "invalid timeoutSeconds", r, NULL);
			return;
		}
	}
	struct watch *w = co_calloc(1, sizeof(*w));
	w->srv = srv;
	w->req = req;
	w->res = r;
	w->api_version = api_version_of(r);
	w->table = wants_table(req);
	char *fsel = NULL;
	if (p->name) {
		const char *user = co_http_req_query_param(req, "fieldSelector");
		fsel = user && *user ? co_asprintf("metadata.name=%s,%s", p->name, user)
				     : co_asprintf("metadata.name=%s", p->name);
	}
	struct ks_watch_filter f = {
		.group = r->group,
		.resource = r->plural,
		.ns = p->ns,
		.label_selector = co_http_req_query_param(req, "labelSelector"),
		.field_selector = fsel ? fsel : co_http_req_query_param(req, "fieldSelector"),
	};
	/* validate selectors and the resourceVersion before committing to a 200 */
	struct ks_selector *probe;
	int rc = ks_selector_parse(&probe, 'l', f.label_selector, &err);
	if (rc == 0) {
		ks_selector_free(probe);
		rc = ks_selector_parse(&probe, 'f', f.field_selector, &err);
		if (rc == 0)
			ks_selector_free(probe);
	}
	if (rc < 0) {
		respond_error(req, rc, err.msg, r, NULL);
		free(fsel);
		free(w->api_version);
		free(w);
		return;
	}
	co_http_req_on_close(req, watch_client_gone, w);
	co_http_req_set_data(req, w);
	co_http_begin_chunked(req, 200, "application/json");
	w->next = srv->watches;
	if (w->next)
		w->next->pprev = &w->next;
	w->pprev = &srv->watches;
	srv->watches = w;

	w->timeout = co_malloc(sizeof(*w->timeout));
	uv_timer_init(srv->loop, w->timeout);
	w->timeout->data = w;
	uv_timer_start(w->timeout, watch_timeout_cb, (uint64_t)timeout_s * 1000, 0);
	if (flag_param(req, "allowWatchBookmarks")) {
		uint64_t every = co_time_scaled(60000);
		w->bookmark = co_malloc(sizeof(*w->bookmark));
		uv_timer_init(srv->loop, w->bookmark);
		w->bookmark->data = w;
		uv_timer_start(w->bookmark, watch_bookmark_cb, every, every);
	}
	struct ks_watch *sw = NULL;
	w->starting = true;
	rc = ks_store_watch(&sw, srv->store, &f, from, watch_event_cb, w, &err);
	w->starting = false;
	free(fsel);
	w->sw = sw;
	if (w->ended) {
		/* the client was too slow for the initial events: the response has ended */
		watch_release(w);
		return;
	}
	if (rc < 0) {
		int http;
		const char *reason = ks_store_status_reason(rc, &http);
		if (watch_send(w, "ERROR", status_obj(http, reason, err.msg, NULL, NULL)) == 0)
			watch_end(w);
	}
}

/* ---- resource handlers ---- */

static void do_list(struct ks_apiserver *srv, struct co_http_req *req,
		    const struct kpath *p, const struct ks_resource *r, const char *av)
{
	struct co_error err = CO_ERROR_INIT;
	struct ks_key key = { r->group, r->plural, p->ns, NULL };
	struct ks_list_opts lo = {
		.label_selector = co_http_req_query_param(req, "labelSelector"),
		.field_selector = co_http_req_query_param(req, "fieldSelector"),
	};
	json_t *items;
	uint64_t rv;
	int rc = ks_store_list(srv->store, &key, &lo, &items, &rv, &err);
	if (rc < 0) {
		respond_error(req, rc, err.msg, r, NULL);
		return;
	}
	if (wants_table(req)) {
		co_http_respond_json(req, 200, table_of(items, rv));
		json_decref(items);
		return;
	}
	json_t *out = json_array();
	size_t i;
	json_t *o;
	json_array_foreach(items, i, o)
		json_array_append_new(out, present(o, r, av));
	json_decref(items);
	char rvs[24];
	snprintf(rvs, sizeof(rvs), "%llu", (unsigned long long)rv);
	char *kind = co_asprintf("%sList", r->kind);
	co_http_respond_json(req, 200,
			     json_pack("{s:s, s:s, s:{s:s}, s:o}", "kind", kind, "apiVersion",
				       av, "metadata", "resourceVersion", rvs, "items", out));
	free(kind);
}

static void do_delete_collection(struct ks_apiserver *srv, struct co_http_req *req,
				 const struct kpath *p, const struct ks_resource *r,
				 const char *av)
{
	struct co_error err = CO_ERROR_INIT;
	struct ks_key key = { r->group, r->plural, p->ns, NULL };
	struct ks_list_opts lo = {
		.label_selector = co_http_req_query_param(req, "labelSelector"),
		.field_selector = co_http_req_query_param(req, "fieldSelector"),
	};
	json_t *items, *out = json_array();
	int rc = ks_store_list(srv->store, &key, &lo, &items, NULL, &err);
	if (rc < 0) {
		respond_error(req, rc, err.msg, r, NULL);
		json_decref(out);
		return;
	}
	size_t i;
	json_t *o;
	json_array_foreach(items, i, o) {
		json_t *m = json_object_get(o, "metadata");
		struct ks_key k = { r->group, r->plural,
				    json_string_value(json_object_get(m, "namespace")),
				    json_string_value(json_object_get(m, "name")) };
		if (ks_store_delete(srv->store, &k, write_flags(req, r, false), NULL, NULL) == 0)
			json_array_append_new(out, present(o, r, av));
	}
	json_decref(items);
	char *kind = co_asprintf("%sList", r->kind);
	co_http_respond_json(req, 200, json_pack("{s:s, s:s, s:{}, s:o}", "kind", kind,
						 "apiVersion", av, "metadata", "items", out));
	free(kind);
}

static void do_patch(struct ks_apiserver *srv, struct co_http_req *req,
		     const struct kpath *p, const struct ks_resource *r, const char *av)
{
	struct co_error err = CO_ERROR_INIT;
	const char *ct = co_http_req_header(req, "Content-Type");
	struct ks_key key = { r->group, r->plural, p->ns, p->name };
	bool status = p->sub != NULL;
	json_t *body, *out = NULL;
	int rc;
	char *manager = manager_of(req);
	size_t ctlen = ct ? strcspn(ct, ";") : 0;

	if (ct && ctlen == strlen("application/apply-patch+yaml") &&
	    !strncmp(ct, "application/apply-patch+yaml", ctlen)) {
		if (!co_http_req_query_param(req, "fieldManager")) {
			respond_status(req, 400, "BadRequest",
				       "PATCH, application/apply-patch+yaml requests must specify "
				       "a fieldManager", r, p->name);
			goto out;
		}
		if (!(body = read_body(req, true)))
			goto out;
		if (!check_type(req, body, r, av)) {
			json_decref(body);
			goto out;
		}
		bool created = false;
		if (status) {
			json_t *patch = json_pack("{s:O}", "status",
						  json_object_get(body, "status"));
			rc = ks_store_patch(srv->store, &key, patch, KS_PATCH_MERGE, true,
					    manager, write_flags(req, r, true), &out, &err);
			json_decref(patch);
		} else {
			rc = ks_store_apply(srv->store, &key, body, manager,
					    flag_param(req, "force"), write_flags(req, r, false),
					    &out, &created, &err);
		}
		json_decref(body);
		if (rc < 0)
			respond_error(req, rc, err.msg, r, p->name);
		else
			respond_obj(req, created ? 201 : 200, out, r, av);
		goto out;
	}
	enum ks_patch_type type;
	if (ct && ctlen == strlen("application/merge-patch+json") &&
	    !strncmp(ct, "application/merge-patch+json", ctlen)) {
		type = KS_PATCH_MERGE;
	} else if (ct && ctlen == strlen("application/strategic-merge-patch+json") &&
		   !strncmp(ct, "application/strategic-merge-patch+json", ctlen)) {
		type = KS_PATCH_STRATEGIC;
	} else {
		char *msg = co_asprintf("the body of the request was in an unknown format - "
					"accepted media types include: "
					"application/merge-patch+json, "
					"application/strategic-merge-patch+json, "
					"application/apply-patch+yaml (got '%.64s')",
					ct ? ct : "");
		respond_status(req, 415, "UnsupportedMediaType", msg, r, p->name);
		free(msg);
		goto out;
	}
	if (!(body = read_body(req, false)))
		goto out;
	rc = ks_store_patch(srv->store, &key, body, type, status, manager,
			    write_flags(req, r, status), &out, &err);
	json_decref(body);
	if (rc < 0)
		respond_error(req, rc, err.msg, r, p->name);
	else
		respond_obj(req, 200, out, r, av);
out:
	json_decref(out);
	free(manager);
}

static void handle_resource(struct ks_apiserver *srv, struct co_http_req *req,
			    struct kpath *p)
{
	struct co_error err = CO_ERROR_INIT;
	const char *method = co_http_req_method(req);
	const struct ks_resource *r = ks_registry_find(srv->reg, p->group, p->version,
						       p->resource);
	if (!r || (p->ns && !r->namespaced) || (!p->ns && r->namespaced && p->name) ||
	    (p->sub && (strcmp(p->sub, "status") || !r->has_status))) {
		not_found_path(req);
		return;
	}
	char *av = api_version_of(r);
	struct ks_key key = { r->group, r->plural, p->ns, p->name };
	json_t *body = NULL, *out = NULL;
	int rc;
	size_t blen = 0;
	co_http_req_body(req, &blen);
	if (blen > srv->max_body) {
		respond_status(req, 413, "RequestEntityTooLarge",
			       "the request is too large", r, p->name);
		goto out;
	}
	if (p->name && p->ns && !ks_dns1123_label(p->ns)) {
		respond_status(req, 404, "NotFound", "namespace not found", r, p->name);
		goto out;
	}
	if (!strcmp(method, "GET")) {
		if (!p->name && flag_param(req, "watch")) {
			start_watch(srv, req, p, r);
			goto out;
		}
		if (!p->name) {
			do_list(srv, req, p, r, av);
			goto out;
		}
		rc = ks_store_get(srv->store, &key, &out, &err);
		if (rc < 0)
			respond_error(req, rc, err.msg, r, p->name);
		else
			respond_obj(req, 200, out, r, av);
	} else if (!strcmp(method, "POST") && !p->name) {
		if (!(body = read_body(req, false)) || !check_type(req, body, r, av))
			goto out;
		char *manager = manager_of(req);
		rc = ks_store_create(srv->store, &key, body, manager,
				     write_flags(req, r, false), &out, &err);
		free(manager);
		if (rc < 0)
			respond_error(req, rc, err.msg, r,
				      json_string_value(json_object_get(
					      json_object_get(body, "metadata"), "name")));
		else
			respond_obj(req, 201, out, r, av);
	} else if (!strcmp(method, "PUT") && p->name) {
		if (!(body = read_body(req, false)) || !check_type(req, body, r, av))
			goto out;
		char *manager = manager_of(req);
		if (p->sub)
			rc = ks_store_update_status(srv->store, &key, body, manager,
						    write_flags(req, r, true), &out, &err);
		else
			rc = ks_store_update(srv->store, &key, body, manager,
					     write_flags(req, r, false), &out, &err);
		free(manager);
		if (rc < 0)
			respond_error(req, rc, err.msg, r, p->name);
		else
			respond_obj(req, 200, out, r, av);
	} else if (!strcmp(method, "PATCH") && p->name) {
		do_patch(srv, req, p, r, av);
	} else if (!strcmp(method, "DELETE") && p->name && !p->sub) {
		rc = ks_store_delete(srv->store, &key, write_flags(req, r, false), &out, &err);
		if (rc < 0)
			respond_error(req, rc, err.msg, r, p->name);
		else
			respond_obj(req, 200, out, r, av);
	} else if (!strcmp(method, "DELETE") && !p->name) {
		do_delete_collection(srv, req, p, r, av);
	} else {
		char *msg = co_asprintf("the server does not allow this method on the requested "
					"resource");
		co_http_add_header(req, "Allow", p->name ? "GET, PUT, PATCH, DELETE"
							 : "GET, POST, DELETE");
		respond_status(req, 405, "MethodNotAllowed", msg, r, p->name);
		free(msg);
	}
out:
	json_decref(body);
	json_decref(out);
	free(av);
}

/* ---- discovery and info ---- */

static void handle_version(struct ks_apiserver *srv, struct co_http_req *req)
{
	char major[8], minor[8];
	snprintf(major, sizeof(major), "%d", srv->major);
	snprintf(minor, sizeof(minor), "%d", srv->minor);
	co_http_respond_json(req, 200, json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "major", major, "minor", minor,
		"gitVersion", srv->git_version, "gitCommit",
		"0000000000000000000000000000000000000000", "gitTreeState", "clean",
		"buildDate", "2024-01-01T00:00:00Z", "goVersion", "go1.21.0", "compiler", "gc",
		"platform", "linux/amd64"));
}

/*
 * OpenAPI: the documents carry no schemas. kubectl then finds no group/version in the
 * v3 index, treats server-side field validation as unsupported and falls back to its
 * client-side schema check, which skips kinds the (empty) v2 document does not
 * describe, so manifests are accepted as a server without published schemas would.
 * The v2 document is requested as protobuf: an empty message is zero bytes.
 */
static void handle_openapi(struct ks_apiserver *srv, struct co_http_req *req,
			   const char *path)
{
	const char *accept = co_http_req_header(req, "Accept");
	if (!strcmp(path, "/openapi/v3")) {
		co_http_respond_json(req, 200, json_pack("{s:{}}", "paths"));
	} else if (accept && strstr(accept, "protobuf")) {
		co_http_respond(req, 200,
				"application/com.github.proto-openapi.spec.v2.v1.0+protobuf", "",
				0);
	} else {
		co_http_respond_json(req, 200, json_pack(
			"{s:s, s:{s:s, s:s}, s:{}, s:{}}", "swagger", "2.0", "info", "title",
			"Kubernetes", "version", srv->git_version, "paths", "definitions"));
	}
}

static void handle_discovery(struct ks_apiserver *srv, struct co_http_req *req,
			     struct kpath *p)
{
	json_t *doc = NULL;
	bool core = !strcmp(p->segs[0], "api");
	if (core && p->n == 1) {
		char addr[64];
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", co_http_server_port(srv->http));
		doc = ks_registry_api_versions(srv->reg, addr);
	} else if (core && p->n == 2) {
		doc = ks_registry_resource_list(srv->reg, "", p->segs[1]);
	} else if (!core && p->n == 1) {
		doc = ks_registry_group_list(srv->reg);
	} else if (!core && p->n == 2) {
		doc = ks_registry_group(srv->reg, p->segs[1]);
	} else if (!core && p->n == 3) {
		doc = ks_registry_resource_list(srv->reg, p->segs[1], p->segs[2]);
	}
	if (!doc) {
		not_found_path(req);
		return;
	}
	/* plain (non-aggregated) discovery: kubectl falls back to it when the response is
	 * not an APIGroupDiscoveryList */
	co_http_respond_json(req, 200, doc);
}

static bool authorized(struct ks_apiserver *srv, struct co_http_req *req)
{
	const char *auth = co_http_req_header(req, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7))
		return false;
	const char *tok = auth + 7;
	size_t a = strlen(tok), b = strlen(srv->token);
	unsigned char diff = a != b;
	for (size_t i = 0; i < a && i < b; i++)
		diff |= (unsigned char)(tok[i] ^ srv->token[i]);
	return diff == 0;
}

static void dispatch(struct ks_apiserver *srv, struct co_http_req *req)
{
	struct kpath p;
	const char *path = co_http_req_path(req);
	srv->requests++;

	if (!strcmp(path, "/healthz") || !strcmp(path, "/livez") || !strcmp(path, "/readyz")) {
		if (!strcmp(path, "/livez") || srv->state->ready)
			co_http_respond_text(req, 200, "ok");
		else
			co_http_respond_text(req, 500, "[-]cluster not ready\n%s check failed",
					     path + 1);
		return;
	}
	if (!authorized(srv, req)) {
		respond_status(req, 401, "Unauthorized", "Unauthorized", NULL, NULL);
		return;
	}
	if (!srv->state->ready) {
		respond_status(req, 503, "ServiceUnavailable",
			       "the server is currently unable to handle the request", NULL,
			       NULL);
		return;
	}
	double rate = srv->state->faults.api_error_rate;
	if (rate > 0 && (double)rand() / ((double)RAND_MAX + 1.0) < rate) {
		respond_status(req, 500, "InternalError",
			       "Internal error occurred: injected API fault", NULL, NULL);
		return;
	}
	if (!strcmp(path, "/version")) {
		handle_version(srv, req);
		return;
	}
	if (!strcmp(path, "/openapi/v2") || !strcmp(path, "/openapi/v3")) {
		handle_openapi(srv, req, path);
		return;
	}
	if (split_path(path, &p) < 0 || p.n == 0) {
		kpath_release(&p);
		not_found_path(req);
		return;
	}
	bool core = !strcmp(p.segs[0], "api");
	bool apis = !strcmp(p.segs[0], "apis");
	if ((core && p.n <= 2) || (apis && p.n <= 3)) {
		if (strcmp(co_http_req_method(req), "GET"))
			respond_status(req, 405, "MethodNotAllowed",
				       "the server does not allow this method on the requested "
				       "resource", NULL, NULL);
		else
			handle_discovery(srv, req, &p);
		kpath_release(&p);
		return;
	}
	if (core && !strcmp(p.segs[1], "v1") && parse_resource_path(&p, 2) == 0) {
		p.group = "";
		p.version = "v1";
		handle_resource(srv, req, &p);
	} else if (apis && parse_resource_path(&p, 3) == 0) {
		p.group = p.segs[1];
		p.version = p.segs[2];
		handle_resource(srv, req, &p);
	} else {
		not_found_path(req);
	}
	kpath_release(&p);
}

/* ---- latency fault ---- */

static void delayed_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void delayed_unlink(struct delayed *d)
{
	if (d->pprev) {
		*d->pprev = d->next;
		if (d->next)
			d->next->pprev = d->pprev;
		d->pprev = NULL;
	}
}

static void delayed_fire(uv_timer_t *t)
{
	struct delayed *d = t->data;
	delayed_unlink(d);
	if (d->req) {
		co_http_req_on_close(d->req, NULL, NULL);
		if (d->srv->closing)
			respond_status(d->req, 503, "ServiceUnavailable", "server shutting down",
				       NULL, NULL);
		else
			dispatch(d->srv, d->req);
	}
	uv_close((uv_handle_t *)&d->timer, delayed_close_cb);
}

static void delayed_client_gone(struct co_http_req *req, void *data)
{
	struct delayed *d = data;
	d->req = NULL;
}

static void handle(struct co_http_req *req, void *data)
{
	struct ks_apiserver *srv = data;
	uint64_t lat = srv->state->faults.api_latency_ms;
	const char *path = co_http_req_path(req);
	bool health = !strcmp(path, "/healthz") || !strcmp(path, "/livez") ||
		      !strcmp(path, "/readyz");
	if (lat == 0 || health || srv->closing) {
		dispatch(srv, req);
		return;
	}
	struct delayed *d = co_calloc(1, sizeof(*d));
	d->srv = srv;
	d->req = req;
	uv_timer_init(srv->loop, &d->timer);
	d->timer.data = d;
	d->next = srv->delayed;
	if (d->next)
		d->next->pprev = &d->next;
	d->pprev = &srv->delayed;
	srv->delayed = d;
	co_http_req_on_close(req, delayed_client_gone, d);
	uv_timer_start(&d->timer, delayed_fire, lat, 0);
}

/* ---- lifecycle ---- */

int ks_apiserver_new(struct ks_apiserver **ret, uv_loop_t *loop,
		     const struct ks_apiserver_opts *opts, struct co_error *err)
{
	struct ks_apiserver *srv = co_calloc(1, sizeof(*srv));
	size_t max_body = opts->max_body_bytes ? opts->max_body_bytes : DEFAULT_MAX_BODY;
	struct co_http_server_opts hopts = {
		.host = "127.0.0.1",
		.port = opts->port,
		/* the transport takes a little more so that a too large body still gets a
		 * Kubernetes Status from the handler */
		.max_body_bytes = max_body + 1024 * 1024,
		.max_header_bytes = 64 * 1024,
	};
	int rc = co_http_server_new(&srv->http, loop, &hopts, err);
	if (rc < 0) {
		free(srv);
		return rc;
	}
	srv->loop = loop;
	srv->token = co_strdup(opts->token);
	srv->git_version = co_strdup(opts->git_version);
	srv->major = opts->major;
	srv->minor = opts->minor;
	srv->store = opts->store;
	srv->reg = opts->reg;
	srv->state = opts->state;
	srv->max_body = max_body;
	co_http_server_fallback(srv->http, handle, srv);
	*ret = srv;
	return 0;
}

int ks_apiserver_port(const struct ks_apiserver *srv)
{
	return co_http_server_port(srv->http);
}

uint64_t ks_apiserver_requests(const struct ks_apiserver *srv)
{
	return srv->requests;
}

static void http_closed(void *data)
{
	struct ks_apiserver *srv = data;
	void (*cb)(void *) = srv->close_cb;
	void *cb_data = srv->close_data;
	free(srv->token);
	free(srv->git_version);
	free(srv);
	if (cb)
		cb(cb_data);
}

void ks_apiserver_close(struct ks_apiserver *srv, void (*cb)(void *data), void *data)
{
	srv->closing = true;
	srv->close_cb = cb;
	srv->close_data = data;
	while (srv->watches)
		watch_end(srv->watches);
	/* answer held-back requests now so the server can drain them */
	while (srv->delayed) {
		struct delayed *d = srv->delayed;
		delayed_unlink(d);
		uv_timer_stop(&d->timer);
		if (d->req) {
			co_http_req_on_close(d->req, NULL, NULL);
			respond_status(d->req, 503, "ServiceUnavailable", "server shutting down",
				       NULL, NULL);
		}
		uv_close((uv_handle_t *)&d->timer, delayed_close_cb);
	}
	co_http_server_close(srv->http, http_closed, srv);
}
