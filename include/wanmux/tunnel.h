/*
 * One tunnel: a tuned TCP connection that runs the Noise handshake, then
 * carries AEAD records of mux frames for its session. Handles PING/PONG (RTT
 * and liveness), the handshake deadline and the choice of codec. Policy stays
 * with the owner: the server decides who is authorized, the client decides
 * when to reconnect.
 *
 * The handshake payloads are the hellos (hello.h: layout and codec); a
 * tunnel rekeys only when both hellos have HELLO_FLAG_REKEY. Both messages
 * are framed on the TCP stream as u16 length | message. A server under load
 * may answer msg1 with a cookie reply instead of msg2 (handshake.h); the
 * client then sends msg1 once more, with mac2, on the same connection.
 */
#ifndef WANMUX_TUNNEL_H
#define WANMUX_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "wanmux/compress.h"
#include "wanmux/hello.h"
#include "wanmux/keys.h"
#include "wanmux/netaddr.h"
#include "wanmux/session.h"

struct event_base;
struct evdns_base;
struct tsession;
struct tunnel;

#define TUNNEL_REKEY_AFTER_MS (3600u * 1000u)
#define TUNNEL_REKEY_BYTES (UINT64_C(64) << 30)

struct tunnel_handlers {
	/* Handshake done: the session accepts streams. */
	void (*on_up)(struct tunnel *t, void *arg);
	/* The tunnel is gone (reason for logs). Called from the event loop,
	 * after every stream got on_reset; t is freed when this returns. */
	void (*on_down)(struct tunnel *t, const char *reason, void *arg);
	/* Server: whether client_pub may connect with this hello. 0, or
	 * WM_ERR_UNAUTHORIZED / WM_ERR_REPLAY (the tunnel then closes). */
	int (*authorize)(struct tunnel *t, const uint8_t client_pub[KEYS_LEN],
			 const struct hello_client *hello, void *arg);
	/* Server: called for each msg1 that passed its mac1, before any X25519
	 * work. Returns 0 to go on with the handshake, the length of a reply
	 * written to reply (a cookie reply; the peer may then send msg1 once
	 * more on this connection), or a negative WM_ERR_* to close. NULL:
	 * always 0. */
	int (*admit)(struct tunnel *t, const uint8_t *msg1, size_t len, uint8_t *reply, size_t cap,
		     void *arg);
	/*
	 * Handshake done, keys not yet in use: the session this tunnel is to
	 * carry (tsession.h), which the owner finds or creates. local: what
	 * this side's hello announced; peer: what the peer's did. Server: set
	 * *epoch to the session's (hello.h; its hello tells the client).
	 * Client: *epoch is what the server answered. NULL closes the tunnel.
	 */
	struct tsession *(*attach)(struct tunnel *t, const struct session_params *local,
				   const struct session_params *peer, uint64_t *epoch, void *arg);
	void *arg; /* passed to the functions above */
};

struct tunnel_config {
	const struct keypair *local;  /* borrowed; must outlive the tunnel */
	uint8_t server_pub[KEYS_LEN]; /* client: the pinned server key */
	const uint8_t *psk;	      /* NULL or KEYS_LEN bytes, borrowed */
	const uint8_t *mac1_key;      /* server: handshake_mac1_key(), borrowed */
	struct session_params params; /* what this side announces */
	enum compress_mode compress;
	enum placement_dup duplicate; /* --duplicate; default PLACEMENT_DUP_AUTO */
	bool queue_cap;		      /* --queue-cap on (default off) */
	struct netaddr_tuning tuning;
	size_t pool_limit; /* bytes a session's relays may hold, 0 = no limit */
	/* The owner's: how long a session waits with no tunnel (tsession.h). */
	uint32_t resume_timeout_ms;    /* default TSESSION_RESUME_TIMEOUT_MS */
	uint32_t handshake_timeout_ms; /* default 10000 */
	uint32_t ping_interval_ms;     /* default 5000 */
	uint32_t dead_after_ms;	       /* no frame for this long: dead; default 30000 */
	/* In-band rekey (rekey.h) after this long or this many wire bytes (both
	 * directions), whichever comes first; 0 = no such budget. A peer that
	 * leaves a rekey unanswered for dead_after_ms closes the tunnel. */
	uint64_t rekey_after_ms;		  /* default TUNNEL_REKEY_AFTER_MS */
	uint64_t rekey_bytes;			  /* default TUNNEL_REKEY_BYTES */
	uint8_t session_id[HELLO_SESSION_ID_LEN]; /* client: ours; server: from the hello */
	uint8_t tunnel_no;			  /* client */
};

/* Fills c with defaults (windows, timers, tuning); keys left empty. */
void tunnel_config_defaults(struct tunnel_config *c);

/*
 * Client: connects to host:port (name resolved with dns, which may be NULL
 * for literal addresses) and runs the handshake. cfg and handlers are copied.
 * NULL on immediate failure; later failures arrive as on_down.
 */
struct tunnel *tunnel_connect(struct event_base *base, struct evdns_base *dns,
			      const struct netaddr_hostport *server,
			      const struct tunnel_config *cfg,
			      const struct tunnel_handlers *handlers);

/* Server: takes over the accepted socket fd and waits for the handshake. */
struct tunnel *tunnel_accept(struct event_base *base, int fd, const struct sockaddr *peer,
			     const struct tunnel_config *cfg,
			     const struct tunnel_handlers *handlers);

/*
 * Closes the tunnel from outside its callbacks' stack (safe anywhere): the
 * session ends, on_down follows from the event loop.
 */
void tunnel_close(struct tunnel *t, const char *reason);

/* The session, or NULL before the handshake completed and once closing. */
struct session *tunnel_session(const struct tunnel *t);

/* The session with its tunnels (NULL when not attached). */
struct tsession *tunnel_tsession(const struct tunnel *t);

/* For tsession.c: the session has something to send; pull from it soon. */
void tunnel_kick(struct tunnel *t);

/* For tsession.c: the session is being freed; t forgets it and closes. */
void tunnel_orphan(struct tunnel *t, const char *reason);

/* "198.18.0.1:4000" style name of the peer. */
const char *tunnel_peer_name(const struct tunnel *t);

/* The peer's static public key (valid once up). */
const uint8_t *tunnel_peer_key(const struct tunnel *t);

/* The session id of the client this tunnel belongs to (HELLO_SESSION_ID_LEN
 * bytes): the client's own, or on the server the one its hello carried. */
const uint8_t *tunnel_session_id(const struct tunnel *t);

/* Records waiting in user space to leave for the socket. */
size_t tunnel_queued(const struct tunnel *t);

/* How long since the first PING after which nothing at all was heard (ms);
 * 0 when nothing is awaited or the tunnel is not up. A peer
 * that vanished without a FIN or RST shows here long before dead_after_ms. */
uint64_t tunnel_unanswered_ms(const struct tunnel *t);

/* A PING now, unless one is awaited or something was heard within
 * quiet_ms: a new stream about to use a quiet tunnel learns soon
 * (tunnel_unanswered_ms) whether the peer is still there. */
void tunnel_probe(struct tunnel *t, uint32_t quiet_ms);

/* Smoothed RTT from PING/PONG in microseconds, 0 before the first PONG. */
uint32_t tunnel_rtt_us(const struct tunnel *t);

struct tunnel_stats {
	uint64_t wire_bytes_sent; /* records on the wire, headers and tags included */
	uint64_t wire_bytes_received;
	uint64_t records_sent;
	uint64_t records_received;
	uint64_t rekeys; /* in-band rekeys completed */
};

const struct tunnel_stats *tunnel_get_stats(const struct tunnel *t);

/* Why tunnels of this process were closed, for the shutdown summary. */
struct tunnel_counters {
	uint64_t bad_mac;	    /* first message fails its MAC (junk, wrong key/PSK) */
	uint64_t bad_handshake;	    /* Noise failure, bad hello, oversized message */
	uint64_t handshake_timeout; /* no handshake within the deadline */
	uint64_t bad_record;	    /* record fails authentication or is too short */
	uint64_t protocol_error;    /* malformed or forbidden frame */
	uint64_t silent;	    /* nothing heard for dead_after_ms */
	uint64_t rekey_timeout;	    /* peer left a rekey unanswered for dead_after_ms */
	uint64_t backlog;	    /* peer took none of our output for dead_after_ms, or
				       the control queue went over SESSION_CTRL_MAX */
	uint64_t listen_limited;    /* LISTENs refused over the per-tunnel rate (not closed) */
	uint64_t responder_x25519;  /* server: msg1s that got X25519 work */
	uint64_t cookie_replies;    /* server: msg1s answered with a cookie instead */
	uint64_t bad_mac2;	    /* server: refused by admit (no or bad mac2 under load) */
	uint64_t cookie_retries;    /* client: msg1 sent again with a cookie */
};

const struct tunnel_counters *tunnel_get_counters(void);

/* What the admin interface shows of a tunnel. */
struct tunnel_tcp_info {
	const char *state;	/* "connecting", "handshake", "up", "closing" */
	uint64_t age_ms;	/* since it was created */
	uint32_t srtt_us;	/* PING/PONG smoothed RTT, 0 before the first PONG */
	uint32_t tcp_rtt_us;	/* the kernel's smoothed RTT (TCP_INFO) */
	uint32_t cwnd;		/* congestion window, segments */
	uint32_t mss;		/* send MSS, bytes */
	uint64_t delivery_rate; /* bytes per second, the kernel's estimate */
	uint32_t retransmits;	/* segments retransmitted over its life */
};

/* Fills out from t and TCP_INFO on its socket. 0, or WM_ERR_STATE / WM_ERR_IO
 * when there is no socket or getsockopt fails (state and age still set). */
int tunnel_tcp_info(const struct tunnel *t, struct tunnel_tcp_info *out);

/* What the tunnel carried for its session; still valid in on_down. */
const struct session_path_stats *tunnel_get_path_stats(const struct tunnel *t);

#endif
