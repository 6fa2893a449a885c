"""What the API shows of a run beyond its record: its steps and attempts, a range of an
attempt's log, ``explain`` and ``why`` as data, its metrics and params.

Every function takes the project the route names and finds the run in it (another
project's run is the same 404 as one that does not exist). Log files are read where the
engine writes them (``INSITU_HOME/runs/RUN/logs``, see ``insitu.engine._paths``).
"""

from __future__ import annotations

import dataclasses
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from insitu._config import Config
from insitu.engine import shown_state, shown_task_state
from insitu.engine._explain import absolute_path, explain_facts, why_facts
from insitu.engine._paths import log_path
from insitu.errors import NotFound, UserError, not_found
from insitu.executor._gang import rank_path
from insitu.server._domain import _run
from insitu.store import (
    AttemptRecord,
    MetricRecord,
    ParamRecord,
    RunRecord,
    Store,
    TaskRecord,
)
from insitu.store import _records as S

STREAMS = {"stdout": "out", "stderr": "err"}
MAX_LOG_RANGE = 16 * 2**20


def task_view(run_state: str, t: TaskRecord) -> dict[str, Any]:
    return {"id": t.id, "step": t.step_id, "state": shown_task_state(run_state, t.state),
            "attempts": t.attempts, "node": t.node, "started_at": t.started_at,
            "ended_at": t.ended_at, "error": t.error, "cached_from": t.cached_from,
            "map_index": t.map_index, "pending_reason": t.pending_reason}


def list_steps(store: Store, project: str, run_id: str) -> list[dict[str, Any]]:
    run = _run(store, project, run_id)
    state = shown_state(run)
    return [task_view(state, t) for t in store.list_tasks(run.id)]


def task_of(store: Store, run: RunRecord, task_id: str) -> TaskRecord:
    """The task ``task_id`` of ``run``; :class:`NotFound` naming the run's tasks."""
    tasks = store.list_tasks(run.id)
    for t in tasks:
        if t.id == task_id:
            return t
    raise not_found("step", task_id, [t.id for t in tasks], where=f"run {run.id}")


def list_attempts(store: Store, project: str, run_id: str, task_id: str
                  ) -> list[dict[str, Any]]:
    run = _run(store, project, run_id)
    task = task_of(store, run, task_id)
    state = shown_state(run)
    out = []
    for a in store.list_attempts(run.id, task.id):
        d = dataclasses.asdict(a)
        d["state"] = shown_task_state(state, a.state)
        out.append(d)
    return out


def run_attempts(store: Store, project: str, run_id: str, limit: int) -> dict[str, Any]:
    """Every attempt of the run (the first ``limit`` by start), for its timeline: which task,
    its number (a retry is 2 or more), state, node and times."""
    run = _run(store, project, run_id)
    state = shown_state(run)
    got = sorted(store.list_attempts(run.id),
                 key=lambda a: (a.started_at is None, a.started_at or 0.0, a.task_id, a.number))
    return {"total": len(got), "items": [
        {"task_id": a.task_id, "number": a.number, "state": shown_task_state(state, a.state),
         "node": a.node, "started_at": a.started_at, "ended_at": a.ended_at,
         "exit_code": a.exit_code} for a in got[:limit]]}


def _utf8_cut(data: bytes) -> int:
    """How many bytes of ``data`` end on a character boundary (a multi-byte UTF-8
    character cut by the range is left for the next one)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:  # a continuation byte: look further back for the lead byte
            continue
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 \
            else 1
        return len(data) - back if need > back else len(data)
    return len(data)


def read_log(cfg: Config, run_id: str, task_id: str, attempt: int, stream: str,
             offset: int, limit: int, rank: int = 0) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of an attempt's log (of one rank of a distributed step) from
    ``offset`` (fewer at the end, or to keep a UTF-8 character whole), and the file's size
    now (0 if it does not exist)."""
    path = Path(rank_path(str(log_path(cfg, run_id, task_id, attempt, stream)), rank))
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset)
            data = f.read(limit)
    except (FileNotFoundError, IsADirectoryError):
        return b"", 0
    whole = _utf8_cut(data)
    if whole:  # a character being written (or cut by the limit) comes with the next read
        data = data[:whole]
    return data, size


def log_range(store: Store, cfg: Config, project: str, run_id: str, *, step: str,
              attempt: int | None, stream: str, offset: int, limit: int,
              rank: int = 0) -> dict[str, Any]:
    """A byte range of one attempt's stdout or stderr (the latest attempt by default; of
    rank ``rank`` for a distributed step)."""
    run = _run(store, project, run_id)
    task = task_of(store, run, step)
    if stream not in STREAMS:
        raise UserError(f"stream {stream!r} is not stdout or stderr",
                        hint="pass stream=stdout or stream=stderr")
    n = task.attempts if attempt is None else attempt
    if attempt is not None and (attempt < 1 or attempt > task.attempts):
        raise NotFound(f"step {task.id} of run {run.id} has {task.attempts} attempt(s), not "
                       f"{attempt}", hint="leave out attempt for the latest"
                       + (f", or give 1 to {task.attempts}" if task.attempts else ""))
    if n == 0:
        return {"text": "", "offset": offset, "next_offset": offset, "eof": True,
                "attempt": 0, "size": 0, "ended": task.state != "pending"}
    att = store.select(AttemptRecord, run_id=run.id, task_id=task.id, number=n)
    if rank:
        world = len((att[0].placement or {}).get("ranks") or []) if att else 0
        if world == 0:
            raise UserError(f"step {task.id} is not a distributed step: it has no ranks",
                            hint="leave out rank")
        if rank >= world:
            raise NotFound(f"step {task.id} ran {world} ranks (0 to {world - 1}), not rank "
                           f"{rank}", hint=f"give a rank from 0 to {world - 1}")
    data, size = read_log(cfg, run.id, task.id, n, STREAMS[stream], offset, limit, rank)
    end = offset + len(data)
    ended = bool(att) and att[0].state in S.ATT_TERMINAL
    return {"text": data.decode(errors="replace"), "offset": offset, "next_offset": end,
            "eof": end >= size, "attempt": n, "size": size, "ended": ended}


def explain(store: Store, cfg: Config, project: str, run_id: str, step: str | None
            ) -> dict[str, Any]:
    run = _run(store, project, run_id)
    return explain_facts(run, store, cfg, step, show_path=absolute_path)


def why(store: Store, project: str, run_id: str, step: str | None) -> dict[str, Any]:
    run = _run(store, project, run_id)
    return why_facts(run, store, step)


def metrics(store: Store, project: str, run_id: str, name: str | None = None
            ) -> dict[str, Any]:
    """Every metric series the run's steps logged (the last attempt that logged each, as
    ``insitu metrics`` and ``insitu show`` use), with its last, min and max; and the
    params the steps logged."""
    run = _run(store, project, run_id)
    pts = store.select(MetricRecord, run_id=run.id)
    if name is not None:
        pts = [p for p in pts if p.name == name]
    last: dict[tuple[str, str], int] = {}
    for p in pts:
        last[(p.task_id, p.name)] = max(last.get((p.task_id, p.name), 0), p.attempt)
    series: dict[tuple[str, str], list[MetricRecord]] = defaultdict(list)
    for p in pts:
        if p.attempt == last[(p.task_id, p.name)]:
            series[(p.task_id, p.name)].append(p)
    out = []
    for (task, metric), ps in sorted(series.items()):
        ps.sort(key=lambda p: p.step)
        vals = [p.value for p in ps]
        out.append({"step": task, "name": metric, "attempt": ps[0].attempt,
                    "last": vals[-1], "min": min(vals), "max": max(vals), "count": len(vals),
                    "points": [{"x": p.step, "value": p.value, "timestamp": p.timestamp}
                               for p in ps]})
    params: dict[str, dict[str, Any]] = defaultdict(dict)
    for pr in store.select(ParamRecord, run_id=run.id):
        params[pr.task_id][pr.name] = pr.value
    return {"run": run.id, "params": run.params, "metrics": out,
            "step_params": [{"step": k, "params": v} for k, v in sorted(params.items())]}
