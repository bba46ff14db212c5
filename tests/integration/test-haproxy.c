/*
 * Integration test of the HAProxy driver, config generation and traffic shift against
 * a real /usr/sbin/haproxy (master-worker, foreground) on 127.0.0.1 with ephemeral
 * ports, in front of two test backends "blue" and "green" running on their own thread.
 * Load comes from a real wrk. Everything started here is stopped in the teardown, and
 * the loop must close cleanly.
 *
 * Figures (requests, rates, rollback latency) are printed as "# figure:" lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "backends.h"
#include "base/buf.h"
#include "base/time.h"
#include "clients/haproxy-config.h"
#include "clients/haproxy-shift.h"
#include "clients/haproxy.h"

#define HAPROXY_BIN "/usr/sbin/haproxy"
#define WRK_BIN "/usr/bin/wrk"
#define BACKEND "clusters"

static uv_loop_t loop;
static struct co_haproxy *hx;
static uv_process_t haproxy_proc;
static int haproxy_exited;
static char dir[64];
static char sock_path[128], state_path[128], cfg_path[128], log_path[128];
static int public_port, preview_port, prom_port;
static CURL *curl;

/* ---- loop helpers ---- */

static void run_until(const int *flag)
{
	while (!*flag)
		uv_run(&loop, UV_RUN_ONCE);
}

static void on_sleep(uv_timer_t *t)
{
	*(int *)t->data = 1;
}

static void sleep_ms(uint64_t ms)
{
	uv_timer_t t;
	int done = 0;

	uv_timer_init(&loop, &t);
	t.data = &done;
	uv_timer_start(&t, on_sleep, ms, 0);
	run_until(&done);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&loop, UV_RUN_NOWAIT);
}

struct res {
	int done;
	int status;
	char answer[8192];
	struct co_error err;
	int weight, initial;
	struct co_haproxy_server_stat stat[2];   /* blue, green */
	int found[2];
};

static void text_cb(int status, const char *answer, const struct co_error *err, void *d)
{
	struct res *r = d;

	r->done = 1;
	r->status = status;
	snprintf(r->answer, sizeof(r->answer), "%s", answer);
	co_error_copy(&r->err, err);
}

static void weight_cb(int status, int cur, int initial, const struct co_error *err,
		      void *d)
{
	struct res *r = d;

	r->done = 1;
	r->status = status;
	r->weight = cur;
	r->initial = initial;
	co_error_copy(&r->err, err);
}

static void stat_cb(int status, const struct co_haproxy_csv *csv,
		    const struct co_error *err, void *d)
{
	static const char *const names[2] = { "blue", "green" };
	struct res *r = d;

	r->done = 1;
	r->status = status;
	co_error_copy(&r->err, err);
	if (status < 0)
		return;
	for (int i = 0; i < 2; i++) {
		long row = co_haproxy_csv_find(csv, BACKEND, names[i]);

		r->found[i] = row >= 0 &&
			      co_haproxy_csv_server(csv, (size_t)row, &r->stat[i]) == 0;
	}
}

static int command(const char *cmd, struct res *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(co_haproxy_command(hx, cmd, text_cb, r, NULL), 0);
	run_until(&r->done);
	return r->status;
}

static void set_weight(const char *server, int w)
{
	struct res r = { 0 };

	assert_int_equal(co_haproxy_set_weight(hx, BACKEND, server, w, text_cb, &r, NULL),
			 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
}

static void set_state(const char *server, enum co_haproxy_state st)
{
	struct res r = { 0 };

	assert_int_equal(co_haproxy_set_state(hx, BACKEND, server, st, text_cb, &r, NULL),
			 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
}

static int get_weight(const char *server, int *initial)
{
	struct res r = { 0 };

	assert_int_equal(co_haproxy_get_weight(hx, BACKEND, server, weight_cb, &r, NULL),
			 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
	if (initial)
		*initial = r.initial;
	return r.weight;
}

static void stats(struct res *r)
{
	memset(r, 0, sizeof(*r));
	assert_int_equal(co_haproxy_show_stat(hx, stat_cb, r, NULL), 0);
	run_until(&r->done);
	if (r->status < 0)
		fail_msg("%s", r->err.msg);
}

/* ---- HTTP through the frontend ---- */

static size_t collect(char *p, size_t size, size_t n, void *d)
{
	co_buf_append(d, p, size * n);
	return size * n;
}

/* GET path on port, body into out; returns the status or -1. Blocking: the backends
 * answer from their own thread. */
static long http_get(int port, const char *path, const char *header, struct co_buf *out)
{
	struct curl_slist *h = header ? curl_slist_append(NULL, header) : NULL;
	char url[128];
	long code = -1;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	co_buf_reset(out);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	if (curl_easy_perform(curl) == CURLE_OK)
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	return code;
}

/* n requests; counts answers "blue\n" and "green\n" and non-200s. */
static void sample(int n, int *blue, int *green, int *bad)
{
	struct co_buf b = CO_BUF_INIT;

	*blue = *green = *bad = 0;
	for (int i = 0; i < n; i++) {
		long code = http_get(public_port, "/", NULL, &b);

		if (code != 200)
			(*bad)++;
		else if (strcmp(co_buf_cstr(&b), "blue\n") == 0)
			(*blue)++;
		else if (strcmp(co_buf_cstr(&b), "green\n") == 0)
			(*green)++;
		else
			(*bad)++;
	}
	co_buf_release(&b);
}

/* ---- wrk ---- */

struct wrk {
	uv_process_t proc;
	uv_pipe_t out;
	struct co_buf text;
	int exited, eof;
	int64_t exit_status;
};

static void wrk_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
	struct wrk *w = h->data;

	co_buf_grow(&w->text, 4096);
	buf->base = w->text.data + w->text.len;
	buf->len = w->text.cap - w->text.len - 1;
}

static void wrk_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct wrk *w = s->data;

	if (n < 0) {
		w->eof = 1;
		uv_close((uv_handle_t *)s, NULL);
		return;
	}
	w->text.len += (size_t)n;
	w->text.data[w->text.len] = '\0';
}

static void wrk_exit(uv_process_t *p, int64_t status, int sig)
{
	struct wrk *w = p->data;

	w->exited = 1;
	w->exit_status = status;
	uv_close((uv_handle_t *)p, NULL);
}

static void wrk_start(struct wrk *w, const char *duration)
{
	char url[64];
	char *args[] = { WRK_BIN, "-t2", "-c16", "-d", (char *)duration, "--latency", url,
			 NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t o = { 0 };

	memset(w, 0, sizeof(*w));
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", public_port);
	uv_pipe_init(&loop, &w->out, 0);
	w->out.data = w;
	w->proc.data = w;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&w->out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	o.file = WRK_BIN;
	o.args = args;
	o.stdio = stdio;
	o.stdio_count = 3;
	o.exit_cb = wrk_exit;
	assert_int_equal(uv_spawn(&loop, &w->proc, &o), 0);
	uv_read_start((uv_stream_t *)&w->out, wrk_alloc, wrk_read);
}

static void wrk_wait(struct wrk *w)
{
	run_until(&w->exited);
	run_until(&w->eof);
	assert_int_equal(w->exit_status, 0);
}

static double wrk_figure(const struct wrk *w, const char *key)
{
	const char *p = strstr(co_buf_cstr(&w->text), key);

	return p ? strtod(p + strlen(key), NULL) : NAN;
}

static void wrk_report(const char *what, const struct wrk *w)
{
	const char *t = co_buf_cstr(&w->text);
	const char *req = strstr(t, " requests in ");
	const char *p99 = strstr(t, "99%");
	long n = 0;

	if (req) {
		const char *s = req;

		while (s > t && s[-1] != '\n')
			s--;
		n = strtol(s, NULL, 10);
	}
	printf("# figure: %s: wrk %ld requests, %.0f req/s, p99 %.*s\n", what, n,
	       wrk_figure(w, "Requests/sec:"), p99 ? (int)strcspn(p99 + 3, "\n") : 2,
	       p99 ? p99 + 3 : "?");
}

/* ---- haproxy process ---- */

static int free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static void haproxy_exit(uv_process_t *p, int64_t status, int sig)
{
	haproxy_exited = 1;
	uv_close((uv_handle_t *)p, NULL);
}

static int haproxy_pid_of_worker(void)
{
	struct res r;
	const char *p;

	if (command("show info", &r) < 0)
		return -1;
	p = strstr(r.answer, "\nPid: ");
	return p ? atoi(p + 6) : -1;
}

/* Wait until both servers are UP (checks every 100 ms, rise 2). */
static void wait_up(void)
{
	for (int i = 0; i < 100; i++) {
		struct res r;

		memset(&r, 0, sizeof(r));
		assert_int_equal(co_haproxy_show_stat(hx, stat_cb, &r, NULL), 0);
		run_until(&r.done);
		if (r.status == 0 && r.found[0] && r.found[1] &&
		    strncmp(r.stat[0].status, "UP", 2) == 0 &&
		    strncmp(r.stat[1].status, "UP", 2) == 0)
			return;
		sleep_ms(50);
	}
	fail_msg("haproxy servers did not come UP");
}

static int group_setup(void **state)
{
	static const char *const names[] = { "blue", "green" };
	struct co_haproxy_config_cluster clusters[2];
	struct co_haproxy_config cfg = { 0 };
	struct co_error err = CO_ERROR_INIT;
	char blue_addr[32], green_addr[32];
	char *args[] = { HAPROXY_BIN, "-W", "-db", "-f", cfg_path, NULL };
	uv_stdio_container_t stdio[3];
	uv_process_options_t o = { 0 };
	int logfd;

	if (access(HAPROXY_BIN, X_OK) != 0 || access(WRK_BIN, X_OK) != 0) {
		fprintf(stderr, "haproxy or wrk missing\n");
		return -1;
	}
	snprintf(dir, sizeof(dir), "/tmp/cutover-haproxy-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/admin.sock", dir);
	snprintf(state_path, sizeof(state_path), "%s/server-state", dir);
	snprintf(cfg_path, sizeof(cfg_path), "%s/haproxy.cfg", dir);
	snprintf(log_path, sizeof(log_path), "%s/haproxy.log", dir);
	if (test_backends_start(names, 2) < 0)
		return -1;
	snprintf(blue_addr, sizeof(blue_addr), "127.0.0.1:%d", test_backend(0)->port);
	snprintf(green_addr, sizeof(green_addr), "127.0.0.1:%d", test_backend(1)->port);
	clusters[0] = (struct co_haproxy_config_cluster){ "blue", blue_addr, 100 };
	clusters[1] = (struct co_haproxy_config_cluster){ "green", green_addr, 0 };
	public_port = free_port();
	preview_port = free_port();
	prom_port = free_port();
	cfg.stats_socket = sock_path;
	cfg.state_file = state_path;
	cfg.public_port = public_port;
	cfg.preview_port = preview_port;
	cfg.prom_port = prom_port;
	cfg.check_inter_ms = 100;
	cfg.clusters = clusters;
	cfg.n_clusters = 2;
	if (co_haproxy_config_write(cfg_path, &cfg, &err) < 0 ||
	    co_haproxy_config_check(HAPROXY_BIN, cfg_path, &err) < 0) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}

	uv_loop_init(&loop);
	logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
	stdio[1].data.fd = stdio[2].data.fd = logfd;
	o.file = HAPROXY_BIN;
	o.args = args;
	o.stdio = stdio;
	o.stdio_count = 3;
	o.exit_cb = haproxy_exit;
	if (uv_spawn(&loop, &haproxy_proc, &o) != 0)
		return -1;
	close(logfd);
	if (co_haproxy_new(&hx, &loop,
			   &(struct co_haproxy_opts){ .socket = sock_path,
						      .state_file = state_path,
						      .del_timeout_ms = 5000 },
			   &err) < 0)
		return -1;
	for (int i = 0; i < 100 && access(sock_path, F_OK) != 0; i++)
		sleep_ms(20);
	curl = curl_easy_init();
	return 0;
}

static int group_teardown(void **state)
{
	int rc;

	if (curl)
		curl_easy_cleanup(curl);
	co_haproxy_free(hx);
	if (!haproxy_exited) {
		uv_process_kill(&haproxy_proc, SIGTERM);
		run_until(&haproxy_exited);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	rc = uv_loop_close(&loop);
	if (test_backends_stop() != 0 || rc != 0) {
		fprintf(stderr, "handles left open\n");
		return -1;
	}
	if (getenv("CUTOVER_KEEP_TEST_DIR") == NULL) {
		char path[160];
		const char *files[] = { "admin.sock", "server-state", "haproxy.cfg",
					"haproxy.log" };

		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
			unlink(path);
		}
		rmdir(dir);
	}
	return 0;
}

/* ---- tests ---- */

static void test_weights_all_to_blue(void **state)
{
	int blue, green, bad, initial;
	struct res r;

	wait_up();
	assert_int_equal(get_weight("blue", &initial), 100);
	assert_int_equal(initial, 100);
	assert_int_equal(get_weight("green", NULL), 0);
	sample(40, &blue, &green, &bad);
	assert_int_equal(blue, 40);
	assert_int_equal(green, 0);
	assert_int_equal(bad, 0);

	/* the preview frontend reaches green although it takes no public traffic */
	{
		struct co_buf b = CO_BUF_INIT;

		assert_int_equal(http_get(preview_port, "/", "X-Cutover-Cluster: green", &b), 200);
		assert_string_equal(co_buf_cstr(&b), "green\n");
		assert_int_equal(http_get(preview_port, "/", "X-Cutover-Cluster: blue", &b), 200);
		assert_string_equal(co_buf_cstr(&b), "blue\n");
		assert_int_equal(http_get(preview_port, "/", "X-Cutover-Cluster: nope", &b), 503);
		/* the exporter answers on its own port with HAProxy's per-server series */
		assert_int_equal(http_get(prom_port, "/metrics", NULL, &b), 200);
		assert_non_null(strstr(co_buf_cstr(&b), "haproxy_server_weight{proxy=\"clusters\",server=\"green\"}"));
		co_buf_release(&b);
	}

	/* HAProxy's own refusals come back as errors with its text */
	assert_int_equal(command("get weight clusters/nope", &r), -EIO);
	assert_non_null(strstr(r.err.msg, "No such server"));
	assert_int_equal(command("set server clusters/blue weight 300", &r), -EIO);
	assert_non_null(strstr(r.err.msg, "between 0 and 256"));
	assert_int_equal(command("show nothing-at-all", &r), -EIO);
	stats(&r);
	assert_true(r.found[0] && r.found[1]);
	assert_int_equal(r.stat[0].hrsp[1] >= 40, 1);
}

struct shift_run {
	int done;
	int status;
	struct co_haproxy_shift_result res;
	struct co_error err;
	int steps_seen;
	int checks;
	int fail_at_percent;     /* inject green failures once this step is set */
	uint64_t injected_ms, rolled_back_ms;
	double ratios[16];
};

static void shift_progress(const struct co_haproxy_shift_event *ev, void *d)
{
	struct shift_run *s = d;

	if (ev->kind == CO_HAPROXY_SHIFT_STEP) {
		s->steps_seen++;
		printf("# step %d: %d%% (weights blue %d, green %d)\n", ev->step + 1,
		       ev->percent, ev->from_weight, ev->to_weight);
		if (s->fail_at_percent && ev->percent == s->fail_at_percent) {
			atomic_store(&test_backend(1)->fail, 1);
			s->injected_ms = co_time_mono_ms();
		}
	} else if (ev->kind == CO_HAPROXY_SHIFT_CHECK) {
		if (s->checks < 16)
			s->ratios[s->checks] = ev->window->error_ratio;
		s->checks++;
		printf("# check step %d: %s: %s\n", ev->step + 1, ev->pass ? "pass" : "FAIL",
		       ev->reason);
	} else {
		s->rolled_back_ms = co_time_mono_ms();
	}
}

static void shift_done(int status, const struct co_haproxy_shift_result *res,
		       const struct co_error *err, void *d)
{
	struct shift_run *s = d;

	s->done = 1;
	s->status = status;
	s->res = *res;
	co_error_copy(&s->err, err);
}

static void run_shift(struct shift_run *s, uint64_t interval, uint64_t every)
{
	static const int steps[] = { 10, 25, 50, 100 };
	struct co_haproxy_shift *shift;
	struct co_error err = CO_ERROR_INIT;
	struct co_haproxy_shift_opts o = {
		.backend = BACKEND,
		.from = "blue",
		.to = "green",
		.steps = steps,
		.n_steps = 4,
		.interval_ms = interval,
		.check_every_ms = every,
		.max_error_ratio = 0.01,
		.min_requests = 20,
		.progress = shift_progress,
		.progress_data = s,
	};

	if (co_haproxy_shift_start(&shift, &loop, hx, &o, shift_done, s, &err) < 0)
		fail_msg("%s", err.msg);
	run_until(&s->done);
}

static void test_shift_under_wrk(void **state)
{
	struct shift_run s = { 0 };
	long blue0 = atomic_load(&test_backend(0)->served);
	long green0 = atomic_load(&test_backend(1)->served);
	struct wrk w;
	uint64_t t0;

	wrk_start(&w, "6s");
	sleep_ms(300);
	t0 = co_time_mono_ms();
	run_shift(&s, 1000, 250);
	printf("# figure: shift 10,25,50,100 with 1 s per step took %llu ms\n",
	       (unsigned long long)(co_time_mono_ms() - t0));
	if (s.status != 0)
		fail_msg("%s", s.err.msg);
	assert_true(s.res.completed);
	assert_int_equal(s.steps_seen, 4);
	assert_true(s.checks >= 4);
	wrk_wait(&w);
	fputs(co_buf_cstr(&w.text), stdout);
	wrk_report("shift under load", &w);
	assert_null(strstr(co_buf_cstr(&w.text), "Non-2xx"));
	assert_null(strstr(co_buf_cstr(&w.text), "Socket errors"));
	assert_true(wrk_figure(&w, "Requests/sec:") > 100);
	assert_true(atomic_load(&test_backend(0)->served) > blue0);
	assert_true(atomic_load(&test_backend(1)->served) > green0 + 100);
	assert_int_equal(get_weight("blue", NULL), 0);
	assert_int_equal(get_weight("green", NULL), 100);
	co_buf_release(&w.text);
}

static void test_drain(void **state)
{
	int blue, green, bad;
	struct res r;

	/* green holds all the weight; blue takes over while green drains */
	set_weight("blue", 100);
	set_state("green", CO_HAPROXY_DRAIN);
	stats(&r);
	assert_string_equal(r.stat[1].status, "DRAIN");
	sample(30, &blue, &green, &bad);
	assert_int_equal(blue, 30);
	assert_int_equal(green, 0);
	assert_int_equal(bad, 0);
	set_state("green", CO_HAPROXY_READY);
	stats(&r);
	assert_int_equal(strncmp(r.stat[1].status, "UP", 2), 0);
	sample(30, &blue, &green, &bad);
	assert_true(blue > 0 && green > 0);
	assert_int_equal(bad, 0);
}

static void test_state_survives_reload(void **state)
{
	int pid0, pid1 = -1, initial;
	struct co_buf text = CO_BUF_INIT;
	FILE *f;
	char line[512];
	int lines = 0;

	set_weight("blue", 30);
	set_weight("green", 70);
	/* the dump written after the change holds both servers and their weights */
	f = fopen(state_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		co_buf_puts(&text, line);
		lines++;
	}
	fclose(f);
	assert_int_equal(strncmp(co_buf_cstr(&text), "1\n# be_id", 9), 0);
	assert_non_null(strstr(co_buf_cstr(&text), " clusters 1 blue 127.0.0.1 "));
	assert_true(lines >= 4);

	pid0 = haproxy_pid_of_worker();
	assert_true(pid0 > 0);
	uv_process_kill(&haproxy_proc, SIGUSR2);
	for (int i = 0; i < 200; i++) {
		pid1 = haproxy_pid_of_worker();
		if (pid1 > 0 && pid1 != pid0)
			break;
		sleep_ms(25);
	}
	assert_true(pid1 > 0 && pid1 != pid0);
	printf("# figure: reload: worker %d replaced by %d, weights kept\n", pid0, pid1);
	assert_int_equal(get_weight("blue", &initial), 30);
	assert_int_equal(initial, 100);
	assert_int_equal(get_weight("green", &initial), 70);
	assert_int_equal(initial, 0);
	wait_up();
	co_buf_release(&text);
}

static void test_dynamic_add_del(void **state)
{
	struct co_haproxy_server_spec spec = { .weight = 10, .check = 1, .start_ready = 1 };
	char addr[32];
	struct res r = { 0 };
	struct co_buf dump = CO_BUF_INIT;
	FILE *f;
	char line[512];

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", test_backend(0)->port);
	spec.address = addr;
	assert_int_equal(co_haproxy_add_server(hx, BACKEND, "red", &spec, text_cb, &r, NULL),
			 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
	assert_non_null(strstr(r.answer, "New server registered"));
	assert_int_equal(get_weight("red", NULL), 10);
	f = fopen(state_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		co_buf_puts(&dump, line);
	fclose(f);
	assert_non_null(strstr(co_buf_cstr(&dump), " red "));

	/* adding it twice is refused by HAProxy */
	memset(&r, 0, sizeof(r));
	assert_int_equal(co_haproxy_add_server(hx, BACKEND, "red", &spec, text_cb, &r, NULL),
			 0);
	run_until(&r.done);
	assert_int_equal(r.status, -EIO);
	printf("# add twice: %s\n", r.err.msg);

	/* traffic reaches it, then delete it (maint first, then del) */
	{
		int blue, green, bad;

		sample(20, &blue, &green, &bad);
		assert_int_equal(bad, 0);
	}
	memset(&r, 0, sizeof(r));
	assert_int_equal(co_haproxy_del_server(hx, BACKEND, "red", text_cb, &r, NULL), 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
	assert_non_null(strstr(r.answer, "Server deleted"));
	assert_int_equal(command("get weight clusters/red", &r), -EIO);
	memset(&r, 0, sizeof(r));
	assert_int_equal(co_haproxy_del_server(hx, BACKEND, "red", text_cb, &r, NULL), 0);
	run_until(&r.done);
	assert_int_equal(r.status, -EIO);
	assert_non_null(strstr(r.err.msg, "No such server"));
	co_buf_release(&dump);
}

/*
 * A server HAProxy has just learned of reports UP before its first health check has
 * run. A shift to it must be refused until a check has passed (invariant I1): here the
 * server points at a port nobody listens on, and the shift starts at once.
 */
static void test_shift_to_unchecked_server_refused(void **state)
{
	static const int steps[] = { 50, 100 };
	struct co_haproxy_server_spec spec = { .weight = 0, .check = 1, .start_ready = 1,
					       .address = "127.0.0.1:1" };
	struct co_haproxy_shift_opts o = { .backend = BACKEND, .from = "blue", .to = "dead",
					   .steps = steps, .n_steps = 2, .interval_ms = 200 };
	struct co_haproxy_shift *shift;
	struct co_error err = CO_ERROR_INIT;
	struct shift_run sr = { 0 };
	struct res r = { 0 };
	int blue_before = get_weight("blue", NULL);

	assert_int_equal(co_haproxy_add_server(hx, BACKEND, "dead", &spec, text_cb, &r, NULL),
			 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
	assert_int_equal(co_haproxy_shift_start(&shift, &loop, hx, &o, shift_done, &sr, &err),
			 0);
	run_until(&sr.done);
	assert_int_equal(sr.status, -EHOSTUNREACH);
	assert_non_null(strstr(sr.err.msg, "refusing to send traffic"));
	assert_int_equal(get_weight("dead", NULL), 0);
	assert_int_equal(get_weight("blue", NULL), blue_before);
	memset(&r, 0, sizeof(r));
	assert_int_equal(co_haproxy_del_server(hx, BACKEND, "dead", text_cb, &r, NULL), 0);
	run_until(&r.done);
	if (r.status < 0)
		fail_msg("%s", r.err.msg);
}

static void test_regression_rolls_back(void **state)
{
	struct shift_run s = { .fail_at_percent = 25 };
	struct wrk w;

	set_weight("blue", 100);
	set_weight("green", 0);
	wrk_start(&w, "5s");
	sleep_ms(300);
	run_shift(&s, 1500, 250);
	assert_int_equal(s.status, -EIO);
	assert_true(s.res.rolled_back);
	assert_false(s.res.completed);
	assert_int_equal(s.res.percent, 0);
	assert_true(s.res.error_ratio > 0.01);
	assert_true(s.injected_ms > 0 && s.rolled_back_ms >= s.injected_ms);
	printf("# figure: regression at 25%%: rolled back %llu ms after green began "
	       "failing; error ratio seen %.3f over %llu requests\n# %s\n",
	       (unsigned long long)(s.rolled_back_ms - s.injected_ms), s.res.error_ratio,
	       (unsigned long long)s.res.requests, s.err.msg);
	assert_int_equal(get_weight("blue", NULL), 100);
	assert_int_equal(get_weight("green", NULL), 0);
	wrk_wait(&w);
	wrk_report("regression run", &w);
	atomic_store(&test_backend(1)->fail, 0);
	{
		int blue, green, bad;

		sample(20, &blue, &green, &bad);
		assert_int_equal(blue, 20);
		assert_int_equal(bad, 0);
	}
	co_buf_release(&w.text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_weights_all_to_blue),
		cmocka_unit_test(test_shift_under_wrk),
		cmocka_unit_test(test_drain),
		cmocka_unit_test(test_state_survives_reload),
		cmocka_unit_test(test_dynamic_add_del),
		cmocka_unit_test(test_shift_to_unchecked_server_refused),
		cmocka_unit_test(test_regression_rolls_back),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
