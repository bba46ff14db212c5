/*
 * Base64 (RFC 4648, standard alphabet) on OpenSSL's EVP block codec, with the
 * leniency Kubernetes data needs: whitespace and line breaks inside the input are
 * ignored, padding is required to be correct.
 */
#ifndef CO_BASE_BASE64_H
#define CO_BASE_BASE64_H

#include <stddef.h>

/* Decode; returns a new NUL-terminated buffer (caller frees) and its length, or NULL
 * on invalid input. */
char *co_base64_decode(const char *in, size_t len, size_t *ret_len);

/* Encode; returns a new NUL-terminated string (caller frees). */
char *co_base64_encode(const void *in, size_t len);

#endif
