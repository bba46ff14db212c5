/*
 * co_buf and the allocation helpers. Capacity doubles so appends are amortised O(1);
 * one extra byte is always reserved for the terminating NUL.
 */
#include "base/buf.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
	fprintf(stderr, "fatal: out of memory allocating %zu bytes\n", n);
	abort();
}

void *co_malloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		oom(n);
	return p;
}

void *co_calloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		oom(n * size);
	return p;
}

void *co_realloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		oom(n);
	return q;
}

char *co_strdup(const char *s)
{
	return co_strndup(s, strlen(s));
}

char *co_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = co_malloc(len + 1);

	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *co_asprintf(const char *fmt, ...)
{
	struct co_buf b = CO_BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	return co_buf_detach(&b, NULL);
}

void co_buf_init(struct co_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void co_buf_release(struct co_buf *b)
{
	free(b->data);
	co_buf_init(b);
}

void co_buf_reset(struct co_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void co_buf_grow(struct co_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	size_t cap;

	if (need < b->len)
		oom(SIZE_MAX);
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 64;
	while (cap < need)
		cap *= 2;
	b->data = co_realloc(b->data, cap);
	b->cap = cap;
}

void co_buf_append(struct co_buf *b, const void *data, size_t len)
{
	co_buf_grow(b, len);
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void co_buf_puts(struct co_buf *b, const char *s)
{
	co_buf_append(b, s, strlen(s));
}

void co_buf_putc(struct co_buf *b, char c)
{
	co_buf_append(b, &c, 1);
}

void co_buf_vprintf(struct co_buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	co_buf_grow(b, 64);
	va_copy(cp, ap);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		co_buf_grow(b, (size_t)n);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	}
	b->len += (size_t)n;
}

void co_buf_printf(struct co_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	co_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void co_buf_consume(struct co_buf *b, size_t n)
{
	if (n >= b->len) {
		co_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

const char *co_buf_cstr(const struct co_buf *b)
{
	return b->data ? b->data : "";
}

char *co_buf_detach(struct co_buf *b, size_t *ret_len)
{
	char *p;

	if (!b->data)
		co_buf_grow(b, 0);
	p = b->data;
	b->data[b->len] = '\0';
	if (ret_len)
		*ret_len = b->len;
	co_buf_init(b);
	return p;
}
