/*
 * Metrics registry and text rendering. Series live in a list per family, kept in
 * creation order (output stays stable for diffs and tests); lookups are linear, which
 * is fine for the few dozen series a runner has.
 */
#include "base/metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
	struct series *next;
	char **values;
	double value;          /* counter/gauge; histogram: sum */
	unsigned long long count;
	unsigned long long *bucket_counts;
};

struct co_metric {
	struct co_metric *next;
	char *name;
	char *help;
	enum co_metric_type type;
	char **labels;
	size_t n_labels;
	double *buckets;
	size_t n_buckets;
	struct series *series;
	struct series **tail;
};

struct co_metrics {
	struct co_metric *families;
	struct co_metric **tail;
};

int co_metrics_valid_name(const char *name, int label)
{
	if (!name || !*name)
		return 0;
	for (const char *c = name; *c; c++) {
		int alpha = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || *c == '_' ||
			    (!label && *c == ':');
		int digit = *c >= '0' && *c <= '9';

		if (!alpha && !(digit && c != name))
			return 0;
	}
	return !(label && strncmp(name, "__", 2) == 0);
}

struct co_metrics *co_metrics_new(void)
{
	struct co_metrics *m = co_calloc(1, sizeof(*m));

	m->tail = &m->families;
	return m;
}

static void free_strv(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void co_metrics_free(struct co_metrics *m)
{
	struct co_metric *f, *fn;
	struct series *s, *sn;

	if (!m)
		return;
	for (f = m->families; f; f = fn) {
		fn = f->next;
		for (s = f->series; s; s = sn) {
			sn = s->next;
			free_strv(s->values, f->n_labels);
			free(s->bucket_counts);
			free(s);
		}
		free(f->name);
		free(f->help);
		free_strv(f->labels, f->n_labels);
		free(f->buckets);
		free(f);
	}
	free(m);
}

struct co_metric *co_metrics_family(struct co_metrics *m, const char *name,
				    const char *help, enum co_metric_type type,
				    const char *const *label_names, const double *buckets,
				    size_t n_buckets)
{
	struct co_metric *f;
	size_t n = 0;

	for (f = m->families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f->type == type ? f : NULL;
	if (!co_metrics_valid_name(name, 0))
		return NULL;
	while (label_names && label_names[n]) {
		if (!co_metrics_valid_name(label_names[n], 1) ||
		    (type == CO_METRIC_HISTOGRAM && strcmp(label_names[n], "le") == 0))
			return NULL;
		n++;
	}
	for (size_t i = 1; i < n_buckets; i++)
		if (!(buckets[i] > buckets[i - 1]))
			return NULL;
	f = co_calloc(1, sizeof(*f));
	f->name = co_strdup(name);
	f->help = co_strdup(help ? help : "");
	f->type = type;
	f->n_labels = n;
	f->labels = co_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		f->labels[i] = co_strdup(label_names[i]);
	if (type == CO_METRIC_HISTOGRAM && n_buckets) {
		f->buckets = co_calloc(n_buckets, sizeof(double));
		memcpy(f->buckets, buckets, n_buckets * sizeof(double));
		f->n_buckets = n_buckets;
	}
	f->tail = &f->series;
	*m->tail = f;
	m->tail = &f->next;
	return f;
}

static size_t count_values(const char *const *values)
{
	size_t n = 0;

	while (values && values[n])
		n++;
	return n;
}

static struct series *find_series(const struct co_metric *f, const char *const *values)
{
	for (struct series *s = f->series; s; s = s->next) {
		size_t i;

		for (i = 0; i < f->n_labels; i++)
			if (strcmp(s->values[i], values[i]) != 0)
				break;
		if (i == f->n_labels)
			return s;
	}
	return NULL;
}

static struct series *get_series(struct co_metric *f, const char *const *values)
{
	struct series *s;

	if (!f || count_values(values) != f->n_labels)
		return NULL;
	s = find_series(f, values);
	if (s)
		return s;
	s = co_calloc(1, sizeof(*s));
	s->values = co_calloc(f->n_labels + 1, sizeof(char *));
	for (size_t i = 0; i < f->n_labels; i++)
		s->values[i] = co_strdup(values[i]);
	if (f->type == CO_METRIC_HISTOGRAM)
		s->bucket_counts = co_calloc(f->n_buckets + 1, sizeof(unsigned long long));
	*f->tail = s;
	f->tail = &s->next;
	return s;
}

void co_metric_add(struct co_metric *f, const char *const *values, double v)
{
	struct series *s = get_series(f, values);

	if (!s || f->type == CO_METRIC_HISTOGRAM)
		return;
	if (f->type == CO_METRIC_COUNTER && v < 0)
		return; /* counters only go up */
	s->value += v;
}

void co_metric_set(struct co_metric *f, const char *const *values, double v)
{
	struct series *s = get_series(f, values);

	if (s && f->type == CO_METRIC_GAUGE)
		s->value = v;
}

void co_metric_observe(struct co_metric *f, const char *const *values, double v)
{
	struct series *s = get_series(f, values);

	if (!s || f->type != CO_METRIC_HISTOGRAM || isnan(v))
		return;
	s->value += v;
	s->count++;
	for (size_t i = 0; i < f->n_buckets; i++)
		if (v <= f->buckets[i])
			s->bucket_counts[i]++;
}

double co_metric_get(const struct co_metric *f, const char *const *values)
{
	const struct series *s;

	if (!f || count_values(values) != f->n_labels)
		return 0;
	s = find_series(f, values);
	return s ? s->value : 0;
}

static void put_escaped(struct co_buf *out, const char *s, int help)
{
	for (; *s; s++) {
		if (*s == '\\')
			co_buf_puts(out, "\\\\");
		else if (*s == '\n')
			co_buf_puts(out, "\\n");
		else if (*s == '"' && !help)
			co_buf_puts(out, "\\\"");
		else
			co_buf_putc(out, *s);
	}
}

static void put_number(struct co_buf *out, double v)
{
	if (isnan(v))
		co_buf_puts(out, "NaN");
	else if (isinf(v))
		co_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
	else if (v == (double)(long long)v && fabs(v) < 1e15)
		co_buf_printf(out, "%lld", (long long)v);
	else
		co_buf_printf(out, "%.17g", v);
}

static void put_labels(struct co_buf *out, const struct co_metric *f, const struct series *s,
		       const char *le)
{
	if (f->n_labels == 0 && !le)
		return;
	co_buf_putc(out, '{');
	for (size_t i = 0; i < f->n_labels; i++) {
		co_buf_printf(out, "%s%s=\"", i ? "," : "", f->labels[i]);
		put_escaped(out, s->values[i], 0);
		co_buf_putc(out, '"');
	}
	if (le)
		co_buf_printf(out, "%sle=\"%s\"", f->n_labels ? "," : "", le);
	co_buf_putc(out, '}');
}

void co_metrics_render(const struct co_metrics *m, struct co_buf *out)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };

	for (const struct co_metric *f = m->families; f; f = f->next) {
		co_buf_printf(out, "# HELP %s ", f->name);
		put_escaped(out, f->help, 1);
		co_buf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
		for (const struct series *s = f->series; s; s = s->next) {
			if (f->type != CO_METRIC_HISTOGRAM) {
				co_buf_puts(out, f->name);
				put_labels(out, f, s, NULL);
				co_buf_putc(out, ' ');
				put_number(out, s->value);
				co_buf_putc(out, '\n');
				continue;
			}
			for (size_t i = 0; i <= f->n_buckets; i++) {
				struct co_buf le = CO_BUF_INIT;

				if (i < f->n_buckets)
					put_number(&le, f->buckets[i]);
				else
					co_buf_puts(&le, "+Inf");
				co_buf_printf(out, "%s_bucket", f->name);
				put_labels(out, f, s, co_buf_cstr(&le));
				co_buf_printf(out, " %llu\n",
					      i < f->n_buckets ? s->bucket_counts[i] : s->count);
				co_buf_release(&le);
			}
			co_buf_printf(out, "%s_sum", f->name);
			put_labels(out, f, s, NULL);
			co_buf_putc(out, ' ');
			put_number(out, s->value);
			co_buf_printf(out, "\n%s_count", f->name);
			put_labels(out, f, s, NULL);
			co_buf_printf(out, " %llu\n", s->count);
		}
	}
}
