/* journal_test.c: the campaign journal against real files in a temporary directory: creation and
 * resume, the episode queue and its balanced order, leases, results (first write wins), expiry and
 * infrastructure failures up to abandonment, recovery after a coordinator crash, the writer lock, a
 * reader in another process while this one writes, and crash consistency under SIGKILL at a random
 * moment (PRAGMA integrity_check, done <=> one result row, every acknowledged result present).
 *
 * Child processes are forked while this process holds no SQLite connection (SQLite must not cross a
 * fork), are killed and reaped on every path, and the temporary directory is removed at the end. */
#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"

static char s_root[] = "/tmp/rsd-journal-test-XXXXXX";
static int s_ndirs;
static pid_t s_child = -1;

#define S_CAMPAIGN "libero_spatial_sweep"
#define S_CONFIG "{\"suite\":\"libero_spatial\",\"trials\":4}"
static const char *const s_variants[] = {"ar", "spec"};

/* ---- helpers ------------------------------------------------------------------------------------- */
/* A fresh subdirectory of the test root, for one test's campaign. */
static void s_newdir(char *out, size_t cap) {
  snprintf(out, cap, "%s/c%d", s_root, s_ndirs++);
  if (mkdir(out, 0755) != 0) {
    fprintf(stderr, "mkdir %s: %s\n", out, strerror(errno));
    exit(2);
  }
}

static co_journal_campaign_t s_campaign(void) {
  return (co_journal_campaign_t){S_CAMPAIGN, S_CONFIG, "sha256:0123abcd", "rsd 0.1.0"};
}

static co_episode_key_t s_key(const char *variant, uint32_t task, uint32_t trial) {
  co_episode_key_t k;
  memset(&k, 0, sizeof k);
  snprintf(k.variant, sizeof k.variant, "%s", variant);
  k.task = task;
  k.trial = trial;
  return k;
}

/* Adds the cross product nvariants x ntasks x ntrials (variant-major, as a config lists it). */
static void s_add_cross(co_journal_t *j, size_t nvariants, uint32_t ntasks, uint32_t ntrials, size_t *added) {
  size_t n = nvariants * ntasks * ntrials, i = 0;
  co_episode_key_t *keys = calloc(n, sizeof *keys);
  char name[32]; /* "v" and any size_t */
  for (size_t v = 0; v < nvariants; v++)
    for (uint32_t t = 0; t < ntasks; t++)
      for (uint32_t r = 0; r < ntrials; r++) {
        if (v < 2)
          keys[i++] = s_key(s_variants[v], t, r);
        else {
          snprintf(name, sizeof name, "v%zu", v);
          keys[i++] = s_key(name, t, r);
        }
      }
  co_journal_error_t err;
  co_journal_err_t rc = co_journal_add_episodes(j, keys, n, added, &err);
  CHECK(rc == CO_JOURNAL_OK, "add_episodes: %s", err.text);
  free(keys);
}

/* A journal in a new directory with 2 variants x 3 tasks x 4 trials. */
static co_journal_t *s_new_journal(char *dir, size_t cap) {
  s_newdir(dir, cap);
  co_journal_campaign_t c = s_campaign();
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err);
  CHECK(j != NULL, "open %s: %s", dir, err.text);
  if (!j) exit(1);
  s_add_cross(j, 2, 3, 4, NULL);
  return j;
}

/* A RESULT with every field set (OPT ones too). */
static msg_result_body_t s_result(const co_episode_key_t *k, msg_outcome_t outcome, uint32_t steps) {
  msg_result_body_t r;
  memset(&r, 0, sizeof r);
  snprintf(r.campaign, sizeof r.campaign, "%s", S_CAMPAIGN);
  snprintf(r.variant, sizeof r.variant, "%s", k->variant);
  r.task = k->task;
  r.trial = k->trial;
  r.attempt = 1;
  r.outcome = outcome;
  r.steps = steps;
  r.wall_ms = 4000 + steps;
  r.has_reason = true;
  snprintf(r.reason, sizeof r.reason, "%s", outcome == MSG_OUTCOME_SUCCESS ? "bowl on plate" : "max_steps");
  r.has_worker = true;
  snprintf(r.worker, sizeof r.worker, "sim-a");
  r.has_chunks = true;
  r.chunks = 3;
  r.has_main_forwards = true;
  r.main_forwards = 12;
  r.has_draft_forwards = true;
  r.draft_forwards = 9;
  r.has_proposed = true;
  r.proposed_count = 4;
  memcpy(r.proposed, (uint32_t[]){8, 8, 6, 3}, 4 * sizeof(uint32_t));
  r.has_accepted = true;
  r.accepted_count = 4;
  memcpy(r.accepted, (uint32_t[]){8, 7, 5, 1}, 4 * sizeof(uint32_t));
  return r;
}

static msg_ack_status_t s_record(co_journal_t *j, const msg_result_body_t *r, uint64_t lease_id) {
  msg_ack_status_t st = MSG_ACK_UNKNOWN;
  co_journal_error_t err;
  co_journal_err_t rc = co_journal_record_result(j, r, lease_id, NULL, 0, &st, &err);
  CHECK(rc == CO_JOURNAL_OK, "record_result (%s, %u, %u): %s", r->variant, r->task, r->trial, err.text);
  return st;
}

static co_episode_t s_episode(co_journal_t *j, const co_episode_key_t *k) {
  co_episode_t ep;
  memset(&ep, 0, sizeof ep);
  co_journal_error_t err;
  co_journal_err_t rc = co_journal_episode(j, k, &ep, &err);
  CHECK(rc == CO_JOURNAL_OK, "episode (%s, %u, %u): %s", k->variant, k->task, k->trial, err.text);
  return ep;
}

static co_journal_counts_t s_counts(co_journal_t *j) {
  co_journal_counts_t c;
  co_journal_error_t err;
  co_journal_err_t rc = co_journal_counts(j, &c, NULL, 0, NULL, &err);
  CHECK(rc == CO_JOURNAL_OK, "counts: %s", err.text);
  return c;
}

/* A plain SQLite connection to the journal in `dir`, to look at the file from outside. */
static sqlite3 *s_raw(const char *dir, bool writable) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, CO_JOURNAL_FILE);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY, NULL);
  CHECK(rc == SQLITE_OK, "raw open %s: %s", path, sqlite3_errstr(rc));
  return db;
}

static int64_t s_raw_int(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  CHECK(rc == SQLITE_OK, "raw %s: %s", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
  return v;
}

static void s_raw_text(sqlite3 *db, const char *sql, char *out, size_t cap) {
  sqlite3_stmt *st = NULL;
  out[0] = '\0';
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
  CHECK(rc == SQLITE_OK, "raw %s: %s", sql, sqlite3_errmsg(db));
  sqlite3_finalize(st);
}

static void s_raw_exec(sqlite3 *db, const char *sql) {
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  CHECK(rc == SQLITE_OK, "raw %s: %s", sql, msg ? msg : "?");
  sqlite3_free(msg);
}

/* Rows of the derived cells table that disagree with the episodes (0 when consistent). */
static int64_t s_cells_mismatch(sqlite3 *db) {
  return s_raw_int(db,
                   "WITH e AS (SELECT variant, task, SUM(state IN ('done', 'leased')) AS b, "
                   "  SUM(state IN ('pending', 'infra_error_retrying')) AS w FROM episodes GROUP BY variant, task) "
                   "SELECT (SELECT COUNT(*) FROM e LEFT JOIN cells c USING (variant, task) "
                   "        WHERE c.busy IS NOT e.b OR c.waiting IS NOT e.w) "
                   "     + (SELECT COUNT(*) FROM cells) - (SELECT COUNT(*) FROM e)");
}

static void s_write_file(const char *dir, const char *name, const void *data, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "fopen %s", path);
  if (!f) return;
  fwrite(data, 1, n, f);
  fclose(f);
}

/* ---- tests --------------------------------------------------------------------------------------- */
static void test_create_and_resume(void) {
  char dir[256];
  s_newdir(dir, sizeof dir);
  co_journal_campaign_t c = s_campaign();
  co_journal_error_t err;
  bool created = false;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, &created, &err);
  CHECK(j && created, "create: %s", err.text);
  if (!j) return;
  co_journal_info_t info;
  CHECK(co_journal_info(j, &info, &err) == CO_JOURNAL_OK, "info: %s", err.text);
  CHECK(strcmp(info.name, S_CAMPAIGN) == 0 && strcmp(info.config_json, S_CONFIG) == 0 &&
            strcmp(info.config_hash, "sha256:0123abcd") == 0 && strcmp(info.code_version, "rsd 0.1.0") == 0,
        "stored campaign differs: %s %s", info.name, info.config_json);
  CHECK(info.created_us > 0 && info.wall_ms == 0 && info.last_lease_id == 0, "fresh campaign row");
  CHECK(strstr(co_journal_path(j), CO_JOURNAL_FILE) != NULL, "path %s", co_journal_path(j));
  CHECK(co_journal_add_wall_ms(j, 1500, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_add_wall_ms(j, 1500, &err) == CO_JOURNAL_OK, "%s", err.text);

  /* The file itself: WAL mode, our application id and schema version, the four tables. */
  sqlite3 *db = s_raw(dir, false);
  char mode[32];
  s_raw_text(db, "PRAGMA journal_mode", mode, sizeof mode);
  CHECK(strcmp(mode, "wal") == 0, "journal_mode %s", mode);
  CHECK(s_raw_int(db, "PRAGMA user_version") == CO_JOURNAL_SCHEMA_VERSION, "user_version");
  CHECK(s_raw_int(db, "PRAGMA application_id") == 0x7273646a, "application_id");
  CHECK(s_raw_int(db, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
                      "('campaign', 'episodes', 'results', 'worker_events')") == 4,
        "tables");
  sqlite3_close(db);
  co_journal_close(&j);
  co_journal_close(&j); /* idempotent */
  CHECK(j == NULL, "close sets NULL");

  /* Resuming with another config opens the stored one, so the caller can diff and refuse. */
  co_journal_campaign_t c2 = c;
  c2.config_json = "{\"suite\":\"libero_spatial\",\"trials\":50}";
  j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c2, &created, &err);
  CHECK(j && !created, "resume: %s", err.text);
  if (!j) return;
  CHECK(co_journal_info(j, &info, &err) == CO_JOURNAL_OK && strcmp(info.config_json, S_CONFIG) == 0,
        "resume must return the stored config, got %s", info.config_json);
  CHECK(info.wall_ms == 3000, "wall_ms accumulated: %" PRIu64, info.wall_ms);
  CHECK(co_journal_set_config(j, c2.config_json, "sha256:ffff", NULL, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_info(j, &info, &err) == CO_JOURNAL_OK && strcmp(info.config_json, c2.config_json) == 0 &&
            strcmp(info.config_hash, "sha256:ffff") == 0 && strcmp(info.code_version, "rsd 0.1.0") == 0,
        "set_config: %s %s %s", info.config_json, info.config_hash, info.code_version);
  co_journal_close(&j);
  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, &created, &err);
  CHECK(j && !created, "resume mode: %s", err.text);
  co_journal_close(&j);
}

static void test_open_refusals(void) {
  char dir[256], path[300];
  co_journal_error_t err;
  co_journal_campaign_t c = s_campaign();
  s_newdir(dir, sizeof dir);

  CHECK(!co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_NO_JOURNAL,
        "resume of nothing: %d %s", err.code, err.text);
  CHECK(!co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_NO_JOURNAL,
        "read-only of nothing: %d %s", err.code, err.text);
  snprintf(path, sizeof path, "%s/missing", dir);
  CHECK(!co_journal_open(path, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err) && err.code == CO_JOURNAL_ERR_IO &&
            strstr(err.text, "missing"),
        "no directory: %d %s", err.code, err.text);
  /* Creating without a campaign fails before any file is made. */
  CHECK(!co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_ARG,
        "create without campaign: %d %s", err.code, err.text);
  snprintf(path, sizeof path, "%s/%s", dir, CO_JOURNAL_FILE);
  CHECK(access(path, F_OK) != 0, "no file left behind");
  /* An empty file (a create killed before its first commit) is no journal yet, and a create fills it. */
  s_write_file(dir, CO_JOURNAL_FILE, "", 0);
  CHECK(!co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_NO_JOURNAL,
        "resume of an empty file: %d %s", err.code, err.text);
  CHECK(!co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_NO_JOURNAL,
        "read-only of an empty file: %d %s", err.code, err.text);
  CHECK(!co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_ARG,
        "create over an empty file without campaign: %d %s", err.code, err.text);
  bool created = false;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, &created, &err);
  CHECK(j && created, "create over an empty file: %s", err.text);
  co_journal_close(&j);

  /* A newer schema version is refused, naming both versions. */
  sqlite3 *db = s_raw(dir, true);
  s_raw_exec(db, "PRAGMA user_version = 99");
  sqlite3_close(db);
  CHECK(!co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_SCHEMA &&
            strstr(err.text, "99"),
        "newer schema: %d %s", err.code, err.text);
  CHECK(!co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_SCHEMA,
        "newer schema read-only: %d %s", err.code, err.text);

  /* Another application's SQLite file, and a file that is not SQLite at all. */
  s_newdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/%s", dir, CO_JOURNAL_FILE);
  sqlite3_open(path, &db);
  s_raw_exec(db, "CREATE TABLE notes (x TEXT)");
  sqlite3_close(db);
  CHECK(!co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err) && err.code == CO_JOURNAL_ERR_SCHEMA &&
            strstr(err.text, "not an rsd journal"),
        "foreign sqlite file: %d %s", err.code, err.text);
  s_newdir(dir, sizeof dir);
  char junk[4096];
  memset(junk, 'x', sizeof junk);
  s_write_file(dir, CO_JOURNAL_FILE, junk, sizeof junk);
  CHECK(!co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err) && err.code == CO_JOURNAL_ERR_SCHEMA &&
            err.sqlite_code == SQLITE_NOTADB && strstr(err.text, "not a database"),
        "garbage file: %d %s", err.code, err.text);
  CHECK(!co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_SCHEMA,
        "garbage file read-only: %d %s", err.code, err.text);

  for (int code = 1; code <= CO_JOURNAL_ERR_STATE; code++)
    CHECK(strcmp(co_journal_strerror((co_journal_err_t)code), "unknown error code") != 0, "strerror %d", code);
  CHECK(strcmp(co_journal_strerror((co_journal_err_t)777), "unknown error code") == 0, "strerror of nonsense");
  CHECK(co_episode_state_name(CO_EPISODE_RETRYING) && strcmp(co_episode_state_name(CO_EPISODE_RETRYING),
                                                             "infra_error_retrying") == 0 &&
            co_episode_state_name(CO_EPISODE_STATE_COUNT_) == NULL,
        "state names");
  CHECK(co_event_name(CO_EVENT_LEASE_EXPIRED) && strcmp(co_event_name(CO_EVENT_LEASE_EXPIRED), "lease_expired") == 0 &&
            co_event_name(CO_EVENT_COUNT_) == NULL,
        "event names");
}

static void test_add_episodes_idempotent(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_counts_t c = s_counts(j);
  CHECK(c.total == 24 && c.by_state[CO_EPISODE_PENDING] == 24, "24 pending, got %" PRIu64, c.total);
  size_t added = 99;
  s_add_cross(j, 2, 3, 4, &added);
  CHECK(added == 0, "adding again adds nothing, added %zu", added);
  s_add_cross(j, 2, 3, 5, &added); /* one more trial per (variant, task) */
  CHECK(added == 6, "6 new trials, added %zu", added);
  c = s_counts(j);
  CHECK(c.total == 30, "30 episodes, got %" PRIu64, c.total);

  /* A bad key refuses the whole call; nothing of it is added. */
  co_episode_key_t keys[2] = {s_key("ar", 7, 0), s_key("", 7, 1)};
  co_journal_error_t err;
  CHECK(co_journal_add_episodes(j, keys, 2, &added, &err) == CO_JOURNAL_ERR_ARG && added == 0, "empty variant: %s",
        err.text);
  CHECK(s_counts(j).total == 30, "nothing added by a refused call");
  co_journal_close(&j);
}

static void test_balanced_order(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t eps[24];
  size_t got = 0;
  CHECK(co_journal_next_pending(j, 6, eps, &got, &err) == CO_JOURNAL_OK && got == 6, "next_pending: %s", err.text);
  bool seen[2][3] = {{false}};
  for (size_t i = 0; i < got; i++) {
    int v = strcmp(eps[i].key.variant, "spec") == 0;
    CHECK(eps[i].key.trial == 0 && eps[i].key.task < 3 && !seen[v][eps[i].key.task],
          "first 6 must be trial 0 of each (variant, task): #%zu is (%s, %u, %u)", i, eps[i].key.variant,
          eps[i].key.task, eps[i].key.trial);
    if (eps[i].key.task < 3) seen[v][eps[i].key.task] = true;
    CHECK(eps[i].state == CO_EPISODE_PENDING && eps[i].lease_id == 0, "pending, no lease");
  }
  /* The whole queue comes in rounds: trial 0 of every cell, then trial 1, ... */
  CHECK(co_journal_next_pending(j, 24, eps, &got, &err) == CO_JOURNAL_OK && got == 24, "all 24: %s", err.text);
  for (size_t i = 0; i < got; i++)
    CHECK(eps[i].key.trial == i / 6, "#%zu is trial %u, want %zu", i, eps[i].key.trial, i / 6);
  CHECK(strcmp(eps[0].key.variant, "ar") == 0 && eps[0].key.task == 0 && strcmp(eps[5].key.variant, "spec") == 0 &&
            eps[5].key.task == 2,
        "ties in insertion (config) order");

  /* Trials 1..3 of (ar, 0) under way: its trial 0 comes after every other cell's first three, even
   * though its trial number is the lowest (the order counts what each cell has under way or done). */
  co_episode_t ep;
  for (uint32_t t = 1; t <= 3; t++) {
    co_episode_key_t k = s_key("ar", 0, t);
    CHECK(co_journal_lease(j, &k, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  }
  CHECK(co_journal_next_pending(j, 16, eps, &got, &err) == CO_JOURNAL_OK && got == 16, "next 16: %s", err.text);
  for (size_t i = 0; i < 15; i++)
    CHECK(!(strcmp(eps[i].key.variant, "ar") == 0 && eps[i].key.task == 0), "(ar, 0) must wait: #%zu is trial %u",
          i, eps[i].key.trial);
  for (size_t i = 0; i < 15; i++) CHECK(eps[i].key.trial == i / 5, "the other five cells in rounds (#%zu)", i);
  CHECK(strcmp(eps[15].key.variant, "ar") == 0 && eps[15].key.task == 0 && eps[15].key.trial == 0, "then (ar, 0, 0)");

  /* lease_next takes the same order in one transaction, with fresh, increasing lease ids. */
  CHECK(co_journal_lease_next(j, 6, "sim-b", 123, eps, &got, &err) == CO_JOURNAL_OK && got == 6, "lease_next: %s",
        err.text);
  uint64_t last = ep.lease_id;
  for (size_t i = 0; i < got; i++) {
    CHECK(eps[i].state == CO_EPISODE_LEASED && eps[i].lease_id > last && strcmp(eps[i].worker, "sim-b") == 0 &&
              eps[i].deadline_us == 123,
          "lease_next #%zu: state %d lease %" PRIu64, i, eps[i].state, eps[i].lease_id);
    CHECK(!(strcmp(eps[i].key.variant, "ar") == 0 && eps[i].key.task == 0), "lease_next skips the busy cell");
    last = eps[i].lease_id;
    co_episode_t again = s_episode(j, &eps[i].key);
    CHECK(again.state == CO_EPISODE_LEASED && again.lease_id == eps[i].lease_id, "lease stored");
  }
  co_journal_counts_t c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_LEASED] == 9 && c.by_state[CO_EPISODE_PENDING] == 15, "9 leased, 15 pending");
  /* Asking for more than there is gives what there is. */
  CHECK(co_journal_lease_next(j, 24, "sim-c", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 15, "rest: %zu", got);
  CHECK(co_journal_lease_next(j, 24, "sim-c", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 0, "none left");
  CHECK(co_journal_lease_next(j, 1, "", 0, eps, &got, &err) == CO_JOURNAL_ERR_ARG, "worker name required");
  co_journal_close(&j);
}

static void test_lease_result_duplicate(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_key_t k = s_key("spec", 2, 3);
  co_episode_t ep;
  CHECK(co_journal_lease(j, &k, "sim-a", 1000, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(ep.lease_id == 1 && ep.attempts == 0 && ep.state == CO_EPISODE_LEASED, "first lease id 1, attempts 0");
  CHECK(co_journal_lease(j, &k, "sim-b", 0, NULL, &err) == CO_JOURNAL_ERR_STATE && strstr(err.text, "leased"),
        "a leased episode cannot be leased again: %s", err.text);
  co_episode_key_t nokey = s_key("spec", 2, 77);
  CHECK(co_journal_lease(j, &nokey, "sim-b", 0, NULL, &err) == CO_JOURNAL_ERR_NO_EPISODE, "unknown key: %s", err.text);

  msg_result_body_t r = s_result(&k, MSG_OUTCOME_SUCCESS, 123);
  float lat[3][4] = {{10, 200, 3000, 3210}, {11, 201, 3001, 3213}, {12.5f, 202, 3002, 3216.5f}};
  msg_ack_status_t st = MSG_ACK_UNKNOWN;
  CHECK(co_journal_record_result(j, &r, ep.lease_id, &lat[0][0], 3, &st, &err) == CO_JOURNAL_OK &&
            st == MSG_ACK_STORED,
        "store: %d %s", st, err.text);
  co_episode_t done = s_episode(j, &k);
  CHECK(done.state == CO_EPISODE_DONE && done.lease_id == 0 && strcmp(done.worker, "sim-a") == 0, "episode done");

  /* A second result for the key: duplicate, and the stored row stays as it was. */
  msg_result_body_t r2 = s_result(&k, MSG_OUTCOME_FAILURE, 220);
  r2.attempt = 2;
  CHECK(s_record(j, &r2, 999) == MSG_ACK_DUPLICATE, "second result is a duplicate");
  CHECK(s_record(j, &r, ep.lease_id) == MSG_ACK_DUPLICATE, "the same result again is a duplicate");
  co_journal_iter_t *it = co_journal_results(j, NULL, &err);
  CHECK(it != NULL, "results: %s", err.text);
  co_journal_result_t row;
  int n = 0;
  while (it && co_journal_results_next(it, &row, &err)) {
    n++;
    CHECK(memcmp(&row.r, &r, sizeof r) == 0, "stored row must be the first result exactly (steps %u outcome %d)",
          row.r.steps, row.r.outcome);
    CHECK(row.lease_id == ep.lease_id && row.received_us > 0, "lease id %" PRIu64, row.lease_id);
    CHECK(row.latency_chunks == 3 && row.latency && memcmp(row.latency, lat, sizeof lat) == 0, "latency blob");
  }
  CHECK(err.code == CO_JOURNAL_OK && n == 1, "one result row, got %d (%s)", n, err.text);
  co_journal_iter_destroy(&it);
  co_journal_iter_destroy(&it);
  CHECK(co_journal_lease(j, &k, "sim-b", 0, NULL, &err) == CO_JOURNAL_ERR_STATE, "done cannot be leased");

  /* First write wins per key: a pending episode that was never leased here still takes a result. */
  co_episode_key_t kp = s_key("ar", 0, 1);
  msg_result_body_t rp = s_result(&kp, MSG_OUTCOME_FAILURE, 220);
  rp.has_reason = rp.has_worker = rp.has_chunks = rp.has_main_forwards = false;
  rp.has_draft_forwards = rp.has_proposed = rp.has_accepted = false;
  memset(rp.reason, 0, sizeof rp.reason);
  memset(rp.worker, 0, sizeof rp.worker);
  rp.chunks = 0;
  rp.main_forwards = rp.draft_forwards = 0;
  rp.proposed_count = rp.accepted_count = 0;
  memset(rp.proposed, 0, sizeof rp.proposed);
  memset(rp.accepted, 0, sizeof rp.accepted);
  CHECK(s_record(j, &rp, 4242) == MSG_ACK_STORED, "result for a pending episode is stored");
  CHECK(s_episode(j, &kp).state == CO_EPISODE_DONE, "and the episode is done");
  it = co_journal_results(j, "ar", &err);
  n = 0;
  while (it && co_journal_results_next(it, &row, &err)) {
    n++;
    CHECK(memcmp(&row.r, &rp, sizeof rp) == 0, "required-only result reads back with every has_ false");
    CHECK(row.latency == NULL && row.latency_chunks == 0, "no latency");
  }
  CHECK(n == 1 && err.code == CO_JOURNAL_OK, "variant filter: %d rows", n);
  co_journal_iter_destroy(&it);

  /* Unknown: an episode key not in the campaign, another campaign. */
  msg_result_body_t ru = s_result(&nokey, MSG_OUTCOME_SUCCESS, 5);
  CHECK(s_record(j, &ru, 1) == MSG_ACK_UNKNOWN, "unknown episode");
  msg_result_body_t rc = s_result(&k, MSG_OUTCOME_SUCCESS, 5);
  snprintf(rc.campaign, sizeof rc.campaign, "another_campaign");
  CHECK(s_record(j, &rc, 1) == MSG_ACK_UNKNOWN, "another campaign");

  /* An infra_error outcome is not a result. */
  co_episode_key_t ki = s_key("ar", 1, 0);
  msg_result_body_t ri = s_result(&ki, MSG_OUTCOME_INFRA_ERROR, 5);
  CHECK(co_journal_record_result(j, &ri, 1, NULL, 0, &st, &err) == CO_JOURNAL_ERR_ARG &&
            strstr(err.text, "infra_error"),
        "infra_error refused: %s", err.text);
  CHECK(s_episode(j, &ki).state == CO_EPISODE_PENDING, "and nothing changed");
  CHECK(co_journal_record_result(j, &r, 1, NULL, 2, &st, &err) == CO_JOURNAL_ERR_ARG, "chunks without data");

  co_journal_counts_t c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_DONE] == 2 && c.successes == 1 && c.total == 24, "2 done, 1 success");

  /* Group commit: one call, per-result answers; a key twice in one call is stored once. */
  co_episode_key_t kb1 = s_key("ar", 2, 0), kb2 = s_key("ar", 2, 1);
  msg_result_body_t b1 = s_result(&kb1, MSG_OUTCOME_SUCCESS, 1), b2 = s_result(&kb2, MSG_OUTCOME_FAILURE, 2);
  msg_result_body_t b1again = s_result(&kb1, MSG_OUTCOME_FAILURE, 3);
  co_journal_result_in_t batch[5] = {{&b1, 50, NULL, 0}, {&b2, 51, &lat[0][0], 1}, {&b1again, 52, NULL, 0},
                                     {&r, 53, NULL, 0}, {&ru, 54, NULL, 0}};
  msg_ack_status_t sts[5];
  CHECK(co_journal_record_results(j, batch, 5, sts, &err) == CO_JOURNAL_OK, "batch: %s", err.text);
  CHECK(sts[0] == MSG_ACK_STORED && sts[1] == MSG_ACK_STORED && sts[2] == MSG_ACK_DUPLICATE &&
            sts[3] == MSG_ACK_DUPLICATE && sts[4] == MSG_ACK_UNKNOWN,
        "batch statuses %d %d %d %d %d", sts[0], sts[1], sts[2], sts[3], sts[4]);
  CHECK(s_episode(j, &kb1).state == CO_EPISODE_DONE && s_episode(j, &kb2).state == CO_EPISODE_DONE, "batch done");
  /* One bad member refuses the whole call before anything is written. */
  co_episode_key_t kb3 = s_key("ar", 2, 2);
  msg_result_body_t b3 = s_result(&kb3, MSG_OUTCOME_SUCCESS, 1);
  co_journal_result_in_t bad[2] = {{&b3, 60, NULL, 0}, {&ri, 61, NULL, 0}};
  CHECK(co_journal_record_results(j, bad, 2, sts, &err) == CO_JOURNAL_ERR_ARG && strstr(err.text, "result 1") &&
            sts[0] == MSG_ACK_UNKNOWN,
        "bad batch: %s", err.text);
  CHECK(s_episode(j, &kb3).state == CO_EPISODE_PENDING, "nothing of a refused batch is written");
  c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_DONE] == 4 && c.successes == 2, "4 done, 2 successes");
  uint64_t ev[CO_EVENT_COUNT_], workers = 0;
  CHECK(co_journal_event(j, CO_EVENT_JOINED, "sim-a", NULL, 0, "capacity 4", &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_event(j, CO_EVENT_MALFORMED, "sim-z", NULL, 0, "truncated header", &err) == CO_JOURNAL_OK, "%s",
        err.text);
  CHECK(co_journal_event(j, CO_EVENT_COUNT_, NULL, NULL, 0, NULL, &err) == CO_JOURNAL_ERR_ARG, "unknown event kind");
  CHECK(co_journal_event_counts(j, ev, &workers, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(ev[CO_EVENT_DUPLICATE_RESULT] == 4 && ev[CO_EVENT_UNKNOWN_RESULT] == 3 && ev[CO_EVENT_JOINED] == 1 &&
            ev[CO_EVENT_MALFORMED] == 1 && ev[CO_EVENT_LEASE_EXPIRED] == 0,
        "events: dup %" PRIu64 " unknown %" PRIu64, ev[CO_EVENT_DUPLICATE_RESULT], ev[CO_EVENT_UNKNOWN_RESULT]);
  CHECK(workers == 2, "workers seen: sim-a, sim-z; got %" PRIu64, workers);
  co_journal_close(&j);
}

static void test_expire_infra_abandon(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_key_t k = s_key("ar", 1, 2);
  co_episode_t ep, after;
  const uint32_t max_attempts = 3;

  CHECK(co_journal_lease(j, &k, "sim-a", 5000, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_renew(j, ep.lease_id, 9000, &err) == CO_JOURNAL_OK && s_episode(j, &k).deadline_us == 9000,
        "renew: %s", err.text);
  CHECK(co_journal_expire(j, ep.lease_id, "no heartbeat for 3000 ms", max_attempts, &after, &err) == CO_JOURNAL_OK,
        "expire: %s", err.text);
  CHECK(after.attempts == 1 && after.state == CO_EPISODE_RETRYING && after.lease_id == 0, "attempts 1, retrying");
  co_episode_t stored = s_episode(j, &k);
  CHECK(stored.attempts == 1 && stored.state == CO_EPISODE_RETRYING && stored.lease_id == 0 &&
            strcmp(stored.last_error, "no heartbeat for 3000 ms") == 0 && stored.deadline_us == 0,
        "stored: %d %u '%s'", stored.state, stored.attempts, stored.last_error);
  /* The old lease is gone: its expiry, renewal, release or infra error find nothing. */
  CHECK(co_journal_expire(j, ep.lease_id, "again", max_attempts, NULL, &err) == CO_JOURNAL_ERR_NO_LEASE,
        "stale expire");
  CHECK(co_journal_renew(j, ep.lease_id, 1, &err) == CO_JOURNAL_ERR_NO_LEASE, "stale renew");
  CHECK(co_journal_release(j, ep.lease_id, NULL, NULL, &err) == CO_JOURNAL_ERR_NO_LEASE, "stale release");
  CHECK(co_journal_infra_error(j, ep.lease_id, "x", max_attempts, NULL, &err) == CO_JOURNAL_ERR_NO_LEASE,
        "stale infra");
  CHECK(s_episode(j, &k).attempts == 1, "stale calls count nothing");

  /* Retrying episodes are leased again; release (Ctrl-C) counts no attempt. */
  co_episode_t eps[24];
  size_t got;
  CHECK(co_journal_next_pending(j, 24, eps, &got, &err) == CO_JOURNAL_OK && got == 24, "retrying one still waits");
  CHECK(co_journal_lease(j, &k, "sim-b", 0, &ep, &err) == CO_JOURNAL_OK && ep.attempts == 1, "lease again: %s",
        err.text);
  CHECK(co_journal_release(j, ep.lease_id, "coordinator stopping", &after, &err) == CO_JOURNAL_OK &&
            after.attempts == 1 && after.state == CO_EPISODE_RETRYING,
        "release keeps attempts: %s", err.text);
  co_episode_key_t kf = s_key("ar", 1, 3);
  CHECK(co_journal_lease(j, &kf, "sim-b", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_release(j, ep.lease_id, NULL, &after, &err) == CO_JOURNAL_OK && after.attempts == 0 &&
            after.state == CO_EPISODE_PENDING,
        "release of a fresh one: pending");

  /* Infrastructure errors up to max_attempts: abandoned, and no longer offered. */
  CHECK(co_journal_lease(j, &k, "sim-b", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_infra_error(j, ep.lease_id, "mju_error: unstable simulation", 0, NULL, &err) == CO_JOURNAL_ERR_ARG,
        "max_attempts 0 refused");
  CHECK(co_journal_infra_error(j, ep.lease_id, "mju_error: unstable simulation", max_attempts, &after, &err) ==
                CO_JOURNAL_OK &&
            after.attempts == 2 && after.state == CO_EPISODE_RETRYING,
        "infra error 2: %s", err.text);
  CHECK(co_journal_lease(j, &k, "sim-c", 0, &ep, &err) == CO_JOURNAL_OK && ep.attempts == 2, "lease 3");
  CHECK(co_journal_infra_error(j, ep.lease_id, "model returned NaN", max_attempts, &after, &err) == CO_JOURNAL_OK &&
            after.attempts == 3 && after.state == CO_EPISODE_ABANDONED,
        "third failure abandons: state %d", after.state);
  CHECK(co_journal_next_pending(j, 24, eps, &got, &err) == CO_JOURNAL_OK && got == 23, "abandoned not offered: %zu",
        got);
  for (size_t i = 0; i < got; i++)
    CHECK(!(strcmp(eps[i].key.variant, "ar") == 0 && eps[i].key.task == 1 && eps[i].key.trial == 2), "not offered");
  CHECK(co_journal_lease(j, &k, "sim-c", 0, NULL, &err) == CO_JOURNAL_ERR_STATE, "abandoned cannot be leased");
  co_journal_counts_t c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_ABANDONED] == 1 && c.infra_failures == 3, "1 abandoned, 3 failures");

  co_journal_iter_t *it = co_journal_episodes(j, CO_EPISODE_ABANDONED, &err);
  int n = 0;
  while (it && co_journal_episodes_next(it, &ep, &err)) {
    n++;
    CHECK(ep.key.task == 1 && ep.key.trial == 2 && strcmp(ep.last_error, "model returned NaN") == 0,
          "abandoned episode and its last error");
  }
  CHECK(n == 1 && err.code == CO_JOURNAL_OK, "one abandoned: %d", n);
  co_journal_iter_destroy(&it);
  it = co_journal_episodes(j, CO_EPISODE_STATE_COUNT_, &err);
  n = 0;
  while (it && co_journal_episodes_next(it, &ep, &err)) n++;
  CHECK(n == 24, "all episodes: %d", n);
  co_journal_iter_destroy(&it);

  uint64_t ev[CO_EVENT_COUNT_];
  CHECK(co_journal_event_counts(j, ev, NULL, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(ev[CO_EVENT_LEASE_EXPIRED] == 1 && ev[CO_EVENT_INFRA_ERROR] == 2 && ev[CO_EVENT_ABANDONED] == 1 &&
            ev[CO_EVENT_RELEASED] == 2,
        "events: expired %" PRIu64 " infra %" PRIu64 " abandoned %" PRIu64 " released %" PRIu64,
        ev[CO_EVENT_LEASE_EXPIRED], ev[CO_EVENT_INFRA_ERROR], ev[CO_EVENT_ABANDONED], ev[CO_EVENT_RELEASED]);

  /* A late result for the abandoned episode is a real run of it: stored, first write wins. */
  msg_result_body_t r = s_result(&k, MSG_OUTCOME_SUCCESS, 80);
  CHECK(s_record(j, &r, 2) == MSG_ACK_STORED, "late result stored");
  CHECK(s_episode(j, &k).state == CO_EPISODE_DONE, "late result makes it done");
  sqlite3 *db = s_raw(dir, false);
  CHECK(s_cells_mismatch(db) == 0, "cells agree with episodes after every kind of change");
  CHECK(s_raw_int(db, "SELECT busy FROM cells WHERE variant = 'ar' AND task = 1") == 1 &&
            s_raw_int(db, "SELECT waiting FROM cells WHERE variant = 'ar' AND task = 1") == 3,
        "cell (ar, 1): 1 done, 3 waiting");
  sqlite3_close(db);
  co_journal_close(&j);
}

/* A variant the model refuses: its waiting episodes (pending, retrying) are abandoned at once with the reason
 * and an event each; leased and done ones, and the other variant, stay as they are. */
static void test_abandon_waiting(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t held, ep;
  co_episode_key_t kl = s_key("spec", 0, 0), kd = s_key("spec", 0, 1), kr = s_key("spec", 0, 2);
  CHECK(co_journal_lease(j, &kl, "sim-a", 0, &held, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_lease(j, &kd, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  msg_result_body_t r = s_result(&kd, MSG_OUTCOME_FAILURE, 40);
  CHECK(s_record(j, &r, ep.lease_id) == MSG_ACK_STORED, "result stored");
  CHECK(co_journal_lease(j, &kr, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_infra_error(j, ep.lease_id, "scene failed", 3, NULL, &err) == CO_JOURNAL_OK, "infra: %s", err.text);
  size_t n = 99;
  CHECK(co_journal_abandon_waiting(j, "spec", NULL, &n, &err) == CO_JOURNAL_ERR_ARG && n == 0, "no reason refused");
  CHECK(co_journal_abandon_waiting(j, "spec", "variant spec does not fit the model", &n, &err) == CO_JOURNAL_OK &&
            n == 10,
        "abandoned %zu of spec's 12 (1 leased, 1 done): %s", n, err.text);
  CHECK(s_episode(j, &kl).state == CO_EPISODE_LEASED && s_episode(j, &kl).lease_id == held.lease_id, "leased kept");
  CHECK(s_episode(j, &kd).state == CO_EPISODE_DONE, "done kept");
  co_episode_t er = s_episode(j, &kr);
  CHECK(er.state == CO_EPISODE_ABANDONED && er.attempts == 1 &&
            strcmp(er.last_error, "variant spec does not fit the model") == 0,
        "retrying one abandoned with the reason: %d %u '%s'", er.state, er.attempts, er.last_error);
  co_episode_t eps[24];
  size_t got = 0;
  CHECK(co_journal_next_pending(j, 24, eps, &got, &err) == CO_JOURNAL_OK && got == 12, "waiting: %zu", got);
  for (size_t i = 0; i < got; i++) CHECK(strcmp(eps[i].key.variant, "ar") == 0, "only ar waits");
  co_journal_counts_t c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_ABANDONED] == 10 && c.by_state[CO_EPISODE_PENDING] == 12, "counts");
  uint64_t ev[CO_EVENT_COUNT_];
  CHECK(co_journal_event_counts(j, ev, NULL, &err) == CO_JOURNAL_OK && ev[CO_EVENT_ABANDONED] == 10,
        "abandoned events: %" PRIu64, ev[CO_EVENT_ABANDONED]);
  CHECK(co_journal_abandon_waiting(j, "spec", "again", &n, &err) == CO_JOURNAL_OK && n == 0, "second call: %zu", n);
  sqlite3 *db = s_raw(dir, false);
  CHECK(s_cells_mismatch(db) == 0, "cells agree with episodes");
  sqlite3_close(db);
  co_journal_close(&j);
}

/* --retry-abandoned: abandoned episodes (of one variant, or all) wait again with a fresh budget of
 * max_attempts, while attempts keeps every failure; a requeued event each. A journal made before
 * attempts_base existed is read as it is and migrated by a writer. */
static void test_requeue_abandoned(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t ep;
  co_episode_key_t kf = s_key("spec", 1, 0), kr = s_key("ar", 2, 3);
  for (int a = 0; a < 2; a++) { /* two infrastructure failures at max_attempts 2: abandoned */
    CHECK(co_journal_lease(j, &kf, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
    CHECK(co_journal_infra_error(j, ep.lease_id, "render failed", 2, &ep, &err) == CO_JOURNAL_OK, "infra: %s", err.text);
  }
  CHECK(ep.state == CO_EPISODE_ABANDONED && ep.attempts == 2, "abandoned after 2: %d %u", ep.state, ep.attempts);
  size_t n = 99;
  CHECK(co_journal_abandon_waiting(j, "ar", "variant ar does not fit the model", &n, &err) == CO_JOURNAL_OK && n == 12,
        "ar's 12 abandoned without running: %zu %s", n, err.text);
  CHECK(s_counts(j).by_state[CO_EPISODE_ABANDONED] == 13, "13 abandoned");

  CHECK(co_journal_requeue_abandoned(j, NULL, NULL, &n, &err) == CO_JOURNAL_ERR_ARG && n == 0, "no note refused");
  CHECK(co_journal_requeue_abandoned(j, "spec", "by the test", &n, &err) == CO_JOURNAL_OK && n == 1,
        "spec's one requeued: %zu %s", n, err.text);
  ep = s_episode(j, &kf);
  CHECK(ep.state == CO_EPISODE_RETRYING && ep.attempts == 2 && strcmp(ep.last_error, "render failed") == 0,
        "requeued: retrying, attempts and last error kept: %d %u '%s'", ep.state, ep.attempts, ep.last_error);
  CHECK(s_episode(j, &kr).state == CO_EPISODE_ABANDONED, "the other variant is left abandoned");
  /* A fresh budget: one failure more is a retry, the second abandons it again, naming both counts. */
  CHECK(co_journal_lease(j, &kf, "sim-b", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_infra_error(j, ep.lease_id, "timeout", 2, &ep, &err) == CO_JOURNAL_OK &&
            ep.state == CO_EPISODE_RETRYING && ep.attempts == 3,
        "first failure after the requeue retries: %d %u %s", ep.state, ep.attempts, err.text);
  CHECK(co_journal_lease(j, &kf, "sim-b", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_expire(j, ep.lease_id, "no heartbeat", 2, &ep, &err) == CO_JOURNAL_OK &&
            ep.state == CO_EPISODE_ABANDONED && ep.attempts == 4,
        "second failure after the requeue abandons: %d %u %s", ep.state, ep.attempts, err.text);

  /* All variants: ar's never-run episodes wait as pending, spec's one as retrying. */
  CHECK(co_journal_requeue_abandoned(j, NULL, "again", &n, &err) == CO_JOURNAL_OK && n == 13, "all 13: %zu", n);
  CHECK(s_episode(j, &kr).state == CO_EPISODE_PENDING && s_episode(j, &kr).attempts == 0, "never failed: pending");
  co_journal_counts_t c = s_counts(j);
  CHECK(c.by_state[CO_EPISODE_ABANDONED] == 0 && c.by_state[CO_EPISODE_PENDING] == 23 &&
            c.by_state[CO_EPISODE_RETRYING] == 1 && c.infra_failures == 4,
        "nothing abandoned, 23 pending, 1 retrying, the 4 failures still counted (attempts %llu)",
        (unsigned long long)c.infra_failures);
  CHECK(co_journal_requeue_abandoned(j, NULL, "none left", &n, &err) == CO_JOURNAL_OK && n == 0, "none left: %zu", n);
  uint64_t ev[CO_EVENT_COUNT_];
  CHECK(co_journal_event_counts(j, ev, NULL, &err) == CO_JOURNAL_OK && ev[CO_EVENT_REQUEUED] == 14,
        "requeued events: %llu", (unsigned long long)ev[CO_EVENT_REQUEUED]);
  co_journal_close(&j);
  sqlite3 *db = s_raw(dir, true);
  char detail[512];
  s_raw_text(db, "SELECT detail FROM worker_events WHERE event = 'requeued' AND variant = 'spec' ORDER BY id DESC", detail,
             sizeof detail);
  CHECK(strcmp(detail, "abandoned after 4 attempts (last: no heartbeat); again") == 0, "requeued detail: '%s'", detail);
  s_raw_text(db, "SELECT detail FROM worker_events WHERE event = 'abandoned' AND variant = 'spec' ORDER BY id DESC",
             detail, sizeof detail);
  CHECK(strstr(detail, "after 2 attempts since its requeue (4 in all)") != NULL, "abandoned detail: '%s'", detail);
  CHECK(s_cells_mismatch(db) == 0, "cells agree with episodes");

  /* An older journal, without attempts_base: a reader reads it, a writer adds the column (0 everywhere). */
  s_raw_exec(db, "ALTER TABLE episodes DROP COLUMN attempts_base");
  sqlite3_close(db);
  co_journal_t *ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
  CHECK(ro != NULL, "read-only open without attempts_base: %s", err.text);
  if (ro) CHECK(s_counts(ro).by_state[CO_EPISODE_PENDING] == 23, "counts of the older file");
  co_journal_close(&ro);
  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  CHECK(j != NULL, "writer open without attempts_base: %s", err.text);
  if (!j) return;
  CHECK(co_journal_lease(j, &kf, "sim-c", 0, &ep, &err) == CO_JOURNAL_OK, "lease: %s", err.text);
  CHECK(co_journal_infra_error(j, ep.lease_id, "x", 6, &ep, &err) == CO_JOURNAL_OK && ep.state == CO_EPISODE_RETRYING,
        "5 attempts of 6 after migration: retrying: %s", err.text);
  co_journal_close(&j);
  db = s_raw(dir, false);
  CHECK(s_raw_int(db, "SELECT COUNT(*) FROM pragma_table_info('episodes') WHERE name = 'attempts_base'") == 1 &&
            s_raw_int(db, "SELECT SUM(attempts_base) FROM episodes") == 0,
        "the writer added attempts_base, 0 in every row");
  sqlite3_close(db);
}

static void test_reopen_and_recover(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t eps[4], ep;
  size_t got;
  /* 1 done, 1 retrying, 4 leased (one of them with an attempt behind it). */
  CHECK(co_journal_lease_next(j, 2, "sim-a", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 2, "%s", err.text);
  msg_result_body_t r = s_result(&eps[0].key, MSG_OUTCOME_SUCCESS, 50);
  CHECK(s_record(j, &r, eps[0].lease_id) == MSG_ACK_STORED, "stored");
  CHECK(co_journal_expire(j, eps[1].lease_id, "timeout", 3, NULL, &err) == CO_JOURNAL_OK, "%s", err.text);
  co_episode_key_t retried = eps[1].key;
  CHECK(co_journal_lease(j, &retried, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_lease_next(j, 3, "sim-b", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 3, "%s", err.text);
  uint64_t ev_before[CO_EVENT_COUNT_];
  co_journal_event_counts(j, ev_before, NULL, &err);
  co_journal_counts_t before = s_counts(j);
  co_journal_info_t info;
  co_journal_info(j, &info, &err);
  uint64_t last_lease = info.last_lease_id;
  CHECK(before.by_state[CO_EPISODE_LEASED] == 4 && before.by_state[CO_EPISODE_DONE] == 1, "setup");
  co_journal_close(&j); /* as if the coordinator died: the leases stay in the file */

  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  CHECK(j != NULL, "reopen: %s", err.text);
  if (!j) return;
  co_journal_counts_t after = s_counts(j);
  CHECK(memcmp(&before, &after, sizeof before) == 0, "a new handle finds the same counts");
  co_journal_iter_t *it = co_journal_results(j, NULL, &err);
  co_journal_result_t row;
  int n = 0;
  while (it && co_journal_results_next(it, &row, &err)) n += memcmp(&row.r, &r, sizeof r) == 0;
  co_journal_iter_destroy(&it);
  CHECK(n == 1, "the result is there after reopening");
  CHECK(s_episode(j, &retried).attempts == 1, "attempts survive reopening");

  size_t recovered = 0;
  CHECK(co_journal_recover(j, &recovered, &err) == CO_JOURNAL_OK && recovered == 4, "recover: %zu %s", recovered,
        err.text);
  co_journal_counts_t rec = s_counts(j);
  CHECK(rec.by_state[CO_EPISODE_LEASED] == 0 && rec.by_state[CO_EPISODE_PENDING] == 22 &&
            rec.by_state[CO_EPISODE_RETRYING] == 1 && rec.by_state[CO_EPISODE_DONE] == 1 && rec.infra_failures == 1,
        "recovered: pending %" PRIu64 " retrying %" PRIu64, rec.by_state[CO_EPISODE_PENDING],
        rec.by_state[CO_EPISODE_RETRYING]);
  co_episode_t re = s_episode(j, &retried);
  CHECK(re.state == CO_EPISODE_RETRYING && re.attempts == 1 && re.lease_id == 0, "no attempt counted for a crash");
  uint64_t ev[CO_EVENT_COUNT_];
  co_journal_event_counts(j, ev, NULL, &err);
  CHECK(ev[CO_EVENT_RECOVERED] == 4, "a recovered event per lease: %" PRIu64, ev[CO_EVENT_RECOVERED]);
  CHECK(co_journal_recover(j, &recovered, &err) == CO_JOURNAL_OK && recovered == 0, "second recover: nothing");
  CHECK(co_journal_lease(j, &retried, "sim-c", 0, &ep, &err) == CO_JOURNAL_OK && ep.lease_id > last_lease,
        "lease ids never repeat: %" PRIu64 " > %" PRIu64, ep.lease_id, last_lease);
  co_journal_close(&j);
}

static void test_lock_and_read_only(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  CHECK(!co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err) && err.code == CO_JOURNAL_ERR_LOCKED,
        "second writer refused: %d %s", err.code, err.text);
  co_journal_campaign_t c = s_campaign();
  CHECK(!co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err) && err.code == CO_JOURNAL_ERR_LOCKED,
        "second writer refused (create mode)");
  co_journal_t *ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
  CHECK(ro != NULL, "reader beside the writer: %s", err.text);
  if (!ro) {
    co_journal_close(&j);
    return;
  }
  co_episode_t ep;
  co_episode_key_t k = s_key("ar", 0, 0);
  CHECK(co_journal_lease(j, &k, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(s_counts(ro).by_state[CO_EPISODE_LEASED] == 1, "reader sees the writer's commit");
  msg_result_body_t r = s_result(&k, MSG_OUTCOME_SUCCESS, 10);
  msg_ack_status_t st;
  CHECK(co_journal_record_result(ro, &r, ep.lease_id, NULL, 0, &st, &err) == CO_JOURNAL_ERR_READ_ONLY,
        "reader cannot record: %s", err.text);
  CHECK(co_journal_lease(ro, &k, "x", 0, NULL, &err) == CO_JOURNAL_ERR_READ_ONLY, "reader cannot lease");
  CHECK(co_journal_recover(ro, NULL, &err) == CO_JOURNAL_ERR_READ_ONLY, "reader cannot recover");
  CHECK(co_journal_add_episodes(ro, &k, 1, NULL, &err) == CO_JOURNAL_ERR_READ_ONLY, "reader cannot add");
  co_journal_close(&j);
  CHECK(s_counts(ro).total == 24, "reader still reads after the writer closed");
  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  CHECK(j != NULL, "the lock is free again after close: %s", err.text);
  co_journal_close(&j);
  co_journal_close(&ro);

  /* A read-only open after a clean close (no -wal / -shm left) works too. */
  ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
  CHECK(ro && s_counts(ro).by_state[CO_EPISODE_LEASED] == 1, "read-only after clean close: %s", err.text);
  co_journal_close(&ro);
}

static void test_counts_per_variant(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t eps[24];
  size_t got;
  CHECK(co_journal_lease_next(j, 24, "sim-a", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 24, "%s", err.text);
  /* spec: 3 successes, 2 failures; ar: 1 success. */
  int spec_done = 0, ar_done = 0;
  for (size_t i = 0; i < got; i++) {
    bool spec = strcmp(eps[i].key.variant, "spec") == 0;
    if (spec && spec_done < 5) {
      msg_result_body_t r = s_result(&eps[i].key, spec_done < 3 ? MSG_OUTCOME_SUCCESS : MSG_OUTCOME_FAILURE, 9);
      CHECK(s_record(j, &r, eps[i].lease_id) == MSG_ACK_STORED, "stored");
      spec_done++;
    } else if (!spec && ar_done < 1) {
      msg_result_body_t r = s_result(&eps[i].key, MSG_OUTCOME_SUCCESS, 9);
      CHECK(s_record(j, &r, eps[i].lease_id) == MSG_ACK_STORED, "stored");
      ar_done++;
    }
  }
  co_journal_counts_t total, per[4];
  size_t nv = 0;
  CHECK(co_journal_counts(j, &total, per, 4, &nv, &err) == CO_JOURNAL_OK && nv == 2, "counts: %zu %s", nv, err.text);
  CHECK(total.total == 24 && total.by_state[CO_EPISODE_DONE] == 6 && total.successes == 4 &&
            total.by_state[CO_EPISODE_LEASED] == 18 && total.variant[0] == '\0',
        "total: done %" PRIu64 " successes %" PRIu64, total.by_state[CO_EPISODE_DONE], total.successes);
  CHECK(strcmp(per[0].variant, "ar") == 0 && per[0].total == 12 && per[0].by_state[CO_EPISODE_DONE] == 1 &&
            per[0].successes == 1,
        "ar first (insertion order): %s done %" PRIu64, per[0].variant, per[0].by_state[CO_EPISODE_DONE]);
  CHECK(strcmp(per[1].variant, "spec") == 0 && per[1].total == 12 && per[1].by_state[CO_EPISODE_DONE] == 5 &&
            per[1].successes == 3 && per[1].by_state[CO_EPISODE_LEASED] == 7,
        "spec: done %" PRIu64 " successes %" PRIu64, per[1].by_state[CO_EPISODE_DONE], per[1].successes);
  /* A smaller array gets the first variants and the true number. */
  memset(per, 0xab, sizeof per);
  CHECK(co_journal_counts(j, &total, per, 1, &nv, &err) == CO_JOURNAL_OK && nv == 2 &&
            strcmp(per[0].variant, "ar") == 0 && per[0].total == 12 && per[1].total == 0xabababababababab,
        "cap 1: nv %zu", nv);
  CHECK(total.total == 24, "total unaffected by cap");
  co_journal_close(&j);
}

/* The results columns are the RESULT fields, once each; a missing column comes back on open. */
static void test_schema_from_result_fields(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_close(&j);
  sqlite3 *db = s_raw(dir, true);
  int missing = 0, nfields = 0;
  char sql[256];
#define S_HAS_COL_(kind, n, key, req, lo, hi, en)                                                            \
  nfields++;                                                                                                  \
  snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM pragma_table_info('results') WHERE name = '%s'", #n);     \
  if (s_raw_int(db, sql) != 1) {                                                                              \
    missing++;                                                                                                \
    fprintf(stderr, "results has no column %s\n", #n);                                                      \
  }
  MSG_FIELDS_RESULT(S_HAS_COL_)
#undef S_HAS_COL_
  CHECK(missing == 0, "every RESULT field is a results column");
  CHECK(s_raw_int(db, "SELECT COUNT(*) FROM pragma_table_info('results')") == nfields + 3,
        "RESULT fields + lease_id, received_us, latency");
  CHECK(s_raw_int(db, "SELECT \"notnull\" FROM pragma_table_info('results') WHERE name = 'steps'") == 1 &&
            s_raw_int(db, "SELECT \"notnull\" FROM pragma_table_info('results') WHERE name = 'reason'") == 0,
        "REQ fields NOT NULL, OPT fields nullable");
  s_raw_exec(db, "ALTER TABLE results DROP COLUMN draft_forwards");
  sqlite3_close(db);

  /* A reader of the older file reads NULL for the missing column... */
  co_journal_error_t err;
  co_journal_t *ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
  CHECK(ro != NULL, "read-only open without draft_forwards: %s", err.text);
  co_journal_close(&ro);
  /* ... and a writer adds it. */
  j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  CHECK(j != NULL, "writer open without draft_forwards: %s", err.text);
  if (!j) return;
  co_episode_key_t k = s_key("spec", 0, 0);
  msg_result_body_t r = s_result(&k, MSG_OUTCOME_SUCCESS, 33);
  CHECK(s_record(j, &r, 1) == MSG_ACK_STORED, "stored after migration");
  co_journal_iter_t *it = co_journal_results(j, NULL, &err);
  co_journal_result_t row;
  CHECK(it && co_journal_results_next(it, &row, &err) && row.r.has_draft_forwards && row.r.draft_forwards == 9,
        "draft_forwards back: %s", err.text);
  co_journal_iter_destroy(&it);
  co_journal_close(&j);
  db = s_raw(dir, false);
  CHECK(s_raw_int(db, "SELECT json_extract(proposed, '$[2]') FROM results") == 6,
        "layer arrays are JSON text, queryable from SQL");
  sqlite3_close(db);
}

/* An SQLite failure names the operation, the statement and SQLite's message. */
static void test_error_names_statement(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  sqlite3 *db = s_raw(dir, true);
  s_raw_exec(db, "DROP TABLE worker_events");
  sqlite3_close(db);
  co_journal_error_t err;
  co_journal_err_t rc = co_journal_event(j, CO_EVENT_JOINED, "sim-a", NULL, 0, NULL, &err);
  CHECK(rc == CO_JOURNAL_ERR_SQLITE && err.sqlite_code != 0 && strstr(err.text, "co_journal_event") &&
            strstr(err.text, "event_add") && strstr(err.text, "worker_events"),
        "error text: %s", err.text);
  /* The failed transaction was rolled back: the journal goes on working. */
  co_episode_t ep;
  co_episode_key_t k = s_key("ar", 0, 0);
  CHECK(co_journal_lease(j, &k, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "still usable: %s", err.text);
  co_journal_close(&j);
}

/* A result and its episode's change to done are one transaction: when the second half fails (here a
 * trigger makes it fail), the first is rolled back too. */
static void test_result_is_atomic(void) {
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  sqlite3 *db = s_raw(dir, true);
  s_raw_exec(db, "CREATE TRIGGER inject BEFORE UPDATE OF state ON episodes WHEN NEW.state = 'done' "
                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  co_episode_key_t k = s_key("spec", 1, 1);
  co_episode_t ep;
  co_journal_error_t err;
  CHECK(co_journal_lease(j, &k, "sim-a", 0, &ep, &err) == CO_JOURNAL_OK, "%s", err.text);
  msg_result_body_t r = s_result(&k, MSG_OUTCOME_SUCCESS, 10);
  msg_ack_status_t st = MSG_ACK_STORED;
  co_journal_err_t rc = co_journal_record_result(j, &r, ep.lease_id, NULL, 0, &st, &err);
  CHECK(rc == CO_JOURNAL_ERR_SQLITE && st == MSG_ACK_UNKNOWN && strstr(err.text, "episode_done") &&
            strstr(err.text, "injected failure"),
        "failure of the second half: %d %s", rc, err.text);
  CHECK(s_raw_int(db, "SELECT COUNT(*) FROM results") == 0, "no result row without its episode done");
  CHECK(s_episode(j, &k).state == CO_EPISODE_LEASED, "episode still leased");
  s_raw_exec(db, "DROP TRIGGER inject");
  sqlite3_close(db);
  CHECK(s_record(j, &r, ep.lease_id) == MSG_ACK_STORED, "stored once the fault is gone");
  co_journal_close(&j);
}

/* ---- a VFS that counts syncs, to check the durability policy ---------------------------------------- */
/* Wraps the default VFS; every file it opens forwards to the real one and xSync is counted. */
typedef struct {
  sqlite3_file base;
  sqlite3_file *real; /* lives right after this struct, in the same allocation SQLite gives us */
} s_shim_file_t;

static sqlite3_vfs *s_real_vfs;
static int s_syncs;

#define S_REAL(f) (((s_shim_file_t *)(f))->real)
static int s_x_close(sqlite3_file *f) {
  int rc = S_REAL(f)->pMethods->xClose(S_REAL(f));
  f->pMethods = NULL;
  return rc;
}
static int s_x_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) {
  return S_REAL(f)->pMethods->xRead(S_REAL(f), b, n, o);
}
static int s_x_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
  return S_REAL(f)->pMethods->xWrite(S_REAL(f), b, n, o);
}
static int s_x_truncate(sqlite3_file *f, sqlite3_int64 n) { return S_REAL(f)->pMethods->xTruncate(S_REAL(f), n); }
static int s_x_sync(sqlite3_file *f, int flags) {
  s_syncs++;
  return S_REAL(f)->pMethods->xSync(S_REAL(f), flags);
}
static int s_x_size(sqlite3_file *f, sqlite3_int64 *n) { return S_REAL(f)->pMethods->xFileSize(S_REAL(f), n); }
static int s_x_lock(sqlite3_file *f, int l) { return S_REAL(f)->pMethods->xLock(S_REAL(f), l); }
static int s_x_unlock(sqlite3_file *f, int l) { return S_REAL(f)->pMethods->xUnlock(S_REAL(f), l); }
static int s_x_check(sqlite3_file *f, int *r) { return S_REAL(f)->pMethods->xCheckReservedLock(S_REAL(f), r); }
static int s_x_fcntl(sqlite3_file *f, int op, void *a) { return S_REAL(f)->pMethods->xFileControl(S_REAL(f), op, a); }
static int s_x_sector(sqlite3_file *f) { return S_REAL(f)->pMethods->xSectorSize(S_REAL(f)); }
static int s_x_devchar(sqlite3_file *f) { return S_REAL(f)->pMethods->xDeviceCharacteristics(S_REAL(f)); }
static int s_x_shmmap(sqlite3_file *f, int pg, int sz, int ext, void volatile **p) {
  return S_REAL(f)->pMethods->xShmMap(S_REAL(f), pg, sz, ext, p);
}
static int s_x_shmlock(sqlite3_file *f, int o, int n, int fl) {
  return S_REAL(f)->pMethods->xShmLock(S_REAL(f), o, n, fl);
}
static void s_x_shmbarrier(sqlite3_file *f) { S_REAL(f)->pMethods->xShmBarrier(S_REAL(f)); }
static int s_x_shmunmap(sqlite3_file *f, int del) { return S_REAL(f)->pMethods->xShmUnmap(S_REAL(f), del); }
static int s_x_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **p) {
  return S_REAL(f)->pMethods->xFetch(S_REAL(f), o, n, p);
}
static int s_x_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p) {
  return S_REAL(f)->pMethods->xUnfetch(S_REAL(f), o, p);
}
#undef S_REAL

static const sqlite3_io_methods s_shim_io = {
    3, s_x_close, s_x_read, s_x_write, s_x_truncate, s_x_sync, s_x_size, s_x_lock, s_x_unlock, s_x_check, s_x_fcntl,
    s_x_sector, s_x_devchar, s_x_shmmap, s_x_shmlock, s_x_shmbarrier, s_x_shmunmap, s_x_fetch, s_x_unfetch};

static int s_x_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out) {
  (void)vfs;
  s_shim_file_t *shim = (s_shim_file_t *)f;
  shim->real = (sqlite3_file *)(shim + 1);
  shim->base.pMethods = NULL;
  int rc = s_real_vfs->xOpen(s_real_vfs, name, shim->real, flags, out);
  if (rc == SQLITE_OK && shim->real->pMethods) shim->base.pMethods = &s_shim_io;
  return rc;
}
static int s_x_delete(sqlite3_vfs *v, const char *n, int d) { (void)v; return s_real_vfs->xDelete(s_real_vfs, n, d); }
static int s_x_access(sqlite3_vfs *v, const char *n, int fl, int *r) {
  (void)v;
  return s_real_vfs->xAccess(s_real_vfs, n, fl, r);
}
static int s_x_fullpath(sqlite3_vfs *v, const char *n, int sz, char *o) {
  (void)v;
  return s_real_vfs->xFullPathname(s_real_vfs, n, sz, o);
}
static int s_x_random(sqlite3_vfs *v, int n, char *o) { (void)v; return s_real_vfs->xRandomness(s_real_vfs, n, o); }
static int s_x_sleep(sqlite3_vfs *v, int us) { (void)v; return s_real_vfs->xSleep(s_real_vfs, us); }
static int s_x_time(sqlite3_vfs *v, double *t) { (void)v; return s_real_vfs->xCurrentTime(s_real_vfs, t); }
static int s_x_lasterr(sqlite3_vfs *v, int n, char *o) { (void)v; return s_real_vfs->xGetLastError(s_real_vfs, n, o); }
static int s_x_time64(sqlite3_vfs *v, sqlite3_int64 *t) {
  (void)v;
  return s_real_vfs->xCurrentTimeInt64(s_real_vfs, t);
}

static sqlite3_vfs s_shim_vfs;

/* Results commit with synchronous=FULL (the WAL is synced before record_result returns, one sync per
 * group commit); lease bookkeeping commits with NORMAL (no sync). */
static void test_sync_policy(void) {
  s_real_vfs = sqlite3_vfs_find(NULL);
  s_shim_vfs = (sqlite3_vfs){2, (int)sizeof(s_shim_file_t) + s_real_vfs->szOsFile, s_real_vfs->mxPathname, NULL,
                             "rsd-sync-counter", NULL, s_x_open, s_x_delete, s_x_access, s_x_fullpath, NULL, NULL,
                             NULL, NULL, s_x_random, s_x_sleep, s_x_time, s_x_lasterr, s_x_time64, NULL, NULL, NULL};
  CHECK(sqlite3_vfs_register(&s_shim_vfs, 1) == SQLITE_OK, "register the counting VFS");
  char dir[256];
  co_journal_t *j = s_new_journal(dir, sizeof dir);
  co_journal_error_t err;
  co_episode_t eps[4];
  size_t got;
  s_syncs = 0;
  CHECK(co_journal_lease_next(j, 4, "sim-a", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 4, "%s", err.text);
  CHECK(co_journal_renew(j, eps[0].lease_id, 5, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_release(j, eps[3].lease_id, NULL, NULL, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(co_journal_expire(j, eps[2].lease_id, "t", 3, NULL, &err) == CO_JOURNAL_OK, "%s", err.text);
  CHECK(s_syncs == 0, "lease bookkeeping commits without a sync (synchronous=NORMAL), saw %d", s_syncs);
  msg_result_body_t r0 = s_result(&eps[0].key, MSG_OUTCOME_SUCCESS, 1);
  CHECK(s_record(j, &r0, eps[0].lease_id) == MSG_ACK_STORED, "stored");
  CHECK(s_syncs == 1, "a result commit syncs the WAL once (synchronous=FULL), saw %d", s_syncs);
  CHECK(co_journal_lease_next(j, 2, "sim-a", 0, eps, &got, &err) == CO_JOURNAL_OK && got == 2, "%s", err.text);
  CHECK(s_syncs == 1, "and the next lease is back to NORMAL, saw %d", s_syncs);
  msg_result_body_t ra = s_result(&eps[0].key, MSG_OUTCOME_SUCCESS, 1);
  msg_result_body_t rb = s_result(&eps[1].key, MSG_OUTCOME_FAILURE, 2);
  co_journal_result_in_t in[2] = {{&ra, eps[0].lease_id, NULL, 0}, {&rb, eps[1].lease_id, NULL, 0}};
  msg_ack_status_t st[2];
  CHECK(co_journal_record_results(j, in, 2, st, &err) == CO_JOURNAL_OK && st[0] == MSG_ACK_STORED &&
            st[1] == MSG_ACK_STORED,
        "%s", err.text);
  CHECK(s_syncs == 2, "two results in one group commit: one sync, saw %d", s_syncs - 1);
  co_journal_close(&j);
  CHECK(sqlite3_vfs_unregister(&s_shim_vfs) == SQLITE_OK, "unregister the counting VFS");
}

/* ---- other processes ------------------------------------------------------------------------------ */
static void s_kill_child(void) {
  if (s_child > 0) {
    kill(s_child, SIGKILL);
    waitpid(s_child, NULL, 0);
    s_child = -1;
  }
}

static bool s_read_full(int fd, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    got += (size_t)r;
  }
  return true;
}

/* Child: records a result for every episode, as fast as leases come, then exits 0 (1 on any error). */
static int s_writer_child(const char *dir, int ready_fd, int go_fd) {
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  char b = j ? 'R' : 'E';
  if (write(ready_fd, &b, 1) != 1 || !j || !s_read_full(go_fd, &b, 1)) return 1;
  co_episode_t eps[4];
  size_t got;
  int bad = 0;
  do {
    if (co_journal_lease_next(j, 4, "sim-child", 0, eps, &got, &err)) bad++;
    for (size_t i = 0; i < got; i++) {
      msg_result_body_t r = s_result(&eps[i].key, i % 2 ? MSG_OUTCOME_FAILURE : MSG_OUTCOME_SUCCESS, 100);
      msg_ack_status_t st;
      if (co_journal_record_result(j, &r, eps[i].lease_id, NULL, 0, &st, &err) || st != MSG_ACK_STORED) bad++;
    }
  } while (got > 0 && !bad);
  if (bad) fprintf(stderr, "writer child: %s\n", err.text);
  co_journal_close(&j);
  return bad ? 1 : 0;
}

static void test_reader_while_writing(void) {
  char dir[256];
  s_newdir(dir, sizeof dir);
  co_journal_campaign_t c = s_campaign();
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err);
  CHECK(j != NULL, "%s", err.text);
  if (!j) return;
  s_add_cross(j, 2, 5, 30, NULL); /* 300 episodes */
  co_journal_close(&j);           /* no connection may cross the fork */

  int ready[2], go[2];
  if (pipe(ready) != 0 || pipe(go) != 0) {
    CHECK(0, "pipe: %s", strerror(errno));
    return;
  }
  fflush(NULL);
  s_child = fork();
  if (s_child == 0) {
    close(ready[0]);
    close(go[1]);
    _exit(s_writer_child(dir, ready[1], go[0]));
  }
  close(ready[1]);
  close(go[0]);
  char b = 0;
  CHECK(s_child > 0 && s_read_full(ready[0], &b, 1) && b == 'R', "writer child started");
  co_journal_t *ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
  CHECK(ro != NULL, "reader open: %s", err.text);
  CHECK(write(go[1], "g", 1) == 1, "go");
  uint64_t last_done = 0, reads = 0, partial = 0, errors = 0, bad = 0;
  int status = -1;
  for (;;) {
    co_journal_counts_t cnt;
    if (ro && co_journal_counts(ro, &cnt, NULL, 0, NULL, &err) == CO_JOURNAL_OK) {
      uint64_t sum = 0;
      for (int s = 0; s < CO_EPISODE_STATE_COUNT_; s++) sum += cnt.by_state[s];
      uint64_t done = cnt.by_state[CO_EPISODE_DONE];
      if (cnt.total != 300 || sum != 300 || done < last_done || cnt.successes > done) bad++;
      if (done > 0 && done < 300) partial++;
      last_done = done;
      reads++;
      if (done == 300) break;
    } else {
      if (errors++ == 0) fprintf(stderr, "reader: %s\n", err.text);
      if (!ro) break;
    }
    if (waitpid(s_child, &status, WNOHANG) == s_child) {
      s_child = -1;
      if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) break;
    }
  }
  if (s_child > 0 && waitpid(s_child, &status, 0) == s_child) s_child = -1;
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer child exit status %d", status);
  CHECK(errors == 0 && bad == 0, "reader: %" PRIu64 " errors, %" PRIu64 " inconsistent snapshots", errors, bad);
  CHECK(last_done == 300, "reader saw all 300 done, last %" PRIu64, last_done);
  CHECK(partial > 0, "reader read while the writer was half way (%" PRIu64 " of %" PRIu64 " reads)", partial, reads);
  co_journal_close(&ro);
  close(ready[0]);
  close(go[1]);
}

typedef struct {
  char tag; /* 'S' started, 'A' a result acknowledged as stored */
  co_episode_key_t key;
} s_note_t;

/* Child: leases 3 at a time, expires 1 in 5 and records the others (one transaction each, or all in
 * one group commit when `batch`), forever; reports each stored result. */
static int s_crash_child(const char *dir, int notes_fd, unsigned seed, bool batch) {
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
  if (!j) {
    fprintf(stderr, "crash child: %s\n", err.text);
    return 1;
  }
  if (co_journal_recover(j, NULL, &err)) return 1;
  s_note_t note;
  memset(&note, 0, sizeof note);
  note.tag = 'S';
  if (write(notes_fd, &note, sizeof note) != (ssize_t)sizeof note) return 1;
  srand(seed);
  for (;;) {
    co_episode_t eps[3];
    size_t got = 0;
    if (co_journal_lease_next(j, 3, "sim-crash", 0, eps, &got, &err)) return 1;
    if (got == 0) pause(); /* all done: wait for the kill */
    msg_result_body_t rs[3];
    co_journal_result_in_t in[3];
    msg_ack_status_t st[3];
    float lat[8] = {1, 2, 3, 6, 1, 2, 3, 6};
    size_t n = 0;
    for (size_t i = 0; i < got; i++) {
      if (rand() % 5 == 0) {
        if (co_journal_expire(j, eps[i].lease_id, "killed by test", 1000, NULL, &err)) return 1;
        continue;
      }
      rs[n] = s_result(&eps[i].key, rand() % 2 ? MSG_OUTCOME_SUCCESS : MSG_OUTCOME_FAILURE, 7);
      in[n] = (co_journal_result_in_t){&rs[n], eps[i].lease_id, lat, 2};
      n++;
    }
    for (size_t i = 0; i < n; i += batch ? n : 1)
      if (co_journal_record_results(j, &in[i], batch ? n : 1, &st[i], &err)) return 1;
    for (size_t i = 0; i < n; i++) {
      if (st[i] != MSG_ACK_STORED) return 1;
      note.tag = 'A';
      note.key = s_key(rs[i].variant, rs[i].task, rs[i].trial);
      if (write(notes_fd, &note, sizeof note) != (ssize_t)sizeof note) return 1;
    }
  }
}

static void test_crash_consistency(void) {
  char dir[256];
  s_newdir(dir, sizeof dir);
  co_journal_campaign_t c = s_campaign();
  co_journal_error_t err;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_CREATE_OR_RESUME, &c, NULL, &err);
  CHECK(j != NULL, "%s", err.text);
  if (!j) return;
  s_add_cross(j, 3, 10, 50, NULL); /* 1500 episodes: more than the rounds can finish */
  co_journal_close(&j);

  unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
  printf("journal_test: crash consistency seed %u\n", seed);
  srand(seed);
  enum { ROUNDS = 6 };
  size_t acked_total = 0, max_acked = 3 * 10 * 50;
  s_note_t *acked = calloc(max_acked, sizeof *acked);
  int killed_mid_work = 0;
  for (int round = 0; round < ROUNDS; round++) {
    int notes[2];
    if (pipe(notes) != 0) {
      CHECK(0, "pipe");
      break;
    }
    fflush(NULL);
    s_child = fork();
    if (s_child == 0) {
      close(notes[0]);
      _exit(s_crash_child(dir, notes[1], seed + (unsigned)round, round % 2 == 1));
    }
    close(notes[1]);
    s_note_t note;
    CHECK(s_child > 0 && s_read_full(notes[0], &note, sizeof note) && note.tag == 'S', "round %d: child started",
          round);
    struct timespec ts = {0, (long)(1 + rand() % 120) * 1000000L};
    nanosleep(&ts, NULL);
    int status = 0;
    kill(s_child, SIGKILL);
    waitpid(s_child, &status, 0);
    s_child = -1;
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "round %d: child died by SIGKILL (status %d)", round,
          status);
    while (s_read_full(notes[0], &note, sizeof note))
      if (note.tag == 'A' && acked_total < max_acked) acked[acked_total++] = note;
    close(notes[0]);

    /* A reader can open what the killed writer left (it recovers the WAL index itself)... */
    co_journal_t *ro = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &err);
    co_journal_counts_t rc_counts;
    CHECK(ro && co_journal_counts(ro, &rc_counts, NULL, 0, NULL, &err) == CO_JOURNAL_OK && rc_counts.total == 1500,
          "round %d: read-only open after SIGKILL: %s", round, err.text);
    co_journal_close(&ro);
    /* ... the lock died with the child, and the file is intact and consistent. */
    j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &err);
    CHECK(j != NULL, "round %d: reopen after SIGKILL: %s", round, err.text);
    if (!j) break;
    sqlite3 *db = s_raw(dir, false);
    char ok[64];
    s_raw_text(db, "PRAGMA integrity_check", ok, sizeof ok);
    CHECK(strcmp(ok, "ok") == 0, "round %d: integrity_check: %s", round, ok);
    CHECK(s_raw_int(db, "SELECT COUNT(*) FROM pragma_foreign_key_check") == 0, "round %d: foreign keys", round);
    CHECK(s_raw_int(db, "SELECT COUNT(*) FROM episodes e WHERE (e.state = 'done') <> EXISTS (SELECT 1 FROM results r "
                        "WHERE r.variant = e.variant AND r.task = e.task AND r.trial = e.trial)") == 0,
          "round %d: done <=> a result row", round);
    CHECK(s_raw_int(db, "SELECT COUNT(*) FROM results") ==
              s_raw_int(db, "SELECT COUNT(*) FROM episodes WHERE state = 'done'"),
          "round %d: one result row per done episode", round);
    CHECK(s_cells_mismatch(db) == 0, "round %d: cells agree with episodes", round);
    int64_t done = s_raw_int(db, "SELECT COUNT(*) FROM episodes WHERE state = 'done'");
    sqlite3_close(db);
    if (done < 1500) killed_mid_work++;
    size_t lost = 0;
    for (size_t i = 0; i < acked_total; i++) {
      co_episode_t ep;
      lost += co_journal_episode(j, &acked[i].key, &ep, &err) != CO_JOURNAL_OK || ep.state != CO_EPISODE_DONE;
    }
    CHECK(lost == 0, "round %d: %zu of %zu acknowledged results lost", round, lost, acked_total);
    CHECK((size_t)done >= acked_total, "round %d: done %" PRId64 " >= acknowledged %zu", round, done, acked_total);
    co_journal_close(&j);
  }
  printf("journal_test: crash rounds: %zu results acknowledged, %d of %d rounds killed with work left\n", acked_total,
         killed_mid_work, ROUNDS);
  CHECK(acked_total > 0, "the children stored results (%zu)", acked_total);
  CHECK(killed_mid_work > 0, "some round was killed with work left");
  free(acked);
}

static int s_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int main(void) {
  if (!mkdtemp(s_root)) {
    fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    return 2;
  }
  atexit(s_kill_child);
  test_create_and_resume();
  test_open_refusals();
  test_add_episodes_idempotent();
  test_balanced_order();
  test_lease_result_duplicate();
  test_expire_infra_abandon();
  test_abandon_waiting();
  test_requeue_abandoned();
  test_reopen_and_recover();
  test_lock_and_read_only();
  test_counts_per_variant();
  test_schema_from_result_fields();
  test_error_names_statement();
  test_result_is_atomic();
  test_sync_policy();
  test_reader_while_writing();
  test_crash_consistency();
  s_kill_child();
  nftw(s_root, s_rm, 16, FTW_DEPTH | FTW_PHYS);
  return check_summary("journal_test");
}
