/*
 * The cutover command line: one file per subcommand (cmd-<name>.c), one table
 * (commands[] in main.c), like git's builtin.h. Every command returns an exit code:
 * 0 ok, 1 failed, 2 usage.
 */
#ifndef CO_CLI_H
#define CO_CLI_H

#include <stdio.h>

enum {
	CO_EXIT_OK = 0,
	CO_EXIT_FAILED = 1,
	CO_EXIT_USAGE = 2,
	CO_EXIT_SIGINT = 130,
	CO_EXIT_SIGTERM = 143,
};

struct co_cli_command {
	const char *name;
	int (*fn)(int argc, char **argv);   /* argv[0] is the command name */
	const char *summary;                /* one line for `cutover --help` */
};

/* The table, terminated by a zeroed entry. */
extern const struct co_cli_command co_cli_commands[];

const struct co_cli_command *co_cli_find(const char *name);
void co_cli_print_help(FILE *out);

/* Print "cutover NAME: msg" to stderr and return CO_EXIT_USAGE. */
int co_cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int cmd_version(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_traffic(int argc, char **argv);
int cmd_loadtest(int argc, char **argv);
int cmd_upgrade(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_cluster(int argc, char **argv);
int cmd_tenant(int argc, char **argv);

#endif
