/*
 * Tests for cli: cli_tunnel_parse fills the tunnel config and the process
 * settings without touching the process (a reload may still refuse them),
 * names the bad option's id, and cli_process_apply is what changes the log
 * level and the buffer budget.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "wanmux/budget.h"
#include "wanmux/cli.h"
#include "wanmux/config.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/relay.h"

enum {
	OPT_LOG_LEVEL,
	OPT_COMPRESS,
	OPT_STREAM_WINDOW,
	OPT_SESSION_WINDOW,
	OPT_MAX_BUFFER,
	OPT_MAX_SESSION_BUFFER,
	OPT_REKEY_AFTER,
	OPT_REKEY_BYTES,
	OPT_DUPLICATE,
	OPT_QUEUE_CAP,
	OPT_TUNNEL_RCVBUF,
};

static const struct config_option opts[] = {
    {"log-level", 0, true, false, OPT_LOG_LEVEL},
    {"compress", 0, true, false, OPT_COMPRESS},
    {"stream-window", 0, true, false, OPT_STREAM_WINDOW},
    {"session-window", 0, true, false, OPT_SESSION_WINDOW},
    {"max-buffer", 0, true, false, OPT_MAX_BUFFER},
    {"max-session-buffer", 0, true, false, OPT_MAX_SESSION_BUFFER},
    {"rekey-after", 0, true, false, OPT_REKEY_AFTER},
    {"rekey-bytes", 0, true, false, OPT_REKEY_BYTES},
    {"duplicate", 0, true, false, OPT_DUPLICATE},
    {"queue-cap", 0, true, false, OPT_QUEUE_CAP},
    {"tunnel-rcvbuf", 0, true, false, OPT_TUNNEL_RCVBUF},
    {NULL, 0, false, false, -1},
};

static const struct cli_tunnel_ids ids = {
    OPT_LOG_LEVEL,	OPT_COMPRESS,	 OPT_STREAM_WINDOW,
    OPT_SESSION_WINDOW, OPT_MAX_BUFFER,	 OPT_MAX_SESSION_BUFFER,
    OPT_REKEY_AFTER,	OPT_REKEY_BYTES, -1,
    OPT_DUPLICATE,	OPT_QUEUE_CAP,	 OPT_TUNNEL_RCVBUF,
};

static struct config *from_text(const char *text)
{
	struct config *cfg = NULL;
	char err[256];
	assert_int_equal(
	    config_parse_buffer(opts, text, strlen(text), "t.conf", &cfg, err, sizeof(err)), WM_OK);
	return cfg;
}

static void test_cli_parse_has_no_side_effects(void **state)
{
	struct config *cfg = from_text("log-level debug\nmax-buffer 32M\nstream-window 1M\n");
	struct tunnel_config tc;
	struct cli_process proc;
	char err[256];
	int bad_id = 99;

	log_init("test", LOG_LEVEL_WARN);
	relay_set_budget((size_t)128 << 20);
	tunnel_config_defaults(&tc);
	assert_int_equal(cli_tunnel_parse(cfg, &ids, &tc, &proc, &bad_id, err, sizeof(err)), WM_OK);
	assert_int_equal(bad_id, -1);
	assert_int_equal(tc.params.stream_window, 1u << 20);
	assert_int_equal(proc.log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(proc.budget, (size_t)32 << 20);
	/* Nothing applied yet. */
	assert_int_equal(log_get_level(), LOG_LEVEL_WARN);
	cli_process_apply("test", &proc);
	assert_int_equal(log_get_level(), LOG_LEVEL_DEBUG);
	config_free(cfg);

	/* Options left out fall back to the defaults, not to the last values. */
	cfg = from_text("compress lz4\n");
	assert_int_equal(cli_tunnel_parse(cfg, &ids, &tc, &proc, &bad_id, err, sizeof(err)), WM_OK);
	assert_int_equal(proc.log_level, LOG_LEVEL_INFO);
	assert_int_equal(proc.budget, BUDGET_DEFAULT_LIMIT);
	config_free(cfg);
	log_init("test", LOG_LEVEL_WARN);
}

/* The shared options in text into *tc (from its defaults), which must
 * parse. */
static void parse_ok(const char *text, struct tunnel_config *tc)
{
	struct config *cfg = from_text(text);
	struct cli_process proc;
	char err[256] = "";
	int bad_id = 0;

	tunnel_config_defaults(tc);
	assert_int_equal(cli_tunnel_parse(cfg, &ids, tc, &proc, &bad_id, err, sizeof(err)), WM_OK);
	config_free(cfg);
}

/* --duplicate: auto by default, on and off as given. */
static void test_cli_parse_duplicate(void **state)
{
	static const struct {
		const char *text;
		enum placement_dup mode;
	} cases[] = {
	    {"log-level info\n", PLACEMENT_DUP_AUTO},
	    {"duplicate auto\n", PLACEMENT_DUP_AUTO},
	    {"duplicate on\n", PLACEMENT_DUP_ON},
	    {"duplicate off\n", PLACEMENT_DUP_OFF},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tunnel_config tc;
		parse_ok(cases[i].text, &tc);
		assert_int_equal(tc.duplicate, cases[i].mode);
	}
	log_init("test", LOG_LEVEL_WARN);
}

/* --queue-cap: off by default, on as given. */
static void test_cli_parse_queue_cap(void **state)
{
	static const struct {
		const char *text;
		bool on;
	} cases[] = {
	    {"log-level info\n", false},
	    {"queue-cap off\n", false},
	    {"queue-cap on\n", true},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tunnel_config tc;
		parse_ok(cases[i].text, &tc);
		assert_int_equal(tc.queue_cap, cases[i].on);
	}
	log_init("test", LOG_LEVEL_WARN);
}

static void test_cli_parse_names_the_bad_option(void **state)
{
	static const struct {
		const char *text;
		int id;
	} cases[] = {
	    {"log-level loud\n", OPT_LOG_LEVEL},
	    {"compress brotli\n", OPT_COMPRESS},
	    {"stream-window 1\n", OPT_STREAM_WINDOW},
	    {"session-window 2G\n", OPT_SESSION_WINDOW},
	    {"max-buffer 1K\n", OPT_MAX_BUFFER},
	    {"max-session-buffer x\n", OPT_MAX_SESSION_BUFFER},
	    {"rekey-after 10ms\n", OPT_REKEY_AFTER},
	    {"rekey-bytes 1K\n", OPT_REKEY_BYTES},
	    {"duplicate always\n", OPT_DUPLICATE},
	    {"queue-cap auto\n", OPT_QUEUE_CAP},
	    {"tunnel-rcvbuf 4K\n", OPT_TUNNEL_RCVBUF},
	    {"tunnel-rcvbuf 1G\n", OPT_TUNNEL_RCVBUF},
	    {"tunnel-rcvbuf big\n", OPT_TUNNEL_RCVBUF},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = from_text(cases[i].text);
		struct tunnel_config tc;
		struct cli_process proc;
		char err[256] = "";
		int bad_id = -1;

		log_init("test", LOG_LEVEL_WARN);
		tunnel_config_defaults(&tc);
		assert_int_equal(cli_tunnel_parse(cfg, &ids, &tc, &proc, &bad_id, err, sizeof(err)),
				 WM_ERR_PARSE);
		assert_int_equal(bad_id, cases[i].id);
		assert_non_null(strstr(err, "bad --"));
		assert_int_equal(log_get_level(), LOG_LEVEL_WARN);
		config_free(cfg);
	}
}

/* A size sets the tunnel sockets' SO_RCVBUF; "auto" leaves autotuning (0). */
static void test_cli_parse_tunnel_rcvbuf(void **state)
{
	static const struct {
		const char *text;
		uint32_t rcvbuf;
	} cases[] = {
	    {"tunnel-rcvbuf 8M\n", 8u << 20},
	    {"tunnel-rcvbuf 65536\n", 64u << 10},
	    {"tunnel-rcvbuf auto\n", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct config *cfg = from_text(cases[i].text);
		struct tunnel_config tc;
		struct cli_process proc;
		char err[256] = "";
		int bad_id = 99;

		tunnel_config_defaults(&tc);
		tc.tuning.rcvbuf = 12345; /* must be overwritten, "auto" included */
		assert_int_equal(cli_tunnel_parse(cfg, &ids, &tc, &proc, &bad_id, err, sizeof(err)),
				 WM_OK);
		assert_int_equal(bad_id, -1);
		assert_int_equal(tc.tuning.rcvbuf, cases[i].rcvbuf);
		config_free(cfg);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cli_parse_has_no_side_effects),
	    cmocka_unit_test(test_cli_parse_names_the_bad_option),
	    cmocka_unit_test(test_cli_parse_duplicate),
	    cmocka_unit_test(test_cli_parse_queue_cap),
	    cmocka_unit_test(test_cli_parse_tunnel_rcvbuf),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
