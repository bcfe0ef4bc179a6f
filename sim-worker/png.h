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

/* Encodes nframes width x height RGB images (frames back to back, rows top to bottom) as an animated PNG
 * in memory, shown at `fps` frames per second, looping. *out (owned by the caller, free()) receives the
 * file's bytes and *outlen their count. Returns 0, or -1 with the reason in err. */
int sw_apng_encode(const uint8_t *frames, int nframes, int width, int height, int fps, uint8_t **out,
                   size_t *outlen, char *err, size_t errlen);

#endif
