/*
 * What the client shows on its admin interface (common/admin.c serves it):
 * its tunnel slots, refused sources, and its listeners' limits.
 */
#include <stdio.h>

#include "client.h"
#include "wanmux/admin.h"

void client_admin_collect(struct admin_report *rep, void *arg)
{
	struct client *cl = arg;
	char key[KEYS_B64_LEN];
	size_t busiest = 0;

	keys_encode_public(cl->key->pub, key);
	for (size_t k = 0; k < cl->nservers; k++) {
		const struct client_server *srv = &cl->servers[k];
		for (unsigned i = 0; i < cl->nslots; i++) {
			const struct slot *sl = &srv->slots[i];
			if (sl->t == NULL)
				continue;
			/* One server: "3" as before; several: "server/slot". */
			char label[48];
			if (cl->nservers == 1)
				snprintf(label, sizeof(label), "%u", sl->no);
			else
				snprintf(label, sizeof(label), "%zu/%u", k, sl->no);
			admin_tunnel(rep, label, key, sl->t);
		}
		struct admin_server row;
		snprintf(row.name, sizeof(row.name), "%s", srv->name);
		snprintf(row.state, sizeof(row.state), "%s",
			 srv->silent ? "unresponsive" : client_server_state_name(srv->state));
		snprintf(row.why, sizeof(row.why), "%s", srv->state == SERVER_DOWN ? srv->why : "");
		row.order = srv->no;
		row.active = cl->policy == CLIENT_POLICY_SPREAD
				 ? srv->state == SERVER_UP && !srv->silent
				 : cl->current == srv;
		row.tunnels_up = client_server_tunnels_up(srv);
		row.streams = client_server_streams(srv);
		row.streams_opened = srv->streams_opened;
		row.downs = srv->downs;
		row.since_ms = srv->since_ms;
		admin_server(rep, &row);
		admin_metric(
		    rep, ADMIN_GAUGE, "client_server_up",
		    "1 while a tunnel to the server (--server) is up and it answers PINGs.",
		    srv->state == SERVER_UP && !srv->silent ? 1 : 0, "server", srv->name, NULL,
		    NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_active",
			     "1 for the server new streams go to (failover), or every server up "
			     "(spread).",
			     row.active ? 1 : 0, "server", srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_tunnels",
			     "Tunnels to the server that are up.", (double)row.tunnels_up, "server",
			     srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_streams",
			     "Streams open on the server's sessions.", (double)row.streams,
			     "server", srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "client_server_streams_total",
			     "Streams opened on the server.", (double)srv->streams_opened, "server",
			     srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "client_server_downs_total",
			     "Times the server was marked down.", (double)srv->downs, "server",
			     srv->name, NULL, NULL);
	}
	admin_metric(rep, ADMIN_COUNTER, "client_server_failovers_total",
		     "Times new streams moved to a later server because an earlier one was lost.",
		     (double)cl->failovers, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "client_server_failbacks_total",
		     "Times new streams went back to an earlier server that was up again.",
		     (double)cl->failbacks, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_GAUGE, "tunnels_configured",
		     "Tunnels the client keeps open per server (--tunnels).", cl->nslots, NULL,
		     NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "refusals_total",
		     "Refusals by reason: source (outside --source-allow or in --source-deny).",
		     (double)cl->refused_sources, "reason", "source", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", "Times a limit was hit, by limit.",
		     (double)cl->connections_limit.hits, "limit", "max_connections", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", "Times a limit was hit, by limit.",
		     (double)cl->requesting_limit.hits, "limit", "source_share", NULL, NULL);
	uint64_t accept_failures = 0;
	for (size_t i = 0; i < cl->nlisteners; i++)
		if (cl->listeners[i]->acc != NULL)
			accept_failures += acceptor_failures(cl->listeners[i]->acc);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", "Times a limit was hit, by limit.",
		     (double)accept_failures, "limit", "accept_backoff", NULL, NULL);
	for (size_t i = 0; i < cl->nlisteners; i++) {
		if (cl->listeners[i]->active > busiest)
			busiest = cl->listeners[i]->active;
	}
	admin_limit(rep, "connections on the busiest listener", "--max-connections",
		    (double)busiest, (double)cl->max_connections);
	admin_metric(rep, ADMIN_GAUGE, "connections_waiting",
		     "Local connections waiting for a tunnel to come up.", (double)cl->npending,
		     NULL, NULL, NULL, NULL);
}
