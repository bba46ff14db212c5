/*
 * The Prometheus file_sd targets file cutover writes for the embedded default
 * (`<state>/prometheus/targets.json`): one group per cluster with a `cluster` label, so
 * Prometheus (file_sd_configs, re-read on change) scrapes a new cluster without a
 * restart. The file is replaced atomically (see base/fs.h).
 */
#ifndef CO_CLIENTS_PROM_TARGETS_H
#define CO_CLIENTS_PROM_TARGETS_H

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

struct co_prom_target {
	const char *cluster;        /* label cluster="..."; required, non-empty */
	const char *const *targets; /* "host:port" strings, n_targets of them (>= 1) */
	size_t n_targets;
	const char *job;            /* optional extra label job="..."; NULL: none */
};

/* Append the JSON document (an array of target groups, sorted as given) to out.
 * Returns 0 or -EINVAL with err filled for an empty cluster or target list, or a
 * target that is not "host:port". */
int co_prom_targets_format(struct co_buf *out, const struct co_prom_target *targets,
			   size_t n, struct co_error *err);

/* Format and atomically replace path (mode 0644). Zero targets writes "[]". */
int co_prom_targets_write(const char *path, const struct co_prom_target *targets,
			  size_t n, struct co_error *err);

#endif
