/* msg_test.c: unit tests of the codec: round trip of every message type, golden bytes, and every
 * rejection path of the decoder.
 *
 *   msg_test TESTDATA_DIR            run the tests against msg/testdata (golden files)
 *   RSD_WRITE_GOLDEN=1 msg_test DIR  rewrite the golden files and the fuzz seed corpus (DIR/../fuzz_corpus),
 *                                    after a deliberate wire change; review the diff before committing */
#include <czmq.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/check.h"
#include "msg.h"
#include "sha256.h"
#include "msg_samples.h"

static const char *s_testdata;

/* Encodes m into a fresh buffer (the caller frees it); a failure is a test failure. */
static msg_buf_t s_encode(const msg_t *m) {
  msg_buf_t buf = {0};
  msg_error_t err = {0};
  msg_err_t rc = msg_encode(m, &buf, &err);
  CHECK(rc == MSG_OK, "encode %s: %s", msg_type_name(m->type), err.text);
  return buf;
}

static void s_spans(const msg_t *m, msg_span_t *spans) {
  for (uint32_t i = 0; i < m->nframes; i++) spans[i] = (msg_span_t){m->frames[i].data, m->frames[i].size};
}

/* Decodes bytes with m's payload frames and returns the code; err and out receive the details. */
static msg_err_t s_decode_with(const msg_t *m, const uint8_t *bytes, size_t n, msg_t *out, msg_error_t *err) {
  msg_span_t spans[MSG_MAX_FRAMES];
  s_spans(m, spans);
  return msg_decode(bytes, n, spans, m->nframes, out, err);
}

static void test_round_trip_every_type(void) {
  for (int t = 0; t < MSG_TYPE_COUNT_; t++) {
    msg_t m, out;
    msg_sample((msg_type_t)t, &m);
    msg_buf_t buf = s_encode(&m);
    msg_error_t err = {0};
    msg_err_t rc = s_decode_with(&m, buf.data, buf.size, &out, &err);
    CHECK(rc == MSG_OK, "decode %s: %s", msg_type_name(m.type), err.text);
    /* Both structs start zeroed (msg_init / msg_decode), so equal fields mean equal bytes. */
    CHECK(memcmp(&m, &out, sizeof m) == 0, "%s: decoded message differs from the original", msg_type_name(m.type));
    CHECK(out.type == (msg_type_t)t && out.id == m.id, "%s: type or id lost", msg_type_name(m.type));
    msg_buf_free(&buf);
  }
}

static void test_payload_frames_survive(void) {
  msg_t m, out;
  msg_sample(MSG_INFER, &m);
  msg_buf_t buf = s_encode(&m);
  msg_error_t err;
  CHECK(s_decode_with(&m, buf.data, buf.size, &out, &err) == MSG_OK, "%s", err.text);
  const msg_frame_t *img = msg_find_frame(&out, "eye_in_hand");
  CHECK(img && img->dtype == MSG_DTYPE_U8 && img->rank == 3 && img->shape[0] == 4 && img->shape[1] == 6 &&
            img->shape[2] == 3 && img->size == 72,
        "eye_in_hand frame description wrong");
  CHECK(img && memcmp(img->data, m.frames[1].data, 72) == 0, "eye_in_hand bytes differ");
  CHECK(msg_find_frame(&out, "missing") == NULL, "found a frame that does not exist");
  CHECK(strcmp(out.infer.instruction, m.infer.instruction) == 0, "instruction differs");
  CHECK(out.infer.mode == MSG_MODE_SPEC && out.infer.radii_count == 1 && out.infer.radii[0] == 1, "mode/radii");
  msg_buf_free(&buf);
}

/* ---- golden byte vectors ---------------------------------------------------------------------- */
static void s_write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f) return;
  CHECK(fwrite(data, 1, n, f) == n, "short write to %s", path);
  fclose(f);
}

static void test_golden_bytes(void) {
  static const msg_type_t golden[] = {MSG_HELLO, MSG_LEASE, MSG_RESULT, MSG_INFER, MSG_ACTION, MSG_ACK};
  bool write = getenv("RSD_WRITE_GOLDEN") != NULL;
  for (size_t g = 0; g < sizeof golden / sizeof golden[0]; g++) {
    msg_t m;
    msg_sample(golden[g], &m);
    msg_buf_t buf = s_encode(&m);
    char hex[2 * MSG_MAX_HEADER_BYTES + 2];
    size_t o = 0;
    for (size_t i = 0; i < buf.size; i++) o += (size_t)snprintf(hex + o, sizeof hex - o, "%02x", buf.data[i]);
    hex[o++] = '\n';
    hex[o] = '\0';
    char path[512];
    snprintf(path, sizeof path, "%s/%s.hex", s_testdata, msg_type_name(golden[g]));
    if (write) {
      s_write_file(path, hex, o);
    } else {
      char want[sizeof hex] = "";
      FILE *f = fopen(path, "r");
      CHECK(f != NULL, "golden file %s missing (RSD_WRITE_GOLDEN=1 writes it)", path);
      if (f) {
        size_t n = fread(want, 1, sizeof want - 1, f);
        want[n] = '\0';
        fclose(f);
      }
      CHECK(strcmp(hex, want) == 0, "%s: encoded bytes differ from %s: the wire format changed\n got  %s want %s",
            msg_type_name(golden[g]), path, hex, want);
    }
    msg_buf_free(&buf);
  }
}

/* The fuzz target reads: byte 0 = number of payload frames n, then n little-endian u16 sizes, then the
 * header, then the payload bytes. Seeds are the samples in that layout. */
static void write_fuzz_corpus(void) {
  for (int t = 0; t < MSG_TYPE_COUNT_; t++) {
    msg_t m;
    msg_sample((msg_type_t)t, &m);
    msg_buf_t buf = s_encode(&m);
    static uint8_t seed[MSG_MAX_HEADER_BYTES + 65536];
    size_t o = 0;
    seed[o++] = (uint8_t)m.nframes;
    for (uint32_t i = 0; i < m.nframes; i++) {
      seed[o++] = (uint8_t)(m.frames[i].size & 0xff);
      seed[o++] = (uint8_t)(m.frames[i].size >> 8);
    }
    memcpy(seed + o, buf.data, buf.size);
    o += buf.size;
    for (uint32_t i = 0; i < m.nframes; i++) {
      memcpy(seed + o, m.frames[i].data, m.frames[i].size);
      o += m.frames[i].size;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/../fuzz_corpus/%s", s_testdata, msg_type_name((msg_type_t)t));
    s_write_file(path, seed, o);
    msg_buf_free(&buf);
  }
}

/* ---- rejection paths ------------------------------------------------------------------------ */

/* Re-packs the encoded sample of `type` with key `drop` (nullable) removed and `extra` (nullable)
 * appending `nextra` entries. Returns the bytes in *sb (caller destroys). */
typedef void (*s_extra_fn)(msgpack_packer *pk);
static void s_repack(const msg_t *m, const char *drop, s_extra_fn extra, uint32_t nextra, msgpack_sbuffer *sb) {
  msg_buf_t buf = s_encode(m);
  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  msgpack_unpack_next(&up, (const char *)buf.data, buf.size, &off);
  msgpack_sbuffer_init(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  const msgpack_object_map *map = &up.data.via.map;
  uint32_t keep = 0;
  for (uint32_t i = 0; i < map->size; i++)
    keep += !(drop && map->ptr[i].key.via.str.size == strlen(drop) &&
              memcmp(map->ptr[i].key.via.str.ptr, drop, strlen(drop)) == 0);
  msgpack_pack_map(&pk, keep + nextra);
  for (uint32_t i = 0; i < map->size; i++) {
    const msgpack_object_kv *kv = &map->ptr[i];
    if (drop && kv->key.via.str.size == strlen(drop) && memcmp(kv->key.via.str.ptr, drop, strlen(drop)) == 0)
      continue;
    msgpack_pack_object(&pk, kv->key);
    msgpack_pack_object(&pk, kv->val);
  }
  if (extra) extra(&pk);
  msgpack_unpacked_destroy(&up);
  msg_buf_free(&buf);
}

static void s_key(msgpack_packer *pk, const char *k) {
  msgpack_pack_str(pk, strlen(k));
  msgpack_pack_str_body(pk, k, strlen(k));
}

/* Expects decoding the re-packed sample to fail with `code` and a text containing `needle`. */
static void s_expect(msg_type_t type, const char *drop, s_extra_fn extra, uint32_t nextra, msg_err_t code,
                     const char *needle, const char *what) {
  msg_t m, out;
  msg_sample(type, &m);
  msgpack_sbuffer sb;
  s_repack(&m, drop, extra, nextra, &sb);
  msg_error_t err = {0};
  msg_err_t rc = s_decode_with(&m, (const uint8_t *)sb.data, sb.size, &out, &err);
  CHECK(rc == code, "%s: got %d (%s), want %d (%s): %s", what, rc, msg_strerror(rc), code, msg_strerror(code), err.text);
  CHECK(strstr(err.text, needle) != NULL, "%s: error text '%s' does not mention '%s'", what, err.text, needle);
  msgpack_sbuffer_destroy(&sb);
}

static void x_task_string(msgpack_packer *pk) { s_key(pk, "task"); s_key(pk, "3"); }
static void x_task_negative(msgpack_packer *pk) { s_key(pk, "task"); msgpack_pack_int64(pk, -1); }
static void x_task_float(msgpack_packer *pk) { s_key(pk, "task"); msgpack_pack_double(pk, 3.0); }
static void x_task_big(msgpack_packer *pk) { s_key(pk, "task"); msgpack_pack_uint32(pk, 10000); }
static void x_mode_bad(msgpack_packer *pk) { s_key(pk, "mode"); s_key(pk, "fast"); }
static void x_v2(msgpack_packer *pk) { s_key(pk, "v"); msgpack_pack_uint32(pk, 2); }
static void x_type_bad(msgpack_packer *pk) { s_key(pk, "type"); s_key(pk, "TELEPORT"); }
static void x_dup_step(msgpack_packer *pk) { s_key(pk, "step"); msgpack_pack_uint32(pk, 1); }
static void x_unknown_key(msgpack_packer *pk) { s_key(pk, "added_in_v1_7"); msgpack_pack_uint32(pk, 5); }
static void x_unknown_twice(msgpack_packer *pk) { x_unknown_key(pk); x_unknown_key(pk); }
static void x_empty_key(msgpack_packer *pk) { s_key(pk, ""); msgpack_pack_uint32(pk, 5); }
static void x_empty_key_twice(msgpack_packer *pk) { x_empty_key(pk); x_empty_key(pk); }
static void x_bad_utf8(msgpack_packer *pk) { s_key(pk, "instruction"); s_key(pk, "pick \xc3("); }
static void x_nil(msgpack_packer *pk) { s_key(pk, "deadline_ms"); msgpack_pack_nil(pk); }
static void x_bin(msgpack_packer *pk) { s_key(pk, "instruction"); msgpack_pack_bin(pk, 3); msgpack_pack_bin_body(pk, "abc", 3); }
static void x_int_key(msgpack_packer *pk) { msgpack_pack_uint32(pk, 1); msgpack_pack_uint32(pk, 2); }
static void x_deep(msgpack_packer *pk) {
  s_key(pk, "nest");
  for (int i = 0; i < 4; i++) msgpack_pack_array(pk, 1);
  msgpack_pack_uint32(pk, 1);
}
static void x_long_instruction(msgpack_packer *pk) {
  char s[MSG_TEXT_MAX + 1];
  memset(s, 'a', sizeof s);
  s_key(pk, "instruction");
  msgpack_pack_str(pk, sizeof s);
  msgpack_pack_str_body(pk, s, sizeof s);
}
static void x_radii_wide(msgpack_packer *pk) {
  s_key(pk, "radii");
  msgpack_pack_array(pk, 2);
  msgpack_pack_uint32(pk, 1);
  msgpack_pack_uint64(pk, 1ull << 33);
}
/* frames: describe the sample's three frames but the first one a byte larger than sent */
static void s_pack_desc(msgpack_packer *pk, const char *name, const char *dtype, int rank, const uint32_t *shape) {
  msgpack_pack_map(pk, 3);
  s_key(pk, "name"); s_key(pk, name);
  s_key(pk, "dtype"); s_key(pk, dtype);
  s_key(pk, "shape");
  msgpack_pack_array(pk, (size_t)rank);
  for (int d = 0; d < rank; d++) msgpack_pack_uint32(pk, shape[d]);
}
static void x_frames_mismatch(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 3);
  s_pack_desc(pk, "agentview", "u8", 3, (const uint32_t[]){4, 6, 4});
  s_pack_desc(pk, "eye_in_hand", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "proprio", "f32", 1, (const uint32_t[]){8});
}
static void x_frames_two(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 2);
  s_pack_desc(pk, "agentview", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "eye_in_hand", "u8", 3, (const uint32_t[]){4, 6, 3});
}
static void x_frames_dtype(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 3);
  s_pack_desc(pk, "agentview", "u9", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "eye_in_hand", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "proprio", "f32", 1, (const uint32_t[]){8});
}
static void x_frames_zero_dim(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 3);
  s_pack_desc(pk, "agentview", "u8", 3, (const uint32_t[]){4, 0, 3});
  s_pack_desc(pk, "eye_in_hand", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "proprio", "f32", 1, (const uint32_t[]){8});
}
static void x_frames_huge(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 3);
  s_pack_desc(pk, "agentview", "f64", 4, (const uint32_t[]){65536, 65536, 65536, 65536});
  s_pack_desc(pk, "eye_in_hand", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "proprio", "f32", 1, (const uint32_t[]){8});
}
static void x_frames_same_name(msgpack_packer *pk) {
  s_key(pk, "frames");
  msgpack_pack_array(pk, 3);
  s_pack_desc(pk, "agentview", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "agentview", "u8", 3, (const uint32_t[]){4, 6, 3});
  s_pack_desc(pk, "proprio", "f32", 1, (const uint32_t[]){8});
}

static void test_field_rejections(void) {
  s_expect(MSG_INFER, "task", x_task_string, 1, MSG_ERR_WRONG_TYPE, "INFER.task: expected unsigned integer, got string", "string for uint");
  s_expect(MSG_INFER, "task", x_task_negative, 1, MSG_ERR_RANGE, "INFER.task: -1 is negative", "negative uint");
  s_expect(MSG_INFER, "task", x_task_float, 1, MSG_ERR_WRONG_TYPE, "got float", "float for uint");
  s_expect(MSG_INFER, "task", x_task_big, 1, MSG_ERR_RANGE, "INFER.task: 10000 is out of range [0, 9999]", "range");
  s_expect(MSG_INFER, "mode", x_mode_bad, 1, MSG_ERR_RANGE, "'fast' is not one of 'ar', 'spec', 'spec-relaxed'", "enum");
  s_expect(MSG_INFER, "instruction", x_long_instruction, 1, MSG_ERR_RANGE, "INFER.instruction: string of 1025 bytes", "long string");
  s_expect(MSG_INFER, "radii", x_radii_wide, 1, MSG_ERR_RANGE, "INFER.radii[1]: 8589934592 does not fit 32 bits", "u32 array item");
  s_expect(MSG_INFER, "step", NULL, 0, MSG_ERR_MISSING, "INFER.step: required field missing", "missing field");
  s_expect(MSG_INFER, "v", NULL, 0, MSG_ERR_MISSING, "'v'", "missing version");
  s_expect(MSG_INFER, "id", NULL, 0, MSG_ERR_MISSING, "INFER: required key 'id'", "missing id");
  s_expect(MSG_INFER, "v", x_v2, 1, MSG_ERR_VERSION, "peer speaks protocol version 2, this side speaks 1", "other major version");
  s_expect(MSG_INFER, "type", x_type_bad, 1, MSG_ERR_UNKNOWN_TYPE, "'TELEPORT'", "unknown type");
  s_expect(MSG_INFER, NULL, x_dup_step, 1, MSG_ERR_DUPLICATE, "header: key 'step' appears twice", "duplicate field");
  s_expect(MSG_INFER, "instruction", x_bad_utf8, 1, MSG_ERR_RANGE, "INFER.instruction: string 'pick \\xc3(' is not valid UTF-8", "bad UTF-8");
  s_expect(MSG_HELLO, "model_hash", NULL, 0, MSG_ERR_MISSING, "HELLO.model_hash: required when role is 'gpu'", "gpu HELLO");
  s_expect(MSG_INFER, NULL, x_v2, 1, MSG_ERR_DUPLICATE, "'v' appears twice", "duplicate v");
  s_expect(MSG_INFER, NULL, x_nil, 1, MSG_ERR_MALFORMED, "nil", "nil value");
  s_expect(MSG_INFER, "instruction", x_bin, 1, MSG_ERR_MALFORMED, "bin", "bin value");
  s_expect(MSG_INFER, NULL, x_int_key, 1, MSG_ERR_MALFORMED, "not a string", "integer key");
  s_expect(MSG_INFER, NULL, x_deep, 1, MSG_ERR_TOO_DEEP, "nested 5 deep, limit 4", "nesting");
  s_expect(MSG_INFER, "frames", x_frames_mismatch, 1, MSG_ERR_PAYLOAD, "'agentview': shape 4x6x4 u8 needs 96 bytes, frame has 72", "shape/size");
  s_expect(MSG_INFER, "frames", x_frames_two, 1, MSG_ERR_PAYLOAD, "describes 2 payload frames, message carries 3", "frame count");
  s_expect(MSG_INFER, "frames", NULL, 0, MSG_ERR_PAYLOAD, "describes 0 payload frames", "frames missing");
  s_expect(MSG_INFER, "frames", x_frames_dtype, 1, MSG_ERR_RANGE, "'u9' is not one of", "dtype");
  s_expect(MSG_INFER, "frames", x_frames_zero_dim, 1, MSG_ERR_RANGE, "frames[0].shape[1]: 0 is outside", "zero dim");
  s_expect(MSG_INFER, "frames", x_frames_huge, 1, MSG_ERR_TOO_LARGE, "exceeds the 67108864-byte frame limit", "overflowing shape");
  s_expect(MSG_INFER, "frames", x_frames_same_name, 1, MSG_ERR_DUPLICATE, "name 'agentview' used by frames 0 and 1", "frame names");

  /* Unknown keys are ignored: a later minor version may add optional fields. */
  msg_t m, out;
  msg_sample(MSG_INFER, &m);
  msgpack_sbuffer sb;
  s_repack(&m, NULL, x_unknown_key, 1, &sb);
  msg_error_t err = {0};
  CHECK(s_decode_with(&m, (const uint8_t *)sb.data, sb.size, &out, &err) == MSG_OK, "unknown key refused: %s", err.text);
  CHECK(memcmp(&m, &out, sizeof m) == 0, "unknown key changed the decoded message");
  msgpack_sbuffer_destroy(&sb);
  s_expect(MSG_INFER, NULL, x_unknown_twice, 2, MSG_ERR_DUPLICATE, "key 'added_in_v1_7' appears twice", "unknown key twice");
  /* an empty key has no bytes to compare (found by the fuzzer: memcmp on a NULL pointer) */
  s_expect(MSG_INFER, NULL, x_empty_key_twice, 2, MSG_ERR_DUPLICATE, "key '' appears twice", "empty key twice");
}

static void test_byte_level_rejections(void) {
  msg_t m, out;
  msg_error_t err = {0};
  msg_sample(MSG_LEASE, &m);
  msg_buf_t buf = s_encode(&m);

  /* Every strict prefix of a valid header is refused as truncated, never read past its end. */
  size_t truncated = 0;
  for (size_t n = 1; n < buf.size; n++) {
    uint8_t *copy = malloc(n); /* exact size, so ASan sees any overread */
    memcpy(copy, buf.data, n);
    truncated += msg_decode(copy, n, NULL, 0, &out, &err) == MSG_ERR_TRUNCATED;
    free(copy);
  }
  CHECK(truncated == buf.size - 1, "%zu of %zu prefixes refused as truncated", truncated, buf.size - 1);
  CHECK(msg_decode(buf.data, 0, NULL, 0, &out, &err) == MSG_ERR_TRUNCATED, "empty header accepted");

  uint8_t *longer = malloc(buf.size + 1);
  memcpy(longer, buf.data, buf.size);
  longer[buf.size] = 0x00;
  CHECK(msg_decode(longer, buf.size + 1, NULL, 0, &out, &err) == MSG_ERR_TRAILING, "trailing byte: %s", err.text);
  CHECK(strstr(err.text, "1 trailing bytes") != NULL, "trailing text: %s", err.text);
  free(longer);

  /* A map32 / array32 / str32 header claiming far more entries than bytes remain. */
  static const uint8_t map_huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, 'v', 0x01};
  CHECK(msg_decode(map_huge, sizeof map_huge, NULL, 0, &out, &err) == MSG_ERR_TOO_LARGE, "map32: %s", err.text);
  CHECK(strstr(err.text, "map count 4294967295 exceeds the limit of 64") != NULL, "map32 text: %s", err.text);
  static const uint8_t array_huge[] = {0x81, 0xa1, 'x', 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01};
  CHECK(msg_decode(array_huge, sizeof array_huge, NULL, 0, &out, &err) == MSG_ERR_TOO_LARGE, "array32: %s", err.text);
  /* A count under the limits but larger than the bytes that remain. */
  static const uint8_t array_short[] = {0x81, 0xa1, 'x', 0xdc, 0x00, 0x64, 0x01, 0x02};
  CHECK(msg_decode(array_short, sizeof array_short, NULL, 0, &out, &err) == MSG_ERR_TRUNCATED, "array16: %s", err.text);
  CHECK(strstr(err.text, "array count 100 needs at least 100 bytes, 2 left") != NULL, "array16 text: %s", err.text);
  static const uint8_t str_huge[] = {0x81, 0xa1, 'x', 0xdb, 0x00, 0x10, 0x00, 0x00, 'a'};
  CHECK(msg_decode(str_huge, sizeof str_huge, NULL, 0, &out, &err) == MSG_ERR_TOO_LARGE, "str32: %s", err.text);
  static const uint8_t str_short[] = {0x81, 0xa1, 'x', 0xd9, 0x05, 'a'};
  CHECK(msg_decode(str_short, sizeof str_short, NULL, 0, &out, &err) == MSG_ERR_TRUNCATED, "str8: %s", err.text);
  static const uint8_t not_map[] = {0x93, 0x01, 0x02, 0x03};
  CHECK(msg_decode(not_map, sizeof not_map, NULL, 0, &out, &err) == MSG_ERR_WRONG_TYPE, "array header: %s", err.text);
  static const uint8_t never[] = {0x81, 0xa1, 'x', 0xc1};
  CHECK(msg_decode(never, sizeof never, NULL, 0, &out, &err) == MSG_ERR_MALFORMED, "0xc1: %s", err.text);
  static const uint8_t ext[] = {0x81, 0xa1, 'x', 0xd4, 0x01, 0x02};
  CHECK(msg_decode(ext, sizeof ext, NULL, 0, &out, &err) == MSG_ERR_MALFORMED, "ext: %s", err.text);

  /* Size limits that come before parsing. */
  static uint8_t big[MSG_MAX_HEADER_BYTES + 1];
  big[0] = 0x80;
  CHECK(msg_decode(big, sizeof big, NULL, 0, &out, &err) == MSG_ERR_TOO_LARGE, "oversized header: %s", err.text);
  msg_span_t many[MSG_MAX_FRAMES + 1] = {{0}};
  CHECK(msg_decode(buf.data, buf.size, many, MSG_MAX_FRAMES + 1, &out, &err) == MSG_ERR_TOO_LARGE, "9 frames");
  msg_buf_free(&buf);

  /* The type and id of a refused message are kept, so the reply can name them. */
  msg_sample(MSG_INFER, &m);
  msgpack_sbuffer sb;
  s_repack(&m, "step", NULL, 0, &sb);
  CHECK(s_decode_with(&m, (const uint8_t *)sb.data, sb.size, &out, &err) == MSG_ERR_MISSING, "missing step");
  CHECK(out.type == MSG_INFER && out.id == m.id, "refused message lost its type/id (%d, %llu)", (int)out.type,
        (unsigned long long)out.id);
  msgpack_sbuffer_destroy(&sb);
}

static void test_type_rules(void) {
  msg_t m, out;
  msg_error_t err = {0};
  /* ACTION allows at most two payload frames. */
  msg_sample(MSG_ACTION, &m);
  uint32_t one = 4;
  static const float extra[4];
  CHECK(msg_add_frame(&m, "extra", MSG_DTYPE_F32, 1, &one, extra, sizeof extra, &err) == MSG_OK, "%s", err.text);
  msg_buf_t buf = {0};
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_PAYLOAD, "encoder let ACTION carry 3 frames");
  CHECK(strstr(err.text, "ACTION: 3 payload frames, allowed 1..2") != NULL, "text: %s", err.text);

  /* LEASE with policy "model" needs mode, model and unnorm_key. */
  msg_sample(MSG_LEASE, &m);
  m.lease.has_unnorm_key = false;
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_MISSING, "LEASE without unnorm_key encoded");
  CHECK(strstr(err.text, "LEASE.unnorm_key: required when policy is 'model'") != NULL, "text: %s", err.text);
  m.lease.policy = MSG_POLICY_EXPERT;
  m.lease.has_mode = m.lease.has_model = false;
  CHECK(msg_encode(&m, &buf, &err) == MSG_OK, "expert LEASE refused: %s", err.text);
  CHECK(msg_decode(buf.data, buf.size, NULL, 0, &out, &err) == MSG_OK, "expert LEASE: %s", err.text);
  CHECK(out.lease.policy == MSG_POLICY_EXPERT && !out.lease.has_mode, "expert LEASE decoded wrong");

  /* The encoder refuses what the decoder would refuse. */
  msg_sample(MSG_INFER, &m);
  m.infer.task = 10000;
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_RANGE, "encoder sent task 10000");
  msg_sample(MSG_INFER, &m);
  m.infer.instruction[0] = '\0';
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_RANGE, "encoder sent an empty instruction");
  msg_sample(MSG_HELLO, &m);
  m.hello.role = (msg_role_t)7;
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_RANGE, "encoder sent role 7");
  msg_init(&m, (msg_type_t)99, 1);
  CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_UNKNOWN_TYPE, "encoder sent type 99");
  msg_init(&m, MSG_INFER, 1);
  uint32_t shape[3] = {4, 6, 3};
  CHECK(msg_add_frame(&m, "img", MSG_DTYPE_U8, 3, shape, extra, 71, &err) == MSG_ERR_PAYLOAD, "71 bytes for 72");
  CHECK(msg_add_frame(&m, "this-name-is-longer-than-32-bytes!", MSG_DTYPE_U8, 3, shape, extra, 72, &err) ==
            MSG_ERR_RANGE, "long frame name");
  CHECK(m.nframes == 0, "refused frames were added");
  msg_buf_free(&buf);

  /* Multi-byte UTF-8 is fine. */
  msg_sample(MSG_INFER, &m);
  snprintf(m.infer.instruction, sizeof m.infer.instruction, "%s", "put the caf\xc3\xa9 bowl \xe2\x89\xa4 2 cm from \xf0\x9f\x8d\x9c");
  CHECK(msg_encode(&m, &buf, &err) == MSG_OK, "UTF-8 instruction refused: %s", err.text);
  msg_span_t spans[MSG_MAX_FRAMES];
  s_spans(&m, spans);
  CHECK(msg_decode(buf.data, buf.size, spans, m.nframes, &out, &err) == MSG_OK && strcmp(out.infer.instruction, m.infer.instruction) == 0,
        "UTF-8 instruction did not survive: %s", err.text);
  static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "ab\xe2\x89", "\x80"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(m.infer.instruction, sizeof m.infer.instruction, "%s", bad[i]);
    CHECK(msg_encode(&m, &buf, &err) == MSG_ERR_RANGE, "invalid UTF-8 #%zu accepted", i);
  }
  msg_buf_free(&buf);

  CHECK(strcmp(msg_strerror(MSG_ERR_VERSION), "unsupported major protocol version") == 0, "strerror");
  CHECK(msg_dtype_size(MSG_DTYPE_F64) == 8 && msg_dtype_size(MSG_DTYPE_I16) == 2, "dtype sizes");
}

/* SHA-256 against FIPS 180-4's examples, fed whole and in odd pieces (the block boundary is crossed). */
static void test_sha256(void) {
  const char *two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  struct {
    const char *in, *hex;
  } v[] = {
      {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
      {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
      {two_blocks, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char hex[65];
    msg_sha256_t s;
    msg_sha256_init(&s);
    size_t n = strlen(v[i].in);
    for (size_t at = 0; at < n; at += 7) msg_sha256_update(&s, v[i].in + at, n - at < 7 ? n - at : 7);
    msg_sha256_hex(&s, hex);
    CHECK(strcmp(hex, v[i].hex) == 0, "sha256('%s') = %s, want %s", v[i].in, hex, v[i].hex);
  }
}

/* Routing ids as table keys: lowercase hex, two digits a byte, 0 bytes and 255 bytes included. */
static void test_route_key(void) {
  char key[MSG_ROUTE_KEY_MAX + 1];
  zframe_t *f = zframe_new("\x00\xab\x7f", 3);
  msg_route_key(f, key);
  CHECK(strcmp(key, "00ab7f") == 0, "route key '%s'", key);
  zframe_destroy(&f);
  uint8_t big[255];
  memset(big, 0xff, sizeof big);
  f = zframe_new(big, sizeof big);
  msg_route_key(f, key);
  CHECK(strlen(key) == 510 && key[0] == 'f' && key[509] == 'f', "255-byte route key of %zu chars", strlen(key));
  zframe_destroy(&f);
}

int main(int argc, char **argv) {
  s_testdata = argc > 1 ? argv[1] : "msg/testdata"; /* .../msg/testdata */
  test_round_trip_every_type();
  test_payload_frames_survive();
  test_golden_bytes();
  test_field_rejections();
  test_byte_level_rejections();
  test_type_rules();
  test_sha256();
  test_route_key();
  if (getenv("RSD_WRITE_GOLDEN")) write_fuzz_corpus();
  return check_summary("msg_test");
}
