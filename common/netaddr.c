/*
 * Address parsing (HOST:PORT, ssh -L style forward specs), printing socket
 * addresses, listening sockets and tunnel socket tuning. No event loop and no
 * name lookups except getaddrinfo() in netaddr_listen(), which runs at start-up.
 */
#include "wanmux/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <stdarg.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "wanmux/err.h"
#include "wanmux/log.h"

#define NETADDR_LISTEN_BACKLOG 1024

int netaddr_parse_port(const char *s, uint16_t *out)
{
	uint32_t v = 0;
	size_t i;

	if (s == NULL || s[0] == '\0')
		return WM_ERR_PARSE;
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9')
			return WM_ERR_PARSE;
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 65535)
			return WM_ERR_PARSE;
	}
	if (v == 0)
		return WM_ERR_PARSE;
	*out = (uint16_t)v;
	return 0;
}

#define NETADDR_NAME_MAX 253
#define NETADDR_LABEL_MAX 63

bool netaddr_hostname_valid(const char *s, size_t n)
{
	size_t label = 0;

	if (n > 0 && s[n - 1] == '.')
		n--; /* fully qualified */
	if (n == 0 || n > NETADDR_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
		if (++label > NETADDR_LABEL_MAX)
			return false;
	}
	return label > 0;
}

/* Characters of an IPv6 zone ("%eth0"). */
static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_';
}

/* Whether s (NUL-terminated, no brackets) is an IPv6 literal, with an optional %zone. */
static bool is_v6_literal(const char *s)
{
	char tmp[INET6_ADDRSTRLEN + 1];
	struct in6_addr a;
	const char *pct = strchr(s, '%');
	size_t n = pct != NULL ? (size_t)(pct - s) : strlen(s);

	if (n == 0 || n >= sizeof(tmp))
		return false;
	if (pct != NULL) {
		if (pct[1] == '\0')
			return false;
		for (const char *p = pct + 1; *p != '\0'; p++)
			if (!is_name_char(*p))
				return false;
	}
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, &a) == 1;
}

/*
 * Parses one host field of length n (not NUL-terminated): "[v6]" or a name /
 * IPv4 literal. what names the field in error messages ("host", "local address").
 */
static int parse_host_field(const char *s, size_t n, const char *spec, const char *what, char *host,
			    char *err, size_t errlen)
{
	if (n == 0) {
		wm_set_err(err, errlen, "'%s': empty %s", spec, what);
		return WM_ERR_PARSE;
	}
	if (s[0] == '[') {
		const char *close_br = memchr(s, ']', n);

		if (close_br == NULL) {
			wm_set_err(err, errlen, "'%s': missing ']' after IPv6 %s", spec, what);
			return WM_ERR_PARSE;
		}
		if (close_br != s + n - 1) {
			wm_set_err(err, errlen, "'%s': invalid characters after ']' in %s", spec,
				   what);
			return WM_ERR_PARSE;
		}
		s++;
		n -= 2;
		if (n == 0) {
			wm_set_err(err, errlen, "'%s': empty %s in brackets", spec, what);
			return WM_ERR_PARSE;
		}
		if (n >= NETADDR_HOST_MAX) {
			wm_set_err(err, errlen, "'%s': %s too long", spec, what);
			return WM_ERR_PARSE;
		}
		memcpy(host, s, n);
		host[n] = '\0';
		if (!is_v6_literal(host)) {
			wm_set_err(err, errlen, "'%s': '%s' in brackets is not an IPv6 address",
				   spec, host);
			return WM_ERR_PARSE;
		}
		return 0;
	}
	if (n >= NETADDR_HOST_MAX) {
		wm_set_err(err, errlen, "'%s': %s too long", spec, what);
		return WM_ERR_PARSE;
	}
	if (!netaddr_hostname_valid(s, n)) {
		wm_set_err(err, errlen, "'%s': invalid character or label in %s", spec, what);
		return WM_ERR_PARSE;
	}
	memcpy(host, s, n);
	host[n] = '\0';
	return 0;
}

static int parse_port_field(const char *s, size_t n, const char *spec, uint16_t *out, char *err,
			    size_t errlen)
{
	char tmp[8];

	if (n == 0) {
		wm_set_err(err, errlen, "'%s': missing port", spec);
		return WM_ERR_PARSE;
	}
	if (n >= sizeof(tmp)) {
		wm_set_err(err, errlen, "'%s': port out of range (1-65535)", spec);
		return WM_ERR_PARSE;
	}
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (tmp[i] < '0' || tmp[i] > '9') {
			wm_set_err(err, errlen, "'%s': port '%s' is not a number", spec, tmp);
			return WM_ERR_PARSE;
		}
	}
	if (netaddr_parse_port(tmp, out) < 0) {
		wm_set_err(err, errlen, "'%s': port %s out of range (1-65535)", spec, tmp);
		return WM_ERR_PARSE;
	}
	return 0;
}

/*
 * Splits s at the colons that are outside brackets. Returns the number of
 * fields (at most max; more fields make it return max + 1), or -1 when the
 * brackets do not pair up.
 */
static int split_fields(const char *s, const char **start, size_t *len, int max)
{
	int nf = 0;
	int depth = 0;
	const char *field = s;

	for (const char *p = s;; p++) {
		if (*p == '[') {
			if (depth++ > 0)
				return -1;
		} else if (*p == ']') {
			if (--depth < 0)
				return -1;
		} else if ((*p == ':' && depth == 0) || *p == '\0') {
			if (nf >= max)
				return max + 1;
			start[nf] = field;
			len[nf] = (size_t)(p - field);
			nf++;
			field = p + 1;
			if (*p == '\0')
				break;
		}
	}
	return depth == 0 ? nf : -1;
}

int netaddr_parse_hostport(const char *s, struct netaddr_hostport *out, char *err, size_t errlen)
{
	const char *start[2];
	size_t len[2];
	int nf;
	int rc;

	if (s == NULL || s[0] == '\0') {
		wm_set_err(err, errlen, "empty address (expected HOST:PORT)");
		return WM_ERR_PARSE;
	}
	nf = split_fields(s, start, len, 2);
	if (nf < 0) {
		wm_set_err(err, errlen, "'%s': unbalanced brackets", s);
		return WM_ERR_PARSE;
	}
	if (nf == 1) {
		wm_set_err(err, errlen, "'%s': missing port (expected HOST:PORT)", s);
		return WM_ERR_PARSE;
	}
	if (nf > 2) {
		/* "::1:80" could be [::1]:80 or [::1:80] without a port. */
		const char *last = strrchr(s, ':');

		wm_set_err(
		    err, errlen,
		    "'%s': IPv6 addresses need brackets, e.g. [%.*s]:%s (expected HOST:PORT)", s,
		    (int)(last - s), s, last + 1);
		return WM_ERR_PARSE;
	}
	rc = parse_host_field(start[0], len[0], s, "host", out->host, err, errlen);
	if (rc < 0)
		return rc;
	return parse_port_field(start[1], len[1], s, &out->port, err, errlen);
}

int netaddr_parse_forward(const char *s, struct netaddr_forward *out, char *err, size_t errlen)
{
	const char *start[4];
	size_t len[4];
	int nf;
	int rc;
	int i = 0;

	if (s == NULL || s[0] == '\0') {
		wm_set_err(err, errlen, "empty forward (expected [LADDR:]LPORT:HOST:PORT)");
		return WM_ERR_PARSE;
	}
	nf = split_fields(s, start, len, 4);
	if (nf < 0) {
		wm_set_err(err, errlen, "'%s': unbalanced brackets", s);
		return WM_ERR_PARSE;
	}
	if (nf < 3 || nf > 4) {
		wm_set_err(err, errlen, "'%s': expected [LADDR:]LPORT:HOST:PORT%s", s,
			   nf > 4 ? " (IPv6 addresses need brackets)" : "");
		return WM_ERR_PARSE;
	}
	if (nf == 4) {
		rc = parse_host_field(start[0], len[0], s, "local address", out->local.host, err,
				      errlen);
		if (rc < 0)
			return rc;
		i = 1;
	} else {
		snprintf(out->local.host, sizeof(out->local.host), "127.0.0.1");
	}
	rc = parse_port_field(start[i], len[i], s, &out->local.port, err, errlen);
	if (rc < 0)
		return rc;
	rc = parse_host_field(start[i + 1], len[i + 1], s, "target host", out->target.host, err,
			      errlen);
	if (rc < 0)
		return rc;
	return parse_port_field(start[i + 2], len[i + 2], s, &out->target.port, err, errlen);
}

const char *netaddr_format(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (buf == NULL || len == 0)
		return "";
	if (sa == NULL) {
		snprintf(buf, len, "(none)");
		return buf;
	}
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip)) == NULL)
			snprintf(ip, sizeof(ip), "?");
		snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
		break;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		char scope[IF_NAMESIZE + 2] = "";

		if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip)) == NULL)
			snprintf(ip, sizeof(ip), "?");
		if (sin6->sin6_scope_id != 0) {
			char ifname[IF_NAMESIZE];

			if (if_indextoname(sin6->sin6_scope_id, ifname) != NULL)
				snprintf(scope, sizeof(scope), "%%%s", ifname);
			else
				snprintf(scope, sizeof(scope), "%%%u",
					 (unsigned)sin6->sin6_scope_id);
		}
		snprintf(buf, len, "[%s%s]:%u", ip, scope, (unsigned)ntohs(sin6->sin6_port));
		break;
	}
	case AF_UNIX: {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)sa;

		snprintf(buf, len, "unix:%.*s", (int)sizeof(sun->sun_path), sun->sun_path);
		break;
	}
	default:
		snprintf(buf, len, "(address family %d)", (int)sa->sa_family);
		break;
	}
	return buf;
}

/* "host:port" or "[v6]:port" for error messages about hp. */
static const char *hostport_text(const struct netaddr_hostport *hp, char *buf, size_t len)
{
	if (strchr(hp->host, ':') != NULL)
		snprintf(buf, len, "[%s]:%u", hp->host, (unsigned)hp->port);
	else
		snprintf(buf, len, "%s:%u", hp->host, (unsigned)hp->port);
	return buf;
}

int netaddr_listen(const struct netaddr_hostport *hp, char *err, size_t errlen)
{
	return netaddr_listen_tuned(hp, NULL, err, errlen);
}

int netaddr_listen_tuned(const struct netaddr_hostport *hp, const struct netaddr_tuning *t,
			 char *err, size_t errlen)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	struct addrinfo *ai;
	char port[8];
	char text[NETADDR_STR_MAX];
	int saved = 0;
	int fd = -1;
	int gai;

	hostport_text(hp, text, sizeof(text));
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)hp->port);
	gai = getaddrinfo(hp->host[0] != '\0' ? hp->host : NULL, port, &hints, &res);
	if (gai != 0) {
		wm_set_err(err, errlen, "%s: %s", text,
			   gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
		return -1;
	}
	/* Take the first address that works; report the first failure otherwise. */
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		int one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			goto next;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
			goto next;
		/* One family per socket: "::" must not also take the IPv4 port. */
		if (ai->ai_family == AF_INET6 &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
			goto next;
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
			goto next;
		/* Before listen(): the SYN-ACK's window scale and every accepted
		 * socket's window clamp come from the listener's buffer. */
		netaddr_tune_buffers(fd, t);
		if (listen(fd, NETADDR_LISTEN_BACKLOG) < 0)
			goto next;
		freeaddrinfo(res);
		return fd;
	next:
		if (saved == 0)
			saved = errno;
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	wm_set_err(err, errlen, "%s: %s", text, strerror(saved != 0 ? saved : EADDRNOTAVAIL));
	return -1;
}

/*
 * net.core.rmem_max or wmem_max from /proc; 0 when it cannot be read (then
 * no plain SO_RCVBUF/SO_SNDBUF is set: better autotuning than a guess).
 */
static uint64_t core_limit(const char *path)
{
	char buf[32];
	char *end;
	unsigned long long v;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno != 0 || end == buf)
		return 0;
	return v;
}

/* Whether a buffer size could not be had yet: said once at info, then debug. */
static bool buffer_refused;

/*
 * One buffer: forced (CAP_NET_ADMIN), else the plain option when the
 * system's limit (sysctl, a net.core name) allows the whole size. A plain
 * option capped below the size would be worse than none: it locks the
 * buffer, so autotuning can no longer grow it to tcp_[rw]mem[2].
 */
static void set_buffer(int fd, int force_opt, int opt, const char *what, const char *sysctl,
		       const char *path, uint32_t bytes)
{
	int v = bytes > INT32_MAX / 2 ? INT32_MAX / 2 : (int)bytes;
	uint64_t limit;

	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) == 0)
		return;
	limit = core_limit(path);
	if (limit >= (uint64_t)v && setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)) == 0)
		return;
	if (!buffer_refused)
		log_info("%s %d needs CAP_NET_ADMIN or %s >= %d (it is %llu): keeping the kernel's "
			 "autotuning for it",
			 what, v, sysctl, v, (unsigned long long)limit);
	else
		log_debug("fd %d: %s %d refused, autotuning kept", fd, what, v);
	buffer_refused = true;
}

void netaddr_tune_buffers(int fd, const struct netaddr_tuning *t)
{
	if (t == NULL)
		return;
	if (t->sndbuf != 0)
		set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUF", "net.core.wmem_max",
			   "/proc/sys/net/core/wmem_max", t->sndbuf);
	if (t->rcvbuf != 0)
		set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, "SO_RCVBUF", "net.core.rmem_max",
			   "/proc/sys/net/core/rmem_max", t->rcvbuf);
}

int netaddr_socket(int family, const struct netaddr_tuning *t)
{
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);

	if (fd >= 0)
		netaddr_tune_buffers(fd, t);
	return fd;
}

int netaddr_tune(int fd, const struct netaddr_tuning *t)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
		log_peer_error("fd %d: TCP_NODELAY: %s", fd, strerror(errno));
		return WM_ERR_IO;
	}
	if (t == NULL)
		return 0;
	/*
	 * The kernel refuses congestion controls that are not loaded or not in
	 * net.ipv4.tcp_allowed_congestion_control for unprivileged users; its
	 * default then stays, which still works, only slower on lossy paths.
	 */
	if (t->congestion != NULL && t->congestion[0] != '\0' &&
	    setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, t->congestion,
		       (socklen_t)strlen(t->congestion)) < 0)
		log_debug("fd %d: TCP_CONGESTION %s: %s (keeping the default)", fd, t->congestion,
			  strerror(errno));
	/* The rest only tunes; a failure is worth a warning, not the tunnel. */
	if (t->notsent_lowat != 0) {
		int v = t->notsent_lowat > INT32_MAX ? INT32_MAX : (int)t->notsent_lowat;

		if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, sizeof(v)) < 0)
			log_peer_warn("fd %d: TCP_NOTSENT_LOWAT %d: %s", fd, v, strerror(errno));
	}
	if (t->user_timeout_ms != 0) {
		unsigned int v = t->user_timeout_ms;

		if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v)) < 0)
			log_peer_warn("fd %d: TCP_USER_TIMEOUT %u: %s", fd, v, strerror(errno));
	}
	/* The send buffer may still change once connected (the kernel reads
	 * sk_sndbuf as it goes), so an accepted socket whose listener was not
	 * tuned gets it here; the receive buffer may not (see rcvbuf). */
	if (t->sndbuf != 0)
		set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, "SO_SNDBUF", "net.core.wmem_max",
			   "/proc/sys/net/core/wmem_max", t->sndbuf);
	return 0;
}

const char *netaddr_congestion(int fd, char *buf, size_t len)
{
	char name[64];
	socklen_t n = sizeof(name) - 1;

	if (buf == NULL || len == 0)
		return "";
	buf[0] = '\0';
	memset(name, 0, sizeof(name));
	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &n) < 0)
		return buf;
	name[n < sizeof(name) ? n : sizeof(name) - 1] = '\0';
	snprintf(buf, len, "%s", name);
	return buf;
}

bool netaddr_literal(const char *s, uint16_t port, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (s == NULL)
		return false;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)sa;

		if (sa != NULL) {
			memset(sa, 0, sizeof(*sa));
			sin->sin_family = AF_INET;
			sin->sin_port = htons(port);
			sin->sin_addr = a4;
		}
		if (salen != NULL)
			*salen = sizeof(struct sockaddr_in);
		return true;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)sa;

		if (sa != NULL) {
			memset(sa, 0, sizeof(*sa));
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons(port);
			sin6->sin6_addr = a6;
		}
		if (salen != NULL)
			*salen = sizeof(struct sockaddr_in6);
		return true;
	}
	return false;
}

int netaddr_interface_addresses(struct sockaddr_storage *out, size_t max)
{
	struct ifaddrs *list;
	size_t n = 0;

	if (getifaddrs(&list) != 0)
		return WM_ERR_IO;
	for (struct ifaddrs *ifa = list; ifa != NULL && n < max; ifa = ifa->ifa_next) {
		const struct sockaddr *sa = ifa->ifa_addr;

		if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
			continue;
		memset(&out[n], 0, sizeof(out[n]));
		memcpy(&out[n], sa,
		       sa->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						: sizeof(struct sockaddr_in6));
		n++;
	}
	freeifaddrs(list);
	return (int)n;
}
