/*
 * The loadtester core: webhook payload decoding, the gate table and background
 * commands. Gates are a small list keyed by "name.namespace" (rollback gates by
 * "rollback.name.namespace", as Flagger keys them), bounded by max_gates because the
 * keys come from the network. A command is a task holding its parsed hey command and
 * its co_loadgen; tasks sit in a list that also serves de-duplication (same canary
 * and same command string while running). The HTTP glue lives in loadtester-http.c
 * so this part can be used and tested without a server.
 */
#include "analysis/loadtester.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/heycmd.h"
#include "base/log.h"

#define MAX_NAME 253

struct gate {
	struct gate *next;
	int open;
	char key[];
};

struct task {
	struct task *next;
	struct co_loadtester *lt;
	char *canary;
	char *cmd;
	struct co_heycmd *hey;
	struct co_loadgen *lg;
};

struct co_loadtester {
	uv_loop_t *loop;
	unsigned max_running;
	unsigned max_gates;
	struct gate *gates;
	unsigned n_gates;
	struct task *tasks;
	struct co_loadtester_stats stats;
	co_loadtester_done_cb done_cb;
	void *done_data;
	int closing;
	co_loadtester_close_cb close_cb;
	void *close_data;
};

int co_loadtester_new(struct co_loadtester **ret_lt, uv_loop_t *loop,
		      const struct co_loadtester_opts *opts, struct co_error *err)
{
	struct co_loadtester *lt = co_calloc(1, sizeof(*lt));

	lt->loop = loop;
	lt->max_running = opts && opts->max_running ? opts->max_running : 16;
	lt->max_gates = opts && opts->max_gates ? opts->max_gates : 10000;
	*ret_lt = lt;
	return 0;
}

static void free_all(struct co_loadtester *lt)
{
	struct gate *g, *gn;

	for (g = lt->gates; g; g = gn) {
		gn = g->next;
		free(g);
	}
	free(lt);
}

static void maybe_closed(struct co_loadtester *lt)
{
	co_loadtester_close_cb cb = lt->close_cb;
	void *data = lt->close_data;

	if (!lt->closing || lt->tasks)
		return;
	free_all(lt);
	if (cb)
		cb(data);
}

void co_loadtester_close(struct co_loadtester *lt, co_loadtester_close_cb cb,
			 void *data)
{
	lt->closing = 1;
	lt->close_cb = cb;
	lt->close_data = data;
	for (struct task *t = lt->tasks; t; t = t->next)
		co_loadgen_cancel(t->lg);
	maybe_closed(lt);
}

void co_loadtester_on_done(struct co_loadtester *lt, co_loadtester_done_cb cb,
			   void *data)
{
	lt->done_cb = cb;
	lt->done_data = data;
}

void co_loadtester_stats(const struct co_loadtester *lt,
			 struct co_loadtester_stats *ret_stats)
{
	*ret_stats = lt->stats;
}

/* ----------------------------------------------------------------- gates */

static struct gate *gate_find(struct co_loadtester *lt, const char *key)
{
	for (struct gate *g = lt->gates; g; g = g->next)
		if (strcmp(g->key, key) == 0)
			return g;
	return NULL;
}

static int gate_is_open(struct co_loadtester *lt, const char *key)
{
	struct gate *g = gate_find(lt, key);

	return g && g->open;
}

static int gate_set(struct co_loadtester *lt, const char *key, int open)
{
	struct gate *g = gate_find(lt, key);
	size_t n;

	if (g) {
		g->open = open;
		return 0;
	}
	if (!open)
		return 0;   /* absent already means closed */
	if (lt->n_gates >= lt->max_gates)
		return -ENOSPC;
	n = strlen(key);
	g = co_malloc(sizeof(*g) + n + 1);
	memcpy(g->key, key, n + 1);
	g->open = 1;
	g->next = lt->gates;
	lt->gates = g;
	lt->n_gates++;
	return 0;
}

/* --------------------------------------------------------------- payload */

struct payload {
	json_t *root;
	const char *name;
	const char *namespace;
	json_t *metadata;   /* borrowed from root, may be NULL */
};

static int payload_parse(struct payload *p, const char *body, size_t len,
			 struct co_buf *out)
{
	json_error_t jerr;
	json_t *v;

	memset(p, 0, sizeof(*p));
	p->root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!p->root || !json_is_object(p->root)) {
		co_buf_printf(out, "decoding the request body failed: %s\n",
			      p->root ? "not an object" : jerr.text);
		return -EINVAL;
	}
	v = json_object_get(p->root, "name");
	p->name = json_is_string(v) ? json_string_value(v) : NULL;
	v = json_object_get(p->root, "namespace");
	p->namespace = json_is_string(v) ? json_string_value(v) : NULL;
	if (!p->name || !p->namespace || !*p->name || !*p->namespace ||
	    strlen(p->name) > MAX_NAME || strlen(p->namespace) > MAX_NAME) {
		co_buf_puts(out, "decoding the request body failed: name and namespace "
			    "are required strings\n");
		return -EINVAL;
	}
	v = json_object_get(p->root, "metadata");
	if (v && !json_is_null(v) && !json_is_object(v)) {
		co_buf_puts(out, "decoding the request body failed: metadata must be an "
			    "object of strings\n");
		return -EINVAL;
	}
	p->metadata = json_is_object(v) ? v : NULL;
	return 0;
}

static void payload_release(struct payload *p)
{
	json_decref(p->root);
}

static const char *meta_string(const struct payload *p, const char *key)
{
	json_t *v = p->metadata ? json_object_get(p->metadata, key) : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ----------------------------------------------------------------- tasks */

static void task_free(struct task *t)
{
	co_loadgen_free(t->lg);
	co_heycmd_free(t->hey);
	free(t->canary);
	free(t->cmd);
	free(t);
}

static void on_task_done(struct co_loadgen *lg, int status, const struct co_error *err,
			 void *data)
{
	struct task *t = data, **pp;
	struct co_loadtester *lt = t->lt;

	for (pp = &lt->tasks; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	lt->stats.running--;
	lt->stats.finished++;
	if (lt->done_cb)
		lt->done_cb(t->canary, t->cmd, status, co_loadgen_result(lg), lt->done_data);
	task_free(t);
	maybe_closed(lt);
}

static int run_cmd(struct co_loadtester *lt, const struct payload *p, struct co_buf *out)
{
	const char *cmd = meta_string(p, "cmd");
	struct co_error err = CO_ERROR_INIT;
	struct task *t;
	char *canary;

	if (!cmd || !*cmd) {
		co_buf_puts(out, "metadata.cmd is missing\n");
		return 400;
	}
	canary = co_asprintf("%s.%s", p->name, p->namespace);
	for (t = lt->tasks; t; t = t->next)
		if (strcmp(t->canary, canary) == 0 && strcmp(t->cmd, cmd) == 0) {
			lt->stats.deduplicated++;
			co_buf_printf(out, "command already running for %s\n", canary);
			free(canary);
			return 202;
		}
	if (lt->stats.running >= lt->max_running) {
		co_buf_printf(out, "too many commands running (%u)\n", lt->max_running);
		free(canary);
		return 429;
	}
	t = co_calloc(1, sizeof(*t));
	t->lt = lt;
	t->canary = canary;
	t->cmd = co_strdup(cmd);
	if (co_heycmd_parse(&t->hey, cmd, &err) < 0 ||
	    co_loadgen_new(&t->lg, &t->hey->opts, &err) < 0) {
		co_buf_printf(out, "command '%s': %s\n", cmd, err.msg);
		task_free(t);
		return 400;
	}
	if (co_loadgen_start(t->lg, lt->loop, on_task_done, t, &err) < 0) {
		co_buf_printf(out, "command '%s': %s\n", cmd, err.msg);
		task_free(t);
		return 500;
	}
	t->next = lt->tasks;
	lt->tasks = t;
	lt->stats.started++;
	lt->stats.running++;
	co_log_debug("loadtester", "%s: started '%s'", canary, cmd);
	co_buf_printf(out, "command started for %s\n", canary);
	return 202;
}

static int webhook(struct co_loadtester *lt, const struct payload *p, struct co_buf *out)
{
	const char *type;

	if (!p->metadata || json_object_size(p->metadata) == 0) {
		co_buf_puts(out, "metadata not found in payload\n");
		return 400;
	}
	type = meta_string(p, "type");
	if (!type || !*type || strcmp(type, "cmd") == 0)
		return run_cmd(lt, p, out);
	co_buf_printf(out, "task type '%s' is not supported: only native hey commands "
		      "(type cmd) run here, no shell, helm or other tools\n", type);
	return 400;
}

int co_loadtester_handle(struct co_loadtester *lt, const char *path, const char *body,
			 size_t len, struct co_buf *out)
{
	static const char *const known[] = {
		"/", "/gate/check", "/gate/open", "/gate/close",
		"/rollback/check", "/rollback/open", "/rollback/close",
	};
	struct payload p;
	char key[2 * MAX_NAME + 16];
	int status = 404, rollback, i, n = (int)(sizeof(known) / sizeof(known[0]));

	if (strcmp(path, "/gate/approve") == 0) {
		co_buf_puts(out, "Approved\n");
		return 200;
	}
	if (strcmp(path, "/gate/halt") == 0) {
		co_buf_puts(out, "Forbidden\n");
		return 403;
	}
	for (i = 0; i < n && strcmp(path, known[i]) != 0; i++)
		;
	if (i == n) {
		co_buf_printf(out, "not found\n");
		return 404;
	}
	if (lt->closing) {
		co_buf_puts(out, "shutting down\n");
		return 503;
	}
	if (payload_parse(&p, body, len, out) < 0) {
		payload_release(&p);
		return 400;
	}
	if (strcmp(path, "/") == 0) {
		status = webhook(lt, &p, out);
		payload_release(&p);
		return status;
	}
	rollback = strncmp(path, "/rollback/", 10) == 0;
	snprintf(key, sizeof(key), "%s%s.%s", rollback ? "rollback." : "", p.name,
		 p.namespace);
	if (strcmp(path + (rollback ? 10 : 6), "check") == 0) {
		if (gate_is_open(lt, key)) {
			co_buf_puts(out, "Approved\n");
			status = 200;
		} else {
			co_buf_puts(out, "Forbidden\n");
			status = 403;
		}
	} else {
		int open = strcmp(path + (rollback ? 10 : 6), "open") == 0;

		if (gate_set(lt, key, open) < 0) {
			co_buf_printf(out, "too many gates (%u)\n", lt->max_gates);
			status = 503;
		} else {
			co_buf_printf(out, "%s %s\n", key, open ? "opened" : "closed");
			status = 202;
		}
	}
	payload_release(&p);
	return status;
}
