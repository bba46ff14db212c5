/*
 * The process-wide logger. Output is one write per line (built in a buffer first) so
 * lines from callbacks never interleave. JSON strings are escaped by jansson.
 */
#include "base/log.h"
#include "base/buf.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
	enum co_log_level level;
	enum co_log_format format;
	FILE *out;
	int tty;
	char *status;  /* TTY status line currently drawn, or NULL */
} logger = { CO_LOG_INFO, CO_LOG_AUTO, NULL, -1, NULL };

static const char *const level_names[] = {
	[CO_LOG_DEBUG] = "debug",
	[CO_LOG_INFO] = "info",
	[CO_LOG_WARN] = "warn",
	[CO_LOG_ERROR] = "error",
	[CO_LOG_OFF] = "off",
};

void co_log_setup(enum co_log_level level, enum co_log_format format, FILE *out)
{
	logger.level = level;
	logger.format = format;
	logger.out = out;
	logger.tty = -1;
}

int co_log_parse_level(const char *s, enum co_log_level *ret_level)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*ret_level = (enum co_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*ret_level = CO_LOG_WARN;
		return 0;
	}
	return -EINVAL;
}

enum co_log_level co_log_level(void)
{
	return logger.level;
}

int co_log_enabled(enum co_log_level level)
{
	return level >= logger.level && level < CO_LOG_OFF;
}

static FILE *out_stream(void)
{
	return logger.out ? logger.out : stderr;
}

static int use_json(void)
{
	if (logger.format == CO_LOG_JSON)
		return 1;
	if (logger.format == CO_LOG_HUMAN)
		return 0;
	if (logger.tty < 0)
		logger.tty = isatty(fileno(out_stream()));
	return !logger.tty;
}

void co_log_vmsg(enum co_log_level level, const char *module, const char *fmt,
		 va_list ap)
{
	struct co_buf msg = CO_BUF_INIT;
	struct co_buf line = CO_BUF_INIT;
	struct timeval tv;
	struct tm tm;
	char ts[40];

	if (!co_log_enabled(level))
		return;
	co_buf_vprintf(&msg, fmt, ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		 tm.tm_sec, (long)(tv.tv_usec / 1000));

	if (use_json()) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level",
				      level_names[level], "module", module ? module : "",
				      "msg", co_buf_cstr(&msg));
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

		if (s) {
			co_buf_puts(&line, s);
			free(s);
		}
		json_decref(o);
	} else {
		/* Human: short local-ish time, padded level, module. */
		co_buf_printf(&line, "%.8s %-5s %s%s%s", ts + 11, level_names[level],
			      module ? module : "", module ? ": " : "",
			      co_buf_cstr(&msg));
	}
	co_buf_putc(&line, '\n');
	if (logger.status) {
		/* Clear the status line, print the log line, draw the status again. */
		fputs("\r\033[K", out_stream());
		fwrite(line.data, 1, line.len, out_stream());
		fputs(logger.status, out_stream());
	} else {
		fwrite(line.data, 1, line.len, out_stream());
	}
	fflush(out_stream());
	co_buf_release(&msg);
	co_buf_release(&line);
}

void co_log_msg(enum co_log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	co_log_vmsg(level, module, fmt, ap);
	va_end(ap);
}

/* Terminal width, or 0 when unknown (not a terminal, or a test's memory stream). */
static size_t term_columns(void)
{
	struct winsize ws;

	if (ioctl(fileno(out_stream()), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 0;
}

void co_log_status(const char *line)
{
	int was = logger.status != NULL;
	size_t cols;

	free(logger.status);
	logger.status = NULL;
	if (use_json()) /* not a terminal: progress goes elsewhere */
		return;
	if (line && *line) {
		logger.status = co_strdup(line);
		/* A status line that wraps cannot be redrawn in place with \r: cut it to
		 * the terminal's width, ending in "..." when something was cut. */
		cols = term_columns();
		if (cols > 4 && strlen(logger.status) > cols - 1) {
			size_t keep = cols - 4;

			/* do not split a UTF-8 sequence */
			while (keep > 0 && (logger.status[keep] & 0xC0) == 0x80)
				keep--;
			memcpy(logger.status + keep, "...", 4);
		}
		line = logger.status;
		fprintf(out_stream(), "\r\033[K%s", line);
	} else if (was) {
		fputs("\r\033[K", out_stream());
	}
	fflush(out_stream());
}

const char *co_log_redact(const char *secret, char *out, size_t n)
{
	size_t len = secret ? strlen(secret) : 0;

	if (len >= 12)
		snprintf(out, n, "%.4s…(%zu chars)", secret, len);
	else
		snprintf(out, n, "<redacted>");
	return out;
}

static const char *const markers[] = {
	"Bearer ", "token: ", "token\":\"", "token\": \"", "password: ",
	"password\":\"", "client-key-data: ", "secret: ", "X-Hub-Signature-256: ",
};

void co_log_scrub(char *text)
{
	for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++) {
		char *p = text;

		while ((p = strstr(p, markers[i])) != NULL) {
			p += strlen(markers[i]);
			while (*p && *p != '"' && *p != '\n' && *p != ' ' && *p != ',')
				*p++ = '*';
		}
	}
}
