/*
 * Credentials file tests: parsing (comments, blank lines, CRLF, ':' in
 * passwords), every rejected line with its FILE:LINE message, the permission
 * check, and lookups, all in a private mkdtemp directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "wanmux/userpass.h"

static char tmpdir[64];
static char path[128];

/* Writes len bytes of text to the test file with the given mode. */
static void write_file(const char *text, size_t len, mode_t mode)
{
	FILE *f;

	snprintf(path, sizeof path, "%s/creds", tmpdir);
	unlink(path);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_userpass.XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

static void test_userpass_load_and_check(void **state)
{
	static const char text[] = "# wanmux proxy users\n"
				   "\n"
				   "   \n"
				   "alice:s3cret\n"
				   "bob:pa:ss:word\r\n"
				   "carol:with space \n"
				   "dave:#not-a-comment";
	struct userpass *db = NULL;
	char err[256] = "";

	write_file(text, sizeof text - 1, 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	assert_int_equal(userpass_count(db), 4);
	assert_true(userpass_check(db, "alice", "s3cret"));
	assert_true(userpass_check(db, "bob", "pa:ss:word"));
	assert_true(userpass_check(db, "carol", "with space "));
	assert_true(userpass_check(db, "dave", "#not-a-comment"));

	assert_false(userpass_check(db, "alice", "s3cre"));
	assert_false(userpass_check(db, "alice", "s3cret "));
	assert_false(userpass_check(db, "alice", "pa:ss:word"));
	assert_false(userpass_check(db, "Alice", "s3cret"));
	assert_false(userpass_check(db, "bob", "pa:ss:word\r"));
	assert_false(userpass_check(db, "carol", "with space"));
	assert_false(userpass_check(db, "mallory", "s3cret"));
	assert_false(userpass_check(db, "", ""));
	assert_false(userpass_check(db, "s3cret", "alice"));
	userpass_free(db);
}

static void test_userpass_check_null_db(void **state)
{
	assert_false(userpass_check(NULL, "alice", "s3cret"));
	assert_int_equal(userpass_count(NULL), 0);
	userpass_free(NULL);
}

static void test_userpass_long_fields(void **state)
{
	char text[600], user[256], pass[256];
	struct userpass *db = NULL;
	char err[256];

	memset(user, 'u', 255);
	user[255] = '\0';
	memset(pass, 'p', 255);
	pass[255] = '\0';
	snprintf(text, sizeof text, "%s:%s\n", user, pass);
	write_file(text, strlen(text), 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	assert_true(userpass_check(db, user, pass));
	userpass_free(db);

	snprintf(text, sizeof text, "%s:%sp\n", user, pass);
	write_file(text, strlen(text), 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), WM_ERR_PARSE);
	assert_null(db);
	assert_non_null(strstr(err, ":1: password must be 1 to 255 bytes"));
}

static void test_userpass_bad_lines(void **state)
{
	static const struct {
		const char *text;
		size_t len;
		const char *msg; /* after the path */
	} bad[] = {
#define T(s) s, sizeof s - 1
	    {T("alice:ok\nnocolon\n"), ":2: expected user:password"},
	    {T(":password\n"), ":1: user must be"},
	    {T("alice:\n"), ":1: password must be"},
	    {T("al\tice:pw\n"), ":1: user must be"},
	    {T("alice:p\x01w\n"), ":1: password must be"},
	    {T("alice:p\rw\n"), ":1: password must be"},
	    {T("alice:pw\nbob:x\nalice:other\n"), ":3: duplicate user \"alice\""},
	    {T("alice:p\0w\n"), ":1: NUL byte"},
	    {T(""), ": no user:password line"},
	    {T("# only comments\n\n"), ": no user:password line"},
#undef T
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct userpass *db = (struct userpass *)&db;
		char err[512] = "", want[512];

		write_file(bad[i].text, bad[i].len, 0600);
		assert_int_equal(userpass_load(path, &db, err, sizeof err), WM_ERR_PARSE);
		assert_null(db);
		snprintf(want, sizeof want, "%s%s", path, bad[i].msg);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("#%zu: \"%s\", want \"%s...\"", i, err, want);
	}
}

static void test_userpass_permissions(void **state)
{
	static const char text[] = "alice:s3cret\n";
	struct userpass *db = NULL;
	char err[512] = "", want[512];

	write_file(text, sizeof text - 1, 0640);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), WM_ERR_PERM);
	assert_null(db);
	snprintf(want, sizeof want, "%s: readable by group or others (mode 0640); run chmod 600 %s",
		 path, path);
	assert_string_equal(err, want);

	write_file(text, sizeof text - 1, 0602);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), WM_ERR_PERM);
	assert_non_null(strstr(err, "writable by group or others (mode 0602)"));

	write_file(text, sizeof text - 1, 0400);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	userpass_free(db);
}

static void test_userpass_unreadable(void **state)
{
	struct userpass *db = NULL;
	char err[256] = "", missing[160];

	snprintf(missing, sizeof missing, "%s/missing", tmpdir);
	assert_int_equal(userpass_load(missing, &db, err, sizeof err), WM_ERR_IO);
	assert_null(db);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(userpass_load(tmpdir, &db, err, sizeof err), WM_ERR_IO);
	assert_non_null(strstr(err, "not a regular file"));
}

/* A hash string for password, at libsodium's lowest cost so the test is quick
 * (the file may hold any cost; keygen uses the interactive limits). */
static void make_hash(const char *password, char out[crypto_pwhash_STRBYTES])
{
	assert_int_equal(crypto_pwhash_str(out, password, strlen(password),
					   crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN),
			 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_userpass_hashed_entries(void **state)
{
	char h1[crypto_pwhash_STRBYTES], h2[crypto_pwhash_STRBYTES], text[512];
	struct userpass *db = NULL;
	char err[256] = "";

	make_hash("s3cret", h1);
	make_hash("pa:ss word", h2);
	snprintf(text, sizeof text, "alice:%s\nbob:%s\ncarol:plain\n", h1, h2);
	write_file(text, strlen(text), 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	assert_int_equal(userpass_count(db), 3);
	assert_int_equal(userpass_plain_count(db), 1);
	assert_true(userpass_check(db, "alice", "s3cret"));
	assert_true(userpass_check(db, "bob", "pa:ss word"));
	assert_true(userpass_check(db, "carol", "plain"));
	assert_false(userpass_check_is_slow(db, "carol", "plain"));
	/* A wrong password for a plain user costs the decoy, as an unknown user does. */
	assert_true(userpass_check_is_slow(db, "carol", "wrong"));
	assert_false(userpass_check(db, "alice", "s3cre"));
	assert_false(userpass_check(db, "alice", "pa:ss word"));
	assert_false(userpass_check(db, "bob", "s3cret"));
	/* The hash string itself is not the password. */
	assert_false(userpass_check(db, "alice", h1));
	assert_false(userpass_check(db, "mallory", "s3cret"));
	assert_false(userpass_check(db, "carol", "s3cret"));
	/* A wrong password after a right one does not ride on what was remembered. */
	assert_true(userpass_check(db, "alice", "s3cret"));
	assert_false(userpass_check(db, "alice", "s3cretX"));
	assert_true(userpass_check(db, "alice", "s3cret"));
	userpass_free(db);
}

/*
 * A client that logs in over and over with the right password pays for
 * Argon2id once; wrong passwords and unknown users pay every time (the
 * decoy), so their cost is bounded only by the callers' throttle.
 */
static void test_userpass_hashed_verified_once(void **state)
{
	char h1[crypto_pwhash_STRBYTES], text[256];
	struct userpass *db = NULL;
	char err[256] = "";
	double t0, fast, slow;

	make_hash("s3cret", h1);
	snprintf(text, sizeof text, "alice:%s\n", h1);
	write_file(text, strlen(text), 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	assert_int_equal(userpass_verifications(db), 0);
	assert_true(userpass_check_is_slow(db, "alice", "s3cret"));
	t0 = now_s();
	assert_true(userpass_check(db, "alice", "s3cret"));
	slow = now_s() - t0;
	assert_int_equal(userpass_verifications(db), 1);
	t0 = now_s();
	for (int i = 0; i < 1000; i++)
		assert_true(userpass_check(db, "alice", "s3cret"));
	fast = (now_s() - t0) / 1000;
	assert_int_equal(userpass_verifications(db), 1);
	print_message("first login %.3f ms (Argon2id, lowest cost), then %.4f ms per login\n",
		      slow * 1e3, fast * 1e3);
	/* What is slow is known before doing it. */
	assert_false(userpass_check_is_slow(db, "alice", "s3cret"));
	assert_true(userpass_check_is_slow(db, "alice", "wrong"));
	assert_true(userpass_check_is_slow(db, "nobody", "s3cret"));
	assert_false(userpass_check_is_slow(NULL, "alice", "s3cret"));
	assert_false(userpass_check(db, "alice", "wrong"));
	assert_int_equal(userpass_verifications(db), 2);
	assert_false(userpass_check(db, "nobody", "s3cret"));
	assert_int_equal(userpass_verifications(db), 3);
	userpass_free(db);
}

/*
 * userpass_check_is_slow is what the client rations Argon2id by, and what
 * tells a refused login apart (429 when the budget is spent, 407 otherwise):
 * it must say "slow" exactly when userpass_check runs a verification. A
 * plain user's wrong password runs the decoy like an unknown user; were it
 * called fast, it would bypass the budget, and answer 407 where an unknown
 * name gets 429, telling a LAN user which plain user names exist.
 */
static void test_userpass_slow_matches_work(void **state)
{
	static const char *const tries[][2] = {
	    {"alice", "s3cret"}, {"alice", "wrong"},  {"carol", "plain"},  {"carol", "wrong"},
	    {"carol", "s3cret"}, {"nobody", "plain"}, {"alice", "s3cret"}, {"alice", "plain"},
	};
	char h1[crypto_pwhash_STRBYTES], text[256];
	struct userpass *db = NULL;
	char err[256] = "";

	make_hash("s3cret", h1);
	snprintf(text, sizeof text, "alice:%s\ncarol:plain\n", h1);
	write_file(text, strlen(text), 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
		bool slow = userpass_check_is_slow(db, tries[i][0], tries[i][1]);
		uint64_t before = userpass_verifications(db);

		userpass_check(db, tries[i][0], tries[i][1]);
		if ((userpass_verifications(db) > before) != slow)
			fail_msg("%s:%s: is_slow said %s, check ran %llu verifications",
				 tries[i][0], tries[i][1], slow ? "slow" : "fast",
				 (unsigned long long)(userpass_verifications(db) - before));
	}
	userpass_free(db);
}

static void test_userpass_bad_hashes(void **state)
{
	static const char *const bad[] = {
	    "alice:$argon2id$v=19$m=65536,t=2,p=1$short\n",
	    "alice:$argon2id$garbage\n",
	    "alice:$argon2i$v=19$m=4096,t=3,p=1$$\n",
	};
	struct userpass *db = NULL;
	char err[512] = "";

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		write_file(bad[i], strlen(bad[i]), 0600);
		assert_int_equal(userpass_load(path, &db, err, sizeof err), WM_ERR_PARSE);
		assert_null(db);
		if (strstr(err, ":1: malformed password hash") == NULL)
			fail_msg("#%zu: \"%s\"", i, err);
	}
	/* Passwords that only look a bit like hashes stay passwords. */
	write_file("alice:$argon2\nbob:argon2id$x\n", 29, 0600);
	assert_int_equal(userpass_load(path, &db, err, sizeof err), 0);
	assert_int_equal(userpass_plain_count(db), 2);
	assert_true(userpass_check(db, "alice", "$argon2"));
	userpass_free(db);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_userpass_load_and_check),
	    cmocka_unit_test(test_userpass_check_null_db),
	    cmocka_unit_test(test_userpass_long_fields),
	    cmocka_unit_test(test_userpass_bad_lines),
	    cmocka_unit_test(test_userpass_permissions),
	    cmocka_unit_test(test_userpass_unreadable),
	    cmocka_unit_test(test_userpass_hashed_entries),
	    cmocka_unit_test(test_userpass_hashed_verified_once),
	    cmocka_unit_test(test_userpass_slow_matches_work),
	    cmocka_unit_test(test_userpass_bad_hashes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
