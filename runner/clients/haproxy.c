/*
 * HAProxy runtime API driver.
 *
 * Two layers. A conn is one connection carrying one command line: connect (pipe or
 * TCP), write, read to EOF under a deadline timer, close both handles, then report the
 * raw answer. An op is what a caller asked for: a short sequence of commands run one
 * after the other (add server = add, enable health, enable server; del server = maint,
 * del with retries), optionally followed by "show servers state" written to the state
 * file, and finally one callback shaped for the request (text, weight, or a parsed
 * show-stat table). Ops are linked into the driver so co_haproxy_free() can cancel
 * them; the driver itself is released when the last op is gone.
 *
 * Answers are judged with HAProxy's severity tags (see haproxy.h), never by guessing
 * from success strings, which differ between commands and versions.
 */
#include "clients/haproxy.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/time.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_DEL_TIMEOUT_MS 10000
#define DEFAULT_MAX_ANSWER (16u * 1024 * 1024)
#define DEL_RETRY_MS 200
#define MAX_CMDS 4
#define MAX_CSV_COLUMNS 4096

struct co_haproxy {
	uv_loop_t *loop;
	int is_tcp;
	char *socket;              /* as given, for messages */
	char *path;                /* unix socket path */
	struct sockaddr_storage addr;
	char *state_file;
	uint64_t timeout_ms;
	uint64_t del_timeout_ms;
	size_t max_answer;
	struct op *ops;            /* in flight */
	int freeing;
};

enum op_kind {
	OP_TEXT,        /* co_haproxy_cb */
	OP_WEIGHT,      /* co_haproxy_weight_cb */
	OP_STAT,        /* co_haproxy_stat_cb */
};

struct conn;

struct op {
	struct co_haproxy *hx;
	struct op *prev, *next;
	enum op_kind kind;
	char *label;               /* for messages: "set server 'b/s' weight 10" */
	char *cmds[MAX_CMDS];
	int ncmds;
	int cur;
	int dump_after;            /* write show servers state after the sequence */
	int dumping;
	int del_retry;             /* retry cmds[cur] while connections remain */
	uint64_t deadline_ms;
	struct conn *conn;         /* in flight, or NULL */
	uv_timer_t *retry;         /* retry wait, or NULL */
	int canceled;
	struct co_buf answer;      /* answer of the last command */
	struct co_buf change_answer; /* last non-empty answer before the dump */
	co_haproxy_cb cb;
	co_haproxy_weight_cb weight_cb;
	co_haproxy_stat_cb stat_cb;
	void *data;
};

struct conn {
	struct op *op;
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
	} h;
	uv_connect_t connect_req;
	uv_write_t write_req;
	uv_timer_t timer;
	struct co_buf out;
	struct co_buf in;
	int open_handles;
	int finished;
	int status;
	struct co_error err;
};

static void op_after_conn(struct op *op, int status, struct co_error *err);
static void op_finish(struct op *op, int status, const struct co_error *err);

/* ---- names, addresses, formatting ---- */

const char *co_haproxy_state_name(enum co_haproxy_state state)
{
	switch (state) {
	case CO_HAPROXY_READY:
		return "ready";
	case CO_HAPROXY_DRAIN:
		return "drain";
	case CO_HAPROXY_MAINT:
		return "maint";
	}
	return "unknown";
}

int co_haproxy_parse_state(const char *s, enum co_haproxy_state *ret_state)
{
	if (strcmp(s, "ready") == 0)
		*ret_state = CO_HAPROXY_READY;
	else if (strcmp(s, "drain") == 0)
		*ret_state = CO_HAPROXY_DRAIN;
	else if (strcmp(s, "maint") == 0)
		*ret_state = CO_HAPROXY_MAINT;
	else
		return -EINVAL;
	return 0;
}

static int name_char(int c)
{
	return isalnum(c) || c == '_' || c == '.' || c == ':' || c == '-';
}

int co_haproxy_valid_name(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (; name[n]; n++)
		if (!name_char((unsigned char)name[n]) || n >= 127)
			return 0;
	return n > 0;
}

static int valid_port(const char *s)
{
	char *end;
	long port;

	if (!isdigit((unsigned char)*s))
		return 0;
	port = strtol(s, &end, 10);
	return *end == '\0' && port >= 1 && port <= 65535;
}

int co_haproxy_valid_address(const char *addr)
{
	const char *colon, *p;

	if (!addr || !*addr || strlen(addr) > 255)
		return 0;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');

		if (!close || close == addr + 1 || close[1] != ':')
			return 0;
		for (p = addr + 1; p < close; p++)
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
				return 0;
		return valid_port(close + 2);
	}
	colon = strrchr(addr, ':');
	if (!colon || colon == addr)
		return 0;
	for (p = addr; p < colon; p++)
		if (!name_char((unsigned char)*p) || *p == ':')
			return 0;
	return valid_port(colon + 1);
}

static int check_target(const char *backend, const char *server, struct co_error *err)
{
	if (!co_haproxy_valid_name(backend))
		return co_error_set(err, -EINVAL, "invalid haproxy backend name '%s'",
				    backend ? backend : "");
	if (!co_haproxy_valid_name(server))
		return co_error_set(err, -EINVAL, "invalid haproxy server name '%s'",
				    server ? server : "");
	return 0;
}

static int check_weight(int weight, struct co_error *err)
{
	if (weight < 0 || weight > 256)
		return co_error_set(err, -EINVAL, "haproxy weight %d out of range 0-256",
				    weight);
	return 0;
}

int co_haproxy_format_set_weight(struct co_buf *out, const char *backend,
				 const char *server, int weight, struct co_error *err)
{
	int rc = check_target(backend, server, err);

	if (rc == 0)
		rc = check_weight(weight, err);
	if (rc == 0)
		co_buf_printf(out, "set server %s/%s weight %d", backend, server, weight);
	return rc;
}

int co_haproxy_format_set_state(struct co_buf *out, const char *backend,
				const char *server, enum co_haproxy_state state,
				struct co_error *err)
{
	int rc = check_target(backend, server, err);

	if (rc == 0 && (state < CO_HAPROXY_READY || state > CO_HAPROXY_MAINT))
		rc = co_error_set(err, -EINVAL, "invalid haproxy server state %d",
				  (int)state);
	if (rc == 0)
		co_buf_printf(out, "set server %s/%s state %s", backend, server,
			      co_haproxy_state_name(state));
	return rc;
}

int co_haproxy_format_add_server(struct co_buf *out, const char *backend,
				 const char *server,
				 const struct co_haproxy_server_spec *spec,
				 struct co_error *err)
{
	int rc = check_target(backend, server, err);

	if (rc == 0 && !co_haproxy_valid_address(spec->address))
		rc = co_error_set(err, -EINVAL, "invalid haproxy server address '%s'",
				  spec->address ? spec->address : "");
	if (rc == 0)
		rc = check_weight(spec->weight, err);
	if (rc == 0)
		co_buf_printf(out, "add server %s/%s %s weight %d%s", backend, server,
			      spec->address, spec->weight, spec->check ? " check" : "");
	return rc;
}

/* ---- answers ---- */

static int refusal(const char *line)
{
	static const char *const prefixes[] = {
		"Unknown command", "unknown keyword", "Permission denied",
		"Missing argument", "Require ",
	};

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
		if (strncmp(line, prefixes[i], strlen(prefixes[i])) == 0)
			return 1;
	return 0;
}

int co_haproxy_parse_answer(const char *raw, size_t len, struct co_buf *text)
{
	const char *p = raw, *end = raw + len;
	int rc = 0, first = 1;

	/* the empty answer of "set severity-output number" */
	if (p < end && *p == '\n')
		p++;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl ? nl : end;

		if (eol - p >= 5 && p[0] == '[' && isdigit((unsigned char)p[1]) &&
		    p[2] == ']' && p[3] == ':' && p[4] == ' ') {
			if (p[1] <= '4')
				rc = -EIO;
			p += 5;
		}
		if (first && refusal(p))
			rc = -EIO;
		first = 0;
		co_buf_append(text, p, (size_t)(eol - p));
		co_buf_putc(text, '\n');
		p = nl ? nl + 1 : end;
	}
	while (text->len > 0 && text->data[text->len - 1] == '\n')
		text->data[--text->len] = '\0';
	return rc;
}

/* First non-empty line of text without a trailing period, for error messages. */
static void first_line(const char *text, char *out, size_t n)
{
	size_t len;

	while (*text == '\n')
		text++;
	len = strcspn(text, "\n");
	if (len >= n)
		len = n - 1;
	memcpy(out, text, len);
	out[len] = '\0';
	if (len > 0 && out[len - 1] == '.')
		out[len - 1] = '\0';
}

/* ---- connections ---- */

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct op *op = c->op;

	if (--c->open_handles > 0)
		return;
	op->conn = NULL;
	if (op->canceled) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, -ECANCELED, "%s: canceled", op->label);
		op_finish(op, -ECANCELED, &err);
	} else if (c->status < 0) {
		op_finish(op, c->status, &c->err);
	} else {
		struct co_buf text = CO_BUF_INIT;
		int rc = co_haproxy_parse_answer(c->in.data ? c->in.data : "", c->in.len,
						 &text);

		co_buf_release(&op->answer);
		op->answer = text;
		if (rc < 0) {
			char line[256];

			first_line(co_buf_cstr(&op->answer), line, sizeof(line));
			co_error_set(&c->err, rc, "%s: %s", op->label,
				     *line ? line : "refused by haproxy");
			c->status = rc;
		}
		op_after_conn(op, c->status, &c->err);
	}
	co_buf_release(&c->out);
	co_buf_release(&c->in);
	free(c);
}

static void conn_finish(struct conn *c, int status)
{
	if (c->finished)
		return;
	c->finished = 1;
	c->status = status;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_closed);
	uv_close((uv_handle_t *)&c->h, conn_closed);
}

static void conn_fail(struct conn *c, int status, const char *what)
{
	if (c->finished)
		return;
	co_error_set(&c->err, status, "%s: haproxy socket '%s': %s: %s", c->op->label,
		     c->op->hx->socket, what, uv_strerror(status));
	conn_finish(c, status);
}

static void on_timeout(uv_timer_t *t)
{
	struct conn *c = t->data;

	co_error_set(&c->err, -ETIMEDOUT, "%s: haproxy socket '%s': no answer within %s",
		     c->op->label, c->op->hx->socket, "the command timeout");
	conn_finish(c, -ETIMEDOUT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	co_buf_grow(&c->in, 65536);
	buf->base = c->in.data + c->in.len;
	buf->len = c->in.cap - c->in.len - 1;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (c->finished)
		return;
	if (nread == UV_EOF) {
		conn_finish(c, 0);
	} else if (nread < 0) {
		conn_fail(c, (int)nread, "read");
	} else if (nread > 0) {
		c->in.len += (size_t)nread;
		c->in.data[c->in.len] = '\0';
		if (c->in.len > c->op->hx->max_answer) {
			co_error_set(&c->err, -E2BIG, "%s: answer larger than %zu bytes",
				     c->op->label, c->op->hx->max_answer);
			conn_finish(c, -E2BIG);
		}
	}
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	if (status < 0 && status != UV_ECANCELED)
		conn_fail(c, status, "write");
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	uv_buf_t b;
	int rc;

	if (c->finished)
		return;
	if (status < 0) {
		conn_fail(c, status, "connect");
		return;
	}
	b = uv_buf_init(c->out.data, (unsigned)c->out.len);
	rc = uv_write(&c->write_req, (uv_stream_t *)&c->h, &b, 1, on_write);
	if (rc == 0)
		rc = uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
	if (rc < 0)
		conn_fail(c, rc, "write");
}

/* Start cmd on a new connection for op. Failures surface through the op callback. */
static void conn_start(struct op *op, const char *cmd)
{
	struct co_haproxy *hx = op->hx;
	struct conn *c = co_calloc(1, sizeof(*c));
	int rc = 0;

	c->op = op;
	op->conn = c;
	co_buf_printf(&c->out, "set severity-output number; %s\n", cmd);
	co_log_debug("haproxy", "'%s' <- '%s'", hx->socket, cmd);
	uv_timer_init(hx->loop, &c->timer);
	c->timer.data = c;
	c->open_handles = 2;
	c->connect_req.data = c;
	c->write_req.data = c;
	if (hx->is_tcp) {
		uv_tcp_init(hx->loop, &c->h.tcp);
		c->h.tcp.data = c;
		rc = uv_tcp_connect(&c->connect_req, &c->h.tcp,
				    (const struct sockaddr *)&hx->addr, on_connect);
	} else {
		uv_pipe_init(hx->loop, &c->h.pipe, 0);
		c->h.pipe.data = c;
		uv_pipe_connect(&c->connect_req, &c->h.pipe, hx->path, on_connect);
	}
	uv_timer_start(&c->timer, on_timeout, hx->timeout_ms, 0);
	if (rc < 0)
		conn_fail(c, rc, "connect");
}

/* ---- operations ---- */

static void op_unlink_and_free(struct op *op)
{
	struct co_haproxy *hx = op->hx;

	if (op->prev)
		op->prev->next = op->next;
	else
		hx->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	for (int i = 0; i < op->ncmds; i++)
		free(op->cmds[i]);
	free(op->label);
	co_buf_release(&op->answer);
	co_buf_release(&op->change_answer);
	free(op);
	if (hx->freeing && !hx->ops) {
		free(hx->socket);
		free(hx->path);
		free(hx->state_file);
		free(hx);
	}
}

static int parse_weight_answer(const char *s, int *cur, int *initial)
{
	char *end;
	long a, b;

	a = strtol(s, &end, 10);
	if (end == s || strncmp(end, " (initial ", 10) != 0)
		return -EBADMSG;
	s = end + 10;
	b = strtol(s, &end, 10);
	if (end == s || *end != ')')
		return -EBADMSG;
	*cur = (int)a;
	*initial = (int)b;
	return 0;
}

static void op_finish(struct op *op, int status, const struct co_error *err)
{
	const char *answer = status < 0 ? "" : co_buf_cstr(&op->answer);
	struct co_error local = CO_ERROR_INIT;

	if (op->kind == OP_TEXT) {
		/* the answer of the change itself, not of the state dump */
		op->cb(status, status < 0 ? "" : co_buf_cstr(&op->change_answer), err,
		       op->data);
	} else if (op->kind == OP_WEIGHT) {
		int cur = 0, initial = 0;

		if (status == 0 && parse_weight_answer(answer, &cur, &initial) < 0) {
			status = co_error_set(&local, -EBADMSG, "%s: unexpected answer '%.80s'",
					      op->label, answer);
			err = &local;
		}
		op->weight_cb(status, cur, initial, err, op->data);
	} else {
		struct co_haproxy_csv *csv = NULL;

		if (status == 0) {
			status = co_haproxy_csv_parse(&csv, op->answer.data ? op->answer.data
									: "",
						      op->answer.len, &local);
			if (status < 0) {
				co_error_prefix(&local, "%s", op->label);
				err = &local;
			}
		}
		op->stat_cb(status, csv, err, op->data);
		co_haproxy_csv_free(csv);
	}
	op_unlink_and_free(op);
}

static void retry_closed(uv_handle_t *h)
{
	struct op *op = h->data;

	free(op->retry);
	op->retry = NULL;
	if (op->canceled) {
		struct co_error err = CO_ERROR_INIT;

		co_error_set(&err, -ECANCELED, "%s: canceled", op->label);
		op_finish(op, -ECANCELED, &err);
	} else {
		conn_start(op, op->cmds[op->cur]);
	}
}

static void on_retry(uv_timer_t *t)
{
	uv_close((uv_handle_t *)t, retry_closed);
}

/* Called with the result of the command just answered (op->answer holds its text). */
static void op_after_conn(struct op *op, int status, struct co_error *err)
{
	if (status < 0) {
		if (op->del_retry && op->cur == op->ncmds - 1 &&
		    strstr(co_buf_cstr(&op->answer), "still has connections") &&
		    co_time_mono_ms() < op->deadline_ms) {
			op->retry = co_calloc(1, sizeof(*op->retry));
			uv_timer_init(op->hx->loop, op->retry);
			op->retry->data = op;
			uv_timer_start(op->retry, on_retry, DEL_RETRY_MS, 0);
			return;
		}
		op_finish(op, status, err);
		return;
	}
	if (op->dumping) {
		struct co_error werr = CO_ERROR_INIT;
		int rc;

		co_buf_putc(&op->answer, '\n');
		rc = co_fs_write_atomic(op->hx->state_file, op->answer.data,
					  op->answer.len, 0600, &werr);
		if (rc < 0) {
			co_error_prefix(&werr, "%s: server-state dump", op->label);
			op_finish(op, rc, &werr);
			return;
		}
		op_finish(op, 0, NULL);
		return;
	}
	if (op->answer.len > 0) {
		co_buf_reset(&op->change_answer);
		co_buf_puts(&op->change_answer, co_buf_cstr(&op->answer));
	}
	if (++op->cur < op->ncmds) {
		conn_start(op, op->cmds[op->cur]);
	} else if (op->dump_after && op->hx->state_file) {
		op->dumping = 1;
		conn_start(op, "show servers state");
	} else {
		op_finish(op, 0, NULL);
	}
}

static struct op *op_new(struct co_haproxy *hx, enum op_kind kind, char *label)
{
	struct op *op = co_calloc(1, sizeof(*op));

	op->hx = hx;
	op->kind = kind;
	op->label = label;
	op->next = hx->ops;
	if (hx->ops)
		hx->ops->prev = op;
	hx->ops = op;
	return op;
}

static void op_add_cmd(struct op *op, char *cmd)
{
	assert(op->ncmds < MAX_CMDS);
	op->cmds[op->ncmds++] = cmd;
}

static void op_start(struct op *op)
{
	conn_start(op, op->cmds[0]);
}

/* ---- public API ---- */

static int parse_socket(struct co_haproxy *hx, const char *s, struct co_error *err)
{
	char host[256];
	const char *colon, *h = s;
	size_t hlen;
	int port, rc;

	if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "unix@", 5) == 0) {
		hx->path = co_strdup(s + 5);
		return *hx->path ? 0 : co_error_set(err, -EINVAL, "empty haproxy socket path");
	}
	if (strchr(s, '/') || !strchr(s, ':')) {
		hx->path = co_strdup(s);
		return 0;
	}
	if (strncmp(h, "ipv4@", 5) == 0 || strncmp(h, "ipv6@", 5) == 0 ||
	    strncmp(h, "tcp://", 6) == 0)
		h = strchr(h, h[0] == 't' ? '/' : '@') + (h[0] == 't' ? 2 : 1);
	colon = strrchr(h, ':');
	if (!colon || !valid_port(colon + 1))
		return co_error_set(err, -EINVAL, "invalid haproxy socket address '%s'", s);
	port = atoi(colon + 1);
	hlen = (size_t)(colon - h);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return co_error_set(err, -EINVAL, "invalid haproxy socket address '%s'", s);
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&hx->addr);
	if (rc < 0)
		rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&hx->addr);
	if (rc < 0)
		return co_error_set(err, -EINVAL,
				    "invalid haproxy socket address '%s': numeric host expected",
				    s);
	hx->is_tcp = 1;
	return 0;
}

int co_haproxy_new(struct co_haproxy **ret_hx, uv_loop_t *loop,
		   const struct co_haproxy_opts *opts, struct co_error *err)
{
	struct co_haproxy *hx;
	int rc;

	if (!opts->socket || !*opts->socket)
		return co_error_set(err, -EINVAL, "no haproxy socket given");
	hx = co_calloc(1, sizeof(*hx));
	hx->loop = loop;
	hx->socket = co_strdup(opts->socket);
	rc = parse_socket(hx, opts->socket, err);
	if (rc < 0) {
		free(hx->socket);
		free(hx->path);
		free(hx);
		return rc;
	}
	hx->state_file = opts->state_file ? co_strdup(opts->state_file) : NULL;
	hx->timeout_ms = opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
	hx->del_timeout_ms = opts->del_timeout_ms ? opts->del_timeout_ms
						  : DEFAULT_DEL_TIMEOUT_MS;
	hx->max_answer = opts->max_answer_bytes ? opts->max_answer_bytes
						: DEFAULT_MAX_ANSWER;
	*ret_hx = hx;
	return 0;
}

void co_haproxy_free(struct co_haproxy *hx)
{
	if (!hx)
		return;
	hx->freeing = 1;
	if (!hx->ops) {
		free(hx->socket);
		free(hx->path);
		free(hx->state_file);
		free(hx);
		return;
	}
	for (struct op *op = hx->ops; op; op = op->next) {
		op->canceled = 1;
		if (op->conn && !op->conn->finished)
			conn_finish(op->conn, -ECANCELED);
		if (op->retry && !uv_is_closing((uv_handle_t *)op->retry))
			uv_close((uv_handle_t *)op->retry, retry_closed);
	}
}

static int check_live(struct co_haproxy *hx, struct co_error *err)
{
	if (hx->freeing)
		return co_error_set(err, -ECANCELED, "haproxy driver is being freed");
	return 0;
}

int co_haproxy_command(struct co_haproxy *hx, const char *command, co_haproxy_cb cb,
		       void *data, struct co_error *err)
{
	struct op *op;
	int rc = check_live(hx, err);

	if (rc < 0)
		return rc;
	if (!command || !*command)
		return co_error_set(err, -EINVAL, "empty haproxy command");
	for (const char *p = command; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ';')
			return co_error_set(err, -EINVAL,
					    "haproxy command with a control character or ';'");
	if (strlen(command) > 4096)
		return co_error_set(err, -EINVAL, "haproxy command longer than 4096 bytes");
	op = op_new(hx, OP_TEXT, co_asprintf("'%.60s'", command));
	op->cb = cb;
	op->data = data;
	op_add_cmd(op, co_strdup(command));
	op_start(op);
	return 0;
}

int co_haproxy_set_weight(struct co_haproxy *hx, const char *backend, const char *server,
			  int weight, co_haproxy_cb cb, void *data, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	struct op *op;
	int rc = check_live(hx, err);

	if (rc == 0)
		rc = co_haproxy_format_set_weight(&b, backend, server, weight, err);
	if (rc < 0) {
		co_buf_release(&b);
		return rc;
	}
	op = op_new(hx, OP_TEXT,
		    co_asprintf("set server '%s/%s' weight %d", backend, server, weight));
	op->cb = cb;
	op->data = data;
	op->dump_after = 1;
	op_add_cmd(op, co_buf_detach(&b, NULL));
	op_start(op);
	return 0;
}

int co_haproxy_set_state(struct co_haproxy *hx, const char *backend, const char *server,
			 enum co_haproxy_state state, co_haproxy_cb cb, void *data,
			 struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	struct op *op;
	int rc = check_live(hx, err);

	if (rc == 0)
		rc = co_haproxy_format_set_state(&b, backend, server, state, err);
	if (rc < 0) {
		co_buf_release(&b);
		return rc;
	}
	op = op_new(hx, OP_TEXT,
		    co_asprintf("set server '%s/%s' state %s", backend, server,
				co_haproxy_state_name(state)));
	op->cb = cb;
	op->data = data;
	op->dump_after = 1;
	op_add_cmd(op, co_buf_detach(&b, NULL));
	op_start(op);
	return 0;
}

int co_haproxy_get_weight(struct co_haproxy *hx, const char *backend, const char *server,
			  co_haproxy_weight_cb cb, void *data, struct co_error *err)
{
	struct op *op;
	int rc = check_live(hx, err);

	if (rc == 0)
		rc = check_target(backend, server, err);
	if (rc < 0)
		return rc;
	op = op_new(hx, OP_WEIGHT, co_asprintf("get weight '%s/%s'", backend, server));
	op->weight_cb = cb;
	op->data = data;
	op_add_cmd(op, co_asprintf("get weight %s/%s", backend, server));
	op_start(op);
	return 0;
}

int co_haproxy_add_server(struct co_haproxy *hx, const char *backend, const char *server,
			  const struct co_haproxy_server_spec *spec, co_haproxy_cb cb,
			  void *data, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	struct op *op;
	int rc = check_live(hx, err);

	if (rc == 0)
		rc = co_haproxy_format_add_server(&b, backend, server, spec, err);
	if (rc < 0) {
		co_buf_release(&b);
		return rc;
	}
	op = op_new(hx, OP_TEXT, co_asprintf("add server '%s/%s'", backend, server));
	op->cb = cb;
	op->data = data;
	op->dump_after = 1;
	op_add_cmd(op, co_buf_detach(&b, NULL));
	/* dynamic servers start in maintenance with their checks disabled */
	if (spec->check)
		op_add_cmd(op, co_asprintf("enable health %s/%s", backend, server));
	if (spec->start_ready)
		op_add_cmd(op, co_asprintf("enable server %s/%s", backend, server));
	op_start(op);
	return 0;
}

int co_haproxy_del_server(struct co_haproxy *hx, const char *backend, const char *server,
			  co_haproxy_cb cb, void *data, struct co_error *err)
{
	struct op *op;
	int rc = check_live(hx, err);

	if (rc == 0)
		rc = check_target(backend, server, err);
	if (rc < 0)
		return rc;
	op = op_new(hx, OP_TEXT, co_asprintf("del server '%s/%s'", backend, server));
	op->cb = cb;
	op->data = data;
	op->dump_after = 1;
	op->del_retry = 1;
	op->deadline_ms = co_time_mono_ms() + hx->del_timeout_ms;
	op_add_cmd(op, co_asprintf("set server %s/%s state maint", backend, server));
	op_add_cmd(op, co_asprintf("del server %s/%s", backend, server));
	op_start(op);
	return 0;
}

int co_haproxy_dump_state(struct co_haproxy *hx, co_haproxy_cb cb, void *data,
			  struct co_error *err)
{
	struct op *op;
	int rc = check_live(hx, err);

	if (rc < 0)
		return rc;
	if (!hx->state_file)
		return co_error_set(err, -EINVAL, "no haproxy server-state file configured");
	op = op_new(hx, OP_TEXT, co_strdup("dump server state"));
	op->cb = cb;
	op->data = data;
	op->dumping = 1;
	op_add_cmd(op, co_strdup("show servers state"));
	op_start(op);
	return 0;
}

int co_haproxy_show_stat(struct co_haproxy *hx, co_haproxy_stat_cb cb, void *data,
			 struct co_error *err)
{
	struct op *op;
	int rc = check_live(hx, err);

	if (rc < 0)
		return rc;
	op = op_new(hx, OP_STAT, co_strdup("show stat"));
	op->stat_cb = cb;
	op->data = data;
	op_add_cmd(op, co_strdup("show stat"));
	op_start(op);
	return 0;
}

/* ---- show stat CSV ---- */

struct co_haproxy_csv {
	char *text;          /* owned copy, fields point into it */
	char **names;
	size_t ncols;
	char ***rows;        /* nrows arrays of ncols fields */
	size_t nrows;
};

static char empty_field[] = "";

/*
 * Split one line in place into fields (RFC 4180 quoting, which HAProxy uses for fields
 * that contain commas or quotes). Stores up to max field pointers; returns the count.
 */
static size_t split_line(char *line, char **fields, size_t max)
{
	size_t n = 0;
	char *p = line;

	for (;;) {
		char *start = p, *w = p;

		if (*p == '"') {
			p++;
			while (*p) {
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
			while (*p && *p != ',')
				p++;
		} else {
			while (*p && *p != ',')
				p++;
			w = p;
		}
		if (n < max)
			fields[n] = start;
		n++;
		if (*p == '\0') {
			*w = '\0';
			break;
		}
		*w = '\0';
		p++;
	}
	return n;
}

int co_haproxy_csv_parse(struct co_haproxy_csv **ret, const char *text, size_t len,
			 struct co_error *err)
{
	struct co_haproxy_csv *csv;
	char *line, *next, **tmp;
	size_t n, cap_rows = 0;

	while (len > 0 && (*text == '\n' || *text == '\r')) {
		text++;
		len--;
	}
	if (len < 2 || text[0] != '#' || text[1] != ' ')
		return co_error_set(err, -EBADMSG,
				    "show stat: no '# ' header line in the answer");
	csv = co_calloc(1, sizeof(*csv));
	csv->text = co_strndup(text, len);
	line = csv->text + 2;
	next = strchr(line, '\n');
	if (next)
		*next++ = '\0';
	n = strlen(line);
	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	tmp = co_calloc(MAX_CSV_COLUMNS, sizeof(char *));
	n = split_line(line, tmp, MAX_CSV_COLUMNS);
	if (n > MAX_CSV_COLUMNS) {
		free(tmp);
		co_haproxy_csv_free(csv);
		return co_error_set(err, -EBADMSG, "show stat: more than %d columns",
				    MAX_CSV_COLUMNS);
	}
	/* HAProxy ends every line with a comma: drop the empty last name */
	while (n > 0 && tmp[n - 1][0] == '\0')
		n--;
	csv->ncols = n;
	csv->names = co_calloc(n ? n : 1, sizeof(char *));
	memcpy(csv->names, tmp, n * sizeof(char *));
	for (line = next; line && *line; line = next) {
		char **row;
		size_t m;

		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		m = strlen(line);
		if (m > 0 && line[m - 1] == '\r')
			line[m - 1] = '\0';
		if (!*line || line[0] == '#')
			continue;
		m = split_line(line, tmp, MAX_CSV_COLUMNS);
		row = co_calloc(n ? n : 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			row[i] = i < m && i < MAX_CSV_COLUMNS ? tmp[i] : empty_field;
		if (csv->nrows == cap_rows) {
			cap_rows = cap_rows ? cap_rows * 2 : 16;
			csv->rows = co_realloc(csv->rows, cap_rows * sizeof(*csv->rows));
		}
		csv->rows[csv->nrows++] = row;
	}
	free(tmp);
	*ret = csv;
	return 0;
}

void co_haproxy_csv_free(struct co_haproxy_csv *csv)
{
	if (!csv)
		return;
	for (size_t i = 0; i < csv->nrows; i++)
		free(csv->rows[i]);
	free(csv->rows);
	free(csv->names);
	free(csv->text);
	free(csv);
}

size_t co_haproxy_csv_rows(const struct co_haproxy_csv *csv)
{
	return csv->nrows;
}

int co_haproxy_csv_column(const struct co_haproxy_csv *csv, const char *name)
{
	for (size_t i = 0; i < csv->ncols; i++)
		if (strcmp(csv->names[i], name) == 0)
			return (int)i;
	return -1;
}

const char *co_haproxy_csv_get(const struct co_haproxy_csv *csv, size_t row,
			       const char *name)
{
	int col = co_haproxy_csv_column(csv, name);

	if (col < 0 || row >= csv->nrows)
		return NULL;
	return csv->rows[row][col];
}

long co_haproxy_csv_find(const struct co_haproxy_csv *csv, const char *pxname,
			 const char *svname)
{
	int px = co_haproxy_csv_column(csv, "pxname");
	int sv = co_haproxy_csv_column(csv, "svname");

	if (px < 0 || sv < 0)
		return -1;
	for (size_t i = 0; i < csv->nrows; i++)
		if (strcmp(csv->rows[i][px], pxname) == 0 &&
		    strcmp(csv->rows[i][sv], svname) == 0)
			return (long)i;
	return -1;
}

static uint64_t get_u64(const struct co_haproxy_csv *csv, size_t row, const char *name)
{
	const char *v = co_haproxy_csv_get(csv, row, name);

	return v && isdigit((unsigned char)*v) ? strtoull(v, NULL, 10) : 0;
}

static void copy_field(char *dst, size_t n, const char *src)
{
	snprintf(dst, n, "%s", src ? src : "");
}

int co_haproxy_csv_server(const struct co_haproxy_csv *csv, size_t row,
			  struct co_haproxy_server_stat *ret)
{
	static const char *const hrsp[6] = {
		"hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other",
	};
	struct co_haproxy_server_stat s;
	const char *type = co_haproxy_csv_get(csv, row, "type");
	const char *sv = co_haproxy_csv_get(csv, row, "svname");
	const char *uw;

	if (row >= csv->nrows || !sv)
		return -ENOENT;
	if (type ? strcmp(type, "2") != 0
		 : strcmp(sv, "FRONTEND") == 0 || strcmp(sv, "BACKEND") == 0)
		return -ENOENT;
	memset(&s, 0, sizeof(s));
	copy_field(s.backend, sizeof(s.backend), co_haproxy_csv_get(csv, row, "pxname"));
	copy_field(s.server, sizeof(s.server), sv);
	copy_field(s.status, sizeof(s.status), co_haproxy_csv_get(csv, row, "status"));
	copy_field(s.check_status, sizeof(s.check_status),
		   co_haproxy_csv_get(csv, row, "check_status"));
	copy_field(s.addr, sizeof(s.addr), co_haproxy_csv_get(csv, row, "addr"));
	s.weight = (int)get_u64(csv, row, "weight");
	uw = co_haproxy_csv_get(csv, row, "uweight");
	s.uweight = uw && *uw ? atoi(uw) : s.weight;
	s.scur = get_u64(csv, row, "scur");
	s.stot = get_u64(csv, row, "stot");
	s.rate = get_u64(csv, row, "rate");
	for (int i = 0; i < 6; i++)
		s.hrsp[i] = get_u64(csv, row, hrsp[i]);
	s.econ = get_u64(csv, row, "econ");
	s.eresp = get_u64(csv, row, "eresp");
	*ret = s;
	return 0;
}
