/*
 * ks_tls: HTTPS in front of a cluster's plain HTTP API server.
 *
 * kubectl (client-go) only sends a kubeconfig's bearer token to https servers, so each
 * simulated API listens with TLS. ks_tls_material() loads or creates the cluster's
 * certificate: one self-signed P-256 certificate (CA:TRUE, subjectAltName IP 127.0.0.1
 * and DNS localhost) that is both the server certificate and the kubeconfig's
 * certificate-authority-data. A ks_tls_proxy accepts TLS connections on the public
 * port and relays the decrypted bytes to the API server's loopback port, one backend
 * connection per client connection, so HTTP keep-alive and chunked watches pass
 * through unchanged.
 */
#ifndef KS_TLS_H
#define KS_TLS_H

#include <uv.h>

#include "base/error.h"

/*
 * Load dir/tls.crt and dir/tls.key, or create them (key file mode 0600) when missing.
 * *ret_cert_pem and *ret_key_pem: new strings (caller frees; the key is a secret).
 * -EIO / -EINVAL with err.
 */
int ks_tls_material(const char *dir, char **ret_cert_pem, char **ret_key_pem,
		    struct co_error *err);

struct ks_tls_proxy;

struct ks_tls_proxy_opts {
	int port;              /* public port; 0 = ephemeral */
	int backend_port;      /* plain HTTP on 127.0.0.1 */
	const char *cert_pem;  /* copied into the SSL context */
	const char *key_pem;
};

int ks_tls_proxy_new(struct ks_tls_proxy **ret, uv_loop_t *loop,
		     const struct ks_tls_proxy_opts *opts, struct co_error *err);
int ks_tls_proxy_port(const struct ks_tls_proxy *p);

/* Stop listening and close every relayed connection; cb (may be NULL) runs once all
 * handles are closed and the proxy is freed. */
void ks_tls_proxy_close(struct ks_tls_proxy *p, void (*cb)(void *data), void *data);

#endif
