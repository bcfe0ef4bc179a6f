/* msg_fields.h: the one definition of every rsd message and every field on the wire.
 *
 * Everything else in msg/ is generated from these tables: the C structs (msg.h), the encoder, the
 * decoder and its validation (msg.c), and the tables in docs/protocol.md are written from them. To add
 * a field, add one line here (and document it in docs/protocol.md); nothing else changes by hand.
 *
 * A field line is F(KIND, c_name, "wire_key", REQ|OPT, lo, hi, enum):
 *   U32, U64  unsigned integer, value in [lo, hi]
 *   F64       IEEE double (msgpack float 32 or 64), finite, value in [lo, hi]
 *   BOOL      msgpack true/false (lo, hi unused)
 *   STR       valid UTF-8 of lo..hi bytes without NUL (stored as char[hi + 1], NUL-terminated)
 *   ENUM      string that must be one of the names of `enum` (stored as `enum`_t)
 *   U32S      array of lo..hi unsigned 32-bit integers (stored as uint32_t[hi] + c_name_count)
 *   U64S      array of lo..hi unsigned 64-bit integers (stored as uint64_t[hi] + c_name_count)
 * REQ fields must be present; OPT fields carry a `has_c_name` flag in the struct.
 * Every header also carries "v", "type", "id" and, when payload frames follow, "frames" (msg.c). */
#ifndef RSD_MSG_FIELDS_H
#define RSD_MSG_FIELDS_H

/* Major protocol version ("v"). Minor revisions only add OPT fields, which older peers ignore. */
#define MSG_VERSION_MAJOR 1

/* Enumerations sent as strings: E(C_SUFFIX, "wire name"). */
#define MSG_ROLES(E) E(SIM, "sim") E(GPU, "gpu")
#define MSG_POLICIES(E) E(MODEL, "model") E(EXPERT, "expert")
#define MSG_MODES(E) E(AR, "ar") E(SPEC, "spec") E(SPEC_RELAXED, "spec-relaxed")
#define MSG_OUTCOMES(E) E(SUCCESS, "success") E(FAILURE, "failure") E(INFRA_ERROR, "infra_error")
#define MSG_ACK_STATUSES(E) E(STORED, "stored") E(DUPLICATE, "duplicate") E(UNKNOWN, "unknown")
#define MSG_DTYPES(E) E(U8, "u8") E(I16, "i16") E(I32, "i32") E(F32, "f32") E(F64, "f64")

/* Message types: X(C_SUFFIX, c_name, "WIRE", min payload frames, max payload frames). */
#define MSG_TYPES(X)                  \
  X(HELLO, hello, "HELLO", 0, 0)       \
  X(WELCOME, welcome, "WELCOME", 0, 0) \
  X(READY, ready, "READY", 0, 0)       \
  X(LEASE, lease, "LEASE", 0, 0)       \
  X(HEARTBEAT, heartbeat, "HEARTBEAT", 0, 0) \
  X(RESULT, result, "RESULT", 0, 4)    \
  X(ACK, ack, "ACK", 0, 0)             \
  X(INFER, infer, "INFER", 1, 4)       \
  X(ACTION, action, "ACTION", 1, 2)    \
  X(ERROR, error, "ERROR", 0, 0)       \
  X(BYE, bye, "BYE", 0, 0)             \
  X(DRAIN, drain, "DRAIN", 0, 0)

#define MSG_U32_MAX 4294967295u
#define MSG_U64_MAX 18446744073709551615u
#define MSG_NAME_MAX 64   /* worker, variant, suite names */
#define MSG_LABEL_MAX 128 /* campaign, model, hashes, unnorm_key */
#define MSG_TEXT_MAX 1024 /* instructions, reasons, error texts */
#define MSG_MAX_LAYERS 16 /* per-layer arrays: radii, proposed, accepted */
#define MSG_MAX_DRAFT_WIDTH 64 /* draft paths per request and round (draft_width) */
#define MSG_MAX_LEASES 256
#define MSG_FIRST_ACTIONS_MAX 8 /* actions in RESULT.first_actions (7 f32 each, as 56 hex digits) */

/* HELLO (worker -> coordinator or broker): who I am and how much I can hold. id: a nonce.
 * A GPU worker (role "gpu") must send model and model_hash; its dtype (the precision it runs main and draft at:
 * float32, bfloat16 or float16) is float32 when absent. */
#define MSG_FIELDS_HELLO(F)                                          \
  F(ENUM, role, "role", REQ, 0, 0, msg_role)                        \
  F(STR, name, "name", REQ, 1, MSG_NAME_MAX, 0)                     \
  F(U32, capacity, "capacity", REQ, 1, 4096, 0)                     \
  F(STR, software, "software", REQ, 1, MSG_NAME_MAX, 0)             \
  F(STR, suite, "suite", OPT, 1, MSG_NAME_MAX, 0)                   \
  F(STR, suite_hash, "suite_hash", OPT, 1, MSG_LABEL_MAX, 0)        \
  F(STR, model, "model", OPT, 1, MSG_LABEL_MAX, 0)                  \
  F(STR, model_hash, "model_hash", OPT, 1, MSG_LABEL_MAX, 0)        \
  F(STR, device, "device", OPT, 1, MSG_NAME_MAX, 0)                 \
  F(STR, dtype, "dtype", OPT, 1, MSG_NAME_MAX, 0)                   \
  F(U32, max_batch, "max_batch", OPT, 1, 4096, 0)

/* WELCOME (coordinator or broker -> worker): accepted; the heartbeat contract. id: the HELLO's id.
 * worker_id fits 32 bits: sim workers put it in the high half of their INFER request ids. */
#define MSG_FIELDS_WELCOME(F)                                        \
  F(U64, worker_id, "worker_id", REQ, 1, MSG_U32_MAX, 0)            \
  F(U32, heartbeat_ms, "heartbeat_ms", REQ, 10, 600000, 0)          \
  F(U32, liveness, "liveness", REQ, 1, 100, 0)                      \
  F(STR, software, "software", REQ, 1, MSG_NAME_MAX, 0)             \
  F(STR, campaign, "campaign", OPT, 1, MSG_LABEL_MAX, 0)            \
  F(STR, broker, "broker", OPT, 1, 256, 0)

/* READY (GPU worker -> broker): how many more requests it can take now. id: a sequence number. */
#define MSG_FIELDS_READY(F) F(U32, credit, "credit", REQ, 0, 4096, 0)

/* LEASE (coordinator -> sim worker): run one episode. id: the lease id. */
#define MSG_FIELDS_LEASE(F)                                          \
  F(STR, campaign, "campaign", REQ, 1, MSG_LABEL_MAX, 0)            \
  F(STR, variant, "variant", REQ, 1, MSG_NAME_MAX, 0)               \
  F(STR, suite, "suite", REQ, 1, MSG_NAME_MAX, 0)                   \
  F(U32, task, "task", REQ, 0, 9999, 0)                             \
  F(U32, trial, "trial", REQ, 0, 99999, 0)                          \
  F(U32, attempt, "attempt", REQ, 1, 100, 0)                        \
  F(U64, seed, "seed", REQ, 0, MSG_U64_MAX, 0)                      \
  F(U32, max_steps, "max_steps", REQ, 1, 100000, 0)                 \
  F(U32, wait_steps, "wait_steps", REQ, 0, 10000, 0)                \
  F(U32, replan_every, "replan_every", REQ, 1, 1024, 0)             \
  F(U32, image_size, "image_size", REQ, 16, 1024, 0)                \
  F(ENUM, policy, "policy", REQ, 0, 0, msg_policy)                  \
  F(ENUM, mode, "mode", OPT, 0, 0, msg_mode)                        \
  F(U32, draft_len, "draft_len", OPT, 1, MSG_MAX_LAYERS, 0)         \
  F(U32, draft_width, "draft_width", OPT, 1, MSG_MAX_DRAFT_WIDTH, 0) \
  F(U32S, radii, "radii", OPT, 1, MSG_MAX_LAYERS, 0)                \
  F(STR, model, "model", OPT, 1, MSG_LABEL_MAX, 0)                  \
  F(STR, unnorm_key, "unnorm_key", OPT, 1, MSG_LABEL_MAX, 0)        \
  F(BOOL, record_video, "record_video", OPT, 0, 0, 0)               \
  F(BOOL, video_on_failure, "video_on_failure", OPT, 0, 0, 0)

/* HEARTBEAT (both ways): I am alive; these are the leases I hold (worker) or consider live
 * (coordinator). id: a sequence number. */
#define MSG_FIELDS_HEARTBEAT(F)                                      \
  F(U64S, leases, "leases", OPT, 0, MSG_MAX_LEASES, 0)              \
  F(U32, busy, "busy", OPT, 0, 1000000, 0)

/* RESULT (sim worker -> coordinator): one finished episode. id: the lease id.
 * Payload frames (optional): per-chunk latencies, decoded codes, a rollout video. */
#define MSG_FIELDS_RESULT(F)                                         \
  F(STR, campaign, "campaign", REQ, 1, MSG_LABEL_MAX, 0)            \
  F(STR, variant, "variant", REQ, 1, MSG_NAME_MAX, 0)               \
  F(U32, task, "task", REQ, 0, 9999, 0)                             \
  F(U32, trial, "trial", REQ, 0, 99999, 0)                          \
  F(U32, attempt, "attempt", REQ, 1, 100, 0)                        \
  F(ENUM, outcome, "outcome", REQ, 0, 0, msg_outcome)               \
  F(U32, steps, "steps", REQ, 0, 1000000, 0)                        \
  F(U64, wall_ms, "wall_ms", REQ, 0, MSG_U64_MAX, 0)                \
  F(STR, reason, "reason", OPT, 1, MSG_TEXT_MAX, 0)                 \
  F(STR, worker, "worker", OPT, 1, MSG_NAME_MAX, 0)                 \
  F(U32, chunks, "chunks", OPT, 0, 1000000, 0)                      \
  F(U64, main_forwards, "main_forwards", OPT, 0, MSG_U64_MAX, 0)    \
  F(U64, draft_forwards, "draft_forwards", OPT, 0, MSG_U64_MAX, 0)  \
  F(U32S, proposed, "proposed", OPT, 1, MSG_MAX_LAYERS, 0)          \
  F(U32S, accepted, "accepted", OPT, 1, MSG_MAX_LAYERS, 0)          \
  F(STR, actions_digest, "actions_digest", OPT, 64, 64, 0)          \
  F(U32S, batch_hist, "batch_hist", OPT, 1, MSG_MAX_LAYERS, 0)      \
  F(STR, first_actions, "first_actions", OPT, 56, 56 * MSG_FIRST_ACTIONS_MAX, 0) \
  F(U32, error_code, "error_code", OPT, 1, 999, 0)

/* ACK (coordinator -> sim worker): the RESULT with this lease id is stored (or was already). */
#define MSG_FIELDS_ACK(F) F(ENUM, status, "status", REQ, 0, 0, msg_ack_status)

/* INFER (sim worker -> broker -> GPU worker): one observation, asking for an action chunk.
 * id: the request id, unique per sim worker. Payload frames: camera images (u8 H x W x 3, upright)
 * and proprio (f32). */
#define MSG_FIELDS_INFER(F)                                          \
  F(STR, campaign, "campaign", OPT, 1, MSG_LABEL_MAX, 0)            \
  F(STR, variant, "variant", REQ, 1, MSG_NAME_MAX, 0)               \
  F(U32, task, "task", REQ, 0, 9999, 0)                             \
  F(U32, trial, "trial", REQ, 0, 99999, 0)                          \
  F(U32, step, "step", REQ, 0, 1000000, 0)                          \
  F(STR, instruction, "instruction", REQ, 1, MSG_TEXT_MAX, 0)       \
  F(STR, model, "model", REQ, 1, MSG_LABEL_MAX, 0)                  \
  F(STR, unnorm_key, "unnorm_key", REQ, 1, MSG_LABEL_MAX, 0)        \
  F(ENUM, mode, "mode", REQ, 0, 0, msg_mode)                        \
  F(U32, draft_len, "draft_len", OPT, 1, MSG_MAX_LAYERS, 0)         \
  F(U32, draft_width, "draft_width", OPT, 1, MSG_MAX_DRAFT_WIDTH, 0) \
  F(U32S, radii, "radii", OPT, 1, MSG_MAX_LAYERS, 0)                \
  F(U32, deadline_ms, "deadline_ms", OPT, 1, 3600000, 0)

/* ACTION (GPU worker -> broker -> sim worker): the action chunk for an INFER, and how it was
 * decoded. id: the INFER's id. Payload frames: "actions" (f32 H x A, unnormalized), optionally
 * "codes" (i32 L x G). */
#define MSG_FIELDS_ACTION(F)                                         \
  F(U32, batch, "batch", REQ, 1, 4096, 0)                           \
  F(U32, main_forwards, "main_forwards", REQ, 0, 1024, 0)           \
  F(U32, draft_forwards, "draft_forwards", REQ, 0, 1024, 0)         \
  F(U64, queue_us, "queue_us", REQ, 0, MSG_U64_MAX, 0)              \
  F(U64, encode_us, "encode_us", REQ, 0, MSG_U64_MAX, 0)            \
  F(U64, decode_us, "decode_us", REQ, 0, MSG_U64_MAX, 0)            \
  F(U32S, proposed, "proposed", OPT, 1, MSG_MAX_LAYERS, 0)          \
  F(U32S, accepted, "accepted", OPT, 1, MSG_MAX_LAYERS, 0)          \
  F(STR, worker, "worker", OPT, 1, MSG_NAME_MAX, 0)

/* ERROR (any direction): the message with this id was refused or failed. `code` is a msg_err_t
 * value; `about` names the refused message's type when it could be read. */
#define MSG_FIELDS_ERROR(F)                                          \
  F(U32, code, "code", REQ, 1, 999, 0)                              \
  F(STR, text, "text", REQ, 1, MSG_TEXT_MAX, 0)                     \
  F(STR, about, "about", OPT, 1, 16, 0)

/* BYE (either way): this peer is leaving; the other side forgets it. DRAIN (coordinator -> worker):
 * finish what you hold, take nothing new, then say BYE. */
#define MSG_FIELDS_BYE(F) F(STR, reason, "reason", OPT, 1, MSG_TEXT_MAX, 0)
#define MSG_FIELDS_DRAIN(F) F(STR, reason, "reason", OPT, 1, MSG_TEXT_MAX, 0)

#endif
