/* broker.h: the inference broker inside the coordinator process (docs/protocol.md section 8.2).
 *
 * Two ROUTER sockets: the sim side (bind.broker), where sim workers send INFERs and get ACTION or ERROR
 * back, and the GPU side (bind.broker_gpu), where GPU workers say HELLO, grant credit with READY and
 * answer the INFERs forwarded to them. The broker forwards each valid INFER unchanged (the same header
 * and payload bytes) to a GPU worker that serves INFER.model and has credit (the one with the most), keeps
 * INFERs in arrival order while none has credit, and routes every ACTION / ERROR back to the sim worker
 * that sent the INFER. A GPU worker that says BYE, falls silent for liveness x heartbeat_ms or cannot be
 * reached is forgotten, and each INFER it held is answered with ERROR 20 (an infrastructure failure).
 *
 * It runs in a thread of its own, started by co_broker_new, so that the coordinator's journal commits
 * never delay an ACTION. The thread owns both sockets and every request; the calling thread talks to it
 * only through the functions below, which are safe to call from any one thread.
 *
 * Not here: leases, results and the journal (server.c); starting GPU workers (local_workers.c). */
#ifndef RSD_CO_BROKER_H
#define RSD_CO_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "msg.h"

typedef struct co_broker co_broker_t;

/* How to start a broker. Strings are borrowed for the call only. */
typedef struct {
  const char *sim_bind;   /* sim side endpoint, e.g. "tcp://127.0.0.1:*" (bind.broker) */
  const char *gpu_bind;   /* GPU side endpoint (bind.broker_gpu) */
  const char *sim_prefer; /* nullable: tried before sim_bind (the previous run's port); sim_bind if it fails */
  const char *gpu_prefer; /* nullable: the same for the GPU side */
  uint32_t heartbeat_ms;  /* HEARTBEAT period both ways with GPU workers, sent in WELCOME (10..600000) */
  uint32_t liveness;      /* a GPU worker silent for liveness x heartbeat_ms is dead (1..100) */
  const char *model;      /* nullable: the campaign's model name. INFERs for it wait for a GPU worker to
                             join; INFERs for a model that no GPU worker serves or served get ERROR 23 */
  const char *model_hash; /* nullable: its content hash; a GPU worker serving `model` with another hash
                             is refused (ERROR 31 to its HELLO) */
  const char *model_dtype; /* nullable: the precision the campaign's model runs at ("float32", "bfloat16",
                              "float16"); a GPU worker serving `model` at another (HELLO.dtype, float32 when
                              absent) is refused (ERROR 31 to its HELLO). NULL: any */
  uint32_t no_worker_wait_ms; /* how long an INFER for a known model waits while no connected GPU worker
                                 serves it, before ERROR 23; 0: 60000 */
  const zcert_t *curve_cert;  /* nullable: both sockets are CURVE servers with this certificate (the process's
                                 authenticator, msg_keys_auth_start, must run already) */
} co_broker_opts_t;

/* Counters since co_broker_new, and the state now. */
typedef struct {
  uint32_t gpu_workers;     /* GPU workers connected now */
  uint64_t gpu_credit;      /* their credit now, summed */
  uint64_t queued;          /* INFERs waiting for credit now */
  uint64_t in_flight;       /* INFERs forwarded and not answered now */
  uint64_t gpu_joined;      /* WELCOMEs sent to GPU workers */
  uint64_t gpu_left;        /* GPU workers that said BYE */
  uint64_t gpu_lost;        /* GPU workers declared dead: silent, unreachable, or another major version */
  uint64_t gpu_refused;     /* GPU HELLOs refused (model hash, dtype, role) */
  uint64_t infers;          /* valid INFERs received from sim workers */
  uint64_t forwarded;       /* INFERs forwarded to GPU workers */
  uint64_t actions;         /* ACTIONs routed back to sim workers */
  uint64_t gpu_errors;      /* ERRORs from GPU workers about INFERs, routed back */
  uint64_t gpu_overloaded;  /* of those, ERROR 23: a GPU worker found no credit (never, if both sides count right) */
  uint64_t failed;          /* INFERs the broker itself answered with ERROR (20, 21, 23, 24, 25) */
  uint64_t lost;            /* of those, ERROR 20: held by a GPU worker that was lost */
  uint64_t expired;         /* of those, ERROR 25: deadline_ms passed while queued */
  uint64_t malformed;       /* messages the decoder refused, both sides (each answered with its ERROR) */
  uint64_t unexpected;      /* valid messages refused with ERROR 21 (wrong type or socket, no HELLO) */
  uint64_t late;            /* ACTIONs / ERRORs for requests not in flight at their sender (dropped) */
  uint64_t undeliverable;   /* answers whose sim worker could not be reached (dropped) */
} co_broker_stats_t;

/* A GPU worker event, for the journal's worker events (co_broker_events). */
typedef struct {
  co_event_t kind;               /* CO_EVENT_JOINED, LEFT, DIED or MALFORMED */
  char worker[MSG_NAME_MAX + 1]; /* the GPU worker's HELLO name ("" when unknown) */
  char detail[256];              /* e.g. "gpu tiny-mixed sha256:... on cpu, max_batch 16, credit 32" */
} co_broker_event_t;

/* Binds both sockets and starts the broker's thread. Returns NULL with the reason in err (naming the
 * endpoint) when a socket cannot be bound or the thread cannot start. */
co_broker_t *co_broker_new(const co_broker_opts_t *opts, char *err, size_t errlen);

/* Sends DRAIN to every GPU worker (and to any that joins later), answers new INFERs with ERROR 24,
 * waits up to grace_ms for the GPU workers to answer what they hold and say BYE, stops the thread and
 * closes the sockets; idempotent; sets *self_p to NULL. */
void co_broker_destroy(co_broker_t **self_p, int grace_ms);

/* The sim side endpoint as bound (ephemeral port resolved); borrowed, valid until destroy. */
const char *co_broker_sim_endpoint(const co_broker_t *self);

/* The GPU side endpoint as bound; borrowed, valid until destroy. */
const char *co_broker_gpu_endpoint(const co_broker_t *self);

/* A copy of the counters, consistent as of the broker's last loop iteration. */
void co_broker_stats(co_broker_t *self, co_broker_stats_t *out);

/* Moves up to cap GPU worker events (oldest first) into out and returns how many; events beyond the
 * broker's buffer of 256 are dropped (and counted in the stats all the same). */
size_t co_broker_events(co_broker_t *self, co_broker_event_t *out, size_t cap);

/* Sends DRAIN to every GPU worker now (the campaign is complete): they answer what they hold, then say
 * BYE. New INFERs are answered with ERROR 24. */
void co_broker_drain(co_broker_t *self);

/* An endpoint that a peer on another machine can connect to for a bound one: a wildcard host
 * (tcp://0.0.0.0:P, tcp://[*]:P, tcp://[::]:P, or a star for the host) becomes this machine's host name; anything else is copied.
 * Writes into out (cap bytes). */
void co_endpoint_reachable(const char *bound, char *out, size_t cap);

/* An endpoint for a process on this machine: a wildcard host becomes 127.0.0.1. */
void co_endpoint_local(const char *bound, char *out, size_t cap);

#endif
