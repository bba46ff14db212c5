/*
 * Seeding the embedded default's repositories, see fleet.h.
 *
 * The tree is built bottom-up with libgit2 tree builders straight from the source
 * directory (no work tree, no index): each regular file becomes a blob, each
 * directory a subtree, executables keep their mode (the checks/ folder holds
 * scripts). The repository is first built under a temporary name and renamed into
 * place, so a crash never leaves a half-seeded repository that would then be taken as
 * existing.
 */
#include "engine/fleet.h"
#include "base/buf.h"
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 32

static int git_fail(struct co_error *err, const char *what, const char *path)
{
	const git_error *e = git_error_last();

	return co_error_set(err, -EIO, "seed '%s': %s: %s", path, what,
			    e && e->message ? e->message : "libgit2 error");
}

/* Write dir as a tree into repo; *ret_empty when nothing was added. */
static int build_tree(git_repository *repo, const char *dir, int depth, git_oid *ret,
		      int *ret_empty, struct co_error *err)
{
	git_treebuilder *tb = NULL;
	char **names = NULL;
	size_t n = 0;
	int rc = 0, added = 0;

	if (depth > MAX_DEPTH)
		return co_error_set(err, -ELOOP, "seed '%s': directories nested too deep",
				    dir);
	rc = co_fs_list_dir(dir, &names, &n, err);
	if (rc < 0) {
		co_error_prefix(err, "seed");
		return rc;
	}
	if (git_treebuilder_new(&tb, repo, NULL) < 0) {
		rc = git_fail(err, "tree builder", dir);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char *path = co_asprintf("%s/%s", dir, names[i]);
		struct stat st;
		git_oid oid;
		int empty = 0;

		if (lstat(path, &st) < 0) {
			rc = co_error_set(err, -errno, "seed: stat '%s': %s", path,
					  strerror(errno));
			free(path);
			goto out;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = build_tree(repo, path, depth + 1, &oid, &empty, err);
			if (rc == 0 && !empty &&
			    git_treebuilder_insert(NULL, tb, names[i], &oid,
						   GIT_FILEMODE_TREE) < 0)
				rc = git_fail(err, "insert tree", path);
		} else if (S_ISREG(st.st_mode)) {
			if (git_blob_create_from_disk(&oid, repo, path) < 0)
				rc = git_fail(err, "write blob", path);
			else if (git_treebuilder_insert(
					 NULL, tb, names[i], &oid,
					 (st.st_mode & 0111)
						 ? GIT_FILEMODE_BLOB_EXECUTABLE
						 : GIT_FILEMODE_BLOB) < 0)
				rc = git_fail(err, "insert blob", path);
			empty = rc < 0;
		} else {
			empty = 1; /* symlinks, sockets: not part of a fleet repo */
		}
		free(path);
		if (rc < 0)
			goto out;
		if (!empty)
			added++;
	}
	if (added && git_treebuilder_write(ret, tb) < 0)
		rc = git_fail(err, "write tree", dir);
	*ret_empty = !added;
out:
	git_treebuilder_free(tb);
	co_fs_names_free(names);
	return rc;
}

static int seed_into(git_repository *repo, const char *src_dir,
		     const char *const *subdirs, struct co_error *err)
{
	git_treebuilder *root = NULL;
	git_oid tree_oid, commit_oid;
	git_tree *tree = NULL;
	git_signature *sig = NULL;
	int rc = 0, empty = 0;

	if (!subdirs) {
		rc = build_tree(repo, src_dir, 0, &tree_oid, &empty, err);
		if (rc < 0)
			return rc;
		if (empty)
			return co_error_set(err, -ENOENT, "seed: '%s' holds no files",
					    src_dir);
	} else {
		if (git_treebuilder_new(&root, repo, NULL) < 0)
			return git_fail(err, "tree builder", src_dir);
		for (const char *const *s = subdirs; *s; s++) {
			char *path = co_asprintf("%s/%s", src_dir, *s);
			git_oid oid;

			rc = build_tree(repo, path, 1, &oid, &empty, err);
			if (rc == 0 && !empty &&
			    git_treebuilder_insert(NULL, root, *s, &oid,
						   GIT_FILEMODE_TREE) < 0)
				rc = git_fail(err, "insert tree", path);
			free(path);
			if (rc < 0)
				goto out;
		}
		if (git_treebuilder_entrycount(root) == 0) {
			rc = co_error_set(err, -ENOENT,
					  "seed: '%s' holds none of the folders",
					  src_dir);
			goto out;
		}
		if (git_treebuilder_write(&tree_oid, root) < 0) {
			rc = git_fail(err, "write tree", src_dir);
			goto out;
		}
	}
	if (git_tree_lookup(&tree, repo, &tree_oid) < 0 ||
	    git_signature_now(&sig, "cutover", "cutover@localhost") < 0 ||
	    git_commit_create(&commit_oid, repo, "refs/heads/main", sig, sig, NULL,
			      "Seed the repository from the cutover source tree\n", tree,
			      0, NULL) < 0 ||
	    git_repository_set_head(repo, "refs/heads/main") < 0)
		rc = git_fail(err, "commit", src_dir);
out:
	git_signature_free(sig);
	git_tree_free(tree);
	git_treebuilder_free(root);
	return rc;
}

static int rm_rf(const char *path, int depth)
{
	DIR *d;
	struct dirent *de;
	struct stat st;

	if (lstat(path, &st) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode) && depth < 64) {
		d = opendir(path);
		if (d) {
			while ((de = readdir(d))) {
				char *p;

				if (strcmp(de->d_name, ".") == 0 ||
				    strcmp(de->d_name, "..") == 0)
					continue;
				p = co_asprintf("%s/%s", path, de->d_name);
				rm_rf(p, depth + 1);
				free(p);
			}
			closedir(d);
		}
		return rmdir(path) < 0 ? -errno : 0;
	}
	return unlink(path) < 0 ? -errno : 0;
}

int co_fleet_seed_repo(const char *bare_path, const char *src_dir,
		       const char *const *subdirs, struct co_error *err)
{
	git_repository *repo = NULL;
	char *tmp;
	int rc;

	if (access(bare_path, F_OK) == 0)
		return 0;
	rc = co_fs_mkdir_parent(bare_path, 0755);
	if (rc < 0)
		return co_error_set(err, rc, "seed '%s': %s", bare_path, strerror(-rc));
	git_libgit2_init();
	tmp = co_asprintf("%s.seeding-%ld", bare_path, (long)getpid());
	rm_rf(tmp, 0);
	if (git_repository_init(&repo, tmp, 1) < 0) {
		rc = git_fail(err, "init", tmp);
		goto out;
	}
	rc = seed_into(repo, src_dir, subdirs, err);
	git_repository_free(repo);
	repo = NULL;
	if (rc < 0)
		goto out;
	if (rename(tmp, bare_path) < 0) {
		rc = co_error_set(err, -errno, "seed: rename to '%s': %s", bare_path,
				  strerror(errno));
		goto out;
	}
	rc = 1;
out:
	if (rc < 0)
		rm_rf(tmp, 0);
	free(tmp);
	git_libgit2_shutdown();
	return rc;
}

char *co_fleet_repos_dir(const char *state_dir)
{
	char abs[PATH_MAX];

	if (state_dir[0] != '/' && getcwd(abs, sizeof(abs)))
		return co_asprintf("%s/%s/repos", abs, state_dir);
	return co_asprintf("%s/repos", state_dir);
}

char *co_fleet_repo_url(const char *state_dir, const char *name)
{
	char *dir = co_fleet_repos_dir(state_dir);
	char *url = co_asprintf("file://%s/%s.git", dir, name);

	free(dir);
	return url;
}

int co_fleet_seed(const char *state_dir, const char *source_root, struct co_error *err)
{
	static const char *const fleet_dirs[] = {"clusters", "operators", "tenants",
						 NULL};
	char *repos = co_fleet_repos_dir(state_dir);
	char *path = co_asprintf("%s/fleet.git", repos);
	char *tenants = co_asprintf("%s/tenants/repos", source_root);
	DIR *d = NULL;
	struct dirent *de;
	int rc, created = 0;

	rc = co_fleet_seed_repo(path, source_root, fleet_dirs, err);
	if (rc < 0)
		goto out;
	created += rc;
	d = opendir(tenants);
	if (!d) {
		rc = co_error_set(err, -errno, "seed: open '%s': %s", tenants,
				  strerror(errno));
		goto out;
	}
	while ((de = readdir(d))) {
		char *src, *bare;
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		src = co_asprintf("%s/%s", tenants, de->d_name);
		bare = co_asprintf("%s/tenant-%s.git", repos, de->d_name);
		rc = 0;
		if (stat(src, &st) == 0 && S_ISDIR(st.st_mode))
			rc = co_fleet_seed_repo(bare, src, NULL, err);
		free(src);
		free(bare);
		if (rc < 0)
			goto out;
		created += rc;
	}
	rc = created;
out:
	if (d)
		closedir(d);
	free(repos);
	free(path);
	free(tenants);
	return rc;
}

const char *co_fleet_default_source(void)
{
	const char *env = getenv("CUTOVER_FLEET_SOURCE");
	char *probe;
	int ok;

	if (env && *env)
		return env;
#ifdef CO_SOURCE_ROOT
	probe = co_asprintf("%s/clusters", CO_SOURCE_ROOT);
	ok = access(probe, F_OK) == 0;
	free(probe);
	if (ok)
		return CO_SOURCE_ROOT;
#else
	(void)probe;
	(void)ok;
#endif
	return ".";
}
