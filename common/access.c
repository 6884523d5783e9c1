/* Access records: names, logfmt quoting and the access line. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "wanmux/access.h"
#include "wanmux/frame.h"

const char *access_frontend_name(enum access_frontend f)
{
	static const char *names[ACCESS_FRONTEND_COUNT] = {
	    "forward", "socks", "http", "transparent", "reverse", "tunnel",
	};
	return (unsigned)f < ACCESS_FRONTEND_COUNT ? names[f] : "?";
}

const char *access_result_name(enum access_result r)
{
	static const char *names[ACCESS_RESULT_COUNT] = {
	    "ok", "refused", "unreachable", "reset", "timeout", "limit", "tunnel_lost",
	};
	return (unsigned)r < ACCESS_RESULT_COUNT ? names[r] : "?";
}

enum access_result access_result_for_error(uint32_t frame_error)
{
	switch (frame_error) {
	case FRAME_ERR_NONE:
		return ACCESS_OK;
	case FRAME_ERR_REFUSED:
	case FRAME_ERR_NOT_ALLOWED:
		return ACCESS_REFUSED;
	case FRAME_ERR_CONNECT_FAILED:
	case FRAME_ERR_HOST_UNKNOWN:
		return ACCESS_UNREACHABLE;
	case FRAME_ERR_TIMEOUT:
		return ACCESS_TIMEOUT;
	case FRAME_ERR_STREAM_LIMIT:
		return ACCESS_LIMIT;
	case FRAME_ERR_TUNNEL_LOST:
		return ACCESS_TUNNEL_LOST;
	default:
		return ACCESS_RESET;
	}
}

size_t access_utf8_len(const unsigned char *p)
{
	size_t n;
	uint32_t cp, min;
	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = p[0] & 0x1f;
		min = 0x80;
	} else if ((p[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = p[0] & 0x0f;
		min = 0x800;
	} else if ((p[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = p[0] & 0x07;
		min = 0x10000;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		/* A NUL ends the string here and fails this test too. */
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static bool needs_quotes(const char *v)
{
	if (v[0] == '\0')
		return true;
	const unsigned char *p = (const unsigned char *)v;
	while (*p != '\0') {
		if (*p <= ' ' || *p == '=' || *p == '"' || *p == '\\' || *p == 0x7f)
			return true;
		size_t n = access_utf8_len(p);
		if (n == 0)
			return true;
		p += n;
	}
	return false;
}

void access_logfmt_value(const char *v, char *out, size_t len)
{
	size_t o = 0;
	if (len == 0)
		return;
	if (!needs_quotes(v)) {
		snprintf(out, len, "%s", v);
		return;
	}
	/* Room for the closing quote and the NUL is kept at every step. */
	if (len < 3) {
		out[0] = '\0';
		return;
	}
	out[o++] = '"';
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
		char esc[8];
		size_t n;
		size_t u = *p >= 0x80 ? access_utf8_len(p) : 1;
		if (u == 0) {
			/* Not UTF-8: replaced, as go-logfmt does. */
			memcpy(esc, "\\ufffd", 6);
			n = 6;
		} else if (u > 1) {
			memcpy(esc, p, u);
			n = u;
			p += u - 1;
		} else if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			n = 2;
		} else if (*p == '\n') {
			memcpy(esc, "\\n", 2);
			n = 2;
		} else if (*p == '\t') {
			memcpy(esc, "\\t", 2);
			n = 2;
		} else if (*p < ' ' || *p == 0x7f) {
			n = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", *p);
		} else {
			esc[0] = (char)*p;
			n = 1;
		}
		if (o + n + 2 > len)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	out[o++] = '"';
	out[o] = '\0';
}

void access_short_key(const char *b64, char *out, size_t len)
{
	snprintf(out, len, "%.8s", b64);
}

void access_format(const struct access_record *rec, uint64_t ms, char *out, size_t len)
{
	char client[ACCESS_FIELD_MAX + 8], src[ACCESS_FIELD_MAX + 8], addr[ACCESS_FIELD_MAX + 8];
	char target[sizeof(rec->target) + 8];
	access_logfmt_value(rec->client[0] != '\0' ? rec->client : "-", client, sizeof(client));
	access_logfmt_value(rec->src[0] != '\0' ? rec->src : "-", src, sizeof(src));
	access_logfmt_value(rec->target[0] != '\0' ? rec->target : "-", target, sizeof(target));
	access_logfmt_value(rec->addr[0] != '\0' ? rec->addr : "-", addr, sizeof(addr));
	snprintf(out, len,
		 "client=%s src=%s frontend=%s target=%s addr=%s up=%" PRIu64 " down=%" PRIu64
		 " wire_up=%" PRIu64 " wire_down=%" PRIu64 " ms=%" PRIu64 " result=%s",
		 client, src, access_frontend_name(rec->frontend), target, addr, rec->up, rec->down,
		 (uint64_t)(rec->wire_up + 0.5), (uint64_t)(rec->wire_down + 0.5), ms,
		 access_result_name(rec->result));
}
