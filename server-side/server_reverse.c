/*
 * Reverse forwards, server side: a client's LISTEN asks for a listener on
 * an address its key may use (--allow-listen). One listener per client key
 * and address, served by every session of that client that asked for it;
 * connections accepted there become streams the server opens toward the
 * client (least busy session), addressed to the listening address. When the
 * last session has ended the listener stays reserved for its key for
 * --reverse-grace (other keys are refused), so that a client that
 * reconnects gets it back; then it closes. Each listener holds at most
 * --reverse-max-connections connections, and one the client does not
 * answer within --reverse-open-timeout is reset.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "server.h"
#include "wanmux/acceptor.h"
#include "wanmux/connect.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"
#include "wanmux/tsession.h"

struct reverse_conn {
	LIST_ENTRY(reverse_conn) link;
	struct reverse_listener *rl; /* NULL once the listener is gone */
	struct relay_watch watch;    /* leaves rl->conns when the relay closes */
	bool timed_out;		     /* the client did not answer the OPEN */
	bool opened;		     /* the client answered: idle checks apply */
	struct relay *r;	     /* valid while watched */
	uint64_t seen_bytes;	     /* relay_app_bytes at the last change */
	uint64_t seen_ms;	     /* when they last changed */
};

struct reverse_listener {
	LIST_ENTRY(reverse_listener) link;
	struct server *srv;
	struct acceptor *acc;
	struct event *grace_ev; /* pending while no tunnel serves the listener */
	uint8_t client_pub[KEYS_LEN];
	char client[KEYS_B64_LEN + 64];
	struct frame_addr addr; /* as the client asked, sent back in OPEN */
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
	struct server_session **sessions; /* the client's sessions that asked for it */
	size_t nsessions;
	size_t cap;
	LIST_HEAD(, reverse_conn) conns;
	size_t nconns;
};

void server_reverse_init(struct server *srv)
{
	struct server_reverse_limits *lim = &srv->reverse;
	lim->grace_ms = SERVER_REVERSE_GRACE_MS;
	lim->max_connections = SERVER_REVERSE_MAX_CONNECTIONS;
	lim->open_timeout_ms = SERVER_REVERSE_OPEN_TIMEOUT_MS;
	lim->idle_timeout_ms = SERVER_REVERSE_IDLE_TIMEOUT_MS;
	lim->idle.name = "reverse connections idle for --reverse-idle-timeout (closed)";
	lim->taken.name = "reverse listeners held by another key";
	lim->full.name = "connections per reverse listener (--reverse-max-connections)";
	lim->no_tunnel.name = "reverse connections while no tunnel of the client is up";
	lim->timeouts.name = "reverse connections the client did not answer "
			     "(--reverse-open-timeout)";
	lim->refused.name = "reverse streams the client refused";
	lim->per_key.name = "reverse listeners per client key";
	LIST_INIT(&srv->reverse_listeners);
}

static struct server_session *pick(struct reverse_listener *rl)
{
	struct server_session *best = NULL;
	size_t best_q = 0;
	for (size_t i = 0; i < rl->nsessions; i++) {
		struct server_session *sess = rl->sessions[i];
		/* A draining client (GOAWAY) takes no new streams. */
		struct session *s = tsession_session(sess->ts);
		if (tsession_tunnels(sess->ts) == 0 || session_goaway_received(s))
			continue;
		size_t q = session_queued(s);
		if (best == NULL || q < best_q) {
			best = sess;
			best_q = q;
		}
	}
	return best;
}

static bool reverse_open_failed(struct relay *r, uint32_t error, void *arg)
{
	struct reverse_conn *c = arg;
	char detail[sizeof(c->rl->name) + 96];
	snprintf(detail, sizeof(detail), "%s: %s", relay_name(r), frame_error_name(error));
	if (c->rl == NULL)
		return false;
	struct server_reverse_limits *lim = &c->rl->srv->reverse;
	limit_hit(c->timed_out ? &lim->timeouts : &lim->refused, detail);
	return false;
}

/* The client answered: the connection is a stream like any other now. */
static void reverse_open_result(struct relay *r, void *arg)
{
	struct reverse_conn *c = arg;
	relay_clear_deadline(r);
	c->opened = true;
	c->seen_ms = limit_now_ms();
}

/*
 * Closes answered connections that carried no byte either way for
 * --reverse-idle-timeout: without it a client of the reverse listener could
 * hold its --reverse-max-connections places for ever. A sweep rather than a
 * timer per connection: the bound only needs to hold to within a period.
 */
static void on_idle_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t now = limit_now_ms();
	uint32_t idle = srv->reverse.idle_timeout_ms;
	struct reverse_listener *rl;

	if (idle == 0)
		return;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	{
		struct reverse_conn *c = LIST_FIRST(&rl->conns);
		while (c != NULL) {
			/* relay_fail may close c's relay and so free c. */
			struct reverse_conn *next = LIST_NEXT(c, link);
			uint64_t bytes = relay_app_bytes(c->r);
			if (!c->opened || bytes != c->seen_bytes) {
				c->seen_bytes = bytes;
				c->seen_ms = now;
			} else if (now - c->seen_ms >= idle) {
				char detail[sizeof(rl->name) + 64];
				snprintf(detail, sizeof(detail), "%s, idle for %llu ms", rl->name,
					 (unsigned long long)(now - c->seen_ms));
				limit_hit(&srv->reverse.idle, detail);
				relay_fail(c->r, FRAME_ERR_TIMEOUT);
			}
			c = next;
		}
	}
}

/* Starts the sweep with the first reverse connection (the event base
 * exists by then); a period of a quarter of the timeout, 250 ms to 5 s. */
static void start_idle_sweep(struct server *srv)
{
	if (srv->reverse.idle_ev != NULL)
		return;
	srv->reverse.idle_ev = event_new(srv->base, -1, EV_PERSIST, on_idle_sweep, srv);
	if (srv->reverse.idle_ev == NULL)
		return;
	uint32_t period = srv->reverse.idle_timeout_ms / 4;
	if (period < 250)
		period = 250;
	if (period > 5000)
		period = 5000;
	struct timeval tv = {period / 1000, (period % 1000) * 1000};
	event_add(srv->reverse.idle_ev, &tv);
}

/* The client did not answer the OPEN in time: reset the stream (not just
 * the socket: the stream still points at the relay). */
static void reverse_open_timeout(struct relay *r, void *arg)
{
	struct reverse_conn *c = arg;
	c->timed_out = true;
	relay_fail(r, FRAME_ERR_TIMEOUT);
}

static void conn_on_close(void *arg)
{
	struct reverse_conn *c = arg;
	if (c->rl != NULL) {
		LIST_REMOVE(c, link);
		c->rl->nconns--;
	}
	free(c);
}

static void on_accept(int fd, const struct sockaddr *sa, int salen, void *arg)
{
	struct reverse_listener *rl = arg;
	struct server *srv = rl->srv;
	char peer[NETADDR_STR_MAX], name[sizeof(rl->name) + NETADDR_STR_MAX + 16];
	char detail[sizeof(name) + sizeof(rl->client) + 16];
	netaddr_format(sa, peer, sizeof(peer));
	snprintf(name, sizeof(name), "reverse %s from %s", rl->name, peer);
	struct server_session *sess = pick(rl);
	if (sess == NULL) {
		snprintf(detail, sizeof(detail), "%s, client %s", name, rl->client);
		limit_hit(&srv->reverse.no_tunnel, detail);
		close(fd);
		return;
	}
	if (rl->nconns >= srv->reverse.max_connections) {
		limit_hit(&srv->reverse.full, name);
		close(fd);
		return;
	}
	struct reverse_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	struct relay *r = relay_new(srv->base, fd, name);
	if (r == NULL) {
		free(c);
		return;
	}
	char client[16];
	access_short_key(rl->client, client, sizeof(client));
	relay_set_access(r, ACCESS_REVERSE, ACCESS_SIDE_USER, client, peer);
	relay_set_access_target(r, rl->name);
	relay_set_access_addr(r, sess->peer);
	struct session_stream *st =
	    session_stream_open(tsession_session(sess->ts), &rl->addr, relay_source(r), r);
	if (st == NULL) {
		log_peer_warn("%s: stream limit reached on the client's tunnel", name);
		relay_set_result(r, FRAME_ERR_STREAM_LIMIT);
		free(c);
		relay_close(r, true);
		return;
	}
	c->rl = rl;
	c->r = r;
	c->seen_ms = limit_now_ms();
	LIST_INSERT_HEAD(&rl->conns, c, link);
	rl->nconns++;
	relay_watch(r, &c->watch, conn_on_close, c);
	struct relay_frontend fe = {.on_open_failed = reverse_open_failed,
				    .on_open_result = reverse_open_result,
				    .on_deadline = reverse_open_timeout,
				    .arg = c};
	relay_set_frontend(r, &fe);
	relay_bind(r, st);
	relay_set_deadline(r, srv->reverse.open_timeout_ms);
	relay_start(r);
	start_idle_sweep(srv);
	log_debug("%s: stream %u to client %s", name, session_stream_id(st), rl->client);
}

static void listener_free(struct reverse_listener *rl)
{
	LIST_REMOVE(rl, link);
	acceptor_free(rl->acc);
	if (rl->grace_ev != NULL)
		event_free(rl->grace_ev);
	/* Open connections outlive the listener (their streams end with their
	 * tunnels); they only stop counting against it. */
	while (!LIST_EMPTY(&rl->conns)) {
		struct reverse_conn *c = LIST_FIRST(&rl->conns);
		LIST_REMOVE(c, link);
		c->rl = NULL;
	}
	free(rl->sessions);
	free(rl);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct reverse_listener *rl = arg;
	log_info("reverse forward for client %s: no session came back within %u s; closed %s",
		 rl->client, rl->srv->reverse.grace_ms / 1000, rl->name);
	listener_free(rl);
}

static bool same_addr(const struct frame_addr *a, const struct frame_addr *b)
{
	if (a->type != b->type || a->port != b->port)
		return false;
	return a->type == FRAME_ADDR_IPV4 ? memcmp(a->u.ipv4, b->u.ipv4, 4) == 0
					  : memcmp(a->u.ipv6, b->u.ipv6, 16) == 0;
}

static int add_session(struct reverse_listener *rl, struct server_session *sess)
{
	for (size_t i = 0; i < rl->nsessions; i++)
		if (rl->sessions[i] == sess)
			return 0;
	if (rl->nsessions == rl->cap) {
		size_t n = rl->cap ? rl->cap * 2 : 4;
		struct server_session **t = realloc(rl->sessions, n * sizeof(*t));
		if (t == NULL)
			return -1;
		rl->sessions = t;
		rl->cap = n;
	}
	rl->sessions[rl->nsessions++] = sess;
	return 0;
}

static void answer(struct session *s, uint32_t request, uint32_t error)
{
	struct frame r = {.type = FRAME_LISTEN_RESULT, .stream_id = request};
	r.u.error = error;
	session_send_control(s, &r);
}

int server_reverse_on_control(struct session *s, const struct frame *f, void *arg)
{
	struct server_session *sess = arg;
	struct server *srv = sess->srv;
	struct sockaddr_storage ss;
	char err[256], name[NETADDR_STR_MAX + FRAME_NAME_MAX];

	if (f->type != FRAME_LISTEN) {
		log_peer_warn("client %s sent %s; closing the tunnel", sess->client,
			      frame_type_name(f->type));
		return -1;
	}
	connect_target_name(&f->u.open, name, sizeof(name));
	socklen_t salen = connect_target_sockaddr(&f->u.open, &ss);
	if (salen == 0) {
		srv->refused_listens++;
		log_peer_warn("client %s asked to listen on %s: not an address; refused",
			      sess->client, name);
		answer(s, f->stream_id, FRAME_ERR_NOT_ALLOWED);
		return 0;
	}
	/* sess->allow_listen: the key's allow-listen= options if it has any,
	 * else the server's --allow-listen rules (set at authorization). */
	if (sess->allow_listen == NULL ||
	    !acl_permits(sess->allow_listen, NULL, (struct sockaddr *)&ss, f->u.open.port)) {
		srv->refused_listens++;
		log_peer_warn("client %s asked to listen on %s: no %s permits it", sess->client,
			      name,
			      sess->own_allow_listen ? "allow-listen= option of its key"
						     : "--allow-listen rule");
		answer(s, f->stream_id, FRAME_ERR_NOT_ALLOWED);
		return 0;
	}
	struct reverse_listener *rl;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	{
		if (same_addr(&rl->addr, &f->u.open)) {
			if (memcmp(rl->client_pub, sess->client_pub, KEYS_LEN) != 0) {
				/* Held, or reserved while its owner reconnects: a key
				 * must not take over another's listener. */
				char detail[sizeof(name) + 2 * sizeof(sess->client) + 64];
				srv->refused_listens++;
				snprintf(detail, sizeof(detail),
					 "client %s asked to listen on %s, which client %s %s",
					 sess->client, name, rl->client,
					 rl->nsessions > 0 ? "holds" : "reconnects to");
				limit_hit(&srv->reverse.taken, detail);
				answer(s, f->stream_id, FRAME_ERR_REFUSED);
				return 0;
			}
			int rc = add_session(rl, sess);
			if (rc == 0 && evtimer_pending(rl->grace_ev, NULL)) {
				event_del(rl->grace_ev);
				log_info("reverse forward for client %s: back on %s", sess->client,
					 name);
			}
			answer(s, f->stream_id, rc == 0 ? FRAME_ERR_NONE : FRAME_ERR_INTERNAL);
			return 0;
		}
	}
	/* Each listener holds a descriptor: a key whose rules cover many ports
	 * must not take them all. */
	size_t held = 0;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	held += memcmp(rl->client_pub, sess->client_pub, KEYS_LEN) == 0;
	if (held >= SERVER_REVERSE_MAX_PER_KEY) {
		char detail[sizeof(name) + sizeof(sess->client) + 64];
		srv->refused_listens++;
		snprintf(detail, sizeof(detail), "client %s asked to listen on %s, holding %zu",
			 sess->client, name, held);
		limit_hit(&srv->reverse.per_key, detail);
		answer(s, f->stream_id, FRAME_ERR_REFUSED);
		return 0;
	}
	rl = calloc(1, sizeof(*rl));
	if (rl == NULL) {
		answer(s, f->stream_id, FRAME_ERR_INTERNAL);
		return 0;
	}
	rl->srv = srv;
	LIST_INIT(&rl->conns);
	rl->addr = f->u.open;
	memcpy(rl->client_pub, sess->client_pub, KEYS_LEN);
	snprintf(rl->client, sizeof(rl->client), "%s", sess->client);
	snprintf(rl->name, sizeof(rl->name), "%s", name);
	LIST_INSERT_HEAD(&srv->reverse_listeners, rl, link);
	struct netaddr_hostport hp;
	char host[64]; /* INET6_ADDRSTRLEN and more */
	/* netaddr_listen wants the host without brackets or port. */
	if (f->u.open.type == FRAME_ADDR_IPV4)
		evutil_inet_ntop(AF_INET, f->u.open.u.ipv4, host, sizeof(host));
	else
		evutil_inet_ntop(AF_INET6, f->u.open.u.ipv6, host, sizeof(host));
	snprintf(hp.host, sizeof(hp.host), "%s", host);
	hp.port = f->u.open.port;
	rl->grace_ev = evtimer_new(srv->base, on_grace_over, rl);
	int fd = rl->grace_ev != NULL ? netaddr_listen(&hp, err, sizeof(err)) : -1;
	if (rl->grace_ev == NULL)
		snprintf(err, sizeof(err), "out of memory");
	if (fd >= 0)
		rl->acc = acceptor_new(srv->base, fd, on_accept, rl, name);
	if (fd < 0 || rl->acc == NULL || add_session(rl, sess) != 0) {
		log_peer_warn("client %s asked to listen on %s: %s", sess->client, name,
			      fd < 0 ? err : "cannot listen");
		listener_free(rl);
		answer(s, f->stream_id, FRAME_ERR_CONNECT_FAILED);
		return 0;
	}
	log_info("reverse forward for client %s: listening on %s", sess->client, name);
	answer(s, f->stream_id, FRAME_ERR_NONE);
	return 0;
}

/* A reload removed the owner's key: it cannot come back, so the grace
 * period would only hold the address. True when rl was freed. */
static bool drop_if_deauthorized(struct reverse_listener *rl)
{
	size_t index;
	if (rl->nsessions > 0 || rl->srv->authorized == NULL ||
	    keys_authorized_find(rl->srv->authorized, rl->client_pub, NULL, &index))
		return false;
	log_info("reverse forward for client %s: key no longer authorized; closed %s", rl->client,
		 rl->name);
	listener_free(rl);
	return true;
}

void server_reverse_keys_changed(struct server *srv)
{
	struct reverse_listener *rl = LIST_FIRST(&srv->reverse_listeners);
	while (rl != NULL) {
		struct reverse_listener *next = LIST_NEXT(rl, link);
		drop_if_deauthorized(rl);
		rl = next;
	}
}

void server_reverse_session_end(struct server_session *sess)
{
	struct reverse_listener *rl = LIST_FIRST(&sess->srv->reverse_listeners);
	while (rl != NULL) {
		struct reverse_listener *next = LIST_NEXT(rl, link);
		for (size_t i = 0; i < rl->nsessions; i++) {
			if (rl->sessions[i] == sess) {
				rl->sessions[i] = rl->sessions[--rl->nsessions];
				break;
			}
		}
		if (drop_if_deauthorized(rl)) {
			rl = next;
			continue;
		}
		if (rl->nsessions == 0 && !evtimer_pending(rl->grace_ev, NULL)) {
			struct timeval tv = {rl->srv->reverse.grace_ms / 1000,
					     (rl->srv->reverse.grace_ms % 1000) * 1000};
			log_info("reverse forward for client %s: its session ended; %s kept for "
				 "this key for %u s",
				 rl->client, rl->name, rl->srv->reverse.grace_ms / 1000);
			evtimer_add(rl->grace_ev, &tv);
		}
		rl = next;
	}
}

void server_reverse_close_all(struct server *srv)
{
	const struct server_reverse_limits *lim = &srv->reverse;
	log_info("reverse forwards so far: %llu listens refused as held by another key, "
		 "%llu connections over --reverse-max-connections, %llu with no tunnel up, %llu "
		 "unanswered (--reverse-open-timeout), %llu refused by the client, %llu idle "
		 "(--reverse-idle-timeout)",
		 (unsigned long long)lim->taken.hits, (unsigned long long)lim->full.hits,
		 (unsigned long long)lim->no_tunnel.hits, (unsigned long long)lim->timeouts.hits,
		 (unsigned long long)lim->refused.hits, (unsigned long long)lim->idle.hits);
	while (!LIST_EMPTY(&srv->reverse_listeners))
		listener_free(LIST_FIRST(&srv->reverse_listeners));
	if (srv->reverse.idle_ev != NULL) {
		event_free(srv->reverse.idle_ev);
		srv->reverse.idle_ev = NULL;
	}
}
