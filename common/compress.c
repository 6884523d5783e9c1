/*
 * Per-frame LZ4 / raw-deflate compression with an adaptive skip for data that
 * does not shrink. Frames are independent (contexts are reset per frame), so
 * a lost or reordered frame never poisons another. No framing here: frame.c
 * carries the flag and raw_len.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lz4.h>
#include <zlib.h>

#include "wanmux/compress.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"

/* Below this a frame's header overhead dwarfs any gain. */
#define COMPRESS_MIN_LEN 64
/* Misses in a row before the stream starts skipping. */
#define COMPRESS_MISS_LIMIT 4
#define COMPRESS_SKIP_EXP_MIN 1
#define COMPRESS_SKIP_EXP_MAX 6
#define COMPRESS_ZLIB_LEVEL 6
/* Negative: raw deflate, no zlib header or Adler-32 (6 bytes per frame saved). */
#define COMPRESS_ZLIB_WBITS (-15)

struct compress_ctx {
	void *lz4_state; /* LZ4_sizeofState() bytes, keeps 16 KiB off the stack */
	z_stream deflate;
	z_stream inflate;
	bool deflate_ready;
	bool inflate_ready;
};

int compress_mode_parse(const char *s, enum compress_mode *out)
{
	static const struct {
		const char *name;
		enum compress_mode mode;
	} modes[] = {
	    {"none", COMPRESS_NONE},
	    {"lz4", COMPRESS_LZ4},
	    {"zlib", COMPRESS_ZLIB},
	    {"auto", COMPRESS_AUTO},
	};

	if (s == NULL)
		return WM_ERR_PARSE;
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(s, modes[i].name) == 0) {
			*out = modes[i].mode;
			return WM_OK;
		}
	}
	return WM_ERR_PARSE;
}

const char *compress_mode_name(enum compress_mode mode)
{
	switch (mode) {
	case COMPRESS_NONE:
		return "none";
	case COMPRESS_LZ4:
		return "lz4";
	case COMPRESS_ZLIB:
		return "zlib";
	case COMPRESS_AUTO:
		return "auto";
	}
	return "unknown";
}

enum compress_mode compress_choose(enum compress_mode configured, uint64_t link_bps)
{
	if (configured != COMPRESS_AUTO)
		return configured;
	/* zlib costs ~5x the CPU of LZ4; only a slow link makes that pay. */
	if (link_bps > 0 && link_bps < COMPRESS_ZLIB_BELOW_BPS)
		return COMPRESS_ZLIB;
	return COMPRESS_LZ4;
}

struct compress_ctx *compress_ctx_new(void)
{
	struct compress_ctx *ctx;

	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		goto err0;
	ctx->lz4_state = malloc((size_t)LZ4_sizeofState());
	if (ctx->lz4_state == NULL)
		goto err1;
	if (deflateInit2(&ctx->deflate, COMPRESS_ZLIB_LEVEL, Z_DEFLATED, COMPRESS_ZLIB_WBITS, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		goto err1;
	ctx->deflate_ready = true;
	if (inflateInit2(&ctx->inflate, COMPRESS_ZLIB_WBITS) != Z_OK)
		goto err1;
	ctx->inflate_ready = true;
	return ctx;

err1:
	compress_ctx_free(ctx);
err0:
	return NULL;
}

void compress_ctx_free(struct compress_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->deflate_ready)
		deflateEnd(&ctx->deflate);
	if (ctx->inflate_ready)
		inflateEnd(&ctx->inflate);
	free(ctx->lz4_state);
	free(ctx);
}

size_t compress_bound(size_t in_len)
{
	/*
	 * Output is only kept when it is smaller than the input, and both codecs
	 * are run with the output capped at that size, so in_len always suffices.
	 */
	return in_len;
}

static bool looks_encrypted(const uint8_t *in, size_t in_len)
{
	/* TLS record header: handshake (0x16), version 3.x. */
	if (in_len >= 2 && in[0] == 0x16 && in[1] == 0x03)
		return true;
	/* SSH identification string (RFC 4253 4.2). */
	if (in_len >= 4 && memcmp(in, "SSH-", 4) == 0)
		return true;
	return false;
}

static void note_result(struct compress_state *st, bool shrank)
{
	if (shrank) {
		st->misses = 0;
		st->skip_exp = COMPRESS_SKIP_EXP_MIN;
		return;
	}
	if (st->misses < UINT8_MAX)
		st->misses++;
	if (st->misses < COMPRESS_MISS_LIMIT)
		return;
	/*
	 * The 4th miss starts the first skip; every miss after that is a failed
	 * retry and doubles the next skip, up to 2^6 frames (~1 MiB of data).
	 */
	if (st->misses > COMPRESS_MISS_LIMIT && st->skip_exp < COMPRESS_SKIP_EXP_MAX)
		st->skip_exp++;
	st->skip_left = (uint16_t)(1u << st->skip_exp);
}

static int lz4_compress(struct compress_ctx *ctx, const uint8_t *in, size_t in_len, uint8_t *out,
			size_t limit)
{
	/* With dstCapacity below the bound LZ4 stops early and returns 0. */
	return LZ4_compress_fast_extState(ctx->lz4_state, (const char *)in, (char *)out,
					  (int)in_len, (int)limit, 1);
}

static int zlib_compress(struct compress_ctx *ctx, const uint8_t *in, size_t in_len, uint8_t *out,
			 size_t limit)
{
	z_stream *z = &ctx->deflate;
	int rc;

	if (deflateReset(z) != Z_OK)
		return WM_ERR_STATE;
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)in_len;
	z->next_out = out;
	z->avail_out = (uInt)limit;
	rc = deflate(z, Z_FINISH);
	if (rc == Z_STREAM_END)
		return (int)(limit - z->avail_out);
	/* Z_OK / Z_BUF_ERROR: ran out of room, i.e. it did not shrink enough. */
	if (rc == Z_OK || rc == Z_BUF_ERROR)
		return 0;
	return WM_ERR_STATE;
}

int compress_frame(struct compress_ctx *ctx, struct compress_state *st, enum compress_mode codec,
		   const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap)
{
	size_t limit;
	int n;

	if (in_len > FRAME_DATA_ZRAW_MAX)
		return WM_ERR_RANGE;
	if (codec != COMPRESS_NONE && codec != COMPRESS_LZ4 && codec != COMPRESS_ZLIB)
		return WM_ERR_RANGE;
	if (st->skip_exp == 0)
		st->skip_exp = COMPRESS_SKIP_EXP_MIN; /* zero-initialised state */
	/* Before the size check: an SSH banner is shorter than COMPRESS_MIN_LEN. */
	if (!st->seen_first && in_len > 0) {
		st->seen_first = true;
		if (looks_encrypted(in, in_len))
			st->disabled = true;
	}
	if (codec == COMPRESS_NONE || st->disabled || in_len < COMPRESS_MIN_LEN)
		return 0;
	if (st->skip_left > 0) {
		st->skip_left--;
		return 0;
	}
	if (out_cap < compress_bound(in_len))
		return WM_ERR_RANGE;

	/* Anything larger than this does not save in_len/32, so let the codec give up early. */
	limit = in_len - in_len / 32;
	if (codec == COMPRESS_LZ4)
		n = lz4_compress(ctx, in, in_len, out, limit);
	else
		n = zlib_compress(ctx, in, in_len, out, limit);
	if (n < 0)
		return n;
	note_result(st, n > 0);
	return n;
}

static int lz4_decompress(const uint8_t *in, size_t in_len, uint8_t *out, size_t raw_len)
{
	int n;

	n = LZ4_decompress_safe((const char *)in, (char *)out, (int)in_len, (int)raw_len);
	return n >= 0 && (size_t)n == raw_len ? WM_OK : WM_ERR_MALFORMED;
}

static int zlib_decompress(struct compress_ctx *ctx, const uint8_t *in, size_t in_len, uint8_t *out,
			   size_t raw_len)
{
	z_stream *z = &ctx->inflate;
	int rc;

	if (inflateReset(z) != Z_OK)
		return WM_ERR_MALFORMED;
	z->next_in = (Bytef *)(uintptr_t)in;
	z->avail_in = (uInt)in_len;
	z->next_out = out;
	z->avail_out = (uInt)raw_len;
	rc = inflate(z, Z_FINISH);
	/*
	 * Exactly raw_len bytes and exactly in_len bytes consumed: a stream that
	 * wants more output (overlong), ends early (short) or has trailing bytes
	 * is refused.
	 */
	if (rc != Z_STREAM_END || z->avail_out != 0 || z->avail_in != 0)
		return WM_ERR_MALFORMED;
	return WM_OK;
}

int decompress_frame(struct compress_ctx *ctx, uint8_t flag, const uint8_t *in, size_t in_len,
		     uint8_t *out, size_t raw_len)
{
	if (raw_len == 0 || raw_len > FRAME_DATA_ZRAW_MAX || in_len == 0 || in_len > INT_MAX)
		return WM_ERR_MALFORMED;
	/* Tolerate the frame's whole flags byte: FIN says nothing about the codec. */
	flag &= (uint8_t)~FRAME_FLAG_FIN;
	if (flag == FRAME_FLAG_LZ4)
		return lz4_decompress(in, in_len, out, raw_len);
	if (flag == FRAME_FLAG_ZLIB)
		return zlib_decompress(ctx, in, in_len, out, raw_len);
	return WM_ERR_MALFORMED;
}
