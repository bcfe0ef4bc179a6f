/* msg_twoproc_test.c: the protocol library between two real processes, over tcp://127.0.0.1 (ephemeral
 * port) and over ipc:// in a temporary directory.
 *
 * The parent binds a ROUTER (like the coordinator) and starts itself again as the peer, a DEALER (like
 * a worker), which echoes every message it decodes and answers every message it cannot decode with an
 * ERROR. The parent sends the sample of every message type and checks that the echo equals it, sends
 * malformed headers and checks the ERROR codes, and ends with BYE; the peer reports its counters in its
 * BYE reason and exits 0.
 *
 *   msg_twoproc_test                       run the test (tcp, then ipc) against the C peer below
 *   msg_twoproc_test --python PY SCRIPT    the same against a peer written in Python from
 *                                          docs/protocol.md alone (tests/protocol_peer.py)
 *   msg_twoproc_test peer ENDPOINT         the echo peer (started by the test) */
#include <czmq.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "msg.h"
#include "msg_samples.h"

static pid_t s_child = -1;

static void s_kill_child(void) {
  if (s_child > 0) {
    kill(s_child, SIGKILL);
    waitpid(s_child, NULL, 0);
    s_child = -1;
  }
}

/* ---- the peer --------------------------------------------------------------------------------- */
static int s_peer(const char *endpoint) {
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
  alarm(60);
  msg_error_t err;
  msg_sock_t *sock = msg_sock_new(ZMQ_DEALER, endpoint, false, NULL, NULL, &err);
  if (!sock) {
    fprintf(stderr, "peer: %s\n", err.text);
    return 2;
  }
  msg_t hello;
  msg_sample(MSG_HELLO, &hello);
  hello.hello.role = MSG_ROLE_SIM;
  if (msg_sock_send(sock, NULL, &hello, &err)) {
    fprintf(stderr, "peer: HELLO: %s\n", err.text);
    return 2;
  }
  int status = 2;
  for (;;) {
    msg_in_t *in = NULL;
    msg_err_t rc = msg_sock_recv(sock, &in, &err);
    if (rc == MSG_ERR_TRANSPORT) break;
    if (rc != MSG_OK) {
      msg_error_t send_err;
      if (msg_sock_send_error(sock, NULL, in->msg.type < MSG_TYPE_COUNT_ ? &in->msg : NULL, &err, &send_err))
        fprintf(stderr, "peer: ERROR reply: %s\n", send_err.text);
      msg_in_destroy(&in);
      continue;
    }
    bool bye = in->msg.type == MSG_BYE;
    if (bye) {
      msg_sock_stats_t st = msg_sock_stats(sock);
      in->msg.bye.has_reason = true;
      snprintf(in->msg.bye.reason, sizeof in->msg.bye.reason, "received %llu rejected %llu",
               (unsigned long long)st.received, (unsigned long long)st.rejected);
    }
    if (msg_sock_send(sock, NULL, &in->msg, &err)) fprintf(stderr, "peer: echo: %s\n", err.text);
    msg_in_destroy(&in);
    if (bye) {
      status = 0;
      break;
    }
  }
  msg_sock_destroy(&sock);
  return status;
}

/* ---- the test side ------------------------------------------------------------------------------ */

/* Receives one message within timeout_ms; returns NULL (and fails a check) on timeout. */
static msg_in_t *s_recv(msg_sock_t *sock, int timeout_ms, msg_err_t *rc_out) {
  zpoller_t *poller = zpoller_new(msg_sock_zsock(sock), NULL);
  void *ready = zpoller_wait(poller, timeout_ms);
  zpoller_destroy(&poller);
  CHECK(ready != NULL, "no message within %d ms", timeout_ms);
  if (!ready) return NULL;
  msg_in_t *in = NULL;
  msg_error_t err = {0};
  msg_err_t rc = msg_sock_recv(sock, &in, &err);
  if (rc_out) *rc_out = rc;
  CHECK(rc == MSG_OK, "receive: %s", err.text);
  return in;
}

/* True when a and b are the same message: payload bytes compared, then the structs without pointers. */
static bool s_same(const msg_t *a, const msg_t *b) {
  if (a->nframes != b->nframes) return false;
  msg_t x = *a, y = *b;
  for (uint32_t i = 0; i < a->nframes; i++) {
    if (a->frames[i].size != b->frames[i].size || memcmp(a->frames[i].data, b->frames[i].data, a->frames[i].size))
      return false;
    x.frames[i].data = y.frames[i].data = NULL;
  }
  return memcmp(&x, &y, sizeof x) == 0;
}

static void s_send_raw(msg_sock_t *sock, zframe_t *route, const void *header, size_t n) {
  void *h = zsock_resolve(msg_sock_zsock(sock));
  zmq_send(h, zframe_data(route), zframe_size(route), ZMQ_SNDMORE);
  zmq_send(h, header, n, 0);
}

/* The peer's command line: this program in peer mode, or PY SCRIPT ENDPOINT. */
static const char *s_python, *s_script;

static void s_run(const char *endpoint_pattern, const char *self_path) {
  msg_error_t err = {0};
  msg_sock_t *router = msg_sock_new(ZMQ_ROUTER, endpoint_pattern, true, NULL, NULL, &err);
  CHECK(router != NULL, "bind %s: %s", endpoint_pattern, err.text);
  if (!router) return;
  const char *endpoint = msg_sock_endpoint(router);
  CHECK(strstr(endpoint, "*") == NULL, "endpoint %s not resolved", endpoint);

  s_child = fork();
  if (s_child == 0) {
    if (s_python)
      execl(s_python, s_python, s_script, endpoint, (char *)NULL);
    else
      execl(self_path, self_path, "peer", endpoint, (char *)NULL);
    _exit(127);
  }
  msg_in_t *hello = s_recv(router, 10000, NULL);
  if (!hello) {
    s_kill_child();
    msg_sock_destroy(&router);
    return;
  }
  CHECK(hello->msg.type == MSG_HELLO && hello->msg.hello.role == MSG_ROLE_SIM && hello->route != NULL,
        "first message is not the peer's HELLO");
  zframe_t *route = zframe_dup(hello->route);
  msg_in_destroy(&hello);

  /* Every message type, there and back. */
  for (int t = 0; t < MSG_TYPE_COUNT_; t++) {
    if (t == MSG_BYE) continue; /* last */
    msg_t m;
    msg_sample((msg_type_t)t, &m);
    CHECK(msg_sock_send(router, route, &m, &err) == MSG_OK, "send %s: %s", msg_type_name(m.type), err.text);
    msg_in_t *echo = s_recv(router, 5000, NULL);
    CHECK(echo && s_same(&m, &echo->msg), "%s: echo differs from what was sent (%s)", msg_type_name(m.type),
          endpoint);
    if (echo && t == MSG_INFER) {
      /* Forwarding, as the broker does: the frames go out unchanged, without re-encoding. */
      CHECK(msg_sock_forward(router, route, &echo, &err) == MSG_OK && echo == NULL, "forward: %s", err.text);
      echo = s_recv(router, 5000, NULL);
      CHECK(echo && s_same(&m, &echo->msg), "forwarded INFER came back different (%s)", endpoint);
      zframe_t *nobody = zframe_new("nobody", 6);
      CHECK(msg_sock_forward(router, nobody, &echo, &err) == MSG_ERR_TRANSPORT && echo == NULL,
            "forward to an unknown routing id: %s", err.text);
      zframe_destroy(&nobody);
    }
    msg_in_destroy(&echo);
  }

  /* Malformed input gets a typed ERROR and the peer keeps serving. */
  static const uint8_t not_map[] = {0x93, 0x01, 0x02, 0x03};
  s_send_raw(router, route, not_map, sizeof not_map);
  msg_in_t *e = s_recv(router, 5000, NULL);
  CHECK(e && e->msg.type == MSG_ERROR && e->msg.error.code == MSG_ERR_WRONG_TYPE && !e->msg.error.has_about,
        "array header: no ERROR %d reply", MSG_ERR_WRONG_TYPE);
  msg_in_destroy(&e);
  static const uint8_t v2[] = {0x83, 0xa1, 'v', 0x02, 0xa4, 't', 'y', 'p', 'e', 0xa3, 'B', 'Y', 'E', 0xa2, 'i', 'd', 0x05};
  s_send_raw(router, route, v2, sizeof v2);
  e = s_recv(router, 5000, NULL);
  CHECK(e && e->msg.type == MSG_ERROR && e->msg.error.code == MSG_ERR_VERSION &&
            strstr(e->msg.error.text, "version 2, this side speaks 1") != NULL,
        "version 2: no VERSION error naming both versions");
  msg_in_destroy(&e);

  /* ROUTER_MANDATORY: a message to a peer that is not there is an error, not a silent drop. */
  zframe_t *nobody = zframe_new("nobody", 6);
  msg_t ack;
  msg_sample(MSG_ACK, &ack);
  CHECK(msg_sock_send(router, nobody, &ack, &err) == MSG_ERR_TRANSPORT && strstr(err.text, "unreachable"),
        "send to an unknown routing id: %s", err.text);
  zframe_destroy(&nobody);

  /* BYE ends the conversation; the peer reports what it counted. */
  msg_t bye;
  msg_sample(MSG_BYE, &bye);
  CHECK(msg_sock_send(router, route, &bye, &err) == MSG_OK, "send BYE: %s", err.text);
  msg_in_t *last = s_recv(router, 5000, NULL);
  char want[64];
  snprintf(want, sizeof want, "received %d rejected 2", MSG_TYPE_COUNT_ + 3);
  CHECK(last && last->msg.type == MSG_BYE && strcmp(last->msg.bye.reason, want) == 0, "peer's BYE: '%s', want '%s'",
        last ? last->msg.bye.reason : "(none)", want);
  msg_in_destroy(&last);
  int status = -1;
  for (int i = 0; i < 100 && waitpid(s_child, &status, WNOHANG) == 0; i++) usleep(50000);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "peer did not exit cleanly (status %d)", status);
  if (WIFEXITED(status)) s_child = -1;
  s_kill_child();

  msg_sock_stats_t st = msg_sock_stats(router);
  CHECK(st.rejected == 0 && st.received == (uint64_t)MSG_TYPE_COUNT_ + 4, "router counters: received %llu rejected %llu",
        (unsigned long long)st.received, (unsigned long long)st.rejected);
  zframe_destroy(&route);
  msg_sock_destroy(&router);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "peer") == 0) return s_peer(argv[2]);
  if (argc == 4 && strcmp(argv[1], "--python") == 0) {
    s_python = argv[2];
    s_script = argv[3];
  }
  alarm(120);
  atexit(s_kill_child);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 2;
  self[n] = '\0';

  s_run("tcp://127.0.0.1:*", self);

  char dir[] = "/tmp/rsd-msg-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char ipc[128];
  snprintf(ipc, sizeof ipc, "ipc://%s/peer.sock", dir);
  s_run(ipc, self);
  char path[160];
  snprintf(path, sizeof path, "%s/peer.sock", dir);
  unlink(path);
  rmdir(dir);
  return check_summary(s_python ? "msg_twoproc_test --python" : "msg_twoproc_test");
}
