/*
 * Running one pipeline from the command line, shared by `cutover upgrade` and
 * `cutover resume`: the services (HTTP client, provider, registry) on one loop, the
 * progress display (a redrawn line on a TTY, JSON lines otherwise), signals (the first
 * SIGINT/SIGTERM stops gracefully and exits 130/143, a second exits at once), and the
 * final report.
 */
#ifndef CO_CLI_PIPELINE_RUN_H
#define CO_CLI_PIPELINE_RUN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine/stage.h"

struct co_cli_pipeline {
	const char *state_dir;
	const char *id;
	const json_t *request; /* new pipeline; NULL to resume */
	bool keep_failed;
	const char *stop_after; /* may be NULL */
	const char *listen;	/* HOST:PORT of the hosted gate, webhook and API
				 * surface; NULL = 127.0.0.1:0 */
	const struct co_stage_ops *const *stages; /* NULL = co_stages_runnable() */
	bool quiet_report;	/* no create-cluster summary on success */
};

/* Parse "HOST:PORT" / ":PORT" / "PORT" into host (static or borrowed) and port. */
int co_cli_parse_listen(const char *s, char *host, size_t host_len, int *port);

/* Returns the process exit code. */
int co_cli_run_pipeline(const struct co_cli_pipeline *o);

/* ${CUTOVER_STATE_DIR:-./.cutover} (static storage or the environment's). */
const char *co_cli_state_dir(const char *opt);

/* "stages 8-11 (load-test, ...) are not part of this build" or NULL when every
 * stage is built (new string). */
char *co_cli_missing_stages(void);

#endif
