"""Payload logging: a sample of requests and responses, each capped in size, written as JSON
lines (one file per serving process and day) under a folder or fsspec URL, and read back as
a pandas DataFrame. Writing happens on a background thread, never on the request's path."""

from __future__ import annotations

import datetime
import os
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson

from insitu.errors import UserError


@dataclass(frozen=True, kw_only=True)
class PayloadLogging:
    """Log ``sample`` (0 to 1) of the requests; bodies over ``max_bytes`` are cut (and marked
    so); ``url`` defaults to ``$INSITU_HOME/payloads``."""

    sample: float = 0.0
    max_bytes: int = 64 * 1024
    url: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.sample <= 1:
            raise UserError(f"payload sample {self.sample!r} is out of range",
                            hint="give a share from 0 to 1, e.g. 0.1 for one in ten")
        if self.max_bytes < 0:
            raise UserError("the payload size cap cannot be negative")


def default_url() -> str:
    from insitu._config import load_config

    return str(load_config().home / "payloads")


def _text(body: bytes, cap: int) -> tuple[str, bool]:
    cut = len(body) > cap
    return body[:cap].decode("utf-8", "replace"), cut


class PayloadLog:
    """The writer of one endpoint's payloads (thread-safe ``record``)."""

    def __init__(self, endpoint: str, policy: PayloadLogging) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.url = (policy.url or default_url()).rstrip("/") + "/" + endpoint
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=10_000)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self.policy.sample > 0

    def wanted(self, forced: bool = False) -> bool:
        return forced or (self.enabled and random.random() < self.policy.sample)

    def record(self, *, model: str, version: int, request: bytes, response: bytes,
               status: int, latency_ms: float, kind: str = "served") -> None:
        cap = self.policy.max_bytes
        req, req_cut = _text(request, cap)
        resp, resp_cut = _text(response, cap)
        row = {"time": time.time(), "endpoint": self.endpoint, "model": model,
               "version": version, "kind": kind, "status": status,
               "latency_ms": round(latency_ms, 3), "request": req, "response": resp,
               "truncated": req_cut or resp_cut}
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._write, name="payloads",
                                                daemon=True)
                self._thread.start()
        try:
            self._q.put_nowait(row)
        except queue.Full:
            self.dropped += 1

    def _write(self) -> None:
        import fsspec

        while True:
            rows = [self._q.get()]
            while not self._q.empty() and len(rows) < 1000:
                rows.append(self._q.get_nowait())
            stop = None in rows
            rows = [r for r in rows if r is not None]
            try:
                if rows:
                    day = datetime.date.today().isoformat()
                    path = f"{self.url}/{day}-{os.getpid()}.jsonl"
                    fs, p = fsspec.core.url_to_fs(path)
                    fs.makedirs(self.url if "://" in self.url else os.path.dirname(p),
                                exist_ok=True)
                    with fs.open(p, "ab") as f:
                        f.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            except OSError as e:  # the log is best effort: serving goes on
                self.dropped += len(rows)
                print(f"insitu: could not write payloads to {self.url}: {e}", flush=True)
            finally:
                for _ in range(len(rows) + stop):
                    self._q.task_done()
            if stop:
                return

    def flush(self) -> None:
        """Return once every row recorded so far is written."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
        if running:
            self._q.join()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._q.put(None)
            thread.join(timeout=30)


def read_payloads(endpoint: str, *, url: str | None = None) -> Any:
    """The logged payloads of ``endpoint`` as a DataFrame (oldest first), with columns time,
    endpoint, model, version, kind (``served`` or ``shadow``), status, latency_ms, request,
    response, truncated."""
    import fsspec
    import pandas as pd

    base = (url or default_url()).rstrip("/") + "/" + endpoint
    fs, p = fsspec.core.url_to_fs(base)
    files = sorted(fs.glob(p + "/*.jsonl")) if fs.exists(p) else []
    rows = []
    for f in files:
        with fs.open(f, "rb") as fh:
            rows += [orjson.loads(line) for line in fh if line.strip()]
    cols = ["time", "endpoint", "model", "version", "kind", "status", "latency_ms",
            "request", "response", "truncated"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame.sort_values("time", kind="stable").reset_index(drop=True)
