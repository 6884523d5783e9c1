/*
 * The streams of one session: stream table, stream state machine, credit flow
 * control per stream and per session, acknowledgement and resending, and the
 * fair scheduler that decides which frames go into the next record. Knows
 * nothing of sockets: a session carries its streams over any number of paths
 * (tunnels); each path feeds it decoded frames and pulls record plaintext
 * when it is writable; the relay gives each stream a source buffer and
 * reports bytes it has delivered.
 *
 * Reliability (docs/PROTOCOL.md section 8.4): DATA keeps its stream offsets;
 * the receiver acknowledges the contiguous offset it has received (ACK) apart
 * from the credit it grants; the sender keeps every byte it sent until it is
 * acknowledged, so it can send it again on another path when the path that
 * carried it is lost. The receiver reorders by offset inside the window it
 * granted and drops duplicates.
 *
 * Flow control (absolute offsets, as in QUIC): a receiver grants
 * max_offset = consumed + window per stream and per session, where consumed
 * counts bytes that have left toward the local socket. So a receiver never
 * buffers more than it granted, and the relay never stops reading a tunnel.
 * Control frames are never flow-controlled and go first in every record.
 *
 * Scheduling: deficit round robin with a new-flows list ahead of the
 * old-flows list (RFC 8290 style), quantum 16 KiB: a stream that just became
 * active (an interactive request) is served before bulk streams that have
 * been sending for a while.
 *
 * Placement (placement.h), once the owner feeds each path's TCP_INFO
 * (session_path_set_info) and the session has two paths or more: a stream
 * served from the new-flows list (a new stream, with its OPEN, or a fresh
 * burst of an interactive one) goes where it reaches the peer soonest: a
 * path that pulls while another path with room would clearly get it there
 * sooner leaves it to that path, for PLACEMENT_DEFER_MAX_US or until the
 * next session_tick at most. A path takes no more bulk DATA in one snapshot
 * than its room (placement_room), so a cold or slow path does not swallow
 * data that would only wait on it. A stream's bulk keeps to its home path
 * (the first that carried its DATA, or, when the stream turns bulk, the
 * path that gets its next bytes there soonest, rate and backlog, by a fifth);
 * a new burst of a stream with a home is
 * bulk too when it is over SESSION_BURST_MAX or the stream has sent
 * SESSION_BULK_SENT. OPENs leave in id order, and one not yet
 * answered keeps the OPENs after it on its path, so they reach the peer in
 * order. Without snapshots, or with one path, any path that pulls takes
 * whatever is next, as before.
 *
 * Loss-tail duplication (--duplicate): a small DATA frame (at most
 * SESSION_DUP_FRAME_MAX bytes, no FIN) of an interactive stream (served from
 * the new-flows list, after a pause of PLACEMENT_IDLE_US or as its first,
 * taking all the stream had) is also sent on a second path, a new stream's
 * with its OPEN (both marked RESENT); the receiver drops the copy that
 * arrives second by its offset (dup_frames / dup_bytes). In auto mode only
 * while loss was seen (a path's retransmit or out-of-order counter rose, or
 * a path was lost) within PLACEMENT_LOSS_HOLD_US. The copies cost at most 1/SESSION_DUP_SHARE
 * of the DATA sent plus SESSION_DUP_ALLOWANCE.
 */
#ifndef WANMUX_SESSION_H
#define WANMUX_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/compress.h"
#include "wanmux/frame.h"
#include "wanmux/placement.h"

struct evbuffer;
struct budget_pool;
struct session;
struct session_path;
struct session_stream;

/* Either side may open streams: the client with odd ids (forwards, proxies),
 * the server with even ids (reverse forwards). */
enum session_role {
	SESSION_CLIENT,
	SESSION_SERVER,
};

/* What one side announces in its handshake payload. */
struct session_params {
	uint32_t stream_window;	 /* initial receive window per stream, bytes */
	uint32_t session_window; /* receive window for the whole session, bytes */
	uint32_t max_streams;	 /* concurrent streams this side accepts */
	/* Local side only: the session credit the hello announces in place of
	 * session_window (session_initial_credit); 0 means session_window. */
	uint32_t initial_credit;
};

#define SESSION_DEFAULT_STREAM_WINDOW (16u << 20)
#define SESSION_DEFAULT_SESSION_WINDOW (64u << 20)
#define SESSION_DEFAULT_MAX_STREAMS 1024u
#define SESSION_MIN_WINDOW (64u << 10)
#define SESSION_QUANTUM 16384u
/* A burst of a stream that already has a home path up to this long is a
 * small exchange that placement may put on any path; a longer one is bulk
 * and stays at home. */
#define SESSION_BURST_MAX 4096u
/* ... unless the stream has sent this much already: it is a bulk stream
 * whose source runs dry now and then, and each of its bursts stays at home
 * (its receiver delivers them after the bytes in flight there anyway). */
#define SESSION_BULK_SENT (256u << 10)
/* The most bytes a bulk stream's home is judged by (session.c bulk_horizon). */
#define SESSION_BULK_HORIZON_MAX (16u << 20)
/* Bytes of encoded control frames a session queues at most, plus
 * SESSION_CTRL_PER_STREAM for each stream it holds. The tunnel stops
 * reading long before (see tunnel.c), and a well-behaved pair stays far
 * below: 1024 OPENs with 255-byte names are 280 KB. Over it the session's
 * tunnels close. */
#define SESSION_CTRL_MAX ((size_t)1 << 20)
/* A lost path makes the session announce its state on the others: WINDOW,
 * OPEN_RESULT and RESUME per stream, 44 bytes. Room for two announcements
 * in a row, so that many streams (--max-streams goes to 2^20) never turn
 * the loss of one tunnel into the end of the session. */
#define SESSION_CTRL_PER_STREAM 128u
/* Paths one session carries at once. */
#define SESSION_PATHS_MAX 64
/* Out-of-order segments a session holds at once, all streams together: each
 * costs a small header beyond its bytes (which the grant bounds), so a peer
 * sending 1-byte segments with gaps is stopped here (WM_ERR_LIMIT). A sender
 * that cuts frames of 16 KiB needs one per 16 KiB of the session window. */
#define SESSION_HELD_MAX 65536u
/* How far below the highest stream id the peer opened an OPEN may still
 * arrive (in ids of the peer's parity): OPENs on different paths overtake
 * each other. Older ids are taken as reused (a protocol error). */
#define PEER_ID_WINDOW 1024u
/* Duplication: the largest DATA payload copied to a second path, and the
 * copies waiting for one at most. */
#define SESSION_DUP_FRAME_MAX 2048u
/* An interactive burst keeps --queue-cap on this long: keystrokes and
 * requests come seconds apart. */
#define SESSION_INTERACTIVE_HOLD_US 5000000u
/* ... and a burst counts for it after a pause this long: messages and
 * keystrokes come tens of milliseconds apart or more, a busy daemon's
 * reads of a bulk source a few milliseconds apart. */
#define SESSION_INTERACTIVE_PAUSE_US 20000u
/* A queue seen at the bottleneck keeps the cap holding this long: the cap
 * leaves too small a queue to show, and BBR probes every eight rounds
 * (4.8 s at 600 ms). */
#define SESSION_QUEUE_MEMORY_US 30000000u
/* A path takes a bulk stream's start-up overflow (overflow_ok) only until
 * it has carried this much: enough for a fresh tunnel's ramp, and no more,
 * so that after a warm-up (app-limited transfers leave BBR in STARTUP) the
 * bulk does not stay spread over every tunnel. */
#define SESSION_OVERFLOW_COLD_BYTES (1u << 20)
#define SESSION_DUP_QUEUE_MAX 32u
/* The copies' frame bytes stay within 1/SESSION_DUP_SHARE of the DATA
 * payload sent plus SESSION_DUP_ALLOWANCE, whatever the traffic. */
#define SESSION_DUP_SHARE 64u
#define SESSION_DUP_ALLOWANCE (64u << 10)

/* A compressed DATA frame that brings new bytes is inflated whole, with
 * the bytes the receiver has already (delivered or held). Unbounded, a peer
 * could send 64 KiB of zeros (78 bytes deflated) again and again, one byte
 * further each time: 64 KiB inflated (about 130 us) per byte of window.
 * So the bytes inflated again may come to SESSION_DUP_INFLATE_SHARE times
 * the new bytes received (each once) plus SESSION_DUP_INFLATE_ALLOWANCE;
 * the frame that would go over is a protocol error (WM_ERR_FLOW, the
 * session ends), refused before it is inflated. A legitimate peer stays
 * under: a copy (--duplicate) repeats a whole frame and is not inflated
 * when it comes second; only a resend cut anew after a path came or went
 * straddles bytes we have, each of those bytes was new once, and a path
 * event rewinds a sender at most twice (its own loss, then our RESUME):
 * hence 2. The allowance, 16 frames of 64 KiB, covers more path events
 * with little new data between them
 * (test_session_paths_rewind_over_held_within_budget inflates again 0.6
 * times what is new). */
#define SESSION_DUP_INFLATE_SHARE 2u
#define SESSION_DUP_INFLATE_ALLOWANCE (1u << 20)

/*
 * Callbacks. A stream passed to on_reset or on_closed is freed when the
 * callback returns: drop every reference to it there.
 */
struct session_callbacks {
	/* The peer opened stream to target. Call session_stream_attach before
	 * returning 0, and answer later with session_stream_open_result; or
	 * return a FRAME_ERR_* (> 0) to refuse at once (the stream is then freed
	 * without on_reset). NULL refuses every OPEN. */
	int (*on_open)(struct session *s, struct session_stream *st,
		       const struct frame_addr *target, void *arg);
	/* A stream we opened: the peer connected its target. */
	void (*on_open_result)(struct session_stream *st, void *user);
	/* Bytes for the local socket, in order. Report them with
	 * session_stream_consumed once they have left toward the socket. */
	void (*on_data)(struct session_stream *st, const uint8_t *data, size_t len, void *user);
	/* The peer will send no more (half-close): shut the local write side
	 * once everything before it has been written. */
	void (*on_fin)(struct session_stream *st, void *user);
	/* The stream failed: peer RESET, OPEN refused (error = FRAME_ERR_*), or
	 * the session is going away (FRAME_ERR_TUNNEL_LOST). */
	void (*on_reset)(struct session_stream *st, uint32_t error, void *user);
	/* Both directions finished cleanly: the peer acknowledged our FIN, and
	 * its FIN and every byte before it were consumed. */
	void (*on_closed)(struct session_stream *st, void *user);
	/* LISTEN / LISTEN_RESULT from the peer (reverse forwards). Return 0, or
	 * an error when the frame breaks the protocol (the tunnel closes). NULL
	 * treats them as protocol errors. */
	int (*on_control)(struct session *s, const struct frame *f, void *arg);
	/* The peer sent GOAWAY: it accepts no new stream from us on this
	 * session (session_stream_open now fails); open new work elsewhere.
	 * Streams already open run on. Optional. */
	void (*on_goaway)(struct session *s, void *arg);
	/* There is something to send: the tunnel should call session_fill. */
	void (*on_writable)(struct session *s, void *arg);
};

struct session_stats {
	uint64_t streams_opened;
	uint64_t resent_bytes; /* DATA bytes sent again after a path loss or RESUME */
	uint64_t dup_bytes;    /* received DATA bytes dropped: already had them */
	uint64_t dup_frames;   /* received DATA frames that brought nothing new */
	/* of dup_bytes, those decompressed with new bytes of their frame */
	uint64_t dup_inflated_bytes;
	uint64_t held_bytes_max; /* most out-of-order bytes held at once */
	uint64_t acks_sent;	 /* ACK frames */
	uint64_t acks_received;
	uint64_t resumes;	   /* RESUME batches sent (a path came or went) */
	uint64_t resumes_received; /* RESUME frames received */
	uint64_t resumes_refused;  /* of them, over the resume credit: taken as ACKs */
	uint64_t paths_added;
	uint64_t paths_lost;
	uint64_t raw_bytes_sent;	 /* DATA payload before compression */
	uint64_t payload_bytes_sent;	 /* DATA payload as sent */
	uint64_t raw_bytes_received;	 /* DATA payload after decompression, each byte once */
	uint64_t payload_bytes_received; /* DATA payload as received */
	uint64_t frames_compressed;
	uint64_t frames_raw;
	/* placement */
	uint64_t placement_deferrals; /* fresh streams a path left for a better one */
	uint64_t placement_timeouts;  /* of them, taken anyway: the better path did not pull */
	uint64_t bulk_moves;	      /* streams turned bulk moved to a faster path (bulk_home) */
	uint64_t overflow_bytes; /* bulk DATA (raw) on paths other than its home (overflow_ok) */
	uint64_t queue_capped;	 /* fills whose bulk room --queue-cap made smaller */
	uint64_t loss_events;	 /* retransmit counter rises and resends seen */
	/* what duplication cost */
	uint64_t dup_frames_sent; /* copies of DATA frames sent on a second path */
	uint64_t dup_bytes_sent;  /* their DATA payload bytes, before compression */
	uint64_t dup_wire_bytes;  /* their frame bytes, headers included */
};

/* What one path carried. */
struct session_path_stats {
	uint64_t bytes_placed;	 /* frame bytes session_fill wrote for this path */
	uint64_t data_bytes;	 /* DATA payload bytes (raw) among them */
	uint64_t records;	 /* session_fill calls that wrote something */
	uint64_t fresh_bytes;	 /* DATA payload of streams served from the new-flows list */
	uint64_t opens;		 /* OPENs placed on it */
	uint64_t capped;	 /* fills stopped at the path's room */
	uint64_t deferred;	 /* times it left a fresh stream to a better path */
	uint64_t dup_frames;	 /* duplicate DATA frames it carried */
	uint64_t overflow_bytes; /* bulk DATA (raw) it took from streams homed elsewhere */
};

/*
 * A session, with no path yet. local: what this side announced; peer: what the
 * peer announced. cb and arg are kept; compress_ctx is borrowed. NULL on
 * allocation failure.
 */
struct session *session_new(enum session_role role, const struct session_params *local,
			    const struct session_params *peer, const struct session_callbacks *cb,
			    void *arg, struct compress_ctx *compress_ctx);

/*
 * Ends every stream (on_reset with FRAME_ERR_TUNNEL_LOST) and frees s. NULL is
 * a no-op. Never call it from inside a session callback.
 */
void session_free(struct session *s);

/* Codec for DATA this side sends from now on (COMPRESS_NONE/LZ4/ZLIB). */
void session_set_codec(struct session *s, enum compress_mode codec);

/*
 * Attaches a path (a tunnel) that carries frames of s; owner is the caller's
 * (session_path_owner). When s already had a path, this is a reconnect: the
 * session sends RESUME for each of its streams first on whichever path pulls
 * (what it has received, so the peer resends the rest). NULL when
 * SESSION_PATHS_MAX paths are attached or on allocation failure.
 */
struct session_path *session_path_add(struct session *s, void *owner);

/*
 * The path is gone (its connection closed): what was in flight on it and not
 * acknowledged becomes eligible to send again at once on the other paths
 * (from the acknowledged offset of each stream that used the path), an OPEN
 * still unanswered is sent again, and the session announces its receive state
 * (RESUME, WINDOW, OPEN_RESULT) again, since control frames in flight on the
 * path may be lost. path is freed. With no path left the streams wait for
 * session_path_add; ending them is the owner's decision (session_free).
 */
void session_path_lost(struct session *s, struct session_path *path);

void *session_path_owner(const struct session_path *path);
const struct session_path_stats *session_path_get_stats(const struct session_path *path);
size_t session_path_count(const struct session *s);

/*
 * The owner's snapshot of path (TCP_INFO and what waits in user space; see
 * placement.h), taken just before a fill or on the owner's tick: placement
 * uses it until the next one, counting what it put on the path since. Its
 * now_us is the session's clock; a retransmit or out-of-order counter
 * higher than in the path's previous snapshot is loss (--duplicate auto).
 */
void session_path_set_info(struct session_path *path, const struct placement_info *pi);

/*
 * Whether the last session_fill for path left frames behind for placement
 * (a fresh stream for a better path, bulk data over its room) though it had
 * something to send: the owner pulls again within a few milliseconds, since
 * the session has no clock to wake it.
 */
bool session_path_held_back(const struct session_path *path);

/* --duplicate mode of s (default PLACEMENT_DUP_AUTO). */
void session_set_duplicate(struct session *s, enum placement_dup mode);

/* --queue-cap: while an interactive burst left within
 * SESSION_INTERACTIVE_HOLD_US, bulk streams keep what they have in flight
 * and queued on a path to PLACEMENT_QUEUE_CAP_PCT of its bandwidth-delay
 * product (default off). */
void session_set_queue_cap(struct session *s, bool on);

/* Whether the peer takes compressed DATA frames of up to FRAME_DATA_ZRAW_MAX
 * raw bytes (its hello has HELLO_FLAG_BIG_DATA; default no). */
void session_set_peer_big_data(struct session *s, bool yes);

/* Whether s duplicates small interactive frames now (mode, paths, loss). */
bool session_duplicating(const struct session *s);

/*
 * Handles one decoded frame from the peer that arrived on path (not
 * PING/PONG, which the tunnel answers itself). Returns 0, or
 * WM_ERR_MALFORMED / WM_ERR_FLOW (beyond a window, or over the budget of
 * SESSION_DUP_INFLATE_SHARE) / WM_ERR_STATE when the peer broke the
 * protocol, or WM_ERR_LIMIT when the control queue went over
 * SESSION_CTRL_MAX or out-of-order segments over SESSION_HELD_MAX: the
 * session can no longer keep the protocol and its tunnels must close.
 */
int session_on_frame(struct session *s, struct session_path *path, const struct frame *f);

/*
 * Fills buf (cap bytes, at most RECORD_PLAINTEXT_MAX useful) with whole
 * frames for path: control frames first (on whichever path pulls first),
 * then copies waiting for a second path (duplication), then DATA chosen by
 * the scheduler within the credit the peer granted and placement (see the
 * top of this file): data to send again first, then new data. A stream's
 * OPEN leaves with its first DATA; until the peer has answered or
 * acknowledged it, the stream sends only on the path that carried its OPEN,
 * so its DATA cannot overtake it. Returns the bytes written; 0 when there is
 * nothing to send now (or nothing for this path: session_path_held_back).
 */
size_t session_fill(struct session *s, struct session_path *path, uint8_t *buf, size_t cap);

/*
 * The owner's periodic tick (the tunnel's 250 ms timer): sends the ACKs that
 * were held back to coalesce them (an ACK leaves at once when a stream's
 * received offset advanced by an eighth of its window, or at FIN), and ends
 * every placement deferral (the next path that pulls takes the stream).
 */
void session_tick(struct session *s);

/* Bytes sent and not yet acknowledged, all streams together: the resend
 * store, at most one stream window per stream and one session window per
 * session (the smaller of ours and the peer's). What of it the session
 * holds itself (beyond the relay's source buffer), and the out-of-order bytes
 * held, are charged to the session's pool and the process buffer budget
 * (relay_budget_charge), so over them relays stop reading. */
size_t session_unacked(const struct session *s);

/* Out-of-order bytes held now, all streams together. */
size_t session_held(const struct session *s);

/* Queues a control frame (LISTEN, LISTEN_RESULT); control frames go first. */
void session_send_control(struct session *s, const struct frame *f);

/* Queues a PING or PONG (type) with opaque; control frames go first. A PONG
 * replaces one still waiting: only the newest PING is answered. */
void session_send_ping(struct session *s, uint8_t type, uint64_t opaque);

/* Bytes of control frames waiting (a pending PONG included). */
size_t session_ctrl_queued(const struct session *s);

/* Whether a control frame was dropped over its cap (SESSION_CTRL_MAX): the session can
 * no longer keep the protocol and its tunnel must close. */
bool session_ctrl_overflowed(const struct session *s);

/* Whether session_fill would write something now. */
bool session_wants_write(const struct session *s);

/*
 * Opens a stream to target. src is the buffer the stream sends from
 * (the local socket's input; borrowed, must outlive the stream); user is
 * passed to the callbacks. OPEN leaves with the first DATA (0-RTT). NULL when
 * the peer's stream limit is reached, after the peer's GOAWAY, or on
 * allocation failure.
 */
struct session_stream *session_stream_open(struct session *s, const struct frame_addr *target,
					   struct evbuffer *src, void *user);

/* Whether session_stream_open would open a stream now (memory aside): under
 * the peer's stream limit, no GOAWAY from it, stream ids left. */
bool session_can_open(const struct session *s);

/* In on_open: the source buffer and user pointer of a stream the peer opened. */
void session_stream_attach(struct session_stream *st, struct evbuffer *src, void *user);

/*
 * Answers the peer's OPEN. error 0 = connected; otherwise the stream is
 * refused and freed at once (no callbacks follow).
 */
void session_stream_open_result(struct session_stream *st, uint32_t error);

/* New bytes are in the stream's source buffer (or credit may have changed). */
void session_stream_kick(struct session_stream *st);

/*
 * The local side will send no more: FIN follows the bytes still in the
 * source buffer. May complete and free the stream (on_closed).
 */
void session_stream_shutdown(struct session_stream *st);

/*
 * len bytes handed over by on_data have left toward the local socket: credit
 * for the peer. May complete and free the stream (on_closed).
 */
void session_stream_consumed(struct session_stream *st, size_t len);

/*
 * Aborts the stream (local error): RESET goes to the peer and the stream is
 * freed at once, with no callback.
 */
void session_stream_reset(struct session_stream *st, uint32_t error);

/* "open/open", "fin-sent/fin-read", ...: the send and receive states. */
const char *session_stream_state_name(const struct session_stream *st);

uint32_t session_stream_id(const struct session_stream *st);
struct session *session_stream_session(const struct session_stream *st);

/*
 * Drain: queues GOAWAY naming the last stream the peer opened. Every later
 * OPEN from the peer is refused with FRAME_ERR_GOING_AWAY; open streams, in
 * both directions, run on. Idempotent.
 */
void session_goaway(struct session *s);

/* Whether this side sent GOAWAY (session_goaway) / the peer sent one. */
bool session_goaway_sent(const struct session *s);
bool session_goaway_received(const struct session *s);

/* OPENs refused over max_streams, across the process. */
uint64_t session_limit_hits(void);

/*
 * What the process holds in buffers (used) against its --max-buffer (limit),
 * for every session of the process; the relay reports it whenever it
 * changes. Over limit/2 new session credit shrinks (session_grant_window).
 */
void session_set_memory(size_t used, size_t limit);

/*
 * The session window a grant may use now for a configured window: window
 * while the process holds at most half its limit, then shrinking in
 * proportion to what is left, SESSION_MIN_WINDOW at the limit.
 */
uint64_t session_grant_window(uint32_t window);

/*
 * The session window a grant may use so that the credit all sessions of
 * the process have granted and not seen consumed stays within --max-buffer
 * (plus SESSION_MIN_WINDOW per session): at most window, what is left of
 * the limit beside the others' credit, and an even share of the limit or
 * half of what is left, whichever is more; never below SESSION_MIN_WINDOW.
 * own is what the asking session has outstanding. window without a limit.
 */
uint64_t session_credit_window(uint32_t window, uint64_t own);

/* The session credit a new session's hello announces for a configured
 * window: session_credit_window for one more session, and at most an eighth
 * of what the limit leaves (never below SESSION_MIN_WINDOW). A grant cannot
 * be taken back, and an idle tunnel keeps its first one. */
uint32_t session_initial_credit(uint32_t window);

/* Session grants shrunk or delayed because buffers were full, process-wide. */
uint64_t session_credit_hits(void);

/* The longest chain in the stream table (tests: the hash spreads ids). */
size_t session_max_chain(const struct session *s);

/* An opaque pointer the owner keeps with the session (the tunnel's relay
 * pool); NULL until set. */
void session_set_pool(struct session *s, struct budget_pool *pool);
struct budget_pool *session_pool(const struct session *s);

/* Bytes queued to send: the streams' source buffers (not yet sent once) plus
 * control frames. */
size_t session_queued(const struct session *s);
size_t session_stream_count(const struct session *s);
const struct session_stats *session_get_stats(const struct session *s);

#endif
