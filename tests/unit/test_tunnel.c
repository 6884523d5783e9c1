/*
 * Tunnel tests, event-driven and in-process: a client tunnel (tunnel_connect
 * to a loopback listener) and a server tunnel (tunnel_accept) in one
 * event_base, streams bridged by relays on socketpairs. Handshake, bytes both
 * ways with half-close, refusals, garbage and outside close. Every loop run is
 * bounded by a deadline so a bug cannot hang the suite.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/hello.h"
#include "wanmux/keys.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/record.h"
#include "wanmux/relay.h"
#include "wanmux/session.h"
#include "wanmux/tsession.h"
#include "wanmux/tunnel.h"

#define DEADLINE_MS 5000

/* The test's end of one local socket (user side or target side). */
struct endpoint {
	struct bufferevent *bev;
	struct evbuffer *got;
	bool eof;
	bool error;
};

struct side {
	struct tunnel *t;
	/* Stream callbacks of the sessions this side's tunnels carry: one
	 * session per tunnel here, ending with it (resume timeout 0). */
	struct session_callbacks cb;
	enum session_role role;
	struct event_base *base;
	int up;
	int down;
	char reason[160];
	int resets;
	uint32_t last_reset;
	int closed;
};

struct world {
	struct event_base *base;
	int listen_fd;
	struct event *accept_ev;
	uint16_t port;
	struct keypair *server_kp;
	struct keypair *client_kp;
	uint8_t mac1_key[32];
	struct tunnel_config scfg;
	struct tunnel_config ccfg;
	struct tunnel_handlers sh;
	struct tunnel_handlers ch;
	struct side client;
	struct side server;
	struct tunnel *live[8]; /* every tunnel not yet down */
	int authorize_result;
	int authorize_calls;
	int accepted;
	/* server side of the one stream under test */
	struct endpoint target;
	struct relay *target_relay; /* its relay, while the stream runs */
	struct relay *user_relay;   /* the client's relay of the last open_stream */
	int opens;
	struct frame_addr last_target;
	/* the server-side path: relay_connect to a real loopback target */
	bool use_connect;
	struct sockaddr_in target_sa;
	int target_listen_fd;
	struct event *target_accept_ev;
	uint32_t connect_error;
	int connect_done;
};

static struct session_callbacks relay_cbs;

static void ep_read(struct bufferevent *bev, void *arg)
{
	struct endpoint *e = arg;
	evbuffer_add_buffer(e->got, bufferevent_get_input(bev));
}

static void ep_event(struct bufferevent *bev, short what, void *arg)
{
	struct endpoint *e = arg;
	if (what & BEV_EVENT_EOF)
		e->eof = true;
	if (what & BEV_EVENT_ERROR)
		e->error = true;
}

static void ep_init(struct endpoint *e, struct event_base *base, int fd)
{
	evutil_make_socket_nonblocking(fd);
	e->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(e->bev);
	e->got = evbuffer_new();
	bufferevent_setcb(e->bev, ep_read, NULL, ep_event, e);
	bufferevent_enable(e->bev, EV_READ | EV_WRITE);
}

static void ep_free(struct endpoint *e)
{
	if (e->bev != NULL)
		bufferevent_free(e->bev);
	if (e->got != NULL)
		evbuffer_free(e->got);
	memset(e, 0, sizeof(*e));
}

/* The relay's name tells the side: "user" on the client, "target" on the
 * server (tunnel_session() is NULL while a closing tunnel ends its streams). */
static struct side *side_of(struct world *w, void *user)
{
	return strcmp(relay_name(user), "user") == 0 ? &w->client : &w->server;
}

static void live_add(struct world *w, struct tunnel *t)
{
	for (size_t i = 0; i < 8; i++) {
		if (w->live[i] == NULL) {
			w->live[i] = t;
			return;
		}
	}
	fail_msg("too many tunnels");
}

static bool none_live(struct world *w)
{
	for (size_t i = 0; i < 8; i++)
		if (w->live[i] != NULL)
			return false;
	return true;
}

/* Stream callbacks: count, then let the relay do its work. */
static struct world *current;

static void cb_reset(struct session_stream *st, uint32_t error, void *user)
{
	struct side *sd = side_of(current, user);
	sd->resets++;
	sd->last_reset = error;
	relay_cbs.on_reset(st, error, user);
}

static void cb_closed(struct session_stream *st, void *user)
{
	struct side *sd = side_of(current, user);
	sd->closed++;
	relay_cbs.on_closed(st, user);
}

static void on_connected(struct relay *r, uint32_t error, void *arg)
{
	struct world *w = current;
	struct session_stream *st = arg;
	w->connect_done++;
	w->connect_error = error;
	if (error != 0) {
		session_stream_open_result(st, error);
		relay_close(r, true);
		return;
	}
	session_stream_open_result(st, 0);
	relay_start(r);
}

/* Server: every OPEN is connected to a fresh socketpair, or (use_connect)
 * with relay_connect to target_sa as wanmux-server does. */
static int cb_open(struct session *s, struct session_stream *st, const struct frame_addr *target,
		   void *arg)
{
	struct world *w = arg;
	int sv[2];
	w->opens++;
	w->last_target = *target;
	if (w->target.bev != NULL)
		return FRAME_ERR_STREAM_LIMIT; /* one stream at a time here */
	if (w->use_connect) {
		struct relay *r = relay_new(w->base, -1, "target");
		assert_non_null(r);
		session_stream_attach(st, relay_source(r), r);
		relay_bind(r, st);
		assert_int_equal(relay_connect(r, (struct sockaddr *)&w->target_sa,
					       sizeof(w->target_sa), on_connected, st),
				 0);
		return 0;
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	struct relay *r = relay_new(w->base, sv[0], "target");
	assert_non_null(r);
	assert_int_equal(relay_get_state(r), RELAY_NEW);
	session_stream_attach(st, relay_source(r), r);
	relay_bind(r, st);
	assert_int_equal(relay_get_state(r), RELAY_OPEN);
	w->target_relay = r;
	relay_start(r);
	ep_init(&w->target, w->base, sv[1]);
	session_stream_open_result(st, 0);
	return 0;
}

static void cb_up(struct tunnel *t, void *arg)
{
	struct world *w = current;
	struct side *sd = arg == &w->client ? &w->client : &w->server;
	sd->up++;
	sd->t = t;
}

static void cb_down(struct tunnel *t, const char *reason, void *arg)
{
	struct world *w = current;
	struct side *sd = arg == &w->client ? &w->client : &w->server;
	sd->down++;
	snprintf(sd->reason, sizeof(sd->reason), "%s", reason);
	if (sd->t == t)
		sd->t = NULL;
	for (size_t i = 0; i < 8; i++)
		if (w->live[i] == t)
			w->live[i] = NULL;
}

static int cb_authorize(struct tunnel *t, const uint8_t client_pub[KEYS_LEN],
			const struct hello_client *hello, void *arg)
{
	struct world *w = current;
	w->authorize_calls++;
	if (memcmp(client_pub, w->client_kp->pub, KEYS_LEN) != 0)
		return WM_ERR_UNAUTHORIZED;
	if (hello->version != 1 || hello->params.stream_window != w->ccfg.params.stream_window)
		return WM_ERR_UNAUTHORIZED;
	return w->authorize_result;
}

/* The server's handlers get arg = &w->server, except on_open which needs w. */
static int cb_open_server(struct session *s, struct session_stream *st,
			  const struct frame_addr *target, void *arg)
{
	return cb_open(s, st, target, current);
}

static void side_session_end(struct tsession *ts, const char *reason, void *arg)
{
	tsession_free(ts);
}

static struct tsession *side_attach(struct tunnel *t, const struct session_params *local,
				    const struct session_params *peer, uint64_t *epoch, void *arg)
{
	struct side *sd = arg;
	struct tsession_config c;
	memset(&c, 0, sizeof(c));
	c.role = sd->role;
	c.cb = sd->cb;
	c.arg = sd;
	c.on_end = side_session_end;
	struct tsession *ts = tsession_new(sd->base, &c, local, peer, tunnel_session_id(t));
	if (ts != NULL && sd->role == SESSION_SERVER)
		*epoch = tsession_epoch(ts);
	else if (ts != NULL)
		tsession_set_epoch(ts, *epoch);
	return ts;
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct world *w = arg;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int c = accept4((int)fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	w->accepted++;
	struct tunnel *t = tunnel_accept(w->base, c, (struct sockaddr *)&ss, &w->scfg, &w->sh);
	assert_non_null(t);
	w->server.t = t;
	live_add(w, t);
}

static void on_target_accept(evutil_socket_t fd, short what, void *arg)
{
	struct world *w = arg;
	int c = accept4((int)fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (c < 0)
		return;
	assert_null(w->target.bev);
	ep_init(&w->target, w->base, c);
}

/* A loopback target for relay_connect; closed at once when refuse is set so
 * the port refuses connections. */
static void target_listen(struct world *w, bool refuse)
{
	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	int fd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(fd >= 0);
	socklen_t sl = sizeof(w->target_sa);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&w->target_sa, &sl), 0);
	w->use_connect = true;
	if (refuse) {
		close(fd);
		w->target_listen_fd = -1;
		return;
	}
	w->target_listen_fd = fd;
	w->target_accept_ev = event_new(w->base, fd, EV_READ | EV_PERSIST, on_target_accept, w);
	event_add(w->target_accept_ev, NULL);
}

static struct world *world_new(void)
{
	struct world *w = calloc(1, sizeof(*w));
	assert_non_null(w);
	current = w;
	w->base = event_base_new();
	assert_non_null(w->base);
	w->target_listen_fd = -1;
	w->server_kp = keys_pair_generate();
	w->client_kp = keys_pair_generate();
	assert_non_null(w->server_kp);
	assert_non_null(w->client_kp);
	handshake_mac1_key(w->server_kp->pub, NULL, w->mac1_key);

	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	w->listen_fd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(w->listen_fd >= 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(w->listen_fd, (struct sockaddr *)&sin, &sl), 0);
	w->port = ntohs(sin.sin_port);
	w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, on_accept, w);
	event_add(w->accept_ev, NULL);

	tunnel_config_defaults(&w->scfg);
	w->scfg.local = w->server_kp;
	w->scfg.mac1_key = w->mac1_key;
	w->scfg.handshake_timeout_ms = 2000;
	w->scfg.compress = COMPRESS_LZ4;
	tunnel_config_defaults(&w->ccfg);
	w->ccfg.local = w->client_kp;
	memcpy(w->ccfg.server_pub, w->server_kp->pub, KEYS_LEN);
	w->ccfg.handshake_timeout_ms = 2000;
	w->ccfg.compress = COMPRESS_LZ4;
	w->ccfg.tunnel_no = 1;
	randombytes_buf(w->ccfg.session_id, sizeof(w->ccfg.session_id));

	struct session_callbacks cb = {0};
	relay_stream_callbacks(&cb);
	relay_cbs = cb;
	cb.on_reset = cb_reset;
	cb.on_closed = cb_closed;

	w->sh.on_up = cb_up;
	w->sh.on_down = cb_down;
	w->sh.authorize = cb_authorize;
	w->server.cb = cb;
	w->server.cb.on_open = cb_open_server;
	w->server.role = SESSION_SERVER;
	w->server.base = w->base;
	w->sh.attach = side_attach;
	w->sh.arg = &w->server;
	w->ch.on_up = cb_up;
	w->ch.on_down = cb_down;
	w->client.cb = cb;
	w->client.role = SESSION_CLIENT;
	w->client.base = w->base;
	w->ch.attach = side_attach;
	w->ch.arg = &w->client;
	return w;
}

struct run_ctx {
	struct world *w;
	bool (*pred)(struct world *w);
	bool ok;
	bool deadline;
};

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run_ctx *rc = arg;
	rc->deadline = true;
	event_base_loopbreak(rc->w->base);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct run_ctx *rc = arg;
	if (rc->pred(rc->w)) {
		rc->ok = true;
		event_base_loopbreak(rc->w->base);
	}
}

/*
 * Runs the loop until pred(w) holds (checked every 2 ms); false when the
 * deadline passed first. Not EVLOOP_ONCE: a callback that keeps re-arming
 * itself (see test_tunnel_backpressure_slow_target) would never let that
 * return; timers still fire in a full loop, so the deadline holds.
 */
static bool run_until(struct world *w, bool (*pred)(struct world *w), int ms)
{
	struct run_ctx rc = {w, pred, pred(w), false};
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

/* Runs the loop for ms regardless (lets deferred frees happen). */
static bool never(struct world *w)
{
	return false;
}

static void settle(struct world *w, int ms)
{
	run_until(w, never, ms);
}

static bool both_up(struct world *w)
{
	return w->client.up > 0 && w->server.up > 0;
}

static bool both_down(struct world *w)
{
	return w->client.down > 0 && w->server.down > 0;
}

static void world_free(struct world *w)
{
	for (size_t i = 0; i < 8; i++)
		if (w->live[i] != NULL)
			tunnel_close(w->live[i], "test over");
	assert_true(run_until(w, none_live, DEADLINE_MS));
	ep_free(&w->target);
	settle(w, 50); /* relays free themselves from the loop */
	event_free(w->accept_ev);
	close(w->listen_fd);
	if (w->target_accept_ev != NULL)
		event_free(w->target_accept_ev);
	if (w->target_listen_fd >= 0)
		close(w->target_listen_fd);
	keys_pair_free(w->server_kp);
	keys_pair_free(w->client_kp);
	event_base_free(w->base);
	current = NULL;
	free(w);
}

static void connect_client(struct world *w)
{
	struct netaddr_hostport hp;
	memset(&hp, 0, sizeof(hp));
	snprintf(hp.host, sizeof(hp.host), "127.0.0.1");
	hp.port = w->port;
	struct tunnel *t = tunnel_connect(w->base, NULL, &hp, &w->ccfg, &w->ch);
	assert_non_null(t);
	w->client.t = t;
	live_add(w, t);
}

static void test_tunnel_handshake_completes(void **state)
{
	struct world *w = world_new();
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	assert_int_equal(w->client.up, 1);
	assert_int_equal(w->server.up, 1);
	assert_int_equal(w->authorize_calls, 1);
	assert_non_null(tunnel_session(w->client.t));
	assert_non_null(tunnel_session(w->server.t));
	assert_memory_equal(tunnel_peer_key(w->server.t), w->client_kp->pub, KEYS_LEN);
	assert_memory_equal(tunnel_peer_key(w->client.t), w->server_kp->pub, KEYS_LEN);
	assert_int_equal(w->client.down, 0);
	assert_int_equal(w->server.down, 0);
	world_free(w);
}

struct transfer {
	struct world *w;
	struct endpoint user;
	size_t want_up;
	size_t want_down;
};

static struct transfer *xfer;

static bool up_done(struct world *w)
{
	return w->target.got != NULL && evbuffer_get_length(w->target.got) >= xfer->want_up;
}

static bool up_done_first_bytes(struct world *w)
{
	return w->target.got != NULL && evbuffer_get_length(w->target.got) > 0;
}

static bool down_done(struct world *w)
{
	return evbuffer_get_length(xfer->user.got) >= xfer->want_down;
}

static bool target_eof(struct world *w)
{
	return w->target.eof;
}

static bool user_eof(struct world *w)
{
	return xfer->user.eof;
}

static bool user_gone(struct world *w)
{
	return xfer->user.eof || xfer->user.error;
}

static bool target_gone(struct world *w)
{
	return w->target.eof || w->target.error;
}

static bool both_closed(struct world *w)
{
	return w->client.closed > 0 && w->server.closed > 0;
}

static bool client_reset(struct world *w)
{
	return w->client.resets > 0 && w->client.down > 0;
}

static void random_bytes(struct evbuffer *b, size_t n)
{
	uint8_t *p = malloc(n);
	assert_non_null(p);
	randombytes_buf(p, n);
	/* Half text, so the LZ4 path is taken too. */
	for (size_t i = 0; i < n / 2; i++)
		p[i] = (uint8_t) "wanmux streams text "[i % 20];
	evbuffer_add(b, p, n);
	free(p);
}

static bool same(struct evbuffer *a, struct evbuffer *b)
{
	size_t n = evbuffer_get_length(a);
	return n == evbuffer_get_length(b) &&
	       (n == 0 || memcmp(evbuffer_pullup(a, -1), evbuffer_pullup(b, -1), n) == 0);
}

/* Opens one stream over the client tunnel; returns the user end in xfer. */
static void open_stream(struct world *w, struct transfer *x)
{
	int cp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cp), 0);
	struct relay *r = relay_new(w->base, cp[0], "user");
	assert_non_null(r);
	struct frame_addr a;
	memset(&a, 0, sizeof(a));
	a.type = FRAME_ADDR_IPV4;
	a.port = 8080;
	a.u.ipv4[0] = 198;
	a.u.ipv4[1] = 18;
	a.u.ipv4[3] = 7;
	struct session_stream *st =
	    session_stream_open(tunnel_session(w->client.t), &a, relay_source(r), r);
	assert_non_null(st);
	relay_bind(r, st);
	relay_start(r);
	w->user_relay = r;
	ep_init(&x->user, w->base, cp[1]);
}

static void test_tunnel_stream_both_ways(void **state)
{
	struct world *w = world_new();
	struct transfer x = {w, {0}, 3u << 20, 2u << 20};
	xfer = &x;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);

	struct evbuffer *up = evbuffer_new();
	struct evbuffer *down = evbuffer_new();
	random_bytes(up, x.want_up);
	random_bytes(down, x.want_down);
	bufferevent_write(x.user.bev, evbuffer_pullup(up, -1), x.want_up);
	assert_true(run_until(w, up_done, DEADLINE_MS));
	assert_int_equal(w->opens, 1);
	assert_int_equal(w->last_target.type, FRAME_ADDR_IPV4);
	assert_int_equal(w->last_target.port, 8080);
	bufferevent_write(w->target.bev, evbuffer_pullup(down, -1), x.want_down);
	assert_true(run_until(w, down_done, DEADLINE_MS));
	assert_true(same(up, w->target.got));
	assert_true(same(down, x.user.got));

	/* Half-close: user EOF reaches the target after the data; the target
	 * can still answer; then the stream closes cleanly on both sides. */
	assert_int_equal(relay_get_state(w->user_relay), RELAY_OPEN);
	shutdown(bufferevent_getfd(x.user.bev), SHUT_WR);
	assert_true(run_until(w, target_eof, DEADLINE_MS));
	assert_false(x.user.eof);
	/* One direction closed, each relay in its half. */
	assert_int_equal(relay_get_state(w->user_relay), RELAY_LOCAL_CLOSED);
	assert_int_equal(relay_get_state(w->target_relay), RELAY_REMOTE_CLOSED);
	bufferevent_write(w->target.bev, "late", 4);
	x.want_down += 4;
	assert_true(run_until(w, down_done, DEADLINE_MS));
	shutdown(bufferevent_getfd(w->target.bev), SHUT_WR);
	assert_true(run_until(w, user_eof, DEADLINE_MS));
	assert_true(run_until(w, both_closed, DEADLINE_MS));
	assert_int_equal(w->client.resets, 0);
	assert_int_equal(w->server.resets, 0);
	assert_int_equal(session_stream_count(tunnel_session(w->client.t)), 0);
	assert_int_equal(session_stream_count(tunnel_session(w->server.t)), 0);
	const struct session_stats *ss = session_get_stats(tunnel_session(w->client.t));
	assert_int_equal(ss->raw_bytes_sent, 3u << 20);
	assert_true(ss->payload_bytes_sent < ss->raw_bytes_sent);
	assert_true(tunnel_get_stats(w->client.t)->records_sent > 0);
	assert_int_equal(w->client.down, 0);
	assert_int_equal(w->server.down, 0);

	evbuffer_free(up);
	evbuffer_free(down);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

static void test_tunnel_unauthorized_client(void **state)
{
	struct world *w = world_new();
	w->authorize_result = WM_ERR_UNAUTHORIZED;
	connect_client(w);
	assert_true(run_until(w, both_down, DEADLINE_MS));
	assert_int_equal(w->authorize_calls, 1);
	assert_int_equal(w->client.up, 0);
	assert_int_equal(w->server.up, 0);
	world_free(w);
}

static void test_tunnel_wrong_pinned_key(void **state)
{
	struct world *w = world_new();
	struct keypair *other = keys_pair_generate();
	memcpy(w->ccfg.server_pub, other->pub, KEYS_LEN);
	keys_pair_free(other);
	connect_client(w);
	assert_true(run_until(w, both_down, DEADLINE_MS));
	assert_int_equal(w->client.up, 0);
	assert_int_equal(w->server.up, 0);
	assert_int_equal(w->authorize_calls, 0); /* stopped by the cheap check */
	world_free(w);
}

static bool server_down(struct world *w)
{
	return w->server.down > 0;
}

static int raw_connect(struct world *w)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in sin;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(w->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void test_tunnel_garbage_closes_server(void **state)
{
	/* A plausible length then junk; an oversized length; junk of every
	 * handshake size up to the maximum. */
	static const size_t sizes[] = {0,    1, 32, 100, HANDSHAKE_MSG_MAX, HANDSHAKE_MSG_MAX + 1,
				       65535};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct world *w = world_new();
		int fd = raw_connect(w);
		size_t len = sizes[i];
		uint8_t *junk = malloc(2 + len);
		assert_non_null(junk);
		junk[0] = (uint8_t)(len >> 8);
		junk[1] = (uint8_t)len;
		randombytes_buf(junk + 2, len);
		/* Send in the background: the server may close before reading
		 * everything. */
		evutil_make_socket_nonblocking(fd);
		ssize_t n = send(fd, junk, len > HANDSHAKE_MSG_MAX ? 2 : 2 + len, MSG_NOSIGNAL);
		assert_true(n > 0);
		free(junk);
		assert_true(run_until(w, server_down, DEADLINE_MS));
		assert_int_equal(w->server.up, 0);
		assert_int_equal(w->authorize_calls, 0);
		/* The server closed the socket: we read EOF (or a reset). */
		char c;
		settle(w, 20);
		ssize_t r = recv(fd, &c, 1, 0);
		assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
		close(fd);
		world_free(w);
	}
}

/* A hand-made client: Noise handshake over a raw socket, so the test can
 * write what it likes into an established tunnel. */
struct raw_client {
	int fd;
	struct record_cipher *tx;
};

static bool msg2_arrived(struct world *w)
{
	return w->server.up > 0;
}

/* hello_flags: byte 2 of the client hello (bit 0: takes part in rekeys). */
static void raw_client_up_flags(struct world *w, struct raw_client *rc, uint8_t hello_flags)
{
	struct hello_client h = {.version = HELLO_VERSION,
				 .tunnel_no = 9,
				 .flags = hello_flags,
				 .timestamp = {0x40}, /* TAI64N epoch bit */
				 .params = w->ccfg.params};
	uint8_t hello[HELLO_CLIENT_LEN];
	uint8_t msg[2 + HANDSHAKE_MSG_MAX];
	uint8_t payload[HANDSHAKE_PAYLOAD_MAX];
	assert_int_equal(hello_client_encode(&h, hello, sizeof(hello)), HELLO_CLIENT_LEN);
	struct handshake *hs = handshake_initiator_new(w->client_kp->priv, w->server_kp->pub, NULL);
	assert_non_null(hs);
	int n = handshake_write_msg1(hs, hello, sizeof(hello), msg + 2, sizeof(msg) - 2);
	assert_true(n > 0);
	msg[0] = (uint8_t)(n >> 8);
	msg[1] = (uint8_t)n;
	rc->fd = raw_connect(w);
	assert_int_equal(send(rc->fd, msg, 2 + (size_t)n, MSG_NOSIGNAL), 2 + n);
	assert_true(run_until(w, msg2_arrived, DEADLINE_MS));
	settle(w, 20);
	ssize_t got = recv(rc->fd, msg, sizeof(msg), MSG_DONTWAIT);
	assert_true(got > 2);
	size_t len = ((size_t)msg[0] << 8) | msg[1];
	assert_true((size_t)got >= 2 + len);
	assert_true(handshake_read_msg2(hs, msg + 2, len, payload, sizeof(payload)) >= 0);
	uint8_t send_key[HANDSHAKE_KEY_LEN], recv_key[HANDSHAKE_KEY_LEN];
	assert_int_equal(handshake_split(hs, send_key, recv_key), WM_OK);
	rc->tx = record_cipher_new(send_key);
	assert_non_null(rc->tx);
	handshake_free(hs);
}

/* An older client: its hello announces no rekeys. */
static void raw_client_up(struct world *w, struct raw_client *rc)
{
	raw_client_up_flags(w, rc, HELLO_FLAG_SESSIONS);
}

static void raw_send_record(struct raw_client *rc, const uint8_t *plain, size_t len)
{
	uint8_t rec[RECORD_OVERHEAD + 256];
	assert_true(len <= 256);
	int n = record_seal(rc->tx, plain, len, rec);
	assert_true(n > 0);
	assert_int_equal(send(rc->fd, rec, (size_t)n, MSG_NOSIGNAL), n);
}

static void raw_client_free(struct raw_client *rc)
{
	record_cipher_free(rc->tx);
	close(rc->fd);
}

static void test_tunnel_garbage_after_handshake(void **state)
{
	/* 1: junk where a record belongs; 2: a sealed record holding a frame of
	 * unknown type; 3: a sealed record with DATA for a stream never opened;
	 * 4: a valid PING (tunnel stays up) then an OPEN sent to... a server is
	 * fine, so end with a truncated frame. Each closes only that tunnel. */
	for (int kind = 1; kind <= 4; kind++) {
		struct world *w = world_new();
		struct raw_client rc;
		raw_client_up(w, &rc);
		assert_int_equal(w->server.down, 0);
		if (kind == 1) {
			uint8_t junk[40] = {0, 38};
			randombytes_buf(junk + 2, 38);
			assert_int_equal(send(rc.fd, junk, sizeof(junk), MSG_NOSIGNAL), 40);
		} else if (kind == 2) {
			uint8_t f[16] = {0x7f, 0, 0, 8, 0, 0, 0, 0};
			raw_send_record(&rc, f, sizeof(f));
		} else if (kind == 3) {
			uint8_t f[20];
			int h = frame_encode_data_header(f, sizeof(f), 41, 0, 0, 4, 4);
			assert_true(h > 0);
			memcpy(f + h, "data", 4);
			raw_send_record(&rc, f, (size_t)h + 4);
		} else {
			struct frame ping = {.type = FRAME_PING};
			uint8_t f[64];
			int n = frame_encode(&ping, f, sizeof(f));
			assert_true(n > 0);
			raw_send_record(&rc, f, (size_t)n);
			settle(w, 50);
			assert_int_equal(w->server.down, 0); /* a PING is fine */
			raw_send_record(&rc, f, (size_t)n - 1);
		}
		assert_true(run_until(w, server_down, DEADLINE_MS));
		assert_string_equal(w->server.reason, kind == 1 ? "bad record" : "protocol error");
		raw_client_free(&rc);
		world_free(w);
	}
}

static void test_tunnel_close_resets_streams(void **state)
{
	struct world *w = world_new();
	struct transfer x = {w, {0}, 1000, 0};
	xfer = &x;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	uint8_t buf[1000];
	randombytes_buf(buf, sizeof(buf));
	bufferevent_write(x.user.bev, buf, sizeof(buf));
	assert_true(run_until(w, up_done, DEADLINE_MS));

	tunnel_close(w->client.t, "test closes it");
	assert_true(run_until(w, client_reset, DEADLINE_MS));
	assert_int_equal(w->client.last_reset, FRAME_ERR_TUNNEL_LOST);
	assert_string_equal(w->client.reason, "test closes it");
	/* The server learns through EOF and ends its stream too. */
	assert_true(run_until(w, server_down, DEADLINE_MS));
	assert_int_equal(w->server.resets, 1);
	assert_int_equal(w->server.last_reset, FRAME_ERR_TUNNEL_LOST);
	/* Both local sockets are closed. */
	assert_true(run_until(w, user_gone, DEADLINE_MS));
	assert_true(run_until(w, target_gone, DEADLINE_MS));
	assert_int_equal(w->client.closed, 0);
	assert_int_equal(w->server.closed, 0);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

/* A front end (SOCKS5, HTTP proxy) answering a failed OPEN in its own
 * protocol: the reply outlives the stream and, here, the tunnel. */
static const char frontend_reply[] = "refused: no tunnel";
static int frontend_failures;
static uint32_t frontend_error;

static bool on_frontend_open_failed(struct relay *r, uint32_t error, void *arg)
{
	frontend_failures++;
	frontend_error = error;
	assert_int_equal(relay_write_local(r, frontend_reply, sizeof(frontend_reply) - 1), 0);
	return true;
}

static bool reply_and_eof_seen(struct world *w)
{
	return xfer->user.eof && evbuffer_get_length(xfer->user.got) >= sizeof(frontend_reply) - 1;
}

static void test_tunnel_frontend_reply_outlives_tunnel(void **state)
{
	/* The tunnel dies before the OPEN is answered: the front end writes its
	 * failure reply, and the relay drains it to the local socket after the
	 * tunnel (and the buffer pool in it) was freed. The relay must have left
	 * the pool with its stream: under ASan the old code wrote to the freed
	 * pool here (heap-use-after-free in the drain callback). */
	struct world *w = world_new();
	struct transfer x = {w, {0}, 0, 0};
	xfer = &x;
	frontend_failures = 0;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	size_t used_before = relay_budget_used();

	int cp[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, cp), 0);
	struct relay *r = relay_new(w->base, cp[0], "user");
	assert_non_null(r);
	struct relay_frontend fe = {.on_open_failed = on_frontend_open_failed};
	relay_set_frontend(r, &fe);
	struct frame_addr a = {.type = FRAME_ADDR_IPV4, .port = 8080, .u.ipv4 = {198, 18, 0, 7}};
	struct session_stream *st =
	    session_stream_open(tunnel_session(w->client.t), &a, relay_source(r), r);
	assert_non_null(st);
	relay_bind(r, st);
	relay_start(r);
	ep_init(&x.user, w->base, cp[1]);

	tunnel_close(w->client.t, "test closes it before the OPEN is answered");
	assert_true(run_until(w, reply_and_eof_seen, DEADLINE_MS));
	assert_int_equal(frontend_failures, 1);
	assert_int_equal(frontend_error, FRAME_ERR_TUNNEL_LOST);
	assert_memory_equal(evbuffer_pullup(x.user.got, -1), frontend_reply,
			    sizeof(frontend_reply) - 1);
	assert_int_equal(w->client.down, 1);
	/* Everything the relay held was released, in the total too. */
	settle(w, 20);
	assert_int_equal(relay_budget_used(), used_before);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

static bool connect_finished(struct world *w)
{
	return w->connect_done > 0 && w->target.bev != NULL &&
	       evbuffer_get_length(w->target.got) >= xfer->want_up;
}

static void test_tunnel_relay_connect_carries_early_data(void **state)
{
	/* The server's real path: the stream's first bytes arrive while the
	 * relay is still connecting to the target; none may be lost. */
	struct world *w = world_new();
	struct transfer x = {w, {0}, 100000, 5};
	xfer = &x;
	target_listen(w, false);
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	struct evbuffer *up = evbuffer_new();
	random_bytes(up, x.want_up);
	bufferevent_write(x.user.bev, evbuffer_pullup(up, -1), x.want_up);
	assert_true(run_until(w, connect_finished, DEADLINE_MS));
	assert_int_equal(w->connect_error, 0);
	assert_true(same(up, w->target.got));
	bufferevent_write(w->target.bev, "hello", 5);
	assert_true(run_until(w, down_done, DEADLINE_MS));
	assert_memory_equal(evbuffer_pullup(x.user.got, -1), "hello", 5);
	evbuffer_free(up);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

static bool user_reset_seen(struct world *w)
{
	return w->client.resets > 0 && (xfer->user.eof || xfer->user.error);
}

static void test_tunnel_relay_connect_refused(void **state)
{
	struct world *w = world_new();
	struct transfer x = {w, {0}, 0, 0};
	xfer = &x;
	target_listen(w, true);
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	bufferevent_write(x.user.bev, "GET / HTTP/1.0\r\n\r\n", 18);
	assert_true(run_until(w, user_reset_seen, DEADLINE_MS));
	assert_int_equal(w->connect_error, FRAME_ERR_REFUSED);
	assert_int_equal(w->client.last_reset, FRAME_ERR_REFUSED);
	/* The tunnel survives a refused stream. */
	assert_int_equal(w->client.down, 0);
	assert_int_equal(w->server.down, 0);
	assert_int_equal(session_stream_count(tunnel_session(w->client.t)), 0);
	assert_int_equal(session_stream_count(tunnel_session(w->server.t)), 0);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static bool sender_stalled(struct world *w)
{
	return false;
}

static void test_tunnel_backpressure_slow_target(void **state)
{
	/* A target that stops reading: the tunnel must stop sending within the
	 * stream window (plus what the local socket buffers hold), and resume
	 * without loss once the target reads again. */
	struct world *w = world_new();
	const size_t total = 8u << 20;
	struct transfer x = {w, {0}, total, 0};
	xfer = &x;
	w->ccfg.params.stream_window = SESSION_MIN_WINDOW;
	w->scfg.params.stream_window = SESSION_MIN_WINDOW;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	struct evbuffer *up = evbuffer_new();
	random_bytes(up, total);
	bufferevent_write(x.user.bev, evbuffer_pullup(up, -1), total);
	assert_true(run_until(w, up_done_first_bytes, DEADLINE_MS));
	bufferevent_disable(w->target.bev, EV_READ);
	run_until(w, sender_stalled, 200); /* let the pipeline fill */
	/* Blocked on credit, nothing can move: the loop should sleep. */
	double cpu0 = cpu_seconds();
	run_until(w, sender_stalled, 300);
	double idle_cpu = cpu_seconds() - cpu0;
	size_t seen = evbuffer_get_length(w->target.got);
	int sndbuf = 0, rcvbuf = 0;
	socklen_t ol = sizeof(sndbuf);
	getsockopt(bufferevent_getfd(w->target.bev), SOL_SOCKET, SO_RCVBUF, &rcvbuf, &ol);
	ol = sizeof(sndbuf);
	getsockopt(bufferevent_getfd(w->target.bev), SOL_SOCKET, SO_SNDBUF, &sndbuf, &ol);
	uint64_t received = session_get_stats(tunnel_session(w->server.t))->raw_bytes_received;
	/* What the server took off the tunnel but the target has not read:
	 * one window in the relay plus the socketpair's kernel buffers. */
	assert_true(received - seen <= SESSION_MIN_WINDOW + 2 * (size_t)(sndbuf + rcvbuf) +
					   bufferevent_get_max_to_read(w->target.bev));
	assert_true(received < total);
	bufferevent_enable(w->target.bev, EV_READ);
	assert_true(run_until(w, up_done, 4 * DEADLINE_MS));
	assert_true(same(up, w->target.got));
	evbuffer_free(up);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
	/* A stalled stream must not spin the loop: under 0.1 s of CPU in 0.3 s
	 * (the relay's read callback re-fires while its source buffer sits at
	 * the high watermark: libevent >= 2.1.11, libevent issue #891). */
	print_message("CPU while stalled: %.3f s of 0.3 s\n", idle_cpu);
	assert_true(idle_cpu < 0.1);
}

/* Writes the next slice of up (user side) and down (target side) every tick,
 * so that a transfer spans several rekey budgets of wall time. */
struct pacer {
	struct world *w;
	struct transfer *x;
	const uint8_t *up, *down;
	size_t len, off, chunk;
	struct event *ev;
};

static void pace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pacer *pc = arg;
	size_t n = pc->len - pc->off < pc->chunk ? pc->len - pc->off : pc->chunk;
	if (n == 0) {
		event_del(pc->ev);
		return;
	}
	bufferevent_write(pc->x->user.bev, pc->up + pc->off, n);
	bufferevent_write(pc->w->target.bev, pc->down + pc->off, n);
	pc->off += n;
}

static bool target_ready(struct world *w)
{
	return w->target.bev != NULL;
}

static bool both_ways_done(struct world *w)
{
	return up_done(w) && down_done(w);
}

static void test_tunnel_rekeys_during_transfer(void **state)
{
	/* A 1 s budget and 4 s of traffic both ways: several rekeys on both
	 * sides, every byte intact, the tunnel never drops. */
	struct world *w = world_new();
	const size_t total = 4u << 20, chunk = 64u << 10;
	struct transfer x = {w, {0}, total, total};
	xfer = &x;
	w->ccfg.rekey_after_ms = 1000;
	w->scfg.rekey_after_ms = 1000;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	bufferevent_write(x.user.bev, "go", 2);
	x.want_up = 2;
	assert_true(run_until(w, up_done, DEADLINE_MS));
	assert_true(target_ready(w));
	x.want_up = 2 + total;
	struct evbuffer *up = evbuffer_new();
	struct evbuffer *down = evbuffer_new();
	evbuffer_add(up, "go", 2);
	random_bytes(up, total);
	random_bytes(down, total);
	const uint8_t *up_bytes = evbuffer_pullup(up, -1);
	struct pacer pc = {w, &x, up_bytes + 2, evbuffer_pullup(down, -1), total, 0, chunk, NULL};
	pc.ev = event_new(w->base, -1, EV_PERSIST, pace_cb, &pc);
	struct timeval tv = {0, 62500}; /* 64 chunks in 4 s */
	event_add(pc.ev, &tv);
	assert_true(run_until(w, both_ways_done, 4 * DEADLINE_MS));
	event_free(pc.ev);
	assert_true(same(up, w->target.got));
	assert_true(same(down, x.user.got));
	settle(w, 100); /* an exchange in flight at the end completes */
	uint64_t c = tunnel_get_stats(w->client.t)->rekeys;
	uint64_t s = tunnel_get_stats(w->server.t)->rekeys;
	print_message("rekeys: client %llu, server %llu\n", (unsigned long long)c,
		      (unsigned long long)s);
	assert_true(c >= 3);
	assert_true(s + 1 >= c && c + 1 >= s);
	assert_int_equal(w->client.down, 0);
	assert_int_equal(w->server.down, 0);
	assert_int_equal(w->client.resets + w->server.resets, 0);
	evbuffer_free(up);
	evbuffer_free(down);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

static void test_tunnel_rekey_byte_budget(void **state)
{
	/* A 1 MiB byte budget and 16 MiB up at full speed: the byte budget
	 * alone (no time budget) rekeys, bounded by the 100 ms floor. */
	struct world *w = world_new();
	const size_t total = 16u << 20;
	struct transfer x = {w, {0}, total, 0};
	xfer = &x;
	w->ccfg.rekey_after_ms = 0;
	w->scfg.rekey_after_ms = 0;
	w->ccfg.rekey_bytes = 1u << 20;
	w->scfg.rekey_bytes = 1u << 20;
	connect_client(w);
	assert_true(run_until(w, both_up, DEADLINE_MS));
	open_stream(w, &x);
	struct evbuffer *up = evbuffer_new();
	random_bytes(up, total);
	bufferevent_write(x.user.bev, evbuffer_pullup(up, -1), total);
	assert_true(run_until(w, up_done, 4 * DEADLINE_MS));
	assert_true(same(up, w->target.got));
	settle(w, 300); /* the floor lets one more exchange run */
	uint64_t c = tunnel_get_stats(w->client.t)->rekeys;
	uint64_t s = tunnel_get_stats(w->server.t)->rekeys;
	print_message("rekeys by bytes: client %llu, server %llu\n", (unsigned long long)c,
		      (unsigned long long)s);
	assert_true(c >= 1);
	assert_true(s + 1 >= c && c + 1 >= s);
	assert_int_equal(w->server.down, 0);
	evbuffer_free(up);
	ep_free(&x.user);
	world_free(w);
	xfer = NULL;
}

/* A REKEY frame as the raw client sends it. */
static size_t rekey_frame(uint8_t *buf, size_t cap, uint8_t step)
{
	struct frame f = {.type = FRAME_REKEY, .flags = step};
	uint8_t priv[32];
	randombytes_buf(priv, sizeof(priv));
	crypto_scalarmult_base(f.u.rekey_key, priv);
	int n = frame_encode(&f, buf, cap);
	assert_true(n > 0);
	return (size_t)n;
}

static void test_tunnel_rekey_flood_refused(void **state)
{
	/* 1: a second OFFER while the first is outstanding (a flood, each one
	 * X25519 work); 2: an ANSWER from the client, which only the server
	 * sends; 3: DONE before any OFFER. Each closes that tunnel as a
	 * protocol error; the first OFFER alone is fine. */
	for (int kind = 1; kind <= 3; kind++) {
		struct world *w = world_new();
		struct raw_client rc;
		uint8_t f[64];
		uint64_t errors = tunnel_get_counters()->protocol_error;
		raw_client_up_flags(w, &rc, HELLO_FLAG_REKEY | HELLO_FLAG_SESSIONS);
		if (kind == 1) {
			raw_send_record(&rc, f, rekey_frame(f, sizeof(f), FRAME_REKEY_OFFER));
			settle(w, 50);
			assert_int_equal(w->server.down, 0);
			raw_send_record(&rc, f, rekey_frame(f, sizeof(f), FRAME_REKEY_OFFER));
		} else if (kind == 2) {
			raw_send_record(&rc, f, rekey_frame(f, sizeof(f), FRAME_REKEY_ANSWER));
		} else {
			raw_send_record(&rc, f, rekey_frame(f, sizeof(f), FRAME_REKEY_DONE));
		}
		assert_true(run_until(w, server_down, DEADLINE_MS));
		assert_string_equal(w->server.reason, "protocol error");
		assert_int_equal(tunnel_get_counters()->protocol_error, errors + 1);
		raw_client_free(&rc);
		world_free(w);
	}
}

static void test_tunnel_rekey_unanswered_closes(void **state)
{
	/* The server's budget runs out and it asks; a client that keeps the
	 * tunnel alive with PINGs but never OFFERs is closed after
	 * dead_after_ms, not kept on the old keys forever. */
	struct world *w = world_new();
	struct raw_client rc;
	w->scfg.rekey_after_ms = 200;
	w->scfg.dead_after_ms = 1000;
	uint64_t before = tunnel_get_counters()->rekey_timeout;
	raw_client_up_flags(w, &rc, HELLO_FLAG_REKEY | HELLO_FLAG_SESSIONS);
	struct frame ping = {.type = FRAME_PING};
	uint8_t f[64];
	int n = frame_encode(&ping, f, sizeof(f));
	assert_true(n > 0);
	for (int i = 0; i < 40 && w->server.down == 0; i++) {
		raw_send_record(&rc, f, (size_t)n);
		settle(w, 100);
	}
	assert_int_equal(w->server.down, 1);
	assert_string_equal(w->server.reason, "rekey unanswered");
	assert_int_equal(tunnel_get_counters()->rekey_timeout, before + 1);
	raw_client_free(&rc);
	world_free(w);
}

/*
 * A raw client floods frames that each call for an answer (kind PING: a
 * PONG; kind OPEN: an OPEN_RESULT, every OPEN refused) and never reads. The
 * server's queues must stay bounded (one PONG; for OPENs the tunnel stops
 * reading, so the client's sends block), and the tunnel must close once the
 * peer has taken nothing for dead_after_ms, counted in tunnel_counters.
 */
static void flood_never_read(uint8_t kind)
{
	struct world *w = world_new();
	w->scfg.tuning.sndbuf = 16384; /* fill the kernel quickly */
	w->scfg.dead_after_ms = 1500;
	w->server.cb.on_open = NULL; /* refuse every OPEN */
	uint64_t closed_before = tunnel_get_counters()->backlog;
	struct raw_client rc;
	raw_client_up(w, &rc);
	evutil_make_socket_nonblocking(rc.fd);
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	static uint8_t rec[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD];
	size_t rec_len = 0, rec_off = 0;
	uint32_t next_id = 1;
	uint64_t opaque = 0;
	size_t max_ctrl = 0, max_queued = 0, blocked = 0;
	/* PINGs: 3 s of flood show the bound; OPENs: until the server closes
	 * (dead_after_ms after its output backed up), at most 10 s. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	time_t until = ts.tv_sec + (kind == FRAME_PING ? 3 : 10);
	while (w->server.down == 0 && ts.tv_sec < until) {
		for (int k = 0; k < 64; k++) {
			if (rec_off == rec_len) {
				size_t len = 0;
				while (len + 64 <= sizeof(plain)) {
					struct frame f = {.type = kind, .stream_id = 0};
					if (kind == FRAME_OPEN) {
						f.stream_id = next_id;
						next_id += 2;
						f.u.open.type = FRAME_ADDR_IPV4;
						f.u.open.port = 9;
						f.u.open.u.ipv4[0] = 127;
						f.u.open.u.ipv4[3] = 1;
					} else {
						f.u.opaque = ++opaque;
					}
					int n = frame_encode(&f, plain + len, sizeof(plain) - len);
					assert_true(n > 0);
					len += (size_t)n;
				}
				int n = record_seal(rc.tx, plain, len, rec);
				assert_true(n > 0);
				rec_len = (size_t)n;
				rec_off = 0;
			}
			ssize_t n = send(rc.fd, rec + rec_off, rec_len - rec_off, MSG_NOSIGNAL);
			if (n < 0) {
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK ||
					    errno == EPIPE || errno == ECONNRESET);
				blocked++;
				break;
			}
			rec_off += (size_t)n;
		}
		settle(w, 2);
		struct session *ss = w->server.t != NULL ? tunnel_session(w->server.t) : NULL;
		if (ss != NULL) {
			size_t c = session_ctrl_queued(ss), q = tunnel_queued(w->server.t);
			max_ctrl = c > max_ctrl ? c : max_ctrl;
			max_queued = q > max_queued ? q : max_queued;
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
	}
	print_message("%s flood: server control queue peak %zu bytes, output peak %zu, "
		      "client blocked %zu times, server %s (%s)\n",
		      frame_type_name(kind), max_ctrl, max_queued, blocked,
		      w->server.down ? "closed" : "still up", w->server.reason);
	assert_true(run_until(w, server_down, 4 * DEADLINE_MS));
	assert_true(max_queued < (512u << 10));
	if (kind == FRAME_PING) {
		/* Our PONGs are small enough for the kernel buffers to take them
		 * all; loopback TCP then stalls the flooder's own sends too, and
		 * the server closes it as silent (or as not reading). */
		assert_true(max_ctrl <= 2 * (FRAME_HEADER_LEN + 8)); /* its PONG, our PING */
		assert_true(strcmp(w->server.reason, "peer silent") == 0 ||
			    strcmp(w->server.reason, "peer does not read its output") == 0);
	} else {
		assert_true(blocked > 0); /* the server stopped reading */
		assert_string_equal(w->server.reason, "peer does not read its output");
		assert_int_equal(tunnel_get_counters()->backlog, closed_before + 1);
	}
	raw_client_free(&rc);
	world_free(w);
}

static void test_tunnel_rekey_needs_both_hellos(void **state)
{
	/* A client whose hello does not announce rekeys (an older version): the
	 * server never asks it, so the tunnel outlives many budgets and dead_after
	 * windows; and a REKEY frame from such a client is a protocol error. */
	for (int kind = 1; kind <= 2; kind++) {
		struct world *w = world_new();
		struct raw_client rc;
		w->scfg.rekey_after_ms = 200;
		w->scfg.dead_after_ms = 1000;
		raw_client_up(w, &rc);
		struct frame ping = {.type = FRAME_PING};
		uint8_t f[64];
		int n = frame_encode(&ping, f, sizeof(f));
		assert_true(n > 0);
		if (kind == 1) {
			for (int i = 0; i < 20; i++) {
				raw_send_record(&rc, f, (size_t)n);
				settle(w, 100);
			}
			assert_int_equal(w->server.down, 0);
			assert_int_equal(tunnel_get_stats(w->server.t)->rekeys, 0);
		} else {
			raw_send_record(&rc, f, rekey_frame(f, sizeof(f), FRAME_REKEY_OFFER));
			assert_true(run_until(w, server_down, DEADLINE_MS));
			assert_string_equal(w->server.reason, "protocol error");
		}
		raw_client_free(&rc);
		world_free(w);
	}
}

static void test_tunnel_ping_flood_never_read(void **state)
{
	flood_never_read(FRAME_PING);
}

static void test_tunnel_open_flood_never_read(void **state)
{
	flood_never_read(FRAME_OPEN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tunnel_handshake_completes),
	    cmocka_unit_test(test_tunnel_stream_both_ways),
	    cmocka_unit_test(test_tunnel_unauthorized_client),
	    cmocka_unit_test(test_tunnel_wrong_pinned_key),
	    cmocka_unit_test(test_tunnel_garbage_closes_server),
	    cmocka_unit_test(test_tunnel_garbage_after_handshake),
	    cmocka_unit_test(test_tunnel_close_resets_streams),
	    cmocka_unit_test(test_tunnel_frontend_reply_outlives_tunnel),
	    cmocka_unit_test(test_tunnel_relay_connect_carries_early_data),
	    cmocka_unit_test(test_tunnel_relay_connect_refused),
	    cmocka_unit_test(test_tunnel_backpressure_slow_target),
	    cmocka_unit_test(test_tunnel_rekeys_during_transfer),
	    cmocka_unit_test(test_tunnel_rekey_byte_budget),
	    cmocka_unit_test(test_tunnel_rekey_flood_refused),
	    cmocka_unit_test(test_tunnel_rekey_unanswered_closes),
	    cmocka_unit_test(test_tunnel_rekey_needs_both_hellos),
	    cmocka_unit_test(test_tunnel_ping_flood_never_read),
	    cmocka_unit_test(test_tunnel_open_flood_never_read),
	};
	if (sodium_init() < 0)
		return 1;
	log_init("test_tunnel", LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
