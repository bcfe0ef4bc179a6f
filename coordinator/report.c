/* report.c: the campaign report. Owns reading a campaign's journal for the report (read-only), the
 * statistics (Wilson, Newcombe, Fisher, quantiles), and the three renderings: report.json (jansson),
 * report.md and report.html (self-contained, charts as inline SVG, no script, no external URL).
 * It does not own the journal's schema (journal.c) or the config (config.c): it reads both through
 * their APIs. docs/report.md says what every figure means; keep it in step with s_json below.
 *
 * Counting rules, in one place:
 *   - An episode's state is the journal's, except that an episode with a result is done (the results
 *     are read after the episodes, so a result that arrived in between still counts once).
 *   - Trials of a cell are its done episodes; abandoned ones are listed apart, never as failures.
 *   - A figure without data is NAN here, null in JSON and "—" in Markdown and HTML. */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "journal.h"

#ifndef RSD_VERSION
#error "RSD_VERSION (the project version from CMake) must be defined"
#endif
#define S_CODE_VERSION "rsd " RSD_VERSION
#define S_DASH "\xe2\x80\x94" /* "—": no data */
#define S_LAT_IN 4           /* per-chunk latency columns in the journal: queue, encode, decode, total (journal.h) */
#define S_ACTION_DIM 7       /* an action on the wire: 6 arm deltas, then the gripper (docs/simulation.md) */
#define S_GRIPPER 6

/* The per-chunk latencies a variant keeps: the journal's four, then service = queue + encode + decode (the GPU
 * worker's time from a request's arrival to its answer; total is the sim worker's wait, docs/report.md). */
enum { S_QUEUE, S_ENCODE, S_DECODE, S_TOTAL, S_SERVICE, S_LAT_COLS };
static const char *const s_lat_names[S_LAT_COLS] = {"queue", "encode", "decode", "total", "service"};
static const char *const s_video_exts[] = {"png", "webm", "mp4"};
/* Paul Tol's "bright" qualitative scheme, then a few more: one colour per variant. */
static const char *const s_palette[] = {"#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee",
                                        "#aa3377", "#bbbbbb", "#000000", "#994f00", "#006cd1"};
#define S_PALETTE_N (sizeof s_palette / sizeof s_palette[0])
/* queue, encode, decode: greys and a dark indigo, apart from the variants' colours */
static const char *const s_split_colors[3] = {"#cfcfcf", "#8f8f8f", "#332288"};

const char *co_report_strerror(co_report_err_t code) {
  switch (code) {
    case CO_REPORT_OK:
      return "ok";
#define S_CASE_(name, num, text) \
  case CO_REPORT_ERR_##name:     \
    return text;
      CO_REPORT_ERRORS(S_CASE_)
#undef S_CASE_
  }
  return "unknown error code";
}

static co_report_err_t s_fail(co_report_error_t *err, co_report_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static co_report_err_t s_fail(co_report_error_t *err, co_report_err_t code, const char *fmt, ...) {
  if (err) {
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- statistics ------------------------------------------------------------------------------- */
bool co_report_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi) {
  if (n == 0 || k > n) return false;
  double nn = (double)n, p = (double)k / nn, z2 = z * z;
  double den = 1.0 + z2 / nn;
  double centre = (p + z2 / (2.0 * nn)) / den;
  double half = z * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn)) / den;
  *lo = k == 0 ? 0.0 : fmax(0.0, centre - half);
  *hi = k == n ? 1.0 : fmin(1.0, centre + half);
  return true;
}

bool co_report_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z, double *diff, double *lo,
                        double *hi) {
  double l1, u1, l2, u2;
  if (!co_report_wilson(k1, n1, z, &l1, &u1) || !co_report_wilson(k2, n2, z, &l2, &u2)) return false;
  double p1 = (double)k1 / (double)n1, p2 = (double)k2 / (double)n2, d = p1 - p2;
  *diff = d;
  *lo = d - sqrt((p1 - l1) * (p1 - l1) + (u2 - p2) * (u2 - p2));
  *hi = d + sqrt((u1 - p1) * (u1 - p1) + (p2 - l2) * (p2 - l2));
  return true;
}

static double s_lchoose(double n, double k) { return lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0); }

double co_report_fisher_p(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t r1 = a + b, r2 = c + d, c1 = a + c, n = r1 + r2;
  if (r1 == 0 || r2 == 0 || c1 == 0 || c1 == n) return 1.0;
  double lden = s_lchoose((double)n, (double)c1);
  uint64_t lo = c1 > r2 ? c1 - r2 : 0, hi = r1 < c1 ? r1 : c1;
  double lobs = s_lchoose((double)r1, (double)a) + s_lchoose((double)r2, (double)(c1 - a)) - lden;
  double p = 0.0;
  for (uint64_t x = lo; x <= hi; x++) {
    double l = s_lchoose((double)r1, (double)x) + s_lchoose((double)r2, (double)(c1 - x)) - lden;
    if (l <= lobs + 1e-7) p += exp(l); /* log(1 + 1e-7) ~ 1e-7: "no more likely", with float slack */
  }
  return p > 1.0 ? 1.0 : p;
}

double co_report_quantile(const double *sorted, size_t n, double q) {
  if (n == 0) return NAN;
  double pos = q * (double)(n - 1);
  size_t i = (size_t)floor(pos);
  if (i + 1 >= n) return sorted[n - 1];
  double f = pos - (double)i;
  return sorted[i] + (sorted[i + 1] - sorted[i]) * f;
}

/* ---- what the report holds -------------------------------------------------------------------- */
typedef struct {
  double p50, p95, p99, mean; /* NAN without data */
} s_dist_t;

/* An episode as the report sees it (compact: the journal's row is 2 kB). */
typedef struct {
  uint32_t v, task, trial, attempts;
  co_episode_state_t state;
  char *last_error; /* owned; NULL when none */
  char *digest;     /* owned; NULL when none: RESULT.actions_digest */
  float *first;     /* owned; NULL when none: RESULT.first_actions decoded, first_n x S_ACTION_DIM */
  uint32_t first_n;
} s_ep_t;

/* A failed or abandoned episode, for the lists. */
typedef struct {
  uint32_t task, trial, steps, attempts;
  char *reason; /* owned; nullable: failure reason, or last infrastructure error */
  char *worker; /* owned; nullable */
  char *video;  /* owned; nullable: link target */
} s_item_t;

typedef struct {
  s_item_t *v;
  size_t n, cap;
} s_items_t;

typedef struct {
  uint64_t by_state[CO_EPISODE_STATE_COUNT_];
  uint64_t total, successes, attempts;
  uint64_t steps, steps_success; /* sums over done episodes */
} s_cell_t;

typedef struct {
  char name[MSG_NAME_MAX + 1];
  int cfg;          /* index into the config's variants, or -1 (config unreadable) */
  s_cell_t all;     /* over every task */
  s_cell_t *cells;  /* [ntasks], owned */
  uint64_t ep_wall_ms, ep_wall_n; /* RESULT.wall_ms summed, over that many results */
  uint64_t chunks, chunks_n;      /* RESULT.chunks summed over results that carry it */
  uint64_t main_fw, main_fw_chunks; /* over results with both main_forwards and chunks */
  uint64_t draft_fw, draft_fw_chunks;
  uint64_t proposed[MSG_MAX_LAYERS], accepted[MSG_MAX_LAYERS];
  uint32_t layers;    /* highest proposed/accepted count seen */
  uint64_t verifies;  /* draft_forwards of results that carry acceptance arrays */
  bool has_verifies;
  double *lat[S_LAT_COLS]; /* owned: per chunk, us */
  size_t lat_n, lat_cap;
  s_dist_t dist[S_LAT_COLS];
  s_items_t failed, abandoned;
  s_items_t succeeded_video; /* successful episodes with a rollout video (video policy `all`) */
  uint64_t batch_hist[MSG_MAX_LAYERS]; /* chunks per batch-size bucket (RESULT.batch_hist summed) */
  uint32_t batch_buckets;              /* buckets seen (0: no data) */
} s_var_t;

typedef struct {
  const char *dir;
  bool same_dir;           /* output goes into dir: video links relative */
  char *videos_prefix;     /* owned: what a link starts with ("videos/" or "/abs/dir/videos/") */
  char *name, *config_json, *config_hash, *journal_version; /* owned copies of the campaign row */
  int64_t created_us, updated_us, generated_us;
  uint64_t wall_ms;
  bool has_cfg;
  co_config_t cfg;
  char cfg_error[1024];
  s_var_t *vars; /* owned */
  size_t nv;
  uint32_t *tasks; /* owned, ascending */
  size_t nt;
  s_ep_t *eps; /* owned, sorted by (v, task, trial) */
  size_t neps;
  int baseline;              /* index into vars, or -1 */
  const char *baseline_rule; /* static text */
  uint64_t events[CO_EVENT_COUNT_], workers_seen;
  s_cell_t total;
  uint64_t steps, chunks, steps_n;
  uint64_t chunks_n; /* results that carry a chunk count (none for expert-only campaigns) */
  int64_t last_received_us;
  double wall_s; /* NAN when unknown */
  const char *wall_source;
  uint64_t first_bad; /* results whose first_actions is not whole actions of hex f32 (left out, noted) */
} s_rep_t;

static char *s_dup(const char *s) { return s ? strdup(s) : NULL; }

static void s_rep_free(s_rep_t *r) {
  for (size_t i = 0; i < r->nv; i++) {
    s_var_t *v = &r->vars[i];
    free(v->cells);
    for (int c = 0; c < S_LAT_COLS; c++) free(v->lat[c]);
    s_items_t *lists[3] = {&v->failed, &v->abandoned, &v->succeeded_video};
    for (int l = 0; l < 3; l++) {
      for (size_t k = 0; k < lists[l]->n; k++) {
        free(lists[l]->v[k].reason);
        free(lists[l]->v[k].worker);
        free(lists[l]->v[k].video);
      }
      free(lists[l]->v);
    }
  }
  for (size_t i = 0; i < r->neps; i++) {
    free(r->eps[i].last_error);
    free(r->eps[i].digest);
    free(r->eps[i].first);
  }
  free(r->eps);
  free(r->vars);
  free(r->tasks);
  free(r->name);
  free(r->config_json);
  free(r->config_hash);
  free(r->journal_version);
  free(r->videos_prefix);
  memset(r, 0, sizeof *r);
}

static int s_cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static int s_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int s_cmp_ep(const void *a, const void *b) {
  const s_ep_t *x = a, *y = b;
  if (x->v != y->v) return x->v < y->v ? -1 : 1;
  if (x->task != y->task) return x->task < y->task ? -1 : 1;
  return x->trial < y->trial ? -1 : x->trial > y->trial;
}

static int s_cmp_item(const void *a, const void *b) {
  const s_item_t *x = a, *y = b;
  if (x->task != y->task) return x->task < y->task ? -1 : 1;
  return x->trial < y->trial ? -1 : x->trial > y->trial;
}

static int s_var_find(const s_rep_t *r, const char *name) {
  for (size_t i = 0; i < r->nv; i++)
    if (strcmp(r->vars[i].name, name) == 0) return (int)i;
  return -1;
}

static int s_task_index(const s_rep_t *r, uint32_t task) {
  const uint32_t *p = r->nt ? bsearch(&task, r->tasks, r->nt, sizeof *r->tasks, s_cmp_u32) : NULL;
  return p ? (int)(p - r->tasks) : -1;
}

static bool s_items_add(s_items_t *l, const s_item_t *it) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    s_item_t *nv = realloc(l->v, cap * sizeof *nv);
    if (!nv) return false;
    l->v = nv;
    l->cap = cap;
  }
  l->v[l->n++] = *it;
  return true;
}

/* The link to an episode's rollout video under dir/videos/, or NULL when there is none. */
static char *s_video(const s_rep_t *r, const char *variant, uint32_t task, uint32_t trial) {
  for (size_t e = 0; e < sizeof s_video_exts / sizeof s_video_exts[0]; e++) {
    char file[MSG_NAME_MAX + 64], path[PATH_MAX];
    snprintf(file, sizeof file, "%s_t%" PRIu32 "_r%" PRIu32 ".%s", variant, task, trial, s_video_exts[e]);
    snprintf(path, sizeof path, "%s/%s/%s", r->dir, CO_REPORT_VIDEOS_DIR, file);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      size_t len = strlen(r->videos_prefix) + strlen(file) + 1;
      char *link = malloc(len);
      if (link) snprintf(link, len, "%s%s", r->videos_prefix, file);
      return link;
    }
  }
  return NULL;
}

/* ---- reading the journal ---------------------------------------------------------------------- */
static co_report_err_t s_jfail(co_report_error_t *err, const char *dir, const co_journal_error_t *je) {
  return s_fail(err, je->code == CO_JOURNAL_ERR_NOMEM ? CO_REPORT_ERR_NOMEM : CO_REPORT_ERR_JOURNAL,
                "journal in %s: %s", dir, je->text);
}

/* Pass 1: the episodes define the variants (insertion = config order), the tasks and the states. */
static co_report_err_t s_read_episodes(s_rep_t *r, co_journal_t *j, co_report_error_t *err) {
  co_journal_error_t je;
  co_journal_iter_t *it = co_journal_episodes(j, CO_EPISODE_STATE_COUNT_, &je);
  if (!it) return s_jfail(err, r->dir, &je);
  size_t cap_eps = 0, cap_vars = 0, cap_tasks = 0;
  co_episode_t *e = malloc(sizeof *e);
  co_report_err_t rc = e ? CO_REPORT_OK : CO_REPORT_ERR_NOMEM;
  while (rc == CO_REPORT_OK && co_journal_episodes_next(it, e, &je)) {
    int vi = s_var_find(r, e->key.variant);
    if (vi < 0) {
      if (r->nv == cap_vars) {
        cap_vars = cap_vars ? cap_vars * 2 : 8;
        s_var_t *nv = realloc(r->vars, cap_vars * sizeof *nv);
        if (!nv) {
          rc = CO_REPORT_ERR_NOMEM;
          break;
        }
        r->vars = nv;
      }
      s_var_t *v = &r->vars[r->nv];
      memset(v, 0, sizeof *v);
      snprintf(v->name, sizeof v->name, "%s", e->key.variant);
      v->cfg = r->has_cfg ? co_config_variant_find(&r->cfg, v->name) : -1;
      vi = (int)r->nv++;
    }
    bool known_task = false;
    for (size_t t = r->nt; t-- > 0 && !known_task;) known_task = r->tasks[t] == e->key.task;
    if (!known_task) {
      if (r->nt == cap_tasks) {
        cap_tasks = cap_tasks ? cap_tasks * 2 : 16;
        uint32_t *nt = realloc(r->tasks, cap_tasks * sizeof *nt);
        if (!nt) {
          rc = CO_REPORT_ERR_NOMEM;
          break;
        }
        r->tasks = nt;
      }
      r->tasks[r->nt++] = e->key.task;
    }
    if (r->neps == cap_eps) {
      cap_eps = cap_eps ? cap_eps * 2 : 256;
      s_ep_t *ne = realloc(r->eps, cap_eps * sizeof *ne);
      if (!ne) {
        rc = CO_REPORT_ERR_NOMEM;
        break;
      }
      r->eps = ne;
    }
    s_ep_t *x = &r->eps[r->neps++];
    *x = (s_ep_t){.v = (uint32_t)vi, .task = e->key.task, .trial = e->key.trial, .attempts = e->attempts,
                  .state = e->state, .last_error = NULL};
    if (e->last_error[0] && !(x->last_error = strdup(e->last_error))) rc = CO_REPORT_ERR_NOMEM;
  }
  if (rc == CO_REPORT_OK && je.code != CO_JOURNAL_OK) rc = s_jfail(err, r->dir, &je);
  else if (rc == CO_REPORT_ERR_NOMEM) s_fail(err, rc, "report of %s: out of memory reading episodes", r->dir);
  co_journal_iter_destroy(&it);
  free(e);
  if (rc) return rc;
  if (r->nt) qsort(r->tasks, r->nt, sizeof *r->tasks, s_cmp_u32);
  if (r->neps) qsort(r->eps, r->neps, sizeof *r->eps, s_cmp_ep);
  for (size_t i = 0; i < r->nv; i++)
    if (!(r->vars[i].cells = calloc(r->nt ? r->nt : 1, sizeof(s_cell_t))))
      return s_fail(err, CO_REPORT_ERR_NOMEM, "report of %s: out of memory", r->dir);
  return CO_REPORT_OK;
}

static bool s_lat_add(s_var_t *v, const float *row) {
  if (v->lat_n == v->lat_cap) {
    size_t cap = v->lat_cap ? v->lat_cap * 2 : 256;
    for (int c = 0; c < S_LAT_COLS; c++) {
      double *n = realloc(v->lat[c], cap * sizeof *n);
      if (!n) return false;
      v->lat[c] = n;
    }
    v->lat_cap = cap;
  }
  for (int c = 0; c < S_LAT_IN; c++) v->lat[c][v->lat_n] = row[c];
  v->lat[S_SERVICE][v->lat_n] = (double)row[S_QUEUE] + (double)row[S_ENCODE] + (double)row[S_DECODE];
  v->lat_n++;
  return true;
}

/* 0..15 for a lowercase hex digit, else -1. */
static int s_hexval(char ch) {
  return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* RESULT.first_actions (protocol §4.6): actions of S_ACTION_DIM little-endian f32 as lowercase hex. Returns
 * how many actions it holds with *out the floats (malloc'ed), 0 when the text is not that (nothing kept), or
 * -1 out of memory. */
static int s_first_actions(const char *hex, float **out) {
  size_t len = strlen(hex), per = 8 * S_ACTION_DIM;
  *out = NULL;
  if (len == 0 || len % per) return 0;
  size_t nf = len / 8;
  float *v = malloc(nf * sizeof *v);
  if (!v) return -1;
  for (size_t i = 0; i < nf; i++) {
    unsigned char b[4];
    for (int k = 0; k < 4; k++) {
      int hi = s_hexval(hex[8 * i + 2 * k]), lo = s_hexval(hex[8 * i + 2 * k + 1]);
      if (hi < 0 || lo < 0) {
        free(v);
        return 0;
      }
      b[k] = (unsigned char)(hi << 4 | lo);
    }
    memcpy(&v[i], b, sizeof v[i]); /* little-endian host (the journal's latency blobs assume it too) */
    if (!isfinite(v[i])) {
      free(v);
      return 0;
    }
  }
  *out = v;
  return (int)(nf / S_ACTION_DIM);
}

/* Pass 2: the results. */
static co_report_err_t s_read_results(s_rep_t *r, co_journal_t *j, co_report_error_t *err) {
  co_journal_error_t je;
  co_journal_iter_t *it = co_journal_results(j, NULL, &je);
  if (!it) return s_jfail(err, r->dir, &je);
  co_journal_result_t *row = malloc(sizeof *row);
  co_report_err_t rc = row ? CO_REPORT_OK : CO_REPORT_ERR_NOMEM;
  while (rc == CO_REPORT_OK && co_journal_results_next(it, row, &je)) {
    const msg_result_body_t *res = &row->r;
    int vi = s_var_find(r, res->variant), ti = s_task_index(r, res->task);
    s_ep_t key = {.v = (uint32_t)(vi < 0 ? 0 : vi), .task = res->task, .trial = res->trial};
    s_ep_t *ep = vi < 0 || ti < 0 ? NULL : bsearch(&key, r->eps, r->neps, sizeof *r->eps, s_cmp_ep);
    if (!ep) continue; /* cannot happen: results reference episodes (foreign key), and episodes stay */
    ep->state = CO_EPISODE_DONE;
    s_var_t *v = &r->vars[vi];
    if (res->has_actions_digest && !ep->digest && !(ep->digest = strdup(res->actions_digest)))
      rc = CO_REPORT_ERR_NOMEM;
    if (res->has_first_actions && !ep->first && rc == CO_REPORT_OK) {
      int n = s_first_actions(res->first_actions, &ep->first);
      if (n < 0) rc = CO_REPORT_ERR_NOMEM;
      else if (n == 0) r->first_bad++;
      else ep->first_n = (uint32_t)n;
    }
    if (res->has_batch_hist) {
      for (uint32_t k = 0; k < res->batch_hist_count && k < MSG_MAX_LAYERS; k++) v->batch_hist[k] += res->batch_hist[k];
      if (res->batch_hist_count > v->batch_buckets) v->batch_buckets = res->batch_hist_count;
    }
    s_cell_t *cell = &v->cells[ti];
    bool success = res->outcome == MSG_OUTCOME_SUCCESS;
    cell->successes += success;
    cell->steps += res->steps;
    if (success) cell->steps_success += res->steps;
    v->ep_wall_ms += res->wall_ms;
    v->ep_wall_n++;
    r->steps += res->steps;
    r->steps_n++;
    if (row->received_us > r->last_received_us) r->last_received_us = row->received_us;
    if (res->has_chunks) {
      v->chunks += res->chunks;
      v->chunks_n++;
      r->chunks += res->chunks;
      r->chunks_n++;
      if (res->has_main_forwards) {
        v->main_fw += res->main_forwards;
        v->main_fw_chunks += res->chunks;
      }
      if (res->has_draft_forwards) {
        v->draft_fw += res->draft_forwards;
        v->draft_fw_chunks += res->chunks;
      }
    }
    if (res->has_proposed && res->has_accepted) {
      uint32_t nl = res->proposed_count < res->accepted_count ? res->proposed_count : res->accepted_count;
      for (uint32_t l = 0; l < nl; l++) {
        v->proposed[l] += res->proposed[l];
        v->accepted[l] += res->accepted[l];
      }
      if (nl > v->layers) v->layers = nl;
      if (res->has_draft_forwards) {
        v->verifies += res->draft_forwards;
        v->has_verifies = true;
      }
    }
    for (size_t c = 0; c < row->latency_chunks && rc == CO_REPORT_OK; c++)
      if (!s_lat_add(v, row->latency + c * S_LAT_IN)) rc = CO_REPORT_ERR_NOMEM;
    if (success && rc == CO_REPORT_OK) {
      s_item_t item = {.task = res->task, .trial = res->trial, .steps = res->steps, .attempts = res->attempt};
      item.video = s_video(r, v->name, res->task, res->trial);
      if (item.video && !s_items_add(&v->succeeded_video, &item)) {
        free(item.video);
        rc = CO_REPORT_ERR_NOMEM;
      }
    }
    if (!success && rc == CO_REPORT_OK) {
      s_item_t item = {.task = res->task, .trial = res->trial, .steps = res->steps, .attempts = res->attempt};
      item.reason = res->has_reason ? s_dup(res->reason) : NULL;
      item.worker = res->has_worker ? s_dup(res->worker) : NULL;
      item.video = s_video(r, v->name, res->task, res->trial);
      if ((res->has_reason && !item.reason) || (res->has_worker && !item.worker) || !s_items_add(&v->failed, &item)) {
        free(item.reason);
        free(item.worker);
        free(item.video);
        rc = CO_REPORT_ERR_NOMEM;
      }
    }
  }
  if (rc == CO_REPORT_OK && je.code != CO_JOURNAL_OK) rc = s_jfail(err, r->dir, &je);
  else if (rc == CO_REPORT_ERR_NOMEM) s_fail(err, rc, "report of %s: out of memory reading results", r->dir);
  co_journal_iter_destroy(&it);
  free(row);
  return rc;
}

/* Cells from the episodes' final states; the abandoned lists; latency distributions; the baseline. */
static co_report_err_t s_aggregate(s_rep_t *r, co_report_error_t *err) {
  for (size_t i = 0; i < r->neps; i++) {
    const s_ep_t *e = &r->eps[i];
    s_var_t *v = &r->vars[e->v];
    s_cell_t *cell = &v->cells[s_task_index(r, e->task)];
    cell->total++;
    cell->by_state[e->state]++;
    cell->attempts += e->attempts;
    if (e->state == CO_EPISODE_ABANDONED) {
      s_item_t item = {.task = e->task, .trial = e->trial, .attempts = e->attempts};
      item.reason = s_dup(e->last_error);
      if ((e->last_error && !item.reason) || !s_items_add(&v->abandoned, &item)) {
        free(item.reason);
        return s_fail(err, CO_REPORT_ERR_NOMEM, "report of %s: out of memory", r->dir);
      }
    }
  }
  for (size_t i = 0; i < r->nv; i++) {
    s_var_t *v = &r->vars[i];
    for (size_t t = 0; t < r->nt; t++) {
      const s_cell_t *c = &v->cells[t];
      v->all.total += c->total;
      v->all.successes += c->successes;
      v->all.attempts += c->attempts;
      v->all.steps += c->steps;
      v->all.steps_success += c->steps_success;
      for (int s = 0; s < CO_EPISODE_STATE_COUNT_; s++) v->all.by_state[s] += c->by_state[s];
    }
    r->total.total += v->all.total;
    r->total.successes += v->all.successes;
    r->total.attempts += v->all.attempts;
    for (int s = 0; s < CO_EPISODE_STATE_COUNT_; s++) r->total.by_state[s] += v->all.by_state[s];
    for (int c = 0; c < S_LAT_COLS; c++) {
      v->dist[c] = (s_dist_t){NAN, NAN, NAN, NAN};
      if (!v->lat_n) continue;
      double sum = 0;
      for (size_t k = 0; k < v->lat_n; k++) sum += v->lat[c][k];
      qsort(v->lat[c], v->lat_n, sizeof(double), s_cmp_double);
      v->dist[c] = (s_dist_t){co_report_quantile(v->lat[c], v->lat_n, 0.50),
                              co_report_quantile(v->lat[c], v->lat_n, 0.95),
                              co_report_quantile(v->lat[c], v->lat_n, 0.99), sum / (double)v->lat_n};
    }
    if (v->failed.n) qsort(v->failed.v, v->failed.n, sizeof *v->failed.v, s_cmp_item);
    if (v->abandoned.n) qsort(v->abandoned.v, v->abandoned.n, sizeof *v->abandoned.v, s_cmp_item);
  }
  /* The baseline: the config's (baseline: true, else its first ar variant), else the first variant. */
  r->baseline = -1;
  if (r->has_cfg && r->cfg.baseline >= 0) {
    r->baseline = s_var_find(r, r->cfg.variants[r->cfg.baseline].name);
    r->baseline_rule = "the config's baseline: the variant with baseline: true, else the first ar variant";
  }
  if (r->baseline < 0 && r->nv > 0) {
    r->baseline = 0;
    r->baseline_rule = "the first variant, since the config names no baseline and has no ar variant";
  }
  /* Wall time: the coordinator's accumulated run time; else first journal write to last result. */
  r->wall_s = NAN;
  r->wall_source = NULL;
  if (r->wall_ms > 0) {
    r->wall_s = (double)r->wall_ms / 1000.0;
    r->wall_source = "coordinator run time accumulated in the journal";
  } else if (r->last_received_us > r->created_us && r->created_us > 0) {
    r->wall_s = (double)(r->last_received_us - r->created_us) / 1e6;
    r->wall_source = "from the journal's creation to the last stored result (includes any time stopped)";
  }
  return CO_REPORT_OK;
}

static co_report_err_t s_load(s_rep_t *r, const char *dir, co_report_error_t *err) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) return s_jfail(err, dir, &je);
  co_report_err_t rc = CO_REPORT_OK;
  co_journal_info_t info;
  if (co_journal_info(j, &info, &je)) {
    rc = s_jfail(err, dir, &je);
    goto done;
  }
  r->name = s_dup(info.name ? info.name : "");
  r->config_json = s_dup(info.config_json ? info.config_json : "");
  r->config_hash = s_dup(info.config_hash);
  r->journal_version = s_dup(info.code_version);
  r->created_us = info.created_us;
  r->updated_us = info.updated_us;
  r->wall_ms = info.wall_ms;
  if (!r->name || !r->config_json || (info.config_hash && !r->config_hash) ||
      (info.code_version && !r->journal_version)) {
    rc = s_fail(err, CO_REPORT_ERR_NOMEM, "report of %s: out of memory", dir);
    goto done;
  }
  co_config_error_t ce;
  r->has_cfg = co_config_from_json(r->config_json, strlen(r->config_json), &r->cfg, &ce) == CO_CONFIG_OK;
  if (!r->has_cfg) snprintf(r->cfg_error, sizeof r->cfg_error, "%s", ce.text);
  if ((rc = s_read_episodes(r, j, err)) || (rc = s_read_results(r, j, err))) goto done;
  if (co_journal_event_counts(j, r->events, &r->workers_seen, &je)) {
    rc = s_jfail(err, dir, &je);
    goto done;
  }
  rc = s_aggregate(r, err);
done:
  co_journal_close(&j);
  return rc;
}

/* ---- derived figures, shared by the three renderings ------------------------------------------ */
static double s_div(double a, double b) { return b > 0 ? a / b : NAN; }
static uint64_t s_done(const s_cell_t *c) { return c->by_state[CO_EPISODE_DONE]; }
static double s_rate(const s_cell_t *c) { return s_div((double)c->successes, (double)s_done(c)); }

static void s_wilson(const s_cell_t *c, double *lo, double *hi) {
  if (!co_report_wilson(c->successes, s_done(c), CO_REPORT_Z95, lo, hi)) *lo = *hi = NAN;
}

static double s_mf_per_chunk(const s_var_t *v) { return s_div((double)v->main_fw, (double)v->main_fw_chunks); }

static double s_accept_rate(const s_var_t *v, uint32_t l) {
  return s_div((double)v->accepted[l], (double)v->proposed[l]);
}

static double s_accept_overall(const s_var_t *v) {
  uint64_t p = 0, a = 0;
  for (uint32_t l = 0; l < v->layers; l++) p += v->proposed[l], a += v->accepted[l];
  return s_div((double)a, (double)p);
}

static double s_accepted_per_verify(const s_var_t *v) {
  if (!v->has_verifies || v->layers == 0) return NAN;
  uint64_t a = 0;
  for (uint32_t l = 0; l < v->layers; l++) a += v->accepted[l];
  return s_div((double)a, (double)v->verifies);
}

/* Variant i against the baseline. */
typedef struct {
  bool has;                 /* i is not the baseline and there is one */
  double diff, lo, hi, p;   /* success difference (variant - baseline), its 95% interval, Fisher p */
  double decode_speedup;    /* baseline mean decode us / variant's */
  double latency_speedup;   /* baseline p50 total us / variant's */
  double service_speedup;   /* baseline p50 service us / variant's */
  double main_fw_ratio;     /* variant main forwards per chunk / baseline's */
  uint64_t compared, identical; /* episodes with an actions digest on both sides, and of those equal ones */
  /* The first actions (RESULT.first_actions) against the baseline's, over pairs that both carry them: the
   * same observation, so this is the action-space deviation of a lossy mode. Arm: dimensions other than the
   * gripper; gripper: actions whose gripper command has another sign. */
  uint64_t first_pairs, first_actions, grip_differ;
  double arm_abs_sum, arm_abs_max; /* over first_actions x (S_ACTION_DIM - 1) values */
} s_cmp_t;

static s_cmp_t s_compare(const s_rep_t *r, size_t i) {
  s_cmp_t c = {.has = false, .diff = NAN, .lo = NAN, .hi = NAN, .p = NAN, .decode_speedup = NAN,
               .latency_speedup = NAN, .service_speedup = NAN, .main_fw_ratio = NAN};
  if (r->baseline < 0 || (size_t)r->baseline == i) return c;
  const s_var_t *v = &r->vars[i], *b = &r->vars[r->baseline];
  c.has = true;
  uint64_t kv = v->all.successes, nv = s_done(&v->all), kb = b->all.successes, nb = s_done(&b->all);
  if (co_report_newcombe(kv, nv, kb, nb, CO_REPORT_Z95, &c.diff, &c.lo, &c.hi))
    c.p = co_report_fisher_p(kv, nv - kv, kb, nb - kb);
  c.decode_speedup = s_div(b->dist[S_DECODE].mean, v->dist[S_DECODE].mean);
  c.latency_speedup = s_div(b->dist[S_TOTAL].p50, v->dist[S_TOTAL].p50);
  c.service_speedup = s_div(b->dist[S_SERVICE].p50, v->dist[S_SERVICE].p50);
  c.main_fw_ratio = s_div(s_mf_per_chunk(v), s_mf_per_chunk(b));
  /* Each (task, trial) the variant and the baseline both finished: the lossless check (equal actions digests)
   * and the first actions' deviation (the same first observation). */
  for (size_t e = 0; e < r->neps; e++) {
    const s_ep_t *ep = &r->eps[e];
    if (ep->v != (uint32_t)i || (!ep->digest && !ep->first)) continue;
    s_ep_t key = {.v = (uint32_t)r->baseline, .task = ep->task, .trial = ep->trial};
    const s_ep_t *be = bsearch(&key, r->eps, r->neps, sizeof *r->eps, s_cmp_ep);
    if (!be) continue;
    if (ep->digest && be->digest) {
      c.compared++;
      c.identical += strcmp(ep->digest, be->digest) == 0;
    }
    if (!ep->first || !be->first) continue;
    c.first_pairs++;
    uint32_t n = ep->first_n < be->first_n ? ep->first_n : be->first_n;
    for (uint32_t k = 0; k < n; k++) {
      const float *va = ep->first + (size_t)k * S_ACTION_DIM, *ba = be->first + (size_t)k * S_ACTION_DIM;
      c.first_actions++;
      c.grip_differ += (va[S_GRIPPER] > 0) != (ba[S_GRIPPER] > 0);
      for (int d = 0; d < S_ACTION_DIM; d++) {
        if (d == S_GRIPPER) continue;
        double x = fabs((double)va[d] - (double)ba[d]);
        c.arm_abs_sum += x;
        if (x > c.arm_abs_max) c.arm_abs_max = x;
      }
    }
  }
  return c;
}

/* Mean |difference| over the arm values of the compared first actions; NAN without any. */
static double s_arm_mean(const s_cmp_t *c) {
  return s_div(c->arm_abs_sum, (double)c->first_actions * (S_ACTION_DIM - 1));
}

/* Buckets with data in any variant (0: none). */
static uint32_t s_batch_buckets(const s_rep_t *r) {
  uint32_t n = 0;
  for (size_t i = 0; i < r->nv; i++)
    if (r->vars[i].batch_buckets > n) n = r->vars[i].batch_buckets;
  return n;
}

static const char *s_policy_name(const s_rep_t *r, const s_var_t *v) {
  return v->cfg >= 0 ? msg_policy_names[r->cfg.variants[v->cfg].policy] : NULL;
}

static const char *s_mode_name(const s_rep_t *r, const s_var_t *v) {
  return v->cfg >= 0 && r->cfg.variants[v->cfg].has_mode ? msg_mode_names[r->cfg.variants[v->cfg].mode] : NULL;
}

/* "ar", "spec, draft_len 4", "spec, draft_len 4, draft_width 16", "expert", or "" when the config does not
 * say. */
static void s_describe(const s_rep_t *r, const s_var_t *v, char *out, size_t cap) {
  out[0] = '\0';
  if (v->cfg < 0) return;
  const co_variant_t *cv = &r->cfg.variants[v->cfg];
  int n = snprintf(out, cap, "%s", cv->has_mode ? msg_mode_names[cv->mode] : msg_policy_names[cv->policy]);
  if (cv->has_draft_len && n > 0 && (size_t)n < cap)
    n += snprintf(out + n, cap - (size_t)n, ", draft_len %" PRIu32, cv->draft_len);
  if (cv->has_draft_width && n > 0 && (size_t)n < cap)
    n += snprintf(out + n, cap - (size_t)n, ", draft_width %" PRIu32, cv->draft_width);
  if (cv->has_radii && n > 0 && (size_t)n < cap) {
    n += snprintf(out + n, cap - (size_t)n, ", radii");
    for (uint32_t k = 0; k < cv->radii_count && n > 0 && (size_t)n < cap; k++)
      n += snprintf(out + n, cap - (size_t)n, "%s%" PRIu32, k ? "," : " ", cv->radii[k]);
  }
}

/* Environment steps per second of episode time: sum of RESULT.steps over sum of RESULT.wall_ms. */
static double s_episode_steps_per_s(const s_var_t *v) {
  return s_div((double)v->all.steps, (double)v->ep_wall_ms / 1000.0);
}

/* Every episode done or abandoned (and there is at least one). */
static bool s_complete(const s_rep_t *r) {
  return r->total.total > 0 &&
         r->total.by_state[CO_EPISODE_DONE] + r->total.by_state[CO_EPISODE_ABANDONED] == r->total.total;
}

static double s_steps_per_s(const s_rep_t *r) { return isnan(r->wall_s) ? NAN : s_div((double)r->steps, r->wall_s); }
static double s_chunks_per_s(const s_rep_t *r) {
  return isnan(r->wall_s) || !r->chunks_n ? NAN : s_div((double)r->chunks, r->wall_s);
}

/* ---- report.json ------------------------------------------------------------------------------ */
static json_t *s_jnum(double x) { return isnan(x) || isinf(x) ? json_null() : json_real(x); }
static json_t *s_jint(uint64_t x) { return json_integer((json_int_t)x); }
static json_t *s_jstr(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *s_jinterval(double lo, double hi) {
  return isnan(lo) || isnan(hi) ? json_null() : json_pack("[o, o]", json_real(lo), json_real(hi));
}

static json_t *s_jcell(const s_cell_t *c) {
  double lo, hi;
  s_wilson(c, &lo, &hi);
  json_t *o = json_object();
  json_object_set_new(o, "successes", s_jint(c->successes));
  json_object_set_new(o, "trials", s_jint(s_done(c)));
  json_object_set_new(o, "success_rate", s_jnum(s_rate(c)));
  json_object_set_new(o, "wilson95", s_jinterval(lo, hi));
  json_object_set_new(o, "mean_steps", s_jnum(s_div((double)c->steps, (double)s_done(c))));
  json_object_set_new(o, "mean_steps_success", s_jnum(s_div((double)c->steps_success, (double)c->successes)));
  json_t *ep = json_object();
  json_object_set_new(ep, "total", s_jint(c->total));
  for (int s = 0; s < CO_EPISODE_STATE_COUNT_; s++)
    json_object_set_new(ep, co_episode_state_name((co_episode_state_t)s), s_jint(c->by_state[s]));
  json_object_set_new(o, "episodes", ep);
  json_object_set_new(o, "retries", s_jint(c->attempts));
  return o;
}

static json_t *s_jitems(const s_items_t *l, bool failed) {
  json_t *a = json_array();
  for (size_t k = 0; k < l->n; k++) {
    const s_item_t *it = &l->v[k];
    json_t *o = json_pack("{s:I, s:I}", "task", (json_int_t)it->task, "trial", (json_int_t)it->trial);
    if (failed) {
      json_object_set_new(o, "steps", s_jint(it->steps));
      json_object_set_new(o, "reason", s_jstr(it->reason));
      json_object_set_new(o, "worker", s_jstr(it->worker));
      json_object_set_new(o, "video", s_jstr(it->video));
    } else {
      json_object_set_new(o, "attempts", s_jint(it->attempts));
      json_object_set_new(o, "last_error", s_jstr(it->reason));
    }
    json_array_append_new(a, o);
  }
  return a;
}

/* {"bucket_min": [1, 2, 4, ...], "chunks": [...]} over n buckets, or null without data. */
static json_t *s_jbatch(const uint64_t *hist, uint32_t n) {
  if (!n) return json_null();
  json_t *lo = json_array(), *ch = json_array();
  for (uint32_t k = 0; k < n; k++) {
    json_array_append_new(lo, json_integer((json_int_t)1 << k));
    json_array_append_new(ch, json_integer((json_int_t)hist[k]));
  }
  return json_pack("{s:o, s:o}", "bucket_min", lo, "chunks", ch);
}

static json_t *s_jdecode(const s_var_t *v) {
  json_t *o = json_object();
  json_t *lat = json_null();
  if (v->lat_n) {
    lat = json_object();
    for (int c = 0; c < S_LAT_COLS; c++)
      json_object_set_new(lat, s_lat_names[c],
                          json_pack("{s:o, s:o, s:o, s:o}", "p50", s_jnum(v->dist[c].p50), "p95", s_jnum(v->dist[c].p95),
                                    "p99", s_jnum(v->dist[c].p99), "mean", s_jnum(v->dist[c].mean)));
  }
  json_object_set_new(o, "latency_chunks", s_jint(v->lat_n));
  json_object_set_new(o, "latency_us", lat);
  json_object_set_new(o, "chunks", v->chunks_n ? s_jint(v->chunks) : json_null());
  json_object_set_new(o, "main_forwards_per_chunk", s_jnum(s_mf_per_chunk(v)));
  json_object_set_new(o, "draft_forwards_per_chunk", s_jnum(s_div((double)v->draft_fw, (double)v->draft_fw_chunks)));
  json_t *rate = json_array(), *prop = json_array(), *acc = json_array();
  for (uint32_t l = 0; l < v->layers; l++) {
    json_array_append_new(rate, s_jnum(s_accept_rate(v, l)));
    json_array_append_new(prop, s_jint(v->proposed[l]));
    json_array_append_new(acc, s_jint(v->accepted[l]));
  }
  bool has = v->layers > 0;
  json_object_set_new(o, "acceptance_per_layer", has ? rate : (json_decref(rate), json_null()));
  json_object_set_new(o, "proposed_per_layer", has ? prop : (json_decref(prop), json_null()));
  json_object_set_new(o, "accepted_per_layer", has ? acc : (json_decref(acc), json_null()));
  json_object_set_new(o, "acceptance_rate", s_jnum(s_accept_overall(v)));
  json_object_set_new(o, "mean_accepted_layers_per_verify", s_jnum(s_accepted_per_verify(v)));
  json_object_set_new(o, "batch_size_histogram", s_jbatch(v->batch_hist, v->batch_buckets));
  return o;
}

static json_t *s_json(const s_rep_t *r) {
  json_t *root = json_object();
  json_object_set_new(root, "report_format", json_integer(1));
  json_object_set_new(root, "code_version", json_string(S_CODE_VERSION));
  json_object_set_new(root, "generated_us", json_integer(r->generated_us));
  json_t *camp = json_object();
  json_object_set_new(camp, "name", json_string(r->name));
  json_object_set_new(camp, "config_hash", s_jstr(r->config_hash));
  json_object_set_new(camp, "journal_code_version", s_jstr(r->journal_version));
  json_object_set_new(camp, "created_us", json_integer(r->created_us));
  json_object_set_new(camp, "updated_us", json_integer(r->updated_us));
  json_object_set_new(camp, "complete", json_boolean(s_complete(r)));
  json_object_set_new(root, "campaign", camp);
  json_error_t jerr;
  json_t *cfg = json_loads(r->config_json, 0, &jerr);
  json_object_set_new(root, "config", cfg ? cfg : json_string(r->config_json));
  json_object_set_new(root, "config_error", r->has_cfg ? json_null() : json_string(r->cfg_error));
  json_object_set_new(root, "model",
                      json_pack("{s:o, s:o, s:o}", "name", s_jstr(r->has_cfg && r->cfg.has_model ? r->cfg.model : NULL),
                                "hash", s_jstr(r->has_cfg && r->cfg.has_model_hash ? r->cfg.model_hash : NULL),
                                "dtype",
                                s_jstr(r->has_cfg && r->cfg.has_model ? co_dtype_names[r->cfg.model_dtype] : NULL)));
  json_object_set_new(root, "baseline", r->baseline >= 0 ? json_string(r->vars[r->baseline].name) : json_null());
  json_object_set_new(root, "baseline_rule", s_jstr(r->baseline_rule));
  json_object_set_new(root, "methods",
                      json_pack("{s:s, s:s, s:s, s:s}", "success_interval", "Wilson score, 95%", "difference_interval",
                                "Newcombe hybrid score (method 10), 95%", "test",
                                "Fisher exact, two-sided (unpaired)", "quantiles",
                                "linear interpolation between closest ranks"));
  json_t *tasks = json_array();
  for (size_t t = 0; t < r->nt; t++) json_array_append_new(tasks, json_integer(r->tasks[t]));
  json_object_set_new(root, "tasks", tasks);

  json_t *vars = json_array();
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    json_t *o = s_jcell(&v->all);
    json_object_set_new(o, "name", json_string(v->name));
    json_object_set_new(o, "policy", s_jstr(s_policy_name(r, v)));
    json_object_set_new(o, "mode", s_jstr(s_mode_name(r, v)));
    json_object_set_new(o, "baseline", json_boolean(r->baseline == (int)i));
    json_t *cells = json_array();
    for (size_t t = 0; t < r->nt; t++) {
      json_t *c = s_jcell(&v->cells[t]);
      json_object_set_new(c, "task", json_integer(r->tasks[t]));
      json_array_append_new(cells, c);
    }
    json_object_set_new(o, "tasks", cells);
    json_object_set_new(o, "decode", s_jdecode(v));
    json_object_set_new(o, "env_steps", s_jint(v->all.steps));
    json_object_set_new(o, "episode_steps_per_s", s_jnum(s_episode_steps_per_s(v)));
    s_cmp_t c = s_compare(r, i);
    json_t *cmp = json_null();
    if (c.has) {
      cmp = json_object();
      json_object_set_new(cmp, "baseline", json_string(r->vars[r->baseline].name));
      json_object_set_new(cmp, "success_diff", s_jnum(c.diff));
      json_object_set_new(cmp, "success_diff_newcombe95", s_jinterval(c.lo, c.hi));
      json_object_set_new(cmp, "fisher_p", s_jnum(c.p));
      json_object_set_new(cmp, "decode_speedup", s_jnum(c.decode_speedup));
      json_object_set_new(cmp, "latency_p50_speedup", s_jnum(c.latency_speedup));
      json_object_set_new(cmp, "service_p50_speedup", s_jnum(c.service_speedup));
      json_object_set_new(cmp, "main_forward_ratio", s_jnum(c.main_fw_ratio));
      json_object_set_new(cmp, "actions_identical",
                          c.compared ? json_pack("{s:I, s:I}", "compared", (json_int_t)c.compared, "identical",
                                                 (json_int_t)c.identical)
                                     : json_null());
      json_t *dev = json_null();
      if (c.first_pairs) {
        dev = json_object();
        json_object_set_new(dev, "pairs", s_jint(c.first_pairs));
        json_object_set_new(dev, "actions", s_jint(c.first_actions));
        json_object_set_new(dev, "arm_mean_abs", s_jnum(s_arm_mean(&c)));
        json_object_set_new(dev, "arm_max_abs", s_jnum(c.first_actions ? c.arm_abs_max : NAN));
        json_object_set_new(dev, "gripper_differ", s_jint(c.grip_differ));
      }
      json_object_set_new(cmp, "first_actions_deviation", dev);
    }
    json_object_set_new(o, "vs_baseline", cmp);
    json_object_set_new(o, "failed_episodes", s_jitems(&v->failed, true));
    json_object_set_new(o, "abandoned_episodes", s_jitems(&v->abandoned, false));
    json_array_append_new(vars, o);
  }
  json_object_set_new(root, "variants", vars);

  json_t *thr = json_object();
  json_object_set_new(thr, "wall_s", s_jnum(r->wall_s));
  json_object_set_new(thr, "wall_source", s_jstr(r->wall_source));
  json_object_set_new(thr, "env_steps", s_jint(r->steps));
  json_object_set_new(thr, "chunks", r->chunks_n ? s_jint(r->chunks) : json_null());
  json_object_set_new(thr, "env_steps_per_s", s_jnum(s_steps_per_s(r)));
  json_object_set_new(thr, "chunks_per_s", s_jnum(s_chunks_per_s(r)));
  json_object_set_new(root, "throughput", thr);

  json_t *infra = s_jcell(&r->total);
  json_object_del(infra, "mean_steps_success");
  json_object_set_new(infra, "workers_seen", s_jint(r->workers_seen));
  json_object_set_new(infra, "wall_s", s_jnum(r->wall_s));
  json_t *ev = json_object();
  for (int e = 0; e < CO_EVENT_COUNT_; e++) json_object_set_new(ev, co_event_name((co_event_t)e), s_jint(r->events[e]));
  json_object_set_new(infra, "events", ev);
  json_object_set_new(root, "infrastructure", infra);
  uint64_t total_hist[MSG_MAX_LAYERS] = {0};
  uint32_t nb = s_batch_buckets(r);
  for (size_t i = 0; i < r->nv; i++)
    for (uint32_t k = 0; k < nb; k++) total_hist[k] += r->vars[i].batch_hist[k];
  json_object_set_new(root, "batch_size_histogram", s_jbatch(total_hist, nb));
  json_t *notes = json_array();
  if (!nb) json_array_append_new(notes, json_string("batch_size_histogram: no result carries batch_hist"));
  bool any_digest = false;
  for (size_t e = 0; e < r->neps && !any_digest; e++) any_digest = r->eps[e].digest != NULL;
  if (!any_digest)
    json_array_append_new(notes, json_string("vs_baseline.actions_identical: no result carries actions_digest"));
  bool any_first = false;
  for (size_t e = 0; e < r->neps && !any_first; e++) any_first = r->eps[e].first != NULL;
  if (!any_first)
    json_array_append_new(notes, json_string("vs_baseline.first_actions_deviation: no result carries first_actions"));
  if (r->first_bad) {
    char t[160];
    snprintf(t, sizeof t, "vs_baseline.first_actions_deviation: %" PRIu64 " results with an unreadable first_actions "
             "left out", r->first_bad);
    json_array_append_new(notes, json_string(t));
  }
  json_object_set_new(root, "notes", notes);
  return root;
}

/* ---- formatting for Markdown and HTML --------------------------------------------------------- */
typedef struct {
  char s[64];
} s_str_t;

/* "k/n identical" for the lossless check, or a dash without data. */
static s_str_t s_identical(const s_cmp_t *c) {
  s_str_t o;
  if (!c->compared) snprintf(o.s, sizeof o.s, "%s", S_DASH);
  else snprintf(o.s, sizeof o.s, "%" PRIu64 "/%" PRIu64 "%s", c->identical, c->compared,
                c->identical == c->compared ? " identical" : " identical (differ!)");
  return o;
}

/* "0.0123 / 0.0456, gripper 1/64" for the first-actions deviation, or a dash without pairs. */
static s_str_t s_deviation(const s_cmp_t *c) {
  s_str_t o;
  if (!c->first_actions) snprintf(o.s, sizeof o.s, "%s", S_DASH);
  else snprintf(o.s, sizeof o.s, "%.4f / %.4f, gripper %" PRIu64 "/%" PRIu64, s_arm_mean(c), c->arm_abs_max,
                c->grip_differ, c->first_actions);
  return o;
}

/* The batch-size bucket label of index k: "1", "2-3", "4-7", ... */
static s_str_t s_bucket(uint32_t k) {
  s_str_t o;
  if (k == 0) snprintf(o.s, sizeof o.s, "1");
  else snprintf(o.s, sizeof o.s, "%u-%u", 1u << k, (1u << (k + 1)) - 1);
  return o;
}


static s_str_t s_pct(double x) {
  s_str_t o;
  if (isnan(x)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "%.1f%%", x * 100.0);
  return o;
}

static s_str_t s_fix(double x, int prec) {
  s_str_t o;
  if (isnan(x) || isinf(x)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "%.*f", prec, x);
  return o;
}

static s_str_t s_ms(double us) {
  s_str_t o;
  if (isnan(us)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "%.2f ms", us / 1000.0);
  return o;
}

/* "[lo%, hi%]" or "—". */
static s_str_t s_ci(double lo, double hi) {
  s_str_t o;
  if (isnan(lo) || isnan(hi)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "[%.1f%%, %.1f%%]", lo * 100.0, hi * 100.0);
  return o;
}

/* Signed percentage points: "+12.0 pp". */
static s_str_t s_pp(double x) {
  s_str_t o;
  if (isnan(x)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "%+.1f pp", x * 100.0);
  return o;
}

static s_str_t s_ppci(double lo, double hi) {
  s_str_t o;
  if (isnan(lo) || isnan(hi)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "[%+.1f, %+.1f] pp", lo * 100.0, hi * 100.0);
  return o;
}

static s_str_t s_pval(double p) {
  s_str_t o;
  if (isnan(p)) snprintf(o.s, sizeof o.s, S_DASH);
  else if (p < 0.0001) snprintf(o.s, sizeof o.s, "%.1e", p);
  else snprintf(o.s, sizeof o.s, "%.4f", p);
  return o;
}

static s_str_t s_ratio(double x) {
  s_str_t o;
  if (isnan(x) || isinf(x)) snprintf(o.s, sizeof o.s, S_DASH);
  else snprintf(o.s, sizeof o.s, "%.2f\xc3\x97", x); /* "×" */
  return o;
}

static s_str_t s_frac(const s_cell_t *c) {
  s_str_t o;
  snprintf(o.s, sizeof o.s, "%" PRIu64 "/%" PRIu64, c->successes, s_done(c));
  return o;
}

static s_str_t s_time(int64_t us) {
  s_str_t o;
  if (us <= 0) {
    snprintf(o.s, sizeof o.s, S_DASH);
    return o;
  }
  time_t t = (time_t)(us / 1000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(o.s, sizeof o.s, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return o;
}

static s_str_t s_dur(double s) {
  s_str_t o;
  if (isnan(s)) snprintf(o.s, sizeof o.s, S_DASH);
  else if (s < 120) snprintf(o.s, sizeof o.s, "%.1f s", s);
  else if (s < 7200) snprintf(o.s, sizeof o.s, "%.1f min", s / 60.0);
  else snprintf(o.s, sizeof o.s, "%.2f h", s / 3600.0);
  return o;
}

/* Markdown table cell text: '|' and newlines would break the row. */
static void s_md_text(FILE *f, const char *s) {
  if (!s || !*s) {
    fputs(S_DASH, f);
    return;
  }
  for (const char *p = s; *p; p++) {
    if (*p == '|') fputs("\\|", f);
    else if (*p == '\n' || *p == '\r') fputc(' ', f);
    else fputc(*p, f);
  }
}

static void s_html_text(FILE *f, const char *s) {
  if (!s || !*s) {
    fputs(S_DASH, f);
    return;
  }
  for (const char *p = s; *p; p++) {
    switch (*p) {
      case '<': fputs("&lt;", f); break;
      case '>': fputs("&gt;", f); break;
      case '&': fputs("&amp;", f); break;
      case '"': fputs("&quot;", f); break;
      case '\'': fputs("&#39;", f); break;
      default: fputc(*p, f);
    }
  }
}

static const char *s_status_line(const s_rep_t *r, char *buf, size_t cap) {
  const s_cell_t *t = &r->total;
  bool complete = s_complete(r);
  if (t->total == 0) {
    snprintf(buf, cap, "no episodes in the journal yet");
    return buf;
  }
  snprintf(buf, cap,
           "%s: %" PRIu64 " of %" PRIu64 " episodes done, %" PRIu64 " abandoned, %" PRIu64 " leased, %" PRIu64
           " waiting",
           complete ? "complete" : "incomplete (running or interrupted)", t->by_state[CO_EPISODE_DONE], t->total,
           t->by_state[CO_EPISODE_ABANDONED], t->by_state[CO_EPISODE_LEASED],
           t->by_state[CO_EPISODE_PENDING] + t->by_state[CO_EPISODE_RETRYING]);
  return buf;
}

/* ---- report.md -------------------------------------------------------------------------------- */
static void s_markdown(FILE *f, const s_rep_t *r) {
  char buf[512], desc[256];
  fprintf(f, "# Campaign report: ");
  s_md_text(f, r->name);
  fprintf(f, "\n\n");
  fprintf(f, "- Status: %s\n", s_status_line(r, buf, sizeof buf));
  fprintf(f, "- Model: ");
  s_md_text(f, r->has_cfg && r->cfg.has_model ? r->cfg.model : NULL);
  fprintf(f, " (hash: ");
  s_md_text(f, r->has_cfg && r->cfg.has_model_hash ? r->cfg.model_hash : NULL);
  fprintf(f, "; model_dtype: %s)\n- Config hash: ",
          r->has_cfg && r->cfg.has_model ? co_dtype_names[r->cfg.model_dtype] : S_DASH);
  s_md_text(f, r->config_hash);
  fprintf(f, "\n- Journal created: %s by ", s_time(r->created_us).s);
  s_md_text(f, r->journal_version);
  fprintf(f, "; report generated: %s by %s\n", s_time(r->generated_us).s, S_CODE_VERSION);
  fprintf(f, "- Baseline: %s; chosen as %s\n", r->baseline >= 0 ? r->vars[r->baseline].name : S_DASH,
          r->baseline_rule ? r->baseline_rule : "nothing: no variants");
  if (!r->has_cfg) fprintf(f, "- The stored config could not be read: %s\n", r->cfg_error);
  fprintf(f, "\nSuccess rates carry 95%% Wilson score intervals; \"" S_DASH "\" means no data. See docs/report.md.\n");

  fprintf(f, "\n## Success per variant\n\n");
  fprintf(f, "| variant | decoding | successes/trials | success rate | 95%% CI | mean steps | done | total "
             "| abandoned | retries |\n");
  fprintf(f, "|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    double lo, hi;
    s_wilson(&v->all, &lo, &hi);
    s_describe(r, v, desc, sizeof desc);
    fprintf(f, "| %s%s | %s | %s | %s | %s | %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " |\n", v->name,
            r->baseline == (int)i ? " (baseline)" : "", desc[0] ? desc : S_DASH, s_frac(&v->all).s,
            s_pct(s_rate(&v->all)).s, s_ci(lo, hi).s, s_fix(s_div((double)v->all.steps, (double)s_done(&v->all)), 1).s,
            s_done(&v->all), v->all.total, v->all.by_state[CO_EPISODE_ABANDONED], v->all.attempts);
  }

  fprintf(f, "\n## Success per task\n\nEach cell: successes/trials, success rate [95%% CI], mean steps.\n\n| task |");
  for (size_t i = 0; i < r->nv; i++) fprintf(f, " %s |", r->vars[i].name);
  fprintf(f, "\n|---|");
  for (size_t i = 0; i < r->nv; i++) fprintf(f, "---|");
  fprintf(f, "\n");
  for (size_t t = 0; t < r->nt; t++) {
    fprintf(f, "| %" PRIu32 " |", r->tasks[t]);
    for (size_t i = 0; i < r->nv; i++) {
      const s_cell_t *c = &r->vars[i].cells[t];
      double lo, hi;
      s_wilson(c, &lo, &hi);
      fprintf(f, " %s, %s %s, %s |", s_frac(c).s, s_pct(s_rate(c)).s, s_ci(lo, hi).s,
              s_fix(s_div((double)c->steps, (double)s_done(c)), 1).s);
    }
    fprintf(f, "\n");
  }

  fprintf(f, "\n## Decoding\n\nLatency per action chunk (RESULT's latency frame): service = queue + encode + "
             "decode, the GPU worker's time from a request's arrival to its answer; p50 / p95 / p99 and means. "
             "Sim wait: from the sim worker sending the INFER to taking the ACTION, which also counts transport "
             "and the worker's steps and renders of its other episodes.\n\n");
  fprintf(f, "| variant | chunks | service p50 | service p95 | service p99 | queue p50 | encode p50 | decode p50 "
             "| mean queue | mean encode | mean decode | sim wait p50 | sim wait p99 | main fwd/chunk | acceptance "
             "| accepted layers/verify |\n");
  fprintf(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    const s_dist_t *d = v->dist;
    fprintf(f, "| %s | %" PRIu64 " | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", v->name,
            (uint64_t)v->lat_n, s_ms(d[S_SERVICE].p50).s, s_ms(d[S_SERVICE].p95).s, s_ms(d[S_SERVICE].p99).s,
            s_ms(d[S_QUEUE].p50).s, s_ms(d[S_ENCODE].p50).s, s_ms(d[S_DECODE].p50).s, s_ms(d[S_QUEUE].mean).s,
            s_ms(d[S_ENCODE].mean).s, s_ms(d[S_DECODE].mean).s, s_ms(d[S_TOTAL].p50).s, s_ms(d[S_TOTAL].p99).s,
            s_fix(s_mf_per_chunk(v), 2).s, s_pct(s_accept_overall(v)).s, s_fix(s_accepted_per_verify(v), 2).s);
  }
  uint32_t maxl = 0;
  for (size_t i = 0; i < r->nv; i++) maxl = r->vars[i].layers > maxl ? r->vars[i].layers : maxl;
  if (maxl) {
    fprintf(f, "\nDraft acceptance per RFSQ layer (accepted / proposed):\n\n| variant |");
    for (uint32_t l = 0; l < maxl; l++) fprintf(f, " layer %" PRIu32 " |", l);
    fprintf(f, "\n|---|");
    for (uint32_t l = 0; l < maxl; l++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (size_t i = 0; i < r->nv; i++) {
      const s_var_t *v = &r->vars[i];
      if (!v->layers) continue;
      fprintf(f, "| %s |", v->name);
      for (uint32_t l = 0; l < maxl; l++)
        fprintf(f, " %s |", l < v->layers ? s_pct(s_accept_rate(v, l)).s : S_DASH);
      fprintf(f, "\n");
    }
  }
  uint32_t nb = s_batch_buckets(r);
  if (!nb) {
    fprintf(f, "\nBatch sizes: " S_DASH " (no result carries batch sizes).\n");
  } else {
    fprintf(f, "\nAction chunks per GPU batch size:\n\n| variant |");
    for (uint32_t k = 0; k < nb; k++) fprintf(f, " %s |", s_bucket(k).s);
    fprintf(f, "\n|---|");
    for (uint32_t k = 0; k < nb; k++) fprintf(f, "---|");
    fprintf(f, "\n");
    for (size_t i = 0; i < r->nv; i++) {
      if (!r->vars[i].batch_buckets) continue;
      fprintf(f, "| %s |", r->vars[i].name);
      for (uint32_t k = 0; k < nb; k++) fprintf(f, " %" PRIu64 " |", r->vars[i].batch_hist[k]);
      fprintf(f, "\n");
    }
  }

  fprintf(f, "\n## Compared with the baseline\n\n");
  if (r->baseline < 0 || r->nv < 2) {
    fprintf(f, "Fewer than two variants: nothing to compare.\n");
  } else {
    fprintf(f, "Difference = variant − baseline; 95%% Newcombe hybrid score interval; two-sided Fisher exact test. "
               "Speedups are baseline ÷ variant.\n\n");
    fprintf(f, "| variant | baseline | success difference | 95%% CI | Fisher p | decode speedup (mean) "
               "| service speedup (p50) | main forwards ratio | actions vs baseline | first actions: arm mean / max "
               "abs difference, gripper differing |\n");
    fprintf(f, "|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < r->nv; i++) {
      s_cmp_t c = s_compare(r, i);
      if (!c.has) continue;
      fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r->vars[i].name, r->vars[r->baseline].name,
              s_pp(c.diff).s, s_ppci(c.lo, c.hi).s, s_pval(c.p).s, s_ratio(c.decode_speedup).s,
              s_ratio(c.service_speedup).s, s_ratio(c.main_fw_ratio).s, s_identical(&c).s, s_deviation(&c).s);
    }
  }

  fprintf(f, "\n## Throughput and infrastructure\n\n| figure | value |\n|---|---|\n");
  fprintf(f, "| wall time | %s |\n", s_dur(r->wall_s).s);
  fprintf(f, "| wall time source | %s |\n", r->wall_source ? r->wall_source : S_DASH);
  fprintf(f, "| environment steps | %" PRIu64 " |\n| environment steps/s | %s |\n", r->steps,
          s_fix(s_steps_per_s(r), 1).s);
  if (r->chunks_n) fprintf(f, "| action chunks | %" PRIu64 " |\n", r->chunks);
  else fprintf(f, "| action chunks | %s |\n", S_DASH);
  fprintf(f, "| chunks/s | %s |\n", s_fix(s_chunks_per_s(r), 2).s);
  fprintf(f, "| retries (infrastructure failures) | %" PRIu64 " |\n", r->total.attempts);
  fprintf(f, "| abandoned episodes | %" PRIu64 " |\n", r->total.by_state[CO_EPISODE_ABANDONED]);
  fprintf(f, "| workers seen | %" PRIu64 " |\n", r->workers_seen);
  for (int e = 0; e < CO_EVENT_COUNT_; e++)
    fprintf(f, "| events: %s | %" PRIu64 " |\n", co_event_name((co_event_t)e), r->events[e]);
  fprintf(f, "\nPer variant (steps/s of episode time: steps over the episodes' own wall time, one episode at a "
             "time):\n\n| variant | environment steps | action chunks | steps/s of episode time |\n|---|---|---|---|\n");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    fprintf(f, "| %s | %" PRIu64 " | %s | %s |\n", v->name, v->all.steps,
            v->chunks_n ? s_fix((double)v->chunks, 0).s : S_DASH, s_fix(s_episode_steps_per_s(v), 1).s);
  }

  fprintf(f, "\n## Failed episodes\n\n");
  size_t nfail = 0;
  for (size_t i = 0; i < r->nv; i++) nfail += r->vars[i].failed.n;
  if (!nfail) fprintf(f, "None.\n");
  else {
    fprintf(f, "| variant | task | trial | steps | reason | worker | video |\n|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < r->nv; i++)
      for (size_t k = 0; k < r->vars[i].failed.n; k++) {
        const s_item_t *it = &r->vars[i].failed.v[k];
        fprintf(f, "| %s | %" PRIu32 " | %" PRIu32 " | %" PRIu32 " | ", r->vars[i].name, it->task, it->trial, it->steps);
        s_md_text(f, it->reason);
        fprintf(f, " | ");
        s_md_text(f, it->worker);
        if (it->video) fprintf(f, " | [video](%s) |\n", it->video);
        else fprintf(f, " | " S_DASH " |\n");
      }
  }
  fprintf(f, "\n## Abandoned episodes\n\n");
  size_t naband = 0;
  for (size_t i = 0; i < r->nv; i++) naband += r->vars[i].abandoned.n;
  if (!naband) fprintf(f, "None.\n");
  else {
    fprintf(f, "| variant | task | trial | attempts | last error |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < r->nv; i++)
      for (size_t k = 0; k < r->vars[i].abandoned.n; k++) {
        const s_item_t *it = &r->vars[i].abandoned.v[k];
        fprintf(f, "| %s | %" PRIu32 " | %" PRIu32 " | %" PRIu32 " | ", r->vars[i].name, it->task, it->trial,
                it->attempts);
        s_md_text(f, it->reason);
        fprintf(f, " |\n");
      }
  }
  fprintf(f, "\n## Config\n\n```json\n%s\n```\n", r->config_json);
}

/* ---- report.html: SVG charts ------------------------------------------------------------------ */
static const char *s_color(size_t i) { return s_palette[i % S_PALETTE_N]; }

static void s_svg_legend(FILE *f, const s_rep_t *r, const bool *show, double x, double y) {
  for (size_t i = 0; i < r->nv; i++) {
    if (show && !show[i]) continue;
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>", x, y - 10, s_color(i));
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", x + 16, y);
    s_html_text(f, r->vars[i].name);
    fprintf(f, "</text>");
    x += 28 + 7.5 * (double)strlen(r->vars[i].name);
  }
}

/* Horizontal grid lines and labels for a 0..100% axis. */
static void s_svg_pct_axis(FILE *f, double x0, double x1, double ytop, double ybot) {
  for (int g = 0; g <= 4; g++) {
    double y = ybot - (ybot - ytop) * g / 4.0;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", x0, y, x1, y);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%d%%</text>", x0 - 6, y + 4, g * 25);
  }
}

/* A bar of height rate (0..1) with Wilson whiskers, in a plot from ytop (100%) to ybot (0%). */
static void s_svg_rate_bar(FILE *f, double x, double w, double ytop, double ybot, const char *color, const char *label,
                           const s_cell_t *c) {
  double h = ybot - ytop, rate = s_rate(c), lo, hi;
  s_wilson(c, &lo, &hi);
  if (isnan(rate)) {
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">" S_DASH "</text>", x + w / 2, ybot - 4);
    return;
  }
  fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x, ybot - h * rate, w,
          h * rate, color);
  s_html_text(f, label);
  fprintf(f, ": %s = %s %s</title></rect>", s_frac(c).s, s_pct(rate).s, s_ci(lo, hi).s);
  double cx = x + w / 2, cap = w / 4 > 6 ? 6 : w / 4;
  fprintf(f, "<path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" class=\"whisker\"/>", cx, ybot - h * lo,
          ybot - h * hi, cx - cap, ybot - h * lo, cx + cap, cx - cap, ybot - h * hi, cx + cap);
}

/* Success rate per task (and over all tasks) per variant, with Wilson whiskers. */
static void s_svg_success(FILE *f, const s_rep_t *r) {
  const double W = 1100, H = 340, L = 56, R = 10, T = 36, B = 44;
  size_t groups = r->nt + 1;
  double gw = (W - L - R) / (double)groups, bw = fmin(gw * 0.8 / (double)(r->nv ? r->nv : 1), 72);
  fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
             "aria-label=\"success rate per task and variant\">",
          W, H, W, H);
  s_svg_pct_axis(f, L, W - R, T, H - B);
  s_svg_legend(f, r, NULL, L, 16);
  for (size_t g = 0; g < groups; g++) {
    double gx = L + gw * (double)g + (gw - bw * (double)r->nv) / 2;
    for (size_t i = 0; i < r->nv; i++) {
      const s_cell_t *c = g < r->nt ? &r->vars[i].cells[g] : &r->vars[i].all;
      char label[MSG_NAME_MAX + 32];
      if (g < r->nt) snprintf(label, sizeof label, "%s, task %" PRIu32, r->vars[i].name, r->tasks[g]);
      else snprintf(label, sizeof label, "%s, all tasks", r->vars[i].name);
      s_svg_rate_bar(f, gx + bw * (double)i, bw * 0.92, T, H - B, s_color(i), label, c);
    }
    if (g < r->nt)
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">%s%" PRIu32 "</text>",
              L + gw * (double)g + gw / 2, H - B + 18, r->nt <= 12 ? "task " : "", r->tasks[g]);
    else
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\" font-weight=\"bold\">all</text>",
              L + gw * (double)g + gw / 2, H - B + 18);
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", L, H - B, W - R, H - B);
  fprintf(f, "</svg>\n");
}

/* Per variant with latency data: stacked mean queue | encode | decode (their sum: the mean service time), and
 * ticks at service p50/p95/p99. */
static void s_svg_latency(FILE *f, const s_rep_t *r) {
  size_t rows = 0;
  double max = 0;
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    if (!v->lat_n) continue;
    rows++;
    double sum = v->dist[S_QUEUE].mean + v->dist[S_ENCODE].mean + v->dist[S_DECODE].mean;
    max = fmax(max, fmax(sum, v->dist[S_SERVICE].p99));
  }
  if (!rows || !(max > 0)) {
    fprintf(f, "<p class=\"note\">No latency data: no variant's results carry per-chunk latencies.</p>\n");
    return;
  }
  const double W = 1100, L = 140, R = 260, T = 34, RH = 34, B = 30;
  double H = T + RH * (double)rows + B, pw = W - L - R;
  fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
             "aria-label=\"decode latency per action chunk\">",
          W, H, W, H);
  const char *parts[3] = {"queue (mean)", "encode (mean)", "decode (mean)"};
  double lx = L;
  for (int c = 0; c < 3; c++) {
    fprintf(f, "<rect x=\"%.1f\" y=\"6\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%.1f\" y=\"16\">%s</text>", lx,
            s_split_colors[c], lx + 16, parts[c]);
    lx += 130;
  }
  fprintf(f, "<path d=\"M%.1f 4V20\" class=\"tick\"/><text x=\"%.1f\" y=\"16\">service p50 / p95 / p99</text>", lx + 4,
          lx + 12);
  for (int g = 0; g <= 4; g++) {
    double x = L + pw * g / 4.0;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", x, T - 4, x, H - B);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">%.2f ms</text>", x, H - B + 16,
            max * g / 4.0 / 1000.0);
  }
  size_t row = 0;
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    if (!v->lat_n) continue;
    double y = T + RH * (double)row++, x = L;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", L - 8, y + RH / 2 + 4);
    s_html_text(f, v->name);
    fprintf(f, "</text>");
    for (int c = 0; c < 3; c++) {
      double w = pw * v->dist[c].mean / max;
      fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s: %s</title></rect>",
              x, y + 6, w, RH - 12, s_split_colors[c], parts[c], s_ms(v->dist[c].mean).s);
      x += w;
    }
    double q[3] = {v->dist[S_SERVICE].p50, v->dist[S_SERVICE].p95, v->dist[S_SERVICE].p99};
    for (int k = 0; k < 3; k++)
      fprintf(f, "<path d=\"M%.1f %.1fV%.1f\" class=\"tick\"/>", L + pw * q[k] / max, y + 2, y + RH - 2);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\">p50 %s · p95 %s · p99 %s</text>", W - R + 10, y + RH / 2 + 4,
            s_ms(q[0]).s, s_ms(q[1]).s, s_ms(q[2]).s);
  }
  fprintf(f, "</svg>\n");
}

/* Draft acceptance per layer, one bar per variant that has acceptance data. */
static void s_svg_acceptance(FILE *f, const s_rep_t *r) {
  uint32_t maxl = 0;
  bool show[CO_MAX_VARIANTS * 4] = {false};
  size_t nshow = 0;
  for (size_t i = 0; i < r->nv && i < sizeof show; i++) {
    if (r->vars[i].layers) show[i] = true, nshow++;
    if (r->vars[i].layers > maxl) maxl = r->vars[i].layers;
  }
  if (!maxl || !nshow) {
    fprintf(f, "<p class=\"note\">No acceptance data: no variant's results carry proposed/accepted layers "
               "(only speculative variants have them).</p>\n");
    return;
  }
  const double W = 1100, H = 280, L = 56, R = 10, T = 36, B = 40;
  double gw = (W - L - R) / (double)maxl, bw = fmin(gw * 0.8 / (double)nshow, 72);
  fprintf(f, "<svg class=\"chart\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
             "aria-label=\"draft acceptance per layer\">",
          W, H, W, H);
  s_svg_pct_axis(f, L, W - R, T, H - B);
  s_svg_legend(f, r, show, L, 16);
  for (uint32_t l = 0; l < maxl; l++) {
    double gx = L + gw * l + (gw - bw * (double)nshow) / 2;
    size_t k = 0;
    for (size_t i = 0; i < r->nv && i < sizeof show; i++) {
      if (!show[i]) continue;
      const s_var_t *v = &r->vars[i];
      double rate = l < v->layers ? s_accept_rate(v, l) : NAN, x = gx + bw * (double)k++;
      if (isnan(rate)) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">" S_DASH "</text>", x + bw / 2,
                H - B - 4);
        continue;
      }
      double h = (H - B - T) * rate;
      fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x, H - B - h,
              bw * 0.92, h, s_color(i));
      s_html_text(f, v->name);
      fprintf(f, ", layer %" PRIu32 ": %" PRIu64 "/%" PRIu64 " = %s</title></rect>", l, v->accepted[l], v->proposed[l],
              s_pct(rate).s);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" class=\"ax\" text-anchor=\"middle\">layer %" PRIu32 "</text>",
            L + gw * l + gw / 2, H - B + 18, l);
  }
  fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"axis\"/>", L, H - B, W - R, H - B);
  fprintf(f, "</svg>\n");
}

/* ---- report.html ------------------------------------------------------------------------------ */
static const char s_css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#222;"
    "background:#fff;margin:24px auto;max-width:1140px;padding:0 16px}"
    "h1{font-size:24px;margin:0 0 8px}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;"
    "padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}"
    "table{border-collapse:collapse;margin:8px 0 12px;font-variant-numeric:tabular-nums}"
    "th,td{border:1px solid #d8d8d8;padding:3px 8px;text-align:right;vertical-align:top}"
    "td{white-space:nowrap}td.w{white-space:normal}"
    "th{background:#f3f3f3}td.l,th.l{text-align:left}"
    ".meta{color:#555;margin:2px 0}.note{color:#666;font-style:italic}"
    "svg.chart{display:block;margin:8px 0 16px;font-size:12px}"
    "svg .grid{stroke:#e4e4e4;stroke-width:1}svg .axis{stroke:#888;stroke-width:1}"
    "svg .ax{fill:#555;font-size:11px}svg .whisker{stroke:#222;stroke-width:1.5;fill:none}"
    "svg .tick{stroke:#111;stroke-width:2}"
    "pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}"
    "details{margin:6px 0}summary{cursor:pointer;font-weight:600}"
    "img.video,video{max-width:256px;max-height:256px;display:block}";

/* A header row; align[i] is 'l' for a left-aligned (text) column, else right (numbers). */
static void s_html_head_row(FILE *f, const char *const *cols, size_t n, const char *align) {
  fprintf(f, "<tr>");
  for (size_t i = 0; i < n; i++) fprintf(f, "<th%s>%s</th>", align[i] == 'l' ? " class=\"l\"" : "", cols[i]);
  fprintf(f, "</tr>\n");
}

static void s_html_video(FILE *f, const char *link) {
  if (!link) {
    fprintf(f, S_DASH);
    return;
  }
  size_t n = strlen(link);
  bool apng = n > 4 && strcmp(link + n - 4, ".png") == 0;
  fprintf(f, "<a href=\"");
  s_html_text(f, link);
  fprintf(f, "\">");
  if (apng) {
    fprintf(f, "<img class=\"video\" src=\"");
    s_html_text(f, link);
    fprintf(f, "\" alt=\"rollout\" loading=\"lazy\">");
  } else {
    fprintf(f, "<video controls muted preload=\"metadata\" src=\"");
    s_html_text(f, link);
    fprintf(f, "\"></video>");
  }
  fprintf(f, "</a>");
}

static void s_html(FILE *f, const s_rep_t *r) {
  char buf[512], desc[256];
  fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>rsd report: ");
  s_html_text(f, r->name);
  fprintf(f, "</title><style>%s</style></head><body>\n<h1>Campaign report: ", s_css);
  s_html_text(f, r->name);
  fprintf(f, "</h1>\n<p class=\"meta\"><b>%s</b></p>\n", s_status_line(r, buf, sizeof buf));
  fprintf(f, "<p class=\"meta\">Model: ");
  s_html_text(f, r->has_cfg && r->cfg.has_model ? r->cfg.model : NULL);
  fprintf(f, " (");
  s_html_text(f, r->has_cfg && r->cfg.has_model_hash ? r->cfg.model_hash : NULL);
  fprintf(f, "; model_dtype %s) · config hash ",
          r->has_cfg && r->cfg.has_model ? co_dtype_names[r->cfg.model_dtype] : S_DASH);
  s_html_text(f, r->config_hash);
  fprintf(f, " · baseline: %s</p>\n", r->baseline >= 0 ? r->vars[r->baseline].name : S_DASH);
  fprintf(f, "<p class=\"meta\">Journal created %s by ", s_time(r->created_us).s);
  s_html_text(f, r->journal_version);
  fprintf(f, "; report generated %s by %s from the journal alone.</p>\n", s_time(r->generated_us).s, S_CODE_VERSION);
  if (!r->has_cfg) {
    fprintf(f, "<p class=\"note\">The stored config could not be read: ");
    s_html_text(f, r->cfg_error);
    fprintf(f, "</p>\n");
  }

  fprintf(f, "<h2>Success per variant</h2>\n<table>\n");
  static const char *const vcols[] = {"variant", "decoding", "successes / trials", "success rate", "95% CI (Wilson)",
                                      "mean steps", "done", "total", "abandoned", "retries"};
  s_html_head_row(f, vcols, sizeof vcols / sizeof vcols[0], "llrrrrrrrr");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    double lo, hi;
    s_wilson(&v->all, &lo, &hi);
    s_describe(r, v, desc, sizeof desc);
    fprintf(f, "<tr><td class=\"l\"><span style=\"color:%s\">&#9632;</span> ", s_color(i));
    s_html_text(f, v->name);
    fprintf(f, "%s</td><td class=\"l\">", r->baseline == (int)i ? " <i>(baseline)</i>" : "");
    s_html_text(f, desc);
    fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
               "</td><td>%" PRIu64 "</td></tr>\n",
            s_frac(&v->all).s, s_pct(s_rate(&v->all)).s, s_ci(lo, hi).s,
            s_fix(s_div((double)v->all.steps, (double)s_done(&v->all)), 1).s, s_done(&v->all), v->all.total,
            v->all.by_state[CO_EPISODE_ABANDONED], v->all.attempts);
  }
  fprintf(f, "</table>\n");

  fprintf(f, "<h2>Success per task</h2>\n<p class=\"note\">Bars: success rate; whiskers: 95%% Wilson score "
             "interval; \"all\": every task of the variant. Hover a bar for its numbers.</p>\n");
  s_svg_success(f, r);
  fprintf(f, "<table>\n<tr><th class=\"l\">task</th>");
  for (size_t i = 0; i < r->nv; i++) {
    fprintf(f, "<th>");
    s_html_text(f, r->vars[i].name);
    fprintf(f, "</th>");
  }
  fprintf(f, "</tr>\n");
  for (size_t t = 0; t < r->nt; t++) {
    fprintf(f, "<tr><td class=\"l\">%" PRIu32 "</td>", r->tasks[t]);
    for (size_t i = 0; i < r->nv; i++) {
      const s_cell_t *c = &r->vars[i].cells[t];
      double lo, hi;
      s_wilson(c, &lo, &hi);
      fprintf(f, "<td>%s · %s %s · %s steps</td>", s_frac(c).s, s_pct(s_rate(c)).s, s_ci(lo, hi).s,
              s_fix(s_div((double)c->steps, (double)s_done(c)), 1).s);
    }
    fprintf(f, "</tr>\n");
  }
  fprintf(f, "</table>\n");

  fprintf(f, "<h2>Decoding</h2>\n<p class=\"note\">Latency per action chunk: service = queue + encode + decode, the "
             "GPU worker's time from a request's arrival to its answer (bars: the means of the parts; ticks: service "
             "p50 / p95 / p99). Sim wait: from the sim worker sending the INFER to taking the ACTION, which also "
             "counts transport and the worker's steps and renders of its other episodes.</p>\n");
  s_svg_latency(f, r);
  fprintf(f, "<table>\n");
  static const char *const dcols[] = {"variant", "chunks", "service p50", "service p95", "service p99",
                                      "queue ms<br>p50 / p95 / p99", "encode ms<br>p50 / p95 / p99",
                                      "decode ms<br>p50 / p95 / p99", "sim wait ms<br>p50 / p99",
                                      "main fwd<br>/ chunk", "accept&shy;ance", "accepted layers<br>/ verify"};
  s_html_head_row(f, dcols, sizeof dcols / sizeof dcols[0], "lrrrrrrrrrrr");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    fprintf(f, "<tr><td class=\"l\">");
    s_html_text(f, v->name);
    fprintf(f, "</td><td>%" PRIu64 "</td><td>%s</td><td>%s</td><td>%s</td>", (uint64_t)v->lat_n,
            s_ms(v->dist[S_SERVICE].p50).s, s_ms(v->dist[S_SERVICE].p95).s, s_ms(v->dist[S_SERVICE].p99).s);
    for (int c = S_QUEUE; c <= S_DECODE; c++)
      fprintf(f, "<td>%s / %s / %s</td>", s_fix(v->dist[c].p50 / 1000.0, 2).s, s_fix(v->dist[c].p95 / 1000.0, 2).s,
              s_fix(v->dist[c].p99 / 1000.0, 2).s);
    fprintf(f, "<td>%s / %s</td>", s_fix(v->dist[S_TOTAL].p50 / 1000.0, 2).s, s_fix(v->dist[S_TOTAL].p99 / 1000.0, 2).s);
    fprintf(f, "<td>%s</td><td>%s</td><td>%s</td></tr>\n", s_fix(s_mf_per_chunk(v), 2).s, s_pct(s_accept_overall(v)).s,
            s_fix(s_accepted_per_verify(v), 2).s);
  }
  fprintf(f, "</table>\n<h3>Draft acceptance per RFSQ layer</h3>\n");
  s_svg_acceptance(f, r);
  fprintf(f, "<h3>Batch sizes</h3>\n");
  uint32_t nb = s_batch_buckets(r);
  if (!nb) {
    fprintf(f, "<p class=\"note\">No batch-size histogram: no result carries batch sizes.</p>\n");
  } else {
    fprintf(f, "<p class=\"note\">Action chunks per GPU batch size (the batch each chunk was decoded in).</p>\n"
               "<table>\n<tr><th class=\"l\">variant</th>");
    for (uint32_t k = 0; k < nb; k++) fprintf(f, "<th>%s</th>", s_bucket(k).s);
    fprintf(f, "</tr>\n");
    for (size_t i = 0; i < r->nv; i++) {
      if (!r->vars[i].batch_buckets) continue;
      fprintf(f, "<tr><td class=\"l\">");
      s_html_text(f, r->vars[i].name);
      fprintf(f, "</td>");
      for (uint32_t k = 0; k < nb; k++) fprintf(f, "<td>%" PRIu64 "</td>", r->vars[i].batch_hist[k]);
      fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n");
  }

  fprintf(f, "<h2>Compared with the baseline</h2>\n");
  if (r->baseline < 0 || r->nv < 2) {
    fprintf(f, "<p class=\"note\">Fewer than two variants: nothing to compare.</p>\n");
  } else {
    fprintf(f, "<p class=\"note\">Baseline: %s, chosen as %s. Difference = variant − baseline with a 95%% Newcombe hybrid "
               "score interval; p from a two-sided Fisher exact test. Speedups are baseline ÷ variant; the main "
               "forwards ratio is variant ÷ baseline.</p>\n<table>\n",
            r->vars[r->baseline].name, r->baseline_rule);
    static const char *const ccols[] = {"variant", "success difference", "95% CI (Newcombe)", "Fisher p",
                                        "decode speedup (mean)", "service speedup (p50)", "main forwards ratio",
                                        "actions vs baseline",
                                        "first actions: arm mean / max abs difference, gripper differing"};
    s_html_head_row(f, ccols, sizeof ccols / sizeof ccols[0], "lrrrrrrrr");
    for (size_t i = 0; i < r->nv; i++) {
      s_cmp_t c = s_compare(r, i);
      if (!c.has) continue;
      fprintf(f, "<tr><td class=\"l\">");
      s_html_text(f, r->vars[i].name);
      fprintf(f, "</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
              s_pp(c.diff).s, s_ppci(c.lo, c.hi).s, s_pval(c.p).s, s_ratio(c.decode_speedup).s,
              s_ratio(c.service_speedup).s, s_ratio(c.main_fw_ratio).s, s_identical(&c).s, s_deviation(&c).s);
    }
    fprintf(f, "</table>\n");
  }

  fprintf(f, "<h2>Throughput and infrastructure</h2>\n<table>\n<tr><th class=\"l\">figure</th><th>value</th></tr>\n");
  fprintf(f, "<tr><td class=\"l\">wall time</td><td>%s</td></tr>\n", s_dur(r->wall_s).s);
  fprintf(f, "<tr><td class=\"l\">wall time source</td><td>%s</td></tr>\n", r->wall_source ? r->wall_source : S_DASH);
  fprintf(f, "<tr><td class=\"l\">environment steps</td><td>%" PRIu64 "</td></tr>\n", r->steps);
  fprintf(f, "<tr><td class=\"l\">environment steps/s</td><td>%s</td></tr>\n", s_fix(s_steps_per_s(r), 1).s);
  if (r->chunks_n) fprintf(f, "<tr><td class=\"l\">action chunks</td><td>%" PRIu64 "</td></tr>\n", r->chunks);
  else fprintf(f, "<tr><td class=\"l\">action chunks</td><td>%s</td></tr>\n", S_DASH);
  fprintf(f, "<tr><td class=\"l\">chunks/s</td><td>%s</td></tr>\n", s_fix(s_chunks_per_s(r), 2).s);
  fprintf(f, "<tr><td class=\"l\">retries (infrastructure failures)</td><td>%" PRIu64 "</td></tr>\n", r->total.attempts);
  fprintf(f, "<tr><td class=\"l\">abandoned episodes</td><td>%" PRIu64 "</td></tr>\n",
          r->total.by_state[CO_EPISODE_ABANDONED]);
  fprintf(f, "<tr><td class=\"l\">workers seen</td><td>%" PRIu64 "</td></tr>\n", r->workers_seen);
  for (int e = 0; e < CO_EVENT_COUNT_; e++)
    fprintf(f, "<tr><td class=\"l\">events: %s</td><td>%" PRIu64 "</td></tr>\n", co_event_name((co_event_t)e),
            r->events[e]);
  fprintf(f, "</table>\n<table>\n");
  static const char *const tcols[] = {"variant", "environment steps", "action chunks", "steps/s of episode time"};
  s_html_head_row(f, tcols, sizeof tcols / sizeof tcols[0], "lrrr");
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    fprintf(f, "<tr><td class=\"l\">");
    s_html_text(f, v->name);
    fprintf(f, "</td><td>%" PRIu64 "</td><td>%s</td><td>%s</td></tr>\n", v->all.steps,
            v->chunks_n ? s_fix((double)v->chunks, 0).s : S_DASH, s_fix(s_episode_steps_per_s(v), 1).s);
  }
  fprintf(f, "</table>\n<p class=\"note\">Steps/s of episode time: a variant's environment steps over the sum "
             "of its episodes' own wall time (RESULT.wall_ms), i.e. the speed of one episode; campaign throughput "
             "above is over the campaign's wall time.</p>\n");

  fprintf(f, "<h2>Failed episodes</h2>\n");
  size_t nfail = 0;
  for (size_t i = 0; i < r->nv; i++) nfail += r->vars[i].failed.n;
  if (!nfail) fprintf(f, "<p class=\"note\">None.</p>\n");
  else {
    /* Per variant x task: which trials failed (the lists are sorted by task, then trial). */
    fprintf(f, "<p class=\"note\">Episodes that ended without success (abandoned ones are listed apart, below); "
               "rollout videos from %s/ are linked where a file exists.</p>\n<table>\n",
            CO_REPORT_VIDEOS_DIR);
    static const char *const gcols[] = {"variant", "task", "failed / trials", "failed trials"};
    s_html_head_row(f, gcols, sizeof gcols / sizeof gcols[0], "lrrl");
    for (size_t i = 0; i < r->nv; i++) {
      const s_var_t *v = &r->vars[i];
      for (size_t k = 0; k < v->failed.n;) {
        size_t end = k;
        while (end < v->failed.n && v->failed.v[end].task == v->failed.v[k].task) end++;
        int ti = s_task_index(r, v->failed.v[k].task);
        fprintf(f, "<tr><td class=\"l\">");
        s_html_text(f, v->name);
        fprintf(f, "</td><td>%" PRIu32 "</td><td>%zu/%" PRIu64 "</td><td class=\"l w\">", v->failed.v[k].task, end - k,
                ti >= 0 ? s_done(&v->cells[ti]) : 0);
        for (size_t m = k; m < end; m++) fprintf(f, "%s%" PRIu32, m > k ? ", " : "", v->failed.v[m].trial);
        fprintf(f, "</td></tr>\n");
        k = end;
      }
    }
    fprintf(f, "</table>\n");
  }
  for (size_t i = 0; i < r->nv; i++) {
    const s_var_t *v = &r->vars[i];
    if (!v->failed.n) continue;
    fprintf(f, "<details%s><summary>", nfail <= 40 ? " open" : "");
    s_html_text(f, v->name);
    fprintf(f, ": %zu failed</summary>\n<table>\n", v->failed.n);
    static const char *const fcols[] = {"task", "trial", "steps", "reason", "worker", "video"};
    s_html_head_row(f, fcols, sizeof fcols / sizeof fcols[0], "rrrlll");
    for (size_t k = 0; k < v->failed.n; k++) {
      const s_item_t *it = &v->failed.v[k];
      fprintf(f, "<tr><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td class=\"l w\">", it->task,
              it->trial, it->steps);
      s_html_text(f, it->reason);
      fprintf(f, "</td><td class=\"l\">");
      s_html_text(f, it->worker);
      fprintf(f, "</td><td class=\"l\">");
      s_html_video(f, it->video);
      fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table></details>\n");
  }
  size_t nsv = 0;
  for (size_t i = 0; i < r->nv; i++) nsv += r->vars[i].succeeded_video.n;
  if (nsv) {
    fprintf(f, "<h2>Rollout videos of successful episodes</h2>\n<p class=\"note\">The campaign's video policy kept "
               "these too (<code>videos: all</code>).</p>\n");
    for (size_t i = 0; i < r->nv; i++) {
      const s_var_t *v = &r->vars[i];
      if (!v->succeeded_video.n) continue;
      fprintf(f, "<details%s><summary>", nsv <= 40 ? " open" : "");
      s_html_text(f, v->name);
      fprintf(f, ": %zu videos</summary>\n<table>\n", v->succeeded_video.n);
      static const char *const scols[] = {"task", "trial", "steps", "video"};
      s_html_head_row(f, scols, sizeof scols / sizeof scols[0], "rrrl");
      for (size_t k = 0; k < v->succeeded_video.n; k++) {
        const s_item_t *it = &v->succeeded_video.v[k];
        fprintf(f, "<tr><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td class=\"l\">", it->task,
                it->trial, it->steps);
        s_html_video(f, it->video);
        fprintf(f, "</td></tr>\n");
      }
      fprintf(f, "</table></details>\n");
    }
  }
  fprintf(f, "<h2>Abandoned episodes</h2>\n");
  size_t naband = 0;
  for (size_t i = 0; i < r->nv; i++) naband += r->vars[i].abandoned.n;
  if (!naband) fprintf(f, "<p class=\"note\">None.</p>\n");
  else {
    fprintf(f, "<p class=\"note\">Given up after repeated infrastructure failures; not counted as trials.</p>\n"
               "<table>\n");
    static const char *const acols[] = {"variant", "task", "trial", "attempts", "last error"};
    s_html_head_row(f, acols, sizeof acols / sizeof acols[0], "lrrrl");
    for (size_t i = 0; i < r->nv; i++)
      for (size_t k = 0; k < r->vars[i].abandoned.n; k++) {
        const s_item_t *it = &r->vars[i].abandoned.v[k];
        fprintf(f, "<tr><td class=\"l\">");
        s_html_text(f, r->vars[i].name);
        fprintf(f, "</td><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td>%" PRIu32 "</td><td class=\"l w\">", it->task,
                it->trial, it->attempts);
        s_html_text(f, it->reason);
        fprintf(f, "</td></tr>\n");
      }
    fprintf(f, "</table>\n");
  }
  fprintf(f, "<h2>Config</h2>\n<details><summary>the stored campaign config (JSON)</summary><pre>");
  json_error_t jerr;
  json_t *cfg = json_loads(r->config_json, 0, &jerr);
  char *pretty = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
  s_html_text(f, pretty ? pretty : r->config_json);
  free(pretty);
  json_decref(cfg);
  fprintf(f, "</pre></details>\n</body></html>\n");
}

/* ---- writing ---------------------------------------------------------------------------------- */
typedef enum { S_FMT_JSON, S_FMT_MD, S_FMT_HTML } s_fmt_t;

/* Writes out_dir/name through out_dir/name.tmp.PID and a rename. */
static co_report_err_t s_write_file(const s_rep_t *r, const char *out_dir, const char *name, s_fmt_t fmt,
                                    co_report_error_t *err) {
  char path[PATH_MAX], tmp[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", out_dir, name);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return s_fail(err, CO_REPORT_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
  bool ok = true;
  if (fmt == S_FMT_JSON) {
    json_t *root = s_json(r);
    ok = root && json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) == 0;
    json_decref(root);
    if (ok) fputc('\n', f);
  } else if (fmt == S_FMT_MD) {
    s_markdown(f, r);
  } else {
    s_html(f, r);
  }
  int saved = 0;
  if (ferror(f)) ok = false, saved = errno;
  if (fclose(f) != 0 && ok) ok = false, saved = errno;
  if (!ok) {
    unlink(tmp);
    return s_fail(err, CO_REPORT_ERR_IO, "cannot write %s: %s", tmp, saved ? strerror(saved) : "error");
  }
  if (rename(tmp, path) != 0) {
    saved = errno;
    unlink(tmp);
    return s_fail(err, CO_REPORT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(saved));
  }
  return CO_REPORT_OK;
}

co_report_err_t co_report_write(const char *dir, const char *out_dir, co_report_summary_t *summary,
                                co_report_error_t *err) {
  if (err) err->code = CO_REPORT_OK, err->text[0] = '\0';
  if (!dir || !*dir) return s_fail(err, CO_REPORT_ERR_ARG, "co_report_write: no campaign directory given");
  if (!out_dir) out_dir = dir;
  struct stat st;
  if (stat(out_dir, &st) != 0 && mkdir(out_dir, 0755) != 0)
    return s_fail(err, CO_REPORT_ERR_IO, "cannot create the output directory %s: %s", out_dir, strerror(errno));
  s_rep_t *r = calloc(1, sizeof *r);
  if (!r) return s_fail(err, CO_REPORT_ERR_NOMEM, "report of %s: out of memory", dir);
  r->dir = dir;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  r->generated_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
  char rd[PATH_MAX], ro[PATH_MAX];
  r->same_dir = strcmp(dir, out_dir) == 0 ||
                (realpath(dir, rd) && realpath(out_dir, ro) && strcmp(rd, ro) == 0);
  if (r->same_dir) {
    r->videos_prefix = strdup(CO_REPORT_VIDEOS_DIR "/");
  } else {
    const char *base = realpath(dir, rd) ? rd : dir;
    size_t len = strlen(base) + sizeof CO_REPORT_VIDEOS_DIR + 2;
    if ((r->videos_prefix = malloc(len))) snprintf(r->videos_prefix, len, "%s/%s/", base, CO_REPORT_VIDEOS_DIR);
  }
  co_report_err_t rc = r->videos_prefix ? s_load(r, dir, err)
                                        : s_fail(err, CO_REPORT_ERR_NOMEM, "report of %s: out of memory", dir);
  if (!rc) rc = s_write_file(r, out_dir, CO_REPORT_JSON, S_FMT_JSON, err);
  if (!rc) rc = s_write_file(r, out_dir, CO_REPORT_MD, S_FMT_MD, err);
  if (!rc) rc = s_write_file(r, out_dir, CO_REPORT_HTML, S_FMT_HTML, err);
  if (!rc && summary) {
    summary->episodes = r->total.total;
    summary->done = r->total.by_state[CO_EPISODE_DONE];
    summary->abandoned = r->total.by_state[CO_EPISODE_ABANDONED];
    summary->variants = (uint32_t)r->nv;
    summary->tasks = (uint32_t)r->nt;
    summary->complete = s_complete(r);
  }
  s_rep_free(r);
  free(r);
  return rc;
}

/* ---- rsd report ------------------------------------------------------------------------------- */
static int s_usage(FILE *f) {
  fprintf(f, "usage: rsd report DIR [--out OUT_DIR]\n"
             "  writes report.json, report.md and report.html for the campaign in DIR (from DIR/journal.sqlite,\n"
             "  read-only; also while it runs) into DIR, or into OUT_DIR\n");
  return 2;
}

int co_report_cli(int argc, char **argv) {
  const char *dir = NULL, *out = NULL;
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      s_usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--out") == 0) {
      if (i + 1 >= argc || out) {
        fprintf(stderr, "rsd report: --out needs one directory\n");
        return s_usage(stderr);
      }
      out = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1]) {
      fprintf(stderr, "rsd report: unknown option '%s'\n", argv[i]);
      return s_usage(stderr);
    } else if (dir) {
      fprintf(stderr, "rsd report: one campaign directory only (got '%s' and '%s')\n", dir, argv[i]);
      return s_usage(stderr);
    } else {
      dir = argv[i];
    }
  }
  if (!dir) return s_usage(stderr);
  co_report_summary_t s;
  co_report_error_t err;
  if (co_report_write(dir, out, &s, &err)) {
    fprintf(stderr, "rsd report: %s\n", err.text);
    return 1;
  }
  if (!out) out = dir;
  printf("%s/%s\n%s/%s\n%s/%s\n", out, CO_REPORT_JSON, out, CO_REPORT_MD, out, CO_REPORT_HTML);
  printf("[rsd] report: %" PRIu64 "/%" PRIu64 " episodes done, %" PRIu64 " abandoned, %" PRIu32 " variants x %" PRIu32
         " tasks%s\n",
         s.done, s.episodes, s.abandoned, s.variants, s.tasks, s.complete ? "" : " (campaign incomplete)");
  return 0;
}
