/*
 * Compression tests: round trips of text and random data with LZ4 and zlib,
 * the adaptive skip schedule, TLS/SSH detection, and rejection of corrupt,
 * truncated, overlong and mislabelled compressed payloads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lz4.h>
#include <zlib.h>

#include "wanmux/compress.h"
#include "wanmux/err.h"
#include "wanmux/frame.h"

static uint64_t prng_state;

static uint64_t prng(void)
{
	/* xorshift64*: fixed seeds, so failures reproduce. */
	prng_state ^= prng_state >> 12;
	prng_state ^= prng_state << 25;
	prng_state ^= prng_state >> 27;
	return prng_state * 0x2545f4914f6cdd1dULL;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
	prng_state = seed;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(prng() >> 56);
}

/* English-like text: common words, spaces, punctuation and line breaks. */
static void fill_text(uint8_t *p, size_t n, uint64_t seed)
{
	static const char *words[] = {
	    "the",     "of",	  "and",      "to",	"in",	   "is",	"was",
	    "that",    "for",	  "on",	      "with",	"as",	   "by",	"at",
	    "from",    "network", "tunnel",   "stream", "latency", "satellite", "window",
	    "branch",  "office",  "server",   "client", "request", "response",	"header",
	    "content", "length",  "compress", "frame",	"record",  "session",	"offset",
	};
	size_t nw = sizeof(words) / sizeof(words[0]);
	size_t i = 0;

	prng_state = seed;
	while (i < n) {
		const char *w = words[prng() % nw];
		size_t wl = strlen(w);
		for (size_t k = 0; k < wl && i < n; k++)
			p[i++] = (uint8_t)w[k];
		if (i < n) {
			uint64_t r = prng() % 20;
			p[i++] = r == 0 ? '.' : r == 1 ? '\n' : r == 2 ? ',' : ' ';
		}
	}
}

static struct compress_ctx *ctx;

static int setup(void **state)
{
	ctx = compress_ctx_new();
	return ctx == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	compress_ctx_free(ctx);
	ctx = NULL;
	return 0;
}

static uint8_t codec_flag(enum compress_mode codec)
{
	return codec == COMPRESS_LZ4 ? FRAME_FLAG_LZ4 : FRAME_FLAG_ZLIB;
}

/* Compresses text of every interesting size and checks the exact bytes come back. */
static void round_trip_text(enum compress_mode codec)
{
	/* 64..255: short text may or may not save 1/32; above that it must. */
	static const size_t sizes[] = {
	    64, 65, 100, 150, 200, 255, 256, 1000, 4096, 10000, FRAME_DATA_RAW_MAX};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		uint8_t *in = malloc(n);
		uint8_t *comp = malloc(compress_bound(n));
		uint8_t *out = malloc(n); /* exactly raw_len: ASan sees any overrun */
		struct compress_state st = {0};
		int c;

		assert_non_null(in);
		assert_non_null(comp);
		assert_non_null(out);
		fill_text(in, n, 1000 + i);
		c = compress_frame(ctx, &st, codec, in, n, comp, compress_bound(n));
		assert_true(c >= 0);
		if (n >= 256)
			assert_true(c > 0);
		if (c > 0) {
			/* Saves at least 1/32. */
			assert_true((size_t)c <= n - n / 32);
			assert_int_equal(st.misses, 0);
			assert_int_equal(
			    decompress_frame(ctx, codec_flag(codec), comp, (size_t)c, out, n),
			    WM_OK);
			assert_memory_equal(in, out, n);
		} else {
			assert_int_equal(st.misses, 1);
		}
		free(in);
		free(comp);
		free(out);
	}
}

static void test_compress_round_trip_text_lz4(void **state)
{
	round_trip_text(COMPRESS_LZ4);
}

static void test_compress_round_trip_text_zlib(void **state)
{
	round_trip_text(COMPRESS_ZLIB);
}

static void test_compress_text_ratio(void **state)
{
	static uint8_t in[FRAME_DATA_RAW_MAX], comp[FRAME_DATA_RAW_MAX];
	struct compress_state st = {0};
	int lz4, zl;

	fill_text(in, sizeof(in), 7);
	lz4 = compress_frame(ctx, &st, COMPRESS_LZ4, in, sizeof(in), comp, sizeof(comp));
	zl = compress_frame(ctx, &st, COMPRESS_ZLIB, in, sizeof(in), comp, sizeof(comp));
	print_message("  16 KiB text: lz4 %d, zlib %d bytes\n", lz4, zl);
	/* Text of 35 words must shrink well, zlib better than LZ4. */
	assert_true(lz4 > 0 && lz4 < (int)sizeof(in) / 2);
	assert_true(zl > 0 && zl < lz4);
}

static void random_goes_raw(enum compress_mode codec)
{
	static uint8_t in[FRAME_DATA_RAW_MAX], comp[FRAME_DATA_RAW_MAX];
	struct compress_state st = {0};

	fill_random(in, sizeof(in), 42);
	assert_int_equal(compress_frame(ctx, &st, codec, in, sizeof(in), comp, sizeof(comp)), 0);
	assert_int_equal(st.misses, 1);
	assert_int_equal(st.skip_left, 0);
	/* Also for a small random frame just above the raw threshold. */
	assert_int_equal(compress_frame(ctx, &st, codec, in, 64, comp, sizeof(comp)), 0);
	assert_int_equal(st.misses, 2);
}

static void test_compress_random_goes_raw_lz4(void **state)
{
	random_goes_raw(COMPRESS_LZ4);
}

static void test_compress_random_goes_raw_zlib(void **state)
{
	random_goes_raw(COMPRESS_ZLIB);
}

static void test_compress_small_frames_raw(void **state)
{
	uint8_t in[64], comp[64];
	struct compress_state st = {0};

	memset(in, 'a', sizeof(in));
	/* 63 bytes of one letter would shrink a lot, but stays raw and costs no miss. */
	for (int i = 0; i < 10; i++)
		assert_int_equal(compress_frame(ctx, &st, COMPRESS_LZ4, in, 63, comp, sizeof(comp)),
				 0);
	assert_int_equal(st.misses, 0);
	assert_true(compress_frame(ctx, &st, COMPRESS_LZ4, in, 64, comp, sizeof(comp)) > 0);
	assert_true(compress_frame(ctx, &st, COMPRESS_ZLIB, in, 64, comp, sizeof(comp)) > 0);
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_ZLIB, in, 0, comp, sizeof(comp)), 0);
}

/* Runs the skip schedule on random data; each attempt is visible as a miss. */
static void skip_schedule(enum compress_mode codec)
{
	static uint8_t rnd[4096], text[4096], comp[4096];
	struct compress_state st = {0};
	int c;

	fill_random(rnd, sizeof(rnd), 3);
	fill_text(text, sizeof(text), 4);

	/* Four attempts, four misses; the fourth arms a skip of 2^1 frames. */
	for (int i = 1; i <= 4; i++) {
		assert_int_equal(st.skip_left, 0);
		assert_int_equal(
		    compress_frame(ctx, &st, codec, rnd, sizeof(rnd), comp, sizeof(comp)), 0);
		assert_int_equal(st.misses, i);
	}
	assert_int_equal(st.skip_left, 2);

	/* Each failed retry doubles the skip, capped at 2^6. */
	for (int k = 2; k <= 8; k++) {
		int expect_exp = k > 6 ? 6 : k;
		uint16_t skip = st.skip_left;
		uint8_t misses = st.misses;

		/* Skipped frames never reach the codec: misses stays, skip_left counts down. */
		for (uint16_t s = skip; s > 0; s--) {
			assert_int_equal(
			    compress_frame(ctx, &st, codec, text, sizeof(text), comp, sizeof(comp)),
			    0);
			assert_int_equal(st.skip_left, s - 1);
			assert_int_equal(st.misses, misses);
		}
		/* Frames under 64 bytes do not use up the skip. */
		assert_int_equal(compress_frame(ctx, &st, codec, rnd, 10, comp, sizeof(comp)), 0);
		/* The retry: random again, a miss. */
		assert_int_equal(
		    compress_frame(ctx, &st, codec, rnd, sizeof(rnd), comp, sizeof(comp)), 0);
		assert_int_equal(st.misses, misses + 1);
		assert_int_equal(st.skip_exp, expect_exp);
		assert_int_equal(st.skip_left, 1u << expect_exp);
	}

	/* Sit out the skip, then a retry that shrinks resets everything. */
	while (st.skip_left > 0)
		assert_int_equal(
		    compress_frame(ctx, &st, codec, text, sizeof(text), comp, sizeof(comp)), 0);
	c = compress_frame(ctx, &st, codec, text, sizeof(text), comp, sizeof(comp));
	assert_true(c > 0);
	assert_int_equal(st.misses, 0);
	assert_int_equal(st.skip_exp, 1);
	assert_int_equal(st.skip_left, 0);

	/* Three misses then a success: no skip is ever armed. */
	for (int i = 0; i < 3; i++)
		compress_frame(ctx, &st, codec, rnd, sizeof(rnd), comp, sizeof(comp));
	assert_int_equal(st.misses, 3);
	assert_true(compress_frame(ctx, &st, codec, text, sizeof(text), comp, sizeof(comp)) > 0);
	assert_int_equal(st.misses, 0);
	assert_int_equal(st.skip_left, 0);
}

static void test_compress_skip_schedule_lz4(void **state)
{
	skip_schedule(COMPRESS_LZ4);
}

static void test_compress_skip_schedule_zlib(void **state)
{
	skip_schedule(COMPRESS_ZLIB);
}

static void test_compress_tls_ssh_detection(void **state)
{
	static uint8_t text[1024], buf[1024], comp[1024];
	static const char ssh_banner[] = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
	struct compress_state st;

	fill_text(text, sizeof(text), 9);

	/* TLS ClientHello record header on the first payload. */
	memset(&st, 0, sizeof(st));
	memcpy(buf, text, sizeof(buf));
	buf[0] = 0x16;
	buf[1] = 0x03;
	buf[2] = 0x01;
	assert_int_equal(
	    compress_frame(ctx, &st, COMPRESS_LZ4, buf, sizeof(buf), comp, sizeof(comp)), 0);
	assert_true(st.disabled);
	assert_int_equal(
	    compress_frame(ctx, &st, COMPRESS_ZLIB, text, sizeof(text), comp, sizeof(comp)), 0);
	assert_int_equal(st.misses, 0);

	/* SSH banner: shorter than the raw threshold, still detected. */
	memset(&st, 0, sizeof(st));
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_LZ4, (const uint8_t *)ssh_banner,
					sizeof(ssh_banner) - 1, comp, sizeof(comp)),
			 0);
	assert_true(st.disabled);
	assert_true(st.seen_first);
	assert_int_equal(
	    compress_frame(ctx, &st, COMPRESS_LZ4, text, sizeof(text), comp, sizeof(comp)), 0);

	/* Only the first payload counts; an empty payload is not a first payload. */
	memset(&st, 0, sizeof(st));
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_LZ4, text, 0, comp, sizeof(comp)), 0);
	assert_false(st.seen_first);
	assert_true(compress_frame(ctx, &st, COMPRESS_LZ4, text, sizeof(text), comp, sizeof(comp)) >
		    0);
	assert_true(st.seen_first);
	assert_true(compress_frame(ctx, &st, COMPRESS_LZ4, buf, sizeof(buf), comp, sizeof(comp)) >
		    0);
	assert_false(st.disabled);

	/* 0x16 0x02 or "SSH" without the dash are not matches. */
	memset(&st, 0, sizeof(st));
	buf[1] = 0x02;
	assert_true(compress_frame(ctx, &st, COMPRESS_LZ4, buf, sizeof(buf), comp, sizeof(comp)) >
		    0);
	assert_false(st.disabled);
	memset(&st, 0, sizeof(st));
	memcpy(buf, "SSH2", 4);
	assert_true(compress_frame(ctx, &st, COMPRESS_LZ4, buf, sizeof(buf), comp, sizeof(comp)) >
		    0);
	assert_false(st.disabled);
}

static void test_compress_bad_args(void **state)
{
	static uint8_t in[FRAME_DATA_ZRAW_MAX + 1], comp[FRAME_DATA_ZRAW_MAX + 1];
	struct compress_state st = {0};

	fill_text(in, sizeof(in), 5);
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_LZ4, in, sizeof(in), comp, sizeof(comp)),
			 WM_ERR_RANGE);
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_AUTO, in, 1000, comp, sizeof(comp)),
			 WM_ERR_RANGE);
	assert_int_equal(
	    compress_frame(ctx, &st, (enum compress_mode)7, in, 1000, comp, sizeof(comp)),
	    WM_ERR_RANGE);
	assert_int_equal(
	    compress_frame(ctx, &st, COMPRESS_ZLIB, in, 1000, comp, compress_bound(1000) - 1),
	    WM_ERR_RANGE);
	assert_int_equal(st.misses, 0);
	/* NONE is a valid codec that never compresses. */
	assert_int_equal(compress_frame(ctx, &st, COMPRESS_NONE, in, 1000, comp, sizeof(comp)), 0);
	assert_true(compress_bound(FRAME_DATA_RAW_MAX) >= FRAME_DATA_RAW_MAX);
}

/* Compresses 4 KiB of text with codec; returns the compressed length. */
static size_t make_compressed(enum compress_mode codec, uint8_t *raw, size_t raw_len, uint8_t *comp,
			      size_t cap)
{
	struct compress_state st = {0};
	int c;

	fill_text(raw, raw_len, 11);
	c = compress_frame(ctx, &st, codec, raw, raw_len, comp, cap);
	assert_true(c > 0);
	return (size_t)c;
}

static int decompress_exact(uint8_t flag, const uint8_t *in, size_t in_len, size_t raw_len)
{
	/* Exact-size heap copies: any read or write outside them is an ASan error. */
	uint8_t *inc = malloc(in_len ? in_len : 1);
	uint8_t *out = malloc(raw_len ? raw_len : 1);
	int rc;

	assert_non_null(inc);
	assert_non_null(out);
	memcpy(inc, in, in_len);
	rc = decompress_frame(ctx, flag, inc, in_len, out, raw_len);
	free(inc);
	free(out);
	return rc;
}

static void corrupt_rejected(enum compress_mode codec)
{
	static uint8_t raw[4096], comp[4096], bad[4097];
	uint8_t flag = codec_flag(codec);
	size_t n = make_compressed(codec, raw, sizeof(raw), comp, sizeof(comp));
	size_t rejected = 0, flips = 0;

	assert_int_equal(decompress_exact(flag, comp, n, sizeof(raw)), WM_OK);

	/* Every truncation. */
	for (size_t len = 0; len < n; len++)
		assert_int_equal(decompress_exact(flag, comp, len, sizeof(raw)), WM_ERR_MALFORMED);

	/* Trailing garbage: one byte, several bytes. */
	memcpy(bad, comp, n);
	bad[n] = 0;
	assert_int_equal(decompress_exact(flag, bad, n + 1, sizeof(raw)), WM_ERR_MALFORMED);
	bad[n] = 0xff;
	assert_int_equal(decompress_exact(flag, bad, n + 1, sizeof(raw)), WM_ERR_MALFORMED);

	/*
	 * Bit flips. Neither format has a checksum, so a flip in a literal can
	 * decode to the right length with wrong bytes (the record's AEAD is what
	 * guards content). What must hold: no flip reads or writes out of bounds,
	 * the result is OK or MALFORMED, and flips that break structure are caught.
	 */
	for (size_t i = 0; i < n; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int rc;

			memcpy(bad, comp, n);
			bad[i] ^= (uint8_t)(1u << bit);
			rc = decompress_exact(flag, bad, n, sizeof(raw));
			assert_true(rc == WM_OK || rc == WM_ERR_MALFORMED);
			rejected += rc == WM_ERR_MALFORMED;
			flips++;
		}
	}
	print_message("  %s: %zu of %zu bit flips rejected\n", compress_mode_name(codec), rejected,
		      flips);
	assert_true(rejected > flips / 20);

	/* The first byte of the stream always matters: an LZ4 token or a deflate block header. */
	memcpy(bad, comp, n);
	bad[0] = 0xff;
	assert_int_equal(decompress_exact(flag, bad, n, sizeof(raw)), WM_ERR_MALFORMED);
}

static void test_compress_corrupt_rejected_lz4(void **state)
{
	corrupt_rejected(COMPRESS_LZ4);
}

static void test_compress_corrupt_rejected_zlib(void **state)
{
	corrupt_rejected(COMPRESS_ZLIB);
}

static void raw_len_mismatch(enum compress_mode codec)
{
	static uint8_t raw[4096], comp[4096];
	uint8_t flag = codec_flag(codec);
	size_t n = make_compressed(codec, raw, sizeof(raw), comp, sizeof(comp));

	/* Output would be longer than raw_len (overlong) or shorter (short). */
	assert_int_equal(decompress_exact(flag, comp, n, sizeof(raw) - 1), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, n, sizeof(raw) / 2), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, n, 1), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, n, sizeof(raw) + 1), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, n, FRAME_DATA_RAW_MAX), WM_ERR_MALFORMED);
	/* Out-of-range raw_len and empty input. */
	assert_int_equal(decompress_exact(flag, comp, n, 0), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, n, FRAME_DATA_ZRAW_MAX + 1),
			 WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(flag, comp, 0, sizeof(raw)), WM_ERR_MALFORMED);
	/* The right raw_len still works after all those failures on the same ctx. */
	assert_int_equal(decompress_exact(flag, comp, n, sizeof(raw)), WM_OK);
}

static void test_compress_raw_len_mismatch_lz4(void **state)
{
	raw_len_mismatch(COMPRESS_LZ4);
}

static void test_compress_raw_len_mismatch_zlib(void **state)
{
	raw_len_mismatch(COMPRESS_ZLIB);
}

static void test_compress_flag_handling(void **state)
{
	static uint8_t raw[2048], lz[2048], zl[2048], out[2048];
	size_t nl = make_compressed(COMPRESS_LZ4, raw, sizeof(raw), lz, sizeof(lz));
	size_t nz = make_compressed(COMPRESS_ZLIB, raw, sizeof(raw), zl, sizeof(zl));

	/* Wrong codec, no codec, both codecs. */
	assert_int_equal(decompress_exact(FRAME_FLAG_ZLIB, lz, nl, sizeof(raw)), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(FRAME_FLAG_LZ4, zl, nz, sizeof(raw)), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(0, lz, nl, sizeof(raw)), WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB, lz, nl, sizeof(raw)),
			 WM_ERR_MALFORMED);
	assert_int_equal(decompress_exact(0x08, lz, nl, sizeof(raw)), WM_ERR_MALFORMED);
	/* The frame's whole flags byte, FIN included, is accepted. */
	memset(out, 0, sizeof(out));
	assert_int_equal(
	    decompress_frame(ctx, FRAME_FLAG_LZ4 | FRAME_FLAG_FIN, lz, nl, out, sizeof(out)),
	    WM_OK);
	assert_memory_equal(out, raw, sizeof(raw));
	memset(out, 0, sizeof(out));
	assert_int_equal(
	    decompress_frame(ctx, FRAME_FLAG_ZLIB | FRAME_FLAG_FIN, zl, nz, out, sizeof(out)),
	    WM_OK);
	assert_memory_equal(out, raw, sizeof(raw));
}

static void test_compress_frames_independent(void **state)
{
	static uint8_t a[4096], b[4096], ca[4096], cb[4096], out[4096];
	enum compress_mode codecs[] = {COMPRESS_LZ4, COMPRESS_ZLIB};

	fill_text(a, sizeof(a), 21);
	memcpy(b, a, sizeof(b)); /* b repeats a: shared history would make it tiny */
	for (size_t i = 0; i < 2; i++) {
		struct compress_state st = {0};
		struct compress_ctx *other = compress_ctx_new();
		int na, nb;

		assert_non_null(other);
		na = compress_frame(ctx, &st, codecs[i], a, sizeof(a), ca, sizeof(ca));
		nb = compress_frame(ctx, &st, codecs[i], b, sizeof(b), cb, sizeof(cb));
		assert_true(na > 0);
		/* Same input, reset context: byte-identical output. */
		assert_int_equal(nb, na);
		assert_memory_equal(ca, cb, (size_t)na);
		/* The second frame decodes alone, on a context that never saw the first. */
		assert_int_equal(decompress_frame(other, codec_flag(codecs[i]), cb, (size_t)nb, out,
						  sizeof(out)),
				 WM_OK);
		assert_memory_equal(out, b, sizeof(b));
		compress_ctx_free(other);
	}
}

/*
 * One context, one scratch buffer reused for every frame (as the session
 * does), sizes from 64 B to 16 KiB, and frames that fail to fit their limit
 * in between (random frames do not shrink by 1/32: LZ4 stops early): each
 * output is a block the reference decoder reads alone, with no dictionary,
 * and gives back exactly that frame's bytes. Guards any change to how the
 * LZ4 state is reset between frames (a table kept from the last frame must
 * never reach into it).
 */
static void test_compress_lz4_reused_context_frames_decode_alone(void **state)
{
	static uint8_t scratch[16384], comp[LZ4_COMPRESSBOUND(16384)], out[16384];
	uint32_t seed = 7;

	for (int i = 0; i < 400; i++) {
		seed = seed * 1103515245u + 12345u;
		size_t n = 64 + (seed >> 8) % (sizeof(scratch) - 64);
		bool fail = i % 7 == 3;
		if (fail) {
			for (size_t k = 0; k < n; k++) {
				seed = seed * 1103515245u + 12345u;
				scratch[k] = (uint8_t)(seed >> 24);
			}
		} else {
			fill_text(scratch, n, 5000 + (uint32_t)i);
		}
		struct compress_state st = {0};
		int c = compress_frame(ctx, &st, COMPRESS_LZ4, scratch, n, comp, compress_bound(n));
		if (fail) {
			assert_int_equal(c, 0);
			continue;
		}
		assert_true(c > 0);
		int d = LZ4_decompress_safe((const char *)comp, (char *)out, c, (int)sizeof(out));
		assert_int_equal(d, (int)n);
		assert_memory_equal(out, scratch, n);
	}
}

static void test_compress_interop_with_reference_encoders(void **state)
{
	static uint8_t raw[4096], comp[8192], out[4096];
	uLongf zlen = sizeof(comp);
	z_stream z;
	int n;

	fill_text(raw, sizeof(raw), 31);

	/* LZ4 block from the library's default entry point. */
	n = LZ4_compress_default((const char *)raw, (char *)comp, sizeof(raw), sizeof(comp));
	assert_true(n > 0);
	assert_int_equal(decompress_frame(ctx, FRAME_FLAG_LZ4, comp, (size_t)n, out, sizeof(out)),
			 WM_OK);
	assert_memory_equal(out, raw, sizeof(raw));

	/* Raw deflate at level 9 from an independent z_stream. */
	memset(&z, 0, sizeof(z));
	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = raw;
	z.avail_in = sizeof(raw);
	z.next_out = comp;
	z.avail_out = sizeof(comp);
	assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
	n = (int)(sizeof(comp) - z.avail_out);
	deflateEnd(&z);
	assert_int_equal(decompress_frame(ctx, FRAME_FLAG_ZLIB, comp, (size_t)n, out, sizeof(out)),
			 WM_OK);
	assert_memory_equal(out, raw, sizeof(raw));

	/* A zlib-wrapped stream (header + Adler-32) is not raw deflate: refused. */
	assert_int_equal(compress2(comp, &zlen, raw, sizeof(raw), 6), Z_OK);
	assert_int_equal(decompress_frame(ctx, FRAME_FLAG_ZLIB, comp, zlen, out, sizeof(out)),
			 WM_ERR_MALFORMED);
}

static void test_compress_mode_parse(void **state)
{
	static const struct {
		const char *text;
		int rc;
		enum compress_mode mode;
	} cases[] = {
	    {"none", WM_OK, COMPRESS_NONE}, {"lz4", WM_OK, COMPRESS_LZ4},
	    {"zlib", WM_OK, COMPRESS_ZLIB}, {"auto", WM_OK, COMPRESS_AUTO},
	    {"", WM_ERR_PARSE, 0},	    {"LZ4", WM_ERR_PARSE, 0},
	    {"lz4 ", WM_ERR_PARSE, 0},	    {"lz", WM_ERR_PARSE, 0},
	    {"zlib1", WM_ERR_PARSE, 0},	    {"gzip", WM_ERR_PARSE, 0},
	    {"off", WM_ERR_PARSE, 0},	    {"autox", WM_ERR_PARSE, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum compress_mode m = (enum compress_mode)99;

		assert_int_equal(compress_mode_parse(cases[i].text, &m), cases[i].rc);
		if (cases[i].rc == WM_OK) {
			assert_int_equal(m, cases[i].mode);
			assert_string_equal(compress_mode_name(m), cases[i].text);
		} else {
			assert_int_equal(m, 99); /* untouched on error */
		}
	}
	assert_string_equal(compress_mode_name((enum compress_mode)42), "unknown");
}

static void test_compress_choose(void **state)
{
	static const struct {
		enum compress_mode configured;
		uint64_t bps;
		enum compress_mode want;
	} cases[] = {
	    {COMPRESS_NONE, 0, COMPRESS_NONE},
	    {COMPRESS_NONE, 1000, COMPRESS_NONE},
	    {COMPRESS_LZ4, 1000, COMPRESS_LZ4},
	    {COMPRESS_LZ4, 0, COMPRESS_LZ4},
	    {COMPRESS_ZLIB, 1000000000, COMPRESS_ZLIB},
	    {COMPRESS_ZLIB, 0, COMPRESS_ZLIB},
	    {COMPRESS_AUTO, 0, COMPRESS_LZ4}, /* unknown: treated as fast */
	    {COMPRESS_AUTO, 1, COMPRESS_ZLIB},
	    {COMPRESS_AUTO, 2000000, COMPRESS_ZLIB},
	    {COMPRESS_AUTO, COMPRESS_ZLIB_BELOW_BPS - 1, COMPRESS_ZLIB},
	    {COMPRESS_AUTO, COMPRESS_ZLIB_BELOW_BPS, COMPRESS_LZ4},
	    {COMPRESS_AUTO, 100000000, COMPRESS_LZ4},
	    {COMPRESS_AUTO, UINT64_MAX, COMPRESS_LZ4},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(compress_choose(cases[i].configured, cases[i].bps), cases[i].want);
}

static void test_compress_ctx_free_null(void **state)
{
	compress_ctx_free(NULL);
	struct compress_ctx *c = compress_ctx_new();
	assert_non_null(c);
	compress_ctx_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compress_round_trip_text_lz4),
	    cmocka_unit_test(test_compress_round_trip_text_zlib),
	    cmocka_unit_test(test_compress_text_ratio),
	    cmocka_unit_test(test_compress_random_goes_raw_lz4),
	    cmocka_unit_test(test_compress_random_goes_raw_zlib),
	    cmocka_unit_test(test_compress_small_frames_raw),
	    cmocka_unit_test(test_compress_skip_schedule_lz4),
	    cmocka_unit_test(test_compress_skip_schedule_zlib),
	    cmocka_unit_test(test_compress_tls_ssh_detection),
	    cmocka_unit_test(test_compress_bad_args),
	    cmocka_unit_test(test_compress_corrupt_rejected_lz4),
	    cmocka_unit_test(test_compress_corrupt_rejected_zlib),
	    cmocka_unit_test(test_compress_raw_len_mismatch_lz4),
	    cmocka_unit_test(test_compress_raw_len_mismatch_zlib),
	    cmocka_unit_test(test_compress_flag_handling),
	    cmocka_unit_test(test_compress_frames_independent),
	    cmocka_unit_test(test_compress_lz4_reused_context_frames_decode_alone),
	    cmocka_unit_test(test_compress_interop_with_reference_encoders),
	    cmocka_unit_test(test_compress_mode_parse),
	    cmocka_unit_test(test_compress_choose),
	    cmocka_unit_test(test_compress_ctx_free_null),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
