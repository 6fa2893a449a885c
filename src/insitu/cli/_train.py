"""What the CLI shows of distributed steps: each rank of a gang's attempts, the run's
checkpoints, and the check of ``insitu logs --rank``."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from insitu._units import format_bytes
from insitu.errors import NotFound, UserError
from insitu.store import AttemptRecord, Store, TaskRecord


def gang_ranks(a: AttemptRecord) -> list[dict[str, Any]]:
    """How each rank of a gang attempt ended ([] for a plain attempt)."""
    return list((a.placement or {}).get("ranks") or [])


def check_rank(store: Store, tasks: list[TaskRecord], rank: int, step: str | None) -> None:
    """``insitu logs --rank`` names a step that ran as a gang with that many ranks."""
    if step is None:
        raise UserError("--rank reads one rank of one distributed step: name the step",
                        hint="insitu logs RUN STEP --rank N")
    for t in tasks:
        world = 0
        for a in store.list_attempts(t.run_id, t.id):
            world = max(world, len(gang_ranks(a)))
        if world == 0:
            raise UserError(f"step {t.id} is not a distributed step: it has no ranks",
                            hint=f"insitu logs {t.run_id} {t.id}")
        if rank >= world:
            raise NotFound(f"step {t.id} ran {world} ranks (0 to {world - 1}), not rank {rank}",
                           hint=f"insitu logs {t.run_id} {t.id} --rank {world - 1}")


def ranks_table(attempts: list[AttemptRecord]) -> Table | None:
    """Each rank of every gang attempt of a run, oldest attempt first."""
    rows = [(a, r) for a in attempts for r in gang_ranks(a) if "state" in r]
    if not rows:
        return None
    t = Table(title="ranks of distributed steps", title_justify="left")
    for col in ("step", "attempt", "rank", "node", "state", "exit", "peak memory",
                "memory limit", "note"):
        t.add_column(col, justify="right" if col in ("attempt", "rank") else "left")
    for a, r in rows:
        err = r.get("error") or {}
        exit_ = f"signal {r['signal']}" if r.get("signal") else str(r.get("exit_code"))
        note = ""
        if r.get("oom"):
            note = "out of memory"
        elif err:
            where = f" at {err['file']}:{err['line']}" if err.get("file") else ""
            note = f"{err.get('type') or err.get('kind')}{where}: {err.get('message', '')}"
        failed_rank = (a.error or {}).get("rank")
        if r["state"] in ("stopped", "failed") and failed_rank is not None \
                and r["rank"] != failed_rank:
            note = f"stopped because rank {failed_rank} failed" + (f" ({note})" if note else "")
        t.add_row(a.task_id, str(a.number), str(r["rank"]), str(r.get("node")), r["state"],
                  exit_, format_bytes(r.get("peak_memory")),
                  format_bytes(r.get("memory_limit")), note[:120])
    return t


def checkpoints_table(artifacts_url: str, run_id: str) -> Table | None:
    """The checkpoints kept for a run, per step."""
    from insitu.train import list_checkpoints

    found = list_checkpoints(artifacts_url, run_id)
    if not found:
        return None
    t = Table(title="checkpoints", title_justify="left")
    for col in ("step", "training step", "digest", "size", "attempt", "saved"):
        t.add_column(col)
    for task, entries in sorted(found.items()):
        for e in entries:
            t.add_row(task, str(e["step"]), e["digest"][:12], format_bytes(e.get("size")),
                      str(e.get("attempt")),
                      time.strftime("%H:%M:%S", time.localtime(e.get("saved_at", 0))))
    return t
