/*
 * Target pools: definitions (good and bad), the three policies with
 * weights and backups, consistent hashing's few moves, the rise/fall health
 * machine and what a reload keeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/pool.h"

static struct pool *parse_ok(const char *spec)
{
	char err[256] = "";
	struct pool *p = pool_parse(spec, POOL_ROUNDROBIN, err, sizeof(err));
	if (p == NULL)
		fail_msg("'%s' refused: %s", spec, err);
	return p;
}

static void test_pool_parse_backends_and_flags(void **state)
{
	(void)state;
	struct pool *p = parse_ok("Web.Example:80=10.0.0.1:8080/weight=3,[::1]:81/backup,"
				  "db.internal:80/drain/weight=2");
	assert_string_equal(pool_name(p), "web.example:80");
	assert_true(pool_matches(p, "WEB.example", 80));
	assert_true(pool_matches(p, "web.example.", 80));
	assert_false(pool_matches(p, "web.example..", 80));
	assert_false(pool_matches(p, "eb.example", 80));
	assert_false(pool_matches(p, "web.example", 81));
	assert_int_equal(pool_backend_count(p), 3);
	struct pool_backend *b = pool_backend_at(p, 0);
	assert_string_equal(b->name, "10.0.0.1:8080");
	assert_int_equal(b->weight, 3);
	assert_false(b->backup);
	b = pool_backend_at(p, 1);
	assert_string_equal(b->name, "[::1]:81");
	assert_true(b->backup);
	assert_int_equal(b->weight, 1);
	b = pool_backend_at(p, 2);
	assert_true(b->drain);
	assert_int_equal(b->weight, 2);
	assert_string_equal(pool_backend_state_name(b), "drain");
	pool_free(p);

	/* An address as virtual target, in canonical form. */
	p = parse_ok("[0:0::1]:443=127.0.0.1:1");
	assert_string_equal(pool_name(p), "[::1]:443");
	assert_true(pool_matches(p, "::1", 443));
	pool_free(p);
}

static void test_pool_parse_refuses_bad_definitions(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "web:80",			  /* no '=' */
	    "web=1.2.3.4:80",		  /* no virtual port */
	    "web:80=",			  /* no backend */
	    "web:80=1.2.3.4:80,",	  /* empty backend */
	    "web:80=1.2.3.4",		  /* backend without port */
	    "web:80=::1:80",		  /* IPv6 without brackets */
	    "web:80=1.2.3.4:0",		  /* port 0 */
	    "web:80=1.2.3.4:80/weight=0", /* weight out of range */
	    "web:80=1.2.3.4:80/weight=257",
	    "web:80=1.2.3.4:80/weight=1k",  /* no suffixes */
	    "web:80=1.2.3.4:80/heavy",	    /* unknown flag */
	    "web:80=1.2.3.4:80,1.2.3.4:80", /* twice */
	    "bad_name!:80=1.2.3.4:80",
	    "web:80=bad..name:80",
	    "web:80=1.2.3.4:80,b::1]:2/weight=3\n,x:1", /* found by fuzz_pool */
	    "web:80=1.2.3.4:80/\x1b[31m",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		struct pool *p = pool_parse(bad[i], POOL_ROUNDROBIN, err, sizeof(err));
		if (p != NULL)
			fail_msg("'%s' accepted", bad[i]);
		assert_true(err[0] != '\0');
		assert_null(strchr(err, '\n'));
	}
	/* More than POOL_BACKENDS_MAX. */
	char spec[4096] = "web:80=";
	for (int i = 0; i <= POOL_BACKENDS_MAX; i++) {
		char one[32];
		snprintf(one, sizeof(one), "%s10.0.0.%d:80", i > 0 ? "," : "", i + 1);
		strncat(spec, one, sizeof(spec) - strlen(spec) - 1);
	}
	char err[256];
	assert_null(pool_parse(spec, POOL_ROUNDROBIN, err, sizeof(err)));
}

static void count_picks(struct pool *p, int n, const uint8_t *key, int counts[POOL_BACKENDS_MAX])
{
	memset(counts, 0, sizeof(int) * POOL_BACKENDS_MAX);
	for (int i = 0; i < n; i++) {
		int k = pool_pick(p, key, key != NULL ? 32 : 0, 0);
		assert_true(k >= 0);
		counts[k]++;
	}
}

static void test_pool_roundrobin_is_even_and_weighted(void **state)
{
	(void)state;
	int c[POOL_BACKENDS_MAX];
	struct pool *p = parse_ok("web:80=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
	count_picks(p, 60, NULL, c);
	assert_int_equal(c[0], 20);
	assert_int_equal(c[1], 20);
	assert_int_equal(c[2], 20);
	pool_free(p);

	p = parse_ok("web:80=127.0.0.1:1/weight=3,127.0.0.1:2");
	count_picks(p, 60, NULL, c);
	assert_int_equal(c[0], 45);
	assert_int_equal(c[1], 15);
	pool_free(p);
}

static void test_pool_down_and_drained_get_nothing(void **state)
{
	(void)state;
	int c[POOL_BACKENDS_MAX];
	struct pool *p = parse_ok("web:80=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
	assert_true(pool_backend_connect_failed(pool_backend_at(p, 1)));
	pool_backend_at(p, 2)->drain = true;
	count_picks(p, 30, NULL, c);
	assert_int_equal(c[0], 30);
	assert_int_equal(c[1] + c[2], 0);
	/* Skipped (already tried by this stream) as well: nothing left. */
	assert_int_equal(pool_pick(p, NULL, 0, 1u), -1);
	pool_backend_at(p, 0)->health = POOL_DOWN;
	assert_int_equal(pool_pick(p, NULL, 0, 0), -1);
	pool_free(p);
}

static void test_pool_leastconn_picks_least(void **state)
{
	(void)state;
	struct pool *p = parse_ok("web:80=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
	pool_set_policy(p, POOL_LEASTCONN);
	pool_backend_at(p, 0)->active = 5;
	pool_backend_at(p, 1)->active = 2;
	pool_backend_at(p, 2)->active = 7;
	assert_int_equal(pool_pick(p, NULL, 0, 0), 1);
	/* Streams opened on the chosen one raise its count. */
	for (int i = 0; i < 3; i++) {
		int k = pool_pick(p, NULL, 0, 0);
		assert_int_equal(k, 1);
		pool_backend_at(p, 1)->active++;
	}
	/* 5, 5, 7: the tie is shared in turn. */
	int a = pool_pick(p, NULL, 0, 0);
	int b = pool_pick(p, NULL, 0, 0);
	assert_true((a == 0 && b == 1) || (a == 1 && b == 0));
	/* Per unit of weight: 8 streams on weight 4 is less than 3 on 1. */
	pool_free(p);
	p = parse_ok("web:80=127.0.0.1:1/weight=4,127.0.0.1:2");
	pool_set_policy(p, POOL_LEASTCONN);
	pool_backend_at(p, 0)->active = 8;
	pool_backend_at(p, 1)->active = 3;
	assert_int_equal(pool_pick(p, NULL, 0, 0), 0);
	pool_free(p);
}

static void key_of(int client, uint8_t key[32])
{
	memset(key, 0, 32);
	snprintf((char *)key, 32, "client-%d", client);
}

static void test_pool_source_sticks_and_moves_few(void **state)
{
	(void)state;
	enum { CLIENTS = 1000 };
	static int before[CLIENTS];
	uint8_t key[32];
	struct pool *p = parse_ok("web:80=10.0.0.1:80,10.0.0.2:80,10.0.0.3:80");
	pool_set_policy(p, POOL_SOURCE);
	int share[3] = {0, 0, 0};
	for (int i = 0; i < CLIENTS; i++) {
		key_of(i, key);
		before[i] = pool_pick(p, key, 32, 0);
		share[before[i]]++;
		/* Sticky: the same key, the same backend, every time. */
		for (int j = 0; j < 3; j++)
			assert_int_equal(pool_pick(p, key, 32, 0), before[i]);
	}
	for (int k = 0; k < 3; k++)
		assert_in_range(share[k], CLIENTS / 3 - 80, CLIENTS / 3 + 80);
	pool_free(p);

	/* A fourth backend takes about a quarter; nobody else moves. */
	p = parse_ok("web:80=10.0.0.1:80,10.0.0.2:80,10.0.0.3:80,10.0.0.4:80");
	pool_set_policy(p, POOL_SOURCE);
	int moved = 0;
	for (int i = 0; i < CLIENTS; i++) {
		key_of(i, key);
		int now = pool_pick(p, key, 32, 0);
		if (now != before[i]) {
			assert_int_equal(now, 3);
			moved++;
		}
	}
	assert_in_range(moved, CLIENTS / 4 - 80, CLIENTS / 4 + 80);

	/* One backend down: only its clients move. */
	pool_backend_at(p, 0)->health = POOL_DOWN;
	for (int i = 0; i < CLIENTS; i++) {
		key_of(i, key);
		pool_backend_at(p, 0)->health = POOL_UP;
		int was = pool_pick(p, key, 32, 0);
		pool_backend_at(p, 0)->health = POOL_DOWN;
		int now = pool_pick(p, key, 32, 0);
		if (was != 0)
			assert_int_equal(now, was);
		else
			assert_int_not_equal(now, 0);
	}
	pool_free(p);
}

static void test_pool_backup_only_when_all_down(void **state)
{
	(void)state;
	int c[POOL_BACKENDS_MAX];
	struct pool *p = parse_ok("web:80=127.0.0.1:1,127.0.0.1:2/backup,127.0.0.1:3");
	static const enum pool_policy policies[] = {POOL_ROUNDROBIN, POOL_LEASTCONN, POOL_SOURCE};
	uint8_t key[32];
	key_of(7, key);
	for (size_t k = 0; k < 3; k++) {
		pool_set_policy(p, policies[k]);
		pool_backend_at(p, 0)->health = POOL_UP;
		pool_backend_at(p, 2)->health = POOL_UP;
		count_picks(p, 20, key, c);
		assert_int_equal(c[1], 0);
		pool_backend_at(p, 0)->health = POOL_DOWN;
		count_picks(p, 20, key, c);
		assert_int_equal(c[2], 20);
		pool_backend_at(p, 2)->health = POOL_DOWN;
		count_picks(p, 20, key, c);
		assert_int_equal(c[1], 20);
	}
	/* A drained primary counts as unusable too. */
	pool_backend_at(p, 0)->health = POOL_UP;
	pool_backend_at(p, 0)->drain = true;
	count_picks(p, 5, key, c);
	assert_int_equal(c[1], 5);
	pool_free(p);
}

static void test_pool_rise_fall_transitions(void **state)
{
	(void)state;
	struct pool *p = parse_ok("web:80=127.0.0.1:1");
	struct pool_backend *b = pool_backend_at(p, 0);
	assert_int_equal(b->health, POOL_UP);
	/* fall 3: two failures and a success keep it up. */
	assert_false(pool_backend_check(b, false, 2, 3));
	assert_false(pool_backend_check(b, false, 2, 3));
	assert_false(pool_backend_check(b, true, 2, 3));
	assert_int_equal(b->health, POOL_UP);
	assert_false(pool_backend_check(b, false, 2, 3));
	assert_false(pool_backend_check(b, false, 2, 3));
	assert_true(pool_backend_check(b, false, 2, 3));
	assert_int_equal(b->health, POOL_DOWN);
	assert_string_equal(pool_backend_state_name(b), "down");
	/* rise 2: one success then a failure is not enough. */
	assert_false(pool_backend_check(b, true, 2, 3));
	assert_false(pool_backend_check(b, false, 2, 3));
	assert_false(pool_backend_check(b, true, 2, 3));
	assert_true(pool_backend_check(b, true, 2, 3));
	assert_int_equal(b->health, POOL_UP);
	assert_int_equal(b->checks_ok, 4);
	assert_int_equal(b->checks_failed, 6);
	/* Passive: one failed connect is enough. */
	assert_true(pool_backend_connect_failed(b));
	assert_false(pool_backend_connect_failed(b));
	assert_int_equal(b->health, POOL_DOWN);
	assert_int_equal(b->failed, 2);
	assert_int_equal(b->changes, 3);
	pool_free(p);
}

static void test_pool_adopt_keeps_state(void **state)
{
	(void)state;
	struct pool *old = parse_ok("web:80=127.0.0.1:1,127.0.0.1:2");
	struct pool_backend *kept = pool_backend_at(old, 1);
	kept->health = POOL_DOWN;
	kept->total = 42;
	pool_backend_hold(kept); /* a stream still on it */
	struct pool *next = parse_ok("web:80=127.0.0.1:2/drain,127.0.0.1:3");
	pool_adopt(next, old);
	assert_ptr_equal(pool_backend_at(next, 0), kept);
	assert_int_equal(kept->total, 42);
	assert_int_equal(kept->health, POOL_DOWN);
	assert_true(kept->drain);
	assert_int_equal(pool_backend_at(next, 1)->health, POOL_UP);
	pool_free(old);
	pool_free(next);
	/* The stream's reference keeps it alive after both pools. */
	assert_int_equal(kept->total, 42);
	pool_backend_release(kept);
}

static void test_pool_policy_and_interval_parse(void **state)
{
	(void)state;
	enum pool_policy pol;
	assert_int_equal(pool_policy_parse("leastconn", &pol), 0);
	assert_int_equal(pol, POOL_LEASTCONN);
	assert_int_equal(pool_policy_parse("source", &pol), 0);
	assert_int_equal(pool_policy_parse("random", &pol), WM_ERR_PARSE);
	uint32_t ms;
	assert_int_equal(pool_parse_interval("2", &ms), 0);
	assert_int_equal(ms, 2000);
	assert_int_equal(pool_parse_interval("0.2", &ms), 0);
	assert_int_equal(ms, 200);
	assert_int_equal(pool_parse_interval("1.25s", &ms), 0);
	assert_int_equal(ms, 1250);
	assert_int_equal(pool_parse_interval("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	static const char *const bad[] = {"0.05",  "0", ".5", "1.", "1.2345",
					  "1.5ms", "x", "",   "2h"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (pool_parse_interval(bad[i], &ms) == 0)
			fail_msg("interval '%s' accepted", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pool_parse_backends_and_flags),
	    cmocka_unit_test(test_pool_parse_refuses_bad_definitions),
	    cmocka_unit_test(test_pool_roundrobin_is_even_and_weighted),
	    cmocka_unit_test(test_pool_down_and_drained_get_nothing),
	    cmocka_unit_test(test_pool_leastconn_picks_least),
	    cmocka_unit_test(test_pool_source_sticks_and_moves_few),
	    cmocka_unit_test(test_pool_backup_only_when_all_down),
	    cmocka_unit_test(test_pool_rise_fall_transitions),
	    cmocka_unit_test(test_pool_adopt_keeps_state),
	    cmocka_unit_test(test_pool_policy_and_interval_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
