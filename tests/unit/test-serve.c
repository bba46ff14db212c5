/*
 * The runner's HTTP surface driven by the real curl CLI: health, metrics, the
 * pipeline API over a journal, signed and unsigned git webhooks, and the
 * Flagger-loadtester gates mounted on the real server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/fs.h"
#include "base/log.h"
#include "engine/pipeline.h"
#include "engine/serve.h"

#define SECRET "s3cret-hook-key"
static const char BODY[] =
	"{\"ref\":\"refs/heads/main\",\"after\":\"0123456789abcdef0123456789abcdef01234567\","
	"\"repository\":{\"clone_url\":\"https://git.example.com/team/tenant-core.git\","
	"\"ssh_url\":\"git@git.example.com:team/tenant-core.git\"}}";
/* HMAC-SHA256(SECRET, BODY), computed with Python's hmac module. */
static const char SIG[] = "bb60e8cf47498e6b24932c4398432f7eb84ad14bbec011a98049a38bea0908ca";

struct ctx {
	char url[64];
	char dir[64];
	uv_async_t done;
	struct co_serve *srv;
	int pushes;
	char pushed_url[256];
	/* results filled by the client thread */
	char out[16][2048];
};

static void sh_capture(char *out, size_t n, const char *fmt, ...)
{
	struct co_buf cmd = CO_BUF_INIT;
	va_list ap;
	FILE *p;
	size_t got;

	va_start(ap, fmt);
	co_buf_vprintf(&cmd, fmt, ap);
	va_end(ap);
	p = popen(co_buf_cstr(&cmd), "r");
	got = p ? fread(out, 1, n - 1, p) : 0;
	out[got] = '\0';
	if (p)
		pclose(p);
	co_buf_release(&cmd);
}

static void *client(void *arg)
{
	struct ctx *c = arg;
	char *body_file = co_asprintf("%s/body.json", c->dir);
	FILE *f = fopen(body_file, "w");

	fputs(BODY, f);
	fclose(f);
	sh_capture(c->out[0], sizeof(c->out[0]), "curl -s %s/healthz", c->url);
	sh_capture(c->out[1], sizeof(c->out[1]),
		   "curl -s -w ' %%{http_code}' -H 'X-Hub-Signature-256: sha256=%s' "
		   "-H 'X-GitHub-Event: push' --data-binary @%s %s/hooks/git",
		   SIG, body_file, c->url);
	sh_capture(c->out[2], sizeof(c->out[2]),
		   "curl -s -w ' %%{http_code}' -H 'X-Hub-Signature-256: sha256=%064d' "
		   "--data-binary @%s %s/hooks/git", 0, body_file, c->url);
	sh_capture(c->out[3], sizeof(c->out[3]),
		   "curl -s -w ' %%{http_code}' --data-binary @%s %s/hooks/git", body_file,
		   c->url);
	sh_capture(c->out[4], sizeof(c->out[4]), "curl -s %s/metrics", c->url);
	sh_capture(c->out[5], sizeof(c->out[5]), "curl -s %s/api/v1/pipelines/p1", c->url);
	sh_capture(c->out[6], sizeof(c->out[6]), "curl -s -w ' %%{http_code}' "
		   "%s/api/v1/pipelines/nope", c->url);
	sh_capture(c->out[7], sizeof(c->out[7]), "curl -s %s/api/v1/pipelines", c->url);
	sh_capture(c->out[8], sizeof(c->out[8]), "curl -s -o /dev/null -w '%%{http_code}' "
		   "-d '{\"name\":\"podinfo\",\"namespace\":\"core\"}' %s/gate/check", c->url);
	sh_capture(c->out[9], sizeof(c->out[9]), "curl -s -o /dev/null -w '%%{http_code}' "
		   "-d '{\"name\":\"podinfo\",\"namespace\":\"core\"}' %s/gate/open", c->url);
	sh_capture(c->out[10], sizeof(c->out[10]), "curl -s -o /dev/null -w '%%{http_code}' "
		   "-d '{\"name\":\"podinfo\",\"namespace\":\"core\"}' %s/gate/check", c->url);
	sh_capture(c->out[11], sizeof(c->out[11]), "curl -s -w ' %%{http_code}' -d "
		   "'{\"name\":\"podinfo\",\"namespace\":\"core\",\"metadata\":{\"type\":\"bash\","
		   "\"cmd\":\"curl x\"}}' %s/", c->url);
	free(body_file);
	uv_async_send(&c->done);
	return NULL;
}

static void all_done(uv_async_t *a)
{
	struct ctx *c = a->data;

	uv_close((uv_handle_t *)a, NULL);
	co_serve_close(c->srv, NULL, NULL);
}

static void on_push(const struct co_git_push *push, void *data)
{
	struct ctx *c = data;

	c->pushes++;
	snprintf(c->pushed_url, sizeof(c->pushed_url), "%s", push->urls[0]);
}

static int stage_start(struct co_stage_run *run, const char *state, const json_t *details,
		       struct co_error *err)
{
	return -EINVAL;
}

static const struct co_stage_ops stage_x = { "preflight", "", 1000, true, stage_start, NULL,
					     NULL };
static const struct co_stage_ops *const stages[] = { &stage_x, NULL };

static void make_pipeline(const char *dir)
{
	uv_loop_t loop;
	json_t *req = json_pack("{s:s}", "old", "cluster1");
	struct co_pipeline_opts o = { .state_dir = dir, .id = "p1", .request = req,
				      .stages = stages };
	struct co_pipeline *p = NULL;
	struct co_error err = CO_ERROR_INIT;

	uv_loop_init(&loop);
	assert_int_equal(co_pipeline_open(&p, &loop, &o, NULL, &err), 0);
	co_pipeline_free(p);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	json_decref(req);
}

static void test_serve(void **state)
{
	struct ctx c = { 0 };
	uv_loop_t loop;
	struct co_error err = CO_ERROR_INIT;
	struct co_serve_opts o = { .webhook_secret = SECRET, .stages = stages,
				   .on_push = on_push, .push_data = &c };
	pthread_t th;
	struct co_buf events = CO_BUF_INIT;
	char *path;

	strcpy(c.dir, "/tmp/co-serve-XXXXXX");
	assert_non_null(mkdtemp(c.dir));
	make_pipeline(c.dir);
	o.state_dir = c.dir;
	uv_loop_init(&loop);
	assert_int_equal(co_serve_new(&c.srv, &loop, &o, &err), 0);
	snprintf(c.url, sizeof(c.url), "%s", co_serve_url(c.srv));
	uv_async_init(&loop, &c.done, all_done);
	c.done.data = &c;
	assert_int_equal(pthread_create(&th, NULL, client, &c), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	pthread_join(th, NULL);
	assert_int_equal(uv_loop_close(&loop), 0);

	assert_string_equal(c.out[0], "ok\n");
	assert_non_null(strstr(c.out[1], "accepted\"} 202"));
	assert_non_null(strstr(c.out[2], "does not match\"} 401"));
	assert_non_null(strstr(c.out[3], "no signature"));
	assert_int_equal(c.pushes, 1);
	assert_string_equal(c.pushed_url, "https://git.example.com/team/tenant-core.git");
	assert_non_null(strstr(c.out[4], "cutover_webhooks_total{result=\"accepted\"} 1\n"));
	assert_non_null(strstr(c.out[4], "cutover_webhooks_total{result=\"rejected\"} 2\n"));
	assert_non_null(strstr(c.out[5], "\"id\":\"p1\""));
	assert_non_null(strstr(c.out[5], "\"state\":\"running\""));
	assert_non_null(strstr(c.out[6], " 404"));
	assert_non_null(strstr(c.out[7], "\"items\""));
	assert_string_equal(c.out[8], "403");
	assert_string_equal(c.out[9], "202");
	assert_string_equal(c.out[10], "200");
	assert_non_null(strstr(c.out[11], " 400"));

	path = co_asprintf("%s/events/git-push.jsonl", c.dir);
	assert_int_equal(co_fs_read(path, 1 << 20, &events, &err), 0);
	assert_non_null(strstr(co_buf_cstr(&events), "refs/heads/main"));
	assert_non_null(strchr(co_buf_cstr(&events), '\n'));
	free(path);
	co_buf_release(&events);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serve),
	};

	co_log_setup(CO_LOG_OFF, CO_LOG_HUMAN, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
