/* mjguard.c: MuJoCo error and warning handling (see mjguard.h). Owns the process-wide handlers and a
 * per-thread jump point; nothing else. */
#include "mjguard.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local jmp_buf *s_jump;      /* set while a guarded call runs on this thread */
static _Thread_local char s_message[512];  /* MuJoCo's error text */

static void s_on_error(const char *msg) {
  snprintf(s_message, sizeof s_message, "%s", msg);
  if (s_jump) longjmp(*s_jump, 1);
  /* An error outside sw_guard is a programming mistake in rsd: say where, then stop. */
  fprintf(stderr, "rsd: MuJoCo error outside a guarded call: %s\n", msg);
  abort();
}

/* Warnings are read from mjData counters by sw_new_warning; the text is kept for the message. */
static _Thread_local char s_warning[512];
static void s_on_warning(const char *msg) { snprintf(s_warning, sizeof s_warning, "%s", msg); }

void sw_guard_install(void) {
  mju_user_error = s_on_error;
  mju_user_warning = s_on_warning;
}

int sw_guard(void (*fn)(void *arg), void *arg, char *err, size_t errlen) {
  jmp_buf here;
  jmp_buf *outer = s_jump;
  if (setjmp(here) != 0) {
    s_jump = outer;
    snprintf(err, errlen, "mujoco error: %s", s_message);
    return -1;
  }
  s_jump = &here;
  fn(arg);
  s_jump = outer;
  return 0;
}

static const char *const s_warning_names[mjNWARNING] = {
    "mjWARN_INERTIA", "mjWARN_CONTACTFULL", "mjWARN_CNSTRFULL", "mjWARN_VGEOMFULL",
    "mjWARN_BADQPOS", "mjWARN_BADQVEL",     "mjWARN_BADQACC",   "mjWARN_BADCTRL"};

int sw_new_warning(const mjData *d, int seen[mjNWARNING], char *err, size_t errlen) {
  for (int i = 0; i < mjNWARNING; i++) {
    if (d->warning[i].number == seen[i]) continue;
    seen[i] = d->warning[i].number;
    snprintf(err, errlen, "mujoco warning %s: %s", s_warning_names[i],
             s_warning[0] ? s_warning : mju_warningText(i, (size_t)d->warning[i].lastinfo));
    s_warning[0] = '\0';
    return -1;
  }
  return 0;
}
