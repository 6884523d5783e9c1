/*
 * Streams of one session over any number of paths: table, states, credit
 * flow control, acknowledgement and resending, reordering, and the DRR
 * scheduler. No sockets and no clocks: frames in, record plaintext out. The
 * stream's source buffer belongs to the relay; what the session has sent
 * stays in the resend store until acknowledged: the first bytes of the
 * source, then, chain by chain once a chain is wholly sent, the session's own
 * buffer (unacked), so no byte is copied to keep it.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/limit.h"
#include "wanmux/log.h"
#include "wanmux/record.h"
#include "wanmux/budget.h"
#include "wanmux/relay.h"
#include "wanmux/session.h"

/* Stop filling a record when less than this is left: a tiny DATA frame costs
 * more in header and AEAD call than it saves in latency. */
/* RESETs remembered for sending again after a path loss. */
#define RESETS_KEPT 64
#define FILL_MIN_ROOM 256
#define BUCKETS_MIN 64
/* An ACK leaves at once when the received offset advanced by this fraction
 * of the stream window (or at FIN); smaller advances wait for session_tick. */
#define ACK_EVERY_DIV 8
/* Sent bytes the resend store leaves in the relay's source buffer at most. */
#define STORE_IN_SRC_MAX (64u << 10)

/* Refusals over --max-streams, across all sessions of the process. */
static struct limit_counter stream_limit_counter = {.name = "streams per tunnel (--max-streams)"};

/* Bytes the process holds in relay buffers and its --max-buffer, pushed by
 * the relay (session_set_memory); 0/0 until then. */
static size_t memory_used;
static size_t memory_limit;
static struct limit_counter credit_counter = {.name = "receive credit (--max-buffer)"};

/* Credit granted and not yet consumed, over all sessions of the process:
 * what the peers may make us hold, since a grant cannot be taken back.
 * Grants keep it within memory_limit plus SESSION_MIN_WINDOW per session. */
static uint64_t credit_committed;
static size_t credit_sessions;

enum list_id {
	LIST_NONE,
	LIST_NEW,
	LIST_OLD,
};

/*
 * The two directions of a stream have their own state machines, as in QUIC
 * (RFC 9000 section 3): they move independently (either FIN may come first,
 * and across paths a peer's FIN may even arrive before its OPEN_RESULT).
 * The stream ends when both are DONE, or at once by a reset.
 */
enum send_state {
	SEND_WAIT,     /* the peer opened it and we have not answered: silent */
	SEND_OPEN,     /* sending (0-RTT for a stream we opened) */
	SEND_FIN_SENT, /* FIN placed on a path, not yet acknowledged */
	SEND_DONE,     /* the peer acknowledged FIN: nothing left to resend */
	SEND_NSTATES,
};

enum recv_state {
	RECV_OPEN,	 /* receiving */
	RECV_SIZE_KNOWN, /* FIN seen; bytes before it still missing */
	RECV_FIN,	 /* FIN delivered (on_fin); draining to the local socket */
	RECV_DONE,	 /* every byte consumed */
	RECV_NSTATES,
};

/* Allowed transitions; anything else is a bug in this file. FIN_SENT goes
 * back to OPEN when what carried FIN is to be resent (path lost, RESUME);
 * OPEN reaches DONE directly when an ACK of the first FIN arrives after such
 * a rewind. */
static const bool send_next_ok[SEND_NSTATES][SEND_NSTATES] = {
    [SEND_WAIT] = {[SEND_OPEN] = true},
    [SEND_OPEN] = {[SEND_FIN_SENT] = true, [SEND_DONE] = true},
    [SEND_FIN_SENT] = {[SEND_OPEN] = true, [SEND_DONE] = true},
};

static const bool recv_next_ok[RECV_NSTATES][RECV_NSTATES] = {
    [RECV_OPEN] = {[RECV_SIZE_KNOWN] = true, [RECV_FIN] = true},
    [RECV_SIZE_KNOWN] = {[RECV_FIN] = true},
    [RECV_FIN] = {[RECV_DONE] = true},
};

static const char *const state_names[SEND_NSTATES][RECV_NSTATES] = {
    {"wait/open", "wait/size-known", "wait/fin", "wait/done"},
    {"open/open", "open/size-known", "open/fin", "open/done"},
    {"fin-sent/open", "fin-sent/size-known", "fin-sent/fin", "fin-sent/done"},
    {"done/open", "done/size-known", "done/fin", "done/done"},
};

/* An out-of-order segment, held until the bytes before it arrive. */
struct held_seg {
	uint64_t off;
	size_t len;
	uint8_t data[];
};

struct session_path {
	struct session *session;
	void *owner;
	unsigned slot; /* bit in each stream's path_mask */
	struct session_path_stats stats;
	struct placement_info info; /* the owner's last snapshot */
	bool has_info;
	size_t placed;	/* frame bytes put on the path since the snapshot */
	bool held_back; /* the last fill left frames for placement */
};

/* A copy of a small DATA frame waiting for a path other than the one that
 * carried the original (loss-tail duplication). */
struct dup_copy {
	TAILQ_ENTRY(dup_copy) link;
	uint32_t id;
	uint64_t end;	 /* stream offset past its bytes: useless once acknowledged */
	unsigned origin; /* slot of the original's path; SESSION_PATHS_MAX: none */
	/* Slot of the other path where the copy arrives soonest (dup_target);
	 * SESSION_PATHS_MAX: whichever pulls. Others leave it to that one for
	 * PLACEMENT_DEFER_MAX_US or until a session_tick, as for fresh
	 * frames. */
	unsigned target;
	/* Slot of the path the first copy is for, when this is the second
	 * (SESSION_PATHS_MAX otherwise): not on that one too. */
	unsigned avoid;
	uint64_t since_us;
	uint64_t tick;
	size_t raw;    /* DATA payload bytes before compression */
	size_t len;    /* frame bytes */
	bool has_open; /* starts with the stream's OPEN (flag RESENT) */
	/* DATA of a stream the peer may not know yet: it goes only behind the
	 * copy of the stream's OPEN, on that copy's path (follows_open_copy). */
	bool follows_open;
	uint8_t frame[];
};

TAILQ_HEAD(dup_list, dup_copy);

struct session_stream {
	struct session *session;
	struct session_stream *hash_next;
	TAILQ_ENTRY(session_stream) sched;
	TAILQ_ENTRY(session_stream) ack_link;
	TAILQ_ENTRY(session_stream) open_link; /* on open_list while open_pending */
	enum list_id list;
	int32_t deficit;
	/* Callbacks may end the stream under our feet: while busy > 0 an ended
	 * stream is only unlinked and marked dead; the last release frees it. */
	unsigned busy;
	bool dead;
	bool counted_done; /* both FINs passed: no longer counts against limits */
	bool local;	   /* we opened it */
	bool opened;	   /* OPEN answered: by the peer (local) or by us (!local) */
	/* A stream we opened whose answer came as a stand-in for the peer's
	 * OPEN_RESULT: its DATA, or the OPEN_RESULT sent again (RESENT) after
	 * a path loss, on a faster path. The original OPEN_RESULT 0 may still
	 * come: it is no second answer. */
	bool result_implied;
	/* The peer has shown it knows the stream (it answered or acknowledged
	 * something): until then our DATA stays on the path of our OPEN. */
	bool established;
	/* Its OPEN went in a copy too (maybe_duplicate), on this path (slot);
	 * SESSION_PATHS_MAX while that copy waits, or once its path is lost. */
	bool open_copied;
	unsigned open_copy_slot;
	bool ack_pending; /* on the session's ack list */
	/* A stream we opened whose OPEN has not been placed yet: it leaves with
	 * the stream's first DATA on the path placement picks. */
	bool open_pending;
	/* A path left the stream for a better one (placement) at this time and
	 * session tick; another path takes it after PLACEMENT_DEFER_MAX_US. */
	bool deferred;
	uint64_t defer_since_us;
	uint64_t defer_tick;
	/* When the scheduler last found it with nothing to send (session
	 * clock): a burst after a pause is interactive (duplication). */
	uint64_t idle_since_us;
	uint32_t id;
	void *user;
	struct evbuffer *src; /* borrowed: the local socket's input, unsent bytes */
	struct session_path *pin;
	/* The path its bulk DATA goes on: the first that carried its DATA,
	 * moved once, when the stream turns bulk, to the path where its next
	 * bytes arrive soonest (bulk_home), until that path is lost. A
	 * stream spread over every tunnel made them all bulk flows that
	 * queue and lose against each other on the one bottleneck
	 * (satellite interactive p99 1.4 -> 5.3 s, branch text 148 -> 120
	 * Mbit/s), and left no tunnel free for small streams, whose fresh
	 * frames still go wherever placement says. */
	struct session_path *home;
	bool home_chosen;	  /* bulk_home picked home (once per stream) */
	uint32_t bursts;	  /* interactive bursts in a row (interactive_burst) */
	struct frame_addr target; /* kept to send OPEN again while not established */

	/* sending direction: acked <= next <= high; the resend store holds
	 * [acked, high) */
	enum send_state send;
	uint64_t snd_acked;
	uint64_t snd_next;
	uint64_t snd_high;
	uint64_t send_max; /* peer's grant */
	bool shutdown_requested;
	bool fin_placed_once;
	uint64_t path_mask; /* paths that carried bytes not yet acknowledged */
	/* The resend store [snd_acked, snd_high): unacked (chains moved from
	 * src), then the first src_sent bytes of src (sent from a chain not yet
	 * wholly sent, or from src's last chain, still being read into). */
	struct evbuffer *unacked;
	size_t src_sent;
	struct compress_state cstate;

	/* receiving direction: consumed <= contig <= high <= recv_max */
	enum recv_state recv;
	uint64_t rcv_consumed;
	uint64_t rcv_contig; /* delivered in order */
	uint64_t rcv_high;   /* highest offset seen: what session credit counts */
	uint64_t recv_max;   /* what we granted */
	uint64_t fin_offset;
	uint64_t ack_sent; /* last received offset we acknowledged */
	/* Segments of the stream in held[held_lo, held_hi): sorted by offset,
	 * never overlapping; found by binary search, since a peer choosing
	 * where its tiny segments go would make any walk cost all of them. */
	struct held_seg **held;
	size_t held_lo;
	size_t held_hi;
	size_t held_cap;
	size_t held_bytes;
};

TAILQ_HEAD(stream_list, session_stream);

struct session {
	enum session_role role;
	struct session_params local;
	struct session_params peer;
	struct session_callbacks cb;
	void *arg;
	struct compress_ctx *cctx;
	enum compress_mode codec;

	struct session_stream **buckets;
	size_t nbuckets;
	size_t nstreams;
	size_t ndone;		/* streams whose FINs have both passed (draining only) */
	uint32_t next_local_id; /* next id we open: odd on the client, even on the server */
	uint32_t last_peer_id;	/* highest id the peer opened */
	/* Which of the PEER_ID_WINDOW peer ids up to last_peer_id were opened:
	 * OPENs travel on several paths, so a lower id may arrive after a
	 * higher one. */
	uint64_t peer_seen[PEER_ID_WINDOW / 64];
	/* Of those, the ones whose RESET overtook their OPEN (another path):
	 * the OPEN opens nothing when it comes, its DATA is dropped. */
	uint64_t peer_reset_early[PEER_ID_WINDOW / 64];
	/* Of those, the ones a copy (RESENT) opened: the original, without the
	 * flag, may still come from the path its sender gave up (the kernel
	 * sends what it queued after close). */
	uint64_t peer_copy_first[PEER_ID_WINDOW / 64];
	/* The latest RESETs sent: one lost with its path would leave the peer's
	 * stream open for ever, so announce_state sends them again (a RESET for a
	 * stream the receiver no longer has is ignored). */
	struct {
		uint32_t id;
		uint32_t error;
		uint64_t final_offset;
	} resets[RESETS_KEPT];
	size_t nresets, reset_next;

	struct session_path *paths[SESSION_PATHS_MAX];
	size_t npaths;
	bool had_path;
	bool resume_pending; /* every path was lost: announce on the next one */
	/* Bytes the peer's RESUMEs may still make us send again: a RESUME costs
	 * the peer a few bytes and us up to a window, so rewinds spend this and
	 * acknowledged progress earns it back (see on_ack). */
	uint64_t resume_credit;

	struct stream_list new_list;
	struct stream_list old_list;
	struct stream_list ack_list;  /* streams with an ACK held back */
	struct stream_list open_list; /* streams with OPEN unsent, in id order */
	uint64_t now_us;	      /* newest snapshot time: the session's only clock */
	uint64_t ticks;		      /* session_tick calls */
	enum placement_dup dup_mode;
	bool loss_seen;
	uint64_t loss_seen_us;
	bool queue_cap;		 /* --queue-cap on (default off) */
	bool interactive_seen;	 /* an interactive burst left (interactive_burst) ... */
	uint64_t interactive_us; /* ... at this time */
	bool queue_seen;	 /* a path showed a queue (placement_queueing) ... */
	uint64_t queue_seen_us;	 /* ... last at this time */
	struct dup_list dups;	 /* copies waiting for a second path */
	size_t ndups;
	struct evbuffer *ctrl; /* encoded control frames, sent first */
	bool ctrl_overflow;    /* a frame was dropped over SESSION_CTRL_MAX */
	bool held_overflow;    /* out-of-order segments over SESSION_HELD_MAX */
	/* Only the newest PING is answered: a peer that floods PINGs costs one
	 * pending PONG, not a queue of them. */
	bool pong_pending;
	uint64_t pong_opaque;

	uint64_t sent;	   /* session-level DATA bytes sent: sum of snd_high */
	uint64_t send_max; /* peer's session grant */
	uint64_t received; /* sum of rcv_high (QUIC style: duplicates count once) */
	uint64_t consumed;
	uint64_t recv_max;	 /* our session grant */
	uint64_t credit_counted; /* recv_max - consumed, as in credit_committed */
	size_t unacked;		 /* bytes in the resend stores */
	/* What the session itself holds (the resend stores' own buffers and
	 * the out-of-order segments), charged to the pool and --max-buffer. */
	size_t charged;
	struct budget_account account; /* charged, in the process budget */
	size_t held_bytes;
	size_t held_segs;

	bool writable_signalled;
	bool goaway_sent;     /* we accept no new OPEN from the peer */
	bool goaway_received; /* the peer accepts no new OPEN from us */
	struct budget_pool *pool;
	bool peer_big_data; /* the peer takes compressed frames of FRAME_DATA_ZRAW_MAX */
	uint8_t scratch[FRAME_DATA_ZRAW_MAX];
	uint8_t inflate_buf[FRAME_DATA_ZRAW_MAX];
	struct session_stats stats;
};

static void store_drain(struct session_stream *st, size_t n);
static void note_loss(struct session *s);

/* What one path loss costs at most is what we have in flight, at most the
 * peer's session window; a few of them in a row, with nothing acknowledged
 * in between, is a flapping link; more is a peer replaying our data. */
#define RESUME_CREDIT_WINDOWS 4

static uint64_t resume_credit_max(const struct session *s)
{
	/* 64-bit: 4 windows of the largest one (HELLO_WINDOW_MAX, 1 GiB) is
	 * 2^32, which wraps to a credit of 0 in 32 bits. */
	return RESUME_CREDIT_WINDOWS * (uint64_t)s->peer.session_window;
}

/* Bytes the session holds itself count in the buffer budgets as relay
 * buffers do: a peer that never acknowledges, or sends only past a gap,
 * then makes the relays stop reading instead of the process grow. */
static void charge(struct session *s, size_t added, size_t deleted)
{
	s->charged += added;
	s->charged -= deleted;
	/* The relays push the total again with their next change; until then
	 * the grants and the store see it here. */
	memory_used += added;
	memory_used -= deleted < memory_used ? deleted : memory_used;
	relay_budget_charge(&s->account, added, deleted);
}

static void set_send(struct session_stream *st, enum send_state to)
{
	bool ok = send_next_ok[st->send][to];
	assert(ok);
	(void)ok;
	st->send = to;
}

static void set_recv(struct session_stream *st, enum recv_state to)
{
	bool ok = recv_next_ok[st->recv][to];
	assert(ok);
	(void)ok;
	st->recv = to;
}

/* The accounting every path relies on; asserted, never clamped. */
static void stream_check(const struct session_stream *st)
{
	assert(st->snd_acked <= st->snd_next && st->snd_next <= st->snd_high);
	assert((st->unacked != NULL ? evbuffer_get_length(st->unacked) : 0) + st->src_sent ==
	       st->snd_high - st->snd_acked);
	assert(st->rcv_consumed <= st->rcv_contig && st->rcv_contig <= st->rcv_high);
	assert(st->rcv_high <= st->recv_max);
	assert(st->held_lo == st->held_hi || st->held[st->held_lo]->off > st->rcv_contig);
	(void)st;
}

/* What this side has received on st, as ACK and RESUME carry it: bytes in
 * order, plus one once FIN was delivered (so an ACK can confirm FIN). */
static uint64_t recv_ackable(const struct session_stream *st)
{
	return st->rcv_contig + (st->recv >= RECV_FIN ? 1 : 0);
}

static size_t bucket_of(const struct session *s, uint32_t id)
{
	/* The peer picks its ids (they only have to increase): a keyed hash,
	 * or ids spaced by a power of two would all share one chain. */
	return (size_t)limit_hash(&id, sizeof(id)) & (s->nbuckets - 1);
}

static struct session_stream *stream_find(const struct session *s, uint32_t id)
{
	struct session_stream *st = s->buckets[bucket_of(s, id)];
	while (st != NULL && st->id != id)
		st = st->hash_next;
	return st;
}

static int table_grow(struct session *s)
{
	size_t n = s->nbuckets * 2;
	struct session_stream **nb = calloc(n, sizeof(*nb));
	if (nb == NULL)
		return WM_ERR_NOMEM;
	struct session_stream **old = s->buckets;
	size_t oldn = s->nbuckets;
	s->buckets = nb;
	s->nbuckets = n;
	for (size_t i = 0; i < oldn; i++) {
		struct session_stream *st = old[i];
		while (st != NULL) {
			struct session_stream *next = st->hash_next;
			size_t b = bucket_of(s, st->id);
			st->hash_next = nb[b];
			nb[b] = st;
			st = next;
		}
	}
	free(old);
	return WM_OK;
}

static void table_remove(struct session *s, struct session_stream *st)
{
	struct session_stream **pp = &s->buckets[bucket_of(s, st->id)];
	while (*pp != NULL && *pp != st)
		pp = &(*pp)->hash_next;
	if (*pp == st)
		*pp = st->hash_next;
	s->nstreams--;
}

static struct session_stream *stream_new(struct session *s, uint32_t id)
{
	if (s->nstreams + 1 > s->nbuckets * 2 && table_grow(s) != WM_OK)
		return NULL;
	struct session_stream *st = calloc(1, sizeof(*st));
	if (st == NULL)
		return NULL;
	st->session = s;
	st->id = id;
	st->send_max = s->peer.stream_window;
	st->recv_max = s->local.stream_window;
	size_t b = bucket_of(s, id);
	st->hash_next = s->buckets[b];
	s->buckets[b] = st;
	s->nstreams++;
	s->stats.streams_opened++;
	st->idle_since_us = s->now_us;
	st->open_copy_slot = SESSION_PATHS_MAX;
	return st;
}

static void sched_remove(struct session *s, struct session_stream *st)
{
	if (st->list == LIST_NEW)
		TAILQ_REMOVE(&s->new_list, st, sched);
	else if (st->list == LIST_OLD)
		TAILQ_REMOVE(&s->old_list, st, sched);
	st->list = LIST_NONE;
}

static void ack_unlist(struct session *s, struct session_stream *st)
{
	if (st->ack_pending) {
		TAILQ_REMOVE(&s->ack_list, st, ack_link);
		st->ack_pending = false;
	}
}

static void held_free_all(struct session *s, struct session_stream *st)
{
	for (size_t i = st->held_lo; i < st->held_hi; i++) {
		struct held_seg *e = st->held[i];
		s->held_bytes -= e->len;
		s->held_segs--;
		charge(s, 0, e->len);
		free(e);
	}
	free(st->held);
	st->held = NULL;
	st->held_lo = st->held_hi = st->held_cap = 0;
	st->held_bytes = 0;
}

/* Ends st without callbacks; the caller has told whoever needs to know.
 * Unreachable at once; freed now or by the last stream_release. */
static void stream_destroy(struct session *s, struct session_stream *st)
{
	if (st->dead)
		return;
	/* Every byte the peer sent (as far as we saw) no longer occupies the
	 * session window: the peer counted it as sent. */
	s->consumed += st->rcv_high - st->rcv_consumed;
	if (st->counted_done)
		s->ndone--;
	sched_remove(s, st);
	ack_unlist(s, st);
	if (st->open_pending) {
		TAILQ_REMOVE(&s->open_list, st, open_link);
		st->open_pending = false;
	}
	held_free_all(s, st);
	s->unacked -= (size_t)(st->snd_high - st->snd_acked);
	if (st->unacked != NULL) {
		charge(s, 0, evbuffer_get_length(st->unacked));
		evbuffer_free(st->unacked);
		st->unacked = NULL;
	}
	table_remove(s, st);
	st->dead = true;
	if (st->busy == 0)
		free(st);
}

/*
 * A stream whose FINs have both passed only drains toward its local socket.
 * The peer may already have forgotten it, so it no longer counts against
 * the stream limit: the limit then agrees on both ends (on one path the
 * peer's FIN precedes its next OPEN).
 */
static void note_fins(struct session *s, struct session_stream *st)
{
	if (st->fin_placed_once && st->recv >= RECV_FIN && !st->counted_done) {
		st->counted_done = true;
		s->ndone++;
	}
}

static size_t active_streams(const struct session *s)
{
	return s->nstreams - s->ndone;
}

static void stream_hold(struct session_stream *st)
{
	st->busy++;
}

/* Drops a hold; returns false (and frees st if last) when st ended meanwhile. */
static bool stream_release(struct session_stream *st)
{
	st->busy--;
	if (!st->dead)
		return true;
	if (st->busy == 0)
		free(st);
	return false;
}

/* Tells the user the stream failed (on_reset), then ends it. */
static void stream_fail(struct session *s, struct session_stream *st, uint32_t error)
{
	stream_hold(st);
	if (s->cb.on_reset != NULL)
		s->cb.on_reset(st, error, st->user);
	stream_destroy(s, st);
	stream_release(st);
}

static void signal_writable(struct session *s)
{
	if (s->writable_signalled || s->cb.on_writable == NULL)
		return;
	s->writable_signalled = true;
	s->cb.on_writable(s, s->arg);
}

static void queue_ctrl(struct session *s, const struct frame *f)
{
	uint8_t buf[FRAME_HEADER_LEN + 3 + 1 + FRAME_NAME_MAX];
	int n = frame_encode(f, buf, sizeof(buf));
	if (n <= 0) {
		log_error("session: cannot encode %s frame for stream %u", frame_type_name(f->type),
			  f->stream_id);
		return;
	}
	/* Reading stops long before this (tunnel backpressure); only a peer
	 * that found a way past it, or a local bug, gets here. The frame is
	 * dropped and the tunnel must close: see session_ctrl_overflowed. */
	size_t cap = SESSION_CTRL_MAX + s->nstreams * SESSION_CTRL_PER_STREAM;
	if (evbuffer_get_length(s->ctrl) + (size_t)n > cap) {
		s->ctrl_overflow = true;
		return;
	}
	evbuffer_add(s->ctrl, buf, (size_t)n);
	signal_writable(s);
}

/* Keeps a RESET for announce_state to send again. */
static void keep_reset(struct session *s, uint32_t id, uint32_t error, uint64_t final_offset)
{
	s->resets[s->reset_next].id = id;
	s->resets[s->reset_next].error = error;
	s->resets[s->reset_next].final_offset = final_offset;
	s->reset_next = (s->reset_next + 1) % RESETS_KEPT;
	if (s->nresets < RESETS_KEPT)
		s->nresets++;
}

static void queue_reset(struct session *s, uint32_t id, uint32_t error, uint64_t final_offset)
{
	struct frame f = {.type = FRAME_RESET, .stream_id = id};
	f.u.reset.error = error;
	f.u.reset.final_offset = final_offset;
	queue_ctrl(s, &f);
	keep_reset(s, id, error, final_offset);
}

/*
 * Refuses a peer's stream: OPEN_RESULT with the error. Lost with its path,
 * it would never come again (the OPEN sent again is ignored: we had the
 * first), and the opener would wait for ever; so announce_state sends it
 * again as a RESET with the same error, which ends an unanswered stream as
 * the refusal does and is ignored for one already ended.
 */
static void queue_refusal(struct session *s, uint32_t id, uint32_t error)
{
	struct frame r = {.type = FRAME_OPEN_RESULT, .stream_id = id};
	r.u.error = error;
	queue_ctrl(s, &r);
	keep_reset(s, id, error, 0);
}

static void queue_window(struct session *s, uint32_t id, uint64_t max_offset)
{
	struct frame f = {.type = FRAME_WINDOW, .stream_id = id};
	f.u.max_offset = max_offset;
	queue_ctrl(s, &f);
}

/* ACK (or RESUME) with what we have received on st. */
static void queue_ack(struct session *s, struct session_stream *st, uint8_t type)
{
	struct frame f = {.type = type, .stream_id = st->id};
	f.u.recv_offset = recv_ackable(st);
	st->ack_sent = f.u.recv_offset;
	ack_unlist(s, st);
	queue_ctrl(s, &f);
	if (type == FRAME_ACK)
		s->stats.acks_sent++;
}

/* Coalesces ACKs: at once after an eighth of the window or at FIN, else on
 * the next tick. */
static void maybe_ack(struct session *s, struct session_stream *st)
{
	uint64_t have = recv_ackable(st);
	if (have <= st->ack_sent)
		return;
	if (st->recv >= RECV_FIN || have - st->ack_sent >= s->local.stream_window / ACK_EVERY_DIV) {
		queue_ack(s, st, FRAME_ACK);
		return;
	}
	if (!st->ack_pending) {
		st->ack_pending = true;
		TAILQ_INSERT_TAIL(&s->ack_list, st, ack_link);
	}
}

uint64_t session_grant_window(uint32_t window)
{
	/* Credit already granted cannot be taken back; what can shrink is the
	 * next grant. Over half of --max-buffer the window shrinks in
	 * proportion to what is left, down to SESSION_MIN_WINDOW at the limit,
	 * so the peers of all tunnels together add little beyond the budget
	 * however many tunnels they hold. */
	if (memory_limit == 0 || memory_used <= memory_limit / 2)
		return window;
	if (memory_used >= memory_limit)
		return SESSION_MIN_WINDOW;
	double left = (double)(memory_limit - memory_used) / (double)(memory_limit / 2);
	uint64_t w = (uint64_t)((double)window * left);
	return w > SESSION_MIN_WINDOW ? w : SESSION_MIN_WINDOW;
}

/* What --max-buffer leaves beside the credit of the other sessions. */
static uint64_t credit_room(uint64_t own)
{
	uint64_t others = credit_committed - own;
	return memory_limit > others ? memory_limit - others : 0;
}

uint64_t session_credit_window(uint32_t window, uint64_t own)
{
	if (memory_limit == 0)
		return window;
	uint64_t room = credit_room(own);
	/* An even share, or half of what is free: the first tunnels cannot
	 * take it all, and one busy tunnel among idle ones still gets much. */
	uint64_t share = memory_limit / (credit_sessions > 0 ? credit_sessions : 1);
	if (share < room / 2)
		share = room / 2;
	uint64_t w = window;
	if (w > room)
		w = room;
	if (w > share)
		w = share;
	return w > SESSION_MIN_WINDOW ? w : SESSION_MIN_WINDOW;
}

uint32_t session_initial_credit(uint32_t window)
{
	if (memory_limit == 0)
		return window;
	credit_sessions++; /* as if the new session were counted already */
	uint64_t w = session_credit_window(window, 0);
	credit_sessions--;
	/* A tunnel that stays idle keeps its first credit for good: an eighth
	 * of what is free, so the tunnels that come later still get some. A
	 * busy one gets more with its first grant, a round trip later. */
	uint64_t eighth = credit_room(0) / 8;
	if (w > eighth)
		w = eighth > SESSION_MIN_WINDOW ? eighth : SESSION_MIN_WINDOW;
	return (uint32_t)w;
}

/* Brings credit_committed up to date with s after a grant or consumption. */
static void credit_sync(struct session *s)
{
	uint64_t now = s->recv_max - s->consumed;
	credit_committed = credit_committed - s->credit_counted + now;
	s->credit_counted = now;
}

/* Grants more session credit once a quarter of the window is used up, so a
 * steady sender never waits a round trip for it. */
static void maybe_grant_session(struct session *s)
{
	credit_sync(s);
	uint64_t full = s->consumed + s->local.session_window;
	assert(full >= s->recv_max); /* grants never exceed a full window */
	if (full - s->recv_max < s->local.session_window / 4)
		return;
	uint64_t window = session_grant_window(s->local.session_window);
	uint64_t committed = session_credit_window(s->local.session_window, s->credit_counted);
	if (committed < window)
		window = committed;
	uint64_t want = s->consumed + window;
	if (window < s->local.session_window)
		limit_hit(&credit_counter, "session credit shrunk: the credit granted to all "
					   "peers nears --max-buffer");
	if (want <= s->recv_max || want - s->recv_max < window / 4)
		return;
	s->recv_max = want;
	credit_sync(s);
	queue_window(s, 0, want);
}

static void maybe_grant_stream(struct session *s, struct session_stream *st)
{
	if (st->recv != RECV_OPEN)
		return;
	uint64_t want = st->rcv_consumed + s->local.stream_window;
	if (want - st->recv_max >= s->local.stream_window / 4) {
		st->recv_max = want;
		queue_window(s, st->id, want);
	}
}

static bool stream_done(const struct session_stream *st)
{
	return st->send == SEND_DONE && st->recv == RECV_DONE;
}

/* Frees st through on_closed when both directions have finished. Returns
 * true when it did. */
static bool maybe_close(struct session *s, struct session_stream *st)
{
	if (st->dead || !stream_done(st))
		return false;
	stream_hold(st);
	if (s->cb.on_closed != NULL)
		s->cb.on_closed(st, st->user);
	stream_destroy(s, st);
	stream_release(st);
	return true;
}

/* Receive side finished once FIN was delivered and everything consumed. */
static void maybe_recv_done(struct session_stream *st)
{
	if (st->recv == RECV_FIN && st->rcv_consumed == st->rcv_contig)
		set_recv(st, RECV_DONE);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * What --max-buffer leaves the resend store of s: what is free of the budget
 * beside what s holds already, but an even share of the budget at least. The
 * relays' even-share rule cannot bound it: every tunnel of a peer that never
 * acknowledges grows together, each pausing as it passes the average.
 */
static uint64_t store_budget(const struct session *s)
{
	if (memory_limit == 0)
		return UINT64_MAX;
	uint64_t share = memory_limit / (credit_sessions > 0 ? credit_sessions : 1);
	if (share < SESSION_MIN_WINDOW)
		share = SESSION_MIN_WINDOW;
	uint64_t free_room = memory_limit > memory_used ? memory_limit - memory_used : 0;
	uint64_t mine = (uint64_t)s->unacked + free_room;
	return mine > share ? mine : share;
}

/* Credit for bytes never sent before (resending needs none: they were
 * counted). Unacknowledged bytes never exceed the stream window (the
 * smaller of the peer's and ours), so the resend store stays bounded however
 * late ACKs come. */
static uint64_t stream_credit(const struct session *s, const struct session_stream *st)
{
	uint64_t limit = st->send_max;
	uint64_t by_ack = st->snd_acked + min_u64(s->peer.stream_window, s->local.stream_window);
	if (by_ack < limit)
		limit = by_ack;
	uint64_t c = limit > st->snd_high ? limit - st->snd_high : 0;
	uint64_t sc = s->send_max - s->sent;
	/* A peer that grants but never acknowledges must not grow the resend
	 * stores without bound: all streams together keep at most one session
	 * window, ours or the peer's, whichever is smaller. */
	uint64_t store_max = min_u64(s->peer.session_window, s->local.session_window);
	store_max = min_u64(store_max, store_budget(s));
	uint64_t store_room = s->unacked < store_max ? store_max - s->unacked : 0;
	return min_u64(min_u64(c, sc), store_room);
}

/* Whether the scheduler has work for st: bytes to resend, bytes with
 * credit, or a FIN. */
/* Bytes the stream has to send now: to send again, else not yet sent. */
static size_t stream_backlog(const struct session_stream *st)
{
	if (st->snd_next < st->snd_high)
		return (size_t)(st->snd_high - st->snd_next);
	return evbuffer_get_length(st->src) - st->src_sent;
}

static bool stream_ready(const struct session *s, const struct session_stream *st)
{
	if (st->send != SEND_OPEN || st->src == NULL)
		return false;
	if (st->open_pending || st->snd_next < st->snd_high)
		return true;
	size_t avail = evbuffer_get_length(st->src) - st->src_sent;
	if (avail == 0)
		return st->shutdown_requested;
	return stream_credit(s, st) > 0;
}

static void sched_activate(struct session *s, struct session_stream *st)
{
	if (st->list != LIST_NONE || !stream_ready(s, st))
		return;
	st->list = LIST_NEW;
	st->deficit = SESSION_QUANTUM;
	TAILQ_INSERT_TAIL(&s->new_list, st, sched);
	signal_writable(s);
}

static void activate_all(struct session *s)
{
	for (size_t i = 0; i < s->nbuckets; i++)
		for (struct session_stream *st = s->buckets[i]; st; st = st->hash_next)
			sched_activate(s, st);
}

struct session *session_new(enum session_role role, const struct session_params *local,
			    const struct session_params *peer, const struct session_callbacks *cb,
			    void *arg, struct compress_ctx *compress_ctx)
{
	struct session *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->role = role;
	s->local = *local;
	s->peer = *peer;
	s->cb = *cb;
	s->arg = arg;
	s->cctx = compress_ctx;
	s->codec = COMPRESS_NONE;
	s->nbuckets = BUCKETS_MIN;
	s->buckets = calloc(s->nbuckets, sizeof(*s->buckets));
	s->ctrl = evbuffer_new();
	if (s->buckets == NULL || s->ctrl == NULL) {
		free(s->buckets);
		if (s->ctrl != NULL)
			evbuffer_free(s->ctrl);
		free(s);
		return NULL;
	}
	s->next_local_id = role == SESSION_CLIENT ? 1 : 2;
	s->send_max = peer->session_window;
	s->resume_credit = resume_credit_max(s);
	/* What our hello announced: maybe less than a window (see
	 * session_initial_credit); grants bring it up to a window later. */
	s->recv_max = local->initial_credit != 0 && local->initial_credit < local->session_window
			  ? local->initial_credit
			  : local->session_window;
	budget_account_init(&s->account, NULL, NULL);
	credit_sessions++;
	credit_sync(s);
	TAILQ_INIT(&s->new_list);
	TAILQ_INIT(&s->old_list);
	TAILQ_INIT(&s->ack_list);
	TAILQ_INIT(&s->open_list);
	TAILQ_INIT(&s->dups);
	return s;
}

void session_free(struct session *s)
{
	if (s == NULL)
		return;
	for (size_t i = 0; i < s->nbuckets; i++) {
		while (s->buckets[i] != NULL)
			stream_fail(s, s->buckets[i], FRAME_ERR_TUNNEL_LOST);
	}
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++)
		free(s->paths[i]);
	struct dup_copy *d;
	while ((d = TAILQ_FIRST(&s->dups)) != NULL) {
		TAILQ_REMOVE(&s->dups, d, link);
		free(d);
	}
	free(s->buckets);
	evbuffer_free(s->ctrl);
	assert(s->charged == 0); /* every stream released its part */
	relay_budget_close(&s->account);
	credit_committed -= s->credit_counted;
	credit_sessions--;
	free(s);
}

void session_set_codec(struct session *s, enum compress_mode codec)
{
	s->codec = codec;
}

/* The frames a path may have taken with it: what we received (RESUME, so
 * the peer resends the rest), our grants and our answers to its OPENs. All
 * are idempotent at the peer. */
static void announce_state(struct session *s)
{
	s->stats.resumes++;
	queue_window(s, 0, s->recv_max);
	for (size_t i = 0; i < s->nresets; i++) {
		struct frame f = {.type = FRAME_RESET, .stream_id = s->resets[i].id};
		f.u.reset.error = s->resets[i].error;
		f.u.reset.final_offset = s->resets[i].final_offset;
		queue_ctrl(s, &f);
	}
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct session_stream *st = s->buckets[i]; st; st = st->hash_next) {
			/* The peer has not heard of it: its OPEN comes first. */
			if (st->open_pending)
				continue;
			if (!st->local && st->opened) {
				struct frame r = {.type = FRAME_OPEN_RESULT,
						  .flags = FRAME_FLAG_RESENT,
						  .stream_id = st->id};
				queue_ctrl(s, &r);
			}
			if (st->recv == RECV_OPEN)
				queue_window(s, st->id, st->recv_max);
			queue_ack(s, st, FRAME_RESUME);
		}
	}
}

struct session_path *session_path_add(struct session *s, void *owner)
{
	size_t slot = 0;
	while (slot < SESSION_PATHS_MAX && s->paths[slot] != NULL)
		slot++;
	if (slot == SESSION_PATHS_MAX)
		return NULL;
	struct session_path *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->session = s;
	p->owner = owner;
	p->slot = (unsigned)slot;
	s->paths[slot] = p;
	s->npaths++;
	s->stats.paths_added++;
	s->had_path = true;
	if (s->resume_pending) {
		s->resume_pending = false;
		announce_state(s);
	}
	s->writable_signalled = false;
	if (session_wants_write(s))
		signal_writable(s);
	return p;
}

/* Sends again from the acknowledged offset (and FIN, if it was placed). */
static void stream_rewind(struct session *s, struct session_stream *st, uint64_t to)
{
	if (st->send == SEND_WAIT || st->send == SEND_DONE)
		return;
	if (to < st->snd_acked)
		to = st->snd_acked;
	if (st->snd_next > to)
		st->snd_next = to;
	if (st->send == SEND_FIN_SENT)
		set_send(st, SEND_OPEN);
	sched_activate(s, st);
}

static void queue_open(struct session *s, struct session_stream *st, uint8_t flags)
{
	struct frame f = {.type = FRAME_OPEN, .flags = flags, .stream_id = st->id};
	f.u.open = st->target;
	queue_ctrl(s, &f);
}

void session_path_lost(struct session *s, struct session_path *path)
{
	uint64_t bit = (uint64_t)1 << path->slot;
	/* What was in flight on it is sent again: loss, as far as the streams
	 * see. (Resends alone are not: a tunnel that attaches brings RESUME.) */
	note_loss(s);
	for (size_t i = 0; i < s->nbuckets; i++) {
		for (struct session_stream *st = s->buckets[i]; st; st = st->hash_next) {
			if (st->home == path) {
				st->home = NULL;
				st->home_chosen = false;
			}
			if (st->pin == path) {
				/* Its OPEN may be lost with the path: send it again; the
				 * stream's DATA follows it on whichever path takes it. */
				st->pin = NULL;
				if (st->local && !st->established)
					queue_open(s, st, FRAME_FLAG_RESENT);
			}
			if (st->open_copy_slot == path->slot)
				st->open_copy_slot = SESSION_PATHS_MAX;
			if (st->path_mask & bit) {
				st->path_mask &= ~bit;
				stream_rewind(s, st, st->snd_acked);
			} else if (st->send == SEND_FIN_SENT) {
				/* The peer may have had all of it and closed the
				 * stream, and its ACK may be lost with the path:
				 * no RESUME comes for a stream it closed. The FIN
				 * again costs a frame; a peer that closed the
				 * stream acknowledges it (on_data). */
				stream_rewind(s, st, st->snd_next);
			}
		}
	}
	struct dup_copy *d;
	TAILQ_FOREACH(d, &s->dups, link)
	{
		if (d->origin == path->slot)
			d->origin = SESSION_PATHS_MAX; /* its original is lost: any path */
		if (d->target == path->slot)
			d->target = SESSION_PATHS_MAX;
		if (d->avoid == path->slot)
			d->avoid = SESSION_PATHS_MAX;
	}
	s->paths[path->slot] = NULL;
	s->npaths--;
	s->stats.paths_lost++;
	free(path);
	if (s->npaths > 0)
		announce_state(s);
	else
		s->resume_pending = true;
}

void *session_path_owner(const struct session_path *path)
{
	return path->owner;
}

const struct session_path_stats *session_path_get_stats(const struct session_path *path)
{
	return &path->stats;
}

size_t session_path_count(const struct session *s)
{
	return s->npaths;
}

/* DATA for a stream that no longer exists: count it against the session
 * window as sent-and-consumed, or the peer's credit would leak away. */
static void absorb_orphan_data(struct session *s, uint64_t raw_len)
{
	s->received += raw_len;
	s->consumed += raw_len;
	maybe_grant_session(s);
}

/* Whether id could have been a stream of ours or the peer's that is now
 * closed (frames for it are late, not bogus). */
static bool id_is_local(const struct session *s, uint32_t id)
{
	return (id & 1) == (s->next_local_id & 1);
}

static bool window_bit(const uint64_t *map, uint32_t id)
{
	uint32_t k = (id >> 1) % PEER_ID_WINDOW;
	return (map[k / 64] >> (k % 64)) & 1;
}

static void window_set(uint64_t *map, uint32_t id, bool on)
{
	uint32_t k = (id >> 1) % PEER_ID_WINDOW;
	uint64_t bit = (uint64_t)1 << (k % 64);
	if (on)
		map[k / 64] |= bit;
	else
		map[k / 64] &= ~bit;
}

static bool peer_bit(const struct session *s, uint32_t id)
{
	return window_bit(s->peer_seen, id);
}

/* seen: id was opened (or reset before its OPEN came); either way not
 * reset early until on_reset says so. */
static void peer_mark(struct session *s, uint32_t id, bool seen)
{
	window_set(s->peer_seen, id, seen);
	window_set(s->peer_reset_early, id, false);
	window_set(s->peer_copy_first, id, false);
}

/* Whether a peer id at or below last_peer_id is still in the window where a
 * late OPEN may arrive. */
static bool peer_in_window(const struct session *s, uint32_t id)
{
	return (s->last_peer_id - id) / 2 < PEER_ID_WINDOW;
}

/* id above last_peer_id: the ids it skipped are not opened (yet). */
static void peer_advance(struct session *s, uint32_t id)
{
	uint32_t n = 0;
	for (uint32_t x = id - 2; x > s->last_peer_id && x < id && n < PEER_ID_WINDOW; x -= 2, n++)
		peer_mark(s, x, false);
	peer_mark(s, id, true);
	s->last_peer_id = id;
}

static bool id_was_used(const struct session *s, uint32_t id)
{
	if (id == 0)
		return false;
	if (id_is_local(s, id))
		return id < s->next_local_id;
	return id <= s->last_peer_id && (!peer_in_window(s, id) || peer_bit(s, id));
}

/* A peer id whose OPEN has not come yet: frames about it that travelled on
 * a faster path (the peer's RESET, its WINDOW and RESUME after a path loss)
 * may arrive first. */
static bool id_not_yet_opened(const struct session *s, uint32_t id)
{
	if (id == 0 || id_is_local(s, id))
		return false;
	return id > s->last_peer_id || (peer_in_window(s, id) && !peer_bit(s, id));
}

static bool peer_reset_early(const struct session *s, uint32_t id)
{
	return id <= s->last_peer_id && peer_in_window(s, id) &&
	       window_bit(s->peer_reset_early, id);
}

/*
 * GOAWAY (docs/PROTOCOL.md 6.8): the sender accepts no stream above the id it
 * names. An OPEN that crossed it on the wire is refused with GOING_AWAY, so
 * its opener knows the target was never contacted.
 */
static void refuse_draining(struct session *s, uint32_t id)
{
	queue_refusal(s, id, FRAME_ERR_GOING_AWAY);
}

/* The peer's GOAWAY names the last of our streams it accepted: one of ours. */
static int on_goaway(struct session *s, const struct frame *f)
{
	if (f->stream_id != 0 &&
	    (!id_is_local(s, f->stream_id) || f->stream_id >= s->next_local_id))
		return WM_ERR_MALFORMED;
	if (s->goaway_received)
		return WM_OK;
	s->goaway_received = true;
	if (s->cb.on_goaway != NULL)
		s->cb.on_goaway(s, s->arg);
	return WM_OK;
}

static int on_open(struct session *s, const struct frame *f)
{
	/* Clients open odd ids, servers even ones (reverse forwards). */
	if (id_is_local(s, f->stream_id))
		return WM_ERR_MALFORMED;
	if (f->stream_id <= s->last_peer_id) {
		if (peer_in_window(s, f->stream_id) && !peer_bit(s, f->stream_id)) {
			/* Overtaken on another path (or its first copy was lost
			 * with one): new. */
			peer_mark(s, f->stream_id, true);
		} else if (peer_reset_early(s, f->stream_id)) {
			/* Its RESET came first: the stream is over already. */
			return WM_OK;
		} else if (f->flags & FRAME_FLAG_RESENT) {
			/* A copy sent again after a path loss: we have the first. */
			return WM_OK;
		} else if (peer_in_window(s, f->stream_id) &&
			   window_bit(s->peer_copy_first, f->stream_id)) {
			/* The first, after its copy: nothing new. */
			return WM_OK;
		} else {
			log_peer_warn("session: OPEN reuses stream id %u", f->stream_id);
			return WM_ERR_MALFORMED;
		}
	} else {
		peer_advance(s, f->stream_id);
	}
	if (f->flags & FRAME_FLAG_RESENT)
		window_set(s->peer_copy_first, f->stream_id, true);
	if (s->goaway_sent) {
		refuse_draining(s, f->stream_id);
		return WM_OK;
	}
	if (active_streams(s) >= s->local.max_streams) {
		char detail[96];
		snprintf(detail, sizeof(detail), "stream %u refused, %zu open", f->stream_id,
			 active_streams(s));
		limit_hit(&stream_limit_counter, detail);
		queue_refusal(s, f->stream_id, FRAME_ERR_STREAM_LIMIT);
		return WM_OK;
	}
	struct session_stream *st = stream_new(s, f->stream_id);
	if (st == NULL) {
		queue_refusal(s, f->stream_id, FRAME_ERR_INTERNAL);
		return WM_OK;
	}
	st->send = SEND_WAIT;
	st->established = true;
	stream_hold(st);
	int refuse = s->cb.on_open != NULL ? s->cb.on_open(s, st, &f->u.open, s->arg)
					   : FRAME_ERR_NOT_ALLOWED;
	/* on_open may already have answered (and ended the stream) itself. */
	if (refuse > 0 && !st->dead) {
		queue_refusal(s, f->stream_id, (uint32_t)refuse);
		stream_destroy(s, st);
	}
	stream_release(st);
	return WM_OK;
}

/* Hands len bytes at the contiguous offset to the user; false when the
 * callback ended the stream. */
static bool deliver(struct session *s, struct session_stream *st, const uint8_t *data, size_t len)
{
	st->rcv_contig += len;
	if (len > 0 && s->cb.on_data != NULL)
		s->cb.on_data(st, data, len, st->user);
	return !st->dead;
}

/* Makes room for one more segment at the end of st's array. */
static int held_reserve(struct session_stream *st)
{
	if (st->held_hi < st->held_cap)
		return WM_OK;
	if (st->held_lo > 0) {
		size_t n = st->held_hi - st->held_lo;
		memmove(st->held, st->held + st->held_lo, n * sizeof(*st->held));
		st->held_lo = 0;
		st->held_hi = n;
		return WM_OK;
	}
	size_t cap = st->held_cap != 0 ? st->held_cap * 2 : 16;
	struct held_seg **v = realloc(st->held, cap * sizeof(*v));
	if (v == NULL)
		return WM_ERR_NOMEM;
	st->held = v;
	st->held_cap = cap;
	return WM_OK;
}

/* Inserts [off, off+len) as a new segment at *at (an index into held);
 * *at then names the segment after it. */
static int held_piece(struct session *s, struct session_stream *st, size_t *at, uint64_t off,
		      const uint8_t *data, size_t len)
{
	if (s->held_segs >= SESSION_HELD_MAX) {
		s->held_overflow = true;
		return WM_ERR_LIMIT;
	}
	struct held_seg *e = malloc(sizeof(*e) + len);
	if (e == NULL) {
		s->held_overflow = true;
		return WM_ERR_LIMIT;
	}
	size_t lo_before = st->held_lo;
	if (held_reserve(st) != WM_OK) {
		free(e);
		s->held_overflow = true;
		return WM_ERR_LIMIT;
	}
	size_t i = *at - lo_before + st->held_lo; /* held_reserve may have compacted */
	memmove(st->held + i + 1, st->held + i, (st->held_hi - i) * sizeof(*st->held));
	st->held_hi++;
	e->off = off;
	e->len = len;
	memcpy(e->data, data, len);
	st->held[i] = e;
	*at = i + 1;
	st->held_bytes += len;
	s->held_bytes += len;
	s->held_segs++;
	charge(s, len, 0);
	if (s->held_bytes > s->stats.held_bytes_max)
		s->stats.held_bytes_max = s->held_bytes;
	return WM_OK;
}

/* The first held segment of st that ends past off. */
static size_t held_search(const struct session_stream *st, uint64_t off)
{
	size_t lo = st->held_lo;
	size_t hi = st->held_hi;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct held_seg *e = st->held[mid];
		if (e->off + e->len <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The bytes of [off, end) st has already: delivered (below rcv_contig) or
 * held. Held segments do not overlap and all start past rcv_contig. */
static uint64_t bytes_had(const struct session_stream *st, uint64_t off, uint64_t end)
{
	if (end <= st->rcv_contig)
		return end - off;
	uint64_t cur = off > st->rcv_contig ? off : st->rcv_contig;
	uint64_t had = cur - off;
	for (size_t i = held_search(st, cur); i < st->held_hi && st->held[i]->off < end; i++) {
		const struct held_seg *e = st->held[i];
		uint64_t lo = e->off > cur ? e->off : cur;
		uint64_t hi = e->off + e->len < end ? e->off + e->len : end;
		had += hi - lo;
	}
	return had;
}

/* Keeps [off, off+len) past a gap, without what is already held. */
static int hold(struct session *s, struct session_stream *st, uint64_t off, const uint8_t *data,
		size_t len)
{
	uint64_t end = off + len;
	uint64_t cur = off;
	size_t i = held_search(st, off);
	while (cur < end) {
		if (i == st->held_hi || st->held[i]->off >= end)
			return held_piece(s, st, &i, cur, data + (cur - off), (size_t)(end - cur));
		const struct held_seg *e = st->held[i];
		uint64_t e_off = e->off;
		uint64_t e_end = e->off + e->len;
		if (e_off > cur) {
			int rc =
			    held_piece(s, st, &i, cur, data + (cur - off), (size_t)(e_off - cur));
			if (rc != WM_OK)
				return rc;
			cur = e_off;
		}
		uint64_t covered_end = e_end < end ? e_end : end;
		s->stats.dup_bytes += covered_end - cur;
		cur = covered_end;
		i++;
	}
	return WM_OK;
}

/* Delivers the held segments that the contiguous offset has reached. */
static bool deliver_held(struct session *s, struct session_stream *st)
{
	while (st->held_lo < st->held_hi && st->held[st->held_lo]->off <= st->rcv_contig) {
		struct held_seg *e = st->held[st->held_lo++];
		if (st->held_lo == st->held_hi)
			st->held_lo = st->held_hi = 0;
		st->held_bytes -= e->len;
		s->held_bytes -= e->len;
		s->held_segs--;
		charge(s, 0, e->len);
		uint64_t e_end = e->off + e->len;
		bool alive = true;
		if (e_end > st->rcv_contig) {
			size_t skip = (size_t)(st->rcv_contig - e->off);
			s->stats.dup_bytes += skip;
			alive = deliver(s, st, e->data + skip, e->len - skip);
		} else {
			s->stats.dup_bytes += e->len;
		}
		free(e);
		if (!alive)
			return false;
	}
	return true;
}

/* After new bytes: FIN delivery, ACK, close. st is held by the caller. */
static void after_receive(struct session *s, struct session_stream *st)
{
	if (st->dead)
		return;
	if (st->recv == RECV_SIZE_KNOWN && st->rcv_contig == st->fin_offset) {
		set_recv(st, RECV_FIN);
		note_fins(s, st);
		if (s->cb.on_fin != NULL)
			s->cb.on_fin(st, st->user);
		if (st->dead)
			return;
		maybe_recv_done(st);
	}
	maybe_ack(s, st);
	stream_check(st);
}

/*
 * The peer sends a stream's DATA (or FIN) only after its OPEN_RESULT 0, but
 * OPEN_RESULT leaves through the control queue on whichever path comes first
 * and the DATA on the path placement picks, so on another path the DATA may
 * arrive first. It is the answer, then: the front end has to reply (SOCKS,
 * HTTP CONNECT) before the target's first byte reaches the local socket,
 * which otherwise read the target's greeting where the reply belongs. False
 * when the callback ended the stream.
 */
static bool imply_open_result(struct session *s, struct session_stream *st)
{
	log_debug("session: stream %u: DATA before its OPEN_RESULT (another path): taken as "
		  "the answer",
		  st->id);
	st->opened = true;
	st->result_implied = true;
	st->established = true;
	st->pin = NULL;
	if (s->cb.on_open_result != NULL)
		s->cb.on_open_result(st, st->user);
	return !st->dead;
}

static int on_data(struct session *s, const struct frame *f)
{
	struct session_stream *st = stream_find(s, f->stream_id);
	uint64_t off = f->u.data.offset;
	uint64_t raw_len = f->u.data.raw_len;
	uint64_t end = off + raw_len;
	bool fin = (f->flags & FRAME_FLAG_FIN) != 0;

	if (end < off)
		return WM_ERR_MALFORMED;
	if (st == NULL) {
		if (!id_was_used(s, f->stream_id)) {
			log_peer_warn("session: DATA for stream %u that was never opened",
				      f->stream_id);
			return WM_ERR_MALFORMED;
		}
		/* Its RESET came first and counted its bytes (on_reset). */
		if (peer_reset_early(s, f->stream_id))
			return WM_OK;
		if (s->received + raw_len > s->recv_max)
			return WM_ERR_FLOW;
		absorb_orphan_data(s, raw_len);
		/* A FIN sent again to a stream we have closed: we had it (a clean
		 * close needs it) or reset the stream; either way the peer may
		 * stop resending it. */
		if (fin) {
			struct frame a = {.type = FRAME_ACK, .stream_id = f->stream_id};
			a.u.recv_offset = end + 1;
			queue_ctrl(s, &a);
			s->stats.acks_sent++;
		}
		return WM_OK;
	}
	if (st->recv != RECV_OPEN && (end > st->fin_offset || (fin && end != st->fin_offset))) {
		log_peer_warn("session: DATA beyond FIN on stream %u", st->id);
		return WM_ERR_MALFORMED;
	}
	if (fin && st->recv == RECV_OPEN && end < st->rcv_high) {
		log_peer_warn("session: FIN on stream %u below data already sent", st->id);
		return WM_ERR_MALFORMED;
	}
	if (end > st->recv_max) {
		log_peer_warn("session: peer exceeded the window of stream %u", st->id);
		return WM_ERR_FLOW;
	}
	if (end > st->rcv_high) {
		uint64_t grow = end - st->rcv_high;
		if (s->received + grow > s->recv_max) {
			log_peer_warn("session: peer exceeded the session window (%llu > %llu)",
				      (unsigned long long)(s->received + grow),
				      (unsigned long long)s->recv_max);
			return WM_ERR_FLOW;
		}
		s->received += grow;
		st->rcv_high = end;
	}
	if (fin && st->recv == RECV_OPEN) {
		st->fin_offset = end;
		set_recv(st, RECV_SIZE_KNOWN);
	}
	s->stats.raw_bytes_received += raw_len;
	s->stats.payload_bytes_received += f->u.data.payload_len;
	uint64_t dup_before_frame = s->stats.dup_bytes;

	stream_hold(st);
	if (st->local && !st->opened && !imply_open_result(s, st)) {
		stream_release(st);
		return WM_OK;
	}
	uint64_t had = bytes_had(st, off, end);
	if (had == raw_len && raw_len > 0) {
		/* Nothing new (a copy sent again, or held already past a gap):
		 * no need to inflate it. A peer repeating one 64 KiB frame of
		 * zeros past a gap cost a 64 KiB inflate per ~100 wire bytes,
		 * held or not. */
		s->stats.dup_bytes += raw_len;
		s->stats.dup_frames++;
	} else if (raw_len > 0) {
		const uint8_t *data = f->u.data.payload;
		uint8_t comp = f->flags & (FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB);
		if (comp != 0) {
			/* A frame that brings one new byte among 64 KiB we have
			 * is inflated whole: the bytes we had may come to twice
			 * the new bytes received plus an allowance (session.h). */
			uint64_t fresh = s->stats.raw_bytes_received - had;
			if (s->stats.dup_inflated_bytes + had >
			    fresh * SESSION_DUP_INFLATE_SHARE + SESSION_DUP_INFLATE_ALLOWANCE) {
				log_peer_warn("session: stream %u: compressed DATA over the "
					      "duplicate budget: %llu bytes inflated again for "
					      "%llu new, %llu more in this frame",
					      st->id,
					      (unsigned long long)s->stats.dup_inflated_bytes,
					      (unsigned long long)(fresh - (raw_len - had)),
					      (unsigned long long)had);
				s->stats.raw_bytes_received -= raw_len; /* refused */
				stream_release(st);
				return WM_ERR_FLOW;
			}
			s->stats.dup_inflated_bytes += had;
			int rc = decompress_frame(s->cctx, comp, f->u.data.payload,
						  f->u.data.payload_len, s->inflate_buf, raw_len);
			if (rc != WM_OK) {
				log_peer_warn("session: stream %u: corrupt compressed DATA",
					      st->id);
				stream_release(st);
				return WM_ERR_MALFORMED;
			}
			data = s->inflate_buf;
		}
		if (off <= st->rcv_contig) {
			size_t skip = (size_t)(st->rcv_contig - off);
			s->stats.dup_bytes += skip;
			/* The callbacks may reset or close the stream (a failed
			 * local write, a consumption report that completes it). */
			if (deliver(s, st, data + skip, (size_t)raw_len - skip))
				deliver_held(s, st);
		} else {
			uint64_t dup_before = s->stats.dup_bytes;
			int rc = hold(s, st, off, data, (size_t)raw_len);
			if (s->stats.dup_bytes - dup_before == raw_len)
				s->stats.dup_frames++;
			if (rc != WM_OK) {
				stream_release(st);
				return rc;
			}
		}
	}
	/* raw_bytes_received counts each byte once: copies (duplication) and
	 * resends that brought nothing new are in dup_bytes instead. Every dup
	 * byte was counted in raw when it first came, so this never goes below
	 * the bytes received. */
	s->stats.raw_bytes_received -= s->stats.dup_bytes - dup_before_frame;
	after_receive(s, st);
	if (stream_release(st))
		maybe_close(s, st);
	return WM_OK;
}

static int on_window(struct session *s, const struct frame *f)
{
	if (f->stream_id == 0) {
		if (f->u.max_offset > s->send_max) {
			bool was_blocked = s->send_max == s->sent;
			s->send_max = f->u.max_offset;
			/* Every stream may have been waiting on the session. */
			if (was_blocked)
				activate_all(s);
		}
		return WM_OK;
	}
	struct session_stream *st = stream_find(s, f->stream_id);
	if (st == NULL) {
		/* Before its OPEN: the peer's window for a stream it just opened
		 * is the initial one, which the OPEN implies. */
		bool late_or_early =
		    id_was_used(s, f->stream_id) || id_not_yet_opened(s, f->stream_id);
		return late_or_early ? WM_OK : WM_ERR_MALFORMED;
	}
	if (f->u.max_offset > st->send_max) {
		st->send_max = f->u.max_offset;
		sched_activate(s, st);
	}
	return WM_OK;
}

/* A RESUME's "send again from here", within the peer's resume credit: over
 * it the RESUME counts as an ACK only. Nothing is lost by refusing: what a
 * path of ours took with it is sent again when we see the path go. */
static void resume_rewind(struct session *s, struct session_stream *st, uint64_t to)
{
	if (to < st->snd_acked)
		to = st->snd_acked;
	/* Nothing but (maybe) the FIN again: costs a frame. */
	uint64_t n = st->snd_next > to ? st->snd_next - to : 0;
	if (n > s->resume_credit) {
		if (s->stats.resumes_refused++ == 0)
			log_peer_warn("session: the peer asks for more data again than it "
				      "acknowledges (%llu bytes on stream %u); its RESUMEs "
				      "count as ACKs until it catches up",
				      (unsigned long long)n, st->id);
		return;
	}
	s->resume_credit -= n;
	stream_rewind(s, st, to);
}

/* ACK frees what the peer has; RESUME (after a path came or went) also
 * means "send again from here". */
static int on_ack(struct session *s, const struct frame *f)
{
	bool resume = f->type == FRAME_RESUME;
	struct session_stream *st = stream_find(s, f->stream_id);
	if (resume)
		s->stats.resumes_received++;
	else
		s->stats.acks_received++;
	if (st == NULL) {
		/* Before its OPEN (a RESUME after a path loss): nothing of ours
		 * on it can have been received yet. */
		bool ok = id_was_used(s, f->stream_id) ||
			  (id_not_yet_opened(s, f->stream_id) && f->u.recv_offset == 0);
		return ok ? WM_OK : WM_ERR_MALFORMED;
	}
	uint64_t x = f->u.recv_offset;
	if (x > st->snd_high + (st->fin_placed_once ? 1 : 0)) {
		log_peer_warn("session: stream %u acknowledges %llu, only %llu sent", st->id,
			      (unsigned long long)x, (unsigned long long)st->snd_high);
		return WM_ERR_MALFORMED;
	}
	st->established = true;
	st->pin = NULL;
	bool fin_acked = st->fin_placed_once && x == st->snd_high + 1;
	uint64_t bytes = fin_acked ? st->snd_high : x;
	if (bytes > st->snd_acked) {
		size_t n = (size_t)(bytes - st->snd_acked);
		store_drain(st, n);
		s->unacked -= n;
		st->snd_acked = bytes;
		s->resume_credit += n;
		if (s->resume_credit > resume_credit_max(s))
			s->resume_credit = resume_credit_max(s);
		if (st->snd_next < bytes)
			st->snd_next = bytes;
	}
	if (st->snd_acked == st->snd_high && (fin_acked || !st->fin_placed_once))
		st->path_mask = 0;
	if (fin_acked && st->send != SEND_DONE) {
		set_send(st, SEND_DONE);
		sched_remove(s, st);
	} else if (resume) {
		resume_rewind(s, st, bytes);
	}
	stream_check(st);
	sched_activate(s, st);
	maybe_close(s, st);
	return WM_OK;
}

/*
 * The peer reset a stream whose OPEN is still on its way on another path:
 * the id counts as used (its OPEN will open nothing), and the bytes it sent
 * count against the session window now, as the peer counted them, and are
 * given back at once; the DATA that follows is dropped without counting.
 */
static int reset_before_open(struct session *s, const struct frame *f)
{
	uint64_t final = f->u.reset.final_offset;
	/* No WINDOW can have grown the stream's window before its OPEN. */
	if (final > s->local.stream_window || s->received + final > s->recv_max)
		return WM_ERR_FLOW;
	if (f->stream_id > s->last_peer_id)
		peer_advance(s, f->stream_id);
	else
		peer_mark(s, f->stream_id, true);
	window_set(s->peer_reset_early, f->stream_id, true);
	s->received += final;
	s->consumed += final;
	maybe_grant_session(s);
	return WM_OK;
}

static int on_reset(struct session *s, const struct frame *f)
{
	struct session_stream *st = stream_find(s, f->stream_id);
	if (st == NULL && id_not_yet_opened(s, f->stream_id))
		return reset_before_open(s, f);
	if (st == NULL)
		return id_was_used(s, f->stream_id) ? WM_OK : WM_ERR_MALFORMED;
	uint64_t final = f->u.reset.final_offset;
	/* Bytes up to the final size may never come (lost with a path): they
	 * count against the session window as the peer counted them. */
	if (final > st->rcv_high) {
		if (final > st->recv_max || s->received + (final - st->rcv_high) > s->recv_max)
			return WM_ERR_FLOW;
		s->received += final - st->rcv_high;
		st->rcv_high = final;
	} else if (final < st->rcv_high) {
		log_debug("session: stream %u RESET final offset %llu, received %llu", st->id,
			  (unsigned long long) final, (unsigned long long)st->rcv_high);
	}
	stream_fail(s, st, f->u.reset.error);
	maybe_grant_session(s);
	return WM_OK;
}

static int on_open_result(struct session *s, const struct frame *f)
{
	if (!id_is_local(s, f->stream_id))
		return WM_ERR_MALFORMED;
	struct session_stream *st = stream_find(s, f->stream_id);
	if (st == NULL)
		return id_was_used(s, f->stream_id) ? WM_OK : WM_ERR_MALFORMED;
	/* After DATA or a RESENT copy stood for it, the original can only be
	 * 0: DATA follows nothing else, and only answers 0 are sent again. */
	if (st->opened)
		return (f->flags & FRAME_FLAG_RESENT) ||
			       (st->result_implied && f->u.error == FRAME_ERR_NONE)
			   ? WM_OK
			   : WM_ERR_MALFORMED;
	st->opened = true;
	st->result_implied = (f->flags & FRAME_FLAG_RESENT) != 0;
	st->established = true;
	st->pin = NULL;
	if (f->u.error != FRAME_ERR_NONE) {
		stream_fail(s, st, f->u.error);
		maybe_grant_session(s);
		return WM_OK;
	}
	if (s->cb.on_open_result != NULL)
		s->cb.on_open_result(st, st->user);
	return WM_OK;
}

/* The one place frames are dispatched. */
static int dispatch_frame(struct session *s, const struct frame *f)
{
	switch (f->type) {
	case FRAME_OPEN:
		return on_open(s, f);
	case FRAME_OPEN_RESULT:
		return on_open_result(s, f);
	case FRAME_DATA:
		return on_data(s, f);
	case FRAME_WINDOW:
		return on_window(s, f);
	case FRAME_ACK:
	case FRAME_RESUME:
		return on_ack(s, f);
	case FRAME_RESET:
		return on_reset(s, f);
	case FRAME_LISTEN:
	case FRAME_LISTEN_RESULT:
		/* Reverse-forward requests are the owner's business. */
		if (s->cb.on_control == NULL)
			return WM_ERR_MALFORMED;
		return s->cb.on_control(s, f, s->arg);
	case FRAME_GOAWAY:
		return on_goaway(s, f);
	default:
		return WM_ERR_MALFORMED;
	}
}

int session_on_frame(struct session *s, struct session_path *path, const struct frame *f)
{
	(void)path; /* any frame may arrive on any path */
	int rc = dispatch_frame(s, f);
	if (rc == WM_OK && (s->ctrl_overflow || s->held_overflow))
		return WM_ERR_LIMIT;
	return rc;
}

void session_tick(struct session *s)
{
	struct session_stream *st;
	while ((st = TAILQ_FIRST(&s->ack_list)) != NULL)
		queue_ack(s, st, FRAME_ACK);
	/* Deferrals end here (stream->defer_tick): a path that left a stream
	 * for a better one that never pulled gets it now. */
	s->ticks++;
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		if (s->paths[i] != NULL && s->paths[i]->held_back) {
			s->writable_signalled = false;
			signal_writable(s);
			break;
		}
	}
}

/* Loss on the session's paths: a retransmit counter rose or data went out
 * again. --duplicate auto duplicates for PLACEMENT_LOSS_HOLD_US after it. */
static void note_loss(struct session *s)
{
	s->loss_seen = true;
	s->loss_seen_us = s->now_us;
	s->stats.loss_events++;
}

void session_path_set_info(struct session_path *path, const struct placement_info *pi)
{
	struct session *s = path->session;
	if (path->has_info &&
	    (pi->retrans > path->info.retrans || pi->rcv_ooo > path->info.rcv_ooo)) {
		if (pi->now_us > s->now_us)
			s->now_us = pi->now_us;
		note_loss(s);
	}
	path->info = *pi;
	path->has_info = true;
	path->placed = 0;
	if (pi->now_us > s->now_us)
		s->now_us = pi->now_us;
	if (placement_queueing(pi)) {
		s->queue_seen = true;
		s->queue_seen_us = s->now_us;
	}
}

bool session_path_held_back(const struct session_path *path)
{
	return path->held_back;
}

void session_set_peer_big_data(struct session *s, bool yes)
{
	s->peer_big_data = yes;
}

void session_set_queue_cap(struct session *s, bool on)
{
	s->queue_cap = on;
}

void session_set_duplicate(struct session *s, enum placement_dup mode)
{
	s->dup_mode = mode;
}

bool session_duplicating(const struct session *s)
{
	if (s->npaths < 2 || s->dup_mode == PLACEMENT_DUP_OFF)
		return false;
	if (s->dup_mode == PLACEMENT_DUP_ON)
		return true;
	return s->loss_seen && s->now_us - s->loss_seen_us <= PLACEMENT_LOSS_HOLD_US;
}

/* Whether placement may judge q now: it has a snapshot that is not stale. */
static bool path_known(const struct session *s, const struct session_path *q)
{
	return q->has_info && s->now_us - q->info.now_us <= PLACEMENT_STALE_US;
}

/* OPENs leave in id order, on whatever path: the peer accepts one that
 * another path's OPEN overtook within PEER_ID_WINDOW ids, and placement
 * holds a stream back for milliseconds, not for a thousand OPENs. */
static bool open_allowed(const struct session *s, const struct session_stream *st)
{
	return TAILQ_FIRST(&s->open_list) == st;
}

/* Whether st waited for a better path long enough: PLACEMENT_DEFER_MAX_US,
 * or a session_tick passed. */
static bool leave_for_better_expired(const struct session *s, const struct session_stream *st)
{
	return st->defer_tick != s->ticks ||
	       s->now_us - st->defer_since_us >= PLACEMENT_DEFER_MAX_US;
}

/* Whether path should leave fresh stream st to another path that would get
 * it to the peer clearly sooner and has room for it. Not for long: after
 * PLACEMENT_DEFER_MAX_US, or once a session_tick passed, the path that
 * pulls takes it. */
static bool leave_for_better(struct session *s, struct session_path *path,
			     struct session_stream *st)
{
	if (s->npaths < 2 || !path_known(s, path) || st->pin != NULL)
		return false;
	if (st->deferred && leave_for_better_expired(s, st))
		return false;
	size_t len = evbuffer_get_length(st->src) - st->src_sent;
	if (st->snd_next < st->snd_high)
		len = (size_t)(st->snd_high - st->snd_next);
	if (len > SESSION_QUANTUM)
		len = SESSION_QUANTUM;
	/* Its OPEN pins the stream's DATA to the path for a round trip, and a
	 * stream opens before its first bytes are read: judged by the OPEN
	 * alone, a tunnel that BBR's long-term estimate paces at 35 kbit/s
	 * looked as good as a warm one, and the 10 KB request that followed
	 * took it (satellite rr 1.1-2.4 s). */
	if (st->open_pending && len < SESSION_QUANTUM)
		len = SESSION_QUANTUM;
	len += FRAME_DATA_OVERHEAD_MAX;
	uint64_t mine = placement_eta_us(&path->info, path->placed, len);
	bool better = false;
	for (size_t i = 0; i < SESSION_PATHS_MAX && !better; i++) {
		const struct session_path *q = s->paths[i];
		if (q == NULL || q == path || !path_known(s, q))
			continue;
		if (placement_room(&q->info, q->placed) < len)
			continue;
		better = placement_clearly_better(placement_eta_us(&q->info, q->placed, len), mine);
	}
	if (!better)
		return false;
	if (!st->deferred) {
		st->deferred = true;
		st->defer_since_us = s->now_us;
		st->defer_tick = s->ticks;
		s->stats.placement_deferrals++;
		/* The owner wakes its other paths; the better one pulls. */
		signal_writable(s);
	}
	path->stats.deferred++;
	return true;
}

/* When len bytes placed on q now would have arrived: its rate and what
 * already waits on it (its queues and this session's placed bytes), so a
 * path that rates fastest but carries the other bulk streams' backlog is
 * not taken for an idle one. */
static uint64_t bulk_eta(const struct session_path *q, uint64_t len)
{
	struct placement_info pi = q->info;
	/* Not the holes its peer waits on: a path that carries bulk at 1 %
	 * loss nearly always has one, each repaired within a round trip. */
	pi.sacked = 0;
	/* A path in STARTUP paces at 2.89 times its estimate only until it
	 * finds the link; a transfer lives at the estimate. */
	if (pi.startup && pi.btl_bw != 0 && (pi.pacing_rate == 0 || pi.pacing_rate > pi.btl_bw))
		pi.pacing_rate = pi.btl_bw;
	return placement_eta_us(&pi, q->placed, (size_t)len);
}

/* Bytes a bulk stream's home is judged by: SESSION_BULK_SENT, or the
 * largest bandwidth-delay product a path's BBR estimate gives if that is
 * more (capped by SESSION_BULK_HORIZON_MAX): at 600 ms the next 256 KiB
 * take a tenth of the time the one-way delay does, and rates that differ
 * twofold looked alike by the fifth they must differ by. */
static uint64_t bulk_horizon(const struct session *s)
{
	uint64_t len = SESSION_BULK_SENT;
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		const struct session_path *q = s->paths[i];
		if (q == NULL || !path_known(s, q) || q->info.btl_bw == 0)
			continue;
		uint64_t bdp = placement_bdp_share(q->info.btl_bw, q->info.min_rtt_us, 100u);
		if (bdp > len)
			len = bdp;
	}
	return len < SESSION_BULK_HORIZON_MAX ? len : SESSION_BULK_HORIZON_MAX;
}

/* Where a stream that turns bulk should live: the path that gets its next
 * bulk_horizon bytes there soonest (bulk_eta), by a fifth of the time at
 * least (a quarter more rate on idle paths), else cur. A new stream's
 * first small burst goes to whichever path gets it there soonest, often a
 * tunnel that never carried bulk data, or one still in STARTUP (whose
 * pace of 2.89 times a low estimate made it look fastest): left there, a
 * download ramps up a cold BBR (seconds at 600 ms per round) and
 * overshoots the link's buffer while a warm tunnel idles (satellite warm
 * random down 11-15 against 17 Mbit/s; echoes beside a download 2-2.5 s).
 * Judged by rate alone, every bulk stream piled onto the one tunnel with
 * the best rate and waited behind the others' backlog, for good (the move
 * is made once). Unknown paths are not picked. */
static struct session_path *bulk_home(const struct session *s, struct session_path *cur)
{
	uint64_t len = bulk_horizon(s);
	struct session_path *best = cur;
	uint64_t best_eta = cur != NULL && path_known(s, cur) ? bulk_eta(cur, len) : UINT64_MAX;
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		struct session_path *q = s->paths[i];
		if (q == NULL || q == cur || !path_known(s, q))
			continue;
		uint64_t e = bulk_eta(q, len);
		if (e < best_eta - best_eta / 5) {
			best = q;
			best_eta = e;
		}
	}
	return best;
}

/* Whether the raw bytes just placed for st from offset off were an
 * interactive burst: small (SESSION_DUP_FRAME_MAX), all the stream had to
 * say (a small slice of a backlog, where credit or room ran short, is bulk),
 * and after a pause or the stream's first (a bulk source slower than the
 * tunnel drains it too, but without pausing). */
static bool interactive_burst(const struct session *s, const struct session_stream *st, size_t raw,
			      uint64_t off)
{
	if (raw > SESSION_DUP_FRAME_MAX)
		return false;
	if (evbuffer_get_length(st->src) - st->src_sent > 0 || st->snd_next < st->snd_high)
		return false;
	return off == 0 || s->now_us - st->idle_since_us >= PLACEMENT_IDLE_US;
}

/* Whether bulk streams keep to PLACEMENT_QUEUE_CAP_PCT of the paths'
 * bandwidth-delay product now (queue_room says how much): --queue-cap on,
 * and a stream exchanged within SESSION_INTERACTIVE_HOLD_US. */
static bool queue_capped(const struct session *s)
{
	return s->queue_cap && s->interactive_seen &&
	       s->now_us - s->interactive_us <= SESSION_INTERACTIVE_HOLD_US;
}

/*
 * What bulk streams may add on any path so that what all paths have in
 * flight and waiting stays within PLACEMENT_QUEUE_CAP_PCT of the
 * bottleneck's bandwidth-delay product; UINT64_MAX while no path is past
 * start-up or none showed a queue building within SESSION_QUEUE_MEMORY_US
 * (placement_queueing: a download its sender's CPU limits builds none; but
 * once the cap holds, the queue it leaves is too small to show, and judged
 * by the moment BBR's next probe built one before the cap came back, a
 * quarter RTT every eight rounds: satellite echoes at 720-750 ms with the
 * cap on). The tunnels share one bottleneck, so
 * its rate is the best BBR estimate of any path (the bulk's own path's among
 * them, so the cap never holds a download below what it delivers: BBR's
 * probes still raise it by a tenth a cycle), or, when several paths past
 * start-up carry data at once, what they deliver added up (each path's in
 * flight over its RTT, at most its estimate): each finds only its share, and
 * the best share alone held two busy tunnels to 55 % of the link
 * (test_session_paths_queue_cap_sums_busy_paths). The cap holds for them all
 * together: a tunnel still in STARTUP after carrying app-limited transfers
 * (its own estimate half the link's, its gain 2.89) filled the satellite
 * link's buffer to hundreds of drops in one round.
 */
static uint64_t queue_room(const struct session *s)
{
	uint64_t bw = 0;
	uint64_t busy_bw = 0;
	uint32_t rtt = 0;
	uint64_t backlog = 0;
	bool found = false;
	bool queue = false;
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		const struct session_path *q = s->paths[i];
		if (q == NULL || !path_known(s, q))
			continue;
		found = found || (!q->info.startup && q->info.btl_bw != 0);
		queue = queue || placement_queueing(&q->info);
		if (q->info.btl_bw > bw)
			bw = q->info.btl_bw;
		if (!q->info.startup && q->info.min_rtt_us != 0) {
			/* What it delivers now, at most its estimate: a
			 * tunnel with a few echoes in flight adds little. */
			uint64_t bytes = (uint64_t)q->info.in_flight * q->info.mss;
			uint64_t now_bw = bytes < UINT64_MAX / 1000000u
					      ? bytes * 1000000u / q->info.min_rtt_us
					      : UINT64_MAX;
			busy_bw += now_bw < q->info.btl_bw ? now_bw : q->info.btl_bw;
		}
		if (q->info.min_rtt_us != 0 && (rtt == 0 || q->info.min_rtt_us < rtt))
			rtt = q->info.min_rtt_us;
		backlog += placement_backlog(&q->info, q->placed);
	}
	if (busy_bw > bw)
		bw = busy_bw;
	queue = queue || (s->queue_seen && s->now_us - s->queue_seen_us <= SESSION_QUEUE_MEMORY_US);
	if (!found || !queue || rtt == 0)
		return UINT64_MAX;
	uint64_t limit = placement_bdp_share(bw, rtt, PLACEMENT_QUEUE_CAP_PCT);
	return limit > backlog ? limit - backlog : 0;
}

/* DATA bytes path may take from bulk streams in this fill: its room, once
 * placement knows it and has another path to give the rest to. */
static uint64_t bulk_cap(struct session *s, const struct session_path *path)
{
	if (s->npaths < 2 || !path_known(s, path))
		return UINT64_MAX;
	uint64_t room = placement_room(&path->info, path->placed);
	if (queue_capped(s)) {
		uint64_t q = queue_room(s);
		if (q < room) {
			room = q;
			s->stats.queue_capped++;
		}
	}
	return room;
}

/* Bytes q's open congestion window takes before what waits on it fills it:
 * what it sends now, without queueing. */
static uint64_t open_window(const struct session_path *q, size_t used)
{
	uint64_t open = placement_cwnd_room(&q->info);
	uint64_t waiting = (uint64_t)q->info.queued + q->info.notsent + q->placed + used;
	return open > waiting ? open - waiting : 0;
}

/* Whether another path than the home of st may take st's bulk now: both are
 * still in start-up (placement_info.startup) and the home's window is full,
 * path's open (used: what this fill put on it already). Paths ramp up one
 * round trip at a time whether or not they carry much, so a fresh stream
 * whose home alone starts from 10 segments at 600 ms takes 8 rounds to send
 * 3 MB; spread over the start-up of four tunnels, four windows grow at once.
 * Only cold paths take it (SESSION_OVERFLOW_COLD_BYTES). Once either leaves
 * start-up the stream keeps to its home (see
 * session_stream.home for why: bulk spread over tunnels that found their
 * rate queues against itself), and the interactive streams' tunnels, which
 * never carried bulk, take nothing while the home cruises. */
static bool overflow_ok(const struct session *s, const struct session_path *path,
			const struct session_stream *st, size_t used)
{
	const struct session_path *home = st->home;
	if (home == NULL || home == path || st->pin != NULL || !path_known(s, path) ||
	    !path_known(s, home) || !path->info.startup || !home->info.startup ||
	    path->info.bytes_acked >= SESSION_OVERFLOW_COLD_BYTES)
		return false;
	return open_window(home, 0) < FILL_MIN_ROOM && open_window(path, used) >= FILL_MIN_ROOM;
}

/* Whether a path other than st's home could take its overflow now. */
static bool overflow_possible(const struct session *s, const struct session_stream *st)
{
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		if (s->paths[i] != NULL && overflow_ok(s, s->paths[i], st, 0))
			return true;
	}
	return false;
}

/* Places st's OPEN in buf; returns bytes written, 0 if it does not fit. */
static size_t put_open(struct session *s, struct session_path *path, struct session_stream *st,
		       uint8_t *buf, size_t room)
{
	struct frame f = {.type = FRAME_OPEN, .stream_id = st->id};
	f.u.open = st->target;
	/* Room for the OPEN and a useful piece of DATA, or wait for the next
	 * record. */
	if (room < FILL_MIN_ROOM + FRAME_HEADER_LEN + 4 + FRAME_NAME_MAX)
		return 0;
	int n = frame_encode(&f, buf, room);
	if (n <= 0)
		return 0;
	st->open_pending = false;
	TAILQ_REMOVE(&s->open_list, st, open_link);
	/* Its DATA follows on this path until the peer has seen the OPEN. */
	if (!st->established)
		st->pin = path;
	path->stats.opens++;
	return (size_t)n;
}

/* The path other than origin (and avoid) where len bytes placed now arrive soonest;
 * SESSION_PATHS_MAX when placement knows none. The copy is there to beat
 * the original's loss or wait: the first path to pull was often one whose
 * window was full (BBR's PROBE_RTT) while another idled. */
static unsigned dup_target(const struct session *s, const struct session_path *origin,
			   unsigned avoid, size_t len)
{
	unsigned best = SESSION_PATHS_MAX;
	uint64_t best_eta = UINT64_MAX;
	for (size_t i = 0; i < SESSION_PATHS_MAX; i++) {
		const struct session_path *q = s->paths[i];
		if (q == NULL || q == origin || q->slot == avoid || !path_known(s, q))
			continue;
		uint64_t e = placement_eta_us(&q->info, q->placed, len);
		if (e < best_eta) {
			best = q->slot;
			best_eta = e;
		}
	}
	return best;
}

/* Whether path should leave copy d to its target, which is still there and
 * has not had its time to pull yet. */
static bool dup_elsewhere(const struct session *s, const struct session_path *path,
			  const struct dup_copy *d)
{
	if (d->target == SESSION_PATHS_MAX || d->target == path->slot ||
	    s->paths[d->target] == NULL)
		return false;
	return d->tick == s->ticks && s->now_us - d->since_us < PLACEMENT_DEFER_MAX_US;
}

/* Queues a copy of frames (len bytes) for target; false when the queue is
 * full or memory short. */
static bool dup_queue(struct session *s, const struct session_path *path,
		      const struct session_stream *st, const uint8_t *frames, size_t len,
		      size_t raw, bool has_open, bool follows, unsigned target, unsigned avoid)
{
	if (s->ndups >= SESSION_DUP_QUEUE_MAX)
		return false;
	struct dup_copy *d = malloc(sizeof(*d) + len);
	if (d == NULL)
		return false;
	d->id = st->id;
	d->end = st->snd_next;
	d->origin = path->slot;
	d->target = target;
	d->avoid = avoid;
	d->since_us = s->now_us;
	d->tick = s->ticks;
	d->raw = raw;
	d->len = len;
	d->has_open = has_open;
	d->follows_open = follows;
	memcpy(d->frame, frames, len);
	TAILQ_INSERT_TAIL(&s->dups, d, link);
	s->ndups++;
	signal_writable(s);
	return true;
}

/*
 * Keeps a copy of the frames just written for st (frames: open_len bytes of
 * its OPEN, if it went now, then data_len bytes of DATA carrying raw payload
 * bytes) for another path, when they are small, all that an interactive
 * stream had to send, and the session duplicates now.
 */
static void maybe_duplicate(struct session *s, struct session_path *path, struct session_stream *st,
			    uint8_t *frames, size_t open_len, size_t data_len, size_t raw,
			    uint64_t off)
{
	if (!session_duplicating(s) || !interactive_burst(s, st, raw, off))
		return;
	/* One near its end could see the copy after closing (orphan DATA,
	 * counted in the session window as if new). */
	if (st->shutdown_requested || (data_len > 0 && (frames[open_len + 1] & FRAME_FLAG_FIN)))
		return;
	/* What duplication may cost at most: SESSION_DUP_SHARE of the DATA
	 * sent, plus SESSION_DUP_ALLOWANCE. */
	if (s->stats.dup_wire_bytes + open_len + data_len >
	    s->stats.payload_bytes_sent / SESSION_DUP_SHARE + SESSION_DUP_ALLOWANCE)
		return;
	/* A new stream's copy carries its OPEN too, both OPENs marked RESENT,
	 * so whichever arrives second is ignored (docs/PROTOCOL.md section 7). */
	bool follows = false;
	if (open_len == 0 && (raw == 0 || !st->established || st->pin != NULL)) {
		/* The peer may not know the stream yet: a copy of its DATA alone
		 * could arrive before its OPEN, unless it goes behind the OPEN's
		 * copy on that copy's path. Without, the bursts of a stream's
		 * first round trip went on the OPEN's path alone (satellite: an
		 * echo every 0.1 s, the first six held 1.3 s behind one loss). */
		if (raw == 0 || !st->open_copied)
			return;
		follows = true;
	}
	size_t len = open_len + data_len;
	if (open_len > 0)
		frames[1] |= FRAME_FLAG_RESENT;
	unsigned first = follows ? st->open_copy_slot : dup_target(s, path, SESSION_PATHS_MAX, len);
	if (!dup_queue(s, path, st, frames, len, raw, open_len > 0, follows, first,
		       SESSION_PATHS_MAX)) {
		/* No copy: the original is no copy's twin (put_open wrote it
		 * without flags). */
		if (open_len > 0)
			frames[1] &= (uint8_t)~FRAME_FLAG_RESENT;
		return;
	}
	if (open_len > 0)
		st->open_copied = true;
	/* A stream the peer knows gets a second copy on a third path: at 1 %
	 * loss a sparse tunnel holds what follows a loss until its RTO, and
	 * an echo and its copy were held 1.1-1.4 s when both of their tunnels
	 * lost a segment within the round trip before SACK showed either
	 * hole (satellite, about one run in two). */
	if (follows || open_len > 0 || s->npaths < 3 ||
	    s->stats.dup_wire_bytes + 2 * len >
		s->stats.payload_bytes_sent / SESSION_DUP_SHARE + SESSION_DUP_ALLOWANCE)
		return;
	unsigned second = dup_target(s, path, first, len);
	if (second != SESSION_PATHS_MAX)
		dup_queue(s, path, st, frames, len, raw, false, false, second, first);
}

static void dup_drop(struct session *s, struct dup_copy *d)
{
	TAILQ_REMOVE(&s->dups, d, link);
	s->ndups--;
	free(d);
}

/* Whether copy d of st's DATA may go on path: the peer knows the stream, or
 * the copy of its OPEN went there (before it, in order). */
static bool follows_open_copy(const struct session_stream *st, const struct session_path *path,
			      const struct dup_copy *d)
{
	return !d->follows_open || st->established || st->open_copy_slot == path->slot;
}

/* Whether a path other than d's original's and its twin's is left. */
static bool dup_has_path(const struct session *s, const struct dup_copy *d)
{
	for (unsigned i = 0; i < SESSION_PATHS_MAX; i++) {
		if (s->paths[i] != NULL && i != d->origin && i != d->avoid)
			return true;
	}
	return false;
}

/* Copies waiting for a path other than their original's into buf; drops
 * those the peer has acknowledged (or, with an OPEN, answered) meanwhile.
 * Returns bytes written. */
static size_t fill_dups(struct session *s, struct session_path *path, uint8_t *buf, size_t cap)
{
	size_t used = 0;
	struct dup_copy *d = TAILQ_FIRST(&s->dups);
	while (d != NULL) {
		struct dup_copy *next = TAILQ_NEXT(d, link);
		struct session_stream *st = stream_find(s, d->id);
		bool had =
		    st == NULL || (st->snd_acked >= d->end && (!d->has_open || st->established));
		if (had || s->npaths < 2 || !dup_has_path(s, d)) {
			/* A second copy whose third path is lost: its bytes are on
			 * the two left. */
			dup_drop(s, d);
		} else if (!follows_open_copy(st, path, d)) {
			/* Its OPEN's copy has not left, or went elsewhere. */
		} else if (dup_elsewhere(s, path, d)) {
			path->held_back = true; /* pulls again if the target does not */
		} else if (d->origin != path->slot && d->avoid != path->slot) {
			if (used + d->len > cap)
				break;
			memcpy(buf + used, d->frame, d->len);
			used += d->len;
			if (d->has_open)
				st->open_copy_slot = path->slot;
			/* Its twin (the second copy of the same bytes) goes elsewhere. */
			struct dup_copy *t;
			TAILQ_FOREACH(t, &s->dups, link)
			{
				if (t != d && t->id == d->id && t->end == d->end)
					t->avoid = path->slot;
			}
			s->stats.dup_frames_sent++;
			s->stats.dup_bytes_sent += d->raw;
			s->stats.dup_wire_bytes += d->len;
			path->stats.dup_frames++;
			dup_drop(s, d);
		}
		d = next;
	}
	return used;
}

/* Copies whole control frames into buf; returns bytes written. An OPEN pins
 * its stream to the path that carries it. */
static size_t fill_ctrl(struct session *s, struct session_path *path, uint8_t *buf, size_t cap)
{
	size_t used = 0;
	uint8_t hdr[FRAME_HEADER_LEN];
	if (s->pong_pending) {
		struct frame f = {.type = FRAME_PONG, .stream_id = 0};
		f.u.opaque = s->pong_opaque;
		int n = frame_encode(&f, buf, cap);
		if (n > 0) {
			used = (size_t)n;
			s->pong_pending = false;
		}
	}
	while (evbuffer_get_length(s->ctrl) >= FRAME_HEADER_LEN) {
		evbuffer_copyout(s->ctrl, hdr, sizeof(hdr));
		size_t flen = FRAME_HEADER_LEN + (size_t)bytes_load_be16(hdr + 2);
		if (used + flen > cap)
			break;
		evbuffer_remove(s->ctrl, buf + used, flen);
		used += flen;
		if (hdr[0] == FRAME_OPEN) {
			struct session_stream *st = stream_find(s, bytes_load_be32(hdr + 4));
			if (st != NULL && !st->established)
				st->pin = path;
		}
	}
	return used;
}

static void copy_at(struct evbuffer *b, size_t off, uint8_t *dst, size_t n)
{
	if (off == 0) {
		evbuffer_copyout(b, dst, n);
		return;
	}
	struct evbuffer_ptr pos;
	evbuffer_ptr_set(b, &pos, off, EVBUFFER_PTR_SET);
	evbuffer_copyout_from(b, &pos, dst, n);
}

/* Copies n bytes of the resend store from off bytes past snd_acked. */
static void store_copyout(struct session_stream *st, size_t off, uint8_t *dst, size_t n)
{
	size_t in_own = st->unacked != NULL ? evbuffer_get_length(st->unacked) : 0;
	if (off < in_own) {
		size_t k = n < in_own - off ? n : in_own - off;
		copy_at(st->unacked, off, dst, k);
		dst += k;
		n -= k;
		off = in_own;
	}
	if (n > 0)
		copy_at(st->src, off - in_own, dst, n);
}

/* Copies the first n bytes of the source into the resend store; returns
 * how many it took. */
static size_t store_copy_front(struct session_stream *st, size_t n)
{
	struct evbuffer_iovec v[16];
	size_t left = n;
	int k = evbuffer_peek(st->src, (ev_ssize_t)n, NULL, v, 16);
	for (int i = 0; i < k && i < 16 && left > 0; i++) {
		size_t c = v[i].iov_len < left ? v[i].iov_len : left;
		if (evbuffer_add(st->unacked, v[i].iov_base, c) != 0)
			break;
		left -= c;
	}
	evbuffer_drain(st->src, n - left);
	return n - left;
}

/*
 * Moves the source's wholly sent chains into the resend store, without
 * copying a byte. Only chains before the source's last one move: the socket
 * is read into the last chain until it is full (libevent fills a chain
 * before it adds the next), so a moved chain costs what it holds, and a
 * store of moved chains what it counts. The last chain's sent bytes stay in
 * the source, up to STORE_IN_SRC_MAX: past that (a chain larger than reads
 * make), they are copied out rather than let the relay see a full buffer
 * and stop reading.
 */
static void store_take_chains(struct session_stream *st)
{
	size_t total = evbuffer_get_length(st->src);
	struct evbuffer_iovec v[16];
	int k = evbuffer_peek(st->src, (ev_ssize_t)st->src_sent, NULL, v, 16);
	size_t whole = 0;
	for (int i = 0; i < k && i < 16; i++) {
		size_t end = whole + v[i].iov_len;
		if (end > st->src_sent || end == total)
			break;
		whole = end;
	}
	if (whole == 0 && st->src_sent < STORE_IN_SRC_MAX)
		return;
	if (st->unacked == NULL)
		st->unacked = evbuffer_new();
	/* Without a buffer the bytes simply stay in the source. */
	if (st->unacked == NULL)
		return;
	size_t taken = 0;
	if (whole > 0) {
		int n = evbuffer_remove_buffer(st->src, st->unacked, whole);
		taken = n > 0 ? (size_t)n : 0;
	}
	if (taken == whole && st->src_sent - taken >= STORE_IN_SRC_MAX)
		taken += store_copy_front(st, st->src_sent - taken);
	if (taken > 0) {
		st->src_sent -= taken;
		charge(st->session, taken, 0);
	}
}

/* Frees n acknowledged bytes from the front of the resend store. */
static void store_drain(struct session_stream *st, size_t n)
{
	size_t in_own = st->unacked != NULL ? evbuffer_get_length(st->unacked) : 0;
	size_t k = n < in_own ? n : in_own;
	if (k > 0) {
		evbuffer_drain(st->unacked, k);
		charge(st->session, 0, k);
	}
	if (n > k) {
		evbuffer_drain(st->src, n - k);
		st->src_sent -= n - k;
	}
}

/* The most raw bytes one DATA frame of st may carry: 64 KiB when it will be
 * compressed and the peer takes that (compression gains by a third on text
 * over 16 KiB frames), else FRAME_DATA_RAW_MAX. */
static size_t frame_raw_limit(const struct session *s, const struct session_stream *st)
{
	/* A stream whose last frame did not shrink, or that skips, is likely
	 * raw next: 64 KiB copied to send 16 KiB raw is four times the work. */
	const struct compress_state *c = &st->cstate;
	if (s->peer_big_data && s->codec != COMPRESS_NONE && !c->disabled && c->misses == 0 &&
	    c->skip_left == 0)
		return FRAME_DATA_ZRAW_MAX;
	return FRAME_DATA_RAW_MAX;
}

/*
 * Writes one DATA frame of st into buf (room bytes): bytes to send again
 * first (from the resend store), else new bytes (moved from the source into
 * the resend store). Returns bytes written, 0 if nothing fit.
 */
static size_t fill_data(struct session *s, struct session_path *path, struct session_stream *st,
			uint8_t *buf, size_t room, size_t want)
{
	bool resend = st->snd_next < st->snd_high;
	size_t src_len = evbuffer_get_length(st->src) - st->src_sent; /* unsent */
	size_t avail = resend ? (size_t)(st->snd_high - st->snd_next) : src_len;
	size_t n = avail < want ? avail : want;
	if (!resend) {
		uint64_t credit = stream_credit(s, st);
		if (n > credit)
			n = (size_t)credit;
	}
	bool compressing = s->codec != COMPRESS_NONE && !st->cstate.disabled;
	size_t limit = frame_raw_limit(s, st);
	if (n > limit)
		n = limit;
	if (n + FRAME_DATA_OVERHEAD_MAX > room) {
		if (room <= FRAME_DATA_OVERHEAD_MAX)
			return 0;
		n = room - FRAME_DATA_OVERHEAD_MAX;
	}
	uint8_t flags = 0;
	/* FIN rides on the last bytes when the source is drained. */
	if (st->shutdown_requested && n == avail && (!resend || src_len == 0))
		flags |= FRAME_FLAG_FIN;
	if (n == 0 && !(flags & FRAME_FLAG_FIN))
		return 0;

	const uint8_t *raw = NULL;
	if (resend && n > 0) {
		store_copyout(st, (size_t)(st->snd_next - st->snd_acked), s->scratch, n);
		raw = s->scratch;
	}
	size_t payload_len = n;
	int clen = 0;
	if (n > 0 && compressing) {
		if (raw == NULL) {
			copy_at(st->src, st->src_sent, s->scratch, n);
			raw = s->scratch;
		}
		size_t hdr = frame_data_header_len(FRAME_FLAG_LZ4);
		clen =
		    compress_frame(s->cctx, &st->cstate, s->codec, raw, n, buf + hdr, room - hdr);
		if (clen > 0) {
			flags |= s->codec == COMPRESS_LZ4 ? FRAME_FLAG_LZ4 : FRAME_FLAG_ZLIB;
			payload_len = (size_t)clen;
		} else {
			/* Raw, it is a frame of FRAME_DATA_RAW_MAX at most, and
			 * no longer the last bytes when it got shorter. */
			if (n > FRAME_DATA_RAW_MAX) {
				n = FRAME_DATA_RAW_MAX;
				payload_len = n;
				flags &= (uint8_t)~FRAME_FLAG_FIN;
			}
			memcpy(buf + frame_data_header_len(flags), raw, n);
		}
	} else if (n > 0 && raw != NULL) {
		memcpy(buf + frame_data_header_len(flags), raw, n);
	} else if (n > 0) {
		copy_at(st->src, st->src_sent, buf + frame_data_header_len(flags), n);
	}
	int h = frame_encode_data_header(buf, room, st->id, flags, st->snd_next, (uint32_t)n,
					 payload_len);
	if (h < 0)
		return 0;
	if (resend) {
		s->stats.resent_bytes += n;
	} else if (n > 0) {
		st->src_sent += n;
		store_take_chains(st);
		st->snd_high += n;
		s->sent += n;
		s->unacked += n;
	}
	st->snd_next += n;
	st->path_mask |= (uint64_t)1 << path->slot;
	path->stats.data_bytes += n;
	s->stats.raw_bytes_sent += n;
	s->stats.payload_bytes_sent += payload_len;
	if (clen > 0)
		s->stats.frames_compressed++;
	else
		s->stats.frames_raw++;
	if (flags & FRAME_FLAG_FIN) {
		st->fin_placed_once = true;
		set_send(st, SEND_FIN_SENT);
		note_fins(s, st);
	}
	stream_check(st);
	return (size_t)h + payload_len;
}

size_t session_fill(struct session *s, struct session_path *path, uint8_t *buf, size_t cap)
{
	if (cap > RECORD_PLAINTEXT_MAX)
		cap = RECORD_PLAINTEXT_MAX;
	s->writable_signalled = false;
	path->held_back = false;
	size_t used = fill_ctrl(s, path, buf, cap);
	used += fill_dups(s, path, buf + used, cap - used);

	/* An OPEN still waiting in the control queue must precede its DATA. */
	if (evbuffer_get_length(s->ctrl) > 0) {
		path->placed += used;
		path->stats.bytes_placed += used;
		path->stats.records += used > 0;
		return used;
	}
	uint64_t cap_left = bulk_cap(s, path);
	/* Streams that may only use another path (their OPEN went there, or
	 * placement leaves them to a better one) wait here and go back to the
	 * front of their lists afterwards. */
	struct stream_list skipped = TAILQ_HEAD_INITIALIZER(skipped);
	while (cap - used >= FILL_MIN_ROOM) {
		struct session_stream *st = TAILQ_FIRST(&s->new_list);
		struct stream_list *from = &s->new_list;
		if (st == NULL) {
			st = TAILQ_FIRST(&s->old_list);
			from = &s->old_list;
		}
		if (st == NULL)
			break;
		if (!stream_ready(s, st)) {
			/* A new flow that went idle becomes old for one round, so a
			 * bulk flow that drains its source now and then does not
			 * keep jumping the queue (RFC 8290 §4.2). */
			TAILQ_REMOVE(from, st, sched);
			st->idle_since_us = s->now_us;
			if (from == &s->new_list) {
				st->list = LIST_OLD;
				TAILQ_INSERT_TAIL(&s->old_list, st, sched);
			} else {
				st->list = LIST_NONE;
			}
			continue;
		}
		bool fresh = from == &s->new_list;
		/* Bulk: served from the old-flows list, or a stream with a home
		 * whose new burst is more than a small exchange, or that has
		 * moved SESSION_BULK_SENT already (a bulk source that ran dry for
		 * a moment, or waited for credit: its refills come in pieces of
		 * a few KiB). Bulk keeps to
		 * its home and to the path's room; only small bursts go where
		 * placement says, so a download does not leak 16 KiB pieces onto
		 * the tunnels that carry the interactive streams. */
		bool bulk =
		    !fresh || (st->home != NULL && (stream_backlog(st) > SESSION_BURST_MAX ||
						    st->snd_high >= SESSION_BULK_SENT));
		if (bulk && !st->home_chosen && st->pin == NULL && s->npaths >= 2) {
			struct session_path *was = st->home != NULL ? st->home : path;
			st->home = bulk_home(s, was);
			st->home_chosen = true;
			if (st->home != was) {
				s->stats.bulk_moves++;
				signal_writable(s); /* the new home pulls */
			}
		}
		bool away = st->home != NULL && st->home != path;
		bool overflow = bulk && away && overflow_ok(s, path, st, used);
		bool elsewhere = (st->pin != NULL && st->pin != path) ||
				 (st->open_pending && !open_allowed(s, st)) ||
				 (bulk && away && !overflow);
		if (!elsewhere && !bulk && leave_for_better(s, path, st)) {
			elsewhere = true;
			path->held_back = true;
		}
		if (elsewhere) {
			TAILQ_REMOVE(from, st, sched);
			TAILQ_INSERT_TAIL(&skipped, st, sched);
			continue;
		}
		if (st->deficit <= 0) {
			st->deficit += SESSION_QUANTUM;
			TAILQ_REMOVE(from, st, sched);
			st->list = LIST_OLD;
			TAILQ_INSERT_TAIL(&s->old_list, st, sched);
			continue;
		}
		size_t want = (size_t)st->deficit;
		/* A compressed frame may take more than the deficit: the stream
		 * then waits rounds until its deficit is positive again, so the
		 * shares stay fair in raw bytes. */
		size_t limit = frame_raw_limit(s, st);
		if (limit > FRAME_DATA_RAW_MAX && want < limit)
			want = limit;
		/* Bulk data beyond the path's room would only wait on it; the
		 * rest stays unplaced for whichever path has room next. */
		if (bulk && cap_left < FILL_MIN_ROOM) {
			path->held_back = true;
			path->stats.capped++;
			if (!away && overflow_possible(s, st))
				signal_writable(s); /* the paths that may take the rest pull */
			break;
		}
		if (bulk && want > cap_left)
			want = (size_t)cap_left;
		if (overflow && want > open_window(path, used))
			want = (size_t)open_window(path, used);
		size_t k = 0;
		size_t at = used;
		if (st->open_pending) {
			k = put_open(s, path, st, buf + used, cap - used);
			if (k == 0)
				break;
			used += k;
		}
		if (st->deferred && leave_for_better_expired(s, st))
			s->stats.placement_timeouts++;
		st->deferred = false;
		uint64_t before = st->snd_next;
		size_t n = fill_data(s, path, st, buf + used, cap - used, want);
		if (n == 0 && k == 0)
			break;
		size_t raw = (size_t)(st->snd_next - before);
		if (st->home == NULL && raw > 0)
			st->home = path;
		/* A stream that exchanges (a second small burst in a row, each
		 * after SESSION_INTERACTIVE_PAUSE_US, less than SESSION_BULK_SENT
		 * sent and received in all) turns --queue-cap on; one may be a
		 * transfer's first piece, and any larger piece starts the count
		 * again. A download's source on a busy server also leaves small
		 * pieces milliseconds apart (the branch text download was
		 * capped, 165 -> 135 Mbit/s), and an upload's receiver may
		 * report what arrived every so often (the bench's sink, 0.25 s:
		 * the download after it was capped, 159 -> 146). */
		bool talk =
		    interactive_burst(s, st, raw, before) && st->snd_high < SESSION_BULK_SENT &&
		    st->rcv_high < SESSION_BULK_SENT &&
		    (before == 0 || s->now_us - st->idle_since_us >= SESSION_INTERACTIVE_PAUSE_US);
		if (raw > 0 && !talk) {
			st->bursts = 0;
		} else if (raw > 0 && ++st->bursts >= 2) {
			s->interactive_seen = true;
			s->interactive_us = s->now_us;
		}
		maybe_duplicate(s, path, st, buf + at, k, n, raw, before);
		used += n;
		st->deficit -= (int32_t)raw;
		if (!bulk)
			path->stats.fresh_bytes += raw;
		if (overflow) {
			path->stats.overflow_bytes += raw;
			s->stats.overflow_bytes += raw;
		}
		cap_left -= raw < cap_left ? raw : cap_left;
	}
	struct session_stream *st;
	while ((st = TAILQ_LAST(&skipped, stream_list)) != NULL) {
		TAILQ_REMOVE(&skipped, st, sched);
		if (st->list == LIST_NEW)
			TAILQ_INSERT_HEAD(&s->new_list, st, sched);
		else
			TAILQ_INSERT_HEAD(&s->old_list, st, sched);
	}
	path->placed += used;
	path->stats.bytes_placed += used;
	path->stats.records += used > 0;
	return used;
}

void session_send_control(struct session *s, const struct frame *f)
{
	queue_ctrl(s, f);
}

void session_send_ping(struct session *s, uint8_t type, uint64_t opaque)
{
	if (type == FRAME_PONG) {
		s->pong_pending = true;
		s->pong_opaque = opaque;
		signal_writable(s);
		return;
	}
	struct frame f = {.type = type, .stream_id = 0};
	f.u.opaque = opaque;
	queue_ctrl(s, &f);
}

bool session_wants_write(const struct session *s)
{
	if (evbuffer_get_length(s->ctrl) > 0 || s->pong_pending)
		return true;
	if (s->ndups > 0 && s->npaths >= 2)
		return true;
	struct session_stream *st;
	TAILQ_FOREACH(st, &s->new_list, sched)
	if (stream_ready(s, st))
		return true;
	TAILQ_FOREACH(st, &s->old_list, sched)
	if (stream_ready(s, st))
		return true;
	return false;
}

bool session_can_open(const struct session *s)
{
	/* Ids are never reused: past the last one the session is spent. */
	return active_streams(s) < s->peer.max_streams && !s->goaway_received &&
	       s->next_local_id <= UINT32_MAX - 2;
}

struct session_stream *session_stream_open(struct session *s, const struct frame_addr *target,
					   struct evbuffer *src, void *user)
{
	if (!session_can_open(s))
		return NULL;
	struct session_stream *st = stream_new(s, s->next_local_id);
	if (st == NULL)
		return NULL;
	st->local = true;
	st->send = SEND_OPEN;
	s->next_local_id += 2;
	st->src = src;
	st->user = user;
	st->target = *target;
	/* OPEN leaves with the first DATA, on the path placement picks; bytes
	 * already waiting (read with a SOCKS request) go with it. */
	st->open_pending = true;
	TAILQ_INSERT_TAIL(&s->open_list, st, open_link);
	sched_activate(s, st);
	return st;
}

void session_stream_attach(struct session_stream *st, struct evbuffer *src, void *user)
{
	st->src = src;
	st->user = user;
}

void session_stream_open_result(struct session_stream *st, uint32_t error)
{
	struct session *s = st->session;
	if (st->dead)
		return;
	if (error != FRAME_ERR_NONE) {
		queue_refusal(s, st->id, error);
		stream_destroy(s, st);
		maybe_grant_session(s);
		return;
	}
	struct frame f = {.type = FRAME_OPEN_RESULT, .stream_id = st->id};
	queue_ctrl(s, &f);
	st->opened = true;
	set_send(st, SEND_OPEN);
	sched_activate(s, st);
}

void session_stream_kick(struct session_stream *st)
{
	if (!st->dead)
		sched_activate(st->session, st);
}

void session_stream_shutdown(struct session_stream *st)
{
	if (st->dead)
		return;
	st->shutdown_requested = true;
	sched_activate(st->session, st);
}

void session_stream_consumed(struct session_stream *st, size_t len)
{
	struct session *s = st->session;
	if (st->dead)
		return;
	/* Only bytes on_data handed over can be consumed: more is a bug in the
	 * caller. Asserted; a release build logs it and keeps its accounting. */
	assert(len <= st->rcv_contig - st->rcv_consumed);
	if (len > st->rcv_contig - st->rcv_consumed) {
		log_error("session: stream %u: %zu bytes reported consumed, %llu delivered", st->id,
			  len, (unsigned long long)(st->rcv_contig - st->rcv_consumed));
		len = (size_t)(st->rcv_contig - st->rcv_consumed);
	}
	st->rcv_consumed += len;
	s->consumed += len;
	maybe_grant_stream(s, st);
	maybe_grant_session(s);
	maybe_recv_done(st);
	maybe_close(s, st);
}

void session_stream_reset(struct session_stream *st, uint32_t error)
{
	struct session *s = st->session;
	if (st->dead)
		return;
	/* A stream whose OPEN never left is unknown to the peer: nothing to say
	 * (ids may skip; they only have to increase). */
	if (!st->open_pending)
		queue_reset(s, st->id, error, st->snd_high);
	stream_destroy(s, st);
	maybe_grant_session(s);
}

const char *session_stream_state_name(const struct session_stream *st)
{
	return state_names[st->send][st->recv];
}

uint32_t session_stream_id(const struct session_stream *st)
{
	return st->id;
}

struct session *session_stream_session(const struct session_stream *st)
{
	return st->session;
}

size_t session_unacked(const struct session *s)
{
	return s->unacked;
}

size_t session_held(const struct session *s)
{
	return s->held_bytes;
}

size_t session_ctrl_queued(const struct session *s)
{
	return evbuffer_get_length(s->ctrl) + (s->pong_pending ? FRAME_HEADER_LEN + 8 : 0);
}

bool session_ctrl_overflowed(const struct session *s)
{
	return s->ctrl_overflow;
}

void session_set_memory(size_t used, size_t limit)
{
	memory_used = used;
	memory_limit = limit;
}

uint64_t session_credit_hits(void)
{
	return credit_counter.hits;
}

size_t session_max_chain(const struct session *s)
{
	size_t longest = 0;
	for (size_t i = 0; i < s->nbuckets; i++) {
		size_t n = 0;
		for (const struct session_stream *st = s->buckets[i]; st != NULL;
		     st = st->hash_next)
			n++;
		if (n > longest)
			longest = n;
	}
	return longest;
}

size_t session_queued(const struct session *s)
{
	size_t n = session_ctrl_queued(s);
	const struct session_stream *st;
	TAILQ_FOREACH(st, &s->new_list, sched)
	n += evbuffer_get_length(st->src) - st->src_sent;
	TAILQ_FOREACH(st, &s->old_list, sched)
	n += evbuffer_get_length(st->src) - st->src_sent;
	return n;
}

uint64_t session_limit_hits(void)
{
	return stream_limit_counter.hits;
}

void session_set_pool(struct session *s, struct budget_pool *pool)
{
	/* What is charged moves with the session to its new pool. */
	s->pool = pool;
	relay_budget_attach(&s->account, pool);
}

struct budget_pool *session_pool(const struct session *s)
{
	return s->pool;
}

size_t session_stream_count(const struct session *s)
{
	return s->nstreams;
}

const struct session_stats *session_get_stats(const struct session *s)
{
	return &s->stats;
}

void session_goaway(struct session *s)
{
	if (s->goaway_sent)
		return;
	s->goaway_sent = true;
	struct frame f = {.type = FRAME_GOAWAY, .stream_id = s->last_peer_id};
	f.u.error = FRAME_ERR_NONE;
	queue_ctrl(s, &f);
}

bool session_goaway_sent(const struct session *s)
{
	return s->goaway_sent;
}

bool session_goaway_received(const struct session *s)
{
	return s->goaway_received;
}
