/*
 * libFuzzer target for config file text: config_parse_buffer on arbitrary
 * bytes, then every accessor on what it returns. The option table mirrors the
 * daemons' shape (single, repeatable, flags, "config").
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wanmux/config.h"
#include "wanmux/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct config_option opts[] = {
    {"config", 'c', true, false, 0}, {"listen", 'l', true, false, 1},
    {"allow", 'a', true, true, 2},   {"verbose", 'v', false, false, 3},
    {"debug", 'd', false, true, 4},  {"key", 'k', true, false, 5},
    {"window", 0, true, false, 6},   {"idle-timeout", 0, true, false, 7},
    {NULL, 0, false, false, -1},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg = NULL;
	char err[256];
	int rc;

	rc = config_parse_buffer(opts, (const char *)data, size, "fuzz.conf", &cfg, err,
				 sizeof(err));
	if (rc != 0) {
		/* Errors are one terminated line. */
		if (cfg != NULL || memchr(err, '\0', sizeof(err)) == NULL ||
		    strchr(err, '\n') != NULL)
			__builtin_trap();
		return 0;
	}
	for (int id = 0; id < 8; id++) {
		const char *v = config_get(cfg, id);
		size_t n = config_count(cfg, id);
		uint64_t u;

		if ((v == NULL) != (n == 0))
			__builtin_trap();
		for (size_t i = 0; i < n; i++)
			if (config_get_nth(cfg, id, i) == NULL)
				__builtin_trap();
		if (v != NULL) {
			config_parse_uint(v, 0, UINT64_MAX, &u);
			config_parse_duration_ms(v, &u);
		}
	}
	config_free(cfg);
	return 0;
}
