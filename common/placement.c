/*
 * Arrival estimates and room of one path from a TCP_INFO snapshot, for the
 * session's scheduler. Arithmetic only: the tunnel samples, the session
 * decides.
 */
#include <string.h>

#include "wanmux/err.h"
#include "wanmux/placement.h"

static const char *const dup_names[] = {
    [PLACEMENT_DUP_AUTO] = "auto",
    [PLACEMENT_DUP_ON] = "on",
    [PLACEMENT_DUP_OFF] = "off",
};

int placement_dup_parse(const char *s, enum placement_dup *out)
{
	if (s == NULL)
		return WM_ERR_PARSE;
	for (size_t i = 0; i < sizeof(dup_names) / sizeof(dup_names[0]); i++) {
		if (strcmp(s, dup_names[i]) == 0) {
			*out = (enum placement_dup)i;
			return WM_OK;
		}
	}
	return WM_ERR_PARSE;
}

const char *placement_dup_name(enum placement_dup mode)
{
	if ((size_t)mode >= sizeof(dup_names) / sizeof(dup_names[0]))
		return "?";
	return dup_names[mode];
}

/* a * b / c without overflow (a window times a million can pass 2^64). */
static uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c)
{
	double r = (double)a * (double)b / (double)c;
	if (r >= 18446744073709551615.0)
		return UINT64_MAX;
	return (uint64_t)r;
}

static uint64_t rtt_us(const struct placement_info *pi)
{
	return pi->srtt_us != 0 ? pi->srtt_us : PLACEMENT_DEFAULT_RTT_US;
}

uint64_t placement_rate(const struct placement_info *pi)
{
	uint64_t by_window = mul_div((uint64_t)pi->cwnd * pi->mss, 1000000u, rtt_us(pi));
	uint64_t rate = pi->delivery_rate > by_window ? pi->delivery_rate : by_window;
	if (pi->pacing_rate != 0 && rate > pi->pacing_rate)
		rate = pi->pacing_rate;
	return rate > 0 ? rate : 1;
}

uint64_t placement_cwnd_room(const struct placement_info *pi)
{
	if (pi->cwnd <= pi->unacked)
		return 0;
	return (uint64_t)(pi->cwnd - pi->unacked) * pi->mss;
}

/* What waits to leave ahead of a new frame. */
static uint64_t ahead(const struct placement_info *pi, size_t placed)
{
	return (uint64_t)pi->queued + pi->notsent + placed;
}

/*
 * How long bytes that do not fit in the open window wait: until ACKs free a
 * segment for each of them. With cwnd segments in flight the ACKs come an
 * RTT/cwnd apart, and a segment frees only when the whole of it is
 * acknowledged. Never less than the bytes at the window's rate; on a tunnel
 * that carries a few small frames in BBR's PROBE_RTT (cwnd 4, every 10 s when
 * its RTT samples never beat the old minimum) a quarter RTT or more where a
 * rate in bytes said milliseconds (satellite echoes waited 100-300 ms in the
 * kernel behind cwnd 4 while another tunnel idled).
 */
static uint64_t wait_for_window(const struct placement_info *pi, uint64_t over, uint64_t rtt)
{
	uint64_t mss = pi->mss != 0 ? pi->mss : 1;
	return mul_div((over + mss - 1) / mss, rtt, pi->cwnd != 0 ? pi->cwnd : 1);
}

uint64_t placement_eta_us(const struct placement_info *pi, size_t placed, size_t len)
{
	uint64_t rtt = rtt_us(pi);
	uint64_t eta = rtt / 2;
	uint64_t need = ahead(pi, placed) + len;
	uint64_t open = placement_cwnd_room(pi);
	uint64_t wait = need > open ? wait_for_window(pi, need - open, rtt) : 0;
	/* Paced, the bytes leave no sooner than at the pacing rate, open
	 * window or not. */
	uint64_t paced = pi->pacing_rate != 0 ? mul_div(need, 1000000u, pi->pacing_rate) : 0;
	eta += wait > paced ? wait : paced;
	/* A hole the peer waits on: what follows reaches its TCP but not the
	 * session until the retransmission does, an RTO on a sparse tunnel.
	 * Echoes and their copies were held 1.2 s on two such tunnels at once
	 * while a third had none (satellite). */
	if (pi->lost > 0 || pi->sacked > 0)
		eta += rtt;
	return eta;
}

uint64_t placement_room(const struct placement_info *pi, size_t placed)
{
	uint64_t horizon = rtt_us(pi) / 4;
	if (horizon < PLACEMENT_HORIZON_MIN_US)
		horizon = PLACEMENT_HORIZON_MIN_US;
	uint64_t can = placement_cwnd_room(pi) + mul_div(placement_rate(pi), horizon, 1000000u);
	uint64_t waiting = ahead(pi, placed);
	return can > waiting ? can - waiting : 0;
}

bool placement_queueing(const struct placement_info *pi)
{
	if (pi->min_rtt_us == 0 || pi->srtt_us == 0)
		return false;
	uint32_t slack = pi->min_rtt_us / 16;
	if (slack < PLACEMENT_QUEUE_MIN_US)
		slack = PLACEMENT_QUEUE_MIN_US;
	return pi->srtt_us > pi->min_rtt_us + slack;
}

uint64_t placement_backlog(const struct placement_info *pi, size_t placed)
{
	return (uint64_t)pi->in_flight * pi->mss + ahead(pi, placed);
}

uint64_t placement_bdp_share(uint64_t bw, uint32_t min_rtt_us, unsigned pct)
{
	return mul_div(mul_div(bw, min_rtt_us, 1000000u), pct, 100u);
}

bool placement_clearly_better(uint64_t eta_a, uint64_t eta_b)
{
	uint64_t margin = eta_b / 8;
	if (margin < PLACEMENT_MARGIN_US)
		margin = PLACEMENT_MARGIN_US;
	return eta_a + margin < eta_b;
}
