/*
 * The client's tunnel pool: N tunnels to the server, each reconnected with
 * exponential backoff and jitter, all carrying one session (tsession.h), so
 * a stream uses every tunnel and outlives any one of them; connections that
 * arrive while no tunnel is up wait a bounded time.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/log.h"
#include "wanmux/tsession.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define BACKOFF_RESUMING_MS 4000
/* A tunnel that stayed up this long was a working one: when it goes, the
 * slot dials again at once. One closed sooner (a server or a middlebox that
 * cuts every tunnel after its handshake, a server that answers every tunnel
 * with a new epoch) counts as a failed attempt, or the slot would dial in a
 * tight loop. */
#define BACKOFF_STABLE_MS 1000

static void slot_connect(struct slot *sl);
static void pending_on_close(void *arg);

static void add_tunnel_totals(struct client_totals *tot, struct tunnel *t)
{
	const struct tunnel_stats *ts = tunnel_get_stats(t);
	tot->wire_up += ts->wire_bytes_sent;
	tot->wire_down += ts->wire_bytes_received;
	tot->rekeys += ts->rekeys;
}

static void add_session_totals(struct client_totals *tot, const struct tsession *ts)
{
	const struct session_stats *ss = session_get_stats(tsession_session(ts));
	tot->raw_up += ss->raw_bytes_sent;
	tot->raw_down += ss->raw_bytes_received;
	tot->payload_up += ss->payload_bytes_sent;
	tot->payload_down += ss->payload_bytes_received;
	tot->resent_bytes += ss->resent_bytes;
}

/* "0123abcd": the first bytes of a session id, for logs. */
static const char *short_id(const uint8_t *id, char out[17])
{
	sodium_bin2hex(out, 17, id, 8);
	return out;
}

/* Ends ts (its streams reset) and forgets it; reason for the log. */
static void end_session(struct client *cl, struct tsession *ts, const char *reason)
{
	char hex[17];
	size_t n = session_stream_count(tsession_session(ts));
	if (!cl->stopping || n > 0)
		log_warn("session %s to %s:%u ended: %s; %zu streams reset",
			 short_id(tsession_id(ts), hex), cl->server.host, cl->server.port, reason,
			 n);
	if (ts == cl->ts) {
		cl->ts = NULL;
		/* A new session gets a new id, so no tunnel can ever join the
		 * server's copy of this one again. */
		randombytes_buf(cl->tcfg.session_id, sizeof(cl->tcfg.session_id));
	}
	if (ts == cl->old_ts)
		cl->old_ts = NULL;
	add_session_totals(&cl->totals, ts);
	cl->totals.streams_reset += n;
	admin_session_closed(session_get_stats(tsession_session(ts)));
	tsession_free(ts);
}

static void on_session_end(struct tsession *ts, const char *reason, void *arg)
{
	struct client *cl = arg;
	if (strstr(reason, "--resume-timeout") != NULL)
		cl->totals.sessions_expired++;
	end_session(cl, ts, reason);
}

static void on_goaway(struct session *s, void *arg);

/* The slot dials at once (stable: its last tunnel had been working) or
 * after its backoff; either way one more attempt. */
static void schedule_dial(struct slot *sl, bool stable)
{
	struct client *cl = sl->cl;
	uint32_t delay = 0;
	if (!stable) {
		unsigned shift = sl->attempts < 8 ? sl->attempts : 8;
		uint32_t base_ms = BACKOFF_MIN_MS << shift;
		/* While a session waits to resume, its streams are on hold:
		 * keep trying every few seconds rather than every half minute. */
		uint32_t cap = cl->ts != NULL ? BACKOFF_RESUMING_MS : BACKOFF_MAX_MS;
		if (base_ms > cap)
			base_ms = cap;
		delay = base_ms / 2 + randombytes_uniform(base_ms);
	}
	sl->attempts++;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	event_add(sl->retry_ev, &tv);
}

static struct tsession *new_session(struct client *cl, const struct session_params *local,
				    const struct session_params *peer, uint64_t epoch)
{
	struct tsession_config c;
	tsession_config_init(&c, SESSION_CLIENT, &cl->tcfg, cl);
	c.cb.on_open = client_reverse_on_open;
	c.cb.on_control = client_reverse_on_control;
	c.cb.on_goaway = on_goaway;
	c.on_end = on_session_end;
	struct tsession *ts = tsession_new(cl->base, &c, local, peer, cl->tcfg.session_id);
	if (ts != NULL) {
		tsession_set_epoch(ts, epoch);
		cl->listens_unanswered = 0;
	}
	return ts;
}

/*
 * A tunnel finished its handshake: it joins the client's session. The
 * server's epoch says whether it still holds that session: another epoch
 * than ours means it lost it (restarted, or the session expired there), and
 * the streams we kept for it can never complete.
 */
static struct tsession *on_attach(struct tunnel *t, const struct session_params *local,
				  const struct session_params *peer, uint64_t *epoch, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	if (cl->stopping)
		return NULL;
	/* Dialled for a session that has ended since: dial again. */
	if (memcmp(tunnel_session_id(t), cl->tcfg.session_id, HELLO_SESSION_ID_LEN) != 0)
		return NULL;
	if (cl->ts != NULL && tsession_epoch(cl->ts) != *epoch) {
		cl->totals.sessions_lost++;
		end_session(cl, cl->ts,
			    "the server does not know session (it restarted, or the session "
			    "expired there)");
		/* end_session chose a new id; this tunnel's server session has
		 * the old one and nothing in it yet: keep that id. */
		memcpy(cl->tcfg.session_id, tunnel_session_id(t), HELLO_SESSION_ID_LEN);
	}
	if (cl->ts == NULL)
		cl->ts = new_session(cl, local, peer, *epoch);
	return cl->ts;
}

/* The session new streams go to: up (a tunnel attached) and not going away. */
static struct tsession *pick_session(struct client *cl)
{
	struct tsession *ts = cl->ts;
	if (ts == NULL || tsession_tunnels(ts) == 0 ||
	    session_goaway_received(tsession_session(ts)))
		return NULL;
	return ts;
}

static void open_now(struct client *cl, struct tsession *ts, struct relay *r,
		     const struct frame_addr *target)
{
	struct session_stream *st =
	    session_stream_open(tsession_session(ts), target, relay_source(r), r);
	if (st == NULL) {
		log_peer_warn("%s: stream limit reached on the session to %s:%u", relay_name(r),
			      cl->server.host, cl->server.port);
		relay_fail(r, FRAME_ERR_STREAM_LIMIT);
		return;
	}
	struct tunnel *t = tsession_tunnel(ts, 0);
	relay_bind(r, st);
	relay_set_access_addr(r, t != NULL ? tunnel_peer_name(t) : NULL);
	relay_end_request(r);
	relay_start(r);
	cl->totals.connections++;
	if (log_get_level() >= LOG_LEVEL_DEBUG) {
		char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
		log_debug("%s: stream %u to %s via tunnel %s", relay_name(r), session_stream_id(st),
			  client_target_name(target, name, sizeof(name)),
			  t != NULL ? tunnel_peer_name(t) : "(none yet)");
	}
}

void client_open(struct client *cl, struct relay *r, const struct frame_addr *target)
{
	char tname[NETADDR_STR_MAX + FRAME_NAME_MAX];
	relay_set_access_target(r, client_target_name(target, tname, sizeof(tname)));
	struct tsession *ts = pick_session(cl);
	if (ts != NULL) {
		open_now(cl, ts, r, target);
		return;
	}
	/* No tunnel yet: hold the connection (the kernel buffers what the
	 * application sends) until one comes up or the wait times out. */
	struct pending *p = cl->npending < CLIENT_PENDING_MAX ? calloc(1, sizeof(*p)) : NULL;
	if (p == NULL) {
		log_peer_warn("%s: no tunnel to the server and too many waiting; closing",
			      relay_name(r));
		relay_fail(r, FRAME_ERR_TUNNEL_LOST);
		return;
	}
	/* Reading stops (EOF and data wait in the kernel), but a reply the
	 * front end wrote may still be going out, and that write can fail
	 * (the client reset): the relay then closes while it waits, and the
	 * watch takes it out of the queue. */
	relay_pause(r);
	relay_clear_deadline(r);
	p->cl = cl;
	p->r = r;
	p->target = *target;
	p->since = time(NULL);
	relay_watch(r, &p->watch, pending_on_close, p);
	TAILQ_INSERT_TAIL(&cl->pending, p, link);
	cl->npending++;
}

/* Takes p out of the queue and frees it; returns its relay (still open
 * unless the relay closing is what removes p). */
static struct relay *pending_remove(struct pending *p)
{
	struct relay *r = p->r;
	relay_unwatch(&p->watch);
	TAILQ_REMOVE(&p->cl->pending, p, link);
	p->cl->npending--;
	free(p);
	return r;
}

static void pending_on_close(void *arg)
{
	pending_remove(arg);
}

static void drain_pending(struct client *cl)
{
	while (!TAILQ_EMPTY(&cl->pending)) {
		struct tsession *ts = pick_session(cl);
		if (ts == NULL)
			return;
		struct pending *p = TAILQ_FIRST(&cl->pending);
		struct frame_addr target = p->target;
		struct relay *r = pending_remove(p);
		open_now(cl, ts, r, &target);
	}
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	time_t now = time(NULL);
	size_t streams = 0;
	client_pool_reap(cl, &streams);
	/* While a session waits for its tunnels, new connections wait as long
	 * as its streams do (--resume-timeout); with no session, a bounded
	 * time. */
	time_t limit = CLIENT_PENDING_TIMEOUT_S;
	if (cl->ts != NULL && cl->tcfg.resume_timeout_ms / 1000u > (uint32_t)limit)
		limit = (time_t)(cl->tcfg.resume_timeout_ms / 1000u);
	while (!TAILQ_EMPTY(&cl->pending)) {
		struct pending *p = TAILQ_FIRST(&cl->pending);
		if (now - p->since < limit)
			return;
		struct relay *r = pending_remove(p);
		log_peer_warn("%s: no tunnel to the server for %lld s; closing", relay_name(r),
			      (long long)limit);
		relay_fail(r, FRAME_ERR_TUNNEL_LOST);
	}
}

static void on_tunnel_up(struct tunnel *t, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	sl->up = true;
	sl->up_ms = limit_now_ms();
	cl->totals.tunnels_up++;
	log_info("tunnel %u to %s up", sl->no, tunnel_peer_name(t));
	if (!cl->ever_up) {
		cl->ever_up = true;
		log_info("connected to %s:%u", cl->server.host, cl->server.port);
	}
	client_reverse_on_up(cl, t);
	drain_pending(cl);
}

/*
 * The server sent GOAWAY: the session moves aside to drain (its streams run
 * on over its tunnels) and every slot dials a tunnel for a new session for
 * new streams; connections arriving meanwhile wait in the pending queue. One
 * draining session at a time: a second GOAWAY waits for the first to end.
 */
static void replace_draining(struct client *cl)
{
	struct tsession *ts = cl->ts;
	if (cl->stopping || cl->old_ts != NULL || ts == NULL ||
	    !session_goaway_received(tsession_session(ts)))
		return;
	log_info("server sent GOAWAY (%s:%u, draining): the %zu streams of its session finish "
		 "there, new streams wait for a new session",
		 cl->server.host, cl->server.port, session_stream_count(tsession_session(ts)));
	cl->old_ts = ts;
	cl->ts = NULL;
	randombytes_buf(cl->tcfg.session_id, sizeof(cl->tcfg.session_id));
	cl->goaways++;
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		if (sl->t == NULL || tunnel_tsession(sl->t) != ts)
			continue;
		/* A server that sends GOAWAY on every session as soon as it
		 * starts must not make every slot dial in a tight loop. */
		bool stable = sl->up && limit_now_ms() - sl->up_ms >= BACKOFF_STABLE_MS;
		if (stable)
			sl->attempts = 0;
		sl->old = sl->t;
		sl->t = NULL;
		sl->up = false;
		event_del(sl->retry_ev);
		schedule_dial(sl, stable);
	}
}

static void on_goaway(struct session *s, void *arg)
{
	replace_draining(arg);
}

static void on_tunnel_down(struct tunnel *t, const char *reason, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	if (t == sl->old) {
		add_tunnel_totals(&cl->totals, t);
		admin_tunnel_closed(t);
		sl->old = NULL;
		if (!cl->stopping)
			log_info("tunnel %u to %s down after GOAWAY: %s", sl->no,
				 tunnel_peer_name(t), reason);
		/* Nobody dials for a draining session: its last tunnel gone,
		 * its streams cannot finish. */
		if (cl->old_ts != NULL && tsession_tunnels(cl->old_ts) == 0)
			end_session(cl, cl->old_ts, "its last tunnel closed while draining");
		replace_draining(cl);
		return;
	}
	if (t != sl->t) {
		/* A draining tunnel that a newer one replaced as sl->old while it
		 * closed (its session had ended, then the next one got GOAWAY):
		 * the slot's tunnel is another one, which must not be forgotten. */
		add_tunnel_totals(&cl->totals, t);
		admin_tunnel_closed(t);
		return;
	}
	bool was_up = sl->up;
	bool stable = was_up && limit_now_ms() - sl->up_ms >= BACKOFF_STABLE_MS;
	if (stable)
		sl->attempts = 0;
	if (was_up) {
		add_tunnel_totals(&cl->totals, t);
		admin_tunnel_closed(t);
	}
	sl->t = NULL;
	sl->up = false;
	if (cl->stopping)
		return;
	if (was_up)
		log_warn("tunnel %u to %s down: %s", sl->no, tunnel_peer_name(t), reason);
	else if (sl->attempts == 0 || log_get_level() >= LOG_LEVEL_DEBUG)
		log_warn("tunnel %u to %s:%u: %s", sl->no, cl->server.host, cl->server.port,
			 reason);
	/* A lost tunnel that had been working is dialled again at once (its
	 * session's streams wait for it), then with exponential backoff and
	 * jitter, so tunnels (and clients) that lost the server together do not
	 * come back in lockstep. */
	schedule_dial(sl, stable);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	slot_connect(arg);
}

static void slot_connect(struct slot *sl)
{
	struct client *cl = sl->cl;
	struct tunnel_handlers h;
	memset(&h, 0, sizeof(h));
	h.on_up = on_tunnel_up;
	h.on_down = on_tunnel_down;
	h.attach = on_attach;
	h.arg = sl;
	struct tunnel_config cfg = cl->tcfg;
	cfg.tunnel_no = sl->no;
	sl->t = tunnel_connect(cl->base, cl->dns, &cl->server, &cfg, &h);
	if (sl->t == NULL) {
		struct timeval tv = {1, 0};
		event_add(sl->retry_ev, &tv);
	}
}

void client_pool_start(struct client *cl)
{
	TAILQ_INIT(&cl->pending);
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		sl->cl = cl;
		sl->no = (uint8_t)i;
		sl->retry_ev = evtimer_new(cl->base, on_retry, sl);
		if (sl->retry_ev != NULL)
			slot_connect(sl);
	}
	cl->pending_timer = event_new(cl->base, -1, EV_PERSIST, on_pending_timer, cl);
	struct timeval one = {1, 0};
	if (cl->pending_timer != NULL)
		event_add(cl->pending_timer, &one);
}

static void fail_pending(struct client *cl);

void client_pool_stop(struct client *cl)
{
	cl->stopping = true;
	fail_pending(cl);
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		if (sl->retry_ev != NULL)
			event_del(sl->retry_ev);
		if (sl->t != NULL) {
			if (sl->up) {
				add_tunnel_totals(&cl->totals, sl->t);
				sl->up = false;
			}
			tunnel_close(sl->t, "client stopping");
		}
		if (sl->old != NULL)
			tunnel_close(sl->old, "client stopping");
	}
	/* The streams end with their sessions; the tunnels close from the loop. */
	if (cl->ts != NULL)
		end_session(cl, cl->ts, "client stopping");
	if (cl->old_ts != NULL)
		end_session(cl, cl->old_ts, "client stopping");
}

static void fail_pending(struct client *cl)
{
	while (!TAILQ_EMPTY(&cl->pending))
		relay_close(pending_remove(TAILQ_FIRST(&cl->pending)), true);
}

void client_pool_drain(struct client *cl)
{
	cl->stopping = true;
	fail_pending(cl);
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		if (sl->retry_ev != NULL)
			event_del(sl->retry_ev);
		/* A tunnel still in its handshake has nothing to drain. */
		if (sl->t != NULL && tunnel_tsession(sl->t) == NULL)
			tunnel_close(sl->t, "client stopping");
	}
	struct tsession *all[2] = {cl->ts, cl->old_ts};
	for (size_t k = 0; k < 2; k++)
		if (all[k] != NULL)
			session_goaway(tsession_session(all[k]));
}

/* Streams done and records gone: ending the session now cuts nothing.
 * Returns whether ts is still open. */
static bool reap_one(struct client *cl, struct tsession *ts, bool draining, size_t *streams)
{
	struct session *s = tsession_session(ts);
	size_t n = session_stream_count(s);
	*streams += n;
	if (!draining && !session_goaway_received(s) && !session_goaway_sent(s))
		return true;
	if (n > 0 || session_queued(s) > 0)
		return true;
	for (size_t i = 0; i < tsession_tunnels(ts); i++)
		if (tunnel_queued(tsession_tunnel(ts, i)) > 0)
			return true;
	end_session(cl, ts, "drained");
	return false;
}

size_t client_pool_reap(struct client *cl, size_t *streams)
{
	size_t open = 0;
	if (cl->ts != NULL && reap_one(cl, cl->ts, cl->draining, streams))
		open++;
	if (cl->old_ts != NULL && reap_one(cl, cl->old_ts, cl->draining, streams))
		open++;
	return open;
}

void client_pool_free(struct client *cl)
{
	for (unsigned i = 0; i < cl->nslots; i++)
		if (cl->slots[i].retry_ev != NULL)
			event_free(cl->slots[i].retry_ev);
	if (cl->pending_timer != NULL)
		event_free(cl->pending_timer);
}
