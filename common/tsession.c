/*
 * A session and its tunnels: the event-loop half of a session (tsession.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sodium.h>

#include "wanmux/compress.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/relay.h"
#include "wanmux/tsession.h"
#include "wanmux/tunnel.h"

struct tsession {
	struct event_base *base;
	struct tsession_config cfg;
	struct session *s;
	struct compress_ctx *cctx;
	struct budget_pool pool;
	uint8_t id[HELLO_SESSION_ID_LEN];
	uint64_t epoch;
	struct tunnel *tunnels[SESSION_PATHS_MAX];
	size_t ntunnels;
	bool had_tunnel;
	uint64_t detached_at_ms; /* when the last tunnel left; 0 while attached */
	uint64_t resumes;
	struct event *resume_ev; /* the resume timeout, armed with no tunnel */
	struct event *end_ev;	 /* on_end from the loop */
	char end_reason[160];
	bool ending;
	struct tsession *live_prev, *live_next; /* all sessions, for the counters */
};

/* Of sessions already freed; tsession_get_counters adds the live ones. */
static struct tsession_counters counters;
static struct tsession *live;

/* What a session's engine counted that the metrics sum over sessions. */
static void add_engine_counters(struct tsession_counters *c, const struct session_stats *st)
{
	c->resent_bytes += st->resent_bytes;
	c->dup_bytes += st->dup_bytes;
	c->dup_frames += st->dup_frames;
	c->dup_frames_sent += st->dup_frames_sent;
	c->dup_wire_bytes += st->dup_wire_bytes;
	c->resumes_refused += st->resumes_refused;
	c->loss_events += st->loss_events;
}

void tsession_get_counters(struct tsession_counters *out)
{
	*out = counters;
	for (const struct tsession *ts = live; ts != NULL; ts = ts->live_next)
		if (ts->s != NULL)
			add_engine_counters(out, session_get_stats(ts->s));
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The session has something to send: every tunnel may pull, and the one
 * whose socket drains first takes it. */
static void on_writable(struct session *s, void *arg)
{
	struct tsession *ts = arg;
	(void)s;
	for (size_t i = 0; i < ts->ntunnels; i++)
		tunnel_kick(ts->tunnels[i]);
}

/* The owner's callbacks get the owner's arg, not the tsession. */
static int on_open(struct session *s, struct session_stream *st, const struct frame_addr *target,
		   void *arg)
{
	struct tsession *ts = arg;
	return ts->cfg.cb.on_open(s, st, target, ts->cfg.arg);
}

static int on_control(struct session *s, const struct frame *f, void *arg)
{
	struct tsession *ts = arg;
	return ts->cfg.cb.on_control(s, f, ts->cfg.arg);
}

static void on_goaway(struct session *s, void *arg)
{
	struct tsession *ts = arg;
	if (ts->cfg.cb.on_goaway != NULL)
		ts->cfg.cb.on_goaway(s, ts->cfg.arg);
}

static void end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tsession *ts = arg;
	(void)fd;
	(void)what;
	ts->cfg.on_end(ts, ts->end_reason, ts->cfg.arg);
}

static void end_soon(struct tsession *ts, const char *reason)
{
	if (ts->ending)
		return;
	ts->ending = true;
	snprintf(ts->end_reason, sizeof(ts->end_reason), "%s", reason);
	event_active(ts->end_ev, EV_TIMEOUT, 1);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tsession *ts = arg;
	(void)fd;
	(void)what;
	char why[160];
	counters.expired++;
	snprintf(why, sizeof(why), "no tunnel for %u s (--resume-timeout)",
		 ts->cfg.resume_timeout_ms / 1000u);
	end_soon(ts, why);
}

void tsession_config_init(struct tsession_config *c, enum session_role role,
			  const struct tunnel_config *tc, void *arg)
{
	memset(c, 0, sizeof(*c));
	c->role = role;
	relay_stream_callbacks(&c->cb);
	c->arg = arg;
	c->pool_limit = tc->pool_limit;
	c->resume_timeout_ms = tc->resume_timeout_ms;
}

struct tsession *tsession_new(struct event_base *base, const struct tsession_config *cfg,
			      const struct session_params *local, const struct session_params *peer,
			      const uint8_t id[HELLO_SESSION_ID_LEN])
{
	struct tsession *ts = calloc(1, sizeof(*ts));
	if (ts == NULL)
		return NULL;
	ts->base = base;
	ts->cfg = *cfg;
	ts->live_next = live;
	if (live != NULL)
		live->live_prev = ts;
	live = ts;
	memcpy(ts->id, id, HELLO_SESSION_ID_LEN);
	while (ts->epoch == 0)
		randombytes_buf(&ts->epoch, sizeof(ts->epoch));
	budget_pool_init(&ts->pool, cfg->pool_limit);
	/* zlib's and LZ4's state is about 300 KiB (90 KiB touched): only for
	 * a peer that completed a handshake. */
	ts->cctx = compress_ctx_new();
	ts->resume_ev = evtimer_new(base, resume_cb, ts);
	ts->end_ev = event_new(base, -1, 0, end_cb, ts);
	struct session_callbacks cb = cfg->cb;
	cb.on_writable = on_writable;
	cb.on_open = cfg->cb.on_open != NULL ? on_open : NULL;
	cb.on_control = cfg->cb.on_control != NULL ? on_control : NULL;
	cb.on_goaway = on_goaway;
	if (ts->cctx != NULL && ts->resume_ev != NULL && ts->end_ev != NULL)
		ts->s = session_new(cfg->role, local, peer, &cb, ts, ts->cctx);
	if (ts->s == NULL) {
		tsession_free(ts);
		return NULL;
	}
	session_set_pool(ts->s, &ts->pool);
	/* Until its first tunnel attaches (at once, unless that attach fails),
	 * the session waits as if it had lost one: it cannot be held for ever. */
	uint32_t wait_ms = cfg->resume_timeout_ms > 0 ? cfg->resume_timeout_ms : 10000u;
	struct timeval tv = {wait_ms / 1000u, (wait_ms % 1000u) * 1000u};
	event_add(ts->resume_ev, &tv);
	counters.created++;
	return ts;
}

/* One line per session at its end: what placement and duplication did, so
 * a benchmark run can tell where the frames of its streams went. */
static void log_summary(const struct tsession *ts)
{
	if (ts->s == NULL)
		return;
	const struct session_stats *st = session_get_stats(ts->s);
	char paths[512];
	size_t at = 0;
	paths[0] = '\0';
	for (size_t i = 0; i < ts->ntunnels && at < sizeof(paths); i++) {
		const struct session_path_stats *ps = tunnel_get_path_stats(ts->tunnels[i]);
		int n = snprintf(paths + at, sizeof(paths) - at, " %zu:%llu/%llu/%llu", i,
				 (unsigned long long)ps->data_bytes,
				 (unsigned long long)ps->fresh_bytes,
				 (unsigned long long)ps->dup_frames);
		if (n < 0)
			break;
		at += (size_t)n;
	}
	log_info(
	    "session end: resent=%llu dup_sent=%llu dup_wire=%llu dup_recv=%llu loss_events=%llu "
	    "deferrals=%llu timeouts=%llu overflow=%llu queue_capped=%llu "
	    "paths(data/fresh/dups)%s",
	    (unsigned long long)st->resent_bytes, (unsigned long long)st->dup_frames_sent,
	    (unsigned long long)st->dup_wire_bytes, (unsigned long long)st->dup_frames,
	    (unsigned long long)st->loss_events, (unsigned long long)st->placement_deferrals,
	    (unsigned long long)st->placement_timeouts, (unsigned long long)st->overflow_bytes,
	    (unsigned long long)st->queue_capped, paths);
}

void tsession_free(struct tsession *ts)
{
	if (ts == NULL)
		return;
	log_summary(ts);
	/* The tunnels first: they must not pull from a freed session. */
	while (ts->ntunnels > 0) {
		struct tunnel *t = ts->tunnels[--ts->ntunnels];
		tunnel_orphan(t, "session ended");
	}
	if (ts->s != NULL) {
		counters.streams_reset += session_stream_count(ts->s);
		add_engine_counters(&counters, session_get_stats(ts->s));
	}
	if (ts->live_prev != NULL)
		ts->live_prev->live_next = ts->live_next;
	else if (live == ts)
		live = ts->live_next;
	if (ts->live_next != NULL)
		ts->live_next->live_prev = ts->live_prev;
	session_free(ts->s);
	if (ts->resume_ev != NULL)
		event_free(ts->resume_ev);
	if (ts->end_ev != NULL)
		event_free(ts->end_ev);
	compress_ctx_free(ts->cctx);
	free(ts);
}

struct session_path *tsession_attach(struct tsession *ts, struct tunnel *t)
{
	if (ts->ntunnels == SESSION_PATHS_MAX || ts->ending)
		return NULL;
	struct session_path *p = session_path_add(ts->s, t);
	if (p == NULL)
		return NULL;
	if (ts->ntunnels == 0 && ts->had_tunnel) {
		ts->resumes++;
		counters.resumed++;
	}
	ts->tunnels[ts->ntunnels++] = t;
	ts->had_tunnel = true;
	ts->detached_at_ms = 0;
	event_del(ts->resume_ev);
	return p;
}

void tsession_detach(struct tsession *ts, struct tunnel *t, struct session_path *path)
{
	for (size_t i = 0; i < ts->ntunnels; i++) {
		if (ts->tunnels[i] == t) {
			memmove(&ts->tunnels[i], &ts->tunnels[i + 1],
				(ts->ntunnels - i - 1) * sizeof(ts->tunnels[0]));
			ts->ntunnels--;
			break;
		}
	}
	if (path != NULL)
		session_path_lost(ts->s, path);
	if (ts->ntunnels > 0 || ts->ending)
		return;
	ts->detached_at_ms = mono_ms();
	/* A peer that said GOAWAY and has nothing open left is done, not lost. */
	if (session_goaway_received(ts->s) && session_stream_count(ts->s) == 0) {
		end_soon(ts, "the peer finished (GOAWAY, no stream open) and closed its tunnels");
		return;
	}
	if (ts->cfg.resume_timeout_ms == 0) {
		counters.expired++;
		end_soon(ts, "no tunnel left (resume disabled, --resume-timeout 0)");
		return;
	}
	struct timeval tv = {ts->cfg.resume_timeout_ms / 1000u,
			     (ts->cfg.resume_timeout_ms % 1000u) * 1000u};
	event_add(ts->resume_ev, &tv);
}

void tsession_fail(struct tsession *ts, const char *reason)
{
	if (ts->ending)
		return;
	counters.failed++;
	for (size_t i = 0; i < ts->ntunnels; i++)
		tunnel_close(ts->tunnels[i], reason);
	end_soon(ts, reason);
}

struct session *tsession_session(const struct tsession *ts)
{
	return ts->s;
}

const uint8_t *tsession_id(const struct tsession *ts)
{
	return ts->id;
}

size_t tsession_tunnels(const struct tsession *ts)
{
	return ts->ntunnels;
}

struct tunnel *tsession_tunnel(const struct tsession *ts, size_t i)
{
	return i < ts->ntunnels ? ts->tunnels[i] : NULL;
}

struct compress_ctx *tsession_compress(const struct tsession *ts)
{
	return ts->cctx;
}

uint64_t tsession_epoch(const struct tsession *ts)
{
	return ts->epoch;
}

void tsession_set_epoch(struct tsession *ts, uint64_t epoch)
{
	ts->epoch = epoch;
}

uint64_t tsession_detached_ms(const struct tsession *ts)
{
	return ts->detached_at_ms != 0 ? mono_ms() - ts->detached_at_ms : 0;
}

uint64_t tsession_resumes(const struct tsession *ts)
{
	return ts->resumes;
}
