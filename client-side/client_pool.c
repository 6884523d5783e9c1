/*
 * The client's tunnel pool: for each --server, N tunnels, each reconnected
 * with exponential backoff and jitter, all carrying that server's one
 * session (tsession.h), so a stream uses every tunnel and outlives any one
 * of them; connections that arrive while no server is up wait a bounded
 * time. --server-policy chooses the server of each new stream: failover
 * (the first one up, in order; the others keep one warm tunnel each) or
 * spread (the one with the most room; every server gets all N tunnels).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/log.h"
#include "wanmux/placement.h"
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
#define SERVER_TICK_MS 250

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

const char *client_server_state_name(enum server_state st)
{
	switch (st) {
	case SERVER_CONNECTING:
		return "connecting";
	case SERVER_UP:
		return "up";
	case SERVER_RECONNECTING:
		return "reconnecting";
	case SERVER_DOWN:
		return "down";
	}
	return "?";
}

size_t client_server_streams(const struct client_server *srv)
{
	size_t n = 0;
	if (srv->ts != NULL)
		n += session_stream_count(tsession_session(srv->ts));
	if (srv->old_ts != NULL)
		n += session_stream_count(tsession_session(srv->old_ts));
	return n;
}

size_t client_server_tunnels_up(const struct client_server *srv)
{
	size_t n = 0;
	for (unsigned i = 0; i < srv->cl->nslots; i++)
		n += srv->slots[i].up;
	return n;
}

/* Ends ts (its streams reset) and forgets it; reason for the log. */
static void end_session(struct client_server *srv, struct tsession *ts, const char *reason)
{
	struct client *cl = srv->cl;
	char hex[17];
	size_t n = session_stream_count(tsession_session(ts));
	if (!cl->stopping || n > 0)
		log_warn("session %s to %s ended: %s; %zu streams reset",
			 short_id(tsession_id(ts), hex), srv->name, reason, n);
	if (ts == srv->ts) {
		srv->ts = NULL;
		/* A new session gets a new id, so no tunnel can ever join the
		 * server's copy of this one again. */
		randombytes_buf(srv->session_id, sizeof(srv->session_id));
	}
	if (ts == srv->old_ts)
		srv->old_ts = NULL;
	add_session_totals(&cl->totals, ts);
	cl->totals.streams_reset += n;
	admin_session_closed(session_get_stats(tsession_session(ts)));
	tsession_free(ts);
}

static void on_session_end(struct tsession *ts, const char *reason, void *arg)
{
	struct client_server *srv = arg;
	if (strstr(reason, "--resume-timeout") != NULL)
		srv->cl->totals.sessions_expired++;
	end_session(srv, ts, reason);
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
		 * keep trying every few seconds rather than every half minute.
		 * With several servers the same holds for a server that is
		 * down: failover goes back to it soon after it returns. */
		uint32_t cap =
		    sl->srv->ts != NULL || cl->nservers > 1 ? BACKOFF_RESUMING_MS : BACKOFF_MAX_MS;
		if (base_ms > cap)
			base_ms = cap;
		delay = base_ms / 2 + randombytes_uniform(base_ms);
	}
	sl->attempts++;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	event_add(sl->retry_ev, &tv);
}

/* Failover: the server that gets every tunnel, the first one neither down
 * nor silent (NULL when none). The others keep their first slot's tunnel. */
static struct client_server *preferred_server(const struct client *cl)
{
	for (size_t i = 0; i < cl->nservers; i++)
		if (cl->servers[i].state != SERVER_DOWN && !cl->servers[i].silent)
			return &cl->servers[i];
	return NULL;
}

/*
 * Whether the slot should hold a tunnel. Failover keeps one warm tunnel to
 * each standby server (slot 0): a standby that is already up takes new
 * streams the moment the active server is lost, with no dial and handshake
 * in the way, and a down server is probed by that slot's dials. The cost is
 * one TCP connection and its keepalives per standby, and one of the
 * standby's --max-tunnels-per-key. A lone server's slots all dial, up or
 * down, as they always did.
 */
static bool slot_wanted(const struct slot *sl)
{
	const struct client *cl = sl->cl;
	if (cl->stopping)
		return false;
	if (cl->policy == CLIENT_POLICY_SPREAD || sl->no == 0 || cl->nservers == 1)
		return true;
	return preferred_server(cl) == sl->srv;
}

/* Every wanted slot without a tunnel or a dial planned dials now. */
static void fill_slots(struct client *cl)
{
	for (size_t i = 0; i < cl->nservers; i++) {
		for (unsigned k = 0; k < cl->nslots; k++) {
			struct slot *sl = &cl->servers[i].slots[k];
			if (sl->t != NULL || sl->retry_ev == NULL ||
			    evtimer_pending(sl->retry_ev, NULL) || !slot_wanted(sl))
				continue;
			sl->parking = false;
			slot_connect(sl);
		}
	}
}

/* Failover: a standby's tunnels beyond its warm one close once its
 * session has no stream left (the streams stay where they are). */
static void park_spares(struct client *cl)
{
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		if (client_server_streams(srv) > 0)
			continue;
		for (unsigned k = 1; k < cl->nslots; k++) {
			struct slot *sl = &srv->slots[k];
			if (sl->t == NULL || !sl->up || sl->parking || slot_wanted(sl))
				continue;
			sl->parking = true;
			tunnel_close(sl->t, "standby server: one warm tunnel is kept");
		}
	}
}

/* The session new streams go to: up (a tunnel attached), not going away,
 * and, when there is another server to go to, answering. */
static struct tsession *pick_session(const struct client_server *srv)
{
	struct tsession *ts = srv->ts;
	if (ts == NULL || tsession_tunnels(ts) == 0 ||
	    session_goaway_received(tsession_session(ts)))
		return NULL;
	if (srv->silent && srv->cl->nservers > 1)
		return NULL;
	return ts;
}

/* Every tunnel of srv's session waits for an answer to a PING for longer
 * than CLIENT_SERVER_SILENT_MS or 4 of its RTTs and half a second. */
static bool server_silent(const struct client_server *srv)
{
	const struct tsession *ts = srv->ts;
	if (ts == NULL || tsession_tunnels(ts) == 0)
		return false;
	for (size_t i = 0; i < tsession_tunnels(ts); i++) {
		const struct tunnel *t = tsession_tunnel(ts, i);
		/* A PING lost on a long lossy path waits for its retransmission
		 * (an RTO: an RTT and more): not yet a vanished server. */
		uint64_t limit = 4u * (uint64_t)tunnel_rtt_us(t) / 1000u + 500u;
		if (limit < CLIENT_SERVER_SILENT_MS)
			limit = CLIENT_SERVER_SILENT_MS;
		if (tunnel_unanswered_ms(t) <= limit)
			return false;
	}
	return true;
}

static void check_silent(struct client *cl)
{
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		bool silent = srv->state == SERVER_UP && server_silent(srv);
		if (silent == srv->silent)
			continue;
		srv->silent = silent;
		if (silent) {
			srv->silences++;
			log_warn(
			    "server %s not answering: no reply to PING on any of its %zu "
			    "tunnels for %llu ms; new streams go to another server",
			    srv->name, tsession_tunnels(srv->ts),
			    (unsigned long long)tunnel_unanswered_ms(tsession_tunnel(srv->ts, 0)));
		} else {
			log_info("server %s answers again", srv->name);
		}
		fill_slots(cl);
	}
}

/* Spread: how long a new stream's first bytes take on srv, roughly: its
 * best round trip plus what already waits to leave at the rate its
 * tunnels deliver. */
static uint64_t server_cost_us(const struct client_server *srv)
{
	const struct tsession *ts = srv->ts;
	uint64_t rtt = 0, rate = 0;
	uint64_t queued = session_queued(tsession_session(ts));
	for (size_t i = 0; i < tsession_tunnels(ts); i++) {
		const struct tunnel *t = tsession_tunnel(ts, i);
		struct tunnel_tcp_info ti;
		uint64_t r = tunnel_rtt_us(t);
		if (tunnel_tcp_info(t, &ti) == 0) {
			if (r == 0)
				r = ti.tcp_rtt_us;
			rate += ti.delivery_rate;
		}
		if (r != 0 && (rtt == 0 || r < rtt))
			rtt = r;
		queued += tunnel_queued(t);
	}
	if (rtt == 0)
		rtt = PLACEMENT_DEFAULT_RTT_US;
	if (rate == 0)
		rate = 1u << 20; /* no estimate yet: 1 MiB/s */
	return rtt + queued * 1000000u / rate;
}

/* Spread's tie-break: open streams and, so that a server which ends every
 * stream at once does not win every tie, the streams it was given lately
 * (x16 both). */
static uint64_t spread_load(const struct client_server *srv)
{
	return 16u * (uint64_t)client_server_streams(srv) + srv->recent_opens;
}

/*
 * The server for a new stream, or NULL when none is up. Failover: the first
 * up in order. Spread: the lowest cost; servers within the placement margin
 * of the best count as equal, and of those the one with the lowest load
 * (spread_load) wins (in turn on a tie), so idle servers on one LAN share
 * evenly.
 */
static struct client_server *pick_server(struct client *cl)
{
	struct client_server *best = NULL;
	uint64_t best_cost = 0;
	if (cl->policy == CLIENT_POLICY_FAILOVER) {
		for (size_t i = 0; i < cl->nservers; i++)
			if (pick_session(&cl->servers[i]) != NULL)
				return &cl->servers[i];
		return NULL;
	}
	uint64_t cost[CLIENT_SERVERS_MAX] = {0};
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		if (pick_session(srv) == NULL)
			continue;
		cost[i] = server_cost_us(srv);
		if (best == NULL || cost[i] < best_cost) {
			best = srv;
			best_cost = cost[i];
		}
	}
	if (best == NULL)
		return NULL;
	uint64_t fewest = UINT64_MAX;
	size_t ties = 0;
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		if (pick_session(srv) == NULL || placement_clearly_better(best_cost, cost[i]))
			continue;
		uint64_t n = spread_load(srv);
		if (n < fewest) {
			fewest = n;
			ties = 0;
		}
		if (n == fewest)
			ties++;
	}
	uint32_t turn = cl->rr++ % (uint32_t)ties;
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		if (pick_session(srv) == NULL || placement_clearly_better(best_cost, cost[i]) ||
		    spread_load(srv) != fewest)
			continue;
		if (turn-- == 0)
			return srv;
	}
	return best;
}

/* Failover: logs and counts a change of the server new streams go to. */
static void note_target(struct client *cl)
{
	if (cl->policy != CLIENT_POLICY_FAILOVER || cl->stopping)
		return;
	struct client_server *to = pick_server(cl);
	struct client_server *from = cl->current;
	if (to == NULL || to == from)
		return;
	cl->current = to;
	if (from == NULL) {
		if (cl->nservers > 1)
			log_info("new streams go to server %s", to->name);
	} else if (to->no > from->no) {
		cl->failovers++;
		log_warn("failing over from server %s (%s) to %s", from->name,
			 client_server_state_name(from->state), to->name);
	} else if (to->downs == 0 && to->silences == 0) {
		/* Start-up: a later server answered first. */
		log_info("new streams go to server %s, earlier in the list than %s", to->name,
			 from->name);
	} else {
		cl->failbacks++;
		log_info("back to server %s: new streams go there again (streams on %s stay)",
			 to->name, from->name);
	}
}

static void server_down(struct client_server *srv, const char *why)
{
	struct client *cl = srv->cl;
	srv->state = SERVER_DOWN;
	srv->silent = false;
	srv->since_ms = limit_now_ms();
	srv->downs++;
	snprintf(srv->why, sizeof(srv->why), "%s", why);
	log_warn("server %s down: %s", srv->name, why);
	fill_slots(cl); /* failover: the next server gets its tunnels */
}

/* A tunnel of srv went (was_up) or a dial of it failed: the server's state
 * follows from what is left. */
static void server_tunnel_lost(struct client_server *srv, bool was_up, const char *reason)
{
	if (srv->cl->stopping || client_server_tunnels_up(srv) > 0)
		return;
	if (srv->state == SERVER_UP) {
		srv->state = SERVER_RECONNECTING;
		srv->since_ms = limit_now_ms();
		if (srv->cl->nservers > 1)
			log_info("server %s: no tunnel up (%s); reconnecting", srv->name, reason);
	}
	if (!was_up && srv->state != SERVER_DOWN)
		server_down(srv, reason);
}

static struct tsession *new_session(struct client_server *srv, const struct session_params *local,
				    const struct session_params *peer, uint64_t epoch)
{
	struct client *cl = srv->cl;
	struct tsession_config c;
	tsession_config_init(&c, SESSION_CLIENT, &cl->tcfg, srv);
	c.cb.on_open = client_reverse_on_open;
	c.cb.on_control = client_reverse_on_control;
	c.cb.on_goaway = on_goaway;
	c.on_end = on_session_end;
	struct tsession *ts = tsession_new(cl->base, &c, local, peer, srv->session_id);
	if (ts != NULL) {
		tsession_set_epoch(ts, epoch);
		srv->listens_unanswered = 0;
	}
	return ts;
}

/*
 * A tunnel finished its handshake: it joins its server's session. The
 * server's epoch says whether it still holds that session: another epoch
 * than ours means it lost it (restarted, or the session expired there), and
 * the streams we kept for it can never complete.
 */
static struct tsession *on_attach(struct tunnel *t, const struct session_params *local,
				  const struct session_params *peer, uint64_t *epoch, void *arg)
{
	struct slot *sl = arg;
	struct client_server *srv = sl->srv;
	if (sl->cl->stopping)
		return NULL;
	/* Dialled for a session that has ended since: dial again (not a
	 * failure of the server). */
	if (memcmp(tunnel_session_id(t), srv->session_id, HELLO_SESSION_ID_LEN) != 0) {
		sl->stale = true;
		return NULL;
	}
	if (srv->ts != NULL && tsession_epoch(srv->ts) != *epoch) {
		sl->cl->totals.sessions_lost++;
		end_session(srv, srv->ts,
			    "the server does not know session (it restarted, or the session "
			    "expired there)");
		/* end_session chose a new id; this tunnel's server session has
		 * the old one and nothing in it yet: keep that id. */
		memcpy(srv->session_id, tunnel_session_id(t), HELLO_SESSION_ID_LEN);
	}
	if (srv->ts == NULL)
		srv->ts = new_session(srv, local, peer, *epoch);
	return srv->ts;
}

static void open_now(struct client *cl, struct client_server *srv, struct relay *r,
		     const struct frame_addr *target)
{
	struct tsession *ts = srv->ts;
	struct session_stream *st =
	    session_stream_open(tsession_session(ts), target, relay_source(r), r);
	if (st == NULL) {
		log_peer_warn("%s: stream limit reached on the session to %s", relay_name(r),
			      srv->name);
		relay_fail(r, FRAME_ERR_STREAM_LIMIT);
		return;
	}
	struct tunnel *t = tsession_tunnel(ts, 0);
	relay_bind(r, st);
	relay_set_access_addr(r, t != NULL ? tunnel_peer_name(t) : NULL);
	relay_end_request(r);
	relay_start(r);
	cl->totals.connections++;
	srv->streams_opened++;
	if (srv->recent_opens < UINT32_MAX - 16u)
		srv->recent_opens += 16u;
	/* With somewhere else to go, a quiet server is asked at once whether
	 * it is still there: a vanished one stops getting new streams about
	 * CLIENT_SERVER_SILENT_MS after this one, not after the next PING. */
	if (cl->nservers > 1)
		for (size_t i = 0; i < tsession_tunnels(ts); i++)
			tunnel_probe(tsession_tunnel(ts, i), CLIENT_PROBE_QUIET_MS);
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
	struct client_server *srv = pick_server(cl);
	if (srv != NULL) {
		note_target(cl);
		open_now(cl, srv, r, target);
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

/* Waiting connections go to whichever server is up first. */
static void drain_pending(struct client *cl)
{
	while (!TAILQ_EMPTY(&cl->pending)) {
		struct client_server *srv = pick_server(cl);
		if (srv == NULL)
			return;
		struct pending *p = TAILQ_FIRST(&cl->pending);
		struct frame_addr target = p->target;
		struct relay *r = pending_remove(p);
		open_now(cl, srv, r, &target);
	}
}

static bool any_session(const struct client *cl)
{
	for (size_t i = 0; i < cl->nservers; i++)
		if (cl->servers[i].ts != NULL)
			return true;
	return false;
}

/* A server that was up (or never came up) and has had no tunnel for
 * CLIENT_SERVER_LOST_MS is down: its dials hang rather than fail. */
static void check_lost(struct client *cl)
{
	uint64_t now = limit_now_ms();
	for (size_t i = 0; i < cl->nservers; i++) {
		struct client_server *srv = &cl->servers[i];
		if ((srv->state == SERVER_RECONNECTING || srv->state == SERVER_CONNECTING) &&
		    now - srv->since_ms >= CLIENT_SERVER_LOST_MS) {
			char why[96];
			snprintf(why, sizeof(why), "no tunnel %s within %u s",
				 srv->state == SERVER_CONNECTING ? "came up" : "came back",
				 CLIENT_SERVER_LOST_MS / 1000u);
			server_down(srv, why);
		}
	}
}

/* Every SERVER_TICK_MS: server states (silent, lost) and where new
 * streams go follow closely. */
static void on_state_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	if (cl->stopping)
		return;
	for (size_t i = 0; i < cl->nservers; i++)
		cl->servers[i].recent_opens -= (cl->servers[i].recent_opens + 7u) / 8u;
	check_silent(cl);
	check_lost(cl);
	note_target(cl);
	drain_pending(cl);
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	time_t now = time(NULL);
	size_t streams = 0;
	client_pool_reap(cl, &streams);
	if (!cl->stopping)
		park_spares(cl);
	/* While a session waits for its tunnels, new connections wait as long
	 * as its streams do (--resume-timeout); with no session, a bounded
	 * time. */
	time_t limit = CLIENT_PENDING_TIMEOUT_S;
	if (any_session(cl) && cl->tcfg.resume_timeout_ms / 1000u > (uint32_t)limit)
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
	struct client_server *srv = sl->srv;
	sl->up = true;
	sl->up_ms = limit_now_ms();
	cl->totals.tunnels_up++;
	log_info("tunnel %u to %s up", sl->no, tunnel_peer_name(t));
	if (!srv->ever_up) {
		srv->ever_up = true;
		log_info("connected to %s", srv->name);
	} else if (srv->state == SERVER_DOWN) {
		log_info("server %s up again (down %llu s: %s)", srv->name,
			 (unsigned long long)((sl->up_ms - srv->since_ms) / 1000u), srv->why);
	}
	if (srv->state != SERVER_UP) {
		srv->state = SERVER_UP;
		srv->since_ms = sl->up_ms;
		fill_slots(cl); /* failover: back to an earlier server */
	}
	client_reverse_on_up(srv, t);
	drain_pending(cl);
	note_target(cl);
}

/*
 * The server sent GOAWAY: the session moves aside to drain (its streams run
 * on over its tunnels) and every slot dials a tunnel for a new session for
 * new streams; connections arriving meanwhile go to another server or wait
 * in the pending queue. One draining session at a time: a second GOAWAY
 * waits for the first to end.
 */
static void replace_draining(struct client_server *srv)
{
	struct client *cl = srv->cl;
	struct tsession *ts = srv->ts;
	if (cl->stopping || srv->old_ts != NULL || ts == NULL ||
	    !session_goaway_received(tsession_session(ts)))
		return;
	log_info("server sent GOAWAY (%s, draining): the %zu streams of its session finish "
		 "there, new streams wait for a new session",
		 srv->name, session_stream_count(tsession_session(ts)));
	srv->old_ts = ts;
	srv->ts = NULL;
	randombytes_buf(srv->session_id, sizeof(srv->session_id));
	cl->goaways++;
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &srv->slots[i];
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
		if (slot_wanted(sl))
			schedule_dial(sl, stable);
	}
	server_tunnel_lost(srv, true, "GOAWAY");
	note_target(cl);
	drain_pending(cl);
}

static void on_goaway(struct session *s, void *arg)
{
	replace_draining(arg);
}

static void on_tunnel_down(struct tunnel *t, const char *reason, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	struct client_server *srv = sl->srv;
	if (t == sl->old) {
		add_tunnel_totals(&cl->totals, t);
		admin_tunnel_closed(t);
		sl->old = NULL;
		if (!cl->stopping)
			log_info("tunnel %u to %s down after GOAWAY: %s", sl->no,
				 tunnel_peer_name(t), reason);
		/* Nobody dials for a draining session: its last tunnel gone,
		 * its streams cannot finish. */
		if (srv->old_ts != NULL && tsession_tunnels(srv->old_ts) == 0)
			end_session(srv, srv->old_ts, "its last tunnel closed while draining");
		replace_draining(srv);
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
	bool stale = sl->stale;
	sl->stale = false;
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
	if (sl->parking) {
		log_info("tunnel %u to %s closed: %s", sl->no, srv->name, reason);
		sl->parking = false;
		return;
	}
	if (was_up)
		log_warn("tunnel %u to %s down: %s", sl->no, tunnel_peer_name(t), reason);
	else if (sl->attempts == 0 || log_get_level() >= LOG_LEVEL_DEBUG)
		log_warn("tunnel %u to %s: %s", sl->no, srv->name, reason);
	/* A lost tunnel that had been working is dialled again at once (its
	 * session's streams wait for it), then with exponential backoff and
	 * jitter, so tunnels (and clients) that lost the server together do not
	 * come back in lockstep. A standby's spare slot is not dialled. */
	if (slot_wanted(sl))
		schedule_dial(sl, stable || stale);
	if (!stale)
		server_tunnel_lost(srv, was_up, reason);
	note_target(cl);
	drain_pending(cl);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct slot *sl = arg;
	if (slot_wanted(sl))
		slot_connect(sl);
}

static void slot_connect(struct slot *sl)
{
	struct client *cl = sl->cl;
	struct client_server *srv = sl->srv;
	struct tunnel_handlers h;
	memset(&h, 0, sizeof(h));
	h.on_up = on_tunnel_up;
	h.on_down = on_tunnel_down;
	h.attach = on_attach;
	h.arg = sl;
	struct tunnel_config cfg = cl->tcfg;
	cfg.tunnel_no = sl->no;
	memcpy(cfg.server_pub, srv->pub, KEYS_LEN);
	memcpy(cfg.session_id, srv->session_id, sizeof(cfg.session_id));
	sl->t = tunnel_connect(cl->base, cl->dns, &srv->hp, &cfg, &h);
	if (sl->t == NULL) {
		struct timeval tv = {1, 0};
		event_add(sl->retry_ev, &tv);
	}
}

void client_pool_start(struct client *cl)
{
	TAILQ_INIT(&cl->pending);
	uint64_t now = limit_now_ms();
	for (size_t k = 0; k < cl->nservers; k++) {
		struct client_server *srv = &cl->servers[k];
		srv->cl = cl;
		srv->no = (unsigned)k;
		srv->state = SERVER_CONNECTING;
		srv->since_ms = now;
		if (srv->name[0] == '\0')
			snprintf(srv->name, sizeof(srv->name),
				 strchr(srv->hp.host, ':') != NULL ? "[%s]:%u" : "%s:%u",
				 srv->hp.host, srv->hp.port);
		for (unsigned i = 0; i < cl->nslots; i++) {
			struct slot *sl = &srv->slots[i];
			sl->cl = cl;
			sl->srv = srv;
			sl->no = (uint8_t)i;
			sl->retry_ev = evtimer_new(cl->base, on_retry, sl);
		}
	}
	fill_slots(cl);
	cl->pending_timer = event_new(cl->base, -1, EV_PERSIST, on_pending_timer, cl);
	struct timeval one = {1, 0};
	if (cl->pending_timer != NULL)
		event_add(cl->pending_timer, &one);
	cl->state_timer = event_new(cl->base, -1, EV_PERSIST, on_state_timer, cl);
	struct timeval tick = {0, SERVER_TICK_MS * 1000};
	if (cl->state_timer != NULL)
		event_add(cl->state_timer, &tick);
}

static void fail_pending(struct client *cl);

void client_pool_stop(struct client *cl)
{
	cl->stopping = true;
	fail_pending(cl);
	for (size_t k = 0; k < cl->nservers; k++) {
		struct client_server *srv = &cl->servers[k];
		for (unsigned i = 0; i < cl->nslots; i++) {
			struct slot *sl = &srv->slots[i];
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
		/* The streams end with their sessions; the tunnels close from
		 * the loop. */
		if (srv->ts != NULL)
			end_session(srv, srv->ts, "client stopping");
		if (srv->old_ts != NULL)
			end_session(srv, srv->old_ts, "client stopping");
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
	for (size_t k = 0; k < cl->nservers; k++) {
		struct client_server *srv = &cl->servers[k];
		for (unsigned i = 0; i < cl->nslots; i++) {
			struct slot *sl = &srv->slots[i];
			if (sl->retry_ev != NULL)
				event_del(sl->retry_ev);
			/* A tunnel still in its handshake has nothing to drain. */
			if (sl->t != NULL && tunnel_tsession(sl->t) == NULL)
				tunnel_close(sl->t, "client stopping");
		}
		struct tsession *all[2] = {srv->ts, srv->old_ts};
		for (size_t j = 0; j < 2; j++)
			if (all[j] != NULL)
				session_goaway(tsession_session(all[j]));
	}
}

/* Streams done and records gone: ending the session now cuts nothing.
 * Returns whether ts is still open. */
static bool reap_one(struct client_server *srv, struct tsession *ts, bool draining, size_t *streams)
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
	end_session(srv, ts, "drained");
	return false;
}

size_t client_pool_reap(struct client *cl, size_t *streams)
{
	size_t open = 0;
	for (size_t k = 0; k < cl->nservers; k++) {
		struct client_server *srv = &cl->servers[k];
		if (srv->ts != NULL && reap_one(srv, srv->ts, cl->draining, streams))
			open++;
		if (srv->old_ts != NULL && reap_one(srv, srv->old_ts, cl->draining, streams))
			open++;
	}
	return open;
}

void client_pool_free(struct client *cl)
{
	for (size_t k = 0; k < cl->nservers; k++)
		for (unsigned i = 0; i < cl->nslots; i++)
			if (cl->servers[k].slots[i].retry_ev != NULL)
				event_free(cl->servers[k].slots[i].retry_ev);
	if (cl->pending_timer != NULL)
		event_free(cl->pending_timer);
	if (cl->state_timer != NULL)
		event_free(cl->state_timer);
}
