/*
 * AEAD records on a byte stream, one direction per cipher:
 *
 *   +--------+--------+--------------------------------------+
 *   |  length u16 BE  |  ciphertext (length bytes, tag last) |
 *   +--------+--------+--------------------------------------+
 *
 * ChaCha20-Poly1305 IETF; nonce = 4 zero bytes | counter u64 little-endian,
 * starting at 0 and never reused; additional data = the 2 length bytes. A
 * replayed, reordered, dropped or altered record fails to open. A key covers
 * at most RECORD_MAX_RECORDS records; record_cipher_rekey starts a new key
 * (rekey.h says when). No I/O here.
 */
#ifndef WANMUX_RECORD_H
#define WANMUX_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define RECORD_KEY_LEN 32
#define RECORD_HEADER_LEN 2
#define RECORD_TAG_LEN 16
#define RECORD_CIPHERTEXT_MAX 65535
#define RECORD_PLAINTEXT_MAX (RECORD_CIPHERTEXT_MAX - RECORD_TAG_LEN)
/* Bytes a record adds to its plaintext. */
#define RECORD_OVERHEAD (RECORD_HEADER_LEN + RECORD_TAG_LEN)
/*
 * Hard limit of records per key, far below the 2^64 nonces: the tunnel rekeys
 * long before (time and byte budgets), and a key that reaches it refuses to
 * seal or open, which closes the tunnel instead of wrapping the nonce.
 */
#define RECORD_MAX_RECORDS (UINT64_C(1) << 48)

struct record_cipher;

/* A cipher for one direction; copies key into guarded memory. NULL on failure. */
struct record_cipher *record_cipher_new(const uint8_t key[RECORD_KEY_LEN]);

/* Wipes and frees c; NULL is a no-op. */
void record_cipher_free(struct record_cipher *c);

/*
 * Replaces c's key with key (the old one is wiped first) and restarts the
 * nonce counter at 0. A cipher that failed to open stays failed. Returns 0 or
 * WM_ERR_STATE for NULL arguments.
 */
int record_cipher_rekey(struct record_cipher *c, const uint8_t key[RECORD_KEY_LEN]);

/*
 * Lowers the number of records one key of c may seal or open (default and
 * maximum RECORD_MAX_RECORDS); larger values are ignored. For tests of the
 * limit, which the default makes unreachable in practice.
 */
void record_cipher_set_limit(struct record_cipher *c, uint64_t max_records);

/* Records sealed or opened under c's current key: its next nonce counter. */
uint64_t record_cipher_count(const struct record_cipher *c);

/*
 * Seals plain[0..plain_len) (1..RECORD_PLAINTEXT_MAX bytes) as one record into
 * out, which needs plain_len + RECORD_OVERHEAD bytes. out may equal
 * plain - RECORD_HEADER_LEN (sealing in place). Returns the record's total
 * length or WM_ERR_RANGE (size) / WM_ERR_CRYPTO (the key's record limit is
 * reached: rekey or close).
 */
int record_seal(struct record_cipher *c, const uint8_t *plain, size_t plain_len, uint8_t *out);

/*
 * Reads the length header at buf. Returns the total record length (header
 * included) when at least 2 bytes are present, WM_ERR_AGAIN with fewer, or
 * WM_ERR_MALFORMED for a length shorter than the tag.
 */
int record_peek(const uint8_t *buf, size_t len);

/*
 * Opens the record at rec (its total length rec_len, as record_peek said) into
 * plain, which needs rec_len - RECORD_OVERHEAD bytes and may equal
 * rec + RECORD_HEADER_LEN (in place). Returns the plaintext length or
 * WM_ERR_CRYPTO when the record does not authenticate or the key's record
 * limit is reached; the cipher must then be discarded with its tunnel.
 */
int record_open(struct record_cipher *c, const uint8_t *rec, size_t rec_len, uint8_t *plain);

#endif
