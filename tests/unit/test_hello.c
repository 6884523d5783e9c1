/*
 * Hello codec tests: the docs/PROTOCOL.md 4.3 vectors byte for byte, a table
 * of hellos a peer must refuse, every truncation (into exact-size heap
 * copies, so an over-read shows under ASan/valgrind), reserved bytes and
 * unknown flag bits ignored, and bytes after the known length ignored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/hello.h"

/* docs/PROTOCOL.md 4.3: tunnel 0, rekeys, 2025-01-01T00:00:00.123456789Z,
 * session id c0..cf, windows 4 MiB / 16 MiB, 1024 streams. */
static const uint8_t client_vector[HELLO_CLIENT_LEN] = {
    0x01, 0x00, 0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 0x67, 0x74, 0x85, 0x8a, 0x07, 0x5b, 0xcd,
    0x15, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd,
    0xce, 0xcf, 0x00, 0x40, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00};
/* docs/PROTOCOL.md 4.3: rekeys and sessions, the same windows, epoch
 * 0x0102030405060708. */
static const uint8_t server_vector[HELLO_SERVER_LEN] = {
    0x01, 0x03, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x04, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

static const struct hello_client client_struct = {
    .version = 1,
    .tunnel_no = 0,
    .flags = HELLO_FLAG_REKEY,
    .timestamp = {0x40, 0x00, 0x00, 0x00, 0x67, 0x74, 0x85, 0x8a, 0x07, 0x5b, 0xcd, 0x15},
    .session_id = {0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc,
		   0xcd, 0xce, 0xcf},
    .params = {.stream_window = 4u << 20, .session_window = 16u << 20, .max_streams = 1024}};
static const struct hello_server server_struct = {
    .version = 1,
    .flags = HELLO_FLAG_REKEY | HELLO_FLAG_SESSIONS,
    .params = {.stream_window = 4u << 20, .session_window = 16u << 20, .max_streams = 1024},
    .epoch = 0x0102030405060708ull};

static void assert_client_equal(const struct hello_client *a, const struct hello_client *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->tunnel_no, b->tunnel_no);
	assert_int_equal(a->flags, b->flags);
	assert_memory_equal(a->timestamp, b->timestamp, HELLO_TIMESTAMP_LEN);
	assert_memory_equal(a->session_id, b->session_id, HELLO_SESSION_ID_LEN);
	assert_int_equal(a->params.stream_window, b->params.stream_window);
	assert_int_equal(a->params.session_window, b->params.session_window);
	assert_int_equal(a->params.max_streams, b->params.max_streams);
}

static void assert_server_equal(const struct hello_server *a, const struct hello_server *b)
{
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->params.stream_window, b->params.stream_window);
	assert_int_equal(a->params.session_window, b->params.session_window);
	assert_int_equal(a->params.max_streams, b->params.max_streams);
	assert_true(a->epoch == b->epoch);
}

/* Decoders get exact-size heap copies: one byte too far is an ASan error. */
static int decode_client_copy(const uint8_t *p, size_t len, struct hello_client *h)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	assert_non_null(copy);
	memcpy(copy, p, len);
	int rc = hello_client_decode(copy, len, h);
	free(copy);
	return rc;
}

static int decode_server_copy(const uint8_t *p, size_t len, struct hello_server *h)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);
	assert_non_null(copy);
	memcpy(copy, p, len);
	int rc = hello_server_decode(copy, len, h);
	free(copy);
	return rc;
}

static void test_hello_client_vector_encodes(void **state)
{
	(void)state;
	uint8_t out[HELLO_CLIENT_LEN + 8];
	memset(out, 0xee, sizeof(out));
	assert_int_equal(hello_client_encode(&client_struct, out, sizeof(out)), HELLO_CLIENT_LEN);
	assert_memory_equal(out, client_vector, HELLO_CLIENT_LEN);
	assert_int_equal(out[HELLO_CLIENT_LEN], 0xee); /* nothing written past the hello */
}

static void test_hello_client_vector_decodes(void **state)
{
	(void)state;
	struct hello_client h;
	assert_int_equal(decode_client_copy(client_vector, sizeof(client_vector), &h), WM_OK);
	assert_client_equal(&h, &client_struct);
}

static void test_hello_server_vector_encodes(void **state)
{
	(void)state;
	uint8_t out[HELLO_SERVER_LEN + 8];
	memset(out, 0xee, sizeof(out));
	assert_int_equal(hello_server_encode(&server_struct, out, sizeof(out)), HELLO_SERVER_LEN);
	assert_memory_equal(out, server_vector, HELLO_SERVER_LEN);
	assert_int_equal(out[HELLO_SERVER_LEN], 0xee);
}

static void test_hello_server_vector_decodes(void **state)
{
	(void)state;
	struct hello_server h;
	assert_int_equal(decode_server_copy(server_vector, sizeof(server_vector), &h), WM_OK);
	assert_server_equal(&h, &server_struct);
}

static void test_hello_encode_needs_room(void **state)
{
	(void)state;
	uint8_t out[HELLO_CLIENT_LEN];
	assert_int_equal(hello_client_encode(&client_struct, out, HELLO_CLIENT_LEN - 1),
			 WM_ERR_RANGE);
	assert_int_equal(hello_server_encode(&server_struct, out, HELLO_SERVER_LEN - 1),
			 WM_ERR_RANGE);
}

/* Every prefix shorter than a hello is "need more", never malformed or OK. */
static void test_hello_client_every_truncation_needs_more(void **state)
{
	(void)state;
	for (size_t len = 0; len < HELLO_CLIENT_LEN; len++) {
		struct hello_client h;
		assert_int_equal(decode_client_copy(client_vector, len, &h), WM_ERR_AGAIN);
	}
}

static void test_hello_server_every_truncation_needs_more(void **state)
{
	(void)state;
	for (size_t len = 0; len < HELLO_SERVER_MIN_LEN; len++) {
		struct hello_server h;
		assert_int_equal(decode_server_copy(server_vector, len, &h), WM_ERR_AGAIN);
	}
}

/* A server from before sessions sends 16 bytes: it decodes, without the
 * SESSIONS flag (even if the bit were set) and with epoch 0, so the client
 * can say what is wrong instead of failing at the first ACK. */
static void test_hello_server_short_hello_has_no_sessions(void **state)
{
	(void)state;
	for (size_t len = HELLO_SERVER_MIN_LEN; len < HELLO_SERVER_LEN; len++) {
		struct hello_server h;
		assert_int_equal(decode_server_copy(server_vector, len, &h), WM_OK);
		assert_int_equal(h.flags, HELLO_FLAG_REKEY);
		assert_true(h.epoch == 0);
	}
	struct hello_server h;
	assert_int_equal(decode_server_copy(server_vector, HELLO_SERVER_LEN, &h), WM_OK);
	assert_true(h.epoch == 0x0102030405060708ull);
	assert_int_equal(h.flags, HELLO_FLAG_REKEY | HELLO_FLAG_SESSIONS);
}

/* A later version may append fields: the known prefix still decodes. */
static void test_hello_trailing_bytes_ignored(void **state)
{
	(void)state;
	uint8_t longer[HELLO_CLIENT_LEN + 20];
	memset(longer, 0xa5, sizeof(longer));
	memcpy(longer, client_vector, HELLO_CLIENT_LEN);
	struct hello_client c;
	assert_int_equal(decode_client_copy(longer, sizeof(longer), &c), WM_OK);
	assert_client_equal(&c, &client_struct);

	memcpy(longer, server_vector, HELLO_SERVER_LEN);
	struct hello_server s;
	assert_int_equal(decode_server_copy(longer, HELLO_SERVER_LEN + 1, &s), WM_OK);
	assert_server_equal(&s, &server_struct);
}

/* Reserved bytes and unknown flag bits are ignored (an older peer's view of
 * a newer hello); decode keeps only the flags this version knows. */
static void test_hello_client_reserved_bits_ignored(void **state)
{
	(void)state;
	static const uint8_t flag_bytes[] = {0x00, 0x01, 0x02, 0x04, 0x07, 0x80, 0xfe, 0xff};
	for (size_t i = 0; i < sizeof(flag_bytes); i++) {
		uint8_t b[HELLO_CLIENT_LEN];
		memcpy(b, client_vector, sizeof(b));
		b[2] = flag_bytes[i];
		b[3] = (uint8_t)(0xff - i);
		struct hello_client h;
		assert_int_equal(decode_client_copy(b, sizeof(b), &h), WM_OK);
		assert_int_equal(h.flags, flag_bytes[i] & HELLO_FLAGS_KNOWN);
		assert_int_equal((h.flags & HELLO_FLAG_BIG_DATA) != 0, (flag_bytes[i] & 0x04) != 0);
		struct hello_client want = client_struct;
		want.flags = flag_bytes[i] & HELLO_FLAGS_KNOWN;
		assert_client_equal(&h, &want);
	}
}

static void test_hello_server_reserved_bits_ignored(void **state)
{
	(void)state;
	static const uint8_t flag_bytes[] = {0x00, 0x01, 0x02, 0x04, 0x07, 0x80, 0xfe, 0xff};
	for (size_t i = 0; i < sizeof(flag_bytes); i++) {
		uint8_t b[HELLO_SERVER_LEN];
		memcpy(b, server_vector, sizeof(b));
		b[1] = flag_bytes[i];
		b[2] = 0xff;
		b[3] = (uint8_t)i;
		struct hello_server h;
		assert_int_equal(decode_server_copy(b, sizeof(b), &h), WM_OK);
		assert_int_equal(h.flags, flag_bytes[i] & HELLO_FLAGS_KNOWN);
	}
}

/* The encoder writes reserved bytes as zero whatever else it is given. */
static void test_hello_encode_zeroes_reserved(void **state)
{
	(void)state;
	struct hello_client c = client_struct;
	c.flags = 0xff;
	uint8_t out[HELLO_CLIENT_LEN];
	memset(out, 0xee, sizeof(out));
	assert_int_equal(hello_client_encode(&c, out, sizeof(out)), HELLO_CLIENT_LEN);
	assert_int_equal(out[2], 0xff);
	assert_int_equal(out[3], 0);
	struct hello_server s = server_struct;
	uint8_t sout[HELLO_SERVER_LEN];
	memset(sout, 0xee, sizeof(sout));
	assert_int_equal(hello_server_encode(&s, sout, sizeof(sout)), HELLO_SERVER_LEN);
	assert_int_equal(sout[2], 0);
	assert_int_equal(sout[3], 0);
}

/* One byte changed at an offset: what a peer must refuse or accept. */
struct mutation {
	const char *what;
	size_t at;
	uint32_t value; /* a byte, or a u32 written big-endian when wide */
	bool wide;
	int want;
};

static const struct mutation client_mutations[] = {
    {"version 0", 0, 0, false, WM_ERR_MALFORMED},
    {"version 2", 0, 2, false, WM_ERR_MALFORMED},
    {"version 255", 0, 255, false, WM_ERR_MALFORMED},
    {"tunnel_no 255", 1, 255, false, WM_OK},
    {"stream window 0", 32, 0, true, WM_ERR_MALFORMED},
    {"stream window min - 1", 32, HELLO_WINDOW_MIN - 1, true, WM_ERR_MALFORMED},
    {"stream window min", 32, HELLO_WINDOW_MIN, true, WM_OK},
    {"stream window max", 32, HELLO_WINDOW_MAX, true, WM_OK},
    {"stream window max + 1", 32, HELLO_WINDOW_MAX + 1, true, WM_ERR_MALFORMED},
    {"stream window all ones", 32, UINT32_MAX, true, WM_ERR_MALFORMED},
    {"session window min - 1", 36, HELLO_WINDOW_MIN - 1, true, WM_ERR_MALFORMED},
    {"session window min", 36, HELLO_WINDOW_MIN, true, WM_OK},
    {"session window max", 36, HELLO_WINDOW_MAX, true, WM_OK},
    {"session window max + 1", 36, HELLO_WINDOW_MAX + 1, true, WM_ERR_MALFORMED},
    {"max streams 0", 40, 0, true, WM_ERR_MALFORMED},
    {"max streams 1", 40, 1, true, WM_OK},
    {"max streams all ones", 40, UINT32_MAX, true, WM_OK},
};

static const struct mutation server_mutations[] = {
    {"version 0", 0, 0, false, WM_ERR_MALFORMED},
    {"version 2", 0, 2, false, WM_ERR_MALFORMED},
    {"stream window min - 1", 4, HELLO_WINDOW_MIN - 1, true, WM_ERR_MALFORMED},
    {"stream window max + 1", 4, HELLO_WINDOW_MAX + 1, true, WM_ERR_MALFORMED},
    {"stream window min", 4, HELLO_WINDOW_MIN, true, WM_OK},
    {"session window 0", 8, 0, true, WM_ERR_MALFORMED},
    {"session window max + 1", 8, HELLO_WINDOW_MAX + 1, true, WM_ERR_MALFORMED},
    {"session window max", 8, HELLO_WINDOW_MAX, true, WM_OK},
    {"max streams 0", 12, 0, true, WM_ERR_MALFORMED},
    {"max streams 1", 12, 1, true, WM_OK},
};

static void apply(uint8_t *b, const struct mutation *m)
{
	if (!m->wide) {
		b[m->at] = (uint8_t)m->value;
		return;
	}
	b[m->at] = (uint8_t)(m->value >> 24);
	b[m->at + 1] = (uint8_t)(m->value >> 16);
	b[m->at + 2] = (uint8_t)(m->value >> 8);
	b[m->at + 3] = (uint8_t)m->value;
}

static void test_hello_client_mutations(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(client_mutations) / sizeof(client_mutations[0]); i++) {
		const struct mutation *m = &client_mutations[i];
		uint8_t b[HELLO_CLIENT_LEN];
		memcpy(b, client_vector, sizeof(b));
		apply(b, m);
		struct hello_client h;
		int rc = decode_client_copy(b, sizeof(b), &h);
		if (rc != m->want)
			fail_msg("client hello, %s: got %d, want %d", m->what, rc, m->want);
		if (rc == WM_OK) {
			/* What was accepted encodes back to the same bytes. */
			uint8_t again[HELLO_CLIENT_LEN];
			assert_int_equal(hello_client_encode(&h, again, sizeof(again)),
					 HELLO_CLIENT_LEN);
			assert_memory_equal(again, b, sizeof(b));
		}
	}
}

static void test_hello_server_mutations(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(server_mutations) / sizeof(server_mutations[0]); i++) {
		const struct mutation *m = &server_mutations[i];
		uint8_t b[HELLO_SERVER_LEN];
		memcpy(b, server_vector, sizeof(b));
		apply(b, m);
		struct hello_server h;
		int rc = decode_server_copy(b, sizeof(b), &h);
		if (rc != m->want)
			fail_msg("server hello, %s: got %d, want %d", m->what, rc, m->want);
		if (rc == WM_OK) {
			uint8_t again[HELLO_SERVER_LEN];
			assert_int_equal(hello_server_encode(&h, again, sizeof(again)),
					 HELLO_SERVER_LEN);
			assert_memory_equal(again, b, sizeof(b));
		}
	}
}

/* decode(encode(x)) == x over a spread of valid hellos. */
static void test_hello_round_trip(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < 64; i++) {
		struct hello_client c = client_struct;
		c.tunnel_no = (uint8_t)(i * 37);
		c.flags = (uint8_t)(i & HELLO_FLAGS_KNOWN);
		for (size_t k = 0; k < HELLO_TIMESTAMP_LEN; k++)
			c.timestamp[k] = (uint8_t)(i * 13 + k);
		for (size_t k = 0; k < HELLO_SESSION_ID_LEN; k++)
			c.session_id[k] = (uint8_t)(i * 7 + k * 31);
		c.params.stream_window = HELLO_WINDOW_MIN + i * 65537u;
		c.params.session_window = HELLO_WINDOW_MAX - i * 4099u;
		c.params.max_streams = 1 + i * 1000003u;
		uint8_t b[HELLO_CLIENT_LEN];
		struct hello_client back;
		assert_int_equal(hello_client_encode(&c, b, sizeof(b)), HELLO_CLIENT_LEN);
		assert_int_equal(hello_client_decode(b, sizeof(b), &back), WM_OK);
		assert_client_equal(&back, &c);

		struct hello_server s = {
		    .version = HELLO_VERSION, .flags = c.flags, .params = c.params};
		uint8_t sb[HELLO_SERVER_LEN];
		struct hello_server sback;
		assert_int_equal(hello_server_encode(&s, sb, sizeof(sb)), HELLO_SERVER_LEN);
		assert_int_equal(hello_server_decode(sb, sizeof(sb), &sback), WM_OK);
		assert_server_equal(&sback, &s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hello_client_vector_encodes),
	    cmocka_unit_test(test_hello_client_vector_decodes),
	    cmocka_unit_test(test_hello_server_vector_encodes),
	    cmocka_unit_test(test_hello_server_vector_decodes),
	    cmocka_unit_test(test_hello_encode_needs_room),
	    cmocka_unit_test(test_hello_client_every_truncation_needs_more),
	    cmocka_unit_test(test_hello_server_every_truncation_needs_more),
	    cmocka_unit_test(test_hello_server_short_hello_has_no_sessions),
	    cmocka_unit_test(test_hello_trailing_bytes_ignored),
	    cmocka_unit_test(test_hello_client_reserved_bits_ignored),
	    cmocka_unit_test(test_hello_server_reserved_bits_ignored),
	    cmocka_unit_test(test_hello_encode_zeroes_reserved),
	    cmocka_unit_test(test_hello_client_mutations),
	    cmocka_unit_test(test_hello_server_mutations),
	    cmocka_unit_test(test_hello_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
