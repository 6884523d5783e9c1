/*
 * Admin HTTP interface: access check, the three pages, and the report that
 * the daemon's collect callback fills per request. Rendering never blocks
 * and holds nothing between requests.
 */
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <sodium.h>

#include "wanmux/acceptor.h"
#include "wanmux/acl.h"
#include "wanmux/admin.h"
#include "wanmux/err.h"
#include "wanmux/limit.h"
#include "wanmux/log.h"
#include "wanmux/relay.h"
#include "wanmux/session.h"
#include "wanmux/tsession.h"

#define ADMIN_VERSION "0.1.0"
#define ADMIN_FAMILIES_MAX 96
#define ADMIN_STREAMS_MAX 1000 /* rows in /status; the count is always exact */
#define ADMIN_HISTORY 121      /* one-second samples of the byte totals: 2 minutes */

struct family {
	char name[64];
	const char *help;
	enum admin_type type;
	struct evbuffer *samples;
};

struct stream_row {
	struct access_record rec;
	const char *state;
	uint64_t age_ms;
};

struct limit_row {
	char name[64];
	char option[40];
	double used, max;
};

struct status_section {
	char *key;
	char *json;
};

#define ADMIN_SECTIONS_MAX 8

struct admin_report {
	enum admin_role role;
	const char *prog;
	struct family families[ADMIN_FAMILIES_MAX];
	size_t nfamilies;
	struct admin_tunnel *tunnels;
	size_t ntunnels, tunnels_cap;
	struct stream_row *streams;
	size_t nstreams, streams_cap;
	size_t streams_total;
	struct limit_row limits[32];
	size_t nlimits;
	struct status_section sections[ADMIN_SECTIONS_MAX]; /* /status only */
	size_t nsections;
	struct admin_tunnel closed; /* bytes of closed tunnels */
	size_t connecting;	    /* connections in their handshake without a row */
	bool light;		    /* history sample: no TCP_INFO, no streams */
	const struct admin *admin;  /* for the history in /status, or NULL */
	double uptime_s;
};

struct history_sample {
	uint64_t ms;
	double up, down; /* application bytes in all */
};

struct admin {
	struct event_base *base;
	struct event *tick;
	struct history_sample history[ADMIN_HISTORY];
	size_t hist_next, hist_len;
	struct evhttp *http;
	struct acceptor *guard; /* backs evhttp's listener off on EMFILE */
	struct acl *allow;
	enum admin_role role;
	const char *prog;
	void (*collect)(struct admin_report *rep, void *arg);
	void *arg;
	int (*action)(const char *path, const char *query, struct evbuffer *reply, void *arg);
	void *action_arg;
	uint64_t denied;
	struct limit_counter denied_log;
};

static struct admin_tunnel closed_totals;
static uint64_t start_ms;
static time_t start_time;

/* ---- encoders ---- */

const char *admin_format_number(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(buf, len, "%.0f", v);
	else
		snprintf(buf, len, "%.6g", v);
	return buf;
}

static void prom_escape(struct evbuffer *out, const char *v, bool quote)
{
	for (const char *p = v; *p != '\0'; p++) {
		if (*p == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*p == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*p == '"' && quote)
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, p, 1);
	}
}

void admin_prom_label_value(struct evbuffer *out, const char *v)
{
	prom_escape(out, v, true);
}

void admin_prom_help(struct evbuffer *out, const char *v)
{
	prom_escape(out, v, false);
}

void admin_json_string(struct evbuffer *out, const char *s)
{
	evbuffer_add(out, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		switch (*p) {
		case '"':
			evbuffer_add(out, "\\\"", 2);
			break;
		case '\\':
			evbuffer_add(out, "\\\\", 2);
			break;
		case '\n':
			evbuffer_add(out, "\\n", 2);
			break;
		case '\r':
			evbuffer_add(out, "\\r", 2);
			break;
		case '\t':
			evbuffer_add(out, "\\t", 2);
			break;
		default:
			/* < and > too: the page may put strings into HTML. */
			if (*p < 0x20 || *p == 0x7f || *p == '<' || *p == '>') {
				evbuffer_add_printf(out, "\\u%04x", *p);
			} else if (*p >= 0x80) {
				/* Peers choose target names: keep the JSON valid. */
				size_t n = access_utf8_len(p);
				if (n == 0) {
					evbuffer_add(out, "\\ufffd", 6);
				} else {
					evbuffer_add(out, p, n);
					p += n - 1;
				}
			} else {
				evbuffer_add(out, p, 1);
			}
		}
	}
	evbuffer_add(out, "\"", 1);
}

static void json_number(struct evbuffer *out, double v)
{
	char buf[40];
	if (isnan(v) || isinf(v)) {
		evbuffer_add(out, "null", 4);
		return;
	}
	evbuffer_add_printf(out, "%s", admin_format_number(v, buf, sizeof(buf)));
}

/* "key":value pairs; first says whether a comma goes before. */
static void json_key(struct evbuffer *out, const char *key, bool first)
{
	if (!first)
		evbuffer_add(out, ",", 1);
	admin_json_string(out, key);
	evbuffer_add(out, ":", 1);
}

static void json_num_field(struct evbuffer *out, const char *key, double v, bool first)
{
	json_key(out, key, first);
	json_number(out, v);
}

static void json_str_field(struct evbuffer *out, const char *key, const char *v, bool first)
{
	json_key(out, key, first);
	admin_json_string(out, v);
}

/* ---- report ---- */

struct admin_report *admin_report_new(enum admin_role role, const char *prog)
{
	struct admin_report *rep = calloc(1, sizeof(*rep));
	if (rep == NULL)
		return NULL;
	rep->role = role;
	rep->prog = prog;
	return rep;
}

void admin_report_free(struct admin_report *rep)
{
	if (rep == NULL)
		return;
	for (size_t i = 0; i < rep->nfamilies; i++)
		evbuffer_free(rep->families[i].samples);
	for (size_t i = 0; i < rep->nsections; i++) {
		free(rep->sections[i].key);
		free(rep->sections[i].json);
	}
	free(rep->tunnels);
	free(rep->streams);
	free(rep);
}

static struct family *family_get(struct admin_report *rep, enum admin_type type, const char *name,
				 const char *help)
{
	for (size_t i = 0; i < rep->nfamilies; i++) {
		if (strcmp(rep->families[i].name, name) == 0)
			return &rep->families[i];
	}
	if (rep->nfamilies == ADMIN_FAMILIES_MAX)
		return NULL;
	struct family *f = &rep->families[rep->nfamilies];
	f->samples = evbuffer_new();
	if (f->samples == NULL)
		return NULL;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->help = help;
	f->type = type;
	rep->nfamilies++;
	return f;
}

void admin_metric(struct admin_report *rep, enum admin_type type, const char *name,
		  const char *help, double value, const char *k1, const char *v1, const char *k2,
		  const char *v2)
{
	char num[40];
	struct family *f = family_get(rep, type, name, help);
	if (f == NULL)
		return;
	evbuffer_add_printf(f->samples, "wanmux_%s", f->name);
	if (k1 != NULL) {
		evbuffer_add_printf(f->samples, "{%s=\"", k1);
		admin_prom_label_value(f->samples, v1);
		if (k2 != NULL) {
			evbuffer_add_printf(f->samples, "\",%s=\"", k2);
			admin_prom_label_value(f->samples, v2);
		}
		evbuffer_add(f->samples, "\"}", 2);
	}
	evbuffer_add_printf(f->samples, " %s\n", admin_format_number(value, num, sizeof(num)));
}

void admin_tunnel_row(struct admin_report *rep, const struct admin_tunnel *row)
{
	if (rep->ntunnels == rep->tunnels_cap) {
		size_t cap = rep->tunnels_cap ? rep->tunnels_cap * 2 : 8;
		struct admin_tunnel *n = realloc(rep->tunnels, cap * sizeof(*n));
		if (n == NULL)
			return;
		rep->tunnels = n;
		rep->tunnels_cap = cap;
	}
	rep->tunnels[rep->ntunnels++] = *row;
}

/* A session's byte counts and streams show on its first tunnel's row, so
 * that sums over the rows are the session's. */
static void stats_into(struct admin_tunnel *row, const struct tunnel *t)
{
	const struct tunnel_stats *ts = tunnel_get_stats(t);
	struct tsession *tss = tunnel_tsession(t);
	const struct session_stats *ss = NULL;
	if (tss != NULL && tsession_tunnel(tss, 0) == t)
		ss = session_get_stats(tsession_session(tss));
	row->wire_sent = ts->wire_bytes_sent;
	row->wire_received = ts->wire_bytes_received;
	row->placed_data = tunnel_get_path_stats(t)->data_bytes;
	if (ss != NULL) {
		row->raw_sent = ss->raw_bytes_sent;
		row->raw_received = ss->raw_bytes_received;
		row->payload_sent = ss->payload_bytes_sent;
		row->payload_received = ss->payload_bytes_received;
	}
}

void admin_tunnel(struct admin_report *rep, const char *label, const char *client,
		  const struct tunnel *t)
{
	struct admin_tunnel row;
	memset(&row, 0, sizeof(row));
	snprintf(row.label, sizeof(row.label), "%s", label);
	snprintf(row.client, sizeof(row.client), "%s", client != NULL ? client : "");
	snprintf(row.peer, sizeof(row.peer), "%s", tunnel_peer_name(t));
	sodium_bin2hex(row.session, sizeof(row.session), tunnel_session_id(t), 8);
	if (rep->light) {
		struct tunnel_tcp_info ti;
		tunnel_tcp_info(t, &ti);
		row.info.state = ti.state;
	} else {
		tunnel_tcp_info(t, &row.info); /* state and age even without a socket */
	}
	stats_into(&row, t);
	struct tsession *tss = tunnel_tsession(t);
	if (tss != NULL && tsession_tunnel(tss, 0) == t)
		row.streams = session_stream_count(tsession_session(tss));
	admin_tunnel_row(rep, &row);
}

void admin_tunnel_closed(const struct tunnel *t)
{
	const struct tunnel_stats *ts = tunnel_get_stats(t);
	closed_totals.wire_sent += ts->wire_bytes_sent;
	closed_totals.wire_received += ts->wire_bytes_received;
}

void admin_session_closed(const struct session_stats *ss)
{
	closed_totals.raw_sent += ss->raw_bytes_sent;
	closed_totals.raw_received += ss->raw_bytes_received;
	closed_totals.payload_sent += ss->payload_bytes_sent;
	closed_totals.payload_received += ss->payload_bytes_received;
}

void admin_tunnels_connecting(struct admin_report *rep, size_t n)
{
	rep->connecting += n;
}

void admin_limit(struct admin_report *rep, const char *name, const char *option, double used,
		 double max)
{
	if (rep->nlimits == sizeof(rep->limits) / sizeof(rep->limits[0]))
		return;
	struct limit_row *l = &rep->limits[rep->nlimits++];
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->option, sizeof(l->option), "%s", option);
	l->used = used;
	l->max = max;
}

void admin_status_section(struct admin_report *rep, const char *key, struct evbuffer *json)
{
	if (rep->nsections == ADMIN_SECTIONS_MAX)
		return;
	size_t n = evbuffer_get_length(json);
	char *text = malloc(n + 1);
	char *k = strdup(key);
	if (text == NULL || k == NULL) {
		free(text);
		free(k);
		return;
	}
	evbuffer_copyout(json, text, n);
	text[n] = '\0';
	rep->sections[rep->nsections].key = k;
	rep->sections[rep->nsections].json = text;
	rep->nsections++;
}

static void add_stream(const struct access_record *rec, const char *state, uint64_t age_ms,
		       void *arg)
{
	struct admin_report *rep = arg;
	rep->streams_total++;
	if (rep->nstreams >= ADMIN_STREAMS_MAX)
		return;
	if (rep->nstreams == rep->streams_cap) {
		size_t cap = rep->streams_cap ? rep->streams_cap * 2 : 16;
		struct stream_row *n = realloc(rep->streams, cap * sizeof(*n));
		if (n == NULL)
			return;
		rep->streams = n;
		rep->streams_cap = cap;
	}
	struct stream_row *row = &rep->streams[rep->nstreams++];
	row->rec = *rec;
	row->state = state;
	row->age_ms = age_ms;
}

void admin_report_common(struct admin_report *rep)
{
	const struct relay_access_counts *ac = relay_get_access_counts();
	for (int i = 0; i < ACCESS_FRONTEND_COUNT; i++) {
		const char *fe = access_frontend_name((enum access_frontend)i);
		admin_metric(rep, ADMIN_GAUGE, "streams_open", "Streams open now, by front end.",
			     (double)ac->open[i], "frontend", fe, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "streams_opened_total",
			     "Streams opened since start, by front end.", (double)ac->opened[i],
			     "frontend", fe, NULL, NULL);
	}
	for (int i = 0; i < ACCESS_RESULT_COUNT; i++)
		admin_metric(rep, ADMIN_COUNTER, "streams_closed_total",
			     "Streams finished since start, by how they ended (access log "
			     "result=).",
			     (double)ac->closed[i], "result",
			     access_result_name((enum access_result)i), NULL, NULL);
	relay_foreach_access(add_stream, rep);

	struct tsession_counters counts;
	tsession_get_counters(&counts);
	const struct tsession_counters *sc = &counts;
	admin_metric(rep, ADMIN_COUNTER, "sessions_started_total",
		     "Sessions started (a client's tunnels share one).", (double)sc->created, NULL,
		     NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_resumes_total",
		     "Sessions that lost every tunnel and got one back in time.",
		     (double)sc->resumed, NULL, NULL, NULL, NULL);
	static const char se_help[] = "Sessions ended, by why.";
	admin_metric(rep, ADMIN_COUNTER, "sessions_ended_total", se_help, (double)sc->expired,
		     "reason", "resume_timeout", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "sessions_ended_total", se_help, (double)sc->failed,
		     "reason", "protocol_error", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_streams_reset_total",
		     "Streams reset because their session ended.", (double)sc->streams_reset, NULL,
		     NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_resent_bytes_total",
		     "DATA bytes sent again after a tunnel was lost or the peer asked (RESUME).",
		     (double)sc->resent_bytes, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_loss_events_total",
		     "Losses the sessions saw (a tunnel's retransmit counter rose, a tunnel "
		     "was lost).",
		     (double)sc->loss_events, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_dup_sent_frames_total",
		     "Small DATA frames also sent on a second tunnel (--duplicate).",
		     (double)sc->dup_frames_sent, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_dup_sent_wire_bytes_total",
		     "Frame bytes those copies cost, headers included.", (double)sc->dup_wire_bytes,
		     NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_dup_received_frames_total",
		     "Received DATA frames dropped as copies of what had arrived.",
		     (double)sc->dup_frames, NULL, NULL, NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "session_resumes_refused_total",
		     "Peer RESUMEs over the resume credit, taken as ACKs.",
		     (double)sc->resumes_refused, NULL, NULL, NULL, NULL);

	const struct tunnel_counters *tc = tunnel_get_counters();
	static const char hf_help[] = "Tunnel handshakes that failed, by kind.";
	admin_metric(rep, ADMIN_COUNTER, "handshake_failures_total", hf_help, (double)tc->bad_mac,
		     "kind", "bad_mac", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "handshake_failures_total", hf_help,
		     (double)tc->bad_handshake, "kind", "bad_handshake", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "handshake_failures_total", hf_help,
		     (double)tc->handshake_timeout, "kind", "timeout", NULL, NULL);
	static const char tc_help[] = "Established tunnels closed for a fault, by reason.";
	admin_metric(rep, ADMIN_COUNTER, "tunnel_faults_total", tc_help, (double)tc->bad_record,
		     "reason", "bad_record", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "tunnel_faults_total", tc_help, (double)tc->protocol_error,
		     "reason", "protocol_error", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "tunnel_faults_total", tc_help, (double)tc->silent,
		     "reason", "silent", NULL, NULL);
	static const char lh_help[] = "Times a limit was hit, by limit.";
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)session_limit_hits(),
		     "limit", "max_streams", NULL, NULL);
	admin_metric(rep, ADMIN_COUNTER, "limit_hits_total", lh_help, (double)relay_budget_hits(),
		     "limit", "max_buffer", NULL, NULL);
	admin_limit(rep, "bytes buffered by all streams", "--max-buffer",
		    (double)relay_budget_used(), (double)relay_budget_limit());
	rep->closed = closed_totals;
	if (start_ms == 0)
		start_ms = limit_now_ms();
	rep->uptime_s = (double)(limit_now_ms() - start_ms) / 1000.0;
	admin_metric(rep, ADMIN_GAUGE, "build_info", "Version of this daemon (value 1).", 1,
		     "daemon", rep->prog, "version", ADMIN_VERSION);
	admin_metric(rep, ADMIN_GAUGE, "start_time_seconds", "Start time, Unix seconds.",
		     (double)start_time, NULL, NULL, NULL, NULL);
}

/* ---- rendering ---- */

struct bytes {
	double app, payload, wire;
};

/* Process totals by direction: the client sends up, the server down. */
static void totals(const struct admin_report *rep, struct bytes *up, struct bytes *down)
{
	struct admin_tunnel sum = rep->closed;
	for (size_t i = 0; i < rep->ntunnels; i++) {
		const struct admin_tunnel *t = &rep->tunnels[i];
		sum.raw_sent += t->raw_sent;
		sum.raw_received += t->raw_received;
		sum.payload_sent += t->payload_sent;
		sum.payload_received += t->payload_received;
		sum.wire_sent += t->wire_sent;
		sum.wire_received += t->wire_received;
	}
	struct bytes sent = {(double)sum.raw_sent, (double)sum.payload_sent, (double)sum.wire_sent};
	struct bytes recv = {(double)sum.raw_received, (double)sum.payload_received,
			     (double)sum.wire_received};
	*up = rep->role == ADMIN_CLIENT ? sent : recv;
	*down = rep->role == ADMIN_CLIENT ? recv : sent;
}

/* Metrics derived from the rows, added to a copy of the families. */
static void derived_metrics(struct admin_report *rep)
{
	static const char *states[] = {"up", "connecting", "closing"};
	double count[3] = {0, (double)rep->connecting, 0};
	for (size_t i = 0; i < rep->ntunnels; i++) {
		const char *st = rep->tunnels[i].info.state;
		if (st == NULL)
			continue;
		if (strcmp(st, "up") == 0)
			count[0]++;
		else if (strcmp(st, "closing") == 0)
			count[2]++;
		else
			count[1]++;
	}
	for (int i = 0; i < 3; i++)
		admin_metric(rep, ADMIN_GAUGE, "tunnels",
			     "Tunnels by state (connecting includes the handshake).", count[i],
			     "state", states[i], NULL, NULL);
	for (size_t i = 0; i < rep->ntunnels; i++) {
		const struct admin_tunnel *t = &rep->tunnels[i];
		const char *l = t->label;
		/* Per-tunnel series only for tunnels that are up: a label per
		 * handshake in progress would be unbounded. */
		if (t->info.state == NULL || strcmp(t->info.state, "up") != 0)
			continue;
		admin_metric(rep, ADMIN_GAUGE, "tunnel_rtt_seconds",
			     "Smoothed RTT of the tunnel's TCP connection (TCP_INFO).",
			     t->info.tcp_rtt_us / 1e6, "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "tunnel_ping_rtt_seconds",
			     "Smoothed RTT measured with PING/PONG through the tunnel.",
			     t->info.srtt_us / 1e6, "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "tunnel_cwnd_segments",
			     "Congestion window of the tunnel's TCP connection.", t->info.cwnd,
			     "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_GAUGE, "tunnel_delivery_rate_bytes_per_second",
			     "The kernel's delivery rate estimate for the tunnel.",
			     (double)t->info.delivery_rate, "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "tunnel_retransmits_total",
			     "TCP segments the tunnel retransmitted.", t->info.retransmits,
			     "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "tunnel_wire_bytes_total",
			     "Record bytes on the tunnel's wire, by direction.",
			     (double)(rep->role == ADMIN_CLIENT ? t->wire_sent : t->wire_received),
			     "tunnel", l, "direction", "up");
		admin_metric(rep, ADMIN_COUNTER, "tunnel_wire_bytes_total",
			     "Record bytes on the tunnel's wire, by direction.",
			     (double)(rep->role == ADMIN_CLIENT ? t->wire_received : t->wire_sent),
			     "tunnel", l, "direction", "down");
		admin_metric(rep, ADMIN_GAUGE, "tunnel_streams",
			     "Streams open in the tunnel's session, shown on its first tunnel.",
			     (double)t->streams, "tunnel", l, NULL, NULL);
		admin_metric(rep, ADMIN_COUNTER, "tunnel_placed_data_bytes_total",
			     "DATA payload bytes (before compression) the session placed on this "
			     "tunnel.",
			     (double)t->placed_data, "tunnel", l, NULL, NULL);
	}
	struct bytes up, down;
	totals(rep, &up, &down);
	static const char b_help[] =
	    "Bytes by direction (up: client to server) and layer: app (stream data), "
	    "payload (after compression), wire (records with headers and tags).";
	const struct {
		const char *dir;
		const struct bytes *b;
	} dirs[] = {{"up", &up}, {"down", &down}};
	for (int i = 0; i < 2; i++) {
		admin_metric(rep, ADMIN_COUNTER, "bytes_total", b_help, dirs[i].b->app, "direction",
			     dirs[i].dir, "layer", "app");
		admin_metric(rep, ADMIN_COUNTER, "bytes_total", b_help, dirs[i].b->payload,
			     "direction", dirs[i].dir, "layer", "payload");
		admin_metric(rep, ADMIN_COUNTER, "bytes_total", b_help, dirs[i].b->wire,
			     "direction", dirs[i].dir, "layer", "wire");
	}
	for (int i = 0; i < 2; i++)
		admin_metric(rep, ADMIN_GAUGE, "compression_ratio",
			     "Compressed DATA payload over application bytes since start (1: "
			     "nothing saved).",
			     dirs[i].b->app > 0 ? dirs[i].b->payload / dirs[i].b->app : 1.0,
			     "direction", dirs[i].dir, NULL, NULL);
	for (size_t i = 0; i < rep->nlimits; i++) {
		const struct limit_row *l = &rep->limits[i];
		/* "--max-buffer" is limit="max_buffer", as in limit_hits_total. */
		char label[sizeof(l->option)];
		const char *o = l->option;
		while (*o == '-')
			o++;
		snprintf(label, sizeof(label), "%s", o);
		for (char *c = label; *c != '\0'; c++) {
			if (*c == '-')
				*c = '_';
		}
		admin_metric(rep, ADMIN_GAUGE, "limit_used", "Current use of a limit.", l->used,
			     "limit", label, NULL, NULL);
		if (l->max > 0)
			admin_metric(rep, ADMIN_GAUGE, "limit_max", "The configured limit.", l->max,
				     "limit", label, NULL, NULL);
	}
}

static void copy_buffer(struct evbuffer *dst, struct evbuffer *src)
{
	size_t n = evbuffer_get_length(src);
	if (n > 0)
		evbuffer_add(dst, evbuffer_pullup(src, -1), n);
}

void admin_render_metrics(const struct admin_report *rep_in, struct evbuffer *out)
{
	/* Derived families go into a scratch report so rendering leaves rep
	 * as the caller built it. */
	struct admin_report *rep = admin_report_new(rep_in->role, rep_in->prog);
	if (rep == NULL)
		return;
	for (size_t i = 0; i < rep_in->nfamilies; i++) {
		const struct family *src = &rep_in->families[i];
		struct family *f = family_get(rep, src->type, src->name, src->help);
		if (f != NULL)
			copy_buffer(f->samples, src->samples);
	}
	rep->tunnels = rep_in->tunnels;
	rep->ntunnels = rep_in->ntunnels;
	rep->closed = rep_in->closed;
	rep->connecting = rep_in->connecting;
	memcpy(rep->limits, rep_in->limits, sizeof(rep->limits));
	rep->nlimits = rep_in->nlimits;
	derived_metrics(rep);
	for (size_t i = 0; i < rep->nfamilies; i++) {
		const struct family *f = &rep->families[i];
		evbuffer_add_printf(out, "# HELP wanmux_%s ", f->name);
		admin_prom_help(out, f->help != NULL ? f->help : f->name);
		evbuffer_add_printf(out, "\n# TYPE wanmux_%s %s\n", f->name,
				    f->type == ADMIN_COUNTER ? "counter" : "gauge");
		copy_buffer(out, f->samples);
	}
	rep->tunnels = NULL; /* borrowed */
	admin_report_free(rep);
}

static void render_tunnel(struct evbuffer *out, const struct admin_tunnel *t, enum admin_role role)
{
	uint64_t up = role == ADMIN_CLIENT ? t->raw_sent : t->raw_received;
	uint64_t down = role == ADMIN_CLIENT ? t->raw_received : t->raw_sent;
	uint64_t wup = role == ADMIN_CLIENT ? t->wire_sent : t->wire_received;
	uint64_t wdown = role == ADMIN_CLIENT ? t->wire_received : t->wire_sent;
	evbuffer_add(out, "{", 1);
	json_str_field(out, "tunnel", t->label, true);
	json_str_field(out, "peer", t->peer, false);
	json_str_field(out, "client", t->client, false);
	json_str_field(out, "state", t->info.state != NULL ? t->info.state : "?", false);
	json_num_field(out, "age_s", (double)(t->info.age_ms / 1000), false);
	json_num_field(out, "rtt_ms", t->info.tcp_rtt_us / 1000.0, false);
	json_num_field(out, "ping_rtt_ms", t->info.srtt_us / 1000.0, false);
	json_num_field(out, "cwnd", t->info.cwnd, false);
	json_num_field(out, "delivery_rate", (double)t->info.delivery_rate, false);
	json_num_field(out, "retransmits", t->info.retransmits, false);
	json_num_field(out, "streams", (double)t->streams, false);
	json_num_field(out, "bytes_up", (double)up, false);
	json_num_field(out, "bytes_down", (double)down, false);
	json_num_field(out, "wire_up", (double)wup, false);
	json_num_field(out, "wire_down", (double)wdown, false);
	evbuffer_add(out, "}", 1);
}

/*
 * The sessions: a client's tunnels to one server with one session id (today
 * each tunnel carries its own streams; the sessions rework will let them
 * share them). Grouped from the tunnel rows, first seen first.
 */
static void render_sessions(struct evbuffer *out, const struct admin_report *rep)
{
	bool first = true;
	evbuffer_add(out, "[", 1);
	for (size_t i = 0; i < rep->ntunnels; i++) {
		const struct admin_tunnel *t = &rep->tunnels[i];
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcmp(rep->tunnels[k].session, t->session) == 0 &&
			       strcmp(rep->tunnels[k].client, t->client) == 0;
		if (seen)
			continue;
		uint64_t up = 0, down = 0;
		size_t ntunnels = 0, streams = 0;
		for (size_t k = i; k < rep->ntunnels; k++) {
			const struct admin_tunnel *o = &rep->tunnels[k];
			if (strcmp(o->session, t->session) != 0 ||
			    strcmp(o->client, t->client) != 0)
				continue;
			ntunnels++;
			streams += o->streams;
			up += rep->role == ADMIN_CLIENT ? o->raw_sent : o->raw_received;
			down += rep->role == ADMIN_CLIENT ? o->raw_received : o->raw_sent;
		}
		evbuffer_add(out, first ? "{" : ",{", first ? 1 : 2);
		first = false;
		json_str_field(out, "session", t->session, true);
		json_str_field(out, "client", t->client, false);
		json_num_field(out, "tunnels", (double)ntunnels, false);
		json_num_field(out, "streams", (double)streams, false);
		json_num_field(out, "bytes_up", (double)up, false);
		json_num_field(out, "bytes_down", (double)down, false);
		evbuffer_add(out, "}", 1);
	}
	evbuffer_add(out, "]", 1);
}

static void render_stream(struct evbuffer *out, const struct stream_row *s)
{
	evbuffer_add(out, "{", 1);
	json_str_field(out, "frontend", access_frontend_name(s->rec.frontend), true);
	json_str_field(out, "client", s->rec.client, false);
	json_str_field(out, "src", s->rec.src, false);
	json_str_field(out, "target", s->rec.target, false);
	json_str_field(out, "addr", s->rec.addr, false);
	json_str_field(out, "state", s->state, false);
	json_num_field(out, "up", (double)s->rec.up, false);
	json_num_field(out, "down", (double)s->rec.down, false);
	json_num_field(out, "age_ms", (double)s->age_ms, false);
	evbuffer_add(out, "}", 1);
}

static void render_bytes(struct evbuffer *out, const char *key, const struct bytes *b, bool first)
{
	json_key(out, key, first);
	evbuffer_add(out, "{", 1);
	json_num_field(out, "app", b->app, true);
	json_num_field(out, "payload", b->payload, false);
	json_num_field(out, "wire", b->wire, false);
	evbuffer_add(out, "}", 1);
}

void admin_render_status(const struct admin_report *rep, struct evbuffer *out)
{
	evbuffer_add(out, "{", 1);
	json_str_field(out, "daemon", rep->prog, true);
	json_str_field(out, "version", ADMIN_VERSION, false);
	json_num_field(out, "uptime_s", floor(rep->uptime_s), false);
	json_num_field(out, "time_ms", (double)limit_now_ms(), false);
	json_key(out, "tunnels", false);
	evbuffer_add(out, "[", 1);
	for (size_t i = 0; i < rep->ntunnels; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		render_tunnel(out, &rep->tunnels[i], rep->role);
	}
	evbuffer_add(out, "]", 1);
	json_key(out, "sessions", false);
	render_sessions(out, rep);
	json_num_field(out, "streams_open", (double)rep->streams_total, false);
	json_key(out, "streams", false);
	evbuffer_add(out, "[", 1);
	for (size_t i = 0; i < rep->nstreams; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		render_stream(out, &rep->streams[i]);
	}
	evbuffer_add(out, "]", 1);
	json_key(out, "limits", false);
	evbuffer_add(out, "[", 1);
	for (size_t i = 0; i < rep->nlimits; i++) {
		const struct limit_row *l = &rep->limits[i];
		evbuffer_add(out, i > 0 ? ",{" : "{", i > 0 ? 2 : 1);
		json_str_field(out, "name", l->name, true);
		json_str_field(out, "option", l->option, false);
		json_num_field(out, "used", l->used, false);
		json_key(out, "max", false);
		if (l->max > 0)
			json_number(out, l->max);
		else
			evbuffer_add(out, "null", 4);
		evbuffer_add(out, "}", 1);
	}
	evbuffer_add(out, "]", 1);
	for (size_t i = 0; i < rep->nsections; i++) {
		json_key(out, rep->sections[i].key, false);
		evbuffer_add(out, rep->sections[i].json, strlen(rep->sections[i].json));
	}
	struct bytes up, down;
	totals(rep, &up, &down);
	json_key(out, "bytes", false);
	evbuffer_add(out, "{", 1);
	render_bytes(out, "up", &up, true);
	render_bytes(out, "down", &down, false);
	evbuffer_add(out, "}", 1);
	/* [ms, up, down] once a second, oldest first: the page's chart. */
	json_key(out, "history", false);
	evbuffer_add(out, "[", 1);
	const struct admin *a = rep->admin;
	size_t n = a != NULL ? a->hist_len : 0;
	for (size_t i = 0; i < n; i++) {
		const struct history_sample *h =
		    &a->history[(a->hist_next + ADMIN_HISTORY - n + i) % ADMIN_HISTORY];
		evbuffer_add(out, i > 0 ? ",[" : "[", i > 0 ? 2 : 1);
		json_number(out, (double)h->ms);
		evbuffer_add(out, ",", 1);
		json_number(out, h->up);
		evbuffer_add(out, ",", 1);
		json_number(out, h->down);
		evbuffer_add(out, "]", 1);
	}
	evbuffer_add(out, "]}\n", 3);
}

/* ---- HTTP ---- */

bool admin_source_allowed(const struct acl *allow, const struct sockaddr *sa)
{
	if (sa == NULL)
		return false;
	if (allow != NULL)
		return acl_matches_source(allow, sa);
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, body);
}

/* Whether Host names this server by address (or localhost), not by a
 * name that a DNS rebinding could point here. */
/* "" or ":" and a port number: what may follow the host in a Host header. */
static bool host_port_ok(const char *rest)
{
	if (rest[0] == '\0')
		return true;
	size_t n = strlen(rest);
	return rest[0] == ':' && n >= 2 && n <= 6 && strspn(rest + 1, "0123456789") == n - 1;
}

static bool host_is_literal(const char *host)
{
	char h[NETADDR_HOST_MAX];
	struct sockaddr_storage ss;
	socklen_t len;
	if (host == NULL || host[0] == '\0' || strlen(host) >= sizeof(h))
		return false;
	snprintf(h, sizeof(h), "%s", host);
	if (h[0] == '[') {
		char *end = strchr(h, ']');
		if (end == NULL || !host_port_ok(end + 1))
			return false;
		*end = '\0';
		return netaddr_literal(h + 1, 1, &ss, &len);
	}
	char *colon = strchr(h, ':');
	if (colon != NULL) {
		if (!host_port_ok(colon))
			return false;
		*colon = '\0';
	}
	return strcmp(h, "localhost") == 0 || netaddr_literal(h, 1, &ss, &len);
}

static void run_action(struct admin *a, struct evhttp_request *req, const char *path,
		       const struct evhttp_uri *uri, struct evbuffer *body)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *mark = evhttp_find_header(in, "X-Wanmux-Action");
	if (a->action == NULL) {
		evbuffer_add_printf(body, "no admin actions on this daemon\n");
		reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", body);
		return;
	}
	if (mark == NULL || strcmp(mark, "1") != 0 ||
	    !host_is_literal(evhttp_find_header(in, "Host"))) {
		a->denied++;
		evbuffer_add_printf(body, "forbidden: an action needs the header X-Wanmux-Action: "
					  "1 and a Host that is an address\n");
		reply(req, 403, "Forbidden", "text/plain; charset=utf-8", body);
		return;
	}
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	int code = a->action(path, query != NULL ? query : "", body, a->action_arg);
	const char *reason = code == 200 ? "OK" : code == 404 ? "Not Found" : "Bad Request";
	reply(req, code, reason, "text/plain; charset=utf-8", body);
}

void admin_set_action(struct admin *a,
		      int (*action)(const char *path, const char *query, struct evbuffer *reply,
				    void *arg),
		      void *arg)
{
	a->action = action;
	a->action_arg = arg;
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	const struct sockaddr *sa = conn != NULL ? evhttp_connection_get_addr(conn) : NULL;
	struct evbuffer *body = evbuffer_new();
	if (body == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (!admin_source_allowed(a->allow, sa)) {
		char peer[NETADDR_STR_MAX] = "?";
		if (sa != NULL)
			netaddr_format(sa, peer, sizeof(peer));
		a->denied++;
		limit_hit(&a->denied_log, peer);
		evbuffer_add_printf(body, "forbidden\n");
		/* Hold nothing for it: the connection closes after the answer. */
		evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
		reply(req, 403, "Forbidden", "text/plain; charset=utf-8", body);
		evbuffer_free(body);
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || path[0] == '\0')
		path = "/";
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		run_action(a, req, path, uri, body);
		evbuffer_free(body);
		return;
	}
	if (strcmp(path, "/") == 0) {
		evbuffer_add_reference(body, admin_page_html, admin_page_html_len, NULL, NULL);
		struct evkeyvalq *h = evhttp_request_get_output_headers(req);
		/* Only its own inline script and the same origin's /status. */
		evhttp_add_header(h, "Content-Security-Policy",
				  "default-src 'none'; script-src 'unsafe-inline'; style-src "
				  "'unsafe-inline'; connect-src 'self'; img-src data:");
		reply(req, 200, "OK", "text/html; charset=utf-8", body);
		evbuffer_free(body);
		return;
	}
	bool metrics = strcmp(path, "/metrics") == 0;
	if (!metrics && strcmp(path, "/status") != 0) {
		evbuffer_add_printf(body, "not found: try /, /status or /metrics\n");
		reply(req, 404, "Not Found", "text/plain; charset=utf-8", body);
		evbuffer_free(body);
		return;
	}
	struct admin_report *rep = admin_report_new(a->role, a->prog);
	if (rep == NULL) {
		evbuffer_free(body);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	rep->admin = a;
	if (a->collect != NULL)
		a->collect(rep, a->arg);
	admin_report_common(rep);
	admin_metric(rep, ADMIN_COUNTER, "admin_denied_total",
		     "Admin requests refused with 403 (source not in --admin-allow).",
		     (double)a->denied, NULL, NULL, NULL, NULL);
	if (metrics) {
		admin_render_metrics(rep, body);
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
	} else {
		admin_render_status(rep, body);
		reply(req, 200, "OK", "application/json", body);
	}
	admin_report_free(rep);
	evbuffer_free(body);
}

/* Once a second: the byte totals for the chart, cheap (no syscalls). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	struct admin_report *rep = admin_report_new(a->role, a->prog);
	if (rep == NULL)
		return;
	rep->light = true;
	if (a->collect != NULL)
		a->collect(rep, a->arg);
	rep->closed = closed_totals;
	struct bytes up, down;
	totals(rep, &up, &down);
	admin_report_free(rep);
	struct history_sample *h = &a->history[a->hist_next];
	h->ms = limit_now_ms();
	h->up = up.app;
	h->down = down.app;
	a->hist_next = (a->hist_next + 1) % ADMIN_HISTORY;
	if (a->hist_len < ADMIN_HISTORY)
		a->hist_len++;
}

struct admin *admin_start(struct event_base *base, struct admin_options *opt, enum admin_role role,
			  const char *prog, void (*collect)(struct admin_report *rep, void *arg),
			  void *arg, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		snprintf(err, errlen, "--admin: out of memory");
		return NULL;
	}
	a->base = base;
	a->allow = opt->allow;
	opt->allow = NULL; /* transferred */
	a->role = role;
	a->prog = prog;
	a->collect = collect;
	a->arg = arg;
	a->denied_log.name = "admin requests from sources outside --admin-allow";
	if (start_ms == 0) {
		start_ms = limit_now_ms();
		start_time = time(NULL);
	}
	a->http = evhttp_new(base);
	if (a->http == NULL) {
		snprintf(err, errlen, "--admin: cannot create the HTTP server");
		goto fail;
	}
	/* Small and bounded: a scraper or a browser, nothing more. */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_max_headers_size(a->http, 8192);
	evhttp_set_max_body_size(a->http, 0);
	evhttp_set_timeout(a->http, 10);
	evhttp_set_gencb(a->http, on_request, a);
	char lerr[256];
	int fd = netaddr_listen(&opt->bind, lerr, sizeof(lerr));
	if (fd < 0) {
		snprintf(err, errlen, "--admin: %s", lerr);
		goto fail;
	}
	evutil_make_socket_nonblocking(fd);
	evutil_make_socket_closeonexec(fd);
	struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(a->http, fd);
	if (bound == NULL) {
		close(fd);
		snprintf(err, errlen, "--admin: cannot serve %s:%u", opt->bind.host,
			 opt->bind.port);
		goto fail;
	}
	/* evhttp's listener has no error callback: on EMFILE it would wake the
	 * loop again at once, forever, and libevent would log every try. */
	a->guard = acceptor_guard(base, evhttp_bound_socket_get_listener(bound), "--admin");
	if (a->guard == NULL) {
		snprintf(err, errlen, "--admin: out of memory");
		goto fail;
	}
	a->tick = event_new(base, -1, EV_PERSIST, on_tick, a);
	if (a->tick == NULL) {
		snprintf(err, errlen, "--admin: out of memory");
		goto fail;
	}
	struct timeval second = {1, 0};
	event_add(a->tick, &second);
	on_tick(-1, 0, a);
	log_info("admin interface on http://%s%s%s:%u/ (/metrics, /status)",
		 strchr(opt->bind.host, ':') != NULL ? "[" : "", opt->bind.host,
		 strchr(opt->bind.host, ':') != NULL ? "]" : "", opt->bind.port);
	return a;
fail:
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	if (a->tick != NULL)
		event_free(a->tick);
	acceptor_free(a->guard);
	if (a->http != NULL)
		evhttp_free(a->http);
	acl_free(a->allow);
	free(a);
}

uint64_t admin_denied(const struct admin *a)
{
	return a->denied;
}
