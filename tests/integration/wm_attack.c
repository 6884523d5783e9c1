/*
 * wm_attack: a misbehaving wanmux client for the attack tests
 * (test_attacks.py). It runs the real Noise handshake with a given key (so it
 * can act as a malicious *authorized* client) and then breaks the protocol on
 * purpose: oversized and truncated records, bad frames in valid records,
 * stream floods, and streams whose window it never opens. Blocking sockets,
 * one connection per run; it prints one "result: k=v ..." line for the test.
 * Not a daemon and not installed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "wanmux/bytes.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/hello.h"
#include "wanmux/keys.h"
#include "wanmux/record.h"
#include "wanmux/tunnel.h"

#define PROG "wm_attack"

static const char usage_text[] =
    "usage: " PROG " COMMAND --server HOST:PORT --server-key PUB --key FILE [options]\n"
    "\n"
    "Common options:\n"
    "  --server HOST:PORT     the wanmux-server to attack\n"
    "  --server-key PUB       its public key (base64 or FILE.pub)\n"
    "  --key FILE             the private key to handshake with\n"
    "  --psk FILE             pre-shared key, if the server uses one\n"
    "  --tunnel-no N          tunnel slot in the hello (default 0)\n"
    "  --stream-window N      window announced in the hello (default 4194304)\n"
    "  --session-window N     (default 16777216)\n"
    "  --max-streams N        concurrent streams announced in the hello (1024)\n"
    "  --wait SECS            how long to wait for the server's reaction (10)\n"
    "  --age SECS             stamp msg1 this long in the past (a recorded one)\n"
    "  --bind ADDR            connect from this local address (e.g. 127.0.0.2,\n"
    "                         to test a key's from= option)\n"
    "\n"
    "Commands (each prints one 'result: ...' line):\n"
    "  handshake              handshake; exit 0 if the tunnel came up, 3 if the\n"
    "                         server closed without a reply (e.g. unknown key)\n"
    "  replay                 handshake, then send the same msg1 on a new\n"
    "                         connection; exit 0 if that one is closed unanswered\n"
    "  oversized [--short]    after the handshake send a 65535-byte record of\n"
    "                         garbage (--short: a length below the tag size);\n"
    "                         exit 0 if the server closes the tunnel\n"
    "  truncated              send half a record, then nothing; exit 0 if the\n"
    "                         server closes the tunnel within --wait\n"
    "  badframe --kind K      one valid record holding a bad frame; K is\n"
    "                         unknown-type, bad-flags, data-unopened,\n"
    "                         open-even-id, open-backwards, short-body;\n"
    "                         exit 0 if the server closes the tunnel\n"
    "  flood --target HOST:PORT --count N [--per-record M] [--reset]\n"
    "                         N OPENs as fast as possible (M per record); counts\n"
    "                         the OPEN_RESULTs that come back within --wait\n"
    "                         (--reset: RESET each stream right after its OPEN)\n"
    "  noread --target HOST:PORT --streams K --hold SECS\n"
    "                         open K streams to a source, then never read the\n"
    "                         socket nor send WINDOW; PINGs keep the tunnel alive\n"
    "  rekey --count N [--every MS]\n"
    "                         announce rekeys in the hello, then run N complete\n"
    "                         rekey exchanges (OFFER, ANSWER, DONE), MS apart\n"
    "                         (default 0: ignore the 100 ms floor); prints how\n"
    "                         many were answered; exit 0 if the server closed\n"
    "                         the tunnel, 1 if all N were answered\n"
    "  ping-flood --hold SECS PINGs as fast as the server takes them, never\n"
    "                         reading; reports whether the server closed\n"
    "  ping-trickle --hold SECS\n"
    "                         the same, but reads 4 KiB every 5 s\n"
    "  tunnels --count N --hold SECS\n"
    "                         N tunnels at once (tunnel slots 0..N-1), held open;\n"
    "                         counts how many came up\n"
    "  window-collide --target HOST:PORT --streams K --spacing S --count N\n"
    "                         K streams with ids S apart, then N WINDOW frames on\n"
    "                         the first one (stream-table chain probe)\n"
    "  pin --target HOST:PORT --count N --streams K --hold SECS\n"
    "                         N tunnels (all up before any stream), each with K\n"
    "                         streams to a target that does not read, each sent\n"
    "                         all the initial credit of the server's hello (no\n"
    "                         WINDOW awaited); held open\n"
    "  noack --target HOST:PORT --count N --streams K --hold SECS\n"
    "                         N tunnels, each with K streams to a fast source;\n"
    "                         grants credit (hello windows, WINDOW frames) and\n"
    "                         reads everything, but never sends ACK; prints the\n"
    "                         DATA bytes received\n"
    "  listen --target ADDR:PORT --count N [--hold SECS]\n"
    "                         N LISTENs for PORT, PORT+1, ... (paced under the\n"
    "                         LISTEN rate); counts the answers, then holds\n"
    "  member --target ADDR:PORT [--hold SECS]\n"
    "                         LISTEN on ADDR:PORT (a --reverse-group member),\n"
    "                         then answer every OPEN the server sends with\n"
    "                         OPEN_RESULT 0 and hold its stream, never sending a\n"
    "                         byte; prints 'listen: E' (the LISTEN_RESULT), then\n"
    "                         'result: member listen=E opens=K' after --hold\n"
    "  serve --listen PORT --key SERVERKEY --count N [--hold SECS]\n"
    "                         a hostile server (no --server needed): takes one\n"
    "                         client tunnel, sends N unsolicited LISTEN_RESULTs\n"
    "                         for its first reverse request, flipping the answer;\n"
    "                         --kind pong-forge: instead answers each PING 300 ms\n"
    "                         late with a PONG whose opaque is 300 ms later\n";

struct opts {
	const char *server;
	const char *server_key;
	const char *key;
	const char *psk;
	const char *bind;
	const char *target;
	const char *kind;
	unsigned tunnel_no;
	uint32_t stream_window;
	uint32_t session_window;
	uint32_t max_streams;
	double wait_s;
	double hold_s;
	double age_s;
	unsigned long count;
	unsigned long per_record;
	unsigned long streams;
	unsigned long spacing;
	bool shortlen;
	bool reset;
	bool rekey_hello; /* hello flag: this client takes part in rekeys */
	double every_s;
	unsigned listen_port; /* serve: the port this fake server listens on */
};

struct conn {
	int fd;
	struct record_cipher *tx;
	struct record_cipher *rx;
	uint8_t msg1[2 + HANDSHAKE_MSG_MAX]; /* as sent, with its length prefix */
	size_t msg1_len;
	uint8_t inbuf[2 + RECORD_CIPHERTEXT_MAX];
	size_t inlen;
	uint32_t next_id;
	uint8_t rekey_ck[HANDSHAKE_HASH_LEN]; /* handshake_rekey_secret() */
	uint32_t peer_stream_window;	      /* the server's hello: initial credit */
	uint32_t peer_session_window;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void split_hostport(const char *spec, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon = strrchr(spec, ':');
	if (colon == NULL || (size_t)(colon - spec) >= hcap || strlen(colon + 1) >= pcap)
		die("bad HOST:PORT '%s'", spec);
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	snprintf(port, pcap, "%s", colon + 1);
}

static int tcp_connect(const char *spec, const char *bind_addr)
{
	char host[256], port[16];
	struct addrinfo hints, *res;
	split_hostport(spec, host, sizeof(host), port, sizeof(port));
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0)
		die("%s: %s", spec, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && bind_addr != NULL) {
		struct addrinfo *local;
		hints.ai_family = res->ai_family;
		hints.ai_flags = AI_NUMERICHOST;
		rc = getaddrinfo(bind_addr, "0", &hints, &local);
		if (rc != 0)
			die("--bind %s: %s", bind_addr, gai_strerror(rc));
		if (bind(fd, local->ai_addr, local->ai_addrlen) != 0)
			die("bind %s: %s", bind_addr, strerror(errno));
		freeaddrinfo(local);
	}
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0)
		die("connect %s: %s", spec, strerror(errno));
	freeaddrinfo(res);
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/*
 * Reads into c->inbuf until it holds want bytes. 1 when there, 0 on EOF or a
 * connection error (the server closed), -1 on timeout.
 */
static int fill(struct conn *c, size_t want, double deadline)
{
	while (c->inlen < want) {
		double left = deadline - now_s();
		if (left <= 0)
			return -1;
		struct pollfd pfd = {c->fd, POLLIN, 0};
		int pr = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0)
			continue;
		ssize_t n = recv(c->fd, c->inbuf + c->inlen, want - c->inlen, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		c->inlen += (size_t)n;
	}
	return 1;
}

static void load_keys(const struct opts *o, struct keypair **kp, uint8_t server_pub[KEYS_LEN],
		      uint8_t psk[KEYS_LEN], bool *have_psk)
{
	char err[512];
	if (o->key == NULL || o->server_key == NULL || o->server == NULL)
		die("--server, --server-key and --key are required");
	if (keys_pair_load(o->key, kp, err, sizeof(err)) != 0)
		die("%s", err);
	if (keys_load_public(o->server_key, server_pub, err, sizeof(err)) != 0)
		die("%s", err);
	*have_psk = false;
	if (o->psk != NULL) {
		if (keys_load_psk(o->psk, psk, err, sizeof(err)) != 0)
			die("%s", err);
		*have_psk = true;
	}
}

static void tai64n_now(uint8_t out[HELLO_TIMESTAMP_LEN], double age_s)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	bytes_store_be64(out, 0x400000000000000aULL + (uint64_t)ts.tv_sec - (uint64_t)age_s);
	bytes_store_be32(out + 8, (uint32_t)ts.tv_nsec);
}

/*
 * Connects and runs the handshake. Returns 1 when the tunnel is up (c has its
 * ciphers), 0 when the server closed without answering, -1 on a timeout.
 */
static int handshake(const struct opts *o, struct conn *c)
{
	struct keypair *kp = NULL;
	uint8_t server_pub[KEYS_LEN], psk[KEYS_LEN];
	bool have_psk;
	load_keys(o, &kp, server_pub, psk, &have_psk);

	memset(c, 0, sizeof(*c));
	c->next_id = 1;
	c->fd = tcp_connect(o->server, o->bind);
	uint8_t cookie[HANDSHAKE_COOKIE_LEN];
	bool have_cookie = false;
	struct handshake *hs;
	int rc;
again:
	hs = handshake_initiator_new(kp->priv, server_pub, have_psk ? psk : NULL);
	if (hs == NULL)
		die("handshake_initiator_new failed");
	if (have_cookie)
		handshake_set_cookie(hs, cookie);
	struct hello_client h = {
	    .version = HELLO_VERSION,
	    .tunnel_no = (uint8_t)o->tunnel_no,
	    .flags = (uint8_t)((o->rekey_hello ? HELLO_FLAG_REKEY : 0) | HELLO_FLAG_SESSIONS),
	    .params = {.stream_window = o->stream_window,
		       .session_window = o->session_window,
		       .max_streams = o->max_streams}};
	uint8_t hello[HELLO_CLIENT_LEN];
	tai64n_now(h.timestamp, o->age_s);
	/* Each tunnel keeps its own stream ids and credit: its own session. */
	randombytes_buf(h.session_id, sizeof(h.session_id));
	if (hello_client_encode(&h, hello, sizeof(hello)) != HELLO_CLIENT_LEN)
		die("hello_client_encode failed");
	int n = handshake_write_msg1(hs, hello, sizeof(hello), c->msg1 + 2, HANDSHAKE_MSG_MAX);
	if (n < 0)
		die("handshake_write_msg1: %s", wm_strerror(n));
	c->msg1[0] = (uint8_t)(n >> 8);
	c->msg1[1] = (uint8_t)n;
	c->msg1_len = 2 + (size_t)n;
	send_all(c->fd, c->msg1, c->msg1_len);

	double deadline = now_s() + o->wait_s;
	rc = fill(c, 2, deadline);
	if (rc <= 0)
		goto out;
	size_t len = ((size_t)c->inbuf[0] << 8) | c->inbuf[1];
	if (len > HANDSHAKE_MSG_MAX)
		die("msg2 of %zu bytes", len);
	rc = fill(c, 2 + len, deadline);
	if (rc <= 0)
		goto out;
	if (!have_cookie && handshake_is_cookie_reply(c->inbuf + 2, len)) {
		/* The server is under load: once more, with mac2. */
		if (handshake_read_cookie_reply(hs, c->inbuf + 2, len, cookie) != 0)
			die("bad cookie reply");
		have_cookie = true;
		c->inlen = 0;
		handshake_free(hs);
		goto again;
	}
	uint8_t payload[HANDSHAKE_PAYLOAD_MAX];
	n = handshake_read_msg2(hs, c->inbuf + 2, len, payload, sizeof(payload));
	if (n < HELLO_SERVER_LEN)
		die("handshake_read_msg2: %s", n < 0 ? wm_strerror(n) : "short hello");
	c->peer_stream_window = bytes_load_be32(payload + 4);
	c->peer_session_window = bytes_load_be32(payload + 8);
	uint8_t send_key[HANDSHAKE_KEY_LEN], recv_key[HANDSHAKE_KEY_LEN];
	if (handshake_split(hs, send_key, recv_key) != WM_OK ||
	    handshake_rekey_secret(hs, c->rekey_ck) != WM_OK)
		die("handshake_split failed");
	c->tx = record_cipher_new(send_key);
	c->rx = record_cipher_new(recv_key);
	sodium_memzero(send_key, sizeof(send_key));
	sodium_memzero(recv_key, sizeof(recv_key));
	if (c->tx == NULL || c->rx == NULL)
		die("record_cipher_new failed");
	c->inlen = 0;
	rc = 1;
out:
	handshake_free(hs);
	keys_pair_free(kp);
	return rc;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	record_cipher_free(c->tx);
	record_cipher_free(c->rx);
	c->tx = c->rx = NULL;
}

/* Seals plain as one record and sends it. */
static void send_record(struct conn *c, const uint8_t *plain, size_t len)
{
	static uint8_t out[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD];
	int n = record_seal(c->tx, plain, len, out);
	if (n < 0)
		die("record_seal: %s", wm_strerror(n));
	send_all(c->fd, out, (size_t)n);
}

struct counts {
	unsigned long records;
	unsigned long open_ok;
	unsigned long open_limit;
	unsigned long open_not_allowed;
	unsigned long open_other;
	unsigned long resets;
	unsigned long data_bytes;
	unsigned long raw_bytes; /* DATA bytes before compression */
	unsigned long pings;
};

static void count_frames(const uint8_t *p, size_t len, struct counts *k)
{
	while (len > 0) {
		struct frame f;
		size_t used;
		if (frame_decode(p, len, &f, &used) != WM_OK)
			die("the server sent a malformed frame");
		switch (f.type) {
		case FRAME_OPEN_RESULT:
			if (f.u.error == FRAME_ERR_NONE)
				k->open_ok++;
			else if (f.u.error == FRAME_ERR_STREAM_LIMIT)
				k->open_limit++;
			else if (f.u.error == FRAME_ERR_NOT_ALLOWED)
				k->open_not_allowed++;
			else
				k->open_other++;
			break;
		case FRAME_RESET:
			k->resets++;
			break;
		case FRAME_DATA:
			k->data_bytes += f.u.data.payload_len;
			k->raw_bytes += f.u.data.raw_len;
			break;
		case FRAME_PING:
			k->pings++;
			break;
		default:
			break;
		}
		p += used;
		len -= used;
	}
}

/*
 * Reads records until deadline or until the server closes. Returns 0 when it
 * closed (EOF/reset), -1 on timeout. Counts what arrived in k (may be NULL).
 * stop_when_opens: return early once that many OPEN_RESULTs arrived.
 */
static int read_records(struct conn *c, double deadline, struct counts *k,
			unsigned long stop_when_opens)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct counts dummy;
	if (k == NULL) {
		memset(&dummy, 0, sizeof(dummy));
		k = &dummy;
	}
	for (;;) {
		unsigned long opens =
		    k->open_ok + k->open_limit + k->open_not_allowed + k->open_other;
		if (stop_when_opens > 0 && opens >= stop_when_opens)
			return -1;
		int rc = fill(c, 2, deadline);
		if (rc <= 0)
			return rc;
		int total = record_peek(c->inbuf, c->inlen);
		if (total < 0)
			die("the server sent a bad record length");
		rc = fill(c, (size_t)total, deadline);
		if (rc <= 0)
			return rc;
		int n = record_open(c->rx, c->inbuf, (size_t)total, plain);
		if (n < 0)
			die("a server record fails to open");
		k->records++;
		count_frames(plain, (size_t)n, k);
		c->inlen = 0;
	}
}

static void wait_closed(struct conn *c, const struct opts *o, double t0, const char *what)
{
	int rc = read_records(c, t0 + o->wait_s, NULL, 0);
	if (rc == 0) {
		printf("result: %s closed_after=%.3f\n", what, now_s() - t0);
		conn_close(c);
		exit(0);
	}
	printf("result: %s still_open_after=%.3f\n", what, now_s() - t0);
	conn_close(c);
	exit(1);
}

static void need_up(int rc)
{
	if (rc == 1)
		return;
	printf("result: handshake %s\n", rc == 0 ? "refused" : "timeout");
	exit(4);
}

static int cmd_handshake(const struct opts *o)
{
	struct conn c;
	double t0 = now_s();
	int rc = handshake(o, &c);
	if (rc == 1) {
		printf("result: up after=%.3f\n", now_s() - t0);
		conn_close(&c);
		return 0;
	}
	printf("result: %s after=%.3f\n", rc == 0 ? "refused" : "timeout", now_s() - t0);
	conn_close(&c);
	return rc == 0 ? 3 : 1;
}

static int cmd_replay(const struct opts *o)
{
	struct conn c, r;
	need_up(handshake(o, &c));
	/* Keep the genuine tunnel open while the copy goes in. */
	memset(&r, 0, sizeof(r));
	r.fd = tcp_connect(o->server, o->bind);
	send_all(r.fd, c.msg1, c.msg1_len);
	double t0 = now_s();
	int rc = fill(&r, 1, t0 + o->wait_s);
	conn_close(&c);
	if (rc == 0) {
		printf("result: replay closed_unanswered after=%.3f\n", now_s() - t0);
		close(r.fd);
		return 0;
	}
	printf("result: replay %s\n", rc > 0 ? "answered" : "still_open");
	close(r.fd);
	return 1;
}

static int cmd_oversized(const struct opts *o)
{
	struct conn c;
	need_up(handshake(o, &c));
	static uint8_t rec[2 + RECORD_CIPHERTEXT_MAX];
	size_t len = o->shortlen ? 5 : RECORD_CIPHERTEXT_MAX;
	rec[0] = (uint8_t)(len >> 8);
	rec[1] = (uint8_t)len;
	randombytes_buf(rec + 2, len);
	double t0 = now_s();
	send_all(c.fd, rec, 2 + len);
	wait_closed(&c, o, t0, o->shortlen ? "short_record" : "oversized_record");
	return 1;
}

static int cmd_truncated(const struct opts *o)
{
	struct conn c;
	need_up(handshake(o, &c));
	uint8_t plain[1000];
	static uint8_t out[sizeof(plain) + RECORD_OVERHEAD];
	memset(plain, 0, sizeof(plain));
	int n = record_seal(c.tx, plain, sizeof(plain), out);
	if (n < 0)
		die("record_seal failed");
	double t0 = now_s();
	send_all(c.fd, out, (size_t)n / 2);
	wait_closed(&c, o, t0, "truncated_record");
	return 1;
}

static int cmd_badframe(const struct opts *o)
{
	struct conn c;
	uint8_t buf[256];
	size_t len;
	memset(buf, 0, sizeof(buf));
	if (o->kind == NULL)
		die("badframe needs --kind");
	need_up(handshake(o, &c));
	if (strcmp(o->kind, "unknown-type") == 0) {
		buf[0] = 0x7f;
		bytes_store_be32(buf + 4, 1);
		len = FRAME_HEADER_LEN;
	} else if (strcmp(o->kind, "bad-flags") == 0) {
		struct frame f = {.type = FRAME_WINDOW, .stream_id = 0};
		f.u.max_offset = 1 << 20;
		int n = frame_encode(&f, buf, sizeof(buf));
		if (n < 0)
			die("frame_encode failed");
		buf[1] = 0x80;
		len = (size_t)n;
	} else if (strcmp(o->kind, "data-unopened") == 0) {
		int n = frame_encode_data_header(buf, sizeof(buf), 1001, 0, 0, 0, 10);
		if (n < 0)
			die("frame_encode_data_header failed");
		len = (size_t)n + 10;
	} else if (strcmp(o->kind, "open-even-id") == 0 || strcmp(o->kind, "open-backwards") == 0) {
		struct frame f = {.type = FRAME_OPEN, .stream_id = 2};
		f.u.open.type = FRAME_ADDR_IPV4;
		f.u.open.port = 9;
		f.u.open.u.ipv4[0] = 127;
		f.u.open.u.ipv4[3] = 1;
		len = 0;
		if (strcmp(o->kind, "open-backwards") == 0) {
			/* Stream 5 (refused: nothing allows port 9), then stream 5
			 * again: a reuse. (A lower id is no longer an error: OPENs
			 * on different tunnels overtake each other.) */
			f.stream_id = 5;
			int n = frame_encode(&f, buf, sizeof(buf));
			if (n < 0)
				die("frame_encode failed");
			len = (size_t)n;
		}
		int n = frame_encode(&f, buf + len, sizeof(buf) - len);
		if (n < 0)
			die("frame_encode failed");
		len += (size_t)n;
	} else if (strcmp(o->kind, "short-body") == 0) {
		/* A RESET whose length says 2 bytes: too short for its body. */
		buf[0] = FRAME_RESET;
		buf[3] = 2;
		bytes_store_be32(buf + 4, 1);
		len = FRAME_HEADER_LEN + 2;
	} else {
		die("unknown --kind '%s'", o->kind);
	}
	double t0 = now_s();
	send_record(&c, buf, len);
	wait_closed(&c, o, t0, o->kind);
	return 1;
}

static void parse_target(const char *spec, struct frame_addr *a)
{
	char host[256], port[16];
	split_hostport(spec, host, sizeof(host), port, sizeof(port));
	memset(a, 0, sizeof(*a));
	a->port = (uint16_t)strtoul(port, NULL, 10);
	if (inet_pton(AF_INET, host, a->u.ipv4) == 1) {
		a->type = FRAME_ADDR_IPV4;
	} else {
		size_t n = strlen(host);
		if (n == 0 || n > FRAME_NAME_MAX)
			die("bad target host '%s'", host);
		a->type = FRAME_ADDR_NAME;
		a->name_len = (uint8_t)n;
		memcpy(a->u.name, host, n + 1);
	}
}

/* Appends an OPEN (and with reset, a RESET) for the next stream id to buf. */
static size_t add_open(struct conn *c, const struct frame_addr *target, bool reset, uint8_t *buf,
		       size_t cap)
{
	struct frame f = {.type = FRAME_OPEN, .stream_id = c->next_id};
	f.u.open = *target;
	int n = frame_encode(&f, buf, cap);
	if (n < 0)
		die("frame_encode OPEN failed");
	size_t used = (size_t)n;
	if (reset) {
		struct frame r = {.type = FRAME_RESET, .stream_id = c->next_id};
		r.u.reset.error = FRAME_ERR_CANCEL;
		n = frame_encode(&r, buf + used, cap - used);
		if (n < 0)
			die("frame_encode RESET failed");
		used += (size_t)n;
	}
	c->next_id += 2;
	return used;
}

static int cmd_flood(const struct opts *o)
{
	struct conn c;
	struct frame_addr target;
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct counts k;
	if (o->target == NULL || o->count == 0)
		die("flood needs --target and --count");
	parse_target(o->target, &target);
	need_up(handshake(o, &c));
	memset(&k, 0, sizeof(k));
	double t0 = now_s();
	unsigned long sent = 0;
	while (sent < o->count) {
		size_t len = 0;
		for (unsigned long i = 0; i < o->per_record && sent < o->count; i++, sent++) {
			if (len + 600 > sizeof(plain))
				break;
			len += add_open(&c, &target, o->reset, plain + len, sizeof(plain) - len);
		}
		send_record(&c, plain, len);
		/* Read what came back so far, so the server never blocks on us. */
		read_records(&c, now_s() + 0.001, &k, 0);
	}
	double send_s = now_s() - t0;
	int rc = read_records(&c, now_s() + o->wait_s, &k, o->count);
	printf("result: flood sent=%lu send_s=%.3f ok=%lu limit=%lu not_allowed=%lu other=%lu "
	       "resets=%lu closed=%d\n",
	       sent, send_s, k.open_ok, k.open_limit, k.open_not_allowed, k.open_other, k.resets,
	       rc == 0);
	fflush(stdout);
	conn_close(&c);
	return rc == 0 ? 1 : 0;
}

static int cmd_noread(const struct opts *o)
{
	struct conn c;
	struct frame_addr target;
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	if (o->target == NULL || o->streams == 0)
		die("noread needs --target and --streams");
	parse_target(o->target, &target);
	need_up(handshake(o, &c));
	unsigned long sent = 0;
	while (sent < o->streams) {
		size_t len = 0;
		for (; sent < o->streams && len + 600 <= sizeof(plain); sent++)
			len += add_open(&c, &target, false, plain + len, sizeof(plain) - len);
		send_record(&c, plain, len);
	}
	printf("opened: %lu\n", sent);
	fflush(stdout);
	/* Never read; a PING a second keeps the server's liveness check happy,
	 * so only the window and buffer limits can protect it. */
	double t0 = now_s();
	unsigned long pings = 0;
	bool closed = false;
	while (now_s() - t0 < o->hold_s) {
		uint8_t ping[FRAME_HEADER_LEN + 8];
		struct frame f = {.type = FRAME_PING, .stream_id = 0};
		f.u.opaque = pings;
		int n = frame_encode(&f, ping, sizeof(ping));
		if (n < 0)
			die("frame_encode PING failed");
		static uint8_t out[sizeof(ping) + RECORD_OVERHEAD];
		int m = record_seal(c.tx, ping, (size_t)n, out);
		if (m < 0)
			die("record_seal failed");
		if (send(c.fd, out, (size_t)m, MSG_NOSIGNAL | MSG_DONTWAIT) != m) {
			closed = true;
			break;
		}
		pings++;
		usleep(500000);
	}
	printf("result: noread streams=%lu held_s=%.1f pings=%lu closed=%d\n", sent, now_s() - t0,
	       pings, closed);
	conn_close(&c);
	return 0;
}

/* Reads and opens the next record into plain (RECORD_PLAINTEXT_MAX bytes):
 * 1 with its length in len, 0 when the server closed, -1 on timeout. */
static int next_record(struct conn *c, double deadline, uint8_t *plain, size_t *len)
{
	int rc = fill(c, 2, deadline);
	if (rc <= 0)
		return rc;
	int total = record_peek(c->inbuf, c->inlen);
	if (total < 0)
		die("the server sent a bad record length");
	rc = fill(c, (size_t)total, deadline);
	if (rc <= 0)
		return rc;
	int n = record_open(c->rx, c->inbuf, (size_t)total, plain);
	if (n < 0)
		die("a server record fails to open");
	c->inlen = 0;
	*len = (size_t)n;
	return 1;
}

/*
 * Reads records until one ends with a REKEY ANSWER (its key into pub).
 * Returns 1 then, 0 when the server closed, -1 on timeout. ANSWER is the last
 * frame of its record, so the caller may switch the receiving key right away.
 */
static int wait_answer(struct conn *c, double deadline, uint8_t pub[FRAME_REKEY_KEY_LEN])
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	for (;;) {
		size_t n;
		int rc = next_record(c, deadline, plain, &n);
		if (rc <= 0)
			return rc;
		bool answered = false;
		for (size_t off = 0; off < n;) {
			struct frame f;
			size_t used;
			if (frame_decode(plain + off, n - off, &f, &used) != WM_OK)
				die("the server sent a malformed frame");
			if (f.type == FRAME_REKEY && f.flags == FRAME_REKEY_ANSWER) {
				memcpy(pub, f.u.rekey_key, FRAME_REKEY_KEY_LEN);
				answered = true;
			}
			off += used;
		}
		if (answered)
			return 1;
	}
}

static void send_rekey(struct conn *c, uint8_t step, const uint8_t *pub)
{
	struct frame f = {.type = FRAME_REKEY, .flags = step};
	uint8_t buf[FRAME_HEADER_LEN + FRAME_REKEY_KEY_LEN];
	if (pub != NULL)
		memcpy(f.u.rekey_key, pub, FRAME_REKEY_KEY_LEN);
	int n = frame_encode(&f, buf, sizeof(buf));
	if (n < 0)
		die("frame_encode: %s", wm_strerror(n));
	send_record(c, buf, (size_t)n);
}

/* Complete exchanges as fast as the server answers, or o->every_s apart. */
static int cmd_rekey(const struct opts *o)
{
	struct conn c;
	need_up(handshake(o, &c));
	/* Small records back to back: without this, Nagle and delayed ACKs
	 * would pace the flood at about 25 exchanges a second by themselves. */
	int one = 1;
	setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	double t0 = now_s();
	unsigned long answered = 0;
	for (; answered < o->count; answered++) {
		uint8_t e[32], e_pub[32], r_pub[32], dh[32], k_i2r[32], k_r2i[32];
		randombytes_buf(e, sizeof(e));
		crypto_scalarmult_base(e_pub, e);
		send_rekey(&c, FRAME_REKEY_OFFER, e_pub);
		int rc = wait_answer(&c, now_s() + o->wait_s, r_pub);
		if (rc <= 0) {
			printf("result: answered=%lu %s_after=%.3f\n", answered,
			       rc == 0 ? "closed" : "timeout", now_s() - t0);
			conn_close(&c);
			return rc == 0 ? 0 : 1;
		}
		if (crypto_scalarmult(dh, e, r_pub) != 0)
			die("low-order ANSWER key");
		handshake_rekey_kdf(c.rekey_ck, dh, e_pub, r_pub, k_i2r, k_r2i);
		record_cipher_rekey(c.rx, k_r2i);
		send_rekey(&c, FRAME_REKEY_DONE, NULL);
		record_cipher_rekey(c.tx, k_i2r);
		if (o->every_s > 0) {
			struct timespec ts = {
			    (time_t)o->every_s,
			    (long)((o->every_s - (double)(time_t)o->every_s) * 1e9)};
			nanosleep(&ts, NULL);
		}
	}
	/* All answered: prove the last keys work by a PING the server must answer
	 * (any record from it opens only under the new key). */
	struct frame ping = {.type = FRAME_PING, .u.opaque = 1};
	uint8_t buf[FRAME_HEADER_LEN + 8];
	int n = frame_encode(&ping, buf, sizeof(buf));
	send_record(&c, buf, (size_t)n);
	struct counts k;
	memset(&k, 0, sizeof(k));
	double until = now_s() + 0.5;
	int rc = read_records(&c, until, &k, 0);
	printf("result: answered=%lu still_open elapsed=%.3f records_after=%lu\n", answered,
	       now_s() - t0, k.records);
	conn_close(&c);
	return rc == 0 ? 0 : 1;
}

/* Reads records until a PONG with opaque arrives: 1, 0 when closed, -1 on
 * timeout. */
static int read_until_pong(struct conn *c, double deadline, uint64_t opaque)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	for (;;) {
		size_t n;
		int rc = next_record(c, deadline, plain, &n);
		if (rc <= 0)
			return rc;
		const uint8_t *p = plain;
		size_t left = n;
		while (left > 0) {
			struct frame f;
			size_t used;
			if (frame_decode(p, left, &f, &used) != WM_OK)
				die("the server sent a malformed frame");
			if (f.type == FRAME_PONG && f.u.opaque == opaque)
				return 1;
			p += used;
			left -= used;
		}
	}
}

/*
 * Sends records of PINGs for hold_s, never blocking for long; with trickle,
 * reads 4 KiB every 5 s. Returns through exit: 0 when the server closed the
 * tunnel, 1 when it was still open at the end.
 */
static int ping_flood(const struct opts *o, bool trickle)
{
	struct conn c;
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	static uint8_t rec[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD];
	need_up(handshake(o, &c));
	uint64_t opaque = 0;
	size_t rec_len = 0, rec_off = 0;
	unsigned long long sent = 0, got = 0;
	double t0 = now_s(), last_read = t0;
	bool closed = false;
	while (!closed && now_s() - t0 < o->hold_s) {
		if (rec_off == rec_len) {
			size_t len = 0;
			while (len + FRAME_HEADER_LEN + 8 <= sizeof(plain)) {
				struct frame f = {.type = FRAME_PING, .stream_id = 0};
				f.u.opaque = ++opaque;
				int n = frame_encode(&f, plain + len, sizeof(plain) - len);
				if (n < 0)
					die("frame_encode PING failed");
				len += (size_t)n;
			}
			int n = record_seal(c.tx, plain, len, rec);
			if (n < 0)
				die("record_seal failed");
			rec_len = (size_t)n;
			rec_off = 0;
		}
		struct pollfd pfd = {c.fd, POLLOUT, 0};
		int pr = poll(&pfd, 1, 100);
		if (pr > 0 && (pfd.revents & (POLLERR | POLLHUP)))
			closed = true;
		if (pr > 0 && (pfd.revents & POLLOUT)) {
			ssize_t n = send(c.fd, rec + rec_off, rec_len - rec_off,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				closed = true;
			if (n > 0) {
				rec_off += (size_t)n;
				sent += (unsigned long long)n;
			}
		}
		if (trickle && now_s() - last_read >= 5) {
			uint8_t buf[4096];
			ssize_t n = recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN))
				closed = true;
			if (n > 0)
				got += (unsigned long long)n;
			last_read = now_s();
		}
	}
	/* A server that closed leaves EOF or a reset behind what it sent. */
	if (!closed) {
		uint8_t buf[4096];
		ssize_t n = recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_PEEK);
		closed = n == 0 || (n < 0 && errno != EAGAIN);
	}
	printf("result: %s sent=%llu read=%llu held_s=%.1f closed=%d\n",
	       trickle ? "ping-trickle" : "ping-flood", sent, got, now_s() - t0, closed);
	conn_close(&c);
	return closed ? 0 : 1;
}

static int cmd_tunnels(const struct opts *o)
{
	static struct conn c[256];
	struct opts each = *o;
	unsigned long up = 0, refused = 0;
	if (o->count == 0 || o->count > 256)
		die("tunnels needs --count 1..256");
	for (unsigned long i = 0; i < o->count; i++) {
		each.tunnel_no = (unsigned)i;
		int rc = handshake(&each, &c[i]);
		if (rc == 1)
			up++;
		else
			refused++;
		if (rc != 1)
			conn_close(&c[i]);
	}
	printf("opened: up=%lu refused=%lu\n", up, refused);
	fflush(stdout);
	double t0 = now_s();
	while (now_s() - t0 < o->hold_s)
		usleep(100000);
	unsigned long still = 0;
	for (unsigned long i = 0; i < o->count; i++) {
		if (c[i].fd < 0 || c[i].tx == NULL)
			continue;
		uint8_t buf[1];
		ssize_t n = recv(c[i].fd, buf, 1, MSG_DONTWAIT | MSG_PEEK);
		if (n > 0 || (n < 0 && errno == EAGAIN))
			still++;
		conn_close(&c[i]);
	}
	printf("result: tunnels up=%lu refused=%lu still_open=%lu\n", up, refused, still);
	return 0;
}

static int cmd_window_collide(const struct opts *o)
{
	struct conn c;
	struct frame_addr target;
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct counts k;
	if (o->target == NULL || o->streams == 0 || o->spacing == 0 || o->spacing % 2 != 0)
		die("window-collide needs --target, --streams and an even --spacing");
	parse_target(o->target, &target);
	need_up(handshake(o, &c));
	memset(&k, 0, sizeof(k));
	unsigned long opened = 0;
	while (opened < o->streams) {
		size_t len = 0;
		for (; opened < o->streams && len + 600 <= sizeof(plain); opened++) {
			c.next_id = (uint32_t)(1 + opened * o->spacing);
			len += add_open(&c, &target, false, plain + len, sizeof(plain) - len);
		}
		send_record(&c, plain, len);
		read_records(&c, now_s() + 0.001, &k, 0);
	}
	read_records(&c, now_s() + o->wait_s, &k, o->streams);
	if (k.open_ok != o->streams) {
		printf("result: window-collide opened=%lu of %lu (limit=%lu not_allowed=%lu)\n",
		       k.open_ok, o->streams, k.open_limit, k.open_not_allowed);
		conn_close(&c);
		return 1;
	}
	/* Stream 1 was inserted first: the tail of its chain. */
	double t0 = now_s();
	unsigned long sent = 0;
	uint64_t max_offset = o->stream_window;
	while (sent < o->count) {
		size_t len = 0;
		for (; sent < o->count && len + 32 <= sizeof(plain); sent++) {
			struct frame f = {.type = FRAME_WINDOW, .stream_id = 1};
			f.u.max_offset = ++max_offset;
			int n = frame_encode(&f, plain + len, sizeof(plain) - len);
			if (n < 0)
				die("frame_encode WINDOW failed");
			len += (size_t)n;
		}
		send_record(&c, plain, len);
		read_records(&c, now_s() + 0.0005, &k, 0);
	}
	/* A PING answered means the server has handled every WINDOW before it. */
	uint8_t ping[FRAME_HEADER_LEN + 8];
	struct frame f = {.type = FRAME_PING, .stream_id = 0};
	f.u.opaque = 0x5eed;
	int n = frame_encode(&f, ping, sizeof(ping));
	if (n < 0)
		die("frame_encode PING failed");
	send_record(&c, ping, (size_t)n);
	int rc = read_until_pong(&c, now_s() + o->wait_s, 0x5eed);
	printf("result: window-collide streams=%lu spacing=%lu windows=%lu elapsed=%.3f pong=%d\n",
	       o->streams, o->spacing, sent, now_s() - t0, rc);
	conn_close(&c);
	return rc == 1 ? 0 : 1;
}

/* Throws away whatever the server sent so far (its answers must not back up
 * and stop it reading us); never blocks. */
static void discard_input(int fd)
{
	uint8_t buf[65536];
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
}

/*
 * --count tunnels, each with --streams streams to a target that never reads,
 * each stream sent as much DATA as the server's initial credit allows
 * (its hello's windows; no WINDOW frame is waited for), then all held open.
 */
static int cmd_pin(const struct opts *o)
{
	static struct conn c[256];
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	static uint8_t payload[FRAME_DATA_RAW_MAX];
	struct frame_addr target;
	struct opts each = *o;
	if (o->target == NULL || o->streams == 0 || o->count == 0 || o->count > 256)
		die("pin needs --target, --streams and --count 1..256");
	parse_target(o->target, &target);
	memset(payload, 'p', sizeof(payload));
	unsigned long up = 0;
	unsigned long long pushed = 0, credit = 0;
	/* All tunnels first: their credit is granted before any stream holds
	 * a byte. */
	for (unsigned long i = 0; i < o->count; i++) {
		each.tunnel_no = (unsigned)i;
		if (handshake(&each, &c[i]) != 1)
			conn_close(&c[i]);
		else
			up++;
	}
	for (unsigned long i = 0; i < o->count; i++) {
		if (c[i].tx == NULL)
			continue;
		size_t len = 0;
		uint32_t first = c[i].next_id;
		for (unsigned long k = 0; k < o->streams; k++)
			len += add_open(&c[i], &target, false, plain + len, sizeof(plain) - len);
		send_record(&c[i], plain, len);
		uint64_t session_left = c[i].peer_session_window;
		credit += session_left;
		for (unsigned long k = 0; k < o->streams && session_left > 0; k++) {
			uint32_t id = first + 2 * (uint32_t)k;
			uint64_t left = c[i].peer_stream_window < session_left
					    ? c[i].peer_stream_window
					    : session_left;
			uint64_t offset = 0;
			while (offset < left) {
				len = 0;
				while (offset < left &&
				       len + FRAME_DATA_OVERHEAD_MAX + FRAME_DATA_RAW_MAX <=
					   sizeof(plain)) {
					size_t n = left - offset < FRAME_DATA_RAW_MAX
						       ? (size_t)(left - offset)
						       : FRAME_DATA_RAW_MAX;
					int h = frame_encode_data_header(plain + len,
									 sizeof(plain) - len, id, 0,
									 offset, (uint32_t)n, n);
					if (h < 0)
						die("frame_encode_data_header failed");
					memcpy(plain + len + (size_t)h, payload, n);
					len += (size_t)h + n;
					offset += n;
				}
				send_record(&c[i], plain, len);
				discard_input(c[i].fd);
			}
			session_left -= left;
			pushed += left;
		}
	}
	printf("pushed: up=%lu bytes=%llu credit=%llu\n", up, pushed, credit);
	fflush(stdout);
	double t0 = now_s();
	while (now_s() - t0 < o->hold_s) {
		for (unsigned long i = 0; i < o->count; i++)
			if (c[i].tx != NULL)
				discard_input(c[i].fd);
		usleep(100000);
	}
	for (unsigned long i = 0; i < o->count; i++)
		if (c[i].tx != NULL)
			conn_close(&c[i]);
	printf("result: pin up=%lu pushed=%llu\n", up, pushed);
	return 0;
}

/* Appends a WINDOW frame to buf. */
static size_t add_window(uint32_t id, uint64_t max_offset, uint8_t *buf, size_t cap)
{
	struct frame f = {.type = FRAME_WINDOW, .stream_id = id};
	f.u.max_offset = max_offset;
	int n = frame_encode(&f, buf, cap);
	if (n < 0)
		die("frame_encode WINDOW failed");
	return (size_t)n;
}

/* Reads what is there on every tunnel (decrypted, so DATA is counted),
 * without blocking; returns the DATA payload bytes seen. */
static unsigned long long drain_counted(struct conn *c, unsigned long count)
{
	unsigned long long total = 0;
	for (unsigned long i = 0; i < count; i++) {
		if (c[i].tx == NULL)
			continue;
		struct counts k;
		memset(&k, 0, sizeof(k));
		if (read_records(&c[i], now_s() + 0.002, &k, 0) == 0) {
			conn_close(&c[i]);
			c[i].tx = NULL;
		}
		total += k.raw_bytes;
	}
	return total;
}

/*
 * A peer that takes everything and acknowledges nothing: the server must keep
 * each byte it sent until it is acknowledged (to resend it on another path),
 * so only its buffer budget can stop it holding a session window per tunnel.
 */
static int cmd_noack(const struct opts *o)
{
	static struct conn c[256];
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct frame_addr target;
	struct opts each = *o;
	if (o->target == NULL || o->streams == 0 || o->count == 0 || o->count > 256)
		die("noack needs --target, --streams and --count 1..256");
	parse_target(o->target, &target);
	unsigned long up = 0;
	for (unsigned long i = 0; i < o->count; i++) {
		each.tunnel_no = (unsigned)i;
		if (handshake(&each, &c[i]) != 1)
			conn_close(&c[i]);
		else
			up++;
	}
	for (unsigned long i = 0; i < o->count; i++) {
		if (c[i].tx == NULL)
			continue;
		size_t len = 0;
		uint32_t first = c[i].next_id;
		for (unsigned long k = 0; k < o->streams && len + 600 <= sizeof(plain); k++)
			len += add_open(&c[i], &target, false, plain + len, sizeof(plain) - len);
		/* Credit far beyond any window: only the server's own limits
		 * bound what it sends and keeps. */
		len += add_window(0, (uint64_t)1 << 40, plain + len, sizeof(plain) - len);
		for (unsigned long k = 0; k < o->streams && len + 32 <= sizeof(plain); k++)
			len += add_window(first + 2 * (uint32_t)k, (uint64_t)1 << 40, plain + len,
					  sizeof(plain) - len);
		send_record(&c[i], plain, len);
	}
	double t0 = now_s();
	unsigned long long received = 0;
	while (now_s() - t0 < o->hold_s)
		received += drain_counted(c, o->count);
	printf("result: noack up=%lu received=%llu\n", up, received);
	fflush(stdout);
	for (unsigned long i = 0; i < o->count; i++)
		if (c[i].tx != NULL)
			conn_close(&c[i]);
	return 0;
}

/*
 * --count LISTENs for ports PORT, PORT+1, ... of --target's address, paced
 * under the server's LISTEN rate (10 a second, bursts of 20) so that only
 * the listener limits can refuse them; counts the answers by kind.
 */
static int cmd_listen(const struct opts *o)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct frame_addr target;
	struct conn c;
	if (o->target == NULL || o->count == 0)
		die("listen needs --target and --count");
	parse_target(o->target, &target);
	if (target.type != FRAME_ADDR_IPV4)
		die("listen needs an IPv4 --target");
	need_up(handshake(o, &c));
	unsigned long ok = 0, refused = 0, not_allowed = 0, failed = 0, other = 0, answers = 0;
	for (unsigned long i = 0; i < o->count; i++) {
		struct frame f = {.type = FRAME_LISTEN, .stream_id = (uint32_t)i + 1};
		f.u.open = target;
		f.u.open.port = (uint16_t)(target.port + i);
		int n = frame_encode(&f, plain, sizeof(plain));
		if (n < 0)
			die("frame_encode LISTEN failed");
		send_record(&c, plain, (size_t)n);
		double until = now_s() + (i % 20 == 19 ? 2.2 : 0.01);
		for (;;) {
			size_t len;
			int rc = next_record(&c, until, plain, &len);
			if (rc == 0)
				die("the server closed the tunnel after %lu LISTENs", i + 1);
			if (rc < 0)
				break;
			for (size_t off = 0; off < len;) {
				size_t used;
				if (frame_decode(plain + off, len - off, &f, &used) != WM_OK)
					die("the server sent a malformed frame");
				off += used;
				if (f.type != FRAME_LISTEN_RESULT)
					continue;
				answers++;
				if (f.u.error == FRAME_ERR_NONE)
					ok++;
				else if (f.u.error == FRAME_ERR_REFUSED)
					refused++;
				else if (f.u.error == FRAME_ERR_NOT_ALLOWED)
					not_allowed++;
				else if (f.u.error == FRAME_ERR_CONNECT_FAILED)
					failed++;
				else
					other++;
			}
		}
	}
	while (answers < o->count) {
		size_t len;
		if (next_record(&c, now_s() + o->wait_s, plain, &len) != 1)
			break;
		for (size_t off = 0; off < len;) {
			struct frame f;
			size_t used;
			if (frame_decode(plain + off, len - off, &f, &used) != WM_OK)
				die("the server sent a malformed frame");
			off += used;
			if (f.type != FRAME_LISTEN_RESULT)
				continue;
			answers++;
			ok += f.u.error == FRAME_ERR_NONE;
			refused += f.u.error == FRAME_ERR_REFUSED;
			not_allowed += f.u.error == FRAME_ERR_NOT_ALLOWED;
			failed += f.u.error == FRAME_ERR_CONNECT_FAILED;
			other += f.u.error != FRAME_ERR_NONE && f.u.error != FRAME_ERR_REFUSED &&
				 f.u.error != FRAME_ERR_NOT_ALLOWED &&
				 f.u.error != FRAME_ERR_CONNECT_FAILED;
		}
	}
	printf("listening: %lu\n", ok);
	fflush(stdout);
	double t0 = now_s();
	while (now_s() - t0 < o->hold_s) {
		discard_input(c.fd);
		usleep(100000);
	}
	printf("result: listen sent=%lu ok=%lu refused=%lu not_allowed=%lu failed=%lu other=%lu\n",
	       o->count, ok, refused, not_allowed, failed, other);
	conn_close(&c);
	return 0;
}

/*
 * A reverse group member that takes every connection and serves none: one
 * LISTEN, then OPEN_RESULT 0 for each OPEN (its stream stays open, no byte
 * is sent), PONG for each PING so the tunnel stays up, for --hold seconds.
 */
static int cmd_member(const struct opts *o)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	uint8_t out[64];
	struct frame_addr target;
	struct conn c;
	if (o->target == NULL)
		die("member needs --target");
	parse_target(o->target, &target);
	need_up(handshake(o, &c));
	struct frame f = {.type = FRAME_LISTEN, .stream_id = 1};
	f.u.open = target;
	int n = frame_encode(&f, plain, sizeof(plain));
	if (n < 0)
		die("frame_encode LISTEN failed");
	send_record(&c, plain, (size_t)n);
	long listen_error = -1;
	unsigned long opens = 0;
	double t0 = now_s();
	while (now_s() - t0 < o->hold_s) {
		size_t len;
		int rc = next_record(&c, now_s() + 0.2, plain, &len);
		if (rc == 0)
			break;
		if (rc < 0)
			continue;
		for (size_t off = 0; off < len;) {
			size_t used;
			if (frame_decode(plain + off, len - off, &f, &used) != WM_OK)
				die("the server sent a malformed frame");
			off += used;
			struct frame a = {.stream_id = f.stream_id};
			if (f.type == FRAME_LISTEN_RESULT) {
				listen_error = (long)f.u.error;
				printf("listen: %ld\n", listen_error);
				continue;
			}
			if (f.type == FRAME_OPEN) {
				opens++;
				a.type = FRAME_OPEN_RESULT;
				a.u.error = FRAME_ERR_NONE;
			} else if (f.type == FRAME_PING) {
				a.type = FRAME_PONG;
				a.u.opaque = f.u.opaque;
			} else {
				continue;
			}
			int k = frame_encode(&a, out, sizeof(out));
			if (k < 0)
				die("frame_encode failed");
			send_record(&c, out, (size_t)k);
		}
	}
	printf("result: member listen=%ld opens=%lu\n", listen_error, opens);
	conn_close(&c);
	return 0;
}

/*
 * A hostile server: listens on --listen PORT (loopback) with --key as the
 * server key, takes one client's tunnel with the real handshake and then
 * sends --count LISTEN_RESULTs for the client's first reverse request,
 * alternating "listening" and "refused", none of which the client asked
 * for after the first. Holds the tunnel --hold seconds, reading nothing.
 */
#define FORGE_HOLD_US 300000

/*
 * serve --kind pong-forge: answers each PING FORGE_HOLD_US late with a
 * PONG whose opaque is the PING's plus that delay, so that a client which
 * takes the opaque for its send time sees a round trip of about nothing.
 * Returns how many such PONGs went out.
 */
static unsigned long serve_forged_pongs(struct conn *c, const struct opts *o)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	static uint8_t rec[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD];
	unsigned long forged = 0;
	double t0 = now_s();
	c->inlen = 0; /* msg1 was read into inbuf */
	while (now_s() - t0 < o->hold_s) {
		size_t n;
		int rc = next_record(c, t0 + o->hold_s, plain, &n);
		if (rc <= 0)
			break;
		const uint8_t *p = plain;
		size_t left = n;
		while (left > 0) {
			struct frame f;
			size_t used;
			if (frame_decode(p, left, &f, &used) != WM_OK)
				die("the client sent a malformed frame");
			p += used;
			left -= used;
			if (f.type != FRAME_PING)
				continue;
			usleep(FORGE_HOLD_US);
			struct frame pong = {.type = FRAME_PONG, .stream_id = 0};
			pong.u.opaque = f.u.opaque + FORGE_HOLD_US;
			uint8_t buf[32];
			int m = frame_encode(&pong, buf, sizeof(buf));
			if (m < 0)
				die("frame_encode PONG failed");
			int r = record_seal(c->tx, buf, (size_t)m, rec);
			if (r < 0)
				die("record_seal failed");
			if (send(c->fd, rec, (size_t)r, MSG_NOSIGNAL) != r)
				return forged;
			forged++;
		}
	}
	return forged;
}

static int cmd_serve(const struct opts *o)
{
	static uint8_t plain[RECORD_PLAINTEXT_MAX];
	struct keypair *kp = NULL;
	char err[512];
	if (o->listen_port == 0 || o->key == NULL || o->count == 0)
		die("serve needs --listen PORT, --key and --count");
	if (keys_pair_load(o->key, &kp, err, sizeof(err)) != 0)
		die("%s", err);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(o->listen_port)};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 4) != 0)
		die("listen on port %u: %s", o->listen_port, strerror(errno));
	printf("listening\n");
	fflush(stdout);
	struct conn c;
	memset(&c, 0, sizeof(c));
	c.fd = accept(lfd, NULL, NULL);
	if (c.fd < 0)
		die("accept: %s", strerror(errno));
	if (fill(&c, 2, now_s() + o->wait_s) != 1)
		die("no first message");
	size_t len = ((size_t)c.inbuf[0] << 8) | c.inbuf[1];
	if (len > HANDSHAKE_MSG_MAX || fill(&c, 2 + len, now_s() + o->wait_s) != 1)
		die("bad first message");
	struct handshake *hs = handshake_responder_new(kp->priv, NULL);
	uint8_t payload[HANDSHAKE_PAYLOAD_MAX], client_pub[KEYS_LEN];
	if (hs == NULL ||
	    handshake_read_msg1(hs, c.inbuf + 2, len, payload, sizeof(payload), client_pub) < 0)
		die("handshake_read_msg1 failed");
	/* Version 1, sessions, no rekey flag, generous windows. */
	struct hello_server h = {.version = HELLO_VERSION,
				 .flags = HELLO_FLAG_SESSIONS,
				 .epoch = 1,
				 .params = {.stream_window = SESSION_DEFAULT_STREAM_WINDOW,
					    .session_window = SESSION_DEFAULT_SESSION_WINDOW,
					    .max_streams = SESSION_DEFAULT_MAX_STREAMS}};
	uint8_t hello[HELLO_SERVER_LEN];
	if (hello_server_encode(&h, hello, sizeof(hello)) != HELLO_SERVER_LEN)
		die("hello_server_encode failed");
	uint8_t msg2[2 + HANDSHAKE_MSG_MAX];
	int n = handshake_write_msg2(hs, hello, sizeof(hello), msg2 + 2, HANDSHAKE_MSG_MAX);
	uint8_t send_key[HANDSHAKE_KEY_LEN], recv_key[HANDSHAKE_KEY_LEN];
	if (n < 0 || handshake_split(hs, send_key, recv_key) != WM_OK)
		die("handshake_write_msg2 failed");
	msg2[0] = (uint8_t)(n >> 8);
	msg2[1] = (uint8_t)n;
	send_all(c.fd, msg2, 2 + (size_t)n);
	c.tx = record_cipher_new(send_key);
	c.rx = record_cipher_new(recv_key);
	handshake_free(hs);
	keys_pair_free(kp);
	if (c.tx == NULL || c.rx == NULL)
		die("record_cipher_new failed");
	if (o->kind != NULL && strcmp(o->kind, "pong-forge") == 0) {
		printf("result: serve forged_pongs=%lu\n", serve_forged_pongs(&c, o));
		fflush(stdout);
		conn_close(&c);
		close(lfd);
		return 0;
	}
	unsigned long sent = 0;
	while (sent < o->count) {
		size_t used = 0;
		for (; sent < o->count && used + 32 <= sizeof(plain); sent++) {
			struct frame f = {.type = FRAME_LISTEN_RESULT, .stream_id = 1};
			f.u.error = sent % 2 == 0 ? FRAME_ERR_NONE : FRAME_ERR_REFUSED;
			int m = frame_encode(&f, plain + used, sizeof(plain) - used);
			if (m < 0)
				die("frame_encode LISTEN_RESULT failed");
			used += (size_t)m;
		}
		static uint8_t rec[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD];
		int m = record_seal(c.tx, plain, used, rec);
		if (m < 0)
			die("record_seal failed");
		if (send(c.fd, rec, (size_t)m, MSG_NOSIGNAL) != m)
			break; /* the client closed the tunnel */
	}
	printf("result: serve listen_results=%lu\n", sent);
	fflush(stdout);
	double t0 = now_s();
	while (now_s() - t0 < o->hold_s)
		usleep(100000);
	conn_close(&c);
	close(lfd);
	return 0;
}

static unsigned long num_arg(const char *name, const char *v, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v || n > max)
		die("bad %s '%s'", name, v);
	return n;
}

static double secs_arg(const char *name, const char *v)
{
	char *end;
	double d = strtod(v, &end);
	if (*end != '\0' || end == v || d < 0 || d > 3600)
		die("bad %s '%s'", name, v);
	return d;
}

int main(int argc, char **argv)
{
	struct opts o;
	memset(&o, 0, sizeof(o));
	o.stream_window = SESSION_DEFAULT_STREAM_WINDOW;
	o.session_window = SESSION_DEFAULT_SESSION_WINDOW;
	o.max_streams = 1024;
	o.wait_s = 10;
	o.hold_s = 10;
	o.per_record = 100;
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool takes = true;
		if (strcmp(a, "--short") == 0) {
			o.shortlen = true;
			takes = false;
		} else if (strcmp(a, "--reset") == 0) {
			o.reset = true;
			takes = false;
		} else if (v == NULL) {
			die("%s needs a value (or is unknown)", a);
		} else if (strcmp(a, "--server") == 0) {
			o.server = v;
		} else if (strcmp(a, "--server-key") == 0) {
			o.server_key = v;
		} else if (strcmp(a, "--key") == 0) {
			o.key = v;
		} else if (strcmp(a, "--psk") == 0) {
			o.psk = v;
		} else if (strcmp(a, "--bind") == 0) {
			o.bind = v;
		} else if (strcmp(a, "--listen") == 0) {
			o.listen_port = (unsigned)num_arg(a, v, 65535);
		} else if (strcmp(a, "--target") == 0) {
			o.target = v;
		} else if (strcmp(a, "--kind") == 0) {
			o.kind = v;
		} else if (strcmp(a, "--tunnel-no") == 0) {
			o.tunnel_no = (unsigned)num_arg(a, v, 255);
		} else if (strcmp(a, "--stream-window") == 0) {
			o.stream_window = (uint32_t)num_arg(a, v, 1u << 30);
		} else if (strcmp(a, "--session-window") == 0) {
			o.session_window = (uint32_t)num_arg(a, v, 1u << 30);
		} else if (strcmp(a, "--max-streams") == 0) {
			o.max_streams = (uint32_t)num_arg(a, v, 1u << 20);
			if (o.max_streams == 0)
				die("--max-streams must be > 0");
		} else if (strcmp(a, "--wait") == 0) {
			o.wait_s = secs_arg(a, v);
		} else if (strcmp(a, "--hold") == 0) {
			o.hold_s = secs_arg(a, v);
		} else if (strcmp(a, "--age") == 0) {
			o.age_s = secs_arg(a, v);
		} else if (strcmp(a, "--count") == 0) {
			o.count = num_arg(a, v, 10000000);
		} else if (strcmp(a, "--per-record") == 0) {
			o.per_record = num_arg(a, v, 10000);
			if (o.per_record == 0)
				die("--per-record must be > 0");
		} else if (strcmp(a, "--every") == 0) {
			o.every_s = (double)num_arg(a, v, 60000) / 1000.0;
		} else if (strcmp(a, "--streams") == 0) {
			o.streams = num_arg(a, v, 1000000);
		} else if (strcmp(a, "--spacing") == 0) {
			o.spacing = num_arg(a, v, 1u << 20);
		} else {
			die("unknown option '%s'", a);
		}
		if (takes)
			i++;
	}
	if (sodium_init() < 0)
		die("cannot initialise libsodium");
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(cmd, "handshake") == 0)
		return cmd_handshake(&o);
	if (strcmp(cmd, "replay") == 0)
		return cmd_replay(&o);
	if (strcmp(cmd, "oversized") == 0)
		return cmd_oversized(&o);
	if (strcmp(cmd, "truncated") == 0)
		return cmd_truncated(&o);
	if (strcmp(cmd, "badframe") == 0)
		return cmd_badframe(&o);
	if (strcmp(cmd, "flood") == 0)
		return cmd_flood(&o);
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(&o);
	if (strcmp(cmd, "listen") == 0)
		return cmd_listen(&o);
	if (strcmp(cmd, "member") == 0)
		return cmd_member(&o);
	if (strcmp(cmd, "noack") == 0)
		return cmd_noack(&o);
	if (strcmp(cmd, "pin") == 0)
		return cmd_pin(&o);
	if (strcmp(cmd, "noread") == 0)
		return cmd_noread(&o);
	if (strcmp(cmd, "rekey") == 0) {
		o.rekey_hello = true;
		return cmd_rekey(&o);
	}
	if (strcmp(cmd, "ping-flood") == 0)
		return ping_flood(&o, false);
	if (strcmp(cmd, "ping-trickle") == 0)
		return ping_flood(&o, true);
	if (strcmp(cmd, "tunnels") == 0)
		return cmd_tunnels(&o);
	if (strcmp(cmd, "window-collide") == 0)
		return cmd_window_collide(&o);
	die("unknown command '%s' (try --help)", cmd);
}
