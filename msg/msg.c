/* msg.c: the codec. Encodes msg_t into a msgpack header frame and decodes untrusted header bytes and
 * payload frames back, validating everything msg_fields.h says about each field.
 *
 * Decoding happens in three steps, so that hostile bytes never reach an allocation they control:
 *   1. s_walk: a pre-walk over the raw bytes. Checks nesting depth, that every string, array and map
 *      count fits in the bytes that remain (msgpack-c's unpacker would otherwise allocate count x 24
 *      bytes up front), the size limits, the msgpack types we use, and that exactly one object fills
 *      the frame (no trailing bytes).
 *   2. msgpack_unpack_next: msgpack-c builds the object tree, now bounded by the frame size.
 *   3. s_decode_fields: every field by the tables generated from msg_fields.h: exact msgpack types,
 *      ranges, required fields, duplicates; then the payload frames against their descriptions.
 * The encoder runs the same per-field checks, so rsd never sends what it would refuse.
 * Sockets live in msg_sock.c, not here. */
#include "msg.h"

#include <math.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Payload frames travel as the sender's memory; the protocol says little-endian, and so must we be. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "rsd's wire format assumes a little-endian host");
_Static_assert(sizeof(msg_role_t) == sizeof(int), "enum fields are stored as int");

/* ---- names ---------------------------------------------------------------------------------- */
#define S_NAME_(c, s) s,
const char *const msg_role_names[] = {MSG_ROLES(S_NAME_) NULL};
const char *const msg_policy_names[] = {MSG_POLICIES(S_NAME_) NULL};
const char *const msg_mode_names[] = {MSG_MODES(S_NAME_) NULL};
const char *const msg_outcome_names[] = {MSG_OUTCOMES(S_NAME_) NULL};
const char *const msg_ack_status_names[] = {MSG_ACK_STATUSES(S_NAME_) NULL};
const char *const msg_dtype_names[] = {MSG_DTYPES(S_NAME_) NULL};
#undef S_NAME_

const char *msg_strerror(msg_err_t code) {
  switch (code) {
    case MSG_OK:
      return "ok";
#define S_CASE_(name, num, text) \
  case MSG_ERR_##name:           \
    return text;
    MSG_ERRORS(S_CASE_)
#undef S_CASE_
  }
  return "unknown error code";
}

size_t msg_dtype_size(msg_dtype_t dtype) {
  switch (dtype) {
    case MSG_DTYPE_U8: return 1;
    case MSG_DTYPE_I16: return 2;
    case MSG_DTYPE_I32: return 4;
    case MSG_DTYPE_F32: return 4;
    case MSG_DTYPE_F64: return 8;
    case MSG_DTYPE_COUNT_: break;
  }
  return 0;
}

/* Sets err (nullable) and returns code. */
static msg_err_t s_fail(msg_error_t *err, msg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static msg_err_t s_fail(msg_error_t *err, msg_err_t code, const char *fmt, ...) {
  if (err) {
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}

/* ---- field tables, generated from msg_fields.h -------------------------------------------- */
typedef enum { K_U32, K_U64, K_F64, K_BOOL, K_STR, K_ENUM, K_U32S, K_U64S } s_kind_t;

typedef struct {
  const char *key;
  uint32_t keylen;            /* strlen(key), for a cheap first comparison */
  s_kind_t kind;
  bool required;
  uint64_t lo, hi;            /* integers: value range; STR: length range; arrays: count range */
  double flo, fhi;            /* F64 value range */
  size_t offset;              /* of the value within the body struct */
  size_t has_offset;          /* of has_<name>, or SIZE_MAX for required fields */
  size_t count_offset;        /* arrays: of <name>_count */
  const char *const *names;   /* ENUM: NULL-terminated wire names */
} s_field_t;

#define S_REQ_REQ true
#define S_REQ_OPT false
#define S_HAS_REQ(T, n) SIZE_MAX
#define S_HAS_OPT(T, n) offsetof(T, has_##n)
#define S_CNT_U32(T, n) 0
#define S_CNT_U64(T, n) 0
#define S_CNT_F64(T, n) 0
#define S_CNT_BOOL(T, n) 0
#define S_CNT_STR(T, n) 0
#define S_CNT_ENUM(T, n) 0
#define S_CNT_U32S(T, n) offsetof(T, n##_count)
#define S_CNT_U64S(T, n) offsetof(T, n##_count)
#define S_NAMES_U32(en) NULL
#define S_NAMES_U64(en) NULL
#define S_NAMES_F64(en) NULL
#define S_NAMES_BOOL(en) NULL
#define S_NAMES_STR(en) NULL
#define S_NAMES_ENUM(en) en##_names
#define S_NAMES_U32S(en) NULL
#define S_NAMES_U64S(en) NULL
#define S_FIELD_(kind, n, key, req, lo, hi, en)                                                  \
  {key, sizeof(key) - 1, K_##kind, S_REQ_##req, (uint64_t)(lo), (uint64_t)(hi), (double)(lo), (double)(hi),        \
   offsetof(S_T, n), S_HAS_##req(S_T, n), S_CNT_##kind(S_T, n), S_NAMES_##kind(en)},

/* One function per message type returns its field table; S_T is the body type inside it. */
#define S_TABLE_(C, c, wire, pmin, pmax)                                \
  static const s_field_t *s_fields_##c(size_t *count) {                 \
    typedef msg_##c##_body_t S_T;                                            \
    static const s_field_t table[] = {MSG_FIELDS_##C(S_FIELD_)};        \
    *count = sizeof table / sizeof table[0];                            \
    return table;                                                       \
  }
MSG_TYPES(S_TABLE_)
#undef S_TABLE_

typedef struct {
  const char *wire;
  uint32_t pmin, pmax; /* payload frames allowed */
  const s_field_t *(*fields)(size_t *count);
} s_type_t;

static const s_type_t s_types[MSG_TYPE_COUNT_] = {
#define S_TYPE_(C, c, wire, pmin, pmax) {wire, pmin, pmax, s_fields_##c},
    MSG_TYPES(S_TYPE_)
#undef S_TYPE_
};

const char *msg_type_name(msg_type_t type) {
  return (unsigned)type < MSG_TYPE_COUNT_ ? s_types[type].wire : NULL;
}

/* All bodies share the union's address, so field offsets are relative to it. */
static char *s_body(msg_t *m) { return (char *)&m->hello; }
static const char *s_cbody(const msg_t *m) { return (const char *)&m->hello; }

static uint32_t s_count_names(const char *const *names) {
  uint32_t n = 0;
  while (names[n]) n++;
  return n;
}

/* Writes "a", "b", "c" into out (for error messages listing allowed values). */
static void s_join_names(const char *const *names, char *out, size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (uint32_t i = 0; names[i] && used < cap; i++) {
    int n = snprintf(out + used, cap - used, "%s'%s'", i ? ", " : "", names[i]);
    if (n < 0) break;
    used += (size_t)n;
  }
}

static int s_find_name(const char *const *names, const char *s, size_t len) {
  for (int i = 0; names[i]; i++) {
    if (strlen(names[i]) == len && (len == 0 || memcmp(names[i], s, len) == 0)) return i;
  }
  return -1;
}

/* Copies up to 40 bytes of a string value into out, escaped, for error messages. */
static void s_quote(const char *s, size_t len, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 5 < cap; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (i == 40) {
      o += (size_t)snprintf(out + o, cap - o, "...");
      break;
    }
    if (ch >= 0x20 && ch < 0x7f && ch != '\'')
      out[o++] = (char)ch;
    else
      o += (size_t)snprintf(out + o, cap - o, "\\x%02x", ch);
  }
  out[o < cap ? o : cap - 1] = '\0';
}

/* ---- value checks shared by encoder and decoder --------------------------------------------- */
static msg_err_t s_check_uint(const char *tname, const s_field_t *f, uint64_t v, msg_error_t *err) {
  if (v < f->lo || v > f->hi)
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: %llu is out of range [%llu, %llu]", tname, f->key,
                  (unsigned long long)v, (unsigned long long)f->lo, (unsigned long long)f->hi);
  return MSG_OK;
}

static msg_err_t s_check_f64(const char *tname, const s_field_t *f, double v, msg_error_t *err) {
  if (!isfinite(v) || v < f->flo || v > f->fhi)
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: %g is out of range [%g, %g]", tname, f->key, v, f->flo,
                  f->fhi);
  return MSG_OK;
}

/* True when s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
static bool s_utf8_valid(const char *str, size_t len) {
  const unsigned char *s = (const unsigned char *)str;
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) { i++; continue; }
    size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;
    if (n == 0 || c > 0xf4 || len - i <= n) return false; /* bad lead byte or cut short */
    for (size_t k = 1; k <= n; k++)
      if ((s[i + k] & 0xc0) != 0x80) return false;
    if (c == 0xe0 && s[i + 1] < 0xa0) return false; /* overlong */
    if (c == 0xed && s[i + 1] > 0x9f) return false; /* surrogate */
    if (c == 0xf0 && s[i + 1] < 0x90) return false; /* overlong */
    if (c == 0xf4 && s[i + 1] > 0x8f) return false; /* > U+10FFFF */
    i += n + 1;
  }
  return true;
}

static msg_err_t s_check_str(const char *tname, const s_field_t *f, const char *s, size_t len,
                             msg_error_t *err) {
  char q[200];
  if (len < f->lo || len > f->hi) {
    s_quote(s, len, q, sizeof q);
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: string of %zu bytes ('%s') is outside [%llu, %llu] bytes",
                  tname, f->key, len, q, (unsigned long long)f->lo, (unsigned long long)f->hi);
  }
  if (memchr(s, '\0', len)) {
    s_quote(s, len, q, sizeof q);
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: string '%s' contains a NUL byte", tname, f->key, q);
  }
  if (!s_utf8_valid(s, len)) {
    s_quote(s, len, q, sizeof q);
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: string '%s' is not valid UTF-8", tname, f->key, q);
  }
  return MSG_OK;
}

static msg_err_t s_check_count(const char *tname, const s_field_t *f, uint64_t n, msg_error_t *err) {
  if (n < f->lo || n > f->hi)
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: array of %llu items is outside [%llu, %llu] items", tname,
                  f->key, (unsigned long long)n, (unsigned long long)f->lo, (unsigned long long)f->hi);
  return MSG_OK;
}

/* ---- encoder ------------------------------------------------------------------------------ */
void msg_buf_free(msg_buf_t *buf) {
  free(buf->data);
  memset(buf, 0, sizeof *buf);
}

/* msgpack writer into a msg_buf_t; a failed allocation is remembered in the writer. */
typedef struct {
  msg_buf_t *buf;
  bool out_of_memory;
} s_writer_t;

static int s_buf_write(void *data, const char *bytes, size_t len) {
  s_writer_t *w = data;
  msg_buf_t *buf = w->buf;
  if (w->out_of_memory) return -1;
  if (buf->size + len > buf->cap) {
    size_t cap = buf->cap ? buf->cap : 512;
    while (cap < buf->size + len) cap *= 2;
    uint8_t *p = realloc(buf->data, cap);
    if (!p) {
      w->out_of_memory = true;
      return -1;
    }
    buf->data = p;
    buf->cap = cap;
  }
  memcpy(buf->data + buf->size, bytes, len);
  buf->size += len;
  return 0;
}

static void s_pack_cstr(msgpack_packer *pk, const char *s) {
  size_t len = strlen(s);
  msgpack_pack_str(pk, len);
  msgpack_pack_str_body(pk, s, len);
}

static bool s_present(const s_field_t *f, const char *body) {
  return f->required || *(const bool *)(body + f->has_offset);
}

/* Validates one field of an outgoing message and packs "key": value. */
static msg_err_t s_encode_field(msgpack_packer *pk, const char *tname, const s_field_t *f,
                                const char *body, msg_error_t *err) {
  const char *v = body + f->offset;
  msg_err_t rc = MSG_OK;
  msgpack_pack_str(pk, f->keylen);
  msgpack_pack_str_body(pk, f->key, f->keylen);
  switch (f->kind) {
    case K_U32: {
      uint32_t x;
      memcpy(&x, v, sizeof x);
      if ((rc = s_check_uint(tname, f, x, err))) return rc;
      msgpack_pack_uint32(pk, x);
      break;
    }
    case K_U64: {
      uint64_t x;
      memcpy(&x, v, sizeof x);
      if ((rc = s_check_uint(tname, f, x, err))) return rc;
      msgpack_pack_uint64(pk, x);
      break;
    }
    case K_F64: {
      double x;
      memcpy(&x, v, sizeof x);
      if ((rc = s_check_f64(tname, f, x, err))) return rc;
      msgpack_pack_double(pk, x);
      break;
    }
    case K_BOOL:
      if (*(const bool *)v)
        msgpack_pack_true(pk);
      else
        msgpack_pack_false(pk);
      break;
    case K_STR: {
      size_t len = strnlen(v, f->hi + 1);
      if ((rc = s_check_str(tname, f, v, len, err))) return rc;
      msgpack_pack_str(pk, len);
      msgpack_pack_str_body(pk, v, len);
      break;
    }
    case K_ENUM: {
      int x;
      memcpy(&x, v, sizeof x);
      if (x < 0 || (uint32_t)x >= s_count_names(f->names))
        return s_fail(err, MSG_ERR_RANGE, "%s.%s: enum value %d is not defined", tname, f->key, x);
      s_pack_cstr(pk, f->names[x]);
      break;
    }
    case K_U32S:
    case K_U64S: {
      uint32_t n;
      memcpy(&n, body + f->count_offset, sizeof n);
      if ((rc = s_check_count(tname, f, n, err))) return rc;
      msgpack_pack_array(pk, n);
      for (uint32_t i = 0; i < n; i++) {
        if (f->kind == K_U32S) {
          uint32_t x;
          memcpy(&x, v + i * sizeof x, sizeof x);
          msgpack_pack_uint32(pk, x);
        } else {
          uint64_t x;
          memcpy(&x, v + i * sizeof x, sizeof x);
          msgpack_pack_uint64(pk, x);
        }
      }
      break;
    }
  }
  return MSG_OK;
}

/* Writes "4x6x3" (for error messages only). */
static void s_shape_str(const msg_frame_t *fr, char *out, size_t cap) {
  size_t used = 0;
  out[0] = '\0';
  for (uint32_t d = 0; d < fr->rank && used < cap; d++)
    used += (size_t)snprintf(out + used, cap - used, "%s%u", d ? "x" : "", fr->shape[d]);
}

/* Checks a payload frame description (shared by msg_add_frame, the encoder and the decoder). */
static msg_err_t s_check_frame(const char *tname, uint32_t index, const msg_frame_t *fr, msg_error_t *err) {
  size_t nlen = strnlen(fr->name, sizeof fr->name);
  if (nlen == 0 || nlen > MSG_FRAME_NAME_MAX)
    return s_fail(err, MSG_ERR_RANGE, "%s.frames[%u].name: length %zu is outside [1, %d]", tname, index,
                  nlen, MSG_FRAME_NAME_MAX);
  if ((unsigned)fr->dtype >= MSG_DTYPE_COUNT_)
    return s_fail(err, MSG_ERR_RANGE, "%s.frames[%u] '%s': dtype %d is not defined", tname, index,
                  fr->name, (int)fr->dtype);
  if (fr->rank < 1 || fr->rank > MSG_MAX_RANK)
    return s_fail(err, MSG_ERR_RANGE, "%s.frames[%u] '%s': rank %u is outside [1, %d]", tname, index,
                  fr->name, fr->rank, MSG_MAX_RANK);
  uint64_t need = msg_dtype_size(fr->dtype);
  for (uint32_t d = 0; d < fr->rank; d++) {
    uint32_t dim = fr->shape[d];
    if (dim < 1 || dim > MSG_MAX_DIM)
      return s_fail(err, MSG_ERR_RANGE, "%s.frames[%u] '%s': shape[%u] = %u is outside [1, %u]", tname,
                    index, fr->name, d, dim, MSG_MAX_DIM);
    if (need > MSG_MAX_FRAME_BYTES / dim) { /* also keeps the product from overflowing */
      char shape[64];
      s_shape_str(fr, shape, sizeof shape);
      return s_fail(err, MSG_ERR_TOO_LARGE, "%s.frames[%u] '%s': shape %s exceeds the %u-byte frame limit",
                    tname, index, fr->name, shape, MSG_MAX_FRAME_BYTES);
    }
    need *= dim;
  }
  if (need != fr->size) {
    char shape[64];
    s_shape_str(fr, shape, sizeof shape);
    return s_fail(err, MSG_ERR_PAYLOAD, "%s.frames[%u] '%s': shape %s %s needs %llu bytes, frame has %zu",
                  tname, index, fr->name, shape, msg_dtype_names[fr->dtype], (unsigned long long)need,
                  fr->size);
  }
  return MSG_OK;
}

static msg_err_t s_check_frames(const msg_t *m, msg_error_t *err) {
  const s_type_t *t = &s_types[m->type];
  if (m->nframes < t->pmin || m->nframes > t->pmax)
    return s_fail(err, MSG_ERR_PAYLOAD, "%s: %u payload frames, allowed %u..%u", t->wire, m->nframes, t->pmin,
                  t->pmax);
  for (uint32_t i = 0; i < m->nframes; i++) {
    msg_err_t rc = s_check_frame(t->wire, i, &m->frames[i], err);
    if (rc) return rc;
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(m->frames[j].name, m->frames[i].name) == 0)
        return s_fail(err, MSG_ERR_DUPLICATE, "%s.frames: name '%s' used by frames %u and %u", t->wire,
                      m->frames[i].name, j, i);
  }
  return MSG_OK;
}

/* Rules that span fields (the tables check one field at a time). */
static msg_err_t s_check_cross(const msg_t *m, msg_error_t *err) {
  if (m->type == MSG_HELLO && m->hello.role == MSG_ROLE_GPU) {
    const char *need = !m->hello.has_model ? "model" : !m->hello.has_model_hash ? "model_hash" : NULL;
    if (need) return s_fail(err, MSG_ERR_MISSING, "HELLO.%s: required when role is 'gpu'", need);
  }
  if (m->type == MSG_LEASE && m->lease.policy == MSG_POLICY_MODEL) {
    const char *need = !m->lease.has_mode ? "mode" : !m->lease.has_model ? "model"
                       : !m->lease.has_unnorm_key ? "unnorm_key" : NULL;
    if (need) return s_fail(err, MSG_ERR_MISSING, "LEASE.%s: required when policy is 'model'", need);
  }
  return MSG_OK;
}

void msg_init(msg_t *m, msg_type_t type, uint64_t id) {
  memset(m, 0, sizeof *m);
  m->type = type;
  m->id = id;
}

msg_err_t msg_add_frame(msg_t *m, const char *name, msg_dtype_t dtype, uint32_t rank, const uint32_t *shape,
                        const void *data, size_t size, msg_error_t *err) {
  const char *tname = msg_type_name(m->type) ? msg_type_name(m->type) : "?";
  if (m->nframes >= MSG_MAX_FRAMES)
    return s_fail(err, MSG_ERR_TOO_LARGE, "%s: more than %d payload frames", tname, MSG_MAX_FRAMES);
  if (!name || strlen(name) > MSG_FRAME_NAME_MAX)
    return s_fail(err, MSG_ERR_RANGE, "%s: payload frame name '%.40s' is empty or longer than %d bytes",
                  tname, name ? name : "", MSG_FRAME_NAME_MAX);
  if (rank < 1 || rank > MSG_MAX_RANK)
    return s_fail(err, MSG_ERR_RANGE, "%s: payload frame '%s' has rank %u, allowed 1..%d", tname, name, rank,
                  MSG_MAX_RANK);
  msg_frame_t *fr = &m->frames[m->nframes];
  memset(fr, 0, sizeof *fr);
  strcpy(fr->name, name);
  fr->dtype = dtype;
  fr->rank = rank;
  memcpy(fr->shape, shape, rank * sizeof *shape);
  fr->data = data;
  fr->size = size;
  msg_err_t rc = s_check_frame(tname, m->nframes, fr, err);
  if (rc) return rc;
  m->nframes++;
  return MSG_OK;
}

const msg_frame_t *msg_find_frame(const msg_t *m, const char *name) {
  for (uint32_t i = 0; i < m->nframes; i++)
    if (strcmp(m->frames[i].name, name) == 0) return &m->frames[i];
  return NULL;
}

msg_err_t msg_encode(const msg_t *m, msg_buf_t *buf, msg_error_t *err) {
  if ((unsigned)m->type >= MSG_TYPE_COUNT_)
    return s_fail(err, MSG_ERR_UNKNOWN_TYPE, "message type %d is not defined", (int)m->type);
  const s_type_t *t = &s_types[m->type];
  size_t nfields;
  const s_field_t *fields = t->fields(&nfields);
  const char *body = s_cbody(m);
  msg_err_t rc = s_check_frames(m, err);
  if (rc) return rc;
  if ((rc = s_check_cross(m, err))) return rc;

  uint32_t entries = 3 + (m->nframes ? 1 : 0);
  for (size_t i = 0; i < nfields; i++) entries += s_present(&fields[i], body);

  buf->size = 0;
  s_writer_t writer = {buf, false};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &writer, s_buf_write);
  msgpack_pack_map(&pk, entries);
  s_pack_cstr(&pk, "v");
  msgpack_pack_uint32(&pk, MSG_VERSION_MAJOR);
  s_pack_cstr(&pk, "type");
  s_pack_cstr(&pk, t->wire);
  s_pack_cstr(&pk, "id");
  msgpack_pack_uint64(&pk, m->id);
  for (size_t i = 0; i < nfields; i++) {
    if (!s_present(&fields[i], body)) continue;
    if ((rc = s_encode_field(&pk, t->wire, &fields[i], body, err))) return rc;
  }
  if (m->nframes) {
    s_pack_cstr(&pk, "frames");
    msgpack_pack_array(&pk, m->nframes);
    for (uint32_t i = 0; i < m->nframes; i++) {
      const msg_frame_t *fr = &m->frames[i];
      msgpack_pack_map(&pk, 3);
      s_pack_cstr(&pk, "name");
      s_pack_cstr(&pk, fr->name);
      s_pack_cstr(&pk, "dtype");
      s_pack_cstr(&pk, msg_dtype_names[fr->dtype]);
      s_pack_cstr(&pk, "shape");
      msgpack_pack_array(&pk, fr->rank);
      for (uint32_t d = 0; d < fr->rank; d++) msgpack_pack_uint32(&pk, fr->shape[d]);
    }
  }
  if (buf->size > MSG_MAX_HEADER_BYTES)
    return s_fail(err, MSG_ERR_TOO_LARGE, "%s: header of %zu bytes exceeds %u", t->wire, buf->size,
                  MSG_MAX_HEADER_BYTES);
  if (writer.out_of_memory) return s_fail(err, MSG_ERR_INTERNAL, "%s: out of memory encoding the header", t->wire);
  return MSG_OK;
}

/* ---- decoder step 1: the pre-walk ------------------------------------------------------------ */
typedef struct {
  const uint8_t *p, *end;
} s_walk_t;

static uint64_t s_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = (v << 8) | p[i];
  return v;
}

/* Reads an n-byte big-endian length that follows the type byte. */
static msg_err_t s_walk_len(s_walk_t *w, int n, uint64_t *len, msg_error_t *err) {
  if (w->end - w->p < n)
    return s_fail(err, MSG_ERR_TRUNCATED, "header: %d-byte length needs %td bytes, %td left", n, (ptrdiff_t)n,
                  w->end - w->p);
  *len = s_be(w->p, n);
  w->p += n;
  return MSG_OK;
}

static msg_err_t s_walk_skip(s_walk_t *w, uint64_t n, const char *what, msg_error_t *err) {
  if ((uint64_t)(w->end - w->p) < n)
    return s_fail(err, MSG_ERR_TRUNCATED, "header: %s of %llu bytes but only %td bytes left", what,
                  (unsigned long long)n, w->end - w->p);
  w->p += n;
  return MSG_OK;
}

/* Walks one object at nesting depth `depth` (the header map is depth 1). */
static msg_err_t s_walk(s_walk_t *w, int depth, msg_error_t *err) {
  if (w->p >= w->end) return s_fail(err, MSG_ERR_TRUNCATED, "header: ends where an object should start");
  uint8_t b = *w->p++;
  uint64_t n = 0;
  msg_err_t rc;
  bool is_map = false;
  if (b <= 0x7f || b >= 0xe0 || b == 0xc2 || b == 0xc3) return MSG_OK; /* fixints, bools */
  if ((b >= 0xa0 && b <= 0xbf) || b == 0xd9 || b == 0xda || b == 0xdb) {  /* strings */
    if (b <= 0xbf)
      n = b & 0x1f;
    else if ((rc = s_walk_len(w, 1 << (b - 0xd9), &n, err)))
      return rc;
    if (n > MSG_MAX_STR_BYTES)
      return s_fail(err, MSG_ERR_TOO_LARGE, "header: string of %llu bytes exceeds %u", (unsigned long long)n,
                    MSG_MAX_STR_BYTES);
    return s_walk_skip(w, n, "string", err);
  }
  switch (b) {
    case 0xcc: case 0xd0: return s_walk_skip(w, 1, "integer", err);
    case 0xcd: case 0xd1: return s_walk_skip(w, 2, "integer", err);
    case 0xce: case 0xd2: case 0xca: return s_walk_skip(w, 4, "number", err);
    case 0xcf: case 0xd3: case 0xcb: return s_walk_skip(w, 8, "number", err);
    case 0xc0: return s_fail(err, MSG_ERR_MALFORMED, "header: nil is not used by the protocol (omit the field)");
    case 0xc1: return s_fail(err, MSG_ERR_MALFORMED, "header: byte 0xc1 is never valid msgpack");
    case 0xc4: case 0xc5: case 0xc6:
      return s_fail(err, MSG_ERR_MALFORMED, "header: bin is not used by the protocol (send bytes as a payload frame)");
    case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
      return s_fail(err, MSG_ERR_MALFORMED, "header: msgpack ext type 0x%02x is not used by the protocol", b);
    default: break;
  }
  /* containers */
  if (b >= 0x80 && b <= 0x8f) { is_map = true; n = b & 0x0f; }
  else if (b >= 0x90 && b <= 0x9f) n = b & 0x0f;
  else if (b == 0xdc || b == 0xdd) { if ((rc = s_walk_len(w, b == 0xdc ? 2 : 4, &n, err))) return rc; }
  else if (b == 0xde || b == 0xdf) { is_map = true; if ((rc = s_walk_len(w, b == 0xde ? 2 : 4, &n, err))) return rc; }
  if (depth > MSG_MAX_DEPTH)
    return s_fail(err, MSG_ERR_TOO_DEEP, "header: %s nested %d deep, limit %d", is_map ? "map" : "array", depth,
                  MSG_MAX_DEPTH);
  if (n > (is_map ? (uint64_t)MSG_MAX_MAP_ENTRIES : (uint64_t)MSG_MAX_ARRAY_ITEMS))
    return s_fail(err, MSG_ERR_TOO_LARGE, "header: %s count %llu exceeds the limit of %d", is_map ? "map" : "array",
                  (unsigned long long)n, is_map ? MSG_MAX_MAP_ENTRIES : MSG_MAX_ARRAY_ITEMS);
  /* Every object takes at least one byte: a count the remaining bytes cannot hold is refused before
   * the unpacker would allocate for it. */
  uint64_t left = (uint64_t)(w->end - w->p);
  uint64_t min_bytes = is_map ? 2 * n : n;
  if (min_bytes > left)
    return s_fail(err, MSG_ERR_TRUNCATED, "header: %s count %llu needs at least %llu bytes, %llu left",
                  is_map ? "map" : "array", (unsigned long long)n, (unsigned long long)min_bytes,
                  (unsigned long long)left);
  for (uint64_t i = 0; i < n; i++) {
    if (is_map) {
      if (w->p >= w->end) return s_fail(err, MSG_ERR_TRUNCATED, "header: ends where map key #%llu should start",
                                        (unsigned long long)i);
      uint8_t k = *w->p;
      if (!((k >= 0xa0 && k <= 0xbf) || k == 0xd9 || k == 0xda || k == 0xdb))
        return s_fail(err, MSG_ERR_MALFORMED, "header: map key #%llu is not a string (byte 0x%02x)",
                      (unsigned long long)i, k);
      if ((rc = s_walk(w, depth + 1, err))) return rc;
    }
    if ((rc = s_walk(w, depth + 1, err))) return rc;
  }
  return MSG_OK;
}

/* ---- decoder step 3: fields ---------------------------------------------------------------- */
/* True when the msgpack string k equals s, of length n. */
static bool s_key_eq(const msgpack_object *k, const char *s, uint32_t n) {
  return k->via.str.size == n && memcmp(k->via.str.ptr, s, n) == 0;
}
#define S_KEY_IS(k, literal) s_key_eq((k), literal, sizeof(literal) - 1)

static const char *s_mp_type(const msgpack_object *o) {
  switch (o->type) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return "unsigned integer";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "negative integer";
    case MSGPACK_OBJECT_FLOAT32: case MSGPACK_OBJECT_FLOAT64: return "float";
    case MSGPACK_OBJECT_STR: return "string";
    case MSGPACK_OBJECT_ARRAY: return "array";
    case MSGPACK_OBJECT_MAP: return "map";
    default: return "unsupported";
  }
}

static msg_err_t s_wrong_type(const char *tname, const char *key, const char *want, const msgpack_object *o,
                              msg_error_t *err) {
  return s_fail(err, MSG_ERR_WRONG_TYPE, "%s.%s: expected %s, got %s", tname, key, want, s_mp_type(o));
}

static msg_err_t s_read_uint(const char *tname, const char *key, const msgpack_object *o, uint64_t *out,
                             msg_error_t *err) {
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
    return s_fail(err, MSG_ERR_RANGE, "%s.%s: %lld is negative", tname, key, (long long)o->via.i64);
  if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) return s_wrong_type(tname, key, "unsigned integer", o, err);
  *out = o->via.u64;
  return MSG_OK;
}

static msg_err_t s_decode_field(const char *tname, const s_field_t *f, const msgpack_object *o, char *body,
                                msg_error_t *err) {
  char *v = body + f->offset;
  msg_err_t rc;
  uint64_t u = 0;
  switch (f->kind) {
    case K_U32:
    case K_U64:
      if ((rc = s_read_uint(tname, f->key, o, &u, err)) || (rc = s_check_uint(tname, f, u, err))) return rc;
      if (f->kind == K_U32) {
        uint32_t x = (uint32_t)u;
        memcpy(v, &x, sizeof x);
      } else {
        memcpy(v, &u, sizeof u);
      }
      return MSG_OK;
    case K_F64:
      if (o->type != MSGPACK_OBJECT_FLOAT32 && o->type != MSGPACK_OBJECT_FLOAT64)
        return s_wrong_type(tname, f->key, "float", o, err);
      if ((rc = s_check_f64(tname, f, o->via.f64, err))) return rc;
      memcpy(v, &o->via.f64, sizeof(double));
      return MSG_OK;
    case K_BOOL:
      if (o->type != MSGPACK_OBJECT_BOOLEAN) return s_wrong_type(tname, f->key, "bool", o, err);
      *(bool *)v = o->via.boolean;
      return MSG_OK;
    case K_STR:
      if (o->type != MSGPACK_OBJECT_STR) return s_wrong_type(tname, f->key, "string", o, err);
      if ((rc = s_check_str(tname, f, o->via.str.ptr, o->via.str.size, err))) return rc;
      memcpy(v, o->via.str.ptr, o->via.str.size);
      v[o->via.str.size] = '\0';
      return MSG_OK;
    case K_ENUM: {
      if (o->type != MSGPACK_OBJECT_STR) return s_wrong_type(tname, f->key, "string", o, err);
      int x = s_find_name(f->names, o->via.str.ptr, o->via.str.size);
      if (x < 0) {
        char q[200], allowed[200];
        s_quote(o->via.str.ptr, o->via.str.size, q, sizeof q);
        s_join_names(f->names, allowed, sizeof allowed);
        return s_fail(err, MSG_ERR_RANGE, "%s.%s: '%s' is not one of %s", tname, f->key, q, allowed);
      }
      memcpy(v, &x, sizeof x);
      return MSG_OK;
    }
    case K_U32S:
    case K_U64S: {
      if (o->type != MSGPACK_OBJECT_ARRAY) return s_wrong_type(tname, f->key, "array", o, err);
      uint32_t n = o->via.array.size;
      if ((rc = s_check_count(tname, f, n, err))) return rc;
      for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *item = &o->via.array.ptr[i];
        if (item->type != MSGPACK_OBJECT_POSITIVE_INTEGER || (f->kind == K_U32S && item->via.u64 > MSG_U32_MAX)) {
          char key[80]; /* the error path names the item */
          snprintf(key, sizeof key, "%s[%u]", f->key, i);
          if ((rc = s_read_uint(tname, key, item, &u, err))) return rc;
          return s_fail(err, MSG_ERR_RANGE, "%s.%s: %llu does not fit 32 bits", tname, key, (unsigned long long)u);
        }
        u = item->via.u64;
        if (f->kind == K_U32S) {
          uint32_t x = (uint32_t)u;
          memcpy(v + i * sizeof x, &x, sizeof x);
        } else {
          memcpy(v + i * sizeof u, &u, sizeof u);
        }
      }
      memcpy(body + f->count_offset, &n, sizeof n);
      return MSG_OK;
    }
  }
  return s_fail(err, MSG_ERR_INTERNAL, "%s.%s: field kind %d", tname, f->key, (int)f->kind);
}

/* The common case of one descriptor entry: which = 0 name, 1 dtype, 2 shape, value of the right msgpack
 * type. Stores it and returns true when valid; false sends the caller down the path that names the error. */
static bool s_frame_desc_fast(int which, const msgpack_object *val, msg_frame_t *fr) {
  if (which == 0) {
    uint32_t len = val->via.str.size;
    if (len < 1 || len > MSG_FRAME_NAME_MAX || memchr(val->via.str.ptr, '\0', len)) return false;
    memcpy(fr->name, val->via.str.ptr, len);
    return true;
  }
  if (which == 1) {
    int x = s_find_name(msg_dtype_names, val->via.str.ptr, val->via.str.size);
    if (x < 0) return false;
    fr->dtype = (msg_dtype_t)x;
    return true;
  }
  uint32_t rank = val->via.array.size;
  if (rank < 1 || rank > MSG_MAX_RANK) return false;
  for (uint32_t d = 0; d < rank; d++) {
    const msgpack_object *dim = &val->via.array.ptr[d];
    if (dim->type != MSGPACK_OBJECT_POSITIVE_INTEGER || dim->via.u64 < 1 || dim->via.u64 > MSG_MAX_DIM) return false;
    fr->shape[d] = (uint32_t)dim->via.u64;
  }
  fr->rank = rank;
  return true;
}

/* Reads one payload descriptor {"name", "dtype", "shape"} into fr (size and data come later). */
static msg_err_t s_decode_frame_desc(const char *tname, uint32_t index, const msgpack_object *o, msg_frame_t *fr,
                                     msg_error_t *err) {
  char key[48];
  if (o->type != MSGPACK_OBJECT_MAP) {
    snprintf(key, sizeof key, "frames[%u]", index);
    return s_wrong_type(tname, key, "map", o, err);
  }
  memset(fr, 0, sizeof *fr);
  bool seen[3] = {false, false, false};
  static const char *const keys[3] = {"name", "dtype", "shape"};
  for (uint32_t i = 0; i < o->via.map.size; i++) {
    const msgpack_object *k = &o->via.map.ptr[i].key, *val = &o->via.map.ptr[i].val;
    int which = -1;
    for (int j = 0; j < 3; j++)
      if (s_key_eq(k, keys[j], (uint32_t)strlen(keys[j]))) which = j;
    if (which < 0) continue; /* unknown keys are ignored, as in headers */
    bool ok = which == 2 ? val->type == MSGPACK_OBJECT_ARRAY : val->type == MSGPACK_OBJECT_STR;
    if (ok && !seen[which] && s_frame_desc_fast(which, val, fr)) {
      seen[which] = true;
      continue;
    }
    snprintf(key, sizeof key, "frames[%u].%s", index, keys[which]); /* slow path: find and name the problem */
    if (seen[which]) return s_fail(err, MSG_ERR_DUPLICATE, "%s.%s: key appears twice", tname, key);
    seen[which] = true;
    if (which == 2) {
      if (val->type != MSGPACK_OBJECT_ARRAY) return s_wrong_type(tname, key, "array", val, err);
      if (val->via.array.size < 1 || val->via.array.size > MSG_MAX_RANK)
        return s_fail(err, MSG_ERR_RANGE, "%s.%s: rank %u is outside [1, %d]", tname, key, val->via.array.size,
                      MSG_MAX_RANK);
      fr->rank = val->via.array.size;
      for (uint32_t d = 0; d < fr->rank; d++) {
        uint64_t dim = 0;
        msg_err_t rc = s_read_uint(tname, key, &val->via.array.ptr[d], &dim, err);
        if (rc) return rc;
        if (dim < 1 || dim > MSG_MAX_DIM)
          return s_fail(err, MSG_ERR_RANGE, "%s.%s[%u]: %llu is outside [1, %u]", tname, key, d,
                        (unsigned long long)dim, MSG_MAX_DIM);
        fr->shape[d] = (uint32_t)dim;
      }
      continue;
    }
    if (val->type != MSGPACK_OBJECT_STR) return s_wrong_type(tname, key, "string", val, err);
    char q[200];
    s_quote(val->via.str.ptr, val->via.str.size, q, sizeof q);
    if (which == 0) {
      if (val->via.str.size < 1 || val->via.str.size > MSG_FRAME_NAME_MAX ||
          memchr(val->via.str.ptr, '\0', val->via.str.size))
        return s_fail(err, MSG_ERR_RANGE, "%s.%s: '%s' is not 1..%d bytes without NUL", tname, key, q,
                      MSG_FRAME_NAME_MAX);
      memcpy(fr->name, val->via.str.ptr, val->via.str.size);
    } else {
      int x = s_find_name(msg_dtype_names, val->via.str.ptr, val->via.str.size);
      if (x < 0) {
        char allowed[200];
        s_join_names(msg_dtype_names, allowed, sizeof allowed);
        return s_fail(err, MSG_ERR_RANGE, "%s.%s: '%s' is not one of %s", tname, key, q, allowed);
      }
      fr->dtype = (msg_dtype_t)x;
    }
  }
  for (int j = 0; j < 3; j++)
    if (!seen[j]) return s_fail(err, MSG_ERR_MISSING, "%s.frames[%u].%s: required key missing", tname, index, keys[j]);
  return MSG_OK;
}

static msg_err_t s_decode_map(const msgpack_object *root, const msg_span_t *payloads, size_t npayloads, msg_t *out,
                              msg_error_t *err) {
  const msgpack_object_kv *kv = root->via.map.ptr;
  uint32_t n = root->via.map.size;
  int iv = -1, itype = -1, iid = -1, iframes = -1;
  for (uint32_t i = 0; i < n; i++) {
    const msgpack_object *k = &kv[i].key;
    for (uint32_t j = 0; j < i; j++) { /* any key twice, known or not (maps hold at most 64 keys) */
      const msgpack_object *o = &kv[j].key;
      /* an empty key may carry a NULL pointer: compare bytes only when there are some */
      if (o->via.str.size == k->via.str.size &&
          (k->via.str.size == 0 || memcmp(o->via.str.ptr, k->via.str.ptr, k->via.str.size) == 0)) {
        char q[64];
        s_quote(k->via.str.ptr, k->via.str.size, q, sizeof q);
        return s_fail(err, MSG_ERR_DUPLICATE, "header: key '%s' appears twice", q);
      }
    }
    int *slot = S_KEY_IS(k, "v") ? &iv : S_KEY_IS(k, "type") ? &itype : S_KEY_IS(k, "id") ? &iid
              : S_KEY_IS(k, "frames") ? &iframes : NULL;
    if (slot) *slot = (int)i;
  }
  /* The version comes first: a peer of another major version gets a version error, not a field error. */
  if (iv < 0) return s_fail(err, MSG_ERR_MISSING, "header: required key 'v' (protocol version) missing");
  uint64_t v = 0;
  msg_err_t rc = s_read_uint("header", "v", &kv[iv].val, &v, err);
  if (rc) return rc;
  if (v != MSG_VERSION_MAJOR)
    return s_fail(err, MSG_ERR_VERSION, "header.v: peer speaks protocol version %llu, this side speaks %d",
                  (unsigned long long)v, MSG_VERSION_MAJOR);
  if (itype < 0) return s_fail(err, MSG_ERR_MISSING, "header: required key 'type' missing");
  const msgpack_object *to = &kv[itype].val;
  if (to->type != MSGPACK_OBJECT_STR) return s_wrong_type("header", "type", "string", to, err);
  int type = -1;
  for (int t = 0; t < MSG_TYPE_COUNT_; t++)
    if (strlen(s_types[t].wire) == to->via.str.size && memcmp(s_types[t].wire, to->via.str.ptr, to->via.str.size) == 0)
      type = t;
  if (type < 0) {
    char q[200];
    s_quote(to->via.str.ptr, to->via.str.size, q, sizeof q);
    return s_fail(err, MSG_ERR_UNKNOWN_TYPE, "header.type: '%s' is not a message type of protocol version %d", q,
                  MSG_VERSION_MAJOR);
  }
  out->type = (msg_type_t)type;
  const s_type_t *t = &s_types[type];
  if (iid < 0) return s_fail(err, MSG_ERR_MISSING, "%s: required key 'id' missing", t->wire);
  if ((rc = s_read_uint(t->wire, "id", &kv[iid].val, &out->id, err))) return rc;

  size_t nfields;
  const s_field_t *fields = t->fields(&nfields);
  char *body = s_body(out);
  uint64_t seen = 0; /* bit i: fields[i] was set; tables have fewer than 64 fields */
  for (uint32_t i = 0; i < n; i++) {
    const msgpack_object *k = &kv[i].key;
    for (size_t j = 0; j < nfields; j++) {
      if (!s_key_eq(k, fields[j].key, fields[j].keylen)) continue;
      seen |= 1ull << j;
      if ((rc = s_decode_field(t->wire, &fields[j], &kv[i].val, body, err))) return rc;
      if (!fields[j].required) *(bool *)(body + fields[j].has_offset) = true;
      break;
    } /* keys of no field are ignored: later minor versions add optional fields */
  }
  for (size_t j = 0; j < nfields; j++)
    if (fields[j].required && !(seen & (1ull << j)))
      return s_fail(err, MSG_ERR_MISSING, "%s.%s: required field missing", t->wire, fields[j].key);

  uint32_t ndesc = 0;
  if (iframes >= 0) {
    const msgpack_object *fo = &kv[iframes].val;
    if (fo->type != MSGPACK_OBJECT_ARRAY) return s_wrong_type(t->wire, "frames", "array", fo, err);
    ndesc = fo->via.array.size;
    if (ndesc > MSG_MAX_FRAMES)
      return s_fail(err, MSG_ERR_TOO_LARGE, "%s.frames: %u descriptions exceed %d", t->wire, ndesc, MSG_MAX_FRAMES);
    for (uint32_t i = 0; i < ndesc; i++)
      if ((rc = s_decode_frame_desc(t->wire, i, &fo->via.array.ptr[i], &out->frames[i], err))) return rc;
  }
  if (ndesc != npayloads)
    return s_fail(err, MSG_ERR_PAYLOAD, "%s: header describes %u payload frames, message carries %zu", t->wire,
                  ndesc, npayloads);
  for (uint32_t i = 0; i < ndesc; i++) {
    out->frames[i].data = payloads[i].data;
    out->frames[i].size = payloads[i].size;
  }
  out->nframes = ndesc;
  if ((rc = s_check_frames(out, err))) return rc;
  return s_check_cross(out, err);
}

msg_err_t msg_decode(const void *header, size_t header_size, const msg_span_t *payloads, size_t npayloads,
                     msg_t *out, msg_error_t *err) {
  memset(out, 0, sizeof *out);
  out->type = MSG_TYPE_COUNT_;
  if (header_size == 0) return s_fail(err, MSG_ERR_TRUNCATED, "header: empty frame");
  if (header_size > MSG_MAX_HEADER_BYTES)
    return s_fail(err, MSG_ERR_TOO_LARGE, "header: %zu bytes exceeds %u", header_size, MSG_MAX_HEADER_BYTES);
  if (npayloads > MSG_MAX_FRAMES)
    return s_fail(err, MSG_ERR_TOO_LARGE, "message: %zu payload frames exceed %d", npayloads, MSG_MAX_FRAMES);
  for (size_t i = 0; i < npayloads; i++)
    if (payloads[i].size > MSG_MAX_FRAME_BYTES)
      return s_fail(err, MSG_ERR_TOO_LARGE, "message: payload frame %zu of %zu bytes exceeds %u", i,
                    payloads[i].size, MSG_MAX_FRAME_BYTES);
  const uint8_t *bytes = header;
  uint8_t b0 = bytes[0];
  if (!((b0 >= 0x80 && b0 <= 0x8f) || b0 == 0xde || b0 == 0xdf))
    return s_fail(err, MSG_ERR_WRONG_TYPE, "header: expected a msgpack map, first byte is 0x%02x", b0);
  s_walk_t w = {bytes, bytes + header_size};
  msg_err_t rc = s_walk(&w, 1, err);
  if (rc) return rc;
  if (w.p != w.end)
    return s_fail(err, MSG_ERR_TRAILING, "header: %td trailing bytes after the map", w.end - w.p);

  msgpack_unpacked up;
  msgpack_unpacked_init(&up);
  size_t off = 0;
  msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)bytes, header_size, &off);
  if (ur != MSGPACK_UNPACK_SUCCESS || off != header_size || up.data.type != MSGPACK_OBJECT_MAP)
    rc = s_fail(err, MSG_ERR_MALFORMED, "header: msgpack unpacker refused the frame (code %d)", (int)ur);
  else
    rc = s_decode_map(&up.data, payloads, npayloads, out, err);
  msgpack_unpacked_destroy(&up);
  return rc;
}
