/*
 * ks_metrics: one cluster's request series and the Prometheus text (format 0.0.4) of
 * its /metrics endpoint.
 *
 * Request counters and latency histograms are recorded as the ingress serves app
 * requests; container CPU and memory come from a cost model evaluated at scrape time
 * from the pods the Deployment controller runs; Flagger and process series are passed
 * in by the caller. Pure data and formatting: no loop, no I/O.
 */
#ifndef KS_METRICS_H
#define KS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct ks_metrics;

/* Prometheus' default histogram buckets, in seconds. */
#define KS_METRICS_NBUCKETS 11
extern const double ks_metrics_buckets[KS_METRICS_NBUCKETS];

struct ks_metrics *ks_metrics_new(void);
void ks_metrics_free(struct ks_metrics *m); /* takes NULL */

/* Record one request (strings copied when a new series starts). */
void ks_metrics_observe(struct ks_metrics *m, const char *ns, const char *app,
			const char *version, int code, double seconds);
/* Total requests observed. */
uint64_t ks_metrics_requests(const struct ks_metrics *m);

/* Cost model: a pod idles at KS_COST_BASE_CORES and uses KS_COST_BASE_MB; each request
 * costs KS_COST_REQUEST_MS plus the app's CPU_COST_MS of CPU; MEMORY_MB adds to the
 * base memory. Everything is multiplied by the cluster's version overhead. */
#define KS_COST_BASE_CORES 0.002
#define KS_COST_REQUEST_MS 0.2
#define KS_COST_BASE_MB	   16.0
double ks_cost_cpu_seconds(double uptime_s, uint64_t requests, double cpu_cost_ms,
			   double overhead);
double ks_cost_memory_bytes(double memory_mb, uint64_t inflight, double overhead);

struct ks_metrics_pod {
	const char *ns, *pod, *container;
	double cpu_seconds;
	double memory_bytes;
};

struct ks_metrics_canary {
	const char *ns, *name;	 /* the Canary */
	const char *target;	 /* targetRef name */
	int status;		 /* 0 running, 1 successful/idle, 2 failed (Flagger's) */
	int weight;		 /* canary weight; primary gets 100 - weight */
	double duration_seconds; /* of the last analysis */
};

struct ks_metrics_extra {
	const char *cluster;
	const char *version;
	double overhead;
	const struct ks_metrics_pod *pods;
	size_t n_pods;
	const struct ks_metrics_canary *canaries;
	size_t n_canaries;
	size_t objects;		  /* objects in the store */
	double uptime_seconds;	  /* of the cluster's controllers */
	double process_rss_bytes; /* 0: not reported */
	double process_cpu_seconds;
};

/* Append the whole exposition to out. */
void ks_metrics_render(struct co_buf *out, const struct ks_metrics *m,
		       const struct ks_metrics_extra *extra);

/* Append s as a label value (backslash, quote and newline escaped). */
void ks_metrics_label_value(struct co_buf *out, const char *s);

#endif
