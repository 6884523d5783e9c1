/*
 * Error codes shared by every module: functions return 0 on success or one
 * negative WM_ERR_* value. Decoders tell "need more bytes" (WM_ERR_AGAIN) from
 * "malformed" (WM_ERR_MALFORMED).
 */
#ifndef WANMUX_ERR_H
#define WANMUX_ERR_H

#include <stddef.h>

enum wm_err {
	WM_OK = 0,
	WM_ERR_AGAIN = -1,	  /* input incomplete: call again with more bytes */
	WM_ERR_MALFORMED = -2,	  /* input violates the format; never retry */
	WM_ERR_NOMEM = -3,	  /* allocation failed */
	WM_ERR_CRYPTO = -4,	  /* authentication or a key operation failed */
	WM_ERR_UNAUTHORIZED = -5, /* peer key not authorized / not the pinned key */
	WM_ERR_REPLAY = -6,	  /* replayed or stale handshake */
	WM_ERR_RANGE = -7,	  /* value or size out of the allowed range */
	WM_ERR_IO = -8,		  /* a system call failed (errno says why) */
	WM_ERR_PARSE = -9,	  /* bad configuration or command-line text */
	WM_ERR_STATE = -10,	  /* call not valid in the object's current state */
	WM_ERR_FLOW = -11,	  /* peer sent beyond the credit it was granted */
	WM_ERR_PERM = -12,	  /* file permissions unsafe (key readable by others) */
	WM_ERR_NOTFOUND = -13,	  /* no such entry */
	WM_ERR_LIMIT = -14,	  /* a configured limit was hit */
};

/* A short English description of err (a WM_ERR_* value); never NULL. */
const char *wm_strerror(int err);

/* Formats a one-line reason into err (errlen bytes, truncated); err may be
 * NULL or errlen 0, and nothing is written then. */
void wm_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
