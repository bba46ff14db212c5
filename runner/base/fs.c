/*
 * Filesystem helpers, see fs.h.
 */
#include "base/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int co_fs_mkdir_p(const char *path, mode_t mode)
{
	char *copy = co_strdup(path);
	int rc = 0;

	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, mode) < 0 && errno != EEXIST)
			rc = -errno;
		*p = '/';
		if (rc)
			break;
	}
	if (!rc && mkdir(copy, mode) < 0 && errno != EEXIST)
		rc = -errno;
	free(copy);
	return rc;
}

int co_fs_mkdir_parent(const char *file_path, mode_t mode)
{
	const char *slash = strrchr(file_path, '/');
	char *dir;
	int rc;

	if (!slash || slash == file_path)
		return 0;
	dir = co_strndup(file_path, (size_t)(slash - file_path));
	rc = co_fs_mkdir_p(dir, mode);
	free(dir);
	return rc;
}

int co_fs_read(const char *path, size_t max, struct co_buf *out, struct co_error *err)
{
	char chunk[16384];
	size_t total = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return co_error_set(err, -errno, "read '%s': %s", path, strerror(errno));
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		total += (size_t)n;
		if (total > max) {
			close(fd);
			return co_error_set(err, -E2BIG, "read '%s': larger than %zu bytes", path,
					    max);
		}
		co_buf_append(out, chunk, (size_t)n);
	}
	if (n < 0) {
		int e = errno;

		close(fd);
		return co_error_set(err, -e, "read '%s': %s", path, strerror(e));
	}
	close(fd);
	return 0;
}

int co_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		       struct co_error *err)
{
	char *tmp = co_asprintf("%s.tmp.%ld", path, (long)getpid());
	const char *slash;
	size_t off = 0;
	int fd, rc = 0;

	rc = co_fs_mkdir_parent(path, 0755);
	if (rc < 0) {
		co_error_set(err, rc, "write '%s': create directory: %s", path, strerror(-rc));
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = co_error_set(err, -errno, "write '%s': %s", tmp, strerror(errno));
		goto out;
	}
	while (off < len) {
		ssize_t n = write(fd, (const char *)data + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = co_error_set(err, -errno, "write '%s': %s", tmp, strerror(errno));
			break;
		}
		off += (size_t)n;
	}
	if (rc == 0 && fchmod(fd, mode) < 0)
		rc = co_error_set(err, -errno, "chmod '%s': %s", tmp, strerror(errno));
	if (rc == 0 && fsync(fd) < 0)
		rc = co_error_set(err, -errno, "fsync '%s': %s", tmp, strerror(errno));
	close(fd);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = co_error_set(err, -errno, "rename '%s': %s", path, strerror(errno));
	if (rc < 0) {
		unlink(tmp);
		goto out;
	}
	/* Make the rename itself durable. */
	slash = strrchr(path, '/');
	if (slash) {
		char *dir = co_strndup(path, (size_t)(slash - path));
		int dfd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
		free(dir);
	}
out:
	free(tmp);
	return rc;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int co_fs_list_dir(const char *dir, char ***ret_names, size_t *ret_n,
		   struct co_error *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names;
	size_t n = 0, cap = 16;

	if (!d)
		return co_error_set(err, -errno, "open '%s': %s", dir, strerror(errno));
	names = co_calloc(cap + 1, sizeof(*names));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap *= 2;
			names = co_realloc(names, (cap + 1) * sizeof(*names));
		}
		names[n++] = co_strdup(de->d_name);
	}
	closedir(d);
	names[n] = NULL;
	qsort(names, n, sizeof(*names), cmp_names);
	*ret_names = names;
	*ret_n = n;
	return 0;
}

void co_fs_names_free(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}
