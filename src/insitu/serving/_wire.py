"""Frames between the front process and a replica, over a Unix stream socket.

Each frame is a 16-byte header ``(length, id, code, batch, wait_us)`` then ``length`` bytes.
Front -> replica: ``code`` is :data:`V2` or :data:`V1`, the payload the request body as it
came over HTTP (the front never parses it). Replica -> front: ``code`` is the HTTP status,
``batch`` the size of the batch the request was predicted in, ``wait_us`` its time queued in
the replica, the payload the response body. The first frame a replica sends has id 0: its
metadata (status 200) or why it could not load the model (status 500).
"""

from __future__ import annotations

import struct

HEAD = struct.Struct("<IIHHI")
V2 = 1
V1 = 2
MAX_FRAME = 1 << 30


def frame(rid: int, code: int, payload: bytes, batch: int = 0, wait_us: int = 0) -> bytes:
    return HEAD.pack(len(payload), rid, code, min(batch, 65535), min(wait_us, 2**32 - 1)) \
        + payload


def split(buf: bytearray) -> list[tuple[int, int, int, int, bytes]]:
    """Take every complete frame off the front of ``buf``: (id, code, batch, wait, payload)."""
    out = []
    pos = 0
    n = len(buf)
    size = HEAD.size
    while n - pos >= size:
        length, rid, code, batch, wait = HEAD.unpack_from(buf, pos)
        if n - pos - size < length:
            break
        out.append((rid, code, batch, wait, bytes(buf[pos + size:pos + size + length])))
        pos += size + length
    if pos:
        del buf[:pos]
    return out
