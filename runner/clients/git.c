/*
 * GitOps client on libgit2, see git.h.
 *
 * Each public call copies its inputs into a work item, runs the libgit2 part on the
 * uv thread pool with a repository object of its own (libgit2 objects are not shared
 * across threads), and delivers the result on the loop thread. The cache is a bare
 * mirror: branches fetched to refs/heads, tags to refs/tags, so revision strings
 * resolve exactly as they do on the remote.
 */
#include "clients/git.h"
#include "base/buf.h"
#include "base/fs.h"

#include <errno.h>
#include <git2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum op { OP_LS_REMOTE, OP_FETCH, OP_READ_TREE, OP_CHECKOUT, OP_COMMIT_PUSH };

struct work {
	uv_work_t req;
	enum op op;
	char *url;
	char *cache_dir;
	char *token;       /* value of the token env var, read on the loop thread */
	char *ssh_key;
	char *ref;         /* ls_remote / fetch: ref; read_tree / checkout: sha */
	char *path;        /* read_tree: subdirectory; checkout: target dir */
	size_t max_files;
	size_t max_bytes;
	char *branch;      /* commit_push */
	char *message;
	char *author_name;
	char *author_email;
	json_t *changes;
	int cred_tries;
	int push_rejected;      /* set by push_update_cb */
	char push_msg[256];
	struct co_git_result res;
	co_git_cb cb;
	void *data;
};

static int git_fail(struct co_git_result *res, const char *what, const char *target)
{
	const git_error *e = git_error_last();

	return co_error_set(&res->err, -EIO, "git %s '%s': %s", what, target,
			    e && e->message ? e->message : "unknown error");
}

static int cred_cb(git_credential **out, const char *url, const char *user_from_url,
		   unsigned int allowed, void *payload)
{
	struct work *w = payload;
	const char *user = user_from_url ? user_from_url : "git";

	if (++w->cred_tries > 3)
		return GIT_EAUTH;
	if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && w->token)
		return git_credential_userpass_plaintext_new(
			out, user_from_url ? user_from_url : "x-access-token", w->token);
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		if (w->ssh_key)
			return git_credential_ssh_key_new(out, user, NULL, w->ssh_key, NULL);
		return git_credential_ssh_key_from_agent(out, user);
	}
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user);
	return GIT_PASSTHROUGH;
}

static void init_callbacks(git_remote_callbacks *cbs, struct work *w)
{
	git_remote_init_callbacks(cbs, GIT_REMOTE_CALLBACKS_VERSION);
	cbs->credentials = cred_cb;
	cbs->payload = w;
}

static int open_cache(git_repository **ret, struct work *w)
{
	struct co_git_result *res = &w->res;

	if (git_repository_open_bare(ret, w->cache_dir) == 0)
		return 0;
	if (co_fs_mkdir_p(w->cache_dir, 0755) < 0)
		return co_error_set(&res->err, -errno, "git cache '%s': %s", w->cache_dir,
				    strerror(errno));
	if (git_repository_init(ret, w->cache_dir, 1) < 0)
		return git_fail(res, "init cache", w->cache_dir);
	return 0;
}

static int fetch_into(git_repository *repo, struct work *w)
{
	static char *specs[] = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" };
	const git_strarray refspecs = { specs, 2 };
	git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
	git_remote *remote = NULL;
	int rc = 0;

	if (git_remote_create_anonymous(&remote, repo, w->url) < 0)
		return git_fail(&w->res, "remote", w->url);
	init_callbacks(&fo.callbacks, w);
	fo.prune = GIT_FETCH_PRUNE;
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	if (git_remote_fetch(remote, &refspecs, &fo, NULL) < 0)
		rc = git_fail(&w->res, "fetch", w->url);
	git_remote_free(remote);
	return rc;
}

/* Resolve a branch, tag, refs/ name or full sha in the cache to a commit. */
static int resolve(git_repository *repo, struct work *w, const char *ref, git_oid *ret)
{
	git_object *obj = NULL;
	git_object *peeled = NULL;
	char *spec;
	int rc;

	if (strlen(ref) == CO_GIT_SHA_HEX && git_oid_fromstr(ret, ref) == 0) {
		git_commit *c;

		if (git_commit_lookup(&c, repo, ret) < 0)
			return co_error_set(&w->res.err, -ENOENT,
					    "git: commit '%s' not found in '%s'", ref, w->url);
		git_commit_free(c);
		return 0;
	}
	spec = strncmp(ref, "refs/", 5) == 0 ? co_strdup(ref)
					     : co_asprintf("refs/heads/%s", ref);
	rc = git_revparse_single(&obj, repo, spec);
	if (rc < 0 && strncmp(ref, "refs/", 5) != 0) {
		free(spec);
		spec = co_asprintf("refs/tags/%s", ref);
		rc = git_revparse_single(&obj, repo, spec);
	}
	free(spec);
	if (rc < 0)
		return co_error_set(&w->res.err, -ENOENT,
				    "git: reference '%s' not found in '%s'", ref, w->url);
	rc = git_object_peel(&peeled, obj, GIT_OBJECT_COMMIT);
	git_object_free(obj);
	if (rc < 0)
		return co_error_set(&w->res.err, -EINVAL,
				    "git: '%s' in '%s' is not a commit", ref, w->url);
	git_oid_cpy(ret, git_object_id(peeled));
	git_object_free(peeled);
	return 0;
}

static void set_sha(struct co_git_result *res, const git_oid *oid)
{
	git_oid_tostr(res->sha, sizeof(res->sha), oid);
}

static int do_ls_remote(struct work *w)
{
	git_remote_callbacks cbs;
	git_remote *remote = NULL;
	const git_remote_head **heads;
	size_t n;
	char *want_head = co_asprintf("refs/heads/%s", w->ref);
	char *want_tag = co_asprintf("refs/tags/%s", w->ref);
	char *want_peeled = co_asprintf("refs/tags/%s^{}", w->ref);
	int rc = 0, found = 0;

	init_callbacks(&cbs, w);
	if (git_remote_create_detached(&remote, w->url) < 0) {
		rc = git_fail(&w->res, "remote", w->url);
		goto out;
	}
	if (git_remote_connect(remote, GIT_DIRECTION_FETCH, &cbs, NULL, NULL) < 0 ||
	    git_remote_ls(&heads, &n, remote) < 0) {
		rc = git_fail(&w->res, "ls-remote", w->url);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = heads[i]->name;

		/* An annotated tag's peeled entry names the commit: prefer it. */
		if (strcmp(name, want_peeled) == 0) {
			set_sha(&w->res, &heads[i]->oid);
			found = 2;
		} else if (found < 2 && (strcmp(name, w->ref) == 0 ||
					 strcmp(name, want_head) == 0 ||
					 strcmp(name, want_tag) == 0)) {
			set_sha(&w->res, &heads[i]->oid);
			found = 1;
		}
	}
	if (!found)
		rc = co_error_set(&w->res.err, -ENOENT, "git: reference '%s' not found in '%s'",
				  w->ref, w->url);
out:
	git_remote_free(remote);
	free(want_head);
	free(want_tag);
	free(want_peeled);
	return rc;
}

static int do_fetch(struct work *w)
{
	git_repository *repo = NULL;
	git_oid oid;
	int rc;

	rc = open_cache(&repo, w);
	if (rc == 0)
		rc = fetch_into(repo, w);
	if (rc == 0)
		rc = resolve(repo, w, w->ref, &oid);
	if (rc == 0)
		set_sha(&w->res, &oid);
	git_repository_free(repo);
	return rc;
}

static int tree_at(git_repository *repo, struct work *w, const char *sha, const char *path,
		   git_tree **ret)
{
	git_oid oid;
	git_commit *commit = NULL;
	git_tree *root = NULL;
	git_tree_entry *entry = NULL;
	int rc;

	rc = resolve(repo, w, sha, &oid);
	if (rc < 0)
		return rc;
	set_sha(&w->res, &oid);
	if (git_commit_lookup(&commit, repo, &oid) < 0 || git_commit_tree(&root, commit) < 0) {
		rc = git_fail(&w->res, "read commit", sha);
		goto out;
	}
	if (!path || !*path || strcmp(path, ".") == 0 || strcmp(path, "./") == 0) {
		*ret = root;
		root = NULL;
		goto out;
	}
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (git_tree_entry_bypath(&entry, root, path) < 0 ||
	    git_tree_entry_type(entry) != GIT_OBJECT_TREE) {
		rc = co_error_set(&w->res.err, -ENOENT,
				  "git: path '%s' not found at '%.12s' in '%s'", path, sha,
				  w->url);
		goto out;
	}
	if (git_tree_lookup(ret, repo, git_tree_entry_id(entry)) < 0)
		rc = git_fail(&w->res, "read tree", path);
out:
	git_tree_entry_free(entry);
	git_tree_free(root);
	git_commit_free(commit);
	return rc;
}

struct walk_ctx {
	struct work *w;
	git_repository *repo;
	size_t bytes;
	int rc;
};

static int walk_cb(const char *root, const git_tree_entry *entry, void *payload)
{
	struct walk_ctx *ctx = payload;
	struct work *w = ctx->w;
	git_blob *blob = NULL;
	char *rel;
	json_t *s;
	size_t size;

	if (git_tree_entry_type(entry) != GIT_OBJECT_BLOB)
		return 0;
	if (json_object_size(w->res.files) >= w->max_files) {
		ctx->rc = co_error_set(&w->res.err, -E2BIG,
				       "git: more than %zu files under '%s' in '%s'",
				       w->max_files, w->path, w->url);
		return -1;
	}
	if (git_blob_lookup(&blob, ctx->repo, git_tree_entry_id(entry)) < 0) {
		ctx->rc = git_fail(&w->res, "read blob", git_tree_entry_name(entry));
		return -1;
	}
	size = (size_t)git_blob_rawsize(blob);
	ctx->bytes += size;
	if (ctx->bytes > w->max_bytes) {
		git_blob_free(blob);
		ctx->rc = co_error_set(&w->res.err, -E2BIG,
				       "git: more than %zu bytes under '%s' in '%s'",
				       w->max_bytes, w->path, w->url);
		return -1;
	}
	/* Binary files (not UTF-8 text) are not manifests: skipped. */
	s = git_blob_is_binary(blob) ? NULL : json_stringn(git_blob_rawcontent(blob), size);
	if (s) {
		rel = co_asprintf("%s%s", root, git_tree_entry_name(entry));
		json_object_set_new(w->res.files, rel, s);
		free(rel);
	}
	git_blob_free(blob);
	return 0;
}

static int do_read_tree(struct work *w)
{
	git_repository *repo = NULL;
	git_tree *tree = NULL;
	struct walk_ctx ctx = { .w = w };
	int rc;

	rc = open_cache(&repo, w);
	if (rc == 0)
		rc = tree_at(repo, w, w->ref, w->path, &tree);
	if (rc == 0) {
		w->res.files = json_object();
		ctx.repo = repo;
		if (git_tree_walk(tree, GIT_TREEWALK_PRE, walk_cb, &ctx) < 0)
			rc = ctx.rc ? ctx.rc : git_fail(&w->res, "walk tree", w->path);
	}
	git_tree_free(tree);
	git_repository_free(repo);
	return rc;
}

static int do_checkout(struct work *w)
{
	git_checkout_options co = GIT_CHECKOUT_OPTIONS_INIT;
	git_repository *repo = NULL;
	git_tree *tree = NULL;
	int rc;

	rc = open_cache(&repo, w);
	if (rc == 0)
		rc = tree_at(repo, w, w->ref, NULL, &tree);
	if (rc == 0 && co_fs_mkdir_p(w->path, 0755) < 0)
		rc = co_error_set(&w->res.err, -errno, "git checkout: create '%s': %s",
				  w->path, strerror(errno));
	if (rc == 0) {
		co.checkout_strategy = GIT_CHECKOUT_FORCE | GIT_CHECKOUT_REMOVE_UNTRACKED;
		co.target_directory = w->path;
		co.disable_filters = 1;
		if (git_checkout_tree(repo, (git_object *)tree, &co) < 0)
			rc = git_fail(&w->res, "checkout", w->path);
	}
	git_tree_free(tree);
	git_repository_free(repo);
	return rc;
}

/* Build a tree from base (may be NULL) with changes applied. */
static int apply_changes(git_repository *repo, struct work *w, git_tree *base,
			 git_oid *ret_tree)
{
	git_tree_update *ups;
	size_t n = json_object_size(w->changes), i = 0;
	const char *path;
	json_t *v;
	int rc = 0;

	ups = co_calloc(n ? n : 1, sizeof(*ups));
	json_object_foreach(w->changes, path, v) {
		ups[i].path = path;
		if (json_is_null(v)) {
			git_tree_entry *e = NULL;

			/* Removing a missing path is not an error for a declarative change. */
			if (!base || git_tree_entry_bypath(&e, base, path) < 0)
				continue;
			git_tree_entry_free(e);
			ups[i].action = GIT_TREE_UPDATE_REMOVE;
		} else {
			const char *s = json_string_value(v);

			if (!s) {
				rc = co_error_set(&w->res.err, -EINVAL,
						  "git commit: change for '%s' is not a string",
						  path);
				goto out;
			}
			if (git_blob_create_from_buffer(&ups[i].id, repo, s,
							json_string_length(v)) < 0) {
				rc = git_fail(&w->res, "write blob", path);
				goto out;
			}
			ups[i].action = GIT_TREE_UPDATE_UPSERT;
			ups[i].filemode = GIT_FILEMODE_BLOB;
		}
		i++;
	}
	if (!base) {
		/* An empty repository: start from an empty tree. */
		git_treebuilder *tb = NULL;
		git_oid empty;
		git_tree *et = NULL;

		if (git_treebuilder_new(&tb, repo, NULL) < 0 || git_treebuilder_write(&empty, tb) < 0 ||
		    git_tree_lookup(&et, repo, &empty) < 0) {
			git_treebuilder_free(tb);
			rc = git_fail(&w->res, "empty tree", w->url);
			goto out;
		}
		git_treebuilder_free(tb);
		if (git_tree_create_updated(ret_tree, repo, et, i, ups) < 0)
			rc = git_fail(&w->res, "build tree", w->url);
		git_tree_free(et);
		goto out;
	}
	if (git_tree_create_updated(ret_tree, repo, base, i, ups) < 0)
		rc = git_fail(&w->res, "build tree", w->url);
out:
	free(ups);
	return rc;
}

static int push_update_cb(const char *refname, const char *status, void *data)
{
	struct work *w = data;

	if (status) {
		w->push_rejected = 1;
		snprintf(w->push_msg, sizeof(w->push_msg), "%s: %s", refname, status);
	}
	return 0;
}

/*
 * Local remotes (a path or file://): libgit2's local transport moves the remote ref
 * without checking its old value, so two writers can overwrite each other. Do what
 * git's receive-pack does instead: copy the new objects into the remote, then move
 * the branch with a compare-and-swap under the ref's lock file.
 */
static const char *local_remote_path(const char *url)
{
	if (strncmp(url, "file://", 7) == 0)
		return url + 7;
	if (strstr(url, "://") || strchr(url, '@'))
		return NULL;
	return url;
}

static int push_local(git_repository *repo, struct work *w, const char *path,
		      const char *ref, const git_oid *commit, const git_oid *parent,
		      int *ret_retry)
{
	git_repository *remote = NULL;
	git_packbuilder *pb = NULL;
	git_revwalk *walk = NULL;
	git_reference *out = NULL;
	char *pack_dir = NULL;
	int rc = 0, e;

	if (git_repository_open_bare(&remote, path) < 0)
		return git_fail(&w->res, "open remote", w->url);
	pack_dir = co_asprintf("%s/objects/pack", git_repository_path(remote));
	if (git_packbuilder_new(&pb, repo) < 0 || git_revwalk_new(&walk, repo) < 0 ||
	    git_revwalk_push(walk, commit) < 0 ||
	    (parent && git_revwalk_hide(walk, parent) < 0) ||
	    git_packbuilder_insert_walk(pb, walk) < 0 ||
	    git_packbuilder_write(pb, pack_dir, 0, NULL, NULL) < 0) {
		rc = git_fail(&w->res, "push objects", w->url);
		goto out;
	}
	e = parent ? git_reference_create_matching(&out, remote, ref, commit, 1, parent,
						   "cutover: push")
		   : git_reference_create(&out, remote, ref, commit, 0, "cutover: push");
	if (e == GIT_EMODIFIED || e == GIT_EEXISTS || e == GIT_ELOCKED) {
		*ret_retry = 1;
		rc = co_error_set(&w->res.err, -EAGAIN, "git push '%s' to '%s': the remote "
				  "branch moved", w->branch, w->url);
	} else if (e < 0) {
		rc = git_fail(&w->res, "push", w->url);
	}
out:
	git_reference_free(out);
	git_revwalk_free(walk);
	git_packbuilder_free(pb);
	git_repository_free(remote);
	free(pack_dir);
	return rc;
}

static int commit_once(git_repository *repo, struct work *w, int *ret_retry)
{
	char *ref = co_asprintf("refs/heads/%s", w->branch);
	git_reference *head = NULL;
	git_commit *parent = NULL;
	git_tree *base = NULL, *tree = NULL;
	git_signature *sig = NULL;
	git_remote *remote = NULL;
	git_push_options po = GIT_PUSH_OPTIONS_INIT;
	git_oid tree_oid, commit_oid;
	char *spec = NULL;
	git_strarray specs;
	int rc = 0;

	*ret_retry = 0;
	if (git_reference_lookup(&head, repo, ref) == 0) {
		if (git_commit_lookup(&parent, repo, git_reference_target(head)) < 0 ||
		    git_commit_tree(&base, parent) < 0) {
			rc = git_fail(&w->res, "read branch", w->branch);
			goto out;
		}
	}
	rc = apply_changes(repo, w, base, &tree_oid);
	if (rc < 0)
		goto out;
	if (base && git_oid_equal(&tree_oid, git_tree_id(base))) {
		set_sha(&w->res, git_commit_id(parent));
		w->res.changed = 0;
		goto out;
	}
	if (git_tree_lookup(&tree, repo, &tree_oid) < 0 ||
	    git_signature_now(&sig, w->author_name, w->author_email) < 0) {
		rc = git_fail(&w->res, "prepare commit", w->branch);
		goto out;
	}
	if (git_commit_create(&commit_oid, repo, NULL, sig, sig, "UTF-8", w->message, tree,
			      parent ? 1 : 0, (const git_commit **)&parent) < 0) {
		rc = git_fail(&w->res, "commit", w->branch);
		goto out;
	}
	if (local_remote_path(w->url)) {
		w->res.push_attempts++;
		rc = push_local(repo, w, local_remote_path(w->url), ref, &commit_oid,
				parent ? git_commit_id(parent) : NULL, ret_retry);
		if (rc == 0) {
			set_sha(&w->res, &commit_oid);
			w->res.changed = 1;
		}
		goto out;
	}
	/* A local ref to push from; the next fetch resets it to the remote's view. */
	git_reference_free(head);
	head = NULL;
	if (git_reference_create(&head, repo, "refs/cutover/push", &commit_oid, 1, NULL) < 0) {
		rc = git_fail(&w->res, "update ref", w->branch);
		goto out;
	}
	if (git_remote_create_anonymous(&remote, repo, w->url) < 0) {
		rc = git_fail(&w->res, "remote", w->url);
		goto out;
	}
	init_callbacks(&po.callbacks, w);
	po.callbacks.push_update_reference = push_update_cb;
	w->push_rejected = 0;
	spec = co_asprintf("refs/cutover/push:%s", ref);
	specs.strings = &spec;
	specs.count = 1;
	w->res.push_attempts++;
	rc = git_remote_push(remote, &specs, &po);
	if (rc == GIT_ENONFASTFORWARD || rc == GIT_EMISMATCH || w->push_rejected) {
		*ret_retry = 1;
		rc = co_error_set(&w->res.err, -EAGAIN, "git push '%s' to '%s': %s", w->branch,
				  w->url, w->push_rejected ? w->push_msg : "non-fast-forward");
		goto out;
	}
	if (rc < 0) {
		const git_error *e = git_error_last();

		/* libgit2 reports a remote that moved as a generic error on some
		 * transports: recognise it by message and retry. */
		if (e && e->message && (strstr(e->message, "fast-forward") ||
					strstr(e->message, "fast forward")))
			*ret_retry = 1;
		rc = git_fail(&w->res, "push", w->url);
		if (*ret_retry)
			rc = -EAGAIN;
		goto out;
	}
	set_sha(&w->res, &commit_oid);
	w->res.changed = 1;
out:
	free(spec);
	git_remote_free(remote);
	git_signature_free(sig);
	git_tree_free(tree);
	git_tree_free(base);
	git_commit_free(parent);
	git_reference_free(head);
	free(ref);
	return rc;
}

static int do_commit_push(struct work *w)
{
	git_repository *repo = NULL;
	int rc, retry = 0;

	rc = open_cache(&repo, w);
	for (int attempt = 0; rc == 0 && attempt < 5; attempt++) {
		rc = fetch_into(repo, w);
		if (rc < 0)
			break;
		rc = commit_once(repo, w, &retry);
		if (rc == 0 || !retry)
			break;
		co_error_clear(&w->res.err);
		rc = 0;
		usleep((useconds_t)(20000 * (attempt + 1)));
		if (attempt == 4)
			rc = co_error_set(&w->res.err, -EAGAIN,
					  "git push '%s' to '%s': remote kept moving after %d "
					  "attempts", w->branch, w->url, attempt + 1);
	}
	git_repository_free(repo);
	return rc;
}

static void work_cb(uv_work_t *req)
{
	struct work *w = req->data;
	int rc = 0;

	switch (w->op) {
	case OP_LS_REMOTE:
		rc = do_ls_remote(w);
		break;
	case OP_FETCH:
		rc = do_fetch(w);
		break;
	case OP_READ_TREE:
		rc = do_read_tree(w);
		break;
	case OP_CHECKOUT:
		rc = do_checkout(w);
		break;
	case OP_COMMIT_PUSH:
		rc = do_commit_push(w);
		break;
	}
	w->res.status = rc;
	if (rc < 0) {
		/* A failed read delivers no partial file map. */
		json_decref(w->res.files);
		w->res.files = NULL;
	}
	if (rc < 0 && !w->res.err.msg[0])
		co_error_set(&w->res.err, rc, "git: %s", strerror(-rc));
}

static void work_free(struct work *w)
{
	free(w->url);
	free(w->cache_dir);
	free(w->token);
	free(w->ssh_key);
	free(w->ref);
	free(w->path);
	free(w->branch);
	free(w->message);
	free(w->author_name);
	free(w->author_email);
	json_decref(w->changes);
	json_decref(w->res.files);
	free(w);
}

static void after_cb(uv_work_t *req, int status)
{
	struct work *w = req->data;

	if (status == UV_ECANCELED) {
		w->res.status = -ECANCELED;
		co_error_set(&w->res.err, -ECANCELED, "git: cancelled");
	}
	w->cb(&w->res, w->data);
	work_free(w);
}

static struct work *work_new(enum op op, const struct co_git_opts *opts, co_git_cb cb,
			     void *data)
{
	struct work *w = co_calloc(1, sizeof(*w));
	const char *tok = opts->token_env ? getenv(opts->token_env) : NULL;

	w->op = op;
	w->url = co_strdup(opts->url);
	w->cache_dir = opts->cache_dir ? co_strdup(opts->cache_dir) : NULL;
	w->token = tok && *tok ? co_strdup(tok) : NULL;
	w->ssh_key = opts->ssh_key ? co_strdup(opts->ssh_key) : NULL;
	w->cb = cb;
	w->data = data;
	w->req.data = w;
	return w;
}

static int submit(uv_loop_t *loop, struct work *w, struct co_error *err)
{
	int rc = uv_queue_work(loop, &w->req, work_cb, after_cb);

	if (rc < 0) {
		co_error_set(err, rc, "git: queue work: %s", uv_strerror(rc));
		work_free(w);
	}
	return rc;
}

static int check_opts(const struct co_git_opts *opts, int need_cache, struct co_error *err)
{
	if (!opts || !opts->url || !*opts->url)
		return co_error_set(err, -EINVAL, "git: no repository url");
	if (need_cache && (!opts->cache_dir || !*opts->cache_dir))
		return co_error_set(err, -EINVAL, "git: no cache directory for '%s'",
				    opts->url);
	return 0;
}

int co_git_ls_remote(uv_loop_t *loop, const struct co_git_opts *opts, const char *ref,
		     co_git_cb cb, void *data, struct co_error *err)
{
	struct work *w;
	int rc = check_opts(opts, 0, err);

	if (rc < 0)
		return rc;
	w = work_new(OP_LS_REMOTE, opts, cb, data);
	w->ref = co_strdup(ref ? ref : "main");
	return submit(loop, w, err);
}

int co_git_fetch(uv_loop_t *loop, const struct co_git_opts *opts, const char *ref,
		 co_git_cb cb, void *data, struct co_error *err)
{
	struct work *w;
	int rc = check_opts(opts, 1, err);

	if (rc < 0)
		return rc;
	w = work_new(OP_FETCH, opts, cb, data);
	w->ref = co_strdup(ref ? ref : "main");
	return submit(loop, w, err);
}

int co_git_read_tree(uv_loop_t *loop, const struct co_git_opts *opts, const char *sha,
		     const char *path, size_t max_files, size_t max_bytes, co_git_cb cb,
		     void *data, struct co_error *err)
{
	struct work *w;
	int rc = check_opts(opts, 1, err);

	if (rc < 0)
		return rc;
	if (!sha || !*sha)
		return co_error_set(err, -EINVAL, "git: no revision to read in '%s'", opts->url);
	w = work_new(OP_READ_TREE, opts, cb, data);
	w->ref = co_strdup(sha);
	w->path = co_strdup(path ? path : "");
	w->max_files = max_files ? max_files : 10000;
	w->max_bytes = max_bytes ? max_bytes : 64u << 20;
	return submit(loop, w, err);
}

int co_git_checkout(uv_loop_t *loop, const struct co_git_opts *opts, const char *sha,
		    const char *dir, co_git_cb cb, void *data, struct co_error *err)
{
	struct work *w;
	int rc = check_opts(opts, 1, err);

	if (rc < 0)
		return rc;
	if (!sha || !*sha || !dir || !*dir)
		return co_error_set(err, -EINVAL, "git checkout: revision and directory needed");
	w = work_new(OP_CHECKOUT, opts, cb, data);
	w->ref = co_strdup(sha);
	w->path = co_strdup(dir);
	return submit(loop, w, err);
}

int co_git_commit_push(uv_loop_t *loop, const struct co_git_opts *opts,
		       const struct co_git_commit *commit, co_git_cb cb, void *data,
		       struct co_error *err)
{
	struct work *w;
	int rc = check_opts(opts, 1, err);

	if (rc < 0)
		return rc;
	if (!commit || !commit->branch || !commit->message || !json_is_object(commit->changes))
		return co_error_set(err, -EINVAL,
				    "git commit: branch, message and changes needed");
	w = work_new(OP_COMMIT_PUSH, opts, cb, data);
	w->branch = co_strdup(commit->branch);
	w->message = co_strdup(commit->message);
	w->author_name = co_strdup(commit->author_name ? commit->author_name : "cutover");
	w->author_email =
		co_strdup(commit->author_email ? commit->author_email : "cutover@localhost");
	w->changes = json_deep_copy(commit->changes);
	return submit(loop, w, err);
}

void co_git_global_init(void)
{
	static int done;

	if (!done) {
		git_libgit2_init();
		done = 1;
	}
}
