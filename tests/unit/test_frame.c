/*
 * Frame codec tests: a table of wire vectors (bytes <-> struct) for every type,
 * round trips, truncation at every length, one test per malformation rule.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wanmux/err.h"
#include "wanmux/frame.h"

struct vector {
	const char *what;
	const uint8_t *bytes;
	size_t len;
	struct frame f;
	const uint8_t *payload; /* DATA: expected payload bytes */
};

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static const struct vector vectors[] = {
    {"OPEN ipv4",
     B(1, 0, 0, 7, 0, 0, 0, 1, /* */ 1, 0x01, 0xbb, 198, 18, 0, 1),
     {.type = FRAME_OPEN,
      .stream_id = 1,
      .u.open = {.type = FRAME_ADDR_IPV4, .port = 443, .u.ipv4 = {198, 18, 0, 1}}},
     NULL},
    {"OPEN ipv6",
     B(1, 0, 0, 19, 0x01, 0x02, 0x03, 0x04, /* */ 4, 0, 22, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0,
       0, 0, 0, 0, 0, 0, 1),
     {.type = FRAME_OPEN,
      .stream_id = 0x01020304,
      .u.open = {.type = FRAME_ADDR_IPV6,
		 .port = 22,
		 .u.ipv6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}}},
     NULL},
    {"OPEN name",
     B(1, 0, 0, 15, 0, 0, 0, 7, /* */ 3, 0, 80, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c',
       'o', 'm'),
     {.type = FRAME_OPEN,
      .stream_id = 7,
      .u.open = {.type = FRAME_ADDR_NAME, .port = 80, .name_len = 11, .u.name = "example.com"}},
     NULL},
    {"OPEN 1-byte name port 65535",
     B(1, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, /* */ 3, 0xff, 0xff, 1, 'x'),
     {.type = FRAME_OPEN,
      .stream_id = 0xffffffff,
      .u.open = {.type = FRAME_ADDR_NAME, .port = 65535, .name_len = 1, .u.name = "x"}},
     NULL},
    {"OPEN_RESULT not allowed",
     B(2, 0, 0, 4, 0, 0, 0, 1, /* */ 0, 0, 0, 9),
     {.type = FRAME_OPEN_RESULT, .stream_id = 1, .u.error = FRAME_ERR_NOT_ALLOWED},
     NULL},
    {"OPEN_RESULT ok",
     B(2, 0, 0, 4, 0, 0, 1, 0, /* */ 0, 0, 0, 0),
     {.type = FRAME_OPEN_RESULT, .stream_id = 256, .u.error = 0},
     NULL},
    {"DATA raw FIN",
     B(3, 1, 0, 10, 0, 0, 0, 5, /* */ 1, 2, 3, 4, 5, 6, 7, 8, 'h', 'i'),
     {.type = FRAME_DATA,
      .flags = FRAME_FLAG_FIN,
      .stream_id = 5,
      .u.data = {.offset = 0x0102030405060708ULL, .raw_len = 2, .payload_len = 2}},
     (const uint8_t *)"hi"},
    {"DATA empty FIN",
     B(3, 1, 0, 8, 0, 0, 0, 5, /* */ 0, 0, 0, 0, 0, 0, 0x10, 0),
     {.type = FRAME_DATA,
      .flags = FRAME_FLAG_FIN,
      .stream_id = 5,
      .u.data = {.offset = 4096, .raw_len = 0, .payload_len = 0}},
     (const uint8_t *)""},
    {"DATA empty no FIN",
     B(3, 0, 0, 8, 0, 0, 0, 6, /* */ 0, 0, 0, 0, 0, 0, 0, 0),
     {.type = FRAME_DATA, .stream_id = 6, .u.data = {.offset = 0}},
     (const uint8_t *)""},
    {"DATA LZ4",
     B(3, 2, 0, 15, 0, 0, 0, 9, /* */ 0, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0x40, 0, 0xaa, 0xbb, 0xcc),
     {.type = FRAME_DATA,
      .flags = FRAME_FLAG_LZ4,
      .stream_id = 9,
      .u.data = {.offset = 0x40, .raw_len = 16384, .payload_len = 3}},
     (const uint8_t[]){0xaa, 0xbb, 0xcc}},
    {"DATA ZLIB FIN",
     B(3, 5, 0, 13, 0, 0, 0, 9, /* */ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1,
       0x55),
     {.type = FRAME_DATA,
      .flags = FRAME_FLAG_ZLIB | FRAME_FLAG_FIN,
      .stream_id = 9,
      .u.data = {.offset = UINT64_MAX, .raw_len = 1, .payload_len = 1}},
     (const uint8_t[]){0x55}},
    {"WINDOW session",
     B(4, 0, 0, 8, 0, 0, 0, 0, /* */ 0, 0, 0, 0, 0, 0x16, 0xe3, 0x60),
     {.type = FRAME_WINDOW, .stream_id = 0, .u.max_offset = 1500000},
     NULL},
    {"WINDOW stream",
     B(4, 0, 0, 8, 0, 0, 0, 3, /* */ 0x80, 0, 0, 0, 0, 0, 0, 1),
     {.type = FRAME_WINDOW, .stream_id = 3, .u.max_offset = 0x8000000000000001ULL},
     NULL},
    {"RESET",
     B(5, 0, 0, 12, 0, 0, 0, 9, /* */ 0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0),
     {.type = FRAME_RESET,
      .stream_id = 9,
      .u.reset = {.error = FRAME_ERR_CANCEL, .final_offset = 65536}},
     NULL},
    {"PING",
     B(6, 0, 0, 8, 0, 0, 0, 0, /* */ 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3),
     {.type = FRAME_PING, .u.opaque = 0xdeadbeef00010203ULL},
     NULL},
    {"PONG",
     B(7, 0, 0, 8, 0, 0, 0, 0, /* */ 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3),
     {.type = FRAME_PONG, .u.opaque = 0xdeadbeef00010203ULL},
     NULL},
    {"GOAWAY",
     B(8, 0, 0, 4, 0x7f, 0xff, 0xff, 0xff, /* */ 0, 0, 0, 11),
     {.type = FRAME_GOAWAY, .stream_id = 0x7fffffff, .u.error = FRAME_ERR_TUNNEL_LOST},
     NULL},
    {"GOAWAY stream 0",
     B(8, 0, 0, 4, 0, 0, 0, 0, /* */ 0, 0, 0, 0),
     {.type = FRAME_GOAWAY, .stream_id = 0, .u.error = 0},
     NULL},
    {"RESUME",
     B(9, 0, 0, 8, 0, 0, 0, 2, /* */ 0, 0, 0, 1, 0, 0, 0, 0),
     {.type = FRAME_RESUME, .stream_id = 2, .u.recv_offset = 1ULL << 32},
     NULL},
    {"REKEY REQUEST", B(12, 1, 0, 0, 0, 0, 0, 0), {.type = FRAME_REKEY, .flags = 1}, NULL},
    {"REKEY OFFER",
     B(12, 2, 0, 32, 0, 0, 0, 0, /* */ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
       18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32),
     {.type = FRAME_REKEY,
      .flags = FRAME_REKEY_OFFER,
      .u.rekey_key = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
		      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}},
     NULL},
    {"REKEY ANSWER",
     B(12, 3, 0, 32, 0, 0, 0, 0, /* */ 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
       0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f),
     {.type = FRAME_REKEY, .flags = FRAME_REKEY_ANSWER, .u.rekey_key = {0xff, [31] = 0x7f}},
     NULL},
    {"REKEY DONE",
     B(12, 4, 0, 0, 0, 0, 0, 0),
     {.type = FRAME_REKEY, .flags = FRAME_REKEY_DONE},
     NULL},
};

#define NVECTORS (sizeof(vectors) / sizeof(vectors[0]))

static void assert_frame_equal(const struct frame *want, const struct frame *got)
{
	assert_int_equal(want->type, got->type);
	assert_int_equal(want->flags, got->flags);
	assert_int_equal(want->stream_id, got->stream_id);
	switch (want->type) {
	case FRAME_OPEN:
		assert_int_equal(want->u.open.type, got->u.open.type);
		assert_int_equal(want->u.open.port, got->u.open.port);
		if (want->u.open.type == FRAME_ADDR_IPV4)
			assert_memory_equal(want->u.open.u.ipv4, got->u.open.u.ipv4, 4);
		else if (want->u.open.type == FRAME_ADDR_IPV6)
			assert_memory_equal(want->u.open.u.ipv6, got->u.open.u.ipv6, 16);
		else {
			assert_int_equal(want->u.open.name_len, got->u.open.name_len);
			assert_memory_equal(want->u.open.u.name, got->u.open.u.name,
					    want->u.open.name_len);
			assert_int_equal(got->u.open.u.name[got->u.open.name_len], '\0');
		}
		break;
	case FRAME_OPEN_RESULT:
	case FRAME_GOAWAY:
		assert_int_equal(want->u.error, got->u.error);
		break;
	case FRAME_DATA:
		assert_true(want->u.data.offset == got->u.data.offset);
		assert_int_equal(want->u.data.raw_len, got->u.data.raw_len);
		assert_int_equal(want->u.data.payload_len, got->u.data.payload_len);
		break;
	case FRAME_WINDOW:
		assert_true(want->u.max_offset == got->u.max_offset);
		break;
	case FRAME_RESET:
		assert_int_equal(want->u.reset.error, got->u.reset.error);
		assert_true(want->u.reset.final_offset == got->u.reset.final_offset);
		break;
	case FRAME_PING:
	case FRAME_PONG:
		assert_true(want->u.opaque == got->u.opaque);
		break;
	case FRAME_RESUME:
		assert_true(want->u.recv_offset == got->u.recv_offset);
		break;
	case FRAME_REKEY:
		assert_memory_equal(want->u.rekey_key, got->u.rekey_key, FRAME_REKEY_KEY_LEN);
		break;
	default:
		fail_msg("unexpected type %d", want->type);
	}
}

/* Encodes any vector's frame, DATA through its header function plus payload. */
static int encode_any(const struct frame *f, const uint8_t *payload, uint8_t *buf, size_t cap)
{
	int n;

	if (f->type != FRAME_DATA)
		return frame_encode(f, buf, cap);
	n = frame_encode_data_header(buf, cap, f->stream_id, f->flags, f->u.data.offset,
				     f->u.data.raw_len, f->u.data.payload_len);
	if (n < 0)
		return n;
	if ((size_t)n + f->u.data.payload_len > cap)
		return WM_ERR_RANGE;
	memcpy(buf + n, payload, f->u.data.payload_len);
	return n + (int)f->u.data.payload_len;
}

static void test_frame_decode_vectors(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		struct frame f;
		size_t used = 0;

		print_message("  %s\n", v->what);
		assert_int_equal(frame_decode(v->bytes, v->len, &f, &used), WM_OK);
		assert_int_equal(used, v->len);
		assert_frame_equal(&v->f, &f);
		if (v->f.type == FRAME_DATA) {
			size_t hlen = frame_data_header_len(v->f.flags);
			assert_ptr_equal(f.u.data.payload, v->bytes + hlen);
			assert_int_equal(hlen + f.u.data.payload_len, v->len);
			assert_memory_equal(f.u.data.payload, v->payload, f.u.data.payload_len);
		}
	}
}

static void test_frame_encode_vectors(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		uint8_t buf[64];

		print_message("  %s\n", v->what);
		memset(buf, 0xee, sizeof(buf));
		assert_int_equal(encode_any(&v->f, v->payload, buf, sizeof(buf)), (int)v->len);
		assert_memory_equal(buf, v->bytes, v->len);
		/* Nothing written past the frame. */
		assert_int_equal(buf[v->len], 0xee);
	}
}

static void test_frame_encode_exact_cap(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];
		uint8_t *buf = malloc(v->len);

		assert_non_null(buf);
		assert_int_equal(encode_any(&v->f, v->payload, buf, v->len), (int)v->len);
		assert_memory_equal(buf, v->bytes, v->len);
		free(buf);
	}
}

static void test_frame_encode_small_cap_is_range(void **state)
{
	uint8_t buf[64];

	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];

		if (v->f.type == FRAME_DATA) {
			size_t hlen = frame_data_header_len(v->f.flags);
			for (size_t cap = 0; cap < hlen; cap++)
				assert_int_equal(frame_encode_data_header(
						     buf, cap, v->f.stream_id, v->f.flags,
						     v->f.u.data.offset, v->f.u.data.raw_len,
						     v->f.u.data.payload_len),
						 WM_ERR_RANGE);
			continue;
		}
		for (size_t cap = 0; cap < v->len; cap++)
			assert_int_equal(frame_encode(&v->f, buf, cap), WM_ERR_RANGE);
	}
}

static void test_frame_truncation_is_again(void **state)
{
	for (size_t i = 0; i < NVECTORS; i++) {
		const struct vector *v = &vectors[i];

		for (size_t len = 0; len < v->len; len++) {
			/* A heap copy of exactly len bytes: ASan catches any over-read. */
			uint8_t *buf = malloc(len ? len : 1);
			struct frame f;
			size_t used = 12345;

			assert_non_null(buf);
			memcpy(buf, v->bytes, len);
			assert_int_equal(frame_decode(buf, len, &f, &used), WM_ERR_AGAIN);
			assert_int_equal(used, 12345);
			free(buf);
		}
	}
}

static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t prng(void)
{
	/* xorshift64*: fixed seed, so failures reproduce. */
	prng_state ^= prng_state >> 12;
	prng_state ^= prng_state << 25;
	prng_state ^= prng_state >> 27;
	return prng_state * 0x2545f4914f6cdd1dULL;
}

static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

static void random_frame(struct frame *f)
{
	static const uint8_t types[] = {FRAME_OPEN, FRAME_OPEN_RESULT, FRAME_WINDOW, FRAME_RESET,
					FRAME_PING, FRAME_PONG,	       FRAME_GOAWAY, FRAME_RESUME};

	memset(f, 0, sizeof(*f));
	f->type = types[prng() % sizeof(types)];
	f->stream_id = (uint32_t)prng() | 1;
	switch (f->type) {
	case FRAME_OPEN:
		f->u.open.port = (uint16_t)prng();
		switch (prng() % 3) {
		case 0:
			f->u.open.type = FRAME_ADDR_IPV4;
			for (int i = 0; i < 4; i++)
				f->u.open.u.ipv4[i] = (uint8_t)prng();
			break;
		case 1:
			f->u.open.type = FRAME_ADDR_IPV6;
			for (int i = 0; i < 16; i++)
				f->u.open.u.ipv6[i] = (uint8_t)prng();
			break;
		default:
			f->u.open.type = FRAME_ADDR_NAME;
			/* Any name of the grammar (netaddr_hostname_valid): labels of
			 * up to 49 bytes here, 253 bytes at most. */
			f->u.open.name_len = (uint8_t)(1 + prng() % 253);
			for (int i = 0; i < f->u.open.name_len; i++)
				f->u.open.u.name[i] =
				    i % 50 == 49 ? '.'
						 : name_chars[prng() % (sizeof(name_chars) - 1)];
			break;
		}
		break;
	case FRAME_OPEN_RESULT:
	case FRAME_GOAWAY:
		f->u.error = (uint32_t)prng();
		break;
	case FRAME_RESET:
		f->u.reset.error = (uint32_t)prng();
		f->u.reset.final_offset = prng();
		break;
	default:
		f->u.opaque = prng(); /* same storage as max_offset and recv_offset */
		break;
	}
	if (f->type == FRAME_PING || f->type == FRAME_PONG)
		f->stream_id = 0;
	if ((f->type == FRAME_WINDOW || f->type == FRAME_GOAWAY) && prng() % 2)
		f->stream_id = 0;
}

static void test_frame_round_trip_random(void **state)
{
	uint8_t buf[FRAME_HEADER_LEN + 3 + 1 + FRAME_NAME_MAX];

	for (int i = 0; i < 5000; i++) {
		struct frame f, g;
		size_t used;
		int n;

		random_frame(&f);
		n = frame_encode(&f, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(frame_decode(buf, (size_t)n, &g, &used), WM_OK);
		assert_int_equal(used, (size_t)n);
		assert_frame_equal(&f, &g);
	}
}

static void test_frame_round_trip_data(void **state)
{
	static uint8_t buf[FRAME_DATA_OVERHEAD_MAX + FRAME_DATA_RAW_MAX];
	static const uint8_t flag_sets[] = {0,
					    FRAME_FLAG_FIN,
					    FRAME_FLAG_LZ4,
					    FRAME_FLAG_ZLIB,
					    FRAME_FLAG_LZ4 | FRAME_FLAG_FIN,
					    FRAME_FLAG_ZLIB | FRAME_FLAG_FIN};
	static const size_t lens[] = {1, 2, 100, FRAME_DATA_RAW_MAX - 1, FRAME_DATA_RAW_MAX};

	for (size_t i = 0; i < sizeof(flag_sets); i++) {
		for (size_t j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			uint8_t flags = flag_sets[i];
			bool comp = flags & (FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB);
			size_t plen = lens[j];
			uint32_t raw_len = comp ? (uint32_t)(FRAME_DATA_RAW_MAX - j) : 0;
			uint64_t off = prng();
			struct frame f;
			size_t used;
			int n;

			n = frame_encode_data_header(buf, sizeof(buf), 42, flags, off, raw_len,
						     plen);
			assert_int_equal(n, comp ? 20 : 16);
			for (size_t k = 0; k < plen; k++)
				buf[(size_t)n + k] = (uint8_t)(k * 7);
			assert_int_equal(frame_decode(buf, (size_t)n + plen, &f, &used), WM_OK);
			assert_int_equal(used, (size_t)n + plen);
			assert_int_equal(f.type, FRAME_DATA);
			assert_int_equal(f.flags, flags);
			assert_int_equal(f.stream_id, 42);
			assert_true(f.u.data.offset == off);
			assert_int_equal(f.u.data.raw_len, comp ? raw_len : plen);
			assert_int_equal(f.u.data.payload_len, plen);
			assert_ptr_equal(f.u.data.payload, buf + n);
		}
	}
}

static void test_frame_back_to_back(void **state)
{
	uint8_t buf[1024];
	size_t len = 0, pos = 0;

	for (size_t i = 0; i < NVECTORS; i++) {
		memcpy(buf + len, vectors[i].bytes, vectors[i].len);
		len += vectors[i].len;
	}
	/* Half of the first frame again at the end: the tail is incomplete. */
	memcpy(buf + len, vectors[0].bytes, vectors[0].len / 2);
	len += vectors[0].len / 2;

	for (size_t i = 0; i < NVECTORS; i++) {
		struct frame f;
		size_t used;

		assert_int_equal(frame_decode(buf + pos, len - pos, &f, &used), WM_OK);
		assert_int_equal(used, vectors[i].len);
		assert_frame_equal(&vectors[i].f, &f);
		if (f.type == FRAME_DATA)
			assert_memory_equal(f.u.data.payload, vectors[i].payload,
					    f.u.data.payload_len);
		pos += used;
	}
	{
		struct frame f;
		size_t used;
		assert_int_equal(frame_decode(buf + pos, len - pos, &f, &used), WM_ERR_AGAIN);
	}
}

/* Builds a frame from parts so each malformation differs from a good frame in one field. */
static size_t mk(uint8_t *buf, uint8_t type, uint8_t flags, uint16_t len, uint32_t sid,
		 const uint8_t *body, size_t body_len)
{
	buf[0] = type;
	buf[1] = flags;
	buf[2] = (uint8_t)(len >> 8);
	buf[3] = (uint8_t)len;
	buf[4] = (uint8_t)(sid >> 24);
	buf[5] = (uint8_t)(sid >> 16);
	buf[6] = (uint8_t)(sid >> 8);
	buf[7] = (uint8_t)sid;
	if (body_len)
		memcpy(buf + 8, body, body_len);
	return 8 + body_len;
}

static void assert_malformed(const uint8_t *buf, size_t len)
{
	struct frame f;
	size_t used;

	assert_int_equal(frame_decode(buf, len, &f, &used), WM_ERR_MALFORMED);
}

static void assert_decodes(const uint8_t *buf, size_t len)
{
	struct frame f;
	size_t used;

	assert_int_equal(frame_decode(buf, len, &f, &used), WM_OK);
	assert_int_equal(used, len);
}

/* Also checks that the header alone is enough to refuse, without waiting for the body. */
static void assert_malformed_early(uint8_t type, uint8_t flags, uint16_t len, uint32_t sid)
{
	static uint8_t zero[FRAME_BODY_MAX];
	static uint8_t buf[FRAME_HEADER_LEN + FRAME_BODY_MAX];
	size_t n = mk(buf, type, flags, len, sid, zero, len);

	assert_malformed(buf, FRAME_HEADER_LEN);
	assert_malformed(buf, n);
}

static void test_frame_malformed_unknown_type(void **state)
{
	assert_malformed_early(0, 0, 8, 0);
	assert_malformed_early(10, 0, 8, 0);
	assert_malformed_early(0x80, 0, 0, 1);
	assert_malformed_early(0xff, 0, 4, 1);
}

static void test_frame_malformed_body_length(void **state)
{
	/* Fixed-size types: one byte short, one byte long, zero. */
	static const struct {
		uint8_t type;
		uint16_t len;
		uint32_t sid;
	} fixed[] = {
	    {FRAME_OPEN_RESULT, 4, 1}, {FRAME_WINDOW, 8, 1}, {FRAME_RESET, 12, 1},
	    {FRAME_PING, 8, 0},	       {FRAME_PONG, 8, 0},   {FRAME_GOAWAY, 4, 1},
	    {FRAME_RESUME, 8, 1},
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		assert_malformed_early(fixed[i].type, 0, 0, fixed[i].sid);
		assert_malformed_early(fixed[i].type, 0, (uint16_t)(fixed[i].len - 1),
				       fixed[i].sid);
		assert_malformed_early(fixed[i].type, 0, (uint16_t)(fixed[i].len + 1),
				       fixed[i].sid);
		assert_malformed_early(fixed[i].type, 0, FRAME_BODY_MAX, fixed[i].sid);
	}
	/* DATA: below the offset, compressed without raw_len or payload, too big raw. */
	assert_malformed_early(FRAME_DATA, 0, 7, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_FIN, 0, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_LZ4, 11, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_LZ4, 12, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_ZLIB, 12, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_ZLIB | FRAME_FLAG_FIN, 8, 1);
	assert_malformed_early(FRAME_DATA, 0, 8 + FRAME_DATA_RAW_MAX + 1, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_FIN, FRAME_BODY_MAX, 1);
	/* OPEN: shorter than the smallest or longer than the largest address. */
	assert_malformed_early(FRAME_OPEN, 0, 0, 1);
	assert_malformed_early(FRAME_OPEN, 0, 4, 1);
	assert_malformed_early(FRAME_OPEN, 0, 3 + 1 + FRAME_NAME_MAX + 1, 1);
}

static void test_frame_accepts_data_raw_max(void **state)
{
	static uint8_t buf[FRAME_HEADER_LEN + 8 + FRAME_DATA_RAW_MAX];
	static const uint8_t zero[8 + FRAME_DATA_RAW_MAX];
	size_t n;

	n = mk(buf, FRAME_DATA, 0, 8 + FRAME_DATA_RAW_MAX, 1, zero, 8 + FRAME_DATA_RAW_MAX);
	assert_decodes(buf, n);
}

static void test_frame_malformed_raw_len(void **state)
{
	uint8_t buf[64];
	/* offset 0, raw_len, 1 payload byte */
	uint8_t body[13] = {0};
	size_t n;

	for (int flag = FRAME_FLAG_LZ4; flag <= FRAME_FLAG_ZLIB; flag <<= 1) {
		/* raw_len 0 */
		n = mk(buf, FRAME_DATA, (uint8_t)flag, 13, 1, body, 13);
		assert_malformed(buf, n);
		/* raw_len FRAME_DATA_ZRAW_MAX + 1 = 0x10001 */
		body[9] = 0x01;
		body[11] = 0x01;
		n = mk(buf, FRAME_DATA, (uint8_t)flag, 13, 1, body, 13);
		assert_malformed(buf, n);
		/* raw_len 0x80010000: high bits set */
		body[8] = 0x80;
		body[11] = 0x00;
		n = mk(buf, FRAME_DATA, (uint8_t)flag, 13, 1, body, 13);
		assert_malformed(buf, n);
		/* and exactly FRAME_DATA_ZRAW_MAX is fine (a compressed frame of
		 * up to 64 KiB raw), as is FRAME_DATA_RAW_MAX */
		body[8] = 0;
		n = mk(buf, FRAME_DATA, (uint8_t)flag, 13, 1, body, 13);
		assert_decodes(buf, n);
		body[9] = 0;
		body[10] = 0x40;
		n = mk(buf, FRAME_DATA, (uint8_t)flag, 13, 1, body, 13);
		assert_decodes(buf, n);
		memset(body, 0, sizeof(body));
	}
}

static void test_frame_malformed_flags(void **state)
{
	/* LZ4 and ZLIB together, and every undefined DATA bit. */
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB, 20, 1);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB | FRAME_FLAG_FIN, 20,
			       1);
	for (int bit = 3; bit < 8; bit++)
		assert_malformed_early(FRAME_DATA, (uint8_t)(1u << bit), 8, 1);
	/* Any flag on any other type. */
	for (int bit = 0; bit < 8; bit++) {
		uint8_t fl = (uint8_t)(1u << bit);
		/* OPEN_RESULT may be marked as sent again after a path loss. */
		if (fl != FRAME_FLAG_RESENT)
			assert_malformed_early(FRAME_OPEN_RESULT, fl, 4, 1);
		assert_malformed_early(FRAME_ACK, fl, 8, 1);
		assert_malformed_early(FRAME_WINDOW, fl, 8, 1);
		assert_malformed_early(FRAME_RESET, fl, 12, 1);
		assert_malformed_early(FRAME_PING, fl, 8, 0);
		assert_malformed_early(FRAME_PONG, fl, 8, 0);
		assert_malformed_early(FRAME_GOAWAY, fl, 4, 0);
		assert_malformed_early(FRAME_RESUME, fl, 8, 1);
	}
	{
		uint8_t buf[32];
		size_t n =
		    mk(buf, FRAME_OPEN, 0x02, 7, 1, (const uint8_t[]){1, 0, 80, 127, 0, 0, 1}, 7);
		assert_malformed(buf, n);
		buf[1] = FRAME_FLAG_RESENT; /* an OPEN sent again after a path loss */
		assert_decodes(buf, n);
		buf[1] = 0;
		assert_decodes(buf, n);
		buf[0] = FRAME_LISTEN; /* LISTEN takes no flag at all */
		buf[1] = FRAME_FLAG_RESENT;
		assert_malformed(buf, n);
	}
}

static void test_frame_malformed_stream_id(void **state)
{
	uint8_t buf[32];
	size_t n;

	/* Stream 0 where a stream is required. */
	assert_malformed_early(FRAME_OPEN_RESULT, 0, 4, 0);
	assert_malformed_early(FRAME_DATA, 0, 8, 0);
	assert_malformed_early(FRAME_DATA, FRAME_FLAG_LZ4, 13, 0);
	assert_malformed_early(FRAME_RESET, 0, 12, 0);
	assert_malformed_early(FRAME_RESUME, 0, 8, 0);
	n = mk(buf, FRAME_OPEN, 0, 7, 0, (const uint8_t[]){1, 0, 80, 127, 0, 0, 1}, 7);
	assert_malformed(buf, n);
	/* A stream where only 0 is allowed. */
	assert_malformed_early(FRAME_PING, 0, 8, 1);
	assert_malformed_early(FRAME_PONG, 0, 8, 0x80000000);
	/* WINDOW and GOAWAY take any stream id. */
	n = mk(buf, FRAME_WINDOW, 0, 8, 0xffffffff, (const uint8_t[8]){0}, 8);
	assert_decodes(buf, n);
	n = mk(buf, FRAME_GOAWAY, 0, 4, 0xffffffff, (const uint8_t[4]){0}, 4);
	assert_decodes(buf, n);
}

static void test_frame_malformed_rekey(void **state)
{
	uint8_t buf[64] = {0};
	size_t n;

	/* Each step with the other step's length, one byte off, or the maximum. */
	for (uint8_t step = FRAME_REKEY_REQUEST; step <= FRAME_REKEY_DONE; step++) {
		uint16_t len = step == FRAME_REKEY_OFFER || step == FRAME_REKEY_ANSWER ? 32 : 0;
		assert_malformed_early(FRAME_REKEY, step, (uint16_t)(32 - len), 0);
		assert_malformed_early(FRAME_REKEY, step, (uint16_t)(len + 1), 0);
		if (len > 0)
			assert_malformed_early(FRAME_REKEY, step, (uint16_t)(len - 1), 0);
		assert_malformed_early(FRAME_REKEY, step, FRAME_BODY_MAX, 0);
		/* Only stream 0. */
		assert_malformed_early(FRAME_REKEY, step, len, 1);
		assert_malformed_early(FRAME_REKEY, step, len, 0xffffffff);
		n = mk(buf, FRAME_REKEY, step, len, 0, (const uint8_t[32]){0}, len);
		assert_decodes(buf, n);
	}
	/* Steps that do not exist, with either length. */
	static const uint8_t bad_steps[] = {0, 5, 6, 0x80, 0xff};
	for (size_t i = 0; i < sizeof(bad_steps); i++) {
		assert_malformed_early(FRAME_REKEY, bad_steps[i], 0, 0);
		assert_malformed_early(FRAME_REKEY, bad_steps[i], 32, 0);
	}
	/* The encoder refuses what the decoder would. */
	struct frame f = {.type = FRAME_REKEY, .flags = 7};
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.flags = FRAME_REKEY_OFFER;
	f.stream_id = 3;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.stream_id = 0;
	assert_int_equal(frame_encode(&f, buf, 8 + 31), WM_ERR_RANGE);
	assert_int_equal(frame_encode(&f, buf, 8 + 32), 8 + 32);
}

static void test_frame_malformed_address(void **state)
{
	uint8_t buf[FRAME_HEADER_LEN + 3 + 1 + FRAME_NAME_MAX];
	uint8_t body[3 + 1 + FRAME_NAME_MAX];
	size_t n;

	/* Unknown address types, with the length of each known one. */
	static const uint8_t bad_atypes[] = {0, 2, 5, 0xff};
	for (size_t i = 0; i < sizeof(bad_atypes); i++) {
		memset(body, 'a', sizeof(body));
		body[0] = bad_atypes[i];
		body[3] = 4; /* a valid name_len for length 8 */
		n = mk(buf, FRAME_OPEN, 0, 7, 1, body, 7);
		assert_malformed(buf, n);
		n = mk(buf, FRAME_OPEN, 0, 19, 1, body, 19);
		assert_malformed(buf, n);
		n = mk(buf, FRAME_OPEN, 0, 8, 1, body, 8);
		assert_malformed(buf, n);
	}
	/* IPv4 and IPv6 with each other's length. */
	memset(body, 0, sizeof(body));
	body[0] = FRAME_ADDR_IPV4;
	n = mk(buf, FRAME_OPEN, 0, 19, 1, body, 19);
	assert_malformed(buf, n);
	n = mk(buf, FRAME_OPEN, 0, 8, 1, body, 8);
	assert_malformed(buf, n);
	body[0] = FRAME_ADDR_IPV6;
	n = mk(buf, FRAME_OPEN, 0, 7, 1, body, 7);
	assert_malformed(buf, n);
	n = mk(buf, FRAME_OPEN, 0, 18, 1, body, 18);
	assert_malformed(buf, n);
	n = mk(buf, FRAME_OPEN, 0, 20, 1, body, 20);
	assert_malformed(buf, n);

	/* Names: empty, length byte disagreeing with the body, embedded NUL. */
	memset(body, 'a', sizeof(body));
	body[0] = FRAME_ADDR_NAME;
	body[1] = 0;
	body[2] = 80;
	body[3] = 0;
	n = mk(buf, FRAME_OPEN, 0, 5, 1, body, 5);
	assert_malformed(buf, n);
	body[3] = 2;
	n = mk(buf, FRAME_OPEN, 0, 5, 1, body, 5);
	assert_malformed(buf, n);
	body[3] = 1;
	n = mk(buf, FRAME_OPEN, 0, 6, 1, body, 6);
	assert_malformed(buf, n);
	n = mk(buf, FRAME_OPEN, 0, 5, 1, body, 5);
	assert_decodes(buf, n);
	body[3] = 9;
	body[4 + 4] = '\0';
	n = mk(buf, FRAME_OPEN, 0, 13, 1, body, 13);
	assert_malformed(buf, n);
	body[4 + 4] = 'a';
	assert_decodes(buf, mk(buf, FRAME_OPEN, 0, 13, 1, body, 13));
	body[4 + 8] = '\0'; /* last byte of the name */
	n = mk(buf, FRAME_OPEN, 0, 13, 1, body, 13);
	assert_malformed(buf, n);
	body[4] = '\0'; /* first byte */
	body[4 + 8] = 'a';
	n = mk(buf, FRAME_OPEN, 0, 13, 1, body, 13);
	assert_malformed(buf, n);

	/* The longest name decodes, NUL-terminated: 253 bytes and a trailing dot. */
	{
		struct frame f;
		size_t used;

		memset(body, 'z', sizeof(body));
		body[0] = FRAME_ADDR_NAME;
		for (int i = 63; i < 253; i += 64)
			body[4 + i] = '.'; /* labels of 63 */
		body[4 + 253] = '.';
		body[3] = 254;
		n = mk(buf, FRAME_OPEN, 0, 3 + 1 + 254, 1, body, 3 + 1 + 254);
		assert_int_equal(frame_decode(buf, n, &f, &used), WM_OK);
		assert_int_equal(f.u.open.name_len, 254);
		assert_int_equal(strlen(f.u.open.u.name), 254);
		/* 255 bytes are too long for a name, whatever the frame allows. */
		body[4 + 254] = 'z';
		body[3] = FRAME_NAME_MAX;
		n = mk(buf, FRAME_OPEN, 0, 3 + 1 + FRAME_NAME_MAX, 1, body, 3 + 1 + FRAME_NAME_MAX);
		assert_malformed(buf, n);
	}
}

static void test_frame_encode_refuses_invalid(void **state)
{
	uint8_t buf[512];
	struct frame f;

	/* DATA must use frame_encode_data_header. */
	memset(&f, 0, sizeof(f));
	f.type = FRAME_DATA;
	f.stream_id = 1;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	/* Unknown types. */
	f.type = 0;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.type = 10;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	/* Stream id rules. */
	memset(&f, 0, sizeof(f));
	f.type = FRAME_PING;
	f.stream_id = 1;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.type = FRAME_RESET;
	f.stream_id = 0;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.type = FRAME_RESUME;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.type = FRAME_OPEN_RESULT;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	/* Flags on a non-DATA frame. */
	f.type = FRAME_WINDOW;
	f.flags = FRAME_FLAG_FIN;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.flags = 0;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), 16);

	/* OPEN: stream 0, bad atype, empty name, NUL in name. */
	memset(&f, 0, sizeof(f));
	f.type = FRAME_OPEN;
	f.stream_id = 0;
	f.u.open.type = FRAME_ADDR_IPV4;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.stream_id = 3;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), 15);
	f.u.open.type = 2;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.u.open.type = FRAME_ADDR_NAME;
	f.u.open.name_len = 0;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	memcpy(f.u.open.u.name, "a\0b", 4);
	f.u.open.name_len = 3;
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), WM_ERR_RANGE);
	f.u.open.u.name[1] = '.';
	assert_int_equal(frame_encode(&f, buf, sizeof(buf)), 8 + 3 + 1 + 3);
}

/* Names in OPEN and LISTEN follow the one grammar, both ways. */
static void test_frame_open_name_grammar(void **state)
{
	static const struct {
		const char *name;
		bool ok;
	} v[] = {
	    {"example.com", true},
	    {"example.com.", true},
	    {"_srv.under_score-1.example", true},
	    {"1.2.3.4", true},
	    {"x", true},
	    {"a23456789012345678901234567890123456789012345678901234567890123.com", true},
	    {"a234567890123456789012345678901234567890123456789012345678901234.com", false},
	    {"evil\n2026-01-01T00:00:00Z wanmux-server info: forged", false},
	    {"evil\x1b[31m.example", false},
	    {"caf\xc3\xa9.example", false},
	    {"tab\there", false},
	    {"del\x7f", false},
	    {"a b", false},
	    {"a..b", false},
	    {".a", false},
	    {".", false},
	    {"a.b..", false},
	    {"back\\slash", false},
	    {"a:b", false},
	    {"a/b", false},
	};
	uint8_t buf[FRAME_HEADER_LEN + 3 + 1 + FRAME_NAME_MAX];
	uint8_t body[3 + 1 + FRAME_NAME_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len = strlen(v[i].name);
		uint8_t types[] = {FRAME_OPEN, FRAME_LISTEN};

		for (size_t k = 0; k < 2; k++) {
			struct frame f, g;
			size_t used;
			int n;

			body[0] = FRAME_ADDR_NAME;
			body[1] = 0;
			body[2] = 80;
			body[3] = (uint8_t)len;
			memcpy(body + 4, v[i].name, len);
			n = mk(buf, types[k], 0, (uint16_t)(4 + len), 1, body, 4 + len);
			int rc = frame_decode(buf, (size_t)n, &g, &used);
			if (rc != (v[i].ok ? WM_OK : WM_ERR_MALFORMED))
				fail_msg("decode %s '%s': rc %d", frame_type_name(types[k]),
					 v[i].name, rc);

			memset(&f, 0, sizeof(f));
			f.type = types[k];
			f.stream_id = 1;
			f.u.open.type = FRAME_ADDR_NAME;
			f.u.open.port = 80;
			f.u.open.name_len = (uint8_t)len;
			memcpy(f.u.open.u.name, v[i].name, len + 1);
			rc = frame_encode(&f, buf, sizeof(buf));
			if (v[i].ok ? rc != (int)(FRAME_HEADER_LEN + 4 + len) : rc != WM_ERR_RANGE)
				fail_msg("encode %s '%s': rc %d", frame_type_name(types[k]),
					 v[i].name, rc);
		}
	}
}

static void test_frame_encode_data_header_rules(void **state)
{
	uint8_t buf[32];

	assert_int_equal(frame_data_header_len(0), 16);
	assert_int_equal(frame_data_header_len(FRAME_FLAG_FIN), 16);
	assert_int_equal(frame_data_header_len(FRAME_FLAG_LZ4), 20);
	assert_int_equal(frame_data_header_len(FRAME_FLAG_ZLIB | FRAME_FLAG_FIN), 20);

	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, 0, 0, 0, 0), 16);
	assert_int_equal(
	    frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_FIN, 0, 0, FRAME_DATA_RAW_MAX),
	    16);
	assert_int_equal(
	    frame_encode_data_header(buf, sizeof(buf), 1, 0, 0, 0, FRAME_DATA_RAW_MAX + 1),
	    WM_ERR_RANGE);
	/* stream 0 */
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 0, 0, 0, 0, 1), WM_ERR_RANGE);
	/* bad flags */
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1,
						  FRAME_FLAG_LZ4 | FRAME_FLAG_ZLIB, 0, 10, 5),
			 WM_ERR_RANGE);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, 0x08, 0, 0, 5),
			 WM_ERR_RANGE);
	/* compressed: raw_len 1..ZRAW_MAX, payload >= 1 */
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_LZ4, 0, 0, 5),
			 WM_ERR_RANGE);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_LZ4, 0,
						  FRAME_DATA_ZRAW_MAX + 1, 5),
			 WM_ERR_RANGE);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_LZ4, 0,
						  FRAME_DATA_ZRAW_MAX, 5),
			 20);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_ZLIB, 0, 10, 0),
			 WM_ERR_RANGE);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_ZLIB, 0,
						  FRAME_DATA_RAW_MAX, 1),
			 20);
	/* body length must fit u16 */
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_ZLIB, 0, 100,
						  FRAME_BODY_MAX - 12),
			 20);
	assert_int_equal(frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_ZLIB, 0, 100,
						  FRAME_BODY_MAX - 11),
			 WM_ERR_RANGE);
	assert_int_equal(
	    frame_encode_data_header(buf, sizeof(buf), 1, FRAME_FLAG_ZLIB, 0, 100, (size_t)-1),
	    WM_ERR_RANGE);
}

static void test_frame_names(void **state)
{
	assert_string_equal(frame_type_name(FRAME_OPEN), "OPEN");
	assert_string_equal(frame_type_name(FRAME_OPEN_RESULT), "OPEN_RESULT");
	assert_string_equal(frame_type_name(FRAME_DATA), "DATA");
	assert_string_equal(frame_type_name(FRAME_RESUME), "RESUME");
	assert_string_equal(frame_type_name(FRAME_REKEY), "REKEY");
	assert_string_equal(frame_type_name(0), "UNKNOWN");
	assert_string_equal(frame_type_name(200), "UNKNOWN");
	for (uint32_t e = 0; e <= FRAME_ERR_TUNNEL_LOST; e++)
		assert_string_not_equal(frame_error_name(e), "unknown error");
	assert_string_equal(frame_error_name(FRAME_ERR_REFUSED), "refused");
	assert_string_equal(frame_error_name(FRAME_ERR_NOT_ALLOWED), "not allowed");
	assert_string_equal(frame_error_name(12345), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_decode_vectors),
	    cmocka_unit_test(test_frame_encode_vectors),
	    cmocka_unit_test(test_frame_encode_exact_cap),
	    cmocka_unit_test(test_frame_encode_small_cap_is_range),
	    cmocka_unit_test(test_frame_truncation_is_again),
	    cmocka_unit_test(test_frame_round_trip_random),
	    cmocka_unit_test(test_frame_round_trip_data),
	    cmocka_unit_test(test_frame_back_to_back),
	    cmocka_unit_test(test_frame_malformed_unknown_type),
	    cmocka_unit_test(test_frame_malformed_body_length),
	    cmocka_unit_test(test_frame_accepts_data_raw_max),
	    cmocka_unit_test(test_frame_malformed_raw_len),
	    cmocka_unit_test(test_frame_malformed_flags),
	    cmocka_unit_test(test_frame_malformed_stream_id),
	    cmocka_unit_test(test_frame_malformed_rekey),
	    cmocka_unit_test(test_frame_malformed_address),
	    cmocka_unit_test(test_frame_encode_refuses_invalid),
	    cmocka_unit_test(test_frame_encode_data_header_rules),
	    cmocka_unit_test(test_frame_names),
	    cmocka_unit_test(test_frame_open_name_grammar),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
