"""A replica: the process that holds one model version and answers frames from the front.

It is forked from the warm process (:mod:`insitu.serving._zygote`) with a listening socket
already made; it loads the model (paying only that), accepts the front's connection, says
it is ready (its metadata) or why it could not load, then loops on one thread: read what
has come, wait up to ``max_latency_ms`` for a batch to fill (never when batching is off),
decode, check, predict in batches, answer. It exits when the front closes the connection.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any

import orjson

from insitu.serving import _wire
from insitu.serving._batching import model_boundary, predict_many
from insitu.serving._codec import Request, decode_v1, decode_v2, encode_v1, encode_v2, error_body
from insitu.serving._errors import ModelFailed, status_of
from insitu.serving._registry import runtime_class
from insitu.serving._runtime import Runtime


@dataclass(frozen=True, kw_only=True)
class ReplicaSpec:
    """What a replica serves (plain data: it crosses to the warm process as JSON)."""

    model: str
    version: int
    flavor: str
    output: dict[str, Any]
    artifacts_url: str
    home: str
    max_batch_size: int = 32
    max_latency_ms: float = 0.0
    batching: bool = True

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


def load_runtime(spec: ReplicaSpec) -> Runtime:
    from insitu.artifacts import ArtifactStore
    from insitu.artifacts import load as load_ref

    obj = load_ref(spec.output, ArtifactStore(spec.artifacts_url),
                   materialize_dir=os.path.join(spec.home, "materialized"))
    return runtime_class(spec.flavor, what=f"model {spec.ref}")(obj)


def metadata(spec: ReplicaSpec, rt: Runtime) -> dict[str, Any]:
    return {"name": spec.model, "versions": [str(spec.version)], "platform": rt.platform,
            "inputs": [t.as_json() for t in rt.inputs()],
            "outputs": [t.as_json() for t in rt.outputs()],
            "parameters": {"flavor": spec.flavor, "batchable": rt.batchable}}


def run(listener: socket.socket, spec: ReplicaSpec) -> None:
    """The replica's whole life (never returns)."""
    rt: Runtime | None = None
    first: bytes
    try:
        t0 = time.perf_counter()
        rt = load_runtime(spec)
        meta = metadata(spec, rt)
        meta["parameters"]["load_seconds"] = round(time.perf_counter() - t0, 4)
        first = _wire.frame(0, 200, orjson.dumps(meta))
        print(f"insitu: loaded {spec.ref} ({spec.flavor}) in "
              f"{time.perf_counter() - t0:.3f} s", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - reported to the front, which tells the caller
        traceback.print_exc()
        msg = getattr(e, "message", None) or f"{type(e).__name__}: {e}"
        first = _wire.frame(0, 500, orjson.dumps({"error": f"model {spec.ref} could not "
                                                  f"be loaded: {msg}"}))
    conn, _ = listener.accept()
    listener.close()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    conn.sendall(first)
    if rt is None:
        os._exit(3)
    _loop(conn, spec, rt)
    os._exit(0)


def _loop(conn: socket.socket, spec: ReplicaSpec, rt: Runtime) -> None:
    buf = bytearray()
    pending: list[tuple[int, int, bytes, float]] = []
    limit = spec.max_batch_size if spec.batching and rt.batchable else 1
    wait = spec.max_latency_ms / 1000 if limit > 1 else 0.0
    version = str(spec.version)
    recv = conn.recv

    def read() -> bool:
        """Add the requests that have come in full to ``pending``; False once the front
        closed the connection."""
        data = recv(1 << 20)
        if not data:
            return False
        buf.extend(data)
        now = time.perf_counter()
        pending.extend((rid, code, body, now) for rid, code, _, _, body in _wire.split(buf))
        return True

    while True:
        while not pending:  # until a request has come in full
            if not read():
                return
        if wait and len(pending) < limit:
            deadline = pending[0][3] + wait
            while len(pending) < limit:
                left = deadline - time.perf_counter()
                if left <= 0 or not select.select([conn], [], [], left)[0]:
                    break
                if not read():
                    return
        else:  # take what has already come, without waiting
            while len(pending) < limit and select.select([conn], [], [], 0)[0]:
                if not read():
                    return
        batch = pending[:limit]
        del pending[:limit]
        conn.sendall(_answer(batch, spec.model, version, rt))


def _answer(batch: list[tuple[int, int, bytes, float]], model: str, version: str,
            rt: Runtime) -> bytes:
    started = time.perf_counter()
    reqs: list[Request] = []
    ok: list[int] = []
    out: list[bytes | None] = [None] * len(batch)
    for i, (rid, code, body, _) in enumerate(batch):
        try:
            req = decode_v1(body) if code == _wire.V1 else decode_v2(body)
            rt.check(req.inputs)
            reqs.append(req)
            ok.append(i)
        except Exception as e:  # noqa: BLE001 - a bad request is answered, not raised
            if not hasattr(e, "status"):
                e = ModelFailed(f"the model's input check raised {type(e).__name__}: {e}")
            out[i] = _wire.frame(rid, status_of(e), error_body(getattr(e, "message", str(e))
                                                               ), 1)
    if reqs:
        for i, req, (res, size) in zip(ok, reqs, predict_many(rt, reqs, model_boundary),
                                       strict=True):
            rid, _, _, arrived = batch[i]
            wait_us = int((started - arrived) * 1e6)
            if isinstance(res, BaseException):
                msg = getattr(res, "message", None) or str(res)
                out[i] = _wire.frame(rid, status_of(res), error_body(msg), size, wait_us)
                continue
            try:
                body = encode_v1(res) if req.v1 else encode_v2(model, version, req, res)
                out[i] = _wire.frame(rid, 200, body, size, wait_us)
            except Exception as e:  # noqa: BLE001 - e.g. an output of a type JSON lacks
                out[i] = _wire.frame(rid, 500, error_body(
                    f"the model's output could not be encoded: {type(e).__name__}: {e}"),
                    size, wait_us)
    return b"".join(o for o in out if o is not None)
