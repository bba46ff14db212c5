/*
 * `cutover tenant deploy CLUSTER TENANT`: put a tenant on an existing cluster, the
 * way the pipeline does on a new one.
 *
 * It runs a pipeline of four stages of the upgrade on the registered cluster: Flux
 * on the cluster syncing the fleet repo (bootstrap-flux, a no-op when it already
 * is), the cluster path's Kustomizations Ready (cluster-config), the tenant's wiring
 * committed to the fleet repo if missing and applied (tenant-namespaces), and the
 * tenant Ready at its repo's HEAD with every canary Succeeded (deploy-tenants). The
 * request names the stages, so `cutover resume` continues such a pipeline too. On
 * the embedded default, tenant-<TENANT>.git is seeded from tenants/repos/<TENANT> of
 * the source tree when missing.
 *
 * The runner hosts its gate for the canaries while it runs (--listen); a finished
 * pipeline of the same id is replaced by a new one, so the command can be run again
 * after every change.
 */
#include "cli/cli.h"
#include "cli/pipeline-run.h"
#include "base/buf.h"
#include "base/log.h"
#include "engine/fleet.h"
#include "engine/pipeline.h"
#include "providers/registry.h"
#include "stages/common.h"
#include "stages/registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
	"usage: cutover tenant deploy CLUSTER TENANT [--fleet-repo URL] [--branch "
	"BRANCH]\n"
	"                             [--state-dir DIR] [--listen HOST:PORT]\n"
	"                             [--gate-url URL] [--manual-gate]\n"
	"                             [--flux-components FILE]\n"
	"\n"
	"Deploy tenant TENANT on the registered cluster CLUSTER: Flux bootstrapped from\n"
	"the fleet repo when it is not yet, the tenant's wiring (namespace, service\n"
	"account, RBAC, GitRepository, Kustomization) committed under tenants/ for the\n"
	"cluster's env and location when missing, then wait until the tenant's\n"
	"Kustomization is Ready at its repo's HEAD and every Flagger canary of it\n"
	"Succeeded. Without --fleet-repo the embedded default fleet is used and\n"
	"tenant-TENANT.git is seeded from tenants/repos/TENANT when missing.\n"
	"\n"
	"The canaries' confirm-rollout gate is served by this command while it runs\n"
	"(--listen, default 127.0.0.1:0) and opened for them; --manual-gate leaves it\n"
	"closed, --gate-url points the canaries at a long-running 'cutover serve'.\n"
	"\n"
	"Exit codes: 0 deployed, 1 failed, 2 usage, 130/143 stopped (resumable).\n";

static const char *const tenant_stages[] = {"bootstrap-flux", "cluster-config",
					    "tenant-namespaces", "deploy-tenants", NULL};

/* tenant-<name>.git from the source tree's tenants/repos/<name>, when missing. */
static int seed_tenant(const char *state, const char *tenant, struct co_error *err)
{
	const char *src_root = co_fleet_default_source();
	char *repos = co_fleet_repos_dir(state);
	char *bare = co_asprintf("%s/tenant-%s.git", repos, tenant);
	char *src = co_asprintf("%s/tenants/repos/%s", src_root, tenant);
	struct stat st;
	int rc = 0;

	if (stat(bare, &st) == 0)
		goto out;
	if (stat(src, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = co_error_set(
			err, -ENOENT,
			"no repository '%s' and no sample tenant '%s' to seed it "
			"from",
			bare, src);
		goto out;
	}
	rc = co_fleet_seed_repo(bare, src, NULL, err);
	if (rc > 0)
		co_log_info("cli", "seeded '%s' from '%s'", bare, src);
out:
	free(repos);
	free(bare);
	free(src);
	return rc < 0 ? rc : 0;
}

static int deploy(int argc, char **argv)
{
	const char *cluster = NULL, *tenant = NULL, *fleet = NULL, *branch = NULL;
	const char *state_opt = NULL, *listen = NULL, *gate = NULL, *components = NULL;
	bool manual = false;
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg = NULL;
	const struct co_stage_ops *stages[8];
	struct co_cli_pipeline o = {0};
	char *fleet_url = NULL, *repos = NULL, *id = NULL, *dir = NULL;
	const json_t *c;
	json_t *req = NULL, *sum = NULL;
	const char *state;
	int code = CO_EXIT_FAILED;
	size_t n = 0;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return CO_EXIT_OK;
		}
		if (strcmp(a, "--manual-gate") == 0) {
			manual = true;
			continue;
		}
		if (strcmp(a, "--fleet-repo") == 0)
			slot = &fleet;
		else if (strcmp(a, "--branch") == 0)
			slot = &branch;
		else if (strcmp(a, "--state-dir") == 0)
			slot = &state_opt;
		else if (strcmp(a, "--listen") == 0)
			slot = &listen;
		else if (strcmp(a, "--gate-url") == 0)
			slot = &gate;
		else if (strcmp(a, "--flux-components") == 0)
			slot = &components;
		if (slot) {
			if (i + 1 >= argc)
				return co_cli_usage_error("tenant",
							  "option '%s' needs a value", a);
			*slot = argv[++i];
			continue;
		}
		if (a[0] == '-')
			return co_cli_usage_error("tenant", "unknown option '%s'", a);
		if (!cluster)
			cluster = a;
		else if (!tenant)
			tenant = a;
		else
			return co_cli_usage_error("tenant", "unexpected argument '%s'",
						  a);
	}
	if (!cluster || !tenant)
		return co_cli_usage_error("tenant", "deploy needs CLUSTER and TENANT");
	if (!co_stages_dns1123_label(tenant))
		return co_cli_usage_error(
			"tenant", "tenant name '%s' is not a DNS-1123 label", tenant);
	if (listen) {
		char host[256];
		int port;

		if (co_cli_parse_listen(listen, host, sizeof(host), &port) < 0)
			return co_cli_usage_error("tenant", "bad --listen '%s'", listen);
	}
	state = co_cli_state_dir(state_opt);

	if (co_registry_open(&reg, state, &err) < 0) {
		fprintf(stderr, "cutover tenant: %s\n", err.msg);
		return CO_EXIT_FAILED;
	}
	c = co_registry_get(reg, cluster);
	if (!c || !json_string_value(json_object_get(c, "kubeconfig"))) {
		fprintf(stderr,
			"cutover tenant: no cluster '%s' in '%s' (see 'cutover cluster "
			"list')\n",
			cluster, state);
		goto out;
	}
	req = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:[s], s:b}", "kind",
			"tenant-deploy", "new", cluster, "env",
			json_string_value(json_object_get(c, "env"))
				? json_string_value(json_object_get(c, "env"))
				: "staging",
			"location",
			json_string_value(json_object_get(c, "location"))
				? json_string_value(json_object_get(c, "location"))
				: "northeurope",
			"kubeconfig", json_string_value(json_object_get(c, "kubeconfig")),
			"ingress", json_string_value(json_object_get(c, "ingress")),
			"tenants", tenant, "manualGate", manual);
	{
		json_t *names = json_array();

		for (size_t i = 0; tenant_stages[i]; i++)
			json_array_append_new(names, json_string(tenant_stages[i]));
		json_object_set_new(req, "stages", names);
	}
	if (!fleet) {
		if (co_fleet_seed(state, co_fleet_default_source(), &err) < 0 ||
		    seed_tenant(state, tenant, &err) < 0) {
			fprintf(stderr, "cutover tenant: embedded fleet: %s\n", err.msg);
			goto out;
		}
		fleet_url = co_fleet_repo_url(state, "fleet");
		repos = co_fleet_repos_dir(state);
		json_object_set_new(req, "gitBaseUrl", json_sprintf("file://%s", repos));
		fleet = fleet_url;
	}
	json_object_set_new(req, "fleetRepo", json_string(fleet));
	if (branch)
		json_object_set_new(req, "branch", json_string(branch));
	if (gate)
		json_object_set_new(req, "gateUrl", json_string(gate));
	if (components)
		json_object_set_new(req, "fluxComponents", json_string(components));

	for (size_t i = 0; tenant_stages[i]; i++)
		stages[n++] = co_stage_slot_find(tenant_stages[i])->ops;
	stages[n] = NULL;

	/* a finished deploy of the same tenant is history: start a new one */
	id = co_asprintf("tenant-%s-%s", cluster, tenant);
	if (co_pipeline_summary(&sum, state, id, stages, &err) == 0) {
		const char *st = json_string_value(json_object_get(sum, "state"));

		if (st && (strcmp(st, "succeeded") == 0 || strcmp(st, "failed") == 0)) {
			dir = co_pipeline_dir(state, id);
			co_stages_remove_tree(dir);
		}
	}
	o.state_dir = state;
	o.id = id;
	o.request = req;
	o.listen = listen;
	o.stages = stages;
	o.quiet_report = true;
	code = co_cli_run_pipeline(&o);
	if (code == CO_EXIT_OK)
		printf("tenant '%s' deployed on cluster '%s'\n", tenant, cluster);
out:
	co_registry_free(reg);
	json_decref(req);
	json_decref(sum);
	free(fleet_url);
	free(repos);
	free(id);
	free(dir);
	return code;
}

int cmd_tenant(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? CO_EXIT_USAGE : CO_EXIT_OK;
	}
	if (strcmp(argv[1], "deploy") == 0)
		return deploy(argc - 1, argv + 1);
	return co_cli_usage_error("tenant", "unknown subcommand '%s'", argv[1]);
}
