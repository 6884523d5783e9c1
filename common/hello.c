/*
 * Hello codec: the msg1 and msg2 payloads to and from bytes, and the checks
 * both sides apply to what the peer announces. No I/O, no allocation; the
 * layout is drawn in include/wanmux/hello.h.
 */
#include <string.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/hello.h"

/* Offsets of the session parameters in each hello. */
#define CLIENT_PARAMS_AT 32
#define SERVER_PARAMS_AT 4

static void encode_params(uint8_t *p, const struct session_params *sp)
{
	bytes_store_be32(p, sp->stream_window);
	bytes_store_be32(p + 4, sp->session_window);
	bytes_store_be32(p + 8, sp->max_streams);
}

static int decode_params(const uint8_t *p, struct session_params *sp)
{
	sp->stream_window = bytes_load_be32(p);
	sp->session_window = bytes_load_be32(p + 4);
	sp->max_streams = bytes_load_be32(p + 8);
	sp->initial_credit = 0; /* local only, never on the wire */
	if (sp->stream_window < HELLO_WINDOW_MIN || sp->session_window < HELLO_WINDOW_MIN ||
	    sp->stream_window > HELLO_WINDOW_MAX || sp->session_window > HELLO_WINDOW_MAX ||
	    sp->max_streams == 0)
		return WM_ERR_MALFORMED;
	return WM_OK;
}

int hello_client_encode(const struct hello_client *h, uint8_t *out, size_t cap)
{
	if (cap < HELLO_CLIENT_LEN)
		return WM_ERR_RANGE;
	out[0] = h->version;
	out[1] = h->tunnel_no;
	out[2] = h->flags;
	out[3] = 0;
	memcpy(out + 4, h->timestamp, HELLO_TIMESTAMP_LEN);
	memcpy(out + 16, h->session_id, HELLO_SESSION_ID_LEN);
	encode_params(out + CLIENT_PARAMS_AT, &h->params);
	return HELLO_CLIENT_LEN;
}

int hello_client_decode(const uint8_t *p, size_t len, struct hello_client *h)
{
	if (len < HELLO_CLIENT_LEN)
		return WM_ERR_AGAIN;
	if (p[0] != HELLO_VERSION)
		return WM_ERR_MALFORMED;
	h->version = p[0];
	h->tunnel_no = p[1];
	h->flags = p[2] & HELLO_FLAGS_KNOWN;
	memcpy(h->timestamp, p + 4, HELLO_TIMESTAMP_LEN);
	memcpy(h->session_id, p + 16, HELLO_SESSION_ID_LEN);
	return decode_params(p + CLIENT_PARAMS_AT, &h->params);
}

int hello_server_encode(const struct hello_server *h, uint8_t *out, size_t cap)
{
	if (cap < HELLO_SERVER_LEN)
		return WM_ERR_RANGE;
	out[0] = h->version;
	out[1] = h->flags;
	out[2] = 0;
	out[3] = 0;
	encode_params(out + SERVER_PARAMS_AT, &h->params);
	bytes_store_be64(out + HELLO_SERVER_MIN_LEN, h->epoch);
	return HELLO_SERVER_LEN;
}

int hello_server_decode(const uint8_t *p, size_t len, struct hello_server *h)
{
	if (len < HELLO_SERVER_MIN_LEN)
		return WM_ERR_AGAIN;
	if (p[0] != HELLO_VERSION)
		return WM_ERR_MALFORMED;
	h->version = p[0];
	h->flags = p[1] & HELLO_FLAGS_KNOWN;
	h->epoch = 0;
	if (len >= HELLO_SERVER_LEN)
		h->epoch = bytes_load_be64(p + HELLO_SERVER_MIN_LEN);
	else
		h->flags &= (uint8_t)~HELLO_FLAG_SESSIONS;
	return decode_params(p + SERVER_PARAMS_AT, &h->params);
}
