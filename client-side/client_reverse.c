/*
 * Reverse forwards (--reverse [SADDR:]SPORT:HOST:PORT): every tunnel that
 * comes up asks the server, on the session, to listen on SADDR:SPORT
 * (LISTEN; asking again is harmless, and a request lost with its tunnel is
 * made once more by the next one); connections
 * made there arrive as streams the server opens, addressed to SADDR:SPORT,
 * and the client connects them to HOST:PORT. The client connects only to
 * targets its own --reverse options name: the server cannot choose.
 */
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "wanmux/connect.h"
#include "wanmux/log.h"

void client_reverse_on_up(struct client_server *srv, struct tunnel *t)
{
	struct client *cl = srv->cl;
	struct session *s = tunnel_session(t);
	srv->listens_unanswered += cl->nreverses;
	for (size_t i = 0; i < cl->nreverses; i++) {
		struct frame f = {.type = FRAME_LISTEN, .stream_id = (uint32_t)i + 1};
		f.u.open = cl->reverses[i].listen_addr;
		session_send_control(s, &f);
	}
}

static bool same_addr(const struct frame_addr *a, const struct frame_addr *b)
{
	if (a->type != b->type || a->port != b->port)
		return false;
	switch (a->type) {
	case FRAME_ADDR_IPV4:
		return memcmp(a->u.ipv4, b->u.ipv4, 4) == 0;
	case FRAME_ADDR_IPV6:
		return memcmp(a->u.ipv6, b->u.ipv6, 16) == 0;
	default:
		return a->name_len == b->name_len && memcmp(a->u.name, b->u.name, a->name_len) == 0;
	}
}

/* The target is fixed by our own --reverse option: nothing more to check. */
static bool permit_own_target(void *arg, const char *name, const struct sockaddr *addr,
			      uint16_t port)
{
	return true;
}

int client_reverse_on_open(struct session *s, struct session_stream *st,
			   const struct frame_addr *target, void *arg)
{
	struct client_server *srv = arg;
	struct client *cl = srv->cl;
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
	for (size_t i = 0; i < cl->nreverses; i++) {
		struct reverse *rv = &cl->reverses[i];
		if (!same_addr(&rv->listen_addr, target))
			continue;
		char who[NETADDR_STR_MAX + 40];
		struct frame_addr dst;
		snprintf(who, sizeof(who), "server (reverse %s:%u)", rv->server_side.host,
			 rv->server_side.port);
		client_frame_addr(&rv->target, &dst);
		char key[KEYS_B64_LEN], client[16];
		keys_encode_public(cl->key->pub, key);
		access_short_key(key, client, sizeof(client));
		struct connect_policy policy = {
		    .permits = permit_own_target,
		    .who = who,
		    .client = client,
		    .src = srv->hp.host,
		};
		return connect_stream(cl->base, cl->dns, st, &dst, &policy);
	}
	log_peer_warn("server opened stream %u for %s, which no --reverse names; refused",
		      session_stream_id(st), client_target_name(target, name, sizeof(name)));
	return FRAME_ERR_NOT_ALLOWED;
}

int client_reverse_on_control(struct session *s, const struct frame *f, void *arg)
{
	struct client_server *srv = arg;
	struct client *cl = srv->cl;
	if (f->type != FRAME_LISTEN_RESULT || f->stream_id == 0 || f->stream_id > cl->nreverses) {
		log_peer_warn("server sent %s for request %u, which this client never made",
			      frame_type_name(f->type), f->stream_id);
		return -1;
	}
	struct reverse *rv = &cl->reverses[f->stream_id - 1];
	/* One answer per LISTEN this tunnel sent: a server that sends more
	 * (each could flip the logged state and write a line) breaks the
	 * protocol. */
	if (srv->listens_unanswered == 0) {
		log_peer_warn("server sent a LISTEN_RESULT for request %u, which this session "
			      "asked already; closing the session",
			      f->stream_id);
		return -1;
	}
	srv->listens_unanswered--;
	/* Every tunnel asks; log only what changes. */
	if (rv->logged && rv->last_error == f->u.error)
		return 0;
	rv->logged = true;
	rv->last_error = f->u.error;
	if (f->u.error == FRAME_ERR_NONE)
		log_info("reverse forward: server listens on %s:%u, connections go to %s:%u",
			 rv->server_side.host, rv->server_side.port, rv->target.host,
			 rv->target.port);
	else
		log_warn("reverse forward %s:%u refused by the server: %s", rv->server_side.host,
			 rv->server_side.port, frame_error_name(f->u.error));
	return 0;
}
