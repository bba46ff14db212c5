/*
 * Subprocesses on the loop: uv_spawn with an argv array (never a shell), optional
 * stdin bytes, captured stdout and stderr each capped at a size (excess discarded and
 * flagged), an environment overlay, a working directory and a deadline after which the
 * child gets SIGTERM, then SIGKILL after a grace period.
 *
 * Async contract: if co_subproc_run() returns an error the callback never runs;
 * otherwise it runs exactly once with the result. co_subproc_cancel() kills the child
 * and the callback reports status -ECANCELED. Handles are closed before the callback
 * runs, so a loop with nothing else pending ends right after it.
 *
 * The child runs in its own session; deadline and cancel signals go to its whole
 * process group. SIGPIPE is set to ignored if it had the default disposition (a child
 * that exits without reading its stdin must not kill the process).
 */
#ifndef CO_BASE_SUBPROC_H
#define CO_BASE_SUBPROC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"

struct co_subproc;

struct co_subproc_opts {
	const char *const *argv;     /* argv[0] looked up in PATH; borrowed for the call */
	const char *const *env;      /* extra "K=V" entries added to (or overriding)
				      * the parent environment; NULL-terminated; may be NULL */
	const char *cwd;             /* may be NULL */
	const char *stdin_data;      /* bytes written to the child's stdin, then EOF; may
				      * be NULL (stdin is /dev/null) */
	size_t stdin_len;
	size_t max_output;           /* cap for stdout and for stderr; 0 = 1 MiB */
	uint64_t timeout_ms;         /* 0 = none */
	uint64_t kill_grace_ms;      /* after SIGTERM; 0 = 2000 */
};

struct co_subproc_result {
	int status;            /* 0 = the child ran and was reaped; -ETIMEDOUT after a
				* deadline kill; -ECANCELED after co_subproc_cancel() */
	int64_t exit_code;     /* valid when term_signal == 0 */
	int term_signal;       /* signal that ended the child, or 0 */
	struct co_buf out;     /* captured stdout, owned by the result */
	struct co_buf err;     /* captured stderr */
	int out_truncated;
	int err_truncated;
	uint64_t elapsed_ms;
};

/* The result is borrowed for the duration of the callback (move buffers out with
 * co_buf_detach() to keep them). */
typedef void (*co_subproc_cb)(struct co_subproc_result *res, void *data);

/* Start a child. *ret_proc (may be NULL) is a handle valid until the callback has
 * run, usable to cancel. Returns 0 or a negative error (spawn failure: ENOENT for a
 * missing program), with err filled: "spawn 'k3d': no such file or directory". After
 * a spawn failure, internal handles still close on the loop's next run. */
int co_subproc_run(uv_loop_t *loop, struct co_subproc **ret_proc,
		   const struct co_subproc_opts *opts, co_subproc_cb cb, void *data,
		   struct co_error *err);

void co_subproc_cancel(struct co_subproc *proc);

/* Convenience for CLIs and tests: run on a private loop until done. Fills res
 * (release with co_subproc_result_release()). */
int co_subproc_run_sync(const struct co_subproc_opts *opts,
			struct co_subproc_result *res, struct co_error *err);
void co_subproc_result_release(struct co_subproc_result *res);

#endif
