/* model_package.h: what the coordinator needs to know about a campaign's policy package, read from its
 * manifest.json (docs/model-package.md) when `rsd run` / `rsd resume` starts a campaign with policy-model
 * variants: the name that LEASEs and INFERs carry, the content hash GPU workers must serve, and checks of
 * the config against the package (unnorm_key, image size, radii per layer, replan_every within a chunk),
 * so that a mismatch stops the run before any episode instead of failing every INFER.
 *
 * Not here: loading the modules or verifying the hash against the module files (the GPU worker does). */
#ifndef RSD_CO_MODEL_PACKAGE_H
#define RSD_CO_MODEL_PACKAGE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

#define CO_PACKAGE_MAX_KEYS 32 /* action_stats entries read (the GPU worker's limit too) */

/* The facts of one package. Plain data. */
typedef struct {
  char name[MSG_LABEL_MAX + 1];         /* manifest "name": LEASE.model, INFER.model, HELLO.model */
  char version[MSG_NAME_MAX + 1];       /* manifest "version" */
  char content_hash[MSG_LABEL_MAX + 1]; /* manifest "content_hash", "sha256:..." (HELLO.model_hash) */
  uint32_t image_height, image_width;
  uint32_t layers, levels;              /* RFSQ layers L and levels K */
  uint32_t chunk_horizon;               /* actions per chunk H */
  char unnorm_keys[CO_PACKAGE_MAX_KEYS][MSG_LABEL_MAX + 1]; /* the keys of "action_stats", in file order */
  uint32_t unnorm_count;
  /* the package's default decoding ("decoding"): draft layers per round, draft paths (1 when absent), and a
   * relaxed radius per layer */
  uint32_t gamma, width;
  uint32_t radii[MSG_MAX_LAYERS];
} co_package_t;

/* Reads <dir>/manifest.json into *out. Returns 0, or -1 with a message naming the file, the key and the
 * value in err. */
int co_package_read(const char *dir, co_package_t *out, char *err, size_t errlen);

/* Reads the package of cfg->model and checks cfg against it: unnorm_key among the action statistics
 * (the message lists the keys present), image_size equal to the package's image size, radii of every
 * spec-relaxed variant one per layer and each below the levels, replan_every at most the chunk length,
 * and cfg->model_hash (when set) equal to the package's content_hash.
 * Returns 0 with *out filled, or -1 with the first problem in err. Call only when cfg->has_model. */
int co_package_check(const co_config_t *cfg, co_package_t *out, char *err, size_t errlen);

/* Pins the package's default decoding into every policy-model variant that leaves it to the model:
 * draft_len and draft_width for spec and spec-relaxed, radii for spec-relaxed. rsd run calls it before the
 * config is stored or compared, so the journal and the report name the parameters the campaign decoded
 * with, and a package whose defaults changed is refused on resume like any other config change. */
void co_package_pin_decoding(const co_package_t *pkg, co_config_t *cfg);

#endif
