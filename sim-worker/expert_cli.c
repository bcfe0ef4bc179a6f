/* expert_cli.c: the `expert` and `collect` subcommands of rsd-sim-worker (see expert.h).
 *
 * `expert` runs the scripted expert over (task, trial) pairs without images and reports success per task.
 * `collect` runs it with camera images and writes the successful episodes as HDF5 demonstrations in the
 * layout of LIBERO's released datasets (scripts/create_dataset.py in LIBERO, itself robomimic's): a group
 * `data` with one group `demo_N` per episode holding `actions`, `obs/...`, `states`, `robot_states`,
 * `rewards`, `dones`. The exact layout is written down in docs/simulation.md ("Demonstrations"); the
 * writer below is its only implementation. The file is written under FILE.tmp and renamed when complete.
 * `--render-every K` (K > 1) renders the cameras only for the observations after every K-th action (the ones a
 * policy replanning every K steps sees; rendering is most of collect's time on a CPU): the other rows' images
 * are zeros, a u8 dataset `data/demo_N/rendered` (T) marks the rendered rows, and `data` gets the attribute
 * `rsd_render_every`. Without the option (K = 1) the file is exactly as before.
 *
 * Not here: the expert itself (expert.c), the episode loop (episode.c), dispatching subcommands (main.c). */
#include <errno.h>
#include <hdf5.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "expert.h"

#define S_MAX_TASKS 64
#define S_MAX_TRIALS 1024

typedef struct {
  const char *name;      /* argv[0] */
  char suite[64];
  char data[1024];
  int tasks[S_MAX_TASKS], ntasks;
  int trials[S_MAX_TRIALS], ntrials;
  const char *json;      /* expert: --json FILE, or NULL */
  const char *out;       /* collect: -o FILE */
  int size;              /* collect: image size */
  int render_every;      /* collect: render the cameras after every k-th action only (1: every step) */
  int wait_steps, max_steps;
} s_args_t;

/* Parses "3", "0-49", "0,3,5" or "0-4,7" into out (each value in [0, limit)). Returns 0, or -1 with err. */
static int s_parse_list(const char *what, const char *spec, int limit, int *out, int cap, int *n, char *err,
                        size_t errlen) {
  *n = 0;
  const char *p = spec;
  while (*p) {
    char *end;
    long a = strtol(p, &end, 10), b;
    if (end == p) goto bad;
    b = a;
    if (*end == '-') {
      p = end + 1;
      b = strtol(p, &end, 10);
      if (end == p) goto bad;
    }
    if (b < a) {
      snprintf(err, errlen, "%s '%s': the range %ld-%ld goes down", what, spec, a, b);
      return -1;
    }
    if (a < 0 || b >= limit) {
      snprintf(err, errlen, "%s '%s': %ld-%ld is outside 0-%d", what, spec, a, b, limit - 1);
      return -1;
    }
    for (long v = a; v <= b; v++) {
      if (*n >= cap) {
        snprintf(err, errlen, "%s '%s': more than %d values", what, spec, cap);
        return -1;
      }
      out[(*n)++] = (int)v;
    }
    if (*end == ',') end++;
    else if (*end) goto bad;
    p = end;
  }
  if (*n == 0) goto bad;
  return 0;
bad:
  snprintf(err, errlen, "%s '%s': expected 'all', N, N-M or a comma-separated list of them", what, spec);
  return -1;
}

/* How many task_NN directories with a task.json the suite has in the export. */
static int s_count_tasks(const char *data, const char *suite) {
  int n = 0;
  for (; n < S_MAX_TASKS; n++) {
    char path[1200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/task_%02d/task.json", data, suite, n);
    if (stat(path, &st) != 0) break;
  }
  return n;
}

static int s_usage(const s_args_t *a, bool collect, const char *msg) {
  fprintf(stderr, "rsd-sim-worker %s: %s\n", a->name, msg);
  if (collect)
    fprintf(stderr, "usage: rsd-sim-worker collect --suite S [--tasks all|N,M|N-M] [--trials 0-49] [--size 128] "
                    "[--render-every 1] -o FILE [--data DIR] [--wait-steps 10] [--max-steps 220]\n");
  else
    fprintf(stderr, "usage: rsd-sim-worker expert --suite S [--tasks all|N,M|N-M] [--trials 0-49] [--json FILE] "
                    "[--data DIR] [--wait-steps 10] [--max-steps 220]\n");
  return 2;
}

static int s_parse_int(const char *opt, const char *v, int lo, int hi, int *out, char *err, size_t errlen) {
  char *end;
  long x = strtol(v, &end, 10);
  if (end == v || *end || x < lo || x > hi) {
    snprintf(err, errlen, "%s '%s': expected an integer in %d-%d", opt, v, lo, hi);
    return -1;
  }
  *out = (int)x;
  return 0;
}

/* Parses the common options (and --json or -o/--size by subcommand). Returns 0, or 2 after printing usage. */
static int s_parse_args(int argc, char **argv, bool collect, s_args_t *a) {
  memset(a, 0, sizeof *a);
  a->name = argc > 0 ? argv[0] : (collect ? "collect" : "expert");
  a->size = 128;
  a->render_every = 1;
  a->wait_steps = 10;
  a->max_steps = 220;
  sw_data_dir(a->data, sizeof a->data);
  const char *tasks = "all", *trials = "0-49";
  char err[4096];
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i];
    if (i + 1 >= argc) {
      snprintf(err, sizeof err, "option '%s' needs a value (or is unknown)", o);
      return s_usage(a, collect, err);
    }
    const char *v = argv[++i];
    int rc = 0;
    if (!strcmp(o, "--suite")) {
      if (strlen(v) >= sizeof a->suite || strchr(v, '/')) return s_usage(a, collect, "--suite: not a suite name");
      snprintf(a->suite, sizeof a->suite, "%s", v);
    } else if (!strcmp(o, "--tasks")) {
      tasks = v;
    } else if (!strcmp(o, "--trials")) {
      trials = v;
    } else if (!strcmp(o, "--data")) {
      snprintf(a->data, sizeof a->data, "%s", v);
    } else if (!strcmp(o, "--wait-steps")) {
      rc = s_parse_int(o, v, 0, 1000, &a->wait_steps, err, sizeof err);
    } else if (!strcmp(o, "--max-steps")) {
      rc = s_parse_int(o, v, 1, 100000, &a->max_steps, err, sizeof err);
    } else if (!collect && !strcmp(o, "--json")) {
      a->json = v;
    } else if (collect && (!strcmp(o, "-o") || !strcmp(o, "--output"))) {
      a->out = v;
    } else if (collect && !strcmp(o, "--size")) {
      rc = s_parse_int(o, v, 1, SW_MAX_IMAGE, &a->size, err, sizeof err);
    } else if (collect && !strcmp(o, "--render-every")) {
      rc = s_parse_int(o, v, 1, 1000, &a->render_every, err, sizeof err);
    } else {
      snprintf(err, sizeof err, "unknown option '%s'", o);
      return s_usage(a, collect, err);
    }
    if (rc) return s_usage(a, collect, err);
  }
  if (!a->suite[0]) return s_usage(a, collect, "--suite is required (e.g. --suite libero_spatial)");
  if (collect && !a->out) return s_usage(a, collect, "-o FILE is required");
  int avail = s_count_tasks(a->data, a->suite);
  if (avail == 0) {
    snprintf(err, sizeof err, "no tasks of suite '%s' under %s (%s/%s/task_00/task.json missing; run ops/setup.sh)",
             a->suite, a->data, a->data, a->suite);
    return s_usage(a, collect, err);
  }
  if (!strcmp(tasks, "all")) {
    a->ntasks = avail;
    for (int i = 0; i < avail; i++) a->tasks[i] = i;
  } else if (s_parse_list("--tasks", tasks, avail, a->tasks, S_MAX_TASKS, &a->ntasks, err, sizeof err)) {
    return s_usage(a, collect, err);
  }
  if (s_parse_list("--trials", trials, S_MAX_TRIALS, a->trials, S_MAX_TRIALS, &a->ntrials, err, sizeof err))
    return s_usage(a, collect, err);
  return 0;
}

/* ---- expert ---- */

int sw_expert_cli(int argc, char **argv) {
  s_args_t a;
  int rc = s_parse_args(argc, argv, false, &a);
  if (rc) return rc;
  json_t *jtasks = json_array();
  int total_ok = 0, total_n = 0, total_infra = 0;
  long total_steps = 0;
  printf("%-5s %-9s %-8s %-10s %s\n", "task", "success", "rate", "mean steps", "failures (trial: outcome)");
  fflush(stdout);
  for (int i = 0; i < a.ntasks; i++) {
    char err[4096] = "";
    sw_task_t *t = sw_task_load(a.data, a.suite, a.tasks[i], err, sizeof err);
    if (!t) {
      fprintf(stderr, "rsd-sim-worker %s: %s\n", a.name, err);
      json_decref(jtasks);
      return 1;
    }
    sw_episode_opts_t o = {.wait_steps = a.wait_steps, .max_steps = a.max_steps};
    int ok = 0, infra = 0;
    long steps = 0;
    char fails[2048] = "";
    size_t flen = 0;
    json_t *jfail = json_array();
    for (int j = 0; j < a.ntrials; j++) {
      sw_expert_result_t res;
      if (sw_expert_run(t, a.trials[j], &o, NULL, NULL, &res, err, sizeof err)) {
        fprintf(stderr, "rsd-sim-worker %s: task %d trial %d: %s\n", a.name, a.tasks[i], a.trials[j], err);
        json_decref(jfail);
        json_decref(jtasks);
        sw_task_destroy(&t);
        return 1;
      }
      if (res.state == SW_EP_SUCCESS) {
        ok++;
        steps += res.steps;
        continue;
      }
      infra += res.state == SW_EP_INFRA_ERROR;
      if (flen < sizeof fails - 64)
        flen += (size_t)snprintf(fails + flen, sizeof fails - flen, "%s%d: %s", flen ? ", " : "", a.trials[j],
                                 sw_ep_state_name(res.state));
      json_array_append_new(jfail, json_pack("{s:i, s:s, s:i, s:s}", "trial", a.trials[j], "outcome",
                                             sw_ep_state_name(res.state), "steps", res.steps, "reason", res.reason));
    }
    double mean = ok ? (double)steps / ok : 0;
    printf("%-5d %3d/%-5d %6.1f%%  %-10.1f %s\n", a.tasks[i], ok, a.ntrials, 100.0 * ok / a.ntrials, mean,
           fails[0] ? fails : "-");
    fflush(stdout);
    json_array_append_new(jtasks, json_pack("{s:i, s:s, s:i, s:i, s:f, s:o}", "task", a.tasks[i], "instruction",
                                            t->scene->instruction, "trials", a.ntrials, "successes", ok,
                                            "mean_steps", mean, "failures", jfail));
    total_ok += ok;
    total_n += a.ntrials;
    total_infra += infra;
    total_steps += steps;
    sw_task_destroy(&t);
  }
  double total_mean = total_ok ? (double)total_steps / total_ok : 0;
  printf("%-5s %3d/%-5d %6.1f%%  %-10.1f %d infrastructure errors\n", "total", total_ok, total_n,
         100.0 * total_ok / total_n, total_mean, total_infra);
  int ret = 0;
  if (a.json) {
    json_t *doc = json_pack("{s:s, s:s, s:i, s:i, s:o, s:{s:i, s:i, s:f, s:f, s:i}}", "suite", a.suite, "policy",
                            "expert", "wait_steps", a.wait_steps, "max_steps", a.max_steps, "tasks", jtasks,
                            "total", "trials", total_n, "successes", total_ok, "success_rate",
                            total_n ? (double)total_ok / total_n : 0.0, "mean_steps", total_mean,
                            "infra_errors", total_infra);
    if (!doc || json_dump_file(doc, a.json, JSON_INDENT(2)) != 0) {
      fprintf(stderr, "rsd-sim-worker %s: cannot write --json %s: %s\n", a.name, a.json, strerror(errno));
      ret = 1;
    }
    json_decref(doc);
  } else {
    json_decref(jtasks);
  }
  return ret;
}

/* ---- collect ---- */

/* One episode's recording: what the expert saw before each action, and the action. */
typedef struct {
  int n;            /* image size */
  int state_len;    /* 1 + nq + nv */
  int T, cap;
  double *actions, *ee_pos, *ee_ori, *ee_states, *gripper, *joints, *robot_states, *states;
  uint8_t *agentview, *eye_in_hand;
  uint8_t *rendered; /* 1 where row t's images were rendered, 0 where --render-every skipped them (zeros) */
  int oom;
} s_rec_t;

static void s_rec_free(s_rec_t *r) {
  free(r->actions);
  free(r->ee_pos);
  free(r->ee_ori);
  free(r->ee_states);
  free(r->gripper);
  free(r->joints);
  free(r->robot_states);
  free(r->states);
  free(r->agentview);
  free(r->eye_in_hand);
  free(r->rendered);
  memset(r, 0, sizeof *r);
}

static int s_grow(void **p, size_t elem, int cap) {
  void *q = realloc(*p, elem * (size_t)cap);
  if (!q) return -1;
  *p = q;
  return 0;
}

/* sw_expert_run's on_step: appends the observation the action answers and the action. */
static int s_record(void *ctx, const sw_episode_t *ep, const double *action) {
  s_rec_t *r = ctx;
  if (!action) return 0; /* the observation after the last step answers no action (LIBERO keeps T = actions) */
  if (r->T == r->cap) {
    int cap = r->cap ? 2 * r->cap : 128;
    size_t img = (size_t)r->n * r->n * 3;
    if (s_grow((void **)&r->actions, 7 * sizeof(double), cap) || s_grow((void **)&r->ee_pos, 3 * sizeof(double), cap) ||
        s_grow((void **)&r->ee_ori, 3 * sizeof(double), cap) ||
        s_grow((void **)&r->ee_states, 6 * sizeof(double), cap) ||
        s_grow((void **)&r->gripper, 2 * sizeof(double), cap) ||
        s_grow((void **)&r->joints, SW_ARM_DOF * sizeof(double), cap) ||
        s_grow((void **)&r->robot_states, 9 * sizeof(double), cap) ||
        s_grow((void **)&r->states, (size_t)r->state_len * sizeof(double), cap) ||
        s_grow((void **)&r->agentview, img, cap) || s_grow((void **)&r->eye_in_hand, img, cap) ||
        s_grow((void **)&r->rendered, 1, cap)) {
      r->oom = 1;
      return -1;
    }
    r->cap = cap;
  }
  int t = r->T++;
  size_t img = (size_t)r->n * r->n * 3;
  const double *pr = ep->proprio;
  memcpy(r->actions + 7 * t, action, 7 * sizeof(double));
  memcpy(r->ee_pos + 3 * t, pr, 3 * sizeof(double));
  memcpy(r->ee_ori + 3 * t, pr + 3, 3 * sizeof(double));
  memcpy(r->ee_states + 6 * t, pr, 6 * sizeof(double));
  memcpy(r->gripper + 2 * t, pr + 6, 2 * sizeof(double));
  for (int k = 0; k < SW_ARM_DOF; k++) r->joints[SW_ARM_DOF * t + k] = ep->d->qpos[ep->arm->qpos[k]];
  /* LIBERO's get_robot_state_vector: gripper qpos (2), eef pos (3), eef quat (4, x y z w) */
  double *rs = r->robot_states + 9 * t;
  memcpy(rs, pr + 6, 2 * sizeof(double));
  memcpy(rs + 2, pr, 3 * sizeof(double));
  memcpy(rs + 5, ep->arm->obs_eef_quat, 4 * sizeof(double));
  /* robosuite's sim.get_state().flatten(): time, qpos, qvel */
  double *st = r->states + (size_t)r->state_len * t;
  st[0] = ep->d->time;
  memcpy(st + 1, ep->d->qpos, (size_t)ep->m->nq * sizeof(double));
  memcpy(st + 1 + ep->m->nq, ep->d->qvel, (size_t)ep->m->nv * sizeof(double));
  /* a step that --render-every skipped holds an earlier observation's images: store zeros (they compress to
   * almost nothing) and say so in `rendered`, rather than a frame that does not match the row's proprio */
  r->rendered[t] = ep->images_fresh ? 1 : 0;
  if (ep->images_fresh) {
    memcpy(r->agentview + img * t, ep->agentview, img);
    memcpy(r->eye_in_hand + img * t, ep->eye_in_hand, img);
  } else {
    memset(r->agentview + img * t, 0, img);
    memset(r->eye_in_hand + img * t, 0, img);
  }
  return 0;
}

/* HDF5 helpers: each returns 0, or -1 with the object's name in err. */
static int s_h5_fail(char *err, size_t errlen, const char *what, const char *name) {
  snprintf(err, errlen, "hdf5: cannot %s '%s'", what, name);
  return -1;
}

static int s_dataset(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, int rank, const hsize_t *dims,
                     const void *data, bool compress, char *err, size_t errlen) {
  hid_t space = H5Screate_simple(rank, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  int rc = 0;
  if (compress && dims[0] > 0) {
    hsize_t chunk[8];
    chunk[0] = 1; /* one frame per chunk */
    for (int k = 1; k < rank; k++) chunk[k] = dims[k];
    if (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_deflate(dcpl, 4) < 0) rc = -1;
  }
  hid_t ds = rc ? H5I_INVALID_HID : H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (ds < 0 || H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) rc = -1;
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(space);
  return rc ? s_h5_fail(err, errlen, "write dataset", name) : 0;
}

static int s_attr_str(hid_t loc, const char *name, const char *value, char *err, size_t errlen) {
  /* variable-length UTF-8, as h5py writes a Python str */
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t at = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = at < 0 || H5Awrite(at, type, &value) < 0 ? -1 : 0;
  if (at >= 0) H5Aclose(at);
  H5Sclose(space);
  H5Tclose(type);
  return rc ? s_h5_fail(err, errlen, "write attribute", name) : 0;
}

static int s_attr_i64(hid_t loc, const char *name, long long value, char *err, size_t errlen) {
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t at = H5Acreate2(loc, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = at < 0 || H5Awrite(at, H5T_NATIVE_LLONG, &value) < 0 ? -1 : 0;
  if (at >= 0) H5Aclose(at);
  H5Sclose(space);
  return rc ? s_h5_fail(err, errlen, "write attribute", name) : 0;
}

static int s_attr_f64s(hid_t loc, const char *name, const double *v, hsize_t n, char *err, size_t errlen) {
  hid_t space = H5Screate_simple(1, &n, NULL);
  hid_t at = H5Acreate2(loc, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT);
  int rc = at < 0 || H5Awrite(at, H5T_NATIVE_DOUBLE, v) < 0 ? -1 : 0;
  if (at >= 0) H5Aclose(at);
  H5Sclose(space);
  return rc ? s_h5_fail(err, errlen, "write attribute", name) : 0;
}

/* task.json's problem_name and bddl_file, for the attributes LIBERO's datasets carry. */
static void s_task_meta(const char *data, const char *suite, int task, char *problem, size_t plen, char *bddl,
                        size_t blen) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s/task_%02d/task.json", data, suite, task);
  json_t *j = json_load_file(path, 0, NULL);
  const char *p = j ? json_string_value(json_object_get(j, "problem_name")) : NULL;
  const char *b = j ? json_string_value(json_object_get(j, "bddl_file")) : NULL;
  snprintf(problem, plen, "%s", p ? p : "libero_tabletop_manipulation");
  snprintf(bddl, blen, "%s", b ? b : "");
  json_decref(j);
}

/* problem_info as LIBERO writes it: {"problem_name", "domain_name", "language_instruction"}. */
static char *s_problem_info(const char *problem, json_t *instruction) {
  json_t *j = json_pack("{s:s, s:s, s:O}", "problem_name", problem, "domain_name", "robosuite",
                        "language_instruction", instruction);
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

/* Writes one demonstration group data/demo_<idx>. */
static int s_write_demo(hid_t data, int idx, const s_rec_t *r, const sw_task_t *t, int trial, const char *problem,
                        const char *bddl, int render_every, char *err, size_t errlen) {
  char name[32];
  snprintf(name, sizeof name, "demo_%d", idx);
  hid_t g = H5Gcreate2(data, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return s_h5_fail(err, errlen, "create group", name);
  hid_t obs = H5Gcreate2(g, "obs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (obs < 0) {
    H5Gclose(g);
    return s_h5_fail(err, errlen, "create group", "obs");
  }
  hsize_t T = (hsize_t)r->T, n = (hsize_t)r->n;
  uint8_t *rew = calloc((size_t)T, 1);
  int rc = rew ? 0 : s_h5_fail(err, errlen, "allocate", "rewards");
  if (rew) rew[T - 1] = 1; /* LIBERO: 1 on the last step (the one that reached the goal), 0 before */
  hid_t F = H5T_IEEE_F64LE, D = H5T_NATIVE_DOUBLE, U = H5T_STD_U8LE, UM = H5T_NATIVE_UINT8;
#define S_DS(loc, nm, ft, mt, rank, data, z, ...)                                                         \
  do {                                                                                                  \
    hsize_t dims_[] = {__VA_ARGS__};                                                                    \
    if (!rc) rc = s_dataset(loc, nm, ft, mt, rank, dims_, data, z, err, errlen);                       \
  } while (0)
  S_DS(g, "actions", F, D, 2, r->actions, false, T, 7);
  S_DS(g, "states", F, D, 2, r->states, false, T, (hsize_t)r->state_len);
  S_DS(g, "robot_states", F, D, 2, r->robot_states, false, T, 9);
  S_DS(g, "rewards", U, UM, 1, rew, false, T);
  S_DS(g, "dones", U, UM, 1, rew, false, T);
  if (render_every > 1) S_DS(g, "rendered", U, UM, 1, r->rendered, false, T);
  S_DS(obs, "agentview_rgb", U, UM, 4, r->agentview, true, T, n, n, 3);
  S_DS(obs, "eye_in_hand_rgb", U, UM, 4, r->eye_in_hand, true, T, n, n, 3);
  S_DS(obs, "ee_pos", F, D, 2, r->ee_pos, false, T, 3);
  S_DS(obs, "ee_ori", F, D, 2, r->ee_ori, false, T, 3);
  S_DS(obs, "ee_states", F, D, 2, r->ee_states, false, T, 6);
  S_DS(obs, "gripper_states", F, D, 2, r->gripper, false, T, 2);
  S_DS(obs, "joint_states", F, D, 2, r->joints, false, T, SW_ARM_DOF);
#undef S_DS
  free(rew);
  const sw_scene_t *s = t->scene;
  json_t *instr = json_string(s->instruction);
  char *pinfo = s_problem_info(problem, instr);
  json_decref(instr);
  char scene[256];
  snprintf(scene, sizeof scene, "%s/task_%02d/scene.xml", s->suite, s->task);
  if (!rc) rc = s_attr_i64(g, "num_samples", (long long)T, err, errlen);
  if (!rc) rc = s_attr_i64(g, "task", s->task, err, errlen);
  if (!rc) rc = s_attr_i64(g, "trial", trial, err, errlen);
  if (!rc) rc = s_attr_str(g, "language_instruction", s->instruction, err, errlen);
  if (!rc) rc = s_attr_str(g, "problem_info", pinfo ? pinfo : "{}", err, errlen);
  if (!rc) rc = s_attr_str(g, "bddl_file_name", bddl, err, errlen);
  if (!rc) rc = s_attr_str(g, "rsd_scene", scene, err, errlen);
  if (!rc)
    rc = s_attr_f64s(g, "init_state", s->init_states + (size_t)trial * s->state_len, (hsize_t)s->state_len, err,
                     errlen);
  free(pinfo);
  H5Gclose(obs);
  H5Gclose(g);
  return rc;
}

int sw_collect_cli(int argc, char **argv) {
  s_args_t a;
  int rc = s_parse_args(argc, argv, true, &a);
  if (rc) return rc;
  char tmp[1200], err[4096] = "";
  if (snprintf(tmp, sizeof tmp, "%s.tmp", a.out) >= (int)sizeof tmp) return s_usage(&a, true, "-o: path too long");
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by name below, not as HDF5's stack dump */
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    fprintf(stderr, "rsd-sim-worker %s: cannot create %s: %s\n", a.name, tmp, strerror(errno));
    return 1;
  }
  hid_t data = H5Gcreate2(f, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int ndemos = 0, nfail = 0;
  long long total = 0;
  json_t *instructions = json_array(), *bddls = json_array();
  char problem[128] = "libero_tabletop_manipulation";
  rc = data < 0 ? s_h5_fail(err, sizeof err, "create group", "data") : 0;
  for (int i = 0; !rc && i < a.ntasks; i++) {
    sw_task_t *t = sw_task_load(a.data, a.suite, a.tasks[i], err, sizeof err);
    if (!t) {
      rc = -1;
      break;
    }
    char bddl[512];
    s_task_meta(a.data, a.suite, a.tasks[i], problem, sizeof problem, bddl, sizeof bddl);
    json_array_append_new(instructions, json_string(t->scene->instruction));
    json_array_append_new(bddls, json_string(bddl));
    sw_episode_opts_t o = {
        .wait_steps = a.wait_steps, .max_steps = a.max_steps, .image_size = a.size, .render_every = a.render_every};
    int ok = 0;
    for (int j = 0; !rc && j < a.ntrials; j++) {
      s_rec_t r = {.n = a.size, .state_len = t->scene->state_len};
      sw_expert_result_t res;
      if (sw_expert_run(t, a.trials[j], &o, s_record, &r, &res, err, sizeof err)) {
        if (r.oom) snprintf(err, sizeof err, "task %d trial %d: out of memory recording the episode", a.tasks[i],
                            a.trials[j]);
        rc = -1;
      } else if (res.state == SW_EP_SUCCESS && r.T > 0) {
        rc = s_write_demo(data, ndemos, &r, t, a.trials[j], problem, bddl, a.render_every, err, sizeof err);
        if (!rc) {
          ndemos++;
          ok++;
          total += r.T;
        }
      } else {
        nfail++;
        fprintf(stderr, "rsd-sim-worker %s: task %d trial %d: %s after %d steps%s%s; not written\n", a.name,
                a.tasks[i], a.trials[j], sw_ep_state_name(res.state), res.steps, res.reason[0] ? ": " : "",
                res.reason);
      }
      s_rec_free(&r);
    }
    if (!rc) fprintf(stderr, "rsd-sim-worker %s: task %d: %d/%d demonstrations\n", a.name, a.tasks[i], ok, a.ntrials);
    sw_task_destroy(&t);
  }
  if (!rc) {
    /* data's attributes: LIBERO's (env_name, problem_info, env_args, bddl_file_name, num_demos, total,
     * macros_image_convention) plus rsd's own. A file of one task names its instruction; a file of several
     * gives the list (each demo names its own in its attributes). */
    json_t *instr = json_array_size(instructions) == 1 ? json_incref(json_array_get(instructions, 0))
                                                         : json_incref(instructions);
    char *pinfo = s_problem_info(problem, instr);
    json_t *env_args = json_pack(
        "{s:i, s:s, s:s, s:O, s:{s:[s], s:s, s:{s:s, s:i, s:i, s:[f,f,f,f,f,f], s:[f,f,f,f,f,f], s:i, s:i, s:s, "
        "s:b, s:b}, s:i, s:[s,s], s:i, s:i, s:i, s:i}}",
        "type", 1, "env_name", a.suite, "problem_name", problem, "bddl_file",
        json_array_size(bddls) == 1 ? json_array_get(bddls, 0) : bddls, "env_kwargs", "robots", "Panda",
        "gripper_types", "PandaGripper", "controller_configs", "type", "OSC_POSE", "input_max", 1, "input_min", -1,
        "output_max", 0.05, 0.05, 0.05, 0.5, 0.5, 0.5, "output_min", -0.05, -0.05, -0.05, -0.5, -0.5, -0.5, "kp", 150,
        "damping_ratio", 1, "impedance_mode", "fixed", "uncouple_pos_ori", 1, "control_delta", 1, "control_freq", 20,
        "camera_names", "agentview", "robot0_eye_in_hand", "camera_heights", a.size, "camera_widths", a.size,
        "wait_steps", a.wait_steps, "max_steps", a.max_steps);
    char *eargs = json_dumps(env_args, JSON_COMPACT);
    if (!rc) rc = s_attr_str(data, "env_name", a.suite, err, sizeof err);
    if (!rc) rc = s_attr_str(data, "problem_info", pinfo ? pinfo : "{}", err, sizeof err);
    if (!rc) rc = s_attr_str(data, "env_args", eargs ? eargs : "{}", err, sizeof err);
    if (!rc && json_array_size(bddls) == 1)
      rc = s_attr_str(data, "bddl_file_name", json_string_value(json_array_get(bddls, 0)), err, sizeof err);
    if (!rc) rc = s_attr_i64(data, "num_demos", ndemos, err, sizeof err);
    if (!rc) rc = s_attr_i64(data, "total", total, err, sizeof err);
    /* robosuite's name for upright images (row 0 = top); LIBERO's released files say "opengl" (upside down) */
    if (!rc) rc = s_attr_str(data, "macros_image_convention", "opencv", err, sizeof err);
    if (!rc)
      rc = s_attr_str(data, "rsd_image_orientation",
                      "upright: row 0 is the top of the camera's view, as rsd's episodes deliver it (LIBERO's raw "
                      "frames are upside down: raw = upright[::-1])",
                      err, sizeof err);
    if (!rc) rc = s_attr_str(data, "rsd_policy", "expert", err, sizeof err);
    if (!rc && a.render_every > 1) rc = s_attr_i64(data, "rsd_render_every", a.render_every, err, sizeof err);
    free(pinfo);
    free(eargs);
    json_decref(env_args);
    json_decref(instr);
  }
  json_decref(instructions);
  json_decref(bddls);
  if (data >= 0) H5Gclose(data);
  if (H5Fclose(f) < 0 && !rc) rc = s_h5_fail(err, sizeof err, "close", tmp);
  if (!rc && rename(tmp, a.out) != 0) {
    snprintf(err, sizeof err, "cannot rename %s to %s: %s", tmp, a.out, strerror(errno));
    rc = -1;
  }
  if (rc) {
    remove(tmp);
    fprintf(stderr, "rsd-sim-worker %s: %s\n", a.name, err);
    return 1;
  }
  printf("wrote %d demonstrations (%lld steps) to %s; %d episodes failed and were left out\n", ndemos, total, a.out,
         nfail);
  return 0;
}
