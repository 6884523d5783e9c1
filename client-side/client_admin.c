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
	for (unsigned i = 0; i < cl->nslots; i++) {
		const struct slot *sl = &cl->slots[i];
		if (sl->t == NULL)
			continue;
		char label[8];
		snprintf(label, sizeof(label), "%u", sl->no);
		admin_tunnel(rep, label, key, sl->t);
	}
	admin_metric(rep, ADMIN_GAUGE, "tunnels_configured",
		     "Tunnels the client keeps open (--tunnels).", cl->nslots, NULL, NULL, NULL,
		     NULL);
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
