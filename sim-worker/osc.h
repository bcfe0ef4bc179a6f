/* osc.h: robosuite's OSC_POSE arm controller and Panda gripper controller, reproduced in C.
 *
 * Owns the controller's state between control steps (the goal pose, the gripper command, the last action) and
 * the per-control-step loop: 25 physics substeps at 0.002 s, each with the arm torques and gripper controls
 * robosuite 1.4.0 would apply (OperationalSpaceController with fixed impedance, uncoupled position and
 * orientation, delta inputs, no interpolator; PandaGripper's incremental command). It does not own the model
 * or the data (the episode does, see scene.h), nor MuJoCo error handling (wrap sw_arm_step in sw_guard) or
 * warning checks (sw_new_warning after each step).
 *
 * Action: 7 numbers, Δposition (3, world frame), Δorientation as axis-angle (3, world frame), gripper (1;
 * < 0 opens, > 0 closes, 0 holds). The first 6 are clipped to [input_min, input_max] = [-1, 1] and scaled to
 * ±0.05 m and ±0.5 rad. robosuite keeps the previous goal orientation when all three rotation inputs are
 * exactly 0, so an episode that never rotates keeps the orientation the robot had at its reset pose
 * (init_qpos), not the one of its initial state; sw_arm_reset reproduces that.
 *
 * Proprio: what LIBERO gives a policy, robot0_eef_pos (the eef site's position), quat2axisangle of
 * robot0_eef_quat (the eef *body*'s orientation, robot0_right_hand), robot0_gripper_qpos. robosuite samples its
 * observables (proprio and camera images alike) at 20 Hz on a clock of its own, after an mj_step and without a
 * new mj_forward: in LIBERO's loop (reset, set_init_state, steps) that is after the 24th of the 25 substeps of
 * each step, so a step's observation lags its final state by one substep, and positions come from mjData's
 * kinematics of the state before that substep's integration while qpos is the integrated one. sw_arm_step
 * keeps that clock and samples at the same moments (sw_arm_obs); the sample hook lets the caller render the
 * camera images at that moment too. */
#ifndef RSD_SW_OSC_H
#define RSD_SW_OSC_H

#include <mujoco/mujoco.h>
#include <stdbool.h>
#include <stddef.h>

#define SW_ARM_DOF 7      /* Panda arm joints */
#define SW_ACTION_DIM 7   /* Δpos (3), Δaxis-angle (3), gripper (1) */
#define SW_PROPRIO_DIM 8  /* eef pos (3), eef axis-angle (3), gripper qpos (2) */
#define SW_ARM_NAME 64

/* What builds an arm: model names and controller settings, as task.json (ops/export_libero.py) holds them. */
typedef struct {
  char arm_joints[SW_ARM_DOF][SW_ARM_NAME];
  char arm_actuators[SW_ARM_DOF][SW_ARM_NAME];
  char gripper_joints[2][SW_ARM_NAME];
  char gripper_actuators[2][SW_ARM_NAME];
  char eef_site[SW_ARM_NAME];   /* robosuite's grip site: position, Jacobian and goal */
  char eef_body[SW_ARM_NAME];   /* robosuite's robot_model.eef_name: the orientation LIBERO observes */
  double init_qpos[SW_ARM_DOF]; /* reset pose: nullspace target and initial goal */
  double input_min[6], input_max[6], output_min[6], output_max[6];
  double kp[6], damping_ratio[6];
  double gripper_speed;         /* gripper command change per substep (0.01) */
  int substeps;                 /* physics steps per control step (25) */
} sw_arm_config_t;

/* The controller of one robot in one scene (its ids hold for every episode copy of that scene's model). */
typedef struct {
  sw_arm_config_t cfg;
  int qpos[SW_ARM_DOF], dof[SW_ARM_DOF], act[SW_ARM_DOF]; /* arm joint qpos/dof addresses, actuator ids */
  int grip_qpos[2], grip_act[2];
  int eef_site, eef_body;
  double kd[6];                  /* 2 sqrt(kp) damping_ratio */
  /* What robosuite's controller reads when it is built at reset (arm at init_qpos, the rest at qpos0, qvel 0):
   * its goal, and the cached state its first set_goal/run_controller use (see sw_arm_reset). */
  double reset_pos[3], reset_ori[9]; /* eef site pose */
  double reset_jac[6 * SW_ARM_DOF];  /* site Jacobian (position rows, then rotation), arm columns */
  double reset_mass[SW_ARM_DOF * SW_ARM_DOF]; /* arm block of the mass matrix */
  /* state, set by sw_arm_reset, sw_arm_set_action and sw_arm_step */
  double goal_pos[3], goal_ori[9]; /* world frame; goal_ori row-major like site_xmat */
  double grip_cmd[2];            /* PandaGripper.current_action, in [-1, 1] */
  double action[SW_ACTION_DIM];  /* the last action given (unclipped) */
  bool have_action;
  /* robosuite's observable clock (utils/observables.py, identical for every observable) and the last sample */
  double obs_clock;              /* seconds since the last sampling period began */
  bool obs_sampled;              /* sampled in this period */
  double obs_eef_pos[3], obs_eef_quat[4], obs_grip_qpos[2]; /* quat x y z w */
  /* optional: called with the data at each sampling moment (e.g. to render camera images); borrowed */
  void (*sample_hook)(void *ctx, const mjModel *m, const mjData *d);
  void *sample_ctx;
  bool stale;                    /* the next substep reads the reset snapshot instead of mjData (robosuite's
                                    controller has new_update False until its first run_controller) */
  int nv;
  double *scratch;               /* owned: nv*nv + 6*nv doubles */
} sw_arm_t;

/* Reads the robot and controller sections of task.json into cfg. Only what rsd reproduces is accepted:
 * OSC_POSE, impedance fixed, uncoupled, delta, no interpolation, no position/orientation limits, a Panda.
 * Returns 0, or -1 with the file, the key and the value in err. */
int sw_arm_config_load(const char *task_json, sw_arm_config_t *cfg, char *err, size_t errlen);

/* Builds the controller for model m (ids looked up by name; the model is only read). The state is reset
 * (sw_arm_reset). Returns NULL with the missing name or bad setting in err. */
sw_arm_t *sw_arm_new(const mjModel *m, const sw_arm_config_t *cfg, char *err, size_t errlen);

/* Frees the arm; idempotent; sets *self_p to NULL. */
void sw_arm_destroy(sw_arm_t **self_p);

/* The state robosuite's (hard) reset leaves: goal = eef pose at init_qpos, gripper command 0, no action, and the
 * observable clock as LIBERO's reset + set_init_state leave it (two forced samples: 0.004 s, sampled; call
 * sw_arm_sample on the initial state for the first observation). Also
 * robosuite's quirk: the controller built at reset caches the robot's state at init_qpos, and the first substep
 * after the reset (set_goal and run_controller both) still computes from that cache, not from the initial state
 * set afterwards (LIBERO's set_init_state); only the gravity compensation (qfrc_bias) is read live. The first
 * step's goal position is therefore the eef position at init_qpos plus the action's delta. Call at the start of
 * each episode. */
void sw_arm_reset(sw_arm_t *arm);

/* Validates and stores the action used by the following sw_arm_step calls. n must be SW_ACTION_DIM; NaN or
 * Inf anywhere is an error naming the index and the value. Out-of-range values are accepted (and clipped by
 * the controller like robosuite). Returns 0, or -1 with the reason in err (the stored action is unchanged). */
int sw_arm_set_action(sw_arm_t *arm, const double *action, int n, char *err, size_t errlen);

/* Advances one control step: cfg.substeps physics steps; on the first one the goal is set from the action and
 * the current eef pose, as robosuite's set_goal does. Returns 0, or -1 when no action was set. MuJoCo errors
 * are raised through mju_error (use sw_guard). */
int sw_arm_step(sw_arm_t *arm, const mjModel *m, mjData *d, char *err, size_t errlen);

/* robosuite's scale_action: the 6 arm inputs clipped to [input_min, input_max] and mapped to
 * [output_min, output_max]. */
void sw_arm_scale_action(const sw_arm_t *arm, const double in[6], double out[6]);

/* Takes an observation sample from d now (what robosuite's forced observable update does, e.g. in LIBERO's
 * set_init_state). sw_arm_step samples on robosuite's clock by itself. */
void sw_arm_sample(sw_arm_t *arm, const mjData *d);

/* The proprio a LIBERO policy gets, from the last sample: eef position (3), robosuite's quat2axisangle of
 * robot0_eef_quat (3), gripper joint positions (2). */
void sw_arm_obs(const sw_arm_t *arm, double out[SW_PROPRIO_DIM]);

/* The same quantities read from d now (no sampling clock): eef site position, axis-angle, gripper qpos. */
void sw_arm_proprio(const sw_arm_t *arm, const mjData *d, double out[SW_PROPRIO_DIM]);

/* The eef body's orientation in d now, x y z w (robosuite's robot0_eef_quat convention). */
void sw_arm_eef_quat(const sw_arm_t *arm, const mjData *d, double xyzw[4]);

#endif
