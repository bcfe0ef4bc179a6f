/* msg.h: rsd's wire protocol. The one public header of the msg library, used by the coordinator, the
 * sim workers and the GPU workers.
 *
 * A message on the wire is a ZeroMQ multipart: [routing frames] + one header frame (a msgpack map) +
 * zero or more payload frames (raw bytes that the header describes by dtype and shape). The messages
 * and their fields are defined once, in msg_fields.h; this header turns that table into C types.
 * docs/protocol.md is the normative description for other implementations.
 *
 * Two layers:
 *   codec      msg_encode / msg_decode: header bytes <-> msg_t, with hostile-input validation.
 *              Pure functions, no sockets (the fuzz target drives msg_decode directly).
 *   transport  msg_sock_*: czmq sockets with rsd's options set in one place; whole-message send/recv.
 *
 * Errors: every failing call returns a msg_err_t and fills a msg_error_t whose text names the message
 * type, the field and the offending value. */
#ifndef RSD_MSG_H
#define RSD_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg_fields.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits on untrusted input (docs/protocol.md, "Limits") ------------------------------------ */
#define MSG_MAX_HEADER_BYTES 65536u       /* header frame */
#define MSG_MAX_FRAME_BYTES (64u << 20)   /* any frame; also ZMQ_MAXMSGSIZE on every socket */
#define MSG_MAX_FRAMES 8                  /* payload frames per message */
#define MSG_MAX_RANK 4                    /* dimensions per payload */
#define MSG_MAX_DIM (64u << 20)           /* size of one dimension (the frame limit bounds the product) */
#define MSG_MAX_DEPTH 4                   /* msgpack nesting: map > frames array > map > shape array */
#define MSG_MAX_MAP_ENTRIES 64            /* keys in any map */
#define MSG_MAX_ARRAY_ITEMS 256           /* items in any array */
#define MSG_MAX_STR_BYTES 4096u           /* any string, key or value */
#define MSG_FRAME_NAME_MAX 32             /* payload frame name */

/* ---- error codes: stable numbers, sent in ERROR.code ---------------------------------------- */
#define MSG_ERRORS(E)                                                              \
  E(TRUNCATED, 1, "truncated header")                                              \
  E(TRAILING, 2, "trailing bytes after the header map")                            \
  E(TOO_LARGE, 3, "size limit exceeded")                                           \
  E(TOO_DEEP, 4, "msgpack nesting too deep")                                       \
  E(MALFORMED, 5, "malformed or unsupported msgpack")                              \
  E(WRONG_TYPE, 6, "field has the wrong msgpack type")                             \
  E(RANGE, 7, "value out of range")                                                \
  E(MISSING, 8, "required field missing")                                          \
  E(DUPLICATE, 9, "duplicate key")                                                 \
  E(UNKNOWN_TYPE, 10, "unknown message type")                                      \
  E(VERSION, 11, "unsupported major protocol version")                             \
  E(PAYLOAD, 12, "payload frames do not match the header")                         \
  E(TRANSPORT, 20, "transport failure")                                            \
  E(UNEXPECTED, 21, "message not expected here")                                   \
  E(UNKNOWN_LEASE, 22, "unknown or expired lease")                                 \
  E(OVERLOADED, 23, "no capacity")                                                 \
  E(SHUTDOWN, 24, "peer is shutting down")                                         \
  E(TIMEOUT, 25, "deadline passed")                                                \
  E(MODEL, 30, "model failure")                                                    \
  E(BAD_REQUEST, 31, "request does not fit the model")                             \
  E(SIM, 40, "simulation failure")                                                 \
  E(INTERNAL, 99, "internal error")

typedef enum {
  MSG_OK = 0,
#define MSG_E_(name, num, text) MSG_ERR_##name = num,
  MSG_ERRORS(MSG_E_)
#undef MSG_E_
} msg_err_t;

/* Static text for an error code ("unknown error code" for others). */
const char *msg_strerror(msg_err_t code);

/* The outcome of a failing call: a code and a message naming the thing and the value. */
typedef struct {
  msg_err_t code;
  char text[320];
} msg_error_t;

/* ---- enumerations sent as strings ----------------------------------------------------------- */
#define MSG_ENUM_(prefix, type, LIST)                              \
  typedef enum { LIST(MSG_ENUM_ITEM_##prefix) prefix##_COUNT_ } type##_t; \
  extern const char *const type##_names[];
#define MSG_ENUM_ITEM_MSG_ROLE(c, s) MSG_ROLE_##c,
#define MSG_ENUM_ITEM_MSG_POLICY(c, s) MSG_POLICY_##c,
#define MSG_ENUM_ITEM_MSG_MODE(c, s) MSG_MODE_##c,
#define MSG_ENUM_ITEM_MSG_OUTCOME(c, s) MSG_OUTCOME_##c,
#define MSG_ENUM_ITEM_MSG_ACK_STATUS(c, s) MSG_ACK_##c,
#define MSG_ENUM_ITEM_MSG_DTYPE(c, s) MSG_DTYPE_##c,
MSG_ENUM_(MSG_ROLE, msg_role, MSG_ROLES)
MSG_ENUM_(MSG_POLICY, msg_policy, MSG_POLICIES)
MSG_ENUM_(MSG_MODE, msg_mode, MSG_MODES)
MSG_ENUM_(MSG_OUTCOME, msg_outcome, MSG_OUTCOMES)
MSG_ENUM_(MSG_ACK_STATUS, msg_ack_status, MSG_ACK_STATUSES)
MSG_ENUM_(MSG_DTYPE, msg_dtype, MSG_DTYPES)

/* Bytes per element of a payload dtype. */
size_t msg_dtype_size(msg_dtype_t dtype);

/* ---- message types and their bodies, generated from msg_fields.h ---------------------------- */
typedef enum {
#define MSG_T_(C, c, wire, pmin, pmax) MSG_##C,
  MSG_TYPES(MSG_T_)
#undef MSG_T_
  MSG_TYPE_COUNT_
} msg_type_t;

/* Wire name of a message type ("INFER"), or NULL for an invalid value. */
const char *msg_type_name(msg_type_t type);

#define MSG_DECL_U32(n, lo, hi, en) uint32_t n;
#define MSG_DECL_U64(n, lo, hi, en) uint64_t n;
#define MSG_DECL_F64(n, lo, hi, en) double n;
#define MSG_DECL_BOOL(n, lo, hi, en) bool n;
#define MSG_DECL_STR(n, lo, hi, en) char n[(hi) + 1];
#define MSG_DECL_ENUM(n, lo, hi, en) en##_t n;
#define MSG_DECL_U32S(n, lo, hi, en) uint32_t n[hi]; uint32_t n##_count;
#define MSG_DECL_U64S(n, lo, hi, en) uint64_t n[hi]; uint32_t n##_count;
#define MSG_HAS_REQ(n)
#define MSG_HAS_OPT(n) bool has_##n;
#define MSG_DECL_(kind, n, key, req, lo, hi, en) MSG_DECL_##kind(n, lo, hi, en) MSG_HAS_##req(n)
#define MSG_BODY_(C, c, wire, pmin, pmax) typedef struct { MSG_FIELDS_##C(MSG_DECL_) } msg_##c##_body_t;
MSG_TYPES(MSG_BODY_)
#undef MSG_BODY_

/* One payload frame: a dense row-major array described in the header. */
typedef struct {
  char name[MSG_FRAME_NAME_MAX + 1]; /* unique within the message, e.g. "agentview", "actions" */
  msg_dtype_t dtype;
  uint32_t rank;                     /* 1..MSG_MAX_RANK */
  uint32_t shape[MSG_MAX_RANK];      /* entries past rank are 0 */
  const void *data;                  /* borrowed: the frame's bytes, size = prod(shape) * dtype size */
  size_t size;
} msg_frame_t;

/* A decoded (or to-be-encoded) message. Plain data: no heap memory of its own, copy freely.
 * Set fields of the body that matches `type`; set has_x for each optional field you send. */
typedef struct {
  msg_type_t type;
  uint64_t id; /* request id, lease id, or sequence number: see msg_fields.h per type */
  union {
#define MSG_MEMBER_(C, c, wire, pmin, pmax) msg_##c##_body_t c;
    MSG_TYPES(MSG_MEMBER_)
#undef MSG_MEMBER_
  };
  uint32_t nframes;
  msg_frame_t frames[MSG_MAX_FRAMES];
} msg_t;

/* Zeroes *m and sets its type and id. */
void msg_init(msg_t *m, msg_type_t type, uint64_t id);

/* Appends a payload frame description (borrowing `data`); returns MSG_ERR_TOO_LARGE / RANGE when the
 * frame does not fit the limits. `shape` has `rank` entries. */
msg_err_t msg_add_frame(msg_t *m, const char *name, msg_dtype_t dtype, uint32_t rank,
                        const uint32_t *shape, const void *data, size_t size, msg_error_t *err);

/* The payload frame called `name`, or NULL. */
const msg_frame_t *msg_find_frame(const msg_t *m, const char *name);

/* ---- codec -------------------------------------------------------------------------------- */

/* A growable byte buffer, reused across calls to avoid allocation per message. */
typedef struct {
  uint8_t *data; /* owned, freed by msg_buf_free */
  size_t size;
  size_t cap;
} msg_buf_t;

/* Frees the buffer's memory and zeroes it. */
void msg_buf_free(msg_buf_t *buf);

/* Validates *m and writes its header frame into buf (replacing its contents). Payload bytes are not
 * copied: send m->frames[i].data as frame i + 1 after the header. Fails with the same codes the
 * decoder would give for the message. */
msg_err_t msg_encode(const msg_t *m, msg_buf_t *buf, msg_error_t *err);

/* A borrowed byte range: one received payload frame. */
typedef struct {
  const void *data;
  size_t size;
} msg_span_t;

/* Decodes and validates a header frame and its payload frames into *out. Payload data pointers in
 * *out borrow from `payloads`. On failure *out is unspecified except out->type and out->id, which
 * hold what could be read (type MSG_TYPE_COUNT_ and id 0 otherwise), so a reply can name them. */
msg_err_t msg_decode(const void *header, size_t header_size, const msg_span_t *payloads,
                     size_t npayloads, msg_t *out, msg_error_t *err);

/* ---- transport (czmq) -------------------------------------------------------------------- */
typedef struct _zsock_t zsock_t;
typedef struct _zframe_t zframe_t;
typedef struct _zcert_t zcert_t;
typedef struct _zactor_t zactor_t;

/* Socket options; msg_sock_opts_default() gives the values every rsd socket uses. */
typedef struct {
  int hwm;                  /* send and receive high-water marks, in messages */
  int linger_ms;            /* how long close waits for unsent messages */
  int heartbeat_ivl_ms;     /* ZMTP ping interval (0: off) */
  int heartbeat_timeout_ms; /* drop the connection when a ping gets no answer in this time */
  int64_t max_msg_bytes;    /* ZMQ_MAXMSGSIZE: larger frames drop the connection */
  /* CURVE (encryption and authentication; msg_keys_*): NULL for plain connections. A bound socket with
   * curve_cert is a CURVE server in ZAP domain MSG_ZAP_DOMAIN: it takes only the clients the process's
   * authenticator (msg_keys_auth_start, started before the bind) accepts. A connecting socket with
   * curve_cert is a CURVE client of the server whose public key is curve_server_key (Z85). Borrowed. */
  const zcert_t *curve_cert;
  const char *curve_server_key;
} msg_sock_opts_t;

msg_sock_opts_t msg_sock_opts_default(void);

typedef struct msg_sock msg_sock_t;

/* A socket of ZMQ type `zmq_type` (ZMQ_ROUTER or ZMQ_DEALER) bound to (bind = true) or connected to
 * `endpoint`. "tcp://127.0.0.1:*" binds an ephemeral port (see msg_sock_endpoint). ROUTER sockets
 * get ROUTER_MANDATORY. `opts` is nullable (defaults); `identity` is nullable (DEALER routing id).
 * Returns NULL and fills err on failure. */
msg_sock_t *msg_sock_new(int zmq_type, const char *endpoint, bool bind, const msg_sock_opts_t *opts,
                         const char *identity, msg_error_t *err);

/* Closes the socket; idempotent; sets *self_p to NULL. */
void msg_sock_destroy(msg_sock_t **self_p);

/* ---- CURVE keys (DESIGN 8) ----------------------------------------------------------------------
 * A keys directory, made by `rsd keys DIR` (msg_keys_make):
 *   DIR/server.cert_secret   the coordinator's and broker's certificate (public and secret key)
 *   DIR/server.cert          its public half: what a worker needs to know the server
 *   DIR/client.cert_secret   the workers' certificate (public and secret key)
 *   DIR/client.cert          its public half
 *   DIR/clients/             public certificates of the clients the servers accept (client.cert at first;
 *                            add a file per extra client certificate)
 * The servers read server.cert_secret and clients/; a worker reads server.cert and client.cert_secret, so a
 * worker machine needs only those two files. Secret files are written with mode 0600. */
#define MSG_ZAP_DOMAIN "rsd"

/* Writes a new keys directory at `dir` (created; it must not hold keys already). */
msg_err_t msg_keys_make(const char *dir, msg_error_t *err);

/* The server side of `dir`: *cert (owned by the caller, zcert_destroy) is server.cert_secret. */
msg_err_t msg_keys_server(const char *dir, zcert_t **cert, msg_error_t *err);

/* The client side of `dir`: *cert (owned by the caller) is client.cert_secret, and server_key
 * (41 bytes) receives the server's public key from server.cert. */
msg_err_t msg_keys_client(const char *dir, zcert_t **cert, char server_key[41], msg_error_t *err);

/* Starts the process's CURVE authenticator (a czmq zauth actor) accepting the public certificates in
 * dir/clients; it must run before any CURVE server socket binds, and for as long as they serve.
 * *auth is owned by the caller (zactor_destroy). */
msg_err_t msg_keys_auth_start(const char *dir, zactor_t **auth, msg_error_t *err);

/* The czmq socket, for zpoller/zloop; borrowed. */
zsock_t *msg_sock_zsock(msg_sock_t *self);

/* The endpoint as bound or connected, with the ephemeral port resolved; borrowed. */
const char *msg_sock_endpoint(msg_sock_t *self);

/* Counters since the socket was made. */
typedef struct {
  uint64_t sent, received, rejected;
} msg_sock_stats_t;
msg_sock_stats_t msg_sock_stats(const msg_sock_t *self);

/* Encodes and sends m as one multipart. `route` (nullable, borrowed) is the ROUTER routing id of the
 * peer; required on ROUTER sockets. An unreachable peer on a ROUTER gives MSG_ERR_TRANSPORT. */
msg_err_t msg_sock_send(msg_sock_t *self, const zframe_t *route, const msg_t *m, msg_error_t *err);

/* A received message, made by msg_sock_recv. It also owns the received frames (privately, without
 * copies); msg's payload pointers borrow from them until msg_in_destroy. */
typedef struct {
  zframe_t *route; /* owned; the sender's routing id on ROUTER sockets, else NULL */
  msg_t msg;
} msg_in_t;

/* Frees a received message; idempotent; sets *self_p to NULL. */
void msg_in_destroy(msg_in_t **self_p);

/* Receives one whole multipart (blocking; poll the zsock first to avoid that).
 * Returns MSG_OK with *in_p set; or a decode error with *in_p still set (route readable, msg.type and
 * msg.id as far as known) so the caller can answer with ERROR, and the rejected counter is bumped; or
 * MSG_ERR_TRANSPORT with *in_p NULL (interrupted or socket closed). */
msg_err_t msg_sock_recv(msg_sock_t *self, msg_in_t **in_p, msg_error_t *err);

/* Size of a routing id's key (msg_route_key): ZeroMQ routing ids are at most 255 bytes, two hex digits each. */
#define MSG_ROUTE_KEY_MAX 511

/* Writes a ROUTER routing id as lowercase hex (a NUL-terminated string key for tables of peers) into
 * out[MSG_ROUTE_KEY_MAX + 1]. */
void msg_route_key(const zframe_t *route, char out[MSG_ROUTE_KEY_MAX + 1]);

/* Sends a received message's header and payload frames on as they are (no re-encoding), to `route`
 * (nullable: DEALER). Takes ownership of *in_p, also on failure. */
msg_err_t msg_sock_forward(msg_sock_t *self, const zframe_t *route, msg_in_t **in_p, msg_error_t *err);

/* Builds and sends an ERROR answering `about` (nullable) with the code and text of `what`. Sends
 * nothing when `about` is itself an ERROR, so two peers never loop on errors. */
msg_err_t msg_sock_send_error(msg_sock_t *self, const zframe_t *route, const msg_t *about,
                              const msg_error_t *what, msg_error_t *err);

#ifdef __cplusplus
}
#endif
#endif
