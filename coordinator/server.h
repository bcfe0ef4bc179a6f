/* server.h: the coordinator's sim-worker side. Serves one campaign to sim workers over a ROUTER socket:
 * HELLO/WELCOME, LEASEs up to each worker's capacity in the journal's balanced order, heartbeats both
 * ways, expiry of silent workers' leases, RESULT -> journal -> ACK, BYE. Every state change goes through
 * the journal first, so a crash at any point loses nothing: RESULTs that arrive together are stored in
 * one transaction and one fsync (group commit), and only then acknowledged. The inference broker is not
 * here (broker.c); its endpoint reaches sim workers in WELCOME.broker (co_server_set_inference).
 *
 * Test-only fault hook: when the environment variable RSD_FAULT_KILL_AFTER_RESULTS=N (N >= 1) is set
 * at co_server_new, the process raises SIGKILL right after the commit that stores its N-th result and
 * before any of that commit's ACKs is sent: the window in which a worker holds a stored but
 * unacknowledged RESULT. Used by tests/coordinator_faults_test.c; never set it in production. */
#ifndef RSD_CO_SERVER_H
#define RSD_CO_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "journal.h"

typedef struct co_server co_server_t;

/* Progress, for the live line of `rsd run` and for `rsd status`. */
typedef struct {
  uint64_t total, done, abandoned, leased, successes;
  size_t nvariants;                                  /* entries of variants[] in use */
  co_journal_counts_t variants[CO_MAX_VARIANTS];     /* per variant, in config order */
  double rate_per_min; /* episodes done per minute over the last minute (or since the start of this run,
                          if shorter); 0 when nothing finished in that window */
  double eta_s;        /* seconds until every episode is done at that rate; < 0 when unknown */
  uint32_t workers;    /* sim workers alive now */
  bool has_gpu;        /* the campaign has an inference broker: gpu_workers is meaningful */
  uint32_t gpu_workers; /* GPU workers connected to the broker now (filled by rsd, not the server) */
  uint64_t rejected;   /* malformed or unexpected messages refused */
  double elapsed_s;    /* since co_server_new */
} co_progress_t;

/* What this run of the server did, for the line `rsd run` prints at the end and for the benchmark. */
typedef struct {
  uint64_t results;              /* RESULTs with outcome success/failure handled (stored + duplicate + unknown) */
  uint64_t stored, duplicates;   /* of those, by ACK status */
  uint64_t infra_errors;         /* RESULTs with outcome infra_error */
  uint64_t commits;              /* group commits (one FULL transaction each) */
  uint64_t largest_batch;        /* most RESULTs in one commit */
  double commit_p50_ms, commit_p99_ms, commit_max_ms; /* co_journal_record_results wall time (last 32768 commits) */
  double commit_total_ms;        /* all commits together */
  uint64_t leases;               /* LEASEs sent */
  uint64_t most_leases_out;      /* most leases held by workers at one time */
  uint64_t lost_leases;          /* leases a worker's HEARTBEAT did not list (expired, episode retried) */
  uint32_t most_workers;         /* most sim workers connected at one time */
} co_server_stats_t;

/* Binds the coordinator's endpoint and serves the campaign whose journal is j (borrowed; it must already
 * hold the campaign's episodes). `prefer` (nullable, borrowed) is an endpoint to try first, e.g. the one
 * the previous run of this campaign had, so that workers reconnect where they were; when it cannot be
 * bound, cfg->bind.coordinator is. `curve_cert` (nullable, borrowed) makes it a CURVE server (bind.keys;
 * the process's authenticator must run already). Returns NULL with the reason in err. */
co_server_t *co_server_new(const co_config_t *cfg, co_journal_t *j, const char *prefer, const zcert_t *curve_cert,
                           char *err, size_t errlen);

/* Releases every lease still held (back to the queue, no attempt counted), says BYE to the workers, and
 * closes the socket; idempotent; sets *self_p to NULL. */
void co_server_destroy(co_server_t **self_p);

/* The endpoint as bound (ephemeral port resolved); borrowed. */
const char *co_server_endpoint(const co_server_t *self);

/* For campaigns with policy-model variants: `broker` (borrowed, copied) is the inference broker's sim-side
 * endpoint as sim workers reach it, sent in every WELCOME.broker; `model` (copied) is the model package's
 * manifest name, sent as LEASE.model (the config's `model` is the package's path). NULL: not sent / the
 * config's value. Call before co_server_run. */
void co_server_set_inference(co_server_t *self, const char *broker, const char *model);

/* Serves until every episode is done or abandoned (returns 0), *stop becomes non-zero (returns 1), or the
 * journal fails (returns -1 with the reason in err). on_progress (nullable) is called about once a
 * second and once at the end. */
int co_server_run(co_server_t *self, volatile sig_atomic_t *stop, void (*on_progress)(const co_progress_t *p),
                  char *err, size_t errlen);

/* Current progress (reads the journal's counts). */
int co_server_progress(co_server_t *self, co_progress_t *out, char *err, size_t errlen);

/* What this server did so far. */
void co_server_stats(const co_server_t *self, co_server_stats_t *out);

#endif
