/*
 * Time helpers. Durations follow Go's time.ParseDuration grammar because that is what
 * Kubernetes, Flux and Flagger users write in their manifests.
 */
#include "base/time.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t co_time_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t co_time_mono_ms(void)
{
	return co_time_mono_ns() / 1000000ull;
}

int64_t co_time_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *co_time_rfc3339(int64_t wall_ms, char *buf, size_t n)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

int co_time_parse_rfc3339(const char *s, int64_t *ret_wall_ms)
{
	struct tm tm = { 0 };
	const char *p;
	int64_t frac_ms = 0;
	long off = 0;
	time_t t;

	p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!p)
		return -EINVAL;
	if (*p == '.') {
		int digits = 0;

		p++;
		while (*p >= '0' && *p <= '9') {
			if (digits < 3)
				frac_ms = frac_ms * 10 + (*p - '0');
			digits++;
			p++;
		}
		if (digits == 0)
			return -EINVAL;
		for (; digits < 3; digits++)
			frac_ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int hh, mm;

		if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
			return -EINVAL;
		off = (hh * 3600L + mm * 60L) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return -EINVAL;
	}
	if (*p)
		return -EINVAL;
	t = timegm(&tm);
	*ret_wall_ms = ((int64_t)t - off) * 1000 + frac_ms;
	return 0;
}

static int unit_ms(const char *u, size_t len, double *ret)
{
	static const struct {
		const char *name;
		double ms;
	} units[] = {
		{ "ns", 1e-6 }, { "us", 1e-3 }, { "\xc2\xb5s", 1e-3 }, { "\xce\xbcs", 1e-3 },
		{ "ms", 1.0 },  { "s", 1e3 },   { "m", 60e3 },          { "h", 3600e3 },
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strlen(units[i].name) == len && memcmp(units[i].name, u, len) == 0) {
			*ret = units[i].ms;
			return 0;
		}
	}
	return -EINVAL;
}

int co_time_parse_duration(const char *s, int64_t *ret_ms)
{
	double total = 0;
	int neg = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	if (*p == '-' || *p == '+')
		neg = *p++ == '-';
	if (strcmp(p, "0") == 0) {
		*ret_ms = 0;
		return 0;
	}
	if (!*p)
		return -EINVAL;
	while (*p) {
		char *end;
		double v, mul;
		const char *u;

		if (!((*p >= '0' && *p <= '9') || *p == '.'))
			return -EINVAL;
		v = strtod(p, &end);
		if (end == p)
			return -EINVAL;
		u = end;
		while (*end && !(*end >= '0' && *end <= '9') && *end != '.')
			end++;
		if (end == u || unit_ms(u, (size_t)(end - u), &mul) < 0)
			return -EINVAL;
		total += v * mul;
		p = end;
	}
	if (total > 9.2e15)
		return -EINVAL;
	*ret_ms = (int64_t)llround(neg ? -total : total);
	return 0;
}

const char *co_time_format_duration(int64_t ms, char *buf, size_t n)
{
	int64_t h, m;
	double s;
	size_t off = 0;

	if (ms == 0) {
		snprintf(buf, n, "0s");
		return buf;
	}
	if (ms < 0) {
		off += (size_t)snprintf(buf, n, "-");
		ms = -ms;
	}
	if (ms < 1000) {
		snprintf(buf + off, n - off, "%lldms", (long long)ms);
		return buf;
	}
	h = ms / 3600000;
	m = (ms / 60000) % 60;
	s = (double)(ms % 60000) / 1000.0;
	if (h && off < n)
		off += (size_t)snprintf(buf + off, n - off, "%lldh", (long long)h);
	if ((h || m) && off < n)
		off += (size_t)snprintf(buf + off, n - off, "%lldm", (long long)m);
	if (off < n)
		snprintf(buf + off, n - off, "%gs", s);
	return buf;
}

static double time_scale = -1;

double co_time_scale(void)
{
	if (time_scale <= 0) {
		const char *env = getenv("CUTOVER_TIME_SCALE");
		double v = env ? strtod(env, NULL) : 1.0;

		time_scale = v > 0 ? v : 1.0;
	}
	return time_scale;
}

void co_time_set_scale(double scale)
{
	if (scale > 0)
		time_scale = scale;
}

uint64_t co_time_scaled(int64_t ms)
{
	double v;

	if (ms <= 0)
		return 0;
	v = (double)ms * co_time_scale();
	return v < 1 ? 1 : (uint64_t)llround(v);
}
