/* local_workers.c: starting, watching and stopping the sim workers `rsd run` runs on its own machine
 * (see local_workers.h). Single thread: the coordinator's loop calls co_local_poll. */
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

typedef struct {
  pid_t pid;      /* 0: not running */
  int restarts;
  char name[32];
} s_slot_t;

struct co_local {
  char exe[1024], endpoint[512], log_dir[1024];
  uint32_t capacity, n;
  bool said_all_gone; /* the "no local worker left" line was printed */
  s_slot_t *slots; /* owned, n entries */
};

static bool s_executable(const char *path) { return access(path, X_OK) == 0; }

int co_local_find_worker(char *out, size_t cap, char *err, size_t errlen) {
  const char *env = getenv("RSD_SIM_WORKER");
  if (env && *env) {
    if (s_executable(env)) {
      snprintf(out, cap, "%s", env);
      return 0;
    }
    snprintf(err, errlen, "RSD_SIM_WORKER='%s' is not an executable file", env);
    return -1;
  }
  char self[1024];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    snprintf(err, errlen, "cannot find rsd-sim-worker: /proc/self/exe unreadable (%s); set RSD_SIM_WORKER",
             strerror(errno));
    return -1;
  }
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  char a[1100], b[1100];
  snprintf(a, sizeof a, "%s/rsd-sim-worker", self);
  snprintf(b, sizeof b, "%s/../sim-worker/rsd-sim-worker", self);
  if (s_executable(a)) {
    snprintf(out, cap, "%s", a);
    return 0;
  }
  if (s_executable(b)) {
    snprintf(out, cap, "%s", b);
    return 0;
  }
  snprintf(err, errlen,
           "cannot find rsd-sim-worker (looked for %s and %s); build it, set RSD_SIM_WORKER, or set "
           "workers.sim_workers: 0 and start sim workers yourself",
           a, b);
  return -1;
}

/* Starts slot i's process. Returns 0, or -1 with the reason in err. */
static int s_spawn(co_local_t *l, uint32_t i, char *err, size_t errlen) {
  s_slot_t *s = &l->slots[i];
  char log[1200], capacity[16];
  snprintf(log, sizeof log, "%s/%s.log", l->log_dir, s->name);
  snprintf(capacity, sizeof capacity, "%u", l->capacity);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(err, errlen, "cannot start sim worker %s: fork: %s", s->name, strerror(errno));
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
    execl(l->exe, l->exe, "--coordinator", l->endpoint, "--capacity", capacity, "--name", s->name, (char *)NULL);
    fprintf(stderr, "rsd: cannot run %s: %s\n", l->exe, strerror(errno));
    _exit(127);
  }
  s->pid = pid;
  return 0;
}

co_local_t *co_local_start(const char *exe, const char *endpoint, uint32_t n, uint32_t capacity, const char *log_dir,
                           char *err, size_t errlen) {
  co_local_t *l = calloc(1, sizeof *l);
  if (!l || !(l->slots = calloc(n ? n : 1, sizeof *l->slots))) {
    free(l);
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  snprintf(l->exe, sizeof l->exe, "%s", exe);
  snprintf(l->endpoint, sizeof l->endpoint, "%s", endpoint);
  snprintf(l->log_dir, sizeof l->log_dir, "%s", log_dir);
  l->n = n;
  l->capacity = capacity;
  if (mkdir(log_dir, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "cannot make the worker log directory %s: %s", log_dir, strerror(errno));
    co_local_stop(&l, 0);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    snprintf(l->slots[i].name, sizeof l->slots[i].name, "local-sim-%u", i + 1);
    if (s_spawn(l, i, err, errlen)) {
      co_local_stop(&l, 0);
      return NULL;
    }
  }
  return l;
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
    if (s->restarts >= CO_LOCAL_RESTARTS) {
      fprintf(stderr, "\n[rsd] local sim worker %s died (%s); not restarted again (%d restarts; log %s/%s.log)\n",
              s->name, how, s->restarts, l->log_dir, s->name);
      continue;
    }
    s->restarts++;
    char err[512];
    fprintf(stderr, "\n[rsd] local sim worker %s died (%s); restarting it (%d of %d; log %s/%s.log)\n", s->name, how,
            s->restarts, CO_LOCAL_RESTARTS, l->log_dir, s->name);
    if (s_spawn(l, i, err, sizeof err)) fprintf(stderr, "[rsd] %s\n", err);
  }
  if (l->n && !co_local_running(l) && !l->said_all_gone) {
    l->said_all_gone = true; /* a campaign that completes says BYE first and never gets here running */
    fprintf(stderr, "\n[rsd] no local sim worker is left (logs in %s); the campaign waits for sim workers that "
                    "connect to %s (Ctrl-C stops it; rsd run continues it later)\n",
            l->log_dir, l->endpoint);
  }
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
