/*
 * Fuzz target for the YAML loader and emitter. Besides surviving any input, it checks
 * two properties: a rejected input yields a located "fuzz:..." message, and an
 * accepted one survives dump -> load unchanged (json_equal), which exercises the
 * emitter's quoting against the loader's scalar resolution.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/yaml.h"
#include "fuzz.h"

#define MAX_INPUT (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct co_error err = CO_ERROR_INIT;
	struct co_buf out = CO_BUF_INIT;
	json_t *docs = NULL, *again = NULL, *one = NULL;

	if (size > MAX_INPUT)
		return 0;
	if (co_yaml_load_all(&docs, (const char *)data, size, "fuzz", &err) < 0) {
		if (err.code >= 0 || strncmp(err.msg, "fuzz:", 5) != 0) {
			fprintf(stderr, "unlocated error: %d '%s'\n", err.code, err.msg);
			abort();
		}
		return 0;
	}
	if (co_yaml_dump_all(&out, docs, &err) < 0) {
		fprintf(stderr, "dump failed: %s\n", err.msg);
		abort();
	}
	if (co_yaml_load_all(&again, co_buf_cstr(&out), out.len, "dump", &err) < 0) {
		fprintf(stderr, "reload failed: %s\n---\n%s\n", err.msg,
			co_buf_cstr(&out));
		abort();
	}
	if (!json_equal(docs, again)) {
		char *a = json_dumps(docs, JSON_ENCODE_ANY),
		     *b = json_dumps(again, JSON_ENCODE_ANY);

		fprintf(stderr, "round trip changed the value\n%s\n%s\n---\n%s\n", a, b,
			co_buf_cstr(&out));
		abort();
	}
	/* load_one agrees with load_all on the document count */
	if ((co_yaml_load_one(&one, (const char *)data, size, "fuzz", &err) == 0) !=
	    (json_array_size(docs) == 1)) {
		fprintf(stderr, "load_one disagrees with load_all\n");
		abort();
	}
	json_decref(one);
	json_decref(again);
	json_decref(docs);
	co_buf_release(&out);
	return 0;
}
