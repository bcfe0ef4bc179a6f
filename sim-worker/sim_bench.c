/* sim_bench.c: how fast rsd's simulator steps LIBERO, per core, next to robosuite stepping the same scene.
 *
 * One task (default task 0, trial 0) is loaded once; for each mode (image size 0: no rendering, 128, 256:
 * agentview + eye_in_hand rendered at robosuite's sampling moment, as the worker does) a fresh episode runs
 * LIBERO's loop through episode.h: the trial's initial state, 10 wait steps, then N policy steps of a fixed
 * action sequence (a seeded, smooth pseudo-random sequence made here: low-pass filtered noise, partly beyond
 * [-1, 1] so that the clipping works, rotations included, the gripper switching every 30-60 steps). Only the
 * policy steps are timed (sw_episode_step, wall and process CPU time); loading, the renderer and the wait
 * steps are not. With --episodes E, E episodes (trials trial..trial+E-1) are stepped side by side on the one
 * thread, round robin, as a sim worker holds them.
 *
 * With --robosuite PYTHON (the default when CMake knew the project's venv) it then writes the actions to a
 * file and runs sim_bench_robosuite.py, which steps LIBERO's own env (OffScreenRenderEnv at the same image
 * size, or the renderer-less env for mode 0) from the same initial state with the same actions, timing
 * env.step alone. Both run one after the other, never at once, on the same core: this process pins itself
 * (sched_setaffinity, --cpu, default the last CPU it may use) and the child inherits the affinity. The
 * robosuite side renders with the same GL backend as rsd (MUJOCO_GL osmesa or egl, unless already set).
 * The table puts the rates side by side with the ratio rsd/robosuite per mode, and the last observation's
 * end-effector position on both sides, so that "the same work" is checked, not assumed.
 *
 * A program, not a test: it asserts nothing about speed (docs/benchmarks.md keeps the numbers). It exits
 * non-zero when an episode ends as an infrastructure error or the robosuite side fails. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../tests/bench/bench_host.h"
#include "episode.h"

#ifndef RSD_PYTHON
#define RSD_PYTHON ""
#endif
#ifndef RSD_SIM_BENCH_PY
#define RSD_SIM_BENCH_PY ""
#endif

#define S_MAX_MODES 4
#define S_MAX_EPISODES 64
#define S_TARGET_RATIO 5.0 /* issue 3: rsd >= 5x robosuite's steps/s per core with rendering on */

/* ---- options ---------------------------------------------------------------------------------- */
typedef struct {
  const char *data;          /* the export's directory; NULL: sw_data_dir */
  int task, trial, steps, wait, episodes;
  int render_every;          /* rsd renders the observation of every k-th step only (a policy replanning every
                                k steps needs no other); robosuite renders every step whatever the policy */
  int modes[S_MAX_MODES], nmodes;
  int cpu;                   /* -1: the last CPU of the inherited affinity; -2: do not pin */
  unsigned long long seed;
  const char *json;          /* NULL: no JSON */
  const char *python;        /* "" or NULL: no robosuite run */
  const char *script;
  const char *actions_out;   /* keep the action file here; NULL: a temporary file */
} s_opts_t;

/* ---- the action sequence ---------------------------------------------------------------------- */
static uint64_t s_splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static double s_uniform(uint64_t *x) { return (double)(s_splitmix(x) >> 11) * 0x1.0p-52 - 1.0; }

/* n x 7 actions: x <- 0.85 x + 0.15 u, u uniform in [-3.4, 3.4] (standard deviation ~2, as
 * fidelity_reference.py's sequence), position = x, rotation = 0.6 x, gripper -1/+1 flipping every 30-60. */
static void s_actions(double *a, int n, unsigned long long seed) {
  uint64_t rng = seed;
  double x[6] = {0};
  double grip = -1.0;
  int next_flip = 30 + (int)(s_splitmix(&rng) % 31);
  for (int i = 0; i < n; i++) {
    for (int k = 0; k < 6; k++) x[k] = 0.85 * x[k] + 0.15 * 3.4 * s_uniform(&rng);
    for (int k = 0; k < 3; k++) a[i * 7 + k] = x[k];
    for (int k = 3; k < 6; k++) a[i * 7 + k] = 0.6 * x[k];
    if (i == next_flip) {
      grip = -grip;
      next_flip = i + 30 + (int)(s_splitmix(&rng) % 31);
    }
    a[i * 7 + 6] = grip;
  }
}

/* ---- host facts ------------------------------------------------------------------------------- */
static double s_now(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void s_loadavg(double la[3]) {
  if (getloadavg(la, 3) != 3) la[0] = la[1] = la[2] = -1;
}

/* Pins the process to one CPU (cpu >= 0), or to the last CPU it may run on (cpu == -1). Returns the CPU,
 * -2 when not pinned on request, or -1 with the reason in err. */
static int s_pin(int cpu, char *err, size_t errlen) {
  if (cpu == -2) return -2;
  cpu_set_t set;
  if (cpu == -1) {
    if (sched_getaffinity(0, sizeof set, &set)) {
      snprintf(err, errlen, "sched_getaffinity: %s", strerror(errno));
      return -1;
    }
    for (int c = CPU_SETSIZE - 1; c >= 0; c--) {
      if (CPU_ISSET(c, &set)) {
        cpu = c;
        break;
      }
    }
  }
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set)) {
    snprintf(err, errlen, "pinning to CPU %d: %s", cpu, strerror(errno));
    return -1;
  }
  return cpu;
}

/* ---- one side's numbers for one mode ---------------------------------------------------------- */
typedef struct {
  int image_size;
  int steps;                 /* timed steps (all episodes) */
  double wall_s, cpu_s;
  double ms_mean, ms_p50, ms_p99;
  double eef_pos[3];         /* last observation of the first episode */
  int success_at;            /* first policy step whose goal held (0-based), -1: never */
  bool ok;
} s_result_t;

static int s_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void s_stats(s_result_t *r, double *ms, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++) sum += ms[i];
  qsort(ms, (size_t)n, sizeof *ms, s_cmp_double);
  r->ms_mean = n ? sum / n : 0;
  r->ms_p50 = n ? ms[n / 2] : 0;
  r->ms_p99 = n ? ms[(int)((n - 1) * 0.99)] : 0;
}

/* Runs one mode in rsd. Returns 0, or -1 with the reason in err. */
static int s_run_rsd(sw_task_t *t, const s_opts_t *o, int size, const double *actions, s_result_t *r, char *err,
                     size_t errlen) {
  memset(r, 0, sizeof *r);
  r->image_size = size;
  r->success_at = -1;
  sw_episode_opts_t eo = {.wait_steps = o->wait, .max_steps = o->steps, .image_size = size,
                          .render_every = o->render_every};
  sw_episode_t *ep[S_MAX_EPISODES] = {0};
  int ntrials = t->scene->ntrials, rc = -1;
  double *ms = malloc(sizeof *ms * (size_t)o->steps * (size_t)o->episodes);
  if (!ms) {
    snprintf(err, errlen, "out of memory for %d step times", o->steps * o->episodes);
    return -1;
  }
  for (int e = 0; e < o->episodes; e++) {
    int trial = (o->trial + e) % ntrials;
    if (!(ep[e] = sw_episode_new(t, trial, &eo, err, errlen))) goto done;
    if (ep[e]->state != SW_EP_RUNNING) {
      snprintf(err, errlen, "image size %d, trial %d: the wait steps ended the episode: %s (%s)", size, trial,
               sw_ep_state_name(ep[e]->state), ep[e]->reason);
      goto done;
    }
  }
  int n = 0;
  double c0 = s_now(CLOCK_PROCESS_CPUTIME_ID), w0 = s_now(CLOCK_MONOTONIC);
  for (int i = 0; i < o->steps; i++) {
    for (int e = 0; e < o->episodes; e++) {
      if (ep[e]->state != SW_EP_RUNNING) continue; /* ended early with success: it stops, as LIBERO's loop */
      double s0 = s_now(CLOCK_MONOTONIC);
      if (sw_episode_step(ep[e], actions + 7 * i, 7, err, errlen)) goto done;
      ms[n++] = (s_now(CLOCK_MONOTONIC) - s0) * 1e3;
      if (ep[e]->state == SW_EP_INFRA_ERROR) {
        snprintf(err, errlen, "image size %d, trial %d, step %d: %s", size, ep[e]->trial, i, ep[e]->reason);
        goto done;
      }
      if (e == 0 && ep[e]->state == SW_EP_SUCCESS && r->success_at < 0) r->success_at = i;
    }
  }
  r->wall_s = s_now(CLOCK_MONOTONIC) - w0;
  r->cpu_s = s_now(CLOCK_PROCESS_CPUTIME_ID) - c0;
  r->steps = n;
  s_stats(r, ms, n);
  memcpy(r->eef_pos, ep[0]->proprio, sizeof r->eef_pos);
  r->ok = true;
  rc = 0;
done:
  for (int e = 0; e < o->episodes; e++) sw_episode_destroy(&ep[e]);
  free(ms);
  return rc;
}

/* ---- the robosuite side ----------------------------------------------------------------------- */
static int s_write_actions(const char *path, const double *a, int n, char *err, size_t errlen) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    snprintf(err, errlen, "actions file %s: %s", path, strerror(errno));
    return -1;
  }
  /* little-endian float64 (the machines rsd runs on are little-endian) */
  size_t w = fwrite(a, sizeof *a, (size_t)n * 7, f);
  if (fclose(f) || w != (size_t)n * 7) {
    snprintf(err, errlen, "actions file %s: short write", path);
    return -1;
  }
  return 0;
}

/* Runs sim_bench_robosuite.py and reads its JSON into res[0..nmodes). Its output goes to a log file, whose
 * tail is shown when it fails. Returns 0, or -1 with the reason in err. */
static int s_run_robosuite(const s_opts_t *o, const char *gl, const double *actions, s_result_t *res,
                           json_t **raw_out, char *err, size_t errlen) {
  char dir[] = "/tmp/rsd-sim-bench-XXXXXX";
  if (!mkdtemp(dir)) {
    snprintf(err, errlen, "mkdtemp %s: %s", dir, strerror(errno));
    return -1;
  }
  char act[512], out[512], log[512], modes[64] = "", num[3][16];
  if (o->actions_out) snprintf(act, sizeof act, "%s", o->actions_out);
  else snprintf(act, sizeof act, "%s/actions.f64", dir);
  snprintf(out, sizeof out, "%s/robosuite.json", dir);
  snprintf(log, sizeof log, "%s/robosuite.log", dir);
  int rc = -1;
  if (s_write_actions(act, actions, o->steps, err, errlen)) goto done;
  for (int i = 0; i < o->nmodes; i++) {
    size_t len = strlen(modes);
    snprintf(modes + len, sizeof modes - len, "%s%d", i ? "," : "", o->modes[i]);
  }
  snprintf(num[0], sizeof num[0], "%d", o->task);
  snprintf(num[1], sizeof num[1], "%d", o->trial);
  snprintf(num[2], sizeof num[2], "%d", o->wait);
  char data[1024];
  if (o->data) snprintf(data, sizeof data, "%s", o->data);
  else sw_data_dir(data, sizeof data);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "fork: %s", strerror(errno));
    goto done;
  }
  if (pid == 0) {
    FILE *lf = freopen(log, "w", stdout);
    if (!lf || dup2(fileno(stdout), 2) < 0) _exit(126);
    if (strcmp(gl, "egl") == 0) {
      setenv("MUJOCO_GL", "egl", 0);
      setenv("PYOPENGL_PLATFORM", "egl", 0);
    } else {
      setenv("MUJOCO_GL", "osmesa", 0);
      setenv("PYOPENGL_PLATFORM", "osmesa", 0);
    }
    char *argv[] = {(char *)o->python, (char *)o->script, "--actions", act,    "--task", num[0],
                    "--trial",         num[1],          "--wait",    num[2], "--modes", modes,
                    "--data",          data,            "--json",    out,    NULL};
    execv(o->python, argv);
    fprintf(stderr, "sim_bench: exec %s: %s\n", o->python, strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char tail[2048] = "";
    FILE *lf = fopen(log, "r");
    if (lf) {
      fseek(lf, 0, SEEK_END);
      long sz = ftell(lf);
      fseek(lf, sz > (long)sizeof tail - 1 ? sz - (long)sizeof tail + 1 : 0, SEEK_SET);
      size_t got = fread(tail, 1, sizeof tail - 1, lf);
      tail[got] = '\0';
      fclose(lf);
    }
    snprintf(err, errlen, "%s %s %s %d; its output ends:\n%s", o->python, o->script,
             WIFEXITED(status) ? "exited with" : "was killed by signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail);
    goto done;
  }
  json_error_t je;
  json_t *root = json_load_file(out, 0, &je);
  if (!root) {
    snprintf(err, errlen, "%s: %s (line %d)", out, je.text, je.line);
    goto done;
  }
  json_t *jm = json_object_get(root, "modes");
  if (!json_is_array(jm) || (int)json_array_size(jm) != o->nmodes) {
    snprintf(err, errlen, "%s: 'modes' has %zu entries, expected %d", out, json_array_size(jm), o->nmodes);
    json_decref(root);
    goto done;
  }
  for (int i = 0; i < o->nmodes; i++) {
    json_t *m = json_array_get(jm, (size_t)i);
    s_result_t *r = &res[i];
    memset(r, 0, sizeof *r);
    r->image_size = (int)json_integer_value(json_object_get(m, "image_size"));
    r->steps = (int)json_integer_value(json_object_get(m, "steps"));
    r->wall_s = json_number_value(json_object_get(m, "wall_s"));
    r->cpu_s = json_number_value(json_object_get(m, "cpu_s"));
    json_t *sa = json_object_get(m, "success_at");
    r->success_at = json_is_integer(sa) ? (int)json_integer_value(sa) : -1;
    json_t *eef = json_object_get(m, "eef_pos"), *ms = json_object_get(m, "step_ms");
    if (r->image_size != o->modes[i] || r->steps != o->steps || json_array_size(eef) != 3 ||
        (int)json_array_size(ms) != r->steps || r->wall_s <= 0) {
      snprintf(err, errlen, "%s: mode %d: image_size %d, steps %d (expected %d, %d steps)", out, i, r->image_size,
               r->steps, o->modes[i], o->steps);
      json_decref(root);
      goto done;
    }
    for (int k = 0; k < 3; k++) r->eef_pos[k] = json_number_value(json_array_get(eef, (size_t)k));
    double *v = malloc(sizeof *v * (size_t)r->steps);
    if (!v) {
      snprintf(err, errlen, "out of memory");
      json_decref(root);
      goto done;
    }
    for (int k = 0; k < r->steps; k++) v[k] = json_number_value(json_array_get(ms, (size_t)k));
    s_stats(r, v, r->steps);
    free(v);
    r->ok = true;
  }
  /* keep versions and the GL setting for the JSON, drop the per-step arrays */
  for (size_t i = 0; i < json_array_size(jm); i++) json_object_del(json_array_get(jm, i), "step_ms");
  *raw_out = root;
  rc = 0;
done:
  if (!o->actions_out) unlink(act);
  unlink(out);
  unlink(log);
  rmdir(dir);
  return rc;
}

/* ---- the report ------------------------------------------------------------------------------- */
static double s_rate(const s_result_t *r, bool cpu) {
  double s = cpu ? r->cpu_s : r->wall_s;
  return s > 0 ? r->steps / s : 0;
}

static const char *s_mode_name(int size, char *buf, size_t cap) {
  if (size == 0) snprintf(buf, cap, "no images");
  else snprintf(buf, cap, "%dx%d x2", size, size);
  return buf;
}

static double s_eef_diff_mm(const s_result_t *a, const s_result_t *b) {
  double m = 0;
  for (int k = 0; k < 3; k++) m = fmax(m, fabs(a->eef_pos[k] - b->eef_pos[k]));
  return m * 1e3;
}

static void s_print(const s_opts_t *o, const s_result_t *rsd, const s_result_t *rs, bool have_rs) {
  char name[32];
  printf("\n%-12s %10s %10s %16s %9s", "mode", "steps/s", "cpu st/s", "ms/step mean p50", "p99");
  if (have_rs) printf(" | %12s %10s %16s | %9s %9s %9s", "robosuite/s", "cpu st/s", "ms/step mean p50",
                      "ratio", "ratio cpu", "eef diff");
  printf("\n");
  for (int i = 0; i < o->nmodes; i++) {
    const s_result_t *a = &rsd[i];
    printf("%-12s %10.1f %10.1f %8.2f %7.2f %9.2f", s_mode_name(a->image_size, name, sizeof name), s_rate(a, false),
           s_rate(a, true), a->ms_mean, a->ms_p50, a->ms_p99);
    if (have_rs) {
      const s_result_t *b = &rs[i];
      printf(" | %12.2f %10.2f %8.1f %7.1f | %8.1fx %8.1fx %6.3f mm", s_rate(b, false), s_rate(b, true), b->ms_mean,
             b->ms_p50, s_rate(a, false) / s_rate(b, false), s_rate(a, true) / s_rate(b, true),
             s_eef_diff_mm(a, b));
    }
    printf("\n");
  }
  printf("\nsteps/s: timed policy steps per wall second on the one pinned core (the figure the target is about);\n"
         "cpu st/s: per second of this process's CPU time (what the core would give if no one else used it).\n");
  if (o->episodes > 1) printf("rsd: %d episodes side by side on one thread; steps/s counts the steps of all.\n",
                              o->episodes);
  if (o->render_every > 1)
    printf("rsd renders the cameras after every %d-th step only (a policy that replans every %d steps sees no\n"
           "other observation); robosuite's OffScreenRenderEnv renders them after every step.\n",
           o->render_every, o->render_every);
  if (have_rs) {
    double worst = INFINITY;
    for (int i = 0; i < o->nmodes; i++)
      if (rsd[i].image_size) worst = fmin(worst, s_rate(&rsd[i], false) / s_rate(&rs[i], false));
    printf("eef diff: largest difference of the last observation's robot0_eef_pos, rsd vs robosuite (first episode).\n");
    if (isfinite(worst))
      printf("target: >= %.0fx robosuite's steps/s per core with rendering on: %s (lowest ratio %.1fx)\n",
             S_TARGET_RATIO, worst >= S_TARGET_RATIO ? "met" : "NOT met", worst);
  }
}

static json_t *s_result_json(const s_result_t *r) {
  return json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:[f,f,f], s:i}", "image_size", r->image_size,
                   "steps", r->steps, "wall_s", r->wall_s, "cpu_s", r->cpu_s, "steps_per_s", s_rate(r, false),
                   "steps_per_cpu_s", s_rate(r, true), "ms_mean", r->ms_mean, "ms_p50", r->ms_p50, "ms_p99",
                   r->ms_p99, "ms_mean_cpu", r->steps ? r->cpu_s * 1e3 / r->steps : 0.0, "eef_pos", r->eef_pos[0],
                   r->eef_pos[1], r->eef_pos[2], "success_at", r->success_at);
}

static int s_write_json(const char *path, const s_opts_t *o, json_t *host, const s_result_t *rsd,
                        const s_result_t *rs, json_t *rs_raw) {
  json_t *root = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:I, s:O}", "benchmark", "sim_bench", "suite",
                           "libero_spatial", "task", o->task, "trial", o->trial, "wait_steps", o->wait, "steps",
                           o->steps, "episodes", o->episodes, "seed", (json_int_t)o->seed, "host", host);
  json_t *modes = json_array();
  for (int i = 0; i < o->nmodes; i++) {
    json_t *m = json_pack("{s:i, s:o}", "image_size", rsd[i].image_size, "rsd", s_result_json(&rsd[i]));
    if (rs_raw) {
      json_object_set_new(m, "robosuite", s_result_json(&rs[i]));
      json_object_set_new(m, "ratio", json_real(s_rate(&rsd[i], false) / s_rate(&rs[i], false)));
      json_object_set_new(m, "ratio_cpu", json_real(s_rate(&rsd[i], true) / s_rate(&rs[i], true)));
      json_object_set_new(m, "eef_diff_mm", json_real(s_eef_diff_mm(&rsd[i], &rs[i])));
    }
    json_array_append_new(modes, m);
  }
  json_object_set_new(root, "modes", modes);
  json_object_set_new(root, "rsd_render_every", json_integer(o->render_every));
  if (rs_raw) json_object_set(root, "robosuite_run", rs_raw);
  int rc = json_dump_file(root, path, JSON_INDENT(1));
  json_decref(root);
  if (rc) fprintf(stderr, "sim_bench: cannot write %s\n", path);
  return rc;
}

/* ---- main ------------------------------------------------------------------------------------- */
static void s_usage(FILE *f) {
  fprintf(f,
          "usage: sim_bench [--task N] [--trial K] [--steps N] [--wait N] [--modes 0,128,256] [--episodes E]\n"
          "                 [--cpu C | --no-pin] [--seed S] [--data DIR] [--json FILE]\n"
          "                 [--robosuite PYTHON | --no-robosuite] [--script PATH] [--actions-out FILE]\n"
          "  --task, --trial  LIBERO-Spatial task and initial state (default 0, 0)\n"
          "  --steps N        timed policy steps per episode (default 200), after --wait LIBERO wait steps (10)\n"
          "  --modes LIST     image sizes: 0 (no rendering), 128, 224, 256 (default 0,128,256)\n"
          "  --episodes E     rsd: E episodes (trials K..K+E-1) side by side on the one thread (default 1)\n"
          "  --render-every K rsd: render the observation of every K-th step only, as for a policy that asks\n"
          "                   for a chunk every K steps (replan_every K); robosuite renders every step (default 1)\n"
          "  --cpu C          pin to CPU C (default: the last CPU this process may use); --no-pin: do not pin\n"
          "  --robosuite PY   also run sim_bench_robosuite.py with this python (default: %s)\n"
          "  --json FILE      also write the numbers as JSON\n",
          RSD_PYTHON[0] ? RSD_PYTHON : "none");
}

static int s_parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end || end == v || x < lo || x > hi) {
    fprintf(stderr, "sim_bench: %s '%s': expected an integer in %d..%d\n", opt, v, lo, hi);
    return -1;
  }
  *out = (int)x;
  return 0;
}

int main(int argc, char **argv) {
  s_opts_t o = {.task = 0, .trial = 0, .steps = 200, .wait = 10, .episodes = 1, .render_every = 1, .modes = {0, 128, 256},
                .nmodes = 3, .cpu = -1, .seed = 7, .python = RSD_PYTHON, .script = RSD_SIM_BENCH_PY};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int bad = 0;
    if (!strcmp(a, "--no-pin")) o.cpu = -2;
    else if (!strcmp(a, "--no-robosuite")) o.python = NULL;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      s_usage(stdout);
      return 0;
    } else if (!v) {
      fprintf(stderr, "sim_bench: unknown option or missing value: %s\n", a);
      s_usage(stderr);
      return 2;
    } else if (!strcmp(a, "--task")) bad = s_parse_int(a, v, 0, 9, &o.task), i++;
    else if (!strcmp(a, "--trial")) bad = s_parse_int(a, v, 0, 49, &o.trial), i++;
    else if (!strcmp(a, "--steps")) bad = s_parse_int(a, v, 1, 100000, &o.steps), i++;
    else if (!strcmp(a, "--wait")) bad = s_parse_int(a, v, 0, 1000, &o.wait), i++;
    else if (!strcmp(a, "--episodes")) bad = s_parse_int(a, v, 1, S_MAX_EPISODES, &o.episodes), i++;
    else if (!strcmp(a, "--render-every")) bad = s_parse_int(a, v, 1, 1000, &o.render_every), i++;
    else if (!strcmp(a, "--cpu")) bad = s_parse_int(a, v, 0, CPU_SETSIZE - 1, &o.cpu), i++;
    else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--data")) o.data = v, i++;
    else if (!strcmp(a, "--json")) o.json = v, i++;
    else if (!strcmp(a, "--robosuite")) o.python = v, i++;
    else if (!strcmp(a, "--script")) o.script = v, i++;
    else if (!strcmp(a, "--actions-out")) o.actions_out = v, i++;
    else if (!strcmp(a, "--modes")) {
      o.nmodes = 0;
      char buf[128];
      snprintf(buf, sizeof buf, "%s", v);
      for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && !bad; tok = strtok_r(NULL, ",", &save)) {
        if (o.nmodes == S_MAX_MODES) {
          fprintf(stderr, "sim_bench: --modes '%s': at most %d modes\n", v, S_MAX_MODES);
          return 2;
        }
        int s;
        bad = s_parse_int("--modes", tok, 0, SW_MAX_IMAGE, &s);
        if (!bad && s != 0 && s != 128 && s != 224 && s != 256) {
          fprintf(stderr, "sim_bench: --modes: image size %d not supported (0, 128, 224, 256)\n", s);
          bad = 1;
        }
        o.modes[o.nmodes++] = s;
      }
      i++;
    } else {
      fprintf(stderr, "sim_bench: unknown option %s\n", a);
      s_usage(stderr);
      return 2;
    }
    if (bad) return 2;
  }
  bool with_rs = o.python && o.python[0];
  if (with_rs && access(o.python, X_OK)) {
    fprintf(stderr, "sim_bench: --robosuite %s: not an executable (%s); --no-robosuite to skip it\n", o.python,
            strerror(errno));
    return 2;
  }
  if (with_rs && access(o.script, R_OK)) {
    fprintf(stderr, "sim_bench: --script %s: %s\n", o.script, strerror(errno));
    return 2;
  }

  char err[4096] = "";
  int cpu = s_pin(o.cpu, err, sizeof err);
  if (cpu == -1) {
    fprintf(stderr, "sim_bench: %s\n", err);
    return 1;
  }
  char data[1024], model[256];
  if (o.data) snprintf(data, sizeof data, "%s", o.data);
  else sw_data_dir(data, sizeof data);
  bench_cpu_model(model, sizeof model);
  double la0[3], la1[3];
  s_loadavg(la0);

  double t0 = s_now(CLOCK_MONOTONIC);
  sw_task_t *t = sw_task_load(data, "libero_spatial", o.task, err, sizeof err);
  if (!t) {
    fprintf(stderr, "sim_bench: %s\n", err);
    return 1;
  }
  if (o.trial + o.episodes > t->scene->ntrials && o.episodes > 1)
    fprintf(stderr, "sim_bench: trials %d..%d wrap around to 0 (task %d has %d)\n", o.trial,
            o.trial + o.episodes - 1, o.task, t->scene->ntrials);
  const char *gl = "none";
  for (int i = 0; i < o.nmodes; i++) {
    if (!o.modes[i]) continue;
    if (sw_task_make_renderer(t, err, sizeof err)) {
      fprintf(stderr, "sim_bench: renderer for task %d: %s\n", o.task, err);
      sw_task_destroy(&t);
      return 1;
    }
    gl = sw_renderer_backend(t->renderer);
    break;
  }
  double load_s = s_now(CLOCK_MONOTONIC) - t0;

  double *actions = malloc(sizeof *actions * 7 * (size_t)o.steps);
  if (!actions) {
    fprintf(stderr, "sim_bench: out of memory for %d actions\n", o.steps);
    sw_task_destroy(&t);
    return 1;
  }
  s_actions(actions, o.steps, o.seed);

  printf("sim_bench: LIBERO-Spatial task %d trial %d, %d wait + %d timed policy steps, %d episode%s, GL %s\n",
         o.task, o.trial, o.wait, o.steps, o.episodes, o.episodes > 1 ? "s side by side" : "", gl);
  if (cpu >= 0) printf("host: nproc %ld, %s; pinned to CPU %d (robosuite too); ", sysconf(_SC_NPROCESSORS_ONLN), model, cpu);
  else printf("host: nproc %ld, %s; not pinned; ", sysconf(_SC_NPROCESSORS_ONLN), model);
  printf("load average %.2f %.2f %.2f at start\n", la0[0], la0[1], la0[2]);
  printf("rsd: task loaded in %.1f s (renderer included)\n", load_s);
  fflush(stdout);

  s_result_t rsd[S_MAX_MODES] = {0}, rs[S_MAX_MODES] = {0};
  json_t *rs_raw = NULL; /* owned: the robosuite side's JSON, less its per-step times */
  int rc = 0;
  for (int i = 0; i < o.nmodes; i++) {
    if (s_run_rsd(t, &o, o.modes[i], actions, &rsd[i], err, sizeof err)) {
      fprintf(stderr, "sim_bench: rsd, image size %d: %s\n", o.modes[i], err);
      rc = 1;
      goto out;
    }
    printf("rsd %-4d %.1f steps/s\n", o.modes[i], s_rate(&rsd[i], false));
    fflush(stdout);
  }
  if (with_rs) {
    printf("robosuite: running %s %s (LIBERO's env; a few minutes)\n", o.python, o.script);
    fflush(stdout);
    double r0 = s_now(CLOCK_MONOTONIC);
    if (s_run_robosuite(&o, gl, actions, rs, &rs_raw, err, sizeof err)) {
      fprintf(stderr, "sim_bench: robosuite: %s\n", err);
      rc = 1;
      goto out;
    }
    printf("robosuite: done in %.0f s (MUJOCO_GL %s)\n", s_now(CLOCK_MONOTONIC) - r0,
           json_string_value(json_object_get(rs_raw, "mujoco_gl")) ? json_string_value(json_object_get(rs_raw, "mujoco_gl"))
                                                                    : "unset");
  }
  s_loadavg(la1);
  s_print(&o, rsd, rs, with_rs);
  printf("load average %.2f %.2f %.2f at the end\n", la1[0], la1[1], la1[2]);
  if (o.json) {
    json_t *host = json_pack("{s:I, s:s, s:i, s:s, s:[f,f,f], s:[f,f,f], s:f}", "nproc",
                             (json_int_t)sysconf(_SC_NPROCESSORS_ONLN), "cpu_model", model, "pinned_cpu", cpu, "gl",
                             gl, "loadavg_start", la0[0], la0[1], la0[2], "loadavg_end", la1[0], la1[1], la1[2],
                             "task_load_s", load_s);
    if (s_write_json(o.json, &o, host, rsd, rs, rs_raw)) rc = 1;
    json_decref(host);
  }
out:
  json_decref(rs_raw);
  free(actions);
  sw_task_destroy(&t);
  return rc;
}
