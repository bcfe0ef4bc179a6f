/* msg_samples.c: sample messages (see msg_samples.h). Values are distinct and inside their ranges, so a
 * field swapped or dropped by the codec shows up as a mismatch. */
#include "msg_samples.h"

#include <stdio.h>
#include <string.h>

static uint8_t s_image_a[4 * 6 * 3];
static uint8_t s_image_b[4 * 6 * 3];
static float s_proprio[8] = {0.1f, -0.2f, 0.9f, 3.1f, -0.05f, 0.02f, 0.039f, -0.039f};
static float s_actions[8 * 7];
static int32_t s_codes[4 * 7];
static float s_latency[3 * 4] = {10, 200, 3000, 3210, 12, 180, 2900, 3092, 9, 210, 3100, 3319};
static uint8_t s_video[37];

static void s_fill_buffers(void) {
  for (size_t i = 0; i < sizeof s_image_a; i++) {
    s_image_a[i] = (uint8_t)(i * 7);
    s_image_b[i] = (uint8_t)(255 - i);
  }
  for (int i = 0; i < 8 * 7; i++) s_actions[i] = (float)(i - 28) / 32.0f;
  for (int i = 0; i < 4 * 7; i++) s_codes[i] = i % 5;
  for (size_t i = 0; i < sizeof s_video; i++) s_video[i] = (uint8_t)(i + 1);
}

#define S_SET(m, body, field, value) ((m)->body.field = (value), (m)->body.has_##field = true)
#define S_STR(dst, s) snprintf((dst), sizeof(dst), "%s", (s))
#define S_OPT_STR(m, body, field, s) (S_STR((m)->body.field, (s)), (m)->body.has_##field = true)

static void s_frame(msg_t *m, const char *name, msg_dtype_t dtype, uint32_t rank, const uint32_t *shape,
                    const void *data, size_t size) {
  msg_error_t err;
  msg_err_t rc = msg_add_frame(m, name, dtype, rank, shape, data, size, &err);
  if (rc) fprintf(stderr, "msg_sample: %s\n", err.text); /* a bug in this file; the tests then fail */
}

void msg_sample(msg_type_t type, msg_t *m) {
  s_fill_buffers();
  msg_init(m, type, 0x0000000700000000ull + 41 + (uint64_t)type);
  switch (type) {
    case MSG_HELLO:
      m->hello.role = MSG_ROLE_GPU;
      S_STR(m->hello.name, "gpu-host-3:4242");
      m->hello.capacity = 64;
      S_STR(m->hello.software, "rsd 0.1.0");
      S_OPT_STR(m, hello, suite, "libero_spatial");
      S_OPT_STR(m, hello, suite_hash, "sha256:5f1e");
      S_OPT_STR(m, hello, model, "rsd-ref-spatial");
      S_OPT_STR(m, hello, model_hash, "sha256:ab12");
      S_OPT_STR(m, hello, device, "cuda:0");
      S_OPT_STR(m, hello, dtype, "bfloat16");
      S_SET(m, hello, max_batch, 32);
      break;
    case MSG_WELCOME:
      m->welcome.worker_id = 12;
      m->welcome.heartbeat_ms = 1000;
      m->welcome.liveness = 3;
      S_STR(m->welcome.software, "rsd 0.1.0");
      S_OPT_STR(m, welcome, campaign, "spatial-sweep");
      S_OPT_STR(m, welcome, broker, "tcp://10.0.0.2:5556");
      break;
    case MSG_READY:
      m->ready.credit = 16;
      break;
    case MSG_LEASE:
      S_STR(m->lease.campaign, "spatial-sweep");
      S_STR(m->lease.variant, "spec-g4");
      S_STR(m->lease.suite, "libero_spatial");
      m->lease.task = 7;
      m->lease.trial = 49;
      m->lease.attempt = 2;
      m->lease.seed = 0xdeadbeefcafef00dull;
      m->lease.max_steps = 220;
      m->lease.wait_steps = 10;
      m->lease.replan_every = 8;
      m->lease.image_size = 128;
      m->lease.policy = MSG_POLICY_MODEL;
      S_SET(m, lease, mode, MSG_MODE_SPEC_RELAXED);
      S_SET(m, lease, draft_len, 4);
      S_SET(m, lease, draft_width, 16);
      m->lease.radii[0] = 0;
      m->lease.radii[1] = 1;
      m->lease.radii[2] = 2;
      m->lease.radii_count = 3;
      m->lease.has_radii = true;
      S_OPT_STR(m, lease, model, "rsd-ref-spatial");
      S_OPT_STR(m, lease, unnorm_key, "libero_spatial");
      S_SET(m, lease, record_video, true);
      break;
    case MSG_HEARTBEAT:
      m->heartbeat.leases[0] = 1;
      m->heartbeat.leases[1] = 0xffffffffffull;
      m->heartbeat.leases[2] = 77;
      m->heartbeat.leases_count = 3;
      m->heartbeat.has_leases = true;
      S_SET(m, heartbeat, busy, 3);
      break;
    case MSG_RESULT: {
      S_STR(m->result.campaign, "spatial-sweep");
      S_STR(m->result.variant, "spec-g4");
      m->result.task = 7;
      m->result.trial = 49;
      m->result.attempt = 2;
      m->result.outcome = MSG_OUTCOME_INFRA_ERROR;
      m->result.steps = 131;
      m->result.wall_ms = 5300;
      S_OPT_STR(m, result, reason, "mujoco: mjWARN_BADQACC at step 131");
      S_OPT_STR(m, result, worker, "sim-host-1:777");
      S_SET(m, result, chunks, 17);
      S_SET(m, result, main_forwards, 40);
      S_SET(m, result, draft_forwards, 23);
      for (uint32_t i = 0; i < 4; i++) {
        m->result.proposed[i] = 17 - i;
        m->result.accepted[i] = 15 - 2 * i;
      }
      m->result.proposed_count = m->result.accepted_count = 4;
      m->result.has_proposed = m->result.has_accepted = true;
      uint32_t lat[2] = {3, 4};
      s_frame(m, "latency", MSG_DTYPE_F32, 2, lat, s_latency, sizeof s_latency);
      uint32_t codes[2] = {4, 7};
      s_frame(m, "codes", MSG_DTYPE_I32, 2, codes, s_codes, sizeof s_codes);
      uint32_t vid[1] = {sizeof s_video};
      s_frame(m, "video", MSG_DTYPE_U8, 1, vid, s_video, sizeof s_video);
      uint32_t pro[1] = {8};
      s_frame(m, "proprio", MSG_DTYPE_F32, 1, pro, s_proprio, sizeof s_proprio);
      break;
    }
    case MSG_ACK:
      m->ack.status = MSG_ACK_DUPLICATE;
      break;
    case MSG_INFER: {
      S_OPT_STR(m, infer, campaign, "spatial-sweep");
      S_STR(m->infer.variant, "spec-g4");
      m->infer.task = 7;
      m->infer.trial = 49;
      m->infer.step = 96;
      S_STR(m->infer.instruction, "pick up the black bowl between the plate and the ramekin and place it on the plate");
      S_STR(m->infer.model, "rsd-ref-spatial");
      S_STR(m->infer.unnorm_key, "libero_spatial");
      m->infer.mode = MSG_MODE_SPEC;
      S_SET(m, infer, draft_len, 3);
      S_SET(m, infer, draft_width, 8);
      m->infer.radii[0] = 1;
      m->infer.radii_count = 1;
      m->infer.has_radii = true;
      S_SET(m, infer, deadline_ms, 30000);
      uint32_t img[3] = {4, 6, 3};
      s_frame(m, "agentview", MSG_DTYPE_U8, 3, img, s_image_a, sizeof s_image_a);
      s_frame(m, "eye_in_hand", MSG_DTYPE_U8, 3, img, s_image_b, sizeof s_image_b);
      uint32_t pro[1] = {8};
      s_frame(m, "proprio", MSG_DTYPE_F32, 1, pro, s_proprio, sizeof s_proprio);
      break;
    }
    case MSG_ACTION: {
      m->action.batch = 5;
      m->action.main_forwards = 2;
      m->action.draft_forwards = 1;
      m->action.queue_us = 120;
      m->action.encode_us = 900;
      m->action.decode_us = 2100;
      for (uint32_t i = 0; i < 4; i++) {
        m->action.proposed[i] = i < 3;
        m->action.accepted[i] = i < 2;
      }
      m->action.proposed_count = m->action.accepted_count = 4;
      m->action.has_proposed = m->action.has_accepted = true;
      S_OPT_STR(m, action, worker, "gpu-host-3:4242");
      uint32_t act[2] = {8, 7};
      s_frame(m, "actions", MSG_DTYPE_F32, 2, act, s_actions, sizeof s_actions);
      uint32_t codes[2] = {4, 7};
      s_frame(m, "codes", MSG_DTYPE_I32, 2, codes, s_codes, sizeof s_codes);
      break;
    }
    case MSG_ERROR:
      m->error.code = MSG_ERR_BAD_REQUEST;
      S_STR(m->error.text, "unnorm_key 'bridge' not in model stats (have: libero_spatial)");
      S_OPT_STR(m, error, about, "INFER");
      break;
    case MSG_BYE:
      S_OPT_STR(m, bye, reason, "SIGTERM");
      break;
    case MSG_DRAIN:
      S_OPT_STR(m, drain, reason, "operator asked to drain sim-host-1");
      break;
    case MSG_TYPE_COUNT_:
      break;
  }
}
