/*
 * Journal implementation. The file is opened O_APPEND so every write lands at the end
 * even if something else appended; one write() per line keeps lines whole for readers.
 */
#include "engine/journal.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct co_journal;
static int parse_lines(struct co_journal *j, int truncate_torn, struct co_error *err);

struct co_journal {
	char *path;
	int fd;
	json_t *entries;
	size_t dropped;
};

static int read_all(int fd, struct co_buf *out)
{
	char chunk[65536];
	ssize_t n;

	while ((n = read(fd, chunk, sizeof(chunk))) > 0)
		co_buf_append(out, chunk, (size_t)n);
	return n < 0 ? -errno : 0;
}

static int replay(struct co_journal *j, struct co_error *err)
{
	return parse_lines(j, 1, err);
}

static int parse_lines(struct co_journal *j, int truncate_torn, struct co_error *err)
{
	struct co_buf data = CO_BUF_INIT;
	size_t start = 0, lineno = 0, good_end = 0;
	int rc;

	rc = read_all(j->fd, &data);
	if (rc < 0) {
		co_error_set(err, rc, "journal '%s': read: %s", j->path, strerror(-rc));
		goto out;
	}
	while (start < data.len) {
		char *nl = memchr(data.data + start, '\n', data.len - start);
		size_t len;
		json_error_t jerr;
		json_t *entry;

		lineno++;
		if (!nl) {
			/* A torn tail from a crash mid-write: drop it. */
			j->dropped = data.len - start;
			break;
		}
		len = (size_t)(nl - (data.data + start));
		if (len > 0) {
			entry = json_loadb(data.data + start, len, 0, &jerr);
			if (!entry || !json_is_object(entry)) {
				json_decref(entry);
				rc = co_error_set(err, -EINVAL, "journal '%s': line %zu: %s",
						  j->path, lineno,
						  entry ? "not an object" : jerr.text);
				goto out;
			}
			json_array_append_new(j->entries, entry);
		}
		start += len + 1;
		good_end = start;
	}
	if (j->dropped && truncate_torn && ftruncate(j->fd, (off_t)good_end) < 0) {
		rc = co_error_set(err, -errno, "journal '%s': truncate torn line: %s",
				  j->path, strerror(errno));
		goto out;
	}
out:
	co_buf_release(&data);
	return rc;
}

int co_journal_open(struct co_journal **ret_journal, const char *path,
		    struct co_error *err)
{
	struct co_journal *j;
	int rc;

	rc = co_fs_mkdir_parent(path, 0700);
	if (rc < 0)
		return co_error_set(err, rc, "journal '%s': create directory: %s", path,
				    strerror(-rc));
	j = co_calloc(1, sizeof(*j));
	j->path = co_strdup(path);
	j->entries = json_array();
	j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		rc = co_error_set(err, -errno, "journal '%s': open: %s", path,
				  strerror(errno));
		goto fail;
	}
	rc = replay(j, err);
	if (rc < 0)
		goto fail;
	*ret_journal = j;
	return 0;
fail:
	co_journal_free(j);
	return rc;
}

int co_journal_read(json_t **ret_entries, const char *path, struct co_error *err)
{
	struct co_journal j = { .path = (char *)path, .entries = json_array() };
	int rc;

	j.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (j.fd < 0) {
		rc = co_error_set(err, -errno, "journal '%s': %s", path, strerror(errno));
		json_decref(j.entries);
		return rc;
	}
	rc = parse_lines(&j, 0, err);
	close(j.fd);
	if (rc < 0) {
		json_decref(j.entries);
		return rc;
	}
	*ret_entries = j.entries;
	return 0;
}

const json_t *co_journal_entries(const struct co_journal *j)
{
	return j->entries;
}

size_t co_journal_dropped_bytes(const struct co_journal *j)
{
	return j->dropped;
}

int co_journal_append(struct co_journal *j, const json_t *entry, struct co_error *err)
{
	json_t *copy;
	char ts[32];
	char *line;
	size_t len, off = 0;
	int rc = 0;

	if (!json_is_object(entry))
		return co_error_set(err, -EINVAL, "journal '%s': entry is not an object",
				    j->path);
	copy = json_deep_copy(entry);
	json_object_set_new(copy, "ts", json_string(co_time_rfc3339(co_time_wall_ms(), ts,
								  sizeof(ts))));
	line = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	len = strlen(line);
	if (len + 1 > CO_JOURNAL_MAX_LINE) {
		rc = co_error_set(err, -E2BIG, "journal '%s': entry of %zu bytes too large",
				  j->path, len);
		goto out;
	}
	line = co_realloc(line, len + 2);
	line[len++] = '\n';
	while (off < len) {
		ssize_t n = write(j->fd, line + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = co_error_set(err, -errno, "journal '%s': write: %s", j->path,
					  strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	if (fsync(j->fd) < 0) {
		rc = co_error_set(err, -errno, "journal '%s': fsync: %s", j->path,
				  strerror(errno));
		goto out;
	}
	json_array_append(j->entries, copy);
out:
	json_decref(copy);
	free(line);
	return rc;
}

const json_t *co_journal_last(const struct co_journal *j, const char *type,
			      const char *key, const char *value)
{
	for (size_t i = json_array_size(j->entries); i-- > 0;) {
		const json_t *e = json_array_get(j->entries, i);
		const char *t = json_string_value(json_object_get(e, "type"));

		if (!t || strcmp(t, type) != 0)
			continue;
		if (key) {
			const char *v = json_string_value(json_object_get(e, key));

			if (!v || !value || strcmp(v, value) != 0)
				continue;
		}
		return e;
	}
	return NULL;
}

const char *co_journal_path(const struct co_journal *j)
{
	return j->path;
}

void co_journal_free(struct co_journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0)
		close(j->fd);
	json_decref(j->entries);
	free(j->path);
	free(j);
}
