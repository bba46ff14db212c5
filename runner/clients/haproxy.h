/*
 * HAProxy runtime API driver (the "stats socket" CLI), asynchronous on libuv.
 *
 * Transport: a unix socket path ("/run/haproxy/admin.sock", "unix:PATH") or a TCP
 * stats socket ("127.0.0.1:9999", "ipv4@127.0.0.1:9999", "[::1]:9999").
 *
 * Mode: one command per connection, HAProxy's non-interactive mode. The driver sends
 * "set severity-output number; <command>\n" and reads until HAProxy closes. Every
 * command therefore stands alone (no prompt state to resynchronise after a timeout, no
 * head-of-line blocking between concurrent operations), and messages come back tagged
 * with a syslog severity ("[3]: No such server.") so errors are told from information
 * without matching every message HAProxy 2.6 may print. Answers with severity 0-4, and
 * the few untagged refusals ("Unknown command..."), become an error whose message is
 * HAProxy's text, e.g. "set server 'clusters/nope' weight 10: No such server".
 *
 * Syntax follows HAProxy 2.6 (Debian 12): "set server B/S weight N" (0-256),
 * "set server B/S state ready|drain|maint", "get weight B/S", "add server B/S ADDR
 * [weight N] [check]" (dynamic servers start in maintenance with checks disabled, so
 * the driver follows with "enable health" and "enable server"), "del server B/S" (only
 * for a server in maintenance without connections: the driver sets maint first and
 * retries while HAProxy answers that connections are still attached), "show stat"
 * (CSV, parsed by header name) and "show servers state" (the server-state file format).
 *
 * Persistence: with opts.state_file set, every change is followed by "show servers
 * state" written atomically to that file, which the generated configuration loads with
 * "load-server-state-from-file global": a reload keeps weights and admin states.
 *
 * Async contract: a function returning 0 calls its callback exactly once, later, from
 * the loop; one returning an error never calls it. co_haproxy_free() cancels what is in
 * flight: those callbacks run with -ECANCELED.
 */
#ifndef CO_CLIENTS_HAPROXY_H
#define CO_CLIENTS_HAPROXY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "base/error.h"

struct co_haproxy;

struct co_haproxy_opts {
	const char *socket;        /* required: unix path or TCP address, see above */
	const char *state_file;    /* NULL: do not dump server state after changes */
	uint64_t timeout_ms;       /* per command; 0 = 5000 */
	uint64_t del_timeout_ms;   /* how long del_server waits for connections; 0 = 10 s */
	size_t max_answer_bytes;   /* 0 = 16 MiB; beyond, the command fails with -E2BIG */
};

enum co_haproxy_state {
	CO_HAPROXY_READY,
	CO_HAPROXY_DRAIN,
	CO_HAPROXY_MAINT,
};

const char *co_haproxy_state_name(enum co_haproxy_state state);   /* "ready" ... */
int co_haproxy_parse_state(const char *s, enum co_haproxy_state *ret_state);

/* Strings are copied. Returns 0, -EINVAL for a bad address, with err filled. */
int co_haproxy_new(struct co_haproxy **ret_hx, uv_loop_t *loop,
		   const struct co_haproxy_opts *opts, struct co_error *err);
/* Cancels in-flight commands (-ECANCELED) and frees once their handles are closed.
 * Takes NULL. */
void co_haproxy_free(struct co_haproxy *hx);

/*
 * Completion of a command. status 0 or negative; err describes a failure (borrowed for
 * the call). answer: HAProxy's answer without the severity tag and trailing blank
 * lines, borrowed for the call, "" on failure.
 */
typedef void (*co_haproxy_cb)(int status, const char *answer, const struct co_error *err,
			      void *data);

/*
 * A raw command (one line, no ';' joining: use several calls). For commands the typed
 * functions below do not cover ("show info", "shutdown sessions server B/S"). Not
 * followed by a state dump. Returns -EINVAL for an empty command or one containing a
 * control character or ';'.
 */
int co_haproxy_command(struct co_haproxy *hx, const char *command, co_haproxy_cb cb,
		       void *data, struct co_error *err);

int co_haproxy_set_weight(struct co_haproxy *hx, const char *backend, const char *server,
			  int weight, co_haproxy_cb cb, void *data, struct co_error *err);
int co_haproxy_set_state(struct co_haproxy *hx, const char *backend, const char *server,
			 enum co_haproxy_state state, co_haproxy_cb cb, void *data,
			 struct co_error *err);

typedef void (*co_haproxy_weight_cb)(int status, int current, int initial,
				     const struct co_error *err, void *data);
int co_haproxy_get_weight(struct co_haproxy *hx, const char *backend, const char *server,
			  co_haproxy_weight_cb cb, void *data, struct co_error *err);

struct co_haproxy_server_spec {
	const char *address;    /* "host:port", required */
	int weight;             /* 0-256 */
	int check;              /* health-check it like the backend's other servers */
	int start_ready;        /* enable the server after adding (else stays maint) */
};
int co_haproxy_add_server(struct co_haproxy *hx, const char *backend, const char *server,
			  const struct co_haproxy_server_spec *spec, co_haproxy_cb cb,
			  void *data, struct co_error *err);
/* maint, then "del server" retried until connections are gone or del_timeout_ms. */
int co_haproxy_del_server(struct co_haproxy *hx, const char *backend, const char *server,
			  co_haproxy_cb cb, void *data, struct co_error *err);

/* "show servers state" written to opts.state_file (-EINVAL without one). */
int co_haproxy_dump_state(struct co_haproxy *hx, co_haproxy_cb cb, void *data,
			  struct co_error *err);

/* ---- show stat ---- */

/* A CSV table whose columns are addressed by header name. */
struct co_haproxy_csv;

/*
 * Parse "show stat" output: the first line starts with "# " and names the columns;
 * each following non-empty line is one row (short rows read as empty fields). Returns
 * 0 or -EBADMSG without a header, with err filled. Caller owns *ret, free with
 * co_haproxy_csv_free().
 */
int co_haproxy_csv_parse(struct co_haproxy_csv **ret, const char *text, size_t len,
			 struct co_error *err);
void co_haproxy_csv_free(struct co_haproxy_csv *csv);
size_t co_haproxy_csv_rows(const struct co_haproxy_csv *csv);
/* Column index of a header name, or -1. */
int co_haproxy_csv_column(const struct co_haproxy_csv *csv, const char *name);
/* Field of row by column name; NULL when the column does not exist, "" when empty. */
const char *co_haproxy_csv_get(const struct co_haproxy_csv *csv, size_t row,
			       const char *name);
/* Row of proxy pxname and service svname ("FRONTEND", "BACKEND" or a server); -1. */
long co_haproxy_csv_find(const struct co_haproxy_csv *csv, const char *pxname,
			 const char *svname);

/* What cutover reads about one server, extracted by header name. Counters are 0 when
 * a column is missing or empty. */
struct co_haproxy_server_stat {
	char backend[128];
	char server[128];
	char status[32];        /* "UP", "DOWN", "MAINT", "DRAIN", "no check", "UP 1/3" */
	char check_status[32];  /* "L7OK", "L4CON", ... */
	char addr[64];
	int weight;             /* effective weight */
	int uweight;            /* user weight (set server weight) when reported */
	uint64_t scur;          /* current sessions */
	uint64_t stot;          /* total sessions */
	uint64_t rate;          /* sessions over the last second */
	uint64_t hrsp[6];       /* 1xx, 2xx, 3xx, 4xx, 5xx, other */
	uint64_t econ;          /* connection errors */
	uint64_t eresp;         /* response errors */
};

/* Fill ret from row; returns 0 or -ENOENT when the row is not a server row. */
int co_haproxy_csv_server(const struct co_haproxy_csv *csv, size_t row,
			  struct co_haproxy_server_stat *ret);

/* Completion of show_stat: csv borrowed for the call (NULL on failure). */
typedef void (*co_haproxy_stat_cb)(int status, const struct co_haproxy_csv *csv,
				   const struct co_error *err, void *data);
int co_haproxy_show_stat(struct co_haproxy *hx, co_haproxy_stat_cb cb, void *data,
			 struct co_error *err);

/* ---- helpers exposed for tests and other drivers ---- */

/* HAProxy names (proxies, servers): 1-127 of [A-Za-z0-9_.:-]. */
int co_haproxy_valid_name(const char *name);
/* "host:port", "[v6]:port"; host of [A-Za-z0-9_.:-], port 1-65535. */
int co_haproxy_valid_address(const char *addr);
/*
 * Format a typed command into out after validating it, e.g.
 * co_haproxy_format_set_weight(&b, "clusters", "green", 25) -> "set server
 * clusters/green weight 25". Return 0 or -EINVAL with err filled.
 */
int co_haproxy_format_set_weight(struct co_buf *out, const char *backend,
				 const char *server, int weight, struct co_error *err);
int co_haproxy_format_set_state(struct co_buf *out, const char *backend,
				const char *server, enum co_haproxy_state state,
				struct co_error *err);
int co_haproxy_format_add_server(struct co_buf *out, const char *backend,
				 const char *server,
				 const struct co_haproxy_server_spec *spec,
				 struct co_error *err);
/*
 * Split a raw answer into status and text: strips the empty answer of "set
 * severity-output", the "[N]: " tags and trailing blank lines into text, and returns 0,
 * or -EIO when a message has severity 0-4 or HAProxy refused the command ("Unknown
 * command", "unknown keyword", "Permission denied").
 */
int co_haproxy_parse_answer(const char *raw, size_t len, struct co_buf *text);

#endif
