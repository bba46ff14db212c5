/*
 * kubesim's entry point: "serve" runs the fleet, "create", "delete" and "list" talk to
 * a running one through its control API.
 *
 * The client subcommands find the control API from --control URL, else $KUBESIM_URL,
 * else the kubesim.url file of --state-dir (default ./kubesim-state), and print the
 * server's JSON answer; the exit status is 0 for a 2xx answer, 1 otherwise.
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/time.h"
#include "net/http-client.h"
#include "sim/control.h"

#define DEFAULT_STATE_DIR "kubesim-state"

static void usage(FILE *out)
{
	fputs("usage: kubesim serve --state-dir DIR [--control 127.0.0.1:PORT]\n"
	      "                     [--time-scale F] [--log-level L]\n"
	      "       kubesim create NAME --image IMAGE [--api-port N] [--ingress-port N]\n"
	      "       kubesim delete NAME\n"
	      "       kubesim list\n"
	      "client options: --control URL | --state-dir DIR (reads DIR/kubesim.url)\n",
	      out);
}

/* ---- serve ---- */

struct serve {
	uv_loop_t *loop;
	struct ks_control *ctl;
	uv_signal_t sigint, sigterm;
	bool stopping;
};

static void serve_closed(void *data)
{
	struct serve *s = data;
	uv_close((uv_handle_t *)&s->sigint, NULL);
	uv_close((uv_handle_t *)&s->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct serve *s = h->data;
	if (s->stopping)
		return;
	s->stopping = true;
	co_log_msg(CO_LOG_INFO, "kubesim", "signal %d: stopping", signum);
	ks_control_close(s->ctl, serve_closed, s);
}

static int cmd_serve(int argc, char **argv)
{
	const char *dir = NULL, *listen = "127.0.0.1:0";
	struct co_error err = CO_ERROR_INIT;
	struct serve s = { 0 };
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--state-dir") && i + 1 < argc) {
			dir = argv[++i];
		} else if (!strcmp(argv[i], "--control") && i + 1 < argc) {
			listen = argv[++i];
		} else if (!strcmp(argv[i], "--time-scale") && i + 1 < argc) {
			char *end;
			double f = strtod(argv[++i], &end);
			if (*end || !(f > 0) || f > 1000) {
				fprintf(stderr, "kubesim: bad --time-scale '%s'\n", argv[i]);
				return 2;
			}
			co_time_set_scale(f);
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!dir) {
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	s.loop = uv_default_loop();
	int rc = ks_control_new(&s.ctl, s.loop,
				&(struct ks_control_opts){ .state_dir = dir, .listen = listen },
				&err);
	if (rc < 0) {
		fprintf(stderr, "kubesim: %s\n", err.msg);
		return 1;
	}
	if (err.code)
		co_log_msg(CO_LOG_WARN, "kubesim", "%s", err.msg);
	printf("kubesim control API at %s\n", ks_control_url(s.ctl));
	fflush(stdout);
	uv_signal_init(s.loop, &s.sigint);
	uv_signal_init(s.loop, &s.sigterm);
	s.sigint.data = s.sigterm.data = &s;
	uv_signal_start(&s.sigint, on_signal, SIGINT);
	uv_signal_start(&s.sigterm, on_signal, SIGTERM);
	uv_run(s.loop, UV_RUN_DEFAULT);
	return uv_loop_close(s.loop) == 0 ? 0 : 1;
}

/* ---- client ---- */

struct client {
	struct co_http_client *http;
	int exit_code;
};

static void client_closed(void *data)
{
}

static void on_response(struct co_http_response *res, void *data)
{
	struct client *c = data;
	if (res->status < 0) {
		fprintf(stderr, "kubesim: %s\n", res->err.msg);
		c->exit_code = 1;
	} else {
		const char *body = co_buf_cstr(&res->body);
		FILE *out = res->code >= 200 && res->code < 300 ? stdout : stderr;
		json_t *j = json_loads(body, 0, NULL);
		if (j) {
			char *pretty = json_dumps(j, JSON_INDENT(2));
			fprintf(out, "%s\n", pretty);
			free(pretty);
			json_decref(j);
		} else {
			fprintf(out, "%s\n", body);
		}
		c->exit_code = res->code >= 200 && res->code < 300 ? 0 : 1;
	}
	co_http_client_close(c->http, client_closed, c);
}

static char *control_url(const char *flag_url, const char *dir)
{
	if (flag_url)
		return co_strdup(flag_url);
	const char *env = getenv("KUBESIM_URL");
	if (env && *env)
		return co_strdup(env);
	char *path = co_asprintf("%s/kubesim.url", dir ? dir : DEFAULT_STATE_DIR);
	FILE *f = fopen(path, "r");
	free(path);
	if (!f)
		return NULL;
	char line[256];
	char *url = NULL;
	if (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		url = co_strdup(line);
	}
	fclose(f);
	return url;
}

static int cmd_client(int argc, char **argv)
{
	const char *cmd = argv[0], *name = NULL, *image = NULL, *flag_url = NULL, *dir = NULL;
	int api_port = 0, ingress_port = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--control") && i + 1 < argc)
			flag_url = argv[++i];
		else if (!strcmp(argv[i], "--state-dir") && i + 1 < argc)
			dir = argv[++i];
		else if (!strcmp(argv[i], "--image") && i + 1 < argc)
			image = argv[++i];
		else if (!strcmp(argv[i], "--api-port") && i + 1 < argc)
			api_port = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ingress-port") && i + 1 < argc)
			ingress_port = atoi(argv[++i]);
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else {
			usage(stderr);
			return 2;
		}
	}
	bool needs_name = strcmp(cmd, "list") != 0;
	if ((needs_name && !name) || (!strcmp(cmd, "create") && !image) ||
	    (!needs_name && name)) {
		usage(stderr);
		return 2;
	}
	char *base = control_url(flag_url, dir);
	if (!base) {
		fprintf(stderr, "kubesim: no control URL: use --control, KUBESIM_URL or "
				"--state-dir of a running kubesim\n");
		return 1;
	}
	struct co_error err = CO_ERROR_INIT;
	struct client c = { .exit_code = 1 };
	uv_loop_t *loop = uv_default_loop();
	char *url = NULL;
	json_t *body = NULL;
	const char *method = "GET";
	if (!strcmp(cmd, "create")) {
		method = "POST";
		url = co_asprintf("%s/clusters", base);
		body = json_pack("{s:s, s:s}", "name", name, "image", image);
		if (api_port)
			json_object_set_new(body, "apiPort", json_integer(api_port));
		if (ingress_port)
			json_object_set_new(body, "ingressPort", json_integer(ingress_port));
	} else if (!strcmp(cmd, "delete")) {
		method = "DELETE";
		url = co_asprintf("%s/clusters/%s", base, name);
	} else {
		url = co_asprintf("%s/clusters", base);
	}
	int rc = co_http_client_new(&c.http, loop, &err);
	struct co_http_req_opts base_opts = { .timeout_ms = 30000 };
	if (rc == 0) {
		rc = co_http_request_json(c.http, NULL, method, url, body, &base_opts,
					  on_response, &c, &err);
		if (rc < 0)
			co_http_client_close(c.http, client_closed, &c);
	}
	if (rc < 0)
		fprintf(stderr, "kubesim: %s\n", err.msg);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	json_decref(body);
	free(url);
	free(base);
	return rc < 0 ? 1 : c.exit_code;
}

int main(int argc, char **argv)
{
	int rc;
	enum co_log_level level = CO_LOG_INFO;
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "--log-level")) {
			if (co_log_parse_level(argv[i + 1], &level) < 0) {
				fprintf(stderr, "kubesim: unknown log level '%s'\n", argv[i + 1]);
				return 2;
			}
			/* drop the option so subcommands do not see it */
			memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 1) * sizeof(char *));
			argc -= 2;
			break;
		}
	}
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	co_log_setup(level, CO_LOG_AUTO, stderr);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (!strcmp(argv[1], "serve"))
		rc = cmd_serve(argc - 1, argv + 1);
	else if (!strcmp(argv[1], "create") || !strcmp(argv[1], "delete") ||
		 !strcmp(argv[1], "list"))
		rc = cmd_client(argc - 1, argv + 1);
	else {
		fprintf(stderr, "kubesim: unknown command '%s'\n", argv[1]);
		usage(stderr);
		rc = 2;
	}
	curl_global_cleanup();
	return rc;
}
