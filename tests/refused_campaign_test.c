/* refused_campaign_test.c: a variant the model refuses, end to end with real processes. `rsd run` starts
 * its broker, a local rsd-gpu-worker on the CPU serving the tiny test package sim_no_paths (the
 * simulator's image size, a draft without propose_paths) and a local rsd-sim-worker on LIBERO-Spatial.
 * Variant `ar` runs; variant `wide` asks for two draft paths per round (draft_width 2), which the GPU
 * worker answers with ERROR 31 (the request does not fit the model). The sim worker puts that code in
 * its infra_error RESULT (`error_code`), and the coordinator abandons the episode and the variant's
 * waiting episodes at once instead of retrying each max_attempts times (protocol 8.1 rule 7). The campaign
 * runs over CURVE (`rsd keys`, bind.keys): the local workers get --keys from rsd, so the real sim worker
 * (coordinator and broker sockets) and GPU worker (broker) take that path too. And it runs the model in
 * bfloat16 (model_dtype): rsd starts its GPU worker with --dtype bfloat16, which the broker accepts, and the
 * report names the precision.
 *
 * Checks: rsd completes (exit 0) and prints the refusal once, naming the variant and propose_paths;
 * every `ar` episode is done; every `wide` episode is abandoned, none retried (attempts <= 1), with the
 * GPU worker's message as its last error; fewer `wide` episodes ran than exist (the waiting ones were
 * abandoned without running); `rsd report` lists them as abandoned; the GPU worker served in bfloat16 and
 * report.md says so.
 *
 *   refused_campaign_test RSD RSD_SIM_WORKER RSD_GPU_WORKER MODEL_DIR */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"
#include "proc.h"
#include "scratch.h"

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  atexit(proc_kill_all);
  alarm(280);
  char *rsd = argv[1], *sim = argv[2], *gpu = argv[3], *model = argv[4];
  const int trials = 6;
  char dir[] = "/tmp/rsd-refused-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], out[128], log[128], keys[128], text[2048];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(log, sizeof log, "%s/rsd.log", dir);
  snprintf(keys, sizeof keys, "%s/keys", dir);
  CHECK(proc_wait(proc_spawn((char *[]){rsd, "keys", keys, NULL}, log, NULL, NULL), 30) == 0, "rsd keys (log %s)", log);
  snprintf(text, sizeof text,
           "name: refused_campaign_test\nsuite: libero_spatial\ntasks: [0]\ntrials: %d\nmax_steps: 16\n"
           "replan_every: 8\noutput: %s\nmodel: %s\nunnorm_key: libero_spatial\nmodel_dtype: bfloat16\n"
           "variants:\n  - name: ar\n    mode: ar\n  - name: wide\n    mode: spec\n    draft_len: 3\n"
           "    draft_width: 2\n"
           "videos: none\n"
           "workers:\n  sim_workers: 1\n  episodes_per_worker: 2\n  gpu_workers: 1\n  device: cpu\n"
           "leases:\n  heartbeat_ms: 250\n  liveness: 8\n  max_attempts: 3\n"
           "bind:\n  coordinator: ipc://%s/co.sock\n  broker: ipc://%s/bs.sock\n  broker_gpu: ipc://%s/bg.sock\n"
           "  keys: %s\n",
           trials, out, model, dir, dir, dir, keys);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  setenv("RSD_SIM_WORKER", sim, 1);
  setenv("RSD_GPU_WORKER", gpu, 1);
  int rc = proc_wait(proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL), 240);
  CHECK(rc == 0, "rsd run exited %d (log %s)", rc, log);
  static char lbuf[1 << 16];
  scratch_read(log, lbuf, sizeof lbuf);
  const char *line = strstr(lbuf, "variant wide: the model refuses its requests");
  CHECK(line && strstr(line, "propose_paths") && !strstr(line + 1, "variant wide: the model refuses"),
        "rsd did not print the refusal of variant wide exactly once (log %s)", log);
  CHECK(strstr(lbuf, "CURVE on (bind.keys"), "rsd did not serve over CURVE (log %s)", log);
  CHECK(strstr(lbuf, "--dtype bfloat16"), "rsd did not start its GPU worker with --dtype bfloat16 (log %s)", log);
  char glog[200];
  static char gbuf[1 << 16];
  snprintf(glog, sizeof glog, "%s/logs/local-gpu-1.log", out);
  CHECK(scratch_read(glog, gbuf, sizeof gbuf) > 0 && strstr(gbuf, "in bfloat16,"),
        "the GPU worker did not serve in bfloat16 (log %s)", glog);

  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total, per[2];
    size_t nv = 0;
    CHECK(co_journal_counts(j, &total, per, 2, &nv, &je) == CO_JOURNAL_OK && nv == 2, "counts: %s", je.text);
    int ar = strcmp(per[0].variant, "ar") == 0 ? 0 : 1, wide = 1 - ar;
    CHECK(per[ar].by_state[CO_EPISODE_DONE] == (uint64_t)trials, "ar: %llu of %d done",
          (unsigned long long)per[ar].by_state[CO_EPISODE_DONE], trials);
    CHECK(per[wide].by_state[CO_EPISODE_ABANDONED] == (uint64_t)trials, "wide: %llu of %d abandoned",
          (unsigned long long)per[wide].by_state[CO_EPISODE_ABANDONED], trials);
    int ran = 0, retried = 0, named = 0;
    co_journal_iter_t *it = co_journal_episodes(j, CO_EPISODE_ABANDONED, &je);
    co_episode_t ep;
    while (it && co_journal_episodes_next(it, &ep, &je)) {
      ran += ep.attempts == 1;
      retried += ep.attempts > 1;
      named += strstr(ep.last_error, "ERROR 31") && strstr(ep.last_error, "propose_paths");
    }
    co_journal_iter_destroy(&it);
    CHECK(retried == 0 && ran >= 1 && ran < trials && named == trials,
          "wide: %d episodes ran once, %d retried, %d name ERROR 31 and propose_paths (of %d)", ran, retried, named,
          trials);
    co_journal_close(&j);
  }

  char rlog[160], report[200];
  snprintf(rlog, sizeof rlog, "%s/report.log", dir);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 60);
  CHECK(rc == 0, "rsd report exited %d (log %s)", rc, rlog);
  snprintf(report, sizeof report, "%s/report.md", out);
  static char rbuf[1 << 18];
  CHECK(scratch_read(report, rbuf, sizeof rbuf) > 0 && strstr(rbuf, "does not fit the model"),
        "report.md does not list wide's abandoned episodes with their reason");
  CHECK(strstr(rbuf, "; model_dtype: bfloat16)"), "report.md does not name the model's precision, bfloat16");

  scratch_done(dir);
  return check_summary("refused_campaign_test");
}
