/*
 * `cutover resume [ID]`: continue a pipeline that was stopped or whose runner died.
 * The journal holds the request and every finished stage; the engine skips what is
 * done and restarts the current stage from its last journaled state. Without an ID
 * the one unfinished pipeline under the state dir is taken (several: they are listed
 * and one must be named).
 */
#include "cli/cli.h"
#include "cli/pipeline-run.h"
#include "base/buf.h"
#include "engine/pipeline.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: cutover resume [ID] [--state-dir DIR]\n"
	"\n"
	"Continue pipeline ID (see 'cutover status') from where it stopped. Without ID,\n"
	"the only unfinished pipeline under the state dir is resumed.\n";

/* Unfinished pipelines under state (new array of ids). */
static json_t *unfinished(const char *state)
{
	char *dir = co_asprintf("%s/pipelines", state);
	DIR *d = opendir(dir);
	struct dirent *de;
	json_t *ids = json_array();

	free(dir);
	if (!d)
		return ids;
	while ((de = readdir(d))) {
		json_t *sum = NULL;
		struct co_error err = CO_ERROR_INIT;
		const char *st;

		if (de->d_name[0] == '.')
			continue;
		if (co_pipeline_summary(&sum, state, de->d_name, NULL, &err) < 0)
			continue;
		st = json_string_value(json_object_get(sum, "state"));
		if (st && strcmp(st, "succeeded") != 0 && strcmp(st, "failed") != 0)
			json_array_append_new(ids, json_string(de->d_name));
		json_decref(sum);
	}
	closedir(d);
	return ids;
}

int cmd_resume(int argc, char **argv)
{
	const char *id = NULL, *state_opt = NULL;
	struct co_cli_pipeline o = {0};
	json_t *ids = NULL;
	int code;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			return CO_EXIT_OK;
		}
		if (strcmp(argv[i], "--state-dir") == 0) {
			if (i + 1 >= argc)
				return co_cli_usage_error("resume",
							  "--state-dir needs a value");
			state_opt = argv[++i];
			continue;
		}
		if (argv[i][0] == '-')
			return co_cli_usage_error("resume", "unknown option '%s'",
						  argv[i]);
		if (id)
			return co_cli_usage_error("resume", "unexpected argument '%s'",
						  argv[i]);
		id = argv[i];
	}
	o.state_dir = co_cli_state_dir(state_opt);
	if (!id) {
		ids = unfinished(o.state_dir);
		if (json_array_size(ids) != 1) {
			size_t i;
			json_t *v;

			if (json_array_size(ids) == 0)
				fprintf(stderr,
					"cutover resume: no unfinished pipeline under "
					"'%s'\n",
					o.state_dir);
			else
				fprintf(stderr, "cutover resume: several unfinished "
						"pipelines; name "
						"one:\n");
			json_array_foreach(ids, i, v)
				fprintf(stderr, "  %s\n", json_string_value(v));
			json_decref(ids);
			return CO_EXIT_FAILED;
		}
		id = json_string_value(json_array_get(ids, 0));
	}
	o.id = id;
	code = co_cli_run_pipeline(&o);
	json_decref(ids);
	return code;
}
