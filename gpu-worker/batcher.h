/* batcher.h: the GPU worker's request batcher. Pure C, no sockets, no clock of its own: the caller
 * passes the time, so tests drive it with made-up times.
 *
 * Requests queue per key: a string that the caller builds from everything that must be equal inside
 * one gw_policy_decode call (model, unnorm_key, decoding mode, and for the spec modes draft_len and
 * radii). A key's queue is ready when it holds max_batch requests, or when its oldest request has
 * waited max_wait_us. gw_batcher_pop takes up to max_batch requests, first in first out, from the
 * ready queue whose oldest request is the oldest, so no key starves another. It owns only its queues;
 * the items are the caller's opaque pointers, never dereferenced or freed here. */
#ifndef RSD_GW_BATCHER_H
#define RSD_GW_BATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GW_BATCH_KEY_MAX 512 /* bytes of a key, with the NUL */

typedef struct gw_batcher gw_batcher_t;

/* A batcher forming batches of 1..max_batch items that wait at most max_wait_us (>= 0) after the oldest
 * item of their key arrived. NULL on a bad argument (max_batch < 1, max_wait_us < 0) or out of memory. */
gw_batcher_t *gw_batcher_new(int max_batch, int64_t max_wait_us);
/* Frees the queues (not the items); idempotent, sets *self_p = NULL. */
void gw_batcher_destroy(gw_batcher_t **self_p);

/* Queues `item` (borrowed, non-NULL) under `key` (copied; 1..GW_BATCH_KEY_MAX-1 bytes), arrived at now_us.
 * Times must not go backwards. Returns 0, or -1 for a bad key or out of memory (nothing queued). */
int gw_batcher_push(gw_batcher_t *self, const char *key, void *item, int64_t now_us);

/* Items queued, over all keys. */
size_t gw_batcher_count(const gw_batcher_t *self);

/* The earliest time at which a batch is ready: for a full queue the arrival of its max_batch-th item
 * (already past), else the oldest arrival + max_wait_us; INT64_MAX when nothing is queued. */
int64_t gw_batcher_deadline(const gw_batcher_t *self);

/* Takes the next ready batch: up to max_batch items of one key, oldest first, into items[] (room for
 * max_batch) and copies the key into key_out (nullable; GW_BATCH_KEY_MAX bytes). With `flush`, a queue
 * counts as ready whatever its age (shutdown). Returns the number of items taken, 0 when none is ready. */
int gw_batcher_pop(gw_batcher_t *self, int64_t now_us, bool flush, void **items, char *key_out);

#ifdef __cplusplus
}
#endif

#endif
