/*
 * libFuzzer target for decompress_frame: byte 0 picks the codec, bytes 1-2 are
 * raw_len (big-endian), the rest is the compressed payload. The output buffer
 * is exactly raw_len bytes so ASan sees any overrun. Whatever decompresses is
 * then compressed and decompressed again and must come back unchanged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wanmux/compress.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(struct compress_ctx *ctx, enum compress_mode codec, const uint8_t *raw,
		       size_t raw_len)
{
	static uint8_t comp[FRAME_DATA_ZRAW_MAX], back[FRAME_DATA_ZRAW_MAX];
	struct compress_state st = {0};
	int c;

	c = compress_frame(ctx, &st, codec, raw, raw_len, comp, sizeof(comp));
	if (c < 0)
		__builtin_trap();
	if (c == 0)
		return;
	if ((size_t)c > raw_len - raw_len / 32)
		__builtin_trap();
	if (decompress_frame(ctx, codec == COMPRESS_LZ4 ? FRAME_FLAG_LZ4 : FRAME_FLAG_ZLIB, comp,
			     (size_t)c, back, raw_len) != WM_OK)
		__builtin_trap();
	if (memcmp(raw, back, raw_len) != 0)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct compress_ctx *ctx;
	enum compress_mode codec;
	uint8_t flag, *out;
	size_t raw_len;
	int rc;

	if (ctx == NULL) {
		ctx = compress_ctx_new();
		if (ctx == NULL)
			return 0;
	}
	if (size < 3)
		return 0;
	codec = (data[0] & 1) ? COMPRESS_ZLIB : COMPRESS_LZ4;
	flag = codec == COMPRESS_ZLIB ? FRAME_FLAG_ZLIB : FRAME_FLAG_LZ4;
	/* Other bits of byte 0 go through as stray flags, which must be refused. */
	if (data[0] & 0x80)
		flag |= (uint8_t)(data[0] & 0x7e);
	raw_len = (size_t)data[1] << 8 | data[2];
	out = malloc(raw_len ? raw_len : 1);
	if (out == NULL)
		return 0;
	rc = decompress_frame(ctx, flag, data + 3, size - 3, out, raw_len);
	if (rc != WM_OK && rc != WM_ERR_MALFORMED)
		__builtin_trap();
	if (rc == WM_OK) {
		if (raw_len == 0 || raw_len > FRAME_DATA_ZRAW_MAX || size == 3)
			__builtin_trap();
		if ((flag & ~FRAME_FLAG_FIN) != FRAME_FLAG_LZ4 &&
		    (flag & ~FRAME_FLAG_FIN) != FRAME_FLAG_ZLIB)
			__builtin_trap();
		round_trip(ctx, codec, out, raw_len);
	}
	free(out);
	return 0;
}
