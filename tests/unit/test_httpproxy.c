/*
 * HTTP proxy head tests: tables of valid CONNECT and absolute-form requests
 * (with the rewritten head checked byte for byte), every truncation of each,
 * tables of malformed heads, size and header-count limits, Basic credentials,
 * and the proxy's own responses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sodium.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/httpproxy.h"

static uint8_t rewritten[HTTP_REWRITE_MAX];

static int parse(const char *text, size_t len, struct http_request *r, size_t *rewritten_len)
{
	return http_parse_request((const uint8_t *)text, len, r, rewritten, sizeof rewritten,
				  rewritten_len);
}

struct valid_vector {
	const char *what;
	const char *head;
	size_t body; /* bytes after the head (not part of it) */
	enum http_kind kind;
	const char *method;
	uint8_t type;
	const char *host; /* name, or the literal's text */
	uint16_t port;
	const char *rewritten; /* NULL for CONNECT */
};

static const struct valid_vector valid[] = {
    {"CONNECT name", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 0,
     HTTP_KIND_CONNECT, "CONNECT", FRAME_ADDR_NAME, "example.com", 443, NULL},
    {"CONNECT ipv6", "CONNECT [::1]:443 HTTP/1.1\r\n\r\n", 0, HTTP_KIND_CONNECT, "CONNECT",
     FRAME_ADDR_IPV6, "::1", 443, NULL},
    {"CONNECT ipv4, bare LF, TLS bytes after", "CONNECT 198.18.0.1:8443 HTTP/1.0\n\n\x16\x03\x01",
     3, HTTP_KIND_CONNECT, "CONNECT", FRAME_ADDR_IPV4, "198.18.0.1", 8443, NULL},
    {"CONNECT port 65535, trailing dot", "CONNECT db.internal.:65535 HTTP/1.1\r\n\r\n", 0,
     HTTP_KIND_CONNECT, "CONNECT", FRAME_ADDR_NAME, "db.internal.", 65535, NULL},
    {"GET absolute, headers filtered, Host replaced",
     "GET http://example.com/a/b?q=1#frag HTTP/1.1\r\n"
     "Host: evil.example\r\n"
     "User-Agent: curl/8.5.0\r\n"
     "Proxy-Connection: Keep-Alive\r\n"
     "Connection: keep-alive\r\n"
     "Keep-Alive: timeout=5\r\n"
     "Proxy-Authorization: Basic YWxpY2U6czNjcmV0Ong=\r\n"
     "Accept: */*\r\n"
     "\r\n",
     0, HTTP_KIND_ABSOLUTE, "GET", FRAME_ADDR_NAME, "example.com", 80,
     "GET /a/b?q=1 HTTP/1.1\r\n"
     "Host: example.com\r\n"
     "User-Agent: curl/8.5.0\r\n"
     "Accept: */*\r\n"
     "Connection: close\r\n"
     "\r\n"},
    {"GET empty path, no Host, bare LF", "GET http://example.com HTTP/1.0\nAccept: text/html\n\n",
     0, HTTP_KIND_ABSOLUTE, "GET", FRAME_ADDR_NAME, "example.com", 80,
     "GET / HTTP/1.0\r\nHost: example.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n"},
    {"POST with port and body",
     "POST HTTP://10.0.0.5:8080/form HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 3,
     HTTP_KIND_ABSOLUTE, "POST", FRAME_ADDR_IPV4, "10.0.0.5", 8080,
     "POST /form HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nContent-Length: 3\r\nConnection: "
     "close\r\n\r\n"},
    {"query without path, ipv6", "HEAD http://[2001:db8::1]:81?x HTTP/1.1\r\n\r\n", 0,
     HTTP_KIND_ABSOLUTE, "HEAD", FRAME_ADDR_IPV6, "2001:db8::1", 81,
     "HEAD /?x HTTP/1.1\r\nHost: [2001:db8::1]:81\r\nConnection: close\r\n\r\n"},
    {"header value whitespace, obs-text kept",
     "GET http://a-b_c.example/ HTTP/1.1\r\nX-Thing:\t v\xe9 \t\r\nEmpty:\r\n\r\n", 0,
     HTTP_KIND_ABSOLUTE, "GET", FRAME_ADDR_NAME, "a-b_c.example", 80,
     "GET / HTTP/1.1\r\nHost: a-b_c.example\r\nX-Thing:\t v\xe9 \t\r\nEmpty:\r\nConnection: "
     "close\r\n\r\n"},
    /* From fuzzing: a longer header name is not Proxy-Authorization; it is forwarded. */
    {"look-alike header names forwarded",
     "GET http://x.y/ HTTP/1.1\r\nProxy-Authorization.1: Basic YWxpY2U6czNjcmV0Ong=\r\n"
     "Connection-X: 1\r\n\r\n",
     0, HTTP_KIND_ABSOLUTE, "GET", FRAME_ADDR_NAME, "x.y", 80,
     "GET / HTTP/1.1\r\nHost: x.y\r\nProxy-Authorization.1: Basic YWxpY2U6czNjcmV0Ong=\r\n"
     "Connection-X: 1\r\nConnection: close\r\n\r\n"},
    {"lowercase method is a token", "get http://x.y/ HTTP/1.1\r\n\r\n", 0, HTTP_KIND_ABSOLUTE,
     "get", FRAME_ADDR_NAME, "x.y", 80, "get / HTTP/1.1\r\nHost: x.y\r\nConnection: close\r\n\r\n"},
};

static void check_valid(const struct valid_vector *v)
{
	struct http_request r;
	size_t rlen = 999, len = strlen(v->head);
	int rc;

	rc = parse(v->head, len, &r, &rlen);
	if (rc != 0)
		fail_msg("%s: rc %d", v->what, rc);
	assert_int_equal(r.head_len, len - v->body);
	assert_int_equal(r.kind, v->kind);
	assert_string_equal(r.method, v->method);
	assert_int_equal(r.target.type, v->type);
	assert_int_equal(r.target.port, v->port);
	assert_int_equal(r.has_auth, strstr(v->head, "\nProxy-Authorization: ") != NULL);
	assert_false(r.auth_malformed);
	if (v->type == FRAME_ADDR_NAME) {
		assert_string_equal(r.target.u.name, v->host);
		assert_int_equal(r.target.name_len, strlen(v->host));
	} else {
		uint8_t want[16];

		assert_int_equal(
		    inet_pton(v->type == FRAME_ADDR_IPV4 ? AF_INET : AF_INET6, v->host, want), 1);
		assert_memory_equal(v->type == FRAME_ADDR_IPV4 ? r.target.u.ipv4 : r.target.u.ipv6,
				    want, v->type == FRAME_ADDR_IPV4 ? 4 : 16);
	}
	if (v->rewritten == NULL) {
		assert_int_equal(rlen, 0);
		return;
	}
	if (rlen != strlen(v->rewritten) || memcmp(rewritten, v->rewritten, rlen) != 0)
		fail_msg("%s: rewritten\n%.*s", v->what, (int)rlen, (const char *)rewritten);
}

static void test_httpproxy_valid_table(void **state)
{
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
		check_valid(&valid[i]);
}

static void test_httpproxy_every_truncation_is_again(void **state)
{
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
		const struct valid_vector *v = &valid[i];
		size_t head = strlen(v->head) - v->body;

		for (size_t n = 0; n < head; n++) {
			struct http_request r;
			size_t rlen = 999;
			int rc = parse(v->head, n, &r, &rlen);

			if (rc != WM_ERR_AGAIN)
				fail_msg("%s: prefix %zu: rc %d", v->what, n, rc);
			assert_int_equal(rlen, 0);
		}
	}
}

static const char *const malformed[] = {
    "\r\n\r\n",
    "CONNECT example.com HTTP/1.1\r\n\r\n",
    "CONNECT example.com:0 HTTP/1.1\r\n\r\n",
    "CONNECT example.com:65536 HTTP/1.1\r\n\r\n",
    "CONNECT example.com:443x HTTP/1.1\r\n\r\n",
    "CONNECT example.com:-1 HTTP/1.1\r\n\r\n",
    "CONNECT example.com: HTTP/1.1\r\n\r\n",
    "CONNECT :443 HTTP/1.1\r\n\r\n",
    "CONNECT ::1:443 HTTP/1.1\r\n\r\n",
    "CONNECT [::1] HTTP/1.1\r\n\r\n",
    "CONNECT [::1]443 HTTP/1.1\r\n\r\n",
    "CONNECT [] HTTP/1.1\r\n\r\n",
    "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n",
    "CONNECT [1.2.3.4.5.6]:443 HTTP/1.1\r\n\r\n",
    "CONNECT user@example.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT http://example.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT exa mple.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT ex$ample.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT 127.1:443 HTTP/1.1\r\n\r\n",
    "CONNECT 0x7f000001:443 HTTP/1.1\r\n\r\n",
    "CONNECT 01.2.3.4:443 HTTP/1.1\r\n\r\n",
    "CONNECT a..b:443 HTTP/1.1\r\n\r\n",
    "CONNECT .a:443 HTTP/1.1\r\n\r\n",
    "CONNECT .:443 HTTP/1.1\r\n\r\n",
    /* The one host name grammar (netaddr_hostname_valid): labels of 63 at most. */
    "CONNECT a234567890123456789012345678901234567890123456789012345678901234.com:443 "
    "HTTP/1.1\r\n\r\n",
    "CONNECT ex\x1b"
    "ample.com:443 HTTP/1.1\r\n\r\n",
    "CONNECT ex\\ample.com:443 HTTP/1.1\r\n\r\n",
    "GET http://ex\x1b[2Jample.com/ HTTP/1.1\r\n\r\n",
    "GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
    "GET https://example.com/ HTTP/1.1\r\n\r\n",
    "GET ftp://example.com/ HTTP/1.1\r\n\r\n",
    "GET http:// HTTP/1.1\r\n\r\n",
    "GET http:///x HTTP/1.1\r\n\r\n",
    "GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n",
    "GET http://ex\xe9mple.com/ HTTP/1.1\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\n\r\n",
    "GET http://example.com/ HTTP/2.0\r\n\r\n",
    "GET http://example.com/ HTTP/1.2\r\n\r\n",
    "GET http://example.com/ http/1.1\r\n\r\n",
    "GET http://example.com/\r\n\r\n",
    "GET\r\n\r\n",
    "GET  http://example.com/ HTTP/1.1\r\n\r\n",
    "GET http://example.com/  HTTP/1.1\r\n\r\n",
    "GET http://example.com/ HTTP/1.1 \r\n\r\n",
    " GET http://example.com/ HTTP/1.1\r\n\r\n",
    "GET\thttp://example.com/ HTTP/1.1\r\n\r\n",
    "G(T http://example.com/ HTTP/1.1\r\n\r\n",
    "ABCDEFGHIJKLMNOP http://example.com/ HTTP/1.1\r\n\r\n",
    "GET http://example.com/a\x7f HTTP/1.1\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nNoColon\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nName : v\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nName\t: v\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\n: v\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA: b\r\n continued\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA: b\r\n\tcontinued\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA: b\x01c\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA: b\rc\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA: b\r\r\n\r\n",
    "GET http://example.com/ HTTP/1.1\r\n\r\r\n",
    "GET http://example.com/ HTTP/1.1\r\nA\x80: b\r\n\r\n",
};

static void test_httpproxy_malformed_table(void **state)
{
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
		struct http_request r;
		size_t rlen = 999;
		int rc = parse(malformed[i], strlen(malformed[i]), &r, &rlen);

		if (rc != WM_ERR_MALFORMED)
			fail_msg("#%zu %s: rc %d", i, malformed[i], rc);
		assert_int_equal(rlen, 0);
	}
}

static void test_httpproxy_nul_is_malformed(void **state)
{
	static const char head[] = "GET http://example.com/ HTTP/1.1\r\nA: b\0c\r\n\r\n";
	struct http_request r;
	size_t rlen;

	assert_int_equal(parse(head, sizeof head - 1, &r, &rlen), WM_ERR_MALFORMED);
}

static void test_httpproxy_garbage_rejected_before_head_ends(void **state)
{
	/* A TLS ClientHello sent to the HTTP port: refused at its first byte. */
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	static const char *const early[] = {
	    "GET /x HTTP/1.1\r\n",
	    "GET http://example.com/ HTTP/1.1\r\nbad line\r\n",
	    "GET http://example.com/ HTTP/1.1\r\nA: b\x01",
	};
	struct http_request r;
	size_t rlen;

	assert_int_equal(parse(tls, sizeof tls - 1, &r, &rlen), WM_ERR_MALFORMED);
	for (size_t i = 0; i < sizeof early / sizeof early[0]; i++)
		assert_int_equal(parse(early[i], strlen(early[i]), &r, &rlen), WM_ERR_MALFORMED);
}

/* A head with n header lines "X-N: v". */
static char *flood(size_t n, size_t *len)
{
	static const char start[] = "GET http://example.com/ HTTP/1.1\r\n";
	char *buf = malloc(sizeof start + n * 16 + 3);
	size_t pos = sizeof start - 1;

	assert_non_null(buf);
	memcpy(buf, start, pos);
	for (size_t i = 0; i < n; i++)
		pos += (size_t)snprintf(buf + pos, 17, "X-%zu: v\r\n", i);
	memcpy(buf + pos, "\r\n", 2);
	*len = pos + 2;
	return buf;
}

static void test_httpproxy_header_flood_is_range(void **state)
{
	struct http_request r;
	size_t len, rlen;
	char *buf;

	buf = flood(HTTP_HEADERS_MAX, &len);
	assert_int_equal(parse(buf, len, &r, &rlen), 0);
	assert_int_equal(r.head_len, len);
	free(buf);

	buf = flood(HTTP_HEADERS_MAX + 1, &len);
	assert_int_equal(parse(buf, len, &r, &rlen), WM_ERR_RANGE);
	/* Known as soon as the 101st line is complete, before the blank line. */
	assert_int_equal(parse(buf, len - 2, &r, &rlen), WM_ERR_RANGE);
	free(buf);
}

/* A request whose head is exactly total bytes long (one padded header). */
static char *sized_head(size_t total)
{
	static const char start[] = "GET http://example.com/ HTTP/1.1\r\nX-Pad: ";
	char *buf = malloc(total + 16);
	size_t pad = total - (sizeof start - 1) - 4;

	assert_non_null(buf);
	memcpy(buf, start, sizeof start - 1);
	memset(buf + sizeof start - 1, 'p', pad);
	memcpy(buf + sizeof start - 1 + pad, "\r\n\r\nBODY", 8);
	return buf;
}

static void test_httpproxy_long_head_is_range(void **state)
{
	struct http_request r;
	size_t rlen;
	char *buf;

	buf = sized_head(HTTP_HEAD_MAX);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX + 4, &r, &rlen), 0);
	assert_int_equal(r.head_len, HTTP_HEAD_MAX);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX - 1, &r, &rlen), WM_ERR_AGAIN);
	free(buf);

	buf = sized_head(HTTP_HEAD_MAX + 1);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX - 1, &r, &rlen), WM_ERR_AGAIN);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX, &r, &rlen), WM_ERR_RANGE);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX + 1, &r, &rlen), WM_ERR_RANGE);
	free(buf);

	/* One line with no end in sight. */
	buf = malloc(HTTP_HEAD_MAX * 2);
	assert_non_null(buf);
	memset(buf, 'A', HTTP_HEAD_MAX * 2);
	assert_int_equal(parse(buf, HTTP_HEAD_MAX * 2, &r, &rlen), WM_ERR_RANGE);
	free(buf);
}

/*
 * Feeds head[0..len) to http_scan_head step bytes at a time and checks every
 * answer against what http_parse_request says about the same prefix: AGAIN
 * while it says AGAIN, 0 once it parses, the same error otherwise.
 */
static void check_scan(const char *what, const char *head, size_t len, size_t step)
{
	struct http_head_scan scan;
	size_t n = 0;

	memset(&scan, 0, sizeof scan);
	while (n < len) {
		struct http_request r;
		size_t rlen;
		int want, got;

		n = n + step < len ? n + step : len;
		want = parse(head, n, &r, &rlen);
		got = http_scan_head(&scan, (const uint8_t *)head, n);
		if (want == WM_ERR_RANGE && rlen == 0 && got == 0)
			want = 0; /* rewrite buffer too small: the scan does not rewrite */
		if (got != want)
			fail_msg("%s, step %zu, prefix %zu: scan %d, parse %d", what, step, n, got,
				 want);
		if (got != WM_ERR_AGAIN)
			return;
	}
}

static void check_scan_steps(const char *what, const char *head, size_t len)
{
	static const size_t steps[] = {1, 2, 3, 7, 64, 100000};

	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
		check_scan(what, head, len, steps[i]);
}

static void test_httpproxy_scan_matches_parse(void **state)
{
	static const char nul[] = "GET http://example.com/ HTTP/1.1\r\nA: b\0c\r\n\r\n";
	static const char *const more[] = {
	    "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	    "GET /x HTTP/1.1\r\n",
	    "CONNECT a:1 HTTP/1.1\r\nA: b\r",
	    "CONNECT a:1 HTTP/1.1\r\nA: b\r\r\n\r\n",
	    "CONNECT a:1 HTTP/1.1\r\r\n\r\n",
	    "CONNECT a:1 HTTP/1.1\n\r\n",
	    "CONNECT a:1 HTTP/1.1\r\n\r",
	};
	size_t len;
	char *buf;

	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
		check_scan_steps(valid[i].what, valid[i].head, strlen(valid[i].head));
	for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
		check_scan_steps(malformed[i], malformed[i], strlen(malformed[i]));
	for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
		check_scan_steps(more[i], more[i], strlen(more[i]));
	check_scan_steps("NUL", nul, sizeof nul - 1);
	buf = flood(HTTP_HEADERS_MAX, &len);
	check_scan_steps("100 headers", buf, len);
	free(buf);
	buf = flood(HTTP_HEADERS_MAX + 1, &len);
	check_scan_steps("101 headers", buf, len);
	free(buf);
	buf = sized_head(HTTP_HEAD_MAX);
	check_scan_steps("head of HTTP_HEAD_MAX", buf, HTTP_HEAD_MAX + 4);
	free(buf);
	buf = sized_head(HTTP_HEAD_MAX + 1);
	check_scan_steps("head of HTTP_HEAD_MAX + 1", buf, HTTP_HEAD_MAX + 5);
	free(buf);
}

/* Once complete, the scan keeps saying so without looking again. */
static void test_httpproxy_scan_done_stays_done(void **state)
{
	static const char head[] = "CONNECT a.example:443 HTTP/1.1\r\n\r\n\x16\x03";
	struct http_head_scan scan;

	memset(&scan, 0, sizeof scan);
	assert_int_equal(http_scan_head(&scan, (const uint8_t *)head, 10), WM_ERR_AGAIN);
	assert_int_equal(http_scan_head(&scan, (const uint8_t *)head, sizeof head - 1), 0);
	assert_true(scan.done);
	assert_int_equal(scan.line_start, sizeof head - 3);
	assert_int_equal(http_scan_head(&scan, (const uint8_t *)head, sizeof head - 1), 0);
}

static void test_httpproxy_rewrite_cap(void **state)
{
	static const char head[] = "GET http://example.com/x HTTP/1.1\r\nA: b\r\n\r\n";
	static const char want[] = "GET /x HTTP/1.1\r\nHost: example.com\r\nA: b\r\nConnection: "
				   "close\r\n\r\n";
	uint8_t out[sizeof want - 1];
	struct http_request r;
	size_t rlen = 999;

	assert_int_equal(
	    http_parse_request((const uint8_t *)head, sizeof head - 1, &r, out, sizeof out, &rlen),
	    0);
	assert_int_equal(rlen, sizeof out);
	assert_memory_equal(out, want, sizeof out);
	rlen = 999;
	assert_int_equal(http_parse_request((const uint8_t *)head, sizeof head - 1, &r, out,
					    sizeof out - 1, &rlen),
			 WM_ERR_RANGE);
	assert_int_equal(rlen, 0);
}

static void test_httpproxy_connect_needs_no_buffer(void **state)
{
	static const char head[] = "CONNECT example.com:443 HTTP/1.1\r\nA: b\r\n\r\n";
	struct http_request r;
	size_t rlen = 999;

	assert_int_equal(
	    http_parse_request((const uint8_t *)head, sizeof head - 1, &r, NULL, 0, &rlen), 0);
	assert_int_equal(rlen, 0);
	assert_int_equal(r.kind, HTTP_KIND_CONNECT);
}

struct auth_vector {
	const char *header; /* NULL: no Proxy-Authorization at all */
	bool has_auth, malformed;
	const char *user, *pass;
};

static const struct auth_vector auths[] = {
    {NULL, false, false, "", ""},
    {"Proxy-Authorization: Basic YWxpY2U6czNjcmV0Ong=", true, false, "alice", "s3cret:x"},
    {"proxy-authorization:   basic    YWxpY2U6czNjcmV0Ong=  ", true, false, "alice", "s3cret:x"},
    {"Proxy-Authorization: Basic OmVtcHR5", true, false, "", "empty"},
    {"Proxy-Authorization: Basic dTo=", true, false, "u", ""},
    {"Proxy-Authorization: Basic Ym9i", false, true, "", ""},		     /* no colon */
    {"Proxy-Authorization: Basic YQFiOmM=", false, true, "", ""},	     /* control char */
    {"Proxy-Authorization: Basic YWxpY2U6czNjcmV0Ong", false, true, "", ""}, /* no padding */
    {"Proxy-Authorization: Basic YWxp!2U6czNjcmV0Ong=", false, true, "", ""},
    {"Proxy-Authorization: Basic", false, true, "", ""},
    {"Proxy-Authorization: Basic ", false, true, "", ""},
    {"Proxy-Authorization: BasicYWxpY2U6czNjcmV0Ong=", false, true, "", ""},
    {"Proxy-Authorization: Bearer abc", false, true, "", ""},
    {"Proxy-Authorization: Digest username=\"a\"", false, true, "", ""},
    {"Proxy-Authorization: Basic YWxpY2U6czNjcmV0Ong=\r\n"
     "Proxy-Authorization: Basic YWxpY2U6czNjcmV0Ong=",
     false, true, "", ""},
    {"Proxy-Authorization: Bearer x\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0Ong=", false,
     true, "", ""},
};

static void test_httpproxy_basic_auth(void **state)
{
	for (size_t i = 0; i < sizeof auths / sizeof auths[0]; i++) {
		const struct auth_vector *v = &auths[i];
		char head[1024];
		struct http_request r;
		size_t rlen;
		int n;

		n = snprintf(head, sizeof head, "CONNECT example.com:443 HTTP/1.1\r\n%s%s\r\n",
			     v->header != NULL ? v->header : "", v->header != NULL ? "\r\n" : "");
		assert_true(n > 0 && (size_t)n < sizeof head);
		assert_int_equal(parse(head, (size_t)n, &r, &rlen), 0);
		if (r.has_auth != v->has_auth || r.auth_malformed != v->malformed)
			fail_msg("#%zu: has_auth %d malformed %d", i, r.has_auth, r.auth_malformed);
		assert_string_equal(r.user, v->user);
		assert_string_equal(r.pass, v->pass);
	}
}

static void test_httpproxy_basic_auth_long_fields(void **state)
{
	char cred[255 + 1 + 256 + 1], b64[1024], head[2048];
	struct http_request r;
	size_t rlen;
	int n;

	memset(cred, 'u', 255);
	cred[255] = ':';
	memset(cred + 256, 'p', 255);
	cred[511] = '\0';
	sodium_bin2base64(b64, sizeof b64, (const unsigned char *)cred, 511,
			  sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(head, sizeof head,
		     "CONNECT a.b:1 HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\n", b64);
	assert_int_equal(parse(head, (size_t)n, &r, &rlen), 0);
	assert_true(r.has_auth);
	assert_int_equal(strlen(r.user), 255);
	assert_int_equal(strlen(r.pass), 255);

	/* A 256-byte password does not fit RFC 1929 limits: refused. */
	cred[511] = 'p';
	sodium_bin2base64(b64, sizeof b64, (const unsigned char *)cred, 512,
			  sodium_base64_VARIANT_ORIGINAL);
	n = snprintf(head, sizeof head,
		     "CONNECT a.b:1 HTTP/1.1\r\nProxy-Authorization: Basic %s\r\n\r\n", b64);
	assert_int_equal(parse(head, (size_t)n, &r, &rlen), 0);
	assert_false(r.has_auth);
	assert_true(r.auth_malformed);
}

static void test_httpproxy_format_response_bytes(void **state)
{
	char out[512];
	size_t n;

	n = http_format_response(out, sizeof out, 200, NULL);
	assert_string_equal(out, "HTTP/1.1 200 Connection established\r\n\r\n");
	assert_int_equal(n, strlen(out));

	n = http_format_response(out, sizeof out, 407,
				 "Proxy-Authenticate: Basic realm=\"wanmux\"\r\n");
	assert_string_equal(out, "HTTP/1.1 407 Proxy Authentication Required\r\n"
				 "Content-Type: text/plain\r\n"
				 "Content-Length: 34\r\n"
				 "Connection: close\r\n"
				 "Proxy-Authenticate: Basic realm=\"wanmux\"\r\n"
				 "\r\n"
				 "407 Proxy Authentication Required\n");
	assert_int_equal(n, strlen(out));

	n = http_format_response(out, sizeof out, 403, NULL);
	assert_string_equal(out, "HTTP/1.1 403 Forbidden\r\n"
				 "Content-Type: text/plain\r\n"
				 "Content-Length: 14\r\n"
				 "Connection: close\r\n"
				 "\r\n"
				 "403 Forbidden\n");
	assert_int_equal(n, strlen(out));
}

static void test_httpproxy_format_response_reasons(void **state)
{
	static const struct {
		int status;
		const char *line;
	} reasons[] = {
	    {400, "HTTP/1.1 400 Bad Request\r\n"},
	    {405, "HTTP/1.1 405 Method Not Allowed\r\n"},
	    {431, "HTTP/1.1 431 Request Header Fields Too Large\r\n"},
	    {502, "HTTP/1.1 502 Bad Gateway\r\n"},
	    {504, "HTTP/1.1 504 Gateway Timeout\r\n"},
	};
	char out[512];

	for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
		size_t n = http_format_response(out, sizeof out, reasons[i].status, NULL);
		const char *body;
		char length[64];

		assert_true(n > 0);
		assert_memory_equal(out, reasons[i].line, strlen(reasons[i].line));
		assert_non_null(strstr(out, "Connection: close\r\n"));
		body = strstr(out, "\r\n\r\n");
		assert_non_null(body);
		body += 4;
		snprintf(length, sizeof length, "Content-Length: %zu\r\n", strlen(body));
		assert_non_null(strstr(out, length));
	}
}

static void test_httpproxy_format_response_too_small(void **state)
{
	char out[64];
	size_t full = http_format_response(out, sizeof out, 200, NULL);

	assert_int_equal(full, 39);
	assert_int_equal(http_format_response(out, full, 200, NULL), 0);
	assert_int_equal(http_format_response(out, full + 1, 200, NULL), full);
	assert_int_equal(http_format_response(out, sizeof out, 502, NULL), 0);
}

static void test_httpproxy_status_for_error(void **state)
{
	assert_int_equal(http_status_for_error(FRAME_ERR_NOT_ALLOWED), 403);
	assert_int_equal(http_status_for_error(FRAME_ERR_TIMEOUT), 504);
	assert_int_equal(http_status_for_error(FRAME_ERR_REFUSED), 502);
	assert_int_equal(http_status_for_error(FRAME_ERR_HOST_UNKNOWN), 502);
	assert_int_equal(http_status_for_error(FRAME_ERR_TUNNEL_LOST), 502);
	assert_int_equal(http_status_for_error(12345), 502);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_httpproxy_valid_table),
	    cmocka_unit_test(test_httpproxy_every_truncation_is_again),
	    cmocka_unit_test(test_httpproxy_malformed_table),
	    cmocka_unit_test(test_httpproxy_nul_is_malformed),
	    cmocka_unit_test(test_httpproxy_garbage_rejected_before_head_ends),
	    cmocka_unit_test(test_httpproxy_header_flood_is_range),
	    cmocka_unit_test(test_httpproxy_long_head_is_range),
	    cmocka_unit_test(test_httpproxy_scan_matches_parse),
	    cmocka_unit_test(test_httpproxy_scan_done_stays_done),
	    cmocka_unit_test(test_httpproxy_rewrite_cap),
	    cmocka_unit_test(test_httpproxy_connect_needs_no_buffer),
	    cmocka_unit_test(test_httpproxy_basic_auth),
	    cmocka_unit_test(test_httpproxy_basic_auth_long_fields),
	    cmocka_unit_test(test_httpproxy_format_response_bytes),
	    cmocka_unit_test(test_httpproxy_format_response_reasons),
	    cmocka_unit_test(test_httpproxy_format_response_too_small),
	    cmocka_unit_test(test_httpproxy_status_for_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
