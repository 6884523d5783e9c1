/*
 * Tests for dns: which names count as localhost, and what reaches the wire,
 * seen by a fake nameserver on 127.0.0.1 (an ephemeral UDP port in the same
 * event loop) that records every query name and answers NXDOMAIN. evdns
 * randomises the case of query names (0x20), so names compare without case.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "wanmux/dns.h"

#define MAX_QUERIES 16

struct fake_ns {
	int fd;
	struct event *ev;
	char names[MAX_QUERIES][256];
	size_t count;
};

/* The query name of a DNS message as dotted text; false when malformed. */
static bool query_name(const uint8_t *p, size_t n, char *out, size_t cap)
{
	size_t pos = 12, len = 0;

	while (pos < n && p[pos] != 0) {
		size_t label = p[pos++];

		if (label > 63 || pos + label > n || len + label + 2 > cap)
			return false;
		if (len > 0)
			out[len++] = '.';
		memcpy(out + len, p + pos, label);
		len += label;
		pos += label;
	}
	out[len] = '\0';
	return pos < n;
}

static void on_query(evutil_socket_t fd, short what, void *arg)
{
	struct fake_ns *ns = arg;
	uint8_t buf[512];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);

	if (n < 12)
		return;
	if (ns->count < MAX_QUERIES &&
	    query_name(buf, (size_t)n, ns->names[ns->count], sizeof(ns->names[0])))
		ns->count++;
	/* Same id and question; QR, RD, RA set; RCODE 3 (NXDOMAIN); no answers. */
	buf[2] = 0x81;
	buf[3] = 0x83;
	memset(buf + 6, 0, 6);
	sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
}

struct lookup {
	bool done;
	int result;
	int families[4];
	size_t count;
	struct event_base *base;
};

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lookup *lk = arg;

	lk->done = true;
	lk->result = result;
	for (struct evutil_addrinfo *ai = res; ai != NULL && lk->count < 4; ai = ai->ai_next)
		lk->families[lk->count++] = ai->ai_family;
	if (res != NULL)
		evutil_freeaddrinfo(res);
	event_base_loopbreak(lk->base);
}

struct fixture {
	struct event_base *base;
	struct evdns_base *dns;
	struct fake_ns ns;
	char resolv[64];
	char hosts[64];
};

/* resolv.conf with a search domain and ndots:5, so that any search would
 * show in the first query; an empty hosts file. */
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
	f->ns.fd = socket(AF_INET, SOCK_DGRAM, 0);
	assert_true(f->ns.fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->ns.fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(f->ns.fd, (struct sockaddr *)&sin, &len), 0);
	f->ns.ev = event_new(f->base, f->ns.fd, EV_READ | EV_PERSIST, on_query, &f->ns);
	event_add(f->ns.ev, NULL);

	snprintf(f->resolv, sizeof(f->resolv), "/tmp/test_dns_resolv.XXXXXX");
	fd = mkstemp(f->resolv);
	assert_true(fd >= 0);
	out = fdopen(fd, "w");
	fprintf(out, "nameserver 127.0.0.1:%u\nsearch corp.example\noptions ndots:5 attempts:1\n",
		(unsigned)ntohs(sin.sin_port));
	fclose(out);
	snprintf(f->hosts, sizeof(f->hosts), "/tmp/test_dns_hosts.XXXXXX");
	fd = mkstemp(f->hosts);
	assert_true(fd >= 0);
	close(fd);
	f->dns = dns_new_from(f->base, f->resolv, f->hosts);
	assert_non_null(f->dns);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dns_free(f->dns);
	event_free(f->ns.ev);
	close(f->ns.fd);
	event_base_free(f->base);
	unlink(f->resolv);
	unlink(f->hosts);
	free(f);
	return 0;
}

static void resolve(struct fixture *f, const char *name, struct lookup *lk)
{
	struct evutil_addrinfo hints;
	struct timeval limit = {10, 0};

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	memset(lk, 0, sizeof(*lk));
	lk->base = f->base;
	dns_getaddrinfo(f->dns, name, "80", &hints, on_resolved, lk);
	if (!lk->done) {
		event_base_loopexit(f->base, &limit); /* a bound, should the answer never come */
		event_base_dispatch(f->base);
	}
	assert_true(lk->done);
}

/* A name with fewer dots than ndots goes out as it is, never with the search
 * domain appended, and only once the nameserver said NXDOMAIN: no retry. */
static void test_dns_queries_are_absolute(void **state)
{
	struct fixture *f = *state;
	struct lookup lk;

	resolve(f, "db.internal", &lk);
	assert_int_not_equal(lk.result, 0);
	assert_true(f->ns.count > 0);
	for (size_t i = 0; i < f->ns.count; i++) {
		if (strcasecmp(f->ns.names[i], "db.internal") != 0)
			fail_msg("query %zu asked for '%s', not 'db.internal'", i, f->ns.names[i]);
	}
	f->ns.count = 0;
	resolve(f, "db", &lk);
	for (size_t i = 0; i < f->ns.count; i++) {
		if (strcasecmp(f->ns.names[i], "db") != 0)
			fail_msg("query %zu asked for '%s', not 'db'", i, f->ns.names[i]);
	}
}

/* Localhost names are loopback, answered here: not one query is sent. */
static void test_dns_localhost_never_queried(void **state)
{
	static const char *const names[] = {"localhost", "app.localhost", "A.B.LOCALHOST.",
					    "localhost."};
	struct fixture *f = *state;
	struct lookup lk;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		resolve(f, names[i], &lk);
		assert_int_equal(lk.result, 0);
		assert_true(lk.count >= 1);
		assert_int_equal(lk.families[0], AF_INET); /* 127.0.0.1 first */
	}
	assert_int_equal(f->ns.count, 0);
}

static void test_dns_is_localhost_table(void **state)
{
	static const struct {
		const char *name;
		bool want;
	} v[] = {
	    {"localhost", true},	  {"LocalHost", true},
	    {"localhost.", true},	  {"a.localhost", true},
	    {"a.b.localhost.", true},	  {"x.LOCALHOST", true},
	    {"localhost.example", false}, {"notlocalhost", false},
	    {".localhost", false},	  {"a..localhost", false},
	    {"localhost..", false},	  {"", false},
	    {"localhos", false},	  {NULL, false},
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (dns_is_localhost(v[i].name) != v[i].want)
			fail_msg("'%s': expected %d", v[i].name != NULL ? v[i].name : "NULL",
				 v[i].want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_dns_is_localhost_table),
	    cmocka_unit_test_setup_teardown(test_dns_queries_are_absolute, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dns_localhost_never_queried, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
