/*
 * libFuzzer target for allow rules: acl_add on arbitrary strings, then
 * acl_permits / acl_may_permit_name with addresses and names taken from the
 * input. The first byte picks the port, the rest is split at '\n' into rules.
 */
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wanmux/acl.h"
#include "wanmux/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acl *acl;
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	char *text;
	char *line;
	char err[256];
	uint16_t port;

	if (size < 2)
		return 0;
	port = (uint16_t)(data[0] << 8 | data[1]);
	data += 2;
	size -= 2;
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	acl = acl_new();
	if (acl == NULL) {
		free(text);
		return 0;
	}
	line = text;
	while (line != NULL) {
		char *nl = strchr(line, '\n');
		size_t before = acl_count(acl);
		int rc;

		if (nl != NULL)
			*nl = '\0';
		rc = acl_add(acl, line, err, sizeof(err));
		if (rc != 0 &&
		    (rc != WM_ERR_PARSE || strchr(err, '\n') != NULL || acl_count(acl) != before))
			__builtin_trap();
		if (rc == 0 && acl_count(acl) != before + 1)
			__builtin_trap();
		/* The rule text doubles as a name to match. */
		acl_may_permit_name(acl, line, port);
		line = nl != NULL ? nl + 1 : NULL;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	memcpy(&sin.sin_addr, data, size < 4 ? size : 4);
	memcpy(&sin6.sin6_addr, data, size < 16 ? size : 16);
	acl_permits(acl, text, (struct sockaddr *)&sin, port);
	acl_permits(acl, NULL, (struct sockaddr *)&sin6, port);
	/* A CIDR match implies that a name on that port may be permitted. */
	if (acl_permits(acl, NULL, (struct sockaddr *)&sin, port) &&
	    !acl_may_permit_name(acl, "x.example", port))
		__builtin_trap();
	acl_free(acl);
	free(text);
	return 0;
}
