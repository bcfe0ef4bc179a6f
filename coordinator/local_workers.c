/* local_workers.c: starting, watching and stopping the sim and GPU workers `rsd run` runs on its own
 * machine (see local_workers.h). Single thread: the coordinator's loop calls co_local_poll. */
#include "local_workers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef RSD_GPU_CUDA
#define RSD_GPU_CUDA 0 /* 1: this build's GPU worker links libtorch's CUDA part (option RSD_CUDA) */
#endif

typedef struct {
  pid_t pid;          /* 0: not running */
  int restarts;       /* in a row: since the last run that lasted healthy_ms */
  int64_t started_ms; /* monotonic clock at the last start */
  char name[32];
  char device[64];    /* GPU workers: this slot's --device (kept across restarts); "" for sim workers */
} s_slot_t;

#define S_MAX_ARGS 16

struct co_local {
  char exe[1024], endpoint[512], log_dir[1024];
  const char *what;               /* "sim worker" or "gpu worker": for messages */
  const char *prefix;             /* "local-sim" or "local-gpu": slot names */
  char args[S_MAX_ARGS][1024];    /* arguments before "--name NAME" */
  int nargs;
  uint32_t n;
  int64_t healthy_ms; /* a run at least this long resets the slot's restart count */
  bool said_all_gone; /* the "no local worker left" line was printed */
  s_slot_t *slots; /* owned, n entries */
};

static bool s_executable(const char *path) { return access(path, X_OK) == 0; }

static int64_t s_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* $ENV, else NAME beside this executable, else ../DIR/NAME from it (the build tree). */
static int s_find(const char *env_name, const char *name, const char *dir, const char *hint, char *out, size_t cap,
                  char *err, size_t errlen) {
  const char *env = getenv(env_name);
  if (env && *env) {
    if (s_executable(env)) {
      snprintf(out, cap, "%s", env);
      return 0;
    }
    snprintf(err, errlen, "%s='%s' is not an executable file", env_name, env);
    return -1;
  }
  char self[1024];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    snprintf(err, errlen, "cannot find %s: /proc/self/exe unreadable (%s); set %s", name, strerror(errno), env_name);
    return -1;
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  char a[1100], b[1200];
  snprintf(a, sizeof a, "%s/%s", self, name);
  snprintf(b, sizeof b, "%s/../%s/%s", self, dir, name);
  if (s_executable(a)) {
    snprintf(out, cap, "%s", a);
    return 0;
  }
  if (s_executable(b)) {
    snprintf(out, cap, "%s", b);
    return 0;
  }
  snprintf(err, errlen, "cannot find %s (looked for %s and %s); build it, set %s, or %s", name, a, b, env_name, hint);
  return -1;
}

int co_local_find_worker(char *out, size_t cap, char *err, size_t errlen) {
  return s_find("RSD_SIM_WORKER", "rsd-sim-worker", "sim-worker",
                "set workers.sim_workers: 0 and start sim workers yourself", out, cap, err, errlen);
}

int co_local_find_gpu_worker(char *out, size_t cap, char *err, size_t errlen) {
  return s_find("RSD_GPU_WORKER", "rsd-gpu-worker", "gpu-worker",
                "set workers.gpu_workers: 0 and start GPU workers yourself", out, cap, err, errlen);
}

/* Starts slot i's process. Returns 0, or -1 with the reason in err. */
static int s_spawn(co_local_t *l, uint32_t i, char *err, size_t errlen) {
  s_slot_t *s = &l->slots[i];
  char log[1200];
  snprintf(log, sizeof log, "%s/%s.log", l->log_dir, s->name);
  char *argv[S_MAX_ARGS + 6];
  int k = 0;
  argv[k++] = l->exe;
  for (int a = 0; a < l->nargs; a++) argv[k++] = l->args[a];
  if (s->device[0]) {
    argv[k++] = "--device";
    argv[k++] = s->device;
  }
  argv[k++] = "--name";
  argv[k++] = s->name;
  argv[k] = NULL;
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "cannot start %s %s: fork: %s", l->what, s->name, strerror(errno));
    return -1;
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1); /* rsd died before the death signal was set */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, STDERR_FILENO);
      dup2(fd, STDOUT_FILENO);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      close(devnull);
    }
    /* the coordinator's signal dispositions are not the worker's */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    execv(l->exe, argv);
    fprintf(stderr, "rsd: cannot run %s: %s\n", l->exe, strerror(errno));
    _exit(127);
  }
  s->pid = pid;
  s->started_ms = s_now_ms();
  return 0;
}

/* Starts n workers of exe with args (then "--device DEV" when `device` is given: the config's workers.device,
 * resolved per slot by co_local_gpu_device; then "--name PREFIX-K"). */
static co_local_t *s_start(const char *what, const char *prefix, const char *exe, const char *endpoint,
                           const char *const *args, int nargs, const char *device, uint32_t n, const char *log_dir,
                           char *err, size_t errlen) {
  co_local_t *l = calloc(1, sizeof *l);
  if (!l || !(l->slots = calloc(n ? n : 1, sizeof *l->slots))) {
    free(l);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  l->what = what;
  l->prefix = prefix;
  snprintf(l->exe, sizeof l->exe, "%s", exe);
  snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
  snprintf(l->log_dir, sizeof l->log_dir, "%s", log_dir);
  for (int a = 0; a < nargs && a < S_MAX_ARGS; a++) snprintf(l->args[l->nargs++], sizeof l->args[0], "%s", args[a]);
  l->n = n;
  l->healthy_ms = (int64_t)CO_LOCAL_HEALTHY_S * 1000;
  if (mkdir(log_dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot make the worker log directory %s: %s", log_dir, strerror(errno));
    co_local_stop(&l, 0);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    snprintf(l->slots[i].name, sizeof l->slots[i].name, "%s-%u", prefix, i + 1);
    if (device) co_local_gpu_device(device, i, l->slots[i].device, sizeof l->slots[i].device);
    if (s_spawn(l, i, err, errlen)) {
      co_local_stop(&l, 0);
      return NULL;
    }
  }
  return l;
}

co_local_t *co_local_start(const char *exe, const char *endpoint, uint32_t n, uint32_t capacity, const char *keys,
                           const char *log_dir, char *err, size_t errlen) {
  char cap[16];
  snprintf(cap, sizeof cap, "%u", capacity);
  const char *args[] = {"--coordinator", endpoint, "--capacity", cap, "--keys", keys};
  return s_start("sim worker", "local-sim", exe, endpoint, args, keys && keys[0] ? 6 : 4, NULL, n, log_dir, err,
                 errlen);
}

co_local_t *co_local_start_gpu(const char *exe, const co_local_gpu_t *g, uint32_t n, const char *log_dir, char *err,
                               size_t errlen) {
  char batch[16], wait[16];
  snprintf(batch, sizeof batch, "%u", g->max_batch < 1 ? 1 : g->max_batch > 256 ? 256 : g->max_batch);
  snprintf(wait, sizeof wait, "%u", g->max_wait_us);
  const char *args[] = {"--broker", g->broker, "--model", g->model, "--dtype", g->dtype,
                        "--max-batch", batch, "--max-wait-us", wait, "--keys", g->keys};
  return s_start("gpu worker", "local-gpu", exe, g->broker, args, g->keys && g->keys[0] ? 12 : 10, g->device, n,
                 log_dir, err, errlen);
}

void co_local_gpu_device_pick(const char *config_device, uint32_t k, int cuda_build, uint32_t gpus, char *out,
                              size_t cap) {
  if (strcmp(config_device, "auto") == 0) {
    if (cuda_build && gpus > 0) snprintf(out, cap, "cuda:%u", k % gpus);
    else snprintf(out, cap, "cpu");
    return;
  }
  if (strncmp(config_device, "cuda:", 5) != 0 || !strchr(config_device, ',')) {
    snprintf(out, cap, "%s", config_device); /* "cpu", "cuda:N" */
    return;
  }
  /* "cuda:N,M,...": the (k mod count)-th index (the config checked the list) */
  uint32_t count = 1;
  for (const char *c = config_device + 5; *c; c++) count += *c == ',';
  const char *idx = config_device + 5;
  for (uint32_t skip = k % count; skip > 0; skip--) idx = strchr(idx, ',') + 1;
  snprintf(out, cap, "cuda:%.*s", (int)strcspn(idx, ","), idx);
}

uint32_t co_local_visible_gpus(void) {
  const char *v = getenv("CUDA_VISIBLE_DEVICES");
  uint32_t n = 0;
  if (v) {
    if (!*v || strncmp(v, "-1", 2) == 0) return 0;
    for (n = 1; *v; v++) n += *v == ',';
    return n;
  }
  char node[32];
  for (int i = 0; i < 64; i++) {
    snprintf(node, sizeof node, "/dev/nvidia%d", i);
    if (access(node, F_OK) == 0) n++;
  }
  return n;
}

void co_local_gpu_device(const char *config_device, uint32_t k, char *out, size_t cap) {
  co_local_gpu_device_pick(config_device, k, RSD_GPU_CUDA, co_local_visible_gpus(), out, cap);
}

void co_local_poll(co_local_t *l) {
  if (!l) return;
  for (uint32_t i = 0; i < l->n; i++) {
    s_slot_t *s = &l->slots[i];
    int status;
    if (s->pid <= 0 || waitpid(s->pid, &status, WNOHANG) != s->pid) continue;
    s->pid = 0;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0; /* a BYE from the coordinator */
    if (clean) continue;
    char how[64];
    if (WIFSIGNALED(status)) snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
    else snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    if (s_now_ms() - s->started_ms >= l->healthy_ms) s->restarts = 0; /* it had been running well */
    if (s->restarts >= CO_LOCAL_RESTARTS) {
      fprintf(stderr, "\n[rsd] local %s %s died (%s); not restarted again (%d restarts in a row; log %s/%s.log)\n",
              l->what, s->name, how, s->restarts, l->log_dir, s->name);
      continue;
    }
    s->restarts++;
    char err[512];
    fprintf(stderr, "\n[rsd] local %s %s died (%s); restarting it (%d of %d; log %s/%s.log)\n", l->what, s->name,
            how, s->restarts, CO_LOCAL_RESTARTS, l->log_dir, s->name);
    if (s_spawn(l, i, err, sizeof err)) fprintf(stderr, "[rsd] %s\n", err);
  }
  if (l->n && !co_local_running(l) && !l->said_all_gone) {
    l->said_all_gone = true; /* a campaign that completes says BYE first and never gets here running */
    fprintf(stderr, "\n[rsd] no local %s is left (logs in %s); the campaign waits for %ss that connect to %s "
                    "(Ctrl-C stops it; rsd run continues it later)\n",
            l->what, l->log_dir, l->what, l->endpoint);
  }
}

void co_local_set_healthy_ms(co_local_t *l, int64_t ms) {
  if (l) l->healthy_ms = ms;
}

uint32_t co_local_running(const co_local_t *l) {
  uint32_t n = 0;
  for (uint32_t i = 0; l && i < l->n; i++) n += l->slots[i].pid > 0;
  return n;
}

/* Reaps the workers that exited, for up to ms milliseconds or until none runs. */
static void s_reap_for(co_local_t *l, int ms) {
  struct timespec pause = {0, 20 * 1000 * 1000};
  for (int t = 0; t < ms / 20 && co_local_running(l); t++) {
    for (uint32_t i = 0; i < l->n; i++)
      if (l->slots[i].pid > 0 && waitpid(l->slots[i].pid, NULL, WNOHANG) == l->slots[i].pid) l->slots[i].pid = 0;
    if (co_local_running(l)) nanosleep(&pause, NULL);
  }
}

void co_local_stop(co_local_t **self_p, int grace_ms) {
  if (!self_p || !*self_p) return;
  co_local_t *l = *self_p;
  if (l->slots) s_reap_for(l, grace_ms); /* workers told BYE leave by themselves */
  for (uint32_t i = 0; l->slots && i < l->n; i++)
    if (l->slots[i].pid > 0) kill(l->slots[i].pid, SIGTERM);
  if (l->slots) s_reap_for(l, 5000);
  for (uint32_t i = 0; l->slots && i < l->n; i++)
    if (l->slots[i].pid > 0) {
      kill(l->slots[i].pid, SIGKILL);
      waitpid(l->slots[i].pid, NULL, 0);
    }
  free(l->slots);
  free(l);
  *self_p = NULL;
}
