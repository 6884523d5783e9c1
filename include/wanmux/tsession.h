/*
 * A session and the tunnels that carry it (docs/PROTOCOL.md 8.5). The owner
 * (the client's pool, the server's session table) creates one per client
 * session id, tunnels attach to it after their handshake and detach when they
 * close, and the session's streams outlive any one tunnel: with no tunnel
 * left the session waits up to its resume timeout for one to come back, then
 * the owner is told to end it.
 *
 * What lives here and not in session.c is what needs the event loop and the
 * tunnels: which tunnels to wake when the session has something to send, the
 * resume timer, the compression state and the relays' buffer pool the
 * session's streams share.
 */
#ifndef WANMUX_TSESSION_H
#define WANMUX_TSESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/budget.h"
#include "wanmux/hello.h"
#include "wanmux/session.h"

struct event_base;
struct tunnel;
struct tsession;

/* --resume-timeout default: how long a session waits for a tunnel. Covers a
 * rain fade, a modem that flaps and a NAT rebinding, and stays short enough
 * that an application whose server really went away learns it in minutes. */
#define TSESSION_RESUME_TIMEOUT_MS 120000u

struct tsession_config {
	enum session_role role;
	/* Stream callbacks; on_writable is the tsession's own (it wakes the
	 * tunnels), the others receive arg. */
	struct session_callbacks cb;
	void *arg;
	size_t pool_limit;	    /* bytes the streams' relays may hold, 0 = no limit */
	uint32_t resume_timeout_ms; /* with no tunnel; 0 = end at once */
	/*
	 * The session must end: no tunnel for resume_timeout_ms, or a tunnel
	 * found that the peer broke the protocol. reason is for the log. Called
	 * from the event loop; the owner calls tsession_free (here or later).
	 */
	void (*on_end)(struct tsession *ts, const char *reason, void *arg);
};

/* c for a session of role: the relays' stream callbacks (relay.h), arg, and
 * the pool limit and resume timeout of tc; the owner adds on_open,
 * on_control, on_goaway and on_end. */
struct tunnel_config;
void tsession_config_init(struct tsession_config *c, enum session_role role,
			  const struct tunnel_config *tc, void *arg);

/*
 * A session with no tunnel yet. local: what this side announced in the
 * hello that created it (initial credit included); peer: what the peer
 * announced there. id: the client's session id. NULL on allocation failure.
 */
struct tsession *tsession_new(struct event_base *base, const struct tsession_config *cfg,
			      const struct session_params *local, const struct session_params *peer,
			      const uint8_t id[HELLO_SESSION_ID_LEN]);

/*
 * Ends every stream (on_reset with FRAME_ERR_TUNNEL_LOST), closes the
 * tunnels still attached and frees ts. NULL is a no-op. Not from inside a
 * session callback.
 */
void tsession_free(struct tsession *ts);

/*
 * t carries ts from now on (called by tunnel.c once its keys are ready).
 * Cancels the resume timer; when ts had tunnels before, the session sends
 * what it has received (RESUME) so the peer sends the rest again. NULL when
 * ts carries SESSION_PATHS_MAX tunnels already or on allocation failure.
 */
struct session_path *tsession_attach(struct tsession *ts, struct tunnel *t);

/*
 * t is gone (called by tunnel.c as it closes): what was in flight on it is
 * sent again on the other tunnels; with none left the resume timer starts.
 */
void tsession_detach(struct tsession *ts, struct tunnel *t, struct session_path *path);

/*
 * The peer broke the protocol (or a limit that keeps it): every tunnel of ts
 * closes and on_end follows from the event loop.
 */
void tsession_fail(struct tsession *ts, const char *reason);

struct session *tsession_session(const struct tsession *ts);
const uint8_t *tsession_id(const struct tsession *ts);
size_t tsession_tunnels(const struct tsession *ts);
/* The tunnel at index i (< tsession_tunnels), in attach order. */
struct tunnel *tsession_tunnel(const struct tsession *ts, size_t i);
struct compress_ctx *tsession_compress(const struct tsession *ts);
/* The server's instance of the session (hello.h): random on the server,
 * the server's answer on the client. */
uint64_t tsession_epoch(const struct tsession *ts);
void tsession_set_epoch(struct tsession *ts, uint64_t epoch);
/* Milliseconds since the last tunnel left; 0 while one is attached. */
uint64_t tsession_detached_ms(const struct tsession *ts);
/* Times a tunnel attached to ts after the first (resumes). */
uint64_t tsession_resumes(const struct tsession *ts);

/* Process-wide counters for the metrics. */
struct tsession_counters {
	uint64_t created;
	uint64_t resumed;	/* a tunnel attached to a session that had lost them all */
	uint64_t expired;	/* ended after the resume timeout */
	uint64_t failed;	/* ended by a protocol error */
	uint64_t streams_reset; /* streams ended with their session */
	/* Summed over every session, live or freed (session_stats): */
	uint64_t resent_bytes;
	uint64_t dup_bytes; /* received copies dropped */
	uint64_t dup_frames;
	uint64_t dup_frames_sent; /* copies sent on a second tunnel */
	uint64_t dup_wire_bytes;
	uint64_t resumes_refused;
	uint64_t loss_events;
};
/* The counters now: those of sessions freed plus the live ones' (a walk
 * over the live sessions, at most --max-tunnels of them). */
void tsession_get_counters(struct tsession_counters *out);

#endif
