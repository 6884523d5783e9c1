/*
 * linkem: userspace link emulator for the lab. Opens a TUN device inside each
 * of two network namespaces and moves IP packets between them through one
 * linkem_model per direction (delay, jitter, loss, rate, queue limit, ...).
 * It does not address the devices or add routes: lab.sh does that.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "linkem_model.h"

#define LINKEM_EXIT_USAGE 2
#define LINKEM_BUF_SIZE 65536
#define LINKEM_READ_BURST 64 /* packets read per wakeup per device, for fairness */
#define LINKEM_CONTROL_LINE 256

/* A packet read from one TUN device; the model may hold it twice (duplicate). */
struct packet {
	int refs;
	size_t len;
	unsigned char data[];
};

struct direction {
	const char *name; /* "a2b" or "b2a" */
	int in_fd;
	int out_fd;
	struct linkem_model *model;
	uint64_t write_errors;
	uint64_t read_errors;
};

struct linkem {
	struct direction dirs[2];
	int tun_fd[2];
	int epoll_fd;
	int timer_fd;
	int signal_fd;
	int control_fd;
	char control_line[LINKEM_CONTROL_LINE];
	size_t control_len;
	uint64_t started_ns;
};

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("linkem: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(LINKEM_EXIT_USAGE);
}

static void logmsg(const char *fmt, ...)
{
	va_list ap;

	fputs("linkem: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * LINKEM_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *f)
{
	fputs("usage: linkem [--ns-a NS] --dev-a DEV [--ns-b NS] --dev-b DEV\n"
	      "              [--a2b SPEC] [--b2a SPEC] [--seed N] [--control FIFO]\n"
	      "              [--blackout AT:DURATION]... [--pidfile FILE] [--rt] [--check]\n"
	      "SPEC: key=value,... with delay=300ms jitter=10ms dist=uniform|normal loss=1%\n"
	      "      gemodel=P%/R%/1-H%/1-K% rate=20mbit limit=PACKETS limitbytes=BYTES\n"
	      "      reorder=PCT% duplicate=PCT%   (\"none\": no impairment)\n"
	      "Signals: SIGUSR1 toggles the link down/up, SIGUSR2 prints counters,\n"
	      "SIGTERM/SIGINT print counters and exit. FIFO lines: down, up, toggle,\n"
	      "blackout SECONDS, stats. --rt: SCHED_FIFO, for precise timing on a busy host.\n"
	      "--check: validate the options, print the parsed specs and exit.\n",
	      f);
}

/* Seconds as "5", "5s", "500ms" or "250us". */
static int parse_seconds(const char *text, uint64_t *out)
{
	struct linkem_spec tmp;
	char buf[64];
	size_t len = strlen(text);

	if (len == 0 || len + 2 >= sizeof(buf) - 6)
		return -1;
	linkem_spec_init(&tmp);
	if (text[len - 1] >= '0' && text[len - 1] <= '9')
		snprintf(buf, sizeof(buf), "delay=%ss", text);
	else
		snprintf(buf, sizeof(buf), "delay=%s", text);
	if (linkem_spec_parse(&tmp, buf, NULL, 0) < 0)
		return -1;
	*out = tmp.delay_ns;
	return 0;
}

static int valid_name(const char *name)
{
	size_t len = strlen(name);

	return len > 0 && len < IFNAMSIZ && strchr(name, '/') == NULL && strcmp(name, ".") != 0 &&
	       strcmp(name, "..") != 0;
}

/* Brings dev up in the current namespace: a device linkem created itself is down. */
static void set_up(const char *dev)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			logmsg("cannot bring %s up: %s", dev, strerror(errno));
	}
	close(s);
}

/*
 * Opens (attaching to a persistent device, or creating one) TUN device dev in
 * namespace ns (NULL: our own). The fd stays bound to that namespace's device
 * after we switch back, which is what lets one process serve both sides.
 */
static int open_tun(const char *ns, const char *dev)
{
	char path[PATH_MAX];
	struct ifreq ifr;
	int self = -1, target = -1, fd = -1, saved;

	if (ns != NULL) {
		snprintf(path, sizeof(path), "/var/run/netns/%s", ns);
		self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
		target = open(path, O_RDONLY | O_CLOEXEC);
		if (self < 0 || target < 0) {
			logmsg("namespace %s: %s: %s", ns, self < 0 ? "/proc/self/ns/net" : path,
			       strerror(errno));
			goto err0;
		}
		if (setns(target, CLONE_NEWNET) < 0) {
			logmsg("setns %s: %s", ns, strerror(errno));
			goto err0;
		}
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		logmsg("/dev/net/tun: %s", strerror(errno));
		goto err1;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", dev);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		logmsg("TUNSETIFF %s%s%s: %s", ns ? ns : "", ns ? "/" : "", dev, strerror(errno));
		close(fd);
		fd = -1;
		goto err1;
	}
	set_up(dev);
err1:
	if (ns != NULL && setns(self, CLONE_NEWNET) < 0) {
		/* Stuck in the wrong namespace: nothing sane to continue with. */
		logmsg("setns back: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
err0:
	saved = errno;
	if (self >= 0)
		close(self);
	if (target >= 0)
		close(target);
	errno = saved;
	return fd;
}

static void print_stats(const struct linkem *lk)
{
	uint64_t up = (now_ns() - lk->started_ns) / LINKEM_NS_PER_SEC;
	int i;

	for (i = 0; i < 2; i++) {
		const struct direction *d = &lk->dirs[i];
		struct linkem_stats s;

		linkem_model_stats(d->model, &s);
		fprintf(stderr,
			"linkem: %s up=%" PRIu64 "s in=%" PRIu64 " out=%" PRIu64
			" bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " duplicated=%" PRIu64
			" reordered=%" PRIu64 " drop_loss=%" PRIu64 " drop_limit=%" PRIu64
			" drop_blackout=%" PRIu64 " drop_write=%" PRIu64 " read_errors=%" PRIu64
			" queued=%zu\n",
			d->name, up, s.in, s.out, s.bytes_in, s.bytes_out, s.duplicated,
			s.reordered, s.dropped[LINKEM_DROP_LOSS], s.dropped[LINKEM_DROP_LIMIT],
			s.dropped[LINKEM_DROP_BLACKOUT], d->write_errors, d->read_errors,
			linkem_model_queued(d->model));
	}
}

static void link_down(struct linkem *lk, uint64_t duration_ns, const char *why)
{
	uint64_t now = now_ns();
	uint64_t end = duration_ns == LINKEM_NEVER ? LINKEM_NEVER : now + duration_ns;
	int i;

	for (i = 0; i < 2; i++) {
		if (linkem_model_blackout(lk->dirs[i].model, now, end) < 0) {
			logmsg("%s: too many pending blackouts, ignored", why);
			return;
		}
	}
	if (duration_ns == LINKEM_NEVER)
		logmsg("link down (%s)", why);
	else
		logmsg("link down for %.3fs (%s)", (double)duration_ns / 1e9, why);
}

static void link_up(struct linkem *lk, const char *why)
{
	uint64_t now = now_ns();

	linkem_model_up(lk->dirs[0].model, now);
	linkem_model_up(lk->dirs[1].model, now);
	logmsg("link up (%s)", why);
}

static void link_toggle(struct linkem *lk, const char *why)
{
	if (linkem_model_is_down(lk->dirs[0].model, now_ns()))
		link_up(lk, why);
	else
		link_down(lk, LINKEM_NEVER, why);
}

static void control_command(struct linkem *lk, char *line)
{
	uint64_t secs;
	char *arg;
	size_t len = strlen(line);

	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	if (len == 0)
		return;
	if (strcmp(line, "down") == 0)
		link_down(lk, LINKEM_NEVER, "control");
	else if (strcmp(line, "up") == 0)
		link_up(lk, "control");
	else if (strcmp(line, "toggle") == 0)
		link_toggle(lk, "control");
	else if (strcmp(line, "stats") == 0)
		print_stats(lk);
	else if (strncmp(line, "blackout ", 9) == 0) {
		arg = line + 9;
		while (*arg == ' ')
			arg++;
		if (parse_seconds(arg, &secs) < 0 || secs == 0)
			logmsg("control: bad duration in '%s'", line);
		else
			link_down(lk, secs, "control blackout");
	} else
		logmsg("control: unknown command '%s' (down, up, toggle, blackout N, stats)", line);
}

static void on_control(struct linkem *lk)
{
	char buf[512];
	ssize_t n;
	ssize_t i;

	for (;;) {
		n = read(lk->control_fd, buf, sizeof(buf));
		if (n <= 0)
			return;
		for (i = 0; i < n; i++) {
			if (buf[i] == '\n') {
				lk->control_line[lk->control_len] = '\0';
				control_command(lk, lk->control_line);
				lk->control_len = 0;
			} else if (lk->control_len + 1 < sizeof(lk->control_line)) {
				lk->control_line[lk->control_len++] = buf[i];
			}
		}
	}
}

static void release_packet(struct packet *p)
{
	if (--p->refs == 0)
		free(p);
}

static void on_readable(struct direction *d)
{
	static unsigned char buf[LINKEM_BUF_SIZE];
	struct packet *p;
	ssize_t n;
	int i, held;

	for (i = 0; i < LINKEM_READ_BURST; i++) {
		n = read(d->in_fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno != EAGAIN && errno != EINTR)
				d->read_errors++;
			return;
		}
		if (n == 0)
			return;
		p = malloc(sizeof(*p) + (size_t)n);
		if (p == NULL) {
			d->read_errors++;
			continue;
		}
		p->len = (size_t)n;
		memcpy(p->data, buf, (size_t)n);
		held = linkem_model_push(d->model, now_ns(), p, p->len);
		if (held <= 0) {
			free(p);
			continue;
		}
		p->refs = held;
	}
}

/* Writes every due copy; returns the earliest pending release over both directions. */
static uint64_t release_due(struct linkem *lk)
{
	uint64_t now = now_ns(), next = LINKEM_NEVER, t;
	struct packet *p;
	size_t len;
	int i;

	for (i = 0; i < 2; i++) {
		struct direction *d = &lk->dirs[i];

		while ((p = linkem_model_pop(d->model, now, &len)) != NULL) {
			if (write(d->out_fd, p->data, p->len) != (ssize_t)p->len)
				d->write_errors++;
			release_packet(p);
		}
		t = linkem_model_next_release(d->model);
		if (t < next)
			next = t;
	}
	return next;
}

static void arm_timer(struct linkem *lk, uint64_t deadline)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (deadline != LINKEM_NEVER) {
		its.it_value.tv_sec = (time_t)(deadline / LINKEM_NS_PER_SEC);
		its.it_value.tv_nsec = (long)(deadline % LINKEM_NS_PER_SEC);
		if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0)
			its.it_value.tv_nsec = 1; /* zero would disarm */
	}
	timerfd_settime(lk->timer_fd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int add_fd(struct linkem *lk, int fd, uint32_t tag)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u32 = tag;
	return epoll_ctl(lk->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

enum { TAG_TUN_A, TAG_TUN_B, TAG_TIMER, TAG_SIGNAL, TAG_CONTROL };

/* Returns when SIGTERM or SIGINT arrives. */
static void run(struct linkem *lk)
{
	struct epoll_event evs[8];
	struct signalfd_siginfo si;
	uint64_t ticks, next;
	int n, i;

	for (;;) {
		next = release_due(lk);
		arm_timer(lk, next);
		n = epoll_wait(lk->epoll_fd, evs, 8, -1);
		if (n < 0 && errno != EINTR) {
			logmsg("epoll_wait: %s", strerror(errno));
			return;
		}
		for (i = 0; i < n; i++) {
			switch (evs[i].data.u32) {
			case TAG_TUN_A:
				on_readable(&lk->dirs[0]);
				break;
			case TAG_TUN_B:
				on_readable(&lk->dirs[1]);
				break;
			case TAG_TIMER:
				if (read(lk->timer_fd, &ticks, sizeof(ticks)) < 0 &&
				    errno != EAGAIN)
					logmsg("timerfd read: %s", strerror(errno));
				break;
			case TAG_CONTROL:
				on_control(lk);
				break;
			case TAG_SIGNAL:
				while (read(lk->signal_fd, &si, sizeof(si)) ==
				       (ssize_t)sizeof(si)) {
					if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
						return;
					if (si.ssi_signo == SIGUSR1)
						link_toggle(lk, "SIGUSR1");
					else if (si.ssi_signo == SIGUSR2)
						print_stats(lk);
				}
				break;
			}
		}
	}
}

struct options {
	const char *ns[2];
	const char *dev[2];
	struct linkem_spec spec[2];
	uint64_t seed;
	int have_seed;
	const char *control;
	const char *pidfile;
	int realtime;
	int check;
	uint64_t blackout_at[LINKEM_MAX_BLACKOUTS];
	uint64_t blackout_len[LINKEM_MAX_BLACKOUTS];
	int n_blackouts;
};

static void parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {{"ns-a", required_argument, NULL, 'A'},
						 {"dev-a", required_argument, NULL, 'a'},
						 {"ns-b", required_argument, NULL, 'B'},
						 {"dev-b", required_argument, NULL, 'b'},
						 {"a2b", required_argument, NULL, 'x'},
						 {"b2a", required_argument, NULL, 'y'},
						 {"seed", required_argument, NULL, 's'},
						 {"control", required_argument, NULL, 'c'},
						 {"blackout", required_argument, NULL, 'o'},
						 {"pidfile", required_argument, NULL, 'p'},
						 {"rt", no_argument, NULL, 'r'},
						 {"check", no_argument, NULL, 'k'},
						 {"help", no_argument, NULL, 'h'},
						 {NULL, 0, NULL, 0}};
	char err[256], *end, *colon;
	int c;

	memset(o, 0, sizeof(*o));
	linkem_spec_init(&o->spec[0]);
	linkem_spec_init(&o->spec[1]);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'A':
		case 'B':
			if (!valid_name(optarg))
				die_usage("bad namespace name '%s'", optarg);
			o->ns[c == 'B'] = optarg;
			break;
		case 'a':
		case 'b':
			if (!valid_name(optarg))
				die_usage("bad device name '%s' (1-15 characters, no '/')", optarg);
			o->dev[c == 'b'] = optarg;
			break;
		case 'x':
		case 'y':
			if (linkem_spec_parse(&o->spec[c == 'y'], optarg, err, sizeof(err)) < 0)
				die_usage("--%s: %s", c == 'x' ? "a2b" : "b2a", err);
			break;
		case 's':
			errno = 0;
			o->seed = strtoull(optarg, &end, 0);
			if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-')
				die_usage("--seed %s: expected an unsigned integer", optarg);
			o->have_seed = 1;
			break;
		case 'c':
			o->control = optarg;
			break;
		case 'p':
			o->pidfile = optarg;
			break;
		case 'r':
			o->realtime = 1;
			break;
		case 'k':
			o->check = 1;
			break;
		case 'o':
			if (o->n_blackouts == LINKEM_MAX_BLACKOUTS)
				die_usage("at most %d --blackout options", LINKEM_MAX_BLACKOUTS);
			colon = strchr(optarg, ':');
			if (colon == NULL)
				die_usage(
				    "--blackout %s: expected AT:DURATION, e.g. 30:5 or 30s:500ms",
				    optarg);
			*colon = '\0';
			if (parse_seconds(optarg, &o->blackout_at[o->n_blackouts]) < 0 ||
			    parse_seconds(colon + 1, &o->blackout_len[o->n_blackouts]) < 0 ||
			    o->blackout_len[o->n_blackouts] == 0)
				die_usage(
				    "--blackout %s:%s: AT and DURATION are times like 30, 30s, "
				    "500ms (DURATION > 0)",
				    optarg, colon + 1);
			o->n_blackouts++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(LINKEM_EXIT_USAGE);
		}
	}
	if (optind != argc)
		die_usage("unexpected argument '%s'", argv[optind]);
	if (o->dev[0] == NULL || o->dev[1] == NULL)
		die_usage("--dev-a and --dev-b are required (see --help)");
	if (o->ns[0] == NULL && o->ns[1] == NULL && strcmp(o->dev[0], o->dev[1]) == 0)
		die_usage("--dev-a and --dev-b name the same device in the same namespace");
}

/* Opens the control FIFO read-write so it never reports EOF when a writer leaves. */
static int open_control(const char *path, int *created)
{
	struct stat st;
	int fd;

	*created = 0;
	if (mkfifo(path, 0600) == 0)
		*created = 1;
	else if (errno != EEXIST) {
		logmsg("mkfifo %s: %s", path, strerror(errno));
		return -1;
	}
	fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		logmsg("%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
		logmsg("%s: not a FIFO", path);
		close(fd);
		return -1;
	}
	return fd;
}

static int write_pidfile(const char *path)
{
	char buf[32];
	int fd, len;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		logmsg("%s: %s", path, strerror(errno));
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (write(fd, buf, (size_t)len) != len) {
		logmsg("%s: short write", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	struct options o;
	struct linkem lk;
	char desc[512];
	sigset_t mask;
	struct packet *p;
	size_t len;
	int i, created = 0, status = 1;

	parse_options(argc, argv, &o);
	if (o.check) {
		for (i = 0; i < 2; i++) {
			linkem_spec_format(&o.spec[i], desc, sizeof(desc));
			printf("%s: %s\n", i == 0 ? "a2b" : "b2a", desc);
		}
		return 0;
	}
	if (!o.have_seed)
		o.seed = now_ns() ^ ((uint64_t)getpid() << 32);

	memset(&lk, 0, sizeof(lk));
	lk.tun_fd[0] = lk.tun_fd[1] = lk.epoll_fd = lk.timer_fd = lk.signal_fd = lk.control_fd = -1;
	/* Default timer slack (50 us) would be most of our precision budget. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	if (o.realtime) {
		/* A low FIFO priority is enough to beat builds and tests for the CPU;
		 * the loop always blocks in epoll_wait, so it cannot starve the host. */
		struct sched_param sp = {.sched_priority = 10};

		if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
			logmsg("--rt: SCHED_FIFO: %s (continuing without)", strerror(errno));
	}

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (i = 0; i < 2; i++) {
		lk.tun_fd[i] = open_tun(o.ns[i], o.dev[i]);
		if (lk.tun_fd[i] < 0)
			goto err0;
	}
	for (i = 0; i < 2; i++) {
		struct direction *d = &lk.dirs[i];

		d->name = i == 0 ? "a2b" : "b2a";
		d->in_fd = lk.tun_fd[i];
		d->out_fd = lk.tun_fd[1 - i];
		/* Distinct streams per direction, both reproducible from --seed. */
		d->model = linkem_model_new(&o.spec[i], o.seed * 2 + (uint64_t)i);
		if (d->model == NULL) {
			logmsg("out of memory");
			goto err1;
		}
		linkem_spec_format(&o.spec[i], desc, sizeof(desc));
		logmsg("%s %s/%s -> %s/%s: %s", d->name, o.ns[i] ? o.ns[i] : "-", o.dev[i],
		       o.ns[1 - i] ? o.ns[1 - i] : "-", o.dev[1 - i], desc);
	}
	logmsg("seed=%" PRIu64, o.seed);

	lk.epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	lk.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	lk.signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (lk.epoll_fd < 0 || lk.timer_fd < 0 || lk.signal_fd < 0) {
		logmsg("epoll/timerfd/signalfd: %s", strerror(errno));
		goto err1;
	}
	if (o.control != NULL) {
		lk.control_fd = open_control(o.control, &created);
		if (lk.control_fd < 0)
			goto err1;
	}
	if (add_fd(&lk, lk.tun_fd[0], TAG_TUN_A) < 0 || add_fd(&lk, lk.tun_fd[1], TAG_TUN_B) < 0 ||
	    add_fd(&lk, lk.timer_fd, TAG_TIMER) < 0 || add_fd(&lk, lk.signal_fd, TAG_SIGNAL) < 0 ||
	    (lk.control_fd >= 0 && add_fd(&lk, lk.control_fd, TAG_CONTROL) < 0)) {
		logmsg("epoll_ctl: %s", strerror(errno));
		goto err2;
	}

	lk.started_ns = now_ns();
	for (i = 0; i < o.n_blackouts; i++) {
		uint64_t start = lk.started_ns + o.blackout_at[i];

		linkem_model_blackout(lk.dirs[0].model, start, start + o.blackout_len[i]);
		linkem_model_blackout(lk.dirs[1].model, start, start + o.blackout_len[i]);
	}
	if (o.pidfile != NULL && write_pidfile(o.pidfile) < 0)
		goto err2;

	run(&lk);
	print_stats(&lk);
	status = 0;

	if (o.pidfile != NULL)
		unlink(o.pidfile);
err2:
	if (created)
		unlink(o.control);
err1:
	for (i = 0; i < 2; i++) {
		if (lk.dirs[i].model == NULL)
			continue;
		while ((p = linkem_model_pop(lk.dirs[i].model, LINKEM_NEVER, &len)) != NULL)
			release_packet(p);
		linkem_model_free(lk.dirs[i].model);
	}
	if (lk.control_fd >= 0)
		close(lk.control_fd);
	if (lk.signal_fd >= 0)
		close(lk.signal_fd);
	if (lk.timer_fd >= 0)
		close(lk.timer_fd);
	if (lk.epoll_fd >= 0)
		close(lk.epoll_fd);
err0:
	for (i = 0; i < 2; i++) {
		if (lk.tun_fd[i] >= 0)
			close(lk.tun_fd[i]);
	}
	return status;
}
