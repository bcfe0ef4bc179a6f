/* local_workers_test.c: the supervision of `rsd run`'s local workers (local_workers.c), with a stand-in
 * worker: a shell script in a temporary directory that appends its arguments to a file each time it
 * starts, then lives a set time and exits with a set status. Checks:
 *   - a worker that dies at start is restarted CO_LOCAL_RESTARTS times, then given up on;
 *   - a worker that dies after running longer than the healthy time is restarted again and again (its
 *     count starts over), so a long sweep is not left without workers by rare crashes;
 *   - a worker that exits 0 (told BYE) is not restarted;
 *   - each start gets the sim worker's arguments and its slot's --name. */
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

  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
  if (system(cmd) != 0) fprintf(stderr, "local_workers_test: could not remove %s\n", s_dir);
  return check_summary("local_workers_test");
}
