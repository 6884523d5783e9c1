/*
 * wanmux-client: options, start-up checks and signals. The tunnel pool is
 * client_pool.c, the listeners and their front ends client_listen.c,
 * client_socks.c and client_http.c, reverse forwards client_reverse.c; the
 * data path is common/ (tunnel, session, relay).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sodium.h>

#include "client.h"
#include "wanmux/acceptor.h"
#include "wanmux/acl.h"
#include "wanmux/authlimit.h"
#include "wanmux/cli.h"
#include "wanmux/config.h"
#include "wanmux/dns.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/notify.h"
#include "wanmux/userpass.h"

#define PROG "wanmux-client"

enum opt_id {
	OPT_SERVER,
	OPT_KEY,
	OPT_SERVER_KEY,
	OPT_FORWARD,
	OPT_SOCKS,
	OPT_SOCKS_AUTH,
	OPT_HTTP_PROXY,
	OPT_HTTP_AUTH,
	OPT_TRANSPARENT,
	OPT_REVERSE,
	OPT_SOURCE_ALLOW,
	OPT_SOURCE_DENY,
	OPT_MAX_CONNECTIONS,
	OPT_MAX_BUFFER,
	OPT_MAX_SESSION_BUFFER,
	OPT_TUNNELS,
	OPT_COMPRESS,
	OPT_DUPLICATE,
	OPT_QUEUE_CAP,
	OPT_PSK,
	OPT_CONFIG,
	OPT_STREAM_WINDOW,
	OPT_SESSION_WINDOW,
	OPT_LOG_LEVEL,
	OPT_REKEY_AFTER,
	OPT_REKEY_BYTES,
	OPT_TUNNEL_RCVBUF,
	OPT_ADMIN,
	OPT_ADMIN_ALLOW,
	OPT_CHECK_CONFIG,
	OPT_DRAIN_TIMEOUT,
	OPT_RESUME_TIMEOUT,
	OPT_SERVER_POLICY,
	OPT_HELP,
	OPT_VERSION,
};

static const struct config_option options[] = {
    {"server", 's', true, true, OPT_SERVER},
    {"key", 'k', true, false, OPT_KEY},
    {"server-key", 'K', true, false, OPT_SERVER_KEY},
    {"forward", 'L', true, true, OPT_FORWARD},
    {"socks", 'D', true, true, OPT_SOCKS},
    {"socks-auth", 0, true, false, OPT_SOCKS_AUTH},
    {"http-proxy", 0, true, true, OPT_HTTP_PROXY},
    {"http-auth", 0, true, false, OPT_HTTP_AUTH},
    {"transparent", 0, true, true, OPT_TRANSPARENT},
    {"reverse", 'R', true, true, OPT_REVERSE},
    {"source-allow", 0, true, true, OPT_SOURCE_ALLOW},
    {"source-deny", 0, true, true, OPT_SOURCE_DENY},
    {"max-connections", 0, true, false, OPT_MAX_CONNECTIONS},
    {"max-buffer", 0, true, false, OPT_MAX_BUFFER},
    {"max-session-buffer", 0, true, false, OPT_MAX_SESSION_BUFFER},
    {"tunnels", 'n', true, false, OPT_TUNNELS},
    {"compress", 0, true, false, OPT_COMPRESS},
    {"duplicate", 0, true, false, OPT_DUPLICATE},
    {"queue-cap", 0, true, false, OPT_QUEUE_CAP},
    {"psk", 0, true, false, OPT_PSK},
    {"config", 'c', true, false, OPT_CONFIG},
    {"stream-window", 0, true, false, OPT_STREAM_WINDOW},
    {"session-window", 0, true, false, OPT_SESSION_WINDOW},
    {"log-level", 0, true, false, OPT_LOG_LEVEL},
    {"rekey-after", 0, true, false, OPT_REKEY_AFTER},
    {"rekey-bytes", 0, true, false, OPT_REKEY_BYTES},
    {"tunnel-rcvbuf", 0, true, false, OPT_TUNNEL_RCVBUF},
    {"admin", 0, true, false, OPT_ADMIN},
    {"admin-allow", 0, true, true, OPT_ADMIN_ALLOW},
    {"check-config", 0, false, false, OPT_CHECK_CONFIG},
    {"drain-timeout", 0, true, false, OPT_DRAIN_TIMEOUT},
    {"resume-timeout", 0, true, false, OPT_RESUME_TIMEOUT},
    {"server-policy", 0, true, false, OPT_SERVER_POLICY},
    {"help", 'h', false, false, OPT_HELP},
    {"version", 'V', false, false, OPT_VERSION},
    {NULL, 0, false, false, 0},
};

static const char usage_text[] =
    "NAME\n"
    "    wanmux-client - branch end of the wanmux WAN-optimizing proxy pair\n"
    "\n"
    "SYNOPSIS\n"
    "    wanmux-client --server HOST:PORT[@KEY] ... --key FILE [--server-key PUBKEY|FILE]\n"
    "                  [--server-policy failover|spread]\n"
    "                  [--forward [LADDR:]LPORT:HOST:PORT ...] [--socks [LADDR:]PORT]\n"
    "                  [--http-proxy [LADDR:]PORT] [--transparent [LADDR:]PORT]\n"
    "                  [--reverse [SADDR:]SPORT:HOST:PORT ...] [--tunnels N]\n"
    "                  [--compress auto|lz4|zlib|none] [--duplicate auto|on|off]\n"
    "                  [--queue-cap on|off]\n"
    "                  [--psk FILE] [-c FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "    Listens for local TCP connections (port forwards, a SOCKS5 or HTTP proxy,\n"
    "    transparent redirects) and carries each one as a stream,\n"
    "    compressed and encrypted, over a few long-lived tuned TCP tunnels to\n"
    "    wanmux-server, which connects it to HOST:PORT. A new connection costs\n"
    "    no extra round trip: its first bytes travel with the request to open\n"
    "    it. Tunnels that drop are reconnected with backoff.\n"
    "\n"
    "OPTIONS\n"
    "    -s, --server HOST:PORT[@KEY]\n"
    "                             a wanmux-server to use (IPv6 as [ADDR]:PORT);\n"
    "                             KEY is its public key, base64 or a file\n"
    "                             (default --server-key). Repeatable: each server\n"
    "                             gets its own --tunnels and session. A name with\n"
    "                             several addresses is tried address by address,\n"
    "                             IPv6 and IPv4 in turn, 250 ms apart (RFC 8305)\n"
    "    --server-policy failover|spread\n"
    "                             failover (default): new streams go to the first\n"
    "                             server that is up, in order, which holds the\n"
    "                             tunnels; each other server keeps one warm\n"
    "                             tunnel; new streams move on when its tunnels\n"
    "                             close or leave a PING unanswered for 1.5 s; it\n"
    "                             is down when a dial or handshake fails or no\n"
    "                             tunnel is back within 3 s. spread: tunnels to\n"
    "                             every server, each new stream to the one with\n"
    "                             the most room (lowest RTT, fewest bytes queued)\n"
    "    -k, --key FILE           this client's private key (wanmux-keygen FILE);\n"
    "                             must not be readable by group or others. Its\n"
    "                             public key (FILE.pub) goes into the server's\n"
    "                             authorized-keys file.\n"
    "    -K, --server-key PUBKEY|FILE\n"
    "                             the server's public key, base64 or a file such\n"
    "                             as server.key.pub; the client talks to no other.\n"
    "                             The default for --server entries without @KEY\n"
    "    -L, --forward [LADDR:]LPORT:HOST:PORT\n"
    "                             listen on LADDR:LPORT (LADDR defaults to\n"
    "                             127.0.0.1) and forward each connection to\n"
    "                             HOST:PORT as seen from the server, like ssh -L.\n"
    "                             IPv6 in brackets. Repeatable.\n"
    "    -D, --socks [LADDR:]PORT SOCKS5 proxy (RFC 1928, CONNECT; names are\n"
    "                             resolved by the server). Repeatable, as are\n"
    "                             --http-proxy and --transparent (e.g. one on\n"
    "                             127.0.0.1 and one on [::1])\n"
    "    --socks-auth FILE        require SOCKS5 username/password (RFC 1929);\n"
    "                             FILE has 'user:password' lines, mode 0600\n"
    "    --http-proxy [LADDR:]PORT\n"
    "                             HTTP proxy: CONNECT host:port and absolute-form\n"
    "                             requests (GET http://host/path)\n"
    "    --http-auth FILE         require Basic proxy authentication (407)\n"
    "    --transparent [LADDR:]PORT\n"
    "                             accept connections redirected by nftables or\n"
    "                             iptables REDIRECT and carry each to its original\n"
    "                             destination (see README)\n"
    "    -R, --reverse [SADDR:]SPORT:HOST:PORT\n"
    "                             ask the server to listen on SADDR:SPORT (SADDR\n"
    "                             an address, default 127.0.0.1) and carry each\n"
    "                             connection made there back to HOST:PORT as seen\n"
    "                             from this client, like ssh -R. The server must\n"
    "                             permit it with --allow-listen. Repeatable.\n"
    "    --source-allow CIDR      only hosts in CIDR may use the listeners\n"
    "                             (repeatable; default: any host that can reach\n"
    "                             them, and they listen on loopback by default)\n"
    "    --source-deny CIDR       hosts in CIDR may not (repeatable; wins)\n"
    "    --max-connections N      open connections per listener (4096); more are\n"
    "                             refused, counted and logged\n"
    "    --max-buffer SIZE        bytes all streams may hold in buffers (256M);\n"
    "                             over it, tunnels holding more than an even\n"
    "                             share pause their local sockets\n"
    "    --max-session-buffer SIZE\n"
    "                             bytes the streams of one tunnel may hold in\n"
    "                             buffers (64M)\n"
    "    -n, --tunnels N          tunnels to keep open, 1-16 (default 4)\n"
    "    --compress MODE          auto (default: zlib below 64 Mbit/s, lz4 above;\n"
    "                             incompressible data sent raw), lz4, zlib\n"
    "                             or none\n"
    "    --duplicate MODE         auto (default: while loss is seen on a session\n"
    "                             of 2+ tunnels), on or off: also send small\n"
    "                             frames of interactive streams on a second tunnel\n"
    "    --queue-cap MODE         off (default) or on: while a stream exchanges\n"
    "                             small messages and a queue builds, bulk streams\n"
    "                             keep at most 110% of the link's bandwidth-delay\n"
    "                             product in flight\n"
    "    --psk FILE               pre-shared key, the same file as the server's\n"
    "    -c, --config FILE        read options from FILE: one 'name value' per\n"
    "                             line with long option names, '#' comments; the\n"
    "                             command line overrides it\n"
    "    --stream-window SIZE     receive window per stream (default 16M)\n"
    "    --session-window SIZE    receive window per tunnel (default 64M)\n"
    "    --log-level LEVEL        error, warn, info (default) or debug; info logs\n"
    "                             one access line per finished stream\n"
    "    --rekey-after DURATION   new record keys from a fresh X25519 exchange\n"
    "                             inside the tunnel after this long (1h; 0 off)\n"
    "    --rekey-bytes SIZE       ... or after this many bytes on the wire, both\n"
    "                             directions (64G; 0 off), whichever comes first\n"
    "    --tunnel-rcvbuf SIZE     receive buffer of each tunnel socket, set before\n"
    "                             connect; auto (default) keeps the kernel's\n"
    "                             autotuning\n"
    "    --admin [ADDR:]PORT      serve /metrics (Prometheus), /status (JSON) and\n"
    "                             a status page on ADDR (default 127.0.0.1)\n"
    "    --admin-allow CIDR       sources allowed on --admin (repeatable; default:\n"
    "                             loopback only); others get 403\n"
    "    --check-config           load and check everything a start would\n"
    "                             (options, files and their modes, keys,\n"
    "                             credentials), print 'configuration ok' and\n"
    "                             exit 0, or name the problem and exit 2;\n"
    "                             binds, connects and resolves nothing\n"
    "    --drain-timeout SECONDS  on SIGTERM/SIGINT, how long open streams may\n"
    "                             run on after GOAWAY (30; 0 = close at once)\n"
    "    --resume-timeout SECONDS how long a session waits for a tunnel when\n"
    "                             all are lost (120; local connections stay open,\n"
    "                             then streams are reset; 0 = reset at once)\n"
    "    -h, --help               this text\n"
    "    -V, --version            version\n"
    "\n"
    "EXAMPLES\n"
    "    wanmux-keygen ~/.wanmux/client.key\n"
    "    wanmux-client --server dc.example.net:7700 --key ~/.wanmux/client.key \\\n"
    "        --server-key server.key.pub --forward 8443:intranet.example:443\n"
    "\n"
    "SIGNALS\n"
    "    SIGHUP re-reads the config file and every file it names; listeners\n"
    "    (--forward, --socks, --http-proxy, --transparent) added start, removed\n"
    "    ones stop accepting while their connections run on. A configuration\n"
    "    with any error is refused and the running one stays. --server,\n"
    "    --server-key, --server-policy, --key, --psk, --tunnels and --reverse\n"
    "    change only at a\n"
    "    restart. SIGTERM/SIGINT drain (see --drain-timeout); a second one\n"
    "    stops at once.\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after SIGTERM or SIGINT (a summary of the traffic is logged), 1 on a\n"
    "    runtime failure (unreadable key, port in use), 2 on a usage error.\n"
    "    --check-config: 0 when the configuration is good, 2 for any problem.\n";

/* --check-config: every problem is one line on stderr and exit status 2. */
static bool check_only;

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (check_only)
		fputc('\n', stderr);
	else
		fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
	exit(2);
}

static void fatal(const char *msg) __attribute__((noreturn));

static void fatal(const char *msg)
{
	fprintf(stderr, PROG ": %s\n", msg);
	exit(check_only ? 2 : 1);
}

static struct event *sigint_ev, *sigterm_ev, *sighup_ev, *drain_tick_ev, *drain_deadline_ev;

static void stop_now(struct client *cl)
{
	event_del(drain_tick_ev);
	event_del(drain_deadline_ev);
	size_t streams = 0;
	client_pool_reap(cl, &streams);
	cl->drain_cut += streams;
	client_listen_stop(cl);
	client_pool_stop(cl);
	/* Let the closes run, then leave the loop. */
	struct timeval tv = {0, 200000};
	event_base_loopexit(cl->base, &tv);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	size_t streams = 0;
	if (client_pool_reap(cl, &streams) > 0)
		return;
	event_del(drain_tick_ev);
	event_del(drain_deadline_ev);
	struct timeval tv = {0, 200000};
	event_base_loopexit(cl->base, &tv);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct client *cl = arg;
	size_t streams = 0;
	client_pool_reap(cl, &streams);
	log_warn("--drain-timeout passed: cutting %zu open streams", streams);
	stop_now(cl);
}

/* First SIGTERM/SIGINT: stop accepting, GOAWAY, let open streams finish for
 * up to --drain-timeout. A second signal stops at once. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct client *cl = arg;
	if (cl->draining) {
		log_info("signal %d while draining: stopping now", (int)sig);
		stop_now(cl);
		return;
	}
	cl->draining = true;
	notify_stopping();
	log_throttle_flush();
	log_info("signal %d: stopping; log lines so far: %llu held back by the throttle, %llu lost "
		 "to a full output",
		 (int)sig, (unsigned long long)log_suppressed_total(),
		 (unsigned long long)log_dropped_total());
	client_listen_stop(cl);
	client_pool_drain(cl);
	size_t streams = 0;
	size_t sessions = client_pool_reap(cl, &streams);
	log_info("signal %d: draining: listeners closed, GOAWAY sent on %zu sessions, waiting up "
		 "to %llu ms (--drain-timeout) for %zu open streams; a second signal stops at "
		 "once",
		 (int)sig, sessions, (unsigned long long)cl->drain_timeout_ms, streams);
	struct timeval tick = {0, 100000};
	struct timeval deadline = {(time_t)(cl->drain_timeout_ms / 1000),
				   (suseconds_t)(cl->drain_timeout_ms % 1000) * 1000};
	event_add(drain_tick_ev, &tick);
	event_add(drain_deadline_ev, &deadline);
}

/* Everything the options set, built completely before any of it is used. */
struct client_conf {
	struct tunnel_config tcfg;
	struct cli_process proc;
	struct client_server *servers;
	size_t nservers;
	enum client_policy policy;
	unsigned nslots;
	struct listener **listeners;
	size_t nlisteners;
	struct reverse *reverses;
	size_t nreverses;
	size_t max_connections;
	struct acl *source_allow;
	struct acl *source_deny;
	struct userpass *socks_auth;
	struct userpass *http_auth;
	struct keypair *key;
	uint8_t psk[KEYS_LEN];
	bool have_psk;
	uint64_t drain_timeout_ms;
	struct admin_options admin_opt;
};

static void conf_free(struct client_conf *c)
{
	acl_free(c->admin_opt.allow);
	for (size_t i = 0; i < c->nlisteners; i++)
		free(c->listeners[i]);
	free(c->listeners);
	free(c->reverses);
	if (c->servers != NULL)
		sodium_memzero(c->servers, c->nservers * sizeof(*c->servers));
	free(c->servers);
	acl_free(c->source_allow);
	acl_free(c->source_deny);
	userpass_free(c->socks_auth);
	userpass_free(c->http_auth);
	keys_pair_free(c->key);
	sodium_memzero(c->psk, sizeof(c->psk));
	memset(c, 0, sizeof(*c));
}

#define LOAD_USAGE 2
#define LOAD_RUNTIME 1

/* A bad value of option id: one line in err (FILE:LINE first when the
 * config file gave it); a usage error at start-up. */
#define bad_value(...) (config_value_error(__VA_ARGS__), LOAD_USAGE)

static struct listener *add_listener(struct client_conf *c, enum listener_kind kind)
{
	struct listener *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return NULL;
	l->kind = kind;
	c->listeners[c->nlisteners++] = l;
	return l;
}

/* "[LADDR:]PORT" for the proxy listeners; LADDR defaults to loopback. */
static int proxy_listener(struct client_conf *c, const struct config *cfg, int id, size_t nth,
			  enum listener_kind kind, const char *opt, char *err, size_t errlen)
{
	char why[256];
	const char *spec = config_get_nth(cfg, id, nth);
	struct listener *l = add_listener(c, kind);
	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return LOAD_RUNTIME;
	}
	if (netaddr_parse_port(spec, &l->local.port) == 0) {
		snprintf(l->local.host, sizeof(l->local.host), "127.0.0.1");
		return 0;
	}
	if (netaddr_parse_hostport(spec, &l->local, why, sizeof(why)) != 0)
		return bad_value(cfg, id, nth, err, errlen, "--%s: %s", opt, why);
	return 0;
}

/* CIDR list of a --source-* option, or NULL when none is given. */
static int source_acl(const struct config *cfg, int id, const char *opt, struct acl **out,
		      char *err, size_t errlen)
{
	char why[256];
	size_t n = config_count(cfg, id);
	*out = NULL;
	if (n == 0)
		return 0;
	struct acl *acl = acl_new();
	if (acl == NULL) {
		snprintf(err, errlen, "out of memory");
		return LOAD_RUNTIME;
	}
	*out = acl;
	for (size_t i = 0; i < n; i++) {
		const char *rule = config_get_nth(cfg, id, i);
		/* An address or CIDR: names make no sense for sources. */
		char addr[NETADDR_HOST_MAX];
		struct sockaddr_storage ss;
		socklen_t sl;
		snprintf(addr, sizeof(addr), "%s", rule[0] == '[' ? rule + 1 : rule);
		addr[strcspn(addr, "/]")] = '\0';
		if (!netaddr_literal(addr, 0, &ss, &sl))
			return bad_value(cfg, id, i, err, errlen,
					 "--%s: '%s' is not an address or CIDR", opt, rule);
		if (acl_add(acl, rule, why, sizeof(why)) != 0)
			return bad_value(cfg, id, i, err, errlen, "--%s: %s", opt, why);
	}
	return 0;
}

/* The failed-login throttle both proxy front ends share, and a warning for
 * each credentials file that still holds plain-text passwords. */
static int proxy_auth_setup(struct client *cl, const struct config *cfg)
{
	const struct {
		struct userpass *db;
		int opt;
	} files[] = {{cl->socks_auth, OPT_SOCKS_AUTH}, {cl->http_auth, OPT_HTTP_AUTH}};

	if (cl->socks_auth == NULL && cl->http_auth == NULL)
		return WM_OK;
	/* Kept across reloads: the penalties of guessing sources stay. */
	if (cl->auth_limit == NULL)
		cl->auth_limit = authlimit_new();
	if (cl->auth_limit == NULL)
		return WM_ERR_NOMEM;
	cl->auth_refused.name = "proxy logins from a source under the failed-login penalty";
	cl->auth_blocked.name = "failed proxy logins per source";
	cl->auth_busy.name = "Argon2id verifications of proxy logins, all sources";
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		size_t plain = userpass_plain_count(files[i].db);

		if (plain > 0)
			log_warn("%s: %zu of %zu passwords in plain text; replace them with "
				 "hashes from 'wanmux-keygen --hash-password'",
				 config_get(cfg, files[i].opt), plain, userpass_count(files[i].db));
	}
	return WM_OK;
}

/*
 * The --server HOST:PORT[@KEY] entries, in order, each with its key (KEY,
 * else --server-key). 0, or LOAD_USAGE / LOAD_RUNTIME with one line in err.
 */
static int load_servers(const struct config *cfg, struct client_conf *c, char *err, size_t errlen)
{
	char why[512];
	size_t n = config_count(cfg, OPT_SERVER);
	const char *dflt = config_get(cfg, OPT_SERVER_KEY);
	if (n > CLIENT_SERVERS_MAX) {
		snprintf(err, errlen, "--server given %zu times; at most %d", n,
			 CLIENT_SERVERS_MAX);
		return LOAD_USAGE;
	}
	c->servers = calloc(n, sizeof(*c->servers));
	if (c->servers == NULL) {
		snprintf(err, errlen, "out of memory");
		return LOAD_RUNTIME;
	}
	for (size_t i = 0; i < n; i++) {
		struct client_server *srv = &c->servers[c->nservers];
		const char *spec = config_get_nth(cfg, OPT_SERVER, i);
		char hostport[NETADDR_HOST_MAX + 16];
		const char *at = strchr(spec, '@');
		size_t hlen = at != NULL ? (size_t)(at - spec) : strlen(spec);
		if (hlen >= sizeof(hostport))
			return bad_value(cfg, OPT_SERVER, i, err, errlen, "--server '%s': too long",
					 spec);
		memcpy(hostport, spec, hlen);
		hostport[hlen] = '\0';
		if (netaddr_parse_hostport(hostport, &srv->hp, why, sizeof(why)) != 0)
			return bad_value(cfg, OPT_SERVER, i, err, errlen, "--server: %s", why);
		if (at != NULL && at[1] == '\0')
			return bad_value(cfg, OPT_SERVER, i, err, errlen,
					 "--server '%s': nothing after '@' (give KEY, or leave "
					 "out '@' for --server-key)",
					 spec);
		const char *key = at != NULL ? at + 1 : dflt;
		if (key == NULL) {
			snprintf(err, errlen,
				 "--server %s has no key: give --server-key PUBKEY|FILE or "
				 "HOST:PORT@KEY",
				 hostport);
			return LOAD_USAGE;
		}
		if (keys_load_public(key, srv->pub, why, sizeof(why)) != 0)
			return bad_value(cfg, OPT_SERVER, at != NULL ? i : SIZE_MAX, err, errlen,
					 "--server %s: %s", hostport, why);
		snprintf(srv->name, sizeof(srv->name),
			 strchr(srv->hp.host, ':') != NULL ? "[%s]:%u" : "%s:%u", srv->hp.host,
			 srv->hp.port);
		for (size_t k = 0; k < c->nservers; k++)
			if (strcmp(c->servers[k].name, srv->name) == 0)
				return bad_value(cfg, OPT_SERVER, i, err, errlen,
						 "--server %s is given twice", srv->name);
		c->nservers++;
	}
	return 0;
}

/*
 * Builds c from cfg: options and every file they name. Returns 0, or
 * LOAD_USAGE / LOAD_RUNTIME with one line in err (c is then freed).
 */
static int load_conf(const struct config *cfg, struct client_conf *c, char *err, size_t errlen)
{
	char why[512];
	const char *v;
	uint64_t n;
	int bad_id;
	int rc;

	static const struct cli_tunnel_ids shared = {
	    OPT_LOG_LEVEL,	OPT_COMPRESS,		OPT_STREAM_WINDOW, OPT_SESSION_WINDOW,
	    OPT_MAX_BUFFER,	OPT_MAX_SESSION_BUFFER, OPT_REKEY_AFTER,   OPT_REKEY_BYTES,
	    OPT_RESUME_TIMEOUT, OPT_DUPLICATE,		OPT_QUEUE_CAP,	   OPT_TUNNEL_RCVBUF,
	};
	memset(c, 0, sizeof(*c));
	tunnel_config_defaults(&c->tcfg);
	if (cli_tunnel_parse(cfg, &shared, &c->tcfg, &c->proc, &bad_id, why, sizeof(why)) !=
	    WM_OK) {
		rc = bad_value(cfg, bad_id, SIZE_MAX, err, errlen, "%s", why);
		goto fail;
	}
	if (cli_admin_options(cfg, OPT_ADMIN, OPT_ADMIN_ALLOW, &c->admin_opt, why, sizeof(why)) !=
	    WM_OK) {
		rc = bad_value(cfg, OPT_ADMIN, SIZE_MAX, err, errlen, "%s", why);
		goto fail;
	}
	rc = LOAD_USAGE;
	if (config_positional_count(cfg) > 0) {
		snprintf(err, errlen, "unexpected argument '%s'", config_positional(cfg, 0));
		goto fail;
	}
	if (config_get(cfg, OPT_SERVER) == NULL) {
		snprintf(err, errlen, "missing --server HOST:PORT");
		goto fail;
	}
	if (config_get(cfg, OPT_KEY) == NULL) {
		snprintf(err, errlen, "missing --key FILE (create one with wanmux-keygen FILE)");
		goto fail;
	}
	rc = load_servers(cfg, c, err, errlen);
	if (rc != 0)
		goto fail;
	rc = LOAD_USAGE;
	c->policy = CLIENT_POLICY_FAILOVER;
	if ((v = config_get(cfg, OPT_SERVER_POLICY)) != NULL) {
		if (strcmp(v, "spread") == 0) {
			c->policy = CLIENT_POLICY_SPREAD;
		} else if (strcmp(v, "failover") != 0) {
			rc = bad_value(cfg, OPT_SERVER_POLICY, SIZE_MAX, err, errlen,
				       "bad --server-policy '%s': expected failover or spread", v);
			goto fail;
		}
	}

	c->nslots = 4;
	if ((v = config_get(cfg, OPT_TUNNELS)) != NULL) {
		if (config_parse_uint(v, 1, CLIENT_TUNNELS_MAX, &n) != WM_OK) {
			rc = bad_value(cfg, OPT_TUNNELS, SIZE_MAX, err, errlen,
				       "bad --tunnels '%s': expected 1 to 16", v);
			goto fail;
		}
		c->nslots = (unsigned)n;
	}
	c->drain_timeout_ms = CLIENT_DRAIN_TIMEOUT_MS;
	if (cli_drain_timeout(cfg, OPT_DRAIN_TIMEOUT, &c->drain_timeout_ms, err, errlen) != WM_OK) {
		rc = LOAD_USAGE;
		goto fail;
	}

	size_t nforward = config_count(cfg, OPT_FORWARD);
	size_t nmax = nforward + config_count(cfg, OPT_SOCKS) + config_count(cfg, OPT_HTTP_PROXY) +
		      config_count(cfg, OPT_TRANSPARENT);
	c->listeners = calloc(nmax + 1, sizeof(*c->listeners));
	c->nreverses = config_count(cfg, OPT_REVERSE);
	c->reverses = calloc(c->nreverses + 1, sizeof(*c->reverses));
	if (c->listeners == NULL || c->reverses == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = LOAD_RUNTIME;
		goto fail;
	}
	for (size_t i = 0; i < nforward; i++) {
		struct netaddr_forward fw;
		if (netaddr_parse_forward(config_get_nth(cfg, OPT_FORWARD, i), &fw, why,
					  sizeof(why)) != 0) {
			rc = bad_value(cfg, OPT_FORWARD, i, err, errlen, "--forward: %s", why);
			goto fail;
		}
		struct listener *l = add_listener(c, LISTENER_FORWARD);
		if (l == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = LOAD_RUNTIME;
			goto fail;
		}
		l->local = fw.local;
		l->target = fw.target;
		client_frame_addr(&l->target, &l->target_addr);
	}
	static const struct {
		int id;
		enum listener_kind kind;
		const char *name;
	} proxies[] = {
	    {OPT_SOCKS, LISTENER_SOCKS, "socks"},
	    {OPT_HTTP_PROXY, LISTENER_HTTP, "http-proxy"},
	    {OPT_TRANSPARENT, LISTENER_TRANSPARENT, "transparent"},
	};
	for (size_t i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++) {
		for (size_t k = 0; k < config_count(cfg, proxies[i].id); k++) {
			rc = proxy_listener(c, cfg, proxies[i].id, k, proxies[i].kind,
					    proxies[i].name, err, errlen);
			if (rc != 0)
				goto fail;
		}
	}
	/* Two listeners on one address would fail at bind; say so before. */
	for (size_t i = 0; i < c->nlisteners; i++)
		for (size_t j = 0; j < i; j++)
			if (c->listeners[i]->local.port == c->listeners[j]->local.port &&
			    strcmp(c->listeners[i]->local.host, c->listeners[j]->local.host) == 0) {
				snprintf(err, errlen, "%s:%u is given to two listeners",
					 c->listeners[i]->local.host, c->listeners[i]->local.port);
				rc = LOAD_USAGE;
				goto fail;
			}
	rc = LOAD_USAGE;
	for (size_t i = 0; i < c->nreverses; i++) {
		struct reverse *rv = &c->reverses[i];
		struct netaddr_forward fw;
		struct sockaddr_storage ss;
		socklen_t sl;
		if (netaddr_parse_forward(config_get_nth(cfg, OPT_REVERSE, i), &fw, why,
					  sizeof(why)) != 0) {
			rc = bad_value(cfg, OPT_REVERSE, i, err, errlen, "--reverse: %s", why);
			goto fail;
		}
		rv->server_side = fw.local;
		rv->target = fw.target;
		if (strcmp(rv->server_side.host, "localhost") == 0)
			snprintf(rv->server_side.host, sizeof(rv->server_side.host), "127.0.0.1");
		/* The server binds it without a resolver: an address, not a name. */
		if (!netaddr_literal(rv->server_side.host, rv->server_side.port, &ss, &sl)) {
			rc = bad_value(cfg, OPT_REVERSE, i, err, errlen,
				       "--reverse: '%s' is not an IP address (the server side "
				       "must be an address)",
				       rv->server_side.host);
			goto fail;
		}
		client_frame_addr(&rv->server_side, &rv->listen_addr);
	}
	if (c->nlisteners == 0 && c->nreverses == 0) {
		snprintf(err, errlen,
			 "nothing to do: give --forward, --socks, --http-proxy, "
			 "--transparent or --reverse");
		goto fail;
	}
	c->max_connections = 4096;
	if ((v = config_get(cfg, OPT_MAX_CONNECTIONS)) != NULL) {
		if (config_parse_uint(v, 1, 1u << 24, &n) != WM_OK) {
			rc = bad_value(cfg, OPT_MAX_CONNECTIONS, SIZE_MAX, err, errlen,
				       "bad --max-connections '%s'", v);
			goto fail;
		}
		c->max_connections = (size_t)n;
	}
	rc = source_acl(cfg, OPT_SOURCE_ALLOW, "source-allow", &c->source_allow, err, errlen);
	if (rc != 0)
		goto fail;
	rc = source_acl(cfg, OPT_SOURCE_DENY, "source-deny", &c->source_deny, err, errlen);
	if (rc != 0)
		goto fail;
	rc = LOAD_USAGE;
	if (config_get(cfg, OPT_SOCKS_AUTH) != NULL && config_get(cfg, OPT_SOCKS) == NULL) {
		snprintf(err, errlen, "--socks-auth needs --socks");
		goto fail;
	}
	if (config_get(cfg, OPT_HTTP_AUTH) != NULL && config_get(cfg, OPT_HTTP_PROXY) == NULL) {
		snprintf(err, errlen, "--http-auth needs --http-proxy");
		goto fail;
	}

	/* Files: runtime failures from here on. */
	rc = LOAD_RUNTIME;
	if ((v = config_get(cfg, OPT_SOCKS_AUTH)) != NULL &&
	    userpass_load(v, &c->socks_auth, err, errlen) != 0)
		goto fail;
	if ((v = config_get(cfg, OPT_HTTP_AUTH)) != NULL &&
	    userpass_load(v, &c->http_auth, err, errlen) != 0)
		goto fail;
	if (keys_pair_load(config_get(cfg, OPT_KEY), &c->key, err, errlen) != 0)
		goto fail;
	if ((v = config_get(cfg, OPT_PSK)) != NULL) {
		if (keys_load_psk(v, c->psk, err, errlen) != 0)
			goto fail;
		c->have_psk = true;
	}
	return 0;

fail:
	conf_free(c);
	return rc;
}

static bool same_hostport(const struct netaddr_hostport *a, const struct netaddr_hostport *b)
{
	return strcmp(a->host, b->host) == 0 && a->port == b->port;
}

static struct listener *find_listener(struct listener **ls, size_t n,
				      const struct netaddr_hostport *local)
{
	for (size_t i = 0; i < n; i++)
		if (ls[i] != NULL && same_hostport(&ls[i]->local, local))
			return ls[i];
	return NULL;
}

/*
 * Binds the listeners of c that are not already open (a local address the
 * running configuration listens on is kept, with its socket). On a failure
 * every socket opened here closes again: 0 or -1 with err.
 */
static int open_new_listeners(struct client *cl, struct client_conf *c, char *err, size_t errlen)
{
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct listener *l = c->listeners[i];
		l->cl = cl;
		if (find_listener(cl->listeners, cl->nlisteners, &l->local) != NULL)
			continue;
		if (client_listen_open(cl, l, err, errlen) != 0) {
			for (size_t k = 0; k < i; k++)
				client_listen_close(c->listeners[k]);
			return -1;
		}
	}
	return 0;
}

/* Frees retired listeners whose last connection has closed. */
static void sweep_retired(struct client *cl)
{
	size_t keep = 0;
	for (size_t i = 0; i < cl->nretired; i++) {
		if (cl->retired[i]->active == 0)
			free(cl->retired[i]);
		else
			cl->retired[keep++] = cl->retired[i];
	}
	cl->nretired = keep;
}

/*
 * Reload: listeners of c take the place of the running ones. One already
 * listening on the same address is kept (its socket and its connections),
 * taking the new kind and target; one no longer configured stops accepting
 * and is retired while its connections run on.
 */
static int swap_listeners(struct client *cl, struct client_conf *c)
{
	struct listener **retired =
	    realloc(cl->retired, (cl->nretired + cl->nlisteners + 1) * sizeof(*retired));
	if (retired == NULL)
		return WM_ERR_NOMEM;
	cl->retired = retired;
	for (size_t i = 0; i < c->nlisteners; i++) {
		struct listener *nl = c->listeners[i];
		struct listener *old = find_listener(cl->listeners, cl->nlisteners, &nl->local);
		if (old == NULL)
			continue;
		bool changed = old->kind != nl->kind || (nl->kind == LISTENER_FORWARD &&
							 !same_hostport(&old->target, &nl->target));
		old->kind = nl->kind;
		old->target = nl->target;
		old->target_addr = nl->target_addr;
		if (changed)
			client_listen_log(old, "reload: now ");
		free(nl);
		c->listeners[i] = old;
		for (size_t k = 0; k < cl->nlisteners; k++)
			if (cl->listeners[k] == old)
				cl->listeners[k] = NULL;
	}
	for (size_t k = 0; k < cl->nlisteners; k++) {
		struct listener *gone = cl->listeners[k];
		if (gone == NULL)
			continue;
		client_listen_close(gone);
		client_listen_log(gone, "reload: removed, no longer listening: ");
		log_info("reload: %zu connections of %s:%u run on", gone->active, gone->local.host,
			 gone->local.port);
		cl->retired[cl->nretired++] = gone;
	}
	free(cl->listeners);
	cl->listeners = c->listeners;
	cl->nlisteners = c->nlisteners;
	c->listeners = NULL;
	c->nlisteners = 0; /* transferred */
	sweep_retired(cl);
	return WM_OK;
}

static bool same_reverses(const struct client *cl, const struct client_conf *c)
{
	if (cl->nreverses != c->nreverses)
		return false;
	for (size_t i = 0; i < c->nreverses; i++)
		if (!same_hostport(&cl->reverses[i].server_side, &c->reverses[i].server_side) ||
		    !same_hostport(&cl->reverses[i].target, &c->reverses[i].target))
			return false;
	return true;
}

/* Reload: the server list, its keys and the policy stay until a restart;
 * say what was asked and what runs on. */
static void warn_servers_changed(const struct client *cl, const struct client_conf *c)
{
	bool same = c->nservers == cl->nservers;
	for (size_t i = 0; same && i < c->nservers; i++)
		same = strcmp(c->servers[i].name, cl->servers[i].name) == 0;
	if (!same) {
		char list[512];
		size_t len = 0;
		list[0] = '\0';
		for (size_t i = 0; i < cl->nservers && len < sizeof(list); i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
						i > 0 ? ", " : "", cl->servers[i].name);
		log_warn("reload: the --server list changed; it takes effect at a restart; "
			 "tunnels still go to %s",
			 list);
		return;
	}
	for (size_t i = 0; i < c->nservers; i++)
		if (sodium_memcmp(c->servers[i].pub, cl->servers[i].pub, KEYS_LEN) != 0)
			log_warn("reload: the key of --server %s changed (--server-key or @KEY); "
				 "it takes effect at a restart",
				 c->servers[i].name);
	if (c->policy != cl->policy)
		log_warn("reload: --server-policy changed; it takes effect at a restart");
}

/*
 * Swaps c in; c is emptied. At start-up (cl->key NULL) everything is taken.
 * On a reload the peer and identity (--server, --server-key, --key, --psk),
 * --tunnels and --reverse stay until a restart, each change logged; the
 * listeners must already be open (open_new_listeners).
 */
static int apply_conf(struct client *cl, struct client_conf *c)
{
	bool initial = cl->key == NULL;
	if (initial) {
		cl->listeners = c->listeners;
		cl->nlisteners = c->nlisteners;
		for (size_t i = 0; i < cl->nlisteners; i++)
			cl->listeners[i]->cl = cl;
		c->listeners = NULL;
		c->nlisteners = 0;
		cl->servers = c->servers;
		cl->nservers = c->nservers;
		c->servers = NULL;
		c->nservers = 0;
		cl->policy = c->policy;
		for (size_t i = 0; i < cl->nservers; i++)
			randombytes_buf(cl->servers[i].session_id,
					sizeof(cl->servers[i].session_id));
		cl->nslots = c->nslots;
		cl->reverses = c->reverses;
		cl->nreverses = c->nreverses;
		c->reverses = NULL;
		cl->key = c->key;
		c->key = NULL;
		memcpy(cl->psk, c->psk, sizeof(cl->psk));
		cl->have_psk = c->have_psk;
		cl->tcfg = c->tcfg;
		cl->admin_opt = c->admin_opt;
		c->admin_opt.allow = NULL; /* transferred */
	} else {
		if (swap_listeners(cl, c) != WM_OK)
			return WM_ERR_NOMEM;
		warn_servers_changed(cl, c);
		if (sodium_memcmp(c->key->pub, cl->key->pub, KEYS_LEN) != 0)
			log_warn("reload: the --key file holds a new key; it takes effect at a "
				 "restart");
		if (c->have_psk != cl->have_psk ||
		    sodium_memcmp(c->psk, cl->psk, sizeof(c->psk)) != 0)
			log_warn("reload: --psk changed; it takes effect at a restart");
		if (c->nslots != cl->nslots)
			log_warn("reload: --tunnels %u ignored until a restart; keeping %u",
				 c->nslots, cl->nslots);
		if (c->admin_opt.enabled != cl->admin_opt.enabled ||
		    (c->admin_opt.enabled &&
		     !same_hostport(&c->admin_opt.bind, &cl->admin_opt.bind)))
			log_warn("reload: --admin changes take effect at a restart");
		if (!same_reverses(cl, c))
			log_warn("reload: --reverse changes take effect at a restart");
		/* Tunnels copy their config: new values apply to new tunnels. */
		struct tunnel_config next = c->tcfg;
		cl->tcfg = next;
	}
	cl->tcfg.local = cl->key;
	cl->tcfg.psk = cl->have_psk ? cl->psk : NULL;
	cli_process_apply(PROG, &c->proc);
	cl->drain_timeout_ms = c->drain_timeout_ms;
	cl->max_connections = c->max_connections;
	cl->connections_limit.name = "connections per listener (--max-connections)";
	acl_free(cl->source_allow);
	acl_free(cl->source_deny);
	userpass_free(cl->socks_auth);
	userpass_free(cl->http_auth);
	cl->source_allow = c->source_allow;
	cl->source_deny = c->source_deny;
	cl->socks_auth = c->socks_auth;
	cl->http_auth = c->http_auth;
	c->source_allow = c->source_deny = NULL;
	c->socks_auth = c->http_auth = NULL; /* transferred */
	conf_free(c);
	return WM_OK;
}

/* SIGHUP: read the options and every file they name again; any error
 * refuses the whole new configuration and the running one stays. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct client *cl = arg;
	struct config *cfg = NULL;
	struct client_conf c;
	char err[1024];

	if (cl->draining)
		return;
	notify_reloading();
	cl->reloads++;
	if (config_parse(options, cl->argc, cl->argv, &cfg, err, sizeof(err)) != 0 ||
	    load_conf(cfg, &c, err, sizeof(err)) != 0) {
		cl->reloads_failed++;
		log_error("reload refused, the running configuration stays: %s", err);
	} else if (open_new_listeners(cl, &c, err, sizeof(err)) != 0) {
		conf_free(&c);
		cl->reloads_failed++;
		log_error("reload refused, the running configuration stays: %s", err);
	} else if (apply_conf(cl, &c) != WM_OK || proxy_auth_setup(cl, cfg) != WM_OK) {
		for (size_t i = 0; i < c.nlisteners; i++)
			if (find_listener(cl->listeners, cl->nlisteners, &c.listeners[i]->local) ==
			    NULL)
				client_listen_close(c.listeners[i]);
		conf_free(&c);
		cl->reloads_failed++;
		log_error("reload refused, the running configuration stays: out of memory");
	} else {
		log_info("reloaded: %zu listeners, %zu retired with open connections (%llu "
			 "reloads, %llu refused)",
			 cl->nlisteners, cl->nretired, (unsigned long long)cl->reloads,
			 (unsigned long long)cl->reloads_failed);
	}
	config_free(cfg);
	notify_ready();
}

static void log_totals(const struct client *cl)
{
	const struct client_totals *t = &cl->totals;
	double ratio_up = t->payload_up > 0 ? (double)t->raw_up / (double)t->payload_up : 1.0;
	double ratio_down =
	    t->payload_down > 0 ? (double)t->raw_down / (double)t->payload_down : 1.0;
	log_info("stats: connections=%llu bytes_up=%llu bytes_down=%llu wire_up=%llu "
		 "wire_down=%llu ratio_up=%.2f ratio_down=%.2f tunnels=%u tunnels_connected=%llu "
		 "rekeys=%llu",
		 (unsigned long long)t->connections, (unsigned long long)t->raw_up,
		 (unsigned long long)t->raw_down, (unsigned long long)t->wire_up,
		 (unsigned long long)t->wire_down, ratio_up, ratio_down,
		 cl->nslots * (unsigned)cl->nservers, (unsigned long long)t->tunnels_up,
		 (unsigned long long)t->rekeys);
}

/* Everything load_conf, apply_conf and proxy_auth_setup handed to cl: the
 * same for --check-config and after the loop (admin_start took the admin
 * rules, when it ran). */
static void free_loaded(struct client *cl)
{
	acl_free(cl->admin_opt.allow);
	for (size_t i = 0; i < cl->nlisteners; i++)
		free(cl->listeners[i]);
	free(cl->listeners);
	for (size_t i = 0; i < cl->nretired; i++)
		free(cl->retired[i]);
	free(cl->retired);
	free(cl->reverses);
	if (cl->servers != NULL)
		sodium_memzero(cl->servers, cl->nservers * sizeof(*cl->servers));
	free(cl->servers);
	acl_free(cl->source_allow);
	acl_free(cl->source_deny);
	userpass_free(cl->socks_auth);
	userpass_free(cl->http_auth);
	authlimit_free(cl->auth_limit);
	keys_pair_free(cl->key);
	sodium_memzero(cl->psk, sizeof(cl->psk));
}

int main(int argc, char **argv)
{
	struct client cl;
	struct client_conf conf;
	struct config *cfg = NULL;
	char err[1024];

	memset(&cl, 0, sizeof(cl));
	cli_process_init();
	log_init(PROG, LOG_LEVEL_INFO);
	/* Known before parsing, so that a bad option or config line is already
	 * reported the --check-config way. */
	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
		if (strcmp(argv[i], "--check-config") == 0)
			check_only = true;
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
	check_only = check_only || config_get(cfg, OPT_CHECK_CONFIG) != NULL;
	int rc = load_conf(cfg, &conf, err, sizeof(err));
	if (rc == LOAD_USAGE)
		usage_error("%s", err);
	if (rc != 0)
		fatal(err);
	if (apply_conf(&cl, &conf) != WM_OK || proxy_auth_setup(&cl, cfg) != WM_OK)
		fatal("out of memory");
	config_free(cfg);
	cl.argc = argc;
	cl.argv = argv;
	/* A local connection holds a descriptor, as does each tunnel and each
	 * reverse stream's connection to its target. Counted once at start: a
	 * reload does not raise the limit again. */
	if (!check_only)
		acceptor_fd_budget(
		    (uint64_t)cl.nlisteners * cl.max_connections + cl.nslots * cl.nservers +
			(cl.nreverses > 0
			     ? (uint64_t)cl.nslots * cl.nservers * cl.tcfg.params.max_streams
			     : 0) +
			32,
		    "--max-connections per listener (and --max-streams per tunnel for "
		    "--reverse)");
	if (check_only) {
		/* Everything a start reads has been read; listening, the
		 * resolver and the tunnels are left out. */
		puts("configuration ok");
		free_loaded(&cl);
		return 0;
	}

	cl.base = event_base_new();
	if (cl.base == NULL)
		fatal("cannot create the event loop");
	cl.dns = dns_new(cl.base);
	if (cl.dns == NULL)
		fatal("cannot set up DNS resolution");
	if (client_listen_start(&cl, err, sizeof(err)) != 0)
		fatal(err);
	for (size_t i = 0; i < cl.nreverses; i++)
		log_info("reverse forward: asking the server to listen on %s:%u for %s:%u",
			 cl.reverses[i].server_side.host, cl.reverses[i].server_side.port,
			 cl.reverses[i].target.host, cl.reverses[i].target.port);
	client_pool_start(&cl);
	if (cl.admin_opt.enabled) {
		cl.admin = admin_start(cl.base, &cl.admin_opt, ADMIN_CLIENT, PROG,
				       client_admin_collect, &cl, err, sizeof(err));
		if (cl.admin == NULL)
			fatal(err);
	}
	sigint_ev = evsignal_new(cl.base, SIGINT, on_signal, &cl);
	sigterm_ev = evsignal_new(cl.base, SIGTERM, on_signal, &cl);
	sighup_ev = evsignal_new(cl.base, SIGHUP, on_reload, &cl);
	drain_tick_ev = event_new(cl.base, -1, EV_PERSIST, on_drain_tick, &cl);
	drain_deadline_ev = evtimer_new(cl.base, on_drain_deadline, &cl);
	if (sigint_ev == NULL || sigterm_ev == NULL || sighup_ev == NULL || drain_tick_ev == NULL ||
	    drain_deadline_ev == NULL)
		fatal("out of memory");
	event_add(sigint_ev, NULL);
	event_add(sigterm_ev, NULL);
	event_add(sighup_ev, NULL);
	notify_ready();

	event_base_dispatch(cl.base);

	log_totals(&cl);
	if (cl.auth_limit != NULL) {
		struct authlimit_stats as = authlimit_stats(cl.auth_limit);
		log_info(
		    "proxy logins: failed=%llu sources_blocked=%llu refused_while_blocked=%llu "
		    "verifications=%llu refused_busy=%llu",
		    (unsigned long long)as.failures, (unsigned long long)as.blocks,
		    (unsigned long long)as.refused,
		    (unsigned long long)(userpass_verifications(cl.socks_auth) +
					 userpass_verifications(cl.http_auth)),
		    (unsigned long long)cl.auth_busy.hits);
	}
	log_info("drain: %llu streams cut (--drain-timeout or a second signal); reloads: %llu, "
		 "%llu refused; %llu tunnels replaced after GOAWAY",
		 (unsigned long long)cl.drain_cut, (unsigned long long)cl.reloads,
		 (unsigned long long)cl.reloads_failed, (unsigned long long)cl.goaways);
	client_listen_stop(&cl);
	client_pool_free(&cl);
	admin_free(cl.admin);
	event_free(sigint_ev);
	event_free(sigterm_ev);
	event_free(sighup_ev);
	event_free(drain_tick_ev);
	event_free(drain_deadline_ev);
	dns_free(cl.dns);
	event_base_free(cl.base);
	free_loaded(&cl);
	return 0;
}
