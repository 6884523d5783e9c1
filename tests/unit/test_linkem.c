/*
 * Lab link emulator model tests (netem/linkem_model.c) on a fake clock: loss
 * and burst-loss statistics, delay and jitter distributions, order keeping,
 * pacing, queue limits, duplication, reordering, blackouts, spec parsing.
 * linkem_model is not part of libwanmux, so its source is compiled in here;
 * neither uses libm, which the unit-test link line does not carry.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../netem/linkem_model.c"

#define MS LINKEM_NS_PER_MS
#define SEC LINKEM_NS_PER_SEC
#define N_STAT 100000

/* Packet ids travel as the model's opaque cookies (id + 1, so never NULL). */
#define COOKIE(id) ((void *)(uintptr_t)((id) + 1))
#define ID(cookie) ((size_t)(uintptr_t)(cookie)-1)

struct run {
	struct linkem_model *m;
	uint64_t *arrival; /* per id */
	uint64_t *release; /* per id: last release seen */
	size_t *order;	   /* ids in the order they left */
	size_t n_out;
	size_t cap;
};

static double absd(double v)
{
	return v < 0 ? -v : v;
}

static struct linkem_model *model_from(const char *text, uint64_t seed)
{
	struct linkem_spec spec;
	char err[200];
	struct linkem_model *m;

	linkem_spec_init(&spec);
	if (linkem_spec_parse(&spec, text, err, sizeof(err)) < 0)
		fail_msg("spec '%s': %s", text, err);
	m = linkem_model_new(&spec, seed);
	assert_non_null(m);
	return m;
}

static void run_init(struct run *r, const char *spec, size_t n)
{
	r->m = model_from(spec, 42);
	r->cap = 2 * n + 1;
	r->arrival = calloc(n, sizeof(*r->arrival));
	r->release = calloc(n, sizeof(*r->release));
	r->order = calloc(r->cap, sizeof(*r->order));
	r->n_out = 0;
	assert_non_null(r->arrival);
	assert_non_null(r->release);
	assert_non_null(r->order);
}

static void run_free(struct run *r)
{
	linkem_model_free(r->m);
	free(r->arrival);
	free(r->release);
	free(r->order);
}

/* Pops everything due by now, checking each copy leaves no earlier than due. */
static void run_drain(struct run *r, uint64_t now)
{
	uint64_t due;
	size_t len;
	void *p;

	for (;;) {
		due = linkem_model_next_release(r->m);
		if (due == LINKEM_NEVER || due > now)
			return;
		p = linkem_model_pop(r->m, due, &len);
		assert_non_null(p);
		r->release[ID(p)] = due;
		assert_true(r->n_out < r->cap);
		r->order[r->n_out++] = ID(p);
	}
}

static int run_push(struct run *r, size_t id, uint64_t now, size_t len)
{
	run_drain(r, now);
	r->arrival[id] = now;
	return linkem_model_push(r->m, now, COOKIE(id), len);
}

static void stats_of(struct linkem_model *m, struct linkem_stats *s)
{
	linkem_model_stats(m, s);
}

static void test_linkem_loss_rate(void **state)
{
	struct linkem_model *m = model_from("loss=1%", 1);
	struct linkem_stats s;
	size_t i, lost = 0;
	size_t len;

	(void)state;
	for (i = 0; i < N_STAT; i++) {
		if (linkem_model_push(m, i * MS, COOKIE(i), 1000) == 0)
			lost++;
		while (linkem_model_pop(m, i * MS, &len) != NULL)
			;
	}
	stats_of(m, &s);
	assert_int_equal(s.dropped[LINKEM_DROP_LOSS], lost);
	assert_in_range(lost, 800, 1200); /* 1% +- 0.2% of 100k */
	assert_int_equal(s.out, N_STAT - lost);
	linkem_model_free(m);
}

static void test_linkem_gemodel_burst_length(void **state)
{
	/* p=1%, r=25%, all lost in bad, none in good: loss p/(p+r)=3.85%, bursts 1/r=4. */
	struct linkem_model *m = model_from("gemodel=1%/25%/100%/0%", 7);
	size_t i, lost = 0, bursts = 0, run_len = 0;
	double mean_burst, rate;
	size_t len;

	(void)state;
	for (i = 0; i < 4 * N_STAT; i++) {
		if (linkem_model_push(m, i * MS, COOKIE(i), 100) == 0) {
			lost++;
			run_len++;
		} else if (run_len > 0) {
			bursts++;
			run_len = 0;
		}
		while (linkem_model_pop(m, i * MS, &len) != NULL)
			;
	}
	rate = (double)lost / (4.0 * N_STAT);
	mean_burst = (double)lost / (double)bursts;
	assert_true(absd(rate - 0.01 / 0.26) < 0.004);
	assert_true(absd(mean_burst - 4.0) < 0.3);
	linkem_model_free(m);
}

static void test_linkem_gemodel_defaults_like_netem(void **state)
{
	struct linkem_spec spec;

	(void)state;
	linkem_spec_init(&spec);
	assert_int_equal(linkem_spec_parse(&spec, "gemodel=2%", NULL, 0), 0);
	assert_true(spec.ge);
	assert_true(absd(spec.ge_p - 0.02) < 1e-12);
	assert_true(absd(spec.ge_r - 0.98) < 1e-12); /* r = 1-p */
	assert_true(absd(spec.ge_h - 1.0) < 1e-12);  /* 1-h = 100% */
	assert_true(spec.ge_k == 0);		     /* 1-k = 0% */
	/* A later loss= replaces the burst model. */
	assert_int_equal(linkem_spec_parse(&spec, "loss=1%", NULL, 0), 0);
	assert_false(spec.ge);
}

static void mean_var(const struct run *r, size_t n, double *mean, double *var, double *lo,
		     double *hi)
{
	double sum = 0, sq = 0, d;
	size_t i;

	*lo = 1e300;
	*hi = -1e300;
	for (i = 0; i < n; i++) {
		d = (double)(r->release[i] - r->arrival[i]) / (double)MS;
		sum += d;
		sq += d * d;
		if (d < *lo)
			*lo = d;
		if (d > *hi)
			*hi = d;
	}
	*mean = sum / (double)n;
	*var = sq / (double)n - *mean * *mean;
}

static void test_linkem_delay_fixed(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	run_init(&r, "delay=300ms", 1000);
	for (i = 0; i < 1000; i++)
		assert_int_equal(run_push(&r, i, i * 7 * MS, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	for (i = 0; i < 1000; i++)
		assert_int_equal(r.release[i] - r.arrival[i], 300 * MS);
	run_free(&r);
}

static void test_linkem_delay_uniform_jitter(void **state)
{
	double mean, var, lo, hi;
	struct run r;
	size_t i;

	(void)state;
	/* Packets a second apart, so order keeping never bends a sample. */
	run_init(&r, "delay=100ms,jitter=10ms", N_STAT);
	for (i = 0; i < N_STAT; i++)
		assert_int_equal(run_push(&r, i, i * SEC, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	mean_var(&r, N_STAT, &mean, &var, &lo, &hi);
	assert_true(absd(mean - 100.0) < 0.1);
	assert_true(absd(var - 100.0 / 3.0) < 1.2); /* sd 5.77 ms +- 0.1 */
	assert_true(lo >= 90.0 && hi <= 110.0);
	run_free(&r);
}

static void test_linkem_delay_normal_jitter(void **state)
{
	double mean, var, lo, hi;
	struct run r;
	size_t i;

	(void)state;
	run_init(&r, "delay=100ms,jitter=10ms,dist=normal", N_STAT);
	for (i = 0; i < N_STAT; i++)
		assert_int_equal(run_push(&r, i, i * SEC, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	mean_var(&r, N_STAT, &mean, &var, &lo, &hi);
	assert_true(absd(mean - 100.0) < 0.2);
	assert_true(absd(var - 100.0) < 4.0); /* sd 10 ms +- 0.2 */
	assert_true(lo < 70.0 && hi > 130.0); /* tails exist: it is not uniform */
	run_free(&r);
}

static void test_linkem_jitter_keeps_order(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	/* 0.1 ms apart with 20 ms of jitter: unconstrained, most would swap. */
	run_init(&r, "delay=50ms,jitter=20ms,dist=normal,limit=100000", 10000);
	for (i = 0; i < 10000; i++)
		assert_int_equal(run_push(&r, i, i * MS / 10, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	assert_int_equal(r.n_out, 10000);
	for (i = 0; i < 10000; i++) {
		assert_int_equal(r.order[i], i);
		if (i > 0)
			assert_true(r.release[i] >= r.release[i - 1]);
		assert_true(r.release[i] >= r.arrival[i]);
	}
	run_free(&r);
}

static void test_linkem_rate_pacing(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	/* 1000 x 1250 bytes at 10 Mbit/s: 1 ms each, last leaves at exactly 1 s. */
	run_init(&r, "rate=10mbit,limit=2000", 1000);
	for (i = 0; i < 1000; i++)
		assert_int_equal(run_push(&r, i, 0, 1250), 1);
	run_drain(&r, LINKEM_NEVER);
	for (i = 0; i < 1000; i++)
		assert_int_equal(r.release[i], (i + 1) * MS);
	run_free(&r);
}

static void test_linkem_rate_pacing_exact_over_long_runs(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	/* 1500 bytes at 7 Mbit/s is 1714285.71 ns: remainders must not be lost. */
	run_init(&r, "rate=7mbit,delay=20ms,limit=1000000", 70000);
	for (i = 0; i < 70000; i++)
		assert_int_equal(run_push(&r, i, 0, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	/* 70000 * 1500 * 8 / 7e6 = 120 s, plus the 20 ms of delay. */
	assert_int_equal(r.release[69999], 120 * SEC + 20 * MS);
	run_free(&r);
}

static void test_linkem_rate_idle_link_sends_at_once(void **state)
{
	struct run r;

	(void)state;
	run_init(&r, "rate=8mbit", 2);
	assert_int_equal(run_push(&r, 0, 0, 1000), 1);
	assert_int_equal(run_push(&r, 1, 10 * MS, 1000), 1); /* wire idle again */
	run_drain(&r, LINKEM_NEVER);
	assert_int_equal(r.release[0], 1 * MS);
	assert_int_equal(r.release[1], 11 * MS);
	run_free(&r);
}

static void test_linkem_limit_packets_tail_drop(void **state)
{
	struct linkem_stats s;
	struct run r;
	size_t i;

	(void)state;
	run_init(&r, "delay=1s,limit=100", 200);
	for (i = 0; i < 150; i++)
		assert_int_equal(run_push(&r, i, i * MS, 1500), i < 100 ? 1 : 0);
	assert_int_equal(linkem_model_queued(r.m), 100);
	stats_of(r.m, &s);
	assert_int_equal(s.dropped[LINKEM_DROP_LIMIT], 50);
	/* Once the head leaves there is room again. */
	assert_int_equal(run_push(&r, 150, SEC + 5 * MS / 10, 1500), 1);
	run_drain(&r, LINKEM_NEVER);
	assert_int_equal(r.n_out, 101);
	for (i = 0; i < 100; i++)
		assert_int_equal(r.order[i], i);
	assert_int_equal(r.order[100], 150);
	run_free(&r);
}

static void test_linkem_limit_bytes_tail_drop(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	run_init(&r, "delay=1s,limitbytes=10kb", 20);
	for (i = 0; i < 10; i++)
		assert_int_equal(run_push(&r, i, 0, 1000), 1);
	assert_int_equal(run_push(&r, 10, 0, 1), 0);	/* 10001 bytes > 10 kB */
	assert_int_equal(linkem_model_queued(r.m), 10); /* packet limit (1000) not reached */
	run_free(&r);
}

static void test_linkem_duplicate_rate(void **state)
{
	struct linkem_stats s;
	struct run r;
	size_t i, twice = 0;
	int n;

	(void)state;
	run_init(&r, "duplicate=5%", N_STAT);
	for (i = 0; i < N_STAT; i++) {
		n = run_push(&r, i, i * MS, 100);
		assert_true(n == 1 || n == 2);
		twice += n == 2;
	}
	run_drain(&r, LINKEM_NEVER);
	stats_of(r.m, &s);
	assert_in_range(twice, 4700, 5300); /* 5% +- 0.3% */
	assert_int_equal(s.duplicated, twice);
	assert_int_equal(r.n_out, N_STAT + twice);
	run_free(&r);
}

static void test_linkem_reorder_rate(void **state)
{
	struct linkem_stats s;
	struct run r;
	size_t i, ahead = 0;

	(void)state;
	/* 50 ms of delay, a packet per ms: a reordered packet overtakes ~50. */
	run_init(&r, "delay=50ms,reorder=10%", N_STAT);
	for (i = 0; i < N_STAT; i++)
		assert_int_equal(run_push(&r, i, i * MS, 100), 1);
	run_drain(&r, LINKEM_NEVER);
	stats_of(r.m, &s);
	for (i = 0; i < N_STAT; i++) {
		if (r.release[i] == r.arrival[i])
			ahead++;
		else
			assert_int_equal(r.release[i] - r.arrival[i], 50 * MS);
	}
	assert_int_equal(ahead, s.reordered);
	assert_in_range(ahead, 9400, 10600); /* 10% +- 0.6% */
	/* And they really are out of sequence. */
	for (i = 1; i < N_STAT; i++) {
		if (r.order[i] < r.order[i - 1])
			break;
	}
	assert_true(i < N_STAT);
	run_free(&r);
}

static void test_linkem_no_reorder_without_request(void **state)
{
	struct run r;
	size_t i;

	(void)state;
	run_init(&r, "delay=50ms,jitter=30ms,rate=100mbit,loss=1%,duplicate=1%", N_STAT);
	for (i = 0; i < N_STAT; i++)
		run_push(&r, i, i * MS / 5, 1500);
	run_drain(&r, LINKEM_NEVER);
	for (i = 1; i < r.n_out; i++)
		assert_true(r.order[i] >= r.order[i - 1]);
	run_free(&r);
}

static void test_linkem_blackout_window(void **state)
{
	struct linkem_stats s;
	struct run r;
	size_t i, n = 10000;
	uint64_t t;

	(void)state;
	run_init(&r, "delay=20ms", n);
	assert_int_equal(linkem_model_blackout(r.m, 3 * SEC, 5 * SEC), 0);
	for (i = 0; i < n; i++) {
		t = i * MS;
		assert_int_equal(run_push(&r, i, t, 100), t >= 3 * SEC && t < 5 * SEC ? 0 : 1);
		assert_int_equal(linkem_model_is_down(r.m, t), t >= 3 * SEC && t < 5 * SEC);
	}
	run_drain(&r, LINKEM_NEVER);
	stats_of(r.m, &s);
	assert_int_equal(s.dropped[LINKEM_DROP_BLACKOUT], 2000);
	assert_int_equal(r.n_out, n - 2000);
	run_free(&r);
}

static void test_linkem_runtime_down_up(void **state)
{
	struct linkem_model *m = model_from("none", 3);
	size_t len;

	(void)state;
	assert_int_equal(linkem_model_push(m, 1 * SEC, COOKIE(0), 10), 1);
	assert_int_equal(linkem_model_blackout(m, 2 * SEC, LINKEM_NEVER), 0);
	assert_int_equal(linkem_model_push(m, 2 * SEC, COOKIE(1), 10), 0);
	assert_int_equal(linkem_model_push(m, 3600 * SEC, COOKIE(2), 10), 0);
	linkem_model_up(m, 3601 * SEC);
	assert_false(linkem_model_is_down(m, 3601 * SEC));
	assert_int_equal(linkem_model_push(m, 3601 * SEC, COOKIE(3), 10), 1);
	/* The packet queued before the outage still leaves. */
	assert_ptr_equal(linkem_model_pop(m, 3601 * SEC, &len), COOKIE(0));
	assert_ptr_equal(linkem_model_pop(m, 3601 * SEC, &len), COOKIE(3));
	assert_null(linkem_model_pop(m, LINKEM_NEVER, &len));
	linkem_model_free(m);
}

static void test_linkem_blackout_window_limit(void **state)
{
	struct linkem_model *m = model_from("none", 3);
	int i;

	(void)state;
	for (i = 0; i < LINKEM_MAX_BLACKOUTS; i++)
		assert_int_equal(
		    linkem_model_blackout(m, (uint64_t)(i + 10) * SEC, (uint64_t)(i + 11) * SEC),
		    0);
	assert_int_equal(linkem_model_blackout(m, 100 * SEC, 101 * SEC), -1);
	/* Expired windows make room again. */
	assert_int_equal(linkem_model_push(m, 50 * SEC, COOKIE(0), 10), 1);
	assert_int_equal(linkem_model_blackout(m, 100 * SEC, 101 * SEC), 0);
	linkem_model_free(m);
}

static void test_linkem_counters_balance(void **state)
{
	struct linkem_stats s;
	struct run r;
	size_t i;
	uint64_t drops;

	(void)state;
	run_init(&r,
		 "delay=30ms,jitter=5ms,gemodel=2%/30%,rate=20mbit,limit=50,duplicate=3%,"
		 "reorder=2%",
		 N_STAT);
	linkem_model_blackout(r.m, 2 * SEC, 3 * SEC);
	for (i = 0; i < N_STAT; i++)
		run_push(&r, i, i * MS / 4, 1500);
	stats_of(r.m, &s);
	drops = s.dropped[0] + s.dropped[1] + s.dropped[2];
	assert_true(s.dropped[LINKEM_DROP_LIMIT] > 0);
	assert_int_equal(s.in, N_STAT);
	assert_int_equal(s.in + s.duplicated, s.out + linkem_model_queued(r.m) + drops);
	assert_true(linkem_model_queued(r.m) <= 50);
	run_drain(&r, LINKEM_NEVER);
	stats_of(r.m, &s);
	assert_int_equal(s.in + s.duplicated, s.out + drops);
	run_free(&r);
}

static void test_linkem_seed_reproducible(void **state)
{
	struct linkem_model *a = model_from("loss=30%,duplicate=10%", 99);
	struct linkem_model *b = model_from("loss=30%,duplicate=10%", 99);
	struct linkem_model *c = model_from("loss=30%,duplicate=10%", 100);
	size_t i, differ = 0, len;
	int x, y, z;

	(void)state;
	for (i = 0; i < 1000; i++) {
		x = linkem_model_push(a, i, COOKIE(i), 1);
		y = linkem_model_push(b, i, COOKIE(i), 1);
		z = linkem_model_push(c, i, COOKIE(i), 1);
		assert_int_equal(x, y);
		differ += x != z;
	}
	assert_true(differ > 0);
	while (linkem_model_pop(a, LINKEM_NEVER, &len) != NULL)
		;
	while (linkem_model_pop(b, LINKEM_NEVER, &len) != NULL)
		;
	while (linkem_model_pop(c, LINKEM_NEVER, &len) != NULL)
		;
	linkem_model_free(a);
	linkem_model_free(b);
	linkem_model_free(c);
}

static void test_linkem_spec_parse_values(void **state)
{
	struct linkem_spec spec;
	char err[200];

	(void)state;
	linkem_spec_init(&spec);
	assert_int_equal(linkem_spec_parse(&spec,
					   "delay=300ms,jitter=250us,dist=normal,loss=1.5%,"
					   "rate=20mbit,limit=1500,limitbytes=2mb,reorder=25%,"
					   "duplicate=0.5%",
					   err, sizeof(err)),
			 0);
	assert_int_equal(spec.delay_ns, 300 * MS);
	assert_int_equal(spec.jitter_ns, 250000);
	assert_int_equal(spec.dist, LINKEM_DIST_NORMAL);
	assert_true(absd(spec.loss - 0.015) < 1e-12);
	assert_int_equal(spec.rate_bps, 20000000);
	assert_int_equal(spec.limit_packets, 1500);
	assert_int_equal(spec.limit_bytes, 2000000);
	assert_true(absd(spec.reorder - 0.25) < 1e-12);
	assert_true(absd(spec.duplicate - 0.005) < 1e-12);
	/* Later keys override; "0" needs no unit. */
	assert_int_equal(linkem_spec_parse(&spec, "delay=1s,jitter=0,rate=1.5gbit", err, 200), 0);
	assert_int_equal(spec.delay_ns, SEC);
	assert_int_equal(spec.jitter_ns, 0);
	assert_int_equal(spec.rate_bps, 1500000000);
	linkem_spec_init(&spec);
	assert_int_equal(linkem_spec_parse(&spec, "none", err, sizeof(err)), 0);
	assert_int_equal(spec.limit_packets, LINKEM_DEFAULT_LIMIT);
}

static void test_linkem_spec_parse_errors(void **state)
{
	static const char *const bad[] = {
	    "delay=300",
	    "delay=-1ms",
	    "delay=5h",
	    "delay=2h",
	    "jitter=x",
	    "loss=1",
	    "loss=101%",
	    "loss=-1%",
	    "rate=20mbps",
	    "rate=20",
	    "rate=1mbyte",
	    "limit=0",
	    "limit=1.5",
	    "limit=2000000",
	    "limitbytes=1x",
	    "reorder=5",
	    "duplicate=%",
	    "dist=pareto",
	    "gemodel=1%/0%",
	    "gemodel=1/2",
	    "gemodel=1%/2%/3%/4%/5%",
	    "bogus=1",
	    "delay",
	    "=1ms",
	    "delay=",
	    "delay=1ms,",
	    ",delay=1ms",
	    "delay=1ms,,loss=1%",
	    "loss=1%%",
	};
	struct linkem_spec spec;
	char err[200];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		linkem_spec_init(&spec);
		err[0] = '\0';
		if (linkem_spec_parse(&spec, bad[i], err, sizeof(err)) != -1)
			fail_msg("'%s' was accepted", bad[i]);
		assert_true(strlen(err) > 0 && strchr(err, '\n') == NULL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_linkem_loss_rate),
	    cmocka_unit_test(test_linkem_gemodel_burst_length),
	    cmocka_unit_test(test_linkem_gemodel_defaults_like_netem),
	    cmocka_unit_test(test_linkem_delay_fixed),
	    cmocka_unit_test(test_linkem_delay_uniform_jitter),
	    cmocka_unit_test(test_linkem_delay_normal_jitter),
	    cmocka_unit_test(test_linkem_jitter_keeps_order),
	    cmocka_unit_test(test_linkem_rate_pacing),
	    cmocka_unit_test(test_linkem_rate_pacing_exact_over_long_runs),
	    cmocka_unit_test(test_linkem_rate_idle_link_sends_at_once),
	    cmocka_unit_test(test_linkem_limit_packets_tail_drop),
	    cmocka_unit_test(test_linkem_limit_bytes_tail_drop),
	    cmocka_unit_test(test_linkem_duplicate_rate),
	    cmocka_unit_test(test_linkem_reorder_rate),
	    cmocka_unit_test(test_linkem_no_reorder_without_request),
	    cmocka_unit_test(test_linkem_blackout_window),
	    cmocka_unit_test(test_linkem_runtime_down_up),
	    cmocka_unit_test(test_linkem_blackout_window_limit),
	    cmocka_unit_test(test_linkem_counters_balance),
	    cmocka_unit_test(test_linkem_seed_reproducible),
	    cmocka_unit_test(test_linkem_spec_parse_values),
	    cmocka_unit_test(test_linkem_spec_parse_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
