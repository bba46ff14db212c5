/*
 * Git webhooks, see git-webhook.h. HMAC via OpenSSL; hex decoding by hand because
 * the signature must be compared in constant time over raw bytes.
 */
#include "clients/git-webhook.h"
#include "base/buf.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int hex_decode(const char *hex, unsigned char *out, size_t n)
{
	if (strlen(hex) != n * 2)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int co_git_webhook_verify(const char *secret, const char *body, size_t len,
			  co_git_webhook_header_fn header, void *data, struct co_error *err)
{
	unsigned char mac[EVP_MAX_MD_SIZE], want[32];
	unsigned int mac_len = 0;
	const char *sig;

	if (!secret || !*secret)
		return 0;
	if (len > CO_GIT_WEBHOOK_MAX_BODY)
		return co_error_set(err, -EINVAL, "webhook body larger than %d bytes",
				    CO_GIT_WEBHOOK_MAX_BODY);
	sig = header("X-Gitlab-Token", data);
	if (sig) {
		size_t a = strlen(sig), b = strlen(secret);

		/* Length is not secret; contents are compared in constant time. */
		if (a == b && CRYPTO_memcmp(sig, secret, a) == 0)
			return 0;
		return co_error_set(err, -EACCES, "webhook token does not match");
	}
	sig = header("X-Hub-Signature-256", data);
	if (sig) {
		if (strncmp(sig, "sha256=", 7) != 0)
			return co_error_set(err, -EINVAL, "webhook signature header "
					    "'X-Hub-Signature-256' is not 'sha256=<hex>'");
		sig += 7;
	} else {
		sig = header("X-Gitea-Signature", data);
	}
	if (!sig)
		return co_error_set(err, -EACCES, "webhook has no signature (expected "
				    "X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)");
	if (hex_decode(sig, want, sizeof(want)) < 0)
		return co_error_set(err, -EINVAL, "webhook signature is not 64 hex digits");
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len,
		  mac, &mac_len) || mac_len != sizeof(want))
		return co_error_set(err, -EIO, "webhook: HMAC computation failed");
	if (CRYPTO_memcmp(mac, want, sizeof(want)) != 0)
		return co_error_set(err, -EACCES, "webhook signature does not match");
	return 0;
}

static void add_url(json_t *urls, const json_t *v)
{
	if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 2048)
		json_array_append(urls, (json_t *)v);
}

int co_git_webhook_parse(struct co_git_push *ret, const char *body, size_t len,
			 struct co_error *err)
{
	struct co_git_push push = { 0 };
	json_error_t jerr;
	json_t *doc, *repo, *urls, *u;
	const char *ref, *after;
	size_t i;

	if (len > CO_GIT_WEBHOOK_MAX_BODY)
		return co_error_set(err, -EINVAL, "webhook body larger than %d bytes",
				    CO_GIT_WEBHOOK_MAX_BODY);
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return co_error_set(err, -EINVAL, "webhook body is not a JSON object%s%s",
				    doc ? "" : ": ", doc ? "" : jerr.text);
	}
	urls = json_array();
	repo = json_object_get(doc, "repository");
	if (json_is_string(repo)) {
		add_url(urls, repo);
	} else if (json_is_object(repo)) {
		static const char *const keys[] = { "clone_url", "ssh_url", "html_url", "url",
						    "git_http_url", "git_ssh_url", "homepage" };

		for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			add_url(urls, json_object_get(repo, keys[i]));
	}
	/* GitLab also names the project. */
	repo = json_object_get(doc, "project");
	if (json_is_object(repo)) {
		add_url(urls, json_object_get(repo, "git_http_url"));
		add_url(urls, json_object_get(repo, "git_ssh_url"));
		add_url(urls, json_object_get(repo, "web_url"));
	}
	ref = json_string_value(json_object_get(doc, "ref"));
	after = json_string_value(json_object_get(doc, "after"));
	if (json_array_size(urls) == 0 && !json_object_get(doc, "zen")) {
		json_decref(urls);
		json_decref(doc);
		return co_error_set(err, -EINVAL, "webhook payload names no repository");
	}
	if (ref) {
		push.ref = co_strdup(ref);
		if (strncmp(ref, "refs/heads/", 11) == 0)
			push.branch = co_strdup(ref + 11);
	}
	if (after && strlen(after) == 40)
		push.after = co_strdup(after);
	push.urls = co_calloc(json_array_size(urls) + 1, sizeof(char *));
	json_array_foreach(urls, i, u)
		push.urls[i] = co_strdup(json_string_value(u));
	json_decref(urls);
	json_decref(doc);
	*ret = push;
	return 0;
}

void co_git_push_release(struct co_git_push *push)
{
	if (!push)
		return;
	free(push->ref);
	free(push->branch);
	free(push->after);
	for (size_t i = 0; push->urls && push->urls[i]; i++)
		free(push->urls[i]);
	free(push->urls);
	memset(push, 0, sizeof(*push));
}

/* Normalise a repository URL into out: "host/path" or "/abs/path". */
static void normalise(const char *url, struct co_buf *out)
{
	const char *p = url, *at, *colon, *slash;

	if (strncmp(p, "file://", 7) == 0) {
		co_buf_puts(out, p + 7);
		goto trim;
	}
	if (p[0] == '/' || p[0] == '.') {
		co_buf_puts(out, p);
		goto trim;
	}
	slash = strstr(p, "://");
	if (slash) {
		p = slash + 3;
		at = strchr(p, '@');
		slash = strchr(p, '/');
		if (at && (!slash || at < slash))
			p = at + 1;
		for (; *p && *p != '/'; p++)
			if (*p != ':' || !isdigit((unsigned char)p[1]))
				co_buf_putc(out, (char)tolower((unsigned char)*p));
			else
				while (p[1] && p[1] != '/')
					p++;
		co_buf_puts(out, p);
		goto trim;
	}
	/* scp-like: user@host:path */
	at = strchr(p, '@');
	colon = strchr(p, ':');
	if (colon) {
		const char *h = at && at < colon ? at + 1 : p;

		for (; h < colon; h++)
			co_buf_putc(out, (char)tolower((unsigned char)*h));
		co_buf_putc(out, '/');
		co_buf_puts(out, colon + 1);
		goto trim;
	}
	co_buf_puts(out, p);
trim:
	while (out->len > 1 && out->data[out->len - 1] == '/')
		out->data[--out->len] = '\0';
	if (out->len > 4 && strcmp(out->data + out->len - 4, ".git") == 0) {
		out->len -= 4;
		out->data[out->len] = '\0';
	}
	while (out->len > 1 && out->data[out->len - 1] == '/')
		out->data[--out->len] = '\0';
}

int co_git_url_same(const char *a, const char *b)
{
	struct co_buf x = CO_BUF_INIT, y = CO_BUF_INIT;
	int same;

	if (!a || !b)
		return 0;
	normalise(a, &x);
	normalise(b, &y);
	same = strcmp(co_buf_cstr(&x), co_buf_cstr(&y)) == 0;
	co_buf_release(&x);
	co_buf_release(&y);
	return same;
}
