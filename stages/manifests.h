/*
 * What Flux would apply from a path of a checked-out repository: where the path holds
 * a kustomization.yaml, the output of `kubectl kustomize` (run through subproc with an
 * argv, never a shell); otherwise every YAML file under it, recursing into
 * subdirectories and building those that hold their own kustomization.yaml, the way
 * kustomize-controller generates a kustomization for a plain directory.
 *
 * Each resulting object carries the file it came from (relative to the checkout)
 * when one can be found, so reports can name "deploy/base/psp.yaml" rather than a
 * kustomize build.
 *
 * Async contract: if co_manifests_build() returns an error the callback never runs;
 * otherwise it runs exactly once; co_manifests_cancel() makes it run with -ECANCELED.
 */
#ifndef CO_STAGES_MANIFESTS_H
#define CO_STAGES_MANIFESTS_H

#include <jansson.h>
#include <uv.h>

#include "base/error.h"

struct co_manifests;

/* items: [{"object": {...}, "source": "deploy/base/psp.yaml"}...], borrowed for the
 * callback (json_incref() to keep). */
typedef void (*co_manifests_cb)(int status, json_t *items, const struct co_error *err,
				void *data);

/* root: the checkout; path: relative ("./clusters/staging/northeurope" or ""). */
int co_manifests_build(struct co_manifests **ret, uv_loop_t *loop, const char *root,
		       const char *path, co_manifests_cb cb, void *data,
		       struct co_error *err);
void co_manifests_cancel(struct co_manifests *m);

/* Every YAML document under root keyed "apiVersion|kind|name" -> relative file (new
 * object). Unparseable files are skipped: they fail the build that uses them. */
json_t *co_manifests_index(const char *root);

#endif
