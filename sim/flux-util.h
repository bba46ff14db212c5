/*
 * Pure helpers of the Flux controllers, kept apart from the loop code so they are unit
 * tested on their own: post-build variable substitution as kustomize-controller does
 * it, the handling of a Kustomization's spec.path inside a checked-out source, and the
 * inventory entry ids.
 */
#ifndef KS_FLUX_UTIL_H
#define KS_FLUX_UTIL_H

#include <jansson.h>
#include <stdbool.h>

#include "base/buf.h"
#include "base/error.h"

/*
 * Substitute variables in text as Flux's post-build does (its fork of envsubst that
 * only knows the braced form): "${VAR}", "${VAR:=default}" and "${VAR:-default}" (use
 * the default when VAR is unset or empty), "${VAR=default}" and "${VAR-default}"
 * (default only when unset); "$${VAR}" is an escape for the literal "${VAR}". A bare
 * "$VAR" is left alone. vars is an object of strings (borrowed). An unset variable
 * without a default becomes "" unless strict, where it is -EINVAL with err
 * "variable not set (strict mode): \"VAR\"". An unterminated "${" is -EINVAL.
 * Variable names follow [_a-zA-Z][_a-zA-Z0-9]*; "${" followed by anything else is
 * copied literally. *ret: new string, caller frees.
 */
int ks_flux_subst(char **ret, const char *text, const json_t *vars, bool strict,
		  struct co_error *err);

/* Whether name is a valid substitution variable name. */
bool ks_flux_var_name_ok(const char *name);

/*
 * Clean a Kustomization spec.path into a path relative to the source root: leading
 * "./" and "/" are dropped, "." segments and repeated slashes removed, ".." resolved;
 * a path escaping the root is -EINVAL. "" means the root. *ret: new string.
 */
int ks_kpath_clean(char **ret, const char *path, struct co_error *err);

/* The kustomization file in dir ("kustomization.yaml", "kustomization.yml" or
 * "Kustomization"), or NULL when there is none. Returns a static string. */
const char *ks_kpath_kustomization_file(const char *dir);

/*
 * Walk dir as kustomize-controller does when it has to generate a kustomization:
 * *ret_files gets every YAML file (.yaml, .yml) under dir (recursively, hidden entries
 * skipped), *ret_kdirs every subdirectory holding its own kustomization file (not
 * descended into); both are arrays of paths relative to dir, sorted. New references.
 * -ENOENT with err when dir does not exist ("kustomization path not found: ...").
 */
int ks_kpath_collect(const char *dir, json_t **ret_files, json_t **ret_kdirs,
		     struct co_error *err);

/* The kustomization.yaml text listing files and kdirs as resources. */
void ks_kpath_generate(struct co_buf *out, const json_t *files, const json_t *kdirs);

/* Inventory entry id "<ns>_<name>_<group>_<kind>" (ns and group may be ""). New
 * string. */
char *ks_inventory_id(const char *ns, const char *name, const char *group,
		      const char *kind);
/* Split an id into its four parts (new strings in ret[0..3]); -EINVAL if malformed. */
int ks_inventory_parse(const char *id, char *ret[4]);

#endif
