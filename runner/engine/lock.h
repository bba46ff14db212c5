/*
 * The pipeline lock: two runners never drive the same pipeline at once (invariant I5).
 *
 * An exclusive flock(2) on a lock file, taken without waiting. The kernel drops it when
 * the process dies however it dies, so a SIGKILLed runner never leaves a stale lock
 * behind and `cutover resume` can take over at once. The file records who holds it
 * (pid, host, since) so the refusal message can say so.
 */
#ifndef CO_ENGINE_LOCK_H
#define CO_ENGINE_LOCK_H

#include "base/error.h"

struct co_lock;

/*
 * Take the lock at path (created 0600 with its directory if missing). Returns 0, or
 * -EBUSY with err "pipeline lock '...' is held by pid 1234 on host since ...", or
 * another negative code.
 */
int co_lock_acquire(struct co_lock **ret_lock, const char *path, struct co_error *err);

/* Release and free; NULL is fine. */
void co_lock_release(struct co_lock *lock);

#endif
