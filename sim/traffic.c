/*
 * App traffic and /metrics on the cluster's ingress port (the listener itself is
 * ingress.c; this is what answers behind it).
 *
 * Everything arrives through the server's fallback handler (so stop can swap it for
 * one that no longer points at the controllers). GET /metrics addressed to the port
 * (not to an app's Host) is the cluster's exposition; every other request, which
 * routes the way an ingress controller would: Ingress objects first (rules by host,
 * exact or "*." wildcard, then the longest matching path, Exact before Prefix), else a
 * Host of "<service>.<namespace>" (optionally ".svc" / ".svc.cluster.local", and a
 * port), then the Service's selector (or Flagger's split) picks a ready pod. Unknown
 * hosts get 404 like an ingress default backend; a service without ready endpoints,
 * or the ingress-down fault, 503.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/time.h"
#include "net/http-server.h"
#include "sim/ctl.h"
#include "sim/metrics.h"

struct ks_traffic {
	int unused;
};

/* the handler installed at stop: the controllers are gone, the server may not be */
static void gone_handler(struct co_http_req *req, void *data)
{
	co_http_respond_text(req, 503, "cluster stopped\n");
}

static bool host_match(const char *rule, const char *host)
{
	if (!rule || !*rule)
		return true;
	if (rule[0] == '*' && rule[1] == '.') {
		const char *dot = strchr(host, '.');

		return dot && !strcmp(dot, rule + 1);
	}
	return !strcmp(rule, host);
}

static bool prefix_match(const char *prefix, const char *path)
{
	size_t n = strlen(prefix);

	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (n == 1 && prefix[0] == '/')
		return true;
	return !strncmp(prefix, path, n) && (path[n] == '\0' || path[n] == '/');
}

/* Find the backend service for host/path among the Ingress objects: *ret_ns and
 * *ret_svc new strings. Returns whether any Ingress rule matched. */
static bool route_ingress(struct ks_controllers *c, const char *host, const char *path,
			  char **ret_ns, char **ret_svc)
{
	struct ks_key key = {"networking.k8s.io", "ingresses", NULL, NULL};
	json_t *items = NULL, *ing, *rule, *hp;
	size_t i, j, k, best_len = 0;
	bool best_exact = false, found = false;

	if (ks_store_list(c->store, &key, NULL, &items, NULL, NULL) < 0)
		return false;
	json_array_foreach(items, i, ing)
	{
		json_array_foreach(ks_jget(ing, "spec.rules"), j, rule)
		{
			if (!host_match(json_string_value(json_object_get(rule, "host")),
					host))
				continue;
			json_array_foreach(ks_jget(rule, "http.paths"), k, hp)
			{
				const char *p = ks_or(
					json_string_value(json_object_get(hp, "path")),
					"/");
				const char *type = json_string_value(
					json_object_get(hp, "pathType"));
				bool exact = type && !strcmp(type, "Exact");
				const char *svc = ks_jstr(hp, "backend.service.name");
				size_t len = strlen(p);

				if (!svc || (exact ? strcmp(p, path) != 0
						   : !prefix_match(p, path)))
					continue;
				if (found &&
				    (len < best_len || (len == best_len && best_exact)))
					continue;
				free(*ret_ns);
				free(*ret_svc);
				*ret_ns = co_strdup(ks_or(
					ks_jstr(ing, "metadata.namespace"), "default"));
				*ret_svc = co_strdup(svc);
				best_len = len;
				best_exact = exact;
				found = true;
			}
		}
	}
	if (!found)
		json_array_foreach(items, i, ing)
		{
			const char *svc =
				ks_jstr(ing, "spec.defaultBackend.service.name");

			if (svc) {
				*ret_ns = co_strdup(ks_or(
					ks_jstr(ing, "metadata.namespace"), "default"));
				*ret_svc = co_strdup(svc);
				found = true;
				break;
			}
		}
	json_decref(items);
	return found;
}

/* "web.core:8080" / "web.core.svc.cluster.local" -> ns "core", svc "web". */
static bool route_host(const char *host, char **ret_ns, char **ret_svc)
{
	const char *dot = strchr(host, '.');
	const char *rest, *end;

	if (!dot || dot == host)
		return false;
	rest = dot + 1;
	end = strchr(rest, '.');
	if (end && strcmp(end, ".svc") && strcmp(end, ".svc.cluster.local"))
		return false;
	if (!end)
		end = rest + strlen(rest);
	if (end == rest)
		return false;
	*ret_svc = co_strndup(host, (size_t)(dot - host));
	*ret_ns = co_strndup(rest, (size_t)(end - rest));
	return true;
}

static void metrics_handler(struct co_http_req *req, void *data);

/* /metrics belongs to the cluster unless the Host names an app ("svc.ns"); scrapers
 * use the address ("127.0.0.1:port") or "localhost". */
static bool route_host_is_app(const char *h)
{
	char *ns = NULL, *svc = NULL;
	char host[256], *colon;
	bool app;

	snprintf(host, sizeof(host), "%s", h ? h : "");
	if ((colon = strrchr(host, ':')))
		*colon = '\0';
	if (!strcmp(host, "localhost") || strspn(host, "0123456789.") == strlen(host))
		return false;
	app = route_host(host, &ns, &svc);
	free(ns);
	free(svc);
	return app;
}

static void app_handler(struct co_http_req *req, void *data)
{
	struct ks_controllers *c = data;
	const char *h = co_http_req_header(req, "Host");
	const char *path = co_http_req_path(req);
	char host[256], *colon, *ns = NULL, *svc = NULL;
	struct ks_pod *pod;
	bool svc_found = false;

	if (!strcmp(path, "/metrics") && !strcmp(co_http_req_method(req), "GET") &&
	    !route_host_is_app(h)) {
		metrics_handler(req, c);
		return;
	}
	if (c->ingress_down) {
		co_http_respond_text(req, 503, "ingress unavailable\n");
		return;
	}
	snprintf(host, sizeof(host), "%s", h ? h : "");
	if ((colon = strrchr(host, ':')) && !strchr(colon, ']'))
		*colon = '\0';
	for (char *p = host; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!route_ingress(c, host, path, &ns, &svc) && !route_host(host, &ns, &svc)) {
		co_http_respond_text(req, 404, "default backend - 404\n");
		return;
	}
	pod = ks_apps_pick(c, ns, svc, &svc_found);
	if (!pod)
		co_http_respond_text(
			req, svc_found ? 503 : 404,
			svc_found ? "no endpoints available for service '%s/%s'\n"
				  : "service '%s/%s' not found\n",
			ns, svc);
	else
		ks_pod_serve(c, pod, req, path);
	free(ns);
	free(svc);
}

static void process_stats(double *rss, double *cpu)
{
	FILE *f = fopen("/proc/self/stat", "r");
	unsigned long utime = 0, stime = 0;
	long pages = 0;
	long tck = sysconf(_SC_CLK_TCK);

	*rss = *cpu = 0;
	if (!f)
		return;
	if (fscanf(f,
		   "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
		   "%*d %*d %*d %*d %*d %*d %*u %*u %ld",
		   &utime, &stime, &pages) == 3) {
		*rss = (double)pages * (double)sysconf(_SC_PAGESIZE);
		*cpu = (double)(utime + stime) / (double)(tck > 0 ? tck : 100);
	}
	fclose(f);
}

static void metrics_handler(struct co_http_req *req, void *data)
{
	struct ks_controllers *c = data;
	struct co_buf out = CO_BUF_INIT;
	struct ks_metrics_pod *pods = NULL;
	struct ks_metrics_canary *can = NULL;
	size_t n_pods = ks_apps_pods(c, &pods);
	size_t n_can = ks_flagger_series(c, &can);
	struct ks_metrics_extra x = {
		.cluster = c->name,
		.version = c->version,
		.overhead = c->overhead,
		.pods = pods,
		.n_pods = n_pods,
		.canaries = can,
		.n_canaries = n_can,
		.objects = ks_store_count(c->store),
		.uptime_seconds =
			(double)(co_time_wall_ms() - c->started_wall_ms) / 1000.0,
	};

	process_stats(&x.process_rss_bytes, &x.process_cpu_seconds);
	ks_metrics_render(&out, c->metrics, &x);
	co_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
			out.data ? out.data : "", out.len);
	co_buf_release(&out);
	ks_apps_pods_free(pods, n_pods);
	ks_flagger_series_free(can, n_can);
}

int ks_traffic_start(struct ks_controllers *c, struct co_error *err)
{
	c->traffic = co_calloc(1, sizeof(*c->traffic));
	if (!c->ingress_srv)
		return 0;
	co_http_server_fallback(c->ingress_srv, app_handler, c);
	return 0;
}

void ks_traffic_stop(struct ks_controllers *c)
{
	if (!c->traffic)
		return;
	if (c->ingress_srv)
		co_http_server_fallback(c->ingress_srv, gone_handler, NULL);
	free(c->traffic);
	c->traffic = NULL;
}
