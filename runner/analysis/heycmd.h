/*
 * hey-compatible command parsing, so a Flagger webhook's `metadata.cmd` such as
 * `hey -z 1m -q 10 -c 2 http://podinfo-canary.test:9898/` runs on cutover's own load
 * generator without a shell.
 *
 * co_heycmd_split() tokenises like a POSIX shell without any of its power: blanks
 * separate words; single quotes keep everything literally; double quotes keep
 * everything except backslash before " \ $ ` or newline; an unquoted backslash keeps
 * the next character. Nothing is expanded ($VAR stays as written) and unquoted shell
 * operators (| & ; < > ` $( ) are rejected, because without a shell they would
 * silently mean something else.
 *
 * co_heycmd_parse_argv() accepts hey's flags (Go flag syntax: -flag value, -flag=value,
 * --flag) for the supported subset: -z -n -c -q -H -host -m -d -t -T -A. As in hey,
 * -q is a per-worker rate, so the total rate is c*q; -t is the request timeout in
 * seconds; -z wins over -n; -n defaults to 200 and -c to 50, and without -z an
 * -n below -c is an error. Any other hey flag is rejected naming the flag. With
 * CO_HEYCMD_CLI the `cutover loadtest` extras are accepted too: --rate R (total
 * requests/s), --warmup DURATION, --threads N, -o text|json.
 */
#ifndef CO_ANALYSIS_HEYCMD_H
#define CO_ANALYSIS_HEYCMD_H

#include <stddef.h>

#include "analysis/loadgen.h"
#include "base/error.h"

#define CO_HEYCMD_MAX_LEN (64 * 1024)  /* command string bound */
#define CO_HEYCMD_MAX_ARGS 256

enum {
	CO_HEYCMD_CLI = 1 << 0,   /* accept cutover loadtest's extra flags */
};

struct co_heycmd {
	struct co_loadgen_opts opts;  /* ready for co_loadgen_new(); points into this */
	int output_json;              /* -o json (CLI only) */
	/* storage behind opts (owned) */
	char *url;
	char *method;
	char *host;
	char *body;
	char *content_type;
	char *user_agent;
	char **headers;
	size_t n_headers;
};

/* Split cmd into a NULL-terminated argv (caller frees with co_heycmd_argv_free).
 * Returns 0, or -EINVAL with err filled (unterminated quote, shell operator, too
 * long, too many words, empty). */
int co_heycmd_split(const char *cmd, char ***ret_argv, int *ret_argc,
		    struct co_error *err);
void co_heycmd_argv_free(char **argv);

/* Parse argv (argv[0] is the program or subcommand name and is skipped). Returns 0
 * and a new co_heycmd (free with co_heycmd_free), or -EINVAL with err filled. */
int co_heycmd_parse_argv(struct co_heycmd **ret_cmd, int argc, char *const *argv,
			 unsigned flags, struct co_error *err);

/* Split and parse a command line whose program must be hey (a path ending in /hey
 * is accepted too). */
int co_heycmd_parse(struct co_heycmd **ret_cmd, const char *cmd, struct co_error *err);

void co_heycmd_free(struct co_heycmd *cmd);   /* takes NULL */

#endif
