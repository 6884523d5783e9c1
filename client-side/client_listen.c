/*
 * The client's listeners: port forwards (-L), transparent redirects, and
 * the SOCKS5 and HTTP proxy ports, whose protocols live in client_socks.c
 * and client_http.c. Each accepted connection becomes a relay and, once its
 * target is known, a stream (client_pool.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/util.h>
#include <sodium.h>

#include "client.h"

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>,
 * which clash with <netinet/in.h>. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#include "wanmux/acceptor.h"
#include "wanmux/acl.h"
#include "wanmux/connect.h"
#include "wanmux/log.h"

const char *client_target_name(const struct frame_addr *a, char *buf, size_t len)
{
	return connect_target_name(a, buf, len);
}

void client_frame_addr(const struct netaddr_hostport *hp, struct frame_addr *fa)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(fa, 0, sizeof(*fa));
	fa->port = hp->port;
	if (netaddr_literal(hp->host, hp->port, &ss, &len)) {
		if (ss.ss_family == AF_INET) {
			fa->type = FRAME_ADDR_IPV4;
			memcpy(fa->u.ipv4, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		} else {
			fa->type = FRAME_ADDR_IPV6;
			memcpy(fa->u.ipv6, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		}
		return;
	}
	fa->type = FRAME_ADDR_NAME;
	fa->name_len = (uint8_t)strlen(hp->host);
	memcpy(fa->u.name, hp->host, fa->name_len);
}

/* A forward or transparent connection has no protocol to answer in: log
 * the refusal once and close with RST. */
static bool forward_open_failed(struct relay *r, uint32_t error, void *arg)
{
	if (error == FRAME_ERR_TUNNEL_LOST || error == FRAME_ERR_CANCEL)
		log_peer_info("%s: connection closed: %s", relay_name(r), frame_error_name(error));
	else
		log_peer_warn("%s: server refused the stream: %s", relay_name(r),
			      frame_error_name(error));
	return false;
}

/* The access record of a local connection: the client logs the local side. */
static void track(struct listener *l, struct relay *r, const char *peer)
{
	static const enum access_frontend kinds[] = {
	    [LISTENER_FORWARD] = ACCESS_FORWARD,
	    [LISTENER_SOCKS] = ACCESS_SOCKS,
	    [LISTENER_HTTP] = ACCESS_HTTP,
	    [LISTENER_TRANSPARENT] = ACCESS_TRANSPARENT,
	};
	char key[KEYS_B64_LEN], client[16];
	keys_encode_public(l->cl->key->pub, key);
	access_short_key(key, client, sizeof(client));
	relay_set_access(r, kinds[l->kind], ACCESS_SIDE_USER, client, peer);
}

static void start_relayed(struct listener *l, int fd, const char *peer,
			  const struct frame_addr *target)
{
	char name[NETADDR_STR_MAX * 2 + FRAME_NAME_MAX + 8];
	char tname[NETADDR_STR_MAX + FRAME_NAME_MAX];
	snprintf(name, sizeof(name), "%s -> %s", peer,
		 client_target_name(target, tname, sizeof(tname)));
	struct relay *r = relay_new(l->cl->base, fd, name);
	if (r == NULL) {
		log_peer_error("%s: out of memory", peer);
		return;
	}
	struct relay_frontend fe = {.on_open_failed = forward_open_failed};
	relay_set_frontend(r, &fe);
	relay_set_counter(r, &l->active);
	track(l, r, peer);
	client_open(l->cl, r, target);
}

_Static_assert(sizeof(((struct client *)0)->source_key) == crypto_shorthash_KEYBYTES,
	       "source_key is a SipHash key");

/* The slot of src in the requesting table; false for a source without an
 * address (not counted). An IPv4-mapped address is its IPv4 host. */
static bool source_slot(const struct client *cl, const struct sockaddr *src, uint32_t *slot)
{
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
	uint8_t key[17], h[crypto_shorthash_BYTES];
	size_t len;
	uint64_t v;

	if (src == NULL)
		return false;
	if (src->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)src)->sin_addr, 4);
		len = 5;
	} else if (src->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)src)->sin6_addr.s6_addr;
		bool v4 = memcmp(a, mapped, sizeof(mapped)) == 0;
		key[0] = v4 ? 4 : 6;
		memcpy(key + 1, v4 ? a + 12 : a, v4 ? 4 : 16);
		len = v4 ? 5 : 17;
	} else {
		return false;
	}
	crypto_shorthash(h, key, len, cl->source_key);
	memcpy(&v, h, sizeof(v));
	*slot = (uint32_t)(v % CLIENT_SOURCE_SLOTS);
	return true;
}

void client_request_done(struct client_request *req)
{
	if (req->counted) {
		req->cl->requesting[req->slot]--;
		req->counted = false;
	}
}

static void frontend_closed(void *arg)
{
	struct client_request *req = arg;
	client_request_done(req);
	free(req->state);
	free(req);
}

struct relay *client_frontend_start(struct listener *l, int fd, const char *peer,
				    const struct sockaddr *src, const struct relay_frontend *fe,
				    struct client_request **out)
{
	struct client *cl = l->cl;
	uint32_t slot = 0;
	bool counted = source_slot(cl, src, &slot);
	/* Refused before a byte is read: past its share a source costs an
	 * accept and a close. The share follows max_connections, which a
	 * reload may change. */
	size_t share = cl->max_connections / CLIENT_SOURCE_SHARE_DIV;
	if (share < CLIENT_SOURCE_SHARE_MIN)
		share = CLIENT_SOURCE_SHARE_MIN;
	if (counted && cl->requesting[slot] >= share) {
		char detail[NETADDR_STR_MAX + 32];
		snprintf(detail, sizeof(detail), "%s refused", peer);
		limit_hit(&cl->requesting_limit, detail);
		close(fd);
		free(fe->arg);
		return NULL;
	}
	struct client_request *req = calloc(1, sizeof(*req));
	struct relay *r = req != NULL ? relay_new(cl->base, fd, peer) : NULL;
	if (r == NULL) {
		if (req == NULL)
			close(fd);
		free(req);
		free(fe->arg);
		return NULL;
	}
	req->cl = cl;
	req->slot = slot;
	req->counted = counted;
	req->state = fe->arg;
	if (counted)
		cl->requesting[slot]++;
	relay_set_frontend(r, fe);
	relay_set_counter(r, &l->active);
	relay_set_close_hook(r, frontend_closed, req);
	*out = req;
	track(l, r, peer);
	relay_set_deadline(r, CLIENT_REQUEST_DEADLINE_MS);
	relay_start(r);
	return r;
}

/*
 * Where a connection redirected by nftables/iptables REDIRECT was going.
 * Returns false (and logs) when it was not redirected: a connection made
 * straight to the transparent port would otherwise loop back into it.
 */
static bool original_destination(struct listener *l, int fd, const char *peer,
				 struct frame_addr *out)
{
	struct sockaddr_storage dst, local;
	socklen_t dlen = sizeof(dst), llen = sizeof(local);
	memset(&dst, 0, sizeof(dst));
	if (getsockname(fd, (struct sockaddr *)&local, &llen) != 0) {
		log_peer_warn("%s: getsockname: %s", peer, strerror(errno));
		return false;
	}
	int rc = local.ss_family == AF_INET6
		     ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &dlen)
		     : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &dlen);
	if (rc != 0) {
		log_peer_warn("%s: transparent connection without an original destination (%s): is "
			      "the nftables/iptables REDIRECT rule in place?",
			      peer, strerror(errno));
		return false;
	}
	bool same;
	if (dst.ss_family == AF_INET)
		same = memcmp(&((struct sockaddr_in *)&dst)->sin_addr,
			      &((struct sockaddr_in *)&local)->sin_addr, 4) == 0 &&
		       ((struct sockaddr_in *)&dst)->sin_port ==
			   ((struct sockaddr_in *)&local)->sin_port;
	else
		same = memcmp(&((struct sockaddr_in6 *)&dst)->sin6_addr,
			      &((struct sockaddr_in6 *)&local)->sin6_addr, 16) == 0 &&
		       ((struct sockaddr_in6 *)&dst)->sin6_port ==
			   ((struct sockaddr_in6 *)&local)->sin6_port;
	if (same) {
		log_peer_warn("%s: connection was made to the transparent port itself, not "
			      "redirected; refusing (it would loop)",
			      peer);
		return false;
	}
	memset(out, 0, sizeof(*out));
	if (dst.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&dst;
		out->type = FRAME_ADDR_IPV4;
		out->port = ntohs(sin->sin_port);
		memcpy(out->u.ipv4, &sin->sin_addr, 4);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&dst;
		out->type = FRAME_ADDR_IPV6;
		out->port = ntohs(sin6->sin6_port);
		memcpy(out->u.ipv6, &sin6->sin6_addr, 16);
	}
	return true;
}

static void on_accept(int fd, const struct sockaddr *sa, int salen, void *arg)
{
	struct listener *l = arg;
	char peer[NETADDR_STR_MAX];
	struct frame_addr target;
	netaddr_format(sa, peer, sizeof(peer));
	if ((l->cl->source_allow != NULL && !acl_matches_source(l->cl->source_allow, sa)) ||
	    (l->cl->source_deny != NULL && acl_matches_source(l->cl->source_deny, sa))) {
		l->cl->refused_sources++;
		log_peer_warn("%s:%u: connection from %s refused by --source-allow/--source-deny",
			      l->local.host, l->local.port, peer);
		close(fd);
		return;
	}
	if (l->active >= l->cl->max_connections) {
		char detail[NETADDR_STR_MAX * 2 + 32];
		snprintf(detail, sizeof(detail), "%s:%u refused %s", l->local.host, l->local.port,
			 peer);
		limit_hit(&l->cl->connections_limit, detail);
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	switch (l->kind) {
	case LISTENER_FORWARD:
		start_relayed(l, fd, peer, &l->target_addr);
		break;
	case LISTENER_TRANSPARENT:
		if (!original_destination(l, fd, peer, &target)) {
			close(fd);
			return;
		}
		start_relayed(l, fd, peer, &target);
		break;
	case LISTENER_SOCKS:
		client_socks_accept(l, fd, peer);
		break;
	case LISTENER_HTTP:
		client_http_accept(l, fd, peer);
		break;
	}
}

static const char *kind_name(enum listener_kind k)
{
	switch (k) {
	case LISTENER_FORWARD:
		return "forwarding";
	case LISTENER_SOCKS:
		return "SOCKS5 proxy";
	case LISTENER_HTTP:
		return "HTTP proxy";
	case LISTENER_TRANSPARENT:
		return "transparent proxy";
	}
	return "?";
}

int client_listen_open(struct client *cl, struct listener *l, char *err, size_t errlen)
{
	int fd = netaddr_listen(&l->local, err, errlen);
	if (fd < 0)
		return -1;
	char name[NETADDR_STR_MAX + 8];
	snprintf(name, sizeof(name), "%s:%u", l->local.host, l->local.port);
	/* acceptor_new closes fd itself when it fails. */
	l->acc = acceptor_new(cl->base, fd, on_accept, l, name);
	if (l->acc == NULL) {
		snprintf(err, errlen, "%s:%u: cannot listen", l->local.host, l->local.port);
		return -1;
	}
	client_listen_log(l, "");
	return 0;
}

void client_listen_log(const struct listener *l, const char *what)
{
	if (l->kind == LISTENER_FORWARD)
		log_info("%sforwarding %s:%u to %s:%u", what, l->local.host, l->local.port,
			 l->target.host, l->target.port);
	else
		log_info("%s%s on %s:%u", what, kind_name(l->kind), l->local.host, l->local.port);
}

void client_listen_close(struct listener *l)
{
	acceptor_free(l->acc);
	l->acc = NULL;
}

int client_listen_start(struct client *cl, char *err, size_t errlen)
{
	randombytes_buf(cl->source_key, sizeof(cl->source_key));
	cl->requesting_limit.name = "connections per source still in their request "
				    "(--max-connections / 8)";
	for (size_t i = 0; i < cl->nlisteners; i++)
		if (client_listen_open(cl, cl->listeners[i], err, errlen) != 0)
			return -1;
	return 0;
}

void client_listen_stop(struct client *cl)
{
	for (size_t i = 0; i < cl->nlisteners; i++)
		client_listen_close(cl->listeners[i]);
}
