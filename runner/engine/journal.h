/*
 * The pipeline journal: append-only JSON lines, fsync'd, replayed on resume.
 *
 * Each line is one JSON object (a stage transition, a recorded output). Appends are
 * synchronous on purpose: an entry must be durable before the action it records goes
 * ahead (for example "creating cluster2" is on disk before the provider is called, so a
 * runner killed mid-create resumes by looking the cluster up instead of creating a
 * second one). They happen a few times per stage, so blocking the loop for an fsync is
 * cheap compared to the ordering it buys.
 *
 * A crash can leave a partial last line; opening the journal drops it (and truncates
 * the file back to the last complete line) instead of failing. A corrupt line in the
 * middle is an error: the journal is not ours to guess about.
 */
#ifndef CO_ENGINE_JOURNAL_H
#define CO_ENGINE_JOURNAL_H

#include <jansson.h>

#include "base/error.h"

#define CO_JOURNAL_MAX_LINE (1024 * 1024)

struct co_journal;

/*
 * Open (creating it and its directory if needed, mode 0600) and replay the journal at
 * path. On success *ret_journal is a new journal (free with co_journal_free()).
 * Returns 0, or a negative code with err filled ("journal '...': line 3: ...").
 */
int co_journal_open(struct co_journal **ret_journal, const char *path,
		    struct co_error *err);

/*
 * Read a journal without opening it for writing (for `cutover status` while a runner
 * is appending): a torn last line is ignored, never truncated. *ret_entries is a new
 * array. -ENOENT when there is no journal.
 */
int co_journal_read(json_t **ret_entries, const char *path, struct co_error *err);

/* All entries, oldest first, including those appended since opening. Borrowed until
 * co_journal_free(). */
const json_t *co_journal_entries(const struct co_journal *j);

/* Number of bytes dropped from a torn last line when the journal was opened. */
size_t co_journal_dropped_bytes(const struct co_journal *j);

/*
 * Append entry (borrowed; a copy with a "ts" RFC 3339 field added is kept) as one line
 * and fsync. Returns 0 or a negative code with err filled.
 */
int co_journal_append(struct co_journal *j, const json_t *entry, struct co_error *err);

/* The newest entry whose "type" equals type (and, when key is not NULL, whose string
 * field key equals value), or NULL. Borrowed. */
const json_t *co_journal_last(const struct co_journal *j, const char *type,
			      const char *key, const char *value);

const char *co_journal_path(const struct co_journal *j);

void co_journal_free(struct co_journal *j);

#endif
