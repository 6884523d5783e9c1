/*
 * Tests for config: command-line forms and errors, config files in temporary
 * files (comments, flags, errors with FILE:LINE), the precedence of the
 * command line over the file, and the number and duration parsers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "wanmux/config.h"
#include "wanmux/err.h"

enum {
	OPT_CONFIG,
	OPT_LISTEN,
	OPT_ALLOW,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_KEY,
	OPT_DEBUG,
	OPT_UNUSED,
};

static const struct config_option opts[] = {
    {"config", 'c', true, false, OPT_CONFIG}, {"listen", 'l', true, false, OPT_LISTEN},
    {"allow", 'a', true, true, OPT_ALLOW},    {"verbose", 'v', false, false, OPT_VERBOSE},
    {"help", 'h', false, false, OPT_HELP},    {"key", 0, true, false, OPT_KEY},
    {"debug", 'd', false, true, OPT_DEBUG},   {NULL, 0, false, false, -1},
};

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Parses a NULL-free argv literal; fails the test on error. */
static struct config *parse_ok(int argc, char **argv)
{
	struct config *cfg = NULL;
	char err[256] = "";

	if (config_parse(opts, argc, argv, &cfg, err, sizeof(err)) != 0)
		fail_msg("config_parse: %s", err);
	assert_non_null(cfg);
	return cfg;
}

/* Parses argv, expects WM_ERR_PARSE with exactly want as the message. */
static void parse_fails(int argc, char **argv, const char *want)
{
	struct config *cfg = (struct config *)0x1;
	char err[256] = "";
	int rc = config_parse(opts, argc, argv, &cfg, err, sizeof(err));

	assert_int_equal(rc, WM_ERR_PARSE);
	assert_null(cfg);
	assert_string_equal(err, want);
}

/* A temporary config file with text; path written into path. */
static void write_file(char *path, size_t len, const char *text)
{
	const char *dir = getenv("TMPDIR");
	int fd;
	size_t n = strlen(text);

	snprintf(path, len, "%s/wanmux-test-config-XXXXXX", dir != NULL ? dir : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, n), (ssize_t)n);
	close(fd);
}

static void test_config_long_options(void **state)
{
	char *argv[] = {"prog",	   "--listen", "127.0.0.1:1", "--key=/etc/k", "--verbose",
			"--allow", "a",	       "--allow=b",   "pos1",	      "pos2"};
	struct config *cfg = parse_ok(ARGC(argv), argv);

	assert_string_equal(config_get(cfg, OPT_LISTEN), "127.0.0.1:1");
	assert_string_equal(config_get(cfg, OPT_KEY), "/etc/k");
	assert_string_equal(config_get(cfg, OPT_VERBOSE), "1");
	assert_null(config_get(cfg, OPT_HELP));
	assert_null(config_get(cfg, OPT_CONFIG));
	assert_null(config_get(cfg, OPT_UNUSED));
	assert_int_equal(config_count(cfg, OPT_ALLOW), 2);
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 0), "a");
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 1), "b");
	assert_null(config_get_nth(cfg, OPT_ALLOW, 2));
	assert_int_equal(config_count(cfg, OPT_LISTEN), 1);
	assert_int_equal(config_count(cfg, OPT_HELP), 0);
	assert_int_equal(config_positional_count(cfg), 2);
	assert_string_equal(config_positional(cfg, 0), "pos1");
	assert_string_equal(config_positional(cfg, 1), "pos2");
	assert_null(config_positional(cfg, 2));
	config_free(cfg);
}

static void test_config_short_options(void **state)
{
	char *argv[] = {"prog",	     "-l",  "x:1", "-a1.0.0.0/8", "-a",
			"2.0.0.0/8", "-vh", "-dd", "-vd",	  "-"};
	struct config *cfg = parse_ok(ARGC(argv), argv);

	assert_string_equal(config_get(cfg, OPT_LISTEN), "x:1");
	assert_int_equal(config_count(cfg, OPT_ALLOW), 2);
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 0), "1.0.0.0/8");
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 1), "2.0.0.0/8");
	assert_string_equal(config_get(cfg, OPT_VERBOSE), "1");
	assert_string_equal(config_get(cfg, OPT_HELP), "1");
	/* A repeatable flag counts. */
	assert_int_equal(config_count(cfg, OPT_DEBUG), 3);
	/* "-" alone is an argument (stdin, by convention), not an option. */
	assert_int_equal(config_positional_count(cfg), 1);
	assert_string_equal(config_positional(cfg, 0), "-");
	config_free(cfg);

	/* Flags and a value in one word: "-vlVALUE". */
	char *argv2[] = {"prog", "-vlhost:2"};

	cfg = parse_ok(ARGC(argv2), argv2);
	assert_string_equal(config_get(cfg, OPT_VERBOSE), "1");
	assert_string_equal(config_get(cfg, OPT_LISTEN), "host:2");
	config_free(cfg);
}

static void test_config_double_dash_ends_options(void **state)
{
	char *argv[] = {"prog", "-v", "--", "--listen", "-h", "x"};
	struct config *cfg = parse_ok(ARGC(argv), argv);

	assert_string_equal(config_get(cfg, OPT_VERBOSE), "1");
	assert_null(config_get(cfg, OPT_LISTEN));
	assert_null(config_get(cfg, OPT_HELP));
	assert_int_equal(config_positional_count(cfg), 3);
	assert_string_equal(config_positional(cfg, 0), "--listen");
	assert_string_equal(config_positional(cfg, 1), "-h");
	assert_string_equal(config_positional(cfg, 2), "x");
	config_free(cfg);
}

static void test_config_values_that_look_like_options(void **state)
{
	/* A value is taken as is, even when it starts with '-'; "--x=" is empty. */
	char *argv[] = {"prog", "--listen", "--verbose", "--key=", "-a", "-v"};
	struct config *cfg = parse_ok(ARGC(argv), argv);

	assert_string_equal(config_get(cfg, OPT_LISTEN), "--verbose");
	assert_null(config_get(cfg, OPT_VERBOSE));
	assert_string_equal(config_get(cfg, OPT_KEY), "");
	assert_string_equal(config_get(cfg, OPT_ALLOW), "-v");
	config_free(cfg);
}

static void test_config_single_option_last_wins(void **state)
{
	char *argv[] = {"prog", "--listen", "a:1", "-l", "b:2"};
	struct config *cfg = parse_ok(ARGC(argv), argv);

	assert_string_equal(config_get(cfg, OPT_LISTEN), "b:2");
	assert_int_equal(config_count(cfg, OPT_LISTEN), 1);
	config_free(cfg);
}

static void test_config_command_line_errors(void **state)
{
	char *a1[] = {"prog", "--foo"};
	char *a2[] = {"prog", "--foo=bar"};
	char *a3[] = {"prog", "--listen"};
	char *a4[] = {"prog", "-l"};
	char *a5[] = {"prog", "-z"};
	char *a6[] = {"prog", "--help=yes"};
	char *a7[] = {"prog", "-vz"};
	char *a8[] = {"prog", "--"};
	char *a9[] = {"prog", "--lis", "x"};
	char *a10[] = {"prog", "--key"};

	parse_fails(ARGC(a1), a1, "unknown option '--foo'");
	parse_fails(ARGC(a2), a2, "unknown option '--foo'");
	parse_fails(ARGC(a3), a3, "option '--listen' needs a value");
	parse_fails(ARGC(a4), a4, "option '-l' needs a value");
	parse_fails(ARGC(a5), a5, "unknown option '-z'");
	parse_fails(ARGC(a6), a6, "option '--help' takes no value");
	parse_fails(ARGC(a7), a7, "unknown option '-z'");
	/* Abbreviations are not guessed. */
	parse_fails(ARGC(a9), a9, "unknown option '--lis'");
	parse_fails(ARGC(a10), a10, "option '--key' needs a value");

	/* "--" alone is fine: no options, no positionals. */
	struct config *cfg = parse_ok(ARGC(a8), a8);

	assert_int_equal(config_positional_count(cfg), 0);
	config_free(cfg);
}

static void test_config_file_basics(void **state)
{
	char path[256];
	struct config *cfg;

	write_file(path, sizeof(path),
		   "# wanmux test config\n"
		   "\n"
		   "   \t\n"
		   "listen   127.0.0.1:7000   \n"
		   "\tallow 10.0.0.0/8:443 # office\n"
		   "allow\t[2001:db8::/32]\n"
		   "   # indented comment\n"
		   "key /etc/wanmux/key#not-a-comment\r\n"
		   "verbose yes\n"
		   "help no\n"
		   "debug 1\n"
		   "debug TRUE\n"
		   "debug off");
	char *argv[] = {"prog", "-c", path};

	cfg = parse_ok(ARGC(argv), argv);
	assert_string_equal(config_get(cfg, OPT_CONFIG), path);
	assert_string_equal(config_get(cfg, OPT_LISTEN), "127.0.0.1:7000");
	assert_int_equal(config_count(cfg, OPT_ALLOW), 2);
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 0), "10.0.0.0/8:443");
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 1), "[2001:db8::/32]");
	assert_string_equal(config_get(cfg, OPT_KEY), "/etc/wanmux/key#not-a-comment");
	assert_string_equal(config_get(cfg, OPT_VERBOSE), "1");
	assert_null(config_get(cfg, OPT_HELP));
	assert_int_equal(config_count(cfg, OPT_DEBUG), 2);
	config_free(cfg);
	unlink(path);
}

static void test_config_file_flag_words(void **state)
{
	static const struct {
		const char *text;
		const char *want; /* NULL: flag unset */
	} v[] = {
	    {"verbose yes\n", "1"}, {"verbose true\n", "1"},   {"verbose 1\n", "1"},
	    {"verbose Yes\n", "1"}, {"verbose on\n", "1"},     {"verbose\n", "1"},
	    {"verbose no\n", NULL}, {"verbose false\n", NULL}, {"verbose 0\n", NULL},
	    {"verbose NO\n", NULL}, {"verbose off\n", NULL},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct config *cfg = NULL;
		char err[256] = "";

		if (config_parse_buffer(opts, v[i].text, strlen(v[i].text), "t.conf", &cfg, err,
					sizeof(err)) != 0)
			fail_msg("'%s': %s", v[i].text, err);
		if (v[i].want == NULL)
			assert_null(config_get(cfg, OPT_VERBOSE));
		else
			assert_string_equal(config_get(cfg, OPT_VERBOSE), v[i].want);
		config_free(cfg);
	}
}

static void test_config_file_errors(void **state)
{
	static const struct {
		const char *text;
		const char *want;
	} v[] = {
	    {"listen a:1\nbogus 1\n", "t.conf:2: unknown option 'bogus'"},
	    {"\n\n\n--listen a:1\n", "t.conf:4: unknown option '--listen'"},
	    {"listen a:1\n# c\nlisten b:2\n",
	     "t.conf:3: option 'listen' given twice (first on line 1)"},
	    {"verbose yes\nverbose no\n",
	     "t.conf:2: option 'verbose' given twice (first on line 1)"},
	    {"config other.conf\n", "t.conf:1: 'config' cannot be used inside a config file"},
	    {"listen\n", "t.conf:1: option 'listen' needs a value"},
	    {"listen   # only a comment\n", "t.conf:1: option 'listen' needs a value"},
	    {"verbose maybe\n", "t.conf:1: option 'verbose' takes yes or no, not 'maybe'"},
	    {"listen a:1\nkey x\0y\n", "t.conf:2: NUL byte in line"},
	    {"bad\x01name 1\n", "t.conf:1: unknown option 'bad?name'"},
	    {"Listen a:1\n", "t.conf:1: unknown option 'Listen'"},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct config *cfg = (struct config *)0x1;
		char err[256] = "";
		/* Length up to the last '\n' so embedded NULs count. */
		size_t len = strlen(v[i].text);

		if (strstr(v[i].want, "NUL") != NULL)
			len = sizeof("listen a:1\nkey x\0y\n") - 1;
		assert_int_equal(
		    config_parse_buffer(opts, v[i].text, len, "t.conf", &cfg, err, sizeof(err)),
		    WM_ERR_PARSE);
		assert_null(cfg);
		assert_string_equal(err, v[i].want);
	}
}

static void test_config_file_error_through_argv(void **state)
{
	char path[256];
	char want[300];
	char *argv[] = {"prog", "--config", path};

	write_file(path, sizeof(path), "listen a:1\nallow x\nfrobnicate 3\n");
	snprintf(want, sizeof(want), "%s:3: unknown option 'frobnicate'", path);
	parse_fails(ARGC(argv), argv, want);
	unlink(path);

	snprintf(path, sizeof(path), "/nonexistent/wanmux.conf");
	parse_fails(ARGC(argv), argv, "/nonexistent/wanmux.conf: No such file or directory");
	snprintf(path, sizeof(path), "/");
	parse_fails(ARGC(argv), argv, "/: not a regular file");
}

static void on_alarm(int sig)
{
	(void)sig;
	fail_msg("opening a FIFO as the config file blocked");
}

/* A config others may rewrite, or owned by another user, or a FIFO: refused
 * (the FIFO at once, without waiting for a writer). */
static void test_config_file_refuses_unsafe_files(void **state)
{
	char path[256];
	char want[700];
	char *argv[] = {"prog", "--config", path};

	write_file(path, sizeof(path), "listen a:1\n");
	assert_int_equal(chmod(path, 0664), 0);
	snprintf(want, sizeof(want),
		 "%s: writable by group or others (mode 0664); run chmod go-w %s", path, path);
	parse_fails(ARGC(argv), argv, want);
	assert_int_equal(chmod(path, 0646), 0);
	snprintf(want, sizeof(want),
		 "%s: writable by group or others (mode 0646); run chmod go-w %s", path, path);
	parse_fails(ARGC(argv), argv, want);
	assert_int_equal(chmod(path, 0644), 0);
	config_free(parse_ok(ARGC(argv), argv));
	if (geteuid() == 0) {
		assert_int_equal(chown(path, 4242, (gid_t)-1), 0);
		snprintf(want, sizeof(want),
			 "%s: owned by uid 4242, not by this user (uid 0) or root; run chown 0 %s",
			 path, path);
		parse_fails(ARGC(argv), argv, want);
	}
	unlink(path);

	assert_int_equal(mkfifo(path, 0600), 0);
	signal(SIGALRM, on_alarm);
	alarm(5);
	snprintf(want, sizeof(want), "%s: not a regular file", path);
	parse_fails(ARGC(argv), argv, want);
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	unlink(path);
}

static void test_config_command_line_wins(void **state)
{
	char path[256];
	struct config *cfg;

	write_file(path, sizeof(path),
		   "listen 0.0.0.0:1\n"
		   "key /file/key\n"
		   "allow 10.0.0.0/8\n"
		   "allow 192.168.0.0/16\n"
		   "help no\n");
	/* Single-valued: the command line's value; repeatable: its list replaces the file's. */
	char *argv[] = {"prog",		 "--listen", "127.0.0.1:2", "-a",
			"198.18.0.0/15", "-c",	     path,	    "--help"};

	cfg = parse_ok(ARGC(argv), argv);
	assert_string_equal(config_get(cfg, OPT_LISTEN), "127.0.0.1:2");
	assert_string_equal(config_get(cfg, OPT_KEY), "/file/key");
	assert_int_equal(config_count(cfg, OPT_ALLOW), 1);
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 0), "198.18.0.0/15");
	assert_string_equal(config_get(cfg, OPT_HELP), "1");
	config_free(cfg);

	/* Without --allow on the command line the file's list stays whole. */
	char *argv2[] = {"prog", "-c", path};

	cfg = parse_ok(ARGC(argv2), argv2);
	assert_string_equal(config_get(cfg, OPT_LISTEN), "0.0.0.0:1");
	assert_int_equal(config_count(cfg, OPT_ALLOW), 2);
	assert_string_equal(config_get_nth(cfg, OPT_ALLOW, 1), "192.168.0.0/16");
	assert_null(config_get(cfg, OPT_HELP));
	config_free(cfg);
	unlink(path);
}

/* Errors found after parsing (a bad rule) can name the file line of the
 * value; command-line values have no origin. */
static void test_config_origin_names_file_line(void **state)
{
	char path[256];
	char where[300];
	struct config *cfg;

	write_file(path, sizeof(path),
		   "# comment\n"
		   "listen 0.0.0.0:1\n"
		   "\n"
		   "allow 10.0.0.0/8\n"
		   "allow 192.168.0.0/16\n");
	char *argv[] = {"prog", "--key", "k", "-c", path};

	cfg = parse_ok(ARGC(argv), argv);
	char want[300];
	snprintf(want, sizeof(want), "%s:2", path);
	assert_string_equal(config_origin(cfg, OPT_LISTEN, 0, where, sizeof(where)), want);
	snprintf(want, sizeof(want), "%s:4", path);
	assert_string_equal(config_origin(cfg, OPT_ALLOW, 0, where, sizeof(where)), want);
	snprintf(want, sizeof(want), "%s:5", path);
	assert_string_equal(config_origin(cfg, OPT_ALLOW, 1, where, sizeof(where)), want);
	assert_string_equal(config_origin(cfg, OPT_ALLOW, (size_t)-1, where, sizeof(where)), want);
	assert_null(config_origin(cfg, OPT_KEY, 0, where, sizeof(where)));
	assert_null(config_origin(cfg, OPT_HELP, 0, where, sizeof(where)));
	/* config_value_error: FILE:LINE first for a file value, nothing for argv. */
	char err[400];
	assert_int_equal(config_value_error(cfg, OPT_ALLOW, 1, err, sizeof(err), "bad '%s'", "x"),
			 WM_ERR_PARSE);
	snprintf(want, sizeof(want), "%s:5: bad 'x'", path);
	assert_string_equal(err, want);
	config_value_error(cfg, OPT_KEY, 0, err, sizeof(err), "bad --key");
	assert_string_equal(err, "bad --key");
	config_free(cfg);

	/* The command line's list replaces the file's: no file origin left. */
	char *argv2[] = {"prog", "-a", "198.18.0.0/15", "-c", path};
	cfg = parse_ok(ARGC(argv2), argv2);
	assert_null(config_origin(cfg, OPT_ALLOW, 0, where, sizeof(where)));
	config_free(cfg);
	unlink(path);
}

static void test_config_no_config_option(void **state)
{
	/* A table without "config": -c / --config are unknown options. */
	static const struct config_option small[] = {
	    {"listen", 'l', true, false, 1},
	    {NULL, 0, false, false, -1},
	};
	char *argv[] = {"prog", "--config", "x"};
	struct config *cfg = NULL;
	char err[128];

	assert_int_equal(config_parse(small, ARGC(argv), argv, &cfg, err, sizeof(err)),
			 WM_ERR_PARSE);
	assert_string_equal(err, "unknown option '--config'");
	/* In a file, "config" is refused whatever the table says. */
	assert_int_equal(config_parse_buffer(small, "config x", 8, "f", &cfg, err, sizeof(err)),
			 WM_ERR_PARSE);
	assert_string_equal(err, "f:1: 'config' cannot be used inside a config file");
}

static void test_config_buffer_edge_cases(void **state)
{
	struct config *cfg = NULL;
	char err[128] = "";

	/* Not NUL-terminated: only len bytes are read. */
	const char text[] = {'l', 'i', 's', 't', 'e', 'n', ' ', 'a', ':', '1', 'X'};

	assert_int_equal(config_parse_buffer(opts, text, 10, "b", &cfg, err, sizeof(err)), 0);
	assert_string_equal(config_get(cfg, OPT_LISTEN), "a:1");
	config_free(cfg);

	/* Empty text is an empty config. */
	assert_int_equal(config_parse_buffer(opts, "", 0, "b", &cfg, err, sizeof(err)), 0);
	assert_null(config_get(cfg, OPT_LISTEN));
	assert_int_equal(config_positional_count(cfg), 0);
	config_free(cfg);

	/* A long value is kept whole; a long unknown name is cut in the message. */
	char big[5000];

	memcpy(big, "key ", 4);
	memset(big + 4, 'k', sizeof(big) - 5);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(config_parse_buffer(opts, big, strlen(big), "b", &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(strlen(config_get(cfg, OPT_KEY)), sizeof(big) - 5);
	config_free(cfg);
	assert_int_equal(
	    config_parse_buffer(opts, big + 4, strlen(big + 4), "b", &cfg, err, sizeof(err)),
	    WM_ERR_PARSE);
	assert_non_null(strstr(err, "...'"));
	assert_true(strlen(err) < 100);

	config_free(NULL);
	assert_null(config_get(NULL, OPT_LISTEN));
	assert_int_equal(config_count(NULL, OPT_ALLOW), 0);
}

static void test_config_parse_uint(void **state)
{
	static const struct {
		const char *s;
		uint64_t min, max;
		int rc;
		uint64_t want;
	} v[] = {
	    {"0", 0, 10, 0, 0},
	    {"10", 0, 10, 0, 10},
	    {"11", 0, 10, WM_ERR_PARSE, 0},
	    {"4", 5, 10, WM_ERR_PARSE, 0},
	    {"5", 5, 10, 0, 5},
	    {"1K", 0, UINT64_MAX, 0, 1024},
	    {"1k", 0, UINT64_MAX, 0, 1024},
	    {"2M", 0, UINT64_MAX, 0, 2u << 20},
	    {"3G", 0, UINT64_MAX, 0, UINT64_C(3) << 30},
	    {"3g", 0, UINT64_MAX, 0, UINT64_C(3) << 30},
	    {"1536K", 0, UINT64_MAX, 0, 1536 * 1024},
	    {"18446744073709551615", 0, UINT64_MAX, 0, UINT64_MAX},
	    {"18446744073709551616", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"99999999999999999999999", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"17179869183G", 0, UINT64_MAX, 0, UINT64_C(17179869183) << 30},
	    {"17179869184G", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"18014398509481984K", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"1M", 0, 1048575, WM_ERR_PARSE, 0},
	    {"1M", 0, 1048576, 0, 1048576},
	    {"", 0, 10, WM_ERR_PARSE, 0},
	    {"K", 0, 10, WM_ERR_PARSE, 0},
	    {"-1", 0, 10, WM_ERR_PARSE, 0},
	    {"+1", 0, 10, WM_ERR_PARSE, 0},
	    {" 1", 0, 10, WM_ERR_PARSE, 0},
	    {"1 ", 0, 10, WM_ERR_PARSE, 0},
	    {"1KB", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"1T", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"1.5M", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	    {"0x10", 0, UINT64_MAX, WM_ERR_PARSE, 0},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint64_t out = 12345;
		int rc = config_parse_uint(v[i].s, v[i].min, v[i].max, &out);

		if (rc != v[i].rc)
			fail_msg("parse_uint('%s') = %d, want %d", v[i].s, rc, v[i].rc);
		if (rc == 0)
			assert_int_equal(out, v[i].want);
		else
			assert_int_equal(out, 12345); /* untouched on error */
	}
	assert_int_equal(config_parse_uint(NULL, 0, 1, NULL), WM_ERR_PARSE);
}

static void test_config_parse_duration(void **state)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t want;
	} v[] = {
	    {"250ms", 0, 250},
	    {"0ms", 0, 0},
	    {"30s", 0, 30000},
	    {"30", 0, 30000},
	    {"0", 0, 0},
	    {"2m", 0, 120000},
	    {"1h", 0, 3600000},
	    {"18446744073709551615ms", 0, UINT64_MAX},
	    {"18446744073709551s", 0, UINT64_C(18446744073709551000)},
	    {"18446744073709552s", WM_ERR_PARSE, 0},
	    {"18446744073709552", WM_ERR_PARSE, 0},
	    {"5124095576030432h", WM_ERR_PARSE, 0},
	    {"", WM_ERR_PARSE, 0},
	    {"s", WM_ERR_PARSE, 0},
	    {"ms", WM_ERR_PARSE, 0},
	    {"1.5s", WM_ERR_PARSE, 0},
	    {"-1s", WM_ERR_PARSE, 0},
	    {"1 s", WM_ERR_PARSE, 0},
	    {"1S", WM_ERR_PARSE, 0},
	    {"1d", WM_ERR_PARSE, 0},
	    {"1sec", WM_ERR_PARSE, 0},
	    {"1ms1", WM_ERR_PARSE, 0},
	    {"1mss", WM_ERR_PARSE, 0},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint64_t out = 777;
		int rc = config_parse_duration_ms(v[i].s, &out);

		if (rc != v[i].rc)
			fail_msg("parse_duration('%s') = %d, want %d", v[i].s, rc, v[i].rc);
		if (rc == 0)
			assert_int_equal(out, v[i].want);
		else
			assert_int_equal(out, 777);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_config_long_options),
	    cmocka_unit_test(test_config_short_options),
	    cmocka_unit_test(test_config_double_dash_ends_options),
	    cmocka_unit_test(test_config_values_that_look_like_options),
	    cmocka_unit_test(test_config_single_option_last_wins),
	    cmocka_unit_test(test_config_command_line_errors),
	    cmocka_unit_test(test_config_file_basics),
	    cmocka_unit_test(test_config_file_flag_words),
	    cmocka_unit_test(test_config_file_errors),
	    cmocka_unit_test(test_config_file_error_through_argv),
	    cmocka_unit_test(test_config_file_refuses_unsafe_files),
	    cmocka_unit_test(test_config_command_line_wins),
	    cmocka_unit_test(test_config_origin_names_file_line),
	    cmocka_unit_test(test_config_no_config_option),
	    cmocka_unit_test(test_config_buffer_edge_cases),
	    cmocka_unit_test(test_config_parse_uint),
	    cmocka_unit_test(test_config_parse_duration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
