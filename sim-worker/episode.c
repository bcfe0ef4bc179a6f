/* episode.c: LIBERO's evaluation loop for one episode (see episode.h): initial state, wait steps, policy
 * steps under robosuite's OSC_POSE, success after every step, observations on robosuite's clock.
 *
 * MuJoCo errors inside a step are caught by sw_guard and numerical warnings by sw_new_warning; either
 * ends the episode as an infrastructure error with MuJoCo's text, and the mjData is not stepped again. */
#include "episode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mjguard.h"

const char *sw_ep_state_name(sw_ep_state_t state) {
  switch (state) {
    case SW_EP_RUNNING: return "running";
    case SW_EP_SUCCESS: return "success";
    case SW_EP_MAX_STEPS: return "max_steps";
    case SW_EP_INFRA_ERROR: return "infra_error";
  }
  return "?";
}

sw_task_t *sw_task_load(const char *data_dir, const char *suite, int task, char *err, size_t errlen) {
  sw_guard_install();
  sw_task_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(t->data_dir, sizeof t->data_dir, "%s", data_dir);
  if (!(t->scene = sw_scene_load(data_dir, suite, task, err, errlen))) {
    free(t);
    return NULL;
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/%s/task_%02d/task.json", data_dir, suite, task);
  if (sw_arm_config_load(path, &t->arm_cfg, err, errlen)) {
    sw_task_destroy(&t);
    return NULL;
  }
  /* the largest offscreen image now, so that making a renderer never writes to the shared model */
  mjModel *m = t->scene->model;
  if (m->vis.global.offwidth < SW_MAX_IMAGE) m->vis.global.offwidth = SW_MAX_IMAGE;
  if (m->vis.global.offheight < SW_MAX_IMAGE) m->vis.global.offheight = SW_MAX_IMAGE;
  return t;
}

int sw_task_make_renderer(sw_task_t *t, char *err, size_t errlen) {
  if (t->renderer) return 0;
  if (!(t->renderer = sw_renderer_new(t->scene->model, SW_MAX_IMAGE, err, errlen))) return -1;
  for (int g = 0; g < mjNGROUP; g++) sw_renderer_show_group(t->renderer, g, t->scene->geomgroup[g]);
  sw_renderer_release(t->renderer);
  return 0;
}

void sw_task_destroy(sw_task_t **self_p) {
  if (!self_p || !*self_p) return;
  sw_task_t *t = *self_p;
  sw_renderer_destroy(&t->renderer);
  sw_scene_destroy(&t->scene);
  free(t);
  *self_p = NULL;
}

/* Renders both cameras into the episode's buffers; called by the controller at robosuite's sampling
 * moments, so the images and the proprio of an observation come from the same state. */
static void s_on_sample(void *ctx, const mjModel *m, const mjData *d) {
  sw_episode_t *ep = ctx;
  if (!ep->want_images || !ep->agentview || ep->render_error[0]) return;
  const sw_scene_t *s = ep->task->scene;
  /* mjv_updateScene takes a non-const mjData but only reads it */
  mjData *dm = (mjData *)d;
  if (sw_render(ep->task->renderer, m, dm, s->cam_agentview, ep->opts.image_size, ep->agentview, ep->render_error,
                sizeof ep->render_error) ||
      (ep->eye_in_hand && sw_render(ep->task->renderer, m, dm, s->cam_eye_in_hand, ep->opts.image_size,
                                    ep->eye_in_hand, ep->render_error, sizeof ep->render_error))) {
    if (!ep->render_error[0]) snprintf(ep->render_error, sizeof ep->render_error, "render failed");
    return;
  }
  ep->sampled_images = true;
}

typedef struct {
  sw_episode_t *ep;
  int rc;
  char err[256];
} s_step_call_t;

static void s_step_fn(void *arg) {
  s_step_call_t *c = arg;
  c->rc = sw_arm_step(c->ep->arm, c->ep->m, c->ep->d, c->err, sizeof c->err);
}

/* "wait step 3" or "step 17": which step an error happened in. */
static const char *s_step_name(const sw_episode_t *ep, char *buf, size_t cap) {
  if (ep->wait_step) snprintf(buf, cap, "wait step %d", ep->wait_step);
  else snprintf(buf, cap, "step %d", ep->steps);
  return buf;
}

/* One control step with the stored action. Returns 0, or -1 having ended the episode as an
 * infrastructure error with the reason. */
static int s_control_step(sw_episode_t *ep, bool want_images) {
  char at[32];
  ep->want_images = want_images && ep->agentview;
  ep->sampled_images = false;
  s_step_call_t c = {.ep = ep};
  char gerr[256];
  const char *why = NULL;
  char wbuf[512];
  if (sw_guard(s_step_fn, &c, gerr, sizeof gerr)) {
    snprintf(wbuf, sizeof wbuf, "mujoco error at %s (trial %d): %s", s_step_name(ep, at, sizeof at), ep->trial, gerr);
    why = wbuf;
  } else if (c.rc) {
    snprintf(wbuf, sizeof wbuf, "controller: %s", c.err);
    why = wbuf;
  } else if (sw_new_warning(ep->d, ep->warn_seen, gerr, sizeof gerr)) {
    snprintf(wbuf, sizeof wbuf, "at %s (trial %d): %s", s_step_name(ep, at, sizeof at), ep->trial, gerr);
    why = wbuf;
  } else if (ep->render_error[0]) {
    snprintf(wbuf, sizeof wbuf, "rendering at %s: %s", s_step_name(ep, at, sizeof at), ep->render_error);
    why = wbuf;
  } else if (ep->want_images && !ep->sampled_images) {
    snprintf(wbuf, sizeof wbuf, "no observation was sampled during %s (controller clock)", s_step_name(ep, at, sizeof at));
    why = wbuf;
  }
  ep->want_images = false;
  ep->images_fresh = want_images && ep->agentview;
  if (why) {
    ep->state = SW_EP_INFRA_ERROR;
    snprintf(ep->reason, sizeof ep->reason, "%s", why);
    return -1;
  }
  sw_arm_obs(ep->arm, ep->proprio);
  for (int i = 0; i < SW_PROPRIO_DIM; i++) {
    if (!isfinite(ep->proprio[i])) {
      ep->state = SW_EP_INFRA_ERROR;
      snprintf(ep->reason, sizeof ep->reason, "proprio[%d] is %g after %s", i, ep->proprio[i],
               s_step_name(ep, at, sizeof at));
      return -1;
    }
  }
  return 0;
}

static int s_record(sw_episode_t *ep) {
  if (!ep->opts.record) return 0;
  size_t frame = (size_t)ep->opts.image_size * (size_t)ep->opts.image_size * 3;
  if (ep->nframes == ep->frames_cap) {
    int cap = ep->frames_cap ? 2 * ep->frames_cap : 64;
    uint8_t *f = realloc(ep->frames, frame * (size_t)cap);
    if (!f) return -1;
    ep->frames = f;
    ep->frames_cap = cap;
  }
  memcpy(ep->frames + frame * (size_t)ep->nframes++, ep->agentview, frame);
  return 0;
}

/* After the last wait step: the first observation's images when there was no step to sample them in, and
 * the first recorded frame. Returns 0, or -1 with the reason in err. */
static int s_after_waits(sw_episode_t *ep, char *err, size_t errlen) {
  ep->wait_step = 0;
  if (ep->opts.wait_steps == 0 && ep->opts.image_size) {
    /* no step to sample in: render the initial state itself */
    ep->want_images = true;
    s_on_sample(ep, ep->m, ep->d);
    ep->want_images = false;
    ep->images_fresh = true;
    if (ep->render_error[0]) {
      snprintf(err, errlen, "rendering the initial state: %s", ep->render_error);
      return -1;
    }
  }
  if (s_record(ep)) {
    snprintf(err, errlen, "out of memory for the recording");
    return -1;
  }
  return 0;
}

sw_episode_t *sw_episode_begin(sw_task_t *task, int trial, const sw_episode_opts_t *opts, char *err, size_t errlen) {
  const sw_scene_t *s = task->scene;
  if (trial < 0 || trial >= s->ntrials) {
    snprintf(err, errlen, "trial %d out of range: task %d of %s has trials 0..%d", trial, s->task, s->suite,
             s->ntrials - 1);
    return NULL;
  }
  if (opts->image_size != 0 && opts->image_size != 128 && opts->image_size != 224 && opts->image_size != 256) {
    snprintf(err, errlen, "image_size %d not supported (allowed: 128, 224, 256, or 0 for no images)",
             opts->image_size);
    return NULL;
  }
  if (opts->render_every < 0) {
    snprintf(err, errlen, "render_every %d: need 0 (every step) or more", opts->render_every);
    return NULL;
  }
  if (opts->wait_steps < 0 || opts->max_steps < 1) {
    snprintf(err, errlen, "wait_steps %d / max_steps %d: need wait_steps >= 0 and max_steps >= 1", opts->wait_steps,
             opts->max_steps);
    return NULL;
  }
  if (opts->record && !opts->image_size) {
    snprintf(err, errlen, "recording a video needs camera images (image_size is 0)");
    return NULL;
  }
  if (opts->image_size && sw_task_make_renderer(task, err, errlen)) return NULL;
  sw_episode_t *ep = calloc(1, sizeof *ep);
  if (!ep) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  ep->task = task;
  ep->trial = trial;
  ep->opts = *opts;
  if (sw_scene_episode(s, trial, &ep->m, &ep->d, err, errlen)) goto fail;
  if (!(ep->arm = sw_arm_new(ep->m, &task->arm_cfg, err, errlen))) goto fail;
  if (opts->image_size) {
    size_t img = (size_t)opts->image_size * (size_t)opts->image_size * 3;
    ep->agentview = malloc(img);
    ep->eye_in_hand = opts->agentview_only ? NULL : malloc(img);
    if (!ep->agentview || (!opts->agentview_only && !ep->eye_in_hand)) {
      snprintf(err, errlen, "out of memory for %d px images", opts->image_size);
      goto fail;
    }
  }
  ep->arm->sample_hook = s_on_sample;
  ep->arm->sample_ctx = ep;
  sw_arm_reset(ep->arm);
  /* LIBERO's set_init_state forces an observation of the initial state */
  sw_arm_sample(ep->arm, ep->d);
  sw_arm_obs(ep->arm, ep->proprio);
  /* mj_forward ran in sw_scene_episode: take its warnings as the baseline */
  if (sw_new_warning(ep->d, ep->warn_seen, err, errlen)) {
    ep->state = SW_EP_INFRA_ERROR;
    snprintf(ep->reason, sizeof ep->reason, "initial state of trial %d: %s", trial, err);
    return ep;
  }
  static const double wait[SW_ACTION_DIM] = SW_WAIT_ACTION;
  if (sw_arm_set_action(ep->arm, wait, SW_ACTION_DIM, err, errlen)) goto fail;
  ep->waits_left = opts->wait_steps;
  if (ep->waits_left == 0 && s_after_waits(ep, err, errlen)) goto fail;
  return ep;
fail:
  sw_episode_destroy(&ep);
  return NULL;
}

int sw_episode_wait_step(sw_episode_t *ep, char *err, size_t errlen) {
  if (ep->state != SW_EP_RUNNING || ep->waits_left == 0) {
    snprintf(err, errlen, "episode (task %d, trial %d) has no wait step left: %s", ep->task->scene->task, ep->trial,
             ep->state != SW_EP_RUNNING ? sw_ep_state_name(ep->state) : "its policy steps have begun");
    return -1;
  }
  ep->wait_step = ep->opts.wait_steps - ep->waits_left + 1;
  ep->waits_left--;
  if (s_control_step(ep, ep->waits_left == 0)) return 0; /* ended as an infrastructure error */
  return ep->waits_left == 0 ? s_after_waits(ep, err, errlen) : 0;
}

sw_episode_t *sw_episode_new(sw_task_t *task, int trial, const sw_episode_opts_t *opts, char *err, size_t errlen) {
  sw_episode_t *ep = sw_episode_begin(task, trial, opts, err, errlen);
  while (ep && ep->state == SW_EP_RUNNING && ep->waits_left > 0)
    if (sw_episode_wait_step(ep, err, errlen)) sw_episode_destroy(&ep);
  return ep;
}

void sw_episode_destroy(sw_episode_t **self_p) {
  if (!self_p || !*self_p) return;
  sw_episode_t *ep = *self_p;
  sw_arm_destroy(&ep->arm);
  sw_scene_episode_free(&ep->m, &ep->d);
  free(ep->agentview);
  free(ep->eye_in_hand);
  free(ep->frames);
  free(ep);
  *self_p = NULL;
}

bool sw_episode_success_now(const sw_episode_t *ep) { return sw_scene_success(ep->task->scene, ep->m, ep->d); }

int sw_episode_step(sw_episode_t *ep, const double *action, int n, char *err, size_t errlen) {
  if (ep->state != SW_EP_RUNNING) {
    snprintf(err, errlen, "episode (task %d, trial %d) already ended: %s", ep->task->scene->task, ep->trial,
             sw_ep_state_name(ep->state));
    return -1;
  }
  if (ep->waits_left) {
    snprintf(err, errlen, "episode (task %d, trial %d) has %d wait steps left before its first policy step",
             ep->task->scene->task, ep->trial, ep->waits_left);
    return -1;
  }
  if (sw_arm_set_action(ep->arm, action, n, err, errlen)) return -1;
  ep->steps++;
  int every = ep->opts.render_every;
  bool rec = ep->opts.record && ep->steps % SW_RECORD_EVERY == 0;
  if (s_control_step(ep, rec || every <= 1 || ep->steps % every == 0)) return 0;
  if (rec && s_record(ep)) {
    ep->state = SW_EP_INFRA_ERROR;
    snprintf(ep->reason, sizeof ep->reason, "out of memory recording frame %d", ep->nframes);
    return 0;
  }
  if (sw_episode_success_now(ep)) ep->state = SW_EP_SUCCESS;
  else if (ep->steps >= ep->opts.max_steps) ep->state = SW_EP_MAX_STEPS;
  return 0;
}
