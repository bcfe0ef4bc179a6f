/* config.h: a campaign's configuration: the YAML file a researcher writes (configs/NAME.yaml), checked
 * key by key, with every default filled in; its canonical JSON form, which the journal stores and
 * report.json carries; the comparison that decides whether a stored campaign may be resumed with the
 * config given now; and the enumeration of the campaign's episodes, in the order leases go out.
 *
 * The keys, their types, defaults and allowed values are documented in docs/config.md; the one table
 * that the parser, the JSON writer and the comparison all read is in config.c.
 *
 * Errors: co_config_load / co_config_parse fill a co_config_error_t whose text starts with
 * "file:line:column: " and names the key and the offending value, e.g.
 *   configs/x.yaml:12:11: variants[1].mode: 'fast' is not one of ar, spec, spec-relaxed
 * Nothing here allocates memory that outlives a call; co_config_t is plain data, copy it freely. */
#ifndef RSD_CO_CONFIG_H
#define RSD_CO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ---------------------------------------------------------------------------------- */
#define CO_MAX_VARIANTS 16      /* variants per campaign */
#define CO_MAX_TASKS 128        /* tasks per campaign (LIBERO-90 fits) */
#define CO_PATH_MAX 512         /* output directory, bytes including the NUL */
#define CO_ENDPOINT_MAX 256     /* bind endpoints, bytes including the NUL */
#define CO_DEVICE_MAX 32        /* workers.device, bytes including the NUL */
#define CO_CONFIG_JSON_MAX 16384 /* co_config_to_json never needs more (NUL included) */
#define CO_CONFIG_FILE_MAX (1u << 20) /* a config file larger than this is refused */

/* ---- errors ---------------------------------------------------------------------------------- */
#define CO_CONFIG_ERRORS(E)                                                   \
  E(IO, 1, "cannot read the config")                                          \
  E(SYNTAX, 2, "not valid YAML")                                              \
  E(UNKNOWN_KEY, 3, "unknown key")                                            \
  E(TYPE, 4, "value has the wrong type")                                      \
  E(VALUE, 5, "value not allowed")                                            \
  E(MISSING, 6, "required key missing")                                       \
  E(DUPLICATE, 7, "duplicate key or name")                                    \
  E(CONFLICT, 8, "keys that contradict each other")

typedef enum {
  CO_CONFIG_OK = 0,
#define CO_CONFIG_E_(name, num, text) CO_CONFIG_ERR_##name = num,
  CO_CONFIG_ERRORS(CO_CONFIG_E_)
#undef CO_CONFIG_E_
} co_config_err_t;

/* Static text for an error code ("unknown error code" for others). */
const char *co_config_strerror(co_config_err_t code);

/* Why a config was refused. line and column are 1-based, 0 when the error is not about a place
 * (a file that cannot be read). text is the whole message, "origin:line:column: key: what". */
typedef struct {
  co_config_err_t code;
  uint32_t line, column;
  char text[1024];
} co_config_error_t;

/* ---- suites ---------------------------------------------------------------------------------- */
/* A benchmark suite rsd knows, with the facts a campaign is checked against. */
typedef struct {
  const char *name;     /* "libero_spatial" */
  uint32_t tasks;       /* task indices are 0..tasks-1 */
  uint32_t init_states; /* fixed initial states per task: trials are 0..init_states-1 */
  uint32_t max_steps;   /* the published episode length (control steps after the wait) */
  uint32_t wait_steps;  /* settling steps with the do-nothing action before the policy acts */
} co_suite_t;

/* The known suite called `name`, or NULL. Borrowed, static. */
const co_suite_t *co_suite_find(const char *name);

/* The known suites, terminated by an entry whose name is NULL. Borrowed, static. */
extern const co_suite_t co_suites[];

/* ---- the configuration ----------------------------------------------------------------------- */
typedef enum { CO_VIDEOS_FAILURES, CO_VIDEOS_ALL, CO_VIDEOS_NONE, CO_VIDEOS_COUNT_ } co_videos_t;
extern const char *const co_videos_names[]; /* "failures", "all", "none", NULL */
/* The precision GPU workers run the model at (rsd-gpu-worker --dtype; gw_dtype_t has the same order). */
typedef enum { CO_DTYPE_FLOAT32, CO_DTYPE_BFLOAT16, CO_DTYPE_FLOAT16, CO_DTYPE_COUNT_ } co_dtype_t;
extern const char *const co_dtype_names[]; /* "float32", "bfloat16", "float16", NULL */

/* One decoding variant. Invariants after a successful load: policy MODEL has a mode; policy EXPERT
 * has none of mode, draft_len, draft_width, radii; draft_len and draft_width only with spec modes; radii
 * only with spec-relaxed. An absent draft_len, draft_width or radii means "the model package's default"
 * (its manifest). */
typedef struct {
  char name[MSG_NAME_MAX + 1]; /* unique in the campaign, [A-Za-z0-9_.-]+ */
  msg_policy_t policy;
  bool has_mode;
  msg_mode_t mode;
  bool has_draft_len;
  uint32_t draft_len; /* 1..MSG_MAX_LAYERS */
  bool has_draft_width;
  uint32_t draft_width; /* 1..MSG_MAX_DRAFT_WIDTH: draft paths verified per request and round */
  bool has_radii;
  uint32_t radii[MSG_MAX_LAYERS]; /* each 0..64, per RFSQ layer */
  uint32_t radii_count;
  bool baseline; /* the one variant others are compared with (at most one is true) */
} co_variant_t;

typedef struct {
  uint32_t sim_workers;         /* sim workers `rsd run` starts on this machine (0: remote only) */
  uint32_t episodes_per_worker; /* episodes one sim worker keeps in flight (its HELLO capacity) */
  uint32_t gpu_workers;         /* GPU workers `rsd run` starts on this machine */
  char device[CO_DEVICE_MAX];   /* "auto", "cpu" or "cuda:N" */
  uint32_t max_batch;           /* requests per GPU batch */
  uint32_t max_wait_us;         /* longest wait of the oldest request for a batch to fill */
} co_workers_t;

typedef struct {
  uint32_t heartbeat_ms; /* heartbeat interval, sent in WELCOME */
  uint32_t liveness;     /* missed heartbeats before a lease expires */
  uint32_t max_attempts; /* infrastructure failures before an episode is abandoned */
} co_leases_t;

typedef struct {
  char coordinator[CO_ENDPOINT_MAX]; /* sim workers' HELLO / LEASE / RESULT socket */
  char broker[CO_ENDPOINT_MAX];      /* broker, sim side (INFER / ACTION); sent in WELCOME.broker */
  char broker_gpu[CO_ENDPOINT_MAX];  /* broker, GPU side */
  bool has_keys;
  char keys[CO_PATH_MAX];            /* a CURVE keys directory (`rsd keys DIR`): every socket above then takes
                                        only CURVE clients holding an accepted certificate (msg.h, msg_keys_*) */
} co_bind_t;

/* A whole campaign config with every default filled in. Plain data. */
typedef struct {
  char name[MSG_LABEL_MAX + 1]; /* campaign name, [A-Za-z0-9_.-]+ */
  char suite[MSG_NAME_MAX + 1]; /* a co_suites[] name */
  uint32_t tasks[CO_MAX_TASKS]; /* ascending, distinct, each < the suite's task count */
  uint32_t tasks_count;         /* >= 1 */
  uint32_t trials;              /* trials 0..trials-1 of every task; <= the suite's initial states */
  uint32_t max_steps;
  uint32_t wait_steps;
  uint32_t replan_every; /* actions executed from each chunk before asking again */
  uint64_t seed;
  uint32_t image_size; /* 128, 224 or 256 */
  bool has_model;      /* required when a variant has policy model */
  char model[MSG_LABEL_MAX + 1];
  bool has_unnorm_key; /* required when a variant has policy model */
  char unnorm_key[MSG_LABEL_MAX + 1];
  bool has_model_hash; /* the package's content hash: pinned by the config, or filled in by `rsd run` from
                          the package before the config is stored (a changed package then refuses resume) */
  char model_hash[MSG_LABEL_MAX + 1];
  co_dtype_t model_dtype;  /* every GPU worker of the campaign runs main and draft at this precision (the broker
                              refuses others); results depend on it, so a change refuses resume */
  co_variant_t variants[CO_MAX_VARIANTS];
  uint32_t variants_count; /* >= 1 */
  int32_t baseline;        /* index of the variant with baseline == true, or -1 when none */
  char output[CO_PATH_MAX];
  co_videos_t videos;
  uint32_t max_videos;
  co_workers_t workers;
  co_leases_t leases;
  co_bind_t bind;
} co_config_t;

/* Reads and checks the YAML file at `path` into *out (zeroed first). Returns CO_CONFIG_OK, or an error
 * code with *err (nullable) filled; *out is then unspecified. Messages name `path` as given. */
co_config_err_t co_config_load(const char *path, co_config_t *out, co_config_error_t *err);

/* The same for `len` bytes of YAML (or JSON, which is YAML too) in memory. `origin` (nullable,
 * borrowed) names the text in messages ("<config>" when NULL). */
co_config_err_t co_config_parse(const char *text, size_t len, const char *origin, co_config_t *out,
                                co_config_error_t *err);

/* Writes the canonical JSON of *c into buf (cap bytes, nullable when cap is 0): every key in a fixed
 * order with its effective value, absent optional values as null. Returns the length of the whole
 * JSON (without the NUL); when that is >= cap, buf holds a NUL-terminated prefix. It is always
 * < CO_CONFIG_JSON_MAX. Two configs are equal exactly when their JSON is. */
size_t co_config_to_json(const co_config_t *c, char *buf, size_t cap);

/* Reads what co_config_to_json wrote (through the YAML parser: JSON is YAML's flow style), with all
 * the checks of co_config_parse. `len` bytes of `json`; errors name the origin "stored config". */
co_config_err_t co_config_from_json(const char *json, size_t len, co_config_t *out,
                                    co_config_error_t *err);

/* True when the two configs have the same effective value for every key. */
bool co_config_equal(const co_config_t *a, const co_config_t *b);

/* Compares a stored config with the one given now. Writes one line per differing key into out
 * (cap bytes, nullable when cap is 0; truncated lines end in "..."), "key: stored -> now", with
 * " (may change on resume)" after those that do not forbid resuming. Returns how many differing keys
 * forbid resuming the stored campaign: all but workers.*, output, videos, max_videos, bind.*,
 * leases.heartbeat_ms and leases.liveness, and variants appended after the stored ones (one line each,
 * "variants[i]: (absent) -> \"NAME\" (a new variant: ...)"); a variant removed, reordered or changed forbids it
 * (docs/config.md, "Resuming"). */
int co_config_diff(const co_config_t *stored, const co_config_t *now, char *out, size_t cap);

/* ---- episodes -------------------------------------------------------------------------------- */
/* One episode key: the campaign's variants[variant] on (task, trial). seed is the episode's seed. */
typedef struct {
  uint32_t variant; /* index into variants[] */
  uint32_t task;    /* suite task index */
  uint32_t trial;   /* 0..trials-1: selects the task's fixed initial state */
  uint64_t seed;    /* co_config_episode_seed(c, task, trial) */
} co_config_episode_t;

/* tasks_count x trials x variants_count. */
uint64_t co_config_episodes(const co_config_t *c);

/* The episode at position `index` of the campaign's order, trial-major: for trial 0, every task in
 * ascending order, every variant in config order; then trial 1, ... So the first episodes already
 * cover every task and variant, and variants of one (task, trial) go out together. Returns false
 * when index >= co_config_episodes(c). */
bool co_config_episode(const co_config_t *c, uint64_t index, co_config_episode_t *out);

/* The position of an episode key in that order, or -1 when it is not part of the campaign. */
int64_t co_config_episode_index(const co_config_t *c, uint32_t variant, uint32_t task, uint32_t trial);

/* The index of the variant called `name`, or -1. */
int co_config_variant_find(const co_config_t *c, const char *name);

/* An episode's seed: the same for every variant of a (task, trial), so variants are compared on equal
 * terms; derived from the campaign seed with splitmix64 (formula in docs/config.md). */
uint64_t co_config_episode_seed(const co_config_t *c, uint32_t task, uint32_t trial);

/* Fills a LEASE body for episode *e (zeroing it first): campaign, variant, suite, task, trial,
 * seed, max_steps, wait_steps, replan_every, image_size, policy and, for policy model, mode, model,
 * unnorm_key, and draft_len / radii when the variant sets them. attempt is set to `attempt`;
 * record_video is left unset for the caller. The body passes msg_encode's checks. */
void co_config_lease(const co_config_t *c, const co_config_episode_t *e, uint32_t attempt,
                     msg_lease_body_t *out);

#ifdef __cplusplus
}
#endif
#endif
