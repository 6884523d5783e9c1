/*
 * Tests for log: the throttle (table and end to end), escaping of what a peer
 * sends, writes to a full pipe or socket that must not block, and the syslog
 * priority prefix when stderr is the journal.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "wanmux/log.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Everything readable from fd now (fd non-blocking), NUL-terminated into buf. */
static size_t drain(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;

	while (len + 1 < cap) {
		n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

/* A pipe whose write end the logger gets; the read end is non-blocking. */
static void open_pipe(int p[2])
{
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(log_set_output(p[1]), 0);
}

static void close_pipe(int p[2])
{
	assert_int_equal(log_set_output(2), 0);
	close(p[0]);
	close(p[1]);
}

static void test_log_throttle_pass_table(void **state)
{
	static const struct {
		uint64_t now_ms;
		bool pass;
		uint64_t suppressed; /* when it passes */
	} v[] = {
	    {5000, true, 0},  {5001, false, 0}, {5999, false, 0}, {6000, true, 2},
	    {6000, false, 0}, {6999, false, 0}, {9000, true, 2},  {9500, false, 0},
	    {20000, true, 1}, {21000, true, 0},
	};
	struct log_throttle t = {0};

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		uint64_t suppressed = 12345;
		bool pass = log_throttle_pass(&t, v[i].now_ms, &suppressed);

		assert_int_equal(pass, v[i].pass);
		if (pass)
			assert_int_equal(suppressed, v[i].suppressed);
		else
			assert_int_equal(suppressed, 12345);
	}
}

static void test_log_throttled_1000_calls_one_line(void **state)
{
	static char buf[65536];
	struct log_throttle t = {0};
	int p[2];
	double start;

	(void)state;
	open_pipe(p);
	start = now_s();
	for (int i = 0; i < 1000; i++)
		log_throttled(&t, LOG_LEVEL_WARN, "refused stream %d from 127.0.0.1:1", i);
	/* Far below a second on any machine; the throttle window is one second. */
	assert_true(now_s() - start < 0.9);
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 1);
	assert_non_null(strstr(buf, "warn: refused stream 0 from 127.0.0.1:1\n"));
	assert_null(strstr(buf, "suppressed"));

	/* The next line after the window reports what was held back. */
	usleep(1100 * 1000);
	log_throttled(&t, LOG_LEVEL_WARN, "refused stream %d from 127.0.0.1:1", 1000);
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 1);
	assert_non_null(strstr(buf, "refused stream 1000 from 127.0.0.1:1 "
				    "[999 similar lines suppressed]\n"));

	/* Another kind has its own throttle. */
	for (int i = 2; i < 5; i++)
		log_peer_warn("bad MAC from 127.0.0.2:%d", i);
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 1);
	assert_non_null(strstr(buf, "bad MAC from 127.0.0.2:2\n"));

	/* The end of a burst is reported by the flush, once. */
	for (int i = 0; i < 5; i++)
		log_throttled(&t, LOG_LEVEL_WARN, "refused stream %d from 127.0.0.1:1", i);
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 0);
	log_throttle_flush();
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 2); /* this kind and the bad MAC one */
	assert_non_null(strstr(buf, "warn: 5 more lines like \"refused stream %d from "
				    "127.0.0.1:1\" suppressed\n"));
	assert_non_null(strstr(buf, "warn: 2 more lines like \"bad MAC from 127.0.0.2:%d\" "
				    "suppressed\n"));
	log_throttle_flush();
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 0);

	/* A level not kept is neither written nor counted. */
	log_init("test_log", LOG_LEVEL_INFO);
	struct log_throttle quiet = {0};
	log_throttled(&quiet, LOG_LEVEL_DEBUG, "debug %d", 1);
	assert_int_equal(quiet.last_ms, 0);
	assert_int_equal(quiet.suppressed, 0);
	close_pipe(p);
}

/* A throttle about to be freed reports its held-back lines and leaves the
 * flush list; the others stay in it. */
static void test_log_throttle_release_leaves_the_list(void **state)
{
	static char buf[4096];
	struct log_throttle *t = calloc(1, sizeof(*t));
	struct log_throttle other = {0};
	int p[2];

	(void)state;
	assert_non_null(t);
	open_pipe(p);
	for (int i = 0; i < 3; i++) {
		log_throttled(t, LOG_LEVEL_WARN, "gone %d", i);
		log_throttled(&other, LOG_LEVEL_WARN, "kept %d", i);
	}
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 2);
	log_throttle_release(t);
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 1);
	assert_non_null(strstr(buf, "warn: 2 more lines like \"gone %d\" suppressed\n"));
	assert_false(t->listed);
	free(t);
	log_throttle_release(&other);
	log_throttled(&other, LOG_LEVEL_WARN, "kept %d", 9);
	log_throttle_flush();
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 2);
	assert_non_null(strstr(buf, "warn: 2 more lines like \"kept %d\" suppressed\n"));
	assert_non_null(strstr(buf, "warn: 1 more lines like \"kept %d\" suppressed\n"));
	close_pipe(p);
}

static void test_log_escapes_control_and_high_bytes(void **state)
{
	static char buf[65536];
	char out[64];
	int p[2];

	(void)state;
	open_pipe(p);
	log_warn("socks 127.0.0.1:5: CONNECT %s:80 failed",
		 "evil\n2026-01-01T00:00:00.000Z wanmux-server info: forged\x1b[31m\\\xc3\xa9\x7f");
	drain(p[0], buf, sizeof(buf));
	assert_int_equal(count_lines(buf), 1);
	assert_non_null(strstr(buf, "CONNECT evil\\x0a2026-01-01T00:00:00.000Z wanmux-server info: "
				    "forged\\x1b[31m\\\\\\xc3\\xa9\\x7f:80 failed\n"));
	assert_null(strchr(buf, '\x1b'));
	close_pipe(p);

	/* Cut at a whole escape, always NUL-terminated. */
	assert_int_equal(log_escape("ab\ncd", 5, out, 6), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(log_escape("ab\ncd", 5, out, sizeof(out)), 8);
	assert_string_equal(out, "ab\\x0acd");
	assert_int_equal(log_escape("\\", 1, out, sizeof(out)), 2);
	assert_string_equal(out, "\\\\");
	assert_int_equal(log_escape("tab\there", 8, out, sizeof(out)), 11);
	assert_string_equal(out, "tab\\x09here");
}

static void test_log_long_message_is_one_line(void **state)
{
	static char buf[65536];
	char name[2000];
	int p[2];

	(void)state;
	memset(name, '\n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	open_pipe(p);
	log_warn("name %s", name);
	size_t n = drain(p[0], buf, sizeof(buf));
	assert_true(n <= LOG_LINE_MAX);
	assert_int_equal(count_lines(buf), 1);
	assert_int_equal(buf[n - 1], '\n');
	close_pipe(p);
}

/* Logs 10000 lines into fd, whose reader never reads; must not block. */
static void flood(void)
{
	double start = now_s();
	uint64_t dropped = log_dropped_total();

	for (int i = 0; i < 10000; i++)
		log_warn("line %d of a flood nobody reads", i);
	/* A blocking write would hang here forever (the CTest timeout). */
	assert_true(now_s() - start < 20.0);
	assert_true(log_dropped_total() > dropped);
}

static void test_log_full_pipe_does_not_block(void **state)
{
	static char buf[1 << 20];
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(log_set_output(p[1]), 0);
	flood();
	/* The fd we were given keeps its own flags: the parent's stays blocking. */
	assert_int_equal(fcntl(p[1], F_GETFL) & O_NONBLOCK, 0);

	/* Once the reader catches up, the next line says how much was lost. */
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	drain(p[0], buf, sizeof(buf));
	log_warn("after the flood");
	drain(p[0], buf, sizeof(buf));
	assert_non_null(strstr(buf, "after the flood ["));
	assert_non_null(strstr(buf, " earlier lines lost: log output full]\n"));
	log_warn("and then");
	drain(p[0], buf, sizeof(buf));
	assert_null(strstr(buf, "lost"));
	close_pipe(p);
}

static void test_log_full_socket_does_not_block(void **state)
{
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(log_set_output(sv[1]), 0);
	flood();
	assert_int_equal(fcntl(sv[1], F_GETFL) & O_NONBLOCK, 0);
	assert_int_equal(log_set_output(2), 0);
	close(sv[0]);
	close(sv[1]);
}

static void test_log_journal_priority_prefix(void **state)
{
	static char buf[65536];
	static const struct {
		enum log_level level;
		const char *prefix;
	} v[] = {
	    {LOG_LEVEL_ERROR, "<3>"},
	    {LOG_LEVEL_WARN, "<4>"},
	    {LOG_LEVEL_INFO, "<6>"},
	    {LOG_LEVEL_DEBUG, "<7>"},
	};
	char env[64];
	struct stat st;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(fstat(sv[1], &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
	assert_int_equal(log_set_output(sv[1]), 0);
	log_init("test_log", LOG_LEVEL_DEBUG);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		log_msg(v[i].level, "level %zu", i);
		drain(sv[0], buf, sizeof(buf));
		assert_int_equal(strncmp(buf, v[i].prefix, 3), 0);
		assert_int_equal(count_lines(buf), 1);
	}
	log_init("test_log", LOG_LEVEL_INFO);

	/* JOURNAL_STREAM inherited, but stderr now goes elsewhere: no prefix. */
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + 1);
	assert_int_equal(setenv("JOURNAL_STREAM", env, 1), 0);
	assert_int_equal(log_set_output(sv[1]), 0);
	log_warn("plain");
	drain(sv[0], buf, sizeof(buf));
	assert_int_not_equal(buf[0], '<');
	assert_non_null(strstr(buf, " warn: plain\n"));
	assert_int_equal(unsetenv("JOURNAL_STREAM"), 0);
	assert_int_equal(log_set_output(2), 0);
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_log_throttle_pass_table),
	    cmocka_unit_test(test_log_throttled_1000_calls_one_line),
	    cmocka_unit_test(test_log_throttle_release_leaves_the_list),
	    cmocka_unit_test(test_log_escapes_control_and_high_bytes),
	    cmocka_unit_test(test_log_long_message_is_one_line),
	    cmocka_unit_test(test_log_full_pipe_does_not_block),
	    cmocka_unit_test(test_log_full_socket_does_not_block),
	    cmocka_unit_test(test_log_journal_priority_prefix),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init("test_log", LOG_LEVEL_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
