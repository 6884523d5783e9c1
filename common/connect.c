/*
 * Target connections for streams the peer opened: policy check, async DNS,
 * second policy check on the resolved address, relay connect, OPEN answer.
 * A target's state lives exactly as long as its relay (close hook).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <unistd.h>

#include "wanmux/connect.h"
#include "wanmux/dns.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"

struct target {
	struct relay *r;
	struct session_stream *st;
	struct evdns_getaddrinfo_request *req;
	struct connect_policy policy;
	char who[128];
	char name[FRAME_NAME_MAX + 1]; /* "" for address targets */
	char desc[NETADDR_STR_MAX + FRAME_NAME_MAX];
	size_t desc_len; /* of the target itself, before " (address)" */
	uint16_t port;
	/* Calls of dns_getaddrinfo under way, which may answer at once: a
	 * pool's next backend is looked up from inside the answer for the one
	 * before, so these nest. The outermost frees a target closed inside. */
	unsigned lookup_depth;
	bool closed_in_call;
	/* A pool's stream: backends come from the balancer, tried in turn. */
	bool balanced;
	struct connect_balancer bal;
	struct evdns_base *dns;
};

static void target_free(struct target *tg)
{
	if (tg->balanced && tg->bal.done != NULL)
		tg->bal.done(tg->bal.arg);
	free(tg);
}

const char *connect_target_name(const struct frame_addr *target, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	if (connect_target_sockaddr(target, &ss) > 0)
		return netaddr_format((struct sockaddr *)&ss, buf, len);
	snprintf(buf, len, "%s:%u", target->u.name, target->port);
	return buf;
}

socklen_t connect_target_sockaddr(const struct frame_addr *target, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (target->type == FRAME_ADDR_IPV4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(target->port);
		memcpy(&sin->sin_addr, target->u.ipv4, 4);
		return sizeof(*sin);
	}
	if (target->type == FRAME_ADDR_IPV6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(target->port);
		memcpy(&sin6->sin6_addr, target->u.ipv6, 16);
		return sizeof(*sin6);
	}
	return 0;
}

/* The relay is closing: cancel a DNS query still in flight, else free. */
static void target_on_relay_close(void *arg)
{
	struct target *tg = arg;
	tg->r = NULL;
	tg->st = NULL;
	if (tg->lookup_depth > 0) {
		tg->closed_in_call = true; /* start_lookup frees it when the call returns */
		return;
	}
	if (tg->req != NULL) {
		struct evdns_getaddrinfo_request *req = tg->req;
		tg->req = NULL;
		evdns_getaddrinfo_cancel(req); /* its callback frees tg */
		return;
	}
	target_free(tg);
}

static void fail(struct target *tg, uint32_t error, const char *why, bool by_policy)
{
	if (by_policy) {
		if (tg->policy.refusals != NULL)
			(*tg->policy.refusals)++;
		log_peer_warn("refused stream %u from %s to %s: %s", session_stream_id(tg->st),
			      tg->who, tg->desc, why);
	} else {
		log_peer_info("stream %u from %s: %s: %s", session_stream_id(tg->st), tg->who,
			      tg->desc, why);
	}
	struct session_stream *st = tg->st;
	struct relay *r = tg->r;
	relay_set_result(r, error);
	session_stream_open_result(st, error);
	relay_close(r, true); /* frees tg through the hook */
}

static void try_next(struct target *tg, uint32_t last_error);

static void on_connected(struct relay *r, uint32_t error, void *arg)
{
	struct target *tg = arg;
	if (error != 0 && tg->balanced) {
		log_peer_info("stream %u from %s: %s: %s; trying another backend",
			      session_stream_id(tg->st), tg->who, tg->desc,
			      frame_error_name(error));
		try_next(tg, error);
		return;
	}
	if (error != 0) {
		fail(tg, error, frame_error_name(error), false);
		return;
	}
	if (tg->balanced && tg->bal.connected != NULL)
		tg->bal.connected(tg->bal.arg);
	log_debug("stream %u from %s connected to %s", session_stream_id(tg->st), tg->who,
		  tg->desc);
	session_stream_open_result(tg->st, FRAME_ERR_NONE);
	relay_start(r);
}

static void start_connect(struct target *tg, const struct sockaddr *sa, socklen_t salen)
{
	char addr[NETADDR_STR_MAX];
	netaddr_format(sa, addr, sizeof(addr));
	relay_set_access_addr(tg->r, addr);
	if (tg->name[0] != '\0' || tg->balanced) {
		/* Keep the name and show where it led (this try's backend). */
		size_t n = tg->desc_len;
		snprintf(tg->desc + n, sizeof(tg->desc) - n, " (%s)", addr);
	}
	if (relay_connect(tg->r, sa, salen, on_connected, tg) == 0)
		return;
	int err = errno;
	/* Out of descriptors or buffers is this host's trouble, not the
	 * backend's: another backend would fare no better, and marking them
	 * down would take the pool from every client. */
	bool local = err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
	if (tg->balanced && !local) {
		try_next(tg, FRAME_ERR_CONNECT_FAILED);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "cannot start connecting: %s", strerror(err));
	if (tg->balanced)
		tg->desc[tg->desc_len] = '\0';
	fail(tg, FRAME_ERR_CONNECT_FAILED, why, false);
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct target *tg = arg;
	tg->req = NULL;
	if (tg->r == NULL) {
		/* The stream ended while the query ran. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		target_free(tg);
		return;
	}
	if (result != 0 || (tg->balanced && res == NULL)) {
		if (res != NULL)
			evutil_freeaddrinfo(res);
		if (tg->balanced) {
			log_peer_info("stream %u from %s: %s: %s; trying another backend",
				      session_stream_id(tg->st), tg->who, tg->desc,
				      evutil_gai_strerror(result));
			try_next(tg, FRAME_ERR_HOST_UNKNOWN);
		} else {
			fail(tg, FRAME_ERR_HOST_UNKNOWN, evutil_gai_strerror(result), false);
		}
		return;
	}
	if (tg->balanced) {
		/* The operator named the backend: its first address, no rule. */
		start_connect(tg, res->ai_addr, (socklen_t)res->ai_addrlen);
		evutil_freeaddrinfo(res);
		return;
	}
	for (struct evutil_addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		if (tg->policy.permits(tg->policy.arg, tg->name, ai->ai_addr, tg->port)) {
			start_connect(tg, ai->ai_addr, (socklen_t)ai->ai_addrlen);
			evutil_freeaddrinfo(res);
			return;
		}
	}
	evutil_freeaddrinfo(res);
	fail(tg, FRAME_ERR_NOT_ALLOWED, "no rule permits the addresses it resolves to", true);
}

/* Resolves host for tg; the answer goes to on_resolved. */
static void start_lookup(struct target *tg, struct evdns_base *dns, const char *host, uint16_t port)
{
	/* The callback may run before this returns (localhost, /etc/hosts, errors). */
	tg->lookup_depth++;
	struct evdns_getaddrinfo_request *req =
	    dns_getaddrinfo_tcp(dns, host, port, on_resolved, tg);
	tg->lookup_depth--;
	if (req != NULL && tg->r != NULL)
		tg->req = req; /* under way: a close cancels it */
	if (tg->lookup_depth > 0)
		return; /* inside an answer: the call that made it goes on with tg */
	if (tg->closed_in_call)
		target_free(tg);
}

/* The balancer's next backend for tg, or the refusal when none is left. */
static void try_next(struct target *tg, uint32_t last_error)
{
	struct netaddr_hostport hp;
	struct sockaddr_storage ss;
	socklen_t salen;
	if (!tg->bal.next(tg->bal.arg, last_error, &hp)) {
		tg->desc[tg->desc_len] = '\0';
		fail(tg, FRAME_ERR_CONNECT_FAILED,
		     last_error == 0 ? "no backend of the pool is up" : "no backend left to try",
		     false);
		return;
	}
	tg->port = hp.port;
	if (netaddr_literal(hp.host, hp.port, &ss, &salen)) {
		start_connect(tg, (struct sockaddr *)&ss, salen);
		return;
	}
	start_lookup(tg, tg->dns, hp.host, hp.port);
}

void connect_log_refused(struct session_stream *st, const struct connect_policy *policy,
			 const char *desc)
{
	struct access_record rec;
	char line[ACCESS_LINE_MAX];
	memset(&rec, 0, sizeof(rec));
	rec.frontend = session_stream_id(st) % 2 == 1 ? ACCESS_TUNNEL : ACCESS_REVERSE;
	rec.side = ACCESS_SIDE_TARGET;
	rec.result = ACCESS_REFUSED;
	snprintf(rec.client, sizeof(rec.client), "%s",
		 policy->client != NULL ? policy->client : "");
	snprintf(rec.src, sizeof(rec.src), "%s", policy->src != NULL ? policy->src : "");
	snprintf(rec.target, sizeof(rec.target), "%s", desc);
	access_format(&rec, 0, line, sizeof(line));
	log_info("%s", line);
}

int connect_stream(struct event_base *base, struct evdns_base *dns, struct session_stream *st,
		   const struct frame_addr *target, const struct connect_policy *policy)
{
	struct sockaddr_storage ss;
	socklen_t salen = connect_target_sockaddr(target, &ss);
	char desc[sizeof(((struct target *)0)->desc)];

	connect_target_name(target, desc, sizeof(desc));
	if (salen > 0 &&
	    !policy->permits(policy->arg, NULL, (struct sockaddr *)&ss, target->port)) {
		/* Refused before any connection attempt. */
		if (policy->refusals != NULL)
			(*policy->refusals)++;
		log_peer_warn("refused stream %u from %s to %s: no rule permits it",
			      session_stream_id(st), policy->who, desc);
		connect_log_refused(st, policy, desc);
		return FRAME_ERR_NOT_ALLOWED;
	}

	struct target *tg = calloc(1, sizeof(*tg));
	if (tg == NULL)
		return FRAME_ERR_INTERNAL;
	tg->st = st;
	tg->policy = *policy;
	snprintf(tg->who, sizeof(tg->who), "%s", policy->who);
	tg->policy.who = tg->who;
	tg->port = target->port;
	snprintf(tg->desc, sizeof(tg->desc), "%s", desc);
	tg->desc_len = strlen(tg->desc);
	tg->r = relay_new(base, -1, desc);
	if (tg->r == NULL) {
		free(tg);
		return FRAME_ERR_INTERNAL;
	}
	relay_set_close_hook(tg->r, target_on_relay_close, tg);
	/* Clients open odd stream ids; even ones are the server's reverse
	 * forwards, arriving at the client. */
	relay_set_access(tg->r, session_stream_id(st) % 2 == 1 ? ACCESS_TUNNEL : ACCESS_REVERSE,
			 ACCESS_SIDE_TARGET, policy->client, policy->src);
	relay_set_access_target(tg->r, desc);
	session_stream_attach(st, relay_source(tg->r), tg->r);
	relay_bind(tg->r, st);

	if (salen > 0) {
		start_connect(tg, (struct sockaddr *)&ss, salen);
		return 0;
	}
	snprintf(tg->name, sizeof(tg->name), "%s", target->u.name);
	start_lookup(tg, dns, tg->name, target->port);
	return 0;
}

int connect_stream_balanced(struct event_base *base, struct evdns_base *dns,
			    struct session_stream *st, const char *desc,
			    const struct connect_policy *policy, const struct connect_balancer *bal)
{
	struct target *tg = calloc(1, sizeof(*tg));
	if (tg == NULL) {
		bal->done(bal->arg);
		return FRAME_ERR_INTERNAL;
	}
	tg->st = st;
	tg->policy = *policy;
	snprintf(tg->who, sizeof(tg->who), "%s", policy->who);
	tg->policy.who = tg->who;
	snprintf(tg->desc, sizeof(tg->desc), "%s", desc);
	tg->desc_len = strlen(tg->desc);
	tg->balanced = true;
	tg->bal = *bal;
	tg->dns = dns;
	tg->r = relay_new(base, -1, desc);
	if (tg->r == NULL) {
		target_free(tg);
		return FRAME_ERR_INTERNAL;
	}
	relay_set_close_hook(tg->r, target_on_relay_close, tg);
	relay_set_connect_timeout(tg->r, bal->connect_timeout_ms);
	relay_set_access(tg->r, ACCESS_TUNNEL, ACCESS_SIDE_TARGET, policy->client, policy->src);
	relay_set_access_target(tg->r, desc);
	session_stream_attach(st, relay_source(tg->r), tg->r);
	relay_bind(tg->r, st);
	try_next(tg, 0);
	return 0;
}

/* A tunnel server's name being resolved for connect_tunnel. */
struct tunnel_lookup {
	struct bufferevent *bev; /* one reference held until the answer */
	struct evdns_base *dns;
	struct netaddr_tuning tuning; /* buffers only */
	char host[NETADDR_HOST_MAX];
	uint16_t port;
};

/* Gives bev a tuned socket of sa's family and connects it. 0 or -1 (errno). */
static int connect_tuned(struct bufferevent *bev, const struct sockaddr *sa, socklen_t len,
			 const struct netaddr_tuning *t)
{
	int fd = netaddr_socket(sa->sa_family, t);

	if (fd < 0)
		return -1;
	if (bufferevent_setfd(bev, fd) != 0) {
		close(fd);
		return -1;
	}
	/* From here bev owns fd (closed when it is freed). */
	return bufferevent_socket_connect(bev, sa, (int)len);
}

size_t connect_interleave(const struct evutil_addrinfo *list, struct sockaddr_storage *out,
			  socklen_t *lens, size_t max)
{
	const struct evutil_addrinfo *v6 = list, *v4 = list;
	size_t n = 0;
	bool six = true;

	/* RFC 8305 section 4: IPv6 first, then the families in turn, each in
	 * the resolver's order. */
	for (;;) {
		const struct evutil_addrinfo **cur = six ? &v6 : &v4;
		int family = six ? AF_INET6 : AF_INET;
		while (*cur != NULL && (*cur)->ai_family != family)
			*cur = (*cur)->ai_next;
		if (*cur == NULL) {
			if ((six ? v4 : v6) == NULL)
				break;
			six = !six;
			continue;
		}
		if (n == max)
			break;
		if ((size_t)(*cur)->ai_addrlen <= sizeof(out[n])) {
			memcpy(&out[n], (*cur)->ai_addr, (*cur)->ai_addrlen);
			lens[n++] = (socklen_t)(*cur)->ai_addrlen;
		}
		*cur = (*cur)->ai_next;
		six = !six;
	}
	return n;
}

/*
 * A name that resolved to several addresses, raced in the manner of RFC
 * 8305: one attempt at a time, the next CONNECT_STAGGER_MS after the last
 * (or at once when one fails), every attempt left running; the first to
 * connect becomes bev's socket and the others close. The timer also notices
 * a bev that was freed meanwhile (its callbacks cleared).
 */
struct tunnel_race {
	struct bufferevent *bev; /* one reference held until the race ends */
	struct netaddr_tuning tuning;
	struct sockaddr_storage addrs[CONNECT_ADDRS_MAX];
	socklen_t lens[CONNECT_ADDRS_MAX];
	size_t naddrs, next;
	struct race_attempt {
		struct tunnel_race *race;
		int fd;
		struct event *ev;
	} attempts[CONNECT_ADDRS_MAX];
	size_t inflight;
	struct event *timer;
	int last_errno;
};

static void race_free(struct tunnel_race *rc)
{
	for (size_t i = 0; i < rc->naddrs; i++) {
		struct race_attempt *a = &rc->attempts[i];
		if (a->ev != NULL)
			event_free(a->ev);
		if (a->fd >= 0)
			close(a->fd);
	}
	if (rc->timer != NULL)
		event_free(rc->timer);
	bufferevent_decref(rc->bev);
	free(rc);
}

static bool race_abandoned(struct tunnel_race *rc)
{
	bufferevent_event_cb eventcb = NULL;
	bufferevent_getcb(rc->bev, NULL, NULL, &eventcb, NULL);
	return eventcb == NULL;
}

static void race_attempt_done(struct race_attempt *a)
{
	event_free(a->ev);
	a->ev = NULL;
	close(a->fd);
	a->fd = -1;
	a->race->inflight--;
}

/* Every address failed: bev's event callback hears it with the last
 * attempt's errno, as from a single connect. Frees rc. */
static void race_fail(struct tunnel_race *rc)
{
	bufferevent_event_cb eventcb = NULL;
	void *cbarg = NULL;
	int err = rc->last_errno != 0 ? rc->last_errno : ECONNREFUSED;

	bufferevent_getcb(rc->bev, NULL, NULL, &eventcb, &cbarg);
	struct bufferevent *bev = rc->bev;
	bufferevent_incref(bev);
	race_free(rc);
	if (eventcb != NULL) {
		errno = err;
		EVUTIL_SET_SOCKET_ERROR(err);
		eventcb(bev, BEV_EVENT_ERROR, cbarg);
	}
	bufferevent_decref(bev);
}

/* a connected first: its socket becomes bev's, which reports CONNECTED
 * from its first write event. Frees rc. */
static void race_win(struct tunnel_race *rc, struct race_attempt *a)
{
	int fd = a->fd;
	bufferevent_event_cb eventcb = NULL;
	void *cbarg = NULL;

	event_free(a->ev);
	a->ev = NULL;
	a->fd = -1;
	struct bufferevent *bev = rc->bev;
	bufferevent_incref(bev);
	race_free(rc);
	bufferevent_getcb(bev, NULL, NULL, &eventcb, &cbarg);
	if (bufferevent_setfd(bev, fd) != 0) {
		close(fd);
		if (eventcb != NULL)
			eventcb(bev, BEV_EVENT_ERROR, cbarg);
	} else if (bufferevent_socket_connect(bev, NULL, 0) != 0 && eventcb != NULL) {
		eventcb(bev, BEV_EVENT_ERROR, cbarg);
	}
	bufferevent_decref(bev);
}

static void race_start_next(struct tunnel_race *rc);

static void on_race_writable(evutil_socket_t fd, short what, void *arg)
{
	struct race_attempt *a = arg;
	struct tunnel_race *rc = a->race;
	int err = 0;
	socklen_t len = sizeof(err);

	(void)what;
	if (race_abandoned(rc)) {
		race_free(rc);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err == 0) {
		race_win(rc, a);
		return;
	}
	char addr[NETADDR_STR_MAX];
	netaddr_format((struct sockaddr *)&rc->addrs[a - rc->attempts], addr, sizeof(addr));
	log_debug("tunnel connect to %s: %s; trying the next address", addr, strerror(err));
	rc->last_errno = err;
	race_attempt_done(a);
	race_start_next(rc);
}

/* Starts the next address (failures move on at once); with none left and
 * nothing running, the race is lost. */
static void race_start_next(struct tunnel_race *rc)
{
	while (rc->next < rc->naddrs) {
		size_t i = rc->next++;
		struct race_attempt *a = &rc->attempts[i];
		const struct sockaddr *sa = (const struct sockaddr *)&rc->addrs[i];
		a->race = rc;
		a->fd = netaddr_socket(sa->sa_family, &rc->tuning);
		if (a->fd < 0) {
			rc->last_errno = errno;
			continue;
		}
		if (connect(a->fd, sa, rc->lens[i]) != 0 && errno != EINPROGRESS) {
			rc->last_errno = errno;
			close(a->fd);
			a->fd = -1;
			continue;
		}
		a->ev =
		    event_new(bufferevent_get_base(rc->bev), a->fd, EV_WRITE, on_race_writable, a);
		if (a->ev == NULL) {
			rc->last_errno = ENOMEM;
			close(a->fd);
			a->fd = -1;
			continue;
		}
		event_add(a->ev, NULL);
		rc->inflight++;
		struct timeval stagger = {0, CONNECT_STAGGER_MS * 1000};
		event_add(rc->timer, &stagger);
		return;
	}
	if (rc->inflight == 0) {
		race_fail(rc);
		return;
	}
	/* Only to notice a bev given up while attempts still hang. */
	struct timeval poll = {0, CONNECT_STAGGER_MS * 1000};
	event_add(rc->timer, &poll);
}

static void on_race_timer(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel_race *rc = arg;

	(void)fd;
	(void)what;
	if (race_abandoned(rc)) {
		race_free(rc);
		return;
	}
	race_start_next(rc);
}

/* Connects bev to the addresses of res in RFC 8305 order. 0, or -1 with
 * errno when it cannot start (then nothing arrives at bev). */
static int race_start(struct bufferevent *bev, const struct evutil_addrinfo *res,
		      const struct netaddr_tuning *t)
{
	struct tunnel_race *rc = calloc(1, sizeof(*rc));

	if (rc == NULL)
		return -1;
	rc->naddrs = connect_interleave(res, rc->addrs, rc->lens, CONNECT_ADDRS_MAX);
	for (size_t i = 0; i < CONNECT_ADDRS_MAX; i++)
		rc->attempts[i].fd = -1;
	rc->tuning.sndbuf = t->sndbuf;
	rc->tuning.rcvbuf = t->rcvbuf;
	rc->bev = bev;
	rc->timer = evtimer_new(bufferevent_get_base(bev), on_race_timer, rc);
	if (rc->timer == NULL || rc->naddrs == 0) {
		int err = rc->naddrs == 0 ? EADDRNOTAVAIL : ENOMEM;
		if (rc->timer != NULL)
			event_free(rc->timer);
		free(rc);
		errno = err;
		return -1;
	}
	bufferevent_incref(bev);
	race_start_next(rc);
	return 0;
}

static void on_tunnel_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	struct tunnel_lookup *lk = arg;
	bufferevent_event_cb eventcb = NULL;
	void *cbarg = NULL;

	/* bufferevent_free clears the callbacks: no callback, nobody waits. */
	bufferevent_getcb(lk->bev, NULL, NULL, &eventcb, &cbarg);
	if (eventcb == NULL || result == EVUTIL_EAI_CANCEL) {
		/* Freed while we looked, or the loop is ending. */
	} else if (result != 0 || res == NULL) {
		/* libevent looks up once more and reports the failure the way
		 * the tunnel reads it (bufferevent_socket_get_dns_error). */
		if (bufferevent_socket_connect_hostname(lk->bev, lk->dns, AF_UNSPEC, lk->host,
							lk->port) != 0)
			eventcb(lk->bev, BEV_EVENT_ERROR, cbarg);
	} else if (res->ai_next == NULL) {
		if (connect_tuned(lk->bev, res->ai_addr, (socklen_t)res->ai_addrlen, &lk->tuning) !=
		    0)
			eventcb(lk->bev, BEV_EVENT_ERROR, cbarg); /* errno says why */
	} else if (race_start(lk->bev, res, &lk->tuning) != 0) {
		eventcb(lk->bev, BEV_EVENT_ERROR, cbarg);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
	bufferevent_decref(lk->bev);
	free(lk);
}

int connect_tunnel(struct bufferevent *bev, struct evdns_base *dns,
		   const struct netaddr_hostport *hp, const struct netaddr_tuning *t)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct evutil_addrinfo hints;
	struct tunnel_lookup *lk;
	char port[8];

	if (netaddr_literal(hp->host, hp->port, &ss, &len))
		return connect_tuned(bev, (struct sockaddr *)&ss, len, t);
	if (dns == NULL)
		return bufferevent_socket_connect_hostname(bev, NULL, AF_UNSPEC, hp->host,
							   hp->port);
	lk = calloc(1, sizeof(*lk));
	if (lk == NULL)
		return -1;
	lk->bev = bev;
	lk->dns = dns;
	if (t != NULL) {
		lk->tuning.sndbuf = t->sndbuf;
		lk->tuning.rcvbuf = t->rcvbuf;
	}
	snprintf(lk->host, sizeof(lk->host), "%s", hp->host);
	lk->port = hp->port;
	snprintf(port, sizeof(port), "%u", (unsigned)hp->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	/* The reference keeps bev's memory valid if the tunnel frees it
	 * before the answer; its callbacks are then gone (see above). */
	bufferevent_incref(bev);
	/* The answer may come before this returns (hosts file, cache). */
	evdns_getaddrinfo(dns, lk->host, port, &hints, on_tunnel_resolved, lk);
	return 0;
}
