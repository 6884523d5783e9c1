/*
 * Target pools: definitions, backend choice and the rise/fall health
 * machine. No sockets here: the server runs the checks and the connects and
 * reports their results (pool_backend_check, pool_backend_connect_failed).
 */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wanmux/config.h"
#include "wanmux/err.h"
#include "wanmux/pool.h"

struct pool {
	char vhost[NETADDR_HOST_MAX];
	uint16_t vport;
	char name[NETADDR_STR_MAX];
	enum pool_policy policy;
	struct pool_backend *backends[POOL_BACKENDS_MAX];
	size_t nbackends;
	struct pool_counters counters;
	unsigned refs;
};

const char *pool_policy_name(enum pool_policy p)
{
	switch (p) {
	case POOL_ROUNDROBIN:
		return "roundrobin";
	case POOL_LEASTCONN:
		return "leastconn";
	case POOL_SOURCE:
		return "source";
	}
	return "?";
}

int pool_policy_parse(const char *s, enum pool_policy *out)
{
	static const enum pool_policy all[] = {POOL_ROUNDROBIN, POOL_LEASTCONN, POOL_SOURCE};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, pool_policy_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return WM_ERR_PARSE;
}

const char *pool_health_name(enum pool_health h)
{
	switch (h) {
	case POOL_UP:
		return "up";
	case POOL_DOWN:
		return "down";
	}
	return "?";
}

void pool_backend_hold(struct pool_backend *b)
{
	b->refs++;
}

void pool_backend_release(struct pool_backend *b)
{
	if (b == NULL)
		return;
	assert(b->refs > 0);
	if (--b->refs == 0)
		free(b);
}

bool pool_backend_usable(const struct pool_backend *b)
{
	return b->health == POOL_UP && !b->drain && !b->admin_drain;
}

const char *pool_backend_state_name(const struct pool_backend *b)
{
	return b->drain || b->admin_drain ? "drain" : pool_health_name(b->health);
}

static bool set_health(struct pool_backend *b, enum pool_health h)
{
	b->streak = 0;
	if (b->health == h)
		return false;
	b->health = h;
	b->changes++;
	return true;
}

bool pool_backend_check(struct pool_backend *b, bool ok, unsigned rise, unsigned fall)
{
	b->checked = true;
	b->last_check_ok = ok;
	if (ok)
		b->checks_ok++;
	else
		b->checks_failed++;
	/* A result that agrees with the state resets the streak. */
	if (ok == (b->health == POOL_UP)) {
		b->streak = 0;
		return false;
	}
	b->streak++;
	if (b->streak < (ok ? rise : fall))
		return false;
	return set_health(b, ok ? POOL_UP : POOL_DOWN);
}

bool pool_backend_connect_failed(struct pool_backend *b)
{
	b->failed++;
	return set_health(b, POOL_DOWN);
}

/* A host as pools keep it: names lower case without a trailing dot,
 * addresses canonical (so that "[0:0::1]" and "::1" are one virtual
 * target). */
static void canonical_host(const char *in, char *out, size_t len)
{
	unsigned char bin[16];
	if (inet_pton(AF_INET6, in, bin) == 1 && inet_ntop(AF_INET6, bin, out, (socklen_t)len))
		return;
	if (inet_pton(AF_INET, in, bin) == 1 && inet_ntop(AF_INET, bin, out, (socklen_t)len))
		return;
	size_t i;
	for (i = 0; in[i] != '\0' && i + 1 < len; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	/* "web.internal." is the same name, fully qualified. */
	if (i > 1 && out[i - 1] == '.')
		i--;
	out[i] = '\0';
}

static void hostport_name(const char *host, uint16_t port, char *out, size_t len)
{
	snprintf(out, len, strchr(host, ':') != NULL ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
}

/* "HOST:PORT[/weight=N][/backup][/drain]" into a new backend. */
static struct pool_backend *parse_backend(const char *text, size_t n, const char *spec, char *err,
					  size_t errlen)
{
	char buf[NETADDR_STR_MAX + 64];
	char why[256];
	if (n == 0) {
		wm_set_err(err, errlen, "'%s': empty backend", spec);
		return NULL;
	}
	if (n >= sizeof(buf)) {
		wm_set_err(err, errlen, "'%s': backend too long", spec);
		return NULL;
	}
	memcpy(buf, text, n);
	buf[n] = '\0';
	char *opts = strchr(buf, '/');
	if (opts != NULL)
		*opts++ = '\0';
	struct pool_backend *b = calloc(1, sizeof(*b));
	if (b == NULL) {
		wm_set_err(err, errlen, "out of memory");
		return NULL;
	}
	b->refs = 1;
	b->weight = POOL_WEIGHT_DEFAULT;
	b->health = POOL_UP; /* as HAProxy: up until checks say otherwise */
	if (netaddr_parse_hostport(buf, &b->addr, why, sizeof(why)) != 0) {
		wm_set_err(err, errlen, "'%s': backend %s", spec, why);
		goto fail;
	}
	char host[NETADDR_HOST_MAX];
	canonical_host(b->addr.host, host, sizeof(host));
	snprintf(b->addr.host, sizeof(b->addr.host), "%s", host);
	hostport_name(b->addr.host, b->addr.port, b->name, sizeof(b->name));
	while (opts != NULL) {
		char *next = strchr(opts, '/');
		if (next != NULL)
			*next++ = '\0';
		uint64_t w;
		if (strcmp(opts, "backup") == 0) {
			b->backup = true;
		} else if (strcmp(opts, "drain") == 0) {
			b->drain = true;
		} else if (strncmp(opts, "weight=", 7) == 0) {
			if (config_parse_uint(opts + 7, 1, POOL_WEIGHT_MAX, &w) != 0 ||
			    strpbrk(opts + 7, "kKmMgG") != NULL) {
				wm_set_err(err, errlen,
					   "'%s': backend %s: bad weight '%s' (expected 1 to %d)",
					   spec, b->name, opts + 7, POOL_WEIGHT_MAX);
				goto fail;
			}
			b->weight = (unsigned)w;
		} else {
			wm_set_err(err, errlen,
				   "'%s': backend %s: unknown flag '%s' (expected weight=N, "
				   "backup or drain)",
				   spec, b->name, opts);
			goto fail;
		}
		opts = next;
	}
	return b;
fail:
	free(b);
	return NULL;
}

struct pool *pool_parse(const char *spec, enum pool_policy def, char *err, size_t errlen)
{
	char why[256];
	struct netaddr_hostport vh;
	/* Errors quote the definition: keep them one printable line. */
	for (const char *c = spec; *c != '\0'; c++) {
		if ((unsigned char)*c < 0x20 || *c == 0x7f) {
			wm_set_err(err, errlen,
				   "pool definition holds a control character (byte %zu)",
				   (size_t)(c - spec));
			return NULL;
		}
	}
	const char *eq = strchr(spec, '=');
	if (eq == NULL) {
		wm_set_err(err, errlen, "'%s': expected VHOST:PORT=BACKEND[,BACKEND...]", spec);
		return NULL;
	}
	char vtext[NETADDR_STR_MAX];
	size_t vlen = (size_t)(eq - spec);
	if (vlen >= sizeof(vtext)) {
		wm_set_err(err, errlen, "'%.64s...': virtual target too long", spec);
		return NULL;
	}
	memcpy(vtext, spec, vlen);
	vtext[vlen] = '\0';
	if (netaddr_parse_hostport(vtext, &vh, why, sizeof(why)) != 0) {
		wm_set_err(err, errlen, "virtual target %s", why);
		return NULL;
	}
	struct pool *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		wm_set_err(err, errlen, "out of memory");
		return NULL;
	}
	p->refs = 1;
	p->policy = def;
	canonical_host(vh.host, p->vhost, sizeof(p->vhost));
	p->vport = vh.port;
	hostport_name(p->vhost, p->vport, p->name, sizeof(p->name));
	const char *s = eq + 1;
	for (;;) {
		const char *end = strchr(s, ',');
		size_t n = end != NULL ? (size_t)(end - s) : strlen(s);
		if (p->nbackends == POOL_BACKENDS_MAX) {
			wm_set_err(err, errlen, "'%s': more than %d backends", p->name,
				   POOL_BACKENDS_MAX);
			goto fail;
		}
		struct pool_backend *b = parse_backend(s, n, spec, err, errlen);
		if (b == NULL)
			goto fail;
		for (size_t i = 0; i < p->nbackends; i++) {
			if (strcmp(p->backends[i]->name, b->name) == 0) {
				wm_set_err(err, errlen, "'%s': backend %s given twice", p->name,
					   b->name);
				pool_backend_release(b);
				goto fail;
			}
		}
		p->backends[p->nbackends++] = b;
		if (end == NULL)
			break;
		s = end + 1;
	}
	return p;
fail:
	pool_free(p);
	return NULL;
}

void pool_hold(struct pool *p)
{
	p->refs++;
}

void pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	assert(p->refs > 0);
	if (--p->refs > 0)
		return;
	for (size_t i = 0; i < p->nbackends; i++)
		pool_backend_release(p->backends[i]);
	free(p);
}

const char *pool_name(const struct pool *p)
{
	return p->name;
}

const char *pool_vhost(const struct pool *p)
{
	return p->vhost;
}

uint16_t pool_vport(const struct pool *p)
{
	return p->vport;
}

bool pool_matches(const struct pool *p, const char *host, uint16_t port)
{
	char canon[NETADDR_HOST_MAX];
	if (port != p->vport)
		return false;
	canonical_host(host, canon, sizeof(canon));
	return strcmp(canon, p->vhost) == 0;
}

enum pool_policy pool_get_policy(const struct pool *p)
{
	return p->policy;
}

void pool_set_policy(struct pool *p, enum pool_policy policy)
{
	p->policy = policy;
}

size_t pool_backend_count(const struct pool *p)
{
	return p->nbackends;
}

struct pool_backend *pool_backend_at(const struct pool *p, size_t i)
{
	assert(i < p->nbackends);
	return p->backends[i];
}

struct pool_counters *pool_get_counters(struct pool *p)
{
	return &p->counters;
}

void pool_adopt(struct pool *next, const struct pool *prev)
{
	next->counters = prev->counters;
	for (size_t i = 0; i < next->nbackends; i++) {
		struct pool_backend *nb = next->backends[i];
		for (size_t j = 0; j < prev->nbackends; j++) {
			struct pool_backend *ob = prev->backends[j];
			if (strcmp(ob->name, nb->name) != 0)
				continue;
			ob->weight = nb->weight;
			ob->backup = nb->backup;
			ob->drain = nb->drain;
			pool_backend_hold(ob);
			pool_backend_release(nb);
			next->backends[i] = ob;
			break;
		}
	}
}

/* The set a pick chooses from: usable, not skipped, and backups only when
 * no other backend is usable. */
static uint64_t candidates(const struct pool *p, uint64_t skip)
{
	uint64_t primary = 0, backup = 0;
	for (size_t i = 0; i < p->nbackends; i++) {
		const struct pool_backend *b = p->backends[i];
		if ((skip >> i) & 1u || !pool_backend_usable(b))
			continue;
		if (b->backup)
			backup |= UINT64_C(1) << i;
		else
			primary |= UINT64_C(1) << i;
	}
	return primary != 0 ? primary : backup;
}

/*
 * Smooth weighted round robin (nginx): each candidate gains its weight, the
 * richest is chosen and pays the total. Weights 3:1 give a b a a a b...,
 * spread out rather than in bursts, and equal weights a plain rotation.
 */
static int pick_weighted_rr(struct pool *p, uint64_t set)
{
	int best = -1;
	int64_t total = 0;
	for (size_t i = 0; i < p->nbackends; i++) {
		if (!((set >> i) & 1u))
			continue;
		struct pool_backend *b = p->backends[i];
		b->current += b->weight;
		total += b->weight;
		if (best < 0 || b->current > p->backends[best]->current)
			best = (int)i;
	}
	if (best >= 0)
		p->backends[best]->current -= total;
	return best;
}

/* Fewest active streams per unit of weight; equals share by round robin. */
static int pick_leastconn(struct pool *p, uint64_t set)
{
	uint64_t least = 0;
	const struct pool_backend *min = NULL;
	for (size_t i = 0; i < p->nbackends; i++) {
		if (!((set >> i) & 1u))
			continue;
		const struct pool_backend *b = p->backends[i];
		/* active/weight < min->active/min->weight, without division. */
		if (min == NULL || b->active * min->weight < min->active * b->weight) {
			min = b;
			least = 0;
		}
		if (b->active * min->weight == min->active * b->weight)
			least |= UINT64_C(1) << i;
	}
	return pick_weighted_rr(p, least);
}

/* FNV-1a over the key and the backend's name, then the splitmix64
 * finaliser so that nearby inputs spread over all 64 bits. */
static uint64_t hash_pair(const uint8_t *key, size_t keylen, const char *name)
{
	uint64_t h = UINT64_C(14695981039346656037);
	for (size_t i = 0; i < keylen; i++) {
		h ^= key[i];
		h *= UINT64_C(1099511628211);
	}
	h ^= 0xff;
	h *= UINT64_C(1099511628211);
	for (const char *c = name; *c != '\0'; c++) {
		h ^= (uint8_t)*c;
		h *= UINT64_C(1099511628211);
	}
	h ^= h >> 30;
	h *= UINT64_C(0xbf58476d1ce4e5b9);
	h ^= h >> 27;
	h *= UINT64_C(0x94d049bb133111eb);
	h ^= h >> 31;
	return h;
}

/*
 * Weighted rendezvous hashing (HRW): every backend scores the key, the
 * highest wins. A key moves only when its winner leaves or a newcomer beats
 * it, so adding one backend to n moves about 1/(n+1) of the keys, and
 * removing one moves only the keys it held. Score w / -ln(u), u uniform in
 * (0,1) from the hash, gives each backend a share proportional to w.
 */
static int pick_source(struct pool *p, uint64_t set, const uint8_t *key, size_t keylen)
{
	int best = -1;
	double best_score = 0;
	for (size_t i = 0; i < p->nbackends; i++) {
		if (!((set >> i) & 1u))
			continue;
		const struct pool_backend *b = p->backends[i];
		uint64_t h = hash_pair(key, keylen, b->name);
		double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
		double score = (double)b->weight / -log(u);
		if (best < 0 || score > best_score) {
			best = (int)i;
			best_score = score;
		}
	}
	return best;
}

int pool_pick(struct pool *p, const uint8_t *key, size_t keylen, uint64_t skip)
{
	uint64_t set = candidates(p, skip);
	if (set == 0)
		return -1;
	switch (p->policy) {
	case POOL_LEASTCONN:
		return pick_leastconn(p, set);
	case POOL_SOURCE:
		return pick_source(p, set, key, key != NULL ? keylen : 0);
	case POOL_ROUNDROBIN:
		break;
	}
	return pick_weighted_rr(p, set);
}

int pool_parse_interval(const char *s, uint32_t *ms)
{
	uint64_t v = 0;
	const char *dot = strchr(s, '.');
	if (dot == NULL) {
		if (config_parse_duration_ms(s, &v) != 0)
			return WM_ERR_PARSE;
	} else {
		/* Seconds with up to three decimals: "0.2", "1.5", "0.25s". */
		uint64_t whole = 0, frac = 0;
		size_t i = 0, digits = 0;
		for (; s[i] >= '0' && s[i] <= '9'; i++) {
			whole = whole * 10 + (uint64_t)(s[i] - '0');
			if (whole > POOL_INTERVAL_MAX_MS)
				return WM_ERR_PARSE;
		}
		if (i == 0 || s + i != dot)
			return WM_ERR_PARSE;
		for (i++; s[i] >= '0' && s[i] <= '9'; i++) {
			if (++digits > 3)
				return WM_ERR_PARSE;
			frac = frac * 10 + (uint64_t)(s[i] - '0');
		}
		if (digits == 0 || (s[i] != '\0' && strcmp(s + i, "s") != 0))
			return WM_ERR_PARSE;
		while (digits++ < 3)
			frac *= 10;
		v = whole * 1000 + frac;
	}
	if (v < POOL_INTERVAL_MIN_MS || v > POOL_INTERVAL_MAX_MS)
		return WM_ERR_PARSE;
	*ms = (uint32_t)v;
	return 0;
}
