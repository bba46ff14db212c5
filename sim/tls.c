/*
 * HTTPS for the simulated API servers (contract in tls.h).
 *
 * The proxy runs OpenSSL on memory BIOs so libuv keeps doing all socket I/O: bytes
 * read from the client go into the read BIO, SSL_read() yields plaintext for the
 * backend connection, bytes read from the backend go through SSL_write(), and whatever
 * OpenSSL queued in the write BIO (handshake records, application data, alerts) is
 * flushed to the client after every step. Plaintext that arrives before the backend
 * connection is up is buffered. When either side ends, the other is shut down after
 * its queued writes, then both handles close and the connection is freed in the last
 * close callback.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/buf.h"
#include "base/fs.h"
#include "sim/tls.h"

/* ---- certificate material ---- */

static const char *ssl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_get_error());
	return r ? r : "openssl error";
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "r");
	struct co_buf b = CO_BUF_INIT;
	char chunk[4096];
	size_t n;
	if (!f)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < 1024 * 1024)
		co_buf_append(&b, chunk, n);
	fclose(f);
	return co_buf_detach(&b, NULL);
}

static int write_text(const char *path, const char *text, int mode, struct co_error *err)
{
	return co_fs_write_atomic(path, text, strlen(text), (mode_t)mode, err);
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -1;
	int ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static char *bio_text(BIO *bio)
{
	char *data;
	long n = BIO_get_mem_data(bio, &data);
	return co_strndup(data, (size_t)n);
}

static int generate(char **ret_cert, char **ret_key, struct co_error *err)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
	int rc = -EIO;
	uint64_t serial;
	if (!key || !x || !cb || !kb || RAND_bytes((unsigned char *)&serial, sizeof(serial)) != 1)
		goto out;
	serial &= 0x7fffffffffffffffULL;
	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial | 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"kubesim",
				   -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
				   (const unsigned char *)"kube-apiserver", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (add_ext(x, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature,keyCertSign") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost") < 0)
		goto out;
	if (!X509_sign(x, key, EVP_sha256()) || !PEM_write_bio_X509(cb, x) ||
	    !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
		goto out;
	*ret_cert = bio_text(cb);
	*ret_key = bio_text(kb);
	rc = 0;
out:
	if (rc < 0)
		co_error_set(err, rc, "generate TLS certificate: %s", ssl_reason());
	BIO_free(cb);
	BIO_free(kb);
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

int ks_tls_material(const char *dir, char **ret_cert_pem, char **ret_key_pem,
		    struct co_error *err)
{
	char *cpath = co_asprintf("%s/tls.crt", dir), *kpath = co_asprintf("%s/tls.key", dir);
	char *cert = read_text(cpath), *key = read_text(kpath);
	int rc = 0;
	if (!cert || !key || !strstr(cert, "BEGIN CERTIFICATE") || !strstr(key, "PRIVATE KEY")) {
		free(cert);
		free(key);
		cert = key = NULL;
		rc = generate(&cert, &key, err);
		if (rc == 0)
			rc = write_text(kpath, key, 0600, err);
		if (rc == 0)
			rc = write_text(cpath, cert, 0644, err);
	}
	if (rc < 0) {
		free(cert);
		free(key);
	} else {
		*ret_cert_pem = cert;
		*ret_key_pem = key;
	}
	free(cpath);
	free(kpath);
	return rc;
}

/* ---- proxy ---- */

struct conn;

struct ks_tls_proxy {
	uv_loop_t *loop;
	uv_tcp_t server;
	SSL_CTX *ctx;
	int backend_port;
	int port;
	struct conn *conns;
	bool closing;
	int open; /* server handle + connections still closing */
	void (*close_cb)(void *data);
	void *close_data;
};

struct conn {
	struct ks_tls_proxy *p;
	uv_tcp_t client;
	uv_tcp_t backend;
	uv_connect_t connect;
	SSL *ssl;
	BIO *rbio, *wbio;       /* owned by ssl */
	struct co_buf early;    /* plaintext before the backend is connected */
	bool connected;
	bool closing;
	int handles;            /* open uv handles */
	struct conn *next, **pprev;
};

struct wreq {
	uv_write_t req;
	char data[];
};

static void conn_close(struct conn *c);

static void proxy_maybe_done(struct ks_tls_proxy *p)
{
	if (--p->open > 0)
		return;
	void (*cb)(void *) = p->close_cb;
	void *data = p->close_data;
	SSL_CTX_free(p->ctx);
	free(p);
	if (cb)
		cb(data);
}

static void write_cb(uv_write_t *req, int status)
{
	free(req);
}

static void send_to(uv_tcp_t *h, const char *data, size_t len)
{
	struct wreq *w = co_malloc(sizeof(*w) + len);
	memcpy(w->data, data, len);
	uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)h, &buf, 1, write_cb) < 0)
		free(w);
}

static void flush_tls(struct conn *c)
{
	char buf[16384];
	int n;
	while ((n = BIO_read(c->wbio, buf, sizeof(buf))) > 0)
		send_to(&c->client, buf, (size_t)n);
}

static void handle_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	if (--c->handles > 0)
		return;
	struct ks_tls_proxy *p = c->p;
	SSL_free(c->ssl);
	co_buf_release(&c->early);
	free(c);
	proxy_maybe_done(p);
}

static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->pprev) {
		*c->pprev = c->next;
		if (c->next)
			c->next->pprev = c->pprev;
		c->pprev = NULL;
	}
	uv_close((uv_handle_t *)&c->client, handle_close_cb);
	uv_close((uv_handle_t *)&c->backend, handle_close_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;
	free(req);
	conn_close(c);
}

/* Finish sending what is queued on h, then close the connection. */
static void drain_and_close(struct conn *c, uv_tcp_t *h)
{
	if (c->closing)
		return;
	uv_shutdown_t *req = co_malloc(sizeof(*req));
	req->data = c;
	if (uv_shutdown(req, (uv_stream_t *)h, shutdown_cb) < 0) {
		free(req);
		conn_close(c);
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = co_malloc(65536);
	buf->len = 65536;
}

static void to_backend(struct conn *c, const char *data, size_t len)
{
	if (c->connected)
		send_to(&c->backend, data, len);
	else if (c->early.len + len <= 1024 * 1024)
		co_buf_append(&c->early, data, len);
	else
		conn_close(c); /* a client that talks that much before we connect is odd */
}

static void pump_tls(struct conn *c)
{
	char buf[16384];
	if (!SSL_is_init_finished(c->ssl)) {
		int r = SSL_do_handshake(c->ssl);
		flush_tls(c);
		if (r <= 0) {
			int e = SSL_get_error(c->ssl, r);
			if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				drain_and_close(c, &c->client);
			}
			return;
		}
	}
	for (;;) {
		int n = SSL_read(c->ssl, buf, sizeof(buf));
		if (n > 0) {
			to_backend(c, buf, (size_t)n);
			if (c->closing)
				return;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		flush_tls(c);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return;
		ERR_clear_error();
		/* close_notify or a protocol error: let the backend finish, then close */
		if (c->connected)
			drain_and_close(c, &c->backend);
		else
			conn_close(c);
		return;
	}
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (nread > 0 && !c->closing) {
		BIO_write(c->rbio, buf->base, (int)nread);
		pump_tls(c);
	} else if (nread < 0 && !c->closing) {
		if (c->connected)
			drain_and_close(c, &c->backend);
		else
			conn_close(c);
	}
	free(buf->base);
}

static void backend_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	if (nread > 0 && !c->closing) {
		if (SSL_write(c->ssl, buf->base, (int)nread) <= 0) {
			ERR_clear_error();
			conn_close(c);
		} else {
			flush_tls(c);
		}
	} else if (nread < 0 && !c->closing) {
		SSL_shutdown(c->ssl);
		flush_tls(c);
		drain_and_close(c, &c->client);
	}
	free(buf->base);
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct conn *c = req->data;
	if (c->closing)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	c->connected = true;
	if (c->early.len > 0) {
		send_to(&c->backend, c->early.data, c->early.len);
		co_buf_release(&c->early);
	}
	uv_read_start((uv_stream_t *)&c->backend, alloc_cb, backend_read_cb);
}

static void accept_cb(uv_stream_t *server, int status)
{
	struct ks_tls_proxy *p = server->data;
	if (status < 0 || p->closing)
		return;
	struct conn *c = co_calloc(1, sizeof(*c));
	c->p = p;
	co_buf_init(&c->early);
	uv_tcp_init(p->loop, &c->client);
	uv_tcp_init(p->loop, &c->backend);
	c->client.data = c->backend.data = c;
	c->handles = 2;
	p->open++;
	c->next = p->conns;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &p->conns;
	p->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->client) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->client, 1);
	uv_tcp_nodelay(&c->backend, 1);
	c->ssl = SSL_new(p->ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_accept_state(c->ssl);
	struct sockaddr_in addr;
	uv_ip4_addr("127.0.0.1", p->backend_port, &addr);
	c->connect.data = c;
	if (uv_tcp_connect(&c->connect, &c->backend, (const struct sockaddr *)&addr,
			   connect_cb) < 0) {
		conn_close(c);
		return;
	}
	uv_read_start((uv_stream_t *)&c->client, alloc_cb, client_read_cb);
}

static SSL_CTX *make_ctx(const char *cert_pem, const char *key_pem, struct co_error *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	BIO *cb = BIO_new_mem_buf(cert_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	bool ok = ctx && x && k && SSL_CTX_use_certificate(ctx, x) == 1 &&
		  SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1 &&
		  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
	X509_free(x);
	EVP_PKEY_free(k);
	BIO_free(cb);
	BIO_free(kb);
	if (!ok) {
		co_error_set(err, -EINVAL, "TLS context: %s", ssl_reason());
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

static void server_close_cb(uv_handle_t *h);

int ks_tls_proxy_new(struct ks_tls_proxy **ret, uv_loop_t *loop,
		     const struct ks_tls_proxy_opts *opts, struct co_error *err)
{
	SSL_CTX *ctx = make_ctx(opts->cert_pem, opts->key_pem, err);
	if (!ctx)
		return -EINVAL;
	struct ks_tls_proxy *p = co_calloc(1, sizeof(*p));
	struct sockaddr_in addr;
	int rc;
	p->loop = loop;
	p->ctx = ctx;
	p->backend_port = opts->backend_port;
	uv_tcp_init(loop, &p->server);
	p->server.data = p;
	p->open = 1;
	uv_ip4_addr("127.0.0.1", opts->port, &addr);
	if ((rc = uv_tcp_bind(&p->server, (const struct sockaddr *)&addr, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&p->server, 511, accept_cb)) < 0) {
		co_error_set(err, rc, "listen on '127.0.0.1:%d': %s", opts->port, uv_strerror(rc));
		p->closing = true;
		uv_close((uv_handle_t *)&p->server, server_close_cb); /* frees p and ctx */
		return rc;
	}
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	uv_tcp_getsockname(&p->server, (struct sockaddr *)&ss, &len);
	p->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	*ret = p;
	return 0;
}

int ks_tls_proxy_port(const struct ks_tls_proxy *p)
{
	return p->port;
}

static void server_close_cb(uv_handle_t *h)
{
	proxy_maybe_done(h->data);
}

void ks_tls_proxy_close(struct ks_tls_proxy *p, void (*cb)(void *data), void *data)
{
	p->closing = true;
	p->close_cb = cb;
	p->close_data = data;
	while (p->conns)
		conn_close(p->conns);
	uv_close((uv_handle_t *)&p->server, server_close_cb);
}
