/*
 * Placement arithmetic: arrival estimates and room of a path from its
 * TCP_INFO snapshot, table-driven, and the --duplicate names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/placement.h"

/* A warm 100 Mbit/s path with 20 ms RTT and its window open. */
static const struct placement_info warm = {
    .now_us = 1000000,
    .cwnd = 100,
    .mss = 1448,
    .unacked = 0,
    .delivery_rate = 12500000,
    .srtt_us = 20000,
};

/* A tunnel that never carried data: 10 segments, 600 ms, no rate sample. */
static const struct placement_info cold = {
    .now_us = 1000000,
    .cwnd = 10,
    .mss = 1448,
    .srtt_us = 600000,
};

static void test_placement_open_window_leaves_at_once(void **state)
{
	(void)state;
	/* Fits in the open window: half an RTT. */
	assert_int_equal(placement_eta_us(&warm, 0, 1000), 10000);
	assert_int_equal(placement_eta_us(&cold, 0, 1000), 300000);
	assert_int_equal(placement_cwnd_room(&warm), 100 * 1448);
}

static void test_placement_queue_waits_at_rate(void **state)
{
	(void)state;
	struct placement_info p = warm;
	p.unacked = 100; /* window full */
	p.notsent = 100000;
	p.queued = 25000;
	/* 125000 bytes ahead plus the frame's 1000 at 12.5 MB/s: 10.08 ms. */
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 10080);
	/* What was placed since the snapshot counts as ahead of it too. */
	assert_int_equal(placement_eta_us(&p, 12500, 1000), 10000 + 11080);
	/* Partly open window: only what does not fit waits. */
	p.unacked = 90;
	assert_int_equal(placement_eta_us(&p, 0, 1000),
			 10000 + (126000 - 14480) * 1000000ull / 12500000);
}

static void test_placement_lost_segments_cost_an_rtt(void **state)
{
	(void)state;
	struct placement_info p = warm;
	p.lost = 2;
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 20000);
}

static void test_placement_rate_from_window_when_app_limited(void **state)
{
	(void)state;
	struct placement_info p = warm;
	p.delivery_rate = 1000; /* an idle tunnel's app-limited sample */
	/* 100 x 1448 bytes per 20 ms. */
	assert_int_equal(placement_rate(&p), 7240000);
	/* The cold path: 14480 bytes per 600 ms. */
	assert_int_equal(placement_rate(&cold), 24133);
	struct placement_info none = {0};
	assert_int_equal(placement_rate(&none), 1);
}

static void test_placement_cold_path_clearly_worse(void **state)
{
	(void)state;
	size_t len = 16384;
	uint64_t w = placement_eta_us(&warm, 0, len);
	uint64_t c = placement_eta_us(&cold, 0, len);
	/* 16 KiB on the cold path: its 14480-byte window, then 1904 bytes at
	 * 24 KB/s: 300 ms + 79 ms. */
	assert_int_equal(c, 300000 + 1904ull * 1000000 / 24133);
	assert_true(placement_clearly_better(w, c));
	assert_false(placement_clearly_better(c, w));
}

static void test_placement_margin(void **state)
{
	(void)state;
	/* At least PLACEMENT_MARGIN_US, or an eighth of the other estimate. */
	assert_false(placement_clearly_better(3000, 4000));
	assert_true(placement_clearly_better(2999, 4000));
	assert_false(placement_clearly_better(8750, 10000));
	assert_true(placement_clearly_better(8749, 10000));
	assert_false(placement_clearly_better(700000, 800000));
	assert_true(placement_clearly_better(699999, 800000));
	assert_false(placement_clearly_better(10000, 10000));
}

static void test_placement_room_by_window_and_horizon(void **state)
{
	(void)state;
	/* Warm: the open window plus 20 ms at 12.5 MB/s. */
	assert_int_equal(placement_room(&warm, 0), 144800 + 250000);
	assert_int_equal(placement_room(&warm, 44800), 350000);
	/* Cold: its window plus 150 ms (srtt/4) at 24 KB/s. */
	assert_int_equal(placement_room(&cold, 0), 14480 + 24133ull * 150000 / 1000000);
	/* Full window, full queue: nothing. */
	struct placement_info p = warm;
	p.unacked = 100;
	p.notsent = 300000;
	assert_int_equal(placement_room(&p, 0), 0);
}

/* The satellite's bulk tunnel, as ss showed it: BBR at 2.4 MB/s, 600 ms,
 * 2028 segments of window, in recovery. BBR would let two BDPs fly, one of
 * them in the bottleneck's queue; out of STARTUP the path takes bulk only up
 * to 1.125 BDP in flight and waiting. */
static void test_placement_room_capped_by_bbr_bdp(void **state)
{
	(void)state;
	struct placement_info pi = {
	    .now_us = 1000000,
	    .cwnd = 2028,
	    .mss = 1448,
	    .unacked = 900,
	    .delivery_rate = 2400000,
	    .srtt_us = 601000,
	    .bbr_bw = 2400000,
	    .bbr_min_rtt_us = 600000,
	    .bbr_pacing_gain = 256,
	};
	uint64_t bdp = 2400000u * 6 / 10; /* 1.44 MB */
	uint64_t limit = bdp * PLACEMENT_QUEUE_GAIN / 256;
	/* 900 segments in the network, nothing waiting. */
	assert_int_equal(placement_room(&pi, 0), limit - 900u * 1448);
	/* What waits counts, and so does what was placed since. */
	pi.notsent = 100000;
	assert_int_equal(placement_room(&pi, 1000), limit - 900u * 1448 - 101000);
	/* SACKed and lost segments are not in the network; retransmits are. */
	pi.notsent = 0;
	pi.unacked = 1500;
	pi.sacked = 500;
	pi.lost = 100;
	pi.retrans_out = 100;
	assert_int_equal(placement_room(&pi, 0), limit - 1000u * 1448);
	/* Full: a BDP and more in flight. */
	pi.sacked = 0;
	assert_int_equal(placement_room(&pi, 0), 0);
	/* With no model, only window and horizon. */
	struct placement_info nomodel = pi;
	nomodel.bbr_bw = 0;
	assert_true(placement_room(&nomodel, 0) > 0);
	/* In STARTUP (gain 2.89): no cap (BBR must see rounds that are not
	 * app-limited to leave it). */
	pi.bbr_pacing_gain = 739;
	assert_int_equal(placement_room(&pi, 0), placement_room(&nomodel, 0));
	/* A path's tiny estimate: PLACEMENT_QUEUE_MIN still. */
	struct placement_info cold_bbr = {.now_us = 1, .cwnd = 10, .mss = 1448, .srtt_us = 600000};
	cold_bbr.bbr_bw = 5000;
	cold_bbr.bbr_min_rtt_us = 600000;
	cold_bbr.bbr_pacing_gain = 256;
	cold_bbr.delivery_rate = 1000000;
	assert_int_equal(placement_room(&cold_bbr, 0), PLACEMENT_QUEUE_MIN);
}

static void test_placement_dup_names(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int rc;
		enum placement_dup mode;
	} v[] = {
	    {"auto", WM_OK, PLACEMENT_DUP_AUTO},
	    {"on", WM_OK, PLACEMENT_DUP_ON},
	    {"off", WM_OK, PLACEMENT_DUP_OFF},
	    {"", WM_ERR_PARSE, 0},
	    {"yes", WM_ERR_PARSE, 0},
	    {"AUTO", WM_ERR_PARSE, 0},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		enum placement_dup m = PLACEMENT_DUP_OFF;
		assert_int_equal(placement_dup_parse(v[i].text, &m), v[i].rc);
		if (v[i].rc == WM_OK) {
			assert_int_equal(m, v[i].mode);
			assert_string_equal(placement_dup_name(m), v[i].text);
		}
	}
	assert_int_equal(placement_dup_parse(NULL, &(enum placement_dup){0}), WM_ERR_PARSE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_placement_open_window_leaves_at_once),
	    cmocka_unit_test(test_placement_queue_waits_at_rate),
	    cmocka_unit_test(test_placement_lost_segments_cost_an_rtt),
	    cmocka_unit_test(test_placement_rate_from_window_when_app_limited),
	    cmocka_unit_test(test_placement_cold_path_clearly_worse),
	    cmocka_unit_test(test_placement_margin),
	    cmocka_unit_test(test_placement_room_by_window_and_horizon),
	    cmocka_unit_test(test_placement_room_capped_by_bbr_bdp),
	    cmocka_unit_test(test_placement_dup_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
