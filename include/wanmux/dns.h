/*
 * Asynchronous name resolution for both daemons: one evdns base per event
 * loop, set up from /etc/resolv.conf and /etc/hosts. Never blocks the loop.
 * Names are absolute: resolv.conf "search" and "domain" lines are ignored, so
 * a name is looked up exactly as the allow rules saw it. "localhost" and
 * names under ".localhost" are loopback (RFC 6761) and never reach DNS.
 */
#ifndef WANMUX_DNS_H
#define WANMUX_DNS_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/dns.h>

struct event_base;
struct evdns_base;
struct evutil_addrinfo;

/*
 * An evdns base for base. A missing or empty resolv.conf is not an error:
 * names in /etc/hosts and literal addresses still resolve. NULL on allocation
 * failure.
 */
struct evdns_base *dns_new(struct event_base *base);

/* dns_new with other files (tests): hosts NULL means /etc/hosts. */
struct evdns_base *dns_new_from(struct event_base *base, const char *resolv_conf,
				const char *hosts);

/* Frees dns, failing queries still in flight; NULL is a no-op. */
void dns_free(struct evdns_base *dns);

/* "localhost" or a name under ".localhost", any case, one trailing dot allowed. */
bool dns_is_localhost(const char *name);

/*
 * evdns_getaddrinfo, except for localhost names: those are answered at once,
 * before this returns and without any query, with the loopback addresses of
 * the families hints allows, IPv4 first; the result is then NULL. Same
 * ownership as evdns_getaddrinfo (cb owns the list; free it with
 * evutil_freeaddrinfo). cb may run before this returns in either case, and
 * then the result is NULL. Otherwise cb runs later, from the loop, and the
 * request may be cancelled (evdns_getaddrinfo_cancel): cb then runs once,
 * from the loop, with EVUTIL_EAI_CANCEL.
 */
struct evdns_getaddrinfo_request *dns_getaddrinfo(struct evdns_base *dns, const char *name,
						  const char *port,
						  const struct evutil_addrinfo *hints,
						  evdns_getaddrinfo_cb cb, void *arg);

/* dns_getaddrinfo for a TCP connect to name:port, any family: what a
 * stream's target and a pool's health check both look up. */
struct evdns_getaddrinfo_request *dns_getaddrinfo_tcp(struct evdns_base *dns, const char *name,
						      uint16_t port, evdns_getaddrinfo_cb cb,
						      void *arg);

#endif
