/* coordinator_bench.c: the coordinator's capacity. One process plays many sim workers (one DEALER
 * socket each, in one thread, episode time 0) against a real `rsd run` process serving a campaign of
 * 8,000 expert episodes (10 tasks x 50 trials x 16 variants) in a temporary directory. Per round:
 *
 *   hold   every worker says HELLO with capacity C and keeps the LEASEs it gets, heartbeating, for
 *          3 s (three of the coordinator's heartbeat periods): how many leases the coordinator hands
 *          out and keeps alive at once (target >= 1,000);
 *   probe  one worker returns one lease at a time while the others hold theirs: the lease round trip
 *          (RESULT sent -> the replacement LEASE received, which includes the ACK and the journal's
 *          group commit) with the coordinator otherwise idle;
 *   churn  every worker returns every lease the moment it has it, until the campaign is complete:
 *          results/s sustained (ACKs "stored" per second over the middle 80% of the phase; target
 *          >= 2,000), and the RESULT -> ACK time under that load (a closed loop with W x C leases in
 *          flight, so mostly queueing: Little's law).
 *
 * The journal's commit latency (co_journal_record_results wall time, p50 / p99 over every commit of the
 * run: the probe's single-result commits and the churn's large batches; commits; the largest batch; and
 * the commit time per result) comes from the line `rsd run` prints at its end. Prints a table; --json PATH writes the same
 * numbers as JSON. A program, not a test: it asserts nothing about timing (docs/benchmarks.md keeps the
 * numbers). The temporary directories and the rsd processes it makes are removed or killed on exit.
 *
 *   coordinator_bench [--rsd PATH] [--workers W] [--capacity C] [--rounds R] [--dir DIR] [--json PATH] */
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_host.h"
#include "msg.h"

#ifndef RSD_BIN
#define RSD_BIN "rsd"
#endif

#define S_EPISODES 8000
#define S_MAX_LEASE_ID 65536
#define S_PROBES 300

typedef struct {
  uint64_t id;
  char variant[MSG_NAME_MAX + 1];
  uint32_t task, trial, attempt;
} s_lease_t;

typedef struct {
  msg_sock_t *sock;
  zsock_t *zs;
  uint64_t nonce;
  bool welcomed, bye;
  s_lease_t *held; /* capacity entries: leases received, RESULT not ACKed */
  int nheld;
  int unsent;      /* held[nheld - unsent .. nheld) have no RESULT sent yet (in churn: none) */
  int64_t last_beat_us;
  int64_t probe_sent_us; /* probe: when the RESULT went out (0: none waiting) */
} s_peer_t;

typedef struct {
  uint64_t held_max;
  double fill_s;
  double probe_p50_ms, probe_p99_ms;
  double churn_results_s, churn_all_results_s, churn_s;
  uint64_t churn_results;
  double ack_p50_ms, ack_p99_ms;
  double commit_p50_ms, commit_p99_ms, commit_ms_per_result;
  uint64_t commits, largest_batch, stored, duplicates;
  int rsd_status;
} s_round_t;

static char s_campaign[MSG_NAME_MAX + 1] = "bench";
static pid_t s_rsd_pid;
static char s_tmp[256];
static int64_t s_sent_us[S_MAX_LEASE_ID]; /* RESULT send time per lease id (churn) */

static void s_cleanup(void) {
  if (s_rsd_pid > 0) {
    kill(s_rsd_pid, SIGKILL);
    waitpid(s_rsd_pid, NULL, 0);
    s_rsd_pid = 0;
  }
  if (s_tmp[0]) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_tmp);
    if (system(cmd) != 0) fprintf(stderr, "coordinator_bench: could not remove %s\n", s_tmp);
    s_tmp[0] = '\0';
  }
}

static void s_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "coordinator_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  s_cleanup();
  exit(1);
}

static int s_cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static double s_pct_ms(int64_t *v, size_t n, double q) {
  if (n == 0) return 0;
  qsort(v, n, sizeof *v, s_cmp_i64);
  return (double)v[(size_t)((double)(n - 1) * q)] / 1000.0;
}

static void s_send_result(s_peer_t *p, const s_lease_t *l) {
  msg_t r;
  msg_error_t err;
  msg_init(&r, MSG_RESULT, l->id);
  snprintf(r.result.campaign, sizeof r.result.campaign, "%s", s_campaign);
  snprintf(r.result.variant, sizeof r.result.variant, "%s", l->variant);
  r.result.task = l->task;
  r.result.trial = l->trial;
  r.result.attempt = l->attempt;
  r.result.outcome = (l->task + l->trial) % 2 ? MSG_OUTCOME_SUCCESS : MSG_OUTCOME_FAILURE;
  r.result.steps = 100;
  r.result.wall_ms = 0;
  if (msg_sock_send(p->sock, NULL, &r, &err)) s_die("RESULT: %s", err.text);
  if (l->id < S_MAX_LEASE_ID) s_sent_us[l->id] = zclock_usecs();
}

typedef enum { S_HOLD, S_PROBE, S_CHURN } s_phase_t;

typedef struct {
  s_peer_t *peers;
  int npeers, capacity;
  s_phase_t phase;
  uint64_t held;          /* leases held by all peers */
  int64_t *acks_us;       /* churn: time of each "stored" ACK */
  size_t nacks, cap_acks;
  int64_t *ack_lat_us;    /* churn: RESULT -> ACK */
  size_t nack_lat;
  int64_t probe_rt_us[S_PROBES];
  size_t nprobe;
  int byes;
} s_bench_t;

/* Handles everything waiting on peer p. */
static void s_service(s_bench_t *b, s_peer_t *p) {
  while (zsock_events(p->zs) & ZMQ_POLLIN) {
    msg_in_t *in = NULL;
    msg_error_t err;
    if (msg_sock_recv(p->sock, &in, &err) != MSG_OK) {
      msg_in_destroy(&in);
      continue;
    }
    const msg_t *m = &in->msg;
    int64_t now = zclock_usecs();
    if (m->type == MSG_WELCOME && m->id == p->nonce) p->welcomed = true;
    if (m->type == MSG_LEASE && p->nheld < b->capacity) {
      s_lease_t *l = &p->held[p->nheld++];
      l->id = m->id;
      snprintf(l->variant, sizeof l->variant, "%s", m->lease.variant);
      l->task = m->lease.task;
      l->trial = m->lease.trial;
      l->attempt = m->lease.attempt;
      b->held++;
      if (p->probe_sent_us && b->nprobe < S_PROBES) {
        b->probe_rt_us[b->nprobe++] = now - p->probe_sent_us;
        p->probe_sent_us = 0;
      }
      if (b->phase == S_CHURN) s_send_result(p, l);
    }
    if (m->type == MSG_ACK) {
      for (int i = 0; i < p->nheld; i++)
        if (p->held[i].id == m->id) {
          p->held[i] = p->held[--p->nheld];
          b->held--;
          break;
        }
      if (b->phase == S_CHURN && m->ack.status == MSG_ACK_STORED && b->nacks < b->cap_acks) {
        b->acks_us[b->nacks++] = now;
        if (m->id < S_MAX_LEASE_ID && s_sent_us[m->id]) b->ack_lat_us[b->nack_lat++] = now - s_sent_us[m->id];
      }
    }
    if (m->type == MSG_BYE && !p->bye) {
      p->bye = true;
      b->byes++;
    }
    msg_in_destroy(&in);
  }
}

/* Polls every peer once (up to wait_ms), services them, heartbeats. */
static void s_pump(s_bench_t *b, zmq_pollitem_t *items, int wait_ms) {
  if (zmq_poll(items, b->npeers, wait_ms) < 0 && errno != EINTR) s_die("zmq_poll: %s", zmq_strerror(errno));
  int64_t now = zclock_usecs();
  for (int i = 0; i < b->npeers; i++) {
    s_peer_t *p = &b->peers[i];
    if (items[i].revents & ZMQ_POLLIN) s_service(b, p);
    if (p->welcomed && !p->bye && now - p->last_beat_us >= 1000000) {
      p->last_beat_us = now;
      msg_t hb;
      msg_error_t err;
      msg_init(&hb, MSG_HEARTBEAT, (uint64_t)now);
      hb.heartbeat.has_leases = true;
      for (int k = 0; k < p->nheld && k < MSG_MAX_LEASES; k++) hb.heartbeat.leases[hb.heartbeat.leases_count++] = p->held[k].id;
      msg_sock_send(p->sock, NULL, &hb, &err);
    }
  }
}

static void s_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) s_die("cannot write %s: %s", path, strerror(errno));
}

static void s_round(const char *rsd, const char *base, int nworkers, int capacity, s_round_t *out) {
  memset(out, 0, sizeof *out);
  memset(s_sent_us, 0, sizeof s_sent_us);
  snprintf(s_tmp, sizeof s_tmp, "%s/rsd-cobench-XXXXXX", base);
  if (!mkdtemp(s_tmp)) s_die("mkdtemp in %s: %s", base, strerror(errno));
  char cfg[400], outdir[400], log[400], text[4096];
  snprintf(cfg, sizeof cfg, "%s/bench.yaml", s_tmp);
  snprintf(outdir, sizeof outdir, "%s/run", s_tmp);
  snprintf(log, sizeof log, "%s/rsd.log", s_tmp);
  int k = snprintf(text, sizeof text,
                   "name: %s\nsuite: libero_spatial\ntasks: all\ntrials: 50\noutput: %s\n"
                   "workers:\n  sim_workers: 0\nleases:\n  heartbeat_ms: 1000\n  liveness: 5\nbind:\n  coordinator: tcp://127.0.0.1:*\nvariants:\n",
                   s_campaign, outdir);
  for (int v = 0; v < 16; v++) k += snprintf(text + k, sizeof text - (size_t)k, "  - name: v%02d\n    policy: expert\n", v);
  s_write(cfg, text);

  s_rsd_pid = fork();
  if (s_rsd_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!freopen(log, "w", stderr)) _exit(126);
    execl(rsd, rsd, "run", cfg, (char *)NULL);
    _exit(127);
  }
  char path[500], endpoint[256] = "";
  snprintf(path, sizeof path, "%s/coordinator.endpoint", outdir);
  for (int i = 0; i < 1000 && !endpoint[0]; i++) {
    FILE *f = fopen(path, "r");
    if (f) {
      if (!fgets(endpoint, sizeof endpoint, f)) endpoint[0] = '\0';
      fclose(f);
      endpoint[strcspn(endpoint, "\n")] = '\0';
    }
    if (!endpoint[0]) usleep(10000);
  }
  if (!endpoint[0]) s_die("rsd wrote no endpoint (log %s)", log);

  s_bench_t b = {0};
  b.npeers = nworkers;
  b.capacity = capacity;
  b.peers = calloc((size_t)nworkers, sizeof *b.peers);
  zmq_pollitem_t *items = calloc((size_t)nworkers, sizeof *items);
  b.cap_acks = S_EPISODES;
  b.acks_us = calloc(b.cap_acks, sizeof *b.acks_us);
  b.ack_lat_us = calloc(b.cap_acks, sizeof *b.ack_lat_us);
  if (!b.peers || !items || !b.acks_us || !b.ack_lat_us) s_die("out of memory");
  for (int i = 0; i < nworkers; i++) {
    s_peer_t *p = &b.peers[i];
    msg_error_t err;
    p->sock = msg_sock_new(ZMQ_DEALER, endpoint, false, NULL, NULL, &err);
    if (!p->sock) s_die("worker %d: %s", i, err.text);
    p->zs = msg_sock_zsock(p->sock);
    p->held = calloc((size_t)capacity, sizeof *p->held);
    if (!p->held) s_die("out of memory");
    items[i].socket = zsock_resolve(p->zs);
    items[i].events = ZMQ_POLLIN;
    msg_t hello;
    msg_init(&hello, MSG_HELLO, p->nonce = (uint64_t)i + 1);
    hello.hello.role = MSG_ROLE_SIM;
    snprintf(hello.hello.name, sizeof hello.hello.name, "bench-%d", i);
    hello.hello.capacity = (uint32_t)capacity;
    snprintf(hello.hello.software, sizeof hello.hello.software, "coordinator_bench");
    if (msg_sock_send(p->sock, NULL, &hello, &err)) s_die("HELLO: %s", err.text);
  }

  /* hold: fill every worker, then keep the leases for three heartbeat periods. */
  b.phase = S_HOLD;
  uint64_t want = (uint64_t)nworkers * (uint64_t)capacity;
  int64_t t0 = zclock_usecs(), filled = 0;
  while (zclock_usecs() - t0 < 20000000) {
    s_pump(&b, items, 10);
    if (!filled && b.held >= want) filled = zclock_usecs();
    if (filled && zclock_usecs() - filled >= 3000000) break;
  }
  out->held_max = b.held;
  out->fill_s = filled ? (double)(filled - t0) / 1e6 : -1;
  if (b.byes) s_die("%d workers got BYE while holding leases (log %s)", b.byes, log);

  /* probe: worker 0 returns one lease at a time. */
  b.phase = S_PROBE;
  s_peer_t *p0 = &b.peers[0];
  for (int i = 0; i < S_PROBES && p0->nheld > 0; i++) {
    s_lease_t l = p0->held[0];
    p0->probe_sent_us = zclock_usecs();
    s_send_result(p0, &l);
    int64_t start = zclock_usecs();
    while (p0->probe_sent_us && zclock_usecs() - start < 2000000) s_pump(&b, items, 1);
    p0->probe_sent_us = 0;
  }
  int64_t probes[S_PROBES];
  memcpy(probes, b.probe_rt_us, b.nprobe * sizeof probes[0]);
  out->probe_p50_ms = s_pct_ms(probes, b.nprobe, 0.5);
  out->probe_p99_ms = s_pct_ms(probes, b.nprobe, 0.99);

  /* churn: everything back at once, then every lease the moment it arrives, until the campaign ends. */
  b.phase = S_CHURN;
  int64_t c0 = zclock_usecs();
  for (int i = 0; i < nworkers; i++)
    for (int h = 0; h < b.peers[i].nheld; h++) s_send_result(&b.peers[i], &b.peers[i].held[h]);
  int status = -1;
  while (zclock_usecs() - c0 < 120000000) {
    s_pump(&b, items, 10);
    int st;
    if (waitpid(s_rsd_pid, &st, WNOHANG) == s_rsd_pid) { /* it exits once the campaign is complete */
      s_rsd_pid = 0;
      status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
  }
  out->rsd_status = status;
  out->churn_results = b.nacks;
  if (b.nacks >= 10) {
    size_t lo = b.nacks / 10, hi = b.nacks - 1 - b.nacks / 10;
    out->churn_results_s = (double)(hi - lo) / ((double)(b.acks_us[hi] - b.acks_us[lo]) / 1e6);
    out->churn_s = (double)(b.acks_us[b.nacks - 1] - c0) / 1e6;
    out->churn_all_results_s = (double)b.nacks / out->churn_s;
  }
  out->ack_p50_ms = s_pct_ms(b.ack_lat_us, b.nack_lat, 0.5);
  out->ack_p99_ms = s_pct_ms(b.ack_lat_us, b.nack_lat, 0.99);

  /* rsd's own figures: "[rsd] this run: N results (S stored, D duplicates) in C commits (largest L),
   * commit p50 X ms p99 Y ms; ..." */
  FILE *f = fopen(log, "r");
  char line[1024];
  while (f && fgets(line, sizeof line, f)) {
    unsigned long long results, stored, dups, commits, largest;
    double p50, p99, total;
    if (sscanf(line, "[rsd] this run: %llu results (%llu stored, %llu duplicates) in %llu commits (largest %llu), commit p50 %lf ms p99 %lf ms, %lf ms in all",
               &results, &stored, &dups, &commits, &largest, &p50, &p99, &total) == 8) {
      out->commit_ms_per_result = results ? total / (double)results : 0;
      out->stored = stored;
      out->duplicates = dups;
      out->commits = commits;
      out->largest_batch = largest;
      out->commit_p50_ms = p50;
      out->commit_p99_ms = p99;
    }
  }
  if (f) fclose(f);
  if (status != 0 || out->stored == 0) {
    fprintf(stderr, "coordinator_bench: rsd exited %d; its log:\n", status);
    f = fopen(log, "r");
    while (f && fgets(line, sizeof line, f)) fputs(line, stderr);
    if (f) fclose(f);
  }
  for (int i = 0; i < nworkers; i++) {
    msg_sock_destroy(&b.peers[i].sock);
    free(b.peers[i].held);
  }
  free(b.peers);
  free(items);
  free(b.acks_us);
  free(b.ack_lat_us);
  s_cleanup();
}

static int s_cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *rsd = RSD_BIN, *json = NULL, *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  int nworkers = 128, capacity = 16, rounds = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--rsd") == 0 && i + 1 < argc) rsd = argv[++i];
    else if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc) nworkers = atoi(argv[++i]);
    else if (strcmp(argv[i], "--capacity") == 0 && i + 1 < argc) capacity = atoi(argv[++i]);
    else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) base = argv[++i];
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) json = argv[++i];
    else {
      fprintf(stderr, "usage: coordinator_bench [--rsd PATH] [--workers W] [--capacity C] [--rounds R] [--dir DIR] [--json PATH]\n");
      return 2;
    }
  }
  if (nworkers < 1 || nworkers > 4096 || capacity < 1 || capacity > 256 || rounds < 1 || rounds > 20 ||
      (long)nworkers * capacity > S_EPISODES / 2) {
    fprintf(stderr, "coordinator_bench: need 1..4096 workers, capacity 1..256, 1..20 rounds, workers x capacity <= %d\n",
            S_EPISODES / 2);
    return 2;
  }
  zsys_init();
  zsys_set_max_sockets(nworkers + 64);
  zsys_handler_set(NULL);
  signal(SIGPIPE, SIG_IGN);
  atexit(s_cleanup);
  char cpu[128];
  bench_cpu_model(cpu, sizeof cpu);
  printf("coordinator_bench: %d simulated sim workers x capacity %d against `rsd run` (%d expert episodes,\n"
         "16 variants, episode time 0, tcp://127.0.0.1, journal in %s); host: nproc %ld, %s\n\n",
         nworkers, capacity, S_EPISODES, base, sysconf(_SC_NPROCESSORS_ONLN), cpu);
  printf("round  leases held  fill s  lease rt p50/p99 ms  results/s mid80%%  results/s all  RESULT->ACK p50/p99 ms"
         "  commit p50/p99 ms  commits  largest batch  commit ms/result\n");
  s_round_t r[20];
  for (int i = 0; i < rounds; i++) {
    s_round(rsd, base, nworkers, capacity, &r[i]);
    printf("%5d  %11llu  %6.2f  %8.2f / %-8.2f  %16.0f  %13.0f  %10.1f / %-10.1f  %7.2f / %-7.2f  %7llu  %13llu  %16.3f%s\n", i + 1,
           (unsigned long long)r[i].held_max, r[i].fill_s, r[i].probe_p50_ms, r[i].probe_p99_ms, r[i].churn_results_s,
           r[i].churn_all_results_s, r[i].ack_p50_ms, r[i].ack_p99_ms, r[i].commit_p50_ms, r[i].commit_p99_ms,
           (unsigned long long)r[i].commits, (unsigned long long)r[i].largest_batch, r[i].commit_ms_per_result,
           r[i].rsd_status == 0 ? "" : "  (rsd failed)");
    fflush(stdout);
  }
  double rates[20], held[20];
  for (int i = 0; i < rounds; i++) {
    rates[i] = r[i].churn_results_s;
    held[i] = (double)r[i].held_max;
  }
  qsort(rates, (size_t)rounds, sizeof rates[0], s_cmp_d);
  qsort(held, (size_t)rounds, sizeof held[0], s_cmp_d);
  double med_rate = rates[rounds / 2], med_held = held[rounds / 2];
  printf("\nmedian of %d rounds: %.0f leases held at once (target >= 1000: %s), %.0f results/s sustained (target >= 2000: %s)\n",
         rounds, med_held, med_held >= 1000 ? "met" : "NOT met", med_rate, med_rate >= 2000 ? "met" : "NOT met");
  printf("lease rt: RESULT sent -> replacement LEASE received, one worker, the others holding (coordinator idle);\n"
         "RESULT->ACK: during churn, %d leases in flight (queueing: about in-flight / rate); commit: rsd's\n"
         "co_journal_record_results wall time per group commit (one FULL transaction, one fsync), over the\n"
         "probe's single-result commits and the churn's batches; ms/result: all commit time / results.\n",
         nworkers * capacity);
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) s_die("%s: %s", json, strerror(errno));
    fprintf(f, "{\"bench\": \"coordinator_bench\", \"workers\": %d, \"capacity\": %d, \"episodes\": %d, \"rounds\": [", nworkers,
            capacity, S_EPISODES);
    for (int i = 0; i < rounds; i++)
      fprintf(f,
              "%s\n  {\"leases_held\": %llu, \"fill_s\": %.3f, \"lease_rt_p50_ms\": %.3f, \"lease_rt_p99_ms\": %.3f, "
              "\"results_per_s\": %.1f, \"results_per_s_all\": %.1f, \"ack_p50_ms\": %.2f, \"ack_p99_ms\": %.2f, "
              "\"commit_p50_ms\": %.3f, \"commit_p99_ms\": %.3f, \"commits\": %llu, \"largest_batch\": %llu, "
              "\"commit_ms_per_result\": %.4f, \"rsd_status\": %d}",
              i ? "," : "", (unsigned long long)r[i].held_max, r[i].fill_s, r[i].probe_p50_ms, r[i].probe_p99_ms,
              r[i].churn_results_s, r[i].churn_all_results_s, r[i].ack_p50_ms, r[i].ack_p99_ms, r[i].commit_p50_ms,
              r[i].commit_p99_ms, (unsigned long long)r[i].commits, (unsigned long long)r[i].largest_batch,
              r[i].commit_ms_per_result, r[i].rsd_status);
    fprintf(f, "\n], \"median_leases_held\": %.0f, \"median_results_per_s\": %.1f}\n", med_held, med_rate);
    fclose(f);
  }
  return 0;
}
