/*
 * `cutover status [ID] [--watch] [-o json]`: what a pipeline did and is doing, from
 * its journal (co_pipeline_summary(), no lock taken, so it works while a runner
 * drives the pipeline). A pipeline whose journal says running but whose lock is free
 * has no runner: it is shown as "stopped" (resumable). Without an ID every pipeline
 * under the state dir is listed.
 */
#include "cli/cli.h"
#include "cli/pipeline-run.h"
#include "base/buf.h"
#include "base/time.h"
#include "engine/lock.h"
#include "engine/pipeline.h"
#include "stages/registry.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
	"usage: cutover status [ID] [--watch] [-o text|json] [--state-dir DIR]\n"
	"\n"
	"Show pipeline ID stage by stage (state, start, end, error, what it waits for),\n"
	"or list every pipeline under the state dir. --watch redraws every second until\n"
	"the pipeline is no longer running.\n";

/* "running" journals without a runner holding the lock are "stopped". */
static void fix_state(json_t *sum, const char *state_dir, const char *id)
{
	const char *st = json_string_value(json_object_get(sum, "state"));
	char *dir, *path;
	struct co_lock *lock = NULL;
	struct co_error err = CO_ERROR_INIT;

	if (!st || (strcmp(st, "running") != 0 && strcmp(st, "cleaning-up") != 0 &&
		    strcmp(st, "interrupted") != 0))
		return;
	dir = co_pipeline_dir(state_dir, id);
	path = co_asprintf("%s/lock", dir);
	if (co_lock_acquire(&lock, path, &err) == 0) {
		co_lock_release(lock);
		json_object_set_new(sum, "state", json_string("stopped"));
		json_object_set_new(sum, "resumable", json_true());
	}
	free(path);
	free(dir);
}

static json_t *ids_under(const char *state)
{
	char *dir = co_asprintf("%s/pipelines", state);
	DIR *d = opendir(dir);
	struct dirent *de;
	json_t *ids = json_array();

	free(dir);
	if (!d)
		return ids;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			json_array_append_new(ids, json_string(de->d_name));
	closedir(d);
	return ids;
}

static const char *current_stage(const json_t *sum, const char **ret_state)
{
	size_t i;
	json_t *s;
	const char *name = NULL;

	*ret_state = "";
	json_array_foreach(json_object_get(sum, "stages"), i, s)
	{
		const char *st = json_string_value(json_object_get(s, "state"));

		if (st && strcmp(st, "pending") != 0) {
			name = json_string_value(json_object_get(s, "name"));
			*ret_state = st;
		}
	}
	return name ? name : "-";
}

static void print_one(const json_t *sum)
{
	const json_t *req = json_object_get(sum, "request");
	size_t i;
	json_t *s;
	char *missing = co_cli_missing_stages();

	printf("pipeline %s: %s\n", json_string_value(json_object_get(sum, "id")),
	       json_string_value(json_object_get(sum, "state")));
	printf("  %s -> %s (%s, %s/%s)\n", json_string_value(json_object_get(req, "old")),
	       json_string_value(json_object_get(req, "new")),
	       json_string_value(json_object_get(req, "image")),
	       json_string_value(json_object_get(req, "env")),
	       json_string_value(json_object_get(req, "location")));
	json_array_foreach(json_object_get(sum, "stages"), i, s)
	{
		const char *err = json_string_value(json_object_get(s, "error"));
		const char *cleanup = json_string_value(json_object_get(s, "cleanup"));
		const char *started = json_string_value(json_object_get(s, "started"));
		const char *finished = json_string_value(json_object_get(s, "finished"));

		printf("  %2zu %-18s %-16s %s%s%s", i + 1,
		       json_string_value(json_object_get(s, "name")),
		       json_string_value(json_object_get(s, "state")),
		       started ? started : "", finished ? " .. " : "",
		       finished ? finished : "");
		if (cleanup)
			printf("  cleanup: %s", cleanup);
		printf("\n");
		if (err)
			printf("       error: %s\n", err);
	}
	if (json_object_get(sum, "error"))
		printf("  error: %s\n", json_string_value(json_object_get(sum, "error")));
	if (json_is_true(json_object_get(sum, "resumable")))
		printf("  no runner is driving it: 'cutover resume %s' continues it\n",
		       json_string_value(json_object_get(sum, "id")));
	if (missing)
		printf("  note: %s\n", missing);
	free(missing);
}

static int show(const char *state, const char *id, bool json_out)
{
	json_t *sum = NULL;
	struct co_error err = CO_ERROR_INIT;

	if (co_pipeline_summary(&sum, state, id, co_stages_runnable(), &err) < 0) {
		fprintf(stderr, "cutover status: %s\n", err.msg);
		return CO_EXIT_FAILED;
	}
	fix_state(sum, state, id);
	if (json_out) {
		char *s = json_dumps(sum, JSON_INDENT(2) | JSON_SORT_KEYS);

		printf("%s\n", s);
		free(s);
	} else {
		print_one(sum);
	}
	json_decref(sum);
	return CO_EXIT_OK;
}

static int list(const char *state, bool json_out)
{
	json_t *ids = ids_under(state);
	json_t *all = json_array();
	size_t i;
	json_t *v;

	json_array_foreach(ids, i, v)
	{
		json_t *sum = NULL;
		struct co_error err = CO_ERROR_INIT;
		const char *id = json_string_value(v);

		if (co_pipeline_summary(&sum, state, id, co_stages_runnable(), &err) < 0)
			continue;
		fix_state(sum, state, id);
		json_array_append_new(all, sum);
	}
	if (json_out) {
		char *s = json_dumps(all, JSON_INDENT(2) | JSON_SORT_KEYS);

		printf("%s\n", s);
		free(s);
	} else if (json_array_size(all) == 0) {
		printf("no pipelines under '%s'\n", state);
	} else {
		printf("%-32s %-12s %-18s %s\n", "ID", "STATE", "STAGE", "STAGE STATE");
		json_array_foreach(all, i, v)
		{
			const char *st;
			const char *stage = current_stage(v, &st);

			printf("%-32s %-12s %-18s %s\n",
			       json_string_value(json_object_get(v, "id")),
			       json_string_value(json_object_get(v, "state")), stage, st);
		}
	}
	json_decref(all);
	json_decref(ids);
	return CO_EXIT_OK;
}

static bool still_running(const char *state, const char *id)
{
	json_t *sum = NULL;
	struct co_error err = CO_ERROR_INIT;
	const char *st;
	bool r;

	if (co_pipeline_summary(&sum, state, id, NULL, &err) < 0)
		return false;
	fix_state(sum, state, id);
	st = json_string_value(json_object_get(sum, "state"));
	r = st && (strcmp(st, "running") == 0 || strcmp(st, "cleaning-up") == 0);
	json_decref(sum);
	return r;
}

int cmd_status(int argc, char **argv)
{
	const char *id = NULL, *state_opt = NULL;
	bool watch = false, json_out = false;
	const char *state;
	int code;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage, stdout);
			return CO_EXIT_OK;
		} else if (strcmp(a, "--watch") == 0 || strcmp(a, "-w") == 0) {
			watch = true;
		} else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
			if (i + 1 >= argc)
				return co_cli_usage_error("status",
							  "-o needs text or json");
			a = argv[++i];
			if (strcmp(a, "json") == 0)
				json_out = true;
			else if (strcmp(a, "text") != 0)
				return co_cli_usage_error("status", "unknown output '%s'",
							  a);
		} else if (strcmp(a, "--state-dir") == 0) {
			if (i + 1 >= argc)
				return co_cli_usage_error("status",
							  "--state-dir needs a value");
			state_opt = argv[++i];
		} else if (a[0] == '-') {
			return co_cli_usage_error("status", "unknown option '%s'", a);
		} else if (id) {
			return co_cli_usage_error("status", "unexpected argument '%s'",
						  a);
		} else {
			id = a;
		}
	}
	state = co_cli_state_dir(state_opt);
	if (!id)
		return list(state, json_out);
	if (!watch)
		return show(state, id, json_out);
	for (;;) {
		bool tty = isatty(STDOUT_FILENO);

		if (tty)
			printf("\033[H\033[2J");
		code = show(state, id, json_out);
		fflush(stdout);
		if (code != CO_EXIT_OK || !still_running(state, id))
			return code;
		usleep((useconds_t)(co_time_scaled(1000) < 100 ? 100
							       : co_time_scaled(1000)) *
		       1000);
	}
}
