/*
 * `cutover upgrade OLD --to NEW --image IMAGE`: replace a cluster, blue/green.
 *
 * Builds the pipeline request from the options (env and location default to the old
 * cluster's, as the registry knows them), seeds the embedded default's git
 * repositories when no fleet repo is given, and runs the pipeline through
 * co_cli_run_pipeline(). The request is journaled, so `cutover resume` needs nothing
 * but the pipeline id.
 */
#include "cli/cli.h"
#include "cli/pipeline-run.h"
#include "base/buf.h"
#include "base/log.h"
#include "engine/fleet.h"
#include "providers/registry.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: cutover upgrade OLD --to NEW --image IMAGE [--env ENV] [--location LOC]\n"
	"               [--port PORT] [--keep-failed] [--fleet-repo URL] [--branch "
	"BRANCH]\n"
	"               [--state-dir DIR] [--id ID] [--provider sim|k3d|exec]\n"
	"               [--provider-exec PATH] [--flux-components FILE] [--gate-url "
	"URL]\n"
	"               [--lb-url URL] [--prometheus-url URL] [--stop-after STAGE]\n"
	"               [--listen HOST:PORT] [--manual-gate] [--tenant NAME]...\n"
	"\n"
	"Replace cluster OLD by a new cluster NEW built from IMAGE: preflight (request,\n"
	"removed-API scan of every manifest Flux would apply, reachability), create the\n"
	"cluster, bootstrap Flux from the fleet repo, wait for the cluster "
	"configuration,\n"
	"validate it (ingress health, the fleet repo's checks), wire the tenants and\n"
	"wait until each runs at its repo's HEAD with every Flagger canary Succeeded.\n"
	"\n"
	"While it runs, cutover serves the canaries' gate and load tester and a git\n"
	"webhook (POST /hooks/git) on --listen (default 127.0.0.1:0; its URL goes into\n"
	"cluster-vars as CUTOVER_GATE_URL unless --gate-url names another). The gate of\n"
	"each canary is opened when tenants deploy; --manual-gate leaves it closed so a\n"
	"person approves with POST <gate>/gate/open {\"name\": ..., \"namespace\": ...}.\n"
	"--tenant limits (and, when missing, wires) the tenants; default: every tenant\n"
	"of tenants/<env>/<location> in the fleet repo.\n"
	"The pipeline id defaults to OLD-to-NEW; a stopped or killed run continues with\n"
	"'cutover resume ID'. Without --fleet-repo the embedded default fleet is used:\n"
	"<state-dir>/repos/fleet.git and tenant-<name>.git, seeded from the cutover "
	"source\n"
	"tree when missing. The state dir defaults to ${CUTOVER_STATE_DIR:-./.cutover}.\n"
	"\n"
	"Exit codes: 0 done, 1 failed (the new cluster is deleted unless "
	"--keep-failed),\n"
	"2 usage, 130/143 stopped by SIGINT/SIGTERM (resumable).\n";

static int parse_port(const char *s, long *ret)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == '\0' || *end || v <= 0 || v > 65535)
		return -EINVAL;
	*ret = v;
	return 0;
}

int cmd_upgrade(int argc, char **argv)
{
	const char *old = NULL, *new = NULL, *image = NULL, *env = NULL, *loc = NULL;
	const char *fleet = NULL, *state_opt = NULL, *id_opt = NULL, *branch = NULL;
	const char *provider = getenv("CUTOVER_PROVIDER"), *provider_exec = NULL;
	const char *components = NULL, *gate = NULL, *lb = NULL, *prom = NULL;
	const char *stop_after = NULL, *listen = NULL;
	long port = 0;
	bool keep_failed = false, manual = false;
	json_t *tenants = NULL; /* --tenant names */
	struct co_cli_pipeline o = {0};
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg = NULL;
	char *fleet_url = NULL, *repos = NULL, *id = NULL;
	json_t *req = NULL;
	const char *state;
	int code;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return CO_EXIT_OK;
		}
		if (strcmp(a, "--keep-failed") == 0) {
			keep_failed = true;
			continue;
		}
		if (strcmp(a, "--manual-gate") == 0) {
			manual = true;
			continue;
		}
		if (strcmp(a, "--tenant") == 0) {
			if (i + 1 >= argc) {
				json_decref(tenants);
				return co_cli_usage_error("upgrade", "--tenant needs a name");
			}
			if (!tenants)
				tenants = json_array();
			json_array_append_new(tenants, json_string(argv[++i]));
			continue;
		}
		if (strcmp(a, "--to") == 0)
			slot = &new;
		else if (strcmp(a, "--image") == 0)
			slot = &image;
		else if (strcmp(a, "--env") == 0)
			slot = &env;
		else if (strcmp(a, "--location") == 0)
			slot = &loc;
		else if (strcmp(a, "--fleet-repo") == 0)
			slot = &fleet;
		else if (strcmp(a, "--branch") == 0)
			slot = &branch;
		else if (strcmp(a, "--state-dir") == 0)
			slot = &state_opt;
		else if (strcmp(a, "--id") == 0)
			slot = &id_opt;
		else if (strcmp(a, "--provider") == 0)
			slot = &provider;
		else if (strcmp(a, "--provider-exec") == 0)
			slot = &provider_exec;
		else if (strcmp(a, "--flux-components") == 0)
			slot = &components;
		else if (strcmp(a, "--gate-url") == 0)
			slot = &gate;
		else if (strcmp(a, "--lb-url") == 0)
			slot = &lb;
		else if (strcmp(a, "--prometheus-url") == 0)
			slot = &prom;
		else if (strcmp(a, "--stop-after") == 0)
			slot = &stop_after;
		else if (strcmp(a, "--listen") == 0)
			slot = &listen;
		if (slot) {
			if (i + 1 >= argc)
				return co_cli_usage_error("upgrade",
							  "option '%s' needs a value", a);
			*slot = argv[++i];
			continue;
		}
		if (strcmp(a, "--port") == 0) {
			if (i + 1 >= argc || parse_port(argv[i + 1], &port) < 0)
				return co_cli_usage_error("upgrade",
							  "--port needs a port number");
			i++;
			continue;
		}
		if (a[0] == '-')
			return co_cli_usage_error("upgrade", "unknown option '%s'", a);
		if (old)
			return co_cli_usage_error("upgrade", "unexpected argument '%s'",
						  a);
		old = a;
	}
	if (!old || !new || !image)
		return co_cli_usage_error("upgrade",
					  "OLD, --to NEW and --image IMAGE are needed");
	state = co_cli_state_dir(state_opt);

	/* env and location follow the cluster being replaced */
	if (co_registry_open(&reg, state, &err) == 0) {
		const json_t *c = co_registry_get(reg, old);

		if (!env)
			env = json_string_value(json_object_get(c, "env"));
		if (!loc)
			loc = json_string_value(json_object_get(c, "location"));
	}
	req = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "old", old, "new", new, "image",
			image, "env", env ? env : "staging", "location",
			loc ? loc : "northeurope", "keepFailed", keep_failed);
	co_registry_free(reg);

	if (!fleet) {
		int rc = co_fleet_seed(state, co_fleet_default_source(), &err);

		if (rc < 0) {
			fprintf(stderr, "cutover upgrade: embedded fleet: %s\n", err.msg);
			code = CO_EXIT_FAILED;
			goto out;
		}
		if (rc > 0)
			co_log_info("cli", "seeded %d repositories under '%s/repos'", rc,
				    state);
		fleet_url = co_fleet_repo_url(state, "fleet");
		repos = co_fleet_repos_dir(state);
		json_object_set_new(req, "gitBaseUrl", json_sprintf("file://%s", repos));
		fleet = fleet_url;
	}
	json_object_set_new(req, "fleetRepo", json_string(fleet));
	if (branch)
		json_object_set_new(req, "branch", json_string(branch));
	if (port)
		json_object_set_new(req, "port", json_integer(port));
	if (provider && *provider)
		json_object_set_new(req, "provider", json_string(provider));
	if (provider_exec)
		json_object_set_new(req, "providerExec", json_string(provider_exec));
	if (components)
		json_object_set_new(req, "fluxComponents", json_string(components));
	if (gate)
		json_object_set_new(req, "gateUrl", json_string(gate));
	if (lb)
		json_object_set_new(req, "lbUrl", json_string(lb));
	if (prom)
		json_object_set_new(req, "prometheusUrl", json_string(prom));
	if (manual)
		json_object_set_new(req, "manualGate", json_true());
	if (tenants)
		json_object_set(req, "tenants", tenants);

	id = id_opt ? co_strdup(id_opt) : co_asprintf("%s-to-%s", old, new);
	o.state_dir = state;
	o.id = id;
	o.request = req;
	o.keep_failed = keep_failed;
	o.stop_after = stop_after;
	o.listen = listen;
	code = co_cli_run_pipeline(&o);
out:
	json_decref(tenants);
	json_decref(req);
	free(fleet_url);
	free(repos);
	free(id);
	return code;
}
