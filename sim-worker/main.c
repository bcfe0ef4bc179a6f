/* main.c: the `rsd-sim-worker` command.
 *
 *   rsd-sim-worker --coordinator ENDPOINT [--capacity N] [--name NAME] [--data DIR] [--infer-timeout-ms MS]
 *                  [--keys DIR] [--quiet]
 *       serve a campaign's coordinator (worker.h); --keys: over CURVE with DIR's server.cert and
 *       client.cert_secret (`rsd keys`, the campaign's bind.keys)
 *   rsd-sim-worker render --task T --trial R [--suite S] [--camera agentview|eye_in_hand] [--size N]
 *       [--steps K] [--data DIR] -o FILE.png
 *       one camera frame of a trial's first observation (after the wait steps, or K more steps of the
 *       scripted expert), so a person can look at a scene
 *   rsd-sim-worker expert ...    the scripted expert over tasks x trials, a success table (expert_cli.c)
 *   rsd-sim-worker collect ...   expert demonstrations as HDF5 (expert_cli.c)
 *
 * `--coordinator` may also name a file holding the endpoint (`rsd run` writes DIR/coordinator.endpoint).
 * Exit status: 0 done, 1 runtime error, 2 usage error. */
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "episode.h"
#include "expert.h"
#include "mjguard.h"
#include "png.h"
#include "worker.h"

int sw_expert_cli(int argc, char **argv);
int sw_collect_cli(int argc, char **argv);

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig) { s_stop = sig; }

static int s_usage(void) {
  fprintf(stderr,
          "usage: rsd-sim-worker --coordinator ENDPOINT|FILE [--capacity N] [--name NAME] [--data DIR]\n"
          "                      [--infer-timeout-ms MS] [--keys DIR] [--quiet]\n"
          "       rsd-sim-worker render --task T --trial R [--suite S] [--camera agentview|eye_in_hand] [--size N]\n"
          "                             [--steps K] [--data DIR] -o FILE.png\n"
          "       rsd-sim-worker expert --help | collect --help\n");
  return 2;
}

/* A number argument in [lo, hi], or -1 after a message naming the option and the value. */
static long s_num(const char *opt, const char *v, long lo, long hi) {
  char *end = NULL;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || x < lo || x > hi) {
    fprintf(stderr, "rsd-sim-worker: %s '%s' is not a number in %ld..%ld\n", opt, v ? v : "", lo, hi);
    return -1;
  }
  return x;
}

/* ENDPOINT as given, or read from a file (the first line) when it names one. */
static const char *s_endpoint(const char *arg, char *buf, size_t cap) {
  if (strstr(arg, "://")) return arg;
  FILE *f = fopen(arg, "r");
  if (!f) {
    fprintf(stderr, "rsd-sim-worker: --coordinator '%s' is neither an endpoint (tcp://..., ipc://...) nor a readable file\n",
            arg);
    return NULL;
  }
  if (!fgets(buf, (int)cap, f)) buf[0] = '\0';
  fclose(f);
  buf[strcspn(buf, "\r\n")] = '\0';
  if (!strstr(buf, "://")) {
    fprintf(stderr, "rsd-sim-worker: %s does not hold an endpoint (read '%s')\n", arg, buf);
    return NULL;
  }
  return buf;
}

static int s_render(int argc, char **argv, const char *data_dir) {
  const char *suite = "libero_spatial", *camera = "agentview", *out = NULL;
  long task = -1, trial = -1, size = 128, steps = 0;
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return s_usage();
    if (!strcmp(a, "--task")) task = s_num(a, v, 0, 9999);
    else if (!strcmp(a, "--trial")) trial = s_num(a, v, 0, 99999);
    else if (!strcmp(a, "--size")) size = s_num(a, v, 1, 4096);
    else if (!strcmp(a, "--steps")) steps = s_num(a, v, 0, 100000);
    else if (!strcmp(a, "--suite")) suite = v;
    else if (!strcmp(a, "--camera")) camera = v;
    else if (!strcmp(a, "--data")) data_dir = v;
    else if (!strcmp(a, "-o")) out = v;
    else return s_usage();
  }
  if (size < 0 || steps < 0) return 2; /* s_num said why */
  if (task < 0 || trial < 0 || !out) return s_usage();
  bool eye = !strcmp(camera, "eye_in_hand");
  if (!eye && strcmp(camera, "agentview")) {
    fprintf(stderr, "rsd-sim-worker render: camera '%s' unknown (have: agentview, eye_in_hand)\n", camera);
    return 2;
  }
  char err[1024];
  sw_task_t *t = sw_task_load(data_dir, suite, (int)task, err, sizeof err);
  if (!t) {
    fprintf(stderr, "rsd-sim-worker render: %s\n", err);
    return 1;
  }
  sw_episode_opts_t eo = {.wait_steps = 10, .max_steps = steps > 220 ? (int)steps : 220, .image_size = (int)size};
  sw_episode_t *ep = sw_episode_new(t, (int)trial, &eo, err, sizeof err);
  sw_expert_t *x = ep && steps > 0 ? sw_expert_new(ep, err, sizeof err) : NULL;
  int rc = ep && (steps == 0 || x) ? 0 : 1;
  for (long s = 0; !rc && s < steps && ep->state == SW_EP_RUNNING; s++) {
    double a[SW_ACTION_DIM];
    sw_expert_act(x, ep, a);
    rc = sw_episode_step(ep, a, SW_ACTION_DIM, err, sizeof err) ? 1 : 0;
  }
  if (!rc && ep->state == SW_EP_INFRA_ERROR) {
    snprintf(err, sizeof err, "%s", ep->reason);
    rc = 1;
  }
  if (!rc) rc = sw_png_write(out, eye ? ep->eye_in_hand : ep->agentview, (int)size, (int)size, err, sizeof err) ? 1 : 0;
  if (rc) fprintf(stderr, "rsd-sim-worker render: %s\n", err);
  else
    printf("%s: %s task %ld trial %ld, %s %ldx%ld, after %d policy steps (%s)\n", out, suite, task, trial, camera, size,
           size, ep->steps, sw_ep_state_name(ep->state));
  sw_expert_destroy(&x);
  sw_episode_destroy(&ep);
  sw_task_destroy(&t);
  return rc;
}

int main(int argc, char **argv) {
  sw_guard_install();
  char data_buf[1024];
  const char *data_dir = sw_data_dir(data_buf, sizeof data_buf);
  if (argc < 2) return s_usage();
  if (!strcmp(argv[1], "render")) return s_render(argc - 1, argv + 1, data_dir);
  if (!strcmp(argv[1], "expert")) return sw_expert_cli(argc - 1, argv + 1);
  if (!strcmp(argv[1], "collect")) return sw_collect_cli(argc - 1, argv + 1);

  sw_worker_opts_t o = {.capacity = 2, .infer_timeout_ms = 60000, .verbose = 1, .data_dir = data_dir, .stop = &s_stop};
  const char *coordinator = NULL, *keys = NULL;
  for (int i = 1; i < argc;) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--quiet")) {
      o.verbose = 0;
      i++;
      continue;
    }
    if (!v) return s_usage();
    i += 2;
    if (!strcmp(a, "--coordinator")) coordinator = v;
    else if (!strcmp(a, "--name")) o.name = v;
    else if (!strcmp(a, "--data")) o.data_dir = v;
    else if (!strcmp(a, "--keys")) keys = v;
    else if (!strcmp(a, "--capacity")) {
      long c = s_num(a, v, 1, 64);
      if (c < 0) return 2;
      o.capacity = (uint32_t)c;
    } else if (!strcmp(a, "--infer-timeout-ms")) {
      long t = s_num(a, v, 1, 3600000);
      if (t < 0) return 2;
      o.infer_timeout_ms = (uint32_t)t;
    } else return s_usage();
  }
  if (!coordinator) return s_usage();
  char ep_buf[512];
  if (!(o.coordinator = s_endpoint(coordinator, ep_buf, sizeof ep_buf))) return 2;
  if (o.coordinator != coordinator) o.coordinator_file = coordinator; /* read again before each new session */
  zcert_t *cert = NULL;
  char server_key[41] = "";
  if (keys) {
    msg_error_t me;
    if (msg_keys_client(keys, &cert, server_key, &me)) {
      fprintf(stderr, "rsd-sim-worker: --keys: %s\n", me.text);
      return 2;
    }
    o.curve_cert = cert;
    o.curve_server_key = server_key;
  }
  zsys_handler_set(NULL); /* our handlers, not czmq's */
  struct sigaction sa = {0};
  sa.sa_handler = s_on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int rc = sw_worker_run(&o);
  zcert_destroy(&cert);
  return rc;
}
