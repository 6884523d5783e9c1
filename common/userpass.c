/*
 * Credentials files: reading with the same permission check as key files,
 * and constant-time lookups. The file's text is wiped as soon as each line is
 * hashed; only keyed hashes of users and plain passwords stay in memory, and
 * Argon2id strings ("$argon2id$...") for hashed ones, verified with
 * crypto_pwhash_str_verify.
 */
#include "wanmux/keys.h"
#include "wanmux/userpass.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "wanmux/err.h"

#define USERPASS_HASH_LEN 32
#define USERPASS_FIELD_MAX 255

struct userpass_entry {
	uint8_t user[USERPASS_HASH_LEN];
	/* Plain entries: the keyed hash of the password. Hashed entries: the
	 * keyed hash of the last password that passed verification, so a client
	 * that opens many connections pays for Argon2id once, not per
	 * connection (verified is then true). */
	uint8_t pass[USERPASS_HASH_LEN];
	bool hashed;
	bool verified;
	char pwhash[crypto_pwhash_STRBYTES]; /* hashed entries: NUL-terminated */
};

struct userpass {
	/* A random key per load: the hashes in memory say nothing outside this process. */
	uint8_t key[crypto_generichash_KEYBYTES];
	struct userpass_entry *entries;
	size_t count;
	size_t cap;
	size_t hashed;
	uint64_t verifications; /* Argon2id verifications run, decoys included */
	/* Verified when no hashed entry's user matched, so that an unknown user
	 * costs as much time as a known one with a wrong password. */
	char decoy[crypto_pwhash_STRBYTES];
};

/* Whether a password field holds an Argon2 hash string rather than a password. */
static bool is_pwhash(const char *s, size_t len)
{
	static const char id[] = crypto_pwhash_argon2id_STRPREFIX;
	static const char i[] = crypto_pwhash_argon2i_STRPREFIX;

	return (len > sizeof id - 1 && memcmp(s, id, sizeof id - 1) == 0) ||
	       (len > sizeof i - 1 && memcmp(s, i, sizeof i - 1) == 0);
}

/* A domain byte keeps a user's hash from ever equalling a password's. */
static void hash_field(const struct userpass *db, uint8_t domain, const char *s, size_t len,
		       uint8_t out[USERPASS_HASH_LEN])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, db->key, sizeof db->key, USERPASS_HASH_LEN);
	crypto_generichash_update(&st, &domain, 1);
	crypto_generichash_update(&st, (const unsigned char *)s, len);
	crypto_generichash_final(&st, out, USERPASS_HASH_LEN);
}

static bool field_ok(const char *s, size_t len)
{
	if (len == 0 || len > USERPASS_FIELD_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static int add_entry(struct userpass *db, const struct userpass_entry *e)
{
	if (db->count == db->cap) {
		size_t cap = db->cap == 0 ? 8 : db->cap * 2;
		struct userpass_entry *p = sodium_allocarray(cap, sizeof *p);

		if (p == NULL)
			return WM_ERR_NOMEM;
		if (db->count > 0)
			memcpy(p, db->entries, db->count * sizeof *p);
		sodium_free(db->entries);
		db->entries = p;
		db->cap = cap;
	}
	db->entries[db->count++] = *e;
	return 0;
}

/* Parses one line (newline already removed). 1 when it adds an entry, 0 when skipped. */
static int parse_line(struct userpass *db, char *line, size_t len, const char *path, size_t lineno,
		      char *err, size_t errlen)
{
	struct userpass_entry e;
	const char *colon;
	size_t ulen, i;
	int rc;

	if (len > 0 && line[len - 1] == '\r')
		len--;
	for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
		;
	if (i == len || line[0] == '#')
		return 0;
	colon = memchr(line, ':', len);
	if (colon == NULL) {
		wm_set_err(err, errlen, "%s:%zu: expected user:password", path, lineno);
		return WM_ERR_PARSE;
	}
	ulen = (size_t)(colon - line);
	if (!field_ok(line, ulen)) {
		wm_set_err(err, errlen,
			   "%s:%zu: user must be 1 to 255 bytes without control characters", path,
			   lineno);
		return WM_ERR_PARSE;
	}
	if (!field_ok(colon + 1, len - ulen - 1)) {
		wm_set_err(err, errlen,
			   "%s:%zu: password must be 1 to 255 bytes without control characters",
			   path, lineno);
		return WM_ERR_PARSE;
	}
	memset(&e, 0, sizeof e);
	hash_field(db, 'u', line, ulen, e.user);
	if (is_pwhash(colon + 1, len - ulen - 1)) {
		size_t hlen = len - ulen - 1;

		/* needs_rehash parses the string: -1 means it is not one libsodium
		 * can verify, better known now than at the first login. */
		if (hlen >= sizeof e.pwhash) {
			wm_set_err(err, errlen, "%s:%zu: password hash longer than %zu bytes", path,
				   lineno, sizeof e.pwhash - 1);
			return WM_ERR_PARSE;
		}
		memcpy(e.pwhash, colon + 1, hlen);
		if (crypto_pwhash_str_needs_rehash(e.pwhash, crypto_pwhash_OPSLIMIT_INTERACTIVE,
						   crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0) {
			wm_set_err(err, errlen,
				   "%s:%zu: malformed password hash (make one with wanmux-keygen "
				   "--hash-password)",
				   path, lineno);
			return WM_ERR_PARSE;
		}
		e.hashed = true;
	} else {
		hash_field(db, 'p', colon + 1, len - ulen - 1, e.pass);
	}
	for (i = 0; i < db->count; i++) {
		if (sodium_memcmp(db->entries[i].user, e.user, USERPASS_HASH_LEN) == 0) {
			wm_set_err(err, errlen, "%s:%zu: duplicate user \"%.*s\"", path, lineno,
				   (int)ulen, line);
			sodium_memzero(&e, sizeof e);
			return WM_ERR_PARSE;
		}
	}
	rc = add_entry(db, &e);
	sodium_memzero(&e, sizeof e);
	if (rc != 0) {
		wm_set_err(err, errlen, "%s:%zu: out of memory", path, lineno);
		return rc;
	}
	if (db->entries[db->count - 1].hashed)
		db->hashed++;
	return 1;
}

int userpass_load(const char *path, struct userpass **out, char *err, size_t errlen)
{
	struct userpass *db;
	char *line = NULL;
	size_t line_cap = 0, lineno = 0;
	ssize_t n;
	FILE *f;
	int rc = 0;

	*out = NULL;
	int fd = keys_open_file(path, true, NULL, err, errlen);
	if (fd < 0)
		return fd;
	f = fdopen(fd, "r");
	if (f == NULL) {
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return WM_ERR_IO;
	}
	db = calloc(1, sizeof *db);
	if (db == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", path);
		fclose(f);
		return WM_ERR_NOMEM;
	}
	randombytes_buf(db->key, sizeof db->key);
	while ((n = getline(&line, &line_cap, f)) >= 0) {
		size_t len = (size_t)n;

		lineno++;
		if (len > 0 && line[len - 1] == '\n')
			len--;
		if (memchr(line, '\0', len) != NULL) {
			wm_set_err(err, errlen, "%s:%zu: NUL byte", path, lineno);
			rc = WM_ERR_PARSE;
		} else {
			rc = parse_line(db, line, len, path, lineno, err, errlen);
		}
		sodium_memzero(line, line_cap);
		if (rc < 0)
			break;
		rc = 0;
	}
	if (rc == 0 && ferror(f)) {
		wm_set_err(err, errlen, "%s: read error", path);
		rc = WM_ERR_IO;
	}
	if (rc == 0 && db->count == 0) {
		wm_set_err(err, errlen, "%s: no user:password line", path);
		rc = WM_ERR_PARSE;
	}
	if (rc == 0 && db->hashed > 0) {
		uint8_t random[16];

		randombytes_buf(random, sizeof random);
		if (crypto_pwhash_str(db->decoy, (const char *)random, sizeof random,
				      crypto_pwhash_OPSLIMIT_INTERACTIVE,
				      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
			wm_set_err(err, errlen, "%s: out of memory for Argon2id", path);
			rc = WM_ERR_NOMEM;
		}
	}
	if (line != NULL)
		sodium_memzero(line, line_cap);
	free(line);
	fclose(f);
	if (rc != 0) {
		userpass_free(db);
		return rc;
	}
	*out = db;
	return 0;
}

bool userpass_check(struct userpass *db, const char *user, const char *pass)
{
	uint8_t user_hash[USERPASS_HASH_LEN], pass_hash[USERPASS_HASH_LEN];
	struct userpass_entry *hashed_match = NULL;
	size_t ulen, plen;
	int match = 0;

	if (db == NULL)
		return false;
	ulen = strlen(user);
	plen = strlen(pass);
	hash_field(db, 'u', user, ulen, user_hash);
	hash_field(db, 'p', pass, plen, pass_hash);
	/* No early exit: the time taken does not tell which user exists. */
	for (size_t i = 0; i < db->count; i++) {
		struct userpass_entry *e = &db->entries[i];
		int u = sodium_memcmp(e->user, user_hash, USERPASS_HASH_LEN) == 0;
		int p = sodium_memcmp(e->pass, pass_hash, USERPASS_HASH_LEN) == 0;

		if (!e->hashed)
			match |= u & p;
		else if (u)
			hashed_match = e;
	}
	if (hashed_match != NULL && hashed_match->verified &&
	    sodium_memcmp(hashed_match->pass, pass_hash, USERPASS_HASH_LEN) == 0) {
		match = 1;
	} else if (hashed_match != NULL) {
		db->verifications++;
		if (crypto_pwhash_str_verify(hashed_match->pwhash, pass, plen) == 0) {
			memcpy(hashed_match->pass, pass_hash, USERPASS_HASH_LEN);
			hashed_match->verified = true;
			match = 1;
		}
	} else if (db->hashed > 0 && match == 0) {
		db->verifications++;
		/* The decoy's password is 16 random bytes: it never verifies. */
		if (crypto_pwhash_str_verify(db->decoy, pass, plen) == 0)
			match = 0;
	}
	sodium_memzero(user_hash, sizeof user_hash);
	sodium_memzero(pass_hash, sizeof pass_hash);
	/* Fields the file cannot hold never match, whatever their hash. */
	return match != 0 && field_ok(user, ulen) && field_ok(pass, plen);
}

bool userpass_check_is_slow(const struct userpass *db, const char *user, const char *pass)
{
	uint8_t user_hash[USERPASS_HASH_LEN], pass_hash[USERPASS_HASH_LEN];
	const struct userpass_entry *hashed_match = NULL;
	bool plain_match = false;

	if (db == NULL || db->hashed == 0)
		return false;
	hash_field(db, 'u', user, strlen(user), user_hash);
	hash_field(db, 'p', pass, strlen(pass), pass_hash);
	for (size_t i = 0; i < db->count; i++) {
		const struct userpass_entry *e = &db->entries[i];

		if (sodium_memcmp(e->user, user_hash, USERPASS_HASH_LEN) != 0)
			continue;
		if (e->hashed)
			hashed_match = e;
		else
			plain_match = sodium_memcmp(e->pass, pass_hash, USERPASS_HASH_LEN) == 0;
	}
	/* Anything but a right plain pair or a remembered password runs Argon2id:
	 * an unknown user and a plain user's wrong password both pay the decoy. */
	bool slow = hashed_match != NULL
			? !(hashed_match->verified &&
			    sodium_memcmp(hashed_match->pass, pass_hash, USERPASS_HASH_LEN) == 0)
			: !plain_match;
	sodium_memzero(user_hash, sizeof user_hash);
	sodium_memzero(pass_hash, sizeof pass_hash);
	return slow;
}

size_t userpass_count(const struct userpass *db)
{
	return db != NULL ? db->count : 0;
}

size_t userpass_plain_count(const struct userpass *db)
{
	return db != NULL ? db->count - db->hashed : 0;
}

uint64_t userpass_verifications(const struct userpass *db)
{
	return db != NULL ? db->verifications : 0;
}

void userpass_free(struct userpass *db)
{
	if (db == NULL)
		return;
	sodium_free(db->entries); /* wipes */
	sodium_memzero(db->key, sizeof db->key);
	sodium_memzero(db->decoy, sizeof db->decoy);
	free(db);
}
