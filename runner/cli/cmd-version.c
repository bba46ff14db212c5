/*
 * `cutover version`: the program version and the versions of the libraries it was
 * linked with, so a bug report carries them.
 */
#include "cli/cli.h"
#include "cli/version.h"

#include <curl/curl.h>
#include <git2.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <yaml.h>

int cmd_version(int argc, char **argv)
{
	int major, minor, rev;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("usage: cutover version [--verbose]\n");
		return CO_EXIT_OK;
	}
	printf("cutover %s\n", CO_VERSION);
	if (argc > 1 && strcmp(argv[1], "--verbose") == 0) {
		git_libgit2_version(&major, &minor, &rev);
		printf("libuv %s\n%s\nlibyaml %s\njansson %s\nlibgit2 %d.%d.%d\n",
		       uv_version_string(), curl_version(), yaml_get_version_string(),
		       JANSSON_VERSION, major, minor, rev);
	} else if (argc > 1) {
		return co_cli_usage_error("version", "unknown option '%s'", argv[1]);
	}
	return CO_EXIT_OK;
}
