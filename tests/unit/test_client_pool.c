/*
 * The client's tunnel pool (client-side/client_pool.c), in-process: a real
 * pool of tunnels to a loopback server tunnel_accept()s in the same
 * event_base, and local connections on socketpairs. Covers the orderings a
 * loop pass can produce: a tunnel closed just before a new connection picks
 * one, and a waiting connection that closes while it is queued.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/keys.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"
#include "wanmux/session.h"
#include "wanmux/tsession.h"
#include "wanmux/tunnel.h"

#define DEADLINE_MS 5000

struct world {
	struct event_base *base;
	int listen_fd;
	struct event *accept_ev;
	struct keypair *server_kp;
	uint8_t mac1_key[32];
	struct tunnel_config scfg;
	struct tunnel_handlers sh;
	struct tsession *server_ts; /* the one client's session */
	int server_up;
	int server_live;
	/* Hostile server modes: close every tunnel as soon as it is up; give
	 * every tunnel a new epoch (as if the server lost the session). */
	bool close_on_up;
	bool flip_epoch;
	/* GOAWAY on every session as soon as a tunnel of it is up; a tunnel of
	 * a new session id drains the old one at once (its tunnels close). */
	bool goaway_every_session;
	struct client cl;
};

static int server_authorize(struct tunnel *t, const uint8_t client_pub[KEYS_LEN],
			    const struct hello_client *hello, void *arg)
{
	return 0;
}

static void hostile_close(evutil_socket_t fd, short what, void *arg)
{
	tunnel_close(arg, "test: hostile server closes every tunnel once up");
}

static void server_up(struct tunnel *t, void *arg)
{
	struct world *w = arg;
	w->server_up++;
	/* Soon after, not now: its reply (msg2) must reach the client first.
	 * Nothing else closes server tunnels in that test. */
	struct timeval tv = {0, 10000};
	if (w->close_on_up)
		event_base_once(w->base, -1, EV_TIMEOUT, hostile_close, t, &tv);
	if (w->goaway_every_session && w->server_ts != NULL)
		session_goaway(tsession_session(w->server_ts));
}

static void server_down(struct tunnel *t, const char *reason, void *arg)
{
	struct world *w = arg;
	w->server_live--;
}

/* The server refuses every stream: the tests look at the client's choice
 * of tunnel, not at data. */
static int server_open(struct session *s, struct session_stream *st,
		       const struct frame_addr *target, void *arg)
{
	return FRAME_ERR_NOT_ALLOWED;
}

static void server_session_end(struct tsession *ts, const char *reason, void *arg)
{
	struct world *w = arg;
	tsession_free(ts);
	w->server_ts = NULL;
}

static struct tsession *server_attach(struct tunnel *t, const struct session_params *local,
				      const struct session_params *peer, uint64_t *epoch, void *arg)
{
	struct world *w = arg;
	if (w->goaway_every_session && w->server_ts != NULL &&
	    memcmp(tsession_id(w->server_ts), tunnel_session_id(t), HELLO_SESSION_ID_LEN) != 0) {
		tsession_free(w->server_ts); /* drained: its tunnels close */
		w->server_ts = NULL;
	}
	if (w->server_ts == NULL) {
		struct tsession_config c;
		memset(&c, 0, sizeof(c));
		c.role = SESSION_SERVER;
		relay_stream_callbacks(&c.cb);
		c.cb.on_open = server_open;
		c.arg = w;
		c.resume_timeout_ms = 60000;
		c.on_end = server_session_end;
		w->server_ts = tsession_new(w->base, &c, local, peer, tunnel_session_id(t));
	}
	if (w->flip_epoch) {
		uint64_t e = 0;
		while (e == 0 || e == tsession_epoch(w->server_ts))
			randombytes_buf(&e, sizeof(e));
		tsession_set_epoch(w->server_ts, e);
	}
	*epoch = tsession_epoch(w->server_ts);
	return w->server_ts;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct world *w = arg;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int c = accept4((int)fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	struct tunnel *t = tunnel_accept(w->base, c, (struct sockaddr *)&ss, &w->scfg, &w->sh);
	assert_non_null(t);
	w->server_live++;
}

/* A pool of nslots tunnels to the world's server (nslots 0: never a tunnel). */
static struct world *world_new(unsigned nslots)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	w->base = event_base_new();
	assert_non_null(w->base);
	w->server_kp = keys_pair_generate();
	assert_non_null(w->server_kp);
	handshake_mac1_key(w->server_kp->pub, NULL, w->mac1_key);

	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	w->listen_fd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(w->listen_fd >= 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(w->listen_fd, (struct sockaddr *)&sin, &sl), 0);
	w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
	event_add(w->accept_ev, NULL);

	tunnel_config_defaults(&w->scfg);
	w->scfg.local = w->server_kp;
	w->scfg.mac1_key = w->mac1_key;
	w->sh.attach = server_attach;
	w->sh.on_up = server_up;
	w->sh.on_down = server_down;
	w->sh.authorize = server_authorize;
	w->sh.arg = w;

	struct client *cl = &w->cl;
	cl->base = w->base;
	cl->key = keys_pair_generate();
	assert_non_null(cl->key);
	cl->servers = calloc(1, sizeof(*cl->servers));
	assert_non_null(cl->servers);
	cl->nservers = 1;
	struct client_server *srv = &cl->servers[0];
	snprintf(srv->hp.host, sizeof(srv->hp.host), "127.0.0.1");
	srv->hp.port = ntohs(sin.sin_port);
	tunnel_config_defaults(&cl->tcfg);
	cl->tcfg.local = cl->key;
	memcpy(srv->pub, w->server_kp->pub, KEYS_LEN);
	randombytes_buf(srv->session_id, sizeof(srv->session_id));
	cl->nslots = nslots;
	client_pool_start(cl);
	return w;
}

struct run_ctx {
	struct world *w;
	bool (*pred)(struct world *w);
	bool ok;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run_ctx *rc = arg;
	if (rc->pred(rc->w)) {
		rc->ok = true;
		event_base_loopbreak(rc->w->base);
	}
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run_ctx *rc = arg;
	event_base_loopbreak(rc->w->base);
}

/* Runs the loop until pred holds (checked every 2 ms) or ms pass. */
static bool run_until(struct world *w, bool (*pred)(struct world *w), int ms)
{
	struct run_ctx rc = {w, pred, pred(w)};
	if (rc.ok)
		return true;
	struct event *dl = evtimer_new(w->base, deadline_cb, &rc);
	struct event *tick = event_new(w->base, -1, EV_PERSIST, tick_cb, &rc);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct timeval tk = {0, 2000};
	evtimer_add(dl, &tv);
	event_add(tick, &tk);
	event_base_loop(w->base, 0);
	event_free(dl);
	event_free(tick);
	return rc.ok || pred(w);
}

static bool never(struct world *w)
{
	return false;
}

static bool all_up(struct world *w)
{
	for (unsigned i = 0; i < w->cl.nslots; i++)
		if (!w->cl.servers[0].slots[i].up)
			return false;
	return w->server_up == (int)w->cl.nslots;
}

static bool all_gone(struct world *w)
{
	for (unsigned i = 0; i < w->cl.nslots; i++)
		if (w->cl.servers[0].slots[i].t != NULL)
			return false;
	return w->server_live == 0;
}

static void world_free(struct world *w)
{
	client_pool_stop(&w->cl);
	assert_true(run_until(w, all_gone, DEADLINE_MS));
	run_until(w, never, 50); /* relays and tunnels free themselves from the loop */
	client_pool_free(&w->cl);
	tsession_free(w->server_ts);
	keys_pair_free(w->cl.key);
	free(w->cl.servers);
	event_free(w->accept_ev);
	close(w->listen_fd);
	keys_pair_free(w->server_kp);
	event_base_free(w->base);
	free(w);
}

/* A local connection: the relay on one end of a socketpair; *peer gets the
 * other end (the "application"). */
static struct relay *local_relay(struct world *w, int *peer)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct relay *r = relay_new(w->base, sv[0], "user");
	assert_non_null(r);
	*peer = sv[1];
	return r;
}

static const struct frame_addr target = {
    .type = FRAME_ADDR_IPV4, .port = 9, .u.ipv4 = {127, 0, 0, 1}};

/*
 * Tunnel 0 is closed and, in the same loop pass (no event runs in
 * between), a new connection asks for a tunnel. tunnel_close ends the
 * session at once while the pool hears of it (on_down) only from the loop:
 * the old pick_tunnel counted tunnel 0 as up and dereferenced its NULL
 * session (SIGSEGV). The connection must go to tunnel 1.
 */
static void test_client_pool_skips_tunnel_closed_in_same_pass(void **state)
{
	struct world *w = world_new(2);
	assert_true(run_until(w, all_up, DEADLINE_MS));
	struct tunnel *live = w->cl.servers[0].slots[1].t;
	tunnel_close(w->cl.servers[0].slots[0].t, "test: closed in this pass");
	int peer;
	struct relay *r = local_relay(w, &peer);
	client_open(&w->cl, r, &target);
	assert_non_null(relay_stream(r));
	assert_ptr_equal(session_stream_session(relay_stream(r)), tunnel_session(live));
	assert_int_equal(w->cl.npending, 0);
	close(peer);
	world_free(w);
}

/* Every tunnel closed in this pass: it does not crash, and the connection
 * goes to the session, which outlives its tunnels (they reconnect). */
static void test_client_pool_queues_when_all_closed_in_same_pass(void **state)
{
	struct world *w = world_new(2);
	assert_true(run_until(w, all_up, DEADLINE_MS));
	struct session *s = tunnel_session(w->cl.servers[0].slots[0].t);
	tunnel_close(w->cl.servers[0].slots[0].t, "test");
	tunnel_close(w->cl.servers[0].slots[1].t, "test");
	int peer;
	struct relay *r = local_relay(w, &peer);
	client_open(&w->cl, r, &target);
	assert_non_null(relay_stream(r));
	assert_ptr_equal(session_stream_session(relay_stream(r)), s);
	assert_int_equal(w->cl.npending, 0);
	close(peer);
	world_free(w);
}

/*
 * A queued connection whose relay closes (the local client reset it and a
 * reply write failed) leaves the queue at once. The old queue kept the
 * freed relay and used it on timeout, on drain and on stop (use-after-free;
 * here npending stays 1).
 */
static void test_client_pool_closed_relay_leaves_queue(void **state)
{
	struct world *w = world_new(0);
	int peer1, peer2;
	struct relay *r1 = local_relay(w, &peer1);
	struct relay *r2 = local_relay(w, &peer2);
	client_open(&w->cl, r1, &target);
	client_open(&w->cl, r2, &target);
	assert_int_equal(w->cl.npending, 2);
	relay_close(r1, true);
	assert_int_equal(w->cl.npending, 1);
	assert_ptr_equal(TAILQ_FIRST(&w->cl.pending)->r, r2);
	run_until(w, never, 20); /* r1 is freed now */
	close(peer1);
	close(peer2);
	world_free(w); /* closes r2 through the queue, never touches r1 */
}

/* A waiting connection whose application resets gets freed by the relay's
 * own error path (write of a front-end reply fails) and leaves the queue. */
static void test_client_pool_reset_while_queued(void **state)
{
	struct world *w = world_new(0);
	int peer;
	struct relay *r = local_relay(w, &peer);
	client_open(&w->cl, r, &target);
	assert_int_equal(w->cl.npending, 1);
	/* A reply the front end wrote before queueing, to a peer that is gone. */
	close(peer);
	assert_int_equal(relay_write_local(r, "\x05\x00", 2), 0);
	for (int i = 0; i < 100 && w->cl.npending > 0; i++)
		run_until(w, never, 10);
	assert_int_equal(w->cl.npending, 0);
	world_free(w);
}

/*
 * A server (or a middlebox) that closes every tunnel right after its
 * handshake: the client must back off, not dial again at once every time.
 * The redial "at once after a tunnel that was up" made this a tight loop of
 * handshakes (about 300 in a second on loopback with one slot).
 */
static void test_client_pool_backs_off_tunnels_closed_once_up(void **state)
{
	struct world *w = world_new(1);
	w->close_on_up = true;
	run_until(w, never, 1500);
	int ups = w->server_up;
	print_message("tunnels up in 1.5 s when each is closed once up: %d\n", ups);
	/* Backoff from 250 ms doubling (jittered): at most a handful. */
	assert_true(ups >= 1);
	assert_true(ups <= 8);
	w->close_on_up = false;
	world_free(w);
}

/*
 * A hostile server that answers every tunnel with a new epoch makes the
 * client end its session (streams reset) and orphan its other tunnels at
 * every handshake; with two slots they take turns killing each other. It
 * must not turn into a tight reconnect loop either.
 */
static void test_client_pool_epoch_flips_back_off(void **state)
{
	struct world *w = world_new(2);
	w->flip_epoch = true;
	run_until(w, never, 1500);
	int ups = w->server_up;
	uint64_t lost = w->cl.totals.sessions_lost;
	print_message("tunnels up in 1.5 s with a new epoch for each: %d (sessions lost %llu)\n",
		      ups, (unsigned long long)lost);
	assert_true(ups >= 2);
	assert_true(ups <= 16);
	w->flip_epoch = false;
	world_free(w);
}

/*
 * A hostile server that sends GOAWAY on every session as soon as it is up
 * (and drains the old one at once): each GOAWAY made the client dial a new
 * session on every slot at once, a tight loop of handshakes like the one
 * above.
 */
static void test_client_pool_goaway_every_session_backs_off(void **state)
{
	struct world *w = world_new(2);
	w->goaway_every_session = true;
	run_until(w, never, 1500);
	int ups = w->server_up;
	print_message("tunnels up in 1.5 s with GOAWAY on every session: %d (GOAWAYs %llu)\n", ups,
		      (unsigned long long)w->cl.goaways);
	assert_true(ups >= 2);
	assert_true(ups <= 16);
	w->goaway_every_session = false;
	world_free(w);
}

static bool drained_and_up(struct world *w)
{
	if (w->cl.servers[0].old_ts == NULL || w->cl.servers[0].ts == NULL)
		return false;
	for (unsigned i = 0; i < w->cl.nslots; i++)
		if (!w->cl.servers[0].slots[i].up)
			return false;
	return tsession_tunnels(w->cl.servers[0].ts) == w->cl.nslots;
}

/* The client's tunnels of its current session that no slot knows of. */
static size_t untracked_tunnels(struct world *w)
{
	struct tsession *ts = w->cl.servers[0].ts;
	size_t n = ts != NULL ? tsession_tunnels(ts) : 0;
	for (size_t i = 0; ts != NULL && i < tsession_tunnels(ts); i++)
		for (unsigned k = 0; k < w->cl.nslots; k++)
			if (w->cl.servers[0].slots[k].t == tsession_tunnel(ts, i) ||
			    w->cl.servers[0].slots[k].old == tsession_tunnel(ts, i))
				n--;
	return n;
}

/*
 * The draining session (after the server's GOAWAY) ends as drained while
 * its tunnels are still closing (they leave from the loop), and in the same
 * pass the new session gets a GOAWAY too. The slots' old tunnels must not be
 * overwritten while they close: their on_down would then take the slot's new
 * tunnel for its own (sl->t = NULL), so that tunnel runs on unknown to the
 * pool and the slot dials one more.
 */
static void test_client_pool_second_goaway_while_old_tunnels_close(void **state)
{
	struct world *w = world_new(2);
	assert_true(run_until(w, all_up, DEADLINE_MS));
	session_goaway(tsession_session(w->server_ts));
	assert_true(run_until(w, drained_and_up, DEADLINE_MS));
	size_t streams = 0;
	client_pool_reap(&w->cl, &streams);
	assert_null(w->cl.servers[0].old_ts); /* ended; its tunnels close from the loop */
	struct frame goaway = {.type = FRAME_GOAWAY, .stream_id = 0};
	assert_int_equal(session_on_frame(tsession_session(w->cl.servers[0].ts), NULL, &goaway), 0);
	run_until(w, never, 1500);
	size_t lost = untracked_tunnels(w);
	print_message("tunnels of the session no slot knows of: %zu; server tunnels: %d\n", lost,
		      w->server_live);
	assert_int_equal(lost, 0);
	world_free(w);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	log_init("test_client_pool", LOG_LEVEL_WARN);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_client_pool_skips_tunnel_closed_in_same_pass),
	    cmocka_unit_test(test_client_pool_queues_when_all_closed_in_same_pass),
	    cmocka_unit_test(test_client_pool_closed_relay_leaves_queue),
	    cmocka_unit_test(test_client_pool_reset_while_queued),
	    cmocka_unit_test(test_client_pool_backs_off_tunnels_closed_once_up),
	    cmocka_unit_test(test_client_pool_epoch_flips_back_off),
	    cmocka_unit_test(test_client_pool_goaway_every_session_backs_off),
	    cmocka_unit_test(test_client_pool_second_goaway_while_old_tunnels_close),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
