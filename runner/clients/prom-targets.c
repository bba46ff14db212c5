/*
 * Prometheus file_sd writer. The document is built with jansson so label values are
 * escaped correctly, validated before anything touches the disk, and committed with one
 * rename: Prometheus watches the file and must never read a partial array.
 */
#include "clients/prom-targets.h"
#include "base/fs.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int valid_target(const char *t)
{
	const char *colon = t ? strrchr(t, ':') : NULL;
	char *end;
	long port;

	if (!colon || colon == t || colon[1] == '\0')
		return 0;
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return 0;
	for (const char *p = t; p < colon; p++)
		if (*p <= ' ' || *p == '/' || *p == '"')
			return 0;
	return 1;
}

int co_prom_targets_format(struct co_buf *out, const struct co_prom_target *targets,
			   size_t n, struct co_error *err)
{
	json_t *doc = json_array();
	char *text = NULL;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		const struct co_prom_target *t = &targets[i];
		json_t *group, *list, *labels;

		if (!t->cluster || !*t->cluster) {
			rc = co_error_set(err, -EINVAL, "prometheus target %zu: empty cluster",
					  i);
			goto out;
		}
		if (t->n_targets == 0) {
			rc = co_error_set(err, -EINVAL,
					  "prometheus targets of '%s': no address", t->cluster);
			goto out;
		}
		list = json_array();
		for (size_t j = 0; j < t->n_targets; j++) {
			if (!valid_target(t->targets[j])) {
				json_decref(list);
				rc = co_error_set(err, -EINVAL,
						  "prometheus target '%s' of '%s': "
						  "not host:port",
						  t->targets[j] ? t->targets[j] : "",
						  t->cluster);
				goto out;
			}
			json_array_append_new(list, json_string(t->targets[j]));
		}
		labels = json_pack("{s:s}", "cluster", t->cluster);
		if (t->job)
			json_object_set_new(labels, "job", json_string(t->job));
		group = json_pack("{s:o,s:o}", "targets", list, "labels", labels);
		json_array_append_new(doc, group);
	}
	text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	co_buf_puts(out, text);
	co_buf_putc(out, '\n');
out:
	free(text);
	json_decref(doc);
	return rc;
}

int co_prom_targets_write(const char *path, const struct co_prom_target *targets,
			  size_t n, struct co_error *err)
{
	struct co_buf b = CO_BUF_INIT;
	int rc;

	rc = co_prom_targets_format(&b, targets, n, err);
	if (rc == 0)
		rc = co_fs_write_atomic(path, b.data, b.len, 0644, err);
	co_buf_release(&b);
	return rc;
}
