/*
 * The access record of one stream: who opened it, from where, to what, the
 * bytes each way and how it ended; one logfmt line per finished stream
 * (access_format) and the rows of the admin /status. Pure: no I/O.
 */
#ifndef WANMUX_ACCESS_H
#define WANMUX_ACCESS_H

#include <stddef.h>
#include <stdint.h>

/* Where a stream came from. The server cannot see the client's front end:
 * streams a client opened are "tunnel" there. */
enum access_frontend {
	ACCESS_FORWARD,
	ACCESS_SOCKS,
	ACCESS_HTTP,
	ACCESS_TRANSPARENT,
	ACCESS_REVERSE,
	ACCESS_TUNNEL,
	ACCESS_FRONTEND_COUNT,
};

/* How a stream ended (the access line's result=). */
enum access_result {
	ACCESS_OK,	    /* both directions finished with FIN */
	ACCESS_REFUSED,	    /* no allow rule, or the target refused the connection */
	ACCESS_UNREACHABLE, /* connect failed, unknown host */
	ACCESS_RESET,	    /* either end reset it (RST, RESET frame, local error) */
	ACCESS_TIMEOUT,	    /* connect or request deadline passed */
	ACCESS_LIMIT,	    /* stream limit */
	ACCESS_TUNNEL_LOST, /* the tunnel went away under it, or never came */
	ACCESS_RESULT_COUNT,
};

/* Which end of the stream the local socket is: it decides what up means. */
enum access_side {
	ACCESS_SIDE_USER,   /* client: the application; up = read from it */
	ACCESS_SIDE_TARGET, /* server (and client reverse targets): up = written to it */
};

#define ACCESS_FIELD_MAX 96
#define ACCESS_LINE_MAX 1000

struct access_record {
	enum access_frontend frontend;
	enum access_side side;
	enum access_result result;
	char client[ACCESS_FIELD_MAX]; /* shortened client key */
	char src[ACCESS_FIELD_MAX];
	char target[600];	     /* what was asked for: host:port (a name up to 255) */
	char addr[ACCESS_FIELD_MAX]; /* what was actually connected */
	uint64_t up, down;	     /* application bytes */
	double wire_up, wire_down;   /* estimate, see relay.c */
	uint64_t started_ms;	     /* CLOCK_MONOTONIC */
};

const char *access_frontend_name(enum access_frontend f);
const char *access_result_name(enum access_result r);

/* The result for a FRAME_ERR_* code that ended a stream. */
enum access_result access_result_for_error(uint32_t frame_error);

/*
 * One logfmt value into out (len bytes, NUL-terminated, truncated if need
 * be): as is when it has no space, '=', '"', '\\' or control byte, else
 * quoted with JSON-style escapes; "" for an empty value.
 */
void access_logfmt_value(const char *v, char *out, size_t len);

/*
 * The access line of rec ("client=... result=...") into out (at least
 * ACCESS_LINE_MAX bytes); ms is the stream's age when it ended.
 */
void access_format(const struct access_record *rec, uint64_t ms, char *out, size_t len);

/*
 * Length of the valid UTF-8 sequence at p (1 to 4; NUL-terminated input), or
 * 0 when the bytes there are not valid UTF-8 (overlong, surrogate, cut
 * short). Peers choose target names: encoders replace such bytes.
 */
size_t access_utf8_len(const unsigned char *p);

/* The first 8 characters of a base64 key: enough to tell keys apart in logs. */
void access_short_key(const char *b64, char *out, size_t len);

#endif
