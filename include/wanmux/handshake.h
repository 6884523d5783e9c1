/*
 * Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b, built from libsodium primitives
 * (X25519, ChaCha20-Poly1305 IETF, BLAKE2b with HMAC-BLAKE2b for HKDF). A state
 * machine: bytes in, bytes out, keys out. No sockets, no clocks, no policy: the
 * caller decides whether the initiator's static key is authorized and whether
 * the payload's timestamp is fresh.
 *
 * Prologue "wanmux/1". Messages as they appear on the wire:
 *   msg1 (initiator -> responder), 4 + 32 + 48 + (plen + 16) + 16 bytes:
 *     "WMX1" | e.pub | AEAD(s.pub) | AEAD(payload) | mac1
 *   msg2 (responder -> initiator), 32 + (plen + 16) bytes:
 *     e.pub | AEAD(payload)
 * mac1 = BLAKE2b-128(key = BLAKE2b-256("mac1" | responder static pub | psk),
 * msg1 without its mac1). The responder checks it before any X25519, so junk
 * and messages for another server or PSK cost one hash.
 *
 * Under load (WireGuard's idea, docs/PROTOCOL.md byte by byte) the responder
 * answers a msg1 with a cookie reply instead of doing X25519 work:
 *   cookie reply, 60 bytes: "WMC1" | nonce (24) | XChaCha20-Poly1305(
 *     key = BLAKE2b-256("cookie" | responder static pub | psk), nonce,
 *     cookie (16), ad = mac1 of the msg1 it answers)
 *   cookie = BLAKE2b-128(key = server secret (rotated every 2 min), source
 *     address)
 * and the initiator sends msg1 again with mac2:
 *   "WMX2" | e.pub | AEAD(s.pub) | AEAD(payload) | mac1 | mac2
 *   mac2 = BLAKE2b-128(key = cookie, everything before mac2)
 */
#ifndef WANMUX_HANDSHAKE_H
#define WANMUX_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HANDSHAKE_KEY_LEN 32
#define HANDSHAKE_HASH_LEN 64
#define HANDSHAKE_MAC_LEN 16
#define HANDSHAKE_PAYLOAD_MAX 512
#define HANDSHAKE_MSG1_OVERHEAD (4 + 32 + 48 + 16 + HANDSHAKE_MAC_LEN)
#define HANDSHAKE_MSG2_OVERHEAD (32 + 16)
#define HANDSHAKE_MSG1_MAX (HANDSHAKE_MSG1_OVERHEAD + HANDSHAKE_PAYLOAD_MAX) /* "WMX1" */
#define HANDSHAKE_MAC2_LEN 16
#define HANDSHAKE_COOKIE_LEN 16
#define HANDSHAKE_COOKIE_REPLY_LEN (4 + 24 + HANDSHAKE_COOKIE_LEN + 16)
/* The largest handshake message on the wire ("WMX2": msg1 with mac2). */
#define HANDSHAKE_MSG_MAX (HANDSHAKE_MSG1_MAX + HANDSHAKE_MAC2_LEN)
#define HANDSHAKE_COOKIE_ROTATE_MS 120000u

struct handshake;

/*
 * An initiator that knows (pins) the responder's static public key. psk may be
 * NULL (32 zero bytes are used). Keys are copied into guarded memory.
 */
struct handshake *handshake_initiator_new(const uint8_t local_priv[HANDSHAKE_KEY_LEN],
					  const uint8_t remote_pub[HANDSHAKE_KEY_LEN],
					  const uint8_t *psk);

/* A responder with its static private key; psk as above. */
struct handshake *handshake_responder_new(const uint8_t local_priv[HANDSHAKE_KEY_LEN],
					  const uint8_t *psk);

/* Wipes and frees hs; NULL is a no-op. */
void handshake_free(struct handshake *hs);

/*
 * Replaces the ephemeral key pair (normally random) with one derived from
 * priv. For test vectors only; call right after _new.
 */
void handshake_set_ephemeral(struct handshake *hs, const uint8_t priv[HANDSHAKE_KEY_LEN]);

/*
 * Replaces the prologue (default "wanmux/1") for test vectors; call right
 * after _new. Returns WM_ERR_STATE if a message was already processed.
 */
int handshake_set_prologue(struct handshake *hs, const uint8_t *prologue, size_t len);

/*
 * Turns off the "WMX1" magic and mac1 so the messages are plain Noise, for
 * test vectors only. Call right after _new.
 */
void handshake_set_raw_noise(struct handshake *hs);

/*
 * Initiator: writes msg1 carrying payload (<= HANDSHAKE_PAYLOAD_MAX) into out.
 * Returns the message length or WM_ERR_RANGE / WM_ERR_STATE / WM_ERR_CRYPTO.
 */
int handshake_write_msg1(struct handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t cap);

/*
 * The key for mac1 checks, computed once per server from its static public
 * key and psk (NULL = zeros).
 */
void handshake_mac1_key(const uint8_t responder_pub[HANDSHAKE_KEY_LEN], const uint8_t *psk,
			uint8_t key_out[32]);

/*
 * Responder's cheap check before any public-key work: the size is plausible
 * for its magic ("WMX1", or "WMX2" with mac2) and mac1 verifies (constant
 * time). mac2 is not checked here. Returns 0, WM_ERR_MALFORMED or
 * WM_ERR_CRYPTO.
 */
int handshake_check_msg1(const uint8_t mac1_key[32], const uint8_t *msg, size_t len);

/*
 * Responder: processes msg1 (mac1 already checked or checked again here).
 * Writes the decrypted payload to payload_out (cap bytes) and the initiator's
 * static public key to remote_pub. Returns the payload length or
 * WM_ERR_MALFORMED / WM_ERR_CRYPTO / WM_ERR_RANGE / WM_ERR_STATE.
 */
int handshake_read_msg1(struct handshake *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
			size_t cap, uint8_t remote_pub[HANDSHAKE_KEY_LEN]);

/* Responder: writes msg2 carrying payload. Returns its length or an error. */
int handshake_write_msg2(struct handshake *hs, const uint8_t *payload, size_t plen, uint8_t *out,
			 size_t cap);

/* Initiator: processes msg2. Returns the payload length or an error. */
int handshake_read_msg2(struct handshake *hs, const uint8_t *msg, size_t len, uint8_t *payload_out,
			size_t cap);

/*
 * After both messages: the transport keys for this side (send = what this
 * side encrypts with). Returns WM_ERR_STATE before the handshake completed.
 */
int handshake_split(struct handshake *hs, uint8_t send_key[HANDSHAKE_KEY_LEN],
		    uint8_t recv_key[HANDSHAKE_KEY_LEN]);

/*
 * After both messages: the secret that in-band rekeys chain from
 * (HANDSHAKE_HASH_LEN bytes), a third output of Split()'s HKDF, independent
 * of the transport keys. Returns WM_ERR_STATE before the handshake completed.
 */
int handshake_rekey_secret(const struct handshake *hs, uint8_t out[HANDSHAKE_HASH_LEN]);

/*
 * One rekey step, Noise HKDF over BLAKE2b as in the handshake:
 *   ck, t2, t3 = HKDF(ck, dh | initiator_pub | responder_pub)
 * ck is replaced in place; initiator_key (what the initiator sends with) is
 * t2 and responder_key t3, each truncated to 32 bytes.
 */
void handshake_rekey_kdf(uint8_t ck[HANDSHAKE_HASH_LEN], const uint8_t dh[HANDSHAKE_KEY_LEN],
			 const uint8_t initiator_pub[HANDSHAKE_KEY_LEN],
			 const uint8_t responder_pub[HANDSHAKE_KEY_LEN],
			 uint8_t initiator_key[HANDSHAKE_KEY_LEN],
			 uint8_t responder_key[HANDSHAKE_KEY_LEN]);

/* The final handshake hash h (HANDSHAKE_HASH_LEN bytes), for test vectors. */
const uint8_t *handshake_hash(const struct handshake *hs);

/* The key that seals cookie replies (both sides compute it). */
void handshake_cookie_key(const uint8_t responder_pub[HANDSHAKE_KEY_LEN], const uint8_t *psk,
			  uint8_t key_out[32]);

/* Whether msg is a "WMX2" msg1 (one that carries mac2). */
bool handshake_msg1_has_mac2(const uint8_t *msg, size_t len);

/* Checks msg's mac2 against cookie: 0, WM_ERR_CRYPTO, or WM_ERR_MALFORMED
 * when msg carries no mac2. Constant time. */
int handshake_check_mac2(const uint8_t cookie[HANDSHAKE_COOKIE_LEN], const uint8_t *msg,
			 size_t len);

/*
 * Responder: the cookie reply to msg1 (which passed handshake_check_msg1),
 * sealing cookie with cookie_key. Returns HANDSHAKE_COOKIE_REPLY_LEN,
 * WM_ERR_RANGE (cap) or WM_ERR_MALFORMED. No public-key work.
 */
int handshake_write_cookie_reply(const uint8_t cookie_key[32],
				 const uint8_t cookie[HANDSHAKE_COOKIE_LEN], const uint8_t *msg1,
				 size_t len, uint8_t *out, size_t cap);

/* Whether a message from the responder is a cookie reply (not msg2). */
bool handshake_is_cookie_reply(const uint8_t *msg, size_t len);

/*
 * Initiator, after writing msg1: opens a cookie reply to that msg1 into
 * cookie_out. 0, WM_ERR_MALFORMED, WM_ERR_CRYPTO (forged, or for another
 * msg1) or WM_ERR_STATE. hs is not changed: start a new initiator, give it
 * the cookie (handshake_set_cookie) and send its msg1.
 */
int handshake_read_cookie_reply(struct handshake *hs, const uint8_t *msg, size_t len,
				uint8_t cookie_out[HANDSHAKE_COOKIE_LEN]);

/* Initiator, before msg1: append mac2 made with cookie ("WMX2"). */
void handshake_set_cookie(struct handshake *hs, const uint8_t cookie[HANDSHAKE_COOKIE_LEN]);

/*
 * Responder's cookie secrets: the current one and the previous one, a new
 * one every HANDSHAKE_COOKIE_ROTATE_MS, so a cookie is valid for 2 to 4
 * minutes. Zero-initialize; the caller passes a monotonic clock.
 */
struct handshake_cookies {
	uint8_t secret[2][32]; /* [0] current, [1] previous */
	uint64_t rotated_ms;
	bool initialized;
	bool have_previous;
};

/* The cookie for source (address bytes) under the current secret. */
void handshake_cookies_make(struct handshake_cookies *c, uint64_t now_ms, const uint8_t *source,
			    size_t source_len, uint8_t cookie[HANDSHAKE_COOKIE_LEN]);

/*
 * Whether msg's mac2 was made with a cookie this responder gave source
 * under the current or the previous secret: 0, WM_ERR_CRYPTO, or
 * WM_ERR_MALFORMED (no mac2).
 */
int handshake_cookies_check(struct handshake_cookies *c, uint64_t now_ms, const uint8_t *source,
			    size_t source_len, const uint8_t *msg, size_t len);

#endif
