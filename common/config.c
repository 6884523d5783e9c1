/*
 * Options from argv and from a "name value" config file, merged so that the
 * command line wins, plus number and duration parsers for option values. It
 * does not know what any option means; the daemons' main.c files do.
 */
#include "wanmux/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wanmux/err.h"
#include "wanmux/keys.h"

#define CONFIG_FILE_MAX (1024 * 1024) /* a config file is small; refuse surprises */
#define CONFIG_ECHO_MAX 64	      /* characters of user text quoted in errors */

struct config_values {
	char **v;
	size_t count;
	size_t cap;
	unsigned int line;   /* config file line that set it first, 0 = none */
	unsigned int *lines; /* config file line of each value, 0 = command line */
};

struct config {
	const struct config_option *opts;
	size_t nopts;
	struct config_values *values; /* one per entry of opts */
	char **positional;
	size_t npositional;
	size_t positional_cap;
	char *file; /* the config file that supplied values, or NULL */
};

/* Copies n bytes of s for an error message: one line, printable, cut short. */
static const char *echo(const char *s, size_t n, char *buf, size_t len)
{
	size_t i;
	size_t o = 0;

	for (i = 0; i < n && s[i] != '\0' && o + 4 < len && i < CONFIG_ECHO_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	if (i < n && s[i] != '\0' && o + 4 <= len) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static struct config *config_alloc(const struct config_option *opts)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	size_t n = 0;

	if (cfg == NULL)
		return NULL;
	while (opts[n].name != NULL)
		n++;
	cfg->opts = opts;
	cfg->nopts = n;
	cfg->values = calloc(n != 0 ? n : 1, sizeof(*cfg->values));
	if (cfg->values == NULL) {
		free(cfg);
		return NULL;
	}
	return cfg;
}

static void values_clear(struct config_values *vals)
{
	for (size_t i = 0; i < vals->count; i++)
		free(vals->v[i]);
	free(vals->v);
	free(vals->lines);
	vals->lines = NULL;
	vals->v = NULL;
	vals->count = 0;
	vals->cap = 0;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nopts; i++)
		values_clear(&cfg->values[i]);
	free(cfg->values);
	for (size_t i = 0; i < cfg->npositional; i++)
		free(cfg->positional[i]);
	free(cfg->positional);
	free(cfg->file);
	free(cfg);
}

/* Appends a copy of the n bytes at value to a string list. */
static int list_append(char ***list, size_t *count, size_t *cap, const char *value, size_t n)
{
	char *copy;

	if (*count == *cap) {
		size_t ncap = *cap != 0 ? *cap * 2 : 4;
		char **grown = realloc(*list, ncap * sizeof(*grown));

		if (grown == NULL)
			return WM_ERR_NOMEM;
		*list = grown;
		*cap = ncap;
	}
	copy = strndup(value, n);
	if (copy == NULL)
		return WM_ERR_NOMEM;
	(*list)[(*count)++] = copy;
	return 0;
}

/*
 * Records a value for option index i: repeatable options collect, others keep
 * the last one given.
 */
static int set_value_at(struct config *cfg, size_t i, const char *value, size_t n,
			unsigned int lineno)
{
	struct config_values *vals = &cfg->values[i];

	if (!cfg->opts[i].repeatable)
		values_clear(vals);
	int rc = list_append(&vals->v, &vals->count, &vals->cap, value, n);
	if (rc < 0)
		return rc;
	/* Grown with v, so an error can name the line of any value. */
	unsigned int *lines = realloc(vals->lines, vals->cap * sizeof(*lines));
	if (lines == NULL) {
		free(vals->v[--vals->count]);
		return WM_ERR_NOMEM;
	}
	vals->lines = lines;
	vals->lines[vals->count - 1] = lineno;
	return 0;
}

static int set_value(struct config *cfg, size_t i, const char *value, size_t n)
{
	return set_value_at(cfg, i, value, n, 0);
}

static long find_long(const struct config *cfg, const char *name, size_t n)
{
	for (size_t i = 0; i < cfg->nopts; i++)
		if (strlen(cfg->opts[i].name) == n && strncmp(cfg->opts[i].name, name, n) == 0)
			return (long)i;
	return -1;
}

static long find_short(const struct config *cfg, char c)
{
	for (size_t i = 0; i < cfg->nopts; i++)
		if (cfg->opts[i].short_name != 0 && cfg->opts[i].short_name == c)
			return (long)i;
	return -1;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Yes / no words of a flag in a file: 1, 0, or -1 for neither. */
static int parse_bool(const char *s, size_t n)
{
	static const char *const yes[] = {"yes", "true", "1", "on"};
	static const char *const no[] = {"no", "false", "0", "off"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strlen(yes[i]) == n && strncasecmp(s, yes[i], n) == 0)
			return 1;
		if (strlen(no[i]) == n && strncasecmp(s, no[i], n) == 0)
			return 0;
	}
	return -1;
}

/* One "name value" line (without its newline) of a config file. */
static int parse_line(struct config *cfg, const char *line, size_t len, const char *source,
		      unsigned int lineno, char *err, size_t errlen)
{
	char tmp[CONFIG_ECHO_MAX + 8];
	const char *end = line + len;
	const char *name;
	const char *value;
	size_t nlen;
	size_t vlen;
	long i;

	while (line < end && is_space(*line))
		line++;
	if (line == end || *line == '#')
		return 0;
	name = line;
	while (line < end && !is_space(*line))
		line++;
	nlen = (size_t)(line - name);
	while (line < end && is_space(*line))
		line++;
	/* '#' starts a comment at the start of the line or after whitespace. */
	value = line;
	for (const char *p = value; p < end; p++) {
		if (*p == '#' && (p == value || is_space(p[-1]))) {
			end = p;
			break;
		}
	}
	while (end > value && is_space(end[-1]))
		end--;
	vlen = (size_t)(end - value);

	if (nlen == 6 && strncmp(name, "config", 6) == 0) {
		wm_set_err(err, errlen, "%s:%u: 'config' cannot be used inside a config file",
			   source, lineno);
		return WM_ERR_PARSE;
	}
	i = find_long(cfg, name, nlen);
	if (i < 0) {
		wm_set_err(err, errlen, "%s:%u: unknown option '%s'", source, lineno,
			   echo(name, nlen, tmp, sizeof(tmp)));
		return WM_ERR_PARSE;
	}
	const struct config_option *opt = &cfg->opts[i];
	struct config_values *vals = &cfg->values[i];

	if (!opt->repeatable && vals->line != 0) {
		wm_set_err(err, errlen, "%s:%u: option '%s' given twice (first on line %u)", source,
			   lineno, opt->name, vals->line);
		return WM_ERR_PARSE;
	}
	if (vals->line == 0)
		vals->line = lineno;
	if (!opt->has_arg) {
		/* A bare flag name means yes. */
		int yes = vlen == 0 ? 1 : parse_bool(value, vlen);

		if (yes < 0) {
			wm_set_err(err, errlen, "%s:%u: option '%s' takes yes or no, not '%s'",
				   source, lineno, opt->name, echo(value, vlen, tmp, sizeof(tmp)));
			return WM_ERR_PARSE;
		}
		return yes != 0 ? set_value_at(cfg, (size_t)i, "1", 1, lineno) : 0;
	}
	if (vlen == 0) {
		wm_set_err(err, errlen, "%s:%u: option '%s' needs a value", source, lineno,
			   opt->name);
		return WM_ERR_PARSE;
	}
	return set_value_at(cfg, (size_t)i, value, vlen, lineno);
}

static int parse_text(struct config *cfg, const char *buf, size_t len, const char *source,
		      char *err, size_t errlen)
{
	size_t pos = 0;
	unsigned int lineno = 0;

	while (pos < len) {
		const char *line = buf + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t n = nl != NULL ? (size_t)(nl - line) : len - pos;
		int rc;

		lineno++;
		if (memchr(line, '\0', n) != NULL) {
			wm_set_err(err, errlen, "%s:%u: NUL byte in line", source, lineno);
			return WM_ERR_PARSE;
		}
		rc = parse_line(cfg, line, n, source, lineno, err, errlen);
		if (rc == WM_ERR_NOMEM)
			wm_set_err(err, errlen, "%s:%u: out of memory", source, lineno);
		if (rc < 0)
			return rc;
		pos += n + 1;
	}
	return 0;
}

int config_parse_buffer(const struct config_option *opts, const char *buf, size_t len,
			const char *source, struct config **out, char *err, size_t errlen)
{
	struct config *cfg;
	int rc;

	*out = NULL;
	cfg = config_alloc(opts);
	if (cfg == NULL) {
		wm_set_err(err, errlen, "out of memory");
		return WM_ERR_NOMEM;
	}
	rc = parse_text(cfg, buf, len, source != NULL ? source : "(config)", err, errlen);
	if (rc < 0) {
		config_free(cfg);
		return rc;
	}
	*out = cfg;
	return 0;
}

/* Reads the whole config file at path into a malloc'd buffer. */
static int read_file(const char *path, char **out, size_t *outlen, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t len = 0;
	int fd;

	/* The config names the keys and the allow rules: the same ownership,
	 * mode and regular-file checks as a key file (not secret). */
	fd = keys_open_file(path, false, NULL, err, errlen);
	if (fd < 0)
		return WM_ERR_PARSE;
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (buf == NULL) {
		errno = ENOMEM;
		goto err1;
	}
	/* Read one byte past the limit to tell "exactly the limit" from "more". */
	while (len <= CONFIG_FILE_MAX) {
		ssize_t n = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto err2;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len > CONFIG_FILE_MAX) {
		free(buf);
		wm_set_err(err, errlen, "%s: larger than %d bytes", path, CONFIG_FILE_MAX);
		return WM_ERR_PARSE;
	}
	*out = buf;
	*outlen = len;
	return 0;

err2:
	free(buf);
err1 : {
	int saved = errno;

	close(fd);
	errno = saved;
}
	wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
	return WM_ERR_PARSE;
}

/* Parses argv[1..argc-1] into cfg. */
static int parse_argv(struct config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	char tmp[CONFIG_ECHO_MAX + 8];
	bool options_done = false;
	int rc = 0;

	for (int ai = 1; ai < argc && rc == 0; ai++) {
		const char *arg = argv[ai];

		if (arg == NULL)
			break;
		if (options_done || arg[0] != '-' || arg[1] == '\0') {
			rc = list_append(&cfg->positional, &cfg->npositional, &cfg->positional_cap,
					 arg, strlen(arg));
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			options_done = true;
			continue;
		}
		if (arg[1] == '-') {
			const char *name = arg + 2;
			const char *eq = strchr(name, '=');
			size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
			long i = find_long(cfg, name, nlen);

			if (i < 0) {
				wm_set_err(err, errlen, "unknown option '--%s'",
					   echo(name, nlen, tmp, sizeof(tmp)));
				return WM_ERR_PARSE;
			}
			if (!cfg->opts[i].has_arg) {
				if (eq != NULL) {
					wm_set_err(err, errlen, "option '--%s' takes no value",
						   cfg->opts[i].name);
					return WM_ERR_PARSE;
				}
				rc = set_value(cfg, (size_t)i, "1", 1);
			} else if (eq != NULL) {
				rc = set_value(cfg, (size_t)i, eq + 1, strlen(eq + 1));
			} else if (ai + 1 < argc && argv[ai + 1] != NULL) {
				ai++;
				rc = set_value(cfg, (size_t)i, argv[ai], strlen(argv[ai]));
			} else {
				wm_set_err(err, errlen, "option '--%s' needs a value",
					   cfg->opts[i].name);
				return WM_ERR_PARSE;
			}
			continue;
		}
		/* One or more short options: "-v", "-vq", "-c FILE", "-cFILE", "-vcFILE". */
		for (const char *p = arg + 1; *p != '\0' && rc == 0; p++) {
			long i = find_short(cfg, *p);

			if (i < 0) {
				wm_set_err(err, errlen, "unknown option '-%s'",
					   echo(p, 1, tmp, sizeof(tmp)));
				return WM_ERR_PARSE;
			}
			if (!cfg->opts[i].has_arg) {
				rc = set_value(cfg, (size_t)i, "1", 1);
				continue;
			}
			if (p[1] != '\0') {
				rc = set_value(cfg, (size_t)i, p + 1, strlen(p + 1));
			} else if (ai + 1 < argc && argv[ai + 1] != NULL) {
				ai++;
				rc = set_value(cfg, (size_t)i, argv[ai], strlen(argv[ai]));
			} else {
				wm_set_err(err, errlen, "option '-%c' needs a value", *p);
				return WM_ERR_PARSE;
			}
			break;
		}
	}
	if (rc < 0)
		wm_set_err(err, errlen, "out of memory");
	return rc;
}

int config_parse(const struct config_option *opts, int argc, char **argv, struct config **out,
		 char *err, size_t errlen)
{
	struct config *cfg;
	struct config *file = NULL;
	long ci;
	int rc;

	*out = NULL;
	cfg = config_alloc(opts);
	if (cfg == NULL) {
		wm_set_err(err, errlen, "out of memory");
		return WM_ERR_NOMEM;
	}
	rc = parse_argv(cfg, argc, argv, err, errlen);
	if (rc < 0)
		goto err0;
	ci = find_long(cfg, "config", 6);
	if (ci >= 0 && cfg->opts[ci].has_arg && cfg->values[ci].count > 0) {
		const struct config_values *cv = &cfg->values[ci];
		const char *path = cv->v[cv->count - 1];
		char *text;
		size_t len;

		rc = read_file(path, &text, &len, err, errlen);
		if (rc < 0)
			goto err0;
		rc = config_parse_buffer(opts, text, len, path, &file, err, errlen);
		free(text);
		if (rc < 0)
			goto err0;
		cfg->file = strdup(path);
		if (cfg->file == NULL) {
			config_free(file);
			wm_set_err(err, errlen, "out of memory");
			rc = WM_ERR_NOMEM;
			goto err0;
		}
		/* The command line wins; a repeatable list is replaced, not extended. */
		for (size_t i = 0; i < cfg->nopts; i++) {
			if (cfg->values[i].count > 0)
				continue;
			values_clear(&cfg->values[i]);
			cfg->values[i] = file->values[i];
			memset(&file->values[i], 0, sizeof(file->values[i]));
		}
		config_free(file);
	}
	*out = cfg;
	return 0;

err0:
	config_free(cfg);
	return rc;
}

static const struct config_values *values_of(const struct config *cfg, int id)
{
	if (cfg == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nopts; i++)
		if (cfg->opts[i].id == id)
			return &cfg->values[i];
	return NULL;
}

const char *config_get(const struct config *cfg, int id)
{
	const struct config_values *vals = values_of(cfg, id);

	if (vals == NULL || vals->count == 0)
		return NULL;
	return vals->v[vals->count - 1];
}

size_t config_count(const struct config *cfg, int id)
{
	const struct config_values *vals = values_of(cfg, id);

	return vals != NULL ? vals->count : 0;
}

const char *config_get_nth(const struct config *cfg, int id, size_t i)
{
	const struct config_values *vals = values_of(cfg, id);

	if (vals == NULL || i >= vals->count)
		return NULL;
	return vals->v[i];
}

const char *config_origin(const struct config *cfg, int id, size_t i, char *buf, size_t len)
{
	const struct config_values *vals = values_of(cfg, id);

	if (vals == NULL || vals->count == 0 || cfg->file == NULL)
		return NULL;
	if (i >= vals->count)
		i = vals->count - 1;
	if (vals->lines == NULL || vals->lines[i] == 0)
		return NULL;
	snprintf(buf, len, "%s:%u", cfg->file, vals->lines[i]);
	return buf;
}

int config_value_error(const struct config *cfg, int id, size_t i, char *err, size_t errlen,
		       const char *fmt, ...)
{
	char where[600];
	const char *origin = id >= 0 ? config_origin(cfg, id, i, where, sizeof(where)) : NULL;
	size_t off = 0;
	va_list ap;

	if (err == NULL || errlen == 0)
		return WM_ERR_PARSE;
	err[0] = '\0';
	if (origin != NULL) {
		snprintf(err, errlen, "%s: ", origin);
		off = strlen(err);
	}
	va_start(ap, fmt);
	vsnprintf(err + off, errlen - off, fmt, ap);
	va_end(ap);
	return WM_ERR_PARSE;
}

size_t config_positional_count(const struct config *cfg)
{
	return cfg != NULL ? cfg->npositional : 0;
}

const char *config_positional(const struct config *cfg, size_t i)
{
	if (cfg == NULL || i >= cfg->npositional)
		return NULL;
	return cfg->positional[i];
}

/* Decimal digits at s into *v; the number of digits, or 0 on none / overflow. */
static size_t parse_digits(const char *s, uint64_t *v)
{
	size_t i;

	*v = 0;
	for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
		unsigned int d = (unsigned int)(s[i] - '0');

		if (*v > (UINT64_MAX - d) / 10)
			return 0;
		*v = *v * 10 + d;
	}
	return i;
}

int config_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	uint64_t v;
	uint64_t mult = 1;
	size_t n;

	if (s == NULL)
		return WM_ERR_PARSE;
	n = parse_digits(s, &v);
	if (n == 0)
		return WM_ERR_PARSE;
	switch (s[n]) {
	case '\0':
		break;
	case 'k':
	case 'K':
		mult = UINT64_C(1) << 10;
		break;
	case 'm':
	case 'M':
		mult = UINT64_C(1) << 20;
		break;
	case 'g':
	case 'G':
		mult = UINT64_C(1) << 30;
		break;
	default:
		return WM_ERR_PARSE;
	}
	if (mult != 1 && s[n + 1] != '\0')
		return WM_ERR_PARSE;
	if (v > UINT64_MAX / mult)
		return WM_ERR_PARSE;
	v *= mult;
	if (v < min || v > max)
		return WM_ERR_PARSE;
	*out = v;
	return 0;
}

int config_parse_duration_ms(const char *s, uint64_t *out)
{
	uint64_t v;
	uint64_t mult;
	const char *unit;
	size_t n;

	if (s == NULL)
		return WM_ERR_PARSE;
	n = parse_digits(s, &v);
	if (n == 0)
		return WM_ERR_PARSE;
	unit = s + n;
	if (strcmp(unit, "") == 0 || strcmp(unit, "s") == 0)
		mult = 1000;
	else if (strcmp(unit, "ms") == 0)
		mult = 1;
	else if (strcmp(unit, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(unit, "h") == 0)
		mult = 60 * 60 * 1000;
	else
		return WM_ERR_PARSE;
	if (v > UINT64_MAX / mult)
		return WM_ERR_PARSE;
	*out = v * mult;
	return 0;
}
