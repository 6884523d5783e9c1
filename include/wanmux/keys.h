/*
 * Key files, base64 public keys, authorized-keys lists and pre-shared keys.
 * Private keys live in sodium_malloc memory. Every file read here (and the
 * config and credentials files, through keys_open_file) must be a regular
 * file owned by the daemon's user or root and not writable by group or
 * others; files holding secrets must not be readable by them either.
 *
 * Formats (text, one line, standard base64 with padding, 44 characters):
 *   FILE      private X25519 key (32 bytes), mode 0600
 *   FILE.pub  public key
 *   authorized keys: one public key per line, optional comment after
 *             whitespace; blank lines and lines starting with '#' ignored.
 *             A line may start with options, as in sshd's authorized_keys:
 *               allow="RULE"          repeatable; this key may reach only
 *                                     these targets (--allow syntax), not
 *                                     the server's --allow rules
 *               allow-listen="RULE"   repeatable; likewise for reverse
 *                                     listeners (--allow-listen syntax)
 *               from="CIDR[,CIDR...]" once; the key may connect only from
 *                                     these addresses (no names, no '!')
 *             e.g. allow="10.1.0.0/16:443",from="198.18.0.0/24" KEY comment.
 *             Names are case-insensitive, values must be double-quoted (\"
 *             is a quote inside, other backslashes are literal), options are
 *             separated by commas without spaces. An unknown option, a bad
 *             value or a second from= makes the whole file an error.
 *   PSK file: one line of 44 base64 characters (32 random bytes, as
 *             wanmux-keygen --psk writes; surrounding whitespace trimmed),
 *             hashed as text with BLAKE2b-256 into the 32-byte Noise PSK;
 *             mode 0600. Anything else (a passphrase) is refused: mac1 is
 *             keyed with the PSK, so a low-entropy PSK falls to an offline
 *             guess from one recorded handshake.
 */
#ifndef WANMUX_KEYS_H
#define WANMUX_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_LEN 32
#define KEYS_B64_LEN 45 /* 44 characters and NUL */

struct keypair {
	uint8_t *priv; /* KEYS_LEN bytes of sodium_malloc memory */
	uint8_t pub[KEYS_LEN];
};

/*
 * Opens path for reading: a regular file (a FIFO or device is refused without
 * blocking: opened O_NONBLOCK, cleared afterwards), owned by the effective
 * user or root, not writable by group or others and, when secret, not
 * readable by them either (all checked on the open descriptor). Returns the
 * fd, or WM_ERR_IO / WM_ERR_PERM with a one-line reason naming the file in
 * err (*open_errno, if not NULL, gets errno when open itself failed).
 */
int keys_open_file(const char *path, bool secret, int *open_errno, char *err, size_t errlen);

/* A fresh random key pair, or NULL. Free with keys_pair_free. */
struct keypair *keys_pair_generate(void);

/* Wipes and frees kp; NULL is a no-op. */
void keys_pair_free(struct keypair *kp);

/*
 * Writes kp to path (mode 0600, created exclusively: an existing file is an
 * error) and its public key to path.pub. On failure writes a one-line reason
 * to err and returns WM_ERR_IO.
 */
int keys_pair_write(const struct keypair *kp, const char *path, char *err, size_t errlen);

/*
 * Whether path names a public key file (ends in ".pub", as FILE.pub that
 * keys_pair_write makes); such a file holds no private key.
 */
bool keys_is_public_file_name(const char *path);

/*
 * Loads a private key file. Returns 0 and a new key pair, or an error with a
 * one-line reason in err: unreadable (WM_ERR_IO), readable by group or others
 * (WM_ERR_PERM), not a key or a public key file by its name (WM_ERR_PARSE,
 * "FILE is a public key file; --key needs the private key").
 */
int keys_pair_load(const char *path, struct keypair **out, char *err, size_t errlen);

/* Base64 text of a public key into out (KEYS_B64_LEN bytes). */
void keys_encode_public(const uint8_t pub[KEYS_LEN], char out[KEYS_B64_LEN]);

/* Decodes one base64 public key (surrounding whitespace allowed). 0 or WM_ERR_PARSE. */
int keys_decode_public(const char *text, uint8_t pub[KEYS_LEN]);

/*
 * A public key given as base64 text or as the path of a file holding it (such
 * as FILE.pub). 0 or an error with a reason in err.
 */
int keys_load_public(const char *arg, uint8_t pub[KEYS_LEN], char *err, size_t errlen);

/*
 * Writes a fresh random PSK file at path (32 random bytes in base64, mode
 * 0600, created exclusively). 0 or WM_ERR_IO with a reason in err.
 */
int keys_psk_write(const char *path, char *err, size_t errlen);

/* Loads a PSK file (see above) into psk. 0 or an error with a reason in err. */
int keys_load_psk(const char *path, uint8_t psk[KEYS_LEN], char *err, size_t errlen);

struct keys_authorized;
struct acl;

/* The options of one authorized key; NULL: the option was not given. */
struct keys_options {
	struct acl *allow;	  /* targets; NULL: the server's --allow rules */
	struct acl *allow_listen; /* reverse listeners; NULL: --allow-listen */
	struct acl *from;	  /* source CIDRs (acl_matches_source); NULL: any */
};

/*
 * Loads an authorized-keys file. A malformed line is an error naming the line
 * (WM_ERR_PARSE); an empty list is allowed. The file need not be secret.
 */
int keys_authorized_load(const char *path, struct keys_authorized **out, char *err, size_t errlen);

void keys_authorized_free(struct keys_authorized *ak);

/*
 * Whether pub is in the list (constant time per entry). On a match, *comment
 * (if not NULL) points at the line's comment or "" and *index at its position.
 */
bool keys_authorized_find(const struct keys_authorized *ak, const uint8_t pub[KEYS_LEN],
			  const char **comment, size_t *index);

size_t keys_authorized_count(const struct keys_authorized *ak);

/*
 * The options of the entry at index (as keys_authorized_find gives it); an
 * index out of range gets an all-NULL set. Owned by ak: valid until
 * keys_authorized_free(ak).
 */
const struct keys_options *keys_authorized_options(const struct keys_authorized *ak, size_t index);

#endif
