/* scene.h: one exported LIBERO task (ops/export_libero.py) loaded for simulation, and episodes set to
 * one of its fixed initial states.
 *
 * A task directory holds scene.xml (robosuite's compiled MJCF), task.json (instruction, goal predicates,
 * objects, cameras, state layout), init_states.f64 (one row [time, qpos, qvel] per trial) and
 * fixture_poses.f64 (per trial, the pose LIBERO's reset gives each fixed fixture). The fixture poses of
 * a trial live in the model (body_pos, body_quat), so each episode gets its own view of the model: a
 * shallow copy that shares the scene's arrays (LIBERO's textures alone are 190 MB) and owns only its
 * body_pos and body_quat. */
#ifndef RSD_SW_SCENE_H
#define RSD_SW_SCENE_H

#include <mujoco/mujoco.h>
#include <stdbool.h>
#include <stddef.h>

#define SW_MAX_FIXTURES 8
#define SW_MAX_GOALS 4
#define SW_MAX_GEOMS 128 /* contact geoms of one object */

/* One object named in a goal predicate: its root body and the geoms that count for contact. */
typedef struct {
  char name[64];
  int body;                 /* body id of the object's root body */
  int ngeoms;
  int geoms[SW_MAX_GEOMS];  /* geom ids of its contact geoms */
} sw_object_t;

/* A goal predicate, e.g. On(akita_black_bowl_1, plate_1). */
typedef enum { SW_PRED_ON } sw_pred_kind_t;
typedef struct {
  sw_pred_kind_t kind;
  sw_object_t a, b;
} sw_pred_t;

typedef struct {
  char suite[64];
  int task;
  char instruction[512];       /* task.json "language": what the policy is told */
  mjModel *model;              /* owned: fixtures at their unplaced pose; copy it per episode */
  int ntrials;                 /* rows of init_states */
  int state_len;               /* 1 + nq + nv */
  double *init_states;         /* owned: ntrials x state_len */
  int nfixtures;
  int fixture_body[SW_MAX_FIXTURES];
  double *fixture_poses;       /* owned: ntrials x nfixtures x 7 (pos, quat w x y z) */
  int ngoals;
  sw_pred_t goals[SW_MAX_GOALS]; /* conjunction */
  int cam_agentview, cam_eye_in_hand; /* camera ids */
  unsigned char geomgroup[mjNGROUP];   /* 1: the cameras show this geom group (task.json cameras.geomgroup) */
  int control_substeps;        /* physics steps per control step (25: 500 Hz under 20 Hz) */
} sw_scene_t;

/* Loads task `task` of `suite` from data_dir (the export's RSD_DATA). Returns NULL with the file and the
 * reason in err on failure. */
sw_scene_t *sw_scene_load(const char *data_dir, const char *suite, int task, char *err, size_t errlen);

/* Frees the scene; idempotent; sets *self_p to NULL. */
void sw_scene_destroy(sw_scene_t **self_p);

/* The export's data directory: $RSD_DATA, else ~/.cache/rsd. Writes into buf and returns it. */
const char *sw_data_dir(char *buf, size_t cap);

/* Makes the model and data of one episode at trial `trial`'s initial state (fixture poses written into
 * the episode's view of the model, the state row set, mj_forward). Returns 0, or -1 with the reason in
 * err. The model view is valid while the scene lives; free both with sw_scene_episode_free (never
 * mj_deleteModel: the view shares the scene's memory). */
int sw_scene_episode(const sw_scene_t *s, int trial, mjModel **m_out, mjData **d_out, char *err, size_t errlen);

/* Frees an episode's model view and data; idempotent; sets both pointers to NULL. */
void sw_scene_episode_free(mjModel **m_p, mjData **d_p);

/* LIBERO's On(a, b) (check_ontop): a's root body is not below b's, some contact joins a contact geom of a
 * with one of b, and their horizontal distance is under 3 cm. */
bool sw_pred_on(const mjModel *m, const mjData *d, const sw_object_t *a, const sw_object_t *b);

/* True when every goal predicate of the scene holds. */
bool sw_scene_success(const sw_scene_t *s, const mjModel *m, const mjData *d);

#endif
