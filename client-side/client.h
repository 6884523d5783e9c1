/*
 * wanmux-client internals shared by its files: the client object, the
 * tunnel pool (client_pool.c), the listeners and their front ends
 * (client_listen.c, client_socks.c, client_http.c) and reverse forwards
 * (client_reverse.c). Private to the client program.
 */
#ifndef WANMUX_CLIENT_H
#define WANMUX_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "wanmux/acceptor.h"
#include "wanmux/admin.h"
#include "wanmux/frame.h"
#include "wanmux/keys.h"
#include "wanmux/limit.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"
#include "wanmux/tunnel.h"

/* A server takes at most --max-tunnels-per-key (default 16) of one key. */
#define CLIENT_TUNNELS_MAX 16
#define CLIENT_DRAIN_TIMEOUT_MS 30000 /* --drain-timeout default */
#define CLIENT_PENDING_MAX 4096
#define CLIENT_PENDING_TIMEOUT_S 15
/* A SOCKS or HTTP client must finish its request within this. */
#define CLIENT_REQUEST_DEADLINE_MS 10000

/* --server may be given this many times. */
#define CLIENT_SERVERS_MAX 16
/* A server none of whose tunnels came back for this long is down (failover
 * moves its tunnels on); a failed dial or handshake marks it down at once. */
#define CLIENT_SERVER_LOST_MS 3000
/* A server all of whose tunnels have heard nothing since a PING this long
 * ago (at least; 4 RTTs + 0.5 s on a slower path) gets no new streams while another
 * server can take them: a host that vanished without FIN or RST is noticed
 * within a ping interval and this, not dead_after_ms (30 s). */
#define CLIENT_SERVER_SILENT_MS 1500
/* A new stream on a tunnel that has heard nothing for this long sends a PING
 * along (several servers only). */
#define CLIENT_PROBE_QUIET_MS 500

struct authlimit;
struct client;
struct client_server;
struct userpass;

struct slot {
	struct client *cl;
	struct client_server *srv;
	struct tunnel *t;
	/* The slot's tunnel of the draining session after the server's GOAWAY:
	 * its streams run on while t (a new tunnel) carries the new session. */
	struct tunnel *old;
	bool up;
	uint64_t up_ms; /* limit_now_ms() when it came up */
	/* Dials since the slot's last tunnel that stayed up BACKOFF_STABLE_MS
	 * (client_pool.c): the backoff exponent. */
	unsigned attempts;
	struct event *retry_ev;
	uint8_t no;
	bool parking; /* closed as a standby's spare tunnel: not dialled again */
	bool stale;   /* its handshake was for a session that has ended since */
};

/* --server-policy */
enum client_policy {
	CLIENT_POLICY_FAILOVER, /* new streams to the first server that is up */
	CLIENT_POLICY_SPREAD,	/* to the server with the most room */
};

enum server_state {
	SERVER_CONNECTING,   /* never up yet */
	SERVER_UP,	     /* a tunnel of its session is up */
	SERVER_RECONNECTING, /* was up, no tunnel now, within CLIENT_SERVER_LOST_MS */
	SERVER_DOWN,	     /* a dial or handshake failed, or lost for longer */
};

/* One --server HOST:PORT[@KEY]: its tunnel slots and its own session. A
 * server's session, session id and tunnels are its own, so what one server
 * sends (GOAWAY, a new epoch, a protocol error) reaches no other's streams. */
struct client_server {
	struct client *cl;
	unsigned no; /* place in the --server order */
	struct netaddr_hostport hp;
	char name[NETADDR_HOST_MAX + 8]; /* "host:port", for logs and labels */
	uint8_t pub[KEYS_LEN];
	uint8_t session_id[HELLO_SESSION_ID_LEN];
	struct slot slots[CLIENT_TUNNELS_MAX];
	/* The session new streams go to (NULL until a tunnel is up, and after
	 * it ended), and the one draining after the server's GOAWAY. */
	struct tsession *ts;
	struct tsession *old_ts;
	size_t listens_unanswered; /* LISTENs the session sent, not yet answered */
	enum server_state state;
	uint64_t since_ms; /* limit_now_ms() when state was entered */
	char why[160];	   /* why it went down last */
	uint64_t downs;	   /* times it went down */
	bool silent;	   /* up, but no PING answered (CLIENT_SERVER_SILENT_MS) */
	uint64_t silences; /* times it fell silent */
	uint64_t streams_opened;
	/* Spread: streams given lately, x16, an eighth less every
	 * SERVER_TICK_MS. A server that ends each stream at once holds none,
	 * so open streams alone would send it every new one. */
	uint32_t recent_opens;
	bool ever_up;
};

enum listener_kind {
	LISTENER_FORWARD,
	LISTENER_SOCKS,
	LISTENER_HTTP,
	LISTENER_TRANSPARENT,
};

struct listener {
	struct client *cl;
	enum listener_kind kind;
	struct netaddr_hostport local;
	struct netaddr_hostport target; /* forward only */
	struct frame_addr target_addr;	/* forward only */
	struct acceptor *acc;
	size_t active; /* open connections (relay_set_counter) */
};

/* --reverse [SADDR:]SPORT:HOST:PORT */
struct reverse {
	struct netaddr_hostport server_side; /* where the server listens */
	struct netaddr_hostport target;	     /* where connections go, seen from here */
	struct frame_addr listen_addr;	     /* server_side as sent in LISTEN and OPEN */
	uint32_t last_error;		     /* last LISTEN_RESULT logged, to log changes once */
	bool logged;
};

/*
 * Proxy connections still reading their request (SOCKS5 greeting and login,
 * HTTP head) count against their source address in a table of
 * CLIENT_SOURCE_SLOTS counters under a random key. A source may hold
 * max_connections / CLIENT_SOURCE_SHARE_DIV of them (at least
 * CLIENT_SOURCE_SHARE_MIN): a LAN user without a password cannot fill a proxy
 * port with connections that never log in. IPv6 sources are whole addresses,
 * not /64s: hosts of one LAN share a /64.
 */
#define CLIENT_SOURCE_SLOTS 1024
#define CLIENT_SOURCE_SHARE_DIV 8
#define CLIENT_SOURCE_SHARE_MIN 16

/* A proxy connection's claim on its source's share, held until its request
 * is read (client_request_done) or it closes. */
struct client_request {
	struct client *cl;
	uint32_t slot;
	bool counted;
	void *state; /* the front end's, freed with the relay */
};

/* A local connection whose target is known, waiting for a tunnel. The
 * relay may close while it waits (the local client resets): the watch then
 * takes the entry out of the queue and frees it. */
struct pending {
	TAILQ_ENTRY(pending) link;
	struct client *cl;
	struct relay *r;
	struct relay_watch watch;
	struct frame_addr target;
	time_t since;
};

struct client_totals {
	uint64_t connections;
	uint64_t raw_up, raw_down;	   /* application bytes */
	uint64_t payload_up, payload_down; /* after compression */
	uint64_t wire_up, wire_down;	   /* records on the wire */
	uint64_t tunnels_up;
	uint64_t rekeys;	   /* in-band rekeys of all tunnels */
	uint64_t resent_bytes;	   /* of sessions ended */
	uint64_t streams_reset;	   /* streams ended with their session */
	uint64_t sessions_lost;	   /* the server no longer knew the session */
	uint64_t sessions_expired; /* no tunnel for --resume-timeout */
};

struct client {
	struct event_base *base;
	struct evdns_base *dns;
	struct keypair *key;
	uint8_t psk[KEYS_LEN];
	bool have_psk;
	struct client_server *servers; /* in --server order */
	size_t nservers;
	enum client_policy policy;
	/* Failover: the server new streams go to, to log and count changes. */
	struct client_server *current;
	uint64_t failovers, failbacks;
	uint32_t rr;		     /* spread: ties between servers taken in turn */
	struct tunnel_config tcfg;   /* server_pub and session_id: per server */
	unsigned nslots;	     /* tunnels per server (--tunnels) */
	struct listener **listeners; /* each on the heap: relays point into it */
	size_t nlisteners;
	/* Listeners a reload removed, kept while connections they accepted
	 * are open (socks/http state and the counter point into them). */
	struct listener **retired;
	size_t nretired;
	int argc; /* kept to read the same options again on SIGHUP */
	char **argv;
	uint64_t drain_timeout_ms;
	bool draining;
	uint64_t drain_cut; /* streams still open when the drain was cut short */
	uint64_t reloads, reloads_failed;
	struct reverse *reverses;
	size_t nreverses;
	struct acl *source_allow; /* NULL: any source may use the listeners */
	struct acl *source_deny;  /* NULL: none denied */
	uint64_t refused_sources;
	size_t max_connections; /* per listener */
	struct limit_counter connections_limit;
	uint8_t source_key[16];			  /* SipHash key of the requesting table */
	uint32_t requesting[CLIENT_SOURCE_SLOTS]; /* requests being read, per source */
	struct limit_counter requesting_limit;	  /* connections refused over the share */
	struct userpass *socks_auth;		  /* NULL: no authentication */
	struct userpass *http_auth;
	struct authlimit *auth_limit;		/* failed logins per source, both front ends */
	struct limit_counter auth_refused;	/* logins refused while their source is blocked */
	struct limit_counter auth_blocked;	/* sources put under the penalty */
	struct limit_bucket auth_verify_budget; /* Argon2id verifications, all sources */
	struct limit_counter auth_busy;		/* logins refused for want of that budget */
	TAILQ_HEAD(, pending) pending;
	size_t npending;
	struct event *pending_timer;
	struct event *state_timer; /* server states (client_pool.c) */
	bool stopping;
	uint64_t goaways; /* tunnels replaced after the server's GOAWAY */
	struct client_totals totals;
	struct admin_options admin_opt;
	struct admin *admin;
};

/* Fills an admin report (client_admin.c): admin_start's collect callback. */
void client_admin_collect(struct admin_report *rep, void *arg);

/* Pool (client_pool.c). */
/* "up", "down"...: a server state's name for /status and logs. */
const char *client_server_state_name(enum server_state st);
/* Open streams of srv's sessions, and its tunnels that are up. */
size_t client_server_streams(const struct client_server *srv);
size_t client_server_tunnels_up(const struct client_server *srv);

void client_pool_start(struct client *cl);
void client_pool_stop(struct client *cl);

/*
 * Drain: no reconnects, waiting connections fail, GOAWAY on every tunnel that
 * is up (the server opens no more reverse streams), tunnels still in their
 * handshake close.
 */
void client_pool_drain(struct client *cl);

/*
 * Closes each GOAWAY tunnel (ours or the server's) whose streams are done
 * and whose records have left; during a drain every tunnel. Returns the
 * tunnels still open and adds their streams to *streams.
 */
size_t client_pool_reap(struct client *cl, size_t *streams);
void client_pool_free(struct client *cl);

/*
 * Opens a stream for relay r to target on the server --server-policy picks
 * (failover: the first one up; spread: the one with the most room), or queues
 * it until a tunnel is up (failing it after CLIENT_PENDING_TIMEOUT_S, or
 * --resume-timeout while a session waits for its tunnels). Starts
 * the relay once the stream exists.
 */
void client_open(struct client *cl, struct relay *r, const struct frame_addr *target);

/* Front ends (client_listen.c, client_socks.c, client_http.c). */
int client_listen_start(struct client *cl, char *err, size_t errlen);
void client_listen_stop(struct client *cl);

/* Binds one listener and starts accepting on it (logged); 0 or -1 with err. */
int client_listen_open(struct client *cl, struct listener *l, char *err, size_t errlen);

/* Stops accepting on l (its open connections run on); l stays allocated. */
void client_listen_close(struct listener *l);

/* "forwarding A to B" / "SOCKS5 proxy on A", after the prefix what. */
void client_listen_log(const struct listener *l, const char *what);
void client_socks_accept(struct listener *l, int fd, const char *peer);

/*
 * Starts a proxy front end on an accepted socket from src: a relay routed
 * through fe, counted against the listener and, until client_request_done,
 * against src's share of connections still in their request; closed if the
 * request does not arrive within CLIENT_REQUEST_DEADLINE_MS. fe->arg (heap)
 * is freed with the relay. Returns the relay and sets *req, or NULL (src
 * over its share or out of memory; fe->arg freed, fd closed).
 */
struct relay *client_frontend_start(struct listener *l, int fd, const char *peer,
				    const struct sockaddr *src, const struct relay_frontend *fe,
				    struct client_request **req);

/* The request is read: req no longer counts against its source. Idempotent. */
void client_request_done(struct client_request *req);

void client_http_accept(struct listener *l, int fd, const char *peer);

/* Proxy logins (client_auth.c). Argon2id verifications (a hashed entry and a
 * password not seen before) at most this often, from all sources together. */
#define CLIENT_AUTH_VERIFY_RATE 2.0 /* per second */
#define CLIENT_AUTH_VERIFY_BURST 4.0
enum client_auth {
	CLIENT_AUTH_OK,
	CLIENT_AUTH_FAILED,    /* wrong user or password (counted against src) */
	CLIENT_AUTH_THROTTLED, /* src is under the penalty; credentials not checked */
};

/*
 * Checks user and pass from src (peer: its text, for logs) against db,
 * unless src is under the failed-login penalty or the check needs an
 * Argon2id verification and the shared budget for those is spent (then
 * THROTTLED, not counted against src); a failure counts against src and may
 * start the penalty (logged, throttled, like every refusal).
 */
enum client_auth client_auth_login(struct client *cl, struct userpass *db,
				   const struct sockaddr *src, const char *peer, const char *user,
				   const char *pass);

/* "host:port" of a frame address for logs. */
const char *client_target_name(const struct frame_addr *a, char *buf, size_t len);

/* Fills a frame address from host and port (literal address or name). */
void client_frame_addr(const struct netaddr_hostport *hp, struct frame_addr *fa);

/* Reverse forwards (client_reverse.c). */
/* A tunnel of srv came up: it asks for every reverse listener, and takes
 * one answer per request. The session callbacks' arg is the server. */
void client_reverse_on_up(struct client_server *srv, struct tunnel *t);
int client_reverse_on_open(struct session *s, struct session_stream *st,
			   const struct frame_addr *target, void *arg);
int client_reverse_on_control(struct session *s, const struct frame *f, void *arg);

#endif
