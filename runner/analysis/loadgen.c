/*
 * The load generator. Design, in the order a request travels:
 *
 * co_loadgen_new() parses the URL and builds the whole request (request line,
 * headers, body) once into one buffer that every connection sends as is: the hot path
 * never formats or allocates. co_loadgen_start() resolves the host with
 * uv_getaddrinfo on the caller's loop, then starts one thread per worker, each with
 * its own uv loop, its connections, its histograms and counters; nothing is shared
 * between workers while they run except two atomics (cancel flag, finished count).
 * When the last worker ends it wakes the caller's loop with a uv_async, the threads are
 * joined and their results merged.
 *
 * A connection (struct conn) owns a uv_tcp_t that is closed and re-initialised when
 * the server closes it or a request fails, a uv_timer_t used both to pace the open
 * model and to back off after a failed connect, a fixed read buffer handed to libuv by
 * the alloc callback, and an http_parser fed incrementally. Requests are written with
 * uv_try_write (one write(2), no request object), falling back to uv_write only for a
 * partial write. libuv reads once per readable event when the read comes back short,
 * so a request costs about one write, one read and a share of an epoll_wait.
 *
 * Latency clock: uv_hrtime() (monotonic ns). The open model gives connection k of C
 * the plan t0 + k/R + i*C/R, which interleaves to a uniform R requests/s; when a
 * connection is behind its plan (the server stalled) it sends back to back and every
 * late request is charged from its planned time.
 *
 * A per-worker 10 ms tick enforces request and connect timeouts and notices
 * cancellation; a one-shot timer ends a timed run.
 */
#include "analysis/loadgen.h"

#include <errno.h>
#include <http_parser.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"

#define RBUF_SIZE (16 * 1024)
#define TICK_MS 10
#define CONNECT_BACKOFF_MS 10
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
/* open model: a send this close to its planned time goes now rather than waiting
 * for a timer that cannot fire with sub-millisecond precision */
#define EARLY_NS 500000ull

enum conn_state {
	CONN_CLOSED,       /* no socket (closing, or waiting to reconnect) */
	CONN_CONNECTING,
	CONN_IDLE,         /* connected, no request outstanding */
	CONN_WAITING,      /* request sent, answer not complete */
};

struct worker;

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_write_t wreq;
	http_parser parser;
	struct worker *w;
	enum conn_state state;
	int tcp_inited;          /* tcp was initialised once (closed or open) */
	int backoff;             /* reconnect after CONNECT_BACKOFF_MS, not at once */
	int msg_done;            /* set by on_message_complete */
	int keep_alive;
	int counted;             /* the outstanding request is in the measured period */
	unsigned status;
	uint64_t t_planned;
	uint64_t t_sent;
	uint64_t t_connect;
	uint64_t next_planned;   /* open model */
	uint64_t interval;       /* open model, ns between this connection's sends */
	char rbuf[RBUF_SIZE];
};

struct worker {
	struct co_loadgen *lg;
	uv_thread_t thread;
	int thread_started;
	uv_loop_t loop;
	uv_timer_t tick;
	uv_timer_t end_timer;
	struct conn *conns;
	unsigned n_conns;
	unsigned first_conn;     /* global index of conns[0], for staggering */
	uint64_t quota;          /* count mode: requests this worker issues */
	uint64_t issued;
	uint64_t inflight;
	int stopping;
	uint64_t t_stop;
	struct co_loadgen_result r;
	size_t per_second_cap;
};

struct co_loadgen {
	/* configuration */
	char *request;
	size_t request_len;
	char *host;              /* for resolution */
	char *port;
	char *url;
	int head;                /* HEAD: answers carry no body */
	unsigned connections;
	unsigned threads;
	uint64_t duration_ms;
	uint64_t requests;
	double rate;
	uint64_t timeout_ns;
	uint64_t warmup_ns;

	/* run */
	uv_loop_t *loop;
	co_loadgen_cb cb;
	void *cb_data;
	int running;
	uv_getaddrinfo_t gai;
	uv_async_t done_async;
	struct sockaddr_storage addr;
	struct worker *workers;
	atomic_int cancelled;
	atomic_uint finished;
	uint64_t t0;
	uint64_t measure_start;
	uint64_t measure_end;    /* duration mode */
	int status;
	struct co_error err;
	struct co_loadgen_result result;
};

static void conn_open(struct conn *c);
static void conn_next(struct conn *c);
static void worker_stop(struct worker *w);

/* ---------------------------------------------------------------- results */

static void result_init(struct co_loadgen_result *r)
{
	memset(r, 0, sizeof(*r));
	r->latency = co_histogram_new();
	r->latency_uncorrected = co_histogram_new();
}

static void result_release(struct co_loadgen_result *r)
{
	co_histogram_free(r->latency);
	co_histogram_free(r->latency_uncorrected);
	free(r->per_second);
	memset(r, 0, sizeof(*r));
}

static void per_second_add(struct worker *w, uint64_t now)
{
	struct co_loadgen_result *r = &w->r;
	size_t sec = (size_t)((now - w->lg->measure_start) / NS_PER_S);

	if (sec >= w->per_second_cap) {
		size_t cap = w->per_second_cap ? w->per_second_cap * 2 : 64;

		while (cap <= sec)
			cap *= 2;
		r->per_second = co_realloc(r->per_second, cap * sizeof(*r->per_second));
		memset(r->per_second + w->per_second_cap, 0,
		       (cap - w->per_second_cap) * sizeof(*r->per_second));
		w->per_second_cap = cap;
	}
	if (sec >= r->n_seconds)
		r->n_seconds = sec + 1;
	r->per_second[sec]++;
}

/* ------------------------------------------------------------ connections */

static int on_headers_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->status = p->status_code;
	return c->w->lg->head ? 1 : 0;
}

static int on_message_complete(http_parser *p)
{
	struct conn *c = p->data;

	c->msg_done = 1;
	c->keep_alive = http_should_keep_alive(p);
	/* no pipelining: anything after the answer is not ours to parse */
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings parser_settings = {
	.on_headers_complete = on_headers_complete,
	.on_message_complete = on_message_complete,
};

static void on_tcp_closed(uv_handle_t *h)
{
	struct conn *c = h->data;

	if (c->w->stopping)
		return;
	conn_open(c);
}

/* Drop the socket and reconnect (after a pause when backoff). */
static void conn_reset(struct conn *c, int backoff)
{
	if (c->state == CONN_CLOSED)
		return;
	c->state = CONN_CLOSED;
	c->backoff = backoff;
	uv_timer_stop(&c->timer);
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
}

static void check_done(struct worker *w)
{
	if (w->stopping || w->lg->duration_ms)
		return;
	if (w->issued >= w->quota && w->inflight == 0)
		worker_stop(w);
}

/* The outstanding request (if any) failed with kind; the socket is dropped. */
static void conn_fail(struct conn *c, enum co_loadgen_error_kind kind, int backoff)
{
	struct worker *w = c->w;

	if (c->state == CONN_WAITING) {
		w->inflight--;
		if (c->counted) {
			w->r.errors[kind]++;
			w->r.errors_total++;
		}
	} else if (kind == CO_LOADGEN_ERR_CONNECT &&
		   uv_hrtime() >= w->lg->measure_start) {
		/* as in hey, a request that could not connect is a failed request and
		 * uses up one of the count, so a dead server cannot stall count mode */
		if (w->lg->duration_ms || w->issued < w->quota) {
			if (!w->lg->duration_ms)
				w->issued++;
			w->r.errors[kind]++;
			w->r.errors_total++;
		}
	}
	conn_reset(c, backoff);
	check_done(w);
}

static void complete(struct conn *c)
{
	struct worker *w = c->w;
	uint64_t now = uv_hrtime();
	unsigned cls;

	w->inflight--;
	c->state = CONN_IDLE;
	if (c->counted) {
		co_histogram_record(w->r.latency, now - c->t_planned);
		co_histogram_record(w->r.latency_uncorrected, now - c->t_sent);
		cls = c->status / 100;
		w->r.status[cls >= 1 && cls <= 5 ? cls : 0]++;
		w->r.requests++;
		per_second_add(w, now);
	}
	if (!c->keep_alive)
		conn_reset(c, 0);
	else
		conn_next(c);
	check_done(w);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct conn *c = h->data;

	buf->base = c->rbuf;
	buf->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;
	size_t n;

	if (nread == 0 || c->state == CONN_CLOSED)
		return;
	if (nread < 0) {
		if (c->state != CONN_WAITING) {
			conn_reset(c, 0);  /* idle keep-alive closed by the server */
			return;
		}
		/* an answer delimited by the end of the connection completes here */
		http_parser_pause(&c->parser, 0);
		http_parser_execute(&c->parser, &parser_settings, NULL, 0);
		if (c->msg_done) {
			c->msg_done = 0;
			c->keep_alive = 0;
			complete(c);
			return;
		}
		conn_fail(c, CO_LOADGEN_ERR_READ, 0);
		return;
	}
	if (c->counted)
		c->w->r.bytes_read += (uint64_t)nread;
	if (c->state != CONN_WAITING) {
		/* bytes nobody asked for: the connection is out of step */
		conn_reset(c, 0);
		return;
	}
	http_parser_pause(&c->parser, 0);
	n = http_parser_execute(&c->parser, &parser_settings, buf->base, (size_t)nread);
	if (c->msg_done) {
		c->msg_done = 0;
		complete(c);
		return;
	}
	if (n != (size_t)nread || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
		conn_fail(c, CO_LOADGEN_ERR_READ, 0);
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;

	if (status < 0 && status != UV_ECANCELED && c->state == CONN_WAITING)
		conn_fail(c, CO_LOADGEN_ERR_WRITE, 0);
}

static void send_request(struct conn *c, uint64_t planned, uint64_t now)
{
	struct worker *w = c->w;
	struct co_loadgen *lg = w->lg;
	uv_buf_t b = uv_buf_init(lg->request, (unsigned)lg->request_len);
	int n;

	c->t_planned = planned;
	c->t_sent = now;
	c->counted = planned >= lg->measure_start;
	c->state = CONN_WAITING;
	c->status = 0;
	w->inflight++;
	if (c->counted) {
		w->issued++;
		w->r.bytes_written += lg->request_len;
	}
	n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
	if (n == (int)lg->request_len)
		return;
	if (n == UV_EAGAIN)
		n = 0;
	if (n < 0) {
		conn_fail(c, CO_LOADGEN_ERR_WRITE, 0);
		return;
	}
	b = uv_buf_init(lg->request + n, (unsigned)(lg->request_len - (size_t)n));
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0)
		conn_fail(c, CO_LOADGEN_ERR_WRITE, 0);
}

static void on_pace(uv_timer_t *t)
{
	struct conn *c = t->data;

	if (c->state == CONN_IDLE)
		conn_next(c);
	else if (c->state == CONN_CLOSED)
		conn_open(c);  /* back-off over; the old socket finished closing */
}

/* Send the next request if the plan, the quota and the run allow it. */
static void conn_next(struct conn *c)
{
	struct worker *w = c->w;
	struct co_loadgen *lg = w->lg;
	uint64_t now, planned;

	if (w->stopping || c->state != CONN_IDLE)
		return;
	now = uv_hrtime();
	if (!lg->duration_ms && now >= lg->measure_start && w->issued >= w->quota)
		return;  /* count mode, this worker's share is issued */
	if (lg->rate > 0) {
		planned = c->next_planned;
		if (planned > now + EARLY_NS) {
			/* loop timers tick in ms: aim at the nearest ms so lateness
			 * averages out instead of always adding up to 1 ms */
			uint64_t ms = (planned - now + NS_PER_MS / 2) / NS_PER_MS;

			uv_timer_start(&c->timer, on_pace, ms, 0);
			return;
		}
		c->next_planned += c->interval;
		if (planned > now)
			planned = now;  /* a hair early: latency runs from the send */
		if (!lg->duration_ms && planned >= lg->measure_start &&
		    w->issued >= w->quota)
			return;
	} else {
		planned = now;
	}
	send_request(c, planned, now);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = req->data;

	if (status == UV_ECANCELED || c->state != CONN_CONNECTING)
		return;
	if (status < 0) {
		conn_fail(c, CO_LOADGEN_ERR_CONNECT, 1);
		return;
	}
	c->state = CONN_IDLE;
	http_parser_init(&c->parser, HTTP_RESPONSE);
	c->parser.data = c;
	c->msg_done = 0;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
		conn_fail(c, CO_LOADGEN_ERR_CONNECT, 1);
		return;
	}
	conn_next(c);
}

static void conn_open(struct conn *c)
{
	struct worker *w = c->w;
	int rc;

	if (w->stopping)
		return;
	if (c->backoff) {
		c->backoff = 0;
		uv_timer_start(&c->timer, on_pace, CONNECT_BACKOFF_MS, 0);
		return;
	}
	uv_tcp_init(&w->loop, &c->tcp);
	c->tcp_inited = 1;
	c->tcp.data = c;
	c->creq.data = c;
	c->state = CONN_CONNECTING;
	c->t_connect = uv_hrtime();
	uv_tcp_nodelay(&c->tcp, 1);
	rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&w->lg->addr,
			    on_connect);
	if (rc < 0)
		conn_fail(c, CO_LOADGEN_ERR_CONNECT, 1);
}

/* ----------------------------------------------------------------- workers */

static void on_tick(uv_timer_t *t)
{
	struct worker *w = t->data;
	struct co_loadgen *lg = w->lg;
	uint64_t now = uv_hrtime();

	if (atomic_load(&lg->cancelled)) {
		worker_stop(w);
		return;
	}
	for (unsigned i = 0; i < w->n_conns && !w->stopping; i++) {
		struct conn *c = &w->conns[i];

		if (c->state == CONN_WAITING && now - c->t_sent > lg->timeout_ns)
			conn_fail(c, CO_LOADGEN_ERR_TIMEOUT, 0);
		else if (c->state == CONN_CONNECTING &&
			 now - c->t_connect > lg->timeout_ns)
			conn_fail(c, CO_LOADGEN_ERR_CONNECT, 0);
	}
}

static void on_end(uv_timer_t *t)
{
	worker_stop(t->data);
}

static void worker_stop(struct worker *w)
{
	if (w->stopping)
		return;
	w->stopping = 1;
	w->t_stop = uv_hrtime();
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];

		c->state = CONN_CLOSED;
		if (c->tcp_inited && !uv_is_closing((uv_handle_t *)&c->tcp))
			uv_close((uv_handle_t *)&c->tcp, NULL);
		uv_close((uv_handle_t *)&c->timer, NULL);
	}
	uv_close((uv_handle_t *)&w->tick, NULL);
	uv_close((uv_handle_t *)&w->end_timer, NULL);
}

static void worker_main(void *arg)
{
	struct worker *w = arg;
	struct co_loadgen *lg = w->lg;
	double per_conn_ns = lg->rate > 0 ? 1e9 / lg->rate : 0;

	uv_timer_init(&w->loop, &w->tick);
	w->tick.data = w;
	uv_timer_start(&w->tick, on_tick, TICK_MS, TICK_MS);
	uv_timer_init(&w->loop, &w->end_timer);
	w->end_timer.data = w;
	if (lg->duration_ms) {
		uint64_t now = uv_hrtime();
		uint64_t left = lg->measure_end > now ? lg->measure_end - now : 0;

		uv_timer_start(&w->end_timer, on_end, (left + NS_PER_MS - 1) / NS_PER_MS, 0);
	}
	for (unsigned i = 0; i < w->n_conns; i++) {
		struct conn *c = &w->conns[i];
		unsigned k = w->first_conn + i;

		c->w = w;
		c->state = CONN_CLOSED;
		uv_timer_init(&w->loop, &c->timer);
		c->timer.data = c;
		c->interval = (uint64_t)(per_conn_ns * lg->connections);
		c->next_planned = lg->t0 + (uint64_t)(per_conn_ns * k);
	}
	for (unsigned i = 0; i < w->n_conns; i++)
		conn_open(&w->conns[i]);
	check_done(w);
	uv_run(&w->loop, UV_RUN_DEFAULT);
	if (!w->stopping)
		w->t_stop = uv_hrtime();
	uv_loop_close(&w->loop);
	atomic_fetch_add(&lg->finished, 1);
	uv_async_send(&lg->done_async);
}

/* -------------------------------------------------------------- the run */

static void merge_results(struct co_loadgen *lg)
{
	struct co_loadgen_result *r = &lg->result;
	uint64_t t_end = 0;

	r->open_model = lg->rate > 0;
	r->target_rate = lg->rate;
	for (unsigned i = 0; i < lg->threads; i++) {
		struct co_loadgen_result *wr = &lg->workers[i].r;

		co_histogram_merge(r->latency, wr->latency);
		co_histogram_merge(r->latency_uncorrected, wr->latency_uncorrected);
		r->requests += wr->requests;
		for (int k = 0; k < 6; k++)
			r->status[k] += wr->status[k];
		for (int k = 0; k < CO_LOADGEN_ERR_MAX; k++)
			r->errors[k] += wr->errors[k];
		r->errors_total += wr->errors_total;
		r->bytes_read += wr->bytes_read;
		r->bytes_written += wr->bytes_written;
		if (wr->n_seconds > r->n_seconds) {
			r->per_second = co_realloc(r->per_second,
						   wr->n_seconds * sizeof(uint64_t));
			memset(r->per_second + r->n_seconds, 0,
			       (wr->n_seconds - r->n_seconds) * sizeof(uint64_t));
			r->n_seconds = wr->n_seconds;
		}
		for (size_t s = 0; s < wr->n_seconds; s++)
			r->per_second[s] += wr->per_second[s];
		if (lg->workers[i].t_stop > t_end)
			t_end = lg->workers[i].t_stop;
	}
	if (lg->duration_ms && t_end > lg->measure_end)
		t_end = lg->measure_end;
	r->duration_s = t_end > lg->measure_start ?
		(double)(t_end - lg->measure_start) / 1e9 : 0.0;
	r->rps = r->duration_s > 0 ? (double)r->requests / r->duration_s : 0.0;
}

static void free_workers(struct co_loadgen *lg)
{
	if (!lg->workers)
		return;
	for (unsigned i = 0; i < lg->threads; i++) {
		free(lg->workers[i].conns);
		result_release(&lg->workers[i].r);
	}
	free(lg->workers);
	lg->workers = NULL;
}

static void on_done_closed(uv_handle_t *h)
{
	struct co_loadgen *lg = h->data;

	lg->running = 0;
	lg->cb(lg, lg->status, lg->status ? &lg->err : NULL, lg->cb_data);
}

static void finish(struct co_loadgen *lg)
{
	free_workers(lg);
	uv_close((uv_handle_t *)&lg->done_async, on_done_closed);
}

static void on_done(uv_async_t *a)
{
	struct co_loadgen *lg = a->data;

	if (atomic_load(&lg->finished) < lg->threads)
		return;
	for (unsigned i = 0; i < lg->threads; i++)
		if (lg->workers[i].thread_started)
			uv_thread_join(&lg->workers[i].thread);
	merge_results(lg);
	if (atomic_load(&lg->cancelled))
		lg->status = -ECANCELED;
	finish(lg);
}

static void start_workers(struct co_loadgen *lg)
{
	unsigned per = lg->connections / lg->threads;
	unsigned extra = lg->connections % lg->threads, next = 0;

	lg->workers = co_calloc(lg->threads, sizeof(*lg->workers));
	lg->t0 = uv_hrtime();
	lg->measure_start = lg->t0 + lg->warmup_ns;
	lg->measure_end = lg->measure_start + lg->duration_ms * NS_PER_MS;
	for (unsigned i = 0; i < lg->threads; i++) {
		struct worker *w = &lg->workers[i];

		w->lg = lg;
		w->n_conns = per + (i < extra);
		w->first_conn = next;
		next += w->n_conns;
		w->conns = co_calloc(w->n_conns, sizeof(*w->conns));
		w->quota = lg->requests / lg->threads + (i < lg->requests % lg->threads);
		result_init(&w->r);
		uv_loop_init(&w->loop);
	}
	for (unsigned i = 0; i < lg->threads; i++) {
		struct worker *w = &lg->workers[i];

		if (uv_thread_create(&w->thread, worker_main, w) == 0) {
			w->thread_started = 1;
		} else {
			/* cannot happen short of resource exhaustion; account it as done */
			uv_loop_close(&w->loop);
			atomic_fetch_add(&lg->finished, 1);
			uv_async_send(&lg->done_async);
		}
	}
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct co_loadgen *lg = req->data;
	struct addrinfo *ai;

	for (ai = status == 0 ? res : NULL; ai; ai = ai->ai_next)
		if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
			break;
	if (!ai) {
		lg->status = status < 0 ? status : -EHOSTUNREACH;
		co_error_set(&lg->err, lg->status, "resolve '%s': %s", lg->host,
			     status < 0 ? uv_strerror(status) : "no address");
		uv_freeaddrinfo(res);
		finish(lg);
		return;
	}
	memcpy(&lg->addr, ai->ai_addr, ai->ai_addrlen);
	uv_freeaddrinfo(res);
	if (atomic_load(&lg->cancelled)) {
		lg->status = -ECANCELED;
		finish(lg);
		return;
	}
	start_workers(lg);
}

int co_loadgen_start(struct co_loadgen *lg, uv_loop_t *loop, co_loadgen_cb cb,
		     void *data, struct co_error *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
	int rc;

	if (lg->running)
		return co_error_set(err, -EBUSY, "load generator already running");
	result_release(&lg->result);
	result_init(&lg->result);
	lg->loop = loop;
	lg->cb = cb;
	lg->cb_data = data;
	lg->status = 0;
	co_error_clear(&lg->err);
	atomic_store(&lg->cancelled, 0);
	atomic_store(&lg->finished, 0);
	rc = uv_async_init(loop, &lg->done_async, on_done);
	if (rc < 0)
		return co_error_set(err, rc, "loadgen: %s", uv_strerror(rc));
	lg->done_async.data = lg;
	lg->gai.data = lg;
	rc = uv_getaddrinfo(loop, &lg->gai, on_resolved, lg->host, lg->port, &hints);
	if (rc < 0) {
		uv_close((uv_handle_t *)&lg->done_async, NULL);
		return co_error_set(err, rc, "resolve '%s': %s", lg->host, uv_strerror(rc));
	}
	lg->running = 1;
	return 0;
}

void co_loadgen_cancel(struct co_loadgen *lg)
{
	if (lg && lg->running)
		atomic_store(&lg->cancelled, 1);
}

const struct co_loadgen_result *co_loadgen_result(const struct co_loadgen *lg)
{
	return &lg->result;
}

/* ---------------------------------------------------------- construction */

static int valid_token(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
			return 0;
	return 1;
}

static int valid_header_value(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return 0;
	return 1;
}

static int header_named(const char *line, const char *name)
{
	size_t n = strlen(name);

	return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

int co_loadgen_new(struct co_loadgen **ret_lg, const struct co_loadgen_opts *opts,
		   struct co_error *err)
{
	struct http_parser_url u;
	struct co_loadgen *lg;
	struct co_buf req = CO_BUF_INIT;
	const char *url = opts->url, *method = opts->method ? opts->method : "GET";
	const char *host_override = opts->host, *ua = NULL;
	char *host = NULL, *port = NULL, *path = NULL;
	int has_ct = 0;

	if (!url || !*url)
		return co_error_set(err, -EINVAL, "no url given");
	if (strncasecmp(url, "http://", 7) != 0) {
		if (strncasecmp(url, "https://", 8) == 0)
			return co_error_set(err, -EINVAL,
					    "url '%s': only http:// is supported", url);
		return co_error_set(err, -EINVAL, "url '%s': not an http:// url", url);
	}
	http_parser_url_init(&u);
	if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 ||
	    !(u.field_set & (1 << UF_HOST)))
		return co_error_set(err, -EINVAL, "url '%s': cannot parse", url);
	if (!valid_token(method))
		return co_error_set(err, -EINVAL, "method '%s': not a valid token", method);
	if (opts->rate < 0 || isnan(opts->rate) || isinf(opts->rate))
		return co_error_set(err, -EINVAL, "rate must be a positive number");
	if (!opts->duration_ms && !opts->requests)
		return co_error_set(err, -EINVAL, "give a duration or a request count");
	if (host_override && (!*host_override || !valid_header_value(host_override)))
		return co_error_set(err, -EINVAL, "host '%s': invalid", host_override);
	for (size_t i = 0; i < opts->n_headers; i++) {
		const char *h = opts->headers[i], *colon = strchr(h, ':');
		char name[128];

		if (!colon || colon == h || (size_t)(colon - h) >= sizeof(name) ||
		    !valid_header_value(h))
			return co_error_set(err, -EINVAL,
					    "header '%s': expected 'Name: value'", h);
		memcpy(name, h, (size_t)(colon - h));
		name[colon - h] = 0;
		if (!valid_token(name))
			return co_error_set(err, -EINVAL, "header '%s': invalid name", h);
	}
	if (opts->content_type && !valid_header_value(opts->content_type))
		return co_error_set(err, -EINVAL, "content type: invalid");
	if (opts->user_agent && !valid_header_value(opts->user_agent))
		return co_error_set(err, -EINVAL, "user agent: invalid");

	host = co_strndup(url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
	port = (u.field_set & (1 << UF_PORT)) ?
		co_strndup(url + u.field_data[UF_PORT].off, u.field_data[UF_PORT].len) :
		co_strdup("80");
	if (u.field_set & (1 << UF_PATH))
		path = co_strndup(url + u.field_data[UF_PATH].off,
				  u.field_data[UF_PATH].len +
				  ((u.field_set & (1 << UF_QUERY)) ?
				   1 + u.field_data[UF_QUERY].len : 0));
	else if (u.field_set & (1 << UF_QUERY))
		path = co_asprintf("/?%.*s", (int)u.field_data[UF_QUERY].len,
				   url + u.field_data[UF_QUERY].off);
	else
		path = co_strdup("/");

	co_buf_printf(&req, "%s %s HTTP/1.1\r\n", method, path);
	for (size_t i = 0; i < opts->n_headers; i++) {
		if (header_named(opts->headers[i], "host") && !host_override)
			host_override = opts->headers[i] + 5 +
				strspn(opts->headers[i] + 5, " \t");
		if (header_named(opts->headers[i], "user-agent"))
			ua = opts->headers[i];
		if (header_named(opts->headers[i], "content-type"))
			has_ct = 1;
	}
	if (host_override) {
		co_buf_printf(&req, "Host: %s\r\n", host_override);
	} else {
		int v6 = strchr(host, ':') != NULL;

		co_buf_printf(&req, "Host: %s%s%s", v6 ? "[" : "", host, v6 ? "]" : "");
		if (strcmp(port, "80") != 0)
			co_buf_printf(&req, ":%s", port);
		co_buf_puts(&req, "\r\n");
	}
	if (!ua)
		co_buf_printf(&req, "User-Agent: %s\r\n",
			      opts->user_agent ? opts->user_agent : "cutover-loadgen");
	if (opts->content_type && !has_ct)
		co_buf_printf(&req, "Content-Type: %s\r\n", opts->content_type);
	for (size_t i = 0; i < opts->n_headers; i++)
		if (!header_named(opts->headers[i], "host"))
			co_buf_printf(&req, "%s\r\n", opts->headers[i]);
	if (opts->body_len || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
	    strcmp(method, "PATCH") == 0)
		co_buf_printf(&req, "Content-Length: %zu\r\n", opts->body_len);
	co_buf_puts(&req, "\r\n");
	if (opts->body_len)
		co_buf_append(&req, opts->body, opts->body_len);

	lg = co_calloc(1, sizeof(*lg));
	lg->request = co_buf_detach(&req, &lg->request_len);
	lg->host = host;
	lg->port = port;
	lg->url = co_strdup(url);
	lg->head = strcmp(method, "HEAD") == 0;
	lg->connections = opts->connections ? opts->connections : 50;
	lg->duration_ms = opts->duration_ms;
	lg->requests = opts->duration_ms ? 0 : opts->requests;
	if (lg->requests && lg->connections > lg->requests)
		lg->connections = (unsigned)lg->requests;
	lg->threads = opts->threads ? opts->threads : 1;
	if (lg->threads > lg->connections)
		lg->threads = lg->connections;
	lg->rate = opts->rate;
	lg->timeout_ns = (opts->timeout_ms ? opts->timeout_ms : 20000) * NS_PER_MS;
	lg->warmup_ns = opts->warmup_ms * NS_PER_MS;
	result_init(&lg->result);
	free(path);
	*ret_lg = lg;
	return 0;
}

void co_loadgen_free(struct co_loadgen *lg)
{
	if (!lg)
		return;
	free_workers(lg);
	result_release(&lg->result);
	free(lg->request);
	free(lg->host);
	free(lg->port);
	free(lg->url);
	free(lg);
}

/* ------------------------------------------------------------ reporting */

static json_t *latency_json(const struct co_histogram *h)
{
	return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
			 "count", (json_int_t)co_histogram_count(h),
			 "min", co_histogram_min(h) / 1e6,
			 "mean", co_histogram_mean(h) / 1e6,
			 "stddev", co_histogram_stddev(h) / 1e6,
			 "p50", co_histogram_percentile(h, 50) / 1e6,
			 "p75", co_histogram_percentile(h, 75) / 1e6,
			 "p90", co_histogram_percentile(h, 90) / 1e6,
			 "p99", co_histogram_percentile(h, 99) / 1e6,
			 "p99.9", co_histogram_percentile(h, 99.9) / 1e6,
			 "max", co_histogram_max(h) / 1e6);
}

json_t *co_loadgen_result_json(const struct co_loadgen_result *r)
{
	json_t *per = json_array();

	for (size_t i = 0; i < r->n_seconds; i++)
		json_array_append_new(per, json_integer((json_int_t)r->per_second[i]));
	return json_pack(
		"{s:s, s:f, s:I, s:f, s:f, s:I, s:I, s:o, s:o,"
		" s:{s:I, s:I, s:I, s:I, s:I, s:I},"
		" s:{s:I, s:I, s:I, s:I, s:I}, s:o}",
		"model", r->open_model ? "open" : "closed",
		"target_rate", r->target_rate,
		"requests", (json_int_t)r->requests,
		"duration_s", r->duration_s,
		"rps", r->rps,
		"bytes_read", (json_int_t)r->bytes_read,
		"bytes_written", (json_int_t)r->bytes_written,
		"latency_ms", latency_json(r->latency),
		"latency_uncorrected_ms", latency_json(r->latency_uncorrected),
		"status", "1xx", (json_int_t)r->status[1], "2xx", (json_int_t)r->status[2],
		"3xx", (json_int_t)r->status[3], "4xx", (json_int_t)r->status[4],
		"5xx", (json_int_t)r->status[5], "other", (json_int_t)r->status[0],
		"errors", "connect", (json_int_t)r->errors[CO_LOADGEN_ERR_CONNECT],
		"read", (json_int_t)r->errors[CO_LOADGEN_ERR_READ],
		"write", (json_int_t)r->errors[CO_LOADGEN_ERR_WRITE],
		"timeout", (json_int_t)r->errors[CO_LOADGEN_ERR_TIMEOUT],
		"total", (json_int_t)r->errors_total,
		"rps_per_second", per);
}

static const char *fmt_ms(uint64_t ns, char *buf, size_t n)
{
	if (ns >= 1000 * NS_PER_MS)
		snprintf(buf, n, "%.3fs", ns / 1e9);
	else if (ns >= NS_PER_MS)
		snprintf(buf, n, "%.2fms", ns / 1e6);
	else
		snprintf(buf, n, "%.1fus", ns / 1e3);
	return buf;
}

static void print_latency(FILE *out, const char *title, const struct co_histogram *h)
{
	static const double ps[] = { 50, 75, 90, 99, 99.9 };
	char a[32], b[32], c[32], d[32];

	fprintf(out, "%s\n", title);
	fprintf(out, "  min %s  mean %s  stddev %s  max %s\n",
		fmt_ms(co_histogram_min(h), a, sizeof(a)),
		fmt_ms((uint64_t)co_histogram_mean(h), b, sizeof(b)),
		fmt_ms((uint64_t)co_histogram_stddev(h), c, sizeof(c)),
		fmt_ms(co_histogram_max(h), d, sizeof(d)));
	for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
		fprintf(out, "  %5g%%  %s\n", ps[i],
			fmt_ms(co_histogram_percentile(h, ps[i]), a, sizeof(a)));
}

void co_loadgen_print_summary(const struct co_loadgen_result *r, FILE *out)
{
	static const char *const kinds[] = { "connect", "read", "write", "timeout" };

	fprintf(out, "Summary (%s model", r->open_model ? "open" : "closed");
	if (r->open_model)
		fprintf(out, ", target %.0f req/s", r->target_rate);
	fprintf(out, "):\n");
	fprintf(out, "  Requests:     %llu\n", (unsigned long long)r->requests);
	fprintf(out, "  Duration:     %.4f secs\n", r->duration_s);
	fprintf(out, "  Requests/sec: %.2f\n", r->rps);
	fprintf(out, "  Transfer:     %llu bytes read, %llu bytes written\n\n",
		(unsigned long long)r->bytes_read, (unsigned long long)r->bytes_written);
	print_latency(out, r->open_model ?
		      "Latency distribution (from planned send, corrected):" :
		      "Latency distribution:", r->latency);
	if (r->open_model)
		print_latency(out, "Latency distribution (from actual send, uncorrected):",
			      r->latency_uncorrected);
	fprintf(out, "\nStatus code distribution:\n");
	for (int k = 1; k <= 5; k++)
		if (r->status[k])
			fprintf(out, "  [%dxx] %llu responses\n", k,
				(unsigned long long)r->status[k]);
	if (r->status[0])
		fprintf(out, "  [other] %llu responses\n", (unsigned long long)r->status[0]);
	if (r->errors_total) {
		fprintf(out, "\nErrors:\n");
		for (int k = 0; k < CO_LOADGEN_ERR_MAX; k++)
			if (r->errors[k])
				fprintf(out, "  %-8s %llu\n", kinds[k],
					(unsigned long long)r->errors[k]);
	}
	if (r->n_seconds > 1) {
		fprintf(out, "\nRequests per second over time:\n ");
		for (size_t i = 0; i < r->n_seconds; i++)
			fprintf(out, " %llu", (unsigned long long)r->per_second[i]);
		fprintf(out, "\n");
	}
}

/* ------------------------------------------------------------ blocking */

struct run_ctx {
	int status;
	int done;
	struct co_error *err;
};

static void on_run_done(struct co_loadgen *lg, int status, const struct co_error *e,
			void *data)
{
	struct run_ctx *ctx = data;

	ctx->status = status;
	ctx->done = 1;
	if (e)
		co_error_copy(ctx->err, e);
}

int co_loadgen_run(struct co_loadgen *lg, struct co_error *err)
{
	uv_loop_t loop;
	struct run_ctx ctx = { .err = err };
	int rc;

	rc = uv_loop_init(&loop);
	if (rc < 0)
		return co_error_set(err, rc, "loop: %s", uv_strerror(rc));
	rc = co_loadgen_start(lg, &loop, on_run_done, &ctx, err);
	if (rc == 0) {
		uv_run(&loop, UV_RUN_DEFAULT);
		rc = ctx.status;
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return rc;
}
