/* expert_test.c: the scripted expert (expert.h) on exported LIBERO-Spatial tasks: successes on a few trials
 * of three tasks (a bowl on the table, the bowl in the cabinet's drawer that needs a turned grasp, the bowl
 * on the cabinet), the phases in order, the same actions on a second run (determinism), the refusal of a
 * task without an On goal, and the `expert` subcommand's table and JSON. Needs the export ops/setup.sh makes. */
#include "expert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define S_MAX_T 256

/* Records the actions and phases of one run. */
typedef struct {
  int n;
  double actions[S_MAX_T][SW_ACTION_DIM];
} s_trace_t;

static int s_on_step(void *ctx, const sw_episode_t *ep, const double *action) {
  s_trace_t *tr = ctx;
  (void)ep;
  if (action && tr->n < S_MAX_T) memcpy(tr->actions[tr->n++], action, sizeof tr->actions[0]);
  return 0;
}

int main(void) {
  char data[512], err[1024] = "";
  sw_data_dir(data, sizeof data);
  const sw_episode_opts_t o = {.wait_steps = 10, .max_steps = 220};
  const int tasks[] = {0, 4, 9}, trials[] = {0, 7};
  for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++) {
    sw_task_t *t = sw_task_load(data, "libero_spatial", tasks[i], err, sizeof err);
    CHECK(t != NULL, "load task %d: %s", tasks[i], err);
    if (!t) continue;
    for (size_t j = 0; j < sizeof trials / sizeof trials[0]; j++) {
      s_trace_t a = {0};
      sw_expert_result_t res;
      int rc = sw_expert_run(t, trials[j], &o, s_on_step, &a, &res, err, sizeof err);
      CHECK(rc == 0, "task %d trial %d: %s", tasks[i], trials[j], err);
      CHECK(res.state == SW_EP_SUCCESS, "task %d trial %d: %s after %d steps %s", tasks[i], trials[j],
            sw_ep_state_name(res.state), res.steps, res.reason);
      CHECK(res.steps == a.n && res.steps > 20 && res.steps <= 220, "task %d trial %d: %d steps, %d actions",
            tasks[i], trials[j], res.steps, a.n);
      /* every action within the controller's input range, the gripper fully open or closed */
      int bad = 0;
      for (int k = 0; k < a.n; k++) {
        for (int c = 0; c < 6; c++) bad += !(a.actions[k][c] >= -1 && a.actions[k][c] <= 1);
        bad += a.actions[k][6] != 1 && a.actions[k][6] != -1;
      }
      CHECK(bad == 0, "task %d trial %d: %d action values out of range", tasks[i], trials[j], bad);
    }

    /* Determinism and phases: the same trial twice gives the same actions; the phases come in order (or start
     * over with a new grasp: task 4's trial 3 needs one). */
    sw_episode_t *e1 = sw_episode_new(t, 3, &o, err, sizeof err), *e2 = sw_episode_new(t, 3, &o, err, sizeof err);
    CHECK(e1 && e2, "episodes: %s", err);
    sw_expert_t *x1 = e1 ? sw_expert_new(e1, err, sizeof err) : NULL;
    sw_expert_t *x2 = e2 ? sw_expert_new(e2, err, sizeof err) : NULL;
    CHECK(x1 && x2, "experts: %s", err);
    if (x1 && x2) {
      int differ = 0, order_ok = 1;
      sw_expert_phase_t last = SW_EXPERT_APPROACH;
      bool closed = false;
      while (e1->state == SW_EP_RUNNING && e2->state == SW_EP_RUNNING) {
        double a1[SW_ACTION_DIM], a2[SW_ACTION_DIM];
        sw_expert_phase_t p = sw_expert_act(x1, e1, a1);
        sw_expert_act(x2, e2, a2);
        differ += memcmp(a1, a2, sizeof a1) != 0;
        order_ok &= p >= last || p == SW_EXPERT_APPROACH; /* forward, or back to a new grasp */
        closed |= p == SW_EXPERT_CLOSE;
        last = p;
        sw_episode_step(e1, a1, SW_ACTION_DIM, err, sizeof err);
        sw_episode_step(e2, a2, SW_ACTION_DIM, err, sizeof err);
      }
      CHECK(differ == 0, "task %d trial 3: %d actions differ between two runs", tasks[i], differ);
      CHECK(e1->state == SW_EP_SUCCESS && e1->steps == e2->steps, "task %d trial 3: %s in %d vs %d steps", tasks[i],
            sw_ep_state_name(e1->state), e1->steps, e2->steps);
      CHECK(order_ok && closed && last >= SW_EXPERT_CARRY, "task %d: phases out of order or skipped (last %s)",
            tasks[i], sw_expert_phase_name(last));
    }
    sw_expert_destroy(&x1);
    sw_expert_destroy(&x1);
    sw_expert_destroy(&x2);

    /* A task without an On(a, b) goal is refused by name. */
    if (e1) {
      int saved = t->scene->ngoals;
      t->scene->ngoals = 0;
      CHECK(sw_expert_new(e1, err, sizeof err) == NULL && strstr(err, "On(a, b)"), "no goal: %s", err);
      t->scene->ngoals = saved;
    }
    sw_episode_destroy(&e1);
    sw_episode_destroy(&e2);
    sw_task_destroy(&t);
  }
  CHECK(strcmp(sw_expert_phase_name(SW_EXPERT_LOWER), "lower") == 0 && strcmp(sw_expert_phase_name(99), "?") == 0,
        "phase names");

  /* The `expert` subcommand: its JSON counts what it ran; bad arguments are refused with status 2. */
  char json_path[] = "/tmp/rsd_expert_test_XXXXXX";
  int fd = mkstemp(json_path);
  CHECK(fd >= 0, "mkstemp");
  if (fd >= 0) close(fd);
  char *argv[] = {"expert", "--suite", "libero_spatial", "--tasks", "2", "--trials", "0-1", "--json", json_path, NULL};
  CHECK(sw_expert_cli(9, argv) == 0, "expert subcommand failed");
  json_error_t jerr;
  json_t *doc = json_load_file(json_path, 0, &jerr);
  CHECK(doc != NULL, "json: %s", jerr.text);
  if (doc) {
    json_t *tot = json_object_get(doc, "total"), *t0 = json_array_get(json_object_get(doc, "tasks"), 0);
    CHECK(json_integer_value(json_object_get(tot, "trials")) == 2 &&
              json_integer_value(json_object_get(tot, "successes")) == 2,
          "json total: %lld/%lld", json_integer_value(json_object_get(tot, "successes")),
          json_integer_value(json_object_get(tot, "trials")));
    CHECK(json_integer_value(json_object_get(t0, "task")) == 2 &&
              strstr(json_string_value(json_object_get(t0, "instruction")), "table center"),
          "json task entry");
  }
  json_decref(doc);
  unlink(json_path);
  char *bad1[] = {"expert", "--suite", "libero_spatial", "--tasks", "10", NULL};
  CHECK(sw_expert_cli(5, bad1) == 2, "task 10 accepted");
  char *bad2[] = {"expert", "--suite", "libero_spatial", "--trials", "5-2", NULL};
  CHECK(sw_expert_cli(5, bad2) == 2, "trials 5-2 accepted");
  char *bad3[] = {"expert", "--tasks", "0", NULL};
  CHECK(sw_expert_cli(3, bad3) == 2, "missing --suite accepted");
  return check_summary("expert_test");
}
