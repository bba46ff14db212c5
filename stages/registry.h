/*
 * The stage registry: the pipeline of DESIGN.md section 3 as an ordered table, like
 * git's commands[]. Every one of the eleven stage names has its row, in order; a row
 * whose ops is NULL is a stage that is not part of this build yet. A pipeline runs
 * the leading run of built stages (co_stages_runnable()) and the CLI names the rest.
 */
#ifndef CO_STAGES_REGISTRY_H
#define CO_STAGES_REGISTRY_H

#include <stddef.h>

#include "engine/stage.h"

#define CO_STAGE_COUNT 11

struct co_stage_slot {
	unsigned number; /* 1-based position in the pipeline */
	const char *name;
	const struct co_stage_ops *ops; /* NULL: not part of this build */
};

/* All eleven rows, in pipeline order. */
extern const struct co_stage_slot co_stage_slots[CO_STAGE_COUNT];

/* The built stages from the first one up to the first missing one, NULL-terminated
 * (static storage). */
const struct co_stage_ops *const *co_stages_runnable(void);
size_t co_stages_runnable_count(void);

/* The row of a stage by name, or NULL. */
const struct co_stage_slot *co_stage_slot_find(const char *name);

/* The stages, one per file under stages/. */
extern const struct co_stage_ops co_stage_preflight;
extern const struct co_stage_ops co_stage_create_cluster;
extern const struct co_stage_ops co_stage_bootstrap_flux;
extern const struct co_stage_ops co_stage_cluster_config;
extern const struct co_stage_ops co_stage_validate_cluster;
extern const struct co_stage_ops co_stage_tenant_namespaces;
extern const struct co_stage_ops co_stage_deploy_tenants;

#endif
