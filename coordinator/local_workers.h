/* local_workers.h: the workers `rsd run` starts on its own machine: sim workers (config
 * `workers.sim_workers`) and GPU workers (`workers.gpu_workers`, for campaigns with policy-model variants).
 *
 * A sim worker is `rsd-sim-worker --coordinator ENDPOINT --capacity N --name local-sim-K`, a GPU worker
 * `rsd-gpu-worker --broker ENDPOINT --model DIR --dtype T --max-batch N --max-wait-us N --device DEV_K --name
 * local-gpu-K`, where DEV_K spreads the workers over the machine's GPUs (co_local_gpu_device); each
 * child's stderr and stdout go to <output>/logs/<name>.log. A worker that dies while the campaign runs (a
 * crash, the OOM killer) is started again, at most CO_LOCAL_RESTARTS times in a row per
 * slot: a worker that ran CO_LOCAL_HEALTHY_S seconds before it died was healthy, and its count starts
 * again (so a long sweep survives rare crashes, while a worker that dies at start is given up on); a
 * sim worker's leases come back through the coordinator's liveness check, a GPU worker's requests through
 * the broker's (ERROR 20). One that exits with status 0 (it was told BYE or DRAIN) is not restarted. The
 * children get SIGTERM when rsd itself dies (PR_SET_PDEATHSIG), so a killed coordinator leaves no orphans;
 * the next `rsd run` starts new ones.
 *
 * Not here: remote workers (they connect by themselves). */
#ifndef RSD_COORDINATOR_LOCAL_WORKERS_H
#define RSD_COORDINATOR_LOCAL_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#define CO_LOCAL_RESTARTS 3
#define CO_LOCAL_HEALTHY_S 600

typedef struct co_local co_local_t;

/* Finds the sim worker executable: $RSD_SIM_WORKER, else rsd-sim-worker next to this executable, else
 * ../sim-worker/rsd-sim-worker from it (the build tree). Writes the path into out and returns 0, or -1
 * with the places looked at in err. */
int co_local_find_worker(char *out, size_t cap, char *err, size_t errlen);

/* The same for the GPU worker: $RSD_GPU_WORKER, rsd-gpu-worker beside this executable, or
 * ../gpu-worker/rsd-gpu-worker from it. */
int co_local_find_gpu_worker(char *out, size_t cap, char *err, size_t errlen);

/* Starts n sim workers of `capacity` episodes each on `endpoint` (borrowed strings), logs in log_dir
 * (made if missing); `keys` (nullable) is the CURVE keys directory they get as --keys. Returns NULL with the
 * reason in err when a process cannot be started. */
co_local_t *co_local_start(const char *exe, const char *endpoint, uint32_t n, uint32_t capacity, const char *keys,
                           const char *log_dir, char *err, size_t errlen);

/* What local GPU workers run with. Strings are borrowed for the call. */
typedef struct {
  const char *broker;   /* the broker's GPU-side endpoint */
  const char *model;    /* package directory */
  const char *device;   /* the config's workers.device: worker K gets co_local_gpu_device(device, K - 1) */
  const char *dtype;    /* --dtype: "float32", "bfloat16" or "float16" (the config's model_dtype) */
  uint32_t max_batch;   /* --max-batch (clamped to what rsd-gpu-worker takes, 256) */
  uint32_t max_wait_us; /* --max-wait-us */
  const char *keys;     /* nullable: --keys, the CURVE keys directory */
} co_local_gpu_t;

/* Starts n GPU workers (local-gpu-1..n), logs in log_dir. NULL with the reason in err on failure. */
co_local_t *co_local_start_gpu(const char *exe, const co_local_gpu_t *g, uint32_t n, const char *log_dir, char *err,
                               size_t errlen);

/* The --device of local GPU worker k (0-based) from the config's workers.device: "cpu" and "cuda:N" as they
 * are, for every worker; "cuda:N,M,..." the (k mod count)-th of the list; "auto" cuda:(k mod G) when this rsd
 * was built with RSD_CUDA and G = co_local_visible_gpus() > 0, else "cpu". So gpu_workers: 8 on an 8-GPU
 * machine puts one worker on each GPU. */
void co_local_gpu_device(const char *config_device, uint32_t k, char *out, size_t cap);

/* co_local_gpu_device with the build and the machine given: cuda_build (RSD_CUDA), gpus visible. */
void co_local_gpu_device_pick(const char *config_device, uint32_t k, int cuda_build, uint32_t gpus, char *out,
                              size_t cap);

/* NVIDIA GPUs a child process can use: the entries of CUDA_VISIBLE_DEVICES when it is set (none when it is
 * empty or starts with -1: CUDA's way to hide every device), else the /dev/nvidiaN device nodes. */
uint32_t co_local_visible_gpus(void);

/* Reaps workers that exited and restarts those that died, within the restart budget. Call now and then
 * (each progress tick). */
void co_local_poll(co_local_t *self);

/* Sets how long a worker must have run before it died for its restart count to start again (default
 * CO_LOCAL_HEALTHY_S seconds); for tests, which cannot wait ten minutes. */
void co_local_set_healthy_ms(co_local_t *self, int64_t ms);

/* How many of the workers are running now. */
uint32_t co_local_running(const co_local_t *self);

/* Waits up to grace_ms for the workers to leave by themselves (after the coordinator's BYE), then stops
 * the rest (SIGTERM: they say BYE; SIGKILL after 5 s), waits for them, frees; idempotent; sets *self_p
 * to NULL. */
void co_local_stop(co_local_t **self_p, int grace_ms);

#endif
