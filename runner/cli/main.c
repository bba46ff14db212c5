/*
 * cutover's entry point: global options, then dispatch through the command table.
 */
#include "base/log.h"
#include "base/time.h"
#include "cli/cli.h"
#include "cli/version.h"

#include <curl/curl.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	const struct co_cli_command *c;
	enum co_log_level level = CO_LOG_INFO;
	int i = 1, rc;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			printf("cutover %s\n", CO_VERSION);
			return CO_EXIT_OK;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			co_cli_print_help(stdout);
			return CO_EXIT_OK;
		} else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
			if (co_log_parse_level(argv[++i], &level) < 0) {
				fprintf(stderr, "cutover: unknown log level '%s'\n", argv[i]);
				return CO_EXIT_USAGE;
			}
		} else if (strcmp(argv[i], "--time-scale") == 0 && i + 1 < argc) {
			/* like CUTOVER_TIME_SCALE; exported so kubesim and plugins agree */
			char *end;
			double f = strtod(argv[++i], &end);

			if (*end || !(f > 0)) {
				fprintf(stderr, "cutover: bad --time-scale '%s'\n", argv[i]);
				return CO_EXIT_USAGE;
			}
			setenv("CUTOVER_TIME_SCALE", argv[i], 1);
			co_time_set_scale(f);
		} else {
			fprintf(stderr, "cutover: unknown option '%s'\n", argv[i]);
			co_cli_print_help(stderr);
			return CO_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		co_cli_print_help(stderr);
		return CO_EXIT_USAGE;
	}
	c = co_cli_find(argv[i]);
	if (!c) {
		fprintf(stderr, "cutover: '%s' is not a cutover command, see 'cutover --help'\n",
			argv[i]);
		return CO_EXIT_USAGE;
	}
	co_log_setup(level, CO_LOG_AUTO, NULL);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	git_libgit2_init();
	rc = c->fn(argc - i, argv + i);
	git_libgit2_shutdown();
	curl_global_cleanup();
	return rc;
}
