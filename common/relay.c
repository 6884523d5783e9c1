/*
 * Local socket <-> session stream. The relay never frees itself inside a
 * bufferevent callback: relay_close marks it and the free runs from the loop.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "wanmux/access.h"
#include "wanmux/budget.h"
#include "wanmux/frame.h"
#include "wanmux/limit.h"
#include "wanmux/log.h"
#include "wanmux/relay.h"
#include "wanmux/sockread.h"

struct relay {
	struct event_base *base;
	struct bufferevent *bev;
	struct evbuffer_cb_entry *drain_cb;
	struct evbuffer_cb_entry *source_cb;
	struct session_stream *st;
	char name[96];
	enum relay_state state; /* changed only by set_state(), along the table */
	/* Flags that are not the relay's life but facts beside it: */
	bool write_shut;  /* shutdown(SHUT_WR) done: the peer's FIN reached the socket */
	bool read_paused; /* source buffer full: waiting for the stream to drain it */
	void (*connect_done)(struct relay *r, uint32_t error, void *arg);
	void *connect_arg;
	uint32_t connect_timeout_ms; /* 0: RELAY_CONNECT_TIMEOUT_MS */
	void (*close_hook)(void *arg);
	void *close_hook_arg;
	struct relay_frontend fe; /* proxy protocol on the local side, if any */
	bool has_fe;
	bool opened;	  /* the peer answered our OPEN */
	size_t uncounted; /* bytes in the output that are not stream data */
	struct event *deadline;
	struct budget_account account; /* input + output bytes, in the tunnel's pool once bound */
	size_t *counter;	       /* owner's count of open relays, or NULL */
	struct access_record acc;      /* valid when tracked */
	bool tracked;		       /* has an access record: logged when it closes */
	bool result_set;	       /* acc.result says why it ends */
	TAILQ_ENTRY(relay) access_link;
	LIST_HEAD(, relay_watch) watches;
};

/*
 * The relay's life. A relay starts NEW (a local socket, no stream running)
 * or CONNECTING (no socket yet: the server resolves and connects to the
 * target). Half-close runs OpenSSH style, one direction at a time: local EOF
 * is passed on as FIN (LOCAL_CLOSED), the peer's FIN becomes shutdown(SHUT_WR)
 * once what came before it is written (REMOTE_CLOSED); with both the relay
 * waits for the stream to close. FLUSHING writes out what is queued (a front
 * end's reply) and then closes. CLOSED is final: the free follows from the
 * loop. A peer FIN can arrive while the target is still being connected;
 * CONNECTING_REMOTE_CLOSED keeps it for when the socket is there.
 */
static const char *const state_names[RELAY_STATE_COUNT] = {
    [RELAY_NEW] = "new",
    [RELAY_REQUEST] = "request",
    [RELAY_CONNECTING] = "connecting",
    [RELAY_CONNECTING_REMOTE_CLOSED] = "connecting, peer done",
    [RELAY_OPEN] = "open",
    [RELAY_LOCAL_CLOSED] = "local half-closed",
    [RELAY_REMOTE_CLOSED] = "remote half-closed",
    [RELAY_BOTH_CLOSED] = "both half-closed",
    [RELAY_FLUSHING] = "flushing before close",
    [RELAY_CLOSED] = "closed",
};

#define TO(s) (1u << (s))

/* Bytes one read callback may read past libevent's own 4 KiB (sockread.h):
 * with them a read is no larger than what the resend store leaves in the
 * source before it copies (STORE_IN_SRC_MAX in session.c). */
#define RELAY_READ_MORE (60u << 10)

/* Every state may close; the rest is listed per state. */
static const unsigned transitions[RELAY_STATE_COUNT] = {
    [RELAY_NEW] = TO(RELAY_REQUEST) | TO(RELAY_OPEN) | TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_REQUEST] = TO(RELAY_NEW) | TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_CONNECTING] = TO(RELAY_CONNECTING_REMOTE_CLOSED) | TO(RELAY_OPEN) | TO(RELAY_CLOSED),
    [RELAY_CONNECTING_REMOTE_CLOSED] = TO(RELAY_REMOTE_CLOSED) | TO(RELAY_CLOSED),
    [RELAY_OPEN] =
	TO(RELAY_LOCAL_CLOSED) | TO(RELAY_REMOTE_CLOSED) | TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_LOCAL_CLOSED] = TO(RELAY_BOTH_CLOSED) | TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_REMOTE_CLOSED] = TO(RELAY_BOTH_CLOSED) | TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_BOTH_CLOSED] = TO(RELAY_FLUSHING) | TO(RELAY_CLOSED),
    [RELAY_FLUSHING] = TO(RELAY_CLOSED),
    [RELAY_CLOSED] = 0,
};
#undef TO

const char *relay_state_name(enum relay_state s)
{
	return (unsigned)s < RELAY_STATE_COUNT ? state_names[s] : "?";
}

bool relay_state_allowed(enum relay_state from, enum relay_state to)
{
	return (unsigned)from < RELAY_STATE_COUNT && (unsigned)to < RELAY_STATE_COUNT &&
	       (transitions[from] & (1u << to)) != 0;
}

enum relay_state relay_get_state(const struct relay *r)
{
	return r->state;
}

/* The one place a relay changes state. An impossible transition is a bug
 * in this file: assert; without assertions it is logged and not taken. */
static void set_state(struct relay *r, enum relay_state to)
{
	bool ok = relay_state_allowed(r->state, to);
	assert(ok);
	if (!ok) {
		log_error("%s: impossible relay transition %s -> %s (ignored)", r->name,
			  relay_state_name(r->state), relay_state_name(to));
		return;
	}
	log_debug("%s: %s -> %s", r->name, relay_state_name(r->state), relay_state_name(to));
	r->state = to;
}

/* Whether the local socket may be read: not after its EOF, not once the
 * relay only writes out its last bytes. */
static bool may_read(const struct relay *r)
{
	switch (r->state) {
	case RELAY_LOCAL_CLOSED:
	case RELAY_BOTH_CLOSED:
	case RELAY_FLUSHING:
	case RELAY_CLOSED:
		return false;
	default:
		return true;
	}
}

static bool is_connecting(const struct relay *r)
{
	return r->state == RELAY_CONNECTING || r->state == RELAY_CONNECTING_REMOTE_CLOSED;
}

/*
 * Bytes held in relay buffers (budget.h): each tunnel has a pool (its
 * streams' relays, --max-session-buffer) and the process a total
 * (--max-buffer). A relay over either stops reading its local socket (the
 * peers' windows already bound what arrives from tunnels); nothing is
 * dropped. The sessions are told the total after every change, so that they
 * shrink the credit they grant when buffers fill.
 */
static struct budget process_budget = BUDGET_INITIALIZER(process_budget, BUDGET_DEFAULT_LIMIT);

/* A paused relay may read again, unless it waits for its stream or is done. */
static void on_budget_wake(struct budget_account *a, void *arg)
{
	struct relay *r = arg;
	if (!r->read_paused && may_read(r))
		bufferevent_enable(r->bev, EV_READ);
}

static void account_bytes(struct relay *r, size_t added, size_t deleted)
{
	budget_charge(&process_budget, &r->account, added);
	budget_release(&process_budget, &r->account, deleted);
	session_set_memory(process_budget.used, process_budget.limit);
}

/*
 * r no longer serves a stream: it leaves its tunnel's pool too, since the
 * tunnel may be freed while r still writes out a front end's reply (what r
 * holds stays in the process total until r closes).
 */
static void unbind(struct relay *r)
{
	r->st = NULL;
	budget_detach(&process_budget, &r->account);
}

/* Stops reading r if it or its tunnel holds too much. */
static void pause_if_over_budget(struct relay *r)
{
	if (r->account.paused || budget_check(&process_budget, &r->account) == BUDGET_UNDER)
		return;
	bufferevent_disable(r->bev, EV_READ);
}

/*
 * Access records: every relay with one is listed (for /status), counted by
 * front end, and logged once when it closes. Wire bytes per stream are an
 * estimate: each chunk of application bytes is weighted by its tunnel's
 * DATA payload/raw ratio at that moment (compression so far), so they sum
 * to about the tunnel's compressed payload; record headers and tags are
 * not included.
 */
static TAILQ_HEAD(, relay) access_list = TAILQ_HEAD_INITIALIZER(access_list);
static struct relay_access_counts access_counts;

static double ratio_of(const struct relay *r, bool sent)
{
	if (r->st == NULL)
		return 1.0;
	const struct session_stats *ss = session_get_stats(session_stream_session(r->st));
	uint64_t raw = sent ? ss->raw_bytes_sent : ss->raw_bytes_received;
	uint64_t payload = sent ? ss->payload_bytes_sent : ss->payload_bytes_received;
	return raw > 0 ? (double)payload / (double)raw : 1.0;
}

/* n bytes left the local socket's input for the stream (from_local) or were
 * written to the local socket from the stream. */
static void access_count(struct relay *r, size_t n, bool from_local)
{
	if (!r->tracked || n == 0)
		return;
	double wire = (double)n * ratio_of(r, from_local);
	bool up = from_local == (r->acc.side == ACCESS_SIDE_USER);
	if (up) {
		r->acc.up += n;
		r->acc.wire_up += wire;
	} else {
		r->acc.down += n;
		r->acc.wire_down += wire;
	}
}

static void access_set_result(struct relay *r, enum access_result res)
{
	if (r->result_set)
		return;
	r->result_set = true;
	r->acc.result = res;
}

static void access_finish(struct relay *r, bool abort)
{
	if (!r->tracked)
		return;
	access_set_result(r, abort ? ACCESS_RESET : ACCESS_OK);
	char line[ACCESS_LINE_MAX];
	access_format(&r->acc, limit_now_ms() - r->acc.started_ms, line, sizeof(line));
	/* A finished-stream event: bounded by the stream rate, so not throttled. */
	log_info("%s", line);
	TAILQ_REMOVE(&access_list, r, access_link);
	access_counts.open[r->acc.frontend]--;
	access_counts.closed[r->acc.result]++;
	r->tracked = false;
}

void relay_set_access(struct relay *r, enum access_frontend frontend, enum access_side side,
		      const char *client, const char *src)
{
	if (r->tracked || (unsigned)frontend >= ACCESS_FRONTEND_COUNT)
		return;
	memset(&r->acc, 0, sizeof(r->acc));
	r->acc.frontend = frontend;
	r->acc.side = side;
	snprintf(r->acc.client, sizeof(r->acc.client), "%s", client != NULL ? client : "");
	snprintf(r->acc.src, sizeof(r->acc.src), "%s", src != NULL ? src : "");
	r->acc.started_ms = limit_now_ms();
	r->tracked = true;
	TAILQ_INSERT_TAIL(&access_list, r, access_link);
	access_counts.open[frontend]++;
	access_counts.opened[frontend]++;
}

void relay_set_access_target(struct relay *r, const char *target)
{
	snprintf(r->acc.target, sizeof(r->acc.target), "%s", target);
}

void relay_set_access_addr(struct relay *r, const char *addr)
{
	snprintf(r->acc.addr, sizeof(r->acc.addr), "%s", addr);
}

uint64_t relay_app_bytes(const struct relay *r)
{
	return r->acc.up + r->acc.down;
}

void relay_set_result(struct relay *r, uint32_t frame_error)
{
	access_set_result(r, access_result_for_error(frame_error));
}

const struct relay_access_counts *relay_get_access_counts(void)
{
	return &access_counts;
}

/* The coarse label /status shows (the admin page styles these). */
static const char *status_label(const struct relay *r)
{
	switch (r->state) {
	case RELAY_CONNECTING:
	case RELAY_CONNECTING_REMOTE_CLOSED:
		return "connecting";
	case RELAY_REQUEST:
		return "request";
	case RELAY_FLUSHING:
	case RELAY_CLOSED:
		return "closing";
	default:
		break;
	}
	if (r->st == NULL)
		return "waiting";
	switch (r->state) {
	case RELAY_BOTH_CLOSED:
		return "closing";
	case RELAY_LOCAL_CLOSED:
	case RELAY_REMOTE_CLOSED:
		return "half-closed";
	default:
		return "open";
	}
}

void relay_foreach_access(void (*fn)(const struct access_record *rec, const char *state,
				     uint64_t age_ms, void *arg),
			  void *arg)
{
	uint64_t now = limit_now_ms();
	struct relay *r;
	TAILQ_FOREACH(r, &access_list, access_link)
	fn(&r->acc, status_label(r), now - r->acc.started_ms, arg);
}

static void relay_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	if (r->deadline != NULL)
		event_free(r->deadline);
	bufferevent_free(r->bev);
	free(r);
}

void relay_close(struct relay *r, bool abort)
{
	if (r->state == RELAY_CLOSED)
		return;
	set_state(r, RELAY_CLOSED);
	unbind(r);
	access_finish(r, abort);
	if (r->deadline != NULL)
		event_del(r->deadline);
	budget_close(&process_budget, &r->account);
	session_set_memory(process_budget.used, process_budget.limit);
	if (r->counter != NULL) {
		(*r->counter)--;
		r->counter = NULL;
	}
	if (r->close_hook != NULL)
		r->close_hook(r->close_hook_arg);
	while (!LIST_EMPTY(&r->watches)) {
		struct relay_watch *w = LIST_FIRST(&r->watches);
		relay_unwatch(w);
		w->on_close(w->arg);
	}
	bufferevent_setcb(r->bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(r->bev, EV_READ | EV_WRITE);
	if (r->drain_cb != NULL) {
		evbuffer_remove_cb_entry(bufferevent_get_output(r->bev), r->drain_cb);
		r->drain_cb = NULL;
	}
	if (r->source_cb != NULL) {
		evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->source_cb);
		r->source_cb = NULL;
	}
	int fd = bufferevent_getfd(r->bev);
	if (abort && fd >= 0) {
		/* Tell the local application the stream failed: RST, not FIN. */
		struct linger lg = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	struct timeval now = {0, 0};
	if (event_base_once(r->base, -1, EV_TIMEOUT, relay_free_cb, r, &now) != 0) {
		/* Cannot defer: nothing else references r after setcb(NULL). */
		relay_free_cb(-1, 0, r);
	}
}

static void maybe_close_flushed(struct relay *r)
{
	if (r->state == RELAY_FLUSHING && evbuffer_get_length(bufferevent_get_output(r->bev)) == 0)
		relay_close(r, false);
}

static void maybe_shut_write(struct relay *r)
{
	if ((r->state != RELAY_REMOTE_CLOSED && r->state != RELAY_BOTH_CLOSED) || r->write_shut)
		return;
	if (evbuffer_get_length(bufferevent_get_output(r->bev)) > 0)
		return;
	r->write_shut = true;
	int fd = bufferevent_getfd(r->bev);
	if (fd >= 0 && shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN)
		log_debug("%s: shutdown: %s", r->name, strerror(errno));
}

static void on_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct relay *r = arg;
	size_t n = info->n_deleted;
	if (r->state == RELAY_CLOSED)
		return;
	account_bytes(r, info->n_added, info->n_deleted);
	/* Replies the front end wrote went out first; they earn no credit. */
	size_t local = n < r->uncounted ? n : r->uncounted;
	r->uncounted -= local;
	n -= local;
	access_count(r, n, false);
	if (n > 0 && r->st != NULL)
		session_stream_consumed(r->st, n);
}

/*
 * Backpressure by hand rather than with bufferevent read watermarks: with
 * libevent 2.1.12 a bufferevent held at its high watermark keeps invoking the
 * read callback, spinning the CPU while a stream waits for credit.
 */
static void on_read(struct bufferevent *bev, void *arg)
{
	struct relay *r = arg;
	pause_if_over_budget(r);
	if (r->state == RELAY_REQUEST) {
		r->fe.on_read(r, bufferevent_get_input(bev), r->fe.arg);
		return;
	}
	size_t held = evbuffer_get_length(bufferevent_get_input(bev));
	/* One wake-up carries up to RELAY_READ_MORE more than libevent's 4 KiB,
	 * unless reading is paused or the source is already full. */
	if (!r->read_paused && !r->account.paused && may_read(r) && held < RELAY_READ_HIGH &&
	    (bufferevent_get_enabled(bev) & EV_READ)) {
		size_t room = RELAY_READ_HIGH - held;
		held += sockread_more(bev, room < RELAY_READ_MORE ? room : RELAY_READ_MORE);
		/* The budget sees these bytes before anything else is read. */
		pause_if_over_budget(r);
	}
	if (!r->read_paused && held >= RELAY_READ_HIGH) {
		r->read_paused = true;
		bufferevent_disable(bev, EV_READ);
	}
	if (r->st != NULL)
		session_stream_kick(r->st);
}

/* The stream took bytes from the source: resume reading below half full. */
static void on_source_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct relay *r = arg;
	if (r->state == RELAY_CLOSED)
		return;
	account_bytes(r, info->n_added, info->n_deleted);
	/* Only the stream drains the source outside a front end's request. */
	if (r->st != NULL && r->state != RELAY_REQUEST)
		access_count(r, info->n_deleted, true);
	if (info->n_deleted == 0 || !r->read_paused || !may_read(r) || r->account.paused)
		return;
	if (evbuffer_get_length(buf) < RELAY_READ_HIGH / 2) {
		r->read_paused = false;
		bufferevent_enable(r->bev, EV_READ);
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	maybe_shut_write(arg);
	maybe_close_flushed(arg);
}

static uint32_t connect_error(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return FRAME_ERR_REFUSED;
	case ETIMEDOUT:
		return FRAME_ERR_TIMEOUT;
	default:
		return FRAME_ERR_CONNECT_FAILED;
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay *r = arg;
	if (is_connecting(r)) {
		bufferevent_set_timeouts(bev, NULL, NULL);
		uint32_t err = 0;
		if (what & BEV_EVENT_TIMEOUT)
			err = FRAME_ERR_TIMEOUT;
		else if (!(what & BEV_EVENT_CONNECTED))
			err = connect_error(EVUTIL_SOCKET_ERROR());
		/* A failed relay stays CONNECTING: connect_done closes it. */
		if (err == 0)
			set_state(r,
				  r->state == RELAY_CONNECTING ? RELAY_OPEN : RELAY_REMOTE_CLOSED);
		r->connect_done(r, err, r->connect_arg);
		if (err == 0 && r->state != RELAY_CLOSED)
			maybe_shut_write(r);
		return;
	}
	if ((what & BEV_EVENT_EOF) && r->state == RELAY_REQUEST) {
		/* The client left before finishing its request. */
		relay_close(r, false);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		set_state(r,
			  r->state == RELAY_REMOTE_CLOSED ? RELAY_BOTH_CLOSED : RELAY_LOCAL_CLOSED);
		/* Local EOF: the peer gets FIN after what is still buffered. */
		if (r->st != NULL) {
			session_stream_kick(r->st);
			session_stream_shutdown(r->st);
		}
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();
		access_set_result(r, ACCESS_RESET);
		log_debug("%s: local socket error (%s): %s", r->name, relay_state_name(r->state),
			  strerror(err));
		if (r->st != NULL)
			session_stream_reset(r->st, FRAME_ERR_CANCEL);
		relay_close(r, true);
	}
}

struct relay *relay_new(struct event_base *base, int fd, const char *name)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	r->base = base;
	r->state = fd >= 0 ? RELAY_NEW : RELAY_CONNECTING;
	LIST_INIT(&r->watches);
	budget_account_init(&r->account, on_budget_wake, r);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (r->bev == NULL) {
		if (fd >= 0)
			close(fd);
		free(r);
		return NULL;
	}
	r->drain_cb = evbuffer_add_cb(bufferevent_get_output(r->bev), on_drained, r);
	r->source_cb = evbuffer_add_cb(bufferevent_get_input(r->bev), on_source_drained, r);
	bufferevent_setcb(r->bev, on_read, on_write, on_event, r);
	bufferevent_set_max_single_read(r->bev, RELAY_READ_HIGH);
	bufferevent_set_max_single_write(r->bev, RELAY_READ_HIGH);
	return r;
}

struct evbuffer *relay_source(struct relay *r)
{
	return bufferevent_get_input(r->bev);
}

void relay_bind(struct relay *r, struct session_stream *st)
{
	r->st = st;
	/* Bound during a request or while connecting, it opens when that ends. */
	if (r->state == RELAY_NEW)
		set_state(r, RELAY_OPEN);
	/* From now on the tunnel's pool carries what r holds. */
	struct budget_pool *pool = session_pool(session_stream_session(st));
	if (pool != NULL && r->account.pool == NULL)
		budget_attach(&process_budget, &r->account, pool);
}

void relay_budget_charge(struct budget_account *a, size_t added, size_t deleted)
{
	/* The session counts it in its own copy (session_set_memory) itself. */
	budget_charge(&process_budget, a, added);
	budget_release(&process_budget, a, deleted);
}

void relay_budget_attach(struct budget_account *a, struct budget_pool *p)
{
	budget_detach(&process_budget, a);
	if (p != NULL)
		budget_attach(&process_budget, a, p);
}

void relay_budget_close(struct budget_account *a)
{
	budget_close(&process_budget, a);
}

void relay_set_budget(size_t bytes)
{
	budget_set_limit(&process_budget, bytes);
	session_set_memory(process_budget.used, process_budget.limit);
}

size_t relay_budget_limit(void)
{
	return process_budget.limit;
}

uint64_t relay_budget_hits(void)
{
	return budget_hits(&process_budget);
}

size_t relay_budget_used(void)
{
	return process_budget.used;
}

void relay_set_counter(struct relay *r, size_t *counter)
{
	r->counter = counter;
	(*counter)++;
}

void relay_pause(struct relay *r)
{
	bufferevent_disable(r->bev, EV_READ);
}

void relay_start(struct relay *r)
{
	bool reading = !r->read_paused && !r->account.paused;
	bufferevent_enable(r->bev, reading ? EV_READ | EV_WRITE : EV_WRITE);
}

int relay_connect(struct relay *r, const struct sockaddr *sa, socklen_t salen,
		  void (*done)(struct relay *r, uint32_t error, void *arg), void *arg)
{
	assert(is_connecting(r));
	int failed = bufferevent_getfd(r->bev);
	if (failed >= 0) {
		/* Another try after a failed connect (a pool's next backend): a
		 * fresh socket; what the stream sent stays queued for it. */
		bufferevent_setfd(r->bev, -1);
		evutil_closesocket(failed);
	}
	r->connect_done = done;
	r->connect_arg = arg;
	uint32_t ms = r->connect_timeout_ms != 0 ? r->connect_timeout_ms : RELAY_CONNECT_TIMEOUT_MS;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	bufferevent_set_timeouts(r->bev, NULL, &tv);
	if (bufferevent_socket_connect(r->bev, (struct sockaddr *)sa, (int)salen) != 0) {
		/* libevent reports immediate failures (ENETUNREACH) through the event
		 * callback when it can; a -1 here means it could not even try
		 * (the caller then closes r), errno says why. */
		return -1;
	}
	return 0;
}

void relay_set_connect_timeout(struct relay *r, uint32_t ms)
{
	r->connect_timeout_ms = ms;
}

void relay_set_close_hook(struct relay *r, void (*hook)(void *arg), void *arg)
{
	r->close_hook = hook;
	r->close_hook_arg = arg;
}

void relay_watch(struct relay *r, struct relay_watch *w, void (*on_close)(void *arg), void *arg)
{
	w->r = r;
	w->on_close = on_close;
	w->arg = arg;
	LIST_INSERT_HEAD(&r->watches, w, link);
}

void relay_unwatch(struct relay_watch *w)
{
	if (w->r == NULL)
		return;
	LIST_REMOVE(w, link);
	w->r = NULL;
}

struct session_stream *relay_stream(const struct relay *r)
{
	return r->st;
}

const char *relay_name(const struct relay *r)
{
	return r->name;
}

static void relay_on_data(struct session_stream *st, const uint8_t *data, size_t len, void *user)
{
	struct relay *r = user;
	if (r == NULL || r->state == RELAY_CLOSED)
		return;
	if (bufferevent_write(r->bev, data, len) != 0) {
		session_stream_reset(st, FRAME_ERR_INTERNAL);
		relay_close(r, true);
	}
}

static void relay_on_fin(struct session_stream *st, void *user)
{
	struct relay *r = user;
	if (r == NULL)
		return;
	switch (r->state) {
	case RELAY_CONNECTING:
		set_state(r, RELAY_CONNECTING_REMOTE_CLOSED);
		return; /* shut once connected */
	case RELAY_LOCAL_CLOSED:
		set_state(r, RELAY_BOTH_CLOSED);
		break;
	case RELAY_FLUSHING:
	case RELAY_CLOSED:
		return; /* the close that follows ends the local socket anyway */
	default:
		set_state(r, RELAY_REMOTE_CLOSED);
		break;
	}
	maybe_shut_write(r);
}

static void relay_on_reset(struct session_stream *st, uint32_t error, void *user)
{
	struct relay *r = user;
	if (r == NULL)
		return;
	log_debug("%s: stream %u reset (%s): %s", r->name, session_stream_id(st),
		  relay_state_name(r->state), frame_error_name(error));
	unbind(r);
	/* Before the OPEN was answered the error says why it was refused;
	 * after, the peer or its target reset a running stream. */
	enum access_result res = access_result_for_error(error);
	if (r->opened && error != FRAME_ERR_TUNNEL_LOST)
		res = ACCESS_RESET;
	access_set_result(r, res);
	if (r->opened) {
		relay_close(r, true);
		return;
	}
	relay_fail(r, error);
}

void relay_fail(struct relay *r, uint32_t error)
{
	access_set_result(r, access_result_for_error(error));
	if (r->st != NULL) {
		session_stream_reset(r->st, FRAME_ERR_CANCEL);
		unbind(r);
	}
	/* The front end answers in its own protocol, then closes politely. */
	if (r->has_fe && r->fe.on_open_failed != NULL &&
	    r->fe.on_open_failed(r, error, r->fe.arg)) {
		relay_close_after_flush(r);
		return;
	}
	relay_close(r, true);
}

static void relay_on_open_result(struct session_stream *st, void *user)
{
	struct relay *r = user;
	if (r == NULL)
		return;
	r->opened = true;
	if (r->has_fe && r->fe.on_open_result != NULL)
		r->fe.on_open_result(r, r->fe.arg);
}

static void relay_on_closed(struct session_stream *st, void *user)
{
	struct relay *r = user;
	if (r == NULL)
		return;
	unbind(r);
	relay_close(r, false);
}

void relay_stream_callbacks(struct session_callbacks *cb)
{
	cb->on_data = relay_on_data;
	cb->on_fin = relay_on_fin;
	cb->on_reset = relay_on_reset;
	cb->on_closed = relay_on_closed;
	cb->on_open_result = relay_on_open_result;
}

void relay_set_frontend(struct relay *r, const struct relay_frontend *fe)
{
	r->fe = *fe;
	r->has_fe = true;
	if (fe->on_read != NULL)
		set_state(r, RELAY_REQUEST);
}

void relay_end_request(struct relay *r)
{
	if (r->state == RELAY_REQUEST) {
		set_state(r, RELAY_NEW);
		if (r->st != NULL)
			set_state(r, RELAY_OPEN);
	}
	/* Bytes that came with the request now belong to the stream. */
	if (r->st != NULL && evbuffer_get_length(bufferevent_get_input(r->bev)) > 0)
		session_stream_kick(r->st);
}

int relay_write_local(struct relay *r, const void *data, size_t len)
{
	if (r->state == RELAY_CLOSED)
		return -1;
	if (bufferevent_write(r->bev, data, len) != 0)
		return -1;
	r->uncounted += len;
	return 0;
}

void relay_close_after_flush(struct relay *r)
{
	if (r->state == RELAY_CLOSED)
		return;
	if (r->state != RELAY_FLUSHING)
		set_state(r, RELAY_FLUSHING);
	bufferevent_disable(r->bev, EV_READ);
	bufferevent_enable(r->bev, EV_WRITE);
	maybe_close_flushed(r);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	access_set_result(r, ACCESS_TIMEOUT);
	if (r->has_fe && r->fe.on_deadline != NULL) {
		r->fe.on_deadline(r, r->fe.arg);
		return;
	}
	relay_close(r, true);
}

void relay_set_deadline(struct relay *r, uint32_t ms)
{
	if (r->state == RELAY_CLOSED)
		return;
	if (r->deadline == NULL) {
		r->deadline = evtimer_new(r->base, on_deadline, r);
		if (r->deadline == NULL)
			return;
	}
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(r->deadline, &tv);
}

void relay_clear_deadline(struct relay *r)
{
	if (r->deadline != NULL)
		event_del(r->deadline);
}

int relay_fd(const struct relay *r)
{
	return bufferevent_getfd(r->bev);
}
