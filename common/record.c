/*
 * AEAD records (u16 length | ChaCha20-Poly1305 IETF ciphertext) with a
 * per-direction counter nonce. Sealing and opening only; framing the byte
 * stream and I/O belong to the tunnel.
 */
#include "wanmux/record.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"

/* Lives in sodium_malloc memory: the key is guarded and wiped on free. */
struct record_cipher {
	uint8_t key[RECORD_KEY_LEN];
	uint64_t counter;
	uint64_t limit; /* records this key may seal or open */
	/*
	 * Set after a record failed to open. The stream position is lost then,
	 * and refusing everything afterwards keeps a peer from probing.
	 */
	bool failed;
};

struct record_cipher *record_cipher_new(const uint8_t key[RECORD_KEY_LEN])
{
	struct record_cipher *c;

	if (key == NULL || sodium_init() < 0)
		return NULL;
	c = sodium_malloc(sizeof *c);
	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof *c);
	memcpy(c->key, key, RECORD_KEY_LEN);
	c->limit = RECORD_MAX_RECORDS;
	return c;
}

int record_cipher_rekey(struct record_cipher *c, const uint8_t key[RECORD_KEY_LEN])
{
	if (c == NULL || key == NULL)
		return WM_ERR_STATE;
	/* The old key goes before anything else: nothing may open old records now. */
	sodium_memzero(c->key, sizeof c->key);
	memcpy(c->key, key, RECORD_KEY_LEN);
	c->counter = 0;
	return WM_OK;
}

void record_cipher_set_limit(struct record_cipher *c, uint64_t max_records)
{
	if (c != NULL && max_records < RECORD_MAX_RECORDS)
		c->limit = max_records;
}

uint64_t record_cipher_count(const struct record_cipher *c)
{
	return c != NULL ? c->counter : 0;
}

void record_cipher_free(struct record_cipher *c)
{
	if (c == NULL)
		return;
	sodium_free(c);
}

static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

int record_seal(struct record_cipher *c, const uint8_t *plain, size_t plain_len, uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	size_t ct_len = plain_len + RECORD_TAG_LEN;
	unsigned long long clen;

	if (c == NULL || plain == NULL || out == NULL || plain_len == 0 ||
	    plain_len > RECORD_PLAINTEXT_MAX)
		return WM_ERR_RANGE;
	/* Far below UINT64_MAX: the counter can never wrap to a used nonce, and a
	 * tunnel whose rekey did not happen dies here instead. */
	if (c->counter >= c->limit)
		return WM_ERR_CRYPTO;
	bytes_store_be16(out, (uint16_t)ct_len);
	make_nonce(nonce, c->counter);
	/* libsodium allows out + 2 == plain: that is sealing in place. */
	crypto_aead_chacha20poly1305_ietf_encrypt(out + RECORD_HEADER_LEN, &clen, plain, plain_len,
						  out, RECORD_HEADER_LEN, NULL, nonce, c->key);
	c->counter++;
	return (int)(RECORD_HEADER_LEN + ct_len);
}

int record_peek(const uint8_t *buf, size_t len)
{
	size_t ct_len;

	if (buf == NULL || len < RECORD_HEADER_LEN)
		return WM_ERR_AGAIN;
	ct_len = bytes_load_be16(buf);
	if (ct_len < RECORD_TAG_LEN)
		return WM_ERR_MALFORMED;
	return (int)(RECORD_HEADER_LEN + ct_len);
}

int record_open(struct record_cipher *c, const uint8_t *rec, size_t rec_len, uint8_t *plain)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	unsigned long long plen;

	if (c == NULL || c->failed || rec == NULL || plain == NULL)
		return WM_ERR_CRYPTO;
	/* rec_len must be what record_peek reported for this header. */
	if (rec_len < RECORD_OVERHEAD || record_peek(rec, rec_len) != (int)rec_len) {
		c->failed = true;
		return WM_ERR_MALFORMED;
	}
	if (c->counter >= c->limit) {
		c->failed = true;
		return WM_ERR_CRYPTO;
	}
	make_nonce(nonce, c->counter);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, rec + RECORD_HEADER_LEN,
						      rec_len - RECORD_HEADER_LEN, rec,
						      RECORD_HEADER_LEN, nonce, c->key) != 0) {
		c->failed = true;
		return WM_ERR_CRYPTO;
	}
	c->counter++;
	return (int)plen;
}
