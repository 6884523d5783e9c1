/*
 * The rekey exchange of rekey.h: who may send which step when, the X25519
 * and KDF work, and the switch of each cipher at its record boundary. No
 * I/O; the tunnel carries the frames. Secrets live in sodium_malloc memory.
 */
#include "wanmux/rekey.h"

#include <string.h>

#include <sodium.h>

#include "wanmux/err.h"

enum rekey_state {
	REKEY_IDLE,
	REKEY_REQUESTED,  /* responder: asked for an OFFER */
	REKEY_OFFERED,	  /* initiator: OFFER queued or sent, waits for ANSWER */
	REKEY_CONFIRMING, /* initiator: ANSWER taken, DONE queued */
	REKEY_ANSWERED,	  /* responder: ANSWER queued or sent, waits for DONE */
};

/* One sodium_malloc block: every secret below is guarded and wiped on free. */
struct rekey {
	uint8_t ck[HANDSHAKE_HASH_LEN];
	uint8_t e_priv[crypto_scalarmult_SCALARBYTES];
	uint8_t e_pub[crypto_scalarmult_BYTES];
	uint8_t next_tx[RECORD_KEY_LEN];
	uint8_t next_rx[RECORD_KEY_LEN];
	struct record_cipher *tx;
	struct record_cipher *rx;
	struct rekey_config cfg;
	bool initiator;
	enum rekey_state state;
	uint8_t out_step; /* FRAME_REKEY_* waiting to be sealed, 0 = none */
	bool tx_switched; /* responder: ANSWER sealed, sending with the new key */
	bool rx_due;	  /* switch the receiving key after the current record */
	bool wanted;	  /* initiator: the responder asked */
	uint64_t since_ms;
	uint64_t epoch_ms; /* when the current keys started */
	uint64_t epoch_bytes;
	uint64_t bytes;
	uint64_t last_offer_ms;
	uint64_t peer_tat_ms; /* responder: GCRA theoretical arrival time of OFFERs */
	uint64_t count;
};

struct rekey *rekey_new(bool initiator, const uint8_t secret[HANDSHAKE_HASH_LEN],
			struct record_cipher *tx, struct record_cipher *rx,
			const struct rekey_config *cfg, uint64_t now_ms)
{
	struct rekey *r;

	if (secret == NULL || tx == NULL || rx == NULL || cfg == NULL || sodium_init() < 0)
		return NULL;
	r = sodium_malloc(sizeof *r);
	if (r == NULL)
		return NULL;
	memset(r, 0, sizeof *r);
	memcpy(r->ck, secret, sizeof r->ck);
	r->tx = tx;
	r->rx = rx;
	r->cfg = *cfg;
	r->initiator = initiator;
	r->state = REKEY_IDLE;
	r->since_ms = now_ms;
	r->epoch_ms = now_ms;
	r->last_offer_ms = now_ms;
	r->peer_tat_ms = now_ms;
	return r;
}

void rekey_free(struct rekey *r)
{
	if (r == NULL)
		return;
	sodium_free(r);
}

static void new_ephemeral(struct rekey *r)
{
	randombytes_buf(r->e_priv, sizeof r->e_priv);
	crypto_scalarmult_base(r->e_pub, r->e_priv);
}

/*
 * Derives the next keys from our ephemeral and the peer's public key, then
 * forgets the ephemeral: after this nothing on this side can recompute them.
 * Fails for a low-order peer key (an all-zero shared secret).
 */
static int derive(struct rekey *r, const uint8_t peer_pub[FRAME_REKEY_KEY_LEN])
{
	uint8_t dh[crypto_scalarmult_BYTES];
	uint8_t k_i2r[RECORD_KEY_LEN], k_r2i[RECORD_KEY_LEN];
	int rc = WM_OK;

	if (crypto_scalarmult(dh, r->e_priv, peer_pub) != 0) {
		rc = WM_ERR_MALFORMED;
		goto out;
	}
	if (r->initiator)
		handshake_rekey_kdf(r->ck, dh, r->e_pub, peer_pub, k_i2r, k_r2i);
	else
		handshake_rekey_kdf(r->ck, dh, peer_pub, r->e_pub, k_i2r, k_r2i);
	memcpy(r->next_tx, r->initiator ? k_i2r : k_r2i, RECORD_KEY_LEN);
	memcpy(r->next_rx, r->initiator ? k_r2i : k_i2r, RECORD_KEY_LEN);
out:
	sodium_memzero(r->e_priv, sizeof r->e_priv);
	sodium_memzero(dh, sizeof dh);
	sodium_memzero(k_i2r, sizeof k_i2r);
	sodium_memzero(k_r2i, sizeof k_r2i);
	return rc;
}

static void finish(struct rekey *r, uint64_t now_ms)
{
	r->state = REKEY_IDLE;
	r->since_ms = now_ms;
	r->epoch_ms = now_ms;
	r->epoch_bytes = r->bytes;
	r->tx_switched = false;
	r->count++;
}

static bool budget_spent(const struct rekey *r, uint64_t now_ms)
{
	if (r->cfg.after_ms > 0 && now_ms - r->epoch_ms >= r->cfg.after_ms)
		return true;
	return r->cfg.after_bytes > 0 && r->bytes - r->epoch_bytes >= r->cfg.after_bytes;
}

int rekey_tick(struct rekey *r, uint64_t now_ms, uint64_t bytes)
{
	r->bytes = bytes;
	if (r->state != REKEY_IDLE)
		return now_ms - r->since_ms > r->cfg.timeout_ms ? WM_ERR_LIMIT : WM_OK;
	if (!r->wanted && !budget_spent(r, now_ms))
		return WM_OK;
	if (!r->initiator) {
		r->state = REKEY_REQUESTED;
		r->out_step = FRAME_REKEY_REQUEST;
		r->since_ms = now_ms;
		return WM_OK;
	}
	/* A budget of a few bytes at gigabits would rekey without pause. */
	if (now_ms - r->last_offer_ms < REKEY_MIN_INTERVAL_MS)
		return WM_OK;
	new_ephemeral(r);
	r->state = REKEY_OFFERED;
	r->out_step = FRAME_REKEY_OFFER;
	r->since_ms = now_ms;
	r->last_offer_ms = now_ms;
	r->wanted = false;
	return WM_OK;
}

bool rekey_next_frame(const struct rekey *r, struct frame *out)
{
	if (r->out_step == 0)
		return false;
	memset(out, 0, sizeof(*out));
	out->type = FRAME_REKEY;
	out->flags = r->out_step;
	if (r->out_step == FRAME_REKEY_OFFER || r->out_step == FRAME_REKEY_ANSWER)
		memcpy(out->u.rekey_key, r->e_pub, FRAME_REKEY_KEY_LEN);
	return true;
}

void rekey_frame_sent(struct rekey *r, uint64_t now_ms)
{
	uint8_t step = r->out_step;

	r->out_step = 0;
	if (step != FRAME_REKEY_ANSWER && step != FRAME_REKEY_DONE)
		return;
	record_cipher_rekey(r->tx, r->next_tx);
	sodium_memzero(r->next_tx, sizeof r->next_tx);
	if (step == FRAME_REKEY_ANSWER)
		r->tx_switched = true;
	else
		finish(r, now_ms);
}

/* Responder: a GCRA (a token bucket of REKEY_PEER_BURST) on OFFER arrivals. */
static bool offer_allowed(struct rekey *r, uint64_t now_ms)
{
	if (r->peer_tat_ms < now_ms)
		r->peer_tat_ms = now_ms;
	if (r->peer_tat_ms - now_ms >= (uint64_t)REKEY_PEER_INTERVAL_MS * REKEY_PEER_BURST)
		return false;
	r->peer_tat_ms += REKEY_PEER_INTERVAL_MS;
	return true;
}

static int on_offer(struct rekey *r, const struct frame *f, uint64_t now_ms)
{
	int rc;

	if (r->initiator || (r->state != REKEY_IDLE && r->state != REKEY_REQUESTED))
		return WM_ERR_MALFORMED;
	/* Checked before any X25519: a flood costs a comparison. */
	if (!offer_allowed(r, now_ms))
		return WM_ERR_LIMIT;
	new_ephemeral(r);
	rc = derive(r, f->u.rekey_key);
	if (rc != WM_OK)
		return rc;
	r->state = REKEY_ANSWERED;
	r->out_step = FRAME_REKEY_ANSWER; /* replaces an unsent REQUEST */
	r->since_ms = now_ms;
	r->tx_switched = false;
	return WM_OK;
}

static int on_answer(struct rekey *r, const struct frame *f, bool last, uint64_t now_ms)
{
	int rc;

	/* An ANSWER before our OFFER left cannot answer it. */
	if (!r->initiator || r->state != REKEY_OFFERED || r->out_step != 0 || !last)
		return WM_ERR_MALFORMED;
	rc = derive(r, f->u.rekey_key);
	if (rc != WM_OK)
		return rc;
	r->rx_due = true;
	r->state = REKEY_CONFIRMING;
	r->out_step = FRAME_REKEY_DONE;
	r->since_ms = now_ms;
	return WM_OK;
}

int rekey_on_frame(struct rekey *r, const struct frame *f, bool last, uint64_t now_ms)
{
	if (f->type != FRAME_REKEY || r->rx_due)
		return WM_ERR_MALFORMED;
	switch (f->flags) {
	case FRAME_REKEY_REQUEST:
		if (!r->initiator)
			return WM_ERR_MALFORMED;
		/* One sent before our OFFER reached the server arrives while
		 * ours is outstanding; that exchange already answers it. */
		if (r->state == REKEY_IDLE)
			r->wanted = true;
		return WM_OK;
	case FRAME_REKEY_OFFER:
		return on_offer(r, f, now_ms);
	case FRAME_REKEY_ANSWER:
		return on_answer(r, f, last, now_ms);
	case FRAME_REKEY_DONE:
		if (r->initiator || r->state != REKEY_ANSWERED || !r->tx_switched || !last)
			return WM_ERR_MALFORMED;
		r->rx_due = true;
		return WM_OK;
	}
	return WM_ERR_MALFORMED;
}

void rekey_record_opened(struct rekey *r, uint64_t now_ms)
{
	if (!r->rx_due)
		return;
	record_cipher_rekey(r->rx, r->next_rx);
	sodium_memzero(r->next_rx, sizeof r->next_rx);
	r->rx_due = false;
	if (!r->initiator)
		finish(r, now_ms);
}

const char *rekey_state_name(const struct rekey *r)
{
	switch (r->state) {
	case REKEY_IDLE:
		return "idle";
	case REKEY_REQUESTED:
		return "requested, waiting for OFFER";
	case REKEY_OFFERED:
		return "offered, waiting for ANSWER";
	case REKEY_CONFIRMING:
		return "answered, DONE not yet sent";
	case REKEY_ANSWERED:
		return "answered, waiting for DONE";
	}
	return "?";
}

uint64_t rekey_count(const struct rekey *r)
{
	return r != NULL ? r->count : 0;
}
