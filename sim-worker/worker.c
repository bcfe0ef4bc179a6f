/* worker.c: the sim worker's coordinator client (see worker.h).
 *
 * The loop, one pass at a time: take every waiting message (WELCOME, LEASE, ACK, HEARTBEAT, BYE, DRAIN,
 * ERROR), start the episodes whose task is loaded, give each running (or replaying) episode one control
 * step, send the RESULTs that are due, and heartbeat. Only the loader thread works outside it, on one
 * task at a time; it hands the loaded task back through s_loader_t, guarded by `done`.
 *
 * Sessions. A session starts with a HELLO (a fresh nonce) on a fresh DEALER socket and is live once the
 * WELCOME with that nonce arrives; until then nothing else is sent, and stale WELCOMEs are ignored. When
 * the coordinator has been silent for liveness x heartbeat (at most once per such window), or says it
 * does not know us (ERROR 21), the worker starts a new session: a restarted coordinator, or one that
 * declared us dead, has put our leases back in its queue, so unfinished episodes are dropped; finished
 * ones are kept and their RESULTs re-sent until ACKed (the journal keeps the first result per episode).
 * A WELCOME for another campaign drops the RESULTs of the old one.
 *
 * Videos. `record_video` (campaign `videos: all`) renders agentview while the episode runs.
 * `video_on_failure` (`videos: failures`) renders nothing while it runs: the episode's actions are kept,
 * and after a failure they are replayed from the same initial state with the camera on (MuJoCo is
 * deterministic: the replay is the same trajectory; a replay that ends otherwise gives no video). Each
 * recorded frame is compressed into the video in the pass that recorded it (s_video), never all at the end.
 *
 * Model policies (`policy: model`). WELCOME names the inference broker; a second DEALER connects there.
 * An episode renders both cameras every `replan_every` steps, sends an INFER with that observation, waits
 * for the ACTION (other episodes step meanwhile), executes `replan_every` actions of its chunk, and asks
 * again (infer.c builds the INFER, checks the ACTION and sums the decoding statistics for the RESULT).
 * An ERROR answer, a malformed ACTION, or no answer within the deadline ends the episode as an
 * infrastructure error naming the request: it is retried, never counted as a policy failure.
 *
 * A worker that cannot load a task or make a renderer is misconfigured (no export, no GL): it says BYE
 * (its leases go back to the queue, no attempt counted) and exits 1, rather than fail every episode. */
#include "worker.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "episode.h"
#include "expert.h"
#include "infer.h"
#include "msg.h"
#include "png.h"

#define S_MAX_JOBS 64
#define S_MAX_TASKS 64
#define S_VIDEO_FPS (20 / SW_RECORD_EVERY) /* videos: 20 Hz control, one frame per SW_RECORD_EVERY steps */
#define S_SOFTWARE "rsd-sim-worker 0.1.0"

/* LOADING: waiting for its task; RUNNING: the episode steps (its wait steps first, one per pass, as a
 * replay's); REPLAY_WAIT: failed, waiting for the task's renderer to replay it for its video; REPLAYING;
 * FINISHED: its RESULT goes out until ACKed. */
typedef enum { S_LOADING, S_RUNNING, S_REPLAY_WAIT, S_REPLAYING, S_FINISHED } s_phase_t;

/* One lease, from LEASE to ACK. */
typedef struct {
  bool used;
  uint64_t lease_id;
  msg_lease_body_t lease;
  s_phase_t phase;
  sw_episode_t *ep;     /* owned while running or replaying */
  sw_expert_t *expert;  /* owned while running (policy expert) */
  sw_infer_t inf;       /* policy model: the chunk, the request in flight, the decoding statistics */
  double *actions;      /* owned: the actions taken (video_on_failure), nactions x SW_ACTION_DIM */
  int nactions, actions_cap;
  int replayed;         /* actions replayed so far */
  int64_t start_ms;
  msg_outcome_t outcome;
  uint32_t steps;
  uint64_t wall_ms;
  char reason[MSG_TEXT_MAX + 1];
  uint32_t error_code;  /* the ERROR code that answered an INFER and ended the episode (0: none) */
  sw_apng_t *apng;      /* owned: the video being made, its frames compressed as the episode records them */
  bool video_failed;    /* the video could not be made (said once; the RESULT goes without it) */
  uint8_t *video;       /* owned: the APNG file, or NULL */
  size_t video_len;
  int64_t sent_ms;      /* last RESULT sent (0: never) */
} s_job_t;

typedef struct {
  char suite[MSG_NAME_MAX + 1];
  int task;
  sw_task_t *t;         /* owned */
  bool renderer_busy;   /* the loader thread is making t's renderer: do not touch t->renderer */
} s_task_slot_t;

/* The loader thread's hand-over; `busy` and `done` are written by one side each. */
typedef struct {
  pthread_t thread;
  bool busy;            /* main thread: a load is in flight */
  atomic_int done;      /* loader: the result below is ready */
  char data_dir[1024];
  char suite[MSG_NAME_MAX + 1];
  int task;
  bool renderer;        /* also make the task's renderer */
  s_task_slot_t *existing; /* nullable: only make this loaded task's renderer */
  sw_task_t *result;
  bool failed;
  char error[512];
} s_loader_t;

typedef struct {
  const sw_worker_opts_t *o;
  char name[MSG_NAME_MAX + 1];
  char endpoint[512];
  msg_sock_t *sock;
  zpoller_t *poller;    /* sock, and infer_sock when connected */
  msg_sock_t *infer_sock; /* owned, nullable: DEALER to the inference broker of the current session */
  char broker[257];     /* its endpoint (from WELCOME.broker; "" when the coordinator named none) */
  uint64_t worker_id;   /* from WELCOME: the high half of INFER ids */
  uint32_t infer_seq;   /* the low half; never reused within a session */
  s_job_t jobs[S_MAX_JOBS];
  s_task_slot_t tasks[S_MAX_TASKS];
  int ntasks;
  s_loader_t loader;
  uint32_t heartbeat_ms, liveness;
  int64_t last_rx_ms, last_hb_ms, last_hello_ms;
  uint64_t hello_id;    /* the nonce of the last HELLO: only its WELCOME opens the session */
  bool welcomed, draining;
  char campaign[MSG_LABEL_MAX + 1]; /* the campaign of the current session ("" if unknown) */
  char fatal[2600];     /* set: leave with BYE and exit 1 */
  uint64_t seq;
  int finished, stored;
} s_worker_t;

static int64_t s_now_ms(void) { return zclock_mono(); }

static int64_t s_window_ms(const s_worker_t *w) { return (int64_t)w->liveness * w->heartbeat_ms; }

/* The loader thread: a task, and its renderer when asked (made here, released for the main thread). */
static void *s_load_main(void *arg) {
  s_loader_t *l = arg;
  if (l->existing) {
    l->failed = sw_task_make_renderer(l->existing->t, l->error, sizeof l->error) != 0;
  } else {
    l->result = sw_task_load(l->data_dir, l->suite, l->task, l->error, sizeof l->error);
    l->failed = !l->result || (l->renderer && sw_task_make_renderer(l->result, l->error, sizeof l->error));
  }
  atomic_store(&l->done, 1);
  return NULL;
}

/* The episode renders while it runs (videos: all). */
static bool s_records(const s_job_t *j) { return j->lease.has_record_video && j->lease.record_video; }
/* A failed episode is replayed for its video (videos: failures). */
static bool s_video_on_failure(const s_job_t *j) {
  return !s_records(j) && j->lease.has_video_on_failure && j->lease.video_on_failure;
}

static s_task_slot_t *s_find_task(s_worker_t *w, const char *suite, int task) {
  for (int i = 0; i < w->ntasks; i++)
    if (w->tasks[i].task == task && strcmp(w->tasks[i].suite, suite) == 0) return &w->tasks[i];
  return NULL;
}

static void s_send(s_worker_t *w, const msg_t *m) {
  msg_error_t err;
  if (msg_sock_send(w->sock, NULL, m, &err) != MSG_OK)
    fprintf(stderr, "rsd-sim-worker %s: sending %s: %s\n", w->name, msg_type_name(m->type), err.text);
}

/* Episodes running, replaying or waiting for their task (finished ones only wait for their ACK). */
static int s_active(const s_worker_t *w) {
  int n = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) n += w->jobs[i].used && w->jobs[i].phase != S_FINISHED;
  return n;
}

/* Leases held: running, waiting, or finished and waiting for their ACK. */
static int s_held(const s_worker_t *w) {
  int n = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) n += w->jobs[i].used;
  return n;
}

static void s_job_free(s_job_t *j) {
  sw_expert_destroy(&j->expert);
  sw_infer_free(&j->inf);
  sw_episode_destroy(&j->ep);
  free(j->actions);
  sw_apng_destroy(&j->apng);
  free(j->video);
  memset(j, 0, sizeof *j);
}

/* The endpoint to (re)connect to: as given, or read again from the endpoint file (a restarted
 * coordinator may have bound another port). */
static void s_resolve_endpoint(s_worker_t *w) {
  if (!w->o->coordinator_file) return;
  FILE *f = fopen(w->o->coordinator_file, "r");
  char buf[512] = "";
  if (f) {
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
  }
  buf[strcspn(buf, "\r\n")] = '\0';
  if (strstr(buf, "://")) snprintf(w->endpoint, sizeof w->endpoint, "%s", buf);
}

/* The options of both sockets: CURVE with --keys. */
static msg_sock_opts_t s_sock_opts(const s_worker_t *w) {
  msg_sock_opts_t so = msg_sock_opts_default();
  so.curve_cert = w->o->curve_cert;
  so.curve_server_key = w->o->curve_server_key;
  return so;
}

/* A new session: a fresh socket (nothing queued for the old peer is sent) and a HELLO. */
static int s_hello(s_worker_t *w) {
  zpoller_destroy(&w->poller);
  msg_sock_destroy(&w->sock);
  msg_sock_destroy(&w->infer_sock); /* the next WELCOME names the broker again */
  w->broker[0] = '\0';
  s_resolve_endpoint(w);
  msg_error_t err;
  msg_sock_opts_t so = s_sock_opts(w);
  if (!(w->sock = msg_sock_new(ZMQ_DEALER, w->endpoint, false, &so, NULL, &err)) ||
      !(w->poller = zpoller_new(msg_sock_zsock(w->sock), NULL))) {
    snprintf(w->fatal, sizeof w->fatal, "cannot connect to %s: %s", w->endpoint, w->sock ? "poller" : err.text);
    return -1;
  }
  msg_t h;
  w->hello_id = (uint64_t)getpid() << 20 | (++w->seq & 0xfffff);
  msg_init(&h, MSG_HELLO, w->hello_id);
  h.hello.role = MSG_ROLE_SIM;
  snprintf(h.hello.name, sizeof h.hello.name, "%s", w->name);
  h.hello.capacity = w->o->capacity;
  snprintf(h.hello.software, sizeof h.hello.software, "%s", S_SOFTWARE);
  s_send(w, &h);
  w->welcomed = false;
  w->last_hello_ms = s_now_ms();
  return 0;
}

/* Starts a new session with a coordinator that lost us (see the top of the file). */
static void s_rejoin(s_worker_t *w, const char *why) {
  int dropped = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (j->used && j->phase != S_FINISHED) {
      s_job_free(j);
      dropped++;
    }
  }
  fprintf(stderr, "rsd-sim-worker %s: %s; saying HELLO again (%d unfinished episodes dropped)\n", w->name, why,
          dropped);
  s_hello(w);
}

/* Compresses the agentview frames j's episode recorded since the last call (one per SW_RECORD_EVERY
 * steps) into its video, so that no pass waits for a whole rollout's compression (over a second at
 * 256 px); with `finish`, ends the file into j->video. */
static void s_video(s_worker_t *w, s_job_t *j, bool finish) {
  sw_episode_t *ep = j->ep;
  if (!ep || !ep->opts.record || j->video_failed) return;
  int size = ep->opts.image_size;
  size_t frame = (size_t)size * (size_t)size * 3;
  char err[256];
  if (!j->apng && ep->nframes > 0 && !(j->apng = sw_apng_new(size, size, S_VIDEO_FPS, err, sizeof err))) goto fail;
  while (j->apng && sw_apng_frames(j->apng) < ep->nframes)
    if (sw_apng_add(j->apng, ep->frames + frame * (size_t)sw_apng_frames(j->apng), err, sizeof err)) goto fail;
  if (finish && j->apng && sw_apng_finish(&j->apng, &j->video, &j->video_len, err, sizeof err)) goto fail;
  return;
fail:
  fprintf(stderr, "rsd-sim-worker %s: video of %s task %u trial %u not made: %s\n", w->name, j->lease.variant,
          j->lease.task, j->lease.trial, err);
  sw_apng_destroy(&j->apng);
  j->video_failed = true;
}

static void s_finished_line(const s_worker_t *w, const s_job_t *j) {
  if (w->o->verbose)
    fprintf(stderr, "rsd-sim-worker %s: %s task %u trial %u: %s after %u steps (%llu ms)%s%s%s\n", w->name,
            j->lease.variant, j->lease.task, j->lease.trial, msg_outcome_names[j->outcome], j->steps,
            (unsigned long long)j->wall_ms, j->video ? ", with video" : "", j->reason[0] ? ": " : "", j->reason);
}

/* Ends a job's episode with an outcome; the RESULT goes out next pass (after a replay for its video,
 * when the campaign keeps failures' videos). */
static void s_finish(s_worker_t *w, s_job_t *j, msg_outcome_t outcome, uint32_t steps, const char *reason) {
  j->outcome = outcome;
  j->steps = steps;
  j->wall_ms = (uint64_t)(s_now_ms() - j->start_ms);
  snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : "");
  s_video(w, j, true); /* an episode that records (videos: all) */
  sw_expert_destroy(&j->expert);
  sw_episode_destroy(&j->ep);
  w->finished++;
  if (outcome == MSG_OUTCOME_FAILURE && s_video_on_failure(j) && j->nactions > 0) {
    j->phase = S_REPLAY_WAIT; /* s_schedule_loads starts the replay once the task has a renderer */
    return;
  }
  j->phase = S_FINISHED;
  s_finished_line(w, j);
}

static bool s_is_model(const s_job_t *j) { return j->lease.policy == MSG_POLICY_MODEL; }

/* Episode options of a job. The expert reads the simulator's state, so cameras only for a video; a model
 * sees both cameras at the steps where it is asked for a chunk. A replay (for a video) is agentview only. */
static sw_episode_opts_t s_episode_opts(const s_job_t *j, bool record, bool replay) {
  bool model = s_is_model(j) && !replay;
  return (sw_episode_opts_t){
      .wait_steps = (int)j->lease.wait_steps,
      .max_steps = (int)j->lease.max_steps,
      .image_size = record || model ? (int)j->lease.image_size : 0,
      .record = record,
      .agentview_only = !model,
      .render_every = model ? (int)j->lease.replan_every : 0,
  };
}

/* Starts replaying a failed episode's actions with the camera on (for its video), on a task that has
 * its renderer; when it cannot, the RESULT goes without a video (the reason is printed). */
static void s_start_replay(s_worker_t *w, s_job_t *j, s_task_slot_t *slot) {
  char err[512] = "the task is not loaded";
  sw_episode_opts_t eo = s_episode_opts(j, true, true);
  if (slot && slot->t->renderer) j->ep = sw_episode_begin(slot->t, (int)j->lease.trial, &eo, err, sizeof err);
  if (!j->ep || j->ep->state != SW_EP_RUNNING) {
    fprintf(stderr, "rsd-sim-worker %s: no video for %s task %u trial %u: replay: %s\n", w->name, j->lease.variant,
            j->lease.task, j->lease.trial, j->ep ? j->ep->reason : err);
    sw_episode_destroy(&j->ep);
    j->phase = S_FINISHED;
    s_finished_line(w, j);
    return;
  }
  j->replayed = 0;
  j->phase = S_REPLAYING;
}

/* One replayed step (a wait step first, while the replay has some left); at the end the video is made (when
 * the replay ended as the episode did). */
static void s_replay_step(s_worker_t *w, s_job_t *j) {
  char err[512];
  bool ok;
  if (j->ep->waits_left) {
    ok = sw_episode_wait_step(j->ep, err, sizeof err) == 0;
  } else {
    const double *a = j->actions + (size_t)j->replayed * SW_ACTION_DIM;
    ok = j->replayed < j->nactions && sw_episode_step(j->ep, a, SW_ACTION_DIM, err, sizeof err) == 0;
    if (ok) j->replayed++;
  }
  bool done = !ok || j->ep->state != SW_EP_RUNNING || (!j->ep->waits_left && j->replayed == j->nactions);
  if (!done) return;
  if (ok && j->ep->state == SW_EP_MAX_STEPS && (uint32_t)j->ep->steps == j->steps) {
    s_video(w, j, true);
  } else {
    sw_apng_destroy(&j->apng);
    fprintf(stderr, "rsd-sim-worker %s: no video for %s task %u trial %u: the replay ended %s after %d steps, "
            "the episode failed after %u\n", w->name, j->lease.variant, j->lease.task, j->lease.trial,
            sw_ep_state_name(j->ep->state), j->ep->steps, j->steps);
  }
  sw_episode_destroy(&j->ep);
  free(j->actions);
  j->actions = NULL;
  j->nactions = 0;
  j->phase = S_FINISHED;
  s_finished_line(w, j);
}

/* After sw_episode_begin (rc -1: it failed with err) or a wait step (rc: its return): a failure ends the
 * episode as an infrastructure error; once no wait step is left, the policy gets ready for the first step
 * (the expert plans from the first observation). */
static void s_after_wait(s_worker_t *w, s_job_t *j, int rc, char *err, size_t errlen) {
  if (rc) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, err);
    return;
  }
  if (j->ep->state == SW_EP_INFRA_ERROR) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, j->ep->reason);
    return;
  }
  if (j->ep->waits_left) return;
  if (s_is_model(j)) sw_infer_init(&j->inf);
  else if (!(j->expert = sw_expert_new(j->ep, err, errlen))) s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, err);
}

/* Starts the episode of a job whose task is loaded: its wait steps are taken one per pass (s_step_all). */
static void s_start(s_worker_t *w, s_job_t *j, s_task_slot_t *slot) {
  char err[512];
  sw_episode_opts_t eo = s_episode_opts(j, s_records(j), false);
  j->ep = sw_episode_begin(slot->t, (int)j->lease.trial, &eo, err, sizeof err);
  j->phase = S_RUNNING;
  s_after_wait(w, j, j->ep ? 0 : -1, err, sizeof err);
}

/* Refuses a LEASE with an ERROR: the coordinator puts its episode back in the queue, no attempt counted. */
static void s_refuse(s_worker_t *w, const msg_t *m, msg_err_t code, const char *why) {
  msg_error_t what = {.code = code}, err;
  snprintf(what.text, sizeof what.text, "%s", why);
  if (msg_sock_send_error(w->sock, NULL, m, &what, &err) != MSG_OK)
    fprintf(stderr, "rsd-sim-worker %s: refusing lease %llu: %s\n", w->name, (unsigned long long)m->id, err.text);
}

static void s_on_lease(s_worker_t *w, const msg_t *m) {
  s_job_t *j = NULL;
  for (int i = 0; i < S_MAX_JOBS; i++) {
    const s_job_t *h = &w->jobs[i];
    if (h->used && h->lease_id == m->id && strcmp(h->lease.campaign, m->lease.campaign) == 0) {
      if (h->phase == S_FINISHED) /* its RESULT is on the way: the coordinator must not count it twice */
        s_refuse(w, m, MSG_ERR_OVERLOADED, "this worker finished that lease and is sending its RESULT");
      return; /* a LEASE we hold already */
    }
    if (!j && !h->used) j = &w->jobs[i];
  }
  char why[200];
  if (w->draining) {
    s_refuse(w, m, MSG_ERR_SHUTDOWN, "this worker is draining");
    return;
  }
  if (!j || s_active(w) >= (int)w->o->capacity) {
    snprintf(why, sizeof why, "worker %s holds %d leases (%d unfinished), its capacity is %u", w->name, s_held(w),
             s_active(w), w->o->capacity);
    s_refuse(w, m, MSG_ERR_OVERLOADED, why);
    return;
  }
  memset(j, 0, sizeof *j);
  j->used = true;
  j->lease_id = m->id;
  j->lease = m->lease;
  j->start_ms = s_now_ms();
  j->phase = S_LOADING;
  if (s_is_model(j) && !w->infer_sock) {
    snprintf(why, sizeof why, "policy model needs the inference broker, and the coordinator's WELCOME named none%s",
             w->broker[0] ? " that this worker could connect to" : "");
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, why);
  }
}

/* Connects the DEALER to the broker that WELCOME named (again when it changed). */
static void s_connect_broker(s_worker_t *w, const char *endpoint) {
  if (w->infer_sock && strcmp(w->broker, endpoint) == 0) return;
  if (w->infer_sock) zpoller_remove(w->poller, msg_sock_zsock(w->infer_sock));
  msg_sock_destroy(&w->infer_sock);
  snprintf(w->broker, sizeof w->broker, "%s", endpoint);
  msg_error_t err;
  msg_sock_opts_t so = s_sock_opts(w);
  if (!(w->infer_sock = msg_sock_new(ZMQ_DEALER, endpoint, false, &so, NULL, &err))) {
    fprintf(stderr, "rsd-sim-worker %s: cannot connect to the inference broker %s: %s\n", w->name, endpoint, err.text);
    return;
  }
  zpoller_add(w->poller, msg_sock_zsock(w->infer_sock));
}

static void s_on_welcome(s_worker_t *w, const msg_t *m) {
  if (m->id != w->hello_id) return; /* the answer to an earlier HELLO of ours */
  w->welcomed = true;
  w->heartbeat_ms = m->welcome.heartbeat_ms;
  w->liveness = m->welcome.liveness;
  w->worker_id = m->welcome.worker_id;
  w->infer_seq = 0;
  if (m->welcome.has_broker) s_connect_broker(w, m->welcome.broker);
  if (!m->welcome.has_campaign) return;
  if (w->campaign[0] && strcmp(w->campaign, m->welcome.campaign) != 0) {
    int dropped = 0;
    for (int i = 0; i < S_MAX_JOBS; i++)
      if (w->jobs[i].used && strcmp(w->jobs[i].lease.campaign, m->welcome.campaign) != 0) {
        s_job_free(&w->jobs[i]);
        dropped++;
      }
    fprintf(stderr, "rsd-sim-worker %s: the coordinator now serves campaign %s, not %s: %d results dropped\n", w->name,
            m->welcome.campaign, w->campaign, dropped);
  }
  snprintf(w->campaign, sizeof w->campaign, "%s", m->welcome.campaign);
}

static void s_on_message(s_worker_t *w, msg_in_t *in) {
  const msg_t *m = &in->msg;
  w->last_rx_ms = s_now_ms();
  if (m->type == MSG_WELCOME) {
    s_on_welcome(w, m);
    return;
  }
  if (m->type == MSG_ERROR && m->error.code == MSG_ERR_VERSION) { /* never retried with the same version */
    snprintf(w->fatal, sizeof w->fatal, "the coordinator speaks another protocol version: %s", m->error.text);
    return;
  }
  if (!w->welcomed) return; /* the rest belongs to a session that is not open (yet), ERROR 21 included */
  switch (m->type) {
    case MSG_LEASE:
      s_on_lease(w, m);
      break;
    case MSG_ACK:
      for (int i = 0; i < S_MAX_JOBS; i++) {
        s_job_t *j = &w->jobs[i];
        if (j->used && j->phase == S_FINISHED && j->lease_id == m->id) {
          w->stored++;
          s_job_free(j);
        }
      }
      break;
    case MSG_ERROR:
      fprintf(stderr, "rsd-sim-worker %s: coordinator error %u: %s\n", w->name, m->error.code, m->error.text);
      if (m->error.code == MSG_ERR_UNEXPECTED)
        s_rejoin(w, "the coordinator does not know this worker"); /* it restarted, or declared us dead */
      break;
    case MSG_DRAIN:
      w->draining = true;
      break;
    default:
      break; /* HEARTBEAT: liveness is noted above; BYE is handled by the caller */
  }
}

static void s_heartbeat(s_worker_t *w) {
  msg_t hb;
  msg_init(&hb, MSG_HEARTBEAT, ++w->seq);
  hb.heartbeat.has_leases = true;
  uint32_t busy = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) {
    const s_job_t *j = &w->jobs[i];
    if (!j->used) continue;
    if (j->phase != S_FINISHED) busy++;
    if (hb.heartbeat.leases_count < MSG_MAX_LEASES) hb.heartbeat.leases[hb.heartbeat.leases_count++] = j->lease_id;
  }
  hb.heartbeat.has_busy = true;
  hb.heartbeat.busy = busy;
  s_send(w, &hb);
}

/* Heartbeats when one is due (in a live session): called between episode steps too, since a pass over
 * many episodes that render can take longer than the coordinator's liveness window. */
static void s_heartbeat_if_due(s_worker_t *w) {
  int64_t now = s_now_ms();
  if (!w->welcomed || now - w->last_hb_ms < w->heartbeat_ms) return;
  w->last_hb_ms = now;
  s_heartbeat(w);
}

/* A task slot no unfinished job uses, to make room (-1: none). */
static int s_unused_slot(const s_worker_t *w) {
  for (int k = 0; k < w->ntasks; k++) {
    bool used = w->tasks[k].renderer_busy;
    for (int i = 0; i < S_MAX_JOBS && !used; i++) {
      const s_job_t *j = &w->jobs[i];
      used = j->used && j->phase != S_FINISHED && (int)j->lease.task == w->tasks[k].task &&
             strcmp(j->lease.suite, w->tasks[k].suite) == 0;
    }
    if (!used) return k;
  }
  return -1;
}

/* Hands loaded tasks to waiting jobs and starts the next load (a task, or a loaded task's renderer). */
static void s_schedule_loads(s_worker_t *w) {
  s_loader_t *l = &w->loader;
  if (l->busy && atomic_load(&l->done)) {
    pthread_join(l->thread, NULL);
    l->busy = false;
    if (l->existing) l->existing->renderer_busy = false;
    if (l->failed) {
      snprintf(w->fatal, sizeof w->fatal, "cannot %s task %d of %s from %s: %s",
               l->existing || l->result ? "make the renderer of" : "load", l->task, l->suite, l->data_dir, l->error);
      sw_task_destroy(&l->result);
      return;
    }
    if (!l->existing) {
      int k = w->ntasks < S_MAX_TASKS ? w->ntasks++ : s_unused_slot(w);
      if (k < 0) {
        sw_task_destroy(&l->result); /* every slot busy: loaded again when a slot frees */
      } else {
        sw_task_destroy(&w->tasks[k].t);
        memset(&w->tasks[k], 0, sizeof w->tasks[k]);
        snprintf(w->tasks[k].suite, sizeof w->tasks[k].suite, "%s", l->suite);
        w->tasks[k].task = l->task;
        w->tasks[k].t = l->result;
        l->result = NULL;
      }
    }
  }
  for (int i = 0; i < S_MAX_JOBS && !w->fatal[0]; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || (j->phase != S_LOADING && j->phase != S_REPLAY_WAIT)) continue;
    s_task_slot_t *slot = s_find_task(w, j->lease.suite, (int)j->lease.task);
    bool replay = j->phase == S_REPLAY_WAIT, images = replay || s_records(j) || s_is_model(j);
    if (replay && !slot) {
      s_start_replay(w, j, NULL); /* cannot happen (the slot stays while the job uses it): no video */
      continue;
    }
    if (slot) {
      if (slot->renderer_busy) continue;
      if (!images || slot->t->renderer) {
        if (replay) s_start_replay(w, j, slot);
        else s_start(w, j, slot);
        s_heartbeat_if_due(w);
        continue;
      }
      if (l->busy) continue;
      l->existing = slot; /* the task is here; its renderer is not */
      l->task = slot->task;
      snprintf(l->suite, sizeof l->suite, "%s", slot->suite);
      slot->renderer_busy = true;
    } else {
      if (l->busy) continue;
      l->existing = NULL;
      snprintf(l->suite, sizeof l->suite, "%s", j->lease.suite);
      l->task = (int)j->lease.task;
      l->renderer = images;
    }
    snprintf(l->data_dir, sizeof l->data_dir, "%s", w->o->data_dir);
    l->result = NULL;
    l->failed = false;
    l->error[0] = '\0';
    atomic_store(&l->done, 0);
    if (pthread_create(&l->thread, NULL, s_load_main, l) != 0) {
      if (l->existing) l->existing->renderer_busy = false;
      snprintf(w->fatal, sizeof w->fatal, "cannot start the task loader thread: %s", strerror(errno));
      return;
    }
    l->busy = true;
  }
}

/* Keeps an action for a replay (video_on_failure). Returns 0, or -1 when out of memory. */
static int s_keep_action(s_job_t *j, const double *a) {
  if (j->nactions == j->actions_cap) {
    int cap = j->actions_cap ? 2 * j->actions_cap : 256;
    double *p = realloc(j->actions, sizeof *p * SW_ACTION_DIM * (size_t)cap);
    if (!p) return -1;
    j->actions = p;
    j->actions_cap = cap;
  }
  memcpy(j->actions + (size_t)j->nactions++ * SW_ACTION_DIM, a, sizeof *a * SW_ACTION_DIM);
  return 0;
}

/* Asks the broker for j's next chunk, from the observation the episode just sampled. */
static void s_send_infer(s_worker_t *w, s_job_t *j) {
  char err[512];
  float proprio[SW_PROPRIO_DIM];
  msg_t q;
  uint64_t id = w->worker_id << 32 | ++w->infer_seq;
  if (sw_infer_build(&q, id, &j->lease, j->ep->task->scene->instruction, j->ep, w->o->infer_timeout_ms, proprio, err,
                     sizeof err)) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, err);
    return;
  }
  msg_error_t e;
  if (msg_sock_send(w->infer_sock, NULL, &q, &e) != MSG_OK) {
    char why[700];
    snprintf(why, sizeof why, "INFER %llu to the broker %s not sent: %s", (unsigned long long)id, w->broker, e.text);
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
    return;
  }
  j->inf.pending = id;
  j->inf.sent_us = zclock_usecs();
}

/* An ACTION or ERROR from the broker: the answer to one episode's INFER. Answers to requests no episode
 * waits for (a late answer after a deadline, a duplicate) are ignored (protocol 8.2 rule 8). */
static void s_on_infer_answer(s_worker_t *w, const msg_t *m) {
  s_job_t *j = NULL;
  for (int i = 0; i < S_MAX_JOBS && !j; i++)
    if (w->jobs[i].used && w->jobs[i].phase == S_RUNNING && s_is_model(&w->jobs[i]) && w->jobs[i].inf.pending == m->id)
      j = &w->jobs[i];
  if (!j) return;
  char err[600], why[1400];
  if (m->type == MSG_ERROR) {
    snprintf(why, sizeof why, "INFER %llu at step %d answered with ERROR %u: %s", (unsigned long long)m->id,
             j->ep->steps, m->error.code, m->error.text);
    j->error_code = m->error.code;
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
  } else if (m->type != MSG_ACTION) {
    snprintf(why, sizeof why, "the broker answered INFER %llu with %s", (unsigned long long)m->id,
             msg_type_name(m->type));
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
  } else if (sw_infer_take_action(&j->inf, m, j->lease.replan_every, zclock_usecs() - j->inf.sent_us, err,
                                  sizeof err)) {
    snprintf(why, sizeof why, "at step %d: %s", j->ep->steps, err);
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
  }
}

/* Takes every ACTION or ERROR waiting on the broker socket, without blocking. Called between episode
 * steps too: an answer is taken (and its round trip measured) when it arrives, not after a whole pass of
 * steps and renders of the other episodes. */
static void s_drain_infer(s_worker_t *w) {
  if (!w->infer_sock) return;
  zsock_t *z = msg_sock_zsock(w->infer_sock);
  while (zsock_events(z) & ZMQ_POLLIN) {
    msg_in_t *in = NULL;
    msg_error_t err;
    msg_err_t e = msg_sock_recv(w->infer_sock, &in, &err);
    if (e == MSG_OK) s_on_infer_answer(w, &in->msg);
    else if (in) fprintf(stderr, "rsd-sim-worker %s: refused a message from the broker: %s\n", w->name, err.text);
    msg_in_destroy(&in);
    if (e == MSG_ERR_TRANSPORT) break;
  }
}

/* After a policy step: the episode goes on, or ends with its outcome. */
static void s_after_step(s_worker_t *w, s_job_t *j) {
  char err[512];
  switch (j->ep->state) {
    case SW_EP_RUNNING: break;
    case SW_EP_SUCCESS: s_finish(w, j, MSG_OUTCOME_SUCCESS, (uint32_t)j->ep->steps, NULL); break;
    case SW_EP_MAX_STEPS: s_finish(w, j, MSG_OUTCOME_FAILURE, (uint32_t)j->ep->steps, NULL); break;
    case SW_EP_INFRA_ERROR:
      snprintf(err, sizeof err, "%s", j->ep->reason);
      s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, err);
      break;
  }
}

/* Executes one action: keeps it for a replay when asked, steps the episode. Returns 0, or -1 when the
 * episode ended as an infrastructure error. */
static int s_act(s_worker_t *w, s_job_t *j, const double *a, const char *who) {
  char err[512], why[700];
  if (s_video_on_failure(j) && s_keep_action(j, a)) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, "out of memory keeping the actions for a replay");
    return -1;
  }
  if (sw_episode_step(j->ep, a, SW_ACTION_DIM, err, sizeof err)) {
    snprintf(why, sizeof why, "the %s's action was refused: %s", who, err);
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
    return -1;
  }
  return 0;
}

/* One step of a model-policy episode: the next action of its chunk; or, with the chunk spent, the INFER
 * for the next one (sent right after the step that spent it, so the GPU decodes while others step). */
static void s_model_step(s_worker_t *w, s_job_t *j) {
  if (!sw_infer_has_action(&j->inf)) {
    if (!j->inf.pending) {
      s_send_infer(w, j);
    } else if (zclock_usecs() - j->inf.sent_us > (int64_t)w->o->infer_timeout_ms * 1000) {
      char why[600];
      snprintf(why, sizeof why, "no answer to INFER %llu (step %d) from the broker %s within %u ms",
               (unsigned long long)j->inf.pending, j->ep->steps, w->broker, w->o->infer_timeout_ms);
      s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
    }
    return;
  }
  double a[SW_ACTION_DIM];
  sw_infer_next_action(&j->inf, a);
  if (s_act(w, j, a, "model")) return;
  s_after_step(w, j);
  if (j->phase == S_RUNNING && !sw_infer_has_action(&j->inf)) s_send_infer(w, j);
}

/* One control step for every running or replaying episode. */
static void s_step_all(s_worker_t *w) {
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || (j->phase != S_RUNNING && j->phase != S_REPLAYING)) continue;
    if (w->o->stop && *w->o->stop) break; /* leave promptly: the coordinator requeues what we hold */
    if (j->phase == S_REPLAYING) {
      s_replay_step(w, j);
    } else if (j->ep->waits_left) {
      char err[512];
      s_after_wait(w, j, sw_episode_wait_step(j->ep, err, sizeof err), err, sizeof err);
    } else if (s_is_model(j)) {
      s_model_step(w, j);
      s_drain_infer(w);
    } else {
      double a[SW_ACTION_DIM];
      sw_expert_act(j->expert, j->ep, a);
      if (s_act(w, j, a, "expert") == 0) s_after_step(w, j);
    }
    s_video(w, j, false); /* the frame this step recorded, if any (no-op once the episode ended) */
    s_heartbeat_if_due(w);
  }
}

/* RESULTs not yet ACKed go out, again every liveness x heartbeat (protocol section 8.1). */
static void s_send_results(s_worker_t *w, int64_t now) {
  if (!w->welcomed) return;
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || j->phase != S_FINISHED || (j->sent_ms && now - j->sent_ms < s_window_ms(w))) continue;
    msg_t r;
    msg_error_t err;
    msg_init(&r, MSG_RESULT, j->lease_id);
    snprintf(r.result.campaign, sizeof r.result.campaign, "%s", j->lease.campaign);
    snprintf(r.result.variant, sizeof r.result.variant, "%s", j->lease.variant);
    r.result.task = j->lease.task;
    r.result.trial = j->lease.trial;
    r.result.attempt = j->lease.attempt;
    r.result.outcome = j->outcome;
    r.result.steps = j->steps;
    r.result.wall_ms = j->wall_ms;
    if (j->error_code) {
      r.result.has_error_code = true;
      r.result.error_code = j->error_code;
    }
    if (j->reason[0]) {
      r.result.has_reason = true;
      snprintf(r.result.reason, sizeof r.result.reason, "%s", j->reason);
    }
    r.result.has_worker = true;
    snprintf(r.result.worker, sizeof r.result.worker, "%s", w->name);
    char ferr[300];
    if (s_is_model(j) && sw_infer_fill_result(&j->inf, &r, ferr, sizeof ferr))
      fprintf(stderr, "rsd-sim-worker %s: %s\n", w->name, ferr); /* the RESULT goes without its latencies */
    if (j->video) {
      uint32_t shape[1] = {(uint32_t)j->video_len};
      if (msg_add_frame(&r, "video", MSG_DTYPE_U8, 1, shape, j->video, j->video_len, &err) != MSG_OK) {
        fprintf(stderr, "rsd-sim-worker %s: video dropped from the result: %s\n", w->name, err.text);
        r.nframes = 0;
      }
    }
    s_send(w, &r);
    j->sent_ms = now;
  }
}

static void s_bye(s_worker_t *w, const char *reason) {
  msg_t b;
  msg_init(&b, MSG_BYE, ++w->seq);
  b.bye.has_reason = true;
  snprintf(b.bye.reason, sizeof b.bye.reason, "%.*s", (int)sizeof b.bye.reason - 1, reason);
  s_send(w, &b);
}

int sw_worker_run(const sw_worker_opts_t *o) {
  if (o->capacity < 1 || o->capacity > S_MAX_JOBS) {
    fprintf(stderr, "rsd-sim-worker: capacity %u out of range (1..%d)\n", o->capacity, S_MAX_JOBS);
    return 1;
  }
  struct stat st;
  int st_rc = stat(o->data_dir, &st);
  if (st_rc != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "rsd-sim-worker: scene data directory %s: %s (run ops/setup.sh, or give --data DIR)\n",
            o->data_dir, st_rc != 0 ? strerror(errno) : "not a directory");
    return 1;
  }
  s_worker_t *w = calloc(1, sizeof *w);
  if (!w) {
    fprintf(stderr, "rsd-sim-worker: out of memory\n");
    return 1;
  }
  w->o = o;
  if (o->name) {
    snprintf(w->name, sizeof w->name, "%s", o->name);
  } else {
    char host[40] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(w->name, sizeof w->name, "sim-%s-%d", host, (int)getpid());
  }
  snprintf(w->endpoint, sizeof w->endpoint, "%s", o->coordinator);
  w->heartbeat_ms = 1000;
  w->liveness = 3;
  w->last_rx_ms = s_now_ms();
  int rc = 0;
  const char *leave = NULL;
  if (s_hello(w)) leave = "no socket";
  msg_error_t err;
  while (!leave) {
    if (o->stop && *o->stop) {
      s_bye(w, "stopped by a signal");
      leave = "signal";
      rc = 128 + (int)*o->stop;
      break;
    }
    if (w->fatal[0]) {
      s_bye(w, w->fatal);
      leave = "fatal error";
      rc = 1;
      break;
    }
    bool work = false; /* an episode can step now (not one that only waits for its ACTION) */
    for (int i = 0; i < S_MAX_JOBS && !work; i++) {
      const s_job_t *j = &w->jobs[i];
      work = j->used && (j->phase == S_REPLAYING ||
                         (j->phase == S_RUNNING && !(s_is_model(j) && j->inf.pending)));
    }
    /* take every waiting message; wait a little only when there is nothing to step */
    for (int waited = 0;; waited = 1) {
      void *ready = zpoller_wait(w->poller, work || waited ? 0 : 20);
      if (!ready) break; /* nothing waiting, or a signal (the top of the loop looks at *stop) */
      msg_in_t *in = NULL;
      if (w->infer_sock && ready == msg_sock_zsock(w->infer_sock)) {
        msg_err_t e = msg_sock_recv(w->infer_sock, &in, &err);
        if (e == MSG_OK) s_on_infer_answer(w, &in->msg);
        else if (in) fprintf(stderr, "rsd-sim-worker %s: refused a message from the broker: %s\n", w->name, err.text);
        msg_in_destroy(&in);
        continue;
      }
      msg_err_t e = msg_sock_recv(w->sock, &in, &err);
      if (e == MSG_OK && in->msg.type == MSG_BYE && w->welcomed) {
        leave = "the coordinator said BYE";
      } else if (e == MSG_OK) {
        s_on_message(w, in);
      } else if (in) {
        fprintf(stderr, "rsd-sim-worker %s: refused a message from the coordinator: %s\n", w->name, err.text);
      }
      msg_in_destroy(&in);
      if (leave || w->fatal[0]) break;
    }
    if (leave) break;
    /* silence is judged right after reading the socket, never after a long pass of episode steps; one new
     * session per liveness window at most */
    int64_t polled = s_now_ms();
    if (polled - w->last_rx_ms > s_window_ms(w) && polled - w->last_hello_ms > s_window_ms(w))
      s_rejoin(w, "the coordinator went quiet");
    s_schedule_loads(w);
    s_step_all(w);
    s_send_results(w, s_now_ms());
    s_heartbeat_if_due(w);
    if (w->draining && s_held(w) == 0) {
      s_bye(w, "drained");
      leave = "drained";
    }
  }
  if (w->fatal[0]) fprintf(stderr, "rsd-sim-worker %s: %s\n", w->name, w->fatal);
  if (o->verbose)
    fprintf(stderr, "rsd-sim-worker %s: leaving (%s): %d episodes finished, %d results stored\n", w->name, leave,
            w->finished, w->stored);
  if (w->loader.busy) {
    pthread_join(w->loader.thread, NULL);
    sw_task_destroy(&w->loader.result);
  }
  for (int i = 0; i < S_MAX_JOBS; i++) s_job_free(&w->jobs[i]);
  for (int i = 0; i < w->ntasks; i++) sw_task_destroy(&w->tasks[i].t);
  zpoller_destroy(&w->poller);
  msg_sock_destroy(&w->infer_sock);
  msg_sock_destroy(&w->sock);
  free(w);
  return rc;
}
