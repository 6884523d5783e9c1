/*
 * The client's tunnel pool: N tunnels to the server, each reconnected with
 * exponential backoff and jitter; new streams go to the least busy tunnel;
 * connections that arrive while no tunnel is up wait a bounded time.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/log.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000

static void slot_connect(struct slot *sl);
static void pending_on_close(void *arg);

static void add_tunnel_totals(struct client_totals *tot, struct tunnel *t)
{
	const struct tunnel_stats *ts = tunnel_get_stats(t);
	const struct session_stats *ss = tunnel_get_session_stats(t);
	tot->wire_up += ts->wire_bytes_sent;
	tot->wire_down += ts->wire_bytes_received;
	tot->rekeys += ts->rekeys;
	tot->raw_up += ss->raw_bytes_sent;
	tot->raw_down += ss->raw_bytes_received;
	tot->payload_up += ss->payload_bytes_sent;
	tot->payload_down += ss->payload_bytes_received;
}

/* The up tunnel with the least queued bytes: streams spread, and a new
 * stream avoids a tunnel busy with bulk. */
static struct tunnel *pick_tunnel(struct client *cl)
{
	struct tunnel *best = NULL;
	size_t best_q = 0;
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		/* sl->up stays set until on_down, which runs from the loop after
		 * tunnel_close; the tunnel has no session from tunnel_close on, so
		 * a tunnel closed earlier in this loop pass is not up any more. A
		 * tunnel whose server sent GOAWAY takes no new streams. */
		struct session *s = sl->up ? tunnel_session(sl->t) : NULL;
		if (s == NULL || session_goaway_received(s))
			continue;
		size_t q = tunnel_queued(sl->t) + session_stream_count(s) * 1024;
		if (best == NULL || q < best_q) {
			best = sl->t;
			best_q = q;
		}
	}
	return best;
}

static void open_now(struct client *cl, struct tunnel *t, struct relay *r,
		     const struct frame_addr *target)
{
	struct session_stream *st =
	    session_stream_open(tunnel_session(t), target, relay_source(r), r);
	if (st == NULL) {
		log_peer_warn("%s: stream limit reached on tunnel %s", relay_name(r),
			      tunnel_peer_name(t));
		relay_fail(r, FRAME_ERR_STREAM_LIMIT);
		return;
	}
	relay_bind(r, st);
	relay_set_access_addr(r, tunnel_peer_name(t));
	relay_end_request(r);
	relay_start(r);
	cl->totals.connections++;
	if (log_get_level() >= LOG_LEVEL_DEBUG) {
		char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
		log_debug("%s: stream %u to %s via tunnel %s", relay_name(r), session_stream_id(st),
			  client_target_name(target, name, sizeof(name)), tunnel_peer_name(t));
	}
}

void client_open(struct client *cl, struct relay *r, const struct frame_addr *target)
{
	char tname[NETADDR_STR_MAX + FRAME_NAME_MAX];
	relay_set_access_target(r, client_target_name(target, tname, sizeof(tname)));
	struct tunnel *t = pick_tunnel(cl);
	if (t != NULL) {
		open_now(cl, t, r, target);
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
		struct tunnel *t = pick_tunnel(cl);
		if (t == NULL)
			return;
		struct pending *p = TAILQ_FIRST(&cl->pending);
		struct frame_addr target = p->target;
		struct relay *r = pending_remove(p);
		open_now(cl, t, r, &target);
	}
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	time_t now = time(NULL);
	size_t streams = 0;
	client_pool_reap(cl, &streams);
	while (!TAILQ_EMPTY(&cl->pending)) {
		struct pending *p = TAILQ_FIRST(&cl->pending);
		if (now - p->since < CLIENT_PENDING_TIMEOUT_S)
			return;
		struct relay *r = pending_remove(p);
		log_peer_warn("%s: no tunnel to the server for %d s; closing", relay_name(r),
			      CLIENT_PENDING_TIMEOUT_S);
		relay_fail(r, FRAME_ERR_TUNNEL_LOST);
	}
}

static void on_tunnel_up(struct tunnel *t, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	sl->up = true;
	sl->attempts = 0;
	cl->totals.tunnels_up++;
	log_info("tunnel %u to %s up", sl->no, tunnel_peer_name(t));
	if (!cl->ever_up) {
		cl->ever_up = true;
		log_info("connected to %s:%u", cl->server.host, cl->server.port);
	}
	client_reverse_on_up(sl, t);
	drain_pending(cl);
}

/*
 * The slot's tunnel moves aside to drain and a new one is dialled for new
 * streams; connections arriving meanwhile wait in the pending queue. One
 * draining tunnel per slot: a second GOAWAY waits for the first to finish.
 */
static void replace_draining(struct slot *sl)
{
	struct client *cl = sl->cl;
	/* A tunnel closed earlier in this loop pass has no session any more. */
	struct session *s = sl->t != NULL && sl->up ? tunnel_session(sl->t) : NULL;
	if (cl->stopping || sl->old != NULL || s == NULL || !session_goaway_received(s))
		return;
	log_info("tunnel %u to %s: server sent GOAWAY; its %zu streams finish there, new "
		 "streams wait for a new tunnel",
		 sl->no, tunnel_peer_name(sl->t), session_stream_count(s));
	sl->old = sl->t;
	sl->t = NULL;
	sl->up = false;
	sl->attempts = 0;
	cl->goaways++;
	slot_connect(sl);
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
		sl->old = NULL;
		if (!cl->stopping)
			log_info("tunnel %u to %s down after GOAWAY: %s", sl->no,
				 tunnel_peer_name(t), reason);
		replace_draining(sl);
		return;
	}
	bool was_up = sl->up;
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
	/* Exponential backoff with jitter, so tunnels (and clients) that lost the
	 * server together do not come back in lockstep. */
	unsigned shift = sl->attempts < 8 ? sl->attempts : 8;
	uint32_t base_ms = BACKOFF_MIN_MS << shift;
	if (base_ms > BACKOFF_MAX_MS)
		base_ms = BACKOFF_MAX_MS;
	uint32_t delay = base_ms / 2 + randombytes_uniform(base_ms);
	sl->attempts++;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	event_add(sl->retry_ev, &tv);
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
	relay_stream_callbacks(&h.streams);
	h.streams.on_open = client_reverse_on_open;
	h.streams.on_control = client_reverse_on_control;
	h.streams.on_goaway = on_goaway;
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
		struct tunnel *ts[2] = {sl->t, sl->old};
		if (sl->retry_ev != NULL)
			event_del(sl->retry_ev);
		for (size_t k = 0; k < 2; k++) {
			if (ts[k] == NULL)
				continue;
			if (tunnel_session(ts[k]) != NULL)
				session_goaway(tunnel_session(ts[k]));
			else
				tunnel_close(ts[k], "client stopping");
		}
	}
}

/* Streams done and records gone: closing now cuts nothing. */
static bool reap_one(struct tunnel *t, bool draining, size_t *streams)
{
	struct session *s = tunnel_session(t);
	if (s == NULL)
		return !draining;
	size_t n = session_stream_count(s);
	*streams += n;
	if (!draining && !session_goaway_received(s) && !session_goaway_sent(s))
		return true;
	if (n > 0 || tunnel_queued(t) > 0)
		return true;
	tunnel_close(t, "drained");
	return false;
}

size_t client_pool_reap(struct client *cl, size_t *streams)
{
	size_t open = 0;
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		if (sl->t != NULL && reap_one(sl->t, cl->draining, streams))
			open++;
		if (sl->old != NULL && reap_one(sl->old, cl->draining, streams))
			open++;
	}
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
