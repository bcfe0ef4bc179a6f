/* config.c: campaign configs. Parses YAML with libyaml's document API, binds it key by key to
 * co_config_t through one table per section (s_top, s_variant, s_workers, s_leases, s_bind), fills
 * the defaults, runs the checks that span several keys, writes the canonical JSON and compares two
 * configs for resuming. The same tables drive all of these, so a new key is one table row (plus its
 * field in config.h and its line in docs/config.md; config_test checks the docs name every key).
 *
 * The stored form is the canonical JSON, read back through the same YAML parser (JSON is YAML's flow
 * style), so a stored config passes exactly the checks a new one does.
 *
 * This file owns no sockets, files other than the one it is asked to read, or journal state; the
 * coordinator decides what to do with a config, including whether to resume (co_config_diff). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

_Static_assert(sizeof(msg_policy_t) == sizeof(int) && sizeof(msg_mode_t) == sizeof(int) &&
                   sizeof(co_videos_t) == sizeof(int),
               "enum fields are stored as int");

/* ---- names, suites, error texts -------------------------------------------------------------- */
const char *const co_videos_names[] = {"failures", "all", "none", NULL};
const char *const co_dtype_names[] = {"float32", "bfloat16", "float16", NULL};

const co_suite_t co_suites[] = {
    {"libero_spatial", 10, 50, 220, 10},
    {NULL, 0, 0, 0, 0},
};

const co_suite_t *co_suite_find(const char *name) {
  for (const co_suite_t *s = co_suites; s->name; s++)
    if (strcmp(s->name, name) == 0) return s;
  return NULL;
}

const char *co_config_strerror(co_config_err_t code) {
  switch (code) {
    case CO_CONFIG_OK:
      return "ok";
#define S_CASE_(name, num, text) \
  case CO_CONFIG_ERR_##name:     \
    return text;
      CO_CONFIG_ERRORS(S_CASE_)
#undef S_CASE_
  }
  return "unknown error code";
}

/* ---- the key tables ---------------------------------------------------------------------------- */
typedef enum { K_U32, K_U64, K_BOOL, K_STR, K_ENUM, K_U32S, K_TASKS, K_VARIANTS, K_MAP } s_kind_t;

enum {
  F_REQUIRED = 1,  /* no default: the key must be given */
  F_NULLABLE = 2,  /* may be absent (null); has_off locates the has_ flag */
  F_DERIVED = 4,   /* the default depends on other keys (s_finish fills it) */
  F_RESUME_OK = 8, /* a change does not forbid resuming a stored campaign */
};

/* Extra check of a bound value (the field's address); writes why it is refused into `why`. */
typedef bool (*s_check_fn)(const void *field, char *why, size_t cap);

typedef struct s_sect s_sect_t;

typedef struct {
  const char *key;
  s_kind_t kind;
  unsigned flags;
  size_t off;            /* of the value within the section's struct */
  size_t has_off;        /* F_NULLABLE: of the has_ flag */
  size_t count_off;      /* K_U32S, K_TASKS, K_VARIANTS: of the element count */
  uint64_t lo, hi;       /* integers: value range; K_STR: length range; lists: count range */
  uint64_t elo, ehi;     /* K_U32S: element range */
  uint64_t dflt;         /* K_U32, K_U64, K_BOOL, K_ENUM default */
  const char *dstr;      /* K_STR default */
  const char *const *names; /* K_ENUM: NULL-terminated */
  s_check_fn check;
  const s_sect_t *sub;   /* K_MAP, K_VARIANTS: the nested section */
} s_key_t;

struct s_sect {
  const s_key_t *keys;
  size_t n;
};

#define S_STRMAX(T, f) (sizeof(((T *)0)->f) - 1)
#define S_MAX_SECT_KEYS 20

static bool s_check_name(const void *field, char *why, size_t cap);
static bool s_check_model_hash(const void *field, char *why, size_t cap);
static bool s_check_suite(const void *field, char *why, size_t cap);
static bool s_check_image_size(const void *field, char *why, size_t cap);
static bool s_check_device(const void *field, char *why, size_t cap);
static bool s_check_endpoint(const void *field, char *why, size_t cap);

enum { V_NAME, V_POLICY, V_MODE, V_DRAFT_LEN, V_DRAFT_WIDTH, V_RADII, V_BASELINE, V_COUNT_ };
static const s_key_t s_variant_keys[V_COUNT_] = {
    [V_NAME] = {"name", K_STR, F_REQUIRED, .off = offsetof(co_variant_t, name), .lo = 1,
                .hi = S_STRMAX(co_variant_t, name), .check = s_check_name},
    [V_POLICY] = {"policy", K_ENUM, 0, .off = offsetof(co_variant_t, policy), .dflt = MSG_POLICY_MODEL,
                  .names = msg_policy_names},
    [V_MODE] = {"mode", K_ENUM, F_NULLABLE, .off = offsetof(co_variant_t, mode),
                .has_off = offsetof(co_variant_t, has_mode), .names = msg_mode_names},
    [V_DRAFT_LEN] = {"draft_len", K_U32, F_NULLABLE, .off = offsetof(co_variant_t, draft_len),
                     .has_off = offsetof(co_variant_t, has_draft_len), .lo = 1, .hi = MSG_MAX_LAYERS},
    [V_DRAFT_WIDTH] = {"draft_width", K_U32, F_NULLABLE, .off = offsetof(co_variant_t, draft_width),
                       .has_off = offsetof(co_variant_t, has_draft_width), .lo = 1, .hi = MSG_MAX_DRAFT_WIDTH},
    [V_RADII] = {"radii", K_U32S, F_NULLABLE, .off = offsetof(co_variant_t, radii),
                 .has_off = offsetof(co_variant_t, has_radii), .count_off = offsetof(co_variant_t, radii_count),
                 .lo = 1, .hi = MSG_MAX_LAYERS, .elo = 0, .ehi = 64},
    [V_BASELINE] = {"baseline", K_BOOL, 0, .off = offsetof(co_variant_t, baseline), .dflt = 0},
};
static const s_sect_t s_variant = {s_variant_keys, V_COUNT_};

static const s_key_t s_workers_keys[] = {
    {"sim_workers", K_U32, F_RESUME_OK, .off = offsetof(co_workers_t, sim_workers), .lo = 0, .hi = 1024,
     .dflt = 1},
    {"episodes_per_worker", K_U32, F_RESUME_OK, .off = offsetof(co_workers_t, episodes_per_worker), .lo = 1,
     .hi = 4096, .dflt = 2},
    {"gpu_workers", K_U32, F_RESUME_OK | F_DERIVED, .off = offsetof(co_workers_t, gpu_workers), .lo = 0,
     .hi = 64},
    {"device", K_STR, F_RESUME_OK, .off = offsetof(co_workers_t, device), .lo = 1,
     .hi = S_STRMAX(co_workers_t, device), .dstr = "auto", .check = s_check_device},
    {"max_batch", K_U32, F_RESUME_OK, .off = offsetof(co_workers_t, max_batch), .lo = 1, .hi = 4096,
     .dflt = 16},
    {"max_wait_us", K_U32, F_RESUME_OK, .off = offsetof(co_workers_t, max_wait_us), .lo = 0,
     .hi = 10000000, .dflt = 2000},
};
static const s_sect_t s_workers = {s_workers_keys, sizeof s_workers_keys / sizeof s_workers_keys[0]};

static const s_key_t s_leases_keys[] = {
    {"heartbeat_ms", K_U32, F_RESUME_OK, .off = offsetof(co_leases_t, heartbeat_ms), .lo = 10, .hi = 600000,
     .dflt = 1000},
    {"liveness", K_U32, F_RESUME_OK, .off = offsetof(co_leases_t, liveness), .lo = 1, .hi = 100, .dflt = 3},
    {"max_attempts", K_U32, 0, .off = offsetof(co_leases_t, max_attempts), .lo = 1, .hi = 100, .dflt = 3},
};
static const s_sect_t s_leases = {s_leases_keys, sizeof s_leases_keys / sizeof s_leases_keys[0]};

#define S_ENDPOINT(f)                                                                               \
  {#f, K_STR, F_RESUME_OK, .off = offsetof(co_bind_t, f), .lo = 1, .hi = S_STRMAX(co_bind_t, f),   \
   .dstr = "tcp://127.0.0.1:*", .check = s_check_endpoint}
static const s_key_t s_bind_keys[] = {
    S_ENDPOINT(coordinator), S_ENDPOINT(broker), S_ENDPOINT(broker_gpu),
    {"keys", K_STR, F_NULLABLE | F_RESUME_OK, .off = offsetof(co_bind_t, keys), .has_off = offsetof(co_bind_t, has_keys),
     .lo = 1, .hi = S_STRMAX(co_bind_t, keys)}};
static const s_sect_t s_bind = {s_bind_keys, sizeof s_bind_keys / sizeof s_bind_keys[0]};

enum {
  T_NAME, T_SUITE, T_TASKS, T_TRIALS, T_MAX_STEPS, T_WAIT_STEPS, T_REPLAN_EVERY, T_SEED, T_IMAGE_SIZE,
  T_MODEL, T_UNNORM_KEY, T_MODEL_HASH, T_MODEL_DTYPE, T_VARIANTS, T_OUTPUT, T_VIDEOS, T_MAX_VIDEOS, T_WORKERS,
  T_LEASES, T_BIND,
  T_COUNT_
};
static const s_key_t s_top_keys[T_COUNT_] = {
    [T_NAME] = {"name", K_STR, F_REQUIRED, .off = offsetof(co_config_t, name), .lo = 1,
                .hi = S_STRMAX(co_config_t, name), .check = s_check_name},
    [T_SUITE] = {"suite", K_STR, F_REQUIRED, .off = offsetof(co_config_t, suite), .lo = 1,
                 .hi = S_STRMAX(co_config_t, suite), .check = s_check_suite},
    [T_TASKS] = {"tasks", K_TASKS, F_DERIVED, .off = offsetof(co_config_t, tasks),
                 .count_off = offsetof(co_config_t, tasks_count), .lo = 1, .hi = CO_MAX_TASKS, .elo = 0,
                 .ehi = 99999},
    [T_TRIALS] = {"trials", K_U32, 0, .off = offsetof(co_config_t, trials), .lo = 1, .hi = 100000, .dflt = 50},
    [T_MAX_STEPS] = {"max_steps", K_U32, F_DERIVED, .off = offsetof(co_config_t, max_steps), .lo = 1,
                     .hi = 100000},
    [T_WAIT_STEPS] = {"wait_steps", K_U32, F_DERIVED, .off = offsetof(co_config_t, wait_steps), .lo = 0,
                      .hi = 10000},
    [T_REPLAN_EVERY] = {"replan_every", K_U32, 0, .off = offsetof(co_config_t, replan_every), .lo = 1,
                        .hi = 1024, .dflt = 8},
    [T_SEED] = {"seed", K_U64, 0, .off = offsetof(co_config_t, seed), .lo = 0, .hi = UINT64_MAX, .dflt = 0},
    [T_IMAGE_SIZE] = {"image_size", K_U32, 0, .off = offsetof(co_config_t, image_size), .lo = 16, .hi = 1024,
                      .dflt = 128, .check = s_check_image_size},
    [T_MODEL] = {"model", K_STR, F_NULLABLE, .off = offsetof(co_config_t, model),
                 .has_off = offsetof(co_config_t, has_model), .lo = 1, .hi = S_STRMAX(co_config_t, model)},
    [T_UNNORM_KEY] = {"unnorm_key", K_STR, F_NULLABLE, .off = offsetof(co_config_t, unnorm_key),
                      .has_off = offsetof(co_config_t, has_unnorm_key), .lo = 1,
                      .hi = S_STRMAX(co_config_t, unnorm_key)},
    [T_MODEL_HASH] = {"model_hash", K_STR, F_NULLABLE, .off = offsetof(co_config_t, model_hash),
                      .has_off = offsetof(co_config_t, has_model_hash), .lo = 71, .hi = 71,
                      .check = s_check_model_hash},
    [T_MODEL_DTYPE] = {"model_dtype", K_ENUM, 0, .off = offsetof(co_config_t, model_dtype),
                       .dflt = CO_DTYPE_FLOAT32, .names = co_dtype_names},
    [T_VARIANTS] = {"variants", K_VARIANTS, F_REQUIRED, .off = offsetof(co_config_t, variants),
                    .count_off = offsetof(co_config_t, variants_count), .lo = 1, .hi = CO_MAX_VARIANTS,
                    .sub = &s_variant},
    [T_OUTPUT] = {"output", K_STR, F_DERIVED | F_RESUME_OK, .off = offsetof(co_config_t, output), .lo = 1,
                  .hi = S_STRMAX(co_config_t, output)},
    [T_VIDEOS] = {"videos", K_ENUM, F_RESUME_OK, .off = offsetof(co_config_t, videos),
                  .dflt = CO_VIDEOS_FAILURES, .names = co_videos_names},
    [T_MAX_VIDEOS] = {"max_videos", K_U32, F_RESUME_OK, .off = offsetof(co_config_t, max_videos), .lo = 0,
                      .hi = 100000, .dflt = 20},
    [T_WORKERS] = {"workers", K_MAP, 0, .off = offsetof(co_config_t, workers), .sub = &s_workers},
    [T_LEASES] = {"leases", K_MAP, 0, .off = offsetof(co_config_t, leases), .sub = &s_leases},
    [T_BIND] = {"bind", K_MAP, 0, .off = offsetof(co_config_t, bind), .sub = &s_bind},
};
static const s_sect_t s_top = {s_top_keys, T_COUNT_};

_Static_assert(T_COUNT_ <= S_MAX_SECT_KEYS && V_COUNT_ <= S_MAX_SECT_KEYS, "seen arrays are large enough");

/* ---- small helpers ------------------------------------------------------------------------------ */
/* Writes the NULL-terminated names as "a, b, c" (for messages listing allowed values). */
static void s_join(const char *const *names, char *out, size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (size_t i = 0; names[i] && used < cap; i++) {
    int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", names[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
}

static void s_sect_names(const s_sect_t *s, char *out, size_t cap) {
  const char *names[S_MAX_SECT_KEYS + 1] = {0};
  for (size_t i = 0; i < s->n; i++) names[i] = s->keys[i].key;
  s_join(names, out, cap);
}

/* Copies up to 60 bytes of s into out for messages, with non-printable bytes as \xNN. */
static void s_show(const char *s, size_t len, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 5 < cap; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (i == 60) {
      o += (size_t)snprintf(out + o, cap - o, "...");
      break;
    }
    if (ch >= 0x20 && ch != 0x7f)
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
  }
  out[o < cap ? o : cap - 1] = '\0';
}

/* Optimal-string-alignment distance (edits and adjacent swaps) of two short strings, capped at 9. */
static size_t s_distance(const char *a, size_t n, const char *b, size_t m) {
  if (n > 40 || m > 40) return 9;
  size_t d[41][41];
  for (size_t i = 0; i <= n; i++) d[i][0] = i;
  for (size_t j = 0; j <= m; j++) d[0][j] = j;
  for (size_t i = 1; i <= n; i++) {
    for (size_t j = 1; j <= m; j++) {
      size_t cost = a[i - 1] != b[j - 1];
      size_t v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[n][m] > 9 ? 9 : d[n][m];
}

/* Valid UTF-8 is guaranteed by libyaml; refuse control characters (C0, DEL, C1) and U+FFFE/U+FFFF,
 * which the stored JSON could not carry back through the YAML reader. */
static bool s_printable(const char *s, size_t len, size_t *bad) {
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < len; i++) {
    bool c0 = u[i] < 0x20 || u[i] == 0x7f;
    bool c1 = u[i] == 0xc2 && i + 1 < len && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f;
    bool nonchar = u[i] == 0xef && i + 2 < len && u[i + 1] == 0xbf && (u[i + 2] == 0xbe || u[i + 2] == 0xbf);
    if (c0 || c1 || nonchar) {
      *bad = i;
      return false;
    }
  }
  return true;
}

/* ---- value checks ------------------------------------------------------------------------------- */
/* "sha256:" and 64 lowercase hex digits, as a package's manifest writes its content_hash. */
static bool s_check_model_hash(const void *field, char *why, size_t cap) {
  const char *s = field;
  bool ok = strncmp(s, "sha256:", 7) == 0 && strlen(s) == 71;
  for (size_t i = 7; ok && s[i]; i++) ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
  if (!ok) snprintf(why, cap, "'%.80s' is not \"sha256:\" followed by 64 lowercase hex digits", s);
  return ok;
}

static bool s_check_name(const void *field, char *why, size_t cap) {
  const char *s = field;
  for (size_t i = 0; s[i]; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
          c == '.' || c == '-')) {
      char shown[96];
      s_show(s, strlen(s), shown, sizeof shown);
      snprintf(why, cap, "'%s' has a character outside [A-Za-z0-9_.-] at byte %zu", shown, i);
      return false;
    }
  }
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
    snprintf(why, cap, "'%s' is not a usable name", s);
    return false;
  }
  return true;
}

static bool s_check_suite(const void *field, char *why, size_t cap) {
  const char *s = field;
  if (co_suite_find(s)) return true;
  const char *names[17] = {0};
  size_t n = 0;
  for (const co_suite_t *k = co_suites; k->name && n < 16; k++) names[n++] = k->name;
  char known[256], shown[96];
  s_join(names, known, sizeof known);
  s_show(s, strlen(s), shown, sizeof shown);
  snprintf(why, cap, "'%s' is not a known suite (known: %s)", shown, known);
  return false;
}

static bool s_check_image_size(const void *field, char *why, size_t cap) {
  uint32_t v = *(const uint32_t *)field;
  if (v == 128 || v == 224 || v == 256) return true;
  snprintf(why, cap, "%" PRIu32 " is not one of 128, 224, 256", v);
  return false;
}

/* Decimal digits without a leading zero, value <= max. */
static bool s_decimal(const char *s, uint32_t max) {
  if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 9) return false;
  uint32_t v = 0;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return false;
    v = v * 10 + (uint32_t)(*s - '0');
  }
  return v <= max;
}

/* "auto", "cpu", "cuda:N", or "cuda:N,M,..." (local GPU workers spread over those devices). */
static bool s_check_device(const void *field, char *why, size_t cap) {
  const char *s = field;
  if (strcmp(s, "auto") == 0 || strcmp(s, "cpu") == 0) return true;
  bool ok = strncmp(s, "cuda:", 5) == 0;
  for (const char *idx = s + 5; ok;) {
    char one[16];
    size_t len = strcspn(idx, ",");
    ok = len > 0 && len < sizeof one;
    if (!ok) break;
    memcpy(one, idx, len);
    one[len] = '\0';
    ok = s_decimal(one, 255);
    if (!idx[len]) break;
    idx += len + 1;
  }
  if (ok) return true;
  char shown[96];
  s_show(s, strlen(s), shown, sizeof shown);
  snprintf(why, cap, "'%s' is not one of auto, cpu, cuda:N, cuda:N,M,... (N = 0, 1, ...)", shown);
  return false;
}

static bool s_check_endpoint(const void *field, char *why, size_t cap) {
  const char *s = field;
  char shown[96];
  s_show(s, strlen(s), shown, sizeof shown);
  if (strncmp(s, "ipc://", 6) == 0) {
    if (s[6]) return true;
    snprintf(why, cap, "'%s' names no path (ipc://PATH)", shown);
    return false;
  }
  if (strncmp(s, "tcp://", 6) == 0) {
    const char *colon = strrchr(s + 6, ':');
    if (colon && colon > s + 6 && (strcmp(colon + 1, "*") == 0 || (s_decimal(colon + 1, 65535) &&
                                                                    strcmp(colon + 1, "0") != 0)))
      return true;
    snprintf(why, cap, "'%s' is not tcp://HOST:PORT (PORT 1..65535 or *)", shown);
    return false;
  }
  snprintf(why, cap, "'%s' is not a tcp:// or ipc:// endpoint", shown);
  return false;
}

/* ---- binding YAML nodes to the struct ---------------------------------------------------------- */
typedef struct {
  bool seen;
  yaml_mark_t key, val;
} s_seen_t;

typedef struct {
  const char *origin;
  const char *text; /* the whole input, for reader errors that only know a byte offset */
  size_t len;
  co_config_error_t *err;
  yaml_document_t *doc;
  co_config_t *cfg;
  s_seen_t top[T_COUNT_];
  s_seen_t var[CO_MAX_VARIANTS][V_COUNT_];
  yaml_mark_t var_mark[CO_MAX_VARIANTS];
  yaml_mark_t task_mark[CO_MAX_TASKS];
  bool tasks_all;
  int explicit_baseline; /* index of the variant that said baseline: true, or -1 */
} s_ctx_t;

static co_config_err_t s_fail(s_ctx_t *x, co_config_err_t code, yaml_mark_t mark, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static co_config_err_t s_fail(s_ctx_t *x, co_config_err_t code, yaml_mark_t mark, const char *fmt, ...) {
  if (x->err) {
    co_config_error_t *e = x->err;
    e->code = code;
    e->line = (uint32_t)mark.line + 1;
    e->column = (uint32_t)mark.column + 1;
    int n = snprintf(e->text, sizeof e->text, "%s:%" PRIu32 ":%" PRIu32 ": ", x->origin, e->line, e->column);
    if (n >= 0 && (size_t)n < sizeof e->text) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(e->text + n, sizeof e->text - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return code;
}

/* "path: " for messages, or "" at the top level. */
#define S_AT(path) (path), ((path)[0] ? ": " : "")

static yaml_node_t *s_node(s_ctx_t *x, int index) { return yaml_document_get_node(x->doc, index); }

static const char *s_sval(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static bool s_is_null(const yaml_node_t *n) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const char *v = s_sval(n);
  return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
         strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* What a node is, for "expected X, got Y" messages. */
static void s_describe(const yaml_node_t *n, char *out, size_t cap) {
  char shown[96];
  if (n->type == YAML_SEQUENCE_NODE) {
    snprintf(out, cap, "a list");
  } else if (n->type == YAML_MAPPING_NODE) {
    snprintf(out, cap, "a map");
  } else if (s_is_null(n)) {
    snprintf(out, cap, "nothing (null)");
  } else {
    s_show(s_sval(n), n->data.scalar.length, shown, sizeof shown);
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
      snprintf(out, cap, "'%s'", shown);
    else
      snprintf(out, cap, "the quoted string '%s' (integers and booleans are written without quotes)", shown);
  }
}

static co_config_err_t s_type_error(s_ctx_t *x, const yaml_node_t *n, const char *path, const char *expected) {
  char got[200];
  s_describe(n, got, sizeof got);
  return s_fail(x, CO_CONFIG_ERR_TYPE, n->start_mark, "%s%sexpected %s, got %s", S_AT(path), expected, got);
}

typedef enum { S_INT_OK, S_INT_NOT, S_INT_NEGATIVE, S_INT_BIG, S_INT_OCTAL } s_int_t;

/* A plain decimal integer scalar ("-" allowed so that negatives are reported as out of range). */
static s_int_t s_parse_int(const yaml_node_t *n, uint64_t *out) {
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return S_INT_NOT;
  const char *s = s_sval(n);
  size_t len = n->data.scalar.length, i = 0;
  bool neg = false;
  if (len > 0 && (s[0] == '-' || s[0] == '+')) neg = s[0] == '-', i = 1;
  if (i == len) return S_INT_NOT;
  for (size_t j = i; j < len; j++)
    if (s[j] < '0' || s[j] > '9') return S_INT_NOT;
  if (s[i] == '0' && len - i > 1) return S_INT_OCTAL;
  uint64_t v = 0;
  for (; i < len; i++) {
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return S_INT_BIG;
    v = v * 10 + d;
  }
  if (neg && v != 0) return S_INT_NEGATIVE;
  *out = v;
  return S_INT_OK;
}

static co_config_err_t s_bind_int(s_ctx_t *x, const yaml_node_t *n, const char *path, uint64_t lo, uint64_t hi,
                                  uint64_t *out) {
  if (n->type != YAML_SCALAR_NODE || s_is_null(n) || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return s_type_error(x, n, path, "an integer");
  char shown[96];
  s_show(s_sval(n), n->data.scalar.length, shown, sizeof shown);
  uint64_t v = 0;
  switch (s_parse_int(n, &v)) {
    case S_INT_OK:
      break;
    case S_INT_NOT:
      return s_type_error(x, n, path, "an integer");
    case S_INT_OCTAL:
      return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark,
                    "%s%s%s has a leading zero (YAML may read it as octal); write it without", S_AT(path), shown);
    case S_INT_NEGATIVE:
    case S_INT_BIG:
      return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s%s is out of range %" PRIu64 "..%" PRIu64,
                    S_AT(path), shown, lo, hi);
  }
  if (v < lo || v > hi)
    return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s%" PRIu64 " is out of range %" PRIu64 "..%" PRIu64,
                  S_AT(path), v, lo, hi);
  *out = v;
  return CO_CONFIG_OK;
}

static co_config_err_t s_check(s_ctx_t *x, const s_key_t *k, const void *field, const yaml_node_t *n,
                               const char *path) {
  char why[400];
  if (k->check && !k->check(field, why, sizeof why))
    return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s%s", S_AT(path), why);
  return CO_CONFIG_OK;
}

static void s_set_int(const s_key_t *k, char *base, int v) { memcpy(base + k->off, &v, sizeof v); }
static int s_get_int(const s_key_t *k, const char *base) {
  int v;
  memcpy(&v, base + k->off, sizeof v);
  return v;
}

static void s_defaults(const s_sect_t *s, char *base);
static co_config_err_t s_bind_map(s_ctx_t *x, yaml_node_t *node, const s_sect_t *s, char *base, s_seen_t *seen,
                                  const char *path);
static co_config_err_t s_check_variant(s_ctx_t *x, uint32_t i);

static co_config_err_t s_bind_tasks(s_ctx_t *x, yaml_node_t *n, const s_key_t *k, char *base, const char *path) {
  if (n->type == YAML_SCALAR_NODE && strcmp(s_sval(n), "all") == 0) {
    x->tasks_all = true;
    return CO_CONFIG_OK;
  }
  if (n->type != YAML_SEQUENCE_NODE) return s_type_error(x, n, path, "'all' or a list of task indices");
  uint32_t *tasks = (uint32_t *)(base + k->off);
  uint32_t *count = (uint32_t *)(base + k->count_off);
  size_t items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (items < k->lo || items > k->hi)
    return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%slists %zu tasks (allowed %" PRIu64 "..%" PRIu64 ")",
                  S_AT(path), items, k->lo, k->hi);
  for (size_t i = 0; i < items; i++) {
    yaml_node_t *item = s_node(x, n->data.sequence.items.start[i]);
    char sub[160];
    snprintf(sub, sizeof sub, "%s[%zu]", path, i);
    uint64_t v;
    co_config_err_t rc = s_bind_int(x, item, sub, k->elo, k->ehi, &v);
    if (rc) return rc;
    for (size_t j = 0; j < i; j++)
      if (tasks[j] == v)
        return s_fail(x, CO_CONFIG_ERR_DUPLICATE, item->start_mark,
                      "%s: task %" PRIu64 " is listed twice (also %s[%zu])", sub, v, path, j);
    tasks[i] = (uint32_t)v;
    x->task_mark[i] = item->start_mark;
  }
  *count = (uint32_t)items;
  return CO_CONFIG_OK;
}

static co_config_err_t s_bind_variants(s_ctx_t *x, yaml_node_t *n, const s_key_t *k, char *base,
                                       const char *path) {
  if (s_is_null(n))
    return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s: at least one variant is needed", path);
  if (n->type != YAML_SEQUENCE_NODE) return s_type_error(x, n, path, "a list of variants");
  size_t items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (items == 0) return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s: at least one variant is needed", path);
  if (items > k->hi)
    return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s: %zu variants, at most %" PRIu64 " are allowed", path,
                  items, k->hi);
  co_variant_t *vars = (co_variant_t *)(base + k->off);
  uint32_t *count = (uint32_t *)(base + k->count_off);
  for (size_t i = 0; i < items; i++) {
    yaml_node_t *item = s_node(x, n->data.sequence.items.start[i]);
    char sub[160];
    snprintf(sub, sizeof sub, "%s[%zu]", path, i);
    if (item->type != YAML_MAPPING_NODE) {
      char names[200], expected[240];
      s_sect_names(k->sub, names, sizeof names);
      snprintf(expected, sizeof expected, "a map of %s", names);
      return s_type_error(x, item, sub, expected);
    }
    s_defaults(k->sub, (char *)&vars[i]);
    x->var_mark[i] = item->start_mark;
    co_config_err_t rc = s_bind_map(x, item, k->sub, (char *)&vars[i], x->var[i], sub);
    if (rc) return rc;
    *count = (uint32_t)i + 1;
    rc = s_check_variant(x, (uint32_t)i);
    if (rc) return rc;
  }
  return CO_CONFIG_OK;
}

static co_config_err_t s_bind_value(s_ctx_t *x, yaml_node_t *n, const s_key_t *k, char *base, const char *path) {
  void *field = base + k->off;
  bool *has = (k->flags & F_NULLABLE) ? (bool *)(base + k->has_off) : NULL;
  if (has) {
    *has = false;
    if (s_is_null(n)) {
      if (k->kind == K_STR) memset(field, 0, k->hi + 1);
      return CO_CONFIG_OK;
    }
  }
  co_config_err_t rc = CO_CONFIG_OK;
  uint64_t v = 0;
  switch (k->kind) {
    case K_U32:
      if ((rc = s_bind_int(x, n, path, k->lo, k->hi, &v))) return rc;
      *(uint32_t *)field = (uint32_t)v;
      break;
    case K_U64:
      if ((rc = s_bind_int(x, n, path, k->lo, k->hi, &v))) return rc;
      *(uint64_t *)field = v;
      break;
    case K_BOOL: {
      const char *s = n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? s_sval(n) : "";
      if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0)
        *(bool *)field = true;
      else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "FALSE") == 0)
        *(bool *)field = false;
      else
        return s_type_error(x, n, path, "true or false");
      break;
    }
    case K_STR: {
      if (n->type != YAML_SCALAR_NODE || s_is_null(n)) return s_type_error(x, n, path, "a string");
      size_t len = n->data.scalar.length, bad = 0;
      char shown[96];
      s_show(s_sval(n), len, shown, sizeof shown);
      if (len < k->lo)
        return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%smust not be empty", S_AT(path));
      if (len > k->hi)
        return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s'%s' is %zu bytes long (at most %" PRIu64 ")",
                      S_AT(path), shown, len, k->hi);
      if (!s_printable(s_sval(n), len, &bad))
        return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s'%s' has a control character at byte %zu",
                      S_AT(path), shown, bad);
      memcpy(field, s_sval(n), len);
      ((char *)field)[len] = '\0';
      break;
    }
    case K_ENUM: {
      char names[200];
      s_join(k->names, names, sizeof names);
      if (n->type != YAML_SCALAR_NODE || s_is_null(n)) {
        char expected[240];
        snprintf(expected, sizeof expected, "one of %s", names);
        return s_type_error(x, n, path, expected);
      }
      int found = -1;
      for (int i = 0; k->names[i]; i++)
        if (strcmp(k->names[i], s_sval(n)) == 0) found = i;
      if (found < 0) {
        char shown[96];
        s_show(s_sval(n), n->data.scalar.length, shown, sizeof shown);
        return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%s'%s' is not one of %s", S_AT(path), shown, names);
      }
      s_set_int(k, base, found);
      break;
    }
    case K_U32S: {
      if (n->type != YAML_SEQUENCE_NODE) return s_type_error(x, n, path, "a list of integers");
      size_t items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
      if (items < k->lo || items > k->hi)
        return s_fail(x, CO_CONFIG_ERR_VALUE, n->start_mark, "%s%shas %zu entries (allowed %" PRIu64 "..%" PRIu64 ")",
                      S_AT(path), items, k->lo, k->hi);
      for (size_t i = 0; i < items; i++) {
        char sub[160];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        if ((rc = s_bind_int(x, s_node(x, n->data.sequence.items.start[i]), sub, k->elo, k->ehi, &v))) return rc;
        ((uint32_t *)field)[i] = (uint32_t)v;
      }
      *(uint32_t *)(base + k->count_off) = (uint32_t)items;
      break;
    }
    case K_TASKS:
      return s_bind_tasks(x, n, k, base, path);
    case K_VARIANTS:
      return s_bind_variants(x, n, k, base, path);
    case K_MAP: {
      if (n->type != YAML_MAPPING_NODE && !s_is_null(n)) {
        char names[400], expected[440];
        s_sect_names(k->sub, names, sizeof names);
        snprintf(expected, sizeof expected, "a map of %s", names);
        return s_type_error(x, n, path, expected);
      }
      s_seen_t seen[S_MAX_SECT_KEYS] = {0};
      return s_bind_map(x, n, k->sub, (char *)field, seen, path);
    }
  }
  if ((rc = s_check(x, k, field, n, path))) return rc;
  if (has) *has = true;
  return CO_CONFIG_OK;
}

static co_config_err_t s_unknown_key(s_ctx_t *x, const yaml_node_t *kn, const s_sect_t *s, const char *path) {
  char known[400], shown[96], hint[120] = "";
  s_sect_names(s, known, sizeof known);
  s_show(s_sval(kn), kn->data.scalar.length, shown, sizeof shown);
  size_t best = 9;
  const char *guess = NULL;
  for (size_t i = 0; i < s->n; i++) {
    size_t klen = strlen(s->keys[i].key);
    size_t d = s_distance(s_sval(kn), kn->data.scalar.length, s->keys[i].key, klen);
    size_t limit = klen <= 4 ? 1 : 2;
    if (d <= limit && d < best) best = d, guess = s->keys[i].key;
  }
  if (guess) snprintf(hint, sizeof hint, "did you mean '%s'? ", guess);
  return s_fail(x, CO_CONFIG_ERR_UNKNOWN_KEY, kn->start_mark, "%s%sunknown key '%s' (%sknown: %s)", S_AT(path),
                shown, hint, known);
}

static co_config_err_t s_bind_map(s_ctx_t *x, yaml_node_t *node, const s_sect_t *s, char *base, s_seen_t *seen,
                                  const char *path) {
  if (node->type == YAML_MAPPING_NODE) {
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
      yaml_node_t *kn = s_node(x, p->key), *vn = s_node(x, p->value);
      if (kn->type != YAML_SCALAR_NODE)
        return s_fail(x, CO_CONFIG_ERR_TYPE, kn->start_mark, "%s%skeys must be plain names, not %s", S_AT(path),
                      kn->type == YAML_SEQUENCE_NODE ? "lists" : "maps");
      size_t i = 0;
      while (i < s->n && !(strlen(s->keys[i].key) == kn->data.scalar.length && strcmp(s->keys[i].key, s_sval(kn)) == 0))
        i++;
      if (i == s->n) return s_unknown_key(x, kn, s, path);
      if (seen[i].seen)
        return s_fail(x, CO_CONFIG_ERR_DUPLICATE, kn->start_mark, "%s%sduplicate key '%s' (first at line %zu)",
                      S_AT(path), s->keys[i].key, seen[i].key.line + 1);
      seen[i] = (s_seen_t){true, kn->start_mark, vn->start_mark};
      char sub[160];
      snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", s->keys[i].key);
      co_config_err_t rc = s_bind_value(x, vn, &s->keys[i], base, sub);
      if (rc) return rc;
    }
  }
  for (size_t i = 0; i < s->n; i++)
    if ((s->keys[i].flags & F_REQUIRED) && !seen[i].seen)
      return s_fail(x, CO_CONFIG_ERR_MISSING, node->start_mark, "%s%smissing required key '%s'", S_AT(path),
                    s->keys[i].key);
  return CO_CONFIG_OK;
}

/* Defaults of a section; F_DERIVED keys get a sentinel that s_finish replaces. */
static void s_defaults(const s_sect_t *s, char *base) {
  for (size_t i = 0; i < s->n; i++) {
    const s_key_t *k = &s->keys[i];
    void *field = base + k->off;
    if (k->flags & F_NULLABLE) *(bool *)(base + k->has_off) = false;
    switch (k->kind) {
      case K_U32:
        *(uint32_t *)field = (k->flags & F_DERIVED) ? UINT32_MAX : (uint32_t)k->dflt;
        break;
      case K_U64:
        *(uint64_t *)field = k->dflt;
        break;
      case K_BOOL:
        *(bool *)field = k->dflt != 0;
        break;
      case K_ENUM:
        s_set_int(k, base, (int)k->dflt);
        break;
      case K_STR:
        memset(field, 0, k->hi + 1);
        if (k->dstr) snprintf(field, k->hi + 1, "%s", k->dstr);
        break;
      case K_U32S:
      case K_TASKS:
      case K_VARIANTS:
        *(uint32_t *)(base + k->count_off) = 0;
        break;
      case K_MAP:
        s_defaults(k->sub, (char *)field);
        break;
    }
  }
}

static const char *s_mode_name(const co_variant_t *v) { return msg_mode_names[v->mode]; }

/* The checks of one variant that need several of its keys, or the variants before it. */
static co_config_err_t s_check_variant(s_ctx_t *x, uint32_t i) {
  const co_variant_t *v = &x->cfg->variants[i];
  const s_seen_t *seen = x->var[i];
  for (uint32_t j = 0; j < i; j++)
    if (strcmp(x->cfg->variants[j].name, v->name) == 0)
      return s_fail(x, CO_CONFIG_ERR_DUPLICATE, seen[V_NAME].val,
                    "variants[%" PRIu32 "].name: duplicate variant name '%s' (also variants[%" PRIu32 "], line %zu)", i,
                    v->name, j, x->var[j][V_NAME].val.line + 1);
  if (v->policy == MSG_POLICY_MODEL) {
    char modes[200];
    s_join(msg_mode_names, modes, sizeof modes);
    if (!v->has_mode)
      return s_fail(x, CO_CONFIG_ERR_MISSING, x->var_mark[i],
                    "variants[%" PRIu32 "]: missing key 'mode' (required for policy model; one of %s)", i, modes);
    if (v->mode == MSG_MODE_AR && v->has_draft_len)
      return s_fail(x, CO_CONFIG_ERR_CONFLICT, seen[V_DRAFT_LEN].key,
                    "variants[%" PRIu32 "].draft_len: only for mode spec or spec-relaxed (this variant's mode is ar)",
                    i);
    if (v->mode == MSG_MODE_AR && v->has_draft_width)
      return s_fail(x, CO_CONFIG_ERR_CONFLICT, seen[V_DRAFT_WIDTH].key,
                    "variants[%" PRIu32 "].draft_width: only for mode spec or spec-relaxed (this variant's mode is ar)",
                    i);
    if (v->mode != MSG_MODE_SPEC_RELAXED && v->has_radii)
      return s_fail(x, CO_CONFIG_ERR_CONFLICT, seen[V_RADII].key,
                    "variants[%" PRIu32 "].radii: only for mode spec-relaxed (this variant's mode is %s)", i,
                    s_mode_name(v));
  } else {
    static const int keys[] = {V_MODE, V_DRAFT_LEN, V_DRAFT_WIDTH, V_RADII};
    const bool has[] = {v->has_mode, v->has_draft_len, v->has_draft_width, v->has_radii};
    for (size_t j = 0; j < 4; j++)
      if (has[j])
        return s_fail(x, CO_CONFIG_ERR_CONFLICT, seen[keys[j]].key,
                      "variants[%" PRIu32 "].%s: not allowed with policy expert (the scripted expert does not decode)",
                      i, s_variant_keys[keys[j]].key);
  }
  if (v->baseline) {
    if (x->explicit_baseline >= 0)
      return s_fail(x, CO_CONFIG_ERR_CONFLICT, seen[V_BASELINE].val,
                    "variants[%" PRIu32 "].baseline: only one variant can be the baseline (variants[%d] already is)", i,
                    x->explicit_baseline);
    x->explicit_baseline = (int)i;
  }
  return CO_CONFIG_OK;
}

static int s_cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Defaults that depend on other keys, and the checks that span several keys. */
static co_config_err_t s_finish(s_ctx_t *x) {
  co_config_t *c = x->cfg;
  const co_suite_t *suite = co_suite_find(c->suite);
  if (x->tasks_all || !x->top[T_TASKS].seen) {
    c->tasks_count = suite->tasks;
    for (uint32_t t = 0; t < suite->tasks; t++) c->tasks[t] = t;
  } else {
    for (uint32_t i = 0; i < c->tasks_count; i++)
      if (c->tasks[i] >= suite->tasks)
        return s_fail(x, CO_CONFIG_ERR_VALUE, x->task_mark[i],
                      "tasks[%" PRIu32 "]: task %" PRIu32 " does not exist in %s (tasks 0..%" PRIu32 ")", i,
                      c->tasks[i], suite->name, suite->tasks - 1);
    qsort(c->tasks, c->tasks_count, sizeof c->tasks[0], s_cmp_u32);
  }
  if (!x->top[T_TRIALS].seen && c->trials > suite->init_states) c->trials = suite->init_states;
  if (c->trials > suite->init_states)
    return s_fail(x, CO_CONFIG_ERR_VALUE, x->top[T_TRIALS].val,
                  "trials: %" PRIu32 " is more than %s's %" PRIu32 " initial states per task", c->trials, suite->name,
                  suite->init_states);
  if (c->max_steps == UINT32_MAX) c->max_steps = suite->max_steps;
  if (c->wait_steps == UINT32_MAX) c->wait_steps = suite->wait_steps;
  if (!c->output[0]) snprintf(c->output, sizeof c->output, "runs/%s", c->name);

  int first_model = -1, first_ar = -1;
  for (uint32_t i = 0; i < c->variants_count; i++) {
    const co_variant_t *v = &c->variants[i];
    if (v->policy == MSG_POLICY_MODEL && first_model < 0) first_model = (int)i;
    if (v->policy == MSG_POLICY_MODEL && v->mode == MSG_MODE_AR && first_ar < 0) first_ar = (int)i;
  }
  if (first_model >= 0) {
    const s_seen_t *pol = &x->var[first_model][V_POLICY];
    yaml_mark_t at = pol->seen ? pol->val : x->var_mark[first_model];
    if (!c->has_model)
      return s_fail(x, CO_CONFIG_ERR_MISSING, at,
                    "variants[%d]: policy model needs the top-level key 'model' (a model package directory)",
                    first_model);
    if (!c->has_unnorm_key)
      return s_fail(x, CO_CONFIG_ERR_MISSING, at,
                    "variants[%d]: policy model needs the top-level key 'unnorm_key' (which action statistics of "
                    "the model to use, e.g. %s)",
                    first_model, c->suite);
  }
  if (c->has_model_hash && !c->has_model) {
    const s_seen_t *h = &x->top[T_MODEL_HASH];
    return s_fail(x, CO_CONFIG_ERR_CONFLICT, h->val, "model_hash is set but no model is: it pins a package's content");
  }
  if (c->model_dtype != CO_DTYPE_FLOAT32 && !c->has_model) {
    const s_seen_t *d = &x->top[T_MODEL_DTYPE];
    return s_fail(x, CO_CONFIG_ERR_CONFLICT, d->val, "model_dtype is %s but no model is set: it is the precision the "
                  "GPU workers run a model at", co_dtype_names[c->model_dtype]);
  }
  if (c->workers.gpu_workers == UINT32_MAX) c->workers.gpu_workers = first_model >= 0 ? 1 : 0;

  c->baseline = x->explicit_baseline >= 0 ? x->explicit_baseline : first_ar;
  for (uint32_t i = 0; i < c->variants_count; i++) c->variants[i].baseline = (int)i == c->baseline;

  /* Two sockets cannot bind one fixed endpoint. */
  const char *eps[] = {c->bind.coordinator, c->bind.broker, c->bind.broker_gpu};
  for (size_t i = 0; i < 3; i++)
    for (size_t j = 0; j < i; j++) {
      size_t len = strlen(eps[i]);
      bool ephemeral = len >= 2 && strcmp(eps[i] + len - 2, ":*") == 0;
      if (!ephemeral && strcmp(eps[i], eps[j]) == 0) {
        yaml_mark_t at = x->top[T_BIND].seen ? x->top[T_BIND].val : (yaml_mark_t){0, 0, 0};
        return s_fail(x, CO_CONFIG_ERR_CONFLICT, at, "bind.%s: '%s' is also bind.%s (each socket needs its own)",
                      s_bind_keys[i].key, eps[i], s_bind_keys[j].key);
      }
    }
  return CO_CONFIG_OK;
}

/* Line and column of a byte offset, for libyaml's reader errors which only give the offset. */
static yaml_mark_t s_mark_at(const char *text, size_t len, size_t offset) {
  yaml_mark_t m = {offset, 0, 0};
  for (size_t i = 0; i < offset && i < len; i++) {
    if (text[i] == '\n')
      m.line++, m.column = 0;
    else
      m.column++;
  }
  return m;
}

static co_config_err_t s_syntax(s_ctx_t *x, const yaml_parser_t *p) {
  if (p->error == YAML_MEMORY_ERROR)
    return s_fail(x, CO_CONFIG_ERR_SYNTAX, (yaml_mark_t){0, 0, 0}, "out of memory while parsing");
  if (p->error == YAML_READER_ERROR) {
    yaml_mark_t at = s_mark_at(x->text, x->len, p->problem_offset);
    if (p->problem_value >= 0)
      return s_fail(x, CO_CONFIG_ERR_SYNTAX, at, "YAML error: %s (byte 0x%02x)", p->problem, p->problem_value);
    return s_fail(x, CO_CONFIG_ERR_SYNTAX, at, "YAML error: %s", p->problem);
  }
  const char *problem = p->problem ? p->problem : "syntax error";
  if (p->context)
    return s_fail(x, CO_CONFIG_ERR_SYNTAX, p->problem_mark, "YAML syntax error: %s (%s at line %zu, column %zu)",
                  problem, p->context, p->context_mark.line + 1, p->context_mark.column + 1);
  return s_fail(x, CO_CONFIG_ERR_SYNTAX, p->problem_mark, "YAML syntax error: %s", problem);
}

co_config_err_t co_config_parse(const char *text, size_t len, const char *origin, co_config_t *out,
                                co_config_error_t *err) {
  s_ctx_t *x = calloc(1, sizeof *x);
  if (!x) {
    if (err) {
      err->code = CO_CONFIG_ERR_IO;
      err->line = err->column = 0;
      snprintf(err->text, sizeof err->text, "%s: out of memory", origin ? origin : "<config>");
    }
    return CO_CONFIG_ERR_IO;
  }
  x->origin = origin ? origin : "<config>";
  x->text = text;
  x->len = len;
  x->err = err;
  x->cfg = out;
  x->explicit_baseline = -1;
  if (err) memset(err, 0, sizeof *err);
  memset(out, 0, sizeof *out);
  s_defaults(&s_top, (char *)out);

  yaml_parser_t parser;
  yaml_document_t doc, extra;
  co_config_err_t rc = CO_CONFIG_OK;
  bool have_doc = false;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &doc)) {
    rc = s_syntax(x, &parser);
    goto done;
  }
  have_doc = true;
  x->doc = &doc;
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) {
    rc = s_fail(x, CO_CONFIG_ERR_MISSING, (yaml_mark_t){0, 0, 0},
                "the config is empty (needs at least name, suite, variants)");
    goto done;
  }
  if (!yaml_parser_load(&parser, &extra)) {
    rc = s_syntax(x, &parser);
    goto done;
  }
  yaml_node_t *second = yaml_document_get_root_node(&extra);
  yaml_mark_t second_at = extra.start_mark;
  yaml_document_delete(&extra);
  if (second) {
    rc = s_fail(x, CO_CONFIG_ERR_SYNTAX, second_at, "a second YAML document ('---'); a config is one document");
    goto done;
  }
  if (root->type != YAML_MAPPING_NODE) {
    char names[400], expected[440];
    s_sect_names(&s_top, names, sizeof names);
    snprintf(expected, sizeof expected, "a map of %s", names);
    rc = s_type_error(x, root, "", expected);
    goto done;
  }
  if ((rc = s_bind_map(x, root, &s_top, (char *)out, x->top, ""))) goto done;
  rc = s_finish(x);
done:
  if (have_doc) yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  free(x);
  return rc;
}

co_config_err_t co_config_load(const char *path, co_config_t *out, co_config_error_t *err) {
  if (err) memset(err, 0, sizeof *err);
  memset(out, 0, sizeof *out);
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  const char *why = NULL;
  int errnum = 0;
  size_t n = 0;
  if (!f) {
    why = "cannot open", errnum = errno;
  } else if (!(buf = malloc(CO_CONFIG_FILE_MAX + 1))) {
    why = "out of memory";
  } else {
    n = fread(buf, 1, CO_CONFIG_FILE_MAX + 1, f);
    if (ferror(f))
      why = "cannot read", errnum = errno;
    else if (n > CO_CONFIG_FILE_MAX)
      why = "larger than 1 MiB, not a config";
  }
  if (f) fclose(f);
  if (why) {
    free(buf);
    if (err) {
      err->code = CO_CONFIG_ERR_IO;
      snprintf(err->text, sizeof err->text, "%s: %s%s%s", path, why, errnum ? ": " : "",
               errnum ? strerror(errnum) : "");
    }
    return CO_CONFIG_ERR_IO;
  }
  co_config_err_t rc = co_config_parse(buf, n, path, out, err);
  free(buf);
  return rc;
}

co_config_err_t co_config_from_json(const char *json, size_t len, co_config_t *out, co_config_error_t *err) {
  return co_config_parse(json, len, "stored config", out, err);
}

/* ---- canonical JSON ----------------------------------------------------------------------------- */
typedef struct {
  char *buf;
  size_t cap, len; /* len counts what the whole output needs, also past cap */
} s_out_t;

static void s_put(s_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_put(s_out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = o->len < o->cap ? vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap) : vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) o->len += (size_t)n;
}

/* A JSON string. Config strings hold no control characters (s_printable), so only " and \ need escapes;
 * other UTF-8 goes through as it is. */
static void s_put_str(s_out_t *o, const char *s) {
  s_put(o, "\"");
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\')
      s_put(o, "\\%c", *p);
    else
      s_put(o, "%c", *p);
  }
  s_put(o, "\"");
}

static void s_put_leaf(s_out_t *o, const s_key_t *k, const char *base) {
  const void *field = base + k->off;
  if ((k->flags & F_NULLABLE) && !*(const bool *)(base + k->has_off)) {
    s_put(o, "null");
    return;
  }
  switch (k->kind) {
    case K_U32:
      s_put(o, "%" PRIu32, *(const uint32_t *)field);
      break;
    case K_U64:
      s_put(o, "%" PRIu64, *(const uint64_t *)field);
      break;
    case K_BOOL:
      s_put(o, "%s", *(const bool *)field ? "true" : "false");
      break;
    case K_STR:
      s_put_str(o, field);
      break;
    case K_ENUM:
      s_put_str(o, k->names[s_get_int(k, base)]);
      break;
    case K_U32S:
    case K_TASKS: {
      uint32_t n = *(const uint32_t *)(base + k->count_off);
      s_put(o, "[");
      for (uint32_t i = 0; i < n; i++) s_put(o, "%s%" PRIu32, i ? ", " : "", ((const uint32_t *)field)[i]);
      s_put(o, "]");
      break;
    }
    case K_VARIANTS:
    case K_MAP:
      break; /* s_put_sect writes these */
  }
}

static void s_put_sect(s_out_t *o, const s_sect_t *s, const char *base, int depth, bool one_line) {
  s_put(o, "{");
  for (size_t i = 0; i < s->n; i++) {
    const s_key_t *k = &s->keys[i];
    if (one_line)
      s_put(o, "%s\"%s\": ", i ? ", " : "", k->key);
    else
      s_put(o, "%s\n%*s\"%s\": ", i ? "," : "", 2 * (depth + 1), "", k->key);
    if (k->kind == K_MAP) {
      s_put_sect(o, k->sub, base + k->off, depth + 1, false);
    } else if (k->kind == K_VARIANTS) {
      uint32_t n = *(const uint32_t *)(base + k->count_off);
      const co_variant_t *vars = (const co_variant_t *)(base + k->off);
      s_put(o, "[");
      for (uint32_t j = 0; j < n; j++) {
        s_put(o, "%s\n%*s", j ? "," : "", 2 * (depth + 2), "");
        s_put_sect(o, k->sub, (const char *)&vars[j], depth + 2, true);
      }
      s_put(o, "\n%*s]", 2 * (depth + 1), "");
    } else {
      s_put_leaf(o, k, base);
    }
  }
  if (one_line)
    s_put(o, "}");
  else
    s_put(o, "\n%*s}", 2 * depth, "");
}

size_t co_config_to_json(const co_config_t *c, char *buf, size_t cap) {
  s_out_t o = {buf, cap, 0};
  if (buf && cap) buf[0] = '\0';
  s_put_sect(&o, &s_top, (const char *)c, 0, false);
  s_put(&o, "\n");
  return o.len;
}

/* ---- comparing two configs ---------------------------------------------------------------------- */
typedef struct {
  s_out_t out;
  int differ, forbid;
} s_diff_t;

static void s_diff_sect(s_diff_t *d, const s_sect_t *s, const char *a, const char *b, const char *prefix) {
  for (size_t i = 0; i < s->n; i++) {
    const s_key_t *k = &s->keys[i];
    char key[160];
    snprintf(key, sizeof key, "%s%s", prefix, k->key);
    if (k->kind == K_MAP) {
      char sub[170];
      snprintf(sub, sizeof sub, "%s.", key);
      s_diff_sect(d, k->sub, a ? a + k->off : NULL, b ? b + k->off : NULL, sub);
      continue;
    }
    if (k->kind == K_VARIANTS) {
      uint32_t na = *(const uint32_t *)(a + k->count_off), nb = *(const uint32_t *)(b + k->count_off);
      const co_variant_t *va = (const co_variant_t *)(a + k->off), *vb = (const co_variant_t *)(b + k->off);
      for (uint32_t j = 0; j < na || j < nb; j++) {
        char sub[180];
        if (j >= na) { /* appended now: the stored variants' episodes are untouched by it */
          d->differ++;
          if (vb[j].baseline) d->forbid++; /* it would change the comparisons of the stored results */
          s_put(&d->out, "%s[%" PRIu32 "]: (absent) -> \"%s\" (%s)\n", key, j, vb[j].name,
                vb[j].baseline ? "a new variant that becomes the baseline: the stored results' comparisons would change"
                               : "a new variant: may be added on resume");
          continue;
        }
        snprintf(sub, sizeof sub, "%s[%" PRIu32 "].", key, j);
        s_diff_sect(d, k->sub, j < na ? (const char *)&va[j] : NULL, j < nb ? (const char *)&vb[j] : NULL, sub);
      }
      continue;
    }
    char sa[1400], sb[1400];
    s_out_t oa = {sa, sizeof sa, 0}, ob = {sb, sizeof sb, 0};
    if (a)
      s_put_leaf(&oa, k, a);
    else
      s_put(&oa, "(absent)");
    if (b)
      s_put_leaf(&ob, k, b);
    else
      s_put(&ob, "(absent)");
    if (strcmp(sa, sb) == 0) continue;
    d->differ++;
    bool ok = (k->flags & F_RESUME_OK) != 0;
    if (!ok) d->forbid++;
    s_put(&d->out, "%s: %s -> %s%s\n", key, sa, sb, ok ? " (may change on resume)" : "");
  }
}

static s_diff_t s_diff(const co_config_t *a, const co_config_t *b, char *out, size_t cap) {
  s_diff_t d = {{out, cap, 0}, 0, 0};
  if (out && cap) out[0] = '\0';
  s_diff_sect(&d, &s_top, (const char *)a, (const char *)b, "");
  if (out && d.out.len >= cap && cap >= 5) memcpy(out + cap - 5, "...\n", 5);
  return d;
}

int co_config_diff(const co_config_t *stored, const co_config_t *now, char *out, size_t cap) {
  return s_diff(stored, now, out, cap).forbid;
}

bool co_config_equal(const co_config_t *a, const co_config_t *b) { return s_diff(a, b, NULL, 0).differ == 0; }

/* ---- episodes ------------------------------------------------------------------------------------ */
uint64_t co_config_episodes(const co_config_t *c) {
  return (uint64_t)c->tasks_count * c->trials * c->variants_count;
}

static uint64_t s_splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t co_config_episode_seed(const co_config_t *c, uint32_t task, uint32_t trial) {
  return s_splitmix64(c->seed ^ s_splitmix64(((uint64_t)task << 32) | trial));
}

bool co_config_episode(const co_config_t *c, uint64_t index, co_config_episode_t *out) {
  if (index >= co_config_episodes(c)) return false;
  uint64_t per_trial = (uint64_t)c->tasks_count * c->variants_count;
  uint64_t rem = index % per_trial;
  out->trial = (uint32_t)(index / per_trial);
  out->task = c->tasks[rem / c->variants_count];
  out->variant = (uint32_t)(rem % c->variants_count);
  out->seed = co_config_episode_seed(c, out->task, out->trial);
  return true;
}

int64_t co_config_episode_index(const co_config_t *c, uint32_t variant, uint32_t task, uint32_t trial) {
  if (variant >= c->variants_count || trial >= c->trials) return -1;
  for (uint32_t t = 0; t < c->tasks_count; t++)
    if (c->tasks[t] == task)
      return (int64_t)(((uint64_t)trial * c->tasks_count + t) * c->variants_count + variant);
  return -1;
}

int co_config_variant_find(const co_config_t *c, const char *name) {
  for (uint32_t i = 0; i < c->variants_count; i++)
    if (strcmp(c->variants[i].name, name) == 0) return (int)i;
  return -1;
}

void co_config_lease(const co_config_t *c, const co_config_episode_t *e, uint32_t attempt, msg_lease_body_t *out) {
  const co_variant_t *v = &c->variants[e->variant];
  memset(out, 0, sizeof *out);
  snprintf(out->campaign, sizeof out->campaign, "%s", c->name);
  snprintf(out->variant, sizeof out->variant, "%s", v->name);
  snprintf(out->suite, sizeof out->suite, "%s", c->suite);
  out->task = e->task;
  out->trial = e->trial;
  out->attempt = attempt;
  out->seed = e->seed;
  out->max_steps = c->max_steps;
  out->wait_steps = c->wait_steps;
  out->replan_every = c->replan_every;
  out->image_size = c->image_size;
  out->policy = v->policy;
  if (v->policy != MSG_POLICY_MODEL) return;
  out->has_mode = true;
  out->mode = v->mode;
  if (v->has_draft_len) out->has_draft_len = true, out->draft_len = v->draft_len;
  if (v->has_draft_width) out->has_draft_width = true, out->draft_width = v->draft_width;
  if (v->has_radii) {
    out->has_radii = true;
    out->radii_count = v->radii_count;
    memcpy(out->radii, v->radii, sizeof v->radii[0] * v->radii_count);
  }
  out->has_model = true;
  snprintf(out->model, sizeof out->model, "%s", c->model);
  out->has_unnorm_key = true;
  snprintf(out->unnorm_key, sizeof out->unnorm_key, "%s", c->unnorm_key);
}
