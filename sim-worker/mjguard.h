/* mjguard.h: MuJoCo errors and warnings become episode errors, never the end of the process.
 *
 * MuJoCo reports fatal errors through mju_user_error and, by default, exits. sw_guard runs a piece of
 * simulation with a handler that jumps back out with MuJoCo's message instead. Numerical warnings
 * (mjData.warning counters: bad qacc, stack overflow, contact limits, ...) are read after each step by
 * sw_new_warning. After either, the mjData of that episode must be reset or discarded: MuJoCo left it
 * mid-computation. */
#ifndef RSD_SW_MJGUARD_H
#define RSD_SW_MJGUARD_H

#include <mujoco/mujoco.h>
#include <stddef.h>

/* Installs rsd's error and warning handlers (idempotent; call once before any MuJoCo work). */
void sw_guard_install(void);

/* Runs fn(arg). Returns 0 when it finished, or -1 when MuJoCo raised an error inside it, with MuJoCo's
 * message in err. Thread-safe: each thread has its own jump point. fn must not hold resources that
 * need freeing when it is cut short. */
int sw_guard(void (*fn)(void *arg), void *arg, char *err, size_t errlen);

/* Compares d's warning counters with *seen (mjNWARNING entries, updated). Returns 0 when no warning fired
 * since the last call, or -1 naming the first new one (e.g. "mujoco warning mjWARN_BADQACC: Nan, Inf or
 * huge value in QACC at DOF 7. The simulation is unstable."). */
int sw_new_warning(const mjData *d, int seen[mjNWARNING], char *err, size_t errlen);

#endif
