/* rsd.c: the `rsd` command.
 *
 *   rsd run CONFIG [--out DIR]   open or resume the campaign CONFIG describes and serve it to sim workers
 *   rsd status DIR               progress of the campaign in DIR, from its journal (also while it runs)
 *
 * `run` writes the coordinator's endpoint to DIR/coordinator.endpoint, so that sim workers on this
 * machine (and tests) can find an ephemeral port. Ctrl-C (SIGINT) or SIGTERM stops cleanly: leases go
 * back to the queue and a later `rsd run` continues. Exit status: 0 campaign complete, 1 error, 2 usage
 * or config error, 130 stopped before the end. */
#include <czmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "journal.h"
#include "server.h"

static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig) {
  (void)sig;
  s_stop = 1;
}

static int s_usage(void) {
  fprintf(stderr, "usage: rsd run CONFIG [--out DIR]\n       rsd status DIR\n");
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

static bool s_tty;
static void s_on_progress(const co_progress_t *p) {
  static double last_print = -100;
  if (!s_tty && p->elapsed_s - last_print < 10 && p->done + p->abandoned < p->total) return;
  last_print = p->elapsed_s;
  double rate = p->elapsed_s > 0 ? (double)p->done * 60.0 / p->elapsed_s : 0;
  double left = (double)(p->total - p->done - p->abandoned);
  char eta[32] = "?";
  if (rate > 0) snprintf(eta, sizeof eta, "%.0f min", left / rate);
  fprintf(stderr, "%s[rsd] %llu/%llu done, %llu successes, %llu abandoned, %u workers, %.1f episodes/min, ETA %s%s",
          s_tty ? "\r" : "", (unsigned long long)p->done, (unsigned long long)p->total,
          (unsigned long long)p->successes, (unsigned long long)p->abandoned, p->workers, rate, eta,
          s_tty ? "   " : "\n");
}

static int s_run(const char *config_path, const char *out_override) {
  co_config_t cfg;
  co_config_error_t cerr;
  if (co_config_load(config_path, &cfg, &cerr)) {
    fprintf(stderr, "rsd: %s\n", cerr.text);
    return 2;
  }
  if (out_override) snprintf(cfg.output, sizeof cfg.output, "%s", out_override);
  if (s_mkdirs(cfg.output) != 0) {
    fprintf(stderr, "rsd: cannot create the output directory %s: %s\n", cfg.output, strerror(errno));
    return 1;
  }
  static char json[CO_CONFIG_JSON_MAX];
  co_config_to_json(&cfg, json, sizeof json);
  char hash[17];
  s_hash(json, hash);
  co_journal_campaign_t camp = {cfg.name, json, hash, "rsd 0.1.0"};
  co_journal_error_t je;
  bool created = false;
  co_journal_t *j = co_journal_open(cfg.output, CO_JOURNAL_CREATE_OR_RESUME, &camp, &created, &je);
  if (!j) {
    fprintf(stderr, "rsd: journal in %s: %s\n", cfg.output, je.text);
    return 1;
  }
  int status = 1;
  co_server_t *server = NULL;
  if (!created) { /* resuming: the stored config must agree */
    co_journal_info_t info;
    co_config_t stored;
    char diff[8192];
    if (co_journal_info(j, &info, &je) ||
        co_config_from_json(info.config_json, strlen(info.config_json), &stored, &cerr)) {
      fprintf(stderr, "rsd: cannot read the stored config of %s: %s\n", cfg.output, je.text[0] ? je.text : cerr.text);
      goto done;
    }
    int forbidding = co_config_diff(&stored, &cfg, diff, sizeof diff);
    if (forbidding > 0) {
      fprintf(stderr, "rsd: %s holds campaign '%s' with another config; refusing to resume. Differences:\n%s",
              cfg.output, info.name, diff);
      status = 2;
      goto done;
    }
    size_t recovered = 0;
    if (co_journal_recover(j, &recovered, &je)) {
      fprintf(stderr, "rsd: %s\n", je.text);
      goto done;
    }
    fprintf(stderr, "[rsd] resuming campaign %s (%zu leases of the previous run back in the queue)\n", cfg.name,
            recovered);
  }
  uint64_t n = co_config_episodes(&cfg);
  co_episode_key_t *keys = calloc(n ? n : 1, sizeof *keys);
  for (uint64_t i = 0; keys && i < n; i++) {
    co_config_episode_t e;
    co_config_episode(&cfg, i, &e);
    snprintf(keys[i].variant, sizeof keys[i].variant, "%s", cfg.variants[e.variant].name);
    keys[i].task = e.task;
    keys[i].trial = e.trial;
  }
  size_t added = 0;
  co_journal_err_t arc = keys ? co_journal_add_episodes(j, keys, n, &added, &je) : CO_JOURNAL_ERR_NOMEM;
  free(keys);
  if (arc) {
    fprintf(stderr, "rsd: %s\n", je.text);
    goto done;
  }
  zsys_handler_set(NULL); /* our handlers, not czmq's */
  struct sigaction sa = {0};
  sa.sa_handler = s_on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  char err[1024];
  server = co_server_new(&cfg, j, err, sizeof err);
  if (!server) {
    fprintf(stderr, "rsd: %s\n", err);
    goto done;
  }
  char path[CO_PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/coordinator.endpoint", cfg.output);
  FILE *f = fopen(path, "w");
  if (f) {
    fprintf(f, "%s\n", co_server_endpoint(server));
    fclose(f);
  }
  fprintf(stderr, "[rsd] campaign %s: %llu episodes; sim workers connect to %s\n", cfg.name, (unsigned long long)n,
          co_server_endpoint(server));
  s_tty = isatty(STDERR_FILENO);
  int rc = co_server_run(server, &s_stop, s_on_progress, err, sizeof err);
  if (s_tty) fprintf(stderr, "\n");
  if (rc < 0) {
    fprintf(stderr, "rsd: %s\n", err);
  } else if (rc == 1) {
    fprintf(stderr, "[rsd] stopped; leases released. 'rsd run %s' continues the campaign.\n", config_path);
    status = 130;
  } else {
    fprintf(stderr, "[rsd] campaign %s complete; results in %s/journal.sqlite\n", cfg.name, cfg.output);
    status = 0;
  }
done:
  co_server_destroy(&server);
  co_journal_close(&j);
  return status;
}

static int s_status(const char *dir) {
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(dir, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  if (!j) {
    fprintf(stderr, "rsd: %s: %s\n", dir, je.text);
    return 1;
  }
  co_journal_counts_t total, per[CO_MAX_VARIANTS];
  size_t nv = 0;
  co_journal_info_t info;
  int status = 0;
  if (co_journal_info(j, &info, &je) || co_journal_counts(j, &total, per, CO_MAX_VARIANTS, &nv, &je)) {
    fprintf(stderr, "rsd: %s: %s\n", dir, je.text);
    status = 1;
  } else {
    printf("campaign %s: %llu/%llu episodes done, %llu abandoned, %llu leased now\n", info.name,
           (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total,
           (unsigned long long)total.by_state[CO_EPISODE_ABANDONED], (unsigned long long)total.by_state[CO_EPISODE_LEASED]);
    printf("%-24s %8s %8s %10s %10s\n", "variant", "done", "total", "successes", "abandoned");
    for (size_t i = 0; i < nv && i < CO_MAX_VARIANTS; i++)
      printf("%-24s %8llu %8llu %10llu %10llu\n", per[i].variant, (unsigned long long)per[i].by_state[CO_EPISODE_DONE],
             (unsigned long long)per[i].total, (unsigned long long)per[i].successes,
             (unsigned long long)per[i].by_state[CO_EPISODE_ABANDONED]);
  }
  co_journal_close(&j);
  return status;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "run") == 0) {
    const char *out = NULL;
    if (argc == 5 && strcmp(argv[3], "--out") == 0) out = argv[4];
    else if (argc != 3) return s_usage();
    return s_run(argv[2], out);
  }
  if (argc == 3 && strcmp(argv[1], "status") == 0) return s_status(argv[2]);
  return s_usage();
}
