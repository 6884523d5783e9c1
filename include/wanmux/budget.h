/*
 * Buffer budgets: bytes held in relay buffers, charged to the process total
 * (--max-buffer) and to the pool of the tunnel (later: the session) whose
 * stream a relay serves (--max-session-buffer). Bookkeeping, the pause rule
 * and wake-ups only: no I/O, no allocation, no sockets. The owner of an
 * account (a relay) stops reading when budget_check says so and starts again
 * from on_wake.
 *
 * The rule: an account whose pool is over the pool's limit pauses. When the
 * process is over its total, only accounts of pools holding at least an even
 * share of the total (pool used * pools holding bytes >= total used) pause,
 * so one tunnel whose peer never reads cannot stall the others; an account
 * with no pool pauses too. A paused account wakes once the rule, applied at
 * 3/4 of the limits, lets it go (hysteresis): nothing is dropped, streams
 * only slow down.
 *
 * Invariants, asserted (a clamp would hide the bug that an attacker later
 * finds): an account never releases more than it holds; a pool's use is the
 * sum of its accounts' holdings and the total the sum of all holdings;
 * pools_active counts exactly the pools whose use is not zero.
 *
 * The structs are not opaque because their owners embed them (the process
 * budget in relay.c, a pool in each tunnel, an account in each relay); only
 * budget.c writes their fields, others may read them.
 */
#ifndef WANMUX_BUDGET_H
#define WANMUX_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "wanmux/limit.h"

#define BUDGET_DEFAULT_LIMIT ((size_t)256 << 20)     /* --max-buffer */
#define BUDGET_DEFAULT_POOL_LIMIT ((size_t)64 << 20) /* --max-session-buffer */

enum budget_verdict {
	BUDGET_UNDER = 0,  /* may read */
	BUDGET_OVER_POOL,  /* its pool holds more than the pool's limit */
	BUDGET_OVER_TOTAL, /* the process is over its total and this pool holds a share */
};

/* What one pool of accounts (a tunnel's relays) holds, against its limit. */
struct budget_pool {
	size_t used;
	size_t limit; /* 0: no limit of its own */
};

struct budget_account;
TAILQ_HEAD(budget_account_list, budget_account);

/* The process: the total held by all accounts, against --max-buffer. */
struct budget {
	size_t used;
	size_t limit;
	size_t pools_active; /* pools whose used is not zero */
	struct budget_account_list paused;
	struct limit_counter over_total; /* pauses over the total (--max-buffer) */
	struct limit_counter over_pool;	 /* pauses over a pool's limit */
};

/* One holder of bytes (a relay): what it holds, its pool, whether paused. */
struct budget_account {
	size_t held;
	struct budget_pool *pool; /* NULL until budget_attach; borrowed */
	bool paused;
	TAILQ_ENTRY(budget_account) link; /* in budget.paused while paused */
	/* Runs when a paused account may read again (already unpaused). It may
	 * re-enable reading; it must not charge, release or close accounts. */
	void (*on_wake)(struct budget_account *a, void *arg);
	void *arg;
};

/* An empty budget of limit bytes; names its limit counters for the log.
 * BUDGET_INITIALIZER does the same for a static one named self. */
void budget_init(struct budget *b, size_t limit);
#define BUDGET_OVER_TOTAL_NAME "buffered bytes (--max-buffer)"
#define BUDGET_OVER_POOL_NAME "buffered bytes per tunnel (--max-session-buffer)"
#define BUDGET_INITIALIZER(self, bytes)                                                            \
	{                                                                                          \
		.limit = (bytes), .paused = TAILQ_HEAD_INITIALIZER((self).paused),                 \
		.over_total = {.name = BUDGET_OVER_TOTAL_NAME},                                    \
		.over_pool = {.name = BUDGET_OVER_POOL_NAME},                                      \
	}

/* A new limit for the total (start-up: --max-buffer); accounts paused under
 * the old one are looked at again at the next release. */
void budget_set_limit(struct budget *b, size_t limit);

/* An empty pool with its own limit (0: none). */
void budget_pool_init(struct budget_pool *p, size_t limit);

/* An account holding nothing, in no pool, not paused. */
void budget_account_init(struct budget_account *a,
			 void (*on_wake)(struct budget_account *a, void *arg), void *arg);

/*
 * The pause rule, pure: where an account of pool p (NULL: none) stands
 * against b with the limits scaled by num/den (1/1 to pause, 3/4 to wake).
 * Reads only its arguments.
 */
enum budget_verdict budget_rule(const struct budget *b, const struct budget_pool *p, unsigned num,
				unsigned den);

/* a now holds n more bytes: charged to b and to a's pool. */
void budget_charge(struct budget *b, struct budget_account *a, size_t n);

/*
 * a holds n bytes less (n <= a->held, asserted). When n > 0, every paused
 * account the rule lets go at 3/4 is unpaused and its on_wake runs, from
 * inside this call.
 */
void budget_release(struct budget *b, struct budget_account *a, size_t n);

/* a joins pool p (a must be in none): what it holds moves into p. */
void budget_attach(struct budget *b, struct budget_account *a, struct budget_pool *p);

/* a leaves its pool (no-op without one): its bytes stay in the total. For
 * an account whose pool may go away before it does. */
void budget_detach(struct budget *b, struct budget_account *a);

/* a goes away: releases everything it holds, leaves the paused list (its
 * own on_wake does not run) and its pool. */
void budget_close(struct budget *b, struct budget_account *a);

/*
 * Whether a (not paused: asserted) must stop reading now, the rule at 1/1.
 * Over: a is marked paused until its on_wake, the hit is counted and logged
 * through the limit counter (throttled), and the verdict returned.
 * BUDGET_UNDER otherwise.
 */
enum budget_verdict budget_check(struct budget *b, struct budget_account *a);

/* Pauses over either limit since budget_init. */
uint64_t budget_hits(const struct budget *b);

#endif
