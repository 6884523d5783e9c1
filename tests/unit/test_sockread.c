/*
 * sockread tests over socketpairs with real socket bufferevents: one read
 * callback takes what waits (up to its max) instead of libevent's 4 KiB,
 * reads nothing when nothing waits, leaves EOF to libevent, and the
 * input buffer's callbacks count every byte.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "wanmux/sockread.h"

struct rig {
	struct event_base *base;
	struct bufferevent *bev;
	int peer;
	size_t max;	     /* passed to sockread_more */
	size_t first_before; /* input length at the first callback */
	size_t first_more;   /* what sockread_more added at the first callback */
	size_t callbacks;    /* read callbacks */
	size_t added;	     /* bytes the input buffer's callback saw added */
	size_t drained;	     /* bytes the read callback took out */
	bool eof;
};

static void on_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct rig *r = arg;
	r->added += info->n_added;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct rig *r = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t before = evbuffer_get_length(in);
	size_t more = sockread_more(bev, r->max);
	assert_int_equal(evbuffer_get_length(in), before + more);
	assert_true(more <= r->max);
	if (r->callbacks++ == 0) {
		r->first_before = before;
		r->first_more = more;
	}
	r->drained += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct rig *r = arg;
	if (what & BEV_EVENT_EOF) {
		r->eof = true;
		event_base_loopbreak(r->base);
	}
}

static void rig_open(struct rig *r, size_t max)
{
	memset(r, 0, sizeof(*r));
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int big = 1 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	r->base = event_base_new();
	assert_non_null(r->base);
	r->bev = bufferevent_socket_new(r->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(r->bev);
	evbuffer_add_cb(bufferevent_get_input(r->bev), on_added, r);
	bufferevent_setcb(r->bev, on_read, NULL, on_event, r);
	bufferevent_set_max_single_read(r->bev, 1 << 20);
	r->peer = sv[1];
	r->max = max;
}

static void rig_send(struct rig *r, size_t n)
{
	static uint8_t chunk[8192];
	while (n > 0) {
		size_t k = n < sizeof(chunk) ? n : sizeof(chunk);
		ssize_t w = write(r->peer, chunk, k);
		assert_true(w > 0);
		n -= (size_t)w;
	}
}

static void rig_close(struct rig *r)
{
	bufferevent_free(r->bev);
	if (r->peer >= 0)
		close(r->peer);
	event_base_free(r->base);
}

/* 128 KiB waiting: libevent's own read stops at 4 KiB (what every read
 * callback saw before); sockread_more takes the next 60 KiB at once. */
static void test_sockread_one_wakeup_reads_what_waits(void **state)
{
	struct rig r;
	rig_open(&r, 60u << 10);
	rig_send(&r, 128u << 10);
	bufferevent_enable(r.bev, EV_READ);
	event_base_loop(r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(r.callbacks, 1);
	print_message("libevent read %zu bytes, sockread_more %zu more\n", r.first_before,
		      r.first_more);
	assert_true(r.first_before <= 4096);
	assert_int_equal(r.first_more, 60u << 10);
	assert_int_equal(r.added, r.drained);
	rig_close(&r);
}

/* max bounds the read even with more waiting. */
static void test_sockread_stops_at_max(void **state)
{
	struct rig r;
	rig_open(&r, 1000);
	rig_send(&r, 64u << 10);
	bufferevent_enable(r.bev, EV_READ);
	event_base_loop(r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(r.first_more, 1000);
	rig_close(&r);
}

/* A small write: libevent's read takes it all, nothing is left to read. */
static void test_sockread_nothing_waiting_reads_nothing(void **state)
{
	struct rig r;
	rig_open(&r, 60u << 10);
	rig_send(&r, 100);
	bufferevent_enable(r.bev, EV_READ);
	event_base_loop(r.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_int_equal(r.callbacks, 1);
	assert_int_equal(r.first_before, 100);
	assert_int_equal(r.first_more, 0);
	rig_close(&r);
}

/* Data then EOF: every byte arrives once, in order of count, and the EOF
 * still reaches the event callback through libevent's own read. */
static void test_sockread_eof_left_to_libevent(void **state)
{
	struct rig r;
	rig_open(&r, 60u << 10);
	rig_send(&r, 200000);
	close(r.peer);
	r.peer = -1;
	bufferevent_enable(r.bev, EV_READ);
	for (int i = 0; i < 1000 && !r.eof; i++)
		event_base_loop(r.base, EVLOOP_ONCE);
	assert_true(r.eof);
	assert_int_equal(r.drained, 200000);
	assert_int_equal(r.added, 200000);
	/* 4 KiB + 60 KiB per callback: 4 callbacks, not 49. */
	assert_true(r.callbacks <= 5);
	rig_close(&r);
}

/* No socket (a bufferevent not yet connected): nothing happens. */
static void test_sockread_without_socket(void **state)
{
	struct event_base *base = event_base_new();
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
	assert_int_equal(sockread_more(bev, 4096), 0);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(bev)), 0);
	bufferevent_free(bev);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sockread_one_wakeup_reads_what_waits),
	    cmocka_unit_test(test_sockread_stops_at_max),
	    cmocka_unit_test(test_sockread_nothing_waiting_reads_nothing),
	    cmocka_unit_test(test_sockread_eof_left_to_libevent),
	    cmocka_unit_test(test_sockread_without_socket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
