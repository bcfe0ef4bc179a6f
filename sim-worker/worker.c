/* worker.c: the sim worker's coordinator client (see worker.h).
 *
 * The loop, one pass at a time: take every waiting message (WELCOME, LEASE, ACK, HEARTBEAT, BYE, DRAIN,
 * ERROR), start the episodes whose task is loaded, give each running episode one control step, send the
 * RESULTs that are due, and heartbeat. Only the loader thread works outside it, on one task at a time;
 * it hands the loaded task back through s_loader_t, guarded by `done`.
 *
 * When the coordinator has been silent for liveness x heartbeat, the worker says HELLO again (a
 * restarted coordinator forgets its peers) and keeps what it holds: finished episodes are re-sent until
 * an ACK comes, whichever coordinator process stores them. */
#include "worker.h"

#include <czmq.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "episode.h"
#include "expert.h"
#include "msg.h"
#include "png.h"

#define S_MAX_JOBS 64
#define S_MAX_TASKS 64
#define S_RESEND_MS 2000
#define S_VIDEO_FPS 10 /* videos keep every other control step (20 Hz) */
#define S_SOFTWARE "rsd-sim-worker 0.1.0"

typedef enum { S_LOADING, S_RUNNING, S_FINISHED } s_phase_t;

/* One lease, from LEASE to ACK. */
typedef struct {
  bool used;
  uint64_t lease_id;
  msg_lease_body_t lease;
  s_phase_t phase;
  sw_episode_t *ep;     /* owned while running */
  sw_expert_t *expert;  /* owned while running */
  int64_t start_ms;
  msg_outcome_t outcome;
  uint32_t steps;
  uint64_t wall_ms;
  char reason[MSG_TEXT_MAX + 1];
  uint8_t *video;       /* owned: the APNG file, or NULL */
  size_t video_len;
  int64_t sent_ms;      /* last RESULT sent (0: never) */
} s_job_t;

typedef struct {
  char suite[MSG_NAME_MAX + 1];
  int task;
  sw_task_t *t;         /* owned; NULL when it failed to load (then `error`) */
  char error[512];
  bool renderer_busy;   /* the loader thread is making t's renderer: do not touch t->renderer */
  char renderer_error[512]; /* why the renderer could not be made ("" if it was, or was not tried) */
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
  char error[512];
} s_loader_t;

typedef struct {
  const sw_worker_opts_t *o;
  char name[MSG_NAME_MAX + 1];
  msg_sock_t *sock;
  s_job_t jobs[S_MAX_JOBS];
  s_task_slot_t tasks[S_MAX_TASKS];
  int ntasks;
  s_loader_t loader;
  uint32_t heartbeat_ms, liveness;
  int64_t last_rx_ms, last_hb_ms, last_hello_ms;
  bool welcomed, draining;
  uint64_t seq;
  int finished, stored;
} s_worker_t;

static int64_t s_now_ms(void) { return zclock_mono(); }

/* The loader thread: a task, and its renderer when asked (made here, released for the main thread). */
static void *s_load_main(void *arg) {
  s_loader_t *l = arg;
  if (l->existing) {
    if (sw_task_make_renderer(l->existing->t, l->error, sizeof l->error)) {
      snprintf(l->existing->renderer_error, sizeof l->existing->renderer_error, "%s", l->error);
    }
  } else {
    l->result = sw_task_load(l->data_dir, l->suite, l->task, l->error, sizeof l->error);
    if (l->result && l->renderer) sw_task_make_renderer(l->result, l->error, sizeof l->error); /* error kept */
  }
  atomic_store(&l->done, 1);
  return NULL;
}

/* True when the job's episode renders camera images (a video now; the model's observations later). */
static bool s_wants_images(const s_job_t *j) { return j->lease.has_record_video && j->lease.record_video; }

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

/* Episodes running or waiting for their task (finished ones only wait for their ACK). */
static int s_active(const s_worker_t *w) {
  int n = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) n += w->jobs[i].used && w->jobs[i].phase != S_FINISHED;
  return n;
}

static void s_job_free(s_job_t *j);
static void s_hello(s_worker_t *w);

/* Says HELLO again to a coordinator that lost us (it restarted, or declared us dead): it has put our
 * leases back in its queue, so the episodes still running here are dropped (the coordinator leases them
 * again, to us or another worker) and only finished ones are kept, their RESULTs re-sent until ACKed. */
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
  w->welcomed = false;
  s_hello(w);
}

static void s_hello(s_worker_t *w) {
  msg_t h;
  msg_init(&h, MSG_HELLO, (uint64_t)getpid() << 16 | (w->seq++ & 0xffff));
  h.hello.role = MSG_ROLE_SIM;
  snprintf(h.hello.name, sizeof h.hello.name, "%s", w->name);
  h.hello.capacity = w->o->capacity;
  snprintf(h.hello.software, sizeof h.hello.software, "%s", S_SOFTWARE);
  s_send(w, &h);
  w->last_hello_ms = s_now_ms();
}

/* Ends a job with an outcome (the episode and expert are freed; the RESULT goes out next pass). */
static void s_finish(s_worker_t *w, s_job_t *j, msg_outcome_t outcome, uint32_t steps, const char *reason) {
  j->phase = S_FINISHED;
  j->outcome = outcome;
  j->steps = steps;
  j->wall_ms = (uint64_t)(s_now_ms() - j->start_ms);
  snprintf(j->reason, sizeof j->reason, "%s", reason ? reason : "");
  if (j->ep && j->lease.has_record_video && j->lease.record_video && j->ep->nframes > 0) {
    /* every other frame: 10 frames per second of a 20 Hz episode */
    int size = j->ep->opts.image_size, n = (j->ep->nframes + 1) / 2;
    size_t img = (size_t)size * (size_t)size * 3;
    for (int i = 1; i < n; i++) memmove(j->ep->frames + img * (size_t)i, j->ep->frames + img * (size_t)(2 * i), img);
    char err[256];
    if (sw_apng_encode(j->ep->frames, n, size, size, S_VIDEO_FPS, &j->video, &j->video_len, err, sizeof err))
      fprintf(stderr, "rsd-sim-worker %s: video of %s task %u trial %u not made: %s\n", w->name, j->lease.variant,
              j->lease.task, j->lease.trial, err);
  }
  sw_expert_destroy(&j->expert);
  sw_episode_destroy(&j->ep);
  w->finished++;
  if (w->o->verbose)
    fprintf(stderr, "rsd-sim-worker %s: %s task %u trial %u: %s after %u steps (%llu ms)%s%s\n", w->name,
            j->lease.variant, j->lease.task, j->lease.trial, msg_outcome_names[outcome], steps,
            (unsigned long long)j->wall_ms, j->reason[0] ? ": " : "", j->reason);
}

static void s_job_free(s_job_t *j) {
  sw_expert_destroy(&j->expert);
  sw_episode_destroy(&j->ep);
  free(j->video);
  memset(j, 0, sizeof *j);
}

/* Starts the episode of a job whose task is loaded (or ends the job when it cannot run). */
static void s_start(s_worker_t *w, s_job_t *j, s_task_slot_t *slot) {
  char err[512];
  if (!slot->t) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, slot->error);
    return;
  }
  const msg_lease_body_t *l = &j->lease;
  bool video = s_wants_images(j);
  if (video && slot->renderer_error[0]) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, slot->renderer_error);
    return;
  }
  sw_episode_opts_t eo = {
      .wait_steps = (int)l->wait_steps,
      .max_steps = (int)l->max_steps,
      /* the expert reads the simulator's state: images only for a video */
      .image_size = video ? (int)l->image_size : 0,
      .record = video,
      .agentview_only = true, /* the expert acts on the simulator's state; the video shows agentview */
  };
  j->ep = sw_episode_new(slot->t, (int)l->trial, &eo, err, sizeof err);
  if (!j->ep) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, err);
    return;
  }
  if (j->ep->state == SW_EP_INFRA_ERROR) {
    snprintf(err, sizeof err, "%s", j->ep->reason);
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, err);
    return;
  }
  if (!(j->expert = sw_expert_new(j->ep, err, sizeof err))) {
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, err);
    return;
  }
  j->phase = S_RUNNING;
}

static int s_active(const s_worker_t *w);

/* Refuses a LEASE with ERROR 23 (no capacity): the coordinator puts its episode back in the queue. */
static void s_refuse(s_worker_t *w, const msg_t *m, const char *why) {
  msg_error_t what = {.code = MSG_ERR_OVERLOADED}, err;
  snprintf(what.text, sizeof what.text, "%s", why);
  if (msg_sock_send_error(w->sock, NULL, m, &what, &err) != MSG_OK)
    fprintf(stderr, "rsd-sim-worker %s: refusing lease %llu: %s\n", w->name, (unsigned long long)m->id, err.text);
}

static void s_on_lease(s_worker_t *w, const msg_t *m) {
  s_job_t *j = NULL;
  for (int i = 0; i < S_MAX_JOBS; i++) {
    if (w->jobs[i].used && w->jobs[i].lease_id == m->id) return; /* a LEASE we hold already */
    if (!j && !w->jobs[i].used) j = &w->jobs[i];
  }
  char why[160];
  if (!j || s_active(w) >= (int)w->o->capacity) {
    snprintf(why, sizeof why, "worker %s runs %d episodes, its capacity is %u", w->name, s_active(w),
             w->o->capacity);
    s_refuse(w, m, why);
    return;
  }
  memset(j, 0, sizeof *j);
  j->used = true;
  j->lease_id = m->id;
  j->lease = m->lease;
  j->start_ms = s_now_ms();
  j->phase = S_LOADING;
  if (m->lease.policy != MSG_POLICY_EXPERT) {
    char why[256];
    snprintf(why, sizeof why, "policy '%s' needs the inference path, which this sim worker (%s) does not serve yet",
             msg_policy_names[m->lease.policy], S_SOFTWARE);
    s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, why);
  }
}

static void s_on_message(s_worker_t *w, msg_in_t *in) {
  const msg_t *m = &in->msg;
  w->last_rx_ms = s_now_ms();
  switch (m->type) {
    case MSG_WELCOME:
      w->welcomed = true;
      w->heartbeat_ms = m->welcome.heartbeat_ms;
      w->liveness = m->welcome.liveness;
      break;
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
      /* most likely a coordinator that does not know us (it restarted): introduce ourselves again */
      fprintf(stderr, "rsd-sim-worker %s: coordinator error %u: %s\n", w->name, m->error.code, m->error.text);
      if (m->error.code == MSG_ERR_UNEXPECTED && s_now_ms() - w->last_hello_ms > 500)
        s_rejoin(w, "the coordinator does not know this worker");
      break;
    case MSG_DRAIN:
      w->draining = true;
      break;
    default:
      break; /* HEARTBEAT: liveness is noted above; BYE is handled by the caller */
  }
}

static void s_heartbeat(s_worker_t *w);

/* Heartbeats when one is due: called between episode steps too, since a pass over many episodes that
 * render can take longer than the coordinator's liveness window. */
static void s_heartbeat_if_due(s_worker_t *w) {
  int64_t now = s_now_ms();
  if (now - w->last_hb_ms < w->heartbeat_ms) return;
  w->last_hb_ms = now;
  s_heartbeat(w);
}

/* Hands loaded tasks to waiting jobs and starts the next load (a task, or a loaded task's renderer). */
static void s_schedule_loads(s_worker_t *w) {
  s_loader_t *l = &w->loader;
  if (l->busy && atomic_load(&l->done)) {
    pthread_join(l->thread, NULL);
    l->busy = false;
    if (l->existing) {
      l->existing->renderer_busy = false;
    } else if (w->ntasks < S_MAX_TASKS) {
      s_task_slot_t *slot = &w->tasks[w->ntasks++];
      memset(slot, 0, sizeof *slot);
      snprintf(slot->suite, sizeof slot->suite, "%s", l->suite);
      slot->task = l->task;
      slot->t = l->result;
      if (l->result && l->renderer && !l->result->renderer)
        snprintf(slot->renderer_error, sizeof slot->renderer_error, "%s", l->error);
      else
        snprintf(slot->error, sizeof slot->error, "%s", l->error);
    } else {
      sw_task_destroy(&l->result);
    }
  }
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || j->phase != S_LOADING) continue;
    s_task_slot_t *slot = s_find_task(w, j->lease.suite, (int)j->lease.task);
    bool images = s_wants_images(j);
    if (slot) {
      if (slot->renderer_busy) continue;
      if (!images || !slot->t || slot->t->renderer || slot->renderer_error[0]) {
        s_start(w, j, slot); /* a fraction of a second (the wait steps), more under sanitizers */
        s_heartbeat_if_due(w);
        continue;
      }
      if (l->busy) continue;
      l->existing = slot; /* the task is here; its renderer is not */
      slot->renderer_busy = true;
    } else {
      if (l->busy) continue;
      if (w->ntasks == S_MAX_TASKS) {
        s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, "this worker holds its maximum of 64 loaded tasks");
        continue;
      }
      l->existing = NULL;
      snprintf(l->data_dir, sizeof l->data_dir, "%s", w->o->data_dir);
      snprintf(l->suite, sizeof l->suite, "%s", j->lease.suite);
      l->task = (int)j->lease.task;
      l->renderer = images;
    }
    l->result = NULL;
    l->error[0] = '\0';
    atomic_store(&l->done, 0);
    if (pthread_create(&l->thread, NULL, s_load_main, l) != 0) {
      if (l->existing) l->existing->renderer_busy = false;
      s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, 0, "cannot start the task loader thread");
      continue;
    }
    l->busy = true;
  }
}

/* One control step for every running episode. Returns how many stepped. */
static int s_step_all(s_worker_t *w) {
  int n = 0;
  char err[512];
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || j->phase != S_RUNNING) continue;
    if (w->o->stop && *w->o->stop) break; /* leave promptly: the coordinator requeues what we hold */
    double a[SW_ACTION_DIM];
    sw_expert_act(j->expert, j->ep, a);
    if (sw_episode_step(j->ep, a, SW_ACTION_DIM, err, sizeof err)) {
      char why[700];
      snprintf(why, sizeof why, "the expert's action was refused: %s", err);
      s_finish(w, j, MSG_OUTCOME_INFRA_ERROR, (uint32_t)j->ep->steps, why);
      continue;
    }
    n++;
    s_heartbeat_if_due(w);
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
  return n;
}

static void s_send_results(s_worker_t *w, int64_t now) {
  for (int i = 0; i < S_MAX_JOBS; i++) {
    s_job_t *j = &w->jobs[i];
    if (!j->used || j->phase != S_FINISHED || (j->sent_ms && now - j->sent_ms < S_RESEND_MS)) continue;
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
    if (j->reason[0]) {
      r.result.has_reason = true;
      snprintf(r.result.reason, sizeof r.result.reason, "%s", j->reason);
    }
    r.result.has_worker = true;
    snprintf(r.result.worker, sizeof r.result.worker, "%s", w->name);
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

static int s_held(const s_worker_t *w) {
  int n = 0;
  for (int i = 0; i < S_MAX_JOBS; i++) n += w->jobs[i].used;
  return n;
}

static void s_bye(s_worker_t *w, const char *reason) {
  msg_t b;
  msg_init(&b, MSG_BYE, ++w->seq);
  b.bye.has_reason = true;
  snprintf(b.bye.reason, sizeof b.bye.reason, "%s", reason);
  s_send(w, &b);
}

int sw_worker_run(const sw_worker_opts_t *o) {
  if (o->capacity < 1 || o->capacity > S_MAX_JOBS) {
    fprintf(stderr, "rsd-sim-worker: capacity %u out of range (1..%d)\n", o->capacity, S_MAX_JOBS);
    return 1;
  }
  s_worker_t *w = calloc(1, sizeof *w);
  if (!w) return 1;
  w->o = o;
  if (o->name) {
    snprintf(w->name, sizeof w->name, "%s", o->name);
  } else {
    char host[40] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(w->name, sizeof w->name, "sim-%s-%d", host, (int)getpid());
  }
  msg_error_t err;
  w->sock = msg_sock_new(ZMQ_DEALER, o->coordinator, false, NULL, NULL, &err);
  if (!w->sock) {
    fprintf(stderr, "rsd-sim-worker: cannot connect to %s: %s\n", o->coordinator, err.text);
    free(w);
    return 1;
  }
  w->heartbeat_ms = 1000;
  w->liveness = 3;
  w->last_rx_ms = s_now_ms();
  s_hello(w);
  zpoller_t *poller = zpoller_new(msg_sock_zsock(w->sock), NULL);
  int rc = 0;
  const char *leave = NULL;
  while (!leave) {
    if (o->stop && *o->stop) {
      s_bye(w, "stopped by a signal");
      leave = "signal";
      break;
    }
    bool work = false;
    for (int i = 0; i < S_MAX_JOBS && !work; i++) work = w->jobs[i].used && w->jobs[i].phase == S_RUNNING;
    /* take every waiting message; wait a little only when there is nothing to step */
    for (int waited = 0;; waited = 1) {
      void *ready = zpoller_wait(poller, work || waited ? 0 : 20);
      if (!ready) {
        if (zpoller_terminated(poller)) leave = "interrupted";
        break;
      }
      msg_in_t *in = NULL;
      msg_err_t e = msg_sock_recv(w->sock, &in, &err);
      if (e == MSG_OK && in->msg.type == MSG_BYE) {
        leave = "the coordinator said BYE";
      } else if (e == MSG_OK) {
        s_on_message(w, in);
      } else if (in) {
        fprintf(stderr, "rsd-sim-worker %s: refused a message from the coordinator: %s\n", w->name, err.text);
      }
      msg_in_destroy(&in);
      if (leave) break;
    }
    if (leave) break;
    /* silence is judged right after reading the socket, never after a long pass of episode steps */
    int64_t polled = s_now_ms();
    if (polled - w->last_rx_ms > (int64_t)w->liveness * w->heartbeat_ms && polled - w->last_hello_ms > w->heartbeat_ms)
      s_rejoin(w, "the coordinator went quiet");
    s_schedule_loads(w);
    s_step_all(w);
    int64_t now = s_now_ms();
    s_send_results(w, now);
    s_heartbeat_if_due(w);
    if (w->draining && s_held(w) == 0) {
      s_bye(w, "drained");
      leave = "drained";
    }
  }
  if (o->verbose)
    fprintf(stderr, "rsd-sim-worker %s: leaving (%s): %d episodes finished, %d results stored\n", w->name, leave,
            w->finished, w->stored);
  if (w->loader.busy) {
    pthread_join(w->loader.thread, NULL);
    sw_task_destroy(&w->loader.result);
  }
  for (int i = 0; i < S_MAX_JOBS; i++) s_job_free(&w->jobs[i]);
  for (int i = 0; i < w->ntasks; i++) sw_task_destroy(&w->tasks[i].t);
  zpoller_destroy(&poller);
  msg_sock_destroy(&w->sock);
  free(w);
  return rc;
}
