/* msg_bench.c: what rsd's wire protocol costs. For realistic INFER messages (one 128x128x3 camera
 * image, or two 256x256x3 ones, plus proprio) it times
 *   codec      msg_encode and msg_decode alone (wall and CPU per call);
 *   in-process one thread sends, echoes and receives over inproc:// (no I/O thread, no kernel): the
 *              CPU that the codec plus the msg_sock wrapper add per message, without scheduler noise
 *              (run last, with glibc's heap trimming turned off, see main);
 *   loopback   the round trip to an echo peer in another process over tcp://127.0.0.1 and ipc://
 *              (p50 / p99 / mean latency, and CPU per round trip in both processes);
 * and prints a table; --json PATH writes the same numbers as JSON.
 *
 * Variants, all DEALER (client, connects) -> ROUTER (echo peer, binds) with the same socket options:
 *   rsd      client msg_sock_send -> peer msg_sock_recv (full decode) + msg_sock_send of the decoded
 *            message (full encode) -> client msg_sock_recv (full decode)
 *   bare     the same header bytes and payload frames with zmq_send (which copies, as msg_sock_send
 *            does) and zmq_msg_recv on both sides; no encode, no decode
 *   bare-zc  as bare, but the peer echoes the received zmq_msg_t frames without copying them: what the
 *            payload copy in the echo's send costs
 * The loopback peers of one case run at once and the client interleaves blocks of round trips across
 * them, so that a slow stretch of the machine hits every variant alike; by default the client and the
 * peers are pinned to two different CPUs so that every variant also gets the same placement.
 *
 * A program, not a test: it asserts nothing about timing (docs/benchmarks.md keeps the numbers). Echo
 * peers are child processes (fork, then exec of this binary with --peer, so that no ZeroMQ context
 * crosses a fork); they die with the parent (PR_SET_PDEATHSIG) and are killed and reaped on every exit
 * path, and the ipc:// directory is removed. */
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_host.h"
#include "msg.h"

#define S_WARMUP 500         /* round trips per variant before measuring */
#define S_BLOCK 25           /* measured loopback round trips run in blocks of this many, variants interleaved */
#define S_REPS 20            /* codec and in-process figures: the median over this many blocks */
#define S_RECV_TIMEOUT_MS 10000
#define S_TARGET_PCT 10.0    /* issue target: the framing adds under 10% to the bare round trip (p50) */
#define S_TARGET_CPU_US 20.0 /* issue target: under 20 us of CPU per message */
#define S_INSTRUCTION "pick up the black bowl between the plate and the ramekin and place it on the plate"
#define S_WORKER_ID 7ull     /* INFER ids carry the sim worker's id in the high half (msg_fields.h, WELCOME) */

/* ---- the measured messages -------------------------------------------------------------------- */
typedef struct {
  const char *name;  /* JSON key */
  const char *label; /* table label */
  uint32_t nimages;
  uint32_t side; /* images are side x side x 3, u8 */
} s_case_t;

static const s_case_t s_cases[] = {
    {"infer_1x128", "1 image 128x128x3", 1, 128},
    {"infer_2x256", "2 images 256x256x3", 2, 256},
};
#define S_NCASES (sizeof s_cases / sizeof s_cases[0])

typedef enum { S_RSD, S_BARE, S_BARE_ZC, S_NVARIANTS } s_variant_t;
static const char *const s_variant_names[S_NVARIANTS] = {"rsd", "bare", "bare-zc"};
static const char *const s_transports[] = {"tcp", "ipc"};
#define S_NTRANSPORTS 2

/* ---- results ------------------------------------------------------------------------------------ */
typedef struct {
  double p50, p99, mean, min, max; /* round-trip latency, us */
  double client_cpu_us;            /* client process CPU per round trip (its ZeroMQ I/O thread included) */
  double peer_cpu_us;              /* echo peer process CPU per round trip */
} s_rt_stats_t;

typedef struct {
  double cpu_us, wall_us; /* per in-process round trip */
} s_inproc_t;

typedef struct {
  size_t header_bytes, payload_bytes;
  double enc_wall_us, enc_cpu_us, dec_wall_us, dec_cpu_us; /* per call */
  s_inproc_t inproc[S_NVARIANTS];
  s_rt_stats_t rt[S_NTRANSPORTS][S_NVARIANTS];
} s_result_t;

/* Codec CPU per message: one encode and one decode. */
static double s_codec_cpu_us(const s_result_t *r) { return r->enc_cpu_us + r->dec_cpu_us; }

/* Codec + wrapper CPU per message, in-process: (rsd - bare) per round trip over its two messages. */
static double s_framing_cpu_us(const s_result_t *r) {
  return (r->inproc[S_RSD].cpu_us - r->inproc[S_BARE].cpu_us) / 2;
}

/* The same from the loopback runs, client and peer together; includes scheduler and kernel noise. */
static double s_loopback_cpu_us(const s_rt_stats_t *rt) {
  return ((rt[S_RSD].client_cpu_us + rt[S_RSD].peer_cpu_us) -
          (rt[S_BARE].client_cpu_us + rt[S_BARE].peer_cpu_us)) / 2;
}

/* ---- process-wide state for cleanup ------------------------------------------------------------ */
typedef struct {
  pid_t pid; /* 0: none */
  int fd;    /* parent's end of the control socketpair; -1: none */
  char endpoint[320];
} s_peer_t;

/* Live echo peers and ipc socket paths: read by s_cleanup (atexit) and by the signal handler. */
static s_peer_t s_peers[S_NVARIANTS] = {{0, -1, ""}, {0, -1, ""}, {0, -1, ""}};
static char s_ipc_dir[128];
static char s_ipc_paths[S_NCASES * S_NVARIANTS][192];
static size_t s_nipc_paths;

static void s_remove_ipc(void) {
  for (size_t i = 0; i < s_nipc_paths; i++) unlink(s_ipc_paths[i]);
  if (s_ipc_dir[0]) rmdir(s_ipc_dir);
}

static void s_cleanup(void) {
  for (int v = 0; v < S_NVARIANTS; v++) {
    if (s_peers[v].pid > 0) {
      kill(s_peers[v].pid, SIGKILL);
      waitpid(s_peers[v].pid, NULL, 0);
      s_peers[v].pid = 0;
    }
    if (s_peers[v].fd >= 0) close(s_peers[v].fd);
    s_peers[v].fd = -1;
  }
  s_remove_ipc();
  s_ipc_dir[0] = '\0';
}

/* SIGINT / SIGTERM: only async-signal-safe calls (kill, unlink, rmdir), then die of the signal. */
static void s_on_signal(int sig) {
  for (int v = 0; v < S_NVARIANTS; v++)
    if (s_peers[v].pid > 0) kill(s_peers[v].pid, SIGKILL);
  s_remove_ipc();
  signal(sig, SIG_DFL);
  raise(sig);
}

static void s_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void s_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "msg_bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1); /* s_cleanup runs from atexit */
}

static uint64_t s_ns(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- CPU placement ------------------------------------------------------------------------------- */

/* CPUs for the client and the echo peers: the first two of this process's affinity mask, so that every
 * variant runs with the same placement (on a 2-core machine the scheduler otherwise puts each peer
 * process somewhere else, and that moves p50 by more than the codec costs). -1: do not pin. */
static int s_cpu_client = -1, s_cpu_peer = -1;

static void s_pin_choose(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (!CPU_ISSET(c, &set)) continue;
    if (s_cpu_client < 0)
      s_cpu_client = c;
    else if (s_cpu_peer < 0)
      s_cpu_peer = c;
  }
  if (s_cpu_peer < 0) s_cpu_client = -1; /* one CPU: nothing to separate */
}

/* Pins the calling process (and the threads it starts later) to cpu; a plain system call, safe between
 * fork and exec. */
static int s_pin(int cpu) {
  if (cpu < 0) return 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* ---- sockets ------------------------------------------------------------------------------------- */

/* A raw libzmq socket with the options msg_sock_new sets (msg_sock_opts_default), so that the variants
 * differ only in the codec and the wrapper. Writes the resolved endpoint into `resolved`. */
static void *s_bare_socket(void *ctx, int type, const char *endpoint, bool bind, char *resolved, size_t cap) {
  msg_sock_opts_t o = msg_sock_opts_default();
  void *s = zmq_socket(ctx, type);
  if (!s) s_die("zmq_socket: %s", zmq_strerror(zmq_errno()));
  int one = 1, timeout = S_RECV_TIMEOUT_MS;
  zmq_setsockopt(s, ZMQ_SNDHWM, &o.hwm, sizeof o.hwm);
  zmq_setsockopt(s, ZMQ_RCVHWM, &o.hwm, sizeof o.hwm);
  zmq_setsockopt(s, ZMQ_LINGER, &o.linger_ms, sizeof o.linger_ms);
  zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &o.max_msg_bytes, sizeof o.max_msg_bytes);
  if (o.heartbeat_ivl_ms > 0) {
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &o.heartbeat_ivl_ms, sizeof o.heartbeat_ivl_ms);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &o.heartbeat_timeout_ms, sizeof o.heartbeat_timeout_ms);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TTL, &o.heartbeat_timeout_ms, sizeof o.heartbeat_timeout_ms);
  }
  if (type == ZMQ_ROUTER) zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
  if (type == ZMQ_DEALER) zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
  if ((bind ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint)) != 0)
    s_die("cannot %s '%s': %s", bind ? "bind" : "connect to", endpoint, zmq_strerror(zmq_errno()));
  size_t len = cap;
  if (bind) {
    if (zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, resolved, &len) != 0)
      s_die("ZMQ_LAST_ENDPOINT: %s", zmq_strerror(zmq_errno()));
  } else {
    snprintf(resolved, cap, "%s", endpoint);
  }
  return s;
}

/* An rsd socket; DEALERs get the receive timeout, so that a dead peer ends the run instead of hanging it. */
static msg_sock_t *s_rsd_socket(int type, const char *endpoint, bool bind) {
  msg_error_t err = {0};
  msg_sock_t *s = msg_sock_new(type, endpoint, bind, NULL, NULL, &err);
  if (!s) s_die("msg_sock_new('%s'): %s", endpoint, err.text);
  if (type == ZMQ_DEALER) zsock_set_rcvtimeo(msg_sock_zsock(s), S_RECV_TIMEOUT_MS);
  return s;
}

/* ---- one step of a round trip, per variant ----------------------------------------------------------- */
typedef struct {
  msg_t *m;         /* the INFER; rsd sends it with a new id each time */
  msg_buf_t header; /* owned: m encoded once, the header bytes the bare variants send */
  size_t payload_bytes;
} s_wire_t;

static void s_send_rsd(msg_sock_t *s, msg_t *m, uint64_t id) {
  msg_error_t err = {0};
  m->id = id;
  if (msg_sock_send(s, NULL, m, &err) != MSG_OK) s_die("rsd client: msg_sock_send: %s", err.text);
}

static void s_recv_rsd(msg_sock_t *s, const msg_t *sent) {
  msg_error_t err = {0};
  msg_in_t *in = NULL;
  if (msg_sock_recv(s, &in, &err) != MSG_OK) s_die("rsd client: msg_sock_recv: %s", err.text);
  if (in->msg.type != MSG_INFER || in->msg.id != sent->id || in->msg.nframes != sent->nframes)
    s_die("rsd client: echo of INFER %" PRIu64 " came back as %s %" PRIu64 " with %u frames", sent->id,
          msg_type_name(in->msg.type) ? msg_type_name(in->msg.type) : "?", in->msg.id, in->msg.nframes);
  msg_in_destroy(&in);
}

/* The rsd echo: full decode, then full encode of the decoded message back to its sender. */
static void s_echo_rsd(msg_sock_t *s) {
  msg_error_t err = {0};
  msg_in_t *in = NULL;
  if (msg_sock_recv(s, &in, &err) != MSG_OK) s_die("rsd peer: msg_sock_recv: %s", err.text);
  if (msg_sock_send(s, in->route, &in->msg, &err) != MSG_OK) s_die("rsd peer: msg_sock_send: %s", err.text);
  msg_in_destroy(&in);
}

static void s_send_bare(void *s, const s_wire_t *w) {
  const msg_t *m = w->m;
  if (zmq_send(s, w->header.data, w->header.size, ZMQ_DONTWAIT | (m->nframes ? ZMQ_SNDMORE : 0)) < 0)
    s_die("bare client: send header: %s", zmq_strerror(zmq_errno()));
  for (uint32_t i = 0; i < m->nframes; i++)
    if (zmq_send(s, m->frames[i].data, m->frames[i].size, i + 1 < m->nframes ? ZMQ_SNDMORE : 0) < 0)
      s_die("bare client: send payload: %s", zmq_strerror(zmq_errno()));
}

static void s_recv_bare(void *s, const s_wire_t *w) {
  size_t parts = 0, bytes = 0;
  int more = 1;
  while (more) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, s, 0) < 0) s_die("bare client: zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
    bytes += zmq_msg_size(&part);
    more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    parts++;
  }
  if (parts != 1 + w->m->nframes || bytes != w->header.size + w->payload_bytes)
    s_die("bare client: echo came back as %zu frames / %zu bytes, sent %u / %zu", parts, bytes,
          1 + w->m->nframes, w->header.size + w->payload_bytes);
}

/* The bare echo: all frames (routing id first) back as they came; copied by zmq_send unless zero_copy. */
static void s_echo_bare(void *s, bool zero_copy) {
  enum { CAP = MSG_MAX_FRAMES + 2 }; /* routing id + header + payloads */
  zmq_msg_t parts[CAP];
  int n = 0, more = 1;
  while (more) {
    if (n == CAP) s_die("bare peer: more than %d frames in one message", CAP);
    zmq_msg_init(&parts[n]);
    if (zmq_msg_recv(&parts[n], s, 0) < 0) s_die("bare peer: zmq_msg_recv: %s", zmq_strerror(zmq_errno()));
    more = zmq_msg_more(&parts[n]);
    n++;
  }
  for (int k = 0; k < n; k++) {
    int flags = (k + 1 < n ? ZMQ_SNDMORE : 0) | (k == 0 ? ZMQ_DONTWAIT : 0);
    int rc = zero_copy ? zmq_msg_send(&parts[k], s, flags)
                       : zmq_send(s, zmq_msg_data(&parts[k]), zmq_msg_size(&parts[k]), flags);
    if (rc < 0) s_die("bare peer: send: %s", zmq_strerror(zmq_errno()));
  }
  for (int k = 0; k < n; k++) zmq_msg_close(&parts[k]);
}

/* A client's (or peer's) socket: one of the two is set. */
typedef struct {
  msg_sock_t *rsd; /* owned */
  void *zs;        /* owned raw socket */
} s_sock_t;

static void s_sock_close(s_sock_t *s) {
  msg_sock_destroy(&s->rsd);
  if (s->zs) zmq_close(s->zs);
  s->zs = NULL;
}

static void s_send(s_variant_t v, s_sock_t *s, s_wire_t *w, uint64_t id) {
  if (v == S_RSD)
    s_send_rsd(s->rsd, w->m, id);
  else
    s_send_bare(s->zs, w);
}

static void s_recv(s_variant_t v, s_sock_t *s, s_wire_t *w) {
  if (v == S_RSD)
    s_recv_rsd(s->rsd, w->m);
  else
    s_recv_bare(s->zs, w);
}

static void s_echo(s_variant_t v, s_sock_t *s) {
  if (v == S_RSD)
    s_echo_rsd(s->rsd);
  else
    s_echo_bare(s->zs, v == S_BARE_ZC);
}

/* ---- control channel between the client and its peers (one line at a time) -------------------------- */
static void s_write_line(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_write_line(int fd, const char *fmt, ...) {
  char line[320];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof line) s_die("control line too long");
  for (size_t off = 0; off < (size_t)n;) {
    ssize_t w = write(fd, line + off, (size_t)n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) s_die("write to control channel: %s", strerror(errno));
    off += (size_t)w;
  }
}

/* Reads one '\n'-terminated line (without the '\n'); false on EOF, error or timeout. */
static bool s_read_line(int fd, char *out, size_t cap, int timeout_ms) {
  size_t n = 0;
  uint64_t deadline = s_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000u;
  while (n + 1 < cap) {
    uint64_t now = s_ns(CLOCK_MONOTONIC);
    if (now >= deadline) break;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char ch;
    ssize_t got = read(fd, &ch, 1);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    if (ch == '\n') {
      out[n] = '\0';
      return true;
    }
    out[n++] = ch;
  }
  out[n] = '\0';
  return false;
}

/* ---- the echo peer (child process, entered through --peer) ----------------------------------------- */

/* Binds, reports the resolved endpoint, echoes warmup + iters messages, reports its CPU time over the
 * last iters, then waits for the control fd to close before it closes its socket (linger is 0: closing
 * early could drop the last reply). */
static int s_peer_main(const char *variant, const char *bind_ep, int fd, size_t warmup, size_t iters) {
  s_variant_t v = S_NVARIANTS;
  for (int i = 0; i < S_NVARIANTS; i++)
    if (strcmp(variant, s_variant_names[i]) == 0) v = (s_variant_t)i;
  if (v == S_NVARIANTS) s_die("peer: unknown variant '%s'", variant);
  zsys_handler_set(NULL);
  void *ctx = NULL;
  s_sock_t s = {0};
  char ep[256];
  if (v == S_RSD) {
    s.rsd = s_rsd_socket(ZMQ_ROUTER, bind_ep, true);
    snprintf(ep, sizeof ep, "%s", msg_sock_endpoint(s.rsd));
  } else {
    ctx = zmq_ctx_new();
    if (!ctx) s_die("peer: zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    s.zs = s_bare_socket(ctx, ZMQ_ROUTER, bind_ep, true, ep, sizeof ep);
  }
  s_write_line(fd, "endpoint %s\n", ep);
  uint64_t cpu0 = 0;
  for (size_t i = 0; i < warmup + iters; i++) {
    if (i == warmup) cpu0 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
    s_echo(v, &s);
  }
  s_write_line(fd, "cpu %" PRIu64 "\n", s_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0);
  char line[8];
  s_read_line(fd, line, sizeof line, 600000);
  s_sock_close(&s);
  if (ctx) zmq_ctx_term(ctx);
  return 0;
}

/* Starts the echo peer for variant v bound to bind_ep; fills s_peers[v] with its resolved endpoint. */
static void s_peer_start(s_variant_t v, const char *bind_ep, size_t warmup, size_t iters) {
  s_peer_t *p = &s_peers[v];
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) s_die("socketpair: %s", strerror(errno));
  char fd_s[16], warm_s[24], iters_s[24];
  snprintf(fd_s, sizeof fd_s, "%d", sv[1]);
  snprintf(warm_s, sizeof warm_s, "%zu", warmup);
  snprintf(iters_s, sizeof iters_s, "%zu", iters);
  pid_t parent = getpid();
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) s_die("fork: %s", strerror(errno));
  if (pid == 0) { /* child: async-signal-safe calls only until exec */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent || s_pin(s_cpu_peer) != 0) _exit(1);
    int fl = fcntl(sv[1], F_GETFD);
    if (fl < 0 || fcntl(sv[1], F_SETFD, fl & ~FD_CLOEXEC) != 0) _exit(1);
    execl("/proc/self/exe", "msg_bench", "--peer", s_variant_names[v], "--bind", bind_ep, "--fd", fd_s,
          "--warmup", warm_s, "--iters", iters_s, (char *)NULL);
    _exit(127);
  }
  close(sv[1]);
  p->pid = pid;
  p->fd = sv[0];
  char line[300];
  if (!s_read_line(p->fd, line, sizeof line, S_RECV_TIMEOUT_MS) || strncmp(line, "endpoint ", 9) != 0)
    s_die("%s echo peer (pid %d) did not report its endpoint for '%s'", s_variant_names[v], (int)pid, bind_ep);
  snprintf(p->endpoint, sizeof p->endpoint, "%s", line + 9);
}

/* The peer's CPU time over the measured round trips, in ns. */
static uint64_t s_peer_cpu(s_variant_t v) {
  char line[64];
  if (!s_read_line(s_peers[v].fd, line, sizeof line, S_RECV_TIMEOUT_MS) || strncmp(line, "cpu ", 4) != 0)
    s_die("%s echo peer did not report its CPU time", s_variant_names[v]);
  return strtoull(line + 4, NULL, 10);
}

/* Closes the control channel (the peer then exits), reaps the peer, and kills it if it lingers. */
static void s_peer_stop(s_variant_t v) {
  s_peer_t *p = &s_peers[v];
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  if (p->pid <= 0) return;
  int status = 0;
  for (int i = 0; i < 200; i++) {
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid) {
      p->pid = 0;
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        s_die("%s echo peer ended badly (status 0x%x)", s_variant_names[v], (unsigned)status);
      return;
    }
    if (r < 0 && errno != EINTR) break;
    usleep(10000);
  }
  kill(p->pid, SIGKILL);
  waitpid(p->pid, NULL, 0);
  p->pid = 0;
}

/* ---- building the message ------------------------------------------------------------------------ */
typedef struct {
  uint8_t *images[2]; /* owned */
  float proprio[8];
  msg_t msg; /* borrows images and proprio */
} s_infer_t;

static void s_infer_build(s_infer_t *x, const s_case_t *c) {
  static const char *const names[2] = {"agentview", "eye_in_hand"};
  msg_error_t err = {0};
  size_t isize = (size_t)c->side * c->side * 3;
  uint64_t r = 0x9e3779b97f4a7c15ull; /* xorshift: image bytes that look like data, not zeros */
  msg_init(&x->msg, MSG_INFER, S_WORKER_ID << 32 | 1);
  msg_infer_body_t *b = &x->msg.infer;
  snprintf(b->variant, sizeof b->variant, "spec-r4");
  b->task = 3;
  b->trial = 17;
  b->step = 120;
  snprintf(b->instruction, sizeof b->instruction, "%s", S_INSTRUCTION);
  snprintf(b->model, sizeof b->model, "openvla/openvla-7b-finetuned-libero-spatial");
  snprintf(b->unnorm_key, sizeof b->unnorm_key, "libero_spatial");
  b->mode = MSG_MODE_SPEC;
  b->has_draft_len = true;
  b->draft_len = 4;
  b->has_radii = true;
  b->radii_count = 4;
  for (uint32_t i = 0; i < 4; i++) b->radii[i] = 2 + i / 2;
  for (uint32_t k = 0; k < c->nimages; k++) {
    x->images[k] = malloc(isize);
    if (!x->images[k]) s_die("out of memory");
    for (size_t i = 0; i < isize; i++) {
      r ^= r << 13, r ^= r >> 7, r ^= r << 17;
      x->images[k][i] = (uint8_t)r;
    }
    uint32_t shape[3] = {c->side, c->side, 3};
    if (msg_add_frame(&x->msg, names[k], MSG_DTYPE_U8, 3, shape, x->images[k], isize, &err) != MSG_OK)
      s_die("msg_add_frame(%s): %s", names[k], err.text);
  }
  for (int i = 0; i < 8; i++) x->proprio[i] = 0.1f * (float)i - 0.3f;
  uint32_t pshape[1] = {8};
  if (msg_add_frame(&x->msg, "proprio", MSG_DTYPE_F32, 1, pshape, x->proprio, sizeof x->proprio, &err) != MSG_OK)
    s_die("msg_add_frame(proprio): %s", err.text);
}

static void s_infer_free(s_infer_t *x) {
  for (int k = 0; k < 2; k++) free(x->images[k]);
  memset(x, 0, sizeof *x);
}

static s_wire_t s_wire_new(msg_t *m) {
  msg_error_t err = {0};
  s_wire_t w = {m, {0}, 0};
  for (uint32_t i = 0; i < m->nframes; i++) w.payload_bytes += m->frames[i].size;
  if (msg_encode(m, &w.header, &err) != MSG_OK) s_die("msg_encode: %s", err.text);
  return w;
}

static int s_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of n values (sorts them). */
static double s_median(double *v, size_t n) {
  qsort(v, n, sizeof *v, s_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- codec --------------------------------------------------------------------------------------- */
static void s_bench_codec(const msg_t *m, size_t calls, s_result_t *res) {
  msg_error_t err = {0};
  msg_buf_t buf = {0};
  if (msg_encode(m, &buf, &err) != MSG_OK) s_die("msg_encode: %s", err.text);
  msg_span_t spans[MSG_MAX_FRAMES];
  for (uint32_t i = 0; i < m->nframes; i++) spans[i] = (msg_span_t){m->frames[i].data, m->frames[i].size};
  msg_t out;
  if (msg_decode(buf.data, buf.size, spans, m->nframes, &out, &err) != MSG_OK) s_die("msg_decode: %s", err.text);
  if (out.type != m->type || out.id != m->id || out.nframes != m->nframes ||
      strcmp(out.infer.instruction, m->infer.instruction) != 0 || out.infer.radii_count != m->infer.radii_count)
    s_die("msg_decode(msg_encode(INFER)) does not give the message back");
  res->header_bytes = buf.size;
  res->payload_bytes = 0;
  for (uint32_t i = 0; i < m->nframes; i++) res->payload_bytes += m->frames[i].size;

  /* S_REPS blocks of encodes then decodes; the median block, so that a noisy stretch does not count. */
  size_t n = calls / S_REPS ? calls / S_REPS : 1;
  double ew[S_REPS], ec[S_REPS], dw[S_REPS], dc[S_REPS];
  for (int r = 0; r < S_REPS; r++) {
    uint64_t w0 = s_ns(CLOCK_MONOTONIC), c0 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (size_t i = 0; i < n; i++)
      if (msg_encode(m, &buf, &err) != MSG_OK) s_die("msg_encode: %s", err.text);
    uint64_t w1 = s_ns(CLOCK_MONOTONIC), c1 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
    for (size_t i = 0; i < n; i++)
      if (msg_decode(buf.data, buf.size, spans, m->nframes, &out, &err) != MSG_OK) s_die("msg_decode: %s", err.text);
    uint64_t w2 = s_ns(CLOCK_MONOTONIC), c2 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
    ew[r] = (double)(w1 - w0) / 1e3 / (double)n;
    ec[r] = (double)(c1 - c0) / 1e3 / (double)n;
    dw[r] = (double)(w2 - w1) / 1e3 / (double)n;
    dc[r] = (double)(c2 - c1) / 1e3 / (double)n;
  }
  res->enc_wall_us = s_median(ew, S_REPS);
  res->enc_cpu_us = s_median(ec, S_REPS);
  res->dec_wall_us = s_median(dw, S_REPS);
  res->dec_cpu_us = s_median(dc, S_REPS);
  msg_buf_free(&buf);
}

/* ---- in-process: one thread is client and echo over inproc:// ------------------------------------ */
static void s_bench_inproc(const s_case_t *cs, msg_t *m, void *zctx, size_t calls, s_inproc_t out[S_NVARIANTS]) {
  s_wire_t w = s_wire_new(m);
  s_sock_t peer[S_NVARIANTS], client[S_NVARIANTS];
  memset(peer, 0, sizeof peer);
  memset(client, 0, sizeof client);
  uint64_t id = S_WORKER_ID << 32;
  for (int v = 0; v < S_NVARIANTS; v++) {
    char ep[128], resolved[256];
    snprintf(ep, sizeof ep, "inproc://msg_bench-%s-%s", cs->name, s_variant_names[v]);
    if (v == S_RSD) {
      peer[v].rsd = s_rsd_socket(ZMQ_ROUTER, ep, true);
      client[v].rsd = s_rsd_socket(ZMQ_DEALER, ep, false);
    } else {
      peer[v].zs = s_bare_socket(zctx, ZMQ_ROUTER, ep, true, resolved, sizeof resolved);
      client[v].zs = s_bare_socket(zctx, ZMQ_DEALER, ep, false, resolved, sizeof resolved);
    }
    for (size_t i = 0; i < S_WARMUP; i++) {
      s_send((s_variant_t)v, &client[v], &w, ++id);
      s_echo((s_variant_t)v, &peer[v]);
      s_recv((s_variant_t)v, &client[v], &w);
    }
  }
  /* S_REPS blocks per variant, interleaved and rotated as in the loopback; the median block. */
  size_t n = calls / S_REPS ? calls / S_REPS : 1;
  double cpu[S_NVARIANTS][S_REPS], wall[S_NVARIANTS][S_REPS];
  for (size_t r = 0; r < S_REPS; r++)
    for (size_t k = 0; k < S_NVARIANTS; k++) {
      s_variant_t v = (s_variant_t)((r + k) % S_NVARIANTS);
      uint64_t w0 = s_ns(CLOCK_MONOTONIC), c0 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
      for (size_t i = 0; i < n; i++) {
        s_send(v, &client[v], &w, ++id);
        s_echo(v, &peer[v]);
        s_recv(v, &client[v], &w);
      }
      cpu[v][r] = (double)(s_ns(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e3 / (double)n;
      wall[v][r] = (double)(s_ns(CLOCK_MONOTONIC) - w0) / 1e3 / (double)n;
    }
  for (int v = 0; v < S_NVARIANTS; v++) {
    out[v].cpu_us = s_median(cpu[v], S_REPS);
    out[v].wall_us = s_median(wall[v], S_REPS);
    s_sock_close(&client[v]);
    s_sock_close(&peer[v]);
  }
  msg_buf_free(&w.header);
}

/* ---- loopback: client here, echo peers in child processes ------------------------------------------ */
/* Nearest-rank percentile of sorted samples. */
static double s_pct(const double *sorted, size_t n, double p) {
  size_t rank = (size_t)(p * (double)n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

static s_rt_stats_t s_stats(double *lat_us, size_t n, uint64_t client_cpu_ns, uint64_t peer_cpu_ns) {
  s_rt_stats_t st = {0};
  qsort(lat_us, n, sizeof *lat_us, s_cmp_double);
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += lat_us[i];
  st.mean = sum / (double)n;
  st.min = lat_us[0];
  st.max = lat_us[n - 1];
  st.p50 = s_pct(lat_us, n, 0.50);
  st.p99 = s_pct(lat_us, n, 0.99);
  st.client_cpu_us = (double)client_cpu_ns / 1e3 / (double)n;
  st.peer_cpu_us = (double)peer_cpu_ns / 1e3 / (double)n;
  return st;
}

/* Starts one echo peer per variant, then runs warm-up and `iters` measured round trips per variant over
 * one transport, in interleaved blocks. */
static void s_bench_loopback(const s_case_t *cs, msg_t *m, const char *transport, void *zctx, size_t iters,
                             s_rt_stats_t out[S_NVARIANTS]) {
  s_wire_t w = s_wire_new(m);
  s_sock_t cl[S_NVARIANTS];
  double *lat[S_NVARIANTS];
  size_t n[S_NVARIANTS] = {0};
  uint64_t cpu[S_NVARIANTS] = {0};
  memset(cl, 0, sizeof cl);
  for (int v = 0; v < S_NVARIANTS; v++) {
    char bind_ep[256], resolved[320];
    if (strcmp(transport, "tcp") == 0) {
      snprintf(bind_ep, sizeof bind_ep, "tcp://127.0.0.1:*");
    } else {
      if (s_nipc_paths == sizeof s_ipc_paths / sizeof s_ipc_paths[0]) s_die("too many ipc endpoints");
      char *path = s_ipc_paths[s_nipc_paths++];
      snprintf(path, sizeof s_ipc_paths[0], "%s/%s-%s.sock", s_ipc_dir, cs->name, s_variant_names[v]);
      snprintf(bind_ep, sizeof bind_ep, "ipc://%s", path);
    }
    s_peer_start((s_variant_t)v, bind_ep, S_WARMUP, iters);
    lat[v] = calloc(iters, sizeof *lat[v]);
    if (!lat[v]) s_die("out of memory");
    if (v == S_RSD)
      cl[v].rsd = s_rsd_socket(ZMQ_DEALER, s_peers[v].endpoint, false);
    else
      cl[v].zs = s_bare_socket(zctx, ZMQ_DEALER, s_peers[v].endpoint, false, resolved, sizeof resolved);
  }

  uint64_t id = S_WORKER_ID << 32;
  for (int v = 0; v < S_NVARIANTS; v++)
    for (size_t i = 0; i < S_WARMUP; i++) {
      s_send((s_variant_t)v, &cl[v], &w, ++id);
      s_recv((s_variant_t)v, &cl[v], &w);
    }
  for (size_t b = 0, done = 0; done < iters; b++) {
    size_t todo = iters - done < S_BLOCK ? iters - done : S_BLOCK;
    for (size_t k = 0; k < S_NVARIANTS; k++) { /* rotate the order so that no variant always goes first */
      s_variant_t v = (s_variant_t)((b + k) % S_NVARIANTS);
      uint64_t cpu0 = s_ns(CLOCK_PROCESS_CPUTIME_ID);
      for (size_t i = 0; i < todo; i++) {
        uint64_t t0 = s_ns(CLOCK_MONOTONIC);
        s_send(v, &cl[v], &w, ++id);
        s_recv(v, &cl[v], &w);
        lat[v][n[v]++] = (double)(s_ns(CLOCK_MONOTONIC) - t0) / 1e3;
      }
      cpu[v] += s_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    }
    done += todo;
  }

  for (int v = 0; v < S_NVARIANTS; v++) {
    out[v] = s_stats(lat[v], n[v], cpu[v], s_peer_cpu((s_variant_t)v));
    s_sock_close(&cl[v]);
    free(lat[v]);
    s_peer_stop((s_variant_t)v);
  }
  msg_buf_free(&w.header);
}

/* ---- report --------------------------------------------------------------------------------------- */
static const char *s_met(bool ok) { return ok ? "met" : "NOT met"; }

typedef struct {
  size_t iters, codec_calls, inproc_calls;
  long nproc;
  char cpu[256];
} s_run_t;

static void s_print(const s_result_t *res, const s_run_t *run) {
  printf("msg_bench: INFER through rsd's msg library vs raw libzmq carrying the same bytes\n");
  printf("host: nproc %ld, %s; ", run->nproc, run->cpu);
  if (s_cpu_client >= 0)
    printf("client pinned to CPU %d, echo peers to CPU %d\n", s_cpu_client, s_cpu_peer);
  else
    printf("not pinned\n");
  printf("codec: %zu calls, in-process: %zu round trips, each the median of %d blocks; loopback: %zu round trips\n"
         "per row in blocks of %d interleaved across the variants; %d warm-up round trips each\n\n",
         run->codec_calls, run->inproc_calls, S_REPS, run->iters, S_BLOCK, S_WARMUP);

  printf("Codec, per call             header   payload   encode wall/cpu   decode wall/cpu   enc+dec cpu\n");
  for (size_t k = 0; k < S_NCASES; k++) {
    const s_result_t *r = &res[k];
    printf("%-26s %5zu B %7zu B   %5.2f / %5.2f us   %5.2f / %5.2f us   %6.2f us\n", s_cases[k].label,
           r->header_bytes, r->payload_bytes, r->enc_wall_us, r->enc_cpu_us, r->dec_wall_us, r->dec_cpu_us,
           s_codec_cpu_us(r));
  }

  printf("\nIn-process round trip       variant   CPU/rt     wall/rt   (inproc://, one thread: send, echo, receive;\n"
         "                                                          glibc heap trimming off)\n");
  for (size_t k = 0; k < S_NCASES; k++)
    for (int v = 0; v < S_NVARIANTS; v++)
      printf("%-26s  %-8s %6.2f us  %6.2f us\n", v == 0 ? s_cases[k].label : "", s_variant_names[v],
             res[k].inproc[v].cpu_us, res[k].inproc[v].wall_us);

  printf("\nLoopback round trip, us     transport  variant    p50      p99     mean   CPU/rt client + peer\n");
  for (size_t k = 0; k < S_NCASES; k++)
    for (int t = 0; t < S_NTRANSPORTS; t++)
      for (int v = 0; v < S_NVARIANTS; v++) {
        const s_rt_stats_t *s = &res[k].rt[t][v];
        printf("%-26s  %-9s  %-8s %7.1f  %7.1f  %7.1f   %6.1f + %6.1f\n", v == 0 ? s_cases[k].label : "",
               v == 0 ? s_transports[t] : "", s_variant_names[v], s->p50, s->p99, s->mean, s->client_cpu_us,
               s->peer_cpu_us);
      }

  printf("\nrsd vs bare, loopback       transport  p50 added         mean added   CPU added/msg   p50 target <%.0f%%\n",
         S_TARGET_PCT);
  for (size_t k = 0; k < S_NCASES; k++)
    for (int t = 0; t < S_NTRANSPORTS; t++) {
      const s_rt_stats_t *rt = res[k].rt[t];
      double d50 = rt[S_RSD].p50 - rt[S_BARE].p50, pct = 100 * d50 / rt[S_BARE].p50;
      printf("%-26s  %-9s  %+6.1f us %+6.1f%%   %+6.1f us    %+6.1f us       %s\n", t == 0 ? s_cases[k].label : "",
             s_transports[t], d50, pct, rt[S_RSD].mean - rt[S_BARE].mean, s_loopback_cpu_us(rt),
             s_met(pct < S_TARGET_PCT));
    }

  printf("\nCPU per message of rsd's framing   codec (enc+dec)   codec + msg_sock wrapper   target <%.0f us\n",
         S_TARGET_CPU_US);
  for (size_t k = 0; k < S_NCASES; k++) {
    double f = s_framing_cpu_us(&res[k]);
    printf("%-34s %8.2f us         %8.2f us                %s\n", s_cases[k].label, s_codec_cpu_us(&res[k]), f,
           s_met(f < S_TARGET_CPU_US && s_codec_cpu_us(&res[k]) < S_TARGET_CPU_US));
  }
  printf("\nbare: zmq_send + zmq_msg_recv on both sides (copies as msg_sock_send does); bare-zc: the echo sends\n"
         "the received frames without copying. CPU/rt: process CPU per round trip, ZeroMQ I/O threads included.\n"
         "CPU added/msg (loopback) = ((rsd - bare) CPU/rt, client + peer) / 2; codec + wrapper = (rsd - bare)\n"
         "in-process CPU/rt / 2.\n");
}

static void s_json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

static void s_write_json(const char *path, const s_result_t *res, const s_run_t *run) {
  FILE *f = fopen(path, "w");
  if (!f) s_die("cannot write '%s': %s", path, strerror(errno));
  fprintf(f, "{\n  \"program\": \"msg_bench\",\n");
  fprintf(f, "  \"iters\": %zu, \"warmup\": %d, \"codec_calls\": %zu, \"inproc_calls\": %zu,\n", run->iters, S_WARMUP,
          run->codec_calls, run->inproc_calls);
  fprintf(f, "  \"host\": {\"nproc\": %ld, \"cpu_model\": ", run->nproc);
  s_json_str(f, run->cpu);
  fprintf(f, ", \"client_cpu\": %d, \"peer_cpu\": %d},\n", s_cpu_client, s_cpu_peer);
  fprintf(f, "  \"targets\": {\"overhead_p50_pct_max\": %.1f, \"framing_cpu_us_per_msg_max\": %.1f},\n", S_TARGET_PCT,
          S_TARGET_CPU_US);
  fprintf(f, "  \"cases\": [\n");
  for (size_t k = 0; k < S_NCASES; k++) {
    const s_result_t *r = &res[k];
    const s_case_t *c = &s_cases[k];
    double fc = s_framing_cpu_us(r);
    fprintf(f, "    {\n      \"name\": \"%s\", \"images\": %u, \"image_shape\": [%u, %u, 3],\n", c->name,
            c->nimages, c->side, c->side);
    fprintf(f, "      \"header_bytes\": %zu, \"payload_bytes\": %zu,\n", r->header_bytes, r->payload_bytes);
    fprintf(f, "      \"encode\": {\"wall_us\": %.4f, \"cpu_us\": %.4f},\n", r->enc_wall_us, r->enc_cpu_us);
    fprintf(f, "      \"decode\": {\"wall_us\": %.4f, \"cpu_us\": %.4f},\n", r->dec_wall_us, r->dec_cpu_us);
    fprintf(f, "      \"inproc\": {");
    for (int v = 0; v < S_NVARIANTS; v++)
      fprintf(f, "\"%s\": {\"cpu_us\": %.3f, \"wall_us\": %.3f}, ", s_variant_names[v], r->inproc[v].cpu_us,
              r->inproc[v].wall_us);
    fprintf(f, "\"framing_cpu_us_per_msg\": %.3f},\n", fc);
    fprintf(f, "      \"codec_cpu_us_per_msg\": %.4f, \"framing_cpu_us_per_msg\": %.3f, \"framing_cpu_target_met\": %s,\n",
            s_codec_cpu_us(r), fc, fc < S_TARGET_CPU_US && s_codec_cpu_us(r) < S_TARGET_CPU_US ? "true" : "false");
    fprintf(f, "      \"loopback\": {\n");
    for (int t = 0; t < S_NTRANSPORTS; t++) {
      const s_rt_stats_t *rt = r->rt[t];
      fprintf(f, "        \"%s\": {\n", s_transports[t]);
      for (int v = 0; v < S_NVARIANTS; v++) {
        const s_rt_stats_t *s = &rt[v];
        fprintf(f,
                "          \"%s\": {\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"min_us\": %.3f, "
                "\"max_us\": %.3f, \"client_cpu_us\": %.3f, \"peer_cpu_us\": %.3f},\n",
                s_variant_names[v], s->p50, s->p99, s->mean, s->min, s->max, s->client_cpu_us, s->peer_cpu_us);
      }
      double d50 = rt[S_RSD].p50 - rt[S_BARE].p50, pct = 100 * d50 / rt[S_BARE].p50;
      fprintf(f,
              "          \"overhead_p50_us\": %.3f, \"overhead_p50_pct\": %.3f, \"overhead_mean_us\": %.3f, "
              "\"cpu_added_us_per_msg\": %.3f, \"overhead_target_met\": %s\n",
              d50, pct, rt[S_RSD].mean - rt[S_BARE].mean, s_loopback_cpu_us(rt), pct < S_TARGET_PCT ? "true" : "false");
      fprintf(f, "        }%s\n", t + 1 < S_NTRANSPORTS ? "," : "");
    }
    fprintf(f, "      }\n    }%s\n", k + 1 < S_NCASES ? "," : "");
  }
  fprintf(f, "  ]\n}\n");
  if (fclose(f) != 0) s_die("cannot write '%s': %s", path, strerror(errno));
}

/* ---- main ----------------------------------------------------------------------------------------- */
static size_t s_count_arg(const char *flag, const char *s) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s ? s : "", &end, 10);
  if (!s || errno || *end || v < 1 || v > 100000000ull)
    s_die("%s wants a count in 1..100000000, got '%s'", flag, s ? s : "");
  return (size_t)v;
}

static void s_usage(FILE *f) {
  fprintf(f, "usage: msg_bench [--iters N] [--json PATH] [--no-pin]\n"
             "  --iters N    measured loopback round trips per variant and transport (default 5000)\n"
             "  --json PATH  also write the numbers as JSON to PATH\n"
             "  --no-pin     leave the client and the echo peers where the scheduler puts them\n"
             "               (default: client on the first CPU of the affinity mask, peers on the second)\n");
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--peer") == 0) { /* the echo peer, started by s_peer_start */
    if (argc != 11 || strcmp(argv[3], "--bind") || strcmp(argv[5], "--fd") || strcmp(argv[7], "--warmup") ||
        strcmp(argv[9], "--iters"))
      s_die("--peer is internal: VARIANT --bind EP --fd N --warmup N --iters N");
    return s_peer_main(argv[2], argv[4], (int)s_count_arg("--fd", argv[6]), s_count_arg("--warmup", argv[8]),
                       s_count_arg("--iters", argv[10]));
  }
  s_run_t run = {.iters = 5000};
  const char *json = NULL;
  bool pin = true;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
      run.iters = s_count_arg("--iters", argv[++i]);
    } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json = argv[++i];
    } else if (strcmp(argv[i], "--no-pin") == 0) {
      pin = false;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      s_usage(stdout);
      return 0;
    } else {
      s_usage(stderr);
      return 2;
    }
  }
  run.codec_calls = run.iters * 10;
  run.inproc_calls = run.iters * 2;
  run.nproc = sysconf(_SC_NPROCESSORS_ONLN);
  bench_cpu_model(run.cpu, sizeof run.cpu);

  atexit(s_cleanup);
  signal(SIGINT, s_on_signal);
  signal(SIGTERM, s_on_signal);
  zsys_handler_set(NULL); /* keep czmq from replacing the handlers above */
  if (pin) s_pin_choose();
  if (s_pin(s_cpu_client) != 0) s_die("sched_setaffinity(CPU %d): %s", s_cpu_client, strerror(errno));

  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp || strlen(tmp) > 60) tmp = "/tmp"; /* ipc paths must fit sockaddr_un */
  snprintf(s_ipc_dir, sizeof s_ipc_dir, "%s/msg_bench.XXXXXX", tmp);
  if (!mkdtemp(s_ipc_dir)) {
    s_ipc_dir[0] = '\0';
    s_die("mkdtemp under %s: %s", tmp, strerror(errno));
  }

  s_result_t res[S_NCASES];
  s_infer_t x[S_NCASES];
  memset(res, 0, sizeof res);
  memset(x, 0, sizeof x);
  for (size_t k = 0; k < S_NCASES; k++) { /* codec first: no ZeroMQ threads exist yet to share the CPU clock */
    s_infer_build(&x[k], &s_cases[k]);
    s_bench_codec(&x[k].msg, run.codec_calls, &res[k]);
  }
  void *zctx = zmq_ctx_new(); /* the bare variants' context; rsd's sockets use czmq's */
  if (!zctx) s_die("zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
  for (size_t k = 0; k < S_NCASES; k++)
    for (int t = 0; t < S_NTRANSPORTS; t++)
      s_bench_loopback(&s_cases[k], &x[k].msg, s_transports[t], zctx, run.iters, res[k].rt[t]);
  /* In-process last, with glibc's heap trimming off: otherwise each 196 KB copy made by zmq_send can
   * land on freshly grown heap and page-fault (some 350 us per round trip, for rsd and bare alike), which
   * buries the few microseconds this row is meant to show. The loopback rows above run with defaults. */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  for (size_t k = 0; k < S_NCASES; k++) {
    s_bench_inproc(&s_cases[k], &x[k].msg, zctx, run.inproc_calls, res[k].inproc);
    s_infer_free(&x[k]);
  }
  zmq_ctx_term(zctx);

  s_print(res, &run);
  if (json) s_write_json(json, res, &run);
  return 0;
}
