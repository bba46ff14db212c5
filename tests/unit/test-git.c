/*
 * Tests for the git client against real repositories made with the git CLI: ls-remote,
 * fetch and resolve, read a tree, checkout, commit and push (add, change, delete,
 * no-op), and concurrent pushers racing on one branch (non-fast-forward retries, no
 * lost update).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "clients/git.h"

struct fixture {
	char dir[64];
	char *bare;
	char *work;
	char *head;
};

static void sh(const char *fmt, ...)
{
	struct co_buf cmd = CO_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(&cmd, fmt, ap);
	va_end(ap);
	assert_int_equal(system(co_buf_cstr(&cmd)), 0);
	co_buf_release(&cmd);
}

static char *sh_out(const char *cmd)
{
	struct co_buf out = CO_BUF_INIT;
	char chunk[256];
	FILE *p = popen(cmd, "r");
	size_t n;

	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		co_buf_append(&out, chunk, n);
	pclose(p);
	while (out.len && (out.data[out.len - 1] == '\n'))
		out.data[--out.len] = '\0';
	return co_buf_detach(&out, NULL);
}

static int setup(void **state)
{
	struct fixture *f = co_calloc(1, sizeof(*f));
	char *cmd;

	strcpy(f->dir, "/tmp/co-git-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->bare = co_asprintf("%s/fleet.git", f->dir);
	f->work = co_asprintf("%s/work", f->dir);
	sh("git init -q --bare -b main %s && git init -q -b main %s", f->bare, f->work);
	sh("cd %s && git config user.email t@t && git config user.name t && "
	   "mkdir -p clusters/staging/northeurope && "
	   "printf 'apiVersion: v1\\nkind: Namespace\\nmetadata:\\n  name: core\\n' > "
	   "clusters/staging/northeurope/ns.yaml && echo readme > README.md && "
	   "git add -A && git commit -qm init && git tag v1 && git tag -a v1a -m annotated && "
	   "git push -q %s main --tags", f->work, f->bare);
	cmd = co_asprintf("git -C %s rev-parse HEAD", f->work);
	f->head = sh_out(cmd);
	free(cmd);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sh("rm -rf %s", f->dir);
	free(f->bare);
	free(f->work);
	free(f->head);
	free(f);
	return 0;
}

struct got {
	int calls;
	int status;
	char sha[41];
	json_t *files;
	int changed;
	int attempts;
	char msg[512];
};

static void got_cb(struct co_git_result *res, void *data)
{
	struct got *g = data;

	g->calls++;
	g->status = res->status;
	memcpy(g->sha, res->sha, sizeof(g->sha));
	g->changed = res->changed;
	g->attempts = res->push_attempts;
	snprintf(g->msg, sizeof(g->msg), "%s", res->err.msg);
	if (res->files)
		g->files = json_incref(res->files);
}

static void run(uv_loop_t *loop)
{
	uv_run(loop, UV_RUN_DEFAULT);
}

static void test_ls_remote_and_fetch(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *cache = co_asprintf("%s/cache", f->dir);
	struct co_git_opts o = { .url = f->bare, .cache_dir = cache };
	struct got g = { 0 }, t = { 0 }, a = { 0 }, missing = { 0 };

	uv_loop_init(&loop);
	assert_int_equal(co_git_ls_remote(&loop, &o, "main", got_cb, &g, NULL), 0);
	assert_int_equal(co_git_ls_remote(&loop, &o, "v1a", got_cb, &a, NULL), 0);
	assert_int_equal(co_git_ls_remote(&loop, &o, "nope", got_cb, &missing, NULL), 0);
	run(&loop);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.sha, f->head);
	assert_string_equal(a.sha, f->head); /* annotated tag peeled to its commit */
	assert_int_equal(missing.status, -ENOENT);
	assert_non_null(strstr(missing.msg, "'nope'"));

	memset(&g, 0, sizeof(g));
	assert_int_equal(co_git_fetch(&loop, &o, "main", got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(g.status, 0);
	assert_string_equal(g.sha, f->head);
	assert_int_equal(co_git_fetch(&loop, &o, "v1", got_cb, &t, NULL), 0);
	run(&loop);
	assert_string_equal(t.sha, f->head);
	memset(&t, 0, sizeof(t));
	assert_int_equal(co_git_fetch(&loop, &o, f->head, got_cb, &t, NULL), 0);
	run(&loop);
	assert_int_equal(t.status, 0);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(cache);
}

static void test_bad_url(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *cache = co_asprintf("%s/cache-bad", f->dir);
	struct co_git_opts o = { .url = "/nonexistent/repo.git", .cache_dir = cache };
	struct co_git_opts none = { .url = "" };
	struct co_error err = CO_ERROR_INIT;
	struct got g = { 0 };

	uv_loop_init(&loop);
	assert_int_equal(co_git_fetch(&loop, &none, "main", got_cb, &g, &err), -EINVAL);
	assert_int_equal(co_git_fetch(&loop, &o, "main", got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(g.calls, 1);
	assert_true(g.status < 0);
	assert_non_null(strstr(g.msg, "/nonexistent/repo.git"));
	assert_int_equal(uv_loop_close(&loop), 0);
	free(cache);
}

static void test_read_tree_and_checkout(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *cache = co_asprintf("%s/cache-rt", f->dir);
	char *out = co_asprintf("%s/checkout", f->dir);
	char *path;
	struct co_git_opts o = { .url = f->bare, .cache_dir = cache };
	struct got g = { 0 }, r = { 0 }, c = { 0 }, bad = { 0 };

	uv_loop_init(&loop);
	assert_int_equal(co_git_fetch(&loop, &o, "main", got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(co_git_read_tree(&loop, &o, g.sha, "clusters/staging", 0, 0, got_cb,
					  &r, NULL), 0);
	assert_int_equal(co_git_read_tree(&loop, &o, g.sha, "no/such", 0, 0, got_cb, &bad,
					  NULL), 0);
	assert_int_equal(co_git_checkout(&loop, &o, g.sha, out, got_cb, &c, NULL), 0);
	run(&loop);
	assert_int_equal(r.status, 0);
	assert_int_equal(json_object_size(r.files), 1);
	assert_non_null(strstr(json_string_value(json_object_get(r.files,
								  "northeurope/ns.yaml")),
			       "kind: Namespace"));
	assert_int_equal(bad.status, -ENOENT);
	assert_int_equal(c.status, 0);
	path = co_asprintf("%s/clusters/staging/northeurope/ns.yaml", out);
	assert_int_equal(access(path, R_OK), 0);
	json_decref(r.files);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(path);
	free(cache);
	free(out);
}

static void test_read_tree_limits(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *cache = co_asprintf("%s/cache-lim", f->dir);
	struct co_git_opts o = { .url = f->bare, .cache_dir = cache };
	struct got g = { 0 }, r = { 0 };

	uv_loop_init(&loop);
	assert_int_equal(co_git_fetch(&loop, &o, "main", got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(co_git_read_tree(&loop, &o, g.sha, "", 1, 0, got_cb, &r, NULL), 0);
	run(&loop);
	assert_int_equal(r.status, -E2BIG);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(cache);
}

static void test_commit_push(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *cache = co_asprintf("%s/cache-cp", f->dir);
	struct co_git_opts o = { .url = f->bare, .cache_dir = cache };
	json_t *changes = json_pack("{s:s, s:n}", "clusters/staging/northeurope/flux-system/"
						  "gotk-sync.yaml", "kind: Kustomization\n",
				    "README.md");
	struct co_git_commit c = { .branch = "main", .message = "bootstrap cluster1",
				   .changes = changes };
	struct got g = { 0 }, again = { 0 };
	char *cmd, *log, *tree;

	uv_loop_init(&loop);
	assert_int_equal(co_git_commit_push(&loop, &o, &c, got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.changed, 1);
	cmd = co_asprintf("git -C %s log -1 --format='%%H %%an %%s' main", f->bare);
	log = sh_out(cmd);
	free(cmd);
	assert_non_null(strstr(log, g.sha));
	assert_non_null(strstr(log, "cutover bootstrap cluster1"));
	cmd = co_asprintf("git -C %s ls-tree -r --name-only main", f->bare);
	tree = sh_out(cmd);
	free(cmd);
	assert_non_null(strstr(tree, "flux-system/gotk-sync.yaml"));
	assert_null(strstr(tree, "README.md"));
	assert_non_null(strstr(tree, "ns.yaml"));

	/* The same change again is a no-op: no new commit. */
	assert_int_equal(co_git_commit_push(&loop, &o, &c, got_cb, &again, NULL), 0);
	run(&loop);
	assert_int_equal(again.status, 0);
	assert_int_equal(again.changed, 0);
	assert_string_equal(again.sha, g.sha);
	json_decref(changes);
	free(log);
	free(tree);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(cache);
}

static void test_empty_remote(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	char *bare = co_asprintf("%s/empty.git", f->dir);
	char *cache = co_asprintf("%s/cache-empty", f->dir);
	struct co_git_opts o = { .url = bare, .cache_dir = cache };
	json_t *changes = json_pack("{s:s}", "tenants/core/kustomization.yaml", "resources: []\n");
	struct co_git_commit c = { .branch = "main", .message = "first", .changes = changes };
	struct got g = { 0 };

	sh("git init -q --bare -b main %s", bare);
	uv_loop_init(&loop);
	assert_int_equal(co_git_commit_push(&loop, &o, &c, got_cb, &g, NULL), 0);
	run(&loop);
	assert_int_equal(g.status, 0);
	assert_int_equal(g.changed, 1);
	json_decref(changes);
	assert_int_equal(uv_loop_close(&loop), 0);
	free(bare);
	free(cache);
}

#define RACERS 4

static void test_concurrent_pushers(void **state)
{
	struct fixture *f = *state;
	uv_loop_t loop;
	struct got g[RACERS] = { { 0 } };
	char *caches[RACERS];
	json_t *changes[RACERS];
	char *cmd, *tree;
	int attempts = 0;

	uv_loop_init(&loop);
	for (int i = 0; i < RACERS; i++) {
		char file[64];
		struct co_git_opts o = { .url = f->bare };
		struct co_git_commit c = { .branch = "main", .message = "racer" };

		caches[i] = co_asprintf("%s/cache-race-%d", f->dir, i);
		o.cache_dir = caches[i];
		snprintf(file, sizeof(file), "tenants/t%d.yaml", i);
		changes[i] = json_pack("{s:s}", file, "x: 1\n");
		c.changes = changes[i];
		assert_int_equal(co_git_commit_push(&loop, &o, &c, got_cb, &g[i], NULL), 0);
	}
	run(&loop);
	for (int i = 0; i < RACERS; i++) {
		assert_int_equal(g[i].calls, 1);
		assert_int_equal(g[i].status, 0);
		attempts += g[i].attempts;
		json_decref(changes[i]);
		free(caches[i]);
	}
	assert_true(attempts >= RACERS);
	cmd = co_asprintf("git -C %s ls-tree -r --name-only main", f->bare);
	tree = sh_out(cmd);
	free(cmd);
	/* No lost update: every racer's file is on the branch. */
	for (int i = 0; i < RACERS; i++) {
		char file[64];

		snprintf(file, sizeof(file), "tenants/t%d.yaml", i);
		assert_non_null(strstr(tree, file));
	}
	free(tree);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ls_remote_and_fetch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_url, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_tree_and_checkout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_tree_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_push, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_remote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_pushers, setup, teardown),
	};

	co_git_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
