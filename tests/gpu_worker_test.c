/* gpu_worker_test.c: the real rsd-gpu-worker process against a broker that this test plays (a ROUTER on
 * tcp://127.0.0.1:*), on the tiny packages that train/make_test_models.py builds (ctest fixture gw_models).
 *
 *   gpu_worker_test PATH/TO/rsd-gpu-worker TEST_MODELS_DIR PYTHON TRAIN_DIR
 *
 * It checks, in order: the HELLO (role, model name and content hash, device, max_batch, capacity);
 * four INFERs of one key come back as one batch of 4 whose actions and codes equal what the policy C API
 * gives in this process for the same observations (spec, libero_spatial); the same observations in ar
 * with another unnorm_key give ar's codes (lossless) unnormalized with that key's statistics; a wrong
 * image size, an unknown unnorm_key and a wrong proprio shape come back as ERROR 31 naming the field
 * and the value while the requests around them are served (spec-relaxed batch); READY returns exactly
 * one credit per answered INFER; a HEARTBEAT reports the requests held; SIGTERM with two requests queued
 * answers both (a batch of 2), then BYE and exit status 0. A second worker (package "nan") re-HELLOs
 * on a new connection when the broker falls silent, answers a batch in which one row produces NaN with
 * ERROR 30 for that row and an ACTION for the other, answers a non-finite proprio with ERROR 7, and leaves on
 * SIGINT; its --record-obs recording holds
 * exactly the row answered with an ACTION (images, proprio, instruction and origin as sent), train/'s reader
 * (rsd_data.load_recorded) and export_bench_obs.py --recording read it back, and a worker given that directory
 * again refuses to start, naming it. A worker whose recording cannot be written (images.u8 is /dev/full) still
 * answers the request, then says BYE and exits 1 with a message naming the directory. Last, --device cuda:0 either
 * fails with a message naming the device (no CUDA in the build or on the machine) or says HELLO with
 * that device. Every child is killed when the test exits. */
#include <czmq.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "msg.h"
#include "policy.h"
#include "proc.h"
#include "scratch.h"

#define NOBS 4
#define IMG 16
#define NCAM 2
#define PROPRIO 8
#define HA (8 * 7)
#define LG (8 * 4)

/* ---- the broker played by the test --------------------------------------------------------------- */

typedef struct {
  msg_sock_t *sock;
  zframe_t *route;        /* the worker's routing id (owned) */
  bool beat;              /* send HEARTBEATs while waiting */
  uint64_t seq;
  int64_t last_beat;
  uint32_t credit;        /* sum of READY.credit received */
  int heartbeats;         /* HEARTBEATs received */
  uint32_t last_busy;     /* HEARTBEAT.busy of the last one */
} s_broker_t;

/* The next message from the worker that is not a HEARTBEAT or READY (those are counted); NULL after
 * timeout_ms. Sends HEARTBEATs every 500 ms meanwhile when b->beat. */
static msg_in_t *s_recv(s_broker_t *b, int timeout_ms, bool stop_on_heartbeat) {
  int64_t end = zclock_mono() + timeout_ms;
  zpoller_t *p = zpoller_new(msg_sock_zsock(b->sock), NULL);
  msg_in_t *out = NULL;
  while (!out && zclock_mono() < end) {
    if (b->beat && b->route && zclock_mono() - b->last_beat >= 500) {
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++b->seq);
      msg_error_t err;
      msg_sock_send(b->sock, b->route, &hb, &err);
      b->last_beat = zclock_mono();
    }
    if (!zpoller_wait(p, 50)) continue;
    msg_in_t *in = NULL;
    msg_error_t err;
    msg_err_t rc = msg_sock_recv(b->sock, &in, &err);
    CHECK(rc == MSG_OK, "the worker sent a message the codec refuses: %s", err.text);
    if (rc != MSG_OK) {
      msg_in_destroy(&in);
      continue;
    }
    if (in->msg.type == MSG_READY) {
      b->credit += in->msg.ready.credit;
      msg_in_destroy(&in);
    } else if (in->msg.type == MSG_HEARTBEAT) {
      b->heartbeats++;
      b->last_busy = in->msg.heartbeat.has_busy ? in->msg.heartbeat.busy : 0;
      if (stop_on_heartbeat) out = in;
      else msg_in_destroy(&in);
    } else {
      out = in;
    }
  }
  zpoller_destroy(&p);
  return out;
}

static void s_welcome(s_broker_t *b, const msg_in_t *hello, uint32_t heartbeat_ms, uint32_t liveness) {
  zframe_destroy(&b->route);
  b->route = zframe_dup(hello->route);
  msg_t w;
  msg_init(&w, MSG_WELCOME, hello->msg.id);
  w.welcome.worker_id = 7;
  w.welcome.heartbeat_ms = heartbeat_ms;
  w.welcome.liveness = liveness;
  snprintf(w.welcome.software, sizeof w.welcome.software, "gpu_worker_test");
  msg_error_t err;
  CHECK(msg_sock_send(b->sock, b->route, &w, &err) == MSG_OK, "WELCOME: %s", err.text);
}

/* ---- observations -------------------------------------------------------------------------------- */

static uint8_t s_images[NOBS][NCAM][IMG * IMG * 3];
static float s_proprio[NOBS][PROPRIO];
static const char *s_instr[NOBS] = {"pick up the black bowl", "put the bowl on the plate",
                                    "pick up the bowl next to the ramekin", "open the drawer"};

static void s_make_obs(void) {
  uint32_t x = 12345;
  for (int i = 0; i < NOBS; i++) {
    for (int c = 0; c < NCAM; c++)
      for (int k = 0; k < IMG * IMG * 3; k++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        s_images[i][c][k] = (uint8_t)(x >> 24);
      }
    for (int k = 0; k < PROPRIO; k++) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      s_proprio[i][k] = (float)((int)(x % 2001) - 1000) / 1000.0f;
    }
  }
}

typedef struct {
  const char *mode, *unnorm_key, *model; /* model NULL: "tiny-mixed" */
  int image_size;     /* 0: IMG */
  int proprio_len;    /* 0: PROPRIO */
  float proprio0;     /* NAN: keep */
  uint32_t draft_width; /* 0: absent */
} s_infer_opts_t;

static void s_send_infer(s_broker_t *b, uint64_t id, int obs, s_infer_opts_t o) {
  msg_t m;
  msg_init(&m, MSG_INFER, id);
  msg_infer_body_t *q = &m.infer;
  snprintf(q->variant, sizeof q->variant, "%s", o.mode);
  q->task = 1;
  q->trial = (uint32_t)obs;
  q->step = 0;
  snprintf(q->instruction, sizeof q->instruction, "%s", s_instr[obs]);
  snprintf(q->model, sizeof q->model, "%s", o.model ? o.model : "tiny-mixed");
  snprintf(q->unnorm_key, sizeof q->unnorm_key, "%s", o.unnorm_key);
  q->mode = !strcmp(o.mode, "ar") ? MSG_MODE_AR : !strcmp(o.mode, "spec") ? MSG_MODE_SPEC : MSG_MODE_SPEC_RELAXED;
  if (o.draft_width) q->has_draft_width = true, q->draft_width = o.draft_width;
  static uint8_t big[64 * 64 * 3];
  static float prop[PROPRIO];
  memcpy(prop, s_proprio[obs], sizeof prop);
  if (!isnan(o.proprio0)) prop[0] = o.proprio0;
  int size = o.image_size ? o.image_size : IMG;
  uint32_t ishape[3] = {(uint32_t)size, (uint32_t)size, 3};
  uint32_t pshape[1] = {(uint32_t)(o.proprio_len ? o.proprio_len : PROPRIO)};
  msg_error_t err;
  const void *agent = size == IMG ? (const void *)s_images[obs][0] : (const void *)big;
  msg_add_frame(&m, "agentview", MSG_DTYPE_U8, 3, ishape, agent, (size_t)size * size * 3, &err);
  msg_add_frame(&m, "eye_in_hand", MSG_DTYPE_U8, 3, (uint32_t[]){IMG, IMG, 3}, s_images[obs][1], IMG * IMG * 3, &err);
  msg_add_frame(&m, "proprio", MSG_DTYPE_F32, 1, pshape, prop, sizeof(float) * pshape[0], &err);
  CHECK(msg_sock_send(b->sock, b->route, &m, &err) == MSG_OK, "INFER %llu: %s", (unsigned long long)id, err.text);
}

#define INFER_OPTS(...) ((s_infer_opts_t){.proprio0 = NAN, __VA_ARGS__})

/* In-process expectations: gw_policy_decode on observations idx[0..n) with the package defaults for
 * `mode`, unnormalized with `key`. */
/* width 0: the package's default; stats (NULL: not wanted) receives each row's decode statistics. */
static void s_expect(gw_policy_t *p, const char *key, int mode, const int *idx, int n, float (*chunk)[HA],
                     int32_t (*codes)[LG], int *status, int width, gw_stats_t *stats) {
  gw_obs_t obs[NOBS];
  gw_result_t res[NOBS];
  static uint8_t stacked[NOBS][NCAM * IMG * IMG * 3];
  static float prop[NOBS][PROPRIO];
  for (int i = 0; i < n; i++) {
    memcpy(stacked[i], s_images[idx[i]], sizeof stacked[i]);
    memcpy(prop[i], s_proprio[idx[i]], sizeof prop[i]);
    obs[i] = (gw_obs_t){stacked[i], NCAM, IMG, IMG, prop[i], PROPRIO, s_instr[idx[i]]};
    res[i] = (gw_result_t){.chunk = chunk[i], .codes = codes[i]};
  }
  CHECK(gw_policy_set_unnorm_key(p, key) == GW_OK, "set_unnorm_key %s: %s", key, gw_errmsg());
  gw_decode_params_t prm = gw_policy_manifest(p)->decoding;
  prm.mode = mode;
  if (width) prm.width = width;
  int rc = gw_policy_decode(p, obs, n, &prm, res);
  CHECK(rc == GW_OK, "in-process decode: %s", gw_errmsg());
  for (int i = 0; i < n; i++) {
    if (stats) stats[i] = res[i].stats;
    if (status) status[i] = res[i].status;
    else CHECK(res[i].status == GW_OK, "in-process row %d: %s", i, res[i].message);
  }
}

/* The ACTION / ERROR replies to ids first..first+n-1, in any order, into replies[id - first]. */
static int s_collect(s_broker_t *b, uint64_t first, int n, msg_in_t **replies) {
  int got = 0;
  for (int i = 0; i < n; i++) replies[i] = NULL;
  while (got < n) {
    msg_in_t *in = s_recv(b, 60000, false);
    if (!in) break;
    uint64_t k = in->msg.id - first;
    bool ours = (in->msg.type == MSG_ACTION || in->msg.type == MSG_ERROR) && in->msg.id >= first && k < (uint64_t)n;
    CHECK(ours && !replies[k], "unexpected %s id %llu", msg_type_name(in->msg.type), (unsigned long long)in->msg.id);
    if (ours && !replies[k]) {
      replies[k] = in;
      got++;
    } else {
      msg_in_destroy(&in);
    }
  }
  CHECK(got == n, "%d of %d replies from id %llu", got, n, (unsigned long long)first);
  return got;
}

static void s_free_replies(msg_in_t **r, int n) {
  for (int i = 0; i < n; i++) msg_in_destroy(&r[i]);
}

/* An ACTION with batch == `batch` whose actions and codes equal the expectations. */
static void s_check_action(const msg_in_t *in, uint32_t batch, const float *chunk, const int32_t *codes,
                           const char *what) {
  CHECK(in && in->msg.type == MSG_ACTION, "%s: %s (%s)", what, in ? msg_type_name(in->msg.type) : "nothing",
        in && in->msg.type == MSG_ERROR ? in->msg.error.text : "");
  if (!in || in->msg.type != MSG_ACTION) return;
  const msg_action_body_t *a = &in->msg.action;
  CHECK(a->batch == batch, "%s: batch %u, expected %u", what, a->batch, batch);
  const msg_frame_t *f = msg_find_frame(&in->msg, "actions");
  CHECK(f && f->dtype == MSG_DTYPE_F32 && f->rank == 2 && f->shape[0] == 8 && f->shape[1] == 7, "%s: actions frame",
        what);
  if (f && f->size == sizeof(float) * HA) {
    float got[HA];
    memcpy(got, f->data, sizeof got);
    int diff = 0;
    for (int k = 0; k < HA; k++) diff += got[k] != chunk[k];
    CHECK(diff == 0, "%s: %d of %d action values differ from the policy C API in-process", what, diff, HA);
  }
  const msg_frame_t *c = msg_find_frame(&in->msg, "codes");
  CHECK(c && c->dtype == MSG_DTYPE_I32 && c->size == sizeof(int32_t) * LG, "%s: codes frame", what);
  if (c && c->size == sizeof(int32_t) * LG) {
    int32_t got[LG];
    memcpy(got, c->data, sizeof got);
    CHECK(memcmp(got, codes, sizeof got) == 0, "%s: codes differ from the policy C API in-process", what);
  }
  CHECK(a->has_worker && a->main_forwards >= 1, "%s: worker name and main forwards", what);
}

static void s_check_error(const msg_in_t *in, uint32_t code, const char *needle1, const char *needle2,
                          const char *what) {
  CHECK(in && in->msg.type == MSG_ERROR && in->msg.error.code == code && strstr(in->msg.error.text, needle1) &&
            strstr(in->msg.error.text, needle2),
        "%s: expected ERROR %u naming '%s' and '%s', got %s %u '%s'", what, code, needle1, needle2,
        in ? msg_type_name(in->msg.type) : "nothing", in && in->msg.type == MSG_ERROR ? in->msg.error.code : 0,
        in && in->msg.type == MSG_ERROR ? in->msg.error.text : "");
}

/* ---- the scenarios ------------------------------------------------------------------------------- */

/* The device of the main and NaN scenarios: RSD_TEST_DEVICE (cpu by default; ops/gpu/run.sh sets cuda:0 on
 * the GPU machine, where the worker and the in-process expectations then both run on CUDA). */
static const char *s_device = "cpu";

static void s_main_worker(const char *exe, const char *models, s_broker_t *b) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/mixed", models);
  gw_policy_opts_t popts = {s_device, "libero_spatial", 1, 1, 0, GW_DTYPE_FLOAT32};
  gw_policy_t *p = NULL;
  int rc = gw_policy_open(dir, &popts, &p);
  CHECK(rc == GW_OK, "in-process policy %s: %s", dir, gw_errmsg());
  if (rc != GW_OK) return;
  const gw_manifest_t *man = gw_policy_manifest(p);
  /* Expectations for the very batches the worker will form (same rows, same order): the tokenizer's
   * float output may depend on the batch shape in its last bits; the codes never do (integer-exact). */
  static float ex_spec[NOBS][HA], ex_ar[NOBS][HA], ex_rel[NOBS][HA], ex_two[2][HA];
  static int32_t co_spec[NOBS][LG], co_ar[NOBS][LG], co_rel[NOBS][LG], co_two[2][LG];
  int all[NOBS] = {0, 1, 2, 3}, rel_idx[NOBS] = {3, 2, 1, 0};
  gw_stats_t st_w1[NOBS], st_w3[NOBS];
  s_expect(p, "libero_spatial", GW_DECODE_SPEC, all, NOBS, ex_spec, co_spec, NULL, 0, st_w1);
  s_expect(p, "bridge_orig", GW_DECODE_AR, all, NOBS, ex_ar, co_ar, NULL, 0, NULL);
  s_expect(p, "libero_spatial", GW_DECODE_SPEC_RELAXED, rel_idx, NOBS, ex_rel, co_rel, NULL, 0, NULL);
  s_expect(p, "libero_spatial", GW_DECODE_SPEC, all, 2, ex_two, co_two, NULL, 0, NULL);
  static float ex_w3[NOBS][HA];
  static int32_t co_w3[NOBS][LG];
  s_expect(p, "libero_spatial", GW_DECODE_SPEC, all, NOBS, ex_w3, co_w3, NULL, 3, st_w3);
  int paths_differ = 0;
  for (int i = 0; i < NOBS; i++)
    paths_differ += memcmp(st_w1[i].layers_accepted, st_w3[i].layers_accepted, sizeof st_w1[i].layers_accepted) != 0;
  CHECK(paths_differ > 0, "in-process: 3 draft paths accept other layers than 1 on some row (the check below means "
                          "something)");

  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir,
                  "--device", (char *)s_device,
                  "--max-batch", "4", "--max-wait-us", "30000000", "--credit", "8", "--name", "gwtest-1",
                  "--heartbeat-ms", "1000", NULL};
  pid_t pid = proc_spawn(argv, NULL, NULL, NULL);
  CHECK(pid > 0, "spawn %s", exe);

  /* HELLO */
  msg_in_t *hello = s_recv(b, 120000, false);
  CHECK(hello && hello->msg.type == MSG_HELLO, "HELLO from the worker");
  if (!hello || hello->msg.type != MSG_HELLO) {
    msg_in_destroy(&hello);
    gw_policy_destroy(&p);
    return;
  }
  const msg_hello_body_t *h = &hello->msg.hello;
  CHECK(h->role == MSG_ROLE_GPU && h->capacity == 8 && !strcmp(h->name, "gwtest-1"), "HELLO role/capacity/name");
  CHECK(h->has_model && !strcmp(h->model, "tiny-mixed") && h->has_model_hash &&
            !strcmp(h->model_hash, man->content_hash),
        "HELLO model '%s' hash '%s'", h->model, h->model_hash);
  CHECK(h->has_device && !strcmp(h->device, s_device) && h->has_max_batch && h->max_batch == 4, "HELLO device/max_batch");
  CHECK(h->has_dtype && !strcmp(h->dtype, "float32"), "HELLO dtype float32 without --dtype");
  s_welcome(b, hello, 1000, 10);
  msg_in_destroy(&hello);
  b->beat = true;
  uint32_t sent = 0;

  /* A: four requests of one key: one batch of 4, equal to the in-process decode. */
  for (int i = 0; i < NOBS; i++, sent++)
    s_send_infer(b, 1 + i, i, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial"));
  msg_in_t *r[8];
  s_collect(b, 1, NOBS, r);
  uint32_t accepted_total = 0;
  for (int i = 0; i < NOBS; i++) {
    s_check_action(r[i], 4, ex_spec[i], co_spec[i], "spec libero_spatial");
    if (r[i] && r[i]->msg.type == MSG_ACTION) {
      const msg_action_body_t *a = &r[i]->msg.action;
      CHECK(a->draft_forwards >= 1 && a->main_forwards == a->draft_forwards + 1,
            "spec: main forwards = 1 + draft forwards (%u, %u)", a->main_forwards, a->draft_forwards);
      CHECK(a->has_proposed && a->has_accepted && a->proposed_count == 8 && a->accepted_count == 8,
            "spec: per-layer proposed / accepted");
      for (int l = 0; l < 8 && a->has_accepted; l++) {
        CHECK(a->accepted[l] <= a->proposed[l], "accepted <= proposed at layer %d", l);
        accepted_total += a->accepted[l];
      }
    }
  }
  CHECK(accepted_total > 0, "the draft of 'mixed' has some layers accepted");
  s_free_replies(r, NOBS);

  /* B: the same observations in ar with the other statistics: ar's codes (= spec's), bridge_orig's actions. */
  for (int i = 0; i < NOBS; i++, sent++)
    s_send_infer(b, 11 + i, i, INFER_OPTS(.mode = "ar", .unnorm_key = "bridge_orig"));
  s_collect(b, 11, NOBS, r);
  int differ = 0;
  for (int i = 0; i < NOBS; i++) {
    s_check_action(r[i], 4, ex_ar[i], co_ar[i], "ar bridge_orig");
    CHECK(memcmp(co_ar[i], co_spec[i], sizeof co_ar[i]) == 0, "ar codes == spec codes (lossless), row %d", i);
    for (int k = 0; k < HA; k++) differ += ex_ar[i][k] != ex_spec[i][k];
    if (r[i] && r[i]->msg.type == MSG_ACTION)
      CHECK(r[i]->msg.action.main_forwards == 8 && r[i]->msg.action.draft_forwards == 0 &&
                !r[i]->msg.action.has_proposed,
            "ar: L main forwards, no draft");
  }
  CHECK(differ > 0, "bridge_orig and libero_spatial statistics give different actions");
  s_free_replies(r, NOBS);

  /* B2: draft_width 3: one batch of 4 decoded with three draft paths per row, as in-process with width 3. */
  for (int i = 0; i < NOBS; i++, sent++)
    s_send_infer(b, 51 + i, i, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial", .draft_width = 3));
  s_collect(b, 51, NOBS, r);
  for (int i = 0; i < NOBS; i++) {
    s_check_action(r[i], 4, ex_w3[i], co_w3[i], "spec draft_width 3");
    CHECK(memcmp(co_w3[i], co_ar[i], sizeof co_w3[i]) == 0, "draft_width 3: codes == ar codes, row %d", i);
    if (r[i] && r[i]->msg.type == MSG_ACTION) {
      const msg_action_body_t *a = &r[i]->msg.action;
      int same = a->main_forwards == (uint32_t)st_w3[i].main_forwards && a->has_accepted;
      for (int l = 0; l < 8 && same; l++) same = a->accepted[l] == (uint32_t)st_w3[i].layers_accepted[l];
      CHECK(same, "draft_width 3: row %d's forwards and accepted layers are the in-process width-3 ones", i);
    }
  }
  s_free_replies(r, NOBS);

  /* C: misfits answered with ERROR 31 at once; the spec-relaxed batch around them is served. */
  s_send_infer(b, 21, 0, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial", .image_size = 32));
  s_send_infer(b, 22, 1, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_goal"));
  for (int i = 0; i < NOBS; i++) s_send_infer(b, 23 + i, rel_idx[i], INFER_OPTS(.mode = "spec-relaxed", .unnorm_key = "libero_spatial"));
  s_send_infer(b, 27, 2, INFER_OPTS(.mode = "ar", .unnorm_key = "libero_spatial", .proprio_len = 7));
  s_send_infer(b, 28, 2, INFER_OPTS(.mode = "ar", .unnorm_key = "libero_spatial", .model = "tiny-other"));
  sent += 8;
  s_collect(b, 21, 8, r);
  s_check_error(r[0], MSG_ERR_BAD_REQUEST, "agentview", "[32, 32, 3]", "wrong image size");
  s_check_error(r[1], MSG_ERR_BAD_REQUEST, "'libero_goal'", "libero_spatial", "unknown unnorm_key");
  for (int i = 0; i < NOBS; i++) s_check_action(r[2 + i], 4, ex_rel[i], co_rel[i], "spec-relaxed around errors");
  s_check_error(r[6], MSG_ERR_BAD_REQUEST, "proprio", "[7]", "wrong proprio shape");
  s_check_error(r[7], MSG_ERR_BAD_REQUEST, "'tiny-other'", "tiny-mixed", "wrong model");
  s_free_replies(r, 8);

  /* Credit: one READY credit per answered INFER (they follow the answers on the same connection). */
  for (int t = 0; t < 100 && b->credit < sent; t++) {
    msg_in_t *x = s_recv(b, 100, false);
    CHECK(!x, "unexpected %s while waiting for READY", x ? msg_type_name(x->msg.type) : "");
    msg_in_destroy(&x);
  }
  CHECK(b->credit == sent, "READY credit %u for %u answered INFERs", b->credit, sent);

  /* SIGTERM with two requests queued (a part-full batch waiting 30 s): both answered, BYE, exit 0. */
  s_send_infer(b, 31, 0, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial"));
  s_send_infer(b, 32, 1, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial"));
  bool held2 = false;
  for (int t = 0; t < 30 && !held2; t++) {
    msg_in_t *x = s_recv(b, 2000, true);
    held2 = x && x->msg.type == MSG_HEARTBEAT && b->last_busy == 2;
    msg_in_destroy(&x);
  }
  CHECK(held2 && b->heartbeats > 0, "a HEARTBEAT reports busy = 2 held requests (last busy %u, %d heartbeats)",
        b->last_busy, b->heartbeats);
  uint32_t credit_before = b->credit;
  kill(pid, SIGTERM);
  s_collect(b, 31, 2, r);
  s_check_action(r[0], 2, ex_two[0], co_two[0], "after SIGTERM, row 0");
  s_check_action(r[1], 2, ex_two[1], co_two[1], "after SIGTERM, row 1");
  CHECK(!memcmp(co_two, co_spec, sizeof co_two), "a batch of 2 decodes the codes of a batch of 4");
  s_free_replies(r, 2);
  msg_in_t *bye = s_recv(b, 30000, false);
  CHECK(bye && bye->msg.type == MSG_BYE && bye->msg.bye.has_reason && !strcmp(bye->msg.bye.reason, "SIGTERM"),
        "BYE (SIGTERM) after the last answers, got %s", bye ? msg_type_name(bye->msg.type) : "nothing");
  msg_in_destroy(&bye);
  CHECK(b->credit == credit_before, "no READY once stopping (%u -> %u)", credit_before, b->credit);
  int st = proc_wait(pid, 30);
  CHECK(st == 0, "exit status 0 after SIGTERM (got %d)", st);
  b->beat = false;
  gw_policy_destroy(&p);
}

/* Runs argv (a python) to its end: exit status, and its stdout then stderr in text. */
static int s_run_py(char *const argv[], const char *tmp_prefix, char *text, size_t cap) {
  char o[1200], e[1200];
  snprintf(o, sizeof o, "%s.py.out", tmp_prefix);
  snprintf(e, sizeof e, "%s.py.err", tmp_prefix);
  unlink(e);
  int st = proc_wait(proc_spawn(argv, e, o, NULL), 120);
  size_t n = scratch_read(o, text, cap);
  scratch_read(e, text + n, cap - n);
  unlink(o);
  unlink(e);
  return st;
}

/* train/'s side of the recording format: rsd_data.load_recorded reads the row back (trial 0, proprio as sent), and
 * export_bench_obs.py --recording keeps it for trial 0 and refuses trial 5 (no rows). */
static void s_check_recording_python(const char *python, const char *train, const char *rec) {
  char code[2048], sub[1200], text[4096], prop[512] = "";
  for (int k = 0; k < PROPRIO; k++) snprintf(prop + strlen(prop), sizeof prop - strlen(prop), "%s%.9g", k ? ", " : "",
                                             s_proprio[0][k]);
  snprintf(code, sizeof code,
           "import sys; sys.path.insert(0, '%s'); import numpy as np, rsd_data\n"
           "r = rsd_data.load_recorded('%s', cameras=%d, size=%d, proprio=%d)\n"
           "assert r['images'].shape == (1, %d, %d, %d, 3), r['images'].shape\n"
           "assert list(r['trial']) == [0] and list(r['task']) == [1], (r['trial'], r['task'])\n"
           "assert np.array_equal(r['proprio'][0], np.array([%s], np.float32)), r['proprio'][0]\n"
           "print('load_recorded ok')\n",
           train, rec, NCAM, IMG, PROPRIO, NCAM, IMG / 2, IMG / 2, prop);
  char *argv1[] = {(char *)python, "-c", code, NULL};
  int st = s_run_py(argv1, rec, text, sizeof text);
  CHECK(st == 0 && strstr(text, "load_recorded ok"), "rsd_data.load_recorded reads the recording (exit %d): %s", st, text);
  char script[1200];
  snprintf(script, sizeof script, "%s/export_bench_obs.py", train);
  snprintf(sub, sizeof sub, "%s-trial0", rec);
  char *argv2[] = {(char *)python, script, "--recording", (char *)rec, "--trials", "0", "--out", sub, NULL};
  st = s_run_py(argv2, rec, text, sizeof text);
  char path[1300], a[4096], b2[4096];
  snprintf(path, sizeof path, "%s/rows.tsv", rec);
  scratch_read(path, a, sizeof a);
  snprintf(path, sizeof path, "%s/rows.tsv", sub);
  scratch_read(path, b2, sizeof b2);
  CHECK(st == 0 && strstr(text, "1 of 1 recorded rows") && !strcmp(a, b2),
        "export_bench_obs.py --recording --trials 0 keeps the one row (exit %d): %s", st, text);
  snprintf(sub, sizeof sub, "%s-trial5", rec);
  char *argv3[] = {(char *)python, script, "--recording", (char *)rec, "--trials", "5", "--out", sub, NULL};
  st = s_run_py(argv3, rec, text, sizeof text);
  CHECK(st != 0 && strstr(text, "no rows of trials [5]"), "export_bench_obs.py --trials 5: no rows, refused (exit %d): %s",
        st, text);
}

/* The --record-obs recording in rec after the nan worker: the one row answered with an ACTION (obs 0). */
static void s_check_recording(const char *exe, const char *dir, const char *rec, s_broker_t *b) {
  char path[1200], text[4096];
  snprintf(path, sizeof path, "%s/rows.tsv", rec);
  scratch_read(path, text, sizeof text);
  const char *head = "variant\ttask\ttrial\tstep\tmode\tmain_forwards\nspec\t1\t0\t0\tspec\t";
  const char *tail = strchr(text + strlen(head), '\n');
  CHECK(!strncmp(text, head, strlen(head)) && atoi(text + strlen(head)) >= 2 && tail && !tail[1],
        "rows.tsv: a header and the one row answered with an ACTION (variant spec, task 1, trial 0): %s", text);
  snprintf(path, sizeof path, "%s/instructions.txt", rec);
  scratch_read(path, text, sizeof text);
  char want[256];
  snprintf(want, sizeof want, "%s\n", s_instr[0]);
  CHECK(!strcmp(text, want), "instructions.txt is the row's instruction: '%s'", text);
  static uint8_t img[NCAM][IMG * IMG * 3 + 1];
  float prop[PROPRIO + 1];
  snprintf(path, sizeof path, "%s/images.u8", rec);
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(img, 1, sizeof img, f) : 0;
  if (f) fclose(f);
  CHECK(n == sizeof s_images[0] && !memcmp(img, s_images[0], n), "images.u8: the row's two camera frames (%zu bytes)", n);
  snprintf(path, sizeof path, "%s/proprio.f32", rec);
  f = fopen(path, "rb");
  n = f ? fread(prop, 1, sizeof prop, f) : 0;
  if (f) fclose(f);
  CHECK(n == sizeof s_proprio[0] && !memcmp(prop, s_proprio[0], n), "proprio.f32: the row's proprio (%zu bytes)", n);
  /* the same directory again: refused before serving */
  char errf[1200];
  snprintf(errf, sizeof errf, "%s.stderr", rec);
  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", (char *)dir, "--device",
                  (char *)s_device, "--record-obs", (char *)rec, NULL};
  pid_t pid = proc_spawn(argv, errf, NULL, NULL);
  int st = proc_wait(pid, 120);
  scratch_read(errf, text, sizeof text);
  CHECK(st == 1 && strstr(text, rec) && strstr(text, "already holds a recording"),
        "--record-obs on a directory holding a recording: exit 1 naming it (got %d): %s", st, text);
  unlink(errf);
}

static void s_nan_worker(const char *exe, const char *models, s_broker_t *b, const char *rec, const char *python,
                         const char *train) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/nan", models);
  gw_policy_opts_t popts = {s_device, "libero_spatial", 1, 1, 0, GW_DTYPE_FLOAT32};
  gw_policy_t *p = NULL;
  CHECK(gw_policy_open(dir, &popts, &p) == GW_OK, "in-process nan policy: %s", gw_errmsg());
  if (!p) return;
  static float ex[2][HA];
  static int32_t co[2][LG];
  int idx[2] = {0, 1}, status[2];
  /* row 1 with proprio[0] > 100 makes the package return NaN for that row */
  float keep = s_proprio[1][0];
  s_proprio[1][0] = 1000.0f;
  s_expect(p, "libero_spatial", GW_DECODE_SPEC, idx, 2, ex, co, status, 0, NULL);
  s_proprio[1][0] = keep;
  CHECK(status[0] == GW_OK && status[1] == GW_ENONFINITE, "in-process: NaN for row 1 only (%d, %d)", status[0],
        status[1]);

  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir,
                  "--device", (char *)s_device,
                  "--max-batch", "2", "--max-wait-us", "30000000", "--credit", "2", "--name", "gwtest-2",
                  "--record-obs", (char *)rec, NULL};
  pid_t pid = proc_spawn(argv, NULL, NULL, NULL);
  msg_in_t *h1 = s_recv(b, 120000, false);
  CHECK(h1 && h1->msg.type == MSG_HELLO, "HELLO from the nan worker");
  if (!h1 || h1->msg.type != MSG_HELLO) {
    msg_in_destroy(&h1);
    gw_policy_destroy(&p);
    return;
  }
  /* a WELCOME with a short heartbeat, then silence: the worker must say HELLO again on a new connection */
  s_welcome(b, h1, 50, 2);
  b->beat = false;
  msg_in_t *h2 = s_recv(b, 30000, false);
  CHECK(h2 && h2->msg.type == MSG_HELLO && h2->msg.id != h1->msg.id && !zframe_eq(h2->route, h1->route),
        "a new HELLO (new nonce, new connection) after the broker fell silent");
  msg_in_destroy(&h1);
  if (!h2 || h2->msg.type != MSG_HELLO) {
    msg_in_destroy(&h2);
    gw_policy_destroy(&p);
    return;
  }
  s_welcome(b, h2, 1000, 10);
  msg_in_destroy(&h2);
  b->beat = true;

  s_infer_opts_t o = INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial", .model = "tiny-nan");
  s_send_infer(b, 41, 0, o);
  o.proprio0 = 1000.0f;
  s_send_infer(b, 42, 1, o);
  msg_in_t *r[2];
  s_collect(b, 41, 2, r);
  s_check_action(r[0], 2, ex[0], co[0], "the row next to a NaN row");
  s_check_error(r[1], MSG_ERR_MODEL, "id 42", "NaN", "NaN output");
  s_free_replies(r, 2);
  /* a value the model cannot take is ERROR 7 (RANGE), not 31: it is this observation's, not the variant's */
  o.proprio0 = INFINITY;
  s_send_infer(b, 43, 1, o);
  s_collect(b, 43, 1, r);
  s_check_error(r[0], MSG_ERR_RANGE, "id 43", "proprio[0] is not finite", "non-finite proprio");
  s_free_replies(r, 1);

  kill(pid, SIGINT);
  msg_in_t *bye = s_recv(b, 30000, false);
  CHECK(bye && bye->msg.type == MSG_BYE && !strcmp(bye->msg.bye.reason, "SIGINT"), "BYE (SIGINT)");
  msg_in_destroy(&bye);
  int st = proc_wait(pid, 30);
  CHECK(st == 0, "exit status 0 after SIGINT (got %d)", st);
  b->beat = false;
  gw_policy_destroy(&p);
  s_check_recording(exe, dir, rec, b);
  s_check_recording_python(python, train, rec);
}

/* A recording that cannot be written: the ACTION still goes out, then BYE ("cannot record observations") and exit 1. */
static void s_record_full_worker(const char *exe, const char *models, s_broker_t *b, const char *tmp) {
  char dir[1024], rec[1100], link[1200], errf[1100], text[4096];
  snprintf(dir, sizeof dir, "%s/mixed", models);
  snprintf(rec, sizeof rec, "%s/rec-full", tmp);
  snprintf(link, sizeof link, "%s/images.u8", rec);
  snprintf(errf, sizeof errf, "%s/rec-full.stderr", tmp);
  CHECK(mkdir(rec, 0777) == 0 && symlink("/dev/full", link) == 0, "a recording directory whose images.u8 is /dev/full");
  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir, "--device",
                  (char *)s_device, "--max-batch", "1", "--name", "gwtest-3", "--record-obs", rec, NULL};
  pid_t pid = proc_spawn(argv, errf, NULL, NULL);
  msg_in_t *h = s_recv(b, 120000, false);
  CHECK(h && h->msg.type == MSG_HELLO, "HELLO from the worker recording to /dev/full");
  if (!h || h->msg.type != MSG_HELLO) {
    msg_in_destroy(&h);
    return;
  }
  s_welcome(b, h, 1000, 10);
  msg_in_destroy(&h);
  b->beat = true;
  s_send_infer(b, 51, 0, INFER_OPTS(.mode = "ar", .unnorm_key = "libero_spatial"));
  msg_in_t *r = s_recv(b, 60000, false);
  CHECK(r && r->msg.type == MSG_ACTION && r->msg.id == 51, "the request is answered before the recording fails");
  msg_in_destroy(&r);
  msg_in_t *bye = s_recv(b, 30000, false);
  CHECK(bye && bye->msg.type == MSG_BYE && !strcmp(bye->msg.bye.reason, "cannot record observations"),
        "BYE (cannot record observations), got %s", bye ? msg_type_name(bye->msg.type) : "nothing");
  msg_in_destroy(&bye);
  b->beat = false;
  int st = proc_wait(pid, 30);
  scratch_read(errf, text, sizeof text);
  CHECK(st == 1 && strstr(text, rec) && strstr(text, "writing row 0"),
        "exit 1 and a message naming the recording and the row (got %d): %s", st, text);
}

/* --dtype bfloat16: HELLO says so, and the worker's answers are the in-process policy's at that precision
 * (main and draft under autocast), code for code; a --dtype it does not know is refused, naming it. */
static void s_dtype_worker(const char *exe, const char *models, s_broker_t *b, const char *tmp) {
  char dir[1024], errf[1100], text[4096];
  snprintf(dir, sizeof dir, "%s/mixed", models);
  gw_policy_opts_t popts = {s_device, "libero_spatial", 1, 1, 0, GW_DTYPE_BFLOAT16};
  gw_policy_t *p = NULL;
  CHECK(gw_policy_open(dir, &popts, &p) == GW_OK, "in-process bfloat16 policy: %s", gw_errmsg());
  if (!p) return;
  static float ex[NOBS][HA];
  static int32_t co[NOBS][LG];
  int all[NOBS] = {0, 1, 2, 3};
  s_expect(p, "libero_spatial", GW_DECODE_SPEC, all, NOBS, ex, co, NULL, 0, NULL);
  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir, "--device",
                  (char *)s_device, "--dtype", "bfloat16", "--max-batch", "4", "--max-wait-us", "30000000",
                  "--name", "gwtest-bf16", NULL};
  snprintf(errf, sizeof errf, "%s/bf16.stderr", tmp);
  pid_t pid = proc_spawn(argv, errf, NULL, NULL);
  msg_in_t *h = s_recv(b, 120000, false);
  CHECK(h && h->msg.type == MSG_HELLO && h->msg.hello.has_dtype && !strcmp(h->msg.hello.dtype, "bfloat16"),
        "HELLO with dtype bfloat16 (got %s)", h && h->msg.type == MSG_HELLO ? h->msg.hello.dtype : "no HELLO");
  if (!h || h->msg.type != MSG_HELLO) {
    msg_in_destroy(&h);
    gw_policy_destroy(&p);
    return;
  }
  s_welcome(b, h, 1000, 10);
  msg_in_destroy(&h);
  b->beat = true;
  for (int i = 0; i < NOBS; i++) s_send_infer(b, 61 + i, i, INFER_OPTS(.mode = "spec", .unnorm_key = "libero_spatial"));
  msg_in_t *r[NOBS];
  s_collect(b, 61, NOBS, r);
  for (int i = 0; i < NOBS; i++) s_check_action(r[i], 4, ex[i], co[i], "spec in bfloat16");
  s_free_replies(r, NOBS);
  kill(pid, SIGTERM);
  msg_in_t *bye = s_recv(b, 30000, false);
  CHECK(bye && bye->msg.type == MSG_BYE, "BYE from the bfloat16 worker");
  msg_in_destroy(&bye);
  CHECK(proc_wait(pid, 30) == 0, "the bfloat16 worker exits 0 on SIGTERM");
  scratch_read(errf, text, sizeof text);
  CHECK(strstr(text, "serving tiny-mixed") && strstr(text, "in bfloat16"), "the worker's log says it serves in "
        "bfloat16: %s", text);
  b->beat = false;
  gw_policy_destroy(&p);

  snprintf(errf, sizeof errf, "%s/dtype.stderr", tmp);
  char *bad[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir, "--device", "cpu",
                 "--dtype", "float64", NULL};
  pid = proc_spawn(bad, errf, NULL, NULL);
  int st = proc_wait(pid, 60);
  scratch_read(errf, text, sizeof text);
  CHECK(st >= 1 && st < 128 && strstr(text, "'float64'"), "--dtype float64: exit 1..127 naming it (got %d): %s", st,
        text);
}

/* --device cuda:0: a clear failure naming the device, or (CUDA build on a GPU machine) a HELLO with it. */
static void s_cuda_device(const char *exe, const char *models, s_broker_t *b, const char *tmp) {
  char dir[1024], errf[1100];
  snprintf(dir, sizeof dir, "%s/exact", models);
  snprintf(errf, sizeof errf, "%s/cuda.stderr", tmp);
  char *argv[] = {(char *)exe, "--broker", (char *)msg_sock_endpoint(b->sock), "--model", dir, "--device", "cuda:0",
                  NULL};
  pid_t pid = proc_spawn(argv, errf, NULL, NULL);
  int st = -1;
  msg_in_t *hello = NULL;
  for (int t = 0; t < 600 && st == -1 && !hello; t++) {
    st = proc_wait(pid, 0);
    if (st == -1) hello = s_recv(b, 100, false);
  }
  if (hello) {
    CHECK(hello->msg.type == MSG_HELLO && !strcmp(hello->msg.hello.device, "cuda:0"), "HELLO on cuda:0");
    msg_in_destroy(&hello);
    kill(pid, SIGTERM);
    st = proc_wait(pid, 30);
    CHECK(st == 0, "cuda:0 worker exits 0 on SIGTERM (got %d)", st);
    return;
  }
  char text[4096];
  scratch_read(errf, text, sizeof text);
  CHECK(st >= 1 && st < 128 && strstr(text, "'cuda:0'"),
        "--device cuda:0 without CUDA: an exit status of 1..127 and a message naming the device (got %d): %s", st,
        text);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: gpu_worker_test PATH/TO/rsd-gpu-worker TEST_MODELS_DIR PYTHON TRAIN_DIR\n");
    return 2;
  }
  atexit(proc_kill_all);
  const char *dev = getenv("RSD_TEST_DEVICE");
  if (dev && *dev) s_device = dev;
  zsys_handler_set(NULL);
  alarm(280);
  char tmp[] = "/tmp/gpu_worker_test.XXXXXX";
  CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
  s_make_obs();
  msg_error_t err;
  s_broker_t b = {0};
  b.sock = msg_sock_new(ZMQ_ROUTER, "tcp://127.0.0.1:*", true, NULL, NULL, &err);
  CHECK(b.sock != NULL, "broker socket: %s", err.text);
  if (!b.sock) return check_summary("gpu_worker_test");

  s_main_worker(argv[1], argv[2], &b);
  char rec[64];
  snprintf(rec, sizeof rec, "%s/rec", tmp);
  s_nan_worker(argv[1], argv[2], &b, rec, argv[3], argv[4]);
  s_record_full_worker(argv[1], argv[2], &b, tmp);
  s_dtype_worker(argv[1], argv[2], &b, tmp);
  s_cuda_device(argv[1], argv[2], &b, tmp);

  zframe_destroy(&b.route);
  msg_sock_destroy(&b.sock);
  scratch_done(tmp);
  return check_summary("gpu_worker_test");
}
