/*
 * Query templates: "{{ name }}" placeholders in a text (a PromQL query) replaced by
 * values, as Flagger's metric templates and cutover's metric config write them:
 *
 *   sum(rate(http_requests_total{cluster="{{ cluster }}",code=~"5.."}[{{ interval }}]))
 *
 * Spaces inside the braces are optional. A placeholder naming no known variable, or an
 * unterminated "{{", is an error rather than silently left in the query. Values can be
 * escaped for a double-quoted PromQL string (backslash, quote, newline), so a cluster
 * name can never end the label matcher it is substituted into.
 */
#ifndef CO_ANALYSIS_TEMPLATE_H
#define CO_ANALYSIS_TEMPLATE_H

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

#define CO_TEMPLATE_MAX_NAME 64

struct co_template_var {
	const char *name;    /* e.g. "cluster" */
	const char *value;   /* NULL counts as unknown */
};

enum co_template_escape {
	CO_TEMPLATE_RAW,     /* values inserted as they are */
	CO_TEMPLATE_PROMQL,  /* values escaped for a "..." PromQL string */
};

/*
 * Append tmpl with its placeholders replaced to out. vars[0..nvars) are looked up by
 * name. Returns 0, or -EINVAL with err ("unknown variable 'x' in template at offset
 * 12", "unterminated '{{' at offset 3"); out may then hold a partial rendering.
 */
int co_template_render(struct co_buf *out, const char *tmpl,
		       const struct co_template_var *vars, size_t nvars,
		       enum co_template_escape escape, struct co_error *err);

/* Whether tmpl mentions variable name (for config validation). */
int co_template_uses(const char *tmpl, const char *name);

#endif
