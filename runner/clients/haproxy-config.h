/*
 * HAProxy configuration for cutover's embedded default load balancer.
 *
 * Layout of the generated file:
 *   global    stats socket (admin level, expose-fd listeners for seamless reloads),
 *             server-state-file, optional logging to stderr
 *   defaults  mode http, load-server-state-from-file global, timeouts
 *   frontend  public: 127.0.0.1:<public_port> -> backend <backend>
 *   backend   <backend>: balance roundrobin, HTTP check on the ingress health path,
 *             one server per cluster ingress with its weight
 *   frontend  preview: 127.0.0.1:<preview_port>, "X-Cutover-Cluster: NAME" selects
 *             backend preview_NAME holding only that cluster, so a cluster that takes
 *             no public traffic yet can be checked through the real LB path; any other
 *             value gets 503 from an empty backend
 *   frontend  prometheus: 127.0.0.1:<prom_port>, /metrics from HAProxy's exporter
 *
 * Clusters added later at run time (co_haproxy_add_server) get a server in <backend>
 * at once; their preview backend appears when the file is regenerated and HAProxy
 * reloaded, and the server-state file carries the weights across that reload.
 */
#ifndef CO_CLIENTS_HAPROXY_CONFIG_H
#define CO_CLIENTS_HAPROXY_CONFIG_H

#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

struct co_haproxy_config_cluster {
	const char *name;        /* HAProxy name: [A-Za-z0-9_.:-], also the server name */
	const char *address;     /* ingress "host:port" */
	int weight;              /* 0-256 */
};

struct co_haproxy_config {
	const char *stats_socket;   /* required: unix socket path */
	const char *state_file;     /* required: server-state file path */
	const char *pid_file;       /* optional "pidfile" in global */
	const char *bind_host;      /* NULL = "127.0.0.1" */
	int public_port;            /* required */
	int preview_port;           /* 0: no preview frontend */
	int prom_port;              /* 0: no Prometheus exporter */
	const char *backend;        /* NULL = "clusters" */
	const char *health_path;    /* NULL = "/healthz" */
	int log_stderr;             /* "log stderr format raw local0" */
	unsigned maxconn;           /* 0 = 4096 */
	unsigned timeout_connect_ms;  /* 0 = 5000 */
	unsigned timeout_client_ms;   /* 0 = 30000 */
	unsigned timeout_server_ms;   /* 0 = 30000 */
	unsigned check_inter_ms;      /* 0 = 2000 */
	const struct co_haproxy_config_cluster *clusters;
	size_t n_clusters;
};

/* Append the configuration to out after validating every input (names, addresses,
 * ports, paths without whitespace or quotes). Returns 0 or -EINVAL with err filled. */
int co_haproxy_config_format(struct co_buf *out, const struct co_haproxy_config *cfg,
			     struct co_error *err);

/* Format and atomically replace path (mode 0644). */
int co_haproxy_config_write(const char *path, const struct co_haproxy_config *cfg,
			    struct co_error *err);

/*
 * Run "haproxy -c -q -f path" (haproxy_bin NULL = "haproxy" from PATH) and wait for it.
 * Returns 0 when valid, -EINVAL with HAProxy's first alert line in err otherwise, or
 * another negative errno when it could not run. Synchronous: for the CLI, scripts and
 * tests, not for the engine's loop.
 */
int co_haproxy_config_check(const char *haproxy_bin, const char *path,
			    struct co_error *err);

#endif
