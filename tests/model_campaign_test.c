/* model_campaign_test.c: the inference path end to end with real processes: `rsd run` on a campaign with
 * `policy: model` variants (`ar` and `spec`) starts its broker, a local `rsd-gpu-worker` on the CPU with a
 * real policy package and a local `rsd-sim-worker`; every action of every episode comes from the model
 * through INFER/ACTION over real sockets. The GPU worker is killed (SIGKILL) once the first results are
 * in; rsd restarts it and the campaign completes.
 *
 * Checks: every episode key has exactly one result, none an infrastructure error; each result's
 * decoding figures agree with how it was decoded: chunks = ceil(steps / replan_every) (an episode asks
 * for one chunk per replan_every steps), `ar` needs L main forwards and no draft per chunk, `spec` at
 * least 2 and at most L main forwards per chunk with one draft forward per verification, its proposals
 * and acceptances per layer add up to the L - 1 layers each chunk decodes after the prefill, the per-chunk latency rows are stored, every chunk is in the
 * batch-size histogram, and the actions digest is set; `rsd report` writes the report with the latency
 * and forwards figures of both variants.
 *
 *   model_campaign_test RSD RSD_SIM_WORKER RSD_GPU_WORKER MODEL_DIR */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"
#include "proc.h"
#include "scratch.h"

/* The package's RFSQ layer count L, read from its manifest ("layers": N under "rfsq"). */
static int s_layers(const char *model) {
  char path[600];
  static char text[1 << 16];
  snprintf(path, sizeof path, "%s/manifest.json", model);
  if (!scratch_read(path, text, sizeof text)) return -1;
  const char *r = strstr(text, "\"rfsq\"");
  const char *l = r ? strstr(r, "\"layers\"") : NULL;
  return l ? atoi(strchr(l, ':') + 1) : -1;
}

/* Results stored so far (read-only, as `rsd status` reads the journal). */
static int s_results(const char *out) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return 0;
  co_journal_counts_t c;
  int n = co_journal_counts(j, &c, NULL, 0, NULL, &je) == CO_JOURNAL_OK ? (int)c.by_state[CO_EPISODE_DONE] : 0;
  co_journal_close(&j);
  return n;
}

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  atexit(proc_kill_all);
  alarm(580);
  char *rsd = argv[1], *sim = argv[2], *gpu = argv[3], *model = argv[4];
  const int trials = 2, max_steps = 28, replan = 8;
  int L = s_layers(model);
  CHECK(L >= 2 && L <= 16, "%s/manifest.json: rfsq.layers %d", model, L);
  char dir[] = "/tmp/rsd-modelcampaign-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char cfg[128], out[128], log[128], text[2048];
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(log, sizeof log, "%s/rsd.log", dir);
  snprintf(text, sizeof text,
           "name: model_campaign_test\nsuite: libero_spatial\ntasks: [0]\ntrials: %d\nmax_steps: %d\n"
           "replan_every: %d\noutput: %s\nmodel: %s\nunnorm_key: libero_spatial\n"
           "variants:\n  - name: ar\n    mode: ar\n  - name: spec\n    mode: spec\n    draft_len: 4\n"
           "videos: none\n"
           "workers:\n  sim_workers: 1\n  episodes_per_worker: 2\n  gpu_workers: 1\n  device: cpu\n"
           "leases:\n  heartbeat_ms: 250\n  liveness: 8\n  max_attempts: 5\n"
           "bind:\n  coordinator: ipc://%s/co.sock\n  broker: ipc://%s/bs.sock\n  broker_gpu: ipc://%s/bg.sock\n",
           trials, max_steps, replan, out, model, dir, dir, dir);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  setenv("RSD_SIM_WORKER", sim, 1);
  setenv("RSD_GPU_WORKER", gpu, 1);
  pid_t co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL);

  /* once a result is in, the GPU worker dies; rsd starts another */
  bool killed = false;
  for (int i = 0; i < 4000 && !killed; i++) {
    if (s_results(out) >= 1) {
      char cmd[300];
      /* "[i]pc" matches the GPU worker's "ipc" but not this shell's own command line */
      snprintf(cmd, sizeof cmd, "pkill -KILL -f -- '--broker [i]pc://%s/bg.sock'", dir);
      killed = system(cmd) == 0;
      break;
    }
    usleep(100000);
  }
  CHECK(killed, "no result within 400 s, or no GPU worker to kill (log %s)", log);
  int rc = proc_wait(co, 420);
  CHECK(rc == 0, "rsd run exited %d (log %s)", rc, log);
  static char lbuf[1 << 16];
  scratch_read(log, lbuf, sizeof lbuf);
  CHECK(strstr(lbuf, "local gpu worker") && strstr(lbuf, "restarting it"),
        "rsd did not report restarting its GPU worker (log %s)", log);

  /* the sim worker was never declared dead: its task and renderer load off its main loop */
  char slog[200];
  static char sbuf[1 << 16];
  snprintf(slog, sizeof slog, "%s/logs/local-sim-1.log", out);
  CHECK(scratch_read(slog, sbuf, sizeof sbuf) > 0 && !strstr(sbuf, "saying HELLO again"),
        "the sim worker lost its session (log %s)", slog);

  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total;
    CHECK(co_journal_counts(j, &total, NULL, 0, NULL, &je) == CO_JOURNAL_OK, "counts: %s", je.text);
    CHECK(total.total == 2u * trials && total.by_state[CO_EPISODE_DONE] == 2u * trials, "%llu of %llu done",
          (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total);
    int seen[2][2] = {{0}}, results = 0;
    uint64_t fwd[2] = {0}, chunks[2] = {0};
    co_journal_iter_t *it = co_journal_results(j, NULL, &je);
    co_journal_result_t r;
    while (it && co_journal_results_next(it, &r, &je)) {
      const msg_result_body_t *b = &r.r;
      int spec = strcmp(b->variant, "spec") == 0;
      results++;
      if (b->trial < 2) seen[spec][b->trial]++;
      CHECK(b->outcome != MSG_OUTCOME_INFRA_ERROR && b->steps >= 1 && b->steps <= (uint32_t)max_steps,
            "%s trial %u: %s after %u steps", b->variant, b->trial, msg_outcome_names[b->outcome], b->steps);
      uint32_t want_chunks = (b->steps + replan - 1) / replan;
      CHECK(b->has_chunks && b->chunks == want_chunks, "%s trial %u: %u chunks for %u steps, want %u", b->variant,
            b->trial, b->chunks, b->steps, want_chunks);
      CHECK(r.latency && r.latency_chunks == b->chunks, "%s trial %u: %zu latency rows", b->variant, b->trial,
            r.latency_chunks);
      bool lat_ok = r.latency != NULL;
      for (size_t c = 0; lat_ok && c < r.latency_chunks; c++)
        lat_ok = r.latency[4 * c + 3] > 0 && r.latency[4 * c + 3] >= r.latency[4 * c + 2];
      CHECK(lat_ok, "%s trial %u: a chunk's round trip is not positive or is below its decode time", b->variant,
            b->trial);
      uint32_t hist = 0;
      for (uint32_t k = 0; b->has_batch_hist && k < b->batch_hist_count; k++) hist += b->batch_hist[k];
      CHECK(hist == b->chunks, "%s trial %u: batch histogram holds %u of %u chunks", b->variant, b->trial, hist,
            b->chunks);
      CHECK(b->has_actions_digest && strlen(b->actions_digest) == 64, "%s trial %u: no actions digest", b->variant,
            b->trial);
      size_t want_first = 56u * (size_t)(replan < MSG_FIRST_ACTIONS_MAX ? replan : MSG_FIRST_ACTIONS_MAX);
      CHECK(b->has_first_actions && strlen(b->first_actions) == want_first, "%s trial %u: first_actions of %zu hex "
            "digits, want %zu", b->variant, b->trial, b->has_first_actions ? strlen(b->first_actions) : 0, want_first);
      if (!spec) {
        CHECK(b->main_forwards == (uint64_t)L * b->chunks && b->draft_forwards == 0,
              "ar trial %u: %llu main, %llu draft forwards for %u chunks (L %d)", b->trial,
              (unsigned long long)b->main_forwards, (unsigned long long)b->draft_forwards, b->chunks, L);
      } else {
        CHECK(b->main_forwards >= 2u * b->chunks && b->main_forwards <= (uint64_t)L * b->chunks &&
                  b->draft_forwards == b->main_forwards - b->chunks,
              "spec trial %u: %llu main, %llu draft forwards for %u chunks (L %d)", b->trial,
              (unsigned long long)b->main_forwards, (unsigned long long)b->draft_forwards, b->chunks, L);
        uint64_t prop = 0, acc = 0;
        bool per_layer = b->has_proposed && b->has_accepted;
        for (uint32_t l = 0; per_layer && l < b->proposed_count; l++) {
          prop += b->proposed[l];
          acc += b->accepted[l];
          per_layer = b->accepted[l] <= b->proposed[l];
        }
        CHECK(per_layer && prop > 0, "spec trial %u: proposed/accepted per layer inconsistent", b->trial);
        /* each chunk decodes L - 1 layers after the prefill; a round decides its accepted layers plus main's
         * layer, except a chunk's last round when it accepts up to layer L - 1 (no bonus layer exists) */
        uint64_t rounds = b->main_forwards - b->chunks, decided = acc + rounds;
        CHECK(decided >= (uint64_t)(L - 1) * b->chunks && decided <= (uint64_t)L * b->chunks,
              "spec trial %u: %llu accepted + %llu rounds for %d layers x %u chunks", b->trial,
              (unsigned long long)acc, (unsigned long long)rounds, L - 1, b->chunks);
      }
      fwd[spec] += b->main_forwards;
      chunks[spec] += b->chunks;
    }
    co_journal_iter_destroy(&it);
    CHECK(results == 2 * trials && seen[0][0] == 1 && seen[0][1] == 1 && seen[1][0] == 1 && seen[1][1] == 1,
          "%d results; per key ar %d %d spec %d %d", results, seen[0][0], seen[0][1], seen[1][0], seen[1][1]);
    CHECK(chunks[0] > 0 && chunks[1] > 0 && fwd[1] * chunks[0] < fwd[0] * chunks[1],
          "spec needs %llu main forwards for %llu chunks, ar %llu for %llu: not fewer per chunk",
          (unsigned long long)fwd[1], (unsigned long long)chunks[1], (unsigned long long)fwd[0],
          (unsigned long long)chunks[0]);
    co_journal_close(&j);
  }

  char rlog[160], report[200];
  snprintf(rlog, sizeof rlog, "%s/report.log", dir);
  rc = proc_wait(proc_spawn((char *[]){rsd, "report", out, NULL}, rlog, NULL, NULL), 60);
  CHECK(rc == 0, "rsd report exited %d (log %s)", rc, rlog);
  snprintf(report, sizeof report, "%s/report.md", out);
  static char rbuf[1 << 18];
  CHECK(scratch_read(report, rbuf, sizeof rbuf) > 0, "no %s", report);
  CHECK(strstr(rbuf, "spec") && strstr(rbuf, "ar") && strstr(rbuf, "p50"), "report.md lacks the latency figures");
  CHECK(strstr(rbuf, "(hash: sha256:"), "report.md does not name the package's content hash");
  /* spec vs ar on the first actions: "mean / max, gripper k/n" over trials x min(replan, 8) actions */
  unsigned gk = 0, gn = 0;
  const char *dev = strstr(rbuf, ", gripper "); /* the first one is the table's header */
  while (dev && sscanf(dev, ", gripper %u/%u", &gk, &gn) != 2) dev = strstr(dev + 1, ", gripper ");
  const char *bar = dev;
  while (bar && bar > rbuf && *bar != '|') bar--;
  double dmean = -1, dmax = -1;
  CHECK(dev && gn == (unsigned)trials * MSG_FIRST_ACTIONS_MAX &&
            sscanf(bar, "| %lf / %lf", &dmean, &dmax) == 2 && dmean >= 0 && dmax >= dmean,
        "report.md lacks spec's first-actions deviation from ar over %d actions", trials * MSG_FIRST_ACTIONS_MAX);

  scratch_done(dir);
  return check_summary("model_campaign_test");
}
