/*
 * co_atomic_write_file: the temporary file is created with O_EXCL under a name derived
 * from the target and the process id, so two writers in one directory do not collide;
 * the rename is the commit point. The directory is fsynced after the rename so the new
 * name survives a crash, which matters for the server-state file a reload depends on.
 */
#include "base/atomic-write.h"
#include "base/buf.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void sync_parent_dir(const char *path)
{
	char *copy = co_strdup(path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(copy);
}

int co_atomic_write_file(const char *path, const void *data, size_t len, int mode,
			 struct co_error *err)
{
	char *tmp = co_asprintf("%s.tmp.%ld", path, (long)getpid());
	const char *p = data;
	int fd, rc = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0 && errno == EEXIST) {
		/* left over by a writer of the same pid that crashed: ours to replace */
		unlink(tmp);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	}
	if (fd < 0) {
		rc = co_error_set(err, -errno, "write '%s': %s", path, strerror(errno));
		goto out;
	}
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = co_error_set(err, -errno, "write '%s': %s", tmp, strerror(errno));
			break;
		}
		p += n;
		len -= (size_t)n;
	}
	if (rc == 0 && fsync(fd) < 0)
		rc = co_error_set(err, -errno, "fsync '%s': %s", tmp, strerror(errno));
	if (close(fd) < 0 && rc == 0)
		rc = co_error_set(err, -errno, "close '%s': %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, path) < 0)
		rc = co_error_set(err, -errno, "rename '%s' to '%s': %s", tmp, path,
				  strerror(errno));
	if (rc < 0)
		unlink(tmp);
	else
		sync_parent_dir(path);
out:
	free(tmp);
	return rc;
}
