/* expert.h: the scripted expert that solves LIBERO-Spatial from privileged state.
 *
 * The expert reads the true poses of the two objects of the task's goal On(bowl, plate) from the
 * episode's mjData (never its camera images) and drives the arm with OSC_POSE actions through a small state
 * machine: over the bowl, down to its rim, close the gripper on the rim, lift, carry over the plate, lower
 * until the bowl rests on it, release. Position inputs are proportional to the remaining distance and
 * clipped to [-1, 1]; rotation inputs are always 0, so robosuite keeps the reset orientation (fingers
 * closing along the world y axis). The expert is deterministic: the same episode gives the same actions.
 *
 * Not here: running episodes (episode.h) and the `expert` / `collect` commands (expert_cli.c). */
#ifndef RSD_SW_EXPERT_H
#define RSD_SW_EXPERT_H

#include <stddef.h>

#include "episode.h"

/* The expert's phases, in the order it goes through them. */
typedef enum {
  SW_EXPERT_APPROACH = 0, /* to a hover point above the rim */
  SW_EXPERT_DESCEND,      /* down to the grasp point, gripper open */
  SW_EXPERT_CLOSE,        /* gripper closing on the rim */
  SW_EXPERT_LIFT,         /* straight up to the carrying height */
  SW_EXPERT_CARRY,        /* over the plate */
  SW_EXPERT_LOWER,        /* down until the bowl rests on the plate */
  SW_EXPERT_RELEASE,      /* gripper opening */
  SW_EXPERT_RETREAT,      /* up and away */
  SW_EXPERT_NPHASES
} sw_expert_phase_t;

/* One expert for one episode; holds its phase between steps. */
typedef struct sw_expert sw_expert_t;

/* Makes an expert for episode ep (the task's first goal must be On(a, b) and a must have contact geoms, from
 * which the rim's radius and height are measured). Returns NULL with the reason in err. ep is borrowed only
 * during the call. */
sw_expert_t *sw_expert_new(const sw_episode_t *ep, char *err, size_t errlen);

/* Frees the expert; idempotent; sets *self_p to NULL. */
void sw_expert_destroy(sw_expert_t **self_p);

/* The next action for ep (the same episode the expert was made for) from its current state; writes
 * SW_ACTION_DIM values into action and returns the phase it acted in. */
sw_expert_phase_t sw_expert_act(sw_expert_t *x, const sw_episode_t *ep, double action[SW_ACTION_DIM]);

/* "approach", "descend", "close", "lift", "carry", "lower", "release", "retreat". */
const char *sw_expert_phase_name(sw_expert_phase_t phase);

/* The outcome of one expert episode (sw_expert_run). */
typedef struct {
  sw_ep_state_t state; /* success, max_steps or infra_error */
  int steps;           /* policy steps taken */
  char reason[512];    /* infra_error: the episode's reason */
} sw_expert_result_t;

/* Runs trial `trial` of task t with the expert to its end under opts. When on_step is given it is called with
 * the episode before each action is applied (the observation the action answers) and after the last step
 * (action NULL); a nonzero return stops the run early (-1 returned with the reason in err). Returns 0 with
 * the outcome in *res, or -1 with the reason in err when the episode or the expert cannot be made. */
int sw_expert_run(sw_task_t *t, int trial, const sw_episode_opts_t *opts,
                  int (*on_step)(void *ctx, const sw_episode_t *ep, const double *action), void *ctx,
                  sw_expert_result_t *res, char *err, size_t errlen);

/* `rsd-sim-worker expert --suite S --tasks all|0,3,5|0-4 --trials 0-49 [--json FILE] [--data DIR]
 *  [--wait-steps 10] [--max-steps 220]`: runs the expert on every (task, trial) pair and prints a per-task
 * table (successes / trials, mean steps of the successes) and the total; JSON with --json. argv[0] is the
 * subcommand's name. Returns 0 when every episode ran (whatever their outcome), 1 on a runtime error, 2 on
 * bad arguments. */
int sw_expert_cli(int argc, char **argv);

/* `rsd-sim-worker collect --suite S --tasks ... --trials ... [--size 128] -o FILE [--data DIR]`: runs the
 * expert with camera images and writes its successful episodes to FILE as HDF5 in the robomimic/LIBERO
 * layout (docs/simulation.md, "Demonstrations"). Returns 0, 1 on a runtime error (FILE is then not left
 * behind), 2 on bad arguments. */
int sw_collect_cli(int argc, char **argv);

#endif
