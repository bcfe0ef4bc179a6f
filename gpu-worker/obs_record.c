/* obs_record.c: the observation recording of rsd-gpu-worker --record-obs (obs_record.h has the format). */
#include "obs_record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { S_IMAGES, S_PROPRIO, S_INSTR, S_ROWS, S_NFILES };
static const char *const s_names[S_NFILES] = {"images.u8", "proprio.f32", "instructions.txt", "rows.tsv"};

struct gw_obs_record {
  char *dir;                 /* owned */
  const gw_manifest_t *m;    /* borrowed */
  FILE *f[S_NFILES];         /* owned, closed in destroy */
  long rows;
  bool failed;               /* a write failed: the files may end in a partial row, take no more */
};

static void s_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void s_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

gw_obs_record_t *gw_obs_record_new(const char *dir, const gw_manifest_t *m, char *err, size_t errlen) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
    s_err(err, errlen, "--record-obs '%s': cannot create the directory: %s", dir, strerror(errno));
    return NULL;
  }
  gw_obs_record_t *self = calloc(1, sizeof *self);
  if (!self || !(self->dir = strdup(dir))) {
    free(self);
    s_err(err, errlen, "--record-obs '%s': out of memory", dir);
    return NULL;
  }
  self->m = m;
  /* rows.tsv first and exclusively: a directory that holds a recording is refused before anything is touched */
  for (int k = S_NFILES - 1; k >= 0; k--) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, s_names[k]);
    int fd = open(path, O_WRONLY | O_CREAT | (k == S_ROWS ? O_EXCL : O_TRUNC), 0666);
    if (fd < 0 || !(self->f[k] = fdopen(fd, "w"))) {
      s_err(err, errlen, "--record-obs '%s': %s: %s", dir, s_names[k],
            errno == EEXIST ? "exists: the directory already holds a recording (give another directory)"
                            : strerror(errno));
      if (fd >= 0) close(fd);
      gw_obs_record_destroy(&self);
      return NULL;
    }
  }
  if (fputs("variant\ttask\ttrial\tstep\tmode\tmain_forwards\n", self->f[S_ROWS]) < 0 || fflush(self->f[S_ROWS])) {
    s_err(err, errlen, "--record-obs '%s': rows.tsv: %s", dir, strerror(errno));
    gw_obs_record_destroy(&self);
    return NULL;
  }
  return self;
}

void gw_obs_record_destroy(gw_obs_record_t **self_p) {
  if (!self_p || !*self_p) return;
  gw_obs_record_t *self = *self_p;
  for (int k = 0; k < S_NFILES; k++)
    if (self->f[k]) fclose(self->f[k]);
  free(self->dir);
  free(self);
  *self_p = NULL;
}

/* True when s can stand in one tab-separated field (or one line of instructions.txt). */
static bool s_plain(const char *s) { return !strpbrk(s, "\t\n\r"); }

int gw_obs_record_add(gw_obs_record_t *self, const gw_obs_t *obs, const gw_obs_origin_t *origin, char *err,
                      size_t errlen) {
  if (self->failed) {
    s_err(err, errlen, "--record-obs '%s': an earlier write failed; the recording takes no more rows", self->dir);
    return -1;
  }
  const gw_manifest_t *m = self->m;
  if (obs->num_cameras != m->num_cameras || obs->image_height != m->image_height ||
      obs->image_width != m->image_width || obs->proprio_dim != m->proprio_dim) {
    s_err(err, errlen, "--record-obs '%s': observation of %d camera(s) %dx%d, proprio %d; the recording holds %d "
          "camera(s) %dx%d, proprio %d", self->dir, obs->num_cameras, obs->image_height, obs->image_width,
          obs->proprio_dim, m->num_cameras, m->image_height, m->image_width, m->proprio_dim);
    return -1;
  }
  const char *bad = !s_plain(obs->instruction) ? obs->instruction : !s_plain(origin->variant) ? origin->variant : NULL;
  if (bad) {
    s_err(err, errlen, "--record-obs '%s': '%s' holds a tab or a line break, which the recording cannot carry",
          self->dir, bad);
    return -1;
  }
  const size_t img = (size_t)m->num_cameras * (size_t)m->image_height * (size_t)m->image_width * 3;
  const size_t prop = sizeof(float) * (size_t)m->proprio_dim;
  bool ok = fwrite(obs->images, 1, img, self->f[S_IMAGES]) == img &&
            fwrite(obs->proprio, 1, prop, self->f[S_PROPRIO]) == prop &&
            fprintf(self->f[S_INSTR], "%s\n", obs->instruction) >= 0 &&
            fprintf(self->f[S_ROWS], "%s\t%u\t%u\t%u\t%s\t%d\n", origin->variant, origin->task, origin->trial,
                    origin->step, origin->mode, origin->main_forwards) >= 0;
  for (int k = 0; ok && k < S_NFILES; k++) ok = fflush(self->f[k]) == 0;
  if (!ok) {
    self->failed = true;
    s_err(err, errlen, "--record-obs '%s': writing row %ld: %s", self->dir, self->rows, strerror(errno));
    return -1;
  }
  self->rows++;
  return 0;
}

long gw_obs_record_rows(const gw_obs_record_t *self) { return self->rows; }
