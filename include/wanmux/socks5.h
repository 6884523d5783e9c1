/*
 * SOCKS5 (RFC 1928) and its username/password sub-negotiation (RFC 1929):
 * pure parsers for what a client sends and formatters for what the proxy
 * answers. No sockets and no allocation; the client's front end owns the I/O.
 *
 * Client messages (integers big-endian):
 *
 *   greeting   VER=5 | NMETHODS (1..255) | METHODS[NMETHODS]
 *   userpass   VER=1 | ULEN (1..255) | UNAME | PLEN (1..255) | PASSWD
 *   request    VER=5 | CMD | RSV=0 | ATYP | DST.ADDR | DST.PORT u16
 *              ATYP 1: 4 bytes, 3: u8 len (1..255) + name, 4: 16 bytes
 *
 * Proxy answers:
 *
 *   method     VER=5 | METHOD
 *   status     VER=1 | STATUS (0 = success)
 *   reply      VER=5 | REP | RSV=0 | ATYP | BND.ADDR | BND.PORT u16
 */
#ifndef WANMUX_SOCKS5_H
#define WANMUX_SOCKS5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wanmux/frame.h"

#define SOCKS5_VERSION 0x05
#define SOCKS5_USERPASS_VERSION 0x01

/* Authentication methods (greeting and method answer). */
#define SOCKS5_METHOD_NONE 0x00
#define SOCKS5_METHOD_USERPASS 0x02
#define SOCKS5_METHOD_UNACCEPTABLE 0xff

/* Commands. */
#define SOCKS5_CMD_CONNECT 0x01
#define SOCKS5_CMD_BIND 0x02
#define SOCKS5_CMD_UDP_ASSOCIATE 0x03

/* Reply codes, RFC 1928 section 6. */
#define SOCKS5_REP_SUCCEEDED 0x00
#define SOCKS5_REP_GENERAL_FAILURE 0x01
#define SOCKS5_REP_NOT_ALLOWED 0x02
#define SOCKS5_REP_NETWORK_UNREACHABLE 0x03
#define SOCKS5_REP_HOST_UNREACHABLE 0x04
#define SOCKS5_REP_CONNECTION_REFUSED 0x05
#define SOCKS5_REP_TTL_EXPIRED 0x06
#define SOCKS5_REP_COMMAND_UNSUPPORTED 0x07
#define SOCKS5_REP_ADDRTYPE_UNSUPPORTED 0x08

/* Longest reply: IPv6 bound address (4 + 16 + 2). */
#define SOCKS5_REPLY_MAX 22

/*
 * Parses the client greeting in buf[0..len). On success sets *used to its
 * length (2 + NMETHODS), tells whether it offers "no authentication" and
 * "username/password", and returns 0. Returns WM_ERR_AGAIN when buf holds only
 * part of the greeting and WM_ERR_MALFORMED when VER is not 5 or NMETHODS is 0
 * (both detected as soon as the byte arrives). Outputs are untouched on error.
 */
int socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *used, bool *offers_none,
			  bool *offers_userpass);

/*
 * Parses an RFC 1929 username/password request. On success copies the name
 * and password into user and pass, NUL-terminated, sets *used and returns 0.
 * WM_ERR_AGAIN when incomplete; WM_ERR_MALFORMED when VER is not 1, ULEN or
 * PLEN is 0, or either field holds a NUL byte. user and pass may have been
 * written to on error (the caller wipes them either way).
 */
int socks5_parse_userpass(const uint8_t *buf, size_t len, size_t *used, char user[256],
			  char pass[256]);

struct socks5_request {
	uint8_t cmd;		  /* as sent; the caller answers 7 to anything but CONNECT */
	struct frame_addr target; /* FRAME_ADDR_IPV4, _NAME (NUL-terminated) or _IPV6 */
};

/*
 * Parses a request. On success fills *out, sets *used and returns 0.
 * WM_ERR_AGAIN when incomplete. WM_ERR_MALFORMED when VER is not 5, RSV is
 * not 0, a name is empty or holds a NUL byte, or the port is 0. WM_ERR_RANGE
 * for an unknown ATYP (the caller answers SOCKS5_REP_ADDRTYPE_UNSUPPORTED);
 * the address length is then unknowable, so *used is set to 4 (the fixed
 * part) and the caller must close after replying. out->cmd is set on
 * WM_ERR_RANGE too; on other errors *out and *used are untouched.
 */
int socks5_parse_request(const uint8_t *buf, size_t len, size_t *used, struct socks5_request *out);

/*
 * Writes a reply with code rep and the bound address (AF_INET or AF_INET6;
 * NULL or any other family gives ATYP 1, 0.0.0.0:0) into out. Returns its
 * length: 10 for IPv4, 22 for IPv6.
 */
size_t socks5_format_reply(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep,
			   const struct sockaddr *bound);

/* Writes the method selection answer (VER 5, method). Returns 2. */
size_t socks5_format_method(uint8_t out[2], uint8_t method);

/* Writes the RFC 1929 status answer (VER 1; 0 when ok, 1 otherwise). Returns 2. */
size_t socks5_format_userpass_status(uint8_t out[2], bool ok);

/*
 * The reply code for a FRAME_ERR_* from OPEN_RESULT (or a local one such as
 * FRAME_ERR_TUNNEL_LOST):
 *   NONE            0 succeeded
 *   NOT_ALLOWED     2 connection not allowed by ruleset
 *   HOST_UNKNOWN    4 host unreachable (RFC 1928 has no "name not found";
 *                     the host cannot be reached by that name)
 *   CONNECT_FAILED  4 host unreachable (the server cannot tell a network
 *                     from a host failure, and names the host in its log)
 *   REFUSED         5 connection refused
 *   TIMEOUT         6 TTL expired: the usual mapping of ETIMEDOUT in SOCKS
 *                     servers (Dante, microsocks), shown by clients as a
 *                     timeout-like failure rather than a generic one
 *   anything else   1 general failure (internal, stream limit, tunnel lost)
 */
uint8_t socks5_rep_for_error(uint32_t frame_error);

#endif
