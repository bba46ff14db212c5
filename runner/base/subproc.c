/*
 * Subprocesses on the loop. One struct co_subproc owns a uv_process_t, up to three
 * pipes and one timer; the call completes once the child has been reaped and both
 * output pipes reached EOF (or a short drain period after the exit passed, for
 * grandchildren that keep a pipe open). Completion closes every handle, and the user
 * callback runs from the last close callback, so the loop may end right after it.
 *
 * The child runs in its own session (UV_PROCESS_DETACHED): signals for a deadline or
 * a cancel go to its whole process group, so `k3d` and the docker calls it forks die
 * with it. One timer serves three purposes in turn: the deadline, the SIGKILL grace
 * after SIGTERM, and the post-exit drain.
 */
#include "base/subproc.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "base/time.h"

extern char **environ;

#define DEFAULT_MAX_OUTPUT (1024 * 1024)
#define DEFAULT_GRACE_MS   2000
/* After the child exits, how long output pipes held open by grandchildren are read. */
#define DRAIN_MS   500
#define READ_CHUNK 65536

enum timer_phase {
	TIMER_IDLE,
	TIMER_DEADLINE, /* running until timeout_ms */
	TIMER_GRACE,	/* SIGTERM sent, SIGKILL when it fires */
	TIMER_DRAIN,	/* child reaped, waiting for pipe EOF */
};

struct co_subproc {
	uv_loop_t *loop;
	uv_process_t process;
	uv_pipe_t in;
	uv_pipe_t out;
	uv_pipe_t errp;
	uv_timer_t timer;
	uv_write_t write_req;
	int open_handles; /* handles initialised and not yet closed */
	int has_in;
	int process_started;

	char *stdin_copy;
	size_t stdin_len;
	size_t max_output;
	uint64_t grace_ms;
	enum timer_phase phase;

	int exited;
	int out_eof;
	int err_eof;
	int finishing; /* handles closing, callback pending */
	int status;    /* 0, -ETIMEDOUT or -ECANCELED */
	uint64_t start_ms;

	struct co_subproc_result res;
	co_subproc_cb cb;
	void *data;
	char readbuf[READ_CHUNK];
};

static void finish(struct co_subproc *p);

static void free_proc(struct co_subproc *p)
{
	co_buf_release(&p->res.out);
	co_buf_release(&p->res.err);
	free(p->stdin_copy);
	free(p);
}

static void on_close(uv_handle_t *h)
{
	struct co_subproc *p = h->data;

	if (--p->open_handles > 0)
		return;
	if (p->finishing && p->cb) {
		p->res.status = p->status;
		p->res.elapsed_ms = co_time_mono_ms() - p->start_ms;
		p->cb(&p->res, p->data);
	}
	free_proc(p);
}

static void close_handle(struct co_subproc *p, uv_handle_t *h)
{
	if (h->data == p && !uv_is_closing(h))
		uv_close(h, on_close);
}

static void close_all(struct co_subproc *p)
{
	if (p->has_in)
		close_handle(p, (uv_handle_t *)&p->in);
	close_handle(p, (uv_handle_t *)&p->out);
	close_handle(p, (uv_handle_t *)&p->errp);
	close_handle(p, (uv_handle_t *)&p->timer);
	close_handle(p, (uv_handle_t *)&p->process);
}

/* Signal the child's process group; fall back to the child alone. */
static void signal_child(struct co_subproc *p, int sig)
{
	if (!p->process_started || p->exited)
		return;
	if (kill(-p->process.pid, sig) < 0)
		uv_process_kill(&p->process, sig);
}

static void on_timer(uv_timer_t *t)
{
	struct co_subproc *p = t->data;

	switch (p->phase) {
	case TIMER_DEADLINE:
		p->status = -ETIMEDOUT;
		signal_child(p, SIGTERM);
		p->phase = TIMER_GRACE;
		uv_timer_start(&p->timer, on_timer, p->grace_ms, 0);
		break;
	case TIMER_GRACE:
		signal_child(p, SIGKILL);
		p->phase = TIMER_IDLE;
		break;
	case TIMER_DRAIN:
		finish(p);
		break;
	case TIMER_IDLE:
		break;
	}
}

static void maybe_finish(struct co_subproc *p)
{
	if (p->finishing || !p->exited)
		return;
	if (p->out_eof && p->err_eof) {
		finish(p);
		return;
	}
	if (p->phase != TIMER_DRAIN) {
		p->phase = TIMER_DRAIN;
		uv_timer_start(&p->timer, on_timer, DRAIN_MS, 0);
	}
}

static void finish(struct co_subproc *p)
{
	if (p->finishing)
		return;
	p->finishing = 1;
	uv_timer_stop(&p->timer);
	close_all(p);
}

static void on_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
	struct co_subproc *p = proc->data;

	p->exited = 1;
	p->res.exit_code = exit_status;
	p->res.term_signal = term_signal;
	/* The deadline or the SIGKILL grace no longer applies. */
	if (p->phase == TIMER_DEADLINE || p->phase == TIMER_GRACE) {
		uv_timer_stop(&p->timer);
		p->phase = TIMER_IDLE;
	}
	maybe_finish(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct co_subproc *p = h->data;

	/* Reads are delivered right after their allocation, so one buffer serves both
	 * pipes. */
	buf->base = p->readbuf;
	buf->len = sizeof(p->readbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct co_subproc *p = s->data;
	int is_out = s == (uv_stream_t *)&p->out;
	struct co_buf *dst = is_out ? &p->res.out : &p->res.err;
	int *trunc = is_out ? &p->res.out_truncated : &p->res.err_truncated;

	if (nread > 0) {
		size_t n = (size_t)nread;
		size_t room = dst->len < p->max_output ? p->max_output - dst->len : 0;

		if (n > room) {
			n = room;
			*trunc = 1;
		}
		if (n)
			co_buf_append(dst, buf->base, n);
		return;
	}
	if (nread == 0)
		return;
	/* EOF or a read error: this pipe is done either way. */
	uv_read_stop(s);
	if (is_out)
		p->out_eof = 1;
	else
		p->err_eof = 1;
	maybe_finish(p);
}

static void on_write(uv_write_t *req, int status)
{
	struct co_subproc *p = req->data;

	/* EPIPE (the child exited without reading) is not an error of the call. Closing
	 * the pipe gives the child its EOF. */
	close_handle(p, (uv_handle_t *)&p->in);
}

static int key_len(const char *kv)
{
	const char *eq = strchr(kv, '=');

	return eq ? (int)(eq - kv) : (int)strlen(kv);
}

/* The parent environment with opts->env entries added or overriding. Returns an array
 * of borrowed strings (free the array only). */
static char **build_env(const char *const *overlay)
{
	size_t nparent = 0, nover = 0, n = 0;
	char **env;

	while (environ && environ[nparent])
		nparent++;
	while (overlay[nover])
		nover++;
	env = co_calloc(nparent + nover + 1, sizeof(*env));
	for (size_t i = 0; i < nparent; i++) {
		int kl = key_len(environ[i]);
		int overridden = 0;

		for (size_t j = 0; j < nover && !overridden; j++)
			overridden = key_len(overlay[j]) == kl &&
				     !strncmp(overlay[j], environ[i], (size_t)kl);
		if (!overridden)
			env[n++] = environ[i];
	}
	for (size_t j = 0; j < nover; j++) {
		int dup = 0;

		/* A key given twice in the overlay: the last one wins. */
		for (size_t k = j + 1; k < nover && !dup; k++)
			dup = key_len(overlay[k]) == key_len(overlay[j]) &&
			      !strncmp(overlay[k], overlay[j],
				       (size_t)key_len(overlay[j]));
		if (!dup)
			env[n++] = (char *)overlay[j];
	}
	env[n] = NULL;
	return env;
}

static void ignore_sigpipe_once(void)
{
	static int done;
	struct sigaction sa;

	/* A child that exits without reading its stdin must not take the runner down
	 * with SIGPIPE on our next write; the write reports EPIPE instead. A handler
	 * the program installed itself is left alone. */
	if (done)
		return;
	done = 1;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
}

int co_subproc_run(uv_loop_t *loop, struct co_subproc **ret_proc,
		   const struct co_subproc_opts *opts, co_subproc_cb cb, void *data,
		   struct co_error *err)
{
	uv_process_options_t po = {0};
	uv_stdio_container_t stdio[3];
	struct co_subproc *p;
	char **env = NULL;
	int r;

	if (!loop || !opts || !opts->argv || !opts->argv[0] || !cb)
		return co_error_set(err, -EINVAL,
				    "spawn: missing loop, argv or callback");

	ignore_sigpipe_once();
	p = co_calloc(1, sizeof(*p));
	p->loop = loop;
	p->cb = cb;
	p->data = data;
	p->max_output = opts->max_output ? opts->max_output : DEFAULT_MAX_OUTPUT;
	p->grace_ms = opts->kill_grace_ms ? opts->kill_grace_ms : DEFAULT_GRACE_MS;
	p->start_ms = co_time_mono_ms();
	co_buf_init(&p->res.out);
	co_buf_init(&p->res.err);

	uv_pipe_init(loop, &p->out, 0);
	uv_pipe_init(loop, &p->errp, 0);
	uv_timer_init(loop, &p->timer);
	p->out.data = p->errp.data = p->timer.data = p->process.data = p;
	p->open_handles = 4;
	if (opts->stdin_data) {
		uv_pipe_init(loop, &p->in, 0);
		p->in.data = p;
		p->has_in = 1;
		p->open_handles++;
		p->stdin_len = opts->stdin_len;
		p->stdin_copy = co_malloc(opts->stdin_len);
		memcpy(p->stdin_copy, opts->stdin_data, opts->stdin_len);
	}

	if (p->has_in) {
		stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
		stdio[0].data.stream = (uv_stream_t *)&p->in;
	} else {
		stdio[0].flags = UV_IGNORE; /* libuv opens /dev/null */
	}
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&p->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&p->errp;

	if (opts->env)
		env = build_env(opts->env);
	po.file = opts->argv[0];
	po.args = (char **)opts->argv;
	po.env = env;
	po.cwd = opts->cwd;
	po.flags = UV_PROCESS_DETACHED;
	po.stdio_count = 3;
	po.stdio = stdio;
	po.exit_cb = on_exit_cb;

	r = uv_spawn(loop, &p->process, &po);
	free(env);
	if (r < 0) {
		/* The handles close on the loop's next turn; no callback (p->finishing
		 * stays 0). */
		co_error_set(err, r, "spawn '%s': %s", opts->argv[0], uv_strerror(r));
		close_all(p);
		return r;
	}
	p->process_started = 1;

	uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
	uv_read_start((uv_stream_t *)&p->errp, on_alloc, on_read);
	if (p->has_in) {
		uv_buf_t b = uv_buf_init(p->stdin_copy, (unsigned int)p->stdin_len);

		p->write_req.data = p;
		if (p->stdin_len == 0 ||
		    uv_write(&p->write_req, (uv_stream_t *)&p->in, &b, 1, on_write) < 0)
			close_handle(p, (uv_handle_t *)&p->in);
	}
	if (opts->timeout_ms) {
		/* The loop's cached time may be stale; the deadline counts from now. */
		uv_update_time(loop);
		p->phase = TIMER_DEADLINE;
		uv_timer_start(&p->timer, on_timer, opts->timeout_ms, 0);
	}
	if (ret_proc)
		*ret_proc = p;
	return 0;
}

void co_subproc_cancel(struct co_subproc *p)
{
	if (!p)
		return;
	p->status = -ECANCELED;
	if (p->finishing)
		return;
	if (p->exited) {
		finish(p);
		return;
	}
	signal_child(p, SIGTERM);
	p->phase = TIMER_GRACE;
	uv_timer_start(&p->timer, on_timer, p->grace_ms, 0);
}

struct sync_ctx {
	struct co_subproc_result *res;
	int done;
};

static void sync_cb(struct co_subproc_result *res, void *data)
{
	struct sync_ctx *ctx = data;

	/* Move the buffers out: the internal copy is released after we return. */
	*ctx->res = *res;
	co_buf_init(&res->out);
	co_buf_init(&res->err);
	ctx->done = 1;
}

int co_subproc_run_sync(const struct co_subproc_opts *opts, struct co_subproc_result *res,
			struct co_error *err)
{
	struct sync_ctx ctx = {.res = res};
	uv_loop_t loop;
	int r;

	memset(res, 0, sizeof(*res));
	co_buf_init(&res->out);
	co_buf_init(&res->err);
	r = uv_loop_init(&loop);
	if (r < 0)
		return co_error_set(err, r, "spawn: loop init: %s", uv_strerror(r));
	r = co_subproc_run(&loop, NULL, opts, sync_cb, &ctx, err);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return r;
}

void co_subproc_result_release(struct co_subproc_result *res)
{
	if (!res)
		return;
	co_buf_release(&res->out);
	co_buf_release(&res->err);
}
