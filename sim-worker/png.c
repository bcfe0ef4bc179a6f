/* png.c: a small PNG encoder over zlib (see png.h): signature, IHDR, one IDAT with filter 0 rows, IEND;
 * and animated PNG: acTL after IHDR, then per frame an fcTL and the image data (IDAT for the first frame,
 * fdAT with its sequence number for the others), rows filtered with "Up" (type 2), which compresses a
 * rendered scene far better than none. */
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

/* A growing byte buffer for the in-memory APNG. */
typedef struct {
  uint8_t *p;
  size_t n, cap;
  int failed;
} s_out_t;

static void s_put(s_out_t *o, const void *data, size_t len) {
  if (o->failed) return;
  if (o->n + len > o->cap) {
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->n + len) cap *= 2;
    uint8_t *p = realloc(o->p, cap);
    if (!p) {
      o->failed = 1;
      return;
    }
    o->p = p;
    o->cap = cap;
  }
  if (len) memcpy(o->p + o->n, data, len);
  o->n += len;
}

/* One chunk into memory: length, type, data (a prefix `pre` of pre_len bytes, then data), CRC. */
static void s_mchunk(s_out_t *o, const char *type, const uint8_t *pre, uint32_t pre_len, const uint8_t *data,
                     uint32_t len) {
  uint8_t head[8], tail[4];
  s_be32(head, pre_len + len);
  memcpy(head + 4, type, 4);
  uLong crc = crc32(0L, head + 4, 4);
  if (pre_len) crc = crc32(crc, pre, pre_len);
  if (len) crc = crc32(crc, data, len);
  s_be32(tail, (uint32_t)crc);
  s_put(o, head, 8);
  s_put(o, pre, pre_len);
  s_put(o, data, len);
  s_put(o, tail, 4);
}

int sw_apng_encode(const uint8_t *frames, int nframes, int width, int height, int fps, uint8_t **out,
                   size_t *outlen, char *err, size_t errlen) {
  *out = NULL;
  *outlen = 0;
  if (nframes < 1 || width < 1 || height < 1 || width > 4096 || height > 4096 || fps < 1 || fps > 1000) {
    snprintf(err, errlen, "animated PNG of %d frames of %dx%d at %d fps: need >= 1 frame, 1..4096 px, 1..1000 fps",
             nframes, width, height, fps);
    return -1;
  }
  size_t row = (size_t)width * 3, raw_len = (row + 1) * (size_t)height, img = row * (size_t)height;
  uLong zcap = compressBound((uLong)raw_len);
  uint8_t *raw = malloc(raw_len), *z = malloc(zcap);
  s_out_t o = {0};
  if (!raw || !z) {
    free(raw);
    free(z);
    snprintf(err, errlen, "out of memory for a %dx%d animated PNG", width, height);
    return -1;
  }
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  s_put(&o, signature, 8);
  uint8_t ihdr[13] = {0};
  s_be32(ihdr, (uint32_t)width);
  s_be32(ihdr + 4, (uint32_t)height);
  ihdr[8] = 8; /* bit depth */
  ihdr[9] = 2; /* RGB */
  s_mchunk(&o, "IHDR", NULL, 0, ihdr, 13);
  uint8_t actl[8];
  s_be32(actl, (uint32_t)nframes);
  s_be32(actl + 4, 0); /* loop forever */
  s_mchunk(&o, "acTL", NULL, 0, actl, 8);
  uint32_t seq = 0;
  int rc = 0;
  for (int f = 0; f < nframes && !rc; f++) {
    const uint8_t *rgb = frames + img * (size_t)f;
    for (int y = 0; y < height; y++) {
      uint8_t *dst = raw + (size_t)y * (row + 1);
      const uint8_t *cur = rgb + (size_t)y * row, *up = y ? cur - row : NULL;
      dst[0] = 2; /* filter "Up": each byte minus the byte above it */
      for (size_t i = 0; i < row; i++) dst[1 + i] = (uint8_t)(cur[i] - (up ? up[i] : 0));
    }
    uLongf z_len = zcap;
    int zrc = compress2(z, &z_len, raw, (uLong)raw_len, 6);
    if (zrc != Z_OK) {
      snprintf(err, errlen, "zlib compress2 failed (%d) on frame %d", zrc, f);
      rc = -1;
      break;
    }
    uint8_t fctl[26] = {0};
    s_be32(fctl, seq++);
    s_be32(fctl + 4, (uint32_t)width);
    s_be32(fctl + 8, (uint32_t)height);
    /* x and y offsets 0; delay 1/fps s; dispose none, blend source */
    fctl[20] = 0;
    fctl[21] = 1;
    fctl[22] = (uint8_t)(fps >> 8);
    fctl[23] = (uint8_t)fps;
    s_mchunk(&o, "fcTL", NULL, 0, fctl, 26);
    if (f == 0) {
      s_mchunk(&o, "IDAT", NULL, 0, z, (uint32_t)z_len);
    } else {
      uint8_t sq[4];
      s_be32(sq, seq++);
      s_mchunk(&o, "fdAT", sq, 4, z, (uint32_t)z_len);
    }
  }
  s_mchunk(&o, "IEND", NULL, 0, NULL, 0);
  free(raw);
  free(z);
  if (!rc && o.failed) {
    snprintf(err, errlen, "out of memory for an animated PNG of %d frames", nframes);
    rc = -1;
  }
  if (rc) {
    free(o.p);
    return -1;
  }
  *out = o.p;
  *outlen = o.n;
  return 0;
}
