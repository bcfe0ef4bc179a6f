/* policy_test.c: the policy runtime and the decoding engine against the tiny packages that
 * train/make_test_models.py builds at test time. Usage: gw_policy_test SUITE MODELDIR
 *
 *   load      manifest, content hash, devices, manifest errors (missing/unknown field, bad hash)
 *   lossless  spec == ar code for code (exact, poor, mixed drafts; gamma 1..5; batches 1..32 with rows
 *             at mixed positions); per request, main/draft forwards and proposals replay exactly from the
 *             per-layer acceptance
 *   relaxed   accepted layers are within the radii of main's teacher-forced argmax; radius 0 == spec;
 *             a draft off by one is fully accepted at radius 1 and its codes are kept
 *   batching  a request's codes, chunk and stats do not depend on the rest of its batch (also when a
 *             neighbour fails)
 *   paths     width > 1 (draft.propose_paths, every path a row of one verify): spec == ar code for code on
 *             every draft, widths 2..5, gammas 1..5, batches 1..32; forwards replay from acceptance; a poor
 *             draft whose second path is main's layer advances two layers a round; acceptance never drops
 *             below width 1's; relaxed radius 1 keeps width 1's result; a draft without propose_paths and a
 *             width above the maximum are refused
 *   errors    missing method, wrong output shape, NaN output (that request only), unknown unnorm_key,
 *             wrong image size; unnormalization and the gripper convention */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "policy.h"

#define NOBS 96
#define MAXL GW_MAX_LAYERS

static const char *s_dir;
/* The device every test package is opened on: RSD_TEST_DEVICE (cpu by default; ops/gpu/run.sh sets
 * cuda:0 on the GPU machine, so the same checks run on CUDA). */
static const char *s_device = "cpu";

/* ---- observations ---------------------------------------------------------------------------- */
typedef struct {
  uint8_t img[2 * 16 * 16 * 3];
  float proprio[8];
  char instr[64];
  gw_obs_t obs;
} s_obs_t;

static uint64_t s_rng = 88172645463325252ull;
static uint32_t s_rand(void) {
  s_rng ^= s_rng << 13;
  s_rng ^= s_rng >> 7;
  s_rng ^= s_rng << 17;
  return (uint32_t)(s_rng >> 11);
}

static const char *const s_instr[] = {"pick up the black bowl between the plate and the ramekin and place it on the plate",
                                      "pick up the black bowl on the cookie box and place it on the plate",
                                      "pick up the black bowl next to the cookie box and place it on the plate", ""};

static void s_make_obs(s_obs_t *o) {
  for (size_t i = 0; i < sizeof o->img; i++) o->img[i] = (uint8_t)(s_rand() & 255);
  for (int i = 0; i < 8; i++) o->proprio[i] = (float)((int)(s_rand() % 4001) - 2000) / 1000.0f;
  snprintf(o->instr, sizeof o->instr, "%s", s_instr[s_rand() % 4]);
  o->obs = (gw_obs_t){o->img, 2, 16, 16, o->proprio, 8, o->instr};
}

static s_obs_t s_obs[NOBS];

/* ---- results --------------------------------------------------------------------------------- */
typedef struct {
  float chunk[8 * 7], norm[8 * 7];
  int32_t codes[MAXL * 4];
  gw_result_t r;
} s_res_t;

static int s_dtype = GW_DTYPE_FLOAT32; /* the precision s_open opens at */

static gw_policy_t *s_open(const char *pkg, const char *key, int *rc_out) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", s_dir, pkg);
  gw_policy_opts_t opts = {s_device, key, 1, 1, 0, s_dtype};
  gw_policy_t *p = NULL;
  int rc = gw_policy_open(path, &opts, &p);
  if (rc_out) *rc_out = rc;
  return p;
}

static gw_decode_params_t s_params(int mode, int gamma, int radius) {
  gw_decode_params_t prm = {mode, gamma, {0}, 1};
  for (int l = 0; l < MAXL; l++) prm.radii[l] = radius;
  return prm;
}

/* Decodes obs[idx[0..n-1]] as one batch into out[0..n-1]. */
static int s_decode(gw_policy_t *p, const int *idx, int n, const gw_decode_params_t *prm, s_res_t *out) {
  static gw_obs_t obs[64];
  static gw_result_t res[64];
  for (int i = 0; i < n; i++) {
    obs[i] = s_obs[idx[i]].obs;
    memset(&out[i], 0, sizeof out[i]);
    for (int k = 0; k < 8 * 7; k++) out[i].chunk[k] = 12345.0f;
    res[i] = (gw_result_t){.chunk = out[i].chunk, .chunk_norm = out[i].norm, .codes = out[i].codes};
  }
  int rc = gw_policy_decode(p, obs, n, prm, res);
  for (int i = 0; i < n; i++) out[i].r = res[i];
  return rc;
}

static int s_codes_eq(const s_res_t *a, const s_res_t *b, int lg) {
  return memcmp(a->codes, b->codes, sizeof(int32_t) * lg) == 0;
}

/* Replays the spec rounds from the per-layer acceptance and checks forwards and proposals against it. */
static int s_accounting_ok(const gw_stats_t *s, int L, int gamma, int *accepted_total) {
  int prop[MAXL] = {0}, rounds = 0, acc = 0;
  for (int p = 1; p < L;) {
    int m = gamma < L - p ? gamma : L - p, k = 0;
    while (k < m && s->layers_accepted[p + k] == 1) k++;
    for (int j = 0; j < m; j++) prop[p + j]++;
    acc += k;
    rounds++;
    p = p + k < L ? p + k + 1 : L;
  }
  *accepted_total = acc;
  for (int l = 0; l < L; l++) {
    if (s->layers_proposed[l] != prop[l]) return 0;
    if (s->layers_accepted[l] > 1 || s->layers_accepted[l] > s->layers_proposed[l]) return 0;
  }
  return s->main_forwards == 1 + rounds && s->draft_forwards == rounds;
}

/* ---- suites ------------------------------------------------------------------------------------ */
static void s_suite_load(void) {
  int rc;
  gw_policy_t *p = s_open("exact", "libero_spatial", &rc);
  CHECK(rc == GW_OK && p, "open exact: %d %s", rc, gw_errmsg());
  if (p) {
    const gw_manifest_t *m = gw_policy_manifest(p);
    CHECK(m->layers == 8 && m->groups == 4 && m->levels == 9 && m->chunk_horizon == 8 && m->action_dim == 7,
          "rfsq/chunk shape %d %d %d %d %d", m->layers, m->groups, m->levels, m->chunk_horizon, m->action_dim);
    CHECK(m->num_cameras == 2 && strcmp(m->cameras[1], "eye_in_hand") == 0 && m->image_height == 16,
          "cameras");
    CHECK(m->decoding.mode == GW_DECODE_SPEC && m->decoding.gamma == 3 && m->decoding.radii[1] == 1, "defaults");
    CHECK(strcmp(m->unnorm_key, "libero_spatial") == 0 && m->gripper_index == 6, "unnorm_key / gripper");
    CHECK(strncmp(m->content_hash, "sha256:", 7) == 0, "hash %s", m->content_hash);
  }
  gw_policy_destroy(&p);
  gw_policy_destroy(&p);
  CHECK(p == NULL, "destroy is idempotent");

  char path[512];
  snprintf(path, sizeof path, "%s/exact", s_dir);
  gw_policy_opts_t opts = {"cuda:0", "libero_spatial", 1, 1, 0, GW_DTYPE_FLOAT32};
  rc = gw_policy_open(path, &opts, &p);
  if (strncmp(s_device, "cuda", 4) == 0)  /* a GPU machine: cuda:0 must open */
    CHECK(rc == GW_OK && p != NULL, "cuda:0 opens on the GPU machine: %d %s", rc, gw_errmsg());
  else
    CHECK(rc == GW_EDEVICE && p == NULL && strstr(gw_errmsg(), "cuda:0"), "cuda: %d %s", rc, gw_errmsg());
  gw_policy_destroy(&p);
  opts.device = "tpu";
  rc = gw_policy_open(path, &opts, &p);
  CHECK(rc == GW_EINVAL && strstr(gw_errmsg(), "tpu"), "bad device: %d %s", rc, gw_errmsg());
  opts.device = "cpu";
  rc = gw_policy_open("/nonexistent/pkg", &opts, &p);
  CHECK(rc == GW_EIO && strstr(gw_errmsg(), "/nonexistent/pkg/manifest.json"), "missing dir: %d %s", rc, gw_errmsg());
  CHECK(strcmp(gw_strerror(GW_EUNNORM), "unnorm_key not in the package's action statistics") == 0 &&
            strcmp(gw_strerror(999), "unknown error") == 0, "strerror");
  CHECK(gw_mode_parse("spec-relaxed") == GW_DECODE_SPEC_RELAXED && gw_mode_parse("fast") == -1 &&
            strcmp(gw_mode_name(GW_DECODE_AR), "ar") == 0, "mode names");

  /* Edited manifests next to links to the real module files. */
  char tmp[] = "/tmp/gw_test_XXXXXX";
  CHECK(mkdtemp(tmp) != NULL, "mkdtemp");
  const char *files[] = {"main.pt", "draft.pt", "tokenizer.pt"};
  for (int i = 0; i < 3; i++) {
    char src[600], dst[600];
    char *abs_dir = realpath(s_dir, NULL);
    snprintf(src, sizeof src, "%s/exact/%s", abs_dir ? abs_dir : s_dir, files[i]);
    free(abs_dir);
    snprintf(dst, sizeof dst, "%s/%s", tmp, files[i]);
    CHECK(symlink(src, dst) == 0, "symlink %s", dst);
  }
  snprintf(path, sizeof path, "%s/exact/manifest.json", s_dir);
  json_error_t jerr;
  struct {
    const char *field, *expect;
    int code;
  } cases[] = {{"content_hash", "hash to sha256:", GW_EHASH},
               {"proprio_dim", "'proprio_dim' is missing", GW_EMANIFEST},
               {"extra", "unknown field 'extra'", GW_EMANIFEST},
               {"rfsq", "'rfsq.levels' = 1 out of range", GW_EMANIFEST}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    json_t *root = json_load_file(path, 0, &jerr);
    CHECK(root != NULL, "load manifest");
    if (!root) continue;
    if (c == 0) json_object_set_new(root, "content_hash", json_string("sha256:0000000000000000000000000000000000000000000000000000000000000000"));
    if (c == 1) json_object_del(root, "proprio_dim");
    if (c == 2) json_object_set_new(root, "extra", json_true());
    if (c == 3) json_object_set_new(json_object_get(root, "rfsq"), "levels", json_integer(1));
    char mpath[600];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
    json_dump_file(root, mpath, 0);
    json_decref(root);
    rc = gw_policy_open(tmp, &opts, &p);
    CHECK(rc == cases[c].code && p == NULL && strstr(gw_errmsg(), cases[c].expect), "%s: %d %s", cases[c].field, rc,
          gw_errmsg());
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
  CHECK(system(cmd) == 0, "cleanup");
}

/* ar codes of every observation, one request per batch. */
static s_res_t s_ar[NOBS];

static void s_ar_reference(gw_policy_t *p) {
  gw_decode_params_t ar = s_params(GW_DECODE_AR, 1, 0);
  for (int i = 0; i < NOBS; i++) {
    int rc = s_decode(p, &i, 1, &ar, &s_ar[i]);
    CHECK(rc == GW_OK && s_ar[i].r.status == GW_OK, "ar %d: %d %s", i, rc, s_ar[i].r.message);
    CHECK(s_ar[i].r.stats.main_forwards == 8 && s_ar[i].r.stats.draft_forwards == 0, "ar forwards %d",
          s_ar[i].r.stats.main_forwards);
  }
}

/* A random batch of n observations (repeats allowed). */
/* Opens a test package with libero_spatial statistics and fills s_ar with its ar codes; NULL (and a failed
 * CHECK) if it does not open. */
static gw_policy_t *s_open_with_ar(const char *pkg) {
  gw_policy_t *p = s_open(pkg, "libero_spatial", NULL);
  CHECK(p != NULL, "open %s: %s", pkg, gw_errmsg());
  if (p) s_ar_reference(p);
  return p;
}

static void s_pick(int *idx, int n) {
  for (int i = 0; i < n; i++) idx[i] = (int)(s_rand() % NOBS);
}

static void s_suite_lossless(void) {
  const char *pkgs[] = {"exact", "poor", "mixed"};
  const int sizes[] = {1, 2, 3, 5, 8, 13, 16, 32};
  const int gammas[] = {1, 2, 3, 5};
  s_res_t out[32];
  for (int k = 0; k < 3; k++) {
    int rc;
    gw_policy_t *p = s_open_with_ar(pkgs[k]);
    if (!p) continue;
    long proposed = 0, accepted = 0, rows = 0, mismatches = 0, bad_accounting = 0, mixed_batches = 0;
    for (int g = 0; g < 4; g++)
      for (int s = 0; s < 8; s++)
        for (int rep = 0; rep < 3; rep++) {
          int idx[32], n = sizes[s];
          s_pick(idx, n);
          gw_decode_params_t prm = s_params(GW_DECODE_SPEC, gammas[g], 0);
          rc = s_decode(p, idx, n, &prm, out);
          CHECK(rc == GW_OK, "decode: %d %s", rc, gw_errmsg());
          int fwd_min = 99, fwd_max = 0;
          for (int i = 0; i < n; i++) {
            const gw_stats_t *st = &out[i].r.stats;
            CHECK(out[i].r.status == GW_OK, "row status %d %s", out[i].r.status, out[i].r.message);
            mismatches += !s_codes_eq(&out[i], &s_ar[idx[i]], 32);
            int acc;
            bad_accounting += !s_accounting_ok(st, 8, gammas[g], &acc);
            for (int l = 0; l < 8; l++) proposed += st->layers_proposed[l];
            accepted += acc;
            rows++;
            CHECK(st->batch_size == n, "batch_size %d", st->batch_size);
            if (st->main_forwards < fwd_min) fwd_min = st->main_forwards;
            if (st->main_forwards > fwd_max) fwd_max = st->main_forwards;
          }
          mixed_batches += fwd_min != fwd_max;  /* rows finished at different rounds: mixed positions */
        }
    CHECK(mismatches == 0, "%s: %ld of %ld spec rows differ from ar", pkgs[k], mismatches, rows);
    CHECK(bad_accounting == 0, "%s: %ld rows whose forwards/proposals do not replay from acceptance", pkgs[k],
          bad_accounting);
    double rate = proposed ? (double)accepted / (double)proposed : 0;
    printf("lossless %-6s rows %ld acceptance %.3f mixed-position batches %ld\n", pkgs[k], rows, rate, mixed_batches);
    if (k == 0) CHECK(rate == 1.0, "exact draft acceptance %.3f", rate);
    if (k == 1) CHECK(rate == 0.0, "poor draft acceptance %.3f", rate);
    if (k == 2) CHECK(rate > 0.1 && rate < 0.9 && mixed_batches > 20, "mixed draft acceptance %.3f, %ld mixed", rate,
                      mixed_batches);
    /* Exact draft, gamma 3, L 8: rounds advance 4 then 3 layers -> 1 prefill + 2 verifies. */
    if (k == 0) {
      int i0 = 0;
      gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
      s_decode(p, &i0, 1, &prm, out);
      CHECK(out[0].r.stats.main_forwards == 3 && out[0].r.stats.draft_forwards == 2, "exact forwards %d/%d",
            out[0].r.stats.main_forwards, out[0].r.stats.draft_forwards);
    }
    if (k == 1) {
      int i0 = 0;
      gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
      s_decode(p, &i0, 1, &prm, out);
      CHECK(out[0].r.stats.main_forwards == 8, "poor draft forwards %d", out[0].r.stats.main_forwards);
    }
    gw_policy_destroy(&p);
  }
}

static void s_suite_paths(void) {
  const char *pkgs[] = {"exact", "poor", "mixed"};
  const int sizes[] = {1, 3, 8, 16, 32};
  const int widths[] = {2, 3, 5};
  const int gammas[] = {1, 3, 5};
  s_res_t out[32], one[32];
  for (int k = 0; k < 3; k++) {
    int rc;
    gw_policy_t *p = s_open_with_ar(pkgs[k]);
    if (!p) continue;
    long rows = 0, mismatches = 0, bad_accounting = 0, acc_w = 0, acc_1 = 0, worse = 0;
    for (int w = 0; w < 3; w++)
      for (int g = 0; g < 3; g++)
        for (int s = 0; s < 5; s++) {
          int idx[32], n = sizes[s];
          s_pick(idx, n);
          gw_decode_params_t prm = s_params(GW_DECODE_SPEC, gammas[g], 0);
          rc = s_decode(p, idx, n, &prm, one);
          CHECK(rc == GW_OK, "width 1 decode: %d %s", rc, gw_errmsg());
          prm.width = widths[w];
          rc = s_decode(p, idx, n, &prm, out);
          CHECK(rc == GW_OK, "width %d decode: %d %s", widths[w], rc, gw_errmsg());
          for (int i = 0; i < n; i++) {
            CHECK(out[i].r.status == GW_OK, "row status %d %s", out[i].r.status, out[i].r.message);
            mismatches += !s_codes_eq(&out[i], &s_ar[idx[i]], 32);
            int a, a1;
            bad_accounting += !s_accounting_ok(&out[i].r.stats, 8, gammas[g], &a);
            s_accounting_ok(&one[i].r.stats, 8, gammas[g], &a1);
            acc_w += a;
            acc_1 += a1;
            worse += out[i].r.stats.main_forwards > one[i].r.stats.main_forwards;
            rows++;
          }
        }
    CHECK(mismatches == 0, "%s: %ld of %ld rows with paths differ from ar", pkgs[k], mismatches, rows);
    CHECK(bad_accounting == 0, "%s: %ld rows whose forwards/proposals do not replay", pkgs[k], bad_accounting);
    printf("paths %-6s rows %ld accepted layers %ld (width 1: %ld), rows needing more forwards %ld\n", pkgs[k], rows,
           acc_w, acc_1, worse);
    if (k == 0) CHECK(acc_w == acc_1, "exact draft: paths change nothing (%ld vs %ld)", acc_w, acc_1);
    if (k == 1) CHECK(acc_1 == 0 && acc_w > 0, "poor draft: width 1 accepts %ld, paths %ld", acc_1, acc_w);
    if (k == 2) CHECK(acc_w > acc_1, "mixed draft: paths accept more (%ld vs %ld)", acc_w, acc_1);
    if (k == 1) {
      /* Path 1 holds main's first layer, its later layers are off again: one accepted + one main layer a
       * round, so layers 1..7 take 4 rounds: 1 prefill + 4 verifies. */
      int i0 = 0;
      gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
      prm.width = 2;
      s_decode(p, &i0, 1, &prm, out);
      CHECK(out[0].r.stats.main_forwards == 5 && out[0].r.stats.draft_forwards == 4, "poor width 2 forwards %d/%d",
            out[0].r.stats.main_forwards, out[0].r.stats.draft_forwards);
      /* Relaxed radius 1 accepts path 0 whole, as with one path, and keeps its codes. */
      int idx[16];
      s_pick(idx, 16);
      gw_decode_params_t r1 = s_params(GW_DECODE_SPEC_RELAXED, 3, 1);
      s_decode(p, idx, 16, &r1, one);
      r1.width = 3;
      s_decode(p, idx, 16, &r1, out);
      int same = 0;
      for (int i = 0; i < 16; i++) same += s_codes_eq(&out[i], &one[i], 32) && out[i].r.stats.main_forwards == 3;
      CHECK(same == 16, "relaxed radius 1: width 3 equals width 1 in %d of 16 rows", same);
    }
    gw_policy_destroy(&p);
  }
  int rc;
  gw_policy_t *p = s_open("no_paths", "libero_spatial", &rc);
  CHECK(p != NULL, "open no_paths: %s", gw_errmsg());
  if (p) {
    int i0 = 0;
    gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
    CHECK(s_decode(p, &i0, 1, &prm, out) == GW_OK, "no_paths, width 1: %s", gw_errmsg());
    prm.width = 2;
    rc = s_decode(p, &i0, 1, &prm, out);
    CHECK(rc == GW_EINVAL && strstr(gw_errmsg(), "propose_paths"), "no_paths, width 2: %d %s", rc, gw_errmsg());
    gw_policy_destroy(&p);
  }
  p = s_open("mixed", "libero_spatial", &rc);
  if (p) {
    int i0 = 0;
    gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
    prm.width = GW_MAX_WIDTH + 1;
    rc = s_decode(p, &i0, 1, &prm, out);
    CHECK(rc == GW_EINVAL && strstr(gw_errmsg(), "width"), "width %d: %d %s", GW_MAX_WIDTH + 1, rc, gw_errmsg());
    gw_policy_destroy(&p);
  }
}

static void s_suite_relaxed(void) {
  s_res_t out[32];
  int32_t am[32 * 32];
  int rc;
  /* Poor draft (always one level off in group 0): radius 0 == spec == ar; radius 1 accepts all, keeps codes. */
  gw_policy_t *p = s_open("poor", "libero_spatial", &rc);
  CHECK(p != NULL, "open poor: %s", gw_errmsg());
  if (p) {
    s_ar_reference(p);
    int idx[32];
    s_pick(idx, 32);
    gw_decode_params_t r0 = s_params(GW_DECODE_SPEC_RELAXED, 3, 0), r1 = s_params(GW_DECODE_SPEC_RELAXED, 3, 1);
    s_decode(p, idx, 32, &r0, out);
    int same = 0;
    for (int i = 0; i < 32; i++) same += s_codes_eq(&out[i], &s_ar[idx[i]], 32);
    CHECK(same == 32, "radius 0 equals spec/ar: %d of 32", same);
    s_decode(p, idx, 32, &r1, out);
    int full = 0, differ = 0;
    for (int i = 0; i < 32; i++) {
      int prop = 0, acc = 0;
      for (int l = 0; l < 8; l++) prop += out[i].r.stats.layers_proposed[l], acc += out[i].r.stats.layers_accepted[l];
      full += prop == acc && out[i].r.stats.main_forwards == 3;
      differ += !s_codes_eq(&out[i], &s_ar[idx[i]], 32);
    }
    CHECK(full == 32, "radius 1 accepts every off-by-one layer: %d of 32", full);
    CHECK(differ == 32, "the draft's codes are kept: %d of 32 differ from ar", differ);
    gw_policy_destroy(&p);
  }
  /* Mixed draft, random radii per layer: every layer within r_l of main's teacher-forced argmax. */
  p = s_open("mixed", "libero_spatial", &rc);
  CHECK(p != NULL, "open mixed: %s", gw_errmsg());
  if (!p) return;
  long violations = 0, rows = 0, accepted = 0;
  for (int t = 0; t < 40; t++) {
    int n = 1 + (int)(s_rand() % 32), idx[32];
    s_pick(idx, n);
    gw_decode_params_t prm = s_params(GW_DECODE_SPEC_RELAXED, 1 + (int)(s_rand() % 4), 0);
    for (int l = 0; l < 8; l++) prm.radii[l] = (int)(s_rand() % 3);
    rc = s_decode(p, idx, n, &prm, out);
    CHECK(rc == GW_OK, "relaxed decode %d", rc);
    gw_obs_t obs[32];
    int32_t codes[32 * 32];
    int status[32];
    for (int i = 0; i < n; i++) {
      obs[i] = s_obs[idx[i]].obs;
      memcpy(codes + i * 32, out[i].codes, sizeof(int32_t) * 32);
    }
    rc = gw_policy_main_argmax(p, obs, n, codes, am, status);
    CHECK(rc == GW_OK, "main_argmax %d %s", rc, gw_errmsg());
    for (int i = 0; i < n; i++) {
      CHECK(status[i] == GW_OK, "argmax row status %d", status[i]);
      for (int l = 0; l < 8; l++) {
        for (int g = 0; g < 4; g++) violations += abs(codes[i * 32 + l * 4 + g] - am[i * 32 + l * 4 + g]) > prm.radii[l];
        accepted += out[i].r.stats.layers_accepted[l];
      }
      rows++;
    }
  }
  CHECK(violations == 0, "%ld codes outside their layer's radius", violations);
  CHECK(accepted > rows, "relaxed accepted %ld layers over %ld rows", accepted, rows);
  gw_policy_destroy(&p);
}

static int s_same_request(const s_res_t *a, const s_res_t *b) {
  if (a->r.status != b->r.status || !s_codes_eq(a, b, 32)) return 0;
  for (int k = 0; k < 56; k++)
    if (fabsf(a->chunk[k] - b->chunk[k]) > 1e-6f || fabsf(a->norm[k] - b->norm[k]) > 1e-6f) return 0;
  const gw_stats_t *x = &a->r.stats, *y = &b->r.stats;
  return x->main_forwards == y->main_forwards && x->draft_forwards == y->draft_forwards &&
         memcmp(x->layers_proposed, y->layers_proposed, sizeof x->layers_proposed) == 0 &&
         memcmp(x->layers_accepted, y->layers_accepted, sizeof x->layers_accepted) == 0;
}

static void s_suite_batching(void) {
  int rc;
  gw_policy_t *p = s_open("mixed", "libero_spatial", &rc);
  CHECK(p != NULL, "open mixed: %s", gw_errmsg());
  if (!p) return;
  for (int mode = 0; mode < 3; mode++) {
    gw_decode_params_t prm = s_params(mode, 3, 1);
    static s_res_t alone[NOBS];
    for (int i = 0; i < NOBS; i++) s_decode(p, &i, 1, &prm, &alone[i]);
    long differ = 0, rows = 0;
    s_res_t out[32];
    for (int t = 0; t < 30; t++) {
      int n = 1 + (int)(s_rand() % 32), idx[32];
      s_pick(idx, n);
      s_decode(p, idx, n, &prm, out);
      for (int i = 0; i < n; i++, rows++) differ += !s_same_request(&out[i], &alone[idx[i]]);
    }
    CHECK(differ == 0, "%s: %ld of %ld requests changed with their batch", gw_mode_name(mode), differ, rows);
  }
  /* A neighbour with a wrong image size fails alone. */
  gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
  s_res_t one[4], all[4];
  int idx[4] = {3, 4, 5, 6};
  for (int i = 0; i < 4; i++) s_decode(p, &idx[i], 1, &prm, &one[i]);
  s_obs[5].obs.image_height = 32;
  s_decode(p, idx, 4, &prm, all);
  s_obs[5].obs.image_height = 16;
  CHECK(all[2].r.status == GW_EINPUT, "bad row status %d", all[2].r.status);
  CHECK(s_same_request(&all[0], &one[0]) && s_same_request(&all[1], &one[1]) && s_same_request(&all[3], &one[3]),
        "neighbours of a failed request are unchanged");
  gw_policy_destroy(&p);
}

static void s_suite_errors(void) {
  int rc;
  gw_policy_t *p = s_open("no_verify", "libero_spatial", &rc);
  CHECK(rc == GW_EMODULE && !p && strstr(gw_errmsg(), "main module has no method 'verify'"), "no verify: %d %s", rc,
        gw_errmsg());
  p = s_open("bad_shape", "libero_spatial", &rc);
  CHECK(rc == GW_ESHAPE && !p && strstr(gw_errmsg(), "tokenizer.decode chunk: shape [2, 9, 7], manifest says [2, 8, 7]"),
        "bad shape: %d %s", rc, gw_errmsg());
  p = s_open("exact", "libero_goal", &rc);
  CHECK(rc == GW_EUNNORM && !p && strstr(gw_errmsg(), "'libero_goal'") && strstr(gw_errmsg(), "libero_spatial") &&
            strstr(gw_errmsg(), "bridge_orig"),
        "unknown unnorm_key: %d %s", rc, gw_errmsg());
  p = s_open("exact", NULL, &rc);
  CHECK(rc == GW_EUNNORM && !p, "no unnorm_key: %d %s", rc, gw_errmsg());

  /* NaN for one request: that request fails, the others decode as usual, its chunk is untouched. */
  p = s_open("nan", "libero_spatial", &rc);
  CHECK(p != NULL, "open nan: %d %s", rc, gw_errmsg());
  gw_policy_t *ref = s_open("exact", "libero_spatial", &rc);
  if (p && ref) {
    for (int mode = 0; mode < 3; mode++) {
      gw_decode_params_t prm = s_params(mode, 3, 0);
      int idx[4] = {7, 8, 9, 10};
      s_res_t out[4], exp[4];
      s_decode(ref, idx, 4, &prm, exp);
      float keep = s_obs[9].proprio[0];
      s_obs[9].proprio[0] = 1000.0f;
      rc = s_decode(p, idx, 4, &prm, out);
      s_obs[9].proprio[0] = keep;
      CHECK(rc == GW_OK, "nan batch rc %d", rc);
      CHECK(out[2].r.status == GW_ENONFINITE && strstr(out[2].r.message, "NaN") && out[2].chunk[0] == 12345.0f,
            "nan row: %d '%s' %f", out[2].r.status, out[2].r.message, out[2].chunk[0]);
      CHECK(out[0].r.status == GW_OK && s_same_request(&out[0], &exp[0]) && s_same_request(&out[3], &exp[3]),
            "rows beside the NaN row are unaffected");
      /* main.verify's hidden states NaN, its logits finite: spec rounds fail the row (the draft would read
       * them); ar never calls verify, so its row decodes. */
      s_obs[9].proprio[0] = -1000.0f;
      rc = s_decode(p, idx, 4, &prm, out);
      s_obs[9].proprio[0] = keep;
      CHECK(rc == GW_OK, "nan-hidden batch rc %d", rc);
      if (mode == GW_DECODE_AR)
        CHECK(out[2].r.status == GW_OK, "ar, NaN only in verify's hidden: status %d '%s'", out[2].r.status,
              out[2].r.message);
      else
        CHECK(out[2].r.status == GW_ENONFINITE && strstr(out[2].r.message, "main.verify") &&
                  out[2].chunk[0] == 12345.0f,
              "%s, NaN in verify's hidden: %d '%s'", gw_mode_name(mode), out[2].r.status, out[2].r.message);
      CHECK(out[0].r.status == GW_OK && s_same_request(&out[0], &exp[0]) && s_same_request(&out[3], &exp[3]),
            "rows beside the NaN-hidden row are unaffected");
    }
    /* Wrong image size: that request, with a message naming both sizes. */
    int i0 = 11;
    s_res_t o;
    gw_decode_params_t prm = s_params(GW_DECODE_AR, 1, 0);
    s_obs[11].obs.image_width = 15;
    rc = s_decode(p, &i0, 1, &prm, &o);
    s_obs[11].obs.image_width = 16;
    CHECK(rc == GW_OK && o.r.status == GW_EINPUT && strstr(o.r.message, "16x15, model expects 2 x 16x16"),
          "wrong image size: %d '%s'", o.r.status, o.r.message);
    prm.mode = 7;
    rc = s_decode(p, &i0, 1, &prm, &o);
    CHECK(rc == GW_EINVAL && o.r.status == GW_EINVAL, "bad mode: %d", rc);
  }
  gw_policy_destroy(&p);

  /* Unnormalization: q01/q99 of the chosen key for masked dims, gripper -> -1 / +1. */
  if (ref) {
    char path[512];
    snprintf(path, sizeof path, "%s/exact/manifest.json", s_dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *st = json_object_get(json_object_get(root, "action_stats"), "libero_spatial");
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7}, bad = 0, grip_open = 0, grip_close = 0;
    s_res_t out[8];
    gw_decode_params_t prm = s_params(GW_DECODE_SPEC, 3, 0);
    s_decode(ref, idx, 8, &prm, out);
    for (int i = 0; i < 8; i++)
      for (int h = 0; h < 8; h++)
        for (int a = 0; a < 7; a++) {
          float x = out[i].norm[h * 7 + a], y = out[i].chunk[h * 7 + a];
          if (a == 6) {
            bad += y != (x > 0 ? 1.0f : -1.0f);
            grip_open += y == -1.0f, grip_close += y == 1.0f;
            continue;
          }
          double lo = json_number_value(json_array_get(json_object_get(st, "q01"), a));
          double hi = json_number_value(json_array_get(json_object_get(st, "q99"), a));
          double xc = x < -1 ? -1 : x > 1 ? 1 : x;
          bad += fabs(y - (0.5 * (xc + 1) * (hi - lo) + lo)) > 1e-5;
        }
    CHECK(bad == 0, "%d unnormalized values disagree with q01/q99 and the gripper convention", bad);
    CHECK(grip_open > 0 && grip_close > 0, "gripper takes both values (%d open, %d close)", grip_open, grip_close);

    /* Switching the statistics: bridge_orig's q01/q99 for the same normalized chunk; an unknown key is
     * refused with the keys listed and leaves the statistics as they were. */
    const gw_manifest_t *m = gw_policy_manifest(ref);
    CHECK(m->num_unnorm_keys == 2 && !strcmp(m->unnorm_keys[0], "libero_spatial") &&
              !strcmp(m->unnorm_keys[1], "bridge_orig"),
          "manifest lists its unnorm_keys (%d)", m->num_unnorm_keys);
    int rc = gw_policy_set_unnorm_key(ref, "libero_goal");
    CHECK(rc == GW_EUNNORM && strstr(gw_errmsg(), "'libero_goal'") && strstr(gw_errmsg(), "bridge_orig") &&
              !strcmp(m->unnorm_key, "libero_spatial"),
          "unknown key refused: %d %s", rc, gw_errmsg());
    CHECK(gw_policy_set_unnorm_key(ref, "bridge_orig") == GW_OK && !strcmp(m->unnorm_key, "bridge_orig"),
          "switch to bridge_orig: %s", gw_errmsg());
    json_t *st2 = json_object_get(json_object_get(root, "action_stats"), "bridge_orig");
    s_res_t out2[8];
    s_decode(ref, idx, 8, &prm, out2);
    int bad2 = 0;
    for (int i = 0; i < 8; i++)
      for (int k = 0; k < 8 * 7; k++) {
        int a = k % 7;
        if (a == 6) continue;
        double lo = json_number_value(json_array_get(json_object_get(st2, "q01"), a));
        double hi = json_number_value(json_array_get(json_object_get(st2, "q99"), a));
        double x = out2[i].norm[k], xc = x < -1 ? -1 : x > 1 ? 1 : x;
        bad2 += out2[i].norm[k] != out[i].norm[k] || fabs(out2[i].chunk[k] - (0.5 * (xc + 1) * (hi - lo) + lo)) > 1e-5;
      }
    CHECK(bad2 == 0, "%d values disagree with bridge_orig's statistics after the switch", bad2);
    json_decref(root);
  }
  gw_policy_destroy(&ref);
}

/* bfloat16 and float16 (main and draft under autocast): spec stays equal to ar at that precision, in every batch
 * composition tried, with forwards that replay from the acceptance; spec-relaxed at radius 0 equals spec; chunks
 * are finite; the names parse both ways. */
static void s_suite_precision(void) {
  CHECK(gw_dtype_parse("float32") == GW_DTYPE_FLOAT32 && gw_dtype_parse("bfloat16") == GW_DTYPE_BFLOAT16 &&
            gw_dtype_parse("float16") == GW_DTYPE_FLOAT16 && gw_dtype_parse("fp16") == -1 && gw_dtype_parse(NULL) == -1,
        "gw_dtype_parse");
  CHECK(strcmp(gw_dtype_name(GW_DTYPE_BFLOAT16), "bfloat16") == 0 && strcmp(gw_dtype_name(9), "?") == 0,
        "gw_dtype_name");
  int rc;
  s_dtype = 7;
  gw_policy_t *bad = s_open("mixed", "libero_spatial", &rc);
  CHECK(rc == GW_EINVAL && bad == NULL && strstr(gw_errmsg(), "dtype 7"), "dtype 7: %d %s", rc, gw_errmsg());
  const int dtypes[] = {GW_DTYPE_BFLOAT16, GW_DTYPE_FLOAT16};
  const int sizes[] = {1, 3, 8, 16, 32};
  s_res_t out[32];
  static s_res_t f32[NOBS];  /* ar in float32: a lower precision must change some codes, and no chunk of equal codes */
  s_dtype = GW_DTYPE_FLOAT32;
  gw_policy_t *p32 = s_open_with_ar("mixed");
  if (!p32) return;
  memcpy(f32, s_ar, sizeof f32);
  gw_policy_destroy(&p32);
  for (int d = 0; d < 2; d++) {
    s_dtype = dtypes[d];
    gw_policy_t *p = s_open_with_ar("mixed");
    if (!p) continue;
    CHECK(gw_policy_dtype(p) == dtypes[d], "gw_policy_dtype %d", gw_policy_dtype(p));
    int changed = 0, same = 0, chunk_ne = 0;
    for (int i = 0; i < NOBS; i++) {
      if (!s_codes_eq(&f32[i], &s_ar[i], 32)) {
        changed++;
        continue;
      }
      same++;  /* the same codes: tokenizer.decode runs in float32 at every precision, so the same chunk */
      chunk_ne += memcmp(f32[i].norm, s_ar[i].norm, sizeof f32[i].norm) != 0 ||
                  memcmp(f32[i].chunk, s_ar[i].chunk, sizeof f32[i].chunk) != 0;
    }
    printf("precision %-8s ar codes differ from float32 ar in %d of %d observations\n", gw_dtype_name(dtypes[d]),
           changed, NOBS);
    CHECK(changed > 0, "%s changed no ar code: is the precision applied?", gw_dtype_name(dtypes[d]));
    CHECK(same > 0 && chunk_ne == 0, "%s: %d of %d observations with float32's codes got another chunk (the "
          "tokenizer must run in float32)", gw_dtype_name(dtypes[d]), chunk_ne, same);
    long rows = 0, mismatches = 0, bad_accounting = 0, relaxed_ne = 0, accepted = 0, nonfinite = 0;
    for (int g = 1; g <= 5; g += 2)
      for (int s = 0; s < 5; s++) {
        int idx[32], n = sizes[s];
        s_pick(idx, n);
        gw_decode_params_t prm = s_params(GW_DECODE_SPEC, g, 0);
        rc = s_decode(p, idx, n, &prm, out);
        CHECK(rc == GW_OK, "%s spec decode: %d %s", gw_dtype_name(dtypes[d]), rc, gw_errmsg());
        for (int i = 0; i < n; i++) {
          CHECK(out[i].r.status == GW_OK, "row status %d %s", out[i].r.status, out[i].r.message);
          mismatches += !s_codes_eq(&out[i], &s_ar[idx[i]], 32);
          int acc;
          bad_accounting += !s_accounting_ok(&out[i].r.stats, 8, g, &acc);
          accepted += acc;
          for (int k = 0; k < 8 * 7; k++) nonfinite += !isfinite(out[i].chunk[k]);
          rows++;
        }
        prm.mode = GW_DECODE_SPEC_RELAXED;
        rc = s_decode(p, idx, n, &prm, out);
        CHECK(rc == GW_OK, "%s relaxed decode: %d %s", gw_dtype_name(dtypes[d]), rc, gw_errmsg());
        for (int i = 0; i < n; i++) relaxed_ne += !s_codes_eq(&out[i], &s_ar[idx[i]], 32);
      }
    printf("precision %-8s rows %ld, spec != ar %ld, layers accepted %ld\n", gw_dtype_name(dtypes[d]), rows,
           mismatches, accepted);
    CHECK(mismatches == 0, "%s: %ld of %ld spec rows differ from ar", gw_dtype_name(dtypes[d]), mismatches, rows);
    CHECK(bad_accounting == 0, "%s: %ld rows whose forwards do not replay", gw_dtype_name(dtypes[d]), bad_accounting);
    CHECK(relaxed_ne == 0, "%s: radius 0 differs from ar in %ld rows", gw_dtype_name(dtypes[d]), relaxed_ne);
    CHECK(accepted > 0, "%s: the mixed draft accepted no layer", gw_dtype_name(dtypes[d]));
    CHECK(nonfinite == 0, "%s: %ld non-finite chunk values", gw_dtype_name(dtypes[d]), nonfinite);
    gw_policy_destroy(&p);
  }
  s_dtype = GW_DTYPE_FLOAT32;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: gw_policy_test load|lossless|relaxed|paths|batching|errors|precision MODELDIR\n");
    return 2;
  }
  s_dir = argv[2];
  const char *dev = getenv("RSD_TEST_DEVICE");
  if (dev && *dev) s_device = dev;
  for (int i = 0; i < NOBS; i++) s_make_obs(&s_obs[i]);
  if (strcmp(argv[1], "load") == 0) s_suite_load();
  else if (strcmp(argv[1], "lossless") == 0) s_suite_lossless();
  else if (strcmp(argv[1], "relaxed") == 0) s_suite_relaxed();
  else if (strcmp(argv[1], "paths") == 0) s_suite_paths();
  else if (strcmp(argv[1], "batching") == 0) s_suite_batching();
  else if (strcmp(argv[1], "errors") == 0) s_suite_errors();
  else if (strcmp(argv[1], "precision") == 0) s_suite_precision();
  else {
    fprintf(stderr, "unknown suite '%s'\n", argv[1]);
    return 2;
  }
  char name[64];
  snprintf(name, sizeof name, "gw_%s", argv[1]);
  return check_summary(name);
}
