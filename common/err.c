/* Text for the WM_ERR_* codes, and the one formatter of error reasons. */
#include "wanmux/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *wm_strerror(int err)
{
	switch (err) {
	case WM_OK:
		return "success";
	case WM_ERR_AGAIN:
		return "incomplete input";
	case WM_ERR_MALFORMED:
		return "malformed input";
	case WM_ERR_NOMEM:
		return "out of memory";
	case WM_ERR_CRYPTO:
		return "authentication failed";
	case WM_ERR_UNAUTHORIZED:
		return "key not authorized";
	case WM_ERR_REPLAY:
		return "replayed handshake";
	case WM_ERR_RANGE:
		return "value out of range";
	case WM_ERR_IO:
		return "I/O error";
	case WM_ERR_PARSE:
		return "parse error";
	case WM_ERR_STATE:
		return "invalid state";
	case WM_ERR_FLOW:
		return "flow control violated";
	case WM_ERR_PERM:
		return "unsafe file permissions";
	case WM_ERR_NOTFOUND:
		return "not found";
	case WM_ERR_LIMIT:
		return "limit reached";
	}
	return "unknown error";
}

void wm_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
