/*
 * Time helpers: a monotonic clock for deadlines, wall-clock RFC 3339 stamps for
 * Kubernetes objects, Go-style duration strings ("1m30s", "500ms") as Flux and Flagger
 * write them, and the process time scale.
 *
 * The time scale (CUTOVER_TIME_SCALE, or set explicitly) multiplies every interval and
 * deadline the project derives from configuration, so rehearsals and tests run a
 * 1-minute Flux interval in 0.6 s at 0.01.
 */
#ifndef CO_BASE_TIME_H
#define CO_BASE_TIME_H

#include <stdint.h>
#include <stddef.h>

/* Monotonic milliseconds and nanoseconds (arbitrary origin). */
uint64_t co_time_mono_ms(void);
uint64_t co_time_mono_ns(void);

/* Wall clock in milliseconds since the epoch. */
int64_t co_time_wall_ms(void);

/* RFC 3339 UTC with seconds, "2026-11-21T11:15:49Z"; buf at least 21 bytes. */
const char *co_time_rfc3339(int64_t wall_ms, char *buf, size_t n);
/* Parse RFC 3339 (Z or offset, optional fraction); returns 0 or -EINVAL. */
int co_time_parse_rfc3339(const char *s, int64_t *ret_wall_ms);

/*
 * Parse a Go duration ("300ms", "1.5h", "2h45m", "10s", "0") into milliseconds.
 * Units: ns, us, µs, ms, s, m, h. A bare number is rejected except "0".
 * Returns 0 or -EINVAL (ret untouched).
 */
int co_time_parse_duration(const char *s, int64_t *ret_ms);
/* Format milliseconds as a Go-style duration ("1m30s", "250ms"). */
const char *co_time_format_duration(int64_t ms, char *buf, size_t n);

/* Process time scale; defaults to CUTOVER_TIME_SCALE or 1.0. Must be > 0. */
double co_time_scale(void);
void co_time_set_scale(double scale);
/* ms * scale, at least 1 when ms > 0. */
uint64_t co_time_scaled(int64_t ms);

#endif
