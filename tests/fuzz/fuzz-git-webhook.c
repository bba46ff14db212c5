/*
 * Fuzz target: git webhook bodies (untrusted, from the network). Parses the payload,
 * checks invariants on what it returns, and verifies a signature over the same bytes
 * with a fixed secret (the signature header is taken from the first line when it
 * starts with "sig:").
 */
#include <stdlib.h>
#include <string.h>

#include "clients/git-webhook.h"
#include "fuzz.h"

static const char *header(const char *name, void *data)
{
	return strcmp(name, "X-Hub-Signature-256") == 0 ? data : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	struct co_git_push push;
	struct co_error err = CO_ERROR_INIT;
	char sig[80] = "sha256=";

	if (size > 5 && memcmp(data, "sig:", 4) == 0) {
		const char *nl = memchr(data, '\n', size);
		size_t n = nl ? (size_t)(nl - body) - 4 : 0;

		if (n > sizeof(sig) - 8)
			n = sizeof(sig) - 8;
		memcpy(sig + 7, body + 4, n);
		sig[7 + n] = '\0';
	}
	co_git_webhook_verify("fuzz-secret", body, size, header, sig, &err);
	if (co_git_webhook_parse(&push, body, size, &err) == 0) {
		if (!push.urls)
			abort();
		for (size_t i = 0; push.urls[i]; i++) {
			co_git_url_same(push.urls[i], push.urls[0]);
			if (!co_git_url_same(push.urls[i], push.urls[i]))
				abort();
		}
		if (push.branch && (!push.ref || strncmp(push.ref, "refs/heads/", 11) != 0))
			abort();
		co_git_push_release(&push);
	} else if (!err.msg[0]) {
		abort();
	}
	return 0;
}
