"""The engine-side half of tracking: turn an attempt's journal into store records."""

from __future__ import annotations

import json
from typing import Any

from insitu.store import LoggedArtifact, MetricRecord, ParamRecord, Record


def read_journal(path: str, *, run_id: str, task_id: str, attempt: int) -> list[Record]:
    """Records for every complete line of the journal at ``path`` ([] if there is none)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out: dict[tuple[Any, ...], Record] = {}
    io_steps = {"bytes_read_local": 0, "bytes_moved": 0}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:  # a line cut short by a kill: skip it
            continue
        t = rec.get("t")
        if t == "metric":
            out[("m", rec["name"], rec["step"])] = MetricRecord(
                run_id=run_id, task_id=task_id, attempt=attempt, name=rec["name"],
                step=rec["step"], value=rec["value"], timestamp=rec["ts"])
        elif t == "param":
            out[("p", rec["name"])] = ParamRecord(run_id=run_id, task_id=task_id,
                                                  name=rec["name"], value=rec["value"])
        elif t == "io":  # a shard read (insitu.shard_path): local, or moved from elsewhere
            metric = "bytes_read_local" if rec.get("local") else "bytes_moved"
            n = io_steps[metric]
            io_steps[metric] += 1
            out[("m", metric, n)] = MetricRecord(
                run_id=run_id, task_id=task_id, attempt=attempt, name=metric, step=n,
                value=float(rec.get("bytes", 0)), timestamp=0.0)
        elif t == "artifact":
            out[("a", rec["name"])] = LoggedArtifact(run_id=run_id, task_id=task_id,
                                                     attempt=attempt, name=rec["name"],
                                                     output=rec["ref"])
    return list(out.values())
