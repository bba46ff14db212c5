/*
 * Git push webhooks: signature verification and payload parsing for the forges
 * platform teams use, so `cutover serve` can reconcile at once when a repo changes.
 *
 * Signatures:
 *   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>   (GitHub, Gitea, Forgejo)
 *   X-Gitea-Signature: <hex HMAC-SHA256>                        (Gitea)
 *   X-Gitlab-Token: <the shared secret itself>                  (GitLab)
 * Comparison is constant-time. A request with no recognised signature is rejected
 * when a secret is configured.
 *
 * Payloads: the push event of GitHub, Gitea and GitLab (ref, after, repository URLs),
 * and a minimal generic form {"repository": "<url>", "ref": "...", "after": "..."}.
 * Bodies are untrusted: bounded (CO_GIT_WEBHOOK_MAX_BODY), every field type-checked.
 */
#ifndef CO_CLIENTS_GIT_WEBHOOK_H
#define CO_CLIENTS_GIT_WEBHOOK_H

#include <jansson.h>
#include <stddef.h>

#include "base/error.h"

#define CO_GIT_WEBHOOK_MAX_BODY (1024 * 1024)

/* Header lookup the caller provides (case-insensitive name -> value or NULL). */
typedef const char *(*co_git_webhook_header_fn)(const char *name, void *data);

/*
 * Verify the request's signature with secret. Returns 0 when valid, -EACCES with err
 * ("webhook signature does not match") when not, -EINVAL for a malformed signature
 * header. secret NULL or "" accepts every request (not recommended; serve warns).
 */
int co_git_webhook_verify(const char *secret, const char *body, size_t len,
			  co_git_webhook_header_fn header, void *data, struct co_error *err);

struct co_git_push {
	char *ref;        /* "refs/heads/main" (may be NULL for a ping) */
	char *branch;     /* "main" when ref is a branch, else NULL */
	char *after;      /* new head sha, or NULL */
	char **urls;      /* repository URLs named by the payload, NULL-terminated */
};

/*
 * Parse a push payload. Ping events (GitHub's zen/hook_id) give a push with no ref.
 * Returns 0 or -EINVAL with err naming what is wrong.
 */
int co_git_webhook_parse(struct co_git_push *ret, const char *body, size_t len,
			 struct co_error *err);
void co_git_push_release(struct co_git_push *push);

/*
 * Do two repository URLs name the same repository? Compares after normalising:
 * scheme and user dropped, "git@host:path" made "host/path", trailing ".git" and "/"
 * removed, host lowercased; file:// and plain paths compare as paths.
 */
int co_git_url_same(const char *a, const char *b);

#endif
