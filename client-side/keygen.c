/*
 * wanmux-keygen: writes a fresh X25519 key pair (FILE mode 0600, FILE.pub)
 * and prints the public key, or with --psk writes a random pre-shared key, or
 * with --pub prints the public key of an existing private key. Never
 * overwrites an existing file; missing parent directories are made 0700.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "wanmux/keys.h"

#define PROG "wanmux-keygen"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " FILE\n"
		"       " PROG " --psk FILE\n"
		"       " PROG " --pub FILE\n"
		"\n"
		"Without options: writes a new X25519 private key to FILE (mode 0600) and its\n"
		"public key to FILE.pub, and prints the public key (base64) on stdout.\n"
		"With --psk: writes a new random 32-byte pre-shared key, base64, to FILE\n"
		"(mode 0600). Existing files are never overwritten; missing parent\n"
		"directories are created with mode 0700.\n"
		"With --pub: prints the public key of the existing private key FILE.\n");
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
