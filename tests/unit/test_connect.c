/*
 * Tests for connect_tunnel: the client's tunnel socket gets its receive
 * buffer before connect(), for an address and for a name, so the window
 * clamp the kernel fixes at the handshake already covers it; "auto" (0)
 * leaves the kernel's defaults; a failed lookup reports a DNS error; a
 * bufferevent freed during the lookup is not touched afterwards. Loopback
 * only; names come from a private hosts file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "wanmux/connect.h"
#include "wanmux/dns.h"
#include "wanmux/netaddr.h"

#define RCVBUF (4u << 20)

struct fixture {
	struct event_base *base;
	struct evdns_base *dns;
	char resolv[64];
	char hosts[64];
	int mute; /* the name server: a UDP socket nobody reads */
	int lfd;
	uint16_t port;
	struct event *accept_ev;
	int srv;		 /* accepted side, -1 until then */
	short what;		 /* client's first event */
	int dns_err;		 /* bufferevent_socket_get_dns_error then */
	int rcvbuf, clamp;	 /* client socket at BEV_EVENT_CONNECTED */
	struct bufferevent *bev; /* the client */
};

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;

	(void)what;
	f->srv = accept(fd, NULL, NULL);
	if (f->srv >= 0 && f->what != 0)
		event_base_loopbreak(f->base);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
	struct fixture *f = arg;
	int fd = bufferevent_getfd(bev);
	socklen_t len = sizeof(int);

	f->what = what;
	f->dns_err = bufferevent_socket_get_dns_error(bev);
	if (what & BEV_EVENT_CONNECTED) {
		getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &f->rcvbuf, &len);
		len = sizeof(int);
		getsockopt(fd, IPPROTO_TCP, TCP_WINDOW_CLAMP, &f->clamp, &len);
		if (f->srv < 0)
			return; /* wait for the accept too */
	}
	event_base_loopbreak(f->base);
}

/* A name server that never answers (unknown names fail after its 1 s
 * timeout, and no query leaves loopback) and a hosts file naming the
 * listener. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	FILE *out;
	int fd;

	assert_non_null(f);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->mute = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(f->mute >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->mute, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->mute, (struct sockaddr *)&sin, &len), 0);
	snprintf(f->resolv, sizeof(f->resolv), "/tmp/test_connect_resolv.XXXXXX");
	fd = mkstemp(f->resolv);
	assert_true(fd >= 0);
	out = fdopen(fd, "w");
	fprintf(out, "nameserver 127.0.0.1:%u\noptions timeout:1 attempts:1\n",
		(unsigned)ntohs(sin.sin_port));
	fclose(out);
	snprintf(f->hosts, sizeof(f->hosts), "/tmp/test_connect_hosts.XXXXXX");
	fd = mkstemp(f->hosts);
	assert_true(fd >= 0);
	out = fdopen(fd, "w");
	fprintf(out, "127.0.0.1 tunnel-server.test\n");
	/* The first address refuses (nothing listens on 127.0.0.2), the
	 * second is the listener; both refuse for dead.test. */
	fprintf(out, "127.0.0.2 multi.test\n127.0.0.1 multi.test\n");
	fprintf(out, "127.0.0.2 dead.test\n127.0.0.3 dead.test\n");
	fclose(out);
	f->dns = dns_new_from(f->base, f->resolv, f->hosts);
	assert_non_null(f->dns);
	f->lfd = -1;
	f->srv = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->bev != NULL)
		bufferevent_free(f->bev);
	if (f->accept_ev != NULL)
		event_free(f->accept_ev);
	if (f->srv >= 0)
		close(f->srv);
	if (f->lfd >= 0)
		close(f->lfd);
	dns_free(f->dns);
	event_base_free(f->base);
	close(f->mute);
	unlink(f->resolv);
	unlink(f->hosts);
	free(f);
	return 0;
}

/* A listener on 127.0.0.1 with t's buffers (set before listen()). */
static void listen_tuned(struct fixture *f, const struct netaddr_tuning *t)
{
	struct netaddr_hostport hp = {.host = "127.0.0.1", .port = 0};
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char err[256];

	f->lfd = netaddr_listen_tuned(&hp, t, err, sizeof(err));
	assert_true(f->lfd >= 0);
	assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sin, &len), 0);
	f->port = ntohs(sin.sin_port);
	f->accept_ev = event_new(f->base, f->lfd, EV_READ | EV_PERSIST, on_accept, f);
	event_add(f->accept_ev, NULL);
}

/* connect_tunnel to host and run the loop until connected and accepted
 * (or an error), 20 s at most. */
static void connect_to(struct fixture *f, const char *host, const struct netaddr_tuning *t)
{
	struct netaddr_hostport hp;
	struct timeval limit = {20, 0};

	snprintf(hp.host, sizeof(hp.host), "%s", host);
	hp.port = f->port != 0 ? f->port : 9;
	f->bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f->bev);
	bufferevent_setcb(f->bev, NULL, NULL, on_client_event, f);
	bufferevent_enable(f->bev, EV_READ | EV_WRITE);
	assert_int_equal(connect_tunnel(f->bev, f->dns, &hp, t), 0);
	event_base_loopexit(f->base, &limit);
	event_base_dispatch(f->base);
}

/*
 * Whether this process can have a fixed receive buffer of bytes at all:
 * CAP_NET_ADMIN (SO_RCVBUFFORCE), or net.core.rmem_max that large. When
 * not, netaddr keeps autotuning and the tests check that instead.
 */
static bool can_fix_rcvbuf(int bytes)
{
	int probe = socket(AF_INET, SOCK_STREAM, 0);
	bool ok = setsockopt(probe, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) == 0;
	FILE *in = fopen("/proc/sys/net/core/rmem_max", "r");
	unsigned long long max = 0;

	close(probe);
	if (in != NULL) {
		if (fscanf(in, "%llu", &max) != 1)
			max = 0;
		fclose(in);
	}
	if (!ok)
		printf("# no CAP_NET_ADMIN, net.core.rmem_max %llu\n", max);
	return ok || max >= (unsigned long long)bytes;
}

static int sockopt(int fd, int level, int name)
{
	int v = 0;
	socklen_t len = sizeof(v);

	assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

/* The default receive buffer and window clamp of a loopback connection. */
static void plain_defaults(int *rcvbuf, int *clamp)
{
	struct netaddr_hostport hp = {.host = "127.0.0.1", .port = 0};
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	char err[256];
	int l = netaddr_listen(&hp, err, sizeof(err));
	int c = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(l >= 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	assert_int_equal(connect(c, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*rcvbuf = sockopt(c, SOL_SOCKET, SO_RCVBUF);
	*clamp = sockopt(c, IPPROTO_TCP, TCP_WINDOW_CLAMP);
	close(c);
	close(l);
}

/*
 * Both ends got the buffer before their handshake: SO_RCVBUF is the size
 * (doubled by the kernel) and the window clamp covers it. A buffer set
 * after the handshake shows the same SO_RCVBUF but keeps the 64 KiB clamp
 * of the default buffer, which is what the clamp check catches.
 */
static void check_fixed(struct fixture *f)
{
	int def_rcvbuf, def_clamp;

	assert_true(f->what & BEV_EVENT_CONNECTED);
	assert_true(f->srv >= 0);
	plain_defaults(&def_rcvbuf, &def_clamp);
	if (!can_fix_rcvbuf((int)RCVBUF)) {
		/* Autotuning kept on both ends: the kernel's defaults. */
		assert_int_equal(f->rcvbuf, def_rcvbuf);
		assert_int_equal(sockopt(f->srv, SOL_SOCKET, SO_RCVBUF), def_rcvbuf);
		return;
	}
	assert_int_equal(f->rcvbuf, 2 * RCVBUF);
	assert_true(f->clamp >= (int)(RCVBUF / 2));
	assert_true(f->clamp > 4 * def_clamp);
	assert_int_equal(sockopt(f->srv, SOL_SOCKET, SO_RCVBUF), 2 * RCVBUF);
	assert_true(sockopt(f->srv, IPPROTO_TCP, TCP_WINDOW_CLAMP) >= (int)(RCVBUF / 2));
}

static void test_connect_tunnel_address_rcvbuf_before_handshake(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = RCVBUF};

	listen_tuned(f, &t);
	connect_to(f, "127.0.0.1", &t);
	check_fixed(f);
}

static void test_connect_tunnel_name_rcvbuf_before_handshake(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = RCVBUF};

	listen_tuned(f, &t);
	connect_to(f, "tunnel-server.test", &t);
	check_fixed(f);
}

/* rcvbuf 0 ("auto"): nothing set, the kernel's defaults on both ends. */
static void test_connect_tunnel_auto_leaves_defaults(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = 0};
	int def_rcvbuf, def_clamp;

	listen_tuned(f, &t);
	connect_to(f, "127.0.0.1", &t);
	assert_true(f->what & BEV_EVENT_CONNECTED);
	assert_true(f->srv >= 0);
	plain_defaults(&def_rcvbuf, &def_clamp);
	assert_int_equal(f->rcvbuf, def_rcvbuf);
	assert_int_equal(f->clamp, def_clamp);
	assert_int_equal(sockopt(f->srv, SOL_SOCKET, SO_RCVBUF), def_rcvbuf);
}

/* A name nobody knows: BEV_EVENT_ERROR with the lookup's error, as libevent's
 * own bufferevent_socket_connect_hostname reports it. */
static void test_connect_tunnel_unknown_name(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = RCVBUF};

	connect_to(f, "no-such-host.test", &t);
	assert_true(f->what & BEV_EVENT_ERROR);
	assert_int_not_equal(f->dns_err, 0);
}

/*
 * The tunnel gives up while the name is being looked up: the failed query,
 * when its timeout ends it, finds no callback and only drops its reference
 * (ASan and LSan check the rest).
 */
static void test_connect_tunnel_freed_during_lookup(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = RCVBUF};
	struct netaddr_hostport hp = {.host = "slow.test", .port = 9};
	struct timeval limit = {3, 0};

	f->bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f->bev);
	bufferevent_setcb(f->bev, NULL, NULL, on_client_event, f);
	assert_int_equal(connect_tunnel(f->bev, f->dns, &hp, &t), 0);
	bufferevent_free(f->bev);
	f->bev = NULL;
	event_base_loopexit(f->base, &limit);
	event_base_dispatch(f->base);
	assert_int_equal(f->what, 0); /* no callback ran */
}

/* A name whose first address refuses: the next one is tried (RFC 8305),
 * not only the first. */
static void test_connect_tunnel_name_tries_next_address(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = 0};

	listen_tuned(f, &t);
	connect_to(f, "multi.test", &t);
	assert_true(f->what & BEV_EVENT_CONNECTED);
	assert_true(f->srv >= 0);
}

/* Every address refuses: one BEV_EVENT_ERROR, with the refusal in errno. */
static void test_connect_tunnel_all_addresses_fail(void **state)
{
	struct fixture *f = *state;
	struct netaddr_tuning t = {.rcvbuf = 0};

	listen_tuned(f, &t); /* only for a port nobody uses on .2 and .3 */
	connect_to(f, "dead.test", &t);
	assert_true(f->what & BEV_EVENT_ERROR);
	assert_int_equal(EVUTIL_SOCKET_ERROR(), ECONNREFUSED);
	assert_true(f->srv < 0);
}

static struct evutil_addrinfo *ai_of(struct sockaddr_storage *ss, int family, uint8_t last)
{
	struct evutil_addrinfo *ai = calloc(1, sizeof(*ai));
	assert_non_null(ai);
	memset(ss, 0, sizeof(*ss));
	ai->ai_family = family;
	ai->ai_addr = (struct sockaddr *)ss;
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(0x7f000000u | last);
		ai->ai_addrlen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr.s6_addr[15] = last;
		ai->ai_addrlen = sizeof(*sin6);
	}
	return ai;
}

/* RFC 8305 order: IPv6 first, families in turn, each in resolver order;
 * the longer family's rest at the end; max respected. */
static void test_connect_interleave_v6_first_alternating(void **state)
{
	struct sockaddr_storage in[5], out[8];
	socklen_t lens[8];
	const int fam[5] = {AF_INET, AF_INET, AF_INET6, AF_INET6, AF_INET};
	const uint8_t last[5] = {1, 2, 3, 4, 5};
	struct evutil_addrinfo *head = NULL, **tail = &head;

	(void)state;
	for (int i = 0; i < 5; i++) {
		*tail = ai_of(&in[i], fam[i], last[i]);
		tail = &(*tail)->ai_next;
	}
	size_t n = connect_interleave(head, out, lens, 8);
	assert_int_equal(n, 5);
	const uint8_t want[5] = {3, 1, 4, 2, 5};
	for (size_t i = 0; i < n; i++) {
		if (out[i].ss_family == AF_INET6)
			assert_int_equal(((struct sockaddr_in6 *)&out[i])->sin6_addr.s6_addr[15],
					 want[i]);
		else
			assert_int_equal(ntohl(((struct sockaddr_in *)&out[i])->sin_addr.s_addr) &
					     0xff,
					 want[i]);
		assert_int_equal(out[i].ss_family, i % 2 == 0 && i < 4 ? AF_INET6 : AF_INET);
	}
	assert_int_equal(connect_interleave(head, out, lens, 2), 2);
	while (head != NULL) {
		struct evutil_addrinfo *next = head->ai_next;
		free(head);
		head = next;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_address_rcvbuf_before_handshake,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_name_rcvbuf_before_handshake, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_auto_leaves_defaults, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_unknown_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_freed_during_lookup, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_name_tries_next_address, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_connect_tunnel_all_addresses_fail, setup,
					    teardown),
	    cmocka_unit_test(test_connect_interleave_v6_first_alternating),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
