/*
 * Limits and their counters: a token bucket for rates, a counter for every
 * refusal, and a log line per limit at most once a second (an attacker must
 * not be able to flood the log). No allocation, no I/O but logging.
 */
#ifndef WANMUX_LIMIT_H
#define WANMUX_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/log.h"

/* A named limit: how often it was hit, and its log throttle. */
struct limit_counter {
	const char *name; /* "unauthenticated connections", ... */
	uint64_t hits;
	struct log_throttle log;
};

/*
 * Counts one hit of c; logs "limit NAME hit: DETAIL (N in all)" through c's
 * log throttle (log_throttled: at most a line a second, the next one says
 * how many were held back).
 */
void limit_hit(struct limit_counter *c, const char *detail);

/* Token bucket: up to burst tokens, refilled at rate per second. */
struct limit_bucket {
	double tokens;
	uint64_t last_ms;
};

/* Takes one token if there is one (filling first); false when empty. */
bool limit_take(struct limit_bucket *b, double rate, double burst, uint64_t now_ms);

/* Milliseconds of CLOCK_MONOTONIC. */
uint64_t limit_now_ms(void);

/*
 * SipHash-2-4 (crypto_shorthash) of data under a random key made once per
 * process: for tables a peer fills (rate buckets, stream ids), so that it
 * cannot choose keys that collide.
 */
uint64_t limit_hash(const void *data, size_t len);

#endif
