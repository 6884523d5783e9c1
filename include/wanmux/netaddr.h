/*
 * Addresses and sockets: parsing HOST:PORT and forward specs, printing socket
 * addresses, listening sockets, and tuning tunnel sockets. The only blocking
 * name lookup here (netaddr_listen) is for start-up.
 */
#ifndef WANMUX_NETADDR_H
#define WANMUX_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETADDR_HOST_MAX 256
#define NETADDR_STR_MAX 320

struct netaddr_hostport {
	char host[NETADDR_HOST_MAX]; /* without brackets */
	uint16_t port;
};

/* A --forward spec: [LADDR:]LPORT:HOST:PORT, like ssh -L. */
struct netaddr_forward {
	struct netaddr_hostport local; /* host defaults to "127.0.0.1" */
	struct netaddr_hostport target;
};

/* "HOST:PORT" or "[V6]:PORT"; port 1..65535. 0 or WM_ERR_PARSE, reason in err. */
int netaddr_parse_hostport(const char *s, struct netaddr_hostport *out, char *err, size_t errlen);

/* "[LADDR:]LPORT:HOST:PORT"; IPv6 addresses in brackets. 0 or WM_ERR_PARSE. */
int netaddr_parse_forward(const char *s, struct netaddr_forward *out, char *err, size_t errlen);

/*
 * The one host name grammar, for names from the wire (OPEN, LISTEN), from
 * SOCKS and HTTP clients, from rules and from the command line: the n bytes
 * at s (no NUL needed) are 1..253 bytes, plus one optional trailing dot, of
 * dot-separated labels of 1..63 letters, digits, '-' or '_'. Nothing else
 * passes: no control bytes, spaces or bytes >= 0x80 (an IDN travels as
 * punycode), so a name can neither forge a log line nor smuggle a NUL past a
 * rule. Dotted IPv4 literals pass (digits and dots); callers that must not
 * take other numeric forms ("127.1") check the last label themselves.
 */
bool netaddr_hostname_valid(const char *s, size_t n);

/* Port 1..65535 from decimal text. 0 or WM_ERR_PARSE. */
int netaddr_parse_port(const char *s, uint16_t *out);

/* "1.2.3.4:80" or "[::1]:80" into buf (NETADDR_STR_MAX is always enough). */
const char *netaddr_format(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Non-blocking, close-on-exec TCP listening socket on host:port (host a
 * literal address or a name resolved at start-up). Returns the fd, or -1 with
 * a one-line reason in err ("127.0.0.1:8080: Address already in use").
 */
int netaddr_listen(const struct netaddr_hostport *hp, char *err, size_t errlen);

/* Tuning for a tunnel socket (see DESIGN.md, "Tuning the tunnels"). */
struct netaddr_tuning {
	const char *congestion;	  /* e.g. "bbr"; NULL keeps the default */
	uint32_t notsent_lowat;	  /* TCP_NOTSENT_LOWAT bytes, 0 = leave */
	uint32_t user_timeout_ms; /* TCP_USER_TIMEOUT, 0 = leave */
	uint32_t sndbuf;	  /* SO_SNDBUF(FORCE), 0 = leave (send autotuning) */
	/* SO_RCVBUF(FORCE), 0 = leave (receive autotuning). Only before
	 * connect() or listen() (netaddr_tune_buffers): set later, it would
	 * stop autotuning and keep the window clamp of the default buffer. */
	uint32_t rcvbuf;
};

/*
 * Sets t's send and receive buffers on a TCP socket that has not connected
 * or listened yet (an accepted socket inherits its listener's). With
 * CAP_NET_ADMIN the sizes are forced past net.core.[rw]mem_max; without it
 * a size is set only when that limit allows all of it, since a capped fixed
 * buffer ends autotuning and is smaller than what autotuning would reach.
 * Either way nothing fails: a size that cannot be had leaves autotuning on
 * (logged once per process). t NULL is a no-op.
 */
void netaddr_tune_buffers(int fd, const struct netaddr_tuning *t);

/*
 * A non-blocking, close-on-exec TCP socket of family (AF_INET, AF_INET6)
 * with t's buffers (netaddr_tune_buffers), ready for connect(). Returns the
 * fd, or -1 with errno set.
 */
int netaddr_socket(int family, const struct netaddr_tuning *t);

/*
 * netaddr_listen, with t's buffers set before listen() so that every
 * accepted socket has them from its SYN on. t NULL: plain netaddr_listen.
 */
int netaddr_listen_tuned(const struct netaddr_hostport *hp, const struct netaddr_tuning *t,
			 char *err, size_t errlen);

/*
 * Applies tuning plus TCP_NODELAY to fd, a connected socket; the buffers
 * here are only the send buffer (see rcvbuf above). A congestion control
 * the kernel refuses is skipped quietly (the kernel default stays). Returns
 * 0 or WM_ERR_IO when a required option (TCP_NODELAY) fails.
 */
int netaddr_tune(int fd, const struct netaddr_tuning *t);

/* The congestion control fd uses now, into buf; "" when unknown. */
const char *netaddr_congestion(int fd, char *buf, size_t len);

/* Whether s is a literal IPv4 or IPv6 address; fills sa/salen with port. */
bool netaddr_literal(const char *s, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen);

/*
 * The IPv4 and IPv6 addresses of this machine's interfaces (getifaddrs), at
 * most max of them, into out. Returns how many, or WM_ERR_IO.
 */
int netaddr_interface_addresses(struct sockaddr_storage *out, size_t max);

#endif
