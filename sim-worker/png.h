/* png.h: writes RGB images as PNG files (for `rsd-sim-worker render` and report thumbnails). */
#ifndef RSD_SW_PNG_H
#define RSD_SW_PNG_H

#include <stddef.h>
#include <stdint.h>

/* Writes a width x height 8-bit RGB image (rows top to bottom) to path. Returns 0, or -1 with the reason
 * (the path and the system's error) in err. */
int sw_png_write(const char *path, const uint8_t *rgb, int width, int height, char *err, size_t errlen);

#endif
