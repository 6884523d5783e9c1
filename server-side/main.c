/*
 * wanmux-server: accepts tunnels from authorized clients and connects their
 * streams to targets that an --allow rule permits (default deny). Options,
 * start-up checks, the replay table and the target connector live here; the
 * data path is common/ (tunnel, session, relay).
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <sodium.h>

#include "server.h"
#include "wanmux/acl.h"
#include "wanmux/cli.h"
#include "wanmux/config.h"
#include "wanmux/connect.h"
#include "wanmux/dns.h"
#include "wanmux/err.h"
#include "wanmux/handshake.h"
#include "wanmux/keys.h"
#include "wanmux/log.h"
#include "wanmux/netaddr.h"
#include "wanmux/notify.h"
#include "wanmux/relay.h"
#include "wanmux/replay.h"
#include "wanmux/tsession.h"
#include "wanmux/tunnel.h"

#define PROG "wanmux-server"

enum opt_id {
	OPT_LISTEN,
	OPT_KEY,
	OPT_AUTHORIZED_KEYS,
	OPT_ALLOW,
	OPT_ALLOW_LISTEN,
	OPT_PSK,
	OPT_CONFIG,
	OPT_COMPRESS,
	OPT_DUPLICATE,
	OPT_QUEUE_CAP,
	OPT_MAX_STREAMS,
	OPT_STREAM_WINDOW,
	OPT_SESSION_WINDOW,
	OPT_LOG_LEVEL,
	OPT_REKEY_AFTER,
	OPT_REKEY_BYTES,
	OPT_TUNNEL_RCVBUF,
	OPT_MAX_UNAUTH,
	OPT_HANDSHAKE_TIMEOUT,
	OPT_HANDSHAKE_RATE,
	OPT_OPEN_RATE,
	OPT_MAX_BUFFER,
	OPT_MAX_SESSION_BUFFER,
	OPT_MAX_TUNNELS,
	OPT_MAX_TUNNELS_PER_KEY,
	OPT_ADMIN,
	OPT_ADMIN_ALLOW,
	OPT_ADMIN_ACTIONS,
	OPT_STATE_DIR,
	OPT_CHECK_CONFIG,
	OPT_REVERSE_GRACE,
	OPT_REVERSE_MAX_CONNECTIONS,
	OPT_REVERSE_OPEN_TIMEOUT,
	OPT_REVERSE_IDLE_TIMEOUT,
	OPT_REVERSE_GROUP,
	OPT_DRAIN_TIMEOUT,
	OPT_RESUME_TIMEOUT,
	OPT_POOL,
	OPT_POOL_POLICY,
	OPT_HEALTH_INTERVAL,
	OPT_HEALTH_RISE,
	OPT_HEALTH_FALL,
	OPT_POOL_CONNECT_TIMEOUT,
	OPT_HELP,
	OPT_VERSION,
};

static const struct config_option options[] = {
    {"listen", 'l', true, true, OPT_LISTEN},
    {"key", 'k', true, false, OPT_KEY},
    {"authorized-keys", 'a', true, false, OPT_AUTHORIZED_KEYS},
    {"allow", 0, true, true, OPT_ALLOW},
    {"allow-listen", 0, true, true, OPT_ALLOW_LISTEN},
    {"psk", 0, true, false, OPT_PSK},
    {"config", 'c', true, false, OPT_CONFIG},
    {"compress", 0, true, false, OPT_COMPRESS},
    {"duplicate", 0, true, false, OPT_DUPLICATE},
    {"queue-cap", 0, true, false, OPT_QUEUE_CAP},
    {"max-streams", 0, true, false, OPT_MAX_STREAMS},
    {"stream-window", 0, true, false, OPT_STREAM_WINDOW},
    {"session-window", 0, true, false, OPT_SESSION_WINDOW},
    {"log-level", 0, true, false, OPT_LOG_LEVEL},
    {"rekey-after", 0, true, false, OPT_REKEY_AFTER},
    {"rekey-bytes", 0, true, false, OPT_REKEY_BYTES},
    {"tunnel-rcvbuf", 0, true, false, OPT_TUNNEL_RCVBUF},
    {"max-unauth", 0, true, false, OPT_MAX_UNAUTH},
    {"handshake-timeout", 0, true, false, OPT_HANDSHAKE_TIMEOUT},
    {"handshake-rate", 0, true, false, OPT_HANDSHAKE_RATE},
    {"open-rate", 0, true, false, OPT_OPEN_RATE},
    {"max-buffer", 0, true, false, OPT_MAX_BUFFER},
    {"max-session-buffer", 0, true, false, OPT_MAX_SESSION_BUFFER},
    {"max-tunnels", 0, true, false, OPT_MAX_TUNNELS},
    {"max-tunnels-per-key", 0, true, false, OPT_MAX_TUNNELS_PER_KEY},
    {"admin", 0, true, false, OPT_ADMIN},
    {"admin-allow", 0, true, true, OPT_ADMIN_ALLOW},
    {"admin-actions", 0, false, false, OPT_ADMIN_ACTIONS},
    {"state-dir", 0, true, false, OPT_STATE_DIR},
    {"check-config", 0, false, false, OPT_CHECK_CONFIG},
    {"reverse-grace", 0, true, false, OPT_REVERSE_GRACE},
    {"reverse-max-connections", 0, true, false, OPT_REVERSE_MAX_CONNECTIONS},
    {"reverse-open-timeout", 0, true, false, OPT_REVERSE_OPEN_TIMEOUT},
    {"reverse-idle-timeout", 0, true, false, OPT_REVERSE_IDLE_TIMEOUT},
    {"reverse-group", 0, true, true, OPT_REVERSE_GROUP},
    {"drain-timeout", 0, true, false, OPT_DRAIN_TIMEOUT},
    {"resume-timeout", 0, true, false, OPT_RESUME_TIMEOUT},
    {"pool", 0, true, true, OPT_POOL},
    {"pool-policy", 0, true, true, OPT_POOL_POLICY},
    {"health-interval", 0, true, false, OPT_HEALTH_INTERVAL},
    {"health-rise", 0, true, false, OPT_HEALTH_RISE},
    {"health-fall", 0, true, false, OPT_HEALTH_FALL},
    {"pool-connect-timeout", 0, true, false, OPT_POOL_CONNECT_TIMEOUT},
    {"help", 'h', false, false, OPT_HELP},
    {"version", 'V', false, false, OPT_VERSION},
    {NULL, 0, false, false, 0},
};

static const char usage_text[] =
    "NAME\n"
    "    wanmux-server - datacenter end of the wanmux WAN-optimizing proxy pair\n"
    "\n"
    "SYNOPSIS\n"
    "    wanmux-server --listen ADDR:PORT --key FILE --authorized-keys FILE\n"
    "                  --allow RULE [--allow RULE ...] [--psk FILE] [-c FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "    Accepts encrypted, multiplexed tunnels from wanmux-client instances whose\n"
    "    public keys are listed in the authorized-keys file, and connects each\n"
    "    stream they carry to its target, if and only if an --allow rule permits\n"
    "    the target's resolved address and port. Everything else is refused and\n"
    "    logged with the client's key; the server is never an open proxy.\n"
    "\n"
    "OPTIONS\n"
    "    -l, --listen ADDR:PORT   where clients connect (IPv6 as [ADDR]:PORT);\n"
    "                             repeatable, e.g. 0.0.0.0:7700 and [::]:7700\n"
    "    -k, --key FILE           this server's private key (wanmux-keygen FILE);\n"
    "                             must not be readable by group or others\n"
    "    -a, --authorized-keys FILE\n"
    "                             client public keys, one base64 key per line,\n"
    "                             optional comment after it, '#' comments\n"
    "    --allow RULE             permit targets: CIDR[:PORT[-PORT]] or\n"
    "                             HOSTNAME[:PORT[-PORT]], IPv6 in brackets,\n"
    "                             '*.' wildcard names. Repeatable. Loopback,\n"
    "                             link-local and metadata addresses need a rule\n"
    "                             that names them (127.0.0.1:8080).\n"
    "    --allow-listen RULE      let clients ask for reverse forwards (wanmux-client\n"
    "                             --reverse) on addresses and ports this rule\n"
    "                             permits: CIDR[:PORT[-PORT]], e.g.\n"
    "                             127.0.0.1:8000-8099. Repeatable; none: refused.\n"
    "    --pool VHOST:PORT=BACKEND[,BACKEND...]\n"
    "                             a virtual target served by backends HOST:PORT\n"
    "                             (IPv6 as [ADDR]:PORT), each optionally followed\n"
    "                             by /weight=N (1-256, default 1), /backup (only\n"
    "                             when no other is usable) and /drain (no new\n"
    "                             streams). Clients open VHOST:PORT as any target;\n"
    "                             the definition is its own allow rule; the\n"
    "                             backends are not reachable directly unless a\n"
    "                             rule allows them. Repeatable (up to 64 pools of\n"
    "                             32 backends)\n"
    "    --pool-policy [VHOST:PORT=]POLICY\n"
    "                             roundrobin (default), leastconn or source (a\n"
    "                             consistent hash of the client key: a client\n"
    "                             sticks to one backend); without VHOST:PORT the\n"
    "                             default for every pool. Repeatable\n"
    "    --health-interval SECONDS\n"
    "                             TCP connect check of every backend this often\n"
    "                             (2; fractions such as 0.2 allowed, at least 0.1);\n"
    "                             a check fails after min(interval, 5 s)\n"
    "    --health-rise N          good checks in a row that bring a backend up (2)\n"
    "    --health-fall N          failed checks in a row that take it down (3); a\n"
    "                             stream whose connect fails takes it down at once\n"
    "                             and is tried on another backend (at most 4)\n"
    "    --pool-connect-timeout DUR\n"
    "                             time one backend has to take a stream's\n"
    "                             connection before the next is tried (5s)\n"
    "    --psk FILE               pre-shared key as a second factor (same file\n"
    "                             on both ends; wanmux-keygen --psk FILE)\n"
    "    -c, --config FILE        read options from FILE: one 'name value' per\n"
    "                             line with long option names, '#' comments; the\n"
    "                             command line overrides it\n"
    "    --compress MODE          auto (default), lz4, zlib or none, for data the\n"
    "                             server sends\n"
    "    --duplicate MODE         auto (default: while loss is seen on a session\n"
    "                             of 2+ tunnels), on or off: also send small\n"
    "                             frames of interactive streams on a second tunnel\n"
    "    --queue-cap MODE         off (default) or on: while a stream exchanges\n"
    "                             small messages and a queue builds, bulk streams\n"
    "                             keep at most 110% of the link's bandwidth-delay\n"
    "                             product in flight\n"
    "    --max-streams N          concurrent streams per tunnel (default 1024)\n"
    "    --stream-window SIZE     receive window per stream (default 16M)\n"
    "    --session-window SIZE    receive window per tunnel (default 64M)\n"
    "    --log-level LEVEL        error, warn, info (default) or debug; info logs\n"
    "                             one access line per finished stream\n"
    "    --rekey-after DURATION   new record keys from a fresh X25519 exchange\n"
    "                             inside the tunnel after this long (1h; 0 off)\n"
    "    --rekey-bytes SIZE       ... or after this many bytes on the wire, both\n"
    "                             directions (64G; 0 off), whichever comes first\n"
    "    --tunnel-rcvbuf SIZE     receive buffer of each tunnel socket, set before\n"
    "                             listen; auto (default) keeps the kernel's\n"
    "                             autotuning\n"
    "    --admin [ADDR:]PORT      serve /metrics (Prometheus), /status (JSON) and\n"
    "                             a status page on ADDR (default 127.0.0.1)\n"
    "    --admin-allow CIDR       sources allowed on --admin (repeatable; default:\n"
    "                             loopback only); others get 403\n"
    "    --admin-actions          also take POST /pool/drain and /pool/undrain\n"
    "                             ?pool=VHOST:PORT&backend=HOST:PORT on --admin,\n"
    "                             with the header 'X-Wanmux-Action: 1' (off)\n"
    "    --state-dir DIR          keep the newest handshake timestamp per client\n"
    "                             key in DIR/replay.state, so a recorded first\n"
    "                             message is refused after a restart too (default\n"
    "                             " SERVER_STATE_DIR " if it exists and is writable;\n"
    "                             'none': only a 120 s clock window at start)\n"
    "\n"
    "    --drain-timeout SECONDS  on SIGTERM/SIGINT, how long open streams may\n"
    "                             run on after GOAWAY (30; 0 = close at once)\n"
    "    --resume-timeout SECONDS how long a session waits for a tunnel when\n"
    "                             all are lost (120; target connections stay open,\n"
    "                             then streams are reset; 0 = reset at once)\n"
    "\n"
    "SIGNALS\n"
    "    SIGHUP re-reads the config file and every file it names (keys, authorized\n"
    "    keys, rules); a configuration with any error is refused and the running\n"
    "    one stays. --listen, --key, --psk, --admin and --state-dir change only\n"
    "    at a restart. SIGTERM/SIGINT drain (see --drain-timeout); a second one\n"
    "    stops at once.\n"
    "\n"
    "LIMITS (each refusal is counted and logged, at most one line a second)\n"
    "    --max-unauth N           connections still in their handshake (256);\n"
    "                             a source holds at most max(4, N/8); from half\n"
    "                             full the server asks for a cookie round trip\n"
    "                             before any public-key work\n"
    "    --handshake-timeout DUR  time to complete the handshake (10s)\n"
    "    --handshake-rate N       new connections per second per source\n"
    "                             address (20, bursts of 2N)\n"
    "    --open-rate N            stream opens per second per tunnel (500,\n"
    "                             bursts of 2N)\n"
    "    --max-buffer SIZE        bytes all streams may hold in buffers (256M);\n"
    "                             over it, tunnels holding more than an even\n"
    "                             share pause their local sockets\n"
    "    --max-session-buffer SIZE\n"
    "                             bytes the streams of one tunnel may hold in\n"
    "                             buffers (64M)\n"
    "    --reverse-max-connections N\n"
    "                             connections one reverse listener holds (256)\n"
    "    --reverse-open-timeout DUR\n"
    "                             time the client has to answer a reverse\n"
    "                             connection's OPEN (30s)\n"
    "    --reverse-idle-timeout DUR\n"
    "                             close a reverse connection that carried no\n"
    "                             byte either way for this long (1h; 0 off)\n"
    "    --reverse-grace DUR      a reverse listener whose tunnels are all gone\n"
    "                             stays reserved for its client key this long\n"
    "                             (60s); other keys are refused\n"
    "    --reverse-group ADDR:PORT=KEY[,KEY...]\n"
    "                             share the reverse listener on ADDR:PORT among\n"
    "                             these client keys (base64 or FILE.pub, at most\n"
    "                             32): connections go round robin to the ones\n"
    "                             connected; no other key may listen there;\n"
    "                             repeatable, re-read on SIGHUP\n"
    "    --max-tunnels N          authenticated tunnels, all clients (1024)\n"
    "    --max-tunnels-per-key N  authenticated tunnels per client key (16)\n"
    "    --check-config           load and check everything a start would\n"
    "                             (options, files and their modes, authorized\n"
    "                             keys, allow rules), print 'configuration ok'\n"
    "                             and exit 0, or name the problem and exit 2;\n"
    "                             binds and resolves nothing\n"
    "    -h, --help               this text\n"
    "    -V, --version            version\n"
    "\n"
    "EXAMPLES\n"
    "    wanmux-keygen /etc/wanmux/server.key\n"
    "    wanmux-server --listen 0.0.0.0:7700 --key /etc/wanmux/server.key \\\n"
    "        --authorized-keys /etc/wanmux/clients --allow 10.0.0.0/8:443 \\\n"
    "        --allow db.internal:5432\n"
    "\n"
    "EXIT STATUS\n"
    "    0 after SIGTERM or SIGINT, 1 on a runtime failure (unreadable key, port\n"
    "    in use), 2 on a usage error. --check-config: 0 when the configuration\n"
    "    is good, 2 for any problem.\n";

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

/*
 * The server's own addresses are guarded like loopback: a target that
 * resolves to the server's public IP would otherwise reach services that
 * listen on all interfaces but mean to be local. Addresses change (DHCP, an
 * alias added), so the list is re-read every SERVER_OWN_REFRESH_MS and given
 * to every rule set a target may be checked against (--allow and each key's
 * allow=).
 */
#define SERVER_OWN_MAX 256
#define SERVER_OWN_REFRESH_MS 10000

static void refresh_own_addresses(struct server *srv)
{
	struct sockaddr_storage addrs[SERVER_OWN_MAX];
	const struct sockaddr *list[SERVER_OWN_MAX];
	int n = netaddr_interface_addresses(addrs, SERVER_OWN_MAX);
	if (n < 0) {
		log_warn("cannot list the interface addresses (getifaddrs): %s", strerror(errno));
		return; /* keep the previous list */
	}
	for (int i = 0; i < n; i++)
		list[i] = (const struct sockaddr *)&addrs[i];
	bool ok = acl_set_own_addresses(srv->acl, list, (size_t)n) == 0;
	for (size_t i = 0; i < keys_authorized_count(srv->authorized); i++) {
		const struct keys_options *ko = keys_authorized_options(srv->authorized, i);
		if (ko->allow != NULL && acl_set_own_addresses(ko->allow, list, (size_t)n) != 0)
			ok = false;
	}
	if (!ok)
		log_warn("out of memory for the list of interface addresses");
}

static void on_own_timer(evutil_socket_t fd, short what, void *arg)
{
	refresh_own_addresses(arg);
}

/* arg is the stream's session, which outlives the stream; its acl (the
 * key's allow= or the server's --allow) is read at each check, so a reload
 * that replaces the rule sets never leaves a check on freed rules. */
static bool server_permits(void *arg, const char *name, const struct sockaddr *addr, uint16_t port)
{
	const struct server_session *stn = arg;
	return acl_permits(stn->acl, name, addr, port);
}

/*
 * A pool's definition is its own allow rule for every key that uses the
 * server's --allow rules. A key with its own allow= option gets only what
 * that option names: the pool's virtual host (a name rule, or for an address
 * a rule covering it).
 */
static bool pool_permitted(const struct server_session *sess, const struct pool *p)
{
	struct sockaddr_storage ss;
	socklen_t len;
	if (!sess->own_acl)
		return true;
	if (netaddr_literal(pool_vhost(p), pool_vport(p), &ss, &len))
		return acl_permits(sess->acl, NULL, (struct sockaddr *)&ss, pool_vport(p));
	/* A name rule only: a CIDR rule says nothing about a name. */
	return acl_permits(sess->acl, pool_vhost(p), NULL, pool_vport(p));
}

static int on_open(struct session *s, struct session_stream *st, const struct frame_addr *target,
		   void *arg)
{
	struct server_session *stn = arg;
	struct server *srv = stn->srv;
	char who[sizeof(stn->client) + 8];

	snprintf(who, sizeof(who), "client %s", stn->client);
	if (!limit_take(&stn->opens, srv->limits.open_rate, 2 * srv->limits.open_rate,
			limit_now_ms())) {
		limit_hit(&srv->limits.opens, who);
		return FRAME_ERR_STREAM_LIMIT;
	}
	char client[16];
	access_short_key(stn->client, client, sizeof(client));
	struct connect_policy policy = {
	    .permits = server_permits,
	    .arg = stn,
	    .who = who,
	    .refusals = &srv->refused_targets,
	    .client = client,
	    .src = stn->peer,
	};
	struct pool *pool = server_pool_find(srv, target);
	if (pool != NULL) {
		if (!pool_permitted(stn, pool)) {
			char desc[NETADDR_STR_MAX];
			srv->refused_targets++;
			log_peer_warn("refused stream %u from %s to pool %s: its key's allow= "
				      "option does not name it",
				      session_stream_id(st), who, pool_name(pool));
			snprintf(desc, sizeof(desc), "%s", pool_name(pool));
			connect_log_refused(st, &policy, desc);
			return FRAME_ERR_NOT_ALLOWED;
		}
		return server_pool_open(srv, stn, st, pool, &policy);
	}
	if (target->type == FRAME_ADDR_NAME &&
	    !acl_may_permit_name(stn->acl, target->u.name, target->port)) {
		/* Refused before any DNS query or connection attempt. */
		char desc[FRAME_NAME_MAX + 8];
		srv->refused_targets++;
		log_peer_warn("refused stream %u from %s to %s:%u: no %s permits it",
			      session_stream_id(st), who, target->u.name, target->port,
			      stn->own_acl ? "allow= option of its key" : "--allow rule");
		snprintf(desc, sizeof(desc), "%s:%u", target->u.name, target->port);
		connect_log_refused(st, &policy, desc);
		return FRAME_ERR_NOT_ALLOWED;
	}
	return connect_stream(srv->base, srv->dns, st, target, &policy);
}

/* Leaves the unauthenticated table (up, down or evicted); idempotent. */
static void unauth_release(struct server_tunnel *stn)
{
	struct server *srv = stn->srv;
	if (!stn->in_unauth)
		return;
	stn->in_unauth = false;
	srv->unauth--;
	srv->per_source[stn->source_slot]--;
	TAILQ_REMOVE(&srv->unauth_list, stn, unauth_link);
}

static void on_tunnel_up(struct tunnel *t, void *arg)
{
	struct server_tunnel *stn = arg;
	stn->up = true;
	unauth_release(stn);
	log_info("tunnel from %s up: client %s", tunnel_peer_name(t), stn->client);
}

static void on_tunnel_down(struct tunnel *t, const char *reason, void *arg)
{
	struct server_tunnel *stn = arg;
	if (stn->client[0] != '\0')
		log_info("tunnel from %s (client %s) down: %s", tunnel_peer_name(t), stn->client,
			 reason);
	else
		log_debug("connection from %s closed before authentication: %s",
			  tunnel_peer_name(t), reason);
	unauth_release(stn);
	if (stn->up)
		admin_tunnel_closed(t);
	if (stn->counted) {
		stn->srv->tunnels_authorized--;
		stn->srv->key_tunnels[stn->key_index]--;
	}
	LIST_REMOVE(stn, link);
	free(stn);
}

static const char *short_id(const uint8_t *id, char out[17])
{
	sodium_bin2hex(out, 17, id, 8);
	return out;
}

/* Ends the session: its streams reset, its tunnels close. */
static void session_end(struct server_session *sess, const char *reason)
{
	char hex[17];
	size_t n = session_stream_count(tsession_session(sess->ts));
	log_info("session %s of client %s ended: %s; %zu streams reset",
		 short_id(tsession_id(sess->ts), hex), sess->client, reason, n);
	admin_session_closed(session_get_stats(tsession_session(sess->ts)));
	server_reverse_session_end(sess);
	LIST_REMOVE(sess, link);
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &sess->srv->tunnels, link)
	if (stn->sess == sess)
		stn->sess = NULL;
	tsession_free(sess->ts);
	free(sess);
}

static void on_session_end(struct tsession *ts, const char *reason, void *arg)
{
	session_end(arg, reason);
}

/* Makes room for a new session by ending the oldest session that has no
 * tunnel (a client restarted and will not resume it, or lost its network
 * for long): one of key's, or of any key when key is NULL. */
static bool evict_session(struct server *srv, const uint8_t *key, const char *why)
{
	struct server_session *sess, *victim = NULL;
	LIST_FOREACH(sess, &srv->sessions, link)
	{
		if (key != NULL && memcmp(sess->client_pub, key, KEYS_LEN) != 0)
			continue;
		if (tsession_tunnels(sess->ts) > 0)
			continue;
		if (victim == NULL || sess->created_ms < victim->created_ms)
			victim = sess;
	}
	if (victim == NULL)
		return false;
	srv->sessions_evicted++;
	session_end(victim, why);
	return true;
}

/* The session key holds under id, or NULL; *held: the other sessions of
 * key, *total: of all keys (when not found). */
static struct server_session *session_find(struct server *srv, const uint8_t *key,
					   const uint8_t *id, size_t *held, size_t *total)
{
	struct server_session *sess;
	*held = 0;
	*total = 0;
	LIST_FOREACH(sess, &srv->sessions, link)
	{
		(*total)++;
		if (memcmp(sess->client_pub, key, KEYS_LEN) != 0)
			continue;
		if (memcmp(tsession_id(sess->ts), id, HELLO_SESSION_ID_LEN) == 0)
			return sess;
		(*held)++;
	}
	return NULL;
}

/*
 * An authorized tunnel joins its client's session: the one this key holds
 * under the hello's session id (from any address: a NAT rebinding is not an
 * attack, and only this key can name it), else a new one.
 */
static struct tsession *on_attach(struct tunnel *t, const struct session_params *local,
				  const struct session_params *peer, uint64_t *epoch, void *arg)
{
	struct server_tunnel *stn = arg;
	struct server *srv = stn->srv;
	size_t held, total;
	char hex[17];
	struct server_session *sess =
	    session_find(srv, stn->client_pub, tunnel_session_id(t), &held, &total);
	if (sess != NULL) {
		if (tsession_tunnels(sess->ts) == 0)
			log_info("session %s of client %s resumed from %s after %llu ms",
				 short_id(tsession_id(sess->ts), hex), sess->client,
				 tunnel_peer_name(t),
				 (unsigned long long)tsession_detached_ms(sess->ts));
		snprintf(sess->peer, sizeof(sess->peer), "%s", tunnel_peer_name(t));
		/* A client dials one tunnel per slot: a new one for a slot means the
		 * old one is dead on its side (a NAT rebinding, a reset that never
		 * arrived here). Waiting for it to fall silent would leave what was
		 * in flight on it stuck for dead_after_ms; close it now, so its data
		 * goes again on the live tunnels. The replay check made sure this
		 * handshake is the client's newest for the slot. */
		struct server_tunnel *old;
		LIST_FOREACH(old, &srv->tunnels, link)
		{
			if (old == stn || old->sess != sess || old->tunnel_no != stn->tunnel_no ||
			    !old->up)
				continue;
			log_info("tunnel from %s (client %s, slot %u) replaced by one from %s",
				 tunnel_peer_name(old->t), sess->client, (unsigned)old->tunnel_no,
				 tunnel_peer_name(t));
			tunnel_close(old->t, "replaced by a newer tunnel of the same client slot");
		}
		stn->sess = sess;
		*epoch = tsession_epoch(sess->ts);
		return sess->ts;
	}
	/* A session with no tunnel keeps its streams' target connections and
	 * its compression state for --resume-timeout: all sessions together
	 * count against --max-tunnels as the tunnels do, or clients that drop
	 * their tunnels would hold what no tunnel limit bounds. Room comes from
	 * the key's own sessions without a tunnel first; at the server-wide
	 * limit the oldest of any key's goes, so that lingering sessions never
	 * lock out a client that is here now. */
	while (held >= srv->limits.max_tunnels_per_key || total >= srv->limits.max_tunnels) {
		bool per_key = held >= srv->limits.max_tunnels_per_key;
		bool own = evict_session(srv, stn->client_pub,
					 "a newer session of its key needed the room "
					 "(--max-tunnels-per-key, --max-tunnels)");
		if (!own && (per_key || !evict_session(srv, NULL,
						       "the server holds --max-tunnels sessions "
						       "and this was the oldest with no tunnel"))) {
			char detail[sizeof(stn->client) + 64];
			snprintf(detail, sizeof(detail), "client %s holds %zu, all clients %zu",
				 stn->client, held, total);
			limit_hit(per_key ? &srv->sessions_per_key : &srv->sessions_all, detail);
			return NULL;
		}
		if (own)
			held--;
		total--;
	}
	sess = calloc(1, sizeof(*sess));
	if (sess == NULL)
		return NULL;
	sess->srv = srv;
	memcpy(sess->client_pub, stn->client_pub, KEYS_LEN);
	snprintf(sess->client, sizeof(sess->client), "%s", stn->client);
	snprintf(sess->peer, sizeof(sess->peer), "%s", tunnel_peer_name(t));
	sess->acl = stn->acl;
	sess->allow_listen = stn->allow_listen;
	sess->own_acl = stn->own_acl;
	sess->own_allow_listen = stn->own_allow_listen;
	sess->created_ms = limit_now_ms();
	struct tsession_config c;
	tsession_config_init(&c, SESSION_SERVER, &srv->tcfg, sess);
	c.cb.on_open = on_open;
	c.cb.on_control = server_reverse_on_control;
	c.on_end = on_session_end;
	sess->ts = tsession_new(srv->base, &c, local, peer, tunnel_session_id(t));
	if (sess->ts == NULL) {
		free(sess);
		return NULL;
	}
	LIST_INSERT_HEAD(&srv->sessions, sess, link);
	stn->sess = sess;
	*epoch = tsession_epoch(sess->ts);
	log_debug("session %s of client %s started", short_id(tsession_id(sess->ts), hex),
		  sess->client);
	return sess->ts;
}

static int authorize(struct tunnel *t, const uint8_t client_pub[KEYS_LEN],
		     const struct hello_client *hello, void *arg)
{
	struct server_tunnel *stn = arg;
	struct server *srv = stn->srv;
	char b64[KEYS_B64_LEN];
	const char *comment = NULL;
	size_t index = 0;

	keys_encode_public(client_pub, b64);
	memcpy(stn->client_pub, client_pub, KEYS_LEN);
	if (!keys_authorized_find(srv->authorized, client_pub, &comment, &index)) {
		srv->refused_tunnels++;
		log_peer_warn("tunnel from %s refused: client key %s is not in the authorized keys",
			      tunnel_peer_name(t), b64);
		return WM_ERR_UNAUTHORIZED;
	}
	if (comment != NULL && comment[0] != '\0')
		snprintf(stn->client, sizeof(stn->client), "%s (%s)", b64, comment);
	else
		snprintf(stn->client, sizeof(stn->client), "%s", b64);

	/* from=: checked before the replay state moves, so a key used from the
	 * wrong place cannot spend its timestamps. No answer, throttled log. */
	const struct keys_options *ko = keys_authorized_options(srv->authorized, index);
	if (ko->from != NULL && !acl_matches_source(ko->from, (struct sockaddr *)&stn->peer)) {
		char detail[sizeof(stn->client) + NETADDR_STR_MAX + 16];
		srv->refused_tunnels++;
		snprintf(detail, sizeof(detail), "client %s from %s", stn->client,
			 tunnel_peer_name(t));
		limit_hit(&srv->refused_from, detail);
		stn->client[0] = '\0'; /* on_down: no per-connection info line */
		return WM_ERR_UNAUTHORIZED;
	}
	stn->own_acl = ko->allow != NULL;
	stn->acl = stn->own_acl ? ko->allow : srv->acl;
	stn->own_allow_listen = ko->allow_listen != NULL;
	stn->allow_listen = stn->own_allow_listen ? ko->allow_listen : srv->allow_listen;

	/* IK's first message can be replayed: demand a newer timestamp than the
	 * last one this key sent for this tunnel slot (Noise §7.7), durable
	 * before the handshake is answered when there is a state file. */
	char why[300];
	int rc = replay_check(srv->replay, client_pub, hello->tunnel_no, hello->timestamp, why,
			      sizeof(why));
	if (rc != WM_OK) {
		srv->refused_tunnels++;
		if (rc == WM_ERR_RANGE)
			log_peer_warn(
			    "tunnel from %s refused: first handshake from client %s since the "
			    "server started is older than %u s before the start (a replay, or "
			    "a client clock that is behind; no --state-dir)",
			    tunnel_peer_name(t), stn->client, SERVER_CLOCK_WINDOW_S);
		else if (rc == WM_ERR_IO)
			log_peer_error("tunnel from %s refused: cannot record its handshake: %s",
				       tunnel_peer_name(t), why);
		else
			log_peer_warn(
			    "tunnel from %s refused: replayed or stale handshake from client %s",
			    tunnel_peer_name(t), stn->client);
		stn->client[0] = '\0';
		return rc == WM_ERR_RANGE ? WM_ERR_REPLAY : rc;
	}
	/* After the replay state is updated, so a refused first message cannot
	 * be replayed once there is room again. */
	char detail[sizeof(stn->client) + 64];
	if (srv->key_tunnels[index] >= srv->limits.max_tunnels_per_key) {
		snprintf(detail, sizeof(detail), "client %s already has %u", stn->client,
			 srv->key_tunnels[index]);
		limit_hit(&srv->limits.tunnels_per_key, detail);
		stn->client[0] = '\0';
		return WM_ERR_LIMIT;
	}
	if (srv->tunnels_authorized >= srv->limits.max_tunnels) {
		snprintf(detail, sizeof(detail), "client %s refused, %u open", stn->client,
			 srv->tunnels_authorized);
		limit_hit(&srv->limits.tunnels, detail);
		stn->client[0] = '\0';
		return WM_ERR_LIMIT;
	}
	stn->counted = true;
	stn->key_index = index;
	srv->key_tunnels[index]++;
	srv->tunnels_authorized++;
	stn->tunnel_no = hello->tunnel_no;
	return WM_OK;
}

/* The slot of a source address in the per-source tables (keyed hash: no
 * chosen collisions; a collision only makes the limits stricter). An IPv6
 * /64 is one source: a host can pick any address in it. */
static uint32_t source_slot(const struct server *srv, const struct sockaddr *sa)
{
	const void *a = &((const struct sockaddr_in *)sa)->sin_addr;
	size_t alen = 4;
	if (sa->sa_family == AF_INET6) {
		a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		alen = 8;
	}
	return (uint32_t)(limit_hash(a, alen) % SERVER_RATE_BUCKETS);
}

/* What a cookie is bound to: the full source address (the port changes on
 * every connection, the address does not). */
static size_t source_bytes(const struct sockaddr *sa, uint8_t out[17])
{
	out[0] = (uint8_t)sa->sa_family;
	if (sa->sa_family == AF_INET6) {
		memcpy(out + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
		return 17;
	}
	memcpy(out + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	return 5;
}

static bool under_load(const struct server *srv)
{
	return (uint64_t)srv->unauth * SERVER_LOAD_DEN >=
	       (uint64_t)srv->limits.max_unauth * SERVER_LOAD_NUM;
}

/*
 * Before any X25519 for a msg1 whose mac1 is good: a msg1 with mac2 must
 * carry a cookie this server gave its address; under load, one without gets
 * a cookie reply (one hash and one small AEAD, no public-key work).
 */
static int admit(struct tunnel *t, const uint8_t *msg1, size_t len, uint8_t *reply, size_t cap,
		 void *arg)
{
	struct server_tunnel *stn = arg;
	struct server *srv = stn->srv;
	uint64_t now = limit_now_ms();
	double rate = srv->limits.max_unauth;
	if (handshake_msg1_has_mac2(msg1, len)) {
		if (handshake_cookies_check(&srv->cookies, now, stn->source, stn->source_len, msg1,
					    len) == WM_OK) {
			limit_take(&srv->x25519_budget, rate, rate,
				   now); /* counts, never refuses */
			return WM_OK;
		}
		limit_hit(&srv->limits.mac2, tunnel_peer_name(t));
		return WM_ERR_CRYPTO;
	}
	/* Under load: the table is half full, or first messages without a
	 * cookie used up this second's X25519 budget (--max-unauth per second). */
	if (!under_load(srv) && limit_take(&srv->x25519_budget, rate, rate, now))
		return WM_OK;
	uint8_t cookie[HANDSHAKE_COOKIE_LEN];
	handshake_cookies_make(&srv->cookies, now, stn->source, stn->source_len, cookie);
	int n = handshake_write_cookie_reply(srv->cookie_key, cookie, msg1, len, reply, cap);
	sodium_memzero(cookie, sizeof(cookie));
	return n;
}

/*
 * A full table and a newcomer from a source that holds nothing in it: make
 * room by closing the oldest connection of a source that holds two or more
 * (so many sources share the table, and a source gets in as long as any
 * other holds more than one), else the oldest of all if it had its time (a
 * real client is through in a round trip or two). The scan is bounded: a
 * table of a million costs no more per accept than one of 64.
 */
static bool evict_for_newcomer(struct server *srv, uint64_t now)
{
	struct server_tunnel *stn, *victim = NULL;
	unsigned scanned = 0;
	TAILQ_FOREACH(stn, &srv->unauth_list, unauth_link)
	{
		if (srv->per_source[stn->source_slot] >= 2) {
			victim = stn;
			break;
		}
		if (++scanned >= SERVER_EVICT_SCAN)
			break;
	}
	if (victim == NULL) {
		victim = TAILQ_FIRST(&srv->unauth_list);
		if (victim == NULL || now - victim->accepted_ms < srv->limits.evict_age_ms)
			return false;
	}
	limit_hit(&srv->limits.evicted, tunnel_peer_name(victim->t));
	unauth_release(victim);
	tunnel_close(victim->t, "unauthenticated table full: room made for another source");
	return true;
}

static void on_accept(int fd, const struct sockaddr *sa, int salen, void *arg)
{
	struct server *srv = arg;
	char peer[NETADDR_STR_MAX];
	uint64_t now = limit_now_ms();
	uint32_t slot = source_slot(srv, sa);
	/* Refused before a byte is read: floods cost an accept and a close. */
	if (srv->per_source[slot] >= srv->limits.source_share) {
		netaddr_format(sa, peer, sizeof(peer));
		limit_hit(&srv->limits.share, peer);
		close(fd);
		return;
	}
	if (srv->unauth >= srv->limits.max_unauth &&
	    (srv->per_source[slot] > 0 || !evict_for_newcomer(srv, now))) {
		netaddr_format(sa, peer, sizeof(peer));
		limit_hit(&srv->limits.unauth, peer);
		close(fd);
		return;
	}
	if (!limit_take(&srv->rate[slot], srv->limits.handshake_rate,
			2 * srv->limits.handshake_rate, now)) {
		netaddr_format(sa, peer, sizeof(peer));
		limit_hit(&srv->limits.handshakes, peer);
		close(fd);
		return;
	}
	struct server_tunnel *stn = calloc(1, sizeof(*stn));
	if (stn == NULL) {
		close(fd);
		return;
	}
	stn->srv = srv;
	stn->source_len = source_bytes(sa, stn->source);
	if ((size_t)salen <= sizeof(stn->peer))
		memcpy(&stn->peer, sa, (size_t)salen);
	struct tunnel_handlers h;
	memset(&h, 0, sizeof(h));
	h.on_up = on_tunnel_up;
	h.on_down = on_tunnel_down;
	h.authorize = authorize;
	h.admit = admit;
	h.attach = on_attach;
	h.arg = stn;
	evutil_make_socket_nonblocking(fd);
	stn->t = tunnel_accept(srv->base, fd, sa, &srv->tcfg, &h);
	if (stn->t == NULL) {
		free(stn);
		return;
	}
	LIST_INSERT_HEAD(&srv->tunnels, stn, link);
	stn->in_unauth = true;
	stn->accepted_ms = now;
	stn->source_slot = slot;
	srv->per_source[slot]++;
	srv->unauth++;
	TAILQ_INSERT_TAIL(&srv->unauth_list, stn, unauth_link);
}

/*
 * The replay table survives restarts in DIR/replay.state. Without a state
 * directory a restarted server has forgotten which first messages it saw, so
 * it refuses first messages stamped more than SERVER_CLOCK_WINDOW_S before
 * its start; a copy recorded within that window is still accepted once.
 */
static void setup_replay(struct server *srv, const char *dir)
{
	char err[512];
	bool explicit_dir = dir != NULL;

	srv->replay = replay_new();
	if (srv->replay == NULL)
		fatal("out of memory");
	if (dir == NULL && access(SERVER_STATE_DIR, W_OK) == 0)
		dir = SERVER_STATE_DIR;
	if (check_only) {
		/* replay_open rewrites the file, which a running server also
		 * writes: check the directory and the file's mode, change nothing. */
		if (explicit_dir && strcmp(dir, "none") != 0 && access(dir, W_OK | X_OK) != 0) {
			snprintf(err, sizeof(err), "--state-dir %s: %s", dir, strerror(errno));
			fatal(err);
		}
		if (dir != NULL && strcmp(dir, "none") != 0) {
			char path[4096];
			int fd, open_errno = 0;
			snprintf(path, sizeof(path), "%s/" REPLAY_FILE_NAME, dir);
			fd = keys_open_file(path, true, &open_errno, err, sizeof(err));
			if (fd >= 0)
				close(fd);
			else if (open_errno != ENOENT && explicit_dir)
				fatal(err);
		}
		return;
	}
	if (dir != NULL && strcmp(dir, "none") != 0) {
		if (replay_open(srv->replay, dir, err, sizeof(err)) != WM_OK) {
			if (explicit_dir)
				fatal(err);
			log_warn("--state-dir %s unusable (%s); falling back to a clock window",
				 dir, err);
		} else {
			log_info("replay state in %s/" REPLAY_FILE_NAME ": %zu entries", dir,
				 replay_count(srv->replay));
			return;
		}
	}
	struct timespec ts;
	uint8_t floor[REPLAY_TS_LEN];
	clock_gettime(CLOCK_REALTIME, &ts);
	replay_tai64n((uint64_t)ts.tv_sec - SERVER_CLOCK_WINDOW_S, (uint32_t)ts.tv_nsec, floor);
	replay_set_floor(srv->replay, floor);
	log_warn("no --state-dir: after a restart, a recorded first message up to %u s older "
		 "than the start is accepted once; first messages older than that are refused",
		 SERVER_CLOCK_WINDOW_S);
}

/* The refusal and limit counters, logged when the server stops. */
static void log_counters(const struct server *srv)
{
	log_throttle_flush();
	log_info("log lines so far: %llu held back by the throttle, %llu lost to a full output",
		 (unsigned long long)log_suppressed_total(),
		 (unsigned long long)log_dropped_total());
	log_info("refused so far: %llu targets, %llu tunnels, %llu listens, %llu over "
		 "--max-unauth, %llu over --handshake-rate, %llu over --open-rate",
		 (unsigned long long)srv->refused_targets, (unsigned long long)srv->refused_tunnels,
		 (unsigned long long)srv->refused_listens,
		 (unsigned long long)srv->limits.unauth.hits,
		 (unsigned long long)srv->limits.handshakes.hits,
		 (unsigned long long)srv->limits.opens.hits);
	log_info("unauthenticated so far: %llu over a source's share of --max-unauth, %llu "
		 "evicted from a full table, %llu without a valid cookie MAC under load",
		 (unsigned long long)srv->limits.share.hits,
		 (unsigned long long)srv->limits.evicted.hits,
		 (unsigned long long)srv->limits.mac2.hits);
	const struct tunnel_counters *tc = tunnel_get_counters();
	log_info("limits hit so far: %llu over --max-streams, %llu over --max-buffer or "
		 "--max-session-buffer, %llu over --max-tunnels, %llu over "
		 "--max-tunnels-per-key, %llu LISTENs over the rate, %llu credit grants shrunk, "
		 "%llu tunnels from outside their key's from=",
		 (unsigned long long)session_limit_hits(), (unsigned long long)relay_budget_hits(),
		 (unsigned long long)srv->limits.tunnels.hits,
		 (unsigned long long)srv->limits.tunnels_per_key.hits,
		 (unsigned long long)tc->listen_limited, (unsigned long long)session_credit_hits(),
		 (unsigned long long)srv->refused_from.hits);
	log_info("closed so far: %llu bad MACs, %llu failed handshakes, %llu handshake "
		 "timeouts, %llu bad records, %llu protocol errors, %llu silent peers, %llu "
		 "unanswered rekeys, %llu peers not reading their output",
		 (unsigned long long)tc->bad_mac, (unsigned long long)tc->bad_handshake,
		 (unsigned long long)tc->handshake_timeout, (unsigned long long)tc->bad_record,
		 (unsigned long long)tc->protocol_error, (unsigned long long)tc->silent,
		 (unsigned long long)tc->rekey_timeout, (unsigned long long)tc->backlog);
	log_info("handshake work so far: %llu first messages with X25519, %llu answered "
		 "with a cookie instead",
		 (unsigned long long)tc->responder_x25519, (unsigned long long)tc->cookie_replies);
}

static size_t open_streams(const struct server *srv)
{
	size_t n = 0;
	struct server_session *sess;
	LIST_FOREACH(sess, &srv->sessions, link)
	n += session_stream_count(tsession_session(sess->ts));
	return n;
}

static size_t up_tunnels(const struct server *srv)
{
	size_t n = 0;
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &srv->tunnels, link)
	n += stn->up;
	return n;
}

/* Hard stop: every tunnel and its streams close now. */
static void stop_now(struct server *srv, const char *reason)
{
	event_del(srv->drain_tick);
	event_del(srv->drain_deadline);
	srv->drain_cut += open_streams(srv);
	while (!LIST_EMPTY(&srv->sessions))
		session_end(LIST_FIRST(&srv->sessions), reason);
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &srv->tunnels, link)
	tunnel_close(stn->t, reason);
	/* Let the closes run, then leave the loop. */
	struct timeval tv = {0, 200000};
	event_base_loopexit(srv->base, &tv);
}

static bool session_busy(const struct server_session *sess)
{
	struct session *s = tsession_session(sess->ts);
	if (session_stream_count(s) > 0)
		return true;
	/* Control frames queued with no tunnel to carry them cut nothing. */
	if (tsession_tunnels(sess->ts) > 0 && session_queued(s) > 0)
		return true;
	for (size_t i = 0; i < tsession_tunnels(sess->ts); i++)
		if (tunnel_queued(tsession_tunnel(sess->ts, i)) > 0)
			return true;
	return false;
}

/*
 * A draining session ends once its streams are done and its last records
 * have left user space, and only on the second quiet tick: the client
 * closes its side first when it can, so nothing it still reads is cut.
 */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	struct server_session *sess = LIST_FIRST(&srv->sessions);
	while (sess != NULL) {
		struct server_session *next = LIST_NEXT(sess, link);
		if (session_busy(sess))
			sess->quiet_ticks = 0;
		else if (++sess->quiet_ticks >= 2)
			session_end(sess, "server drained");
		sess = next;
	}
	if (LIST_EMPTY(&srv->sessions) && LIST_EMPTY(&srv->tunnels)) {
		event_del(srv->drain_tick);
		event_del(srv->drain_deadline);
		event_base_loopexit(srv->base, NULL);
	}
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	log_warn("--drain-timeout passed: cutting %zu open streams", open_streams(srv));
	stop_now(srv, "drain timeout");
}

/*
 * First SIGTERM/SIGINT: drain. Stop accepting, send GOAWAY on every tunnel
 * (its client opens new streams elsewhere), let open streams finish for up to
 * --drain-timeout. A second signal stops at once.
 */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	if (srv->draining) {
		log_info("signal %d while draining: stopping now", (int)sig);
		stop_now(srv, "server stopping");
		return;
	}
	srv->draining = true;
	notify_stopping();
	for (size_t i = 0; i < srv->nlisteners; i++) {
		acceptor_free(srv->listeners[i]);
		srv->listeners[i] = NULL;
	}
	srv->nlisteners = 0;
	server_reverse_close_all(srv);
	size_t ntunnels = 0;
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &srv->tunnels, link)
	if (tunnel_session(stn->t) == NULL)
		tunnel_close(stn->t, "server stopping");
	struct server_session *sess;
	LIST_FOREACH(sess, &srv->sessions, link)
	{
		session_goaway(tsession_session(sess->ts));
		ntunnels++;
	}
	log_info("signal %d: draining: no longer accepting, GOAWAY sent on %zu sessions, waiting "
		 "up to %llu ms (--drain-timeout) for %zu open streams; a second signal stops at "
		 "once",
		 (int)sig, ntunnels, (unsigned long long)srv->drain_timeout_ms, open_streams(srv));
	struct timeval tick = {0, 100000};
	struct timeval deadline = {(time_t)(srv->drain_timeout_ms / 1000),
				   (suseconds_t)(srv->drain_timeout_ms % 1000) * 1000};
	event_add(srv->drain_tick, &tick);
	event_add(srv->drain_deadline, &deadline);
}

/* Everything a configuration file and command line set that a reload may
 * change, built completely before any of it is used. */
struct server_conf {
	struct netaddr_hostport listen[SERVER_LISTEN_MAX];
	size_t nlisten;
	struct tunnel_config tcfg; /* keys filled in by apply */
	struct cli_process proc;
	struct server_limits limits; /* the numbers; counters stay with the server */
	uint64_t drain_timeout_ms;
	uint32_t reverse_grace_ms; /* --reverse-grace */
	uint32_t reverse_max_connections;
	uint32_t reverse_open_timeout_ms;
	uint32_t reverse_idle_timeout_ms;
	struct server_group *groups; /* --reverse-group */
	size_t ngroups;
	struct admin_options admin_opt;
	bool admin_actions;
	char *state_dir; /* NULL: the default */
	struct acl *acl;
	struct acl *allow_listen;
	struct keypair *key;
	struct keys_authorized *authorized;
	uint8_t psk[KEYS_LEN];
	bool have_psk;
	struct pool *pools[POOL_MAX];
	size_t npools;
	struct server_pool_health pool_health;
};

static void conf_free(struct server_conf *c)
{
	server_pool_free_all(c->pools, &c->npools);
	acl_free(c->admin_opt.allow);
	free(c->state_dir);
	acl_free(c->acl);
	acl_free(c->allow_listen);
	free(c->groups);
	keys_pair_free(c->key);
	keys_authorized_free(c->authorized);
	sodium_memzero(c->psk, sizeof(c->psk));
	memset(c, 0, sizeof(*c));
}

/* Load error classes: the exit status at start-up. */
#define LOAD_USAGE 2
#define LOAD_RUNTIME 1

/* A bad value of option id: one line in err (FILE:LINE first when the
 * config file gave it); a usage error at start-up. */
#define bad_value(...) (config_value_error(__VA_ARGS__), LOAD_USAGE)

/* --reverse-group: one definition per address (a second would make the
 * member set depend on the order of the options). */
static int load_groups(const struct config *cfg, struct server_conf *c, char *err, size_t errlen)
{
	char why[512];
	size_t n = config_count(cfg, OPT_REVERSE_GROUP);
	if (n == 0)
		return 0;
	if (n > SERVER_GROUP_MAX)
		return bad_value(cfg, OPT_REVERSE_GROUP, SIZE_MAX, err, errlen,
				 "too many --reverse-group options (%zu, at most %d)", n,
				 SERVER_GROUP_MAX);
	c->groups = calloc(n, sizeof(*c->groups));
	if (c->groups == NULL) {
		snprintf(err, errlen, "out of memory");
		return LOAD_RUNTIME;
	}
	for (size_t i = 0; i < n; i++) {
		struct server_group *g = &c->groups[i];
		if (server_group_parse(config_get_nth(cfg, OPT_REVERSE_GROUP, i), g, why,
				       sizeof(why)) != 0)
			return bad_value(cfg, OPT_REVERSE_GROUP, i, err, errlen,
					 "--reverse-group: %s", why);
		if (server_group_find(c->groups, i, (const struct sockaddr *)&g->addr) != NULL)
			return bad_value(cfg, OPT_REVERSE_GROUP, i, err, errlen,
					 "--reverse-group: %s is defined twice; list every key "
					 "in one option",
					 g->name);
		c->ngroups++;
	}
	return 0;
}

static int count_option(const struct config *cfg, int id, uint64_t def, uint64_t min, uint64_t max,
			const char *name, uint64_t *out, char *err, size_t errlen)
{
	const char *v = config_get(cfg, id);
	*out = def;
	if (v == NULL)
		return 0;
	if (config_parse_uint(v, min, max, out) != WM_OK)
		return bad_value(cfg, id, SIZE_MAX, err, errlen,
				 "bad --%s '%s': expected %llu to %llu", name, v,
				 (unsigned long long)min, (unsigned long long)max);
	return 0;
}

static int duration_option(const struct config *cfg, int id, uint32_t def, uint64_t min,
			   uint64_t max, const char *name, const char *range, uint32_t *out,
			   char *err, size_t errlen)
{
	const char *v = config_get(cfg, id);
	uint64_t ms;
	*out = def;
	if (v == NULL)
		return 0;
	if (config_parse_duration_ms(v, &ms) != WM_OK || ms < min || ms > max)
		return bad_value(cfg, id, SIZE_MAX, err, errlen, "bad --%s '%s': expected %s", name,
				 v, range);
	*out = (uint32_t)ms;
	return 0;
}

/* --pool, --pool-policy and the health check options into c. */
static int load_pools(const struct config *cfg, struct server_conf *c, char *err, size_t errlen)
{
	enum pool_policy def = POOL_ROUNDROBIN;
	char why[512];
	uint64_t n;
	size_t npolicies = config_count(cfg, OPT_POOL_POLICY);

	/* The default first: it applies to pools given before it too. */
	for (size_t i = 0; i < npolicies; i++) {
		const char *v = config_get_nth(cfg, OPT_POOL_POLICY, i);
		if (strchr(v, '=') == NULL && pool_policy_parse(v, &def) != 0)
			return bad_value(
			    cfg, OPT_POOL_POLICY, i, err, errlen,
			    "bad --pool-policy '%s': expected [VHOST:PORT=]roundrobin, "
			    "leastconn or source",
			    v);
	}
	size_t npools = config_count(cfg, OPT_POOL);
	if (npools > POOL_MAX)
		return bad_value(cfg, OPT_POOL, POOL_MAX, err, errlen,
				 "too many --pool definitions (%zu, at most %d)", npools, POOL_MAX);
	for (size_t i = 0; i < npools; i++) {
		struct pool *p =
		    pool_parse(config_get_nth(cfg, OPT_POOL, i), def, why, sizeof(why));
		if (p == NULL)
			return bad_value(cfg, OPT_POOL, i, err, errlen, "--pool: %s", why);
		for (size_t j = 0; j < c->npools; j++) {
			if (strcmp(pool_name(c->pools[j]), pool_name(p)) == 0) {
				pool_free(p);
				return bad_value(cfg, OPT_POOL, i, err, errlen,
						 "--pool %s defined twice", pool_name(c->pools[j]));
			}
		}
		c->pools[c->npools++] = p;
	}
	for (size_t i = 0; i < npolicies; i++) {
		const char *v = config_get_nth(cfg, OPT_POOL_POLICY, i);
		const char *eq = strchr(v, '=');
		enum pool_policy pol;
		if (eq == NULL)
			continue;
		if (pool_policy_parse(eq + 1, &pol) != 0)
			return bad_value(
			    cfg, OPT_POOL_POLICY, i, err, errlen,
			    "bad --pool-policy '%s': expected [VHOST:PORT=]roundrobin, "
			    "leastconn or source",
			    v);
		struct netaddr_hostport hp;
		char name[NETADDR_STR_MAX + 8];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - v), v);
		bool found = false;
		if (netaddr_parse_hostport(name, &hp, why, sizeof(why)) == 0) {
			for (size_t j = 0; j < c->npools; j++) {
				if (pool_matches(c->pools[j], hp.host, hp.port)) {
					pool_set_policy(c->pools[j], pol);
					found = true;
				}
			}
		}
		if (!found)
			return bad_value(cfg, OPT_POOL_POLICY, i, err, errlen,
					 "--pool-policy %s: no --pool %s", v, name);
	}
	c->pool_health.interval_ms = POOL_INTERVAL_DEFAULT_MS;
	const char *v = config_get(cfg, OPT_HEALTH_INTERVAL);
	if (v != NULL && pool_parse_interval(v, &c->pool_health.interval_ms) != 0)
		return bad_value(cfg, OPT_HEALTH_INTERVAL, SIZE_MAX, err, errlen,
				 "bad --health-interval '%s': expected seconds from 0.1 to 3600 "
				 "(e.g. 2, 0.5, 500ms)",
				 v);
	int rc = count_option(cfg, OPT_HEALTH_RISE, POOL_RISE_DEFAULT, 1, POOL_RISE_FALL_MAX,
			      "health-rise", &n, err, errlen);
	if (rc != 0)
		return rc;
	c->pool_health.rise = (unsigned)n;
	rc = count_option(cfg, OPT_HEALTH_FALL, POOL_FALL_DEFAULT, 1, POOL_RISE_FALL_MAX,
			  "health-fall", &n, err, errlen);
	if (rc != 0)
		return rc;
	c->pool_health.fall = (unsigned)n;
	return duration_option(cfg, OPT_POOL_CONNECT_TIMEOUT, POOL_CONNECT_TIMEOUT_DEFAULT_MS, 100,
			       60000, "pool-connect-timeout", "100ms to 60s",
			       &c->pool_health.connect_timeout_ms, err, errlen);
}

/*
 * Builds c from cfg: options, rules and every file they name. Returns 0, or
 * LOAD_USAGE / LOAD_RUNTIME with one line in err (c is then freed).
 */
static int load_conf(const struct config *cfg, struct server_conf *c, char *err, size_t errlen)
{
	const char *v;
	uint64_t n;
	int bad_id;
	int rc;
	char why2[512];

	static const struct cli_tunnel_ids shared = {
	    OPT_LOG_LEVEL,	OPT_COMPRESS,		OPT_STREAM_WINDOW, OPT_SESSION_WINDOW,
	    OPT_MAX_BUFFER,	OPT_MAX_SESSION_BUFFER, OPT_REKEY_AFTER,   OPT_REKEY_BYTES,
	    OPT_RESUME_TIMEOUT, OPT_DUPLICATE,		OPT_QUEUE_CAP,	   OPT_TUNNEL_RCVBUF,
	};
	memset(c, 0, sizeof(*c));
	tunnel_config_defaults(&c->tcfg);
	if (cli_tunnel_parse(cfg, &shared, &c->tcfg, &c->proc, &bad_id, err, errlen) != WM_OK) {
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", err);
		rc = bad_value(cfg, bad_id, SIZE_MAX, err, errlen, "%s", msg);
		goto fail;
	}
	if (cli_admin_options(cfg, OPT_ADMIN, OPT_ADMIN_ALLOW, &c->admin_opt, why2, sizeof(why2)) !=
	    WM_OK) {
		rc = bad_value(cfg, OPT_ADMIN, SIZE_MAX, err, errlen, "%s", why2);
		goto fail;
	}
	rc = LOAD_USAGE;
	if (config_positional_count(cfg) > 0) {
		snprintf(err, errlen, "unexpected argument '%s'", config_positional(cfg, 0));
		goto fail;
	}
	if (config_get(cfg, OPT_LISTEN) == NULL) {
		snprintf(err, errlen, "missing --listen ADDR:PORT");
		goto fail;
	}
	if (config_get(cfg, OPT_KEY) == NULL) {
		snprintf(err, errlen, "missing --key FILE (create one with wanmux-keygen FILE)");
		goto fail;
	}
	if (config_get(cfg, OPT_AUTHORIZED_KEYS) == NULL) {
		snprintf(err, errlen, "missing --authorized-keys FILE");
		goto fail;
	}
	char why[256];
	c->nlisten = config_count(cfg, OPT_LISTEN);
	if (c->nlisten > SERVER_LISTEN_MAX) {
		rc = bad_value(cfg, OPT_LISTEN, SIZE_MAX, err, errlen,
			       "too many --listen addresses (%zu, at most %d)", c->nlisten,
			       SERVER_LISTEN_MAX);
		goto fail;
	}
	for (size_t i = 0; i < c->nlisten; i++) {
		const char *spec = config_get_nth(cfg, OPT_LISTEN, i);
		if (netaddr_parse_hostport(spec, &c->listen[i], why, sizeof(why)) != 0) {
			rc = bad_value(cfg, OPT_LISTEN, i, err, errlen, "--listen: %s", why);
			goto fail;
		}
		for (size_t j = 0; j < i; j++)
			if (c->listen[j].port == c->listen[i].port &&
			    strcmp(c->listen[j].host, c->listen[i].host) == 0) {
				rc = bad_value(cfg, OPT_LISTEN, i, err, errlen,
					       "--listen %s given twice", spec);
				goto fail;
			}
	}

	if ((v = config_get(cfg, OPT_MAX_STREAMS)) != NULL) {
		if (config_parse_uint(v, 1, 1u << 20, &n) != WM_OK) {
			rc = bad_value(cfg, OPT_MAX_STREAMS, SIZE_MAX, err, errlen,
				       "bad --max-streams '%s'", v);
			goto fail;
		}
		c->tcfg.params.max_streams = (uint32_t)n;
	}
	rc = count_option(cfg, OPT_MAX_UNAUTH, 256, 1, 1u << 20, "max-unauth", &n, err, errlen);
	if (rc != 0)
		goto fail;
	c->limits.max_unauth = (uint32_t)n;
	c->limits.source_share = c->limits.max_unauth / SERVER_SHARE_DIV;
	if (c->limits.source_share < SERVER_SHARE_MIN)
		c->limits.source_share = SERVER_SHARE_MIN;
	rc = count_option(cfg, OPT_HANDSHAKE_RATE, 20, 1, 1u << 20, "handshake-rate", &n, err,
			  errlen);
	if (rc != 0)
		goto fail;
	c->limits.handshake_rate = (double)n;
	rc = count_option(cfg, OPT_OPEN_RATE, 500, 1, 1u << 24, "open-rate", &n, err, errlen);
	if (rc != 0)
		goto fail;
	c->limits.open_rate = (double)n;
	rc = count_option(cfg, OPT_MAX_TUNNELS, SERVER_MAX_TUNNELS, 1, 1u << 20, "max-tunnels", &n,
			  err, errlen);
	if (rc != 0)
		goto fail;
	c->limits.max_tunnels = (uint32_t)n;
	rc = count_option(cfg, OPT_MAX_TUNNELS_PER_KEY, SERVER_MAX_TUNNELS_PER_KEY, 1, REPLAY_SLOTS,
			  "max-tunnels-per-key", &n, err, errlen);
	if (rc != 0)
		goto fail;
	c->limits.max_tunnels_per_key = (uint32_t)n;
	rc = count_option(cfg, OPT_REVERSE_MAX_CONNECTIONS, SERVER_REVERSE_MAX_CONNECTIONS, 1,
			  1u << 20, "reverse-max-connections", &n, err, errlen);
	if (rc != 0)
		goto fail;
	c->reverse_max_connections = (uint32_t)n;
	rc = duration_option(cfg, OPT_REVERSE_GRACE, SERVER_REVERSE_GRACE_MS, 0, 3600000,
			     "reverse-grace", "0 to 1h", &c->reverse_grace_ms, err, errlen);
	if (rc != 0)
		goto fail;
	rc = duration_option(cfg, OPT_REVERSE_OPEN_TIMEOUT, SERVER_REVERSE_OPEN_TIMEOUT_MS, 100,
			     600000, "reverse-open-timeout", "100ms to 10m",
			     &c->reverse_open_timeout_ms, err, errlen);
	if (rc != 0)
		goto fail;
	rc = duration_option(cfg, OPT_REVERSE_IDLE_TIMEOUT, SERVER_REVERSE_IDLE_TIMEOUT_MS, 0,
			     86400000, "reverse-idle-timeout", "0 (off) to 24h",
			     &c->reverse_idle_timeout_ms, err, errlen);
	if (rc != 0)
		goto fail;
	if ((v = config_get(cfg, OPT_HANDSHAKE_TIMEOUT)) != NULL) {
		if (config_parse_duration_ms(v, &n) != WM_OK || n < 100 || n > 600000) {
			rc = bad_value(cfg, OPT_HANDSHAKE_TIMEOUT, SIZE_MAX, err, errlen,
				       "bad --handshake-timeout '%s': expected 100ms to 10m", v);
			goto fail;
		}
		c->tcfg.handshake_timeout_ms = (uint32_t)n;
	}
	c->limits.evict_age_ms = SERVER_EVICT_AGE_MS;
	if (c->limits.evict_age_ms > c->tcfg.handshake_timeout_ms / 2)
		c->limits.evict_age_ms = c->tcfg.handshake_timeout_ms / 2;
	if ((v = config_get(cfg, OPT_STATE_DIR)) != NULL) {
		c->state_dir = strdup(v);
		if (c->state_dir == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = LOAD_RUNTIME;
			goto fail;
		}
	}
	c->drain_timeout_ms = SERVER_DRAIN_TIMEOUT_MS;
	if (cli_drain_timeout(cfg, OPT_DRAIN_TIMEOUT, &c->drain_timeout_ms, err, errlen) != WM_OK) {
		rc = LOAD_USAGE;
		goto fail;
	}

	rc = LOAD_RUNTIME;
	c->acl = acl_new();
	c->allow_listen = acl_new();
	if (c->acl == NULL || c->allow_listen == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < config_count(cfg, OPT_ALLOW); i++) {
		if (acl_add(c->acl, config_get_nth(cfg, OPT_ALLOW, i), why, sizeof(why)) != 0) {
			rc = bad_value(cfg, OPT_ALLOW, i, err, errlen, "--allow: %s", why);
			goto fail;
		}
	}
	for (size_t i = 0; i < config_count(cfg, OPT_ALLOW_LISTEN); i++) {
		const char *rule = config_get_nth(cfg, OPT_ALLOW_LISTEN, i);
		if (acl_add(c->allow_listen, rule, why, sizeof(why)) != 0) {
			rc = bad_value(cfg, OPT_ALLOW_LISTEN, i, err, errlen, "--allow-listen: %s",
				       why);
			goto fail;
		}
	}
	if (config_count(cfg, OPT_ALLOW_LISTEN) == 0) {
		/* No rule: reverse forwards are refused (server_reverse.c). */
		acl_free(c->allow_listen);
		c->allow_listen = NULL;
	}
	rc = load_groups(cfg, c, err, errlen);
	if (rc != 0)
		goto fail;
	rc = LOAD_RUNTIME;

	c->admin_actions = config_get(cfg, OPT_ADMIN_ACTIONS) != NULL;
	if (c->admin_actions && !c->admin_opt.enabled) {
		rc = bad_value(cfg, OPT_ADMIN_ACTIONS, SIZE_MAX, err, errlen,
			       "--admin-actions needs --admin");
		goto fail;
	}
	rc = load_pools(cfg, c, err, errlen);
	if (rc != 0)
		goto fail;

	/* Files: runtime failures from here on. */
	rc = LOAD_RUNTIME;
	if (keys_pair_load(config_get(cfg, OPT_KEY), &c->key, err, errlen) != 0)
		goto fail;
	if (keys_authorized_load(config_get(cfg, OPT_AUTHORIZED_KEYS), &c->authorized, err,
				 errlen) != 0)
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

/*
 * The per-key tunnel counts (--max-tunnels-per-key) under the new key list:
 * a tunnel whose key stays moves to the key's new index, one whose key is
 * gone to the spare last entry until it closes.
 */
static uint32_t *remap_key_tunnels(struct server *srv, const struct keys_authorized *next)
{
	size_t spare = keys_authorized_count(next);
	uint32_t *counts = calloc(spare + 1, sizeof(*counts));
	if (counts == NULL)
		return NULL;
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &srv->tunnels, link)
	{
		const char *comment;
		size_t j;
		if (!stn->counted)
			continue;
		if (!keys_authorized_find(next, stn->client_pub, &comment, &j))
			j = spare;
		stn->key_index = j;
		counts[j]++;
	}
	return counts;
}

/*
 * Swaps c in; c is emptied. At start-up (srv->key NULL) everything is taken;
 * on a reload the listening address and the server's identity (key, PSK)
 * stay as they are until a restart, with a line saying so, and tunnels of
 * keys no longer authorized are closed. Established streams run on.
 */
static int apply_conf(struct server *srv, struct server_conf *c)
{
	bool initial = srv->key == NULL;
	uint32_t *key_tunnels = remap_key_tunnels(srv, c->authorized);

	if (key_tunnels == NULL)
		return WM_ERR_NOMEM;
	free(srv->key_tunnels);
	srv->key_tunnels = key_tunnels;
	if (initial) {
		memcpy(srv->listen_at, c->listen, sizeof(srv->listen_at));
		srv->nlisten = c->nlisten;
		srv->key = c->key;
		c->key = NULL; /* transferred */
		memcpy(srv->psk, c->psk, sizeof(srv->psk));
		srv->have_psk = c->have_psk;
		handshake_mac1_key(srv->key->pub, srv->have_psk ? srv->psk : NULL, srv->mac1_key);
		handshake_cookie_key(srv->key->pub, srv->have_psk ? srv->psk : NULL,
				     srv->cookie_key);
		srv->admin_opt = c->admin_opt;
		c->admin_opt.allow = NULL; /* transferred */
		srv->admin_actions = c->admin_actions;
		srv->state_dir = c->state_dir;
		c->state_dir = NULL;
	} else {
		bool same = c->nlisten == srv->nlisten;
		for (size_t i = 0; same && i < c->nlisten; i++)
			same = strcmp(c->listen[i].host, srv->listen_at[i].host) == 0 &&
			       c->listen[i].port == srv->listen_at[i].port;
		if (!same)
			log_warn("reload: --listen changes are ignored until a restart; still "
				 "listening on the same %zu addresses",
				 srv->nlisten);
		if (sodium_memcmp(c->key->pub, srv->key->pub, KEYS_LEN) != 0)
			log_warn("reload: the --key file holds a new key; it takes effect at a "
				 "restart (clients pin the running one)");
		if (c->have_psk != srv->have_psk ||
		    sodium_memcmp(c->psk, srv->psk, sizeof(c->psk)) != 0)
			log_warn("reload: --psk changed; it takes effect at a restart");
		if (c->admin_opt.enabled != srv->admin_opt.enabled ||
		    (c->admin_opt.enabled &&
		     (strcmp(c->admin_opt.bind.host, srv->admin_opt.bind.host) != 0 ||
		      c->admin_opt.bind.port != srv->admin_opt.bind.port)))
			log_warn("reload: --admin changes take effect at a restart");
		if (c->admin_actions != srv->admin_actions)
			log_warn("reload: --admin-actions changes take effect at a restart");
		if ((c->state_dir == NULL) != (srv->state_dir == NULL) ||
		    (c->state_dir != NULL && strcmp(c->state_dir, srv->state_dir) != 0))
			log_warn("reload: --state-dir changes take effect at a restart");
		if (c->tcfg.tuning.rcvbuf != srv->tcfg.tuning.rcvbuf)
			log_warn("reload: --tunnel-rcvbuf changes take effect at a restart (the "
				 "listening socket keeps its buffer)");
	}
	/* Tunnels copy their config: new values apply to new tunnels. */
	srv->tcfg = c->tcfg;
	srv->tcfg.local = srv->key;
	srv->tcfg.psk = srv->have_psk ? srv->psk : NULL;
	srv->tcfg.mac1_key = srv->mac1_key;
	cli_process_apply(PROG, &c->proc);
	srv->limits.max_unauth = c->limits.max_unauth;
	srv->limits.source_share = c->limits.source_share;
	srv->limits.evict_age_ms = c->limits.evict_age_ms;
	srv->limits.handshake_rate = c->limits.handshake_rate;
	srv->limits.open_rate = c->limits.open_rate;
	srv->limits.max_tunnels = c->limits.max_tunnels;
	srv->limits.max_tunnels_per_key = c->limits.max_tunnels_per_key;
	srv->drain_timeout_ms = c->drain_timeout_ms;
	/* New values apply to connections and grace periods that start later. */
	srv->reverse.grace_ms = c->reverse_grace_ms;
	srv->reverse.max_connections = c->reverse_max_connections;
	srv->reverse.open_timeout_ms = c->reverse_open_timeout_ms;
	srv->reverse.idle_timeout_ms = c->reverse_idle_timeout_ms;
	/* Pools: backends that stay keep their health and counters; streams
	 * running or retrying hold the old pools until they are done. */
	for (size_t i = 0; i < c->npools; i++)
		for (size_t j = 0; j < srv->npools; j++)
			if (strcmp(pool_name(c->pools[i]), pool_name(srv->pools[j])) == 0)
				pool_adopt(c->pools[i], srv->pools[j]);
	server_pool_free_all(srv->pools, &srv->npools);
	memcpy(srv->pools, c->pools, sizeof(srv->pools));
	srv->npools = c->npools;
	c->npools = 0; /* transferred */
	srv->pool_health = c->pool_health;
	server_pool_reschedule(srv);
	struct acl *old_acl = srv->acl, *old_allow_listen = srv->allow_listen;
	struct keys_authorized *old_authorized = srv->authorized;
	srv->acl = c->acl;
	srv->allow_listen = c->allow_listen;
	srv->authorized = c->authorized;
	c->acl = NULL;
	c->allow_listen = NULL;
	c->authorized = NULL; /* transferred */
	free(srv->groups);
	srv->groups = c->groups;
	srv->ngroups = c->ngroups;
	c->groups = NULL; /* transferred */
	c->ngroups = 0;
	conf_free(c);

	size_t cut = 0;
	struct server_tunnel *stn;
	LIST_FOREACH(stn, &srv->tunnels, link)
	{
		const char *comment;
		size_t index;
		if (stn->acl == NULL)
			continue; /* not authorized yet: authorize() reads the new lists */
		bool kept =
		    keys_authorized_find(srv->authorized, stn->client_pub, &comment, &index);
		/* The old rule sets are freed below: every tunnel takes its key's new
		 * ones (the key's allow= options, else the global rules). */
		const struct keys_options *ko =
		    kept ? keys_authorized_options(srv->authorized, index) : NULL;
		stn->own_acl = ko != NULL && ko->allow != NULL;
		stn->acl = stn->own_acl ? ko->allow : srv->acl;
		stn->own_allow_listen = ko != NULL && ko->allow_listen != NULL;
		stn->allow_listen = stn->own_allow_listen ? ko->allow_listen : srv->allow_listen;
		if (kept || !stn->up)
			continue;
		log_warn("reload: client %s is no longer authorized: closing its tunnel from %s",
			 stn->client, tunnel_peer_name(stn->t));
		tunnel_close(stn->t, "client key no longer authorized");
		cut++;
	}
	srv->deauthorized_tunnels += cut;
	struct server_session *sess = LIST_FIRST(&srv->sessions);
	while (sess != NULL) {
		struct server_session *next = LIST_NEXT(sess, link);
		const char *comment;
		size_t index;
		bool kept =
		    keys_authorized_find(srv->authorized, sess->client_pub, &comment, &index);
		const struct keys_options *ko =
		    kept ? keys_authorized_options(srv->authorized, index) : NULL;
		sess->own_acl = ko != NULL && ko->allow != NULL;
		sess->acl = sess->own_acl ? ko->allow : srv->acl;
		sess->own_allow_listen = ko != NULL && ko->allow_listen != NULL;
		sess->allow_listen = sess->own_allow_listen ? ko->allow_listen : srv->allow_listen;
		if (!kept)
			session_end(sess, "client key no longer authorized");
		sess = next;
	}
	if (!initial) {
		server_reverse_groups_changed(srv);
		server_reverse_keys_changed(srv);
	}
	acl_free(old_acl);
	acl_free(old_allow_listen);
	keys_authorized_free(old_authorized);
	return WM_OK;
}

/*
 * SIGHUP: read the config file and every file it names again, as at
 * start-up (the command line still wins). Any error refuses the whole new
 * configuration and the running one stays.
 */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	struct config *cfg = NULL;
	struct server_conf c;
	char err[1024];

	if (srv->draining)
		return;
	notify_reloading();
	srv->reloads++;
	if (config_parse(options, srv->argc, srv->argv, &cfg, err, sizeof(err)) != 0 ||
	    load_conf(cfg, &c, err, sizeof(err)) != 0) {
		srv->reloads_failed++;
		log_error("reload refused, the running configuration stays: %s", err);
	} else if (apply_conf(srv, &c) != WM_OK) {
		conf_free(&c);
		srv->reloads_failed++;
		log_error("reload refused, the running configuration stays: out of memory");
	} else {
		refresh_own_addresses(srv);
		log_info("reloaded: %zu authorized client keys, %zu allow rules, %zu pools, %zu "
			 "tunnels up (%llu reloads, %llu refused)",
			 keys_authorized_count(srv->authorized), acl_count(srv->acl), srv->npools,
			 up_tunnels(srv), (unsigned long long)srv->reloads,
			 (unsigned long long)srv->reloads_failed);
	}
	config_free(cfg);
	notify_ready();
}

/* Everything load_conf, apply_conf and setup_replay handed to srv: the
 * same for --check-config and after the loop (admin_start took the admin
 * rules, when it ran). */
static void free_loaded(struct server *srv)
{
	server_pool_free_all(srv->pools, &srv->npools);
	acl_free(srv->admin_opt.allow);
	replay_free(srv->replay);
	free(srv->key_tunnels);
	free(srv->state_dir);
	keys_authorized_free(srv->authorized);
	keys_pair_free(srv->key);
	acl_free(srv->acl);
	acl_free(srv->allow_listen);
	free(srv->groups);
	sodium_memzero(srv->psk, sizeof(srv->psk));
	sodium_memzero(srv->mac1_key, sizeof(srv->mac1_key));
	sodium_memzero(srv->cookie_key, sizeof(srv->cookie_key));
	sodium_memzero(&srv->cookies, sizeof(srv->cookies));
}

int main(int argc, char **argv)
{
	struct server srv;
	struct server_conf conf;
	struct config *cfg = NULL;
	char err[1024];

	memset(&srv, 0, sizeof(srv));
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
	config_free(cfg);
	LIST_INIT(&srv.tunnels);
	LIST_INIT(&srv.sessions);
	srv.sessions_per_key.name = "sessions per client key (--max-tunnels-per-key)";
	srv.sessions_all.name = "sessions, all client keys (--max-tunnels)";
	server_reverse_init(&srv);
	server_pool_init(&srv);
	if (apply_conf(&srv, &conf) != WM_OK)
		fatal("out of memory");
	setup_replay(&srv, srv.state_dir);
	srv.argc = argc;
	srv.argv = argv;
	if (acl_count(srv.acl) == 0 && srv.npools == 0)
		log_warn("no --allow rules: every stream will be refused");
	if (check_only) {
		/* Everything a start reads has been read; binding is left out. */
		puts("configuration ok");
		free_loaded(&srv);
		return 0;
	}
	/* Every unauthenticated connection, every tunnel and every stream's
	 * target holds a descriptor; all tunnels full at once is far beyond any
	 * limit, so ask that one full tunnel fits besides the others. */
	size_t backends = 0;
	for (size_t i = 0; i < srv.npools; i++)
		backends += pool_backend_count(srv.pools[i]);
	/* Each backend has at most one health check in flight. */
	acceptor_fd_budget((uint64_t)srv.limits.max_unauth + srv.limits.max_tunnels +
			       srv.tcfg.params.max_streams + backends + 32,
			   "--max-unauth, --max-tunnels, one tunnel's --max-streams and the "
			   "pools' health checks");
	refresh_own_addresses(&srv);

	srv.base = event_base_new();
	if (srv.base == NULL)
		fatal("cannot create the event loop");
	srv.dns = dns_new(srv.base);
	if (srv.dns == NULL)
		fatal("cannot set up DNS resolution");
	char listen_text[SERVER_LISTEN_MAX * (NETADDR_HOST_MAX + 10)] = "";
	size_t used = 0;
	for (size_t i = 0; i < srv.nlisten; i++) {
		const struct netaddr_hostport *at = &srv.listen_at[i];
		int fd = netaddr_listen_tuned(at, &srv.tcfg.tuning, err, sizeof(err));
		if (fd < 0)
			fatal(err);
		char lname[NETADDR_HOST_MAX + 10];
		snprintf(lname, sizeof(lname), strchr(at->host, ':') != NULL ? "[%s]:%u" : "%s:%u",
			 at->host, at->port);
		srv.listeners[i] = acceptor_new(srv.base, fd, on_accept, &srv, lname);
		if (srv.listeners[i] == NULL)
			fatal("cannot listen");
		srv.nlisteners++;
		int n = snprintf(listen_text + used, sizeof(listen_text) - used,
				 strchr(at->host, ':') != NULL ? "%s[%s]:%u" : "%s%s:%u",
				 i > 0 ? ", " : "", at->host, at->port);
		if (n > 0 && (size_t)n < sizeof(listen_text) - used)
			used += (size_t)n;
	}
	srv.limits.unauth.name = "unauthenticated connections (--max-unauth)";
	srv.limits.handshakes.name = "handshakes per source (--handshake-rate)";
	srv.limits.opens.name = "stream opens per tunnel (--open-rate)";
	srv.limits.tunnels.name = "authenticated tunnels (--max-tunnels)";
	srv.limits.tunnels_per_key.name = "tunnels per client key (--max-tunnels-per-key)";
	srv.limits.share.name = "unauthenticated connections per source (share of --max-unauth)";
	srv.limits.evicted.name = "full unauthenticated table (oldest connection closed)";
	srv.limits.mac2.name = "cookie MAC (mac2) missing or bad";
	srv.refused_from.name = "client key source address (from=)";
	if (srv.admin_opt.enabled) {
		srv.admin = admin_start(srv.base, &srv.admin_opt, ADMIN_SERVER, PROG,
					server_admin_collect, &srv, err, sizeof(err));
		if (srv.admin == NULL)
			fatal(err);
		if (srv.admin_actions)
			admin_set_action(srv.admin, server_pool_action, &srv);
	}
	TAILQ_INIT(&srv.unauth_list);
	srv.sigint = evsignal_new(srv.base, SIGINT, on_signal, &srv);
	srv.sigterm = evsignal_new(srv.base, SIGTERM, on_signal, &srv);
	srv.sighup = evsignal_new(srv.base, SIGHUP, on_reload, &srv);
	srv.drain_tick = event_new(srv.base, -1, EV_PERSIST, on_drain_tick, &srv);
	srv.drain_deadline = evtimer_new(srv.base, on_drain_deadline, &srv);
	srv.own_timer = event_new(srv.base, -1, EV_PERSIST, on_own_timer, &srv);
	if (srv.sigint == NULL || srv.sigterm == NULL || srv.sighup == NULL ||
	    srv.drain_tick == NULL || srv.drain_deadline == NULL || srv.own_timer == NULL)
		fatal("out of memory");
	struct timeval own_every = {SERVER_OWN_REFRESH_MS / 1000, 0};
	event_add(srv.own_timer, &own_every);
	event_add(srv.sigint, NULL);
	event_add(srv.sigterm, NULL);
	event_add(srv.sighup, NULL);
	if (server_pool_start(&srv) != WM_OK)
		fatal("out of memory");

	char b64[KEYS_B64_LEN];
	keys_encode_public(srv.key->pub, b64);
	log_info("listening on %s, server key %s, %zu authorized client keys, %zu allow rules, "
		 "%zu pools",
		 listen_text, b64, keys_authorized_count(srv.authorized), acl_count(srv.acl),
		 srv.npools);
	notify_ready();

	event_base_dispatch(srv.base);

	log_counters(&srv);
	log_info("drain: %llu streams cut (--drain-timeout or a second signal); reloads: %llu, "
		 "%llu refused; %llu tunnels closed as no longer authorized",
		 (unsigned long long)srv.drain_cut, (unsigned long long)srv.reloads,
		 (unsigned long long)srv.reloads_failed,
		 (unsigned long long)srv.deauthorized_tunnels);
	event_free(srv.sigint);
	event_free(srv.sigterm);
	event_free(srv.sighup);
	event_free(srv.drain_tick);
	event_free(srv.drain_deadline);
	event_free(srv.own_timer);
	server_pool_stop(&srv);
	for (size_t i = 0; i < srv.nlisteners; i++)
		acceptor_free(srv.listeners[i]);
	admin_free(srv.admin);
	dns_free(srv.dns);
	event_base_free(srv.base);
	free_loaded(&srv);
	log_info("stopped");
	return 0;
}
