/* model_package.c: a policy package's manifest.json as the coordinator sees it (see model_package.h).
 * Reads only the keys the coordinator uses; the GPU worker validates the whole package. */
#include "model_package.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int s_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int s_fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* A string at `key` of obj, 1..cap-1 bytes, into out. */
static int s_str(const char *path, json_t *obj, const char *key, char *out, size_t cap, char *err, size_t errlen) {
  json_t *v = json_object_get(obj, key);
  if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap)
    return s_fail(err, errlen, "%s: '%s' must be a string of 1..%zu bytes", path, key, cap - 1);
  snprintf(out, cap, "%s", json_string_value(v));
  return 0;
}

/* An integer at `dotted` ("a.b") of root, in [1, 2^31), into out. */
static int s_uint(const char *path, json_t *root, const char *a, const char *b, uint32_t *out, char *err, size_t errlen) {
  json_t *o = json_object_get(root, a);
  json_t *v = b ? json_object_get(o, b) : o;
  if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
    return s_fail(err, errlen, "%s: '%s%s%s' must be a positive integer", path, a, b ? "." : "", b ? b : "");
  *out = (uint32_t)json_integer_value(v);
  return 0;
}

/* The manifest's default decoding: gamma (1..MSG_MAX_LAYERS), width (optional, 1..MSG_MAX_DRAFT_WIDTH, else
 * 1) and one radius per layer below the levels; the ranges are the ones a LEASE can carry. */
static int s_decoding(const char *path, json_t *root, co_package_t *out, char *err, size_t errlen) {
  json_t *dec = json_object_get(root, "decoding");
  if (!json_is_object(dec)) return s_fail(err, errlen, "%s: 'decoding' must be an object", path);
  out->width = 1;
  if (s_uint(path, root, "decoding", "gamma", &out->gamma, err, errlen) ||
      (json_object_get(dec, "width") && s_uint(path, root, "decoding", "width", &out->width, err, errlen)))
    return -1;
  if (out->gamma > MSG_MAX_LAYERS || out->width > MSG_MAX_DRAFT_WIDTH)
    return s_fail(err, errlen, "%s: 'decoding.gamma' %u (at most %d) or 'decoding.width' %u (at most %d) out of range",
                  path, out->gamma, MSG_MAX_LAYERS, out->width, MSG_MAX_DRAFT_WIDTH);
  json_t *radii = json_object_get(dec, "radii");
  if (out->layers > MSG_MAX_LAYERS || !json_is_array(radii) || json_array_size(radii) != out->layers)
    return s_fail(err, errlen, "%s: 'decoding.radii' must be an array of %u integers (one per RFSQ layer)", path,
                  out->layers);
  for (size_t l = 0; l < out->layers; l++) {
    json_t *r = json_array_get(radii, l);
    if (!json_is_integer(r) || json_integer_value(r) < 0 || json_integer_value(r) >= (json_int_t)out->levels)
      return s_fail(err, errlen, "%s: 'decoding.radii[%zu]' must be an integer in [0, %u)", path, l, out->levels);
    out->radii[l] = (uint32_t)json_integer_value(r);
  }
  return 0;
}

int co_package_read(const char *dir, co_package_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  char path[CO_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  json_error_t jerr;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    if (jerr.line < 1) return s_fail(err, errlen, "model '%s': cannot read %s: %s", dir, path, jerr.text);
    return s_fail(err, errlen, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
  }
  int rc = -1;
  if (!json_is_object(root)) {
    s_fail(err, errlen, "%s: the top level must be an object", path);
  } else if (!s_str(path, root, "name", out->name, sizeof out->name, err, errlen) &&
             !s_str(path, root, "version", out->version, sizeof out->version, err, errlen) &&
             !s_str(path, root, "content_hash", out->content_hash, sizeof out->content_hash, err, errlen) &&
             !s_uint(path, root, "image", "height", &out->image_height, err, errlen) &&
             !s_uint(path, root, "image", "width", &out->image_width, err, errlen) &&
             !s_uint(path, root, "rfsq", "layers", &out->layers, err, errlen) &&
             !s_uint(path, root, "rfsq", "levels", &out->levels, err, errlen) &&
             !s_uint(path, root, "chunk", "horizon", &out->chunk_horizon, err, errlen)) {
    json_t *stats = json_object_get(root, "action_stats");
    const char *key;
    json_t *v;
    if (!json_is_object(stats) || json_object_size(stats) == 0 || json_object_size(stats) > CO_PACKAGE_MAX_KEYS) {
      s_fail(err, errlen, "%s: 'action_stats' must be an object with 1..%d unnorm_keys", path, CO_PACKAGE_MAX_KEYS);
    } else {
      rc = 0;
      json_object_foreach(stats, key, v) {
        (void)v;
        if (strlen(key) >= sizeof out->unnorm_keys[0]) {
          rc = s_fail(err, errlen, "%s: action_stats key '%.40s...' is longer than %zu bytes", path, key,
                      sizeof out->unnorm_keys[0] - 1);
          break;
        }
        snprintf(out->unnorm_keys[out->unnorm_count++], sizeof out->unnorm_keys[0], "%s", key);
      }
    }
    if (rc == 0) rc = s_decoding(path, root, out, err, errlen);
  }
  json_decref(root);
  return rc;
}

int co_package_check(const co_config_t *cfg, co_package_t *out, char *err, size_t errlen) {
  if (co_package_read(cfg->model, out, err, errlen)) return -1;
  char path[CO_PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/manifest.json", cfg->model);
  bool found = false;
  char have[1024] = "";
  size_t k = 0;
  for (uint32_t i = 0; i < out->unnorm_count; i++) {
    found = found || strcmp(out->unnorm_keys[i], cfg->unnorm_key) == 0;
    if (k < sizeof have) k += (size_t)snprintf(have + k, sizeof have - k, "%s%s", i ? ", " : "", out->unnorm_keys[i]);
  }
  if (!found)
    return s_fail(err, errlen, "unnorm_key '%s' not in the action statistics of model '%s' (%s; have: %s)",
                  cfg->unnorm_key, out->name, path, have);
  if (out->image_height != cfg->image_size || out->image_width != cfg->image_size)
    return s_fail(err, errlen, "image_size %u does not match model '%s', which takes %ux%u images (%s)", cfg->image_size,
                  out->name, out->image_height, out->image_width, path);
  if (cfg->replan_every > out->chunk_horizon)
    return s_fail(err, errlen, "replan_every %u is more than the %u actions of a chunk of model '%s' (%s)",
                  cfg->replan_every, out->chunk_horizon, out->name, path);
  for (uint32_t i = 0; i < cfg->variants_count; i++) {
    const co_variant_t *v = &cfg->variants[i];
    if (v->policy != MSG_POLICY_MODEL || !v->has_radii) continue;
    if (v->radii_count != out->layers)
      return s_fail(err, errlen, "variants[%u].radii: %u values, but model '%s' has %u RFSQ layers (%s)", i,
                    v->radii_count, out->name, out->layers, path);
    for (uint32_t l = 0; l < v->radii_count; l++)
      if (v->radii[l] >= out->levels)
        return s_fail(err, errlen, "variants[%u].radii[%u]: %u is not below the %u levels of model '%s' (%s)", i, l,
                      v->radii[l], out->levels, out->name, path);
  }
  if (cfg->has_model_hash && strcmp(cfg->model_hash, out->content_hash) != 0)
    return s_fail(err, errlen,
                  "model_hash %s (the campaign's) but the package %s has content_hash %s: it is another package, "
                  "or it changed since the campaign started (%s)",
                  cfg->model_hash, cfg->model, out->content_hash, path);
  return 0;
}

void co_package_pin_decoding(const co_package_t *pkg, co_config_t *cfg) {
  for (uint32_t i = 0; i < cfg->variants_count; i++) {
    co_variant_t *v = &cfg->variants[i];
    if (v->policy != MSG_POLICY_MODEL || !v->has_mode || v->mode == MSG_MODE_AR) continue;
    if (!v->has_draft_len) v->has_draft_len = true, v->draft_len = pkg->gamma;
    if (!v->has_draft_width) v->has_draft_width = true, v->draft_width = pkg->width;
    if (v->mode == MSG_MODE_SPEC_RELAXED && !v->has_radii) {
      v->has_radii = true;
      v->radii_count = pkg->layers;
      memcpy(v->radii, pkg->radii, sizeof v->radii[0] * pkg->layers);
    }
  }
}
