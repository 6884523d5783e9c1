/*
 * wanmux-client: accepts local TCP connections on --forward listeners and
 * carries each as a stream over a pool of tunnels to wanmux-server. Options,
 * the tunnel pool (reconnect with backoff and jitter) and the listeners live
 * here; the data path is common/ (tunnel, session, relay).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <sodium.h>

#include "wanmux/config.h"
#include "wanmux/dns.h"
#include "wanmux/err.h"
#include "wanmux/keys.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/relay.h"
#include "wanmux/tunnel.h"

#define PROG "wanmux-client"
#define TUNNELS_MAX 64
#define PENDING_MAX 4096
#define PENDING_TIMEOUT_S 15
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000

enum opt_id {
	OPT_SERVER,
	OPT_KEY,
	OPT_SERVER_KEY,
	OPT_FORWARD,
	OPT_TUNNELS,
	OPT_COMPRESS,
	OPT_PSK,
	OPT_CONFIG,
	OPT_STREAM_WINDOW,
	OPT_SESSION_WINDOW,
	OPT_LOG_LEVEL,
	OPT_HELP,
	OPT_VERSION,
};

static const struct config_option options[] = {
    {"server", 's', true, false, OPT_SERVER},
    {"key", 'k', true, false, OPT_KEY},
    {"server-key", 'K', true, false, OPT_SERVER_KEY},
    {"forward", 'L', true, true, OPT_FORWARD},
    {"tunnels", 'n', true, false, OPT_TUNNELS},
    {"compress", 0, true, false, OPT_COMPRESS},
    {"psk", 0, true, false, OPT_PSK},
    {"config", 'c', true, false, OPT_CONFIG},
    {"stream-window", 0, true, false, OPT_STREAM_WINDOW},
    {"session-window", 0, true, false, OPT_SESSION_WINDOW},
    {"log-level", 0, true, false, OPT_LOG_LEVEL},
    {"help", 'h', false, false, OPT_HELP},
    {"version", 'V', false, false, OPT_VERSION},
    {NULL, 0, false, false, 0},
};

static const char usage_text[] =
    "NAME\n"
    "    wanmux-client - branch end of the wanmux WAN-optimizing proxy pair\n"
    "\n"
    "SYNOPSIS\n"
    "    wanmux-client --server HOST:PORT --key FILE --server-key PUBKEY|FILE\n"
    "                  --forward [LADDR:]LPORT:HOST:PORT ... [--tunnels N]\n"
    "                  [--compress auto|lz4|zlib|none] [--psk FILE] [-c FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "    Listens for local TCP connections and carries each one as a stream,\n"
    "    compressed and encrypted, over a few long-lived tuned TCP tunnels to\n"
    "    wanmux-server, which connects it to HOST:PORT. A new connection costs\n"
    "    no extra round trip: its first bytes travel with the request to open\n"
    "    it. Tunnels that drop are reconnected with backoff.\n"
    "\n"
    "OPTIONS\n"
    "    -s, --server HOST:PORT   the wanmux-server to use (IPv6 as [ADDR]:PORT)\n"
    "    -k, --key FILE           this client's private key (wanmux-keygen FILE);\n"
    "                             must not be readable by group or others. Its\n"
    "                             public key (FILE.pub) goes into the server's\n"
    "                             authorized-keys file.\n"
    "    -K, --server-key PUBKEY|FILE\n"
    "                             the server's public key, base64 or a file such\n"
    "                             as server.key.pub; the client talks to no other\n"
    "    -L, --forward [LADDR:]LPORT:HOST:PORT\n"
    "                             listen on LADDR:LPORT (LADDR defaults to\n"
    "                             127.0.0.1) and forward each connection to\n"
    "                             HOST:PORT as seen from the server, like ssh -L.\n"
    "                             IPv6 in brackets. Repeatable.\n"
    "    -n, --tunnels N          tunnels to keep open, 1-64 (default 4)\n"
    "    --compress MODE          auto (default: lz4 on fast links, zlib on slow\n"
    "                             ones, incompressible data sent raw), lz4, zlib\n"
    "                             or none\n"
    "    --psk FILE               pre-shared key, the same file as the server's\n"
    "    -c, --config FILE        read options from FILE: one 'name value' per\n"
    "                             line with long option names, '#' comments; the\n"
    "                             command line overrides it\n"
    "    --stream-window SIZE     receive window per stream (default 4M)\n"
    "    --session-window SIZE    receive window per tunnel (default 16M)\n"
    "    --log-level LEVEL        error, warn, info (default) or debug\n"
    "    -h, --help               this text\n"
    "    -V, --version            version\n"
    "\n"
    "EXAMPLES\n"
    "    wanmux-keygen ~/.wanmux/client.key\n"
    "    wanmux-client --server dc.example.net:7700 --key ~/.wanmux/client.key \\\n"
    "        --server-key server.key.pub --forward 8443:intranet.example:443\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after SIGTERM or SIGINT (a summary of the traffic is logged), 1 on a\n"
    "    runtime failure (unreadable key, port in use), 2 on a usage error.\n";

struct client;

struct slot {
	struct client *cl;
	struct tunnel *t;
	bool up;
	unsigned attempts;
	struct event *retry_ev;
	uint8_t no;
};

struct forward {
	struct client *cl;
	struct netaddr_forward spec;
	struct frame_addr target;
	struct evconnlistener *listener;
};

/* A local connection waiting for a tunnel to come up. */
struct pending {
	TAILQ_ENTRY(pending) link;
	struct forward *fw;
	int fd;
	time_t since;
	char name[NETADDR_STR_MAX];
};

struct totals {
	uint64_t connections;
	uint64_t raw_up, raw_down;	   /* application bytes */
	uint64_t payload_up, payload_down; /* after compression */
	uint64_t wire_up, wire_down;	   /* records on the wire */
	uint64_t tunnels_up;
};

struct client {
	struct event_base *base;
	struct evdns_base *dns;
	struct keypair *key;
	uint8_t psk[KEYS_LEN];
	bool have_psk;
	struct netaddr_hostport server;
	struct tunnel_config tcfg;
	struct slot slots[TUNNELS_MAX];
	unsigned nslots;
	struct forward *forwards;
	size_t nforwards;
	TAILQ_HEAD(, pending) pending;
	size_t npending;
	struct event *pending_timer;
	struct event *sigint;
	struct event *sigterm;
	bool stopping;
	bool ever_up;
	struct totals totals;
};

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
	exit(2);
}

static void fatal(const char *msg) __attribute__((noreturn));

static void fatal(const char *msg)
{
	fprintf(stderr, PROG ": %s\n", msg);
	exit(1);
}

static void slot_connect(struct slot *sl);

static void add_tunnel_totals(struct totals *tot, struct tunnel *t)
{
	const struct tunnel_stats *ts = tunnel_get_stats(t);
	tot->wire_up += ts->wire_bytes_sent;
	tot->wire_down += ts->wire_bytes_received;
	const struct session_stats *ss = tunnel_get_session_stats(t);
	tot->raw_up += ss->raw_bytes_sent;
	tot->raw_down += ss->raw_bytes_received;
	tot->payload_up += ss->payload_bytes_sent;
	tot->payload_down += ss->payload_bytes_received;
}

/* The up tunnel with the least queued bytes: streams spread, and a new
 * stream avoids a tunnel busy with bulk. */
static struct tunnel *pick_tunnel(struct client *cl)
{
	struct tunnel *best = NULL;
	size_t best_q = 0;
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		if (!sl->up)
			continue;
		size_t q =
		    tunnel_queued(sl->t) + session_stream_count(tunnel_session(sl->t)) * 1024;
		if (best == NULL || q < best_q) {
			best = sl->t;
			best_q = q;
		}
	}
	return best;
}

static void start_stream(struct client *cl, struct forward *fw, int fd, const char *name)
{
	struct tunnel *t = pick_tunnel(cl);
	struct relay *r = relay_new(cl->base, fd, name);
	if (r == NULL) {
		log_error("%s: out of memory", name);
		return;
	}
	struct session_stream *st =
	    session_stream_open(tunnel_session(t), &fw->target, relay_source(r), r);
	if (st == NULL) {
		log_warn("%s: stream limit reached on tunnel %s; closing", name,
			 tunnel_peer_name(t));
		relay_close(r, true);
		return;
	}
	relay_bind(r, st);
	relay_start(r);
	cl->totals.connections++;
	log_debug("%s: stream %u to %s:%u via tunnel %s", name, session_stream_id(st),
		  fw->spec.target.host, fw->spec.target.port, tunnel_peer_name(t));
}

static void drain_pending(struct client *cl)
{
	struct pending *p;
	while (pick_tunnel(cl) != NULL && (p = TAILQ_FIRST(&cl->pending)) != NULL) {
		TAILQ_REMOVE(&cl->pending, p, link);
		cl->npending--;
		start_stream(cl, p->fw, p->fd, p->name);
		free(p);
	}
}

static void on_pending_timer(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	time_t now = time(NULL);
	struct pending *p;
	while ((p = TAILQ_FIRST(&cl->pending)) != NULL && now - p->since >= PENDING_TIMEOUT_S) {
		TAILQ_REMOVE(&cl->pending, p, link);
		cl->npending--;
		log_warn("%s: no tunnel to the server for %d s; closing", p->name,
			 PENDING_TIMEOUT_S);
		close(p->fd);
		free(p);
	}
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		      void *arg)
{
	struct forward *fw = arg;
	struct client *cl = fw->cl;
	char name[NETADDR_STR_MAX];
	netaddr_format(sa, name, sizeof(name));
	evutil_make_socket_nonblocking(fd);
	if (pick_tunnel(cl) != NULL) {
		start_stream(cl, fw, fd, name);
		return;
	}
	/* No tunnel yet: hold the connection (the kernel buffers what the
	 * application sends) until one comes up or the wait times out. */
	struct pending *p = calloc(1, sizeof(*p));
	if (p == NULL || cl->npending >= PENDING_MAX) {
		log_warn("%s: no tunnel to the server and too many waiting; closing", name);
		free(p);
		close(fd);
		return;
	}
	p->fw = fw;
	p->fd = fd;
	p->since = time(NULL);
	snprintf(p->name, sizeof(p->name), "%s", name);
	TAILQ_INSERT_TAIL(&cl->pending, p, link);
	cl->npending++;
}

static void on_tunnel_up(struct tunnel *t, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	sl->up = true;
	sl->attempts = 0;
	cl->totals.tunnels_up++;
	log_info("tunnel %u to %s up", sl->no, tunnel_peer_name(t));
	if (!cl->ever_up) {
		cl->ever_up = true;
		log_info("connected to %s:%u", cl->server.host, cl->server.port);
	}
	drain_pending(cl);
}

static void on_tunnel_down(struct tunnel *t, const char *reason, void *arg)
{
	struct slot *sl = arg;
	struct client *cl = sl->cl;
	if (cl->stopping) {
		sl->t = NULL;
		sl->up = false;
		return;
	}
	if (sl->up) {
		log_warn("tunnel %u to %s down: %s", sl->no, tunnel_peer_name(t), reason);
		add_tunnel_totals(&cl->totals, t);
	} else if (sl->attempts == 0 || log_get_level() >= LOG_LEVEL_DEBUG) {
		log_warn("tunnel %u to %s:%u: %s", sl->no, cl->server.host, cl->server.port,
			 reason);
	}
	sl->t = NULL;
	sl->up = false;
	if (cl->stopping)
		return;
	/* Exponential backoff with jitter, so tunnels (and clients) that lost the
	 * server together do not come back in lockstep. */
	unsigned shift = sl->attempts < 8 ? sl->attempts : 8;
	uint32_t base_ms = BACKOFF_MIN_MS << shift;
	if (base_ms > BACKOFF_MAX_MS)
		base_ms = BACKOFF_MAX_MS;
	uint32_t delay = base_ms / 2 + randombytes_uniform(base_ms);
	sl->attempts++;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
	event_add(sl->retry_ev, &tv);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	slot_connect(arg);
}

static void slot_connect(struct slot *sl)
{
	struct client *cl = sl->cl;
	struct tunnel_handlers h;
	memset(&h, 0, sizeof(h));
	h.on_up = on_tunnel_up;
	h.on_down = on_tunnel_down;
	relay_stream_callbacks(&h.streams);
	h.arg = sl;
	struct tunnel_config cfg = cl->tcfg;
	cfg.tunnel_no = sl->no;
	sl->t = tunnel_connect(cl->base, cl->dns, &cl->server, &cfg, &h);
	if (sl->t == NULL) {
		struct timeval tv = {1, 0};
		event_add(sl->retry_ev, &tv);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct client *cl = arg;
	log_info("signal %d: stopping", (int)sig);
	cl->stopping = true;
	for (size_t i = 0; i < cl->nforwards; i++) {
		if (cl->forwards[i].listener != NULL) {
			evconnlistener_free(cl->forwards[i].listener);
			cl->forwards[i].listener = NULL;
		}
	}
	for (unsigned i = 0; i < cl->nslots; i++) {
		struct slot *sl = &cl->slots[i];
		event_del(sl->retry_ev);
		if (sl->t != NULL) {
			if (sl->up) {
				add_tunnel_totals(&cl->totals, sl->t);
				sl->up = false;
			}
			tunnel_close(sl->t, "client stopping");
		}
	}
	struct timeval tv = {0, 200000};
	event_base_loopexit(cl->base, &tv);
}

static void target_of(const struct netaddr_hostport *hp, struct frame_addr *fa)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(fa, 0, sizeof(*fa));
	fa->port = hp->port;
	if (netaddr_literal(hp->host, hp->port, &ss, &len)) {
		if (ss.ss_family == AF_INET) {
			fa->type = FRAME_ADDR_IPV4;
			memcpy(fa->u.ipv4, &((struct sockaddr_in *)&ss)->sin_addr, 4);
		} else {
			fa->type = FRAME_ADDR_IPV6;
			memcpy(fa->u.ipv6, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
		}
		return;
	}
	fa->type = FRAME_ADDR_NAME;
	fa->name_len = (uint8_t)strlen(hp->host);
	memcpy(fa->u.name, hp->host, fa->name_len);
}

static uint32_t size_option(const struct config *cfg, int id, uint32_t def, const char *name)
{
	const char *v = config_get(cfg, id);
	uint64_t n;
	if (v == NULL)
		return def;
	if (config_parse_uint(v, SESSION_MIN_WINDOW, 1u << 30, &n) != WM_OK)
		usage_error("bad --%s: expected a size from 64K to 1G", name);
	return (uint32_t)n;
}

static void configure(struct client *cl, const struct config *cfg)
{
	char err[512];
	const char *v;

	if ((v = config_get(cfg, OPT_LOG_LEVEL)) != NULL) {
		enum log_level lvl;
		if (log_level_parse(v, &lvl) != WM_OK)
			usage_error("bad --log-level '%s': use error, warn, info or debug", v);
		log_init(PROG, lvl);
	}
	if (config_positional_count(cfg) > 0)
		usage_error("unexpected argument '%s'", config_positional(cfg, 0));
	if (config_get(cfg, OPT_SERVER) == NULL)
		usage_error("%s", "missing --server HOST:PORT");
	if (config_get(cfg, OPT_KEY) == NULL)
		usage_error("%s", "missing --key FILE (create one with wanmux-keygen FILE)");
	if (config_get(cfg, OPT_SERVER_KEY) == NULL)
		usage_error("%s", "missing --server-key PUBKEY|FILE");
	if (config_count(cfg, OPT_FORWARD) == 0)
		usage_error("%s", "nothing to do: give at least one --forward");
	if (netaddr_parse_hostport(config_get(cfg, OPT_SERVER), &cl->server, err, sizeof(err)) != 0)
		usage_error("--server: %s", err);

	tunnel_config_defaults(&cl->tcfg);
	cl->nslots = 4;
	if ((v = config_get(cfg, OPT_TUNNELS)) != NULL) {
		uint64_t n;
		if (config_parse_uint(v, 1, TUNNELS_MAX, &n) != WM_OK)
			usage_error("bad --tunnels '%s': expected 1 to 64", v);
		cl->nslots = (unsigned)n;
	}
	if ((v = config_get(cfg, OPT_COMPRESS)) != NULL &&
	    compress_mode_parse(v, &cl->tcfg.compress) != WM_OK)
		usage_error("bad --compress '%s': use auto, lz4, zlib or none", v);
	cl->tcfg.params.stream_window =
	    size_option(cfg, OPT_STREAM_WINDOW, SESSION_DEFAULT_STREAM_WINDOW, "stream-window");
	cl->tcfg.params.session_window =
	    size_option(cfg, OPT_SESSION_WINDOW, SESSION_DEFAULT_SESSION_WINDOW, "session-window");

	cl->nforwards = config_count(cfg, OPT_FORWARD);
	cl->forwards = calloc(cl->nforwards, sizeof(*cl->forwards));
	if (cl->forwards == NULL)
		fatal("out of memory");
	for (size_t i = 0; i < cl->nforwards; i++) {
		struct forward *fw = &cl->forwards[i];
		fw->cl = cl;
		if (netaddr_parse_forward(config_get_nth(cfg, OPT_FORWARD, i), &fw->spec, err,
					  sizeof(err)) != 0)
			usage_error("--forward: %s", err);
		target_of(&fw->spec.target, &fw->target);
	}

	if (keys_load_public(config_get(cfg, OPT_SERVER_KEY), cl->tcfg.server_pub, err,
			     sizeof(err)) != 0)
		fatal(err);
	if (keys_pair_load(config_get(cfg, OPT_KEY), &cl->key, err, sizeof(err)) != 0)
		fatal(err);
	if ((v = config_get(cfg, OPT_PSK)) != NULL) {
		if (keys_load_psk(v, cl->psk, err, sizeof(err)) != 0)
			fatal(err);
		cl->have_psk = true;
	}
	cl->tcfg.local = cl->key;
	cl->tcfg.psk = cl->have_psk ? cl->psk : NULL;
	randombytes_buf(cl->tcfg.session_id, sizeof(cl->tcfg.session_id));
}

static void log_totals(const struct client *cl)
{
	const struct totals *t = &cl->totals;
	double ratio_up = t->payload_up > 0 ? (double)t->raw_up / (double)t->payload_up : 1.0;
	double ratio_down =
	    t->payload_down > 0 ? (double)t->raw_down / (double)t->payload_down : 1.0;
	log_info("stats: connections=%llu bytes_up=%llu bytes_down=%llu wire_up=%llu "
		 "wire_down=%llu ratio_up=%.2f ratio_down=%.2f tunnels=%u tunnels_connected=%llu",
		 (unsigned long long)t->connections, (unsigned long long)t->raw_up,
		 (unsigned long long)t->raw_down, (unsigned long long)t->wire_up,
		 (unsigned long long)t->wire_down, ratio_up, ratio_down, cl->nslots,
		 (unsigned long long)t->tunnels_up);
}

int main(int argc, char **argv)
{
	struct client cl;
	struct config *cfg = NULL;
	char err[512];

	memset(&cl, 0, sizeof(cl));
	log_init(PROG, LOG_LEVEL_INFO);
	if (config_parse(options, argc, argv, &cfg, err, sizeof(err)) != 0)
		usage_error("%s", err);
	if (config_get(cfg, OPT_HELP) != NULL || config_get(cfg, OPT_VERSION) != NULL) {
		if (config_get(cfg, OPT_HELP) != NULL)
			fputs(usage_text, stdout);
		else
			puts(PROG " 0.1.0");
		config_free(cfg);
		return 0;
	}
	if (sodium_init() < 0)
		fatal("cannot initialise libsodium");
	signal(SIGPIPE, SIG_IGN);
	configure(&cl, cfg);

	cl.base = event_base_new();
	if (cl.base == NULL)
		fatal("cannot create the event loop");
	cl.dns = dns_new(cl.base);
	if (cl.dns == NULL)
		fatal("cannot set up DNS resolution");
	TAILQ_INIT(&cl.pending);

	for (size_t i = 0; i < cl.nforwards; i++) {
		struct forward *fw = &cl.forwards[i];
		int fd = netaddr_listen(&fw->spec.local, err, sizeof(err));
		if (fd < 0)
			fatal(err);
		fw->listener = evconnlistener_new(
		    cl.base, on_accept, fw, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
		if (fw->listener == NULL)
			fatal("cannot listen");
		log_info("forwarding %s:%u to %s:%u", fw->spec.local.host, fw->spec.local.port,
			 fw->spec.target.host, fw->spec.target.port);
	}

	for (unsigned i = 0; i < cl.nslots; i++) {
		struct slot *sl = &cl.slots[i];
		sl->cl = &cl;
		sl->no = (uint8_t)i;
		sl->retry_ev = evtimer_new(cl.base, on_retry, sl);
		if (sl->retry_ev == NULL)
			fatal("out of memory");
		slot_connect(sl);
	}
	cl.pending_timer = event_new(cl.base, -1, EV_PERSIST, on_pending_timer, &cl);
	struct timeval one = {1, 0};
	event_add(cl.pending_timer, &one);
	cl.sigint = evsignal_new(cl.base, SIGINT, on_signal, &cl);
	cl.sigterm = evsignal_new(cl.base, SIGTERM, on_signal, &cl);
	event_add(cl.sigint, NULL);
	event_add(cl.sigterm, NULL);

	event_base_dispatch(cl.base);

	log_totals(&cl);
	struct pending *p;
	while ((p = TAILQ_FIRST(&cl.pending)) != NULL) {
		TAILQ_REMOVE(&cl.pending, p, link);
		close(p->fd);
		free(p);
	}
	for (unsigned i = 0; i < cl.nslots; i++)
		event_free(cl.slots[i].retry_ev);
	for (size_t i = 0; i < cl.nforwards; i++)
		if (cl.forwards[i].listener != NULL)
			evconnlistener_free(cl.forwards[i].listener);
	free(cl.forwards);
	event_free(cl.pending_timer);
	event_free(cl.sigint);
	event_free(cl.sigterm);
	dns_free(cl.dns);
	event_base_free(cl.base);
	keys_pair_free(cl.key);
	config_free(cfg);
	sodium_memzero(cl.psk, sizeof(cl.psk));
	return 0;
}
