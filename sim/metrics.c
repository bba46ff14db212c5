/*
 * Per-cluster metrics registry and its Prometheus text exposition.
 *
 * Series are few (apps x versions x codes per cluster), so they live in plain arrays
 * searched linearly; rendering groups them by metric family with one HELP/TYPE header
 * each, as the text format requires. Histograms keep cumulative bucket counts, so
 * rendering is a straight walk.
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim/metrics.h"

const double ks_metrics_buckets[KS_METRICS_NBUCKETS] = {
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

struct counter {
	char *ns, *app, *version;
	int code;
	uint64_t n;
};

struct histo {
	char *ns, *app, *version;
	uint64_t buckets[KS_METRICS_NBUCKETS]; /* cumulative */
	uint64_t count;
	double sum;
};

struct ks_metrics {
	struct counter *counters;
	size_t n_counters, cap_counters;
	struct histo *histos;
	size_t n_histos, cap_histos;
	uint64_t total;
};

struct ks_metrics *ks_metrics_new(void)
{
	return co_calloc(1, sizeof(struct ks_metrics));
}

void ks_metrics_free(struct ks_metrics *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_counters; i++) {
		free(m->counters[i].ns);
		free(m->counters[i].app);
		free(m->counters[i].version);
	}
	for (size_t i = 0; i < m->n_histos; i++) {
		free(m->histos[i].ns);
		free(m->histos[i].app);
		free(m->histos[i].version);
	}
	free(m->counters);
	free(m->histos);
	free(m);
}

static bool same(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

void ks_metrics_observe(struct ks_metrics *m, const char *ns, const char *app,
			const char *version, int code, double seconds)
{
	struct counter *c = NULL;
	struct histo *h = NULL;
	size_t i;

	for (i = 0; i < m->n_counters; i++) {
		struct counter *x = &m->counters[i];

		if (x->code == code && same(x->ns, ns) && same(x->app, app) &&
		    same(x->version, version)) {
			c = x;
			break;
		}
	}
	if (!c) {
		if (m->n_counters == m->cap_counters) {
			m->cap_counters = m->cap_counters ? 2 * m->cap_counters : 8;
			m->counters = co_realloc(m->counters,
						 m->cap_counters * sizeof(*m->counters));
		}
		c = &m->counters[m->n_counters++];
		*c = (struct counter){co_strdup(ns ? ns : ""), co_strdup(app ? app : ""),
				      co_strdup(version ? version : ""), code, 0};
	}
	c->n++;
	for (i = 0; i < m->n_histos; i++) {
		struct histo *x = &m->histos[i];

		if (same(x->ns, ns) && same(x->app, app) && same(x->version, version)) {
			h = x;
			break;
		}
	}
	if (!h) {
		if (m->n_histos == m->cap_histos) {
			m->cap_histos = m->cap_histos ? 2 * m->cap_histos : 8;
			m->histos =
				co_realloc(m->histos, m->cap_histos * sizeof(*m->histos));
		}
		h = &m->histos[m->n_histos++];
		memset(h, 0, sizeof(*h));
		h->ns = co_strdup(ns ? ns : "");
		h->app = co_strdup(app ? app : "");
		h->version = co_strdup(version ? version : "");
	}
	for (i = 0; i < KS_METRICS_NBUCKETS; i++)
		if (seconds <= ks_metrics_buckets[i])
			h->buckets[i]++;
	h->count++;
	h->sum += seconds;
	m->total++;
}

uint64_t ks_metrics_requests(const struct ks_metrics *m)
{
	return m->total;
}

double ks_cost_cpu_seconds(double uptime_s, uint64_t requests, double cpu_cost_ms,
			   double overhead)
{
	double s = KS_COST_BASE_CORES * uptime_s +
		   (double)requests * (KS_COST_REQUEST_MS + cpu_cost_ms) / 1000.0;

	return s * (overhead > 0 ? overhead : 1.0);
}

double ks_cost_memory_bytes(double memory_mb, uint64_t inflight, double overhead)
{
	/* each in-flight request holds a 64 KiB buffer */
	double b = (KS_COST_BASE_MB + memory_mb) * 1048576.0 + (double)inflight * 65536.0;

	return b * (overhead > 0 ? overhead : 1.0);
}

void ks_metrics_label_value(struct co_buf *out, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '\\')
			co_buf_puts(out, "\\\\");
		else if (*s == '"')
			co_buf_puts(out, "\\\"");
		else if (*s == '\n')
			co_buf_puts(out, "\\n");
		else
			co_buf_putc(out, *s);
	}
}

/* Prometheus clients print the shortest representation that reads back to the same
 * double (Go's FormatFloat(v, 'g', -1, 64)); find the smallest %g precision that
 * round-trips. Integral values print without exponent. */
static void num(struct co_buf *out, double v)
{
	if (isnan(v))
		co_buf_puts(out, "NaN");
	else if (isinf(v))
		co_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 1e15)
		co_buf_printf(out, "%.0f", v);
	else {
		char tmp[40];

		for (int prec = 1; prec <= 17; prec++) {
			snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
			if (strtod(tmp, NULL) == v)
				break;
		}
		co_buf_puts(out, tmp);
	}
}

static void lbl(struct co_buf *out, const char *name, const char *v, bool first)
{
	co_buf_printf(out, "%s%s=\"", first ? "" : ",", name);
	ks_metrics_label_value(out, v);
	co_buf_putc(out, '"');
}

static void app_labels(struct co_buf *out, const char *ns, const char *app,
		       const char *version)
{
	lbl(out, "namespace", ns, true);
	lbl(out, "app", app, false);
	lbl(out, "version", version, false);
}

static void header(struct co_buf *out, const char *name, const char *type,
		   const char *help)
{
	co_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void ks_metrics_render(struct co_buf *out, const struct ks_metrics *m,
		       const struct ks_metrics_extra *x)
{
	size_t i, j;

	header(out, "http_requests_total", "counter",
	       "Total HTTP requests served by app pods.");
	for (i = 0; i < m->n_counters; i++) {
		const struct counter *c = &m->counters[i];

		co_buf_puts(out, "http_requests_total{");
		app_labels(out, c->ns, c->app, c->version);
		co_buf_printf(out, ",code=\"%d\"} %llu\n", c->code,
			      (unsigned long long)c->n);
	}
	header(out, "http_request_duration_seconds", "histogram",
	       "Duration of HTTP requests served by app pods.");
	for (i = 0; i < m->n_histos; i++) {
		const struct histo *h = &m->histos[i];

		for (j = 0; j < KS_METRICS_NBUCKETS; j++) {
			co_buf_puts(out, "http_request_duration_seconds_bucket{");
			app_labels(out, h->ns, h->app, h->version);
			co_buf_puts(out, ",le=\"");
			num(out, ks_metrics_buckets[j]);
			co_buf_printf(out, "\"} %llu\n",
				      (unsigned long long)h->buckets[j]);
		}
		co_buf_puts(out, "http_request_duration_seconds_bucket{");
		app_labels(out, h->ns, h->app, h->version);
		co_buf_printf(out, ",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
		co_buf_puts(out, "http_request_duration_seconds_sum{");
		app_labels(out, h->ns, h->app, h->version);
		co_buf_puts(out, "} ");
		num(out, h->sum);
		co_buf_puts(out, "\nhttp_request_duration_seconds_count{");
		app_labels(out, h->ns, h->app, h->version);
		co_buf_printf(out, "} %llu\n", (unsigned long long)h->count);
	}
	if (!x)
		return;
	header(out, "container_cpu_usage_seconds_total", "counter",
	       "Cumulative cpu time consumed in seconds.");
	for (i = 0; i < x->n_pods; i++) {
		co_buf_puts(out, "container_cpu_usage_seconds_total{");
		lbl(out, "namespace", x->pods[i].ns, true);
		lbl(out, "pod", x->pods[i].pod, false);
		lbl(out, "container", x->pods[i].container, false);
		co_buf_puts(out, "} ");
		num(out, x->pods[i].cpu_seconds);
		co_buf_putc(out, '\n');
	}
	header(out, "container_memory_working_set_bytes", "gauge",
	       "Current working set in bytes.");
	for (i = 0; i < x->n_pods; i++) {
		co_buf_puts(out, "container_memory_working_set_bytes{");
		lbl(out, "namespace", x->pods[i].ns, true);
		lbl(out, "pod", x->pods[i].pod, false);
		lbl(out, "container", x->pods[i].container, false);
		co_buf_puts(out, "} ");
		num(out, x->pods[i].memory_bytes);
		co_buf_putc(out, '\n');
	}
	header(out, "flagger_canary_status", "gauge",
	       "Last canary analysis result (0 running, 1 successful, 2 failed).");
	for (i = 0; i < x->n_canaries; i++) {
		co_buf_puts(out, "flagger_canary_status{");
		lbl(out, "name", x->canaries[i].name, true);
		lbl(out, "namespace", x->canaries[i].ns, false);
		co_buf_printf(out, "} %d\n", x->canaries[i].status);
	}
	header(out, "flagger_canary_weight", "gauge",
	       "The virtual service destination weight current value.");
	for (i = 0; i < x->n_canaries; i++) {
		const struct ks_metrics_canary *c = &x->canaries[i];

		co_buf_puts(out, "flagger_canary_weight{");
		lbl(out, "workload", c->target, true);
		lbl(out, "namespace", c->ns, false);
		co_buf_printf(out, "} %d\nflagger_canary_weight{workload=\"", c->weight);
		ks_metrics_label_value(out, c->target);
		co_buf_puts(out, "-primary\",");
		lbl(out, "namespace", c->ns, true);
		co_buf_printf(out, "} %d\n", 100 - c->weight);
	}
	header(out, "flagger_canary_duration_seconds", "gauge",
	       "Seconds the last canary analysis took.");
	for (i = 0; i < x->n_canaries; i++) {
		co_buf_puts(out, "flagger_canary_duration_seconds{");
		lbl(out, "name", x->canaries[i].name, true);
		lbl(out, "namespace", x->canaries[i].ns, false);
		co_buf_puts(out, "} ");
		num(out, x->canaries[i].duration_seconds);
		co_buf_putc(out, '\n');
	}
	header(out, "kubesim_version_overhead", "gauge",
	       "Resource overhead factor applied to this cluster's pods.");
	co_buf_puts(out, "kubesim_version_overhead ");
	num(out, x->overhead > 0 ? x->overhead : 1.0);
	co_buf_putc(out, '\n');
	header(out, "kubesim_cluster_info", "gauge", "The simulated cluster.");
	co_buf_puts(out, "kubesim_cluster_info{");
	lbl(out, "cluster", x->cluster ? x->cluster : "", true);
	lbl(out, "version", x->version ? x->version : "", false);
	co_buf_puts(out, "} 1\n");
	header(out, "kubesim_objects", "gauge", "Objects in the cluster's store.");
	co_buf_printf(out, "kubesim_objects %zu\n", x->objects);
	header(out, "kubesim_pods", "gauge", "Simulated pods running.");
	co_buf_printf(out, "kubesim_pods %zu\n", x->n_pods);
	header(out, "kubesim_ingress_requests_total", "counter",
	       "App requests answered by the cluster's ingress.");
	co_buf_printf(out, "kubesim_ingress_requests_total %llu\n",
		      (unsigned long long)m->total);
	header(out, "kubesim_uptime_seconds", "gauge",
	       "Seconds since the cluster started.");
	co_buf_puts(out, "kubesim_uptime_seconds ");
	num(out, x->uptime_seconds);
	co_buf_putc(out, '\n');
	if (x->process_rss_bytes > 0) {
		header(out, "kubesim_process_resident_memory_bytes", "gauge",
		       "Resident memory of the kubesim process.");
		co_buf_puts(out, "kubesim_process_resident_memory_bytes ");
		num(out, x->process_rss_bytes);
		co_buf_putc(out, '\n');
		header(out, "kubesim_process_cpu_seconds_total", "counter",
		       "CPU time of the kubesim process.");
		co_buf_puts(out, "kubesim_process_cpu_seconds_total ");
		num(out, x->process_cpu_seconds);
		co_buf_putc(out, '\n');
	}
}
