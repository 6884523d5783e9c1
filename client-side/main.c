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
	OPT_PSK,
	OPT_CONFIG,
	OPT_STREAM_WINDOW,
	OPT_SESSION_WINDOW,
	OPT_LOG_LEVEL,
	OPT_REKEY_AFTER,
	OPT_REKEY_BYTES,
	OPT_ADMIN,
	OPT_ADMIN_ALLOW,
	OPT_CHECK_CONFIG,
	OPT_HELP,
	OPT_VERSION,
};

static const struct config_option options[] = {
    {"server", 's', true, false, OPT_SERVER},
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
    {"psk", 0, true, false, OPT_PSK},
    {"config", 'c', true, false, OPT_CONFIG},
    {"stream-window", 0, true, false, OPT_STREAM_WINDOW},
    {"session-window", 0, true, false, OPT_SESSION_WINDOW},
    {"log-level", 0, true, false, OPT_LOG_LEVEL},
    {"rekey-after", 0, true, false, OPT_REKEY_AFTER},
    {"rekey-bytes", 0, true, false, OPT_REKEY_BYTES},
    {"admin", 0, true, false, OPT_ADMIN},
    {"admin-allow", 0, true, true, OPT_ADMIN_ALLOW},
    {"check-config", 0, false, false, OPT_CHECK_CONFIG},
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
    "                  [--forward [LADDR:]LPORT:HOST:PORT ...] [--socks [LADDR:]PORT]\n"
    "                  [--http-proxy [LADDR:]PORT] [--transparent [LADDR:]PORT]\n"
    "                  [--reverse [SADDR:]SPORT:HOST:PORT ...] [--tunnels N]\n"
    "                  [--compress auto|lz4|zlib|none] [--psk FILE] [-c FILE]\n"
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
    "    -n, --tunnels N          tunnels to keep open, 1-64 (default 4)\n"
    "    --compress MODE          auto (default: zlib below 64 Mbit/s, lz4 above;\n"
    "                             incompressible data sent raw), lz4, zlib\n"
    "                             or none\n"
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
    "    --admin [ADDR:]PORT      serve /metrics (Prometheus), /status (JSON) and\n"
    "                             a status page on ADDR (default 127.0.0.1)\n"
    "    --admin-allow CIDR       sources allowed on --admin (repeatable; default:\n"
    "                             loopback only); others get 403\n"
    "    --check-config           load and check everything a start would\n"
    "                             (options, files and their modes, keys,\n"
    "                             credentials), print 'configuration ok' and\n"
    "                             exit 0, or name the problem and exit 2;\n"
    "                             binds, connects and resolves nothing\n"
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

static struct event *sigint_ev, *sigterm_ev;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct client *cl = arg;
	notify_stopping();
	log_throttle_flush();
	log_info("signal %d: stopping; log lines so far: %llu held back by the throttle, %llu lost "
		 "to a full output",
		 (int)sig, (unsigned long long)log_suppressed_total(),
		 (unsigned long long)log_dropped_total());
	client_listen_stop(cl);
	client_pool_stop(cl);
	/* Let the closes run, then leave the loop. */
	struct timeval tv = {0, 200000};
	event_base_loopexit(cl->base, &tv);
}

/* "[LADDR:]PORT" for the proxy listeners; LADDR defaults to loopback. */
static void proxy_listener(struct client *cl, const char *spec, enum listener_kind kind,
			   const char *opt)
{
	char err[256];
	struct listener *l = &cl->listeners[cl->nlisteners++];
	memset(l, 0, sizeof(*l));
	l->cl = cl;
	l->kind = kind;
	if (netaddr_parse_port(spec, &l->local.port) == 0) {
		snprintf(l->local.host, sizeof(l->local.host), "127.0.0.1");
		return;
	}
	if (netaddr_parse_hostport(spec, &l->local, err, sizeof(err)) != 0)
		usage_error("--%s: %s", opt, err);
}

/* CIDR list of a --source-* option, or NULL when none is given. */
static struct acl *source_acl(const struct config *cfg, int id, const char *opt)
{
	char err[256];
	size_t n = config_count(cfg, id);
	if (n == 0)
		return NULL;
	struct acl *acl = acl_new();
	if (acl == NULL)
		fatal("out of memory");
	for (size_t i = 0; i < n; i++) {
		const char *rule = config_get_nth(cfg, id, i);
		/* An address or CIDR: names make no sense for sources. */
		char addr[NETADDR_HOST_MAX];
		struct sockaddr_storage ss;
		socklen_t sl;
		snprintf(addr, sizeof(addr), "%s", rule[0] == '[' ? rule + 1 : rule);
		addr[strcspn(addr, "/]")] = '\0';
		if (!netaddr_literal(addr, 0, &ss, &sl))
			usage_error("--%s: '%s' is not an address or CIDR", opt, rule);
		if (acl_add(acl, rule, err, sizeof(err)) != 0)
			usage_error("--%s: %s", opt, err);
	}
	return acl;
}

/* The failed-login throttle both proxy front ends share, and a warning for
 * each credentials file that still holds plain-text passwords. */
static void proxy_auth_setup(struct client *cl, const struct config *cfg)
{
	const struct {
		struct userpass *db;
		int opt;
	} files[] = {{cl->socks_auth, OPT_SOCKS_AUTH}, {cl->http_auth, OPT_HTTP_AUTH}};

	if (cl->socks_auth == NULL && cl->http_auth == NULL)
		return;
	cl->auth_limit = authlimit_new();
	if (cl->auth_limit == NULL)
		fatal("out of memory");
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
}

static void configure(struct client *cl, const struct config *cfg)
{
	char err[512];
	const char *v;

	static const struct cli_tunnel_ids shared = {
	    OPT_LOG_LEVEL,  OPT_COMPRESS,	    OPT_STREAM_WINDOW, OPT_SESSION_WINDOW,
	    OPT_MAX_BUFFER, OPT_MAX_SESSION_BUFFER, OPT_REKEY_AFTER,   OPT_REKEY_BYTES,
	};
	tunnel_config_defaults(&cl->tcfg);
	if (cli_tunnel_options(cfg, &shared, PROG, &cl->tcfg, err, sizeof(err)) != WM_OK)
		usage_error("%s", err);
	if (cli_admin_options(cfg, OPT_ADMIN, OPT_ADMIN_ALLOW, &cl->admin_opt, err, sizeof(err)) !=
	    WM_OK)
		usage_error("%s", err);
	if (config_positional_count(cfg) > 0)
		usage_error("unexpected argument '%s'", config_positional(cfg, 0));
	if (config_get(cfg, OPT_SERVER) == NULL)
		usage_error("%s", "missing --server HOST:PORT");
	if (config_get(cfg, OPT_KEY) == NULL)
		usage_error("%s", "missing --key FILE (create one with wanmux-keygen FILE)");
	if (config_get(cfg, OPT_SERVER_KEY) == NULL)
		usage_error("%s", "missing --server-key PUBKEY|FILE");
	if (netaddr_parse_hostport(config_get(cfg, OPT_SERVER), &cl->server, err, sizeof(err)) != 0)
		usage_error("--server: %s", err);

	cl->nslots = 4;
	if ((v = config_get(cfg, OPT_TUNNELS)) != NULL) {
		uint64_t n;
		if (config_parse_uint(v, 1, CLIENT_TUNNELS_MAX, &n) != WM_OK)
			usage_error("bad --tunnels '%s': expected 1 to 64", v);
		cl->nslots = (unsigned)n;
	}

	size_t nforward = config_count(cfg, OPT_FORWARD);
	size_t nmax = nforward + config_count(cfg, OPT_SOCKS) + config_count(cfg, OPT_HTTP_PROXY) +
		      config_count(cfg, OPT_TRANSPARENT);
	cl->listeners = calloc(nmax, sizeof(*cl->listeners));
	cl->nreverses = config_count(cfg, OPT_REVERSE);
	cl->reverses = calloc(cl->nreverses + 1, sizeof(*cl->reverses));
	if (cl->listeners == NULL || cl->reverses == NULL)
		fatal("out of memory");
	for (size_t i = 0; i < nforward; i++) {
		struct listener *l = &cl->listeners[cl->nlisteners++];
		struct netaddr_forward fw;
		if (netaddr_parse_forward(config_get_nth(cfg, OPT_FORWARD, i), &fw, err,
					  sizeof(err)) != 0)
			usage_error("--forward: %s", err);
		l->cl = cl;
		l->kind = LISTENER_FORWARD;
		l->local = fw.local;
		l->target = fw.target;
		client_frame_addr(&l->target, &l->target_addr);
	}
	for (size_t i = 0; i < config_count(cfg, OPT_SOCKS); i++)
		proxy_listener(cl, config_get_nth(cfg, OPT_SOCKS, i), LISTENER_SOCKS, "socks");
	for (size_t i = 0; i < config_count(cfg, OPT_HTTP_PROXY); i++)
		proxy_listener(cl, config_get_nth(cfg, OPT_HTTP_PROXY, i), LISTENER_HTTP,
			       "http-proxy");
	for (size_t i = 0; i < config_count(cfg, OPT_TRANSPARENT); i++)
		proxy_listener(cl, config_get_nth(cfg, OPT_TRANSPARENT, i), LISTENER_TRANSPARENT,
			       "transparent");
	/* Two listeners on one address would fail at bind; say so before. */
	for (size_t i = 0; i < cl->nlisteners; i++)
		for (size_t j = 0; j < i; j++)
			if (cl->listeners[i].local.port == cl->listeners[j].local.port &&
			    strcmp(cl->listeners[i].local.host, cl->listeners[j].local.host) == 0)
				usage_error("%s:%u is given to two listeners",
					    cl->listeners[i].local.host,
					    cl->listeners[i].local.port);
	for (size_t i = 0; i < cl->nreverses; i++) {
		struct reverse *rv = &cl->reverses[i];
		struct netaddr_forward fw;
		struct sockaddr_storage ss;
		socklen_t sl;
		if (netaddr_parse_forward(config_get_nth(cfg, OPT_REVERSE, i), &fw, err,
					  sizeof(err)) != 0)
			usage_error("--reverse: %s", err);
		rv->server_side = fw.local;
		rv->target = fw.target;
		if (strcmp(rv->server_side.host, "localhost") == 0)
			snprintf(rv->server_side.host, sizeof(rv->server_side.host), "127.0.0.1");
		/* The server binds it without a resolver: an address, not a name. */
		if (!netaddr_literal(rv->server_side.host, rv->server_side.port, &ss, &sl))
			usage_error("--reverse: '%s' is not an IP address (the server side must be "
				    "an address)",
				    rv->server_side.host);
		client_frame_addr(&rv->server_side, &rv->listen_addr);
	}
	if (cl->nlisteners == 0 && cl->nreverses == 0)
		usage_error("%s", "nothing to do: give --forward, --socks, --http-proxy, "
				  "--transparent or --reverse");
	cl->max_connections = 4096;
	if ((v = config_get(cfg, OPT_MAX_CONNECTIONS)) != NULL) {
		uint64_t n;
		if (config_parse_uint(v, 1, 1u << 24, &n) != WM_OK)
			usage_error("bad --max-connections '%s'", v);
		cl->max_connections = (size_t)n;
	}
	cl->connections_limit.name = "connections per listener (--max-connections)";
	cl->source_allow = source_acl(cfg, OPT_SOURCE_ALLOW, "source-allow");
	cl->source_deny = source_acl(cfg, OPT_SOURCE_DENY, "source-deny");
	if ((v = config_get(cfg, OPT_SOCKS_AUTH)) != NULL) {
		if (config_get(cfg, OPT_SOCKS) == NULL)
			usage_error("%s", "--socks-auth needs --socks");
		if (userpass_load(v, &cl->socks_auth, err, sizeof(err)) != 0)
			fatal(err);
	}
	if ((v = config_get(cfg, OPT_HTTP_AUTH)) != NULL) {
		if (config_get(cfg, OPT_HTTP_PROXY) == NULL)
			usage_error("%s", "--http-auth needs --http-proxy");
		if (userpass_load(v, &cl->http_auth, err, sizeof(err)) != 0)
			fatal(err);
	}
	proxy_auth_setup(cl, cfg);

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
	const struct client_totals *t = &cl->totals;
	double ratio_up = t->payload_up > 0 ? (double)t->raw_up / (double)t->payload_up : 1.0;
	double ratio_down =
	    t->payload_down > 0 ? (double)t->raw_down / (double)t->payload_down : 1.0;
	log_info("stats: connections=%llu bytes_up=%llu bytes_down=%llu wire_up=%llu "
		 "wire_down=%llu ratio_up=%.2f ratio_down=%.2f tunnels=%u tunnels_connected=%llu "
		 "rekeys=%llu",
		 (unsigned long long)t->connections, (unsigned long long)t->raw_up,
		 (unsigned long long)t->raw_down, (unsigned long long)t->wire_up,
		 (unsigned long long)t->wire_down, ratio_up, ratio_down, cl->nslots,
		 (unsigned long long)t->tunnels_up, (unsigned long long)t->rekeys);
}

int main(int argc, char **argv)
{
	struct client cl;
	struct config *cfg = NULL;
	char err[512];

	memset(&cl, 0, sizeof(cl));
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
	configure(&cl, cfg);
	/* A local connection holds a descriptor, as does each tunnel and each
	 * reverse stream's connection to its target. */
	if (!check_only)
		acceptor_fd_budget(
		    (uint64_t)cl.nlisteners * cl.max_connections + cl.nslots +
			(cl.nreverses > 0 ? (uint64_t)cl.nslots * cl.tcfg.params.max_streams : 0) +
			32,
		    "--max-connections per listener (and --max-streams per tunnel for "
		    "--reverse)");
	if (check_only) {
		/* Everything a start reads has been read; listening, the
		 * resolver and the tunnels are left out. */
		puts("configuration ok");
		acl_free(cl.admin_opt.allow);
		free(cl.listeners);
		free(cl.reverses);
		acl_free(cl.source_allow);
		acl_free(cl.source_deny);
		userpass_free(cl.socks_auth);
		userpass_free(cl.http_auth);
		keys_pair_free(cl.key);
		config_free(cfg);
		sodium_memzero(cl.psk, sizeof(cl.psk));
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
	if (cl.admin_opt.enabled) {
		cl.admin = admin_start(cl.base, &cl.admin_opt, ADMIN_CLIENT, PROG,
				       client_admin_collect, &cl, err, sizeof(err));
		if (cl.admin == NULL)
			fatal(err);
	}
	client_pool_start(&cl);
	sigint_ev = evsignal_new(cl.base, SIGINT, on_signal, &cl);
	sigterm_ev = evsignal_new(cl.base, SIGTERM, on_signal, &cl);
	if (sigint_ev == NULL || sigterm_ev == NULL)
		fatal("out of memory");
	event_add(sigint_ev, NULL);
	event_add(sigterm_ev, NULL);
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
	client_listen_stop(&cl);
	client_pool_free(&cl);
	admin_free(cl.admin);
	event_free(sigint_ev);
	event_free(sigterm_ev);
	dns_free(cl.dns);
	event_base_free(cl.base);
	free(cl.listeners);
	free(cl.reverses);
	acl_free(cl.source_allow);
	acl_free(cl.source_deny);
	authlimit_free(cl.auth_limit);
	userpass_free(cl.socks_auth);
	userpass_free(cl.http_auth);
	keys_pair_free(cl.key);
	config_free(cfg);
	sodium_memzero(cl.psk, sizeof(cl.psk));
	return 0;
}
