/*
 * Replay table and its state file (format in replay.h). Keys are kept sorted
 * so a lookup is a binary search; the table only grows by authorized keys
 * (the server asks after the key was found in the authorized list).
 */
#include "wanmux/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/keys.h"

#define REPLAY_MAGIC "WMRS"
#define REPLAY_VERSION 1
/* A state file bigger than this is not ours (10 k keys x 256 slots). */
#define REPLAY_FILE_MAX (REPLAY_HEADER_LEN + 2560000u * REPLAY_ENTRY_LEN + REPLAY_SUM_LEN)

struct replay_key {
	uint8_t pub[REPLAY_KEY_LEN];
	uint8_t last[REPLAY_SLOTS][REPLAY_TS_LEN]; /* all zero: never seen */
};

struct replay {
	struct replay_key *keys; /* sorted by pub */
	size_t nkeys, cap;
	size_t entries; /* non-zero slots over all keys */
	char *path;	/* NULL: memory only */
	char *tmp_path;
	char *dir;
	bool have_floor;
	uint8_t floor[REPLAY_TS_LEN];
};

static const uint8_t zero_ts[REPLAY_TS_LEN];

struct replay *replay_new(void)
{
	return calloc(1, sizeof(struct replay));
}

void replay_free(struct replay *r)
{
	if (r == NULL)
		return;
	free(r->keys);
	free(r->path);
	free(r->tmp_path);
	free(r->dir);
	free(r);
}

void replay_set_floor(struct replay *r, const uint8_t floor[REPLAY_TS_LEN])
{
	memcpy(r->floor, floor, REPLAY_TS_LEN);
	r->have_floor = true;
}

size_t replay_count(const struct replay *r)
{
	return r->entries;
}

/* Index of pub, or where it would go (*found false). */
static size_t find_key(const struct replay *r, const uint8_t pub[REPLAY_KEY_LEN], bool *found)
{
	size_t lo = 0, hi = r->nkeys;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = memcmp(r->keys[mid].pub, pub, REPLAY_KEY_LEN);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static struct replay_key *insert_key(struct replay *r, size_t at, const uint8_t pub[REPLAY_KEY_LEN])
{
	if (r->nkeys == r->cap) {
		size_t ncap = r->cap == 0 ? 4 : r->cap * 2;
		struct replay_key *n = realloc(r->keys, ncap * sizeof(*n));

		if (n == NULL)
			return NULL;
		r->keys = n;
		r->cap = ncap;
	}
	memmove(&r->keys[at + 1], &r->keys[at], (r->nkeys - at) * sizeof(r->keys[0]));
	memset(&r->keys[at], 0, sizeof(r->keys[0]));
	memcpy(r->keys[at].pub, pub, REPLAY_KEY_LEN);
	r->nkeys++;
	return &r->keys[at];
}

size_t replay_encoded_len(const struct replay *r)
{
	return REPLAY_HEADER_LEN + r->entries * REPLAY_ENTRY_LEN + REPLAY_SUM_LEN;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int replay_encode(const struct replay *r, uint8_t *out, size_t cap)
{
	size_t need = replay_encoded_len(r), pos = REPLAY_HEADER_LEN;

	if (cap < need || need > INT32_MAX)
		return WM_ERR_RANGE;
	memcpy(out, REPLAY_MAGIC, 4);
	out[4] = REPLAY_VERSION;
	out[5] = out[6] = out[7] = 0;
	put32(out + 8, (uint32_t)r->entries);
	for (size_t k = 0; k < r->nkeys; k++) {
		for (size_t s = 0; s < REPLAY_SLOTS; s++) {
			if (memcmp(r->keys[k].last[s], zero_ts, REPLAY_TS_LEN) == 0)
				continue;
			memcpy(out + pos, r->keys[k].pub, REPLAY_KEY_LEN);
			out[pos + REPLAY_KEY_LEN] = (uint8_t)s;
			memcpy(out + pos + REPLAY_KEY_LEN + 1, r->keys[k].last[s], REPLAY_TS_LEN);
			pos += REPLAY_ENTRY_LEN;
		}
	}
	crypto_generichash(out + pos, REPLAY_SUM_LEN, out, pos, NULL, 0);
	return (int)need;
}

int replay_decode(struct replay *r, const uint8_t *in, size_t len)
{
	uint8_t sum[REPLAY_SUM_LEN];
	struct replay tmp;
	size_t count;

	if (in == NULL || len < REPLAY_HEADER_LEN + REPLAY_SUM_LEN)
		return WM_ERR_MALFORMED;
	if (memcmp(in, REPLAY_MAGIC, 4) != 0 || in[4] != REPLAY_VERSION || in[5] != 0 ||
	    in[6] != 0 || in[7] != 0)
		return WM_ERR_MALFORMED;
	count = get32(in + 8);
	if ((len - REPLAY_HEADER_LEN - REPLAY_SUM_LEN) / REPLAY_ENTRY_LEN != count ||
	    (len - REPLAY_HEADER_LEN - REPLAY_SUM_LEN) % REPLAY_ENTRY_LEN != 0)
		return WM_ERR_MALFORMED;
	crypto_generichash(sum, sizeof(sum), in, len - REPLAY_SUM_LEN, NULL, 0);
	if (sodium_memcmp(sum, in + len - REPLAY_SUM_LEN, REPLAY_SUM_LEN) != 0)
		return WM_ERR_MALFORMED;

	memset(&tmp, 0, sizeof(tmp));
	const uint8_t *prev = NULL;
	for (size_t i = 0; i < count; i++) {
		const uint8_t *e = in + REPLAY_HEADER_LEN + i * REPLAY_ENTRY_LEN;
		const uint8_t *ts = e + REPLAY_KEY_LEN + 1;

		/* Strictly increasing (key, slot): no duplicates to disagree. */
		if ((prev != NULL && memcmp(prev, e, REPLAY_KEY_LEN + 1) >= 0) ||
		    memcmp(ts, zero_ts, REPLAY_TS_LEN) == 0) {
			free(tmp.keys);
			return WM_ERR_MALFORMED;
		}
		if (tmp.nkeys == 0 || memcmp(tmp.keys[tmp.nkeys - 1].pub, e, REPLAY_KEY_LEN) != 0) {
			if (insert_key(&tmp, tmp.nkeys, e) == NULL) {
				free(tmp.keys);
				return WM_ERR_NOMEM;
			}
		}
		memcpy(tmp.keys[tmp.nkeys - 1].last[e[REPLAY_KEY_LEN]], ts, REPLAY_TS_LEN);
		tmp.entries++;
		prev = e;
	}
	free(r->keys);
	r->keys = tmp.keys;
	r->nkeys = tmp.nkeys;
	r->cap = tmp.cap;
	r->entries = tmp.entries;
	return WM_OK;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Temporary file, fsync, rename, fsync of the directory: the file is either
 * the old or the new table, never a torn one. */
static int save(struct replay *r, char *err, size_t errlen)
{
	size_t len = replay_encoded_len(r);
	uint8_t *buf = malloc(len);
	int fd = -1, dfd = -1, rc = WM_ERR_IO;

	if (buf == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", r->path);
		return WM_ERR_NOMEM;
	}
	if (replay_encode(r, buf, len) < 0) {
		wm_set_err(err, errlen, "%s: state too large", r->path);
		free(buf);
		return WM_ERR_RANGE;
	}
	fd = open(r->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
		  0600);
	if (fd < 0 || fchmod(fd, 0600) != 0 || write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		wm_set_err(err, errlen, "%s: %s", r->tmp_path, strerror(errno));
		goto out;
	}
	if (close(fd) != 0) {
		fd = -1;
		wm_set_err(err, errlen, "%s: %s", r->tmp_path, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(r->tmp_path, r->path) != 0) {
		wm_set_err(err, errlen, "%s: %s", r->path, strerror(errno));
		goto out;
	}
	dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) != 0) {
		wm_set_err(err, errlen, "%s: %s", r->dir, strerror(errno));
		goto out;
	}
	rc = WM_OK;
out:
	if (fd >= 0) {
		close(fd);
		unlink(r->tmp_path);
	}
	if (dfd >= 0)
		close(dfd);
	free(buf);
	return rc;
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + 1 + strlen(name) + 1;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static int load(struct replay *r, char *err, size_t errlen)
{
	int open_errno = 0;
	int fd = keys_open_file(r->path, true, &open_errno, err, errlen);
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int rc;

	if (fd < 0)
		return open_errno == ENOENT ? WM_OK : fd; /* none yet: empty table */
	if (fstat(fd, &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > REPLAY_FILE_MAX) {
		wm_set_err(err, errlen, "%s: not a wanmux state file (size)", r->path);
		close(fd);
		return WM_ERR_MALFORMED;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		close(fd);
		wm_set_err(err, errlen, "%s: out of memory", r->path);
		return WM_ERR_NOMEM;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got > (size_t)st.st_size)
			break;
	}
	close(fd);
	rc = replay_decode(r, buf, got);
	free(buf);
	if (rc == WM_ERR_MALFORMED)
		wm_set_err(
		    err, errlen,
		    "%s: damaged state file (bad format or checksum); move it away to start, "
		    "and know that recorded handshakes older than the restart may then be "
		    "replayed once",
		    r->path);
	else if (rc != WM_OK)
		wm_set_err(err, errlen, "%s: out of memory", r->path);
	return rc;
}

int replay_open(struct replay *r, const char *dir, char *err, size_t errlen)
{
	int rc;

	free(r->path);
	free(r->tmp_path);
	free(r->dir);
	r->dir = strdup(dir);
	r->path = join(dir, REPLAY_FILE_NAME);
	r->tmp_path = join(dir, REPLAY_FILE_NAME ".tmp");
	if (r->dir == NULL || r->path == NULL || r->tmp_path == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", dir);
		rc = WM_ERR_NOMEM;
		goto fail;
	}
	rc = load(r, err, errlen);
	if (rc == WM_OK)
		rc = save(r, err, errlen);
	if (rc == WM_OK)
		return WM_OK;
fail:
	free(r->path);
	free(r->tmp_path);
	free(r->dir);
	r->path = r->tmp_path = r->dir = NULL;
	return rc;
}

int replay_check(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint8_t slot,
		 const uint8_t ts[REPLAY_TS_LEN], char *err, size_t errlen)
{
	uint8_t old[REPLAY_TS_LEN];
	struct replay_key *k;
	bool found;
	size_t at = find_key(r, key, &found);

	if (found) {
		k = &r->keys[at];
	} else {
		if (r->have_floor && memcmp(ts, r->floor, REPLAY_TS_LEN) <= 0)
			return WM_ERR_RANGE;
		k = insert_key(r, at, key);
		if (k == NULL)
			return WM_ERR_NOMEM;
	}
	bool first = memcmp(k->last[slot], zero_ts, REPLAY_TS_LEN) == 0;
	if (first && r->have_floor && memcmp(ts, r->floor, REPLAY_TS_LEN) <= 0)
		return WM_ERR_RANGE;
	if (memcmp(ts, k->last[slot], REPLAY_TS_LEN) <= 0)
		return WM_ERR_REPLAY;
	memcpy(old, k->last[slot], REPLAY_TS_LEN);
	memcpy(k->last[slot], ts, REPLAY_TS_LEN);
	if (first)
		r->entries++;
	if (r->path != NULL && save(r, err, errlen) != WM_OK) {
		/* Not durable: not accepted either (a restart would forget it). */
		memcpy(k->last[slot], old, REPLAY_TS_LEN);
		if (first)
			r->entries--;
		return WM_ERR_IO;
	}
	return WM_OK;
}

void replay_tai64n(uint64_t unix_sec, uint32_t nsec, uint8_t out[REPLAY_TS_LEN])
{
	uint64_t sec = 0x400000000000000aULL + unix_sec;

	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(sec >> (56 - 8 * i));
	put32(out + 8, nsec);
}
