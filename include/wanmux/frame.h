/*
 * Mux frames: encode and decode over byte buffers. Pure code with no I/O and
 * no allocation; the only module that knows offsets on the wire. Several
 * frames travel in one record (record.h); no frame crosses a record boundary.
 *
 * Every frame starts with an 8-byte big-endian header:
 *
 *    0        1        2        3        4        5        6        7
 *   +--------+--------+--------+--------+--------+--------+--------+--------+
 *   |  type  | flags  |   body length   |            stream id              |
 *   +--------+--------+--------+--------+--------+--------+--------+--------+
 *
 * Bodies (all integers big-endian):
 *   OPEN         atype u8 | port u16 | addr: 4 bytes (IPv4), 16 (IPv6) or
 *                u8 len + len bytes of name (1..255, no NUL)
 *   OPEN_RESULT  error u32 (FRAME_ERR_*; 0 = connected)
 *   DATA         offset u64 | [raw_len u32 if LZ4 or ZLIB] | payload
 *   WINDOW       max_offset u64 (stream 0: the whole session)
 *   RESET        error u32 | final_offset u64
 *   PING, PONG   opaque u64                    (stream 0)
 *   GOAWAY       error u32                     (stream id = last stream accepted;
 *                                             no new streams after it)
 *   RESUME       recv_offset u64: what this side has received on the stream
 *                (bytes, + 1 once FIN arrived); the sender resends from there
 *   ACK          recv_offset u64: as RESUME, but only frees what it covers
 *   LISTEN       like OPEN: where the server should listen for a reverse
 *                forward (stream id = the client's request id, not a stream)
 *   LISTEN_RESULT error u32 (stream id = the request id)
 *   REKEY        flags = step (FRAME_REKEY_*), stream 0:
 *                REQUEST and DONE empty, OFFER and ANSWER an X25519 public
 *                key (32 bytes); see rekey.h for the exchange
 */
#ifndef WANMUX_FRAME_H
#define WANMUX_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HEADER_LEN 8
#define FRAME_BODY_MAX 65535
/* Largest uncompressed payload one DATA frame may carry. */
#define FRAME_DATA_RAW_MAX 16384
/* Largest raw_len of a compressed DATA frame: 64 KiB to a peer whose hello
 * has HELLO_FLAG_BIG_DATA, else FRAME_DATA_RAW_MAX. Per-frame zlib on the
 * bench's text: 3.9x at 16 KiB, 5.1x at 64 KiB. */
#define FRAME_DATA_ZRAW_MAX 65536
/* Header plus offset plus raw_len: the most a DATA frame adds to its payload. */
#define FRAME_DATA_OVERHEAD_MAX (FRAME_HEADER_LEN + 12)
#define FRAME_NAME_MAX 255

enum frame_type {
	FRAME_OPEN = 1,
	FRAME_OPEN_RESULT = 2,
	FRAME_DATA = 3,
	FRAME_WINDOW = 4,
	FRAME_RESET = 5,
	FRAME_PING = 6,
	FRAME_PONG = 7,
	FRAME_GOAWAY = 8,
	FRAME_RESUME = 9,
	FRAME_LISTEN = 10,
	FRAME_LISTEN_RESULT = 11,
	FRAME_REKEY = 12,
	FRAME_ACK = 13,
};

/* DATA flags. LZ4 and ZLIB are exclusive; other bits must be zero. */
#define FRAME_FLAG_FIN 0x01
#define FRAME_FLAG_LZ4 0x02
#define FRAME_FLAG_ZLIB 0x04
/* OPEN and OPEN_RESULT: sent again after the path that carried the first copy
 * was lost, or an OPEN sent on two paths (duplication), so the receiver may
 * already have it (then it is ignored). */
#define FRAME_FLAG_RESENT 0x01

/*
 * REKEY steps, carried in the flags byte (a number, not bits). REQUEST: the
 * server asks the client to rekey. OFFER: the client's fresh ephemeral key.
 * ANSWER: the server's; it is the last frame the server seals with its old key.
 * DONE: the last frame the client seals with its old key.
 */
#define FRAME_REKEY_REQUEST 1
#define FRAME_REKEY_OFFER 2
#define FRAME_REKEY_ANSWER 3
#define FRAME_REKEY_DONE 4
#define FRAME_REKEY_KEY_LEN 32

/* Error codes carried in OPEN_RESULT, LISTEN_RESULT, RESET and GOAWAY. */
enum frame_error {
	FRAME_ERR_NONE = 0,
	FRAME_ERR_PROTOCOL = 1,
	FRAME_ERR_INTERNAL = 2,
	FRAME_ERR_FLOW = 3,
	FRAME_ERR_REFUSED = 4,	      /* target actively refused the connection */
	FRAME_ERR_CONNECT_FAILED = 5, /* target unreachable */
	FRAME_ERR_TIMEOUT = 6,
	FRAME_ERR_STREAM_LIMIT = 7,
	FRAME_ERR_CANCEL = 8,
	FRAME_ERR_NOT_ALLOWED = 9, /* no allow rule permits the target */
	FRAME_ERR_HOST_UNKNOWN = 10,
	FRAME_ERR_TUNNEL_LOST = 11,
	FRAME_ERR_GOING_AWAY = 12, /* OPEN after the receiver's GOAWAY: never started */
};

enum frame_addr_type {
	FRAME_ADDR_IPV4 = 1,
	FRAME_ADDR_NAME = 3,
	FRAME_ADDR_IPV6 = 4,
};

struct frame_addr {
	uint8_t type; /* enum frame_addr_type */
	uint16_t port;
	uint8_t name_len; /* FRAME_ADDR_NAME only */
	union {
		uint8_t ipv4[4];
		uint8_t ipv6[16];
		char name[FRAME_NAME_MAX + 1]; /* NUL-terminated after decode */
	} u;
};

/* A decoded frame. DATA's payload points into the buffer given to frame_decode. */
struct frame {
	uint8_t type;
	uint8_t flags;
	uint32_t stream_id;
	union {
		struct frame_addr open; /* OPEN, LISTEN */
		uint32_t error;		/* OPEN_RESULT, LISTEN_RESULT, GOAWAY */
		struct {
			uint64_t offset;
			uint32_t raw_len; /* uncompressed length; == payload_len when raw */
			const uint8_t *payload;
			size_t payload_len;
		} data;
		uint64_t max_offset; /* WINDOW */
		struct {
			uint32_t error;
			uint64_t final_offset;
		} reset;
		uint64_t opaque;			/* PING, PONG */
		uint64_t recv_offset;			/* RESUME, ACK */
		uint8_t rekey_key[FRAME_REKEY_KEY_LEN]; /* REKEY OFFER and ANSWER */
	} u;
};

/*
 * Decodes one frame from buf[0..len). On success fills *out, sets *used to the
 * frame's total length and returns 0. Returns WM_ERR_AGAIN when buf holds only
 * part of a frame and WM_ERR_MALFORMED for an unknown type, a body length that
 * does not fit the type (or REKEY step), stray flags, a stream id not allowed for the type, a
 * compressed raw_len of 0 or above FRAME_DATA_ZRAW_MAX, or a bad address.
 */
int frame_decode(const uint8_t *buf, size_t len, struct frame *out, size_t *used);

/*
 * Encodes f (any type but DATA) into buf. Returns the number of bytes written
 * (> 0) or WM_ERR_RANGE when cap is too small or a field is out of range.
 */
int frame_encode(const struct frame *f, uint8_t *buf, size_t cap);

/*
 * Writes the header, offset and (when flags has LZ4 or ZLIB) raw_len of a DATA
 * frame whose payload_len bytes the caller places right after it. Returns the
 * bytes written (16 or 20) or WM_ERR_RANGE. Lets a compressor write the payload
 * straight into the record buffer.
 */
int frame_encode_data_header(uint8_t *buf, size_t cap, uint32_t stream_id, uint8_t flags,
			     uint64_t offset, uint32_t raw_len, size_t payload_len);

/* Header length of a DATA frame with these flags (16 or 20). */
size_t frame_data_header_len(uint8_t flags);

/* "OPEN", "DATA", ... or "UNKNOWN", for logs. */
const char *frame_type_name(uint8_t type);

/* "refused", "not allowed", ... for logs. */
const char *frame_error_name(uint32_t error);

#endif
