/*
 * libFuzzer target for the SOCKS5 parsers: walks the input as a client
 * session would arrive (greeting, then a username/password request when one
 * starts with VER 1, then the request) and also feeds the whole input to each
 * parser. Whatever a parser accepts must fit in the input, be NUL-terminated,
 * and every shorter prefix of it must be reported as incomplete.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wanmux/err.h"
#include "wanmux/socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_rc(int rc, size_t used, size_t len)
{
	if (rc != WM_OK && rc != WM_ERR_AGAIN && rc != WM_ERR_MALFORMED && rc != WM_ERR_RANGE)
		__builtin_trap();
	if ((rc == WM_OK || rc == WM_ERR_RANGE) && (used == 0 || used > len))
		__builtin_trap();
}

static int greeting(const uint8_t *buf, size_t len, size_t *used)
{
	bool none = false, userpass = false;
	int rc;

	*used = 0;
	rc = socks5_parse_greeting(buf, len, used, &none, &userpass);
	check_rc(rc, *used, len);
	if (rc == WM_OK) {
		size_t again;

		if (*used != 2u + buf[1])
			__builtin_trap();
		for (size_t n = 0; n < *used; n++)
			if (socks5_parse_greeting(buf, n, &again, &none, &userpass) != WM_ERR_AGAIN)
				__builtin_trap();
	}
	return rc;
}

static int userpass(const uint8_t *buf, size_t len, size_t *used)
{
	char user[256], pass[256];
	int rc;

	*used = 0;
	rc = socks5_parse_userpass(buf, len, used, user, pass);
	check_rc(rc, *used, len);
	if (rc == WM_OK) {
		size_t ulen = strnlen(user, sizeof user), plen = strnlen(pass, sizeof pass);
		size_t again;

		if (ulen == 0 || ulen == sizeof user || plen == 0 || plen == sizeof pass ||
		    *used != 3 + ulen + plen || memcmp(user, buf + 2, ulen) != 0 ||
		    memcmp(pass, buf + 3 + ulen, plen) != 0)
			__builtin_trap();
		for (size_t n = 0; n < *used; n++)
			if (socks5_parse_userpass(buf, n, &again, user, pass) != WM_ERR_AGAIN)
				__builtin_trap();
	}
	return rc;
}

static int request(const uint8_t *buf, size_t len, size_t *used)
{
	struct socks5_request r;
	int rc;

	*used = 0;
	rc = socks5_parse_request(buf, len, used, &r);
	check_rc(rc, *used, len);
	if (rc == WM_ERR_RANGE && *used != 4)
		__builtin_trap();
	if (rc == WM_OK) {
		size_t again;

		if (r.cmd != buf[1] || r.target.port == 0)
			__builtin_trap();
		if (r.target.type == FRAME_ADDR_NAME &&
		    (r.target.name_len == 0 || strlen(r.target.u.name) != r.target.name_len))
			__builtin_trap();
		for (size_t n = 0; n < *used; n++)
			if (socks5_parse_request(buf, n, &again, &r) != WM_ERR_AGAIN)
				__builtin_trap();
	}
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t used, pos = 0;
	uint8_t reply[SOCKS5_REPLY_MAX];

	greeting(data, size, &used);
	userpass(data, size, &used);
	request(data, size, &used);

	if (greeting(data, size, &used) != WM_OK)
		return 0;
	pos += used;
	if (pos < size && data[pos] == SOCKS5_USERPASS_VERSION) {
		if (userpass(data + pos, size - pos, &used) != WM_OK)
			return 0;
		pos += used;
	}
	request(data + pos, size - pos, &used);
	if (socks5_format_reply(reply, size > 0 ? data[0] : 0, NULL) != 10)
		__builtin_trap();
	return 0;
}
