/* msg_fuzz.c: libFuzzer target for the decoder (built with RSD_FUZZ=ON, run by ctest for a bounded time).
 *
 * Input layout: byte 0 = number of payload frames n (mod 10, so counts above the limit are tried too),
 * then n little-endian u16 payload sizes, then the header bytes, then the payload bytes (sizes that do
 * not fit are clipped). Seeds in fuzz_corpus/ are the sample messages in this layout (msg_test writes
 * them).
 *
 * Besides "no crash, no leak, no hang", it checks a property: whatever the decoder accepts, the encoder
 * writes back, and decoding that gives the same message. */
#include <stdlib.h>
#include <string.h>

#include "msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t n = data[0] % 10, o = 1;
  size_t sizes[10] = {0};
  for (size_t i = 0; i < n; i++) {
    if (o + 2 > size) return 0;
    sizes[i] = (size_t)data[o] | ((size_t)data[o + 1] << 8);
    o += 2;
  }
  size_t payload_total = 0;
  for (size_t i = 0; i < n; i++) payload_total += sizes[i];
  size_t header_size = size - o > payload_total ? size - o - payload_total : 0;
  /* Exact-size copies so that AddressSanitizer catches any read past a frame. */
  uint8_t *header = malloc(header_size ? header_size : 1);
  memcpy(header, data + o, header_size);
  o += header_size;
  msg_span_t spans[10];
  uint8_t *copies[10] = {0};
  for (size_t i = 0; i < n; i++) {
    size_t len = sizes[i] < size - o ? sizes[i] : size - o;
    copies[i] = malloc(len ? len : 1);
    memcpy(copies[i], data + o, len);
    spans[i] = (msg_span_t){copies[i], len};
    o += len;
  }

  msg_t m;
  msg_error_t err;
  if (msg_decode(header, header_size, spans, n, &m, &err) == MSG_OK) {
    msg_buf_t buf = {0};
    if (msg_encode(&m, &buf, &err) != MSG_OK) abort(); /* accepted but cannot be re-sent */
    msg_t again;
    if (msg_decode(buf.data, buf.size, spans, n, &again, &err) != MSG_OK) abort();
    if (memcmp(&m, &again, sizeof m) != 0) abort(); /* the round trip changed the message */
    msg_buf_free(&buf);
  }
  free(header);
  for (size_t i = 0; i < n; i++) free(copies[i]);
  return 0;
}
