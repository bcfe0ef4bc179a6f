/* sha256.h: SHA-256 (FIPS 180-4) for the policy package's content hash. Small and dependency-free;
 * not for anything where speed matters. */
#ifndef RSD_GW_SHA256_H
#define RSD_GW_SHA256_H

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
} gw_sha256_t;

/* Starts a hash. */
void gw_sha256_init(gw_sha256_t *s);
/* Adds n bytes (data may be NULL when n is 0). */
void gw_sha256_update(gw_sha256_t *s, const void *data, size_t n);
/* Finishes the hash and writes 64 lowercase hex digits and a NUL into hex. s is spent afterwards. */
void gw_sha256_hex(gw_sha256_t *s, char hex[65]);

#ifdef __cplusplus
}
#endif

#endif
