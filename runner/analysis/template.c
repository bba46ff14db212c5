/*
 * Template rendering for metric queries: a single left-to-right scan that copies
 * text and replaces each "{{ name }}". No conditionals, loops or filters: a metric
 * query needs none, and a tiny language is easy to reason about when the result is
 * sent to a server. Names are identifiers ([A-Za-z_][A-Za-z0-9_]*, bounded length).
 */
#include "analysis/template.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

static void append_escaped(struct co_buf *out, const char *v, enum co_template_escape e)
{
	if (e == CO_TEMPLATE_RAW) {
		co_buf_puts(out, v);
		return;
	}
	for (; *v; v++) {
		switch (*v) {
		case '\\':
			co_buf_puts(out, "\\\\");
			break;
		case '"':
			co_buf_puts(out, "\\\"");
			break;
		case '\n':
			co_buf_puts(out, "\\n");
			break;
		default:
			co_buf_putc(out, *v);
		}
	}
}

/* Parse "{{ name }}" at s (which starts with "{{"); on success the name is copied to
 * name and the length of the placeholder returned, else 0. */
static size_t parse_placeholder(const char *s, char *name, size_t name_size)
{
	const char *p = s + 2, *start;
	size_t len;

	while (*p == ' ' || *p == '\t')
		p++;
	start = p;
	if (!(isalpha((unsigned char)*p) || *p == '_'))
		return 0;
	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	len = (size_t)(p - start);
	if (len >= name_size)
		return 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (p[0] != '}' || p[1] != '}')
		return 0;
	memcpy(name, start, len);
	name[len] = '\0';
	return (size_t)(p + 2 - s);
}

int co_template_render(struct co_buf *out, const char *tmpl,
		       const struct co_template_var *vars, size_t nvars,
		       enum co_template_escape escape, struct co_error *err)
{
	const char *p = tmpl;

	while (*p) {
		const char *open = strstr(p, "{{");
		char name[CO_TEMPLATE_MAX_NAME];
		size_t len, i;

		if (!open) {
			co_buf_puts(out, p);
			break;
		}
		co_buf_append(out, p, (size_t)(open - p));
		len = parse_placeholder(open, name, sizeof(name));
		if (!len)
			return co_error_set(err, -EINVAL,
					    "unterminated or malformed '{{' at offset %zu",
					    (size_t)(open - tmpl));
		for (i = 0; i < nvars; i++)
			if (vars[i].value && strcmp(vars[i].name, name) == 0)
				break;
		if (i == nvars)
			return co_error_set(err, -EINVAL,
					    "unknown variable '%s' in template at offset %zu",
					    name, (size_t)(open - tmpl));
		append_escaped(out, vars[i].value, escape);
		p = open + len;
	}
	return 0;
}

int co_template_uses(const char *tmpl, const char *name)
{
	const char *p = tmpl;

	while ((p = strstr(p, "{{")) != NULL) {
		char found[CO_TEMPLATE_MAX_NAME];
		size_t len = parse_placeholder(p, found, sizeof(found));

		if (len && strcmp(found, name) == 0)
			return 1;
		p += len ? len : 2;
	}
	return 0;
}
