/* rsd.c: the `rsd` command.
 *
 *   rsd run CONFIG [--out DIR] [--retry-abandoned]
 *                                open or resume the campaign CONFIG describes and serve it to sim workers
 *   rsd resume DIR [--retry-abandoned]
 *                                resume the campaign stored in DIR's journal (its stored config), same serving
 *   rsd status DIR               progress of the campaign in DIR, from its journal (also while it runs)
 *   rsd keys DIR                 make a CURVE keys directory (bind.keys; msg.h, msg_keys_make)
 *
 * `run` and `resume` write the coordinator's endpoint to DIR/coordinator.endpoint (atomically), so that
 * sim workers on this machine (and tests) can find an ephemeral port. A campaign with policy-model variants
 * also gets the inference broker (broker.c, a thread of this process): its package's manifest is checked
 * against the config first, its sim-side endpoint goes to sim workers in WELCOME and to DIR/broker.endpoint,
 * its GPU-side endpoint to DIR/broker_gpu.endpoint (both as a worker on another machine reaches them), and
 * `workers.gpu_workers` local GPU workers start before the sim workers. When the config binds an ephemeral
 * TCP port (`tcp://HOST:*`) and that file names a port from an earlier run (e.g. one killed with -9), the
 * coordinator binds that port again if it is free, so workers reconnect where they were; otherwise it
 * takes a new one and the file says which. --retry-abandoned puts the campaign's abandoned episodes back in
 * the queue before serving, each with leases.max_attempts attempts again (co_journal_requeue_abandoned):
 * for episodes an outage abandoned (no GPU worker for a night, a broken node), once the cause is fixed.
 * `rsd run` with a config whose only result-changing difference is variants appended after the stored
 * ones adds them: the stored config gains them (co_config_diff, co_journal_set_config). Ctrl-C (SIGINT)
 * or SIGTERM stops cleanly: leases go back to the queue and a later `rsd run` or `rsd resume` continues.
 * A live progress line goes to stderr: rewritten in place once a second on a terminal, a plain line every
 * 10 s otherwise.
 * With bind.keys every socket is a CURVE server: the process's authenticator (a zauth thread) starts
 * before any bind and accepts the certificates in DIR/clients; the local workers get --keys DIR.
 * Exit status: 0 campaign complete, 1 error, 2 usage or config error, 130 stopped before the end.
 *
 * This file owns the command line, the progress line and the endpoint files; serving is server.c and
 * broker.c. */
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "broker.h"
#include "config.h"
#include "journal.h"
#include "local_workers.h"
#include "model_package.h"
#include "report.h"
#include "server.h"

#define S_SOFTWARE "rsd 0.1.0"
#define S_PLAIN_PROGRESS_S 10 /* seconds between progress lines when stderr is not a terminal */

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig) {
  (void)sig;
  s_stop = 1;
}

static int s_usage(void) {
  fprintf(stderr,
          "usage: rsd run CONFIG [--out DIR] [--retry-abandoned]\n"
          "                                 serve the campaign CONFIG describes (resumes DIR if it holds it)\n"
          "       rsd resume DIR [--retry-abandoned]\n"
          "                                 resume the campaign stored in DIR\n"
          "       rsd status DIR            progress of the campaign in DIR\n"
          "       rsd report DIR [--out D]  write report.json, report.md, report.html from DIR's journal\n"
          "       rsd keys DIR              make a CURVE keys directory (config bind.keys, workers' --keys)\n"
          "--retry-abandoned: first put the campaign's abandoned episodes back in the queue, each with\n"
          "leases.max_attempts attempts again (once the outage that abandoned them is over)\n");
  return 2;
}

/* mkdir -p */
static int s_mkdirs(const char *path) {
  char buf[CO_PATH_MAX + 1];
  snprintf(buf, sizeof buf, "%s", path);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* FNV-1a 64 of the canonical config JSON, as hex: identifies a config in the journal and the report. */
static void s_hash(const char *text, char out[17]) {
  uint64_t h = 1469598103934665603ull;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 1099511628211ull;
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- the progress line ------------------------------------------------------------------------ */

static void s_eta(double s, char *out, size_t cap) {
  if (s < 0) {
    snprintf(out, cap, "?");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

/* One line: done / total, success so far per variant, rate, ETA, workers alive. */
static void s_progress_line(const co_progress_t *p, char *out, size_t cap) {
  char eta[32];
  s_eta(p->eta_s, eta, sizeof eta);
  size_t k = (size_t)snprintf(out, cap, "[rsd] %llu/%llu done", (unsigned long long)p->done, (unsigned long long)p->total);
  if (p->abandoned && k < cap) k += (size_t)snprintf(out + k, cap - k, ", %llu abandoned", (unsigned long long)p->abandoned);
  if (k < cap) k += (size_t)snprintf(out + k, cap - k, " | success");
  for (size_t i = 0; i < p->nvariants && k < cap; i++) {
    const co_journal_counts_t *v = &p->variants[i];
    uint64_t done = v->by_state[CO_EPISODE_DONE];
    k += (size_t)snprintf(out + k, cap - k, "%s %s %llu/%llu", i ? "," : "", v->variant, (unsigned long long)v->successes,
                          (unsigned long long)done);
    if (done && k < cap) {
      /* Whole percents, with the decimals it takes not to print 0% or 100% for a mixed count (498/500 is
       * 99.6%): rounded to prec decimals, pct shows 100 from 100 - half and 0 below half. */
      double pct = 100.0 * (double)v->successes / (double)done, half = 0.5;
      int prec = 0;
      bool mixed = v->successes > 0 && v->successes < done;
      while (mixed && prec < 3 && (pct >= 100.0 - half || pct < half)) {
        prec++;
        half /= 10.0;
      }
      k += (size_t)snprintf(out + k, cap - k, " (%.*f%%)", prec, pct);
    }
  }
  if (k < cap)
    k += (size_t)snprintf(out + k, cap - k, " | %.1f episodes/min | ETA %s | %u workers", p->rate_per_min, eta,
                          p->workers);
  if (p->has_gpu && k < cap) snprintf(out + k, cap - k, ", %u gpu workers", p->gpu_workers);
}

static bool s_tty;
static double s_last_print = -1e9;
static uint64_t s_last_done = UINT64_MAX;
static co_local_t *s_local; /* the sim workers this run started (workers.sim_workers), or NULL */
static co_local_t *s_local_gpu; /* the GPU workers this run started (workers.gpu_workers), or NULL */
static co_broker_t *s_broker;   /* the inference broker, for campaigns with policy-model variants */
static co_journal_t *s_journal; /* the campaign's journal (GPU worker events) */
static zactor_t *s_auth;         /* the CURVE authenticator (bind.keys), or NULL */
static zcert_t *s_curve_cert;    /* the servers' CURVE certificate (bind.keys), or NULL */

/* bind.keys: starts the process's CURVE authenticator on DIR/clients and loads the servers' certificate,
 * before any socket binds. */
static int s_curve_start(const char *dir) {
  msg_error_t me;
  if (msg_keys_auth_start(dir, &s_auth, &me) || msg_keys_server(dir, &s_curve_cert, &me)) {
    fprintf(stderr, "rsd: bind.keys: %s\n", me.text);
    return -1;
  }
  fprintf(stderr, "[rsd] CURVE on (bind.keys %s): only workers holding a certificate in %s/clients are served; "
                  "start them with --keys DIR (a copy of server.cert and client.cert_secret)\n", dir, dir);
  return 0;
}

/* The broker's GPU worker events: into the journal's worker events, and a line each on stderr. */
static void s_broker_events(void) {
  co_broker_event_t ev[32];
  size_t n;
  while (s_broker && (n = co_broker_events(s_broker, ev, 32)) > 0)
    for (size_t i = 0; i < n; i++) {
      co_journal_error_t je;
      co_journal_event(s_journal, ev[i].kind, ev[i].worker[0] ? ev[i].worker : NULL, NULL, 0, ev[i].detail, &je);
      fprintf(stderr, "%s[rsd] GPU worker %s %s: %s\n", s_tty ? "\r\033[K" : "", ev[i].worker[0] ? ev[i].worker : "?",
              co_event_name(ev[i].kind), ev[i].detail);
    }
}

static void s_on_progress(const co_progress_t *given) {
  co_local_poll(s_local);
  co_local_poll(s_local_gpu);
  co_progress_t copy = *given, *p = &copy;
  if (s_broker) {
    s_broker_events();
    co_broker_stats_t bs;
    co_broker_stats(s_broker, &bs);
    p->has_gpu = true;
    p->gpu_workers = bs.gpu_workers;
  }
  bool finished = p->done + p->abandoned == p->total;
  if (!s_tty && p->elapsed_s - s_last_print < S_PLAIN_PROGRESS_S && !(finished && p->done != s_last_done)) return;
  s_last_print = p->elapsed_s;
  s_last_done = p->done;
  char line[4096];
  s_progress_line(p, line, sizeof line);
  if (s_tty) fprintf(stderr, "\r\033[K%s", line);
  else fprintf(stderr, "%s\n", line);
}

/* ---- serving ---------------------------------------------------------------------------------- */

/* The endpoint to try first for `bind`: the previous run's port (from DIR/file), when bind is an ephemeral
 * TCP port. */
static void s_previous_endpoint(const co_config_t *cfg, const char *bind, const char *file, char *out, size_t cap) {
  out[0] = '\0';
  size_t n = strlen(bind);
  if (strncmp(bind, "tcp://", 6) != 0 || n < 2 || strcmp(bind + n - 2, ":*") != 0) return;
  char path[CO_PATH_MAX + 64], old[512] = "";
  snprintf(path, sizeof path, "%s/%s", cfg->output, file);
  FILE *f = fopen(path, "r");
  if (!f) return;
  bool ok = fgets(old, sizeof old, f) != NULL;
  fclose(f);
  old[strcspn(old, "\r\n")] = '\0';
  const char *colon = strrchr(old, ':');
  if (!ok || strncmp(old, "tcp://", 6) != 0 || !colon || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
    return;
  snprintf(out, cap, "%.*s%s", (int)(n - 1), bind, colon + 1);
}

/* Writes an endpoint file (DIR/file) through a rename, so that a reader never sees half of it. */
static int s_write_endpoint(const char *dir, const char *file, const char *endpoint) {
  char path[CO_PATH_MAX + 64], tmp[CO_PATH_MAX + 80];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  bool ok = fprintf(f, "%s\n", endpoint) > 0;
  ok = fclose(f) == 0 && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Starts the inference broker for the campaign's package, writes DIR/broker.endpoint and
 * DIR/broker_gpu.endpoint, and tells the server the broker's endpoint and the model's name. */
static int s_start_inference(const co_config_t *cfg, const co_package_t *pkg, co_server_t *server) {
  char sim_prefer[512], gpu_prefer[512], err[1024];
  s_previous_endpoint(cfg, cfg->bind.broker, "broker.endpoint", sim_prefer, sizeof sim_prefer);
  s_previous_endpoint(cfg, cfg->bind.broker_gpu, "broker_gpu.endpoint", gpu_prefer, sizeof gpu_prefer);
  co_broker_opts_t o = {.sim_bind = cfg->bind.broker, .gpu_bind = cfg->bind.broker_gpu, .sim_prefer = sim_prefer,
                        .gpu_prefer = gpu_prefer, .heartbeat_ms = cfg->leases.heartbeat_ms,
                        .liveness = cfg->leases.liveness, .model = pkg->name, .model_hash = pkg->content_hash,
                        .model_dtype = co_dtype_names[cfg->model_dtype], .curve_cert = s_curve_cert};
  if (!(s_broker = co_broker_new(&o, err, sizeof err))) {
    fprintf(stderr, "rsd: %s\n", err);
    return -1;
  }
  char sim_ep[512], gpu_ep[512];
  co_endpoint_reachable(co_broker_sim_endpoint(s_broker), sim_ep, sizeof sim_ep);
  co_endpoint_reachable(co_broker_gpu_endpoint(s_broker), gpu_ep, sizeof gpu_ep);
  if (strlen(sim_ep) > 256) { /* WELCOME.broker's limit */
    fprintf(stderr, "rsd: the broker's endpoint %s is longer than the 256 bytes WELCOME.broker takes\n", sim_ep);
    co_broker_destroy(&s_broker, 0);
    return -1;
  }
  co_server_set_inference(server, sim_ep, pkg->name);
  if (s_write_endpoint(cfg->output, "broker.endpoint", sim_ep) != 0 ||
      s_write_endpoint(cfg->output, "broker_gpu.endpoint", gpu_ep) != 0)
    fprintf(stderr, "[rsd] warning: cannot write %s/broker.endpoint or broker_gpu.endpoint: %s\n", cfg->output,
            strerror(errno));
  fprintf(stderr, "[rsd] model %s %s (%s) from %s; inference broker: sim workers send INFERs to %s, GPU workers "
                  "connect to %s\n",
          pkg->name, pkg->version, pkg->content_hash, cfg->model, sim_ep, gpu_ep);
  return 0;
}

/* DRAINs the GPU workers, waits up to grace_ms for them to leave, records their events, stops the broker. */
static void s_stop_inference(int grace_ms, co_broker_stats_t *out) {
  co_broker_drain(s_broker);
  for (int t = 0; t < grace_ms / 20; t++) {
    co_broker_stats(s_broker, out);
    if (out->gpu_workers == 0 && t > 0) break;
    zclock_sleep(20);
  }
  s_broker_events();
  co_broker_stats(s_broker, out);
  co_broker_destroy(&s_broker, 0);
}

/* The line a complete campaign ends with when some of its episodes were abandoned. */
static void s_say_abandoned(const co_journal_counts_t *c, const co_config_t *cfg) {
  if (c->by_state[CO_EPISODE_ABANDONED])
    fprintf(stderr, "[rsd] %llu episodes were abandoned ('rsd status %s' says why); once the cause is fixed, 'rsd resume "
                    "%s --retry-abandoned' runs them again\n",
            (unsigned long long)c->by_state[CO_EPISODE_ABANDONED], cfg->output, cfg->output);
}

/* Serves the campaign in j (config cfg) until it is complete, stopped or failing. A campaign complete
 * already (every episode done or abandoned, after the requeue) is not served: no socket, no local worker. `created`: the journal
 * is new (nothing to recover). `retry_abandoned`: abandoned episodes go back in the queue first
 * (co_journal_requeue_abandoned). `again` is the command that continues it, for the stop message. */
static int s_serve(co_config_t *cfg, co_journal_t *j, bool created, bool retry_abandoned, const char *again) {
  co_journal_error_t je;
  if (!created) {
    size_t recovered = 0;
    if (co_journal_recover(j, &recovered, &je)) {
      fprintf(stderr, "rsd: %s\n", je.text);
      return 1;
    }
    fprintf(stderr, "[rsd] resuming campaign %s (%zu leases of the previous run back in the queue)\n", cfg->name,
            recovered);
  }
  if (retry_abandoned) {
    size_t requeued = 0;
    if (co_journal_requeue_abandoned(j, NULL, "requeued by --retry-abandoned", &requeued, &je)) {
      fprintf(stderr, "rsd: %s\n", je.text);
      return 1;
    }
    fprintf(stderr, "[rsd] --retry-abandoned: %zu abandoned episodes back in the queue, each with %u attempts again "
                    "(leases.max_attempts); their earlier failures stay counted\n",
            requeued, cfg->leases.max_attempts);
  }
  uint64_t n = co_config_episodes(cfg);
  co_episode_key_t *keys = calloc(n ? n : 1, sizeof *keys);
  for (uint64_t i = 0; keys && i < n; i++) {
    co_config_episode_t e;
    co_config_episode(cfg, i, &e);
    snprintf(keys[i].variant, sizeof keys[i].variant, "%s", cfg->variants[e.variant].name);
    keys[i].task = e.task;
    keys[i].trial = e.trial;
  }
  size_t added = 0;
  co_journal_err_t arc = keys ? co_journal_add_episodes(j, keys, n, &added, &je) : CO_JOURNAL_ERR_NOMEM;
  free(keys);
  if (arc) {
    fprintf(stderr, "rsd: %s\n", keys ? je.text : "out of memory for the episode list");
    return 1;
  }
  co_journal_counts_t now;
  if (co_journal_counts(j, &now, NULL, 0, NULL, &je)) {
    fprintf(stderr, "rsd: %s\n", je.text);
    return 1;
  }
  if (now.by_state[CO_EPISODE_DONE] + now.by_state[CO_EPISODE_ABANDONED] == now.total) { /* nothing to serve */
    fprintf(stderr, "[rsd] campaign %s is complete: all %llu episodes in %s are done or abandoned; nothing to serve\n",
            cfg->name, (unsigned long long)now.total, cfg->output);
    s_say_abandoned(&now, cfg);
    return 0;
  }
  bool inference = false; /* a variant acts with the model: the campaign needs the broker */
  for (uint32_t v = 0; v < cfg->variants_count; v++) inference = inference || cfg->variants[v].policy == MSG_POLICY_MODEL;
  static co_package_t pkg;
  char perr[2048];
  if (inference && co_package_check(cfg, &pkg, perr, sizeof perr)) {
    fprintf(stderr, "rsd: %s\n", perr);
    return 2;
  }
  char gpu_exe[1024] = "";
  if (inference && cfg->workers.gpu_workers > 0) {
    char ferr[2600];
    if (co_local_find_gpu_worker(gpu_exe, sizeof gpu_exe, ferr, sizeof ferr)) {
      fprintf(stderr, "rsd: workers.gpu_workers is %u: %s\n", cfg->workers.gpu_workers, ferr);
      return 1;
    }
  }
  char worker_exe[1024] = "";
  if (cfg->workers.sim_workers > 0) {
    char ferr[2600];
    if (co_local_find_worker(worker_exe, sizeof worker_exe, ferr, sizeof ferr)) {
      fprintf(stderr, "rsd: workers.sim_workers is %u: %s\n", cfg->workers.sim_workers, ferr);
      return 1;
    }
  }
  zsys_handler_set(NULL); /* our handlers, not czmq's */
  struct sigaction sa = {0};
  sa.sa_handler = s_on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  char err[1024], prefer[512];
  if (cfg->bind.has_keys && s_curve_start(cfg->bind.keys) != 0) return 1;
  s_previous_endpoint(cfg, cfg->bind.coordinator, "coordinator.endpoint", prefer, sizeof prefer);
  co_server_t *server = co_server_new(cfg, j, prefer, s_curve_cert, err, sizeof err);
  if (!server) {
    fprintf(stderr, "rsd: %s\n", err);
    return 1;
  }
  const char *endpoint = co_server_endpoint(server);
  if (prefer[0] && strcmp(prefer, endpoint) != 0)
    fprintf(stderr, "[rsd] the previous endpoint %s is taken; workers must read the new one\n", prefer);
  if (s_write_endpoint(cfg->output, "coordinator.endpoint", endpoint) != 0)
    fprintf(stderr, "[rsd] warning: cannot write %s/coordinator.endpoint: %s\n", cfg->output, strerror(errno));
  s_journal = j;
  if (inference && s_start_inference(cfg, &pkg, server) != 0) {
    co_server_destroy(&server);
    return 1;
  }
  /* Last of the start-up lines: every endpoint file is written by now (launchers wait for this line). */
  fprintf(stderr, "[rsd] campaign %s: %llu episodes in %s; sim workers connect to %s\n", cfg->name,
          (unsigned long long)n, cfg->output, endpoint);
  if (inference && cfg->workers.gpu_workers > 0) {
    char log_dir[CO_PATH_MAX + 16], local_ep[512], devices[256] = "";
    snprintf(log_dir, sizeof log_dir, "%s/logs", cfg->output);
    co_endpoint_local(co_broker_gpu_endpoint(s_broker), local_ep, sizeof local_ep);
    for (uint32_t k = 0; k < cfg->workers.gpu_workers; k++) { /* the devices the workers get, each named once */
      char dev[64], item[72], all[260];
      co_local_gpu_device(cfg->workers.device, k, dev, sizeof dev);
      snprintf(item, sizeof item, " %s,", dev);
      snprintf(all, sizeof all, " %s,", devices); /* "cuda:0, cuda:1" -> " cuda:0, cuda:1," */
      if (strstr(all, item)) continue;
      snprintf(item, sizeof item, "%s%s", devices[0] ? ", " : "", dev);
      if (strlen(devices) + strlen(item) < sizeof devices) strcat(devices, item);
    }
    co_local_gpu_t g = {local_ep, cfg->model, cfg->workers.device, co_dtype_names[cfg->model_dtype],
                        cfg->workers.max_batch, cfg->workers.max_wait_us, cfg->bind.has_keys ? cfg->bind.keys : NULL};
    if (!(s_local_gpu = co_local_start_gpu(gpu_exe, &g, cfg->workers.gpu_workers, log_dir, err, sizeof err))) {
      fprintf(stderr, "rsd: %s\n", err);
      co_server_destroy(&server);
      co_broker_destroy(&s_broker, 0);
      return 1;
    }
    fprintf(stderr, "[rsd] started %u local GPU workers (%s, --device %s, --dtype %s, max_batch %u; logs in %s)\n",
            cfg->workers.gpu_workers, gpu_exe, devices, co_dtype_names[cfg->model_dtype], cfg->workers.max_batch,
            log_dir);
  }
  if (cfg->workers.sim_workers > 0) {
    char log_dir[CO_PATH_MAX + 16];
    snprintf(log_dir, sizeof log_dir, "%s/logs", cfg->output);
    if (!(s_local = co_local_start(worker_exe, endpoint, cfg->workers.sim_workers, cfg->workers.episodes_per_worker,
                                   cfg->bind.has_keys ? cfg->bind.keys : NULL, log_dir, err, sizeof err))) {
      fprintf(stderr, "rsd: %s\n", err);
      co_server_destroy(&server);
      co_broker_destroy(&s_broker, 0);
      co_local_stop(&s_local_gpu, 0);
      return 1;
    }
    fprintf(stderr, "[rsd] started %u local sim workers (%s, %u episodes each; logs in %s)\n",
            cfg->workers.sim_workers, worker_exe, cfg->workers.episodes_per_worker, log_dir);
  }
  s_tty = isatty(STDERR_FILENO);
  int64_t t0 = zclock_mono();
  int rc = co_server_run(server, &s_stop, s_on_progress, err, sizeof err);
  if (s_tty) fprintf(stderr, "\n");
  co_server_stats_t st;
  co_server_stats(server, &st);
  co_server_destroy(&server); /* releases the leases still out; BYE to the workers */
  co_broker_stats_t bs = {0};
  if (s_broker) {
    s_stop_inference(rc == 0 ? 5000 : 2000, &bs); /* DRAIN: GPU workers answer what they hold, BYE, exit 0 */
    co_local_stop(&s_local_gpu, 3000);
  }
  co_local_stop(&s_local, rc == 0 ? 3000 : 0); /* complete: they leave on the BYE; else SIGTERM */
  co_journal_add_wall_ms(j, (uint64_t)(zclock_mono() - t0), &je);
  fprintf(stderr,
          "[rsd] this run: %llu results (%llu stored, %llu duplicates) in %llu commits (largest %llu), commit p50 %.2f ms "
          "p99 %.2f ms, %.0f ms in all; %llu leases sent, at most %llu out at once; %u workers at most\n",
          (unsigned long long)st.results, (unsigned long long)st.stored, (unsigned long long)st.duplicates,
          (unsigned long long)st.commits, (unsigned long long)st.largest_batch, st.commit_p50_ms, st.commit_p99_ms,
          st.commit_total_ms,
          (unsigned long long)st.leases, (unsigned long long)st.most_leases_out, st.most_workers);
  if (st.lost_leases)
    fprintf(stderr, "[rsd] %llu lease(s) lost on the way to a worker (its HEARTBEAT did not list them): expired and "
            "leased again\n", (unsigned long long)st.lost_leases);
  if (inference)
    fprintf(stderr,
            "[rsd] broker: %llu INFERs, %llu forwarded, %llu ACTIONs, %llu GPU worker ERRORs, %llu refused by the broker "
            "(%llu lost with a GPU worker, %llu past their deadline), %llu malformed; %llu GPU workers joined, %llu lost\n",
            (unsigned long long)bs.infers, (unsigned long long)bs.forwarded, (unsigned long long)bs.actions,
            (unsigned long long)bs.gpu_errors, (unsigned long long)bs.failed, (unsigned long long)bs.lost,
            (unsigned long long)bs.expired, (unsigned long long)bs.malformed, (unsigned long long)bs.gpu_joined,
            (unsigned long long)bs.gpu_lost);
  if (rc < 0) {
    fprintf(stderr, "rsd: %s\n", err);
    return 1;
  }
  if (rc == 1) {
    fprintf(stderr, "[rsd] stopped; leases released. '%s' continues the campaign.\n", again);
    return 130;
  }
  fprintf(stderr, "[rsd] campaign %s complete; results in %s/journal.sqlite\n", cfg->name, cfg->output);
  co_journal_counts_t done;
  if (co_journal_counts(j, &done, NULL, 0, NULL, &je) == CO_JOURNAL_OK) s_say_abandoned(&done, cfg);
  return 0;
}

static int s_run_cli(int argc, char **argv) {
  const char *config_path = argc >= 1 ? argv[0] : NULL, *out_override = NULL;
  bool retry_abandoned = false;
  if (argc < 1 || argv[0][0] == '-') return s_usage();
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc && !out_override) out_override = argv[++i];
    else if (strcmp(argv[i], "--retry-abandoned") == 0) retry_abandoned = true;
    else return s_usage();
  }
  static co_config_t cfg;
  co_config_error_t cerr;
  if (co_config_load(config_path, &cfg, &cerr)) {
    fprintf(stderr, "rsd: %s\n", cerr.text);
    return 2;
  }
  if (out_override) snprintf(cfg.output, sizeof cfg.output, "%s", out_override);
  if (cfg.has_model) { /* before the journal exists: a config the package refuses starts no campaign */
    bool inference = false;
    for (uint32_t v = 0; v < cfg.variants_count; v++) inference = inference || cfg.variants[v].policy == MSG_POLICY_MODEL;
    static co_package_t pkg;
    char perr[2048];
    if (inference && co_package_check(&cfg, &pkg, perr, sizeof perr)) {
      fprintf(stderr, "rsd: %s\n", perr);
      return 2;
    }
    if (inference && !cfg.has_model_hash) { /* stored with the config: the report names it, resume checks it */
      cfg.has_model_hash = true;
      snprintf(cfg.model_hash, sizeof cfg.model_hash, "%s", pkg.content_hash);
    }
    if (inference) co_package_pin_decoding(&pkg, &cfg); /* the decoding defaults, stored like the hash */
  }
  if (s_mkdirs(cfg.output) != 0) {
    fprintf(stderr, "rsd: cannot create the output directory %s: %s\n", cfg.output, strerror(errno));
    return 1;
  }
  static char json[CO_CONFIG_JSON_MAX];
  co_config_to_json(&cfg, json, sizeof json);
  char hash[17];
  s_hash(json, hash);
  co_journal_campaign_t camp = {cfg.name, json, hash, S_SOFTWARE};
  co_journal_error_t je;
  bool created = false;
  co_journal_t *j = co_journal_open(cfg.output, CO_JOURNAL_CREATE_OR_RESUME, &camp, &created, &je);
  if (!j) {
    fprintf(stderr, "rsd: journal in %s: %s\n", cfg.output, je.text);
    return 1;
  }
  int status = 1;
  if (!created) { /* resuming: the stored config must agree */
    co_journal_info_t info;
    static co_config_t stored;
    char diff[8192];
    je.text[0] = '\0';
    if (co_journal_info(j, &info, &je) ||
        co_config_from_json(info.config_json, strlen(info.config_json), &stored, &cerr)) {
      fprintf(stderr, "rsd: cannot read the stored config of %s: %s\n", cfg.output, je.text[0] ? je.text : cerr.text);
      goto done;
    }
    if (co_config_diff(&stored, &cfg, diff, sizeof diff) > 0) {
      fprintf(stderr,
              "rsd: %s holds campaign '%s' with another config; refusing to resume. Differences:\n%s"
              "rsd: to start a new campaign, give another --out (or remove %s); to resume, restore the old config "
              "and model\n",
              cfg.output, info.name, diff, cfg.output);
      status = 2;
      goto done;
    }
    if (cfg.variants_count > stored.variants_count) { /* appended variants: the stored config gains them */
      char names[CO_MAX_VARIANTS * (MSG_NAME_MAX + 2) + 1] = "";
      for (uint32_t v = stored.variants_count; v < cfg.variants_count; v++) {
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", v > stored.variants_count ? ", " : "",
                 cfg.variants[v].name);
        stored.variants[v] = cfg.variants[v]; /* the stored config with them, and nothing else of today's */
      }
      stored.variants_count = cfg.variants_count;
      static char grown[CO_CONFIG_JSON_MAX];
      co_config_to_json(&stored, grown, sizeof grown);
      s_hash(grown, hash);
      if (co_journal_set_config(j, grown, hash, NULL, &je)) {
        fprintf(stderr, "rsd: %s\n", je.text);
        goto done;
      }
      fprintf(stderr, "[rsd] campaign %s: variants added (%s), %llu episodes each; the stored config now has them "
                      "(and only them of this config's differences)\n",
              cfg.name, names, (unsigned long long)cfg.tasks_count * cfg.trials);
    }
  }
  char again[CO_PATH_MAX + 64];
  snprintf(again, sizeof again, "rsd run %s", config_path);
  status = s_serve(&cfg, j, created, retry_abandoned, again);
done:
  co_journal_close(&j);
  return status;
}

static int s_resume_cli(int argc, char **argv) {
  const bool retry_abandoned = argc == 2 && strcmp(argv[1], "--retry-abandoned") == 0;
  if (argc != 1 && !retry_abandoned) return s_usage();
  const char *dir = argv[0];
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_RESUME, NULL, NULL, &je);
  if (!j) {
    fprintf(stderr, "rsd: journal in %s: %s\n", dir, je.text);
    return 1;
  }
  static co_config_t cfg;
  co_config_error_t cerr;
  co_journal_info_t info;
  int status = 1;
  je.text[0] = '\0';
  if (co_journal_info(j, &info, &je) || co_config_from_json(info.config_json, strlen(info.config_json), &cfg, &cerr)) {
    fprintf(stderr, "rsd: cannot read the stored config of %s: %s\n", dir, je.text[0] ? je.text : cerr.text);
  } else if (strlen(dir) >= sizeof cfg.output) {
    fprintf(stderr, "rsd: directory name too long (%zu bytes, at most %zu): %s\n", strlen(dir), sizeof cfg.output - 1, dir);
  } else {
    snprintf(cfg.output, sizeof cfg.output, "%s", dir); /* the directory given, wherever the config said */
    char again[CO_PATH_MAX + 64];
    snprintf(again, sizeof again, "rsd resume %s", dir);
    status = s_serve(&cfg, j, false, retry_abandoned, again);
  }
  co_journal_close(&j);
  return status;
}

/* ---- status ----------------------------------------------------------------------------------- */

/* The pid holding the journal's write lock (a running coordinator), from /proc/locks; 0 if none.
 * Reading /proc/locks takes no lock, so it can never stand in a starting coordinator's way. */
static long s_lock_holder(const char *dir) {
  char path[CO_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", dir, CO_JOURNAL_LOCK_FILE);
  struct stat st;
  if (stat(path, &st) != 0) return 0;
  FILE *f = fopen("/proc/locks", "r");
  if (!f) return 0;
  char line[512];
  long pid = 0;
  while (!pid && fgets(line, sizeof line, f)) {
    char kind[16], dev[64];
    long p;
    if (strstr(line, "->") || sscanf(line, "%*s %15s %*s %*s %ld %63s", kind, &p, dev) != 3 || strcmp(kind, "FLOCK") != 0)
      continue;
    unsigned maj, min;
    unsigned long ino;
    if (sscanf(dev, "%x:%x:%lu", &maj, &min, &ino) == 3 && maj == major(st.st_dev) && min == minor(st.st_dev) &&
        ino == (unsigned long)st.st_ino)
      pid = p;
  }
  fclose(f);
  return pid;
}

/* The progress figures from the journal alone: rate from the results stored in the last minute,
 * workers alive = distinct workers holding a lease while a coordinator runs. */
static int s_progress_from_journal(co_journal_t *j, bool running, co_progress_t *p, co_journal_error_t *je) {
  memset(p, 0, sizeof *p);
  co_journal_counts_t total;
  if (co_journal_counts(j, &total, p->variants, CO_MAX_VARIANTS, &p->nvariants, je)) return -1;
  if (p->nvariants > CO_MAX_VARIANTS) p->nvariants = CO_MAX_VARIANTS;
  p->total = total.total;
  p->done = total.by_state[CO_EPISODE_DONE];
  p->abandoned = total.by_state[CO_EPISODE_ABANDONED];
  p->leased = total.by_state[CO_EPISODE_LEASED];
  p->successes = total.successes;
  int64_t now = zclock_time() * 1000, oldest = now;
  uint64_t recent = 0;
  co_journal_iter_t *it = co_journal_results(j, NULL, je);
  if (!it) return -1;
  static co_journal_result_t r;
  while (co_journal_results_next(it, &r, je))
    if (r.received_us >= now - 60 * 1000000ll) {
      recent++;
      if (r.received_us < oldest) oldest = r.received_us;
    }
  co_journal_iter_destroy(&it);
  if (je->code) return -1;
  double span_s = (double)(now - oldest) / 1e6;
  span_s = span_s < 1 ? 1 : span_s > 60 ? 60 : span_s;
  p->rate_per_min = (double)recent * 60.0 / span_s;
  uint64_t left = p->total - p->done - p->abandoned;
  p->eta_s = left == 0 ? 0 : p->rate_per_min > 0 && running ? (double)left * 60.0 / p->rate_per_min : -1;
  if (running) {
    static char seen[1024][MSG_NAME_MAX + 1];
    size_t nseen = 0;
    co_journal_iter_t *eit = co_journal_episodes(j, CO_EPISODE_LEASED, je);
    if (!eit) return -1;
    static co_episode_t ep;
    while (co_journal_episodes_next(eit, &ep, je)) {
      size_t i = 0;
      while (i < nseen && strcmp(seen[i], ep.worker) != 0) i++;
      if (i == nseen && nseen < sizeof seen / sizeof seen[0]) snprintf(seen[nseen++], sizeof seen[0], "%s", ep.worker);
    }
    co_journal_iter_destroy(&eit);
    if (je->code) return -1;
    p->workers = (uint32_t)nseen;
  }
  return 0;
}

/* The abandoned episodes of the campaign in j grouped by last error, most frequent first: up to `cap`
 * groups into why[] / count[]; returns how many groups (or -1 with je set). */
#define S_WHY_GROUPS 64
static int s_abandoned_reasons(co_journal_t *j, char why[][MSG_TEXT_MAX + 1], uint64_t *count, int cap,
                               co_journal_error_t *je) {
  static char seen[S_WHY_GROUPS][MSG_TEXT_MAX + 1];
  uint64_t n[S_WHY_GROUPS] = {0}, other = 0;
  int groups = 0;
  co_journal_iter_t *it = co_journal_episodes(j, CO_EPISODE_ABANDONED, je);
  if (!it) return -1;
  static co_episode_t ep;
  while (co_journal_episodes_next(it, &ep, je)) {
    int g = 0;
    while (g < groups && strcmp(seen[g], ep.last_error) != 0) g++;
    if (g == groups && groups < S_WHY_GROUPS) snprintf(seen[groups++], sizeof seen[0], "%s", ep.last_error);
    if (g < groups) n[g]++;
    else other++;
  }
  co_journal_iter_destroy(&it);
  if (je->code) return -1;
  int out = 0;
  for (; out < cap && out < groups; out++) { /* selection of the largest groups */
    int best = -1;
    for (int g = 0; g < groups; g++)
      if (n[g] && (best < 0 || n[g] > n[best])) best = g;
    if (best < 0) break;
    snprintf(why[out], MSG_TEXT_MAX + 1, "%s", seen[best][0] ? seen[best] : "(no reason recorded)");
    count[out] = n[best];
    n[best] = 0;
  }
  if (other && out < cap) {
    snprintf(why[out], MSG_TEXT_MAX + 1, "(other reasons)");
    count[out++] = other;
  }
  return out;
}

static int s_status_cli(int argc, char **argv) {
  if (argc != 1) return s_usage();
  const char *dir = argv[0];
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) {
    fprintf(stderr, "rsd: %s: %s\n", dir, je.text);
    return 1;
  }
  static co_progress_t p;
  co_journal_info_t info;
  long pid = s_lock_holder(dir);
  int status = 0;
  if (co_journal_info(j, &info, &je) || s_progress_from_journal(j, pid != 0, &p, &je)) {
    fprintf(stderr, "rsd: %s: %s\n", dir, je.text);
    status = 1;
  } else {
    printf("campaign %s: %llu/%llu episodes done, %llu abandoned, %llu leased now\n", info.name,
           (unsigned long long)p.done, (unsigned long long)p.total, (unsigned long long)p.abandoned,
           (unsigned long long)p.leased);
    if (pid) printf("coordinator running (pid %ld)\n", pid);
    else printf("coordinator not running%s\n", p.done + p.abandoned < p.total ? "; 'rsd resume DIR' continues" : "");
    char line[4096];
    s_progress_line(&p, line, sizeof line);
    printf("%s\n", line);
    printf("%-24s %8s %8s %10s %10s\n", "variant", "done", "total", "successes", "abandoned");
    for (size_t i = 0; i < p.nvariants; i++)
      printf("%-24s %8llu %8llu %10llu %10llu\n", p.variants[i].variant,
             (unsigned long long)p.variants[i].by_state[CO_EPISODE_DONE], (unsigned long long)p.variants[i].total,
             (unsigned long long)p.variants[i].successes,
             (unsigned long long)p.variants[i].by_state[CO_EPISODE_ABANDONED]);
    if (p.abandoned) {
      static char why[3][MSG_TEXT_MAX + 1];
      uint64_t cnt[3];
      int g = s_abandoned_reasons(j, why, cnt, 3, &je);
      if (g < 0) {
        fprintf(stderr, "rsd: %s: %s\n", dir, je.text);
        status = 1;
      } else {
        printf("abandoned episodes by last error (most frequent first):\n");
        for (int k = 0; k < g; k++) printf("%8llu  %.160s\n", (unsigned long long)cnt[k], why[k]);
        printf("once the cause is fixed, 'rsd resume %s --retry-abandoned' runs them again\n", dir);
      }
    }
  }
  co_journal_close(&j);
  return status;
}

/* rsd keys DIR: a new CURVE keys directory, and what goes where. */
static int s_keys_cli(int argc, char **argv) {
  if (argc != 1) return s_usage();
  msg_error_t me;
  if (msg_keys_make(argv[0], &me)) {
    fprintf(stderr, "rsd keys: %s\n", me.text);
    return 1;
  }
  printf("rsd keys: wrote CURVE keys in %s\n"
         "  coordinator machine: the config's bind.keys: %s (server.cert_secret and clients/ are read)\n"
         "  each worker machine: a directory holding copies of %s/server.cert and %s/client.cert_secret (mode 0600),\n"
         "    given as --keys DIR to rsd-sim-worker and rsd-gpu-worker\n"
         "  more client certificates: put their public file in %s/clients/\n",
         argv[0], argv[0], argv[0], argv[0], argv[0]);
  return 0;
}

/* Subcommands get the arguments after their name. */
int main(int argc, char **argv) {
  if (argc < 2) return s_usage();
  const char *cmd = argv[1];
  if (strcmp(cmd, "keys") == 0) return s_keys_cli(argc - 2, argv + 2);
  if (strcmp(cmd, "run") == 0 || strcmp(cmd, "resume") == 0) {
    int rc = strcmp(cmd, "run") == 0 ? s_run_cli(argc - 2, argv + 2) : s_resume_cli(argc - 2, argv + 2);
    zactor_destroy(&s_auth); /* after every socket closed */
    zcert_destroy(&s_curve_cert);
    return rc;
  }
  if (strcmp(cmd, "status") == 0) return s_status_cli(argc - 2, argv + 2);
  if (strcmp(cmd, "report") == 0) return co_report_cli(argc - 2, argv + 2);
  return s_usage();
}
