/*
 * Credentials files for --socks-auth and --http-auth: which user:password
 * pairs the client's SOCKS5 and HTTP proxy front ends accept. Plain
 * passwords are kept only as keyed BLAKE2b hashes and compared in constant
 * time.
 *
 * Format: one "user:password" or "user:HASH" per line (the password runs to
 * the end of the line and may contain ':'; a trailing CR is dropped), lines
 * starting with '#' and blank lines ignored. User and password are 1..255
 * bytes without control characters (the limits of RFC 1929). HASH is an
 * Argon2 string from crypto_pwhash_str ("$argon2id$v=19$m=...", what
 * wanmux-keygen --hash-password prints); a password field that starts with
 * "$argon2id$" or "$argon2i$" is always read as a hash. The file must not be
 * readable or writable by group or others (mode 0600), like a key file.
 *
 * A hashed entry costs one Argon2id verification (interactive limits: about
 * 64 MiB and tens of milliseconds) per login with a new password; the last
 * password that verified is remembered (as a keyed hash), so repeated logins
 * with it cost what a plain entry costs. A login as an unknown user costs one
 * verification too (a decoy), so timing does not tell which users exist.
 * Callers bound the cost by throttling failures (authlimit.h).
 */
#ifndef WANMUX_USERPASS_H
#define WANMUX_USERPASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct userpass;

/*
 * Loads a credentials file into a new *out (free with userpass_free).
 * Returns 0, or an error with a one-line reason in err naming the file and,
 * for content errors, the line ("creds:3: expected user:password"):
 * unreadable (WM_ERR_IO), group or others may access it (WM_ERR_PERM), a bad
 * line, a duplicate user or no user at all (WM_ERR_PARSE), out of memory
 * (WM_ERR_NOMEM). sodium_init() must have been called.
 */
int userpass_load(const char *path, struct userpass **out, char *err, size_t errlen);

/*
 * Whether user and pass (NUL-terminated) are a pair from the file. Every
 * plain entry is compared, by hash, with sodium_memcmp, whichever matches; a
 * hashed entry is verified with crypto_pwhash_str_verify unless pass is the
 * one that verified last (remembered in db). db NULL matches nothing.
 */
bool userpass_check(struct userpass *db, const char *user, const char *pass);

/*
 * Whether userpass_check(db, user, pass) would run Argon2id (a hashed entry
 * whose remembered password is not pass; when the file has hashed entries,
 * also an unknown user or a plain user's wrong password, which pay the
 * decoy), so that the caller can ration that work.
 */
bool userpass_check_is_slow(const struct userpass *db, const char *user, const char *pass);

/* Number of users loaded. */
size_t userpass_count(const struct userpass *db);

/* Number of users whose password is stored in plain text (not hashed). */
size_t userpass_plain_count(const struct userpass *db);

/* How many Argon2id verifications userpass_check has run (decoys included). */
uint64_t userpass_verifications(const struct userpass *db);

/* Wipes and frees db; NULL is a no-op. */
void userpass_free(struct userpass *db);

#endif
