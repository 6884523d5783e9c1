/*
 * Acceptor tests, in-process: a loopback listener in this process while
 * the process is out of descriptors (RLIMIT_NOFILE lowered to what is open
 * now). accept() then fails with EMFILE on every try; the acceptor must
 * pause and retry a few times a second, not spin, and accept again once a
 * descriptor is free.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "wanmux/acceptor.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"

static int accepted;
static int accepted_fd = -1;

static void on_accept(int fd, const struct sockaddr *peer, int peerlen, void *arg)
{
	accepted++;
	if (accepted_fd >= 0)
		close(accepted_fd);
	accepted_fd = fd;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

static void run_for(struct event_base *base, int ms)
{
	struct event *ev = evtimer_new(base, on_stop, base);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
	event_base_dispatch(base);
	event_free(ev);
}

/* The lowest descriptor number not open: the limit that leaves none free. */
static int first_free_fd(void)
{
	int fd = dup(0);
	assert_true(fd >= 0);
	close(fd);
	return fd;
}

static void test_acceptor_backs_off_on_emfile(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	int lfd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(lfd >= 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	struct acceptor *a = acceptor_new(base, lfd, on_accept, NULL, "test");
	assert_non_null(a);

	/* Two pending connections; then the descriptor table is full (the
	 * client sockets take the last slots). */
	int c1 = socket(AF_INET, SOCK_STREAM, 0), c2 = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c1 >= 0 && c2 >= 0);
	assert_int_equal(connect(c1, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(connect(c2, (struct sockaddr *)&sin, sizeof(sin)), 0);
	struct rlimit saved, tight;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	tight.rlim_cur = (rlim_t)first_free_fd();
	tight.rlim_max = saved.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);

	run_for(base, 500);
	uint64_t failures = acceptor_failures(a);
	/* Paused 100, 200 ms ...: about 3 tries in 500 ms. A listener left
	 * armed fails tens of thousands of times. */
	assert_true(failures >= 1);
	assert_true(failures <= 6);
	assert_int_equal(accepted, 0);

	/* A descriptor is free again: the next retry (at most 1 s) accepts. */
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	run_for(base, 1200);
	assert_int_equal(accepted, 2);

	close(c1);
	close(c2);
	if (accepted_fd >= 0)
		close(accepted_fd);
	acceptor_free(a);
	event_base_free(base);
}

static void on_owner_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
			    int salen, void *arg)
{
	on_accept(fd, sa, salen, arg);
}

/* A listener someone else owns (evhttp's, for --admin): guarded, it backs
 * off the same way and stays its owner's to free. */
static void test_acceptor_guard_backs_off_borrowed_listener(void **state)
{
	accepted = 0;
	accepted_fd = -1; /* the test before closed its own */
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	int lfd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(lfd >= 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	struct evconnlistener *evl =
	    evconnlistener_new(base, on_owner_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, lfd);
	assert_non_null(evl);
	struct acceptor *a = acceptor_guard(base, evl, "borrowed");
	assert_non_null(a);

	int c1 = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c1 >= 0);
	assert_int_equal(connect(c1, (struct sockaddr *)&sin, sizeof(sin)), 0);
	struct rlimit saved, tight;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	tight.rlim_cur = (rlim_t)first_free_fd();
	tight.rlim_max = saved.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);

	run_for(base, 500);
	uint64_t failures = acceptor_failures(a);
	assert_true(failures >= 1);
	assert_true(failures <= 6);
	assert_int_equal(accepted, 0);

	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	run_for(base, 1200);
	assert_int_equal(accepted, 1);

	close(c1);
	if (accepted_fd >= 0)
		close(accepted_fd);
	accepted_fd = -1;
	acceptor_free(a);
	evconnlistener_free(evl); /* still valid: the guard did not own it */
	event_base_free(base);
}

/*
 * An acceptor freed while its throttle holds back failure lines (a listener
 * closed by a drain or a reload, a reverse listener going away) must leave
 * the logger's list: the flush at exit walked into the freed acceptor
 * (ASan: heap-use-after-free in log_throttle_flush).
 */
static void test_acceptor_free_while_lines_held_back(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct netaddr_hostport hp = {"127.0.0.1", 0};
	char err[128];
	int lfd = netaddr_listen(&hp, err, sizeof(err));
	assert_true(lfd >= 0);
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);
	struct acceptor *a = acceptor_new(base, lfd, on_accept, NULL, "test");
	assert_non_null(a);
	int c1 = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(c1 >= 0);
	assert_int_equal(connect(c1, (struct sockaddr *)&sin, sizeof(sin)), 0);
	struct rlimit saved, tight;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	tight.rlim_cur = (rlim_t)first_free_fd();
	tight.rlim_max = saved.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	/* Failures at 0, 100 and 300 ms: the first line goes out, the others
	 * are held back within the second (only lines the level lets out are
	 * held back at all). */
	log_init("test_acceptor", LOG_LEVEL_WARN);
	run_for(base, 400);
	log_init("test_acceptor", LOG_LEVEL_ERROR);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_true(acceptor_failures(a) >= 2);
	acceptor_free(a);
	log_throttle_flush();
	close(c1);
	event_base_free(base);
}

static void test_acceptor_fd_budget_raises_soft_limit(void **state)
{
	struct rlimit saved, low, now;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	if (saved.rlim_max < 256)
		skip();
	low.rlim_cur = 64;
	low.rlim_max = saved.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	uint64_t have = acceptor_fd_budget(10, "test");
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &now), 0);
	assert_true(now.rlim_cur == saved.rlim_max);
	assert_true(have == (saved.rlim_max == RLIM_INFINITY ? UINT64_MAX : saved.rlim_max));
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

int main(void)
{
	log_init("test_acceptor", LOG_LEVEL_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acceptor_backs_off_on_emfile),
	    cmocka_unit_test(test_acceptor_free_while_lines_held_back),
	    cmocka_unit_test(test_acceptor_guard_backs_off_borrowed_listener),
	    cmocka_unit_test(test_acceptor_fd_budget_raises_soft_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
