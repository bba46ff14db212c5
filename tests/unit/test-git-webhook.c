/*
 * Git webhooks: HMAC signatures in the forms GitHub, Gitea and GitLab send, payload
 * parsing, and repository URL matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "clients/git-webhook.h"

static const char BODY[] =
	"{\"ref\":\"refs/heads/main\",\"after\":\"0123456789abcdef0123456789abcdef01234567\","
	"\"repository\":{\"clone_url\":\"https://git.example.com/team/tenant-core.git\","
	"\"ssh_url\":\"git@git.example.com:team/tenant-core.git\"}}";
/* HMAC-SHA256 of BODY with key "s3cret-hook-key", computed independently with
 * Python's hmac module: hmac.new(key, body, hashlib.sha256).hexdigest(). */
static const char SIG[] = "bb60e8cf47498e6b24932c4398432f7eb84ad14bbec011a98049a38bea0908ca";

struct hdr {
	const char *name;
	const char *value;
};

static const char *lookup(const char *name, void *data)
{
	for (struct hdr *h = data; h->name; h++)
		if (strcasecmp(h->name, name) == 0)
			return h->value;
	return NULL;
}

static void test_verify(void **state)
{
	struct co_error err = CO_ERROR_INIT;
	char github[80], bad[80];
	struct hdr gh[] = { { "x-hub-signature-256", github }, { NULL, NULL } };
	struct hdr gitea[] = { { "X-Gitea-Signature", SIG }, { NULL, NULL } };
	struct hdr gitlab[] = { { "X-Gitlab-Token", "s3cret-hook-key" }, { NULL, NULL } };
	struct hdr gitlab_bad[] = { { "X-Gitlab-Token", "s3cret-hook-kex" }, { NULL, NULL } };
	struct hdr wrong[] = { { "X-Hub-Signature-256", bad }, { NULL, NULL } };
	struct hdr malformed[] = { { "X-Hub-Signature-256", "sha1=abc" }, { NULL, NULL } };
	struct hdr none[] = { { NULL, NULL } };
	size_t len = strlen(BODY);

	snprintf(github, sizeof(github), "sha256=%s", SIG);
	snprintf(bad, sizeof(bad), "sha256=%s", SIG);
	bad[7] = bad[7] == 'b' ? 'c' : 'b';
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, gh, &err), 0);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, gitea, &err),
			 0);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, gitlab,
					       &err), 0);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, gitlab_bad,
					       &err), -EACCES);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, wrong, &err),
			 -EACCES);
	assert_string_equal(err.msg, "webhook signature does not match");
	/* One byte of the body changed: the signature no longer matches. */
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len - 1, lookup, gh,
					       &err), -EACCES);
	assert_int_equal(co_git_webhook_verify("other-key", BODY, len, lookup, gh, &err),
			 -EACCES);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, malformed,
					       &err), -EINVAL);
	assert_int_equal(co_git_webhook_verify("s3cret-hook-key", BODY, len, lookup, none, &err),
			 -EACCES);
	assert_non_null(strstr(err.msg, "no signature"));
	/* No secret configured: everything passes. */
	assert_int_equal(co_git_webhook_verify(NULL, BODY, len, lookup, none, &err), 0);
}

static void test_parse(void **state)
{
	struct co_git_push push;
	struct co_error err = CO_ERROR_INIT;
	static const char gitlab[] =
		"{\"object_kind\":\"push\",\"ref\":\"refs/heads/release\",\"after\":\"short\","
		"\"project\":{\"git_http_url\":\"https://gitlab.example.com/g/p.git\"},"
		"\"repository\":{\"git_ssh_url\":\"git@gitlab.example.com:g/p.git\"}}";
	static const char generic[] = "{\"repository\":\"file:///srv/repos/fleet.git\"}";
	static const char ping[] = "{\"zen\":\"Design for failure.\",\"hook_id\":1}";

	assert_int_equal(co_git_webhook_parse(&push, BODY, strlen(BODY), &err), 0);
	assert_string_equal(push.branch, "main");
	assert_string_equal(push.after, "0123456789abcdef0123456789abcdef01234567");
	assert_string_equal(push.urls[0], "https://git.example.com/team/tenant-core.git");
	assert_string_equal(push.urls[1], "git@git.example.com:team/tenant-core.git");
	assert_null(push.urls[2]);
	co_git_push_release(&push);

	assert_int_equal(co_git_webhook_parse(&push, gitlab, strlen(gitlab), &err), 0);
	assert_string_equal(push.branch, "release");
	assert_null(push.after); /* not a full sha */
	assert_non_null(push.urls[1]);
	co_git_push_release(&push);

	assert_int_equal(co_git_webhook_parse(&push, generic, strlen(generic), &err), 0);
	assert_null(push.ref);
	co_git_push_release(&push);

	assert_int_equal(co_git_webhook_parse(&push, ping, strlen(ping), &err), 0);
	assert_null(push.urls[0]);
	co_git_push_release(&push);

	assert_int_equal(co_git_webhook_parse(&push, "[1]", 3, &err), -EINVAL);
	assert_int_equal(co_git_webhook_parse(&push, "{\"ref\":1}", 9, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "no repository"));
	assert_int_equal(co_git_webhook_parse(&push, "{\"a\":1,\"a\":2}", 13, &err), -EINVAL);
}

static void test_url_same(void **state)
{
	assert_true(co_git_url_same("https://git.example.com/team/tenant-core.git",
				    "git@git.example.com:team/tenant-core.git"));
	assert_true(co_git_url_same("https://user:tok@Git.Example.com:443/team/tenant-core/",
				    "ssh://git@git.example.com/team/tenant-core"));
	assert_true(co_git_url_same("file:///srv/repos/fleet.git", "/srv/repos/fleet"));
	assert_false(co_git_url_same("https://git.example.com/team/tenant-core.git",
				     "https://git.example.com/team/tenant-edge.git"));
	assert_false(co_git_url_same("/srv/a.git", NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verify),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_url_same),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
