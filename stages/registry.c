/*
 * The stage table, see registry.h. Stages 8-11 are reserved by name with NULL ops;
 * each gets its ops here when its file lands, and co_stages_runnable() grows with
 * them without any other change.
 */
#include "stages/registry.h"

#include <string.h>

const struct co_stage_slot co_stage_slots[CO_STAGE_COUNT] = {
	{1, "preflight", &co_stage_preflight},
	{2, "create-cluster", &co_stage_create_cluster},
	{3, "bootstrap-flux", &co_stage_bootstrap_flux},
	{4, "cluster-config", &co_stage_cluster_config},
	{5, "validate-cluster", &co_stage_validate_cluster},
	{6, "tenant-namespaces", &co_stage_tenant_namespaces},
	{7, "deploy-tenants", &co_stage_deploy_tenants},
	/* Not part of this build yet: the traffic half. */
	{8, "load-test", NULL},
	{9, "compare", NULL},
	{10, "switch-traffic", NULL},
	{11, "retire-old", NULL},
};

static const struct co_stage_ops *runnable[CO_STAGE_COUNT + 1];
static size_t runnable_n;
static int runnable_ready;

static void fill(void)
{
	if (runnable_ready)
		return;
	for (size_t i = 0; i < CO_STAGE_COUNT && co_stage_slots[i].ops; i++)
		runnable[runnable_n++] = co_stage_slots[i].ops;
	runnable[runnable_n] = NULL;
	runnable_ready = 1;
}

const struct co_stage_ops *const *co_stages_runnable(void)
{
	fill();
	return runnable;
}

size_t co_stages_runnable_count(void)
{
	fill();
	return runnable_n;
}

const struct co_stage_slot *co_stage_slot_find(const char *name)
{
	for (size_t i = 0; i < CO_STAGE_COUNT; i++)
		if (strcmp(co_stage_slots[i].name, name) == 0)
			return &co_stage_slots[i];
	return NULL;
}
