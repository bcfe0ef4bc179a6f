/* campaign_resume_test.c: what resuming a campaign can change, end to end, with `rsd run` and
 * protocol-playing sim workers (fake_sim_worker).
 *
 *   1. `rsd run` with leases.max_attempts 1. A worker that dies (SIGKILL) holding leases after 2 RESULTs:
 *      its leases expire and, at one attempt, those episodes are abandoned (an outage in a real sweep). A
 *      second worker finishes the rest, and rsd exits 0 with a complete campaign that has abandoned
 *      episodes; it says how to run them again, `rsd status` groups them by their last error (the dead
 *      worker went silent), and `rsd report` lists them.
 *   2. `rsd run CONFIG --retry-abandoned` with a healthy worker: the abandoned episodes wait again and run;
 *      the campaign ends with every episode done, each key once, and the earlier failures still counted
 *      (journal attempts, the report's retries), with one requeued event per abandoned episode.
 *   3. `rsd resume DIR --retry-abandoned` on the finished campaign: nothing to requeue, exit 0 at once.
 *   4. `rsd run` with the config plus a variant appended (and videos changed): the variant is added (the
 *      stored config gains it, and keeps its own videos) and its episodes run; the first variant's results
 *      stay as they were. Then the first config, without the new variant, is refused (exit 2), and `rsd
 *      resume DIR` serves the stored config with both variants (complete: exit 0 at once).
 *
 *   campaign_resume_test RSD FAKE_SIM_WORKER */
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

/* Result rows of `variant` in the journal, and how many keys came twice. */
static int s_result_rows(const char *dir, const char *variant, int *twice) {
  bool seen[2][6] = {{false}};
  *twice = 0;
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return -1;
  int rows = 0;
  co_journal_iter_t *it = co_journal_results(j, variant, &je);
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
  char dir[] = "/tmp/rsd-resume-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], cfg2[128], out[128], at[160], wlog[128], logs[7][128], text[1024], report[160], rlog[160];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(cfg2, sizeof cfg2, "%s/campaign2.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(at, sizeof at, "@%s/coordinator.endpoint", out);
  snprintf(wlog, sizeof wlog, "%s/workers.log", dir);
  snprintf(report, sizeof report, "%s/report.md", out);
  snprintf(rlog, sizeof rlog, "%s/report.log", dir);
  for (int i = 0; i < 7; i++) snprintf(logs[i], sizeof logs[i], "%s/rsd%d.log", dir, i);
  static const char *head =
      "name: campaign_resume_test\nsuite: libero_spatial\ntasks: [0, 1]\ntrials: 6\n"
      "workers:\n  sim_workers: 0\n"
      "leases:\n  heartbeat_ms: 200\n  liveness: 15\n  max_attempts: 1\n"
      "bind:\n  coordinator: tcp://127.0.0.1:*\n"
      "variants:\n  - name: expert\n    policy: expert\n";
  snprintf(text, sizeof text, "%soutput: %s\n", head, out);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  /* cfg2: a variant appended, and videos changed (an operational key: allowed, but not stored). */
  snprintf(text, sizeof text, "%s  - name: expert-b\n    policy: expert\noutput: %s\nvideos: none\n", head, out);
  CHECK(scratch_write(cfg2, text), "write %s", cfg2);

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
  if (!s_counts(out, &c, ev)) return check_summary("campaign_resume_test");
  const uint64_t lost = c.by_state[CO_EPISODE_ABANDONED];
  CHECK(lost >= 1 && lost <= 2 && c.by_state[CO_EPISODE_DONE] == S_EPISODES - lost && c.infra_failures == lost,
        "phase 1: %llu abandoned (want the dying worker's 1 or 2 leases), %llu done, %llu failures",
        (unsigned long long)lost, (unsigned long long)c.by_state[CO_EPISODE_DONE],
        (unsigned long long)c.infra_failures);
  static char lbuf[1 << 16];
  scratch_read(logs[0], lbuf, sizeof lbuf);
  char want[512];
  snprintf(want, sizeof want, "[rsd] %llu episodes were abandoned ('rsd status %s' says why); once the cause is fixed, "
           "'rsd resume %s --retry-abandoned' runs them again", (unsigned long long)lost, out, out);
  CHECK(strstr(lbuf, want) != NULL, "phase 1: rsd run's last lines lack '%s' (log %s)", want, logs[0]);
  /* rsd status groups the abandoned episodes by their last error (a lease that expired). */
  char status_out[160];
  snprintf(status_out, sizeof status_out, "%s/status1.txt", dir);
  rc = proc_wait(proc_spawn((char *[]){rsd, "status", out, NULL}, NULL, status_out, NULL), 20);
  scratch_read(status_out, lbuf, sizeof lbuf);
  snprintf(want, sizeof want, "abandoned episodes by last error (most frequent first):\n%8llu  ", (unsigned long long)lost);
  const char *why = strstr(lbuf, want);
  CHECK(rc == 0 && why && strstr(why, "went silent") && strstr(lbuf, "--retry-abandoned' runs them again"),
        "phase 1: rsd status does not group the %llu abandoned episodes by their last error, the dead worker going silent (%s)",
        (unsigned long long)lost, status_out);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 30);
  static char rbuf[1 << 18];
  CHECK(rc == 0 && scratch_read(report, rbuf, sizeof rbuf) > 0, "rsd report after phase 1 exited %d (%s)", rc, rlog);
  snprintf(want, sizeof want, "| abandoned episodes | %llu |", (unsigned long long)lost);
  CHECK(strstr(rbuf, want) != NULL, "report.md after phase 1 lacks '%s'", want);

  /* 2. rsd run --retry-abandoned: the abandoned episodes run again. */
  co = proc_spawn((char *[]){rsd, "run", cfg, "--retry-abandoned", NULL}, logs[1], NULL, NULL);
  CHECK(s_serving(logs[1]), "phase 2: rsd never served (log %s)", logs[1]);
  healthy = proc_spawn((char *[]){fake, at, "2", "30", NULL}, wlog, NULL, NULL);
  rc = proc_wait(co, 40);
  CHECK(rc == 0, "phase 2: rsd run --retry-abandoned exited %d (log %s)", rc, logs[1]);
  proc_wait(healthy, 5);
  scratch_read(logs[1], lbuf, sizeof lbuf);
  snprintf(want, sizeof want, "--retry-abandoned: %llu abandoned episodes back in the queue, each with 1 attempts",
           (unsigned long long)lost);
  CHECK(strstr(lbuf, want) != NULL, "phase 2: rsd did not say '%s' (log %s)", want, logs[1]);
  if (!s_counts(out, &c, ev)) return check_summary("campaign_resume_test");
  CHECK(c.by_state[CO_EPISODE_DONE] == S_EPISODES && c.by_state[CO_EPISODE_ABANDONED] == 0,
        "phase 2: %llu of %d done, %llu abandoned", (unsigned long long)c.by_state[CO_EPISODE_DONE], S_EPISODES,
        (unsigned long long)c.by_state[CO_EPISODE_ABANDONED]);
  CHECK(c.infra_failures == lost && ev[CO_EVENT_REQUEUED] == lost && ev[CO_EVENT_ABANDONED] == lost,
        "phase 2: failures %llu, requeued %llu, abandoned events %llu; want %llu each",
        (unsigned long long)c.infra_failures, (unsigned long long)ev[CO_EVENT_REQUEUED],
        (unsigned long long)ev[CO_EVENT_ABANDONED], (unsigned long long)lost);
  int twice = 0, rows = s_result_rows(out, "expert", &twice);
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

  /* 4. A variant appended to the config is added to the campaign. */
  co = proc_spawn((char *[]){rsd, "run", cfg2, NULL}, logs[4], NULL, NULL);
  CHECK(s_serving(logs[4]), "phase 4: rsd never served (log %s)", logs[4]);
  healthy = proc_spawn((char *[]){fake, at, "2", "30", NULL}, wlog, NULL, NULL);
  rc = proc_wait(co, 40);
  proc_wait(healthy, 5);
  scratch_read(logs[4], lbuf, sizeof lbuf);
  CHECK(rc == 0 && strstr(lbuf, "variants added (expert-b), 12 episodes each"),
        "phase 4: rsd run with an added variant exited %d, or did not name it (log %s)", rc, logs[4]);
  if (!s_counts(out, &c, ev)) return check_summary("campaign_resume_test");
  CHECK(c.total == 2 * S_EPISODES && c.by_state[CO_EPISODE_DONE] == 2 * S_EPISODES,
        "phase 4: %llu of %llu done, want 24", (unsigned long long)c.by_state[CO_EPISODE_DONE],
        (unsigned long long)c.total);
  int rows_b = s_result_rows(out, "expert-b", &twice);
  CHECK(rows_b == S_EPISODES && twice == 0, "phase 4: expert-b has %d results, %d keys twice", rows_b, twice);
  rows = s_result_rows(out, "expert", &twice);
  CHECK(rows == S_EPISODES && twice == 0, "phase 4: expert has %d results, %d keys twice", rows, twice);
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  co_journal_info_t info;
  CHECK(j && co_journal_info(j, &info, &je) == CO_JOURNAL_OK && strstr(info.config_json, "\"expert-b\"") &&
            strstr(info.config_json, "\"videos\": \"failures\""),
        "phase 4: the stored config lacks expert-b, or took today's videos: %s", je.text);
  co_journal_close(&j);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 30);
  CHECK(rc == 0 && scratch_read(report, rbuf, sizeof rbuf) > 0 && strstr(rbuf, "| expert-b |"),
        "phase 4: report.md has no row for expert-b (exit %d, %s)", rc, rlog);
  /* Removing it again is refused; the stored config, with both, resumes (complete: at once). */
  rc = proc_wait(proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[5], NULL, NULL), 20);
  scratch_read(logs[5], lbuf, sizeof lbuf);
  CHECK(rc == 2 && strstr(lbuf, "refusing to resume") && strstr(lbuf, "variants[1].name: \"expert-b\" -> (absent)"),
        "the config without expert-b: exit %d, want a refusal naming it (log %s)", rc, logs[5]);
  rc = proc_wait(proc_spawn((char *[]){rsd, "resume", out, NULL}, logs[6], NULL, NULL), 20);
  scratch_read(logs[6], lbuf, sizeof lbuf);
  CHECK(rc == 0 && strstr(lbuf, "24 episodes"), "rsd resume with the stored config: exit %d (log %s)", rc, logs[6]);

  scratch_done(dir);
  return check_summary("campaign_resume_test");
}
