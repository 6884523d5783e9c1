/*
 * libFuzzer target for http_parse_request: parses the input as a request
 * head and checks what it accepts: the head fits in the input and ends in a
 * blank line, strings are NUL-terminated, the rewritten head fits its buffer,
 * ends in CRLF CRLF and carries no proxy credentials, the bytes after the head
 * change nothing, and each shorter prefix of an accepted head is incomplete,
 * never accepted or refused. Also feeds the input to http_scan_head in pieces
 * (sizes taken from the first byte) and checks that it answers what
 * http_parse_request answers for each prefix.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "wanmux/err.h"
#include "wanmux/httpproxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t rewritten[HTTP_REWRITE_MAX];
static uint8_t again[HTTP_REWRITE_MAX];

static void check_strings(const struct http_request *r)
{
	if (strnlen(r->method, sizeof r->method) == sizeof r->method ||
	    strnlen(r->user, sizeof r->user) == sizeof r->user ||
	    strnlen(r->pass, sizeof r->pass) == sizeof r->pass)
		__builtin_trap();
	if (r->has_auth && r->auth_malformed)
		__builtin_trap();
	if (r->target.port == 0)
		__builtin_trap();
	if (r->target.type == FRAME_ADDR_NAME &&
	    (r->target.name_len == 0 || strlen(r->target.u.name) != r->target.name_len))
		__builtin_trap();
}

/* The incremental scan agrees with a full parse of every prefix it is shown. */
static void check_scan(const uint8_t *data, size_t size)
{
	struct http_head_scan scan;
	size_t step = size > 0 ? 1 + data[0] % 17 : 1;
	size_t n = 0;

	if (size > 4096)
		size = 4096; /* a parse per step: keep each input quick */
	memset(&scan, 0, sizeof scan);
	while (n < size) {
		struct http_request r;
		size_t rlen;
		int want, got;

		n = n + step < size ? n + step : size;
		want = http_parse_request(data, n, &r, rewritten, sizeof rewritten, &rlen);
		got = http_scan_head(&scan, data, n);
		if (got != want)
			__builtin_trap();
		if (got != WM_ERR_AGAIN)
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct http_request r, r2;
	size_t rlen = 1, rlen2 = 1;
	int rc;

	check_scan(data, size);
	rc = http_parse_request(data, size, &r, rewritten, sizeof rewritten, &rlen);
	if (rc != WM_OK && rc != WM_ERR_AGAIN && rc != WM_ERR_MALFORMED && rc != WM_ERR_RANGE)
		__builtin_trap();
	if (rc != WM_OK) {
		if (rlen != 0 || (rc == WM_ERR_AGAIN && size >= HTTP_HEAD_MAX))
			__builtin_trap();
		return 0;
	}
	check_strings(&r);
	if (r.head_len == 0 || r.head_len > size || r.head_len > HTTP_HEAD_MAX ||
	    data[r.head_len - 1] != '\n')
		__builtin_trap();
	if (r.kind == HTTP_KIND_CONNECT) {
		if (rlen != 0)
			__builtin_trap();
	} else {
		if (rlen > sizeof rewritten || rlen > r.head_len + 124 || rlen < 4 ||
		    memcmp(rewritten + rlen - 4, "\r\n\r\n", 4) != 0)
			__builtin_trap();
		if (memchr(rewritten, '\0', rlen) != NULL)
			__builtin_trap();
		/* Credentials for the proxy never reach the origin. */
		for (size_t i = 0; i + 1 + 20 <= rlen; i++)
			if (rewritten[i] == '\n' && strncasecmp((const char *)rewritten + i + 1,
								"Proxy-Authorization:", 20) == 0)
				__builtin_trap();
	}
	/* Only the head matters: the bytes after it cannot change the answer. */
	rc = http_parse_request(data, r.head_len, &r2, again, sizeof again, &rlen2);
	if (rc != WM_OK || r2.head_len != r.head_len || rlen2 != rlen ||
	    memcmp(again, rewritten, rlen) != 0 ||
	    memcmp(&r2.target, &r.target, sizeof r.target) != 0)
		__builtin_trap();
	for (size_t n = 0; n < r.head_len; n++)
		if (http_parse_request(data, n, &r2, again, sizeof again, &rlen2) != WM_ERR_AGAIN)
			__builtin_trap();
	return 0;
}
