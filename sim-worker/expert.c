/* expert.c: the scripted LIBERO-Spatial expert (see expert.h): a rim grasp of the goal's bowl from above,
 * carried onto the plate, driven by proportional-integral OSC_POSE position inputs from privileged poses.
 *
 * Geometry. The gripper pinches the bowl's wall between its two fingers, one inside the bowl and one
 * outside, at the point of the rim in direction theta from the bowl's centre; the fingers close along that
 * direction. The wall's radius and top come from the bowl's contact geoms (the boxes of its outer wall,
 * body frame). theta is chosen when the expert is made, among a few candidates: the first whose outer
 * finger and hand clear every obstacle (drawer walls, the cabinet's top, other objects; found by casting
 * vertical rays at the collision geoms) by a margin, else the one with the most room. With the reset
 * orientation the fingers close along the world y axis (theta = 90 or 270 degrees, no rotation); other
 * candidates first turn the gripper about the vertical (a yaw of at most 90 degrees) while approaching.
 *
 * Control. Each phase has a target point for the grip site; position inputs are the error over the 0.05 m
 * step scale, plus a small integral of the error within the phase (robosuite's OSC sets its goal relative to
 * the current pose, so a small error alone gives a small force that joint friction and the load can hold).
 * Rotation inputs are 0 except for the yaw turn, so robosuite keeps its goal orientation. The carrying
 * offset (grip site minus bowl) is read every step, so the bowl, not the gripper, is centred over the plate.
 * The carrying height clears the obstacles under the straight path to the plate (rays again).
 *
 * Recovery. When the bowl is lost while lifting or carrying (the fingers closed on nothing, or the bowl's
 * height under the grip site changed), theta is chosen again where the bowl lies and the grasp starts over.
 *
 * Owns only its phase and a few measured values; the episode and its MuJoCo data are borrowed. */
#include "expert.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tuning (metres unless said otherwise). */
#define S_HOVER 0.07            /* hover above the grasp point before descending */
#define S_GRASP_BELOW_TOP 0.014 /* grip site below the rim's top edge */
#define S_CARRY_CLEAR 0.12      /* rim height above the plate while carrying */
#define S_PATH_CLEAR 0.03       /* bowl bottom above obstacles on the way to the plate */
#define S_XY_TOL 0.008          /* xy error that ends approach and carry */
#define S_Z_TOL 0.008           /* z error that ends descend */
#define S_YAW_TOL 0.05          /* rad: yaw error that lets the descent start */
#define S_CLOSE_MIN 4           /* steps the gripper closes at least before lifting */
#define S_CLOSE_MAX 16          /* ... and at most */
#define S_LOWER_MAX 40          /* steps lowering before giving up and releasing */
#define S_RELEASE_STEPS 6       /* steps the gripper opens before retreating */
#define S_HELD_MIN_OPENING 0.002 /* finger opening (both) below which nothing is held */
#define S_HELD_DZ 0.025          /* change of the bowl's height under the grip site that means it slipped */
#define S_MAX_REGRASPS 2         /* grasps started over, at most */
#define S_GAIN 1.0              /* proportional gain (metres of goal per metre of error) */
#define S_KI 0.3                /* integral gain, per step */
#define S_INTEG_MAX 0.1         /* bound on the error sum */
#define S_INTEG_ZONE 0.03       /* errors summed only below this (no wind-up on long moves) */
#define S_STEP_SCALE 0.05       /* robosuite's output_max for position */
#define S_ROT_SCALE 0.5         /* ... and for rotation (rad) */
/* The open gripper around its grip site (PandaGripper's collision meshes, measured): each finger spans
 * 0.032..0.068 from the site along the closing axis, ±0.012 across it, down to 0.013 below the site; the
 * hand spans ±0.105 along the closing axis, -0.03..0.04 across, from 0.024 above the site. */
#define S_FINGER_IN 0.032
#define S_FINGER_OUT 0.068
#define S_FINGER_HALF_W 0.012
#define S_FINGER_BELOW 0.013
#define S_HAND_HALF_L 0.105
#define S_HAND_HALF_W 0.035
#define S_HAND_ABOVE 0.024
#define S_CLEAR_MARGIN 0.008    /* room under the gripper that makes a candidate acceptable */

/* Grasp directions tried, in order of preference (degrees, world frame): the first two need no turn. */
static const double s_candidates[] = {90, 270, 0, 180, 45, 135, 315, 225};
#define S_NCANDIDATES (int)(sizeof s_candidates / sizeof s_candidates[0])

struct sw_expert {
  int bowl, plate;            /* body ids */
  int eef_site;               /* the grip site OSC_POSE drives */
  int robot_root;             /* root body of the robot (ignored when looking for obstacles) */
  int finger_body[2];         /* left and right finger bodies: their difference is the closing axis */
  int grip_qpos[2];
  double rim_r, rim_top;      /* wall radius and top edge height, bowl frame */
  double theta;               /* rad: grasp direction from the bowl's centre (world, horizontal) */
  double margin;              /* room under the gripper at theta when it was chosen */
  sw_expert_phase_t phase;
  int phase_steps;            /* steps taken in the current phase */
  double hold[3];             /* point held during close and lift, and retreat */
  double integ[3];            /* sum of position errors in this phase (s_toward) */
  double carry_z;             /* grip site height while carrying (s_carry_height, at the grasp) */
  double grasp_dz;            /* grip site minus bowl height when the gripper closed */
  int regrasps;               /* grasps tried again after the bowl was lost */
  double last_q;              /* finger opening at the previous close step */
};

const char *sw_expert_phase_name(sw_expert_phase_t phase) {
  static const char *names[SW_EXPERT_NPHASES] = {"approach", "descend", "close", "lift",
                                                 "carry", "lower", "release", "retreat"};
  return phase >= 0 && phase < SW_EXPERT_NPHASES ? names[phase] : "?";
}

/* The highest collision geom (group 0) under the vertical line at (px, py), from z_from down, ignoring the
 * bowl and the robot; -1e9 when there is none. */
static double s_column_top(const sw_expert_t *x, const mjModel *m, const mjData *d, double px, double py,
                           double z_from) {
  const mjtByte groups[mjNGROUP] = {1, 0, 0, 0, 0, 0};
  double pnt[3] = {px, py, z_from}, down[3] = {0, 0, -1};
  for (int tries = 0; tries < 32; tries++) {
    int geom = -1;
    double dist = mj_ray(m, d, pnt, down, groups, 1, x->bowl, &geom);
    if (dist < 0 || geom < 0) return -1e9;
    if (m->body_rootid[m->geom_bodyid[geom]] != x->robot_root) return pnt[2] - dist;
    pnt[2] -= dist + 1e-4; /* the arm is in the way: look below it */
  }
  return -1e9;
}

/* The grip site's height for a rim grasp of the bowl at its pose in d. */
static double s_grasp_height(const sw_expert_t *x, const mjData *d) {
  const double *bp = d->xpos + 3 * x->bowl, *R = d->xmat + 9 * x->bowl;
  return bp[2] + R[8] * (x->rim_top - S_GRASP_BELOW_TOP);
}

/* The room under the gripper (the smaller of the outer finger's and the hand's) when the rim is pinched in
 * direction theta: the lowest part of the gripper minus the highest obstacle under it. */
static double s_room(const sw_expert_t *x, const mjModel *m, const mjData *d, double theta) {
  const double *bp = d->xpos + 3 * x->bowl;
  double gz = s_grasp_height(x, d);
  double u[2] = {cos(theta), sin(theta)}, v[2] = {-u[1], u[0]};
  double gx = bp[0] + x->rim_r * u[0], gy = bp[1] + x->rim_r * u[1];
  double z_from = gz + 0.3, finger = 1e9, hand = 1e9;
  for (int i = 0; i <= 4; i++)
    for (int j = -1; j <= 1; j++) {
      double a = S_FINGER_IN + (S_FINGER_OUT - S_FINGER_IN) * i / 4, b = j * S_FINGER_HALF_W;
      double top = s_column_top(x, m, d, gx + a * u[0] + b * v[0], gy + a * u[1] + b * v[1], z_from);
      if (gz - S_FINGER_BELOW - top < finger) finger = gz - S_FINGER_BELOW - top;
    }
  for (int i = -4; i <= 4; i++)
    for (int j = -1; j <= 1; j++) {
      double a = S_HAND_HALF_L * i / 4, b = j * S_HAND_HALF_W;
      double top = s_column_top(x, m, d, gx + a * u[0] + b * v[0], gy + a * u[1] + b * v[1], z_from);
      if (gz + S_HAND_ABOVE - top < hand) hand = gz + S_HAND_ABOVE - top;
    }
  return finger < hand ? finger : hand;
}

/* Chooses the grasp direction for the bowl where it is now: the first candidate with room under the gripper,
 * else the roomiest. */
static void s_choose_direction(sw_expert_t *x, const mjModel *m, const mjData *d) {
  x->margin = -1e9;
  for (int i = 0; i < S_NCANDIDATES; i++) {
    double th = s_candidates[i] * M_PI / 180, room = s_room(x, m, d, th);
    if (room > x->margin + 1e-4 || room >= S_CLEAR_MARGIN) {
      x->margin = room;
      x->theta = th;
    }
    if (room >= S_CLEAR_MARGIN) break;
  }
}

/* The grip site's height for carrying the bowl from where it is now to the plate: its bottom S_PATH_CLEAR
 * above every obstacle under the straight path (the path swept by the bowl's width), and its rim at least
 * S_CARRY_CLEAR above the plate. */
static double s_carry_height(const sw_expert_t *x, const mjModel *m, const mjData *d) {
  const double *bp = d->xpos + 3 * x->bowl, *pp = d->xpos + 3 * x->plate;
  const double *eef = d->site_xpos + 3 * x->eef_site;
  double dx = pp[0] - bp[0], dy = pp[1] - bp[1], len = hypot(dx, dy);
  double u[2] = {len > 1e-6 ? dx / len : 1, len > 1e-6 ? dy / len : 0}, v[2] = {-u[1], u[0]};
  double top = -1e9, w = x->rim_r + 0.01;
  int n = (int)(len / 0.02) + 1;
  for (int i = 0; i <= n; i++)
    for (int j = -1; j <= 1; j++) {
      double a = len * i / n, px = bp[0] + a * u[0] + j * w * v[0], py = bp[1] + a * u[1] + j * w * v[1];
      double z = s_column_top(x, m, d, px, py, eef[2] + 0.5);
      if (z > top) top = z;
    }
  double over_path = top + S_PATH_CLEAR + (eef[2] - bp[2]);
  double over_plate = pp[2] + x->rim_top + S_CARRY_CLEAR - S_GRASP_BELOW_TOP;
  return over_path > over_plate ? over_path : over_plate;
}

sw_expert_t *sw_expert_new(const sw_episode_t *ep, char *err, size_t errlen) {
  const sw_scene_t *s = ep->task->scene;
  if (s->ngoals < 1 || s->goals[0].kind != SW_PRED_ON) {
    snprintf(err, errlen, "task %d of %s: the expert needs an On(a, b) goal (have %d goals)", s->task, s->suite,
             s->ngoals);
    return NULL;
  }
  const sw_object_t *a = &s->goals[0].a;
  if (a->ngeoms < 1) {
    snprintf(err, errlen, "task %d: object '%s' has no contact geoms to measure its rim from", s->task, a->name);
    return NULL;
  }
  const mjModel *m = ep->m;
  const char *finger_names[2] = {"gripper0_leftfinger", "gripper0_rightfinger"};
  int fingers[2];
  for (int i = 0; i < 2; i++)
    if ((fingers[i] = mj_name2id(m, mjOBJ_BODY, finger_names[i])) < 0) {
      snprintf(err, errlen, "task %d: no body '%s' in the model (the expert knows the Panda gripper only)", s->task,
               finger_names[i]);
      return NULL;
    }
  sw_expert_t *x = calloc(1, sizeof *x);
  if (!x) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  x->bowl = a->body;
  x->plate = s->goals[0].b.body;
  x->eef_site = ep->arm->eef_site;
  x->robot_root = m->body_rootid[m->site_bodyid[x->eef_site]];
  memcpy(x->finger_body, fingers, sizeof fingers);
  x->grip_qpos[0] = ep->arm->grip_qpos[0];
  x->grip_qpos[1] = ep->arm->grip_qpos[1];
  /* The rim: the outermost contact geoms of the bowl (its wall), their radius and top edge. */
  for (int i = 0; i < a->ngeoms; i++) {
    const double *p = m->geom_pos + 3 * a->geoms[i];
    double r = hypot(p[0], p[1]);
    if (r > x->rim_r) x->rim_r = r;
  }
  for (int i = 0; i < a->ngeoms; i++) {
    int g = a->geoms[i];
    const double *p = m->geom_pos + 3 * g;
    if (hypot(p[0], p[1]) < x->rim_r - 0.01) continue;
    /* the top of a wall box: its centre plus its extent along z (box axes rotated by geom_quat) */
    double mat[9];
    mju_quat2Mat(mat, m->geom_quat + 4 * g);
    double ext = 0;
    for (int k = 0; k < 3; k++) ext += fabs(mat[6 + k]) * m->geom_size[3 * g + k];
    if (p[2] + ext > x->rim_top) x->rim_top = p[2] + ext;
  }
  if (x->rim_r < 0.02 || x->rim_r > 0.06 || x->rim_top <= S_GRASP_BELOW_TOP) {
    snprintf(err, errlen,
             "task %d: object '%s' has a rim radius of %.3f m and a rim height of %.3f m; not a bowl the expert can "
             "grasp",
             s->task, a->name, x->rim_r, x->rim_top);
    free(x);
    return NULL;
  }
  s_choose_direction(x, m, ep->d);
  x->phase = SW_EXPERT_APPROACH;
  return x;
}

void sw_expert_destroy(sw_expert_t **self_p) {
  if (!self_p || !*self_p) return;
  free(*self_p);
  *self_p = NULL;
}

/* The grasp point on the rim in world coordinates, for the bowl's current pose. */
static void s_grasp_point(const sw_expert_t *x, const mjData *d, double out[3]) {
  const double *bp = d->xpos + 3 * x->bowl;
  out[0] = bp[0] + x->rim_r * cos(x->theta);
  out[1] = bp[1] + x->rim_r * sin(x->theta);
  out[2] = s_grasp_height(x, d);
}

/* Yaw error (rad, in (-pi/2, pi/2]) between the fingers' closing axis and the grasp direction. */
static double s_yaw_error(const sw_expert_t *x, const mjData *d) {
  const double *l = d->xpos + 3 * x->finger_body[0], *r = d->xpos + 3 * x->finger_body[1];
  double e = x->theta - atan2(r[1] - l[1], r[0] - l[0]);
  e = fmod(e, M_PI);
  if (e > M_PI / 2) e -= M_PI;
  if (e <= -M_PI / 2) e += M_PI;
  return e;
}

static double s_clip(double v) { return v > 1 ? 1 : v < -1 ? -1 : v; }

/* Position inputs that move the grip site toward target (see the top of the file). */
static void s_toward(sw_expert_t *x, const double eef[3], const double target[3], double action[SW_ACTION_DIM]) {
  for (int k = 0; k < 3; k++) {
    double e = target[k] - eef[k];
    if (fabs(e) < S_INTEG_ZONE) x->integ[k] += e;
    if (x->integ[k] > S_INTEG_MAX) x->integ[k] = S_INTEG_MAX;
    if (x->integ[k] < -S_INTEG_MAX) x->integ[k] = -S_INTEG_MAX;
    action[k] = s_clip((S_GAIN * e + S_KI * x->integ[k]) / S_STEP_SCALE);
  }
}

/* Whether the bowl is still between the fingers: they are not closed on nothing, and the bowl kept its
 * height under the grip site since the grasp. */
static bool s_holding(const sw_expert_t *x, const mjData *d) {
  double q = d->qpos[x->grip_qpos[0]] - d->qpos[x->grip_qpos[1]];
  double dz = d->site_xpos[3 * x->eef_site + 2] - d->xpos[3 * x->bowl + 2];
  return q > S_HELD_MIN_OPENING && fabs(dz - x->grasp_dz) < S_HELD_DZ;
}

static void s_next(sw_expert_t *x, sw_expert_phase_t phase) {
  x->phase = phase;
  x->phase_steps = 0;
  memset(x->integ, 0, sizeof x->integ);
}

sw_expert_phase_t sw_expert_act(sw_expert_t *x, const sw_episode_t *ep, double action[SW_ACTION_DIM]) {
  const mjData *d = ep->d;
  const double *eef = d->site_xpos + 3 * x->eef_site;
  const double *bowl = d->xpos + 3 * x->bowl, *plate = d->xpos + 3 * x->plate;
  double grasp[3], target[3];
  s_grasp_point(x, d, grasp);
  memset(action, 0, SW_ACTION_DIM * sizeof *action);
  double yaw = s_yaw_error(x, d);
  sw_expert_phase_t acted;
  for (;;) {
    acted = x->phase;
    switch (x->phase) {
      case SW_EXPERT_APPROACH:
        memcpy(target, grasp, sizeof target);
        target[2] += S_HOVER;
        if (hypot(target[0] - eef[0], target[1] - eef[1]) < S_XY_TOL && fabs(target[2] - eef[2]) < 0.02 &&
            fabs(yaw) < S_YAW_TOL) {
          s_next(x, SW_EXPERT_DESCEND);
          continue;
        }
        s_toward(x, eef, target, action);
        if (fabs(yaw) > 0.01) action[5] = s_clip(yaw / S_ROT_SCALE);
        action[6] = -1;
        break;
      case SW_EXPERT_DESCEND:
        memcpy(target, grasp, sizeof target);
        if (fabs(target[2] - eef[2]) < S_Z_TOL && hypot(target[0] - eef[0], target[1] - eef[1]) < S_XY_TOL) {
          memcpy(x->hold, grasp, sizeof x->hold);
          x->carry_z = s_carry_height(x, ep->m, d);
          x->grasp_dz = eef[2] - bowl[2];
          s_next(x, SW_EXPERT_CLOSE);
          continue;
        }
        s_toward(x, eef, target, action);
        if (fabs(yaw) > 0.01) action[5] = s_clip(yaw / S_ROT_SCALE);
        action[6] = -1;
        break;
      case SW_EXPERT_CLOSE: {
        /* closed when the fingers stop moving (on the wall) or after S_CLOSE_MAX steps */
        double q = d->qpos[x->grip_qpos[0]] - d->qpos[x->grip_qpos[1]];
        bool settled = x->phase_steps >= S_CLOSE_MIN && x->last_q - q < 0.0005;
        x->last_q = q;
        if (settled || x->phase_steps >= S_CLOSE_MAX) {
          s_next(x, SW_EXPERT_LIFT);
          continue;
        }
        s_toward(x, eef, x->hold, action);
        action[6] = 1;
        break;
      }
      case SW_EXPERT_LIFT:
        if (x->phase_steps >= 3 && !s_holding(x, d) && x->regrasps < S_MAX_REGRASPS) {
          x->regrasps++;
          s_choose_direction(x, ep->m, d);
          s_next(x, SW_EXPERT_APPROACH);
          continue;
        }
        memcpy(target, x->hold, sizeof target);
        target[2] = x->carry_z;
        if (eef[2] > x->carry_z - 0.03) {
          s_next(x, SW_EXPERT_CARRY);
          continue;
        }
        s_toward(x, eef, target, action);
        action[6] = 1;
        break;
      case SW_EXPERT_CARRY:
        if (!s_holding(x, d) && x->regrasps < S_MAX_REGRASPS) { /* dropped: grasp again where it lies */
          x->regrasps++;
          s_choose_direction(x, ep->m, d);
          s_next(x, SW_EXPERT_APPROACH);
          continue;
        }
        target[0] = plate[0] + (eef[0] - bowl[0]);
        target[1] = plate[1] + (eef[1] - bowl[1]);
        target[2] = x->carry_z;
        if (hypot(target[0] - eef[0], target[1] - eef[1]) < S_XY_TOL) {
          s_next(x, SW_EXPERT_LOWER);
          continue;
        }
        s_toward(x, eef, target, action);
        action[6] = 1;
        break;
      case SW_EXPERT_LOWER:
        target[0] = plate[0] + (eef[0] - bowl[0]);
        target[1] = plate[1] + (eef[1] - bowl[1]);
        target[2] = plate[2] + (eef[2] - bowl[2]) - 0.01;
        if (x->phase_steps > S_LOWER_MAX) {
          s_next(x, SW_EXPERT_RELEASE);
          continue;
        }
        s_toward(x, eef, target, action);
        action[6] = 1;
        break;
      case SW_EXPERT_RELEASE:
        if (x->phase_steps >= S_RELEASE_STEPS) {
          memcpy(x->hold, eef, sizeof x->hold);
          s_next(x, SW_EXPERT_RETREAT);
          continue;
        }
        action[6] = -1;
        break;
      case SW_EXPERT_RETREAT:
      default:
        memcpy(target, x->hold, sizeof target);
        target[2] += 0.1;
        s_toward(x, eef, target, action);
        action[6] = -1;
        break;
    }
    break;
  }
  x->phase_steps++;
  return acted;
}

int sw_expert_run(sw_task_t *t, int trial, const sw_episode_opts_t *opts,
                  int (*on_step)(void *ctx, const sw_episode_t *ep, const double *action), void *ctx,
                  sw_expert_result_t *res, char *err, size_t errlen) {
  memset(res, 0, sizeof *res);
  sw_episode_t *ep = sw_episode_new(t, trial, opts, err, errlen);
  if (!ep) return -1;
  sw_expert_t *x = sw_expert_new(ep, err, errlen);
  if (!x) {
    sw_episode_destroy(&ep);
    return -1;
  }
  int rc = 0;
  while (ep->state == SW_EP_RUNNING) {
    double a[SW_ACTION_DIM];
    sw_expert_act(x, ep, a);
    if (on_step && on_step(ctx, ep, a)) {
      snprintf(err, errlen, "task %d trial %d: stopped at step %d by the caller", t->scene->task, trial, ep->steps);
      rc = -1;
      break;
    }
    if (sw_episode_step(ep, a, SW_ACTION_DIM, err, errlen)) {
      rc = -1;
      break;
    }
  }
  if (rc == 0 && on_step && on_step(ctx, ep, NULL)) {
    snprintf(err, errlen, "task %d trial %d: stopped after the last step by the caller", t->scene->task, trial);
    rc = -1;
  }
  res->state = ep->state;
  res->steps = ep->steps;
  snprintf(res->reason, sizeof res->reason, "%s", ep->reason);
  sw_expert_destroy(&x);
  sw_episode_destroy(&ep);
  return rc;
}
