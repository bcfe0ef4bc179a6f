/* server.h: the coordinator's sim-worker side. Serves one campaign to sim workers over a ROUTER socket:
 * HELLO/WELCOME, LEASEs up to each worker's capacity in the journal's balanced order, heartbeats both
 * ways, expiry of silent workers' leases, RESULT -> journal -> ACK, BYE. Every state change goes through
 * the journal first, so a crash at any point loses nothing. The inference broker is not here. */
#ifndef RSD_CO_SERVER_H
#define RSD_CO_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "journal.h"

typedef struct co_server co_server_t;

/* Progress, for the live line and `rsd status`. */
typedef struct {
  uint64_t total, done, abandoned, leased, successes;
  uint32_t workers;           /* sim workers alive now */
  uint64_t rejected;          /* malformed or unexpected messages refused */
  double elapsed_s;           /* since co_server_new */
} co_progress_t;

/* Binds cfg->bind.coordinator and serves the campaign whose journal is j (borrowed; it must already hold
 * the campaign's episodes). Returns NULL with the reason in err. */
co_server_t *co_server_new(const co_config_t *cfg, co_journal_t *j, char *err, size_t errlen);

/* Releases every lease still held (back to the queue, no attempt counted), says BYE to the workers, and
 * closes the socket; idempotent; sets *self_p to NULL. */
void co_server_destroy(co_server_t **self_p);

/* The endpoint as bound (ephemeral port resolved); borrowed. */
const char *co_server_endpoint(const co_server_t *self);

/* Serves until every episode is done or abandoned (returns 0), *stop becomes non-zero (returns 1), or the
 * journal fails (returns -1 with the reason in err). on_progress (nullable) is called about once a
 * second. */
int co_server_run(co_server_t *self, volatile sig_atomic_t *stop, void (*on_progress)(const co_progress_t *p),
                  char *err, size_t errlen);

/* Current progress (reads the journal). */
int co_server_progress(co_server_t *self, co_progress_t *out, char *err, size_t errlen);

#endif
