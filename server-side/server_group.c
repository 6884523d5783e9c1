/*
 * Shared reverse listeners (--reverse-group ADDR:PORT=KEY[,KEY...]): the
 * definitions, who may join one, and which member takes a connection. Pure:
 * no events, no sockets; server_reverse.c holds the listeners themselves.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "server.h"
#include "wanmux/err.h"

/* buf: a copy of spec to cut up. */
static int parse(const char *spec, char *buf, struct server_group *g, char *err, size_t errlen)
{
	struct netaddr_hostport hp;
	char why[256];
	socklen_t salen;

	/* ADDR:PORT holds no '='; base64 keys end in one, so cut at the first. */
	char *keys = strchr(buf, '=');
	if (keys == NULL || keys[1] == '\0') {
		wm_set_err(err, errlen, "'%s': expected ADDR:PORT=KEY[,KEY...]", spec);
		return WM_ERR_PARSE;
	}
	*keys++ = '\0';
	if (netaddr_parse_hostport(buf, &hp, why, sizeof(why)) != 0) {
		wm_set_err(err, errlen, "'%s': %s", buf, why);
		return WM_ERR_PARSE;
	}
	/* The LISTEN carries an address, never a name: compare like for like. */
	if (!netaddr_literal(hp.host, hp.port, &g->addr, &salen)) {
		wm_set_err(err, errlen, "'%s' is not an IP address and port", buf);
		return WM_ERR_PARSE;
	}
	netaddr_format((const struct sockaddr *)&g->addr, g->name, sizeof(g->name));
	char *save = NULL;
	for (char *k = strtok_r(keys, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save)) {
		uint8_t pub[KEYS_LEN];
		if (keys_load_public(k, pub, why, sizeof(why)) != 0) {
			wm_set_err(err, errlen, "%s: %s", g->name, why);
			return WM_ERR_PARSE;
		}
		if (server_group_has_key(g, pub))
			continue;
		if (g->nkeys == SERVER_GROUP_MAX_KEYS) {
			wm_set_err(err, errlen, "%s: more than %d keys", g->name,
				   SERVER_GROUP_MAX_KEYS);
			return WM_ERR_PARSE;
		}
		memcpy(g->keys[g->nkeys++], pub, KEYS_LEN);
	}
	if (g->nkeys == 0) {
		wm_set_err(err, errlen, "%s: no key", g->name);
		return WM_ERR_PARSE;
	}
	return 0;
}

int server_group_parse(const char *spec, struct server_group *g, char *err, size_t errlen)
{
	memset(g, 0, sizeof(*g));
	char *buf = strdup(spec);
	if (buf == NULL) {
		wm_set_err(err, errlen, "out of memory");
		return WM_ERR_NOMEM;
	}
	int rc = parse(spec, buf, g, err, errlen);
	free(buf);
	return rc;
}

static bool same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (b->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)b;
		return x->sin_port == y->sin_port &&
		       memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
	}
	if (b->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

const struct server_group *server_group_find(const struct server_group *groups, size_t n,
					     const struct sockaddr *sa)
{
	for (size_t i = 0; i < n; i++)
		if (same_sockaddr(&groups[i].addr, sa))
			return &groups[i];
	return NULL;
}

/* Whether a is the wildcard address of its family (0.0.0.0 or ::). */
static bool wildcard(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (a->sa_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
	return false;
}

static uint16_t port_of(const struct sockaddr *a)
{
	if (a->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_port;
	return ((const struct sockaddr_in6 *)a)->sin6_port;
}

const struct server_group *server_group_overlap(const struct server_group *groups, size_t n,
						const struct sockaddr *sa)
{
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct sockaddr *g = (const struct sockaddr *)&groups[i].addr;
		/* Sockets are IPV6_V6ONLY (netaddr_listen): :: covers no IPv4. */
		if (g->sa_family != sa->sa_family || port_of(g) != port_of(sa))
			continue;
		if (same_sockaddr(&groups[i].addr, sa) || wildcard(g) || wildcard(sa))
			return &groups[i];
	}
	return NULL;
}

bool server_group_has_key(const struct server_group *g, const uint8_t pub[KEYS_LEN])
{
	for (size_t i = 0; i < g->nkeys; i++)
		if (memcmp(g->keys[i], pub, KEYS_LEN) == 0)
			return true;
	return false;
}

size_t server_group_pick(const struct server_group_member *m, size_t n, size_t *cursor, size_t room)
{
	size_t best = SIZE_MAX;
	if (n == 0)
		return SIZE_MAX;
	size_t start = *cursor % n;
	/* Round robin among the members with room; when all are full, the
	 * least queued live one (the first from the cursor on a tie). */
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		if (!m[i].live)
			continue;
		if (m[i].queued < room) {
			best = i;
			break;
		}
		if (best == SIZE_MAX || m[i].queued < m[best].queued)
			best = i;
	}
	if (best != SIZE_MAX)
		*cursor = best + 1;
	return best;
}
