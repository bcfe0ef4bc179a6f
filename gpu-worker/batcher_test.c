/* batcher_test.c: the batcher on made-up times (no sockets, no clock): a full queue is ready at once, a
 * partial one exactly max_wait_us after its oldest item, keys never mix, items leave in arrival order,
 * the oldest ready key goes first, flush takes partial batches, and bad arguments are refused. */
#include <stdint.h>
#include <string.h>

#include "batcher.h"
#include "check.h"

static int s_items[64];

static void s_full_and_deadline(void) {
  gw_batcher_t *b = gw_batcher_new(3, 1000);
  CHECK(b != NULL, "new");
  void *out[3];
  char key[GW_BATCH_KEY_MAX];
  CHECK(gw_batcher_deadline(b) == INT64_MAX, "empty deadline");
  CHECK(gw_batcher_pop(b, 1 << 30, false, out, key) == 0, "nothing to pop");

  CHECK(gw_batcher_push(b, "m|ar", &s_items[0], 100) == 0, "push 0");
  CHECK(gw_batcher_push(b, "m|ar", &s_items[1], 150) == 0, "push 1");
  CHECK(gw_batcher_deadline(b) == 1100, "partial queue ready at oldest + max_wait: %lld",
        (long long)gw_batcher_deadline(b));
  CHECK(gw_batcher_pop(b, 1099, false, out, key) == 0, "not ready 1 us before the deadline");
  CHECK(gw_batcher_push(b, "m|ar", &s_items[2], 200) == 0, "push 2");
  CHECK(gw_batcher_push(b, "m|ar", &s_items[3], 210) == 0, "push 3");
  CHECK(gw_batcher_count(b) == 4, "count %zu", gw_batcher_count(b));
  CHECK(gw_batcher_deadline(b) == 200, "a full queue was ready when its 3rd item arrived: %lld",
        (long long)gw_batcher_deadline(b));
  int n = gw_batcher_pop(b, 210, false, out, key);
  CHECK(n == 3 && out[0] == &s_items[0] && out[1] == &s_items[1] && out[2] == &s_items[2],
        "full batch in arrival order (n=%d)", n);
  CHECK(strcmp(key, "m|ar") == 0, "key '%s'", key);
  CHECK(gw_batcher_count(b) == 1, "one left");
  CHECK(gw_batcher_deadline(b) == 1210, "the leftover waits from its own arrival: %lld",
        (long long)gw_batcher_deadline(b));
  CHECK(gw_batcher_pop(b, 1209, false, out, key) == 0, "leftover not ready yet");
  n = gw_batcher_pop(b, 1210, false, out, key);
  CHECK(n == 1 && out[0] == &s_items[3], "leftover at its deadline (n=%d)", n);
  CHECK(gw_batcher_count(b) == 0 && gw_batcher_deadline(b) == INT64_MAX, "empty again");
  gw_batcher_destroy(&b);
  CHECK(b == NULL, "destroy clears the pointer");
  gw_batcher_destroy(&b);
}

static void s_keys(void) {
  gw_batcher_t *b = gw_batcher_new(4, 500);
  void *out[4];
  char key[GW_BATCH_KEY_MAX];
  /* interleaved arrivals of three keys */
  gw_batcher_push(b, "m|spec|3", &s_items[0], 0);
  gw_batcher_push(b, "m|ar", &s_items[1], 10);
  gw_batcher_push(b, "m|spec|3", &s_items[2], 20);
  gw_batcher_push(b, "m|spec|4", &s_items[3], 30);
  gw_batcher_push(b, "m|ar", &s_items[4], 40);
  CHECK(gw_batcher_count(b) == 5, "count");
  CHECK(gw_batcher_deadline(b) == 500, "deadline of the oldest key");
  /* at 520, "m|spec|3" (oldest 0) and "m|ar" (oldest 10) are ready, "m|spec|4" (30) is not */
  int n = gw_batcher_pop(b, 520, false, out, key);
  CHECK(n == 2 && strcmp(key, "m|spec|3") == 0 && out[0] == &s_items[0] && out[1] == &s_items[2],
        "oldest ready key first, its items only (n=%d key=%s)", n, key);
  n = gw_batcher_pop(b, 520, false, out, key);
  CHECK(n == 2 && strcmp(key, "m|ar") == 0 && out[0] == &s_items[1] && out[1] == &s_items[4],
        "then the next ready key (n=%d key=%s)", n, key);
  CHECK(gw_batcher_pop(b, 520, false, out, key) == 0, "the third key is not ready at 520");
  n = gw_batcher_pop(b, 520, true, out, key);
  CHECK(n == 1 && strcmp(key, "m|spec|4") == 0 && out[0] == &s_items[3], "flush takes it early (n=%d)", n);

  /* a full younger key goes before a partial older key that has not waited long enough */
  gw_batcher_push(b, "old", &s_items[10], 1000);
  for (int i = 0; i < 4; i++) gw_batcher_push(b, "young", &s_items[20 + i], 1100 + i);
  n = gw_batcher_pop(b, 1103, false, out, key);
  CHECK(n == 4 && strcmp(key, "young") == 0 && out[3] == &s_items[23], "full key first (n=%d key=%s)", n, key);
  /* more than max_batch of one key: batches of max_batch, the rest stays queued */
  for (int i = 0; i < 10; i++) gw_batcher_push(b, "many", &s_items[30 + i], 2000 + i);
  int sizes[4] = {0}, k = 0;
  while (k < 4 && (n = gw_batcher_pop(b, 1 << 20, false, out, key)) > 0)
    if (strcmp(key, "many") == 0) sizes[k++] = n;
  CHECK(sizes[0] == 4 && sizes[1] == 4 && sizes[2] == 2 && sizes[3] == 0, "10 items as 4 + 4 + 2: %d %d %d %d",
        sizes[0], sizes[1], sizes[2], sizes[3]);
  CHECK(gw_batcher_count(b) == 0, "all taken (the old key too)");
  gw_batcher_destroy(&b);
}

static void s_zero_wait_and_bad_args(void) {
  gw_batcher_t *b = gw_batcher_new(8, 0);
  void *out[8];
  gw_batcher_push(b, "k", &s_items[0], 5);
  CHECK(gw_batcher_deadline(b) == 5 && gw_batcher_pop(b, 5, false, out, NULL) == 1,
        "max_wait_us 0: ready on arrival, key_out may be NULL");
  char long_key[GW_BATCH_KEY_MAX + 1];
  memset(long_key, 'x', GW_BATCH_KEY_MAX);
  long_key[GW_BATCH_KEY_MAX] = '\0';
  CHECK(gw_batcher_push(b, long_key, &s_items[0], 6) == -1, "key too long refused");
  CHECK(gw_batcher_push(b, "", &s_items[0], 6) == -1, "empty key refused");
  CHECK(gw_batcher_push(b, "k", NULL, 6) == -1, "NULL item refused");
  CHECK(gw_batcher_count(b) == 0, "nothing queued by refused pushes");
  gw_batcher_destroy(&b);
  CHECK(gw_batcher_new(0, 10) == NULL && gw_batcher_new(4, -1) == NULL, "bad max_batch / max_wait_us refused");
}

int main(void) {
  s_full_and_deadline();
  s_keys();
  s_zero_wait_and_bad_args();
  return check_summary("gw_batcher_test");
}
