/*
 * YAML <-> JSON for manifests, with the value rules of sigs.k8s.io/yaml.
 *
 * Loading drives libyaml's event parser and builds jansson values directly, keeping a
 * stack of open collections instead of recursing, so deeply nested input costs heap,
 * not C stack, and is cut off at CO_YAML_MAX_DEPTH. Plain scalars are resolved with the
 * YAML 1.1 table Kubernetes' go-yaml v2 fork uses (y/yes/on/true..., ~/null/empty,
 * Go-style integers with 0x/0o/0b/leading-0 octal and underscores, floats by the
 * go-yaml float pattern); every other scalar style stays a string. JSON cannot hold
 * .inf or .nan, so they are reported as errors, as kubectl does.
 *
 * Anchors are registered when their node is complete (so a node can never contain
 * itself) together with its node count and height. Every alias is a deep copy, so
 * callers may edit one occurrence without touching others; the copies are paid for
 * from a per-stream budget (CO_YAML_MAX_ALIAS_EXPANSION nodes), and an alias may not
 * push the tree past the depth limit. Merge keys are applied when their mapping ends:
 * explicit keys win over merged ones, earlier merge sources over later ones.
 * Duplicate explicit keys are an error, as with kubectl.
 *
 * Dumping feeds libyaml's emitter, which knows YAML's syntax-level quoting rules; this
 * file adds the semantic ones: a string that would resolve to anything but itself
 * under the rules above is double-quoted, and multi-line strings ask for literal
 * block style (libyaml falls back to double quotes where a block cannot hold them).
 */
#include "base/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define TAG_PREFIX "tag:yaml.org,2002:"
#define MAX_FILE_SIZE (64u << 20)

/* ---------------------------------------------------------------------------------
 * Scalar resolution, shared by the loader and by the emitter's quoting decision.
 */

enum scalar_kind {
	SCALAR_STRING,
	SCALAR_NULL,
	SCALAR_BOOL,
	SCALAR_INT,
	SCALAR_REAL,
	SCALAR_NONFINITE, /* .inf/.nan: a float JSON cannot carry */
};

struct scalar {
	enum scalar_kind kind;
	bool b;
	json_int_t i;
	double d;
};

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

static const char *const null_words[] = { "", "~", "null", "Null", "NULL", NULL };
static const char *const true_words[] = { "y", "Y", "yes", "Yes", "YES", "true", "True",
					  "TRUE", "on", "On", "ON", NULL };
static const char *const false_words[] = { "n", "N", "no", "No", "NO", "false", "False",
					   "FALSE", "off", "Off", "OFF", NULL };
static const char *const nonfinite_words[] = { ".nan", ".NaN", ".NAN", ".inf", ".Inf",
					       ".INF", "+.inf", "+.Inf", "+.INF",
					       "-.inf", "-.Inf", "-.INF", NULL };

static int digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return 99;
}

/*
 * Go's strconv.ParseInt(s, 0, 64) then ParseUint, on s without underscores: an
 * optional sign, then 0x/0o/0b or a leading 0 (octal) or decimal digits. Values that
 * only fit in uint64 become reals, as JSON numbers they are. Returns false if s is not
 * an integer in that syntax or does not fit.
 */
static bool parse_int(const char *s, struct scalar *out)
{
	bool neg = false, sign = false;
	unsigned base = 10;
	uint64_t mag = 0;

	if (*s == '+' || *s == '-') {
		neg = *s == '-';
		sign = true;
		s++;
	}
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		s += 2;
	} else if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
		base = 8;
		s += 2;
	} else if (s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) {
		base = 2;
		s += 2;
	} else if (s[0] == '0' && s[1]) {
		base = 8;
		s += 1;
	}
	if (!*s)
		return false;
	for (; *s; s++) {
		int d = digit_value(*s);

		if (d >= (int)base)
			return false;
		if (mag > (UINT64_MAX - (unsigned)d) / base)
			return false;
		mag = mag * base + (unsigned)d;
	}
	if (neg) {
		if (mag > (uint64_t)INT64_MAX + 1)
			return false;
		out->kind = SCALAR_INT;
		out->i = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)mag;
		return true;
	}
	if (mag <= (uint64_t)INT64_MAX) {
		out->kind = SCALAR_INT;
		out->i = (json_int_t)mag;
		return true;
	}
	if (sign) /* ParseUint takes no sign; the float rule below decides */
		return false;
	out->kind = SCALAR_REAL;
	out->d = (double)mag;
	return true;
}

/* go-yaml's float pattern: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool float_syntax(const char *s)
{
	size_t n = 0;

	if (*s == '+' || *s == '-')
		s++;
	if (*s == '.') {
		s++;
		while (*s >= '0' && *s <= '9')
			s++, n++;
		if (!n)
			return false;
	} else {
		while (*s >= '0' && *s <= '9')
			s++, n++;
		if (!n)
			return false;
		if (*s == '.')
			for (s++; *s >= '0' && *s <= '9'; s++)
				;
	}
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		n = 0;
		while (*s >= '0' && *s <= '9')
			s++, n++;
		if (!n)
			return false;
	}
	return *s == '\0';
}

static bool parse_float(const char *s, struct scalar *out)
{
	char *end;
	double d;

	if (!float_syntax(s))
		return false;
	errno = 0;
	d = strtod(s, &end);
	if (*end || (errno == ERANGE && isinf(d)))
		return false; /* Go rejects overflow: the text stays a string */
	out->kind = SCALAR_REAL;
	out->d = d;
	return true;
}

/* Resolve a plain, untagged scalar of len bytes (NUL-terminated at len). */
static void resolve_plain(const char *s, size_t len, struct scalar *out)
{
	char small[64];
	char *num;
	size_t j = 0;
	bool ok;

	out->kind = SCALAR_STRING;
	if (strlen(s) != len)
		return; /* an embedded NUL: no table word or number contains one */
	if (in_list(s, null_words)) {
		out->kind = SCALAR_NULL;
		return;
	}
	if (in_list(s, true_words) || in_list(s, false_words)) {
		out->kind = SCALAR_BOOL;
		out->b = in_list(s, true_words);
		return;
	}
	if (in_list(s, nonfinite_words)) {
		out->kind = SCALAR_NONFINITE;
		return;
	}
	if (!((s[0] >= '0' && s[0] <= '9') || s[0] == '+' || s[0] == '-' || s[0] == '.'))
		return;

	/* go-yaml drops every '_' before trying the numeric forms */
	num = len < sizeof(small) ? small : co_malloc(len + 1);
	for (size_t k = 0; k < len; k++)
		if (s[k] != '_')
			num[j++] = s[k];
	num[j] = '\0';
	ok = parse_int(num, out) || parse_float(num, out);
	if (!ok)
		out->kind = SCALAR_STRING;
	if (num != small)
		free(num);
}

/*
 * Shortest decimal text that reads back as v: plain notation for decimal exponents in
 * [-4, 21), scientific beyond, like Go's JSON encoder. mark_float appends ".0" to
 * integral values so the text still resolves to a float.
 */
static void format_real(char *out, size_t size, double v, bool mark_float)
{
	char sci[64];
	int prec, exp;

	for (prec = 1; prec < 17; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, v);
		if (strtod(sci, NULL) == v)
			break;
	}
	snprintf(sci, sizeof(sci), "%.*e", prec - 1, v);
	exp = atoi(strchr(sci, 'e') + 1);
	if (exp >= -4 && exp < 21)
		snprintf(out, size, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, v);
	else
		snprintf(out, size, "%s", sci);
	if (mark_float && !strpbrk(out, ".e"))
		strncat(out, ".0", size - strlen(out) - 1);
}

/* ---------------------------------------------------------------------------------
 * Loader
 */

struct anchor {
	char *name;
	json_t *node;   /* reference held by the table */
	size_t size;    /* nodes in node, what each alias of it costs */
	size_t height;  /* levels of collections in node */
};

struct frame {
	json_t *node;          /* array or object being filled; owned by the frame */
	char *anchor;          /* to register when the collection ends, or NULL */
	char *key;             /* mapping: key awaiting its value, or NULL */
	bool key_is_merge;     /* mapping: the pending key is a plain "<<" */
	json_t *merges;        /* mapping: array of merge sources, or NULL */
};

struct loader {
	const char *filename;
	const char *data;
	size_t len;
	struct co_error *err;
	json_t *docs;
	json_t *root;          /* value of the document being read */
	struct frame *stack;
	size_t depth, cap;
	struct anchor *anchors;
	size_t n_anchors, cap_anchors;
	json_t *anchor_index;  /* anchor name -> index into anchors (latest wins) */
	size_t expanded;       /* nodes produced by aliases in this stream */
};

static int located(struct loader *l, int code, yaml_mark_t mark, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int located(struct loader *l, int code, yaml_mark_t mark, const char *fmt, ...)
{
	char problem[CO_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, sizeof(problem), fmt, ap);
	va_end(ap);
	return co_error_set(l->err, code, "%s:%zu:%zu: %s", l->filename, mark.line + 1,
			    mark.column + 1, problem);
}

/* Reader errors carry a byte offset only; turn it into a line and column. */
static yaml_mark_t mark_from_offset(const struct loader *l, size_t offset)
{
	yaml_mark_t m = { .index = offset, .line = 0, .column = 0 };

	if (offset > l->len)
		offset = l->len;
	for (size_t i = 0; i < offset; i++) {
		if (l->data[i] == '\n') {
			m.line++;
			m.column = 0;
		} else if (((unsigned char)l->data[i] & 0xc0) != 0x80) {
			m.column++; /* characters, as libyaml counts them */
		}
	}
	return m;
}

static int parser_error(struct loader *l, const yaml_parser_t *p)
{
	yaml_mark_t mark = p->problem_mark;
	const char *problem = p->problem ? p->problem : "malformed yaml";

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return co_error_set(l->err, -ENOMEM, "%s: out of memory parsing yaml",
				    l->filename);
	case YAML_READER_ERROR:
		mark = mark_from_offset(l, p->problem_offset);
		return located(l, -EINVAL, mark, "%s", problem);
	default:
		break;
	}
	if (p->context)
		return located(l, -EINVAL, mark, "%s %s (line %zu column %zu)", problem,
			       p->context, p->context_mark.line + 1,
			       p->context_mark.column + 1);
	return located(l, -EINVAL, mark, "%s", problem);
}

/* Node count and collection height of a finished value (depth-bounded recursion). */
static void measure(const json_t *v, size_t *size, size_t *height)
{
	size_t h = 0, sub_size, sub_height;
	const char *key;
	json_t *child;
	size_t i;

	*size = 1;
	if (json_is_object(v)) {
		json_object_foreach((json_t *)v, key, child) {
			measure(child, &sub_size, &sub_height);
			*size += sub_size;
			if (sub_height > h)
				h = sub_height;
		}
		*height = h + 1;
	} else if (json_is_array(v)) {
		json_array_foreach(v, i, child) {
			measure(child, &sub_size, &sub_height);
			*size += sub_size;
			if (sub_height > h)
				h = sub_height;
		}
		*height = h + 1;
	} else {
		*height = 0;
	}
	(void)key;
}

static void anchor_register(struct loader *l, const char *name, json_t *node)
{
	struct anchor *a;

	if (l->n_anchors == l->cap_anchors) {
		l->cap_anchors = l->cap_anchors ? 2 * l->cap_anchors : 16;
		l->anchors = co_realloc(l->anchors, l->cap_anchors * sizeof(*l->anchors));
	}
	a = &l->anchors[l->n_anchors];
	a->name = co_strdup(name);
	a->node = json_incref(node);
	measure(node, &a->size, &a->height);
	json_object_set_new(l->anchor_index, name,
			    json_integer((json_int_t)l->n_anchors));
	l->n_anchors++;
}

static void anchors_clear(struct loader *l)
{
	for (size_t i = 0; i < l->n_anchors; i++) {
		free(l->anchors[i].name);
		json_decref(l->anchors[i].node);
	}
	l->n_anchors = 0;
	json_object_clear(l->anchor_index);
}

static void frame_release(struct frame *f)
{
	json_decref(f->node);
	json_decref(f->merges);
	free(f->anchor);
	free(f->key);
}

/* A mapping key as a string, the way sigs.k8s.io/yaml turns keys into JSON names. */
static int key_string(struct loader *l, const json_t *v, yaml_mark_t mark, char **ret)
{
	char num[64];

	switch (json_typeof(v)) {
	case JSON_STRING:
		if (strlen(json_string_value(v)) != json_string_length(v))
			return located(l, -EINVAL, mark,
				       "mapping key contains a NUL character");
		*ret = co_strdup(json_string_value(v));
		return 0;
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		break;
	case JSON_REAL:
		format_real(num, sizeof(num), json_real_value(v), false);
		break;
	case JSON_TRUE:
		strcpy(num, "true");
		break;
	case JSON_FALSE:
		strcpy(num, "false");
		break;
	case JSON_NULL:
		strcpy(num, "null");
		break;
	default:
		return located(l, -EINVAL, mark, "mapping keys must be scalars");
	}
	*ret = co_strdup(num);
	return 0;
}

static int check_merge_source(struct loader *l, const json_t *v, yaml_mark_t mark)
{
	size_t i;
	json_t *item;

	if (json_is_object(v))
		return 0;
	if (json_is_array(v)) {
		json_array_foreach(v, i, item)
			if (!json_is_object(item))
				goto bad;
		return 0;
	}
bad:
	return located(l, -EINVAL, mark,
		       "merge key '<<' needs a mapping or a sequence of mappings");
}

static void merge_one(json_t *obj, json_t *src)
{
	const char *key;
	json_t *value;

	json_object_foreach(src, key, value)
		if (!json_object_get(obj, key))
			json_object_set(obj, key, value);
}

static void apply_merges(struct frame *f)
{
	size_t i, j;
	json_t *src, *item;

	json_array_foreach(f->merges, i, src) {
		if (json_is_object(src)) {
			merge_one(f->node, src);
		} else {
			json_array_foreach(src, j, item)
				merge_one(f->node, item);
		}
	}
}

/*
 * Place a finished value v (reference stolen) in the open collection or as the
 * document root. is_merge says v is a plain "<<" scalar (meaningful as a key only).
 */
static int place(struct loader *l, json_t *v, bool is_merge, yaml_mark_t mark)
{
	struct frame *f;
	int r;

	if (l->depth == 0) {
		json_decref(l->root);
		l->root = v;
		return 0;
	}
	f = &l->stack[l->depth - 1];
	if (json_is_array(f->node)) {
		json_array_append_new(f->node, v);
		return 0;
	}
	if (!f->key) {
		f->key_is_merge = is_merge;
		r = key_string(l, v, mark, &f->key);
		json_decref(v);
		if (r < 0)
			return r;
		if (!is_merge && json_object_get(f->node, f->key))
			return located(l, -EINVAL, mark, "duplicate mapping key '%s'",
				       f->key);
		return 0;
	}
	if (f->key_is_merge) {
		r = check_merge_source(l, v, mark);
		if (r < 0) {
			json_decref(v);
			return r;
		}
		if (!f->merges)
			f->merges = json_array();
		json_array_append_new(f->merges, v);
	} else {
		json_object_set_new(f->node, f->key, v);
	}
	free(f->key);
	f->key = NULL;
	f->key_is_merge = false;
	return 0;
}

static int push_collection(struct loader *l, json_t *node, const yaml_char_t *anchor,
			   yaml_mark_t mark)
{
	struct frame *f;

	if (l->depth > 0) {
		f = &l->stack[l->depth - 1];
		if (json_is_object(f->node) && !f->key) {
			json_decref(node);
			return located(l, -EINVAL, mark, "mapping keys must be scalars");
		}
	}
	if (l->depth >= CO_YAML_MAX_DEPTH) {
		json_decref(node);
		return located(l, -E2BIG, mark, "nesting deeper than %d levels",
			       CO_YAML_MAX_DEPTH);
	}
	if (l->depth == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->stack = co_realloc(l->stack, l->cap * sizeof(*l->stack));
	}
	f = &l->stack[l->depth++];
	*f = (struct frame){ .node = node };
	if (anchor)
		f->anchor = co_strdup((const char *)anchor);
	return 0;
}

static int pop_collection(struct loader *l, yaml_mark_t mark)
{
	struct frame f = l->stack[--l->depth];

	if (f.merges)
		apply_merges(&f);
	if (f.anchor)
		anchor_register(l, f.anchor, f.node);
	json_decref(f.merges);
	free(f.anchor);
	free(f.key);
	return place(l, f.node, false, mark);
}

static json_t *scalar_json(const struct scalar *s, const char *text, size_t len)
{
	switch (s->kind) {
	case SCALAR_NULL:
		return json_null();
	case SCALAR_BOOL:
		return json_boolean(s->b);
	case SCALAR_INT:
		return json_integer(s->i);
	case SCALAR_REAL:
		return json_real(s->d);
	default:
		return json_stringn(text, len);
	}
}

/* A scalar under an explicit core-schema tag: the text must fit the tag. */
static bool resolve_tagged(const char *tag, const char *text, size_t len,
			   struct scalar *out)
{
	struct scalar plain;

	resolve_plain(text, len, &plain);
	if (strcmp(tag, "null") == 0)
		return plain.kind == SCALAR_NULL && (*out = plain, true);
	if (strcmp(tag, "bool") == 0)
		return plain.kind == SCALAR_BOOL && (*out = plain, true);
	if (strcmp(tag, "int") == 0)
		return plain.kind == SCALAR_INT && (*out = plain, true);
	/* float: integers widen */
	if (plain.kind == SCALAR_INT) {
		out->kind = SCALAR_REAL;
		out->d = (double)plain.i;
		return true;
	}
	return (plain.kind == SCALAR_REAL || plain.kind == SCALAR_NONFINITE) &&
	       (*out = plain, true);
}

static int on_scalar(struct loader *l, const yaml_event_t *ev)
{
	const char *text = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;
	bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	struct scalar s = { .kind = SCALAR_STRING };
	bool is_merge = false;
	json_t *v;

	if (tag && strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0) {
		const char *t = tag + strlen(TAG_PREFIX);

		if (strcmp(t, "null") == 0 || strcmp(t, "bool") == 0 ||
		    strcmp(t, "int") == 0 || strcmp(t, "float") == 0) {
			if (!resolve_tagged(t, text, len, &s))
				return located(l, -EINVAL, ev->start_mark,
					       "'%.64s' is not a valid !!%s", text, t);
		}
		/* !!str, !!binary, !!timestamp and the rest keep their text */
	} else if (plain && (!tag || strcmp(tag, "!") != 0)) {
		/* untagged or an application tag: resolve as untagged plain */
		resolve_plain(text, len, &s);
		is_merge = !tag && len == 2 && memcmp(text, "<<", 2) == 0;
	}
	if (s.kind == SCALAR_NONFINITE)
		return located(l, -EINVAL, ev->start_mark,
			       "'%s' is a float json cannot represent", text);
	v = scalar_json(&s, text, len);
	if (!v)
		return located(l, -EINVAL, ev->start_mark, "scalar is not valid utf-8");
	if (ev->data.scalar.anchor)
		anchor_register(l, (const char *)ev->data.scalar.anchor, v);
	return place(l, v, is_merge, ev->start_mark);
}

static int on_alias(struct loader *l, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	json_t *idx = json_object_get(l->anchor_index, name);
	const struct anchor *a;
	json_t *copy;

	if (!idx)
		return located(l, -EINVAL, ev->start_mark, "unknown anchor '%s'", name);
	a = &l->anchors[json_integer_value(idx)];
	if (a->size > CO_YAML_MAX_ALIAS_EXPANSION - l->expanded)
		return located(l, -E2BIG, ev->start_mark,
			       "aliases expand to more than %d nodes",
			       CO_YAML_MAX_ALIAS_EXPANSION);
	if (l->depth + a->height > CO_YAML_MAX_DEPTH)
		return located(l, -E2BIG, ev->start_mark,
			       "alias '%s' nests deeper than %d levels", name,
			       CO_YAML_MAX_DEPTH);
	l->expanded += a->size;
	copy = json_deep_copy(a->node);
	if (!copy)
		return co_error_set(l->err, -ENOMEM, "%s: out of memory", l->filename);
	return place(l, copy, false, ev->start_mark);
}

static int on_event(struct loader *l, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		anchors_clear(l);
		json_decref(l->root);
		l->root = NULL;
		return 0;
	case YAML_DOCUMENT_END_EVENT:
		/* empty documents, and documents that are only null, carry no object */
		if (l->root && !json_is_null(l->root))
			json_array_append(l->docs, l->root);
		json_decref(l->root);
		l->root = NULL;
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(l, ev);
	case YAML_ALIAS_EVENT:
		return on_alias(l, ev);
	case YAML_SEQUENCE_START_EVENT:
		return push_collection(l, json_array(), ev->data.sequence_start.anchor,
				       ev->start_mark);
	case YAML_MAPPING_START_EVENT:
		return push_collection(l, json_object(), ev->data.mapping_start.anchor,
				       ev->start_mark);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return pop_collection(l, ev->start_mark);
	default:
		return 0;
	}
}

int co_yaml_load_all(json_t **ret_docs, const char *data, size_t len,
		     const char *filename, struct co_error *err)
{
	struct loader l = {
		.filename = filename ? filename : "<input>",
		.data = data ? data : "",
		.len = data ? len : 0,
		.err = err,
	};
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int r = 0;

	if (!yaml_parser_initialize(&parser))
		return co_error_set(err, -ENOMEM, "%s: out of memory", l.filename);
	yaml_parser_set_input_string(&parser, (const unsigned char *)l.data, l.len);
	l.docs = json_array();
	l.anchor_index = json_object();

	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			r = parser_error(&l, &parser);
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		r = on_event(&l, &ev);
		yaml_event_delete(&ev);
		if (r < 0)
			break;
	}

	while (l.depth > 0)
		frame_release(&l.stack[--l.depth]);
	free(l.stack);
	anchors_clear(&l);
	free(l.anchors);
	json_decref(l.anchor_index);
	json_decref(l.root);
	yaml_parser_delete(&parser);
	if (r < 0) {
		json_decref(l.docs);
		return r;
	}
	*ret_docs = l.docs;
	return 0;
}

int co_yaml_load_one(json_t **ret_doc, const char *data, size_t len,
		     const char *filename, struct co_error *err)
{
	json_t *docs;
	size_t n;
	int r;

	r = co_yaml_load_all(&docs, data, len, filename, err);
	if (r < 0)
		return r;
	n = json_array_size(docs);
	if (n != 1) {
		json_decref(docs);
		return co_error_set(err, -EINVAL,
				    "%s: expected one yaml document, found %zu",
				    filename ? filename : "<input>", n);
	}
	*ret_doc = json_incref(json_array_get(docs, 0));
	json_decref(docs);
	return 0;
}

int co_yaml_load_file(json_t **ret_docs, const char *path, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	char chunk[65536];
	size_t n;
	FILE *f;
	int r;

	f = fopen(path, "rb");
	if (!f)
		return co_error_set(err, -errno, "open '%s': %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > MAX_FILE_SIZE) {
			fclose(f);
			co_buf_release(&b);
			return co_error_set(err, -E2BIG, "'%s': larger than %u bytes",
					    path, MAX_FILE_SIZE);
		}
		co_buf_append(&b, chunk, n);
	}
	if (ferror(f)) {
		r = co_error_set(err, -EIO, "read '%s': i/o error", path);
		fclose(f);
		co_buf_release(&b);
		return r;
	}
	fclose(f);
	r = co_yaml_load_all(ret_docs, co_buf_cstr(&b), b.len, path, err);
	co_buf_release(&b);
	return r;
}

/* ---------------------------------------------------------------------------------
 * Emitter
 */

struct dumper {
	yaml_emitter_t emitter;
	struct co_error *err;
};

static int write_to_buf(void *data, unsigned char *buffer, size_t size)
{
	co_buf_append(data, buffer, size);
	return 1;
}

static int emit(struct dumper *d, yaml_event_t *ev)
{
	if (!yaml_emitter_emit(&d->emitter, ev))
		return co_error_set(d->err, -EINVAL, "yaml emitter: %s",
				    d->emitter.problem ? d->emitter.problem : "failed");
	return 0;
}

static int emit_scalar(struct dumper *d, const char *text, size_t len,
		       yaml_scalar_style_t style)
{
	yaml_event_t ev;

	if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)len,
					  1, 1, style))
		return co_error_set(d->err, -ENOMEM, "yaml emitter: out of memory");
	return emit(d, &ev);
}

static int emit_string(struct dumper *d, const char *s, size_t len)
{
	struct scalar sc;

	if (len > INT32_MAX)
		return co_error_set(d->err, -E2BIG, "string too long for yaml");
	/*
	 * A reader normalises \r, \r\n and NEL to \n inside block scalars, so only
	 * strings whose breaks are all \n can be literal blocks; any other break is
	 * kept exactly by double quotes, where it is escaped.
	 */
	if (memchr(s, '\r', len) || memmem(s, len, "\xc2\x85", 2) ||
	    memmem(s, len, "\xe2\x80\xa8", 3) || memmem(s, len, "\xe2\x80\xa9", 3))
		return emit_scalar(d, s, len, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
	if (memchr(s, '\n', len))
		return emit_scalar(d, s, len, YAML_LITERAL_SCALAR_STYLE);
	resolve_plain(s, len, &sc);
	if (sc.kind != SCALAR_STRING || (len == 2 && memcmp(s, "<<", 2) == 0))
		return emit_scalar(d, s, len, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
	return emit_scalar(d, s, len, YAML_PLAIN_SCALAR_STYLE);
}

static int emit_value(struct dumper *d, const json_t *v, size_t depth)
{
	yaml_event_t ev;
	char num[64];
	const char *key;
	json_t *child;
	size_t i;
	int r;

	if (depth > CO_YAML_MAX_DEPTH)
		return co_error_set(d->err, -E2BIG, "json nests deeper than %d levels",
				    CO_YAML_MAX_DEPTH);
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1,
						    json_object_size(v) ?
						    YAML_BLOCK_MAPPING_STYLE :
						    YAML_FLOW_MAPPING_STYLE);
		if ((r = emit(d, &ev)) < 0)
			return r;
		json_object_foreach((json_t *)v, key, child) {
			if ((r = emit_string(d, key, strlen(key))) < 0 ||
			    (r = emit_value(d, child, depth + 1)) < 0)
				return r;
		}
		yaml_mapping_end_event_initialize(&ev);
		return emit(d, &ev);
	case JSON_ARRAY:
		yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1,
						     json_array_size(v) ?
						     YAML_BLOCK_SEQUENCE_STYLE :
						     YAML_FLOW_SEQUENCE_STYLE);
		if ((r = emit(d, &ev)) < 0)
			return r;
		json_array_foreach(v, i, child) {
			if ((r = emit_value(d, child, depth + 1)) < 0)
				return r;
		}
		yaml_sequence_end_event_initialize(&ev);
		return emit(d, &ev);
	case JSON_STRING:
		return emit_string(d, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(v));
		return emit_scalar(d, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
	case JSON_REAL:
		format_real(num, sizeof(num), json_real_value(v), true);
		return emit_scalar(d, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
	case JSON_TRUE:
		return emit_scalar(d, "true", 4, YAML_PLAIN_SCALAR_STYLE);
	case JSON_FALSE:
		return emit_scalar(d, "false", 5, YAML_PLAIN_SCALAR_STYLE);
	default:
		return emit_scalar(d, "null", 4, YAML_PLAIN_SCALAR_STYLE);
	}
}

int co_yaml_dump(struct co_buf *out, const json_t *doc, struct co_error *err)
{
	struct dumper d = { .err = err };
	struct co_buf tmp = CO_BUF_INIT;
	yaml_event_t ev;
	int r;

	if (!doc)
		return co_error_set(err, -EINVAL, "yaml dump: no document");
	if (!yaml_emitter_initialize(&d.emitter))
		return co_error_set(err, -ENOMEM, "yaml emitter: out of memory");
	/* written to a scratch buffer so a failure leaves out as it was */
	yaml_emitter_set_output(&d.emitter, write_to_buf, &tmp);
	yaml_emitter_set_unicode(&d.emitter, 1);
	yaml_emitter_set_width(&d.emitter, -1);
	yaml_emitter_set_indent(&d.emitter, 2);

	yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
	if ((r = emit(&d, &ev)) < 0)
		goto out;
	yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
	if ((r = emit(&d, &ev)) < 0)
		goto out;
	if ((r = emit_value(&d, doc, 0)) < 0)
		goto out;
	yaml_document_end_event_initialize(&ev, 1);
	if ((r = emit(&d, &ev)) < 0)
		goto out;
	yaml_stream_end_event_initialize(&ev);
	if ((r = emit(&d, &ev)) < 0)
		goto out;
	if (!yaml_emitter_flush(&d.emitter)) {
		r = co_error_set(err, -EIO, "yaml emitter: flush failed");
		goto out;
	}
	co_buf_append(out, tmp.data ? tmp.data : "", tmp.len);
out:
	yaml_emitter_delete(&d.emitter);
	co_buf_release(&tmp);
	return r;
}

int co_yaml_dump_all(struct co_buf *out, const json_t *docs, struct co_error *err)
{
	struct co_buf tmp = CO_BUF_INIT;
	json_t *doc;
	size_t i;
	int r = 0;

	if (!json_is_array(docs))
		return co_error_set(err, -EINVAL,
				    "yaml dump: documents must be an array");
	json_array_foreach(docs, i, doc) {
		if (i > 0)
			co_buf_puts(&tmp, "---\n");
		if ((r = co_yaml_dump(&tmp, doc, err)) < 0)
			goto out;
	}
	co_buf_append(out, tmp.data ? tmp.data : "", tmp.len);
out:
	co_buf_release(&tmp);
	return r;
}
