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
 *
 * A --reverse-group address is shared instead: every key the group lists
 * (and no other) may hold it at once, connections go round robin over the
 * member sessions (server_group_pick), and the grace period after the last
 * member leaves keeps it for the group's keys. Each member connects to its
 * own --reverse target: the server neither knows nor compares them.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>

#include "server.h"
#include "wanmux/acceptor.h"
#include "wanmux/connect.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"
#include "wanmux/tsession.h"

struct reverse_conn {
	LIST_ENTRY(reverse_conn) link;
	struct reverse_listener *rl; /* NULL once the listener is gone */
	bool orphan;		     /* rl gone: on srv->reverse.orphans */
	size_t key;		     /* its slot in rl->keys */
	struct relay_watch watch;    /* leaves rl->conns when the relay closes */
	bool timed_out;		     /* the client did not answer the OPEN */
	bool opened;		     /* the client answered: idle checks apply */
	struct relay *r;	     /* valid while watched */
	uint64_t seen_bytes;	     /* relay_app_bytes at the last change */
	uint64_t seen_ms;	     /* when they last changed */
};

/* A client key that serves a listener, with its share of the connections.
 * A slot outlives its sessions so that a member that comes back keeps its
 * counts; it is reused only once it has neither sessions nor connections
 * and its key left the group (a reload). */
struct reverse_key {
	bool used;
	bool left; /* a reload took the key out of the group */
	uint8_t pub[KEYS_LEN];
	char label[16];	      /* access_short_key, for metrics */
	uint32_t sessions;    /* members of this key */
	uint32_t open;	      /* connections open now */
	uint64_t connections; /* connections accepted for it */
	uint64_t failures;    /* OPENs it refused or did not answer */
	uint64_t failed_ms;   /* when the last one failed; 0: never */
};

/* One session that serves the listener and its key's slot. */
struct reverse_member {
	struct server_session *sess;
	size_t key;
};

/* Slots of a shared listener: the group's keys, and as many again for keys
 * a reload removed whose connections are still open. */
#define REVERSE_SHARED_SLOTS (2 * SERVER_GROUP_MAX_KEYS)
#define REVERSE_MAX_MEMBERS (SERVER_GROUP_MAX_KEYS * SERVER_GROUP_SESSIONS_PER_KEY)

struct reverse_listener {
	LIST_ENTRY(reverse_listener) link;
	struct server *srv;
	struct acceptor *acc;
	struct event *grace_ev; /* pending while no tunnel serves the listener */
	uint8_t client_pub[KEYS_LEN];
	char client[KEYS_B64_LEN + 64];
	struct frame_addr addr; /* as the client asked, sent back in OPEN */
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
	bool shared;			/* --reverse-group: client_pub is its first member */
	struct reverse_member *members; /* the sessions that asked for it */
	size_t nmembers;
	size_t cap;
	size_t cursor; /* round robin over members (shared) */
	struct reverse_key *keys;
	size_t nslots; /* 1 exclusive, REVERSE_SHARED_SLOTS shared */
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
	lim->not_member.name = "reverse listens on a --reverse-group address by a key not in it, "
			       "or on one overlapping it";
	lim->group_full.name = "sessions of one key in a reverse group";
	LIST_INIT(&srv->reverse_listeners);
	LIST_INIT(&lim->orphans);
}

/* Whether sess can take a new stream: a tunnel up (not resuming), and not
 * draining (GOAWAY); with room, also under its client's stream limit. */
static bool member_live(const struct server_session *sess, bool room)
{
	struct session *s = tsession_session(sess->ts);
	if (tsession_tunnels(sess->ts) == 0)
		return false;
	return room ? session_can_open(s) : !session_goaway_received(s);
}

static struct reverse_member *pick_shared(struct reverse_listener *rl, bool room)
{
	struct server_group_member m[REVERSE_MAX_MEMBERS];
	/* Joins stop at the bound; an exclusive listener a reload made shared
	 * may have more, and those beyond it wait their turn. */
	size_t n = rl->nmembers < REVERSE_MAX_MEMBERS ? rl->nmembers : REVERSE_MAX_MEMBERS;
	uint64_t now = limit_now_ms();
	bool held_back = false;
	for (size_t i = 0; i < n; i++) {
		struct server_session *sess = rl->members[i].sess;
		const struct reverse_key *k = &rl->keys[rl->members[i].key];
		bool failed = k->failed_ms != 0 && now - k->failed_ms < SERVER_GROUP_RETRY_MS;
		m[i].live = member_live(sess, room);
		held_back = held_back || (m[i].live && failed);
		m[i].live = m[i].live && !failed;
		m[i].queued = session_queued(tsession_session(sess->ts));
	}
	size_t i = server_group_pick(m, n, &rl->cursor, SERVER_GROUP_ROOM_BYTES);
	if (i == SIZE_MAX && held_back) {
		/* Only members that failed lately are up: better one of them
		 * than a closed connection. */
		for (size_t j = 0; j < n; j++)
			m[j].live = member_live(rl->members[j].sess, room);
		i = server_group_pick(m, n, &rl->cursor, SERVER_GROUP_ROOM_BYTES);
	}
	return i == SIZE_MAX ? NULL : &rl->members[i];
}

static struct reverse_member *pick_exclusive(struct reverse_listener *rl, bool room)
{
	struct reverse_member *best = NULL;
	size_t best_q = 0;
	for (size_t i = 0; i < rl->nmembers; i++) {
		struct server_session *sess = rl->members[i].sess;
		if (!member_live(sess, room))
			continue;
		size_t q = session_queued(tsession_session(sess->ts));
		if (best == NULL || q < best_q) {
			best = &rl->members[i];
			best_q = q;
		}
	}
	return best;
}

/*
 * The member for the next connection: exclusive, the least busy session of
 * the one client; shared, round robin over the members with room. A member
 * whose client's streams are all in use is passed over while another can
 * take the stream (it would lose the connection and fail no passive check);
 * when none can, one that is up, whose stream limit then refuses it.
 */
static struct reverse_member *pick(struct reverse_listener *rl)
{
	struct reverse_member *mb = rl->shared ? pick_shared(rl, true) : pick_exclusive(rl, true);
	if (mb == NULL)
		mb = rl->shared ? pick_shared(rl, false) : pick_exclusive(rl, false);
	return mb;
}

static bool reverse_open_failed(struct relay *r, uint32_t error, void *arg)
{
	struct reverse_conn *c = arg;
	char detail[sizeof(c->rl->name) + 96];
	snprintf(detail, sizeof(detail), "%s: %s", relay_name(r), frame_error_name(error));
	/* Answered: the idle sweep closes it (counted there), the member
	 * served it, and a LAN user who leaves one idle must not steer the
	 * next connections away from that member. */
	if (c->rl == NULL || c->opened)
		return false;
	/* Its target is down, or the client is gone or stuck: in a group the
	 * others take the next connections for a while (passive check). */
	struct reverse_key *k = &c->rl->keys[c->key];
	k->failures++;
	k->failed_ms = limit_now_ms();
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
/* Closes the answered connections of list that carried no byte since the
 * last sweep for idle ms; name: the listener, NULL for orphans. */
static void sweep_list(struct server *srv, struct reverse_conn *c, const char *name, uint64_t now,
		       uint32_t idle)
{
	while (c != NULL) {
		/* relay_fail may close c's relay and so free c. */
		struct reverse_conn *next = LIST_NEXT(c, link);
		uint64_t bytes = relay_app_bytes(c->r);
		if (!c->opened || bytes != c->seen_bytes) {
			c->seen_bytes = bytes;
			c->seen_ms = now;
		} else if (now - c->seen_ms >= idle) {
			char detail[NETADDR_STR_MAX + FRAME_NAME_MAX + 64];
			snprintf(detail, sizeof(detail), "%s, idle for %llu ms",
				 name != NULL ? name : relay_name(c->r),
				 (unsigned long long)(now - c->seen_ms));
			limit_hit(&srv->reverse.idle, detail);
			relay_fail(c->r, FRAME_ERR_TIMEOUT);
		}
		c = next;
	}
}

static void on_idle_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	uint64_t now = limit_now_ms();
	uint32_t idle = srv->reverse.idle_timeout_ms;
	struct reverse_listener *rl;

	if (idle == 0)
		return;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	sweep_list(srv, LIST_FIRST(&rl->conns), rl->name, now, idle);
	/* A listener a reload closed leaves its connections to run: they must
	 * not escape the bound either. */
	sweep_list(srv, LIST_FIRST(&srv->reverse.orphans), NULL, now, idle);
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

/* A slot whose key left the group and that nothing refers to any more is
 * free for another key. */
static void key_release(struct reverse_key *k)
{
	if (k->left && k->sessions == 0 && k->open == 0)
		memset(k, 0, sizeof(*k));
}

static void conn_on_close(void *arg)
{
	struct reverse_conn *c = arg;
	if (c->rl != NULL) {
		struct reverse_key *k = &c->rl->keys[c->key];
		LIST_REMOVE(c, link);
		c->rl->nconns--;
		assert(k->open > 0);
		k->open--;
		key_release(k);
	} else if (c->orphan) {
		LIST_REMOVE(c, link);
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
	struct reverse_member *mb = pick(rl);
	if (mb == NULL) {
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
	struct server_session *sess = mb->sess;
	char client[16];
	access_short_key(sess->client, client, sizeof(client));
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
	c->key = mb->key;
	rl->keys[mb->key].open++;
	rl->keys[mb->key].connections++;
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
	log_debug("%s: stream %u to client %s", name, session_stream_id(st), sess->client);
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
		c->orphan = true;
		LIST_INSERT_HEAD(&rl->srv->reverse.orphans, c, link);
	}
	free(rl->members);
	free(rl->keys);
	free(rl);
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct reverse_listener *rl = arg;
	if (rl->shared)
		log_info("reverse group %s: no member came back within %u s; closed", rl->name,
			 rl->srv->reverse.grace_ms / 1000);
	else
		log_info("reverse forward for client %s: no session came back within %u s; "
			 "closed %s",
			 rl->client, rl->srv->reverse.grace_ms / 1000, rl->name);
	listener_free(rl);
}

/* The last member left: keep the address for --reverse-grace. */
static void start_grace(struct reverse_listener *rl, const char *client)
{
	struct timeval tv = {rl->srv->reverse.grace_ms / 1000,
			     (rl->srv->reverse.grace_ms % 1000) * 1000};
	if (rl->shared)
		log_info("reverse group %s: its last member (client %s) left; kept for the "
			 "group's keys for %u s",
			 rl->name, client, rl->srv->reverse.grace_ms / 1000);
	else
		log_info("reverse forward for client %s: its session ended; %s kept for "
			 "this key for %u s",
			 rl->client, rl->name, rl->srv->reverse.grace_ms / 1000);
	evtimer_add(rl->grace_ev, &tv);
}

static bool same_addr(const struct frame_addr *a, const struct frame_addr *b)
{
	if (a->type != b->type || a->port != b->port)
		return false;
	return a->type == FRAME_ADDR_IPV4 ? memcmp(a->u.ipv4, b->u.ipv4, 4) == 0
					  : memcmp(a->u.ipv6, b->u.ipv6, 16) == 0;
}

/* The --reverse-group definition of rl's address now, or NULL. */
static const struct server_group *listener_group(const struct reverse_listener *rl)
{
	struct sockaddr_storage ss;
	if (connect_target_sockaddr(&rl->addr, &ss) == 0)
		return NULL;
	return server_group_find(rl->srv->groups, rl->srv->ngroups, (struct sockaddr *)&ss);
}

/* The slot of pub in rl->keys, taking a free one for a key new here;
 * SIZE_MAX when every slot is taken. */
static size_t key_slot(struct reverse_listener *rl, const uint8_t pub[KEYS_LEN], const char *client)
{
	size_t free_slot = SIZE_MAX;
	for (size_t i = 0; i < rl->nslots; i++) {
		struct reverse_key *k = &rl->keys[i];
		if (k->used && memcmp(k->pub, pub, KEYS_LEN) == 0) {
			k->left = false;
			return i;
		}
		if (!k->used && free_slot == SIZE_MAX)
			free_slot = i;
	}
	if (free_slot != SIZE_MAX) {
		struct reverse_key *k = &rl->keys[free_slot];
		k->used = true;
		memcpy(k->pub, pub, KEYS_LEN);
		access_short_key(client, k->label, sizeof(k->label));
	}
	return free_slot;
}

/* 0 when sess joined, 1 when it was a member already, WM_ERR_LIMIT when
 * its key holds SERVER_GROUP_SESSIONS_PER_KEY sessions of a shared
 * listener already (or every slot is taken), WM_ERR_NOMEM. */
static int add_member(struct reverse_listener *rl, struct server_session *sess)
{
	for (size_t i = 0; i < rl->nmembers; i++)
		if (rl->members[i].sess == sess)
			return 1;
	size_t key = key_slot(rl, sess->client_pub, sess->client);
	if (key == SIZE_MAX)
		return WM_ERR_LIMIT;
	if (rl->shared && (rl->keys[key].sessions >= SERVER_GROUP_SESSIONS_PER_KEY ||
			   rl->nmembers >= REVERSE_MAX_MEMBERS))
		return WM_ERR_LIMIT;
	if (rl->nmembers == rl->cap) {
		size_t n = rl->cap ? rl->cap * 2 : 4;
		struct reverse_member *t = realloc(rl->members, n * sizeof(*t));
		if (t == NULL)
			return WM_ERR_NOMEM;
		rl->members = t;
		rl->cap = n;
	}
	rl->members[rl->nmembers].sess = sess;
	rl->members[rl->nmembers].key = key;
	rl->nmembers++;
	rl->keys[key].sessions++;
	return 0;
}

static void remove_member(struct reverse_listener *rl, size_t i)
{
	struct reverse_key *k = &rl->keys[rl->members[i].key];
	assert(k->sessions > 0);
	k->sessions--;
	rl->members[i] = rl->members[--rl->nmembers];
	key_release(k);
}

static void answer(struct session *s, uint32_t request, uint32_t error)
{
	struct frame r = {.type = FRAME_LISTEN_RESULT, .stream_id = request};
	r.u.error = error;
	session_send_control(s, &r);
}

/* A member key of rl's group asked for it. */
static void join_shared(struct reverse_listener *rl, struct server_session *sess, struct session *s,
			uint32_t request)
{
	struct server *srv = sess->srv;
	int rc = add_member(rl, sess);
	if (rc == WM_ERR_LIMIT) {
		char detail[sizeof(rl->name) + sizeof(sess->client) + 96];
		srv->refused_listens++;
		snprintf(detail, sizeof(detail),
			 "client %s asked to join reverse group %s, where its key holds %d "
			 "sessions already",
			 sess->client, rl->name, SERVER_GROUP_SESSIONS_PER_KEY);
		limit_hit(&srv->reverse.group_full, detail);
		answer(s, request, FRAME_ERR_REFUSED);
		return;
	}
	if (rc == 0 && evtimer_pending(rl->grace_ev, NULL)) {
		event_del(rl->grace_ev);
		log_info("reverse group %s: client %s is back; serving again", rl->name,
			 sess->client);
	} else if (rc == 0) {
		log_info("reverse group %s: client %s joined (%zu member sessions)", rl->name,
			 sess->client, rl->nmembers);
	}
	answer(s, request, rc >= 0 ? FRAME_ERR_NONE : FRAME_ERR_INTERNAL);
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
	/* A group address belongs to its keys whether or not a listener is
	 * open: another key may neither join nor take it while it is free. */
	const struct server_group *g =
	    server_group_find(srv->groups, srv->ngroups, (struct sockaddr *)&ss);
	const struct server_group *o =
	    g != NULL ? g : server_group_overlap(srv->groups, srv->ngroups, (struct sockaddr *)&ss);
	if (o != NULL && (g == NULL || !server_group_has_key(g, sess->client_pub))) {
		/* An overlapping address (0.0.0.0 for a group on 127.0.0.1, or
		 * the reverse) would take the group's connections or its port. */
		char detail[sizeof(name) + sizeof(o->name) + sizeof(sess->client) + 128];
		srv->refused_listens++;
		if (g != NULL)
			snprintf(detail, sizeof(detail),
				 "client %s asked to listen on %s, which --reverse-group shares "
				 "among %zu keys; its key is not one of them, refused",
				 sess->client, name, g->nkeys);
		else
			snprintf(detail, sizeof(detail),
				 "client %s asked to listen on %s, which overlaps --reverse-group "
				 "%s; refused",
				 sess->client, name, o->name);
		limit_hit(&srv->reverse.not_member, detail);
		answer(s, f->stream_id, FRAME_ERR_NOT_ALLOWED);
		return 0;
	}
	struct reverse_listener *rl;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	{
		if (!same_addr(&rl->addr, &f->u.open))
			continue;
		/* server_reverse_groups_changed keeps the two in step. */
		assert(rl->shared == (g != NULL));
		if (rl->shared) {
			join_shared(rl, sess, s, f->stream_id);
			return 0;
		}
		if (memcmp(rl->client_pub, sess->client_pub, KEYS_LEN) != 0) {
			/* Held, or reserved while its owner reconnects: a key
			 * must not take over another's listener. */
			char detail[sizeof(name) + 2 * sizeof(sess->client) + 64];
			srv->refused_listens++;
			snprintf(detail, sizeof(detail),
				 "client %s asked to listen on %s, which client %s %s",
				 sess->client, name, rl->client,
				 rl->nmembers > 0 ? "holds" : "reconnects to");
			limit_hit(&srv->reverse.taken, detail);
			answer(s, f->stream_id, FRAME_ERR_REFUSED);
			return 0;
		}
		int rc = add_member(rl, sess);
		if (rc == 0 && evtimer_pending(rl->grace_ev, NULL)) {
			event_del(rl->grace_ev);
			log_info("reverse forward for client %s: back on %s", sess->client, name);
		}
		answer(s, f->stream_id, rc >= 0 ? FRAME_ERR_NONE : FRAME_ERR_INTERNAL);
		return 0;
	}
	/* Each listener holds a descriptor: a key whose rules cover many ports
	 * must not take them all. Shared ones are bounded by the operator's
	 * --reverse-group options instead. */
	size_t held = 0;
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	held += !rl->shared && memcmp(rl->client_pub, sess->client_pub, KEYS_LEN) == 0;
	if (g == NULL && held >= SERVER_REVERSE_MAX_PER_KEY) {
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
	rl->shared = g != NULL;
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
	rl->nslots = rl->shared ? REVERSE_SHARED_SLOTS : 1;
	rl->keys = calloc(rl->nslots, sizeof(*rl->keys));
	rl->grace_ev = rl->keys != NULL ? evtimer_new(srv->base, on_grace_over, rl) : NULL;
	int fd = rl->grace_ev != NULL ? netaddr_listen(&hp, err, sizeof(err)) : -1;
	if (rl->grace_ev == NULL)
		snprintf(err, sizeof(err), "out of memory");
	if (fd >= 0)
		rl->acc = acceptor_new(srv->base, fd, on_accept, rl, name);
	if (fd < 0 || rl->acc == NULL || add_member(rl, sess) != 0) {
		log_peer_warn("client %s asked to listen on %s: %s", sess->client, name,
			      fd < 0 ? err : "cannot listen");
		listener_free(rl);
		answer(s, f->stream_id, FRAME_ERR_CONNECT_FAILED);
		return 0;
	}
	if (rl->shared)
		log_info("reverse group %s: listening, first member client %s", name, sess->client);
	else
		log_info("reverse forward for client %s: listening on %s", sess->client, name);
	answer(s, f->stream_id, FRAME_ERR_NONE);
	return 0;
}

/* A reload removed the owner's key (every key of a group): it cannot come
 * back, so the grace period would only hold the address. True when rl was
 * freed. */
static bool drop_if_deauthorized(struct reverse_listener *rl)
{
	size_t index;
	if (rl->nmembers > 0 || rl->srv->authorized == NULL)
		return false;
	if (rl->shared) {
		const struct server_group *g = listener_group(rl);
		for (size_t i = 0; g != NULL && i < g->nkeys; i++)
			if (keys_authorized_find(rl->srv->authorized, g->keys[i], NULL, &index))
				return false;
		log_info("reverse group %s: none of its keys is authorized any more; closed",
			 rl->name);
		listener_free(rl);
		return true;
	}
	if (keys_authorized_find(rl->srv->authorized, rl->client_pub, NULL, &index))
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

/* An exclusive listener whose address a reload made shared, its owner
 * being in the group: it becomes the group's listener. False when out of
 * memory. */
static bool make_shared(struct reverse_listener *rl)
{
	struct reverse_key *t = realloc(rl->keys, REVERSE_SHARED_SLOTS * sizeof(*t));
	if (t == NULL)
		return false;
	memset(t + rl->nslots, 0, (REVERSE_SHARED_SLOTS - rl->nslots) * sizeof(*t));
	rl->keys = t;
	rl->nslots = REVERSE_SHARED_SLOTS;
	rl->shared = true;
	return true;
}

/* Groups may have changed: brings rl in step. True when rl was freed. */
static bool regroup(struct reverse_listener *rl)
{
	const struct server_group *g = listener_group(rl);
	struct sockaddr_storage ss;
	if (!rl->shared && g == NULL && connect_target_sockaddr(&rl->addr, &ss) > 0 &&
	    server_group_overlap(rl->srv->groups, rl->srv->ngroups, (struct sockaddr *)&ss) !=
		NULL) {
		log_info("reload: reverse listener %s of client %s overlaps a --reverse-group "
			 "address; closed it",
			 rl->name, rl->client);
		listener_free(rl);
		return true;
	}
	if (!rl->shared && g != NULL) {
		if (server_group_has_key(g, rl->client_pub) && make_shared(rl)) {
			log_info("reload: reverse listener %s of client %s is now shared "
				 "(--reverse-group)",
				 rl->name, rl->client);
		} else {
			log_info("reload: %s is now a --reverse-group address that client %s is "
				 "not in; closed its listener",
				 rl->name, rl->client);
			listener_free(rl);
			return true;
		}
	} else if (rl->shared && g == NULL) {
		log_info("reload: %s is no longer a --reverse-group address; closed its "
			 "listener (its clients ask again when their tunnels reconnect)",
			 rl->name);
		listener_free(rl);
		return true;
	}
	if (!rl->shared)
		return false;
	bool had_members = rl->nmembers > 0;
	char last[sizeof(rl->client)] = "";
	for (size_t i = rl->nmembers; i-- > 0;) {
		struct server_session *sess = rl->members[i].sess;
		if (server_group_has_key(g, sess->client_pub))
			continue;
		log_info("reload: client %s is no longer in reverse group %s; it left",
			 sess->client, rl->name);
		snprintf(last, sizeof(last), "%s", sess->client);
		remove_member(rl, i);
	}
	for (size_t i = 0; i < rl->nslots; i++) {
		struct reverse_key *k = &rl->keys[i];
		if (!k->used)
			continue;
		k->left = !server_group_has_key(g, k->pub);
		key_release(k);
	}
	if (had_members && rl->nmembers == 0)
		start_grace(rl, last);
	return false;
}

void server_reverse_groups_changed(struct server *srv)
{
	struct reverse_listener *rl = LIST_FIRST(&srv->reverse_listeners);
	while (rl != NULL) {
		struct reverse_listener *next = LIST_NEXT(rl, link);
		regroup(rl);
		rl = next;
	}
}

void server_reverse_session_end(struct server_session *sess)
{
	struct reverse_listener *rl = LIST_FIRST(&sess->srv->reverse_listeners);
	while (rl != NULL) {
		struct reverse_listener *next = LIST_NEXT(rl, link);
		bool was_member = false;
		for (size_t i = 0; i < rl->nmembers; i++) {
			if (rl->members[i].sess == sess) {
				remove_member(rl, i);
				was_member = true;
				break;
			}
		}
		if (drop_if_deauthorized(rl)) {
			rl = next;
			continue;
		}
		if (rl->nmembers == 0 && !evtimer_pending(rl->grace_ev, NULL))
			start_grace(rl, sess->client);
		else if (was_member && rl->shared)
			log_info("reverse group %s: client %s left; %zu member sessions serve it",
				 rl->name, sess->client, rl->nmembers);
		rl = next;
	}
}

void server_reverse_report(struct server *srv, struct admin_report *rep)
{
	static const char members_help[] =
	    "Sessions serving each reverse listener (mode shared: a --reverse-group address).";
	static const char sessions_help[] =
	    "Sessions of each client key serving a reverse listener.";
	static const char conns_help[] =
	    "Connections a reverse listener accepted for each client key (member).";
	static const char open_help[] =
	    "Connections open now that a reverse listener accepted for each client key.";
	static const char fail_help[] = "Connections a client key refused or did not answer "
					"(in a group, it gets none for a while after one).";
	struct evbuffer *json = evbuffer_new();
	struct reverse_listener *rl;

	if (json != NULL)
		evbuffer_add(json, "[", 1);
	LIST_FOREACH(rl, &srv->reverse_listeners, link)
	{
		const char *mode = rl->shared ? "shared" : "exclusive";
		bool grace = evtimer_pending(rl->grace_ev, NULL);
		admin_metric(rep, ADMIN_GAUGE, "reverse_listener_members", members_help,
			     (double)rl->nmembers, "listener", rl->name, "mode", mode);
		if (json != NULL) {
			if (rl != LIST_FIRST(&srv->reverse_listeners))
				evbuffer_add(json, ",", 1);
			evbuffer_add_printf(json, "{\"listener\":");
			admin_json_string(json, rl->name);
			evbuffer_add_printf(json,
					    ",\"mode\":\"%s\",\"members\":%zu,\"grace\":%s,"
					    "\"connections_open\":%zu,\"clients\":[",
					    mode, rl->nmembers, grace ? "true" : "false",
					    rl->nconns);
		}
		bool first = true;
		for (size_t i = 0; i < rl->nslots; i++) {
			const struct reverse_key *k = &rl->keys[i];
			if (!k->used)
				continue;
			admin_metric(rep, ADMIN_GAUGE, "reverse_member_sessions", sessions_help,
				     (double)k->sessions, "listener", rl->name, "client", k->label);
			admin_metric(rep, ADMIN_COUNTER, "reverse_member_connections_total",
				     conns_help, (double)k->connections, "listener", rl->name,
				     "client", k->label);
			admin_metric(rep, ADMIN_GAUGE, "reverse_member_connections_open", open_help,
				     (double)k->open, "listener", rl->name, "client", k->label);
			admin_metric(rep, ADMIN_COUNTER, "reverse_member_failures_total", fail_help,
				     (double)k->failures, "listener", rl->name, "client", k->label);
			if (json == NULL)
				continue;
			evbuffer_add_printf(json, "%s{\"client\":", first ? "" : ",");
			admin_json_string(json, k->label);
			evbuffer_add_printf(json,
					    ",\"sessions\":%u,\"connections\":%llu,\"open\":%u,"
					    "\"failures\":%llu}",
					    k->sessions, (unsigned long long)k->connections,
					    k->open, (unsigned long long)k->failures);
			first = false;
		}
		if (json != NULL)
			evbuffer_add(json, "]}", 2);
	}
	if (json == NULL)
		return;
	evbuffer_add(json, "]", 1);
	admin_status_section(rep, "reverse_listeners", json);
	evbuffer_free(json);
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
	/* Their relays may close after the server is gone: off every list. */
	while (!LIST_EMPTY(&srv->reverse.orphans)) {
		struct reverse_conn *c = LIST_FIRST(&srv->reverse.orphans);
		LIST_REMOVE(c, link);
		c->orphan = false;
	}
	if (srv->reverse.idle_ev != NULL) {
		event_free(srv->reverse.idle_ev);
		srv->reverse.idle_ev = NULL;
	}
}
