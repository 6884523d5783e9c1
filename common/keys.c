/*
 * Key files (private, .pub, PSK) and authorized-keys lists: reading, writing,
 * base64 and permission checks. Errors come back as one line naming the file;
 * nothing is logged here.
 */
#include "wanmux/keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "wanmux/acl.h"
#include "wanmux/err.h"
#include "wanmux/netaddr.h"

#define KEYS_B64_CHARS (KEYS_B64_LEN - 1)
/* Key and PSK files are tiny; anything bigger is not one of ours. */
#define KEYS_FILE_MAX 4096

struct authorized_entry {
	uint8_t pub[KEYS_LEN];
	char *comment; /* NULL when the line has none */
	struct keys_options opts;
};

struct keys_authorized {
	struct authorized_entry *entries;
	size_t count;
	size_t cap;
};

/* Trims ASCII whitespace on both ends of [*text, *text + *len). */
static void trim(const char **text, size_t *len)
{
	while (*len > 0 && isspace((unsigned char)(*text)[0])) {
		(*text)++;
		(*len)--;
	}
	while (*len > 0 && isspace((unsigned char)(*text)[*len - 1]))
		(*len)--;
}

/* Exactly 44 characters of padded standard base64 decoding to 32 bytes. */
static int decode_key(const char *text, size_t len, uint8_t out[KEYS_LEN])
{
	size_t bin_len = 0;
	const char *end = NULL;

	if (len != KEYS_B64_CHARS)
		return WM_ERR_PARSE;
	if (sodium_base642bin(out, KEYS_LEN, text, len, NULL, &bin_len, &end,
			      sodium_base64_VARIANT_ORIGINAL) != 0 ||
	    bin_len != KEYS_LEN || end != text + len)
		return WM_ERR_PARSE;
	return 0;
}

int keys_open_file(const char *path, bool secret, int *open_errno, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc, flags;

	/* O_NONBLOCK: opening a FIFO must not wait for a writer (start-up would
	 * hang); it is cleared again once fstat says this is a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (open_errno != NULL)
			*open_errno = errno;
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return WM_ERR_IO;
	}
	/* Checked on the open descriptor: the answer is about the file actually read. */
	if (fstat(fd, &st) != 0) {
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		rc = WM_ERR_IO;
	} else if (!S_ISREG(st.st_mode)) {
		wm_set_err(err, errlen, "%s: not a regular file", path);
		rc = WM_ERR_IO;
	} else if (st.st_uid != geteuid() && st.st_uid != 0) {
		/* Whoever owns the file can rewrite what the daemon trusts. */
		wm_set_err(
		    err, errlen,
		    "%s: owned by uid %u, not by this user (uid %u) or root; run chown %u %s", path,
		    (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid(), path);
		rc = WM_ERR_PERM;
	} else if ((st.st_mode & (secret ? 077 : 022)) != 0) {
		wm_set_err(err, errlen, "%s: %s by group or others (mode %04o); run chmod %s %s",
			   path, (st.st_mode & 022) != 0 ? "writable" : "readable",
			   (unsigned)(st.st_mode & 07777), secret ? "600" : "go-w", path);
		rc = WM_ERR_PERM;
	} else {
		flags = fcntl(fd, F_GETFL);
		if (flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0)
			return fd;
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		rc = WM_ERR_IO;
	}
	close(fd);
	return rc;
}

static int read_small_file(const char *path, int secret, char *buf, size_t cap, size_t *len,
			   int *open_errno, char *err, size_t errlen)
{
	size_t got = 0;
	int fd, rc = 0;

	fd = keys_open_file(path, secret != 0, open_errno, err, errlen);
	if (fd < 0)
		return fd;
	for (;;) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
			rc = WM_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == cap - 1) {
			char extra;

			if (read(fd, &extra, 1) > 0) {
				wm_set_err(err, errlen, "%s: file too large for a key", path);
				rc = WM_ERR_PARSE;
				goto out;
			}
			break;
		}
	}
	buf[got] = '\0';
	*len = got;
out:
	close(fd);
	return rc;
}

/* Creates path exclusively with the given mode, writes data; removes it on failure. */
static int write_new_file(const char *path, mode_t mode, const char *data, size_t len, char *err,
			  size_t errlen)
{
	size_t done = 0;
	int fd;

	fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOCTTY, mode);
	if (fd < 0) {
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		return WM_ERR_IO;
	}
	/* the umask may have taken bits away, never added; make it exact */
	if (fchmod(fd, mode) != 0)
		goto fail;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		done += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return 0;
fail:
	wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(path);
	return WM_ERR_IO;
}

struct keypair *keys_pair_generate(void)
{
	struct keypair *kp;

	if (sodium_init() < 0)
		return NULL;
	kp = calloc(1, sizeof *kp);
	if (kp == NULL)
		return NULL;
	kp->priv = sodium_malloc(KEYS_LEN);
	if (kp->priv == NULL) {
		free(kp);
		return NULL;
	}
	randombytes_buf(kp->priv, KEYS_LEN);
	crypto_scalarmult_curve25519_base(kp->pub, kp->priv);
	return kp;
}

void keys_pair_free(struct keypair *kp)
{
	if (kp == NULL)
		return;
	sodium_free(kp->priv);
	sodium_memzero(kp, sizeof *kp);
	free(kp);
}

int keys_pair_write(const struct keypair *kp, const char *path, char *err, size_t errlen)
{
	char line[KEYS_B64_LEN + 1];
	char *pub_path;
	size_t plen;
	int rc;

	if (kp == NULL || kp->priv == NULL || path == NULL || path[0] == '\0') {
		wm_set_err(err, errlen, "no key file name given");
		return WM_ERR_IO;
	}
	plen = strlen(path) + sizeof ".pub";
	pub_path = malloc(plen);
	if (pub_path == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", path);
		return WM_ERR_IO;
	}
	snprintf(pub_path, plen, "%s.pub", path);

	sodium_bin2base64(line, KEYS_B64_LEN, kp->priv, KEYS_LEN, sodium_base64_VARIANT_ORIGINAL);
	line[KEYS_B64_CHARS] = '\n';
	rc = write_new_file(path, 0600, line, KEYS_B64_CHARS + 1, err, errlen);
	sodium_memzero(line, sizeof line);
	if (rc != 0)
		goto out;

	keys_encode_public(kp->pub, line);
	line[KEYS_B64_CHARS] = '\n';
	rc = write_new_file(pub_path, 0644, line, KEYS_B64_CHARS + 1, err, errlen);
	if (rc != 0)
		unlink(path); /* no private key without its .pub */
out:
	free(pub_path);
	return rc;
}

bool keys_is_public_file_name(const char *path)
{
	size_t n = strlen(path);

	return n > 4 && strcmp(path + n - 4, ".pub") == 0 && path[n - 5] != '/';
}

int keys_pair_load(const char *path, struct keypair **out, char *err, size_t errlen)
{
	char buf[KEYS_FILE_MAX];
	const char *text = buf;
	struct keypair *kp = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	if (sodium_init() < 0) {
		wm_set_err(err, errlen, "%s: libsodium failed to initialize", path);
		return WM_ERR_CRYPTO;
	}
	/* A .pub file has the private key's format: loaded as one, its bytes would
	 * become another identity, so refuse it by name before the mode check
	 * (whose advice, chmod 600, would lead exactly there). */
	if (keys_is_public_file_name(path)) {
		wm_set_err(err, errlen, "%s is a public key file; --key needs the private key",
			   path);
		return WM_ERR_PARSE;
	}
	rc = read_small_file(path, 1, buf, sizeof buf, &len, NULL, err, errlen);
	if (rc != 0)
		goto out;
	trim(&text, &len);
	kp = calloc(1, sizeof *kp);
	if (kp != NULL)
		kp->priv = sodium_malloc(KEYS_LEN);
	if (kp == NULL || kp->priv == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", path);
		rc = WM_ERR_NOMEM;
		goto out;
	}
	if (decode_key(text, len, kp->priv) != 0) {
		wm_set_err(
		    err, errlen,
		    "%s: not a wanmux private key (expected one line of %d base64 characters)",
		    path, KEYS_B64_CHARS);
		rc = WM_ERR_PARSE;
		goto out;
	}
	crypto_scalarmult_curve25519_base(kp->pub, kp->priv);
	*out = kp;
	kp = NULL; /* transferred */
out:
	keys_pair_free(kp);
	sodium_memzero(buf, sizeof buf);
	return rc;
}

void keys_encode_public(const uint8_t pub[KEYS_LEN], char out[KEYS_B64_LEN])
{
	sodium_bin2base64(out, KEYS_B64_LEN, pub, KEYS_LEN, sodium_base64_VARIANT_ORIGINAL);
}

int keys_decode_public(const char *text, uint8_t pub[KEYS_LEN])
{
	size_t len;

	if (text == NULL)
		return WM_ERR_PARSE;
	len = strlen(text);
	trim(&text, &len);
	return decode_key(text, len, pub);
}

int keys_load_public(const char *arg, uint8_t pub[KEYS_LEN], char *err, size_t errlen)
{
	char buf[KEYS_FILE_MAX];
	const char *text = buf;
	size_t len = 0;
	int rc, open_errno = 0;

	if (arg == NULL || arg[0] == '\0') {
		wm_set_err(err, errlen, "empty public key");
		return WM_ERR_PARSE;
	}
	if (keys_decode_public(arg, pub) == 0)
		return 0;
	rc = read_small_file(arg, 0, buf, sizeof buf, &len, &open_errno, err, errlen);
	if (rc == WM_ERR_IO && open_errno == ENOENT) {
		wm_set_err(err, errlen, "%s: neither a base64 public key nor an existing file",
			   arg);
		return WM_ERR_PARSE;
	}
	if (rc != 0)
		return rc;
	trim(&text, &len);
	if (decode_key(text, len, pub) != 0) {
		wm_set_err(err, errlen, "%s: not a base64 public key", arg);
		return WM_ERR_PARSE;
	}
	return 0;
}

int keys_psk_write(const char *path, char *err, size_t errlen)
{
	uint8_t psk[KEYS_LEN];
	char line[KEYS_B64_LEN + 1];
	int rc;

	if (sodium_init() < 0) {
		wm_set_err(err, errlen, "libsodium failed to initialize");
		return WM_ERR_CRYPTO;
	}
	randombytes_buf(psk, sizeof psk);
	keys_encode_public(psk, line); /* same base64 form as a key */
	size_t len = strlen(line);
	line[len++] = '\n';
	rc = write_new_file(path, 0600, line, len, err, errlen);
	sodium_memzero(psk, sizeof psk);
	sodium_memzero(line, sizeof line);
	return rc;
}

int keys_load_psk(const char *path, uint8_t psk[KEYS_LEN], char *err, size_t errlen)
{
	uint8_t raw[KEYS_LEN];
	char buf[KEYS_FILE_MAX];
	const char *text = buf;
	size_t len = 0;
	int rc;

	if (sodium_init() < 0) {
		wm_set_err(err, errlen, "%s: libsodium failed to initialize", path);
		return WM_ERR_CRYPTO;
	}
	rc = read_small_file(path, 1, buf, sizeof buf, &len, NULL, err, errlen);
	if (rc != 0)
		goto out;
	trim(&text, &len);
	/* mac1 is keyed with the PSK, so one recorded first message lets anyone
	 * test guesses offline: only 32 random bytes (keygen's format) are safe,
	 * and a passphrase is refused rather than stretched into a false sense
	 * of safety. The line itself is hashed, as before, so keygen files made
	 * by earlier versions keep working. */
	if (decode_key(text, len, raw) != 0) {
		wm_set_err(
		    err, errlen,
		    "%s: not a wanmux PSK: expected one line of %d base64 characters (32 random "
		    "bytes, as wanmux-keygen --psk writes); passphrases are refused",
		    path, KEYS_B64_CHARS);
		rc = WM_ERR_PARSE;
		goto out;
	}
	crypto_generichash(psk, KEYS_LEN, (const uint8_t *)text, len, NULL, 0);
out:
	sodium_memzero(raw, sizeof raw);
	sodium_memzero(buf, sizeof buf);
	return rc;
}

static void options_free(struct keys_options *o)
{
	acl_free(o->allow);
	acl_free(o->allow_listen);
	acl_free(o->from);
	memset(o, 0, sizeof *o);
}

/* Takes over opts (cleared in the caller's copy either way). */
static int authorized_add(struct keys_authorized *ak, const uint8_t pub[KEYS_LEN],
			  const char *comment, size_t comment_len, struct keys_options *opts)
{
	struct authorized_entry *e;

	if (ak->count == ak->cap) {
		size_t ncap = ak->cap == 0 ? 8 : ak->cap * 2;
		struct authorized_entry *n = realloc(ak->entries, ncap * sizeof *n);

		if (n == NULL) {
			options_free(opts);
			return WM_ERR_NOMEM;
		}
		ak->entries = n;
		ak->cap = ncap;
	}
	e = &ak->entries[ak->count];
	memcpy(e->pub, pub, KEYS_LEN);
	e->comment = NULL;
	e->opts = *opts;
	memset(opts, 0, sizeof *opts);
	ak->count++; /* counted now so that keys_authorized_free frees its options */
	if (comment_len > 0) {
		e->comment = strndup(comment, comment_len);
		if (e->comment == NULL)
			return WM_ERR_NOMEM;
	}
	return 0;
}

/* The option names, matched case-insensitively as sshd does. */
enum key_option { KEY_OPT_ALLOW, KEY_OPT_ALLOW_LISTEN, KEY_OPT_FROM };

static const struct {
	const char *name;
	enum key_option id;
} key_option_names[] = {
    {"allow", KEY_OPT_ALLOW},
    {"allow-listen", KEY_OPT_ALLOW_LISTEN},
    {"from", KEY_OPT_FROM},
};

/* Adds one rule to *acl, creating it on first use. */
static int option_rule(struct acl **acl, const char *rule, char *why, size_t whylen)
{
	if (*acl == NULL) {
		*acl = acl_new();
		if (*acl == NULL) {
			wm_set_err(why, whylen, "out of memory");
			return WM_ERR_NOMEM;
		}
	}
	return acl_add(*acl, rule, why, whylen) == 0 ? 0 : WM_ERR_PARSE;
}

/*
 * from="CIDR,CIDR,...": addresses and CIDRs only. Names would need DNS at
 * every handshake and '!' patterns a second meaning; neither is offered.
 */
static int option_from(struct keys_options *o, char *list, char *why, size_t whylen)
{
	char *save = NULL;
	int rc = 0;

	if (o->from != NULL) {
		wm_set_err(why, whylen,
			   "from= given twice; list the addresses in one from=\"A,B\"");
		return WM_ERR_PARSE;
	}
	for (char *item = strtok_r(list, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		char addr[NETADDR_HOST_MAX], rule[NETADDR_HOST_MAX + 8];
		size_t n = strlen(item);
		struct sockaddr_storage ss;
		socklen_t sl;

		/* "[V6]" and "[V6/N]" are accepted too, as in --allow rules. */
		if (n >= 2 && item[0] == '[' && item[n - 1] == ']') {
			item[n - 1] = '\0';
			item++;
		}
		snprintf(addr, sizeof addr, "%s", item);
		addr[strcspn(addr, "/")] = '\0';
		if (!netaddr_literal(addr, 0, &ss, &sl)) {
			wm_set_err(why, whylen,
				   "from=: '%s' is not an address or CIDR (no names, no ports)",
				   item);
			return WM_ERR_PARSE;
		}
		snprintf(rule, sizeof rule, ss.ss_family == AF_INET6 ? "[%s]" : "%s", item);
		rc = option_rule(&o->from, rule, why, whylen);
		if (rc != 0)
			return rc;
	}
	if (o->from == NULL) {
		wm_set_err(why, whylen, "from= needs at least one address or CIDR");
		return WM_ERR_PARSE;
	}
	return 0;
}

/*
 * Parses the options at the start of a line: name="value" pairs separated
 * by commas, ending at the first unquoted space or tab. Inside the quotes
 * only \" is an escape (a literal quote); other backslashes stay, as in
 * sshd. On success *consumed is the length of the options text.
 */
static int parse_options(const char *p, size_t len, struct keys_options *o, size_t *consumed,
			 char *why, size_t whylen)
{
	size_t i = 0;

	for (;;) {
		size_t name_start = i, value_len = 0, n;
		char *value;
		int rc = WM_ERR_PARSE;
		long id = -1;

		while (i < len && p[i] != '=' && p[i] != ',' && !isspace((unsigned char)p[i]))
			i++;
		n = i - name_start;
		for (size_t k = 0; k < sizeof key_option_names / sizeof key_option_names[0]; k++)
			if (strlen(key_option_names[k].name) == n &&
			    strncasecmp(p + name_start, key_option_names[k].name, n) == 0)
				id = (long)key_option_names[k].id;
		if (id < 0) {
			wm_set_err(why, whylen,
				   "unknown option '%.*s' (known: allow, allow-listen, from)",
				   (int)(n > 64 ? 64 : n), p + name_start);
			return WM_ERR_PARSE;
		}
		if (i + 1 >= len || p[i] != '=' || p[i + 1] != '"') {
			wm_set_err(why, whylen, "option %.*s needs a quoted value: %.*s=\"...\"",
				   (int)n, p + name_start, (int)n, p + name_start);
			return WM_ERR_PARSE;
		}
		i += 2;
		value = malloc(len - i + 1);
		if (value == NULL) {
			wm_set_err(why, whylen, "out of memory");
			return WM_ERR_NOMEM;
		}
		while (i < len && p[i] != '"') {
			if (p[i] == '\\' && i + 1 < len && p[i + 1] == '"')
				i++;
			value[value_len++] = p[i++];
		}
		value[value_len] = '\0';
		if (i >= len) {
			wm_set_err(why, whylen, "unterminated quote in option %.*s", (int)n,
				   p + name_start);
		} else if (value_len == 0) {
			wm_set_err(why, whylen, "option %.*s has an empty value", (int)n,
				   p + name_start);
		} else if (id == KEY_OPT_FROM) {
			rc = option_from(o, value, why, whylen);
		} else {
			char rule_why[200];

			rc = option_rule(id == KEY_OPT_ALLOW ? &o->allow : &o->allow_listen, value,
					 rule_why, sizeof rule_why);
			if (rc != 0)
				wm_set_err(why, whylen, "%s=: %s",
					   id == KEY_OPT_ALLOW ? "allow" : "allow-listen",
					   rule_why);
		}
		free(value);
		if (rc != 0)
			return rc;
		i++; /* the closing quote */
		if (i >= len || isspace((unsigned char)p[i])) {
			*consumed = i;
			return 0;
		}
		if (p[i] != ',') {
			wm_set_err(why, whylen, "expected ',' or a space after an option, got '%c'",
				   isprint((unsigned char)p[i]) ? p[i] : '?');
			return WM_ERR_PARSE;
		}
		i++;
	}
}

/* One non-empty, non-comment line: [options] key [comment]. */
static int parse_authorized_line(struct keys_authorized *ak, const char *p, size_t len, char *why,
				 size_t whylen)
{
	struct keys_options opts;
	uint8_t pub[KEYS_LEN];
	const char *key = p, *comment;
	size_t key_len = 0;
	int rc;

	memset(&opts, 0, sizeof opts);
	while (key_len < len && !isspace((unsigned char)key[key_len]))
		key_len++;
	/* As sshd: a line that starts with a key has no options. */
	if (decode_key(key, key_len, pub) != 0) {
		size_t used = 0;

		rc = parse_options(p, len, &opts, &used, why, whylen);
		if (rc != 0) {
			options_free(&opts);
			return rc;
		}
		key = p + used;
		len -= used;
		trim(&key, &len);
		key_len = 0;
		while (key_len < len && !isspace((unsigned char)key[key_len]))
			key_len++;
		if (decode_key(key, key_len, pub) != 0) {
			wm_set_err(why, whylen, "%s",
				   key_len == 0 ? "options but no public key after them"
						: "not a base64 public key");
			options_free(&opts);
			return WM_ERR_PARSE;
		}
	}
	comment = key + key_len;
	len -= key_len;
	trim(&comment, &len);
	rc = authorized_add(ak, pub, comment, len, &opts);
	if (rc != 0)
		wm_set_err(why, whylen, "out of memory");
	return rc;
}

int keys_authorized_load(const char *path, struct keys_authorized **out, char *err, size_t errlen)
{
	struct keys_authorized *ak;
	char *line = NULL;
	size_t line_cap = 0, lineno = 0;
	ssize_t n;
	FILE *f;
	int rc = 0;

	*out = NULL;
	int fd = keys_open_file(path, false, NULL, err, errlen);
	if (fd < 0)
		return fd;
	f = fdopen(fd, "r");
	if (f == NULL) {
		wm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return WM_ERR_IO;
	}
	ak = calloc(1, sizeof *ak);
	if (ak == NULL) {
		wm_set_err(err, errlen, "%s: out of memory", path);
		fclose(f);
		return WM_ERR_NOMEM;
	}
	while ((n = getline(&line, &line_cap, f)) >= 0) {
		const char *p = line;
		size_t len = (size_t)n;
		char why[256];

		lineno++;
		trim(&p, &len);
		if (len == 0 || p[0] == '#')
			continue;
		rc = parse_authorized_line(ak, p, len, why, sizeof why);
		if (rc != 0) {
			wm_set_err(err, errlen, "%s:%zu: %s", path, lineno, why);
			break;
		}
	}
	if (rc == 0 && ferror(f)) {
		wm_set_err(err, errlen, "%s: read error", path);
		rc = WM_ERR_IO;
	}
	free(line);
	fclose(f);
	if (rc != 0) {
		keys_authorized_free(ak);
		return rc;
	}
	*out = ak;
	return 0;
}

void keys_authorized_free(struct keys_authorized *ak)
{
	size_t i;

	if (ak == NULL)
		return;
	for (i = 0; i < ak->count; i++) {
		free(ak->entries[i].comment);
		options_free(&ak->entries[i].opts);
	}
	free(ak->entries);
	free(ak);
}

bool keys_authorized_find(const struct keys_authorized *ak, const uint8_t pub[KEYS_LEN],
			  const char **comment, size_t *index)
{
	size_t i, found_at = 0;
	bool found = false;

	if (ak == NULL || pub == NULL)
		return false;
	/* every entry is compared in full, so timing does not reveal which one matched */
	for (i = 0; i < ak->count; i++) {
		bool match = sodium_memcmp(ak->entries[i].pub, pub, KEYS_LEN) == 0;

		if (match && !found) {
			found = true;
			found_at = i;
		}
	}
	if (!found)
		return false;
	if (comment != NULL)
		*comment =
		    ak->entries[found_at].comment != NULL ? ak->entries[found_at].comment : "";
	if (index != NULL)
		*index = found_at;
	return true;
}

size_t keys_authorized_count(const struct keys_authorized *ak)
{
	return ak == NULL ? 0 : ak->count;
}

const struct keys_options *keys_authorized_options(const struct keys_authorized *ak, size_t index)
{
	static const struct keys_options none;

	if (ak == NULL || index >= ak->count)
		return &none;
	return &ak->entries[index].opts;
}
