/* collect_test.c: `collect` (sw_collect_cli) writes a demonstration of task 1 (rendering both cameras at
 * every step is most of the test's time, so one); read back with the HDF5
 * API: the groups, shapes and types of LIBERO's layout, the attributes (instruction, task, trial,
 * num_samples, total), upright images equal to a fresh episode's first observation, and the recorded
 * actions replayed through a fresh episode reach the goal at the last step (the demonstrations are
 * reproducible). Also: a failed run leaves no file behind. Needs the export ops/setup.sh makes. */
#include "expert.h"

#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define S_SIZE 128

/* The dims of dataset `path` (rank returned, -1 when missing) and whether its type is of class cls and size sz. */
static int s_shape(hid_t f, const char *path, hsize_t dims[4], H5T_class_t cls, size_t sz, int *type_ok) {
  hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
  if (ds < 0) return -1;
  hid_t sp = H5Dget_space(ds), ty = H5Dget_type(ds);
  int rank = H5Sget_simple_extent_ndims(sp);
  if (rank > 4) rank = 4;
  H5Sget_simple_extent_dims(sp, dims, NULL);
  *type_ok = H5Tget_class(ty) == cls && H5Tget_size(ty) == sz;
  H5Tclose(ty);
  H5Sclose(sp);
  H5Dclose(ds);
  return rank;
}

static void *s_read(hid_t f, const char *path, hid_t mem_type, size_t bytes) {
  void *buf = calloc(1, bytes);
  hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
  if (!buf || ds < 0 || H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    free(buf);
    buf = NULL;
  }
  if (ds >= 0) H5Dclose(ds);
  return buf;
}

/* A string attribute of obj (owned copy, or NULL). */
static char *s_attr_str(hid_t f, const char *obj, const char *name) {
  if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return NULL;
  hid_t at = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  hid_t ty = H5Aget_type(at), mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5T_CSET_UTF8);
  char *v = NULL, *out = NULL;
  if (H5Tis_variable_str(ty) > 0 && H5Aread(at, mt, &v) >= 0 && v) {
    out = strdup(v);
    H5free_memory(v);
  }
  H5Tclose(mt);
  H5Tclose(ty);
  H5Aclose(at);
  return out;
}

static long long s_attr_int(hid_t f, const char *obj, const char *name) {
  long long v = -1;
  if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) <= 0) return -1;
  hid_t at = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (H5Aread(at, H5T_NATIVE_LLONG, &v) < 0) v = -1;
  H5Aclose(at);
  return v;
}

int main(void) {
  char data[512], err[1024] = "";
  sw_data_dir(data, sizeof data);
  char dir[] = "/tmp/rsd_collect_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char out[600], size_s[16];
  snprintf(out, sizeof out, "%s/demos.hdf5", dir);
  snprintf(size_s, sizeof size_s, "%d", S_SIZE);
  char *argv[] = {"collect", "--suite", "libero_spatial", "--tasks", "1", "--trials", "5", "--size", size_s, "-o",
                  out, NULL};
  CHECK(sw_collect_cli(11, argv) == 0, "collect failed");

  sw_task_t *t = sw_task_load(data, "libero_spatial", 1, err, sizeof err);
  CHECK(t != NULL, "load: %s", err);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(f >= 0, "open %s", out);
  if (f >= 0 && t) {
    CHECK(s_attr_int(f, "data", "num_demos") == 1, "num_demos %lld", s_attr_int(f, "data", "num_demos"));
    char *pinfo = s_attr_str(f, "data", "problem_info");
    json_t *pj = pinfo ? json_loads(pinfo, 0, NULL) : NULL;
    const char *instr = json_string_value(json_object_get(pj, "language_instruction"));
    CHECK(instr && strcmp(instr, t->scene->instruction) == 0, "problem_info.language_instruction: %s",
          instr ? instr : "(none)");
    json_decref(pj);
    free(pinfo);
    char *env_args = s_attr_str(f, "data", "env_args"), *conv = s_attr_str(f, "data", "macros_image_convention");
    json_t *ej = env_args ? json_loads(env_args, 0, NULL) : NULL;
    CHECK(json_integer_value(json_object_get(json_object_get(ej, "env_kwargs"), "camera_heights")) == S_SIZE,
          "env_args: %s", env_args ? env_args : "(none)");
    CHECK(conv && strcmp(conv, "opencv") == 0, "macros_image_convention %s", conv ? conv : "(none)");
    json_decref(ej);
    free(env_args);
    free(conv);

    long long total = 0;
    const int want_trial[1] = {5};
    for (int i = 0; i < 1; i++) {
      char g[64], p[128];
      snprintf(g, sizeof g, "data/demo_%d", i);
      long long T = s_attr_int(f, g, "num_samples");
      total += T;
      CHECK(T > 20 && T <= 220, "%s num_samples %lld", g, T);
      CHECK(s_attr_int(f, g, "task") == 1 && s_attr_int(f, g, "trial") == want_trial[i], "%s task/trial %lld/%lld",
            g, s_attr_int(f, g, "task"), s_attr_int(f, g, "trial"));
      char *li = s_attr_str(f, g, "language_instruction");
      CHECK(li && strcmp(li, t->scene->instruction) == 0, "%s language_instruction", g);
      free(li);
      if (T <= 0 || T > 220) continue;
      /* shapes and types */
      struct {
        const char *name;
        int rank;
        hsize_t d1, d2, d3;
        H5T_class_t cls;
        size_t sz;
      } want[] = {
          {"actions", 2, 7, 0, 0, H5T_FLOAT, 8},
          {"states", 2, (hsize_t)t->scene->state_len, 0, 0, H5T_FLOAT, 8},
          {"robot_states", 2, 9, 0, 0, H5T_FLOAT, 8},
          {"rewards", 1, 0, 0, 0, H5T_INTEGER, 1},
          {"dones", 1, 0, 0, 0, H5T_INTEGER, 1},
          {"obs/agentview_rgb", 4, S_SIZE, S_SIZE, 3, H5T_INTEGER, 1},
          {"obs/eye_in_hand_rgb", 4, S_SIZE, S_SIZE, 3, H5T_INTEGER, 1},
          {"obs/ee_pos", 2, 3, 0, 0, H5T_FLOAT, 8},
          {"obs/ee_ori", 2, 3, 0, 0, H5T_FLOAT, 8},
          {"obs/ee_states", 2, 6, 0, 0, H5T_FLOAT, 8},
          {"obs/gripper_states", 2, 2, 0, 0, H5T_FLOAT, 8},
          {"obs/joint_states", 2, 7, 0, 0, H5T_FLOAT, 8},
      };
      for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        hsize_t dims[4] = {0};
        int type_ok = 0;
        snprintf(p, sizeof p, "%s/%s", g, want[k].name);
        int rank = s_shape(f, p, dims, want[k].cls, want[k].sz, &type_ok);
        hsize_t w[4] = {(hsize_t)T, want[k].d1, want[k].d2, want[k].d3};
        CHECK(rank == want[k].rank && memcmp(dims, w, (size_t)rank * sizeof(hsize_t)) == 0 && type_ok,
              "%s: rank %d dims %llu %llu %llu %llu type %s", p, rank, (unsigned long long)dims[0],
              (unsigned long long)dims[1], (unsigned long long)dims[2], (unsigned long long)dims[3],
              type_ok ? "ok" : "wrong");
      }
      /* rewards: 1 at the last step only */
      snprintf(p, sizeof p, "%s/rewards", g);
      uint8_t *rew = s_read(f, p, H5T_NATIVE_UINT8, (size_t)T);
      int ones = 0;
      for (long long k = 0; rew && k < T; k++) ones += rew[k];
      CHECK(rew && ones == 1 && rew[T - 1] == 1, "%s: %d rewards of 1, last %d", p, ones, rew ? rew[T - 1] : -1);
      free(rew);

      /* Replay: a fresh episode of the same trial, the recorded actions, success exactly at the last one; its
       * first observation (upright images, proprio) equals the recorded first one. */
      snprintf(p, sizeof p, "%s/actions", g);
      double *acts = s_read(f, p, H5T_NATIVE_DOUBLE, (size_t)T * 7 * sizeof(double));
      snprintf(p, sizeof p, "%s/obs/agentview_rgb", g);
      uint8_t *av = s_read(f, p, H5T_NATIVE_UINT8, (size_t)T * S_SIZE * S_SIZE * 3);
      snprintf(p, sizeof p, "%s/obs/ee_pos", g);
      double *pos = s_read(f, p, H5T_NATIVE_DOUBLE, (size_t)T * 3 * sizeof(double));
      sw_episode_opts_t oi = {.wait_steps = 10, .max_steps = 220, .image_size = S_SIZE};
      sw_episode_t *first = sw_episode_new(t, want_trial[i], &oi, err, sizeof err);
      CHECK(first && av && memcmp(av, first->agentview, S_SIZE * S_SIZE * 3) == 0,
            "%s: first agentview frame differs from a fresh episode's: %s", g, err);
      sw_episode_destroy(&first);
      sw_episode_opts_t o = {.wait_steps = 10, .max_steps = 220}; /* no images: the replay checks the physics */
      sw_episode_t *ep = sw_episode_new(t, want_trial[i], &o, err, sizeof err);
      CHECK(ep && acts && pos, "replay setup: %s", err);
      if (ep && acts && pos) {
        CHECK(memcmp(pos, ep->proprio, 3 * sizeof(double)) == 0, "%s: first ee_pos differs", g);
        long long k = 0;
        for (; k < T && ep->state == SW_EP_RUNNING; k++)
          if (sw_episode_step(ep, acts + 7 * k, SW_ACTION_DIM, err, sizeof err)) break;
        CHECK(ep->state == SW_EP_SUCCESS && k == T, "%s replay: %s after %lld of %lld actions", g,
              sw_ep_state_name(ep->state), k, T);
      }
      sw_episode_destroy(&ep);
      free(acts);
      free(av);
      free(pos);
    }
    CHECK(s_attr_int(f, "data", "total") == total, "total %lld, demos hold %lld", s_attr_int(f, "data", "total"),
          total);
    H5Fclose(f);
  }
  sw_task_destroy(&t);

  /* A run that cannot finish (a task missing from the export) leaves neither FILE nor FILE.tmp. */
  char bad_out[600], tmp[620];
  snprintf(bad_out, sizeof bad_out, "%s/none.hdf5", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", bad_out);
  char *bargv[] = {"collect", "--suite", "libero_spatial", "--tasks", "1", "--trials", "0", "--data", dir, "-o",
                   bad_out, NULL};
  CHECK(sw_collect_cli(11, bargv) == 2, "collect from an empty data dir accepted");
  CHECK(access(bad_out, F_OK) != 0 && access(tmp, F_OK) != 0, "a failed collect left a file behind");
  char *bargv2[] = {"collect", "--suite", "libero_spatial", "--tasks", "1", "--trials", "0", "--size", "100", "-o",
                    bad_out, NULL};
  CHECK(sw_collect_cli(11, bargv2) == 1, "collect with --size 100 did not fail");
  CHECK(access(bad_out, F_OK) != 0 && access(tmp, F_OK) != 0, "a failed collect left a file behind");

  unlink(out);
  rmdir(dir);
  return check_summary("collect_test");
}
