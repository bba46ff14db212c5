/*
 * Small filesystem helpers shared by the journal, the lock, the registry, the git
 * cache and kubesim's state: create directories with parents, read a file with a size
 * bound (untrusted input), and replace a file atomically (temporary file in the same
 * directory, fsync, rename, fsync of the directory) so a crash leaves the old or the
 * new content, never a torn file.
 */
#ifndef CO_BASE_FS_H
#define CO_BASE_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "base/buf.h"
#include "base/error.h"

/* mkdir -p with mode for every created directory. 0 or negative errno. */
int co_fs_mkdir_p(const char *path, mode_t mode);

/* mkdir -p of the directory part of file_path. */
int co_fs_mkdir_parent(const char *file_path, mode_t mode);

/* Append the file's content to out; -E2BIG (err filled) past max bytes; other errors
 * as negative errno with err "read '<path>': <reason>". */
int co_fs_read(const char *path, size_t max, struct co_buf *out, struct co_error *err);

/* Atomically replace path with data (creating parent directories, mode applied to
 * the new file). */
int co_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
		       struct co_error *err);

/*
 * Sorted names of the entries of dir, hidden ones (leading '.') skipped, as a new
 * NULL-terminated array of new strings (free with co_fs_names_free()); the count in
 * *ret_n. Returns 0, or a negative errno with err "open '<dir>': <reason>" (outputs
 * untouched).
 */
int co_fs_list_dir(const char *dir, char ***ret_names, size_t *ret_n,
		   struct co_error *err);
void co_fs_names_free(char **names);

#endif
