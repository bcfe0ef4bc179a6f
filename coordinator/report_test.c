/* report_test.c: the campaign report, tested on real journals built with the journal API in temporary
 * directories.
 *
 *   report_test                  statistics against hand-computed values; a 2-variant x 3-task campaign
 *                                with known outcomes, latencies, acceptances, a retry and an abandoned
 *                                episode -> the numbers in report.json (parsed back) and in report.md /
 *                                report.html; an empty and a partial (expert-only) campaign; CLI errors.
 *   report_test --render DIR     the same campaign in DIR, its report.html rendered by headless Chromium:
 *                                the screenshot exists, is 1200 x 2000 and shows the charts' colours.
 *                                Fails (never skips) when chromium is missing.
 * Expected numbers are written out below from the construction of each journal, not from the report. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "config.h"
#include "journal.h"
#include "report.h"

#define S_NEAR(a, b, tol) (fabs((a) - (b)) <= (tol))

/* ---- helpers ---------------------------------------------------------------------------------- */
static char *s_slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  if (buf) buf[n] = '\0';
  fclose(f);
  return buf;
}

static void s_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "create %s: %s", path, strerror(errno));
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n, "write %s", path);
  fclose(f);
}

static void s_rm_rf(const char *dir) {
  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static json_t *s_load_json(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, CO_REPORT_JSON);
  json_error_t e;
  json_t *root = json_load_file(path, 0, &e);
  CHECK(root != NULL, "parse %s: %s (line %d)", path, e.text, e.line);
  return root;
}

/* A number at a path like "variants/1/decode/latency_us/total/p50" (array indices as numbers). */
static json_t *s_at(json_t *root, const char *path) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", path);
  json_t *cur = root;
  for (char *save = NULL, *tok = strtok_r(buf, "/", &save); tok && cur; tok = strtok_r(NULL, "/", &save)) {
    if (json_is_array(cur)) cur = json_array_get(cur, strtoul(tok, NULL, 10));
    else cur = json_object_get(cur, tok);
  }
  return cur;
}

static double s_num(json_t *root, const char *path) {
  json_t *v = s_at(root, path);
  CHECK(json_is_number(v), "%s: expected a number, got %s", path,
        !v ? "nothing" : json_is_null(v) ? "null" : "another type");
  return json_is_number(v) ? json_number_value(v) : NAN;
}

static void s_expect_num(json_t *root, const char *path, double want, double tol) {
  double got = s_num(root, path);
  CHECK(S_NEAR(got, want, tol), "%s = %.10g, want %.10g", path, got, want);
}

static void s_expect_null(json_t *root, const char *path) {
  json_t *v = s_at(root, path);
  CHECK(v && json_is_null(v), "%s: expected null (no data), got %s", path, !v ? "nothing" : "a value");
}

static void s_expect_str(json_t *root, const char *path, const char *want) {
  json_t *v = s_at(root, path);
  CHECK(json_is_string(v) && strcmp(json_string_value(v), want) == 0, "%s = '%s', want '%s'", path,
        json_is_string(v) ? json_string_value(v) : "(not a string)", want);
}

static void s_contains(const char *text, const char *what, const char *file) {
  CHECK(text && strstr(text, what), "%s must contain '%s'", file, what);
}

/* ---- statistics ------------------------------------------------------------------------------- */
static void s_test_stats(void) {
  double lo = -1, hi = -1, d = 0;
  /* Wilson 95%: values from the closed form, checked against published tables (e.g. Newcombe 1998). */
  CHECK(co_report_wilson(0, 10, CO_REPORT_Z95, &lo, &hi) && lo == 0.0 && S_NEAR(hi, 0.2775327998628892, 1e-12),
        "wilson 0/10 = [%.16g, %.16g], want [0, 0.2775328]", lo, hi);
  CHECK(co_report_wilson(10, 10, CO_REPORT_Z95, &lo, &hi) && S_NEAR(lo, 0.7224672001371107, 1e-12) && hi == 1.0,
        "wilson 10/10 = [%.16g, %.16g], want [0.7224672, 1]", lo, hi);
  CHECK(co_report_wilson(45, 50, CO_REPORT_Z95, &lo, &hi) && S_NEAR(lo, 0.7863976856252035, 1e-12) &&
            S_NEAR(hi, 0.9565242350681096, 1e-12),
        "wilson 45/50 = [%.16g, %.16g], want [0.7863977, 0.9565242]", lo, hi);
  CHECK(co_report_wilson(56, 70, CO_REPORT_Z95, &lo, &hi) && S_NEAR(lo, 0.6918, 5e-5) && S_NEAR(hi, 0.8770, 5e-5),
        "wilson 56/70 = [%.6f, %.6f], Newcombe 1998 table I: [0.6918, 0.8770]", lo, hi);
  lo = hi = -7;
  CHECK(!co_report_wilson(0, 0, CO_REPORT_Z95, &lo, &hi) && lo == -7 && hi == -7, "wilson 0/0 has no interval");
  CHECK(!co_report_wilson(3, 2, CO_REPORT_Z95, &lo, &hi), "wilson 3/2 is refused");

  /* Newcombe 1998, table II, example (a): 56/70 - 48/80 = 0.2000, method 10: [0.0524, 0.3339]. */
  CHECK(co_report_newcombe(56, 70, 48, 80, CO_REPORT_Z95, &d, &lo, &hi) && S_NEAR(d, 0.2, 1e-12) &&
            S_NEAR(lo, 0.05243147240236498, 1e-12) && S_NEAR(hi, 0.333872654036906, 1e-12),
        "newcombe 56/70 - 48/80 = %.6f [%.6f, %.6f], want 0.2 [0.0524, 0.3339]", d, lo, hi);
  /* 9/10 - 3/10 from the two Wilson intervals by hand: [0.1705, 0.8090]. */
  CHECK(co_report_newcombe(9, 10, 3, 10, CO_REPORT_Z95, &d, &lo, &hi) && S_NEAR(d, 0.6, 1e-12) &&
            S_NEAR(lo, 0.17052272393450302, 1e-12) && S_NEAR(hi, 0.8090179735354881, 1e-12),
        "newcombe 9/10 - 3/10 = %.6f [%.6f, %.6f]", d, lo, hi);
  CHECK(!co_report_newcombe(1, 2, 0, 0, CO_REPORT_Z95, &d, &lo, &hi), "newcombe with an empty group");

  /* Fisher, two-sided: the lady tasting tea [[3,1],[1,3]]: p = 17/35; others summed by hand from
   * hypergeometric probabilities (exact fractions: 43/133 for [[9,1],[8,4]]). */
  double p = co_report_fisher_p(3, 1, 1, 3);
  CHECK(S_NEAR(p, 17.0 / 35.0, 1e-12), "fisher [[3,1],[1,3]] = %.16g, want 17/35", p);
  p = co_report_fisher_p(9, 1, 3, 7);
  CHECK(S_NEAR(p, 0.01976661109788045, 1e-12), "fisher [[9,1],[3,7]] = %.16g, want 0.0197666", p);
  p = co_report_fisher_p(45, 5, 30, 20);
  CHECK(S_NEAR(p, 0.0009668432030628979, 1e-14), "fisher [[45,5],[30,20]] = %.16g, want 0.000966843", p);
  p = co_report_fisher_p(10, 0, 0, 10);
  CHECK(S_NEAR(p, 1.082508822446903e-05, 1e-15), "fisher [[10,0],[0,10]] = %.16g, want 2/184756", p);
  p = co_report_fisher_p(9, 1, 8, 4);
  CHECK(S_NEAR(p, 43.0 / 133.0, 1e-12), "fisher [[9,1],[8,4]] = %.16g, want 43/133", p);
  CHECK(co_report_fisher_p(0, 10, 0, 10) == 1.0, "fisher with an empty column is 1");

  double v[] = {1, 2, 3, 4};
  CHECK(S_NEAR(co_report_quantile(v, 4, 0.5), 2.5, 1e-12) && S_NEAR(co_report_quantile(v, 4, 0.95), 3.85, 1e-12) &&
            co_report_quantile(v, 4, 1.0) == 4 && co_report_quantile(v, 1, 0.99) == 1,
        "quantile by linear interpolation: p50 %.4g p95 %.4g", co_report_quantile(v, 4, 0.5),
        co_report_quantile(v, 4, 0.95));
  CHECK(isnan(co_report_quantile(v, 0, 0.5)), "quantile of nothing is NAN");
}

/* ---- building journals ------------------------------------------------------------------------ */
static const char s_yaml[] =
    "name: rtest\n"
    "suite: libero_spatial\n"
    "tasks: [0, 1, 2]\n"
    "trials: 4\n"
    "model: models/test-model\n"
    "unnorm_key: libero_spatial\n"
    "variants:\n"
    "  - name: ar\n"
    "    mode: ar\n"
    "  - name: spec\n"
    "    mode: spec\n"
    "    draft_len: 3\n";

/* The known campaign. 1 = success, 0 = failure, -1 = abandoned (after one lease expiry), -2 = pending. */
static const int s_outcome[2][3][4] = {
    {{1, 1, 1, 0}, {1, 0, 0, 0}, {1, 1, 1, 1}},   /* ar:   3/4, 1/4, 4/4 = 8/12 */
    {{1, 1, 1, 1}, {1, 1, 0, -1}, {1, 1, 1, -2}}, /* spec: 4/4, 2/3, 3/3 = 9/10; 1 abandoned, 1 pending */
};
static const char *const s_vnames[2] = {"ar", "spec"};

static uint32_t s_steps(int ok, uint32_t task, uint32_t trial) { return ok ? 100 + 10 * task + trial : 220; }

/* The actions digest of an episode: the same for ar and spec at every (task, trial) but task 1 trial 1,
 * where spec "executed other actions" (the lossless check must see it). */
static void s_digest(int v, uint32_t task, uint32_t trial, char out[65]) {
  unsigned x = 16 * task + trial + (v == 1 && task == 1 && trial == 1 ? 0x80 : 0);
  for (int i = 0; i < 64; i += 2) snprintf(out + i, 3, "%02x", (x + (unsigned)i) & 0xff);
}

/* The first actions of an episode (2 actions, hex f32 as RESULT.first_actions): arm values 0.125 * task +
 * 0.0625 * trial + d / 8 (exact in f32), gripper +1; spec at task 1 trial 1 differs by +0.25 in arm value 0
 * of action 0 and opens the gripper in action 1. spec at task 0 trial 3 sends an unreadable text. */
static void s_first(int v, uint32_t task, uint32_t trial, char *out) {
  if (v == 1 && task == 0 && trial == 3) {
    snprintf(out, 2 * 56 + 1, "%0112d", 0);
    memcpy(out, "zz", 2);
    return;
  }
  bool other = v == 1 && task == 1 && trial == 1;
  for (int k = 0; k < 2; k++)
    for (int d = 0; d < 7; d++) {
      float x = d == 6 ? (other && k == 1 ? -1.0f : 1.0f) : 0.125f * (float)task + 0.0625f * (float)trial + (float)d / 8;
      if (other && k == 0 && d == 0) x += 0.25f;
      unsigned char b[4];
      memcpy(b, &x, 4);
      for (int i = 0; i < 4; i++) snprintf(out + 8 * (7 * k + d) + 2 * i, 3, "%02x", b[i]);
    }
}

static co_journal_t *s_open_new(const char *dir, const char *yaml) {
  co_config_t cfg;
  co_config_error_t ce;
  CHECK(co_config_parse(yaml, strlen(yaml), "test", &cfg, &ce) == CO_CONFIG_OK, "config: %s", ce.text);
  static char json[CO_CONFIG_JSON_MAX];
  co_config_to_json(&cfg, json, sizeof json);
  co_journal_campaign_t camp = {cfg.name, json, "0123456789abcdef", "rsd test"};
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &camp, NULL, &je);
  CHECK(j != NULL, "open %s: %s", dir, je.text);
  if (!j) exit(1);
  uint64_t n = co_config_episodes(&cfg);
  co_episode_key_t *keys = calloc(n ? n : 1, sizeof *keys);
  for (uint64_t i = 0; i < n; i++) {
    co_config_episode_t e;
    co_config_episode(&cfg, i, &e);
    snprintf(keys[i].variant, sizeof keys[i].variant, "%s", cfg.variants[e.variant].name);
    keys[i].task = e.task;
    keys[i].trial = e.trial;
  }
  CHECK(co_journal_add_episodes(j, keys, n, NULL, &je) == CO_JOURNAL_OK, "add_episodes: %s", je.text);
  free(keys);
  return j;
}

static co_episode_t s_lease(co_journal_t *j, const char *variant, uint32_t task, uint32_t trial, const char *worker) {
  co_episode_key_t k = {.task = task, .trial = trial};
  snprintf(k.variant, sizeof k.variant, "%s", variant);
  co_episode_t ep;
  co_journal_error_t je;
  CHECK(co_journal_lease(j, &k, worker, 0, &ep, &je) == CO_JOURNAL_OK, "lease %s/%u/%u: %s", variant, task, trial,
        je.text);
  return ep;
}

/* The 2 x 3 x 4 campaign above. Latency rows: chunk i of a variant (in recording order) has
 * queue 50, encode 150, decode (i + 1) * 1000 us (ar) or (i + 1) * 500 us (spec), total = the sum, plus
 * 100 ms for odd i (a sim worker that rendered another episode before taking the ACTION). */
static co_journal_t *s_build_campaign(const char *dir) {
  co_journal_t *j = s_open_new(dir, s_yaml);
  co_journal_error_t je;
  const char *workers[2] = {"sim-a", "sim-b"};
  for (int w = 0; w < 2; w++)
    CHECK(co_journal_event(j, CO_EVENT_JOINED, workers[w], NULL, 0, "capacity 2", &je) == CO_JOURNAL_OK, "event: %s",
          je.text);
  CHECK(co_journal_event(j, CO_EVENT_JOINED, "sim-c", NULL, 0, NULL, &je) == CO_JOURNAL_OK, "event: %s", je.text);
  CHECK(co_journal_event(j, CO_EVENT_DIED, "sim-c", NULL, 0, "no heartbeat", &je) == CO_JOURNAL_OK, "event: %s",
        je.text);
  /* A retry: spec task 0 trial 0 first fails for an infrastructure reason, then succeeds. */
  co_episode_t ep = s_lease(j, "spec", 0, 0, "sim-c");
  CHECK(co_journal_infra_error(j, ep.lease_id, "gpu worker died", 3, NULL, &je) == CO_JOURNAL_OK, "infra: %s", je.text);
  uint32_t chunk[2] = {0, 0};
  for (int v = 0; v < 2; v++)
    for (uint32_t t = 0; t < 3; t++)
      for (uint32_t tr = 0; tr < 4; tr++) {
        int o = s_outcome[v][t][tr];
        if (o == -2) continue;
        ep = s_lease(j, s_vnames[v], t, tr, workers[v]);
        if (o == -1) {
          CHECK(co_journal_expire(j, ep.lease_id, "lease expired: worker silent", 1, &ep, &je) == CO_JOURNAL_OK &&
                    ep.state == CO_EPISODE_ABANDONED,
                "expire: %s", je.text);
          continue;
        }
        msg_result_body_t r;
        memset(&r, 0, sizeof r);
        snprintf(r.campaign, sizeof r.campaign, "rtest");
        snprintf(r.variant, sizeof r.variant, "%s", s_vnames[v]);
        r.task = t;
        r.trial = tr;
        r.attempt = ep.attempts + 1;
        r.outcome = o ? MSG_OUTCOME_SUCCESS : MSG_OUTCOME_FAILURE;
        r.steps = s_steps(o, t, tr);
        r.wall_ms = 2000;
        r.has_reason = true;
        snprintf(r.reason, sizeof r.reason, "%s", o ? "bowl on plate" : "max_steps <reached> & over");
        r.has_worker = true;
        snprintf(r.worker, sizeof r.worker, "%s", workers[v]);
        r.has_chunks = true;
        r.chunks = 2;
        r.has_actions_digest = true;
        s_digest(v, t, tr, r.actions_digest);
        r.has_first_actions = true;
        s_first(v, t, tr, r.first_actions);
        /* ar's chunks decoded alone (batch 1), spec's in batches of 2-3 */
        r.has_batch_hist = true;
        r.batch_hist_count = (uint32_t)v + 1;
        r.batch_hist[0] = v == 0 ? 2 : 0;
        if (v == 1) r.batch_hist[1] = 2;
        r.has_main_forwards = true;
        r.main_forwards = v == 0 ? 8 : 6;
        if (v == 1) {
          r.has_draft_forwards = true;
          r.draft_forwards = 4;
          r.has_proposed = r.has_accepted = true;
          r.proposed_count = r.accepted_count = 3;
          uint32_t prop[3] = {2, 2, 2}, acc[3] = {2, 2, chunk[1] / 2 % 2};
          memcpy(r.proposed, prop, sizeof prop);
          memcpy(r.accepted, acc, sizeof acc);
        }
        float lat[2][4];
        for (int c = 0; c < 2; c++) {
          float dec = (float)(chunk[v] + 1) * (v == 0 ? 1000.0f : 500.0f);
          lat[c][0] = 50;
          lat[c][1] = 150;
          lat[c][2] = dec;
          lat[c][3] = 200 + dec + (chunk[v] % 2 ? 100000.0f : 0.0f);
          chunk[v]++;
        }
        msg_ack_status_t st;
        CHECK(co_journal_record_result(j, &r, ep.lease_id, &lat[0][0], 2, &st, &je) == CO_JOURNAL_OK &&
                  st == MSG_ACK_STORED,
              "record %s/%u/%u: %s", s_vnames[v], t, tr, je.text);
      }
  CHECK(chunk[0] == 24 && chunk[1] == 20, "chunks recorded: ar %u spec %u", chunk[0], chunk[1]);
  return j;
}

static void s_mkdtemp(char *buf, size_t cap) {
  const char *tmp = getenv("TMPDIR");
  snprintf(buf, cap, "%s/rsd_report_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(buf)) {
    fprintf(stderr, "mkdtemp %s: %s\n", buf, strerror(errno));
    exit(1);
  }
}

/* Rollout "videos" of two failed episodes (contents do not matter to the report), and one of a
 * successful episode, which must not be linked. */
static void s_add_videos(const char *dir, const void *png, size_t png_n) {
  char path[4200];
  snprintf(path, sizeof path, "%s/videos", dir);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/videos/ar_t0_r3.png", dir);
  s_write(path, png, png_n);
  snprintf(path, sizeof path, "%s/videos/spec_t1_r2.webm", dir);
  s_write(path, "webm", 4);
  snprintf(path, sizeof path, "%s/videos/ar_t2_r0.mp4", dir);
  s_write(path, "mp4", 3);
}

/* ---- the known campaign ----------------------------------------------------------------------- */
static void s_check_campaign_json(json_t *root) {
  s_expect_str(root, "campaign/name", "rtest");
  s_expect_str(root, "campaign/journal_code_version", "rsd test");
  s_expect_str(root, "code_version", "rsd " RSD_TEST_VERSION);
  s_expect_str(root, "model/name", "models/test-model");
  s_expect_null(root, "model/hash");
  s_expect_str(root, "config/name", "rtest");
  s_expect_str(root, "baseline", "ar");
  CHECK(json_is_false(s_at(root, "campaign/complete")), "a campaign with a pending episode is not complete");
  CHECK(json_array_size(s_at(root, "variants")) == 2 && json_array_size(s_at(root, "tasks")) == 3,
        "2 variants x 3 tasks");
  s_expect_str(root, "variants/0/name", "ar");
  s_expect_str(root, "variants/1/mode", "spec");

  /* The lossless check (equal actions digests per task x trial done in both) and the batch histogram. */
  uint64_t pairs = 0, same = 0, done[2] = {0, 0};
  for (uint32_t t = 0; t < 3; t++)
    for (uint32_t tr = 0; tr < 4; tr++) {
      for (int v = 0; v < 2; v++) done[v] += s_outcome[v][t][tr] >= 0;
      if (s_outcome[0][t][tr] < 0 || s_outcome[1][t][tr] < 0) continue;
      pairs++;
      same += !(t == 1 && tr == 1);
    }
  s_expect_num(root, "variants/1/vs_baseline/actions_identical/compared", (double)pairs, 0);
  s_expect_num(root, "variants/1/vs_baseline/actions_identical/identical", (double)same, 0);
  s_expect_num(root, "variants/0/decode/batch_size_histogram/chunks/0", 2.0 * (double)done[0], 0);
  s_expect_num(root, "variants/1/decode/batch_size_histogram/chunks/0", 0, 0);
  s_expect_num(root, "variants/1/decode/batch_size_histogram/chunks/1", 2.0 * (double)done[1], 0);
  s_expect_num(root, "variants/1/decode/batch_size_histogram/bucket_min/1", 2, 0);
  s_expect_num(root, "batch_size_histogram/chunks/0", 2.0 * (double)done[0], 0);
  s_expect_num(root, "batch_size_histogram/chunks/1", 2.0 * (double)done[1], 0);
  CHECK(pairs > same && same > 0, "the test campaign compares %llu pairs, %llu the same",
        (unsigned long long)pairs, (unsigned long long)same);
  /* The first actions: the same pairs but the unreadable one, 2 actions each; one arm value 0.25 apart and one
   * gripper sign over all of them. */
  const double fp = (double)pairs - 1, fa = 2 * fp;
  s_expect_num(root, "variants/1/vs_baseline/first_actions_deviation/pairs", fp, 0);
  s_expect_num(root, "variants/1/vs_baseline/first_actions_deviation/actions", fa, 0);
  s_expect_num(root, "variants/1/vs_baseline/first_actions_deviation/arm_mean_abs", 0.25 / (fa * 6), 1e-12);
  s_expect_num(root, "variants/1/vs_baseline/first_actions_deviation/arm_max_abs", 0.25, 0);
  s_expect_num(root, "variants/1/vs_baseline/first_actions_deviation/gripper_differ", 1, 0);
  CHECK(json_is_null(s_at(root, "variants/0/vs_baseline")), "the baseline has no comparison");
  {
    bool noted = false;
    json_t *notes = s_at(root, "notes"), *n;
    size_t k;
    json_array_foreach(notes, k, n) noted = noted || strstr(json_string_value(n), "1 results with an unreadable "
                                                                                  "first_actions");
    CHECK(noted, "no note about the unreadable first_actions");
  }

  /* Per variant x task: successes / trials, rate, Wilson, mean steps. */
  for (int v = 0; v < 2; v++)
    for (uint32_t t = 0; t < 3; t++) {
      uint64_t k = 0, n = 0, steps = 0, steps_ok = 0;
      for (uint32_t tr = 0; tr < 4; tr++) {
        int o = s_outcome[v][t][tr];
        if (o < 0) continue;
        n++;
        k += o;
        steps += s_steps(o, t, tr);
        steps_ok += o ? s_steps(o, t, tr) : 0;
      }
      char p[128];
      snprintf(p, sizeof p, "variants/%d/tasks/%u/", v, t);
      char q[160];
      snprintf(q, sizeof q, "%ssuccesses", p);
      s_expect_num(root, q, (double)k, 0);
      snprintf(q, sizeof q, "%strials", p);
      s_expect_num(root, q, (double)n, 0);
      snprintf(q, sizeof q, "%ssuccess_rate", p);
      s_expect_num(root, q, (double)k / (double)n, 1e-12);
      snprintf(q, sizeof q, "%smean_steps", p);
      s_expect_num(root, q, (double)steps / (double)n, 1e-9);
      snprintf(q, sizeof q, "%smean_steps_success", p);
      s_expect_num(root, q, (double)steps_ok / (double)k, 1e-9);
      double lo, hi;
      co_report_wilson(k, n, CO_REPORT_Z95, &lo, &hi);
      snprintf(q, sizeof q, "%swilson95/0", p);
      s_expect_num(root, q, lo, 1e-12);
      snprintf(q, sizeof q, "%swilson95/1", p);
      s_expect_num(root, q, hi, 1e-12);
    }
  /* ar task 0: 100, 101, 102 (successes) and 220 -> mean 130.75; Wilson 3/4 = [0.3006, 0.9544]. */
  s_expect_num(root, "variants/0/tasks/0/mean_steps", 130.75, 1e-9);
  s_expect_num(root, "variants/0/tasks/0/wilson95/0", 0.30064184258240184, 1e-12);
  s_expect_num(root, "variants/0/tasks/0/wilson95/1", 0.9544127391902995, 1e-12);

  /* Per variant: overall, episode states, retries. */
  s_expect_num(root, "variants/0/successes", 8, 0);
  s_expect_num(root, "variants/0/trials", 12, 0);
  s_expect_num(root, "variants/1/successes", 9, 0);
  s_expect_num(root, "variants/1/trials", 10, 0);
  s_expect_num(root, "variants/1/wilson95/0", 0.5958499732047615, 1e-12);
  s_expect_num(root, "variants/1/wilson95/1", 0.9821237869049271, 1e-12);
  s_expect_num(root, "variants/1/episodes/total", 12, 0);
  s_expect_num(root, "variants/1/episodes/done", 10, 0);
  s_expect_num(root, "variants/1/episodes/abandoned", 1, 0);
  s_expect_num(root, "variants/1/episodes/pending", 1, 0);
  s_expect_num(root, "variants/1/retries", 2, 0); /* the infra_error retry + the expiry that abandoned */
  s_expect_num(root, "variants/1/tasks/1/trials", 3, 0);
  s_expect_num(root, "variants/1/tasks/1/episodes/abandoned", 1, 0);

  /* Decode latency: ar decode 1000..24000 us (24 chunks): p50 at rank 11.5 = 12500, p95 at 21.85 =
   * 22850, p99 at 22.77 = 23770, mean 12500; service = queue + encode + decode = decode + 200. spec decode
   * 500..10000 (20 chunks): p50 at 9.5 = 5250, mean 5250. Total = service, + 100000 for odd chunks: ar's
   * sorted totals are 1200, 3200 .. 23200, then 102200 .. 124200, p50 between ranks 11 and 12 = 62700;
   * spec's 700 .. 9700, then 101200 .. 110200, p50 = (9700 + 101200) / 2 = 55450. */
  s_expect_num(root, "variants/0/decode/latency_chunks", 24, 0);
  s_expect_num(root, "variants/0/decode/latency_us/decode/p50", 12500, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/decode/p95", 22850, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/decode/p99", 23770, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/decode/mean", 12500, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/total/p50", 62700, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/service/p50", 12700, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/service/p99", 23970, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/service/mean", 12700, 1e-6);
  s_expect_num(root, "variants/0/decode/latency_us/queue/p99", 50, 1e-9);
  s_expect_num(root, "variants/0/decode/latency_us/encode/mean", 150, 1e-9);
  s_expect_num(root, "variants/1/decode/latency_us/decode/p50", 5250, 1e-6);
  s_expect_num(root, "variants/1/decode/latency_us/total/p50", 55450, 1e-6);
  s_expect_num(root, "variants/1/decode/latency_us/service/p50", 5450, 1e-6);
  /* Main forwards per chunk: ar 8 per 2 chunks, spec 6 per 2. */
  s_expect_num(root, "variants/0/decode/main_forwards_per_chunk", 4, 1e-12);
  s_expect_num(root, "variants/1/decode/main_forwards_per_chunk", 3, 1e-12);
  s_expect_num(root, "variants/1/decode/draft_forwards_per_chunk", 2, 1e-12);
  /* Acceptance: layers 0 and 1 always accepted; layer 2 accepted in 5 of the 10 results. Accepted
   * layers per verify: (2 + 2) * 10 + 5 = 45 over 10 * 4 draft rounds. */
  s_expect_num(root, "variants/1/decode/acceptance_per_layer/0", 1.0, 1e-12);
  s_expect_num(root, "variants/1/decode/acceptance_per_layer/1", 1.0, 1e-12);
  s_expect_num(root, "variants/1/decode/acceptance_per_layer/2", 0.25, 1e-12);
  s_expect_num(root, "variants/1/decode/proposed_per_layer/2", 20, 0);
  s_expect_num(root, "variants/1/decode/accepted_per_layer/2", 5, 0);
  s_expect_num(root, "variants/1/decode/mean_accepted_layers_per_verify", 1.125, 1e-12);
  s_expect_null(root, "variants/0/decode/acceptance_per_layer");
  s_expect_null(root, "variants/0/decode/mean_accepted_layers_per_verify");
  s_expect_null(root, "variants/0/decode/draft_forwards_per_chunk");

  /* vs baseline: 9/10 - 8/12; Newcombe by hand [-0.1281, 0.5213]; Fisher [[9,1],[8,4]] = 43/133. */
  s_expect_null(root, "variants/0/vs_baseline");
  s_expect_str(root, "variants/1/vs_baseline/baseline", "ar");
  s_expect_num(root, "variants/1/vs_baseline/success_diff", 0.9 - 8.0 / 12.0, 1e-12);
  s_expect_num(root, "variants/1/vs_baseline/success_diff_newcombe95/0", -0.12807426031437202, 1e-12);
  s_expect_num(root, "variants/1/vs_baseline/success_diff_newcombe95/1", 0.5213349397611452, 1e-12);
  s_expect_num(root, "variants/1/vs_baseline/fisher_p", 43.0 / 133.0, 1e-12);
  s_expect_num(root, "variants/1/vs_baseline/decode_speedup", 12500.0 / 5250.0, 1e-9);
  s_expect_num(root, "variants/1/vs_baseline/latency_p50_speedup", 62700.0 / 55450.0, 1e-9);
  s_expect_num(root, "variants/1/vs_baseline/service_p50_speedup", 12700.0 / 5450.0, 1e-9);
  s_expect_num(root, "variants/1/vs_baseline/main_forward_ratio", 0.75, 1e-12);

  /* Failed episodes, sorted by task and trial; videos linked only where a file exists. */
  CHECK(json_array_size(s_at(root, "variants/0/failed_episodes")) == 4 &&
            json_array_size(s_at(root, "variants/1/failed_episodes")) == 1,
        "failed episodes: ar 4, spec 1");
  s_expect_num(root, "variants/0/failed_episodes/0/task", 0, 0);
  s_expect_num(root, "variants/0/failed_episodes/0/trial", 3, 0);
  s_expect_num(root, "variants/0/failed_episodes/0/steps", 220, 0);
  s_expect_str(root, "variants/0/failed_episodes/0/video", "videos/ar_t0_r3.png");
  s_expect_null(root, "variants/0/failed_episodes/1/video");
  s_expect_str(root, "variants/1/failed_episodes/0/video", "videos/spec_t1_r2.webm");
  CHECK(json_array_size(s_at(root, "variants/1/abandoned_episodes")) == 1, "one abandoned episode");
  s_expect_num(root, "variants/1/abandoned_episodes/0/task", 1, 0);
  s_expect_num(root, "variants/1/abandoned_episodes/0/trial", 3, 0);
  s_expect_str(root, "variants/1/abandoned_episodes/0/last_error", "lease expired: worker silent");

  /* Infrastructure and throughput. */
  s_expect_num(root, "infrastructure/retries", 2, 0);
  s_expect_num(root, "infrastructure/episodes/abandoned", 1, 0);
  s_expect_num(root, "infrastructure/episodes/total", 24, 0);
  s_expect_num(root, "infrastructure/workers_seen", 3, 0);
  s_expect_num(root, "infrastructure/events/joined", 3, 0);
  s_expect_num(root, "infrastructure/events/died", 1, 0);
  s_expect_num(root, "infrastructure/events/infra_error", 1, 0);
  s_expect_num(root, "infrastructure/events/lease_expired", 1, 0);
  s_expect_num(root, "infrastructure/events/abandoned", 1, 0);
  uint64_t steps = 0;
  for (int v = 0; v < 2; v++)
    for (uint32_t t = 0; t < 3; t++)
      for (uint32_t tr = 0; tr < 4; tr++)
        if (s_outcome[v][t][tr] >= 0) steps += s_steps(s_outcome[v][t][tr], t, tr);
  s_expect_num(root, "throughput/env_steps", (double)steps, 0);
  /* Per variant, steps per second of episode time: every RESULT says wall_ms 2000. */
  for (int v = 0; v < 2; v++) {
    uint64_t vs = 0, n = 0;
    for (uint32_t t = 0; t < 3; t++)
      for (uint32_t tr = 0; tr < 4; tr++)
        if (s_outcome[v][t][tr] >= 0) vs += s_steps(s_outcome[v][t][tr], t, tr), n++;
    char q[64];
    snprintf(q, sizeof q, "variants/%d/episode_steps_per_s", v);
    s_expect_num(root, q, (double)vs / (2.0 * (double)n), 1e-9);
  }
  s_expect_num(root, "throughput/chunks", 44, 0);
  double wall = s_num(root, "throughput/wall_s"), sps = s_num(root, "throughput/env_steps_per_s");
  CHECK(wall > 0 && S_NEAR(sps, (double)steps / wall, 1e-6 * sps), "env steps/s %.6g = steps / wall %.6g", sps, wall);
}

static void s_check_campaign_text(const char *dir) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, CO_REPORT_MD);
  char *md = s_slurp(path);
  CHECK(md != NULL, "read %s", path);
  snprintf(path, sizeof path, "%s/%s", dir, CO_REPORT_HTML);
  char *html = s_slurp(path);
  CHECK(html != NULL, "read %s", path);
  /* The figures as they are printed: fractions, rates, Wilson intervals, latencies, comparisons. */
  const char *both[] = {"3/4", "75.0%", "[30.1%, 95.4%]", "8/12", "66.7%", "[39.1%, 86.2%]", "9/10", "90.0%",
                        "[59.6%, 98.2%]", "130.8", "12.70 ms", "5.45 ms", "23.97 ms", "2.38\xc3\x97", "2.33\xc3\x97",
                        "0.75\xc3\x97", "+23.3 pp", "[-12.8, +52.1] pp", "0.3233", "25.0%", "1.12",
                        "lease expired: worker silent", "incomplete"};
  for (size_t i = 0; i < sizeof both / sizeof both[0]; i++) {
    s_contains(md, both[i], "report.md");
    s_contains(html, both[i], "report.html");
  }
  s_contains(md, "[video](videos/ar_t0_r3.png)", "report.md");
  /* the lossless check and the batch sizes, in both documents */
  s_contains(md, "identical (differ!)", "report.md");
  s_contains(html, "identical (differ!)", "report.html");
  /* 9 pairs x 2 first actions: 0.25 / 108 arm values, max 0.25, 1 gripper sign of 18 */
  s_contains(md, "| 0.0023 / 0.2500, gripper 1/18 |", "report.md");
  s_contains(html, "<td>0.0023 / 0.2500, gripper 1/18</td>", "report.html");
  s_contains(md, "| spec | 0 |", "report.md");
  s_contains(html, "<th>2-3</th>", "report.html");
  s_contains(html, "<img class=\"video\" src=\"videos/ar_t0_r3.png\"", "report.html");
  s_contains(html, "<video controls muted preload=\"metadata\" src=\"videos/spec_t1_r2.webm\"", "report.html");
  /* A successful episode's video (video policy `all`) is shown in its own section, after the failures. */
  const char *ok_video = html ? strstr(html, "<video controls muted preload=\"metadata\" src=\"videos/ar_t2_r0.mp4\"") : NULL;
  const char *ok_section = html ? strstr(html, "Rollout videos of successful episodes") : NULL;
  CHECK(ok_video && ok_section && ok_video > ok_section, "a successful episode's video is not in its own section");
  CHECK(md && !strstr(md, "ar_t2_r0.mp4"), "report.md lists a successful episode's video among the failures");
  /* Failed trials per variant x task. */
  s_contains(html, "<tr><td class=\"l\">ar</td><td>1</td><td>3/4</td><td class=\"l w\">1, 2, 3</td></tr>",
             "report.html");
  s_contains(html, "<tr><td class=\"l\">spec</td><td>1</td><td>1/3</td><td class=\"l w\">2</td></tr>", "report.html");
  /* Self-contained: inline SVG, no script, no external URL; text escaped. */
  s_contains(html, "<svg class=\"chart\"", "report.html");
  CHECK(html && !strstr(html, "http:") && !strstr(html, "https:") && !strstr(html, "<script"),
        "report.html must not reference external URLs or scripts");
  s_contains(html, "max_steps &lt;reached&gt; &amp; over", "report.html");
  CHECK(html && !strstr(html, "<reached>"), "failure reasons are HTML-escaped");
  /* No latency for a variant without it is shown as a dash, not 0: ar has no acceptance. */
  s_contains(md, "| ar | 24 | 12.70 ms |", "report.md");
  /* The sim worker's wait beside the service time: ar's totals p50 62700, p99 at rank 22.77 = 123740 us. */
  s_contains(md, "| 62.70 ms | 123.74 ms |", "report.md");
  s_contains(html, "<td>62.70 / 123.74</td>", "report.html");
  s_contains(md, "| service p50 |", "report.md");
  s_contains(html, "<th>service p50</th>", "report.html");
  s_contains(md, "| 4.00 | " "\xe2\x80\x94" " | " "\xe2\x80\x94" " |", "report.md");
  free(md);
  free(html);
}

static void s_test_campaign(void) {
  char dir[256];
  s_mkdtemp(dir, sizeof dir);
  co_journal_t *j = s_build_campaign(dir);
  s_add_videos(dir, "\x89PNG", 4);
  /* The writing handle stays open: a report is made while the campaign "runs". */
  co_report_summary_t sum;
  co_report_error_t err;
  CHECK(co_report_write(dir, NULL, &sum, &err) == CO_REPORT_OK, "report: %s", err.text);
  CHECK(sum.episodes == 24 && sum.done == 22 && sum.abandoned == 1 && sum.variants == 2 && sum.tasks == 3 &&
            !sum.complete,
        "summary: %llu episodes, %llu done, %llu abandoned, %u variants, %u tasks", (unsigned long long)sum.episodes,
        (unsigned long long)sum.done, (unsigned long long)sum.abandoned, sum.variants, sum.tasks);
  json_t *root = s_load_json(dir);
  if (root) s_check_campaign_json(root);
  json_decref(root);
  s_check_campaign_text(dir);

  /* --out elsewhere: the same numbers; video links then name the campaign directory. */
  char out[300], path[4200];
  snprintf(out, sizeof out, "%s/elsewhere", dir);
  char *argv[] = {dir, "--out", out};
  CHECK(co_report_cli(3, argv) == 0, "rsd report DIR --out OUT");
  root = s_load_json(out);
  s_expect_num(root, "variants/1/successes", 9, 0);
  json_t *v = s_at(root, "variants/0/failed_episodes/0/video");
  char real[4096];
  CHECK(realpath(dir, real) != NULL, "realpath %s", dir);
  snprintf(path, sizeof path, "%s/videos/ar_t0_r3.png", real);
  CHECK(json_is_string(v) && strcmp(json_string_value(v), path) == 0, "video link from elsewhere: %s, want %s",
        json_is_string(v) ? json_string_value(v) : "(none)", path);
  json_decref(root);
  co_journal_close(&j);

  /* After the campaign: the last episode runs; a second report replaces the first. */
  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &(co_journal_error_t){0});
  CHECK(j != NULL, "reopen");
  if (j) {
    co_episode_t ep = s_lease(j, "spec", 2, 3, "sim-b");
    msg_result_body_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.campaign, sizeof r.campaign, "rtest");
    snprintf(r.variant, sizeof r.variant, "spec");
    r.task = 2;
    r.trial = 3;
    r.attempt = 1;
    r.outcome = MSG_OUTCOME_FAILURE;
    r.steps = 220;
    msg_ack_status_t st;
    co_journal_error_t je;
    CHECK(co_journal_record_result(j, &r, ep.lease_id, NULL, 0, &st, &je) == CO_JOURNAL_OK, "record: %s", je.text);
    co_journal_close(&j);
  }
  CHECK(co_report_write(dir, NULL, &sum, &err) == CO_REPORT_OK && sum.complete && sum.done == 23,
        "report of the complete campaign: %s", err.text);
  root = s_load_json(dir);
  CHECK(json_is_true(s_at(root, "campaign/complete")), "complete after the last result");
  s_expect_num(root, "variants/1/tasks/2/trials", 4, 0);
  s_expect_num(root, "variants/1/tasks/2/successes", 3, 0);
  s_expect_null(root, "variants/1/failed_episodes/1/reason"); /* that RESULT carried no reason */
  s_expect_num(root, "variants/1/decode/latency_chunks", 20, 0); /* and no latency rows */
  json_decref(root);
  snprintf(path, sizeof path, "%s/report.json.tmp.%ld", dir, (long)getpid());
  CHECK(access(path, F_OK) != 0, "no temporary file left behind");
  s_rm_rf(dir);
}

/* ---- empty and partial campaigns, errors ------------------------------------------------------ */
static void s_test_empty_and_partial(void) {
  char dir[256];
  s_mkdtemp(dir, sizeof dir);
  /* A journal whose campaign has no episodes yet. */
  co_journal_campaign_t camp = {"empty", "{\"name\": \"empty\"}", "h", "rsd test"};
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &camp, NULL, &je);
  CHECK(j != NULL, "open: %s", je.text);
  co_journal_close(&j);
  co_report_error_t err;
  co_report_summary_t sum;
  CHECK(co_report_write(dir, NULL, &sum, &err) == CO_REPORT_OK && sum.episodes == 0 && sum.variants == 0 &&
            !sum.complete,
        "empty campaign: %s", err.text);
  json_t *root = s_load_json(dir);
  CHECK(json_array_size(s_at(root, "variants")) == 0, "no variants");
  CHECK(json_is_false(s_at(root, "campaign/complete")), "a campaign without episodes is not complete");
  s_expect_null(root, "baseline");
  s_expect_null(root, "throughput/wall_s");
  s_expect_null(root, "throughput/env_steps_per_s");
  CHECK(json_is_string(s_at(root, "config_error")), "a config the report cannot read is named, not fatal");
  json_decref(root);
  s_rm_rf(dir);

  /* An expert-only campaign, interrupted after two results without decode statistics. */
  s_mkdtemp(dir, sizeof dir);
  j = s_open_new(dir, "name: part\nsuite: libero_spatial\ntasks: [3]\ntrials: 5\nvariants:\n"
                      "  - name: expert\n    policy: expert\n");
  for (uint32_t tr = 0; tr < 2; tr++) {
    co_episode_t ep = s_lease(j, "expert", 3, tr, "sim-x");
    msg_result_body_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.campaign, sizeof r.campaign, "part");
    snprintf(r.variant, sizeof r.variant, "expert");
    r.task = 3;
    r.trial = tr;
    r.attempt = 1;
    r.outcome = MSG_OUTCOME_SUCCESS;
    r.steps = 90 + tr * 10;
    r.wall_ms = 1000;
    msg_ack_status_t st;
    CHECK(co_journal_record_result(j, &r, ep.lease_id, NULL, 0, &st, &je) == CO_JOURNAL_OK, "record: %s", je.text);
  }
  s_lease(j, "expert", 3, 2, "sim-x"); /* leased when the coordinator stopped */
  co_journal_close(&j);
  char *argv[] = {dir};
  CHECK(co_report_cli(1, argv) == 0, "rsd report DIR on a partial campaign");
  root = s_load_json(dir);
  s_expect_str(root, "variants/0/policy", "expert");
  s_expect_null(root, "variants/0/mode");
  s_expect_num(root, "variants/0/trials", 2, 0);
  s_expect_num(root, "variants/0/mean_steps", 95, 1e-9);
  s_expect_num(root, "variants/0/episodes/leased", 1, 0);
  s_expect_num(root, "variants/0/episodes/pending", 2, 0);
  s_expect_num(root, "variants/0/wilson95/0", 0.3423802275066532, 1e-9); /* Wilson 2/2 lower bound */
  s_expect_null(root, "variants/0/decode/latency_us");
  s_expect_null(root, "variants/0/decode/main_forwards_per_chunk");
  s_expect_null(root, "variants/0/decode/chunks");
  s_expect_null(root, "throughput/chunks");
  s_expect_null(root, "throughput/chunks_per_s");
  s_expect_null(root, "batch_size_histogram");
  s_expect_null(root, "variants/0/decode/batch_size_histogram");
  s_expect_null(root, "variants/0/decode/acceptance_per_layer");
  s_expect_null(root, "variants/0/vs_baseline");
  s_expect_str(root, "baseline", "expert");
  s_expect_null(root, "model/name");
  json_decref(root);
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, CO_REPORT_HTML);
  char *html = s_slurp(path);
  s_contains(html, "No latency data", "report.html");
  s_contains(html, "No acceptance data", "report.html");
  free(html);
  s_rm_rf(dir);

  /* Errors: no journal -> 1 with the directory named; usage -> 2. */
  s_mkdtemp(dir, sizeof dir);
  CHECK(co_report_write(dir, NULL, NULL, &err) == CO_REPORT_ERR_JOURNAL && strstr(err.text, dir),
        "no journal: code %d, '%s'", err.code, err.text);
  snprintf(path, sizeof path, "%s/%s", dir, CO_REPORT_JSON);
  CHECK(access(path, F_OK) != 0, "nothing written without a journal");
  char *a1[] = {dir};
  CHECK(co_report_cli(1, a1) == 1, "rsd report on a directory without a journal exits 1");
  char *a2[] = {dir, "--bogus"};
  CHECK(co_report_cli(2, a2) == 2, "unknown option exits 2");
  char *a3[] = {dir, "--out"};
  CHECK(co_report_cli(2, a3) == 2, "--out without a directory exits 2");
  CHECK(co_report_cli(0, NULL) == 2, "no directory exits 2");
  s_rm_rf(dir);
}

/* ---- rendering in headless Chromium ----------------------------------------------------------- */
static void s_be32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8),
  p[3] = (unsigned char)v;
}
static uint32_t s_rd32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A small RGB PNG (a gradient), as a stand-in rollout frame. Returns malloc'd bytes. */
static unsigned char *s_png_make(uint32_t w, uint32_t h, size_t *n_out) {
  size_t raw_n = (size_t)h * (1 + 3 * w);
  unsigned char *raw = malloc(raw_n);
  for (uint32_t y = 0; y < h; y++) {
    unsigned char *row = raw + (size_t)y * (1 + 3 * w);
    row[0] = 0;
    for (uint32_t x = 0; x < w; x++) {
      row[1 + 3 * x] = (unsigned char)(x * 255 / w);
      row[2 + 3 * x] = (unsigned char)(y * 255 / h);
      row[3 + 3 * x] = 128;
    }
  }
  uLongf zn = compressBound(raw_n);
  unsigned char *z = malloc(zn);
  compress(z, &zn, raw, raw_n);
  size_t n = 8 + 25 + 12 + zn + 12;
  unsigned char *png = malloc(n), *p = png;
  memcpy(p, "\x89PNG\r\n\x1a\n", 8);
  p += 8;
  const char *types[3] = {"IHDR", "IDAT", "IEND"};
  unsigned char ihdr[13];
  s_be32(ihdr, w);
  s_be32(ihdr + 4, h);
  ihdr[8] = 8, ihdr[9] = 2, ihdr[10] = 0, ihdr[11] = 0, ihdr[12] = 0;
  const unsigned char *data[3] = {ihdr, z, NULL};
  size_t len[3] = {13, zn, 0};
  for (int c = 0; c < 3; c++) {
    s_be32(p, (uint32_t)len[c]);
    memcpy(p + 4, types[c], 4);
    if (len[c]) memcpy(p + 8, data[c], len[c]);
    s_be32(p + 8 + len[c], (uint32_t)crc32(0, p + 4, (uInt)(4 + len[c])));
    p += 12 + len[c];
  }
  free(raw);
  free(z);
  *n_out = n;
  return png;
}

typedef struct {
  uint32_t w, h, channels;
  unsigned char *px; /* w * h * channels, filters undone */
} s_image_t;

static int s_paeth(int a, int b, int c) {
  int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes). Returns false with why. */
static bool s_png_decode(const unsigned char *d, size_t n, s_image_t *img, char *why, size_t cap) {
  memset(img, 0, sizeof *img);
  if (n < 8 || memcmp(d, "\x89PNG\r\n\x1a\n", 8) != 0) return snprintf(why, cap, "no PNG signature"), false;
  unsigned char *idat = NULL;
  size_t idat_n = 0;
  uint32_t depth = 0, ctype = 0, interlace = 0;
  for (size_t off = 8; off + 12 <= n;) {
    uint32_t len = s_rd32(d + off);
    if (off + 12 + len > n) break;
    const unsigned char *type = d + off + 4, *body = d + off + 8;
    if (memcmp(type, "IHDR", 4) == 0 && len >= 13) {
      img->w = s_rd32(body), img->h = s_rd32(body + 4), depth = body[8], ctype = body[9], interlace = body[12];
    } else if (memcmp(type, "IDAT", 4) == 0) {
      unsigned char *ni = realloc(idat, idat_n + len);
      if (!ni) break;
      idat = ni;
      memcpy(idat + idat_n, body, len);
      idat_n += len;
    } else if (memcmp(type, "IEND", 4) == 0) {
      break;
    }
    off += 12 + len;
  }
  img->channels = ctype == 2 ? 3 : ctype == 6 ? 4 : 0;
  if (!img->w || !img->h || depth != 8 || !img->channels || interlace) {
    free(idat);
    return snprintf(why, cap, "unsupported PNG: %ux%u depth %u colour type %u interlace %u", img->w, img->h, depth,
                    ctype, interlace),
           false;
  }
  size_t stride = (size_t)img->w * img->channels;
  uLongf raw_n = (uLongf)((stride + 1) * img->h);
  unsigned char *raw = malloc(raw_n);
  int zrc = raw ? uncompress(raw, &raw_n, idat, idat_n) : Z_MEM_ERROR;
  free(idat);
  if (zrc != Z_OK || raw_n != (stride + 1) * img->h) {
    free(raw);
    return snprintf(why, cap, "PNG image data does not inflate to %zu bytes (zlib %d)", (stride + 1) * img->h, zrc),
           false;
  }
  img->px = malloc(stride * img->h);
  size_t bpp = img->channels;
  for (uint32_t y = 0; y < img->h; y++) {
    unsigned char ft = raw[y * (stride + 1)], *src = raw + y * (stride + 1) + 1, *dst = img->px + y * stride;
    const unsigned char *up = y ? img->px + (y - 1) * stride : NULL;
    for (size_t x = 0; x < stride; x++) {
      int a = x >= bpp ? dst[x - bpp] : 0, b = up ? up[x] : 0, c = up && x >= bpp ? up[x - bpp] : 0;
      int pred = ft == 0 ? 0 : ft == 1 ? a : ft == 2 ? b : ft == 3 ? (a + b) / 2 : s_paeth(a, b, c);
      dst[x] = (unsigned char)(src[x] + pred);
    }
    if (ft > 4) {
      free(raw);
      return snprintf(why, cap, "bad PNG filter type %u on row %u", ft, y), false;
    }
  }
  free(raw);
  return true;
}

/* Pixels of exactly the colour #rrggbb. */
static size_t s_count_colour(const s_image_t *img, uint32_t rgb) {
  size_t n = 0;
  for (size_t i = 0; i < (size_t)img->w * img->h; i++) {
    const unsigned char *p = img->px + i * img->channels;
    n += ((uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2]) == rgb;
  }
  return n;
}

/* Distinct colours, counted up to `limit`. */
static size_t s_distinct_colours(const s_image_t *img, size_t limit) {
  uint32_t *seen = malloc(limit * sizeof *seen);
  size_t n = 0;
  for (size_t i = 0; i < (size_t)img->w * img->h && n < limit; i++) {
    const unsigned char *p = img->px + i * img->channels;
    uint32_t c = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    size_t k = 0;
    while (k < n && seen[k] != c) k++;
    if (k == n) seen[n++] = c;
  }
  free(seen);
  return n;
}

/* The chromium to run: $RSD_CHROMIUM, else `chromium` on PATH. NULL when there is none. */
static const char *s_find_chromium(char *buf, size_t cap) {
  const char *env = getenv("RSD_CHROMIUM");
  if (env && *env) return access(env, X_OK) == 0 ? env : NULL;
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  for (const char *p = path; *p;) {
    const char *e = strchr(p, ':');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    snprintf(buf, cap, "%.*s/chromium", (int)len, p);
    if (len && access(buf, X_OK) == 0) return buf;
    p += len + (e ? 1 : 0);
  }
  return NULL;
}

/* Runs argv with stdout and stderr into `log`, in its own process group; kills the group after
 * `limit_s` seconds (a hung browser must not hang the test). Returns the exit status, or -1. */
static int s_run(char *const *argv, const char *log, int limit_s) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    setpgid(0, 0);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) dup2(fd, 1), dup2(fd, 2), close(fd);
    execv(argv[0], argv);
    _exit(127);
  }
  setpgid(pid, pid);
  int status = 0;
  for (int waited_ms = 0;; waited_ms += 50) {
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 || waited_ms >= limit_s * 1000) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      fprintf(stderr, "chromium did not finish within %d s; killed\n", limit_s);
      return -1;
    }
    nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void s_test_render(const char *dir) {
  s_rm_rf(dir);
  CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
  co_journal_t *j = s_build_campaign(dir);
  co_journal_close(&j);
  size_t png_n;
  unsigned char *png = s_png_make(96, 96, &png_n);
  s_add_videos(dir, png, png_n);
  free(png);
  co_report_error_t err;
  CHECK(co_report_write(dir, NULL, NULL, &err) == CO_REPORT_OK, "report: %s", err.text);

  char chromium_buf[4096];
  const char *chromium = s_find_chromium(chromium_buf, sizeof chromium_buf);
  const char *forced = getenv("RSD_CHROMIUM");
  CHECK(chromium != NULL,
        "chromium not found (%s%s%s): install Debian's 'chromium' package (ops/pins.sh, ops/setup.sh). This test "
        "renders report.html and does not skip without it.",
        forced && *forced ? "RSD_CHROMIUM='" : "not on PATH", forced && *forced ? forced : "",
        forced && *forced ? "' is not executable" : "");
  if (!chromium) return;
  char real[4096], shot[4200], url[4300], profile[4200], shot_arg[4300], profile_arg[4300], log[4200];
  CHECK(realpath(dir, real) != NULL, "realpath %s", dir);
  snprintf(shot, sizeof shot, "%s/screenshot.png", real);
  snprintf(shot_arg, sizeof shot_arg, "--screenshot=%s", shot);
  snprintf(profile, sizeof profile, "%s/chromium-profile", real);
  snprintf(profile_arg, sizeof profile_arg, "--user-data-dir=%s", profile);
  snprintf(url, sizeof url, "file://%s/%s", real, CO_REPORT_HTML);
  snprintf(log, sizeof log, "%s/chromium.log", real);
  char *argv[] = {(char *)chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--hide-scrollbars", "--no-first-run", profile_arg, shot_arg, "--window-size=1200,2000", url, NULL};
  int rc = s_run(argv, log, 90);
  CHECK(rc == 0, "%s exited with %d; its output is in %s", chromium, rc, log);
  FILE *f = fopen(shot, "rb");
  CHECK(f != NULL, "chromium wrote no screenshot %s (see %s)", shot, log);
  if (!f) return;
  fclose(f);
  char *data = NULL;
  struct stat st;
  size_t n = stat(shot, &st) == 0 ? (size_t)st.st_size : 0;
  if ((f = fopen(shot, "rb")) && (data = malloc(n ? n : 1)) && fread(data, 1, n, f) != n) n = 0;
  if (f) fclose(f);
  s_image_t img;
  char why[256] = "";
  bool ok = data && s_png_decode((const unsigned char *)data, n, &img, why, sizeof why);
  free(data);
  CHECK(ok, "decode %s: %s", shot, why);
  if (!ok) return;
  CHECK(img.w == 1200 && img.h == 2000, "screenshot is %ux%u, want 1200x2000", img.w, img.h);
  size_t colours = s_distinct_colours(&img, 64);
  CHECK(colours >= 16, "screenshot has %zu distinct colours: a flat or empty page", colours);
  /* The charts drew: the variants' bar colours (#4477aa ar, #ee6677 spec) cover real areas. */
  size_t blue = s_count_colour(&img, 0x4477aa), red = s_count_colour(&img, 0xee6677);
  CHECK(blue >= 2000 && red >= 2000,
        "variant colours in the screenshot: #4477aa %zu px, #ee6677 %zu px (charts missing?)", blue, red);
  printf("screenshot %s: %ux%u, %zu+ colours, #4477aa %zu px, #ee6677 %zu px\n", shot, img.w, img.h, colours, blue,
         red);
  free(img.px);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--render") == 0) {
    s_test_render(argv[2]);
    return check_summary("report_render_test");
  }
  if (argc != 1) {
    fprintf(stderr, "usage: report_test [--render DIR]\n");
    return 2;
  }
  s_test_stats();
  s_test_campaign();
  s_test_empty_and_partial();
  return check_summary("report_test");
}
