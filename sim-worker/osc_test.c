/* osc_test.c: the C OSC_POSE/Panda gripper controller (osc.c) against robosuite itself.
 *
 * Usage: osc_test PYTHON fidelity_reference.py [REFERENCE.json]
 * Runs fidelity_reference.py with the project's Python (robosuite + LIBERO) into a temporary directory (or
 * reads REFERENCE.json when given), then replays every recorded action sequence in C from the same initial
 * state (sw_scene_episode + sw_arm_reset) and compares, step by step: the eef position and quaternion, the
 * gripper joints, the bowl's and plate's positions and LIBERO's success flag. Also checks action validation
 * (length, NaN/Inf named by index), clipping and scaling like robosuite's scale_action, and the goal a first
 * step sets. Needs the exported scenes (ops/setup.sh). */
#include "check.h"
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
 * the design's (DESIGN.md section 5); measured: eef 0.0045 mm, gripper 0.0003 mm, objects 0.00005 mm (the C side
 * and robosuite apply the same controls to 1e-10 N m; what remains is floating-point order amplified by
 * contacts), so the gripper and object bounds sit far below the eef's and would catch a real mismatch. */
#define EEF_TOL_M 0.002   /* eef position, simulated and observed */
#define GRIP_TOL_M 1e-5   /* gripper joints */
#define OBJ_TOL_M 1e-5    /* bowl and plate positions */

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

/* --- fidelity against robosuite ------------------------------------------------------------------------- */

typedef struct {
  double eef, quat, grip, obj, start_goal;
  double obs_eef, obs_quat, obs_grip; /* the sampled observations (robot0_eef_pos, _quat, gripper_qpos) */
  int success_mismatch, success_ref;
} s_dev_t;

static int s_run_reference(const char *python, const char *script, const char *data, const char *out) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execl(python, python, script, out, "--data", data, (char *)NULL);
    fprintf(stderr, "exec %s: %s\n", python, strerror(errno));
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void s_replay(const char *data, json_t *run, int wait_steps, s_dev_t *dev) {
  char err[512];
  int task = (int)json_integer_value(json_object_get(run, "task"));
  int trial = (int)json_integer_value(json_object_get(run, "trial"));
  const char *seq = json_string_value(json_object_get(run, "sequence"));
  memset(dev, 0, sizeof *dev);
  sw_scene_t *s = sw_scene_load(data, SUITE, task, err, sizeof err);
  CHECK(s != NULL, "load task %d: %s", task, err);
  if (!s) return;
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
  int nsteps = (int)json_array_size(acts);
  int seen[mjNWARNING] = {0};
  for (int i = 0; i < nsteps && bowl >= 0 && plate >= 0; i++) {
    double a[7], ref[4], got[4];
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
    if (REF("sim_eef_pos", 3)) dev->eef = fmax(dev->eef, s_dist(ref, d->site_xpos + 3 * arm->eef_site, 3));
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
    if (REF("bowl_pos", 3)) dev->obj = fmax(dev->obj, s_dist(ref, d->xpos + 3 * bowl, 3));
    if (REF("plate_pos", 3)) dev->obj = fmax(dev->obj, s_dist(ref, d->xpos + 3 * plate, 3));
#undef REF
    int succ_ref = json_is_true(json_array_get(json_object_get(run, "success"), (size_t)i));
    int succ = sw_scene_success(s, m, d);
    dev->success_ref += succ_ref;
    if (succ != succ_ref) dev->success_mismatch++;
  }
  printf("  task %d trial %d %-8s %d steps (%d wait): sim eef %.2e mm quat %.1e gripper %.2e mm objects %.2e mm | "
         "obs eef %.2e mm quat %.1e gripper %.2e mm | success steps %d, mismatches %d\n",
         task, trial, seq ? seq : "?", nsteps, wait_steps, 1e3 * dev->eef, dev->quat, 1e3 * dev->grip, 1e3 * dev->obj,
         1e3 * dev->obs_eef, dev->obs_quat, 1e3 * dev->obs_grip, dev->success_ref, dev->success_mismatch);
  free(buf);
out:
  sw_arm_destroy(&arm);
  sw_scene_episode_free(&m, &d);
  sw_scene_destroy(&s);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s PYTHON fidelity_reference.py [REFERENCE.json]\n", argv[0]);
    return 2;
  }
  sw_guard_install();
  char data[1024];
  sw_data_dir(data, sizeof data);
  double t0 = s_now();
  s_units(data);

  char dir[] = "/tmp/osc_test.XXXXXX", ref[1100];
  const char *path = argc > 3 ? argv[3] : NULL;
  int made_dir = 0;
  if (!path) {
    if (!mkdtemp(dir)) {
      perror("mkdtemp");
      return 1;
    }
    made_dir = 1;
    snprintf(ref, sizeof ref, "%s/reference.json", dir);
    double t1 = s_now();
    int rc = s_run_reference(argv[1], argv[2], data, ref);
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
  double t2 = s_now(), eef = 0, obj = 0, grip = 0;
  int mism = 0;
  size_t i;
  json_t *run;
  json_array_foreach(runs, i, run) {
    s_dev_t dev;
    s_replay(data, run, wait_steps, &dev);
    int task = (int)json_integer_value(json_object_get(run, "task"));
    int trial = (int)json_integer_value(json_object_get(run, "trial"));
    CHECK(dev.eef <= EEF_TOL_M, "task %d trial %d: eef deviates %.4f mm", task, trial, 1e3 * dev.eef);
    CHECK(dev.obs_eef <= EEF_TOL_M, "task %d trial %d: observed eef deviates %.4f mm", task, trial, 1e3 * dev.obs_eef);
    CHECK(dev.grip <= GRIP_TOL_M && dev.obs_grip <= GRIP_TOL_M, "task %d trial %d: gripper deviates %.4f mm (observed %.4f mm)",
          task, trial, 1e3 * dev.grip, 1e3 * dev.obs_grip);
    CHECK(dev.quat <= 1e-4 && dev.obs_quat <= 1e-4, "task %d trial %d: eef quaternion deviates %.2e (observed %.2e)", task,
          trial, dev.quat, dev.obs_quat);
    CHECK(dev.obj <= OBJ_TOL_M, "task %d trial %d: objects deviate %.4f mm", task, trial, 1e3 * dev.obj);
    CHECK(dev.success_mismatch == 0, "task %d trial %d: success differs on %d steps", task, trial, dev.success_mismatch);
    eef = fmax(eef, dev.eef);
    obj = fmax(obj, dev.obj);
    grip = fmax(grip, dev.grip);
    mism += dev.success_mismatch;
  }
  printf("osc_test: C replay %.1f s; max deviation over %zu runs: eef %.5f mm, gripper %.5f mm, objects %.5f mm, "
         "success mismatches %d\n",
         s_now() - t2, json_array_size(runs), 1e3 * eef, 1e3 * grip, 1e3 * obj, mism);
  json_decref(root);
  if (made_dir) {
    unlink(ref);
    rmdir(dir);
  }
  printf("osc_test: total %.1f s\n", s_now() - t0);
  return check_summary("osc_test");
}
