/* batcher.c: queues per key and the two batch triggers, max_batch and max_wait_us (batcher.h).
 *
 * A handful of keys exist at a time (one per campaign variant being served), so the queues are a small
 * array searched linearly; a queue is dropped when it empties. Each queue is a FIFO array of
 * (item, arrival) that pop shifts down; a queue rarely holds more than a few batches. */
#include "batcher.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  void *item;          /* borrowed from the caller */
  int64_t arrived_us;
} s_entry_t;

typedef struct {
  char *key;           /* owned */
  s_entry_t *entries;  /* owned; [0, count) in arrival order */
  size_t count, cap;
} s_queue_t;

struct gw_batcher {
  int max_batch;
  int64_t max_wait_us;
  s_queue_t *queues;   /* owned; [0, nqueues), none empty */
  size_t nqueues, cap;
  size_t total;        /* items over all queues */
};

gw_batcher_t *gw_batcher_new(int max_batch, int64_t max_wait_us) {
  if (max_batch < 1 || max_wait_us < 0) return NULL;
  gw_batcher_t *self = calloc(1, sizeof *self);
  if (!self) return NULL;
  self->max_batch = max_batch;
  self->max_wait_us = max_wait_us;
  return self;
}

void gw_batcher_destroy(gw_batcher_t **self_p) {
  if (!self_p || !*self_p) return;
  gw_batcher_t *self = *self_p;
  for (size_t i = 0; i < self->nqueues; i++) {
    free(self->queues[i].key);
    free(self->queues[i].entries);
  }
  free(self->queues);
  free(self);
  *self_p = NULL;
}

static s_queue_t *s_find(gw_batcher_t *self, const char *key) {
  for (size_t i = 0; i < self->nqueues; i++)
    if (strcmp(self->queues[i].key, key) == 0) return &self->queues[i];
  return NULL;
}

int gw_batcher_push(gw_batcher_t *self, const char *key, void *item, int64_t now_us) {
  if (!self || !key || !item) return -1;
  size_t klen = strnlen(key, GW_BATCH_KEY_MAX);
  if (klen == 0 || klen >= GW_BATCH_KEY_MAX) return -1;
  s_queue_t *q = s_find(self, key);
  if (!q) {
    if (self->nqueues == self->cap) {
      size_t cap = self->cap ? 2 * self->cap : 4;
      s_queue_t *qs = realloc(self->queues, cap * sizeof *qs);
      if (!qs) return -1;
      self->queues = qs;
      self->cap = cap;
    }
    char *k = strdup(key);
    if (!k) return -1;
    q = &self->queues[self->nqueues++];
    *q = (s_queue_t){.key = k};
  }
  if (q->count == q->cap) {
    size_t cap = q->cap ? 2 * q->cap : 8;
    s_entry_t *e = realloc(q->entries, cap * sizeof *e);
    if (!e) {
      if (q->count == 0) { /* the queue was made for this item: do not keep it empty */
        free(q->key);
        *q = self->queues[--self->nqueues];
      }
      return -1;
    }
    q->entries = e;
    q->cap = cap;
  }
  q->entries[q->count++] = (s_entry_t){item, now_us};
  self->total++;
  return 0;
}

size_t gw_batcher_count(const gw_batcher_t *self) { return self ? self->total : 0; }

/* When queue q is (or was) ready. */
static int64_t s_ready_at(const gw_batcher_t *self, const s_queue_t *q) {
  if (q->count >= (size_t)self->max_batch) return q->entries[self->max_batch - 1].arrived_us;
  return q->entries[0].arrived_us + self->max_wait_us;
}

int64_t gw_batcher_deadline(const gw_batcher_t *self) {
  int64_t best = INT64_MAX;
  for (size_t i = 0; self && i < self->nqueues; i++) {
    int64_t t = s_ready_at(self, &self->queues[i]);
    if (t < best) best = t;
  }
  return best;
}

int gw_batcher_pop(gw_batcher_t *self, int64_t now_us, bool flush, void **items, char *key_out) {
  if (!self || !items) return 0;
  s_queue_t *pick = NULL;
  for (size_t i = 0; i < self->nqueues; i++) {
    s_queue_t *q = &self->queues[i];
    if (!flush && s_ready_at(self, q) > now_us) continue;
    if (!pick || q->entries[0].arrived_us < pick->entries[0].arrived_us) pick = q;
  }
  if (!pick) return 0;
  size_t n = pick->count < (size_t)self->max_batch ? pick->count : (size_t)self->max_batch;
  for (size_t i = 0; i < n; i++) items[i] = pick->entries[i].item;
  if (key_out) memcpy(key_out, pick->key, strlen(pick->key) + 1);
  memmove(pick->entries, pick->entries + n, (pick->count - n) * sizeof *pick->entries);
  pick->count -= n;
  self->total -= n;
  if (pick->count == 0) {
    free(pick->key);
    free(pick->entries);
    *pick = self->queues[--self->nqueues];
  }
  return (int)n;
}
