/*
 * wanmux-keygen: writes a fresh X25519 key pair (FILE mode 0600, FILE.pub)
 * and prints the public key, or with --psk writes a random pre-shared key.
 * Never overwrites an existing file.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "wanmux/keys.h"

#define PROG "wanmux-keygen"

static void usage(FILE *out)
{
	fprintf(out, "usage: " PROG " FILE\n"
		     "       " PROG " --psk FILE\n"
		     "\n"
		     "Without --psk: writes a new X25519 private key to FILE (mode 0600) and its\n"
		     "public key to FILE.pub, and prints the public key (base64) on stdout.\n"
		     "With --psk: writes a new random 32-byte pre-shared key, base64, to FILE\n"
		     "(mode 0600). Existing files are never overwritten.\n");
}

static int write_psk(const char *path)
{
	char err[512];
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
	return write_pair(argv[1]);
}
