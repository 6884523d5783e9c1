/*
 * Buffer budgets: the process total, per-tunnel pools, and the accounts of
 * the relays that hold the bytes. Bookkeeping only; the relay turns verdicts
 * into paused and resumed reads.
 */
#include <assert.h>
#include <string.h>

#include "wanmux/budget.h"

void budget_init(struct budget *b, size_t limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit;
	TAILQ_INIT(&b->paused);
	b->over_total.name = BUDGET_OVER_TOTAL_NAME;
	b->over_pool.name = BUDGET_OVER_POOL_NAME;
}

void budget_set_limit(struct budget *b, size_t limit)
{
	b->limit = limit;
}

void budget_pool_init(struct budget_pool *p, size_t limit)
{
	p->used = 0;
	p->limit = limit;
}

void budget_account_init(struct budget_account *a,
			 void (*on_wake)(struct budget_account *a, void *arg), void *arg)
{
	memset(a, 0, sizeof(*a));
	a->on_wake = on_wake;
	a->arg = arg;
}

enum budget_verdict budget_rule(const struct budget *b, const struct budget_pool *p, unsigned num,
				unsigned den)
{
	assert(den > 0 && num <= den);
	if (p != NULL && p->limit != 0 && p->used > p->limit / den * num)
		return BUDGET_OVER_POOL;
	if (b->used <= b->limit / den * num)
		return BUDGET_UNDER;
	/* Over the total: only pools holding at least an even share pause. */
	if (p == NULL || b->pools_active == 0 || p->used * b->pools_active >= b->used)
		return BUDGET_OVER_TOTAL;
	return BUDGET_UNDER;
}

static void pool_add(struct budget *b, struct budget_pool *p, size_t n)
{
	if (n == 0)
		return;
	assert(p->used + n > p->used);
	if (p->used == 0)
		b->pools_active++;
	p->used += n;
}

static void pool_sub(struct budget *b, struct budget_pool *p, size_t n)
{
	if (n == 0)
		return;
	assert(n <= p->used);
	assert(b->pools_active > 0);
	p->used -= n;
	if (p->used == 0)
		b->pools_active--;
}

void budget_charge(struct budget *b, struct budget_account *a, size_t n)
{
	assert(b->used + n >= b->used);
	a->held += n;
	b->used += n;
	if (a->pool != NULL)
		pool_add(b, a->pool, n);
}

static void wake(struct budget *b)
{
	struct budget_account *a = TAILQ_FIRST(&b->paused);
	while (a != NULL) {
		struct budget_account *next = TAILQ_NEXT(a, link);
		if (budget_rule(b, a->pool, 3, 4) == BUDGET_UNDER) {
			TAILQ_REMOVE(&b->paused, a, link);
			a->paused = false;
			if (a->on_wake != NULL)
				a->on_wake(a, a->arg);
		}
		a = next;
	}
}

void budget_release(struct budget *b, struct budget_account *a, size_t n)
{
	assert(n <= a->held);
	assert(n <= b->used);
	a->held -= n;
	b->used -= n;
	if (a->pool != NULL)
		pool_sub(b, a->pool, n);
	if (n > 0 && !TAILQ_EMPTY(&b->paused))
		wake(b);
}

void budget_attach(struct budget *b, struct budget_account *a, struct budget_pool *p)
{
	assert(a->pool == NULL && p != NULL);
	a->pool = p;
	pool_add(b, p, a->held);
}

void budget_detach(struct budget *b, struct budget_account *a)
{
	if (a->pool == NULL)
		return;
	pool_sub(b, a->pool, a->held);
	a->pool = NULL;
}

void budget_close(struct budget *b, struct budget_account *a)
{
	if (a->paused) {
		TAILQ_REMOVE(&b->paused, a, link);
		a->paused = false;
	}
	budget_release(b, a, a->held);
	budget_detach(b, a);
}

enum budget_verdict budget_check(struct budget *b, struct budget_account *a)
{
	assert(!a->paused);
	enum budget_verdict v = budget_rule(b, a->pool, 1, 1);
	if (v == BUDGET_UNDER)
		return v;
	if (v == BUDGET_OVER_POOL)
		limit_hit(&b->over_pool, "a tunnel's local sockets paused until its buffers drain");
	else
		limit_hit(&b->over_total, "local sockets paused until buffers drain");
	a->paused = true;
	TAILQ_INSERT_TAIL(&b->paused, a, link);
	return v;
}

uint64_t budget_hits(const struct budget *b)
{
	return b->over_total.hits + b->over_pool.hits;
}
