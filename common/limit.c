/* Token buckets and rate-limited refusal logging. */
#include <time.h>

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
	uint64_t now = limit_now_ms();
	c->hits++;
	if (c->last_log_ms != 0 && now - c->last_log_ms < 1000)
		return;
	uint64_t since = c->hits - c->logged_hits;
	c->logged_hits = c->hits;
	c->last_log_ms = now;
	if (since > 1)
		log_warn("limit %s hit: %s (%llu times since the last report, %llu in all)",
			 c->name, detail, (unsigned long long)since, (unsigned long long)c->hits);
	else
		log_warn("limit %s hit: %s (%llu in all)", c->name, detail,
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
