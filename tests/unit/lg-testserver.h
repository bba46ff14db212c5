/*
 * A small, fast HTTP/1.1 test server on raw libuv + http-parser for the load
 * generator and loadtester tests: answers every request "200 ok" (keep-alive),
 * counts requests and body bytes, can stall once (hold every answer for stall_ms
 * from the stall_at-th request on) and can close the connection after every
 * close_every-th answer. Runs on the test's loop; the load generator runs on its own
 * threads.
 */
#ifndef LG_TESTSERVER_H
#define LG_TESTSERVER_H

#include <stdint.h>
#include <uv.h>

struct ts_conn;

struct ts_server {
	/* settings, before ts_server_start */
	uint64_t stall_at;        /* 0 = never */
	uint64_t stall_ms;
	unsigned close_every;     /* 0 = never */
	/* state and counters */
	uv_loop_t *loop;
	uv_tcp_t listener;
	uv_timer_t stall_timer;
	int port;
	int stalled;
	int stall_done;
	uint64_t requests;
	uint64_t body_bytes;
	uint64_t posts;
	uint64_t connections;
	struct ts_conn *conns;
};

/* Listen on 127.0.0.1, ephemeral port; 0 or a uv error. */
int ts_server_start(struct ts_server *s, uv_loop_t *loop);
/* Close the listener, every connection and the timer. */
void ts_server_close(struct ts_server *s);

#endif
