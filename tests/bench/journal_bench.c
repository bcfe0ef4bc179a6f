/* journal_bench.c: what the campaign journal (coordinator/journal.c) costs. It times
 *   disk        fdatasync of a 4 KiB append in the journal's directory: the floor under every
 *               synchronous=FULL commit (one WAL fsync each);
 *   results     co_journal_record_result, each result its own FULL transaction, and
 *               co_journal_record_results with 8 and 32 results per transaction (group commit);
 *               every result carries all RESULT fields and a 28-chunk latency blob (220 steps, replan 8);
 *   leases      co_journal_lease_next of 1 + co_journal_release (NORMAL commits), lease_next of 8,
 *               lease_next of 1 + co_journal_expire;
 *   reads       co_journal_next_pending(8) and co_journal_counts over 2,500 and 25,000 episodes;
 * in the given directory (default $TMPDIR or /tmp) and, for the result rows, also in /dev/shm (tmpfs:
 * no fsync cost, so what remains is the journal's own CPU). Prints a table; --json PATH writes the
 * same numbers as JSON.
 *
 *   journal_bench [--dir DIR] [--n RESULTS] [--json PATH]
 *
 * A program, not a test: it asserts nothing about timing (docs/benchmarks.md keeps the numbers). The
 * temporary directories it makes are removed on exit. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "journal.h"

#define S_CHUNKS 28
#define S_MAX_DIRS 4

static char s_dirs[S_MAX_DIRS][512];
static int s_ndirs;
static int s_sub;

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static void s_cleanup(void) {
  for (int i = 0; i < s_ndirs; i++) nftw(s_dirs[i], s_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void s_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "journal_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static double s_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int s_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Percentile (0..100) of n sorted values. */
static double s_pct(const double *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
  return v[i < n ? i : n - 1];
}

/* A temporary directory under `base`, removed at exit. */
static const char *s_tmpdir(const char *base) {
  if (s_ndirs == S_MAX_DIRS) s_die("too many directories");
  snprintf(s_dirs[s_ndirs], sizeof s_dirs[0], "%s/rsd-journal-bench-XXXXXX", base);
  if (!mkdtemp(s_dirs[s_ndirs])) s_die("mkdtemp under %s: %s", base, strerror(errno));
  return s_dirs[s_ndirs++];
}

/* A new campaign directory under `root` with variants x 10 tasks x trials episodes. */
static co_journal_t *s_journal(const char *root, uint32_t nvariants, uint32_t ntrials) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/c%d", root, s_sub++);
  if (mkdir(dir, 0755) != 0) s_die("mkdir %s: %s", dir, strerror(errno));
  co_journal_campaign_t c = {"bench", "{\"bench\":true}", "sha256:bench", "journal_bench"};
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err);
  if (!j) s_die("%s", err.text);
  size_t n = (size_t)nvariants * 10 * ntrials, k = 0;
  co_episode_key_t *keys = calloc(n, sizeof *keys);
  if (!keys) s_die("out of memory");
  for (uint32_t v = 0; v < nvariants; v++)
    for (uint32_t t = 0; t < 10; t++)
      for (uint32_t r = 0; r < ntrials; r++) {
        snprintf(keys[k].variant, sizeof keys[k].variant, "variant%u", v);
        keys[k].task = t;
        keys[k].trial = r;
        k++;
      }
  if (co_journal_add_episodes(j, keys, n, NULL, &err)) s_die("%s", err.text);
  free(keys);
  return j;
}

static msg_result_body_t s_result(const co_episode_key_t *k) {
  msg_result_body_t r;
  memset(&r, 0, sizeof r);
  snprintf(r.campaign, sizeof r.campaign, "bench");
  memcpy(r.variant, k->variant, sizeof k->variant);
  r.task = k->task;
  r.trial = k->trial;
  r.attempt = 1;
  r.outcome = k->trial % 3 ? MSG_OUTCOME_SUCCESS : MSG_OUTCOME_FAILURE;
  r.steps = 220;
  r.wall_ms = 10500;
  r.has_reason = true;
  snprintf(r.reason, sizeof r.reason, "bowl on plate");
  r.has_worker = true;
  snprintf(r.worker, sizeof r.worker, "sim-worker-07");
  r.has_chunks = true;
  r.chunks = S_CHUNKS;
  r.has_main_forwards = r.has_draft_forwards = true;
  r.main_forwards = 4 * S_CHUNKS;
  r.draft_forwards = 3 * S_CHUNKS;
  r.has_proposed = r.has_accepted = true;
  r.proposed_count = r.accepted_count = 8;
  for (int i = 0; i < 8; i++) {
    r.proposed[i] = 100;
    r.accepted[i] = 100 - (uint32_t)i * 9;
  }
  return r;
}

typedef struct {
  double per_s;              /* operations (or results, episodes) per second */
  double p50_us, p99_us;     /* per call */
} s_rate_t;

/* Records n results in calls of `batch` (1: co_journal_record_result each). */
static s_rate_t s_bench_results(const char *root, size_t n, size_t batch) {
  uint32_t trials = (uint32_t)((n + 49) / 50);
  co_journal_t *j = s_journal(root, 5, trials);
  co_journal_error_t err;
  co_episode_t *eps = calloc(n, sizeof *eps);
  msg_result_body_t *rs = calloc(n, sizeof *rs);
  co_journal_result_in_t *in = calloc(n, sizeof *in);
  msg_ack_status_t *st = calloc(n, sizeof *st);
  double *lat = calloc(n, sizeof *lat);
  float latency[S_CHUNKS][4];
  for (int c = 0; c < S_CHUNKS; c++) {
    latency[c][0] = 120.0f + (float)c;
    latency[c][1] = 900.0f;
    latency[c][2] = 4200.0f;
    latency[c][3] = 5220.0f + (float)c;
  }
  if (!eps || !rs || !in || !st || !lat) s_die("out of memory");
  size_t got = 0;
  if (co_journal_lease_next(j, n, "sim-worker-07", 0, eps, &got, &err) || got != n) s_die("lease: %s", err.text);
  for (size_t i = 0; i < n; i++) {
    rs[i] = s_result(&eps[i].key);
    in[i] = (co_journal_result_in_t){&rs[i], eps[i].lease_id, &latency[0][0], S_CHUNKS};
  }
  size_t calls = 0;
  double t0 = s_now();
  for (size_t i = 0; i < n; i += batch) {
    size_t m = n - i < batch ? n - i : batch;
    double a = s_now();
    co_journal_err_t rc =
        batch == 1 ? co_journal_record_result(j, &rs[i], in[i].lease_id, in[i].latency, S_CHUNKS, &st[i], &err)
                   : co_journal_record_results(j, &in[i], m, &st[i], &err);
    lat[calls++] = (s_now() - a) * 1e6;
    if (rc) s_die("record: %s", err.text);
    for (size_t k = 0; k < m; k++)
      if (st[i + k] != MSG_ACK_STORED) s_die("result %zu not stored (%d)", i + k, st[i + k]);
  }
  double dt = s_now() - t0;
  qsort(lat, calls, sizeof *lat, s_cmp);
  s_rate_t out = {(double)n / dt, s_pct(lat, calls, 50), s_pct(lat, calls, 99)};
  co_journal_close(&j);
  free(eps);
  free(rs);
  free(in);
  free(st);
  free(lat);
  return out;
}

typedef enum { S_LEASE_RELEASE, S_LEASE_EXPIRE, S_LEASE_BATCH8 } s_lease_kind_t;

/* Lease operations; per_s counts calls to the journal (lease + release is two). */
static s_rate_t s_bench_leases(const char *root, size_t n, s_lease_kind_t kind) {
  co_journal_t *j = s_journal(root, 5, 50); /* 2,500 episodes */
  co_journal_error_t err;
  double *lat = calloc(2 * n, sizeof *lat);
  co_episode_t eps[8];
  size_t got, calls = 0, episodes = 0;
  if (!lat) s_die("out of memory");
  double t0 = s_now();
  for (size_t i = 0; i < n; i++) {
    double a = s_now();
    if (co_journal_lease_next(j, kind == S_LEASE_BATCH8 ? 8 : 1, "sim-worker-07", 0, eps, &got, &err) || got == 0)
      s_die("lease_next: %s", err.text);
    double b = s_now();
    lat[calls++] = (b - a) * 1e6;
    episodes += got;
    for (size_t k = 0; k < got; k++) {
      co_journal_err_t rc = kind == S_LEASE_EXPIRE ? co_journal_expire(j, eps[k].lease_id, "bench", 1000000, NULL, &err)
                                                   : co_journal_release(j, eps[k].lease_id, "bench", NULL, &err);
      if (rc) s_die("release/expire: %s", err.text);
    }
    if (kind != S_LEASE_BATCH8) lat[calls++] = (s_now() - b) * 1e6;
  }
  double dt = s_now() - t0;
  qsort(lat, calls, sizeof *lat, s_cmp);
  /* Batches: episodes leased per second of leasing + releasing; singles: journal calls per second. */
  s_rate_t out = {(double)(kind == S_LEASE_BATCH8 ? episodes : calls) / dt, s_pct(lat, calls, 50),
                  s_pct(lat, calls, 99)};
  co_journal_close(&j);
  free(lat);
  return out;
}

/* next_pending(8) (with a quarter of the episodes done) and counts. */
static void s_bench_reads(const char *root, uint32_t trials, s_rate_t *pending, s_rate_t *counts) {
  co_journal_t *j = s_journal(root, 5, trials);
  co_journal_error_t err;
  size_t total = 5 * 10 * (size_t)trials, quarter = total / 4, got;
  co_episode_t *eps = calloc(quarter, sizeof *eps);
  co_journal_result_in_t *in = calloc(quarter, sizeof *in);
  msg_result_body_t *rs = calloc(quarter, sizeof *rs);
  msg_ack_status_t *st = calloc(quarter, sizeof *st);
  if (!eps || !in || !rs || !st) s_die("out of memory");
  if (co_journal_lease_next(j, quarter, "w", 0, eps, &got, &err)) s_die("%s", err.text);
  for (size_t i = 0; i < got; i++) {
    rs[i] = s_result(&eps[i].key);
    in[i] = (co_journal_result_in_t){&rs[i], eps[i].lease_id, NULL, 0};
  }
  if (co_journal_record_results(j, in, got, st, &err)) s_die("%s", err.text);
  enum { REPS = 200 };
  double lat[REPS];
  co_episode_t out[8];
  for (int pass = 0; pass < 2; pass++) {
    double t0 = s_now();
    for (int i = 0; i < REPS; i++) {
      double a = s_now();
      co_journal_counts_t c;
      co_journal_err_t rc = pass == 0 ? co_journal_next_pending(j, 8, out, &got, &err)
                                      : co_journal_counts(j, &c, NULL, 0, NULL, &err);
      if (rc) s_die("%s", err.text);
      lat[i] = (s_now() - a) * 1e6;
    }
    double dt = s_now() - t0;
    qsort(lat, REPS, sizeof *lat, s_cmp);
    s_rate_t r = {REPS / dt, s_pct(lat, REPS, 50), s_pct(lat, REPS, 99)};
    *(pass == 0 ? pending : counts) = r;
  }
  co_journal_close(&j);
  free(eps);
  free(in);
  free(rs);
  free(st);
}

/* fdatasync of a 4 KiB append: median and p99 in us. */
static s_rate_t s_bench_fsync(const char *root, int n) {
  char path[600];
  snprintf(path, sizeof path, "%s/fsync-probe", root);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) s_die("open %s: %s", path, strerror(errno));
  char buf[4096];
  memset(buf, 'x', sizeof buf);
  double *lat = calloc((size_t)n, sizeof *lat);
  double t0 = s_now();
  for (int i = 0; i < n; i++) {
    double a = s_now();
    if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fdatasync(fd) != 0)
      s_die("write/fdatasync: %s", strerror(errno));
    lat[i] = (s_now() - a) * 1e6;
  }
  double dt = s_now() - t0;
  close(fd);
  unlink(path);
  qsort(lat, (size_t)n, sizeof *lat, s_cmp);
  s_rate_t out = {n / dt, s_pct(lat, (size_t)n, 50), s_pct(lat, (size_t)n, 99)};
  free(lat);
  return out;
}

static const char *s_fstype(const char *dir) {
  struct statfs sf;
  if (statfs(dir, &sf) != 0) return "?";
  switch ((unsigned long)sf.f_type) {
    case 0xEF53: return "ext4";
    case 0x01021994: return "tmpfs";
    case 0x58465342: return "xfs";
    case 0x9123683E: return "btrfs";
    case 0x794c7630: return "overlayfs";
    default: return "other";
  }
}

typedef struct {
  const char *key, *label;
  s_rate_t r;
  const char *unit;
} s_row_t;

int main(int argc, char **argv) {
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", *json = NULL;
  size_t n = 500;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) base = argv[++i];
    else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) n = (size_t)strtoul(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i];
    else {
      fprintf(stderr, "usage: journal_bench [--dir DIR] [--n RESULTS] [--json PATH]\n");
      return 2;
    }
  }
  if (n < 64) n = 64;
  atexit(s_cleanup);
  const char *disk = s_tmpdir(base);
  struct stat sb;
  const char *shm = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? s_tmpdir("/dev/shm") : NULL;

  s_row_t rows[16];
  int nr = 0;
  rows[nr++] = (s_row_t){"disk_fdatasync_4k", "fdatasync, 4 KiB append", s_bench_fsync(disk, 200), "fsyncs/s"};
  rows[nr++] = (s_row_t){"results_full_1", "record_result, own FULL txn", s_bench_results(disk, n, 1), "results/s"};
  rows[nr++] = (s_row_t){"results_full_8", "record_results, 8 per txn", s_bench_results(disk, 4 * n, 8), "results/s"};
  rows[nr++] =
      (s_row_t){"results_full_32", "record_results, 32 per txn", s_bench_results(disk, 8 * n, 32), "results/s"};
  if (shm) {
    rows[nr++] = (s_row_t){"tmpfs_results_full_1", "tmpfs: record_result, own txn", s_bench_results(shm, 4 * n, 1),
                           "results/s"};
    rows[nr++] = (s_row_t){"tmpfs_results_full_32", "tmpfs: record_results, 32/txn", s_bench_results(shm, 8 * n, 32),
                           "results/s"};
  }
  rows[nr++] = (s_row_t){"lease_release", "lease_next(1) + release", s_bench_leases(disk, 2 * n, S_LEASE_RELEASE),
                         "calls/s"};
  rows[nr++] = (s_row_t){"lease_expire", "lease_next(1) + expire", s_bench_leases(disk, 2 * n, S_LEASE_EXPIRE),
                         "calls/s"};
  rows[nr++] = (s_row_t){"lease_batch8", "lease_next(8) + 8 releases", s_bench_leases(disk, n / 2, S_LEASE_BATCH8),
                         "episodes/s"};
  s_rate_t p1, c1, p2, c2;
  s_bench_reads(disk, 50, &p1, &c1);
  s_bench_reads(disk, 500, &p2, &c2);
  rows[nr++] = (s_row_t){"next_pending8_2500", "next_pending(8), 2,500 eps", p1, "calls/s"};
  rows[nr++] = (s_row_t){"counts_2500", "counts, 2,500 episodes", c1, "calls/s"};
  rows[nr++] = (s_row_t){"next_pending8_25000", "next_pending(8), 25,000 eps", p2, "calls/s"};
  rows[nr++] = (s_row_t){"counts_25000", "counts, 25,000 episodes", c2, "calls/s"};

  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  printf("journal_bench: the campaign journal (SQLite %s, WAL; results synchronous=FULL, the rest NORMAL)\n",
         sqlite3_libversion());
  printf("host: nproc %ld; directory %s (%s)%s%s\n", ncpu, base, s_fstype(disk), shm ? "; tmpfs rows in " : "",
         shm ? "/dev/shm" : "");
  printf("results carry every RESULT field and a %d-chunk latency blob; %zu results per single-txn row\n\n", S_CHUNKS,
         n);
  printf("%-32s %14s %-11s %12s %12s\n", "operation", "rate", "", "p50 us/call", "p99 us/call");
  for (int i = 0; i < nr; i++)
    printf("%-32s %14.0f %-11s %12.1f %12.1f\n", rows[i].label, rows[i].r.per_s, rows[i].unit, rows[i].r.p50_us,
           rows[i].r.p99_us);
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) s_die("%s: %s", json, strerror(errno));
    fprintf(f, "{\n  \"sqlite\": \"%s\",\n  \"nproc\": %ld,\n  \"fs\": \"%s\",\n  \"results_per_row\": %zu,\n",
            sqlite3_libversion(), ncpu, s_fstype(disk), n);
    for (int i = 0; i < nr; i++)
      fprintf(f, "  \"%s\": {\"rate\": %.1f, \"unit\": \"%s\", \"p50_us\": %.2f, \"p99_us\": %.2f}%s\n", rows[i].key,
              rows[i].r.per_s, rows[i].unit, rows[i].r.p50_us, rows[i].r.p99_us, i + 1 < nr ? "," : "");
    fprintf(f, "}\n");
    fclose(f);
  }
  return 0;
}
