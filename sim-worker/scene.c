/* scene.c: loading an exported LIBERO task and setting episodes to its initial states (see scene.h).
 * Owns the task's base model and its state tables; the MuJoCo error handler is mjguard's. */
#include "scene.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int s_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

const char *sw_data_dir(char *buf, size_t cap) {
  const char *env = getenv("RSD_DATA");
  if (env && *env)
    snprintf(buf, cap, "%s", env);
  else
    snprintf(buf, cap, "%s/.cache/rsd", getenv("HOME") ? getenv("HOME") : ".");
  return buf;
}

/* Reads a little-endian float64 file that must hold exactly `count` values. */
static double *s_read_f64(const char *path, size_t count, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    s_fail(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  double *v = malloc(count * sizeof *v + 1);
  size_t got = v ? fread(v, sizeof *v, count, f) : 0;
  int extra = fgetc(f);
  fclose(f);
  if (!v || got != count || extra != EOF) {
    free(v);
    s_fail(err, errlen, "%s: expected exactly %zu float64 values (%s)", path, count,
           got != count ? "file too short" : "file too long");
    return NULL;
  }
  return v;
}

static int s_id(const mjModel *m, mjtObj type, const char *name, const char *what, const char *file, char *err,
                size_t errlen) {
  int id = mj_name2id(m, type, name);
  if (id < 0) s_fail(err, errlen, "%s: %s '%s' is not in the scene", file, what, name);
  return id;
}

static int s_object(const mjModel *m, json_t *objects, const char *name, sw_object_t *o, const char *file,
                    char *err, size_t errlen) {
  json_t *obj = json_object_get(objects, name);
  const char *body = json_string_value(json_object_get(obj, "body"));
  json_t *geoms = json_object_get(obj, "contact_geoms");
  if (!body || !json_is_array(geoms))
    return s_fail(err, errlen, "%s: objects.%s needs 'body' and 'contact_geoms'", file, name);
  snprintf(o->name, sizeof o->name, "%s", name);
  if ((o->body = s_id(m, mjOBJ_BODY, body, "body", file, err, errlen)) < 0) return -1;
  if (json_array_size(geoms) > SW_MAX_GEOMS)
    return s_fail(err, errlen, "%s: objects.%s has %zu contact geoms, limit %d", file, name, json_array_size(geoms),
                  SW_MAX_GEOMS);
  o->ngeoms = 0;
  size_t i;
  json_t *g;
  json_array_foreach(geoms, i, g) {
    const char *gname = json_string_value(g);
    int id = gname ? s_id(m, mjOBJ_GEOM, gname, "geom", file, err, errlen) : -1;
    if (id < 0) return gname ? -1 : s_fail(err, errlen, "%s: objects.%s.contact_geoms[%zu] is not a string", file, name, i);
    o->geoms[o->ngeoms++] = id;
  }
  return 0;
}

/* Reads task.json into s (the model must be loaded). */
static int s_read_task(sw_scene_t *s, const char *file, json_t *t, char *err, size_t errlen) {
  const char *language = json_string_value(json_object_get(t, "language"));
  json_t *state = json_object_get(t, "state"), *fixtures = json_object_get(t, "fixture_poses");
  json_t *goal = json_object_get(t, "goal"), *objects = json_object_get(t, "objects");
  json_t *cams = json_object_get(json_object_get(t, "cameras"), "names");
  if (!language || !json_is_object(state) || !json_is_object(fixtures) || !json_is_array(goal) ||
      !json_is_object(objects) || !json_is_array(cams))
    return s_fail(err, errlen, "%s: missing one of language, state, fixture_poses, goal, objects, cameras.names", file);
  snprintf(s->instruction, sizeof s->instruction, "%s", language);
  s->ntrials = (int)json_integer_value(json_object_get(state, "rows"));
  s->state_len = (int)json_integer_value(json_object_get(state, "row_length"));
  if (s->state_len != 1 + s->model->nq + s->model->nv || s->ntrials < 1)
    return s_fail(err, errlen, "%s: state row_length %d and rows %d do not fit the scene (1 + nq %d + nv %d)", file,
                  s->state_len, s->ntrials, s->model->nq, s->model->nv);
  s->control_substeps = (int)json_integer_value(json_object_get(t, "substeps_per_control_step"));
  if (s->control_substeps < 1) return s_fail(err, errlen, "%s: substeps_per_control_step missing", file);

  json_t *bodies = json_object_get(fixtures, "bodies");
  if (!json_is_array(bodies) || json_array_size(bodies) > SW_MAX_FIXTURES ||
      json_integer_value(json_object_get(fixtures, "row_length")) != 7 * (json_int_t)json_array_size(bodies) ||
      json_integer_value(json_object_get(fixtures, "rows")) != s->ntrials)
    return s_fail(err, errlen, "%s: fixture_poses must list up to %d bodies with 7 values each, one row per trial",
                  file, SW_MAX_FIXTURES);
  size_t i;
  json_t *v;
  json_array_foreach(bodies, i, v) {
    const char *name = json_string_value(v);
    if (!name || (s->fixture_body[i] = s_id(s->model, mjOBJ_BODY, name, "fixture body", file, err, errlen)) < 0)
      return -1;
  }
  s->nfixtures = (int)json_array_size(bodies);

  if (json_array_size(goal) < 1 || json_array_size(goal) > SW_MAX_GOALS)
    return s_fail(err, errlen, "%s: goal must hold 1..%d predicates", file, SW_MAX_GOALS);
  json_array_foreach(goal, i, v) {
    const char *kind = json_string_value(json_array_get(v, 0));
    const char *a = json_string_value(json_array_get(v, 1)), *b = json_string_value(json_array_get(v, 2));
    if (!kind || strcmp(kind, "On") != 0 || !a || !b || json_array_size(v) != 3)
      return s_fail(err, errlen, "%s: goal[%zu]: only On(a, b) is implemented for now", file, i);
    s->goals[i].kind = SW_PRED_ON;
    if (s_object(s->model, objects, a, &s->goals[i].a, file, err, errlen) ||
        s_object(s->model, objects, b, &s->goals[i].b, file, err, errlen))
      return -1;
  }
  s->ngoals = (int)json_array_size(goal);

  for (int g = 0; g < mjNGROUP; g++) s->geomgroup[g] = 1;
  const char *key;
  json_object_foreach(json_object_get(json_object_get(t, "cameras"), "geomgroup"), key, v) {
    int g = atoi(key);
    if (g < 0 || g >= mjNGROUP || !json_is_integer(v))
      return s_fail(err, errlen, "%s: cameras.geomgroup '%s' is not a group 0..%d with 0/1", file, key, mjNGROUP - 1);
    s->geomgroup[g] = json_integer_value(v) ? 1 : 0;
  }
  const char *view = json_string_value(json_array_get(cams, 0)), *hand = json_string_value(json_array_get(cams, 1));
  if (!view || !hand) return s_fail(err, errlen, "%s: cameras.names needs two cameras", file);
  if ((s->cam_agentview = s_id(s->model, mjOBJ_CAMERA, view, "camera", file, err, errlen)) < 0 ||
      (s->cam_eye_in_hand = s_id(s->model, mjOBJ_CAMERA, hand, "camera", file, err, errlen)) < 0)
    return -1;
  return 0;
}

sw_scene_t *sw_scene_load(const char *data_dir, const char *suite, int task, char *err, size_t errlen) {
  sw_scene_t *s = calloc(1, sizeof *s);
  if (!s) {
    s_fail(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(s->suite, sizeof s->suite, "%s", suite);
  s->task = task;
  char dir[1024], path[1200], mjerr[1000] = "";
  snprintf(dir, sizeof dir, "%s/%s/task_%02d", data_dir, suite, task);
  snprintf(path, sizeof path, "%s/scene.xml", dir);
  s->model = mj_loadXML(path, NULL, mjerr, sizeof mjerr);
  if (!s->model) {
    s_fail(err, errlen, "cannot load %s: %s (run ops/setup.sh, which exports the scenes)", path, mjerr);
    sw_scene_destroy(&s);
    return NULL;
  }
  snprintf(path, sizeof path, "%s/task.json", dir);
  json_error_t jerr;
  json_t *t = json_load_file(path, 0, &jerr);
  int rc = t ? s_read_task(s, path, t, err, errlen)
             : s_fail(err, errlen, "%s:%d: %s", path, jerr.line, jerr.text);
  json_decref(t);
  if (!rc) {
    snprintf(path, sizeof path, "%s/init_states.f64", dir);
    s->init_states = s_read_f64(path, (size_t)s->ntrials * (size_t)s->state_len, err, errlen);
    snprintf(path, sizeof path, "%s/fixture_poses.f64", dir);
    if (s->init_states)
      s->fixture_poses = s_read_f64(path, (size_t)s->ntrials * (size_t)s->nfixtures * 7, err, errlen);
    rc = s->init_states && s->fixture_poses ? 0 : -1;
  }
  if (rc) sw_scene_destroy(&s);
  return s;
}

void sw_scene_destroy(sw_scene_t **self_p) {
  if (!self_p || !*self_p) return;
  sw_scene_t *s = *self_p;
  if (s->model) mj_deleteModel(s->model);
  free(s->init_states);
  free(s->fixture_poses);
  free(s);
  *self_p = NULL;
}

int sw_scene_episode(const sw_scene_t *s, int trial, mjModel **m_out, mjData **d_out, char *err, size_t errlen) {
  *m_out = NULL;
  *d_out = NULL;
  if (trial < 0 || trial >= s->ntrials)
    return s_fail(err, errlen, "%s task %d: trial %d is outside 0..%d (the benchmark's fixed initial states)",
                  s->suite, s->task, trial, s->ntrials - 1);
  /* A shallow copy: every array is the scene's except body_pos and body_quat, which the episode owns
   * (MuJoCo reads the model and never writes it while stepping). */
  mjModel *m = malloc(sizeof *m);
  double *pos = malloc(sizeof(double) * 3 * (size_t)s->model->nbody);
  double *quat = malloc(sizeof(double) * 4 * (size_t)s->model->nbody);
  mjData *d = NULL;
  if (m && pos && quat) {
    *m = *s->model;
    memcpy(pos, s->model->body_pos, sizeof(double) * 3 * (size_t)m->nbody);
    memcpy(quat, s->model->body_quat, sizeof(double) * 4 * (size_t)m->nbody);
    m->body_pos = pos;
    m->body_quat = quat;
    d = mj_makeData(m);
  }
  if (!d) {
    free(m);
    free(pos);
    free(quat);
    return s_fail(err, errlen, "%s task %d: out of memory for an episode", s->suite, s->task);
  }
  const double *pose = s->fixture_poses + (size_t)trial * (size_t)s->nfixtures * 7;
  for (int f = 0; f < s->nfixtures; f++) {
    int b = s->fixture_body[f];
    for (int k = 0; k < 3; k++) m->body_pos[3 * b + k] = pose[7 * f + k];
    for (int k = 0; k < 4; k++) m->body_quat[4 * b + k] = pose[7 * f + 3 + k];
  }
  const double *row = s->init_states + (size_t)trial * (size_t)s->state_len;
  d->time = row[0];
  memcpy(d->qpos, row + 1, (size_t)m->nq * sizeof(double));
  memcpy(d->qvel, row + 1 + m->nq, (size_t)m->nv * sizeof(double));
  mj_forward(m, d);
  *m_out = m;
  *d_out = d;
  return 0;
}

void sw_scene_episode_free(mjModel **m_p, mjData **d_p) {
  if (d_p && *d_p) {
    mj_deleteData(*d_p);
    *d_p = NULL;
  }
  if (m_p && *m_p) {
    free((*m_p)->body_pos);
    free((*m_p)->body_quat);
    free(*m_p);
    *m_p = NULL;
  }
}

static bool s_in(int id, const sw_object_t *o) {
  for (int i = 0; i < o->ngeoms; i++)
    if (o->geoms[i] == id) return true;
  return false;
}

bool sw_pred_on(const mjModel *m, const mjData *d, const sw_object_t *a, const sw_object_t *b) {
  (void)m;
  const double *pa = d->xpos + 3 * a->body, *pb = d->xpos + 3 * b->body;
  if (pb[2] > pa[2]) return false;
  if (hypot(pa[0] - pb[0], pa[1] - pb[1]) >= 0.03) return false;
  for (int i = 0; i < d->ncon; i++) {
    int g1 = d->contact[i].geom1, g2 = d->contact[i].geom2;
    if ((s_in(g1, a) && s_in(g2, b)) || (s_in(g1, b) && s_in(g2, a))) return true;
  }
  return false;
}

bool sw_scene_success(const sw_scene_t *s, const mjModel *m, const mjData *d) {
  for (int i = 0; i < s->ngoals; i++)
    if (!sw_pred_on(m, d, &s->goals[i].a, &s->goals[i].b)) return false;
  return true;
}
