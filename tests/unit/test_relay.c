/*
 * Relay state machine tests: the transition table (every state but CLOSED
 * can close, CLOSED is final, what each state may become, every state
 * reachable), names for logs, and in-process lifecycles over socketpairs that
 * need no stream: a front end's request, its reply flushed before the close,
 * a client leaving mid-request, a relay waiting to be connected. The stream
 * half-close states are checked in test_tunnel (they need a session).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>

#include "wanmux/relay.h"
#include "wanmux/session.h"

/* The table as relay.h describes it, written out again by hand. */
static const enum relay_state allowed[][2] = {
    {RELAY_NEW, RELAY_REQUEST},
    {RELAY_NEW, RELAY_OPEN},
    {RELAY_NEW, RELAY_FLUSHING},
    {RELAY_REQUEST, RELAY_NEW},
    {RELAY_REQUEST, RELAY_FLUSHING},
    {RELAY_CONNECTING, RELAY_CONNECTING_REMOTE_CLOSED},
    {RELAY_CONNECTING, RELAY_OPEN},
    {RELAY_CONNECTING_REMOTE_CLOSED, RELAY_REMOTE_CLOSED},
    {RELAY_OPEN, RELAY_LOCAL_CLOSED},
    {RELAY_OPEN, RELAY_REMOTE_CLOSED},
    {RELAY_OPEN, RELAY_FLUSHING},
    {RELAY_LOCAL_CLOSED, RELAY_BOTH_CLOSED},
    {RELAY_LOCAL_CLOSED, RELAY_FLUSHING},
    {RELAY_REMOTE_CLOSED, RELAY_BOTH_CLOSED},
    {RELAY_REMOTE_CLOSED, RELAY_FLUSHING},
    {RELAY_BOTH_CLOSED, RELAY_FLUSHING},
};

static bool listed(enum relay_state from, enum relay_state to)
{
	if (to == RELAY_CLOSED)
		return from != RELAY_CLOSED; /* every state may close, once */
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (allowed[i][0] == from && allowed[i][1] == to)
			return true;
	return false;
}

static void test_relay_transition_table(void **state)
{
	(void)state;
	for (int from = 0; from < RELAY_STATE_COUNT; from++)
		for (int to = 0; to < RELAY_STATE_COUNT; to++)
			if (relay_state_allowed(from, to) != listed(from, to))
				fail_msg("%s -> %s: table says %d", relay_state_name(from),
					 relay_state_name(to), relay_state_allowed(from, to));
	/* Out of range is never allowed. */
	assert_false(relay_state_allowed(RELAY_STATE_COUNT, RELAY_CLOSED));
	assert_false(relay_state_allowed(RELAY_OPEN, RELAY_STATE_COUNT));
}

/* No state goes back to itself, the half-closes never reopen, and no state
 * after the stream started goes back to the setup states. */
static void test_relay_transitions_go_forward(void **state)
{
	(void)state;
	static const enum relay_state setup[] = {RELAY_NEW, RELAY_REQUEST, RELAY_CONNECTING,
						 RELAY_CONNECTING_REMOTE_CLOSED};
	for (int s = 0; s < RELAY_STATE_COUNT; s++)
		assert_false(relay_state_allowed(s, s));
	for (int from = RELAY_OPEN; from < RELAY_STATE_COUNT; from++)
		for (size_t k = 0; k < sizeof(setup) / sizeof(setup[0]); k++)
			assert_false(relay_state_allowed(from, setup[k]));
	assert_false(relay_state_allowed(RELAY_LOCAL_CLOSED, RELAY_OPEN));
	assert_false(relay_state_allowed(RELAY_REMOTE_CLOSED, RELAY_OPEN));
	assert_false(relay_state_allowed(RELAY_BOTH_CLOSED, RELAY_LOCAL_CLOSED));
	assert_false(relay_state_allowed(RELAY_FLUSHING, RELAY_OPEN));
	/* A connecting relay has no socket to flush a reply to. */
	assert_false(relay_state_allowed(RELAY_CONNECTING, RELAY_FLUSHING));
}

/* Every state is reachable from where relays start (NEW, CONNECTING). */
static void test_relay_every_state_reachable(void **state)
{
	(void)state;
	bool seen[RELAY_STATE_COUNT] = {false};
	seen[RELAY_NEW] = seen[RELAY_CONNECTING] = true;
	for (int round = 0; round < RELAY_STATE_COUNT; round++)
		for (int from = 0; from < RELAY_STATE_COUNT; from++)
			for (int to = 0; to < RELAY_STATE_COUNT; to++)
				if (seen[from] && relay_state_allowed(from, to))
					seen[to] = true;
	for (int s = 0; s < RELAY_STATE_COUNT; s++)
		if (!seen[s])
			fail_msg("%s cannot be reached", relay_state_name(s));
}

static void test_relay_state_names(void **state)
{
	(void)state;
	for (int a = 0; a < RELAY_STATE_COUNT; a++) {
		const char *n = relay_state_name(a);
		assert_non_null(n);
		assert_string_not_equal(n, "?");
		for (int b = 0; b < a; b++)
			assert_string_not_equal(n, relay_state_name(b));
	}
	assert_string_equal(relay_state_name(RELAY_OPEN), "open");
	assert_string_equal(relay_state_name(RELAY_LOCAL_CLOSED), "local half-closed");
	assert_string_equal(relay_state_name(RELAY_STATE_COUNT), "?");
}

/* In-process lifecycles: a relay on one end of a socketpair, the test on
 * the other. */
struct world {
	struct event_base *base;
	int peer; /* the test's end */
	struct relay *r;
	struct relay_watch watch;
	bool closed;
	enum relay_state seen_in_on_read;
	size_t request_bytes;
};

static void on_close(void *arg)
{
	struct world *w = arg;
	w->closed = true;
	w->r = NULL;
}

static void world_init(struct world *w)
{
	int sv[2];
	memset(w, 0, sizeof(*w));
	w->base = event_base_new();
	assert_non_null(w->base);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	w->peer = sv[1];
	w->r = relay_new(w->base, sv[0], "test relay");
	assert_non_null(w->r);
	relay_watch(w->r, &w->watch, on_close, w);
}

static void world_free(struct world *w)
{
	if (w->r != NULL)
		relay_close(w->r, false);
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	close(w->peer);
	event_base_free(w->base);
}

/* Runs the loop until the relay closed, at most about a second. */
static void run_until_closed(struct world *w)
{
	for (int i = 0; i < 1000 && !w->closed; i++) {
		event_base_loop(w->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
	/* One more pass: the free is deferred to the loop. */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
}

static void run_a_little(struct world *w)
{
	for (int i = 0; i < 20; i++) {
		event_base_loop(w->base, EVLOOP_NONBLOCK);
		usleep(1000);
	}
}

static const char reply[] = "reply of the front end";

/* A front end that answers the first bytes of its request and closes. */
static void on_request_reply(struct relay *r, struct evbuffer *in, void *arg)
{
	struct world *w = arg;
	w->seen_in_on_read = relay_get_state(r);
	w->request_bytes += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	assert_int_equal(relay_write_local(r, reply, sizeof(reply) - 1), 0);
	relay_close_after_flush(r);
	/* Until the reply is out. */
	assert_int_equal(relay_get_state(r), RELAY_FLUSHING);
}

static void test_relay_request_reply_flushes_then_closes(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	assert_int_equal(relay_get_state(w.r), RELAY_NEW);
	struct relay_frontend fe = {.on_read = on_request_reply, .arg = &w};
	relay_set_frontend(w.r, &fe);
	assert_int_equal(relay_get_state(w.r), RELAY_REQUEST);
	relay_start(w.r);
	assert_int_equal(write(w.peer, "GET", 3), 3);
	run_until_closed(&w);
	assert_true(w.closed);
	assert_int_equal(w.seen_in_on_read, RELAY_REQUEST);
	assert_int_equal(w.request_bytes, 3);
	char buf[64];
	ssize_t n = read(w.peer, buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)sizeof(reply) - 1);
	assert_memory_equal(buf, reply, sizeof(reply) - 1);
	assert_int_equal(read(w.peer, buf, sizeof(buf)), 0); /* FIN, not RST */
	world_free(&w);
}

static void on_request_ignore(struct relay *r, struct evbuffer *in, void *arg)
{
	struct world *w = arg;
	w->request_bytes += evbuffer_get_length(in);
}

/* The client leaves before its request is complete: closed at once. */
static void test_relay_eof_during_request_closes(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	struct relay_frontend fe = {.on_read = on_request_ignore, .arg = &w};
	relay_set_frontend(w.r, &fe);
	relay_start(w.r);
	assert_int_equal(write(w.peer, "CONN", 4), 4);
	run_a_little(&w);
	assert_false(w.closed);
	assert_int_equal(relay_get_state(w.r), RELAY_REQUEST);
	shutdown(w.peer, SHUT_WR);
	run_until_closed(&w);
	assert_true(w.closed);
	assert_int_equal(w.request_bytes, 4);
	world_free(&w);
}

/* The request is parsed without a stream yet (waiting for a tunnel): NEW
 * again, and a front end's failure reply flushes from there. */
static void test_relay_end_request_without_stream(void **state)
{
	(void)state;
	struct world w;
	world_init(&w);
	struct relay_frontend fe = {.on_read = on_request_ignore, .arg = &w};
	relay_set_frontend(w.r, &fe);
	relay_end_request(w.r);
	assert_int_equal(relay_get_state(w.r), RELAY_NEW);
	relay_end_request(w.r); /* not in a request: nothing changes */
	assert_int_equal(relay_get_state(w.r), RELAY_NEW);
	assert_int_equal(relay_write_local(w.r, reply, sizeof(reply) - 1), 0);
	relay_close_after_flush(w.r);
	assert_int_equal(relay_get_state(w.r), RELAY_FLUSHING);
	relay_close_after_flush(w.r); /* twice is harmless */
	run_until_closed(&w);
	assert_true(w.closed);
	char buf[64];
	assert_int_equal(read(w.peer, buf, sizeof(buf)), (ssize_t)sizeof(reply) - 1);
	world_free(&w);
}

/* A relay without a socket waits to be connected; closing it from there is
 * allowed (a refused or unresolvable target). */
static void test_relay_without_socket_is_connecting(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct relay *r = relay_new(base, -1, "target");
	assert_non_null(r);
	assert_int_equal(relay_get_state(r), RELAY_CONNECTING);
	relay_close(r, true);
	assert_int_equal(relay_get_state(r), RELAY_CLOSED);
	event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
}

static int connected_calls;
static uint32_t connected_error;

static void on_connected(struct relay *r, uint32_t error, void *arg)
{
	connected_calls++;
	connected_error = error;
	if (error == 0)
		relay_start(r);
}

/* A listening loopback socket; its address in *sin. */
static int listen_loopback(struct sockaddr_in *sin)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(fd >= 0);
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(*sin);
	assert_int_equal(bind(fd, (struct sockaddr *)sin, sizeof(*sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)sin, &len), 0);
	return fd;
}

/*
 * The peer's FIN (and its data) arrive while the server still resolves the
 * target's name: the relay has no socket yet. Once connected, the target
 * gets the data and then EOF. Before the state machine, a FIN with nothing
 * before it marked the write side shut on the socketless relay, and the
 * target never saw EOF.
 */
static void fin_before_connect(const char *data, size_t len)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct sockaddr_in sin;
	int lfd = listen_loopback(&sin);
	struct session_callbacks cb;
	memset(&cb, 0, sizeof(cb));
	relay_stream_callbacks(&cb);
	struct relay *r = relay_new(base, -1, "target");
	assert_non_null(r);
	if (len > 0)
		cb.on_data(NULL, (const uint8_t *)data, len, r);
	cb.on_fin(NULL, r); /* no stream here: the callbacks only need the relay */
	assert_int_equal(relay_get_state(r), RELAY_CONNECTING_REMOTE_CLOSED);
	connected_calls = 0;
	assert_int_equal(relay_connect(r, (struct sockaddr *)&sin, sizeof(sin), on_connected, NULL),
			 0);
	int afd = -1;
	char got[64];
	size_t have = 0;
	bool eof = false;
	for (int i = 0; i < 2000 && !eof; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (afd < 0)
			afd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
		if (afd >= 0) {
			ssize_t n = read(afd, got + have, sizeof(got) - have);
			if (n == 0)
				eof = true;
			else if (n > 0)
				have += (size_t)n;
			else
				assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		}
		usleep(500);
	}
	assert_int_equal(connected_calls, 1);
	assert_int_equal(connected_error, 0);
	assert_true(eof);
	assert_int_equal(have, len);
	if (len > 0)
		assert_memory_equal(got, data, len);
	assert_int_equal(relay_get_state(r), RELAY_REMOTE_CLOSED);
	relay_close(r, false);
	event_base_loop(base, EVLOOP_NONBLOCK);
	close(afd);
	close(lfd);
	event_base_free(base);
}

static void test_relay_fin_before_connect_reaches_target(void **state)
{
	(void)state;
	fin_before_connect(NULL, 0);
}

static void test_relay_data_and_fin_before_connect_reach_target(void **state)
{
	(void)state;
	fin_before_connect("early bytes", 11);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relay_transition_table),
	    cmocka_unit_test(test_relay_transitions_go_forward),
	    cmocka_unit_test(test_relay_every_state_reachable),
	    cmocka_unit_test(test_relay_state_names),
	    cmocka_unit_test(test_relay_request_reply_flushes_then_closes),
	    cmocka_unit_test(test_relay_eof_during_request_closes),
	    cmocka_unit_test(test_relay_end_request_without_stream),
	    cmocka_unit_test(test_relay_without_socket_is_connecting),
	    cmocka_unit_test(test_relay_fin_before_connect_reaches_target),
	    cmocka_unit_test(test_relay_data_and_fin_before_connect_reach_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
