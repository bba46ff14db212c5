/*
 * flock-based pipeline lock, see lock.h. The holder's identity is written into the
 * locked file only after the lock is ours, so a reader that fails to lock sees the
 * current holder's line.
 */
#include "engine/lock.h"
#include "base/buf.h"
#include "base/fs.h"
#include "base/time.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct co_lock {
	char *path;
	int fd;
};

int co_lock_acquire(struct co_lock **ret_lock, const char *path, struct co_error *err)
{
	struct co_lock *lock;
	char host[256] = "";
	char since[32];
	char holder[512];
	ssize_t n;
	int fd;

	co_fs_mkdir_parent(path, 0700);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return co_error_set(err, -errno, "pipeline lock '%s': open: %s", path,
				    strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		if (e == EWOULDBLOCK) {
			n = pread(fd, holder, sizeof(holder) - 1, 0);
			holder[n > 0 ? n : 0] = '\0';
			holder[strcspn(holder, "\n")] = '\0';
			close(fd);
			return co_error_set(err, -EBUSY, "pipeline lock '%s' is held by %s",
					    path, holder[0] ? holder : "another process");
		}
		close(fd);
		return co_error_set(err, -e, "pipeline lock '%s': %s", path, strerror(e));
	}
	gethostname(host, sizeof(host) - 1);
	n = snprintf(holder, sizeof(holder), "pid %ld on %s since %s\n", (long)getpid(),
		     host, co_time_rfc3339(co_time_wall_ms(), since, sizeof(since)));
	if (ftruncate(fd, 0) < 0 || pwrite(fd, holder, (size_t)n, 0) != n) {
		int e = errno;

		close(fd);
		return co_error_set(err, -e, "pipeline lock '%s': write: %s", path,
				    strerror(e));
	}
	lock = co_calloc(1, sizeof(*lock));
	lock->path = co_strdup(path);
	lock->fd = fd;
	*ret_lock = lock;
	return 0;
}

void co_lock_release(struct co_lock *lock)
{
	if (!lock)
		return;
	/* Empty the holder line first so nobody reads a stale one after we are gone. */
	if (ftruncate(lock->fd, 0) < 0) {
		/* Nothing to do: the lock is released by close() regardless. */
	}
	flock(lock->fd, LOCK_UN);
	close(lock->fd);
	free(lock->path);
	free(lock);
}
