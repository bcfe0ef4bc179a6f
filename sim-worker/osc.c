/* osc.c: robosuite 1.4.0's OSC_POSE controller and PandaGripper, per physics substep (see osc.h).
 *
 * The sources this follows, and where: robosuite/environments/base.py step() (substeps, policy_step on the
 * first), robots/single_arm.py control() (set_goal, run_controller, torque clipping, gripper, ctrl),
 * controllers/base_controller.py (update, scale_action), controllers/osc.py (set_goal, run_controller),
 * utils/control_utils.py (opspace_matrices, nullspace_torques, orientation_error, set_goal_orientation),
 * utils/transform_utils.py (axisangle2quat, quat2mat, quat2axisangle), models/grippers/panda_gripper.py
 * (format_action) and robots/manipulator.py (grip_action). Owns no MuJoCo objects. */
#include "osc.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N SW_ARM_DOF

static int s_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* --- task.json ----------------------------------------------------------------------------------------- */

static int s_names(json_t *obj, const char *key, int n, char (*out)[SW_ARM_NAME], const char *file, char *err,
                   size_t errlen) {
  json_t *a = json_object_get(obj, key);
  if (!json_is_array(a) || (int)json_array_size(a) != n)
    return s_fail(err, errlen, "%s: robot.%s must list %d names", file, key, n);
  for (int i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(a, (size_t)i));
    if (!s || strlen(s) >= SW_ARM_NAME) return s_fail(err, errlen, "%s: robot.%s[%d] is not a short string", file, key, i);
    snprintf(out[i], SW_ARM_NAME, "%s", s);
  }
  return 0;
}

/* robosuite's nums2array: a number for every dimension, or a list of exactly n. */
static int s_nums(json_t *obj, const char *key, int n, double *out, const char *file, char *err, size_t errlen) {
  json_t *v = json_object_get(obj, key);
  if (json_is_number(v)) {
    for (int i = 0; i < n; i++) out[i] = json_number_value(v);
    return 0;
  }
  if (!json_is_array(v) || (int)json_array_size(v) != n)
    return s_fail(err, errlen, "%s: controller.%s must be a number or a list of %d", file, key, n);
  for (int i = 0; i < n; i++) {
    json_t *x = json_array_get(v, (size_t)i);
    if (!json_is_number(x)) return s_fail(err, errlen, "%s: controller.%s[%d] is not a number", file, key, i);
    out[i] = json_number_value(x);
  }
  return 0;
}

static int s_expect(json_t *ctl, const char *key, json_t *want, const char *file, char *err, size_t errlen) {
  json_t *v = json_object_get(ctl, key);
  int ok = v && json_equal(v, want);
  if (!ok) {
    char *got = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL, *exp = json_dumps(want, JSON_ENCODE_ANY);
    s_fail(err, errlen, "%s: controller.%s is %s; rsd reproduces only %s", file, key, got ? got : "missing",
           exp ? exp : "?");
    free(got);
    free(exp);
  }
  json_decref(want);
  return ok ? 0 : -1;
}

static int s_read_config(json_t *t, sw_arm_config_t *c, const char *file, char *err, size_t errlen) {
  json_t *robot = json_object_get(t, "robot"), *ctl = json_object_get(t, "controller");
  if (!json_is_object(robot) || !json_is_object(ctl)) return s_fail(err, errlen, "%s: robot or controller missing", file);
  const char *name = json_string_value(json_object_get(robot, "name"));
  const char *gripper = json_string_value(json_object_get(robot, "gripper"));
  const char *type = json_string_value(json_object_get(ctl, "type"));
  if (!name || !strstr(name, "Panda") || !gripper || strcmp(gripper, "PandaGripper") != 0)
    return s_fail(err, errlen, "%s: robot %s with %s: only a Panda with PandaGripper is implemented", file,
                  name ? name : "?", gripper ? gripper : "?");
  if (!type || strcmp(type, "OSC_POSE") != 0)
    return s_fail(err, errlen, "%s: controller.type '%s': only OSC_POSE is implemented", file, type ? type : "?");
  if (s_expect(ctl, "impedance_mode", json_string("fixed"), file, err, errlen) ||
      s_expect(ctl, "uncouple_pos_ori", json_true(), file, err, errlen) ||
      s_expect(ctl, "control_delta", json_true(), file, err, errlen) ||
      s_expect(ctl, "control_ori", json_true(), file, err, errlen) ||
      s_expect(ctl, "interpolation", json_null(), file, err, errlen) ||
      s_expect(ctl, "position_limits", json_null(), file, err, errlen) ||
      s_expect(ctl, "orientation_limits", json_null(), file, err, errlen))
    return -1;
  if (s_names(robot, "arm_joints", N, c->arm_joints, file, err, errlen) ||
      s_names(robot, "arm_actuators", N, c->arm_actuators, file, err, errlen) ||
      s_names(robot, "gripper_joints", 2, c->gripper_joints, file, err, errlen) ||
      s_names(robot, "gripper_actuators", 2, c->gripper_actuators, file, err, errlen))
    return -1;
  const char *site = json_string_value(json_object_get(robot, "eef_site"));
  if (!site || strlen(site) >= SW_ARM_NAME) return s_fail(err, errlen, "%s: robot.eef_site missing", file);
  snprintf(c->eef_site, sizeof c->eef_site, "%s", site);
  /* robosuite's Panda eef_name is "right_hand" under the robot's naming prefix ("robot0_"); task.json does not
   * carry it, the prefix is that of the arm joints. */
  const char *us = strchr(c->arm_joints[0], '_');
  if (!us) return s_fail(err, errlen, "%s: arm joint '%s' has no robot prefix", file, c->arm_joints[0]);
  snprintf(c->eef_body, sizeof c->eef_body, "%.*sright_hand", (int)(us - c->arm_joints[0] + 1), c->arm_joints[0]);
  json_t *q = json_object_get(robot, "init_qpos");
  if (!json_is_array(q) || json_array_size(q) != N) return s_fail(err, errlen, "%s: robot.init_qpos needs %d values", file, N);
  for (int i = 0; i < N; i++) c->init_qpos[i] = json_number_value(json_array_get(q, (size_t)i));
  json_t *speed = json_object_get(robot, "gripper_speed");
  c->gripper_speed = json_is_number(speed) ? json_number_value(speed) : 0.01;
  if (s_nums(ctl, "input_min", 6, c->input_min, file, err, errlen) ||
      s_nums(ctl, "input_max", 6, c->input_max, file, err, errlen) ||
      s_nums(ctl, "output_min", 6, c->output_min, file, err, errlen) ||
      s_nums(ctl, "output_max", 6, c->output_max, file, err, errlen) || s_nums(ctl, "kp", 6, c->kp, file, err, errlen) ||
      s_nums(ctl, "damping_ratio", 6, c->damping_ratio, file, err, errlen))
    return -1;
  for (int i = 0; i < 6; i++)
    if (!(c->input_max[i] > c->input_min[i]))
      return s_fail(err, errlen, "%s: controller input range [%g, %g] is empty", file, c->input_min[i], c->input_max[i]);
  c->substeps = (int)json_integer_value(json_object_get(t, "substeps_per_control_step"));
  if (c->substeps < 1) return s_fail(err, errlen, "%s: substeps_per_control_step missing", file);
  return 0;
}

int sw_arm_config_load(const char *task_json, sw_arm_config_t *cfg, char *err, size_t errlen) {
  memset(cfg, 0, sizeof *cfg);
  json_error_t jerr;
  json_t *t = json_load_file(task_json, 0, &jerr);
  if (!t) return s_fail(err, errlen, "%s:%d: %s", task_json, jerr.line, jerr.text);
  int rc = s_read_config(t, cfg, task_json, err, errlen);
  json_decref(t);
  return rc;
}

/* --- small linear algebra ------------------------------------------------------------------------------ */

/* Pseudo-inverse of a symmetric n x n matrix (n <= 6) as numpy's pinv computes it (singular values below
 * 1e-15 of the largest are dropped), through a cyclic Jacobi eigen-decomposition. */
static void s_pinv_sym(const double *a, int n, double *out) {
  double A[36], V[36];
  memcpy(A, a, sizeof(double) * (size_t)(n * n));
  for (int i = 0; i < n * n; i++) V[i] = 0;
  for (int i = 0; i < n; i++) V[i * n + i] = 1;
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0, diag = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        if (i == j)
          diag += A[i * n + j] * A[i * n + j];
        else
          off += A[i * n + j] * A[i * n + j];
      }
    if (off <= 1e-32 * diag || off == 0) break;
    for (int p = 0; p < n - 1; p++)
      for (int q = p + 1; q < n; q++) {
        double apq = A[p * n + q];
        if (apq == 0) continue;
        double theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
        double c = 1 / sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; k++) { /* A = A J */
          double akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; k++) { /* A = J^T A */
          double apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < n; k++) {
          double vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  double maxabs = 0, inv[6];
  for (int i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(A[i * n + i]));
  for (int i = 0; i < n; i++) inv[i] = fabs(A[i * n + i]) > 1e-15 * maxabs ? 1 / A[i * n + i] : 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int k = 0; k < n; k++) s += V[i * n + k] * inv[k] * V[j * n + k];
      out[i * n + j] = s;
    }
}

/* Inverse of the (symmetric positive definite) n x n arm mass matrix, by Gauss-Jordan with partial pivoting
 * (numpy's inv is LU with partial pivoting). */
static void s_inv(const double *a, int n, double *out) {
  double A[N * N];
  memcpy(A, a, sizeof(double) * (size_t)(n * n));
  for (int i = 0; i < n * n; i++) out[i] = 0;
  for (int i = 0; i < n; i++) out[i * n + i] = 1;
  for (int c = 0; c < n; c++) {
    int piv = c;
    for (int r = c + 1; r < n; r++)
      if (fabs(A[r * n + c]) > fabs(A[piv * n + c])) piv = r;
    if (piv != c)
      for (int k = 0; k < n; k++) {
        double t = A[c * n + k];
        A[c * n + k] = A[piv * n + k];
        A[piv * n + k] = t;
        t = out[c * n + k];
        out[c * n + k] = out[piv * n + k];
        out[piv * n + k] = t;
      }
    double d = A[c * n + c];
    for (int k = 0; k < n; k++) {
      A[c * n + k] /= d;
      out[c * n + k] /= d;
    }
    for (int r = 0; r < n; r++) {
      if (r == c || A[r * n + c] == 0) continue;
      double f = A[r * n + c];
      for (int k = 0; k < n; k++) {
        A[r * n + k] -= f * A[c * n + k];
        out[r * n + k] -= f * out[c * n + k];
      }
    }
  }
}

/* transform_utils.quat2mat, which computes in float32: q (w x y z here) -> row-major 3x3. */
static void s_quat2mat_f32(const double wxyz[4], double R[9]) {
  float q[4] = {(float)wxyz[0], (float)wxyz[1], (float)wxyz[2], (float)wxyz[3]};
  float n = q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3];
  if ((double)n < 4.0 * 2.220446049250313e-16) {
    for (int i = 0; i < 9; i++) R[i] = (i % 4 == 0);
    return;
  }
  float s = (float)sqrt((double)(2.0f / n));
  for (int i = 0; i < 4; i++) q[i] *= s;
  float q2[4][4];
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 4; j++) q2[i][j] = q[i] * q[j];
  float r[9] = {1.0f - q2[2][2] - q2[3][3], q2[1][2] - q2[3][0], q2[1][3] + q2[2][0],
                q2[1][2] + q2[3][0], 1.0f - q2[1][1] - q2[3][3], q2[2][3] - q2[1][0],
                q2[1][3] - q2[2][0], q2[2][3] + q2[1][0], 1.0f - q2[1][1] - q2[2][2]};
  for (int i = 0; i < 9; i++) R[i] = (double)r[i];
}

/* --- the arm --------------------------------------------------------------------------------------------- */

/* What robosuite's Controller.update() reads: eef site pose and velocity, the site Jacobian's arm columns, the
 * arm block of the mass matrix, the arm joints. */
typedef struct {
  double ee_pos[3], ee_ori[9], vel[6];
  double J[6][N], M[N * N], q[N], qd[N];
} s_view_t;

/* Reads the view from d (position and velocity stages computed). */
static void s_read_view(sw_arm_t *arm, const mjModel *m, const mjData *d, s_view_t *v) {
  const int nv = m->nv;
  double *full = arm->scratch, *jacp = full + nv * nv, *jacr = jacp + 3 * nv;
  memcpy(v->ee_pos, d->site_xpos + 3 * arm->eef_site, sizeof v->ee_pos);
  memcpy(v->ee_ori, d->site_xmat + 9 * arm->eef_site, sizeof v->ee_ori);
  mj_jacSite(m, d, jacp, jacr, arm->eef_site);
  for (int k = 0; k < 6; k++) v->vel[k] = 0;
  for (int k = 0; k < 3; k++)
    for (int j = 0; j < nv; j++) {
      v->vel[k] += jacp[k * nv + j] * d->qvel[j];
      v->vel[3 + k] += jacr[k * nv + j] * d->qvel[j];
    }
  for (int k = 0; k < 3; k++)
    for (int i = 0; i < N; i++) {
      v->J[k][i] = jacp[k * nv + arm->dof[i]];
      v->J[3 + k][i] = jacr[k * nv + arm->dof[i]];
    }
  mj_fullM(m, full, d->qM);
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) v->M[i * N + j] = full[arm->dof[i] * nv + arm->dof[j]];
    v->q[i] = d->qpos[arm->qpos[i]];
    v->qd[i] = d->qvel[arm->dof[i]];
  }
}

/* The view robosuite's controller caches when it is built at reset (see sw_arm_reset). */
static void s_reset_view(const sw_arm_t *arm, s_view_t *v) {
  memcpy(v->ee_pos, arm->reset_pos, sizeof v->ee_pos);
  memcpy(v->ee_ori, arm->reset_ori, sizeof v->ee_ori);
  memcpy(v->J, arm->reset_jac, sizeof v->J);
  memcpy(v->M, arm->reset_mass, sizeof v->M);
  memcpy(v->q, arm->cfg.init_qpos, sizeof v->q);
  for (int i = 0; i < 6; i++) v->vel[i] = 0;
  for (int i = 0; i < N; i++) v->qd[i] = 0;
}

static int s_lookup(const mjModel *m, mjtObj type, const char *name, const char *what, char *err, size_t errlen) {
  int id = mj_name2id(m, type, name);
  if (id < 0) s_fail(err, errlen, "%s '%s' is not in the model", what, name);
  return id;
}

void sw_arm_destroy(sw_arm_t **self_p) {
  if (!self_p || !*self_p) return;
  free((*self_p)->scratch);
  free(*self_p);
  *self_p = NULL;
}

sw_arm_t *sw_arm_new(const mjModel *m, const sw_arm_config_t *cfg, char *err, size_t errlen) {
  if (m->opt.integrator == mjINT_RK4) {
    s_fail(err, errlen, "the RK4 integrator is not supported (the controller runs between mj_step1 and mj_step2)");
    return NULL;
  }
  sw_arm_t *a = calloc(1, sizeof *a);
  if (!a || !(a->scratch = malloc(sizeof(double) * (size_t)(m->nv * m->nv + 6 * m->nv)))) {
    if (a) free(a);
    s_fail(err, errlen, "out of memory");
    return NULL;
  }
  a->cfg = *cfg;
  a->nv = m->nv;
  for (int i = 0; i < N; i++) {
    int j = s_lookup(m, mjOBJ_JOINT, cfg->arm_joints[i], "arm joint", err, errlen);
    if (j < 0 || (a->act[i] = s_lookup(m, mjOBJ_ACTUATOR, cfg->arm_actuators[i], "arm actuator", err, errlen)) < 0)
      goto fail;
    if (m->jnt_type[j] != mjJNT_HINGE) {
      s_fail(err, errlen, "arm joint '%s' is not a hinge", cfg->arm_joints[i]);
      goto fail;
    }
    a->qpos[i] = m->jnt_qposadr[j];
    a->dof[i] = m->jnt_dofadr[j];
  }
  for (int i = 0; i < 2; i++) {
    int j = s_lookup(m, mjOBJ_JOINT, cfg->gripper_joints[i], "gripper joint", err, errlen);
    if (j < 0 ||
        (a->grip_act[i] = s_lookup(m, mjOBJ_ACTUATOR, cfg->gripper_actuators[i], "gripper actuator", err, errlen)) < 0)
      goto fail;
    a->grip_qpos[i] = m->jnt_qposadr[j];
  }
  if ((a->eef_site = s_lookup(m, mjOBJ_SITE, cfg->eef_site, "eef site", err, errlen)) < 0 ||
      (a->eef_body = s_lookup(m, mjOBJ_BODY, cfg->eef_body, "eef body", err, errlen)) < 0)
    goto fail;
  for (int i = 0; i < 6; i++) a->kd[i] = 2 * sqrt(cfg->kp[i]) * cfg->damping_ratio[i];

  /* The state a robosuite reset leaves: its controller is built with the arm at init_qpos (no initialization
   * noise in LIBERO), everything else at qpos0 and qvel 0, and caches what it reads there. */
  mjData *d = mj_makeData(m);
  if (!d) {
    s_fail(err, errlen, "out of memory");
    goto fail;
  }
  for (int i = 0; i < N; i++) d->qpos[a->qpos[i]] = cfg->init_qpos[i];
  mj_forward(m, d);
  s_view_t v;
  s_read_view(a, m, d, &v);
  memcpy(a->reset_pos, v.ee_pos, sizeof a->reset_pos);
  memcpy(a->reset_ori, v.ee_ori, sizeof a->reset_ori);
  memcpy(a->reset_jac, v.J, sizeof a->reset_jac);
  memcpy(a->reset_mass, v.M, sizeof a->reset_mass);
  mj_deleteData(d);
  sw_arm_reset(a);
  return a;
fail:
  sw_arm_destroy(&a);
  return NULL;
}

void sw_arm_reset(sw_arm_t *arm) {
  memcpy(arm->goal_pos, arm->reset_pos, sizeof arm->goal_pos);
  memcpy(arm->goal_ori, arm->reset_ori, sizeof arm->goal_ori);
  arm->grip_cmd[0] = arm->grip_cmd[1] = 0;
  memset(arm->action, 0, sizeof arm->action);
  arm->have_action = false;
  arm->stale = true;
  /* env.reset() and set_init_state() each force one observable update, which also advances the clock by one
   * model timestep. */
  arm->obs_clock = 0.002 + 0.002;
  arm->obs_sampled = true;
}

int sw_arm_set_action(sw_arm_t *arm, const double *action, int n, char *err, size_t errlen) {
  if (!action) return s_fail(err, errlen, "action is NULL");
  if (n != SW_ACTION_DIM)
    return s_fail(err, errlen, "action has %d values; OSC_POSE with a gripper takes %d (dpos 3, daxis-angle 3, gripper 1)",
                  n, SW_ACTION_DIM);
  for (int i = 0; i < n; i++)
    if (!isfinite(action[i])) return s_fail(err, errlen, "action[%d] is %g: actions must be finite", i, action[i]);
  memcpy(arm->action, action, sizeof arm->action);
  arm->have_action = true;
  return 0;
}

void sw_arm_scale_action(const sw_arm_t *arm, const double in[6], double out[6]) {
  const sw_arm_config_t *c = &arm->cfg;
  for (int i = 0; i < 6; i++) {
    double scale = fabs(c->output_max[i] - c->output_min[i]) / fabs(c->input_max[i] - c->input_min[i]);
    double out_t = (c->output_max[i] + c->output_min[i]) / 2.0, in_t = (c->input_max[i] + c->input_min[i]) / 2.0;
    double x = in[i] < c->input_min[i] ? c->input_min[i] : in[i] > c->input_max[i] ? c->input_max[i] : in[i];
    out[i] = (x - in_t) * scale + out_t;
  }
}

/* osc.py set_goal (delta mode, fixed impedance): goal_pos = eef + delta; goal_ori = R(delta) eef_ori, but only
 * when some rotation input is nonzero (robosuite's math.isclose(x, 0.0), i.e. x == 0). */
static void s_set_goal(sw_arm_t *arm, const s_view_t *v) {
  double sd[6];
  sw_arm_scale_action(arm, arm->action, sd);
  const double *ee_pos = v->ee_pos, *ee_ori = v->ee_ori;
  if (sd[3] != 0 || sd[4] != 0 || sd[5] != 0) {
    double angle = sqrt(sd[3] * sd[3] + sd[4] * sd[4] + sd[5] * sd[5]);
    double q[4] = {1, 0, 0, 0}; /* w x y z */
    if (angle != 0) {
      q[0] = cos(angle / 2.0);
      for (int i = 0; i < 3; i++) q[1 + i] = sd[3 + i] / angle * sin(angle / 2.0);
    }
    double R[9];
    s_quat2mat_f32(q, R);
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 3; j++)
        arm->goal_ori[3 * i + j] = R[3 * i] * ee_ori[j] + R[3 * i + 1] * ee_ori[3 + j] + R[3 * i + 2] * ee_ori[6 + j];
  }
  for (int i = 0; i < 3; i++) arm->goal_pos[i] = ee_pos[i] + sd[i];
}

/* osc.py run_controller + single_arm.py control: arm torques (clipped to the actuators' ctrlrange) and the
 * gripper controls, written into d->ctrl, from the view v; the gravity compensation is d's qfrc_bias. */
static void s_control(sw_arm_t *arm, const mjModel *m, mjData *d, const s_view_t *v) {
  const sw_arm_config_t *c = &arm->cfg;
  const double *ee_pos = v->ee_pos, *ee_ori = v->ee_ori, *vel = v->vel, *M = v->M, *q = v->q, *qd = v->qd;
  const double(*J)[N] = v->J;
  double Minv[N * N];
  s_inv(M, N, Minv);

  /* opspace_matrices: lambda = pinv(J M^-1 J^T), for the full, position and orientation Jacobians. */
  double JMinv[6][N], Lfull_inv[36], Lpos_inv[9], Lori_inv[9], Lfull[36], Lpos[9], Lori[9];
  for (int r = 0; r < 6; r++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < N; k++) s += J[r][k] * Minv[k * N + j];
      JMinv[r][j] = s;
    }
  for (int r = 0; r < 6; r++)
    for (int s2 = 0; s2 < 6; s2++) {
      double s = 0;
      for (int k = 0; k < N; k++) s += JMinv[r][k] * J[s2][k];
      Lfull_inv[r * 6 + s2] = s;
    }
  for (int r = 0; r < 3; r++)
    for (int s2 = 0; s2 < 3; s2++) {
      Lpos_inv[r * 3 + s2] = Lfull_inv[r * 6 + s2];
      Lori_inv[r * 3 + s2] = Lfull_inv[(3 + r) * 6 + 3 + s2];
    }
  s_pinv_sym(Lfull_inv, 6, Lfull);
  s_pinv_sym(Lpos_inv, 3, Lpos);
  s_pinv_sym(Lori_inv, 3, Lori);
  /* nullspace = I - Jbar J, Jbar = M^-1 J^T lambda_full */
  double MinvJT[N][6], Jbar[N][6], Ns[N * N];
  for (int i = 0; i < N; i++)
    for (int r = 0; r < 6; r++) {
      double s = 0;
      for (int k = 0; k < N; k++) s += Minv[i * N + k] * J[r][k];
      MinvJT[i][r] = s;
    }
  for (int i = 0; i < N; i++)
    for (int r = 0; r < 6; r++) {
      double s = 0;
      for (int k = 0; k < 6; k++) s += MinvJT[i][k] * Lfull[k * 6 + r];
      Jbar[i][r] = s;
    }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < 6; k++) s += Jbar[i][k] * J[k][j];
      Ns[i * N + j] = (i == j ? 1.0 : 0.0) - s;
    }

  /* Desired force and torque: kp error - kd velocity; orientation_error(goal, current). */
  double force[3], torque[3], err[3] = {0};
  for (int k = 0; k < 3; k++) { /* 0.5 sum_j cross(rc_j, rd_j), columns of the matrices */
    int a1 = (k + 1) % 3, a2 = (k + 2) % 3;
    for (int j = 0; j < 3; j++)
      err[k] += ee_ori[3 * a1 + j] * arm->goal_ori[3 * a2 + j] - ee_ori[3 * a2 + j] * arm->goal_ori[3 * a1 + j];
  }
  for (int k = 0; k < 3; k++) {
    err[k] *= 0.5;
    force[k] = (arm->goal_pos[k] - ee_pos[k]) * c->kp[k] + (-vel[k]) * arm->kd[k];
    torque[k] = err[k] * c->kp[3 + k] + (-vel[3 + k]) * arm->kd[3 + k];
  }
  double wrench[6];
  for (int r = 0; r < 3; r++) {
    wrench[r] = Lpos[r * 3] * force[0] + Lpos[r * 3 + 1] * force[1] + Lpos[r * 3 + 2] * force[2];
    wrench[3 + r] = Lori[r * 3] * torque[0] + Lori[r * 3 + 1] * torque[1] + Lori[r * 3 + 2] * torque[2];
  }
  /* nullspace_torques: N^T M (kp (q0 - q) - kv qd), kp 10, kv 2 sqrt(10) */
  const double jkp = 10, jkv = sqrt(jkp) * 2;
  double pose[N], posetq[N];
  for (int i = 0; i < N; i++) pose[i] = jkp * (c->init_qpos[i] - q[i]) - jkv * qd[i];
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int k = 0; k < N; k++) s += M[i * N + k] * pose[k];
    posetq[i] = s;
  }
  for (int i = 0; i < N; i++) {
    double t = 0;
    for (int r = 0; r < 6; r++) t += J[r][i] * wrench[r];
    t += d->qfrc_bias[arm->dof[i]];
    double ns = 0;
    for (int k = 0; k < N; k++) ns += Ns[k * N + i] * posetq[k];
    t += ns;
    const double *range = m->actuator_ctrlrange + 2 * arm->act[i];
    d->ctrl[arm->act[i]] = t < range[0] ? range[0] : t > range[1] ? range[1] : t;
  }

  /* PandaGripper.format_action: the command moves by speed * sign(action) per substep, [-1, 1]; grip_action maps
   * it onto the actuators' ctrlrange. */
  double g = arm->action[6], sign = g > 0 ? 1.0 : g < 0 ? -1.0 : 0.0;
  const double dir[2] = {-1.0, 1.0};
  for (int i = 0; i < 2; i++) {
    double v = arm->grip_cmd[i] + dir[i] * c->gripper_speed * sign;
    arm->grip_cmd[i] = v < -1.0 ? -1.0 : v > 1.0 ? 1.0 : v;
    const double *range = m->actuator_ctrlrange + 2 * arm->grip_act[i];
    double bias = 0.5 * (range[1] + range[0]), weight = 0.5 * (range[1] - range[0]);
    d->ctrl[arm->grip_act[i]] = bias + weight * arm->grip_cmd[i];
  }
}

void sw_arm_sample(sw_arm_t *arm, const mjData *d) {
  memcpy(arm->obs_eef_pos, d->site_xpos + 3 * arm->eef_site, sizeof arm->obs_eef_pos);
  sw_arm_eef_quat(arm, d, arm->obs_eef_quat);
  arm->obs_grip_qpos[0] = d->qpos[arm->grip_qpos[0]];
  arm->obs_grip_qpos[1] = d->qpos[arm->grip_qpos[1]];
}

/* robosuite's Observable.update after each sim.step (delay 0, sampling rate = control frequency): sample at
 * the first update of each period; a period ends when the clock reaches the sampling timestep. */
static void s_observe(sw_arm_t *arm, const mjModel *m, const mjData *d) {
  const double dt = 0.002, period = 1.0 / 20.0; /* robosuite's macros.SIMULATION_TIMESTEP, 1 / control_freq */
  bool sample = false;
  arm->obs_clock += dt;
  if (!arm->obs_sampled && period - 0.0 >= arm->obs_clock) {
    sample = true;
    arm->obs_sampled = true;
  }
  if (arm->obs_clock >= period) {
    if (!arm->obs_sampled) sample = true;
    arm->obs_clock = fmod(arm->obs_clock, period);
    arm->obs_sampled = false;
  }
  if (sample) {
    sw_arm_sample(arm, d);
    if (arm->sample_hook) arm->sample_hook(arm->sample_ctx, m, d);
  }
}

int sw_arm_step(sw_arm_t *arm, const mjModel *m, mjData *d, char *err, size_t errlen) {
  if (!arm->have_action) return s_fail(err, errlen, "no action set (sw_arm_set_action) before sw_arm_step");
  for (int s = 0; s < arm->cfg.substeps; s++) {
    /* robosuite: sim.forward(), control (reads positions, velocities, M, bias), sim.step(). mj_step1 computes
     * the same position and velocity stages, mj_step2 the rest with the new controls (Euler/implicit). */
    mj_step1(m, d);
    s_view_t v;
    if (arm->stale)
      s_reset_view(arm, &v);
    else
      s_read_view(arm, m, d, &v);
    if (s == 0) s_set_goal(arm, &v);
    s_control(arm, m, d, &v);
    arm->stale = false;
    mj_step2(m, d);
    s_observe(arm, m, d);
  }
  return 0;
}

void sw_arm_eef_quat(const sw_arm_t *arm, const mjData *d, double xyzw[4]) {
  const double *q = d->xquat + 4 * arm->eef_body;
  xyzw[0] = q[1];
  xyzw[1] = q[2];
  xyzw[2] = q[3];
  xyzw[3] = q[0];
}

/* transform_utils.quat2axisangle (x y z w). */
static void s_axisangle(const double q[4], double out[3]) {
  double w = q[3] > 1.0 ? 1.0 : q[3] < -1.0 ? -1.0 : q[3];
  double den = sqrt(1.0 - w * w);
  for (int i = 0; i < 3; i++) out[i] = den == 0 ? 0.0 : q[i] * 2.0 * acos(w) / den;
}

void sw_arm_obs(const sw_arm_t *arm, double out[SW_PROPRIO_DIM]) {
  memcpy(out, arm->obs_eef_pos, 3 * sizeof(double));
  s_axisangle(arm->obs_eef_quat, out + 3);
  out[6] = arm->obs_grip_qpos[0];
  out[7] = arm->obs_grip_qpos[1];
}

void sw_arm_proprio(const sw_arm_t *arm, const mjData *d, double out[SW_PROPRIO_DIM]) {
  memcpy(out, d->site_xpos + 3 * arm->eef_site, 3 * sizeof(double));
  double q[4];
  sw_arm_eef_quat(arm, d, q);
  s_axisangle(q, out + 3);
  out[6] = d->qpos[arm->grip_qpos[0]];
  out[7] = d->qpos[arm->grip_qpos[1]];
}
