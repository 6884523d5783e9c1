/*
 * Accepting connections with a backoff on resource exhaustion, and the
 * RLIMIT_NOFILE budget. The backoff is the only defence here: the owners'
 * own connection limits decide what an accepted connection may do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "wanmux/acceptor.h"
#include "wanmux/limit.h"
#include "wanmux/log.h"

struct acceptor {
	struct evconnlistener *evl;
	struct event *retry;
	acceptor_cb on_accept;
	void *arg;
	uint32_t backoff_ms; /* the next pause; back to the minimum after an accept */
	char name[96];
	char counter_name[128];
	struct limit_counter failures;
	bool borrowed;		     /* acceptor_guard: evl is its owner's */
	struct acceptor *next_guard; /* in guards */
};

/* Listeners guarded with acceptor_guard: their error callback gets their
 * owner's argument, so the acceptor is looked up (a daemon has one or two). */
static struct acceptor *guards;

static void on_evl_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
			  int salen, void *arg)
{
	struct acceptor *a = arg;
	a->backoff_ms = ACCEPTOR_BACKOFF_MIN_MS;
	a->on_accept(fd, sa, salen, a->arg);
}

static bool out_of_resources(int err)
{
	return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

static void back_off(struct acceptor *a, int err)
{
	char detail[256];
	/* Any other error that libevent reports (it retries EAGAIN, EINTR and
	 * ECONNABORTED itself) would spin the same way; pause for it too. */
	snprintf(detail, sizeof(detail), "accept on %s: %s%s; not accepting for %u ms", a->name,
		 strerror(err), out_of_resources(err) ? " (out of descriptors or memory)" : "",
		 a->backoff_ms);
	limit_hit(&a->failures, detail);
	evconnlistener_disable(a->evl);
	struct timeval tv = {a->backoff_ms / 1000, (a->backoff_ms % 1000) * 1000};
	evtimer_add(a->retry, &tv);
	a->backoff_ms *= 2;
	if (a->backoff_ms > ACCEPTOR_BACKOFF_MAX_MS)
		a->backoff_ms = ACCEPTOR_BACKOFF_MAX_MS;
}

static void on_evl_error(struct evconnlistener *evl, void *arg)
{
	back_off(arg, EVUTIL_SOCKET_ERROR());
}

static void on_guarded_error(struct evconnlistener *evl, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	for (struct acceptor *a = guards; a != NULL; a = a->next_guard) {
		if (a->evl == evl) {
			back_off(a, err);
			return;
		}
	}
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct acceptor *a = arg;
	evconnlistener_enable(a->evl);
}

/* What acceptor_new and acceptor_guard share: name, counter, retry timer. */
static struct acceptor *acceptor_alloc(struct event_base *base, const char *name)
{
	struct acceptor *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return NULL;
	a->backoff_ms = ACCEPTOR_BACKOFF_MIN_MS;
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(a->counter_name, sizeof(a->counter_name), "accept failures on %s", a->name);
	a->failures.name = a->counter_name;
	a->retry = evtimer_new(base, on_retry, a);
	if (a->retry == NULL) {
		free(a);
		return NULL;
	}
	return a;
}

struct acceptor *acceptor_new(struct event_base *base, int fd, acceptor_cb on_accept, void *arg,
			      const char *name)
{
	struct acceptor *a = acceptor_alloc(base, name);
	if (a == NULL)
		goto err0;
	a->on_accept = on_accept;
	a->arg = arg;
	a->evl = evconnlistener_new(base, on_evl_accept, a,
				    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (a->evl == NULL)
		goto err1;
	evconnlistener_set_error_cb(a->evl, on_evl_error);
	return a;

err1:
	event_free(a->retry);
	free(a);
err0:
	close(fd);
	return NULL;
}

struct acceptor *acceptor_guard(struct event_base *base, struct evconnlistener *evl,
				const char *name)
{
	struct acceptor *a = acceptor_alloc(base, name);
	if (a == NULL)
		return NULL;
	a->evl = evl;
	a->borrowed = true;
	a->next_guard = guards;
	guards = a;
	evconnlistener_set_error_cb(evl, on_guarded_error);
	return a;
}

void acceptor_free(struct acceptor *a)
{
	if (a == NULL)
		return;
	if (a->borrowed) {
		struct acceptor **pp = &guards;
		while (*pp != a)
			pp = &(*pp)->next_guard;
		*pp = a->next_guard;
		evconnlistener_set_error_cb(a->evl, NULL);
	} else {
		evconnlistener_free(a->evl);
	}
	event_free(a->retry);
	/* Listeners close at a drain, a reload or with their reverse tunnel:
	 * the logger must not keep a pointer into a. */
	log_throttle_release(&a->failures.log);
	free(a);
}

uint64_t acceptor_failures(const struct acceptor *a)
{
	return a->failures.hits;
}

uint64_t acceptor_fd_budget(uint64_t need, const char *what)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit want = {rl.rlim_max, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			rl.rlim_cur = rl.rlim_max;
		else
			log_warn("cannot raise the open-file limit from %llu to %llu: %s",
				 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
				 strerror(errno));
	}
	uint64_t have = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
	if (need > have)
		log_warn("the open-file limit (%llu) is below what %s allow (%llu descriptors): "
			 "connections past it wait or fail; raise LimitNOFILE or lower the limits",
			 (unsigned long long)have, what, (unsigned long long)need);
	return have;
}
