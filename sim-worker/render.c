/* render.c: offscreen rendering of MuJoCo cameras (see render.h). Owns the GL context (OSMesa or EGL,
 * loaded with dlopen) and MuJoCo's mjrContext/mjvScene; does not own the model or the data. */
#include "render.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The few GL/OSMesa/EGL constants and entry points used here, declared locally so that no GL header
 * or library is needed at build time. */
#define S_GL_RGBA 0x1908
#define S_GL_UNSIGNED_BYTE 0x1401
#define S_EGL_NONE 0x3038
#define S_EGL_SURFACE_TYPE 0x3033
#define S_EGL_PBUFFER_BIT 0x0001
#define S_EGL_RENDERABLE_TYPE 0x3040
#define S_EGL_OPENGL_BIT 0x0008
#define S_EGL_RED_SIZE 0x3024
#define S_EGL_GREEN_SIZE 0x3023
#define S_EGL_BLUE_SIZE 0x3022
#define S_EGL_DEPTH_SIZE 0x3025
#define S_EGL_OPENGL_API 0x30A2
#define S_EGL_PLATFORM_DEVICE_EXT 0x313F
#define S_EGL_EXTENSIONS 0x3055

typedef void *(*s_osmesa_create_fn)(unsigned format, int depth, int stencil, int accum, void *share);
typedef unsigned char (*s_osmesa_make_current_fn)(void *ctx, void *buf, unsigned type, int w, int h);
typedef void (*s_osmesa_destroy_fn)(void *ctx);
typedef void *(*s_egl_proc_fn)(const char *name);
typedef unsigned (*s_egl_query_devices_fn)(int max, void **devices, int *num);
typedef const char *(*s_egl_query_device_string_fn)(void *device, int name);
typedef void *(*s_egl_platform_display_fn)(unsigned platform, void *native, const int *attribs);
typedef unsigned (*s_egl_initialize_fn)(void *dpy, int *major, int *minor);
typedef unsigned (*s_egl_choose_config_fn)(void *dpy, const int *attribs, void **configs, int size, int *num);
typedef unsigned (*s_egl_bind_api_fn)(unsigned api);
typedef void *(*s_egl_create_context_fn)(void *dpy, void *config, void *share, const int *attribs);
typedef unsigned (*s_egl_make_current_fn)(void *dpy, void *draw, void *read, void *ctx);
typedef unsigned (*s_egl_destroy_context_fn)(void *dpy, void *ctx);
typedef int (*s_egl_get_error_fn)(void);

struct sw_renderer {
  const char *backend; /* "osmesa" | "egl" */
  void *lib;           /* owned: dlopen handle of the GL backend */
  void *osmesa_ctx;    /* owned (OSMesa) */
  void *osmesa_buf;    /* owned: OSMesa's default framebuffer (MuJoCo renders into its own FBO) */
  void *egl_dpy, *egl_ctx; /* owned (EGL) */
  int max_size;
  mjrContext con; /* owned: MuJoCo's GL resources, valid while the context is current */
  mjvScene scn;   /* owned */
  mjvOption opt;
  bool has_con, has_scn;
  s_osmesa_make_current_fn osmesa_make_current; /* resolved at creation, for s_make_current */
  s_egl_make_current_fn egl_make_current;
  s_egl_bind_api_fn egl_bind_api;
};

/* The renderer whose context is current on this thread (NULL: none of ours). Several renderers (one per
 * scene) can live on one thread, and a renderer made on one thread can be used on another after
 * sw_renderer_release: every use makes its context current first, which costs nothing when it already is. */
static _Thread_local const sw_renderer_t *s_current;

static void s_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void s_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static bool s_gpu_present(void) {
  return access("/dev/nvidia0", F_OK) == 0 || access("/dev/dri/renderD128", F_OK) == 0;
}

static bool s_open_osmesa(sw_renderer_t *r, char *err, size_t errlen) {
  r->lib = dlopen("libOSMesa.so.8", RTLD_NOW | RTLD_GLOBAL);
  if (!r->lib) r->lib = dlopen("libOSMesa.so.6", RTLD_NOW | RTLD_GLOBAL);
  if (!r->lib) {
    s_err(err, errlen, "RSD_GL=osmesa: cannot load libOSMesa.so.8 (Debian package libosmesa6): %s", dlerror());
    return false;
  }
  s_osmesa_create_fn create = (s_osmesa_create_fn)dlsym(r->lib, "OSMesaCreateContextExt");
  s_osmesa_make_current_fn make_current = (s_osmesa_make_current_fn)dlsym(r->lib, "OSMesaMakeCurrent");
  if (!create || !make_current) {
    s_err(err, errlen, "RSD_GL=osmesa: libOSMesa lacks OSMesaCreateContextExt/OSMesaMakeCurrent");
    return false;
  }
  r->osmesa_ctx = create(S_GL_RGBA, 24, 8, 0, NULL);
  if (!r->osmesa_ctx) {
    s_err(err, errlen, "RSD_GL=osmesa: OSMesaCreateContextExt failed");
    return false;
  }
  r->osmesa_buf = calloc(64 * 64, 4);
  r->osmesa_make_current = make_current;
  if (!r->osmesa_buf || !make_current(r->osmesa_ctx, r->osmesa_buf, S_GL_UNSIGNED_BYTE, 64, 64)) {
    s_err(err, errlen, "RSD_GL=osmesa: OSMesaMakeCurrent failed");
    return false;
  }
  return true;
}

#define S_EGL_SYM(var, type, name)                                                   \
  type var = (type)get_proc(name);                                                   \
  if (!var) {                                                                        \
    s_err(err, errlen, "RSD_GL=egl: libEGL has no %s", name);                        \
    return false;                                                                    \
  }

static bool s_open_egl(sw_renderer_t *r, char *err, size_t errlen) {
  r->lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!r->lib) {
    s_err(err, errlen, "RSD_GL=egl: cannot load libEGL.so.1 (Debian package libegl1): %s", dlerror());
    return false;
  }
  s_egl_proc_fn get_proc = (s_egl_proc_fn)dlsym(r->lib, "eglGetProcAddress");
  if (!get_proc) {
    s_err(err, errlen, "RSD_GL=egl: libEGL has no eglGetProcAddress");
    return false;
  }
  S_EGL_SYM(query_devices, s_egl_query_devices_fn, "eglQueryDevicesEXT");
  S_EGL_SYM(platform_display, s_egl_platform_display_fn, "eglGetPlatformDisplayEXT");
  S_EGL_SYM(initialize, s_egl_initialize_fn, "eglInitialize");
  S_EGL_SYM(choose_config, s_egl_choose_config_fn, "eglChooseConfig");
  S_EGL_SYM(bind_api, s_egl_bind_api_fn, "eglBindAPI");
  S_EGL_SYM(create_context, s_egl_create_context_fn, "eglCreateContext");
  S_EGL_SYM(make_current, s_egl_make_current_fn, "eglMakeCurrent");
  S_EGL_SYM(get_error, s_egl_get_error_fn, "eglGetError");
  s_egl_query_device_string_fn device_string = (s_egl_query_device_string_fn)get_proc("eglQueryDeviceStringEXT");

  void *devices[16];
  int ndev = 0;
  if (!query_devices(16, devices, &ndev) || ndev == 0) {
    s_err(err, errlen, "RSD_GL=egl: no EGL devices (eglQueryDevicesEXT error 0x%x)", get_error());
    return false;
  }
  /* Prefer a hardware device; Mesa's software device (EGL_MESA_device_software) comes last. */
  int pick = -1;
  for (int pass = 0; pass < 2 && pick < 0; pass++) {
    for (int i = 0; i < ndev && pick < 0; i++) {
      const char *ext = device_string ? device_string(devices[i], S_EGL_EXTENSIONS) : NULL;
      bool software = ext && strstr(ext, "EGL_MESA_device_software");
      if (pass == 1 || !software) {
        void *dpy = platform_display(S_EGL_PLATFORM_DEVICE_EXT, devices[i], NULL);
        int major, minor;
        if (dpy && initialize(dpy, &major, &minor)) {
          r->egl_dpy = dpy;
          pick = i;
        }
      }
    }
  }
  if (pick < 0) {
    s_err(err, errlen, "RSD_GL=egl: none of %d EGL devices initializes (error 0x%x)", ndev, get_error());
    return false;
  }
  static const int attribs[] = {S_EGL_SURFACE_TYPE, S_EGL_PBUFFER_BIT, S_EGL_RENDERABLE_TYPE, S_EGL_OPENGL_BIT,
                                S_EGL_RED_SIZE, 8, S_EGL_GREEN_SIZE, 8, S_EGL_BLUE_SIZE, 8, S_EGL_DEPTH_SIZE, 24,
                                S_EGL_NONE};
  void *config = NULL;
  int nconfig = 0;
  if (!choose_config(r->egl_dpy, attribs, &config, 1, &nconfig) || nconfig < 1) {
    s_err(err, errlen, "RSD_GL=egl: no RGB8/depth24 OpenGL config (error 0x%x)", get_error());
    return false;
  }
  if (!bind_api(S_EGL_OPENGL_API)) {
    s_err(err, errlen, "RSD_GL=egl: eglBindAPI(OpenGL) failed (error 0x%x)", get_error());
    return false;
  }
  r->egl_make_current = make_current;
  r->egl_bind_api = bind_api;
  r->egl_ctx = create_context(r->egl_dpy, config, NULL, NULL);
  if (!r->egl_ctx || !make_current(r->egl_dpy, NULL, NULL, r->egl_ctx)) {
    s_err(err, errlen, "RSD_GL=egl: cannot make a surfaceless OpenGL context current (error 0x%x)", get_error());
    return false;
  }
  return true;
}

/* Makes r's context current on this thread (and MuJoCo's offscreen buffer the target). */
static int s_make_current(sw_renderer_t *r, char *err, size_t errlen) {
  if (s_current == r) return 0;
  bool ok;
  if (r->osmesa_ctx) {
    ok = r->osmesa_make_current(r->osmesa_ctx, r->osmesa_buf, S_GL_UNSIGNED_BYTE, 64, 64);
  } else {
    ok = r->egl_bind_api(S_EGL_OPENGL_API) && r->egl_make_current(r->egl_dpy, NULL, NULL, r->egl_ctx);
  }
  if (!ok) {
    s_err(err, errlen, "%s: cannot make the renderer's context current on this thread (is it current on another?)",
          r->backend);
    return -1;
  }
  s_current = r;
  if (r->has_con) mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
  return 0;
}

void sw_renderer_release(sw_renderer_t *r) {
  if (s_current != r) return;
  if (r->osmesa_ctx) r->osmesa_make_current(NULL, NULL, 0, 0, 0);
  else r->egl_make_current(r->egl_dpy, NULL, NULL, NULL);
  s_current = NULL;
}

sw_renderer_t *sw_renderer_new(mjModel *m, int max_size, char *err, size_t errlen) {
  sw_renderer_t *r = calloc(1, sizeof *r);
  if (!r) {
    s_err(err, errlen, "out of memory");
    return NULL;
  }
  const char *want = getenv("RSD_GL");
  if (want && *want && strcmp(want, "osmesa") != 0 && strcmp(want, "egl") != 0) {
    s_err(err, errlen, "RSD_GL='%s' is not one of osmesa, egl (or unset: automatic)", want);
    free(r);
    return NULL;
  }
  bool egl = want && *want ? strcmp(want, "egl") == 0 : s_gpu_present();
  r->backend = egl ? "egl" : "osmesa";
  r->max_size = max_size;
  bool ok = egl ? s_open_egl(r, err, errlen) : s_open_osmesa(r, err, errlen);
  if (ok) s_current = r; /* made current by s_open_* */
  if (ok) {
    if (m->vis.global.offwidth < max_size) m->vis.global.offwidth = max_size;
    if (m->vis.global.offheight < max_size) m->vis.global.offheight = max_size;
    mjv_defaultOption(&r->opt);
    mjv_defaultScene(&r->scn);
    mjv_makeScene(m, &r->scn, 2000);
    r->has_scn = true;
    mjr_defaultContext(&r->con);
    mjr_makeContext(m, &r->con, mjFONTSCALE_100);
    r->has_con = true;
    mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
    if (r->con.currentBuffer != mjFB_OFFSCREEN) {
      s_err(err, errlen, "%s: MuJoCo could not make an offscreen framebuffer", r->backend);
      ok = false;
    }
  }
  if (!ok) sw_renderer_destroy(&r);
  return r;
}

void sw_renderer_destroy(sw_renderer_t **self_p) {
  if (!self_p || !*self_p) return;
  sw_renderer_t *r = *self_p;
  /* MuJoCo frees its GL objects in the current context: make it this renderer's */
  if (r->has_con && s_make_current(r, NULL, 0) == 0) mjr_freeContext(&r->con);
  if (s_current == r) s_current = NULL;
  if (r->has_scn) mjv_freeScene(&r->scn);
  if (r->lib && r->osmesa_ctx) {
    s_osmesa_destroy_fn destroy = (s_osmesa_destroy_fn)dlsym(r->lib, "OSMesaDestroyContext");
    if (destroy) destroy(r->osmesa_ctx);
  }
  if (r->lib && r->egl_dpy) {
    s_egl_proc_fn get_proc = (s_egl_proc_fn)dlsym(r->lib, "eglGetProcAddress");
    s_egl_make_current_fn make_current = get_proc ? (s_egl_make_current_fn)get_proc("eglMakeCurrent") : NULL;
    s_egl_destroy_context_fn destroy = get_proc ? (s_egl_destroy_context_fn)get_proc("eglDestroyContext") : NULL;
    if (make_current) make_current(r->egl_dpy, NULL, NULL, NULL);
    if (destroy && r->egl_ctx) destroy(r->egl_dpy, r->egl_ctx);
    /* No eglTerminate: the display of a device is shared by every renderer of the process, and
     * terminating it would pull the contexts of other threads' renderers away. */
  }
  /* The GL library stays loaded: MuJoCo keeps the function pointers it resolved from it. */
  free(r->osmesa_buf);
  free(r);
  *self_p = NULL;
}

const char *sw_renderer_backend(const sw_renderer_t *self) { return self->backend; }

void sw_renderer_show_group(sw_renderer_t *self, int group, int visible) {
  if (group >= 0 && group < mjNGROUP) self->opt.geomgroup[group] = visible ? 1 : 0;
}

int sw_render(sw_renderer_t *r, const mjModel *m, mjData *d, int camera, int size, uint8_t *rgb, char *err,
              size_t errlen) {
  if (camera < 0 || camera >= m->ncam) {
    s_err(err, errlen, "camera id %d is not in the model (it has %d cameras)", camera, m->ncam);
    return -1;
  }
  if (size < 1 || size > r->max_size) {
    s_err(err, errlen, "image size %d is outside 1..%d (the renderer's maximum)", size, r->max_size);
    return -1;
  }
  if (s_make_current(r, err, errlen)) return -1;
  mjvCamera cam;
  mjv_defaultCamera(&cam);
  cam.type = mjCAMERA_FIXED;
  cam.fixedcamid = camera;
  mjrRect viewport = {0, 0, size, size};
  mjv_updateScene(m, d, &r->opt, NULL, &cam, mjCAT_ALL, &r->scn);
  mjr_render(viewport, &r->scn, &r->con);
  mjr_readPixels(rgb, NULL, viewport, &r->con);
  /* OpenGL rows run bottom-up: flip to upright in place. */
  size_t row = (size_t)size * 3;
  uint8_t tmp[1024 * 3];
  for (int y = 0; y < size / 2; y++) {
    uint8_t *a = rgb + (size_t)y * row, *b = rgb + (size_t)(size - 1 - y) * row;
    for (size_t off = 0; off < row; off += sizeof tmp) {
      size_t n = row - off < sizeof tmp ? row - off : sizeof tmp;
      memcpy(tmp, a + off, n);
      memcpy(a + off, b + off, n);
      memcpy(b + off, tmp, n);
    }
  }
  return 0;
}
