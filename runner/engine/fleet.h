/*
 * The embedded default's git repositories: a fleet repo and one repo per sample
 * tenant, as local bare repositories under the state dir, seeded from this source
 * tree when missing.
 *
 *   <state>/repos/fleet.git          clusters/ operators/ tenants/ of the source tree
 *   <state>/repos/tenant-<name>.git  tenants/repos/<name>/
 *
 * Flux (real or kubesim) and cutover's git client reach them as file:// URLs; users
 * point cutover at their own repositories instead (--fleet-repo). Seeding is
 * synchronous (libgit2 on the calling thread): it runs once at start-up, before the
 * loop has anything to do. An existing repository is never touched.
 */
#ifndef CO_ENGINE_FLEET_H
#define CO_ENGINE_FLEET_H

#include "base/error.h"

/* "<state_dir>/repos" as an absolute path (new string). */
char *co_fleet_repos_dir(const char *state_dir);

/* "file://<abs state_dir>/repos/<name>.git" (new string). */
char *co_fleet_repo_url(const char *state_dir, const char *name);

/*
 * Create the bare repository at bare_path with one commit on branch main holding the
 * files of src_dir's subdirectories listed in subdirs (NULL-terminated; NULL = the
 * whole of src_dir) at the same relative paths. Hidden entries are skipped. Returns
 * 1 when created, 0 when bare_path already exists (left alone), or negative.
 */
int co_fleet_seed_repo(const char *bare_path, const char *src_dir,
		       const char *const *subdirs, struct co_error *err);

/*
 * Seed fleet.git and every tenant-<name>.git from source_root (the directory holding
 * clusters/, operators/, tenants/) where missing. Returns the number of repositories
 * created or a negative code.
 */
int co_fleet_seed(const char *state_dir, const char *source_root, struct co_error *err);

/*
 * The source tree to seed from: $CUTOVER_FLEET_SOURCE, else the build's source root
 * when it still holds clusters/, else the current directory. Borrowed/static.
 */
const char *co_fleet_default_source(void);

#endif
