/*
 * YAML <-> JSON (jansson), the way Kubernetes reads manifests.
 *
 * Loading: libyaml events -> jansson values, for multi-document streams. Anchors and
 * aliases are expanded (with a bound on expansion to stop "billion laughs"; each alias
 * is a deep copy, so editing one occurrence leaves the others alone), block and
 * flow styles both work, and plain scalars resolve like sigs.k8s.io/yaml (YAML 1.1 for
 * booleans: true/false/yes/no/on/off and y/n in any of their cases; ~/null/empty ->
 * null; ints incl. 0x/0o/0b, YAML 1.1 octal and '_' separators, floats incl. .inf/.nan);
 * quoted and block scalars and explicitly tagged !!str always stay strings. JSON has no
 * .inf/.nan, so those are rejected like kubectl does. Merge keys (<<) are honoured
 * (explicit keys win). Empty documents (only "---", comments, or a null) are skipped.
 * Mapping keys become strings ("yes:" -> "true", "0x10:" -> "16"); duplicate keys and
 * collection keys are errors. Errors carry "file:line:col: problem" in err.
 *
 * Dumping: jansson -> block-style YAML as kubectl writes it; strings that would
 * resolve to something else ("true", "1.0", "null", "", leading/trailing space,
 * ": ", "#") are quoted; multi-line strings use literal block style "|".
 */
#ifndef CO_BASE_YAML_H
#define CO_BASE_YAML_H

#include <jansson.h>
#include <stddef.h>

#include "base/buf.h"
#include "base/error.h"

/* Limits for untrusted input. */
#define CO_YAML_MAX_DEPTH 256
#define CO_YAML_MAX_ALIAS_EXPANSION 100000 /* nodes produced by aliases per stream */

/*
 * Parse every document of data[0..len) into a new JSON array (one element per
 * non-empty document). filename is used in error messages only (may be NULL:
 * "<input>"). On success *ret_docs is a new reference (caller json_decref()s);
 * on failure returns -EINVAL (or -E2BIG for limits), fills err, *ret_docs untouched.
 */
int co_yaml_load_all(json_t **ret_docs, const char *data, size_t len,
		     const char *filename, struct co_error *err);

/* Exactly one document expected (zero or several -> -EINVAL). New reference. */
int co_yaml_load_one(json_t **ret_doc, const char *data, size_t len,
		     const char *filename, struct co_error *err);

/* Read a file and co_yaml_load_all() it. */
int co_yaml_load_file(json_t **ret_docs, const char *path, struct co_error *err);

/* Append one document as YAML to out (no leading "---"). */
int co_yaml_dump(struct co_buf *out, const json_t *doc, struct co_error *err);

/* Append each element of the array docs, separated by "---\n". */
int co_yaml_dump_all(struct co_buf *out, const json_t *docs, struct co_error *err);

#endif
