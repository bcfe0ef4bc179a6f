/* mjguard_test.c: a MuJoCo error inside a guarded call comes back as an error with MuJoCo's message
 * and the process carries on; numerical warnings are reported by name. */
#include "mjguard.h"

#include <string.h>

#include "check.h"

static void s_raise(void *arg) { mju_error("boom %d", *(int *)arg); }

typedef struct {
  const mjModel *m;
  mjData *d;
  int steps;
} s_sim_t;

static void s_step(void *arg) {
  s_sim_t *s = arg;
  for (int i = 0; i < s->steps; i++) mj_step(s->m, s->d);
}

static void s_make_data(void *arg) {
  s_sim_t *s = arg;
  s->d = mj_makeData(s->m);
}

static mjModel *s_load(const char *xml) {
  char err[500];
  mjVFS vfs;
  mj_defaultVFS(&vfs);
  mj_addBufferVFS(&vfs, "m.xml", xml, (int)strlen(xml));
  mjModel *m = mj_loadXML("m.xml", &vfs, err, sizeof err);
  mj_deleteVFS(&vfs);
  CHECK(m != NULL, "load: %s", err);
  return m;
}

int main(void) {
  sw_guard_install();
  char err[600] = "";
  int seven = 7;
  CHECK(sw_guard(s_raise, &seven, err, sizeof err) == -1 && strcmp(err, "mujoco error: boom 7") == 0,
        "direct error: '%s'", err);

  /* A model whose arena is then made far too small: stepping raises an error inside MuJoCo. */
  mjModel *tiny = s_load("<mujoco><worldbody><body><freejoint/><geom size='.1'/></body>"
                         "<body pos='1 0 0'><freejoint/><geom size='.1'/></body></worldbody></mujoco>");
  if (tiny) {
    tiny->narena = 64;
    s_sim_t s = {tiny, NULL, 10};
    int rc = sw_guard(s_make_data, &s, err, sizeof err);
    if (rc == 0) rc = sw_guard(s_step, &s, err, sizeof err);
    CHECK(rc == -1 && strstr(err, "mujoco error:") && strstr(err, "memory"), "tiny arena: rc %d '%s'", rc, err);
    if (s.d) mj_deleteData(s.d);
    mj_deleteModel(tiny);
  }

  /* After an error, guarded work goes on normally; a huge velocity trips the bad-qacc warning. */
  mjModel *m = s_load("<mujoco><worldbody><body><freejoint/><geom size='.1'/></body></worldbody></mujoco>");
  if (m) {
    mjData *d = mj_makeData(m);
    s_sim_t s = {m, d, 20};
    int seen[mjNWARNING] = {0};
    CHECK(sw_guard(s_step, &s, err, sizeof err) == 0, "plain steps failed: %s", err);
    CHECK(sw_new_warning(d, seen, err, sizeof err) == 0, "warning on a quiet model: %s", err);
    d->qvel[0] = 1e300;
    d->qvel[1] = -1e300;
    CHECK(sw_guard(s_step, &s, err, sizeof err) == 0, "unstable steps raised an error: %s", err);
    int rc = sw_new_warning(d, seen, err, sizeof err);
    CHECK(rc == -1 && (strstr(err, "mjWARN_BADQACC") || strstr(err, "mjWARN_BADQVEL")), "no bad-state warning: '%s'", err);
    CHECK(sw_new_warning(d, seen, err, sizeof err) == 0 || strstr(err, "mjWARN_"), "warning reported twice");
    mj_deleteData(d);
    mj_deleteModel(m);
  }
  CHECK(sw_guard(s_raise, &seven, err, sizeof err) == -1, "second error not caught");
  return check_summary("mjguard_test");
}
