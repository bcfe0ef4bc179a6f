/* curve_test.c: CURVE on the coordinator's socket (DESIGN 8, config bind.keys), with real processes over
 * TCP on 127.0.0.1. `rsd keys` makes a keys directory (and refuses to overwrite one); `rsd run` with
 * bind.keys serves a campaign. A peer without CURVE, a peer whose client certificate is not in the
 * directory's clients/, and a peer that expects another server key say HELLO and hear nothing; a peer
 * with the directory's client certificate is welcomed, and so is the foreign one once its public file is
 * copied into clients/ while rsd runs; fake_sim_worker --keys runs the whole campaign.
 * (refused_campaign_test runs the real sim and GPU workers over CURVE through the broker.)
 *
 *   curve_test RSD FAKE_SIM_WORKER */
#include <czmq.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "journal.h"
#include "proc.h"
#include "scratch.h"

static bool s_mode_is(const char *dir, const char *name, mode_t mode) {
  char path[300];
  struct stat st;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return stat(path, &st) == 0 && (st.st_mode & 0777) == mode;
}

/* Says HELLO on a DEALER with the given CURVE setup (cert NULL: plain) and waits up to wait_ms for any
 * answer: its type, or -1 for none. */
static int s_hello(const char *endpoint, const zcert_t *cert, const char *server_key, int wait_ms) {
  msg_sock_opts_t so = msg_sock_opts_default();
  so.curve_cert = cert;
  so.curve_server_key = server_key;
  msg_error_t me;
  msg_sock_t *s = msg_sock_new(ZMQ_DEALER, endpoint, false, &so, NULL, &me);
  if (!s) return -2;
  msg_t h;
  msg_init(&h, MSG_HELLO, 4242);
  h.hello.role = MSG_ROLE_SIM;
  snprintf(h.hello.name, sizeof h.hello.name, "curve-probe");
  h.hello.capacity = 1;
  snprintf(h.hello.software, sizeof h.hello.software, "curve_test");
  msg_sock_send(s, NULL, &h, &me);
  int type = -1;
  zpoller_t *p = zpoller_new(msg_sock_zsock(s), NULL);
  if (zpoller_wait(p, wait_ms)) {
    msg_in_t *in = NULL;
    if (msg_sock_recv(s, &in, &me) == MSG_OK) type = (int)in->msg.type;
    msg_in_destroy(&in);
  }
  if (type == MSG_WELCOME) { /* leave without taking leases */
    msg_t bye;
    msg_init(&bye, MSG_BYE, 0);
    msg_sock_send(s, NULL, &bye, &me);
    zclock_sleep(100);
  }
  zpoller_destroy(&p);
  msg_sock_destroy(&s);
  return type;
}

int main(int argc, char **argv) {
  if (argc != 3) return 2;
  atexit(proc_kill_all);
  alarm(170);
  char *rsd = argv[1], *fake = argv[2];
  char dir[] = "/tmp/rsd-curve-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char keys[128], other[128], cfg[128], out[128], log[128], klog[128], text[2048];
  snprintf(keys, sizeof keys, "%s/keys", dir);
  snprintf(other, sizeof other, "%s/other", dir);
  snprintf(cfg, sizeof cfg, "%s/campaign.yaml", dir);
  snprintf(out, sizeof out, "%s/run", dir);
  snprintf(log, sizeof log, "%s/rsd.log", dir);
  snprintf(klog, sizeof klog, "%s/keys.log", dir);

  CHECK(proc_wait(proc_spawn((char *[]){rsd, "keys", keys, NULL}, klog, NULL, NULL), 30) == 0, "rsd keys (log %s)",
        klog);
  CHECK(s_mode_is(keys, "server.cert_secret", 0600) && s_mode_is(keys, "client.cert_secret", 0600) &&
            access(strcat(strcpy(text, keys), "/server.cert"), R_OK) == 0 &&
            access(strcat(strcpy(text, keys), "/clients/client.cert"), R_OK) == 0,
        "rsd keys: the files and their modes");
  CHECK(proc_wait(proc_spawn((char *[]){rsd, "keys", keys, NULL}, klog, NULL, NULL), 30) == 1,
        "rsd keys on a directory that holds keys must refuse");
  CHECK(proc_wait(proc_spawn((char *[]){rsd, "keys", other, NULL}, klog, NULL, NULL), 30) == 0, "rsd keys (other)");

  snprintf(text, sizeof text,
           "name: curve_test\nsuite: libero_spatial\ntasks: [0, 1]\ntrials: 4\noutput: %s\n"
           "variants:\n  - name: expert\n    policy: expert\nworkers:\n  sim_workers: 0\n"
           "leases:\n  heartbeat_ms: 100\n  liveness: 5\n"
           "bind:\n  coordinator: tcp://127.0.0.1:*\n  keys: %s\n",
           out, keys);
  CHECK(scratch_write(cfg, text), "write %s", cfg);
  pid_t co = proc_spawn((char *[]){rsd, "run", cfg, NULL}, log, NULL, NULL);
  char path[300], endpoint[256] = "";
  snprintf(path, sizeof path, "%s/coordinator.endpoint", out);
  for (int i = 0; i < 200 && !endpoint[0]; i++) {
    if (scratch_read(path, endpoint, sizeof endpoint) > 0) endpoint[strcspn(endpoint, "\n")] = '\0';
    else zclock_sleep(50);
  }
  CHECK(endpoint[0], "rsd wrote no endpoint (log %s)", log);

  zcert_t *ours = NULL, *theirs = NULL, *none = NULL;
  char our_server[41], their_server[41], bad[160], cmd[900];
  msg_error_t me;
  /* a public certificate copied where the secret one belongs is refused, naming the file */
  snprintf(bad, sizeof bad, "%s/bad", dir);
  snprintf(cmd, sizeof cmd, "mkdir -p '%s' && cp '%s/server.cert' '%s/' && cp '%s/client.cert' '%s/client.cert_secret'", bad,
           keys, bad, keys, bad);
  CHECK(system(cmd) == 0, "%s", cmd);
  CHECK(msg_keys_client(bad, &none, our_server, &me) != MSG_OK && none == NULL && strstr(me.text, "no secret key") &&
            strstr(me.text, "client.cert_secret"),
        "a public certificate as client.cert_secret: '%s'", me.text);
  CHECK(msg_keys_client(keys, &ours, our_server, &me) == MSG_OK, "keys: %s", me.text);
  CHECK(msg_keys_client(other, &theirs, their_server, &me) == MSG_OK, "other keys: %s", me.text);
  int plain = s_hello(endpoint, NULL, NULL, 1500);
  int foreign = s_hello(endpoint, theirs, our_server, 1500);
  int wrong_server = s_hello(endpoint, ours, their_server, 1500);
  int good = s_hello(endpoint, ours, our_server, 5000);
  CHECK(plain == -1, "a peer without CURVE got an answer (type %d)", plain);
  CHECK(foreign == -1, "a peer whose certificate is not in clients/ got an answer (type %d)", foreign);
  CHECK(wrong_server == -1, "a peer expecting another server key got an answer (type %d)", wrong_server);
  CHECK(good == MSG_WELCOME, "a peer with the campaign's client certificate got %d, not WELCOME", good);
  /* admitting a client: its public certificate into clients/, no restart */
  char src[300], dst[300];
  snprintf(src, sizeof src, "%s/client.cert", other);
  snprintf(dst, sizeof dst, "%s/clients/other.cert", keys);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
  CHECK(system(cmd) == 0, "%s", cmd);
  int admitted = s_hello(endpoint, theirs, our_server, 5000);
  CHECK(admitted == MSG_WELCOME, "a certificate added to clients/ while rsd runs got %d, not WELCOME", admitted);
  zcert_destroy(&ours);
  zcert_destroy(&theirs);

  proc_spawn((char *[]){fake, "--keys", keys, endpoint, "3", "20", NULL}, NULL, NULL, NULL);
  int rc = proc_wait(co, 60);
  CHECK(rc == 0, "rsd run exited %d (log %s)", rc, log);
  co_journal_error_t je;
  co_journal_t *j = co_journal_open(out, CO_JOURNAL_READ_ONLY, NULL, NULL, &je);
  CHECK(j != NULL, "journal: %s", je.text);
  if (j) {
    co_journal_counts_t total;
    co_journal_counts(j, &total, NULL, 0, NULL, &je);
    CHECK(total.total == 8 && total.by_state[CO_EPISODE_DONE] == 8, "%llu of %llu done over CURVE",
          (unsigned long long)total.by_state[CO_EPISODE_DONE], (unsigned long long)total.total);
    co_journal_close(&j);
  }
  scratch_done(dir);
  return check_summary("curve_test");
}
