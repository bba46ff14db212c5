/*
 * `cutover cluster create|delete|list|get`: clusters by hand, through the same
 * providers and registry the pipeline uses.
 *
 * create registers the cluster first (state "creating"), so a cluster whose creation
 * is interrupted is still known to `delete` and to the cleanup script; then the
 * provider creates it (idempotently), its kubeconfig is written 0600 under the state
 * dir, the registry gets version, ingress and role (active when it is the only live
 * cluster of its env/location, else candidate), and Prometheus' file_sd targets are
 * rewritten from the registry. delete asks the provider the cluster was created with
 * (recorded in the registry), then drops the entry and rewrites the targets. list and
 * get read the registry; get also asks the provider for the live state.
 *
 * One loop per command; the provider's callback fills a small result that the command
 * reports once the loop has wound down.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "base/buf.h"
#include "base/log.h"
#include "clients/prom-targets.h"
#include "net/http-client.h"
#include "providers/provider.h"
#include "providers/registry.h"

#define DEFAULT_IMAGE "rancher/k3s:v1.25.10-k3s1"
#define DEFAULT_ENV "staging"
#define DEFAULT_LOCATION "northeurope"

static const char usage_text[] =
	"usage: cutover cluster create NAME [--image IMAGE] [--env ENV] [--location LOC]\n"
	"               [--port PORT] [--provider sim|k3d|exec] [--plugin PATH] [-o json]\n"
	"       cutover cluster delete NAME [--provider sim|k3d|exec] [--plugin PATH]\n"
	"       cutover cluster list [-o json]\n"
	"       cutover cluster get NAME [-o json]\n"
	"\n"
	"common options:\n"
	"  --state-dir DIR    state dir (default $CUTOVER_STATE_DIR or ./.cutover)\n"
	"  --kubesim-url URL  kubesim control API (default: DIR/kubesim/kubesim.url)\n"
	"  --k3d PATH         k3d binary (default: k3d from PATH)\n"
	"\n"
	"create defaults: --image " DEFAULT_IMAGE " --env " DEFAULT_ENV
	" --location " DEFAULT_LOCATION ",\n"
	"the provider's own port and --provider sim. delete uses the provider the cluster\n"
	"was created with. Exit status: 0 ok, 1 failed, 2 usage.\n";

struct cluster_opts {
	const char *state_dir;
	const char *image;
	const char *env;
	const char *location;
	const char *provider;
	const char *plugin;
	const char *sim_url;
	const char *k3d;
	int port;
	int json;
};

/* What a provider call reported. */
struct outcome {
	int done;
	int status;
	struct co_error err;
	json_t *cluster;
};

struct session {
	uv_loop_t loop;
	struct co_http_client *http;
	struct co_provider *provider;
};

static void on_result(struct co_provider_result *res, void *data)
{
	struct outcome *o = data;

	o->done = 1;
	o->status = res->status;
	co_error_copy(&o->err, &res->err);
	o->cluster = json_incref(res->cluster);
}

static int session_open(struct session *s, const struct cluster_opts *co,
			const char *provider, const char *plugin, struct co_error *err)
{
	struct co_provider_opts po = {
		.name = provider,
		.state_dir = co->state_dir,
		.sim_url = co->sim_url,
		.exec_path = plugin,
		.k3d_path = co->k3d,
	};
	int rc;

	memset(s, 0, sizeof(*s));
	uv_loop_init(&s->loop);
	rc = co_http_client_new(&s->http, &s->loop, err);
	if (rc < 0)
		return rc;
	return co_provider_new(&s->provider, &s->loop, s->http, &po, err);
}

static void session_close(struct session *s)
{
	co_provider_free(s->provider);
	s->provider = NULL;
	if (s->http)
		co_http_client_close(s->http, NULL, NULL);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&s->loop) != 0)
		co_log_msg(CO_LOG_DEBUG, "cluster", "loop closed with handles open");
}

static void outcome_release(struct outcome *o)
{
	json_decref(o->cluster);
	o->cluster = NULL;
}

static void print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);

	printf("%s\n", s);
	free(s);
}

static const char *str(const json_t *c, const char *key)
{
	const char *v = json_string_value(json_object_get(c, key));

	return v ? v : "-";
}

/* "http://127.0.0.1:8080/" -> "127.0.0.1:8080" (new string), NULL if not http. */
static char *host_port(const char *url)
{
	const char *p;

	if (!url || strncmp(url, "http://", 7) != 0)
		return NULL;
	p = url + 7;
	return co_strndup(p, strcspn(p, "/"));
}

/* Rewrite <state>/prometheus/targets.json from the registry: one group per live
 * cluster with an ingress. */
static int write_targets(struct co_registry *reg, struct co_error *err)
{
	const json_t *all = co_registry_all(reg), *c;
	size_t n = json_object_size(all), k = 0;
	struct co_prom_target *t = co_calloc(n ? n : 1, sizeof(*t));
	char **hosts = co_calloc(n ? n : 1, sizeof(*hosts));
	char *path;
	const char *name;
	int rc;

	json_object_foreach((json_t *)all, name, c) {
		const char *role = json_string_value(json_object_get(c, "role"));

		if (role && strcmp(role, "retired") == 0)
			continue;
		hosts[k] = host_port(json_string_value(json_object_get(c, "ingress")));
		if (!hosts[k])
			continue;
		t[k].cluster = name;
		t[k].targets = (const char *const *)&hosts[k];
		t[k].n_targets = 1;
		k++;
	}
	path = co_asprintf("%s/prometheus/targets.json", co_registry_state_dir(reg));
	rc = co_prom_targets_write(path, t, k, err);
	for (size_t i = 0; i < k; i++)
		free(hosts[i]);
	free(hosts);
	free(t);
	free(path);
	return rc;
}

/* active when no other live (not retired, not failed) cluster shares env/location */
static const char *initial_role(struct co_registry *reg, const char *name, const char *env,
				const char *location)
{
	const json_t *all = co_registry_all(reg), *c;
	const char *key;

	json_object_foreach((json_t *)all, key, c) {
		const char *role = json_string_value(json_object_get(c, "role"));
		const char *state = json_string_value(json_object_get(c, "state"));

		if (strcmp(key, name) == 0 || (role && strcmp(role, "retired") == 0) ||
		    (state && strcmp(state, "failed") == 0))
			continue;
		if (strcmp(str(c, "env"), env) == 0 && strcmp(str(c, "location"), location) == 0)
			return "candidate";
	}
	return "active";
}

static void print_cluster_text(const json_t *c)
{
	static const char *const keys[] = { "name", "provider", "env", "location", "image",
					    "version", "role", "state", "ingress", "apiServer",
					    "kubeconfig", "plugin", "error", "created", "updated",
					    "live", NULL };

	for (size_t i = 0; keys[i]; i++)
		if (json_is_string(json_object_get(c, keys[i])))
			printf("%-11s %s\n", keys[i], str(c, keys[i]));
}

static int run_create(const char *name, const struct cluster_opts *co)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg = NULL;
	struct outcome out = { 0 };
	struct session s;
	const json_t *prev;
	json_t *fields = NULL, *spec = NULL;
	char *provider = NULL, *plugin = NULL, *role = NULL, *env = NULL, *location = NULL;
	char *kc_path = NULL, *version = NULL;
	int rc, ret = CO_EXIT_FAILED;

	version = co_provider_version_from_image(co->image);
	if (!version) {
		fprintf(stderr, "cutover cluster: image '%s' has no Kubernetes version tag "
			"(like rancher/k3s:v1.27.1-k3s1)\n", co->image);
		free(version);
		return CO_EXIT_USAGE;
	}
	if (co_registry_open(&reg, co->state_dir, &err) < 0)
		goto fail;
	/* copies: registry values are borrowed only until the next change */
	prev = co_registry_get(reg, name);
	if (prev) {
		const char *was = json_string_value(json_object_get(prev, "provider"));
		const char *was_plugin = json_string_value(json_object_get(prev, "plugin"));

		if (was && co->provider && strcmp(was, co->provider) != 0) {
			co_error_set(&err, -EEXIST, "cluster '%s' is registered with provider "
				     "'%s', not '%s'", name, was, co->provider);
			goto fail;
		}
		if (strcmp(str(prev, "image"), co->image) != 0) {
			co_error_set(&err, -EEXIST, "cluster '%s' is registered with image "
				     "'%s'; delete it first to change the image", name,
				     str(prev, "image"));
			goto fail;
		}
		/* an existing entry keeps its env and location */
		if (json_is_string(json_object_get(prev, "env")))
			env = co_strdup(str(prev, "env"));
		if (json_is_string(json_object_get(prev, "location")))
			location = co_strdup(str(prev, "location"));
		provider = was ? co_strdup(was) : NULL;
		plugin = was_plugin && !co->plugin ? co_strdup(was_plugin) : NULL;
		if (json_is_string(json_object_get(prev, "role")))
			role = co_strdup(json_string_value(json_object_get(prev, "role")));
	}
	if (!provider)
		provider = co_strdup(co->provider ? co->provider : "sim");
	if (!plugin && co->plugin)
		plugin = co_strdup(co->plugin);
	if (!env)
		env = co_strdup(co->env);
	if (!location)
		location = co_strdup(co->location);
	if (!role)
		role = co_strdup(initial_role(reg, name, env, location));
	fields = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "provider", provider, "env",
			   env, "location", location, "image", co->image, "version",
			   version, "role", role, "state", "creating");
	json_object_set_new(fields, "plugin", plugin ? json_string(plugin) : json_null());
	json_object_set_new(fields, "error", json_null());
	if (co_registry_put(reg, name, fields, &err) < 0)
		goto fail;

	spec = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "image", co->image,
			 "version", version, "env", env, "location", location);
	if (co->port > 0)
		json_object_set_new(spec, "port", json_integer(co->port));
	rc = session_open(&s, co, provider, plugin, &err);
	if (rc == 0)
		rc = co_provider_create(s.provider, spec, on_result, &out, &err);
	if (rc == 0)
		uv_run(&s.loop, UV_RUN_DEFAULT);
	session_close(&s);
	if (rc < 0 || !out.done || out.status < 0) {
		if (rc == 0)
			co_error_copy(&err, out.done ? &out.err :
				      &(struct co_error){ -EIO, "provider did not answer" });
		if (!prev && (rc < 0 || out.status == -EEXIST)) {
			/* nothing was started, or the cluster is not ours: forget the entry */
			struct co_error e2 = CO_ERROR_INIT;

			co_registry_remove(reg, name, &e2);
		} else {
			json_t *f = json_pack("{s:s, s:s}", "state", "failed", "error", err.msg);
			struct co_error e2 = CO_ERROR_INIT;

			co_registry_put(reg, name, f, &e2);
			json_decref(f);
		}
		goto fail;
	}

	if (co_registry_write_kubeconfig(reg, name,
					 json_string_value(json_object_get(out.cluster,
									   "kubeconfig")),
					 &kc_path, &err) < 0)
		goto fail;
	json_decref(fields);
	fields = json_pack("{s:s, s:s}", "kubeconfig", kc_path, "state", "ready");
	if (json_is_string(json_object_get(out.cluster, "version")))
		json_object_set(fields, "version", json_object_get(out.cluster, "version"));
	if (json_is_string(json_object_get(out.cluster, "ingress")))
		json_object_set(fields, "ingress", json_object_get(out.cluster, "ingress"));
	if (json_is_string(json_object_get(out.cluster, "apiServer")))
		json_object_set(fields, "apiServer", json_object_get(out.cluster, "apiServer"));
	if (co_registry_put(reg, name, fields, &err) < 0)
		goto fail;
	if (write_targets(reg, &err) < 0) {
		co_error_prefix(&err, "prometheus targets");
		goto fail;
	}
	if (co->json) {
		print_json(co_registry_get(reg, name));
	} else {
		const json_t *c = co_registry_get(reg, name);

		printf("cluster '%s' ready: %s, ingress %s, role %s\nkubeconfig %s\n", name,
		       str(c, "version"), str(c, "ingress"), str(c, "role"), kc_path);
	}
	ret = CO_EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "cutover cluster create '%s': %s\n", name, co_error_str(&err));
out:
	outcome_release(&out);
	json_decref(fields);
	json_decref(spec);
	free(kc_path);
	free(version);
	free(provider);
	free(plugin);
	free(role);
	free(env);
	free(location);
	co_registry_free(reg);
	return ret;
}

static int run_delete(const char *name, const struct cluster_opts *co)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg = NULL;
	struct outcome out = { 0 };
	struct session s;
	const json_t *c;
	const char *provider = co->provider, *plugin = co->plugin;
	int rc, ret = CO_EXIT_FAILED, existed, registered;

	if (co_registry_open(&reg, co->state_dir, &err) < 0)
		goto fail;
	c = co_registry_get(reg, name);
	registered = c != NULL;
	if (!provider)
		provider = c ? json_string_value(json_object_get(c, "provider")) : NULL;
	if (!plugin)
		plugin = c ? json_string_value(json_object_get(c, "plugin")) : NULL;
	if (!provider)
		provider = "sim";
	rc = session_open(&s, co, provider, plugin, &err);
	if (rc == 0)
		rc = co_provider_delete(s.provider, name, on_result, &out, &err);
	if (rc == 0)
		uv_run(&s.loop, UV_RUN_DEFAULT);
	session_close(&s);
	if (rc < 0)
		goto fail;
	if (!out.done || out.status < 0) {
		co_error_copy(&err, out.done ? &out.err :
			      &(struct co_error){ -EIO, "provider did not answer" });
		goto fail;
	}
	existed = json_is_true(json_object_get(out.cluster, "existed"));
	/* provider and plugin may point into the entry: not used past this point */
	if (registered && co_registry_remove(reg, name, &err) < 0)
		goto fail;
	if (write_targets(reg, &err) < 0) {
		co_error_prefix(&err, "prometheus targets");
		goto fail;
	}
	if (co->json) {
		json_t *j = json_pack("{s:s, s:b, s:b}", "name", name, "existed", existed,
				      "registered", registered);

		print_json(j);
		json_decref(j);
	} else
		printf("cluster '%s' %s\n", name, existed ? "deleted" : "did not exist");
	ret = CO_EXIT_OK;
	goto out;
fail:
	fprintf(stderr, "cutover cluster delete '%s': %s\n", name, co_error_str(&err));
out:
	outcome_release(&out);
	co_registry_free(reg);
	return ret;
}

static int run_list(const struct cluster_opts *co)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg;
	const json_t *c;
	const char *name;

	if (co_registry_open(&reg, co->state_dir, &err) < 0) {
		fprintf(stderr, "cutover cluster list: %s\n", co_error_str(&err));
		return CO_EXIT_FAILED;
	}
	if (co->json) {
		json_t *arr = json_array();

		json_object_foreach((json_t *)co_registry_all(reg), name, c)
			json_array_append(arr, (json_t *)c);
		print_json(arr);
		json_decref(arr);
	} else {
		printf("%-16s %-9s %-11s %-12s %-14s %-10s %-9s %s\n", "NAME", "PROVIDER",
		       "ENV", "LOCATION", "VERSION", "ROLE", "STATE", "INGRESS");
		json_object_foreach((json_t *)co_registry_all(reg), name, c)
			printf("%-16s %-9s %-11s %-12s %-14s %-10s %-9s %s\n", name,
			       str(c, "provider"), str(c, "env"), str(c, "location"),
			       str(c, "version"), str(c, "role"), str(c, "state"),
			       str(c, "ingress"));
	}
	co_registry_free(reg);
	return CO_EXIT_OK;
}

static int run_get(const char *name, const struct cluster_opts *co)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_registry *reg;
	struct outcome out = { 0 };
	struct session s;
	const json_t *c;
	json_t *view;
	const char *live;
	int rc;

	if (co_registry_open(&reg, co->state_dir, &err) < 0) {
		fprintf(stderr, "cutover cluster get: %s\n", co_error_str(&err));
		return CO_EXIT_FAILED;
	}
	c = co_registry_get(reg, name);
	if (!c) {
		fprintf(stderr, "cutover cluster get: cluster '%s' is not registered in '%s'\n",
			name, co->state_dir);
		co_registry_free(reg);
		return CO_EXIT_FAILED;
	}
	view = json_deep_copy(c);
	/* the provider's view of it right now */
	rc = session_open(&s, co, json_string_value(json_object_get(c, "provider")),
			  json_string_value(json_object_get(c, "plugin")), &err);
	if (rc == 0)
		rc = co_provider_get(s.provider, name, on_result, &out, &err);
	if (rc == 0)
		uv_run(&s.loop, UV_RUN_DEFAULT);
	session_close(&s);
	if (rc < 0 || !out.done || (out.status < 0 && out.status != -ENOENT)) {
		co_log_msg(CO_LOG_WARN, "cluster", "cluster '%s': provider not reachable: %s",
			   name, rc < 0 ? co_error_str(&err) : co_error_str(&out.err));
		live = "unknown";
	} else if (out.status == -ENOENT) {
		live = "missing";
	} else {
		live = str(out.cluster, "state");
	}
	json_object_set_new(view, "live", json_string(live));
	if (co->json)
		print_json(view);
	else
		print_cluster_text(view);
	json_decref(view);
	outcome_release(&out);
	co_registry_free(reg);
	return CO_EXIT_OK;
}

int cmd_cluster(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "image", required_argument, NULL, 'i' },
		{ "env", required_argument, NULL, 'e' },
		{ "location", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "provider", required_argument, NULL, 'P' },
		{ "plugin", required_argument, NULL, 'x' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "kubesim-url", required_argument, NULL, 'u' },
		{ "k3d", required_argument, NULL, 'k' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cluster_opts co = {
		.image = DEFAULT_IMAGE,
		.env = DEFAULT_ENV,
		.location = DEFAULT_LOCATION,
	};
	const char *sub, *name = NULL;
	char *end, *plugin_abs = NULL;
	int c, ret;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? CO_EXIT_USAGE : CO_EXIT_OK;
	}
	sub = argv[1];
	if (strcmp(sub, "create") && strcmp(sub, "delete") && strcmp(sub, "list") &&
	    strcmp(sub, "get"))
		return co_cli_usage_error("cluster", "unknown subcommand '%s'", sub);
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc - 1, argv + 1, ":o:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			co.image = optarg;
			break;
		case 'e':
			co.env = optarg;
			break;
		case 'l':
			co.location = optarg;
			break;
		case 'p':
			errno = 0;
			co.port = (int)strtol(optarg, &end, 10);
			if (errno || *end || co.port <= 0 || co.port > 65535)
				return co_cli_usage_error("cluster", "bad --port '%s'", optarg);
			break;
		case 'P':
			if (strcmp(optarg, "sim") && strcmp(optarg, "k3d") && strcmp(optarg, "exec"))
				return co_cli_usage_error("cluster", "unknown provider '%s' "
							  "(sim, k3d, exec)", optarg);
			co.provider = optarg;
			break;
		case 'x':
			co.plugin = optarg;
			break;
		case 's':
			co.state_dir = optarg;
			break;
		case 'u':
			co.sim_url = optarg;
			break;
		case 'k':
			co.k3d = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") == 0)
				co.json = 1;
			else if (strcmp(optarg, "text") != 0)
				return co_cli_usage_error("cluster", "-o takes json or text");
			break;
		case 'h':
			fputs(usage_text, stdout);
			return CO_EXIT_OK;
		case ':':
			return co_cli_usage_error("cluster", "option '%s' needs a value",
						  argv[optind]);
		default:
			return co_cli_usage_error("cluster", "unknown option '%s'",
						  argv[optind]);
		}
	}
	/* operands after the subcommand (getopt permuted them to the end) */
	for (int i = optind + 1; i < argc; i++) {
		if (name)
			return co_cli_usage_error("cluster", "unexpected argument '%s'", argv[i]);
		name = argv[i];
	}
	if (!co.state_dir) {
		co.state_dir = getenv("CUTOVER_STATE_DIR");
		if (!co.state_dir || !*co.state_dir)
			co.state_dir = "./.cutover";
	}
	if (co.provider && strcmp(co.provider, "exec") == 0 && !co.plugin &&
	    strcmp(sub, "create") == 0)
		return co_cli_usage_error("cluster", "--provider exec needs --plugin PATH");
	if (co.plugin && !co.provider)
		co.provider = "exec";
	if (co.plugin) {
		/* recorded in the registry: later commands may run from elsewhere */
		plugin_abs = realpath(co.plugin, NULL);
		if (!plugin_abs || access(plugin_abs, X_OK) != 0) {
			free(plugin_abs);
			return co_cli_usage_error("cluster", "plugin '%s' is not an executable "
						  "file", co.plugin);
		}
		co.plugin = plugin_abs;
	}
	if (strcmp(sub, "list") == 0) {
		ret = name ? co_cli_usage_error("cluster", "list takes no NAME") : run_list(&co);
	} else if (!name) {
		ret = co_cli_usage_error("cluster", "%s needs a cluster NAME", sub);
	} else if (!co_provider_name_valid(name)) {
		ret = co_cli_usage_error("cluster", "cluster name '%s' is not a DNS-1123 label "
					 "(lowercase letters, digits, '-')", name);
	} else if (strcmp(sub, "create") == 0) {
		ret = run_create(name, &co);
	} else if (strcmp(sub, "delete") == 0) {
		ret = run_delete(name, &co);
	} else {
		ret = run_get(name, &co);
	}
	free(plugin_abs);
	return ret;
}
