/* osc_test.c: the C OSC_POSE/Panda gripper controller (osc.c) against robosuite itself.
 *
 * Usage: osc_test PYTHON fidelity_reference.py [--keep DIR | --reference REFERENCE.json]
 * First runs rsd's scripted expert (expert.c) closed loop in C on a few (task, trial) pairs, 200 policy steps
 * each after LIBERO's 10 wait steps, and writes its actions to expert_actions.json. Then runs
 * fidelity_reference.py with the project's Python (robosuite + LIBERO), which replays those actions and a
 * seeded random sequence per pair open loop in robosuite and records every step into reference.json (both
 * files in a temporary directory, or kept in DIR; --reference reads a saved one instead). Then replays every
 * recorded action sequence in C from the same initial state (sw_scene_episode + sw_arm_reset) and compares,
 * step by step: the eef position and quaternion, the gripper joints, the bowl's and plate's positions and
 * LIBERO's success flag; the replay of an expert sequence must also repeat the C closed loop exactly. Also
 * checks action validation (length, NaN/Inf named by index), clipping and scaling like robosuite's
 * scale_action, and the goal a first step sets. Needs the exported scenes (ops/setup.sh). */
#include "check.h"
#include "episode.h"
#include "expert.h"
#include "mjguard.h"
#include "osc.h"
#include "scene.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SUITE "libero_spatial"

/* Bounds the comparison asserts, every step of every run (the measured maxima are printed). The eef bound is
 * the design's (DESIGN.md section 5). Measured (2-core VM, docs/simulation.md): random sequences eef 0.0045 mm,
 * gripper 0.0003 mm, objects untouched (0); the expert's (grasp, carry, release) eef 3e-7 mm, gripper 5e-7 mm,
 * objects 8e-6 mm and 5e-8 in quaternion, success flags equal at every step. The C side and robosuite apply
 * the same controls to 1e-10 N m; what remains is floating-point order amplified by contacts, so the gripper
 * and object bounds sit far below the eef's and would catch a real mismatch. */
#define EEF_TOL_M 0.002   /* eef position, simulated and observed */
#define GRIP_TOL_M 1e-5   /* gripper joints */
#define OBJ_TOL_M 1e-5    /* bowl and plate positions */
#define QUAT_TOL 1e-4     /* eef, bowl and plate quaternions, largest component */

#define S_WAIT_STEPS 10   /* LIBERO's wait steps before the policy's */
#define S_SEQ_STEPS 200   /* policy steps of the expert's sequences (the random ones: fidelity_reference.py) */
#define S_NTASKS 10       /* LIBERO-Spatial's tasks */

static double s_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double s_dist(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

/* Largest component difference of two unit quaternions, up to sign. */
static double s_quatdiff(const double *a, const double *b) {
  double pos = 0, neg = 0;
  for (int i = 0; i < 4; i++) {
    pos = fmax(pos, fabs(a[i] - b[i]));
    neg = fmax(neg, fabs(a[i] + b[i]));
  }
  return fmin(pos, neg);
}

static double s_maxabs(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) s = fmax(s, fabs(a[i] - b[i]));
  return s;
}

/* Reads n numbers from a JSON array into out; -1 when it is not exactly that. */
static int s_vec(json_t *arr, double *out, int n) {
  if (!json_is_array(arr) || (int)json_array_size(arr) != n) return -1;
  for (int i = 0; i < n; i++) {
    json_t *x = json_array_get(arr, (size_t)i);
    if (!json_is_number(x)) return -1;
    out[i] = json_number_value(x);
  }
  return 0;
}

static sw_arm_t *s_arm(const char *data, int task, const mjModel *m) {
  char path[1200], err[512];
  snprintf(path, sizeof path, "%s/%s/task_%02d/task.json", data, SUITE, task);
  sw_arm_config_t cfg;
  if (sw_arm_config_load(path, &cfg, err, sizeof err)) {
    CHECK(0, "sw_arm_config_load: %s", err);
    return NULL;
  }
  sw_arm_t *arm = sw_arm_new(m, &cfg, err, sizeof err);
  CHECK(arm != NULL, "sw_arm_new: %s", err);
  return arm;
}

/* --- unit checks ------------------------------------------------------------------------------------------ */

static void s_units(const char *data) {
  char err[512];
  sw_scene_t *s = sw_scene_load(data, SUITE, 0, err, sizeof err);
  CHECK(s != NULL, "sw_scene_load: %s", err);
  if (!s) return;
  mjModel *m;
  mjData *d;
  CHECK(sw_scene_episode(s, 0, &m, &d, err, sizeof err) == 0, "episode: %s", err);
  sw_arm_t *arm = s_arm(data, 0, m);
  if (!arm) goto out;

  /* Validation: length, NaN/Inf named by index, nothing stored on error. */
  double ok[7] = {0, 0, 0, 0, 0, 0, -1}, a[8] = {0, 0, 0, 0, 0, 0, -1, 0};
  CHECK(sw_arm_step(arm, m, d, err, sizeof err) == -1 && strstr(err, "no action"), "step before any action: %s", err);
  CHECK(sw_arm_set_action(arm, a, 6, err, sizeof err) == -1 && strstr(err, "6 values"), "6 values accepted: %s", err);
  CHECK(sw_arm_set_action(arm, a, 8, err, sizeof err) == -1 && strstr(err, "8 values"), "8 values accepted: %s", err);
  CHECK(sw_arm_set_action(arm, NULL, 7, err, sizeof err) == -1, "NULL action accepted");
  a[3] = NAN;
  CHECK(sw_arm_set_action(arm, a, 7, err, sizeof err) == -1 && strstr(err, "action[3]") && strstr(err, "nan"),
        "NaN at 3: %s", err);
  a[3] = 0;
  a[6] = -INFINITY;
  CHECK(sw_arm_set_action(arm, a, 7, err, sizeof err) == -1 && strstr(err, "action[6]") && strstr(err, "inf"),
        "-Inf at 6: %s", err);
  CHECK(!arm->have_action, "a rejected action was stored");
  CHECK(sw_arm_set_action(arm, ok, 7, err, sizeof err) == 0, "valid action: %s", err);

  /* Clipping to [-1, 1] and scaling to 0.05 m / 0.5 rad, as robosuite's scale_action. */
  double in[6] = {5, -3, 0.5, 1e9, -2, -0.25}, out[6], want[6] = {0.05, -0.05, 0.025, 0.5, -0.5, -0.125};
  sw_arm_scale_action(arm, in, out);
  CHECK(s_maxabs(out, want, 6) < 1e-15, "scaled %g %g %g %g %g %g", out[0], out[1], out[2], out[3], out[4], out[5]);

  /* The first step after a reset: robosuite's controller still reads what it cached at init_qpos, so the goal is
   * the eef position there plus the clipped, scaled delta; no rotation keeps the reset orientation; the gripper
   * command moves 25 x 0.01. */
  double grip[2], big[7] = {2, 0, -7, 0, 0, 0, -0.3};
  CHECK(s_dist(arm->reset_pos, d->site_xpos + 3 * arm->eef_site, 3) > 1e-3, "trial 0 starts away from init_qpos");
  CHECK(sw_arm_set_action(arm, big, 7, err, sizeof err) == 0, "out-of-range action refused: %s", err);
  CHECK(sw_arm_step(arm, m, d, err, sizeof err) == 0, "step: %s", err);
  double goal_want[3] = {arm->reset_pos[0] + 0.05, arm->reset_pos[1], arm->reset_pos[2] - 0.05};
  CHECK(s_maxabs(arm->goal_pos, goal_want, 3) < 1e-15, "goal_pos off by %g", s_maxabs(arm->goal_pos, goal_want, 3));
  CHECK(s_maxabs(arm->goal_ori, arm->reset_ori, 9) == 0, "goal orientation changed without rotation input");
  grip[0] = 0.25;
  grip[1] = -0.25;
  CHECK(s_maxabs(arm->grip_cmd, grip, 2) < 1e-12, "gripper command %g %g", arm->grip_cmd[0], arm->grip_cmd[1]);
  CHECK(d->ctrl[arm->grip_act[0]] > 0.02 && d->ctrl[arm->grip_act[1]] < -0.02, "gripper not opening");
  /* Later steps start from the live eef position. */
  mj_forward(m, d);
  double eef0[3];
  memcpy(eef0, d->site_xpos + 3 * arm->eef_site, sizeof eef0);
  CHECK(sw_arm_step(arm, m, d, err, sizeof err) == 0, "step: %s", err);
  goal_want[0] = eef0[0] + 0.05;
  goal_want[1] = eef0[1];
  goal_want[2] = eef0[2] - 0.05;
  CHECK(s_maxabs(arm->goal_pos, goal_want, 3) < 1e-15, "second goal_pos off by %g", s_maxabs(arm->goal_pos, goal_want, 3));
  for (int i = 0; i < SW_ARM_DOF; i++) {
    const double *r = m->actuator_ctrlrange + 2 * arm->act[i];
    CHECK(d->ctrl[arm->act[i]] >= r[0] && d->ctrl[arm->act[i]] <= r[1], "torque %d outside ctrlrange", i);
  }
  /* A rotation input turns the goal orientation by exactly that rotation (0.5 rad about z). */
  double rot[7] = {0, 0, 0, 0, 0, 1, 0}, ori0[9];
  mj_forward(m, d);
  memcpy(ori0, d->site_xmat + 9 * arm->eef_site, sizeof ori0);
  CHECK(sw_arm_set_action(arm, rot, 7, err, sizeof err) == 0, "%s", err);
  CHECK(sw_arm_step(arm, m, d, err, sizeof err) == 0, "step: %s", err);
  double rz[9] = {cos(0.5), -sin(0.5), 0, sin(0.5), cos(0.5), 0, 0, 0, 1}, want_ori[9];
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      want_ori[3 * i + j] = rz[3 * i] * ori0[j] + rz[3 * i + 1] * ori0[3 + j] + rz[3 * i + 2] * ori0[6 + j];
  CHECK(s_maxabs(arm->goal_ori, want_ori, 9) < 1e-6, "rotated goal off by %g (float32 rotation like robosuite)",
        s_maxabs(arm->goal_ori, want_ori, 9));
  /* Reset restores robosuite's post-reset state. */
  sw_arm_reset(arm);
  CHECK(!arm->have_action && arm->grip_cmd[0] == 0 && s_maxabs(arm->goal_ori, arm->reset_ori, 9) == 0, "reset");
  /* The proprio axis-angle of a known quaternion: 90 degrees about x. */
  double saved[4];
  memcpy(saved, d->xquat + 4 * arm->eef_body, sizeof saved);
  d->xquat[4 * arm->eef_body] = sqrt(0.5);
  d->xquat[4 * arm->eef_body + 1] = sqrt(0.5);
  d->xquat[4 * arm->eef_body + 2] = d->xquat[4 * arm->eef_body + 3] = 0;
  double p[SW_PROPRIO_DIM];
  sw_arm_proprio(arm, d, p);
  CHECK(fabs(p[3] - M_PI / 2) < 1e-12 && p[4] == 0 && p[5] == 0, "axis-angle %g %g %g", p[3], p[4], p[5]);
  memcpy(d->xquat + 4 * arm->eef_body, saved, sizeof saved);
  sw_arm_destroy(&arm);
  sw_arm_destroy(&arm);
  CHECK(arm == NULL, "destroy");
out:
  sw_scene_episode_free(&m, &d);
  sw_scene_destroy(&s);
}

/* --- the expert's sequences, closed loop in C ----------------------------------------------------------- */

/* Task `task`, loaded on first use into tasks[] (kept for the replays: a load takes seconds); NULL on failure. */
static sw_task_t *s_task(const char *data, sw_task_t *tasks[S_NTASKS], int task) {
  char err[512];
  if (task < 0 || task >= S_NTASKS) {
    CHECK(0, "task %d: %s has tasks 0..%d", task, SUITE, S_NTASKS - 1);
    return NULL;
  }
  if (!tasks[task]) {
    tasks[task] = sw_task_load(data, SUITE, task, err, sizeof err);
    CHECK(tasks[task] != NULL, "sw_task_load %d: %s", task, err);
  }
  return tasks[task];
}

/* The (task, trial) pairs of the fidelity runs: three tasks (the drawer's, 4, among them), two trials each
 * but task 4's trial 0. Each pair is replayed with a random sequence and with the expert's. */
static const int s_pairs[][2] = {{0, 0}, {0, 7}, {4, 7}, {9, 0}, {9, 7}};
#define S_NPAIRS (int)(sizeof s_pairs / sizeof s_pairs[0])

/* Runs the scripted expert closed loop, as an episode (sw_episode_new, 10 wait steps, sw_expert_act,
 * sw_episode_step), for S_SEQ_STEPS policy steps on each pair, and returns {"runs": [{task, trial, sequence:
 * "expert", actions, and what the closed loop saw: eef_pos, success, phase per step, first_success}]}.
 * The episode goes on past success (LIBERO would stop there): the expert finishes lowering, releases and
 * retreats, which compares contacts changing and a success flag that must stay true. NULL on failure. */
static json_t *s_expert_runs(const char *data, sw_task_t *tasks[S_NTASKS]) {
  json_t *runs = json_array();
  for (int p = 0; p < S_NPAIRS; p++) {
    char err[512];
    int task = s_pairs[p][0], trial = s_pairs[p][1];
    sw_task_t *t = s_task(data, tasks, task);
    if (!t) continue;
    sw_episode_opts_t opts = {.wait_steps = S_WAIT_STEPS, .max_steps = S_SEQ_STEPS};
    sw_episode_t *ep = sw_episode_new(t, trial, &opts, err, sizeof err);
    CHECK(ep != NULL && ep->state == SW_EP_RUNNING, "episode %d/%d: %s", task, trial, ep ? ep->reason : err);
    sw_expert_t *x = ep ? sw_expert_new(ep, err, sizeof err) : NULL;
    CHECK(!ep || x != NULL, "sw_expert_new %d/%d: %s", task, trial, err);
    json_t *acts = json_array(), *eef = json_array(), *succ = json_array(), *phases = json_array();
    int first_success = -1, phase_start[SW_EXPERT_NPHASES];
    for (int k = 0; k < SW_EXPERT_NPHASES; k++) phase_start[k] = -1;
    while (x && ep->state == SW_EP_RUNNING) {
      double a[SW_ACTION_DIM];
      sw_expert_phase_t ph = sw_expert_act(x, ep, a);
      if (phase_start[ph] < 0) phase_start[ph] = ep->steps;
      if (sw_episode_step(ep, a, SW_ACTION_DIM, err, sizeof err) || ep->state == SW_EP_INFRA_ERROR) {
        CHECK(0, "expert %d/%d step %d: %s", task, trial, ep->steps, ep->state == SW_EP_INFRA_ERROR ? ep->reason : err);
        break;
      }
      json_t *ja = json_array(), *je = json_array();
      for (int k = 0; k < SW_ACTION_DIM; k++) json_array_append_new(ja, json_real(a[k]));
      for (int k = 0; k < 3; k++) json_array_append_new(je, json_real(ep->d->site_xpos[3 * ep->arm->eef_site + k]));
      json_array_append_new(acts, ja);
      json_array_append_new(eef, je);
      json_array_append_new(succ, json_boolean(ep->state == SW_EP_SUCCESS));
      json_array_append_new(phases, json_string(sw_expert_phase_name(ph)));
      if (ep->state == SW_EP_SUCCESS) {
        if (first_success < 0) first_success = ep->steps;
        /* on past success (a test's liberty: the episode's own loop would end here) */
        if (ep->steps < S_SEQ_STEPS) ep->state = SW_EP_RUNNING;
      }
    }
    if (x) {
      CHECK((int)json_array_size(acts) == S_SEQ_STEPS, "expert %d/%d: %zu steps", task, trial, json_array_size(acts));
      printf("  task %d trial %d expert closed loop: phases from step", task, trial);
      for (int k = 0; k < SW_EXPERT_NPHASES; k++)
        if (phase_start[k] >= 0) printf(" %s %d", sw_expert_phase_name((sw_expert_phase_t)k), phase_start[k]);
      printf("; first success after step %d\n", first_success);
    }
    json_array_append_new(runs, json_pack("{s:i, s:i, s:s, s:o, s:o, s:o, s:o, s:i}", "task", task, "trial", trial,
                                          "sequence", "expert", "actions", acts, "eef_pos", eef, "success", succ,
                                          "phase", phases, "first_success", first_success));
    sw_expert_destroy(&x);
    sw_episode_destroy(&ep);
  }
  return json_pack("{s:o}", "runs", runs);
}

/* The closed-loop record of (task, trial, sequence) in expert (NULL when there is none). */
static json_t *s_closed_loop(json_t *expert, int task, int trial, const char *seq) {
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(expert, "runs"), i, r) {
    if (json_integer_value(json_object_get(r, "task")) == task &&
        json_integer_value(json_object_get(r, "trial")) == trial && seq &&
        strcmp(json_string_value(json_object_get(r, "sequence")), seq) == 0)
      return r;
  }
  return NULL;
}

/* --- fidelity against robosuite ------------------------------------------------------------------------- */

typedef struct {
  double eef, quat, grip, obj, obj_quat, start_goal;
  double obs_eef, obs_quat, obs_grip; /* the sampled observations (robot0_eef_pos, _quat, gripper_qpos) */
  int eef_step, obj_step;             /* policy steps of the largest eef and object deviations */
  double closed_loop;                 /* expert: largest eef difference from the C closed loop (0 expected) */
  int closed_loop_actions;            /* expert: actions differing from the closed loop's */
  int success_mismatch, success_ref, closed_loop_success;
} s_dev_t;

static int s_run_reference(const char *python, const char *script, const char *data, const char *runs,
                           const char *actions, const char *out) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execl(python, python, script, out, "--data", data, "--runs", runs, "--actions", actions, (char *)NULL);
    fprintf(stderr, "exec %s: %s\n", python, strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Replays one recorded run open loop in scene s (its task) and measures how far it strays from robosuite's;
 * for an expert run also from the C closed loop (cl, may be NULL), which the replay must repeat exactly. */
static void s_replay(const char *data, sw_scene_t *s, json_t *run, json_t *cl, int wait_steps, s_dev_t *dev) {
  char err[512];
  int task = (int)json_integer_value(json_object_get(run, "task"));
  int trial = (int)json_integer_value(json_object_get(run, "trial"));
  const char *seq = json_string_value(json_object_get(run, "sequence"));
  memset(dev, 0, sizeof *dev);
  mjModel *m = NULL;
  mjData *d = NULL;
  sw_arm_t *arm = NULL;
  if (sw_scene_episode(s, trial, &m, &d, err, sizeof err)) {
    CHECK(0, "episode %d/%d: %s", task, trial, err);
    goto out;
  }
  if (!(arm = s_arm(data, task, m))) goto out;

  /* The start: the same state, the same fixture poses, the same hidden controller state. */
  json_t *start = json_object_get(run, "start");
  double *buf = malloc(sizeof(double) * (size_t)(m->nq + m->nv + 64));
  CHECK(s_vec(json_object_get(start, "qpos"), buf, m->nq) == 0 && s_maxabs(buf, d->qpos, m->nq) == 0,
        "task %d trial %d: start qpos differs", task, trial);
  CHECK(s_vec(json_object_get(start, "qvel"), buf, m->nv) == 0 && s_maxabs(buf, d->qvel, m->nv) == 0,
        "task %d trial %d: start qvel differs", task, trial);
  CHECK(s_vec(json_object_get(start, "fixture_poses"), buf, 7 * s->nfixtures) == 0, "fixture poses");
  for (int f = 0; f < s->nfixtures; f++) {
    int b = s->fixture_body[f];
    CHECK(s_maxabs(buf + 7 * f, m->body_pos + 3 * b, 3) == 0 && s_maxabs(buf + 7 * f + 3, m->body_quat + 4 * b, 4) == 0,
          "task %d trial %d: fixture %d pose differs", task, trial, f);
  }
  CHECK(s_vec(json_object_get(start, "goal_ori"), buf, 9) == 0, "goal_ori");
  dev->start_goal = s_maxabs(buf, arm->goal_ori, 9);
  CHECK(dev->start_goal < 1e-12, "task %d trial %d: reset goal orientation off by %g", task, trial, dev->start_goal);
  CHECK(s_vec(json_object_get(start, "initial_joint"), buf, SW_ARM_DOF) == 0 &&
            s_maxabs(buf, arm->cfg.init_qpos, SW_ARM_DOF) == 0, "nullspace target differs");
  CHECK(s_vec(json_object_get(start, "eef_pos"), buf, 3) == 0 && s_dist(buf, d->site_xpos + 3 * arm->eef_site, 3) == 0,
        "task %d trial %d: start eef differs", task, trial);
  CHECK(json_real_value(json_object_get(start, "obs_clock")) == arm->obs_clock &&
            json_is_true(json_object_get(start, "obs_sampled")) == arm->obs_sampled,
        "task %d trial %d: observable clock %g after set_init_state, C assumes %g", task, trial,
        json_real_value(json_object_get(start, "obs_clock")), arm->obs_clock);
  sw_arm_sample(arm, d); /* set_init_state's forced observation */
  int bowl = mj_name2id(m, mjOBJ_BODY, json_string_value(json_array_get(json_object_get(run, "bodies"), 0)));
  int plate = mj_name2id(m, mjOBJ_BODY, json_string_value(json_array_get(json_object_get(run, "bodies"), 1)));
  CHECK(bowl >= 0 && plate >= 0, "bowl/plate bodies");
  CHECK(strcmp(json_string_value(json_object_get(run, "eef_body")) ? json_string_value(json_object_get(run, "eef_body")) : "",
               arm->cfg.eef_body) == 0, "eef body name");

  json_t *acts = json_object_get(run, "actions");
  int nsteps = (int)json_array_size(acts), printed = 0;
  if (cl)
    CHECK((size_t)nsteps == wait_steps + json_array_size(json_object_get(cl, "actions")),
          "task %d trial %d %s: robosuite replayed %d steps, the closed loop took %d + %zu", task, trial, seq, nsteps,
          wait_steps, json_array_size(json_object_get(cl, "actions")));
  int seen[mjNWARNING] = {0};
  for (int i = 0; i < nsteps && bowl >= 0 && plate >= 0; i++) {
    double a[7], ref[4], got[4], dist;
    int policy_step = i - wait_steps + 1; /* policy steps taken after this one; <= 0 while waiting */
    if (s_vec(json_array_get(acts, (size_t)i), a, 7)) {
      CHECK(0, "actions[%d]", i);
      break;
    }
    if (sw_arm_set_action(arm, a, 7, err, sizeof err) || sw_arm_step(arm, m, d, err, sizeof err)) {
      CHECK(0, "step %d: %s", i, err);
      break;
    }
    CHECK(sw_new_warning(d, seen, err, sizeof err) == 0, "task %d trial %d step %d: %s", task, trial, i, err);
#define REF(key, n) (s_vec(json_array_get(json_object_get(run, key), (size_t)i), ref, n) == 0)
    /* The simulation at the end of the step, and the observations as robosuite samples them. */
    if (REF("sim_eef_pos", 3) && (dist = s_dist(ref, d->site_xpos + 3 * arm->eef_site, 3)) > dev->eef) {
      dev->eef = dist;
      dev->eef_step = policy_step;
    }
    if (REF("sim_eef_quat", 4)) {
      sw_arm_eef_quat(arm, d, got);
      dev->quat = fmax(dev->quat, s_quatdiff(ref, got));
    }
    if (REF("sim_gripper_qpos", 2)) {
      got[0] = d->qpos[arm->grip_qpos[0]];
      got[1] = d->qpos[arm->grip_qpos[1]];
      dev->grip = fmax(dev->grip, s_maxabs(ref, got, 2));
    }
    if (REF("eef_pos", 3)) dev->obs_eef = fmax(dev->obs_eef, s_dist(ref, arm->obs_eef_pos, 3));
    if (REF("eef_quat", 4)) dev->obs_quat = fmax(dev->obs_quat, s_quatdiff(ref, arm->obs_eef_quat));
    if (REF("gripper_qpos", 2)) dev->obs_grip = fmax(dev->obs_grip, s_maxabs(ref, arm->obs_grip_qpos, 2));
    if (REF("bowl_pos", 3) && (dist = s_dist(ref, d->xpos + 3 * bowl, 3)) > dev->obj) {
      dev->obj = dist;
      dev->obj_step = policy_step;
    }
    if (REF("plate_pos", 3) && (dist = s_dist(ref, d->xpos + 3 * plate, 3)) > dev->obj) {
      dev->obj = dist;
      dev->obj_step = policy_step;
    }
    if (REF("bowl_quat", 4)) dev->obj_quat = fmax(dev->obj_quat, s_quatdiff(ref, d->xquat + 4 * bowl));
    if (REF("plate_quat", 4)) dev->obj_quat = fmax(dev->obj_quat, s_quatdiff(ref, d->xquat + 4 * plate));
#undef REF
    int succ_ref = json_is_true(json_array_get(json_object_get(run, "success"), (size_t)i));
    int succ = sw_scene_success(s, m, d);
    dev->success_ref += succ_ref;
    if (succ != succ_ref) {
      dev->success_mismatch++;
      if (printed++ < 10)
        printf("  task %d trial %d %s: success after policy step %d: robosuite %d, C %d\n", task, trial, seq,
               policy_step, succ_ref, succ);
    }
    /* The replay repeats the closed loop: the same actions give the same states, bit for bit. */
    if (cl && policy_step >= 1) {
      double cla[7];
      if (s_vec(json_array_get(json_object_get(cl, "actions"), (size_t)(policy_step - 1)), cla, 7) ||
          s_maxabs(cla, a, 7) != 0)
        dev->closed_loop_actions++;
      if (s_vec(json_array_get(json_object_get(cl, "eef_pos"), (size_t)(policy_step - 1)), ref, 3) == 0)
        dev->closed_loop = fmax(dev->closed_loop, s_dist(ref, d->site_xpos + 3 * arm->eef_site, 3));
      if (json_is_true(json_array_get(json_object_get(cl, "success"), (size_t)(policy_step - 1))) != succ)
        dev->closed_loop_success++;
    }
  }
  printf("  task %d trial %d %-6s %d steps (%d wait): sim eef %.2e mm (step %d) quat %.1e gripper %.2e mm objects "
         "%.2e mm (step %d) quat %.1e | obs eef %.2e mm quat %.1e gripper %.2e mm | success steps %d, mismatches %d\n",
         task, trial, seq ? seq : "?", nsteps, wait_steps, 1e3 * dev->eef, dev->eef_step, dev->quat, 1e3 * dev->grip,
         1e3 * dev->obj, dev->obj_step, dev->obj_quat, 1e3 * dev->obs_eef, dev->obs_quat, 1e3 * dev->obs_grip,
         dev->success_ref, dev->success_mismatch);
  free(buf);
out:
  sw_arm_destroy(&arm);
  sw_scene_episode_free(&m, &d);
}

/* Writes j to dir/name (path into out); 0 or -1. */
static int s_write(json_t *j, const char *dir, const char *name, char *out, size_t cap) {
  snprintf(out, cap, "%s/%s", dir, name);
  return json_dump_file(j, out, JSON_COMPACT);
}

int main(int argc, char **argv) {
  int keep_arg = argc == 5 && strcmp(argv[3], "--keep") == 0;
  int ref_arg = argc == 5 && strcmp(argv[3], "--reference") == 0;
  if (argc != 3 && !keep_arg && !ref_arg) {
    fprintf(stderr, "usage: %s PYTHON fidelity_reference.py [--keep DIR | --reference REFERENCE.json]\n", argv[0]);
    return 2;
  }
  sw_guard_install();
  char data[1024];
  sw_data_dir(data, sizeof data);
  double t0 = s_now();
  s_units(data);

  /* The expert's sequences (closed loop in C), robosuite's replay of them and of the random ones, or a saved
   * reference (its expert runs are then compared with robosuite only). */
  char dir[] = "/tmp/osc_test.XXXXXX", ref[1100], acts_path[1100];
  const char *keep = keep_arg ? argv[4] : NULL, *path = ref_arg ? argv[4] : NULL;
  json_t *expert = NULL;
  sw_task_t *tasks[S_NTASKS] = {NULL}; /* loaded once, for the closed loop and the replays */
  int made_dir = 0;
  if (!path) {
    if (!keep && !mkdtemp(dir)) {
      perror("mkdtemp");
      return 1;
    }
    made_dir = !keep;
    const char *out_dir = keep ? keep : dir;
    double t1 = s_now();
    expert = s_expert_runs(data, tasks);
    CHECK(s_write(expert, out_dir, "expert_actions.json", acts_path, sizeof acts_path) == 0, "writing %s", acts_path);
    printf("osc_test: expert closed loop (C) %.1f s\n", s_now() - t1);
    char runs[256] = "";
    for (int p = 0; p < S_NPAIRS; p++)
      snprintf(runs + strlen(runs), sizeof runs - strlen(runs), "%s%d:%d", p ? "," : "", s_pairs[p][0], s_pairs[p][1]);
    snprintf(ref, sizeof ref, "%s/reference.json", out_dir);
    t1 = s_now();
    int rc = s_run_reference(argv[1], argv[2], data, runs, acts_path, ref);
    CHECK(rc == 0, "%s %s exited with %d", argv[1], argv[2], rc);
    printf("osc_test: reference (robosuite) %.1f s\n", s_now() - t1);
    path = ref;
  }
  json_error_t jerr;
  json_t *root = json_load_file(path, 0, &jerr);
  CHECK(root != NULL, "%s:%d: %s", path, jerr.line, jerr.text);
  json_t *runs = json_object_get(root, "runs");
  CHECK(json_array_size(runs) > 0, "no runs in %s", path);
  int wait_steps = (int)json_integer_value(json_object_get(root, "wait_steps"));
  CHECK(wait_steps == S_WAIT_STEPS, "%s: wait_steps %d, LIBERO's are %d", path, wait_steps, S_WAIT_STEPS);
  double t2 = s_now(), eef = 0, obj = 0, obj_quat = 0, grip = 0;
  int mism = 0, nexpert = 0, expert_success = 0;
  size_t i;
  json_t *run;
  json_array_foreach(runs, i, run) {
    int task = (int)json_integer_value(json_object_get(run, "task"));
    int trial = (int)json_integer_value(json_object_get(run, "trial"));
    const char *seq = json_string_value(json_object_get(run, "sequence"));
    sw_task_t *t = s_task(data, tasks, task);
    if (!t) continue;
    json_t *cl = s_closed_loop(expert, task, trial, seq);
    s_dev_t dev;
    s_replay(data, t->scene, run, cl, wait_steps, &dev);
    CHECK(dev.eef <= EEF_TOL_M, "task %d trial %d %s: eef deviates %.4f mm (step %d)", task, trial, seq, 1e3 * dev.eef,
          dev.eef_step);
    CHECK(dev.obs_eef <= EEF_TOL_M, "task %d trial %d %s: observed eef deviates %.4f mm", task, trial, seq,
          1e3 * dev.obs_eef);
    CHECK(dev.grip <= GRIP_TOL_M && dev.obs_grip <= GRIP_TOL_M,
          "task %d trial %d %s: gripper deviates %.4f mm (observed %.4f mm)", task, trial, seq, 1e3 * dev.grip,
          1e3 * dev.obs_grip);
    CHECK(dev.quat <= QUAT_TOL && dev.obs_quat <= QUAT_TOL,
          "task %d trial %d %s: eef quaternion deviates %.2e (observed %.2e)", task, trial, seq, dev.quat, dev.obs_quat);
    CHECK(dev.obj <= OBJ_TOL_M, "task %d trial %d %s: objects deviate %.4f mm (step %d)", task, trial, seq,
          1e3 * dev.obj, dev.obj_step);
    CHECK(dev.obj_quat <= QUAT_TOL, "task %d trial %d %s: object quaternions deviate %.2e", task, trial, seq,
          dev.obj_quat);
    CHECK(dev.success_mismatch == 0, "task %d trial %d %s: success differs on %d steps", task, trial, seq,
          dev.success_mismatch);
    if (cl) {
      CHECK(dev.closed_loop_actions == 0 && dev.closed_loop == 0 && dev.closed_loop_success == 0,
            "task %d trial %d: the C replay strays from the C closed loop: %d actions differ, eef by %g m, success "
            "on %d steps",
            task, trial, dev.closed_loop_actions, dev.closed_loop, dev.closed_loop_success);
      nexpert++;
      expert_success += dev.success_ref > 0;
    }
    eef = fmax(eef, dev.eef);
    obj = fmax(obj, dev.obj);
    obj_quat = fmax(obj_quat, dev.obj_quat);
    grip = fmax(grip, dev.grip);
    mism += dev.success_mismatch;
  }
  for (int t = 0; t < S_NTASKS; t++) sw_task_destroy(&tasks[t]);
  if (expert) {
    /* every expert sequence was replayed, and the success flag was compared while true */
    CHECK(nexpert == S_NPAIRS, "%d of %d expert sequences came back from robosuite", nexpert, S_NPAIRS);
    CHECK(expert_success > 0,
          "no expert sequence reached success in robosuite: the flag was compared only while false");
  }
  printf("osc_test: C replay %.1f s; max deviation over %zu runs: eef %.2e mm, gripper %.2e mm, objects %.2e mm "
         "(quaternion %.1e), success mismatches %d\n",
         s_now() - t2, json_array_size(runs), 1e3 * eef, 1e3 * grip, 1e3 * obj, obj_quat, mism);
  json_decref(root);
  json_decref(expert);
  if (made_dir) {
    unlink(ref);
    unlink(acts_path);
    rmdir(dir);
  }
  printf("osc_test: total %.1f s\n", s_now() - t0);
  return check_summary("osc_test");
}
