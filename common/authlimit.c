/*
 * Per-source throttle for failed proxy logins: a fixed table of token
 * buckets keyed by source (an IPv4 or IPv6 address; IPv6 /64s have a slot of
 * their own too) under a random SipHash key, so a guesser cannot aim many
 * sources at one slot. No allocation after authlimit_new.
 */
#include "wanmux/authlimit.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/limit.h"

#define AUTHLIMIT_PROBE 8 /* slots looked at per source */
#define KEY_LEN 17	  /* kind byte, then up to 16 address bytes */
#define KIND_V4 4
#define KIND_V6 6
#define KIND_V6_PREFIX 64

struct authlimit_slot {
	uint8_t key[KEY_LEN]; /* kind, then 4 (IPv4), 16 (IPv6) or 8 (a /64) bytes */
	bool used;
	struct limit_bucket bucket;
	uint64_t blocked_until_ms;
	uint64_t last_ms;
};

struct authlimit {
	uint8_t hash_key[crypto_shorthash_KEYBYTES];
	struct authlimit_slot slots[AUTHLIMIT_SOURCES];
	struct authlimit_stats stats;
};

struct authlimit *authlimit_new(void)
{
	struct authlimit *al = calloc(1, sizeof(*al));

	if (al != NULL)
		randombytes_buf(al->hash_key, sizeof(al->hash_key));
	return al;
}

void authlimit_free(struct authlimit *al)
{
	free(al);
}

/*
 * The source key of src, and for IPv6 the key of its /64 in prefix (else
 * prefix[0] is 0); false for families that have no address. A host is its
 * address, not its /64: the hosts of one LAN share a /64, and one of them
 * must not lock the others out.
 */
static bool source_key(const struct sockaddr *src, uint8_t key[KEY_LEN], uint8_t prefix[KEY_LEN])
{
	static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};

	memset(key, 0, KEY_LEN);
	memset(prefix, 0, KEY_LEN);
	if (src == NULL)
		return false;
	if (src->sa_family == AF_INET) {
		key[0] = KIND_V4;
		memcpy(key + 1, &((const struct sockaddr_in *)src)->sin_addr, 4);
		return true;
	}
	if (src->sa_family != AF_INET6)
		return false;
	const uint8_t *a = ((const struct sockaddr_in6 *)src)->sin6_addr.s6_addr;
	if (memcmp(a, mapped, sizeof(mapped)) == 0) {
		key[0] = KIND_V4; /* the same host as its IPv4 address */
		memcpy(key + 1, a + 12, 4);
	} else {
		key[0] = KIND_V6;
		memcpy(key + 1, a, 16);
		prefix[0] = KIND_V6_PREFIX;
		memcpy(prefix + 1, a, 8);
	}
	return true;
}

/* Free slots first, then those not under a penalty, then the least recently
 * used: a guesser must block every probed slot to push a blocked one out. */
static bool better_victim(const struct authlimit_slot *a, const struct authlimit_slot *b,
			  uint64_t now_ms)
{
	bool a_blocked = a->blocked_until_ms > now_ms;
	bool b_blocked;

	if (b == NULL)
		return true;
	if (a->used != b->used)
		return !a->used;
	b_blocked = b->blocked_until_ms > now_ms;
	if (a_blocked != b_blocked)
		return !a_blocked;
	return a->last_ms < b->last_ms;
}

/* The slot of key; when unknown and create, a fresh one (replacing the best
 * victim among the probed slots), else NULL. */
static struct authlimit_slot *find(struct authlimit *al, const uint8_t key[KEY_LEN], bool create,
				   uint64_t now_ms)
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t start;
	struct authlimit_slot *victim = NULL;

	crypto_shorthash(h, key, KEY_LEN, al->hash_key);
	memcpy(&start, h, sizeof(start));
	for (size_t i = 0; i < AUTHLIMIT_PROBE; i++) {
		struct authlimit_slot *s = &al->slots[(start + i) % AUTHLIMIT_SOURCES];

		if (s->used && memcmp(s->key, key, KEY_LEN) == 0)
			return s;
		if (create && better_victim(s, victim, now_ms))
			victim = s;
	}
	if (victim == NULL)
		return NULL;
	memset(victim, 0, sizeof(*victim));
	memcpy(victim->key, key, KEY_LEN);
	victim->used = true;
	return victim;
}

static bool blocked(const struct authlimit_slot *s, uint64_t now_ms)
{
	return s != NULL && s->blocked_until_ms > now_ms;
}

bool authlimit_allowed(struct authlimit *al, const struct sockaddr *src, uint64_t now_ms)
{
	uint8_t key[KEY_LEN], prefix[KEY_LEN];

	if (al == NULL || !source_key(src, key, prefix))
		return true;
	if (!blocked(find(al, key, false, now_ms), now_ms) &&
	    (prefix[0] == 0 || !blocked(find(al, prefix, false, now_ms), now_ms)))
		return true;
	al->stats.refused++;
	return false;
}

/* Takes a token from s's bucket; true when that emptied it: s is then
 * under the penalty. */
static bool take(struct authlimit_slot *s, double rate, double burst, uint64_t now_ms)
{
	s->last_ms = now_ms;
	if (limit_take(&s->bucket, rate, burst, now_ms) && s->bucket.tokens >= 1.0)
		return false;
	s->blocked_until_ms = now_ms + AUTHLIMIT_PENALTY_MS;
	return true;
}

bool authlimit_failed(struct authlimit *al, const struct sockaddr *src, uint64_t now_ms)
{
	uint8_t key[KEY_LEN], prefix[KEY_LEN];

	if (al == NULL || !source_key(src, key, prefix))
		return false;
	al->stats.failures++;
	/* The bucket is empty: refuse the source for the penalty. */
	if (!take(find(al, key, true, now_ms), AUTHLIMIT_RATE, AUTHLIMIT_BURST, now_ms))
		return false;
	al->stats.blocks++;
	/* A host that moves to a new address of its /64 after each penalty
	 * gets a few bursts, then the /64 is refused. */
	if (prefix[0] != 0)
		take(find(al, prefix, true, now_ms),
		     AUTHLIMIT_PREFIX_BLOCKS * 1000.0 / AUTHLIMIT_PENALTY_MS,
		     AUTHLIMIT_PREFIX_BLOCKS, now_ms);
	return true;
}

struct authlimit_stats authlimit_stats(const struct authlimit *al)
{
	struct authlimit_stats zero = {0, 0, 0};

	return al != NULL ? al->stats : zero;
}
