/* server.c: the coordinator's sim-worker side (see server.h). Owns the ROUTER socket and the table of
 * connected sim workers with the leases each holds; the journal owns every durable fact. Single thread. */
#include "server.h"

#include <czmq.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "msg.h"

#define S_MAX_WORKERS 256
#define S_MAX_HELD 256
#define S_MAX_MALFORMED_EVENTS 100 /* malformed messages logged in the journal; all are counted */
#define S_SOFTWARE "rsd 0.1.0"

typedef struct {
  zframe_t *route; /* owned: the worker's routing id */
  uint64_t id;
  char name[MSG_NAME_MAX + 1];
  uint32_t capacity;
  uint32_t nheld;
  uint64_t held[S_MAX_HELD]; /* lease ids this worker holds */
  int64_t last_seen_ms;      /* zclock_mono */
} s_worker_t;

struct co_server {
  const co_config_t *cfg; /* borrowed */
  co_journal_t *j;        /* borrowed */
  msg_sock_t *sock;       /* owned */
  s_worker_t workers[S_MAX_WORKERS];
  uint32_t nworkers;
  uint64_t next_worker_id;
  uint64_t rejected, malformed_logged;
  int64_t started_ms, last_beat_ms, last_progress_ms;
  uint64_t beat_seq;
};

static int s_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

static int64_t s_deadline_us(const co_server_t *s) {
  return zclock_time() * 1000 + (int64_t)s->cfg->leases.heartbeat_ms * s->cfg->leases.liveness * 1000;
}

static s_worker_t *s_find(co_server_t *s, const zframe_t *route) {
  for (uint32_t i = 0; i < s->nworkers; i++)
    if (zframe_eq(s->workers[i].route, (zframe_t *)route)) return &s->workers[i];
  return NULL;
}

static void s_drop_held(s_worker_t *w, uint64_t lease) {
  for (uint32_t i = 0; i < w->nheld; i++)
    if (w->held[i] == lease) {
      w->held[i] = w->held[--w->nheld];
      return;
    }
}

/* Forgets worker w. Its leases go back to the queue: released (no attempt) when it said BYE, expired
 * (attempt + 1) when it went silent. */
static int s_forget(co_server_t *s, s_worker_t *w, bool died, char *err, size_t errlen) {
  co_journal_error_t je;
  for (uint32_t i = 0; i < w->nheld; i++) {
    co_episode_t ep;
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s %s", w->name, died ? "went silent" : "left");
    co_journal_err_t rc = died ? co_journal_expire(s->j, w->held[i], reason, s->cfg->leases.max_attempts, &ep, &je)
                               : co_journal_release(s->j, w->held[i], reason, &ep, &je);
    if (rc && rc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
  }
  co_journal_event(s->j, died ? CO_EVENT_DIED : CO_EVENT_LEFT, w->name, NULL, 0, NULL, &je);
  zframe_destroy(&w->route);
  *w = s->workers[--s->nworkers];
  memset(&s->workers[s->nworkers], 0, sizeof s->workers[0]);
  return 0;
}

/* Leases episodes to w up to its capacity. */
static int s_fill(co_server_t *s, s_worker_t *w, char *err, size_t errlen) {
  uint32_t want = w->capacity > w->nheld ? w->capacity - w->nheld : 0;
  if (want > S_MAX_HELD - w->nheld) want = S_MAX_HELD - w->nheld;
  while (want > 0) {
    co_episode_t eps[16];
    size_t got = 0;
    co_journal_error_t je;
    size_t n = want < 16 ? want : 16;
    if (co_journal_lease_next(s->j, n, w->name, s_deadline_us(s), eps, &got, &je))
      return s_fail(err, errlen, "journal: %s", je.text);
    if (got == 0) return 0;
    for (size_t i = 0; i < got; i++) {
      co_config_episode_t e = {0};
      int v = co_config_variant_find(s->cfg, eps[i].key.variant);
      if (v < 0) return s_fail(err, errlen, "journal episode of variant '%s' not in the config", eps[i].key.variant);
      e.variant = (uint32_t)v;
      e.task = eps[i].key.task;
      e.trial = eps[i].key.trial;
      e.seed = co_config_episode_seed(s->cfg, e.task, e.trial);
      msg_t m;
      msg_init(&m, MSG_LEASE, eps[i].lease_id);
      co_config_lease(s->cfg, &e, eps[i].attempts + 1, &m.lease);
      msg_error_t me;
      if (msg_sock_send(s->sock, w->route, &m, &me)) {
        co_episode_t back;
        co_journal_release(s->j, eps[i].lease_id, me.text, &back, &je);
        continue;
      }
      w->held[w->nheld++] = eps[i].lease_id;
    }
    want -= (uint32_t)got;
  }
  return 0;
}

static void s_reply_error(co_server_t *s, const zframe_t *route, const msg_t *about, msg_err_t code, const char *text) {
  msg_error_t what = {.code = code}, me;
  snprintf(what.text, sizeof what.text, "%.300s", text);
  msg_sock_send_error(s->sock, route, about, &what, &me);
  s->rejected++;
}

static int s_on_result(co_server_t *s, s_worker_t *w, const msg_t *m, char *err, size_t errlen) {
  co_journal_error_t je;
  msg_t ack;
  msg_init(&ack, MSG_ACK, m->id);
  if (m->result.outcome == MSG_OUTCOME_INFRA_ERROR) {
    co_episode_t ep;
    co_journal_err_t rc = co_journal_infra_error(s->j, m->id, m->result.has_reason ? m->result.reason : "infra_error",
                                                 s->cfg->leases.max_attempts, &ep, &je);
    if (rc && rc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
    ack.ack.status = rc ? MSG_ACK_UNKNOWN : MSG_ACK_STORED;
  } else {
    const msg_frame_t *lat = msg_find_frame(m, "latency");
    bool lat_ok = lat && lat->dtype == MSG_DTYPE_F32 && lat->rank == 2 && lat->shape[1] == 4;
    msg_ack_status_t status;
    if (co_journal_record_result(s->j, &m->result, m->id, lat_ok ? lat->data : NULL, lat_ok ? lat->shape[0] : 0,
                                 &status, &je))
      return s_fail(err, errlen, "journal: %s", je.text);
    ack.ack.status = status;
  }
  s_drop_held(w, m->id);
  msg_error_t me;
  msg_sock_send(s->sock, w->route, &ack, &me); /* a lost ACK makes the worker resend; the journal dedups */
  return s_fill(s, w, err, errlen);
}

static int s_on_message(co_server_t *s, msg_in_t *in, msg_err_t rc, const char *why, char *err, size_t errlen) {
  s_worker_t *w = in->route ? s_find(s, in->route) : NULL;
  if (w) w->last_seen_ms = zclock_mono();
  if (rc != MSG_OK) {
    s_reply_error(s, in->route, in->msg.type < MSG_TYPE_COUNT_ ? &in->msg : NULL, rc, why);
    if (s->malformed_logged++ < S_MAX_MALFORMED_EVENTS) {
      co_journal_error_t je;
      co_journal_event(s->j, CO_EVENT_MALFORMED, w ? w->name : NULL, NULL, 0, why, &je);
    }
    return 0;
  }
  const msg_t *m = &in->msg;
  if (m->type == MSG_HELLO) {
    if (m->hello.role != MSG_ROLE_SIM) {
      s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED, "this is the coordinator's sim-worker endpoint; GPU workers connect to the broker");
      return 0;
    }
    if (w && s_forget(s, w, false, err, errlen)) return -1; /* a new session from the same peer */
    if (s->nworkers >= S_MAX_WORKERS) {
      s_reply_error(s, in->route, m, MSG_ERR_OVERLOADED, "too many sim workers");
      return 0;
    }
    w = &s->workers[s->nworkers++];
    memset(w, 0, sizeof *w);
    w->route = zframe_dup(in->route);
    w->id = ++s->next_worker_id;
    snprintf(w->name, sizeof w->name, "%s", m->hello.name);
    w->capacity = m->hello.capacity;
    w->last_seen_ms = zclock_mono();
    msg_t welcome;
    msg_init(&welcome, MSG_WELCOME, m->id);
    welcome.welcome.worker_id = w->id;
    welcome.welcome.heartbeat_ms = s->cfg->leases.heartbeat_ms;
    welcome.welcome.liveness = s->cfg->leases.liveness;
    snprintf(welcome.welcome.software, sizeof welcome.welcome.software, "%s", S_SOFTWARE);
    welcome.welcome.has_campaign = true;
    snprintf(welcome.welcome.campaign, sizeof welcome.welcome.campaign, "%s", s->cfg->name);
    msg_error_t me;
    msg_sock_send(s->sock, w->route, &welcome, &me);
    co_journal_error_t je;
    co_journal_event(s->j, CO_EVENT_JOINED, w->name, NULL, 0, NULL, &je);
    return s_fill(s, w, err, errlen);
  }
  if (!w) {
    s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED, "say HELLO first");
    return 0;
  }
  switch (m->type) {
    case MSG_HEARTBEAT: return 0;
    case MSG_RESULT: return s_on_result(s, w, m, err, errlen);
    case MSG_BYE: return s_forget(s, w, false, err, errlen);
    case MSG_ERROR: return 0; /* the worker refused something of ours; never answered */
    default: {
      char text[120];
      snprintf(text, sizeof text, "%s is not taken on the coordinator's sim-worker endpoint", msg_type_name(m->type));
      s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED, text);
      return 0;
    }
  }
}

co_server_t *co_server_new(const co_config_t *cfg, co_journal_t *j, char *err, size_t errlen) {
  co_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    s_fail(err, errlen, "out of memory");
    return NULL;
  }
  s->cfg = cfg;
  s->j = j;
  msg_error_t me;
  s->sock = msg_sock_new(ZMQ_ROUTER, cfg->bind.coordinator, true, NULL, NULL, &me);
  if (!s->sock) {
    s_fail(err, errlen, "coordinator endpoint: %s", me.text);
    free(s);
    return NULL;
  }
  s->started_ms = s->last_beat_ms = zclock_mono();
  return s;
}

void co_server_destroy(co_server_t **self_p) {
  if (!self_p || !*self_p) return;
  co_server_t *s = *self_p;
  char err[256];
  while (s->nworkers > 0) {
    msg_t bye;
    msg_init(&bye, MSG_BYE, 0);
    bye.bye.has_reason = true;
    snprintf(bye.bye.reason, sizeof bye.bye.reason, "coordinator stopping");
    msg_error_t me;
    msg_sock_send(s->sock, s->workers[0].route, &bye, &me);
    s_forget(s, &s->workers[0], false, err, sizeof err);
  }
  msg_sock_destroy(&s->sock);
  free(s);
  *self_p = NULL;
}

const char *co_server_endpoint(const co_server_t *self) { return msg_sock_endpoint(self->sock); }

int co_server_progress(co_server_t *s, co_progress_t *p, char *err, size_t errlen) {
  co_journal_counts_t total;
  co_journal_error_t je;
  if (co_journal_counts(s->j, &total, NULL, 0, NULL, &je)) return s_fail(err, errlen, "journal: %s", je.text);
  memset(p, 0, sizeof *p);
  p->total = total.total;
  p->done = total.by_state[CO_EPISODE_DONE];
  p->abandoned = total.by_state[CO_EPISODE_ABANDONED];
  p->leased = total.by_state[CO_EPISODE_LEASED];
  p->successes = total.successes;
  p->workers = s->nworkers;
  p->rejected = s->rejected;
  p->elapsed_s = (double)(zclock_mono() - s->started_ms) / 1000.0;
  return 0;
}

/* Heartbeats to every worker; forgets the silent ones (their leases expire). */
static int s_tick(co_server_t *s, char *err, size_t errlen) {
  int64_t now = zclock_mono(), limit = (int64_t)s->cfg->leases.heartbeat_ms * s->cfg->leases.liveness;
  for (uint32_t i = 0; i < s->nworkers;) {
    if (now - s->workers[i].last_seen_ms > limit) {
      if (s_forget(s, &s->workers[i], true, err, errlen)) return -1;
      continue; /* the last worker moved into slot i */
    }
    i++;
  }
  if (now - s->last_beat_ms >= (int64_t)s->cfg->leases.heartbeat_ms) {
    s->last_beat_ms = now;
    for (uint32_t i = 0; i < s->nworkers; i++) {
      s_worker_t *w = &s->workers[i];
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++s->beat_seq);
      hb.heartbeat.has_leases = true;
      hb.heartbeat.leases_count = w->nheld;
      memcpy(hb.heartbeat.leases, w->held, w->nheld * sizeof w->held[0]);
      msg_error_t me;
      msg_sock_send(s->sock, w->route, &hb, &me);
      /* episodes freed by other workers' expiries go to whoever has room */
      if (s_fill(s, w, err, errlen)) return -1;
    }
  }
  return 0;
}

int co_server_run(co_server_t *s, volatile sig_atomic_t *stop, void (*on_progress)(const co_progress_t *p),
                  char *err, size_t errlen) {
  zpoller_t *poller = zpoller_new(msg_sock_zsock(s->sock), NULL);
  int result = -1;
  int wait_ms = (int)(s->cfg->leases.heartbeat_ms / 4 > 0 ? s->cfg->leases.heartbeat_ms / 4 : 1);
  for (;;) {
    if (stop && *stop) {
      result = 1;
      break;
    }
    if (zpoller_wait(poller, wait_ms)) {
      msg_in_t *in = NULL;
      msg_error_t me;
      msg_err_t rc = msg_sock_recv(s->sock, &in, &me);
      int hrc = in ? s_on_message(s, in, rc, me.text, err, errlen) : 0;
      msg_in_destroy(&in);
      if (hrc) break;
    } else if (zpoller_terminated(poller)) {
      result = 1;
      break;
    }
    if (s_tick(s, err, errlen)) break;
    int64_t now = zclock_mono();
    if (now - s->last_progress_ms >= 1000) { /* counts scan the journal: about once a second */
      s->last_progress_ms = now;
      co_progress_t p;
      if (co_server_progress(s, &p, err, errlen)) break;
      if (on_progress) on_progress(&p);
      if (p.done + p.abandoned == p.total) {
        result = 0;
        break;
      }
    }
  }
  zpoller_destroy(&poller);
  return result;
}
