/*
 * Provider selection and the helpers every provider shares (contract in provider.h,
 * internals in impl.h).
 *
 * co_provider_new() is a small table from name to constructor, so adding a provider
 * (Cluster API, say) is one file and one row. The image-to-version rule mirrors what
 * k3s and kind publish: the tag is the Kubernetes version, and k3s' build suffix
 * ("-k3s1") becomes semver build metadata ("+k3s1") as the API server reports it in
 * /version's gitVersion.
 */
#include "providers/provider.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "providers/impl.h"

#define TAG_MAX 128

int co_provider_new(struct co_provider **ret, uv_loop_t *loop, struct co_http_client *http,
		    const struct co_provider_opts *opts, struct co_error *err)
{
	const char *name = opts && opts->name ? opts->name : "sim";

	if (!opts || !opts->state_dir)
		return co_error_set(err, -EINVAL, "provider '%s': no state dir", name);
	if (strcmp(name, "sim") == 0)
		return co_provider_sim_new(ret, loop, http, opts, err);
	if (strcmp(name, "k3d") == 0)
		return co_provider_k3d_new(ret, loop, opts, err);
	if (strcmp(name, "exec") == 0)
		return co_provider_exec_new(ret, loop, opts, err);
	return co_error_set(err, -EINVAL, "unknown provider '%.40s' (sim, k3d, exec)", name);
}

void co_provider_free(struct co_provider *p)
{
	if (p)
		p->ops->free(p);
}

void co_provider_base_init(struct co_provider *p, const struct co_provider_ops *ops,
			   uv_loop_t *loop, struct co_http_client *http, const char *state_dir)
{
	p->ops = ops;
	p->loop = loop;
	p->http = http;
	p->state_dir = co_strdup(state_dir);
}

void co_provider_base_release(struct co_provider *p)
{
	free(p->state_dir);
	p->state_dir = NULL;
}

int co_provider_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 63 || name[0] == '-' || name[n - 1] == '-')
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9') ||
		      name[i] == '-'))
			return 0;
	return 1;
}

int co_provider_spec_parse(const json_t *spec, struct co_provider_spec *ret,
			   struct co_error *err)
{
	struct co_provider_spec s = { 0 };
	json_t *port;

	if (!json_is_object(spec))
		return co_error_set(err, -EINVAL, "cluster spec must be a JSON object");
	s.name = json_string_value(json_object_get(spec, "name"));
	s.image = json_string_value(json_object_get(spec, "image"));
	if (!co_provider_name_valid(s.name))
		return co_error_set(err, -EINVAL, "cluster name '%.80s' is not a DNS-1123 label",
				    s.name ? s.name : "");
	if (!s.image || !*s.image)
		return co_error_set(err, -EINVAL, "cluster '%s': no image", s.name);
	port = json_object_get(spec, "port");
	if (port && !json_is_null(port)) {
		if (!json_is_integer(port) || json_integer_value(port) < 0 ||
		    json_integer_value(port) > 65535)
			return co_error_set(err, -EINVAL,
					    "cluster '%s': port must be in 0..65535", s.name);
		s.port = (int)json_integer_value(port);
	}
	*ret = s;
	return 0;
}

void co_provider_report(co_provider_cb cb, void *data, int status, json_t *cluster,
			const struct co_error *err)
{
	struct co_provider_result res = { .status = status, .err = CO_ERROR_INIT,
					  .cluster = cluster };

	if (status < 0) {
		if (err && err->code)
			co_error_copy(&res.err, err);
		else
			co_error_set(&res.err, status, "%s", strerror(-status));
	}
	cb(&res, data);
}

char *co_provider_version_from_image(const char *image)
{
	const char *slash, *colon, *p;
	unsigned major, minor, patch;
	char tag[TAG_MAX];
	size_t len;
	int used = 0;

	if (!image)
		return NULL;
	/* the tag follows the last ':' after the last '/' (a registry may have a port) */
	slash = strrchr(image, '/');
	colon = strchr(slash ? slash : image, ':');
	if (!colon || colon[1] != 'v')
		return NULL;
	len = strcspn(colon + 1, "@");
	if (len >= sizeof(tag))
		return NULL;
	memcpy(tag, colon + 1, len);
	tag[len] = '\0';
	if (sscanf(tag, "v%u.%u.%u%n", &major, &minor, &patch, &used) != 3 || major == 0)
		return NULL;
	p = tag + used;
	if (*p) {
		if (*p != '-' && *p != '+')
			return NULL;
		if (!p[1])
			return NULL;
		for (const char *q = p + 1; *q; q++)
			if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			      (*q >= '0' && *q <= '9') || *q == '-' || *q == '.'))
				return NULL;
		tag[used] = '+';
	}
	return co_strdup(tag);
}
