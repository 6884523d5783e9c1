/*
 * The server's replay table: the newest TAI64N timestamp accepted per client
 * key and tunnel slot (Noise IK's first message can be replayed; a newer
 * timestamp is what makes a copy useless). Optionally kept in a state file so
 * that a restart does not forget it: every accepted timestamp is written
 * (temporary file, fsync, rename, mode 0600) before the handshake is
 * answered, so a copy is never accepted twice. Without a file, a floor can
 * be set instead: a first message older than it is refused.
 *
 * State file (all big-endian), DIR/replay.state:
 *   "WMRS" | version u8 (1) | reserved u8[3] (0) | count u32 |
 *   count x (client public key (32) | tunnel_no u8 | TAI64N (12)),
 *     sorted by key, then tunnel_no, no duplicates, no zero timestamp |
 *   BLAKE2b-256 of everything before it (32)
 */
#ifndef WANMUX_REPLAY_H
#define WANMUX_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#define REPLAY_KEY_LEN 32
#define REPLAY_TS_LEN 12
#define REPLAY_SLOTS 256 /* tunnel_no is a u8 */
#define REPLAY_HEADER_LEN 12
#define REPLAY_ENTRY_LEN (REPLAY_KEY_LEN + 1 + REPLAY_TS_LEN)
#define REPLAY_SUM_LEN 32
#define REPLAY_FILE_NAME "replay.state"

struct replay;

/* An empty table without a file, or NULL (out of memory). */
struct replay *replay_new(void);

void replay_free(struct replay *r);

/*
 * Binds r to DIR/replay.state: loads it if it exists (it must pass the
 * checks of keys_open_file, secret), then writes it back at once so that an
 * unwritable directory shows at start-up. 0, or WM_ERR_IO / WM_ERR_PERM /
 * WM_ERR_MALFORMED with a one-line reason in err.
 */
int replay_open(struct replay *r, const char *dir, char *err, size_t errlen);

/*
 * First messages for a key and slot that has no entry must carry a
 * timestamp newer than floor (TAI64N); for tables without a state file.
 */
void replay_set_floor(struct replay *r, const uint8_t floor[REPLAY_TS_LEN]);

/*
 * Accepts ts for (key, slot) if it is newer than the last one accepted (and
 * than the floor, for a first one), records it and, with a state file,
 * writes the file before returning. WM_OK; WM_ERR_REPLAY (not newer than
 * the last one); WM_ERR_RANGE (first one, older than the floor); WM_ERR_IO
 * (could not write the file: nothing recorded, refuse the handshake; the
 * reason in err); WM_ERR_NOMEM.
 */
int replay_check(struct replay *r, const uint8_t key[REPLAY_KEY_LEN], uint8_t slot,
		 const uint8_t ts[REPLAY_TS_LEN], char *err, size_t errlen);

/* Number of (key, slot) entries. */
size_t replay_count(const struct replay *r);

/* Bytes replay_encode needs. */
size_t replay_encoded_len(const struct replay *r);

/* Writes the state file image into out; its length, or WM_ERR_RANGE. */
int replay_encode(const struct replay *r, uint8_t *out, size_t cap);

/*
 * Replaces r's entries with those of a state file image. WM_OK or
 * WM_ERR_MALFORMED (bad magic, version, length, order or checksum; r is
 * then unchanged) or WM_ERR_NOMEM.
 */
int replay_decode(struct replay *r, const uint8_t *in, size_t len);

/* TAI64N of a Unix time (seconds, nanoseconds) into out. */
void replay_tai64n(uint64_t unix_sec, uint32_t nsec, uint8_t out[REPLAY_TS_LEN]);

#endif
