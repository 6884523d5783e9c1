/*
 * Command-line options both daemons share: log level, compression, windows
 * and buffer budgets, parsed from a config (config.h) into a tunnel_config.
 * Reports the first bad value as one line in err; exiting is main's job.
 */
#ifndef WANMUX_CLI_H
#define WANMUX_CLI_H

#include <stddef.h>

#include "wanmux/admin.h"
#include "wanmux/log.h"

#include "wanmux/config.h"
#include "wanmux/tunnel.h"

/* The caller's option ids for the shared options (-1: not offered). */
struct cli_tunnel_ids {
	int log_level;
	int compress;
	int stream_window;
	int session_window;
	int max_buffer;
	int max_session_buffer;
	int rekey_after;    /* --rekey-after DURATION */
	int rekey_bytes;    /* --rekey-bytes SIZE */
	int resume_timeout; /* --resume-timeout DURATION */
	int duplicate;	    /* --duplicate auto|on|off */
	int queue_cap;	    /* --queue-cap on|off */
	int tunnel_rcvbuf;  /* --tunnel-rcvbuf SIZE|auto */
};

/*
 * Applies the shared options in cfg: log level (log_init with prog), then
 * tc's codec, duplication mode, windows, pool limit and rekey budgets, and the process buffer
 * budget (relay_set_budget). tc must hold defaults (tunnel_config_defaults). Returns 0, or
 * WM_ERR_PARSE with "bad --NAME 'VALUE': ..." in err.
 */
int cli_tunnel_options(const struct config *cfg, const struct cli_tunnel_ids *ids, const char *prog,
		       struct tunnel_config *tc, char *err, size_t errlen);

/*
 * --admin [ADDR:]PORT (ADDR defaults to 127.0.0.1) and --admin-allow CIDR
 * (repeatable) into out; out->enabled stays false without --admin. Returns
 * 0, or WM_ERR_PARSE with "bad --admin ..." in err (out->allow then freed).
 */
int cli_admin_options(const struct config *cfg, int admin_id, int allow_id,
		      struct admin_options *out, char *err, size_t errlen);
/* Settings of the whole process, applied by cli_process_apply. */
struct cli_process {
	enum log_level log_level; /* LOG_LEVEL_INFO when not given */
	size_t budget;		  /* --max-buffer; BUDGET_DEFAULT_LIMIT when not given */
};

/*
 * Parses the shared options into tc (which must hold defaults) and proc,
 * changing nothing else: a reload can refuse the result. On error returns
 * WM_ERR_PARSE with "bad --NAME 'VALUE': ..." in err and the caller's id of
 * the bad option in *bad_id (-1 on success).
 */
int cli_tunnel_parse(const struct config *cfg, const struct cli_tunnel_ids *ids,
		     struct tunnel_config *tc, struct cli_process *proc, int *bad_id, char *err,
		     size_t errlen);

/* Sets the log level (log_init with prog) and the process buffer budget. */
void cli_process_apply(const char *prog, const struct cli_process *proc);

/*
 * Allocator settings for a daemon, before its first allocation: glibc trims
 * the heap once 128 KiB at its top are free and moves its mmap threshold
 * with what was freed, so the 64 KiB chains a tunnel allocates and frees
 * for every DATA frame of 64 KiB made the heap shrink and fault back in
 * (~180 page faults per MB, server CPU +30 % per GB on loopback text).
 * Freed memory up to 8 MiB is kept; blocks of 1 MiB and more are mmapped.
 */
void cli_process_init(void);

/*
 * --drain-timeout (option id): seconds unless a unit is given, 0 to 24h;
 * *ms keeps its value (the default) when the option is unset. WM_OK, or
 * WM_ERR_PARSE with one line in err.
 */
int cli_drain_timeout(const struct config *cfg, int id, uint64_t *ms, char *err, size_t errlen);

#endif
