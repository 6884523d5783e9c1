/*
 * Reads past libevent's 4096-byte reads. libevent 2.1 caps every read of a
 * socket bufferevent at 4096 bytes (EVBUFFER_MAX_READ, whatever
 * bufferevent_set_max_single_read says), so a bulk stream costs an epoll
 * wake-up, an ioctl, a readv and a read callback per 4 KiB, and every frame
 * and record built from such a read is small. Only reads; EOF and errors are
 * left to libevent's own next read, which reports them as it always did.
 */
#ifndef WANMUX_SOCKREAD_H
#define WANMUX_SOCKREAD_H

#include <stddef.h>

#include <event2/bufferevent.h>

/*
 * From a bufferevent's read callback: reads what the socket has waiting
 * (FIONREAD), up to max bytes, straight into the bufferevent's input
 * buffer, so that one callback sees up to max bytes more. The input
 * buffer's callbacks see the bytes as added, as for libevent's reads.
 * Returns the bytes read: 0 when nothing is waiting, when the socket is
 * gone, or at EOF or on an error (libevent then sees it on its next read).
 */
size_t sockread_more(struct bufferevent *bev, size_t max);

#endif
