/*
 * The local side of a stream the peer opened: checks the target against a
 * policy, resolves names asynchronously (evdns, never a blocking resolver),
 * checks every resolved address again (DNS cannot steer us past the policy),
 * connects a relay, and answers the OPEN. Shared by the server (forward
 * targets, allow list) and the client (reverse-forward targets).
 */
#ifndef WANMUX_CONNECT_H
#define WANMUX_CONNECT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "wanmux/frame.h"
#include "wanmux/netaddr.h"
#include "wanmux/session.h"

struct bufferevent;
struct event_base;
struct evdns_base;

struct connect_policy {
	/* Whether a connection to addr on port may be made; name is what the
	 * peer asked for, or NULL when it gave an address. */
	bool (*permits)(void *arg, const char *name, const struct sockaddr *addr, uint16_t port);
	void *arg;
	/* Who asked, for log lines: "client KEY (comment)". Copied. */
	const char *who;
	/* Incremented for every refusal by the policy; may be NULL. */
	uint64_t *refusals;
	/* For the access line: the shortened client key and where the stream
	 * came from (the tunnel's peer). Copied; NULL for none. */
	const char *client;
	const char *src;
};

/*
 * Starts connecting stream st (inside on_open) to target under policy.
 * Returns 0 when under way (the OPEN is answered when the connection
 * succeeds or fails, and the stream's relay is attached), or a FRAME_ERR_*
 * to refuse at once (the caller returns it from on_open). Refusals and
 * failures are logged once, with policy->who and the target.
 */
int connect_stream(struct event_base *base, struct evdns_base *dns, struct session_stream *st,
		   const struct frame_addr *target, const struct connect_policy *policy);

/*
 * A virtual target served by several backends (a server's --pool): the
 * balancer says where to connect, and when a connect fails before the OPEN
 * is answered it is asked again, so the client sees nothing of it (what it
 * sent meanwhile is kept for the next backend). Backends are the
 * operator's: no policy check applies to them.
 */
struct connect_balancer {
	/* The next backend to try, into *hp; last_error is the FRAME_ERR_*
	 * of the attempt before, 0 for the first. false: none left, the OPEN
	 * is refused with FRAME_ERR_CONNECT_FAILED. */
	bool (*next)(void *arg, uint32_t last_error, struct netaddr_hostport *hp);
	/* The stream connected to the backend next() gave last. */
	void (*connected)(void *arg);
	/* The stream's target is gone (it ended or was refused); once, also
	 * when connect_stream_balanced refuses at once. arg may be freed. */
	void (*done)(void *arg);
	void *arg;
	/* How long one backend may take to connect; 0: the relay's default. */
	uint32_t connect_timeout_ms;
};

/*
 * Starts connecting stream st (inside on_open) through balancer bal
 * (copied); desc names the virtual target in logs and access lines.
 * Returns 0 when under way (the OPEN is answered once a backend connected
 * or none is left), or a FRAME_ERR_* to refuse at once (bal->done has run).
 * policy gives the log and access fields; its permits is not used.
 */
int connect_stream_balanced(struct event_base *base, struct evdns_base *dns,
			    struct session_stream *st, const char *desc,
			    const struct connect_policy *policy,
			    const struct connect_balancer *bal);

/* The access line (result=refused) of stream st, refused for target desc
 * before it had a relay. */
void connect_log_refused(struct session_stream *st, const struct connect_policy *policy,
			 const char *desc);

/* "host:port" / "[v6]:port" text of a frame address, into buf. */
const char *connect_target_name(const struct frame_addr *target, char *buf, size_t len);

/*
 * Fills sa from an address target (IPv4/IPv6). Returns its length, or 0 for
 * a name target.
 */
socklen_t connect_target_sockaddr(const struct frame_addr *target, struct sockaddr_storage *sa);

/* RFC 8305's "Connection Attempt Delay" (its recommended 250 ms). */
#define CONNECT_STAGGER_MS 250
#define CONNECT_ADDRS_MAX 8

/*
 * The addresses of list (IPv4 and IPv6 entries; others skipped) in RFC 8305
 * order: IPv6 first, then the families in turn, each in list order. At most
 * max into out and lens; returns how many.
 */
struct evutil_addrinfo;
size_t connect_interleave(const struct evutil_addrinfo *list, struct sockaddr_storage *out,
			  socklen_t *lens, size_t max);

/*
 * Starts connecting bev, a socket bufferevent with no fd yet (made with
 * BEV_OPT_CLOSE_ON_FREE), to the tunnel server hp, like
 * bufferevent_socket_connect_hostname except that the socket is made here
 * with t's buffers (netaddr_socket) before connect(): the SYN then offers
 * the window scale and the connection gets the window clamp of that
 * buffer, which a receive buffer set after connect() would not change. A
 * name is resolved with dns (asynchronously; dns NULL: libevent's blocking
 * lookup, untuned socket). Success and failure arrive at bev's event
 * callback (BEV_EVENT_CONNECTED / BEV_EVENT_ERROR, a failed lookup with
 * bufferevent_socket_get_dns_error set). bev may be freed meanwhile.
 * A name with several addresses is raced in the manner of RFC 8305 (Happy
 * Eyeballs v2): IPv6 and IPv4 in turn, IPv6 first, a new attempt every
 * CONNECT_STAGGER_MS or as soon as one fails, earlier ones left running;
 * the first to connect wins (up to CONNECT_ADDRS_MAX addresses).
 * Returns 0, or -1 when it cannot even start (nothing then arrives).
 */
int connect_tunnel(struct bufferevent *bev, struct evdns_base *dns,
		   const struct netaddr_hostport *hp, const struct netaddr_tuning *t);

#endif
