/*
 * The cluster registry: what cutover knows about the clusters it manages, in
 * <state_dir>/clusters.json, rewritten atomically (temporary file, fsync, rename) on
 * every change so a crash leaves the old or the new registry, never a torn one.
 *
 * Each cluster: {"name", "provider", "env", "location", "version", "image",
 * "kubeconfig" (path, 0600), "ingress" (URL), "role", "created", "updated"}, and as
 * `cutover cluster` writes them: "state" ("creating", "ready", "failed"), "error" (why
 * a create failed), "plugin" (exec provider's executable), "apiServer" (URL).
 * Roles: "active" (carries traffic), "candidate" (being built and validated),
 * "standby" (old cluster kept after a switch), "retired" (deleted, kept for history).
 *
 * Single-process use: the pipeline lock serialises writers per pipeline, and two
 * pipelines touch disjoint clusters; reads re-load the file.
 */
#ifndef CO_PROVIDERS_REGISTRY_H
#define CO_PROVIDERS_REGISTRY_H

#include <jansson.h>

#include "base/error.h"

struct co_registry;

int co_registry_open(struct co_registry **ret, const char *state_dir, struct co_error *err);
void co_registry_free(struct co_registry *r);

/* Re-read the file (another process may have changed it). */
int co_registry_reload(struct co_registry *r, struct co_error *err);

/* The cluster or NULL (borrowed until the next change). */
const json_t *co_registry_get(const struct co_registry *r, const char *name);
/* Object name -> cluster (borrowed). */
const json_t *co_registry_all(const struct co_registry *r);

/* Insert or merge fields into a cluster (borrowed value) and save; a field whose value
 * is JSON null is removed. -EINVAL for a name that is not a DNS-1123 label or an
 * unknown role. */
int co_registry_put(struct co_registry *r, const char *name, const json_t *fields,
		    struct co_error *err);
int co_registry_set_role(struct co_registry *r, const char *name, const char *role,
			 struct co_error *err);
/* Drop the entry and the kubeconfig co_registry_write_kubeconfig() wrote for it.
 * -ENOENT when not registered. */
int co_registry_remove(struct co_registry *r, const char *name, struct co_error *err);

/* Write a kubeconfig for a cluster under <state_dir>/clusters/<name>/kubeconfig (0600)
 * and return its path (new string). */
int co_registry_write_kubeconfig(struct co_registry *r, const char *name,
				 const char *kubeconfig_yaml, char **ret_path,
				 struct co_error *err);

const char *co_registry_state_dir(const struct co_registry *r);

#endif
