/*
 * Buffer budget tests: a table of the pause rule (pool limit, the even-share
 * rule over the total, the 3/4 hysteresis), charge/release/attach/detach
 * sequences with the invariants checked after every step, wake-ups when
 * memory frees, and (in builds with assertions) that an underflow aborts
 * instead of being clamped.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "wanmux/budget.h"

struct rule_case {
	const char *what;
	size_t used, limit, pools_active; /* the process */
	bool has_pool;
	size_t pool_used, pool_limit;
	unsigned num, den;
	enum budget_verdict want;
};

#define K 1024u

static const struct rule_case rule_cases[] = {
    /* The pool's own limit comes first and does not care about the total. */
    {"pool at its limit", 100 * K, 1000 * K, 1, true, 64 * K, 64 * K, 1, 1, BUDGET_UNDER},
    {"pool one byte over", 100 * K, 1000 * K, 1, true, 64 * K + 1, 64 * K, 1, 1, BUDGET_OVER_POOL},
    {"pool without a limit", 100 * K, 1000 * K, 1, true, 90 * K, 0, 1, 1, BUDGET_UNDER},
    {"pool over 3/4 of its limit (wake)", 100 * K, 1000 * K, 1, true, 48 * K + 1, 64 * K, 3, 4,
     BUDGET_OVER_POOL},
    {"pool at 3/4 of its limit (wake)", 100 * K, 1000 * K, 1, true, 48 * K, 64 * K, 3, 4,
     BUDGET_UNDER},
    {"pool over its limit and the total over", 2000 * K, 1000 * K, 2, true, 65 * K, 64 * K, 1, 1,
     BUDGET_OVER_POOL},
    /* The total: at the limit is still under. */
    {"total at the limit", 1000 * K, 1000 * K, 4, true, 900 * K, 0, 1, 1, BUDGET_UNDER},
    {"total at 3/4 (wake)", 750 * K, 1000 * K, 4, true, 700 * K, 0, 3, 4, BUDGET_UNDER},
    {"total over 3/4 (wake), big pool", 750 * K + 1, 1000 * K, 4, true, 700 * K, 0, 3, 4,
     BUDGET_OVER_TOTAL},
    /* Over the total: pools with at least an even share pause, others not. */
    {"over, 4 pools, exactly an even share", 1200 * K, 1000 * K, 4, true, 300 * K, 0, 1, 1,
     BUDGET_OVER_TOTAL},
    {"over, 4 pools, one byte less than a share", 1200 * K, 1000 * K, 4, true, 300 * K - 1, 0, 1, 1,
     BUDGET_UNDER},
    {"over, 4 pools, the hog", 1200 * K, 1000 * K, 4, true, 1100 * K, 0, 1, 1, BUDGET_OVER_TOTAL},
    {"over, 4 pools, a small one", 1200 * K, 1000 * K, 4, true, 10 * K, 0, 1, 1, BUDGET_UNDER},
    {"over, 1 pool holds it all", 1200 * K, 1000 * K, 1, true, 1200 * K, 0, 1, 1,
     BUDGET_OVER_TOTAL},
    {"over, an empty pool among 3", 1200 * K, 1000 * K, 3, true, 0, 0, 1, 1, BUDGET_UNDER},
    /* Bytes of relays in no pool (not bound yet) always pause over the total. */
    {"over, no pool", 1200 * K, 1000 * K, 3, false, 0, 0, 1, 1, BUDGET_OVER_TOTAL},
    {"under, no pool", 900 * K, 1000 * K, 3, false, 0, 0, 1, 1, BUDGET_UNDER},
    {"over, no pool holds bytes", 1200 * K, 1000 * K, 0, true, 0, 0, 1, 1, BUDGET_OVER_TOTAL},
    /* Integer scaling: limit / den * num, as the relay always did. */
    {"odd limit at 3/4", 751, 1001, 1, true, 751, 0, 3, 4, BUDGET_OVER_TOTAL},
    {"odd limit at 3/4, under", 750, 1001, 1, true, 750, 0, 3, 4, BUDGET_UNDER},
};

static void test_budget_rule_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(rule_cases) / sizeof(rule_cases[0]); i++) {
		const struct rule_case *c = &rule_cases[i];
		struct budget b;
		struct budget_pool p;
		budget_init(&b, c->limit);
		b.used = c->used;
		b.pools_active = c->pools_active;
		budget_pool_init(&p, c->pool_limit);
		p.used = c->pool_used;
		enum budget_verdict got = budget_rule(&b, c->has_pool ? &p : NULL, c->num, c->den);
		if (got != c->want)
			fail_msg("%s: got %d, want %d", c->what, got, c->want);
	}
}

/* A world of accounts: the invariants of budget.h, checked by brute force. */
#define ACCOUNTS 6
#define POOLS 3

struct world {
	struct budget b;
	struct budget_pool pools[POOLS];
	struct budget_account a[ACCOUNTS];
	int woken[ACCOUNTS];
};

static void on_wake(struct budget_account *a, void *arg)
{
	int *n = arg;
	assert_false(a->paused); /* already unpaused when told */
	(*n)++;
}

static void world_init(struct world *w, size_t limit, size_t pool_limit)
{
	memset(w, 0, sizeof(*w));
	budget_init(&w->b, limit);
	for (size_t i = 0; i < POOLS; i++)
		budget_pool_init(&w->pools[i], pool_limit);
	for (size_t i = 0; i < ACCOUNTS; i++)
		budget_account_init(&w->a[i], on_wake, &w->woken[i]);
}

static void check_invariants(const struct world *w)
{
	size_t total = 0, in_pool[POOLS] = {0}, active = 0, paused = 0;
	for (size_t i = 0; i < ACCOUNTS; i++) {
		total += w->a[i].held;
		for (size_t k = 0; k < POOLS; k++)
			if (w->a[i].pool == &w->pools[k])
				in_pool[k] += w->a[i].held;
		paused += w->a[i].paused;
	}
	assert_int_equal(w->b.used, total);
	for (size_t k = 0; k < POOLS; k++) {
		assert_int_equal(w->pools[k].used, in_pool[k]);
		active += w->pools[k].used > 0;
	}
	assert_int_equal(w->b.pools_active, active);
	size_t listed = 0;
	const struct budget_account *a;
	TAILQ_FOREACH(a, &w->b.paused, link)
	{
		assert_true(a->paused);
		listed++;
	}
	assert_int_equal(listed, paused);
}

enum op { CHARGE, RELEASE, ATTACH, DETACH, CLOSE, CHECK };

struct step {
	enum op op;
	size_t account;
	size_t arg; /* bytes, or the pool for ATTACH */
	int want;   /* CHECK: the verdict */
};

static void run_steps(struct world *w, const struct step *steps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		struct budget_account *a = &w->a[s->account];
		switch (s->op) {
		case CHARGE:
			budget_charge(&w->b, a, s->arg);
			break;
		case RELEASE:
			budget_release(&w->b, a, s->arg);
			break;
		case ATTACH:
			budget_attach(&w->b, a, &w->pools[s->arg]);
			break;
		case DETACH:
			budget_detach(&w->b, a);
			break;
		case CLOSE:
			budget_close(&w->b, a);
			break;
		case CHECK: {
			enum budget_verdict v = budget_check(&w->b, a);
			if ((int)v != s->want)
				fail_msg("step %zu: check of account %zu: got %d, want %d", i,
					 s->account, v, s->want);
			assert_int_equal(a->paused, v != BUDGET_UNDER);
			break;
		}
		}
		check_invariants(w);
	}
}

/* Bytes charged before a relay is bound move into the pool with it. */
static void test_budget_attach_moves_held_bytes(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 1000 * K, 0);
	static const struct step steps[] = {
	    {CHARGE, 0, 10 * K, 0}, {CHARGE, 1, 5 * K, 0},   {ATTACH, 0, 0, 0},
	    {ATTACH, 1, 0, 0},	    {RELEASE, 0, 10 * K, 0}, {CHARGE, 0, 3 * K, 0},
	    {DETACH, 1, 0, 0},	    {RELEASE, 1, 5 * K, 0},  {CLOSE, 0, 0, 0},
	};
	run_steps(&w, steps, sizeof(steps) / sizeof(steps[0]));
	assert_int_equal(w.b.used, 0);
	assert_int_equal(w.pools[0].used, 0);
	assert_int_equal(w.b.pools_active, 0);
}

/* Over the total, the tunnel that holds most pauses, the small one reads on;
 * the paused one wakes when the total falls to 3/4, not before. */
static void test_budget_fair_share_pauses_only_the_hog(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 100 * K, 0);
	static const struct step fill[] = {
	    {ATTACH, 0, 0, 0},
	    {ATTACH, 1, 1, 0},
	    {CHARGE, 1, 5 * K, 0},
	    {CHARGE, 0, 90 * K, 0},
	    {CHECK, 0, 0, BUDGET_UNDER}, /* at 95 K: under the total */
	    {CHARGE, 0, 10 * K, 0},
	    {CHECK, 1, 0, BUDGET_UNDER}, /* 5 K of 105 K: less than half */
	    {CHECK, 0, 0, BUDGET_OVER_TOTAL},
	};
	run_steps(&w, fill, sizeof(fill) / sizeof(fill[0]));
	assert_true(w.a[0].paused);
	assert_int_equal(budget_hits(&w.b), 1);

	/* 105 K -> 80 K: under the limit but over 3/4 (75 K): still paused. */
	budget_release(&w.b, &w.a[0], 25 * K);
	check_invariants(&w);
	assert_true(w.a[0].paused);
	assert_int_equal(w.woken[0], 0);
	/* -> 75 K: woken, once. */
	budget_release(&w.b, &w.a[0], 5 * K);
	check_invariants(&w);
	assert_false(w.a[0].paused);
	assert_int_equal(w.woken[0], 1);
	assert_int_equal(w.woken[1], 0);
	budget_release(&w.b, &w.a[0], 1);
	assert_int_equal(w.woken[0], 1);
}

/* The small tunnel's release wakes the hog too: wake-ups are not tied to the
 * account that frees memory. */
static void test_budget_release_wakes_other_accounts(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 100 * K, 0);
	static const struct step steps[] = {
	    {CHARGE, 0, 60 * K, 0},	      {CHARGE, 2, 50 * K, 0},
	    {CHECK, 0, 0, BUDGET_OVER_TOTAL}, /* no pool: pauses over the total */
	    {CHECK, 2, 0, BUDGET_OVER_TOTAL}, {RELEASE, 2, 30 * K, 0}, /* 80 K: over 3/4 */
	    {RELEASE, 2, 20 * K, 0},				       /* 60 K: both wake */
	};
	run_steps(&w, steps, sizeof(steps) / sizeof(steps[0]));
	assert_int_equal(w.woken[0], 1);
	assert_int_equal(w.woken[2], 1);
	assert_true(TAILQ_EMPTY(&w.b.paused));
}

/* A pool over its own limit pauses its accounts even when the process is
 * idle, and counts as a pool hit. */
static void test_budget_pool_limit(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 1000 * K, 64 * K);
	static const struct step steps[] = {
	    {ATTACH, 0, 0, 0},
	    {ATTACH, 1, 0, 0},
	    {ATTACH, 2, 1, 0},
	    {CHARGE, 0, 40 * K, 0},
	    {CHARGE, 1, 30 * K, 0},
	    {CHARGE, 2, 30 * K, 0},
	    {CHECK, 2, 0, BUDGET_UNDER},
	    {CHECK, 0, 0, BUDGET_OVER_POOL},
	    {CHECK, 1, 0, BUDGET_OVER_POOL},
	    {RELEASE, 0, 22 * K, 0}, /* 48 K in the pool: 3/4 of 64 K, both wake */
	};
	run_steps(&w, steps, sizeof(steps) / sizeof(steps[0]));
	assert_int_equal(w.woken[0], 1);
	assert_int_equal(w.woken[1], 1);
	assert_int_equal(w.b.over_pool.hits, 2);
	assert_int_equal(w.b.over_total.hits, 0);
}

/* Closing a paused account takes it off the paused list without waking it,
 * and what it held wakes the others. */
static void test_budget_close_paused_account(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 100 * K, 0);
	static const struct step steps[] = {
	    {CHARGE, 0, 80 * K, 0},
	    {CHARGE, 1, 30 * K, 0},
	    {CHECK, 0, 0, BUDGET_OVER_TOTAL},
	    {CHECK, 1, 0, BUDGET_OVER_TOTAL},
	    {CLOSE, 0, 0, 0},
	};
	run_steps(&w, steps, sizeof(steps) / sizeof(steps[0]));
	assert_int_equal(w.woken[0], 0);
	assert_int_equal(w.woken[1], 1);
	assert_false(w.a[0].paused);
	assert_int_equal(w.a[0].held, 0);
}

/* A release of nothing wakes nobody (an evbuffer callback that only added). */
static void test_budget_release_zero_wakes_nobody(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 10 * K, 0);
	static const struct step steps[] = {
	    {CHARGE, 0, 20 * K, 0},
	    {CHECK, 0, 0, BUDGET_OVER_TOTAL},
	    {CHARGE, 1, 0, 0},
	};
	run_steps(&w, steps, sizeof(steps) / sizeof(steps[0]));
	w.b.limit = 100 * K; /* as if --max-buffer were raised */
	budget_release(&w.b, &w.a[1], 0);
	assert_int_equal(w.woken[0], 0);
	budget_charge(&w.b, &w.a[1], 1);
	budget_release(&w.b, &w.a[1], 1);
	assert_int_equal(w.woken[0], 1);
	check_invariants(&w);
}

/* A long pseudo-random walk: every step keeps the invariants. */
static void test_budget_random_sequences_keep_invariants(void **state)
{
	(void)state;
	struct world w;
	world_init(&w, 200 * K, 80 * K);
	uint32_t x = 12345;
	for (int i = 0; i < 20000; i++) {
		x = x * 1103515245u + 12345u;
		size_t k = (x >> 8) % ACCOUNTS;
		struct budget_account *a = &w.a[k];
		size_t n = (x >> 12) % (16 * K);
		switch ((x >> 24) % 6) {
		case 0:
		case 1:
			budget_charge(&w.b, a, n);
			break;
		case 2:
			budget_release(&w.b, a, a->held < n ? a->held : n);
			break;
		case 3:
			if (a->pool == NULL)
				budget_attach(&w.b, a, &w.pools[(x >> 4) % POOLS]);
			else
				budget_detach(&w.b, a);
			break;
		case 4:
			if (!a->paused)
				budget_check(&w.b, a);
			break;
		case 5:
			if ((x & 0xff) == 0)
				budget_close(&w.b, a);
			break;
		}
		check_invariants(&w);
	}
	for (size_t k = 0; k < ACCOUNTS; k++)
		budget_close(&w.b, &w.a[k]);
	check_invariants(&w);
	assert_int_equal(w.b.used, 0);
	assert_true(TAILQ_EMPTY(&w.b.paused));
}

static void test_budget_static_initializer(void **state)
{
	(void)state;
	static struct budget b = BUDGET_INITIALIZER(b, BUDGET_DEFAULT_LIMIT);
	struct budget_account a;
	budget_account_init(&a, NULL, NULL);
	assert_int_equal(b.limit, BUDGET_DEFAULT_LIMIT);
	assert_string_equal(b.over_total.name, BUDGET_OVER_TOTAL_NAME);
	budget_charge(&b, &a, BUDGET_DEFAULT_LIMIT + 1);
	assert_int_equal(budget_check(&b, &a), BUDGET_OVER_TOTAL);
	assert_false(TAILQ_EMPTY(&b.paused));
	budget_close(&b, &a);
	assert_int_equal(b.used, 0);
	assert_true(TAILQ_EMPTY(&b.paused));
}

#ifndef NDEBUG
/* Runs fn in a child and tells whether it died of SIGABRT (an assert). */
static bool aborts(void (*fn)(void))
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* No core files from the expected abort. */
		signal(SIGABRT, SIG_DFL);
		fclose(stderr);
		fn();
		_exit(0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void release_more_than_held(void)
{
	struct budget b;
	struct budget_account a, other;
	budget_init(&b, 100);
	budget_account_init(&a, NULL, NULL);
	budget_account_init(&other, NULL, NULL);
	budget_charge(&b, &other, 50); /* the total could absorb it: a clamp would not notice */
	budget_charge(&b, &a, 10);
	budget_release(&b, &a, 11);
}

static void release_more_than_pool(void)
{
	struct budget b;
	struct budget_pool p;
	struct budget_account a;
	budget_init(&b, 100);
	budget_pool_init(&p, 0);
	budget_account_init(&a, NULL, NULL);
	budget_charge(&b, &a, 10);
	budget_attach(&b, &a, &p);
	p.used = 5; /* a pool that lost track (its owner's bug) */
	budget_release(&b, &a, 10);
}

static void attach_twice(void)
{
	struct budget b;
	struct budget_pool p, q;
	struct budget_account a;
	budget_init(&b, 100);
	budget_pool_init(&p, 0);
	budget_pool_init(&q, 0);
	budget_account_init(&a, NULL, NULL);
	budget_attach(&b, &a, &p);
	budget_attach(&b, &a, &q);
}

static void check_while_paused(void)
{
	struct budget b;
	struct budget_account a;
	budget_init(&b, 1);
	budget_account_init(&a, NULL, NULL);
	budget_charge(&b, &a, 10);
	budget_check(&b, &a);
	budget_check(&b, &a);
}

#endif

static void test_budget_underflow_asserts(void **state)
{
	(void)state;
#ifdef NDEBUG
	skip(); /* assertions compiled out (release build); the Debug/ASan build runs this */
#else
	assert_true(aborts(release_more_than_held));
	assert_true(aborts(release_more_than_pool));
	assert_true(aborts(attach_twice));
	assert_true(aborts(check_while_paused));
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_budget_rule_table),
	    cmocka_unit_test(test_budget_attach_moves_held_bytes),
	    cmocka_unit_test(test_budget_fair_share_pauses_only_the_hog),
	    cmocka_unit_test(test_budget_release_wakes_other_accounts),
	    cmocka_unit_test(test_budget_pool_limit),
	    cmocka_unit_test(test_budget_close_paused_account),
	    cmocka_unit_test(test_budget_release_zero_wakes_nobody),
	    cmocka_unit_test(test_budget_random_sequences_keep_invariants),
	    cmocka_unit_test(test_budget_static_initializer),
	    cmocka_unit_test(test_budget_underflow_asserts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
