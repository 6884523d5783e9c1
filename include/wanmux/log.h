/*
 * Logging to stderr: one line per event, "TIME PROG LEVEL message". Log once,
 * where the cause is known, with the peer and stream in the message. Never log
 * key material.
 */
#ifndef WANMUX_LOG_H
#define WANMUX_LOG_H

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN = 1,
	LOG_LEVEL_INFO = 2,
	LOG_LEVEL_DEBUG = 3,
};

/* Sets the program name shown in each line and the most verbose level kept. */
void log_init(const char *prog, enum log_level level);

/* Current level; lets callers skip building expensive debug text. */
enum log_level log_get_level(void);

/* Parses "error", "warn", "info" or "debug". Returns 0 or WM_ERR_PARSE. */
int log_level_parse(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_get_level() >= LOG_LEVEL_DEBUG)                                            \
			log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                     \
	} while (0)

#endif
