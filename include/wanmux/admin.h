/*
 * The admin interface both daemons serve with --admin [ADDR:]PORT (libevent
 * evhttp): /metrics in the Prometheus text format, /status as JSON, and /
 * the status page (admin_page.html, embedded at build time). On each request
 * the daemon's collect callback fills a report (its tunnels, limits and
 * counters); what every daemon has (streams, access records, handshake and
 * buffer counters) is added here. Sources outside --admin-allow get 403.
 * The encoders (Prometheus text, JSON) are pure and unit tested.
 */
#ifndef WANMUX_ADMIN_H
#define WANMUX_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wanmux/access.h"
#include "wanmux/netaddr.h"
#include "wanmux/tunnel.h"

struct acl;
struct admin;
struct admin_report;
struct event_base;
struct evbuffer;

/* Which daemon: the client sends up, the server sends down. */
enum admin_role {
	ADMIN_CLIENT,
	ADMIN_SERVER,
};

enum admin_type {
	ADMIN_COUNTER,
	ADMIN_GAUGE,
};

struct admin_options {
	bool enabled;
	struct netaddr_hostport bind; /* default host 127.0.0.1 */
	struct acl *allow;	      /* CIDRs allowed in; NULL: loopback only. Owned. */
};

/* Who may use the admin port: allow's CIDRs, or with none loopback only. */
bool admin_source_allowed(const struct acl *allow, const struct sockaddr *sa);

/*
 * Serves opt (the allow list is taken over) on base. collect(rep, arg) runs
 * for every request. NULL with a one-line reason in err (address in use).
 */
struct admin *admin_start(struct event_base *base, struct admin_options *opt, enum admin_role role,
			  const char *prog, void (*collect)(struct admin_report *rep, void *arg),
			  void *arg, char *err, size_t errlen);

/* Stops serving and frees a. NULL is a no-op. */
void admin_free(struct admin *a);

/*
 * Turns on admin actions: a POST to any path goes to action(path, query,
 * reply, arg) (query: the text after '?', "" for none), which writes a
 * one-line answer into reply and returns the HTTP status (200, 400, 404).
 * Only sources --admin-allow lets in may POST, and only with the header
 * "X-Wanmux-Action: 1" and a Host that is an address or localhost: a web
 * page cannot send that header across origins without a preflight (which
 * is refused) nor through a rebound DNS name. Actions refused for a missing
 * header or a bad Host are answered 403 and counted in admin_denied.
 */
void admin_set_action(struct admin *a,
		      int (*action)(const char *path, const char *query, struct evbuffer *reply,
				    void *arg),
		      void *arg);

/* Requests refused with 403 so far. */
uint64_t admin_denied(const struct admin *a);

/* One tunnel row of a report (/status and the per-tunnel metrics). */
struct admin_tunnel {
	char label[48];			/* stable per-tunnel label value: "3", "KEY8/0" */
	char client[KEYS_B64_LEN + 64]; /* key (comment), for /status */
	char peer[NETADDR_STR_MAX];
	char session[17]; /* the session id's first 8 bytes in hex */
	struct tunnel_tcp_info info;
	uint64_t raw_sent, raw_received;	 /* application bytes */
	uint64_t payload_sent, payload_received; /* after compression */
	uint64_t wire_sent, wire_received;	 /* records on the wire */
	uint64_t placed_data;			 /* DATA payload this tunnel carried */
	size_t streams;				 /* of its session, on the session's first tunnel */
};

/* An empty report for role; NULL when out of memory. */
struct admin_report *admin_report_new(enum admin_role role, const char *prog);
void admin_report_free(struct admin_report *rep);

/*
 * A sample of metric name (without the wanmux_ prefix) with up to two
 * labels (k1/k2 NULL for none). Samples of one name are grouped under one
 * HELP/TYPE however they are added; the first help and type given win.
 */
void admin_metric(struct admin_report *rep, enum admin_type type, const char *name,
		  const char *help, double value, const char *k1, const char *v1, const char *k2,
		  const char *v2);

/* A tunnel row, copied. */
void admin_tunnel_row(struct admin_report *rep, const struct admin_tunnel *row);

/* A row for tunnel t (TCP_INFO, session and record counters). */
void admin_tunnel(struct admin_report *rep, const char *label, const char *client,
		  const struct tunnel *t);

/* n more tunnels in their handshake that have no row (the server's
 * unauthenticated connections). */
void admin_tunnels_connecting(struct admin_report *rep, size_t n);

/*
 * Adds "key": the text of json (one complete JSON value the caller built,
 * e.g. with admin_json_string) to /status, copied; json is left as it was.
 * At most 8 per report (more are dropped); keys must differ from the
 * built-in ones.
 */
void admin_status_section(struct admin_report *rep, const char *key, struct evbuffer *json);

/* A limit and its current use (max 0: none), for /status and metrics. */
void admin_limit(struct admin_report *rep, const char *name, const char *option, double used,
		 double max);

/* Bytes of tunnels already closed: call from on_down. */
void admin_tunnel_closed(const struct tunnel *t);

/* A session ended: its byte counts join the totals of closed ones. */
struct session_stats;
void admin_session_closed(const struct session_stats *ss);

/* Adds what every daemon has: open streams and their records, closed
 * tunnels' bytes, handshake, close and buffer counters, build info. */
void admin_report_common(struct admin_report *rep);

/* The report as Prometheus text (version 0.0.4) and as /status JSON. */
void admin_render_metrics(const struct admin_report *rep, struct evbuffer *out);
void admin_render_status(const struct admin_report *rep, struct evbuffer *out);

/* Encoders. A label value with \\, " and newline escaped. */
void admin_prom_label_value(struct evbuffer *out, const char *v);
/* HELP text: \\ and newline escaped. */
void admin_prom_help(struct evbuffer *out, const char *v);
/* A JSON string literal with its quotes; valid UTF-8 passes through, other
 * bytes become \ufffd. */
void admin_json_string(struct evbuffer *out, const char *s);
/* A number as Prometheus and JSON read it: integers exactly, else %.6g;
 * NaN and infinities as "NaN", "+Inf", "-Inf" (the JSON writer uses null). */
const char *admin_format_number(double v, char *buf, size_t len);

/* The status page (admin_page.html), generated at build time. */
extern const unsigned char admin_page_html[];
extern const size_t admin_page_html_len;

#endif
