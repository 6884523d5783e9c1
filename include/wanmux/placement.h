/*
 * Where a frame should go: from a snapshot of one path (the kernel's TCP_INFO
 * of its tunnel plus what waits in user space), when a frame placed on it now
 * would reach the peer, and how much the path can take before what it takes
 * only waits on it. Pure arithmetic: no sockets, no clocks (the snapshot
 * carries its time), so the session's scheduler and its tests share it.
 * Also the --duplicate mode (loss-tail duplication) and its parser.
 */
#ifndef WANMUX_PLACEMENT_H
#define WANMUX_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One path as the tunnel sees it (all from TCP_INFO but queued and now_us). */
struct placement_info {
	uint64_t now_us;	/* monotonic time of the sample, microseconds */
	uint32_t cwnd;		/* congestion window, segments */
	uint32_t mss;		/* send MSS, bytes */
	uint32_t unacked;	/* segments in flight */
	uint32_t notsent;	/* bytes in the kernel not sent yet */
	uint64_t delivery_rate; /* bytes per second, the kernel's estimate; 0 unknown */
	/* Bytes per second the kernel lets it send at (pacing); 0 unknown or
	 * unlimited. BBR paces even inside the window: after a loss on a
	 * sparse tunnel its long-term (policer) estimate can hold it at 100
	 * kbit/s for 48 rounds, half a minute at 600 ms. */
	uint64_t pacing_rate;
	uint32_t srtt_us; /* smoothed RTT; 0 unknown */
	uint32_t retrans; /* segments retransmitted over the connection's life */
	uint32_t lost;	  /* segments presumed lost now */
	/* Segments the peer acknowledged selectively, above a hole: its TCP
	 * holds them, and all that follows, until the hole is repaired. */
	uint32_t sacked;
	/* Segments received out of order over the connection's life: loss
	 * (or reordering) on the way to us, which the retransmit counter of a
	 * side that sends little never shows; 0 when the kernel cannot say. */
	uint32_t rcv_ooo;
	size_t queued; /* bytes in user space waiting for the socket */
	/* The congestion control is still finding the path's rate: BBR's
	 * STARTUP (TCP_CC_INFO pacing gain 2.89), or slow start (cwnd below
	 * ssthresh) for the others. Its window then grows by what it delivers. */
	bool startup;
	/* BBR's estimate of the bottleneck's rate, bytes per second
	 * (TCP_CC_INFO); 0 unknown or another congestion control. */
	uint64_t btl_bw;
	uint32_t min_rtt_us; /* the lowest RTT the connection saw; 0 unknown */
	/* Segments in the network: unacked less SACKed and lost, plus those
	 * retransmitted and not yet acknowledged. */
	uint32_t in_flight;
	uint64_t bytes_acked; /* bytes the peer acknowledged over the connection's life */
};

/* An RTT assumed before the kernel has measured one. */
#define PLACEMENT_DEFAULT_RTT_US 100000u
/* What a path may queue beyond its open window: what it sends in a quarter
 * RTT, and at least this long a stretch. Enough that the kernel never runs dry
 * between two pulls (the tunnel pulls again within milliseconds), little
 * enough that a cold path (10 segments, 600 ms) takes tens of KiB, not a
 * window it then needs seconds to send. */
#define PLACEMENT_HORIZON_MIN_US 20000u
/* One path is "clearly better" when it gets a frame there sooner by this
 * much, or by an eighth of the other's estimate if that is more. */
#define PLACEMENT_MARGIN_US 1000u
/* A frame left for a better path is taken by the path that pulls anyway
 * once it waited this long (or at the next session_tick). */
#define PLACEMENT_DEFER_MAX_US 5000u
/* A snapshot older than this says nothing about a path's room now (an idle
 * tunnel samples on its 250 ms tick). */
#define PLACEMENT_STALE_US 1000000u
/* A burst of a stream this long after it had nothing to send is
 * interactive (a request, a keystroke, an echo), not a bulk source that the
 * tunnel drains faster than it fills. */
#define PLACEMENT_IDLE_US 2000u
/* Loss seen this recently keeps --duplicate auto duplicating. */
#define PLACEMENT_LOSS_HOLD_US 10000000u

/* What bulk streams keep in flight and queued on a path while interactive
 * streams share its bottleneck (--queue-cap auto), in percent of BBR's
 * bandwidth-delay product: the queue they build there stays under a tenth
 * of the RTT. BBR's own window is twice the product, and on a buffer of
 * half of it (satellite) its probes filled it to drops that took every
 * tunnel's echoes with them (p99 0.9-1.4 s at 600 ms). */
#define PLACEMENT_QUEUE_CAP_PCT 110u

/* --duplicate: send small frames of interactive streams on two paths. */
enum placement_dup {
	PLACEMENT_DUP_AUTO, /* only while loss is seen and there are >= 2 paths */
	PLACEMENT_DUP_ON,   /* always with >= 2 paths */
	PLACEMENT_DUP_OFF,
};

/* "auto", "on", "off" into *out: 0, or WM_ERR_PARSE. */
int placement_dup_parse(const char *s, enum placement_dup *out);
const char *placement_dup_name(enum placement_dup mode);

/* Bytes per second the path sends at: the kernel's delivery rate or a
 * window per RTT, whichever is more, and no more than its pacing rate (the
 * delivery rate of an idle path is
 * app-limited and low); at least 1. A cold path has a small value of both. */
uint64_t placement_rate(const struct placement_info *pi);

/* Bytes the congestion window leaves open: (cwnd - unacked) * mss. */
uint64_t placement_cwnd_room(const struct placement_info *pi);

/*
 * Microseconds until a frame of len bytes placed on the path now reaches the
 * peer, placed bytes having been put on it since the snapshot: half an RTT
 * when everything ahead of it and it fit in the open window; else half an RTT
 * plus the time the ACKs that free a segment for each byte that does not fit
 * take to come, an RTT/cwnd apart (a sparse tunnel with a full window of 4
 * holds a small frame a quarter RTT); and never sooner than everything ahead
 * of it and it leave at the pacing rate. Lost segments in flight, or
 * segments the peer acknowledged above a hole, add an RTT: the peer's TCP
 * holds everything behind the hole until it is repaired.
 */
uint64_t placement_eta_us(const struct placement_info *pi, size_t placed, size_t len);

/*
 * Bytes the path can take now, placed bytes having been put on it since the
 * snapshot: the open window plus what it sends within the horizon
 * (PLACEMENT_HORIZON_MIN_US or srtt/4), less what waits already; >= 0.
 */
uint64_t placement_room(const struct placement_info *pi, size_t placed);

/* A queue under this is no queue (placement_queueing): a tenth of the
 * satellite RTT's sixteenth is noise, and so is a few ms on a LAN. */
#define PLACEMENT_QUEUE_MIN_US 5000u

/* Whether the path's smoothed RTT is over its minimum by a sixteenth of it
 * or PLACEMENT_QUEUE_MIN_US, whichever is more: a queue is building where
 * its packets wait. Only then does --queue-cap hold bulk back; a download
 * that its sender's CPU limits (the branch text download) builds none and
 * lost 18 % to the cap. */
bool placement_queueing(const struct placement_info *pi);

/* Bytes the path has in flight and waiting to leave (its queues and placed
 * bytes since the snapshot). */
uint64_t placement_backlog(const struct placement_info *pi, size_t placed);

/* pct percent of the bandwidth-delay product of a bottleneck of bw bytes per
 * second at min_rtt_us. */
uint64_t placement_bdp_share(uint64_t bw, uint32_t min_rtt_us, unsigned pct);

/* Whether a frame reaching the peer in eta_a microseconds is clearly better
 * placed than one reaching it in eta_b (PLACEMENT_MARGIN_US). */
bool placement_clearly_better(uint64_t eta_a, uint64_t eta_b);

#endif
