/*
 * `cutover help [COMMAND]`: the command list, or one command's own --help.
 */
#include "cli/cli.h"

#include <stdio.h>

int cmd_help(int argc, char **argv)
{
	const struct co_cli_command *c;
	char *sub[] = { NULL, "--help", NULL };

	if (argc < 2) {
		co_cli_print_help(stdout);
		return CO_EXIT_OK;
	}
	c = co_cli_find(argv[1]);
	if (!c)
		return co_cli_usage_error("help", "unknown command '%s'", argv[1]);
	sub[0] = argv[1];
	return c->fn(2, sub);
}
