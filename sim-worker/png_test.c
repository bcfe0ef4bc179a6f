/* png_test.c: a written PNG is a valid file (signature, chunk CRCs, IHDR) whose pixels inflate back to the
 * image that was written; an animated PNG has the APNG chunk sequence (acTL, fcTL + IDAT, fcTL + fdAT with
 * sequence numbers) and every frame un-filters back to its image; an animation without frames, an unfinished
 * one and a bad frame rate are refused or freed cleanly. */
#include "png.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"

static uint32_t s_be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

int main(void) {
  enum { W = 37, H = 21 };
  static uint8_t rgb[W * H * 3];
  for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 31 + 7);
  char dir[] = "/tmp/rsd-png-XXXXXX", path[64], err[256] = "";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  snprintf(path, sizeof path, "%s/a.png", dir);
  CHECK(sw_png_write(path, rgb, W, H, err, sizeof err) == 0, "write: %s", err);

  static uint8_t file[1 << 16];
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(file, 1, sizeof file, f) : 0;
  if (f) fclose(f);
  CHECK(n > 8 + 25 + 12 && memcmp(file, "\x89PNG\r\n\x1a\n", 8) == 0, "bad signature or short file (%zu bytes)", n);
  static uint8_t idat[1 << 16];
  size_t idat_len = 0, off = 8;
  int chunks = 0, bad_crc = 0;
  bool ended = false;
  while (off + 12 <= n && !ended) {
    uint32_t len = s_be32(file + off);
    const uint8_t *type = file + off + 4;
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, 4 + len);
    bad_crc += crc != s_be32(file + off + 8 + len);
    if (memcmp(type, "IHDR", 4) == 0)
      CHECK(s_be32(type + 4) == W && s_be32(type + 8) == H && type[12] == 8 && type[13] == 2, "IHDR fields");
    if (memcmp(type, "IDAT", 4) == 0) {
      memcpy(idat + idat_len, type + 4, len);
      idat_len += len;
    }
    ended = memcmp(type, "IEND", 4) == 0;
    off += 12 + len;
    chunks++;
  }
  CHECK(ended && off == n && chunks == 3 && bad_crc == 0, "chunks %d, bad CRCs %d, ended %d", chunks, bad_crc, ended);
  static uint8_t raw[(W * 3 + 1) * H];
  uLongf raw_len = sizeof raw;
  CHECK(uncompress(raw, &raw_len, idat, idat_len) == Z_OK && raw_len == sizeof raw, "IDAT does not inflate");
  int diff = 0;
  for (int y = 0; y < H; y++) diff += raw[y * (W * 3 + 1)] != 0 || memcmp(raw + y * (W * 3 + 1) + 1, rgb + y * W * 3, W * 3);
  CHECK(diff == 0, "%d rows differ after the round trip", diff);

  CHECK(sw_png_write("/nonexistent-dir/x.png", rgb, W, H, err, sizeof err) == -1 && strstr(err, "/nonexistent-dir/x.png"),
        "unwritable path: %s", err);
  CHECK(sw_png_write(path, rgb, 0, H, err, sizeof err) == -1 && strstr(err, "0x21"), "zero width: %s", err);
  unlink(path);
  rmdir(dir);

  /* Animated: three frames, each different. */
  enum { NF = 3 };
  static uint8_t frames[NF * W * H * 3];
  for (int i = 0; i < NF * W * H * 3; i++) frames[i] = (uint8_t)(i * 13 + i / (W * H * 3) * 77);
  uint8_t *apng = NULL;
  size_t alen = 0;
  /* built a frame at a time, as the sim worker makes a video while the episode runs */
  sw_apng_t *enc = sw_apng_new(W, H, 10, err, sizeof err);
  CHECK(enc != NULL, "apng new: %s", err);
  for (int f = 0; enc && f < NF; f++)
    CHECK(sw_apng_add(enc, frames + (size_t)f * W * H * 3, err, sizeof err) == 0 && sw_apng_frames(enc) == f + 1,
          "add frame %d: %s", f, err);
  CHECK(enc && sw_apng_finish(&enc, &apng, &alen, err, sizeof err) == 0 && enc == NULL, "finish: %s", err);
  int seq = 0, frame = 0, bad_seq = 0, actl = 0;
  bad_crc = 0;
  ended = false;
  off = 8;
  CHECK(apng && alen > 8 && memcmp(apng, "\x89PNG\r\n\x1a\n", 8) == 0, "apng signature");
  while (apng && off + 12 <= alen && !ended) {
    uint32_t len = s_be32(apng + off);
    const uint8_t *type = apng + off + 4;
    bad_crc += (uint32_t)crc32(crc32(0L, Z_NULL, 0), type, 4 + len) != s_be32(apng + off + 8 + len);
    if (memcmp(type, "acTL", 4) == 0) actl = (int)s_be32(type + 4);
    if (memcmp(type, "fcTL", 4) == 0) {
      bad_seq += s_be32(type + 4) != (uint32_t)seq++;
      CHECK(s_be32(type + 8) == W && s_be32(type + 12) == H && type[24] == 0 && type[25] == 1 && type[26] == 0 && type[27] == 10,
            "fcTL %d fields", frame);
    }
    if (memcmp(type, "IDAT", 4) == 0 || memcmp(type, "fdAT", 4) == 0) {
      const uint8_t *z = type + 4;
      uint32_t zl = len;
      if (type[0] == 'f') {
        bad_seq += s_be32(z) != (uint32_t)seq++;
        z += 4;
        zl -= 4;
      }
      CHECK((type[0] == 'I') == (frame == 0), "frame %d in %.4s", frame, (const char *)type);
      raw_len = sizeof raw;
      CHECK(uncompress(raw, &raw_len, z, zl) == Z_OK && raw_len == sizeof raw, "frame %d does not inflate", frame);
      diff = 0;
      for (int y = 0; y < H; y++) {
        const uint8_t *want = frames + (size_t)frame * W * H * 3 + (size_t)y * W * 3;
        diff += raw[y * (W * 3 + 1)] != 2;
        for (int i = 0; i < W * 3; i++)
          diff += (uint8_t)(raw[y * (W * 3 + 1) + 1 + i] + (y ? want[i - W * 3] : 0)) != want[i];
      }
      CHECK(diff == 0, "frame %d: %d bytes differ after un-filtering", frame, diff);
      frame++;
    }
    ended = memcmp(type, "IEND", 4) == 0;
    off += 12 + len;
  }
  CHECK(ended && off == alen && bad_crc == 0 && bad_seq == 0 && actl == NF && frame == NF,
        "apng: ended %d, %zu of %zu bytes, bad CRCs %d, bad sequence numbers %d, acTL %d, frames %d", ended, off, alen,
        bad_crc, bad_seq, actl, frame);
  free(apng);
  uint8_t *inc_out = NULL;
  size_t inc_len = 0;
  sw_apng_t *inc = sw_apng_new(W, H, 10, err, sizeof err);
  CHECK(inc && sw_apng_finish(&inc, &inc_out, &inc_len, err, sizeof err) == -1 && strstr(err, "0 frames") &&
            inc == NULL && inc_out == NULL,
        "finish without frames: %s", err);
  inc = sw_apng_new(W, H, 10, err, sizeof err);
  CHECK(inc && sw_apng_add(inc, frames, err, sizeof err) == 0, "add: %s", err);
  sw_apng_destroy(&inc); /* unfinished: freed (ASan checks) */
  sw_apng_destroy(&inc);
  CHECK(inc == NULL && sw_apng_new(W, H, 0, err, sizeof err) == NULL && strstr(err, "0 fps"), "0 fps: %s", err);
  return check_summary("png_test");
}
