/*
 * Per-frame compression: each DATA payload is compressed on its own with LZ4
 * or zlib (no dictionary shared between frames or streams), or sent raw when
 * that saves less than 1/32. Per-stream adaptive state skips data that keeps
 * failing to shrink (random, already compressed, TLS) at near-zero cost.
 */
#ifndef WANMUX_COMPRESS_H
#define WANMUX_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum compress_mode {
	COMPRESS_NONE = 0,
	COMPRESS_LZ4 = 1,
	COMPRESS_ZLIB = 2,
	COMPRESS_AUTO = 3, /* LZ4 on fast links, zlib on slow ones */
};

/*
 * Below this link rate (bits/s), auto mode picks zlib (deflate level 6): on
 * text it sends about 4.3x less than raw where LZ4 sends 2.8x less, and one
 * core compresses about 400 Mbit/s of input, so links up to this rate stay
 * link-bound, not CPU-bound (docs/BENCHMARKS.md).
 */
#define COMPRESS_ZLIB_BELOW_BPS 64000000ULL

/* Parses "auto", "lz4", "zlib" or "none". 0 or WM_ERR_PARSE. */
int compress_mode_parse(const char *s, enum compress_mode *out);
const char *compress_mode_name(enum compress_mode mode);

/*
 * The codec (COMPRESS_LZ4, COMPRESS_ZLIB or COMPRESS_NONE) to use for a link
 * whose measured delivery rate is link_bps (0 = unknown, treated as fast).
 */
enum compress_mode compress_choose(enum compress_mode configured, uint64_t link_bps);

/* Adaptive state of one stream's sending direction; embed it, zero-init ok. */
struct compress_state {
	uint8_t misses;	    /* consecutive frames that did not shrink */
	uint8_t skip_exp;   /* next skip is 2^skip_exp frames */
	uint16_t skip_left; /* frames still to send raw without trying */
	bool disabled;	    /* stream looked like TLS or SSH: never try */
	bool seen_first;    /* first payload already inspected */
};

/* Scratch buffers and codec contexts, one per thread (not thread-safe). */
struct compress_ctx;

struct compress_ctx *compress_ctx_new(void);
void compress_ctx_free(struct compress_ctx *ctx);

/*
 * Tries to compress in[0..in_len) (<= FRAME_DATA_ZRAW_MAX) with codec
 * (COMPRESS_LZ4 or COMPRESS_ZLIB) into out (out_cap bytes). Returns the
 * compressed length when the frame should go compressed, 0 when it should go
 * raw (too small, no gain, stream skipping or disabled), or a negative error.
 * Updates st. The caller sets FRAME_FLAG_LZ4 / FRAME_FLAG_ZLIB accordingly.
 */
int compress_frame(struct compress_ctx *ctx, struct compress_state *st, enum compress_mode codec,
		   const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap);

/* Bytes out must have for compress_frame to never fail on size. */
size_t compress_bound(size_t in_len);

/*
 * Decompresses a payload sent with frame flag flag (FRAME_FLAG_LZ4 or
 * FRAME_FLAG_ZLIB) into out, which has exactly raw_len bytes. Returns 0 only
 * when the output is exactly raw_len bytes; WM_ERR_MALFORMED for anything else
 * (corrupt, short, too long). Safe on hostile input.
 */
int decompress_frame(struct compress_ctx *ctx, uint8_t flag, const uint8_t *in, size_t in_len,
		     uint8_t *out, size_t raw_len);

#endif
