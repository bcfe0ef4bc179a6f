/* policy.h: the GPU worker's policy runtime, a C API over libtorch. The one public header of rsd_policy.
 *
 * It owns: loading and validating a policy package (docs/model-package.md), running its TorchScript
 * modules on a device, the decoding engine (ar, spec, spec-relaxed; gpu-worker/spec_decode.cpp) with
 * per-row layer positions inside one batch, unnormalizing the chunk, and the per-request statistics.
 * It does not own batching across requests in time (the batcher forms a batch and calls gw_policy_decode)
 * nor any socket.
 *
 * Errors: every call that can fail returns a gw_err_t. The message of the last failure on the calling
 * thread is in gw_errmsg(); it names the thing and the value (a file, a manifest field, a method, a
 * shape). A C++ exception never crosses this header. Per-request failures inside a batch (NaN output,
 * an observation of the wrong size) are reported in that request's gw_result_t and do not fail the
 * other requests of the batch.
 *
 * Threads: a gw_policy_t is used by one thread at a time (the worker's inference thread); separate
 * policies may run on separate threads. */
#ifndef RSD_GW_POLICY_H
#define RSD_GW_POLICY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits -------------------------------------------------------------------------------------- */
#define GW_MAX_LAYERS 32      /* RFSQ layers L a package may declare */
#define GW_MAX_CAMERAS 4      /* cameras a package may declare */
#define GW_MAX_BATCH 256      /* requests in one gw_policy_decode call */
#define GW_MAX_GAMMA 16       /* draft layers proposed per round */
#define GW_MAX_WIDTH 64       /* draft paths verified per request and round */
#define GW_NAME_MAX 64        /* names, versions, keys (with the NUL) */
#define GW_ROW_MSG_MAX 256    /* gw_result_t.message (with the NUL) */
#define GW_MAX_UNNORM_KEYS 32 /* action_stats entries a package may declare */

/* ---- error codes: stable numbers ---------------------------------------------------------------- */
#define GW_ERRORS(E)                                                                 \
  E(OK, 0, "ok")                                                                     \
  E(EINVAL, 1, "invalid argument")                                                   \
  E(EIO, 2, "package file missing or unreadable")                                    \
  E(EMANIFEST, 3, "manifest field missing or invalid")                               \
  E(EHASH, 4, "package content hash mismatch")                                       \
  E(EMODULE, 5, "TorchScript module or method missing or unloadable")                \
  E(ESHAPE, 6, "model output shape or dtype disagrees with the manifest")            \
  E(ENONFINITE, 7, "model output contains NaN or Inf")                               \
  E(EUNNORM, 8, "unnorm_key not in the package's action statistics")                 \
  E(EDEVICE, 9, "device not available in this build or on this machine")             \
  E(EINPUT, 10, "observation does not match the manifest")                           \
  E(ETORCH, 11, "libtorch raised an error while running the model")                  \
  E(ENOMEM, 12, "out of memory")                                                     \
  E(EINTERNAL, 13, "internal error")

typedef enum {
#define GW_ENUM_(name, num, text) GW_##name = num,
  GW_ERRORS(GW_ENUM_)
#undef GW_ENUM_
} gw_err_t;

/* A static, human-readable text for an error code ("unknown error" for any other number). */
const char *gw_strerror(int code);
/* The message of the last failure on this thread (borrowed, valid until the next gw_ call on this
 * thread); "" when the last call succeeded. */
const char *gw_errmsg(void);

/* ---- decoding ------------------------------------------------------------------------------------- */
typedef enum {
  GW_DECODE_AR = 0,           /* main model only, one layer per forward */
  GW_DECODE_SPEC = 1,         /* draft proposes gamma layers, one main forward verifies; lossless */
  GW_DECODE_SPEC_RELAXED = 2  /* accept a draft layer whose codes are within radii[l] of the argmax */
} gw_mode_t;

/* Parses "ar" / "spec" / "spec-relaxed"; -1 for anything else. */
int gw_mode_parse(const char *name);
/* The name of a mode ("ar", "spec", "spec-relaxed"; "?" for another value). */
const char *gw_mode_name(int mode);

typedef struct {
  int mode;                      /* gw_mode_t */
  int gamma;                     /* layers the draft proposes per round, 1..GW_MAX_GAMMA (spec modes) */
  int radii[GW_MAX_LAYERS];      /* spec-relaxed: radius r_l in levels for layer l, >= 0 */
  int width;                     /* spec modes: draft paths per request and round, 0..GW_MAX_WIDTH (0 and 1: one,
                                  * draft.propose); > 1 needs draft.propose_paths, and main.verify then runs
                                  * width rows per request (docs/model-package.md, "Decoding") */
} gw_decode_params_t;

/* ---- precision ------------------------------------------------------------------------------------ */
typedef enum {
  GW_DTYPE_FLOAT32 = 0,  /* every operator in float32: the package as exported (the default) */
  GW_DTYPE_BFLOAT16 = 1, /* main and draft under libtorch's autocast: matrix products and convolutions in
                          * bfloat16 (on CUDA norms, softmax and reductions in float32; on the CPU in the type
                          * of their input); tokenizer.decode in float32 */
  GW_DTYPE_FLOAT16 = 2   /* the same with float16 */
} gw_dtype_t;

/* Parses "float32" / "bfloat16" / "float16"; -1 for anything else. */
int gw_dtype_parse(const char *name);
/* The name of a precision ("float32", "bfloat16", "float16"; "?" for another value). */
const char *gw_dtype_name(int dtype);

/* ---- the package --------------------------------------------------------------------------------- */
/* What the manifest declares, after validation (docs/model-package.md). */
typedef struct {
  char name[GW_NAME_MAX];
  char version[GW_NAME_MAX];
  char content_hash[80];                           /* "sha256:<64 hex>" */
  int num_cameras;
  char cameras[GW_MAX_CAMERAS][GW_NAME_MAX];       /* in the order images are stacked */
  int image_height, image_width;                   /* pixels; images are uint8 RGB, upright */
  char instr_tokenizer[GW_NAME_MAX];               /* "bytes" */
  int instr_max_tokens;                            /* T */
  int proprio_dim;                                 /* P */
  int chunk_horizon, action_dim;                   /* H, A */
  int gripper_index;                               /* index in A of the gripper, -1 for none */
  int layers, groups, levels;                      /* RFSQ L, G, K */
  int hidden_dim;                                  /* D: main's hidden state that the draft reads */
  gw_decode_params_t decoding;                     /* the package's default decoding parameters */
  char unnorm_key[GW_NAME_MAX];                    /* the statistics this policy handle unnormalizes with */
  int num_unnorm_keys;                             /* entries of action_stats, 1..GW_MAX_UNNORM_KEYS */
  char unnorm_keys[GW_MAX_UNNORM_KEYS][GW_NAME_MAX]; /* every unnorm_key of action_stats, in manifest order */
} gw_manifest_t;

typedef struct {
  const char *device;       /* "cpu" or "cuda:N"; NULL means "cpu" */
  const char *unnorm_key;   /* required: the campaign's dataset key into the action statistics */
  int num_threads;          /* intra-op threads for CPU; 0 leaves libtorch's default */
  int verify_hash;          /* nonzero: check content_hash against the module files (recommended) */
  int any_unnorm_key;       /* nonzero: unnorm_key may be NULL, and then the package's first key is selected
                             * (a server that picks the key per request with gw_policy_set_unnorm_key) */
  int dtype;                /* gw_dtype_t: the precision main and draft run at (0: float32). Results depend on it:
                             * spec stays equal to ar at the same precision, not across precisions. Below float32
                             * autocast's process-wide cast cache holds the weights' casts until destroy */
} gw_policy_opts_t;

typedef struct gw_policy_t gw_policy_t;

/* Loads the package in directory `dir` and validates it: every manifest field, the content hash, each
 * module's methods, and a probe call on a dummy batch that checks every output's shape, dtype, device
 * and finiteness. Fails with GW_EUNNORM (listing the keys it has) when opts->unnorm_key is missing from
 * the statistics (unless opts->any_unnorm_key and it is NULL). On success *policy_out is a new handle owned by the caller; on failure it is NULL. */
int gw_policy_open(const char *dir, const gw_policy_opts_t *opts, gw_policy_t **policy_out);
/* Switches the action statistics that later gw_policy_decode calls unnormalize with to `unnorm_key`
 * (one of gw_policy_manifest(policy)->unnorm_keys; the manifest's unnorm_key follows). Fails with
 * GW_EUNNORM, listing the keys the package has, and keeps the current statistics. */
int gw_policy_set_unnorm_key(gw_policy_t *policy, const char *unnorm_key);
/* Frees a policy; idempotent, sets *self_p = NULL. self_p and *self_p may be NULL. */
void gw_policy_destroy(gw_policy_t **self_p);
/* The precision the policy runs at (gw_dtype_t), as opened. */
int gw_policy_dtype(const gw_policy_t *policy);
/* The validated manifest (borrowed; lives as long as the policy). */
const gw_manifest_t *gw_policy_manifest(const gw_policy_t *policy);

/* ---- requests ------------------------------------------------------------------------------------ */
/* One observation (borrowed by the call). Sizes are given by the sender and checked against the
 * manifest; a mismatch fails that request with GW_EINPUT. */
typedef struct {
  const uint8_t *images;     /* [cameras][height][width][3] uint8 RGB, upright, cameras in manifest order */
  int num_cameras, image_height, image_width;
  const float *proprio;      /* [proprio_dim] */
  int proprio_dim;
  const char *instruction;   /* UTF-8, NUL-terminated; tokenized by the package's instruction tokenizer */
} gw_obs_t;

/* Decoding statistics of one request. Counts are per request: a batched forward counts once for every
 * request that took part in it. */
typedef struct {
  int batch_size;                       /* requests in the gw_policy_decode call */
  int main_forwards;                    /* prefill + step/verify calls this request took part in */
  int draft_forwards;                   /* draft.propose calls this request took part in */
  int layers_proposed[GW_MAX_LAYERS];   /* draft layers proposed at layer index l */
  int layers_accepted[GW_MAX_LAYERS];   /* of those, accepted */
  double prefill_us;                    /* main.prefill of the batch (wall time) */
  double decode_us;                     /* layer decoding + tokenizer + unnormalization (wall time) */
} gw_stats_t;

/* One request's outputs. The caller provides the arrays (sizes from the manifest); nullable ones may be
 * NULL. On a failed request the arrays are left untouched: never a substituted action. */
typedef struct {
  float *chunk;              /* [H][A] caller-owned: unnormalized actions, gripper -1 open / +1 close */
  float *chunk_norm;         /* nullable [H][A]: tokenizer output in normalized units */
  int32_t *codes;            /* nullable [L][G]: the RFSQ codes decoded */
  int status;                /* out: GW_OK or this request's gw_err_t */
  char message[GW_ROW_MSG_MAX]; /* out: "" or why this request failed */
  gw_stats_t stats;          /* out */
} gw_result_t;

/* Decodes n (1..GW_MAX_BATCH) observations as one batch with the given parameters (NULL: the package's
 * defaults). Writes results[i] for obs[i]. Returns GW_OK when the batch ran, even if some requests failed
 * (see results[i].status); an error for the whole batch otherwise (bad parameters, a libtorch failure),
 * in which case every results[i].status carries it too. */
int gw_policy_decode(gw_policy_t *policy, const gw_obs_t *obs, int n, const gw_decode_params_t *params,
                     gw_result_t *results);

/* Teacher-forced check, for tests and reports: for each observation i and given codes[i] ([L][G]), writes
 * argmax_out[i] ([L][G]) = the main model's argmax at every layer l conditioned on codes[i][0..l-1]
 * (one prefill and one verify forward). Per-request failures are in status_out[i] (nullable). */
int gw_policy_main_argmax(gw_policy_t *policy, const gw_obs_t *obs, int n, const int32_t *codes,
                          int32_t *argmax_out, int *status_out);

#ifdef __cplusplus
}
#endif

#endif
