/*
 * One tunnel over libevent: socket tuning, the handshake exchange, records in
 * and out, PING/PONG and the liveness timer. Frames go to the session the
 * owner attaches the tunnel to (tsession.h), which outlives it; the owner
 * learns "up" and "down". Never frees itself inside a bufferevent callback:
 * closing is marked, and the free runs from the loop.
 */
#include <assert.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sodium.h>

#include "wanmux/budget.h"
#include "wanmux/bytes.h"
#include "wanmux/connect.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/hello.h"
#include "wanmux/limit.h"
#include "wanmux/log.h"
#include "wanmux/record.h"
#include "wanmux/rekey.h"
#include "wanmux/relay.h"
#include "wanmux/sockread.h"
#include "wanmux/tsession.h"
#include "wanmux/tunnel.h"

/* User-space output between the session and the kernel: refill below LOW,
 * stop above HIGH. Small, so the scheduler (not a queue) decides latency. */
#define TUNNEL_OUT_LOW (32u << 10)
#define TUNNEL_OUT_HIGH (96u << 10)
#define TUNNEL_IO_CHUNK (256u << 10)
#define TUNNEL_SNDBUF (8u << 20) /* the kernel doubles it */
/* Timer granularity: deadlines hold to within this. */
#define TUNNEL_TICK_MS 250
/* Read-side backpressure: every frame the peer sends may queue an answer
 * (PONG, OPEN_RESULT, LISTEN_RESULT, WINDOW), so while what waits to leave
 * (control queue + unsent records) is over STOP the tunnel reads no more
 * records; it resumes once the output is down to the write watermark and
 * the backlog under RESUME. flush() keeps the output near TUNNEL_OUT_HIGH,
 * so STOP means about 64 KiB of control frames the peer does not take. */
#define TUNNEL_READ_STOP (TUNNEL_OUT_HIGH + RECORD_CIPHERTEXT_MAX + (64u << 10))
#define TUNNEL_READ_RESUME (TUNNEL_READ_STOP / 2)
/* Placement (placement.h): TCP_INFO is sampled at most this often while
 * the session has two paths or more, and a fill that left frames for a
 * better path or over the room is tried again after TUNNEL_RETRY_MS (the
 * session has no clock to wake us, and an empty output has no write event). */
#define TUNNEL_INFO_EVERY_US 1000u
/* BBR_UNIT of the kernel's tcp_bbr.c: gains in TCP_CC_INFO are in 1/256. */
#define TUNNEL_BBR_UNIT 256u
#define TUNNEL_RETRY_MS 2
/* LISTEN requests per second per tunnel (bursts of twice as many): a client
 * asks for its few reverse listeners at start and after a reconnect. */
#define TUNNEL_LISTEN_RATE 10.0

enum tunnel_state {
	TUNNEL_CONNECTING,
	TUNNEL_HANDSHAKE,
	TUNNEL_UP,
	TUNNEL_CLOSING,
};

struct tunnel {
	struct event_base *base;
	struct bufferevent *bev;
	enum tunnel_state state;
	bool is_client;
	struct tunnel_config cfg;
	struct tunnel_handlers h;
	struct handshake *hs;
	struct record_cipher *tx;
	struct record_cipher *rx;
	struct rekey *rekey;	   /* switches tx and rx in place; NULL: the peer cannot */
	bool peer_rekeys;	   /* the peer's hello has HELLO_FLAG_REKEY */
	bool peer_big_data;	   /* ... HELLO_FLAG_BIG_DATA */
	struct tsession *ts;	   /* the session it carries, from the owner's attach */
	struct session *session;   /* tsession_session(ts), NULL when not up */
	struct session_path *path; /* this tunnel in its session */
	enum compress_mode codec;
	/* PING and PONG belong to the tunnel, not the session: they measure and
	 * prove this connection, so they go out on it, first in a record. */
	bool ping_pending, pong_pending;
	/* ping_opaque is random and only a PONG with it counts, once: a peer
	 * cannot make up an RTT (the opaque was once the send time, which the
	 * peer reads in every PING; spread ranks servers by this RTT). */
	bool ping_awaited; /* the PING with ping_opaque went out, no PONG yet */
	uint64_t ping_opaque, pong_opaque;
	uint64_t ping_queued_us; /* when the PING with ping_opaque was asked for */
	struct event *flush_ev;
	struct event *retry_ev; /* flush again: placement held frames back */
	uint64_t info_us;	/* last TCP_INFO snapshot for placement */
	struct event *timer_ev;
	struct event *free_ev;
	char peer[NETADDR_STR_MAX];
	uint8_t peer_pub[KEYS_LEN];
	uint64_t started_ms;
	uint64_t last_rx_ms;
	uint64_t last_ping_ms;
	uint64_t awaiting_since_ms; /* first PING with nothing heard since; 0: none */
	uint32_t srtt_us;
	bool read_stopped;	     /* backpressure: output backed up, not reading */
	uint64_t last_drain_ms;	     /* output last drained to TUNNEL_OUT_LOW */
	struct limit_bucket listens; /* LISTEN rate */
	bool cookie_done;	     /* a cookie reply was sent (server) or used (client) */
	char reason[200];
	struct tunnel_stats stats;
	struct session_path_stats final_path_stats; /* kept when the path goes */
};

static struct tunnel_counters counters;
static struct limit_counter backlog_counter = {.name = "tunnel output backlog (peer does not "
						       "read)"};
static struct limit_counter listen_counter = {.name = "LISTEN requests per tunnel"};

const struct tunnel_counters *tunnel_get_counters(void)
{
	return &counters;
}

static const char *tunnel_state_name(enum tunnel_state s)
{
	switch (s) {
	case TUNNEL_CONNECTING:
		return "connecting";
	case TUNNEL_HANDSHAKE:
		return "handshake";
	case TUNNEL_UP:
		return "up";
	case TUNNEL_CLOSING:
		return "closing";
	}
	return "?";
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void)
{
	return now_us() / 1000u;
}

/* TAI64N, forced strictly increasing within this process so that tunnels
 * opened in the same nanosecond still pass the server's replay check. */
static void tai64n_now(uint8_t out[HELLO_TIMESTAMP_LEN])
{
	static uint64_t last_sec;
	static uint32_t last_nsec;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t sec = 0x400000000000000aULL + (uint64_t)ts.tv_sec;
	uint32_t nsec = (uint32_t)ts.tv_nsec;
	if (sec < last_sec || (sec == last_sec && nsec <= last_nsec)) {
		sec = last_sec;
		nsec = last_nsec + 1;
		if (nsec >= 1000000000u) {
			sec++;
			nsec = 0;
		}
	}
	last_sec = sec;
	last_nsec = nsec;
	bytes_store_be64(out, sec);
	bytes_store_be32(out + 8, nsec);
}

void tunnel_config_defaults(struct tunnel_config *c)
{
	memset(c, 0, sizeof(*c));
	c->params.stream_window = SESSION_DEFAULT_STREAM_WINDOW;
	c->params.session_window = SESSION_DEFAULT_SESSION_WINDOW;
	c->params.max_streams = SESSION_DEFAULT_MAX_STREAMS;
	c->compress = COMPRESS_AUTO;
	c->tuning.congestion = "bbr";
	c->tuning.notsent_lowat = 128u << 10;
	c->tuning.user_timeout_ms = 30000;
	/* The send buffer holds what is in flight: BBR keeps about 2 x BDP
	 * there, 15 MB for 100 Mbit/s at 600 ms. Autotuning stops at
	 * tcp_wmem[2] (4 MB on Debian), which caps a tunnel near 25 Mbit/s at
	 * that RTT. With TCP_NOTSENT_LOWAT the unsent part stays small, so a
	 * big buffer adds no queueing delay. */
	c->tuning.sndbuf = TUNNEL_SNDBUF;
	c->pool_limit = BUDGET_DEFAULT_POOL_LIMIT;
	c->resume_timeout_ms = TSESSION_RESUME_TIMEOUT_MS;
	c->handshake_timeout_ms = 10000;
	c->ping_interval_ms = 5000;
	c->dead_after_ms = 30000;
	c->rekey_after_ms = TUNNEL_REKEY_AFTER_MS;
	c->rekey_bytes = TUNNEL_REKEY_BYTES;
}

static void free_cb(evutil_socket_t fd, short what, void *arg);

void tunnel_close(struct tunnel *t, const char *reason)
{
	if (t->state == TUNNEL_CLOSING)
		return;
	log_debug("tunnel %s: closing in state %s: %s", t->peer, tunnel_state_name(t->state),
		  reason);
	t->state = TUNNEL_CLOSING;
	snprintf(t->reason, sizeof(t->reason), "%s", reason);
	if (t->bev != NULL)
		bufferevent_disable(t->bev, EV_READ | EV_WRITE);
	event_active(t->free_ev, EV_TIMEOUT, 1);
}

static void tunnel_destroy(struct tunnel *t)
{
	if (t->flush_ev != NULL)
		event_free(t->flush_ev);
	if (t->retry_ev != NULL)
		event_free(t->retry_ev);
	if (t->timer_ev != NULL)
		event_free(t->timer_ev);
	if (t->free_ev != NULL)
		event_free(t->free_ev);
	if (t->bev != NULL)
		bufferevent_free(t->bev);
	handshake_free(t->hs);
	rekey_free(t->rekey); /* before the ciphers it points to */
	record_cipher_free(t->tx);
	record_cipher_free(t->rx);
	free(t);
}

/* Leaves the session: what was in flight here goes again on its other
 * tunnels (or waits for one). */
static void leave_session(struct tunnel *t)
{
	if (t->ts == NULL)
		return;
	if (t->path != NULL)
		t->final_path_stats = *session_path_get_stats(t->path);
	struct tsession *ts = t->ts;
	struct session_path *path = t->path;
	t->ts = NULL;
	t->session = NULL;
	t->path = NULL;
	tsession_detach(ts, t, path);
}

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	if (t->stats.rekeys > 0)
		log_info("tunnel %s: rekeyed %llu times", t->peer,
			 (unsigned long long)t->stats.rekeys);
	leave_session(t);
	const struct session_path_stats *ps = &t->final_path_stats;
	log_info("tunnel %s: carried %llu DATA bytes (%llu fresh), %llu duplicates, %llu fills "
		 "capped, %llu deferrals",
		 t->peer, (unsigned long long)ps->data_bytes, (unsigned long long)ps->fresh_bytes,
		 (unsigned long long)ps->dup_frames, (unsigned long long)ps->capped,
		 (unsigned long long)ps->deferred);
	if (t->h.on_down != NULL)
		t->h.on_down(t, t->reason, t->h.arg);
	tunnel_destroy(t);
}

void tunnel_kick(struct tunnel *t)
{
	/* Batch: build records once the current callback chain is done. */
	if (t->state == TUNNEL_UP)
		event_active(t->flush_ev, EV_TIMEOUT, 1);
}

void tunnel_orphan(struct tunnel *t, const char *reason)
{
	if (t->path != NULL)
		t->final_path_stats = *session_path_get_stats(t->path);
	t->ts = NULL;
	t->session = NULL;
	t->path = NULL;
	tunnel_close(t, reason);
}

static int tick_rekey(struct tunnel *t);
static size_t fill_rekey_frame(struct tunnel *t, uint8_t *buf);
static void rekey_frame_sealed(struct tunnel *t);
static void close_backlogged(struct tunnel *t, const char *why)
{
	char detail[NETADDR_STR_MAX + 96];
	snprintf(detail, sizeof(detail), "tunnel %s closed: %s", t->peer, why);
	limit_hit(&backlog_counter, detail);
	counters.backlog++;
	tunnel_close(t, why);
}

/* PING and PONG waiting for this tunnel, encoded at buf. */
static size_t fill_ping_frames(struct tunnel *t, uint8_t *buf, size_t cap)
{
	size_t used = 0;
	struct frame f = {.stream_id = 0};
	if (t->pong_pending) {
		f.type = FRAME_PONG;
		f.u.opaque = t->pong_opaque;
		int n = frame_encode(&f, buf, cap);
		assert(n > 0);
		used += (size_t)n;
		t->pong_pending = false;
	}
	if (t->ping_pending) {
		f.type = FRAME_PING;
		f.u.opaque = t->ping_opaque;
		int n = frame_encode(&f, buf + used, cap - used);
		assert(n > 0);
		used += (size_t)n;
		t->ping_pending = false;
		t->ping_awaited = true;
	}
	return used;
}

/* Feeds the session this path's TCP_INFO for placement: only when there is
 * another path to compare with, and at most every TUNNEL_INFO_EVERY_US. */

/* TCP_INFO of the tunnel's socket into *ti (zeroed first); returns the
 * bytes the kernel filled in, 0 when it cannot say. */
static size_t read_tcp_info(const struct tunnel *t, struct tcp_info *ti)
{
	socklen_t len = sizeof(*ti);
	memset(ti, 0, sizeof(*ti));
	int fd = t->bev != NULL ? bufferevent_getfd(t->bev) : -1;
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) != 0)
		return 0;
	return len;
}

/* What the congestion control says into pi: whether it is still finding the
 * path's rate, and BBR's estimate of it. BBR (the one congestion control
 * whose TCP_CC_INFO is a tcp_bbr_info) paces at 2.89 in STARTUP, 1.25 at
 * most after it; the others are in slow start while cwnd is below
 * ssthresh. */
static void read_cc_info(const struct tunnel *t, const struct tcp_info *ti,
			 struct placement_info *pi)
{
	union tcp_cc_info cc;
	socklen_t len = sizeof(cc);
	int fd = bufferevent_getfd(t->bev);
	memset(&cc, 0, sizeof(cc));
	if (getsockopt(fd, IPPROTO_TCP, TCP_CC_INFO, &cc, &len) == 0 &&
	    len == sizeof(struct tcp_bbr_info)) {
		pi->startup = cc.bbr.bbr_pacing_gain > 2 * TUNNEL_BBR_UNIT;
		pi->btl_bw = (uint64_t)cc.bbr.bbr_bw_hi << 32 | cc.bbr.bbr_bw_lo;
		return;
	}
	pi->startup = ti->tcpi_snd_cwnd < ti->tcpi_snd_ssthresh;
}

static void sample_path(struct tunnel *t)
{
	if (t->session == NULL || t->path == NULL || session_path_count(t->session) < 2)
		return;
	uint64_t now = now_us();
	if (now - t->info_us < TUNNEL_INFO_EVERY_US)
		return;
	struct tcp_info ti;
	size_t len = read_tcp_info(t, &ti);
	/* Kernels before 4.6 lack notsent bytes: no placement then. */
	if (len < offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof(ti.tcpi_notsent_bytes))
		return;
	t->info_us = now;
	struct placement_info pi = {
	    .now_us = now,
	    .cwnd = ti.tcpi_snd_cwnd,
	    .mss = ti.tcpi_snd_mss,
	    .unacked = ti.tcpi_unacked,
	    .notsent = ti.tcpi_notsent_bytes,
	    .delivery_rate = ti.tcpi_delivery_rate,
	    .pacing_rate = ti.tcpi_pacing_rate != UINT64_MAX ? ti.tcpi_pacing_rate : 0,
	    .bytes_acked = ti.tcpi_bytes_acked,
	    .srtt_us = ti.tcpi_rtt,
	    .retrans = ti.tcpi_total_retrans,
	    .lost = ti.tcpi_lost,
	    .sacked = ti.tcpi_sacked,
	    .queued = evbuffer_get_length(bufferevent_get_output(t->bev)),
	    .rcv_ooo =
		len >= offsetof(struct tcp_info, tcpi_rcv_ooopack) + sizeof(ti.tcpi_rcv_ooopack)
		    ? ti.tcpi_rcv_ooopack
		    : 0,
	};
	uint32_t gone = ti.tcpi_sacked + ti.tcpi_lost;
	pi.in_flight =
	    ti.tcpi_unacked > gone ? ti.tcpi_unacked - gone + ti.tcpi_retrans : ti.tcpi_retrans;
	pi.min_rtt_us = len >= offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(ti.tcpi_min_rtt)
			    ? ti.tcpi_min_rtt
			    : 0;
	read_cc_info(t, &ti, &pi);
	session_path_set_info(t->path, &pi);
}

static void flush(struct tunnel *t)
{
	if (t->state != TUNNEL_UP || t->session == NULL || tick_rekey(t) != WM_OK)
		return;
	sample_path(t);
	if (session_ctrl_overflowed(t->session)) {
		counters.backlog++;
		tsession_fail(t->ts, "control queue over its cap (the peer does not read)");
		return;
	}
	struct evbuffer *out = bufferevent_get_output(t->bev);
	while (evbuffer_get_length(out) < TUNNEL_OUT_HIGH) {
		struct evbuffer_iovec v;
		if (evbuffer_reserve_space(out, RECORD_CIPHERTEXT_MAX + RECORD_HEADER_LEN, &v, 1) <
		    1)
			break;
		uint8_t *rec = v.iov_base;
		size_t n = fill_rekey_frame(t, rec + RECORD_HEADER_LEN);
		bool is_rekey = n > 0;
		if (!is_rekey) {
			n = fill_ping_frames(t, rec + RECORD_HEADER_LEN, RECORD_PLAINTEXT_MAX);
			n += session_fill(t->session, t->path, rec + RECORD_HEADER_LEN + n,
					  RECORD_PLAINTEXT_MAX - n);
		}
		if (n == 0)
			break;
		int len = record_seal(t->tx, rec + RECORD_HEADER_LEN, n, rec);
		if (len < 0) {
			tunnel_close(t, "cannot seal record (key exhausted)");
			return;
		}
		v.iov_len = (size_t)len;
		evbuffer_commit_space(out, &v, 1);
		t->stats.wire_bytes_sent += (uint64_t)len;
		t->stats.records_sent++;
		if (is_rekey)
			rekey_frame_sealed(t);
	}
	if (session_path_held_back(t->path)) {
		struct timeval tv = {0, TUNNEL_RETRY_MS * 1000};
		event_add(t->retry_ev, &tv);
	}
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

/* What reading more records could add to: control frames and records that
 * have not left for the kernel yet. */
static size_t backlog(const struct tunnel *t)
{
	return evbuffer_get_length(bufferevent_get_output(t->bev)) +
	       (t->session != NULL ? session_ctrl_queued(t->session) : 0);
}

static void on_read(struct bufferevent *bev, void *arg);

static void on_write(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;
	t->last_drain_ms = now_ms();
	/* The output is down to its low watermark: a good moment to resume,
	 * before flush() refills it from the control queue. */
	bool resume = t->read_stopped && t->state == TUNNEL_UP && backlog(t) <= TUNNEL_READ_RESUME;
	if (resume) {
		t->read_stopped = false;
		bufferevent_enable(bev, EV_READ);
	}
	flush(t);
	/* Records read before the stop are still in the input buffer. */
	if (resume)
		on_read(bev, t);
}

/* Sends one handshake message framed as u16 length | message. */
static void send_handshake(struct tunnel *t, const uint8_t *msg, size_t len)
{
	uint8_t hdr[2];
	bytes_store_be16(hdr, (uint16_t)len);
	bufferevent_write(t->bev, hdr, 2);
	bufferevent_write(t->bev, msg, len);
}

/*
 * What this side announces in its hello: in place of its configured session
 * window, the session credit it can grant now (session_initial_credit; the
 * session starts with it too).
 */
static struct session_params announced_params(struct tunnel *t)
{
	t->cfg.params.initial_credit = session_initial_credit(t->cfg.params.session_window);
	struct session_params p = t->cfg.params;
	if (p.initial_credit != 0)
		p.session_window = p.initial_credit;
	p.initial_credit = 0;
	return p;
}

static uint64_t wire_bytes(const struct tunnel *t)
{
	return t->stats.wire_bytes_sent + t->stats.wire_bytes_received;
}

/* The rekey state, chained from the finished handshake t->hs. */
static int start_rekey(struct tunnel *t)
{
	uint8_t secret[HANDSHAKE_HASH_LEN];
	struct rekey_config rc = {t->cfg.rekey_after_ms, t->cfg.rekey_bytes, t->cfg.dead_after_ms};
	if (handshake_rekey_secret(t->hs, secret) != WM_OK)
		return WM_ERR_STATE;
	t->rekey = rekey_new(t->is_client, secret, t->tx, t->rx, &rc, now_ms());
	sodium_memzero(secret, sizeof(secret));
	return t->rekey != NULL ? WM_OK : WM_ERR_NOMEM;
}

/* Budgets and the unanswered-exchange deadline; closes the tunnel on failure. */
static int tick_rekey(struct tunnel *t)
{
	if (t->rekey == NULL)
		return WM_OK;
	int rc = rekey_tick(t->rekey, now_ms(), wire_bytes(t));
	if (rc != WM_OK) {
		log_peer_warn("tunnel %s: rekey unanswered for %u ms (%s); closing", t->peer,
			      t->cfg.dead_after_ms, rekey_state_name(t->rekey));
		counters.rekey_timeout++;
		tunnel_close(t, "rekey unanswered");
	}
	return rc;
}

/* A REKEY frame waiting to go out, encoded at buf; it travels alone in its
 * record so that the key switch after it falls on a record boundary. */
static size_t fill_rekey_frame(struct tunnel *t, uint8_t *buf)
{
	struct frame f;
	if (t->rekey == NULL || !rekey_next_frame(t->rekey, &f))
		return 0;
	int n = frame_encode(&f, buf, RECORD_PLAINTEXT_MAX);
	assert(n > 0);
	return (size_t)n;
}

static void note_rekeys(struct tunnel *t)
{
	uint64_t n = rekey_count(t->rekey);
	if (n == t->stats.rekeys)
		return;
	t->stats.rekeys = n;
	log_debug("tunnel %s: rekeyed (%llu so far)", t->peer, (unsigned long long)n);
}

static void rekey_frame_sealed(struct tunnel *t)
{
	rekey_frame_sent(t->rekey, now_ms());
	note_rekeys(t);
}

/* A REKEY frame from the peer; last = it ends its record. */
static int on_rekey_frame(struct tunnel *t, const struct frame *f, bool last)
{
	/* A peer that did not announce rekeying has no business sending REKEY. */
	int rc = t->rekey != NULL ? rekey_on_frame(t->rekey, f, last, now_ms()) : WM_ERR_MALFORMED;
	if (rc != WM_OK) {
		log_peer_warn("tunnel %s: REKEY step %u %s; closing", t->peer, f->flags,
			      rc == WM_ERR_LIMIT ? "faster than allowed" : "out of turn");
		counters.protocol_error++;
		tunnel_close(t, "protocol error");
		return rc;
	}
	event_active(t->flush_ev, EV_TIMEOUT, 1);
	return WM_OK;
}

/* Keys from the handshake, then the session the owner attaches it to
 * (attach ran already and gave ts). */
static int start_session(struct tunnel *t, struct tsession *ts)
{
	uint8_t send_key[HANDSHAKE_KEY_LEN], recv_key[HANDSHAKE_KEY_LEN];
	if (handshake_split(t->hs, send_key, recv_key) != WM_OK)
		return WM_ERR_STATE;
	t->tx = record_cipher_new(send_key);
	t->rx = record_cipher_new(recv_key);
	sodium_memzero(send_key, sizeof(send_key));
	sodium_memzero(recv_key, sizeof(recv_key));
	if (t->tx == NULL || t->rx == NULL || (t->peer_rekeys && start_rekey(t) != WM_OK))
		return WM_ERR_NOMEM;
	if (!t->peer_rekeys)
		log_info("tunnel %s: peer does not rekey (older version); keys stay for the "
			 "tunnel's lifetime",
			 t->peer);
	handshake_free(t->hs);
	t->hs = NULL;
	t->path = tsession_attach(ts, t);
	if (t->path == NULL)
		return WM_ERR_LIMIT;
	t->ts = ts;
	t->session = tsession_session(ts);
	/* Every tunnel of an owner has the same configuration. */
	session_set_duplicate(t->session, t->cfg.duplicate);
	session_set_queue_cap(t->session, t->cfg.queue_cap);
	session_set_peer_big_data(t->session, t->peer_big_data);
	if (tsession_tunnels(ts) == 1) {
		t->codec = compress_choose(t->cfg.compress, 0);
		session_set_codec(t->session, t->codec);
	}
	t->state = TUNNEL_UP;
	return WM_OK;
}

/* The owner's session for this tunnel; NULL closes it. */
static struct tsession *attach(struct tunnel *t, const struct session_params *peer, uint64_t *epoch)
{
	if (t->h.attach == NULL)
		return NULL;
	return t->h.attach(t, &t->cfg.params, peer, epoch, t->h.arg);
}

static void server_on_msg1(struct tunnel *t, const uint8_t *msg, size_t len)
{
	uint8_t payload[HANDSHAKE_PAYLOAD_MAX];
	uint8_t out[HANDSHAKE_MSG_MAX];
	struct hello_client hello;

	/* Cheap checks first: junk and strangers cost a hash, not an X25519. */
	if (handshake_check_msg1(t->cfg.mac1_key, msg, len) != WM_OK) {
		log_peer_info(
		    "tunnel %s: refused: first message fails its MAC (not a wanmux client "
		    "for this server key/PSK)",
		    t->peer);
		counters.bad_mac++;
		tunnel_close(t, "bad first message");
		return;
	}
	if (t->h.admit != NULL) {
		uint8_t reply[HANDSHAKE_COOKIE_REPLY_LEN];
		int rc = t->h.admit(t, msg, len, reply, sizeof(reply), t->h.arg);
		if (rc > 0 && !t->cookie_done) {
			/* Under load: prove the address first, pay for X25519 later. */
			t->cookie_done = true;
			counters.cookie_replies++;
			send_handshake(t, reply, (size_t)rc);
			return;
		}
		if (rc != 0) {
			counters.bad_mac2++;
			tunnel_close(t, rc > 0 ? "no valid cookie MAC after a cookie reply"
					       : "no valid cookie MAC under load");
			return;
		}
	}
	counters.responder_x25519++;
	t->hs = handshake_responder_new(t->cfg.local->priv, t->cfg.psk);
	if (t->hs == NULL) {
		tunnel_close(t, "out of memory");
		return;
	}
	int n = handshake_read_msg1(t->hs, msg, len, payload, sizeof(payload), t->peer_pub);
	if (n < 0) {
		log_peer_info("tunnel %s: refused: handshake failed (%s)", t->peer, wm_strerror(n));
		counters.bad_handshake++;
		tunnel_close(t, "handshake failed");
		return;
	}
	if (hello_client_decode(payload, (size_t)n, &hello) != WM_OK) {
		log_peer_info("tunnel %s: refused: unsupported client hello", t->peer);
		counters.bad_handshake++;
		tunnel_close(t, "bad hello");
		return;
	}
	memcpy(t->cfg.session_id, hello.session_id, HELLO_SESSION_ID_LEN);
	t->peer_rekeys = (hello.flags & HELLO_FLAG_REKEY) != 0;
	t->peer_big_data = (hello.flags & HELLO_FLAG_BIG_DATA) != 0;
	if ((hello.flags & HELLO_FLAG_SESSIONS) == 0) {
		log_peer_warn("tunnel %s: refused: the client runs an older protocol without "
			      "sessions across tunnels; upgrade wanmux-client",
			      t->peer);
		counters.bad_handshake++;
		tunnel_close(t, "client too old");
		return;
	}
	int rc = t->h.authorize != NULL ? t->h.authorize(t, t->peer_pub, &hello, t->h.arg)
					: WM_ERR_UNAUTHORIZED;
	if (rc != WM_OK) {
		tunnel_close(t, wm_strerror(rc));
		return;
	}
	struct hello_server mine = {
	    .version = HELLO_VERSION, .flags = HELLO_FLAGS_OURS, .params = announced_params(t)};
	struct tsession *ts = attach(t, &hello.params, &mine.epoch);
	if (ts == NULL) {
		tunnel_close(t, "no session for it");
		return;
	}
	uint8_t reply[HELLO_SERVER_LEN];
	n = hello_server_encode(&mine, reply, sizeof(reply));
	if (n == HELLO_SERVER_LEN)
		n = handshake_write_msg2(t->hs, reply, sizeof(reply), out, sizeof(out));
	if (n < 0 || start_session(t, ts) != WM_OK) {
		tunnel_close(t, "handshake failed");
		return;
	}
	send_handshake(t, out, (size_t)n);
	if (t->h.on_up != NULL)
		t->h.on_up(t, t->h.arg);
}

static void client_send_msg1(struct tunnel *t, const uint8_t *cookie);

/* The server is under load: send msg1 again (fresh keys and timestamp),
 * this time with mac2 made with the cookie it sent. Once per connection. */
static void client_on_cookie(struct tunnel *t, const uint8_t *msg, size_t len)
{
	uint8_t cookie[HANDSHAKE_COOKIE_LEN];
	if (t->cookie_done || handshake_read_cookie_reply(t->hs, msg, len, cookie) != WM_OK) {
		tunnel_close(t, t->cookie_done ? "server sent a second cookie reply"
					       : "bad cookie reply from server");
		return;
	}
	t->cookie_done = true;
	counters.cookie_retries++;
	log_info("tunnel %s: server under load: retrying the handshake with its cookie", t->peer);
	handshake_free(t->hs);
	t->hs = NULL;
	client_send_msg1(t, cookie);
	sodium_memzero(cookie, sizeof(cookie));
}

static void client_on_msg2(struct tunnel *t, const uint8_t *msg, size_t len)
{
	if (handshake_is_cookie_reply(msg, len)) {
		client_on_cookie(t, msg, len);
		return;
	}
	uint8_t payload[HANDSHAKE_PAYLOAD_MAX];
	struct hello_server hello;
	int n = handshake_read_msg2(t->hs, msg, len, payload, sizeof(payload));
	if (n < 0) {
		log_peer_warn(
		    "tunnel %s: handshake failed: %s (wrong --server-key or --psk, or this "
		    "client's key is not authorized?)",
		    t->peer, wm_strerror(n));
		tunnel_close(t, "handshake failed");
		return;
	}
	if (hello_server_decode(payload, (size_t)n, &hello) != WM_OK) {
		tunnel_close(t, "unsupported server hello");
		return;
	}
	memcpy(t->peer_pub, t->cfg.server_pub, KEYS_LEN);
	t->peer_rekeys = (hello.flags & HELLO_FLAG_REKEY) != 0;
	t->peer_big_data = (hello.flags & HELLO_FLAG_BIG_DATA) != 0;
	if ((hello.flags & HELLO_FLAG_SESSIONS) == 0) {
		log_error("tunnel %s: the server runs an older protocol without sessions "
			  "across tunnels; upgrade wanmux-server",
			  t->peer);
		tunnel_close(t, "server too old");
		return;
	}
	struct tsession *ts = attach(t, &hello.params, &hello.epoch);
	if (ts == NULL || start_session(t, ts) != WM_OK) {
		tunnel_close(t, "cannot start session");
		return;
	}
	if (t->h.on_up != NULL)
		t->h.on_up(t, t->h.arg);
	flush(t);
}

static void client_send_msg1(struct tunnel *t, const uint8_t *cookie)
{
	struct hello_client mine = {
	    .version = HELLO_VERSION, .tunnel_no = t->cfg.tunnel_no, .flags = HELLO_FLAGS_OURS};
	uint8_t hello[HELLO_CLIENT_LEN];
	uint8_t out[HANDSHAKE_MSG_MAX];
	tai64n_now(mine.timestamp);
	memcpy(mine.session_id, t->cfg.session_id, HELLO_SESSION_ID_LEN);
	mine.params = announced_params(t);
	if (hello_client_encode(&mine, hello, sizeof(hello)) != HELLO_CLIENT_LEN) {
		tunnel_close(t, "cannot build hello");
		return;
	}
	t->hs = handshake_initiator_new(t->cfg.local->priv, t->cfg.server_pub, t->cfg.psk);
	if (t->hs == NULL) {
		tunnel_close(t, "out of memory");
		return;
	}
	if (cookie != NULL)
		handshake_set_cookie(t->hs, cookie);
	int n = handshake_write_msg1(t->hs, hello, sizeof(hello), out, sizeof(out));
	if (n < 0) {
		tunnel_close(t, "cannot build handshake");
		return;
	}
	t->state = TUNNEL_HANDSHAKE;
	send_handshake(t, out, (size_t)n);
}

/* The next PING: a new random opaque, so an answer to an earlier one or a
 * guess no longer counts. */
static void queue_ping(struct tunnel *t)
{
	t->ping_pending = true;
	t->ping_awaited = false;
	randombytes_buf(&t->ping_opaque, sizeof(t->ping_opaque));
	t->ping_queued_us = now_us();
}

static void on_pong(struct tunnel *t, uint64_t opaque)
{
	uint64_t now = now_us();
	if (!t->ping_awaited || opaque != t->ping_opaque || t->ping_queued_us > now)
		return;
	t->ping_awaited = false;
	uint64_t rtt = now - t->ping_queued_us;
	if (rtt > UINT32_MAX)
		rtt = UINT32_MAX;
	t->srtt_us =
	    t->srtt_us == 0 ? (uint32_t)rtt : (uint32_t)((7 * (uint64_t)t->srtt_us + rtt) / 8);
}

/* Decrypts one record and hands its frames over. rec is writable. */
static void on_record(struct tunnel *t, uint8_t *rec, size_t rec_len)
{
	int n = record_open(t->rx, rec, rec_len, rec + RECORD_HEADER_LEN);
	if (n < 0) {
		log_peer_warn("tunnel %s: record fails authentication; closing", t->peer);
		counters.bad_record++;
		tunnel_close(t, "bad record");
		return;
	}
	t->stats.wire_bytes_received += rec_len;
	t->stats.records_received++;
	t->last_rx_ms = now_ms();
	t->awaiting_since_ms = 0;
	const uint8_t *p = rec + RECORD_HEADER_LEN;
	size_t left = (size_t)n;
	while (left > 0 && t->state == TUNNEL_UP) {
		struct frame f;
		size_t used;
		int rc = frame_decode(p, left, &f, &used);
		if (rc != WM_OK) {
			log_peer_warn("tunnel %s: malformed frame in record; closing", t->peer);
			counters.protocol_error++;
			tunnel_close(t, "protocol error");
			return;
		}
		if (f.type == FRAME_PING) {
			/* Only the newest PING is answered. */
			t->pong_pending = true;
			t->pong_opaque = f.u.opaque;
			tunnel_kick(t);
		} else if (f.type == FRAME_PONG) {
			on_pong(t, f.u.opaque);
		} else if (f.type == FRAME_REKEY) {
			if (on_rekey_frame(t, &f, used == left) != WM_OK)
				return;
		} else if (f.type == FRAME_LISTEN &&
			   !limit_take(&t->listens, TUNNEL_LISTEN_RATE, 2 * TUNNEL_LISTEN_RATE,
				       limit_now_ms())) {
			char detail[NETADDR_STR_MAX + 48];
			snprintf(detail, sizeof(detail), "tunnel %s, request %u refused", t->peer,
				 f.stream_id);
			limit_hit(&listen_counter, detail);
			counters.listen_limited++;
			struct frame r = {.type = FRAME_LISTEN_RESULT, .stream_id = f.stream_id};
			r.u.error = FRAME_ERR_STREAM_LIMIT;
			session_send_control(t->session, &r);
		} else {
			rc = session_on_frame(t->session, t->path, &f);
			if (rc == WM_ERR_LIMIT) {
				/* The session can no longer keep the protocol: it
				 * ends, with every tunnel it has. */
				counters.backlog++;
				tsession_fail(t->ts,
					      "control queue or reorder buffer over its cap");
				return;
			}
			if (rc != WM_OK) {
				log_peer_warn("tunnel %s: %s frame on stream %u: %s; closing its "
					      "session",
					      t->peer, frame_type_name(f.type), f.stream_id,
					      wm_strerror(rc));
				counters.protocol_error++;
				tsession_fail(t->ts, "protocol error");
				return;
			}
		}
		p += used;
		left -= used;
	}
	if (t->state == TUNNEL_UP && t->rekey != NULL) {
		rekey_record_opened(t->rekey, now_ms());
		note_rekeys(t);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct tunnel *t = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	/* Up to a whole record more per wake-up than libevent's 4 KiB. */
	if (t->state == TUNNEL_UP && !t->read_stopped)
		sockread_more(bev, RECORD_CIPHERTEXT_MAX + RECORD_HEADER_LEN);
	while (t->state == TUNNEL_HANDSHAKE || t->state == TUNNEL_UP) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[2];
		if (avail < 2)
			break;
		evbuffer_copyout(in, hdr, 2);
		size_t len = bytes_load_be16(hdr);
		if (t->state == TUNNEL_HANDSHAKE && len > HANDSHAKE_MSG_MAX) {
			log_peer_info("tunnel %s: refused: oversized handshake message", t->peer);
			counters.bad_handshake++;
			tunnel_close(t, "bad handshake size");
			return;
		}
		if (avail < 2 + len)
			break;
		if (t->state == TUNNEL_UP && backlog(t) > TUNNEL_READ_STOP) {
			/* The peer is not taking what we owe it: stop reading
			 * (on_write resumes). */
			t->read_stopped = true;
			bufferevent_disable(bev, EV_READ);
			break;
		}
		uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(2 + len));
		if (p == NULL) {
			tunnel_close(t, "out of memory");
			return;
		}
		if (t->state == TUNNEL_HANDSHAKE) {
			if (t->is_client)
				client_on_msg2(t, p + 2, len);
			else
				server_on_msg1(t, p + 2, len);
		} else if (record_peek(p, 2 + len) < 0) {
			log_peer_warn("tunnel %s: record shorter than its tag; closing", t->peer);
			counters.bad_record++;
			tunnel_close(t, "bad record length");
		} else {
			on_record(t, p, 2 + len);
		}
		evbuffer_drain(in, 2 + len);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct tunnel *t = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int fd = bufferevent_getfd(bev);
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
			netaddr_format((struct sockaddr *)&ss, t->peer, sizeof(t->peer));
		netaddr_tune(fd, &t->cfg.tuning);
		client_send_msg1(t, NULL);
		return;
	}
	char why[200];
	if ((what & BEV_EVENT_EOF) && t->is_client && t->state == TUNNEL_HANDSHAKE) {
		/* The server says nothing to a client it refuses; this is the one
		 * place the client can point at the likely cause. */
		snprintf(why, sizeof(why),
			 "server closed the connection during the handshake: is this client's "
			 "key in its authorized keys, and are --server-key and --psk right?");
	} else if (what & BEV_EVENT_EOF) {
		snprintf(why, sizeof(why), "connection closed by peer");
	} else {
		int dns_err = bufferevent_socket_get_dns_error(bev);
		if (dns_err != 0)
			snprintf(why, sizeof(why), "cannot resolve: %s",
				 evutil_gai_strerror(dns_err));
		else
			snprintf(why, sizeof(why), "%s",
				 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	}
	tunnel_close(t, why);
}

/* Update the codec from the link rate the kernel measures (auto mode). */
static void update_codec(struct tunnel *t)
{
	if (t->cfg.compress != COMPRESS_AUTO || t->session == NULL)
		return;
	struct tcp_info ti;
	if (read_tcp_info(t, &ti) <
	    offsetof(struct tcp_info, tcpi_delivery_rate) + sizeof(ti.tcpi_delivery_rate))
		return;
	/* An app-limited sample says little about the link; keep the codec. */
	if (ti.tcpi_delivery_rate_app_limited || ti.tcpi_delivery_rate == 0)
		return;
	enum compress_mode c = compress_choose(COMPRESS_AUTO, ti.tcpi_delivery_rate * 8);
	if (c != t->codec) {
		log_info("tunnel %s: link delivers %.1f Mbit/s: compressing with %s", t->peer,
			 (double)ti.tcpi_delivery_rate * 8 / 1e6, compress_mode_name(c));
		t->codec = c;
		session_set_codec(t->session, c);
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;
	uint64_t now = now_ms();
	if (t->state == TUNNEL_CONNECTING || t->state == TUNNEL_HANDSHAKE) {
		if (now - t->started_ms > t->cfg.handshake_timeout_ms) {
			if (!t->is_client) {
				log_peer_info("tunnel %s: refused: no handshake within %u ms",
					      t->peer, t->cfg.handshake_timeout_ms);
				counters.handshake_timeout++;
			}
			tunnel_close(t, "handshake timed out");
		}
		return;
	}
	if (t->state != TUNNEL_UP)
		return;
	if (evbuffer_get_length(bufferevent_get_output(t->bev)) > TUNNEL_OUT_LOW &&
	    now - t->last_drain_ms > t->cfg.dead_after_ms) {
		/* Whatever it sends, a peer that takes nothing of what we owe it
		 * (PONGs, answers, data) for this long is as good as dead, and
		 * keeps our backlog and its reader's stop in place. */
		close_backlogged(t, "peer does not read its output");
		return;
	}
	if (now - t->last_rx_ms > t->cfg.dead_after_ms) {
		log_peer_warn("tunnel %s: nothing heard for %llu ms; closing", t->peer,
			      (unsigned long long)(now - t->last_rx_ms));
		counters.silent++;
		tunnel_close(t, "peer silent");
		return;
	}
	struct frame rekey_frame;
	if (tick_rekey(t) != WM_OK)
		return;
	if (t->rekey != NULL && rekey_next_frame(t->rekey, &rekey_frame))
		event_active(t->flush_ev, EV_TIMEOUT, 1);
	/* An idle path's snapshot stays fresh for placement. ACKs held back to
	 * coalesce them leave now (the session's first tunnel ticks for it). */
	sample_path(t);
	if (tsession_tunnel(t->ts, 0) == t)
		session_tick(t->session);
	if (now - t->last_ping_ms < t->cfg.ping_interval_ms)
		return;
	t->last_ping_ms = now;
	if (t->awaiting_since_ms == 0)
		t->awaiting_since_ms = now;
	update_codec(t);
	queue_ping(t);
	tunnel_kick(t);
}

static struct tunnel *tunnel_new(struct event_base *base, const struct tunnel_config *cfg,
				 const struct tunnel_handlers *handlers, bool is_client)
{
	struct tunnel *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->base = base;
	t->cfg = *cfg;
	t->h = *handlers;
	t->is_client = is_client;
	t->started_ms = now_ms();
	t->last_rx_ms = t->started_ms;
	t->last_drain_ms = t->started_ms;
	t->flush_ev = event_new(base, -1, 0, flush_cb, t);
	t->retry_ev = evtimer_new(base, flush_cb, t);
	t->free_ev = event_new(base, -1, 0, free_cb, t);
	/* A short tick keeps the handshake deadline and liveness checks tight;
	 * PINGs go out every ping_interval_ms. */
	t->timer_ev = event_new(base, -1, EV_PERSIST, timer_cb, t);
	if (t->flush_ev == NULL || t->retry_ev == NULL || t->free_ev == NULL ||
	    t->timer_ev == NULL) {
		tunnel_destroy(t);
		return NULL;
	}
	struct timeval tv = {TUNNEL_TICK_MS / 1000, (TUNNEL_TICK_MS % 1000) * 1000};
	event_add(t->timer_ev, &tv);
	return t;
}

static void setup_bev(struct tunnel *t)
{
	bufferevent_setcb(t->bev, on_read, on_write, on_event, t);
	bufferevent_setwatermark(t->bev, EV_WRITE, TUNNEL_OUT_LOW, 0);
	bufferevent_set_max_single_read(t->bev, TUNNEL_IO_CHUNK);
	bufferevent_set_max_single_write(t->bev, TUNNEL_IO_CHUNK);
	bufferevent_enable(t->bev, EV_READ | EV_WRITE);
}

struct tunnel *tunnel_connect(struct event_base *base, struct evdns_base *dns,
			      const struct netaddr_hostport *server,
			      const struct tunnel_config *cfg,
			      const struct tunnel_handlers *handlers)
{
	struct tunnel *t = tunnel_new(base, cfg, handlers, true);
	if (t == NULL)
		return NULL;
	snprintf(t->peer, sizeof(t->peer), "%s:%u", server->host, server->port);
	t->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (t->bev == NULL) {
		tunnel_destroy(t);
		return NULL;
	}
	setup_bev(t);
	t->state = TUNNEL_CONNECTING;
	/* Errors (DNS, refused) arrive through on_event, after we return. */
	if (connect_tunnel(t->bev, dns, server, &cfg->tuning) != 0)
		tunnel_close(t, "cannot start connecting");
	return t;
}

struct tunnel *tunnel_accept(struct event_base *base, int fd, const struct sockaddr *peer,
			     const struct tunnel_config *cfg,
			     const struct tunnel_handlers *handlers)
{
	struct tunnel *t = tunnel_new(base, cfg, handlers, false);
	if (t == NULL) {
		close(fd);
		return NULL;
	}
	netaddr_format(peer, t->peer, sizeof(t->peer));
	netaddr_tune(fd, &cfg->tuning);
	t->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (t->bev == NULL) {
		close(fd);
		tunnel_destroy(t);
		return NULL;
	}
	setup_bev(t);
	t->state = TUNNEL_HANDSHAKE;
	return t;
}

struct session *tunnel_session(const struct tunnel *t)
{
	return t->state == TUNNEL_UP ? t->session : NULL;
}

void tunnel_probe(struct tunnel *t, uint32_t quiet_ms)
{
	uint64_t now = now_ms();
	if (t->state != TUNNEL_UP || t->awaiting_since_ms != 0 || t->ping_pending ||
	    now - t->last_rx_ms < quiet_ms)
		return;
	t->last_ping_ms = now;
	t->awaiting_since_ms = now;
	queue_ping(t);
	tunnel_kick(t);
}

uint64_t tunnel_unanswered_ms(const struct tunnel *t)
{
	if (t->state != TUNNEL_UP || t->awaiting_since_ms == 0)
		return 0;
	return now_ms() - t->awaiting_since_ms;
}

const char *tunnel_peer_name(const struct tunnel *t)
{
	return t->peer;
}

const uint8_t *tunnel_peer_key(const struct tunnel *t)
{
	return t->peer_pub;
}

const uint8_t *tunnel_session_id(const struct tunnel *t)
{
	return t->cfg.session_id;
}

size_t tunnel_queued(const struct tunnel *t)
{
	return t->bev != NULL ? evbuffer_get_length(bufferevent_get_output(t->bev)) : 0;
}

uint32_t tunnel_rtt_us(const struct tunnel *t)
{
	return t->srtt_us;
}

const struct tunnel_stats *tunnel_get_stats(const struct tunnel *t)
{
	return &t->stats;
}

const struct session_path_stats *tunnel_get_path_stats(const struct tunnel *t)
{
	return t->path != NULL ? session_path_get_stats(t->path) : &t->final_path_stats;
}

struct tsession *tunnel_tsession(const struct tunnel *t)
{
	return t->ts;
}

int tunnel_tcp_info(const struct tunnel *t, struct tunnel_tcp_info *out)
{
	memset(out, 0, sizeof(*out));
	out->state = tunnel_state_name(t->state);
	out->age_ms = now_ms() - t->started_ms;
	out->srtt_us = t->srtt_us;
	int fd = t->bev != NULL ? bufferevent_getfd(t->bev) : -1;
	if (fd < 0)
		return WM_ERR_STATE;
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
		return WM_ERR_IO;
	out->tcp_rtt_us = ti.tcpi_rtt;
	out->cwnd = ti.tcpi_snd_cwnd;
	out->mss = ti.tcpi_snd_mss;
	out->delivery_rate = ti.tcpi_delivery_rate;
	out->retransmits = ti.tcpi_total_retrans;
	return WM_OK;
}
