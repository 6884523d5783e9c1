/*
 * What the client shows on its admin interface (common/admin.c serves it):
 * its servers and their tunnel slots, refused sources, and its listeners'
 * limits.
 */
#include <stdio.h>

#include <event2/buffer.h>

#include "client.h"
#include "wanmux/admin.h"
#include "wanmux/limit.h"

void client_admin_collect(struct admin_report *rep, void *arg)
{
	struct client *cl = arg;
	char key[KEYS_B64_LEN];
	size_t busiest = 0;

	keys_encode_public(cl->key->pub, key);
	/* /status "servers": one row per --server entry, in order. */
	struct evbuffer *json = evbuffer_new();
	uint64_t now = limit_now_ms();
	if (json != NULL)
		evbuffer_add(json, "[", 1);
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
		bool active = cl->policy == CLIENT_POLICY_SPREAD
				  ? srv->state == SERVER_UP && !srv->silent
				  : cl->current == srv;
		size_t tunnels_up = client_server_tunnels_up(srv);
		size_t streams = client_server_streams(srv);
		if (json != NULL) {
			evbuffer_add_printf(json, "%s{\"server\":", k > 0 ? "," : "");
			admin_json_string(json, srv->name);
			evbuffer_add_printf(
			    json, ",\"order\":%u,\"state\":\"%s\",\"why\":", srv->no,
			    srv->silent ? "unresponsive" : client_server_state_name(srv->state));
			admin_json_string(json, srv->state == SERVER_DOWN ? srv->why : "");
			evbuffer_add_printf(
			    json,
			    ",\"active\":%s,\"tunnels_up\":%zu,\"streams\":%zu,"
			    "\"streams_total\":%llu,\"downs\":%llu,\"state_age_ms\":%llu}",
			    active ? "true" : "false", tunnels_up, streams,
			    (unsigned long long)srv->streams_opened, (unsigned long long)srv->downs,
			    (unsigned long long)(now > srv->since_ms ? now - srv->since_ms : 0));
		}
		admin_metric(
		    rep, ADMIN_GAUGE, "client_server_up",
		    "1 while a tunnel to the server (--server) is up and it answers PINGs.",
		    srv->state == SERVER_UP && !srv->silent ? 1 : 0, "server", srv->name, NULL,
		    NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_active",
			     "1 for the server new streams go to (failover), or every server up "
			     "(spread).",
			     active ? 1 : 0, "server", srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_tunnels",
			     "Tunnels to the server that are up.", (double)tunnels_up, "server",
			     srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "client_server_streams",
			     "Streams open on the server's sessions.", (double)streams, "server",
			     srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "client_server_streams_total",
			     "Streams opened on the server.", (double)srv->streams_opened, "server",
			     srv->name, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "client_server_downs_total",
			     "Times the server was marked down.", (double)srv->downs, "server",
			     srv->name, NULL, NULL);
	}
	if (json != NULL) {
		evbuffer_add(json, "]", 1);
		admin_status_section(rep, "servers", json);
		evbuffer_free(json);
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
