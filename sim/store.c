/*
 * The object store of one simulated cluster (contract in store.h).
 *
 * Layout: a short list of kinds, one per (group, resource) ever written, each holding a
 * jansson object that maps "namespace\x01name" to the stored object. The separator
 * sorts below every character a name may contain, so sorting keys orders objects by
 * namespace and then name, as the API server lists them. Kinds are never freed while
 * the store lives, so events can point at them.
 *
 * Every write builds a candidate object from the stored one (which is never touched),
 * fills in the server-managed metadata, and commits it only if it differs from the
 * stored object. A commit bumps the cluster-wide resourceVersion, swaps the object in,
 * records the event in a ring (for watch resume) and in a FIFO that is drained by the
 * outermost commit: watchers that write from their callback therefore never see events
 * out of order.
 *
 * Server-side apply keeps per-manager field sets in metadata.managedFields in
 * Kubernetes' FieldsV1 shape. Internally a field set is handled as the list of its leaf
 * paths, each an array of path elements ("f:spec", "k:{\"name\":\"web\"}", ".").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "base/fs.h"
#include "base/buf.h"
#include "base/time.h"
#include "sim/store.h"

struct kind {
	char *group;
	char *resource;
	json_t *objs; /* "ns\x01name" -> object */
	struct kind *next;
};

struct event {
	enum ks_event_type type;
	struct kind *kind;
	uint64_t rv;
	json_t *obj; /* owned reference */
};

struct flush_timer {
	uv_timer_t timer;
	struct ks_store *store; /* NULL once the store is freed */
};

struct ks_watch {
	struct ks_store *store;
	char *group, *resource, *ns;
	struct ks_selector *labels, *fields;
	ks_watch_cb cb;
	void *data;
	uint64_t seen_rv;
	bool cancelled;
	struct ks_watch *next;
};

struct ks_store {
	uv_loop_t *loop;
	char *path;
	uint64_t debounce_ms;
	struct flush_timer *timer;
	bool timer_armed;
	bool dirty;

	uint64_t rv;
	size_t count;
	struct kind *kinds;

	struct event history[KS_STORE_HISTORY];
	size_t hist_start, hist_len;
	uint64_t hist_floor; /* events with rv <= floor may be missing from the ring */

	struct event *queue;
	size_t queue_len, queue_cap, queue_pos;
	bool dispatching;

	struct ks_watch *watches;
	bool watches_dirty; /* some watch is cancelled and waits to be unlinked */
};

/* ---- small helpers ---- */

static const char *str_or(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

static const char *ns_of(const struct ks_key *key)
{
	return key->ns ? key->ns : "";
}

static const char *kind_label(const struct ks_key *key, struct co_buf *b)
{
	co_buf_reset(b);
	co_buf_puts(b, key->resource);
	if (key->group && key->group[0]) {
		co_buf_putc(b, '.');
		co_buf_puts(b, key->group);
	}
	return co_buf_cstr(b);
}

static int fail_key(struct co_error *err, int code, const struct ks_key *key,
		    const char *what)
{
	struct co_buf b = CO_BUF_INIT;
	kind_label(key, &b);
	co_error_set(err, code, "%s \"%s\" %s", co_buf_cstr(&b), str_or(key->name, ""),
		     what);
	co_buf_release(&b);
	return code;
}

static char *obj_key(const char *ns, const char *name)
{
	return co_asprintf("%s\x01%s", ns ? ns : "", name);
}

static const char *meta_str(const json_t *obj, const char *field)
{
	json_t *m = json_object_get(obj, "metadata");
	return json_string_value(json_object_get(m, field));
}

static json_t *meta_of(json_t *obj)
{
	json_t *m = json_object_get(obj, "metadata");
	if (!json_is_object(m)) {
		m = json_object();
		json_object_set_new(obj, "metadata", m);
	}
	return m;
}

static void new_uid(char *buf)
{
	unsigned char r[16];
	if (RAND_bytes(r, sizeof(r)) != 1) {
		uint64_t t = co_time_mono_ns();
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] = (unsigned char)(t >> (8 * (i % 8))) ^ (unsigned char)rand();
	}
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(buf, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
		 r[12], r[13], r[14], r[15]);
}

static const char *now_rfc3339(char *buf, size_t n)
{
	return co_time_rfc3339(co_time_wall_ms(), buf, n);
}

bool ks_dns1123_label(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !(c == '-' && i > 0 && i < n - 1))
			return false;
	}
	return true;
}

bool ks_dns1123_subdomain(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 253)
		return false;
	const char *p = s;
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t len = dot ? (size_t)(dot - p) : strlen(p);
		char label[64];
		if (len == 0 || len > 63)
			return false;
		memcpy(label, p, len);
		label[len] = '\0';
		if (!ks_dns1123_label(label))
			return false;
		if (!dot)
			return true;
		p = dot + 1;
	}
}

/* RBAC and a few others accept any name that is a valid path segment. */
static bool path_segment_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 253 || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	return !strpbrk(s, "/%");
}

const char *ks_store_status_reason(int code, int *ret_http)
{
	int http;
	const char *reason;
	switch (code) {
	case 0: http = 200; reason = ""; break;
	case -ENOENT: http = 404; reason = "NotFound"; break;
	case -EEXIST: http = 409; reason = "AlreadyExists"; break;
	case -ESTALE:
	case -EBUSY: http = 409; reason = "Conflict"; break;
	case -EINVAL: http = 422; reason = "Invalid"; break;
	case -EBADMSG: http = 400; reason = "BadRequest"; break;
	case -ERANGE: http = 410; reason = "Expired"; break;
	default: http = 500; reason = "InternalError"; break;
	}
	if (ret_http)
		*ret_http = http;
	return reason;
}

const char *ks_event_type_name(enum ks_event_type type)
{
	switch (type) {
	case KS_EVENT_ADDED: return "ADDED";
	case KS_EVENT_MODIFIED: return "MODIFIED";
	case KS_EVENT_DELETED: return "DELETED";
	}
	return "UNKNOWN";
}

/* ---- list-maps and merging ---- */

/* Key fields of the list-map named field, or NULL when the list is atomic. For ports
 * the caller decides between "name" and the port/protocol pair. */
static const char *listmap_field(const char *field)
{
	static const char *const by_name[] = {
		"containers", "initContainers", "ephemeralContainers", "env", "volumes",
		"imagePullSecrets", "ports",
	};
	if (!field)
		return NULL;
	for (size_t i = 0; i < sizeof(by_name) / sizeof(by_name[0]); i++)
		if (!strcmp(field, by_name[i]))
			return "name";
	if (!strcmp(field, "volumeMounts"))
		return "mountPath";
	if (!strcmp(field, "conditions"))
		return "type";
	if (!strcmp(field, "hostAliases"))
		return "ip";
	return NULL;
}

/* How the elements of a list-map are identified. */
struct lm_mode {
	const char *key;   /* single key field, or NULL for the port/protocol pair */
	const char *port;  /* "containerPort" or "port" in pair mode */
};

static bool all_have(const json_t *arr, const char *field)
{
	size_t i;
	json_t *e;
	if (!json_is_array(arr))
		return true;
	json_array_foreach(arr, i, e) {
		if (!json_is_object(e) || !json_object_get(e, field))
			return false;
	}
	return true;
}

/* Decide whether a and b (either may be NULL/not an array) merge as a list-map. */
static bool listmap_mode(const char *field, const json_t *a, const json_t *b,
			 struct lm_mode *mode)
{
	const char *key = listmap_field(field);
	if (!key)
		return false;
	if (all_have(a, key) && all_have(b, key)) {
		mode->key = key;
		mode->port = NULL;
		return true;
	}
	if (strcmp(field, "ports"))
		return false;
	const char *pairs[] = { "containerPort", "port" };
	for (size_t i = 0; i < 2; i++) {
		if (all_have(a, pairs[i]) && all_have(b, pairs[i])) {
			mode->key = NULL;
			mode->port = pairs[i];
			return true;
		}
	}
	return false;
}

/* The identifying fields of element e as a new object, e.g. {"name":"web"}. */
static json_t *elem_key(const json_t *e, const struct lm_mode *mode)
{
	json_t *k = json_object();
	if (mode->key) {
		json_object_set(k, mode->key, json_object_get(e, mode->key));
	} else {
		json_object_set(k, mode->port, json_object_get(e, mode->port));
		json_t *proto = json_object_get(e, "protocol");
		json_object_set_new(k, "protocol",
				    proto ? json_incref(proto) : json_string("TCP"));
	}
	return k;
}

static bool elem_matches(const json_t *e, const json_t *key, const struct lm_mode *mode)
{
	json_t *k = elem_key(e, mode);
	bool eq = json_equal(k, key);
	json_decref(k);
	return eq;
}

static json_t *merge(const json_t *target, const json_t *patch, bool list_maps,
		     const char *field);

static json_t *merge_listmap(const json_t *live, const json_t *patch,
			     const struct lm_mode *mode)
{
	json_t *out = json_array();
	size_t n_live = json_is_array(live) ? json_array_size(live) : 0;
	bool *used = co_calloc(n_live + 1, sizeof(bool));
	size_t i;
	json_t *p;
	json_array_foreach(patch, i, p) {
		json_t *key = elem_key(p, mode);
		const json_t *match = NULL;
		for (size_t j = 0; j < n_live; j++) {
			json_t *l = json_array_get(live, j);
			if (!used[j] && elem_matches(l, key, mode)) {
				used[j] = true;
				match = l;
				break;
			}
		}
		json_decref(key);
		json_array_append_new(out, merge(match, p, true, NULL));
	}
	for (size_t j = 0; j < n_live; j++)
		if (!used[j])
			json_array_append(out, json_array_get(live, j));
	free(used);
	return out;
}

static json_t *merge(const json_t *target, const json_t *patch, bool list_maps,
		     const char *field)
{
	struct lm_mode mode;
	if (json_is_array(patch) && list_maps && json_is_array(target) &&
	    listmap_mode(field, target, patch, &mode))
		return merge_listmap(target, patch, &mode);
	if (!json_is_object(patch))
		return json_deep_copy(patch);
	json_t *out = json_is_object(target) ? json_copy((json_t *)target) : json_object();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)patch, k, v) {
		if (json_is_null(v)) {
			json_object_del(out, k);
			continue;
		}
		json_object_set_new(out, k, merge(json_object_get(out, k), v, list_maps, k));
	}
	return out;
}

json_t *ks_merge_patch(const json_t *target, const json_t *patch, bool list_maps)
{
	return merge(target, patch, list_maps, NULL);
}

/* ---- field sets (FieldsV1) ---- */

/* Build the FieldsV1 tree of value into node. Only leaves where value differs from
 * base are included when base_only_changes (NULL base = everything differs). */
static void fields_build(json_t *node, const json_t *value, const json_t *base,
			 bool only_changes);

static void fields_child(json_t *node, const char *name, const json_t *v,
			 const json_t *base_v, bool only_changes, const char *field)
{
	struct lm_mode mode;
	json_t *child = json_object();
	if (json_is_object(v) && json_object_size(v) > 0) {
		fields_build(child, v, base_v, only_changes);
	} else if (json_is_array(v) && json_array_size(v) > 0 &&
		   listmap_mode(field, v, NULL, &mode)) {
		size_t i;
		json_t *e;
		json_array_foreach(v, i, e) {
			json_t *key = elem_key(e, &mode);
			const json_t *be = NULL;
			size_t j;
			json_t *b;
			if (json_is_array(base_v)) {
				json_array_foreach(base_v, j, b) {
					if (json_is_object(b) && elem_matches(b, key, &mode)) {
						be = b;
						break;
					}
				}
			}
			char *ks = json_dumps(key, JSON_COMPACT | JSON_SORT_KEYS);
			char *kname = co_asprintf("k:%s", ks);
			json_t *en = json_object();
			if (!only_changes || !be)
				json_object_set_new(en, ".", json_object());
			fields_build(en, e, be, only_changes);
			if (json_object_size(en) > 0)
				json_object_set_new(child, kname, en);
			else
				json_decref(en);
			free(kname);
			free(ks);
			json_decref(key);
		}
	} else if (only_changes && base_v && json_equal(v, base_v)) {
		json_decref(child);
		return;
	}
	if (only_changes && json_object_size(child) == 0 &&
	    ((json_is_object(v) && json_object_size(v) > 0) ||
	     (json_is_array(v) && listmap_mode(field, v, NULL, &mode) &&
	      json_array_size(v) > 0))) {
		/* a container whose children are all unchanged */
		json_decref(child);
		return;
	}
	char *fname = co_asprintf("f:%s", name);
	json_object_set_new(node, fname, child);
	free(fname);
}

static void fields_build(json_t *node, const json_t *value, const json_t *base,
			 bool only_changes)
{
	const char *k;
	json_t *v;
	if (!json_is_object(value))
		return;
	json_object_foreach((json_t *)value, k, v) {
		if (json_is_null(v))
			continue;
		fields_child(node, k, v, json_object_get(base, k), only_changes, k);
	}
}

/* Append every leaf path of tree (arrays of element strings) to out. */
static void fields_leaves(const json_t *tree, json_t *prefix, json_t *out)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)tree, k, v) {
		json_array_append_new(prefix, json_string(k));
		if (json_object_size(v) == 0)
			json_array_append_new(out, json_copy(prefix));
		else
			fields_leaves(v, prefix, out);
		json_array_remove(prefix, json_array_size(prefix) - 1);
	}
}

static json_t *leaves_of(const json_t *tree)
{
	json_t *out = json_array(), *prefix = json_array();
	if (json_is_object(tree))
		fields_leaves(tree, prefix, out);
	json_decref(prefix);
	return out;
}

static bool leaves_contain(const json_t *leaves, const json_t *path)
{
	size_t i;
	json_t *p;
	json_array_foreach(leaves, i, p) {
		if (json_equal(p, path))
			return true;
	}
	return false;
}

/* Remove the leaf path from tree, pruning parents that become empty. */
static void tree_remove(json_t *tree, const json_t *path, size_t depth)
{
	const char *el = json_string_value(json_array_get(path, depth));
	json_t *child = json_object_get(tree, el);
	if (!child)
		return;
	if (depth + 1 == json_array_size(path)) {
		json_object_del(tree, el);
		return;
	}
	tree_remove(child, path, depth + 1);
	if (json_object_size(child) == 0)
		json_object_del(tree, el);
}

/* Follow one path element inside value; NULL when absent. *ret_index gets the array
 * index for "k:" elements. */
static json_t *path_step(json_t *value, const char *el, size_t *ret_index)
{
	if (!strncmp(el, "f:", 2))
		return json_object_get(value, el + 2);
	if (!strncmp(el, "k:", 2) && json_is_array(value)) {
		json_t *key = json_loads(el + 2, 0, NULL);
		json_t *found = NULL;
		size_t i;
		json_t *e;
		if (!key)
			return NULL;
		json_array_foreach(value, i, e) {
			const char *k;
			json_t *kv;
			bool ok = json_is_object(e);
			json_object_foreach(key, k, kv) {
				json_t *ev = json_object_get(e, k);
				if (!ev && !strcmp(k, "protocol") &&
				    !strcmp(str_or(json_string_value(kv), ""), "TCP"))
					continue;
				if (!ev || !json_equal(ev, kv))
					ok = false;
			}
			if (ok) {
				found = e;
				if (ret_index)
					*ret_index = i;
				break;
			}
		}
		json_decref(key);
		return found;
	}
	return NULL;
}

/* Value at a leaf path ("." means the element itself), or NULL. */
static json_t *path_get(json_t *value, const json_t *path)
{
	size_t i;
	json_t *el;
	json_array_foreach(path, i, el) {
		const char *s = json_string_value(el);
		if (!strcmp(s, "."))
			return value;
		value = path_step(value, s, NULL);
		if (!value)
			return NULL;
	}
	return value;
}

/* Remove the field at a leaf path from value (modified in place; value is a private
 * copy). */
static void path_remove(json_t *value, const json_t *path)
{
	size_t n = json_array_size(path);
	const char *last = json_string_value(json_array_get(path, n - 1));
	size_t upto = !strcmp(last, ".") ? n - 1 : n;
	json_t *parent = value;
	for (size_t i = 0; i + 1 < upto; i++) {
		parent = path_step(parent, json_string_value(json_array_get(path, i)), NULL);
		if (!parent)
			return;
	}
	const char *el = json_string_value(json_array_get(path, upto - 1));
	if (!strncmp(el, "f:", 2)) {
		json_object_del(parent, el + 2);
	} else {
		size_t idx;
		if (path_step(parent, el, &idx))
			json_array_remove(parent, idx);
	}
}

static void path_format(const json_t *path, struct co_buf *b)
{
	size_t i;
	json_t *el;
	json_array_foreach(path, i, el) {
		const char *s = json_string_value(el);
		if (!strcmp(s, "."))
			continue;
		if (!strncmp(s, "f:", 2)) {
			co_buf_putc(b, '.');
			co_buf_puts(b, s + 2);
		} else {
			co_buf_printf(b, "[%s]", s + 2);
		}
	}
}

/* ---- selectors ---- */

enum req_op { OP_EQ, OP_NE, OP_IN, OP_NOTIN, OP_EXISTS, OP_NOTEXISTS };

struct req {
	char *key;
	enum req_op op;
	char **values;
	size_t n_values;
};

struct ks_selector {
	char kind;
	struct req *reqs;
	size_t n;
};

void ks_selector_free(struct ks_selector *sel)
{
	if (!sel)
		return;
	for (size_t i = 0; i < sel->n; i++) {
		free(sel->reqs[i].key);
		for (size_t j = 0; j < sel->reqs[i].n_values; j++)
			free(sel->reqs[i].values[j]);
		free(sel->reqs[i].values);
	}
	free(sel->reqs);
	free(sel);
}

static char *trim_dup(const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return co_strndup(s, n);
}

static bool valid_sel_token(const char *s, bool is_key, bool allow_empty)
{
	if (!*s)
		return allow_empty;
	if (strlen(s) > 316)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			  (is_key && c == '/') || (!is_key && c == ':');
		if (!ok)
			return false;
	}
	return true;
}

static void add_value(struct req *r, char *v)
{
	r->values = co_realloc(r->values, (r->n_values + 1) * sizeof(char *));
	r->values[r->n_values++] = v;
}

static int parse_term(struct ks_selector *sel, const char *term, struct co_error *err)
{
	struct req r = { 0 };
	const char *p;
	int rc = -EBADMSG;

	if (!*term)
		return co_error_set(err, -EBADMSG, "empty term in selector");
	sel->reqs = co_realloc(sel->reqs, (sel->n + 1) * sizeof(struct req));
	if (term[0] == '!' && sel->kind == 'l') {
		r.key = trim_dup(term + 1, strlen(term + 1));
		r.op = OP_NOTEXISTS;
	} else if ((p = strstr(term, "!=")) != NULL) {
		r.key = trim_dup(term, (size_t)(p - term));
		r.op = OP_NE;
		add_value(&r, trim_dup(p + 2, strlen(p + 2)));
	} else if ((p = strstr(term, "==")) != NULL) {
		r.key = trim_dup(term, (size_t)(p - term));
		r.op = OP_EQ;
		add_value(&r, trim_dup(p + 2, strlen(p + 2)));
	} else if ((p = strchr(term, '=')) != NULL) {
		r.key = trim_dup(term, (size_t)(p - term));
		r.op = OP_EQ;
		add_value(&r, trim_dup(p + 1, strlen(p + 1)));
	} else if (sel->kind == 'l' && (p = strchr(term, '(')) != NULL) {
		/* "key in (a,b)" / "key notin (a,b)" */
		const char *close = strchr(p, ')');
		char *head = trim_dup(term, (size_t)(p - term));
		char *sp = strrchr(head, ' ');
		if (!close || close[1] || !sp) {
			free(head);
			co_error_set(err, -EBADMSG, "unable to parse requirement: '%s'", term);
			goto fail;
		}
		char *opword = trim_dup(sp, strlen(sp));
		*sp = '\0';
		r.key = trim_dup(head, strlen(head));
		free(head);
		if (!strcmp(opword, "in")) {
			r.op = OP_IN;
		} else if (!strcmp(opword, "notin")) {
			r.op = OP_NOTIN;
		} else {
			free(opword);
			co_error_set(err, -EBADMSG, "unable to parse requirement: '%s'", term);
			goto fail;
		}
		free(opword);
		const char *v = p + 1;
		while (v < close) {
			const char *c = memchr(v, ',', (size_t)(close - v));
			const char *end = c ? c : close;
			add_value(&r, trim_dup(v, (size_t)(end - v)));
			v = end + 1;
		}
	} else if (sel->kind == 'l') {
		r.key = trim_dup(term, strlen(term));
		r.op = OP_EXISTS;
	} else {
		co_error_set(err, -EBADMSG, "invalid selector: '%s'; can't understand '%s'",
			     term, term);
		goto fail;
	}
	if (!valid_sel_token(r.key, true, false)) {
		co_error_set(err, -EBADMSG, "invalid label key \"%s\"", r.key);
		goto fail;
	}
	for (size_t i = 0; i < r.n_values; i++) {
		if (!valid_sel_token(r.values[i], false, true) ||
		    (sel->kind == 'f' && strchr(r.values[i], ' '))) {
			co_error_set(err, -EBADMSG, "invalid value \"%s\"", r.values[i]);
			goto fail;
		}
	}
	sel->reqs[sel->n++] = r;
	return 0;
fail:
	free(r.key);
	for (size_t i = 0; i < r.n_values; i++)
		free(r.values[i]);
	free(r.values);
	return rc;
}

int ks_selector_parse(struct ks_selector **ret_sel, char kind, const char *text,
		      struct co_error *err)
{
	struct ks_selector *sel = co_calloc(1, sizeof(*sel));
	sel->kind = kind;
	if (text && strlen(text) > 8192) {
		ks_selector_free(sel);
		return co_error_set(err, -EBADMSG, "selector too long");
	}
	const char *p = text ? text : "";
	while (*p) {
		/* split at commas outside parentheses */
		const char *q = p;
		int depth = 0;
		while (*q && !(*q == ',' && depth == 0)) {
			if (*q == '(')
				depth++;
			else if (*q == ')')
				depth--;
			q++;
		}
		char *term = trim_dup(p, (size_t)(q - p));
		int rc = parse_term(sel, term, err);
		free(term);
		if (rc < 0) {
			ks_selector_free(sel);
			return rc;
		}
		p = *q ? q + 1 : q;
		if (*q && !*p) {
			ks_selector_free(sel);
			return co_error_set(err, -EBADMSG, "trailing comma in selector");
		}
	}
	*ret_sel = sel;
	return 0;
}

/* Field value as a string for field selectors: dotted path into obj. */
static char *field_value(const json_t *obj, const char *path)
{
	char *copy = co_strdup(path), *save = NULL;
	const json_t *v = obj;
	for (char *t = strtok_r(copy, ".", &save); t && v; t = strtok_r(NULL, ".", &save))
		v = json_object_get(v, t);
	free(copy);
	if (!v || json_is_null(v))
		return co_strdup("");
	if (json_is_string(v))
		return co_strdup(json_string_value(v));
	if (json_is_true(v))
		return co_strdup("true");
	if (json_is_false(v))
		return co_strdup("false");
	if (json_is_integer(v))
		return co_asprintf("%lld", (long long)json_integer_value(v));
	return co_strdup("");
}

bool ks_selector_match(const struct ks_selector *sel, const json_t *obj)
{
	if (!sel)
		return true;
	json_t *labels = json_object_get(json_object_get(obj, "metadata"), "labels");
	for (size_t i = 0; i < sel->n; i++) {
		const struct req *r = &sel->reqs[i];
		char *val = NULL;
		bool present;
		if (sel->kind == 'l') {
			const char *s = json_string_value(json_object_get(labels, r->key));
			present = s != NULL;
			val = co_strdup(s ? s : "");
		} else {
			present = true;
			val = field_value(obj, r->key);
		}
		bool ok = false, in = false;
		for (size_t j = 0; j < r->n_values; j++)
			if (!strcmp(r->values[j], val))
				in = true;
		switch (r->op) {
		case OP_EQ: ok = present && in; break;
		case OP_NE: ok = !present || !in; break;
		case OP_IN: ok = present && in; break;
		case OP_NOTIN: ok = !present || !in; break;
		case OP_EXISTS: ok = present; break;
		case OP_NOTEXISTS: ok = !present; break;
		}
		free(val);
		if (!ok)
			return false;
	}
	return true;
}

/* ---- kinds and events ---- */

static struct kind *find_kind(struct ks_store *s, const char *group, const char *resource,
			      bool create)
{
	group = str_or(group, "");
	for (struct kind *k = s->kinds; k; k = k->next)
		if (!strcmp(k->resource, resource) && !strcmp(k->group, group))
			return k;
	if (!create)
		return NULL;
	struct kind *k = co_calloc(1, sizeof(*k));
	k->group = co_strdup(group);
	k->resource = co_strdup(resource);
	k->objs = json_object();
	k->next = s->kinds;
	s->kinds = k;
	return k;
}

static bool watch_wants(const struct ks_watch *w, const struct kind *k, const json_t *obj)
{
	if (w->group && strcmp(w->group, k->group))
		return false;
	if (w->resource && strcmp(w->resource, k->resource))
		return false;
	if (w->ns && w->ns[0] && strcmp(w->ns, str_or(meta_str(obj, "namespace"), "")))
		return false;
	return ks_selector_match(w->labels, obj) && ks_selector_match(w->fields, obj);
}

static void deliver(struct ks_watch *w, const struct event *e)
{
	struct ks_event ev = {
		.type = e->type,
		.group = e->kind->group,
		.resource = e->kind->resource,
		.rv = e->rv,
		.obj = e->obj,
	};
	w->seen_rv = e->rv;
	w->cb(&ev, w->data);
}

static void unlink_cancelled(struct ks_store *s)
{
	struct ks_watch **pp = &s->watches;
	while (*pp) {
		struct ks_watch *w = *pp;
		if (w->cancelled) {
			*pp = w->next;
			free(w->group);
			free(w->resource);
			free(w->ns);
			ks_selector_free(w->labels);
			ks_selector_free(w->fields);
			free(w);
		} else {
			pp = &w->next;
		}
	}
	s->watches_dirty = false;
}

static void drain_queue(struct ks_store *s)
{
	if (s->dispatching)
		return;
	s->dispatching = true;
	while (s->queue_pos < s->queue_len) {
		struct event e = s->queue[s->queue_pos++];
		for (struct ks_watch *w = s->watches; w; w = w->next) {
			if (w->cancelled || e.rv <= w->seen_rv || !watch_wants(w, e.kind, e.obj))
				continue;
			deliver(w, &e);
		}
		json_decref(e.obj);
	}
	s->queue_len = s->queue_pos = 0;
	s->dispatching = false;
	if (s->watches_dirty)
		unlink_cancelled(s);
}

static void flush_timer_cb(uv_timer_t *t)
{
	struct flush_timer *ft = t->data;
	if (!ft->store)
		return;
	ft->store->timer_armed = false;
	ks_store_flush(ft->store, NULL);
}

static void mark_dirty(struct ks_store *s)
{
	s->dirty = true;
	if (!s->path || !s->loop || s->timer_armed)
		return;
	if (!s->timer) {
		s->timer = co_calloc(1, sizeof(*s->timer));
		uv_timer_init(s->loop, &s->timer->timer);
		s->timer->timer.data = s->timer;
		s->timer->store = s;
	}
	uv_timer_start(&s->timer->timer, flush_timer_cb, s->debounce_ms, 0);
	s->timer_armed = true;
}

/* Record a committed change (obj: a new reference the event takes). */
static void emit(struct ks_store *s, enum ks_event_type type, struct kind *k, json_t *obj)
{
	struct event e = { type, k, s->rv, obj };
	size_t slot;
	if (s->hist_len == KS_STORE_HISTORY) {
		struct event *old = &s->history[s->hist_start];
		s->hist_floor = old->rv;
		json_decref(old->obj);
		s->hist_start = (s->hist_start + 1) % KS_STORE_HISTORY;
		s->hist_len--;
	}
	slot = (s->hist_start + s->hist_len) % KS_STORE_HISTORY;
	s->history[slot] = e;
	json_incref(obj);
	s->hist_len++;
	if (s->queue_len == s->queue_cap) {
		s->queue_cap = s->queue_cap ? s->queue_cap * 2 : 16;
		s->queue = co_realloc(s->queue, s->queue_cap * sizeof(*s->queue));
	}
	s->queue[s->queue_len++] = e;
	mark_dirty(s);
}

/* Swap cand in under objkey with a new rv; takes the cand reference. */
static void commit(struct ks_store *s, struct kind *k, const char *okey, json_t *cand,
		   bool existed)
{
	char rvbuf[24];
	s->rv++;
	snprintf(rvbuf, sizeof(rvbuf), "%llu", (unsigned long long)s->rv);
	json_object_set_new(meta_of(cand), "resourceVersion", json_string(rvbuf));
	if (!existed)
		s->count++;
	json_object_set(k->objs, okey, cand);
	emit(s, existed ? KS_EVENT_MODIFIED : KS_EVENT_ADDED, k, json_incref(cand));
}

static void remove_obj(struct ks_store *s, struct kind *k, const char *okey)
{
	json_t *old = json_object_get(k->objs, okey);
	char rvbuf[24];
	json_t *gone = json_deep_copy(old);
	s->rv++;
	snprintf(rvbuf, sizeof(rvbuf), "%llu", (unsigned long long)s->rv);
	json_object_set_new(meta_of(gone), "resourceVersion", json_string(rvbuf));
	json_object_del(k->objs, okey);
	s->count--;
	emit(s, KS_EVENT_DELETED, k, gone);
}

/* ---- lifecycle and persistence ---- */

static int load_snapshot(struct ks_store *s, struct co_error *err)
{
	json_error_t jerr;
	if (access(s->path, F_OK) != 0)
		return 0;
	json_t *root = json_load_file(s->path, 0, &jerr);
	if (!root)
		return co_error_set(err, -EINVAL, "load snapshot '%s': %s", s->path, jerr.text);
	json_t *objs = json_object_get(root, "objects");
	json_t *rv = json_object_get(root, "resourceVersion");
	if (!json_is_array(objs) || !json_is_integer(rv)) {
		json_decref(root);
		return co_error_set(err, -EINVAL, "load snapshot '%s': not a store snapshot",
				    s->path);
	}
	size_t i;
	json_t *e;
	json_array_foreach(objs, i, e) {
		const char *g = json_string_value(json_object_get(e, "group"));
		const char *r = json_string_value(json_object_get(e, "resource"));
		json_t *o = json_object_get(e, "object");
		const char *name = meta_str(o, "name");
		if (!g || !r || !json_is_object(o) || !name) {
			json_decref(root);
			return co_error_set(err, -EINVAL,
					    "load snapshot '%s': bad entry %zu", s->path, i);
		}
		struct kind *k = find_kind(s, g, r, true);
		char *okey = obj_key(meta_str(o, "namespace"), name);
		if (!json_object_get(k->objs, okey))
			s->count++;
		json_object_set(k->objs, okey, o);
		free(okey);
	}
	s->rv = (uint64_t)json_integer_value(rv);
	s->hist_floor = s->rv;
	json_decref(root);
	return 0;
}

int ks_store_new(struct ks_store **ret_store, uv_loop_t *loop,
		 const struct ks_store_opts *opts, struct co_error *err)
{
	struct ks_store *s = co_calloc(1, sizeof(*s));
	s->loop = loop;
	s->debounce_ms = opts && opts->debounce_ms ? opts->debounce_ms : 200;
	if (opts && opts->snapshot_path) {
		s->path = co_strdup(opts->snapshot_path);
		int rc = load_snapshot(s, err);
		if (rc < 0) {
			ks_store_free(s);
			return rc;
		}
	}
	*ret_store = s;
	return 0;
}

static void timer_close_cb(uv_handle_t *h)
{
	free(h->data);
}

void ks_store_free(struct ks_store *s)
{
	if (!s)
		return;
	if (s->dirty)
		ks_store_flush(s, NULL);
	if (s->timer) {
		s->timer->store = NULL;
		uv_timer_stop(&s->timer->timer);
		uv_close((uv_handle_t *)&s->timer->timer, timer_close_cb);
	}
	for (struct ks_watch *w = s->watches; w; w = w->next)
		w->cancelled = true;
	unlink_cancelled(s);
	for (size_t i = 0; i < s->hist_len; i++)
		json_decref(s->history[(s->hist_start + i) % KS_STORE_HISTORY].obj);
	for (size_t i = s->queue_pos; i < s->queue_len; i++)
		json_decref(s->queue[i].obj);
	free(s->queue);
	while (s->kinds) {
		struct kind *k = s->kinds;
		s->kinds = k->next;
		free(k->group);
		free(k->resource);
		json_decref(k->objs);
		free(k);
	}
	free(s->path);
	free(s);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keys of a kind's map, sorted; caller frees the array (not the strings). */
static const char **sorted_keys(const struct kind *k, size_t *ret_n)
{
	size_t n = json_object_size(k->objs), i = 0;
	const char **keys = co_calloc(n + 1, sizeof(char *));
	const char *key;
	json_t *v;
	json_object_foreach(k->objs, key, v)
		keys[i++] = key;
	qsort(keys, n, sizeof(char *), cmp_str);
	*ret_n = n;
	return keys;
}

int ks_store_flush(struct ks_store *s, struct co_error *err)
{
	if (!s->path || !s->dirty)
		return 0;
	json_t *objs = json_array();
	for (struct kind *k = s->kinds; k; k = k->next) {
		size_t n;
		const char **keys = sorted_keys(k, &n);
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_pack("{s:s, s:s, s:O}", "group", k->group, "resource",
					      k->resource, "object",
					      json_object_get(k->objs, keys[i]));
			json_array_append_new(objs, e);
		}
		free(keys);
	}
	json_t *root = json_pack("{s:I, s:o}", "resourceVersion", (json_int_t)s->rv,
				 "objects", objs);
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	int rc = co_fs_write_atomic(s->path, text, strlen(text), 0600, err);

	if (rc < 0) {
		/* The store's contract reports snapshot I/O as -EIO (InternalError). */
		co_error_prefix(err, "snapshot");
		if (err)
			err->code = -EIO;
		rc = -EIO;
		goto out;
	}
	s->dirty = false;
out:
	free(text);
	return rc;
}

void ks_store_forget(struct ks_store *s)
{
	if (!s->path)
		return;
	unlink(s->path);
	free(s->path);
	s->path = NULL;
	s->dirty = false;
	if (s->timer && s->timer_armed) {
		uv_timer_stop(&s->timer->timer);
		s->timer_armed = false;
	}
}

uint64_t ks_store_rv(const struct ks_store *s)
{
	return s->rv;
}

size_t ks_store_count(const struct ks_store *s)
{
	return s->count;
}

/* ---- reads ---- */

int ks_store_get(struct ks_store *s, const struct ks_key *key, json_t **ret_obj,
		 struct co_error *err)
{
	struct kind *k = find_kind(s, key->group, key->resource, false);
	json_t *o = NULL;
	if (k && key->name) {
		char *okey = obj_key(key->ns, key->name);
		o = json_object_get(k->objs, okey);
		free(okey);
	}
	if (!o)
		return fail_key(err, -ENOENT, key, "not found");
	*ret_obj = json_incref(o);
	return 0;
}

int ks_store_list(struct ks_store *s, const struct ks_key *key,
		  const struct ks_list_opts *opts, json_t **ret_items, uint64_t *ret_rv,
		  struct co_error *err)
{
	struct ks_selector *ls = NULL, *fs = NULL;
	int rc = ks_selector_parse(&ls, 'l', opts ? opts->label_selector : NULL, err);
	if (rc < 0)
		return rc;
	rc = ks_selector_parse(&fs, 'f', opts ? opts->field_selector : NULL, err);
	if (rc < 0) {
		ks_selector_free(ls);
		return rc;
	}
	json_t *items = json_array();
	struct kind *k = find_kind(s, key->group, key->resource, false);
	const char *ns = ns_of(key);
	if (k) {
		size_t n;
		const char **keys = sorted_keys(k, &n);
		for (size_t i = 0; i < n; i++) {
			json_t *o = json_object_get(k->objs, keys[i]);
			if (ns[0] && strcmp(ns, str_or(meta_str(o, "namespace"), "")))
				continue;
			if (ks_selector_match(ls, o) && ks_selector_match(fs, o))
				json_array_append(items, o);
		}
		free(keys);
	}
	ks_selector_free(ls);
	ks_selector_free(fs);
	*ret_items = items;
	if (ret_rv)
		*ret_rv = s->rv;
	return 0;
}

/* ---- writes ---- */

/* Check obj's name/namespace against key; returns a private deep copy with them
 * filled in, or NULL with err. */
static json_t *prepare(const struct ks_key *key, const json_t *obj, struct co_error *err)
{
	if (!json_is_object(obj)) {
		co_error_set(err, -EBADMSG, "object is not a JSON object");
		return NULL;
	}
	json_t *c = json_deep_copy(obj);
	json_t *m = meta_of(c);
	const char *name = json_string_value(json_object_get(m, "name"));
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	if (name && key->name && strcmp(name, key->name)) {
		co_error_set(err, -EBADMSG,
			     "the name of the object (%s) does not match the name on the URL (%s)",
			     name, key->name);
		goto fail;
	}
	if (ns && ns[0] && strcmp(ns, ns_of(key))) {
		co_error_set(err, -EBADMSG,
			     "the namespace of the provided object does not match the namespace "
			     "sent on the request");
		goto fail;
	}
	if (!name && key->name)
		json_object_set_new(m, "name", json_string(key->name));
	if (ns_of(key)[0])
		json_object_set_new(m, "namespace", json_string(ns_of(key)));
	else
		json_object_del(m, "namespace");
	return c;
fail:
	json_decref(c);
	return NULL;
}

static bool spec_equal(const json_t *a, const json_t *b)
{
	json_t *x = json_copy((json_t *)a), *y = json_copy((json_t *)b);
	json_object_del(x, "metadata");
	json_object_del(x, "status");
	json_object_del(y, "metadata");
	json_object_del(y, "status");
	bool eq = json_equal(x, y);
	json_decref(x);
	json_decref(y);
	return eq;
}

/* Set (or drop when fields is empty) the managedFields entry of (manager, op). */
static void set_managed(json_t *cand, const char *manager, const char *op,
			const char *api_version, json_t *fields, bool replace)
{
	json_t *m = meta_of(cand);
	json_t *mf = json_object_get(m, "managedFields");
	json_t *out = json_array();
	json_t *prev = NULL;
	size_t i;
	json_t *e;
	char ts[32];
	if (json_is_array(mf)) {
		json_array_foreach(mf, i, e) {
			if (!strcmp(str_or(json_string_value(json_object_get(e, "manager")), ""),
				    manager) &&
			    !strcmp(str_or(json_string_value(json_object_get(e, "operation")),
					   ""), op))
				prev = e;
			else
				json_array_append(out, e);
		}
	}
	json_t *merged;
	if (replace || !prev)
		merged = json_incref(fields);
	else
		merged = ks_merge_patch(json_object_get(prev, "fieldsV1"), fields, false);
	if (json_object_size(merged) > 0) {
		if (prev && json_equal(json_object_get(prev, "fieldsV1"), merged)) {
			json_array_append(out, prev);
		} else {
			json_array_append_new(out, json_pack(
				"{s:s, s:s, s:s, s:s, s:s, s:O}", "manager", manager,
				"operation", op, "apiVersion", str_or(api_version, "v1"),
				"time", now_rfc3339(ts, sizeof(ts)), "fieldsType", "FieldsV1",
				"fieldsV1", merged));
		}
	}
	json_decref(merged);
	if (json_array_size(out) > 0)
		json_object_set_new(m, "managedFields", out);
	else {
		json_object_del(m, "managedFields");
		json_decref(out);
	}
}

static void strip_server_fields(json_t *c)
{
	json_t *m = meta_of(c);
	json_object_del(m, "uid");
	json_object_del(m, "creationTimestamp");
	json_object_del(m, "generation");
	json_object_del(m, "managedFields");
	json_object_del(m, "deletionTimestamp");
	json_object_del(m, "resourceVersion");
}

/*
 * Common tail of every write: server metadata from old (or fresh ones), generation,
 * no-op detection, dry run, commit. Takes the cand reference.
 */
static int finish(struct ks_store *s, const struct ks_key *key, const json_t *old,
		  json_t *cand, unsigned flags, json_t **ret_obj)
{
	json_t *m = meta_of(cand);
	char buf[40];
	if (old) {
		json_t *om = json_object_get(old, "metadata");
		json_object_set(m, "uid", json_object_get(om, "uid"));
		json_object_set(m, "creationTimestamp",
				json_object_get(om, "creationTimestamp"));
		json_int_t gen = json_integer_value(json_object_get(om, "generation"));
		if (gen <= 0)
			gen = 1;
		if (!spec_equal(old, cand))
			gen++;
		json_object_set_new(m, "generation", json_integer(gen));
		json_object_set(m, "resourceVersion", json_object_get(om, "resourceVersion"));
		if (json_equal(cand, old)) {
			json_decref(cand);
			if (ret_obj)
				*ret_obj = json_incref((json_t *)old);
			return 0;
		}
	} else {
		new_uid(buf);
		json_object_set_new(m, "uid", json_string(buf));
		json_object_set_new(m, "creationTimestamp",
				    json_string(now_rfc3339(buf, sizeof(buf))));
		json_object_set_new(m, "generation", json_integer(1));
	}
	if (flags & KS_WRITE_DRY_RUN) {
		if (ret_obj)
			*ret_obj = cand;
		else
			json_decref(cand);
		return 0;
	}
	struct kind *k = find_kind(s, key->group, key->resource, true);
	char *okey = obj_key(meta_str(cand, "namespace"), meta_str(cand, "name"));
	commit(s, k, okey, cand, old != NULL);
	free(okey);
	if (ret_obj)
		*ret_obj = json_incref(cand);
	json_decref(cand);
	drain_queue(s);
	return 0;
}

static const char *builtin_ns[] = { "default", "kube-system", "kube-public",
				    "kube-node-lease" };

static int check_name(const struct ks_key *key, const char *name, struct co_error *err)
{
	bool ok;
	if (!strcmp(key->resource, "namespaces") && !str_or(key->group, "")[0])
		ok = ks_dns1123_label(name);
	else if (!strcmp(str_or(key->group, ""), "rbac.authorization.k8s.io"))
		ok = path_segment_name(name);
	else
		ok = ks_dns1123_subdomain(name);
	if (ok)
		return 0;
	struct co_buf b = CO_BUF_INIT;
	kind_label(key, &b);
	co_error_set(err, -EINVAL,
		     "%s \"%s\" is invalid: metadata.name: Invalid value: \"%s\": a lowercase "
		     "RFC 1123 %s must consist of lower case alphanumeric characters, '-' or "
		     "'.', and must start and end with an alphanumeric character",
		     co_buf_cstr(&b), name, name,
		     strcmp(key->resource, "namespaces") ? "subdomain" : "label");
	co_buf_release(&b);
	return -EINVAL;
}

static int check_namespace(struct ks_store *s, const struct ks_key *key,
			   struct co_error *err)
{
	if (!ns_of(key)[0])
		return 0;
	struct ks_key nk = { "", "namespaces", NULL, key->ns };
	json_t *o;
	if (ks_store_get(s, &nk, &o, NULL) == 0) {
		json_decref(o);
		return 0;
	}
	return co_error_set(err, -ENOENT, "namespaces \"%s\" not found", key->ns);
}

static json_t *lookup(struct ks_store *s, const struct ks_key *key)
{
	struct kind *k = find_kind(s, key->group, key->resource, false);
	if (!k || !key->name)
		return NULL;
	char *okey = obj_key(key->ns, key->name);
	json_t *o = json_object_get(k->objs, okey);
	free(okey);
	return o;
}

static void random_suffix(char *buf, size_t n)
{
	static const char alphabet[] = "bcdfghjklmnpqrstvwxz2456789";
	unsigned char r[16];
	if (RAND_bytes(r, sizeof(r)) != 1)
		memset(r, (int)co_time_mono_ns(), sizeof(r));
	for (size_t i = 0; i + 1 < n && i < sizeof(r); i++)
		buf[i] = alphabet[r[i] % (sizeof(alphabet) - 1)];
	buf[n - 1] = '\0';
}

int ks_store_create(struct ks_store *s, const struct ks_key *key, const json_t *obj,
		    const char *manager, unsigned flags, json_t **ret_obj,
		    struct co_error *err)
{
	json_t *c = prepare(key, obj, err);
	if (!c)
		return -EBADMSG;
	json_t *m = meta_of(c);
	const char *name = json_string_value(json_object_get(m, "name"));
	const char *gen_name = json_string_value(json_object_get(m, "generateName"));
	if ((!name || !*name) && gen_name) {
		char sfx[6];
		random_suffix(sfx, sizeof(sfx));
		char *n = co_asprintf("%s%s", gen_name, sfx);
		json_object_set_new(m, "name", json_string(n));
		free(n);
		name = json_string_value(json_object_get(m, "name"));
	}
	if (!name || !*name) {
		json_decref(c);
		return co_error_set(err, -EINVAL,
				    "%s is invalid: metadata.name: Required value: name or "
				    "generateName is required", key->resource);
	}
	struct ks_key k2 = *key;
	k2.name = name;
	int rc = check_name(&k2, name, err);
	if (rc == 0)
		rc = check_namespace(s, &k2, err);
	if (rc == 0 && lookup(s, &k2))
		rc = fail_key(err, -EEXIST, &k2, "already exists");
	if (rc < 0) {
		json_decref(c);
		return rc;
	}
	strip_server_fields(c);
	if (flags & KS_WRITE_KEEP_STATUS)
		json_object_del(c, "status");
	json_t *fields = json_object();
	fields_build(fields, c, NULL, false);
	json_object_del(fields, "f:apiVersion");
	json_object_del(fields, "f:kind");
	set_managed(c, str_or(manager, "unknown"), "Update",
		    json_string_value(json_object_get(c, "apiVersion")), fields, true);
	json_decref(fields);
	return finish(s, &k2, NULL, c, flags, ret_obj);
}

/* Record an Update manager for the fields that changed from old to cand. */
static void record_update(json_t *cand, const json_t *old, const char *manager)
{
	json_t *a = json_copy(cand), *b = json_copy((json_t *)old);
	json_t *am = json_copy(meta_of(a)), *bm = json_copy(meta_of(b));
	json_object_del(am, "managedFields");
	json_object_del(am, "resourceVersion");
	json_object_del(bm, "managedFields");
	json_object_del(bm, "resourceVersion");
	json_object_set_new(a, "metadata", am);
	json_object_set_new(b, "metadata", bm);
	json_t *fields = json_object();
	fields_build(fields, a, b, true);
	json_object_del(fields, "f:apiVersion");
	json_object_del(fields, "f:kind");
	if (json_object_size(fields) > 0)
		set_managed(cand, str_or(manager, "unknown"), "Update",
			    json_string_value(json_object_get(cand, "apiVersion")), fields,
			    false);
	json_decref(fields);
	json_decref(a);
	json_decref(b);
}

static int check_rv(const json_t *obj, const json_t *old, const struct ks_key *key,
		    struct co_error *err)
{
	const char *want = meta_str(obj, "resourceVersion");
	const char *have = meta_str(old, "resourceVersion");
	if (want && want[0] && (!have || strcmp(want, have))) {
		struct co_buf b = CO_BUF_INIT;
		kind_label(key, &b);
		co_error_set(err, -ESTALE,
			     "Operation cannot be fulfilled on %s \"%s\": the object has been "
			     "modified; please apply your changes to the latest version and "
			     "try again", co_buf_cstr(&b), key->name);
		co_buf_release(&b);
		return -ESTALE;
	}
	return 0;
}

int ks_store_update(struct ks_store *s, const struct ks_key *key, const json_t *obj,
		    const char *manager, unsigned flags, json_t **ret_obj,
		    struct co_error *err)
{
	json_t *old = lookup(s, key);
	if (!old)
		return fail_key(err, -ENOENT, key, "not found");
	json_t *c = prepare(key, obj, err);
	if (!c)
		return -EBADMSG;
	int rc = check_rv(obj, old, key, err);
	if (rc < 0) {
		json_decref(c);
		return rc;
	}
	strip_server_fields(c);
	json_t *mf = json_object_get(json_object_get(old, "metadata"), "managedFields");
	if (mf)
		json_object_set(meta_of(c), "managedFields", mf);
	if (flags & KS_WRITE_KEEP_STATUS) {
		json_t *st = json_object_get(old, "status");
		if (st)
			json_object_set(c, "status", st);
		else
			json_object_del(c, "status");
	}
	record_update(c, old, manager);
	json_incref(old);
	rc = finish(s, key, old, c, flags, ret_obj);
	json_decref(old);
	return rc;
}

int ks_store_update_status(struct ks_store *s, const struct ks_key *key,
			   const json_t *obj, const char *manager, unsigned flags,
			   json_t **ret_obj, struct co_error *err)
{
	json_t *old = lookup(s, key);
	if (!old)
		return fail_key(err, -ENOENT, key, "not found");
	if (!json_is_object(obj))
		return co_error_set(err, -EBADMSG, "object is not a JSON object");
	int rc = check_rv(obj, old, key, err);
	if (rc < 0)
		return rc;
	json_t *c = json_deep_copy(old);
	json_t *st = json_object_get(obj, "status");
	if (st)
		json_object_set(c, "status", st);
	else
		json_object_del(c, "status");
	record_update(c, old, manager);
	json_incref(old);
	rc = finish(s, key, old, c, flags, ret_obj);
	json_decref(old);
	return rc;
}

int ks_store_patch(struct ks_store *s, const struct ks_key *key, const json_t *patch,
		   enum ks_patch_type type, bool status, const char *manager,
		   unsigned flags, json_t **ret_obj, struct co_error *err)
{
	json_t *old = lookup(s, key);
	if (!old)
		return fail_key(err, -ENOENT, key, "not found");
	if (!json_is_object(patch))
		return co_error_set(err, -EBADMSG, "patch is not a JSON object");
	if (type == KS_PATCH_STRATEGIC) {
		char *dump = json_dumps(patch, JSON_COMPACT);
		bool directive = dump && (strstr(dump, "\"$patch\"") ||
					  strstr(dump, "\"$retainKeys\"") ||
					  strstr(dump, "\"$setElementOrder"));
		free(dump);
		if (directive)
			return co_error_set(err, -EINVAL,
					    "strategic merge patch directives are not supported");
	}
	int rc = check_rv(patch, old, key, err);
	if (rc < 0)
		return rc;
	json_t *merged = ks_merge_patch(old, patch, type == KS_PATCH_STRATEGIC);
	json_t *c;
	if (status) {
		c = json_deep_copy(old);
		json_t *st = json_object_get(merged, "status");
		if (st)
			json_object_set(c, "status", st);
		else
			json_object_del(c, "status");
		json_decref(merged);
	} else {
		c = merged;
		if (flags & KS_WRITE_KEEP_STATUS) {
			json_t *st = json_object_get(old, "status");
			if (st)
				json_object_set(c, "status", st);
			else
				json_object_del(c, "status");
		}
	}
	/* identity fields cannot be patched */
	json_t *m = meta_of(c);
	json_object_set(m, "name", json_object_get(json_object_get(old, "metadata"), "name"));
	if (ns_of(key)[0])
		json_object_set_new(m, "namespace", json_string(ns_of(key)));
	json_object_set(m, "managedFields",
			json_object_get(json_object_get(old, "metadata"), "managedFields"));
	if (!json_object_get(m, "managedFields"))
		json_object_del(m, "managedFields");
	record_update(c, old, manager);
	json_incref(old);
	rc = finish(s, key, old, c, flags, ret_obj);
	json_decref(old);
	return rc;
}

/* Whether the leaf path ends in a key field of its list-map element. */
static bool is_key_field(const json_t *path)
{
	size_t n = json_array_size(path);
	const char *last = json_string_value(json_array_get(path, n - 1));
	const char *parent = json_string_value(json_array_get(path, n - 2));
	if (strncmp(parent, "k:", 2) || strncmp(last, "f:", 2))
		return false;
	json_t *key = json_loads(parent + 2, 0, NULL);
	bool is_key = json_object_get(key, last + 2) != NULL;
	json_decref(key);
	return is_key;
}

/* Leaves owned by managers other than (manager, "Apply"). */
static json_t *others_leaves(const json_t *old, const char *manager, bool apply_only)
{
	json_t *out = json_array();
	json_t *mf = json_object_get(json_object_get(old, "metadata"), "managedFields");
	size_t i;
	json_t *e;
	json_array_foreach(mf, i, e) {
		const char *mgr = str_or(json_string_value(json_object_get(e, "manager")), "");
		const char *op = str_or(json_string_value(json_object_get(e, "operation")), "");
		if (!strcmp(mgr, manager) && !strcmp(op, "Apply"))
			continue;
		if (apply_only && strcmp(op, "Apply"))
			continue;
		json_t *l = leaves_of(json_object_get(e, "fieldsV1"));
		json_array_extend(out, l);
		json_decref(l);
	}
	return out;
}

int ks_store_apply(struct ks_store *s, const struct ks_key *key, const json_t *obj,
		   const char *manager, bool force, unsigned flags, json_t **ret_obj,
		   bool *ret_created, struct co_error *err)
{
	manager = str_or(manager, "unknown");
	json_t *old = lookup(s, key);
	json_t *cfg = prepare(key, obj, err);
	int rc = 0;
	if (!cfg)
		return -EBADMSG;
	if (!json_is_string(json_object_get(cfg, "apiVersion")) ||
	    !json_is_string(json_object_get(cfg, "kind"))) {
		json_decref(cfg);
		return co_error_set(err, -EBADMSG, "apply config needs apiVersion and kind");
	}
	if (old && (rc = check_rv(cfg, old, key, err)) < 0) {
		json_decref(cfg);
		return rc;
	}
	strip_server_fields(cfg);
	if (flags & KS_WRITE_KEEP_STATUS)
		json_object_del(cfg, "status");

	json_t *fields = json_object();
	fields_build(fields, cfg, NULL, false);
	json_object_del(fields, "f:apiVersion");
	json_object_del(fields, "f:kind");
	json_t *new_leaves = leaves_of(fields);

	if (!old) {
		/* merging into nothing drops the nulls of the config */
		json_t *c = ks_merge_patch(NULL, cfg, true);
		set_managed(c, manager, "Apply",
			    json_string_value(json_object_get(cfg, "apiVersion")), fields, true);
		struct ks_key k2 = *key;
		k2.name = meta_str(c, "name");
		rc = check_name(&k2, str_or(k2.name, ""), err);
		if (rc == 0)
			rc = check_namespace(s, &k2, err);
		if (rc < 0)
			json_decref(c);
		else
			rc = finish(s, &k2, NULL, c, flags, ret_obj);
		if (rc == 0 && ret_created)
			*ret_created = true;
		goto out;
	}

	/* conflicts with other appliers */
	json_t *theirs = others_leaves(old, manager, true);
	json_t *conflicts = json_array();
	size_t i;
	json_t *p;
	json_array_foreach(new_leaves, i, p) {
		const char *last = json_string_value(json_array_get(p, json_array_size(p) - 1));
		if (!strcmp(last, ".") || !leaves_contain(theirs, p))
			continue; /* element membership is shared, never a conflict */
		json_t *have = path_get(old, p), *want = path_get(cfg, p);
		if (have && want && !json_equal(have, want))
			json_array_append(conflicts, p);
	}
	json_decref(theirs);
	json_t *base = json_deep_copy(old);
	if (json_array_size(conflicts) > 0 && !force) {
		struct co_buf b = CO_BUF_INIT;
		co_buf_printf(&b, "Apply failed with %zu conflict%s:",
			      json_array_size(conflicts),
			      json_array_size(conflicts) == 1 ? "" : "s");
		json_array_foreach(conflicts, i, p) {
			co_buf_puts(&b, i ? ", " : " conflict with another manager: ");
			path_format(p, &b);
		}
		rc = co_error_set(err, -EBUSY, "%s", co_buf_cstr(&b));
		co_buf_release(&b);
		json_decref(base);
		json_decref(conflicts);
		goto out;
	}
	if (json_array_size(conflicts) > 0) {
		/* force: the conflicting fields move to this manager */
		json_t *mf = json_object_get(meta_of(base), "managedFields");
		size_t j;
		json_t *e;
		json_array_foreach(mf, j, e) {
			json_t *tree = json_object_get(e, "fieldsV1");
			json_array_foreach(conflicts, i, p)
				tree_remove(tree, p, 0);
		}
	}
	json_decref(conflicts);

	/* fields this manager applied before and omits now */
	json_t *mine_before = NULL;
	json_t *mf = json_object_get(json_object_get(old, "metadata"), "managedFields");
	size_t j;
	json_t *e;
	json_array_foreach(mf, j, e) {
		if (!strcmp(str_or(json_string_value(json_object_get(e, "manager")), ""),
			    manager) &&
		    !strcmp(str_or(json_string_value(json_object_get(e, "operation")), ""),
			    "Apply"))
			mine_before = leaves_of(json_object_get(e, "fieldsV1"));
	}
	if (mine_before) {
		json_t *others = others_leaves(old, manager, false);
		/* whole list-map elements first (found by their key fields), then the
		 * remaining fields, never the key fields of an element that stays */
		for (int pass = 0; pass < 2; pass++) {
			json_array_foreach(mine_before, i, p) {
				size_t n = json_array_size(p);
				const char *last = json_string_value(json_array_get(p, n - 1));
				if ((pass == 0) != !strcmp(last, "."))
					continue;
				if (leaves_contain(new_leaves, p) || leaves_contain(others, p))
					continue;
				if (pass == 1 && n >= 2 && is_key_field(p))
					continue;
				path_remove(base, p);
			}
		}
		json_decref(others);
		json_decref(mine_before);
	}
	json_t *c = ks_merge_patch(base, cfg, true);
	json_decref(base);
	set_managed(c, manager, "Apply", json_string_value(json_object_get(cfg, "apiVersion")),
		    fields, true);
	if (flags & KS_WRITE_KEEP_STATUS) {
		json_t *st = json_object_get(old, "status");
		if (st)
			json_object_set(c, "status", st);
	}
	json_incref(old);
	rc = finish(s, key, old, c, flags, ret_obj);
	json_decref(old);
	if (rc == 0 && ret_created)
		*ret_created = false;
out:
	json_decref(new_leaves);
	json_decref(fields);
	json_decref(cfg);
	return rc;
}

int ks_store_delete(struct ks_store *s, const struct ks_key *key, unsigned flags,
		    json_t **ret_obj, struct co_error *err)
{
	struct kind *k = find_kind(s, key->group, key->resource, false);
	json_t *old = lookup(s, key);
	if (!old || !k)
		return fail_key(err, -ENOENT, key, "not found");
	if (ret_obj)
		*ret_obj = json_incref(old);
	if (flags & KS_WRITE_DRY_RUN)
		return 0;
	if (!strcmp(key->resource, "namespaces") && !str_or(key->group, "")[0]) {
		for (struct kind *ok = s->kinds; ok; ok = ok->next) {
			size_t n;
			const char **keys = sorted_keys(ok, &n);
			char *prefix = obj_key(key->name, "");
			size_t plen = strlen(prefix);
			for (size_t i = 0; i < n; i++)
				if (!strncmp(keys[i], prefix, plen)) {
					char *dup = co_strdup(keys[i]);
					remove_obj(s, ok, dup);
					free(dup);
				}
			free(prefix);
			free(keys);
		}
	}
	char *okey = obj_key(key->ns, key->name);
	remove_obj(s, k, okey);
	free(okey);
	drain_queue(s);
	return 0;
}

int ks_store_bootstrap(struct ks_store *s, struct co_error *err)
{
	for (size_t i = 0; i < sizeof(builtin_ns) / sizeof(builtin_ns[0]); i++) {
		struct ks_key k = { "", "namespaces", NULL, builtin_ns[i] };
		if (lookup(s, &k))
			continue;
		json_t *o = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{}, s:{s:s}}",
				      "apiVersion", "v1", "kind", "Namespace", "metadata",
				      "name", builtin_ns[i], "labels",
				      "kubernetes.io/metadata.name", builtin_ns[i], "spec",
				      "status", "phase", "Active");
		json_object_set_new(json_object_get(o, "spec"), "finalizers",
				    json_pack("[s]", "kubernetes"));
		int rc = ks_store_create(s, &k, o, "kube-apiserver", 0, NULL, err);
		json_decref(o);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- watch ---- */

int ks_store_watch(struct ks_watch **ret_watch, struct ks_store *s,
		   const struct ks_watch_filter *f, uint64_t from_rv, ks_watch_cb cb,
		   void *data, struct co_error *err)
{
	struct ks_watch *w = co_calloc(1, sizeof(*w));
	int rc;
	w->store = s;
	w->cb = cb;
	w->data = data;
	if (f && f->group)
		w->group = co_strdup(f->group);
	if (f && f->group && f->resource)
		w->resource = co_strdup(f->resource);
	if (f && f->ns && f->ns[0])
		w->ns = co_strdup(f->ns);
	if ((rc = ks_selector_parse(&w->labels, 'l', f ? f->label_selector : NULL, err)) < 0 ||
	    (rc = ks_selector_parse(&w->fields, 'f', f ? f->field_selector : NULL, err)) < 0)
		goto fail;
	if (from_rv > 0 && from_rv < s->hist_floor) {
		rc = co_error_set(err, -ERANGE, "too old resource version: %llu (%llu)",
				  (unsigned long long)from_rv,
				  (unsigned long long)s->hist_floor);
		goto fail;
	}
	/* a resourceVersion ahead of the store starts there, as Kubernetes waits for it */
	w->seen_rv = from_rv > s->rv ? from_rv : s->rv;
	w->next = s->watches;
	s->watches = w;
	*ret_watch = w;

	/* replay; the watch may be cancelled from its own callback meanwhile */
	bool was = s->dispatching;
	s->dispatching = true;
	if (from_rv == 0) {
		for (struct kind *k = s->kinds; k && !w->cancelled; k = k->next) {
			if (w->group && (strcmp(w->group, k->group) ||
					 (w->resource && strcmp(w->resource, k->resource))))
				continue;
			size_t n;
			const char **keys = sorted_keys(k, &n);
			json_t *snap = json_array();
			for (size_t i = 0; i < n; i++)
				json_array_append(snap, json_object_get(k->objs, keys[i]));
			free(keys);
			for (size_t i = 0; i < n && !w->cancelled; i++) {
				json_t *o = json_array_get(snap, i);
				if (!watch_wants(w, k, o))
					continue;
				struct ks_event ev = { KS_EVENT_ADDED, k->group, k->resource,
						       s->rv, o };
				w->cb(&ev, w->data);
			}
			json_decref(snap);
		}
	} else {
		uint64_t upto = s->rv;
		for (size_t i = 0; i < s->hist_len && !w->cancelled; i++) {
			struct event *e = &s->history[(s->hist_start + i) % KS_STORE_HISTORY];
			if (e->rv <= from_rv || e->rv > upto || !watch_wants(w, e->kind, e->obj))
				continue;
			struct ks_event ev = { e->type, e->kind->group, e->kind->resource,
					       e->rv, e->obj };
			json_incref(e->obj);
			w->cb(&ev, w->data);
			json_decref(ev.obj);
		}
	}
	s->dispatching = was;
	drain_queue(s);
	return 0;
fail:
	ks_selector_free(w->labels);
	ks_selector_free(w->fields);
	free(w->group);
	free(w->resource);
	free(w->ns);
	free(w);
	return rc;
}

void ks_watch_cancel(struct ks_watch *w)
{
	if (!w || w->cancelled)
		return;
	w->cancelled = true;
	w->store->watches_dirty = true;
	if (!w->store->dispatching)
		unlink_cancelled(w->store);
}
