/*
 * Credentials files for --socks-auth and --http-auth: which user:password
 * pairs the client's SOCKS5 and HTTP proxy front ends accept. Passwords are
 * kept only as keyed BLAKE2b hashes and compared in constant time.
 *
 * Format: one "user:password" per line (the password runs to the end of the
 * line and may contain ':'; a trailing CR is dropped), lines starting with '#'
 * and blank lines ignored. User and password are 1..255 bytes without control
 * characters (the limits of RFC 1929). The file must not be readable or
 * writable by group or others (mode 0600), like a key file.
 */
#ifndef WANMUX_USERPASS_H
#define WANMUX_USERPASS_H

#include <stdbool.h>
#include <stddef.h>

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
 * Whether user and pass (NUL-terminated) are a pair from the file. Takes the
 * same time whichever entry, if any, matches: every entry is compared, by
 * hash, with sodium_memcmp. db NULL matches nothing.
 */
bool userpass_check(const struct userpass *db, const char *user, const char *pass);

/* Number of users loaded. */
size_t userpass_count(const struct userpass *db);

/* Wipes and frees db; NULL is a no-op. */
void userpass_free(struct userpass *db);

#endif
