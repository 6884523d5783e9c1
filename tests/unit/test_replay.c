/*
 * Tests for the replay table and its state file: the codec (round trip,
 * every kind of damaged image refused), the newer-than rule per key and
 * slot, the clock-window floor, and that the file survives a "restart"
 * (a second table opened on the same directory), written atomically 0600.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "wanmux/err.h"
#include "wanmux/replay.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_replay.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void ts_of(uint64_t sec, uint32_t nsec, uint8_t ts[REPLAY_TS_LEN])
{
	replay_tai64n(sec, nsec, ts);
}

static void key_of(uint8_t n, uint8_t key[REPLAY_KEY_LEN])
{
	memset(key, n, REPLAY_KEY_LEN);
}

static void test_replay_newer_than_last_per_key_and_slot(void **state)
{
	struct replay *r = replay_new();
	uint8_t a[REPLAY_KEY_LEN], b[REPLAY_KEY_LEN], t1[12], t2[12], t0[12];

	(void)state;
	key_of(1, a);
	key_of(2, b);
	ts_of(1700000000, 5, t1);
	ts_of(1700000000, 6, t2);
	ts_of(1699999999, 999999999, t0);
	assert_int_equal(replay_check(r, a, 0, t1, NULL, 0), WM_OK);
	assert_int_equal(replay_check(r, a, 0, t1, NULL, 0), WM_ERR_REPLAY); /* the copy */
	assert_int_equal(replay_check(r, a, 0, t0, NULL, 0), WM_ERR_REPLAY); /* older */
	assert_int_equal(replay_check(r, a, 1, t1, NULL, 0), WM_OK);	     /* other slot */
	assert_int_equal(replay_check(r, a, 255, t0, NULL, 0), WM_OK);
	assert_int_equal(replay_check(r, b, 0, t1, NULL, 0), WM_OK); /* other key */
	assert_int_equal(replay_check(r, a, 0, t2, NULL, 0), WM_OK); /* newer */
	assert_int_equal(replay_count(r), 4);
	replay_free(r);
}

static void test_replay_codec_round_trip(void **state)
{
	struct replay *r = replay_new(), *back = replay_new();
	uint8_t key[REPLAY_KEY_LEN], ts[12];
	uint8_t *img, *img2;
	size_t len;

	(void)state;
	/* keys inserted out of order: the image is sorted regardless */
	for (int k = 40; k > 0; k -= 3) {
		key_of((uint8_t)k, key);
		for (int s = 0; s < 256; s += 37) {
			ts_of(1700000000u + (uint64_t)k, (uint32_t)s, ts);
			assert_int_equal(replay_check(r, key, (uint8_t)s, ts, NULL, 0), WM_OK);
		}
	}
	len = replay_encoded_len(r);
	assert_int_equal(len, REPLAY_HEADER_LEN + replay_count(r) * REPLAY_ENTRY_LEN + 32);
	img = malloc(len);
	img2 = malloc(len);
	assert_int_equal(replay_encode(r, img, len - 1), WM_ERR_RANGE);
	assert_int_equal(replay_encode(r, img, len), (int)len);
	assert_memory_equal(img, "WMRS\x01\0\0\0", 8);
	assert_int_equal(replay_decode(back, img, len), WM_OK);
	assert_int_equal(replay_count(back), replay_count(r));
	assert_int_equal(replay_encode(back, img2, len), (int)len);
	assert_memory_equal(img, img2, len);
	/* what was accepted before is refused by the decoded table */
	key_of(40, key);
	ts_of(1700000040u, 37, ts);
	assert_int_equal(replay_check(back, key, 37, ts, NULL, 0), WM_ERR_REPLAY);
	ts_of(1700000040u, 38, ts);
	assert_int_equal(replay_check(back, key, 37, ts, NULL, 0), WM_OK);

	/* an empty table is a header and a checksum */
	struct replay *empty = replay_new();
	assert_int_equal(replay_encode(empty, img2, len), REPLAY_HEADER_LEN + 32);
	assert_int_equal(replay_decode(back, img2, REPLAY_HEADER_LEN + 32), WM_OK);
	assert_int_equal(replay_count(back), 0);
	replay_free(empty);
	free(img);
	free(img2);
	replay_free(r);
	replay_free(back);
}

/* Re-seals img after an edit so only the edited rule can refuse it. */
static void reseal(uint8_t *img, size_t len)
{
	crypto_generichash(img + len - 32, 32, img, len - 32, NULL, 0);
}

static void test_replay_decode_refuses_damage(void **state)
{
	struct replay *r = replay_new(), *back = replay_new();
	uint8_t key[REPLAY_KEY_LEN], ts[12], img[512], bad[512];
	size_t len;

	(void)state;
	for (uint8_t k = 1; k <= 3; k++) {
		key_of(k, key);
		ts_of(1700000000, k, ts);
		assert_int_equal(replay_check(r, key, k, ts, NULL, 0), WM_OK);
	}
	len = (size_t)replay_encode(r, img, sizeof img);
	assert_int_equal(replay_decode(back, img, len), WM_OK);
	assert_int_equal(replay_count(back), 3);

	/* every single flipped byte: checksum (or a header rule) refuses it */
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, img, len);
		bad[i] ^= 0x40;
		assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	}
	/* truncated anywhere, or one byte extra */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(replay_decode(back, img, n), WM_ERR_MALFORMED);
	memcpy(bad, img, len);
	bad[len] = 0;
	assert_int_equal(replay_decode(back, bad, len + 1), WM_ERR_MALFORMED);
	assert_int_equal(replay_decode(back, NULL, 0), WM_ERR_MALFORMED);

	/* well sealed but against the rules: version, reserved, count, order, zero ts */
	static const size_t first = REPLAY_HEADER_LEN,
			    second = REPLAY_HEADER_LEN + REPLAY_ENTRY_LEN;
	memcpy(bad, img, len);
	bad[4] = 2;
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	memcpy(bad, img, len);
	bad[6] = 1;
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	memcpy(bad, img, len);
	bad[11] = 4;
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	memcpy(bad, img, len); /* second entry = first: a duplicate */
	memcpy(bad + second, bad + first, REPLAY_ENTRY_LEN);
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	memcpy(bad, img, len); /* swapped: out of order */
	memcpy(bad + second, img + first, REPLAY_ENTRY_LEN);
	memcpy(bad + first, img + second, REPLAY_ENTRY_LEN);
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	memcpy(bad, img, len);
	memset(bad + first + REPLAY_KEY_LEN + 1, 0, REPLAY_TS_LEN);
	reseal(bad, len);
	assert_int_equal(replay_decode(back, bad, len), WM_ERR_MALFORMED);
	/* a refused image leaves the table as it was */
	assert_int_equal(replay_count(back), 3);
	replay_free(r);
	replay_free(back);
}

static void test_replay_floor_refuses_old_first_messages(void **state)
{
	struct replay *r = replay_new();
	uint8_t key[REPLAY_KEY_LEN], floor[12], old[12], newer[12], older[12];

	(void)state;
	key_of(7, key);
	ts_of(1700000000, 0, floor);
	ts_of(1699999000, 0, old);
	ts_of(1700000001, 0, newer);
	ts_of(1700000000, 500, older); /* newer than the floor, older than newer */
	replay_set_floor(r, floor);
	assert_int_equal(replay_check(r, key, 0, old, NULL, 0), WM_ERR_RANGE);
	assert_int_equal(replay_check(r, key, 0, floor, NULL, 0), WM_ERR_RANGE);
	assert_int_equal(replay_check(r, key, 0, newer, NULL, 0), WM_OK);
	assert_int_equal(replay_check(r, key, 0, older, NULL, 0), WM_ERR_REPLAY);
	assert_int_equal(replay_check(r, key, 1, old, NULL, 0), WM_ERR_RANGE); /* per slot */
	assert_int_equal(replay_count(r), 1);
	replay_free(r);
}

static void test_replay_state_file_survives_restart(void **state)
{
	struct replay *r = replay_new(), *again;
	uint8_t key[REPLAY_KEY_LEN], t1[12], t2[12];
	char path[128], tmp[140], err[256];
	struct stat st;

	(void)state;
	snprintf(path, sizeof path, "%s/" REPLAY_FILE_NAME, tmpdir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	key_of(9, key);
	ts_of(1700000000, 1, t1);
	ts_of(1700000000, 2, t2);
	assert_int_equal(replay_open(r, tmpdir, err, sizeof err), WM_OK);
	assert_int_equal(stat(path, &st), 0); /* written at once, even empty */
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(replay_check(r, key, 3, t1, err, sizeof err), WM_OK);
	assert_int_equal(access(tmp, F_OK), -1); /* renamed, nothing left behind */
	replay_free(r);

	again = replay_new();
	assert_int_equal(replay_open(again, tmpdir, err, sizeof err), WM_OK);
	assert_int_equal(replay_count(again), 1);
	assert_int_equal(replay_check(again, key, 3, t1, NULL, 0), WM_ERR_REPLAY);
	assert_int_equal(replay_check(again, key, 3, t2, NULL, 0), WM_OK);
	replay_free(again);

	/* the state file written on open is the loaded one, not an empty one */
	again = replay_new();
	assert_int_equal(replay_open(again, tmpdir, err, sizeof err), WM_OK);
	assert_int_equal(replay_check(again, key, 3, t2, NULL, 0), WM_ERR_REPLAY);

	/* a write that fails refuses the timestamp and records nothing */
	char cmd[160];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	assert_int_equal(system(cmd), 0);
	ts_of(1700000000, 3, t1);
	err[0] = '\0';
	assert_int_equal(replay_check(again, key, 3, t1, err, sizeof err), WM_ERR_IO);
	assert_non_null(strstr(err, REPLAY_FILE_NAME));
	assert_int_equal(replay_count(again), 1);
	assert_int_equal(mkdir(tmpdir, 0700), 0);
	assert_int_equal(replay_check(again, key, 3, t1, err, sizeof err), WM_OK);
	replay_free(again);
}

static void test_replay_open_refuses_damaged_or_unsafe_file(void **state)
{
	struct replay *r = replay_new();
	char path[128], err[512];
	FILE *f;

	(void)state;
	snprintf(path, sizeof path, "%s/" REPLAY_FILE_NAME, tmpdir);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("WMRS garbage", f);
	fclose(f);
	chmod(path, 0600);
	assert_int_equal(replay_open(r, tmpdir, err, sizeof err), WM_ERR_MALFORMED);
	assert_non_null(strstr(err, "damaged state file"));
	assert_null(strchr(err, '\n'));
	chmod(path, 0644);
	assert_int_equal(replay_open(r, tmpdir, err, sizeof err), WM_ERR_PERM);
	unlink(path);
	assert_int_equal(replay_open(r, "/nonexistent/wanmux", err, sizeof err), WM_ERR_IO);
	assert_non_null(strstr(err, "/nonexistent/wanmux"));
	replay_free(r);
}

/* Not a pass/fail criterion: what one durable accept costs here. */
static void test_replay_persist_cost(void **state)
{
	struct replay *r = replay_new();
	uint8_t key[REPLAY_KEY_LEN], ts[12];
	struct timespec a, b;
	char err[256];
	const int n = 200;

	(void)state;
	assert_int_equal(replay_open(r, tmpdir, err, sizeof err), WM_OK);
	for (int k = 0; k < 100; k++) { /* 100 keys x 4 slots in the file */
		key_of((uint8_t)k, key);
		for (int s = 0; s < 4; s++) {
			ts_of(1700000000, 1, ts);
			assert_int_equal(replay_check(r, key, (uint8_t)s, ts, err, sizeof err),
					 WM_OK);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		ts_of(1700000001, (uint32_t)i, ts);
		assert_int_equal(replay_check(r, key, 0, ts, err, sizeof err), WM_OK);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double us =
	    ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / n;
	print_message("replay: %.0f us per accepted handshake with %zu entries in the file\n", us,
		      replay_count(r));
	replay_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_replay_newer_than_last_per_key_and_slot),
	    cmocka_unit_test(test_replay_codec_round_trip),
	    cmocka_unit_test(test_replay_decode_refuses_damage),
	    cmocka_unit_test(test_replay_floor_refuses_old_first_messages),
	    cmocka_unit_test(test_replay_state_file_survives_restart),
	    cmocka_unit_test(test_replay_open_refuses_damaged_or_unsafe_file),
	    cmocka_unit_test(test_replay_persist_cost),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
