/*
 * Tests for bytes.h: big-endian loads and stores against fixed vectors, at
 * odd (unaligned) offsets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "wanmux/bytes.h"

static void test_bytes_vectors(void **state)
{
	static const uint8_t be[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
	uint8_t buf[1 + 8];

	(void)state;
	memcpy(buf + 1, be, 8);
	assert_int_equal(bytes_load_be16(buf + 1), 0x0123);
	assert_int_equal(bytes_load_be32(buf + 1), 0x01234567u);
	assert_true(bytes_load_be64(buf + 1) == 0x0123456789abcdefull);

	memset(buf, 0, sizeof(buf));
	bytes_store_be64(buf + 1, 0x0123456789abcdefull);
	assert_memory_equal(buf + 1, be, 8);
	memset(buf, 0, sizeof(buf));
	bytes_store_be32(buf + 1, 0x01234567u);
	assert_memory_equal(buf + 1, be, 4);
	assert_int_equal(buf[5], 0);
	memset(buf, 0, sizeof(buf));
	bytes_store_be16(buf + 1, 0x0123);
	assert_memory_equal(buf + 1, be, 2);
	assert_int_equal(buf[3], 0);
	assert_int_equal(buf[0], 0);
}

static void test_bytes_extremes_round_trip(void **state)
{
	static const uint64_t v[] = {0,
				     1,
				     0xff,
				     0x100,
				     0xffff,
				     0x10000,
				     0xffffffffull,
				     0x100000000ull,
				     UINT64_MAX,
				     0x8000000000000000ull};
	uint8_t buf[8];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		bytes_store_be64(buf, v[i]);
		assert_true(bytes_load_be64(buf) == v[i]);
		bytes_store_be32(buf, (uint32_t)v[i]);
		assert_int_equal(bytes_load_be32(buf), (uint32_t)v[i]);
		bytes_store_be16(buf, (uint16_t)v[i]);
		assert_int_equal(bytes_load_be16(buf), (uint16_t)v[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bytes_vectors),
	    cmocka_unit_test(test_bytes_extremes_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
