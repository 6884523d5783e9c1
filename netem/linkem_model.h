/*
 * Impairment model of one direction of an emulated link: decides for each
 * packet whether it is lost, duplicated, reordered or queued, and when it
 * leaves. Pure logic on a caller-supplied clock (nanoseconds); it does no I/O,
 * never copies packets and never frees them.
 */
#ifndef LINKEM_MODEL_H
#define LINKEM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define LINKEM_NS_PER_MS 1000000ULL
#define LINKEM_NS_PER_SEC 1000000000ULL
#define LINKEM_NEVER UINT64_MAX	  /* "no deadline" / "down until told otherwise" */
#define LINKEM_DEFAULT_LIMIT 1000 /* packets, like netem */
#define LINKEM_MAX_LIMIT 1000000  /* packets: bounds memory whatever the spec says */
#define LINKEM_MAX_BLACKOUTS 32	  /* scheduled + runtime windows kept per direction */

enum linkem_jitter_dist {
	LINKEM_DIST_UNIFORM = 0, /* delay +- jitter, flat (netem's default) */
	LINKEM_DIST_NORMAL = 1,	 /* mean delay, standard deviation jitter */
};

/*
 * One direction's impairments. Probabilities are 0..1. Zero means "off" for
 * every field except limit_packets, which linkem_spec_init sets to
 * LINKEM_DEFAULT_LIMIT.
 */
struct linkem_spec {
	uint64_t delay_ns;
	uint64_t jitter_ns;
	enum linkem_jitter_dist dist;
	double loss;	   /* independent random loss */
	int ge;		   /* Gilbert-Elliott loss on (replaces loss) */
	double ge_p;	   /* good -> bad transition probability */
	double ge_r;	   /* bad -> good transition probability */
	double ge_h;	   /* loss probability in the bad state ("1-h") */
	double ge_k;	   /* loss probability in the good state ("1-k") */
	uint64_t rate_bps; /* bits per second; 0 = unlimited */
	uint32_t limit_packets;
	uint64_t limit_bytes; /* 0 = no byte limit */
	double reorder;	      /* share of packets sent at once, ahead of the queue */
	double duplicate;     /* share of packets sent twice */
};

/* Why a packet did not (or, for a duplicate copy, its twin did not) get queued. */
enum linkem_reason {
	LINKEM_DROP_LOSS = 0,
	LINKEM_DROP_LIMIT = 1,
	LINKEM_DROP_BLACKOUT = 2,
	LINKEM_DROP_REASONS = 3,
};

struct linkem_stats {
	uint64_t in;  /* packets offered to linkem_model_push */
	uint64_t out; /* packet copies returned by linkem_model_pop */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t duplicated; /* extra copies made (then lost, dropped or queued) */
	uint64_t reordered;  /* copies sent ahead of the queue */
	uint64_t dropped[LINKEM_DROP_REASONS];
};

/* Resets spec to "no impairment" with the default queue limit. */
void linkem_spec_init(struct linkem_spec *spec);

/*
 * Parses "key=value,key=value" (see README.md for the keys) on top of the
 * current contents of spec, so later keys override earlier ones. Returns 0, or
 * -1 with a one-line English reason in err (err_len bytes, always terminated).
 */
int linkem_spec_parse(struct linkem_spec *spec, const char *text, char *err, size_t err_len);

/* Writes a human-readable summary of spec into buf (always terminated). */
void linkem_spec_format(const struct linkem_spec *spec, char *buf, size_t buf_len);

/* Short name of a drop reason for counters ("loss", "limit", "blackout"). */
const char *linkem_reason_name(enum linkem_reason reason);

/*
 * Returns a model for one direction with its own PRNG stream derived from seed,
 * or NULL when out of memory. The spec is copied.
 */
struct linkem_model *linkem_model_new(const struct linkem_spec *spec, uint64_t seed);

/*
 * Frees the model. Packets still queued are not freed: the caller drains them
 * first with linkem_model_pop(model, LINKEM_NEVER, ...). NULL is a no-op.
 */
void linkem_model_free(struct linkem_model *model);

/*
 * Offers a packet of len bytes arriving at now_ns. Returns how many copies of
 * pkt the model now holds (0, 1 or 2); each copy comes back once from
 * linkem_model_pop, so the caller keeps pkt alive until it has seen them all
 * (and frees it itself when 0 is returned). Returns -1 only when out of memory
 * (the packet is then counted as a limit drop).
 */
int linkem_model_push(struct linkem_model *model, uint64_t now_ns, void *pkt, size_t len);

/* Release time of the next packet copy, or LINKEM_NEVER if none is queued. */
uint64_t linkem_model_next_release(const struct linkem_model *model);

/*
 * Returns the next packet copy due at or before now_ns (its length in *len),
 * or NULL if none is due. Ownership of one copy passes back to the caller.
 */
void *linkem_model_pop(struct linkem_model *model, uint64_t now_ns, size_t *len);

/* Packet copies currently held. */
size_t linkem_model_queued(const struct linkem_model *model);

/*
 * Takes the link down from start_ns until end_ns (LINKEM_NEVER: until
 * linkem_model_up). Packets arriving in [start, end) are dropped; packets
 * already queued still leave. Returns -1 if LINKEM_MAX_BLACKOUTS windows are
 * already pending.
 */
int linkem_model_blackout(struct linkem_model *model, uint64_t start_ns, uint64_t end_ns);

/* Ends every blackout window that covers now_ns (they stop at now_ns). */
void linkem_model_up(struct linkem_model *model, uint64_t now_ns);

/* Nonzero if the link is down at now_ns. */
int linkem_model_is_down(const struct linkem_model *model, uint64_t now_ns);

/* Copies the counters into *stats. */
void linkem_model_stats(const struct linkem_model *model, struct linkem_stats *stats);

#endif
