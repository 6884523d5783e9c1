/*
 * What the server shows on its admin interface (common/admin.c serves it):
 * its authenticated tunnels, refusals by reason, and its own limits.
 */
#include <stdio.h>
#include <string.h>

#include "server.h"
#include "wanmux/access.h"
#include "wanmux/admin.h"
#include "wanmux/session.h"

void server_admin_collect(struct admin_report *rep, void *arg)
{
	struct server *srv = arg;
	struct server_tunnel *stn;
	size_t busiest = 0;

	LIST_FOREACH(stn, &srv->tunnels, link)
	{
		if (!stn->up)
			continue;
		char label[48];
		access_short_key(stn->client, label, sizeof(label));
		size_t n = strlen(label);
		snprintf(label + n, sizeof(label) - n, "/%u", stn->tunnel_no);
		admin_tunnel(rep, label, stn->client, stn->t);
		struct session *s = tunnel_session(stn->t);
		if (s != NULL && session_stream_count(s) > busiest)
			busiest = session_stream_count(s);
	}
	admin_tunnels_connecting(rep, srv->unauth);
	server_pool_report(rep, srv);

	static const char r_help[] = "Refusals by reason: target (no --allow rule), tunnel "
				     "(unknown key or replay), listen (no --allow-listen rule).";
	admin_metric(rep, ADMIN_COUNTER, "refusals_total", r_help, (double)srv->refused_targets,
		     "reason", "target", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "refusals_total", r_help, (double)srv->refused_tunnels,
		     "reason", "tunnel", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "refusals_total", r_help, (double)srv->refused_listens,
		     "reason", "listen", NULL, NULL);
	static const char lh_help[] = "Times a limit was hit, by limit.";
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help,
		     (double)srv->limits.unauth.hits, "limit", "max_unauth", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help,
		     (double)srv->limits.handshakes.hits, "limit", "handshake_rate", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help,
		     (double)srv->limits.opens.hits, "limit", "open_rate", NULL, NULL);
	const struct server_reverse_limits *rv = &srv->reverse;
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->taken.hits,
		     "limit", "reverse_held_by_other_key", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->full.hits,
		     "limit", "reverse_max_connections", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->no_tunnel.hits,
		     "limit", "reverse_no_tunnel", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->timeouts.hits,
		     "limit", "reverse_open_timeout", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->not_member.hits,
		     "limit", "reverse_group_not_member", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)rv->group_full.hits,
		     "limit", "reverse_group_sessions_per_key", NULL, NULL);
	server_reverse_report(srv, rep);
	uint64_t accept_failures = 0;
	for (size_t i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i] != NULL)
			accept_failures += acceptor_failures(srv->listeners[i]);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)accept_failures,
		     "limit", "accept_backoff", NULL, NULL);

	admin_limit(rep, "connections in their handshake", "--max-unauth", (double)srv->unauth,
		    (double)srv->limits.max_unauth);
	admin_limit(rep, "streams on the busiest tunnel", "--max-streams", (double)busiest,
		    (double)srv->tcfg.params.max_streams);
}
