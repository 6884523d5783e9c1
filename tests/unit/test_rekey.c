/*
 * Rekey state machine tests with a fake clock: a client and a server rekey
 * object over real record ciphers, frames carried by hand through seal, open
 * and the frame codec, so each key switch is checked at its record boundary.
 * Budgets, the initiator's floor, refusals out of turn, the OFFER flood limit
 * and the unanswered deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/record.h"
#include "wanmux/rekey.h"

#define T0 1000000u

/* Both ends of a tunnel: c = client (initiator), s = server. */
struct pair {
	struct record_cipher *c_tx, *c_rx, *s_tx, *s_rx;
	struct rekey *c, *s;
	uint64_t now;
	uint64_t bytes;
	uint8_t k_c2s[RECORD_KEY_LEN]; /* the handshake's keys, to show they stop working */
};

static void pair_init(struct pair *p, const struct rekey_config *cfg)
{
	uint8_t secret[HANDSHAKE_HASH_LEN], k1[RECORD_KEY_LEN], k2[RECORD_KEY_LEN];

	randombytes_buf(secret, sizeof secret);
	randombytes_buf(k1, sizeof k1);
	memcpy(p->k_c2s, k1, sizeof k1);
	randombytes_buf(k2, sizeof k2);
	p->c_tx = record_cipher_new(k1);
	p->s_rx = record_cipher_new(k1);
	p->s_tx = record_cipher_new(k2);
	p->c_rx = record_cipher_new(k2);
	p->now = T0;
	p->bytes = 0;
	p->c = rekey_new(true, secret, p->c_tx, p->c_rx, cfg, p->now);
	p->s = rekey_new(false, secret, p->s_tx, p->s_rx, cfg, p->now);
	assert_non_null(p->c);
	assert_non_null(p->s);
}

static void pair_free(struct pair *p)
{
	rekey_free(p->c);
	rekey_free(p->s);
	record_cipher_free(p->c_tx);
	record_cipher_free(p->c_rx);
	record_cipher_free(p->s_tx);
	record_cipher_free(p->s_rx);
}

/* Seals "data" with tx and checks that rx opens it. */
static void data_flows(struct record_cipher *tx, struct record_cipher *rx)
{
	uint8_t rec[64], back[64];
	int n = record_seal(tx, (const uint8_t *)"data", 4, rec);

	assert_true(n > 0);
	assert_int_equal(record_open(rx, rec, (size_t)n, back), 4);
	assert_memory_equal(back, "data", 4);
}

/*
 * Moves from's pending REKEY frame, alone in a record, to `to` the way the
 * tunnel does. Returns the step carried (0 if none) and to's verdict in *rc.
 */
static int carry(struct rekey *from, struct record_cipher *tx, struct rekey *to,
		 struct record_cipher *rx, uint64_t now, int *rc)
{
	struct frame f, g;
	uint8_t rec[128], plain[128];
	size_t used;
	int n, len;

	*rc = WM_OK;
	if (!rekey_next_frame(from, &f))
		return 0;
	n = frame_encode(&f, plain, sizeof plain);
	assert_true(n > 0);
	len = record_seal(tx, plain, (size_t)n, rec);
	assert_true(len > 0);
	rekey_frame_sent(from, now);
	assert_int_equal(record_open(rx, rec, (size_t)len, plain), n);
	assert_int_equal(frame_decode(plain, (size_t)n, &g, &used), WM_OK);
	*rc = rekey_on_frame(to, &g, true, now);
	rekey_record_opened(to, now);
	return g.flags;
}

static int c_to_s(struct pair *p, int *rc)
{
	return carry(p->c, p->c_tx, p->s, p->s_rx, p->now, rc);
}

static int s_to_c(struct pair *p, int *rc)
{
	return carry(p->s, p->s_tx, p->c, p->c_rx, p->now, rc);
}

/* One full exchange started by the client's budget; checks every step. */
static void exchange(struct pair *p)
{
	int rc;

	assert_int_equal(rekey_tick(p->c, p->now, p->bytes), WM_OK);
	assert_int_equal(c_to_s(p, &rc), FRAME_REKEY_OFFER);
	assert_int_equal(rc, WM_OK);
	/* Data still flows on the old keys while the OFFER is answered. */
	data_flows(p->c_tx, p->s_rx);
	assert_int_equal(s_to_c(p, &rc), FRAME_REKEY_ANSWER);
	assert_int_equal(rc, WM_OK);
	data_flows(p->s_tx, p->c_rx); /* server -> client on the new key */
	data_flows(p->c_tx, p->s_rx); /* client -> server still on the old */
	assert_int_equal(c_to_s(p, &rc), FRAME_REKEY_DONE);
	assert_int_equal(rc, WM_OK);
	data_flows(p->c_tx, p->s_rx);
	data_flows(p->s_tx, p->c_rx);
	assert_int_equal(s_to_c(p, &rc), 0);
	assert_int_equal(c_to_s(p, &rc), 0);
}

static void test_rekey_exchange_switches_keys(void **state)
{
	struct rekey_config cfg = {1000, 0, 5000};
	struct pair p;
	uint8_t rec[64], back[64];

	(void)state;
	pair_init(&p, &cfg);
	/* Before the budget: nothing to send. */
	p.now += 999;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_OK);
	assert_false(rekey_next_frame(p.c, &(struct frame){0}));
	/* A listener that kept the handshake's client key. */
	struct record_cipher *old_rx = record_cipher_new(p.k_c2s);
	assert_non_null(old_rx);
	int n = record_seal(p.c_tx, (const uint8_t *)"old!", 4, rec);
	assert_int_equal(record_open(p.s_rx, rec, (size_t)n, back), 4);
	assert_int_equal(record_open(old_rx, rec, (size_t)n, back), 4);
	for (int i = 1; i <= 5; i++) {
		p.now += 1000;
		exchange(&p);
		assert_int_equal(rekey_count(p.c), (uint64_t)i);
		assert_int_equal(rekey_count(p.s), (uint64_t)i);
		/* Counters restarted at the switch: data_flows made one record
		 * client -> server and two server -> client since. */
		assert_int_equal(record_cipher_count(p.c_tx), 1);
		assert_int_equal(record_cipher_count(p.s_rx), 1);
		assert_int_equal(record_cipher_count(p.s_tx), 2);
		assert_int_equal(record_cipher_count(p.c_rx), 2);
	}
	/* The old key no longer opens what the client sends. */
	n = record_seal(p.c_tx, (const uint8_t *)"new!", 4, rec);
	assert_true(n > 0);
	assert_int_equal(record_open(old_rx, rec, (size_t)n, back), WM_ERR_CRYPTO);
	record_cipher_free(old_rx);
	pair_free(&p);
}

static void test_rekey_byte_budget_and_floor(void **state)
{
	struct rekey_config cfg = {0, 1000, 5000};
	struct pair p;
	struct frame f;
	int rc;

	(void)state;
	pair_init(&p, &cfg);
	p.now += REKEY_MIN_INTERVAL_MS;
	assert_int_equal(rekey_tick(p.c, p.now, 999), WM_OK);
	assert_false(rekey_next_frame(p.c, &f));
	p.bytes = 1000;
	exchange(&p);
	assert_int_equal(rekey_count(p.c), 1);
	/* Budget spent again at once: the floor holds the next OFFER back. */
	p.bytes += 5000;
	p.now += REKEY_MIN_INTERVAL_MS - 1;
	assert_int_equal(rekey_tick(p.c, p.now, p.bytes), WM_OK);
	assert_false(rekey_next_frame(p.c, &f));
	p.now += 1;
	exchange(&p);
	assert_int_equal(rekey_count(p.s), 2);

	/* The server's own budget: it REQUESTs and the client OFFERs. */
	p.bytes += 1000;
	p.now += REKEY_MIN_INTERVAL_MS;
	assert_int_equal(rekey_tick(p.s, p.now, p.bytes), WM_OK);
	assert_int_equal(s_to_c(&p, &rc), FRAME_REKEY_REQUEST);
	assert_int_equal(rc, WM_OK);
	/* The client starts even though its own budget (bytes unchanged for it)
	 * is not spent. */
	assert_int_equal(rekey_tick(p.c, p.now, p.bytes - 1000), WM_OK);
	assert_true(rekey_next_frame(p.c, &f));
	assert_int_equal(f.flags, FRAME_REKEY_OFFER);
	assert_int_equal(c_to_s(&p, &rc), FRAME_REKEY_OFFER);
	assert_int_equal(s_to_c(&p, &rc), FRAME_REKEY_ANSWER);
	assert_int_equal(c_to_s(&p, &rc), FRAME_REKEY_DONE);
	assert_int_equal(rc, WM_OK);
	assert_int_equal(rekey_count(p.c), 3);
	assert_int_equal(rekey_count(p.s), 3);
	data_flows(p.c_tx, p.s_rx);
	data_flows(p.s_tx, p.c_rx);
	pair_free(&p);
}

/* A frame of this step as the peer would send it. */
static struct frame step(uint8_t s, const uint8_t *key)
{
	struct frame f = {.type = FRAME_REKEY, .flags = s};

	if (key != NULL)
		memcpy(f.u.rekey_key, key, FRAME_REKEY_KEY_LEN);
	return f;
}

static void test_rekey_refuses_out_of_turn(void **state)
{
	struct rekey_config cfg = {1000, 0, 5000};
	uint8_t pub[32], priv[32];
	struct pair p;
	struct frame f;
	int rc;

	(void)state;
	randombytes_buf(priv, sizeof priv);
	crypto_scalarmult_base(pub, priv);
	pair_init(&p, &cfg);
	/* Steps the other role sends. */
	f = step(FRAME_REKEY_REQUEST, NULL);
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	f = step(FRAME_REKEY_OFFER, pub);
	assert_int_equal(rekey_on_frame(p.c, &f, true, p.now), WM_ERR_MALFORMED);
	/* An ANSWER or DONE nobody asked for. */
	f = step(FRAME_REKEY_ANSWER, pub);
	assert_int_equal(rekey_on_frame(p.c, &f, true, p.now), WM_ERR_MALFORMED);
	f = step(FRAME_REKEY_DONE, NULL);
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	/* An unknown step. */
	f = step(9, NULL);
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	/* A low-order public key gives an all-zero secret: refused. */
	f = step(FRAME_REKEY_OFFER, (const uint8_t[32]){0});
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	pair_free(&p);

	pair_init(&p, &cfg);
	p.now += 1000;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_OK);
	/* An ANSWER before our OFFER was sealed cannot answer it. */
	f = step(FRAME_REKEY_ANSWER, pub);
	assert_int_equal(rekey_on_frame(p.c, &f, true, p.now), WM_ERR_MALFORMED);
	pair_free(&p);

	pair_init(&p, &cfg);
	p.now += 1000;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_OK);
	assert_int_equal(c_to_s(&p, &rc), FRAME_REKEY_OFFER);
	/* A second OFFER while one is outstanding; DONE before the ANSWER left. */
	f = step(FRAME_REKEY_DONE, NULL);
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	f = step(FRAME_REKEY_OFFER, pub);
	assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_ERR_MALFORMED);
	/* ANSWER not last in its record. */
	assert_true(rekey_next_frame(p.s, &f));
	assert_int_equal(rekey_on_frame(p.c, &f, false, p.now), WM_ERR_MALFORMED);
	/* A REQUEST while the client's exchange is outstanding is ignored. */
	f = step(FRAME_REKEY_REQUEST, NULL);
	assert_int_equal(rekey_on_frame(p.c, &f, true, p.now), WM_OK);
	assert_false(rekey_next_frame(p.c, &f));
	pair_free(&p);
}

static void test_rekey_offer_flood_refused(void **state)
{
	/* Budgets off: only the peer's OFFERs start exchanges. */
	struct rekey_config cfg = {0, 0, 5000};
	struct pair p;
	int rc, refused_at = -1;

	(void)state;
	pair_init(&p, &cfg);
	/* A hostile client ignores its floor and rekeys back to back, all in the
	 * same millisecond: the burst is answered, the one after is refused
	 * before any X25519. */
	for (int i = 0; i < REKEY_PEER_BURST + 2; i++) {
		uint8_t priv[32], pub[32];
		struct frame f;

		randombytes_buf(priv, sizeof priv);
		crypto_scalarmult_base(pub, priv);
		f = step(FRAME_REKEY_OFFER, pub);
		rc = rekey_on_frame(p.s, &f, true, p.now);
		if (rc != WM_OK) {
			assert_int_equal(rc, WM_ERR_LIMIT);
			refused_at = i;
			break;
		}
		assert_true(rekey_next_frame(p.s, &f));
		assert_int_equal(f.flags, FRAME_REKEY_ANSWER);
		rekey_frame_sent(p.s, p.now);
		f = step(FRAME_REKEY_DONE, NULL);
		assert_int_equal(rekey_on_frame(p.s, &f, true, p.now), WM_OK);
		rekey_record_opened(p.s, p.now);
	}
	assert_int_equal(refused_at, REKEY_PEER_BURST);
	assert_int_equal(rekey_count(p.s), REKEY_PEER_BURST);
	pair_free(&p);

	/* At the allowed rate the server answers indefinitely. */
	pair_init(&p, &cfg);
	for (int i = 0; i < 3 * REKEY_PEER_BURST; i++) {
		p.now += REKEY_PEER_INTERVAL_MS * 2;
		rekey_on_frame(p.c,
			       &(struct frame){.type = FRAME_REKEY, .flags = FRAME_REKEY_REQUEST},
			       true, p.now);
		exchange(&p);
	}
	assert_int_equal(rekey_count(p.s), 3 * REKEY_PEER_BURST);
	pair_free(&p);
}

static void test_rekey_unanswered_times_out(void **state)
{
	struct rekey_config cfg = {1000, 0, 5000};
	struct pair p;
	int rc;

	(void)state;
	pair_init(&p, &cfg);
	p.now += 1000;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_OK);
	assert_int_equal(c_to_s(&p, &rc), FRAME_REKEY_OFFER);
	assert_string_equal(rekey_state_name(p.c), "offered, waiting for ANSWER");
	assert_string_equal(rekey_state_name(p.s), "answered, waiting for DONE");
	/* The server never answers. */
	p.now += 5000;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_OK);
	p.now += 1;
	assert_int_equal(rekey_tick(p.c, p.now, 0), WM_ERR_LIMIT);
	/* The server's ANSWER is never followed by a DONE. */
	assert_int_equal(s_to_c(&p, &rc), FRAME_REKEY_ANSWER);
	assert_int_equal(rekey_tick(p.s, p.now + 5001, 0), WM_ERR_LIMIT);
	pair_free(&p);

	/* A REQUEST the client never follows. */
	pair_init(&p, &cfg);
	p.now += 1000;
	assert_int_equal(rekey_tick(p.s, p.now, 0), WM_OK);
	assert_true(rekey_next_frame(p.s, &(struct frame){0}));
	assert_int_equal(rekey_tick(p.s, p.now + 5001, 0), WM_ERR_LIMIT);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rekey_exchange_switches_keys),
	    cmocka_unit_test(test_rekey_byte_budget_and_floor),
	    cmocka_unit_test(test_rekey_refuses_out_of_turn),
	    cmocka_unit_test(test_rekey_offer_flood_refused),
	    cmocka_unit_test(test_rekey_unanswered_times_out),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
