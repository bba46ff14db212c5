/*
 * What the providers share behind provider.h: their constructors (dispatched by name in
 * provider.c) and a few helpers for checking a create spec and describing a cluster in
 * the common JSON shape. Not for use outside runner/providers.
 */
#ifndef CO_PROVIDERS_IMPL_H
#define CO_PROVIDERS_IMPL_H

#include <jansson.h>
#include <uv.h>

#include "base/error.h"
#include "providers/provider.h"

int co_provider_sim_new(struct co_provider **ret, uv_loop_t *loop,
			struct co_http_client *http, const struct co_provider_opts *opts,
			struct co_error *err);
int co_provider_k3d_new(struct co_provider **ret, uv_loop_t *loop,
			const struct co_provider_opts *opts, struct co_error *err);
int co_provider_exec_new(struct co_provider **ret, uv_loop_t *loop,
			 const struct co_provider_opts *opts, struct co_error *err);

/* Fill the common part. */
void co_provider_base_init(struct co_provider *p, const struct co_provider_ops *ops,
			   uv_loop_t *loop, struct co_http_client *http, const char *state_dir);
void co_provider_base_release(struct co_provider *p);

/* A create spec: object with string "name" (DNS-1123 label) and "image", optional
 * integer "port" (0..65535, 0 = provider's choice). Borrowed pointers into spec. */
struct co_provider_spec {
	const char *name;
	const char *image;
	int port;
};
int co_provider_spec_parse(const json_t *spec, struct co_provider_spec *ret,
			   struct co_error *err);

/* Report a result to cb (status, cluster borrowed for the call; err may be NULL). */
void co_provider_report(co_provider_cb cb, void *data, int status, json_t *cluster,
			const struct co_error *err);

#endif
