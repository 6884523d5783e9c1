/*
 * Tests for access: logfmt quoting of values (table), the access line of a
 * fixed record, and the result for each stream error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "wanmux/access.h"
#include "wanmux/frame.h"

static void test_access_logfmt_quoting(void **state)
{
	static const struct {
		const char *in, *want;
	} vectors[] = {
	    {"127.0.0.1:80", "127.0.0.1:80"},
	    {"[::1]:22", "[::1]:22"},
	    {"", "\"\""},
	    {"two words", "\"two words\""},
	    {"a=b", "\"a=b\""},
	    {"say \"x\"", "\"say \\\"x\\\"\""},
	    {"back\\slash", "\"back\\\\slash\""},
	    {"nl\nend", "\"nl\\nend\""},
	    {"\x01", "\"\\u0001\""},
	    {"caf\xc3\xa9", "caf\xc3\xa9"},
	    {"bad\xffname", "\"bad\\ufffdname\""},
	    {"cut\xe2\x82", "\"cut\\ufffd\\ufffd\""},
	};
	char out[64];
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		access_logfmt_value(vectors[i].in, out, sizeof(out));
		assert_string_equal(out, vectors[i].want);
	}
}

static void test_access_logfmt_truncates_inside_quotes(void **state)
{
	char out[8];
	access_logfmt_value("a b c d e f g", out, sizeof(out));
	/* Cut short, but still one quoted value. */
	assert_string_equal(out, "\"a b c\"");
}

static void test_access_line(void **state)
{
	struct access_record rec;
	char line[ACCESS_LINE_MAX];
	memset(&rec, 0, sizeof(rec));
	rec.frontend = ACCESS_SOCKS;
	rec.result = ACCESS_OK;
	access_short_key("D91B0GeHxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=", rec.client,
			 sizeof(rec.client));
	snprintf(rec.src, sizeof(rec.src), "127.0.0.1:5000");
	snprintf(rec.target, sizeof(rec.target), "db.internal:5432");
	rec.up = 1234;
	rec.down = 99;
	rec.wire_up = 600.4;
	rec.wire_down = 99.6;
	access_format(&rec, 42, line, sizeof(line));
	assert_string_equal(line, "client=D91B0GeH src=127.0.0.1:5000 frontend=socks "
				  "target=db.internal:5432 addr=- up=1234 down=99 wire_up=600 "
				  "wire_down=100 ms=42 result=ok");
}

static void test_access_result_for_error(void **state)
{
	assert_int_equal(access_result_for_error(FRAME_ERR_NONE), ACCESS_OK);
	assert_int_equal(access_result_for_error(FRAME_ERR_NOT_ALLOWED), ACCESS_REFUSED);
	assert_int_equal(access_result_for_error(FRAME_ERR_REFUSED), ACCESS_REFUSED);
	assert_int_equal(access_result_for_error(FRAME_ERR_CONNECT_FAILED), ACCESS_UNREACHABLE);
	assert_int_equal(access_result_for_error(FRAME_ERR_HOST_UNKNOWN), ACCESS_UNREACHABLE);
	assert_int_equal(access_result_for_error(FRAME_ERR_TIMEOUT), ACCESS_TIMEOUT);
	assert_int_equal(access_result_for_error(FRAME_ERR_STREAM_LIMIT), ACCESS_LIMIT);
	assert_int_equal(access_result_for_error(FRAME_ERR_TUNNEL_LOST), ACCESS_TUNNEL_LOST);
	assert_int_equal(access_result_for_error(FRAME_ERR_CANCEL), ACCESS_RESET);
	assert_string_equal(access_result_name(ACCESS_TUNNEL_LOST), "tunnel_lost");
	assert_string_equal(access_frontend_name(ACCESS_TRANSPARENT), "transparent");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_access_logfmt_quoting),
	    cmocka_unit_test(test_access_logfmt_truncates_inside_quotes),
	    cmocka_unit_test(test_access_line),
	    cmocka_unit_test(test_access_result_for_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
