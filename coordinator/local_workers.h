/* local_workers.h: the sim workers `rsd run` starts on its own machine (config `workers.sim_workers`).
 *
 * Each is an `rsd-sim-worker --coordinator ENDPOINT --capacity N --name local-sim-K` child process with
 * its stderr in <output>/logs/local-sim-K.log. A worker that dies while the campaign runs (a crash, the
 * OOM killer) is started again, at most CO_LOCAL_RESTARTS times per slot; its leases come back through
 * the coordinator's liveness check like any dead worker's. The children get SIGTERM when rsd itself dies
 * (PR_SET_PDEATHSIG), so a killed coordinator leaves no orphans; the next `rsd run` starts new ones.
 *
 * Not here: remote workers (they connect by themselves), GPU workers (the inference pool). */
#ifndef RSD_COORDINATOR_LOCAL_WORKERS_H
#define RSD_COORDINATOR_LOCAL_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#define CO_LOCAL_RESTARTS 3

typedef struct co_local co_local_t;

/* Finds the sim worker executable: $RSD_SIM_WORKER, else rsd-sim-worker next to this executable, else
 * ../sim-worker/rsd-sim-worker from it (the build tree). Writes the path into out and returns 0, or -1
 * with the places looked at in err. */
int co_local_find_worker(char *out, size_t cap, char *err, size_t errlen);

/* Starts n workers of `capacity` episodes each on `endpoint` (borrowed strings), logs in log_dir (made
 * if missing). Returns NULL with the reason in err when a process cannot be started. */
co_local_t *co_local_start(const char *exe, const char *endpoint, uint32_t n, uint32_t capacity, const char *log_dir,
                           char *err, size_t errlen);

/* Reaps workers that exited and restarts those that died, within the restart budget. Call now and then
 * (each progress tick). */
void co_local_poll(co_local_t *self);

/* How many of the workers are running now. */
uint32_t co_local_running(const co_local_t *self);

/* Waits up to grace_ms for the workers to leave by themselves (after the coordinator's BYE), then stops
 * the rest (SIGTERM: they say BYE; SIGKILL after 5 s), waits for them, frees; idempotent; sets *self_p
 * to NULL. */
void co_local_stop(co_local_t **self_p, int grace_ms);

#endif
