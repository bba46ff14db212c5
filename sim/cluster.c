/*
 * One simulated cluster (contract in cluster.h).
 *
 * The cluster wires its parts together: the store is opened first (restoring the
 * objects of a previous run), the registry is filled from the CRDs in it through a
 * store watch that also keeps it current and marks each CRD Established, then the two
 * listeners start. Readiness is a state flag the API server reads on each request;
 * the boot timer flips it. Closing waits for both listeners before freeing the store,
 * so no request can reach a freed store.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"
#include "sim/cluster.h"
#include "sim/controllers.h"
#include "sim/ingress.h"
#include "base/base64.h"
#include "sim/resources.h"
#include "sim/tls.h"

struct ks_cluster {
	uv_loop_t *loop;
	char *name;
	char *image;
	char git_version[64];
	int major, minor;
	char *dir;
	char *token;
	int64_t created_ms;
	struct ks_cluster_state state;
	struct ks_store *store;
	struct ks_registry *reg;
	struct ks_watch *crd_watch;
	struct ks_apiserver *api;   /* plain HTTP on an internal loopback port */
	struct ks_tls_proxy *tls;   /* the cluster's public API port */
	char *cert_pem;
	struct ks_ingress *ingress;
	struct ks_controllers *ctl; /* Flux, Deployments, apps, Flagger, /metrics */
	uv_timer_t *boot; /* heap, freed in its close callback */
	void (*on_change)(struct ks_cluster *c, void *data);
	void *data;

	int closing;      /* listeners still closing */
	bool remove_files;
	void (*close_cb)(void *data);
	void *close_data;
};

static int write_file_atomic(const char *path, const char *text, struct co_error *err)
{
	return co_fs_write_atomic(path, text, strlen(text), 0600, err);
}

static int write_kubeconfig(struct ks_cluster *c, struct co_error *err)
{
	char *path = co_asprintf("%s/kubeconfig", c->dir);
	char *ca = co_base64_encode(c->cert_pem, strlen(c->cert_pem));
	char *text = co_asprintf(
		"apiVersion: v1\n"
		"kind: Config\n"
		"clusters:\n"
		"- name: kubesim-%s\n"
		"  cluster:\n"
		"    server: https://127.0.0.1:%d\n"
		"    certificate-authority-data: %s\n"
		"contexts:\n"
		"- name: kubesim-%s\n"
		"  context:\n"
		"    cluster: kubesim-%s\n"
		"    user: kubesim-%s\n"
		"current-context: kubesim-%s\n"
		"users:\n"
		"- name: kubesim-%s\n"
		"  user:\n"
		"    token: %s\n"
		"preferences: {}\n",
		c->name, ks_tls_proxy_port(c->tls), ca, c->name, c->name, c->name, c->name,
		c->name, c->token);
	int rc = write_file_atomic(path, text, err);
	free(ca);
	free(text);
	free(path);
	return rc;
}

/* Keep the registry in step with the CRDs and mark new ones Established. */
static void crd_event(const struct ks_event *ev, void *data)
{
	struct ks_cluster *c = data;
	const char *name = json_string_value(
		json_object_get(json_object_get(ev->obj, "metadata"), "name"));
	if (!name)
		return;
	if (ev->type == KS_EVENT_DELETED) {
		ks_registry_remove_crd(c->reg, name);
		return;
	}
	if (ks_registry_add_crd(c->reg, ev->obj, NULL) < 0)
		return;
	json_t *conds = json_object_get(json_object_get(ev->obj, "status"), "conditions");
	if (json_array_size(conds) > 0)
		return;
	char ts[32];
	co_time_rfc3339(co_time_wall_ms(), ts, sizeof(ts));
	json_t *spec_names = json_object_get(json_object_get(ev->obj, "spec"), "names");
	json_t *st = json_pack(
		"{s:{s:[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s, s:s, s:s}], s:O}}", "status",
		"conditions", "type", "NamesAccepted", "status", "True", "reason", "NoConflicts",
		"message", "no conflicts found", "lastTransitionTime", ts, "type",
		"Established", "status", "True", "reason", "InitialNamesAccepted", "message",
		"the initial names have been accepted", "lastTransitionTime", ts,
		"acceptedNames", spec_names ? spec_names : json_null());
	struct ks_key key = { "apiextensions.k8s.io", "customresourcedefinitions", NULL, name };
	ks_store_update_status(c->store, &key, st, "kube-apiserver", 0, NULL, NULL);
	json_decref(st);
}

static void boot_close_cb(uv_handle_t *h)
{
	free(h);
}

static void stop_boot_timer(struct ks_cluster *c)
{
	if (!c->boot)
		return;
	uv_timer_stop(c->boot);
	uv_close((uv_handle_t *)c->boot, boot_close_cb);
	c->boot = NULL;
}

static void boot_done(uv_timer_t *t)
{
	struct ks_cluster *c = t->data;
	stop_boot_timer(c);
	c->state.ready = true;
	if (c->on_change)
		c->on_change(c, c->data);
}

static void new_token(char *buf, size_t n)
{
	unsigned char r[24];
	if (RAND_bytes(r, sizeof(r)) != 1)
		abort(); /* no entropy: refusing beats issuing a guessable credential */
	for (size_t i = 0; i < sizeof(r) && 2 * i + 2 < n; i++)
		snprintf(buf + 2 * i, 3, "%02x", r[i]);
}

static void cluster_free(struct ks_cluster *c)
{
	ks_watch_cancel(c->crd_watch);
	if (c->remove_files && c->store)
		ks_store_forget(c->store);
	ks_store_free(c->store);
	ks_registry_free(c->reg);
	if (c->remove_files) {
		char *kc = co_asprintf("%s/kubeconfig", c->dir);
		unlink(kc);
		free(kc);
		rmdir(c->dir);
	}
	free(c->name);
	free(c->image);
	free(c->dir);
	free(c->token);
	free(c->cert_pem);
	free(c);
}

/* ---- controllers: resolver over the cluster's registry, start ---- */

static int resolve_kind(void *data, const char *api_version, const char *kind,
			struct ks_gvr *ret, struct co_error *err)
{
	struct ks_cluster *c = data;
	const struct ks_resource *r = ks_registry_find_kind(c->reg, api_version, kind);
	if (!r)
		return co_error_set(err, -ENOENT, "no matches for kind \"%s\" in version \"%s\"",
				    kind, api_version);
	memset(ret, 0, sizeof(*ret));
	snprintf(ret->group, sizeof(ret->group), "%s", r->group);
	snprintf(ret->version, sizeof(ret->version), "%s", r->version);
	snprintf(ret->resource, sizeof(ret->resource), "%s", r->plural);
	ret->namespaced = r->namespaced;
	return 0;
}

static int start_controllers(struct ks_cluster *c, struct co_error *err)
{
	struct ks_cluster_ctx ctx = {
		.loop = c->loop,
		.store = c->store,
		.name = c->name,
		.state_dir = c->dir,
		.version = c->git_version,
		.ingress = ks_ingress_http(c->ingress),
		.resolve = resolve_kind,
		.resolve_data = c,
		.version_overhead = c->state.faults.version_overhead,
	};
	int rc = ks_controllers_start(&c->ctl, &ctx, err);
	if (rc == 0)
		ks_controllers_set_ingress_down(c->ctl, c->state.faults.ingress_down);
	return rc;
}

int ks_cluster_new(struct ks_cluster **ret, uv_loop_t *loop,
		   const struct ks_cluster_opts *opts, struct co_error *err)
{
	struct ks_cluster *c;
	char git[64];
	int major, minor, rc;
	if (!ks_dns1123_label(opts->name))
		return co_error_set(err, -EINVAL,
				    "cluster name '%s' is not a DNS-1123 label (lowercase "
				    "alphanumerics and '-', at most 63)", opts->name ? opts->name : "");
	rc = ks_version_from_image(opts->image, git, sizeof(git), &major, &minor, err);
	if (rc < 0)
		return rc;
	c = co_calloc(1, sizeof(*c));
	c->loop = loop;
	c->name = co_strdup(opts->name);
	c->image = co_strdup(opts->image);
	snprintf(c->git_version, sizeof(c->git_version), "%s", git);
	c->major = major;
	c->minor = minor;
	c->dir = co_asprintf("%s/%s", opts->state_dir, opts->name);
	c->created_ms = opts->created_ms ? opts->created_ms : co_time_wall_ms();
	c->state.faults = opts->faults;
	c->on_change = opts->on_change;
	c->data = opts->data;
	if (opts->token) {
		c->token = co_strdup(opts->token);
	} else {
		char tok[64];
		new_token(tok, sizeof(tok));
		c->token = co_strdup(tok);
	}
	if (mkdir(c->dir, 0700) < 0 && errno != EEXIST) {
		rc = co_error_set(err, -EIO, "create '%s': %s", c->dir, strerror(errno));
		goto fail;
	}
	char *snap = co_asprintf("%s/objects.json", c->dir);
	struct ks_store_opts so = { .snapshot_path = snap, .debounce_ms = 100 };
	rc = ks_store_new(&c->store, loop, &so, err);
	free(snap);
	if (rc < 0)
		goto fail;
	if ((rc = ks_store_bootstrap(c->store, err)) < 0)
		goto fail;
	c->reg = ks_registry_new(minor);
	struct ks_watch_filter crds = { .group = "apiextensions.k8s.io",
					.resource = "customresourcedefinitions" };
	if ((rc = ks_store_watch(&c->crd_watch, c->store, &crds, 0, crd_event, c, err)) < 0)
		goto fail;
	char *key_pem = NULL;
	if ((rc = ks_tls_material(c->dir, &c->cert_pem, &key_pem, err)) < 0)
		goto fail;
	/*
	 * Listeners on ports the caller asked for are bound before the ones the kernel
	 * chooses: otherwise an ephemeral bind of this very cluster could be handed the
	 * port that was requested a moment later (the API backend and the TLS relay
	 * pick from the same ephemeral range a test or script picked its port from).
	 */
	struct ks_ingress_opts io = { .port = opts->ingress_port, .store = c->store,
				      .state = &c->state };
	if ((rc = ks_ingress_new(&c->ingress, loop, &io, err)) < 0) {
		free(key_pem);
		goto fail;
	}
	struct ks_apiserver_opts ao = {
		.port = 0,
		.token = c->token,
		.git_version = c->git_version,
		.major = major,
		.minor = minor,
		.store = c->store,
		.reg = c->reg,
		.state = &c->state,
	};
	if ((rc = ks_apiserver_new(&c->api, loop, &ao, err)) < 0) {
		free(key_pem);
		ks_ingress_close(c->ingress, NULL, NULL);
		goto fail;
	}
	struct ks_tls_proxy_opts to = {
		.port = opts->api_port,
		.backend_port = ks_apiserver_port(c->api),
		.cert_pem = c->cert_pem,
		.key_pem = key_pem,
	};
	rc = ks_tls_proxy_new(&c->tls, loop, &to, err);
	free(key_pem);
	if (rc < 0) {
		/* listeners must close before the cluster can be freed; nothing has been
		 * accepted yet, so the store is not in use */
		ks_apiserver_close(c->api, NULL, NULL);
		ks_ingress_close(c->ingress, NULL, NULL);
		goto fail;
	}
	if ((rc = write_kubeconfig(c, err)) < 0) {
		c->remove_files = false;
		c->closing = 0;
		ks_cluster_close(c, false, NULL, NULL);
		return rc;
	}
	/* ---- controllers (sim/controllers.h) ---- */
	if ((rc = start_controllers(c, err)) < 0) {
		ks_cluster_close(c, false, NULL, NULL);
		return rc;
	}
	/* ---- end controllers ---- */
	if (opts->ready) {
		c->state.ready = true;
	} else {
		c->boot = co_malloc(sizeof(*c->boot));
		uv_timer_init(loop, c->boot);
		c->boot->data = c;
		uv_timer_start(c->boot, boot_done, co_time_scaled(KS_CLUSTER_BOOT_MS), 0);
	}
	*ret = c;
	return 0;
fail:
	cluster_free(c);
	return rc;
}

const char *ks_cluster_name(const struct ks_cluster *c)
{
	return c->name;
}

struct ks_store *ks_cluster_store(struct ks_cluster *c)
{
	return c->store;
}

int ks_cluster_api_port(const struct ks_cluster *c)
{
	return ks_tls_proxy_port(c->tls);
}

int ks_cluster_ingress_port(const struct ks_cluster *c)
{
	return ks_ingress_port(c->ingress);
}

bool ks_cluster_ready(const struct ks_cluster *c)
{
	return c->state.ready;
}

void ks_cluster_set_faults(struct ks_cluster *c, const struct ks_faults *f)
{
	c->state.faults = *f;
	if (c->ctl) {
		ks_controllers_set_ingress_down(c->ctl, f->ingress_down);
		ks_controllers_set_version_overhead(c->ctl, f->version_overhead);
	}
}

json_t *ks_faults_to_json(const struct ks_faults *f)
{
	return json_pack("{s:f, s:I, s:b, s:f}", "apiErrorRate", f->api_error_rate,
			 "apiLatencyMs", (json_int_t)f->api_latency_ms, "ingressDown",
			 f->ingress_down, "versionOverhead",
			 f->version_overhead > 0 ? f->version_overhead : 1.0);
}

int ks_faults_from_json(struct ks_faults *ret, const struct ks_faults *base,
			const json_t *j, struct co_error *err)
{
	struct ks_faults f = base ? *base : (struct ks_faults){ 0 };
	json_t *v;
	if (!json_is_object(j))
		return co_error_set(err, -EINVAL, "faults must be a JSON object");
	if ((v = json_object_get(j, "apiErrorRate"))) {
		double r = json_number_value(v);
		if (!json_is_number(v) || r < 0 || r > 1)
			return co_error_set(err, -EINVAL, "apiErrorRate must be a number in 0..1");
		f.api_error_rate = r;
	}
	if ((v = json_object_get(j, "apiLatencyMs"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 600000)
			return co_error_set(err, -EINVAL,
					    "apiLatencyMs must be an integer in 0..600000");
		f.api_latency_ms = (uint64_t)json_integer_value(v);
	}
	if ((v = json_object_get(j, "ingressDown"))) {
		if (!json_is_boolean(v))
			return co_error_set(err, -EINVAL, "ingressDown must be a boolean");
		f.ingress_down = json_is_true(v);
	}
	if ((v = json_object_get(j, "versionOverhead"))) {
		double o = json_number_value(v);
		if (!json_is_number(v) || o <= 0 || o > 100)
			return co_error_set(err, -EINVAL,
					    "versionOverhead must be a number in (0, 100]");
		f.version_overhead = o;
	}
	*ret = f;
	return 0;
}

json_t *ks_cluster_describe(const struct ks_cluster *c, bool with_secrets)
{
	char ts[32], server[64];
	co_time_rfc3339(c->created_ms, ts, sizeof(ts));
	snprintf(server, sizeof(server), "https://127.0.0.1:%d", ks_tls_proxy_port(c->tls));
	char *kc = co_asprintf("%s/kubeconfig", c->dir);
	json_t *d = json_pack(
		"{s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:b, s:s, s:s, s:I, s:o, s:I}", "name",
		c->name, "image", c->image, "version", c->git_version, "apiPort",
		ks_tls_proxy_port(c->tls), "ingressPort", ks_ingress_port(c->ingress), "server",
		server, "kubeconfig", kc, "ready", c->state.ready, "status",
		c->state.ready ? "Ready" : "Provisioning", "createdAt", ts, "createdMs",
		(json_int_t)c->created_ms, "faults", ks_faults_to_json(&c->state.faults),
		"objects", (json_int_t)ks_store_count(c->store));
	free(kc);
	if (with_secrets)
		json_object_set_new(d, "token", json_string(c->token));
	return d;
}

static void part_closed(void *data)
{
	struct ks_cluster *c = data;
	if (--c->closing > 0)
		return;
	void (*cb)(void *) = c->close_cb;
	void *cb_data = c->close_data;
	cluster_free(c);
	if (cb)
		cb(cb_data);
}

void ks_cluster_close(struct ks_cluster *c, bool remove_files, void (*cb)(void *data),
		      void *data)
{
	c->remove_files = remove_files;
	c->close_cb = cb;
	c->close_data = data;
	stop_boot_timer(c);
	ks_controllers_stop(c->ctl);
	c->ctl = NULL;
	c->closing = 3;
	ks_tls_proxy_close(c->tls, part_closed, c);
	ks_apiserver_close(c->api, part_closed, c);
	ks_ingress_close(c->ingress, part_closed, c);
}
