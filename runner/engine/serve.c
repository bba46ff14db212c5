/*
 * The runner's HTTP surface, see serve.h. Routes are thin: each reads what it needs
 * from the state dir (journals through co_pipeline_summary) or hands the request to
 * the module that owns the behaviour (loadtester, git webhook parsing).
 */
#include "engine/serve.h"
#include "analysis/loadtester.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "base/time.h"
#include "engine/pipeline.h"
#include "net/http-server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct co_serve {
	uv_loop_t *loop;
	struct co_http_server *http;
	struct co_loadtester *lt;
	struct co_metrics *metrics;
	bool own_metrics;
	struct co_metric *m_requests;
	struct co_metric *m_webhooks;
	char *state_dir;
	char *secret;
	char *url;
	const struct co_stage_ops *const *stages;
	co_serve_push_cb on_push;
	void *push_data;
	co_serve_close_cb close_cb;
	void *close_data;
	int closing;
};

static void count(struct co_serve *s, const char *route, int code)
{
	char c[8];
	const char *v[] = { route, c, NULL };

	snprintf(c, sizeof(c), "%d", code);
	co_metric_add(s->m_requests, v, 1);
}

static void on_healthz(struct co_http_req *req, void *data)
{
	count(data, "healthz", 200);
	co_http_respond_text(req, 200, "ok\n");
}

static void on_metrics(struct co_http_req *req, void *data)
{
	struct co_serve *s = data;
	struct co_buf out = CO_BUF_INIT;

	count(s, "metrics", 200);
	co_metrics_render(s->metrics, &out);
	co_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.data,
			out.len);
	co_buf_release(&out);
}

static void on_pipeline(struct co_http_req *req, void *data)
{
	struct co_serve *s = data;
	const char *id = co_http_req_param(req, "id");
	struct co_error err = CO_ERROR_INIT;
	json_t *sum = NULL;
	int rc = co_pipeline_summary(&sum, s->state_dir, id, s->stages, &err);

	if (rc < 0) {
		int code = rc == -ENOENT ? 404 : 500;

		count(s, "pipeline", code);
		co_http_respond_json(req, code, json_pack("{s:s}", "error", err.msg));
		return;
	}
	count(s, "pipeline", 200);
	co_http_respond_json(req, 200, sum);
}

static void on_pipelines(struct co_http_req *req, void *data)
{
	struct co_serve *s = data;
	char *dir = co_asprintf("%s/pipelines", s->state_dir);
	json_t *list = json_array();
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d)) != NULL) {
		struct co_error err = CO_ERROR_INIT;
		json_t *sum = NULL;

		if (de->d_name[0] == '.')
			continue;
		if (co_pipeline_summary(&sum, s->state_dir, de->d_name, s->stages, &err) == 0)
			json_array_append_new(list, sum);
	}
	if (d)
		closedir(d);
	free(dir);
	count(s, "pipelines", 200);
	co_http_respond_json(req, 200, json_pack("{s:o}", "items", list));
}

struct hdr_ctx {
	struct co_http_req *req;
};

static const char *req_header(const char *name, void *data)
{
	return co_http_req_header(((struct hdr_ctx *)data)->req, name);
}

static void record_push(struct co_serve *s, const struct co_git_push *push)
{
	char *path = co_asprintf("%s/events/git-push.jsonl", s->state_dir);
	json_t *urls = json_array(), *ev;
	char ts[32], *line;
	int fd;

	for (size_t i = 0; push->urls[i]; i++)
		json_array_append_new(urls, json_string(push->urls[i]));
	ev = json_pack("{s:s, s:o, s:s?, s:s?}", "ts",
		       co_time_rfc3339(co_time_wall_ms(), ts, sizeof(ts)), "urls", urls, "ref",
		       push->ref, "after", push->after);
	line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(ev);
	co_fs_mkdir_parent(path, 0700);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		/* One write per line keeps lines whole for readers tailing the file. */
		char *nl = co_asprintf("%s\n", line);

		if (write(fd, nl, strlen(nl)) < 0)
			co_log_debug("serve", "append '%s': %s", path, strerror(errno));
		free(nl);
		close(fd);
	}
	free(line);
	free(path);
}

static void on_git_hook(struct co_http_req *req, void *data)
{
	struct co_serve *s = data;
	struct co_error err = CO_ERROR_INIT;
	struct hdr_ctx hc = { req };
	struct co_git_push push;
	const char *event = co_http_req_header(req, "X-GitHub-Event");
	const char *v[2] = { NULL, NULL };
	size_t len;
	const char *body = co_http_req_body(req, &len);
	int rc;

	if (!event)
		event = co_http_req_header(req, "X-Gitea-Event");
	rc = co_git_webhook_verify(s->secret, body, len, req_header, &hc, &err);
	if (rc < 0) {
		int code = rc == -EINVAL ? 400 : 401;

		v[0] = "rejected";
		co_metric_add(s->m_webhooks, v, 1);
		count(s, "hooks-git", code);
		co_log_warn("serve", "git webhook from %s rejected: %s", co_http_req_peer(req),
			    err.msg);
		co_http_respond_json(req, code, json_pack("{s:s}", "error", err.msg));
		return;
	}
	if (event && strcmp(event, "ping") == 0) {
		v[0] = "ping";
		co_metric_add(s->m_webhooks, v, 1);
		count(s, "hooks-git", 200);
		co_http_respond_json(req, 200, json_pack("{s:s}", "status", "pong"));
		return;
	}
	if (co_git_webhook_parse(&push, body, len, &err) < 0) {
		v[0] = "invalid";
		co_metric_add(s->m_webhooks, v, 1);
		count(s, "hooks-git", 400);
		co_http_respond_json(req, 400, json_pack("{s:s}", "error", err.msg));
		return;
	}
	v[0] = "accepted";
	co_metric_add(s->m_webhooks, v, 1);
	count(s, "hooks-git", 202);
	co_log_info("serve", "git push to '%s'%s%s", push.urls[0] ? push.urls[0] : "?",
		    push.ref ? " ref " : "", push.ref ? push.ref : "");
	if (push.urls[0]) {
		record_push(s, &push);
		if (s->on_push)
			s->on_push(&push, s->push_data);
	}
	co_http_respond_json(req, 202, json_pack("{s:s}", "status", "accepted"));
	co_git_push_release(&push);
}

int co_serve_new(struct co_serve **ret, uv_loop_t *loop, const struct co_serve_opts *opts,
		 struct co_error *err)
{
	static const char *const req_labels[] = { "route", "code", NULL };
	static const char *const hook_labels[] = { "result", NULL };
	struct co_http_server_opts ho = { .host = opts->host, .port = opts->port,
					  .max_body_bytes = CO_GIT_WEBHOOK_MAX_BODY };
	struct co_serve *s = co_calloc(1, sizeof(*s));
	int rc;

	s->loop = loop;
	s->state_dir = co_strdup(opts->state_dir ? opts->state_dir : ".cutover");
	s->secret = opts->webhook_secret && *opts->webhook_secret
			    ? co_strdup(opts->webhook_secret)
			    : NULL;
	s->stages = opts->stages;
	s->on_push = opts->on_push;
	s->push_data = opts->push_data;
	s->metrics = opts->metrics;
	if (!s->metrics) {
		s->metrics = co_metrics_new();
		s->own_metrics = true;
	}
	s->m_requests = co_metrics_family(s->metrics, "cutover_http_requests_total",
					  "Requests to the runner's HTTP endpoints.",
					  CO_METRIC_COUNTER, req_labels, NULL, 0);
	s->m_webhooks = co_metrics_family(s->metrics, "cutover_webhooks_total",
					  "Git webhooks received, by result.", CO_METRIC_COUNTER,
					  hook_labels, NULL, 0);
	rc = co_http_server_new(&s->http, loop, &ho, err);
	if (rc < 0)
		goto fail;
	rc = co_loadtester_new(&s->lt, loop, NULL, err);
	if (rc < 0) {
		co_http_server_close(s->http, NULL, NULL);
		s->http = NULL;
		goto fail;
	}
	co_http_server_route(s->http, "GET", "/healthz", on_healthz, s);
	co_http_server_route(s->http, "GET", "/metrics", on_metrics, s);
	co_http_server_route(s->http, "GET", "/api/v1/pipelines", on_pipelines, s);
	co_http_server_route(s->http, "GET", "/api/v1/pipelines/{id}", on_pipeline, s);
	co_http_server_route(s->http, "POST", "/hooks/git", on_git_hook, s);
	co_loadtester_mount(s->lt, s->http, "");
	s->url = co_asprintf("http://%s:%d", opts->host ? opts->host : "127.0.0.1",
			     co_http_server_port(s->http));
	if (!s->secret)
		co_log_warn("serve", "no webhook secret configured: /hooks/git accepts "
			    "unsigned pushes");
	*ret = s;
	return 0;
fail:
	if (s->own_metrics)
		co_metrics_free(s->metrics);
	free(s->state_dir);
	free(s->secret);
	free(s);
	return rc;
}

int co_serve_port(const struct co_serve *s)
{
	return co_http_server_port(s->http);
}

const char *co_serve_url(const struct co_serve *s)
{
	return s->url;
}

struct co_metrics *co_serve_metrics(struct co_serve *s)
{
	return s->metrics;
}

int co_serve_gate_open(struct co_serve *s, const char *ns, const char *name)
{
	json_t *body = json_pack("{s:s, s:s}", "name", name, "namespace", ns);
	char *text = json_dumps(body, JSON_COMPACT);
	struct co_buf out = CO_BUF_INIT;
	int code;

	json_decref(body);
	code = co_loadtester_handle(s->lt, "/gate/open", text, strlen(text), &out);
	free(text);
	co_buf_release(&out);
	return code >= 200 && code < 300 ? 0 : -EINVAL;
}

static void lt_closed(void *data)
{
	struct co_serve *s = data;
	co_serve_close_cb cb = s->close_cb;
	void *cb_data = s->close_data;

	if (s->own_metrics)
		co_metrics_free(s->metrics);
	free(s->state_dir);
	free(s->secret);
	free(s->url);
	free(s);
	if (cb)
		cb(cb_data);
}

static void http_closed(void *data)
{
	struct co_serve *s = data;

	co_loadtester_close(s->lt, lt_closed, s);
}

void co_serve_close(struct co_serve *s, co_serve_close_cb cb, void *data)
{
	if (!s || s->closing)
		return;
	s->closing = 1;
	s->close_cb = cb;
	s->close_data = data;
	co_http_server_close(s->http, http_closed, s);
}
