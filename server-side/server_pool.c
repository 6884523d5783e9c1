/*
 * The server's target pools at work: streams to a pool's virtual target get
 * a backend (common/pool.c chooses) and another one when the connect fails
 * before the client saw anything; active TCP checks every --health-interval
 * move backends up and down. Parsing and choosing are common/pool.c's.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "server.h"
#include "wanmux/admin.h"
#include "wanmux/err.h"
#include "wanmux/connect.h"
#include "wanmux/dns.h"
#include "wanmux/log.h"
#include "wanmux/pool.h"

/* One stream to a pool: what it tried, and the backend it holds. */
struct pool_stream {
	struct server *srv;
	struct pool *pool;	      /* held */
	struct pool_backend *backend; /* held: this try's, NULL before the first */
	uint64_t tried;		      /* bit i: backend i */
	unsigned attempts;
	uint8_t key[KEYS_LEN];
};

/*
 * One health check in flight: the backend's name looked up as its streams'
 * are (dns_getaddrinfo: localhost names never reach DNS), then a TCP
 * connect to the first address, the one a stream would connect to.
 */
struct pool_check {
	LIST_ENTRY(pool_check) link;
	struct server *srv;
	struct pool_backend *b; /* held */
	struct bufferevent *bev;
	struct evdns_getaddrinfo_request *req; /* the lookup under way, or NULL */
	char pool[NETADDR_STR_MAX];
};

void server_pool_init(struct server *srv)
{
	LIST_INIT(&srv->pool_checks);
	srv->pool_health.interval_ms = POOL_INTERVAL_DEFAULT_MS;
	srv->pool_health.rise = POOL_RISE_DEFAULT;
	srv->pool_health.fall = POOL_FALL_DEFAULT;
	srv->pool_health.connect_timeout_ms = POOL_CONNECT_TIMEOUT_DEFAULT_MS;
}

struct pool *server_pool_find(const struct server *srv, const struct frame_addr *target)
{
	char host[NETADDR_STR_MAX];
	if (srv->npools == 0)
		return NULL;
	if (target->type == FRAME_ADDR_NAME) {
		snprintf(host, sizeof(host), "%s", target->u.name);
	} else {
		struct sockaddr_storage ss;
		char text[NETADDR_STR_MAX];
		if (connect_target_sockaddr(target, &ss) == 0)
			return NULL;
		netaddr_format((struct sockaddr *)&ss, text, sizeof(text));
		/* "1.2.3.4:80" / "[::1]:80": the host part only. */
		char *colon = strrchr(text, ':');
		if (colon != NULL)
			*colon = '\0';
		size_t n = strlen(text);
		if (text[0] == '[' && n >= 2) {
			text[n - 1] = '\0';
			memmove(text, text + 1, n - 1);
		}
		snprintf(host, sizeof(host), "%s", text);
	}
	for (size_t i = 0; i < srv->npools; i++)
		if (pool_matches(srv->pools[i], host, target->port))
			return srv->pools[i];
	return NULL;
}

static void log_health(const char *pool, const struct pool_backend *b, const char *why)
{
	if (b->health == POOL_UP)
		log_info("pool %s: backend %s is up: %s", pool, b->name, why);
	else
		log_warn("pool %s: backend %s is down: %s", pool, b->name, why);
}

static bool on_next(void *arg, uint32_t last_error, struct netaddr_hostport *hp)
{
	struct pool_stream *ps = arg;
	struct pool_counters *pc = pool_get_counters(ps->pool);
	struct pool_backend *failed = ps->backend;
	if (failed != NULL) {
		/* The try before failed: passive check, then another backend. */
		char why[96];
		assert(failed->active > 0);
		failed->active--;
		snprintf(why, sizeof(why), "a stream's connect failed (%s)",
			 frame_error_name(last_error));
		if (pool_backend_connect_failed(failed))
			log_health(pool_name(ps->pool), failed, why);
		ps->backend = NULL;
	}
	int i = -1;
	if (ps->attempts < POOL_ATTEMPTS_MAX)
		i = pool_pick(ps->pool, ps->key, sizeof(ps->key), ps->tried);
	if (failed != NULL && i >= 0) {
		failed->retries++;
		pc->retries++;
	}
	pool_backend_release(failed);
	if (i < 0) {
		pc->refused++;
		return false;
	}
	struct pool_backend *b = pool_backend_at(ps->pool, (size_t)i);
	pool_backend_hold(b);
	b->active++;
	b->total++;
	ps->backend = b;
	ps->tried |= UINT64_C(1) << i;
	ps->attempts++;
	*hp = b->addr;
	return true;
}

static void on_done(void *arg)
{
	struct pool_stream *ps = arg;
	if (ps->backend != NULL) {
		assert(ps->backend->active > 0);
		ps->backend->active--;
		pool_backend_release(ps->backend);
	}
	pool_free(ps->pool);
	free(ps);
}

int server_pool_open(struct server *srv, struct server_session *sess, struct session_stream *st,
		     struct pool *p, const struct connect_policy *policy)
{
	struct pool_stream *ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return FRAME_ERR_INTERNAL;
	ps->srv = srv;
	pool_hold(p);
	ps->pool = p;
	memcpy(ps->key, sess->client_pub, KEYS_LEN);
	pool_get_counters(p)->streams++;
	struct connect_balancer bal = {
	    .next = on_next,
	    .done = on_done,
	    .arg = ps,
	    .connect_timeout_ms = srv->pool_health.connect_timeout_ms,
	};
	return connect_stream_balanced(srv->base, srv->dns, st, pool_name(p), policy, &bal);
}

/* Ends c without a verdict. A lookup still under way is cancelled: its
 * callback then runs from the loop with EVUTIL_EAI_CANCEL and leaves c
 * alone. */
static void check_free(struct pool_check *c)
{
	LIST_REMOVE(c, link);
	c->b->checking = false;
	if (c->req != NULL)
		evdns_getaddrinfo_cancel(c->req);
	bufferevent_free(c->bev);
	pool_backend_release(c->b);
	free(c);
}

static void check_end(struct pool_check *c, bool ok, const char *why)
{
	struct server *srv = c->srv;
	if (pool_backend_check(c->b, ok, srv->pool_health.rise, srv->pool_health.fall)) {
		char text[160];
		if (ok)
			snprintf(text, sizeof(text), "%u checks in a row passed",
				 srv->pool_health.rise);
		else
			snprintf(text, sizeof(text), "%u checks in a row failed, the last: %s",
				 srv->pool_health.fall, why);
		log_health(c->pool, c->b, text);
	}
	check_free(c);
}

static void on_check_event(struct bufferevent *bev, short what, void *arg)
{
	struct pool_check *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		check_end(c, true, NULL);
		return;
	}
	const char *why = "connect failed";
	if (what & BEV_EVENT_TIMEOUT)
		why = "timeout";
	else if (EVUTIL_SOCKET_ERROR() != 0)
		why = evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR());
	check_end(c, false, why);
}

/* Connects c to sa; the verdict comes to on_check_event. The timeout runs
 * from here, as a stream's runs from its connect. */
static void check_connect(struct pool_check *c, const struct sockaddr *sa, socklen_t len)
{
	uint32_t ms = c->srv->pool_health.interval_ms;
	if (ms > POOL_CHECK_TIMEOUT_MAX_MS)
		ms = POOL_CHECK_TIMEOUT_MAX_MS;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	/* A -1 comes before any callback (libevent defers those). */
	if (bufferevent_socket_connect(c->bev, sa, (int)len) == 0)
		return;
	char why[96];
	snprintf(why, sizeof(why), "cannot start connecting: %s", strerror(errno));
	check_end(c, false, why);
}

static void on_check_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	if (result == EVUTIL_EAI_CANCEL)
		return; /* check_free cancelled it: arg is freed */
	struct pool_check *c = arg;
	c->req = NULL;
	if (result != 0 || res == NULL) {
		char why[96];
		snprintf(why, sizeof(why), "cannot resolve: %s", evutil_gai_strerror(result));
		check_end(c, false, why);
	} else {
		check_connect(c, res->ai_addr, (socklen_t)res->ai_addrlen);
	}
	if (res != NULL)
		evutil_freeaddrinfo(res);
}

static void check_start(struct server *srv, struct pool *p, struct pool_backend *b)
{
	struct pool_check *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->srv = srv;
	c->b = b;
	pool_backend_hold(b);
	snprintf(c->pool, sizeof(c->pool), "%s", pool_name(p));
	c->bev = bufferevent_socket_new(srv->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		pool_backend_release(b);
		free(c);
		return;
	}
	b->checking = true;
	LIST_INSERT_HEAD(&srv->pool_checks, c, link);
	bufferevent_setcb(c->bev, NULL, NULL, on_check_event, c);
	const struct netaddr_hostport *at = &b->addr;
	struct sockaddr_storage ss;
	socklen_t len;
	if (netaddr_literal(at->host, at->port, &ss, &len)) {
		check_connect(c, (struct sockaddr *)&ss, len);
		return;
	}
	struct evdns_getaddrinfo_request *req =
	    dns_getaddrinfo_tcp(srv->dns, at->host, at->port, on_check_resolved, c);
	/* NULL: answered already (a localhost name, /etc/hosts, an immediate
	 * failure), and the answer may have ended c. */
	if (req != NULL)
		c->req = req;
}

static void on_health_timer(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	for (size_t i = 0; i < srv->npools; i++) {
		struct pool *p = srv->pools[i];
		for (size_t j = 0; j < pool_backend_count(p); j++) {
			struct pool_backend *b = pool_backend_at(p, j);
			if (!b->checking)
				check_start(srv, p, b);
		}
	}
}

int server_pool_start(struct server *srv)
{
	srv->pool_timer = event_new(srv->base, -1, EV_PERSIST, on_health_timer, srv);
	if (srv->pool_timer == NULL)
		return WM_ERR_NOMEM;
	server_pool_reschedule(srv);
	return WM_OK;
}

/* Whether b is still a backend of one of srv's pools. */
static bool backend_in_use(const struct server *srv, const struct pool_backend *b)
{
	for (size_t i = 0; i < srv->npools; i++)
		for (size_t j = 0; j < pool_backend_count(srv->pools[i]); j++)
			if (pool_backend_at(srv->pools[i], j) == b)
				return true;
	return false;
}

void server_pool_reschedule(struct server *srv)
{
	/* Checks of backends a reload dropped end unheard, lookups cancelled. */
	struct pool_check *c = LIST_FIRST(&srv->pool_checks);
	while (c != NULL) {
		struct pool_check *next = LIST_NEXT(c, link);
		if (!backend_in_use(srv, c->b))
			check_free(c);
		c = next;
	}
	if (srv->pool_timer == NULL)
		return;
	event_del(srv->pool_timer);
	if (srv->npools == 0)
		return;
	uint32_t ms = srv->pool_health.interval_ms;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	event_add(srv->pool_timer, &tv);
}

void server_pool_stop(struct server *srv)
{
	if (srv->pool_timer != NULL)
		event_free(srv->pool_timer);
	srv->pool_timer = NULL;
	bool cancelled = false;
	while (!LIST_EMPTY(&srv->pool_checks)) {
		struct pool_check *c = LIST_FIRST(&srv->pool_checks);
		cancelled |= c->req != NULL;
		check_free(c);
	}
	/* evdns answers a cancel from the loop, and only then frees the
	 * request: one pass without waiting, or it leaks. */
	if (cancelled)
		event_base_loop(srv->base, EVLOOP_NONBLOCK);
}

void server_pool_free_all(struct pool **pools, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		pool_free(pools[i]);
	*n = 0;
}

static void json_num(struct evbuffer *out, const char *key, double v)
{
	char buf[64];
	evbuffer_add_printf(out, ",\"%s\":%s", key, admin_format_number(v, buf, sizeof(buf)));
}

static void report_backend(struct admin_report *rep, struct evbuffer *js, const struct pool *p,
			   const struct pool_backend *b, bool first)
{
	const char *pn = pool_name(p);
	admin_metric(rep, ADMIN_GAUGE, "pool_backend_up",
		     "1 when the pool backend passes its health checks (up), 0 when down.",
		     b->health == POOL_UP ? 1 : 0, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_GAUGE, "pool_backend_draining",
		     "1 when the pool backend is drained (no new streams).",
		     b->drain || b->admin_drain ? 1 : 0, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_GAUGE, "pool_backend_active_streams",
		     "Streams connecting or connected to the pool backend.", (double)b->active,
		     "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_streams_total",
		     "Streams sent to the pool backend.", (double)b->total, "pool", pn, "backend",
		     b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_connect_failures_total",
		     "Stream connects to the pool backend that failed (it is then down).",
		     (double)b->failed, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_retries_total",
		     "Streams whose connect to the pool backend failed and that were tried on "
		     "another backend.",
		     (double)b->retries, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_checks_passed_total",
		     "Health checks (TCP connects) of the pool backend that passed.",
		     (double)b->checks_ok, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_checks_failed_total",
		     "Health checks (TCP connects) of the pool backend that failed.",
		     (double)b->checks_failed, "pool", pn, "backend", b->name);
	admin_metric(rep, ADMIN_COUNTER, "pool_backend_transitions_total",
		     "Times the pool backend went up or down.", (double)b->changes, "pool", pn,
		     "backend", b->name);
	evbuffer_add_printf(js, "%s{\"name\":", first ? "" : ",");
	admin_json_string(js, b->name);
	evbuffer_add_printf(js, ",\"state\":");
	admin_json_string(js, pool_backend_state_name(b));
	evbuffer_add_printf(js, ",\"health\":");
	admin_json_string(js, pool_health_name(b->health));
	evbuffer_add_printf(js, ",\"drain\":%s,\"admin_drain\":%s,\"backup\":%s,\"last_check\":%s",
			    b->drain ? "true" : "false", b->admin_drain ? "true" : "false",
			    b->backup ? "true" : "false",
			    !b->checked	       ? "null"
			    : b->last_check_ok ? "\"ok\""
					       : "\"failed\"");
	json_num(js, "weight", b->weight);
	json_num(js, "active_streams", (double)b->active);
	json_num(js, "streams", (double)b->total);
	json_num(js, "connect_failures", (double)b->failed);
	json_num(js, "retries", (double)b->retries);
	json_num(js, "checks_passed", (double)b->checks_ok);
	json_num(js, "checks_failed", (double)b->checks_failed);
	json_num(js, "transitions", (double)b->changes);
	evbuffer_add(js, "}", 1);
}

void server_pool_report(struct admin_report *rep, struct server *srv)
{
	struct evbuffer *js = evbuffer_new();
	if (js == NULL)
		return;
	evbuffer_add(js, "[", 1);
	for (size_t i = 0; i < srv->npools; i++) {
		struct pool *p = srv->pools[i];
		const struct pool_counters *pc = pool_get_counters(p);
		const char *pn = pool_name(p);
		size_t up = 0;
		for (size_t j = 0; j < pool_backend_count(p); j++)
			up += pool_backend_usable(pool_backend_at(p, j));
		admin_metric(rep, ADMIN_GAUGE, "pool_backends_usable",
			     "Backends of the pool that are up and not drained.", (double)up,
			     "pool", pn, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "pool_streams_total",
			     "Streams that asked for the pool's virtual target.",
			     (double)pc->streams, "pool", pn, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "pool_refused_total",
			     "Streams of the pool refused: no backend up, or none left to try.",
			     (double)pc->refused, "pool", pn, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "pool_retries_total",
			     "Stream connects of the pool tried again on another backend.",
			     (double)pc->retries, "pool", pn, NULL, NULL);
		evbuffer_add_printf(js, "%s{\"name\":", i > 0 ? "," : "");
		admin_json_string(js, pn);
		evbuffer_add_printf(js, ",\"policy\":");
		admin_json_string(js, pool_policy_name(pool_get_policy(p)));
		json_num(js, "usable", (double)up);
		json_num(js, "streams", (double)pc->streams);
		json_num(js, "refused", (double)pc->refused);
		json_num(js, "retries", (double)pc->retries);
		evbuffer_add_printf(js, ",\"backends\":[");
		for (size_t j = 0; j < pool_backend_count(p); j++)
			report_backend(rep, js, p, pool_backend_at(p, j), j == 0);
		evbuffer_add(js, "]}", 2);
	}
	evbuffer_add(js, "]", 1);
	admin_status_section(rep, "pools", js);
	evbuffer_free(js);
}

int server_pool_action(const char *path, const char *query, struct evbuffer *reply, void *arg)
{
	struct server *srv = arg;
	bool drain = strcmp(path, "/pool/drain") == 0;
	if (!drain && strcmp(path, "/pool/undrain") != 0) {
		evbuffer_add_printf(reply, "unknown action: try POST /pool/drain or /pool/undrain "
					   "?pool=VHOST:PORT&backend=HOST:PORT\n");
		return 404;
	}
	struct evkeyvalq q;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) != 0) {
		evbuffer_add_printf(reply, "bad query\n");
		return 400;
	}
	const char *pn = evhttp_find_header(&q, "pool");
	const char *bn = evhttp_find_header(&q, "backend");
	int code = 404;
	if (pn == NULL || bn == NULL) {
		evbuffer_add_printf(reply, "expected ?pool=VHOST:PORT&backend=HOST:PORT\n");
		code = 400;
		goto out;
	}
	for (size_t i = 0; i < srv->npools; i++) {
		struct pool *p = srv->pools[i];
		if (strcmp(pool_name(p), pn) != 0)
			continue;
		for (size_t j = 0; j < pool_backend_count(p); j++) {
			struct pool_backend *b = pool_backend_at(p, j);
			if (strcmp(b->name, bn) != 0)
				continue;
			b->admin_drain = drain;
			/* Logged with the pool's own names, never the query's. */
			log_info("admin: pool %s: backend %s %s (%llu streams open)", pool_name(p),
				 b->name, drain ? "drained: no new streams" : "takes streams again",
				 (unsigned long long)b->active);
			evbuffer_add_printf(reply, "%s %s%s\n", b->name,
					    drain ? "drained" : "undrained",
					    !drain && b->drain ? ", but still drained by the "
								 "configuration (/drain)"
							       : "");
			code = 200;
			goto out;
		}
	}
	evbuffer_add_printf(reply, "no such pool backend\n");
out:
	evhttp_clear_headers(&q);
	return code;
}
