/* stderr logger with a timestamp and level; no allocation on the hot path. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wanmux/err.h"
#include "wanmux/log.h"

static const char *log_prog = "wanmux";
static enum log_level log_level_max = LOG_LEVEL_INFO;

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level_max = level;
}

enum log_level log_get_level(void)
{
	return log_level_max;
}

int log_level_parse(const char *s, enum log_level *out)
{
	static const char *names[] = {"error", "warn", "info", "debug"};
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return WM_OK;
		}
	}
	return WM_ERR_PARSE;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *tags[] = {"error", "warn", "info", "debug"};
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level > log_level_max)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
		     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", tm.tm_year + 1900,
		     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, log_prog, tags[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per line keeps lines whole when both daemons share a tty. */
	size_t len = strlen(line);
	if (len < sizeof(line) - 1) {
		line[len] = '\n';
		line[len + 1] = '\0';
	}
	fputs(line, stderr);
}
