/* scratch.h: the files of a multi-process test's temporary directory (configs it writes, logs it reads),
 * and the directory's end: removed when every CHECK passed, kept for a look otherwise. */
#ifndef RSD_SCRATCH_H
#define RSD_SCRATCH_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"

/* Writes text to path; false when the file cannot be written. */
static inline bool scratch_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return false;
  bool ok = fputs(text, f) >= 0;
  return fclose(f) == 0 && ok;
}

/* Reads up to cap - 1 bytes of path into buf, NUL-terminated; returns the bytes read (0 for a missing file). */
static inline size_t scratch_read(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
  if (f) fclose(f);
  buf[n] = '\0';
  return n;
}

/* Removes dir when no CHECK failed so far; otherwise says where it was kept. */
static inline void scratch_done(const char *dir) {
  if (check_failed_) {
    fprintf(stderr, "kept %s for a look\n", dir);
    return;
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#endif
