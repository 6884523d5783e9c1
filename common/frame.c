/*
 * Mux frame codec: checks every length, flag and stream id before touching a
 * body, so the rest of the program only ever sees well-formed frames. No I/O,
 * no allocation; DATA payloads are referenced in place, never copied.
 */
#include <string.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"
#include "wanmux/netaddr.h"

#define FRAME_DATA_FLAGS (FRAME_FLAG_FIN | FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB)
#define FRAME_COMPRESSED (FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB)

static void put_header(uint8_t *p, uint8_t type, uint8_t flags, uint16_t len, uint32_t stream_id)
{
	p[0] = type;
	p[1] = flags;
	bytes_store_be16(p + 2, len);
	bytes_store_be32(p + 4, stream_id);
}

/* Body length of each REKEY step; -1 for a step that does not exist. */
static int rekey_body_len(uint8_t step)
{
	switch (step) {
	case FRAME_REKEY_REQUEST:
	case FRAME_REKEY_DONE:
		return 0;
	case FRAME_REKEY_OFFER:
	case FRAME_REKEY_ANSWER:
		return FRAME_REKEY_KEY_LEN;
	}
	return -1;
}

/*
 * The rules that need only the header. Checked as soon as 8 bytes are in, so a
 * hostile peer cannot make us wait for up to 64 KiB of a frame we will refuse.
 * OPEN's exact length depends on its body and is checked later.
 */
static int check_header(uint8_t type, uint8_t flags, uint16_t len, uint32_t stream_id)
{
	switch (type) {
	case FRAME_DATA:
		if (flags & ~FRAME_DATA_FLAGS)
			return WM_ERR_MALFORMED;
		if ((flags & FRAME_COMPRESSED) == FRAME_COMPRESSED)
			return WM_ERR_MALFORMED;
		if (stream_id == 0)
			return WM_ERR_MALFORMED;
		if (flags & FRAME_COMPRESSED)
			return len >= 12 + 1 ? WM_OK : WM_ERR_MALFORMED;
		return len >= 8 && len - 8 <= FRAME_DATA_RAW_MAX ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_OPEN:
	case FRAME_LISTEN:
		/* Smallest is a 1-byte name (5), largest a 255-byte name (259).
		 * Only OPEN may be marked as sent again after a path loss. */
		if ((flags & ~(type == FRAME_OPEN ? FRAME_FLAG_RESENT : 0)) != 0 ||
		    stream_id == 0 || len < 3 + 2 || len > 3 + 1 + FRAME_NAME_MAX)
			return WM_ERR_MALFORMED;
		return WM_OK;
	case FRAME_OPEN_RESULT:
		return (flags & ~FRAME_FLAG_RESENT) == 0 && stream_id != 0 && len == 4
			   ? WM_OK
			   : WM_ERR_MALFORMED;
	case FRAME_LISTEN_RESULT:
		return flags == 0 && stream_id != 0 && len == 4 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_WINDOW:
		return flags == 0 && len == 8 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_RESET:
		return flags == 0 && stream_id != 0 && len == 12 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_PING:
	case FRAME_PONG:
		return flags == 0 && stream_id == 0 && len == 8 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_GOAWAY:
		return flags == 0 && len == 4 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_RESUME:
	case FRAME_ACK:
		return flags == 0 && stream_id != 0 && len == 8 ? WM_OK : WM_ERR_MALFORMED;
	case FRAME_REKEY:
		return stream_id == 0 && len == rekey_body_len(flags) ? WM_OK : WM_ERR_MALFORMED;
	}
	return WM_ERR_MALFORMED;
}

static int decode_open(const uint8_t *body, uint16_t len, struct frame_addr *a)
{
	a->type = body[0];
	a->port = bytes_load_be16(body + 1);
	switch (a->type) {
	case FRAME_ADDR_IPV4:
		if (len != 3 + 4)
			return WM_ERR_MALFORMED;
		memcpy(a->u.ipv4, body + 3, 4);
		return WM_OK;
	case FRAME_ADDR_IPV6:
		if (len != 3 + 16)
			return WM_ERR_MALFORMED;
		memcpy(a->u.ipv6, body + 3, 16);
		return WM_OK;
	case FRAME_ADDR_NAME:
		a->name_len = body[3];
		if (a->name_len == 0 || len != 3 + 1 + a->name_len)
			return WM_ERR_MALFORMED;
		/*
		 * One grammar for every name (netaddr.c): an embedded NUL would let
		 * "a.example\0evil" pass an allowlist as "a.example", and control bytes
		 * would reach the logs and the resolver.
		 */
		if (!netaddr_hostname_valid((const char *)body + 4, a->name_len))
			return WM_ERR_MALFORMED;
		memcpy(a->u.name, body + 4, a->name_len);
		a->u.name[a->name_len] = '\0';
		return WM_OK;
	}
	return WM_ERR_MALFORMED;
}

int frame_decode(const uint8_t *buf, size_t len, struct frame *out, size_t *used)
{
	uint8_t type, flags;
	uint16_t body_len;
	uint32_t stream_id;
	const uint8_t *body;
	int rc;

	if (len < FRAME_HEADER_LEN)
		return WM_ERR_AGAIN;
	type = buf[0];
	flags = buf[1];
	body_len = bytes_load_be16(buf + 2);
	stream_id = bytes_load_be32(buf + 4);
	rc = check_header(type, flags, body_len, stream_id);
	if (rc < 0)
		return rc;
	if (len - FRAME_HEADER_LEN < body_len)
		return WM_ERR_AGAIN;

	body = buf + FRAME_HEADER_LEN;
	memset(out, 0, sizeof(*out));
	out->type = type;
	out->flags = flags;
	out->stream_id = stream_id;
	switch (type) {
	case FRAME_OPEN:
	case FRAME_LISTEN:
		rc = decode_open(body, body_len, &out->u.open);
		if (rc < 0)
			return rc;
		break;
	case FRAME_OPEN_RESULT:
	case FRAME_LISTEN_RESULT:
	case FRAME_GOAWAY:
		out->u.error = bytes_load_be32(body);
		break;
	case FRAME_DATA:
		out->u.data.offset = bytes_load_be64(body);
		if (flags & FRAME_COMPRESSED) {
			out->u.data.raw_len = bytes_load_be32(body + 8);
			if (out->u.data.raw_len == 0 || out->u.data.raw_len > FRAME_DATA_ZRAW_MAX)
				return WM_ERR_MALFORMED;
			out->u.data.payload = body + 12;
			out->u.data.payload_len = (size_t)body_len - 12;
		} else {
			out->u.data.payload = body + 8;
			out->u.data.payload_len = (size_t)body_len - 8;
			out->u.data.raw_len = (uint32_t)out->u.data.payload_len;
		}
		break;
	case FRAME_WINDOW:
		out->u.max_offset = bytes_load_be64(body);
		break;
	case FRAME_RESET:
		out->u.reset.error = bytes_load_be32(body);
		out->u.reset.final_offset = bytes_load_be64(body + 4);
		break;
	case FRAME_PING:
	case FRAME_PONG:
		out->u.opaque = bytes_load_be64(body);
		break;
	case FRAME_RESUME:
	case FRAME_ACK:
		out->u.recv_offset = bytes_load_be64(body);
		break;
	case FRAME_REKEY:
		memcpy(out->u.rekey_key, body, body_len);
		break;
	}
	*used = FRAME_HEADER_LEN + (size_t)body_len;
	return WM_OK;
}

/* Body length of a non-DATA frame, or WM_ERR_RANGE when it would not decode. */
static int encoded_body_len(const struct frame *f)
{
	const struct frame_addr *a = &f->u.open;

	switch (f->type) {
	case FRAME_OPEN:
	case FRAME_LISTEN:
		switch (a->type) {
		case FRAME_ADDR_IPV4:
			return 3 + 4;
		case FRAME_ADDR_IPV6:
			return 3 + 16;
		case FRAME_ADDR_NAME:
			if (!netaddr_hostname_valid(a->u.name, a->name_len))
				return WM_ERR_RANGE;
			return 3 + 1 + a->name_len;
		}
		return WM_ERR_RANGE;
	case FRAME_OPEN_RESULT:
	case FRAME_LISTEN_RESULT:
	case FRAME_GOAWAY:
		return 4;
	case FRAME_WINDOW:
	case FRAME_PING:
	case FRAME_PONG:
	case FRAME_RESUME:
	case FRAME_ACK:
		return 8;
	case FRAME_RESET:
		return 12;
	case FRAME_REKEY:
		return rekey_body_len(f->flags) < 0 ? WM_ERR_RANGE : rekey_body_len(f->flags);
	}
	/* DATA goes through frame_encode_data_header; anything else is unknown. */
	return WM_ERR_RANGE;
}

int frame_encode(const struct frame *f, uint8_t *buf, size_t cap)
{
	uint8_t *body;
	int body_len;

	body_len = encoded_body_len(f);
	if (body_len < 0)
		return body_len;
	if (check_header(f->type, f->flags, (uint16_t)body_len, f->stream_id) < 0)
		return WM_ERR_RANGE;
	if (cap < FRAME_HEADER_LEN + (size_t)body_len)
		return WM_ERR_RANGE;

	body = buf + FRAME_HEADER_LEN;
	/* check_header allowed flags only where a type has them (REKEY's step). */
	put_header(buf, f->type, f->flags, (uint16_t)body_len, f->stream_id);
	switch (f->type) {
	case FRAME_OPEN:
	case FRAME_LISTEN:
		body[0] = f->u.open.type;
		bytes_store_be16(body + 1, f->u.open.port);
		if (f->u.open.type == FRAME_ADDR_IPV4) {
			memcpy(body + 3, f->u.open.u.ipv4, 4);
		} else if (f->u.open.type == FRAME_ADDR_IPV6) {
			memcpy(body + 3, f->u.open.u.ipv6, 16);
		} else {
			body[3] = f->u.open.name_len;
			memcpy(body + 4, f->u.open.u.name, f->u.open.name_len);
		}
		break;
	case FRAME_OPEN_RESULT:
	case FRAME_LISTEN_RESULT:
	case FRAME_GOAWAY:
		bytes_store_be32(body, f->u.error);
		break;
	case FRAME_WINDOW:
		bytes_store_be64(body, f->u.max_offset);
		break;
	case FRAME_RESET:
		bytes_store_be32(body, f->u.reset.error);
		bytes_store_be64(body + 4, f->u.reset.final_offset);
		break;
	case FRAME_PING:
	case FRAME_PONG:
		bytes_store_be64(body, f->u.opaque);
		break;
	case FRAME_RESUME:
	case FRAME_ACK:
		bytes_store_be64(body, f->u.recv_offset);
		break;
	case FRAME_REKEY:
		memcpy(body, f->u.rekey_key, (size_t)body_len);
		break;
	}
	return FRAME_HEADER_LEN + body_len;
}

size_t frame_data_header_len(uint8_t flags)
{
	return FRAME_HEADER_LEN + 8 + ((flags & FRAME_COMPRESSED) ? 4 : 0);
}

int frame_encode_data_header(uint8_t *buf, size_t cap, uint32_t stream_id, uint8_t flags,
			     uint64_t offset, uint32_t raw_len, size_t payload_len)
{
	size_t hlen = frame_data_header_len(flags);
	size_t body_len = hlen - FRAME_HEADER_LEN + payload_len;

	/* raw_len is only on the wire for compressed payloads; ignored otherwise. */
	if (flags & FRAME_COMPRESSED) {
		if (raw_len == 0 || raw_len > FRAME_DATA_ZRAW_MAX || payload_len == 0)
			return WM_ERR_RANGE;
	}
	if (payload_len > FRAME_BODY_MAX || body_len > FRAME_BODY_MAX)
		return WM_ERR_RANGE;
	if (check_header(FRAME_DATA, flags, (uint16_t)body_len, stream_id) < 0)
		return WM_ERR_RANGE;
	if (cap < hlen)
		return WM_ERR_RANGE;

	put_header(buf, FRAME_DATA, flags, (uint16_t)body_len, stream_id);
	bytes_store_be64(buf + FRAME_HEADER_LEN, offset);
	if (flags & FRAME_COMPRESSED)
		bytes_store_be32(buf + FRAME_HEADER_LEN + 8, raw_len);
	return (int)hlen;
}

const char *frame_type_name(uint8_t type)
{
	switch (type) {
	case FRAME_OPEN:
		return "OPEN";
	case FRAME_OPEN_RESULT:
		return "OPEN_RESULT";
	case FRAME_DATA:
		return "DATA";
	case FRAME_WINDOW:
		return "WINDOW";
	case FRAME_RESET:
		return "RESET";
	case FRAME_PING:
		return "PING";
	case FRAME_PONG:
		return "PONG";
	case FRAME_GOAWAY:
		return "GOAWAY";
	case FRAME_RESUME:
		return "RESUME";
	case FRAME_ACK:
		return "ACK";
	case FRAME_LISTEN:
		return "LISTEN";
	case FRAME_LISTEN_RESULT:
		return "LISTEN_RESULT";
	case FRAME_REKEY:
		return "REKEY";
	}
	return "UNKNOWN";
}

const char *frame_error_name(uint32_t error)
{
	switch (error) {
	case FRAME_ERR_NONE:
		return "no error";
	case FRAME_ERR_PROTOCOL:
		return "protocol error";
	case FRAME_ERR_INTERNAL:
		return "internal error";
	case FRAME_ERR_FLOW:
		return "flow control error";
	case FRAME_ERR_REFUSED:
		return "refused";
	case FRAME_ERR_CONNECT_FAILED:
		return "connect failed";
	case FRAME_ERR_TIMEOUT:
		return "timeout";
	case FRAME_ERR_STREAM_LIMIT:
		return "stream limit";
	case FRAME_ERR_CANCEL:
		return "cancelled";
	case FRAME_ERR_NOT_ALLOWED:
		return "not allowed";
	case FRAME_ERR_HOST_UNKNOWN:
		return "host unknown";
	case FRAME_ERR_TUNNEL_LOST:
		return "tunnel lost";
	case FRAME_ERR_GOING_AWAY:
		return "going away";
	}
	return "unknown error";
}
