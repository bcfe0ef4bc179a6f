/* config_test.c: unit tests of campaign configs: every shipped config loads, defaults are filled, every
 * error names the right place and says what is allowed, the canonical JSON reads back equal, the
 * resume comparison lists exactly the changed keys, episodes enumerate in the documented order, and
 * docs/config.md names every key.
 *
 *   config_test TESTDATA_DIR CONFIGS_DIR
 *
 * Error cases are data: each TESTDATA_DIR/config_err_*.yaml starts with
 *   # expect: LINE:COLUMN CODE text
 * and must fail with that code, at that place, with a message containing that text. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"

static const char *s_testdata, *s_configs;

static void s_join(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* Loads dir/name; a failure is a test failure. */
static bool s_load(const char *dir, const char *name, co_config_t *c) {
  char path[1024];
  s_join(path, sizeof path, dir, name);
  co_config_error_t err;
  co_config_err_t rc = co_config_load(path, c, &err);
  CHECK(rc == CO_CONFIG_OK, "load %s: %s", path, err.text);
  return rc == CO_CONFIG_OK;
}

static bool s_parse(const char *yaml, co_config_t *c, co_config_error_t *err) {
  return co_config_parse(yaml, strlen(yaml), "inline", c, err) == CO_CONFIG_OK;
}

/* The sorted *.yaml names in dir that start with prefix; returns the count (names are malloc'd). */
static int s_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static size_t s_list(const char *dir, const char *prefix, char **names, size_t cap) {
  DIR *d = opendir(dir);
  CHECK(d != NULL, "cannot open %s", dir);
  if (!d) return 0;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < cap) {
    size_t len = strlen(e->d_name);
    if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0)
      names[n++] = strdup(e->d_name);
  }
  closedir(d);
  qsort(names, n, sizeof names[0], s_cmp_str);
  return n;
}

static void s_free_list(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
}

/* to_json, from_json, equal, and the same JSON again. */
static void s_check_round_trip(const co_config_t *c, const char *what) {
  static char json[CO_CONFIG_JSON_MAX], again[CO_CONFIG_JSON_MAX];
  size_t len = co_config_to_json(c, json, sizeof json);
  CHECK(len > 0 && len < sizeof json && strlen(json) == len, "%s: to_json length %zu", what, len);
  co_config_t back;
  co_config_error_t err;
  co_config_err_t rc = co_config_from_json(json, len, &back, &err);
  CHECK(rc == CO_CONFIG_OK, "%s: from_json: %s\n%s", what, err.text, json);
  if (rc) return;
  CHECK(co_config_equal(c, &back), "%s: round trip differs", what);
  char diff[2048];
  CHECK(co_config_diff(c, &back, diff, sizeof diff) == 0 && diff[0] == '\0', "%s: diff after round trip: %s", what,
        diff);
  co_config_to_json(&back, again, sizeof again);
  CHECK(strcmp(json, again) == 0, "%s: JSON not canonical:\n%s\n%s", what, json, again);
  CHECK(back.baseline == c->baseline, "%s: baseline %d vs %d", what, back.baseline, c->baseline);
}

/* Every episode's LEASE passes the protocol encoder's checks. */
static void s_check_leases(const co_config_t *c, const char *what) {
  msg_buf_t buf = {0};
  uint64_t n = co_config_episodes(c), bad = 0;
  for (uint64_t i = 0; i < n; i++) {
    co_config_episode_t e;
    msg_t m;
    msg_error_t err;
    msg_init(&m, MSG_LEASE, i + 1);
    if (!co_config_episode(c, i, &e)) {
      bad++;
      continue;
    }
    co_config_lease(c, &e, 1, &m.lease);
    if (msg_encode(&m, &buf, &err) != MSG_OK && bad++ == 0)
      fprintf(stderr, "%s: lease %llu: %s\n", what, (unsigned long long)i, err.text);
  }
  CHECK(bad == 0, "%s: %llu leases failed to encode", what, (unsigned long long)bad);
  msg_buf_free(&buf);
}

static void test_shipped_configs(void) {
  char *names[64];
  size_t n = s_list(s_configs, "", names, 64);
  CHECK(n >= 2, "only %zu configs in %s", n, s_configs);
  bool saw_expert = false, saw_sweep = false;
  for (size_t i = 0; i < n; i++) {
    co_config_t c;
    if (!s_load(s_configs, names[i], &c)) continue;
    s_check_round_trip(&c, names[i]);
    s_check_leases(&c, names[i]);
    char stem[256];
    snprintf(stem, sizeof stem, "%.*s", (int)(strlen(names[i]) - 5), names[i]);
    CHECK(strcmp(c.name, stem) == 0, "%s: campaign name '%s' differs from the file name", names[i], c.name);
    if (strcmp(names[i], "libero_spatial_expert.yaml") == 0) {
      saw_expert = true;
      CHECK(c.tasks_count == 2 && c.tasks[0] == 0 && c.tasks[1] == 1, "expert demo tasks");
      CHECK(c.trials == 2, "expert demo trials %u", c.trials);
      CHECK(c.variants_count == 1 && c.variants[0].policy == MSG_POLICY_EXPERT, "expert demo variant");
      CHECK(c.workers.gpu_workers == 0, "expert demo needs no GPU worker (%u)", c.workers.gpu_workers);
      CHECK(c.baseline == -1, "expert demo has no baseline (%d)", c.baseline);
      CHECK(co_config_episodes(&c) == 4, "expert demo episodes %llu", (unsigned long long)co_config_episodes(&c));
    }
    if (strcmp(names[i], "libero_spatial_sweep.yaml") == 0) {
      saw_sweep = true;
      CHECK(c.tasks_count == 10 && c.tasks[9] == 9, "sweep tasks %u", c.tasks_count);
      CHECK(c.trials == 50 && c.max_steps == 220 && c.wait_steps == 10, "sweep trials/steps");
      CHECK(co_config_episodes(&c) == 1500, "sweep episodes %llu", (unsigned long long)co_config_episodes(&c));
      CHECK(c.variants_count == 3, "sweep variants %u", c.variants_count);
      CHECK(strcmp(c.model, "models/rsd-ref-spatial") == 0 && strcmp(c.unnorm_key, "libero_spatial") == 0,
            "sweep model '%s' unnorm_key '%s'", c.model, c.unnorm_key);
      CHECK(c.variants[0].mode == MSG_MODE_AR && c.baseline == 0 && c.variants[0].baseline, "sweep baseline");
      CHECK(c.variants[1].mode == MSG_MODE_SPEC && c.variants[1].has_draft_len && c.variants[1].draft_len == 4,
            "sweep spec");
      CHECK(c.variants[2].mode == MSG_MODE_SPEC_RELAXED && c.variants[2].has_radii, "sweep spec-relaxed");
      CHECK(strcmp(c.output, "runs/libero_spatial_sweep") == 0, "sweep output '%s'", c.output);
    }
  }
  CHECK(saw_expert && saw_sweep, "configs/libero_spatial_expert.yaml and libero_spatial_sweep.yaml exist");
  s_free_list(names, n);
}

static void test_defaults(void) {
  co_config_t c;
  if (!s_load(s_testdata, "config_ok_minimal.yaml", &c)) return;
  CHECK(strcmp(c.name, "minimal") == 0 && strcmp(c.suite, "libero_spatial") == 0, "name, suite");
  CHECK(c.tasks_count == 10, "tasks default all: %u", c.tasks_count);
  for (uint32_t t = 0; t < c.tasks_count; t++) CHECK(c.tasks[t] == t, "tasks[%u] = %u", t, c.tasks[t]);
  CHECK(c.trials == 50, "trials %u", c.trials);
  CHECK(c.max_steps == 220 && c.wait_steps == 10, "suite steps %u %u", c.max_steps, c.wait_steps);
  CHECK(c.replan_every == 8 && c.seed == 0 && c.image_size == 128, "replan/seed/image");
  CHECK(!c.has_model && !c.has_unnorm_key, "no model");
  CHECK(c.variants_count == 1 && strcmp(c.variants[0].name, "expert") == 0, "variant");
  CHECK(!c.variants[0].has_mode && !c.variants[0].has_draft_len && !c.variants[0].has_radii, "expert has no decoding");
  CHECK(c.baseline == -1 && !c.variants[0].baseline, "no ar variant, no baseline");
  CHECK(strcmp(c.output, "runs/minimal") == 0, "output '%s'", c.output);
  CHECK(c.videos == CO_VIDEOS_FAILURES && c.max_videos == 20, "videos");
  CHECK(c.workers.sim_workers == 1 && c.workers.episodes_per_worker == 2, "sim workers");
  CHECK(c.workers.gpu_workers == 0, "expert-only: gpu_workers 0 (%u)", c.workers.gpu_workers);
  CHECK(strcmp(c.workers.device, "auto") == 0, "device '%s'", c.workers.device);
  CHECK(c.workers.max_batch == 16 && c.workers.max_wait_us == 2000, "batching");
  CHECK(c.leases.heartbeat_ms == 1000 && c.leases.liveness == 3 && c.leases.max_attempts == 3, "leases");
  CHECK(strcmp(c.bind.coordinator, "tcp://127.0.0.1:*") == 0 && strcmp(c.bind.broker, "tcp://127.0.0.1:*") == 0 &&
            strcmp(c.bind.broker_gpu, "tcp://127.0.0.1:*") == 0,
        "bind defaults");
  s_check_round_trip(&c, "minimal");

  /* A model variant: one GPU worker by default, and the first ar variant is the baseline. */
  co_config_error_t err;
  const char *yaml = "name: m\nsuite: libero_spatial\nmodel: m\nunnorm_key: k\nvariants:\n"
                     "  - {name: s, mode: spec}\n  - {name: a, mode: ar}\n  - {name: b, mode: ar}\n";
  CHECK(s_parse(yaml, &c, &err), "%s", err.text);
  CHECK(c.workers.gpu_workers == 1, "model variants: gpu_workers 1 (%u)", c.workers.gpu_workers);
  CHECK(c.baseline == 1 && c.variants[1].baseline && !c.variants[0].baseline && !c.variants[2].baseline,
        "baseline = first ar (%d)", c.baseline);
  CHECK(!c.variants[0].has_draft_len, "spec without draft_len: the model's default");
  s_check_round_trip(&c, "model defaults");

  /* model_hash: the package's content hash, only with a model, in the manifest's form. */
  yaml = "name: m\nsuite: libero_spatial\nmodel: m\nunnorm_key: k\nmodel_hash: "
         "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\nvariants: [{name: a, mode: ar}]\n";
  CHECK(s_parse(yaml, &c, &err) && c.has_model_hash && strncmp(c.model_hash, "sha256:0011", 11) == 0, "model_hash: %s",
        err.text);
  s_check_round_trip(&c, "model_hash");
  yaml = "name: m\nsuite: libero_spatial\nmodel: m\nunnorm_key: k\nmodel_hash: "
         "sha256:00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff\nvariants: [{name: a, mode: ar}]\n";
  CHECK(!s_parse(yaml, &c, &err) && err.code == CO_CONFIG_ERR_VALUE && strstr(err.text, "lowercase hex"),
        "upper-case model_hash accepted: %s", err.text);
  yaml = "name: m\nsuite: libero_spatial\nmodel_hash: "
         "sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\nvariants: [{name: e, policy: expert}]\n";
  CHECK(!s_parse(yaml, &c, &err) && err.code == CO_CONFIG_ERR_CONFLICT && strstr(err.text, "no model"),
        "model_hash without model accepted: %s", err.text);

  /* No ar variant: no baseline unless one is named. */
  yaml = "name: m\nsuite: libero_spatial\nmodel: m\nunnorm_key: k\nvariants: [{name: s, mode: spec}]\n";
  CHECK(s_parse(yaml, &c, &err) && c.baseline == -1, "no baseline: %d %s", c.baseline, err.text);

  /* Null for a section means all its defaults; "all" may be quoted. */
  yaml = "name: m\nsuite: libero_spatial\ntasks: 'all'\nworkers:\nleases: ~\nvariants: [{name: e, policy: expert}]\n";
  CHECK(s_parse(yaml, &c, &err) && c.tasks_count == 10 && c.workers.max_batch == 16, "null section: %s", err.text);
}

static void test_full(void) {
  co_config_t c;
  if (!s_load(s_testdata, "config_ok_full.yaml", &c)) return;
  CHECK(strcmp(c.name, "full.run-1") == 0, "name");
  CHECK(c.tasks_count == 3 && c.tasks[0] == 2 && c.tasks[1] == 7 && c.tasks[2] == 9, "tasks sorted");
  CHECK(c.trials == 5 && c.max_steps == 300 && c.wait_steps == 0 && c.replan_every == 4, "numbers");
  CHECK(c.seed == UINT64_MAX && c.image_size == 224, "seed %llu image %u", (unsigned long long)c.seed, c.image_size);
  CHECK(c.has_model && strcmp(c.model, "models/my \"quoted\" model\\v2") == 0, "model '%s'", c.model);
  CHECK(strcmp(c.unnorm_key, "libero_spatial_no_noops") == 0, "unnorm_key");
  CHECK(c.model_dtype == CO_DTYPE_BFLOAT16, "model_dtype %d", (int)c.model_dtype);
  CHECK(c.variants_count == 5, "variants %u", c.variants_count);
  const co_variant_t *v = c.variants;
  CHECK(v[0].has_draft_len && v[0].draft_len == 3 && v[0].mode == MSG_MODE_SPEC, "spec variant");
  CHECK(v[0].has_draft_width && v[0].draft_width == 16 && !v[2].has_draft_width, "draft_width");
  co_config_episode_t e;
  msg_lease_body_t lease;
  co_config_episode(&c, 0, &e); /* variant 0: spec, draft_width 16 */
  co_config_lease(&c, &e, 1, &lease);
  CHECK(lease.has_draft_width && lease.draft_width == 16 && lease.has_draft_len && lease.draft_len == 3,
        "the LEASE carries draft_width");
  co_config_episode(&c, 2, &e); /* variant 2: spec-relaxed, model defaults */
  co_config_lease(&c, &e, 1, &lease);
  CHECK(!lease.has_draft_width, "no draft_width in the config, none in the LEASE");
  CHECK(v[1].policy == MSG_POLICY_MODEL && v[1].mode == MSG_MODE_AR && !v[1].baseline, "ar variant");
  CHECK(v[2].has_radii && v[2].radii_count == 4 && v[2].radii[3] == 3 && !v[2].has_draft_len, "relaxed variant");
  CHECK(c.baseline == 2 && v[2].baseline, "explicit baseline wins over the first ar (%d)", c.baseline);
  CHECK(v[3].policy == MSG_POLICY_EXPERT && !v[3].baseline, "expert variant");
  CHECK(!v[4].has_draft_len && !v[4].has_radii && v[4].mode == MSG_MODE_SPEC_RELAXED, "relaxed with model defaults");
  CHECK(strcmp(c.output, "/tmp/rsd runs/fülł") == 0, "output '%s'", c.output);
  CHECK(c.videos == CO_VIDEOS_NONE && c.max_videos == 0, "videos");
  CHECK(c.workers.sim_workers == 0 && c.workers.episodes_per_worker == 8 && c.workers.gpu_workers == 2 &&
            strcmp(c.workers.device, "cuda:1") == 0 && c.workers.max_batch == 64 && c.workers.max_wait_us == 0,
        "workers");
  CHECK(c.leases.heartbeat_ms == 250 && c.leases.liveness == 10 && c.leases.max_attempts == 5, "leases");
  CHECK(strcmp(c.bind.broker_gpu, "ipc:///tmp/rsd-gpu.sock") == 0, "bind");
  s_check_round_trip(&c, "full");
  s_check_leases(&c, "full");
}

static int s_code_of(const char *name) {
#define S_NAME_(n, num, text) \
  if (strcmp(name, #n) == 0) return num;
  CO_CONFIG_ERRORS(S_NAME_)
#undef S_NAME_
  return -1;
}

static void test_error_files(void) {
  char *names[128];
  size_t n = s_list(s_testdata, "config_err_", names, 128);
  CHECK(n >= 30, "only %zu error cases", n);
  /* The cases the issue asks for, by file. */
  static const char *const required[] = {
      "config_err_unknown_key.yaml", "config_err_type_string_for_int.yaml", "config_err_type_list_for_scalar.yaml",
      "config_err_range.yaml", "config_err_bad_enum.yaml", "config_err_duplicate_variant.yaml",
      "config_err_radii_on_ar.yaml", "config_err_missing_model.yaml", "config_err_task_range.yaml",
      "config_err_empty_variants.yaml", "config_err_syntax.yaml"};
  for (size_t r = 0; r < sizeof required / sizeof required[0]; r++) {
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= strcmp(names[i], required[r]) == 0;
    CHECK(found, "missing error case %s", required[r]);
  }
  for (size_t i = 0; i < n; i++) {
    char path[1024], first[1024] = "";
    s_join(path, sizeof path, s_testdata, names[i]);
    FILE *f = fopen(path, "r");
    if (f) {
      if (!fgets(first, sizeof first, f)) first[0] = '\0';
      fclose(f);
    }
    first[strcspn(first, "\n")] = '\0';
    unsigned line = 0, column = 0;
    char code[32] = "";
    int used = 0;
    if (sscanf(first, "# expect: %u:%u %31s %n", &line, &column, code, &used) != 3 || used == 0) {
      CHECK(false, "%s: first line is not '# expect: LINE:COLUMN CODE text'", names[i]);
      continue;
    }
    const char *text = first + used;
    co_config_t c;
    co_config_error_t err;
    co_config_err_t rc = co_config_load(path, &c, &err);
    CHECK((int)rc == s_code_of(code), "%s: code %d (%s), expected %s: %s", names[i], rc, co_config_strerror(rc), code,
          err.text);
    CHECK(err.line == line && err.column == column, "%s: at %u:%u, expected %u:%u: %s", names[i], err.line,
          err.column, line, column, err.text);
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s:%u:%u: ", path, line, column);
    CHECK(strncmp(err.text, prefix, strlen(prefix)) == 0, "%s: message does not start with '%s': %s", names[i],
          prefix, err.text);
    CHECK(strstr(err.text, text) != NULL, "%s: message\n  %s\nlacks\n  %s", names[i], err.text, text);
    if (getenv("RSD_SHOW_ERRORS")) printf("%s\n", err.text);
  }
  s_free_list(names, n);
}

static void test_other_errors(void) {
  co_config_t c;
  co_config_error_t err;
  char path[1024];
  s_join(path, sizeof path, s_testdata, "config_no_such_file.yaml");
  CHECK(co_config_load(path, &c, &err) == CO_CONFIG_ERR_IO && strstr(err.text, path) &&
            strstr(err.text, "No such file") && err.line == 0,
        "missing file: %s", err.text);
  CHECK(co_config_load(s_testdata, &c, &err) == CO_CONFIG_ERR_IO && strstr(err.text, "cannot read"),
        "directory: %s", err.text);
  CHECK(co_config_load(path, &c, NULL) == CO_CONFIG_ERR_IO, "err is nullable");

  /* Invalid UTF-8 is a reader error, placed by line and column too. */
  const char *bad = "name: x\nsuite: \xff\n";
  CHECK(co_config_parse(bad, strlen(bad), "bytes", &c, &err) == CO_CONFIG_ERR_SYNTAX && err.line == 2 &&
            strncmp(err.text, "bytes:2:", 8) == 0,
        "invalid UTF-8: %s", err.text);
  /* Embedded NUL and control characters in strings are refused (the journal's JSON could not hold them). */
  const char *ctl = "name: x\nsuite: libero_spatial\noutput: \"runs/a\\tb\"\nvariants: [{name: e, policy: expert}]\n";
  CHECK(!s_parse(ctl, &c, &err) && err.code == CO_CONFIG_ERR_VALUE && strstr(err.text, "output: ") &&
            strstr(err.text, "control character") && err.line == 3,
        "control character: %s", err.text);
  /* Too long for the LEASE field it travels in. */
  char yaml[1024];
  snprintf(yaml, sizeof yaml,
           "name: x\nsuite: libero_spatial\nunnorm_key: %0129d\nvariants: [{name: e, policy: expert}]\n", 0);
  CHECK(!s_parse(yaml, &c, &err) && strstr(err.text, "is 129 bytes long (at most 128)"), "long: %s", err.text);
  /* A stored config that was cut off or edited is refused like any config. */
  static char json[CO_CONFIG_JSON_MAX];
  if (!s_load(s_configs, "libero_spatial_sweep.yaml", &c)) return;
  size_t len = co_config_to_json(&c, json, sizeof json);
  co_config_t back;
  CHECK(co_config_from_json(json, len / 2, &back, &err) == CO_CONFIG_ERR_SYNTAX &&
            strncmp(err.text, "stored config:", 14) == 0,
        "truncated JSON: %s", err.text);
  char *at = strstr(json, "\"trials\"");
  if (at) memcpy(at, "\"trails\"", 8);
  CHECK(co_config_from_json(json, len, &back, &err) == CO_CONFIG_ERR_UNKNOWN_KEY, "edited JSON: %s", err.text);
  CHECK(strcmp(co_config_strerror(CO_CONFIG_ERR_CONFLICT), "keys that contradict each other") == 0 &&
            strcmp(co_config_strerror((co_config_err_t)77), "unknown error code") == 0,
        "strerror");
}

static void test_json(void) {
  co_config_t c;
  if (!s_load(s_configs, "libero_spatial_sweep.yaml", &c)) return;
  static char json[CO_CONFIG_JSON_MAX];
  size_t len = co_config_to_json(&c, json, sizeof json);
  /* Stable order, effective values, absent optional values as null. */
  const char *order[] = {"\"name\": \"libero_spatial_sweep\"", "\"suite\": \"libero_spatial\"",
                         "\"tasks\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "\"trials\": 50", "\"max_steps\": 220",
                         "\"seed\": 0", "\"model\": \"models/rsd-ref-spatial\"",
                         ("{\"name\": \"ar\", \"policy\": \"model\", \"mode\": \"ar\", \"draft_len\": null, \"draft_width\": null, "
                          "\"radii\": null, \"baseline\": true}"),
                         "\"radii\": [0, 1, 1, 2]", "\"output\": \"runs/libero_spatial_sweep\"",
                         "\"videos\": \"failures\"",
                         "\"workers\": {", "\"leases\": {", "\"bind\": {", "\"broker_gpu\": \"tcp://127.0.0.1:*\""};
  const char *from = json;
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    const char *at = strstr(from, order[i]);
    CHECK(at != NULL, "JSON lacks (in order) %s:\n%s", order[i], json);
    if (at) from = at;
  }
  /* snprintf-like: a short buffer gets a NUL-terminated prefix and the full length. */
  char small[40];
  CHECK(co_config_to_json(&c, small, sizeof small) == len && strlen(small) == sizeof small - 1 &&
            strncmp(small, json, sizeof small - 1) == 0,
        "short buffer");
  CHECK(co_config_to_json(&c, NULL, 0) == len, "length only");

  /* A config stored before model_dtype existed reads back as float32 and equals the same config now. */
  const char *key = "  \"model_dtype\": \"float32\",\n";
  char *at = strstr(json, key);
  CHECK(at != NULL, "JSON lacks %s", key);
  if (at) {
    static char old[CO_CONFIG_JSON_MAX];
    snprintf(old, sizeof old, "%.*s%s", (int)(at - json), json, at + strlen(key));
    co_config_t back;
    co_config_error_t e;
    CHECK(co_config_from_json(old, strlen(old), &back, &e) == CO_CONFIG_OK, "stored JSON without model_dtype: %s",
          e.text);
    CHECK(back.model_dtype == CO_DTYPE_FLOAT32 && co_config_equal(&back, &c), "a config stored without "
          "model_dtype differs from the same config loaded now");
  }

  /* The largest config there can be still fits CO_CONFIG_JSON_MAX (strings of quotes double in size). */
  co_config_t big;
  memset(&big, 0, sizeof big);
  memset(big.name, 'n', sizeof big.name - 1);
  memset(big.suite, 's', sizeof big.suite - 1);
  big.tasks_count = CO_MAX_TASKS;
  for (uint32_t i = 0; i < CO_MAX_TASKS; i++) big.tasks[i] = 99999;
  big.trials = big.max_steps = big.wait_steps = big.replan_every = big.image_size = UINT32_MAX;
  big.seed = UINT64_MAX;
  big.model_dtype = CO_DTYPE_BFLOAT16;
  big.has_model = big.has_unnorm_key = true;
  memset(big.model, '"', sizeof big.model - 1);
  memset(big.unnorm_key, '\\', sizeof big.unnorm_key - 1);
  big.variants_count = CO_MAX_VARIANTS;
  for (uint32_t i = 0; i < CO_MAX_VARIANTS; i++) {
    co_variant_t *v = &big.variants[i];
    memset(v->name, 'v', sizeof v->name - 1);
    v->policy = MSG_POLICY_MODEL;
    v->has_mode = v->has_draft_len = v->has_radii = true;
    v->mode = MSG_MODE_SPEC_RELAXED;
    v->draft_len = UINT32_MAX;
    v->radii_count = MSG_MAX_LAYERS;
    for (uint32_t j = 0; j < MSG_MAX_LAYERS; j++) v->radii[j] = UINT32_MAX;
    v->baseline = true;
  }
  memset(big.output, '"', sizeof big.output - 1);
  big.videos = CO_VIDEOS_FAILURES;
  big.max_videos = UINT32_MAX;
  big.workers = (co_workers_t){UINT32_MAX, UINT32_MAX, UINT32_MAX, "", UINT32_MAX, UINT32_MAX};
  memset(big.workers.device, 'd', sizeof big.workers.device - 1);
  big.leases = (co_leases_t){UINT32_MAX, UINT32_MAX, UINT32_MAX};
  memset(big.bind.coordinator, '"', sizeof big.bind.coordinator - 1);
  memset(big.bind.broker, '"', sizeof big.bind.broker - 1);
  memset(big.bind.broker_gpu, '"', sizeof big.bind.broker_gpu - 1);
  size_t biglen = co_config_to_json(&big, NULL, 0);
  CHECK(biglen < CO_CONFIG_JSON_MAX, "largest JSON is %zu bytes, CO_CONFIG_JSON_MAX is %d", biglen,
        CO_CONFIG_JSON_MAX);

  /* The same campaign written differently is the same config. */
  co_config_t a, b;
  co_config_error_t err;
  const char *ya = "name: x\nsuite: libero_spatial\ntasks: all\nvariants: [{name: e, policy: expert}]\n";
  const char *yb = "# other spelling\nsuite: 'libero_spatial'\nname: \"x\"\ntasks: [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]\n"
                   "trials: 50\noutput: runs/x\nvariants:\n  - name: e\n    policy: expert\n    mode: ~\n"
                   "    baseline: false\nworkers: {gpu_workers: 0}\n";
  CHECK(s_parse(ya, &a, &err) && s_parse(yb, &b, &err), "%s", err.text);
  CHECK(co_config_equal(&a, &b), "equivalent spellings differ");
}

static void test_diff(void) {
  co_config_t a, b;
  if (!s_load(s_configs, "libero_spatial_sweep.yaml", &a)) return;
  char out[4096];

  b = a;
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 0 && out[0] == '\0', "identical: '%s'", out);

  b = a;
  b.trials = 20;
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 1, "trials forbids");
  CHECK(strcmp(out, "trials: 50 -> 20\n") == 0, "trials line: '%s'", out);

  /* Worker counts, devices, batching, output, videos, bind, heartbeats: listed, but resuming is allowed. */
  b = a;
  b.workers.sim_workers = 2;
  snprintf(b.workers.device, sizeof b.workers.device, "cpu");
  b.workers.max_batch = 8;
  snprintf(b.output, sizeof b.output, "/scratch/sweep");
  b.videos = CO_VIDEOS_ALL;
  b.leases.liveness = 5;
  snprintf(b.bind.coordinator, sizeof b.bind.coordinator, "tcp://*:5555");
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 0, "operational changes allow resuming:\n%s", out);
  CHECK(strcmp(out,
               "output: \"runs/libero_spatial_sweep\" -> \"/scratch/sweep\" (may change on resume)\n"
               "videos: \"failures\" -> \"all\" (may change on resume)\n"
               "workers.sim_workers: 8 -> 2 (may change on resume)\n"
               "workers.device: \"auto\" -> \"cpu\" (may change on resume)\n"
               "workers.max_batch: 16 -> 8 (may change on resume)\n"
               "leases.liveness: 3 -> 5 (may change on resume)\n"
               "bind.coordinator: \"tcp://127.0.0.1:*\" -> \"tcp://*:5555\" (may change on resume)\n") == 0,
        "operational lines:\n%s", out);
  CHECK(!co_config_equal(&a, &b), "not equal");

  /* What is evaluated, and how the policy acts, forbids resuming. */
  b = a;
  b.seed = 7;
  b.variants[2].radii[3] = 3;
  b.variants[1].has_draft_len = false;
  b.leases.max_attempts = 4;
  b.image_size = 256;
  snprintf(b.model, sizeof b.model, "models/other");
  b.workers.gpu_workers = 4;
  b.model_dtype = CO_DTYPE_BFLOAT16;
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 7, "seven forbid:\n%s", out);
  CHECK(strcmp(out,
               "seed: 0 -> 7\n"
               "image_size: 128 -> 256\n"
               "model: \"models/rsd-ref-spatial\" -> \"models/other\"\n"
               "model_dtype: \"float32\" -> \"bfloat16\"\n"
               "variants[1].draft_len: 4 -> null\n"
               "variants[2].radii: [0, 1, 1, 2] -> [0, 1, 1, 3]\n"
               "workers.gpu_workers: 1 -> 4 (may change on resume)\n"
               "leases.max_attempts: 3 -> 4\n") == 0,
        "lines:\n%s", out);

  /* A variant appended after the stored ones may be added (one line); a removed one forbids (every key of
   * it, 7), and so does one that takes the baseline from a stored variant. */
  b = a;
  b.variants_count = 4;
  b.variants[3] = a.variants[0];
  snprintf(b.variants[3].name, sizeof b.variants[3].name, "ar2");
  b.variants[3].baseline = false;
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 0 &&
            strcmp(out, "variants[3]: (absent) -> \"ar2\" (a new variant: may be added on resume)\n") == 0,
        "added variant:\n%s", out);
  CHECK(!co_config_equal(&a, &b), "an added variant is a difference");
  CHECK(co_config_diff(&b, &a, out, sizeof out) == 7 && strstr(out, "variants[3].mode: \"ar\" -> (absent)\n") &&
            strstr(out, "variants[3].name: \"ar2\" -> (absent)\n"),
        "removed variant:\n%s", out);
  b.variants[3].baseline = true;
  b.variants[0].baseline = false;
  CHECK(co_config_diff(&a, &b, out, sizeof out) == 2 && strstr(out, "variants[0].baseline: true -> false\n") &&
            strstr(out, "variants[3]: (absent) -> \"ar2\" (a new variant that becomes the baseline"),
        "an added variant that takes the baseline:\n%s", out);
  /* A stored campaign without a baseline: a new variant may not become one either. */
  co_config_t nb = a;
  for (uint32_t v = 0; v < nb.variants_count; v++) nb.variants[v].baseline = false;
  nb.baseline = -1;
  b = nb;
  b.variants_count = 4;
  b.variants[3] = a.variants[0];
  snprintf(b.variants[3].name, sizeof b.variants[3].name, "ar2");
  b.variants[3].baseline = true;
  b.baseline = 3;
  CHECK(co_config_diff(&nb, &b, out, sizeof out) == 1 &&
            strstr(out, "variants[3]: (absent) -> \"ar2\" (a new variant that becomes the baseline"),
        "a first baseline added:\n%s", out);

  /* Tasks and trials through YAML: fewer tasks forbid. */
  co_config_error_t err;
  co_config_t y1, y2;
  CHECK(s_parse("name: x\nsuite: libero_spatial\nvariants: [{name: e, policy: expert}]\n", &y1, &err) &&
            s_parse("name: x\nsuite: libero_spatial\ntasks: [0, 1]\nvariants: [{name: e, policy: expert}]\n", &y2,
                    &err),
        "%s", err.text);
  CHECK(co_config_diff(&y1, &y2, out, sizeof out) == 1 &&
            strcmp(out, "tasks: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] -> [0, 1]\n") == 0,
        "tasks:\n%s", out);

  /* A short buffer: the count is still exact, the text ends in "...". */
  b = a;
  b.trials = 1;
  b.seed = 1;
  b.replan_every = 4;
  char tiny[24];
  CHECK(co_config_diff(&a, &b, tiny, sizeof tiny) == 3 && strlen(tiny) == sizeof tiny - 1 &&
            strcmp(tiny + sizeof tiny - 5, "...\n") == 0,
        "truncated: '%s'", tiny);
  CHECK(co_config_diff(&a, &b, NULL, 0) == 3, "out is nullable");
}

static void test_episodes(void) {
  co_config_t c;
  if (!s_load(s_configs, "libero_spatial_sweep.yaml", &c)) return;
  uint64_t n = co_config_episodes(&c);
  CHECK(n == 10 * 50 * 3, "episodes %llu", (unsigned long long)n);
  static unsigned char seen[10][50][3];
  memset(seen, 0, sizeof seen);
  uint64_t mismatched = 0;
  for (uint64_t i = 0; i < n; i++) {
    co_config_episode_t e;
    if (!co_config_episode(&c, i, &e)) {
      mismatched++;
      continue;
    }
    if (e.task >= 10 || e.trial >= 50 || e.variant >= 3 || seen[e.task][e.trial][e.variant]++ ||
        co_config_episode_index(&c, e.variant, e.task, e.trial) != (int64_t)i ||
        e.seed != co_config_episode_seed(&c, e.task, e.trial))
      mismatched++;
  }
  CHECK(mismatched == 0, "%llu episodes out of order or repeated", (unsigned long long)mismatched);
  co_config_episode_t e;
  CHECK(!co_config_episode(&c, n, &e), "index past the end");
  /* Trial-major: the first 30 episodes are trial 0 of every task and variant, variants adjacent. */
  for (uint64_t i = 0; i < 30; i++) {
    co_config_episode(&c, i, &e);
    CHECK(e.trial == 0 && e.task == i / 3 && e.variant == i % 3, "episode %llu = (%u, %u, %u)", (unsigned long long)i,
          e.variant, e.task, e.trial);
  }
  co_config_episode(&c, 30, &e);
  CHECK(e.trial == 1 && e.task == 0 && e.variant == 0, "episode 30 starts trial 1");
  CHECK(co_config_episode_index(&c, 3, 0, 0) == -1 && co_config_episode_index(&c, 0, 10, 0) == -1 &&
            co_config_episode_index(&c, 0, 0, 50) == -1,
        "keys outside the campaign");
  /* Seeds: shared by the variants of one (task, trial), different across trials, tasks and campaign seeds. */
  uint64_t s00 = co_config_episode_seed(&c, 0, 0);
  CHECK(s00 != co_config_episode_seed(&c, 0, 1) && s00 != co_config_episode_seed(&c, 1, 0), "seeds differ");
  co_config_t c2 = c;
  c2.seed = 1;
  CHECK(s00 != co_config_episode_seed(&c2, 0, 0), "campaign seed matters");
  CHECK(co_config_variant_find(&c, "spec") == 1 && co_config_variant_find(&c, "nope") == -1, "variant_find");

  /* The LEASE of an episode carries the config's values. */
  msg_lease_body_t lease;
  co_config_episode(&c, 5, &e); /* trial 0, task 1, variant 2 (spec-relaxed) */
  co_config_lease(&c, &e, 2, &lease);
  CHECK(strcmp(lease.campaign, "libero_spatial_sweep") == 0 && strcmp(lease.variant, "spec-relaxed") == 0 &&
            lease.task == 1 && lease.trial == 0 && lease.attempt == 2 && lease.seed == e.seed &&
            lease.max_steps == 220 && lease.wait_steps == 10 && lease.replan_every == 8 && lease.image_size == 128,
        "lease basics");
  CHECK(lease.policy == MSG_POLICY_MODEL && lease.has_mode && lease.mode == MSG_MODE_SPEC_RELAXED &&
            lease.has_draft_len && lease.draft_len == 4 && lease.has_radii && lease.radii_count == 4 &&
            lease.radii[3] == 2 && lease.has_model && strcmp(lease.model, "models/rsd-ref-spatial") == 0 &&
            lease.has_unnorm_key && !lease.has_record_video,
        "lease decoding fields");
  co_config_episode(&c, 0, &e);
  co_config_lease(&c, &e, 1, &lease);
  CHECK(lease.has_mode && lease.mode == MSG_MODE_AR && !lease.has_draft_len && !lease.has_draft_width &&
            !lease.has_radii, "ar lease");
  if (s_load(s_configs, "libero_spatial_expert.yaml", &c)) {
    co_config_episode(&c, 0, &e);
    co_config_lease(&c, &e, 1, &lease);
    CHECK(lease.policy == MSG_POLICY_EXPERT && !lease.has_mode && !lease.has_model && !lease.has_unnorm_key,
          "expert lease");
  }
}

/* docs/config.md (beside configs/) documents every key the canonical JSON has. */
/* workers.device: a list of CUDA devices spreads local GPU workers over them; malformed lists are refused. */
static void test_devices(void) {
  const char *ok[] = {"auto", "cpu", "cuda:0", "cuda:7", "cuda:0,1", "cuda:0,2,5,7", "cuda:3,3"};
  const char *bad[] = {"cuda:", "cuda:0,", "cuda:,1", "cuda:0,,1", "cuda:256", "cuda:0,x", "cuda:01", "gpu:0,1"};
  char y[512];
  co_config_t c;
  co_config_error_t err;
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    snprintf(y, sizeof y, "name: d\nsuite: libero_spatial\nvariants: [{name: e, policy: expert}]\n"
                          "workers: {device: '%s'}\n", ok[i]);
    CHECK(s_parse(y, &c, &err) && strcmp(c.workers.device, ok[i]) == 0, "device '%s' refused: %s", ok[i], err.text);
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(y, sizeof y, "name: d\nsuite: libero_spatial\nvariants: [{name: e, policy: expert}]\n"
                          "workers: {device: '%s'}\n", bad[i]);
    CHECK(!s_parse(y, &c, &err) && strstr(err.text, "workers.device") && strstr(err.text, bad[i]),
          "device '%s' accepted (or the message does not name it: %s)", bad[i], err.text);
  }
}

static void test_docs(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/../docs/config.md", s_configs);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return;
  static char doc[1 << 18];
  size_t n = fread(doc, 1, sizeof doc - 1, f);
  doc[n] = '\0';
  fclose(f);
  co_config_t c;
  if (!s_load(s_testdata, "config_ok_full.yaml", &c)) return;
  static char json[CO_CONFIG_JSON_MAX];
  co_config_to_json(&c, json, sizeof json);
  int keys = 0;
  for (const char *p = json; (p = strchr(p, '"'));) {
    const char *end = strchr(p + 1, '"');
    if (!end) break;
    if (end[1] == ':') {
      char key[80];
      snprintf(key, sizeof key, "`%.*s`", (int)(end - p - 1), p + 1);
      CHECK(strstr(doc, key) != NULL, "docs/config.md does not document %s", key);
      keys++;
    }
    p = end + 1;
  }
  CHECK(keys >= 30, "found %d keys in the JSON", keys);
  for (const co_suite_t *s = co_suites; s->name; s++)
    CHECK(strstr(doc, s->name) != NULL, "suite %s undocumented", s->name);

  /* The full example loads. */
  const char *section = strstr(doc, "## 6. Full example");
  const char *start = section ? strstr(section, "```yaml\n") : NULL;
  const char *end = start ? strstr(start + 8, "```") : NULL;
  CHECK(start && end, "docs/config.md has no full example in section 6");
  if (!start || !end) return;
  co_config_error_t err;
  CHECK(co_config_parse(start + 8, (size_t)(end - start - 8), "docs/config.md example", &c, &err) == CO_CONFIG_OK,
        "%s", err.text);
  CHECK(c.variants_count == 4 && c.baseline == 0 && co_config_episodes(&c) == 2000, "example: %u variants",
        c.variants_count);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s TESTDATA_DIR CONFIGS_DIR\n", argv[0]);
    return 2;
  }
  s_testdata = argv[1];
  s_configs = argv[2];
  test_shipped_configs();
  test_defaults();
  test_full();
  test_error_files();
  test_other_errors();
  test_json();
  test_diff();
  test_episodes();
  test_devices();
  test_docs();
  return check_summary("config_test");
}
