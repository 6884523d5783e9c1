/* Options shared by wanmux-client and wanmux-server. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "wanmux/acl.h"
#include "wanmux/budget.h"
#include "wanmux/cli.h"
#include "wanmux/err.h"
#include "wanmux/log.h"
#include "wanmux/relay.h"

/* A size option in [min, max]; untouched *out when the option is absent. */
static int size_value(const struct config *cfg, int id, const char *name, uint64_t min,
		      uint64_t max, const char *range, uint64_t *out, char *err, size_t errlen)
{
	const char *v = id >= 0 ? config_get(cfg, id) : NULL;
	if (v == NULL)
		return WM_OK;
	if (config_parse_uint(v, min, max, out) != WM_OK) {
		snprintf(err, errlen, "bad --%s '%s': expected a size %s", name, v, range);
		return WM_ERR_PARSE;
	}
	return WM_OK;
}

/*
 * The rekey budgets: 0 turns one off; otherwise a time budget below a second
 * or a byte budget below 1M would spend the tunnel's time rekeying.
 */
static int rekey_options(const struct config *cfg, const struct cli_tunnel_ids *ids,
			 struct tunnel_config *tc, int *bad_id, char *err, size_t errlen)
{
	const char *v = ids->rekey_after >= 0 ? config_get(cfg, ids->rekey_after) : NULL;
	uint64_t n;

	if (v != NULL) {
		if (config_parse_duration_ms(v, &n) != WM_OK ||
		    (n != 0 && (n < 1000 || n > 7 * 24 * 3600 * 1000ull))) {
			snprintf(err, errlen,
				 "bad --rekey-after '%s': expected 0 (off) or a duration from 1s "
				 "to 168h",
				 v);
			return WM_ERR_PARSE;
		}
		tc->rekey_after_ms = n;
	}
	*bad_id = ids->rekey_bytes;
	v = ids->rekey_bytes >= 0 ? config_get(cfg, ids->rekey_bytes) : NULL;
	if (v != NULL) {
		if (config_parse_uint(v, 0, (uint64_t)1 << 50, &n) != WM_OK ||
		    (n != 0 && n < (1u << 20))) {
			snprintf(err, errlen,
				 "bad --rekey-bytes '%s': expected 0 (off) or a size from 1M", v);
			return WM_ERR_PARSE;
		}
		tc->rekey_bytes = n;
	}
	return WM_OK;
}

/*
 * --tunnel-rcvbuf: "auto" keeps the kernel's receive autotuning (0);
 * otherwise the SO_RCVBUF size of every tunnel socket, from 64K (below that
 * a satellite link crawls) to 512M (the kernel doubles it into an int).
 */
static int rcvbuf_option(const struct config *cfg, int id, struct tunnel_config *tc, char *err,
			 size_t errlen)
{
	const char *v = id >= 0 ? config_get(cfg, id) : NULL;
	uint64_t n;

	if (v == NULL)
		return WM_OK;
	if (strcmp(v, "auto") == 0) {
		tc->tuning.rcvbuf = 0;
		return WM_OK;
	}
	if (config_parse_uint(v, 64u << 10, 512u << 20, &n) != WM_OK) {
		snprintf(err, errlen,
			 "bad --tunnel-rcvbuf '%s': expected auto or a size from 64K to 512M", v);
		return WM_ERR_PARSE;
	}
	tc->tuning.rcvbuf = (uint32_t)n;
	return WM_OK;
}

int cli_tunnel_parse(const struct config *cfg, const struct cli_tunnel_ids *ids,
		     struct tunnel_config *tc, struct cli_process *proc, int *bad_id, char *err,
		     size_t errlen)
{
	const char *v;
	uint64_t n;
	int rc;

	proc->log_level = LOG_LEVEL_INFO;
	proc->budget = BUDGET_DEFAULT_LIMIT;
	*bad_id = ids->log_level;
	if (ids->log_level >= 0 && (v = config_get(cfg, ids->log_level)) != NULL &&
	    log_level_parse(v, &proc->log_level) != WM_OK) {
		snprintf(err, errlen, "bad --log-level '%s': use error, warn, info or debug", v);
		return WM_ERR_PARSE;
	}
	*bad_id = ids->compress;
	if (ids->compress >= 0 && (v = config_get(cfg, ids->compress)) != NULL &&
	    compress_mode_parse(v, &tc->compress) != WM_OK) {
		snprintf(err, errlen, "bad --compress '%s': use auto, lz4, zlib or none", v);
		return WM_ERR_PARSE;
	}
	*bad_id = ids->duplicate;
	if (ids->duplicate >= 0 && (v = config_get(cfg, ids->duplicate)) != NULL &&
	    placement_dup_parse(v, &tc->duplicate) != WM_OK) {
		snprintf(err, errlen, "bad --duplicate '%s': use auto, on or off", v);
		return WM_ERR_PARSE;
	}
	*bad_id = ids->queue_cap;
	if (ids->queue_cap >= 0 && (v = config_get(cfg, ids->queue_cap)) != NULL) {
		if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
			snprintf(err, errlen, "bad --queue-cap '%s': use on or off", v);
			return WM_ERR_PARSE;
		}
		tc->queue_cap = strcmp(v, "on") == 0;
	}
	*bad_id = ids->stream_window;
	n = tc->params.stream_window;
	rc = size_value(cfg, ids->stream_window, "stream-window", SESSION_MIN_WINDOW, 1u << 30,
			"from 64K to 1G", &n, err, errlen);
	if (rc != WM_OK)
		return rc;
	tc->params.stream_window = (uint32_t)n;
	*bad_id = ids->session_window;
	n = tc->params.session_window;
	rc = size_value(cfg, ids->session_window, "session-window", SESSION_MIN_WINDOW, 1u << 30,
			"from 64K to 1G", &n, err, errlen);
	if (rc != WM_OK)
		return rc;
	tc->params.session_window = (uint32_t)n;
	*bad_id = ids->max_session_buffer;
	n = tc->pool_limit;
	rc = size_value(cfg, ids->max_session_buffer, "max-session-buffer", 1u << 20,
			(uint64_t)1 << 40, "from 1M", &n, err, errlen);
	if (rc != WM_OK)
		return rc;
	tc->pool_limit = (size_t)n;
	*bad_id = ids->max_buffer;
	n = proc->budget;
	rc = size_value(cfg, ids->max_buffer, "max-buffer", 1u << 20, (uint64_t)1 << 40, "from 1M",
			&n, err, errlen);
	if (rc != WM_OK)
		return rc;
	proc->budget = (size_t)n;
	*bad_id = ids->tunnel_rcvbuf;
	rc = rcvbuf_option(cfg, ids->tunnel_rcvbuf, tc, err, errlen);
	if (rc != WM_OK)
		return rc;
	*bad_id = ids->rekey_after;
	rc = rekey_options(cfg, ids, tc, bad_id, err, errlen);
	if (rc != WM_OK)
		return rc;
	*bad_id = ids->resume_timeout;
	v = ids->resume_timeout >= 0 ? config_get(cfg, ids->resume_timeout) : NULL;
	if (v != NULL) {
		if (config_parse_duration_ms(v, &n) != WM_OK || n > 24 * 3600 * 1000ull) {
			snprintf(err, errlen,
				 "bad --resume-timeout '%s': expected 0 (no resume) to 24h "
				 "(seconds unless a unit is given)",
				 v);
			return WM_ERR_PARSE;
		}
		tc->resume_timeout_ms = (uint32_t)n;
	}
	*bad_id = -1;
	return WM_OK;
}

void cli_process_init(void)
{
	/* Setting the mmap threshold also stops glibc from moving it. */
	mallopt(M_TRIM_THRESHOLD, 8 << 20);
	mallopt(M_MMAP_THRESHOLD, 1 << 20);
}

void cli_process_apply(const char *prog, const struct cli_process *proc)
{
	log_init(prog, proc->log_level);
	relay_set_budget(proc->budget);
}

int cli_tunnel_options(const struct config *cfg, const struct cli_tunnel_ids *ids, const char *prog,
		       struct tunnel_config *tc, char *err, size_t errlen)
{
	struct cli_process proc;
	int bad_id;
	int rc = cli_tunnel_parse(cfg, ids, tc, &proc, &bad_id, err, errlen);

	if (rc == WM_OK)
		cli_process_apply(prog, &proc);
	return rc;
}

int cli_admin_options(const struct config *cfg, int admin_id, int allow_id,
		      struct admin_options *out, char *err, size_t errlen)
{
	const char *v = config_get(cfg, admin_id);
	char why[256];

	memset(out, 0, sizeof(*out));
	if (v == NULL) {
		if (config_count(cfg, allow_id) > 0) {
			snprintf(err, errlen, "--admin-allow needs --admin");
			return WM_ERR_PARSE;
		}
		return WM_OK;
	}
	if (netaddr_parse_port(v, &out->bind.port) == 0) {
		snprintf(out->bind.host, sizeof(out->bind.host), "127.0.0.1");
	} else if (netaddr_parse_hostport(v, &out->bind, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "bad --admin '%s': %s", v, why);
		return WM_ERR_PARSE;
	}
	size_t n = config_count(cfg, allow_id);
	if (n > 0) {
		out->allow = acl_new();
		if (out->allow == NULL) {
			snprintf(err, errlen, "out of memory");
			return WM_ERR_NOMEM;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const char *rule = config_get_nth(cfg, allow_id, i);
		/* Sources are addresses: a CIDR or an address, no names, no ports. */
		struct sockaddr_storage ss;
		socklen_t sl;
		char addr[NETADDR_HOST_MAX];
		snprintf(addr, sizeof(addr), "%s", rule[0] == '[' ? rule + 1 : rule);
		addr[strcspn(addr, "/]")] = '\0';
		if (!netaddr_literal(addr, 0, &ss, &sl) ||
		    acl_add(out->allow, rule, why, sizeof(why)) != WM_OK) {
			snprintf(err, errlen, "bad --admin-allow '%s': expected an address or CIDR",
				 rule);
			acl_free(out->allow);
			out->allow = NULL;
			return WM_ERR_PARSE;
		}
	}
	out->enabled = true;
	return WM_OK;
}

int cli_drain_timeout(const struct config *cfg, int id, uint64_t *ms, char *err, size_t errlen)
{
	const char *v = config_get(cfg, id);
	uint64_t n;

	if (v == NULL)
		return WM_OK;
	if (config_parse_duration_ms(v, &n) != WM_OK || n > 24 * 3600 * 1000ull)
		return config_value_error(cfg, id, SIZE_MAX, err, errlen,
					  "bad --drain-timeout '%s': expected 0 to 24h (seconds "
					  "unless a unit is given)",
					  v);
	*ms = n;
	return WM_OK;
}
