/* evdns set-up shared by the client (server names) and the server (targets). */
#include <event2/dns.h>
#include <event2/event.h>

#include "wanmux/dns.h"
#include "wanmux/log.h"

struct evdns_base *dns_new(struct event_base *base)
{
	struct evdns_base *dns = evdns_base_new(base, 0);
	if (dns == NULL)
		return NULL;
	/* Without nameservers evdns still answers from /etc/hosts; say so once
	 * rather than failing start-up on a machine with no resolver. */
	int rc = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, "/etc/resolv.conf");
	if (rc != 0 || evdns_base_count_nameservers(dns) == 0)
		log_info("dns: no nameservers in /etc/resolv.conf; only /etc/hosts names resolve");
	evdns_base_load_hosts(dns, NULL);
	return dns;
}

void dns_free(struct evdns_base *dns)
{
	if (dns != NULL)
		evdns_base_free(dns, 1);
}
