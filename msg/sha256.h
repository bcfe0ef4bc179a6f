/* sha256.h: SHA-256 (FIPS 180-4): policy packages' content hashes, and the digest of the actions an
 * episode executed (RESULT.actions_digest). Small and dependency-free; not for anything where speed
 * matters. */
#ifndef RSD_MSG_SHA256_H
#define RSD_MSG_SHA256_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t h[8];
  uint64_t len;        /* bytes hashed so far */
  uint8_t buf[64];
  size_t fill;         /* bytes waiting in buf */
} msg_sha256_t;

/* Starts a hash. */
void msg_sha256_init(msg_sha256_t *s);
/* Adds n bytes (data may be NULL when n is 0). */
void msg_sha256_update(msg_sha256_t *s, const void *data, size_t n);
/* Finishes the hash and writes 64 lowercase hex digits and a NUL into hex. s is spent afterwards. */
void msg_sha256_hex(msg_sha256_t *s, char hex[65]);

#ifdef __cplusplus
}
#endif

#endif
