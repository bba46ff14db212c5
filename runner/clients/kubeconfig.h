/*
 * kubeconfig: what kubectl reads, resolved to the one context a client uses.
 *
 * Loading follows kubectl: KUBECONFIG may list several files (':'-separated); for maps
 * (clusters, users, contexts) the first file that defines a name wins, and the first
 * file that sets current-context wins. Credentials supported: bearer token (inline or
 * tokenFile), client certificate and key (inline *-data base64, or file paths resolved
 * relative to the kubeconfig's directory), certificate-authority(-data),
 * insecure-skip-tls-verify, and exec credential plugins (client.authentication.k8s.io
 * v1 and v1beta1 ExecCredential). Input is untrusted: bounded file size, every field
 * type-checked, errors name the file and the field.
 */
#ifndef CO_CLIENTS_KUBECONFIG_H
#define CO_CLIENTS_KUBECONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define CO_KUBECONFIG_MAX_BYTES (4 * 1024 * 1024)

struct co_kubeconfig_exec {
	char *api_version;       /* client.authentication.k8s.io/v1 or v1beta1 */
	char *command;
	char **args;             /* NULL-terminated */
	char **env;              /* "NAME=value", NULL-terminated */
	int interactive_never;   /* interactiveMode: Never (we never have a TTY anyway) */
};

struct co_kubeconfig {
	char *context;           /* context name in use */
	char *cluster_name;
	char *user_name;
	char *server;            /* https://host:port, without trailing '/' */
	char *namespace_;        /* context namespace or "default" */
	char *ca_pem;            /* decoded PEM or NULL */
	size_t ca_pem_len;
	char *cert_pem;
	size_t cert_pem_len;
	char *key_pem;
	size_t key_pem_len;
	char *token;             /* bearer token or NULL (never log it) */
	char *username;          /* basic auth (rare) */
	char *password;
	int insecure_skip_verify;
	char *tls_server_name;
	struct co_kubeconfig_exec *exec; /* NULL unless an exec plugin is configured */
};

/*
 * Load and resolve. paths: a ':'-separated list (NULL: $KUBECONFIG, else
 * ~/.kube/config). context: NULL for current-context. On success *ret_cfg is new
 * (free with co_kubeconfig_free()); on failure err says which file and what:
 * "kubeconfig '/x/config': context 'prod' not found".
 */
int co_kubeconfig_load(struct co_kubeconfig **ret_cfg, const char *paths,
		       const char *context, struct co_error *err);

/* Parse one kubeconfig document given as text (name used in messages, dir for
 * relative paths; may be NULL). */
int co_kubeconfig_parse(struct co_kubeconfig **ret_cfg, const char *text, size_t len,
			const char *name, const char *dir, const char *context,
			struct co_error *err);

/*
 * Parse an exec plugin's stdout (an ExecCredential) into token / cert / key and the
 * expiry (wall ms, 0 = none). Fields are new strings (caller frees) or NULL.
 */
int co_kubeconfig_parse_exec_credential(const char *text, size_t len, char **ret_token,
					char **ret_cert_pem, char **ret_key_pem,
					int64_t *ret_expiry_ms, struct co_error *err);

/* Write a kubeconfig with one cluster/user/context and a bearer token (used for
 * kubesim's and providers' generated configs). Returns a new YAML string. */
char *co_kubeconfig_render_token(const char *name, const char *server, const char *token,
				 const char *ca_pem);

void co_kubeconfig_free(struct co_kubeconfig *cfg);

#endif
