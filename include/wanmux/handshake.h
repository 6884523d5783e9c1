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
 */
#ifndef WANMUX_HANDSHAKE_H
#define WANMUX_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#define HANDSHAKE_KEY_LEN 32
#define HANDSHAKE_HASH_LEN 64
#define HANDSHAKE_MAC_LEN 16
#define HANDSHAKE_PAYLOAD_MAX 512
#define HANDSHAKE_MSG1_OVERHEAD (4 + 32 + 48 + 16 + HANDSHAKE_MAC_LEN)
#define HANDSHAKE_MSG2_OVERHEAD (32 + 16)
#define HANDSHAKE_MSG_MAX (HANDSHAKE_MSG1_OVERHEAD + HANDSHAKE_PAYLOAD_MAX)

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
 * Responder's cheap check before any public-key work: the size is plausible,
 * the magic matches and mac1 verifies (constant time). Returns 0,
 * WM_ERR_MALFORMED or WM_ERR_CRYPTO.
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

#endif
