/* fake_sim_worker.c: a harness that plays the sim-worker side of the protocol without simulating, for
 * tests and benchmarks of the coordinator. It says HELLO, takes LEASEs up to its capacity, "runs" each
 * for a fixed time, and sends a RESULT whose outcome is a fixed function of (task, trial), resending it
 * until it is ACKed; it heartbeats, and leaves on BYE or DRAIN.
 *
 *   fake_sim_worker ENDPOINT CAPACITY EPISODE_MS [DIE_AFTER]
 *
 * DIE_AFTER k: after k RESULTs were acknowledged, the process kills itself (SIGKILL) the moment it holds
 * a lease, like a crashed worker. Outcome: success unless (7 * task + trial) % 3 == 0. */
#include <czmq.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "msg.h"

typedef struct {
  msg_t lease;      /* the LEASE as received */
  int64_t due_ms;   /* when its RESULT is sent */
  int64_t sent_ms;  /* when the RESULT was last sent (0: not yet) */
} s_job_t;

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: fake_sim_worker ENDPOINT CAPACITY EPISODE_MS [DIE_AFTER]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(120);
  uint32_t capacity = (uint32_t)atoi(argv[2]);
  int episode_ms = atoi(argv[3]), die_after = argc > 4 ? atoi(argv[4]) : -1;
  msg_error_t err;
  msg_sock_t *sock = msg_sock_new(ZMQ_DEALER, argv[1], false, NULL, NULL, &err);
  if (!sock) {
    fprintf(stderr, "fake_sim_worker: %s\n", err.text);
    return 2;
  }
  msg_t hello;
  msg_init(&hello, MSG_HELLO, (uint64_t)getpid());
  hello.hello.role = MSG_ROLE_SIM;
  snprintf(hello.hello.name, sizeof hello.hello.name, "fake-%d", (int)getpid());
  hello.hello.capacity = capacity;
  snprintf(hello.hello.software, sizeof hello.hello.software, "fake_sim_worker");
  msg_sock_send(sock, NULL, &hello, &err);

  s_job_t jobs[64];
  int njobs = 0, acked = 0;
  uint32_t heartbeat_ms = 1000;
  int64_t last_beat = zclock_mono();
  uint64_t seq = 0;
  zpoller_t *poller = zpoller_new(msg_sock_zsock(sock), NULL);
  for (;;) {
    if (zpoller_wait(poller, 5)) {
      msg_in_t *in = NULL;
      if (msg_sock_recv(sock, &in, &err) == MSG_OK) {
        const msg_t *m = &in->msg;
        if (m->type == MSG_WELCOME) heartbeat_ms = m->welcome.heartbeat_ms;
        if (m->type == MSG_LEASE && njobs < 64) {
          if (die_after >= 0 && acked >= die_after) raise(SIGKILL);
          jobs[njobs].lease = *m;
          jobs[njobs].due_ms = zclock_mono() + episode_ms;
          jobs[njobs].sent_ms = 0;
          njobs++;
        }
        if (m->type == MSG_ACK) {
          for (int i = 0; i < njobs; i++)
            if (jobs[i].lease.id == m->id) {
              jobs[i] = jobs[--njobs];
              acked++;
              break;
            }
        }
        if (m->type == MSG_BYE || m->type == MSG_DRAIN) {
          msg_in_destroy(&in);
          break;
        }
      }
      msg_in_destroy(&in);
    } else if (zpoller_terminated(poller)) {
      break;
    }
    int64_t now = zclock_mono();
    for (int i = 0; i < njobs; i++) {
      s_job_t *j = &jobs[i];
      if (now < j->due_ms || (j->sent_ms && now - j->sent_ms < 1000)) continue;
      const msg_lease_body_t *l = &j->lease.lease;
      msg_t r;
      msg_init(&r, MSG_RESULT, j->lease.id);
      snprintf(r.result.campaign, sizeof r.result.campaign, "%s", l->campaign);
      snprintf(r.result.variant, sizeof r.result.variant, "%s", l->variant);
      r.result.task = l->task;
      r.result.trial = l->trial;
      r.result.attempt = l->attempt;
      r.result.outcome = (7 * l->task + l->trial) % 3 == 0 ? MSG_OUTCOME_FAILURE : MSG_OUTCOME_SUCCESS;
      r.result.steps = 10 + l->trial;
      r.result.wall_ms = (uint64_t)episode_ms;
      r.result.has_worker = true;
      snprintf(r.result.worker, sizeof r.result.worker, "%s", hello.hello.name);
      msg_sock_send(sock, NULL, &r, &err);
      j->sent_ms = now;
    }
    if (now - last_beat >= heartbeat_ms) {
      last_beat = now;
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++seq);
      hb.heartbeat.has_leases = true;
      for (int i = 0; i < njobs; i++) hb.heartbeat.leases[hb.heartbeat.leases_count++] = jobs[i].lease.id;
      msg_sock_send(sock, NULL, &hb, &err);
    }
  }
  zpoller_destroy(&poller);
  msg_sock_destroy(&sock);
  return 0;
}
