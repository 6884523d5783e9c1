/*
 * Logging to stderr: one line per event, "TIME PROG LEVEL: message". Log once,
 * where the cause is known, with the peer and stream in the message. Never log
 * key material. Every line a peer can cause goes through a throttle (at most
 * one line a second per kind); the logger escapes what it is given and never
 * blocks the event loop on a full pipe.
 */
#ifndef WANMUX_LOG_H
#define WANMUX_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

/* Longest line written, newline included; below PIPE_BUF so a pipe write is whole. */
#define LOG_LINE_MAX 3072

/*
 * Sets the program name shown in each line and the most verbose level kept.
 * The first call also sets the output up on stderr (as log_set_output(2)).
 * prog must outlive the logger (a string literal).
 */
void log_init(const char *prog, enum log_level level);

/*
 * Sends lines to fd (stderr unless a test says otherwise). A pipe is reopened
 * through /proc/self/fd so that this process alone writes it non-blocking (the
 * parent's open file description keeps its flags); a socket is written with
 * MSG_DONTWAIT; a tty or file is written as it is. When JOURNAL_STREAM names
 * fd's device and inode (systemd's journal), each line starts with its syslog
 * priority: <3> error, <4> warn, <6> info, <7> debug. A line that cannot be
 * written at once is dropped and counted; the next line that gets out says
 * how many were lost. fd stays the caller's. Returns 0 or WM_ERR_IO.
 */
int log_set_output(int fd);

/* Current level; lets callers skip building expensive debug text. */
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 or WM_ERR_PARSE. */
int log_level_parse(const char *s, enum log_level *out);

/*
 * Writes one line at level (if kept). After formatting, every byte of the
 * message below 0x20, 0x7f and above is written as \xNN and a backslash as
 * \\, so a name from the wire cannot forge a line or reach a terminal as an
 * escape sequence.
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Escapes n bytes of s as log_msg does into out (cap bytes, NUL-terminated,
 * cut at a whole escape when too long). Returns the length written.
 */
size_t log_escape(const char *s, size_t n, char *out, size_t cap);

/* Lines held back or lost so far (for the summary at exit and for tests). */
uint64_t log_suppressed_total(void);
uint64_t log_dropped_total(void);

/*
 * One kind of line a peer can cause: when the last one went out, how many
 * since. Zero-initialized (a static) is ready; the logger links a throttle
 * that holds lines back into its list for log_throttle_flush.
 */
struct log_throttle {
	uint64_t last_ms;    /* CLOCK_MONOTONIC ms of the last line out; 0 = none yet */
	uint64_t suppressed; /* lines held back since then */
	const char *fmt;     /* of the last line held back, for log_throttle_flush */
	enum log_level level;
	bool listed;
	struct log_throttle *next;
};

/*
 * The throttle's decision at now_ms (> 0): true when a line of this kind may
 * go out (none in the last second), with *suppressed set to the lines held
 * back since the last one (the count restarts); false counts one more.
 */
bool log_throttle_pass(struct log_throttle *t, uint64_t now_ms, uint64_t *suppressed);

/*
 * log_msg through t: at most one line a second of this kind; the line that
 * goes out ends with "[N similar lines suppressed]" when some were held back.
 * Held-back lines cost no formatting.
 */
void log_throttled(struct log_throttle *t, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Reports what every throttle holds back ("N more lines like \"FMT\"
 * suppressed"), so that the end of a burst is not lost; for the summary at
 * exit.
 */
void log_throttle_flush(void);

/*
 * t is about to be freed (it lives in an object that goes away before the
 * exit): reports what it holds back, as log_throttle_flush would, and takes
 * it out of the flush list.
 */
void log_throttle_release(struct log_throttle *t);

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_LEVEL_DEBUG)                                            \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

/*
 * A line a peer can cause (a refusal, a protocol error, a bad name): each call
 * site is its own kind with its own throttle. Debug lines need none: debug
 * level is for a bench, not for the internet.
 */
#define log_peer(level, ...)                                                                       \
	do {                                                                                       \
		static struct log_throttle log_peer_throttle_;                                     \
		log_throttled(&log_peer_throttle_, level, __VA_ARGS__);                            \
	} while (0)
#define log_peer_error(...) log_peer(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_peer_warn(...) log_peer(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_peer_info(...) log_peer(LOG_LEVEL_INFO, __VA_ARGS__)

#endif
