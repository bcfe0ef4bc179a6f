/* broker_test.c: the inference broker (coordinator/broker.c) started in this process, with sim-side clients
 * played by the test, a GPU worker played by the test ("fake": model tiny-fake, whose every move the test
 * chooses), and two real rsd-gpu-worker processes on the tiny package "mixed" (ctest fixture gw_models).
 *
 *   broker_test PATH/TO/rsd-gpu-worker TEST_MODELS_DIR
 *
 * In order:
 *  A. no GPU worker yet: an INFER for a model nobody serves gets ERROR 23 naming it; an INFER for the
 *     campaign's model waits and gets ERROR 25 when its deadline_ms passes; malformed frames on the sim
 *     side get the decoder's ERROR (5, 6, 12) and a HELLO there ERROR 21, each counted.
 *  B. the fake GPU worker: READY before HELLO and garbage get ERROR 21 / 5; HELLO gets the WELCOME with its
 *     nonce; a HELLO for the campaign's model with another content hash is refused (ERROR 31). Credit:
 *     with capacity 2 and five INFERs sent, exactly two arrive, byte for byte as sent (an unknown header
 *     key included), one more after READY credit=1, none after that; the queued one with deadline_ms
 *     gets ERROR 25; an ACTION and an ERROR 30 of the fake reach the client that asked, unchanged; the
 *     broker's HEARTBEATs arrive; BYE with a request held answers it ERROR 20; a request still queued for
 *     a model no worker serves any more gets ERROR 23 after no_worker_wait_ms; a request for that
 *     model waits for a new fake to join and is forwarded to it.
 *  C. two real GPU workers: 120 INFERs from three clients are each answered exactly once with an
 *     ACTION whose codes are the in-process policy's for that request's observation (so answers reach
 *     the request they belong to), from batches within max_batch, by both workers; no GPU worker ever
 *     answers ERROR 23 (the broker never forwards without credit) and the broker's in-flight count never
 *     exceeds the workers' total credit.
 *  D. one worker stopped (SIGSTOP), 24 INFERs sent, then SIGKILL: the requests it held (at most its
 *     credit) get ERROR 20 naming it, the others ACTIONs from the survivor, each exactly once; later
 *     requests are all served by the survivor.
 *  E. co_broker_destroy drains: the surviving worker gets DRAIN, says BYE and exits 0.
 * Every child is killed when the test exits. */
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "check.h"
#include "msg.h"
#include "policy.h"
#include "proc.h"

#define IMG 16
#define PROPRIO 8
#define NOBS 4
#define LG (8 * 4)
#define NSIMS 3
#define MAX_RECS 512
#define FAKE_MODEL "tiny-fake"

/* ---- observations and what the policy makes of them ------------------------------------------- */

static uint8_t s_images[NOBS][2][IMG * IMG * 3];
static float s_proprio[NOBS][PROPRIO];
static const char *s_instr[NOBS] = {"pick up the black bowl", "put the bowl on the plate",
                                    "pick up the bowl next to the ramekin", "open the drawer"};
static int32_t s_codes[NOBS][LG]; /* ar codes of each observation (batch-independent, integer-exact) */

static void s_make_obs(void) {
  uint32_t x = 777;
  for (int i = 0; i < NOBS; i++) {
    for (int c = 0; c < 2; c++)
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

/* Decodes the observations in-process; returns the package's content hash (static) or NULL. */
static const char *s_expect(const char *dir) {
  static char hash[128];
  gw_policy_opts_t popts = {"cpu", "libero_spatial", 1, 1, 0, GW_DTYPE_FLOAT32};
  gw_policy_t *p = NULL;
  CHECK(gw_policy_open(dir, &popts, &p) == GW_OK, "in-process policy %s: %s", dir, gw_errmsg());
  if (!p) return NULL;
  snprintf(hash, sizeof hash, "%s", gw_policy_manifest(p)->content_hash);
  static uint8_t stacked[NOBS][2 * IMG * IMG * 3];
  static float prop[NOBS][PROPRIO], chunk[NOBS][8 * 7];
  gw_obs_t obs[NOBS];
  gw_result_t res[NOBS];
  for (int i = 0; i < NOBS; i++) {
    memcpy(stacked[i], s_images[i], sizeof stacked[i]);
    memcpy(prop[i], s_proprio[i], sizeof prop[i]);
    obs[i] = (gw_obs_t){stacked[i], 2, IMG, IMG, prop[i], PROPRIO, s_instr[i]};
    res[i] = (gw_result_t){.chunk = chunk[i], .codes = s_codes[i]};
  }
  gw_decode_params_t prm = gw_policy_manifest(p)->decoding;
  prm.mode = GW_DECODE_AR;
  CHECK(gw_policy_decode(p, obs, NOBS, &prm, res) == GW_OK, "in-process decode: %s", gw_errmsg());
  gw_policy_destroy(&p);
  return hash;
}

/* ---- requests and their answers ------------------------------------------------------------------ */

typedef struct {
  uint64_t id;
  int client, obs;
  int answers;                   /* ACTIONs + ERRORs received for this id */
  msg_type_t type;               /* of the first answer */
  uint32_t code;                 /* ERROR.code */
  char text[MSG_TEXT_MAX + 1];   /* ERROR.text */
  char worker[MSG_NAME_MAX + 1]; /* ACTION.worker */
  uint32_t batch;
  bool codes_ok;                 /* the ACTION's codes are s_codes[obs] */
  uint8_t header[1024];          /* the header frame as sent */
  size_t header_size;
} s_rec_t;

static s_rec_t s_recs[MAX_RECS];
static int s_nrecs, s_stray;
static msg_sock_t *s_sims[NSIMS];
static uint64_t s_seq[NSIMS];

static s_rec_t *s_find(uint64_t id) {
  for (int i = 0; i < s_nrecs; i++)
    if (s_recs[i].id == id) return &s_recs[i];
  return NULL;
}

/* Sends an INFER from client c for observation obs, with one header key the protocol does not know
 * ("x_broker_test", which a forwarder that re-encodes would lose). Returns its record. */
static s_rec_t *s_infer(int c, int obs, const char *model, uint32_t deadline_ms) {
  CHECK(s_nrecs < MAX_RECS, "too many requests for the test's table");
  if (s_nrecs >= MAX_RECS) return &s_recs[0];
  s_rec_t *r = &s_recs[s_nrecs++];
  memset(r, 0, sizeof *r);
  r->id = ((uint64_t)(c + 1) << 32) | ++s_seq[c];
  r->client = c;
  r->obs = obs;
  msg_t m;
  msg_init(&m, MSG_INFER, r->id);
  msg_infer_body_t *q = &m.infer;
  snprintf(q->variant, sizeof q->variant, "ar");
  q->task = 0;
  q->trial = (uint32_t)obs;
  q->step = (uint32_t)s_seq[c];
  snprintf(q->instruction, sizeof q->instruction, "%s", s_instr[obs]);
  snprintf(q->model, sizeof q->model, "%s", model);
  snprintf(q->unnorm_key, sizeof q->unnorm_key, "libero_spatial");
  q->mode = MSG_MODE_AR;
  if (deadline_ms) {
    q->has_deadline_ms = true;
    q->deadline_ms = deadline_ms;
  }
  msg_error_t err;
  uint32_t ishape[3] = {IMG, IMG, 3}, pshape[1] = {PROPRIO};
  msg_add_frame(&m, "agentview", MSG_DTYPE_U8, 3, ishape, s_images[obs][0], sizeof s_images[obs][0], &err);
  msg_add_frame(&m, "eye_in_hand", MSG_DTYPE_U8, 3, ishape, s_images[obs][1], sizeof s_images[obs][1], &err);
  msg_add_frame(&m, "proprio", MSG_DTYPE_F32, 1, pshape, s_proprio[obs], sizeof s_proprio[obs], &err);
  msg_buf_t buf = {0};
  CHECK(msg_encode(&m, &buf, &err) == MSG_OK, "encode INFER: %s", err.text);
  /* one more map entry: "x_broker_test": 1 (the header is a fixmap of fewer than 15 entries) */
  static const uint8_t extra[] = {0xad, 'x', '_', 'b', 'r', 'o', 'k', 'e', 'r', '_', 't', 'e', 's', 't', 0x01};
  CHECK(buf.size > 0 && (buf.data[0] & 0xf0) == 0x80 && (buf.data[0] & 0x0f) < 15 &&
            buf.size + sizeof extra <= sizeof r->header,
        "INFER header is a small fixmap");
  memcpy(r->header, buf.data, buf.size);
  r->header[0]++;
  memcpy(r->header + buf.size, extra, sizeof extra);
  r->header_size = buf.size + sizeof extra;
  msg_buf_free(&buf);
  zmsg_t *z = zmsg_new();
  zmsg_addmem(z, r->header, r->header_size);
  for (uint32_t i = 0; i < m.nframes; i++) zmsg_addmem(z, m.frames[i].data, m.frames[i].size);
  CHECK(zmsg_send(&z, msg_sock_zsock(s_sims[c])) == 0, "send INFER %" PRIx64, r->id);
  return r;
}

/* Reads every reply waiting on the clients into the records. */
static void s_read_sims(void) {
  for (int c = 0; c < NSIMS; c++) {
    while (zsock_events(msg_sock_zsock(s_sims[c])) & ZMQ_POLLIN) {
      msg_in_t *in = NULL;
      msg_error_t err;
      msg_err_t rc = msg_sock_recv(s_sims[c], &in, &err);
      if (!in) break;
      CHECK(rc == MSG_OK, "client %d: the broker sent a message the codec refuses: %s", c, err.text);
      const msg_t *m = &in->msg;
      s_rec_t *r = rc == MSG_OK ? s_find(m->id) : NULL;
      bool answer = m->type == MSG_ACTION || m->type == MSG_ERROR;
      if (!r || !answer || r->client != c) {
        s_stray++;
        fprintf(stderr, "stray %s id %" PRIx64 " on client %d\n", msg_type_name(m->type), m->id, c);
        msg_in_destroy(&in);
        continue;
      }
      if (r->answers++ == 0) {
        r->type = m->type;
        if (m->type == MSG_ERROR) {
          r->code = m->error.code;
          snprintf(r->text, sizeof r->text, "%s", m->error.text);
        } else {
          snprintf(r->worker, sizeof r->worker, "%s", m->action.has_worker ? m->action.worker : "");
          r->batch = m->action.batch;
          const msg_frame_t *f = msg_find_frame(m, "codes");
          r->codes_ok = f && f->size == sizeof s_codes[r->obs] && memcmp(f->data, s_codes[r->obs], f->size) == 0;
        }
      }
      msg_in_destroy(&in);
    }
  }
}

/* ---- the fake GPU worker --------------------------------------------------------------------------- */

typedef struct {
  msg_sock_t *sock;
  uint64_t nonce;
  bool welcomed;
  int heartbeats_in;          /* HEARTBEATs from the broker */
  int ninfers;
  uint64_t infer_ids[64];     /* INFERs received, in order */
  bool infer_intact[64];      /* header and payload bytes equal what the client sent */
  int drains;
  int64_t last_beat;
  bool has_other;             /* `other` holds the last message that is none of the above */
  msg_t other;                /* its header only (payload pointers are not kept) */
} s_fake_t;

static s_fake_t s_fake;

/* Reads what the broker sent the fake; sends its HEARTBEAT every 100 ms once welcomed. */
static void s_read_fake(void) {
  s_fake_t *f = &s_fake;
  if (!f->sock) return;
  if (f->welcomed && zclock_mono() - f->last_beat >= 100) {
    msg_t hb;
    msg_init(&hb, MSG_HEARTBEAT, 1);
    msg_error_t err;
    msg_sock_send(f->sock, NULL, &hb, &err);
    f->last_beat = zclock_mono();
  }
  while (zsock_events(msg_sock_zsock(f->sock)) & ZMQ_POLLIN) {
    zmsg_t *z = zmsg_recv(msg_sock_zsock(f->sock));
    if (!z) break;
    size_t n = zmsg_size(z);
    zframe_t *hdr = zmsg_first(z);
    msg_span_t spans[MSG_MAX_FRAMES];
    size_t np = 0;
    for (zframe_t *fr = zmsg_next(z); fr && np < MSG_MAX_FRAMES; fr = zmsg_next(z))
      spans[np++] = (msg_span_t){zframe_data(fr), zframe_size(fr)};
    msg_t m;
    msg_error_t err;
    msg_err_t rc = msg_decode(zframe_data(hdr), zframe_size(hdr), spans, np, &m, &err);
    CHECK(rc == MSG_OK, "fake: the broker sent a message the codec refuses: %s", err.text);
    if (rc == MSG_OK && m.type == MSG_INFER && f->ninfers < 64) {
      s_rec_t *r = s_find(m.id);
      bool intact = r && n == 4 && zframe_size(hdr) == r->header_size &&
                    memcmp(zframe_data(hdr), r->header, r->header_size) == 0 && spans[0].size == sizeof s_images[0][0] &&
                    memcmp(spans[0].data, s_images[r->obs][0], spans[0].size) == 0 &&
                    memcmp(spans[2].data, s_proprio[r->obs], sizeof s_proprio[0]) == 0;
      f->infer_intact[f->ninfers] = intact;
      f->infer_ids[f->ninfers++] = m.id;
    } else if (rc == MSG_OK && m.type == MSG_WELCOME && m.id == f->nonce) {
      f->welcomed = true;
    } else if (rc == MSG_OK && m.type == MSG_HEARTBEAT) {
      f->heartbeats_in++;
    } else if (rc == MSG_OK && m.type == MSG_DRAIN) {
      f->drains++;
    } else if (rc == MSG_OK) {
      f->other = m;
      f->other.nframes = 0;
      f->has_other = true;
    }
    zmsg_destroy(&z);
  }
}

/* ---- waiting --------------------------------------------------------------------------------------- */

/* Pumps every test socket for ms milliseconds, or until done() (nullable) is true. Tracks the largest
 * in-flight and queued counts the broker reports meanwhile. */
static co_broker_t *s_broker;
static uint64_t s_most_in_flight, s_most_queued;

static bool s_pump(int ms, bool (*done)(void)) {
  int64_t end = zclock_mono() + ms;
  zpoller_t *p = zpoller_new(NULL);
  for (int c = 0; c < NSIMS; c++) zpoller_add(p, msg_sock_zsock(s_sims[c]));
  if (s_fake.sock) zpoller_add(p, msg_sock_zsock(s_fake.sock));
  bool ok = false;
  while (!(ok = done && done()) && zclock_mono() < end) {
    zpoller_wait(p, 20);
    s_read_sims();
    s_read_fake();
    co_broker_stats_t st;
    co_broker_stats(s_broker, &st);
    if (st.in_flight > s_most_in_flight) s_most_in_flight = st.in_flight;
    if (st.queued > s_most_queued) s_most_queued = st.queued;
  }
  zpoller_destroy(&p);
  return ok;
}

/* Waits (pumping) up to ms for the broker's published counters to satisfy ok; they are published once per
 * loop iteration of the broker, just after the replies of that iteration went out. Leaves them in *st. */
static void s_stats_until(bool (*ok)(const co_broker_stats_t *), int ms, co_broker_stats_t *st) {
  int64_t end = zclock_mono() + ms;
  for (;;) {
    co_broker_stats(s_broker, st);
    if (ok(st) || zclock_mono() >= end) return;
    s_pump(10, NULL);
  }
}

static bool s_a_counted(const co_broker_stats_t *st) { return st->malformed >= 3 && st->unexpected >= 1; }
static bool s_b_counted(const co_broker_stats_t *st) { return st->lost >= 2 && st->gpu_left >= 2; }

static int s_from, s_to; /* the records s_all_answered looks at */
static bool s_all_answered(void) {
  for (int i = s_from; i < s_to; i++)
    if (s_recs[i].answers == 0) return false;
  return true;
}

static bool s_fake_welcomed(void) { return s_fake.welcomed; }
static bool s_fake_other(void) { return s_fake.has_other; }

static uint32_t s_want_gpus;
static bool s_gpus_joined(void) {
  co_broker_stats_t st;
  co_broker_stats(s_broker, &st);
  return st.gpu_workers == s_want_gpus;
}

/* Waits for an answer to r; checks it is an ERROR with `code` whose text contains `needle`. */
static void s_expect_error(s_rec_t *r, uint32_t code, const char *needle, int ms, const char *what) {
  s_from = (int)(r - s_recs);
  s_to = s_from + 1;
  s_pump(ms, s_all_answered);
  CHECK(r->answers == 1 && r->type == MSG_ERROR && r->code == code && strstr(r->text, needle),
        "%s: expected one ERROR %u naming '%s', got %d answer(s), %s %u '%s'", what, code, needle, r->answers,
        r->answers ? msg_type_name(r->type) : "nothing", r->code, r->text);
}

/* Sends raw frames from client c and expects an ERROR with `code` back (id 0 when `id` is 0). */
static void s_raw(int c, const void *hdr, size_t n, int payloads, uint32_t code, const char *what) {
  zmsg_t *z = zmsg_new();
  zmsg_addmem(z, hdr, n);
  for (int i = 0; i < payloads; i++) zmsg_addmem(z, "abc", 3);
  zmsg_send(&z, msg_sock_zsock(s_sims[c]));
  zpoller_t *p = zpoller_new(msg_sock_zsock(s_sims[c]), NULL);
  msg_in_t *in = NULL;
  msg_error_t err;
  if (zpoller_wait(p, 5000)) msg_sock_recv(s_sims[c], &in, &err);
  zpoller_destroy(&p);
  CHECK(in && in->msg.type == MSG_ERROR && in->msg.error.code == code, "%s: expected ERROR %u, got %s %u", what, code,
        in ? msg_type_name(in->msg.type) : "nothing", in && in->msg.type == MSG_ERROR ? in->msg.error.code : 0);
  msg_in_destroy(&in);
}

/* ---- the scenarios --------------------------------------------------------------------------------- */

static void s_phase_a(void) {
  s_rec_t *r = s_infer(0, 0, "no-such-model", 0);
  s_expect_error(r, MSG_ERR_OVERLOADED, "'no-such-model'", 5000, "A: unknown model");
  r = s_infer(1, 1, "tiny-mixed", 300);
  s_expect_error(r, MSG_ERR_TIMEOUT, "deadline_ms", 5000, "A: deadline with no GPU worker");

  s_raw(0, "\x81\xa1v\xc1", 4, 0, MSG_ERR_MALFORMED, "A: 0xc1 in the header map");
  s_raw(1, "\x01", 1, 0, MSG_ERR_WRONG_TYPE, "A: header that is not a map");
  /* an INFER header whose descriptors promise three frames, with one frame of 3 bytes */
  s_rec_t *t = s_infer(2, 2, "no-such-model", 0); /* answered 23: used for its header bytes only */
  s_expect_error(t, MSG_ERR_OVERLOADED, "no-such-model", 5000, "A: unknown model (2)");
  s_raw(2, t->header, t->header_size, 1, MSG_ERR_PAYLOAD, "A: INFER with a missing payload frame");
  msg_t h;
  msg_init(&h, MSG_HELLO, 5);
  h.hello.role = MSG_ROLE_SIM;
  snprintf(h.hello.name, sizeof h.hello.name, "sim-on-the-wrong-socket");
  h.hello.capacity = 1;
  snprintf(h.hello.software, sizeof h.hello.software, "broker_test");
  msg_buf_t buf = {0};
  msg_error_t err;
  msg_encode(&h, &buf, &err);
  s_raw(0, buf.data, buf.size, 0, MSG_ERR_UNEXPECTED, "A: HELLO on the sim side");
  msg_buf_free(&buf);

  co_broker_stats_t st;
  s_stats_until(s_a_counted, 5000, &st);
  CHECK(st.malformed == 3 && st.unexpected == 1, "A: 3 malformed and 1 unexpected counted (%" PRIu64 ", %" PRIu64 ")",
        st.malformed, st.unexpected);
  CHECK(st.failed == 3 && st.expired == 1 && st.forwarded == 0, "A: 3 failed (1 expired), none forwarded (%" PRIu64
        ", %" PRIu64 ", %" PRIu64 ")", st.failed, st.expired, st.forwarded);
}

/* dtype NULL: HELLO without one (float32). */
static void s_fake_hello_dtype(const char *model, const char *hash, uint32_t capacity, const char *dtype) {
  msg_t h;
  msg_init(&h, MSG_HELLO, s_fake.nonce);
  h.hello.role = MSG_ROLE_GPU;
  snprintf(h.hello.name, sizeof h.hello.name, "fake-gpu");
  h.hello.capacity = capacity;
  snprintf(h.hello.software, sizeof h.hello.software, "broker_test");
  h.hello.has_model = h.hello.has_model_hash = true;
  snprintf(h.hello.model, sizeof h.hello.model, "%s", model);
  snprintf(h.hello.model_hash, sizeof h.hello.model_hash, "%s", hash);
  if (dtype) {
    h.hello.has_dtype = true;
    snprintf(h.hello.dtype, sizeof h.hello.dtype, "%s", dtype);
  }
  msg_error_t err;
  CHECK(msg_sock_send(s_fake.sock, NULL, &h, &err) == MSG_OK, "fake HELLO: %s", err.text);
}

static void s_fake_hello(const char *model, const char *hash, uint32_t capacity) {
  s_fake_hello_dtype(model, hash, capacity, NULL);
}

static void s_fake_connect(const char *endpoint) {
  msg_error_t err;
  msg_sock_destroy(&s_fake.sock);
  memset(&s_fake, 0, sizeof s_fake);
  s_fake.sock = msg_sock_new(ZMQ_DEALER, endpoint, false, NULL, NULL, &err);
  CHECK(s_fake.sock != NULL, "fake GPU socket: %s", err.text);
  s_fake.nonce = 0xfa4e0000u + (uint64_t)zclock_mono() % 65536;
}

/* The next ERROR the fake receives; checks code and about (NULL: none, the type could not be read). */
static void s_fake_expect_error(uint32_t code, const char *about, const char *what) {
  s_fake.has_other = false;
  s_pump(5000, s_fake_other);
  const msg_t *m = s_fake.has_other ? &s_fake.other : NULL;
  bool about_ok = m && m->type == MSG_ERROR && (about ? m->error.has_about && !strcmp(m->error.about, about) : !m->error.has_about);
  CHECK(m && m->type == MSG_ERROR && m->error.code == code && about_ok, "%s: expected ERROR %u about %s, got %s %u",
        what, code, about ? about : "nothing", m ? msg_type_name(m->type) : "nothing",
        m && m->type == MSG_ERROR ? m->error.code : 0);
  s_fake.has_other = false;
}

static void s_fake_send(msg_t *m) {
  msg_error_t err;
  CHECK(msg_sock_send(s_fake.sock, NULL, m, &err) == MSG_OK, "fake sends %s: %s", msg_type_name(m->type), err.text);
}

static void s_phase_b(const char *gpu_ep, const char *hash) {
  s_fake_connect(gpu_ep);
  msg_t m;
  msg_init(&m, MSG_READY, 1);
  m.ready.credit = 5;
  s_fake_send(&m);
  s_fake_expect_error(MSG_ERR_UNEXPECTED, "READY", "B: READY before HELLO");
  zmsg_t *z = zmsg_new();
  zmsg_addstr(z, "not msgpack at all");
  zmsg_send(&z, msg_sock_zsock(s_fake.sock));
  s_fake_expect_error(MSG_ERR_WRONG_TYPE, NULL, "B: garbage on the GPU side");

  /* an impostor: the campaign's model name with another content hash */
  s_fake_hello("tiny-mixed", "sha256:0000000000000000000000000000000000000000000000000000000000000000", 2);
  s_fake_expect_error(MSG_ERR_BAD_REQUEST, "HELLO", "B: HELLO with the wrong model hash");
  /* the campaign's package in another precision than the campaign's model_dtype (float32) */
  s_fake_hello_dtype("tiny-mixed", hash, 2, "bfloat16");
  s_fake_expect_error(MSG_ERR_BAD_REQUEST, "HELLO", "B: HELLO with dtype bfloat16 for a float32 campaign");

  s_fake_hello(FAKE_MODEL, "sha256:fake", 2);
  CHECK(s_pump(5000, s_fake_welcomed), "B: WELCOME with the HELLO's nonce");
  int first = s_nrecs;
  s_rec_t *r[5];
  for (int i = 0; i < 5; i++) { /* from two clients; arrival order across connections is set by the pauses */
    r[i] = s_infer(i % 2, i % NOBS, FAKE_MODEL, i == 3 ? 400 : 0);
    s_pump(50, NULL);
  }
  s_pump(600, NULL);
  CHECK(s_fake.ninfers == 2, "B: exactly capacity (2) INFERs forwarded, got %d", s_fake.ninfers);
  CHECK(s_fake.ninfers >= 2 && s_fake.infer_ids[0] == r[0]->id && s_fake.infer_ids[1] == r[1]->id,
        "B: the oldest two, in order");
  CHECK(s_fake.ninfers >= 2 && s_fake.infer_intact[0] && s_fake.infer_intact[1],
        "B: forwarded byte for byte (header with its unknown key, payloads)");
  CHECK(r[3]->answers == 1 && r[3]->type == MSG_ERROR && r[3]->code == MSG_ERR_TIMEOUT,
        "B: the queued INFER with deadline_ms 400 got ERROR 25 (%d answers, code %u)", r[3]->answers, r[3]->code);
  msg_init(&m, MSG_READY, 2);
  m.ready.credit = 1;
  s_fake_send(&m);
  s_pump(600, NULL);
  CHECK(s_fake.ninfers == 3 && s_fake.infer_ids[2] == r[2]->id, "B: READY credit=1 forwards exactly one more (%d)",
        s_fake.ninfers);
  CHECK(s_fake.heartbeats_in > 0, "B: the broker sends HEARTBEATs");

  /* answers: an ACTION for r[0] and an ERROR 30 for r[1] reach their clients unchanged */
  msg_init(&m, MSG_ACTION, r[0]->id);
  m.action.batch = 2;
  m.action.has_worker = true;
  snprintf(m.action.worker, sizeof m.action.worker, "fake-gpu");
  static float actions[8 * 7];
  msg_error_t err;
  msg_add_frame(&m, "actions", MSG_DTYPE_F32, 2, (uint32_t[]){8, 7}, actions, sizeof actions, &err);
  s_fake_send(&m);
  msg_init(&m, MSG_ERROR, r[1]->id);
  m.error.code = MSG_ERR_MODEL;
  snprintf(m.error.text, sizeof m.error.text, "fake model failure for this test");
  m.error.has_about = true;
  snprintf(m.error.about, sizeof m.error.about, "INFER");
  s_fake_send(&m);
  s_from = first;
  s_to = first + 2;
  s_pump(5000, s_all_answered);
  CHECK(r[0]->answers == 1 && r[0]->type == MSG_ACTION && !strcmp(r[0]->worker, "fake-gpu") && r[0]->batch == 2,
        "B: the fake's ACTION reaches client %d", r[0]->client);
  CHECK(r[1]->answers == 1 && r[1]->type == MSG_ERROR && r[1]->code == MSG_ERR_MODEL &&
            !strcmp(r[1]->text, "fake model failure for this test"),
        "B: the fake's ERROR 30 reaches client %d unchanged", r[1]->client);

  /* BYE with r[2] held: ERROR 20; r[4] still queued: ERROR 23 once no_worker_wait_ms (4 s) has passed */
  msg_init(&m, MSG_BYE, 3);
  s_fake_send(&m);
  s_expect_error(r[2], MSG_ERR_TRANSPORT, "fake-gpu", 5000, "B: held by a GPU worker that left");
  CHECK(r[4]->answers == 0, "B: a queued request waits for a while when its model's worker leaves");
  s_expect_error(r[4], MSG_ERR_OVERLOADED, FAKE_MODEL, 8000, "B: no GPU worker for its model came back");

  /* a request for the model, then a new fake joins: it gets the request */
  s_rec_t *late = s_infer(2, 0, FAKE_MODEL, 0);
  s_pump(200, NULL);
  CHECK(late->answers == 0, "B: a request for a model served before waits for a GPU worker");
  s_fake_connect(gpu_ep);
  s_fake_hello(FAKE_MODEL, "sha256:fake", 1);
  CHECK(s_pump(5000, s_fake_welcomed), "B: the second fake is welcomed");
  s_pump(500, NULL);
  CHECK(s_fake.ninfers == 1 && s_fake.infer_ids[0] == late->id, "B: the waiting request goes to the new fake (%d)",
        s_fake.ninfers);
  msg_init(&m, MSG_BYE, 4);
  s_fake_send(&m);
  s_expect_error(late, MSG_ERR_TRANSPORT, "fake-gpu", 5000, "B: the second fake leaves holding it");

  co_broker_stats_t st;
  s_stats_until(s_b_counted, 5000, &st);
  CHECK(st.gpu_joined == 2 && st.gpu_left == 2 && st.gpu_refused == 2 && st.gpu_workers == 0,
        "B: 2 joined, 2 left, 2 refused, none now (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %u)", st.gpu_joined,
        st.gpu_left, st.gpu_refused, st.gpu_workers);
  CHECK(st.forwarded == 4 && st.actions == 1 && st.gpu_errors == 1 && st.lost == 2,
        "B: 4 forwarded, 1 ACTION, 1 GPU ERROR, 2 lost (%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 ")",
        st.forwarded, st.actions, st.gpu_errors, st.lost);
  msg_sock_destroy(&s_fake.sock);
}

static pid_t s_spawn_gpu(const char *exe, const char *dir, const char *endpoint, const char *name) {
  char *argv[] = {(char *)exe, "--broker", (char *)endpoint, "--model", (char *)dir, "--device", "cpu", "--max-batch",
                  "4", "--max-wait-us", "2000", "--credit", "4", "--name", (char *)name, "--heartbeat-ms", "200", NULL};
  pid_t pid = proc_spawn(argv, NULL, NULL, NULL);
  CHECK(pid > 0, "spawn %s", exe);
  return pid;
}

/* Checks records [from, to): each answered exactly once; counts by kind. */
static void s_tally(int from, int to, int *actions, int *errors20, int *other, const char *what) {
  *actions = *errors20 = *other = 0;
  for (int i = from; i < to; i++) {
    s_rec_t *r = &s_recs[i];
    CHECK(r->answers == 1, "%s: request %" PRIx64 " answered %d times", what, r->id, r->answers);
    if (r->answers && r->type == MSG_ACTION) {
      (*actions)++;
      CHECK(r->codes_ok, "%s: request %" PRIx64 " (observation %d) got another observation's codes", what, r->id, r->obs);
      CHECK(r->batch >= 1 && r->batch <= 4, "%s: batch %u beyond max_batch 4", what, r->batch);
    } else if (r->answers && r->code == MSG_ERR_TRANSPORT) {
      (*errors20)++;
    } else if (r->answers) {
      (*other)++;
      fprintf(stderr, "%s: request %" PRIx64 ": ERROR %u %s\n", what, r->id, r->code, r->text);
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: broker_test PATH/TO/rsd-gpu-worker TEST_MODELS_DIR\n");
    return 2;
  }
  atexit(proc_kill_all);
  zsys_handler_set(NULL);
  alarm(290);
  s_make_obs();
  char mixed[1024];
  snprintf(mixed, sizeof mixed, "%s/mixed", argv[2]);
  const char *hash = s_expect(mixed);
  if (!hash) return check_summary("broker_test");

  co_broker_opts_t o = {.sim_bind = "tcp://127.0.0.1:*", .gpu_bind = "tcp://127.0.0.1:*", .heartbeat_ms = 200,
                        .liveness = 5, .model = "tiny-mixed", .model_hash = hash, .model_dtype = "float32",
                        .no_worker_wait_ms = 4000};
  char err[512];
  s_broker = co_broker_new(&o, err, sizeof err);
  CHECK(s_broker != NULL, "co_broker_new: %s", err);
  if (!s_broker) return check_summary("broker_test");
  const char *sim_ep = co_broker_sim_endpoint(s_broker), *gpu_ep = co_broker_gpu_endpoint(s_broker);
  CHECK(strncmp(sim_ep, "tcp://127.0.0.1:", 16) == 0 && strcmp(sim_ep + 16, "*") != 0 && strcmp(sim_ep, gpu_ep) != 0,
        "two resolved endpoints: %s, %s", sim_ep, gpu_ep);
  for (int c = 0; c < NSIMS; c++) {
    msg_error_t me;
    s_sims[c] = msg_sock_new(ZMQ_DEALER, sim_ep, false, NULL, NULL, &me);
    CHECK(s_sims[c] != NULL, "client %d: %s", c, me.text);
    if (!s_sims[c]) return check_summary("broker_test");
  }

  s_phase_a();
  s_phase_b(gpu_ep, hash);

  /* C: two real GPU workers */
  pid_t a = s_spawn_gpu(argv[1], mixed, gpu_ep, "gw-a"), b = s_spawn_gpu(argv[1], mixed, gpu_ep, "gw-b");
  s_want_gpus = 2;
  CHECK(s_pump(180000, s_gpus_joined), "C: both GPU workers joined");
  co_broker_stats_t before, st;
  co_broker_stats(s_broker, &before);
  s_most_in_flight = s_most_queued = 0;
  int first = s_nrecs;
  for (int i = 0; i < 40; i++)
    for (int c = 0; c < NSIMS; c++) s_infer(c, (i + c) % NOBS, "tiny-mixed", 0);
  s_from = first;
  s_to = s_nrecs;
  CHECK(s_pump(120000, s_all_answered), "C: all 120 requests answered");
  s_pump(300, NULL); /* late duplicates would arrive now */
  int actions, e20, other;
  s_tally(first, s_nrecs, &actions, &e20, &other, "C");
  CHECK(actions == 120 && e20 == 0 && other == 0, "C: 120 ACTIONs (%d, %d ERROR 20, %d other)", actions, e20, other);
  int by_a = 0, by_b = 0;
  for (int i = first; i < s_nrecs; i++) {
    by_a += !strcmp(s_recs[i].worker, "gw-a");
    by_b += !strcmp(s_recs[i].worker, "gw-b");
  }
  CHECK(by_a > 0 && by_b > 0 && by_a + by_b == 120, "C: both workers served (gw-a %d, gw-b %d)", by_a, by_b);
  co_broker_stats(s_broker, &st);
  CHECK(st.gpu_overloaded == 0, "C: no GPU worker answered ERROR 23 (%" PRIu64 ")", st.gpu_overloaded);
  CHECK(st.actions - before.actions == 120 && st.forwarded - before.forwarded == 120,
        "C: 120 forwarded and 120 ACTIONs routed (%" PRIu64 ", %" PRIu64 ")", st.forwarded - before.forwarded,
        st.actions - before.actions);
  CHECK(s_most_in_flight >= 1 && s_most_in_flight <= 8, "C: in flight at most the total credit 8 (saw %" PRIu64 ")",
        s_most_in_flight);
  CHECK(s_most_queued > 0, "C: requests queued while the workers had no credit (saw %" PRIu64 ")", s_most_queued);
  CHECK(s_stray == 0, "C: no stray answers (%d)", s_stray);

  /* D: gw-a stops answering, then dies with requests held */
  kill(a, SIGSTOP);
  first = s_nrecs;
  for (int i = 0; i < 24; i++) s_infer(i % NSIMS, i % NOBS, "tiny-mixed", 0);
  s_pump(300, NULL);
  kill(a, SIGKILL);
  CHECK(proc_wait(a, 10) == 128 + SIGKILL, "D: gw-a killed");
  s_from = first;
  s_to = s_nrecs;
  CHECK(s_pump(60000, s_all_answered), "D: all 24 requests answered");
  s_pump(300, NULL);
  s_tally(first, s_nrecs, &actions, &e20, &other, "D");
  CHECK(e20 >= 1 && e20 <= 4 && actions + e20 == 24 && other == 0,
        "D: the requests gw-a held (1..4, its credit) got ERROR 20, the rest ACTIONs (%d, %d, %d other)", e20, actions,
        other);
  for (int i = first; i < s_nrecs; i++) {
    const s_rec_t *r = &s_recs[i];
    if (r->type == MSG_ERROR) CHECK(strstr(r->text, "gw-a") != NULL, "D: ERROR 20 names gw-a: %s", r->text);
    else CHECK(!strcmp(r->worker, "gw-b"), "D: served by gw-b, not '%s'", r->worker);
  }
  co_broker_stats(s_broker, &st);
  CHECK(st.gpu_workers == 1 && st.gpu_lost == 1, "D: one worker left, one lost (%u, %" PRIu64 ")", st.gpu_workers,
        st.gpu_lost);
  first = s_nrecs;
  for (int i = 0; i < 20; i++) s_infer(i % NSIMS, i % NOBS, "tiny-mixed", 0);
  s_from = first;
  s_to = s_nrecs;
  CHECK(s_pump(60000, s_all_answered), "D: 20 later requests answered");
  s_tally(first, s_nrecs, &actions, &e20, &other, "D later");
  CHECK(actions == 20, "D: the survivor serves every later request (%d ACTIONs)", actions);
  CHECK(s_stray == 0, "D: no stray answers (%d)", s_stray);

  /* E: destroy drains: gw-b answers nothing more, says BYE, exits 0 */
  co_broker_destroy(&s_broker, 20000);
  CHECK(s_broker == NULL, "E: destroyed");
  int status = proc_wait(b, 30);
  CHECK(status == 0, "E: gw-b left after DRAIN with exit status 0 (%d)", status);

  /* F: a bfloat16 campaign: a HELLO without dtype is a float32 worker of the campaign's model, refused */
  o.model_dtype = "bfloat16";
  s_broker = co_broker_new(&o, err, sizeof err);
  CHECK(s_broker != NULL, "F: co_broker_new: %s", err);
  if (!s_broker) return check_summary("broker_test");
  s_fake_connect(co_broker_gpu_endpoint(s_broker));
  s_fake_hello("tiny-mixed", hash, 2);
  s_fake_expect_error(MSG_ERR_BAD_REQUEST, "HELLO", "F: HELLO without dtype (float32) for a bfloat16 campaign");
  s_fake_hello_dtype("tiny-mixed", hash, 2, "bfloat16");
  CHECK(s_pump(5000, s_fake_welcomed), "F: a bfloat16 HELLO for the campaign's model is welcomed");
  msg_sock_destroy(&s_fake.sock);
  co_broker_destroy(&s_broker, 2000);
  for (int c = 0; c < NSIMS; c++) msg_sock_destroy(&s_sims[c]);
  return check_summary("broker_test");
}
