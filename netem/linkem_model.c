/*
 * One direction of the emulated link: spec parsing, the loss/duplication/
 * reordering decisions, serialisation at the configured rate, delay plus
 * order-keeping jitter, and a FIFO of packet copies with release times.
 * No I/O and no clock of its own, so tests drive it with a fake clock.
 */
#include "linkem_model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct linkem_entry {
	void *pkt;
	size_t len;
	uint64_t release_ns;
};

struct linkem_window {
	uint64_t start_ns;
	uint64_t end_ns;
};

struct linkem_model {
	struct linkem_spec spec;
	uint64_t rng[4];
	int ge_bad;
	/* Serialisation: when the emulated wire is free again, and the
	 * sub-nanosecond remainder carried so long runs pace exactly. */
	uint64_t wire_free_ns;
	uint64_t wire_rem;
	/* Jitter must not reorder by itself: no copy leaves before this. */
	uint64_t last_release_ns;
	uint64_t latest_now_ns;
	/* Ring of queued copies; grows by doubling up to the packet limit. */
	struct linkem_entry *ring;
	size_t cap;
	size_t head;
	size_t count;
	uint64_t bytes;
	struct linkem_window windows[LINKEM_MAX_BLACKOUTS];
	size_t n_windows;
	struct linkem_stats stats;
};

/* ---- spec parsing ---- */

/* Rounds to the nearest integer without libm. */
static int64_t round_i64(double v)
{
	return v < 0 ? -(int64_t)(-v + 0.5) : (int64_t)(v + 0.5);
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

void linkem_spec_init(struct linkem_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->limit_packets = LINKEM_DEFAULT_LIMIT;
}

/* Parses a non-negative decimal number; *end points past it. */
static int parse_number(const char *s, double *out, const char **end)
{
	char *e;
	double v;

	if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	v = strtod(s, &e);
	if (e == s || errno != 0 || !(v >= 0 && v <= 1e18)) /* also NaN, inf */
		return -1;
	*out = v;
	*end = e;
	return 0;
}

static int parse_time(const char *key, const char *val, uint64_t *out, char *err, size_t err_len)
{
	const char *unit;
	double v, mult;

	if (parse_number(val, &v, &unit) < 0) {
		set_err(err, err_len, "%s=%s: not a non-negative number", key, val);
		return -1;
	}
	if (strcmp(unit, "us") == 0)
		mult = 1e3;
	else if (strcmp(unit, "ms") == 0)
		mult = 1e6;
	else if (strcmp(unit, "s") == 0)
		mult = 1e9;
	else if (*unit == '\0' && v == 0)
		mult = 0;
	else {
		set_err(err, err_len, "%s=%s: needs a unit: us, ms or s (e.g. %s=300ms)", key, val,
			key);
		return -1;
	}
	if (v * mult > 3600e9) {
		set_err(err, err_len, "%s=%s: more than an hour", key, val);
		return -1;
	}
	*out = (uint64_t)round_i64(v * mult);
	return 0;
}

static int parse_percent(const char *key, const char *val, double *out, char *err, size_t err_len)
{
	const char *rest;
	double v;

	if (parse_number(val, &v, &rest) < 0 ||
	    !(strcmp(rest, "%") == 0 || (*rest == '\0' && v == 0))) {
		set_err(err, err_len, "%s=%s: expected a percentage like %s=1%%", key, val, key);
		return -1;
	}
	if (v > 100) {
		set_err(err, err_len, "%s=%s: more than 100%%", key, val);
		return -1;
	}
	*out = v / 100;
	return 0;
}

static int parse_rate(const char *val, uint64_t *out, char *err, size_t err_len)
{
	static const struct {
		const char *suffix;
		double mult;
	} units[] = {{"", 1}, {"bit", 1}, {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}};
	const char *unit;
	double v;
	size_t i;

	if (parse_number(val, &v, &unit) < 0) {
		set_err(err, err_len, "rate=%s: not a non-negative number", val);
		return -1;
	}
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(unit, units[i].suffix) == 0)
			break;
	}
	if (i == sizeof(units) / sizeof(units[0])) {
		set_err(err, err_len,
			"rate=%s: unit must be bit, kbit, mbit or gbit (bits per second)", val);
		return -1;
	}
	v *= units[i].mult;
	if (v != 0 && (v < 8000 || v > 100e9)) {
		set_err(err, err_len, "rate=%s: must be 0 (unlimited) or 8kbit..100gbit", val);
		return -1;
	}
	*out = (uint64_t)round_i64(v);
	return 0;
}

static int parse_count(const char *key, const char *val, uint64_t max, int allow_k, uint64_t *out,
		       char *err, size_t err_len)
{
	const char *unit;
	double v, mult = 1;

	if (parse_number(val, &v, &unit) < 0) {
		set_err(err, err_len, "%s=%s: not a non-negative number", key, val);
		return -1;
	}
	if (allow_k && (strcasecmp(unit, "k") == 0 || strcasecmp(unit, "kb") == 0))
		mult = 1e3;
	else if (allow_k && (strcasecmp(unit, "m") == 0 || strcasecmp(unit, "mb") == 0))
		mult = 1e6;
	else if (*unit != '\0' && !(allow_k && strcasecmp(unit, "b") == 0)) {
		set_err(err, err_len, "%s=%s: unexpected unit '%s'", key, val, unit);
		return -1;
	}
	v *= mult;
	if (v < 1 || v > (double)max || v != (double)(uint64_t)v) {
		set_err(err, err_len, "%s=%s: must be a whole number from 1 to %llu", key, val,
			(unsigned long long)max);
		return -1;
	}
	*out = (uint64_t)v;
	return 0;
}

/* gemodel=P[/R[/1-H[/1-K]]], defaults as netem: R = 1-P, 1-H = 100%, 1-K = 0%. */
static int parse_gemodel(struct linkem_spec *spec, const char *val, char *err, size_t err_len)
{
	double v[4] = {0, 0, 1, 0};
	char part[64];
	const char *p = val;
	int n = 0;

	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);

		if (n == 4) {
			set_err(err, err_len, "gemodel=%s: at most four values P/R/1-H/1-K", val);
			return -1;
		}
		if (len >= sizeof(part)) {
			set_err(err, err_len, "gemodel=%s: value too long", val);
			return -1;
		}
		memcpy(part, p, len);
		part[len] = '\0';
		if (parse_percent("gemodel", part, &v[n], err, err_len) < 0)
			return -1;
		n++;
		if (slash == NULL)
			break;
		p = slash + 1;
	}
	if (n < 2)
		v[1] = 1 - v[0];
	if (v[1] == 0 && v[0] > 0) {
		set_err(err, err_len,
			"gemodel=%s: R=0 would keep the link in the bad state forever", val);
		return -1;
	}
	spec->ge = 1;
	spec->loss = 0;
	spec->ge_p = v[0];
	spec->ge_r = v[1];
	spec->ge_h = v[2];
	spec->ge_k = v[3];
	return 0;
}

static int parse_pair(struct linkem_spec *spec, const char *key, const char *val, char *err,
		      size_t err_len)
{
	uint64_t n;

	if (strcmp(key, "delay") == 0)
		return parse_time(key, val, &spec->delay_ns, err, err_len);
	if (strcmp(key, "jitter") == 0)
		return parse_time(key, val, &spec->jitter_ns, err, err_len);
	if (strcmp(key, "dist") == 0) {
		if (strcmp(val, "uniform") == 0)
			spec->dist = LINKEM_DIST_UNIFORM;
		else if (strcmp(val, "normal") == 0)
			spec->dist = LINKEM_DIST_NORMAL;
		else {
			set_err(err, err_len, "dist=%s: expected uniform or normal", val);
			return -1;
		}
		return 0;
	}
	if (strcmp(key, "loss") == 0) {
		spec->ge = 0;
		return parse_percent(key, val, &spec->loss, err, err_len);
	}
	if (strcmp(key, "gemodel") == 0)
		return parse_gemodel(spec, val, err, err_len);
	if (strcmp(key, "rate") == 0)
		return parse_rate(val, &spec->rate_bps, err, err_len);
	if (strcmp(key, "limit") == 0) {
		if (parse_count(key, val, LINKEM_MAX_LIMIT, 0, &n, err, err_len) < 0)
			return -1;
		spec->limit_packets = (uint32_t)n;
		return 0;
	}
	if (strcmp(key, "limitbytes") == 0) {
		if (parse_count(key, val, (uint64_t)LINKEM_MAX_LIMIT * 1500, 1, &n, err, err_len) <
		    0)
			return -1;
		spec->limit_bytes = n;
		return 0;
	}
	if (strcmp(key, "reorder") == 0)
		return parse_percent(key, val, &spec->reorder, err, err_len);
	if (strcmp(key, "duplicate") == 0)
		return parse_percent(key, val, &spec->duplicate, err, err_len);
	set_err(err, err_len,
		"unknown key '%s' (known: delay jitter dist loss gemodel rate limit limitbytes "
		"reorder duplicate)",
		key);
	return -1;
}

int linkem_spec_parse(struct linkem_spec *spec, const char *text, char *err, size_t err_len)
{
	char item[256];
	const char *p = text;

	set_err(err, err_len, "no error");
	if (strcmp(text, "none") == 0 || *text == '\0')
		return 0;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *eq;

		if (len == 0) {
			set_err(err, err_len, "empty item in '%s'", text);
			return -1;
		}
		if (len >= sizeof(item)) {
			set_err(err, err_len, "item too long in '%s'", text);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		eq = strchr(item, '=');
		if (eq == NULL || eq == item || eq[1] == '\0') {
			set_err(err, err_len, "'%s': expected key=value", item);
			return -1;
		}
		*eq = '\0';
		if (parse_pair(spec, item, eq + 1, err, err_len) < 0)
			return -1;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
	return 0;
}

void linkem_spec_format(const struct linkem_spec *spec, char *buf, size_t buf_len)
{
	int n;

	n = snprintf(buf, buf_len,
		     "delay=%.3fms jitter=%.3fms(%s) rate=%llubit limit=%u/%llub reorder=%g%% "
		     "duplicate=%g%% ",
		     (double)spec->delay_ns / 1e6, (double)spec->jitter_ns / 1e6,
		     spec->dist == LINKEM_DIST_NORMAL ? "normal" : "uniform",
		     (unsigned long long)spec->rate_bps, spec->limit_packets,
		     (unsigned long long)spec->limit_bytes, spec->reorder * 100,
		     spec->duplicate * 100);
	if (n < 0 || (size_t)n >= buf_len)
		return;
	if (spec->ge)
		snprintf(buf + n, buf_len - (size_t)n, "gemodel=%g%%/%g%%/%g%%/%g%%",
			 spec->ge_p * 100, spec->ge_r * 100, spec->ge_h * 100, spec->ge_k * 100);
	else
		snprintf(buf + n, buf_len - (size_t)n, "loss=%g%%", spec->loss * 100);
}

const char *linkem_reason_name(enum linkem_reason reason)
{
	switch (reason) {
	case LINKEM_DROP_LOSS:
		return "loss";
	case LINKEM_DROP_LIMIT:
		return "limit";
	case LINKEM_DROP_BLACKOUT:
		return "blackout";
	case LINKEM_DROP_REASONS:
		break;
	}
	return "?";
}

/* ---- PRNG: xoshiro256** seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct linkem_model *m)
{
	uint64_t *s = m->rng;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, 1). */
static double rng_unit(struct linkem_model *m)
{
	return (double)(rng_next(m) >> 11) * 0x1.0p-53;
}

/* True with probability p; draws nothing when p is 0 so seeds stay stable. */
static int chance(struct linkem_model *m, double p)
{
	return p > 0 && rng_unit(m) < p;
}

/*
 * Standard normal as the sum of twelve uniforms minus six (Irwin-Hall): mean 0,
 * variance 1, tails cut at 6 sigma. Close enough for jitter, and it keeps the
 * model free of libm, which the unit-test link line does not carry.
 */
static double rng_normal(struct linkem_model *m)
{
	double sum = 0;
	int i;

	for (i = 0; i < 12; i++)
		sum += rng_unit(m);
	return sum - 6;
}

/* ---- model ---- */

struct linkem_model *linkem_model_new(const struct linkem_spec *spec, uint64_t seed)
{
	struct linkem_model *m = calloc(1, sizeof(*m));
	uint64_t x = seed;
	int i;

	if (m == NULL)
		return NULL;
	m->spec = *spec;
	if (m->spec.limit_packets == 0)
		m->spec.limit_packets = LINKEM_DEFAULT_LIMIT;
	if (m->spec.limit_packets > LINKEM_MAX_LIMIT)
		m->spec.limit_packets = LINKEM_MAX_LIMIT;
	for (i = 0; i < 4; i++)
		m->rng[i] = splitmix64(&x);
	return m;
}

void linkem_model_free(struct linkem_model *model)
{
	if (model == NULL)
		return;
	free(model->ring);
	free(model);
}

static void prune_windows(struct linkem_model *m, uint64_t now_ns)
{
	size_t i = 0;

	while (i < m->n_windows) {
		if (m->windows[i].end_ns <= now_ns)
			m->windows[i] = m->windows[--m->n_windows];
		else
			i++;
	}
}

int linkem_model_is_down(const struct linkem_model *model, uint64_t now_ns)
{
	size_t i;

	for (i = 0; i < model->n_windows; i++) {
		if (model->windows[i].start_ns <= now_ns && now_ns < model->windows[i].end_ns)
			return 1;
	}
	return 0;
}

int linkem_model_blackout(struct linkem_model *model, uint64_t start_ns, uint64_t end_ns)
{
	prune_windows(model, model->latest_now_ns);
	if (model->n_windows == LINKEM_MAX_BLACKOUTS)
		return -1;
	if (end_ns <= start_ns)
		return 0;
	model->windows[model->n_windows].start_ns = start_ns;
	model->windows[model->n_windows].end_ns = end_ns;
	model->n_windows++;
	return 0;
}

void linkem_model_up(struct linkem_model *model, uint64_t now_ns)
{
	size_t i;

	for (i = 0; i < model->n_windows; i++) {
		if (model->windows[i].start_ns <= now_ns && now_ns < model->windows[i].end_ns)
			model->windows[i].end_ns = now_ns;
	}
	prune_windows(model, now_ns);
}

static int is_lost(struct linkem_model *m)
{
	int lost;

	if (!m->spec.ge)
		return chance(m, m->spec.loss);
	/* Loss follows the current state; the transition applies to the next
	 * packet, so a bad spell lasts 1/r packets on average. */
	if (m->ge_bad) {
		lost = chance(m, m->spec.ge_h);
		if (chance(m, m->spec.ge_r))
			m->ge_bad = 0;
	} else {
		lost = chance(m, m->spec.ge_k);
		if (chance(m, m->spec.ge_p))
			m->ge_bad = 1;
	}
	return lost;
}

static int64_t jitter_offset(struct linkem_model *m)
{
	double j = (double)m->spec.jitter_ns;

	if (j == 0)
		return 0;
	if (m->spec.dist == LINKEM_DIST_NORMAL)
		return round_i64(rng_normal(m) * j);
	return round_i64((rng_unit(m) * 2 - 1) * j);
}

/* Packet leaves the wire after queueing for it and serialising at the rate. */
static uint64_t serialise(struct linkem_model *m, uint64_t now_ns, size_t len)
{
	uint64_t start, num;

	if (m->spec.rate_bps == 0)
		return now_ns;
	start = m->wire_free_ns > now_ns ? m->wire_free_ns : now_ns;
	if (start == now_ns)
		m->wire_rem = 0; /* idle wire: no debt to carry */
	num = (uint64_t)len * 8 * LINKEM_NS_PER_SEC + m->wire_rem;
	m->wire_free_ns = start + num / m->spec.rate_bps;
	m->wire_rem = num % m->spec.rate_bps;
	return m->wire_free_ns;
}

static int ring_reserve(struct linkem_model *m)
{
	struct linkem_entry *ring;
	size_t cap, i;

	if (m->count < m->cap)
		return 0;
	cap = m->cap ? m->cap * 2 : 64;
	ring = malloc(cap * sizeof(*ring));
	if (ring == NULL)
		return -1;
	for (i = 0; i < m->count; i++)
		ring[i] = m->ring[(m->head + i) % m->cap];
	free(m->ring);
	m->ring = ring;
	m->cap = cap;
	m->head = 0;
	return 0;
}

static int enqueue_copy(struct linkem_model *m, uint64_t now_ns, void *pkt, size_t len)
{
	struct linkem_entry e = {.pkt = pkt, .len = len};
	int64_t d;

	if (m->count >= m->spec.limit_packets ||
	    (m->spec.limit_bytes != 0 && m->bytes + len > m->spec.limit_bytes)) {
		m->stats.dropped[LINKEM_DROP_LIMIT]++;
		return 0;
	}
	if (ring_reserve(m) < 0) {
		m->stats.dropped[LINKEM_DROP_LIMIT]++;
		return -1;
	}
	if (chance(m, m->spec.reorder)) {
		/* Like netem's reorder: skip rate and delay, go to the front. */
		e.release_ns = now_ns;
		m->head = (m->head + m->cap - 1) % m->cap;
		m->ring[m->head] = e;
		m->stats.reordered++;
	} else {
		e.release_ns = serialise(m, now_ns, len);
		d = (int64_t)m->spec.delay_ns + jitter_offset(m);
		if (d > 0)
			e.release_ns += (uint64_t)d;
		if (e.release_ns < m->last_release_ns)
			e.release_ns = m->last_release_ns;
		m->last_release_ns = e.release_ns;
		m->ring[(m->head + m->count) % m->cap] = e;
	}
	m->count++;
	m->bytes += len;
	return 1;
}

int linkem_model_push(struct linkem_model *model, uint64_t now_ns, void *pkt, size_t len)
{
	int copies = 1, held = 0, i, r;

	model->stats.in++;
	model->stats.bytes_in += len;
	if (now_ns > model->latest_now_ns)
		model->latest_now_ns = now_ns;
	if (model->n_windows > 0) {
		prune_windows(model, now_ns);
		if (linkem_model_is_down(model, now_ns)) {
			model->stats.dropped[LINKEM_DROP_BLACKOUT]++;
			return 0;
		}
	}
	if (chance(model, model->spec.duplicate)) {
		copies = 2;
		model->stats.duplicated++;
	}
	for (i = 0; i < copies; i++) {
		if (is_lost(model)) {
			model->stats.dropped[LINKEM_DROP_LOSS]++;
			continue;
		}
		r = enqueue_copy(model, now_ns, pkt, len);
		if (r < 0)
			return held > 0 ? held : -1;
		held += r;
	}
	return held;
}

uint64_t linkem_model_next_release(const struct linkem_model *model)
{
	if (model->count == 0)
		return LINKEM_NEVER;
	return model->ring[model->head].release_ns;
}

void *linkem_model_pop(struct linkem_model *model, uint64_t now_ns, size_t *len)
{
	struct linkem_entry *e;

	if (model->count == 0)
		return NULL;
	e = &model->ring[model->head];
	if (e->release_ns > now_ns)
		return NULL;
	model->head = (model->head + 1) % model->cap;
	model->count--;
	model->bytes -= e->len;
	model->stats.out++;
	model->stats.bytes_out += e->len;
	*len = e->len;
	return e->pkt;
}

size_t linkem_model_queued(const struct linkem_model *model)
{
	return model->count;
}

void linkem_model_stats(const struct linkem_model *model, struct linkem_stats *stats)
{
	*stats = model->stats;
}
