/* model_package_test.c: the coordinator's reading of a package manifest and its checks of a campaign
 * config against it (model_package.c), on manifests this test writes into a temporary directory: the
 * facts read (name, version, hash, image size, layers, levels, chunk length, unnorm_keys), then one
 * config or manifest per refusal, each with the message naming the file, key and value. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "model_package.h"

static char s_dir[] = "/tmp/model_package_test.XXXXXX";

/* Writes <s_dir>/<pkg>/manifest.json with the given text. */
static void s_write(const char *pkg, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", s_dir, pkg);
  mkdir(path, 0755);
  snprintf(path, sizeof path, "%s/%s/manifest.json", s_dir, pkg);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "write %s", path);
  if (f) {
    fputs(text, f);
    fclose(f);
  }
}

/* A manifest with the keys the coordinator reads; image size, layers, stats and decoding gamma as given. */
static void s_manifest_g(const char *pkg, int image, int layers, const char *stats, int gamma) {
  char text[2048];
  snprintf(text, sizeof text,
           "{\"format\": \"rsd-policy\", \"format_version\": 1, \"name\": \"ref-%s\", \"version\": \"1.2.3\",\n"
           " \"content_hash\": \"sha256:%064d\", \"cameras\": [\"agentview\", \"eye_in_hand\"],\n"
           " \"image\": {\"height\": %d, \"width\": %d, \"channels\": 3, \"dtype\": \"uint8\"},\n"
           " \"chunk\": {\"horizon\": 8, \"action_dim\": 7, \"gripper_index\": 6},\n"
           " \"rfsq\": {\"layers\": %d, \"groups\": 4, \"levels\": 9},\n"
           " \"decoding\": {\"mode\": \"spec\", \"gamma\": %d, \"radii\": [%s]},\n"
           " \"action_stats\": {%s}}\n",
           pkg, 7, image, image, layers, gamma, layers == 8 ? "0, 1, 1, 1, 1, 1, 2, 2" : "0, 1", stats);
  s_write(pkg, text);
}

static void s_manifest(const char *pkg, int image, int layers, const char *stats) {
  s_manifest_g(pkg, image, layers, stats, 5);
}

/* Parses a campaign on package `pkg` with `extra` YAML lines and the given variants. */
static bool s_config(co_config_t *c, const char *pkg, const char *extra, const char *variants) {
  char text[2048];
  snprintf(text, sizeof text,
           "name: t\nsuite: libero_spatial\ntasks: [0]\ntrials: 1\nmodel: %s/%s\nunnorm_key: libero_spatial\n%s"
           "variants:\n%s",
           s_dir, pkg, extra, variants);
  co_config_error_t err;
  co_config_err_t rc = co_config_parse(text, strlen(text), "test", c, &err);
  CHECK(rc == CO_CONFIG_OK, "config: %s", err.text);
  return rc == CO_CONFIG_OK;
}

static const char *s_ar = "  - {name: ar, mode: ar}\n";

/* co_package_check must refuse with a message containing both needles. */
static void s_refused(const char *pkg, const char *extra, const char *variants, const char *n1, const char *n2) {
  static co_config_t c;
  if (!s_config(&c, pkg, extra, variants)) return;
  co_package_t p;
  char err[1024] = "";
  int rc = co_package_check(&c, &p, err, sizeof err);
  CHECK(rc == -1 && strstr(err, n1) && strstr(err, n2), "%s: expected a refusal naming '%s' and '%s', got %d '%s'", pkg,
        n1, n2, rc, err);
}

int main(void) {
  CHECK(mkdtemp(s_dir) != NULL, "mkdtemp");
  const char *two = "\"libero_spatial\": {}, \"bridge_orig\": {}";
  s_manifest("good", 128, 8, two);
  static co_config_t c;
  co_package_t p;
  char err[1024] = "";
  if (s_config(&c, "good", "", s_ar)) {
    CHECK(co_package_check(&c, &p, err, sizeof err) == 0, "good package refused: %s", err);
    CHECK(!strcmp(p.name, "ref-good") && !strcmp(p.version, "1.2.3"), "name '%s' version '%s'", p.name, p.version);
    CHECK(!strncmp(p.content_hash, "sha256:000", 10) && strlen(p.content_hash) == 71, "hash '%s'", p.content_hash);
    CHECK(p.image_height == 128 && p.image_width == 128 && p.layers == 8 && p.levels == 9 && p.chunk_horizon == 8,
          "image %ux%u layers %u levels %u horizon %u", p.image_height, p.image_width, p.layers, p.levels,
          p.chunk_horizon);
    CHECK(p.unnorm_count == 2 && !strcmp(p.unnorm_keys[0], "libero_spatial") && !strcmp(p.unnorm_keys[1], "bridge_orig"),
          "unnorm_keys (%u)", p.unnorm_count);
  }
  /* The decoding defaults pinned into the variants that leave them to the model (and only those). */
  if (s_config(&c, "good", "",
               "  - {name: ar, mode: ar}\n  - {name: s, mode: spec}\n  - {name: s4, mode: spec, draft_len: 4, "
               "draft_width: 3}\n  - {name: r, mode: spec-relaxed}\n  - {name: e, policy: expert}\n") &&
      co_package_check(&c, &p, err, sizeof err) == 0) {
    CHECK(p.gamma == 5 && p.width == 1 && p.radii[6] == 2, "decoding defaults: gamma %u width %u", p.gamma, p.width);
    co_package_pin_decoding(&p, &c);
    const co_variant_t *v = c.variants;
    CHECK(!v[0].has_draft_len && !v[0].has_draft_width && !v[0].has_radii, "ar: nothing pinned");
    CHECK(v[1].has_draft_len && v[1].draft_len == 5 && v[1].has_draft_width && v[1].draft_width == 1 &&
              !v[1].has_radii, "spec: gamma and width pinned");
    CHECK(v[2].draft_len == 4 && v[2].draft_width == 3, "spec with its own draft_len / draft_width: kept");
    CHECK(v[3].has_radii && v[3].radii_count == 8 && v[3].radii[0] == 0 && v[3].radii[7] == 2 && v[3].draft_len == 5,
          "spec-relaxed: radii pinned");
    CHECK(!v[4].has_draft_len && !v[4].has_radii, "expert: nothing pinned");
  }
  /* radii one per layer, each below the levels, are accepted */
  if (s_config(&c, "good", "", "  - {name: rel, mode: spec-relaxed, radii: [0, 1, 1, 1, 1, 1, 1, 8]}\n"))
    CHECK(co_package_check(&c, &p, err, sizeof err) == 0, "radii of 8 layers below 9 levels refused: %s", err);

  s_refused("missing", "", s_ar, "cannot read", "missing/manifest.json");
  s_write("badjson", "{\"name\": ");
  s_refused("badjson", "", s_ar, "badjson/manifest.json:", "invalid JSON");
  s_write("noname", "{\"version\": \"1\"}");
  s_refused("noname", "", s_ar, "noname/manifest.json", "'name'");
  s_manifest("goal", 128, 8, "\"libero_goal\": {}, \"bridge_orig\": {}");
  s_refused("goal", "", s_ar, "unnorm_key 'libero_spatial' not in", "have: libero_goal, bridge_orig");
  s_manifest("small", 16, 8, two);
  s_refused("small", "", s_ar, "image_size 128", "16x16");
  s_refused("good", "image_size: 224\n", s_ar, "image_size 224", "128x128");
  s_refused("good", "", "  - {name: rel, mode: spec-relaxed, radii: [1, 1]}\n", "variants[0].radii: 2 values", "8 RFSQ layers");
  s_refused("good", "", "  - {name: ar, mode: ar}\n  - {name: rel, mode: spec-relaxed, radii: [0, 1, 1, 1, 1, 1, 1, 9]}\n",
            "variants[1].radii[7]: 9", "9 levels");
  s_refused("good", "replan_every: 12\n", s_ar, "replan_every 12", "8 actions");
  /* a pinned (or stored) model_hash must be the package's content_hash */
  char same[200], other[200];
  co_package_read(c.model, &p, err, sizeof err);
  snprintf(same, sizeof same, "model_hash: %s\n", p.content_hash);
  if (s_config(&c, "good", same, s_ar))
    CHECK(co_package_check(&c, &p, err, sizeof err) == 0, "the package's own hash refused: %s", err);
  snprintf(other, sizeof other, "model_hash: sha256:%063d1\n", 0);
  s_refused("good", other, s_ar, "model_hash sha256:0000000000000000000000000000000000000000000000000000000000000001 ",
            "changed since the campaign started");
  s_manifest("radii3", 128, 3, two); /* 3 layers, 2 radii */
  s_refused("radii3", "", s_ar, "radii3/manifest.json", "'decoding.radii' must be an array of 3 integers");
  s_manifest_g("gamma17", 128, 8, two, 17); /* more than a LEASE's draft_len can carry */
  s_refused("gamma17", "", s_ar, "gamma17/manifest.json", "'decoding.gamma' 17 (at most 16)");
  s_manifest("nostats", 128, 8, "");
  s_refused("nostats", "", s_ar, "nostats/manifest.json", "action_stats");

  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", s_dir);
  return check_summary("model_package_test");
}
