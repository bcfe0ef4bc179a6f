/* episode_test.c: LIBERO's evaluation loop in C (episode.h) on an exported LIBERO-Spatial task: the wait
 * steps (at once, or one at a time), policy steps, the step limit, refused actions (wrong length, NaN, Inf,
 * before the wait steps are done, after the end), camera images sampled with the proprio, recorded frames,
 * several episodes side by side, and a broken state ending the episode as an infrastructure error instead
 * of the process. Needs the export that ops/setup.sh makes. */
#include "episode.h"

#include <math.h>
#include <string.h>

#include "check.h"

/* How many distinct byte values an image has: a rendered scene has many, a blank buffer one. */
static int s_variety(const uint8_t *img, size_t n) {
  int seen[256] = {0}, k = 0;
  for (size_t i = 0; i < n; i++) k += !seen[img[i]]++;
  return k;
}

int main(void) {
  char data[512], err[1024] = "";
  sw_data_dir(data, sizeof data);
  sw_task_t *t = sw_task_load(data, "libero_spatial", 0, err, sizeof err);
  CHECK(t != NULL, "load: %s", err);
  if (!t) return check_summary("episode_test");

  /* Options are checked. */
  sw_episode_opts_t bad = {.wait_steps = 10, .max_steps = 220, .image_size = 100};
  CHECK(!sw_episode_new(t, 0, &bad, err, sizeof err) && strstr(err, "image_size 100"), "size 100: %s", err);
  sw_episode_opts_t o = {.wait_steps = 10, .max_steps = 5, .image_size = 0};
  CHECK(!sw_episode_new(t, 50, &o, err, sizeof err) && strstr(err, "trial 50"), "trial 50: %s", err);
  sw_episode_opts_t rec_no_img = {.wait_steps = 10, .max_steps = 5, .record = true};
  CHECK(!sw_episode_new(t, 0, &rec_no_img, err, sizeof err) && strstr(err, "video"), "record without images: %s", err);

  /* Without images: the wait steps settle the scene, policy steps count, the limit ends the episode. */
  sw_episode_t *a = sw_episode_new(t, 3, &o, err, sizeof err);
  CHECK(a && a->state == SW_EP_RUNNING && a->steps == 0, "episode: %s", a ? a->reason : err);
  sw_episode_t *b = sw_episode_new(t, 3, &o, err, sizeof err); /* the same trial, independent data */
  CHECK(b != NULL, "second episode: %s", err);
  if (a && b) {
    CHECK(memcmp(a->proprio, b->proprio, sizeof a->proprio) == 0, "same trial, different first observation");
    double z[SW_ACTION_DIM] = {0, 0, 0, 0, 0, 0, -1};
    CHECK(sw_episode_step(a, z, 6, err, sizeof err) == -1 && strstr(err, "6 values"), "6 values: %s", err);
    z[2] = NAN;
    CHECK(sw_episode_step(a, z, 7, err, sizeof err) == -1 && strstr(err, "action[2]") && strstr(err, "nan"),
          "NaN: %s", err);
    z[2] = INFINITY;
    CHECK(sw_episode_step(a, z, 7, err, sizeof err) == -1 && strstr(err, "inf"), "Inf: %s", err);
    CHECK(a->steps == 0, "a refused action counted as a step");
    double up[SW_ACTION_DIM] = {0, 0, 1, 0, 0, 0, -1};
    double z0 = a->proprio[2];
    for (int i = 0; i < 5; i++) {
      CHECK(sw_episode_step(a, up, 7, err, sizeof err) == 0, "step %d: %s", i, err);
      CHECK(a->steps == i + 1, "steps %d after %d", a->steps, i + 1);
    }
    CHECK(a->proprio[2] > z0 + 0.05, "moving up 5 steps raised the eef from %.3f to %.3f only", z0, a->proprio[2]);
    CHECK(a->state == SW_EP_MAX_STEPS, "state after max_steps: %s", sw_ep_state_name(a->state));
    CHECK(sw_episode_step(a, up, 7, err, sizeof err) == -1 && strstr(err, "already ended"), "after end: %s", err);
    CHECK(b->steps == 0 && b->state == SW_EP_RUNNING, "stepping one episode moved the other");

    /* A broken state (NaN in qpos) is an infrastructure error for this episode, not a crash. */
    b->d->qpos[0] = NAN;
    CHECK(sw_episode_step(b, up, 7, err, sizeof err) == 0, "step on a broken state: %s", err);
    CHECK(b->state == SW_EP_INFRA_ERROR && strstr(b->reason, "mujoco"), "broken state: %s / '%s'",
          sw_ep_state_name(b->state), b->reason);
    CHECK(strstr(b->reason, "at step 1 (trial 3)") != NULL, "the reason does not name the step: '%s'", b->reason);
  }
  sw_episode_destroy(&a);
  sw_episode_destroy(&b);
  sw_episode_destroy(&b);

  /* With images: both cameras rendered at the observation's moment, frames recorded. */
  sw_episode_opts_t io = {.wait_steps = 10, .max_steps = 4, .image_size = 128, .record = true};
  sw_episode_t *c = sw_episode_new(t, 7, &io, err, sizeof err);
  CHECK(c != NULL, "episode with images: %s", err);
  if (c) {
    size_t n = 128 * 128 * 3;
    CHECK(s_variety(c->agentview, n) > 50 && s_variety(c->eye_in_hand, n) > 50, "images look blank (%d, %d values)",
          s_variety(c->agentview, n), s_variety(c->eye_in_hand, n));
    CHECK(c->nframes == 1, "frames after reset: %d", c->nframes);
    double up[SW_ACTION_DIM] = {0, 0, 1, 0, 0, 0, -1};
    for (int i = 0; i < 4; i++) CHECK(sw_episode_step(c, up, 7, err, sizeof err) == 0, "step: %s", err);
    /* the first observation's frame, then steps 2 and 4 (every SW_RECORD_EVERY = 2 steps) */
    CHECK(c->nframes == 3 && c->state == SW_EP_MAX_STEPS, "frames %d state %s", c->nframes,
          sw_ep_state_name(c->state));
    CHECK(memcmp(c->frames, c->frames + 2 * n, n) != 0, "the arm moved but the first and last frames are equal");
    CHECK(memcmp(c->frames + 2 * n, c->agentview, n) == 0, "the last frame is not the last observation");
  }
  sw_episode_destroy(&c);

  /* The wait steps one at a time (sw_episode_begin + sw_episode_wait_step, as the sim worker takes them
   * between its socket reads) end where sw_episode_new ends: the same state, proprio, images and frame. */
  sw_episode_t *whole = sw_episode_new(t, 5, &io, err, sizeof err);
  sw_episode_t *piece = sw_episode_begin(t, 5, &io, err, sizeof err);
  CHECK(whole && piece, "episodes for the wait steps: %s", err);
  if (whole && piece) {
    CHECK(piece->waits_left == 10 && piece->nframes == 0, "after begin: %d wait steps left, %d frames",
          piece->waits_left, piece->nframes);
    double up[SW_ACTION_DIM] = {0, 0, 1, 0, 0, 0, -1};
    CHECK(sw_episode_step(piece, up, 7, err, sizeof err) == -1 && strstr(err, "10 wait steps left"),
          "a policy step before the wait steps: %s", err);
    int taken = 0;
    while (piece->waits_left > 0 && piece->state == SW_EP_RUNNING && taken < 20) {
      CHECK(sw_episode_wait_step(piece, err, sizeof err) == 0, "wait step %d: %s", taken + 1, err);
      taken++;
    }
    CHECK(taken == 10 && piece->state == SW_EP_RUNNING && piece->steps == 0, "%d wait steps taken, state %s", taken,
          sw_ep_state_name(piece->state));
    size_t n = 128 * 128 * 3;
    CHECK(memcmp(whole->d->qpos, piece->d->qpos, sizeof(double) * (size_t)whole->m->nq) == 0 &&
              memcmp(whole->d->qvel, piece->d->qvel, sizeof(double) * (size_t)whole->m->nv) == 0,
          "the state after the wait steps one by one differs from sw_episode_new's");
    CHECK(memcmp(whole->proprio, piece->proprio, sizeof whole->proprio) == 0, "the first proprio differs");
    CHECK(memcmp(whole->agentview, piece->agentview, n) == 0 && memcmp(whole->eye_in_hand, piece->eye_in_hand, n) == 0,
          "the first images differ");
    CHECK(piece->nframes == 1 && memcmp(piece->frames, whole->frames, n) == 0, "first frame: %d frames",
          piece->nframes);
    CHECK(sw_episode_wait_step(piece, err, sizeof err) == -1 && strstr(err, "no wait step left"),
          "a wait step after the last: %s", err);
    CHECK(sw_episode_step(piece, up, 7, err, sizeof err) == 0 && piece->steps == 1, "first policy step: %s", err);
  }
  sw_episode_destroy(&whole);
  sw_episode_destroy(&piece);

  /* render_every 4 (a policy that replans every 4 steps): images only after steps 4, 8, ... */
  sw_episode_opts_t ro = {.wait_steps = 10, .max_steps = 8, .image_size = 128, .render_every = 4};
  sw_episode_t *e = sw_episode_new(t, 7, &ro, err, sizeof err);
  CHECK(e && e->images_fresh, "episode with render_every: %s", err);
  if (e) {
    size_t n = 128 * 128 * 3;
    static uint8_t first[128 * 128 * 3];
    memcpy(first, e->agentview, n);
    double up[SW_ACTION_DIM] = {0, 0, 1, 0, 0, 0, -1};
    int fresh = 0, stale_same = 0;
    for (int i = 1; i <= 4; i++) {
      CHECK(sw_episode_step(e, up, 7, err, sizeof err) == 0, "step %d: %s", i, err);
      fresh += e->images_fresh;
      stale_same += !e->images_fresh && memcmp(first, e->agentview, n) == 0;
    }
    CHECK(fresh == 1 && e->images_fresh && stale_same == 3, "fresh %d (want only after step 4), stale-and-unchanged %d",
          fresh, stale_same);
    CHECK(memcmp(first, e->agentview, n) != 0, "the image after step 4 is the first one");
  }
  sw_episode_destroy(&e);
  sw_episode_opts_t neg = {.wait_steps = 10, .max_steps = 8, .render_every = -1};
  CHECK(!sw_episode_new(t, 0, &neg, err, sizeof err) && strstr(err, "render_every -1"), "render_every -1: %s", err);
  sw_task_destroy(&t);
  sw_task_destroy(&t);
  return check_summary("episode_test");
}
