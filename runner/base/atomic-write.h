/*
 * Atomic file replacement: write to a temporary file next to the target, fsync it,
 * rename it over the target. Readers (HAProxy loading its server-state file,
 * Prometheus re-reading a file_sd targets file) see either the old or the new content,
 * never a half-written file.
 */
#ifndef CO_BASE_ATOMIC_WRITE_H
#define CO_BASE_ATOMIC_WRITE_H

#include <stddef.h>

#include "base/error.h"

/*
 * Replace path with len bytes of data, created with mode (e.g. 0644) when new.
 * Returns 0 or a negative errno with err filled ("write 'path': ..."). On failure the
 * target is untouched and the temporary file removed. Synchronous: meant for small
 * files (kilobytes).
 */
int co_atomic_write_file(const char *path, const void *data, size_t len, int mode,
			 struct co_error *err);

#endif
