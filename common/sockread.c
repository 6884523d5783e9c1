/*
 * One larger read from a bufferevent's socket into its input buffer, for
 * the read callbacks of relays and tunnels (see sockread.h for why). No
 * event handling of its own: libevent still owns the socket's events.
 */
#include <sys/ioctl.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "wanmux/sockread.h"

static size_t read_into(evutil_socket_t fd, struct evbuffer *in, size_t want)
{
	struct evbuffer_iovec v[2];
	int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
	if (nv <= 0)
		return 0;
	struct iovec iov[2];
	size_t left = want;
	int used = 0;
	for (int i = 0; i < nv && left > 0; i++, used++) {
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = v[i].iov_len < left ? v[i].iov_len : left;
		left -= iov[i].iov_len;
	}
	/* Space reserved and not committed is simply reused later. */
	ssize_t got = readv(fd, iov, used);
	if (got <= 0)
		return 0;
	size_t rest = (size_t)got;
	int filled = 0;
	while (filled < used && rest > 0) {
		v[filled].iov_len = iov[filled].iov_len < rest ? iov[filled].iov_len : rest;
		rest -= v[filled].iov_len;
		filled++;
	}
	if (evbuffer_commit_space(in, v, filled) != 0)
		return 0;
	return (size_t)got;
}

size_t sockread_more(struct bufferevent *bev, size_t max)
{
	evutil_socket_t fd = bufferevent_getfd(bev);
	int waiting = 0;
	/* Only what is there: a reservation past it would sit unused in the
	 * buffer's last chain (an idle stream holding a big empty chain). */
	if (fd < 0 || max == 0 || ioctl(fd, FIONREAD, &waiting) != 0 || waiting <= 0)
		return 0;
	size_t want = (size_t)waiting < max ? (size_t)waiting : max;
	struct evbuffer *in = bufferevent_get_input(bev);
	/* A socket bufferevent keeps its input's end frozen except while it
	 * reads itself; this is such a read, so it thaws the end the same way
	 * and freezes it again before returning. */
	evbuffer_unfreeze(in, 0);
	size_t got = read_into(fd, in, want);
	evbuffer_freeze(in, 0);
	return got;
}
