/* worker.c: rsd-gpu-worker, the GPU worker process (docs/gpu-worker.md; the protocol is docs/protocol.md
 * section 8.2).
 *
 *   rsd-gpu-worker --broker tcp://HOST:PORT --model DIR --device cpu|cuda:N [--max-batch N]
 *                  [--max-wait-us N] [--credit N] [--name NAME] [--heartbeat-ms N] [--record-obs DIR]
 *                  [--keys DIR] [--dtype float32|bfloat16|float16]
 *
 * It owns the conversation with the broker: a DEALER that says HELLO (role gpu, model name and content
 * hash, device, dtype, max_batch, capacity = credit), heartbeats, answers every INFER exactly once with ACTION
 * or ERROR, grants credit back with READY as answers go out, re-HELLOs on a new connection when the
 * broker falls silent, and leaves with BYE on SIGTERM / SIGINT / DRAIN after answering what it holds.
 *
 * Two threads. The main thread owns the socket, the batcher (batcher.c) and every request; it checks an
 * INFER against the model on arrival (cameras, image size, proprio, model name, unnorm_key, radii) and
 * answers a misfit at once with ERROR 31. The inference thread owns the policy (policy.h) and runs one
 * batch at a time; it wakes the main thread through a pipe when the batch is done. So heartbeats and
 * arrivals keep flowing while a batch decodes, and requests that arrive meanwhile form the next batch.
 * With --record-obs it appends every observation it answers with an ACTION to a recording (obs_record.h).
 * It does not own decoding (policy.cpp, spec_decode.cpp) nor batching policy (batcher.c). */
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batcher.h"
#include "msg.h"
#include "obs_record.h"
#include "policy.h"

#ifndef RSD_VERSION
#define RSD_VERSION "0.0.0"
#endif
#ifndef RSD_CUDA
#define RSD_CUDA 0
#endif

/* ---- options ----------------------------------------------------------------------------------- */

typedef struct {
  const char *broker;   /* endpoint of the broker's GPU-side ROUTER */
  const char *model;    /* package directory */
  const char *device;   /* "cpu" or "cuda:N" */
  int dtype;            /* gw_dtype_t: the precision main and draft run at */
  int max_batch;        /* 1..GW_MAX_BATCH */
  int64_t max_wait_us;  /* 0..60 s */
  int credit;           /* requests held at most: HELLO.capacity, 1..4096 */
  char name[MSG_NAME_MAX + 1];
  int heartbeat_ms;     /* until a WELCOME says otherwise */
  const char *record_obs; /* nullable: the directory of an observation recording */
  const char *keys;       /* nullable: a CURVE keys directory (server.cert, client.cert_secret) */
  zcert_t *curve_cert;    /* owned, with keys: this worker's certificate */
  char curve_server_key[41]; /* with keys: the broker's public key */
} s_opts_t;

static void s_usage(FILE *f) {
  fprintf(f,
          "usage: rsd-gpu-worker --broker ENDPOINT --model DIR --device cpu|cuda:N [--max-batch N]\n"
          "                      [--max-wait-us N] [--credit N] [--name NAME] [--heartbeat-ms N]\n"
          "                      [--record-obs DIR] [--keys DIR] [--dtype float32|bfloat16|float16]\n"
          "  --broker        the broker's GPU-side endpoint, e.g. tcp://10.0.0.2:5557\n"
          "  --model         a policy package directory (docs/model-package.md)\n"
          "  --device        cpu, or cuda:N in a build configured with -DRSD_CUDA=ON\n"
          "  --dtype         precision of main and draft: float32 (default), or bfloat16 / float16 under\n"
          "                  autocast; sent in HELLO, and the broker takes only its campaign's model_dtype\n"
          "  --max-batch     most requests decoded together (1..%d, default 8)\n"
          "  --max-wait-us   longest wait after a batch's oldest request before it runs part-full\n"
          "                  (0..60000000, default 2000)\n"
          "  --credit        requests held at once, queued or decoding (1..4096, default 2 x max-batch)\n"
          "  --name          worker name in logs and reports (default gpu-HOST:PID)\n"
          "  --heartbeat-ms  heartbeat and HELLO-resend period until the broker's WELCOME sets it\n"
          "                  (10..600000, default 1000)\n"
          "  --record-obs    record every observation answered with an ACTION into this new directory\n"
          "                  (policy_bench --obs and train/retrain_draft.py --obs read it)\n"
          "  --keys          connect over CURVE with this directory's server.cert and client.cert_secret\n"
          "                  (`rsd keys DIR`; the campaign's bind.keys)\n",
          GW_MAX_BATCH);
}

/* Parses a whole decimal integer in [lo, hi]; a message naming the option and the value otherwise. */
static bool s_int_arg(const char *opt, const char *s, long long lo, long long hi, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno || !*s || *end || v < lo || v > hi) {
    fprintf(stderr, "rsd-gpu-worker: %s '%s' is not an integer in [%lld, %lld]\n", opt, s, lo, hi);
    return false;
  }
  *out = v;
  return true;
}

static int s_parse(int argc, char **argv, s_opts_t *o) {
  *o = (s_opts_t){.device = NULL, .max_batch = 8, .max_wait_us = 2000, .credit = 0, .heartbeat_ms = 1000};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      s_usage(stdout);
      exit(0);
    }
    if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "rsd-gpu-worker: unexpected argument '%s'%s\n", a,
              strncmp(a, "--", 2) == 0 ? " (needs a value)" : "");
      return -1;
    }
    const char *v = argv[++i];
    long long n;
    if (!strcmp(a, "--broker")) o->broker = v;
    else if (!strcmp(a, "--model")) o->model = v;
    else if (!strcmp(a, "--device")) o->device = v;
    else if (!strcmp(a, "--dtype")) {
      o->dtype = gw_dtype_parse(v);
      if (o->dtype < 0) {
        fprintf(stderr, "rsd-gpu-worker: --dtype '%s' is not float32, bfloat16 or float16\n", v);
        return -1;
      }
    }
    else if (!strcmp(a, "--max-batch")) {
      if (!s_int_arg(a, v, 1, GW_MAX_BATCH, &n)) return -1;
      o->max_batch = (int)n;
    } else if (!strcmp(a, "--max-wait-us")) {
      if (!s_int_arg(a, v, 0, 60000000, &n)) return -1;
      o->max_wait_us = n;
    } else if (!strcmp(a, "--credit")) {
      if (!s_int_arg(a, v, 1, 4096, &n)) return -1;
      o->credit = (int)n;
    } else if (!strcmp(a, "--heartbeat-ms")) {
      if (!s_int_arg(a, v, 10, 600000, &n)) return -1;
      o->heartbeat_ms = (int)n;
    } else if (!strcmp(a, "--record-obs")) {
      o->record_obs = v;
    } else if (!strcmp(a, "--keys")) {
      o->keys = v;
    } else if (!strcmp(a, "--name")) {
      if (!*v || strlen(v) > MSG_NAME_MAX) {
        fprintf(stderr, "rsd-gpu-worker: --name '%s' must be 1..%d bytes\n", v, MSG_NAME_MAX);
        return -1;
      }
      snprintf(o->name, sizeof o->name, "%s", v);
    } else {
      fprintf(stderr, "rsd-gpu-worker: unknown option '%s'\n", a);
      return -1;
    }
  }
  if (!o->broker || !o->model || !o->device) {
    fprintf(stderr, "rsd-gpu-worker: --broker, --model and --device are required\n");
    return -1;
  }
  if (strcmp(o->device, "cpu") != 0 && strncmp(o->device, "cuda:", 5) != 0) {
    fprintf(stderr, "rsd-gpu-worker: --device '%s' is not 'cpu' or 'cuda:N'\n", o->device);
    return -1;
  }
  if (!RSD_CUDA && strncmp(o->device, "cuda:", 5) == 0) {
    fprintf(stderr, "rsd-gpu-worker: --device '%s': this rsd-gpu-worker was built without CUDA "
                    "(configure with -DRSD_CUDA=ON; docs/gpu-worker.md)\n", o->device);
    return -1;
  }
  if (o->keys) {
    msg_error_t me;
    if (msg_keys_client(o->keys, &o->curve_cert, o->curve_server_key, &me)) {
      fprintf(stderr, "rsd-gpu-worker: --keys: %s\n", me.text);
      return -1;
    }
  }
  if (!o->credit) o->credit = 2 * o->max_batch > 4096 ? 4096 : 2 * o->max_batch;
  if (!o->name[0]) {
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(o->name, sizeof o->name, "gpu-%.40s:%d", host, (int)getpid());
  }
  return 0;
}

/* ---- time and logging -------------------------------------------------------------------------- */

static int64_t s_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void s_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rsd-gpu-worker: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

/* ---- requests ---------------------------------------------------------------------------------- */

/* One INFER held by the worker, from arrival until its answer is sent. */
typedef struct {
  msg_in_t *in;                /* owned: the INFER as received */
  uint64_t session;            /* the broker session it arrived in */
  int64_t arrived_us;
  uint8_t *images;             /* owned: [cameras][H][W][3], stacked in manifest order */
  float *proprio;              /* owned: [P] (a copy: frame bytes need not be aligned) */
  gw_decode_params_t params;   /* from the INFER and the package defaults */
  gw_obs_t obs;                /* borrows images, proprio and the INFER's instruction */
  float *chunk;                /* owned: [H][A] */
  int32_t *codes;              /* owned: [L][G] */
  gw_result_t result;
  int64_t batch_start_us;
} s_req_t;

static void s_req_destroy(s_req_t **self_p) {
  if (!self_p || !*self_p) return;
  s_req_t *r = *self_p;
  msg_in_destroy(&r->in);
  free(r->images);
  free(r->proprio);
  free(r->chunk);
  free(r->codes);
  free(r);
  *self_p = NULL;
}

/* ---- the inference thread ---------------------------------------------------------------------- */

/* A batch handed to the inference thread. Fields are written by the main thread while !busy and read
 * back after `done`; `done` and `quit` are guarded by mu. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool submitted, done, quit; /* guarded by mu */
  bool busy;                  /* main thread only: a batch is out and not yet collected */
  gw_policy_t *policy;        /* used by the inference thread only, after start */
  int wake_fd;                /* write end of the pipe the main thread polls */
  int n;
  s_req_t *reqs[GW_MAX_BATCH];
  char unnorm_key[MSG_LABEL_MAX + 1];
  gw_decode_params_t params;
  int rc;                     /* gw_policy_decode's return */
  char rc_text[GW_ROW_MSG_MAX];
} s_infer_t;

static void *s_infer_main(void *arg) {
  s_infer_t *t = arg;
  gw_obs_t obs[GW_MAX_BATCH];
  static gw_result_t results[GW_MAX_BATCH]; /* one inference thread per process */
  for (;;) {
    pthread_mutex_lock(&t->mu);
    while (!t->submitted && !t->quit) pthread_cond_wait(&t->cv, &t->mu);
    bool quit = t->quit && !t->submitted;
    t->submitted = false;
    pthread_mutex_unlock(&t->mu);
    if (quit) break;

    int rc = gw_policy_set_unnorm_key(t->policy, t->unnorm_key);
    if (rc == GW_OK) {
      for (int i = 0; i < t->n; i++) {
        obs[i] = t->reqs[i]->obs;
        results[i] = (gw_result_t){.chunk = t->reqs[i]->chunk, .codes = t->reqs[i]->codes};
      }
      rc = gw_policy_decode(t->policy, obs, t->n, &t->params, results);
      for (int i = 0; i < t->n; i++) t->reqs[i]->result = results[i];
    }
    t->rc = rc;
    snprintf(t->rc_text, sizeof t->rc_text, "%s", rc == GW_OK ? "" : gw_errmsg());
    if (rc != GW_OK)
      for (int i = 0; i < t->n; i++) {
        t->reqs[i]->result.status = rc;
        snprintf(t->reqs[i]->result.message, sizeof t->reqs[i]->result.message, "%s", t->rc_text);
      }
    pthread_mutex_lock(&t->mu);
    t->done = true;
    pthread_mutex_unlock(&t->mu);
    char one = 1;
    while (write(t->wake_fd, &one, 1) < 0 && errno == EINTR) {
    }
  }
  return NULL;
}

/* ---- the worker -------------------------------------------------------------------------------- */

static volatile sig_atomic_t s_signal;
static int s_signal_fd = -1; /* the wake pipe: a signal also interrupts the main thread's poll */

static void s_on_signal(int sig) {
  s_signal = sig;
  char one = 0;
  if (s_signal_fd >= 0 && write(s_signal_fd, &one, 1) < 0) {
  }
}

typedef struct {
  s_opts_t o;
  const gw_manifest_t *m;  /* the policy's manifest (immutable after load; read by both threads) */
  msg_sock_t *sock;        /* owned; remade on every new session */
  gw_batcher_t *batcher;   /* owned */
  s_infer_t infer;
  int wake_rd;             /* read end of the inference thread's pipe */

  uint64_t session;        /* +1 for every HELLO on a new connection */
  uint64_t hello_id;       /* nonce of the last HELLO */
  bool overloaded;         /* the INFER being refused took no credit of ours: no READY for it */
  bool welcomed;
  int heartbeat_ms, liveness;
  int64_t last_heard_us, last_beat_us;
  uint64_t seq;            /* READY / HEARTBEAT / BYE ids */
  int held;                /* INFERs of this session taken and not yet answered (queued or decoding) */
  bool stopping;           /* a signal or DRAIN: take no new work, finish the rest, BYE */
  const char *stop_reason;
  bool refused;            /* the broker refused us (ERROR to HELLO, version), or the recording failed: exit 1 */
  gw_obs_record_t *record; /* owned, nullable: --record-obs */
  uint64_t answered, errors;
} s_worker_t;

static void s_send(s_worker_t *w, msg_t *m) {
  msg_error_t err;
  if (msg_sock_send(w->sock, NULL, m, &err) != MSG_OK)
    s_log("cannot send %s id %llu: %s", msg_type_name(m->type), (unsigned long long)m->id, err.text);
}

static void s_send_error(s_worker_t *w, const msg_t *about, msg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_send_error(s_worker_t *w, const msg_t *about, msg_err_t code, const char *fmt, ...) {
  msg_error_t what = {.code = code};
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what.text, sizeof what.text, fmt, ap);
  va_end(ap);
  msg_error_t err;
  if (msg_sock_send_error(w->sock, NULL, about, &what, &err) != MSG_OK)
    s_log("cannot send ERROR %d for id %llu: %s", (int)code, (unsigned long long)(about ? about->id : 0), err.text);
  w->errors++;
}

static void s_ready(s_worker_t *w, int credit) {
  if (credit <= 0 || w->stopping || !w->welcomed) return;
  msg_t m;
  msg_init(&m, MSG_READY, ++w->seq);
  m.ready.credit = (uint32_t)credit;
  s_send(w, &m);
}

/* Opens a new DEALER (a new connection, a new routing id) and says HELLO. Requests of the old session
 * are dropped: the broker forgot them with the connection (docs/protocol.md 8.2 rule 7). */
static int s_hello(s_worker_t *w, bool new_connection) {
  if (new_connection || !w->sock) {
    msg_sock_destroy(&w->sock);
    void *items[GW_MAX_BATCH];
    int n, dropped = 0;
    while ((n = gw_batcher_pop(w->batcher, 0, true, items, NULL)) > 0)
      for (int i = 0; i < n; i++, dropped++) s_req_destroy((s_req_t **)&items[i]);
    if (dropped || w->infer.busy)
      s_log("new session: dropped %d queued request(s) of the old one%s", dropped,
            w->infer.busy ? " and the batch decoding now" : "");
    w->held = 0; /* the batch in flight belongs to the old session: s_collect drops its answers */
    w->session++;
    msg_error_t err;
    msg_sock_opts_t so = msg_sock_opts_default();
    so.curve_cert = w->o.curve_cert;
    so.curve_server_key = w->o.curve_server_key;
    w->sock = msg_sock_new(ZMQ_DEALER, w->o.broker, false, &so, NULL, &err);
    if (!w->sock) {
      s_log("--broker '%s': %s", w->o.broker, err.text);
      return -1;
    }
  }
  w->welcomed = false;
  w->heartbeat_ms = w->o.heartbeat_ms;
  w->liveness = 3;
  w->hello_id = ((uint64_t)getpid() << 32) ^ ((uint64_t)s_now_us() & 0xffffffffu) ^ (w->session << 20);
  msg_t m;
  msg_init(&m, MSG_HELLO, w->hello_id);
  msg_hello_body_t *h = &m.hello;
  h->role = MSG_ROLE_GPU;
  snprintf(h->name, sizeof h->name, "%s", w->o.name);
  h->capacity = (uint32_t)w->o.credit;
  snprintf(h->software, sizeof h->software, "rsd-gpu-worker %s", RSD_VERSION);
  h->has_model = h->has_model_hash = h->has_device = h->has_dtype = h->has_max_batch = true;
  snprintf(h->model, sizeof h->model, "%s", w->m->name);
  snprintf(h->model_hash, sizeof h->model_hash, "%s", w->m->content_hash);
  snprintf(h->device, sizeof h->device, "%s", w->o.device);
  snprintf(h->dtype, sizeof h->dtype, "%s", gw_dtype_name(w->o.dtype));
  h->max_batch = (uint32_t)w->o.max_batch;
  s_send(w, &m);
  w->last_heard_us = s_now_us();
  return 0;
}

/* "[16, 16, 3]" */
static const char *s_shape_str(const msg_frame_t *f, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (uint32_t i = 0; i < f->rank && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%u", i ? ", " : "", f->shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
  return buf;
}

/* Checks an INFER against the model and builds the request; on a misfit sends ERROR 31 (or 24 / 23)
 * and returns NULL. Takes ownership of *in_p. */
static s_req_t *s_take_infer(s_worker_t *w, msg_in_t **in_p, char *key, size_t key_cap) {
  msg_in_t *in = *in_p;
  *in_p = NULL;
  const msg_t *m = &in->msg;
  const msg_infer_body_t *q = &m->infer;
  const gw_manifest_t *man = w->m;
  char s1[64], s2[64];
  s_req_t *r = NULL;
  if (w->stopping) {
    s_send_error(w, m, MSG_ERR_SHUTDOWN, "INFER id %llu: rsd-gpu-worker '%s' is shutting down (%s)",
                 (unsigned long long)m->id, w->o.name, w->stop_reason);
    goto out;
  }
  if (w->held >= w->o.credit) {
    w->overloaded = true;
    s_send_error(w, m, MSG_ERR_OVERLOADED, "INFER id %llu: no credit: rsd-gpu-worker '%s' holds %d of %d requests",
                 (unsigned long long)m->id, w->o.name, w->held, w->o.credit);
    goto out;
  }
  if (strcmp(q->model, man->name) != 0) {
    s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER.model: '%s' is not the model this worker serves ('%s')", q->model,
                 man->name);
    goto out;
  }
  int k;
  for (k = 0; k < man->num_unnorm_keys; k++)
    if (!strcmp(man->unnorm_keys[k], q->unnorm_key)) break;
  if (k == man->num_unnorm_keys) {
    char have[GW_MAX_UNNORM_KEYS * GW_NAME_MAX] = "";
    for (int i = 0; i < man->num_unnorm_keys; i++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", man->unnorm_keys[i]);
    s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER.unnorm_key: '%s' not in model '%s' stats (have: %s)",
                 q->unnorm_key, man->name, have);
    goto out;
  }
  /* every payload frame must be one of the model's cameras or proprio */
  for (uint32_t i = 0; i < m->nframes; i++) {
    const msg_frame_t *f = &m->frames[i];
    bool known = !strcmp(f->name, "proprio");
    for (int c = 0; !known && c < man->num_cameras; c++) known = !strcmp(f->name, man->cameras[c]);
    if (!known) {
      char cams[GW_MAX_CAMERAS * GW_NAME_MAX] = "";
      for (int c = 0; c < man->num_cameras; c++)
        snprintf(cams + strlen(cams), sizeof cams - strlen(cams), "%s, ", man->cameras[c]);
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER frame '%s': not a camera of model '%s' nor proprio (expected: %sproprio)",
                   f->name, man->name, cams);
      goto out;
    }
  }
  const size_t img_bytes = (size_t)man->image_height * man->image_width * 3;
  for (int c = 0; c < man->num_cameras; c++) {
    const msg_frame_t *f = msg_find_frame(m, man->cameras[c]);
    if (!f) {
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER: camera frame '%s' missing (model '%s' needs %d camera(s))",
                   man->cameras[c], man->name, man->num_cameras);
      goto out;
    }
    if (f->dtype != MSG_DTYPE_U8 || f->rank != 3 || f->shape[0] != (uint32_t)man->image_height ||
        f->shape[1] != (uint32_t)man->image_width || f->shape[2] != 3) {
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER frame '%s': %s %s, model '%s' expects u8 [%d, %d, 3]", f->name,
                   msg_dtype_names[f->dtype], s_shape_str(f, s1, sizeof s1), man->name, man->image_height,
                   man->image_width);
      goto out;
    }
  }
  const msg_frame_t *pf = msg_find_frame(m, "proprio");
  if (!pf || pf->dtype != MSG_DTYPE_F32 || pf->rank != 1 || pf->shape[0] != (uint32_t)man->proprio_dim) {
    if (!pf)
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER: frame 'proprio' missing (model '%s' expects f32 [%d])", man->name,
                   man->proprio_dim);
    else
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER frame 'proprio': %s %s, model '%s' expects f32 [%d]",
                   msg_dtype_names[pf->dtype], s_shape_str(pf, s2, sizeof s2), man->name, man->proprio_dim);
    goto out;
  }
  gw_decode_params_t prm = man->decoding;
  prm.mode = q->mode == MSG_MODE_AR ? GW_DECODE_AR : q->mode == MSG_MODE_SPEC ? GW_DECODE_SPEC : GW_DECODE_SPEC_RELAXED;
  if (q->has_draft_len) prm.gamma = (int)q->draft_len;
  if (q->has_draft_width) prm.width = (int)q->draft_width;
  if (q->has_radii) {
    if (q->radii_count != (uint32_t)man->layers) {
      s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER.radii: %u values, model '%s' has %d layers", q->radii_count,
                   man->name, man->layers);
      goto out;
    }
    for (int l = 0; l < man->layers; l++) {
      if (q->radii[l] >= (uint32_t)man->levels) {
        s_send_error(w, m, MSG_ERR_BAD_REQUEST, "INFER.radii[%d]: %u is not below the model's %d levels", l,
                     q->radii[l], man->levels);
        goto out;
      }
      prm.radii[l] = (int)q->radii[l];
    }
  }
  r = calloc(1, sizeof *r);
  if (r) {
    r->images = malloc(img_bytes * (size_t)man->num_cameras);
    r->proprio = malloc(sizeof(float) * (size_t)man->proprio_dim);
    r->chunk = malloc(sizeof(float) * (size_t)man->chunk_horizon * (size_t)man->action_dim);
    r->codes = malloc(sizeof(int32_t) * (size_t)man->layers * (size_t)man->groups);
  }
  if (!r || !r->images || !r->proprio || !r->chunk || !r->codes) {
    s_send_error(w, m, MSG_ERR_INTERNAL, "INFER id %llu: out of memory", (unsigned long long)m->id);
    s_req_destroy(&r);
    goto out;
  }
  for (int c = 0; c < man->num_cameras; c++)
    memcpy(r->images + (size_t)c * img_bytes, msg_find_frame(m, man->cameras[c])->data, img_bytes);
  memcpy(r->proprio, pf->data, sizeof(float) * (size_t)man->proprio_dim);
  r->params = prm;
  r->session = w->session;
  r->arrived_us = s_now_us();
  r->obs = (gw_obs_t){.images = r->images, .num_cameras = man->num_cameras, .image_height = man->image_height,
                      .image_width = man->image_width, .proprio = r->proprio, .proprio_dim = man->proprio_dim,
                      .instruction = q->instruction};
  /* The batch key: what must agree inside one gw_policy_decode call. */
  size_t kl = (size_t)snprintf(key, key_cap, "%s|%s|%s", man->name, q->unnorm_key, gw_mode_name(prm.mode));
  if (prm.mode != GW_DECODE_AR) kl += (size_t)snprintf(key + kl, key_cap - kl, "|g%d|w%d", prm.gamma, prm.width);
  if (prm.mode == GW_DECODE_SPEC_RELAXED)
    for (int l = 0; l < man->layers && kl < key_cap; l++)
      kl += (size_t)snprintf(key + kl, key_cap - kl, "%s%d", l ? "," : "|r", prm.radii[l]);
  r->in = in;
  in = NULL;
out:
  if (!r && !w->overloaded) s_ready(w, 1); /* answered at once: the broker's credit comes back */
  w->overloaded = false;
  msg_in_destroy(&in);
  return r;
}

static void s_stop(s_worker_t *w, const char *reason) {
  if (w->stopping) return;
  w->stopping = true;
  w->stop_reason = reason;
  s_log("%s: taking no new requests; finishing %d held", reason, w->held);
}

/* Maps a policy error to the protocol's code. ERROR 31 says that the request does not fit the model (its
 * decoding parameters, unnorm_key or shapes: every request of its variant would fail the same way, and the
 * coordinator abandons the variant on it); an observation value the model cannot take (GW_EINPUT after the
 * shapes were checked on arrival: a non-finite proprio) is that request's alone, ERROR 7. */
static msg_err_t s_code(int gw) {
  switch (gw) {
    case GW_EINPUT:
      return MSG_ERR_RANGE;
    case GW_EUNNORM:
    case GW_EINVAL:
      return MSG_ERR_BAD_REQUEST;
    case GW_ENONFINITE:
    case GW_ETORCH:
    case GW_ESHAPE:
    case GW_ENOMEM:
    case GW_EMODULE:
    case GW_EDEVICE:
      return MSG_ERR_MODEL;
    default:
      return MSG_ERR_INTERNAL;
  }
}

/* Sends the ACTION (or ERROR) of one decoded request. */
static void s_answer(s_worker_t *w, s_req_t *r) {
  const msg_t *in = &r->in->msg;
  const gw_result_t *res = &r->result;
  const gw_manifest_t *man = w->m;
  if (res->status != GW_OK) {
    s_send_error(w, in, s_code(res->status), "INFER id %llu: %s: %s", (unsigned long long)in->id,
                 gw_strerror(res->status), res->message[0] ? res->message : "(no detail)");
    return;
  }
  msg_t m;
  msg_init(&m, MSG_ACTION, in->id);
  msg_action_body_t *a = &m.action;
  const gw_stats_t *st = &res->stats;
  a->batch = (uint32_t)st->batch_size;
  a->main_forwards = (uint32_t)(st->main_forwards > 1024 ? 1024 : st->main_forwards);
  a->draft_forwards = (uint32_t)(st->draft_forwards > 1024 ? 1024 : st->draft_forwards);
  a->queue_us = (uint64_t)(r->batch_start_us - r->arrived_us);
  a->encode_us = (uint64_t)llround(st->prefill_us);
  a->decode_us = (uint64_t)llround(st->decode_us);
  /* per-layer counts for the spec modes; the wire carries at most MSG_MAX_LAYERS layers */
  if (r->params.mode != GW_DECODE_AR && man->layers <= MSG_MAX_LAYERS) {
    a->has_proposed = a->has_accepted = true;
    a->proposed_count = a->accepted_count = (uint32_t)man->layers;
    for (int l = 0; l < man->layers; l++) {
      a->proposed[l] = (uint32_t)st->layers_proposed[l];
      a->accepted[l] = (uint32_t)st->layers_accepted[l];
    }
  }
  a->has_worker = true;
  snprintf(a->worker, sizeof a->worker, "%s", w->o.name);
  msg_error_t err;
  uint32_t ashape[2] = {(uint32_t)man->chunk_horizon, (uint32_t)man->action_dim};
  uint32_t cshape[2] = {(uint32_t)man->layers, (uint32_t)man->groups};
  if (msg_add_frame(&m, "actions", MSG_DTYPE_F32, 2, ashape, r->chunk, sizeof(float) * ashape[0] * ashape[1], &err) ||
      msg_add_frame(&m, "codes", MSG_DTYPE_I32, 2, cshape, r->codes, sizeof(int32_t) * cshape[0] * cshape[1], &err)) {
    s_send_error(w, in, MSG_ERR_INTERNAL, "INFER id %llu: cannot describe the ACTION frames: %s",
                 (unsigned long long)in->id, err.text);
    return;
  }
  s_send(w, &m);
  w->answered++;
  if (w->record) {
    const msg_infer_body_t *q = &in->infer;
    gw_obs_origin_t o = {q->variant, q->task, q->trial, q->step, gw_mode_name(r->params.mode), st->main_forwards};
    char rerr[512];
    if (gw_obs_record_add(w->record, &r->obs, &o, rerr, sizeof rerr) != 0) {
      s_log("%s", rerr);
      w->refused = true;
      s_stop(w, "cannot record observations");
    }
  }
}

/* The inference thread finished: answer its requests (if their session still exists), grant credit. */
static void s_collect(s_worker_t *w) {
  s_infer_t *t = &w->infer;
  pthread_mutex_lock(&t->mu);
  bool done = t->done;
  t->done = false;
  pthread_mutex_unlock(&t->mu);
  if (!done) return;
  t->busy = false;
  int credit = 0;
  for (int i = 0; i < t->n; i++) {
    s_req_t *r = t->reqs[i];
    if (r->session == w->session) {
      s_answer(w, r);
      credit++;
    }
    s_req_destroy(&t->reqs[i]);
  }
  w->held -= credit;
  s_ready(w, credit);
}

/* Hands the next ready batch to the idle inference thread. Requests past their deadline_ms are
 * answered with ERROR 25 instead. */
static void s_dispatch(s_worker_t *w) {
  s_infer_t *t = &w->infer;
  while (!t->busy) {
    void *items[GW_MAX_BATCH];
    char key[GW_BATCH_KEY_MAX];
    int64_t now = s_now_us();
    int n = gw_batcher_pop(w->batcher, now, w->stopping, items, key);
    if (n == 0) return;
    int kept = 0, expired = 0;
    for (int i = 0; i < n; i++) {
      s_req_t *r = items[i];
      const msg_infer_body_t *q = &r->in->msg.infer;
      if (q->has_deadline_ms && now - r->arrived_us > (int64_t)q->deadline_ms * 1000) {
        s_send_error(w, &r->in->msg, MSG_ERR_TIMEOUT, "INFER id %llu: deadline_ms %u passed after %lld ms in the queue",
                     (unsigned long long)r->in->msg.id, q->deadline_ms, (long long)((now - r->arrived_us) / 1000));
        s_req_destroy(&r);
        expired++;
        continue;
      }
      r->batch_start_us = now;
      t->reqs[kept++] = r;
    }
    w->held -= expired;
    s_ready(w, expired);
    if (kept == 0) continue;
    pthread_mutex_lock(&t->mu);
    t->n = kept;
    t->params = t->reqs[0]->params;
    snprintf(t->unnorm_key, sizeof t->unnorm_key, "%s", t->reqs[0]->in->msg.infer.unnorm_key);
    t->submitted = true;
    t->busy = true;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
  }
}

/* One received message. */
static void s_handle(s_worker_t *w, msg_in_t **in_p, msg_err_t rc, const msg_error_t *err) {
  msg_in_t *in = *in_p;
  const msg_t *m = &in->msg;
  w->last_heard_us = s_now_us();
  if (rc != MSG_OK) {
    s_log("refused a message from the broker: %s", err->text);
    msg_error_t e2;
    msg_sock_send_error(w->sock, NULL, m, err, &e2);
    if (rc == MSG_ERR_VERSION) {
      w->refused = true;
      s_stop(w, "protocol version mismatch");
    }
    msg_in_destroy(in_p);
    return;
  }
  switch (m->type) {
    case MSG_WELCOME:
      if (m->id != w->hello_id) {
        s_log("ignoring a WELCOME for HELLO id %llu (ours is %llu)", (unsigned long long)m->id,
              (unsigned long long)w->hello_id);
        break;
      }
      w->welcomed = true;
      w->heartbeat_ms = (int)m->welcome.heartbeat_ms;
      w->liveness = (int)m->welcome.liveness;
      s_log("welcomed by %s as worker %llu (heartbeat %d ms x %d)", m->welcome.software,
            (unsigned long long)m->welcome.worker_id, w->heartbeat_ms, w->liveness);
      break;
    case MSG_INFER: {
      if (!w->welcomed) {
        s_send_error(w, m, MSG_ERR_UNEXPECTED, "INFER id %llu before WELCOME", (unsigned long long)m->id);
        break;
      }
      char key[GW_BATCH_KEY_MAX];
      s_req_t *r = s_take_infer(w, in_p, key, sizeof key);
      if (!r) return;
      if (gw_batcher_push(w->batcher, key, r, r->arrived_us) != 0) {
        s_send_error(w, &r->in->msg, MSG_ERR_INTERNAL, "INFER id %llu: cannot queue it (out of memory)",
                     (unsigned long long)r->in->msg.id);
        s_req_destroy(&r);
        s_ready(w, 1);
        return;
      }
      w->held++;
      return;
    }
    case MSG_HEARTBEAT:
      break;
    case MSG_DRAIN:
      s_stop(w, "DRAIN");
      break;
    case MSG_BYE:
      s_log("the broker said BYE (%s); saying HELLO again", m->bye.has_reason ? m->bye.reason : "no reason");
      msg_in_destroy(in_p);
      if (!w->stopping) s_hello(w, true);
      return;
    case MSG_ERROR:
      s_log("ERROR %u from the broker about %s id %llu: %s", m->error.code, m->error.has_about ? m->error.about : "?",
            (unsigned long long)m->id, m->error.text);
      if (m->error.has_about && !strcmp(m->error.about, "HELLO")) {
        w->refused = true;
        s_stop(w, "the broker refused HELLO");
      } else if (m->error.code == MSG_ERR_VERSION) {
        w->refused = true;
        s_stop(w, "protocol version mismatch");
      } else if (m->error.code == MSG_ERR_UNEXPECTED && w->welcomed && !w->stopping) {
        /* a restarted broker that does not know us ("say HELLO first"): as if it had gone silent */
        msg_in_destroy(in_p);
        s_hello(w, true);
        return;
      }
      break;
    default:
      s_send_error(w, m, MSG_ERR_UNEXPECTED, "%s is not taken by a GPU worker", msg_type_name(m->type));
      break;
  }
  msg_in_destroy(in_p);
}

static int s_run(s_worker_t *w) {
  if (s_hello(w, true) != 0) return 1;
  for (;;) {
    if (!w->sock) return 1; /* a reconnect could not make its socket (logged) */
    if (s_signal && !w->stopping) s_stop(w, s_signal == SIGINT ? "SIGINT" : "SIGTERM");
    s_dispatch(w);
    if (w->stopping && w->held == 0 && !w->infer.busy) break;

    int64_t now = s_now_us();
    int64_t beat = (int64_t)w->heartbeat_ms * 1000;
    int64_t wake = w->last_heard_us + (int64_t)w->liveness * beat; /* the broker is declared dead */
    if (w->welcomed && w->last_beat_us + beat < wake) wake = w->last_beat_us + beat;
    if (!w->infer.busy) {
      int64_t d = gw_batcher_deadline(w->batcher);
      if (d < wake) wake = d;
    }
    /* floor to ms: below 1 ms left, poll without waiting until the deadline is reached */
    long timeout_ms = wake <= now ? 0 : (long)((wake - now) / 1000);
    if (timeout_ms > 10000) timeout_ms = 10000;
    zmq_pollitem_t items[2] = {{zsock_resolve(msg_sock_zsock(w->sock)), 0, ZMQ_POLLIN, 0},
                               {NULL, w->wake_rd, ZMQ_POLLIN, 0}};
    int rc = zmq_poll(items, 2, timeout_ms);
    if (rc < 0 && zmq_errno() != EINTR) {
      s_log("poll failed: %s", zmq_strerror(zmq_errno()));
      return 1;
    }
    if (rc > 0 && (items[1].revents & ZMQ_POLLIN)) {
      char buf[64];
      while (read(w->wake_rd, buf, sizeof buf) > 0) {
      }
      s_collect(w);
    }
    /* everything that arrived, before batches form */
    for (int k = 0; k < 10000 && (zsock_events(msg_sock_zsock(w->sock)) & ZMQ_POLLIN); k++) {
      msg_in_t *in = NULL;
      msg_error_t err;
      msg_err_t r = msg_sock_recv(w->sock, &in, &err);
      if (!in) break;
      s_handle(w, &in, r, &err);
    }

    now = s_now_us();
    if (now - w->last_heard_us >= (int64_t)w->liveness * (int64_t)w->heartbeat_ms * 1000) {
      if (w->stopping) {
        /* nobody to answer: drop what is held (the broker forgot it) and leave */
        if (w->held) s_log("the broker is silent while stopping; dropping %d held request(s)", w->held);
        void *its[GW_MAX_BATCH];
        int n;
        while ((n = gw_batcher_pop(w->batcher, 0, true, its, NULL)) > 0)
          for (int i = 0; i < n; i++) s_req_destroy((s_req_t **)&its[i]);
        w->session++; /* the batch in flight is not answered either */
        w->held = 0;
      } else {
        /* silent broker, or no WELCOME yet: a new connection (stale messages go with the old one) */
        if (w->welcomed) s_log("no word from the broker for %d x %d ms: reconnecting", w->liveness, w->heartbeat_ms);
        if (s_hello(w, true) != 0) return 1;
      }
      w->last_heard_us = now;
    }
    if (w->welcomed && now - w->last_beat_us >= (int64_t)w->heartbeat_ms * 1000) {
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++w->seq);
      hb.heartbeat.has_busy = true;
      hb.heartbeat.busy = (uint32_t)w->held;
      s_send(w, &hb);
      w->last_beat_us = now;
    }
  }
  /* Everything held is answered: BYE, and let it leave before the socket closes. */
  msg_t bye;
  msg_init(&bye, MSG_BYE, ++w->seq);
  bye.bye.has_reason = true;
  snprintf(bye.bye.reason, sizeof bye.bye.reason, "%s", w->stop_reason);
  s_send(w, &bye);
  zsock_set_linger(msg_sock_zsock(w->sock), 2000);
  s_log("BYE (%s) after %llu ACTION(s), %llu ERROR(s)", w->stop_reason, (unsigned long long)w->answered,
        (unsigned long long)w->errors);
  return w->refused ? 1 : 0;
}

int main(int argc, char **argv) {
  s_worker_t w = {0};
  if (s_parse(argc, argv, &w.o) != 0) {
    s_usage(stderr);
    return 2;
  }
  /* Our own signal handling: czmq's would turn SIGTERM into "interrupted" everywhere. */
  zsys_handler_set(NULL);
  struct sigaction sa = {0};
  sa.sa_handler = s_on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  gw_policy_opts_t popts = {.device = w.o.device, .unnorm_key = NULL, .num_threads = 0, .verify_hash = 1,
                            .any_unnorm_key = 1, .dtype = w.o.dtype};
  gw_policy_t *policy = NULL;
  int rc = gw_policy_open(w.o.model, &popts, &policy);
  if (rc != GW_OK) {
    s_log("--model '%s' on --device '%s' in %s: %s: %s%s", w.o.model, w.o.device, gw_dtype_name(w.o.dtype),
          gw_strerror(rc), gw_errmsg(),
          rc == GW_EDEVICE && RSD_CUDA ? " [this rsd-gpu-worker is built with CUDA: no usable CUDA device is visible; "
                                         "check nvidia-smi and CUDA_VISIBLE_DEVICES]"
                                       : "");
    return 1;
  }
  w.m = gw_policy_manifest(policy);
  if (w.o.record_obs) {
    char rerr[512];
    if (!(w.record = gw_obs_record_new(w.o.record_obs, w.m, rerr, sizeof rerr))) {
      s_log("%s", rerr);
      gw_policy_destroy(&policy);
      return 1;
    }
  }
  s_log("serving %s %s (%s) on %s in %s, max_batch %d, max_wait %lld us, credit %d", w.m->name, w.m->version,
        w.m->content_hash, w.o.device, gw_dtype_name(gw_policy_dtype(policy)), w.o.max_batch,
        (long long)w.o.max_wait_us, w.o.credit);
  w.batcher = gw_batcher_new(w.o.max_batch, w.o.max_wait_us);
  int pfd[2];
  if (!w.batcher || pipe(pfd) != 0) {
    s_log("cannot set up the batcher or its pipe: %s", strerror(errno));
    return 1;
  }
  fcntl(pfd[0], F_SETFL, fcntl(pfd[0], F_GETFL) | O_NONBLOCK);
  fcntl(pfd[1], F_SETFL, fcntl(pfd[1], F_GETFL) | O_NONBLOCK);
  w.wake_rd = pfd[0];
  s_signal_fd = pfd[1];
  s_infer_t *t = &w.infer;
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  t->policy = policy;
  t->wake_fd = pfd[1];
  /* the inference thread takes no signals: they interrupt the main thread's poll */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  pthread_t thread;
  int prc = pthread_create(&thread, NULL, s_infer_main, t);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (prc != 0) {
    s_log("cannot start the inference thread: %s", strerror(prc));
    return 1;
  }

  int status = s_run(&w);

  pthread_mutex_lock(&t->mu);
  t->quit = true;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);
  pthread_join(thread, NULL);
  if (t->busy) /* left on an error path with a batch out: it is finished now */
    for (int i = 0; i < t->n; i++) s_req_destroy(&t->reqs[i]);
  void *items[GW_MAX_BATCH];
  int n;
  while ((n = gw_batcher_pop(w.batcher, 0, true, items, NULL)) > 0)
    for (int i = 0; i < n; i++) s_req_destroy((s_req_t **)&items[i]);
  gw_batcher_destroy(&w.batcher);
  msg_sock_destroy(&w.sock);
  close(pfd[0]);
  close(pfd[1]);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  if (w.record) s_log("recorded %ld observations in %s", gw_obs_record_rows(w.record), w.o.record_obs);
  gw_obs_record_destroy(&w.record);
  gw_policy_destroy(&policy);
  zcert_destroy(&w.o.curve_cert);
  return status;
}
