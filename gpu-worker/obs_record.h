/* obs_record.h: a recording of the observations a GPU worker decoded (rsd-gpu-worker --record-obs DIR), in
 * the observation-set format that policy_bench --obs and train/retrain_draft.py --obs read
 * (docs/gpu-worker.md, "Recording observations"):
 *   DIR/images.u8         uint8 [N][cameras][H][W][3], the INFER's camera frames in manifest order
 *   DIR/proprio.f32       float32 [N][proprio_dim], little-endian as on the wire
 *   DIR/instructions.txt  N lines, the INFER's instruction
 *   DIR/rows.tsv          a header line, then N lines: variant, task, trial, step, mode, main_forwards
 * A recording starts in a directory that holds none (two workers never write one set); each row is flushed
 * whole before the next, so a reader of a finished recording sees N complete rows. It owns the four files;
 * it does not decide which requests are recorded (worker.c records those answered with an ACTION). */
#ifndef RSD_GW_OBS_RECORD_H
#define RSD_GW_OBS_RECORD_H

#include <stddef.h>

#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gw_obs_record gw_obs_record_t;

/* Where a recorded observation came from (all borrowed). */
typedef struct {
  const char *variant;   /* the campaign variant's name */
  unsigned task, trial, step;
  const char *mode;      /* "ar", "spec", "spec-relaxed" */
  int main_forwards;     /* the request's main-model forwards */
} gw_obs_origin_t;

/* Starts a recording in `dir` (created if missing) for observations shaped like the manifest's (m is
 * borrowed and must outlive the recording). NULL with a message in err (nullable) naming the file and the
 * reason, also when dir already holds a recording (rows.tsv exists). */
gw_obs_record_t *gw_obs_record_new(const char *dir, const gw_manifest_t *m, char *err, size_t errlen);
/* Flushes and closes the files; idempotent, sets *self_p = NULL. */
void gw_obs_record_destroy(gw_obs_record_t **self_p);

/* Appends one observation (its images, proprio and instruction, borrowed) and its origin. Returns 0, or
 * -1 with a message in err (a write failed, or an instruction or name holds a tab or newline that the
 * format cannot carry); after a failure the recording refuses every later row. */
int gw_obs_record_add(gw_obs_record_t *self, const gw_obs_t *obs, const gw_obs_origin_t *origin, char *err,
                      size_t errlen);

/* Rows recorded so far. */
long gw_obs_record_rows(const gw_obs_record_t *self);

#ifdef __cplusplus
}
#endif

#endif
