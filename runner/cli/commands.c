/*
 * The subcommand table. Add a command by writing cmd-<name>.c with
 * `int cmd_<name>(int argc, char **argv)`, declaring it in cli.h and adding one row.
 */
#include "cli/cli.h"

#include <stdarg.h>
#include <string.h>

const struct co_cli_command co_cli_commands[] = {
	{ "cluster", cmd_cluster, "create, delete, list and inspect clusters (sim, k3d, exec)" },
	{ "compare", cmd_compare, "judge a candidate cluster against a baseline from Prometheus" },
	{ "help", cmd_help, "show help for cutover or one of its commands" },
	{ "loadtest", cmd_loadtest, "generate HTTP load (hey-compatible flags) and report" },
	{ "resume", cmd_resume, "continue a stopped or interrupted pipeline" },
	{ "serve", cmd_serve, "serve webhooks, gates, the load tester, metrics and the API" },
	{ "status", cmd_status, "show a pipeline's stages, or list pipelines" },
	{ "tenant", cmd_tenant, "deploy a tenant on a cluster and wait for its canaries" },
	{ "traffic", cmd_traffic, "show and shift load-balancer traffic between clusters" },
	{ "upgrade", cmd_upgrade, "replace a cluster with a new one, blue/green (the pipeline)" },
	{ "version", cmd_version, "print the version of cutover" },
	{ NULL, NULL, NULL },
};

const struct co_cli_command *co_cli_find(const char *name)
{
	for (const struct co_cli_command *c = co_cli_commands; c->name; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

void co_cli_print_help(FILE *out)
{
	fprintf(out,
		"usage: cutover [--version] [--help] [--log-level LEVEL] [--time-scale F]\n"
		"               <command> [<args>]\n"
		"\n"
		"Blue/green Kubernetes cluster replacement, driven by GitOps.\n"
		"\n"
		"commands:\n");
	for (const struct co_cli_command *c = co_cli_commands; c->name; c++)
		fprintf(out, "  %-12s %s\n", c->name, c->summary);
	fprintf(out, "\nrun 'cutover <command> --help' for a command's options\n");
}

int co_cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "cutover %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nrun 'cutover %s --help' for usage\n", cmd);
	return CO_EXIT_USAGE;
}
