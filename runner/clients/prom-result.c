/*
 * Parsing of Prometheus query API answers into struct co_prom_result.
 *
 * Kept apart from the asynchronous client so the parser (pure, fed literal bodies in
 * tests) links without the HTTP stack. The body is untrusted: every shape is checked,
 * and the number of series and points is bounded before anything is allocated for
 * them. A sample is the JSON pair [<unix time as number>, "<value as string>"].
 */
#include "clients/prom.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"

const char *co_prom_type_name(enum co_prom_type type)
{
	switch (type) {
	case CO_PROM_VECTOR:
		return "vector";
	case CO_PROM_MATRIX:
		return "matrix";
	case CO_PROM_SCALAR:
		return "scalar";
	case CO_PROM_STRING:
		return "string";
	}
	return "unknown";
}

int co_prom_result_no_data(const struct co_prom_result *res)
{
	if (res->type == CO_PROM_SCALAR || res->type == CO_PROM_STRING)
		return 0;
	for (size_t i = 0; i < res->n_series; i++)
		if (res->series[i].n_points > 0)
			return 0;
	return 1;
}

void co_prom_result_free(struct co_prom_result *res)
{
	if (!res)
		return;
	for (size_t i = 0; i < res->n_series; i++) {
		json_decref(res->series[i].labels);
		free(res->series[i].points);
	}
	free(res->series);
	free(res->string);
	json_decref(res->warnings);
	free(res);
}

int co_prom_parse_value(const char *s, double *ret_v)
{
	char *end;
	double v;

	/* Prometheus writes special values as NaN, +Inf and -Inf. */
	if (strcmp(s, "NaN") == 0) {
		*ret_v = NAN;
		return 0;
	}
	if (strcmp(s, "+Inf") == 0 || strcmp(s, "Inf") == 0) {
		*ret_v = INFINITY;
		return 0;
	}
	if (strcmp(s, "-Inf") == 0) {
		*ret_v = -INFINITY;
		return 0;
	}
	if (!*s || strpbrk(s, "xXnNiI"))   /* no hex, no other spellings of nan/inf */
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end || (errno == ERANGE && fabs(v) != 0 && !isinf(v)))
		return -EINVAL;
	*ret_v = v;
	return 0;
}

/* [t, "v"] -> point; for strings the second element is returned in *ret_str. */
static int parse_pair(const json_t *pair, struct co_prom_point *p, const char **ret_str,
		      struct co_error *err, const char *what)
{
	const json_t *t = json_array_get(pair, 0), *v = json_array_get(pair, 1);

	if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_number(t) ||
	    !json_is_string(v))
		return co_error_set(err, -EINVAL, "prometheus: malformed %s sample", what);
	p->t = json_number_value(t);
	if (ret_str) {
		*ret_str = json_string_value(v);
		return 0;
	}
	if (co_prom_parse_value(json_string_value(v), &p->v) < 0)
		return co_error_set(err, -EINVAL, "prometheus: bad sample value '%.40s'",
				    json_string_value(v));
	return 0;
}

static int error_code(const char *type)
{
	if (strcmp(type, "bad_data") == 0)
		return -EINVAL;
	if (strcmp(type, "execution") == 0)
		return -EPROTO;
	if (strcmp(type, "timeout") == 0)
		return -ETIMEDOUT;
	if (strcmp(type, "canceled") == 0)
		return -ECANCELED;
	if (strcmp(type, "unavailable") == 0)
		return -EAGAIN;
	return -EIO;
}

static int parse_series(struct co_prom_result *res, const json_t *arr, int matrix,
			struct co_error *err)
{
	size_t n = json_array_size(arr), total = 0, i, k;
	int rc;

	if (n > CO_PROM_MAX_SERIES)
		return co_error_set(err, -E2BIG, "prometheus: %zu series exceed the limit of %d",
				    n, CO_PROM_MAX_SERIES);
	res->series = co_calloc(n ? n : 1, sizeof(*res->series));
	for (i = 0; i < n; i++) {
		const json_t *s = json_array_get(arr, i), *metric = json_object_get(s, "metric");
		struct co_prom_series *out = &res->series[res->n_series];
		const json_t *values;

		if (!json_is_object(s) || (metric && !json_is_object(metric)))
			return co_error_set(err, -EINVAL, "prometheus: malformed series %zu", i);
		out->labels = metric ? json_deep_copy(metric) : json_object();
		res->n_series++;
		if (!matrix) {
			values = json_object_get(s, "value");
			if (!values)   /* a native histogram sample: skipped */
				continue;
			out->points = co_malloc(sizeof(*out->points));
			rc = parse_pair(values, &out->points[0], NULL, err, "vector");
			if (rc < 0)
				return rc;
			out->n_points = 1;
			total++;
		} else {
			values = json_object_get(s, "values");
			if (!values)
				continue;
			if (!json_is_array(values))
				return co_error_set(err, -EINVAL,
						    "prometheus: malformed values of series %zu", i);
			if (total + json_array_size(values) > CO_PROM_MAX_POINTS)
				return co_error_set(err, -E2BIG,
						    "prometheus: more than %d points",
						    CO_PROM_MAX_POINTS);
			out->points = co_malloc((json_array_size(values) + 1) *
						sizeof(*out->points));
			for (k = 0; k < json_array_size(values); k++) {
				rc = parse_pair(json_array_get(values, k), &out->points[k],
						NULL, err, "matrix");
				if (rc < 0)
					return rc;
				out->n_points++;
			}
			total += out->n_points;
		}
	}
	return 0;
}

int co_prom_parse_response(struct co_prom_result **ret_res, long http_code,
			   const char *body, size_t len, struct co_error *err)
{
	struct co_prom_result *res = NULL;
	json_t *root = NULL, *data, *result;
	const char *status, *rtype, *str = NULL;
	json_error_t jerr;
	int rc = 0;

	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	status = json_string_value(json_object_get(root, "status"));
	if (!root || !status) {
		if (http_code < 200 || http_code > 299)
			rc = co_error_set(err, -EIO, "prometheus http %ld: %.200s", http_code,
					  len ? body : "(empty body)");
		else
			rc = co_error_set(err, -EPROTO,
					  "prometheus: answer is not an API response: %s",
					  root ? "no status" : jerr.text);
		goto out;
	}
	if (strcmp(status, "success") != 0) {
		const char *type = json_string_value(json_object_get(root, "errorType"));
		const char *msg = json_string_value(json_object_get(root, "error"));

		rc = co_error_set(err, error_code(type ? type : ""), "prometheus %ld %s: %s",
				  http_code, type ? type : "error", msg ? msg : status);
		goto out;
	}
	data = json_object_get(root, "data");
	rtype = json_string_value(json_object_get(data, "resultType"));
	result = json_object_get(data, "result");
	if (!rtype || !result) {
		rc = co_error_set(err, -EPROTO, "prometheus: success without data.result");
		goto out;
	}
	res = co_calloc(1, sizeof(*res));
	if (json_is_array(json_object_get(root, "warnings")))
		res->warnings = json_incref(json_object_get(root, "warnings"));
	if (strcmp(rtype, "vector") == 0 || strcmp(rtype, "matrix") == 0) {
		res->type = rtype[0] == 'v' ? CO_PROM_VECTOR : CO_PROM_MATRIX;
		if (!json_is_array(result)) {
			rc = co_error_set(err, -EPROTO, "prometheus: %s result is not an array",
					  rtype);
			goto out;
		}
		rc = parse_series(res, result, res->type == CO_PROM_MATRIX, err);
	} else if (strcmp(rtype, "scalar") == 0) {
		res->type = CO_PROM_SCALAR;
		rc = parse_pair(result, &res->scalar, NULL, err, "scalar");
	} else if (strcmp(rtype, "string") == 0) {
		res->type = CO_PROM_STRING;
		rc = parse_pair(result, &res->scalar, &str, err, "string");
		if (rc == 0) {
			res->string = co_strdup(str);
			res->scalar.v = NAN;
		}
	} else {
		rc = co_error_set(err, -EPROTO, "prometheus: unknown result type '%.40s'", rtype);
	}
out:
	json_decref(root);
	if (rc < 0) {
		co_prom_result_free(res);
		return rc;
	}
	*ret_res = res;
	return 0;
}
