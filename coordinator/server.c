/* server.c: the coordinator's sim-worker side (see server.h). Owns the ROUTER socket and the table of
 * connected sim workers with the leases each holds; the journal owns every durable fact. Single thread.
 *
 * The loop: wait for the socket; read every message waiting (up to S_BATCH_MAX); RESULTs among them are
 * kept aside and stored together with co_journal_record_results (one transaction, one fsync: group
 * commit); then their ACKs go out, and the workers that returned leases get new ones. Everything else
 * (HELLO, HEARTBEAT, BYE, infra_error RESULTs, ERRORs) is handled as it arrives. Heartbeats out and the
 * expiry of silent workers run on a timer; the journal's counts (progress, completion) about once a
 * second. */
#include "server.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

#define S_MAX_WORKERS 4096
#define S_MAX_HELD 4096            /* leases per worker: the protocol's largest capacity */
#define S_BATCH_MAX 512            /* messages read per wake-up; their RESULTs share one commit */
#define S_LEASE_CHUNK 64           /* episodes asked from the journal per lease_next call */
#define S_COMMIT_SAMPLES 32768     /* commit latencies kept for the percentiles (a ring) */
#define S_RATE_WINDOW_S 60         /* the progress rate is measured over the last minute */
#define S_MAX_MALFORMED_EVENTS 100 /* malformed messages logged in the journal; all are counted */
#define S_LOST_LEASE_WINDOWS 10   /* liveness windows before a lease a worker's HEARTBEAT lacks is lost */
#define S_SOFTWARE "rsd 0.1.0"

typedef struct {
  zframe_t *route; /* owned: the worker's routing id */
  char key[MSG_ROUTE_KEY_MAX + 1]; /* the routing id in hex: the key of by_route */
  uint64_t id;
  char name[MSG_NAME_MAX + 1];
  uint32_t capacity;
  uint32_t nheld;
  uint64_t *held;       /* owned, capacity entries: lease ids this worker holds */
  int64_t *held_ms;     /* owned, capacity entries: when each LEASE was sent (zclock_mono) */
  int64_t last_seen_ms; /* zclock_mono */
  bool touched;         /* in the current batch's list of workers to refill */
} s_worker_t;

struct co_server {
  const co_config_t *cfg; /* borrowed */
  co_journal_t *j;        /* borrowed */
  msg_sock_t *sock;       /* owned */
  s_worker_t *workers[S_MAX_WORKERS]; /* owned, [0, nworkers) */
  uint32_t nworkers;
  zhashx_t *by_route;     /* owned table; borrowed items: routing id (hex) -> s_worker_t */
  uint64_t next_worker_id;
  uint64_t rejected, malformed_logged;
  uint64_t leases_out;    /* sum of the workers' nheld */
  bool maybe_waiting;     /* episodes may be waiting in the journal (false after a lease_next came up short) */
  int64_t started_ms, last_beat_ms, last_progress_ms;
  uint64_t beat_seq;
  co_episode_t eps[S_LEASE_CHUNK];    /* lease_next's output */
  msg_in_t *batch[S_BATCH_MAX];       /* owned: RESULTs read, not yet stored */
  size_t nbatch;
  s_worker_t *touched[S_BATCH_MAX];   /* borrowed: workers that returned leases in this batch */
  size_t ntouched;
  uint64_t kill_after_results;        /* test-only fault hook (server.h); 0: off */
  co_server_stats_t stats;
  uint32_t commit_us[S_COMMIT_SAMPLES]; /* ring of commit wall times */
  struct {
    int64_t ms;
    uint64_t finished;
  } samples[S_RATE_WINDOW_S + 2]; /* ring: (time, done + abandoned) once a second, for the rate */
  size_t nsamples, sample_next;
  char broker[257];                       /* WELCOME.broker; "" when the campaign needs no inference */
  char model[MSG_LABEL_MAX + 1];          /* LEASE.model (the package's manifest name); "": the config's */
  uint32_t videos_saved[CO_MAX_VARIANTS]; /* rollout videos in <output>/videos per variant (max_videos) */
  bool videos_counted;                    /* videos_saved holds the directory's count (after a restart too) */
  bool refused[CO_MAX_VARIANTS];          /* the variant's requests got ERROR 31 (its episodes are abandoned) */
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
  if (!route) return NULL;
  char key[MSG_ROUTE_KEY_MAX + 1];
  msg_route_key(route, key);
  return zhashx_lookup(s->by_route, key);
}

static bool s_drop_held(co_server_t *s, s_worker_t *w, uint64_t lease) {
  for (uint32_t i = 0; i < w->nheld; i++)
    if (w->held[i] == lease) {
      w->nheld--;
      w->held[i] = w->held[w->nheld];
      w->held_ms[i] = w->held_ms[w->nheld];
      s->leases_out--;
      return true;
    }
  return false;
}

/* Forgets worker w. Its leases go back to the queue: released (no attempt) when it said BYE, expired
 * (attempt + 1) when it went silent. */
static int s_forget(co_server_t *s, s_worker_t *w, bool died, char *err, size_t errlen) {
  co_journal_error_t je;
  char silence[120] = "";
  if (died) {
    snprintf(silence, sizeof silence, "nothing for %lld ms (liveness %u x heartbeat %u ms)",
             (long long)(zclock_mono() - w->last_seen_ms), s->cfg->leases.liveness, s->cfg->leases.heartbeat_ms);
    fprintf(stderr, "[rsd] sim worker %s went silent: %s; its %u lease(s) go back to the queue, an attempt counted\n",
            w->name, silence, w->nheld);
  }
  for (uint32_t i = 0; i < w->nheld; i++) {
    co_episode_t ep;
    char reason[160];
    snprintf(reason, sizeof reason, "worker %s %s", w->name, died ? "went silent" : "left");
    co_journal_err_t rc = died ? co_journal_expire(s->j, w->held[i], reason, s->cfg->leases.max_attempts, &ep, &je)
                               : co_journal_release(s->j, w->held[i], reason, &ep, &je);
    if (rc && rc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
  }
  if (w->nheld) s->maybe_waiting = true;
  s->leases_out -= w->nheld;
  co_journal_event(s->j, died ? CO_EVENT_DIED : CO_EVENT_LEFT, w->name, NULL, 0, died ? silence : NULL, &je);
  zhashx_delete(s->by_route, w->key);
  for (uint32_t i = 0; i < s->nworkers; i++)
    if (s->workers[i] == w) {
      s->workers[i] = s->workers[--s->nworkers];
      s->workers[s->nworkers] = NULL;
      break;
    }
  for (size_t i = 0; i < s->ntouched; i++)
    if (s->touched[i] == w) s->touched[i] = s->touched[--s->ntouched];
  zframe_destroy(&w->route);
  free(w->held);
  free(w->held_ms);
  free(w);
  return 0;
}

/* True when `name` is <variant>_t<task>_r<trial>.png for this variant (what s_save_video writes). */
static bool s_is_video_of(const char *name, const char *variant) {
  size_t n = strlen(variant);
  if (strncmp(name, variant, n) != 0 || strncmp(name + n, "_t", 2) != 0) return false;
  const char *p = name + n + 2;
  size_t d = strspn(p, "0123456789");
  if (d == 0 || strncmp(p + d, "_r", 2) != 0) return false;
  p += d + 2;
  d = strspn(p, "0123456789");
  return d > 0 && strcmp(p + d, ".png") == 0;
}

/* Counts the videos already in <output>/videos per variant (a resumed campaign keeps its max_videos). */
static void s_count_videos(co_server_t *s) {
  s->videos_counted = true;
  char dir[CO_PATH_MAX + 16];
  snprintf(dir, sizeof dir, "%s/videos", s->cfg->output);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    for (uint32_t v = 0; v < s->cfg->variants_count; v++)
      if (s_is_video_of(e->d_name, s->cfg->variants[v].name)) s->videos_saved[v]++;
  }
  closedir(d);
}

/* Asks the LEASE of variant v for a rollout video while the campaign's video policy wants more:
 * record_video for `all`, video_on_failure for `failures` (the worker then renders only failed
 * episodes, by replaying them), nothing once max_videos videos of the variant are kept. */
static void s_ask_video(co_server_t *s, int v, msg_lease_body_t *l) {
  if (s->cfg->videos == CO_VIDEOS_NONE) return;
  if (!s->videos_counted) s_count_videos(s);
  if (s->videos_saved[v] >= s->cfg->max_videos) return;
  if (s->cfg->videos == CO_VIDEOS_ALL) {
    l->has_record_video = true;
    l->record_video = true;
  } else {
    l->has_video_on_failure = true;
    l->video_on_failure = true;
  }
}

/* Leases episodes to w up to its capacity. */
static int s_fill(co_server_t *s, s_worker_t *w, char *err, size_t errlen) {
  uint32_t want = w->capacity > w->nheld ? w->capacity - w->nheld : 0;
  while (want > 0 && s->maybe_waiting) {
    size_t got = 0, n = want < S_LEASE_CHUNK ? want : S_LEASE_CHUNK;
    co_journal_error_t je;
    if (co_journal_lease_next(s->j, n, w->name, s_deadline_us(s), s->eps, &got, &je))
      return s_fail(err, errlen, "journal: %s", je.text);
    if (got < n) s->maybe_waiting = false;
    for (size_t i = 0; i < got; i++) {
      const co_episode_t *ep = &s->eps[i];
      co_config_episode_t e = {0};
      int v = co_config_variant_find(s->cfg, ep->key.variant);
      if (v < 0) return s_fail(err, errlen, "journal episode of variant '%s' not in the config", ep->key.variant);
      if (s->refused[v]) { /* back in the queue (a worker left or died): the model refuses it all the same */
        char why[MSG_NAME_MAX + 96];
        snprintf(why, sizeof why, "variant %s does not fit the model (refused earlier in this run), not retried",
                 ep->key.variant);
        co_episode_t back;
        if (co_journal_infra_error(s->j, ep->lease_id, why, 1, &back, &je))
          return s_fail(err, errlen, "journal: %s", je.text);
        continue;
      }
      e.variant = (uint32_t)v;
      e.task = ep->key.task;
      e.trial = ep->key.trial;
      e.seed = co_config_episode_seed(s->cfg, e.task, e.trial);
      msg_t m;
      msg_init(&m, MSG_LEASE, ep->lease_id);
      co_config_lease(s->cfg, &e, ep->attempts + 1, &m.lease);
      if (m.lease.has_model && s->model[0]) snprintf(m.lease.model, sizeof m.lease.model, "%s", s->model);
      s_ask_video(s, v, &m.lease);
      msg_error_t me;
      if (msg_sock_send(s->sock, w->route, &m, &me)) {
        co_episode_t back;
        co_journal_release(s->j, ep->lease_id, me.text, &back, &je);
        s->maybe_waiting = true;
        want = 0; /* the worker's queue is full or it is gone: try again at the next heartbeat */
        continue;
      }
      w->held_ms[w->nheld] = zclock_mono();
      w->held[w->nheld++] = ep->lease_id;
      s->leases_out++;
      s->stats.leases++;
    }
    if (want) want -= (uint32_t)got;
    if (got == 0) break;
  }
  if (s->leases_out > s->stats.most_leases_out) s->stats.most_leases_out = s->leases_out;
  return 0;
}

static void s_reply_error(co_server_t *s, const zframe_t *route, const msg_t *about, msg_err_t code, const char *text) {
  msg_error_t what = {.code = code}, me;
  snprintf(what.text, sizeof what.text, "%.300s", text);
  msg_sock_send_error(s->sock, route, about, &what, &me);
  s->rejected++;
}

/* An infra_error RESULT: not a result; the episode is retried (attempt + 1) or abandoned. An INFER
 * answered with ERROR 31 (the request does not fit the model) would fail the same way on every retry and
 * in every episode of the variant (protocol 8.1 rule 7): the episode and the variant's waiting episodes
 * are abandoned at once, and the other variants go on. */
static int s_on_infra_error(co_server_t *s, s_worker_t *w, const msg_t *m, char *err, size_t errlen) {
  co_journal_error_t je;
  co_episode_t ep;
  const char *reason = m->result.has_reason ? m->result.reason : "infra_error";
  const bool refused = m->result.has_error_code && m->result.error_code == MSG_ERR_BAD_REQUEST;
  const uint32_t attempts = refused ? 1 : s->cfg->leases.max_attempts; /* a refusal is not retried */
  co_journal_err_t rc = co_journal_infra_error(s->j, m->id, reason, attempts, &ep, &je);
  if (rc && rc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
  /* only for a lease this journal held: a stale or foreign RESULT abandons nothing */
  const int v = refused && !rc ? co_config_variant_find(s->cfg, ep.key.variant) : -1;
  if (v >= 0) {
    char why[MSG_TEXT_MAX + 128];
    snprintf(why, sizeof why, "variant %s does not fit the model, not retried: %s", ep.key.variant, reason);
    size_t n = 0;
    if (co_journal_abandon_waiting(s->j, ep.key.variant, why, &n, &je))
      return s_fail(err, errlen, "journal: %s", je.text);
    if (!s->refused[v])
      fprintf(stderr, "[rsd] variant %s: the model refuses its requests (%s); its episodes are abandoned without "
              "retrying (%zu waiting ones now, the leased ones as they come back); the other variants go on\n",
              ep.key.variant, reason, n);
    s->refused[v] = true;
  }
  s->stats.infra_errors++;
  s->maybe_waiting = true;
  msg_t ack;
  msg_init(&ack, MSG_ACK, m->id);
  ack.ack.status = rc ? MSG_ACK_UNKNOWN : MSG_ACK_STORED;
  s_drop_held(s, w, m->id);
  msg_error_t me;
  msg_sock_send(s->sock, w->route, &ack, &me);
  return s_fill(s, w, err, errlen);
}

/* Writes a stored RESULT's rollout video (payload frame "video": the bytes of an animated PNG) to
 * <output>/videos/<variant>_t<task>_r<trial>.png when the campaign's video policy keeps it: `all`, or
 * `failures` and the episode failed; at most max_videos per variant. Written to a temporary name and
 * renamed, so a reader never sees half a file. A video that cannot be written is reported on stderr;
 * it never stops the campaign. */
static void s_save_video(co_server_t *s, const msg_t *m) {
  const msg_frame_t *f = msg_find_frame(m, "video");
  int v = co_config_variant_find(s->cfg, m->result.variant);
  if (!f || f->dtype != MSG_DTYPE_U8 || f->rank != 1 || v < 0 || s->cfg->videos == CO_VIDEOS_NONE) return;
  if (s->cfg->videos == CO_VIDEOS_FAILURES && m->result.outcome != MSG_OUTCOME_FAILURE) return;
  if (!s->videos_counted) s_count_videos(s);
  if (s->videos_saved[v] >= s->cfg->max_videos) return;
  char dir[CO_PATH_MAX + 16], path[CO_PATH_MAX + 256], tmp[CO_PATH_MAX + 272];
  snprintf(dir, sizeof dir, "%s/videos", s->cfg->output);
  snprintf(path, sizeof path, "%s/%s_t%u_r%u.png", dir, m->result.variant, m->result.task, m->result.trial);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "[rsd] video not kept: cannot make %s: %s\n", dir, strerror(errno));
    return;
  }
  FILE *out = fopen(tmp, "wb");
  bool ok = out && fwrite(f->data, 1, f->size, out) == f->size;
  if (out && fclose(out) != 0) ok = false;
  if (ok && rename(tmp, path) == 0) {
    s->videos_saved[v]++;
  } else {
    fprintf(stderr, "[rsd] video not kept: cannot write %s: %s\n", path, strerror(errno));
    unlink(tmp);
  }
}

/* Stores the RESULTs read in this wake-up in one transaction, then acknowledges them and refills the
 * workers that returned leases. */
static int s_flush(co_server_t *s, char *err, size_t errlen) {
  if (s->nbatch == 0) return 0;
  static co_journal_result_in_t ins[S_BATCH_MAX];
  static msg_ack_status_t status[S_BATCH_MAX];
  for (size_t i = 0; i < s->nbatch; i++) {
    const msg_t *m = &s->batch[i]->msg;
    const msg_frame_t *lat = msg_find_frame(m, "latency");
    bool lat_ok = lat && lat->dtype == MSG_DTYPE_F32 && lat->rank == 2 && lat->shape[1] == 4;
    ins[i] = (co_journal_result_in_t){&m->result, m->id, lat_ok ? lat->data : NULL, lat_ok ? lat->shape[0] : 0};
  }
  co_journal_error_t je;
  int64_t t0 = zclock_usecs();
  co_journal_err_t rc = co_journal_record_results(s->j, ins, s->nbatch, status, &je);
  int64_t us = zclock_usecs() - t0;
  int result = 0;
  if (rc) {
    result = s_fail(err, errlen, "journal: %s", je.text); /* nothing acknowledged: the workers resend */
  } else {
    s->commit_us[s->stats.commits % S_COMMIT_SAMPLES] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    s->stats.commits++;
    s->stats.commit_total_ms += (double)us / 1000.0;
    if (s->nbatch > s->stats.largest_batch) s->stats.largest_batch = s->nbatch;
    uint64_t before = s->stats.stored;
    for (size_t i = 0; i < s->nbatch; i++) {
      s->stats.results++;
      s->stats.stored += status[i] == MSG_ACK_STORED;
      s->stats.duplicates += status[i] == MSG_ACK_DUPLICATE;
    }
    if (s->kill_after_results && before < s->kill_after_results && s->stats.stored >= s->kill_after_results) {
      fprintf(stderr, "[rsd] RSD_FAULT_KILL_AFTER_RESULTS=%llu: result %llu committed, killing myself before its ACK\n",
              (unsigned long long)s->kill_after_results, (unsigned long long)s->stats.stored);
      raise(SIGKILL);
    }
    for (size_t i = 0; i < s->nbatch; i++) {
      msg_in_t *in = s->batch[i];
      msg_t ack;
      msg_init(&ack, MSG_ACK, in->msg.id);
      ack.ack.status = status[i];
      msg_error_t me;
      if (status[i] == MSG_ACK_STORED) s_save_video(s, &in->msg);
      msg_sock_send(s->sock, in->route, &ack, &me); /* a lost ACK makes the worker resend; the journal dedups */
      s_worker_t *w = s_find(s, in->route);
      /* an `unknown` RESULT (another campaign's lease id, say) frees none of this campaign's leases */
      bool ended = status[i] == MSG_ACK_STORED || status[i] == MSG_ACK_DUPLICATE;
      if (w && ended && s_drop_held(s, w, in->msg.id) && !w->touched && s->ntouched < S_BATCH_MAX) {
        w->touched = true;
        s->touched[s->ntouched++] = w;
      }
    }
  }
  for (size_t i = 0; i < s->nbatch; i++) msg_in_destroy(&s->batch[i]);
  s->nbatch = 0;
  for (size_t i = 0; i < s->ntouched; i++) {
    s->touched[i]->touched = false;
    if (!result) result = s_fill(s, s->touched[i], err, errlen);
  }
  s->ntouched = 0;
  if (!result && !s->maybe_waiting && s->leases_out == 0) s->last_progress_ms = 0; /* maybe complete: count now */
  return result;
}

static int s_on_hello(co_server_t *s, s_worker_t *w, msg_in_t *in, char *err, size_t errlen) {
  const msg_t *m = &in->msg;
  if (m->hello.role != MSG_ROLE_SIM) {
    s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED,
                  "this is the coordinator's sim-worker endpoint; GPU workers connect to the broker");
    return 0;
  }
  if (w && s_forget(s, w, false, err, errlen)) return -1; /* a new session from the same peer */
  if (s->nworkers >= S_MAX_WORKERS) {
    s_reply_error(s, in->route, m, MSG_ERR_OVERLOADED, "too many sim workers");
    return 0;
  }
  w = calloc(1, sizeof *w);
  uint32_t capacity = m->hello.capacity < S_MAX_HELD ? m->hello.capacity : S_MAX_HELD;
  uint64_t *held = w ? calloc(capacity ? capacity : 1, sizeof *held) : NULL;
  int64_t *held_ms = held ? calloc(capacity ? capacity : 1, sizeof *held_ms) : NULL;
  if (!held_ms) {
    free(held);
    free(w);
    s_reply_error(s, in->route, m, MSG_ERR_OVERLOADED, "out of memory for another sim worker");
    return 0;
  }
  w->held = held;
  w->held_ms = held_ms;
  w->route = zframe_dup(in->route);
  msg_route_key(in->route, w->key);
  w->id = ++s->next_worker_id;
  snprintf(w->name, sizeof w->name, "%s", m->hello.name);
  w->capacity = capacity;
  w->last_seen_ms = zclock_mono();
  s->workers[s->nworkers++] = w;
  zhashx_insert(s->by_route, w->key, w);
  if (s->nworkers > s->stats.most_workers) s->stats.most_workers = s->nworkers;
  msg_t welcome;
  msg_init(&welcome, MSG_WELCOME, m->id);
  welcome.welcome.worker_id = w->id;
  welcome.welcome.heartbeat_ms = s->cfg->leases.heartbeat_ms;
  welcome.welcome.liveness = s->cfg->leases.liveness;
  snprintf(welcome.welcome.software, sizeof welcome.welcome.software, "%s", S_SOFTWARE);
  welcome.welcome.has_campaign = true;
  snprintf(welcome.welcome.campaign, sizeof welcome.welcome.campaign, "%s", s->cfg->name);
  if (s->broker[0]) {
    welcome.welcome.has_broker = true;
    snprintf(welcome.welcome.broker, sizeof welcome.welcome.broker, "%s", s->broker);
  }
  msg_error_t me;
  msg_sock_send(s->sock, w->route, &welcome, &me);
  co_journal_error_t je;
  co_journal_event(s->j, CO_EVENT_JOINED, w->name, NULL, 0, NULL, &je);
  return s_fill(s, w, err, errlen);
}

/* A HEARTBEAT's lease list against the leases this worker holds here (protocol 8.1 rule 3). A lease sent
 * to it more than S_LOST_LEASE_WINDOWS liveness windows ago that its list lacks never reached it, or it
 * dropped the lease: since the worker's heartbeats keep it alive, that lease would stay out for good and
 * the campaign would never complete. It expires (attempt + 1) and its episode waits again. The wait is
 * long because a worker busy with a pass over its episodes heartbeats without reading its socket, so a
 * LEASE can sit unread for a while. A list of MSG_MAX_LEASES ids may be cut short, so it proves nothing. */
static int s_reconcile(co_server_t *s, s_worker_t *w, const msg_heartbeat_body_t *hb, char *err, size_t errlen) {
  if (!hb->has_leases || hb->leases_count >= MSG_MAX_LEASES) return 0;
  const int64_t now = zclock_mono();
  const int64_t grace = S_LOST_LEASE_WINDOWS * (int64_t)s->cfg->leases.heartbeat_ms * s->cfg->leases.liveness;
  bool lost = false;
  for (uint32_t i = 0; i < w->nheld;) {
    bool listed = false;
    for (uint32_t k = 0; k < hb->leases_count && !listed; k++) listed = hb->leases[k] == w->held[i];
    if (listed || now - w->held_ms[i] < grace) {
      i++;
      continue;
    }
    const uint64_t lease = w->held[i];
    char reason[256];
    snprintf(reason, sizeof reason,
             "worker %s does not hold lease %llu: its HEARTBEAT does not list it %lld ms after the LEASE was sent "
             "(the LEASE was lost)", w->name, (unsigned long long)lease, (long long)(now - w->held_ms[i]));
    co_journal_error_t je;
    co_episode_t ep;
    co_journal_err_t rc = co_journal_expire(s->j, lease, reason, s->cfg->leases.max_attempts, &ep, &je);
    if (rc && rc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
    if (!rc) {
      fprintf(stderr, "[rsd] %s; episode %s task %u trial %u %s\n", reason, ep.key.variant, ep.key.task,
              ep.key.trial, ep.state == CO_EPISODE_ABANDONED ? "is abandoned" : "goes back to the queue");
      s->stats.lost_leases++;
      lost = true;
    }
    s_drop_held(s, w, lease); /* the last lease moves into slot i */
  }
  if (!lost) return 0;
  s->maybe_waiting = true;
  return s_fill(s, w, err, errlen);
}

/* One message that is not a batched RESULT. */
static int s_on_message(co_server_t *s, msg_in_t *in, msg_err_t rc, const char *why, char *err, size_t errlen) {
  s_worker_t *w = s_find(s, in->route);
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
  if (m->type == MSG_HELLO) return s_on_hello(s, w, in, err, errlen);
  if (!w) {
    s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED, "say HELLO first");
    return 0;
  }
  switch (m->type) {
    case MSG_HEARTBEAT: return s_reconcile(s, w, &m->heartbeat, err, errlen);
    case MSG_RESULT: return s_on_infra_error(s, w, m, err, errlen); /* the others are batched */
    case MSG_BYE: return s_forget(s, w, false, err, errlen);
    case MSG_ERROR:
      /* The worker refused a LEASE (over capacity, or draining): the episode waits again, no attempt. */
      if ((m->error.code == MSG_ERR_OVERLOADED || m->error.code == MSG_ERR_SHUTDOWN) && s_drop_held(s, w, m->id)) {
        co_journal_error_t je;
        co_episode_t ep;
        co_journal_err_t jrc = co_journal_release(s->j, m->id, m->error.text, &ep, &je);
        if (jrc && jrc != CO_JOURNAL_ERR_NO_LEASE) return s_fail(err, errlen, "journal: %s", je.text);
        s->maybe_waiting = true;
      }
      return 0; /* never answered */
    default: {
      char text[120];
      snprintf(text, sizeof text, "%s is not taken on the coordinator's sim-worker endpoint", msg_type_name(m->type));
      s_reply_error(s, in->route, m, MSG_ERR_UNEXPECTED, text);
      return 0;
    }
  }
}

/* Reads every message waiting (up to S_BATCH_MAX), then stores the RESULTs among them at once. */
static int s_drain(co_server_t *s, char *err, size_t errlen) {
  zsock_t *zs = msg_sock_zsock(s->sock);
  for (size_t n = 0; n < S_BATCH_MAX && (zsock_events(zs) & ZMQ_POLLIN); n++) {
    msg_in_t *in = NULL;
    msg_error_t me;
    msg_err_t rc = msg_sock_recv(s->sock, &in, &me);
    if (!in) break;
    if (rc == MSG_OK && in->msg.type == MSG_RESULT && in->msg.result.outcome != MSG_OUTCOME_INFRA_ERROR) {
      s_worker_t *w = s_find(s, in->route);
      if (w) {
        w->last_seen_ms = zclock_mono();
        s->batch[s->nbatch++] = in;
        continue;
      }
    }
    int hrc = s_on_message(s, in, rc, me.text, err, errlen);
    msg_in_destroy(&in);
    if (hrc) {
      char later[256];
      s_flush(s, later, sizeof later); /* store what came before; err keeps the first error */
      return -1;
    }
  }
  return s_flush(s, err, errlen);
}

co_server_t *co_server_new(const co_config_t *cfg, co_journal_t *j, const char *prefer, const zcert_t *curve_cert,
                           char *err, size_t errlen) {
  co_server_t *s = calloc(1, sizeof *s);
  if (!s) {
    s_fail(err, errlen, "out of memory");
    return NULL;
  }
  s->cfg = cfg;
  s->j = j;
  s->maybe_waiting = true;
  s->by_route = zhashx_new();
  msg_error_t me;
  msg_sock_opts_t opts = msg_sock_opts_default();
  opts.linger_ms = 200; /* the BYEs of co_server_destroy get out before the socket closes */
  opts.curve_cert = curve_cert;
  if (prefer && prefer[0]) s->sock = msg_sock_new(ZMQ_ROUTER, prefer, true, &opts, NULL, &me);
  if (!s->sock) s->sock = msg_sock_new(ZMQ_ROUTER, cfg->bind.coordinator, true, &opts, NULL, &me);
  if (!s->sock || !s->by_route) {
    s_fail(err, errlen, "coordinator endpoint %s: %s", cfg->bind.coordinator, s->sock ? "out of memory" : me.text);
    msg_sock_destroy(&s->sock);
    zhashx_destroy(&s->by_route);
    free(s);
    return NULL;
  }
  const char *fault = getenv("RSD_FAULT_KILL_AFTER_RESULTS");
  if (fault && *fault) s->kill_after_results = strtoull(fault, NULL, 10);
  s->started_ms = s->last_beat_ms = zclock_mono();
  s->last_progress_ms = 0;
  return s;
}

void co_server_destroy(co_server_t **self_p) {
  if (!self_p || !*self_p) return;
  co_server_t *s = *self_p;
  char err[256];
  for (size_t i = 0; i < s->nbatch; i++) msg_in_destroy(&s->batch[i]);
  s->nbatch = 0;
  while (s->nworkers > 0) {
    msg_t bye;
    msg_init(&bye, MSG_BYE, 0);
    bye.bye.has_reason = true;
    snprintf(bye.bye.reason, sizeof bye.bye.reason, "coordinator stopping");
    msg_error_t me;
    msg_sock_send(s->sock, s->workers[0]->route, &bye, &me);
    s_forget(s, s->workers[0], false, err, sizeof err);
  }
  msg_sock_destroy(&s->sock);
  zhashx_destroy(&s->by_route);
  free(s);
  *self_p = NULL;
}

const char *co_server_endpoint(const co_server_t *self) { return msg_sock_endpoint(self->sock); }

void co_server_set_inference(co_server_t *s, const char *broker, const char *model) {
  snprintf(s->broker, sizeof s->broker, "%s", broker ? broker : "");
  snprintf(s->model, sizeof s->model, "%s", model ? model : "");
}

int co_server_progress(co_server_t *s, co_progress_t *p, char *err, size_t errlen) {
  co_journal_counts_t total;
  co_journal_error_t je;
  memset(p, 0, sizeof *p);
  if (co_journal_counts(s->j, &total, p->variants, CO_MAX_VARIANTS, &p->nvariants, &je))
    return s_fail(err, errlen, "journal: %s", je.text);
  if (p->nvariants > CO_MAX_VARIANTS) p->nvariants = CO_MAX_VARIANTS;
  p->total = total.total;
  p->done = total.by_state[CO_EPISODE_DONE];
  p->abandoned = total.by_state[CO_EPISODE_ABANDONED];
  p->leased = total.by_state[CO_EPISODE_LEASED];
  p->successes = total.successes;
  p->workers = s->nworkers;
  p->rejected = s->rejected;
  int64_t now = zclock_mono();
  p->elapsed_s = (double)(now - s->started_ms) / 1000.0;
  /* Rate over the last minute: the oldest sample in the window against now. */
  uint64_t finished = p->done + p->abandoned;
  size_t cap = sizeof s->samples / sizeof s->samples[0];
  s->samples[s->sample_next].ms = now;
  s->samples[s->sample_next].finished = finished;
  s->sample_next = (s->sample_next + 1) % cap;
  if (s->nsamples < cap) s->nsamples++;
  size_t oldest = (s->sample_next + cap - s->nsamples) % cap;
  for (size_t k = 0; k < s->nsamples; k++) {
    size_t i = (oldest + k) % cap;
    if (now - s->samples[i].ms <= S_RATE_WINDOW_S * 1000) {
      oldest = i;
      break;
    }
  }
  double span_min = (double)(now - s->samples[oldest].ms) / 60000.0;
  p->rate_per_min = span_min > 0 ? (double)(finished - s->samples[oldest].finished) / span_min : 0;
  p->eta_s = p->rate_per_min > 0 ? (double)(p->total - finished) * 60.0 / p->rate_per_min : -1;
  if (finished == p->total) p->eta_s = 0;
  return 0;
}

static int s_cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

void co_server_stats(const co_server_t *s, co_server_stats_t *out) {
  *out = s->stats;
  size_t n = s->stats.commits < S_COMMIT_SAMPLES ? s->stats.commits : S_COMMIT_SAMPLES;
  uint32_t *v = n ? malloc(n * sizeof *v) : NULL;
  if (!v) return;
  memcpy(v, s->commit_us, n * sizeof *v);
  qsort(v, n, sizeof *v, s_cmp_u32);
  out->commit_p50_ms = v[(n - 1) / 2] / 1000.0;
  out->commit_p99_ms = v[(size_t)((double)(n - 1) * 0.99)] / 1000.0;
  out->commit_max_ms = v[n - 1] / 1000.0;
  free(v);
}

/* Heartbeats to every worker; forgets the silent ones (their leases expire). */
static int s_tick(co_server_t *s, char *err, size_t errlen) {
  int64_t now = zclock_mono(), limit = (int64_t)s->cfg->leases.heartbeat_ms * s->cfg->leases.liveness;
  for (uint32_t i = 0; i < s->nworkers;) {
    if (now - s->workers[i]->last_seen_ms > limit) {
      if (s_forget(s, s->workers[i], true, err, errlen)) return -1;
      continue; /* the last worker moved into slot i */
    }
    i++;
  }
  if (now - s->last_beat_ms >= (int64_t)s->cfg->leases.heartbeat_ms) {
    s->last_beat_ms = now;
    for (uint32_t i = 0; i < s->nworkers; i++) {
      s_worker_t *w = s->workers[i];
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++s->beat_seq);
      hb.heartbeat.has_leases = true;
      hb.heartbeat.leases_count = w->nheld < MSG_MAX_LEASES ? w->nheld : MSG_MAX_LEASES;
      memcpy(hb.heartbeat.leases, w->held, hb.heartbeat.leases_count * sizeof w->held[0]);
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
  int64_t tick_ms = s->cfg->leases.heartbeat_ms / 4 > 0 ? s->cfg->leases.heartbeat_ms / 4 : 1, last_tick = 0;
  co_progress_t p;
  for (;;) {
    if (stop && *stop) {
      result = 1;
      break;
    }
    if (zpoller_wait(poller, (int)tick_ms)) {
      if (s_drain(s, err, errlen)) break;
    } else if (zpoller_terminated(poller)) {
      result = 1;
      break;
    }
    int64_t now = zclock_mono();
    if (now - last_tick >= tick_ms) {
      last_tick = now;
      if (s_tick(s, err, errlen)) break;
    }
    if (now - s->last_progress_ms >= 1000) { /* counts scan the journal: about once a second */
      s->last_progress_ms = now;
      if (co_server_progress(s, &p, err, errlen)) break;
      if (p.done + p.abandoned == p.total) {
        result = 0;
        break;
      }
      if (on_progress) on_progress(&p);
    }
  }
  if (result >= 0 && on_progress && co_server_progress(s, &p, err, errlen) == 0) on_progress(&p);
  zpoller_destroy(&poller);
  return result;
}
