/* msg_sock.c: the transport. czmq sockets with every option rsd relies on set in one place, and
 * send / receive / forward of whole messages (routing frame + header frame + payload frames).
 *
 * Sends never block: a full queue or an unreachable ROUTER peer is reported as MSG_ERR_TRANSPORT, so
 * one stalled peer cannot stall the coordinator or the broker. Receives are blocking; callers poll
 * msg_sock_zsock() first. Encoding and validation live in msg.c. */
#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "msg.h"

/* Set once msg_keys_auth_start ran: a CURVE server socket binds only then, since libzmq lets any client
 * that knows the server's public key in when no ZAP handler answers (ZAP_ENFORCE_DOMAIN is a draft option). */
static volatile bool s_auth_started;

struct msg_sock {
  zsock_t *sock;       /* owned */
  int type;            /* ZMQ_ROUTER, ZMQ_DEALER, ... */
  char *endpoint;      /* owned: resolved endpoint */
  msg_buf_t buf;       /* owned: reused encode buffer */
  msg_sock_stats_t stats;
};

static msg_err_t s_fail(msg_error_t *err, msg_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static msg_err_t s_fail(msg_error_t *err, msg_err_t code, const char *fmt, ...) {
  if (err) {
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
  }
  return code;
}

msg_sock_opts_t msg_sock_opts_default(void) {
  msg_sock_opts_t o = {
      .hwm = 10000,
      .linger_ms = 0,
      .heartbeat_ivl_ms = 1000,
      .heartbeat_timeout_ms = 3000,
      .max_msg_bytes = MSG_MAX_FRAME_BYTES,
  };
  return o;
}

msg_sock_t *msg_sock_new(int zmq_type, const char *endpoint, bool bind, const msg_sock_opts_t *opts,
                         const char *identity, msg_error_t *err) {
  msg_sock_opts_t o = opts ? *opts : msg_sock_opts_default();
  msg_sock_t *self = calloc(1, sizeof *self);
  if (!self) {
    s_fail(err, MSG_ERR_INTERNAL, "out of memory");
    return NULL;
  }
  self->type = zmq_type;
  self->sock = zsock_new(zmq_type);
  if (!self->sock) {
    s_fail(err, MSG_ERR_TRANSPORT, "cannot create a ZeroMQ socket of type %d: %s", zmq_type, zmq_strerror(errno));
    msg_sock_destroy(&self);
    return NULL;
  }
  zsock_set_sndhwm(self->sock, o.hwm);
  zsock_set_rcvhwm(self->sock, o.hwm);
  zsock_set_linger(self->sock, o.linger_ms);
  zsock_set_maxmsgsize(self->sock, (int)o.max_msg_bytes);
  if (o.heartbeat_ivl_ms > 0) {
    zsock_set_heartbeat_ivl(self->sock, o.heartbeat_ivl_ms);
    zsock_set_heartbeat_timeout(self->sock, o.heartbeat_timeout_ms);
    zsock_set_heartbeat_ttl(self->sock, o.heartbeat_timeout_ms);
  }
  if (zmq_type == ZMQ_ROUTER) zsock_set_router_mandatory(self->sock, 1);
  if (o.curve_cert) {
    if (!zsys_has_curve() || (bind && !s_auth_started)) {
      s_fail(err, MSG_ERR_INTERNAL, "CURVE socket for '%s': %s", endpoint,
             !zsys_has_curve() ? "this libzmq has no CURVE support"
                               : "no CURVE authenticator runs in this process (msg_keys_auth_start first)");
      msg_sock_destroy(&self);
      return NULL;
    }
    zcert_apply((zcert_t *)o.curve_cert, self->sock);
    if (bind) {
      zsock_set_curve_server(self->sock, 1);
      zsock_set_zap_domain(self->sock, MSG_ZAP_DOMAIN);
    } else if (!o.curve_server_key || strlen(o.curve_server_key) != 40) {
      s_fail(err, MSG_ERR_INTERNAL, "CURVE client socket for '%s' without the server's public key", endpoint);
      msg_sock_destroy(&self);
      return NULL;
    } else {
      zsock_set_curve_serverkey(self->sock, o.curve_server_key);
    }
  }
  if (identity) zsock_set_identity(self->sock, identity);
  int rc = bind ? zsock_bind(self->sock, "%s", endpoint) : zsock_connect(self->sock, "%s", endpoint);
  if (rc == -1) {
    s_fail(err, MSG_ERR_TRANSPORT, "cannot %s '%s': %s", bind ? "bind" : "connect to", endpoint,
           zmq_strerror(zmq_errno()));
    msg_sock_destroy(&self);
    return NULL;
  }
  self->endpoint = bind ? zsock_last_endpoint(self->sock) : strdup(endpoint);
  if (!self->endpoint) {
    s_fail(err, MSG_ERR_INTERNAL, "cannot read the endpoint of '%s'", endpoint);
    msg_sock_destroy(&self);
    return NULL;
  }
  return self;
}

void msg_sock_destroy(msg_sock_t **self_p) {
  if (!self_p || !*self_p) return;
  msg_sock_t *self = *self_p;
  zsock_destroy(&self->sock);
  free(self->endpoint);
  msg_buf_free(&self->buf);
  free(self);
  *self_p = NULL;
}

zsock_t *msg_sock_zsock(msg_sock_t *self) { return self->sock; }
const char *msg_sock_endpoint(msg_sock_t *self) { return self->endpoint; }
msg_sock_stats_t msg_sock_stats(const msg_sock_t *self) { return self->stats; }

/* Sends the first frame of a message without blocking; names the reason when the peer cannot take it. */
static msg_err_t s_send_first(msg_sock_t *self, const void *data, size_t size, bool more, msg_error_t *err) {
  void *h = zsock_resolve(self->sock);
  if (zmq_send(h, data, size, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) >= 0) return MSG_OK;
  int e = zmq_errno();
  if (e == EHOSTUNREACH)
    return s_fail(err, MSG_ERR_TRANSPORT, "peer is not connected to %s (unreachable routing id)", self->endpoint);
  if (e == EAGAIN)
    return s_fail(err, MSG_ERR_TRANSPORT, "send queue to the peer on %s is full (%s)", self->endpoint,
                  zmq_strerror(e));
  return s_fail(err, MSG_ERR_TRANSPORT, "send on %s failed: %s", self->endpoint, zmq_strerror(e));
}

/* Later frames of a multipart whose first frame was accepted are always accepted (ZeroMQ's
 * atomic-multipart rule), so they need no error path beyond the call's own. */
static msg_err_t s_send_more(msg_sock_t *self, const void *data, size_t size, bool more, msg_error_t *err) {
  if (zmq_send(zsock_resolve(self->sock), data, size, more ? ZMQ_SNDMORE : 0) >= 0) return MSG_OK;
  return s_fail(err, MSG_ERR_TRANSPORT, "send on %s failed mid-message: %s", self->endpoint,
                zmq_strerror(zmq_errno()));
}

msg_err_t msg_sock_send(msg_sock_t *self, const zframe_t *route, const msg_t *m, msg_error_t *err) {
  if (self->type == ZMQ_ROUTER && !route)
    return s_fail(err, MSG_ERR_INTERNAL, "send on ROUTER %s needs a routing id", self->endpoint);
  msg_err_t rc = msg_encode(m, &self->buf, err);
  if (rc) return rc;
  bool more = m->nframes > 0;
  if (route) {
    rc = s_send_first(self, zframe_data((zframe_t *)route), zframe_size((zframe_t *)route), true, err);
    if (!rc) rc = s_send_more(self, self->buf.data, self->buf.size, more, err);
  } else {
    rc = s_send_first(self, self->buf.data, self->buf.size, more, err);
  }
  for (uint32_t i = 0; !rc && i < m->nframes; i++)
    rc = s_send_more(self, m->frames[i].data, m->frames[i].size, i + 1 < m->nframes, err);
  if (!rc) self->stats.sent++;
  return rc;
}

/* A msg_in_t with its frames: the header and payload frames as ZeroMQ received them. */
typedef struct {
  msg_in_t in; /* first, so a msg_in_t pointer is an s_in_t pointer */
  size_t nparts;
  zmq_msg_t parts[MSG_MAX_FRAMES + 1];
} s_in_t;

void msg_in_destroy(msg_in_t **self_p) {
  if (!self_p || !*self_p) return;
  s_in_t *x = (s_in_t *)*self_p;
  zframe_destroy(&x->in.route);
  for (size_t i = 0; i < x->nparts; i++) zmq_msg_close(&x->parts[i]);
  free(x);
  *self_p = NULL;
}

msg_err_t msg_sock_recv(msg_sock_t *self, msg_in_t **in_p, msg_error_t *err) {
  *in_p = NULL;
  void *h = zsock_resolve(self->sock);
  s_in_t *x = malloc(sizeof *x);
  if (!x) return s_fail(err, MSG_ERR_INTERNAL, "out of memory");
  x->in.route = NULL;
  x->in.msg.type = MSG_TYPE_COUNT_;
  x->in.msg.id = 0;
  x->nparts = 0;
  size_t dropped = 0;
  bool more = true;
  for (bool first = true; more; first = false) {
    bool keep = !(first && self->type == ZMQ_ROUTER) && x->nparts < MSG_MAX_FRAMES + 1;
    zmq_msg_t scratch, *part = keep ? &x->parts[x->nparts] : &scratch;
    zmq_msg_init(part);
    if (zmq_msg_recv(part, h, 0) < 0) {
      int e = zmq_errno();
      zmq_msg_close(part);
      msg_in_destroy((msg_in_t **)&x);
      return s_fail(err, MSG_ERR_TRANSPORT, "receive on %s failed: %s", self->endpoint, zmq_strerror(e));
    }
    more = zmq_msg_more(part);
    if (keep) {
      x->nparts++;
      continue;
    }
    if (first && self->type == ZMQ_ROUTER)
      x->in.route = zframe_new(zmq_msg_data(part), zmq_msg_size(part));
    else
      dropped++;
    zmq_msg_close(part);
  }
  *in_p = &x->in;
  self->stats.received++;
  msg_err_t rc = MSG_OK;
  if (x->nparts == 0)
    rc = s_fail(err, MSG_ERR_TRUNCATED, "message on %s has no header frame", self->endpoint);
  else if (dropped)
    rc = s_fail(err, MSG_ERR_TOO_LARGE, "message on %s has %zu payload frames, limit %d", self->endpoint,
                x->nparts - 1 + dropped, MSG_MAX_FRAMES);
  if (!rc) {
    msg_span_t spans[MSG_MAX_FRAMES];
    for (size_t i = 1; i < x->nparts; i++)
      spans[i - 1] = (msg_span_t){zmq_msg_data(&x->parts[i]), zmq_msg_size(&x->parts[i])};
    rc = msg_decode(zmq_msg_data(&x->parts[0]), zmq_msg_size(&x->parts[0]), spans, x->nparts - 1, &x->in.msg, err);
  }
  if (rc) self->stats.rejected++;
  return rc;
}

void msg_route_key(const zframe_t *route, char out[MSG_ROUTE_KEY_MAX + 1]) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *d = zframe_data((zframe_t *)route);
  size_t n = zframe_size((zframe_t *)route), k = 0;
  for (size_t i = 0; i < n && k + 2 <= MSG_ROUTE_KEY_MAX; i++) {
    out[k++] = hex[d[i] >> 4];
    out[k++] = hex[d[i] & 15];
  }
  out[k] = '\0';
}

msg_err_t msg_sock_forward(msg_sock_t *self, const zframe_t *route, msg_in_t **in_p, msg_error_t *err) {
  s_in_t *x = (s_in_t *)*in_p;
  *in_p = NULL;
  msg_err_t rc = MSG_OK;
  if (self->type == ZMQ_ROUTER && !route)
    rc = s_fail(err, MSG_ERR_INTERNAL, "forward on ROUTER %s needs a routing id", self->endpoint);
  else if (route)
    rc = s_send_first(self, zframe_data((zframe_t *)route), zframe_size((zframe_t *)route), true, err);
  void *h = zsock_resolve(self->sock);
  for (size_t i = 0; !rc && i < x->nparts; i++) {
    bool first = i == 0 && !route, more = i + 1 < x->nparts;
    /* zmq_msg_send hands the received buffer over: no copy of the payload */
    if (zmq_msg_send(&x->parts[i], h, (more ? ZMQ_SNDMORE : 0) | (first ? ZMQ_DONTWAIT : 0)) < 0)
      rc = s_fail(err, MSG_ERR_TRANSPORT, "forward on %s failed: %s", self->endpoint, zmq_strerror(zmq_errno()));
  }
  if (!rc) self->stats.sent++;
  msg_in_t *in = &x->in;
  msg_in_destroy(&in);
  return rc;
}

msg_err_t msg_sock_send_error(msg_sock_t *self, const zframe_t *route, const msg_t *about,
                              const msg_error_t *what, msg_error_t *err) {
  if (about && about->type == MSG_ERROR) return MSG_OK; /* never answer an ERROR with an ERROR */
  msg_t m;
  msg_init(&m, MSG_ERROR, about ? about->id : 0);
  m.error.code = what->code ? (uint32_t)what->code : (uint32_t)MSG_ERR_INTERNAL;
  snprintf(m.error.text, sizeof m.error.text, "%s", what->text[0] ? what->text : msg_strerror(what->code));
  const char *tname = about ? msg_type_name(about->type) : NULL;
  if (tname) {
    m.error.has_about = true;
    snprintf(m.error.about, sizeof m.error.about, "%s", tname);
  }
  return msg_sock_send(self, route, &m, err);
}

/* ---- CURVE keys ------------------------------------------------------------------------------- */
/* Saves cert as <base> (public) and <base>_secret (mode 0600). */
static msg_err_t s_save(zcert_t *cert, const char *dir, const char *name, msg_error_t *err) {
  char base[1024], secret[1040];
  snprintf(base, sizeof base, "%s/%s", dir, name);
  snprintf(secret, sizeof secret, "%s_secret", base);
  if (zcert_save(cert, base) != 0 || chmod(secret, 0600) != 0)
    return s_fail(err, MSG_ERR_INTERNAL, "cannot write the certificate %s: %s", base, strerror(errno));
  return MSG_OK;
}

msg_err_t msg_keys_make(const char *dir, msg_error_t *err) {
  if (!zsys_has_curve()) return s_fail(err, MSG_ERR_INTERNAL, "this libzmq has no CURVE support: no keys made");
  char path[1024];
  snprintf(path, sizeof path, "%s/server.cert_secret", dir);
  if (zsys_file_exists(path)) return s_fail(err, MSG_ERR_INTERNAL, "%s already holds keys (%s): not overwritten", dir, path);
  snprintf(path, sizeof path, "%s/clients", dir);
  if (zsys_dir_create("%s", path) != 0)
    return s_fail(err, MSG_ERR_INTERNAL, "cannot create %s: %s", path, strerror(errno));
  zcert_t *server = zcert_new(), *client = zcert_new();
  msg_err_t rc = !server || !client ? s_fail(err, MSG_ERR_INTERNAL, "cannot make a CURVE key pair") : MSG_OK;
  if (!rc) zcert_set_meta(server, "role", "rsd server");
  if (!rc) zcert_set_meta(client, "role", "rsd client");
  if (!rc) rc = s_save(server, dir, "server.cert", err);
  if (!rc) rc = s_save(client, dir, "client.cert", err);
  if (!rc) {
    snprintf(path, sizeof path, "%s/clients/client.cert", dir);
    if (zcert_save_public(client, path) != 0)
      rc = s_fail(err, MSG_ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
  }
  zcert_destroy(&server);
  zcert_destroy(&client);
  return rc;
}

/* Loads dir/name; a `secret` one must hold a secret key (zcert_load reads a public file too, with a secret
 * key of zeros, which would fail every handshake without a word). */
static msg_err_t s_load(const char *dir, const char *name, bool secret, zcert_t **cert, msg_error_t *err) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (!zsys_file_exists(path)) return s_fail(err, MSG_ERR_INTERNAL, "CURVE keys: %s is missing (made by `rsd keys DIR`)", path);
  *cert = zcert_load(path);
  if (!*cert) return s_fail(err, MSG_ERR_INTERNAL, "CURVE keys: %s is not a certificate", path);
  if (secret && strspn(zcert_secret_txt(*cert), "0") == 40) {
    zcert_destroy(cert);
    return s_fail(err, MSG_ERR_INTERNAL, "CURVE keys: %s holds no secret key (a public certificate copied there?)", path);
  }
  return MSG_OK;
}

msg_err_t msg_keys_server(const char *dir, zcert_t **cert, msg_error_t *err) {
  *cert = NULL;
  return s_load(dir, "server.cert_secret", true, cert, err);
}

msg_err_t msg_keys_client(const char *dir, zcert_t **cert, char server_key[41], msg_error_t *err) {
  *cert = NULL;
  zcert_t *server = NULL;
  msg_err_t rc = s_load(dir, "server.cert", false, &server, err);
  if (!rc) {
    snprintf(server_key, 41, "%s", zcert_public_txt(server));
    rc = s_load(dir, "client.cert_secret", true, cert, err);
  }
  zcert_destroy(&server);
  return rc;
}

msg_err_t msg_keys_auth_start(const char *dir, zactor_t **auth, msg_error_t *err) {
  char path[1024];
  snprintf(path, sizeof path, "%s/clients", dir);
  *auth = NULL;
  if (!zsys_file_exists(path)) return s_fail(err, MSG_ERR_INTERNAL, "CURVE keys: %s is missing (made by `rsd keys DIR`)", path);
  *auth = zactor_new(zauth, NULL);
  if (!*auth) return s_fail(err, MSG_ERR_INTERNAL, "cannot start the CURVE authenticator");
  if (zstr_sendx(*auth, "CURVE", path, NULL) != 0 || zsock_wait(*auth) != 0) {
    zactor_destroy(auth);
    return s_fail(err, MSG_ERR_INTERNAL, "the CURVE authenticator refused %s", path);
  }
  s_auth_started = true;
  return MSG_OK;
}
