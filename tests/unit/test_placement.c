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

static void test_placement_queue_waits_for_acks(void **state)
{
	(void)state;
	struct placement_info p = warm;
	p.unacked = 100; /* window full */
	p.notsent = 100000;
	p.queued = 25000;
	/* 125000 bytes ahead plus the frame's 1000: 88 segments, whose ACKs
	 * come 200 us apart (20 ms / 100): 17.6 ms. */
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 17600);
	/* What was placed since the snapshot counts as ahead of it too:
	 * 138500 bytes, 96 segments. */
	assert_int_equal(placement_eta_us(&p, 12500, 1000), 10000 + 19200);
	/* Partly open window: only what does not fit waits (111520 bytes, 78
	 * segments). */
	p.unacked = 90;
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 78 * 200);
	/* Never less than the bytes at the window's rate (7.24 MB/s). */
	assert_true(placement_eta_us(&p, 0, 1000) - 10000 >= 111520ull * 1000000 / 7240000);
}

static void test_placement_hole_at_peer_costs_an_rtt(void **state)
{
	(void)state;
	struct placement_info p = warm;
	p.lost = 2;
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 20000);
	/* Segments SACKed above a hole the peer waits on: the same. */
	p.lost = 0;
	p.sacked = 3;
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 20000);
}

static void test_placement_full_small_window_waits_for_acks(void **state)
{
	(void)state;
	/* A tunnel that carries echoes at 600 ms in BBR's PROBE_RTT: cwnd 4,
	 * all in flight, a recent delivery sample of 19 KB/s. A 100-byte frame
	 * waits for one ACK, an RTT/4 away, not 100 bytes at 19 KB/s. */
	struct placement_info probe = {
	    .now_us = 1000000,
	    .cwnd = 4,
	    .mss = 1448,
	    .unacked = 4,
	    .delivery_rate = 19000,
	    .srtt_us = 600000,
	};
	assert_int_equal(placement_eta_us(&probe, 0, 100), 300000 + 150000);
	/* Three segments beyond the window: three ACKs. */
	assert_int_equal(placement_eta_us(&probe, 0, 3 * 1448), 300000 + 450000);
	/* An idle tunnel beside it with its window open gets the frame there
	 * clearly sooner. */
	struct placement_info idle = probe;
	idle.cwnd = 18;
	idle.unacked = 0;
	assert_true(placement_clearly_better(placement_eta_us(&idle, 0, 100),
					     placement_eta_us(&probe, 0, 100)));
}

static void test_placement_paced_path_waits_at_pacing_rate(void **state)
{
	(void)state;
	/* A 600 ms tunnel that BBR's long-term estimate holds at 94 kbit/s
	 * (11791 bytes/s) after a loss: a 10 KB request leaves over 0.87 s
	 * though its window of 14 is open. */
	struct placement_info held = {
	    .now_us = 1000000,
	    .cwnd = 14,
	    .mss = 1448,
	    .delivery_rate = 11985,
	    .pacing_rate = 11791,
	    .srtt_us = 600000,
	};
	assert_int_equal(placement_eta_us(&held, 0, 10240), 300000 + 10240ull * 1000000 / 11791);
	assert_int_equal(placement_rate(&held), 11791);
	/* A cold tunnel beside it paces at BBR's start-up rate (2.89 x 10
	 * segments per 600 ms) and gets it there clearly sooner. */
	struct placement_info start = cold;
	start.pacing_rate = 108527;
	assert_true(placement_clearly_better(placement_eta_us(&start, 0, 10240),
					     placement_eta_us(&held, 0, 10240)));
	/* A window wait longer than the pacing time is what counts. */
	struct placement_info p = warm;
	p.unacked = 100;
	p.pacing_rate = 50000000;
	assert_int_equal(placement_eta_us(&p, 0, 1000), 10000 + 200);
}

static void test_placement_queueing_over_a_sixteenth(void **state)
{
	(void)state;
	/* 600 ms: a queue from 37.5 ms; 40 ms: from 5 ms. */
	struct placement_info p = {.srtt_us = 637500, .min_rtt_us = 600000};
	assert_false(placement_queueing(&p));
	p.srtt_us = 637501;
	assert_true(placement_queueing(&p));
	p.min_rtt_us = 40000;
	p.srtt_us = 45000;
	assert_false(placement_queueing(&p));
	p.srtt_us = 45001;
	assert_true(placement_queueing(&p));
	p.min_rtt_us = 0;
	assert_false(placement_queueing(&p));
}

static void test_placement_backlog_and_bdp_share(void **state)
{
	(void)state;
	/* 1000 segments in flight, 100000 bytes unsent, 5000 placed. */
	struct placement_info p = {
	    .now_us = 1000000,
	    .cwnd = 2000,
	    .mss = 1448,
	    .unacked = 1200,
	    .in_flight = 1000,
	    .notsent = 100000,
	};
	assert_int_equal(placement_backlog(&p, 5000), 1448000 + 100000 + 5000);
	/* 20 Mbit/s (2.5 MB/s) at 600 ms: 1.5 MB; 110 % of it 1.65 MB. */
	assert_int_equal(placement_bdp_share(2500000, 600000, 100), 1500000);
	assert_int_equal(placement_bdp_share(2500000, 600000, 110), 1650000);
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
	/* 16 KiB on the cold path: its 14480-byte window, then 1904 bytes,
	 * two segments, whose ACKs come 60 ms apart (600 ms / 10): 300 ms +
	 * 120 ms (at 24 KB/s the bytes alone would take 79 ms). */
	assert_int_equal(c, 300000 + 120000);
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
	    cmocka_unit_test(test_placement_queue_waits_for_acks),
	    cmocka_unit_test(test_placement_hole_at_peer_costs_an_rtt),
	    cmocka_unit_test(test_placement_full_small_window_waits_for_acks),
	    cmocka_unit_test(test_placement_paced_path_waits_at_pacing_rate),
	    cmocka_unit_test(test_placement_queueing_over_a_sixteenth),
	    cmocka_unit_test(test_placement_backlog_and_bdp_share),
	    cmocka_unit_test(test_placement_rate_from_window_when_app_limited),
	    cmocka_unit_test(test_placement_cold_path_clearly_worse),
	    cmocka_unit_test(test_placement_margin),
	    cmocka_unit_test(test_placement_room_by_window_and_horizon),
	    cmocka_unit_test(test_placement_dup_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
