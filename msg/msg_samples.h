/* msg_samples.h: one fully populated, valid sample of every message type, for tests, the fuzz seed
 * corpus and benchmarks. Every optional field is set, and messages that carry payload frames carry the
 * most they are allowed, so a round trip exercises every line of msg_fields.h. Test-only. */
#ifndef RSD_MSG_SAMPLES_H
#define RSD_MSG_SAMPLES_H

#include "msg.h"

/* Fills *m with the sample of `type`. Payload frames point into static buffers (valid forever). */
void msg_sample(msg_type_t type, msg_t *m);

#endif
