/* check.h: the few assertion macros rsd's C test programs share. A failed CHECK prints the file, line
 * and message and counts; check_summary() prints "N passed, N failed" and gives the exit status. */
#ifndef RSD_CHECK_H
#define RSD_CHECK_H

#include <stdio.h>

static int check_passed_, check_failed_;

#define CHECK(cond, ...)                                              \
  do {                                                                \
    if (cond) {                                                       \
      check_passed_++;                                                \
    } else {                                                          \
      check_failed_++;                                                \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                   \
      fprintf(stderr, "\n");                                          \
    }                                                                 \
  } while (0)

/* Prints the closing line and returns the process exit status. */
static inline int check_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, check_passed_, check_failed_);
  return check_failed_ ? 1 : 0;
}

#endif
