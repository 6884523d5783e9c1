/*
 * Allow rules for the server's targets: parsing CIDR / hostname rules with
 * port ranges, and matching a (name, address, port) against them. Pure: no DNS,
 * no sockets, no logging; the caller reports the errors it gets back.
 */
#include "wanmux/acl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wanmux/err.h"
#include "wanmux/netaddr.h"

#define ACL_NAME_MAX 253
#define ACL_LABEL_MAX 63
#define ACL_ECHO_MAX 80 /* characters of a bad rule quoted in an error */

enum acl_kind {
	ACL_KIND_V4,
	ACL_KIND_V6,
	ACL_KIND_NAME,
};

struct acl_rule {
	enum acl_kind kind;
	uint16_t port_lo;
	uint16_t port_hi;
	/* CIDR rules: network bytes (4 used for IPv4), prefix length. */
	uint8_t net[16];
	unsigned int prefix;
	/* The rule lies inside a loopback / link-local / metadata range. */
	bool special;
	/* Hostname rules: lower case, without the "*." of a wildcard. */
	bool wildcard;
	char name[ACL_NAME_MAX + 1];
};

/* One of the server's own interface addresses (acl_set_own_addresses). */
struct acl_own {
	enum acl_kind kind; /* V4 or V6; IPv4-mapped addresses are stored as V4 */
	uint8_t addr[16];
};

struct acl {
	struct acl_rule *rules;
	size_t count;
	size_t cap;
	struct acl_own *own;
	size_t own_count;
};

/*
 * Addresses a broad rule such as 0.0.0.0/0 must not open up: connecting to
 * them reaches the server machine itself, its link, or a cloud metadata
 * service. Only a rule inside one of these ranges permits them.
 */
struct acl_range {
	int family;
	uint8_t net[16];
	unsigned int prefix;
};

static const struct acl_range acl_special[] = {
    {AF_INET, {0}, 8},			 /* 0.0.0.0/8: "this host" */
    {AF_INET, {127}, 8},		 /* loopback */
    {AF_INET, {169, 254}, 16},		 /* link-local, 169.254.169.254 metadata */
    {AF_INET, {100, 100, 100, 200}, 32}, /* Alibaba Cloud metadata */
    {AF_INET6, {0}, 128},		 /* :: */
    {AF_INET6, {[15] = 1}, 128},	 /* ::1 */
    {AF_INET6, {0xfe, 0x80}, 10},	 /* link-local */
    {AF_INET6, {0xfd, 0x00, 0x0e, 0xc2, [14] = 0x02, [15] = 0x54}, 128}, /* fd00:ec2::254 */
    /* Local-use NAT64 (RFC 8215): where the IPv4 address sits depends on the
     * prefix length the operator chose, so the whole range needs a rule. */
    {AF_INET6, {0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48},
};

/*
 * IPv6 ranges that carry an IPv4 address a gateway or the kernel may turn
 * back into IPv4: 64:ff9b::7f00:1 through a NAT64 (or ::ffff:0:7f00:1
 * through a stateless SIIT one) is 127.0.0.1 on the translator,
 * 2002:a9fe:a9fe:: is 6to4 for 169.254.169.254. For the special
 * check such an address is also judged by the IPv4 address inside it, so
 * [::/0] opens no more than 0.0.0.0/0 does. (IPv4-mapped addresses are
 * converted to IPv4 outright, before any matching.)
 */
struct acl_embedding {
	uint8_t prefix[16];
	unsigned int prefix_len;
	unsigned int offset; /* byte where the IPv4 address starts */
	bool inverted;	     /* stored with every bit flipped (Teredo client) */
};

static const struct acl_embedding acl_embeddings[] = {
    {{0}, 96, 12, false},		       /* ::/96 IPv4-compatible (RFC 4291) */
    {{0x00, 0x64, 0xff, 0x9b}, 96, 12, false}, /* 64:ff9b::/96 NAT64 (RFC 6052) */
    {{[8] = 0xff, [9] = 0xff}, 96, 12, false}, /* ::ffff:0:0/96 SIIT (RFC 6145) */
    {{0x20, 0x02}, 16, 2, false},	       /* 2002::/16 6to4 (RFC 3056) */
    {{0x20, 0x01, 0x00, 0x00}, 32, 4, false},  /* Teredo server (RFC 4380) */
    {{0x20, 0x01, 0x00, 0x00}, 32, 12, true},  /* Teredo client, obfuscated */
};

static const uint8_t acl_v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

struct acl *acl_new(void)
{
	return calloc(1, sizeof(struct acl));
}

void acl_free(struct acl *acl)
{
	if (acl == NULL)
		return;
	free(acl->own);
	free(acl->rules);
	free(acl);
}

size_t acl_count(const struct acl *acl)
{
	return acl != NULL ? acl->count : 0;
}

/* The first bits of a and b agree. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned int bits)
{
	unsigned int whole = bits / 8;
	unsigned int rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));

	return (a[whole] & mask) == (b[whole] & mask);
}

/* Whether any bit after the first bits of the len-byte a is set. */
static bool host_bits_set(const uint8_t *a, size_t len, unsigned int bits)
{
	for (size_t i = bits / 8; i < len; i++) {
		uint8_t keep = 0;

		if (i == bits / 8 && bits % 8 != 0)
			keep = (uint8_t)(0xff << (8 - bits % 8));
		if ((a[i] & (uint8_t)~keep) != 0)
			return true;
	}
	return false;
}

/*
 * Whether a range of min_prefix bits at addr lies inside a special range
 * (min_prefix 32 or 128: whether the address is special). IPv6 is also
 * judged by an IPv4 address it embeds, as far as the range fixes its bits.
 */
static bool in_special(int family, const uint8_t *addr, unsigned int min_prefix)
{
	for (size_t i = 0; i < sizeof(acl_special) / sizeof(acl_special[0]); i++) {
		const struct acl_range *r = &acl_special[i];

		if (r->family == family && min_prefix >= r->prefix &&
		    prefix_equal(addr, r->net, r->prefix))
			return true;
	}
	if (family != AF_INET6)
		return false;
	for (size_t i = 0; i < sizeof(acl_embeddings) / sizeof(acl_embeddings[0]); i++) {
		const struct acl_embedding *e = &acl_embeddings[i];
		unsigned int start = e->offset * 8;
		uint8_t v4[4];

		if (min_prefix <= start || min_prefix < e->prefix_len ||
		    !prefix_equal(addr, e->prefix, e->prefix_len))
			continue;
		for (size_t b = 0; b < 4; b++)
			v4[b] = e->inverted ? (uint8_t)~addr[e->offset + b] : addr[e->offset + b];
		if (in_special(AF_INET, v4, min_prefix - start > 32 ? 32 : min_prefix - start))
			return true;
	}
	return false;
}

/* 127.0.0.0/8 or ::1 itself: what a "localhost" name may lead to. */
static bool is_loopback(enum acl_kind kind, const uint8_t *addr)
{
	static const uint8_t v6_loopback[16] = {[15] = 1};

	if (kind == ACL_KIND_V4)
		return addr[0] == 127;
	return kind == ACL_KIND_V6 && memcmp(addr, v6_loopback, 16) == 0;
}

/* Fills bytes from an AF_INET or AF_INET6 sockaddr, IPv4-mapped as IPv4. */
static enum acl_kind address_bytes(const struct sockaddr *addr, uint8_t bytes[16])
{
	if (addr != NULL && addr->sa_family == AF_INET) {
		memcpy(bytes, &((const struct sockaddr_in *)addr)->sin_addr, 4);
		return ACL_KIND_V4;
	}
	if (addr != NULL && addr->sa_family == AF_INET6) {
		memcpy(bytes, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
		if (memcmp(bytes, acl_v4mapped_prefix, sizeof(acl_v4mapped_prefix)) == 0) {
			memmove(bytes, bytes + 12, 4);
			return ACL_KIND_V4;
		}
		return ACL_KIND_V6;
	}
	return ACL_KIND_NAME; /* no usable address */
}

static bool is_own(const struct acl *acl, enum acl_kind kind, const uint8_t *addr)
{
	size_t len = kind == ACL_KIND_V4 ? 4 : 16;

	for (size_t i = 0; i < acl->own_count; i++)
		if (acl->own[i].kind == kind && memcmp(acl->own[i].addr, addr, len) == 0)
			return true;
	return false;
}

/*
 * Writes "allow rule 'RULE': " plus the reason. The rule is quoted with
 * control characters replaced and cut at ACL_ECHO_MAX, so the message stays
 * one readable line whatever the input was.
 */
static void rule_err(char *err, size_t errlen, const char *rule, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void rule_err(char *err, size_t errlen, const char *rule, const char *fmt, ...)
{
	char echo[ACL_ECHO_MAX + 4];
	size_t i;
	size_t n;
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	for (i = 0; rule[i] != '\0' && i < ACL_ECHO_MAX; i++) {
		unsigned char c = (unsigned char)rule[i];

		echo[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	if (rule[i] != '\0') {
		memcpy(echo + i, "...", 3);
		i += 3;
	}
	echo[i] = '\0';
	snprintf(err, errlen, "allow rule '%s': ", echo);
	n = strlen(err);
	if (n + 1 >= errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

/* Decimal digits only, at most max_digits of them; -1 when not a number. */
static long parse_small_number(const char *s, size_t n, size_t max_digits)
{
	long v = 0;

	if (n == 0 || n > max_digits)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int parse_port(const char *s, size_t n, const char *rule, const char *what, uint16_t *out,
		      char *err, size_t errlen)
{
	long v;

	if (n == 0) {
		rule_err(err, errlen, rule, "missing %s port", what);
		return WM_ERR_PARSE;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			rule_err(err, errlen, rule, "%s port '%.*s' is not a number", what,
				 (int)(n > 16 ? 16 : n), s);
			return WM_ERR_PARSE;
		}
	}
	/* Leading zeros are harmless; skip them so "00080" fits the digit limit. */
	while (n > 1 && s[0] == '0') {
		s++;
		n--;
	}
	v = parse_small_number(s, n, 5);
	if (v < 1 || v > 65535) {
		rule_err(err, errlen, rule, "%s port %.*s out of range (1-65535)", what,
			 (int)(n > 16 ? 16 : n), s);
		return WM_ERR_PARSE;
	}
	*out = (uint16_t)v;
	return 0;
}

/* "PORT" or "LOW-HIGH" after the ':' of a rule. */
static int parse_ports(const char *s, const char *rule, struct acl_rule *r, char *err,
		       size_t errlen)
{
	const char *dash = strchr(s, '-');
	int rc;

	if (s[0] == '\0') {
		rule_err(err, errlen, rule, "missing port after ':'");
		return WM_ERR_PARSE;
	}
	if (dash == NULL) {
		rc = parse_port(s, strlen(s), rule, "the", &r->port_lo, err, errlen);
		r->port_hi = r->port_lo;
		return rc;
	}
	rc = parse_port(s, (size_t)(dash - s), rule, "low", &r->port_lo, err, errlen);
	if (rc < 0)
		return rc;
	rc = parse_port(dash + 1, strlen(dash + 1), rule, "high", &r->port_hi, err, errlen);
	if (rc < 0)
		return rc;
	if (r->port_lo > r->port_hi) {
		rule_err(err, errlen, rule, "port range %u-%u is backwards (low must be <= high)",
			 (unsigned)r->port_lo, (unsigned)r->port_hi);
		return WM_ERR_PARSE;
	}
	return 0;
}

/* ADDR[/LEN] of family into r; s is NUL-terminated, without brackets. */
static int parse_cidr(const char *s, int family, const char *rule, struct acl_rule *r, char *err,
		      size_t errlen)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned int max = family == AF_INET ? 32 : 128;
	size_t bytes = family == AF_INET ? 4 : 16;
	const char *fname = family == AF_INET ? "IPv4" : "IPv6";

	if (alen == 0) {
		rule_err(err, errlen, rule, "missing address");
		return WM_ERR_PARSE;
	}
	if (alen < sizeof(addr)) {
		memcpy(addr, s, alen);
		addr[alen] = '\0';
	}
	if (alen >= sizeof(addr) || inet_pton(family, addr, r->net) != 1) {
		if (family == AF_INET6)
			rule_err(err, errlen, rule, "'%.*s' in brackets is not an IPv6 address",
				 (int)(alen > 64 ? 64 : alen), s);
		else
			rule_err(err, errlen, rule, "'%.*s' is not an IPv4 address",
				 (int)(alen > 64 ? 64 : alen), s);
		return WM_ERR_PARSE;
	}
	r->kind = family == AF_INET ? ACL_KIND_V4 : ACL_KIND_V6;
	r->prefix = max;
	if (slash != NULL) {
		long len = parse_small_number(slash + 1, strlen(slash + 1), 3);

		if (len < 0) {
			rule_err(err, errlen, rule, "prefix length after '/' must be a number 0-%u",
				 max);
			return WM_ERR_PARSE;
		}
		if (len > (long)max) {
			rule_err(err, errlen, rule,
				 "prefix length /%ld is longer than %s allows (%u)", len, fname,
				 max);
			return WM_ERR_PARSE;
		}
		r->prefix = (unsigned int)len;
	}
	if (host_bits_set(r->net, bytes, r->prefix)) {
		uint8_t fixed[16];
		char fixtext[INET6_ADDRSTRLEN];

		memcpy(fixed, r->net, bytes);
		for (size_t i = 0; i < bytes; i++) {
			unsigned int first = (unsigned int)i * 8;

			if (first >= r->prefix)
				fixed[i] = 0;
			else if (first + 8 > r->prefix)
				fixed[i] &= (uint8_t)(0xff << (first + 8 - r->prefix));
		}
		inet_ntop(family, fixed, fixtext, sizeof(fixtext));
		rule_err(err, errlen, rule,
			 "host bits set beyond the /%u prefix (did you mean %s%s/%u%s?)", r->prefix,
			 family == AF_INET6 ? "[" : "", fixtext, r->prefix,
			 family == AF_INET6 ? "]" : "");
		return WM_ERR_PARSE;
	}
	if (family == AF_INET6 && r->prefix >= 96 &&
	    memcmp(r->net, acl_v4mapped_prefix, sizeof(acl_v4mapped_prefix)) == 0) {
		char v4[INET_ADDRSTRLEN];

		/* Mapped addresses are matched as IPv4, so this rule could never match. */
		inet_ntop(AF_INET, r->net + 12, v4, sizeof(v4));
		rule_err(err, errlen, rule, "IPv4-mapped address; write it as IPv4: %s/%u", v4,
			 r->prefix - 96);
		return WM_ERR_PARSE;
	}
	r->special = in_special(family, r->net, r->prefix);
	return 0;
}

static bool is_hostname_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.';
}

/* HOSTNAME or *.HOSTNAME (n bytes of s) into r. */
static int parse_hostname(const char *s, size_t n, const char *rule, struct acl_rule *r, char *err,
			  size_t errlen)
{
	size_t label = 0;
	bool numeric = true; /* the current (finally: last) label is all digits */

	r->kind = ACL_KIND_NAME;
	if (n >= 2 && s[0] == '*' && s[1] == '.') {
		r->wildcard = true;
		s += 2;
		n -= 2;
	}
	if (n == 0) {
		rule_err(err, errlen, rule, "missing host");
		return WM_ERR_PARSE;
	}
	if (n > ACL_NAME_MAX) {
		rule_err(err, errlen, rule, "hostname longer than %d characters", ACL_NAME_MAX);
		return WM_ERR_PARSE;
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '*') {
			rule_err(err, errlen, rule, "'*' is only allowed as a leading '*.'");
			return WM_ERR_PARSE;
		}
		if (c == '/') {
			rule_err(err, errlen, rule, "'%.*s' is not an IPv4 address",
				 (int)(n > 64 ? 64 : n), s);
			return WM_ERR_PARSE;
		}
		if (!is_hostname_char(c)) {
			unsigned char uc = (unsigned char)c;

			if (uc > 0x20 && uc < 0x7f)
				rule_err(err, errlen, rule, "invalid character '%c' in hostname",
					 c);
			else
				rule_err(err, errlen, rule, "invalid character 0x%02x in hostname",
					 uc);
			return WM_ERR_PARSE;
		}
		r->name[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
		if (c == '.') {
			if (label == 0) {
				rule_err(err, errlen, rule, "empty label in hostname");
				return WM_ERR_PARSE;
			}
			label = 0;
			numeric = true;
			continue;
		}
		if (++label > ACL_LABEL_MAX) {
			rule_err(err, errlen, rule, "hostname label longer than %d characters",
				 ACL_LABEL_MAX);
			return WM_ERR_PARSE;
		}
		if (c < '0' || c > '9')
			numeric = false;
	}
	if (label == 0) {
		rule_err(err, errlen, rule, "empty label in hostname");
		return WM_ERR_PARSE;
	}
	/* No top-level domain is all digits: this is a mistyped IPv4 address. */
	if (numeric) {
		rule_err(err, errlen, rule, "'%.*s' is neither an IPv4 address nor a hostname",
			 (int)(n > 64 ? 64 : n), s);
		return WM_ERR_PARSE;
	}
	r->name[n] = '\0';
	return 0;
}

/* The rule without its port part: "[v6[/len]]", "v4[/len]" or a hostname. */
static int parse_host(const char *s, size_t n, const char *rule, struct acl_rule *r, char *err,
		      size_t errlen)
{
	char tmp[ACL_NAME_MAX + 8];
	struct in_addr a4;

	if (n == 0) {
		rule_err(err, errlen, rule, "missing address or hostname before ':'");
		return WM_ERR_PARSE;
	}
	if (s[0] == '[') {
		if (n < 2 || n - 2 >= sizeof(tmp)) {
			rule_err(err, errlen, rule, "'%.*s' in brackets is not an IPv6 address",
				 (int)(n > 64 ? 64 : n), s);
			return WM_ERR_PARSE;
		}
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = '\0';
		return parse_cidr(tmp, AF_INET6, rule, r, err, errlen);
	}
	if (n >= sizeof(tmp))
		return parse_hostname(s, n, rule, r, err, errlen); /* reports the length */
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (strchr(tmp, '/') != NULL || inet_pton(AF_INET, tmp, &a4) == 1)
		return parse_cidr(tmp, AF_INET, rule, r, err, errlen);
	return parse_hostname(s, n, rule, r, err, errlen);
}

int acl_add(struct acl *acl, const char *rule, char *err, size_t errlen)
{
	struct acl_rule r;
	const char *host = rule;
	size_t hostlen;
	const char *ports = NULL;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (acl == NULL || rule == NULL || rule[0] == '\0') {
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "empty allow rule");
		return WM_ERR_PARSE;
	}
	memset(&r, 0, sizeof(r));
	r.port_lo = 1;
	r.port_hi = 65535;
	if (rule[0] == '[') {
		const char *close_br = strchr(rule, ']');

		if (close_br == NULL) {
			rule_err(err, errlen, rule, "missing ']' after IPv6 address");
			return WM_ERR_PARSE;
		}
		hostlen = (size_t)(close_br - rule) + 1;
		if (close_br[1] == ':') {
			ports = close_br + 2;
		} else if (close_br[1] != '\0') {
			rule_err(err, errlen, rule, "expected ':PORT' or the end after ']'");
			return WM_ERR_PARSE;
		}
	} else {
		const char *colon = strchr(rule, ':');

		if (colon != NULL && strchr(colon + 1, ':') != NULL) {
			rule_err(err, errlen, rule,
				 "IPv6 addresses must be in brackets, e.g. [2001:db8::/32]:443");
			return WM_ERR_PARSE;
		}
		hostlen = colon != NULL ? (size_t)(colon - host) : strlen(host);
		if (colon != NULL)
			ports = colon + 1;
	}
	rc = parse_host(host, hostlen, rule, &r, err, errlen);
	if (rc < 0)
		return rc;
	if (ports != NULL) {
		rc = parse_ports(ports, rule, &r, err, errlen);
		if (rc < 0)
			return rc;
	}
	if (acl->count == acl->cap) {
		size_t cap = acl->cap != 0 ? acl->cap * 2 : 8;
		struct acl_rule *grown = realloc(acl->rules, cap * sizeof(*grown));

		if (grown == NULL) {
			if (err != NULL && errlen > 0)
				snprintf(err, errlen, "out of memory");
			return WM_ERR_NOMEM;
		}
		acl->rules = grown;
		acl->cap = cap;
	}
	acl->rules[acl->count++] = r;
	return 0;
}

/*
 * The name a client asked for, checked and without one trailing dot: its
 * length, or 0 when it is not a plausible DNS name (then no hostname rule
 * matches it).
 */
static size_t name_len(const char *name)
{
	size_t n;

	if (name == NULL)
		return 0;
	n = strnlen(name, ACL_NAME_MAX + 2);
	if (!netaddr_hostname_valid(name, n))
		return 0;
	return name[n - 1] == '.' ? n - 1 : n;
}

static bool name_matches(const struct acl_rule *r, const char *name, size_t n)
{
	size_t rlen = strlen(r->name);

	if (!r->wildcard)
		return n == rlen && strncasecmp(name, r->name, n) == 0;
	/* "*.example.com" wants at least one label in front of ".example.com". */
	return n > rlen + 1 && name[n - rlen - 1] == '.' &&
	       strncasecmp(name + n - rlen, r->name, rlen) == 0;
}

/* A name rule may lead to loopback only when it says so: "localhost" or a
 * name under ".localhost" (RFC 6761), and then only to loopback itself, never
 * to link-local or metadata. Other names that resolve to special addresses
 * (rebinding, a hostile resolver) need a CIDR rule. */
static bool name_rule_may_reach_loopback(const struct acl_rule *r)
{
	size_t len = strlen(r->name);
	return strcmp(r->name, "localhost") == 0 ||
	       (len > 10 && strcmp(r->name + len - 10, ".localhost") == 0);
}

static bool port_in(const struct acl_rule *r, uint16_t port)
{
	return port >= r->port_lo && port <= r->port_hi;
}

/*
 * Whether CIDR rule r, which covers a guarded address, may open it: a special
 * address needs a rule inside a special range; one of the server's own
 * addresses needs a rule for exactly that address (/32, /128), so that
 * 0.0.0.0/0 or the server's own subnet does not reach its local-only services.
 */
static bool cidr_rule_opens(const struct acl_rule *r, bool special, bool own)
{
	if (special)
		return r->special;
	if (own)
		return r->prefix == (r->kind == ACL_KIND_V4 ? 32u : 128u);
	return true;
}

bool acl_permits(const struct acl *acl, const char *name, const struct sockaddr *addr,
		 uint16_t port)
{
	uint8_t bytes[16];
	enum acl_kind kind;
	size_t n = name_len(name);
	bool special = false;
	bool own = false;
	bool loopback = false;

	if (acl == NULL)
		return false;
	kind = address_bytes(addr, bytes);
	if (kind != ACL_KIND_NAME) {
		special = in_special(kind == ACL_KIND_V4 ? AF_INET : AF_INET6, bytes,
				     kind == ACL_KIND_V4 ? 32 : 128);
		own = is_own(acl, kind, bytes);
		loopback = is_loopback(kind, bytes);
	}
	for (size_t i = 0; i < acl->count; i++) {
		const struct acl_rule *r = &acl->rules[i];

		if (!port_in(r, port))
			continue;
		if (r->kind == ACL_KIND_NAME) {
			if (n > 0 && name_matches(r, name, n) &&
			    ((!special && !own) || (loopback && name_rule_may_reach_loopback(r))))
				return true;
		} else if (r->kind == kind && prefix_equal(bytes, r->net, r->prefix) &&
			   cidr_rule_opens(r, special, own)) {
			return true;
		}
	}
	return false;
}

int acl_set_own_addresses(struct acl *acl, const struct sockaddr *const *addrs, size_t n)
{
	struct acl_own *own = NULL;
	size_t count = 0;

	if (n > 0) {
		own = calloc(n, sizeof(*own));
		if (own == NULL)
			return WM_ERR_NOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		enum acl_kind kind = address_bytes(addrs[i], own[count].addr);

		if (kind == ACL_KIND_NAME)
			continue;
		own[count++].kind = kind;
	}
	free(acl->own);
	acl->own = own;
	acl->own_count = count;
	return 0;
}

bool acl_matches_source(const struct acl *acl, const struct sockaddr *addr)
{
	uint8_t bytes[16];
	enum acl_kind kind;

	if (acl == NULL)
		return false;
	kind = address_bytes(addr, bytes);
	if (kind == ACL_KIND_NAME)
		return false;
	for (size_t i = 0; i < acl->count; i++) {
		const struct acl_rule *r = &acl->rules[i];
		if (r->kind == kind && prefix_equal(bytes, r->net, r->prefix))
			return true;
	}
	return false;
}

bool acl_may_permit_name(const struct acl *acl, const char *name, uint16_t port)
{
	size_t n = name_len(name);

	if (acl == NULL)
		return false;
	for (size_t i = 0; i < acl->count; i++) {
		const struct acl_rule *r = &acl->rules[i];

		if (!port_in(r, port))
			continue;
		if (r->kind != ACL_KIND_NAME || (n > 0 && name_matches(r, name, n)))
			return true;
	}
	return false;
}
