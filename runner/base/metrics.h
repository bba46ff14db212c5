/*
 * The runner's own metrics, rendered in Prometheus' text exposition format 0.0.4 for
 * `cutover serve`'s /metrics: counters (operations and plugin calls by result),
 * gauges, and histograms (stage durations). A family has a name, help text, type and
 * fixed label names; series are created on first use with their label values.
 *
 * Single-threaded (the loop thread). Label values are escaped on output.
 */
#ifndef CO_BASE_METRICS_H
#define CO_BASE_METRICS_H

#include <stddef.h>

#include "base/buf.h"

struct co_metrics;
struct co_metric;

enum co_metric_type { CO_METRIC_COUNTER, CO_METRIC_GAUGE, CO_METRIC_HISTOGRAM };

struct co_metrics *co_metrics_new(void);
void co_metrics_free(struct co_metrics *m);

/*
 * Declare a family (idempotent for the same name). label_names: NULL-terminated, may
 * be NULL. buckets: upper bounds for histograms (ascending, +Inf implied), n_buckets.
 * Returns the family (owned by the registry), or NULL if name or labels are invalid
 * Prometheus names, or the name exists with another type.
 */
struct co_metric *co_metrics_family(struct co_metrics *m, const char *name,
				    const char *help, enum co_metric_type type,
				    const char *const *label_names, const double *buckets,
				    size_t n_buckets);

/* Add to a counter or gauge, set a gauge, observe into a histogram. values: label
 * values in the family's order (NULL-terminated, count must match; a mismatch is
 * ignored, not fatal). */
void co_metric_add(struct co_metric *f, const char *const *values, double v);
void co_metric_set(struct co_metric *f, const char *const *values, double v);
void co_metric_observe(struct co_metric *f, const char *const *values, double v);

/* Current value of a counter/gauge series (0 when absent), for tests. */
double co_metric_get(const struct co_metric *f, const char *const *values);

/* Append the whole registry in text format. */
void co_metrics_render(const struct co_metrics *m, struct co_buf *out);

/* Valid Prometheus metric / label name? */
int co_metrics_valid_name(const char *name, int label);

#endif
