/*
 * hey command lines: a small shell-like tokeniser (a character state machine with
 * three quoting states) and a Go-flag-style parser that fills co_loadgen_opts. The
 * parser keeps hey's defaults and checks so that a command copied from a Flagger
 * canary behaves as it did under the real hey, and refuses everything it does not
 * implement rather than ignoring it.
 */
#include "analysis/heycmd.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/time.h"

/* ------------------------------------------------------------- tokeniser */

void co_heycmd_argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

int co_heycmd_split(const char *cmd, char ***ret_argv, int *ret_argc,
		    struct co_error *err)
{
	enum { PLAIN, SINGLE, DOUBLE } q = PLAIN;
	struct co_buf word = CO_BUF_INIT;
	char **argv = NULL;
	int argc = 0, in_word = 0, rc = 0;
	size_t len = strlen(cmd);

	if (len > CO_HEYCMD_MAX_LEN)
		return co_error_set(err, -EINVAL, "command longer than %d bytes",
				    CO_HEYCMD_MAX_LEN);
	argv = co_calloc(CO_HEYCMD_MAX_ARGS + 1, sizeof(*argv));
	for (size_t i = 0; i <= len; i++) {
		char ch = cmd[i];

		if (q == SINGLE) {
			if (ch == 0) {
				rc = co_error_set(err, -EINVAL, "unterminated single quote");
				goto out;
			}
			if (ch == '\'')
				q = PLAIN;
			else
				co_buf_putc(&word, ch);
			continue;
		}
		if (q == DOUBLE) {
			if (ch == 0) {
				rc = co_error_set(err, -EINVAL, "unterminated double quote");
				goto out;
			}
			if (ch == '"') {
				q = PLAIN;
			} else if (ch == '\\' && cmd[i + 1] &&
				   strchr("\"\\$`\n", cmd[i + 1])) {
				if (cmd[++i] != '\n')
					co_buf_putc(&word, cmd[i]);
			} else {
				co_buf_putc(&word, ch);
			}
			continue;
		}
		if (ch == 0 || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
			if (!in_word)
				continue;
			if (argc == CO_HEYCMD_MAX_ARGS) {
				rc = co_error_set(err, -EINVAL, "more than %d words",
						  CO_HEYCMD_MAX_ARGS);
				goto out;
			}
			argv[argc++] = co_strndup(co_buf_cstr(&word), word.len);
			co_buf_reset(&word);
			in_word = 0;
			continue;
		}
		in_word = 1;
		if (ch == '\'') {
			q = SINGLE;
		} else if (ch == '"') {
			q = DOUBLE;
		} else if (ch == '\\') {
			if (!cmd[i + 1]) {
				rc = co_error_set(err, -EINVAL, "trailing backslash");
				goto out;
			}
			if (cmd[++i] != '\n')
				co_buf_putc(&word, cmd[i]);
			else if (word.len == 0)
				in_word = 0;  /* a line continuation alone is no word */
		} else if (strchr("|&;<>`", ch) || (ch == '$' && cmd[i + 1] == '(')) {
			rc = co_error_set(err, -EINVAL,
					  "shell syntax '%c' at offset %zu is not supported: "
					  "commands run natively without a shell", ch, i);
			goto out;
		} else {
			co_buf_putc(&word, ch);
		}
	}
	if (argc == 0) {
		rc = co_error_set(err, -EINVAL, "empty command");
		goto out;
	}
out:
	co_buf_release(&word);
	if (rc < 0) {
		co_heycmd_argv_free(argv);
		return rc;
	}
	*ret_argv = argv;
	*ret_argc = argc;
	return 0;
}

/* ---------------------------------------------------------------- parser */

void co_heycmd_free(struct co_heycmd *cmd)
{
	if (!cmd)
		return;
	free(cmd->url);
	free(cmd->method);
	free(cmd->host);
	free(cmd->body);
	free(cmd->content_type);
	free(cmd->user_agent);
	for (size_t i = 0; i < cmd->n_headers; i++)
		free(cmd->headers[i]);
	free(cmd->headers);
	free(cmd);
}

static int parse_uint(const char *s, unsigned long long max, unsigned long long *ret)
{
	char *end;
	unsigned long long v;

	if (!*s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return -EINVAL;
	*ret = v;
	return 0;
}

static int parse_double(const char *s, double *ret)
{
	char *end;
	double v;

	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || isnan(v) || isinf(v) || v < 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

static void replace(char **slot, const char *v)
{
	free(*slot);
	*slot = co_strdup(v);
}

/* Flags that take a value: hey's subset, then the CLI's extras. */
static const char *const value_flags[] = {
	"z", "n", "c", "q", "H", "host", "m", "d", "t", "T", "A",
};
static const char *const cli_value_flags[] = { "rate", "warmup", "threads", "o" };

static int in_list(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(name, list[i]) == 0)
			return 1;
	return 0;
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

int co_heycmd_parse_argv(struct co_heycmd **ret_cmd, int argc, char *const *argv,
			 unsigned flags, struct co_error *err)
{
	struct co_heycmd *c = co_calloc(1, sizeof(*c));
	unsigned long long n = 200, conc = 50, timeout_s = 20, threads = 0, u;
	int64_t dur_ms = 0, warmup_ms = 0;
	double q = 0, rate = 0;
	int have_rate = 0, flags_done = 0, rc = 0;
	const char *prog = argc > 0 ? argv[0] : "hey";

	c->headers = co_calloc((size_t)argc + 1, sizeof(*c->headers));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *name, *val = NULL, *eq;
		char namebuf[64];

		if (flags_done || a[0] != '-' || a[1] == 0) {
			if (c->url) {
				rc = co_error_set(err, -EINVAL,
						  "unexpected argument '%s' (the url is '%s')",
						  a, c->url);
				goto out;
			}
			c->url = co_strdup(a);
			continue;
		}
		if (strcmp(a, "--") == 0) {
			flags_done = 1;
			continue;
		}
		name = a + 1 + (a[1] == '-');
		eq = strchr(name, '=');
		if ((eq ? (size_t)(eq - name) : strlen(name)) >= sizeof(namebuf)) {
			rc = co_error_set(err, -EINVAL, "flag '%s' is not supported", a);
			goto out;
		}
		snprintf(namebuf, sizeof(namebuf), "%.*s",
			 (int)(eq ? (size_t)(eq - name) : strlen(name)), name);
		if ((flags & CO_HEYCMD_CLI) && (strcmp(namebuf, "h") == 0 ||
						strcmp(namebuf, "help") == 0)) {
			rc = co_error_set(err, -EINVAL, "help requested");
			goto out;
		}
		if (!in_list(namebuf, value_flags, ARRAY_LEN(value_flags)) &&
		    !((flags & CO_HEYCMD_CLI) &&
		      in_list(namebuf, cli_value_flags, ARRAY_LEN(cli_value_flags)))) {
			rc = co_error_set(err, -EINVAL,
					  "%s flag '-%s' is not supported natively "
					  "(supported: -z -n -c -q -H -host -m -d -t -T -A%s)",
					  prog, namebuf, (flags & CO_HEYCMD_CLI) ?
					  " --rate --warmup --threads -o" : "");
			goto out;
		}
		if (eq) {
			val = eq + 1;
		} else if (i + 1 < argc) {
			val = argv[++i];
		} else {
			rc = co_error_set(err, -EINVAL, "flag '-%s' needs a value", namebuf);
			goto out;
		}

		if (strcmp(namebuf, "z") == 0) {
			if (co_time_parse_duration(val, &dur_ms) < 0 || dur_ms <= 0)
				goto bad_value;
		} else if (strcmp(namebuf, "n") == 0) {
			if (parse_uint(val, 1ull << 40, &n) < 0 || n == 0)
				goto bad_value;
		} else if (strcmp(namebuf, "c") == 0) {
			if (parse_uint(val, 100000, &conc) < 0 || conc == 0)
				goto bad_value;
		} else if (strcmp(namebuf, "q") == 0) {
			if (parse_double(val, &q) < 0)
				goto bad_value;
		} else if (strcmp(namebuf, "H") == 0) {
			const char *colon = strchr(val, ':');

			if (!colon || colon == val)
				goto bad_value;
			c->headers[c->n_headers++] = co_strdup(val);
		} else if (strcmp(namebuf, "host") == 0) {
			replace(&c->host, val);
		} else if (strcmp(namebuf, "m") == 0) {
			replace(&c->method, val);
			for (char *p = c->method; *p; p++)
				*p = (char)toupper((unsigned char)*p);
		} else if (strcmp(namebuf, "d") == 0) {
			replace(&c->body, val);
		} else if (strcmp(namebuf, "t") == 0) {
			if (parse_uint(val, 86400, &timeout_s) < 0)
				goto bad_value;
		} else if (strcmp(namebuf, "T") == 0) {
			replace(&c->content_type, val);
		} else if (strcmp(namebuf, "A") == 0) {
			replace(&c->user_agent, val);
		} else if (strcmp(namebuf, "rate") == 0) {
			if (parse_double(val, &rate) < 0 || rate <= 0)
				goto bad_value;
			have_rate = 1;
		} else if (strcmp(namebuf, "warmup") == 0) {
			if (co_time_parse_duration(val, &warmup_ms) < 0 || warmup_ms < 0)
				goto bad_value;
		} else if (strcmp(namebuf, "threads") == 0) {
			if (parse_uint(val, 1024, &u) < 0 || u == 0)
				goto bad_value;
			threads = u;
		} else if (strcmp(namebuf, "o") == 0) {
			if (strcmp(val, "json") == 0)
				c->output_json = 1;
			else if (strcmp(val, "text") == 0)
				c->output_json = 0;
			else
				goto bad_value;
		}
		continue;
bad_value:
		rc = co_error_set(err, -EINVAL, "invalid value '%s' for flag '-%s'", val,
				  namebuf);
		goto out;
	}
	if (!c->url) {
		rc = co_error_set(err, -EINVAL, "no url given");
		goto out;
	}
	if (!dur_ms && n < conc) {
		rc = co_error_set(err, -EINVAL, "-n cannot be less than -c");
		goto out;
	}
	if (have_rate && q > 0) {
		rc = co_error_set(err, -EINVAL, "give either -q or --rate, not both");
		goto out;
	}

	c->opts.url = c->url;
	c->opts.method = c->method;
	c->opts.headers = (const char *const *)c->headers;
	c->opts.n_headers = c->n_headers;
	c->opts.host = c->host;
	c->opts.body = c->body;
	c->opts.body_len = c->body ? strlen(c->body) : 0;
	/* hey always sends a content type, text/html unless -T says otherwise */
	c->opts.content_type = c->content_type ? c->content_type :
		(c->body ? "text/html" : NULL);
	c->opts.user_agent = c->user_agent;
	c->opts.connections = (unsigned)conc;
	c->opts.threads = (unsigned)threads;
	c->opts.duration_ms = (uint64_t)dur_ms;
	c->opts.requests = dur_ms ? 0 : n;
	c->opts.rate = have_rate ? rate : q * (double)conc;
	/* hey's -t 0 means no timeout; a day stands in for "never" */
	c->opts.timeout_ms = timeout_s ? timeout_s * 1000 : 86400ull * 1000;
	c->opts.warmup_ms = (uint64_t)warmup_ms;
out:
	if (rc < 0) {
		co_heycmd_free(c);
		return rc;
	}
	*ret_cmd = c;
	return 0;
}

int co_heycmd_parse(struct co_heycmd **ret_cmd, const char *cmd, struct co_error *err)
{
	char **argv;
	int argc, rc;
	const char *base;

	rc = co_heycmd_split(cmd, &argv, &argc, err);
	if (rc < 0)
		return rc;
	base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	if (strcmp(base, "hey") != 0) {
		rc = co_error_set(err, -EINVAL,
				  "program '%s' is not supported: only hey commands run "
				  "natively", argv[0]);
		co_heycmd_argv_free(argv);
		return rc;
	}
	rc = co_heycmd_parse_argv(ret_cmd, argc, argv, 0, err);
	co_heycmd_argv_free(argv);
	return rc;
}
