"""A run's logs as Server-Sent Events, while they are written.

Each ``log`` event carries whole lines of one attempt's stdout or stderr
(``{"step", "attempt", "stream", "text"}``); a comment is sent every few seconds when there is
nothing to say, so proxies keep the connection open; a last ``end`` event
(``{"state": ...}``) comes once the run has ended (or its engine is gone) and every line was
sent. The files are those the engine writes (``INSITU_HOME/runs/RUN/logs``), read from where
the last poll stopped; an attempt that is followed by a retry is read to its end before the
next one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool

from insitu._config import Config
from insitu.engine import shown_state
from insitu.engine._paths import log_path
from insitu.errors import not_found
from insitu.store import RunRecord, Store, TaskRecord
from insitu.store import _records as S

CHUNK = 2**20            # bytes read from one file per poll
_NAMES = {"out": "stdout", "err": "stderr"}


def pick(tasks: list[TaskRecord], step: str | None) -> list[TaskRecord]:
    """The tasks ``step`` names, as ``insitu logs RUN STEP`` takes it: one task
    (``evaluate[1]``, or a plain step), or a map's items; every task without ``step``."""
    if step is None:
        return tasks
    exact = [t for t in tasks if t.id == step]
    if exact and exact[0].map_size is None:
        return exact
    items = [t for t in tasks if t.step_id == step and t.map_index is not None]
    return items or exact


def check_step(store: Store, run: RunRecord, step: str | None) -> None:
    """:class:`NotFound` (before any event is sent) for a step the run does not have."""
    if step is None:
        return
    tasks = store.list_tasks(run.id)
    if not pick(tasks, step) and step not in {s["id"] for s in run.spec.get("steps", [])}:
        raise not_found("step", step, [t.id for t in tasks], where=f"run {run.id}")


def event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass
class Follower:
    """Where each attempt's files were read up to, and the partial last lines held back."""

    store: Store
    cfg: Config
    run_id: str
    step: str | None
    offsets: dict[tuple[str, int, str], int] = field(default_factory=dict)
    partial: dict[tuple[str, int, str], bytes] = field(default_factory=dict)
    first: dict[str, int] = field(default_factory=dict)   # task -> first attempt to follow

    def poll(self) -> tuple[list[str], str | None]:
        """The events of what was written since the last poll; the run's shown state when
        it has ended (every line is then in the events), else None."""
        rec = self.store.get_run(self.run_id)
        state = shown_state(rec)
        ended = rec.state in S.RUN_TERMINAL or state == S.INTERRUPTED
        tasks = pick(self.store.list_tasks(rec.id), self.step)
        out: list[str] = []
        for t in sorted(tasks, key=lambda t: t.seq):
            # from the latest attempt when the stream starts (as --follow), then every one
            start = self.first.setdefault(t.id, max(t.attempts, 1))
            for n in range(start, t.attempts + 1):
                done = ended or n < t.attempts or t.state != S.TASK_RUNNING
                for stream in ("out", "err"):
                    out += self._read(t.id, n, stream, flush=done)
        return out, (state if ended else None)

    def _read(self, task: str, n: int, stream: str, *, flush: bool) -> list[str]:
        key = (task, n, stream)
        path = log_path(self.cfg, self.run_id, task, n, stream)
        events = []
        while True:
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets.get(key, 0))
                    data = f.read(CHUNK)
            except (FileNotFoundError, IsADirectoryError):
                data = b""
            self.offsets[key] = self.offsets.get(key, 0) + len(data)
            buf = self.partial.pop(key, b"") + data
            cut = buf.rfind(b"\n") + 1
            if len(data) < CHUNK and flush:
                cut = len(buf)  # the attempt has ended: its last line, even without "\n"
            if cut:
                events.append(event("log", {"step": task, "attempt": n,
                                            "stream": _NAMES[stream],
                                            "text": buf[:cut].decode(errors="replace")}))
            if buf[cut:]:
                self.partial[key] = buf[cut:]
            if len(data) < CHUNK:
                return events


async def stream(store: Store, cfg: Config, run: RunRecord, step: str | None, *,
                 poll_s: float = 0.5, keepalive_s: float = 10.0) -> AsyncIterator[str]:
    """The events of ``run``'s logs (of ``step``'s tasks), until the run has ended."""
    follower = Follower(store, cfg, run.id, step)
    yield ": following the logs of run " + run.id + "\n\n"
    quiet_since = time.monotonic()
    while True:
        events, ended = await run_in_threadpool(follower.poll)
        for e in events:
            yield e
        if ended is not None:
            yield event("end", {"state": ended})
            return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= keepalive_s:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(poll_s)
