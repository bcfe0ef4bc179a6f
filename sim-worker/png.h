/* png.h: writes RGB images as PNG files (for `rsd-sim-worker render` and report thumbnails), and
 * sequences of them as animated PNG (APNG), the rollout-video format every current browser plays in an
 * <img> element without a codec library. */
#ifndef RSD_SW_PNG_H
#define RSD_SW_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Writes a width x height 8-bit RGB image (rows top to bottom) to path. Returns 0, or -1 with the reason
 * (the path and the system's error) in err. */
int sw_png_write(const char *path, const uint8_t *rgb, int width, int height, char *err, size_t errlen);

/* An animated PNG built a frame at a time, so that a caller serving sockets compresses each frame when it
 * is made (a frame at 256 px costs about 16 ms; a whole 220-step rollout at once, over a second). Frames
 * are width x height RGB images (rows top to bottom), shown at `fps` frames per second, looping. */
typedef struct sw_apng sw_apng_t;

/* Starts an animated PNG of width x height RGB frames at `fps`, looping. NULL with the reason in err. */
sw_apng_t *sw_apng_new(int width, int height, int fps, char *err, size_t errlen);

/* Compresses and appends one frame (width * height * 3 bytes, rows top to bottom; borrowed). Returns 0, or
 * -1 with the reason in err (the encoder is then only fit for sw_apng_destroy). */
int sw_apng_add(sw_apng_t *self, const uint8_t *rgb, char *err, size_t errlen);

/* Frames added so far. */
int sw_apng_frames(const sw_apng_t *self);

/* Ends the file: *out (owned by the caller, free()) receives its bytes, *outlen their count. Destroys the
 * encoder (*self_p = NULL) either way. Returns 0, or -1 with the reason in err (no frame added, out of
 * memory). */
int sw_apng_finish(sw_apng_t **self_p, uint8_t **out, size_t *outlen, char *err, size_t errlen);

/* Frees an encoder that is not finished; idempotent; sets *self_p to NULL. */
void sw_apng_destroy(sw_apng_t **self_p);

#endif
