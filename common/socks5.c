/*
 * SOCKS5 and RFC 1929 message parsing and reply formatting over byte buffers.
 * Every parser looks at a field only once the bytes before it are known to be
 * present, and rejects a bad field as soon as it arrives rather than waiting
 * for the rest of the message.
 */
#include "wanmux/socks5.h"

#include <netinet/in.h>
#include <string.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/netaddr.h"

int socks5_parse_greeting(const uint8_t *buf, size_t len, size_t *used, bool *offers_none,
			  bool *offers_userpass)
{
	size_t nmethods, i;
	bool none = false, userpass = false;

	if (len < 1)
		return WM_ERR_AGAIN;
	if (buf[0] != SOCKS5_VERSION)
		return WM_ERR_MALFORMED;
	if (len < 2)
		return WM_ERR_AGAIN;
	nmethods = buf[1];
	if (nmethods == 0)
		return WM_ERR_MALFORMED;
	if (len < 2 + nmethods)
		return WM_ERR_AGAIN;
	for (i = 0; i < nmethods; i++) {
		if (buf[2 + i] == SOCKS5_METHOD_NONE)
			none = true;
		else if (buf[2 + i] == SOCKS5_METHOD_USERPASS)
			userpass = true;
	}
	*used = 2 + nmethods;
	*offers_none = none;
	*offers_userpass = userpass;
	return 0;
}

/*
 * Copies a length-prefixed field of 1..255 bytes holding no NUL; printable
 * (no control byte) when it is a name that reaches the logs.
 */
static int copy_field(const uint8_t *field, size_t field_len, bool printable, char out[256])
{
	if (memchr(field, 0, field_len) != NULL)
		return WM_ERR_MALFORMED;
	for (size_t i = 0; printable && i < field_len; i++)
		if (field[i] < 0x20 || field[i] == 0x7f)
			return WM_ERR_MALFORMED;
	memcpy(out, field, field_len);
	out[field_len] = '\0';
	return 0;
}

int socks5_parse_userpass(const uint8_t *buf, size_t len, size_t *used, char user[256],
			  char pass[256])
{
	size_t ulen, plen;
	int rc;

	if (len < 1)
		return WM_ERR_AGAIN;
	if (buf[0] != SOCKS5_USERPASS_VERSION)
		return WM_ERR_MALFORMED;
	if (len < 2)
		return WM_ERR_AGAIN;
	ulen = buf[1];
	if (ulen == 0)
		return WM_ERR_MALFORMED;
	if (len < 2 + ulen + 1)
		return WM_ERR_AGAIN;
	plen = buf[2 + ulen];
	if (plen == 0)
		return WM_ERR_MALFORMED;
	if (len < 3 + ulen + plen)
		return WM_ERR_AGAIN;
	rc = copy_field(buf + 2, ulen, true, user);
	if (rc != 0)
		return rc;
	rc = copy_field(buf + 3 + ulen, plen, false, pass);
	if (rc != 0)
		return rc;
	*used = 3 + ulen + plen;
	return 0;
}

int socks5_parse_request(const uint8_t *buf, size_t len, size_t *used, struct socks5_request *out)
{
	struct frame_addr a;
	size_t addr_len, need;
	const uint8_t *addr;

	if (len < 1)
		return WM_ERR_AGAIN;
	if (buf[0] != SOCKS5_VERSION)
		return WM_ERR_MALFORMED;
	if (len < 3)
		return WM_ERR_AGAIN;
	/* RFC 1928 section 4: RSV is X'00'. A client that sets it speaks something else. */
	if (buf[2] != 0)
		return WM_ERR_MALFORMED;
	if (len < 4)
		return WM_ERR_AGAIN;

	memset(&a, 0, sizeof a);
	switch (buf[3]) {
	case FRAME_ADDR_IPV4:
		addr_len = 4;
		need = 4 + addr_len + 2;
		break;
	case FRAME_ADDR_IPV6:
		addr_len = 16;
		need = 4 + addr_len + 2;
		break;
	case FRAME_ADDR_NAME:
		if (len < 5)
			return WM_ERR_AGAIN;
		addr_len = buf[4];
		if (addr_len == 0)
			return WM_ERR_MALFORMED;
		need = 5 + addr_len + 2;
		break;
	default:
		out->cmd = buf[1];
		*used = 4;
		return WM_ERR_RANGE;
	}
	if (len < need)
		return WM_ERR_AGAIN;

	a.type = buf[3];
	addr = buf + need - 2 - addr_len;
	a.port = bytes_load_be16(buf + need - 2);
	if (a.port == 0)
		return WM_ERR_MALFORMED;
	if (a.type == FRAME_ADDR_IPV4) {
		memcpy(a.u.ipv4, addr, 4);
	} else if (a.type == FRAME_ADDR_IPV6) {
		memcpy(a.u.ipv6, addr, 16);
	} else {
		if (!netaddr_hostname_valid((const char *)addr, addr_len))
			return WM_ERR_MALFORMED;
		memcpy(a.u.name, addr, addr_len);
		a.u.name[addr_len] = '\0';
		a.name_len = (uint8_t)addr_len;
	}
	out->cmd = buf[1];
	out->target = a;
	*used = need;
	return 0;
}

size_t socks5_format_reply(uint8_t out[SOCKS5_REPLY_MAX], uint8_t rep, const struct sockaddr *bound)
{
	out[0] = SOCKS5_VERSION;
	out[1] = rep;
	out[2] = 0;
	if (bound != NULL && bound->sa_family == AF_INET6) {
		struct sockaddr_in6 sin6;

		/* Copied out: the caller's sockaddr need not be aligned for sockaddr_in6. */
		memcpy(&sin6, bound, sizeof sin6);
		out[3] = FRAME_ADDR_IPV6;
		memcpy(out + 4, &sin6.sin6_addr, 16);
		memcpy(out + 20, &sin6.sin6_port, 2); /* already network order */
		return 22;
	}
	out[3] = FRAME_ADDR_IPV4;
	if (bound != NULL && bound->sa_family == AF_INET) {
		struct sockaddr_in sin;

		memcpy(&sin, bound, sizeof sin);
		memcpy(out + 4, &sin.sin_addr, 4);
		memcpy(out + 8, &sin.sin_port, 2);
	} else {
		memset(out + 4, 0, 6);
	}
	return 10;
}

size_t socks5_format_method(uint8_t out[2], uint8_t method)
{
	out[0] = SOCKS5_VERSION;
	out[1] = method;
	return 2;
}

size_t socks5_format_userpass_status(uint8_t out[2], bool ok)
{
	out[0] = SOCKS5_USERPASS_VERSION;
	out[1] = ok ? 0x00 : 0x01;
	return 2;
}

uint8_t socks5_rep_for_error(uint32_t frame_error)
{
	switch (frame_error) {
	case FRAME_ERR_NONE:
		return SOCKS5_REP_SUCCEEDED;
	case FRAME_ERR_NOT_ALLOWED:
		return SOCKS5_REP_NOT_ALLOWED;
	case FRAME_ERR_HOST_UNKNOWN:
	case FRAME_ERR_CONNECT_FAILED:
		return SOCKS5_REP_HOST_UNREACHABLE;
	case FRAME_ERR_REFUSED:
		return SOCKS5_REP_CONNECTION_REFUSED;
	case FRAME_ERR_TIMEOUT:
		return SOCKS5_REP_TTL_EXPIRED;
	}
	return SOCKS5_REP_GENERAL_FAILURE;
}
