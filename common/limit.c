/* Token buckets, rate-limited refusal logging and the keyed hash for tables
 * a peer fills. */
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "wanmux/limit.h"
#include "wanmux/log.h"

uint64_t limit_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void limit_hit(struct limit_counter *c, const char *detail)
{
	c->hits++;
	log_throttled(&c->log, LOG_LEVEL_WARN, "limit %s hit: %s (%llu in all)", c->name, detail,
		      (unsigned long long)c->hits);
}

bool limit_take(struct limit_bucket *b, double rate, double burst, uint64_t now_ms)
{
	if (b->last_ms == 0) {
		b->tokens = burst;
	} else if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
	}
	b->last_ms = now_ms;
	if (b->tokens < 1.0)
		return false;
	b->tokens -= 1.0;
	return true;
}

uint64_t limit_hash(const void *data, size_t len)
{
	static uint8_t key[crypto_shorthash_KEYBYTES];
	static bool have_key;
	if (!have_key) {
		/* Idempotent; main() has normally done it already. */
		if (sodium_init() < 0)
			log_error("limit: cannot initialise libsodium; hash key may be weak");
		randombytes_buf(key, sizeof(key));
		have_key = true;
	}
	uint8_t h[crypto_shorthash_BYTES];
	crypto_shorthash(h, data, len, key);
	uint64_t v;
	memcpy(&v, h, sizeof(v));
	return v;
}
