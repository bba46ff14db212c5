/*
 * co_buf: a growable byte buffer, always NUL-terminated after len bytes.
 *
 * Embedded by value: co_buf_init() / co_buf_release(). Allocation failure aborts the
 * process (like git's xmalloc): a runner that cannot allocate a few bytes cannot
 * journal or clean up either, and checking every append would hide real errors.
 * Growth is bounded by callers that read untrusted input (they check len against
 * their own limit before appending).
 */
#ifndef CO_BASE_BUF_H
#define CO_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct co_buf {
	char *data;   /* owned; NULL until the first append, see co_buf_cstr() */
	size_t len;
	size_t cap;
};

#define CO_BUF_INIT { NULL, 0, 0 }

void co_buf_init(struct co_buf *b);
void co_buf_release(struct co_buf *b);         /* frees data, back to empty */
void co_buf_reset(struct co_buf *b);           /* len = 0, keeps memory */
void co_buf_grow(struct co_buf *b, size_t extra);
void co_buf_append(struct co_buf *b, const void *data, size_t len);
void co_buf_puts(struct co_buf *b, const char *s);
void co_buf_putc(struct co_buf *b, char c);
void co_buf_printf(struct co_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void co_buf_vprintf(struct co_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len). */
void co_buf_consume(struct co_buf *b, size_t n);
/* Never NULL: "" for an empty buffer. Borrowed until the next modification. */
const char *co_buf_cstr(const struct co_buf *b);
/* Hand the memory to the caller (free with free()); the buffer becomes empty.
 * Never NULL. */
char *co_buf_detach(struct co_buf *b, size_t *ret_len);

/* Abort-on-failure allocation helpers used across the project. */
void *co_malloc(size_t n);
void *co_calloc(size_t n, size_t size);
void *co_realloc(void *p, size_t n);
char *co_strdup(const char *s);
char *co_strndup(const char *s, size_t n);
char *co_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
