/*
 * Tests for AEAD records: round trips at the size limits, in-place use, and
 * refusal of tampered, replayed, reordered, dropped and foreign records.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/record.h"

static uint8_t key_a[RECORD_KEY_LEN];
static uint8_t key_b[RECORD_KEY_LEN];

struct ends {
	struct record_cipher *tx, *rx;
};

static struct ends ends_new(const uint8_t *tx_key, const uint8_t *rx_key)
{
	struct ends e;

	e.tx = record_cipher_new(tx_key);
	e.rx = record_cipher_new(rx_key);
	assert_non_null(e.tx);
	assert_non_null(e.rx);
	return e;
}

static void ends_free(struct ends *e)
{
	record_cipher_free(e->tx);
	record_cipher_free(e->rx);
}

static void test_record_round_trip_sizes(void **state)
{
	static const size_t sizes[] = {
	    1, 2, 15, 16, 17, 1000, 16384, RECORD_PLAINTEXT_MAX - 1, RECORD_PLAINTEXT_MAX};
	uint8_t *plain = malloc(RECORD_PLAINTEXT_MAX);
	uint8_t *rec = malloc(RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD);
	uint8_t *back = malloc(RECORD_PLAINTEXT_MAX);
	struct ends e = ends_new(key_a, key_a);
	size_t i;

	(void)state;
	assert_non_null(plain);
	assert_non_null(rec);
	assert_non_null(back);
	randombytes_buf(plain, RECORD_PLAINTEXT_MAX);
	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		size_t len = sizes[i];
		int n = record_seal(e.tx, plain, len, rec);

		assert_int_equal(n, (int)(len + RECORD_OVERHEAD));
		assert_int_equal(rec[0], (len + RECORD_TAG_LEN) >> 8);
		assert_int_equal(rec[1], (len + RECORD_TAG_LEN) & 0xff);
		assert_int_equal(record_peek(rec, (size_t)n), n);
		/* the ciphertext does not show the plaintext */
		assert_memory_not_equal(rec + RECORD_HEADER_LEN, plain, len < 16 ? len : 16);
		assert_int_equal(record_open(e.rx, rec, (size_t)n, back), (int)len);
		assert_memory_equal(back, plain, len);
	}
	ends_free(&e);
	free(plain);
	free(rec);
	free(back);
}

/* Known answer: the first record is ChaCha20-Poly1305 IETF, nonce 0, AD = header. */
static void test_record_wire_format(void **state)
{
	uint8_t rec[64], expect[64], nonce[12] = {0};
	unsigned long long clen;
	struct ends e = ends_new(key_a, key_a);
	int n;

	(void)state;
	n = record_seal(e.tx, (const uint8_t *)"hello", 5, rec);
	assert_int_equal(n, 2 + 5 + 16);
	expect[0] = 0;
	expect[1] = 21;
	crypto_aead_chacha20poly1305_ietf_encrypt(expect + 2, &clen, (const uint8_t *)"hello", 5,
						  expect, 2, NULL, nonce, key_a);
	assert_memory_equal(rec, expect, (size_t)n);
	/* the second record uses counter 1, little-endian after 4 zero bytes */
	n = record_seal(e.tx, (const uint8_t *)"hello", 5, rec);
	nonce[4] = 1;
	crypto_aead_chacha20poly1305_ietf_encrypt(expect + 2, &clen, (const uint8_t *)"hello", 5,
						  expect, 2, NULL, nonce, key_a);
	assert_memory_equal(rec, expect, (size_t)n);
	ends_free(&e);
}

static void test_record_in_place(void **state)
{
	uint8_t buf[RECORD_HEADER_LEN + 300 + RECORD_TAG_LEN], orig[300];
	struct ends e = ends_new(key_a, key_a);
	int n;

	(void)state;
	randombytes_buf(orig, sizeof orig);
	memcpy(buf + RECORD_HEADER_LEN, orig, sizeof orig);
	n = record_seal(e.tx, buf + RECORD_HEADER_LEN, sizeof orig, buf);
	assert_int_equal(n, (int)sizeof buf);
	assert_memory_not_equal(buf + RECORD_HEADER_LEN, orig, sizeof orig);
	assert_int_equal(record_open(e.rx, buf, (size_t)n, buf + RECORD_HEADER_LEN),
			 (int)sizeof orig);
	assert_memory_equal(buf + RECORD_HEADER_LEN, orig, sizeof orig);
	ends_free(&e);
}

static void test_record_tampered_every_byte(void **state)
{
	uint8_t rec[2 + 40 + 16], bad[sizeof rec], back[64], plain[40];
	struct ends e = ends_new(key_a, key_a);
	size_t i;
	int n;

	(void)state;
	randombytes_buf(plain, sizeof plain);
	n = record_seal(e.tx, plain, sizeof plain, rec);
	assert_int_equal(n, (int)sizeof rec);
	ends_free(&e);
	for (i = 0; i < sizeof rec; i++) {
		int rc;

		memcpy(bad, rec, sizeof rec);
		bad[i] ^= 0x40;
		e = ends_new(key_a, key_a);
		if (i < RECORD_HEADER_LEN) {
			/* altered length: the peer would frame a different record */
			int len = record_peek(bad, sizeof bad);

			assert_int_not_equal(len, n);
			rc = record_open(e.rx, bad, sizeof bad, back);
			assert_int_equal(rc, WM_ERR_MALFORMED);
		} else {
			rc = record_open(e.rx, bad, sizeof bad, back);
			assert_int_equal(rc, WM_ERR_CRYPTO);
		}
		ends_free(&e);
	}
}

/* A length field rewritten consistently (shorter record, AD changed) fails the tag. */
static void test_record_tampered_length_consistent(void **state)
{
	uint8_t rec[2 + 40 + 16], back[64], plain[40] = {0};
	struct ends e = ends_new(key_a, key_a);
	int n;

	(void)state;
	n = record_seal(e.tx, plain, sizeof plain, rec);
	rec[1] = (uint8_t)(rec[1] - 1); /* claim one byte less, drop the last byte */
	assert_int_equal(record_peek(rec, (size_t)n), n - 1);
	assert_int_equal(record_open(e.rx, rec, (size_t)n - 1, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_replayed(void **state)
{
	uint8_t r0[64], back[64];
	struct ends e = ends_new(key_a, key_a);
	int n;

	(void)state;
	n = record_seal(e.tx, (const uint8_t *)"once", 4, r0);
	assert_int_equal(record_open(e.rx, r0, (size_t)n, back), 4);
	assert_int_equal(record_open(e.rx, r0, (size_t)n, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_reordered(void **state)
{
	uint8_t r0[64], r1[64], back[64];
	struct ends e = ends_new(key_a, key_a);
	int n0, n1;

	(void)state;
	n0 = record_seal(e.tx, (const uint8_t *)"first", 5, r0);
	n1 = record_seal(e.tx, (const uint8_t *)"second", 6, r1);
	assert_int_equal(record_open(e.rx, r1, (size_t)n1, back), WM_ERR_CRYPTO);
	/* after a failure the cipher is dead, even for the right record */
	assert_int_equal(record_open(e.rx, r0, (size_t)n0, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_dropped(void **state)
{
	uint8_t r0[64], r1[64], r2[64], back[64];
	struct ends e = ends_new(key_a, key_a);
	int n0, n1, n2;

	(void)state;
	n0 = record_seal(e.tx, (const uint8_t *)"a", 1, r0);
	n1 = record_seal(e.tx, (const uint8_t *)"b", 1, r1);
	n2 = record_seal(e.tx, (const uint8_t *)"c", 1, r2);
	(void)n1;
	assert_int_equal(record_open(e.rx, r0, (size_t)n0, back), 1);
	assert_int_equal(back[0], 'a');
	assert_int_equal(record_open(e.rx, r2, (size_t)n2, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_wrong_key(void **state)
{
	uint8_t r0[64], back[64];
	struct ends e = ends_new(key_a, key_b);
	int n;

	(void)state;
	n = record_seal(e.tx, (const uint8_t *)"secret", 6, r0);
	assert_int_equal(record_open(e.rx, r0, (size_t)n, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_peek_cases(void **state)
{
	static const struct {
		uint8_t bytes[2];
		size_t len;
		int expect;
	} cases[] = {
	    {{0, 0}, 0, WM_ERR_AGAIN},
	    {{0, 0}, 1, WM_ERR_AGAIN},
	    {{0, 0}, 2, WM_ERR_MALFORMED},
	    {{0, 15}, 2, WM_ERR_MALFORMED},
	    {{0, 16}, 2, 18},
	    {{0, 17}, 2, 19},
	    {{1, 0}, 2, 258},
	    {{0xff, 0xff}, 2, 65537},
	    {{0xff, 0xff}, 1, WM_ERR_AGAIN},
	};
	size_t i;

	(void)state;
	assert_int_equal(record_peek(NULL, 0), WM_ERR_AGAIN);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(record_peek(cases[i].bytes, cases[i].len), cases[i].expect);
}

static void test_record_seal_size_limits(void **state)
{
	static uint8_t big[RECORD_PLAINTEXT_MAX + 1 + RECORD_OVERHEAD];
	uint8_t back[64];
	struct ends e = ends_new(key_a, key_a);
	int n;

	(void)state;
	assert_int_equal(record_seal(e.tx, big, 0, big), WM_ERR_RANGE);
	assert_int_equal(record_seal(e.tx, big, RECORD_PLAINTEXT_MAX + 1, big), WM_ERR_RANGE);
	assert_int_equal(record_seal(e.tx, big, (size_t)-1, big), WM_ERR_RANGE);
	/* refused seals use no nonce: the next record still opens as counter 0 */
	n = record_seal(e.tx, (const uint8_t *)"x", 1, big);
	assert_int_equal(record_open(e.rx, big, (size_t)n, back), 1);
	ends_free(&e);
}

static void test_record_open_bad_lengths(void **state)
{
	uint8_t rec[64], back[64];
	struct ends e;
	int n;

	(void)state;
	/* shorter than header + tag */
	e = ends_new(key_a, key_a);
	memset(rec, 0, sizeof rec);
	assert_int_equal(record_open(e.rx, rec, RECORD_OVERHEAD - 1, back), WM_ERR_MALFORMED);
	ends_free(&e);
	/* rec_len disagreeing with the header */
	e = ends_new(key_a, key_a);
	n = record_seal(e.tx, (const uint8_t *)"abc", 3, rec);
	assert_int_equal(record_open(e.rx, rec, (size_t)n + 1, back), WM_ERR_MALFORMED);
	ends_free(&e);
	/* a 16-byte ciphertext (empty plaintext) that does not authenticate */
	e = ends_new(key_a, key_a);
	rec[0] = 0;
	rec[1] = 16;
	memset(rec + 2, 0, 16);
	assert_int_equal(record_open(e.rx, rec, 18, back), WM_ERR_CRYPTO);
	ends_free(&e);
}

static void test_record_many_in_sequence(void **state)
{
	uint8_t rec[300], back[300], plain[280];
	struct ends e = ends_new(key_b, key_b);
	int i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		size_t len = 1 + (size_t)(i % 280);
		int n;

		memset(plain, i & 0xff, len);
		n = record_seal(e.tx, plain, len, rec);
		assert_int_equal(record_open(e.rx, rec, (size_t)n, back), (int)len);
		assert_memory_equal(back, plain, len);
	}
	ends_free(&e);
}

/* Seals len bytes of 'x' with tx; returns the record length. */
static int seal_x(struct record_cipher *tx, uint8_t *rec, size_t len)
{
	uint8_t plain[64];

	assert_true(len <= sizeof plain);
	memset(plain, 'x', len);
	return record_seal(tx, plain, len, rec);
}

static void test_record_rekey_switches_key(void **state)
{
	uint8_t rec[100], back[100];
	struct ends e = ends_new(key_a, key_a);
	struct record_cipher *old_rx = record_cipher_new(key_a);
	struct record_cipher *fresh_b = record_cipher_new(key_b);
	int n, i;

	(void)state;
	assert_non_null(old_rx);
	assert_non_null(fresh_b);
	for (i = 0; i < 3; i++) {
		n = seal_x(e.tx, rec, 10);
		assert_int_equal(record_open(e.rx, rec, (size_t)n, back), 10);
		assert_int_equal(record_open(old_rx, rec, (size_t)n, back), 10);
	}
	assert_int_equal(record_cipher_count(e.tx), 3);
	assert_int_equal(record_cipher_rekey(e.tx, key_b), WM_OK);
	assert_int_equal(record_cipher_rekey(e.rx, key_b), WM_OK);
	assert_int_equal(record_cipher_count(e.tx), 0);
	assert_int_equal(record_cipher_count(e.rx), 0);

	/* The first new record uses nonce 0 under the new key: a fresh cipher
	 * for key_b opens it, the old key (at its next counter) does not. */
	n = seal_x(e.tx, rec, 20);
	assert_int_equal(record_open(fresh_b, rec, (size_t)n, back), 20);
	assert_int_equal(record_open(e.rx, rec, (size_t)n, back), 20);
	assert_int_equal(record_open(old_rx, rec, (size_t)n, back), WM_ERR_CRYPTO);

	/* A record still sealed with the old key does not open after the switch. */
	struct record_cipher *old_tx = record_cipher_new(key_a);
	assert_non_null(old_tx);
	n = seal_x(old_tx, rec, 5);
	n = seal_x(old_tx, rec, 5); /* counter 1, where e.rx now is */
	assert_int_equal(record_open(e.rx, rec, (size_t)n, back), WM_ERR_CRYPTO);
	/* ... and the failure sticks across a rekey. */
	assert_int_equal(record_cipher_rekey(e.rx, key_a), WM_OK);
	assert_int_equal(record_open(e.rx, rec, (size_t)n, back), WM_ERR_CRYPTO);

	assert_int_equal(record_cipher_rekey(NULL, key_a), WM_ERR_STATE);
	assert_int_equal(record_cipher_rekey(e.tx, NULL), WM_ERR_STATE);
	record_cipher_free(old_tx);
	record_cipher_free(old_rx);
	record_cipher_free(fresh_b);
	ends_free(&e);
}

static void test_record_limit_refuses_until_rekey(void **state)
{
	uint8_t rec[100], back[100];
	struct ends e = ends_new(key_a, key_a);
	int n, i;

	(void)state;
	record_cipher_set_limit(e.tx, 3);
	for (i = 0; i < 3; i++) {
		n = seal_x(e.tx, rec, 8);
		assert_true(n > 0);
		assert_int_equal(record_open(e.rx, rec, (size_t)n, back), 8);
	}
	/* The fourth seal is refused and does not move the counter. */
	assert_int_equal(seal_x(e.tx, rec, 8), WM_ERR_CRYPTO);
	assert_int_equal(record_cipher_count(e.tx), 3);
	assert_int_equal(record_cipher_rekey(e.tx, key_b), WM_OK);
	assert_true(seal_x(e.tx, rec, 8) > 0);

	/* The receiver refuses past its limit even for a valid record. */
	struct record_cipher *tx2 = record_cipher_new(key_a);
	struct record_cipher *rx1 = record_cipher_new(key_a);
	assert_non_null(tx2);
	assert_non_null(rx1);
	record_cipher_set_limit(rx1, 1);
	n = seal_x(tx2, rec, 8);
	assert_int_equal(record_open(rx1, rec, (size_t)n, back), 8);
	n = seal_x(tx2, rec, 8);
	assert_int_equal(record_open(rx1, rec, (size_t)n, back), WM_ERR_CRYPTO);
	record_cipher_free(tx2);
	record_cipher_free(rx1);

	/* Raising beyond the hard limit is ignored. */
	struct record_cipher *c = record_cipher_new(key_a);
	assert_non_null(c);
	record_cipher_set_limit(c, UINT64_MAX);
	record_cipher_set_limit(NULL, 1);
	assert_int_equal(record_cipher_count(NULL), 0);
	record_cipher_free(c);
	ends_free(&e);
}

static void test_record_null_is_safe(void **state)
{
	uint8_t b[32];

	(void)state;
	record_cipher_free(NULL);
	assert_null(record_cipher_new(NULL));
	assert_int_equal(record_seal(NULL, b, 1, b), WM_ERR_RANGE);
	assert_int_equal(record_open(NULL, b, 18, b), WM_ERR_CRYPTO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record_round_trip_sizes),
	    cmocka_unit_test(test_record_wire_format),
	    cmocka_unit_test(test_record_in_place),
	    cmocka_unit_test(test_record_tampered_every_byte),
	    cmocka_unit_test(test_record_tampered_length_consistent),
	    cmocka_unit_test(test_record_replayed),
	    cmocka_unit_test(test_record_reordered),
	    cmocka_unit_test(test_record_dropped),
	    cmocka_unit_test(test_record_wrong_key),
	    cmocka_unit_test(test_record_peek_cases),
	    cmocka_unit_test(test_record_seal_size_limits),
	    cmocka_unit_test(test_record_open_bad_lengths),
	    cmocka_unit_test(test_record_many_in_sequence),
	    cmocka_unit_test(test_record_rekey_switches_key),
	    cmocka_unit_test(test_record_limit_refuses_until_rekey),
	    cmocka_unit_test(test_record_null_is_safe),
	};

	if (sodium_init() < 0)
		return 1;
	memset(key_a, 0xa5, sizeof key_a);
	memset(key_b, 0x5a, sizeof key_b);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
