/*
 * libFuzzer target for the hello codec. The input is decoded as a client
 * hello and as a server hello (libFuzzer's buffer is exactly size bytes, so
 * any read past it is an ASan error); what decodes must encode back to the
 * same bytes up to the ignored reserved byte(s) and unknown flag bits, and
 * decode again to the same struct. Then the input is read as a struct, made
 * valid, and decode(encode(x)) == x is checked.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int params_equal(const struct session_params *a, const struct session_params *b)
{
	return a->stream_window == b->stream_window && a->session_window == b->session_window &&
	       a->max_streams == b->max_streams;
}

static int client_equal(const struct hello_client *a, const struct hello_client *b)
{
	return a->version == b->version && a->tunnel_no == b->tunnel_no && a->flags == b->flags &&
	       memcmp(a->timestamp, b->timestamp, HELLO_TIMESTAMP_LEN) == 0 &&
	       memcmp(a->session_id, b->session_id, HELLO_SESSION_ID_LEN) == 0 &&
	       params_equal(&a->params, &b->params);
}

static int server_equal(const struct hello_server *a, const struct hello_server *b)
{
	return a->version == b->version && a->flags == b->flags && a->epoch == b->epoch &&
	       params_equal(&a->params, &b->params);
}

static void check_client_bytes(const uint8_t *data, size_t size)
{
	struct hello_client h, back;
	uint8_t out[HELLO_CLIENT_LEN];
	int rc = hello_client_decode(data, size, &h);

	if (rc == WM_ERR_AGAIN) {
		if (size >= HELLO_CLIENT_LEN)
			__builtin_trap();
		return;
	}
	if (rc == WM_ERR_MALFORMED)
		return;
	if (rc != WM_OK || size < HELLO_CLIENT_LEN || (h.flags & ~HELLO_FLAGS_KNOWN) != 0)
		__builtin_trap();
	if (hello_client_encode(&h, out, sizeof(out)) != HELLO_CLIENT_LEN)
		__builtin_trap();
	if (out[0] != data[0] || out[1] != data[1] || out[2] != (data[2] & HELLO_FLAGS_KNOWN) ||
	    out[3] != 0 || memcmp(out + 4, data + 4, HELLO_CLIENT_LEN - 4) != 0)
		__builtin_trap();
	if (hello_client_decode(out, sizeof(out), &back) != WM_OK || !client_equal(&h, &back))
		__builtin_trap();
}

static void check_server_bytes(const uint8_t *data, size_t size)
{
	struct hello_server h, back;
	uint8_t out[HELLO_SERVER_LEN];
	int rc = hello_server_decode(data, size, &h);

	if (rc == WM_ERR_AGAIN) {
		if (size >= HELLO_SERVER_MIN_LEN)
			__builtin_trap();
		return;
	}
	if (rc == WM_ERR_MALFORMED)
		return;
	if (rc != WM_OK || size < HELLO_SERVER_MIN_LEN || (h.flags & ~HELLO_FLAGS_KNOWN) != 0)
		__builtin_trap();
	/* A 16-byte hello (an older server) has no epoch and no SESSIONS. */
	bool full = size >= HELLO_SERVER_LEN;
	uint8_t flags = (uint8_t)(data[1] & HELLO_FLAGS_KNOWN);
	if (!full)
		flags &= (uint8_t)~HELLO_FLAG_SESSIONS;
	if (!full && h.epoch != 0)
		__builtin_trap();
	if (hello_server_encode(&h, out, sizeof(out)) != HELLO_SERVER_LEN)
		__builtin_trap();
	if (out[0] != data[0] || out[1] != flags || out[2] != 0 || out[3] != 0 ||
	    memcmp(out + 4, data + 4, HELLO_SERVER_MIN_LEN - 4) != 0 ||
	    (full && memcmp(out + HELLO_SERVER_MIN_LEN, data + HELLO_SERVER_MIN_LEN,
			    HELLO_SERVER_LEN - HELLO_SERVER_MIN_LEN) != 0))
		__builtin_trap();
	if (hello_server_decode(out, sizeof(out), &back) != WM_OK || !server_equal(&h, &back))
		__builtin_trap();
}

/* Any u32 folded into [lo, hi]. */
static uint32_t fold(uint32_t v, uint32_t lo, uint32_t hi)
{
	return lo + v % (hi - lo + 1u);
}

/* The input as the fields of a struct, forced valid: decode(encode(x)) == x. */
static void check_struct_round_trip(const uint8_t *data, size_t size)
{
	uint8_t raw[HELLO_CLIENT_LEN] = {0};
	struct hello_client c, cback;
	struct hello_server s, sback;
	uint8_t cb[HELLO_CLIENT_LEN], sb[HELLO_SERVER_LEN];

	memcpy(raw, data, size < sizeof(raw) ? size : sizeof(raw));
	c.version = HELLO_VERSION;
	c.tunnel_no = raw[1];
	c.flags = raw[2] & HELLO_FLAGS_KNOWN;
	memcpy(c.timestamp, raw + 4, HELLO_TIMESTAMP_LEN);
	memcpy(c.session_id, raw + 16, HELLO_SESSION_ID_LEN);
	c.params.stream_window =
	    fold(bytes_load_be32(raw + 32), HELLO_WINDOW_MIN, HELLO_WINDOW_MAX);
	c.params.session_window =
	    fold(bytes_load_be32(raw + 36), HELLO_WINDOW_MIN, HELLO_WINDOW_MAX);
	c.params.max_streams = fold(bytes_load_be32(raw + 40), 1, UINT32_MAX);
	if (hello_client_encode(&c, cb, sizeof(cb)) != HELLO_CLIENT_LEN ||
	    hello_client_decode(cb, sizeof(cb), &cback) != WM_OK || !client_equal(&c, &cback))
		__builtin_trap();

	s.version = HELLO_VERSION;
	s.flags = raw[3] & HELLO_FLAGS_KNOWN;
	s.params = c.params;
	s.epoch = bytes_load_be64(raw + 8);
	if (hello_server_encode(&s, sb, sizeof(sb)) != HELLO_SERVER_LEN ||
	    hello_server_decode(sb, sizeof(sb), &sback) != WM_OK || !server_equal(&s, &sback))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_client_bytes(data, size);
	check_server_bytes(data, size);
	check_struct_round_trip(data, size);
	return 0;
}
