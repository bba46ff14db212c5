/*
 * The HTTP client: one CURLM per client, driven by libuv. libcurl tells us which
 * sockets to watch (socket callback -> one uv_poll per socket, its context attached
 * with curl_multi_assign) and when to wake it (timer callback -> one uv_timer); every
 * poll event and timer expiry calls curl_multi_socket_action() and then drains
 * curl_multi_info_read() for finished transfers, whose callbacks run right there.
 *
 * Cancellation never calls back re-entrantly: co_http_cancel() and
 * co_http_client_close() only mark calls and arm a zero-delay "defer" timer; its
 * callback removes the marked transfers from the multi handle and reports -ECANCELED.
 * Marked transfers stop feeding data at once (the write callback refuses it).
 *
 * Lifetime: a poll context is freed only in its close callback (curl may reuse the fd
 * number for a new socket meanwhile, which then gets a fresh context). The client is
 * freed when its timers and every poll have closed, after curl_multi_cleanup().
 */
#include "net/http-client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/log.h"
#include "base/time.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_MAX_BODY	   ((size_t)64 * 1024 * 1024)
/* Bound on the raw header block of one response (curl bounds each single line). */
#define MAX_HEADER_BLOCK (256 * 1024)

struct poll_ctx {
	uv_poll_t poll;
	curl_socket_t fd;
	struct co_http_client *client;
	struct poll_ctx *prev, *next;
};

struct co_http_call {
	struct co_http_client *client;
	struct co_http_call *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	char *method;
	char *url;
	char *body;
	size_t body_len;
	size_t max_body;
	char *user;
	char *password;
	co_http_data_cb on_data;
	co_http_cb cb;
	void *data;
	int cancelled;	  /* co_http_cancel() or client close: report -ECANCELED */
	int abort_status; /* set when a write/header callback stops the transfer */
	uint64_t start_ms;
	struct co_http_response res;
	char errbuf[CURL_ERROR_SIZE];
};

struct co_http_client {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer; /* curl's timeout */
	uv_timer_t defer; /* cancellations and close, from the loop */
	int open_handles;
	int poll_errno; /* socket error behind the poll error being handled */
	int closing;
	int torn_down;
	struct co_http_call *calls;
	struct poll_ctx *polls;
	co_http_client_close_cb close_cb;
	void *close_data;
};

static void check_multi_info(struct co_http_client *c);

/* --- response helpers ------------------------------------------------------- */

char *co_http_response_header(const struct co_http_response *res, const char *name)
{
	const char *p = res->headers.data;
	const char *end = p ? p + res->headers.len : NULL;
	size_t nlen = strlen(name);

	while (p && p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = eol ? eol : end;

		if ((size_t)(line_end - p) > nlen && p[nlen] == ':' &&
		    !strncasecmp(p, name, nlen)) {
			const char *v = p + nlen + 1;
			const char *ve = line_end;

			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v &&
			       (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			return co_strndup(v, (size_t)(ve - v));
		}
		p = eol ? eol + 1 : end;
	}
	return NULL;
}

int co_http_response_json(const struct co_http_response *res, json_t **ret,
			  struct co_error *err)
{
	json_error_t jerr;
	json_t *j;

	j = json_loadb(res->body.data ? res->body.data : "", res->body.len,
		       JSON_DECODE_ANY, &jerr);
	if (!j)
		return co_error_set(err, -EINVAL, "invalid json at line %d column %d: %s",
				    jerr.line, jerr.column, jerr.text);
	*ret = j;
	return 0;
}

/* --- completion ----------------------------------------------------------------- */

/* "Connection refused" -> "connection refused", but "OpenSSL ..." stays. */
static void lower_first(char *s)
{
	if (s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'a' && s[1] <= 'z')
		s[0] = (char)(s[0] - 'A' + 'a');
}

static int map_result(struct co_http_call *call, CURLcode rc, char *msg, size_t n)
{
	long os_errno = 0;

	if (call->cancelled) {
		snprintf(msg, n, "cancelled");
		return -ECANCELED;
	}
	if (call->abort_status) {
		if (call->abort_status == -E2BIG)
			snprintf(msg, n, "response body over %zu bytes", call->max_body);
		else if (call->abort_status == -EPROTO)
			snprintf(msg, n, "response headers over %d bytes",
				 MAX_HEADER_BLOCK);
		else
			snprintf(msg, n, "aborted by the data callback");
		return call->abort_status;
	}
	curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(msg, n, "timed out after %llu ms",
			 (unsigned long long)(co_time_mono_ms() - call->start_ms));
		return -ETIMEDOUT;
	case CURLE_COULDNT_CONNECT:
		if (os_errno > 0 && os_errno != ECONNREFUSED) {
			snprintf(msg, n, "%s", strerror((int)os_errno));
			lower_first(msg);
			return -(int)os_errno;
		}
		snprintf(msg, n, "connection refused");
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		snprintf(msg, n, "could not resolve host");
		return -EHOSTUNREACH;
	case CURLE_FILESIZE_EXCEEDED:
		snprintf(msg, n, "response body over %zu bytes", call->max_body);
		return -E2BIG;
	case CURLE_ABORTED_BY_CALLBACK:
		snprintf(msg, n, "cancelled");
		return -ECANCELED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		snprintf(msg, n, "tls: %s",
			 call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
		return -EPROTO;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_GOT_NOTHING:
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(msg, n, "bad response: %s",
			 call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
		return -EPROTO;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		/* With CURL_CSELECT_ERR curl fails the transfer without a syscall of its
		 * own, so the socket's error is the one on_poll() fetched. */
		if (os_errno <= 0)
			os_errno = call->client->poll_errno;
		if (os_errno > 0) {
			snprintf(msg, n, "%s", strerror((int)os_errno));
			lower_first(msg);
			return -(int)os_errno;
		}
		/* No socket error on a TLS connection: the peer sent an alert (with TLS
		 * 1.3 a refused client certificate surfaces on the first read). */
		if (!strncasecmp(call->url, "https:", 6)) {
			snprintf(msg, n, "tls: %s",
				 call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
			return -EPROTO;
		}
		break;
	default:
		break;
	}
	snprintf(msg, n, "%s", call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc));
	lower_first(msg);
	return -EIO;
}

static void unlink_call(struct co_http_call *call)
{
	struct co_http_client *c = call->client;

	if (call->prev)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
}

static void free_call(struct co_http_call *call)
{
	if (!call)
		return;
	if (call->easy)
		curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->headers);
	co_buf_release(&call->res.headers);
	co_buf_release(&call->res.body);
	free(call->method);
	free(call->url);
	free(call->body);
	free(call->user);
	if (call->password) {
		memset(call->password, 0, strlen(call->password));
		free(call->password);
	}
	free(call);
}

/* The one place a call ends: leaves the multi, reports once, frees. Only ever runs
 * from a loop callback, never inside a libcurl callback. */
static void finish_call(struct co_http_call *call, CURLcode rc)
{
	struct co_http_client *c = call->client;
	char msg[CO_ERROR_MSG_MAX];
	long code = 0;

	curl_multi_remove_handle(c->multi, call->easy);
	unlink_call(call);
	msg[0] = '\0';
	call->res.status = map_result(call, rc, msg, sizeof(msg));
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
	call->res.code = code;
	call->res.elapsed_ms = co_time_mono_ms() - call->start_ms;
	if (call->res.status < 0)
		co_error_set(&call->res.err, call->res.status, "%s '%s': %s",
			     call->method, call->url, msg);
	co_log_debug("http", "%s '%s': status %d code %ld in %llu ms", call->method,
		     call->url, call->res.status, code,
		     (unsigned long long)call->res.elapsed_ms);
	call->cb(&call->res, call->data);
	free_call(call);
}

static void check_multi_info(struct co_http_client *c)
{
	CURLMsg *m;
	int pending;

	while ((m = curl_multi_info_read(c->multi, &pending))) {
		struct co_http_call *call = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		/* m is invalid once the handle is removed: take the result first. */
		finish_call(call, m->data.result);
	}
}

/* --- libuv <-> libcurl ------------------------------------------------------ */

static void on_poll_close(uv_handle_t *h)
{
	struct poll_ctx *p = h->data;
	struct co_http_client *c = p->client;

	if (p->prev)
		p->prev->next = p->next;
	else
		c->polls = p->next;
	if (p->next)
		p->next->prev = p->prev;
	free(p);
	c->open_handles--;
	if (c->torn_down && c->open_handles == 0) {
		co_http_client_close_cb cb = c->close_cb;
		void *data = c->close_data;

		free(c);
		if (cb)
			cb(data);
	}
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct poll_ctx *p = h->data;
	struct co_http_client *c = p->client;
	int flags = 0;
	int running = 0;

	if (status < 0) {
		int so_error = 0;
		socklen_t len = sizeof(so_error);

		/* libuv has stopped this poll; curl must fail the transfer, and the
		 * message should name the socket's error ("connection reset by peer"). */
		flags = CURL_CSELECT_ERR;
		if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) == 0)
			c->poll_errno = so_error;
	} else {
		if (events & UV_READABLE)
			flags |= CURL_CSELECT_IN;
		if (events & UV_WRITABLE)
			flags |= CURL_CSELECT_OUT;
	}
	curl_multi_socket_action(c->multi, p->fd, flags, &running);
	check_multi_info(c);
	c->poll_errno = 0;
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct co_http_client *c = userp;
	struct poll_ctx *p = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		if (p) {
			uv_poll_stop(&p->poll);
			uv_close((uv_handle_t *)&p->poll, on_poll_close);
			curl_multi_assign(c->multi, fd, NULL);
		}
		return 0;
	}
	if (!p) {
		p = co_calloc(1, sizeof(*p));
		p->fd = fd;
		p->client = c;
		if (uv_poll_init_socket(c->loop, &p->poll, fd) < 0) {
			free(p);
			return -1;
		}
		p->poll.data = p;
		p->next = c->polls;
		if (c->polls)
			c->polls->prev = p;
		c->polls = p;
		c->open_handles++;
		curl_multi_assign(c->multi, fd, p);
	}
	if (what & CURL_POLL_IN)
		events |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		events |= UV_WRITABLE;
	uv_poll_start(&p->poll, events, on_poll);
	return 0;
}

static void on_timeout(uv_timer_t *t)
{
	struct co_http_client *c = t->data;
	int running = 0;

	curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_multi_info(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct co_http_client *c = userp;

	if (c->torn_down)
		return 0;
	if (timeout_ms < 0)
		uv_timer_stop(&c->timer);
	else
		uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
	return 0;
}

/* --- client lifecycle ------------------------------------------------------- */

static void on_timer_close(uv_handle_t *h)
{
	struct co_http_client *c = h->data;

	c->open_handles--;
	if (c->torn_down && c->open_handles == 0) {
		co_http_client_close_cb cb = c->close_cb;
		void *data = c->close_data;

		free(c);
		if (cb)
			cb(data);
	}
}

static void teardown(struct co_http_client *c)
{
	c->torn_down = 1;
	/* May report CURL_POLL_REMOVE for sockets of cached connections. */
	curl_multi_cleanup(c->multi);
	c->multi = NULL;
	for (struct poll_ctx *p = c->polls; p; p = p->next)
		if (!uv_is_closing((uv_handle_t *)&p->poll))
			uv_close((uv_handle_t *)&p->poll, on_poll_close);
	uv_close((uv_handle_t *)&c->timer, on_timer_close);
	uv_close((uv_handle_t *)&c->defer, on_timer_close);
}

static void on_defer(uv_timer_t *t)
{
	struct co_http_client *c = t->data;
	struct co_http_call *call;

	/* Finish one marked call at a time: a callback may cancel or start others. */
	for (;;) {
		for (call = c->calls; call && !call->cancelled; call = call->next)
			;
		if (!call)
			break;
		finish_call(call, CURLE_ABORTED_BY_CALLBACK);
	}
	if (c->closing && !c->torn_down && !c->calls)
		teardown(c);
}

static void arm_defer(struct co_http_client *c)
{
	if (!c->torn_down)
		uv_timer_start(&c->defer, on_defer, 0, 0);
}

int co_http_client_new(struct co_http_client **ret_client, uv_loop_t *loop,
		       struct co_error *err)
{
	static int curl_ready;
	struct co_http_client *c;

	if (!curl_ready) {
		CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

		if (rc != CURLE_OK)
			return co_error_set(err, -EIO, "http client: curl init: %s",
					    curl_easy_strerror(rc));
		curl_ready = 1;
	}
	c = co_calloc(1, sizeof(*c));
	c->loop = loop;
	c->multi = curl_multi_init();
	if (!c->multi) {
		free(c);
		return co_error_set(err, -ENOMEM, "http client: curl_multi_init failed");
	}
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	uv_timer_init(loop, &c->timer);
	uv_timer_init(loop, &c->defer);
	c->timer.data = c->defer.data = c;
	c->open_handles = 2;
	*ret_client = c;
	return 0;
}

void co_http_client_close(struct co_http_client *c, co_http_client_close_cb cb,
			  void *data)
{
	if (!c || c->closing)
		return;
	c->closing = 1;
	c->close_cb = cb;
	c->close_data = data;
	for (struct co_http_call *call = c->calls; call; call = call->next)
		call->cancelled = 1;
	arm_defer(c);
}

/* --- requests ------------------------------------------------------------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct co_http_call *call = userdata;
	size_t n = size * nmemb;

	if (call->cancelled || call->abort_status)
		return CURL_WRITEFUNC_ERROR;
	if (call->on_data) {
		if (call->on_data(ptr, n, call->data)) {
			call->abort_status = -ECANCELED;
			return CURL_WRITEFUNC_ERROR;
		}
		return n;
	}
	if (n > call->max_body - call->res.body.len) {
		call->abort_status = -E2BIG;
		return CURL_WRITEFUNC_ERROR;
	}
	co_buf_append(&call->res.body, ptr, n);
	return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct co_http_call *call = userdata;
	size_t n = size * nmemb;

	if (call->cancelled)
		return CURL_WRITEFUNC_ERROR;
	/* A status line starts a new response (after 100 Continue or a redirect): keep
	 * only the final one. */
	if (n >= 5 && !memcmp(ptr, "HTTP/", 5))
		co_buf_reset(&call->res.headers);
	if (call->res.headers.len + n > MAX_HEADER_BLOCK) {
		call->abort_status = -EPROTO;
		return CURL_WRITEFUNC_ERROR;
	}
	co_buf_append(&call->res.headers, ptr, n);
	return n;
}

static int has_header(const char *const *headers, const char *name)
{
	size_t nlen = strlen(name);

	for (size_t i = 0; headers && headers[i]; i++)
		if (!strncasecmp(headers[i], name, nlen) && headers[i][nlen] == ':')
			return 1;
	return 0;
}

static int setup_easy(struct co_http_call *call, const struct co_http_req_opts *o,
		      char *msg, size_t n)
{
	CURL *e = call->easy;
	int is_head = !strcmp(call->method, "HEAD");
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                    \
	do {                                                                             \
		if (rc == CURLE_OK)                                                      \
			rc = curl_easy_setopt(e, opt, val);                              \
	} while (0)

	SET(CURLOPT_URL, call->url);
	SET(CURLOPT_PRIVATE, call);
	SET(CURLOPT_ERRORBUFFER, call->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, call);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, call);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TIMEOUT_MS, (long)o->timeout_ms);
	SET(CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(o->connect_timeout_ms ? o->connect_timeout_ms
					 : DEFAULT_CONNECT_TIMEOUT_MS));
	if (!call->on_data)
		SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)call->max_body);

	if (is_head) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (!strcmp(call->method, "POST")) {
		SET(CURLOPT_POST, 1L);
	} else if (strcmp(call->method, "GET") || call->body) {
		SET(CURLOPT_CUSTOMREQUEST, call->method);
	}
	if (call->body || !strcmp(call->method, "POST")) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
		SET(CURLOPT_POSTFIELDS, call->body ? call->body : "");
	}

	if (call->user) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, call->user);
		SET(CURLOPT_PASSWORD, call->password ? call->password : "");
	}
	if (o->unix_socket)
		SET(CURLOPT_UNIX_SOCKET_PATH, o->unix_socket);

	if (o->ca_pem) {
		struct curl_blob b = {(void *)o->ca_pem, o->ca_pem_len, CURL_BLOB_COPY};

		SET(CURLOPT_CAINFO_BLOB, &b);
	}
	if (o->cert_pem) {
		struct curl_blob b = {(void *)o->cert_pem, o->cert_pem_len,
				      CURL_BLOB_COPY};

		SET(CURLOPT_SSLCERTTYPE, "PEM");
		SET(CURLOPT_SSLCERT_BLOB, &b);
	}
	if (o->key_pem) {
		struct curl_blob b = {(void *)o->key_pem, o->key_pem_len, CURL_BLOB_COPY};

		SET(CURLOPT_SSLKEYTYPE, "PEM");
		SET(CURLOPT_SSLKEY_BLOB, &b);
	}
	if (o->insecure_skip_verify) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	SET(CURLOPT_HTTPHEADER, call->headers);
#undef SET
	if (rc != CURLE_OK) {
		snprintf(msg, n, "%s", curl_easy_strerror(rc));
		lower_first(msg);
		return -EINVAL;
	}
	return 0;
}

static int build_headers(struct co_http_call *call, const struct co_http_req_opts *o)
{
	struct curl_slist *l = NULL, *t;

	for (size_t i = 0; o->headers && o->headers[i]; i++) {
		t = curl_slist_append(l, o->headers[i]);
		if (!t)
			goto oom;
		l = t;
	}
	/* A simple server that does not answer "100 Continue" would cost every upload
	 * a one-second wait. */
	if (!has_header(o->headers, "Expect")) {
		t = curl_slist_append(l, "Expect:");
		if (!t)
			goto oom;
		l = t;
	}
	/* libcurl would label a raw body as a form; without a type given, send none. */
	if (o->body && !has_header(o->headers, "Content-Type")) {
		t = curl_slist_append(l, "Content-Type:");
		if (!t)
			goto oom;
		l = t;
	}
	if (o->bearer_token) {
		char *h = co_asprintf("Authorization: Bearer %s", o->bearer_token);

		t = curl_slist_append(l, h);
		memset(h, 0, strlen(h));
		free(h);
		if (!t)
			goto oom;
		l = t;
	}
	call->headers = l;
	return 0;
oom:
	curl_slist_free_all(l);
	return -ENOMEM;
}

int co_http_request(struct co_http_client *c, struct co_http_call **ret_call,
		    const struct co_http_req_opts *o, co_http_cb cb, void *data,
		    struct co_error *err)
{
	const char *method;
	struct co_http_call *call;
	char msg[CO_ERROR_MSG_MAX];
	CURLMcode mrc;
	int r;

	if (!c || !o || !o->url || !cb)
		return co_error_set(err, -EINVAL,
				    "http request: missing client, url or callback");
	method = o->method ? o->method : o->body ? "POST" : "GET";
	if (c->closing)
		return co_error_set(err, -ECANCELED, "%s '%s': client is closing", method,
				    o->url);

	call = co_calloc(1, sizeof(*call));
	call->client = c;
	call->cb = cb;
	call->data = data;
	call->on_data = o->on_data;
	call->method = co_strdup(method);
	call->url = co_strdup(o->url);
	call->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
	co_buf_init(&call->res.headers);
	co_buf_init(&call->res.body);
	if (o->body) {
		call->body = co_malloc(o->body_len);
		memcpy(call->body, o->body, o->body_len);
		call->body_len = o->body_len;
	}
	if (o->basic_user) {
		call->user = co_strdup(o->basic_user);
		if (o->basic_password)
			call->password = co_strdup(o->basic_password);
	}
	call->easy = curl_easy_init();
	if (!call->easy) {
		r = co_error_set(err, -ENOMEM, "%s '%s': curl_easy_init failed", method,
				 o->url);
		goto fail;
	}
	if (build_headers(call, o) < 0) {
		r = co_error_set(err, -ENOMEM, "%s '%s': out of memory", method, o->url);
		goto fail;
	}
	msg[0] = '\0';
	r = setup_easy(call, o, msg, sizeof(msg));
	if (r < 0) {
		co_error_set(err, r, "%s '%s': %s", method, o->url, msg);
		goto fail;
	}
	call->start_ms = co_time_mono_ms();
	mrc = curl_multi_add_handle(c->multi, call->easy);
	if (mrc != CURLM_OK) {
		r = co_error_set(err, -EIO, "%s '%s': %s", method, o->url,
				 curl_multi_strerror(mrc));
		goto fail;
	}
	call->next = c->calls;
	if (c->calls)
		c->calls->prev = call;
	c->calls = call;
	if (ret_call)
		*ret_call = call;
	return 0;
fail:
	free_call(call);
	return r;
}

int co_http_request_json(struct co_http_client *c, struct co_http_call **ret_call,
			 const char *method, const char *url, const json_t *body,
			 const struct co_http_req_opts *base, co_http_cb cb, void *data,
			 struct co_error *err)
{
	struct co_http_req_opts o = {0};
	const char **headers;
	size_t n = 0, i = 0;
	char *text = NULL;
	int r;

	if (base)
		o = *base;
	o.method = method;
	o.url = url;
	while (o.headers && o.headers[n])
		n++;
	headers = co_calloc(n + 3, sizeof(*headers));
	for (; i < n; i++)
		headers[i] = o.headers[i];
	if (!has_header(o.headers, "Accept"))
		headers[i++] = "Accept: application/json";
	if (body) {
		text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
		if (!text) {
			free(headers);
			return co_error_set(err, -EINVAL,
					    "%s '%s': cannot serialise json body",
					    method ? method : "POST", url ? url : "");
		}
		o.body = text;
		o.body_len = strlen(text);
		if (!has_header(o.headers, "Content-Type"))
			headers[i++] = "Content-Type: application/json";
	} else {
		o.body = NULL;
		o.body_len = 0;
	}
	headers[i] = NULL;
	o.headers = headers;
	r = co_http_request(c, ret_call, &o, cb, data, err);
	free(text);
	free(headers);
	return r;
}

void co_http_cancel(struct co_http_call *call)
{
	if (!call || call->cancelled)
		return;
	call->cancelled = 1;
	arm_defer(call->client);
}
