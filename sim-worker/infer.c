/* infer.c: one episode's side of the inference path (see infer.h). */
#include "infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sw_infer_init(sw_infer_t *s) {
  memset(s, 0, sizeof *s);
  msg_sha256_init(&s->digest);
}

void sw_infer_free(sw_infer_t *s) {
  free(s->latency);
  memset(s, 0, sizeof *s);
}

int sw_infer_build(msg_t *m, uint64_t id, const msg_lease_body_t *lease, const char *instruction,
                   const sw_episode_t *ep, uint32_t deadline_ms, float *proprio_f32, char *err, size_t errlen) {
  if (!lease->has_model || !lease->has_unnorm_key || !lease->has_mode) {
    snprintf(err, errlen, "LEASE for a model policy lacks %s", !lease->has_model ? "model"
             : !lease->has_unnorm_key ? "unnorm_key" : "mode");
    return -1;
  }
  if (!ep->agentview || !ep->eye_in_hand || !ep->images_fresh) {
    snprintf(err, errlen, "no fresh camera images at step %d to send (image_size %d, render_every %d)", ep->steps,
             ep->opts.image_size, ep->opts.render_every);
    return -1;
  }
  if (!instruction[0] || strlen(instruction) > MSG_TEXT_MAX) {
    snprintf(err, errlen, "task %u instruction of %zu bytes (allowed 1..%d)", lease->task, strlen(instruction),
             MSG_TEXT_MAX);
    return -1;
  }
  msg_init(m, MSG_INFER, id);
  msg_infer_body_t *q = &m->infer;
  q->has_campaign = true;
  snprintf(q->campaign, sizeof q->campaign, "%s", lease->campaign);
  snprintf(q->variant, sizeof q->variant, "%s", lease->variant);
  q->task = lease->task;
  q->trial = lease->trial;
  q->step = (uint32_t)ep->steps;
  snprintf(q->instruction, sizeof q->instruction, "%s", instruction);
  snprintf(q->model, sizeof q->model, "%s", lease->model);
  snprintf(q->unnorm_key, sizeof q->unnorm_key, "%s", lease->unnorm_key);
  q->mode = lease->mode;
  if (lease->has_draft_width) {
    q->has_draft_width = true;
    q->draft_width = lease->draft_width;
  }
  if (lease->has_draft_len) {
    q->has_draft_len = true;
    q->draft_len = lease->draft_len;
  }
  if (lease->has_radii) {
    q->has_radii = true;
    q->radii_count = lease->radii_count;
    memcpy(q->radii, lease->radii, sizeof q->radii[0] * lease->radii_count);
  }
  if (deadline_ms) {
    q->has_deadline_ms = true;
    q->deadline_ms = deadline_ms;
  }
  for (int i = 0; i < SW_PROPRIO_DIM; i++) proprio_f32[i] = (float)ep->proprio[i];
  uint32_t size = (uint32_t)ep->opts.image_size, img[3] = {size, size, 3}, prop[1] = {SW_PROPRIO_DIM};
  size_t img_bytes = (size_t)size * size * 3;
  msg_error_t e;
  if (msg_add_frame(m, "agentview", MSG_DTYPE_U8, 3, img, ep->agentview, img_bytes, &e) != MSG_OK ||
      msg_add_frame(m, "eye_in_hand", MSG_DTYPE_U8, 3, img, ep->eye_in_hand, img_bytes, &e) != MSG_OK ||
      msg_add_frame(m, "proprio", MSG_DTYPE_F32, 1, prop, proprio_f32, sizeof(float) * SW_PROPRIO_DIM, &e) !=
          MSG_OK) {
    snprintf(err, errlen, "INFER frames: %s", e.text);
    return -1;
  }
  return 0;
}

/* Bucket k of the batch-size histogram holds batches of 2^k .. 2^(k+1) - 1 requests. */
static uint32_t s_bucket(uint32_t batch) {
  uint32_t k = 0;
  while (batch > 1 && k + 1 < MSG_MAX_LAYERS) {
    batch >>= 1;
    k++;
  }
  return k;
}

int sw_infer_take_action(sw_infer_t *s, const msg_t *m, uint32_t replan_every, int64_t rtt_us, char *err,
                         size_t errlen) {
  const msg_action_body_t *a = &m->action;
  const msg_frame_t *f = msg_find_frame(m, "actions");
  if (!f) {
    snprintf(err, errlen, "ACTION %llu has no 'actions' frame", (unsigned long long)m->id);
    return -1;
  }
  if (f->dtype != MSG_DTYPE_F32 || f->rank != 2 || f->shape[1] != SW_ACTION_DIM || f->shape[0] < replan_every ||
      f->shape[0] > SW_MAX_HORIZON) {
    snprintf(err, errlen, "ACTION %llu 'actions' frame is %s [%u, %u] (rank %u); expected f32 [H, %d] with "
             "replan_every %u <= H <= %d", (unsigned long long)m->id, msg_dtype_names[f->dtype], f->shape[0],
             f->shape[1], f->rank, SW_ACTION_DIM, replan_every, SW_MAX_HORIZON);
    return -1;
  }
  float v[SW_MAX_HORIZON * SW_ACTION_DIM]; /* payload bytes carry no alignment: copy before reading floats */
  memcpy(v, f->data, sizeof(float) * SW_ACTION_DIM * replan_every);
  for (uint32_t i = 0; i < replan_every * SW_ACTION_DIM; i++)
    if (!isfinite(v[i])) {
      snprintf(err, errlen, "ACTION %llu: actions[%u][%u] = %g is not finite", (unsigned long long)m->id,
               i / SW_ACTION_DIM, i % SW_ACTION_DIM, (double)v[i]);
      return -1;
    }
  if ((a->has_proposed && a->proposed_count > MSG_MAX_LAYERS) || (a->has_accepted && a->accepted_count > MSG_MAX_LAYERS)) {
    snprintf(err, errlen, "ACTION %llu: more than %d layers of statistics", (unsigned long long)m->id, MSG_MAX_LAYERS);
    return -1;
  }
  if (s->chunks == s->latency_cap) {
    uint32_t cap = s->latency_cap ? 2 * s->latency_cap : 64;
    float *p = realloc(s->latency, sizeof *p * 4 * cap);
    if (!p) {
      snprintf(err, errlen, "out of memory for %u latency rows", cap);
      return -1;
    }
    s->latency = p;
    s->latency_cap = cap;
  }
  memcpy(s->chunk, v, sizeof(float) * SW_ACTION_DIM * replan_every);
  if (s->chunks == 0) { /* the answer to the episode's first observation */
    s->first_n = replan_every < MSG_FIRST_ACTIONS_MAX ? replan_every : MSG_FIRST_ACTIONS_MAX;
    memcpy(s->first, v, sizeof(float) * SW_ACTION_DIM * s->first_n);
  }
  s->len = (int)replan_every;
  s->at = 0;
  float *row = s->latency + 4 * (size_t)s->chunks;
  row[0] = (float)a->queue_us;
  row[1] = (float)a->encode_us;
  row[2] = (float)a->decode_us;
  row[3] = (float)(rtt_us > 0 ? rtt_us : 0);
  s->chunks++;
  s->main_forwards += a->main_forwards;
  s->draft_forwards += a->draft_forwards;
  uint32_t n = a->has_proposed ? a->proposed_count : 0;
  if (a->has_accepted && a->accepted_count > n) n = a->accepted_count;
  if (n > s->nlayers) s->nlayers = n;
  for (uint32_t l = 0; a->has_proposed && l < a->proposed_count; l++) s->proposed[l] += a->proposed[l];
  for (uint32_t l = 0; a->has_accepted && l < a->accepted_count; l++) s->accepted[l] += a->accepted[l];
  s->batch_hist[s_bucket(a->batch)]++;
  s->pending = 0;
  return 0;
}

bool sw_infer_has_action(const sw_infer_t *s) { return s->at < s->len; }

void sw_infer_next_action(sw_infer_t *s, double out[SW_ACTION_DIM]) {
  const float *a = s->chunk[s->at++];
  msg_sha256_update(&s->digest, a, sizeof(float) * SW_ACTION_DIM); /* little-endian hosts only (protocol §3) */
  s->executed++;
  for (int i = 0; i < SW_ACTION_DIM; i++) out[i] = a[i];
}

int sw_infer_fill_result(sw_infer_t *s, msg_t *r, char *err, size_t errlen) {
  msg_result_body_t *b = &r->result;
  b->has_chunks = b->has_main_forwards = b->has_draft_forwards = true;
  b->chunks = s->chunks;
  b->main_forwards = s->main_forwards;
  b->draft_forwards = s->draft_forwards;
  if (s->nlayers) {
    b->has_proposed = b->has_accepted = true;
    b->proposed_count = b->accepted_count = s->nlayers;
    memcpy(b->proposed, s->proposed, sizeof b->proposed[0] * s->nlayers);
    memcpy(b->accepted, s->accepted, sizeof b->accepted[0] * s->nlayers);
  }
  if (!s->chunks) return 0;
  uint32_t nb = MSG_MAX_LAYERS;
  while (nb > 1 && !s->batch_hist[nb - 1]) nb--;
  b->has_batch_hist = true;
  b->batch_hist_count = nb;
  memcpy(b->batch_hist, s->batch_hist, sizeof b->batch_hist[0] * nb);
  if (s->executed) {
    if (!s->digest_hex[0]) msg_sha256_hex(&s->digest, s->digest_hex); /* once: resends reuse it */
    b->has_actions_digest = true;
    snprintf(b->actions_digest, sizeof b->actions_digest, "%s", s->digest_hex);
  }
  if (s->first_n) { /* each f32's bytes in memory order (little-endian hosts, protocol §3), as hex */
    const unsigned char *bytes = (const unsigned char *)s->first;
    size_t n = sizeof(float) * SW_ACTION_DIM * s->first_n;
    for (size_t i = 0; i < n; i++) snprintf(b->first_actions + 2 * i, 3, "%02x", bytes[i]);
    b->has_first_actions = true;
  }
  uint32_t shape[2] = {s->chunks, 4};
  msg_error_t e;
  if (msg_add_frame(r, "latency", MSG_DTYPE_F32, 2, shape, s->latency, sizeof(float) * 4 * s->chunks, &e) != MSG_OK) {
    snprintf(err, errlen, "RESULT latency frame: %s", e.text);
    return -1;
  }
  return 0;
}
