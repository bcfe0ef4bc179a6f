/* fake_sim_worker.c: a harness that plays the sim-worker side of the protocol without simulating, for
 * tests of the coordinator. It says HELLO, takes LEASEs up to its capacity, "runs" each for a fixed time,
 * and sends a RESULT whose outcome is a fixed function of (task, trial), resending it until it is ACKed;
 * it heartbeats, and leaves on BYE or DRAIN.
 *
 *   fake_sim_worker [--persist] [--lose-lease K] [--keys DIR] ENDPOINT|@FILE CAPACITY EPISODE_MS [DIE_AFTER]
 *
 * ENDPOINT is a ZeroMQ endpoint; @FILE names a file that holds one (a campaign's coordinator.endpoint),
 * read again at every reconnect, so the worker follows a restarted coordinator to a new port.
 * Coordinator restarts (docs/protocol.md 8.1 rule 5): when nothing arrives from the coordinator for
 * liveness x heartbeat_ms, or it answers ERROR 21 (it does not know this worker), the worker abandons the
 * episodes still running, keeps the RESULTs sent but not ACKed, opens a new socket, and says HELLO
 * (a new nonce) every second until a WELCOME arrives; then it resends the kept RESULTs. A WELCOME for
 * another campaign than the first one (another coordinator took the old port) is answered with BYE.
 * --persist: a BYE from the coordinator (it stopped, e.g. Ctrl-C) does not end the process either; the
 * worker rejoins the same way, so a test can stop and restart the coordinator under it.
 * DIE_AFTER k: after k RESULTs were acknowledged, the process kills itself (SIGKILL) the moment it holds
 * a lease, like a crashed worker. --lose-lease K: the K-th LEASE (from 1) is dropped as if it never arrived
 * (not run, never listed in a HEARTBEAT), like a LEASE lost on a reconnecting connection. --keys DIR: over
 * CURVE with DIR's server.cert and client.cert_secret (msg_keys_client). Outcome: success unless (7 * task + trial) % 3 == 0.
 * It logs to stderr each WELCOME ("welcomed"), each reconnect ("rejoining") and each ACK that is not
 * "stored" ("ACK duplicate"). */
#include <czmq.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "msg.h"

#define S_MAX_JOBS 256
#define S_JOIN_RETRY_MS 1000

typedef struct {
  msg_t lease;     /* the LEASE as received */
  int64_t due_ms;  /* when its RESULT is sent */
  int64_t sent_ms; /* when the RESULT was last sent (0: not yet) */
} s_job_t;

static s_job_t s_jobs[S_MAX_JOBS];

/* The endpoint: the argument itself, or the first line of the file it names with '@'. */
static bool s_endpoint(const char *arg, char *out, size_t cap) {
  if (arg[0] != '@') {
    snprintf(out, cap, "%s", arg);
    return true;
  }
  FILE *f = fopen(arg + 1, "r");
  if (!f) return false;
  bool ok = fgets(out, (int)cap, f) != NULL;
  fclose(f);
  out[strcspn(out, "\r\n")] = '\0';
  return ok && out[0];
}

int main(int argc, char **argv) {
  bool persist = false;
  int lose_lease = 0, leases_seen = 0;
  const char *keys = NULL;
  while (argc > 1 && strncmp(argv[1], "--", 2) == 0) {
    if (strcmp(argv[1], "--persist") == 0) {
      persist = true;
    } else if (strcmp(argv[1], "--lose-lease") == 0 && argc > 2) {
      lose_lease = atoi(argv[2]);
      argv++;
      argc--;
    } else if (strcmp(argv[1], "--keys") == 0 && argc > 2) {
      keys = argv[2];
      argv++;
      argc--;
    } else {
      break;
    }
    argv++;
    argc--;
  }
  if (argc < 4) {
    fprintf(stderr, "usage: fake_sim_worker [--persist] [--lose-lease K] [--keys DIR] ENDPOINT|@FILE CAPACITY "
                    "EPISODE_MS [DIE_AFTER]\n");
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  alarm(120);
  uint32_t capacity = (uint32_t)atoi(argv[2]);
  int episode_ms = atoi(argv[3]), die_after = argc > 4 ? atoi(argv[4]) : -1;
  if (capacity < 1 || capacity > S_MAX_JOBS) {
    fprintf(stderr, "fake_sim_worker: capacity %u is not in 1..%d\n", capacity, S_MAX_JOBS);
    return 2;
  }
  char name[MSG_NAME_MAX + 1], campaign[MSG_LABEL_MAX + 1] = ""; /* the campaign of the first WELCOME */
  snprintf(name, sizeof name, "fake-%d", (int)getpid());
  msg_error_t err;
  msg_sock_opts_t so = msg_sock_opts_default();
  zcert_t *cert = NULL;
  char server_key[41] = "";
  if (keys && msg_keys_client(keys, &cert, server_key, &err)) {
    fprintf(stderr, "fake_sim_worker: --keys: %s\n", err.text);
    return 2;
  }
  so.curve_cert = cert;
  so.curve_server_key = server_key;
  msg_sock_t *sock = NULL;
  zpoller_t *poller = NULL;
  bool welcomed = false;
  uint64_t nonce = (uint64_t)getpid() << 20, seq = 0;
  uint32_t heartbeat_ms = 1000, liveness = 3;
  int64_t last_beat = 0, last_heard = 0, hello_sent = -S_JOIN_RETRY_MS;
  int njobs = 0, acked = 0;
  for (;;) {
    int64_t now = zclock_mono();
    /* Join, or rejoin: a new socket to the endpoint as it is now, and a HELLO. */
    if (!welcomed && now - hello_sent >= S_JOIN_RETRY_MS) {
      hello_sent = now;
      char endpoint[512];
      zpoller_destroy(&poller);
      msg_sock_destroy(&sock);
      if (s_endpoint(argv[1], endpoint, sizeof endpoint) &&
          (sock = msg_sock_new(ZMQ_DEALER, endpoint, false, &so, NULL, &err)) != NULL) {
        poller = zpoller_new(msg_sock_zsock(sock), NULL);
        msg_t hello;
        msg_init(&hello, MSG_HELLO, ++nonce);
        hello.hello.role = MSG_ROLE_SIM;
        snprintf(hello.hello.name, sizeof hello.hello.name, "%s", name);
        hello.hello.capacity = capacity;
        snprintf(hello.hello.software, sizeof hello.hello.software, "fake_sim_worker");
        msg_sock_send(sock, NULL, &hello, &err);
      }
    }
    if (!poller) {
      zclock_sleep(10);
      continue;
    }
    if (zpoller_wait(poller, 5)) {
      msg_in_t *in = NULL;
      bool leave = false, rejoin = false;
      if (msg_sock_recv(sock, &in, &err) == MSG_OK) {
        const msg_t *m = &in->msg;
        last_heard = zclock_mono();
        bool other = m->type == MSG_WELCOME && campaign[0] && m->welcome.has_campaign && strcmp(campaign, m->welcome.campaign) != 0;
        if (m->type == MSG_WELCOME && !welcomed && m->id == nonce && other) {
          /* Another coordinator took our old port: not our campaign; leave it and look again. */
          fprintf(stderr, "%s: welcomed by campaign %s, not %s: leaving it\n", name, m->welcome.campaign, campaign);
          msg_t bye;
          msg_init(&bye, MSG_BYE, 0);
          msg_sock_send(sock, NULL, &bye, &err);
        } else if (m->type == MSG_WELCOME && !welcomed && m->id == nonce) {
          welcomed = true;
          if (m->welcome.has_campaign) snprintf(campaign, sizeof campaign, "%s", m->welcome.campaign);
          heartbeat_ms = m->welcome.heartbeat_ms;
          liveness = m->welcome.liveness;
          for (int i = 0; i < njobs; i++) s_jobs[i].sent_ms = 0; /* resend the unACKed RESULTs now */
          fprintf(stderr, "%s: welcomed as worker %llu, %d unACKed RESULTs to resend\n", name,
                  (unsigned long long)m->welcome.worker_id, njobs);
        }
        if (m->type == MSG_LEASE && welcomed) {
          if (die_after >= 0 && acked >= die_after) raise(SIGKILL);
          if (++leases_seen == lose_lease) {
            fprintf(stderr, "%s: losing lease %llu\n", name, (unsigned long long)m->id);
          } else if (njobs < (int)capacity) {
            s_jobs[njobs].lease = *m;
            s_jobs[njobs].due_ms = zclock_mono() + episode_ms;
            s_jobs[njobs].sent_ms = 0;
            njobs++;
          } else {
            msg_error_t over = {.code = MSG_ERR_OVERLOADED}, me;
            snprintf(over.text, sizeof over.text, "lease %llu beyond capacity %u", (unsigned long long)m->id, capacity);
            msg_sock_send_error(sock, NULL, m, &over, &me);
          }
        }
        if (m->type == MSG_ACK) {
          for (int i = 0; i < njobs; i++)
            if (s_jobs[i].lease.id == m->id && s_jobs[i].sent_ms) {
              if (m->ack.status != MSG_ACK_STORED)
                fprintf(stderr, "%s: ACK %s for lease %llu\n", name, msg_ack_status_names[m->ack.status],
                        (unsigned long long)m->id);
              s_jobs[i] = s_jobs[--njobs];
              acked++;
              break;
            }
        }
        if (m->type == MSG_ERROR && m->error.code == MSG_ERR_UNEXPECTED && welcomed) {
          fprintf(stderr, "%s: the coordinator does not know this worker (a restart): rejoining\n", name);
          rejoin = true;
        }
        if (m->type == MSG_BYE || m->type == MSG_DRAIN) {
          if (persist) {
            fprintf(stderr, "%s: %s from the coordinator: rejoining\n", name, msg_type_name(m->type));
            rejoin = true;
          }
          else leave = true;
        }
      }
      msg_in_destroy(&in);
      if (leave) break;
      if (rejoin) {
        welcomed = false;
        hello_sent = zclock_mono() - S_JOIN_RETRY_MS / 2; /* give a stopping coordinator a moment */
      }
    } else if (zpoller_terminated(poller)) {
      break;
    }
    now = zclock_mono();
    if (welcomed && now - last_heard > (int64_t)heartbeat_ms * liveness) {
      welcomed = false;
      hello_sent = now - S_JOIN_RETRY_MS;
      fprintf(stderr, "%s: coordinator silent for %lld ms: rejoining\n", name, (long long)(now - last_heard));
    }
    if (!welcomed) {
      /* Episodes still running are abandoned (their leases died with the session); RESULTs sent but
       * not ACKed are kept for the next session. */
      for (int i = 0; i < njobs;)
        if (s_jobs[i].sent_ms == 0 && s_jobs[i].due_ms > 0) s_jobs[i] = s_jobs[--njobs];
        else i++;
      for (int i = 0; i < njobs; i++) s_jobs[i].due_ms = 0; /* marks "kept": resent after the WELCOME */
      continue;
    }
    for (int i = 0; i < njobs; i++) {
      s_job_t *j = &s_jobs[i];
      if (now < j->due_ms || (j->sent_ms && now - j->sent_ms < (int64_t)heartbeat_ms * liveness)) continue;
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
      snprintf(r.result.worker, sizeof r.result.worker, "%s", name);
      msg_sock_send(sock, NULL, &r, &err);
      j->sent_ms = now;
    }
    if (now - last_beat >= heartbeat_ms) {
      last_beat = now;
      msg_t hb;
      msg_init(&hb, MSG_HEARTBEAT, ++seq);
      hb.heartbeat.has_leases = true;
      for (int i = 0; i < njobs && i < MSG_MAX_LEASES; i++) hb.heartbeat.leases[hb.heartbeat.leases_count++] = s_jobs[i].lease.id;
      msg_sock_send(sock, NULL, &hb, &err);
    }
  }
  zpoller_destroy(&poller);
  msg_sock_destroy(&sock);
  zcert_destroy(&cert);
  return 0;
}
