/*
 * GitOps client: libgit2 on the libuv thread pool.
 *
 * Every operation blocks inside libgit2, so each runs as a uv_queue_work item and its
 * callback runs on the loop thread. A repository is mirrored into a bare cache
 * directory (one per remote URL, under the caller's state dir); reads come from the
 * cache at a resolved commit, writes build a commit on top of the remote branch's
 * tip without a work tree and push it. A push rejected as non-fast-forward (someone
 * pushed meanwhile) is retried: fetch, re-apply the same file changes on the new tip,
 * push again.
 *
 * Remotes: file:// URLs and local paths, https (a token from the environment variable
 * named in opts, sent as basic-auth password), ssh (the agent, or a key file).
 *
 * Two operations on the same cache directory must not run at once; callers serialise
 * per repository (the engine and kubesim keep one queue per repo).
 *
 * Async contract: if a call returns an error the callback never runs; otherwise it
 * runs exactly once with status 0 or a negative code and err filled.
 */
#ifndef CO_CLIENTS_GIT_H
#define CO_CLIENTS_GIT_H

#include <jansson.h>
#include <uv.h>

#include "base/error.h"

#define CO_GIT_SHA_HEX 40

struct co_git_opts {
	const char *url;          /* remote URL or local path */
	const char *cache_dir;    /* bare mirror for this remote (created if missing) */
	const char *token_env;    /* https: env var holding a token; NULL = none */
	const char *ssh_key;      /* ssh: private key file; NULL = ssh-agent */
};

struct co_git_result {
	int status;                        /* 0 or negative */
	struct co_error err;
	char sha[CO_GIT_SHA_HEX + 1];      /* resolved or new commit */
	json_t *files;                     /* read_tree: {"path": "content", ...}; owned by
					    * the result, steal with json_incref() */
	int push_attempts;                 /* commit_push: pushes tried */
	int changed;                       /* commit_push: 0 when nothing differed (no
					    * commit made, sha = current tip) */
};

typedef void (*co_git_cb)(struct co_git_result *res, void *data);

/* Resolve ref (a branch "main", a tag "v1" or refs/... name) on the remote without
 * fetching objects (ls-remote). */
int co_git_ls_remote(uv_loop_t *loop, const struct co_git_opts *opts, const char *ref,
		     co_git_cb cb, void *data, struct co_error *err);

/* Fetch branches and tags into the cache, then resolve ref (branch, tag, or a full
 * commit sha) to a commit sha. */
int co_git_fetch(uv_loop_t *loop, const struct co_git_opts *opts, const char *ref,
		 co_git_cb cb, void *data, struct co_error *err);

/*
 * Read every blob under path ("" or "." for the root) at commit sha from the cache
 * (after a fetch), into res->files keyed by path relative to path. Bounded: more than
 * max_files files or max_bytes in total fails with -E2BIG (0 = 10000 / 64 MiB).
 */
int co_git_read_tree(uv_loop_t *loop, const struct co_git_opts *opts, const char *sha,
		     const char *path, size_t max_files, size_t max_bytes, co_git_cb cb,
		     void *data, struct co_error *err);

/*
 * Check the tree at sha out into dir (created; existing files under it are replaced),
 * for tools that need files on disk (kubectl kustomize).
 */
int co_git_checkout(uv_loop_t *loop, const struct co_git_opts *opts, const char *sha,
		    const char *dir, co_git_cb cb, void *data, struct co_error *err);

/*
 * Commit changes on top of the remote branch's tip and push. changes is an object
 * {"path": "content" | null} (null deletes; borrowed, copied before returning).
 * Author and committer "cutover <cutover@localhost>" unless author_name/email given.
 * Nothing to change -> status 0, changed = 0, no commit. Non-fast-forward rejections
 * are retried up to 5 times. A missing branch on an empty remote is created.
 */
struct co_git_commit {
	const char *branch;
	const char *message;
	const json_t *changes;
	const char *author_name;   /* NULL = "cutover" */
	const char *author_email;  /* NULL = "cutover@localhost" */
};
int co_git_commit_push(uv_loop_t *loop, const struct co_git_opts *opts,
		       const struct co_git_commit *commit, co_git_cb cb, void *data,
		       struct co_error *err);

/* Process-wide libgit2 initialisation (idempotent); cutover and kubesim call it at
 * start. */
void co_git_global_init(void);

#endif
