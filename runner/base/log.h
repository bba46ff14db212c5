/*
 * Logging: human lines on a TTY, JSON lines otherwise (one object per line with
 * ts, level, module, msg and optional fields), so the same binary is pleasant at a
 * terminal and parseable under a supervisor.
 *
 * Low layers (base, net, clients) log at debug at most; engine, stages and cli decide
 * and log once. Messages are lowercase, no trailing period, user values in single
 * quotes. Secrets never reach a log line: pass them through co_log_redact().
 */
#ifndef CO_BASE_LOG_H
#define CO_BASE_LOG_H

#include <stdarg.h>
#include <stdio.h>

enum co_log_level {
	CO_LOG_DEBUG,
	CO_LOG_INFO,
	CO_LOG_WARN,
	CO_LOG_ERROR,
	CO_LOG_OFF,
};

enum co_log_format {
	CO_LOG_AUTO,   /* human on a TTY, JSON otherwise */
	CO_LOG_HUMAN,
	CO_LOG_JSON,
};

/* Configure the process-wide logger; out NULL means stderr. Not thread-safe against
 * concurrent logging: call at start-up. */
void co_log_setup(enum co_log_level level, enum co_log_format format, FILE *out);
/* Parse "debug|info|warn|error|off"; returns 0 or -EINVAL. */
int co_log_parse_level(const char *s, enum co_log_level *ret_level);
enum co_log_level co_log_level(void);
int co_log_enabled(enum co_log_level level);

void co_log_msg(enum co_log_level level, const char *module, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void co_log_vmsg(enum co_log_level level, const char *module, const char *fmt,
		 va_list ap) __attribute__((format(printf, 3, 0)));

#define co_log_debug(module, ...) co_log_msg(CO_LOG_DEBUG, module, __VA_ARGS__)
#define co_log_info(module, ...) co_log_msg(CO_LOG_INFO, module, __VA_ARGS__)
#define co_log_warn(module, ...) co_log_msg(CO_LOG_WARN, module, __VA_ARGS__)
#define co_log_err(module, ...) co_log_msg(CO_LOG_ERROR, module, __VA_ARGS__)

/*
 * A status line for terminals (the pipeline's progress display): kept as the last
 * line of the terminal; every log line clears it first and draws it again after, so
 * progress and log lines never share a line. line NULL (or "") removes it, leaving
 * the terminal at the start of an empty line. Only shown when the log stream is a
 * TTY in human format; otherwise ignored.
 */
void co_log_status(const char *line);

/*
 * Redaction helper: writes into out (size n) a form of secret safe to log: "<redacted>"
 * for anything, or for strings of 12+ characters the first 4 characters followed by
 * "…(N chars)". Returns out. Use for tokens, keys, HMACs, passwords.
 */
const char *co_log_redact(const char *secret, char *out, size_t n);

/*
 * Scrub a text in place: values following well-known secret markers
 * ("Authorization: Bearer ", "token: ", "\"token\":\"", "password", "client-key-data")
 * are replaced by '*'. Used before logging text that came from elsewhere
 * (subprocess stderr, HTTP bodies).
 */
void co_log_scrub(char *text);

#endif
