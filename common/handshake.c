/*
 * Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b (Noise spec rev 34) on libsodium
 * primitives, plus the wanmux framing of msg1 ("WMX1" magic, mac1 trailer).
 * Pure state machine: no sockets, clocks or authorization policy here.
 */
#include "wanmux/handshake.h"

#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/err.h"

#define NOISE_PROTOCOL_NAME "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b"
#define NOISE_HASHLEN 64
#define NOISE_BLOCKLEN 128
#define NOISE_DHLEN 32
#define NOISE_TAGLEN 16
#define DEFAULT_PROLOGUE "wanmux/1"
#define MSG1_MAGIC "WMX1"
#define MSG1_MAGIC_MAC2 "WMX2" /* msg1 followed by mac2 */
#define MSG1_MAGIC_LEN 4
#define COOKIE_MAGIC "WMC1"
#define COOKIE_NONCE_LEN crypto_aead_xchacha20poly1305_ietf_NPUBBYTES

/* Noise part of msg1 without payload: e (32) | enc s (48) | payload tag (16). */
#define NOISE_MSG1_FIXED (NOISE_DHLEN + NOISE_DHLEN + NOISE_TAGLEN + NOISE_TAGLEN)
/* Noise part of msg2 without payload: e (32) | payload tag (16). */
#define NOISE_MSG2_FIXED (NOISE_DHLEN + NOISE_TAGLEN)

enum hs_state {
	HS_INIT_READY,	   /* initiator: may write msg1 */
	HS_INIT_WAIT_MSG2, /* initiator: msg1 sent, expecting msg2 */
	HS_RESP_WAIT_MSG1, /* responder: expecting msg1 */
	HS_RESP_READY,	   /* responder: msg1 read, may write msg2 */
	HS_DONE,	   /* transport keys available */
	HS_FAILED,	   /* an error happened; nothing more is accepted */
};

/*
 * The whole object lives in sodium_malloc memory (guard pages, wiped on free),
 * so every secret field below is covered without separate allocations.
 */
struct handshake {
	bool initiator;
	bool raw_noise;
	enum hs_state state;

	uint8_t s_priv[NOISE_DHLEN];
	uint8_t s_pub[NOISE_DHLEN];
	uint8_t e_priv[NOISE_DHLEN];
	uint8_t e_pub[NOISE_DHLEN];
	uint8_t rs[NOISE_DHLEN]; /* remote static: pinned (initiator) or learned */
	uint8_t re[NOISE_DHLEN];
	uint8_t psk[32];
	uint8_t mac1_key[32];
	uint8_t cookie_key[32];		      /* initiator: opens cookie replies */
	uint8_t last_mac1[HANDSHAKE_MAC_LEN]; /* initiator: mac1 of the msg1 sent */
	uint8_t cookie[HANDSHAKE_COOKIE_LEN]; /* initiator: mac2 key, if has_cookie */
	bool has_cookie;

	/* SymmetricState / CipherState */
	uint8_t ck[NOISE_HASHLEN];
	uint8_t h[NOISE_HASHLEN];
	uint8_t k[32];
	bool has_k;
	uint64_t n;

	uint8_t send_key[HANDSHAKE_KEY_LEN];
	uint8_t recv_key[HANDSHAKE_KEY_LEN];
	uint8_t rekey_ck[NOISE_HASHLEN]; /* Split()'s third output, for in-band rekeys */
};

/* HMAC (RFC 2104) over BLAKE2b-512; key <= BLOCKLEN, message in two parts. */
static void hmac_blake2b(uint8_t out[NOISE_HASHLEN], const uint8_t *key, size_t key_len,
			 const uint8_t *m1, size_t m1_len, const uint8_t *m2, size_t m2_len)
{
	uint8_t pad[NOISE_BLOCKLEN];
	uint8_t inner[NOISE_HASHLEN];
	crypto_generichash_state st;
	size_t i;

	for (i = 0; i < sizeof pad; i++)
		pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x36);
	crypto_generichash_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_update(&st, pad, sizeof pad);
	if (m1_len > 0)
		crypto_generichash_update(&st, m1, m1_len);
	if (m2_len > 0)
		crypto_generichash_update(&st, m2, m2_len);
	crypto_generichash_final(&st, inner, sizeof inner);

	for (i = 0; i < sizeof pad; i++)
		pad[i] = (uint8_t)((i < key_len ? key[i] : 0) ^ 0x5c);
	crypto_generichash_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_update(&st, pad, sizeof pad);
	crypto_generichash_update(&st, inner, sizeof inner);
	crypto_generichash_final(&st, out, NOISE_HASHLEN);

	sodium_memzero(pad, sizeof pad);
	sodium_memzero(inner, sizeof inner);
	sodium_memzero(&st, sizeof st);
}

/* Noise HKDF (section 4.3): two or three outputs of HASHLEN bytes. */
static void noise_hkdf(const uint8_t ck[NOISE_HASHLEN], const uint8_t *ikm, size_t ikm_len,
		       uint8_t out1[NOISE_HASHLEN], uint8_t out2[NOISE_HASHLEN], uint8_t *out3)
{
	uint8_t temp_key[NOISE_HASHLEN];
	const uint8_t one = 0x01, two = 0x02, three = 0x03;

	hmac_blake2b(temp_key, ck, NOISE_HASHLEN, ikm, ikm_len, NULL, 0);
	hmac_blake2b(out1, temp_key, sizeof temp_key, &one, 1, NULL, 0);
	hmac_blake2b(out2, temp_key, sizeof temp_key, out1, NOISE_HASHLEN, &two, 1);
	if (out3 != NULL)
		hmac_blake2b(out3, temp_key, sizeof temp_key, out2, NOISE_HASHLEN, &three, 1);
	sodium_memzero(temp_key, sizeof temp_key);
}

static void mix_hash(struct handshake *hs, const uint8_t *data, size_t len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_update(&st, hs->h, NOISE_HASHLEN);
	if (len > 0)
		crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, hs->h, NOISE_HASHLEN);
}

static void mix_key(struct handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t temp_k[NOISE_HASHLEN];

	noise_hkdf(hs->ck, ikm, len, hs->ck, temp_k, NULL);
	memcpy(hs->k, temp_k, sizeof hs->k); /* HASHLEN 64: truncate to 32 */
	hs->has_k = true;
	hs->n = 0;
	sodium_memzero(temp_k, sizeof temp_k);
}

static void mix_key_and_hash(struct handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t temp_h[NOISE_HASHLEN];
	uint8_t temp_k[NOISE_HASHLEN];

	noise_hkdf(hs->ck, ikm, len, hs->ck, temp_h, temp_k);
	mix_hash(hs, temp_h, sizeof temp_h);
	memcpy(hs->k, temp_k, sizeof hs->k);
	hs->has_k = true;
	hs->n = 0;
	sodium_memzero(temp_h, sizeof temp_h);
	sodium_memzero(temp_k, sizeof temp_k);
}

static void make_nonce(uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

/* EncryptAndHash; every call site in this pattern has a key. out gets len + 16. */
static void encrypt_and_hash(struct handshake *hs, const uint8_t *plain, size_t len, uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	unsigned long long clen;

	make_nonce(nonce, hs->n++);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, plain, len, hs->h, NOISE_HASHLEN,
						  NULL, nonce, hs->k);
	mix_hash(hs, out, len + NOISE_TAGLEN);
}

/* DecryptAndHash of ct (len >= 16 bytes) into out (len - 16 bytes). */
static int decrypt_and_hash(struct handshake *hs, const uint8_t *ct, size_t len, uint8_t *out)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_ietf_NPUBBYTES];
	unsigned long long plen;

	make_nonce(nonce, hs->n++);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, ct, len, hs->h,
						      NOISE_HASHLEN, nonce, hs->k) != 0)
		return WM_ERR_CRYPTO;
	mix_hash(hs, ct, len);
	return 0;
}

/* DH then MixKey; an all-zero shared secret (low-order point) is refused. */
static int mix_dh(struct handshake *hs, const uint8_t priv[NOISE_DHLEN],
		  const uint8_t pub[NOISE_DHLEN])
{
	uint8_t shared[NOISE_DHLEN];
	int rc = 0;

	if (crypto_scalarmult_curve25519(shared, priv, pub) != 0 ||
	    sodium_is_zero(shared, sizeof shared))
		rc = WM_ERR_CRYPTO;
	else
		mix_key(hs, shared, sizeof shared);
	sodium_memzero(shared, sizeof shared);
	return rc;
}

/* InitializeSymmetric + prologue + IK pre-message (responder static). */
static void symmetric_init(struct handshake *hs, const uint8_t *prologue, size_t len)
{
	memset(hs->h, 0, sizeof hs->h);
	memcpy(hs->h, NOISE_PROTOCOL_NAME, sizeof NOISE_PROTOCOL_NAME - 1);
	memcpy(hs->ck, hs->h, sizeof hs->ck);
	sodium_memzero(hs->k, sizeof hs->k);
	hs->has_k = false;
	hs->n = 0;
	mix_hash(hs, prologue, len);
	mix_hash(hs, hs->initiator ? hs->rs : hs->s_pub, NOISE_DHLEN);
}

static void wipe_secrets(struct handshake *hs)
{
	sodium_memzero(hs->s_priv, sizeof hs->s_priv);
	sodium_memzero(hs->e_priv, sizeof hs->e_priv);
	sodium_memzero(hs->psk, sizeof hs->psk);
	sodium_memzero(hs->ck, sizeof hs->ck);
	sodium_memzero(hs->k, sizeof hs->k);
	hs->has_k = false;
}

static int fail(struct handshake *hs, int err)
{
	wipe_secrets(hs);
	sodium_memzero(hs->send_key, sizeof hs->send_key);
	sodium_memzero(hs->recv_key, sizeof hs->recv_key);
	sodium_memzero(hs->rekey_ck, sizeof hs->rekey_ck);
	hs->state = HS_FAILED;
	return err;
}

/* Split(): initiator sends with the first key, responder with the second. */
static void finish(struct handshake *hs)
{
	uint8_t t1[NOISE_HASHLEN], t2[NOISE_HASHLEN];

	/* A third output does not change the first two (they stay Noise's
	 * Split()) and is independent of the transport keys. */
	noise_hkdf(hs->ck, NULL, 0, t1, t2, hs->rekey_ck);
	memcpy(hs->send_key, hs->initiator ? t1 : t2, HANDSHAKE_KEY_LEN);
	memcpy(hs->recv_key, hs->initiator ? t2 : t1, HANDSHAKE_KEY_LEN);
	sodium_memzero(t1, sizeof t1);
	sodium_memzero(t2, sizeof t2);
	wipe_secrets(hs);
	hs->state = HS_DONE;
}

static void compute_mac1(const uint8_t key[32], const uint8_t *msg, size_t len,
			 uint8_t mac[HANDSHAKE_MAC_LEN])
{
	crypto_generichash(mac, HANDSHAKE_MAC_LEN, msg, len, key, 32);
}

/* mac2 and cookies: BLAKE2b-128 keyed with a 16-byte key. */
static void compute_mac(const uint8_t key[HANDSHAKE_COOKIE_LEN], const uint8_t *msg, size_t len,
			uint8_t mac[HANDSHAKE_MAC2_LEN])
{
	crypto_generichash(mac, HANDSHAKE_MAC2_LEN, msg, len, key, HANDSHAKE_COOKIE_LEN);
}

/* Length of the trailer after the Noise part: mac1, or mac1 and mac2. 0
 * when msg has neither magic. */
static size_t msg1_trailer(const uint8_t *msg, size_t len)
{
	if (len < MSG1_MAGIC_LEN)
		return 0;
	if (memcmp(msg, MSG1_MAGIC, MSG1_MAGIC_LEN) == 0)
		return HANDSHAKE_MAC_LEN;
	if (memcmp(msg, MSG1_MAGIC_MAC2, MSG1_MAGIC_LEN) == 0)
		return HANDSHAKE_MAC_LEN + HANDSHAKE_MAC2_LEN;
	return 0;
}

/* BLAKE2b-256(label || responder_pub || psk or 32 zero bytes): the keys of
 * mac1 and of the cookie reply, bound to the server key and the PSK. */
static void labelled_key(const char *label, const uint8_t responder_pub[HANDSHAKE_KEY_LEN],
			 const uint8_t *psk, uint8_t key_out[32])
{
	static const uint8_t zeros[32];
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, responder_pub, HANDSHAKE_KEY_LEN);
	crypto_generichash_update(&st, psk != NULL ? psk : zeros, 32);
	crypto_generichash_final(&st, key_out, 32);
	sodium_memzero(&st, sizeof st);
}

void handshake_mac1_key(const uint8_t responder_pub[HANDSHAKE_KEY_LEN], const uint8_t *psk,
			uint8_t key_out[32])
{
	labelled_key("mac1", responder_pub, psk, key_out);
}

static struct handshake *handshake_alloc(bool initiator, const uint8_t local_priv[32],
					 const uint8_t *psk)
{
	struct handshake *hs;

	if (sodium_init() < 0)
		return NULL;
	hs = sodium_malloc(sizeof *hs);
	if (hs == NULL)
		return NULL;
	memset(hs, 0, sizeof *hs);
	hs->initiator = initiator;
	memcpy(hs->s_priv, local_priv, sizeof hs->s_priv);
	crypto_scalarmult_curve25519_base(hs->s_pub, hs->s_priv);
	if (psk != NULL)
		memcpy(hs->psk, psk, sizeof hs->psk);
	randombytes_buf(hs->e_priv, sizeof hs->e_priv);
	crypto_scalarmult_curve25519_base(hs->e_pub, hs->e_priv);
	return hs;
}

struct handshake *handshake_initiator_new(const uint8_t local_priv[HANDSHAKE_KEY_LEN],
					  const uint8_t remote_pub[HANDSHAKE_KEY_LEN],
					  const uint8_t *psk)
{
	struct handshake *hs = handshake_alloc(true, local_priv, psk);

	if (hs == NULL)
		return NULL;
	memcpy(hs->rs, remote_pub, sizeof hs->rs);
	handshake_mac1_key(hs->rs, psk, hs->mac1_key);
	handshake_cookie_key(hs->rs, psk, hs->cookie_key);
	symmetric_init(hs, (const uint8_t *)DEFAULT_PROLOGUE, sizeof DEFAULT_PROLOGUE - 1);
	hs->state = HS_INIT_READY;
	return hs;
}

struct handshake *handshake_responder_new(const uint8_t local_priv[HANDSHAKE_KEY_LEN],
					  const uint8_t *psk)
{
	struct handshake *hs = handshake_alloc(false, local_priv, psk);

	if (hs == NULL)
		return NULL;
	handshake_mac1_key(hs->s_pub, psk, hs->mac1_key);
	symmetric_init(hs, (const uint8_t *)DEFAULT_PROLOGUE, sizeof DEFAULT_PROLOGUE - 1);
	hs->state = HS_RESP_WAIT_MSG1;
	return hs;
}

void handshake_free(struct handshake *hs)
{
	if (hs == NULL)
		return;
	sodium_free(hs); /* wipes the whole object */
}

static bool at_start(const struct handshake *hs)
{
	return hs->state == HS_INIT_READY || hs->state == HS_RESP_WAIT_MSG1;
}

void handshake_set_ephemeral(struct handshake *hs, const uint8_t priv[HANDSHAKE_KEY_LEN])
{
	if (hs == NULL || !at_start(hs))
		return;
	memcpy(hs->e_priv, priv, sizeof hs->e_priv);
	crypto_scalarmult_curve25519_base(hs->e_pub, hs->e_priv);
}

int handshake_set_prologue(struct handshake *hs, const uint8_t *prologue, size_t len)
{
	if (hs == NULL || !at_start(hs))
		return WM_ERR_STATE;
	if (prologue == NULL && len > 0)
		return WM_ERR_RANGE;
	symmetric_init(hs, prologue, len);
	return 0;
}

void handshake_set_raw_noise(struct handshake *hs)
{
	if (hs == NULL || !at_start(hs))
		return;
	hs->raw_noise = true;
}

/* Any call in the wrong state poisons the object, like any other failure. */
static int wrong_state(struct handshake *hs)
{
	if (hs == NULL || hs->state == HS_FAILED)
		return WM_ERR_STATE;
	return fail(hs, WM_ERR_STATE);
}

/*
 * msg1 = [magic] | e | enc(s) | enc(payload) | [mac1]
 * Tokens: e (with MixKey(e) for psk modes), es, s, ss, then the payload.
 */
int handshake_write_msg1(struct handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t cap)
{
	size_t head, need, pos;
	int rc;

	if (hs == NULL || hs->state != HS_INIT_READY)
		return wrong_state(hs);
	head = hs->raw_noise ? 0 : MSG1_MAGIC_LEN;
	need = head + NOISE_MSG1_FIXED + plen + (hs->raw_noise ? 0 : HANDSHAKE_MAC_LEN);
	if (!hs->raw_noise && hs->has_cookie)
		need += HANDSHAKE_MAC2_LEN;
	if (plen > HANDSHAKE_PAYLOAD_MAX || (plen > 0 && payload == NULL) || out == NULL ||
	    cap < need)
		return fail(hs, WM_ERR_RANGE);

	if (!hs->raw_noise)
		memcpy(out, hs->has_cookie ? MSG1_MAGIC_MAC2 : MSG1_MAGIC, MSG1_MAGIC_LEN);
	pos = head;
	memcpy(out + pos, hs->e_pub, NOISE_DHLEN);
	mix_hash(hs, hs->e_pub, NOISE_DHLEN);
	mix_key(hs, hs->e_pub, NOISE_DHLEN);
	pos += NOISE_DHLEN;
	rc = mix_dh(hs, hs->e_priv, hs->rs); /* es */
	if (rc != 0)
		return fail(hs, rc);
	encrypt_and_hash(hs, hs->s_pub, NOISE_DHLEN, out + pos); /* s */
	pos += NOISE_DHLEN + NOISE_TAGLEN;
	rc = mix_dh(hs, hs->s_priv, hs->rs); /* ss */
	if (rc != 0)
		return fail(hs, rc);
	encrypt_and_hash(hs, payload, plen, out + pos);
	pos += plen + NOISE_TAGLEN;
	if (!hs->raw_noise) {
		compute_mac1(hs->mac1_key, out, pos, out + pos);
		memcpy(hs->last_mac1, out + pos, HANDSHAKE_MAC_LEN);
		pos += HANDSHAKE_MAC_LEN;
		if (hs->has_cookie) {
			compute_mac(hs->cookie, out, pos, out + pos);
			pos += HANDSHAKE_MAC2_LEN;
		}
	}
	hs->state = HS_INIT_WAIT_MSG2;
	return (int)pos;
}

int handshake_check_msg1(const uint8_t mac1_key[32], const uint8_t *msg, size_t len)
{
	uint8_t mac[HANDSHAKE_MAC_LEN];
	int rc;

	size_t trailer, extra;

	if (msg == NULL)
		return WM_ERR_MALFORMED;
	trailer = msg1_trailer(msg, len);
	if (trailer == 0)
		return WM_ERR_MALFORMED;
	extra = trailer - HANDSHAKE_MAC_LEN; /* mac2, if any */
	if (len < HANDSHAKE_MSG1_OVERHEAD + extra || len > HANDSHAKE_MSG1_MAX + extra)
		return WM_ERR_MALFORMED;
	compute_mac1(mac1_key, msg, len - trailer, mac);
	rc = sodium_memcmp(mac, msg + len - trailer, HANDSHAKE_MAC_LEN) == 0 ? 0 : WM_ERR_CRYPTO;
	return rc;
}

int handshake_read_msg1(struct handshake *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
			size_t cap, uint8_t remote_pub[HANDSHAKE_KEY_LEN])
{
	size_t noise_len, plen;
	const uint8_t *p;
	int rc;

	if (hs == NULL || hs->state != HS_RESP_WAIT_MSG1)
		return wrong_state(hs);
	if (msg == NULL)
		return fail(hs, WM_ERR_MALFORMED);
	if (hs->raw_noise) {
		if (len < NOISE_MSG1_FIXED || len > NOISE_MSG1_FIXED + HANDSHAKE_PAYLOAD_MAX)
			return fail(hs, WM_ERR_MALFORMED);
		p = msg;
		noise_len = len;
	} else {
		rc = handshake_check_msg1(hs->mac1_key, msg, len);
		if (rc != 0)
			return fail(hs, rc);
		p = msg + MSG1_MAGIC_LEN;
		noise_len = len - MSG1_MAGIC_LEN - msg1_trailer(msg, len);
	}
	plen = noise_len - NOISE_MSG1_FIXED;
	if (plen > cap || (plen > 0 && payload_out == NULL))
		return fail(hs, WM_ERR_RANGE);

	memcpy(hs->re, p, NOISE_DHLEN); /* e */
	mix_hash(hs, hs->re, NOISE_DHLEN);
	mix_key(hs, hs->re, NOISE_DHLEN);
	p += NOISE_DHLEN;
	rc = mix_dh(hs, hs->s_priv, hs->re); /* es */
	if (rc != 0)
		return fail(hs, rc);
	rc = decrypt_and_hash(hs, p, NOISE_DHLEN + NOISE_TAGLEN, hs->rs); /* s */
	if (rc != 0)
		return fail(hs, rc);
	p += NOISE_DHLEN + NOISE_TAGLEN;
	rc = mix_dh(hs, hs->s_priv, hs->rs); /* ss */
	if (rc != 0)
		return fail(hs, rc);
	rc = decrypt_and_hash(hs, p, plen + NOISE_TAGLEN, payload_out);
	if (rc != 0)
		return fail(hs, rc);
	if (remote_pub != NULL)
		memcpy(remote_pub, hs->rs, HANDSHAKE_KEY_LEN);
	hs->state = HS_RESP_READY;
	return (int)plen;
}

/* msg2 = e | enc(payload); tokens e, ee, se, psk. */
int handshake_write_msg2(struct handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t cap)
{
	int rc;

	if (hs == NULL || hs->state != HS_RESP_READY)
		return wrong_state(hs);
	if (plen > HANDSHAKE_PAYLOAD_MAX || (plen > 0 && payload == NULL) || out == NULL ||
	    cap < NOISE_MSG2_FIXED + plen)
		return fail(hs, WM_ERR_RANGE);

	memcpy(out, hs->e_pub, NOISE_DHLEN);
	mix_hash(hs, hs->e_pub, NOISE_DHLEN);
	mix_key(hs, hs->e_pub, NOISE_DHLEN);
	rc = mix_dh(hs, hs->e_priv, hs->re); /* ee */
	if (rc != 0)
		return fail(hs, rc);
	rc = mix_dh(hs, hs->e_priv, hs->rs); /* se */
	if (rc != 0)
		return fail(hs, rc);
	mix_key_and_hash(hs, hs->psk, sizeof hs->psk); /* psk */
	encrypt_and_hash(hs, payload, plen, out + NOISE_DHLEN);
	finish(hs);
	return (int)(NOISE_MSG2_FIXED + plen);
}

int handshake_read_msg2(struct handshake *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
			size_t cap)
{
	size_t plen;
	int rc;

	if (hs == NULL || hs->state != HS_INIT_WAIT_MSG2)
		return wrong_state(hs);
	if (msg == NULL || len < NOISE_MSG2_FIXED || len > NOISE_MSG2_FIXED + HANDSHAKE_PAYLOAD_MAX)
		return fail(hs, WM_ERR_MALFORMED);
	plen = len - NOISE_MSG2_FIXED;
	if (plen > cap || (plen > 0 && payload_out == NULL))
		return fail(hs, WM_ERR_RANGE);

	memcpy(hs->re, msg, NOISE_DHLEN); /* e */
	mix_hash(hs, hs->re, NOISE_DHLEN);
	mix_key(hs, hs->re, NOISE_DHLEN);
	rc = mix_dh(hs, hs->e_priv, hs->re); /* ee */
	if (rc != 0)
		return fail(hs, rc);
	rc = mix_dh(hs, hs->s_priv, hs->re); /* se */
	if (rc != 0)
		return fail(hs, rc);
	mix_key_and_hash(hs, hs->psk, sizeof hs->psk); /* psk */
	rc = decrypt_and_hash(hs, msg + NOISE_DHLEN, plen + NOISE_TAGLEN, payload_out);
	if (rc != 0)
		return fail(hs, rc);
	finish(hs);
	return (int)plen;
}

int handshake_split(struct handshake *hs, uint8_t send_key[HANDSHAKE_KEY_LEN],
		    uint8_t recv_key[HANDSHAKE_KEY_LEN])
{
	if (hs == NULL || hs->state != HS_DONE)
		return WM_ERR_STATE;
	memcpy(send_key, hs->send_key, HANDSHAKE_KEY_LEN);
	memcpy(recv_key, hs->recv_key, HANDSHAKE_KEY_LEN);
	return 0;
}

int handshake_rekey_secret(const struct handshake *hs, uint8_t out[HANDSHAKE_HASH_LEN])
{
	if (hs == NULL || hs->state != HS_DONE)
		return WM_ERR_STATE;
	memcpy(out, hs->rekey_ck, HANDSHAKE_HASH_LEN);
	return 0;
}

void handshake_rekey_kdf(uint8_t ck[HANDSHAKE_HASH_LEN], const uint8_t dh[HANDSHAKE_KEY_LEN],
			 const uint8_t initiator_pub[HANDSHAKE_KEY_LEN],
			 const uint8_t responder_pub[HANDSHAKE_KEY_LEN],
			 uint8_t initiator_key[HANDSHAKE_KEY_LEN],
			 uint8_t responder_key[HANDSHAKE_KEY_LEN])
{
	uint8_t ikm[3 * HANDSHAKE_KEY_LEN];
	uint8_t t2[NOISE_HASHLEN], t3[NOISE_HASHLEN];

	memcpy(ikm, dh, HANDSHAKE_KEY_LEN);
	memcpy(ikm + HANDSHAKE_KEY_LEN, initiator_pub, HANDSHAKE_KEY_LEN);
	memcpy(ikm + 2 * HANDSHAKE_KEY_LEN, responder_pub, HANDSHAKE_KEY_LEN);
	/* noise_hkdf reads ck before it writes out1, so ck is updated in place. */
	noise_hkdf(ck, ikm, sizeof ikm, ck, t2, t3);
	memcpy(initiator_key, t2, HANDSHAKE_KEY_LEN);
	memcpy(responder_key, t3, HANDSHAKE_KEY_LEN);
	sodium_memzero(ikm, sizeof ikm);
	sodium_memzero(t2, sizeof t2);
	sodium_memzero(t3, sizeof t3);
}

const uint8_t *handshake_hash(const struct handshake *hs)
{
	return hs == NULL ? NULL : hs->h;
}

void handshake_cookie_key(const uint8_t responder_pub[HANDSHAKE_KEY_LEN], const uint8_t *psk,
			  uint8_t key_out[32])
{
	labelled_key("cookie", responder_pub, psk, key_out);
}

bool handshake_msg1_has_mac2(const uint8_t *msg, size_t len)
{
	return msg != NULL && msg1_trailer(msg, len) == HANDSHAKE_MAC_LEN + HANDSHAKE_MAC2_LEN;
}

int handshake_check_mac2(const uint8_t cookie[HANDSHAKE_COOKIE_LEN], const uint8_t *msg, size_t len)
{
	uint8_t mac[HANDSHAKE_MAC2_LEN];

	if (!handshake_msg1_has_mac2(msg, len) ||
	    len < HANDSHAKE_MSG1_OVERHEAD + HANDSHAKE_MAC2_LEN)
		return WM_ERR_MALFORMED;
	compute_mac(cookie, msg, len - HANDSHAKE_MAC2_LEN, mac);
	return sodium_memcmp(mac, msg + len - HANDSHAKE_MAC2_LEN, HANDSHAKE_MAC2_LEN) == 0
		   ? 0
		   : WM_ERR_CRYPTO;
}

int handshake_write_cookie_reply(const uint8_t cookie_key[32],
				 const uint8_t cookie[HANDSHAKE_COOKIE_LEN], const uint8_t *msg1,
				 size_t len, uint8_t *out, size_t cap)
{
	size_t trailer;
	const uint8_t *mac1;

	if (msg1 == NULL || out == NULL || cap < HANDSHAKE_COOKIE_REPLY_LEN)
		return WM_ERR_RANGE;
	trailer = msg1_trailer(msg1, len);
	if (trailer == 0 || len < HANDSHAKE_MSG1_OVERHEAD + trailer - HANDSHAKE_MAC_LEN)
		return WM_ERR_MALFORMED;
	mac1 = msg1 + len - trailer;
	memcpy(out, COOKIE_MAGIC, MSG1_MAGIC_LEN);
	randombytes_buf(out + MSG1_MAGIC_LEN, COOKIE_NONCE_LEN);
	/* Bound to the mac1 it answers: a reply cannot be replayed to another
	 * msg1, and only who knows the server key (and PSK) can make one. */
	crypto_aead_xchacha20poly1305_ietf_encrypt(
	    out + MSG1_MAGIC_LEN + COOKIE_NONCE_LEN, NULL, cookie, HANDSHAKE_COOKIE_LEN, mac1,
	    HANDSHAKE_MAC_LEN, NULL, out + MSG1_MAGIC_LEN, cookie_key);
	return HANDSHAKE_COOKIE_REPLY_LEN;
}

bool handshake_is_cookie_reply(const uint8_t *msg, size_t len)
{
	return msg != NULL && len == HANDSHAKE_COOKIE_REPLY_LEN &&
	       memcmp(msg, COOKIE_MAGIC, MSG1_MAGIC_LEN) == 0;
}

int handshake_read_cookie_reply(struct handshake *hs, const uint8_t *msg, size_t len,
				uint8_t cookie_out[HANDSHAKE_COOKIE_LEN])
{
	uint8_t cookie[HANDSHAKE_COOKIE_LEN];

	if (hs == NULL || !hs->initiator || hs->raw_noise || hs->state != HS_INIT_WAIT_MSG2)
		return WM_ERR_STATE;
	if (!handshake_is_cookie_reply(msg, len))
		return WM_ERR_MALFORMED;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(
		cookie, NULL, NULL, msg + MSG1_MAGIC_LEN + COOKIE_NONCE_LEN,
		HANDSHAKE_COOKIE_LEN + NOISE_TAGLEN, hs->last_mac1, HANDSHAKE_MAC_LEN,
		msg + MSG1_MAGIC_LEN, hs->cookie_key) != 0)
		return WM_ERR_CRYPTO;
	memcpy(cookie_out, cookie, HANDSHAKE_COOKIE_LEN);
	sodium_memzero(cookie, sizeof cookie);
	return 0;
}

void handshake_set_cookie(struct handshake *hs, const uint8_t cookie[HANDSHAKE_COOKIE_LEN])
{
	if (hs == NULL || hs->state != HS_INIT_READY || hs->raw_noise)
		return;
	memcpy(hs->cookie, cookie, HANDSHAKE_COOKIE_LEN);
	hs->has_cookie = true;
}

/* Generation g's secret was made at rotated_ms (current) or one period
 * before (previous); older generations are gone. */
static void cookies_rotate(struct handshake_cookies *c, uint64_t now_ms)
{
	if (c->initialized && now_ms - c->rotated_ms < HANDSHAKE_COOKIE_ROTATE_MS)
		return;
	if (c->initialized && now_ms - c->rotated_ms < 2 * HANDSHAKE_COOKIE_ROTATE_MS) {
		memcpy(c->secret[1], c->secret[0], sizeof c->secret[0]);
		c->have_previous = true;
	} else {
		c->have_previous = false; /* idle for two periods: nothing old is valid */
	}
	randombytes_buf(c->secret[0], sizeof c->secret[0]);
	c->rotated_ms = now_ms;
	c->initialized = true;
}

static void cookie_for(const uint8_t secret[32], const uint8_t *source, size_t source_len,
		       uint8_t cookie[HANDSHAKE_COOKIE_LEN])
{
	crypto_generichash(cookie, HANDSHAKE_COOKIE_LEN, source, source_len, secret, 32);
}

void handshake_cookies_make(struct handshake_cookies *c, uint64_t now_ms, const uint8_t *source,
			    size_t source_len, uint8_t cookie[HANDSHAKE_COOKIE_LEN])
{
	cookies_rotate(c, now_ms);
	cookie_for(c->secret[0], source, source_len, cookie);
}

int handshake_cookies_check(struct handshake_cookies *c, uint64_t now_ms, const uint8_t *source,
			    size_t source_len, const uint8_t *msg, size_t len)
{
	uint8_t cookie[HANDSHAKE_COOKIE_LEN];
	int rc;

	if (!handshake_msg1_has_mac2(msg, len))
		return WM_ERR_MALFORMED;
	cookies_rotate(c, now_ms);
	cookie_for(c->secret[0], source, source_len, cookie);
	rc = handshake_check_mac2(cookie, msg, len);
	if (rc == WM_ERR_CRYPTO && c->have_previous) {
		cookie_for(c->secret[1], source, source_len, cookie);
		rc = handshake_check_mac2(cookie, msg, len);
	}
	sodium_memzero(cookie, sizeof cookie);
	return rc;
}
