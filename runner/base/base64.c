/*
 * Base64 helpers over OpenSSL. EVP_DecodeBlock() rejects whitespace and counts padding
 * as data, so input is compacted first and the padding subtracted after.
 */
#include "base/base64.h"
#include "base/buf.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *co_base64_decode(const char *in, size_t len, size_t *ret_len)
{
	char *compact = co_malloc(len + 1);
	unsigned char *out;
	size_t n = 0, pad = 0;
	int got;

	for (size_t i = 0; i < len; i++)
		if (in[i] != ' ' && in[i] != '\n' && in[i] != '\r' && in[i] != '\t')
			compact[n++] = in[i];
	if (n % 4 != 0 || n > (size_t)1 << 30) {
		free(compact);
		return NULL;
	}
	if (n >= 1 && compact[n - 1] == '=')
		pad++;
	if (n >= 2 && compact[n - 2] == '=')
		pad++;
	for (size_t i = 0; i + pad < n; i++) {
		if (compact[i] == '=') {
			free(compact);
			return NULL;
		}
	}
	out = co_malloc(n / 4 * 3 + 1);
	got = n ? EVP_DecodeBlock(out, (const unsigned char *)compact, (int)n) : 0;
	free(compact);
	if (got < 0 || (size_t)got < pad) {
		free(out);
		return NULL;
	}
	got -= (int)pad;
	out[got] = '\0';
	if (ret_len)
		*ret_len = (size_t)got;
	return (char *)out;
}

char *co_base64_encode(const void *in, size_t len)
{
	unsigned char *out = co_malloc((len + 2) / 3 * 4 + 1);
	int n = EVP_EncodeBlock(out, in, (int)len);

	out[n] = '\0';
	return (char *)out;
}
