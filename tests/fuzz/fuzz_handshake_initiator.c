/*
 * libFuzzer target for the initiator side: a real msg1 is written with fixed
 * keys (so the seeds' msg2 stay valid), then the input is fed as msg2.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed keys, shared with the seed generator and fuzz_handshake_responder.c. */
static const uint8_t client_priv[HANDSHAKE_KEY_LEN] = {0x43, 0x4c, 0x49, 0x04};
static const uint8_t client_ephemeral[HANDSHAKE_KEY_LEN] = {0x43, 0x45, 0x50, 0x05};
static const uint8_t server_priv[HANDSHAKE_KEY_LEN] = {0x52, 0x45, 0x53, 0x50, 0x01};
static const uint8_t psk[HANDSHAKE_KEY_LEN] = {0x50, 0x53, 0x4b, 0x03};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t server_pub[HANDSHAKE_KEY_LEN];
	static int ready;
	uint8_t msg1[HANDSHAKE_MSG_MAX], payload[HANDSHAKE_PAYLOAD_MAX], send[32], recv[32];
	struct handshake *hs;
	int n;

	if (!ready) {
		if (sodium_init() < 0)
			return 0;
		crypto_scalarmult_curve25519_base(server_pub, server_priv);
		ready = 1;
	}

	hs = handshake_initiator_new(client_priv, server_pub, psk);
	if (hs == NULL)
		return 0;
	handshake_set_ephemeral(hs, client_ephemeral);
	if (handshake_write_msg1(hs, (const uint8_t *)"hello", 5, msg1, sizeof msg1) !=
	    HANDSHAKE_MSG1_OVERHEAD + 5)
		__builtin_trap();

	/* The same bytes as a cookie reply: refused unless sealed for this msg1
	 * (which only the fixed server could do); either way hs is unchanged. */
	{
		uint8_t cookie[HANDSHAKE_COOKIE_LEN];
		int rc = handshake_read_cookie_reply(hs, data, size, cookie);

		if (rc != 0 && rc != WM_ERR_MALFORMED && rc != WM_ERR_CRYPTO)
			__builtin_trap();
		if (rc == 0 && !handshake_is_cookie_reply(data, size))
			__builtin_trap();
	}

	n = handshake_read_msg2(hs, data, size, payload, sizeof payload);
	if (n >= 0) {
		if ((size_t)n != size - HANDSHAKE_MSG2_OVERHEAD)
			__builtin_trap();
		if (handshake_split(hs, send, recv) != 0)
			__builtin_trap();
		/* a finished initiator refuses a replayed msg2 */
		if (handshake_read_msg2(hs, data, size, payload, sizeof payload) != WM_ERR_STATE)
			__builtin_trap();
	} else {
		if (n != WM_ERR_MALFORMED && n != WM_ERR_CRYPTO)
			__builtin_trap();
		if (handshake_split(hs, send, recv) != WM_ERR_STATE)
			__builtin_trap();
	}
	handshake_free(hs);
	return 0;
}
