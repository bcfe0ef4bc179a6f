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

struct sw_apng {
  int width, height, fps, nframes;
  uint32_t seq;       /* the next fcTL / fdAT sequence number */
  size_t row, raw_len;
  uint8_t *raw, *z;   /* owned: one filtered frame, and its compressed form */
  uLong zcap;
  s_out_t o;          /* the file so far; acTL's frame count is written by sw_apng_finish */
  size_t actl_at;     /* offset of the acTL chunk in o */
};

void sw_apng_destroy(sw_apng_t **self_p) {
  if (!self_p || !*self_p) return;
  sw_apng_t *a = *self_p;
  free(a->raw);
  free(a->z);
  free(a->o.p);
  free(a);
  *self_p = NULL;
}

sw_apng_t *sw_apng_new(int width, int height, int fps, char *err, size_t errlen) {
  if (width < 1 || height < 1 || width > 4096 || height > 4096 || fps < 1 || fps > 1000) {
    snprintf(err, errlen, "animated PNG of %dx%d at %d fps: need 1..4096 px and 1..1000 fps", width, height, fps);
    return NULL;
  }
  sw_apng_t *a = calloc(1, sizeof *a);
  if (a) {
    a->width = width;
    a->height = height;
    a->fps = fps;
    a->row = (size_t)width * 3;
    a->raw_len = (a->row + 1) * (size_t)height;
    a->zcap = compressBound((uLong)a->raw_len);
    a->raw = malloc(a->raw_len);
    a->z = malloc(a->zcap);
  }
  if (!a || !a->raw || !a->z) {
    sw_apng_destroy(&a);
    snprintf(err, errlen, "out of memory for a %dx%d animated PNG", width, height);
    return NULL;
  }
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  s_put(&a->o, signature, 8);
  uint8_t ihdr[13] = {0};
  s_be32(ihdr, (uint32_t)width);
  s_be32(ihdr + 4, (uint32_t)height);
  ihdr[8] = 8; /* bit depth */
  ihdr[9] = 2; /* RGB */
  s_mchunk(&a->o, "IHDR", NULL, 0, ihdr, 13);
  a->actl_at = a->o.n;
  uint8_t actl[8] = {0}; /* frame count (sw_apng_finish), then 0: loop forever */
  s_mchunk(&a->o, "acTL", NULL, 0, actl, 8);
  return a;
}

int sw_apng_add(sw_apng_t *a, const uint8_t *rgb, char *err, size_t errlen) {
  for (int y = 0; y < a->height; y++) {
    uint8_t *dst = a->raw + (size_t)y * (a->row + 1);
    const uint8_t *cur = rgb + (size_t)y * a->row, *up = y ? cur - a->row : NULL;
    dst[0] = 2; /* filter "Up": each byte minus the byte above it */
    for (size_t i = 0; i < a->row; i++) dst[1 + i] = (uint8_t)(cur[i] - (up ? up[i] : 0));
  }
  uLongf z_len = a->zcap;
  int zrc = compress2(a->z, &z_len, a->raw, (uLong)a->raw_len, 6);
  if (zrc != Z_OK) {
    snprintf(err, errlen, "zlib compress2 failed (%d) on frame %d", zrc, a->nframes);
    return -1;
  }
  uint8_t fctl[26] = {0};
  s_be32(fctl, a->seq++);
  s_be32(fctl + 4, (uint32_t)a->width);
  s_be32(fctl + 8, (uint32_t)a->height);
  /* x and y offsets 0; delay 1/fps s; dispose none, blend source */
  fctl[20] = 0;
  fctl[21] = 1;
  fctl[22] = (uint8_t)(a->fps >> 8);
  fctl[23] = (uint8_t)a->fps;
  s_mchunk(&a->o, "fcTL", NULL, 0, fctl, 26);
  if (a->nframes == 0) {
    s_mchunk(&a->o, "IDAT", NULL, 0, a->z, (uint32_t)z_len);
  } else {
    uint8_t sq[4];
    s_be32(sq, a->seq++);
    s_mchunk(&a->o, "fdAT", sq, 4, a->z, (uint32_t)z_len);
  }
  if (a->o.failed) {
    snprintf(err, errlen, "out of memory for an animated PNG of %d frames", a->nframes + 1);
    return -1;
  }
  a->nframes++;
  return 0;
}

int sw_apng_frames(const sw_apng_t *a) { return a->nframes; }

int sw_apng_finish(sw_apng_t **self_p, uint8_t **out, size_t *outlen, char *err, size_t errlen) {
  sw_apng_t *a = *self_p;
  *out = NULL;
  *outlen = 0;
  int rc = 0;
  if (a->nframes < 1) {
    snprintf(err, errlen, "animated PNG of 0 frames: need >= 1 frame");
    rc = -1;
  } else {
    s_mchunk(&a->o, "IEND", NULL, 0, NULL, 0);
    if (a->o.failed) {
      snprintf(err, errlen, "out of memory for an animated PNG of %d frames", a->nframes);
      rc = -1;
    }
  }
  if (!rc) {
    uint8_t *actl = a->o.p + a->actl_at;
    s_be32(actl + 8, (uint32_t)a->nframes);
    s_be32(actl + 16, (uint32_t)crc32(0L, actl + 4, 12)); /* CRC of type + data */
    *out = a->o.p;
    *outlen = a->o.n;
    a->o.p = NULL;
  }
  sw_apng_destroy(self_p);
  return rc;
}
