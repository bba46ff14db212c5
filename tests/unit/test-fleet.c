/*
 * Tests for seeding the embedded default's repositories: fleet.git holds clusters/,
 * operators/ and tenants/ of the source tree on branch main (executable checks keep
 * their mode), each sample tenant gets its own repo, a second seed changes nothing,
 * and a failed seed leaves no repository behind to be mistaken for a good one.
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
#include "engine/fleet.h"

static char *sh_out(const char *fmt, ...)
{
	struct co_buf cmd = CO_BUF_INIT, out = CO_BUF_INIT;
	char chunk[4096];
	va_list ap;
	FILE *p;
	size_t n;

	va_start(ap, fmt);
	co_buf_vprintf(&cmd, fmt, ap);
	va_end(ap);
	p = popen(co_buf_cstr(&cmd), "r");
	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		co_buf_append(&out, chunk, n);
	assert_int_equal(pclose(p), 0);
	co_buf_release(&cmd);
	co_buf_puts(&out, "");
	return co_buf_detach(&out, NULL);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/co-fleet-XXXXXX";

	assert_non_null(mkdtemp(tmpl));
	return co_strdup(tmpl);
}

static void test_seed_fleet_and_tenants(void **state)
{
	char *dir = tmpdir();
	struct co_error err = CO_ERROR_INIT;
	char *files, *mode, *head, *head2, *url;
	int rc;

	(void)state;
	rc = co_fleet_seed(dir, CO_SOURCE_ROOT, &err);
	assert_true(rc >= 2); /* fleet + tenant-core at least */

	files = sh_out("git --git-dir=%s/repos/fleet.git ls-tree -r --name-only main",
		       dir);
	assert_non_null(strstr(files, "clusters/staging/northeurope/operations.yaml\n"));
	assert_non_null(strstr(files, "clusters/production/westeurope/tenants.yaml\n"));
	assert_non_null(strstr(files, "operators/kustomization.yaml\n"));
	assert_non_null(strstr(files, "tenants/base/core/sync.yaml\n"));
	assert_null(strstr(files, "runner/"));
	assert_null(strstr(files, "README.md\nrunner"));
	mode = sh_out("git --git-dir=%s/repos/fleet.git ls-tree -r main "
		      "clusters/staging/northeurope/checks/",
		      dir);
	assert_non_null(strstr(mode, "100755"));

	free(files);
	files = sh_out(
		"git --git-dir=%s/repos/tenant-core.git ls-tree -r --name-only main",
		dir);
	assert_non_null(strstr(files, "deploy/base/deployment.yaml\n"));
	assert_non_null(strstr(files, "deploy/staging/kustomization.yaml\n"));
	head = sh_out("git --git-dir=%s/repos/fleet.git rev-parse main", dir);

	/* a second seed leaves everything alone */
	assert_int_equal(co_fleet_seed(dir, CO_SOURCE_ROOT, &err), 0);
	head2 = sh_out("git --git-dir=%s/repos/fleet.git rev-parse main", dir);
	assert_string_equal(head, head2);

	/* the repos are clonable where Flux and kubesim reach them */
	url = co_fleet_repo_url(dir, "tenant-core");
	assert_true(strncmp(url, "file:///", 8) == 0);
	free(sh_out(
		"git clone -q %s %s/clone && test -f %s/clone/deploy/base/canary.yaml",
		url, dir, dir));

	free(sh_out("rm -rf %s", dir));
	free(files);
	free(mode);
	free(head);
	free(head2);
	free(url);
	free(dir);
}

static void test_seed_failure_leaves_nothing(void **state)
{
	char *dir = tmpdir();
	char *bare = co_asprintf("%s/repos/x.git", dir);
	char *src = co_asprintf("%s/empty", dir);
	static const char *const subdirs[] = {"clusters", NULL};
	struct co_error err = CO_ERROR_INIT;
	char *left;

	(void)state;
	free(sh_out("mkdir -p %s", src));
	assert_true(co_fleet_seed_repo(bare, src, subdirs, &err) < 0);
	assert_non_null(strstr(err.msg, "empty"));
	assert_int_equal(access(bare, F_OK), -1);
	left = sh_out("ls %s/repos", dir);
	assert_string_equal(left, "");
	free(left);

	/* an existing path is never touched */
	free(sh_out("mkdir -p %s && touch %s/marker", bare, bare));
	assert_int_equal(co_fleet_seed_repo(bare, CO_SOURCE_ROOT, NULL, &err), 0);
	assert_int_equal(access(bare, F_OK), 0);
	free(sh_out("test -f %s/marker && rm -rf %s", bare, dir));
	free(bare);
	free(src);
	free(dir);
}

static void test_relative_state_dir_gives_absolute_urls(void **state)
{
	char *url = co_fleet_repo_url("rel/state", "fleet");
	char *dir = co_fleet_repos_dir("/abs/state");

	(void)state;
	assert_true(strncmp(url, "file:///", 8) == 0);
	assert_non_null(strstr(url, "/rel/state/repos/fleet.git"));
	assert_string_equal(dir, "/abs/state/repos");
	free(url);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_fleet_and_tenants),
		cmocka_unit_test(test_seed_failure_leaves_nothing),
		cmocka_unit_test(test_relative_state_dir_gives_absolute_urls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
