/* deps_mujoco_test.c: the build links the libmujoco shipped in the pinned mujoco wheel (the library
 * robosuite steps) and it simulates: a free box falls as physics says it should. */
#include <math.h>
#include <mujoco/mujoco.h>
#include <string.h>

#include "check.h"

static int s_warnings;
static void s_on_warning(const char *msg) {
  s_warnings++;
  fprintf(stderr, "mujoco warning: %s\n", msg);
}

int main(void) {
  mju_user_warning = s_on_warning;
  CHECK(mj_version() == mjVERSION_HEADER, "library version %d does not match header %d", mj_version(), mjVERSION_HEADER);
  CHECK(strcmp(mj_versionString(), RSD_EXPECTED_MUJOCO) == 0, "libmujoco %s, pinned %s", mj_versionString(),
        RSD_EXPECTED_MUJOCO);

  static const char xml[] =
      "<mujoco><option timestep='0.002'/><worldbody>"
      "<body name='box' pos='0 0 1'><freejoint/><geom type='box' size='.05 .05 .05' mass='1'/></body>"
      "</worldbody></mujoco>";
  mjVFS vfs;
  mj_defaultVFS(&vfs);
  CHECK(mj_addBufferVFS(&vfs, "box.xml", xml, (int)strlen(xml)) == 0, "VFS add failed");
  char err[1000] = "";
  mjModel *m = mj_loadXML("box.xml", &vfs, err, sizeof err);
  CHECK(m != NULL, "load failed: %s", err);
  if (!m) return check_summary("deps_mujoco_test");
  mjData *d = mj_makeData(m);
  for (int i = 0; i < 250; i++) mj_step(m, d); /* 0.5 s of free fall */
  double z = d->qpos[2], expect = 1.0 - 0.5 * 9.81 * d->time * d->time;
  CHECK(fabs(d->time - 0.5) < 1e-9, "time %.6f after 250 steps of 2 ms", d->time);
  CHECK(fabs(z - expect) < 5e-3, "box at z=%.4f after 0.5 s, free fall gives %.4f", z, expect);
  CHECK(s_warnings == 0, "%d unexpected MuJoCo warnings", s_warnings);
  mj_deleteData(d);
  mj_deleteModel(m);
  mj_deleteVFS(&vfs);
  return check_summary("deps_mujoco_test");
}
