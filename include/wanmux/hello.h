/*
 * The hello payloads carried inside the Noise handshake: the client's in
 * msg1, the server's in msg2. Pure code with no I/O and no allocation; the
 * only module that knows hello offsets. What a hello means (who may connect,
 * replay checks, whether the tunnel rekeys) is decided by tunnel.c and the
 * server, not here.
 *
 * Client hello, 44 bytes, integers big-endian (docs/PROTOCOL.md 4.1):
 *
 *    0        1        2        3
 *   +--------+--------+--------+--------+
 *   |version | tunnel | flags  |reserved|   version 1, tunnel = tunnel_no
 *   +--------+--------+--------+--------+
 *   |    timestamp: TAI64N, 12 bytes    |   4 .. 15
 *   +--------+--------+--------+--------+
 *   |        session id, 16 bytes       |  16 .. 31
 *   +--------+--------+--------+--------+
 *   |         stream_window u32         |  32
 *   |         session_window u32        |  36
 *   |          max_streams u32          |  40
 *   +--------+--------+--------+--------+
 *
 * Server hello, 24 bytes (docs/PROTOCOL.md 4.2):
 *
 *    0        1        2        3
 *   +--------+--------+--------+--------+
 *   |version | flags  |    reserved     |
 *   +--------+--------+--------+--------+
 *   |         stream_window u32         |   4
 *   |         session_window u32        |   8
 *   |          max_streams u32          |  12
 *   +--------+--------+--------+--------+
 *   |      session epoch u64, 8 bytes   |  16 .. 23
 *   +--------+--------+--------+--------+
 *
 * A server hello of 16 bytes (before sessions across tunnels) decodes with
 * epoch 0 and without HELLO_FLAG_SESSIONS.
 *
 * Reserved bytes are sent as zero and ignored on receipt.
 *
 * Room to grow: flag bits a receiver does not know are dropped on decode (an
 * older peer ignores a newer one's flags), and bytes after the known length
 * are ignored, so a later version may add a flag (session resume) or append
 * fields without breaking peers of this one.
 */
#ifndef WANMUX_HELLO_H
#define WANMUX_HELLO_H

#include <stddef.h>
#include <stdint.h>

#include "wanmux/session.h"

#define HELLO_VERSION 1
#define HELLO_CLIENT_LEN 44
#define HELLO_SERVER_LEN 24
#define HELLO_SERVER_MIN_LEN 16 /* what an older server sends */
#define HELLO_TIMESTAMP_LEN 12
#define HELLO_SESSION_ID_LEN 16
/* Windows a peer may announce: below the minimum a tunnel would crawl,
 * above 1 GiB they are absurd. */
#define HELLO_WINDOW_MIN SESSION_MIN_WINDOW
#define HELLO_WINDOW_MAX (1u << 30)

/* Flags (client byte 2, server byte 1). REKEY: this side takes part in
 * in-band rekeys (rekey.h); a tunnel rekeys only when both hellos have it. */
#define HELLO_FLAG_REKEY 0x01
/* SESSIONS (both hellos): this side runs sessions across tunnels
 * (docs/PROTOCOL.md 8.4-8.5: ACK, RESUME, resending). A tunnel needs it in
 * both hellos: a peer without it would close the tunnel at the first ACK, so
 * it is refused at the handshake with a line that names the cause. */
#define HELLO_FLAG_SESSIONS 0x02
/* BIG_DATA: this side takes compressed DATA frames whose raw_len is up to
 * FRAME_DATA_ZRAW_MAX (64 KiB); a peer sends them only when the hello of
 * this side has it (older versions close a tunnel at raw_len > 16 KiB). */
#define HELLO_FLAG_BIG_DATA 0x04
/* The flags this version knows; decode keeps only these. */
#define HELLO_FLAGS_KNOWN (HELLO_FLAG_REKEY | HELLO_FLAG_SESSIONS | HELLO_FLAG_BIG_DATA)
/* What this version's hellos say. */
#define HELLO_FLAGS_OURS HELLO_FLAGS_KNOWN

/* What the client says about itself in msg1. */
struct hello_client {
	uint8_t version;   /* HELLO_VERSION */
	uint8_t tunnel_no; /* the client's slot, 0 .. tunnels-1 */
	uint8_t flags;	   /* HELLO_FLAG_* */
	/* TAI64N: strictly increases per client key and tunnel_no */
	uint8_t timestamp[HELLO_TIMESTAMP_LEN];
	uint8_t session_id[HELLO_SESSION_ID_LEN]; /* random, one per client session */
	struct session_params params;		  /* what the client accepts */
};

/* What the server answers in msg2. */
struct hello_server {
	uint8_t version; /* HELLO_VERSION */
	uint8_t flags;	 /* HELLO_FLAG_* */
	struct session_params params;
	/* Names the server's instance of the session this tunnel joined
	 * (random, never 0): the same for every tunnel of one session, a new one
	 * when the server starts the session again (it restarted, or the session
	 * timed out there). A client whose session had another epoch learns that
	 * the server lost its streams. */
	uint64_t epoch;
};

/*
 * Writes h to out (cap bytes) as given, reserved bytes zero; no checks on
 * the values, so tests can build hellos a peer must refuse. Returns
 * HELLO_CLIENT_LEN, or WM_ERR_RANGE when cap is too small.
 */
int hello_client_encode(const struct hello_client *h, uint8_t *out, size_t cap);

/*
 * Reads a client hello from the first len bytes of p into *h. Returns WM_OK
 * (the first HELLO_CLIENT_LEN bytes were read; later ones are ignored),
 * WM_ERR_AGAIN when len < HELLO_CLIENT_LEN, or WM_ERR_MALFORMED for a version
 * other than HELLO_VERSION or windows / max_streams outside the limits above.
 * Unknown flag bits and the reserved byte are ignored. *h is undefined after
 * an error.
 */
int hello_client_decode(const uint8_t *p, size_t len, struct hello_client *h);

/* As hello_client_encode, for the server hello: HELLO_SERVER_LEN or WM_ERR_RANGE. */
int hello_server_encode(const struct hello_server *h, uint8_t *out, size_t cap);

/* As hello_client_decode, for the server hello: HELLO_SERVER_LEN bytes, or
 * HELLO_SERVER_MIN_LEN from an older server (epoch 0, no SESSIONS flag). */
int hello_server_decode(const uint8_t *p, size_t len, struct hello_server *h);

#endif
