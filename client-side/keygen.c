/*
 * wanmux-keygen: writes a fresh X25519 key pair (FILE mode 0600, FILE.pub)
 * and prints the public key, or with --psk writes a random pre-shared key, or
 * with --pub prints the public key of an existing private key, or with
 * --hash-password prints the Argon2id hash of a proxy password. Never
 * overwrites an existing file; missing parent directories are made 0700.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "wanmux/keys.h"

#define PROG "wanmux-keygen"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " FILE\n"
		"       " PROG " --psk FILE\n"
		"       " PROG " --pub FILE\n"
		"       " PROG " --hash-password < PASSWORD\n"
		"\n"
		"Without options: writes a new X25519 private key to FILE (mode 0600) and its\n"
		"public key to FILE.pub, and prints the public key (base64) on stdout.\n"
		"With --psk: writes a new random 32-byte pre-shared key, base64, to FILE\n"
		"(mode 0600). Existing files are never overwritten; missing parent\n"
		"directories are created with mode 0700.\n"
		"With --pub: prints the public key of the existing private key FILE.\n"
		"With --hash-password: reads one password line from stdin and prints its\n"
		"Argon2id hash, for a USER:HASH line of a --socks-auth/--http-auth file.\n");
}

/*
 * Creates the missing directories above path, mode 0700 (a fresh ~/.wanmux
 * must not be readable by others); existing ones are left as they are.
 */
static int make_parents(const char *path)
{
	char *dir = strdup(path);
	int rc = 0;

	if (dir == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	for (char *p = dir + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			fprintf(stderr, PROG ": cannot create directory %s: %s\n", dir,
				strerror(errno));
			rc = 1;
			break;
		}
		*p = '/';
	}
	free(dir);
	return rc;
}

static int print_pub(const char *path)
{
	struct keypair *kp = NULL;
	char err[512], b64[KEYS_B64_LEN];

	if (keys_is_public_file_name(path)) {
		fprintf(stderr,
			PROG ": %s is a public key file already; --pub needs the private key\n",
			path);
		return 1;
	}
	if (keys_pair_load(path, &kp, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	keys_encode_public(kp->pub, b64);
	keys_pair_free(kp);
	if (printf("%s\n", b64) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, PROG ": cannot write to stdout: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

static int write_psk(const char *path)
{
	char err[512];
	if (make_parents(path) != 0)
		return 1;
	if (keys_psk_write(path, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		return 1;
	}
	return 0;
}

static int write_pair(const char *path)
{
	struct keypair *kp;
	char err[512], b64[KEYS_B64_LEN];

	if (keys_is_public_file_name(path)) {
		/* The daemons would refuse it as --key: FILE.pub is the public half. */
		fprintf(stderr, PROG ": %s: a private key file must not end in .pub\n", path);
		return 1;
	}
	if (make_parents(path) != 0)
		return 1;
	kp = keys_pair_generate();
	if (kp == NULL) {
		fprintf(stderr, PROG ": cannot generate a key pair\n");
		return 1;
	}
	if (keys_pair_write(kp, path, err, sizeof err) != 0) {
		fprintf(stderr, PROG ": %s\n", err);
		keys_pair_free(kp);
		return 1;
	}
	keys_encode_public(kp->pub, b64);
	keys_pair_free(kp);
	if (printf("%s\n", b64) < 0 || fflush(stdout) != 0) {
		fprintf(stderr, PROG ": cannot write to stdout: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}

/*
 * --hash-password: one line from stdin (echo off on a terminal) to an
 * Argon2id string with libsodium's interactive limits, which keeps one
 * verification in the client at tens of milliseconds; the client throttles
 * failed logins so a guesser cannot make it verify often.
 */
static int hash_password(void)
{
	char *pw = sodium_malloc(258); /* 255 bytes, newline, NUL, one to spot overlong */
	char out[crypto_pwhash_STRBYTES];
	struct termios saved, quiet;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	int rc = 1;
	size_t len;

	if (pw == NULL) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	if (tty) {
		fprintf(stderr, "Password: ");
		quiet = saved;
		quiet.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	}
	bool got = fgets(pw, 258, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		fprintf(stderr, "\n");
	}
	len = got ? strlen(pw) : 0;
	if (len > 0 && pw[len - 1] == '\n')
		pw[--len] = '\0';
	if (len > 0 && pw[len - 1] == '\r')
		pw[--len] = '\0';
	bool ok = len > 0 && len <= 255;
	for (size_t i = 0; ok && i < len; i++)
		ok = (unsigned char)pw[i] >= 0x20 && pw[i] != 0x7f;
	if (!ok)
		fprintf(stderr, PROG ": the password must be one line of 1 to 255 bytes without "
				     "control characters\n");
	else if (crypto_pwhash_str(out, pw, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
				   crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
		fprintf(stderr, PROG ": out of memory for Argon2id\n");
	else if (printf("%s\n", out) < 0 || fflush(stdout) != 0)
		fprintf(stderr, PROG ": cannot write to stdout: %s\n", strerror(errno));
	else
		rc = 0;
	sodium_free(pw); /* wipes */
	return rc;
}

static int bad_usage(const char *why, const char *arg)
{
	fprintf(stderr, PROG ": %s%s%s (try '" PROG " --help')\n", why, arg ? ": " : "",
		arg ? arg : "");
	return 2;
}

int main(int argc, char **argv)
{
	if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc < 2)
		return bad_usage("missing FILE", NULL);
	if (strcmp(argv[1], "--hash-password") == 0) {
		if (argc != 2)
			return bad_usage("--hash-password takes no FILE (it reads stdin)", NULL);
		if (sodium_init() < 0) {
			fprintf(stderr, PROG ": libsodium failed to initialize\n");
			return 1;
		}
		return hash_password();
	}
	if (strcmp(argv[1], "--psk") == 0) {
		if (argc != 3 || argv[2][0] == '\0')
			return bad_usage("--psk takes exactly one FILE", NULL);
	} else if (strcmp(argv[1], "--pub") == 0) {
		if (argc != 3 || argv[2][0] == '\0')
			return bad_usage("--pub takes exactly one FILE", NULL);
	} else if (argv[1][0] == '-' && argv[1][1] != '\0') {
		return bad_usage("unknown option", argv[1]);
	} else if (argc != 2 || argv[1][0] == '\0') {
		return bad_usage("expected exactly one FILE", NULL);
	}
	if (sodium_init() < 0) {
		fprintf(stderr, PROG ": libsodium failed to initialize\n");
		return 1;
	}
	if (strcmp(argv[1], "--psk") == 0)
		return write_psk(argv[2]);
	if (strcmp(argv[1], "--pub") == 0)
		return print_pub(argv[2]);
	return write_pair(argv[1]);
}
