/* scene_test.c: the ten exported LIBERO-Spatial tasks load in C, every trial's initial state applies,
 * LIBERO's goal predicate is false at the start and true once the bowl rests on the plate, and the cameras
 * see the scene. Needs the export that ops/setup.sh makes ($RSD_DATA or ~/.cache/rsd); without it the
 * test fails and says so. */
#include "scene.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mjguard.h"
#include "png.h"
#include "render.h"

/* qpos address of the free joint of a body. */
static int s_free_qpos(const mjModel *m, int body) {
  int j = m->body_jntadr[body];
  return j >= 0 && m->jnt_type[j] == mjJNT_FREE ? m->jnt_qposadr[j] : -1;
}

static void s_physics(const mjModel *m, mjData *d, int steps) {
  for (int i = 0; i < steps; i++) mj_step(m, d);
}

int main(int argc, char **argv) {
  sw_guard_install();
  char data[512], err[1024] = "";
  sw_data_dir(data, sizeof data);
  const char *png_dir = argc > 1 ? argv[1] : NULL; /* optional: write one agentview frame per task */
  for (int task = 0; task < 10; task++) {
    sw_scene_t *s = sw_scene_load(data, "libero_spatial", task, err, sizeof err);
    CHECK(s != NULL, "task %d: %s", task, err);
    if (!s) continue;
    CHECK(s->geomgroup[0] == 0 && s->geomgroup[1] == 1, "task %d: collision geoms (group 0) not hidden from cameras", task);
    CHECK(s->ntrials == 50 && s->ngoals == 1 && s->control_substeps == 25, "task %d: %d trials, %d goals, %d substeps",
          task, s->ntrials, s->ngoals, s->control_substeps);
    CHECK(strstr(s->instruction, "black bowl") && strstr(s->instruction, "plate"), "task %d instruction '%s'", task,
          s->instruction);
    const sw_pred_t *on = &s->goals[0];
    CHECK(strcmp(on->a.name, "akita_black_bowl_1") == 0 && strcmp(on->b.name, "plate_1") == 0, "task %d goal", task);

    for (int trial = 0; trial < 50; trial += 49) {
      mjModel *m;
      mjData *d;
      CHECK(sw_scene_episode(s, trial, &m, &d, err, sizeof err) == 0, "task %d trial %d: %s", task, trial, err);
      if (!m) continue;
      const double *bowl = d->xpos + 3 * on->a.body, *plate = d->xpos + 3 * on->b.body;
      CHECK(bowl[2] > 0.5 && plate[2] > 0.5 && hypot(bowl[0] - plate[0], bowl[1] - plate[1]) > 0.05,
            "task %d trial %d: bowl (%.3f %.3f %.3f) plate (%.3f %.3f %.3f) not apart on the table", task, trial,
            bowl[0], bowl[1], bowl[2], plate[0], plate[1], plate[2]);
      CHECK(!sw_scene_success(s, m, d), "task %d trial %d: success at the initial state", task, trial);

      /* Put the bowl 2 cm above the plate's centre and let it settle: then On(bowl, plate) holds. */
      int q = s_free_qpos(m, on->a.body);
      CHECK(q >= 0, "task %d: the bowl has no free joint", task);
      if (q >= 0 && trial == 0) {
        d->qpos[q + 0] = plate[0];
        d->qpos[q + 1] = plate[1];
        d->qpos[q + 2] = plate[2] + 0.02;
        mju_zero(d->qvel + m->jnt_dofadr[m->body_jntadr[on->a.body]], 6);
        mj_forward(m, d);
        int seen[mjNWARNING] = {0};
        s_physics(m, d, 250);
        CHECK(sw_new_warning(d, seen, err, sizeof err) == 0, "task %d: %s", task, err);
        CHECK(sw_scene_success(s, m, d), "task %d: bowl placed on the plate but On() is false (bowl z %.3f plate z %.3f)",
              task, d->xpos[3 * on->a.body + 2], d->xpos[3 * on->b.body + 2]);
      }
      if (png_dir && trial == 0) {
        sw_renderer_t *r = sw_renderer_new(m, 256, err, sizeof err);
        for (int g = 0; r && g < mjNGROUP; g++) sw_renderer_show_group(r, g, s->geomgroup[g]);
        static uint8_t rgb[256 * 256 * 3];
        if (r && sw_render(r, m, d, s->cam_agentview, 256, rgb, err, sizeof err) == 0) {
          char path[600];
          snprintf(path, sizeof path, "%s/task_%02d_agentview.png", png_dir, task);
          sw_png_write(path, rgb, 256, 256, err, sizeof err);
        }
        sw_renderer_destroy(&r);
      }
      sw_scene_episode_free(&m, &d);
      CHECK(m == NULL && d == NULL, "episode_free did not clear the pointers");
    }
    /* Two episodes of different trials at once: each sees its own fixture poses, the scene keeps its own. */
    mjModel *m0, *m1;
    mjData *d0, *d1;
    if (sw_scene_episode(s, 0, &m0, &d0, err, sizeof err) == 0 && sw_scene_episode(s, 1, &m1, &d1, err, sizeof err) == 0) {
      int f = s->fixture_body[0];
      const double *p0 = s->fixture_poses, *p1 = s->fixture_poses + 7 * s->nfixtures;
      CHECK(m0->body_pos[3 * f] == p0[0] && m1->body_pos[3 * f] == p1[0] && p0[0] != p1[0] &&
                s->model->body_pos[3 * f] != p0[0] && m0->tex_data == s->model->tex_data,
            "task %d: fixture poses are not per episode (or the view copies the scene)", task);
      CHECK(d1->xpos[3 * f] == p1[0], "task %d: trial 1's fixture not where its pose puts it", task);
      sw_scene_episode_free(&m0, &d0);
      sw_scene_episode_free(&m1, &d1);
    }
    mjModel *m;
    mjData *d;
    CHECK(sw_scene_episode(s, 50, &m, &d, err, sizeof err) == -1 && strstr(err, "trial 50 is outside 0..49"),
          "trial 50 accepted: %s", err);
    sw_scene_destroy(&s);
  }
  sw_scene_t *none = sw_scene_load(data, "libero_spatial", 10, err, sizeof err);
  CHECK(none == NULL && strstr(err, "task_10/scene.xml"), "task 10 loaded: %s", err);
  return check_summary("scene_test");
}
