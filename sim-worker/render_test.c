/* render_test.c: the offscreen renderer draws what a camera sees, upright and not mirrored, with the
 * backend RSD_GL names (ctest runs this once with osmesa and once with egl); two renderers share a thread,
 * and a renderer made on one thread and released renders on another (how the sim worker's loader thread
 * prepares a scene's renderer). */
#include "render.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Camera at y = -2 looking along +y with world x to the right and world z up. Red box in the middle,
 * green ball above it, blue box to its left. */
static const char s_scene[] =
    "<mujoco><visual><headlight ambient='.6 .6 .6' diffuse='.4 .4 .4'/></visual><worldbody>"
    "<camera name='front' pos='0 -2 0.5' xyaxes='1 0 0 0 0 1' fovy='45'/>"
    "<geom type='box' pos='0 0 0.5' size='.15 .05 .15' rgba='1 0 0 1'/>"
    "<geom type='sphere' pos='0 0 0.95' size='.1' rgba='0 1 0 1'/>"
    "<geom type='box' pos='-0.5 0 0.5' size='.1 .05 .1' rgba='0 0 1 1'/>"
    "</worldbody></mujoco>";

/* Which of r, g, b dominates the pixel at (x, y), or -1 for none (background). */
static int s_dominant(const uint8_t *rgb, int size, int x, int y) {
  const uint8_t *p = rgb + ((size_t)y * size + x) * 3;
  for (int c = 0; c < 3; c++)
    if (p[c] > 120 && p[c] > 2 * p[(c + 1) % 3] && p[c] > 2 * p[(c + 2) % 3]) return c;
  return -1;
}

typedef struct {
  mjModel *m;
  sw_renderer_t *r;
  char err[512];
} s_maker_t;

static void *s_make_elsewhere(void *arg) {
  s_maker_t *mk = arg;
  mk->r = sw_renderer_new(mk->m, 128, mk->err, sizeof mk->err);
  if (mk->r) sw_renderer_release(mk->r);
  return NULL;
}

int main(void) {
  const char *backend = getenv("RSD_GL") ? getenv("RSD_GL") : "(auto)";
  char err[512] = "";
  setenv("RSD_GL", "vulkan", 1);
  mjVFS vfs;
  mj_defaultVFS(&vfs);
  mj_addBufferVFS(&vfs, "scene.xml", s_scene, (int)strlen(s_scene));
  mjModel *m = mj_loadXML("scene.xml", &vfs, err, sizeof err);
  CHECK(m != NULL, "load: %s", err);
  if (!m) return check_summary("render_test");
  CHECK(sw_renderer_new(m, 128, err, sizeof err) == NULL && strstr(err, "RSD_GL='vulkan' is not one of"),
        "bad RSD_GL accepted: %s", err);
  if (strcmp(backend, "(auto)") != 0)
    setenv("RSD_GL", backend, 1);
  else
    unsetenv("RSD_GL");

  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  sw_renderer_t *r = sw_renderer_new(m, 256, err, sizeof err);
  CHECK(r != NULL, "renderer (%s): %s", backend, err);
  if (r) {
    if (strcmp(backend, "(auto)") != 0)
      CHECK(strcmp(sw_renderer_backend(r), backend) == 0, "backend %s, asked for %s", sw_renderer_backend(r), backend);
    static const int sizes[] = {128, 224, 256};
    for (size_t i = 0; i < 3; i++) {
      int n = sizes[i];
      uint8_t *rgb = malloc((size_t)n * n * 3);
      CHECK(sw_render(r, m, d, 0, n, rgb, err, sizeof err) == 0, "render %d: %s", n, err);
      int c = n / 2;
      CHECK(s_dominant(rgb, n, c, c) == 0, "size %d: centre is not red", n);
      int green_top = 0, green_bottom = 0, blue_left = 0, blue_right = 0;
      for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
          int dom = s_dominant(rgb, n, x, y);
          green_top += dom == 1 && y < n / 2;
          green_bottom += dom == 1 && y >= n / 2;
          blue_left += dom == 2 && x < n / 2;
          blue_right += dom == 2 && x >= n / 2;
        }
      CHECK(green_top > 20 && green_bottom == 0, "size %d: green ball not above (top %d, bottom %d): image not upright",
            n, green_top, green_bottom);
      CHECK(blue_left > 20 && blue_right == 0, "size %d: blue box not on the left (left %d, right %d): mirrored", n,
            blue_left, blue_right);
      free(rgb);
    }
    uint8_t small[8 * 8 * 3];
    CHECK(sw_render(r, m, d, 3, 8, small, err, sizeof err) == -1 && strstr(err, "camera id 3"), "bad camera: %s", err);
    CHECK(sw_render(r, m, d, 0, 512, small, err, sizeof err) == -1 && strstr(err, "512"), "oversize: %s", err);
    /* A second renderer, made on another thread and released there, then used here, alternating with
     * the first: each render must give the same image as before. */
    uint8_t *a1 = malloc(128 * 128 * 3), *a2 = malloc(128 * 128 * 3), *b1 = malloc(128 * 128 * 3);
    CHECK(sw_render(r, m, d, 0, 128, a1, err, sizeof err) == 0, "render: %s", err);
    s_maker_t mk = {.m = m};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, s_make_elsewhere, &mk) == 0, "thread");
    pthread_join(th, NULL);
    CHECK(mk.r != NULL, "renderer made on another thread: %s", mk.err);
    if (mk.r) {
      CHECK(sw_render(mk.r, m, d, 0, 128, b1, err, sizeof err) == 0, "render with the handed-over renderer: %s", err);
      CHECK(sw_render(r, m, d, 0, 128, a2, err, sizeof err) == 0, "render with the first again: %s", err);
      CHECK(memcmp(a1, b1, 128 * 128 * 3) == 0, "the handed-over renderer draws another image");
      CHECK(memcmp(a1, a2, 128 * 128 * 3) == 0, "the first renderer draws another image after the second was used");
      sw_renderer_destroy(&mk.r);
      CHECK(sw_render(r, m, d, 0, 128, a2, err, sizeof err) == 0 && memcmp(a1, a2, 128 * 128 * 3) == 0,
            "the first renderer after destroying the second: %s", err);
    }
    free(a1);
    free(a2);
    free(b1);
    sw_renderer_destroy(&r);
    CHECK(r == NULL, "destroy did not clear the pointer");
  }
  mj_deleteData(d);
  mj_deleteModel(m);
  mj_deleteVFS(&vfs);
  return check_summary("render_test");
}
