/*
 * libFuzzer target for the responder side of the handshake. The first input
 * byte picks a mode: 0 feeds the rest as msg1 as it came off the wire; 1
 * wraps it in "WMX1" and a valid mac1 so the input gets past the cheap check
 * to the Noise layer; 2 feeds it to a raw-noise responder (no magic, no mac1);
 * 3 wraps it in "WMX2" with valid mac1 and mac2 (a cookie for a fixed source)
 * as a client under load would. Whatever passes mac1 also gets a cookie
 * reply written, as a server under load would answer it.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed keys, shared with the seed generator. */
static const uint8_t server_priv[HANDSHAKE_KEY_LEN] = {0x52, 0x45, 0x53, 0x50, 0x01};
static const uint8_t server_ephemeral[HANDSHAKE_KEY_LEN] = {0x45, 0x50, 0x48, 0x02};
static const uint8_t psk[HANDSHAKE_KEY_LEN] = {0x50, 0x53, 0x4b, 0x03};
static const uint8_t source[5] = {2, 127, 0, 0, 1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t mac1_key[32], cookie_key[32];
	static struct handshake_cookies jar;
	static int ready;
	uint8_t cookie[HANDSHAKE_COOKIE_LEN], creply[HANDSHAKE_COOKIE_REPLY_LEN];
	uint8_t msg[HANDSHAKE_MSG_MAX + 64], payload[HANDSHAKE_PAYLOAD_MAX], remote[32];
	uint8_t reply[HANDSHAKE_MSG_MAX], send[32], recv[32];
	struct handshake *hs;
	size_t len;
	int mode, n, rc;

	if (!ready) {
		uint8_t server_pub[32];

		if (sodium_init() < 0)
			return 0;
		crypto_scalarmult_curve25519_base(server_pub, server_priv);
		handshake_mac1_key(server_pub, psk, mac1_key);
		handshake_cookie_key(server_pub, psk, cookie_key);
		ready = 1;
	}
	if (size < 1)
		return 0;
	mode = data[0] % 4;
	data++;
	size--;
	if (size > sizeof msg - 4 - HANDSHAKE_MAC_LEN - HANDSHAKE_MAC2_LEN)
		size = sizeof msg - 4 - HANDSHAKE_MAC_LEN - HANDSHAKE_MAC2_LEN;
	handshake_cookies_make(&jar, 0, source, sizeof source, cookie);

	if (mode == 1) {
		memcpy(msg, "WMX1", 4);
		memcpy(msg + 4, data, size);
		crypto_generichash(msg + 4 + size, HANDSHAKE_MAC_LEN, msg, 4 + size, mac1_key,
				   sizeof mac1_key);
		len = 4 + size + HANDSHAKE_MAC_LEN;
		rc = handshake_check_msg1(mac1_key, msg, len);
		if (rc != (len <= HANDSHAKE_MSG1_MAX && len >= HANDSHAKE_MSG1_OVERHEAD
			       ? 0
			       : WM_ERR_MALFORMED))
			__builtin_trap();
	} else if (mode == 3) {
		memcpy(msg, "WMX2", 4);
		memcpy(msg + 4, data, size);
		crypto_generichash(msg + 4 + size, HANDSHAKE_MAC_LEN, msg, 4 + size, mac1_key,
				   sizeof mac1_key);
		crypto_generichash(msg + 4 + size + HANDSHAKE_MAC_LEN, HANDSHAKE_MAC2_LEN, msg,
				   4 + size + HANDSHAKE_MAC_LEN, cookie, sizeof cookie);
		len = 4 + size + HANDSHAKE_MAC_LEN + HANDSHAKE_MAC2_LEN;
		rc = handshake_check_msg1(mac1_key, msg, len);
		if (rc !=
		    (len <= HANDSHAKE_MSG_MAX && len >= HANDSHAKE_MSG1_OVERHEAD + HANDSHAKE_MAC2_LEN
			 ? 0
			 : WM_ERR_MALFORMED))
			__builtin_trap();
		if (rc == 0 &&
		    handshake_cookies_check(&jar, 0, source, sizeof source, msg, len) != 0)
			__builtin_trap();
	} else {
		memcpy(msg, data, size);
		len = size;
	}

	if (mode != 2 && handshake_check_msg1(mac1_key, msg, len) == 0) {
		rc = handshake_write_cookie_reply(cookie_key, cookie, msg, len, creply,
						  sizeof creply);
		if (rc != HANDSHAKE_COOKIE_REPLY_LEN ||
		    !handshake_is_cookie_reply(creply, sizeof creply))
			__builtin_trap();
		rc = handshake_cookies_check(&jar, 0, source, sizeof source, msg, len);
		if (rc != 0 && rc != WM_ERR_CRYPTO && rc != WM_ERR_MALFORMED)
			__builtin_trap();
	}

	hs = handshake_responder_new(server_priv, psk);
	if (hs == NULL)
		return 0;
	handshake_set_ephemeral(hs, server_ephemeral);
	if (mode == 2)
		handshake_set_raw_noise(hs);

	n = handshake_read_msg1(hs, msg, len, payload, sizeof payload, remote);
	if (n >= 0) {
		if ((size_t)n > sizeof payload)
			__builtin_trap();
		rc = handshake_write_msg2(hs, payload, (size_t)n, reply, sizeof reply);
		if (rc != HANDSHAKE_MSG2_OVERHEAD + n)
			__builtin_trap();
		if (handshake_split(hs, send, recv) != 0)
			__builtin_trap();
	} else {
		if (n != WM_ERR_MALFORMED && n != WM_ERR_CRYPTO)
			__builtin_trap();
		/* a failed responder accepts nothing more */
		if (handshake_read_msg1(hs, msg, len, payload, sizeof payload, remote) !=
		    WM_ERR_STATE)
			__builtin_trap();
		if (handshake_split(hs, send, recv) != WM_ERR_STATE)
			__builtin_trap();
	}
	handshake_free(hs);
	return 0;
}
