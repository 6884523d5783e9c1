/*
 * In-band rekeying of a tunnel's two record ciphers: a fresh X25519 exchange
 * inside the tunnel, chained from the handshake's rekey secret, so the TCP
 * connection (and its congestion state) stays and keys captured later do not
 * open records sent before. A state machine without I/O or clock: the tunnel
 * passes time and byte counts in, seals each frame handed out alone in one
 * record, and says when a received record was fully processed.
 *
 * Client = initiator I, server = responder R; frames REKEY (frame.h):
 *
 *   R -> I  REQUEST      optional: R's budget is spent, I should start
 *   I -> R  OFFER(e_i)   fresh ephemeral; I goes on sealing with its old key
 *   R -> I  ANSWER(e_r)  R derives, seals ANSWER with its old key, then
 *                        switches its sending key; I switches its receiving
 *                        key right after the record that carried ANSWER
 *   I -> R  DONE         I seals DONE with its old key, then switches; R
 *                        switches its receiving key after that record
 *
 *   ck, k_i2r, k_r2i = HKDF(ck, X25519(e_i, e_r) | e_i.pub | e_r.pub)
 *
 * Only I starts an exchange and only one is outstanding, so two rekeys never
 * cross and neither side waits for the other to start. ANSWER and DONE must be
 * the last frame of their record. R answers at most REKEY_PEER_BURST OFFERs at
 * once and one per REKEY_PEER_INTERVAL_MS after that; more is refused.
 */
#ifndef WANMUX_REKEY_H
#define WANMUX_REKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "wanmux/frame.h"
#include "wanmux/handshake.h"
#include "wanmux/record.h"

/* The initiator starts exchanges at least this far apart, whatever the budget. */
#define REKEY_MIN_INTERVAL_MS 100
/* The responder's allowance: half the initiator's floor, plus a burst for
 * OFFERs that queueing delay bunched together. */
#define REKEY_PEER_INTERVAL_MS 50
#define REKEY_PEER_BURST 8

struct rekey;

struct rekey_config {
	uint64_t after_ms;    /* time budget of one pair of keys; 0 = none */
	uint64_t after_bytes; /* byte budget (sent + received on the wire); 0 = none */
	uint64_t timeout_ms;  /* an exchange unanswered for this long fails */
};

/*
 * A rekey state for one tunnel. secret is handshake_rekey_secret(); tx and rx
 * are the tunnel's ciphers, borrowed (they must outlive the rekey) and
 * switched in place. cfg is copied. NULL when out of memory.
 */
struct rekey *rekey_new(bool initiator, const uint8_t secret[HANDSHAKE_HASH_LEN],
			struct record_cipher *tx, struct record_cipher *rx,
			const struct rekey_config *cfg, uint64_t now_ms);

/* Wipes and frees r; NULL is a no-op. */
void rekey_free(struct rekey *r);

/*
 * Call from a timer and before sealing: bytes is the tunnel's wire total, both
 * directions. When the budget is spent the initiator queues an OFFER (if
 * REKEY_MIN_INTERVAL_MS passed since its last one) and the responder a
 * REQUEST. Returns 0, or WM_ERR_LIMIT when the current exchange has waited
 * longer than timeout_ms for the peer (the tunnel should close).
 */
int rekey_tick(struct rekey *r, uint64_t now_ms, uint64_t bytes);

/*
 * The frame to send now, if any (true, *out filled). The caller seals it alone
 * in one record and calls rekey_frame_sent right after that record is sealed.
 */
bool rekey_next_frame(const struct rekey *r, struct frame *out);

/* The record with rekey_next_frame's frame is sealed: switches the sending
 * key when that frame was ANSWER or DONE. */
void rekey_frame_sent(struct rekey *r, uint64_t now_ms);

/*
 * A REKEY frame from the peer; last says whether it ended its record. May
 * queue a frame (see rekey_next_frame). Returns 0, WM_ERR_MALFORMED for a step
 * this side does not take now (a second OFFER while one is outstanding, an
 * ANSWER nobody asked for, ANSWER or DONE not last, a bad public key), or
 * WM_ERR_LIMIT for OFFERs faster than the responder's allowance.
 */
int rekey_on_frame(struct rekey *r, const struct frame *f, bool last, uint64_t now_ms);

/* Every frame of the record that was just opened has been handled: switches
 * the receiving key when that record ended the peer's old key. */
void rekey_record_opened(struct rekey *r, uint64_t now_ms);

/* Where the exchange stands ("idle", "offered, waiting for ANSWER", ...), for logs. */
const char *rekey_state_name(const struct rekey *r);

/* Completed rekeys (both directions switched on this side). */
uint64_t rekey_count(const struct rekey *r);

#endif
