/*
 * Pure helpers of the Flux controllers: post-build substitution, spec.path handling
 * and inventory ids. Nothing here touches the loop or the store, so the rules Flux
 * users rely on (defaults, escapes, path cleaning, generated kustomizations) are unit
 * tested directly.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/buf.h"
#include "sim/flux-util.h"

static bool name_char(char c, bool first)
{
	return c == '_' || isalpha((unsigned char)c) ||
	       (!first && isdigit((unsigned char)c));
}

bool ks_flux_var_name_ok(const char *name)
{
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++)
		if (!name_char(*p, p == name))
			return false;
	return true;
}

/* Expand one "${...}" body (without the braces) into out. */
static int expand(struct co_buf *out, const char *body, size_t len, const json_t *vars,
		  bool strict, struct co_error *err)
{
	size_t n = 0;
	char name[256];
	const char *op, *def = NULL;
	size_t deflen = 0;
	bool colon = false, assign_or_dash = false;
	const json_t *v;
	const char *val = NULL;

	while (n < len && name_char(body[n], n == 0))
		n++;
	if (n >= sizeof(name))
		return co_error_set(err, -EINVAL, "variable name too long");
	memcpy(name, body, n);
	name[n] = '\0';
	op = body + n;
	if (n < len) {
		if (*op == ':' && n + 1 < len && (op[1] == '=' || op[1] == '-')) {
			colon = true;
			def = op + 2;
		} else if (*op == '=' || *op == '-') {
			def = op + 1;
		} else {
			return co_error_set(err, -EINVAL,
					    "unsupported substitution '${%.*s}'",
					    (int)len, body);
		}
		assign_or_dash = true;
		deflen = len - (size_t)(def - body);
	}
	v = json_object_get(vars, name);
	if (v && json_is_string(v))
		val = json_string_value(v);
	if (assign_or_dash && (!val || (colon && !*val))) {
		co_buf_append(out, def, deflen);
		return 0;
	}
	if (!val) {
		if (strict)
			return co_error_set(err, -EINVAL,
					    "variable not set (strict mode): \"%s\"",
					    name);
		return 0;
	}
	co_buf_puts(out, val);
	return 0;
}

int ks_flux_subst(char **ret, const char *text, const json_t *vars, bool strict,
		  struct co_error *err)
{
	struct co_buf out = CO_BUF_INIT;
	const char *p = text;
	int r;

	while (*p) {
		if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
			co_buf_puts(&out, "${");
			p += 3;
			continue;
		}
		if (p[0] == '$' && p[1] == '{' && name_char(p[2], true)) {
			const char *end = strchr(p + 2, '}');

			if (!end) {
				co_buf_release(&out);
				return co_error_set(
					err, -EINVAL,
					"unterminated variable reference at '%.20s'", p);
			}
			r = expand(&out, p + 2, (size_t)(end - p - 2), vars, strict, err);
			if (r < 0) {
				co_buf_release(&out);
				return r;
			}
			p = end + 1;
			continue;
		}
		co_buf_putc(&out, *p++);
	}
	*ret = co_buf_detach(&out, NULL);
	if (!*ret)
		*ret = co_strdup("");
	return 0;
}

int ks_kpath_clean(char **ret, const char *path, struct co_error *err)
{
	json_t *segs = json_array();
	struct co_buf out = CO_BUF_INIT;
	const char *p = path ? path : "";
	size_t i;

	while (*p) {
		const char *s = p;
		size_t n;

		while (*p && *p != '/')
			p++;
		n = (size_t)(p - s);
		if (*p == '/')
			p++;
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (json_array_size(segs) == 0) {
				json_decref(segs);
				return co_error_set(err, -EINVAL,
						    "path '%s' points outside the source",
						    path);
			}
			json_array_remove(segs, json_array_size(segs) - 1);
			continue;
		}
		json_array_append_new(segs, json_stringn(s, n));
	}
	for (i = 0; i < json_array_size(segs); i++) {
		if (i)
			co_buf_putc(&out, '/');
		co_buf_puts(&out, json_string_value(json_array_get(segs, i)));
	}
	json_decref(segs);
	*ret = co_buf_detach(&out, NULL);
	if (!*ret)
		*ret = co_strdup("");
	return 0;
}

static const char *const kfiles[] = {"kustomization.yaml", "kustomization.yml",
				     "Kustomization"};

const char *ks_kpath_kustomization_file(const char *dir)
{
	struct stat st;

	for (size_t i = 0; i < sizeof(kfiles) / sizeof(kfiles[0]); i++) {
		char *f = co_asprintf("%s/%s", dir, kfiles[i]);
		int r = stat(f, &st);

		free(f);
		if (r == 0 && S_ISREG(st.st_mode))
			return kfiles[i];
	}
	return NULL;
}

static bool yaml_name(const char *n)
{
	size_t l = strlen(n);

	return (l > 5 && !strcmp(n + l - 5, ".yaml")) ||
	       (l > 4 && !strcmp(n + l - 4, ".yml"));
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk(const char *root, const char *rel, json_t *files, json_t *kdirs,
		int depth)
{
	char *dir = *rel ? co_asprintf("%s/%s", root, rel) : co_strdup(root);
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;
	size_t n = 0, cap = 0;

	if (!d) {
		free(dir);
		return -errno;
	}
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			names = co_realloc(names, cap * sizeof(*names));
		}
		names[n++] = co_strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), str_cmp);
	for (size_t i = 0; i < n; i++) {
		char *full = co_asprintf("%s/%s", dir, names[i]);
		char *sub =
			*rel ? co_asprintf("%s/%s", rel, names[i]) : co_strdup(names[i]);
		struct stat st;

		if (stat(full, &st) == 0) {
			if (S_ISDIR(st.st_mode) && depth < 32) {
				if (ks_kpath_kustomization_file(full))
					json_array_append_new(kdirs, json_string(sub));
				else
					walk(root, sub, files, kdirs, depth + 1);
			} else if (S_ISREG(st.st_mode) && yaml_name(names[i])) {
				json_array_append_new(files, json_string(sub));
			}
		}
		free(full);
		free(sub);
		free(names[i]);
	}
	free(names);
	free(dir);
	return 0;
}

int ks_kpath_collect(const char *dir, json_t **ret_files, json_t **ret_kdirs,
		     struct co_error *err)
{
	json_t *files = json_array(), *kdirs = json_array();
	struct stat st;

	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		json_decref(files);
		json_decref(kdirs);
		return co_error_set(err, -ENOENT, "kustomization path not found: %s",
				    dir);
	}
	walk(dir, "", files, kdirs, 0);
	*ret_files = files;
	*ret_kdirs = kdirs;
	return 0;
}

void ks_kpath_generate(struct co_buf *out, const json_t *files, const json_t *kdirs)
{
	size_t i;
	json_t *v;

	co_buf_puts(out, "apiVersion: kustomize.config.k8s.io/v1beta1\n"
			 "kind: Kustomization\nresources:\n");
	json_array_foreach(files, i, v)
		co_buf_printf(out, "- '%s'\n", json_string_value(v));
	json_array_foreach(kdirs, i, v)
		co_buf_printf(out, "- '%s'\n", json_string_value(v));
}

char *ks_inventory_id(const char *ns, const char *name, const char *group,
		      const char *kind)
{
	return co_asprintf("%s_%s_%s_%s", ns ? ns : "", name, group ? group : "", kind);
}

int ks_inventory_parse(const char *id, char *ret[4])
{
	const char *p = id, *q;
	char *parts[4];
	int i;

	for (i = 0; i < 3; i++) {
		q = strchr(p, '_');
		if (!q)
			goto bad;
		parts[i] = co_strndup(p, (size_t)(q - p));
		p = q + 1;
	}
	if (strchr(p, '_') || !*p || !*parts[1])
		goto bad_all;
	parts[3] = co_strdup(p);
	for (i = 0; i < 4; i++)
		ret[i] = parts[i];
	return 0;
bad_all:
	i = 3;
bad:
	while (i-- > 0)
		free(parts[i]);
	return -EINVAL;
}
