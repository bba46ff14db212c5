/*
 * Fuzz target: kubeconfig documents (untrusted: users hand cutover files from
 * anywhere). Parses and resolves the current context, and parses the same bytes as
 * an exec plugin's ExecCredential. Every failure must come with a message.
 */
#include <stdlib.h>

#include "clients/kubeconfig.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct co_kubeconfig *cfg = NULL;
	struct co_error err = CO_ERROR_INIT;
	char *tok = NULL, *cert = NULL, *key = NULL;
	int64_t exp = 0;

	if (co_kubeconfig_parse(&cfg, (const char *)data, size, "fuzz", "/nonexistent", NULL,
				&err) == 0) {
		if (!cfg->server || !cfg->context)
			abort();
		co_kubeconfig_free(cfg);
	} else if (!err.msg[0]) {
		abort();
	}
	co_error_clear(&err);
	if (co_kubeconfig_parse_exec_credential((const char *)data, size, &tok, &cert, &key,
						&exp, &err) == 0) {
		if (!tok && !(cert && key))
			abort();
		free(tok);
		free(cert);
		free(key);
	} else if (!err.msg[0]) {
		abort();
	}
	return 0;
}
