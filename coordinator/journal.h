/* journal.h: the campaign journal, one SQLite file (`journal.sqlite`) in a campaign's output directory.
 *
 * The journal is the coordinator's memory: the campaign and its config, every episode of the cross
 * product with its state, the one result per episode, and worker events. Everything the coordinator
 * must not forget goes through here before it is acknowledged, so that `kill -9` of the coordinator at
 * any moment, then `rsd run` on the same directory, finishes the campaign with every episode counted
 * exactly once. `rsd status` and `rsd report` read the same file (read-only handles) while a
 * coordinator writes it. The schema, and why each choice, is documented at the top of journal.c.
 *
 * Episode life cycle (states are the `state` column of the episodes table):
 *
 *   pending ──lease──► leased ──result──► done
 *      ▲                 │ release (Ctrl-C), recover (coordinator restart): no attempt counted
 *      │                 │ expire / infra_error: attempts + 1
 *      │                 ▼
 *      └──lease── infra_error_retrying        (or abandoned once attempts reach max_attempts)
 *
 * `infra_error_retrying` is "pending, with attempts > 0": it is leased like pending. A result for an
 * episode that is not done is stored whatever its state or lease (first write wins per episode key).
 *
 * Threads and processes: a handle is used by one thread at a time and never across fork(). One
 * process at a time may open a journal for writing (a lock on `journal.sqlite.lock`, released when
 * the process dies); any number may read it.
 *
 * Errors: every failing call returns a co_journal_err_t and fills a co_journal_error_t whose text names
 * the operation, the SQL statement and SQLite's own message. Nothing here aborts. */
#ifndef RSD_COORDINATOR_JOURNAL_H
#define RSD_COORDINATOR_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CO_JOURNAL_FILE "journal.sqlite"          /* inside the campaign's output directory */
#define CO_JOURNAL_LOCK_FILE "journal.sqlite.lock" /* held (flock) by the one writing process */
#define CO_JOURNAL_SCHEMA_VERSION 1                /* PRAGMA user_version of journals this code writes */

/* ---- errors ----------------------------------------------------------------------------------- */
#define CO_JOURNAL_ERRORS(E)                                                        \
  E(SQLITE, 1, "SQLite error")                                                      \
  E(IO, 2, "file system error")                                                     \
  E(NOMEM, 3, "out of memory")                                                      \
  E(NO_JOURNAL, 4, "no journal in this directory")                                  \
  E(SCHEMA, 5, "not an rsd journal, or a schema version this rsd does not know")    \
  E(LOCKED, 6, "another process has this journal open for writing")                 \
  E(READ_ONLY, 7, "journal opened read-only")                                       \
  E(ARG, 8, "invalid argument")                                                     \
  E(NO_EPISODE, 9, "no such episode in this campaign")                              \
  E(NO_LEASE, 10, "no episode holds this lease (it ended, or never existed)")       \
  E(STATE, 11, "the episode's state does not allow this")

typedef enum {
  CO_JOURNAL_OK = 0,
#define CO_JOURNAL_E_(name, num, text) CO_JOURNAL_ERR_##name = num,
  CO_JOURNAL_ERRORS(CO_JOURNAL_E_)
#undef CO_JOURNAL_E_
} co_journal_err_t;

/* Static text for an error code ("unknown error code" for others). */
const char *co_journal_strerror(co_journal_err_t code);

/* The outcome of a failing call. */
typedef struct {
  co_journal_err_t code;
  int sqlite_code; /* SQLite's extended result code when code is CO_JOURNAL_ERR_SQLITE, else 0 */
  char text[512];  /* e.g. "record_result: insert_result (INSERT INTO results ...): disk I/O error" */
} co_journal_error_t;

/* ---- episodes --------------------------------------------------------------------------------- */
/* Episode states: E(C_SUFFIX, "name in the journal"). */
#define CO_EPISODE_STATES(E)                  \
  E(PENDING, "pending")                       \
  E(LEASED, "leased")                         \
  E(DONE, "done")                             \
  E(RETRYING, "infra_error_retrying")         \
  E(ABANDONED, "abandoned")

typedef enum {
#define CO_EPISODE_S_(c, s) CO_EPISODE_##c,
  CO_EPISODE_STATES(CO_EPISODE_S_)
#undef CO_EPISODE_S_
  CO_EPISODE_STATE_COUNT_
} co_episode_state_t;

/* The journal's name of a state ("infra_error_retrying"), or NULL for an invalid value. */
const char *co_episode_state_name(co_episode_state_t state);

/* An episode key within a campaign (the campaign is the journal). */
typedef struct {
  char variant[MSG_NAME_MAX + 1];
  uint32_t task;
  uint32_t trial;
} co_episode_key_t;

/* An episode as the journal has it. */
typedef struct {
  co_episode_key_t key;
  co_episode_state_t state;
  uint32_t attempts;                 /* attempts that ended in an infrastructure failure; the next
                                        LEASE carries attempt = attempts + 1 */
  uint64_t lease_id;                 /* the current lease while leased, else 0 */
  char worker[MSG_NAME_MAX + 1];     /* the worker that holds or last held it ("" if none) */
  int64_t deadline_us;               /* lease deadline (wall clock, us since the epoch) while leased, else 0 */
  int64_t updated_us;                /* last change (wall clock, us since the epoch) */
  char last_error[MSG_TEXT_MAX + 1]; /* reason of the last infrastructure failure ("" if none) */
} co_episode_t;

/* ---- worker events ---------------------------------------------------------------------------- */
/* Event kinds: E(C_SUFFIX, "name in the journal"). The journal writes the episode ones itself
 * (lease_expired ... unknown_result); the coordinator writes the worker ones with co_journal_event. */
#define CO_EVENTS(E)                        \
  E(JOINED, "joined")                       \
  E(LEFT, "left")                           \
  E(DIED, "died")                           \
  E(MALFORMED, "malformed")                 \
  E(LEASE_EXPIRED, "lease_expired")         \
  E(INFRA_ERROR, "infra_error")             \
  E(ABANDONED, "abandoned")                 \
  E(REQUEUED, "requeued")                   \
  E(RELEASED, "released")                   \
  E(RECOVERED, "recovered")                 \
  E(DUPLICATE_RESULT, "duplicate_result")   \
  E(UNKNOWN_RESULT, "unknown_result")

typedef enum {
#define CO_EVENT_E_(c, s) CO_EVENT_##c,
  CO_EVENTS(CO_EVENT_E_)
#undef CO_EVENT_E_
  CO_EVENT_COUNT_
} co_event_t;

/* The journal's name of an event kind ("lease_expired"), or NULL for an invalid value. */
const char *co_event_name(co_event_t event);

/* ---- opening ---------------------------------------------------------------------------------- */
typedef struct co_journal co_journal_t;

typedef enum {
  CO_JOURNAL_CREATE_OR_RESUME, /* rsd run: create the journal, or open the one there for writing */
  CO_JOURNAL_RESUME,           /* rsd resume: open an existing journal for writing */
  CO_JOURNAL_READ_ONLY,        /* rsd status / report: open an existing journal, never write */
} co_journal_mode_t;

/* What a new campaign row holds. All strings borrowed for the call. */
typedef struct {
  const char *name;         /* campaign name; RESULTs for another campaign are refused */
  const char *config_json;  /* the campaign config as JSON text; opaque to the journal */
  const char *config_hash;  /* e.g. sha256 of the canonical config */
  const char *code_version; /* rsd version / git describe of the coordinator that created it */
} co_journal_campaign_t;

/* The campaign row as stored. Strings owned by the journal handle. */
typedef struct {
  const char *name, *config_json, *config_hash, *code_version;
  int64_t created_us, updated_us; /* wall clock, us since the epoch */
  uint64_t wall_ms;               /* coordinator run time accumulated over all runs */
  uint64_t last_lease_id;         /* highest lease id handed out; lease ids never repeat in a journal */
} co_journal_info_t;

/* Opens `dir`/journal.sqlite. In CREATE_OR_RESUME mode a missing (or empty) journal is created from
 * `campaign` (required then); an existing one is opened as it is and `campaign` is ignored: compare
 * co_journal_info() with the new config and refuse, or accept with co_journal_set_config. Writing modes
 * take the journal's lock and set WAL mode; they do not return leased episodes to pending (call
 * co_journal_recover). `created` (nullable) tells whether this call created the journal.
 * Returns NULL and fills err on failure. */
co_journal_t *co_journal_open(const char *dir, co_journal_mode_t mode, const co_journal_campaign_t *campaign,
                              bool *created, co_journal_error_t *err);

/* Closes the journal (checkpointing the WAL when it is the last connection) and releases the lock;
 * idempotent; sets *self_p to NULL. */
void co_journal_close(co_journal_t **self_p);

/* The path of the journal file; borrowed. */
const char *co_journal_path(const co_journal_t *self);

/* Reads the campaign row into *out; its strings are valid until the next co_journal_info, set_config
 * or close on this handle. */
co_journal_err_t co_journal_info(co_journal_t *self, co_journal_info_t *out, co_journal_error_t *err);

/* Replaces the stored config (after the caller accepted a difference, e.g. only worker counts);
 * `code_version` is nullable (kept). Strings borrowed. */
co_journal_err_t co_journal_set_config(co_journal_t *self, const char *config_json, const char *config_hash,
                                       const char *code_version, co_journal_error_t *err);

/* Adds `ms` to the campaign's accumulated wall time. */
co_journal_err_t co_journal_add_wall_ms(co_journal_t *self, uint64_t ms, co_journal_error_t *err);

/* ---- the episode queue ------------------------------------------------------------------------ */

/* Inserts the episodes that are not there yet (one transaction; idempotent). Their insertion order is
 * the tie-break of the balanced order, so give the cross product in config order. `added` (nullable)
 * receives how many were new. Variant names must be 1..MSG_NAME_MAX bytes. */
co_journal_err_t co_journal_add_episodes(co_journal_t *self, const co_episode_key_t *keys, size_t n, size_t *added,
                                         co_journal_error_t *err);

/* Up to `n` episodes that are waiting (pending or infra_error_retrying), in the balanced order: within
 * a (variant, task) cell the lowest trial first, and the k-th waiting episode of a cell ranks
 * busy + k, where busy is the cell's done + leased episodes; lowest rank first, ties in the cells'
 * insertion (config) order. So every cell gets a trial before any gets a second, and a cell that is
 * behind catches up first. Writes nothing. `got` receives how many were written to out[0..n). */
co_journal_err_t co_journal_next_pending(co_journal_t *self, size_t n, co_episode_t *out, size_t *got,
                                         co_journal_error_t *err);

/* Leases one waiting episode to `worker` (borrowed, 1..MSG_NAME_MAX bytes) until `deadline_us` (wall
 * clock, informational: the coordinator's own timer decides expiry). The journal hands out the lease id,
 * never reused in this journal. `out` (nullable) receives the leased episode (lease_id, attempts).
 * CO_JOURNAL_ERR_NO_EPISODE for an unknown key, CO_JOURNAL_ERR_STATE when it is not waiting. */
co_journal_err_t co_journal_lease(co_journal_t *self, const co_episode_key_t *key, const char *worker,
                                  int64_t deadline_us, co_episode_t *out, co_journal_error_t *err);

/* co_journal_next_pending + co_journal_lease of each, in one transaction: up to `n` episodes for
 * `worker`. `got` receives how many were leased into out[0..n). */
co_journal_err_t co_journal_lease_next(co_journal_t *self, size_t n, const char *worker, int64_t deadline_us,
                                       co_episode_t *out, size_t *got, co_journal_error_t *err);

/* Moves a lease's deadline (after a heartbeat); informational like the first one. */
co_journal_err_t co_journal_renew(co_journal_t *self, uint64_t lease_id, int64_t deadline_us,
                                  co_journal_error_t *err);

/* Gives a lease back without counting an attempt (the coordinator is stopping, or drained a worker):
 * the episode waits again. `reason` nullable, borrowed. CO_JOURNAL_ERR_NO_LEASE when no episode holds
 * the lease. `out` (nullable) receives the episode after the change. */
co_journal_err_t co_journal_release(co_journal_t *self, uint64_t lease_id, const char *reason, co_episode_t *out,
                                    co_journal_error_t *err);

/* The lease expired (no heartbeat in time, worker died): attempts + 1, then infra_error_retrying, or
 * abandoned when the attempts since its last requeue (all of them if never requeued) reach
 * `max_attempts` (>= 1). Writes a lease_expired event (and an abandoned one). CO_JOURNAL_ERR_NO_LEASE when
 * no episode holds the lease (stale: it ended already). */
co_journal_err_t co_journal_expire(co_journal_t *self, uint64_t lease_id, const char *reason, uint32_t max_attempts,
                                   co_episode_t *out, co_journal_error_t *err);

/* As co_journal_expire, for an infrastructure failure that a worker reported (a RESULT with outcome
 * infra_error, a simulator or model error): event infra_error with the reason. */
co_journal_err_t co_journal_infra_error(co_journal_t *self, uint64_t lease_id, const char *reason,
                                        uint32_t max_attempts, co_episode_t *out, co_journal_error_t *err);

/* Abandons every episode of `variant` that waits (pending or infra_error_retrying) without running it,
 * with `reason` as its last error and an abandoned event each: the variant cannot run (the model refuses
 * its requests). Leased and finished episodes are left as they are. `abandoned` (nullable) receives how
 * many. */
co_journal_err_t co_journal_abandon_waiting(co_journal_t *self, const char *variant, const char *reason,
                                            size_t *abandoned, co_journal_error_t *err);

/* Puts every abandoned episode (of `variant`, or of all variants when NULL) back in the queue
 * (`rsd run|resume --retry-abandoned`): infra_error_retrying (pending if it never failed), with a fresh
 * budget of max_attempts counted from now; `attempts` keeps every earlier failure, so the report's retries
 * still count them. A requeued event each, whose detail names the earlier attempts, the last error and
 * `note` (required, borrowed). `requeued` (nullable) receives how many. */
co_journal_err_t co_journal_requeue_abandoned(co_journal_t *self, const char *variant, const char *note,
                                              size_t *requeued, co_journal_error_t *err);

/* At the start of a resumed campaign: every leased episode waits again (its lease died with the old
 * coordinator; that is not the episode's fault, so no attempt is counted), with a recovered event each.
 * `recovered` (nullable) receives how many. */
co_journal_err_t co_journal_recover(co_journal_t *self, size_t *recovered, co_journal_error_t *err);

/* ---- results ---------------------------------------------------------------------------------- */

/* Records a RESULT (r->outcome success or failure) received under `lease_id`, in ONE transaction with
 * the episode's change to done, committed with synchronous=FULL: when this returns MSG_ACK_STORED the
 * result survives a crash of the machine. *status receives
 *   MSG_ACK_STORED     stored; the episode is done. Also when the episode was pending, leased under
 *                      another lease, retrying or abandoned: first write wins per episode key;
 *   MSG_ACK_DUPLICATE  the episode already has a result; the stored row is left as it is;
 *   MSG_ACK_UNKNOWN    another campaign, or no such episode.
 * Duplicates and unknowns are written as events. `latency` (nullable, borrowed) is f32 [chunks][4]:
 * queue, encode, decode and total us per action chunk. An infra_error outcome is not a result: it gives
 * CO_JOURNAL_ERR_ARG (use co_journal_infra_error). */
co_journal_err_t co_journal_record_result(co_journal_t *self, const msg_result_body_t *r, uint64_t lease_id,
                                          const float *latency, size_t chunks, msg_ack_status_t *status,
                                          co_journal_error_t *err);

/* One RESULT to record, for co_journal_record_results. All pointers borrowed. */
typedef struct {
  const msg_result_body_t *r;
  uint64_t lease_id;    /* the lease it arrived under (RESULT's id) */
  const float *latency; /* nullable: f32 [chunks][4] as for co_journal_record_result */
  size_t chunks;
} co_journal_result_in_t;

/* Group commit: records n results in ONE transaction and one fsync, status[i] for in[i] as
 * co_journal_record_result gives it (a key twice in one call: the first is stored, the second is a
 * duplicate). For a coordinator that drains every RESULT waiting on its socket before it acknowledges
 * them: a FULL commit costs one fsync of the disk (about 4 ms on the 2-core VM), so results that
 * arrive together share it. Any argument error refuses the whole call before anything is written; any
 * SQLite error rolls the whole call back (every status MSG_ACK_UNKNOWN): acknowledge none of them. */
co_journal_err_t co_journal_record_results(co_journal_t *self, const co_journal_result_in_t *in, size_t n,
                                           msg_ack_status_t *status, co_journal_error_t *err);

/* Writes a worker event. `worker`, `key` and `detail` are nullable and borrowed; lease_id 0 for none. */
co_journal_err_t co_journal_event(co_journal_t *self, co_event_t event, const char *worker,
                                  const co_episode_key_t *key, uint64_t lease_id, const char *detail,
                                  co_journal_error_t *err);

/* ---- reading (status, report) ----------------------------------------------------------------- */

/* Episode counts, for the campaign or one variant. */
typedef struct {
  char variant[MSG_NAME_MAX + 1];            /* "" in the campaign total */
  uint64_t total;                            /* episodes */
  uint64_t by_state[CO_EPISODE_STATE_COUNT_]; /* episodes per state; they add up to total */
  uint64_t successes;                        /* done with outcome success (failures: done - successes) */
  uint64_t infra_failures;                   /* attempts summed over episodes */
} co_journal_counts_t;

/* Counts from one consistent snapshot. `per_variant` (nullable) receives up to `cap` variants in
 * insertion order; `nvariants` (nullable) how many variants there are (may exceed cap). */
co_journal_err_t co_journal_counts(co_journal_t *self, co_journal_counts_t *total, co_journal_counts_t *per_variant,
                                   size_t cap, size_t *nvariants, co_journal_error_t *err);

/* Event counts per kind, and how many distinct workers appear in events or results. */
co_journal_err_t co_journal_event_counts(co_journal_t *self, uint64_t counts[CO_EVENT_COUNT_],
                                         uint64_t *workers_seen, co_journal_error_t *err);

/* One episode by key. CO_JOURNAL_ERR_NO_EPISODE when it is not in the journal. */
co_journal_err_t co_journal_episode(co_journal_t *self, const co_episode_key_t *key, co_episode_t *out,
                                    co_journal_error_t *err);

/* A stored result: the RESULT's fields as received, and what the journal added. */
typedef struct {
  msg_result_body_t r;
  uint64_t lease_id;    /* the lease it arrived under */
  int64_t received_us;  /* when it was stored (wall clock, us since the epoch) */
  const float *latency; /* f32 [latency_chunks][4] as given, or NULL; borrowed until the next call on
                           the iterator */
  size_t latency_chunks;
} co_journal_result_t;

/* An iterator over one read snapshot. Do not write through the same handle while one is open, and
 * destroy it before closing the journal. */
typedef struct co_journal_iter co_journal_iter_t;

/* Results in episode insertion order; `variant` nullable (all). NULL and err on failure. */
co_journal_iter_t *co_journal_results(co_journal_t *self, const char *variant, co_journal_error_t *err);

/* Next result into *out: true with a row; false at the end (err->code CO_JOURNAL_OK) or on failure. */
bool co_journal_results_next(co_journal_iter_t *it, co_journal_result_t *out, co_journal_error_t *err);

/* Episodes in insertion order, only those in `state` (CO_EPISODE_STATE_COUNT_: all). */
co_journal_iter_t *co_journal_episodes(co_journal_t *self, co_episode_state_t state, co_journal_error_t *err);

/* Next episode into *out, as co_journal_results_next. */
bool co_journal_episodes_next(co_journal_iter_t *it, co_episode_t *out, co_journal_error_t *err);

/* Ends the iteration; idempotent; sets *it_p to NULL. */
void co_journal_iter_destroy(co_journal_iter_t **it_p);

#ifdef __cplusplus
}
#endif
#endif
