/* episode.h: one LIBERO episode, the way LIBERO's evaluation runs it, in C.
 *
 * A task (sw_task_t) is what a sim worker loads once per (suite, task): the exported scene, the arm's
 * controller settings and, when images are wanted, a renderer. An episode (sw_episode_t) is one trial of
 * that task: its own model view and mjData (sw_scene_episode), its own controller, the camera images and
 * proprio of its last observation, and its end state. A process may hold many episodes of many tasks at
 * once; they share nothing mutable but the task's renderer, so they must be stepped from the thread that
 * made the task.
 *
 * The loop is LIBERO's: set the trial's initial state, run `wait_steps` steps of [0,0,0,0,0,0,-1] (the
 * objects settle; not counted as policy steps), then one control step per policy action until the goal
 * holds (success, checked after every step like LIBERO's env.step `done`) or `max_steps` policy steps
 * passed (a policy failure). The observation after a step is sampled on robosuite's clock (see osc.h):
 * proprio and both camera images come from the same moment.
 *
 * Not here: choosing actions (the expert, a GPU worker), talking to the coordinator (main.c). */
#ifndef RSD_SW_EPISODE_H
#define RSD_SW_EPISODE_H

#include <mujoco/mujoco.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "osc.h"
#include "render.h"
#include "scene.h"

#define SW_WAIT_ACTION {0, 0, 0, 0, 0, 0, -1} /* LIBERO's action during the wait steps */
#define SW_MAX_IMAGE 256                      /* largest camera image size */
#define SW_RECORD_EVERY 2                     /* a recording keeps every 2nd step: 10 fps of 20 Hz control */

/* One loaded task of a suite. */
typedef struct {
  sw_scene_t *scene;          /* owned */
  sw_arm_config_t arm_cfg;    /* from task.json */
  sw_renderer_t *renderer;    /* owned; made by the first episode that wants images (NULL before) */
  char data_dir[1024];
} sw_task_t;

/* Loads task `task` of `suite` from the export in data_dir (see scene.h). NULL with the reason in err. */
sw_task_t *sw_task_load(const char *data_dir, const char *suite, int task, char *err, size_t errlen);

/* Makes the task's renderer now (a few seconds: the scene's textures go to the GL context) and unbinds
 * it from the calling thread, so that a loader thread can prepare it for the thread that steps the
 * episodes. No-op when the task has one. Returns 0, or -1 with the reason in err. */
int sw_task_make_renderer(sw_task_t *t, char *err, size_t errlen);

/* Frees the task (its renderer too); idempotent; sets *self_p to NULL. Destroy its episodes first. */
void sw_task_destroy(sw_task_t **self_p);

/* How an episode runs. */
typedef struct {
  int wait_steps;  /* steps of SW_WAIT_ACTION before the first policy step (LIBERO: 10) */
  int max_steps;   /* policy steps before the episode ends as a failure (LIBERO-Spatial: 220) */
  int image_size;  /* camera images of this size (128, 224 or 256), or 0 for none */
  bool record;     /* keep the agentview image of the first observation and of every SW_RECORD_EVERY-th
                      policy step (a rollout video at 10 frames per second); needs image_size */
  bool agentview_only; /* render only agentview (a video of an expert episode needs no eye-in-hand image) */
  int render_every;    /* render the observation after every k-th policy step only: the steps at which a
                          policy with replan_every k asks for a new chunk (0 or 1: every step). The first
                          observation (after the wait steps) is always rendered, and so are the steps
                          `record` keeps */
} sw_episode_opts_t;

/* Where an episode stands. */
typedef enum {
  SW_EP_RUNNING = 0,  /* waiting for the next action */
  SW_EP_SUCCESS,      /* the goal held after a step */
  SW_EP_MAX_STEPS,    /* max_steps policy steps passed without success: a policy failure */
  SW_EP_INFRA_ERROR,  /* MuJoCo raised an error or a warning, or rendering failed: not the policy's fault */
} sw_ep_state_t;

/* "running", "success", "max_steps", "infra_error". */
const char *sw_ep_state_name(sw_ep_state_t state);

typedef struct {
  sw_task_t *task;            /* borrowed; outlives the episode */
  int trial;
  sw_episode_opts_t opts;
  mjModel *m;                 /* owned view of the task's model (sw_scene_episode) */
  mjData *d;                  /* owned */
  sw_arm_t *arm;              /* owned */
  int steps;                  /* policy steps taken (the wait steps are not counted) */
  sw_ep_state_t state;
  char reason[512];           /* why the episode ended as an infrastructure error ("" otherwise) */
  /* The last observation, sampled on robosuite's clock after the last step. */
  double proprio[SW_PROPRIO_DIM]; /* eef pos (3), eef axis-angle (3), gripper qpos (2) */
  uint8_t *agentview;         /* owned: image_size^2 * 3 bytes, upright RGB; NULL without images */
  uint8_t *eye_in_hand;       /* owned: likewise; NULL with opts.agentview_only */
  bool images_fresh;          /* the images belong to the last observation (false on a step render_every
                                 skipped: they are an earlier observation's) */
  /* recorded agentview frames (opts.record): nframes images of image_size^2 * 3 bytes, the first
     observation's and one per SW_RECORD_EVERY policy steps */
  uint8_t *frames;            /* owned */
  int nframes, frames_cap;
  /* internal */
  int warn_seen[mjNWARNING];
  int wait_step;              /* 1.. during the wait steps (error texts name them), 0 after */
  int waits_left;             /* wait steps not yet taken (sw_episode_begin); sw_episode_step refuses until 0 */
  bool want_images;           /* render at the next sampling moment */
  bool sampled_images;        /* images were rendered since want_images was set */
  char render_error[256];
} sw_episode_t;

/* Starts trial `trial` of the task: its initial state, the controller's reset and the wait steps, leaving
 * the first observation in proprio (and the images). NULL with the reason in err when the episode cannot
 * be made (bad trial, bad options, no renderer); an episode whose wait steps hit a MuJoCo error is
 * returned in state SW_EP_INFRA_ERROR. */
sw_episode_t *sw_episode_new(sw_task_t *task, int trial, const sw_episode_opts_t *opts, char *err,
                             size_t errlen);

/* Starts trial `trial` like sw_episode_new but takes none of the wait steps: they are left in
 * ep->waits_left for sw_episode_wait_step, so that a caller serving sockets between steps never spends
 * all of them in one call (they take seconds under sanitizers on a loaded machine). With wait_steps 0 the
 * episode is ready for sw_episode_step at once. NULL with the reason in err, as sw_episode_new. */
sw_episode_t *sw_episode_begin(sw_task_t *task, int trial, const sw_episode_opts_t *opts, char *err,
                               size_t errlen);

/* Takes the next wait step of an episode from sw_episode_begin. Returns 0 with ep->waits_left one lower
 * (after the last one the first observation is in proprio and the images, as sw_episode_new leaves it), or
 * with ep->state SW_EP_INFRA_ERROR and the reason when the step hit a MuJoCo error or rendering failed;
 * -1 with the reason in err when no wait step is left or the recording's first frame found no memory. */
int sw_episode_wait_step(sw_episode_t *ep, char *err, size_t errlen);

/* Frees the episode; idempotent; sets *self_p to NULL. */
void sw_episode_destroy(sw_episode_t **self_p);

/* Applies one policy action (n must be SW_ACTION_DIM, every value finite) for one control step, then
 * checks the goal and the step limit and samples the next observation. Returns 0 with ep->state updated,
 * or -1 with the reason in err when the action is refused (wrong length, NaN/Inf: the value and index are
 * named) or the episode is not running; a refused action changes nothing. */
int sw_episode_step(sw_episode_t *ep, const double *action, int n, char *err, size_t errlen);

/* True when the task's goal holds in the episode's current state. */
bool sw_episode_success_now(const sw_episode_t *ep);

#endif
