/* local_workers_test.c: the supervision of `rsd run`'s local workers (local_workers.c), with a stand-in
 * worker: a shell script in a temporary directory that appends its arguments to a file each time it
 * starts, then lives a set time and exits with a set status. Checks:
 *   - a worker that dies at start is restarted CO_LOCAL_RESTARTS times, then given up on;
 *   - a worker that dies after running longer than the healthy time is restarted again and again (its
 *     count starts over), so a long sweep is not left without workers by rare crashes;
 *   - a worker that exits 0 (told BYE) is not restarted;
 *   - each start gets the sim worker's arguments and its slot's --name;
 *   - local GPU workers are spread over the configured or visible devices, one --device per slot, kept
 *     across a restart (co_local_gpu_device_pick, co_local_visible_gpus, co_local_start_gpu). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "local_workers.h"

static char s_dir[] = "/tmp/local_workers_test.XXXXXX";

/* Writes the stand-in worker <s_dir>/<tag>.sh: it logs "$@" to <tag>.starts, sleeps `life`, exits `status`. */
static void s_script(const char *tag, const char *life, int status, char *exe, size_t cap) {
  snprintf(exe, cap, "%s/%s.sh", s_dir, tag);
  FILE *f = fopen(exe, "w");
  CHECK(f != NULL, "write %s", exe);
  if (!f) return;
  fprintf(f, "#!/bin/sh\necho \"$@\" >>'%s/%s.starts'\nsleep %s\nexit %d\n", s_dir, tag, life, status);
  fclose(f);
  chmod(exe, 0755);
}

/* Lines in <s_dir>/<tag>.starts (how many times the worker started); the first one into first. */
static int s_starts(const char *tag, char *first, size_t cap) {
  char path[256], line[512];
  snprintf(path, sizeof path, "%s/%s.starts", s_dir, tag);
  FILE *f = fopen(path, "r");
  int n = 0;
  if (first) first[0] = 0;
  while (f && fgets(line, sizeof line, f)) {
    if (n == 0 && first) snprintf(first, cap, "%s", line);
    n++;
  }
  if (f) fclose(f);
  return n;
}

/* Runs one local sim worker slot of `exe` for `ms`, polling as the coordinator does; returns how many
 * processes are still running at the end. */
static unsigned s_supervise(const char *exe, int64_t healthy_ms, int ms) {
  char err[512], logs[256];
  snprintf(logs, sizeof logs, "%s/logs", s_dir);
  co_local_t *l = co_local_start(exe, "tcp://127.0.0.1:9", 1, 2, NULL, logs, err, sizeof err);
  CHECK(l != NULL, "co_local_start: %s", err);
  if (!l) return 0;
  co_local_set_healthy_ms(l, healthy_ms);
  struct timespec tick = {0, 20 * 1000 * 1000};
  for (int t = 0; t < ms / 20; t++) {
    co_local_poll(l);
    nanosleep(&tick, NULL);
  }
  unsigned running = co_local_running(l);
  co_local_stop(&l, 0);
  CHECK(l == NULL, "co_local_stop leaves the handle set");
  return running;
}

int main(void) {
  if (!mkdtemp(s_dir)) {
    perror("mkdtemp");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  char exe[256], first[512];

  /* Dies at once, every time: 1 start + CO_LOCAL_RESTARTS restarts, then none. */
  s_script("crash", "0", 3, exe, sizeof exe);
  unsigned running = s_supervise(exe, 60000, 2000);
  int n = s_starts("crash", first, sizeof first);
  CHECK(n == 1 + CO_LOCAL_RESTARTS, "a worker dying at start ran %d times, expected %d", n, 1 + CO_LOCAL_RESTARTS);
  CHECK(running == 0, "%u still running after the restart budget", running);
  CHECK(strstr(first, "--coordinator tcp://127.0.0.1:9 --capacity 2 --name local-sim-1") != NULL,
        "worker arguments: %s", first);

  /* Runs 0.3 s, longer than the healthy time (0.1 s), then dies: restarted each time, beyond the budget. */
  s_script("healthy", "0.3", 3, exe, sizeof exe);
  s_supervise(exe, 100, 3000);
  n = s_starts("healthy", NULL, 0);
  CHECK(n > 2 + CO_LOCAL_RESTARTS, "a worker that ran past the healthy time before dying started %d times; "
                                   "expected more than %d (its restart count starts over)", n, 2 + CO_LOCAL_RESTARTS);

  /* The same worker with a healthy time longer than its runs: the budget holds. */
  s_script("short", "0.3", 3, exe, sizeof exe);
  s_supervise(exe, 60000, 4000);
  n = s_starts("short", NULL, 0);
  CHECK(n == 1 + CO_LOCAL_RESTARTS, "a worker dying after 0.3 s (healthy time 60 s) started %d times, expected %d",
        n, 1 + CO_LOCAL_RESTARTS);

  /* Exits 0, as after BYE: not restarted. */
  s_script("bye", "0", 0, exe, sizeof exe);
  s_supervise(exe, 100, 600);
  n = s_starts("bye", NULL, 0);
  CHECK(n == 1, "a worker that exited 0 started %d times", n);

  /* Devices of local GPU workers. */
  struct {
    const char *config;
    int cuda_build;
    uint32_t gpus, k;
    const char *want;
  } picks[] = {{"auto", 1, 4, 0, "cuda:0"}, {"auto", 1, 4, 3, "cuda:3"},  {"auto", 1, 4, 5, "cuda:1"},
               {"auto", 1, 0, 2, "cpu"},    {"auto", 0, 4, 1, "cpu"},     {"cpu", 1, 4, 3, "cpu"},
               {"cuda:2", 1, 8, 5, "cuda:2"}, {"cuda:1,3", 1, 0, 0, "cuda:1"}, {"cuda:1,3", 1, 0, 1, "cuda:3"},
               {"cuda:1,3", 1, 0, 2, "cuda:1"}, {"cuda:0,12,7", 0, 0, 4, "cuda:12"}};
  for (size_t i = 0; i < sizeof picks / sizeof picks[0]; i++) {
    char dev[64];
    co_local_gpu_device_pick(picks[i].config, picks[i].k, picks[i].cuda_build, picks[i].gpus, dev, sizeof dev);
    CHECK(strcmp(dev, picks[i].want) == 0, "device of GPU worker %u for '%s' (CUDA build %d, %u GPUs): %s, want %s",
          picks[i].k, picks[i].config, picks[i].cuda_build, picks[i].gpus, dev, picks[i].want);
  }
  const char *had = getenv("CUDA_VISIBLE_DEVICES");
  char saved[256] = "";
  if (had) snprintf(saved, sizeof saved, "%s", had);
  setenv("CUDA_VISIBLE_DEVICES", "2,3,5", 1);
  CHECK(co_local_visible_gpus() == 3, "CUDA_VISIBLE_DEVICES=2,3,5: %u GPUs", co_local_visible_gpus());
  setenv("CUDA_VISIBLE_DEVICES", "GPU-8a1b,GPU-77c2", 1);
  CHECK(co_local_visible_gpus() == 2, "two GPU UUIDs: %u GPUs", co_local_visible_gpus());
  setenv("CUDA_VISIBLE_DEVICES", "", 1);
  CHECK(co_local_visible_gpus() == 0, "CUDA_VISIBLE_DEVICES empty: %u GPUs", co_local_visible_gpus());
  setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
  CHECK(co_local_visible_gpus() == 0, "CUDA_VISIBLE_DEVICES=-1: %u GPUs", co_local_visible_gpus());
  if (had) setenv("CUDA_VISIBLE_DEVICES", saved, 1);
  else unsetenv("CUDA_VISIBLE_DEVICES");

  /* Three GPU workers on "cuda:0,1": slots 1 and 3 on cuda:0, slot 2 on cuda:1; each dies at once and is
   * restarted with its own device. */
  s_script("gpu", "0", 3, exe, sizeof exe);
  {
    char err[512], logs[256];
    snprintf(logs, sizeof logs, "%s/logs", s_dir);
    co_local_gpu_t g = {"tcp://127.0.0.1:9", "models/x", "cuda:0,1", "bfloat16", 8, 2000, NULL};
    co_local_t *l = co_local_start_gpu(exe, &g, 3, logs, err, sizeof err);
    CHECK(l != NULL, "co_local_start_gpu: %s", err);
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (int t = 0; l && t < 50; t++) {
      co_local_poll(l);
      nanosleep(&tick, NULL);
    }
    co_local_stop(&l, 0);
  }
  char path[256], line[512];
  snprintf(path, sizeof path, "%s/gpu.starts", s_dir);
  FILE *f = fopen(path, "r");
  int slot_dev[4][2] = {{0}}, lines = 0, args_ok = 0;
  while (f && fgets(line, sizeof line, f)) {
    lines++;
    args_ok += strstr(line, "--broker tcp://127.0.0.1:9 --model models/x --dtype bfloat16 --max-batch 8 "
                            "--max-wait-us 2000 --device cuda:") != NULL;
    for (int s = 1; s <= 3; s++) {
      char name[32];
      snprintf(name, sizeof name, "--name local-gpu-%d\n", s);
      if (strstr(line, name)) slot_dev[s][strstr(line, "--device cuda:1 ") ? 1 : 0]++;
    }
  }
  if (f) fclose(f);
  CHECK(lines == 3 * (1 + CO_LOCAL_RESTARTS) && args_ok == lines, "GPU worker starts: %d lines, %d with the "
        "expected arguments (want %d)", lines, args_ok, 3 * (1 + CO_LOCAL_RESTARTS));
  CHECK(slot_dev[1][0] == 1 + CO_LOCAL_RESTARTS && slot_dev[1][1] == 0 && slot_dev[2][1] == 1 + CO_LOCAL_RESTARTS &&
            slot_dev[2][0] == 0 && slot_dev[3][0] == 1 + CO_LOCAL_RESTARTS && slot_dev[3][1] == 0,
        "devices per slot (starts on cuda:0 / cuda:1): 1: %d/%d, 2: %d/%d, 3: %d/%d", slot_dev[1][0], slot_dev[1][1],
        slot_dev[2][0], slot_dev[2][1], slot_dev[3][0], slot_dev[3][1]);

  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
  if (system(cmd) != 0) fprintf(stderr, "local_workers_test: could not remove %s\n", s_dir);
  return check_summary("local_workers_test");
}
