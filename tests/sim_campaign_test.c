/* sim_campaign_test.c: a campaign end to end with real processes: `rsd run` and two real
 * `rsd-sim-worker`s running LIBERO-Spatial episodes with the scripted expert, over real sockets, into a
 * real journal. One worker is killed (SIGKILL) while it holds a lease. Checks: the campaign completes;
 * every episode key has exactly one result; the killed worker's episode came back with an attempt
 * counted and was finished by the other worker (rsd says it went silent); outcomes are successes or policy
 * failures, never infrastructure errors; the reported step counts fit the episode limits. Then a second
 * campaign with `workers.sim_workers: 2`: `rsd run` starts its own sim workers, one of them is killed
 * (SIGKILL) and restarted by rsd, and the campaign completes with their results; its episodes are cut short
 * (max_steps 30) so they fail, and with `videos: failures, max_videos: 2` exactly two rollout videos (the
 * workers replay failed episodes with the camera on) are kept, each an animated PNG.
 *
 *   sim_campaign_test RSD RSD_SIM_WORKER */
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

/* True once worker `name` holds a lease in the journal (polled read-only, as `rsd status` does). */
static bool s_holds_lease(const char *out, const char *name) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return false;
  bool held = false;
  co_journal_iter_t *it = co_journal_episodes(j, CO_EPISODE_LEASED, &je);
  co_episode_t ep;
  while (it && co_journal_episodes_next(it, &ep, &je)) held |= strcmp(ep.worker, name) == 0;
  co_journal_iter_destroy(&it);
  co_journal_close(&j);
  return held;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  atexit(proc_kill_all);
  alarm(280);
  char *rsd = argv[1], *worker = argv[2];
  char dir[] = "/tmp/rsd-simcampaign-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], out[128], log[128], wlog_a[128], wlog_b[128], endpoint_file[160], text[1024];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(log, sizeof log, "%s/rsd.log", dir);
  snprintf(wlog_a, sizeof wlog_a, "%s/worker-a.log", dir);
  snprintf(wlog_b, sizeof wlog_b, "%s/worker-b.log", dir);
  snprintf(endpoint_file, sizeof endpoint_file, "%s/coordinator.endpoint", out);
  snprintf(text, sizeof text,
           "name: sim_campaign_test\nsuite: libero_spatial\ntasks: [0, 1]\ntrials: 2\noutput: %s\n"
           "variants:\n  - name: expert\n    policy: expert\nvideos: none\n"
           "workers:\n  sim_workers: 0\n"
           "leases:\n  heartbeat_ms: 200\n  liveness: 15\n  max_attempts: 3\n"
           "bind:\n  coordinator: ipc://%s/co.sock\n",
           out, dir);
  CHECK(scratch_write(cfg, text), "write %s", cfg);

  /* A worker without scene data refuses to start (it would fail every episode it took). */
  char nodata_log[160];
  snprintf(nodata_log, sizeof nodata_log, "%s/worker-nodata.log", dir);
  int nrc = proc_wait(proc_spawn((char *[]){worker, "--coordinator", "ipc:///nonexistent/co.sock", "--data",
                                             "/nonexistent-rsd-data", NULL},
                                  nodata_log, NULL, NULL),
                       30);
  CHECK(nrc == 1, "a worker with --data /nonexistent-rsd-data exited %d, want 1", nrc);

  pid_t co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL);
  bool have_endpoint = false;
  for (int i = 0; i < 200 && !have_endpoint; i++) {
    have_endpoint = access(endpoint_file, R_OK) == 0;
    if (!have_endpoint) usleep(50000);
  }
  CHECK(have_endpoint, "rsd wrote no endpoint file (log %s)", log);

  /* Worker A takes leases alone first; once it holds one it is killed mid-episode. Then B finishes. */
  pid_t a = proc_spawn((char *[]){worker, "--coordinator", endpoint_file, "--capacity", "2", "--name", "worker-a", NULL},
                       wlog_a, NULL, NULL);
  bool held = false;
  for (int i = 0; i < 600 && !held; i++) {
    held = s_holds_lease(out, "worker-a");
    if (!held) usleep(50000);
  }
  CHECK(held, "worker A never held a lease (log %s)", wlog_a);
  /* Killed 0.3 s after: the expert finishes an episode in 0.2-4 s once its scene is loaded, so A, running two at
   * a time, can finish all four within a few seconds of its first lease (it did on a 2-core CI machine). */
  usleep(300000);
  kill(a, SIGKILL);
  CHECK(proc_wait(a, 10) == 128 + SIGKILL, "worker A did not die");
  proc_spawn((char *[]){worker, "--coordinator", endpoint_file, "--capacity", "2", "--name", "worker-b", NULL}, wlog_b,
             NULL, NULL);

  int rc = proc_wait(co, 240);
  CHECK(rc == 0, "rsd run exited %d (log %s, worker log %s)", rc, log, wlog_b);
  static char abuf[1 << 16];
  scratch_read(log, abuf, sizeof abuf);
  CHECK(strstr(abuf, "sim worker worker-a went silent: nothing for") && strstr(abuf, "go back to the queue"),
        "rsd did not say that worker A went silent (log %s)", log);

  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total;
    CHECK(co_journal_counts(j, &total, NULL, 0, NULL, &je) == CO_JOURNAL_OK, "counts: %s", je.text);
    CHECK(total.total == 4 && total.by_state[CO_EPISODE_DONE] == 4, "%llu of %llu done",
          (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total);
    int seen[2][2] = {{0}}, results = 0, bad = 0, by_b = 0;
    co_journal_iter_t *it = co_journal_results(j, NULL, &je);
    co_journal_result_t r;
    while (it && co_journal_results_next(it, &r, &je)) {
      results++;
      if (r.r.task < 2 && r.r.trial < 2) seen[r.r.task][r.r.trial]++;
      bad += r.r.outcome == MSG_OUTCOME_INFRA_ERROR || r.r.steps < 1 || r.r.steps > 220 ||
             (r.r.outcome == MSG_OUTCOME_FAILURE && r.r.steps != 220);
      by_b += r.r.has_worker && strcmp(r.r.worker, "worker-b") == 0;
    }
    co_journal_iter_destroy(&it);
    CHECK(results == 4 && seen[0][0] == 1 && seen[0][1] == 1 && seen[1][0] == 1 && seen[1][1] == 1,
          "%d results; per key %d %d %d %d", results, seen[0][0], seen[0][1], seen[1][0], seen[1][1]);
    CHECK(bad == 0, "%d results with an impossible outcome or step count", bad);
    CHECK(by_b >= 1, "worker B stored %d results", by_b);
    int retried = 0;
    co_journal_iter_t *eit = co_journal_episodes(j, CO_EPISODE_STATE_COUNT_, &je);
    co_episode_t ep;
    while (eit && co_journal_episodes_next(eit, &ep, &je)) retried += ep.attempts > 0;
    co_journal_iter_destroy(&eit);
    uint64_t events[CO_EVENT_COUNT_] = {0}, workers = 0;
    co_journal_event_counts(j, events, &workers, &je);
    CHECK(retried >= 1 && events[CO_EVENT_DIED] >= 1, "retried %d episodes, %llu workers died", retried,
          (unsigned long long)events[CO_EVENT_DIED]);
    co_journal_close(&j);
  }
  /* rsd run starts its own sim workers; one is killed and comes back. */
  char cfg2[160], out2[160], log2[160];
  snprintf(cfg2, sizeof cfg2, "%s/local.yaml", dir);
  snprintf(out2, sizeof out2, "%s/local", dir);
  snprintf(log2, sizeof log2, "%s/rsd-local.log", dir);
  snprintf(text, sizeof text,
           "name: sim_campaign_local\nsuite: libero_spatial\ntasks: [2]\ntrials: 3\nmax_steps: 30\noutput: %s\n"
           "variants:\n  - name: expert\n    policy: expert\nvideos: failures\nmax_videos: 2\n"
           "workers:\n  sim_workers: 2\n  episodes_per_worker: 1\n"
           "leases:\n  heartbeat_ms: 200\n  liveness: 15\n  max_attempts: 3\n"
           "bind:\n  coordinator: ipc://%s/co2.sock\n",
           out2, dir);
  CHECK(scratch_write(cfg2, text), "write %s", cfg2);
  setenv("RSD_SIM_WORKER", worker, 1);
  pid_t co2 = proc_spawn((char *[]){rsd, "run", cfg2, NULL}, log2, NULL, NULL);
  /* the first local worker, once it holds a lease, is killed */
  pid_t victim = 0;
  for (int i = 0; i < 600 && !victim; i++) {
    if (s_holds_lease(out2, "local-sim-1")) {
      char cmd[300];
      snprintf(cmd, sizeof cmd, "pkill -KILL -f -- '--name local-sim-1$' && echo killed");
      victim = system(cmd) == 0 ? 1 : 0;
    }
    if (!victim) usleep(50000);
  }
  CHECK(victim, "local-sim-1 never held a lease, or could not be killed (log %s)", log2);
  rc = proc_wait(co2, 200);
  CHECK(rc == 0, "rsd run with local workers exited %d (log %s)", rc, log2);
  static char lbuf[1 << 16];
  scratch_read(log2, lbuf, sizeof lbuf);
  CHECK(strstr(lbuf, "started 2 local sim workers") && strstr(lbuf, "local sim worker local-sim-1 died") &&
            strstr(lbuf, "restarting it"),
        "rsd did not report starting and restarting its workers (log %s)", log2);
  j = co_journal_open(out2, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total;
    co_journal_counts(j, &total, NULL, 0, NULL, &je);
    CHECK(total.total == 3 && total.by_state[CO_EPISODE_DONE] == 3, "local: %llu of %llu done",
          (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total);
    int local = 0, results = 0, cut = 0;
    co_journal_iter_t *it = co_journal_results(j, NULL, &je);
    co_journal_result_t r;
    while (it && co_journal_results_next(it, &r, &je)) {
      results++;
      local += r.r.has_worker && strncmp(r.r.worker, "local-sim-", 10) == 0;
      cut += r.r.outcome == MSG_OUTCOME_FAILURE && r.r.steps == 30;
    }
    co_journal_iter_destroy(&it);
    CHECK(results == 3 && local == 3, "local: %d results, %d from local workers", results, local);
    CHECK(cut == 3, "local: %d of 3 episodes failed at max_steps 30", cut);
    co_journal_close(&j);
  }
  char wl[200];
  snprintf(wl, sizeof wl, "%s/logs/local-sim-2.log", out2);
  CHECK(access(wl, R_OK) == 0, "no worker log %s", wl);
  /* videos: failures, max_videos 2: two of the three failures, each an animated PNG of about 15 frames */
  int videos = 0;
  for (int trial = 0; trial < 3; trial++) {
    char vp[240];
    snprintf(vp, sizeof vp, "%s/videos/expert_t2_r%d.png", out2, trial);
    FILE *vf = fopen(vp, "rb");
    if (!vf) continue;
    static uint8_t head[64];
    size_t hn = fread(head, 1, sizeof head, vf);
    fclose(vf);
    /* signature, IHDR (8 + 25 bytes), then acTL with the frame count */
    uint32_t frames = hn >= 49 ? (uint32_t)head[41] << 24 | (uint32_t)head[42] << 16 | (uint32_t)head[43] << 8 | head[44] : 0;
    CHECK(hn >= 49 && memcmp(head, "\x89PNG", 4) == 0 && memcmp(head + 37, "acTL", 4) == 0 && frames >= 14 &&
              frames <= 17,
          "%s: not an animated PNG of a 30-step episode (%u frames)", vp, frames);
    videos++;
  }
  CHECK(videos == 2, "%d videos kept, want max_videos 2", videos);

  scratch_done(dir);
  return check_summary("sim_campaign_test");
}
