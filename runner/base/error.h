/*
 * co_error: a caller-owned, one-line description of what failed.
 *
 * Functions return 0 or a negative errno-style code; the interesting ones also fill a
 * struct co_error so the caller (engine, stages, CLI) can log once with context. There
 * is no global "last error": many operations run at once on one loop, so the error
 * always travels with the operation.
 */
#ifndef CO_BASE_ERROR_H
#define CO_BASE_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define CO_ERROR_MSG_MAX 512

struct co_error {
	int code;                     /* negative errno-style code, 0 when clear */
	char msg[CO_ERROR_MSG_MAX];   /* one line, lowercase, no trailing period */
};

#define CO_ERROR_INIT { 0, { 0 } }

/* Record code and a printf-style message; returns code so callers can
 * `return co_error_set(err, -EINVAL, "...")`. err may be NULL. Newlines in the
 * formatted message are replaced by spaces to keep it one line. */
int co_error_set(struct co_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int co_error_setv(struct co_error *err, int code, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* Prepend context: "ctx: previous message". Keeps the code. err may be NULL. */
void co_error_prefix(struct co_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

void co_error_clear(struct co_error *err);

/* Copy src into dst (dst may be NULL). */
void co_error_copy(struct co_error *dst, const struct co_error *src);

/* A message for code when err carries none (strerror-like, also for uv/curl codes
 * mapped to errno values). Never NULL. */
const char *co_error_str(const struct co_error *err);

#endif
