/* png.c: a small PNG encoder over zlib (see png.h): signature, IHDR, one IDAT with filter 0 rows, IEND. */
#include "png.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void s_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* Writes one chunk: length, type, data, CRC of type + data. */
static int s_chunk(FILE *f, const char *type, const uint8_t *data, uint32_t len) {
  uint8_t head[8], tail[4];
  s_be32(head, len);
  memcpy(head + 4, type, 4);
  uLong crc = crc32(0L, head + 4, 4);
  if (len) crc = crc32(crc, data, len);
  s_be32(tail, (uint32_t)crc);
  return fwrite(head, 1, 8, f) == 8 && (len == 0 || fwrite(data, 1, len, f) == len) && fwrite(tail, 1, 4, f) == 4
             ? 0
             : -1;
}

int sw_png_write(const char *path, const uint8_t *rgb, int width, int height, char *err, size_t errlen) {
  if (width < 1 || height < 1 || width > 16384 || height > 16384) {
    snprintf(err, errlen, "%s: image size %dx%d is outside 1..16384", path, width, height);
    return -1;
  }
  size_t row = (size_t)width * 3, raw_len = (row + 1) * (size_t)height;
  uint8_t *raw = malloc(raw_len);
  uLongf z_len = compressBound((uLong)raw_len);
  uint8_t *z = malloc(z_len);
  if (!raw || !z) {
    free(raw);
    free(z);
    snprintf(err, errlen, "%s: out of memory for a %dx%d image", path, width, height);
    return -1;
  }
  for (int y = 0; y < height; y++) {
    raw[(size_t)y * (row + 1)] = 0; /* filter type 0: none */
    memcpy(raw + (size_t)y * (row + 1) + 1, rgb + (size_t)y * row, row);
  }
  int zrc = compress2(z, &z_len, raw, (uLong)raw_len, 6);
  free(raw);
  if (zrc != Z_OK) {
    free(z);
    snprintf(err, errlen, "%s: zlib compress2 failed (%d)", path, zrc);
    return -1;
  }
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(z);
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
  }
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13];
  s_be32(ihdr, (uint32_t)width);
  s_be32(ihdr + 4, (uint32_t)height);
  ihdr[8] = 8;  /* bit depth */
  ihdr[9] = 2;  /* colour type: RGB */
  ihdr[10] = 0; /* deflate */
  ihdr[11] = 0; /* adaptive filtering */
  ihdr[12] = 0; /* no interlace */
  int rc = fwrite(signature, 1, 8, f) == 8 ? 0 : -1;
  if (!rc) rc = s_chunk(f, "IHDR", ihdr, 13);
  if (!rc) rc = s_chunk(f, "IDAT", z, (uint32_t)z_len);
  if (!rc) rc = s_chunk(f, "IEND", NULL, 0);
  free(z);
  if (fclose(f) != 0) rc = -1;
  if (rc) snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
  return rc;
}
