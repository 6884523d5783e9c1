/*
 * Tests for authlimit: a burst of failures blocks the source for the
 * penalty (right passwords included), other sources are not affected (other
 * addresses of the same IPv6 /64 included, until several of them are
 * blocked: then the /64 is), IPv4-mapped forms are the same source, the
 * bucket refills, and a flood of other sources does not push a blocked
 * source out of the table. A fake clock, no sleeping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <sodium.h>

#include "wanmux/authlimit.h"

#define T0 1000000 /* the fake clock starts here (0 means "never" to buckets) */

static const struct sockaddr *addr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
	} else {
		assert_int_equal(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr),
				 1);
		ss->ss_family = AF_INET6;
	}
	return (const struct sockaddr *)ss;
}

/* Fails from src until the penalty starts; returns how many failures that took. */
static int fail_until_blocked(struct authlimit *al, const struct sockaddr *src, uint64_t now)
{
	for (int i = 1; i <= 100; i++) {
		assert_true(authlimit_allowed(al, src, now));
		if (authlimit_failed(al, src, now))
			return i;
	}
	fail_msg("no penalty after 100 failures");
	return -1;
}

static void test_authlimit_burst_then_penalty(void **state)
{
	struct authlimit *al = authlimit_new();
	struct sockaddr_storage a, b;
	const struct sockaddr *src = addr("192.0.2.7", &a);
	const struct sockaddr *other = addr("192.0.2.8", &b);

	assert_non_null(al);
	assert_int_equal(fail_until_blocked(al, src, T0), (int)AUTHLIMIT_BURST);
	assert_false(authlimit_allowed(al, src, T0));
	assert_false(authlimit_allowed(al, src, T0 + AUTHLIMIT_PENALTY_MS - 1));
	assert_true(authlimit_allowed(al, other, T0));
	assert_true(authlimit_allowed(al, src, T0 + AUTHLIMIT_PENALTY_MS));
	/* The penalty refilled the bucket: a full burst again, not one try. */
	assert_int_equal(fail_until_blocked(al, src, T0 + AUTHLIMIT_PENALTY_MS),
			 (int)AUTHLIMIT_BURST);
	struct authlimit_stats st = authlimit_stats(al);
	assert_int_equal(st.failures, 2 * (int)AUTHLIMIT_BURST);
	assert_int_equal(st.blocks, 2);
	assert_int_equal(st.refused, 2);
	authlimit_free(al);
}

/* Failures spread out slower than the refill never block. */
static void test_authlimit_slow_failures_never_block(void **state)
{
	struct authlimit *al = authlimit_new();
	struct sockaddr_storage a;
	const struct sockaddr *src = addr("192.0.2.7", &a);
	uint64_t gap = (uint64_t)(1000.0 / AUTHLIMIT_RATE);

	for (int i = 0; i < 50; i++) {
		assert_true(authlimit_allowed(al, src, T0 + i * gap));
		assert_false(authlimit_failed(al, src, T0 + i * gap));
	}
	authlimit_free(al);
}

static void test_authlimit_sources(void **state)
{
	static const struct {
		const char *blocked;
		const char *probe;
		bool same;
	} v[] = {
	    {"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", false},
	    {"2001:db8:1:2::1", "2001:db8:1:2::1", true},
	    {"2001:db8:1:2::1", "2001:db8:1:3::1", false},
	    {"198.51.100.1", "::ffff:198.51.100.1", true},
	    {"::ffff:198.51.100.1", "198.51.100.1", true},
	    {"198.51.100.1", "198.51.100.2", false},
	    {"198.51.100.1", "::198.51.100.1", false},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct authlimit *al = authlimit_new();
		struct sockaddr_storage a, b;

		fail_until_blocked(al, addr(v[i].blocked, &a), T0);
		if (authlimit_allowed(al, addr(v[i].probe, &b), T0) == v[i].same)
			fail_msg("%s blocked: %s %s", v[i].blocked, v[i].probe,
				 v[i].same ? "allowed" : "refused");
		authlimit_free(al);
	}
}

/*
 * The client faces a LAN, and the hosts of one LAN share an IPv6 /64: one
 * host's failures must not lock out its neighbours. A host that rotates
 * addresses to guess on gets AUTHLIMIT_PREFIX_BLOCKS addresses' bursts,
 * then its whole /64 is refused (and no other /64).
 */
static void test_authlimit_ipv6_neighbours(void **state)
{
	struct authlimit *al = authlimit_new();
	struct sockaddr_storage a, b;
	char text[64];

	fail_until_blocked(al, addr("2001:db8:1:2::10", &a), T0);
	assert_false(authlimit_allowed(al, addr("2001:db8:1:2::10", &a), T0));
	if (!authlimit_allowed(al, addr("2001:db8:1:2::20", &b), T0))
		fail_msg("one address of a /64 under the penalty locked out its neighbour");
	for (int i = 1; i < (int)AUTHLIMIT_PREFIX_BLOCKS; i++) {
		snprintf(text, sizeof(text), "2001:db8:1:2::%x", 0x100 + i);
		assert_int_equal(fail_until_blocked(al, addr(text, &a), T0), (int)AUTHLIMIT_BURST);
	}
	assert_false(authlimit_allowed(al, addr("2001:db8:1:2::20", &b), T0));
	assert_true(authlimit_allowed(al, addr("2001:db8:1:3::20", &b), T0));
	assert_true(authlimit_allowed(al, addr("2001:db8:1:2::20", &b), T0 + AUTHLIMIT_PENALTY_MS));
	assert_int_equal(authlimit_stats(al).blocks, (int)AUTHLIMIT_PREFIX_BLOCKS);
	authlimit_free(al);
}

/* More sources than the table holds: a blocked one stays blocked. */
static void test_authlimit_flood_keeps_blocked(void **state)
{
	struct authlimit *al = authlimit_new();
	struct sockaddr_storage a, b;
	const struct sockaddr *victim = addr("192.0.2.7", &a);

	fail_until_blocked(al, victim, T0);
	for (unsigned i = 0; i < 4 * AUTHLIMIT_SOURCES; i++) {
		char text[32];

		snprintf(text, sizeof(text), "10.%u.%u.%u", i >> 16, (i >> 8) & 255, i & 255);
		authlimit_failed(al, addr(text, &b), T0 + 1);
	}
	assert_false(authlimit_allowed(al, victim, T0 + 2));
	authlimit_free(al);
}

static void test_authlimit_null_and_unix(void **state)
{
	struct authlimit *al = authlimit_new();
	struct sockaddr_un un;

	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	assert_true(authlimit_allowed(NULL, (struct sockaddr *)&un, T0));
	assert_false(authlimit_failed(NULL, (struct sockaddr *)&un, T0));
	for (int i = 0; i < 100; i++)
		assert_false(authlimit_failed(al, (struct sockaddr *)&un, T0));
	assert_true(authlimit_allowed(al, (struct sockaddr *)&un, T0));
	assert_true(authlimit_allowed(al, NULL, T0));
	assert_int_equal(authlimit_stats(NULL).failures, 0);
	authlimit_free(al);
	authlimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_authlimit_burst_then_penalty),
	    cmocka_unit_test(test_authlimit_slow_failures_never_block),
	    cmocka_unit_test(test_authlimit_sources),
	    cmocka_unit_test(test_authlimit_ipv6_neighbours),
	    cmocka_unit_test(test_authlimit_flood_keeps_blocked),
	    cmocka_unit_test(test_authlimit_null_and_unix),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
