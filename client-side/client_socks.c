/*
 * SOCKS5 front end (RFC 1928, with RFC 1929 username/password when
 * --socks-auth is given): greeting, optional authentication, CONNECT. Names
 * are resolved by the server (datacenter DNS). The reply waits for the
 * server's OPEN_RESULT, so the client learns the real outcome: not allowed,
 * host unknown, refused, unreachable or timed out.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/socks5.h"
#include "wanmux/userpass.h"

enum socks_state {
	SOCKS_GREETING,
	SOCKS_AUTH,
	SOCKS_REQUEST,
	SOCKS_WAIT_OPEN,
	SOCKS_RELAYING,
};

struct socks_conn {
	struct listener *l;
	struct relay *r;
	enum socks_state state;
	struct frame_addr target;
	struct sockaddr_storage source; /* for the failed-login throttle */
	struct client_request *req;	/* its source's share, until the request is read */
	char peer[NETADDR_STR_MAX];
};

static const char *socks_state_name(enum socks_state s)
{
	switch (s) {
	case SOCKS_GREETING:
		return "greeting";
	case SOCKS_AUTH:
		return "authentication";
	case SOCKS_REQUEST:
		return "request";
	case SOCKS_WAIT_OPEN:
		return "waiting for the server";
	case SOCKS_RELAYING:
		return "relaying";
	}
	return "?";
}

static void reply_and_close(struct socks_conn *c, const uint8_t *msg, size_t len)
{
	relay_write_local(c->r, msg, len);
	relay_close_after_flush(c->r);
}

static void fail_request(struct socks_conn *c, uint8_t rep, const char *why)
{
	uint8_t out[SOCKS5_REPLY_MAX];
	log_peer_warn("socks %s: %s", c->peer, why);
	reply_and_close(c, out, socks5_format_reply(out, rep, NULL));
}

/* One step of the handshake; returns false when it needs more bytes or
 * ended the connection. */
static bool step(struct socks_conn *c, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);
	/* Every SOCKS message fits in 2 + 255 + 255 + 1 bytes; never pull more. */
	size_t want = avail < 600 ? avail : 600;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
	uint8_t out[SOCKS5_REPLY_MAX];
	size_t used = 0;
	int rc;

	if (want == 0)
		return false;
	switch (c->state) {
	case SOCKS_GREETING: {
		bool none = false, userpass = false;
		rc = socks5_parse_greeting(p, want, &used, &none, &userpass);
		if (rc == WM_ERR_AGAIN)
			return false;
		if (rc != WM_OK) {
			log_peer_warn("socks %s: not a SOCKS5 greeting; closing", c->peer);
			relay_close(c->r, false);
			return false;
		}
		evbuffer_drain(in, used);
		bool need_auth = c->l->cl->socks_auth != NULL;
		if (need_auth ? !userpass : !none) {
			log_peer_warn(
			    "socks %s: no acceptable authentication method offered (%s needed)",
			    c->peer, need_auth ? "username/password" : "none");
			reply_and_close(c, out,
					socks5_format_method(out, SOCKS5_METHOD_UNACCEPTABLE));
			return false;
		}
		relay_write_local(c->r, out,
				  socks5_format_method(out, need_auth ? SOCKS5_METHOD_USERPASS
								      : SOCKS5_METHOD_NONE));
		c->state = need_auth ? SOCKS_AUTH : SOCKS_REQUEST;
		return true;
	}
	case SOCKS_AUTH: {
		char user[256], pass[256];
		rc = socks5_parse_userpass(p, want, &used, user, pass);
		if (rc == WM_ERR_AGAIN) {
			sodium_memzero(pass, sizeof(pass));
			return false;
		}
		enum client_auth res = CLIENT_AUTH_FAILED;
		if (rc == WM_OK)
			res = client_auth_login(c->l->cl, c->l->cl->socks_auth,
						(struct sockaddr *)&c->source, c->peer, user, pass);
		sodium_memzero(pass, sizeof(pass));
		if (res != CLIENT_AUTH_OK) {
			if (rc != WM_OK)
				log_peer_warn("socks %s: malformed authentication request",
					      c->peer);
			else if (res == CLIENT_AUTH_FAILED)
				log_peer_warn("socks %s: authentication failed for user '%s'",
					      c->peer, user);
			reply_and_close(c, out, socks5_format_userpass_status(out, false));
			return false;
		}
		evbuffer_drain(in, used);
		relay_write_local(c->r, out, socks5_format_userpass_status(out, true));
		c->state = SOCKS_REQUEST;
		return true;
	}
	case SOCKS_REQUEST: {
		struct socks5_request req;
		rc = socks5_parse_request(p, want, &used, &req);
		if (rc == WM_ERR_AGAIN)
			return false;
		if (rc == WM_ERR_RANGE) {
			fail_request(c, SOCKS5_REP_ADDRTYPE_UNSUPPORTED,
				     "address type not supported");
			return false;
		}
		if (rc != WM_OK) {
			fail_request(c, SOCKS5_REP_GENERAL_FAILURE, "malformed request; closing");
			return false;
		}
		if (req.cmd != SOCKS5_CMD_CONNECT) {
			fail_request(c, SOCKS5_REP_COMMAND_UNSUPPORTED,
				     req.cmd == SOCKS5_CMD_BIND ? "BIND is not supported"
				     : req.cmd == SOCKS5_CMD_UDP_ASSOCIATE
					 ? "UDP ASSOCIATE is not supported"
					 : "unknown command");
			return false;
		}
		evbuffer_drain(in, used);
		c->target = req.target;
		c->state = SOCKS_WAIT_OPEN;
		relay_clear_deadline(c->r);
		client_request_done(c->req);
		client_open(c->l->cl, c->r, &c->target);
		return false;
	}
	case SOCKS_WAIT_OPEN:
	case SOCKS_RELAYING:
		return false;
	}
	return false;
}

static void on_read(struct relay *r, struct evbuffer *in, void *arg)
{
	struct socks_conn *c = arg;
	while (c->state < SOCKS_WAIT_OPEN && step(c, in))
		;
}

static void on_open_result(struct relay *r, void *arg)
{
	struct socks_conn *c = arg;
	uint8_t out[SOCKS5_REPLY_MAX];
	c->state = SOCKS_RELAYING;
	relay_write_local(r, out, socks5_format_reply(out, SOCKS5_REP_SUCCEEDED, NULL));
}

static bool on_open_failed(struct relay *r, uint32_t error, void *arg)
{
	struct socks_conn *c = arg;
	uint8_t out[SOCKS5_REPLY_MAX];
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
	if (c->state != SOCKS_WAIT_OPEN)
		return false;
	log_peer_warn("socks %s: CONNECT %s failed: %s", c->peer,
		      client_target_name(&c->target, name, sizeof(name)), frame_error_name(error));
	relay_write_local(r, out, socks5_format_reply(out, socks5_rep_for_error(error), NULL));
	return true;
}

static void on_deadline(struct relay *r, void *arg)
{
	struct socks_conn *c = arg;
	log_peer_warn("socks %s: no complete request within %u ms (stuck in %s); closing", c->peer,
		      CLIENT_REQUEST_DEADLINE_MS, socks_state_name(c->state));
	relay_close(r, false);
}

void client_socks_accept(struct listener *l, int fd, const char *peer)
{
	struct socks_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return;
	}
	c->l = l;
	socklen_t slen = sizeof(c->source);
	if (getpeername(fd, (struct sockaddr *)&c->source, &slen) != 0)
		c->source.ss_family = AF_UNSPEC; /* not throttled: no address to count */
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	struct relay_frontend fe = {
	    .on_read = on_read,
	    .on_open_result = on_open_result,
	    .on_open_failed = on_open_failed,
	    .on_deadline = on_deadline,
	    .arg = c,
	};
	/* c is freed with the relay (or at once, when there is none). */
	struct relay *r =
	    client_frontend_start(l, fd, peer, (struct sockaddr *)&c->source, &fe, &c->req);
	if (r != NULL)
		c->r = r;
}
