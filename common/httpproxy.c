/*
 * HTTP/1.x proxy request heads: line splitting, request-line and header
 * checks, Basic proxy credentials and the origin-form rewrite, plus the
 * proxy's own short responses. Strict on purpose: whatever this accepts is
 * forwarded to an origin server, so anything two parsers might read
 * differently (folded lines, stray CRs, spaces before colons) is refused.
 */
#include "wanmux/httpproxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/netaddr.h"

/* user ':' pass, each at most 255 bytes, and its base64 (with padding). */
#define BASIC_DECODED_MAX (255 + 1 + 255)
#define BASIC_B64_MAX (4 * ((BASIC_DECODED_MAX + 2) / 3))

struct span {
	const uint8_t *p;
	size_t len;
};

/* The rewritten head being built; overflow is reported once at the end. */
struct writer {
	uint8_t *p;
	size_t cap;
	size_t len;
	bool overflow;
};

static void put(struct writer *w, const void *data, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->p + w->len, data, n);
	w->len += n;
}

static void put_str(struct writer *w, const char *s)
{
	put(w, s, strlen(s));
}

static bool is_tchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool span_is(struct span s, const char *text)
{
	size_t n = strlen(text);

	return s.len == n && strncasecmp((const char *)s.p, text, n) == 0;
}

static bool span_starts(struct span s, const char *prefix)
{
	size_t n = strlen(prefix);

	return s.len >= n && strncasecmp((const char *)s.p, prefix, n) == 0;
}

/*
 * Finds the line starting at pos in buf[0..lim), examining bytes from
 * "from" on (pos <= from: the bytes before it are known to hold no line end
 * and nothing invalid). Returns 1 with the line (CR LF or LF excluded) and
 * the offset after it, 0 when no line end is in reach yet (then *checked, if
 * not NULL, is where a later call may resume), or WM_ERR_MALFORMED at the
 * first byte no head may hold: a control character other than HTAB, NUL,
 * DEL, or a CR not followed by LF. A CR as the last available byte may still
 * get its LF, so it waits, and is examined again.
 */
static int next_line_from(const uint8_t *buf, size_t lim, size_t pos, size_t from,
			  struct span *line, size_t *next, size_t *checked)
{
	for (size_t i = from; i < lim; i++) {
		uint8_t c = buf[i];

		if (c == '\n') {
			size_t end = i;

			if (end > pos && buf[end - 1] == '\r')
				end--;
			line->p = buf + pos;
			line->len = end - pos;
			*next = i + 1;
			return 1;
		}
		if (c == '\r') {
			if (i + 1 < lim && buf[i + 1] != '\n')
				return WM_ERR_MALFORMED;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return WM_ERR_MALFORMED;
	}
	if (checked != NULL)
		*checked = lim > from && buf[lim - 1] == '\r' ? lim - 1 : lim;
	return 0;
}

static int next_line(const uint8_t *buf, size_t lim, size_t pos, struct span *line, size_t *next)
{
	return next_line_from(buf, lim, pos, pos, line, next, NULL);
}

/* Decimal port 1..65535, 1 to 5 digits. */
static int parse_port(struct span s, uint16_t *out)
{
	uint32_t v = 0;

	if (s.len == 0 || s.len > 5)
		return WM_ERR_MALFORMED;
	for (size_t i = 0; i < s.len; i++) {
		if (!is_digit(s.p[i]))
			return WM_ERR_MALFORMED;
		v = v * 10 + (uint32_t)(s.p[i] - '0');
	}
	if (v == 0 || v > 65535)
		return WM_ERR_MALFORMED;
	*out = (uint16_t)v;
	return 0;
}

/*
 * A name goes to the server's resolver, which (getaddrinfo) also accepts
 * numeric forms such as "127.1" or "0x7f000001". Those would slip past name
 * rules in the ACL as names, so a last label starting with a digit (never a
 * real top-level domain) is refused unless the whole host is a dotted quad.
 */
static int parse_host(struct span h, struct frame_addr *a)
{
	char text[FRAME_NAME_MAX + 1];
	size_t label_start = 0, end = h.len;

	if (h.len == 0 || h.len > FRAME_NAME_MAX)
		return WM_ERR_MALFORMED;
	memcpy(text, h.p, h.len);
	text[h.len] = '\0';
	if (inet_pton(AF_INET, text, a->u.ipv4) == 1) {
		a->type = FRAME_ADDR_IPV4;
		return 0;
	}
	if (!netaddr_hostname_valid(text, h.len))
		return WM_ERR_MALFORMED;
	if (text[end - 1] == '.')
		end--; /* one trailing dot: a fully qualified name */
	for (size_t i = 0; i < end; i++)
		if (text[i] == '.')
			label_start = i + 1;
	if (is_digit((uint8_t)text[label_start]))
		return WM_ERR_MALFORMED;
	a->type = FRAME_ADDR_NAME;
	a->name_len = (uint8_t)h.len;
	memcpy(a->u.name, text, h.len + 1);
	return 0;
}

/* host:port, [v6]:port, and without ":port" when port_required is false (port 80). */
static int parse_authority(struct span s, bool port_required, struct frame_addr *a)
{
	struct span host, port = {NULL, 0};
	bool has_port = false;

	memset(a, 0, sizeof *a);
	if (s.len == 0 || memchr(s.p, '@', s.len) != NULL)
		return WM_ERR_MALFORMED;
	if (s.p[0] == '[') {
		const uint8_t *close = memchr(s.p, ']', s.len);
		char text[INET6_ADDRSTRLEN];
		size_t after;

		if (close == NULL)
			return WM_ERR_MALFORMED;
		host.p = s.p + 1;
		host.len = (size_t)(close - host.p);
		if (host.len == 0 || host.len >= sizeof text)
			return WM_ERR_MALFORMED;
		memcpy(text, host.p, host.len);
		text[host.len] = '\0';
		if (inet_pton(AF_INET6, text, a->u.ipv6) != 1)
			return WM_ERR_MALFORMED;
		a->type = FRAME_ADDR_IPV6;
		after = (size_t)(close + 1 - s.p);
		if (after < s.len) {
			if (s.p[after] != ':')
				return WM_ERR_MALFORMED;
			has_port = true;
			port.p = s.p + after + 1;
			port.len = s.len - after - 1;
		}
	} else {
		const uint8_t *colon = memchr(s.p, ':', s.len);
		int rc;

		host = s;
		if (colon != NULL) {
			host.len = (size_t)(colon - s.p);
			has_port = true;
			port.p = colon + 1;
			port.len = s.len - host.len - 1;
		}
		rc = parse_host(host, a);
		if (rc != 0)
			return rc;
	}
	if (!has_port) {
		if (port_required)
			return WM_ERR_MALFORMED;
		a->port = 80;
		return 0;
	}
	return parse_port(port, &a->port);
}

/* Copies up to 255 bytes free of control characters into out, NUL-terminated. */
static bool copy_credential(const uint8_t *p, size_t len, char out[256])
{
	if (len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	memcpy(out, p, len);
	out[len] = '\0';
	return true;
}

/* "Basic <token68>" with user:pass inside (RFC 7617). False when unusable. */
static bool decode_basic(struct span v, struct http_request *out)
{
	uint8_t bin[BASIC_DECODED_MAX];
	const char *end = NULL;
	const uint8_t *colon;
	size_t bin_len = 0, i = 5;
	bool ok = false;

	if (!span_starts(v, "Basic") || v.len < 6 || v.p[5] != ' ')
		return false;
	while (i < v.len && v.p[i] == ' ')
		i++;
	if (i == v.len || v.len - i > BASIC_B64_MAX)
		return false;
	if (sodium_base642bin(bin, sizeof bin, (const char *)v.p + i, v.len - i, NULL, &bin_len,
			      &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    end != (const char *)v.p + v.len)
		goto out;
	colon = memchr(bin, ':', bin_len);
	if (colon == NULL)
		goto out;
	ok = copy_credential(bin, (size_t)(colon - bin), out->user) &&
	     copy_credential(colon + 1, bin_len - (size_t)(colon - bin) - 1, out->pass);
out:
	sodium_memzero(bin, sizeof bin);
	return ok;
}

static void auth_header(struct span value, struct http_request *out)
{
	/* Two credentials are ambiguous: trust neither. */
	if (out->has_auth || out->auth_malformed || !decode_basic(value, out)) {
		out->has_auth = false;
		out->auth_malformed = true;
		sodium_memzero(out->user, sizeof out->user);
		sodium_memzero(out->pass, sizeof out->pass);
		return;
	}
	out->has_auth = true;
}

struct request_line {
	struct span method, target, version;
	struct span authority, path; /* absolute-form only */
};

static int parse_request_line(struct span l, struct request_line *rl, struct http_request *out)
{
	const uint8_t *sp1, *sp2;
	struct span t;

	sp1 = memchr(l.p, ' ', l.len);
	if (sp1 == NULL)
		return WM_ERR_MALFORMED;
	rl->method.p = l.p;
	rl->method.len = (size_t)(sp1 - l.p);
	rl->target.p = sp1 + 1;
	sp2 = memchr(rl->target.p, ' ', l.len - rl->method.len - 1);
	if (sp2 == NULL)
		return WM_ERR_MALFORMED;
	rl->target.len = (size_t)(sp2 - rl->target.p);
	rl->version.p = sp2 + 1;
	rl->version.len = l.len - (size_t)(rl->version.p - l.p);

	if (rl->method.len == 0 || rl->method.len >= sizeof out->method)
		return WM_ERR_MALFORMED;
	for (size_t i = 0; i < rl->method.len; i++)
		if (!is_tchar(rl->method.p[i]))
			return WM_ERR_MALFORMED;
	/* The version is case-sensitive (RFC 9112 section 2.3). */
	if (rl->version.len != 8 || (memcmp(rl->version.p, "HTTP/1.1", 8) != 0 &&
				     memcmp(rl->version.p, "HTTP/1.0", 8) != 0))
		return WM_ERR_MALFORMED;
	if (rl->target.len == 0)
		return WM_ERR_MALFORMED;
	for (size_t i = 0; i < rl->target.len; i++)
		if (rl->target.p[i] <= 0x20 || rl->target.p[i] == 0x7f)
			return WM_ERR_MALFORMED;
	memcpy(out->method, rl->method.p, rl->method.len);
	out->method[rl->method.len] = '\0';

	if (strcmp(out->method, "CONNECT") == 0) {
		out->kind = HTTP_KIND_CONNECT;
		return parse_authority(rl->target, true, &out->target);
	}
	out->kind = HTTP_KIND_ABSOLUTE;
	/* Only plain http: a proxy that took https:// would have to speak TLS itself. */
	if (!span_starts(rl->target, "http://"))
		return WM_ERR_MALFORMED;
	t.p = rl->target.p + 7;
	t.len = rl->target.len - 7;
	rl->authority = t;
	for (size_t i = 0; i < t.len; i++) {
		if (t.p[i] == '/' || t.p[i] == '?' || t.p[i] == '#') {
			rl->authority.len = i;
			break;
		}
	}
	for (size_t i = 0; i < rl->authority.len; i++)
		if (rl->authority.p[i] >= 0x80)
			return WM_ERR_MALFORMED;
	rl->path.p = t.p + rl->authority.len;
	rl->path.len = t.len - rl->authority.len;
	for (size_t i = 0; i < rl->path.len; i++) {
		if (rl->path.p[i] == '#') {
			rl->path.len = i;
			break;
		}
	}
	return parse_authority(rl->authority, false, &out->target);
}

/* Splits "name: value" (value without surrounding SP/HTAB). */
static int parse_header(struct span l, struct span *name, struct span *value)
{
	const uint8_t *colon;

	/* obs-fold: proxies and origins disagree on it, so refuse it (RFC 9112 5.2). */
	if (l.p[0] == ' ' || l.p[0] == '\t')
		return WM_ERR_MALFORMED;
	colon = memchr(l.p, ':', l.len);
	if (colon == NULL || colon == l.p)
		return WM_ERR_MALFORMED;
	name->p = l.p;
	name->len = (size_t)(colon - l.p);
	for (size_t i = 0; i < name->len; i++)
		if (!is_tchar(name->p[i]))
			return WM_ERR_MALFORMED;
	value->p = colon + 1;
	value->len = l.len - name->len - 1;
	while (value->len > 0 && (value->p[0] == ' ' || value->p[0] == '\t')) {
		value->p++;
		value->len--;
	}
	while (value->len > 0 &&
	       (value->p[value->len - 1] == ' ' || value->p[value->len - 1] == '\t'))
		value->len--;
	return 0;
}

int http_scan_head(struct http_head_scan *scan, const uint8_t *buf, size_t len)
{
	size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	int incomplete = len < HTTP_HEAD_MAX ? WM_ERR_AGAIN : WM_ERR_RANGE;

	if (scan->done)
		return 0;
	if (scan->checked < scan->line_start)
		scan->checked = scan->line_start;
	for (;;) {
		struct span line;
		size_t next = 0;
		int rc = next_line_from(buf, lim, scan->line_start, scan->checked, &line, &next,
					&scan->checked);

		if (rc < 0)
			return rc;
		if (rc == 0)
			return incomplete;
		scan->line_start = next;
		scan->checked = next;
		/* Each line is judged once, when it is complete, with the checks
		 * http_parse_request makes, so a bad line is refused as early. */
		if (scan->lines++ == 0) {
			struct request_line rl;
			struct http_request scratch;

			memset(&rl, 0, sizeof rl);
			memset(&scratch, 0, sizeof scratch);
			rc = parse_request_line(line, &rl, &scratch);
			if (rc != 0)
				return rc;
			continue;
		}
		if (line.len == 0) {
			scan->done = true;
			return 0;
		}
		if (scan->lines - 1 > HTTP_HEADERS_MAX)
			return WM_ERR_RANGE;
		struct span name, value;

		rc = parse_header(line, &name, &value);
		if (rc != 0)
			return rc;
	}
}

int http_parse_request(const uint8_t *buf, size_t len, struct http_request *out, uint8_t *rewritten,
		       size_t cap, size_t *rewritten_len)
{
	size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	int incomplete = len < HTTP_HEAD_MAX ? WM_ERR_AGAIN : WM_ERR_RANGE;
	struct writer w = {rewritten, cap, 0, false};
	struct request_line rl;
	struct span line;
	size_t pos = 0, next = 0, headers = 0;
	int rc;

	memset(out, 0, sizeof *out);
	memset(&rl, 0, sizeof rl);
	*rewritten_len = 0;
	if (rewritten == NULL)
		w.cap = 0;

	rc = next_line(buf, lim, pos, &line, &next);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return incomplete;
	rc = parse_request_line(line, &rl, out);
	if (rc != 0)
		return rc;
	pos = next;
	if (out->kind == HTTP_KIND_ABSOLUTE) {
		put(&w, rl.method.p, rl.method.len);
		put_str(&w, " ");
		if (rl.path.len == 0 || rl.path.p[0] != '/')
			put_str(&w, "/");
		put(&w, rl.path.p, rl.path.len);
		put_str(&w, " ");
		put(&w, rl.version.p, rl.version.len);
		put_str(&w, "\r\nHost: ");
		put(&w, rl.authority.p, rl.authority.len);
		put_str(&w, "\r\n");
	}

	for (;;) {
		struct span name, value;

		rc = next_line(buf, lim, pos, &line, &next);
		if (rc < 0)
			return rc;
		if (rc == 0)
			return incomplete;
		pos = next;
		if (line.len == 0)
			break;
		if (++headers > HTTP_HEADERS_MAX)
			return WM_ERR_RANGE;
		rc = parse_header(line, &name, &value);
		if (rc != 0)
			return rc;
		if (span_is(name, "Proxy-Authorization")) {
			auth_header(value, out);
			continue;
		}
		if (span_is(name, "Proxy-Connection") || span_is(name, "Connection") ||
		    span_is(name, "Keep-Alive") || span_is(name, "Host"))
			continue;
		if (out->kind == HTTP_KIND_ABSOLUTE) {
			put(&w, line.p, line.len);
			put_str(&w, "\r\n");
		}
	}
	out->head_len = pos;
	if (out->kind == HTTP_KIND_CONNECT)
		return 0;
	put_str(&w, "Connection: close\r\n\r\n");
	if (w.overflow)
		return WM_ERR_RANGE;
	*rewritten_len = w.len;
	return 0;
}

static const char *reason_phrase(int status)
{
	switch (status) {
	case 200:
		return "Connection established";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 405:
		return "Method Not Allowed";
	case 407:
		return "Proxy Authentication Required";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 504:
		return "Gateway Timeout";
	}
	return "Error";
}

size_t http_format_response(char *out, size_t cap, int status, const char *extra_headers)
{
	const char *reason = reason_phrase(status);
	const char *extra = extra_headers != NULL ? extra_headers : "";
	char body[64];
	int body_len, n;

	if (status == 200) {
		n = snprintf(out, cap, "HTTP/1.1 200 %s\r\n%s\r\n", reason, extra);
	} else {
		body_len = snprintf(body, sizeof body, "%d %s\n", status, reason);
		if (body_len < 0 || (size_t)body_len >= sizeof body)
			return 0;
		n = snprintf(out, cap,
			     "HTTP/1.1 %d %s\r\n"
			     "Content-Type: text/plain\r\n"
			     "Content-Length: %d\r\n"
			     "Connection: close\r\n"
			     "%s\r\n%s",
			     status, reason, body_len, extra, body);
	}
	if (n < 0 || (size_t)n >= cap)
		return 0;
	return (size_t)n;
}

int http_status_for_error(uint32_t frame_error)
{
	switch (frame_error) {
	case FRAME_ERR_NOT_ALLOWED:
		return 403;
	case FRAME_ERR_TIMEOUT:
		return 504;
	}
	return 502;
}
