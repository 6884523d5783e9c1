/*
 * Tests for acl: a table of (rules, name, address, port, expected) vectors for
 * acl_permits, one for acl_may_permit_name, and a table of rejected rules with
 * the words their error message must contain.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "wanmux/acl.h"
#include "wanmux/err.h"

#define MAX_RULES 4

struct permit_vector {
	const char *rules[MAX_RULES]; /* NULL-terminated unless full */
	const char *name;	      /* NULL: the client gave an address */
	const char *addr;	      /* NULL: no address (not resolved yet) */
	uint16_t port;
	bool want;
};

static const struct permit_vector permit_vectors[] = {
    /* IPv4 prefixes: both ends of the range and one past each. */
    {{"10.0.0.0/8"}, NULL, "10.0.0.0", 80, true},
    {{"10.0.0.0/8"}, NULL, "10.255.255.255", 80, true},
    {{"10.0.0.0/8"}, NULL, "9.255.255.255", 80, false},
    {{"10.0.0.0/8"}, NULL, "11.0.0.0", 80, false},
    {{"10.0.0.0/8"}, NULL, "10.1.2.3", 1, true},
    {{"10.0.0.0/8"}, NULL, "10.1.2.3", 65535, true},
    {{"192.168.4.0/22"}, NULL, "192.168.7.255", 443, true},
    {{"192.168.4.0/22"}, NULL, "192.168.8.0", 443, false},
    {{"192.168.4.0/22"}, NULL, "192.168.3.255", 443, false},
    {{"203.0.113.128/25"}, NULL, "203.0.113.128", 22, true},
    {{"203.0.113.128/25"}, NULL, "203.0.113.127", 22, false},
    {{"203.0.113.6/31"}, NULL, "203.0.113.7", 22, true},
    {{"198.18.0.5"}, NULL, "198.18.0.5", 9, true},
    {{"198.18.0.5"}, NULL, "198.18.0.4", 9, false},
    {{"198.18.0.5"}, NULL, "198.18.0.6", 9, false},
    {{"198.18.0.5/32"}, NULL, "198.18.0.5", 65535, true},
    {{"198.18.0.0/15"}, NULL, "198.19.255.255", 5001, true},
    {{"198.18.0.0/15"}, NULL, "198.20.0.0", 5001, false},
    /* /0 matches every public address of its family, and only that family. */
    {{"0.0.0.0/0"}, NULL, "1.2.3.4", 80, true},
    {{"0.0.0.0/0"}, NULL, "255.255.255.255", 80, true},
    {{"0.0.0.0/0"}, NULL, "2001:db8::1", 80, false},
    {{"[::/0]"}, NULL, "2001:db8::1", 80, true},
    {{"[::/0]"}, NULL, "1.2.3.4", 80, false},
    /* Port ranges: boundaries. */
    {{"10.0.0.0/8:1-1024"}, NULL, "10.0.0.1", 1, true},
    {{"10.0.0.0/8:1-1024"}, NULL, "10.0.0.1", 1024, true},
    {{"10.0.0.0/8:1-1024"}, NULL, "10.0.0.1", 1025, false},
    {{"10.0.0.0/8:443"}, NULL, "10.0.0.1", 443, true},
    {{"10.0.0.0/8:443"}, NULL, "10.0.0.1", 442, false},
    {{"10.0.0.0/8:443"}, NULL, "10.0.0.1", 444, false},
    {{"10.0.0.0/8:8000-8080"}, NULL, "10.0.0.1", 7999, false},
    {{"10.0.0.0/8:8000-8080"}, NULL, "10.0.0.1", 8000, true},
    {{"10.0.0.0/8:8000-8080"}, NULL, "10.0.0.1", 8080, true},
    {{"10.0.0.0/8:8000-8080"}, NULL, "10.0.0.1", 8081, false},
    {{"10.0.0.0/8:65535"}, NULL, "10.0.0.1", 65535, true},
    {{"10.0.0.0/8:1-65535"}, NULL, "10.0.0.1", 0, false},
    {{"10.0.0.0/8"}, NULL, "10.0.0.1", 0, false},
    /* IPv6 prefixes. */
    {{"[2001:db8::/32]:443"}, NULL, "2001:db8::1", 443, true},
    {{"[2001:db8::/32]:443"}, NULL, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 443, true},
    {{"[2001:db8::/32]:443"}, NULL, "2001:db9::", 443, false},
    {{"[2001:db8::/32]:443"}, NULL, "2001:db7:ffff::", 443, false},
    {{"[2001:db8::/32]:443"}, NULL, "2001:db8::1", 80, false},
    {{"[2001:db8::/33]"}, NULL, "2001:db8:7fff::1", 80, true},
    {{"[2001:db8::/33]"}, NULL, "2001:db8:8000::1", 80, false},
    {{"[2001:db8::5]"}, NULL, "2001:db8::5", 80, true},
    {{"[2001:db8::5]"}, NULL, "2001:db8::4", 80, false},
    {{"[2001:db8::5/128]:22"}, NULL, "2001:db8::5", 22, true},
    {{"[2001:db8::1]"}, NULL, "10.0.0.1", 22, false},
    /* IPv4-mapped IPv6 is matched as IPv4, not by IPv6 rules. */
    {{"10.0.0.0/8"}, NULL, "::ffff:10.1.2.3", 80, true},
    {{"10.0.0.0/8"}, NULL, "::ffff:11.1.2.3", 80, false},
    {{"198.18.0.5:80"}, NULL, "::ffff:198.18.0.5", 80, true},
    {{"198.18.0.5:80"}, NULL, "::ffff:198.18.0.5", 81, false},
    {{"[::/0]"}, NULL, "::ffff:10.1.2.3", 80, false},
    {{"0.0.0.0/0"}, NULL, "::ffff:10.1.2.3", 80, true},
    /* Not mapped: IPv4-compatible and other embeddings stay IPv6. */
    {{"10.0.0.0/8"}, NULL, "::10.1.2.3", 80, false},
    {{"10.0.0.0/8"}, NULL, "64:ff9b::10.1.2.3", 80, false},
    /* Loopback, link-local and metadata need a rule of their own. */
    {{"0.0.0.0/0"}, NULL, "127.0.0.1", 22, false},
    {{"0.0.0.0/0"}, NULL, "169.254.169.254", 80, false},
    {{"0.0.0.0/0"}, NULL, "0.0.0.0", 80, false},
    {{"0.0.0.0/0"}, NULL, "100.100.100.200", 80, false},
    {{"0.0.0.0/0"}, NULL, "100.100.100.201", 80, true},
    {{"0.0.0.0/0"}, NULL, "::ffff:127.0.0.1", 22, false},
    {{"0.0.0.0/0"}, NULL, "126.255.255.255", 22, true},
    {{"0.0.0.0/0"}, NULL, "128.0.0.0", 22, true},
    {{"96.0.0.0/3"}, NULL, "127.0.0.1", 22, false},
    {{"127.0.0.0/8"}, NULL, "127.0.0.1", 22, true},
    {{"127.0.0.1:22"}, NULL, "127.0.0.1", 22, true},
    {{"127.0.0.1:22"}, NULL, "::ffff:127.0.0.1", 22, true},
    {{"169.254.169.254:80"}, NULL, "169.254.169.254", 80, true},
    {{"169.254.0.0/16"}, NULL, "169.254.169.254", 80, true},
    {{"[::/0]"}, NULL, "::1", 22, false},
    {{"[::/0]"}, NULL, "::", 22, false},
    {{"[::/0]"}, NULL, "fe80::1", 22, false},
    {{"[::/0]"}, NULL, "febf::1", 22, false},
    {{"[::/0]"}, NULL, "fec0::1", 22, true},
    {{"[::/0]"}, NULL, "fd00:ec2::254", 80, false},
    {{"[::/0]"}, NULL, "fd00:ec2::253", 80, true},
    {{"[::1]"}, NULL, "::1", 22, true},
    {{"[fe80::/10]"}, NULL, "fe80::1", 22, true},
    /* IPv6 that embeds a special IPv4 address is special: NAT64, 6to4,
     * IPv4-compatible, Teredo (server, and client with its bits flipped). */
    {{"[::/0]"}, NULL, "64:ff9b::7f00:1", 22, false},
    {{"[::/0]"}, NULL, "64:ff9b::a9fe:a9fe", 80, false},
    {{"[::/0]"}, NULL, "64:ff9b::6464:64c8", 80, false},
    {{"[::/0]"}, NULL, "64:ff9b::c000:201", 80, true},
    {{"[::/0]"}, NULL, "64:ff9b:1::7f00:1", 22, false},
    {{"[::/0]"}, NULL, "64:ff9b:1:abcd::c000:201", 22, false},
    {{"[::/0]"}, NULL, "2002:a9fe:a9fe::", 80, false},
    {{"[::/0]"}, NULL, "2002:7f00:1::1", 22, false},
    {{"[::/0]"}, NULL, "2002:0:1::1", 22, false},
    {{"[::/0]"}, NULL, "2002:c000:201::1", 80, true},
    {{"[::/0]"}, NULL, "::127.0.0.1", 22, false},
    {{"[::/0]"}, NULL, "::169.254.169.254", 80, false},
    {{"[::/0]"}, NULL, "::198.18.0.1", 80, true},
    /* SIIT IPv4-translated (RFC 6145), ::ffff:0:0/96: a stateless
     * translator turns it into the IPv4 address. */
    {{"[::/0]"}, NULL, "::ffff:0:127.0.0.1", 22, false},
    {{"[::/0]"}, NULL, "::ffff:0:169.254.169.254", 80, false},
    {{"[::/0]"}, NULL, "::ffff:0:198.18.0.1", 80, true},
    {{"[::/0]"}, NULL, "2001:0:7f00:1::1", 80, false},
    {{"[::/0]"}, NULL, "2001:0:c000:201::5601:5601", 80, false},
    {{"[::/0]"}, NULL, "2001:0:c000:201::3f57:fefc", 80, true},
    {{"[2000::/3]"}, NULL, "2002:a9fe:a9fe::1", 80, false},
    {{"[2002::/16]"}, NULL, "2002:a9fe:a9fe::", 80, false},
    {{"[64:ff9b::/96]"}, NULL, "64:ff9b::7f00:1", 22, false},
    {{"[64:ff9b::/96]"}, NULL, "64:ff9b::c000:201", 22, true},
    /* ...unless a rule names them. */
    {{"[64:ff9b::7f00:1]:22"}, NULL, "64:ff9b::7f00:1", 22, true},
    {{"[64:ff9b::7f00:0/104]"}, NULL, "64:ff9b::7f00:1", 22, true},
    {{"[2002:a9fe:a9fe::/48]"}, NULL, "2002:a9fe:a9fe::", 80, true},
    {{"[64:ff9b:1::/48]"}, NULL, "64:ff9b:1::7f00:1", 22, true},
    {{"[::127.0.0.1]"}, NULL, "::127.0.0.1", 22, true},
    /* A localhost name never leads to loopback behind a translator. */
    {{"localhost"}, "localhost", "64:ff9b::7f00:1", 22, false},
    /* Hostname rules: exact, case-insensitive, trailing dot. */
    {{"db.internal:5432"}, "db.internal", "10.9.9.9", 5432, true},
    {{"db.internal:5432"}, "DB.Internal", "10.9.9.9", 5432, true},
    {{"DB.INTERNAL:5432"}, "db.internal", "10.9.9.9", 5432, true},
    {{"db.internal:5432"}, "db.internal.", "10.9.9.9", 5432, true},
    {{"db.internal:5432"}, "db.internal", "10.9.9.9", 5433, false},
    {{"db.internal:5432"}, "db.internal", "10.9.9.9", 5431, false},
    {{"db.internal:5432"}, "xdb.internal", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "a.db.internal", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "db.internal.evil", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "db", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, NULL, "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "db.internal..", "10.9.9.9", 5432, false},
    {{"db.internal:5432"}, "db.internal\n", "10.9.9.9", 5432, false},
    /* A hostname rule permits what the name resolves to, but loopback and
     * metadata only for "localhost" names (no DNS rebinding to them). */
    {{"localhost:8080"}, "localhost", "127.0.0.1", 8080, true},
    {{"localhost:8080"}, "localhost", "::1", 8080, true},
    {{"*.localhost:8080"}, "app.localhost", "127.0.0.1", 8080, true},
    {{"db.internal:5432"}, "db.internal", "127.0.0.1", 5432, false},
    {{"db.internal:80"}, "db.internal", "169.254.169.254", 80, false},
    {{"*.example.com:80"}, "x.example.com", "::1", 80, false},
    {{"db.internal:5432", "127.0.0.1:5432"}, "db.internal", "127.0.0.1", 5432, true},
    /* A localhost rule reaches loopback, never link-local or metadata. */
    {{"localhost:80"}, "localhost", "127.0.0.53", 80, true},
    {{"localhost:80"}, "localhost", "169.254.169.254", 80, false},
    {{"*.localhost:80"}, "app.localhost", "169.254.169.254", 80, false},
    {{"localhost"}, "localhost", "fd00:ec2::254", 80, false},
    {{"localhost"}, "localhost", "100.100.100.200", 80, false},
    {{"localhost"}, "localhost", "0.0.0.0", 80, false},
    {{"localhost"}, "localhost", "fe80::1", 80, false},
    {{"localhost"}, "localhost", "::", 80, false},
    {{"*.localhost"}, "x.localhost", "::ffff:169.254.169.254", 80, false},
    {{"db.internal"}, "db.internal", "2001:db8::1", 1, true},
    {{"db.internal"}, "db.internal", NULL, 65535, true},
    /* Wildcards: any depth of subdomain, never the bare domain. */
    {{"*.example.com:443"}, "www.example.com", "192.0.2.1", 443, true},
    {{"*.example.com:443"}, "a.b.c.example.com", "192.0.2.1", 443, true},
    {{"*.example.com:443"}, "WWW.EXAMPLE.COM", "192.0.2.1", 443, true},
    {{"*.Example.COM:443"}, "www.example.com", "192.0.2.1", 443, true},
    {{"*.example.com:443"}, "example.com", "192.0.2.1", 443, false},
    {{"*.example.com:443"}, "badexample.com", "192.0.2.1", 443, false},
    {{"*.example.com:443"}, ".example.com", "192.0.2.1", 443, false},
    {{"*.example.com:443"}, "www.example.com.evil.net", "192.0.2.1", 443, false},
    {{"*.example.com:443"}, "www.example.co", "192.0.2.1", 443, false},
    {{"*.example.com:443"}, "www.example.com", "192.0.2.1", 80, false},
    {{"*.example.com:443"}, "www.example.com.", "192.0.2.1", 443, true},
    {{"*.example.com:443"}, "_acme.example.com", "192.0.2.1", 443, true},
    {{"*.example.com"}, NULL, "192.0.2.1", 443, false},
    /* Several rules: any one permits. */
    {{"db.internal:5432", "10.0.0.0/8:443"}, "web.internal", "10.1.1.1", 443, true},
    {{"db.internal:5432", "10.0.0.0/8:443"}, "web.internal", "10.1.1.1", 5432, false},
    {{"db.internal:5432", "10.0.0.0/8:443"}, "db.internal", "192.0.2.1", 5432, true},
    {{"10.0.0.0/8:80", "10.0.0.0/8:443", "[2001:db8::/32]:22"}, NULL, "2001:db8::9", 22, true},
    {{"10.0.0.0/8:80", "10.0.0.0/8:443", "[2001:db8::/32]:22"}, NULL, "10.0.0.9", 22, false},
    {{"0.0.0.0/0", "127.0.0.1:22"}, NULL, "127.0.0.1", 22, true},
    {{"0.0.0.0/0", "127.0.0.1:22"}, NULL, "127.0.0.1", 23, false},
    /* No rules: default deny. */
    {{NULL}, "example.com", "192.0.2.1", 80, false},
    {{NULL}, NULL, "10.0.0.1", 80, false},
};

/* The server's own addresses need a rule for exactly that address. */
static const struct {
	const char *own; /* what acl_set_own_addresses is given */
	struct permit_vector v;
} own_vectors[] = {
    {"203.0.113.5", {{"0.0.0.0/0"}, NULL, "203.0.113.5", 22, false}},
    {"203.0.113.5", {{"203.0.113.0/24"}, NULL, "203.0.113.5", 22, false}},
    {"203.0.113.5", {{"203.0.113.0/24"}, NULL, "203.0.113.6", 22, true}},
    {"203.0.113.5", {{"203.0.113.5:22"}, NULL, "203.0.113.5", 22, true}},
    {"203.0.113.5", {{"203.0.113.5:22"}, NULL, "203.0.113.5", 23, false}},
    {"203.0.113.5", {{"0.0.0.0/0"}, NULL, "::ffff:203.0.113.5", 22, false}},
    {"::ffff:203.0.113.5", {{"0.0.0.0/0"}, NULL, "203.0.113.5", 22, false}},
    {"2001:db8::5", {{"[::/0]"}, NULL, "2001:db8::5", 22, false}},
    {"2001:db8::5", {{"[2001:db8::/64]"}, NULL, "2001:db8::5", 22, false}},
    {"2001:db8::5", {{"[2001:db8::5]:22"}, NULL, "2001:db8::5", 22, true}},
    {"203.0.113.5", {{"db.internal"}, "db.internal", "203.0.113.5", 22, false}},
    {"203.0.113.5", {{"db.internal"}, "db.internal", "203.0.113.6", 22, true}},
    {"127.0.0.1", {{"0.0.0.0/0"}, NULL, "127.0.0.1", 22, false}},
    {"127.0.0.1", {{"127.0.0.0/8"}, NULL, "127.0.0.1", 22, true}},
};

static void make_addr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)ss)->sin6_addr), 1);
	ss->ss_family = AF_INET6;
}

static struct acl *build(const char *const *rules)
{
	struct acl *acl = acl_new();
	char err[256];

	assert_non_null(acl);
	for (size_t i = 0; i < MAX_RULES && rules[i] != NULL; i++) {
		if (acl_add(acl, rules[i], err, sizeof(err)) != 0)
			fail_msg("acl_add('%s'): %s", rules[i], err);
		assert_int_equal(acl_count(acl), i + 1);
	}
	return acl;
}

/* 1 when v gives the wrong answer (printed), with own as the server's address. */
static int check_vector(size_t i, const struct permit_vector *v, const char *own_text)
{
	struct acl *acl = build(v->rules);
	struct sockaddr_storage ss;
	struct sockaddr_storage own;
	const struct sockaddr *own_list[1] = {(struct sockaddr *)&own};
	bool got;

	if (own_text != NULL) {
		make_addr(own_text, &own);
		assert_int_equal(acl_set_own_addresses(acl, own_list, 1), 0);
	}
	if (v->addr != NULL)
		make_addr(v->addr, &ss);
	got = acl_permits(acl, v->name, v->addr != NULL ? (struct sockaddr *)&ss : NULL, v->port);
	acl_free(acl);
	if (got == v->want)
		return 0;
	print_error("vector %zu: rules '%s'%s, name %s, addr %s, port %u, own %s: got %d\n", i,
		    v->rules[0] != NULL ? v->rules[0] : "(none)",
		    v->rules[0] != NULL && v->rules[1] != NULL ? " ..." : "",
		    v->name != NULL ? v->name : "NULL", v->addr != NULL ? v->addr : "NULL",
		    (unsigned)v->port, own_text != NULL ? own_text : "-", got);
	return 1;
}

static void test_acl_permits_table(void **state)
{
	int failures = 0;

	for (size_t i = 0; i < sizeof(permit_vectors) / sizeof(permit_vectors[0]); i++)
		failures += check_vector(i, &permit_vectors[i], NULL);
	assert_int_equal(failures, 0);
}

static void test_acl_own_addresses_table(void **state)
{
	int failures = 0;

	for (size_t i = 0; i < sizeof(own_vectors) / sizeof(own_vectors[0]); i++)
		failures += check_vector(i, &own_vectors[i].v, own_vectors[i].own);
	assert_int_equal(failures, 0);
}

struct may_vector {
	const char *rules[MAX_RULES];
	const char *name;
	uint16_t port;
	bool want;
};

static const struct may_vector may_vectors[] = {
    {{"db.internal:5432"}, "db.internal", 5432, true},
    {{"db.internal:5432"}, "DB.INTERNAL", 5432, true},
    {{"db.internal:5432"}, "db.internal", 5433, false},
    {{"db.internal:5432"}, "web.internal", 5432, false},
    {{"*.example.com"}, "a.example.com", 1, true},
    {{"*.example.com"}, "example.com", 1, false},
    /* A CIDR rule on the port could permit whatever the name resolves to. */
    {{"10.0.0.0/8:443"}, "anything.example", 443, true},
    {{"10.0.0.0/8:443"}, "anything.example", 444, false},
    {{"[2001:db8::/32]:1-1024"}, "anything.example", 1024, true},
    {{"[2001:db8::/32]:1-1024"}, "anything.example", 1025, false},
    {{"db.internal:5432", "10.0.0.0/8:443"}, "web.internal", 443, true},
    {{"db.internal:5432", "10.0.0.0/8:443"}, "web.internal", 5432, false},
    {{"127.0.0.1:22"}, "example.com", 22, true},
    {{NULL}, "example.com", 80, false},
    {{"db.internal"}, NULL, 80, false},
    {{"db.internal"}, "bad name", 80, false},
};

static void test_acl_may_permit_name_table(void **state)
{
	int failures = 0;

	for (size_t i = 0; i < sizeof(may_vectors) / sizeof(may_vectors[0]); i++) {
		const struct may_vector *v = &may_vectors[i];
		struct acl *acl = build(v->rules);
		bool got = acl_may_permit_name(acl, v->name, v->port);

		if (got != v->want) {
			print_error("may vector %zu: rules '%s', name %s, port %u: got %d\n", i,
				    v->rules[0] != NULL ? v->rules[0] : "(none)",
				    v->name != NULL ? v->name : "NULL", (unsigned)v->port, got);
			failures++;
		}
		acl_free(acl);
	}
	assert_int_equal(failures, 0);
}

static const struct {
	const char *rule;
	const char *needle; /* must appear in the error message */
} bad_rules[] = {
    {"", "empty"},
    {"10.0.0.1/8", "host bits set beyond the /8 prefix (did you mean 10.0.0.0/8?)"},
    {"192.168.1.1/24:443", "did you mean 192.168.1.0/24?"},
    {"203.0.113.7/31", "did you mean 203.0.113.6/31?"},
    {"0.0.0.1/0", "did you mean 0.0.0.0/0?"},
    {"[2001:db8::1/32]", "did you mean [2001:db8::/32]?"},
    {"[2001:db8:8000::/32]", "host bits"},
    {"10.0.0.0/33", "/33 is longer than IPv4 allows (32)"},
    {"[::/129]", "/129 is longer than IPv6 allows (128)"},
    {"10.0.0.0/", "prefix length"},
    {"10.0.0.0/x", "prefix length"},
    {"10.0.0.0/-1", "prefix length"},
    {"10.0.0.0/0008", "prefix length"},
    {"10.0.0.0/8:0", "port 0 out of range"},
    {"10.0.0.0/8:65536", "port 65536 out of range"},
    {"10.0.0.0/8:999999", "out of range"},
    {"10.0.0.0/8:", "missing port"},
    {"10.0.0.0/8:http", "not a number"},
    {"10.0.0.0/8:1024-1", "backwards"},
    {"10.0.0.0/8:1-", "missing high port"},
    {"10.0.0.0/8:-5", "missing low port"},
    {"10.0.0.0/8:1-2-3", "not a number"},
    {"10.0.0.0/8:0-80", "low port 0 out of range"},
    {"10.0.0.0/8:80-70000", "high port 70000 out of range"},
    {"10.0.0.0/8: 80", "not a number"},
    {"2001:db8::/32", "IPv6 addresses must be in brackets"},
    {"::1", "in brackets"},
    {"[2001:db8::/32", "missing ']'"},
    {"[2001:db8::/32]443", "after ']'"},
    {"[2001:db8::/32]:", "missing port"},
    {"[]", "missing address"},
    {"[10.0.0.0/8]", "not an IPv6 address"},
    {"[db.internal]:80", "not an IPv6 address"},
    {"[::ffff:10.0.0.0/104]", "IPv4-mapped address; write it as IPv4: 10.0.0.0/8"},
    {"[::ffff:192.0.2.1]", "write it as IPv4: 192.0.2.1/32"},
    {"10.0.0/8", "not an IPv4 address"},
    {"300.0.0.0/8", "not an IPv4 address"},
    {"db/24", "not an IPv4 address"},
    {"/8", "missing address"},
    {"1.2.3.4.5", "neither an IPv4 address nor a hostname"},
    {"256.1.1.1:80", "neither an IPv4 address nor a hostname"},
    {"010.0.0.1", "neither"},
    {"*", "'*' is only allowed as a leading '*.'"},
    {"*.", "missing host"},
    {"a.*.example.com", "'*' is only allowed"},
    {"*example.com", "'*' is only allowed"},
    {"*.*.example.com", "'*' is only allowed"},
    {":443", "missing address or hostname"},
    {"exa_mple.com", "invalid character '_'"},
    {"exa mple.com", "invalid character 0x20"},
    {"example.com.", "empty label"},
    {".example.com", "empty label"},
    {"a..b", "empty label"},
    {"db.internal:5432:1", "IPv6 addresses must be in brackets"},
    {"http://example.com", "not a number"},
    {"xn--bcher-kva.example\xc3\xa4", "invalid character 0xc3"},
    {"a-very-long-label-that-goes-on-and-on-for-more-than-sixty-three-chars.com",
     "label longer than 63"},
};

static void test_acl_add_rejects(void **state)
{
	struct acl *acl = acl_new();
	int failures = 0;

	assert_non_null(acl);
	for (size_t i = 0; i < sizeof(bad_rules) / sizeof(bad_rules[0]); i++) {
		char err[256] = "";
		int rc = acl_add(acl, bad_rules[i].rule, err, sizeof(err));

		if (rc != WM_ERR_PARSE || strstr(err, bad_rules[i].needle) == NULL ||
		    strchr(err, '\n') != NULL) {
			print_error("rule '%s': rc %d, error '%s', want '%s'\n", bad_rules[i].rule,
				    rc, err, bad_rules[i].needle);
			failures++;
		}
		/* The message names the rule it is about. */
		if (bad_rules[i].rule[0] != '\0' && strstr(err, "allow rule '") == NULL) {
			print_error("rule '%s': error '%s' does not quote the rule\n",
				    bad_rules[i].rule, err);
			failures++;
		}
	}
	assert_int_equal(acl_count(acl), 0);
	assert_int_equal(failures, 0);
	assert_int_equal(acl_add(acl, NULL, NULL, 0), WM_ERR_PARSE);
	acl_free(acl);
}

static void test_acl_add_accepts(void **state)
{
	static const char *const good[] = {
	    "10.0.0.0/8:1-1024",
	    "198.18.0.5",
	    "0.0.0.0/0",
	    "[::/0]",
	    "[::1]",
	    "[2001:db8::/32]:443",
	    "[2001:db8::1]:1-65535",
	    "[::/96]",
	    "db.internal:5432",
	    "*.example.com:443",
	    "localhost",
	    "a",
	    "1a.example",
	    "x.y.z-1.example:00443",
	    "10.0.0.0/8:443-443",
	    "255.255.255.255/32:65535",
	};
	struct acl *acl = acl_new();
	char err[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		if (acl_add(acl, good[i], err, sizeof(err)) != 0)
			fail_msg("acl_add('%s') rejected: %s", good[i], err);
	}
	assert_int_equal(acl_count(acl), sizeof(good) / sizeof(good[0]));
	acl_free(acl);
}

static void test_acl_hostname_length_limits(void **state)
{
	char name[300];
	char rule[310];
	struct acl *acl = acl_new();
	char err[256];

	/* 253 characters in labels of 63: the longest legal name. */
	memset(name, 'a', 253);
	name[63] = name[127] = name[191] = '.';
	name[253] = '\0';
	assert_int_equal(acl_add(acl, name, err, sizeof(err)), 0);
	assert_true(acl_permits(acl, name, NULL, 80));
	snprintf(rule, sizeof(rule), "*.%s", name);
	assert_int_equal(acl_add(acl, rule, err, sizeof(err)), 0);

	/* 254 is one too many, for rules and for names asked for. */
	memset(name, 'a', 254);
	name[63] = name[127] = name[191] = '.';
	name[254] = '\0';
	assert_int_equal(acl_add(acl, name, err, sizeof(err)), WM_ERR_PARSE);
	assert_non_null(strstr(err, "longer than 253"));
	assert_non_null(strstr(err, "...'"));
	assert_false(acl_permits(acl, name, NULL, 80));
	assert_int_equal(acl_count(acl), 2);
	acl_free(acl);
}

static void test_acl_error_buffer_small(void **state)
{
	struct acl *acl = acl_new();
	char err[8];

	memset(err, 'x', sizeof(err));
	assert_int_equal(acl_add(acl, "10.0.0.1/8", err, sizeof(err)), WM_ERR_PARSE);
	assert_int_equal(strlen(err), sizeof(err) - 1);
	assert_int_equal(acl_add(acl, "10.0.0.1/8", NULL, 0), WM_ERR_PARSE);
	assert_int_equal(acl_add(acl, "10.0.0.1/8", err, 1), WM_ERR_PARSE);
	assert_string_equal(err, "");
	acl_free(acl);
}

static void test_acl_null_and_unknown_family(void **state)
{
	struct acl *acl = build((const char *const[MAX_RULES]){"0.0.0.0/0", "[::/0]"});
	struct sockaddr sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	assert_false(acl_permits(acl, NULL, &sa, 80));
	assert_false(acl_permits(acl, NULL, NULL, 80));
	assert_false(acl_permits(NULL, "x", NULL, 80));
	assert_false(acl_may_permit_name(NULL, "x", 80));
	assert_int_equal(acl_count(NULL), 0);
	acl_free(acl);
	acl_free(NULL);
}

/* The own-address list is replaced, not added to; an empty list guards nothing. */
static void test_acl_own_addresses_replaced(void **state)
{
	struct acl *acl = build((const char *const[MAX_RULES]){"0.0.0.0/0"});
	struct sockaddr_storage a, b, unix_sa;
	const struct sockaddr *list[3] = {(struct sockaddr *)&a, (struct sockaddr *)&unix_sa,
					  (struct sockaddr *)&b};

	make_addr("203.0.113.5", &a);
	make_addr("198.51.100.7", &b);
	memset(&unix_sa, 0, sizeof(unix_sa));
	unix_sa.ss_family = AF_UNIX;
	assert_true(acl_permits(acl, NULL, (struct sockaddr *)&a, 22));
	assert_int_equal(acl_set_own_addresses(acl, list, 3), 0);
	assert_false(acl_permits(acl, NULL, (struct sockaddr *)&a, 22));
	assert_false(acl_permits(acl, NULL, (struct sockaddr *)&b, 22));
	assert_int_equal(acl_set_own_addresses(acl, list + 2, 1), 0);
	assert_true(acl_permits(acl, NULL, (struct sockaddr *)&a, 22));
	assert_false(acl_permits(acl, NULL, (struct sockaddr *)&b, 22));
	assert_int_equal(acl_set_own_addresses(acl, NULL, 0), 0);
	assert_true(acl_permits(acl, NULL, (struct sockaddr *)&b, 22));
	acl_free(acl);
}

/* Source filters: plain CIDR matching, no ports, no loopback guard. */
static void test_acl_matches_source(void **state)
{
	static const struct {
		const char *addr;
		bool expect;
	} v[] = {
	    {"192.168.10.7", true},	   {"192.168.11.7", false}, {"127.0.0.1", false},
	    {"::ffff:192.168.10.9", true}, {"2001:db8::1", true},   {"2001:db9::1", false},
	};
	struct acl *acl = acl_new();
	char err[256];
	struct sockaddr_storage ss;
	assert_int_equal(acl_add(acl, "192.168.10.0/24", err, sizeof(err)), 0);
	assert_int_equal(acl_add(acl, "[2001:db8::/32]", err, sizeof(err)), 0);
	assert_int_equal(acl_add(acl, "db.internal", err, sizeof(err)), 0);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		make_addr(v[i].addr, &ss);
		if (acl_matches_source(acl, (struct sockaddr *)&ss) != v[i].expect)
			fail_msg("source %s: expected %d", v[i].addr, v[i].expect);
	}
	assert_false(acl_matches_source(acl, NULL));
	acl_free(acl);
	/* Unlike acl_permits, a broad rule covers loopback sources too. */
	acl = acl_new();
	assert_int_equal(acl_add(acl, "0.0.0.0/0:443", err, sizeof(err)), 0);
	make_addr("127.0.0.1", &ss);
	assert_true(acl_matches_source(acl, (struct sockaddr *)&ss));
	acl_free(acl);
}

static void test_acl_many_rules(void **state)
{
	struct acl *acl = acl_new();
	char rule[64];
	char err[128];
	struct sockaddr_storage ss;

	/* Enough rules to make the table grow several times. */
	for (unsigned i = 0; i < 1000; i++) {
		snprintf(rule, sizeof(rule), "10.%u.%u.0/24:%u", i / 256, i % 256, 1000 + i);
		assert_int_equal(acl_add(acl, rule, err, sizeof(err)), 0);
	}
	assert_int_equal(acl_count(acl), 1000);
	make_addr("10.3.231.77", &ss); /* rule 999 */
	assert_true(acl_permits(acl, NULL, (struct sockaddr *)&ss, 1999));
	assert_false(acl_permits(acl, NULL, (struct sockaddr *)&ss, 1998));
	acl_free(acl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acl_permits_table),
	    cmocka_unit_test(test_acl_own_addresses_table),
	    cmocka_unit_test(test_acl_may_permit_name_table),
	    cmocka_unit_test(test_acl_add_rejects),
	    cmocka_unit_test(test_acl_add_accepts),
	    cmocka_unit_test(test_acl_hostname_length_limits),
	    cmocka_unit_test(test_acl_error_buffer_small),
	    cmocka_unit_test(test_acl_null_and_unknown_family),
	    cmocka_unit_test(test_acl_many_rules),
	    cmocka_unit_test(test_acl_matches_source),
	    cmocka_unit_test(test_acl_own_addresses_replaced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
