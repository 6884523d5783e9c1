/*
 * evdns set-up shared by the client (server names) and the server (targets),
 * and the one lookup entry both use: localhost names answered here, every
 * other name sent as an absolute query (no resolv.conf search domains).
 */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "wanmux/dns.h"
#include "wanmux/log.h"

struct evdns_base *dns_new(struct event_base *base)
{
	return dns_new_from(base, "/etc/resolv.conf", NULL);
}

struct evdns_base *dns_new_from(struct event_base *base, const char *resolv_conf, const char *hosts)
{
	struct evdns_base *dns = evdns_base_new(base, 0);
	if (dns == NULL)
		return NULL;
	/* No DNS_OPTION_SEARCH: "db" must never become "db.corp.example" (or,
	 * with ndots, "db.internal" become "db.internal.corp.example"), a name
	 * the allow rules never saw that whoever runs that domain answers. */
	int rc =
	    evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL & ~DNS_OPTION_SEARCH, resolv_conf);
	/* Without nameservers evdns still answers from /etc/hosts; say so once
	 * rather than failing start-up on a machine with no resolver. */
	if (rc != 0 || evdns_base_count_nameservers(dns) == 0)
		log_info("dns: no nameservers in %s; only /etc/hosts names resolve", resolv_conf);
	evdns_base_load_hosts(dns, hosts);
	return dns;
}

void dns_free(struct evdns_base *dns)
{
	if (dns != NULL)
		evdns_base_free(dns, 1);
}

bool dns_is_localhost(const char *name)
{
	size_t n = name != NULL ? strlen(name) : 0;

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 9)
		return strncasecmp(name, "localhost", 9) == 0;
	/* At least one non-empty label before ".localhost". */
	return n > 10 && name[n - 11] != '.' && strncasecmp(name + n - 10, ".localhost", 10) == 0;
}

/* Moves the IPv4 entries of list to its front, keeping the order within each
 * family: the loopback services people mean by "localhost" mostly listen on
 * 127.0.0.1, and the caller connects to the first permitted entry only. */
static struct evutil_addrinfo *ipv4_first(struct evutil_addrinfo *list)
{
	struct evutil_addrinfo *v4 = NULL, **v4_tail = &v4;
	struct evutil_addrinfo *other = NULL, **other_tail = &other;

	while (list != NULL) {
		struct evutil_addrinfo *next = list->ai_next;
		struct evutil_addrinfo ***tail =
		    list->ai_family == AF_INET ? &v4_tail : &other_tail;

		list->ai_next = NULL;
		**tail = list;
		*tail = &list->ai_next;
		list = next;
	}
	*v4_tail = other;
	return v4;
}

struct evdns_getaddrinfo_request *dns_getaddrinfo(struct evdns_base *dns, const char *name,
						  const char *port,
						  const struct evutil_addrinfo *hints,
						  evdns_getaddrinfo_cb cb, void *arg)
{
	if (dns_is_localhost(name)) {
		/* RFC 6761 section 6.3: localhost names are loopback and must not be
		 * asked of DNS. getaddrinfo(NULL, port) without AI_PASSIVE gives the
		 * loopback addresses without reading any file or the network. */
		struct evutil_addrinfo h = *hints;
		struct evutil_addrinfo *res = NULL;

		h.ai_flags &= ~(EVUTIL_AI_PASSIVE | EVUTIL_AI_CANONNAME);
		int rc = evutil_getaddrinfo(NULL, port, &h, &res);
		cb(rc, rc == 0 ? ipv4_first(res) : NULL, arg);
		return NULL;
	}
	return evdns_getaddrinfo(dns, name, port, hints, cb, arg);
}

struct evdns_getaddrinfo_request *dns_getaddrinfo_tcp(struct evdns_base *dns, const char *name,
						      uint16_t port, evdns_getaddrinfo_cb cb,
						      void *arg)
{
	struct evutil_addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	char portbuf[8];
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	return dns_getaddrinfo(dns, name, portbuf, &hints, cb, arg);
}
