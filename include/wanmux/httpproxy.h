/*
 * HTTP proxy requests: parses the head of a CONNECT or absolute-form request
 * from a client, decodes Basic Proxy-Authorization, rewrites absolute-form
 * heads into what the origin server expects, and formats the proxy's own
 * answers. Pure code over byte buffers: no sockets, no allocation. Only the
 * first request of a connection is handled (the caller closes after it).
 */
#ifndef WANMUX_HTTPPROXY_H
#define WANMUX_HTTPPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/frame.h"

/* Most bytes a request head may take, blank line included. */
#define HTTP_HEAD_MAX 16384
/* Most header lines after the request line. */
#define HTTP_HEADERS_MAX 100
/*
 * A rewritten head is at most 124 bytes longer than the head it came from (a
 * CR for each bare-LF line, "/" for an empty path, "Connection: close"; the
 * Host line costs what "http://" and the authority free up in the request
 * line), so this cap is always enough.
 */
#define HTTP_REWRITE_MAX (HTTP_HEAD_MAX + 512)

enum http_kind {
	HTTP_KIND_CONNECT,  /* CONNECT host:port: a tunnel, nothing rewritten */
	HTTP_KIND_ABSOLUTE, /* METHOD http://host[:port]/path: forwarded in origin-form */
};

struct http_request {
	enum http_kind kind;
	char method[16];	  /* NUL-terminated, case as sent */
	struct frame_addr target; /* port 80 when an http:// URL names none */
	size_t head_len;	  /* bytes of buf taken by the head, blank line included */
	bool has_auth;		  /* a well-formed Basic Proxy-Authorization was found */
	char user[256];		  /* NUL-terminated; valid when has_auth */
	char pass[256];
	bool auth_malformed; /* Proxy-Authorization present but unusable */
};

/*
 * Parses one request head from buf[0..len): the request line and header lines
 * up to and including the blank line, each ending in CRLF or a bare LF.
 *
 * Returns 0 and fills *out on success. For HTTP_KIND_ABSOLUTE also writes the
 * head to send to the origin into rewritten (cap bytes; HTTP_REWRITE_MAX is
 * always enough) and its length into *rewritten_len:
 *   - the request line in origin-form with the client's version
 *     ("GET /path?q HTTP/1.1"; "/" for an empty path; a #fragment is dropped),
 *   - "Host: " with the URL's authority (the client's Host lines are dropped:
 *     RFC 9112 section 3.2.2 makes the URL win, so the origin cannot be shown
 *     a different virtual host from the one the ACL saw),
 *   - every other header line unchanged except Proxy-Authorization,
 *     Proxy-Connection, Connection and Keep-Alive, each ending in CRLF,
 *   - "Connection: close" and the blank line.
 * For HTTP_KIND_CONNECT *rewritten_len is 0 and rewritten untouched (it may
 * then be NULL with cap 0).
 *
 * Proxy-Authorization "Basic <base64 of user:pass>" (scheme case-insensitive)
 * sets has_auth, user and pass. A header that is not Basic, not base64, has no
 * ':' after decoding, holds control characters, has a field over 255 bytes or
 * appears twice sets auth_malformed instead; that is not a parse error.
 *
 * Errors (*out may be partly written):
 *   WM_ERR_AGAIN      the head is incomplete and len < HTTP_HEAD_MAX
 *   WM_ERR_RANGE      no blank line in the first HTTP_HEAD_MAX bytes, more
 *                     than HTTP_HEADERS_MAX header lines (answer 431), or cap
 *                     too small for the rewritten head
 *   WM_ERR_MALFORMED  anything else (answer 400): request line not "METHOD SP
 *                     TARGET SP HTTP/1.0|1.1" with single spaces, method not
 *                     a token of 1..15 characters, CONNECT target not
 *                     host:port (IPv6 in brackets, port 1..65535), other
 *                     methods not http://host[:port][/path] (https:// URLs,
 *                     origin-form and userinfo are refused), a host name with
 *                     characters outside letters, digits, '-', '_', '.' or a
 *                     last label starting with a digit (not a valid IPv4
 *                     literal either: "1.2.3", "0x7f.1"), a header line
 *                     without ':' or with whitespace before it, an obs-fold
 *                     continuation line, control characters or NUL.
 * Bytes that cannot be valid stop the parse as soon as they arrive, before
 * the head is complete.
 */
int http_parse_request(const uint8_t *buf, size_t len, struct http_request *out, uint8_t *rewritten,
		       size_t cap, size_t *rewritten_len);

/*
 * Where the scan of a head that arrives in pieces got to. Zero it before the
 * first call; it belongs to one connection's buffer.
 */
struct http_head_scan {
	size_t line_start; /* offset of the first line not yet complete */
	size_t checked;	   /* bytes before this offset have been examined */
	size_t lines;	   /* complete lines so far, the request line included */
	bool done;	   /* the blank line has been seen */
};

/*
 * Incremental front of http_parse_request, for a head that arrives a few
 * bytes at a time: buf[0..len) is everything received so far (the same
 * bytes as last call, plus what came since). Only bytes not examined before
 * are looked at, and each line is checked once, when its end arrives, with
 * the checks http_parse_request makes, so the total work for a head is
 * linear in its size however it is split. Returns 0 once the blank line is
 * in buf (then call http_parse_request on it, once), WM_ERR_AGAIN while the
 * head is incomplete and len < HTTP_HEAD_MAX, or the error
 * http_parse_request would return for those bytes (WM_ERR_MALFORMED,
 * WM_ERR_RANGE).
 */
int http_scan_head(struct http_head_scan *scan, const uint8_t *buf, size_t len);

/*
 * Formats the proxy's own response into out (cap bytes, NUL-terminated) and
 * returns its length without the NUL, or 0 when it does not fit.
 *   200: "HTTP/1.1 200 Connection established", extra_headers, blank line.
 *   other: status line with the standard reason phrase (400 Bad Request, 403
 *   Forbidden, 405 Method Not Allowed, 407 Proxy Authentication Required, 431
 *   Request Header Fields Too Large, 502 Bad Gateway, 504 Gateway Timeout;
 *   others "Error"), Content-Type: text/plain, Content-Length, Connection:
 *   close, extra_headers, blank line, and a one-line body naming the status.
 * extra_headers may be NULL; each of its lines ends in CRLF (for 407 the
 * caller passes "Proxy-Authenticate: Basic realm=\"wanmux\"\r\n").
 */
size_t http_format_response(char *out, size_t cap, int status, const char *extra_headers);

/* 403 for FRAME_ERR_NOT_ALLOWED, 504 for FRAME_ERR_TIMEOUT, 502 for the rest. */
int http_status_for_error(uint32_t frame_error);

#endif
