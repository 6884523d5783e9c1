/*
 * HTTP proxy front end: CONNECT host:port (answered 200 once the server has
 * connected, then raw bytes), and absolute-form requests (GET http://host/)
 * forwarded in origin-form with "Connection: close". Errors in HTTP: 400
 * malformed, 407 authentication (--http-auth), 429 too many failed logins
 * from this source, 403 not allowed by the server, 502 unreachable, 504
 * timed out, 431 head too large.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/authlimit.h"
#include "wanmux/err.h"
#include "wanmux/httpproxy.h"
#include "wanmux/log.h"
#include "wanmux/userpass.h"

enum http_state {
	HTTP_HEAD,
	HTTP_WAIT_OPEN,
	HTTP_RELAYING,
};

struct http_conn {
	struct listener *l;
	struct relay *r;
	enum http_state state;
	enum http_kind kind;
	struct http_head_scan scan; /* a slow head is examined once, not per read */
	struct frame_addr target;
	struct sockaddr_storage source; /* for the failed-login throttle */
	struct client_request *req;	/* its source's share, until the request is read */
	char method[16];
	char peer[NETADDR_STR_MAX];
};

static void respond(struct http_conn *c, int status, const char *extra, bool close_after)
{
	char out[512];
	size_t n = http_format_response(out, sizeof(out), status, extra);
	relay_write_local(c->r, out, n);
	if (close_after)
		relay_close_after_flush(c->r);
}

static void on_read(struct relay *r, struct evbuffer *in, void *arg)
{
	struct http_conn *c = arg;
	static uint8_t rewritten[HTTP_REWRITE_MAX];
	struct http_request req;
	size_t rlen = 0;
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];

	if (c->state != HTTP_HEAD)
		return;
	size_t avail = evbuffer_get_length(in);
	size_t want = avail < HTTP_HEAD_MAX + 1 ? avail : HTTP_HEAD_MAX + 1;
	const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)want);
	int rc = http_scan_head(&c->scan, p, want);
	if (rc == WM_OK)
		rc = http_parse_request(p, want, &req, rewritten, sizeof(rewritten), &rlen);
	if (rc == WM_ERR_AGAIN)
		return;
	if (rc == WM_ERR_RANGE) {
		log_peer_warn("http %s: request head too large; answered 431", c->peer);
		respond(c, 431, NULL, true);
		return;
	}
	if (rc != WM_OK) {
		log_peer_warn("http %s: malformed request; answered 400", c->peer);
		respond(c, 400, NULL, true);
		return;
	}
	struct userpass *auth = c->l->cl->http_auth;
	if (auth != NULL) {
		enum client_auth res = CLIENT_AUTH_FAILED;
		if (req.has_auth)
			res = client_auth_login(c->l->cl, auth, (struct sockaddr *)&c->source,
						c->peer, req.user, req.pass);
		if (res == CLIENT_AUTH_THROTTLED) {
			char retry[40];
			snprintf(retry, sizeof(retry), "Retry-After: %u\r\n",
				 AUTHLIMIT_PENALTY_MS / 1000);
			sodium_memzero(req.pass, sizeof(req.pass));
			respond(c, 429, retry, true);
			return;
		}
		if (res != CLIENT_AUTH_OK) {
			if (req.has_auth)
				log_peer_warn(
				    "http %s: authentication failed for user '%s'; answered 407",
				    c->peer, req.user);
			else
				log_peer_info("http %s: no proxy credentials; answered 407",
					      c->peer);
			sodium_memzero(req.pass, sizeof(req.pass));
			respond(c, 407, "Proxy-Authenticate: Basic realm=\"wanmux\"\r\n", true);
			return;
		}
	}
	sodium_memzero(req.pass, sizeof(req.pass));
	evbuffer_drain(in, req.head_len);
	c->kind = req.kind;
	c->target = req.target;
	snprintf(c->method, sizeof(c->method), "%s", req.method);
	if (req.kind == HTTP_KIND_ABSOLUTE) {
		/* The origin-form head is the stream's first data, sent with OPEN;
		 * a body that followed the head stays behind it. */
		if (evbuffer_prepend(in, rewritten, rlen) != 0) {
			respond(c, 502, NULL, true);
			return;
		}
	}
	log_debug("http %s: %s %s", c->peer, c->method,
		  client_target_name(&c->target, name, sizeof(name)));
	c->state = HTTP_WAIT_OPEN;
	relay_clear_deadline(r);
	client_request_done(c->req);
	client_open(c->l->cl, r, &c->target);
}

static void on_open_result(struct relay *r, void *arg)
{
	struct http_conn *c = arg;
	c->state = HTTP_RELAYING;
	/* Absolute-form: the origin's response is the answer. */
	if (c->kind == HTTP_KIND_CONNECT)
		respond(c, 200, NULL, false);
}

static bool on_open_failed(struct relay *r, uint32_t error, void *arg)
{
	struct http_conn *c = arg;
	char name[NETADDR_STR_MAX + FRAME_NAME_MAX];
	if (c->state != HTTP_WAIT_OPEN)
		return false;
	int status = http_status_for_error(error);
	log_peer_warn("http %s: %s %s failed: %s; answered %d", c->peer, c->method,
		      client_target_name(&c->target, name, sizeof(name)), frame_error_name(error),
		      status);
	/* Bytes of the request still queued must not follow the answer. */
	evbuffer_drain(relay_source(r), evbuffer_get_length(relay_source(r)));
	respond(c, status, NULL, false);
	return true;
}

static void on_deadline(struct relay *r, void *arg)
{
	struct http_conn *c = arg;
	log_peer_warn("http %s: no complete request head within %u ms; closing", c->peer,
		      CLIENT_REQUEST_DEADLINE_MS);
	relay_close(r, false);
}

void client_http_accept(struct listener *l, int fd, const char *peer)
{
	struct http_conn *c = calloc(1, sizeof(*c));
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
