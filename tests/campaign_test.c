/* campaign_test.c: `rsd run` serves a campaign to sim workers over real sockets and a real journal, with
 * the sim workers played by fake_sim_worker (the protocol without simulation). One worker kills itself
 * (SIGKILL) while holding a lease; the other loses its second LEASE (never runs it, never lists it in a
 * HEARTBEAT). Checks: the campaign completes; every episode key has exactly one result; the dead worker's
 * lease came back with an attempt counted, and so did the lost one (the coordinator reads the worker's
 * HEARTBEAT lease list: without that the lost lease would stay out for good and rsd would never finish); `rsd status` reports it; running
 * the same config again resumes and changes nothing; a changed config is refused with the difference; a
 * rogue peer's flood of malformed and unexpected messages is refused and counted without harm.
 *
 *   campaign_test RSD FAKE_SIM_WORKER */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zmq.h>

#include "check.h"
#include "proc.h"
#include "scratch.h"
#include "journal.h"
#include "msg_samples.h"

static int s_read_endpoint(const char *dir, char *out, size_t cap) {
  char path[600];
  snprintf(path, sizeof path, "%s/coordinator.endpoint", dir);
  for (int i = 0; i < 200; i++) {
    FILE *f = fopen(path, "r");
    if (f) {
      bool ok = fgets(out, (int)cap, f) != NULL;
      fclose(f);
      if (ok) {
        out[strcspn(out, "\n")] = '\0';
        return 0;
      }
    }
    usleep(50000);
  }
  return -1;
}

static bool s_file_has(const char *path, const char *needle) {
  static char buf[65536];
  scratch_read(path, buf, sizeof buf);
  return strstr(buf, needle) != NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  atexit(proc_kill_all);
  alarm(170);
  char *rsd = argv[1], *fake = argv[2];
  char dir[] = "/tmp/rsd-campaign-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], cfg2[128], out[128], log[128], text[2048];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(cfg2, sizeof cfg2, "%s/changed.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(log, sizeof log, "%s/rsd.log", dir);
  static const char *body =
      "suite: libero_spatial\ntasks: [0, 1, 2]\nvariants:\n  - name: expert\n    policy: expert\n"
      "  - name: expert-b\n    policy: expert\nworkers:\n  sim_workers: 0\nleases:\n  heartbeat_ms: 100\n  liveness: 3\n  max_attempts: 3\n";
  snprintf(text, sizeof text, "name: campaign_test\ntrials: 4\noutput: %s\nbind:\n  coordinator: ipc://%s/co.sock\n%s", out,
           dir, body);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  snprintf(text, sizeof text, "name: campaign_test\ntrials: 5\noutput: %s\nbind:\n  coordinator: ipc://%s/co.sock\n%s", out,
           dir, body);
  CHECK(scratch_write(cfg2, text), "write %s", cfg2);

  /* 2 variants x 3 tasks x 4 trials = 24 episodes; worker A dies after 3 results while holding a lease. */
  pid_t co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL);
  char endpoint[256] = "";
  CHECK(s_read_endpoint(out, endpoint, sizeof endpoint) == 0, "rsd wrote no endpoint");
  pid_t a = proc_spawn((char *[]){fake, endpoint, "2", "20", "3", NULL}, NULL, NULL, NULL);
  proc_spawn((char *[]){fake, "--lose-lease", "2", endpoint, "3", "30", NULL}, NULL, NULL, NULL);

  /* A rogue peer floods the coordinator with garbage, another protocol version, and messages it must
   * not take (a LEASE sent to it, RESULTs without HELLO): all refused and counted, campaign unaffected. */
  void *ctx = zmq_ctx_new(), *rogue = zmq_socket(ctx, ZMQ_DEALER);
  int linger = 0;
  zmq_setsockopt(rogue, ZMQ_LINGER, &linger, sizeof linger);
  CHECK(zmq_connect(rogue, endpoint) == 0, "rogue connect");
  msg_buf_t buf = {0};
  msg_error_t me;
  msg_t lease;
  msg_sample(MSG_LEASE, &lease);
  msg_encode(&lease, &buf, &me);
  static const uint8_t v2[] = {0x83, 0xa1, 'v', 0x02, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'B', 'Y', 'E', 0xa2, 'i', 'd', 0x05};
  int sent = 0;
  for (int i = 0; i < 600; i++) {
    uint8_t junk[64];
    for (size_t k = 0; k < sizeof junk; k++) junk[k] = (uint8_t)(i * 31 + k * 7);
    const void *data = i % 3 == 0 ? (const void *)junk : i % 3 == 1 ? (const void *)v2 : (const void *)buf.data;
    size_t len = i % 3 == 0 ? sizeof junk : i % 3 == 1 ? sizeof v2 : buf.size;
    sent += zmq_send(rogue, data, len, ZMQ_DONTWAIT) >= 0;
  }
  CHECK(sent == 600, "rogue sent %d of 600", sent);
  msg_buf_free(&buf);
  int rc = proc_wait(co, 120);
  CHECK(rc == 0, "rsd run exited %d (log %s)", rc, log);
  CHECK(proc_wait(a, 5) == 128 + SIGKILL, "worker A did not die as planned");
  CHECK(s_file_has(log, "complete"), "rsd did not report completion");
  CHECK(s_file_has(log, "its HEARTBEAT does not list it") && s_file_has(log, "] 1 lease(s) lost"),
        "rsd did not report exactly one lost lease (log %s)", log);

  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total;
    co_journal_counts(j, &total, NULL, 0, NULL, &je);
    CHECK(total.total == 24 && total.by_state[CO_EPISODE_DONE] == 24, "%llu of %llu done",
          (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total);
    /* Exactly one result per key, with the outcome the worker computes for it. */
    int seen[2][3][4] = {{{0}}}, results = 0, wrong = 0, successes = 0;
    co_journal_iter_t *it = co_journal_results(j, NULL, &je);
    co_journal_result_t r;
    while (it && co_journal_results_next(it, &r, &je)) {
      int v = strcmp(r.r.variant, "expert") == 0 ? 0 : 1;
      if (r.r.task < 3 && r.r.trial < 4) seen[v][r.r.task][r.r.trial]++;
      wrong += (r.r.outcome == MSG_OUTCOME_SUCCESS) != ((7 * r.r.task + r.r.trial) % 3 != 0);
      successes += r.r.outcome == MSG_OUTCOME_SUCCESS;
      results++;
    }
    co_journal_iter_destroy(&it);
    int once = 0;
    for (int v = 0; v < 2; v++)
      for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++) once += seen[v][t][k] == 1;
    CHECK(results == 24 && once == 24 && wrong == 0, "%d results, %d keys exactly once, %d wrong outcomes", results, once,
          wrong);
    CHECK(total.successes == (uint64_t)successes, "counts say %llu successes, results %d",
          (unsigned long long)total.successes, successes);
    /* The dead worker's lease expired and its episode was retried. */
    int retried = 0;
    co_journal_iter_t *eit = co_journal_episodes(j, CO_EPISODE_STATE_COUNT_, &je);
    co_episode_t ep;
    int lost = 0;
    while (eit && co_journal_episodes_next(eit, &ep, &je)) {
      retried += ep.attempts > 0;
      lost += ep.attempts > 0 && strstr(ep.last_error, "the LEASE was lost") != NULL;
    }
    CHECK(lost == 1, "%d episodes retried after a lost LEASE, want 1", lost);
    co_journal_iter_destroy(&eit);
    uint64_t events[CO_EVENT_COUNT_] = {0}, workers = 0;
    co_journal_event_counts(j, events, &workers, &je);
    CHECK(events[CO_EVENT_MALFORMED] == 100, "%llu malformed events logged, want the cap of 100 (of 400 malformed)",
          (unsigned long long)events[CO_EVENT_MALFORMED]);
    CHECK(retried >= 1 && events[CO_EVENT_DIED] == 1 && events[CO_EVENT_LEASE_EXPIRED] >= 1,
          "retried %d, died %llu, expired %llu", retried, (unsigned long long)events[CO_EVENT_DIED],
          (unsigned long long)events[CO_EVENT_LEASE_EXPIRED]);
    co_journal_close(&j);
  }

  /* rsd status reads the journal. */
  char status_log[600];
  snprintf(status_log, sizeof status_log, "%s/status.txt", dir);
  pid_t st = fork();
  if (st == 0) {
    freopen(status_log, "w", stdout);
    execl(rsd, rsd, "status", out, (char *)NULL);
    _exit(127);
  }
  int sst;
  waitpid(st, &sst, 0);
  CHECK(WIFEXITED(sst) && WEXITSTATUS(sst) == 0 && s_file_has(status_log, "24/24 episodes done"), "rsd status");

  /* The same config again: resumes, finds nothing to do, exits 0. A changed one is refused. */
  rc = proc_wait(proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL), 30);
  CHECK(rc == 0 && s_file_has(log, "resuming campaign"), "rerun exited %d", rc);
  rc = proc_wait(proc_spawn((char *[]){rsd, "run", cfg2, NULL}, log, NULL, NULL), 30);
  CHECK(rc == 2 && s_file_has(log, "refusing to resume") && s_file_has(log, "trials") &&
            s_file_has(log, "another --out"), "changed config: exit %d", rc);

  zmq_close(rogue);
  zmq_ctx_term(ctx);
  scratch_done(dir);
  return check_summary("campaign_test");
}
