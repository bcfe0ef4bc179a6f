/* coordinator_faults_test.c: the coordinator dies (kill -9) at several points of a campaign and the
 * campaign still finishes with every episode counted exactly once. Sim workers are fake_sim_worker
 * --persist @DIR/coordinator.endpoint: they notice the silence, abandon running episodes, keep RESULTs
 * that were not ACKed, and rejoin the restarted coordinator (which binds the same port again).
 *
 * One campaign (2 variants x 3 tasks x 10 trials = 60 episodes, tcp://127.0.0.1:*) in one directory:
 *   1. `rsd run`, SIGKILL while leases are out;
 *   2. `rsd run` with RSD_FAULT_KILL_AFTER_RESULTS=4: it kills itself after committing its 4th result,
 *      before that result's ACK (the worker resends it: a duplicate);
 *   3. `rsd resume DIR`, SIGKILL right after the journal's done count rose;
 *   4. `rsd run`, SIGINT after a few results: exit 130, leases released;
 *   5. `rsd run`: completes; then `rsd resume DIR` on the finished campaign exits 0 at once.
 * Checks: each kill left leases in the journal and the next start recovered exactly those (recovered
 * events); the restarted coordinator bound the same endpoint; the campaign completes with 60 results,
 * each key once, the same keys and outcomes as an uninterrupted run of the same config in another
 * directory; no attempt was counted against an episode; the stored-but-unACKed result came back as a
 * duplicate; the progress line and `rsd status` show done/total, per-variant successes, rate, ETA and
 * workers, and whether a coordinator runs.
 *
 *   coordinator_faults_test RSD FAKE_SIM_WORKER */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "proc.h"
#include "scratch.h"
#include "journal.h"

#define S_WORKERS 3
#define S_EPISODES 60

static const char *s_slurp(const char *path) {
  static char buf[1 << 20];
  scratch_read(path, buf, sizeof buf);
  return buf;
}

static bool s_file_has(const char *path, const char *needle) { return strstr(s_slurp(path), needle) != NULL; }

/* Journal counts, read-only (the coordinator may be writing). false when there is no journal yet. */
static bool s_counts(const char *dir, co_journal_counts_t *c, uint64_t events[CO_EVENT_COUNT_]) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return false;
  uint64_t workers;
  bool ok = co_journal_counts(j, c, NULL, 0, NULL, &je) == CO_JOURNAL_OK &&
            (!events || co_journal_event_counts(j, events, &workers, &je) == CO_JOURNAL_OK);
  co_journal_close(&j);
  return ok;
}

/* Polls the journal every 5 ms until done >= min_done and leased >= min_leased; true if it happened. */
static bool s_wait_counts(const char *dir, uint64_t min_done, uint64_t min_leased, int timeout_s) {
  co_journal_counts_t c;
  for (int i = 0; i < timeout_s * 200; i++) {
    if (s_counts(dir, &c, NULL) && c.by_state[CO_EPISODE_DONE] >= min_done && c.by_state[CO_EPISODE_LEASED] >= min_leased)
      return true;
    usleep(5000);
  }
  return false;
}

/* The endpoint a coordinator's log says it serves ("... connect to ENDPOINT"), the last one. */
static void s_logged_endpoint(const char *log, char *out, size_t cap) {
  const char *text = s_slurp(log), *p = NULL, *q;
  for (q = text; (q = strstr(q, "connect to ")) != NULL; q++) p = q + strlen("connect to ");
  out[0] = '\0';
  if (p) snprintf(out, cap, "%.*s", (int)strcspn(p, "\n"), p);
}

/* outcome[variant][task][trial]: 1 success, 2 failure, 0 none; returns the number of result rows and
 * counts keys seen more than once in *twice. */
static int s_results(const char *dir, int outcome[2][3][10], int *twice) {
  memset(outcome, 0, sizeof(int) * 2 * 3 * 10);
  *twice = 0;
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return -1;
  int rows = 0;
  co_journal_iter_t *it = co_journal_results(j, NULL, &je);
  static co_journal_result_t r;
  while (it && co_journal_results_next(it, &r, &je)) {
    int v = strcmp(r.r.variant, "expert") == 0 ? 0 : 1;
    rows++;
    if (r.r.task >= 3 || r.r.trial >= 10) continue;
    int *o = &outcome[v][r.r.task][r.r.trial];
    if (*o) (*twice)++;
    *o = r.r.outcome == MSG_OUTCOME_SUCCESS ? 1 : 2;
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
  char dir[] = "/tmp/rsd-faults-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], out[128], base_out[128], base_cfg[128], wlog[128], text[2048], logs[8][128], at[160];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(base_cfg, sizeof base_cfg, "%s/baseline.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(base_out, sizeof base_out, "%s/baseline", dir);
  snprintf(wlog, sizeof wlog, "%s/workers.log", dir);
  snprintf(at, sizeof at, "@%s/coordinator.endpoint", out);
  for (int i = 0; i < 8; i++) snprintf(logs[i], sizeof logs[i], "%s/rsd%d.log", dir, i);
  static const char *body =
      "name: faults_test\nsuite: libero_spatial\ntasks: [0, 1, 2]\ntrials: 10\nvariants:\n"
      "  - name: expert\n    policy: expert\n  - name: expert-b\n    policy: expert\n"
      "workers:\n  sim_workers: 0\n"
      "leases:\n  heartbeat_ms: 150\n  liveness: 5\n  max_attempts: 3\n"
      "bind:\n  coordinator: tcp://127.0.0.1:*\n";
  snprintf(text, sizeof text, "%soutput: %s\n", body, out);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  snprintf(text, sizeof text, "%soutput: %s\n", body, base_out);
  CHECK(scratch_write(base_cfg, text), "write %s", base_cfg);

  /* The uninterrupted run: its result keys and outcomes are the reference. */
  pid_t co = proc_spawn((char *[]){rsd, "run", base_cfg, NULL}, logs[0], NULL, NULL);
  char base_at[160];
  snprintf(base_at, sizeof base_at, "@%s/coordinator.endpoint", base_out);
  pid_t bw[S_WORKERS];
  for (int i = 0; i < S_WORKERS; i++) bw[i] = proc_spawn((char *[]){fake, base_at, "2", "20", NULL}, wlog, NULL, NULL);
  int rc = proc_wait(co, 40);
  CHECK(rc == 0, "uninterrupted run exited %d (log %s)", rc, logs[0]);
  for (int i = 0; i < S_WORKERS; i++) { /* they leave on the BYE; one that joined too late would not */
    kill(bw[i], SIGKILL);
    proc_wait(bw[i], 10);
  }
  int base[2][3][10], twice = 0;
  int rows = s_results(base_out, base, &twice);
  CHECK(rows == S_EPISODES && twice == 0, "uninterrupted run: %d results, %d keys twice", rows, twice);
  /* Its progress line (stderr is a file here: plain lines) has every figure. */
  int succ[2] = {0, 0};
  for (int t = 0; t < 3; t++)
    for (int k = 0; k < 10; k++) succ[0] += (7 * t + k) % 3 != 0;
  succ[1] = succ[0];
  char want[128];
  snprintf(want, sizeof want, "[rsd] %d/%d done | success expert %d/30", S_EPISODES, S_EPISODES, succ[0]);
  CHECK(s_file_has(logs[0], want), "progress line '%s' missing from %s", want, logs[0]);
  snprintf(want, sizeof want, ", expert-b %d/30 (%.0f%%) |", succ[1], 100.0 * succ[1] / 30);
  CHECK(s_file_has(logs[0], want) && s_file_has(logs[0], "episodes/min | ETA 0:00 |") && s_file_has(logs[0], " workers\n"),
        "progress line without per-variant success, rate, ETA or workers (%s)", logs[0]);

  /* 1. kill -9 while leases are out. The workers persist across every restart below. */
  co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[1], NULL, NULL);
  for (int i = 0; i < S_WORKERS; i++) proc_spawn((char *[]){fake, "--persist", at, "2", "60", NULL}, wlog, NULL, NULL);
  CHECK(s_wait_counts(out, 4, 2, 20), "phase 1: never saw 4 done and 2 leased");
  /* rsd status while it runs: the figures and the coordinator's pid. */
  char status_out[160];
  snprintf(status_out, sizeof status_out, "%s/status1.txt", dir);
  rc = proc_wait(proc_spawn((char *[]){rsd, "status", out, NULL}, NULL, status_out, NULL), 10);
  snprintf(want, sizeof want, "coordinator running (pid %d)", (int)co);
  CHECK(rc == 0 && s_file_has(status_out, want) && s_file_has(status_out, "episodes/min"),
        "rsd status during the run: exit %d, no '%s' (%s)", rc, want, status_out);
  kill(co, SIGKILL);
  CHECK(proc_wait(co, 10) == 128 + SIGKILL, "phase 1: coordinator not killed");
  char endpoint1[256], endpoint2[256];
  s_logged_endpoint(logs[1], endpoint1, sizeof endpoint1);
  co_journal_counts_t c;
  uint64_t ev[CO_EVENT_COUNT_];
  CHECK(s_counts(out, &c, ev), "journal after phase 1");
  uint64_t stale[4] = {c.by_state[CO_EPISODE_LEASED], 0, 0, 0};
  CHECK(stale[0] >= 1, "phase 1: no lease was out when the coordinator died");
  rc = proc_wait(proc_spawn((char *[]){rsd, "status", out, NULL}, NULL, status_out, NULL), 10);
  CHECK(rc == 0 && s_file_has(status_out, "coordinator not running"), "rsd status after the kill: exit %d (%s)", rc,
        status_out);

  /* The workers notice the silence (liveness x heartbeat_ms) before the next coordinator starts; later
   * restarts are quicker, and the workers learn of them from ERROR 21 (the new coordinator does not know
   * them) instead. */
  bool silent = false;
  for (int i = 0; i < 500 && !(silent = s_file_has(wlog, "coordinator silent")); i++) usleep(10000);
  CHECK(silent, "no worker noticed the dead coordinator's silence (%s)", wlog);

  /* 2. The coordinator kills itself after committing its 4th result, before the ACK. */
  uint64_t done_before = c.by_state[CO_EPISODE_DONE];
  co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[2], NULL, "RSD_FAULT_KILL_AFTER_RESULTS=4");
  rc = proc_wait(co, 30);
  CHECK(rc == 128 + SIGKILL && s_file_has(logs[2], "RSD_FAULT_KILL_AFTER_RESULTS=4"),
        "phase 2: exit %d, want death by SIGKILL from the fault hook (%s)", rc, logs[2]);
  s_logged_endpoint(logs[2], endpoint2, sizeof endpoint2);
  /* It binds the previous port again; only if a process in between took that port (czmq hands out the
   * lowest free port from 49152, so a test running beside this one can) does it move, and says so. */
  CHECK(endpoint1[0] && (strcmp(endpoint1, endpoint2) == 0 || s_file_has(logs[2], "is taken; workers must read the new one")),
        "the restarted coordinator moved from '%s' to '%s' without trying the old one", endpoint1, endpoint2);
  CHECK(s_counts(out, &c, ev), "journal after phase 2");
  CHECK(ev[CO_EVENT_RECOVERED] == stale[0], "phase 2 recovered %llu leases, phase 1 left %llu",
        (unsigned long long)ev[CO_EVENT_RECOVERED], (unsigned long long)stale[0]);
  CHECK(c.by_state[CO_EPISODE_DONE] >= done_before + 4, "phase 2: done %llu -> %llu, want +4",
        (unsigned long long)done_before, (unsigned long long)c.by_state[CO_EPISODE_DONE]);
  stale[1] = c.by_state[CO_EPISODE_LEASED];

  /* 3. `rsd resume DIR`, killed the moment the done count rises. */
  done_before = c.by_state[CO_EPISODE_DONE];
  co = proc_spawn((char *[]){rsd, "resume", out, NULL}, logs[3], NULL, NULL);
  CHECK(s_wait_counts(out, done_before + 1, 0, 20), "phase 3: no result stored");
  kill(co, SIGKILL);
  CHECK(proc_wait(co, 10) == 128 + SIGKILL, "phase 3: coordinator not killed");
  CHECK(s_file_has(logs[3], "resuming campaign faults_test"), "phase 3: rsd resume did not resume (%s)", logs[3]);
  CHECK(s_counts(out, &c, ev), "journal after phase 3");
  CHECK(ev[CO_EVENT_RECOVERED] == stale[0] + stale[1], "after phase 3: %llu recovered, want %llu",
        (unsigned long long)ev[CO_EVENT_RECOVERED], (unsigned long long)(stale[0] + stale[1]));
  stale[2] = c.by_state[CO_EPISODE_LEASED];

  /* 4. Ctrl-C: exit 130, every lease released. */
  done_before = c.by_state[CO_EPISODE_DONE];
  co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[4], NULL, NULL);
  CHECK(s_wait_counts(out, done_before + 3, 1, 20), "phase 4: no 3 results");
  kill(co, SIGINT);
  rc = proc_wait(co, 10);
  CHECK(rc == 130 && s_file_has(logs[4], "leases released"), "phase 4: SIGINT gave exit %d (%s)", rc, logs[4]);
  CHECK(s_counts(out, &c, ev), "journal after phase 4");
  CHECK(c.by_state[CO_EPISODE_LEASED] == 0 && ev[CO_EVENT_RELEASED] >= 1, "after SIGINT: %llu leased, %llu released",
        (unsigned long long)c.by_state[CO_EPISODE_LEASED], (unsigned long long)ev[CO_EVENT_RELEASED]);
  CHECK(ev[CO_EVENT_RECOVERED] == stale[0] + stale[1] + stale[2], "after phase 4: %llu recovered, want %llu",
        (unsigned long long)ev[CO_EVENT_RECOVERED], (unsigned long long)(stale[0] + stale[1] + stale[2]));

  /* 5. `rsd run` continues to the end; `rsd resume` of the finished campaign has nothing to do. */
  co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, logs[5], NULL, NULL);
  rc = proc_wait(co, 40);
  CHECK(rc == 0 && s_file_has(logs[5], "complete"), "phase 5: exit %d (%s)", rc, logs[5]);
  rc = proc_wait(proc_spawn((char *[]){rsd, "resume", out, NULL}, logs[6], NULL, NULL), 20);
  CHECK(rc == 0 && s_file_has(logs[6], "complete"), "resume of a finished campaign: exit %d (%s)", rc, logs[6]);

  /* The campaign: every key once, the same keys and outcomes as the uninterrupted run. */
  int got[2][3][10];
  rows = s_results(out, got, &twice);
  int same = 0;
  for (int v = 0; v < 2; v++)
    for (int t = 0; t < 3; t++)
      for (int k = 0; k < 10; k++) same += got[v][t][k] != 0 && got[v][t][k] == base[v][t][k];
  CHECK(rows == S_EPISODES && twice == 0 && same == S_EPISODES, "%d results, %d keys twice, %d of %d as uninterrupted", rows,
        twice, same, S_EPISODES);
  CHECK(s_counts(out, &c, ev), "final journal");
  CHECK(c.by_state[CO_EPISODE_DONE] == S_EPISODES && c.total == S_EPISODES, "%llu of %llu done",
        (unsigned long long)c.by_state[CO_EPISODE_DONE], (unsigned long long)c.total);
  CHECK(c.infra_failures == 0, "%llu attempts counted; a coordinator crash must cost no episode an attempt",
        (unsigned long long)c.infra_failures);
  CHECK(ev[CO_EVENT_DUPLICATE_RESULT] >= 1 && s_file_has(wlog, "ACK duplicate"),
        "the result stored before the fault hook's kill was never resent as a duplicate (%llu duplicate events)",
        (unsigned long long)ev[CO_EVENT_DUPLICATE_RESULT]);
  CHECK(s_file_has(wlog, "does not know this worker (a restart): rejoining"), "no worker rejoined on ERROR 21 (%s)", wlog);
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  co_journal_info_t info;
  CHECK(j && co_journal_info(j, &info, &je) == CO_JOURNAL_OK && info.last_lease_id > S_EPISODES,
        "lease ids: %llu handed out, want more than %d (recovered episodes were leased again)",
        j ? (unsigned long long)info.last_lease_id : 0ull, S_EPISODES);
  co_journal_close(&j);
  snprintf(status_out, sizeof status_out, "%s/status2.txt", dir);
  rc = proc_wait(proc_spawn((char *[]){rsd, "status", out, NULL}, NULL, status_out, NULL), 10);
  snprintf(want, sizeof want, "[rsd] %d/%d done | success expert %d/30", S_EPISODES, S_EPISODES, succ[0]);
  CHECK(rc == 0 && s_file_has(status_out, "60/60 episodes done") && s_file_has(status_out, want) &&
            s_file_has(status_out, "coordinator not running"),
        "rsd status at the end: exit %d (%s)", rc, status_out);

  proc_kill_all();
  scratch_done(dir);
  return check_summary("coordinator_faults_test");
}
