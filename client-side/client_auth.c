/*
 * Proxy logins for the SOCKS5 and HTTP front ends: one place that checks a
 * user and password against a credentials file and throttles failures per
 * source (authlimit.h), with the throttled refusal log.
 */
#include <stdio.h>

#include "client.h"
#include "wanmux/authlimit.h"
#include "wanmux/log.h"
#include "wanmux/userpass.h"

enum client_auth client_auth_login(struct client *cl, struct userpass *db,
				   const struct sockaddr *src, const char *peer, const char *user,
				   const char *pass)
{
	uint64_t now = limit_now_ms();

	/* Refused before the credentials are looked at: no Argon2id work, and a
	 * right password guessed during the penalty is worth nothing. */
	if (!authlimit_allowed(cl->auth_limit, src, now)) {
		limit_hit(&cl->auth_refused, peer);
		return CLIENT_AUTH_THROTTLED;
	}
	/* Argon2id blocks the loop for tens of milliseconds: ration it across
	 * all sources, so that many guessers at once cannot stall every stream.
	 * Logins with a remembered password and plain entries do not need it. */
	if (userpass_check_is_slow(db, user, pass) &&
	    !limit_take(&cl->auth_verify_budget, CLIENT_AUTH_VERIFY_RATE, CLIENT_AUTH_VERIFY_BURST,
			now)) {
		limit_hit(&cl->auth_busy, peer);
		return CLIENT_AUTH_THROTTLED;
	}
	if (userpass_check(db, user, pass))
		return CLIENT_AUTH_OK;
	if (authlimit_failed(cl->auth_limit, src, now)) {
		char detail[NETADDR_STR_MAX + 64];

		snprintf(detail, sizeof(detail), "%s refused for %u s", peer,
			 AUTHLIMIT_PENALTY_MS / 1000);
		limit_hit(&cl->auth_blocked, detail);
	}
	return CLIENT_AUTH_FAILED;
}
