/*
 * Shared reverse listeners' pure part (server-side/server_group.c): the
 * --reverse-group grammar, who is a member, and which member takes the
 * next connection (round robin over the live ones with room).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <sodium.h>

#include "server.h"
#include "wanmux/err.h"
#include "wanmux/keys.h"
#include "wanmux/netaddr.h"

/* Base64 of a key whose 32 bytes are all b. */
static void key_text(uint8_t b, char out[KEYS_B64_LEN])
{
	uint8_t pub[KEYS_LEN];
	memset(pub, b, sizeof(pub));
	keys_encode_public(pub, out);
}

static void test_server_group_parse_keys_and_address(void **state)
{
	(void)state;
	char a[KEYS_B64_LEN], b[KEYS_B64_LEN], spec[256], err[256];
	struct server_group g;
	uint8_t pub[KEYS_LEN];

	key_text(1, a);
	key_text(2, b);
	/* A repeated key counts once. */
	snprintf(spec, sizeof(spec), "127.0.0.1:9000=%s,%s,%s", a, b, a);
	assert_int_equal(server_group_parse(spec, &g, err, sizeof(err)), 0);
	assert_int_equal(g.nkeys, 2);
	assert_string_equal(g.name, "127.0.0.1:9000");
	memset(pub, 1, sizeof(pub));
	assert_true(server_group_has_key(&g, pub));
	memset(pub, 2, sizeof(pub));
	assert_true(server_group_has_key(&g, pub));
	memset(pub, 3, sizeof(pub));
	assert_false(server_group_has_key(&g, pub));

	snprintf(spec, sizeof(spec), "[::1]:443=%s", a);
	assert_int_equal(server_group_parse(spec, &g, err, sizeof(err)), 0);
	assert_string_equal(g.name, "[::1]:443");
	assert_int_equal(g.nkeys, 1);
}

static void test_server_group_parse_rejects(void **state)
{
	(void)state;
	char a[KEYS_B64_LEN], spec[256], err[256];
	struct server_group g;
	key_text(1, a);
	/* Each followed by a valid key when with_key. */
	static const struct {
		const char *text;
		bool with_key;
	} bad[] = {
	    {"127.0.0.1:9000", false},	       /* no keys */
	    {"127.0.0.1:9000=", false},	       /* empty key list */
	    {"127.0.0.1:9000=,", false},       /* only separators */
	    {"127.0.0.1:9000=notakey", false}, /* neither base64 nor a file */
	    {"127.0.0.1:0=", true},	       /* port 0 */
	    {"localhost:9000=", true},	       /* a name: the LISTEN carries addresses */
	    {"9000=", true},		       /* no address */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(spec, sizeof(spec), "%s%s", bad[i].text, bad[i].with_key ? a : "");
		err[0] = '\0';
		assert_int_equal(server_group_parse(spec, &g, err, sizeof(err)), WM_ERR_PARSE);
		assert_true(strlen(err) > 0);
	}
	/* 33 keys: one over the bound. */
	char big[40 * KEYS_B64_LEN + 32];
	size_t n = (size_t)snprintf(big, sizeof(big), "127.0.0.1:9000=");
	for (int k = 0; k <= SERVER_GROUP_MAX_KEYS; k++) {
		key_text((uint8_t)(k + 1), a);
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s%s", k ? "," : "", a);
	}
	assert_int_equal(server_group_parse(big, &g, err, sizeof(err)), WM_ERR_PARSE);
	assert_non_null(strstr(err, "more than 32 keys"));
}

static void test_server_group_find_by_address_and_port(void **state)
{
	(void)state;
	char a[KEYS_B64_LEN], spec[256], err[256];
	struct server_group gs[2];
	struct sockaddr_storage ss;
	socklen_t sl;
	key_text(1, a);
	snprintf(spec, sizeof(spec), "127.0.0.1:9000=%s", a);
	assert_int_equal(server_group_parse(spec, &gs[0], err, sizeof(err)), 0);
	snprintf(spec, sizeof(spec), "[::1]:9000=%s", a);
	assert_int_equal(server_group_parse(spec, &gs[1], err, sizeof(err)), 0);

	assert_true(netaddr_literal("127.0.0.1", 9000, &ss, &sl));
	assert_ptr_equal(server_group_find(gs, 2, (struct sockaddr *)&ss), &gs[0]);
	assert_true(netaddr_literal("::1", 9000, &ss, &sl));
	assert_ptr_equal(server_group_find(gs, 2, (struct sockaddr *)&ss), &gs[1]);
	/* Another port, another address: exclusive as before. */
	assert_true(netaddr_literal("127.0.0.1", 9001, &ss, &sl));
	assert_null(server_group_find(gs, 2, (struct sockaddr *)&ss));
	assert_true(netaddr_literal("127.0.0.2", 9000, &ss, &sl));
	assert_null(server_group_find(gs, 2, (struct sockaddr *)&ss));
	assert_null(server_group_find(gs, 0, (struct sockaddr *)&ss));
}

static void test_server_group_overlap_wildcards(void **state)
{
	(void)state;
	char a[KEYS_B64_LEN], spec[256], err[256];
	struct server_group gs[2];
	struct sockaddr_storage ss;
	socklen_t sl;
	key_text(1, a);
	snprintf(spec, sizeof(spec), "127.0.0.1:9000=%s", a);
	assert_int_equal(server_group_parse(spec, &gs[0], err, sizeof(err)), 0);
	snprintf(spec, sizeof(spec), "[::]:9100=%s", a);
	assert_int_equal(server_group_parse(spec, &gs[1], err, sizeof(err)), 0);
	static const struct {
		const char *host;
		uint16_t port;
		int group; /* -1: none */
	} cases[] = {
	    {"127.0.0.1", 9000, 0}, /* the group's own address */
	    {"0.0.0.0", 9000, 0},   /* the wildcard would take its connections */
	    {"127.0.0.2", 9000, -1}, {"127.0.0.1", 9001, -1},
	    {"::1", 9000, -1},	   /* another family */
	    {"::1", 9100, 1},	   /* inside the group's :: */
	    {"0.0.0.0", 9100, -1}, /* IPV6_V6ONLY: :: covers no IPv4 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(netaddr_literal(cases[i].host, cases[i].port, &ss, &sl));
		const struct server_group *g = server_group_overlap(gs, 2, (struct sockaddr *)&ss);
		if (cases[i].group < 0)
			assert_null(g);
		else
			assert_ptr_equal(g, &gs[cases[i].group]);
	}
}

static void test_server_group_pick_round_robin(void **state)
{
	(void)state;
	struct server_group_member m[3] = {{true, 0}, {true, 0}, {true, 0}};
	size_t cursor = 0, counts[3] = {0};
	for (int i = 0; i < 30; i++) {
		size_t k = server_group_pick(m, 3, &cursor, 1000);
		assert_true(k < 3);
		counts[k]++;
	}
	assert_int_equal(counts[0], 10);
	assert_int_equal(counts[1], 10);
	assert_int_equal(counts[2], 10);
}

static void test_server_group_pick_skips_dead_members(void **state)
{
	(void)state;
	/* 1 has no tunnel (resuming) and is never chosen; 0 and 2 alternate. */
	struct server_group_member m[3] = {{true, 0}, {false, 0}, {true, 0}};
	size_t cursor = 0;
	size_t seq[6];
	for (int i = 0; i < 6; i++)
		seq[i] = server_group_pick(m, 3, &cursor, 1000);
	size_t want[6] = {0, 2, 0, 2, 0, 2};
	assert_memory_equal(seq, want, sizeof(want));
	/* It comes back: it is in the rotation again. */
	m[1].live = true;
	cursor = 0;
	assert_int_equal(server_group_pick(m, 3, &cursor, 1000), 0);
	assert_int_equal(server_group_pick(m, 3, &cursor, 1000), 1);
	assert_int_equal(server_group_pick(m, 3, &cursor, 1000), 2);
	/* None live: none. */
	struct server_group_member dead[2] = {{false, 0}, {false, 0}};
	assert_int_equal(server_group_pick(dead, 2, &cursor, 1000), SIZE_MAX);
	assert_int_equal(server_group_pick(dead, 0, &cursor, 1000), SIZE_MAX);
}

static void test_server_group_pick_prefers_room(void **state)
{
	(void)state;
	/* 0 is over the room mark: 1 and 2 share the connections. */
	struct server_group_member m[3] = {{true, 5000}, {true, 10}, {true, 999}};
	size_t cursor = 0, counts[3] = {0};
	for (int i = 0; i < 10; i++)
		counts[server_group_pick(m, 3, &cursor, 1000)]++;
	assert_int_equal(counts[0], 0);
	assert_int_equal(counts[1], 5);
	assert_int_equal(counts[2], 5);
	/* All over: the least queued takes it. */
	struct server_group_member full[3] = {{true, 5000}, {true, 3000}, {true, 4000}};
	cursor = 0;
	assert_int_equal(server_group_pick(full, 3, &cursor, 1000), 1);
	assert_int_equal(server_group_pick(full, 3, &cursor, 1000), 1);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_server_group_parse_keys_and_address),
	    cmocka_unit_test(test_server_group_parse_rejects),
	    cmocka_unit_test(test_server_group_find_by_address_and_port),
	    cmocka_unit_test(test_server_group_overlap_wildcards),
	    cmocka_unit_test(test_server_group_pick_round_robin),
	    cmocka_unit_test(test_server_group_pick_skips_dead_members),
	    cmocka_unit_test(test_server_group_pick_prefers_room),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
