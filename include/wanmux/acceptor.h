/*
 * A listening socket that survives running out of file descriptors. When
 * accept() fails with EMFILE, ENFILE, ENOBUFS or ENOMEM the socket stays
 * readable, and a listener left armed calls accept again at once: 100 % CPU
 * and a log line per try. An acceptor disables itself instead and re-arms
 * from a timer (ACCEPTOR_BACKOFF_MIN_MS, doubling to ACCEPTOR_BACKOFF_MAX_MS
 * while it keeps failing), logging through a once-a-second throttle. Also
 * the file-descriptor budget both daemons check at start.
 */
#ifndef WANMUX_ACCEPTOR_H
#define WANMUX_ACCEPTOR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct evconnlistener;
struct acceptor;

#define ACCEPTOR_BACKOFF_MIN_MS 100
#define ACCEPTOR_BACKOFF_MAX_MS 1000

/* An accepted connection: fd (non-blocking, close-on-exec) is the callee's. */
typedef void (*acceptor_cb)(int fd, const struct sockaddr *peer, int peerlen, void *arg);

/*
 * Accepts on the listening socket fd (taken over: closed by acceptor_free,
 * or now on failure) and calls on_accept(fd, peer, len, arg) for each
 * connection. name ("127.0.0.1:1080") is for logs. NULL on failure.
 */
struct acceptor *acceptor_new(struct event_base *base, int fd, acceptor_cb on_accept, void *arg,
			      const char *name);

/*
 * Guards a listener someone else made and accepts on (evhttp's, from
 * evhttp_bound_socket_get_listener): installs its error callback with the
 * same backoff. evl stays its owner's; free the acceptor before evl.
 */
struct acceptor *acceptor_guard(struct event_base *base, struct evconnlistener *evl,
				const char *name);

/* Closes the socket (not a guarded listener's); acceptor_free(NULL) is a
 * no-op. */
void acceptor_free(struct acceptor *a);

/* Times accept failed (each pauses the acceptor for the backoff). */
uint64_t acceptor_failures(const struct acceptor *a);

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft
 * limit now in force. When need (descriptors the configured limits allow:
 * connections, streams, tunnels) is more than that, logs a warning naming
 * what (e.g. "--max-connections x listeners"): the daemon then hits EMFILE
 * before its own limits, and accept backs off.
 */
uint64_t acceptor_fd_budget(uint64_t need, const char *what);

#endif
