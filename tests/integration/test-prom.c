/*
 * Integration test of the Prometheus client against a real Debian `prometheus`.
 *
 * A fixture exporter (co_http_server on an ephemeral port) serves known counters, a
 * gauge, a NaN gauge and a histogram at /metrics; the test writes a config that
 * scrapes it every second with a `cluster` target label, starts prometheus on
 * 127.0.0.1 with an ephemeral port and a temporary TSDB, waits until two scrapes are
 * queryable, then runs a fixed list of queries through co_prom_* (GET, and POST for a
 * long one): vector, matrix, NaN, +Inf, scalar, histogram quantile, empty result and
 * a bad query whose 400 bad_data must come back verbatim. Finally the comparison
 * driver and the judge run end to end on a second target labelled cluster=green
 * whose latency histogram is slower: blue against blue passes, green fails.
 *
 * Callbacks only record what they saw; assertions run after the loop has stopped
 * and prometheus has been killed, so a failing check never leaves a process behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "analysis/compare.h"
#include "analysis/judge.h"
#include "base/buf.h"
#include "base/time.h"
#include "clients/prom.h"
#include "net/http-client.h"
#include "net/http-server.h"

#define READY_DEADLINE_MS 30000

enum { Q_VECTOR, Q_TWO_SERIES, Q_MATRIX, Q_NAN, Q_INF, Q_SCALAR, Q_QUANTILE, Q_EMPTY,
       Q_BAD, Q_POST, Q_COUNT };

struct outcome {
	int done;
	int status;
	char err[CO_ERROR_MSG_MAX];
	struct co_prom_result *res;
};

struct fx {
	uv_loop_t loop;
	struct co_http_server *exporter;
	unsigned scrapes;
	unsigned scrapes_green;
	uv_process_t proc;
	int proc_running;
	int64_t proc_exit_status;
	int proc_term_signal;
	char dir[64];
	char log_path[128];
	int prom_port;
	struct co_http_client *http;
	struct co_prom_client *prom;
	struct co_prom_client *prom_post;
	uv_timer_t timer;
	uint64_t started_ms;
	int ready;
	int next;                   /* next query to issue */
	double now;
	struct outcome out[Q_COUNT];
	int closed_cbs;
	char setup_err[256];
	/* end to end: the judge on blue vs blue and blue vs green */
	struct co_judge_config *cfg;
	struct co_compare_result *same, *worse;
	int same_status, worse_status;
	int compares_pending;
	char compare_err[CO_ERROR_MSG_MAX];
};

static const char judge_config[] =
	"{\"interval\": \"3s\", \"metrics\": ["
	"{\"name\": \"latency-p50\", \"group\": \"latency\", \"mustHaveData\": true,"
	" \"query\": \"histogram_quantile(0.5, sum by (le) (rate(fixture_latency_seconds_bucket"
	"{cluster=\\\"{{ cluster }}\\\"}[{{ interval }}])))\","
	" \"thresholds\": [\"<= baseline * 1.2\"]},"
	"{\"name\": \"request-rate\", \"group\": \"traffic\", \"direction\": \"decrease\","
	" \"mannWhitney\": false, \"query\": \"sum(rate(fixture_requests_total"
	"{cluster=\\\"{{ cluster }}\\\"}[{{ interval }}]))\", \"thresholds\": [\">= -10%\"]},"
	"{\"name\": \"absent\", \"query\": \"no_such_metric{cluster=\\\"{{ cluster }}\\\"}\"}"
	"]}";

/* ---- the fixture exporter ---- */

/* /metrics/blue and /metrics/green: the same counters; green's latency histogram
 * puts the median at 0.42 s where blue's is at 0.1 s. */
static void on_metrics(struct co_http_req *req, void *data)
{
	struct fx *f = data;
	struct co_buf b = CO_BUF_INIT;
	int green = strcmp(co_http_req_param(req, "cluster"), "green") == 0;
	unsigned s = green ? ++f->scrapes_green : ++f->scrapes;

	co_buf_printf(&b,
		      "# TYPE fixture_requests_total counter\n"
		      "fixture_requests_total{code=\"200\"} %u\n"
		      "fixture_requests_total{code=\"500\"} %u\n"
		      "# TYPE fixture_gauge gauge\n"
		      "fixture_gauge 42\n"
		      "# TYPE fixture_nan gauge\n"
		      "fixture_nan NaN\n"
		      "# TYPE fixture_latency_seconds histogram\n"
		      "fixture_latency_seconds_bucket{le=\"0.1\"} %u\n"
		      "fixture_latency_seconds_bucket{le=\"0.5\"} %u\n"
		      "fixture_latency_seconds_bucket{le=\"+Inf\"} %u\n"
		      "fixture_latency_seconds_sum %u\n"
		      "fixture_latency_seconds_count %u\n",
		      10 * s, s, (green ? 10 : 50) * s, (green ? 60 : 90) * s, 100 * s, 12 * s,
		      100 * s);
	co_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len);
	co_buf_release(&b);
}

/* ---- prometheus process ---- */

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void on_proc_exit(uv_process_t *p, int64_t status, int term_signal)
{
	struct fx *f = p->data;

	f->proc_running = 0;
	f->proc_exit_status = status;
	f->proc_term_signal = term_signal;
	uv_close((uv_handle_t *)p, NULL);
}

static int start_prometheus(struct fx *f, int exporter_port)
{
	char cfg_path[128], data_arg[160], cfg_arg[160], listen_arg[64];
	char *args[8];
	uv_process_options_t o = { 0 };
	uv_stdio_container_t stdio[3];
	FILE *c;
	int log_fd, rc;

	snprintf(cfg_path, sizeof(cfg_path), "%s/prometheus.yml", f->dir);
	c = fopen(cfg_path, "w");
	if (!c)
		return -errno;
	fprintf(c,
		"global:\n"
		"  scrape_interval: 1s\n"
		"  evaluation_interval: 1s\n"
		"scrape_configs:\n"
		"  - job_name: fixture\n"
		"    metrics_path: /metrics/blue\n"
		"    static_configs:\n"
		"      - targets: ['127.0.0.1:%d']\n"
		"        labels:\n"
		"          cluster: blue\n"
		"  - job_name: fixture-green\n"
		"    metrics_path: /metrics/green\n"
		"    static_configs:\n"
		"      - targets: ['127.0.0.1:%d']\n"
		"        labels:\n"
		"          cluster: green\n",
		exporter_port, exporter_port);
	fclose(c);
	f->prom_port = free_port();
	if (f->prom_port < 0)
		return -EADDRNOTAVAIL;
	snprintf(cfg_arg, sizeof(cfg_arg), "--config.file=%s", cfg_path);
	snprintf(data_arg, sizeof(data_arg), "--storage.tsdb.path=%s/data", f->dir);
	snprintf(listen_arg, sizeof(listen_arg), "--web.listen-address=127.0.0.1:%d",
		 f->prom_port);
	args[0] = "prometheus";
	args[1] = cfg_arg;
	args[2] = data_arg;
	args[3] = listen_arg;
	args[4] = "--log.level=warn";
	args[5] = NULL;
	snprintf(f->log_path, sizeof(f->log_path), "%s/prometheus.log", f->dir);
	log_fd = open(f->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (log_fd < 0)
		return -errno;
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = log_fd;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = log_fd;
	o.file = "prometheus";
	o.args = args;
	o.exit_cb = on_proc_exit;
	o.stdio = stdio;
	o.stdio_count = 3;
	f->proc.data = f;
	rc = uv_spawn(&f->loop, &f->proc, &o);
	close(log_fd);
	if (rc == 0)
		f->proc_running = 1;
	return rc;
}

/* ---- the query sequence ---- */

static void issue_next(struct fx *f);
static void shutdown_all(struct fx *f);

struct compare_ctx {
	struct fx *f;
	int worse;
};

static struct compare_ctx compare_ctx[2];

static void on_compare(int status, struct co_compare_result *res,
		       const struct co_error *err, void *data)
{
	struct compare_ctx *c = data;
	struct fx *f = c->f;

	if (c->worse) {
		f->worse = res;
		f->worse_status = status;
	} else {
		f->same = res;
		f->same_status = status;
	}
	if (status < 0)
		snprintf(f->compare_err, sizeof(f->compare_err), "%s", err->msg);
	if (--f->compares_pending == 0)
		shutdown_all(f);
}

/* Both comparisons at once over the last 5 seconds, one-second steps. */
static void start_compares(struct fx *f)
{
	double now = (double)co_time_wall_ms() / 1000;
	struct co_compare_params p = { .baseline = "blue", .start = floor(now) - 5,
				       .end = floor(now), .step = 1,
				       .query_timeout_ms = 5000 };
	struct co_error err = CO_ERROR_INIT;

	for (int i = 0; i < 2; i++) {
		compare_ctx[i] = (struct compare_ctx){ f, i };
		p.candidate = i ? "green" : "blue";
		if (co_compare_start(NULL, f->prom, f->cfg, &p, on_compare, &compare_ctx[i],
				     &err) < 0) {
			snprintf(f->compare_err, sizeof(f->compare_err), "start: %s", err.msg);
			continue;
		}
		f->compares_pending++;
	}
	if (f->compares_pending == 0)
		shutdown_all(f);
}

static void on_result(int status, struct co_prom_result *res, const struct co_error *err,
		      void *data)
{
	struct outcome *o = data;

	o->done = 1;
	o->status = status;
	o->res = res;
	if (status < 0 && err)
		snprintf(o->err, sizeof(o->err), "%s", err->msg);
}

struct slot_ctx {
	struct fx *f;
	int idx;
};

static struct slot_ctx slots[Q_COUNT];

static void on_seq_result(int status, struct co_prom_result *res, const struct co_error *err,
			  void *data)
{
	struct slot_ctx *s = data;

	on_result(status, res, err, &s->f->out[s->idx]);
	issue_next(s->f);
}

static void issue_next(struct fx *f)
{
	struct co_error err = CO_ERROR_INIT;
	int i = f->next++, rc = 0;
	struct slot_ctx *s = &slots[i < Q_COUNT ? i : 0];
	const char *long_q;

	if (i >= Q_COUNT) {
		start_compares(f);
		return;
	}
	s->f = f;
	s->idx = i;
	switch (i) {
	case Q_VECTOR:
		rc = co_prom_query(f->prom, NULL, "fixture_gauge{cluster=\"blue\"}", NAN, 5000, on_seq_result, s,
				   &err);
		break;
	case Q_TWO_SERIES:
		rc = co_prom_query(f->prom, NULL, "fixture_requests_total{cluster=\"blue\"}", f->now, 5000,
				   on_seq_result, s, &err);
		break;
	case Q_MATRIX:
		rc = co_prom_query_range(f->prom, NULL,
					 "fixture_requests_total{code=\"200\",cluster=\"blue\"}",
					 f->now - 10, f->now, 1, 5000, on_seq_result, s, &err);
		break;
	case Q_NAN:
		rc = co_prom_query(f->prom, NULL, "fixture_nan{cluster=\"blue\"}", NAN, 5000, on_seq_result, s,
				   &err);
		break;
	case Q_INF:
		rc = co_prom_query(f->prom, NULL, "fixture_gauge{cluster=\"blue\"} / 0", NAN, 5000, on_seq_result,
				   s, &err);
		break;
	case Q_SCALAR:
		rc = co_prom_query(f->prom, NULL, "scalar(fixture_gauge{cluster=\"blue\"}) * 2", NAN, 5000,
				   on_seq_result, s, &err);
		break;
	case Q_QUANTILE:
		rc = co_prom_query(f->prom, NULL,
				   "histogram_quantile(0.5, sum by (le) "
				   "(rate(fixture_latency_seconds_bucket{cluster=\"blue\"}[10s])))",
				   NAN, 5000, on_seq_result, s, &err);
		break;
	case Q_EMPTY:
		rc = co_prom_query_range(f->prom, NULL, "no_such_metric_anywhere", f->now - 10,
					 f->now, 1, 5000, on_seq_result, s, &err);
		break;
	case Q_BAD:
		rc = co_prom_query(f->prom, NULL, "sum(", NAN, 5000, on_seq_result, s, &err);
		break;
	case Q_POST:
		/* longer than the second client's post threshold: sent as a form POST */
		long_q = "fixture_gauge{cluster=\"blue\"} + 0 * fixture_gauge{cluster=\"blue\"}";
		rc = co_prom_query(f->prom_post, NULL, long_q, NAN, 5000, on_seq_result, s,
				   &err);
		break;
	}
	if (rc < 0) {
		f->out[i].done = 1;
		f->out[i].status = rc;
		snprintf(f->out[i].err, sizeof(f->out[i].err), "start: %s", err.msg);
		issue_next(f);
	}
}

/* Readiness: poll until fixture_requests_total{code="200"} has advanced over at least
 * three scrapes inside Prometheus, so range queries and rate() have points. */
static void on_ready_probe(int status, struct co_prom_result *res, const struct co_error *err,
			   void *data);

static void probe(struct fx *f)
{
	struct co_error err = CO_ERROR_INIT;

	if (co_prom_query(f->prom, NULL, "min(count_over_time(fixture_gauge[1m]))", NAN, 2000,
			  on_ready_probe, f, &err) < 0) {
		snprintf(f->setup_err, sizeof(f->setup_err), "probe: %s", err.msg);
		shutdown_all(f);
	}
}

static void on_retry_timer(uv_timer_t *t)
{
	probe(t->data);
}

static void on_ready_probe(int status, struct co_prom_result *res, const struct co_error *err,
			   void *data)
{
	struct fx *f = data;
	int ready = status == 0 && res->n_series == 1 && res->series[0].n_points == 1 &&
		    res->series[0].points[0].v >= 6;

	co_prom_result_free(res);
	if (ready) {
		f->ready = 1;
		f->now = (double)co_time_wall_ms() / 1000;
		issue_next(f);
		return;
	}
	if (co_time_mono_ms() - f->started_ms > READY_DEADLINE_MS || !f->proc_running) {
		snprintf(f->setup_err, sizeof(f->setup_err),
			 "prometheus not ready after %d ms (running %d, last: %s)",
			 READY_DEADLINE_MS, f->proc_running,
			 status < 0 && err ? err->msg : "too few samples");
		shutdown_all(f);
		return;
	}
	uv_timer_start(&f->timer, on_retry_timer, 250, 0);
}

/* ---- teardown ---- */

static void on_closed(void *data)
{
	struct fx *f = data;

	f->closed_cbs++;
}

static void shutdown_all(struct fx *f)
{
	uv_timer_stop(&f->timer);
	uv_close((uv_handle_t *)&f->timer, NULL);
	if (f->proc_running)
		uv_process_kill(&f->proc, SIGTERM);
	co_prom_client_free(f->prom);
	co_prom_client_free(f->prom_post);
	f->prom = f->prom_post = NULL;
	co_http_client_close(f->http, on_closed, f);
	co_http_server_close(f->exporter, on_closed, f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void dump_log(const struct fx *f)
{
	FILE *l = fopen(f->log_path, "r");
	char line[512];

	if (!l)
		return;
	while (fgets(line, sizeof(line), l))
		fprintf(stderr, "prometheus: %s", line);
	fclose(l);
}

static void test_prom_client(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct co_http_server_opts so = { .host = "127.0.0.1", .port = 0 };
	struct co_error err = CO_ERROR_INIT;
	struct co_prom_opts po = { 0 }, pp = { 0 };
	char url[64];
	struct co_prom_result *r;

	assert_non_null(f);
	{
		json_t *doc = json_loads(judge_config, 0, NULL);

		assert_non_null(doc);
		assert_int_equal(co_judge_config_from_json(&f->cfg, doc, &err), 0);
		json_decref(doc);
	}
	snprintf(f->dir, sizeof(f->dir), "/tmp/cutover-prom-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(co_http_server_new(&f->exporter, &f->loop, &so, &err), 0);
	co_http_server_route(f->exporter, "GET", "/metrics/{cluster}", on_metrics, f);
	assert_int_equal(co_http_client_new(&f->http, &f->loop, &err), 0);
	assert_int_equal(start_prometheus(f, co_http_server_port(f->exporter)), 0);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", f->prom_port);
	po.url = url;
	pp.url = url;
	pp.post_threshold = 16;
	assert_int_equal(co_prom_client_new(&f->prom, f->http, &po, &err), 0);
	assert_int_equal(co_prom_client_new(&f->prom_post, f->http, &pp, &err), 0);
	uv_timer_init(&f->loop, &f->timer);
	f->timer.data = f;
	f->started_ms = co_time_mono_ms();
	uv_timer_start(&f->timer, on_retry_timer, 500, 0);

	uv_run(&f->loop, UV_RUN_DEFAULT);

	/* everything stopped: the process is reaped, the handles are closed */
	assert_false(f->proc_running);
	assert_int_equal(f->closed_cbs, 2);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	if (!f->ready)
		dump_log(f);
	nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	if (f->setup_err[0])
		fprintf(stderr, "setup: %s\n", f->setup_err);
	assert_true(f->ready);
	assert_true(f->scrapes >= 4);
	for (int i = 0; i < Q_COUNT; i++) {
		assert_true(f->out[i].done);
		if (i != Q_BAD && f->out[i].status != 0)
			fprintf(stderr, "query %d: %s\n", i, f->out[i].err);
	}

	r = f->out[Q_VECTOR].res;
	assert_int_equal(f->out[Q_VECTOR].status, 0);
	assert_int_equal(r->type, CO_PROM_VECTOR);
	assert_int_equal(r->n_series, 1);
	assert_true(r->series[0].points[0].v == 42);
	assert_string_equal(json_string_value(json_object_get(r->series[0].labels, "cluster")),
			    "blue");
	assert_string_equal(json_string_value(json_object_get(r->series[0].labels, "job")),
			    "fixture");

	r = f->out[Q_TWO_SERIES].res;
	assert_int_equal(f->out[Q_TWO_SERIES].status, 0);
	assert_int_equal(r->n_series, 2);

	r = f->out[Q_MATRIX].res;
	assert_int_equal(f->out[Q_MATRIX].status, 0);
	assert_int_equal(r->type, CO_PROM_MATRIX);
	assert_int_equal(r->n_series, 1);
	assert_true(r->series[0].n_points >= 3);
	for (size_t k = 0; k < r->series[0].n_points; k++) {
		double v = r->series[0].points[k].v;

		assert_true(v >= 10 && fmod(v, 10) == 0);
		if (k) {
			assert_true(v >= r->series[0].points[k - 1].v);
			assert_true(r->series[0].points[k].t - r->series[0].points[k - 1].t == 1);
		}
	}

	r = f->out[Q_NAN].res;
	assert_int_equal(f->out[Q_NAN].status, 0);
	assert_int_equal(r->n_series, 1);
	assert_true(isnan(r->series[0].points[0].v));

	r = f->out[Q_INF].res;
	assert_int_equal(f->out[Q_INF].status, 0);
	assert_true(isinf(r->series[0].points[0].v) && r->series[0].points[0].v > 0);

	r = f->out[Q_SCALAR].res;
	assert_int_equal(f->out[Q_SCALAR].status, 0);
	assert_int_equal(r->type, CO_PROM_SCALAR);
	assert_true(r->scalar.v == 84);

	/* half of the observations lie in the first bucket (0, 0.1]: the median is its
	 * upper bound */
	r = f->out[Q_QUANTILE].res;
	assert_int_equal(f->out[Q_QUANTILE].status, 0);
	assert_int_equal(r->n_series, 1);
	assert_true(fabs(r->series[0].points[0].v - 0.1) < 1e-9);

	r = f->out[Q_EMPTY].res;
	assert_int_equal(f->out[Q_EMPTY].status, 0);
	assert_int_equal(r->type, CO_PROM_MATRIX);
	assert_true(co_prom_result_no_data(r));

	assert_int_equal(f->out[Q_BAD].status, -EINVAL);
	assert_null(f->out[Q_BAD].res);
	assert_non_null(strstr(f->out[Q_BAD].err, "query 'sum(': prometheus 400 bad_data: "));
	assert_non_null(strstr(f->out[Q_BAD].err, "parse error"));

	r = f->out[Q_POST].res;
	assert_int_equal(f->out[Q_POST].status, 0);
	assert_true(r->series[0].points[0].v == 42);

	for (int i = 0; i < Q_COUNT; i++)
		co_prom_result_free(f->out[i].res);

	/* the judge end to end: blue against itself passes on identical samples ... */
	if (f->compare_err[0])
		fprintf(stderr, "compare: %s\n", f->compare_err);
	assert_int_equal(f->same_status, 0);
	assert_int_equal(f->worse_status, 0);
	assert_non_null(f->same);
	assert_non_null(f->worse);
	{
		const struct co_judge_result *j = f->same->judge;

		assert_int_equal(j->metrics[0].classification, CO_JUDGE_PASS);
		assert_true(j->metrics[0].n_baseline >= 4);
		assert_true(fabs(j->metrics[0].baseline - 0.1) < 1e-9);
		assert_int_equal(j->metrics[1].classification, CO_JUDGE_PASS);
		assert_true(j->metrics[1].baseline > 5);
		assert_int_equal(j->metrics[2].classification, CO_JUDGE_NODATA);
		assert_int_equal(j->verdict, CO_JUDGE_VERDICT_PASS);
		assert_true(j->score == 100);
	}
	/* ... and green's median of 0.42 s against blue's 0.1 s fails */
	{
		const struct co_judge_result *j = f->worse->judge;
		json_t *dump;

		assert_int_equal(j->metrics[0].classification, CO_JUDGE_HIGH);
		assert_true(fabs(j->metrics[0].candidate - 0.42) < 1e-9);
		assert_int_equal(j->metrics[0].violated_rule, 0);
		assert_true(j->metrics[0].mw_done);
		assert_true(j->metrics[0].mw.ci_low > 0.3);
		assert_int_equal(j->metrics[1].classification, CO_JUDGE_PASS);
		assert_true(fabs(j->score - 50) < 1e-9);
		assert_int_equal(j->verdict, CO_JUDGE_VERDICT_FAIL);
		assert_non_null(strstr(f->worse->candidate[0].query, "cluster=\"green\""));
		dump = co_compare_result_json(f->worse);
		assert_string_equal(json_string_value(json_object_get(dump, "verdict")), "Fail");
		assert_true(json_array_size(json_object_get(json_object_get(
			json_array_get(json_object_get(dump, "metrics"), 0), "candidateSeries"),
			"samples")) == j->metrics[0].n_candidate);
		json_decref(dump);
	}
	co_compare_result_free(f->same);
	co_compare_result_free(f->worse);
	co_judge_config_free(f->cfg);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_prom_client),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
