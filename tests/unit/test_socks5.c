/*
 * SOCKS5 parser and formatter tests: tables of valid and invalid greetings,
 * RFC 1929 requests and CONNECT requests, every truncation of each valid
 * message, reply bytes, and the error-to-reply mapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/socks5.h"

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

struct greeting_vector {
	const char *what;
	const uint8_t *bytes;
	size_t len;
	int rc;
	bool none, userpass;
};

static const struct greeting_vector greetings[] = {
    {"none only", B(5, 1, 0), 0, true, false},
    {"userpass only", B(5, 1, 2), 0, false, true},
    {"both and gssapi", B(5, 3, 1, 2, 0), 0, true, true},
    {"neither", B(5, 2, 1, 0x80), 0, false, false},
    {"all 255", B(5, 1, 0xff), 0, false, false},
    {"socks4", B(4, 1, 0, 80, 127, 0, 0, 1, 0), WM_ERR_MALFORMED, false, false},
    {"http", B('G', 'E', 'T', ' '), WM_ERR_MALFORMED, false, false},
    {"zero methods", B(5, 0), WM_ERR_MALFORMED, false, false},
    {"bad version alone", B(0), WM_ERR_MALFORMED, false, false},
};

static void test_socks5_greeting_table(void **state)
{
	for (size_t i = 0; i < sizeof greetings / sizeof greetings[0]; i++) {
		const struct greeting_vector *v = &greetings[i];
		size_t used = 12345;
		bool none = false, userpass = false;
		int rc;

		rc = socks5_parse_greeting(v->bytes, v->len, &used, &none, &userpass);
		if (rc != v->rc)
			fail_msg("%s: rc %d, want %d", v->what, rc, v->rc);
		if (rc != 0) {
			assert_int_equal(used, 12345);
			continue;
		}
		assert_int_equal(used, v->len);
		if (none != v->none || userpass != v->userpass)
			fail_msg("%s: none %d userpass %d", v->what, none, userpass);
	}
}

static void test_socks5_greeting_truncated(void **state)
{
	for (size_t i = 0; i < sizeof greetings / sizeof greetings[0]; i++) {
		const struct greeting_vector *v = &greetings[i];

		if (v->rc != 0)
			continue;
		for (size_t n = 0; n < v->len; n++) {
			size_t used = 0;
			bool none, userpass;

			if (socks5_parse_greeting(v->bytes, n, &used, &none, &userpass) !=
			    WM_ERR_AGAIN)
				fail_msg("%s: prefix %zu not AGAIN", v->what, n);
		}
	}
}

static void test_socks5_greeting_trailing_bytes_left(void **state)
{
	/* A client that pipelines its request after the greeting. */
	const uint8_t buf[] = {5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80};
	size_t used = 0;
	bool none, userpass;

	assert_int_equal(socks5_parse_greeting(buf, sizeof buf, &used, &none, &userpass), 0);
	assert_int_equal(used, 3);
}

static void test_socks5_userpass_valid(void **state)
{
	const uint8_t buf[] = {1, 5, 'a', 'l', 'i', 'c', 'e', 3, 'p', ':', 'w', 0xaa};
	char user[256], pass[256];
	size_t used = 0;

	assert_int_equal(socks5_parse_userpass(buf, sizeof buf, &used, user, pass), 0);
	assert_int_equal(used, sizeof buf - 1);
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "p:w");
	for (size_t n = 0; n < sizeof buf - 1; n++)
		assert_int_equal(socks5_parse_userpass(buf, n, &used, user, pass), WM_ERR_AGAIN);
}

static void test_socks5_userpass_max_lengths(void **state)
{
	uint8_t buf[3 + 255 + 255];
	char user[256], pass[256];
	size_t used = 0;

	buf[0] = 1;
	buf[1] = 255;
	memset(buf + 2, 'u', 255);
	buf[257] = 255;
	memset(buf + 258, 'p', 255);
	assert_int_equal(socks5_parse_userpass(buf, sizeof buf, &used, user, pass), 0);
	assert_int_equal(used, sizeof buf);
	assert_int_equal(strlen(user), 255);
	assert_int_equal(strlen(pass), 255);
	for (size_t n = 0; n < sizeof buf; n++)
		assert_int_equal(socks5_parse_userpass(buf, n, &used, user, pass), WM_ERR_AGAIN);
}

struct bad_vector {
	const char *what;
	const uint8_t *bytes;
	size_t len;
};

static const struct bad_vector bad_userpass[] = {
    {"version 5", B(5, 1, 'a', 1, 'b')},
    {"version 0", B(0)},
    {"empty user", B(1, 0)},
    {"empty password", B(1, 1, 'a', 0)},
    {"NUL in user", B(1, 2, 'a', 0, 1, 'b')},
    {"NUL in password", B(1, 1, 'a', 2, 0, 'b')},
    /* User names reach the logs: no control bytes. */
    {"newline in user", B(1, 3, 'a', '\n', 'b', 1, 'p')},
    {"CR in user", B(1, 2, 'a', '\r', 1, 'p')},
    {"ESC in user", B(1, 4, 0x1b, '[', '2', 'J', 1, 'p')},
    {"DEL in user", B(1, 1, 0x7f, 1, 'p')},
    {"tab in user", B(1, 2, 'a', '\t', 1, 'p')},
};

static void test_socks5_userpass_utf8_user_any_password(void **state)
{
	/* "jos\xc3\xa9": a UTF-8 user name is fine (the logger escapes it);
	 * a password never reaches a log and may hold any byte but NUL. */
	const uint8_t buf[] = {1, 5, 'j', 'o', 's', 0xc3, 0xa9, 3, '\n', 0x1b, 0x7f};
	char user[256], pass[256];
	size_t used = 0;

	(void)state;
	assert_int_equal(socks5_parse_userpass(buf, sizeof buf, &used, user, pass), 0);
	assert_int_equal(used, sizeof buf);
	assert_string_equal(user, "jos\xc3\xa9");
	assert_string_equal(pass, "\n\x1b\x7f");
}

static void test_socks5_userpass_invalid(void **state)
{
	char user[256], pass[256];

	for (size_t i = 0; i < sizeof bad_userpass / sizeof bad_userpass[0]; i++) {
		const struct bad_vector *v = &bad_userpass[i];
		size_t used = 999;

		if (socks5_parse_userpass(v->bytes, v->len, &used, user, pass) != WM_ERR_MALFORMED)
			fail_msg("%s: not MALFORMED", v->what);
		assert_int_equal(used, 999);
	}
}

struct request_vector {
	const char *what;
	const uint8_t *bytes;
	size_t len;
	uint8_t cmd;
	struct frame_addr target;
};

static const struct request_vector requests[] = {
    {"CONNECT ipv4",
     B(5, 1, 0, 1, 198, 18, 0, 1, 0x01, 0xbb),
     1,
     {.type = FRAME_ADDR_IPV4, .port = 443, .u.ipv4 = {198, 18, 0, 1}}},
    {"CONNECT ipv6",
     B(5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22),
     1,
     {.type = FRAME_ADDR_IPV6,
      .port = 22,
      .u.ipv6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}},
    {"CONNECT name",
     B(5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 0, 80),
     1,
     {.type = FRAME_ADDR_NAME, .port = 80, .name_len = 11, .u.name = "example.com"}},
    {"BIND returned as-is",
     B(5, 2, 0, 1, 10, 0, 0, 1, 0xff, 0xff),
     2,
     {.type = FRAME_ADDR_IPV4, .port = 65535, .u.ipv4 = {10, 0, 0, 1}}},
    {"UDP ASSOCIATE, 1-byte name",
     B(5, 3, 0, 3, 1, 'x', 0, 53),
     3,
     {.type = FRAME_ADDR_NAME, .port = 53, .name_len = 1, .u.name = "x"}},
    {"unknown command 9",
     B(5, 9, 0, 1, 1, 2, 3, 4, 0, 1),
     9,
     {.type = FRAME_ADDR_IPV4, .port = 1, .u.ipv4 = {1, 2, 3, 4}}},
};

static void check_addr(const char *what, const struct frame_addr *got,
		       const struct frame_addr *want)
{
	if (got->type != want->type || got->port != want->port)
		fail_msg("%s: type %u port %u", what, got->type, got->port);
	switch (want->type) {
	case FRAME_ADDR_IPV4:
		assert_memory_equal(got->u.ipv4, want->u.ipv4, 4);
		break;
	case FRAME_ADDR_IPV6:
		assert_memory_equal(got->u.ipv6, want->u.ipv6, 16);
		break;
	default:
		assert_int_equal(got->name_len, want->name_len);
		assert_string_equal(got->u.name, want->u.name);
	}
}

static void test_socks5_request_table(void **state)
{
	for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
		const struct request_vector *v = &requests[i];
		struct socks5_request r;
		size_t used = 0;

		if (socks5_parse_request(v->bytes, v->len, &used, &r) != 0)
			fail_msg("%s: not parsed", v->what);
		assert_int_equal(used, v->len);
		assert_int_equal(r.cmd, v->cmd);
		check_addr(v->what, &r.target, &v->target);
	}
}

static void test_socks5_request_truncated(void **state)
{
	for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
		const struct request_vector *v = &requests[i];

		for (size_t n = 0; n < v->len; n++) {
			struct socks5_request r;
			size_t used = 0;

			if (socks5_parse_request(v->bytes, n, &used, &r) != WM_ERR_AGAIN)
				fail_msg("%s: prefix %zu not AGAIN", v->what, n);
		}
	}
}

static void test_socks5_request_name_longest(void **state)
{
	uint8_t buf[5 + 255 + 2];
	struct socks5_request r;
	size_t used = 0;

	/* 253 bytes in labels of 63 and a trailing dot: the longest DNS name. */
	memcpy(buf, (const uint8_t[]){5, 1, 0, 3, 254}, 5);
	memset(buf + 5, 'a', 255);
	for (int i = 63; i < 253; i += 64)
		buf[5 + i] = '.';
	buf[5 + 253] = '.';
	buf[5 + 254] = 0x1f;
	buf[5 + 255] = 0x90;
	assert_int_equal(socks5_parse_request(buf, sizeof buf - 1, &used, &r), 0);
	assert_int_equal(used, sizeof buf - 1);
	assert_int_equal(r.target.name_len, 254);
	assert_int_equal(strlen(r.target.u.name), 254);
	assert_int_equal(r.target.port, 8080);
	for (size_t n = 0; n < sizeof buf - 1; n++)
		assert_int_equal(socks5_parse_request(buf, n, &used, &r), WM_ERR_AGAIN);
	/* One byte more is too long for a name, though its length byte allows it. */
	buf[4] = 255;
	buf[5 + 254] = 'a';
	buf[5 + 255] = 0x1f;
	buf[5 + 256] = 0x90;
	assert_int_equal(socks5_parse_request(buf, sizeof buf, &used, &r), WM_ERR_MALFORMED);
}

static const struct bad_vector bad_requests[] = {
    {"version 4", B(4, 1, 0, 1, 1, 2, 3, 4, 0, 80)},
    {"version byte alone", B(1)},
    {"reserved 1", B(5, 1, 1, 1, 1, 2, 3, 4, 0, 80)},
    {"reserved 1, short", B(5, 1, 1)},
    {"empty name", B(5, 1, 0, 3, 0, 0, 80)},
    {"empty name, short", B(5, 1, 0, 3, 0)},
    {"NUL in name", B(5, 1, 0, 3, 3, 'a', 0, 'b', 0, 80)},
    /* One host name grammar (netaddr_hostname_valid): names reach the logs. */
    {"newline in name", B(5, 1, 0, 3, 3, 'a', '\n', 'b', 0, 80)},
    {"ESC in name", B(5, 1, 0, 3, 5, 'a', 0x1b, '[', '2', 'J', 0, 80)},
    {"byte 0xe9 in name", B(5, 1, 0, 3, 3, 'c', 0xe9, 'a', 0, 80)},
    {"space in name", B(5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80)},
    {"backslash in name", B(5, 1, 0, 3, 3, 'a', '\\', 'b', 0, 80)},
    {"empty label", B(5, 1, 0, 3, 4, 'a', '.', '.', 'b', 0, 80)},
    {"leading dot", B(5, 1, 0, 3, 2, '.', 'a', 0, 80)},
    {"port 0 ipv4", B(5, 1, 0, 1, 1, 2, 3, 4, 0, 0)},
    {"port 0 name", B(5, 1, 0, 3, 1, 'a', 0, 0)},
    {"port 0 ipv6", B(5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0)},
};

static void test_socks5_request_invalid(void **state)
{

	for (size_t i = 0; i < sizeof bad_requests / sizeof bad_requests[0]; i++) {
		const struct bad_vector *v = &bad_requests[i];
		struct socks5_request r = {.cmd = 77};
		size_t used = 999;

		if (socks5_parse_request(v->bytes, v->len, &used, &r) != WM_ERR_MALFORMED)
			fail_msg("%s: not MALFORMED", v->what);
		assert_int_equal(used, 999);
		assert_int_equal(r.cmd, 77);
	}
}

static void test_socks5_request_unknown_atyp_is_range(void **state)
{
	static const uint8_t atyps[] = {0, 2, 5, 0xff};

	for (size_t i = 0; i < sizeof atyps; i++) {
		const uint8_t buf[] = {5, 1, 0, atyps[i], 1, 2, 3, 4, 0, 80};
		struct socks5_request r;
		size_t used = 0;

		/* Known as soon as ATYP arrives: no waiting for an address of unknown size. */
		assert_int_equal(socks5_parse_request(buf, 4, &used, &r), WM_ERR_RANGE);
		assert_int_equal(used, 4);
		assert_int_equal(r.cmd, 1);
		used = 0;
		assert_int_equal(socks5_parse_request(buf, sizeof buf, &used, &r), WM_ERR_RANGE);
		assert_int_equal(used, 4);
	}
}

static void test_socks5_format_reply_bytes(void **state)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(1080)};
	struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	struct sockaddr_storage other = {.ss_family = AF_UNIX};

	assert_int_equal(socks5_format_reply(out, SOCKS5_REP_SUCCEEDED, NULL), 10);
	assert_memory_equal(out, ((const uint8_t[]){5, 0, 0, 1, 0, 0, 0, 0, 0, 0}), 10);

	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	assert_int_equal(socks5_format_reply(out, 0, (const struct sockaddr *)&sin), 10);
	assert_memory_equal(out, ((const uint8_t[]){5, 0, 0, 1, 192, 0, 2, 7, 0x04, 0x38}), 10);

	inet_pton(AF_INET6, "2001:db8::1", &sin6.sin6_addr);
	assert_int_equal(socks5_format_reply(out, 0, (const struct sockaddr *)&sin6), 22);
	assert_memory_equal(out,
			    ((const uint8_t[]){5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0,    0,
					       0, 0, 0, 0, 0,	 0,    0,    0,	   1, 0x01, 0xbb}),
			    22);

	assert_int_equal(socks5_format_reply(out, SOCKS5_REP_ADDRTYPE_UNSUPPORTED,
					     (const struct sockaddr *)&other),
			 10);
	assert_memory_equal(out, ((const uint8_t[]){5, 8, 0, 1, 0, 0, 0, 0, 0, 0}), 10);
}

static void test_socks5_format_method_and_status(void **state)
{
	uint8_t out[2];

	assert_int_equal(socks5_format_method(out, SOCKS5_METHOD_USERPASS), 2);
	assert_memory_equal(out, ((const uint8_t[]){5, 2}), 2);
	assert_int_equal(socks5_format_method(out, SOCKS5_METHOD_UNACCEPTABLE), 2);
	assert_memory_equal(out, ((const uint8_t[]){5, 0xff}), 2);
	assert_int_equal(socks5_format_userpass_status(out, true), 2);
	assert_memory_equal(out, ((const uint8_t[]){1, 0}), 2);
	assert_int_equal(socks5_format_userpass_status(out, false), 2);
	assert_memory_equal(out, ((const uint8_t[]){1, 1}), 2);
}

static void test_socks5_rep_for_error_mapping(void **state)
{
	static const struct {
		uint32_t error;
		uint8_t rep;
	} map[] = {
	    {FRAME_ERR_NONE, 0},	   {FRAME_ERR_NOT_ALLOWED, 2}, {FRAME_ERR_HOST_UNKNOWN, 4},
	    {FRAME_ERR_CONNECT_FAILED, 4}, {FRAME_ERR_REFUSED, 5},     {FRAME_ERR_TIMEOUT, 6},
	    {FRAME_ERR_STREAM_LIMIT, 1},   {FRAME_ERR_INTERNAL, 1},    {FRAME_ERR_TUNNEL_LOST, 1},
	    {FRAME_ERR_PROTOCOL, 1},	   {FRAME_ERR_CANCEL, 1},      {0xdeadbeef, 1},
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (socks5_rep_for_error(map[i].error) != map[i].rep)
			fail_msg("error %u: rep %u, want %u", map[i].error,
				 socks5_rep_for_error(map[i].error), map[i].rep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_socks5_greeting_table),
	    cmocka_unit_test(test_socks5_greeting_truncated),
	    cmocka_unit_test(test_socks5_greeting_trailing_bytes_left),
	    cmocka_unit_test(test_socks5_userpass_valid),
	    cmocka_unit_test(test_socks5_userpass_max_lengths),
	    cmocka_unit_test(test_socks5_userpass_invalid),
	    cmocka_unit_test(test_socks5_request_table),
	    cmocka_unit_test(test_socks5_request_truncated),
	    cmocka_unit_test(test_socks5_request_name_longest),
	    cmocka_unit_test(test_socks5_userpass_utf8_user_any_password),
	    cmocka_unit_test(test_socks5_request_invalid),
	    cmocka_unit_test(test_socks5_request_unknown_atyp_is_range),
	    cmocka_unit_test(test_socks5_format_reply_bytes),
	    cmocka_unit_test(test_socks5_format_method_and_status),
	    cmocka_unit_test(test_socks5_rep_for_error_mapping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
