/* journal.c: the campaign journal. Owns the SQLite file `journal.sqlite` in a campaign's output
 * directory: its schema, every statement that reads or writes it, and the durability choices. It does
 * not own scheduling policy beyond the balanced order of waiting episodes, lease timers (the
 * coordinator's), or the report's statistics (it hands out rows).
 *
 * ---- Schema (PRAGMA application_id 0x7273646a 'rsdj', PRAGMA user_version 1) ----------------------
 *
 *   campaign       one row (id = 1)
 *     name TEXT, config_json TEXT      the campaign name; the config as JSON, opaque here
 *     config_hash TEXT, code_version TEXT
 *     created_us, updated_us INTEGER   wall clock, microseconds since the Unix epoch (all *_us are)
 *     wall_ms INTEGER                  coordinator run time accumulated over runs
 *     last_lease_id INTEGER            lease ids are handed out here, +1 each: never reused in a journal
 *
 *   episodes       one row per episode key; rowid = insertion order (the cross product in config order)
 *     variant TEXT, task INTEGER, trial INTEGER     PRIMARY KEY
 *     state TEXT      pending | leased | done | infra_error_retrying | abandoned   (CHECKed)
 *     attempts        attempts that ended in an infrastructure failure (expired lease, infra_error)
 *     attempts_base   attempts when the episode was last requeued (co_journal_requeue_abandoned, `rsd
 *                     resume --retry-abandoned`), else 0: an episode is abandoned when attempts -
 *                     attempts_base reaches max_attempts, so a requeue gives it a fresh budget while
 *                     attempts keeps counting every failure. Added after the first journals: opening an
 *                     older journal for writing adds it (0 in every row); readers never read it.
 *     lease_id        the current lease while leased, else NULL (unique index over non-NULL)
 *     worker          the worker that holds or last held it
 *     deadline_us     lease deadline while leased (informational: the coordinator's timer decides)
 *     updated_us, last_error (reason of the last infrastructure failure)
 *     Episodes are never deleted.
 *
 *   cells          derived: one row per (variant, task), kept by triggers on episodes (insert, update
 *                  of state, delete), so that it moves in the same transaction as the episodes
 *     variant, task  PRIMARY KEY (WITHOUT ROWID)
 *     busy           episodes done or leased;   waiting   episodes pending or infra_error_retrying
 *     first_rowid    the cell's first episode: cells sort in insertion (config) order
 *     The balanced order (co_journal_next_pending) reads this table and then only the episodes it
 *     hands out, instead of every episode: 0.05 ms instead of 5 ms for 2,500 episodes on the 2-core VM.
 *
 *   results        one row per episode key, first write wins (INSERT ... ON CONFLICT DO NOTHING)
 *     one column per RESULT field, generated from MSG_FIELDS_RESULT in msg/msg_fields.h, named by its
 *     C name; REQ fields are NOT NULL, OPT fields are NULL when absent. Today:
 *       campaign TEXT, variant TEXT, task INTEGER, trial INTEGER, attempt INTEGER, outcome TEXT
 *       ('success' | 'failure'), steps INTEGER, wall_ms INTEGER, reason TEXT, worker TEXT,
 *       chunks INTEGER, main_forwards INTEGER, draft_forwards INTEGER, proposed TEXT, accepted TEXT
 *     Kinds map as U32/U64/BOOL -> INTEGER (U64 as its 64-bit pattern: values >= 2^63 read back exactly
 *     but sort negative in SQL), F64 -> REAL, STR -> TEXT, ENUM -> TEXT (the wire name), U32S/U64S ->
 *     TEXT holding a JSON array ("[12,9,4]"): readable in the sqlite3 shell, queryable with json_each /
 *     json_extract, and at most 16 numbers per layer array, so a blob would save nothing worth having.
 *     Then the journal's own columns:
 *       lease_id INTEGER      the lease the result arrived under
 *       received_us INTEGER   when it was stored
 *       latency BLOB          per action chunk: f32 little-endian [chunks][4] = queue, encode, decode,
 *                             total microseconds; NULL when the worker sent none
 *     PRIMARY KEY (variant, task, trial), FOREIGN KEY to episodes (PRAGMA foreign_keys is on).
 *     A RESULT field added later (protocol minor versions add OPT fields only) becomes a column by
 *     itself: opening an older journal for writing adds the missing columns (NULL in older rows), and
 *     a read-only handle reads NULL for them.
 *
 *   worker_events  append-only log; id INTEGER PRIMARY KEY orders it
 *     time_us, worker (NULL if unknown), event TEXT (co_event_name), variant/task/trial (NULL unless
 *     about an episode), lease_id (NULL if none), detail TEXT
 *
 * Invariants: an episode is done iff it has a results row (both written in one transaction); cells
 * counts equal those of the episodes (triggers). The crash test checks both after SIGKILL.
 *
 * ---- Durability and concurrency -------------------------------------------------------------------
 *   - WAL mode: readers (`rsd status`, `rsd report`, read-only handles) never block the writer and see
 *     a consistent snapshot per statement or iterator; busy_timeout covers the short waits of WAL
 *     recovery and checkpoints.
 *   - A result is committed with synchronous=FULL: the WAL is fsynced before record_result returns, so
 *     an ACK "stored" survives a power cut. That fsync is the cost of a result (0.1 to 4 ms on the
 *     2-core VM's disk, against about 30 us of CPU); co_journal_record_results lets the coordinator put
 *     every RESULT waiting on its socket into one transaction and one fsync (group commit) before it
 *     acknowledges them. journal_test counts the syncs through a VFS shim.
 *   - Everything else (leases, renewals, expiries, events) commits with synchronous=NORMAL: it survives
 *     `kill -9` of the process (the OS has the bytes); a power cut may lose the last of them, which
 *     costs at most an episode leased again (recover() returns leased ones to waiting anyway) or one
 *     attempt not counted. A FULL commit also makes every earlier NORMAL commit durable, since it syncs
 *     the whole WAL.
 *   - Writes use BEGIN IMMEDIATE, so a transaction never has to upgrade a read lock.
 *   - One writing process per journal: writing handles hold flock(LOCK_EX) on journal.sqlite.lock (a
 *     separate file, because SQLite's own fcntl locks on the database must not be disturbed). The kernel
 *     drops it when the process dies, so `kill -9` never leaves a stale lock; and recover() can assume
 *     that no live coordinator holds the leases it returns.
 *   - A coordinator crash is not the episodes' fault: recover() counts no attempt.
 *
 * ---- Which result counts --------------------------------------------------------------------------
 * The first result written for an episode key is its result; later ones are duplicates (acknowledged,
 * logged, ignored). A result is matched by its key, not by its lease: a result that arrives for an
 * episode that is pending, leased to another worker, retrying or even abandoned (its lease expired
 * while the worker was still running it) is a complete, deterministic run of that episode and is
 * stored; the episode becomes done and any newer lease on it ends (its RESULT will be a duplicate, its
 * expiry finds no lease). Only a result for another campaign or an unknown key is refused. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The latency blob is the sender's f32 memory, little-endian like the wire's payload frames. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the journal's latency blobs assume a little-endian host");
_Static_assert(sizeof(float) == 4, "latency blobs are f32");

#define S_APPLICATION_ID 0x7273646a /* 'rsdj' */
#define S_BUSY_TIMEOUT_MS 5000
#define S_LATENCY_COLS 4 /* queue, encode, decode, total */

/* ---- names -------------------------------------------------------------------------------------- */
#define S_NAME_(c, s) s,
static const char *const s_state_names[] = {CO_EPISODE_STATES(S_NAME_) NULL};
static const char *const s_event_names[] = {CO_EVENTS(S_NAME_) NULL};
#undef S_NAME_

const char *co_journal_strerror(co_journal_err_t code) {
  switch (code) {
    case CO_JOURNAL_OK:
      return "ok";
#define S_CASE_(name, num, text) \
  case CO_JOURNAL_ERR_##name:    \
    return text;
      CO_JOURNAL_ERRORS(S_CASE_)
#undef S_CASE_
  }
  return "unknown error code";
}

const char *co_episode_state_name(co_episode_state_t state) {
  return (unsigned)state < CO_EPISODE_STATE_COUNT_ ? s_state_names[state] : NULL;
}

const char *co_event_name(co_event_t event) {
  return (unsigned)event < CO_EVENT_COUNT_ ? s_event_names[event] : NULL;
}

/* ---- statements --------------------------------------------------------------------------------- */
/* Every statement the journal runs, prepared once at open: X(name, SQL). The results statements are
 * generated from MSG_FIELDS_RESULT at open (SQL NULL here). Episode columns are read by s_read_episode
 * in the order of S_EP_COLS. */
#define S_EP_COLS "variant, task, trial, state, attempts, lease_id, worker, deadline_us, updated_us, last_error"
#define S_EP_COLS_E \
  "e.variant, e.task, e.trial, e.state, e.attempts, e.lease_id, e.worker, e.deadline_us, e.updated_us, e.last_error"
#define S_WAITING "('pending', 'infra_error_retrying')"
/* The episodes column added after the first journals (see the schema): in new tables and by ALTER TABLE. */
#define S_ATTEMPTS_BASE_DEF "attempts_base INTEGER NOT NULL DEFAULT 0"
#define S_BUSY "('done', 'leased')"

#define S_STMTS(X)                                                                                              \
  X(begin, "BEGIN IMMEDIATE")                                                                                    \
  X(commit, "COMMIT")                                                                                            \
  X(rollback, "ROLLBACK")                                                                                        \
  X(campaign_get,                                                                                                \
    "SELECT name, config_json, config_hash, code_version, created_us, updated_us, wall_ms, last_lease_id "      \
    "FROM campaign WHERE id = 1")                                                                                \
  X(campaign_set_config,                                                                                         \
    "UPDATE campaign SET config_json = ?1, config_hash = ?2, code_version = COALESCE(?3, code_version), "       \
    "updated_us = ?4 WHERE id = 1")                                                                              \
  X(campaign_add_wall, "UPDATE campaign SET wall_ms = wall_ms + ?1, updated_us = ?2 WHERE id = 1")             \
  X(lease_id_next,                                                                                               \
    "UPDATE campaign SET last_lease_id = last_lease_id + 1, updated_us = ?1 WHERE id = 1 "                     \
    "RETURNING last_lease_id")                                                                                   \
  X(episode_add, "INSERT OR IGNORE INTO episodes (variant, task, trial, updated_us) VALUES (?1, ?2, ?3, ?4)")   \
  X(episode_get, "SELECT " S_EP_COLS ", rowid FROM episodes WHERE variant = ?1 AND task = ?2 AND trial = ?3")   \
  X(episode_by_lease, "SELECT " S_EP_COLS ", rowid FROM episodes WHERE lease_id = ?1")                          \
  X(cells_waiting, "SELECT variant, task, busy, waiting FROM cells WHERE waiting > 0 ORDER BY first_rowid")       \
  X(cell_waiting_episodes,                                                                                       \
    "SELECT " S_EP_COLS ", rowid FROM episodes WHERE variant = ?1 AND task = ?2 AND state IN " S_WAITING         \
    " ORDER BY trial LIMIT ?3")                                                                                  \
  X(episode_lease,                                                                                               \
    "UPDATE episodes SET state = 'leased', lease_id = ?2, worker = ?3, deadline_us = ?4, updated_us = ?5 "      \
    "WHERE rowid = ?1 AND state IN " S_WAITING)                                                                  \
  X(episode_renew, "UPDATE episodes SET deadline_us = ?2, updated_us = ?3 WHERE lease_id = ?1")                 \
  X(episode_unlease,                                                                                             \
    "UPDATE episodes SET state = ?2, attempts = ?3, lease_id = NULL, deadline_us = NULL, updated_us = ?4, "     \
    "last_error = COALESCE(?5, last_error) WHERE rowid = ?1")                                                    \
  X(episode_done,                                                                                                \
    "UPDATE episodes SET state = 'done', lease_id = NULL, deadline_us = NULL, "                                 \
    "worker = COALESCE(?2, worker), updated_us = ?3 WHERE rowid = ?1")                                          \
  X(recover_events,                                                                                              \
    "INSERT INTO worker_events (time_us, worker, event, variant, task, trial, lease_id, detail) "               \
    "SELECT ?1, worker, 'recovered', variant, task, trial, lease_id, "                                          \
    "'lease ended with the previous coordinator; no attempt counted' "                                          \
    "FROM episodes WHERE state = 'leased' ORDER BY rowid")                                                      \
  X(recover_episodes,                                                                                            \
    "UPDATE episodes SET state = CASE WHEN attempts > 0 THEN 'infra_error_retrying' ELSE 'pending' END, "      \
    "lease_id = NULL, deadline_us = NULL, updated_us = ?1 WHERE state = 'leased'")                              \
  X(abandon_waiting_events,                                                                                      \
    "INSERT INTO worker_events (time_us, worker, event, variant, task, trial, lease_id, detail) "               \
    "SELECT ?1, worker, 'abandoned', variant, task, trial, NULL, ?3 "                                           \
    "FROM episodes WHERE variant = ?2 AND state IN " S_WAITING " ORDER BY rowid")                               \
  X(abandon_waiting_episodes,                                                                                    \
    "UPDATE episodes SET state = 'abandoned', updated_us = ?1, last_error = ?3 "                                \
    "WHERE variant = ?2 AND state IN " S_WAITING)                                                                \
  X(requeue_events,                                                                                              \
    "INSERT INTO worker_events (time_us, worker, event, variant, task, trial, lease_id, detail) "               \
    "SELECT ?1, worker, 'requeued', variant, task, trial, NULL, "                                               \
    "'abandoned after ' || attempts || ' attempts (last: ' || COALESCE(last_error, '-') || '); ' || ?3 "        \
    "FROM episodes WHERE state = 'abandoned' AND (?2 IS NULL OR variant = ?2) ORDER BY rowid")                  \
  X(requeue_episodes,                                                                                            \
    "UPDATE episodes SET state = CASE WHEN attempts > 0 THEN 'infra_error_retrying' ELSE 'pending' END, "      \
    "attempts_base = attempts, updated_us = ?1 WHERE state = 'abandoned' AND (?2 IS NULL OR variant = ?2)")     \
  X(episode_base, "SELECT attempts_base FROM episodes WHERE rowid = ?1")                                        \
  X(event_add,                                                                                                   \
    "INSERT INTO worker_events (time_us, worker, event, variant, task, trial, lease_id, detail) "               \
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")                                                                   \
  X(counts,                                                                                                      \
    "SELECT e.variant, e.state, COUNT(*), SUM(e.attempts), SUM(r.outcome IS ?1), "                              \
    "       MIN(MIN(e.rowid)) OVER (PARTITION BY e.variant) AS first "                                          \
    "FROM episodes e LEFT JOIN results r ON r.variant = e.variant AND r.task = e.task AND r.trial = e.trial "   \
    "GROUP BY e.variant, e.state ORDER BY first, e.state")                                                      \
  X(event_counts, "SELECT event, COUNT(*) FROM worker_events GROUP BY event")                                   \
  X(workers_seen,                                                                                                \
    "SELECT COUNT(*) FROM (SELECT worker FROM worker_events WHERE worker IS NOT NULL "                          \
    "UNION SELECT worker FROM results WHERE worker IS NOT NULL)")                                               \
  X(insert_result, NULL)                                                                                         \
  X(select_results, NULL)                                                                                        \
  X(select_episodes, "SELECT " S_EP_COLS ", rowid FROM episodes WHERE ?1 IS NULL OR state = ?1 ORDER BY rowid")

typedef enum {
#define S_ID_(name, sql) S_ST_##name,
  S_STMTS(S_ID_)
#undef S_ID_
  S_ST_COUNT_
} s_stmt_id_t;

static const char *const s_stmt_names[] = {
#define S_N_(name, sql) #name,
    S_STMTS(S_N_)
#undef S_N_
};
static const char *const s_stmt_sql[] = {
#define S_Q_(name, sql) sql,
    S_STMTS(S_Q_)
#undef S_Q_
};

/* ---- the result columns, generated from MSG_FIELDS_RESULT ---------------------------------------- */
typedef struct {
  const char *name;
  const char *type;
  bool required;
} s_col_t;

#define S_SQLTYPE_U32 "INTEGER"
#define S_SQLTYPE_U64 "INTEGER"
#define S_SQLTYPE_F64 "REAL"
#define S_SQLTYPE_BOOL "INTEGER"
#define S_SQLTYPE_STR "TEXT"
#define S_SQLTYPE_ENUM "TEXT"
#define S_SQLTYPE_U32S "TEXT"
#define S_SQLTYPE_U64S "TEXT"
#define S_REQUIRED_REQ true
#define S_REQUIRED_OPT false
#define S_COL_(kind, n, key, req, lo, hi, en) {#n, S_SQLTYPE_##kind, S_REQUIRED_##req},
static const s_col_t s_result_cols[] = {MSG_FIELDS_RESULT(S_COL_)};
#undef S_COL_
#define S_NRESULT_COLS (sizeof s_result_cols / sizeof s_result_cols[0])
/* The journal's own result columns follow the RESULT fields, in this order. */
#define S_RESULT_EXTRA_DEFS "lease_id INTEGER NOT NULL, received_us INTEGER NOT NULL, latency BLOB"
#define S_RESULT_EXTRA_COLS "lease_id, received_us, latency"
#define S_RESULT_NEXTRA 3

/* ---- the handle --------------------------------------------------------------------------------- */
struct co_journal {
  sqlite3 *db;           /* owned */
  char *path;            /* owned: <dir>/journal.sqlite */
  int lock_fd;           /* owned: flock'ed journal.sqlite.lock while writing, -1 read-only */
  bool read_only;
  bool sync_full;        /* the connection's current PRAGMA synchronous is FULL */
  char *campaign;        /* owned: the campaign name, for checking RESULTs */
  char *info[4];         /* owned: name, config_json, config_hash, code_version of the last co_journal_info */
  bool has_col[S_NRESULT_COLS]; /* the results table has this RESULT field's column */
  sqlite3_stmt *st[S_ST_COUNT_]; /* owned, prepared at open */
};

struct co_journal_iter {
  co_journal_t *j;    /* borrowed */
  sqlite3_stmt *st;   /* owned */
  bool results;       /* results (true) or episodes */
  const char *op;     /* for error texts */
  float *latency;     /* owned: aligned copy of the current row's blob */
  size_t latency_cap; /* floats */
};

/* ---- errors -------------------------------------------------------------------------------------- */
static co_journal_err_t s_fail(co_journal_error_t *err, co_journal_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static co_journal_err_t s_fail(co_journal_error_t *err, co_journal_err_t code, const char *fmt, ...) {
  if (!err) return code;
  err->code = code;
  err->sqlite_code = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->text, sizeof err->text, fmt, ap);
  va_end(ap);
  return code;
}

static co_journal_err_t s_ok(co_journal_error_t *err) {
  if (err) {
    err->code = CO_JOURNAL_OK;
    err->sqlite_code = 0;
    err->text[0] = '\0';
  }
  return CO_JOURNAL_OK;
}

static co_journal_err_t s_code_of(int rc) {
  switch (rc & 0xff) {
    case SQLITE_NOMEM:
      return CO_JOURNAL_ERR_NOMEM;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
      return CO_JOURNAL_ERR_IO;
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return CO_JOURNAL_ERR_SCHEMA;
    case SQLITE_READONLY:
      return CO_JOURNAL_ERR_READ_ONLY;
    default:
      return CO_JOURNAL_ERR_SQLITE;
  }
}

/* An SQLite failure of statement `st` (nullable) named `name`, during operation `op`. */
static co_journal_err_t s_sqlerr(co_journal_t *self, co_journal_error_t *err, const char *op, const char *name,
                                 sqlite3_stmt *st, int rc) {
  const char *sql = st ? sqlite3_sql(st) : NULL;
  co_journal_err_t code = s_code_of(rc);
  s_fail(err, code, "%s: %s (%.60s%s): %s [SQLite %d: %s]", op, name, sql ? sql : "-",
         sql && strlen(sql) > 60 ? "..." : "", self && self->db ? sqlite3_errmsg(self->db) : sqlite3_errstr(rc),
         rc, sqlite3_errstr(rc));
  if (err) err->sqlite_code = rc;
  return code;
}

static co_journal_err_t s_stmterr(co_journal_t *self, co_journal_error_t *err, const char *op, s_stmt_id_t id,
                                  int rc) {
  return s_sqlerr(self, err, op, s_stmt_names[id], self->st[id], rc);
}

/* ---- small helpers ------------------------------------------------------------------------------- */
static int64_t s_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void s_copy(char *dst, size_t cap, const unsigned char *src) {
  if (!src) {
    dst[0] = '\0';
    return;
  }
  size_t n = strlen((const char *)src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* Index of `name` in a NULL-terminated name table, or -1. */
static int s_index(const char *const *names, const unsigned char *name) {
  if (!name) return -1;
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], (const char *)name) == 0) return i;
  return -1;
}

static bool s_valid_name(const char *s, size_t max) {
  if (!s) return false;
  size_t n = strnlen(s, max + 1);
  return n >= 1 && n <= max;
}

static bool s_valid_key(const co_episode_key_t *key) {
  return key && s_valid_name(key->variant, MSG_NAME_MAX);
}

/* A growable string for the generated SQL. */
typedef struct {
  char *s;
  size_t len, cap;
  bool failed;
} s_sb_t;

static void s_sb_add(s_sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_sb_add(s_sb_t *sb, const char *fmt, ...) {
  if (sb->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->s ? sb->s + sb->len : NULL, sb->s ? sb->cap - sb->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      sb->failed = true;
      return;
    }
    if (sb->s && sb->len + (size_t)n < sb->cap) {
      sb->len += (size_t)n;
      return;
    }
    size_t cap = (sb->cap ? sb->cap : 256);
    while (cap <= sb->len + (size_t)n) cap *= 2;
    char *s = realloc(sb->s, cap);
    if (!s) {
      sb->failed = true;
      return;
    }
    sb->s = s;
    sb->cap = cap;
  }
}

/* Collects the first failing bind's code. */
static void s_b(int *acc, int rc) {
  if (*acc == SQLITE_OK && rc != SQLITE_OK) *acc = rc;
}

static int s_bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
  return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
}

static int s_bind_key(sqlite3_stmt *st, int first, const co_episode_key_t *key) {
  int rc = SQLITE_OK;
  s_b(&rc, sqlite3_bind_text(st, first, key->variant, -1, SQLITE_TRANSIENT));
  s_b(&rc, sqlite3_bind_int64(st, first + 1, key->task));
  s_b(&rc, sqlite3_bind_int64(st, first + 2, key->trial));
  return rc;
}

/* A named statement, reset and ready to bind. */
static sqlite3_stmt *s_st(co_journal_t *self, s_stmt_id_t id) {
  sqlite3_reset(self->st[id]);
  sqlite3_clear_bindings(self->st[id]);
  return self->st[id];
}

/* Steps a statement that returns no rows we need, to completion, and resets it. */
static co_journal_err_t s_run(co_journal_t *self, s_stmt_id_t id, const char *op, co_journal_error_t *err) {
  sqlite3_stmt *st = self->st[id];
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  co_journal_err_t code = rc == SQLITE_DONE ? CO_JOURNAL_OK : s_stmterr(self, err, op, id, rc);
  sqlite3_reset(st);
  return code;
}

/* Steps a statement expected to give one row or none: *row tells which. Leaves it on the row. */
static co_journal_err_t s_step(co_journal_t *self, s_stmt_id_t id, const char *op, bool *row,
                               co_journal_error_t *err) {
  int rc = sqlite3_step(self->st[id]);
  *row = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW || rc == SQLITE_DONE) return CO_JOURNAL_OK;
  co_journal_err_t code = s_stmterr(self, err, op, id, rc);
  sqlite3_reset(self->st[id]);
  return code;
}

static co_journal_err_t s_bindfail(co_journal_t *self, co_journal_error_t *err, const char *op, s_stmt_id_t id,
                                   int rc) {
  co_journal_err_t code = s_stmterr(self, err, op, id, rc);
  sqlite3_reset(self->st[id]);
  return code;
}

/* Reads S_EP_COLS starting at column 0 into *out. False when the stored state is not one we know. */
static bool s_read_episode(sqlite3_stmt *st, co_episode_t *out) {
  memset(out, 0, sizeof *out);
  s_copy(out->key.variant, sizeof out->key.variant, sqlite3_column_text(st, 0));
  out->key.task = (uint32_t)sqlite3_column_int64(st, 1);
  out->key.trial = (uint32_t)sqlite3_column_int64(st, 2);
  int state = s_index(s_state_names, sqlite3_column_text(st, 3));
  out->state = state < 0 ? CO_EPISODE_STATE_COUNT_ : (co_episode_state_t)state;
  out->attempts = (uint32_t)sqlite3_column_int64(st, 4);
  out->lease_id = (uint64_t)sqlite3_column_int64(st, 5);
  s_copy(out->worker, sizeof out->worker, sqlite3_column_text(st, 6));
  out->deadline_us = sqlite3_column_int64(st, 7);
  out->updated_us = sqlite3_column_int64(st, 8);
  s_copy(out->last_error, sizeof out->last_error, sqlite3_column_text(st, 9));
  return state >= 0;
}

static co_journal_err_t s_bad_state(co_journal_error_t *err, const char *op, const co_episode_t *ep) {
  return s_fail(err, CO_JOURNAL_ERR_SCHEMA,
                "%s: episode (%s, %" PRIu32 ", %" PRIu32 ") has a state this rsd does not know", op, ep->key.variant,
                ep->key.task, ep->key.trial);
}

/* ---- transactions -------------------------------------------------------------------------------- */
static co_journal_err_t s_writable(co_journal_t *self, const char *op, co_journal_error_t *err) {
  if (!self) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal", op);
  if (self->read_only)
    return s_fail(err, CO_JOURNAL_ERR_READ_ONLY, "%s: %s was opened read-only", op, self->path);
  return CO_JOURNAL_OK;
}

static co_journal_err_t s_exec(co_journal_t *self, const char *op, const char *what, const char *sql,
                               co_journal_error_t *err);

/* BEGIN IMMEDIATE, with synchronous FULL (results) or NORMAL (everything else) for its commit.
 * PRAGMA synchronous acts when it is prepared, not when it is stepped (and again whenever SQLite
 * re-prepares it), so it is never kept as a prepared statement: sqlite3_exec prepares it each switch. */
static co_journal_err_t s_begin(co_journal_t *self, bool full, const char *op, co_journal_error_t *err) {
  co_journal_err_t code;
  if (self->sync_full != full) {
    if ((code = s_exec(self, op, "synchronous", full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                       err)))
      return code;
    self->sync_full = full;
  }
  s_st(self, S_ST_begin);
  return s_run(self, S_ST_begin, op, err);
}

static void s_rollback(co_journal_t *self) {
  if (sqlite3_get_autocommit(self->db)) return; /* nothing open (SQLite may have rolled back itself) */
  s_st(self, S_ST_rollback);
  s_run(self, S_ST_rollback, "rollback", NULL);
}

static co_journal_err_t s_commit(co_journal_t *self, const char *op, co_journal_error_t *err) {
  s_st(self, S_ST_commit);
  co_journal_err_t code = s_run(self, S_ST_commit, op, err);
  if (code) s_rollback(self);
  return code;
}

/* Ends a write transaction: commit when code is OK, else roll back; returns the final code. */
static co_journal_err_t s_end(co_journal_t *self, co_journal_err_t code, const char *op, co_journal_error_t *err) {
  if (code) {
    s_rollback(self);
    return code;
  }
  code = s_commit(self, op, err);
  return code ? code : s_ok(err);
}

/* Appends a worker event inside the current transaction. */
static co_journal_err_t s_event(co_journal_t *self, co_event_t event, const char *worker, const co_episode_key_t *key,
                                uint64_t lease_id, const char *detail, const char *op, co_journal_error_t *err) {
  sqlite3_stmt *st = s_st(self, S_ST_event_add);
  int rc = SQLITE_OK;
  s_b(&rc, sqlite3_bind_int64(st, 1, s_now_us()));
  s_b(&rc, s_bind_text_or_null(st, 2, worker && worker[0] ? worker : NULL));
  s_b(&rc, sqlite3_bind_text(st, 3, s_event_names[event], -1, SQLITE_STATIC));
  if (key) s_b(&rc, s_bind_key(st, 4, key));
  if (lease_id) s_b(&rc, sqlite3_bind_int64(st, 7, (int64_t)lease_id));
  s_b(&rc, s_bind_text_or_null(st, 8, detail));
  if (rc) return s_bindfail(self, err, op, S_ST_event_add, rc);
  return s_run(self, S_ST_event_add, op, err);
}

/* ---- opening --------------------------------------------------------------------------------------- */
/* Runs SQL text without results (schema, pragmas at open). */
static co_journal_err_t s_exec(co_journal_t *self, const char *op, const char *what, const char *sql,
                               co_journal_error_t *err) {
  char *msg = NULL;
  int rc = sqlite3_exec(self->db, sql, NULL, NULL, &msg);
  if (rc == SQLITE_OK) return CO_JOURNAL_OK;
  co_journal_err_t code = s_code_of(rc);
  s_fail(err, code, "%s: %s (%.60s%s): %s [SQLite %d: %s]", op, what, sql, strlen(sql) > 60 ? "..." : "",
         msg ? msg : sqlite3_errmsg(self->db), rc, sqlite3_errstr(rc));
  if (err) err->sqlite_code = rc;
  sqlite3_free(msg);
  return code;
}

/* Reads one integer from a one-row query (PRAGMA user_version ...). */
static co_journal_err_t s_query_int(co_journal_t *self, const char *op, const char *sql, int64_t *out,
                                    co_journal_error_t *err) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      *out = 0;
      rc = SQLITE_OK;
    }
  }
  co_journal_err_t code = rc == SQLITE_OK ? CO_JOURNAL_OK : s_sqlerr(self, err, op, sql, st, rc);
  sqlite3_finalize(st);
  return code;
}

/* Creates every table in one transaction, with the campaign row and the schema version. */
static co_journal_err_t s_create_schema(co_journal_t *self, const co_journal_campaign_t *c, const char *op,
                                        co_journal_error_t *err) {
  s_sb_t sb = {0};
  s_sb_add(&sb,
           "CREATE TABLE campaign (\n"
           "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
           "  name TEXT NOT NULL, config_json TEXT NOT NULL, config_hash TEXT NOT NULL, code_version TEXT NOT NULL,\n"
           "  created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,\n"
           "  wall_ms INTEGER NOT NULL DEFAULT 0, last_lease_id INTEGER NOT NULL DEFAULT 0);\n"
           "CREATE TABLE episodes (\n"
           "  variant TEXT NOT NULL, task INTEGER NOT NULL, trial INTEGER NOT NULL,\n"
           "  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN (");
  for (int i = 0; i < CO_EPISODE_STATE_COUNT_; i++) s_sb_add(&sb, "%s'%s'", i ? ", " : "", s_state_names[i]);
  s_sb_add(&sb,
           ")),\n"
           "  attempts INTEGER NOT NULL DEFAULT 0, lease_id INTEGER, worker TEXT, deadline_us INTEGER,\n"
           "  updated_us INTEGER NOT NULL, last_error TEXT, " S_ATTEMPTS_BASE_DEF ",\n"
           "  PRIMARY KEY (variant, task, trial));\n"
           "CREATE UNIQUE INDEX episodes_lease ON episodes (lease_id) WHERE lease_id IS NOT NULL;\n"
           "CREATE TABLE cells (\n"
           "  variant TEXT NOT NULL, task INTEGER NOT NULL,\n"
           "  busy INTEGER NOT NULL, waiting INTEGER NOT NULL, first_rowid INTEGER NOT NULL,\n"
           "  PRIMARY KEY (variant, task)) WITHOUT ROWID;\n"
           "CREATE TRIGGER cells_insert AFTER INSERT ON episodes BEGIN\n"
           "  INSERT INTO cells (variant, task, busy, waiting, first_rowid)\n"
           "  VALUES (NEW.variant, NEW.task, NEW.state IN " S_BUSY ", NEW.state IN " S_WAITING ", NEW.rowid)\n"
           "  ON CONFLICT (variant, task)\n"
           "  DO UPDATE SET busy = busy + excluded.busy, waiting = waiting + excluded.waiting;\n"
           "END;\n"
           "CREATE TRIGGER cells_update AFTER UPDATE OF state ON episodes WHEN OLD.state IS NOT NEW.state BEGIN\n"
           "  UPDATE cells SET busy = busy - (OLD.state IN " S_BUSY ") + (NEW.state IN " S_BUSY "),\n"
           "    waiting = waiting - (OLD.state IN " S_WAITING ") + (NEW.state IN " S_WAITING ")\n"
           "  WHERE variant = NEW.variant AND task = NEW.task;\n"
           "END;\n"
           "CREATE TRIGGER cells_delete AFTER DELETE ON episodes BEGIN\n"
           "  UPDATE cells SET busy = busy - (OLD.state IN " S_BUSY "),\n"
           "    waiting = waiting - (OLD.state IN " S_WAITING ")\n"
           "  WHERE variant = OLD.variant AND task = OLD.task;\n"
           "END;\n"
           "CREATE TABLE results (\n");
  for (size_t i = 0; i < S_NRESULT_COLS; i++)
    s_sb_add(&sb, "  %s %s%s,\n", s_result_cols[i].name, s_result_cols[i].type,
             s_result_cols[i].required ? " NOT NULL" : "");
  s_sb_add(&sb,
           "  " S_RESULT_EXTRA_DEFS ",\n"
           "  PRIMARY KEY (variant, task, trial),\n"
           "  FOREIGN KEY (variant, task, trial) REFERENCES episodes (variant, task, trial));\n"
           "CREATE TABLE worker_events (\n"
           "  id INTEGER PRIMARY KEY, time_us INTEGER NOT NULL, worker TEXT, event TEXT NOT NULL,\n"
           "  variant TEXT, task INTEGER, trial INTEGER, lease_id INTEGER, detail TEXT);\n"
           "PRAGMA application_id = %d;\n"
           "PRAGMA user_version = %d;\n",
           S_APPLICATION_ID, CO_JOURNAL_SCHEMA_VERSION);
  if (sb.failed) {
    free(sb.s);
    return s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory building the schema", op);
  }
  co_journal_err_t code = s_exec(self, op, "create schema", sb.s, err);
  free(sb.s);
  if (code) return code;

  sqlite3_stmt *st = NULL;
  const char *sql =
      "INSERT INTO campaign (id, name, config_json, config_hash, code_version, created_us, updated_us) "
      "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?5)";
  int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    s_b(&rc, sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_text(st, 2, c->config_json, -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_text(st, 3, c->config_hash, -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_text(st, 4, c->code_version, -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_int64(st, 5, s_now_us()));
    if (rc == SQLITE_OK) rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(self->db);
  }
  code = rc == SQLITE_OK ? CO_JOURNAL_OK : s_sqlerr(self, err, op, "insert campaign", st, rc);
  sqlite3_finalize(st);
  return code;
}

/* Which RESULT columns the results table has; in a writing handle, adds the missing ones. */
static co_journal_err_t s_result_columns(co_journal_t *self, const char *op, co_journal_error_t *err) {
  sqlite3_stmt *st = NULL;
  const char *sql = "SELECT name FROM pragma_table_info('results')";
  int rc = sqlite3_prepare_v2(self->db, sql, -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(st, 0);
    for (size_t i = 0; name && i < S_NRESULT_COLS; i++)
      if (strcmp(name, s_result_cols[i].name) == 0) self->has_col[i] = true;
    rc = SQLITE_OK;
  }
  co_journal_err_t code = rc == SQLITE_DONE ? CO_JOURNAL_OK : s_sqlerr(self, err, op, "result columns", st, rc);
  sqlite3_finalize(st);
  if (code || self->read_only) return code;
  for (size_t i = 0; i < S_NRESULT_COLS; i++) {
    if (self->has_col[i]) continue;
    char alter[256];
    /* Older rows have no value: the column is nullable whatever the field's REQ/OPT. */
    snprintf(alter, sizeof alter, "ALTER TABLE results ADD COLUMN %s %s", s_result_cols[i].name,
             s_result_cols[i].type);
    if ((code = s_exec(self, op, "add result column", alter, err))) return code;
    self->has_col[i] = true;
  }
  return CO_JOURNAL_OK;
}

/* In a writing handle: adds episodes.attempts_base to a journal made before it existed. */
static co_journal_err_t s_episode_columns(co_journal_t *self, const char *op, co_journal_error_t *err) {
  int64_t has = 0;
  co_journal_err_t code =
      s_query_int(self, op, "SELECT COUNT(*) FROM pragma_table_info('episodes') WHERE name = 'attempts_base'", &has, err);
  if (code || has) return code;
  return s_exec(self, op, "add episodes column", "ALTER TABLE episodes ADD COLUMN " S_ATTEMPTS_BASE_DEF, err);
}

/* Statements only a writing handle prepares: they write, or read a column an older journal may lack. */
static bool s_writer_only(int id) {
  return id == S_ST_insert_result || id == S_ST_episode_base || id == S_ST_requeue_events ||
         id == S_ST_requeue_episodes;
}

/* Prepares every statement; the results ones are generated here. */
static co_journal_err_t s_prepare(co_journal_t *self, const char *op, co_journal_error_t *err) {
  s_sb_t ins = {0}, sel = {0};
  s_sb_add(&ins, "INSERT INTO results (");
  s_sb_add(&sel, "SELECT ");
  for (size_t i = 0; i < S_NRESULT_COLS; i++) {
    s_sb_add(&ins, "%s, ", s_result_cols[i].name);
    if (self->has_col[i])
      s_sb_add(&sel, "r.%s, ", s_result_cols[i].name);
    else
      s_sb_add(&sel, "NULL, ");
  }
  s_sb_add(&ins, S_RESULT_EXTRA_COLS ") VALUES (");
  for (size_t i = 0; i < S_NRESULT_COLS + S_RESULT_NEXTRA; i++) s_sb_add(&ins, "%s?", i ? ", " : "");
  s_sb_add(&ins, ") ON CONFLICT (variant, task, trial) DO NOTHING");
  s_sb_add(&sel,
           "r.lease_id, r.received_us, r.latency FROM results r JOIN episodes e "
           "ON e.variant = r.variant AND e.task = r.task AND e.trial = r.trial "
           "WHERE ?1 IS NULL OR r.variant = ?1 ORDER BY e.rowid");
  co_journal_err_t code = CO_JOURNAL_OK;
  if (ins.failed || sel.failed) code = s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory building SQL", op);
  for (int i = 0; !code && i < S_ST_COUNT_; i++) {
    const char *sql = i == S_ST_insert_result ? ins.s : i == S_ST_select_results ? sel.s : s_stmt_sql[i];
    if (s_writer_only(i) && self->read_only) continue;
    int rc = sqlite3_prepare_v3(self->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &self->st[i], NULL);
    if (rc != SQLITE_OK) {
      code = s_code_of(rc);
      s_fail(err, code, "%s: prepare %s (%.60s...): %s [SQLite %d]", op, s_stmt_names[i], sql,
             sqlite3_errmsg(self->db), rc);
      if (err) err->sqlite_code = rc;
    }
  }
  free(ins.s);
  free(sel.s);
  return code;
}

/* Is the database still empty (no schema objects)? */
static co_journal_err_t s_is_empty(co_journal_t *self, const char *op, bool *empty, co_journal_error_t *err) {
  int64_t n = 0;
  co_journal_err_t code = s_query_int(self, op, "SELECT COUNT(*) FROM sqlite_schema", &n, err);
  *empty = n == 0;
  return code;
}

/* Checks that the file is an rsd journal of a version we know; *empty when it has no schema yet. */
static co_journal_err_t s_check_schema(co_journal_t *self, const char *op, bool *empty, co_journal_error_t *err) {
  int64_t app = 0, version = 0;
  co_journal_err_t code;
  if ((code = s_query_int(self, op, "PRAGMA application_id", &app, err))) return code;
  if ((code = s_query_int(self, op, "PRAGMA user_version", &version, err))) return code;
  if ((code = s_is_empty(self, op, empty, err))) return code;
  if (*empty && app == 0 && version == 0) return CO_JOURNAL_OK;
  if (app != S_APPLICATION_ID)
    return s_fail(err, CO_JOURNAL_ERR_SCHEMA,
                  "%s: %s is an SQLite file but not an rsd journal (application_id 0x%" PRIx64 ", want 0x%x)", op,
                  self->path, (uint64_t)app, S_APPLICATION_ID);
  if (version < 1 || version > CO_JOURNAL_SCHEMA_VERSION)
    return s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: %s has journal schema version %" PRId64 "; this rsd knows 1..%d",
                  op, self->path, version, CO_JOURNAL_SCHEMA_VERSION);
  *empty = false;
  return CO_JOURNAL_OK;
}

static co_journal_err_t s_load_campaign_name(co_journal_t *self, const char *op, co_journal_error_t *err) {
  sqlite3_stmt *st = s_st(self, S_ST_campaign_get);
  bool row;
  co_journal_err_t code = s_step(self, S_ST_campaign_get, op, &row, err);
  if (code) return code;
  if (!row) {
    sqlite3_reset(st);
    return s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: %s has no campaign row", op, self->path);
  }
  const unsigned char *name = sqlite3_column_text(st, 0);
  self->campaign = strdup(name ? (const char *)name : "");
  sqlite3_reset(st);
  if (!self->campaign) return s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory", op);
  return CO_JOURNAL_OK;
}

static bool s_valid_campaign(const co_journal_campaign_t *c) {
  return c && s_valid_name(c->name, MSG_LABEL_MAX) && c->config_json && c->config_hash && c->code_version;
}

static co_journal_err_t s_campaign_refused(const co_journal_t *self, const char *op, co_journal_error_t *err) {
  return s_fail(err, CO_JOURNAL_ERR_ARG,
                "%s: creating %s needs a campaign with a name (1..%d bytes), config_json, config_hash and "
                "code_version",
                op, self->path, MSG_LABEL_MAX);
}

static co_journal_err_t s_open(co_journal_t *self, const char *dir, co_journal_mode_t mode,
                               const co_journal_campaign_t *campaign, bool *created, co_journal_error_t *err) {
  const char *op = "co_journal_open";
  struct stat sb;
  int stat_rc = stat(dir, &sb);
  if (stat_rc != 0 || !S_ISDIR(sb.st_mode))
    return s_fail(err, mode == CO_JOURNAL_CREATE_OR_RESUME ? CO_JOURNAL_ERR_IO : CO_JOURNAL_ERR_NO_JOURNAL,
                  "%s: output directory '%s': %s", op, dir, stat_rc != 0 ? strerror(errno) : "not a directory");
  size_t n = strlen(dir) + sizeof "/" CO_JOURNAL_LOCK_FILE;
  self->path = malloc(n);
  char *lock_path = malloc(n);
  if (!self->path || !lock_path) {
    free(lock_path);
    return s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory", op);
  }
  snprintf(self->path, n, "%s/%s", dir, CO_JOURNAL_FILE);
  snprintf(lock_path, n, "%s/%s", dir, CO_JOURNAL_LOCK_FILE);
  bool exists = stat(self->path, &sb) == 0;
  if (!exists && mode != CO_JOURNAL_CREATE_OR_RESUME) {
    free(lock_path);
    return s_fail(err, CO_JOURNAL_ERR_NO_JOURNAL, "%s: no journal at %s", op, self->path);
  }
  if (!exists && !s_valid_campaign(campaign)) { /* refused before any file is made */
    free(lock_path);
    return s_campaign_refused(self, op, err);
  }

  if (!self->read_only) {
    self->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0) {
      co_journal_err_t code = s_fail(err, CO_JOURNAL_ERR_IO, "%s: lock file %s: %s", op, lock_path, strerror(errno));
      free(lock_path);
      return code;
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) != 0) {
      co_journal_err_t code =
          errno == EWOULDBLOCK
              ? s_fail(err, CO_JOURNAL_ERR_LOCKED, "%s: %s is open for writing in another process (%s is locked)",
                       op, self->path, lock_path)
              : s_fail(err, CO_JOURNAL_ERR_IO, "%s: flock %s: %s", op, lock_path, strerror(errno));
      free(lock_path);
      return code;
    }
  }
  free(lock_path);

  int flags = SQLITE_OPEN_NOMUTEX;
  flags |= self->read_only ? SQLITE_OPEN_READONLY
                           : SQLITE_OPEN_READWRITE | (mode == CO_JOURNAL_CREATE_OR_RESUME ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(self->path, &self->db, flags, NULL);
  if (rc != SQLITE_OK) {
    co_journal_err_t code = s_code_of(rc);
    s_fail(err, code, "%s: sqlite3_open_v2 %s: %s [SQLite %d]", op, self->path,
           self->db ? sqlite3_errmsg(self->db) : sqlite3_errstr(rc), rc);
    if (err) err->sqlite_code = rc;
    return code;
  }
  sqlite3_extended_result_codes(self->db, 1);
  sqlite3_busy_timeout(self->db, S_BUSY_TIMEOUT_MS);

  co_journal_err_t code;
  bool empty;
  if ((code = s_check_schema(self, op, &empty, err))) return code;
  if (self->read_only) {
    if (empty) return s_fail(err, CO_JOURNAL_ERR_NO_JOURNAL, "%s: %s holds no journal yet", op, self->path);
    if ((code = s_exec(self, op, "pragmas", "PRAGMA query_only = ON", err))) return code;
  } else {
    /* journal_mode answers with the mode it ended in; anything but wal is refused. */
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(self->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    const unsigned char *jm = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    bool wal = jm && strcmp((const char *)jm, "wal") == 0;
    if (rc != SQLITE_ROW) code = s_sqlerr(self, err, op, "journal_mode", st, rc);
    else if (!wal)
      code = s_fail(err, CO_JOURNAL_ERR_IO, "%s: %s cannot use WAL mode (got '%s'; WAL needs a local file system)",
                    op, self->path, jm ? (const char *)jm : "?");
    sqlite3_finalize(st);
    if (code) return code;
    if ((code = s_exec(self, op, "pragmas", "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL", err)))
      return code;
    self->sync_full = true;
    if (empty) {
      if (mode != CO_JOURNAL_CREATE_OR_RESUME)
        return s_fail(err, CO_JOURNAL_ERR_NO_JOURNAL, "%s: %s holds no journal yet", op, self->path);
      if (!s_valid_campaign(campaign)) return s_campaign_refused(self, op, err);
      if ((code = s_exec(self, op, "begin", "BEGIN IMMEDIATE", err))) return code;
      /* Checked again under the write lock: nobody created it between the first look and now. */
      code = s_is_empty(self, op, &empty, err);
      if (!code && empty) code = s_create_schema(self, campaign, op, err);
      if (!code) code = s_exec(self, op, "commit", "COMMIT", err);
      if (code) {
        if (!sqlite3_get_autocommit(self->db)) sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        return code;
      }
      if (created) *created = empty;
      if (!empty && (code = s_check_schema(self, op, &empty, err))) return code;
    }
  }
  if ((code = s_result_columns(self, op, err))) return code;
  if (!self->read_only && (code = s_episode_columns(self, op, err))) return code;
  if ((code = s_prepare(self, op, err))) return code;
  return s_load_campaign_name(self, op, err);
}

co_journal_t *co_journal_open(const char *dir, co_journal_mode_t mode, const co_journal_campaign_t *campaign,
                              bool *created, co_journal_error_t *err) {
  if (created) *created = false;
  if (!dir || (unsigned)mode > CO_JOURNAL_READ_ONLY) {
    s_fail(err, CO_JOURNAL_ERR_ARG, "co_journal_open: %s", dir ? "unknown mode" : "no directory");
    return NULL;
  }
  co_journal_t *self = calloc(1, sizeof *self);
  if (!self) {
    s_fail(err, CO_JOURNAL_ERR_NOMEM, "co_journal_open: out of memory");
    return NULL;
  }
  self->lock_fd = -1;
  self->read_only = mode == CO_JOURNAL_READ_ONLY;
  if (s_open(self, dir, mode, campaign, created, err)) {
    if (created) *created = false;
    co_journal_close(&self);
    return NULL;
  }
  s_ok(err);
  return self;
}

void co_journal_close(co_journal_t **self_p) {
  if (!self_p || !*self_p) return;
  co_journal_t *self = *self_p;
  for (int i = 0; i < S_ST_COUNT_; i++) sqlite3_finalize(self->st[i]);
  if (self->db) sqlite3_close_v2(self->db); /* the last connection checkpoints and removes the WAL */
  if (self->lock_fd >= 0) close(self->lock_fd); /* after the database: the lock guards it to the end */
  for (int i = 0; i < 4; i++) free(self->info[i]);
  free(self->campaign);
  free(self->path);
  free(self);
  *self_p = NULL;
}

const char *co_journal_path(const co_journal_t *self) {
  return self ? self->path : NULL;
}

/* ---- campaign ------------------------------------------------------------------------------------ */
co_journal_err_t co_journal_info(co_journal_t *self, co_journal_info_t *out, co_journal_error_t *err) {
  const char *op = "co_journal_info";
  if (!self || !out) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or no output", op);
  sqlite3_stmt *st = s_st(self, S_ST_campaign_get);
  bool row;
  co_journal_err_t code = s_step(self, S_ST_campaign_get, op, &row, err);
  if (code) return code;
  if (!row) {
    sqlite3_reset(st);
    return s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: %s has no campaign row", op, self->path);
  }
  for (int i = 0; i < 4; i++) {
    free(self->info[i]);
    const unsigned char *s = sqlite3_column_text(st, i);
    self->info[i] = strdup(s ? (const char *)s : "");
    if (!self->info[i]) code = CO_JOURNAL_ERR_NOMEM;
  }
  *out = (co_journal_info_t){
      .name = self->info[0],
      .config_json = self->info[1],
      .config_hash = self->info[2],
      .code_version = self->info[3],
      .created_us = sqlite3_column_int64(st, 4),
      .updated_us = sqlite3_column_int64(st, 5),
      .wall_ms = (uint64_t)sqlite3_column_int64(st, 6),
      .last_lease_id = (uint64_t)sqlite3_column_int64(st, 7),
  };
  sqlite3_reset(st);
  if (code) return s_fail(err, code, "%s: out of memory", op);
  return s_ok(err);
}

co_journal_err_t co_journal_set_config(co_journal_t *self, const char *config_json, const char *config_hash,
                                       const char *code_version, co_journal_error_t *err) {
  const char *op = "co_journal_set_config";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (!config_json || !config_hash)
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: config_json and config_hash are required", op);
  if ((code = s_begin(self, true, op, err))) return code;
  sqlite3_stmt *st = s_st(self, S_ST_campaign_set_config);
  int rc = SQLITE_OK;
  s_b(&rc, sqlite3_bind_text(st, 1, config_json, -1, SQLITE_STATIC));
  s_b(&rc, sqlite3_bind_text(st, 2, config_hash, -1, SQLITE_STATIC));
  s_b(&rc, s_bind_text_or_null(st, 3, code_version));
  s_b(&rc, sqlite3_bind_int64(st, 4, s_now_us()));
  code = rc ? s_bindfail(self, err, op, S_ST_campaign_set_config, rc) : s_run(self, S_ST_campaign_set_config, op, err);
  return s_end(self, code, op, err);
}

co_journal_err_t co_journal_add_wall_ms(co_journal_t *self, uint64_t ms, co_journal_error_t *err) {
  const char *op = "co_journal_add_wall_ms";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (ms > (uint64_t)INT64_MAX) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: %" PRIu64 " ms is too large", op, ms);
  if ((code = s_begin(self, false, op, err))) return code;
  sqlite3_stmt *st = s_st(self, S_ST_campaign_add_wall);
  int rc = SQLITE_OK;
  s_b(&rc, sqlite3_bind_int64(st, 1, (int64_t)ms));
  s_b(&rc, sqlite3_bind_int64(st, 2, s_now_us()));
  code = rc ? s_bindfail(self, err, op, S_ST_campaign_add_wall, rc) : s_run(self, S_ST_campaign_add_wall, op, err);
  return s_end(self, code, op, err);
}

/* ---- the episode queue --------------------------------------------------------------------------- */
co_journal_err_t co_journal_add_episodes(co_journal_t *self, const co_episode_key_t *keys, size_t n, size_t *added,
                                         co_journal_error_t *err) {
  const char *op = "co_journal_add_episodes";
  if (added) *added = 0;
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (n && !keys) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no keys", op);
  for (size_t i = 0; i < n; i++)
    if (!s_valid_key(&keys[i]))
      return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: key %zu: variant name must be 1..%d bytes", op, i, MSG_NAME_MAX);
  if ((code = s_begin(self, false, op, err))) return code;
  int64_t now = s_now_us();
  size_t count = 0;
  for (size_t i = 0; i < n && !code; i++) {
    sqlite3_stmt *st = s_st(self, S_ST_episode_add);
    int rc = s_bind_key(st, 1, &keys[i]);
    s_b(&rc, sqlite3_bind_int64(st, 4, now));
    code = rc ? s_bindfail(self, err, op, S_ST_episode_add, rc) : s_run(self, S_ST_episode_add, op, err);
    if (!code) count += (size_t)sqlite3_changes(self->db);
  }
  code = s_end(self, code, op, err);
  if (!code && added) *added = count;
  return code;
}

/* A (variant, task) cell in the balanced order. */
typedef struct {
  char variant[MSG_NAME_MAX + 1];
  uint32_t task;
  uint64_t busy, waiting; /* from the cells table */
  uint64_t taken;         /* episodes of this cell in the answer being built */
  size_t first;           /* index of its first episode in the fetch buffer */
} s_cell_t;

/* The balanced order, without reading every episode: the k-th waiting episode (by trial) of a cell
 * has rank busy + k; the answer is the n lowest ranks, ties in cell insertion order. The ranks are
 * handed out level by level over the cells (O(cells) per level), then each chosen cell's first `taken`
 * waiting episodes are read through the primary key. Writes up to n episodes and their rowids. */
static co_journal_err_t s_pending(co_journal_t *self, size_t n, co_episode_t *out, int64_t *rowids, size_t *got,
                                  const char *op, co_journal_error_t *err) {
  *got = 0;
  if (n == 0) return CO_JOURNAL_OK;
  s_cell_t *cells = NULL;
  size_t ncells = 0, cap = 0, *picks = NULL;
  co_episode_t *buf = NULL;
  int64_t *bufrow = NULL;
  co_journal_err_t code = CO_JOURNAL_OK;
  uint64_t remaining = 0, min_busy = UINT64_MAX;

  sqlite3_stmt *st = s_st(self, S_ST_cells_waiting);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (ncells == cap) {
      cap = cap ? 2 * cap : 64;
      s_cell_t *c = realloc(cells, cap * sizeof *c);
      if (!c) {
        code = s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory for %zu cells", op, cap);
        break;
      }
      cells = c;
    }
    s_cell_t *c = &cells[ncells++];
    memset(c, 0, sizeof *c);
    s_copy(c->variant, sizeof c->variant, sqlite3_column_text(st, 0));
    c->task = (uint32_t)sqlite3_column_int64(st, 1);
    int64_t busy = sqlite3_column_int64(st, 2), waiting = sqlite3_column_int64(st, 3);
    c->busy = busy > 0 ? (uint64_t)busy : 0;
    c->waiting = waiting > 0 ? (uint64_t)waiting : 0;
    remaining += c->waiting;
    if (c->busy < min_busy) min_busy = c->busy;
  }
  if (!code && rc != SQLITE_DONE) code = s_stmterr(self, err, op, S_ST_cells_waiting, rc);
  sqlite3_reset(st);

  /* Level by level: at level L every cell with busy < L and waiting left takes one episode, whose rank
   * is L (it has taken one at every level since busy + 1). */
  size_t want = n < remaining ? n : (size_t)remaining;
  if (!code && want) {
    picks = malloc(want * sizeof *picks);
    if (!picks) code = s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory", op);
  }
  size_t npicks = 0;
  for (uint64_t level = min_busy + 1; !code && npicks < want; level++)
    for (size_t i = 0; i < ncells && npicks < want; i++)
      if (cells[i].busy < level && cells[i].taken < cells[i].waiting) {
        cells[i].taken++;
        picks[npicks++] = i;
      }

  /* Read each chosen cell's first `taken` waiting episodes, in trial order. */
  if (!code && npicks) {
    buf = malloc(npicks * sizeof *buf);
    bufrow = malloc(npicks * sizeof *bufrow);
    if (!buf || !bufrow) code = s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory", op);
  }
  size_t nbuf = 0;
  for (size_t i = 0; !code && i < ncells; i++) {
    s_cell_t *c = &cells[i];
    if (!c->taken) continue;
    c->first = nbuf;
    st = s_st(self, S_ST_cell_waiting_episodes);
    rc = SQLITE_OK;
    s_b(&rc, sqlite3_bind_text(st, 1, c->variant, -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_int64(st, 2, c->task));
    s_b(&rc, sqlite3_bind_int64(st, 3, (int64_t)c->taken));
    if (rc) {
      code = s_bindfail(self, err, op, S_ST_cell_waiting_episodes, rc);
      break;
    }
    uint64_t k = 0;
    while (k < c->taken && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      if (!s_read_episode(st, &buf[nbuf])) {
        code = s_bad_state(err, op, &buf[nbuf]);
        break;
      }
      bufrow[nbuf++] = sqlite3_column_int64(st, 10);
      k++;
    }
    if (!code && k < c->taken && rc != SQLITE_DONE && rc != SQLITE_ROW)
      code = s_stmterr(self, err, op, S_ST_cell_waiting_episodes, rc);
    else if (!code && k < c->taken)
      code = s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: cell (%s, %" PRIu32 ") counts %" PRIu64
                    " waiting episodes but has %" PRIu64 " (cells table out of step with episodes)",
                    op, c->variant, c->task, c->waiting, k);
    sqlite3_reset(st);
    c->taken = 0; /* reused below as the cursor into its episodes */
  }

  /* The answer in rank order: each pick takes its cell's next episode. */
  for (size_t i = 0; !code && i < npicks; i++) {
    s_cell_t *c = &cells[picks[i]];
    size_t from = c->first + (size_t)c->taken++;
    out[i] = buf[from];
    if (rowids) rowids[i] = bufrow[from];
  }
  if (!code) *got = npicks;
  free(cells);
  free(picks);
  free(buf);
  free(bufrow);
  return code;
}

co_journal_err_t co_journal_next_pending(co_journal_t *self, size_t n, co_episode_t *out, size_t *got,
                                         co_journal_error_t *err) {
  const char *op = "co_journal_next_pending";
  size_t dummy;
  if (!got) got = &dummy;
  *got = 0;
  if (!self || (n && !out)) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or no output", op);
  co_journal_err_t code = s_pending(self, n, out, NULL, got, op, err);
  return code ? code : s_ok(err);
}

/* Leases the episode at `rowid` (read into *ep), inside the current transaction. */
static co_journal_err_t s_lease_row(co_journal_t *self, int64_t rowid, co_episode_t *ep, const char *worker,
                                    int64_t deadline_us, const char *op, co_journal_error_t *err) {
  int64_t now = s_now_us();
  sqlite3_stmt *st = s_st(self, S_ST_lease_id_next);
  int rc = sqlite3_bind_int64(st, 1, now);
  if (rc) return s_bindfail(self, err, op, S_ST_lease_id_next, rc);
  bool row;
  co_journal_err_t code = s_step(self, S_ST_lease_id_next, op, &row, err);
  if (code) return code;
  if (!row) {
    sqlite3_reset(st);
    return s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: %s has no campaign row", op, self->path);
  }
  uint64_t lease_id = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);

  st = s_st(self, S_ST_episode_lease);
  s_b(&rc, sqlite3_bind_int64(st, 1, rowid));
  s_b(&rc, sqlite3_bind_int64(st, 2, (int64_t)lease_id));
  s_b(&rc, sqlite3_bind_text(st, 3, worker, -1, SQLITE_TRANSIENT));
  s_b(&rc, sqlite3_bind_int64(st, 4, deadline_us));
  s_b(&rc, sqlite3_bind_int64(st, 5, now));
  if (rc) return s_bindfail(self, err, op, S_ST_episode_lease, rc);
  if ((code = s_run(self, S_ST_episode_lease, op, err))) return code;
  if (sqlite3_changes(self->db) != 1)
    return s_fail(err, CO_JOURNAL_ERR_STATE, "%s: episode (%s, %" PRIu32 ", %" PRIu32 ") is no longer waiting", op,
                  ep->key.variant, ep->key.task, ep->key.trial);
  ep->state = CO_EPISODE_LEASED;
  ep->lease_id = lease_id;
  s_copy(ep->worker, sizeof ep->worker, (const unsigned char *)worker);
  ep->deadline_us = deadline_us;
  ep->updated_us = now;
  return CO_JOURNAL_OK;
}

/* Reads one episode by key (or by lease when key is NULL) into *ep and its rowid; *found says whether. */
static co_journal_err_t s_find(co_journal_t *self, const co_episode_key_t *key, uint64_t lease_id, co_episode_t *ep,
                               int64_t *rowid, bool *found, const char *op, co_journal_error_t *err) {
  s_stmt_id_t id = key ? S_ST_episode_get : S_ST_episode_by_lease;
  sqlite3_stmt *st = s_st(self, id);
  int rc = key ? s_bind_key(st, 1, key) : sqlite3_bind_int64(st, 1, (int64_t)lease_id);
  if (rc) return s_bindfail(self, err, op, id, rc);
  co_journal_err_t code = s_step(self, id, op, found, err);
  if (code) return code;
  if (*found) {
    bool ok = s_read_episode(st, ep);
    if (rowid) *rowid = sqlite3_column_int64(st, 10);
    if (!ok) code = s_bad_state(err, op, ep);
  }
  sqlite3_reset(st);
  return code;
}

co_journal_err_t co_journal_lease(co_journal_t *self, const co_episode_key_t *key, const char *worker,
                                  int64_t deadline_us, co_episode_t *out, co_journal_error_t *err) {
  const char *op = "co_journal_lease";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (!s_valid_key(key))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: variant name must be 1..%d bytes", op, MSG_NAME_MAX);
  if (!s_valid_name(worker, MSG_NAME_MAX))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: worker name must be 1..%d bytes", op, MSG_NAME_MAX);
  if ((code = s_begin(self, false, op, err))) return code;
  co_episode_t ep;
  int64_t rowid = 0;
  bool found;
  code = s_find(self, key, 0, &ep, &rowid, &found, op, err);
  if (!code && !found)
    code = s_fail(err, CO_JOURNAL_ERR_NO_EPISODE, "%s: no episode (%s, %" PRIu32 ", %" PRIu32 ") in this campaign", op,
                  key->variant, key->task, key->trial);
  if (!code && ep.state != CO_EPISODE_PENDING && ep.state != CO_EPISODE_RETRYING)
    code = s_fail(err, CO_JOURNAL_ERR_STATE, "%s: episode (%s, %" PRIu32 ", %" PRIu32 ") is %s, not waiting", op,
                  key->variant, key->task, key->trial, s_state_names[ep.state]);
  if (!code) code = s_lease_row(self, rowid, &ep, worker, deadline_us, op, err);
  code = s_end(self, code, op, err);
  if (!code && out) *out = ep;
  return code;
}

co_journal_err_t co_journal_lease_next(co_journal_t *self, size_t n, const char *worker, int64_t deadline_us,
                                       co_episode_t *out, size_t *got, co_journal_error_t *err) {
  const char *op = "co_journal_lease_next";
  size_t dummy;
  if (!got) got = &dummy;
  *got = 0;
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (n && !out) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no output", op);
  if (!s_valid_name(worker, MSG_NAME_MAX))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: worker name must be 1..%d bytes", op, MSG_NAME_MAX);
  if (n == 0) return s_ok(err);
  if (n > SIZE_MAX / sizeof(co_episode_t)) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: %zu episodes is too many", op, n);
  int64_t *rowids = malloc(n * sizeof *rowids);
  if (!rowids) return s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory for %zu episodes", op, n);
  size_t count = 0;
  if (!(code = s_begin(self, false, op, err))) {
    code = s_pending(self, n, out, rowids, &count, op, err);
    for (size_t i = 0; i < count && !code; i++)
      code = s_lease_row(self, rowids[i], &out[i], worker, deadline_us, op, err);
    code = s_end(self, code, op, err);
  }
  free(rowids);
  if (!code) *got = count;
  return code;
}

co_journal_err_t co_journal_renew(co_journal_t *self, uint64_t lease_id, int64_t deadline_us,
                                  co_journal_error_t *err) {
  const char *op = "co_journal_renew";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if ((code = s_begin(self, false, op, err))) return code;
  sqlite3_stmt *st = s_st(self, S_ST_episode_renew);
  int rc = SQLITE_OK;
  s_b(&rc, sqlite3_bind_int64(st, 1, (int64_t)lease_id));
  s_b(&rc, sqlite3_bind_int64(st, 2, deadline_us));
  s_b(&rc, sqlite3_bind_int64(st, 3, s_now_us()));
  code = rc ? s_bindfail(self, err, op, S_ST_episode_renew, rc) : s_run(self, S_ST_episode_renew, op, err);
  if (!code && sqlite3_changes(self->db) == 0)
    code = s_fail(err, CO_JOURNAL_ERR_NO_LEASE, "%s: no episode holds lease %" PRIu64, op, lease_id);
  return s_end(self, code, op, err);
}

/* Ends lease `lease_id`: release (count = false) or an infrastructure failure (count = true, event is
 * lease_expired or infra_error). */
static co_journal_err_t s_unlease(co_journal_t *self, uint64_t lease_id, bool count, co_event_t event,
                                  const char *reason, uint32_t max_attempts, co_episode_t *out, const char *op,
                                  co_journal_error_t *err) {
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (count && (max_attempts < 1 || max_attempts > 1000000))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: max_attempts must be >= 1 (got %" PRIu32 ")", op, max_attempts);
  if ((code = s_begin(self, false, op, err))) return code;
  co_episode_t ep;
  int64_t rowid = 0;
  bool found;
  code = s_find(self, NULL, lease_id, &ep, &rowid, &found, op, err);
  if (!code && !found)
    code = s_fail(err, CO_JOURNAL_ERR_NO_LEASE, "%s: no episode holds lease %" PRIu64 " (it ended, or never existed)",
                  op, lease_id);
  uint32_t base = 0; /* attempts at the episode's last requeue: the budget counts from there */
  if (!code && count) {
    sqlite3_stmt *bs = s_st(self, S_ST_episode_base);
    bool row = false;
    int rc = sqlite3_bind_int64(bs, 1, rowid);
    code = rc ? s_bindfail(self, err, op, S_ST_episode_base, rc) : s_step(self, S_ST_episode_base, op, &row, err);
    if (!code && row) base = (uint32_t)sqlite3_column_int64(bs, 0);
    sqlite3_reset(bs);
  }
  if (!code) {
    if (count) ep.attempts++;
    ep.state = count && ep.attempts - base >= max_attempts ? CO_EPISODE_ABANDONED
               : ep.attempts > 0                    ? CO_EPISODE_RETRYING
                                                    : CO_EPISODE_PENDING;
    ep.lease_id = 0;
    ep.deadline_us = 0;
    ep.updated_us = s_now_us();
    if (count) s_copy(ep.last_error, sizeof ep.last_error, (const unsigned char *)(reason ? reason : ""));
    sqlite3_stmt *st = s_st(self, S_ST_episode_unlease);
    int rc = SQLITE_OK;
    s_b(&rc, sqlite3_bind_int64(st, 1, rowid));
    s_b(&rc, sqlite3_bind_text(st, 2, s_state_names[ep.state], -1, SQLITE_STATIC));
    s_b(&rc, sqlite3_bind_int64(st, 3, ep.attempts));
    s_b(&rc, sqlite3_bind_int64(st, 4, ep.updated_us));
    s_b(&rc, count ? sqlite3_bind_text(st, 5, reason ? reason : "", -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, 5));
    code = rc ? s_bindfail(self, err, op, S_ST_episode_unlease, rc) : s_run(self, S_ST_episode_unlease, op, err);
  }
  if (!code) code = s_event(self, event, ep.worker, &ep.key, lease_id, reason, op, err);
  if (!code && ep.state == CO_EPISODE_ABANDONED) {
    char detail[MSG_TEXT_MAX + 96];
    if (base)
      snprintf(detail, sizeof detail, "after %" PRIu32 " attempts since its requeue (%" PRIu32 " in all); last: %s",
               ep.attempts - base, ep.attempts, reason ? reason : "-");
    else
      snprintf(detail, sizeof detail, "after %" PRIu32 " attempts; last: %s", ep.attempts, reason ? reason : "-");
    code = s_event(self, CO_EVENT_ABANDONED, ep.worker, &ep.key, lease_id, detail, op, err);
  }
  code = s_end(self, code, op, err);
  if (!code && out) *out = ep;
  return code;
}

co_journal_err_t co_journal_release(co_journal_t *self, uint64_t lease_id, const char *reason, co_episode_t *out,
                                    co_journal_error_t *err) {
  return s_unlease(self, lease_id, false, CO_EVENT_RELEASED, reason, 0, out, "co_journal_release", err);
}

co_journal_err_t co_journal_expire(co_journal_t *self, uint64_t lease_id, const char *reason, uint32_t max_attempts,
                                   co_episode_t *out, co_journal_error_t *err) {
  return s_unlease(self, lease_id, true, CO_EVENT_LEASE_EXPIRED, reason, max_attempts, out, "co_journal_expire", err);
}

co_journal_err_t co_journal_infra_error(co_journal_t *self, uint64_t lease_id, const char *reason,
                                        uint32_t max_attempts, co_episode_t *out, co_journal_error_t *err) {
  return s_unlease(self, lease_id, true, CO_EVENT_INFRA_ERROR, reason, max_attempts, out, "co_journal_infra_error",
                   err);
}

co_journal_err_t co_journal_recover(co_journal_t *self, size_t *recovered, co_journal_error_t *err) {
  const char *op = "co_journal_recover";
  if (recovered) *recovered = 0;
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if ((code = s_begin(self, false, op, err))) return code;
  int64_t now = s_now_us();
  int rc = sqlite3_bind_int64(s_st(self, S_ST_recover_events), 1, now);
  code = rc ? s_bindfail(self, err, op, S_ST_recover_events, rc) : s_run(self, S_ST_recover_events, op, err);
  if (!code) {
    rc = sqlite3_bind_int64(s_st(self, S_ST_recover_episodes), 1, now);
    code = rc ? s_bindfail(self, err, op, S_ST_recover_episodes, rc) : s_run(self, S_ST_recover_episodes, op, err);
  }
  size_t n = code ? 0 : (size_t)sqlite3_changes(self->db);
  code = s_end(self, code, op, err);
  if (!code && recovered) *recovered = n;
  return code;
}

/* One transaction of two statements over the episodes of `variant` (NULL: every variant, where the
 * statement allows it), each bound to ?1 now, ?2 variant and, where it has one, ?3 text: the events
 * statement first, then the episodes one, whose changed rows are counted into *changed. */
static co_journal_err_t s_bulk_change(co_journal_t *self, const char *op, s_stmt_id_t events, s_stmt_id_t episodes,
                                      const char *variant, const char *text, size_t *changed, co_journal_error_t *err) {
  co_journal_err_t code = s_begin(self, false, op, err);
  if (code) return code;
  const int64_t now = s_now_us();
  const s_stmt_id_t ids[2] = {events, episodes};
  size_t n = 0;
  for (int k = 0; k < 2 && !code; k++) {
    sqlite3_stmt *st = s_st(self, ids[k]);
    int rc = SQLITE_OK;
    s_b(&rc, sqlite3_bind_int64(st, 1, now));
    s_b(&rc, variant ? sqlite3_bind_text(st, 2, variant, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, 2));
    if (sqlite3_bind_parameter_count(st) >= 3) s_b(&rc, sqlite3_bind_text(st, 3, text, -1, SQLITE_TRANSIENT));
    code = rc ? s_bindfail(self, err, op, ids[k], rc) : s_run(self, ids[k], op, err);
    n = code ? 0 : (size_t)sqlite3_changes(self->db);
  }
  code = s_end(self, code, op, err);
  if (!code && changed) *changed = n;
  return code;
}

co_journal_err_t co_journal_abandon_waiting(co_journal_t *self, const char *variant, const char *reason,
                                            size_t *abandoned, co_journal_error_t *err) {
  const char *op = "co_journal_abandon_waiting";
  if (abandoned) *abandoned = 0;
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (!variant || !reason) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: variant and reason are required", op);
  return s_bulk_change(self, op, S_ST_abandon_waiting_events, S_ST_abandon_waiting_episodes, variant, reason,
                       abandoned, err);
}

co_journal_err_t co_journal_requeue_abandoned(co_journal_t *self, const char *variant, const char *note,
                                              size_t *requeued, co_journal_error_t *err) {
  const char *op = "co_journal_requeue_abandoned";
  if (requeued) *requeued = 0;
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (!note) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: a note is required", op);
  return s_bulk_change(self, op, S_ST_requeue_events, S_ST_requeue_episodes, variant, note, requeued, err);
}

/* ---- results --------------------------------------------------------------------------------------- */
/* Binding of one RESULT field, by kind: S_BIND_<KIND>(stmt, index, body, field, enum). */
#define S_BIND_U32(st, i, r, n, en) sqlite3_bind_int64(st, i, (int64_t)(r)->n)
#define S_BIND_U64(st, i, r, n, en) sqlite3_bind_int64(st, i, (int64_t)(r)->n)
#define S_BIND_F64(st, i, r, n, en) sqlite3_bind_double(st, i, (r)->n)
#define S_BIND_BOOL(st, i, r, n, en) sqlite3_bind_int(st, i, (r)->n ? 1 : 0)
#define S_BIND_STR(st, i, r, n, en) sqlite3_bind_text(st, i, (r)->n, (int)strnlen((r)->n, sizeof (r)->n), SQLITE_STATIC)
#define S_BIND_ENUM(st, i, r, n, en) s_bind_enum(st, i, (int)(r)->n, en##_names)
#define S_BIND_U32S(st, i, r, n, en) s_bind_array(st, i, (r)->n, NULL, (r)->n##_count, sizeof (r)->n / sizeof (r)->n[0])
#define S_BIND_U64S(st, i, r, n, en) s_bind_array(st, i, NULL, (r)->n, (r)->n##_count, sizeof (r)->n / sizeof (r)->n[0])
#define S_PRESENT_REQ(r, n) true
#define S_PRESENT_OPT(r, n) (r)->has_##n

static int s_bind_enum(sqlite3_stmt *st, int i, int value, const char *const *names) {
  for (int k = 0; names[k]; k++)
    if (k == value) return sqlite3_bind_text(st, i, names[k], -1, SQLITE_STATIC);
  return SQLITE_RANGE; /* not a value of the enum: a programming mistake upstream */
}

/* A u32 or u64 array as JSON text: "[12,9,4]". */
static int s_bind_array(sqlite3_stmt *st, int i, const uint32_t *a32, const uint64_t *a64, uint32_t count,
                        size_t cap) {
  char buf[MSG_MAX_LAYERS * 24 + 8];
  if (count > cap || count > MSG_MAX_LAYERS) return SQLITE_RANGE;
  size_t len = 0;
  buf[len++] = '[';
  for (uint32_t k = 0; k < count; k++)
    len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%" PRIu64, k ? "," : "", a32 ? (uint64_t)a32[k] : a64[k]);
  buf[len++] = ']';
  return sqlite3_bind_text(st, i, buf, (int)len, SQLITE_TRANSIENT);
}

/* Binds every RESULT field to ?1.. in MSG_FIELDS_RESULT order; returns the next index. */
static int s_bind_result(sqlite3_stmt *st, const msg_result_body_t *r, int *rc) {
  int i = 1;
#define S_BIND_FIELD_(kind, n, key, req, lo, hi, en) \
  s_b(rc, S_PRESENT_##req(r, n) ? S_BIND_##kind(st, i, r, n, en) : sqlite3_bind_null(st, i)); \
  i++;
  MSG_FIELDS_RESULT(S_BIND_FIELD_)
#undef S_BIND_FIELD_
  return i;
}

/* Checks one result before any transaction starts. */
static co_journal_err_t s_check_result(const co_journal_result_in_t *in, size_t index, const char *op,
                                       co_journal_error_t *err) {
  const msg_result_body_t *r = in->r;
  if (!r) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: result %zu: no result", op, index);
  if (r->outcome != MSG_OUTCOME_SUCCESS && r->outcome != MSG_OUTCOME_FAILURE)
    return s_fail(err, CO_JOURNAL_ERR_ARG,
                  "%s: result %zu: outcome '%s' is not a result (an infra_error goes through co_journal_infra_error)",
                  op, index, (unsigned)r->outcome < MSG_OUTCOME_COUNT_ ? msg_outcome_names[r->outcome] : "?");
  if (in->chunks && !in->latency)
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: result %zu: %zu latency chunks but no data", op, index, in->chunks);
  if (in->chunks > (size_t)INT32_MAX / (S_LATENCY_COLS * sizeof(float)))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: result %zu: %zu latency chunks is too many", op, index, in->chunks);
  if (!s_valid_name(r->variant, MSG_NAME_MAX))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: result %zu: variant name must be 1..%d bytes", op, index, MSG_NAME_MAX);
  return CO_JOURNAL_OK;
}

/* Records one checked result inside the current transaction. */
static co_journal_err_t s_record_one(co_journal_t *self, const co_journal_result_in_t *in, msg_ack_status_t *status,
                                     const char *op, co_journal_error_t *err) {
  const msg_result_body_t *r = in->r;
  co_episode_key_t key = {.task = r->task, .trial = r->trial};
  memcpy(key.variant, r->variant, strnlen(r->variant, MSG_NAME_MAX) + 1);
  const char *worker = r->has_worker ? r->worker : NULL;
  char detail[MSG_LABEL_MAX + 160];
  *status = MSG_ACK_UNKNOWN;

  if (strncmp(r->campaign, self->campaign, sizeof r->campaign) != 0) {
    snprintf(detail, sizeof detail, "campaign '%.*s' is not this journal's", MSG_LABEL_MAX, r->campaign);
    return s_event(self, CO_EVENT_UNKNOWN_RESULT, worker, &key, in->lease_id, detail, op, err);
  }
  co_episode_t ep;
  int64_t rowid = 0;
  bool found;
  co_journal_err_t code = s_find(self, &key, 0, &ep, &rowid, &found, op, err);
  if (code) return code;
  if (!found)
    return s_event(self, CO_EVENT_UNKNOWN_RESULT, worker, &key, in->lease_id, "no such episode in this campaign", op,
                   err);

  sqlite3_stmt *st = s_st(self, S_ST_insert_result);
  int rc = SQLITE_OK;
  int i = s_bind_result(st, r, &rc);
  s_b(&rc, sqlite3_bind_int64(st, i++, (int64_t)in->lease_id));
  s_b(&rc, sqlite3_bind_int64(st, i++, s_now_us()));
  s_b(&rc, in->chunks ? sqlite3_bind_blob64(st, i, in->latency,
                                            (sqlite3_uint64)in->chunks * S_LATENCY_COLS * sizeof(float), SQLITE_STATIC)
                      : sqlite3_bind_null(st, i));
  if (rc) return s_bindfail(self, err, op, S_ST_insert_result, rc);
  if ((code = s_run(self, S_ST_insert_result, op, err))) return code;
  if (sqlite3_changes(self->db) == 0) {
    *status = MSG_ACK_DUPLICATE;
    snprintf(detail, sizeof detail, "episode already has a result; this one (lease %" PRIu64 ") ignored", in->lease_id);
    return s_event(self, CO_EVENT_DUPLICATE_RESULT, worker, &key, in->lease_id, detail, op, err);
  }

  st = s_st(self, S_ST_episode_done);
  s_b(&rc, sqlite3_bind_int64(st, 1, rowid));
  s_b(&rc, s_bind_text_or_null(st, 2, worker));
  s_b(&rc, sqlite3_bind_int64(st, 3, s_now_us()));
  if (rc) return s_bindfail(self, err, op, S_ST_episode_done, rc);
  if ((code = s_run(self, S_ST_episode_done, op, err))) return code;
  *status = MSG_ACK_STORED;
  return CO_JOURNAL_OK;
}

co_journal_err_t co_journal_record_results(co_journal_t *self, const co_journal_result_in_t *in, size_t n,
                                           msg_ack_status_t *status, co_journal_error_t *err) {
  const char *op = "co_journal_record_results";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if (n && (!in || !status)) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no results or no status array", op);
  for (size_t i = 0; i < n; i++) status[i] = MSG_ACK_UNKNOWN;
  for (size_t i = 0; i < n; i++)
    if ((code = s_check_result(&in[i], i, op, err))) return code;
  if (n == 0) return s_ok(err);
  if ((code = s_begin(self, true, op, err))) return code;
  for (size_t i = 0; i < n && !code; i++) code = s_record_one(self, &in[i], &status[i], op, err);
  code = s_end(self, code, op, err);
  if (code)
    for (size_t i = 0; i < n; i++) status[i] = MSG_ACK_UNKNOWN; /* rolled back: nothing of it is stored */
  return code;
}

co_journal_err_t co_journal_record_result(co_journal_t *self, const msg_result_body_t *r, uint64_t lease_id,
                                          const float *latency, size_t chunks, msg_ack_status_t *status,
                                          co_journal_error_t *err) {
  co_journal_result_in_t in = {r, lease_id, latency, chunks};
  msg_ack_status_t dummy;
  return co_journal_record_results(self, &in, 1, status ? status : &dummy, err);
}

co_journal_err_t co_journal_event(co_journal_t *self, co_event_t event, const char *worker,
                                  const co_episode_key_t *key, uint64_t lease_id, const char *detail,
                                  co_journal_error_t *err) {
  const char *op = "co_journal_event";
  co_journal_err_t code = s_writable(self, op, err);
  if (code) return code;
  if ((unsigned)event >= CO_EVENT_COUNT_)
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: unknown event %d", op, (int)event);
  if (key && !s_valid_key(key))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: variant name must be 1..%d bytes", op, MSG_NAME_MAX);
  if ((code = s_begin(self, false, op, err))) return code;
  code = s_event(self, event, worker, key, lease_id, detail, op, err);
  return s_end(self, code, op, err);
}

/* ---- reading --------------------------------------------------------------------------------------- */
co_journal_err_t co_journal_counts(co_journal_t *self, co_journal_counts_t *total, co_journal_counts_t *per_variant,
                                   size_t cap, size_t *nvariants, co_journal_error_t *err) {
  const char *op = "co_journal_counts";
  if (!self || !total) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or no output", op);
  memset(total, 0, sizeof *total);
  if (nvariants) *nvariants = 0;
  sqlite3_stmt *st = s_st(self, S_ST_counts);
  int rc = sqlite3_bind_text(st, 1, msg_outcome_names[MSG_OUTCOME_SUCCESS], -1, SQLITE_STATIC);
  if (rc) return s_bindfail(self, err, op, S_ST_counts, rc);
  size_t n = 0; /* variants seen; rows come grouped by variant */
  char last[MSG_NAME_MAX + 1] = "";
  co_journal_err_t code = CO_JOURNAL_OK;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const unsigned char *v = sqlite3_column_text(st, 0);
    char variant[MSG_NAME_MAX + 1];
    s_copy(variant, sizeof variant, v);
    if (n == 0 || strcmp(variant, last) != 0) {
      if (per_variant && n < cap) {
        memset(&per_variant[n], 0, sizeof per_variant[n]);
        memcpy(per_variant[n].variant, variant, sizeof variant);
      }
      memcpy(last, variant, sizeof last);
      n++;
    }
    int state = s_index(s_state_names, sqlite3_column_text(st, 1));
    if (state < 0) {
      code = s_fail(err, CO_JOURNAL_ERR_SCHEMA, "%s: variant '%s' has episodes in a state this rsd does not know", op,
                    variant);
      break;
    }
    uint64_t count = (uint64_t)sqlite3_column_int64(st, 2);
    uint64_t attempts = (uint64_t)sqlite3_column_int64(st, 3);
    uint64_t successes = (uint64_t)sqlite3_column_int64(st, 4);
    co_journal_counts_t *targets[2] = {total, per_variant && n <= cap ? &per_variant[n - 1] : NULL};
    for (int t = 0; t < 2; t++) {
      if (!targets[t]) continue;
      targets[t]->total += count;
      targets[t]->by_state[state] += count;
      targets[t]->infra_failures += attempts;
      targets[t]->successes += successes;
    }
  }
  if (!code && rc != SQLITE_DONE) code = s_stmterr(self, err, op, S_ST_counts, rc);
  sqlite3_reset(st);
  if (nvariants) *nvariants = n;
  return code ? code : s_ok(err);
}

co_journal_err_t co_journal_event_counts(co_journal_t *self, uint64_t counts[CO_EVENT_COUNT_], uint64_t *workers_seen,
                                         co_journal_error_t *err) {
  const char *op = "co_journal_event_counts";
  if (!self || !counts) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or no output", op);
  memset(counts, 0, CO_EVENT_COUNT_ * sizeof counts[0]);
  if (workers_seen) *workers_seen = 0;
  sqlite3_stmt *st = s_st(self, S_ST_event_counts);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int e = s_index(s_event_names, sqlite3_column_text(st, 0));
    if (e >= 0) counts[e] += (uint64_t)sqlite3_column_int64(st, 1); /* kinds from a newer rsd are skipped */
  }
  co_journal_err_t code = rc == SQLITE_DONE ? CO_JOURNAL_OK : s_stmterr(self, err, op, S_ST_event_counts, rc);
  sqlite3_reset(st);
  if (code || !workers_seen) return code ? code : s_ok(err);
  s_st(self, S_ST_workers_seen);
  bool row;
  if ((code = s_step(self, S_ST_workers_seen, op, &row, err))) return code;
  *workers_seen = row ? (uint64_t)sqlite3_column_int64(self->st[S_ST_workers_seen], 0) : 0;
  sqlite3_reset(self->st[S_ST_workers_seen]);
  return s_ok(err);
}

co_journal_err_t co_journal_episode(co_journal_t *self, const co_episode_key_t *key, co_episode_t *out,
                                    co_journal_error_t *err) {
  const char *op = "co_journal_episode";
  if (!self || !out) return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or no output", op);
  if (!s_valid_key(key))
    return s_fail(err, CO_JOURNAL_ERR_ARG, "%s: variant name must be 1..%d bytes", op, MSG_NAME_MAX);
  bool found;
  co_journal_err_t code = s_find(self, key, 0, out, NULL, &found, op, err);
  if (code) return code;
  if (!found)
    return s_fail(err, CO_JOURNAL_ERR_NO_EPISODE, "%s: no episode (%s, %" PRIu32 ", %" PRIu32 ") in this campaign", op,
                  key->variant, key->task, key->trial);
  return s_ok(err);
}

/* Iterators prepare their own copy of the statement, so several can be open at once. */
static co_journal_iter_t *s_iter_new(co_journal_t *self, s_stmt_id_t id, bool results, const char *op,
                                     co_journal_error_t *err) {
  co_journal_iter_t *it = calloc(1, sizeof *it);
  if (!it) {
    s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory", op);
    return NULL;
  }
  it->j = self;
  it->results = results;
  it->op = op;
  int rc = sqlite3_prepare_v2(self->db, sqlite3_sql(self->st[id]), -1, &it->st, NULL);
  if (rc != SQLITE_OK) {
    s_sqlerr(self, err, op, s_stmt_names[id], self->st[id], rc);
    co_journal_iter_destroy(&it);
  }
  return it;
}

co_journal_iter_t *co_journal_results(co_journal_t *self, const char *variant, co_journal_error_t *err) {
  const char *op = "co_journal_results";
  if (!self) {
    s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal", op);
    return NULL;
  }
  co_journal_iter_t *it = s_iter_new(self, S_ST_select_results, true, op, err);
  if (it && variant) {
    int rc = sqlite3_bind_text(it->st, 1, variant, -1, SQLITE_TRANSIENT);
    if (rc) {
      s_sqlerr(self, err, op, "select_results", it->st, rc);
      co_journal_iter_destroy(&it);
    }
  }
  if (it) s_ok(err);
  return it;
}

co_journal_iter_t *co_journal_episodes(co_journal_t *self, co_episode_state_t state, co_journal_error_t *err) {
  const char *op = "co_journal_episodes";
  if (!self || (unsigned)state > CO_EPISODE_STATE_COUNT_) {
    s_fail(err, CO_JOURNAL_ERR_ARG, "%s: no journal or unknown state", op);
    return NULL;
  }
  co_journal_iter_t *it = s_iter_new(self, S_ST_select_episodes, false, op, err);
  if (it && state < CO_EPISODE_STATE_COUNT_) {
    int rc = sqlite3_bind_text(it->st, 1, s_state_names[state], -1, SQLITE_STATIC);
    if (rc) {
      s_sqlerr(self, err, op, "select_episodes", it->st, rc);
      co_journal_iter_destroy(&it);
    }
  }
  if (it) s_ok(err);
  return it;
}

/* Reading of one RESULT field, by kind: false when the stored value cannot be one the wire allows. */
#define S_READ_U32(st, i, r, n, hi, en) ((r)->n = (uint32_t)sqlite3_column_int64(st, i), true)
#define S_READ_U64(st, i, r, n, hi, en) ((r)->n = (uint64_t)sqlite3_column_int64(st, i), true)
#define S_READ_F64(st, i, r, n, hi, en) ((r)->n = sqlite3_column_double(st, i), true)
#define S_READ_BOOL(st, i, r, n, hi, en) ((r)->n = sqlite3_column_int64(st, i) != 0, true)
#define S_READ_STR(st, i, r, n, hi, en) (s_copy((r)->n, sizeof (r)->n, sqlite3_column_text(st, i)), true)
#define S_READ_ENUM(st, i, r, n, hi, en) \
  ((r)->n = (en##_t)s_enum_or_0(st, i, en##_names), s_index(en##_names, sqlite3_column_text(st, i)) >= 0)
#define S_READ_U32S(st, i, r, n, hi, en) s_read_array(st, i, (r)->n, NULL, &(r)->n##_count, hi)
#define S_READ_U64S(st, i, r, n, hi, en) s_read_array(st, i, NULL, (r)->n, &(r)->n##_count, hi)
#define S_SET_HAS_REQ(r, n, v) (void)0
#define S_SET_HAS_OPT(r, n, v) ((r)->has_##n = (v))

static int s_enum_or_0(sqlite3_stmt *st, int i, const char *const *names) {
  int k = s_index(names, sqlite3_column_text(st, i));
  return k < 0 ? 0 : k;
}

static bool s_read_array(sqlite3_stmt *st, int i, uint32_t *a32, uint64_t *a64, uint32_t *count, uint32_t cap) {
  const char *s = (const char *)sqlite3_column_text(st, i);
  *count = 0;
  if (!s || *s++ != '[') return false;
  while (*s && *s != ']') {
    if (*count >= cap) return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno) return false;
    if (a32) {
      if (v > UINT32_MAX) return false;
      a32[*count] = (uint32_t)v;
    } else {
      a64[*count] = v;
    }
    (*count)++;
    s = end;
    if (*s == ',') s++;
  }
  return *s == ']';
}

bool co_journal_results_next(co_journal_iter_t *it, co_journal_result_t *out, co_journal_error_t *err) {
  if (!it || !it->results || !out) {
    s_fail(err, CO_JOURNAL_ERR_ARG, "co_journal_results_next: not a results iterator, or no output");
    return false;
  }
  int rc = sqlite3_step(it->st);
  if (rc == SQLITE_DONE) {
    s_ok(err);
    return false;
  }
  if (rc != SQLITE_ROW) {
    s_sqlerr(it->j, err, it->op, "select_results", it->st, rc);
    return false;
  }
  memset(out, 0, sizeof *out);
  msg_result_body_t *r = &out->r;
  sqlite3_stmt *st = it->st;
  int i = 0;
  const char *bad = NULL;
#define S_READ_FIELD_(kind, n, key, req, lo, hi, en)                                 \
  {                                                                                  \
    bool present = sqlite3_column_type(st, i) != SQLITE_NULL;                        \
    S_SET_HAS_##req(r, n, present);                                                  \
    if (present && !S_READ_##kind(st, i, r, n, hi, en) && !bad) bad = #n;            \
    i++;                                                                             \
  }
  MSG_FIELDS_RESULT(S_READ_FIELD_)
#undef S_READ_FIELD_
  out->lease_id = (uint64_t)sqlite3_column_int64(st, i++);
  out->received_us = sqlite3_column_int64(st, i++);
  size_t bytes = (size_t)sqlite3_column_bytes(st, i);
  const void *blob = sqlite3_column_blob(st, i);
  size_t nfloats = bytes / sizeof(float);
  out->latency_chunks = nfloats / S_LATENCY_COLS;
  if (blob && out->latency_chunks) {
    if (nfloats > it->latency_cap) {
      float *p = realloc(it->latency, nfloats * sizeof(float));
      if (!p) {
        s_fail(err, CO_JOURNAL_ERR_NOMEM, "%s: out of memory for %zu latency chunks", it->op, out->latency_chunks);
        return false;
      }
      it->latency = p;
      it->latency_cap = nfloats;
    }
    memcpy(it->latency, blob, out->latency_chunks * S_LATENCY_COLS * sizeof(float)); /* aligned copy */
    out->latency = it->latency;
  } else {
    out->latency_chunks = 0;
  }
  if (bad) {
    s_fail(err, CO_JOURNAL_ERR_SCHEMA,
           "%s: result (%s, %" PRIu32 ", %" PRIu32 "): column %s holds a value this rsd cannot read", it->op,
           r->variant, r->task, r->trial, bad);
    return false;
  }
  s_ok(err);
  return true;
}

bool co_journal_episodes_next(co_journal_iter_t *it, co_episode_t *out, co_journal_error_t *err) {
  if (!it || it->results || !out) {
    s_fail(err, CO_JOURNAL_ERR_ARG, "co_journal_episodes_next: not an episodes iterator, or no output");
    return false;
  }
  int rc = sqlite3_step(it->st);
  if (rc == SQLITE_DONE) {
    s_ok(err);
    return false;
  }
  if (rc != SQLITE_ROW) {
    s_sqlerr(it->j, err, it->op, "select_episodes", it->st, rc);
    return false;
  }
  if (!s_read_episode(it->st, out)) {
    s_bad_state(err, it->op, out);
    return false;
  }
  s_ok(err);
  return true;
}

void co_journal_iter_destroy(co_journal_iter_t **it_p) {
  if (!it_p || !*it_p) return;
  co_journal_iter_t *it = *it_p;
  sqlite3_finalize(it->st);
  free(it->latency);
  free(it);
  *it_p = NULL;
}
