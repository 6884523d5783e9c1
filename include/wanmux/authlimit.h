/*
 * Throttle for failed proxy logins (SOCKS5 RFC 1929, HTTP Basic), per
 * source: an IPv4 or IPv6 address (the hosts of a LAN share one /64, and
 * one must not lock the others out). A /64 whose addresses were put under
 * the penalty AUTHLIMIT_PREFIX_BLOCKS times within AUTHLIMIT_PENALTY_MS is
 * under the penalty as a whole (one host can use a whole /64).
 * Each failure takes a token from the source's bucket (AUTHLIMIT_BURST,
 * refilled at AUTHLIMIT_RATE per second); the failure that empties it blocks
 * the source for AUTHLIMIT_PENALTY_MS, during which every login from it is
 * refused without looking at the credentials, right ones included. That
 * bounds both guessing and the Argon2id work a guesser can cause. Pure: no
 * I/O, the caller passes the clock and does the logging.
 */
#ifndef WANMUX_AUTHLIMIT_H
#define WANMUX_AUTHLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTHLIMIT_BURST 5.0	   /* failures in a row before the penalty */
#define AUTHLIMIT_RATE 0.1	   /* failures per second regained */
#define AUTHLIMIT_PENALTY_MS 60000 /* how long a source is refused */
#define AUTHLIMIT_SOURCES 4096	   /* sources remembered; the oldest go first */
/* IPv6 addresses of one /64 put under the penalty within a penalty's time
 * before the whole /64 is. */
#define AUTHLIMIT_PREFIX_BLOCKS 4.0

struct authlimit;

struct authlimit_stats {
	uint64_t failures; /* authlimit_failed calls */
	uint64_t blocks;   /* times a source was put under the penalty */
	uint64_t refused;  /* logins refused because their source was blocked */
};

/* A new, empty throttle; NULL when out of memory. Free with authlimit_free. */
struct authlimit *authlimit_new(void);

/* NULL is a no-op. */
void authlimit_free(struct authlimit *al);

/*
 * Before checking credentials from src: false (counted in refused) while src
 * is under the penalty. al NULL or a source that is neither AF_INET nor
 * AF_INET6 (a Unix socket): always true.
 */
bool authlimit_allowed(struct authlimit *al, const struct sockaddr *src, uint64_t now_ms);

/*
 * A login from src failed: takes a token, and puts src under the penalty
 * when none is left. Returns true when this failure started a penalty.
 */
bool authlimit_failed(struct authlimit *al, const struct sockaddr *src, uint64_t now_ms);

/* Counters since authlimit_new; al NULL gives zeros. */
struct authlimit_stats authlimit_stats(const struct authlimit *al);

#endif
