/*
 * libFuzzer target for records. Mode 0 (first byte even) walks the input as
 * a stream of records the way a tunnel does: record_peek, then record_open in
 * place. Mode 1 seals chunks of the input and opens them again, checking the
 * round trip.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wanmux/err.h"
#include "wanmux/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Fixed key, shared with the seed generator. */
static const uint8_t key[RECORD_KEY_LEN] = {0x52, 0x45, 0x43, 0x06};

static uint8_t buf[RECORD_PLAINTEXT_MAX + RECORD_OVERHEAD + 2];

static void walk_records(struct record_cipher *rx, const uint8_t *data, size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		int len = record_peek(data + pos, size - pos);
		int n;

		if (len == WM_ERR_AGAIN || len == WM_ERR_MALFORMED)
			return;
		if (len < RECORD_OVERHEAD || len > RECORD_CIPHERTEXT_MAX + RECORD_HEADER_LEN)
			__builtin_trap();
		if ((size_t)len > size - pos)
			return; /* the tunnel would wait for more bytes */
		memcpy(buf, data + pos, (size_t)len);
		n = record_open(rx, buf, (size_t)len, buf + RECORD_HEADER_LEN);
		if (n == WM_ERR_CRYPTO) {
			/* the cipher is dead now */
			if (record_open(rx, buf, (size_t)len, buf + RECORD_HEADER_LEN) !=
			    WM_ERR_CRYPTO)
				__builtin_trap();
			return;
		}
		if (n != len - RECORD_OVERHEAD)
			__builtin_trap();
		pos += (size_t)len;
	}
}

static void round_trip(struct record_cipher *tx, struct record_cipher *rx, const uint8_t *data,
		       size_t size)
{
	size_t pos = 0;

	while (pos < size) {
		/* chunk length from the data itself, 1..256 */
		size_t len = (size_t)data[pos] + 1;
		int n;

		pos++;
		if (len > size - pos)
			len = size - pos;
		if (len == 0)
			return;
		memcpy(buf + RECORD_HEADER_LEN, data + pos, len);
		n = record_seal(tx, buf + RECORD_HEADER_LEN, len, buf); /* in place */
		if (n != (int)(len + RECORD_OVERHEAD) || record_peek(buf, (size_t)n) != n)
			__builtin_trap();
		if (record_open(rx, buf, (size_t)n, buf + RECORD_HEADER_LEN) != (int)len ||
		    memcmp(buf + RECORD_HEADER_LEN, data + pos, len) != 0)
			__builtin_trap();
		pos += len;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record_cipher *tx, *rx;

	if (size < 1)
		return 0;
	tx = record_cipher_new(key);
	rx = record_cipher_new(key);
	if (tx != NULL && rx != NULL) {
		if (data[0] % 2 == 0)
			walk_records(rx, data + 1, size - 1);
		else
			round_trip(tx, rx, data + 1, size - 1);
	}
	record_cipher_free(tx);
	record_cipher_free(rx);
	return 0;
}
