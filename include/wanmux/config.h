/*
 * Options from the command line and from a config file, with one table of
 * long option names for both. A config file has one "name value" per line
 * (the long option name without dashes), '#' starts a comment, blank lines are
 * ignored. The command line overrides the file: a single-valued option given
 * on both takes the command line's value, and a repeatable option given on the
 * command line replaces the file's list.
 */
#ifndef WANMUX_CONFIG_H
#define WANMUX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_option {
	const char *name; /* long name, e.g. "listen" */
	char short_name;  /* e.g. 'c', or 0 */
	bool has_arg;	  /* false: a flag ("--help"); its value is "1" */
	bool repeatable;  /* may be given many times (--allow) */
	int id;		  /* caller's identifier, >= 0 */
};

struct config;

/*
 * Parses argv against opts (ended by an entry with name NULL). "-c FILE" /
 * "--config FILE" names a config file if the option table has an entry with
 * name "config". Accepts "--name value", "--name=value", "-x value" and "--".
 * Other arguments are kept as positionals. On error returns WM_ERR_PARSE with
 * a one-line reason in err (unknown option, missing value, unreadable file,
 * bad line with its file:line, single option given twice in the file).
 *
 * Details: argv[0] is the program name and skipped. Short options also take
 * "-xVALUE", and flags group ("-vq"). A single-valued option given twice on
 * the command line keeps the last value. "-" alone is a positional. In a file,
 * '#' starts a comment at the start of a line or after whitespace, a flag
 * takes yes/true/on/1 (stored as "1") or no/false/off/0 (left unset), a bare
 * flag name means yes, and "config" is an error. On success *out is owned by
 * the caller (config_free); on error *out is NULL.
 */
int config_parse(const struct config_option *opts, int argc, char **argv, struct config **out,
		 char *err, size_t errlen);

/*
 * Parses the text of a config file (len bytes of buf, need not be
 * NUL-terminated) with the same rules as a file named by --config; source
 * names it in error messages ("FILE:LINE: ..."). For tests and fuzzing: the
 * result has no positionals. 0, WM_ERR_PARSE or WM_ERR_NOMEM.
 */
int config_parse_buffer(const struct config_option *opts, const char *buf, size_t len,
			const char *source, struct config **out, char *err, size_t errlen);

/* config_free(NULL) is a no-op. */
void config_free(struct config *cfg);

/*
 * The value of a single-valued option, or NULL when not given. Strings
 * returned by config_* stay valid until config_free(cfg). For a repeatable
 * option this is its last value.
 */
const char *config_get(const struct config *cfg, int id);

/* How many values a repeatable option has, and the i-th. */
size_t config_count(const struct config *cfg, int id);
const char *config_get_nth(const struct config *cfg, int id, size_t i);

/*
 * Where the i-th value of option id came from, for error messages:
 * "FILE:LINE" in buf when a config file line gave it, NULL when the command
 * line did (or the option is unset). i past the end means the last value.
 */
const char *config_origin(const struct config *cfg, int id, size_t i, char *buf, size_t len);

/*
 * Formats a one-line error about the i-th value of option id (SIZE_MAX: the
 * last) into err, starting with "FILE:LINE: " when a config file line gave
 * it. Returns WM_ERR_PARSE.
 */
int config_value_error(const struct config *cfg, int id, size_t i, char *err, size_t errlen,
		       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

size_t config_positional_count(const struct config *cfg);
const char *config_positional(const struct config *cfg, size_t i);

/*
 * Parses an unsigned decimal in [min, max] with an optional K/M/G suffix
 * (powers of 1024). 0 or WM_ERR_PARSE.
 */
int config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Parses a duration: "500ms", "30s", "2m", or plain seconds. Milliseconds out. */
int config_parse_duration_ms(const char *s, uint64_t *out);

#endif
