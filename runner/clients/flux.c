/*
 * Flux helpers, see flux.h. Reconciling sources is a list followed by one merge patch
 * per matching object; the patches run concurrently and the callback fires when the
 * last one has answered.
 */
#include "clients/flux.h"
#include "base/buf.h"
#include "clients/git-webhook.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *requested_at_patch(void)
{
	struct timespec ts;
	struct tm tm;
	char buf[64];

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
	return json_pack("{s:{s:{s:s}}}", "metadata", "annotations", CO_FLUX_REQUESTED_AT, buf);
}

int co_flux_request_reconcile(struct co_kube *kube, const struct co_kube_ref *ref,
			      co_kube_cb cb, void *data, struct co_error *err)
{
	json_t *patch = requested_at_patch();
	int rc = co_kube_merge_patch(kube, ref, patch, false, cb, data, err);

	json_decref(patch);
	return rc;
}

struct reconcile_all {
	struct co_kube *kube;
	char **urls;
	char *branch;
	json_t *done;          /* "ns/name" annotated */
	unsigned pending;
	int status;
	struct co_error err;
	co_kube_cb cb;
	void *data;
};

static void ra_free(struct reconcile_all *ra)
{
	for (size_t i = 0; ra->urls && ra->urls[i]; i++)
		free(ra->urls[i]);
	free(ra->urls);
	free(ra->branch);
	json_decref(ra->done);
	free(ra);
}

static void ra_finish(struct reconcile_all *ra)
{
	struct co_kube_result res = { .status = ra->status, .reason = "", .obj = ra->done };

	co_error_copy(&res.err, &ra->err);
	ra->cb(&res, ra->data);
	ra_free(ra);
}

static void patched(struct co_kube_result *res, void *data)
{
	struct reconcile_all *ra = data;
	const json_t *meta = json_object_get(res->obj, "metadata");

	if (res->status == 0) {
		char *id = co_asprintf("%s/%s",
				       json_string_value(json_object_get(meta, "namespace")),
				       json_string_value(json_object_get(meta, "name")));

		json_array_append_new(ra->done, json_string(id));
		free(id);
	} else if (res->status != -ENOENT && ra->status == 0) {
		/* Deleted meanwhile is fine; anything else is reported. */
		ra->status = res->status;
		co_error_copy(&ra->err, &res->err);
	}
	if (--ra->pending == 0)
		ra_finish(ra);
}

static bool url_matches(struct reconcile_all *ra, const char *url)
{
	for (size_t i = 0; ra->urls[i]; i++)
		if (co_git_url_same(ra->urls[i], url))
			return true;
	return false;
}

static void listed(struct co_kube_result *res, void *data)
{
	struct reconcile_all *ra = data;
	json_t *items = json_object_get(res->obj, "items");
	json_t *item;
	size_t i;

	if (res->status == -ENOENT) {
		ra_finish(ra); /* no Flux on this cluster: nothing to reconcile */
		return;
	}
	if (res->status < 0) {
		ra->status = res->status;
		co_error_copy(&ra->err, &res->err);
		ra_finish(ra);
		return;
	}
	ra->pending = 1; /* held until every patch is started */
	json_array_foreach(items, i, item) {
		const json_t *spec = json_object_get(item, "spec");
		const json_t *meta = json_object_get(item, "metadata");
		const char *url = json_string_value(json_object_get(spec, "url"));
		const char *branch = json_string_value(
			json_object_get(json_object_get(spec, "ref"), "branch"));
		struct co_kube_ref ref = {
			.api_version = CO_FLUX_SOURCE_API,
			.kind = "GitRepository",
			.ns = json_string_value(json_object_get(meta, "namespace")),
			.name = json_string_value(json_object_get(meta, "name")),
		};
		struct co_error err = CO_ERROR_INIT;

		if (!url || !url_matches(ra, url))
			continue;
		if (ra->branch && branch && strcmp(ra->branch, branch) != 0)
			continue;
		ra->pending++;
		if (co_flux_request_reconcile(ra->kube, &ref, patched, ra, &err) < 0) {
			ra->pending--;
			if (ra->status == 0) {
				ra->status = err.code;
				co_error_copy(&ra->err, &err);
			}
		}
	}
	if (--ra->pending == 0)
		ra_finish(ra);
}

int co_flux_reconcile_sources(struct co_kube *kube, const char *const *urls,
			      const char *branch, co_kube_cb cb, void *data,
			      struct co_error *err)
{
	struct co_kube_ref ref = { .api_version = CO_FLUX_SOURCE_API, .kind = "GitRepository" };
	struct reconcile_all *ra;
	size_t n = 0;
	int rc;

	while (urls && urls[n])
		n++;
	if (n == 0)
		return co_error_set(err, -EINVAL, "flux reconcile: no repository urls");
	ra = co_calloc(1, sizeof(*ra));
	ra->kube = kube;
	ra->urls = co_calloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		ra->urls[i] = co_strdup(urls[i]);
	ra->branch = branch ? co_strdup(branch) : NULL;
	ra->done = json_array();
	ra->cb = cb;
	ra->data = data;
	rc = co_kube_list(kube, &ref, NULL, NULL, listed, ra, err);
	if (rc < 0)
		ra_free(ra);
	return rc;
}
