/*
 * co_error implementation: bounded formatting into the caller's struct, with newlines
 * folded so every error stays one line in logs and CLI output.
 */
#include "base/error.h"

#include <stdio.h>
#include <string.h>

static void fold_lines(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r' || *s == '\t')
			*s = ' ';
}

int co_error_setv(struct co_error *err, int code, const char *fmt, va_list ap)
{
	if (!err)
		return code;
	err->code = code;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	fold_lines(err->msg);
	return code;
}

int co_error_set(struct co_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	co_error_setv(err, code, fmt, ap);
	va_end(ap);
	return code;
}

void co_error_prefix(struct co_error *err, const char *fmt, ...)
{
	char prefix[CO_ERROR_MSG_MAX];
	char old[CO_ERROR_MSG_MAX];
	va_list ap;

	if (!err)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	if (old[0])
		snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix, old);
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix,
			 co_error_str(&(struct co_error){ .code = err->code }));
	fold_lines(err->msg);
}

void co_error_clear(struct co_error *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

void co_error_copy(struct co_error *dst, const struct co_error *src)
{
	if (dst && src && dst != src)
		memcpy(dst, src, sizeof(*dst));
}

const char *co_error_str(const struct co_error *err)
{
	if (!err)
		return "unknown error";
	if (err->msg[0])
		return err->msg;
	if (err->code == 0)
		return "success";
	return strerror(-err->code);
}
