/* infer_test.c: the episode's side of the inference path (infer.c) without sockets or a simulator:
 * the INFER it builds (checked after an encode/decode round trip), the ACTIONs it refuses, the chunk it
 * hands out, and the RESULT statistics, digest and latency frame it adds up. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/check.h"
#include "infer.h"

#define S_SIZE 16

static uint8_t s_agent[S_SIZE * S_SIZE * 3], s_eye[S_SIZE * S_SIZE * 3];

/* An episode as the worker has it after a rendered step (only the fields infer.c reads). */
static sw_episode_t s_episode(int steps) {
  sw_episode_t ep;
  memset(&ep, 0, sizeof ep);
  ep.steps = steps;
  ep.opts.image_size = S_SIZE;
  ep.opts.render_every = 4;
  ep.agentview = s_agent;
  ep.eye_in_hand = s_eye;
  ep.images_fresh = true;
  for (int i = 0; i < SW_PROPRIO_DIM; i++) ep.proprio[i] = 0.25 * i;
  return ep;
}

static msg_lease_body_t s_lease(void) {
  msg_lease_body_t l;
  memset(&l, 0, sizeof l);
  snprintf(l.campaign, sizeof l.campaign, "c1");
  snprintf(l.variant, sizeof l.variant, "spec");
  l.task = 3;
  l.trial = 7;
  l.policy = MSG_POLICY_MODEL;
  l.has_model = l.has_unnorm_key = l.has_mode = l.has_draft_len = l.has_draft_width = true;
  snprintf(l.model, sizeof l.model, "rsd-ref-spatial");
  snprintf(l.unnorm_key, sizeof l.unnorm_key, "libero_spatial");
  l.mode = MSG_MODE_SPEC;
  l.draft_len = 4;
  l.draft_width = 16;
  l.replan_every = 4;
  return l;
}

/* An ACTION with an H x 7 chunk whose values are base + index / 100. */
static msg_t s_action(uint64_t id, uint32_t h, float *buf, float base, uint32_t batch) {
  msg_t m;
  msg_init(&m, MSG_ACTION, id);
  for (uint32_t i = 0; i < h * SW_ACTION_DIM; i++) buf[i] = base + (float)i / 100.0f;
  uint32_t shape[2] = {h, SW_ACTION_DIM};
  msg_error_t e;
  msg_add_frame(&m, "actions", MSG_DTYPE_F32, 2, shape, buf, sizeof(float) * h * SW_ACTION_DIM, &e);
  m.action.batch = batch;
  m.action.main_forwards = 3;
  m.action.draft_forwards = 2;
  m.action.queue_us = 10;
  m.action.encode_us = 20;
  m.action.decode_us = 30;
  m.action.has_proposed = m.action.has_accepted = true;
  m.action.proposed_count = m.action.accepted_count = 3;
  m.action.proposed[1] = 2;
  m.action.accepted[1] = 1;
  m.action.proposed[2] = 1;
  return m;
}

static void test_build(void) {
  for (size_t i = 0; i < sizeof s_agent; i++) {
    s_agent[i] = (uint8_t)i;
    s_eye[i] = (uint8_t)(255 - i % 256);
  }
  sw_episode_t ep = s_episode(8);
  msg_lease_body_t lease = s_lease();
  float proprio[SW_PROPRIO_DIM];
  char err[512];
  msg_t q;
  CHECK(sw_infer_build(&q, 5ull << 32 | 9, &lease, "pick up the bowl", &ep, 30000, proprio, err, sizeof err) == 0,
        "%s", err);
  msg_buf_t buf = {0};
  msg_error_t e;
  CHECK(msg_encode(&q, &buf, &e) == MSG_OK, "%s", e.text);
  /* decode from the frames as a receiver would: header then payloads */
  msg_t d;
  msg_span_t spans[4] = {
      {q.frames[0].data, q.frames[0].size}, {q.frames[1].data, q.frames[1].size}, {q.frames[2].data, q.frames[2].size}};
  CHECK(msg_decode(buf.data, buf.size, spans, q.nframes, &d, &e) == MSG_OK, "%s", e.text);
  CHECK(d.type == MSG_INFER && d.id == (5ull << 32 | 9), "type %d id %llu", d.type, (unsigned long long)d.id);
  CHECK(d.infer.step == 8 && d.infer.task == 3 && d.infer.trial == 7, "step %u task %u trial %u", d.infer.step,
        d.infer.task, d.infer.trial);
  CHECK(strcmp(d.infer.model, "rsd-ref-spatial") == 0 && strcmp(d.infer.unnorm_key, "libero_spatial") == 0 &&
            d.infer.mode == MSG_MODE_SPEC && d.infer.has_draft_len && d.infer.draft_len == 4 &&
            d.infer.has_draft_width && d.infer.draft_width == 16 && !d.infer.has_radii,
        "model %s key %s mode %d", d.infer.model, d.infer.unnorm_key, d.infer.mode);
  CHECK(d.infer.has_deadline_ms && d.infer.deadline_ms == 30000, "deadline %u", d.infer.deadline_ms);
  CHECK(strcmp(d.infer.instruction, "pick up the bowl") == 0, "instruction %s", d.infer.instruction);
  const msg_frame_t *a = msg_find_frame(&d, "agentview"), *h = msg_find_frame(&d, "eye_in_hand"),
                    *p = msg_find_frame(&d, "proprio");
  CHECK(a && a->rank == 3 && a->shape[0] == S_SIZE && a->shape[2] == 3 && memcmp(a->data, s_agent, a->size) == 0,
        "agentview frame");
  CHECK(h && memcmp(h->data, s_eye, h->size) == 0, "eye_in_hand frame");
  float prop3 = 0;
  if (p) memcpy(&prop3, (const uint8_t *)p->data + 3 * sizeof(float), sizeof prop3);
  CHECK(p && p->dtype == MSG_DTYPE_F32 && p->shape[0] == SW_PROPRIO_DIM && prop3 == 0.75f, "proprio frame");
  msg_buf_free(&buf);

  /* refusals: stale images, a lease without a model */
  ep.images_fresh = false;
  CHECK(sw_infer_build(&q, 1, &lease, "x", &ep, 0, proprio, err, sizeof err) == -1 && strstr(err, "fresh"),
        "stale images: %s", err);
  ep.images_fresh = true;
  lease.has_model = false;
  CHECK(sw_infer_build(&q, 1, &lease, "x", &ep, 0, proprio, err, sizeof err) == -1 && strstr(err, "model"),
        "no model: %s", err);
}

static void test_actions_and_result(void) {
  sw_infer_t s;
  sw_infer_init(&s);
  char err[512];
  float buf[16 * SW_ACTION_DIM];
  /* refused: a short chunk, a wrong width, NaN, no frame; nothing is kept */
  msg_t m = s_action(1, 3, buf, 0.0f, 1);
  CHECK(sw_infer_take_action(&s, &m, 4, 100, err, sizeof err) == -1 && strstr(err, "replan_every 4"), "short: %s",
        err);
  m = s_action(1, 8, buf, 0.0f, 1);
  m.frames[0].shape[1] = 6;
  CHECK(sw_infer_take_action(&s, &m, 4, 100, err, sizeof err) == -1 && strstr(err, "[8, 6]"), "width: %s", err);
  m = s_action(1, 8, buf, 0.0f, 1);
  buf[2 * SW_ACTION_DIM + 5] = NAN;
  CHECK(sw_infer_take_action(&s, &m, 4, 100, err, sizeof err) == -1 && strstr(err, "actions[2][5]"), "nan: %s", err);
  m = s_action(1, 8, buf, 0.0f, 1);
  m.nframes = 0;
  CHECK(sw_infer_take_action(&s, &m, 4, 100, err, sizeof err) == -1 && strstr(err, "no 'actions'"), "none: %s", err);
  CHECK(s.chunks == 0 && !sw_infer_has_action(&s), "refusals kept %u chunks", s.chunks);

  /* a frame at an odd address (received payloads carry no alignment) is read correctly */
  static uint8_t odd[1 + 8 * SW_ACTION_DIM * sizeof(float)];
  m = s_action(1, 8, buf, 0.5f, 1);
  memcpy(odd + 1, buf, 8 * SW_ACTION_DIM * sizeof(float));
  m.frames[0].data = odd + 1;
  s.pending = 1;
  CHECK(sw_infer_take_action(&s, &m, 4, 100, err, sizeof err) == 0 && s.len == 4 && s.chunk[1][0] == buf[7],
        "misaligned frame: %s", err);
  sw_infer_free(&s);
  sw_infer_init(&s);

  /* NaN past replan_every is never executed: accepted */
  msg_sha256_t want;
  msg_sha256_init(&want);
  uint32_t batches[3] = {1, 5, 64};
  for (int c = 0; c < 3; c++) {
    s.pending = 40 + (uint64_t)c;
    m = s_action(s.pending, 8, buf, (float)c, batches[c]);
    if (c == 2) buf[6 * SW_ACTION_DIM] = NAN;
    CHECK(sw_infer_take_action(&s, &m, 4, 1000 + c, err, sizeof err) == 0, "chunk %d: %s", c, err);
    CHECK(s.pending == 0, "pending cleared");
    for (int k = 0; k < 4; k++) {
      CHECK(sw_infer_has_action(&s), "chunk %d action %d", c, k);
      double a[SW_ACTION_DIM];
      sw_infer_next_action(&s, a);
      CHECK(fabs(a[1] - ((double)c + (k * SW_ACTION_DIM + 1) / 100.0)) < 1e-6, "chunk %d action %d: %g", c, k, a[1]);
      msg_sha256_update(&want, buf + k * SW_ACTION_DIM, sizeof(float) * SW_ACTION_DIM);
      if (c == 2 && k == 1) break; /* the episode ended mid-chunk */
    }
  }
  msg_t r;
  msg_init(&r, MSG_RESULT, 9);
  CHECK(sw_infer_fill_result(&s, &r, err, sizeof err) == 0, "%s", err);
  msg_result_body_t *b = &r.result;
  CHECK(b->chunks == 3 && b->main_forwards == 9 && b->draft_forwards == 6, "chunks %u main %llu draft %llu", b->chunks,
        (unsigned long long)b->main_forwards, (unsigned long long)b->draft_forwards);
  CHECK(b->has_proposed && b->proposed_count == 3 && b->proposed[1] == 6 && b->accepted[1] == 3 && b->proposed[2] == 3,
        "proposed %u %u accepted %u", b->proposed[1], b->proposed[2], b->accepted[1]);
  /* batches 1, 5, 64 -> buckets 0, 2, 6 */
  CHECK(b->has_batch_hist && b->batch_hist_count == 7 && b->batch_hist[0] == 1 && b->batch_hist[2] == 1 &&
            b->batch_hist[6] == 1 && b->batch_hist[1] == 0,
        "batch_hist count %u", b->batch_hist_count);
  char hex[65];
  msg_sha256_hex(&want, hex);
  CHECK(b->has_actions_digest && strcmp(b->actions_digest, hex) == 0, "digest %s, want %s", b->actions_digest, hex);
  /* first_actions: the first chunk's replan_every (4) actions, 7 f32 each in hex, as the chunk carried them */
  CHECK(b->has_first_actions && strlen(b->first_actions) == 4 * 56, "first_actions %s", b->first_actions);
  for (int i = 0; b->has_first_actions && i < 4 * SW_ACTION_DIM; i++) {
    unsigned char bytes[4];
    for (int k = 0; k < 4; k++) {
      unsigned x = 0;
      sscanf(b->first_actions + 8 * i + 2 * k, "%2x", &x);
      bytes[k] = (unsigned char)x;
    }
    float f;
    memcpy(&f, bytes, sizeof f);
    CHECK(fabsf(f - (float)(i / 100.0)) < 1e-6f, "first_actions value %d: %g", i, (double)f);
  }
  const msg_frame_t *lat = msg_find_frame(&r, "latency");
  CHECK(lat && lat->shape[0] == 3 && lat->shape[1] == 4, "latency frame");
  const float *row = lat ? lat->data : NULL;
  CHECK(row && row[0] == 10 && row[1] == 20 && row[2] == 30 && row[3] == 1000 && row[11] == 1002, "latency rows");
  /* a resend gives the same RESULT */
  msg_t r2;
  msg_init(&r2, MSG_RESULT, 9);
  CHECK(sw_infer_fill_result(&s, &r2, err, sizeof err) == 0 && strcmp(r2.result.actions_digest, hex) == 0 &&
            strcmp(r2.result.first_actions, b->first_actions) == 0,
        "resend digest %s", r2.result.actions_digest);
  sw_infer_free(&s);

  /* an episode that got no chunk reports zero chunks and no digest */
  sw_infer_init(&s);
  msg_init(&r, MSG_RESULT, 10);
  CHECK(sw_infer_fill_result(&s, &r, err, sizeof err) == 0 && r.result.has_chunks && r.result.chunks == 0 &&
            !r.result.has_actions_digest && !r.result.has_first_actions && !msg_find_frame(&r, "latency"),
        "empty result");
  sw_infer_free(&s);
}

int main(void) {
  test_build();
  test_actions_and_result();
  return check_summary("infer_test");
}
