"""A third-party peer written from docs/protocol.md alone (pyzmq + msgpack + numpy), for
msg_twoproc_test --python: it proves that the spec is enough to interoperate with rsd's C library.

It connects a DEALER to the endpoint given as argv[1], says HELLO, then echoes every message it can
read (re-encoded by Python's msgpack), answers what it cannot read with an ERROR as the spec says,
and on BYE reports its counters in the BYE reason and exits 0."""
import os
import sys

import msgpack
import numpy as np
import zmq

VERSION = 1
DTYPE_SIZES = {"u8": 1, "i16": 2, "i32": 4, "f32": 4, "f64": 8}
ERR_WRONG_TYPE, ERR_VERSION, ERR_PAYLOAD = 6, 11, 12


class Refused(Exception):
    def __init__(self, code, text):
        super().__init__(text)
        self.code, self.text = code, text


def check(parts):
    """Returns the header dict, or raises Refused with the code the spec gives."""
    header = msgpack.unpackb(parts[0])
    if not isinstance(header, dict):
        raise Refused(ERR_WRONG_TYPE, "header: expected a msgpack map")
    if header.get("v") != VERSION:
        raise Refused(ERR_VERSION, f"header.v: peer speaks protocol version {header.get('v')}, "
                                   f"this side speaks {VERSION}")
    descs = header.get("frames", [])
    if len(descs) != len(parts) - 1:
        raise Refused(ERR_PAYLOAD, f"header describes {len(descs)} payload frames, "
                                   f"message carries {len(parts) - 1}")
    for d, frame in zip(descs, parts[1:]):
        need = DTYPE_SIZES[d["dtype"]] * int(np.prod(d["shape"]))
        if need != len(frame):
            raise Refused(ERR_PAYLOAD, f"frame '{d['name']}' needs {need} bytes, has {len(frame)}")
    return header


def main():
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
    sock.connect(sys.argv[1])
    sock.send(msgpack.packb({"v": VERSION, "type": "HELLO", "id": int.from_bytes(os.urandom(4), "little"),
                             "role": "sim", "name": "py-peer", "capacity": 2, "software": "py-peer 1"}))
    received = rejected = 0
    while True:
        if not sock.poll(30000):
            return 2
        parts = sock.recv_multipart()
        received += 1
        try:
            header = check(parts)
        except Refused as e:
            rejected += 1
            sock.send(msgpack.packb({"v": VERSION, "type": "ERROR", "id": 0, "code": e.code, "text": e.text}))
            continue
        if header["type"] == "BYE":
            header["reason"] = f"received {received} rejected {rejected}"
        sock.send_multipart([msgpack.packb(header)] + parts[1:])
        if header["type"] == "BYE":
            return 0


if __name__ == "__main__":
    sys.exit(main())
