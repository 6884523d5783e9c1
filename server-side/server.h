/*
 * wanmux-server internals shared by its files: the server object and its
 * tunnels (main.c), and reverse-forward listeners (server_reverse.c).
 * Private to the server program.
 */
#ifndef WANMUX_SERVER_H
#define WANMUX_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "wanmux/acceptor.h"
#include "wanmux/acl.h"
#include "wanmux/admin.h"
#include "wanmux/handshake.h"
#include "wanmux/keys.h"
#include "wanmux/limit.h"
#include "wanmux/netaddr.h"
#include "wanmux/pool.h"
#include "wanmux/tunnel.h"

/* Default --state-dir, used when it exists and is writable. */
#define SERVER_STATE_DIR "/var/lib/wanmux"
/* Without a state dir: first messages older than this before start are refused. */
#define SERVER_CLOCK_WINDOW_S 120u
#define SERVER_LISTEN_MAX 16 /* --listen addresses */

/* Authenticated tunnels. Per key: a client keeps --tunnels (default 4) open
 * and briefly more while reconnecting. In all: 64 clients at the per-key
 * limit; a tunnel whose peer misbehaves holds at most about 0.6 MB of
 * tunnel buffers (backpressure bounds output and input), relay buffers are
 * under --max-buffer, so the worst case stays within a few hundred MB and
 * within a default RLIMIT_NOFILE of 1024 descriptors plus streams. */
#define SERVER_MAX_TUNNELS 1024
#define SERVER_MAX_TUNNELS_PER_KEY 16
#define SERVER_DRAIN_TIMEOUT_MS 30000 /* --drain-timeout default */
/* Reverse listeners one client key may hold: a client asks for its few
 * --reverse forwards; each listener costs a descriptor. */
#define SERVER_REVERSE_MAX_PER_KEY 32

struct server;
struct reverse_listener;
struct server_session;

/*
 * Shared reverse listeners (server_group.c): --reverse-group ADDR:PORT=
 * KEY[,KEY...] makes the listener on ADDR:PORT one that every listed key
 * may hold at once (each still needs its allow-listen permission), and no
 * other key may hold at all. Incoming connections go round robin over the
 * member sessions. Bounds: keys per group, sessions of one key in one
 * group (so one key cannot crowd the others out), groups per server.
 */
#define SERVER_GROUP_MAX_KEYS 32
#define SERVER_GROUP_SESSIONS_PER_KEY 8
#define SERVER_GROUP_MAX 64
/* A member with this much queued toward it is passed over while another
 * has room: a slow branch takes fewer new connections. */
#define SERVER_GROUP_ROOM_BYTES (256u * 1024)
/* A member key that refused a connection or left it unanswered (its
 * target is down, or its client stuck) gets none for this long while
 * another member is up: one lost connection per period, not every second
 * one (HAProxy's observe layer4, with a fixed retry). */
#define SERVER_GROUP_RETRY_MS 5000u

struct server_group {
	struct sockaddr_storage addr; /* the listening address and port */
	char name[NETADDR_STR_MAX];   /* addr as text, for logs and labels */
	uint8_t keys[SERVER_GROUP_MAX_KEYS][KEYS_LEN];
	size_t nkeys;
};

/* Parses "ADDR:PORT=KEY[,KEY...]" (ADDR an IP literal, IPv6 in brackets;
 * KEY base64 or a file holding one; repeated keys count once) into g. 0 or
 * WM_ERR_PARSE / WM_ERR_NOMEM with a one-line reason in err. */
int server_group_parse(const char *spec, struct server_group *g, char *err, size_t errlen);

/* The group of groups[0..n) whose address and port are sa's, or NULL. */
const struct server_group *server_group_find(const struct server_group *groups, size_t n,
					     const struct sockaddr *sa);

/* The first group of groups[0..n) whose listener and one on sa could not
 * both be bound: the same port and family, and the same address or the
 * wildcard (0.0.0.0, ::) on either side; or NULL. */
const struct server_group *server_group_overlap(const struct server_group *groups, size_t n,
						const struct sockaddr *sa);

/* Whether pub is one of g's keys. */
bool server_group_has_key(const struct server_group *g, const uint8_t pub[KEYS_LEN]);

/* A member as the choice sees it. */
struct server_group_member {
	bool live;     /* has a tunnel, is not resuming or draining */
	size_t queued; /* bytes queued toward it */
};

/*
 * The member of m[0..n) that takes the next connection: round robin from
 * *cursor over the live ones with queued < room; when every live one is
 * over, the least queued. Advances *cursor past the one chosen. SIZE_MAX
 * when none is live.
 */
size_t server_group_pick(const struct server_group_member *m, size_t n, size_t *cursor,
			 size_t room);

/* Sessions one client key may hold: as many as its tunnels
 * (--max-tunnels-per-key), since every session needs a tunnel to start and
 * several hosts may share a key; all keys together as many as --max-tunnels.
 * A key at either limit that asks for another ends its own oldest session
 * that has no tunnel (left by a client restart, waiting out
 * --resume-timeout); with none, it is refused at the per-key limit, and at
 * the server-wide one the oldest session of any key without a tunnel ends. */

/*
 * One session of a client (tsession.h): the streams and what they are
 * allowed, for as long as they live; its tunnels come and go. What the key
 * allows is copied from the tunnel that created it and refreshed by a
 * reload (the key is the same for every tunnel of the session).
 */
struct server_session {
	LIST_ENTRY(server_session) link;
	struct server *srv;
	struct tsession *ts;
	uint8_t client_pub[KEYS_LEN];
	char client[KEYS_B64_LEN + 64]; /* "KEY (comment)" for logs */
	char peer[NETADDR_STR_MAX];	/* where its latest tunnel came from */
	struct acl *acl;		/* as server_tunnel's */
	struct acl *allow_listen;
	bool own_acl;
	bool own_allow_listen;
	struct limit_bucket opens; /* stream opens per second */
	unsigned quiet_ticks;	   /* drain: ticks with no stream and nothing queued */
	uint64_t created_ms;
};

/* One accepted tunnel and what the server knows of its client. */
struct server_tunnel {
	LIST_ENTRY(server_tunnel) link;
	struct server *srv;
	struct tunnel *t;
	struct server_session *sess; /* once attached */
	bool up;
	bool counted;	   /* authorized: counts against the tunnel limits */
	size_t key_index;  /* its key in the authorized keys, once counted */
	uint8_t tunnel_no; /* the client's slot, from its hello */
	uint8_t client_pub[KEYS_LEN];
	char client[KEYS_B64_LEN + 64]; /* "KEY (comment)" for logs */
	/* While unauthenticated: counted in srv->unauth and its source's share. */
	bool in_unauth;
	TAILQ_ENTRY(server_tunnel) unauth_link; /* oldest first */
	uint64_t accepted_ms;
	uint32_t source_slot; /* index into srv->per_source */
	uint8_t source[17];   /* family byte | address: what a cookie is bound to */
	size_t source_len;
	struct sockaddr_storage peer; /* where it connected from (from=) */
	/* Set by authorize: the key's allow= / allow-listen= rules when its
	 * authorized-keys line has them, else the server's --allow and
	 * --allow-listen (NULL: none). Borrowed from srv->authorized or srv. */
	struct acl *acl;
	struct acl *allow_listen;
	bool own_acl;	       /* acl is the key's allow= */
	bool own_allow_listen; /* allow_listen is the key's allow-listen= */
};

/* Handshakes per second per source address: buckets indexed by a keyed
 * hash of the address. Collisions only make the limit stricter. */
#define SERVER_RATE_BUCKETS 4096

/* Under load (at least this fraction of --max-unauth in use, or more than
 * --max-unauth first messages a second got X25519 work), first messages need
 * a valid mac2 (a cookie round trip) before the server does X25519. */
#define SERVER_LOAD_NUM 1
#define SERVER_LOAD_DEN 2
/* A source (IPv4 address, IPv6 /64) holds at most max(MIN, max_unauth/DIV)
 * unauthenticated connections, so filling the table takes DIV sources. */
#define SERVER_SHARE_MIN 4
#define SERVER_SHARE_DIV 8
/* A full table makes room for a source that holds none of it: it closes the
 * oldest connection of a source holding two or more (among the oldest
 * SCAN), else the oldest connection if that is AGE old (capped at half the
 * handshake timeout; a real client needs a round trip, one more for a
 * cookie). */
#define SERVER_EVICT_AGE_MS 2000u
#define SERVER_EVICT_SCAN 64u

struct server_limits {
	uint32_t max_unauth;   /* connections not yet authenticated */
	uint32_t source_share; /* of max_unauth, per source */
	uint32_t evict_age_ms;
	double handshake_rate; /* per source address per second */
	double open_rate;      /* stream opens per tunnel per second */
	uint32_t max_tunnels;  /* authenticated tunnels, all keys */
	uint32_t max_tunnels_per_key;
	struct limit_counter unauth;
	struct limit_counter tunnels;
	struct limit_counter tunnels_per_key;
	struct limit_counter handshakes;
	struct limit_counter opens;
	struct limit_counter share;   /* over a source's share of --max-unauth */
	struct limit_counter evicted; /* closed to make room in a full table */
	struct limit_counter mac2;    /* no or bad mac2 under load */
};

/* Reverse listeners' limits (server_reverse.c). The grace period covers a
 * few of the client's reconnect attempts (its backoff tops out at 30 s
 * plus jitter), so a client that lost its tunnels for a minute keeps its
 * listeners. */
#define SERVER_REVERSE_GRACE_MS 60000
#define SERVER_REVERSE_MAX_CONNECTIONS 256
#define SERVER_REVERSE_OPEN_TIMEOUT_MS 30000
/* A reverse connection that carries no byte either way for this long is
 * closed (HAProxy's "timeout client" in spirit); 0 turns it off. */
#define SERVER_REVERSE_IDLE_TIMEOUT_MS 3600000

struct server_reverse_limits {
	uint32_t grace_ms;	  /* --reverse-grace: reserved for the key after its last tunnel */
	uint32_t max_connections; /* --reverse-max-connections, per listener */
	uint32_t open_timeout_ms; /* --reverse-open-timeout: client must answer the OPEN */
	uint32_t idle_timeout_ms; /* --reverse-idle-timeout: no byte either way; 0 = off */
	struct event *idle_ev;	  /* sweeps the connections for idle ones */
	/* Connections of listeners a reload (or the grace period) closed while
	 * their streams go on: the idle sweep still covers them. */
	LIST_HEAD(, reverse_conn) orphans;
	struct limit_counter taken;	 /* LISTEN for an address another key holds */
	struct limit_counter full;	 /* connection over max_connections (closed) */
	struct limit_counter no_tunnel;	 /* connection while no tunnel is up (closed) */
	struct limit_counter timeouts;	 /* OPEN unanswered (reset) */
	struct limit_counter refused;	 /* the client refused the stream */
	struct limit_counter per_key;	 /* LISTEN over SERVER_REVERSE_MAX_PER_KEY */
	struct limit_counter idle;	 /* closed after --reverse-idle-timeout */
	struct limit_counter not_member; /* LISTEN on a group address by another key */
	struct limit_counter group_full; /* over SERVER_GROUP_SESSIONS_PER_KEY */
};

/* Health checks of the pools' backends (server_pool.c). */
struct server_pool_health {
	uint32_t interval_ms;	     /* --health-interval */
	unsigned rise;		     /* --health-rise */
	unsigned fall;		     /* --health-fall */
	uint32_t connect_timeout_ms; /* --pool-connect-timeout: one stream's try */
};

struct server {
	struct event_base *base;
	struct evdns_base *dns;
	struct acceptor *listeners[SERVER_LISTEN_MAX]; /* --listen, in order */
	size_t nlisteners;
	struct keypair *key;
	struct keys_authorized *authorized;
	struct replay *replay; /* newest timestamp per client key and slot */
	struct acl *acl;
	struct acl *allow_listen; /* where clients may ask for reverse listeners */
	uint8_t psk[KEYS_LEN];
	bool have_psk;
	uint8_t mac1_key[32];
	struct tunnel_config tcfg;
	LIST_HEAD(, server_tunnel) tunnels;
	LIST_HEAD(, server_session) sessions;
	struct limit_counter sessions_per_key; /* over --max-tunnels-per-key */
	struct limit_counter sessions_all;     /* over --max-tunnels */
	uint64_t sessions_evicted;	       /* ended to make room for a newer one */
	LIST_HEAD(, reverse_listener) reverse_listeners;
	struct server_group *groups; /* --reverse-group, as the last (re)load set */
	size_t ngroups;
	struct event *sigint;
	struct event *sigterm;
	struct event *own_timer; /* re-reads the interface addresses */
	struct event *sighup;
	int argc; /* kept to read the same options again on SIGHUP */
	char **argv;
	struct netaddr_hostport listen_at[SERVER_LISTEN_MAX];
	size_t nlisten;
	bool draining;
	uint64_t drain_timeout_ms;
	struct event *drain_tick;
	struct event *drain_deadline;
	uint64_t drain_cut; /* streams still open when the drain was cut short */
	uint64_t reloads, reloads_failed;
	uint64_t deauthorized_tunnels; /* closed by a reload that removed their key */
	char *state_dir;	       /* --state-dir as started (NULL: the default) */
	uint64_t refused_targets;
	uint64_t refused_tunnels;
	uint64_t refused_listens;
	struct limit_counter refused_from; /* keys used from outside their from= */
	struct server_limits limits;
	uint32_t unauth;
	uint32_t tunnels_authorized; /* tunnels counted against --max-tunnels */
	uint32_t *key_tunnels;	     /* per authorized key, for --max-tunnels-per-key */
	struct limit_bucket rate[SERVER_RATE_BUCKETS];
	struct admin_options admin_opt;
	struct admin *admin;
	bool admin_actions; /* --admin-actions, as started */
	/* Unauthenticated, same hash; 32 bits: a share can exceed 65535
	 * (--max-unauth goes to 2^20). */
	uint32_t per_source[SERVER_RATE_BUCKETS];
	TAILQ_HEAD(, server_tunnel) unauth_list;
	struct handshake_cookies cookies;
	struct limit_bucket x25519_budget; /* first messages with X25519 per second */
	uint8_t cookie_key[32];
	struct server_reverse_limits reverse;
	struct pool *pools[POOL_MAX]; /* --pool, each held */
	size_t npools;
	struct server_pool_health pool_health;
	struct event *pool_timer;
	LIST_HEAD(, pool_check) pool_checks;
};

/* Sets the reverse-listener limits to their defaults, names their
 * counters and empties the listener list. */
void server_reverse_init(struct server *srv);

/* A client asked (LISTEN) for a reverse listener; arg is its
 * server_session. Returns 0 or an error that ends the session (a malformed
 * request). */
int server_reverse_on_control(struct session *s, const struct frame *f, void *arg);

/* The session is ending: it no longer serves any reverse listener. */
void server_reverse_session_end(struct server_session *sess);

/* Fills an admin report (server_admin.c): admin_start's collect callback. */
void server_admin_collect(struct admin_report *rep, void *arg);

/* A reload changed the authorized keys: closes the reverse listeners, idle
 * in their grace period, of keys no longer authorized (their tunnels, closed
 * by the reload, close the others as they go). */
void server_reverse_keys_changed(struct server *srv);

/* A reload replaced srv->groups: a listener whose address became shared
 * or exclusive is closed (its clients ask again when their tunnels come
 * back), except an exclusive one whose owner joins the new group; members
 * whose key left a group leave it. */
void server_reverse_groups_changed(struct server *srv);

/* The listeners, their members and counts for /metrics and /status. */
void server_reverse_report(struct server *srv, struct admin_report *rep);

/* Closes every reverse listener (shutdown) and logs their refusal counts. */
void server_reverse_close_all(struct server *srv);

/* Pools (server_pool.c). Sets the health check defaults and empties the
 * list of checks. */
void server_pool_init(struct server *srv);

/* The pool whose virtual target is target, or NULL (borrowed). */
struct pool *server_pool_find(const struct server *srv, const struct frame_addr *target);

/* Connects stream st of sess to a backend of p (inside on_open); policy
 * gives the log and access fields. 0 or a FRAME_ERR_* (as connect_stream). */
struct session_stream;
struct connect_policy;
int server_pool_open(struct server *srv, struct server_session *sess, struct session_stream *st,
		     struct pool *p, const struct connect_policy *policy);

/* Starts the health check timer (after the event loop exists). */
int server_pool_start(struct server *srv);

/* The interval or the pools changed (a reload): checks run on the new ones;
 * those in flight on a backend no pool has now end unheard (their lookups
 * cancelled). */
void server_pool_reschedule(struct server *srv);

/* Stops the checks (shutdown, after the loop): the timer and those in
 * flight, their lookups cancelled; runs the loop once without waiting when
 * one was, so that evdns frees it. */
void server_pool_stop(struct server *srv);

/* The pools and their backends in /metrics and /status ("pools"). */
void server_pool_report(struct admin_report *rep, struct server *srv);

/* --admin-actions: POST /pool/drain and /pool/undrain
 * ?pool=VHOST:PORT&backend=HOST:PORT; admin_set_action's callback (arg: the
 * server). An admin drain survives reloads until undrained. */
struct evbuffer;
int server_pool_action(const char *path, const char *query, struct evbuffer *reply, void *arg);

/* Drops pools[0..*n) and sets *n to 0. */
void server_pool_free_all(struct pool **pools, size_t *n);

#endif
