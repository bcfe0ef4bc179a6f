/* render.h: offscreen camera images from MuJoCo, on CPU (OSMesa) or GPU (EGL).
 *
 * The GL library is loaded at run time (dlopen, RTLD_GLOBAL), so that MuJoCo's own GL loader resolves
 * functions from the one backend chosen: RSD_GL=osmesa|egl forces it; otherwise EGL is used when a GPU
 * device is present (/dev/nvidia0 or a DRM render node) and OSMesa everywhere else.
 *
 * Images are delivered upright: row 0 is the top of the camera's view (OpenGL reads rows bottom-up;
 * this file flips them). A renderer owns a GL context; each call binds it to the calling thread, so
 * several renderers (one per scene) can share a thread, and a renderer made by one thread can be handed
 * to another after sw_renderer_release. */
#ifndef RSD_SW_RENDER_H
#define RSD_SW_RENDER_H

#include <mujoco/mujoco.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sw_renderer sw_renderer_t;

/* Makes a GL context and MuJoCo's rendering context for model m, able to render square images up to
 * max_size pixels. Raises m->vis.global.offwidth/offheight to max_size when smaller. Returns NULL and
 * writes the reason into err (backend, library, and the failing call) on failure. */
sw_renderer_t *sw_renderer_new(mjModel *m, int max_size, char *err, size_t errlen);

/* Unbinds the renderer's GL context from the calling thread, so that another thread can use the renderer
 * (sw_render binds it to the thread that calls it). Use a renderer on one thread at a time. */
void sw_renderer_release(sw_renderer_t *self);

/* Frees the contexts; idempotent; sets *self_p to NULL. */
void sw_renderer_destroy(sw_renderer_t **self_p);

/* "osmesa" or "egl": the backend in use. */
const char *sw_renderer_backend(const sw_renderer_t *self);

/* Shows or hides geom group `group` (0..mjNGROUP-1) in later renders; all groups are shown by default.
 * robosuite's scenes keep collision geoms in group 0 and hide it from cameras. */
void sw_renderer_show_group(sw_renderer_t *self, int group, int visible);

/* Renders fixed camera `camera` (a camera id of m) at size x size into rgb (size * size * 3 bytes,
 * upright, RGB). Returns 0, or -1 with the reason in err (bad camera id, size above max_size). */
int sw_render(sw_renderer_t *self, const mjModel *m, mjData *d, int camera, int size, uint8_t *rgb, char *err,
              size_t errlen);

#endif
