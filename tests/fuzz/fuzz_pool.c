/*
 * libFuzzer target for --pool definitions: pool_parse on arbitrary text,
 * then picks under every policy with a key and a skip mask from the input.
 * Invariants: a refusal is one line; a pick is a usable backend not skipped.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wanmux/pool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	uint64_t skip = 0;

	if (size < 8)
		return 0;
	memcpy(&skip, data, 8);
	data += 8;
	size -= 8;
	char *text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	err[0] = '\0';
	struct pool *p = pool_parse(text, POOL_ROUNDROBIN, err, sizeof(err));
	if (p == NULL) {
		if (err[0] == '\0' || strchr(err, '\n') != NULL)
			__builtin_trap();
		free(text);
		return 0;
	}
	size_t n = pool_backend_count(p);
	if (n == 0 || n > POOL_BACKENDS_MAX)
		__builtin_trap();
	/* Some backends down or drained, from the skip bits' upper half. */
	for (size_t i = 0; i < n; i++) {
		if ((skip >> (32 + i)) & 1u)
			pool_backend_connect_failed(pool_backend_at(p, i));
	}
	static const enum pool_policy all[] = {POOL_ROUNDROBIN, POOL_LEASTCONN, POOL_SOURCE};
	for (size_t k = 0; k < 3; k++) {
		pool_set_policy(p, all[k]);
		for (int round = 0; round < 4; round++) {
			int i = pool_pick(p, data, size, skip & 0xffffffffu);
			if (i < -1 || i >= (int)n)
				__builtin_trap();
			if (i >= 0 && (((skip >> i) & 1u) ||
				       !pool_backend_usable(pool_backend_at(p, (size_t)i))))
				__builtin_trap();
			if (i >= 0)
				pool_backend_at(p, (size_t)i)->active++;
		}
	}
	pool_matches(p, text, 80);
	pool_free(p);
	free(text);
	return 0;
}
