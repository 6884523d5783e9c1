/*
 * The local side of one stream: a TCP socket (the user's connection on the
 * client, the target on the server) bridged to a session stream. One relay
 * path for every front end. Backpressure: the relay reads only while the
 * stream's source buffer is below RELAY_READ_HIGH, and reports bytes as
 * consumed only once they have left for the kernel. Half-close both ways:
 * local EOF becomes FIN, the peer's FIN becomes shutdown(SHUT_WR) after the
 * data before it; a local error or a peer RESET closes with RST.
 */
#ifndef WANMUX_RELAY_H
#define WANMUX_RELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "wanmux/access.h"
#include "wanmux/session.h"

struct event_base;
struct relay;
struct budget_account;
struct budget_pool;

/*
 * Where a relay is in its life; relay.c holds the table of allowed
 * transitions. NEW: a local socket, no stream running yet. REQUEST: a front
 * end reads its request. CONNECTING: no socket yet (the server resolves and
 * connects to the target); CONNECTING_REMOTE_CLOSED: and the peer already
 * sent FIN. OPEN: data both ways. LOCAL_CLOSED: the local EOF went to the
 * peer as FIN; REMOTE_CLOSED: the peer's FIN is (or will be, once what came
 * before it is written) shutdown(SHUT_WR); BOTH_CLOSED: both, waiting for
 * the stream to close. FLUSHING: writing out a last reply, then closing.
 * CLOSED: final, freed from the loop.
 */
enum relay_state {
	RELAY_NEW,
	RELAY_REQUEST,
	RELAY_CONNECTING,
	RELAY_CONNECTING_REMOTE_CLOSED,
	RELAY_OPEN,
	RELAY_LOCAL_CLOSED,
	RELAY_REMOTE_CLOSED,
	RELAY_BOTH_CLOSED,
	RELAY_FLUSHING,
	RELAY_CLOSED,
	RELAY_STATE_COUNT
};

/* "open", "local half-closed", ... for logs; "?" out of range. */
const char *relay_state_name(enum relay_state s);

/* Whether the table lets a relay go from one state to the other. */
bool relay_state_allowed(enum relay_state from, enum relay_state to);

/* r's state (r is freed soon after it reaches RELAY_CLOSED). */
enum relay_state relay_get_state(const struct relay *r);

#define RELAY_READ_HIGH (256u << 10)
#define RELAY_CONNECT_TIMEOUT_MS 10000

/*
 * A relay on fd (connected, non-blocking; state NEW), or with fd -1 one
 * that relay_connect connects later (state CONNECTING). name is for logs.
 * Reading starts with relay_start. NULL on failure (fd is then closed).
 */
struct relay *relay_new(struct event_base *base, int fd, const char *name);

/* The buffer the stream sends from: what was read from the local socket. */
struct evbuffer *relay_source(struct relay *r);

/* Ties r to its stream; the stream's user pointer must be r. */
void relay_bind(struct relay *r, struct session_stream *st);

/* Starts reading the local socket. */
void relay_start(struct relay *r);

/* Stops reading the local socket until relay_start. */
void relay_pause(struct relay *r);

/*
 * Server: connects the relay (made with fd -1) to sa. done(r, 0, arg) on
 * success (r is then OPEN), or done(r, FRAME_ERR_*, arg) on refusal,
 * unreachability or timeout, and -1 (errno says why) when it cannot even
 * start: the caller then closes r. After a failure r may be connected again (to another
 * address): the failed socket is closed and the data the stream sent so far
 * is kept for the new one.
 */
int relay_connect(struct relay *r, const struct sockaddr *sa, socklen_t salen,
		  void (*done)(struct relay *r, uint32_t error, void *arg), void *arg);

/* The time relay_connect waits for the connection, from the next call on;
 * 0 restores RELAY_CONNECT_TIMEOUT_MS. */
void relay_set_connect_timeout(struct relay *r, uint32_t ms);

/*
 * Closes the local socket (with RST when abort is set) and frees r from the
 * event loop. The stream must already be gone or reset by the caller.
 */
void relay_close(struct relay *r, bool abort);

/*
 * hook(arg) runs once when r closes, before r is freed: for an owner that
 * must cancel work tied to r (a DNS query in flight).
 */
void relay_set_close_hook(struct relay *r, void (*hook)(void *arg), void *arg);

/*
 * A list that holds relays it does not own (connections waiting for a
 * tunnel, a listener's open connections) links each through a watch, so
 * that the relay leaves the list when it closes, whoever closes it: the
 * list never points at a freed relay. w is the caller's memory, linked to r
 * until on_close(arg) runs (once, from relay_close, before r is freed; w is
 * already detached and may be freed there) or relay_unwatch(w).
 */
struct relay_watch {
	LIST_ENTRY(relay_watch) link;
	struct relay *r; /* NULL once detached */
	void (*on_close)(void *arg);
	void *arg;
};

void relay_watch(struct relay *r, struct relay_watch *w, void (*on_close)(void *arg), void *arg);

/* Detaches w (no-op when already detached): on_close will not run. */
void relay_unwatch(struct relay_watch *w);

/* The relay's stream, NULL once it ended. */
struct session_stream *relay_stream(const struct relay *r);

const char *relay_name(const struct relay *r);

/* Fills the stream callbacks the relay handles (data, fin, reset, closed,
 * open result). */
void relay_stream_callbacks(struct session_callbacks *cb);

/*
 * A proxy protocol on the local side (SOCKS5, HTTP proxy): the front end
 * reads the request itself, answers in its own protocol, then hands the
 * socket over to the stream. Every callback is optional.
 */
struct relay_frontend {
	/* While the request is being read: new bytes in in (the source
	 * buffer). Drain what was parsed; call relay_end_request when done. */
	void (*on_read)(struct relay *r, struct evbuffer *in, void *arg);
	/* The peer connected the stream's target. */
	void (*on_open_result)(struct relay *r, void *arg);
	/* The peer refused the OPEN (error = FRAME_ERR_*) or the tunnel went
	 * away before it answered. Return true after writing a reply with
	 * relay_write_local: the relay then closes once the reply is out
	 * (instead of with RST). The stream is already gone. */
	bool (*on_open_failed)(struct relay *r, uint32_t error, void *arg);
	/* The deadline set with relay_set_deadline passed. Without this
	 * callback the relay closes with RST. */
	void (*on_deadline)(struct relay *r, void *arg);
	void *arg;
};

/* Routes the local side through fe (copied). Reads go to fe->on_read until
 * relay_end_request. */
void relay_set_frontend(struct relay *r, const struct relay_frontend *fe);

/* The request is parsed: bytes from now on (and those left in the source
 * buffer) are stream data. */
void relay_end_request(struct relay *r);

/*
 * Writes a front end's reply to the local socket. These bytes are not stream
 * data and earn the peer no credit. 0 or -1.
 */
int relay_write_local(struct relay *r, const void *data, size_t len);

/*
 * The stream could not be opened (no tunnel, stream limit; error =
 * FRAME_ERR_*): the front end answers (fe->on_open_failed) and the relay
 * closes, or it closes with RST. A stream still attached is reset.
 */
void relay_fail(struct relay *r, uint32_t error);

/* Stops reading, writes out what is queued, then closes (FIN, not RST). */
void relay_close_after_flush(struct relay *r);

/* Calls fe->on_deadline (or closes) ms from now, unless cleared or re-set. */
void relay_set_deadline(struct relay *r, uint32_t ms);
void relay_clear_deadline(struct relay *r);

/* The local socket. */
int relay_fd(const struct relay *r);

/*
 * Bytes all relays of the process may hold in their buffers together
 * (default BUDGET_DEFAULT_LIMIT; the rule is budget.h's): over it, the
 * relays of tunnels holding at least an even share stop reading their local
 * sockets until the total is back under 3/4; streams slow down, nothing is
 * dropped. A relay bound to a stream charges the pool its session carries
 * (session_pool), which works the same way against its own limit. The total
 * and the budget are also reported to the sessions (session_set_memory),
 * which shrink the credit they grant when buffers fill.
 */
void relay_set_budget(size_t bytes);

/*
 * An account in the process budget for bytes held outside relay buffers for
 * the streams of a tunnel (a session's resend store and out-of-order
 * segments; budget_account_init'ed by its owner, who never pauses): a holds
 * added bytes more and deleted less, in the process total and in a's pool
 * (relay_budget_attach), so relays stop reading when those fill the budgets
 * as well. Does not call session_set_memory: the caller is the session.
 */
void relay_budget_charge(struct budget_account *a, size_t added, size_t deleted);
/* a moves into pool p (NULL: none), with what it holds. */
void relay_budget_attach(struct budget_account *a, struct budget_pool *p);
/* a goes away: what it holds leaves the budgets. */
void relay_budget_close(struct budget_account *a);
size_t relay_budget_used(void);
size_t relay_budget_limit(void);

/* Times a relay paused over --max-buffer or its tunnel's pool limit. */
uint64_t relay_budget_hits(void);

/* Counts r in *counter while it is open (incremented now, decremented when r
 * closes): for per-listener connection limits. */
void relay_set_counter(struct relay *r, size_t *counter);

/*
 * Gives r an access record (frontend, which end the local socket is, the
 * shortened client key and the source, copied): r is then listed by
 * relay_foreach_access, counted in relay_get_access_counts, and its access
 * line is logged at info when it closes. Once per relay.
 */
void relay_set_access(struct relay *r, enum access_frontend frontend, enum access_side side,
		      const char *client, const char *src);

/* What the stream was for, and the address actually connected (copied). */
void relay_set_access_target(struct relay *r, const char *target);
void relay_set_access_addr(struct relay *r, const char *addr);

/* Application bytes r has carried both ways so far (0 without an access
 * record): what an idle check compares. */
uint64_t relay_app_bytes(const struct relay *r);

/* Why r ends (FRAME_ERR_*), when the caller closes it for a reason; the
 * first reason given wins. */
void relay_set_result(struct relay *r, uint32_t frame_error);

struct relay_access_counts {
	uint64_t open[ACCESS_FRONTEND_COUNT];	/* relays with a record, now */
	uint64_t opened[ACCESS_FRONTEND_COUNT]; /* since start */
	uint64_t closed[ACCESS_RESULT_COUNT];	/* by how they ended */
};

const struct relay_access_counts *relay_get_access_counts(void);

/* Calls fn for every open relay with an access record; state is "open",
 * "connecting", "half-closed", ... Do not open or close relays in fn. */
void relay_foreach_access(void (*fn)(const struct access_record *rec, const char *state,
				     uint64_t age_ms, void *arg),
			  void *arg);

#endif
