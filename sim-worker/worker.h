/* worker.h: the sim worker as a coordinator client (`rsd-sim-worker --coordinator ENDPOINT`).
 *
 * One DEALER to the coordinator: HELLO with the number of episodes this process runs at once, then
 * LEASEs in, one RESULT per lease out (re-sent until ACKed, so a coordinator that restarts still gets
 * it), heartbeats both ways. Episodes of many tasks run side by side in this one thread, one control
 * step each in turn, so the socket is served between steps. Tasks are loaded on first use by a loader
 * thread (a LIBERO scene takes seconds to load; the heartbeats must not stop meanwhile).
 *
 * Policies: `expert` (the scripted expert acts in-process) and `model` (action chunks from the inference
 * broker that WELCOME names, over a second DEALER; see infer.h). An episode that cannot run (a task that does
 * not load, a MuJoCo error, a policy this worker cannot serve) ends as an infrastructure error with the
 * reason; the coordinator retries it and never counts it as a policy failure.
 *
 * Not here: the episode loop itself (episode.h), the expert (expert.h). */
#ifndef RSD_SW_WORKER_H
#define RSD_SW_WORKER_H

#include <signal.h>
#include <stdint.h>

#include "msg.h"

typedef struct {
  const char *coordinator; /* borrowed: endpoint, e.g. tcp://127.0.0.1:5555 */
  const char *coordinator_file; /* borrowed, nullable: the endpoint file it came from, read again before
                                   each new session (a restarted coordinator may bind another port) */
  const char *name;        /* borrowed, nullable: worker name (default "sim-HOST-PID") */
  const char *data_dir;    /* borrowed: the scene export ($RSD_DATA) */
  uint32_t capacity;       /* episodes at once (1..64) */
  uint32_t infer_timeout_ms; /* a model-policy episode waits this long for an ACTION (INFER.deadline_ms), then
                                ends as an infrastructure error */
  int verbose;             /* 1: a line per finished episode on stderr */
  const zcert_t *curve_cert;    /* borrowed, nullable: CURVE client certificate (--keys) for the coordinator and
                                   the broker */
  const char *curve_server_key; /* borrowed: with curve_cert, their public key (Z85) */
  volatile sig_atomic_t *stop; /* borrowed, nullable: set to the signal number (by a signal handler) to
                                  leave with BYE; the exit status is then 128 + that number */
} sw_worker_opts_t;

/* Serves the coordinator until it says BYE, DRAIN is done, or *stop is set. Returns a process exit
 * status: 0 after the coordinator's BYE or a finished DRAIN, 128 + signal after *stop, 1 on a fatal
 * error (no scene data, a task that does not load, no renderer, another protocol version; message on
 * stderr; the worker says BYE first, so its leases go back to the queue). */
int sw_worker_run(const sw_worker_opts_t *opts);

#endif
