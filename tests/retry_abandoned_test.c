/* retry_abandoned_test.c: `--retry-abandoned` end to end, with `rsd run` and protocol-playing sim workers
 * (fake_sim_worker), the way an outage plays out in a real sweep.
 *
 *   1. `rsd run` with leases.max_attempts 1. A worker that dies (SIGKILL) holding leases after 2 RESULTs:
 *      its leases expire and, at one attempt, those episodes are abandoned. A second worker finishes the
 *      rest, and rsd exits 0 with a complete campaign that has abandoned episodes; `rsd report` lists them.
 *   2. `rsd run CONFIG --retry-abandoned` with a healthy worker: the abandoned episodes wait again and run;
 *      the campaign ends with every episode done, each key once, and the earlier failures still counted
 *      (journal attempts, the report's retries), with one requeued event per abandoned episode.
 *   3. `rsd resume DIR --retry-abandoned` on the finished campaign: nothing to requeue, exit 0 at once.
 *
 *   retry_abandoned_test RSD FAKE_SIM_WORKER */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"
#include "proc.h"
#include "scratch.h"

#define S_EPISODES 12 /* tasks 0, 1 x trials 6 */

static bool s_counts(const char *dir, co_journal_counts_t *c, uint64_t events[CO_EVENT_COUNT_]) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal in %s: %s", dir, je.text);
  if (!j) return false;
  bool ok = co_journal_counts(j, c, NULL, 0, NULL, &je) == CO_JOURNAL_OK &&
            co_journal_event_counts(j, events, NULL, &je) == CO_JOURNAL_OK;
  CHECK(ok, "counts: %s", je.text);
  co_journal_close(&j);
  return ok;
}

/* Waits up to 10 s for rsd's log to say where sim workers connect (the endpoint file is written then). */
static bool s_serving(const char *log) {
  static char buf[1 << 16];
  for (int i = 0; i < 1000; i++) {
    scratch_read(log, buf, sizeof buf);
    if (strstr(buf, "sim workers connect to")) return true;
    usleep(10000);
  }
  return false;
}

/* Result rows in the journal, and how many keys came twice. */
static int s_result_rows(const char *dir, int *twice) {
  bool seen[2][6] = {{false}};
  *twice = 0;
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return -1;
  int rows = 0;
  co_journal_iter_t *it = co_journal_results(j, NULL, &je);
  static co_journal_result_t r;
  while (it && co_journal_results_next(it, &r, &je)) {
    rows++;
    if (r.r.task < 2 && r.r.trial < 6) {
      *twice += seen[r.r.task][r.r.trial];
      seen[r.r.task][r.r.trial] = true;
    }
  }
  co_journal_iter_destroy(&it);
  co_journal_close(&j);
  return rows;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  atexit(proc_kill_all);
  alarm(110);
  char *rsd = argv[1], *fake = argv[2];
  char dir[] = "/tmp/rsd-retry-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], out[128], at[160], wlog[128], logs[4][128], text[1024], report[160], rlog[160];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(at, sizeof at, "@%s/coordinator.endpoint", out);
  snprintf(wlog, sizeof wlog, "%s/workers.log", dir);
  snprintf(report, sizeof report, "%s/report.md", out);
  snprintf(rlog, sizeof rlog, "%s/report.log", dir);
  for (int i = 0; i < 4; i++) snprintf(logs[i], sizeof logs[i], "%s/rsd%d.log", dir, i);
  snprintf(text, sizeof text,
           "name: retry_abandoned_test\nsuite: libero_spatial\ntasks: [0, 1]\ntrials: 6\noutput: %s\n"
           "variants:\n  - name: expert\n    policy: expert\n"
           "workers:\n  sim_workers: 0\n"
           "leases:\n  heartbeat_ms: 200\n  liveness: 5\n  max_attempts: 1\n"
           "bind:\n  coordinator: tcp://127.0.0.1:*\n",
           out);
  CHECK(scratch_write(cfg, text), "write %s", cfg);

  /* 1. The dying worker, then a healthy one once it is gone. */
  pid_t co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[0], NULL, NULL);
  CHECK(s_serving(logs[0]), "phase 1: rsd never served (log %s)", logs[0]);
  pid_t dying = proc_spawn((char *[]){fake, at, "2", "30", "2", NULL}, wlog, NULL, NULL);
  CHECK(proc_wait(dying, 30) == 128 + 9, "the dying worker did not kill itself holding a lease (%s)", wlog);
  pid_t healthy = proc_spawn((char *[]){fake, at, "2", "30", NULL}, wlog, NULL, NULL);
  int rc = proc_wait(co, 40);
  CHECK(rc == 0, "phase 1: rsd run exited %d (log %s)", rc, logs[0]);
  proc_wait(healthy, 5);
  co_journal_counts_t c;
  uint64_t ev[CO_EVENT_COUNT_];
  if (!s_counts(out, &c, ev)) return check_summary("retry_abandoned_test");
  const uint64_t lost = c.by_state[CO_EPISODE_ABANDONED];
  CHECK(lost >= 1 && lost <= 2 && c.by_state[CO_EPISODE_DONE] == S_EPISODES - lost && c.infra_failures == lost,
        "phase 1: %llu abandoned (want the dying worker's 1 or 2 leases), %llu done, %llu failures",
        (unsigned long long)lost, (unsigned long long)c.by_state[CO_EPISODE_DONE],
        (unsigned long long)c.infra_failures);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 30);
  static char rbuf[1 << 18];
  CHECK(rc == 0 && scratch_read(report, rbuf, sizeof rbuf) > 0, "rsd report after phase 1 exited %d (%s)", rc, rlog);
  char want[160];
  snprintf(want, sizeof want, "| abandoned episodes | %llu |", (unsigned long long)lost);
  CHECK(strstr(rbuf, want) != NULL, "report.md after phase 1 lacks '%s'", want);

  /* 2. rsd run --retry-abandoned: the abandoned episodes run again. */
  co = proc_spawn((char *[]){rsd, "run", cfg, "--retry-abandoned", NULL}, logs[1], NULL, NULL);
  CHECK(s_serving(logs[1]), "phase 2: rsd never served (log %s)", logs[1]);
  healthy = proc_spawn((char *[]){fake, at, "2", "30", NULL}, wlog, NULL, NULL);
  rc = proc_wait(co, 40);
  CHECK(rc == 0, "phase 2: rsd run --retry-abandoned exited %d (log %s)", rc, logs[1]);
  proc_wait(healthy, 5);
  static char lbuf[1 << 16];
  scratch_read(logs[1], lbuf, sizeof lbuf);
  snprintf(want, sizeof want, "--retry-abandoned: %llu abandoned episodes back in the queue, each with 1 attempts",
           (unsigned long long)lost);
  CHECK(strstr(lbuf, want) != NULL, "phase 2: rsd did not say '%s' (log %s)", want, logs[1]);
  if (!s_counts(out, &c, ev)) return check_summary("retry_abandoned_test");
  CHECK(c.by_state[CO_EPISODE_DONE] == S_EPISODES && c.by_state[CO_EPISODE_ABANDONED] == 0,
        "phase 2: %llu of %d done, %llu abandoned", (unsigned long long)c.by_state[CO_EPISODE_DONE], S_EPISODES,
        (unsigned long long)c.by_state[CO_EPISODE_ABANDONED]);
  CHECK(c.infra_failures == lost && ev[CO_EVENT_REQUEUED] == lost && ev[CO_EVENT_ABANDONED] == lost,
        "phase 2: failures %llu, requeued %llu, abandoned events %llu; want %llu each",
        (unsigned long long)c.infra_failures, (unsigned long long)ev[CO_EVENT_REQUEUED],
        (unsigned long long)ev[CO_EVENT_ABANDONED], (unsigned long long)lost);
  int twice = 0, rows = s_result_rows(out, &twice);
  CHECK(rows == S_EPISODES && twice == 0, "phase 2: %d results, %d keys twice", rows, twice);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 30);
  CHECK(rc == 0 && scratch_read(report, rbuf, sizeof rbuf) > 0, "rsd report after phase 2 exited %d (%s)", rc, rlog);
  snprintf(want, sizeof want, "| retries (infrastructure failures) | %llu |", (unsigned long long)lost);
  CHECK(strstr(rbuf, want) && strstr(rbuf, "| abandoned episodes | 0 |"),
        "report.md after phase 2 lacks '%s' or 0 abandoned episodes", want);
  snprintf(want, sizeof want, "| events: requeued | %llu |", (unsigned long long)lost);
  CHECK(strstr(rbuf, want) != NULL, "report.md after phase 2 lacks '%s'", want);

  /* 3. Nothing left to requeue: the finished campaign ends at once. */
  rc = proc_wait(proc_spawn((char *[]){rsd, "resume", out, "--retry-abandoned", NULL}, logs[2], NULL, NULL), 20);
  scratch_read(logs[2], lbuf, sizeof lbuf);
  CHECK(rc == 0 && strstr(lbuf, "--retry-abandoned: 0 abandoned episodes") && strstr(lbuf, "complete"),
        "phase 3: rsd resume --retry-abandoned exited %d (log %s)", rc, logs[2]);
  rc = proc_wait(proc_spawn((char *[]){rsd, "resume", out, "--retry", NULL}, logs[3], NULL, NULL), 20);
  CHECK(rc == 2, "an unknown option is a usage error: exit %d (log %s)", rc, logs[3]);

  scratch_done(dir);
  return check_summary("retry_abandoned_test");
}
