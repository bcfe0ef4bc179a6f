/* broker.c: the inference broker (see broker.h; the rules are docs/protocol.md section 8.2).
 *
 * One thread, started by co_broker_new, owns both ROUTER sockets, the table of GPU workers and every
 * request. The calling thread shares with it only what `mu` guards: the published counters, the event
 * ring and two commands (drain, quit), and wakes it through a pipe.
 *
 * A request is an INFER from a sim worker, from arrival until its answer went back. While it waits it
 * is on the queue (arrival order) and owns the received message; once forwarded it is on the in-flight
 * list of the GPU worker holding it. Every request is also in `reqs`, by id, so that an answer finds
 * the sim worker to route it to. Lists are intrusive (a request is on exactly one), so forgetting a GPU
 * worker fails exactly its requests without a search.
 *
 * Credit: per GPU worker, HELLO.capacity at WELCOME, + READY.credit, - 1 per INFER forwarded; the broker
 * never forwards to a worker at 0. An answer gives no credit back by itself: the worker's READY does. */
#include "broker.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_SOFTWARE "rsd 0.1.0"
#define S_MAX_GPUS 1024            /* GPU workers connected at once */
#define S_MAX_QUEUED 65536         /* INFERs waiting for credit; more get ERROR 23 */
#define S_MAX_CREDIT (1ll << 30)   /* a worker's credit saturates here (READY can only add) */
#define S_READ_MAX 1024            /* messages read per socket per wake-up */
#define S_EVENTS 256               /* GPU worker events kept for co_broker_events */
#define S_NO_WORKER_WAIT_MS 60000  /* default of opts.no_worker_wait_ms */
#define S_TICK_MAX_MS 100          /* longest poll: deadlines are checked at least this often */

typedef struct s_gpu s_gpu_t;
typedef struct s_req s_req_t;

/* An intrusive doubly linked list of requests. */
typedef struct {
  s_req_t *head, *tail;
  size_t n;
} s_list_t;

struct s_req {
  uint64_t id;
  char key[17];                  /* id in hex: the key of reqs */
  zframe_t *sim_route;           /* owned: the sim worker that sent the INFER */
  char model[MSG_LABEL_MAX + 1]; /* INFER.model */
  int64_t arrived_ms;            /* zclock_mono */
  int64_t deadline_ms;           /* zclock_mono when deadline_ms passes; 0: none */
  msg_in_t *in;                  /* owned while queued; NULL once forwarded (the GPU socket took it) */
  s_gpu_t *gpu;                  /* borrowed: the holder once forwarded; NULL while queued */
  s_list_t *list;                /* borrowed: the list it is on (the queue or gpu->held) */
  s_req_t *prev, *next;
};

struct s_gpu {
  zframe_t *route;               /* owned: the worker's routing id */
  char key[MSG_ROUTE_KEY_MAX + 1]; /* the routing id in hex: the key of gpu_by_route */
  uint64_t id;                   /* WELCOME.worker_id */
  char name[MSG_NAME_MAX + 1];
  char model[MSG_LABEL_MAX + 1];
  char hash[MSG_LABEL_MAX + 1];
  char device[MSG_NAME_MAX + 1];
  char dtype[MSG_NAME_MAX + 1];  /* HELLO.dtype, "float32" when absent */
  uint32_t max_batch;
  int64_t credit;                /* capacity + READY credits - INFERs forwarded; never < 0 */
  s_list_t held;                 /* requests forwarded to it and not answered */
  int64_t last_seen_ms;          /* zclock_mono of its last message */
  bool drained;                  /* DRAIN sent: forward nothing more */
};

struct co_broker {
  /* set by co_broker_new, then read only */
  msg_sock_t *sim, *gpu;         /* owned; used by the thread only once it runs */
  uint32_t heartbeat_ms, liveness, no_worker_wait_ms;
  char model[MSG_LABEL_MAX + 1], model_hash[MSG_LABEL_MAX + 1]; /* "" when not given */
  char model_dtype[MSG_NAME_MAX + 1]; /* "" when not given: any */
  int wake[2];                   /* pipe: [1] written by the caller, [0] polled by the thread */
  pthread_t thread;
  bool thread_started;

  pthread_mutex_t mu;
  co_broker_stats_t pub;         /* guarded by mu: the thread's counters as of its last iteration */
  co_broker_event_t events[S_EVENTS]; /* guarded by mu: a ring */
  size_t ev_first, ev_count;     /* guarded by mu */
  bool cmd_drain, cmd_quit;      /* guarded by mu */
  int64_t quit_by_ms;            /* guarded by mu: zclock_mono after which the thread stops waiting for BYEs */

  /* the thread's own */
  co_broker_stats_t st;
  s_gpu_t *gpus[S_MAX_GPUS];     /* owned, [0, ngpus) */
  uint32_t ngpus, rr;            /* rr: where the fair pick starts looking */
  zhashx_t *gpu_by_route;        /* routing id (hex) -> s_gpu_t (borrowed) */
  zhashx_t *reqs;                /* request id (hex) -> s_req_t (owned through the lists) */
  zhashx_t *known;               /* model names that a GPU worker serves or served, and opts.model */
  s_list_t queue;                /* requests waiting for credit, in arrival order */
  uint64_t next_gpu_id, seq;
  bool draining;
  int64_t last_beat_ms;
  bool dirty;                    /* credit or requests arrived: try to dispatch */
};

/* ---- small helpers -------------------------------------------------------------------------------- */

static void s_list_push(s_list_t *l, s_req_t *r) {
  r->list = l;
  r->next = NULL;
  r->prev = l->tail;
  if (l->tail) l->tail->next = r;
  else l->head = r;
  l->tail = r;
  l->n++;
}

static void s_list_unlink(s_req_t *r) {
  s_list_t *l = r->list;
  if (!l) return;
  if (r->prev) r->prev->next = r->next;
  else l->head = r->next;
  if (r->next) r->next->prev = r->prev;
  else l->tail = r->prev;
  l->n--;
  r->list = NULL;
  r->prev = r->next = NULL;
}

static s_gpu_t *s_find_gpu(co_broker_t *b, const zframe_t *route) {
  if (!route) return NULL;
  char key[MSG_ROUTE_KEY_MAX + 1];
  msg_route_key(route, key);
  return zhashx_lookup(b->gpu_by_route, key);
}

static void s_event(co_broker_t *b, co_event_t kind, const char *worker, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_event(co_broker_t *b, co_event_t kind, const char *worker, const char *fmt, ...) {
  pthread_mutex_lock(&b->mu);
  if (b->ev_count == S_EVENTS) { /* full: the oldest goes */
    b->ev_first = (b->ev_first + 1) % S_EVENTS;
    b->ev_count--;
  }
  co_broker_event_t *e = &b->events[(b->ev_first + b->ev_count++) % S_EVENTS];
  e->kind = kind;
  snprintf(e->worker, sizeof e->worker, "%s", worker ? worker : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->detail, sizeof e->detail, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&b->mu);
}

/* Sends an ERROR about `about` (a valid message: its id and type are named) on sock to route. */
static msg_err_t s_error(msg_sock_t *sock, const zframe_t *route, const msg_t *about, msg_err_t code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static msg_err_t s_error(msg_sock_t *sock, const zframe_t *route, const msg_t *about, msg_err_t code,
                         const char *fmt, ...) {
  msg_error_t what = {.code = code}, me;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what.text, sizeof what.text, fmt, ap);
  va_end(ap);
  return msg_sock_send_error(sock, route, about, &what, &me);
}

/* ---- requests ------------------------------------------------------------------------------------- */

static void s_req_free(co_broker_t *b, s_req_t *r) {
  s_list_unlink(r);
  zhashx_delete(b->reqs, r->key);
  msg_in_destroy(&r->in);
  zframe_destroy(&r->sim_route);
  free(r);
}

/* Answers request r with an ERROR of the broker's own to its sim worker, and forgets it. */
static void s_fail_req(co_broker_t *b, s_req_t *r, msg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_fail_req(co_broker_t *b, s_req_t *r, msg_err_t code, const char *fmt, ...) {
  msg_t about;
  msg_init(&about, MSG_INFER, r->id);
  msg_error_t what = {.code = code}, me;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what.text, sizeof what.text, fmt, ap);
  va_end(ap);
  if (msg_sock_send_error(b->sim, r->sim_route, &about, &what, &me)) b->st.undeliverable++;
  b->st.failed++;
  if (code == MSG_ERR_TRANSPORT) b->st.lost++;
  if (code == MSG_ERR_TIMEOUT) b->st.expired++;
  s_req_free(b, r);
}

/* True when a connected GPU worker serves `model` (drained ones do not count). */
static bool s_served(const co_broker_t *b, const char *model) {
  for (uint32_t i = 0; i < b->ngpus; i++)
    if (!b->gpus[i]->drained && strcmp(b->gpus[i]->model, model) == 0) return true;
  return false;
}

/* "tiny-mixed on 2 workers, other on 1", or "none" */
static void s_served_list(const co_broker_t *b, char *out, size_t cap) {
  size_t k = 0;
  out[0] = '\0';
  for (uint32_t i = 0; i < b->ngpus && k < cap; i++) {
    bool seen = false;
    for (uint32_t j = 0; j < i && !seen; j++) seen = strcmp(b->gpus[j]->model, b->gpus[i]->model) == 0;
    if (seen) continue;
    uint32_t n = 0;
    for (uint32_t j = i; j < b->ngpus; j++) n += strcmp(b->gpus[j]->model, b->gpus[i]->model) == 0;
    k += (size_t)snprintf(out + k, cap - k, "%s%s on %u worker%s", k ? ", " : "", b->gpus[i]->model, n,
                          n == 1 ? "" : "s");
  }
  if (!out[0]) snprintf(out, cap, "none");
}

/* ---- GPU workers ---------------------------------------------------------------------------------- */

/* Forgets GPU worker g; each request it held is answered with ERROR 20. */
static void s_forget_gpu(co_broker_t *b, s_gpu_t *g, co_event_t kind, const char *why) {
  uint64_t lost = g->held.n;
  while (g->held.head)
    s_fail_req(b, g->held.head, MSG_ERR_TRANSPORT, "INFER id %" PRIu64 ": GPU worker '%s' %s while holding it",
               g->held.head->id, g->name, why);
  if (kind == CO_EVENT_LEFT) b->st.gpu_left++;
  else b->st.gpu_lost++;
  s_event(b, kind, g->name, "gpu %s: %s; %" PRIu64 " request(s) it held answered with ERROR 20", g->model, why, lost);
  zhashx_delete(b->gpu_by_route, g->key);
  for (uint32_t i = 0; i < b->ngpus; i++)
    if (b->gpus[i] == g) {
      b->gpus[i] = b->gpus[--b->ngpus];
      b->gpus[b->ngpus] = NULL;
      break;
    }
  zframe_destroy(&g->route);
  free(g);
}

/* Forgets GPU worker g after a send to it failed with `me` (ROUTER_MANDATORY: it is gone). */
static void s_unreachable_gpu(co_broker_t *b, s_gpu_t *g, const msg_error_t *me) {
  char why[400];
  snprintf(why, sizeof why, "could not be reached (%.300s)", me->text);
  s_forget_gpu(b, g, CO_EVENT_DIED, why);
}

static void s_drain_gpu(co_broker_t *b, s_gpu_t *g) {
  if (g->drained) return;
  g->drained = true;
  msg_t m;
  msg_init(&m, MSG_DRAIN, ++b->seq);
  m.drain.has_reason = true;
  snprintf(m.drain.reason, sizeof m.drain.reason, "campaign finished or coordinator stopping");
  msg_error_t me;
  msg_sock_send(b->gpu, g->route, &m, &me); /* an unreachable worker is found by the next heartbeat */
}

/* The GPU worker with credit that serves `model`: the one with the most credit; among equals, the next
 * one after the previous pick (so equal workers take turns). NULL when none. */
static s_gpu_t *s_pick(co_broker_t *b, const char *model) {
  s_gpu_t *best = NULL;
  uint32_t best_i = 0;
  for (uint32_t k = 0; k < b->ngpus; k++) {
    uint32_t i = (b->rr + k) % b->ngpus;
    s_gpu_t *g = b->gpus[i];
    if (g->credit <= 0 || g->drained || strcmp(g->model, model) != 0) continue;
    if (!best || g->credit > best->credit) {
      best = g;
      best_i = i;
    }
  }
  if (best) b->rr = best_i + 1;
  return best;
}

/* Forwards queued request r to g, unchanged. An unreachable worker is forgotten (with r). */
static void s_forward(co_broker_t *b, s_req_t *r, s_gpu_t *g) {
  s_list_unlink(r);
  msg_in_t *in = r->in;
  r->in = NULL;
  r->gpu = g;
  g->credit--;
  s_list_push(&g->held, r);
  msg_error_t me;
  if (msg_sock_forward(b->gpu, g->route, &in, &me) != MSG_OK) {
    s_unreachable_gpu(b, g, &me);
    return;
  }
  b->st.forwarded++;
}

/* Forwards queued requests, oldest first, to GPU workers with credit for their model. */
static void s_dispatch(co_broker_t *b) {
  b->dirty = false;
  s_req_t *r = b->queue.head;
  while (r) {
    bool any_credit = false;
    for (uint32_t i = 0; i < b->ngpus && !any_credit; i++) any_credit = b->gpus[i]->credit > 0 && !b->gpus[i]->drained;
    if (!any_credit) return;
    s_req_t *next = r->next; /* still queued after s_forward, whatever happens to r */
    s_gpu_t *g = s_pick(b, r->model);
    if (g) s_forward(b, r, g);
    r = next;
  }
}

static void s_on_hello(co_broker_t *b, s_gpu_t *g, msg_in_t *in) {
  const msg_t *m = &in->msg;
  const msg_hello_body_t *h = &m->hello;
  if (h->role != MSG_ROLE_GPU) {
    b->st.gpu_refused++;
    s_error(b->gpu, in->route, m, MSG_ERR_UNEXPECTED,
            "HELLO.role '%s': this is the broker's GPU side; sim workers say HELLO to the coordinator",
            msg_role_names[h->role]);
    return;
  }
  if (g) s_forget_gpu(b, g, CO_EVENT_LEFT, "said HELLO again (a new session)");
  if (b->model[0] && b->model_hash[0] && strcmp(h->model, b->model) == 0 && strcmp(h->model_hash, b->model_hash) != 0) {
    b->st.gpu_refused++;
    s_event(b, CO_EVENT_MALFORMED, h->name, "HELLO refused: model '%s' hash %s, the campaign's package has %s",
            h->model, h->model_hash, b->model_hash);
    s_error(b->gpu, in->route, m, MSG_ERR_BAD_REQUEST,
            "HELLO.model_hash: '%s' serves model '%s' with content hash %s, but this campaign's package has %s",
            h->name, h->model, h->model_hash, b->model_hash);
    return;
  }
  const char *dtype = h->has_dtype ? h->dtype : "float32";
  if (b->model[0] && b->model_dtype[0] && strcmp(h->model, b->model) == 0 && strcmp(dtype, b->model_dtype) != 0) {
    b->st.gpu_refused++;
    s_event(b, CO_EVENT_MALFORMED, h->name, "HELLO refused: model '%s' in %s, the campaign's model_dtype is %s",
            h->model, dtype, b->model_dtype);
    s_error(b->gpu, in->route, m, MSG_ERR_BAD_REQUEST,
            "HELLO.dtype: '%s' runs model '%s' in %s, but this campaign's model_dtype is %s (rsd-gpu-worker --dtype)",
            h->name, h->model, dtype, b->model_dtype);
    return;
  }
  if (b->ngpus >= S_MAX_GPUS) {
    b->st.gpu_refused++;
    s_error(b->gpu, in->route, m, MSG_ERR_OVERLOADED, "too many GPU workers (%d)", S_MAX_GPUS);
    return;
  }
  g = calloc(1, sizeof *g);
  if (!g) {
    s_error(b->gpu, in->route, m, MSG_ERR_INTERNAL, "out of memory for another GPU worker");
    return;
  }
  g->route = zframe_dup(in->route);
  msg_route_key(in->route, g->key);
  g->id = ++b->next_gpu_id;
  if (g->id > MSG_U32_MAX) g->id = b->next_gpu_id = 1;
  snprintf(g->name, sizeof g->name, "%s", h->name);
  snprintf(g->model, sizeof g->model, "%s", h->model);
  snprintf(g->hash, sizeof g->hash, "%s", h->model_hash);
  snprintf(g->device, sizeof g->device, "%s", h->has_device ? h->device : "?");
  snprintf(g->dtype, sizeof g->dtype, "%s", dtype);
  g->max_batch = h->has_max_batch ? h->max_batch : 0;
  g->credit = h->capacity;
  g->last_seen_ms = zclock_mono();
  msg_t w;
  msg_init(&w, MSG_WELCOME, m->id);
  w.welcome.worker_id = g->id;
  w.welcome.heartbeat_ms = b->heartbeat_ms;
  w.welcome.liveness = b->liveness;
  snprintf(w.welcome.software, sizeof w.welcome.software, "%s", S_SOFTWARE);
  msg_error_t me;
  if (msg_sock_send(b->gpu, g->route, &w, &me) != MSG_OK) {
    zframe_destroy(&g->route);
    free(g);
    return;
  }
  b->gpus[b->ngpus++] = g;
  zhashx_insert(b->gpu_by_route, g->key, g);
  zhashx_update(b->known, g->model, (void *)1);
  b->st.gpu_joined++;
  s_event(b, CO_EVENT_JOINED, g->name, "gpu %s %s on %s in %s, max_batch %u, credit %u", g->model, g->hash,
          g->device, g->dtype, g->max_batch, h->capacity);
  if (b->draining) s_drain_gpu(b, g);
  b->dirty = true;
}

/* An ACTION or ERROR from GPU worker g: back to the sim worker of that request. */
static void s_on_answer(co_broker_t *b, s_gpu_t *g, msg_in_t **in_p) {
  const msg_t *m = &(*in_p)->msg;
  char key[17];
  snprintf(key, sizeof key, "%016" PRIx64, m->id);
  s_req_t *r = zhashx_lookup(b->reqs, key);
  if (!r || r->gpu != g) { /* failed already (its worker was lost and came back), or never ours */
    b->st.late++;
    msg_in_destroy(in_p);
    return;
  }
  if (m->type == MSG_ACTION) {
    b->st.actions++;
  } else {
    b->st.gpu_errors++;
    if (m->error.code == MSG_ERR_OVERLOADED) b->st.gpu_overloaded++;
  }
  msg_error_t me;
  if (msg_sock_forward(b->sim, r->sim_route, in_p, &me) != MSG_OK) b->st.undeliverable++;
  s_req_free(b, r);
}

static void s_on_gpu(co_broker_t *b, msg_in_t *in, msg_err_t rc, const msg_error_t *why) {
  s_gpu_t *g = s_find_gpu(b, in->route);
  if (g) g->last_seen_ms = zclock_mono();
  if (rc != MSG_OK) {
    b->st.malformed++;
    msg_error_t me;
    msg_sock_send_error(b->gpu, in->route, in->msg.type < MSG_TYPE_COUNT_ ? &in->msg : NULL, why, &me);
    s_event(b, CO_EVENT_MALFORMED, g ? g->name : NULL, "GPU side: %s", why->text);
    if (rc == MSG_ERR_VERSION && g) s_forget_gpu(b, g, CO_EVENT_DIED, "speaks another major protocol version");
    msg_in_destroy(&in);
    return;
  }
  const msg_t *m = &in->msg;
  if (m->type == MSG_HELLO) {
    s_on_hello(b, g, in);
    msg_in_destroy(&in);
    return;
  }
  if (!g) {
    if (m->type != MSG_ERROR) {
      b->st.unexpected++;
      s_error(b->gpu, in->route, m, MSG_ERR_UNEXPECTED, "%s from a GPU worker the broker does not know: say HELLO first",
              msg_type_name(m->type));
    }
    msg_in_destroy(&in);
    return;
  }
  switch (m->type) {
    case MSG_READY:
      g->credit += m->ready.credit;
      if (g->credit > S_MAX_CREDIT) g->credit = S_MAX_CREDIT;
      if (m->ready.credit) b->dirty = true;
      break;
    case MSG_HEARTBEAT:
      break;
    case MSG_ACTION:
      s_on_answer(b, g, &in);
      return;
    case MSG_ERROR:
      if (m->error.has_about && strcmp(m->error.about, "INFER") != 0) {
        /* about a WELCOME, HEARTBEAT or DRAIN of ours: nothing to route; never answered */
        s_event(b, CO_EVENT_MALFORMED, g->name, "ERROR %u about %s: %.200s", m->error.code, m->error.about, m->error.text);
        break;
      }
      s_on_answer(b, g, &in);
      return;
    case MSG_BYE: {
      char reason[MSG_TEXT_MAX + 16];
      snprintf(reason, sizeof reason, "said BYE (%s)", m->bye.has_reason ? m->bye.reason : "no reason");
      s_forget_gpu(b, g, CO_EVENT_LEFT, reason);
      break;
    }
    default:
      b->st.unexpected++;
      s_error(b->gpu, in->route, m, MSG_ERR_UNEXPECTED, "%s is not taken on the broker's GPU side",
              msg_type_name(m->type));
      break;
  }
  msg_in_destroy(&in);
}

/* ---- the sim side --------------------------------------------------------------------------------- */

static void s_on_sim(co_broker_t *b, msg_in_t *in, msg_err_t rc, const msg_error_t *why) {
  if (rc != MSG_OK) {
    b->st.malformed++;
    msg_error_t me;
    msg_sock_send_error(b->sim, in->route, in->msg.type < MSG_TYPE_COUNT_ ? &in->msg : NULL, why, &me);
    msg_in_destroy(&in);
    return;
  }
  const msg_t *m = &in->msg;
  if (m->type == MSG_ERROR) { /* never answered */
    msg_in_destroy(&in);
    return;
  }
  if (m->type != MSG_INFER) {
    b->st.unexpected++;
    s_error(b->sim, in->route, m, MSG_ERR_UNEXPECTED,
            "%s is not taken on the broker's sim side (only INFER; HELLO, HEARTBEAT and RESULT go to the coordinator)",
            msg_type_name(m->type));
    msg_in_destroy(&in);
    return;
  }
  b->st.infers++;
  const msg_infer_body_t *q = &m->infer;
  msg_err_t code = MSG_OK;
  char text[sizeof ((msg_error_t *)0)->text] = "";
  char key[17];
  snprintf(key, sizeof key, "%016" PRIx64, m->id);
  if (b->draining) {
    code = MSG_ERR_SHUTDOWN;
    snprintf(text, sizeof text, "INFER id %" PRIu64 ": the broker is shutting down (the campaign is over)", m->id);
  } else if (zhashx_lookup(b->reqs, key)) {
    code = MSG_ERR_UNEXPECTED;
    snprintf(text, sizeof text, "INFER id %" PRIu64 " is already in flight (request ids must be unique)", m->id);
  } else if (!zhashx_lookup(b->known, q->model)) {
    code = MSG_ERR_OVERLOADED;
    char list[120];
    s_served_list(b, list, sizeof list);
    snprintf(text, sizeof text, "INFER.model '%.128s': no GPU worker serves it (connected: %s)", q->model, list);
  } else if (b->queue.n >= S_MAX_QUEUED) {
    code = MSG_ERR_OVERLOADED;
    snprintf(text, sizeof text, "INFER id %" PRIu64 ": %zu requests already wait for a GPU worker", m->id, b->queue.n);
  }
  if (code) {
    if (code != MSG_ERR_UNEXPECTED) b->st.failed++;
    else b->st.unexpected++;
    msg_error_t what = {.code = code}, me;
    memcpy(what.text, text, sizeof what.text);
    msg_sock_send_error(b->sim, in->route, m, &what, &me);
    msg_in_destroy(&in);
    return;
  }
  s_req_t *r = calloc(1, sizeof *r);
  if (!r) {
    b->st.failed++;
    s_error(b->sim, in->route, m, MSG_ERR_INTERNAL, "INFER id %" PRIu64 ": out of memory", m->id);
    msg_in_destroy(&in);
    return;
  }
  r->id = m->id;
  memcpy(r->key, key, sizeof key);
  r->sim_route = zframe_dup(in->route);
  snprintf(r->model, sizeof r->model, "%s", q->model);
  r->arrived_ms = zclock_mono();
  r->deadline_ms = q->has_deadline_ms ? r->arrived_ms + q->deadline_ms : 0;
  r->in = in;
  zhashx_insert(b->reqs, r->key, r);
  s_list_push(&b->queue, r);
  b->dirty = true;
}

/* ---- the loop ------------------------------------------------------------------------------------- */

static void s_start_drain(co_broker_t *b) {
  if (b->draining) return;
  b->draining = true;
  for (uint32_t i = 0; i < b->ngpus; i++) s_drain_gpu(b, b->gpus[i]);
  while (b->queue.head)
    s_fail_req(b, b->queue.head, MSG_ERR_SHUTDOWN, "INFER id %" PRIu64 ": the broker is shutting down",
               b->queue.head->id);
}

/* Liveness, heartbeats, and the deadlines of queued requests. */
static void s_tick(co_broker_t *b) {
  int64_t now = zclock_mono(), limit = (int64_t)b->heartbeat_ms * b->liveness;
  for (uint32_t i = 0; i < b->ngpus;) {
    s_gpu_t *g = b->gpus[i];
    if (now - g->last_seen_ms > limit) {
      char why[96];
      snprintf(why, sizeof why, "went silent (nothing for %" PRId64 " ms)", now - g->last_seen_ms);
      s_forget_gpu(b, g, CO_EVENT_DIED, why);
      continue; /* the last worker moved into slot i */
    }
    i++;
  }
  if (now - b->last_beat_ms >= (int64_t)b->heartbeat_ms) {
    b->last_beat_ms = now;
    for (uint32_t i = 0; i < b->ngpus;) {
      s_gpu_t *g = b->gpus[i];
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++b->seq);
      hb.heartbeat.has_busy = true;
      hb.heartbeat.busy = g->held.n > 1000000 ? 1000000 : (uint32_t)g->held.n;
      msg_error_t me;
      if (msg_sock_send(b->gpu, g->route, &hb, &me) != MSG_OK) {
        s_unreachable_gpu(b, g, &me);
        continue;
      }
      i++;
    }
  }
  for (s_req_t *r = b->queue.head, *next; r; r = next) {
    next = r->next;
    if (r->deadline_ms && now >= r->deadline_ms) {
      s_fail_req(b, r, MSG_ERR_TIMEOUT, "INFER id %" PRIu64 ": deadline_ms %" PRId64 " passed while it waited for a GPU worker",
                 r->id, r->deadline_ms - r->arrived_ms);
    } else if (now - r->arrived_ms >= b->no_worker_wait_ms && !s_served(b, r->model)) {
      s_fail_req(b, r, MSG_ERR_OVERLOADED, "INFER.model '%s': no GPU worker serving it connected within %u ms",
                 r->model, b->no_worker_wait_ms);
    }
  }
}

/* Reads what waits on one socket (at most S_READ_MAX messages). */
static void s_read(co_broker_t *b, bool gpu_side) {
  msg_sock_t *sock = gpu_side ? b->gpu : b->sim;
  zsock_t *zs = msg_sock_zsock(sock);
  for (int n = 0; n < S_READ_MAX && (zsock_events(zs) & ZMQ_POLLIN); n++) {
    msg_in_t *in = NULL;
    msg_error_t why;
    msg_err_t rc = msg_sock_recv(sock, &in, &why);
    if (!in) break;
    if (gpu_side) s_on_gpu(b, in, rc, &why);
    else s_on_sim(b, in, rc, &why);
  }
}

static void s_publish(co_broker_t *b) {
  b->st.gpu_workers = b->ngpus;
  b->st.gpu_credit = 0;
  b->st.in_flight = 0;
  for (uint32_t i = 0; i < b->ngpus; i++) {
    b->st.gpu_credit += (uint64_t)b->gpus[i]->credit;
    b->st.in_flight += b->gpus[i]->held.n;
  }
  b->st.queued = b->queue.n;
  pthread_mutex_lock(&b->mu);
  b->pub = b->st;
  pthread_mutex_unlock(&b->mu);
}

static void *s_main(void *arg) {
  co_broker_t *b = arg;
  zmq_pollitem_t items[3] = {{zsock_resolve(msg_sock_zsock(b->sim)), 0, ZMQ_POLLIN, 0},
                             {zsock_resolve(msg_sock_zsock(b->gpu)), 0, ZMQ_POLLIN, 0},
                             {NULL, b->wake[0], ZMQ_POLLIN, 0}};
  long tick_ms = b->heartbeat_ms / 4;
  if (tick_ms > S_TICK_MAX_MS) tick_ms = S_TICK_MAX_MS;
  if (tick_ms < 1) tick_ms = 1;
  b->last_beat_ms = zclock_mono();
  int64_t last_tick = 0;
  for (;;) {
    pthread_mutex_lock(&b->mu);
    bool drain = b->cmd_drain, quit = b->cmd_quit;
    int64_t quit_by = b->quit_by_ms;
    pthread_mutex_unlock(&b->mu);
    if ((drain || quit) && !b->draining) s_start_drain(b);
    if (quit && (b->ngpus == 0 || zclock_mono() >= quit_by)) break;

    int rc = zmq_poll(items, 3, tick_ms);
    if (rc < 0 && zmq_errno() != EINTR && zmq_errno() != ETERM) break;
    if (rc > 0 && (items[2].revents & ZMQ_POLLIN)) {
      char buf[64];
      while (read(b->wake[0], buf, sizeof buf) > 0) {
      }
    }
    s_read(b, true); /* credit and answers first: they make room for the INFERs read next */
    s_read(b, false);
    int64_t now = zclock_mono();
    if (now - last_tick >= tick_ms) {
      last_tick = now;
      s_tick(b);
    }
    if (b->dirty) s_dispatch(b);
    s_publish(b);
  }
  /* What is still held or waiting will not be answered by a GPU worker through this broker any more. */
  while (b->queue.head)
    s_fail_req(b, b->queue.head, MSG_ERR_SHUTDOWN, "INFER id %" PRIu64 ": the broker stopped", b->queue.head->id);
  while (b->ngpus > 0) {
    s_gpu_t *g = b->gpus[0];
    while (g->held.head)
      s_fail_req(b, g->held.head, MSG_ERR_SHUTDOWN, "INFER id %" PRIu64 ": the broker stopped before GPU worker '%s' answered",
                 g->held.head->id, g->name);
    zhashx_delete(b->gpu_by_route, g->key);
    b->gpus[0] = b->gpus[--b->ngpus];
    zframe_destroy(&g->route);
    free(g);
  }
  s_publish(b);
  return NULL;
}

/* ---- the calling thread's side -------------------------------------------------------------------- */

static void s_wake(co_broker_t *b) {
  char one = 1;
  if (write(b->wake[1], &one, 1) < 0) { /* full: the thread wakes anyway */
  }
}

co_broker_t *co_broker_new(const co_broker_opts_t *o, char *err, size_t errlen) {
  co_broker_t *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  b->wake[0] = b->wake[1] = -1;
  pthread_mutex_init(&b->mu, NULL);
  b->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
  b->liveness = o->liveness ? o->liveness : 3;
  b->no_worker_wait_ms = o->no_worker_wait_ms ? o->no_worker_wait_ms : S_NO_WORKER_WAIT_MS;
  if (o->model) snprintf(b->model, sizeof b->model, "%s", o->model);
  if (o->model_hash) snprintf(b->model_hash, sizeof b->model_hash, "%s", o->model_hash);
  if (o->model_dtype) snprintf(b->model_dtype, sizeof b->model_dtype, "%s", o->model_dtype);
  b->gpu_by_route = zhashx_new();
  b->reqs = zhashx_new();
  b->known = zhashx_new();
  if (!b->gpu_by_route || !b->reqs || !b->known || pipe(b->wake) != 0) {
    snprintf(err, errlen, "cannot set up the broker: %s", strerror(errno));
    co_broker_destroy(&b, 0);
    return NULL;
  }
  fcntl(b->wake[0], F_SETFL, fcntl(b->wake[0], F_GETFL) | O_NONBLOCK);
  fcntl(b->wake[1], F_SETFL, fcntl(b->wake[1], F_GETFL) | O_NONBLOCK);
  if (b->model[0]) zhashx_update(b->known, b->model, (void *)1);
  msg_sock_opts_t so = msg_sock_opts_default();
  so.linger_ms = 200; /* DRAINs and last answers get out before the sockets close */
  so.curve_cert = o->curve_cert;
  msg_error_t me;
  const char *sides[2][3] = {{"sim side (bind.broker)", o->sim_prefer, o->sim_bind},
                             {"GPU side (bind.broker_gpu)", o->gpu_prefer, o->gpu_bind}};
  for (int s = 0; s < 2; s++) {
    msg_sock_t *sock = NULL;
    if (sides[s][1] && sides[s][1][0]) sock = msg_sock_new(ZMQ_ROUTER, sides[s][1], true, &so, NULL, &me);
    if (!sock) sock = msg_sock_new(ZMQ_ROUTER, sides[s][2], true, &so, NULL, &me);
    if (!sock) {
      snprintf(err, errlen, "broker %s %s: %s", sides[s][0], sides[s][2], me.text);
      co_broker_destroy(&b, 0);
      return NULL;
    }
    if (s == 0) b->sim = sock;
    else b->gpu = sock;
  }
  /* the thread takes no signals: SIGINT / SIGTERM stay with the coordinator's loop */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  int prc = pthread_create(&b->thread, NULL, s_main, b); /* a full barrier: the sockets move to the thread */
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (prc != 0) {
    snprintf(err, errlen, "cannot start the broker thread: %s", strerror(prc));
    co_broker_destroy(&b, 0);
    return NULL;
  }
  b->thread_started = true;
  return b;
}

void co_broker_destroy(co_broker_t **self_p, int grace_ms) {
  if (!self_p || !*self_p) return;
  co_broker_t *b = *self_p;
  if (b->thread_started) {
    pthread_mutex_lock(&b->mu);
    b->cmd_quit = true;
    b->quit_by_ms = zclock_mono() + (grace_ms > 0 ? grace_ms : 0);
    pthread_mutex_unlock(&b->mu);
    s_wake(b);
    pthread_join(b->thread, NULL);
  }
  msg_sock_destroy(&b->sim);
  msg_sock_destroy(&b->gpu);
  zhashx_destroy(&b->gpu_by_route);
  zhashx_destroy(&b->reqs);
  zhashx_destroy(&b->known);
  if (b->wake[0] >= 0) close(b->wake[0]);
  if (b->wake[1] >= 0) close(b->wake[1]);
  pthread_mutex_destroy(&b->mu);
  free(b);
  *self_p = NULL;
}

const char *co_broker_sim_endpoint(const co_broker_t *self) { return msg_sock_endpoint(self->sim); }
const char *co_broker_gpu_endpoint(const co_broker_t *self) { return msg_sock_endpoint(self->gpu); }

void co_broker_stats(co_broker_t *self, co_broker_stats_t *out) {
  pthread_mutex_lock(&self->mu);
  *out = self->pub;
  pthread_mutex_unlock(&self->mu);
}

size_t co_broker_events(co_broker_t *self, co_broker_event_t *out, size_t cap) {
  pthread_mutex_lock(&self->mu);
  size_t n = 0;
  while (n < cap && self->ev_count > 0) {
    out[n++] = self->events[self->ev_first];
    self->ev_first = (self->ev_first + 1) % S_EVENTS;
    self->ev_count--;
  }
  pthread_mutex_unlock(&self->mu);
  return n;
}

void co_broker_drain(co_broker_t *self) {
  pthread_mutex_lock(&self->mu);
  self->cmd_drain = true;
  pthread_mutex_unlock(&self->mu);
  s_wake(self);
}

/* ---- endpoints ------------------------------------------------------------------------------------ */

/* When `bound` is tcp:// with a wildcard host, the length of "tcp://HOST" (the port follows); else 0. */
static size_t s_wildcard_host(const char *bound) {
  static const char *const wild[] = {"tcp://0.0.0.0:", "tcp://*:", "tcp://[::]:", "tcp://[*]:"};
  for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
    size_t n = strlen(wild[i]);
    if (strncmp(bound, wild[i], n) == 0) return n - 1;
  }
  return 0;
}

void co_endpoint_reachable(const char *bound, char *out, size_t cap) {
  size_t h = s_wildcard_host(bound);
  char host[256];
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found = NULL;
  bool named = h && gethostname(host, sizeof host - 1) == 0 && host[0];
  if (named) host[sizeof host - 1] = '\0';
  if (named && getaddrinfo(host, NULL, &hints, &found) != 0) named = false; /* a name nobody can resolve */
  if (found) freeaddrinfo(found);
  if (!named) { /* the wildcard address itself still reaches this machine */
    snprintf(out, cap, "%s", bound);
    return;
  }
  snprintf(out, cap, "tcp://%s%s", host, bound + h);
}

void co_endpoint_local(const char *bound, char *out, size_t cap) {
  size_t h = s_wildcard_host(bound);
  if (!h) snprintf(out, cap, "%s", bound);
  else snprintf(out, cap, "tcp://127.0.0.1%s", bound + h);
}
