/* infer.h: one episode's side of the inference path (`policy: model`), without sockets.
 *
 * An episode asks for an action chunk with an INFER (its last observation: both camera images, proprio,
 * the task's instruction, the lease's model / unnorm_key / decoding parameters), executes `replan_every`
 * actions of the ACTION's chunk, then asks again. This file builds the INFER, checks the ACTION (its
 * `actions` frame must be f32 [H, 7] with H >= replan_every, every value finite), hands out the chunk's
 * actions one at a time, and sums what the RESULT reports about decoding: chunks, forwards, the draft's
 * proposals and acceptances per layer, the batch-size histogram, the per-chunk latencies (a `latency`
 * frame: queue, encode, decode, round trip in µs), the SHA-256 of every executed action
 * (`actions_digest`, the report's lossless check of `spec` against `ar`) and the first chunk's first
 * actions (`first_actions`, the report's action-space deviation from the baseline on one observation).
 *
 * Not here: the sockets, deadlines and the episode's state machine (worker.c). */
#ifndef RSD_SW_INFER_H
#define RSD_SW_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "episode.h"
#include "msg.h"
#include "sha256.h"

#define SW_MAX_HORIZON 64 /* actions per chunk accepted from an ACTION */

typedef struct {
  /* the current chunk: actions [at, len) are still to be executed */
  float chunk[SW_MAX_HORIZON][SW_ACTION_DIM];
  int len, at;
  uint64_t pending;      /* id of the INFER waiting for its answer (0: none) */
  int64_t sent_us;       /* when it was sent (zclock_usecs) */
  /* sums for the RESULT */
  uint32_t chunks;
  uint64_t main_forwards, draft_forwards;
  uint32_t proposed[MSG_MAX_LAYERS], accepted[MSG_MAX_LAYERS];
  uint32_t nlayers;      /* layers seen in proposed/accepted (0: no ACTION carried them) */
  uint32_t batch_hist[MSG_MAX_LAYERS];
  float *latency;        /* owned: chunks x 4 (queue, encode, decode, round trip), µs */
  uint32_t latency_cap;
  msg_sha256_t digest;   /* of the executed actions as little-endian f32 */
  uint32_t executed;     /* actions executed */
  char digest_hex[65];   /* set by sw_infer_fill_result */
  float first[MSG_FIRST_ACTIONS_MAX][SW_ACTION_DIM]; /* the first chunk's first actions, as received */
  uint32_t first_n;      /* how many (0: no chunk yet) */
} sw_infer_t;

/* Zeroes s and starts its digest. */
void sw_infer_init(sw_infer_t *s);

/* Frees what s owns (the latency rows); s can be initialized again afterwards. */
void sw_infer_free(sw_infer_t *s);

/* Fills m as the INFER with request id `id` for the episode's last observation, which must be fresh
 * (images rendered at this step). The frames borrow ep's images and `proprio_f32` (SW_PROPRIO_DIM
 * floats, filled here; it must outlive the send). Returns 0, or -1 with the reason in err. */
int sw_infer_build(msg_t *m, uint64_t id, const msg_lease_body_t *lease, const char *instruction,
                   const sw_episode_t *ep, uint32_t deadline_ms, float *proprio_f32, char *err, size_t errlen);

/* Takes the ACTION answering s->pending, received `rtt_us` after its INFER was sent: checks its actions
 * frame (f32 [H, SW_ACTION_DIM], replan_every <= H <= SW_MAX_HORIZON, all finite), keeps the first
 * `replan_every` actions as the chunk and adds its statistics. Returns 0, or -1 with the reason in err
 * (nothing is kept). */
int sw_infer_take_action(sw_infer_t *s, const msg_t *m, uint32_t replan_every, int64_t rtt_us, char *err,
                         size_t errlen);

/* True when the chunk still has an action to execute. */
bool sw_infer_has_action(const sw_infer_t *s);

/* The next action of the chunk as doubles (for sw_episode_step); it counts as executed: it is added to
 * the digest. Only when sw_infer_has_action. */
void sw_infer_next_action(sw_infer_t *s, double out[SW_ACTION_DIM]);

/* Adds the decoding statistics to RESULT r: chunks, forwards, proposed/accepted (when seen), batch_hist,
 * actions_digest and first_actions (when a chunk arrived), and the `latency` frame, which borrows s's
 * rows. Returns 0,
 * or -1 with the reason in err when the frame does not fit the protocol's limits. */
int sw_infer_fill_result(sw_infer_t *s, msg_t *r, char *err, size_t errlen);

#endif
