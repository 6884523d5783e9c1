/*
 * Asynchronous name resolution for both daemons: one evdns base per event
 * loop, set up from /etc/resolv.conf and /etc/hosts. Never blocks the loop.
 */
#ifndef WANMUX_DNS_H
#define WANMUX_DNS_H

struct event_base;
struct evdns_base;

/*
 * An evdns base for base. A missing or empty resolv.conf is not an error:
 * names in /etc/hosts and literal addresses still resolve. NULL on allocation
 * failure.
 */
struct evdns_base *dns_new(struct event_base *base);

/* Frees dns, failing queries still in flight; NULL is a no-op. */
void dns_free(struct evdns_base *dns);

#endif
