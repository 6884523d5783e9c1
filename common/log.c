/*
 * stderr logger: timestamp and level, escaping of every byte a peer could
 * have chosen, one throttle for the lines peers can cause, and writes that
 * never wait for a full pipe. No allocation; single-threaded like the daemons.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wanmux/err.h"
#include "wanmux/log.h"

/* How the output fd is written without blocking. */
enum log_output {
	LOG_OUTPUT_UNSET,
	LOG_OUTPUT_WRITE, /* non-blocking fd of our own, or a tty/file */
	LOG_OUTPUT_POLL,  /* a pipe we could not reopen: write only when poll says there is room */
	LOG_OUTPUT_SEND,  /* a socket (the journal): send() with MSG_DONTWAIT */
};

/* A message longer than this is cut; escaping may make it up to 4 times longer. */
#define LOG_MESSAGE_MAX 1024

static const char *log_prog = "wanmux";
static enum log_level log_level_max = LOG_LEVEL_INFO;
static enum log_output log_output = LOG_OUTPUT_UNSET;
static int log_fd = 2;
static int log_own_fd = -1; /* the reopened pipe, closed when the output changes */
static bool log_journal;
static uint64_t log_dropped;	    /* lines lost since the last line that got out */
static uint64_t log_dropped_all;    /* for log_dropped_total */
static uint64_t log_suppressed_all; /* for log_suppressed_total */
/* Throttles holding lines back, for log_throttle_flush. */
static struct log_throttle *log_throttles;
/* The tail of a line the fd took only part of; it goes first so lines stay whole. */
static char log_pending[LOG_LINE_MAX];
static size_t log_pending_len;

/* Whether JOURNAL_STREAM ("DEV:INODE") names st, as systemd documents it. */
static bool is_journal(const struct stat *st)
{
	const char *v = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	char tail;

	if (v == NULL || sscanf(v, "%llu:%llu%c", &dev, &ino, &tail) != 2)
		return false;
	return (unsigned long long)st->st_dev == dev && (unsigned long long)st->st_ino == ino;
}

int log_set_output(int fd)
{
	struct stat st;
	char path[64];

	if (log_own_fd >= 0) {
		close(log_own_fd);
		log_own_fd = -1;
	}
	log_pending_len = 0;
	log_fd = fd;
	log_output = LOG_OUTPUT_WRITE;
	log_journal = false;
	if (fstat(fd, &st) < 0)
		return WM_ERR_IO;
	log_journal = is_journal(&st);
	if (S_ISSOCK(st.st_mode)) {
		log_output = LOG_OUTPUT_SEND;
	} else if (S_ISFIFO(st.st_mode)) {
		/*
		 * O_NONBLOCK on fd itself would change the open file description we
		 * share with the parent (a shell, systemd). Opening the pipe again gives
		 * a description of our own.
		 */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		log_own_fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (log_own_fd >= 0)
			log_fd = log_own_fd;
		else
			log_output = LOG_OUTPUT_POLL;
	}
	return 0;
}

void log_init(const char *prog, enum log_level level)
{
	log_prog = prog;
	log_level_max = level;
	if (log_output == LOG_OUTPUT_UNSET)
		(void)log_set_output(2);
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

uint64_t log_suppressed_total(void)
{
	return log_suppressed_all;
}

uint64_t log_dropped_total(void)
{
	return log_dropped_all;
}

size_t log_escape(const char *s, size_t n, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[4];
		size_t len;

		if (c == '\\') {
			esc[0] = '\\';
			esc[1] = '\\';
			len = 2;
		} else if (c < 0x20 || c >= 0x7f) {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[c >> 4];
			esc[3] = hex[c & 15];
			len = 4;
		} else {
			esc[0] = (char)c;
			len = 1;
		}
		if (o + len >= cap)
			break;
		memcpy(out + o, esc, len);
		o += len;
	}
	out[o] = '\0';
	return o;
}

/* One attempt to hand len bytes to the output; bytes taken, or -1. */
static ssize_t write_some(const char *p, size_t len)
{
	if (log_output == LOG_OUTPUT_SEND)
		return send(log_fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (log_output == LOG_OUTPUT_POLL) {
		/* A pipe with a free page takes a write of up to PIPE_BUF bytes whole. */
		struct pollfd pfd = {.fd = log_fd, .events = POLLOUT};
		if (poll(&pfd, 1, 0) != 1 || (pfd.revents & POLLOUT) == 0) {
			errno = EAGAIN;
			return -1;
		}
	}
	return write(log_fd, p, len);
}

/* Writes what is left of a partly written line; true when nothing is left. */
static bool flush_pending(void)
{
	while (log_pending_len > 0) {
		ssize_t n = write_some(log_pending, log_pending_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		memmove(log_pending, log_pending + n, log_pending_len - (size_t)n);
		log_pending_len -= (size_t)n;
	}
	return true;
}

/* Hands a whole line to the output or drops it; true when it got out. */
static bool emit(const char *line, size_t len)
{
	ssize_t n;

	if (!flush_pending())
		return false;
	do {
		n = write_some(line, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return false;
	if ((size_t)n < len) {
		/* A socket took part of it: the rest goes before any other line. */
		memcpy(log_pending, line + n, len - (size_t)n);
		log_pending_len = len - (size_t)n;
	}
	return true;
}

/* Formats, escapes and writes one line; suppressed is the throttle's count. */
static void write_line(enum log_level level, uint64_t suppressed, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void write_line(enum log_level level, uint64_t suppressed, const char *fmt, va_list ap)
{
	static const char *tags[] = {"error", "warn", "info", "debug"};
	static const char *priorities[] = {"<3>", "<4>", "<6>", "<7>"};
	char message[LOG_MESSAGE_MAX];
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t len, tail_room = 160; /* the notes on suppressed and lost lines, the newline */
	int n;

	if (log_output == LOG_OUTPUT_UNSET)
		(void)log_set_output(2);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line), "%s%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
		     log_journal ? priorities[level] : "", tm.tm_year + 1900, tm.tm_mon + 1,
		     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_prog,
		     tags[level]);
	if (n < 0 || (size_t)n >= sizeof(line) - tail_room)
		n = 0;
	len = (size_t)n;
	n = vsnprintf(message, sizeof(message), fmt, ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(message))
		n = sizeof(message) - 1;
	len += log_escape(message, (size_t)n, line + len, sizeof(line) - len - tail_room);
	if (suppressed > 0)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					" [%" PRIu64 " similar lines suppressed]", suppressed);
	if (log_dropped > 0)
		len += (size_t)snprintf(line + len, sizeof(line) - len,
					" [%" PRIu64 " earlier lines lost: log output full]",
					log_dropped);
	line[len++] = '\n';
	if (emit(line, len)) {
		log_dropped = 0;
	} else {
		log_dropped++;
		log_dropped_all++;
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (level > log_level_max)
		return;
	va_start(ap, fmt);
	write_line(level, 0, fmt, ap);
	va_end(ap);
}

bool log_throttle_pass(struct log_throttle *t, uint64_t now_ms, uint64_t *suppressed)
{
	if (t->last_ms != 0 && now_ms - t->last_ms < 1000) {
		t->suppressed++;
		return false;
	}
	*suppressed = t->suppressed;
	t->suppressed = 0;
	t->last_ms = now_ms;
	return true;
}

void log_throttled(struct log_throttle *t, enum log_level level, const char *fmt, ...)
{
	struct timespec ts;
	uint64_t suppressed;
	va_list ap;

	if (level > log_level_max)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!log_throttle_pass(t, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1,
			       &suppressed)) {
		log_suppressed_all++;
		t->fmt = fmt;
		t->level = level;
		if (!t->listed) {
			t->listed = true;
			t->next = log_throttles;
			log_throttles = t;
		}
		return;
	}
	va_start(ap, fmt);
	write_line(level, suppressed, fmt, ap);
	va_end(ap);
}

void log_throttle_release(struct log_throttle *t)
{
	if (!t->listed)
		return;
	for (struct log_throttle **pp = &log_throttles; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	if (t->suppressed > 0)
		log_msg(t->level, "%" PRIu64 " more lines like \"%s\" suppressed", t->suppressed,
			t->fmt);
	t->suppressed = 0;
	t->listed = false;
	t->next = NULL;
}

void log_throttle_flush(void)
{
	struct log_throttle *t = log_throttles;

	log_throttles = NULL;
	while (t != NULL) {
		struct log_throttle *next = t->next;

		if (t->suppressed > 0)
			log_msg(t->level, "%" PRIu64 " more lines like \"%s\" suppressed",
				t->suppressed, t->fmt);
		t->suppressed = 0;
		t->listed = false;
		t->next = NULL;
		t = next;
	}
}
