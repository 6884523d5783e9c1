/*
 * Allow rules for the server's targets: default deny. A rule is
 *   CIDR[:PORT[-PORT]]      10.0.0.0/8:443, 198.18.0.5, [2001:db8::/32]:1-1024
 *   HOSTNAME[:PORT[-PORT]]  db.internal:5432, *.example.com:443
 * IPv6 in brackets; no port means every port; a bare address is a /32 or /128.
 * A hostname rule matches the name the client asked for (case-insensitive,
 * "*." matches any subdomain) and then permits whatever it resolves to; a CIDR
 * rule matches the resolved address. Pure: no DNS, no I/O.
 *
 * Loopback, "this host", link-local and cloud metadata addresses (0.0.0.0/8,
 * 127.0.0.0/8, 169.254.0.0/16, 100.100.100.200, ::, ::1, fe80::/10,
 * fd00:ec2::254, the local-use NAT64 range 64:ff9b:1::/48) are only permitted
 * by a CIDR rule that lies inside such a range (127.0.0.1:22,
 * 169.254.169.254:80), never by a broad one like 0.0.0.0/0 (DESIGN.md,
 * "Security"). An IPv6 address that embeds an IPv4 address (IPv4-compatible
 * ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) is special
 * when the IPv4 address inside it is: [::/0] does not open 64:ff9b::7f00:1
 * (127.0.0.1 behind a NAT64) or 2002:a9fe:a9fe:: (169.254.169.254 by 6to4);
 * [64:ff9b::7f00:1] does.
 *
 * The server's own interface addresses (acl_set_own_addresses) are guarded
 * the same way, but only a rule for exactly that address (/32 or /128)
 * opens one: neither 0.0.0.0/0 nor the server's subnet does.
 *
 * A hostname rule never permits guarded addresses, except that a rule for
 * "localhost" or a name under ".localhost" permits loopback (127.0.0.0/8,
 * ::1) and nothing else special: a name that resolves to loopback or metadata
 * (DNS rebinding) is refused, and "localhost" never reaches metadata.
 */
#ifndef WANMUX_ACL_H
#define WANMUX_ACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct acl;

struct acl *acl_new(void);
void acl_free(struct acl *acl);

/* Adds one rule. 0, or WM_ERR_PARSE with a one-line reason in err. */
int acl_add(struct acl *acl, const char *rule, char *err, size_t errlen);

size_t acl_count(const struct acl *acl);

/*
 * Whether a connection to addr (AF_INET or AF_INET6; IPv4-mapped IPv6 is
 * treated as IPv4) on port is permitted. name is the hostname the client asked
 * for, or NULL when it gave an address.
 */
bool acl_permits(const struct acl *acl, const char *name, const struct sockaddr *addr,
		 uint16_t port);

/*
 * Replaces the list of the server's own addresses (AF_INET / AF_INET6; other
 * families are skipped) with a copy of addrs[0..n). 0 or WM_ERR_NOMEM (then
 * the old list stays).
 */
int acl_set_own_addresses(struct acl *acl, const struct sockaddr *const *addrs, size_t n);

/*
 * Whether addr lies in any CIDR rule, ignoring ports, hostname rules and the
 * special-address guard: for source filters (who may use a listener).
 */
bool acl_matches_source(const struct acl *acl, const struct sockaddr *addr);

/*
 * Before resolving name: whether any rule could permit it on port (a hostname
 * rule matching it, or any CIDR rule covering port). When false the server
 * refuses without a DNS query.
 */
bool acl_may_permit_name(const struct acl *acl, const char *name, uint16_t port);

#endif
