/*
 * Target pools (wanmux-server --pool): a virtual target VHOST:PORT served by
 * a list of backends. The pure part: parsing a definition, choosing a
 * backend (round robin, least connections, consistent hash of the client
 * key; weights; backups) and the rise/fall health state machine. Sockets,
 * timers and retries live in the server (server-side/server_pool.c).
 */
#ifndef WANMUX_POOL_H
#define WANMUX_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/netaddr.h"

#define POOL_MAX 64	     /* --pool definitions */
#define POOL_BACKENDS_MAX 32 /* backends in one pool */
#define POOL_WEIGHT_MAX 256  /* as HAProxy's */
#define POOL_WEIGHT_DEFAULT 1
/* Backends one stream tries before its OPEN is refused (HAProxy's
 * "retries 3"): a stream never waits on more than this many connects. */
#define POOL_ATTEMPTS_MAX 4
#define POOL_INTERVAL_DEFAULT_MS 2000
#define POOL_INTERVAL_MIN_MS 100
#define POOL_INTERVAL_MAX_MS 3600000
#define POOL_RISE_DEFAULT 2
#define POOL_FALL_DEFAULT 3
#define POOL_RISE_FALL_MAX 100
/* --pool-connect-timeout: a stream's try of one backend (HAProxy's
 * "timeout connect" as commonly set), then the next backend. */
#define POOL_CONNECT_TIMEOUT_DEFAULT_MS 5000
/* A check that has not connected within min(interval, this) failed. */
#define POOL_CHECK_TIMEOUT_MAX_MS 5000

enum pool_policy {
	POOL_ROUNDROBIN,
	POOL_LEASTCONN,
	POOL_SOURCE,
};

/* "roundrobin", "leastconn", "source"; "?" out of range. */
const char *pool_policy_name(enum pool_policy p);

/* The policy named s. 0 or WM_ERR_PARSE. */
int pool_policy_parse(const char *s, enum pool_policy *out);

/*
 * A backend's health: UP takes streams, DOWN does not. UP goes DOWN after
 * `fall` failed checks in a row or at once when a stream's connect fails;
 * DOWN goes UP after `rise` good checks in a row. Draining is separate: an
 * operator's flag, whatever the health.
 */
enum pool_health {
	POOL_UP,
	POOL_DOWN,
};

/* "up", "down"; "?" out of range. */
const char *pool_health_name(enum pool_health h);

/*
 * One backend. Reference counted: a pool holds one, and so does each stream
 * or health check using it, so a reload that drops the backend never leaves
 * them a freed one. The counters are the server's to update.
 */
struct pool_backend {
	struct netaddr_hostport addr;
	char name[NETADDR_STR_MAX]; /* "host:port", "[v6]:port": its identity */
	unsigned weight;	    /* 1..POOL_WEIGHT_MAX */
	bool backup;		    /* used only when no other backend is usable */
	bool drain;		    /* no new streams; those running stay */
	bool admin_drain;	    /* the same, set on the admin port; a reload keeps it */
	enum pool_health health;
	unsigned streak;  /* checks in a row that disagree with health */
	int64_t current;  /* smooth weighted round robin */
	uint64_t active;  /* streams connecting or connected to it */
	uint64_t total;	  /* streams sent to it */
	uint64_t failed;  /* stream connects that failed */
	uint64_t retries; /* of those, streams then tried on another backend */
	uint64_t checks_ok, checks_failed;
	uint64_t changes; /* health transitions */
	bool checked;	  /* at least one check finished */
	bool last_check_ok;
	bool checking; /* a check is in flight (the checker's flag) */
	unsigned refs;
};

/* Takes one more reference to b. */
void pool_backend_hold(struct pool_backend *b);

/* Drops a reference; frees b at the last one. NULL is a no-op. */
void pool_backend_release(struct pool_backend *b);

/* Whether b may get new streams: up and not drained (drain or
 * admin_drain). */
bool pool_backend_usable(const struct pool_backend *b);

/* b's state for /status: "drain" when draining, else its health. */
const char *pool_backend_state_name(const struct pool_backend *b);

/*
 * A finished health check of b: ok or not. Moves b through the rise/fall
 * machine (see enum pool_health). Returns true when b's health changed.
 */
bool pool_backend_check(struct pool_backend *b, bool ok, unsigned rise, unsigned fall);

/* A stream's connect to b failed: b is DOWN at once (passive check).
 * Returns true when b's health changed. */
bool pool_backend_connect_failed(struct pool_backend *b);

struct pool;

/* What a pool's streams did, kept across reloads (pool_adopt). */
struct pool_counters {
	uint64_t streams; /* streams that asked for the virtual target */
	uint64_t refused; /* ... and found no backend up (or none left to try) */
	uint64_t retries; /* connects tried again on another backend */
};

/* p's counters, the server's to update. */
struct pool_counters *pool_get_counters(struct pool *p);

/*
 * Parses "VHOST:PORT=BACKEND[,BACKEND...]", BACKEND "HOST:PORT" followed by
 * any of "/weight=N", "/backup", "/drain". Hosts are names or addresses,
 * IPv6 in brackets. Names are kept lower case and addresses in their
 * canonical form. The policy starts as def. Returns the pool (one
 * reference, the caller's), or NULL with one line in err.
 */
struct pool *pool_parse(const char *spec, enum pool_policy def, char *err, size_t errlen);

/* Takes one more reference to p. */
void pool_hold(struct pool *p);

/* Drops a reference; frees p (and drops its backends) at the last one.
 * NULL is a no-op. */
void pool_free(struct pool *p);

/* "VHOST:PORT" ("[v6]:PORT" for an IPv6 address). */
const char *pool_name(const struct pool *p);

/* The virtual host (lower case or canonical address) and port. */
const char *pool_vhost(const struct pool *p);
uint16_t pool_vport(const struct pool *p);

/* Whether p is the virtual target host:port (host a name, compared
 * without case, or an address in text form). */
bool pool_matches(const struct pool *p, const char *host, uint16_t port);

enum pool_policy pool_get_policy(const struct pool *p);
void pool_set_policy(struct pool *p, enum pool_policy policy);

size_t pool_backend_count(const struct pool *p);

/* Backend i (borrowed: hold it to keep it past p). */
struct pool_backend *pool_backend_at(const struct pool *p, size_t i);

/*
 * A reload built next while prev runs: every backend of next that prev has
 * too (same name) becomes prev's object, keeping its health and counters,
 * and takes next's weight, backup and drain. Backends new in next start up.
 * next also takes prev's counters.
 */
void pool_adopt(struct pool *next, const struct pool *prev);

/*
 * Chooses a backend for a new stream under p's policy; key (the client's
 * key, for POOL_SOURCE) may be NULL for the other policies. Backends whose
 * bit is set in skip (bit i: backend i) are left out, as are backends that
 * are not usable; backups only when no other backend is usable. Moves the
 * policy's state (round robin position). Returns the backend's index, or
 * -1 when none is usable.
 */
int pool_pick(struct pool *p, const uint8_t *key, size_t keylen, uint64_t skip);

/* Parses a health check interval: seconds with an optional fraction ("2",
 * "0.2") or a duration ("500ms", "2s"). 0 or WM_ERR_PARSE (also outside
 * POOL_INTERVAL_MIN_MS..POOL_INTERVAL_MAX_MS). */
int pool_parse_interval(const char *s, uint32_t *ms);

#endif
