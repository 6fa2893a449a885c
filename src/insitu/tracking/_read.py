"""The engine-side half of tracking: turn an attempt's journal into store records."""

from __future__ import annotations

import json
from typing import Any

from insitu.store import DataReadRecord, LoggedArtifact, MetricRecord, ParamRecord, Record


def read_journal(path: str, *, run_id: str, task_id: str, attempt: int) -> list[Record]:
    """Records for every complete line of the journal at ``path`` ([] if there is none)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out: dict[tuple[Any, ...], Record] = {}
    reads = 0
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a kill: skip it
            continue
        t = rec.get("t")
        rank = int(rec.get("rank") or 0)  # a distributed step's rank > 0: names carry it
        if rank and t == "param":
            continue  # rank 0's parameters are the step's
        if rank and t in ("metric", "artifact"):
            rec["name"] = f"{rec['name']}@rank{rank}"
        if t == "metric":
            out[("m", rec["name"], rec["step"])] = MetricRecord(
                run_id=run_id, task_id=task_id, attempt=attempt, name=rec["name"],
                step=rec["step"], value=rec["value"], timestamp=rec["ts"])
        elif t == "param":
            out[("p", rec["name"])] = ParamRecord(run_id=run_id, task_id=task_id,
                                                  name=rec["name"], value=rec["value"])
        elif t == "io":  # a shard read (insitu.shard_path): local, or moved from elsewhere
            out[("io", reads)] = DataReadRecord(
                run_id=run_id, task_id=task_id, attempt=attempt, seq=reads,
                shard=str(rec.get("shard", "?")), bytes=int(rec.get("bytes", 0)),
                local=bool(rec.get("local")), source=str(rec.get("from", "?")),
                node=str(rec.get("node", "?")), seconds=float(rec.get("seconds", 0.0)),
                via=str(rec.get("via", "")), path=str(rec.get("path", "")))
            reads += 1
        elif t == "artifact":
            out[("a", rec["name"])] = LoggedArtifact(run_id=run_id, task_id=task_id,
                                                     attempt=attempt, name=rec["name"],
                                                     output=rec["ref"])
    return list(out.values())
