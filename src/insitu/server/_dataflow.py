"""What a run read, as the API shows it: per step the bytes its attempts read on the node
that held them (local) and the bytes moved to them, with each link (source node -> the
node that read) and its bytes, from the engine's ``data_reads`` records. Every attempt's
reads count: a failed attempt's moved bytes crossed the network too."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from insitu.server._domain import _run
from insitu.store import DataReadRecord, Store


def _sum(reads: list[DataReadRecord]) -> dict[str, Any]:
    local = sum(r.bytes for r in reads if r.local)
    moved = [r for r in reads if not r.local]
    return {"reads": len(reads), "bytes": sum(r.bytes for r in reads), "local_bytes": local,
            "moved_bytes": sum(r.bytes for r in moved),
            "moving_seconds": round(sum(r.seconds for r in moved), 6)}


def run_data(store: Store, project: str, run_id: str) -> dict[str, Any]:
    """The run's reads in total and per step, each step's links by bytes, largest first."""
    run = _run(store, project, run_id)
    reads = store.select(DataReadRecord, run_id=run.id)
    step_of = {t.id: t.step_id for t in store.list_tasks(run.id)} if reads else {}
    per: dict[str, list[DataReadRecord]] = defaultdict(list)
    for r in reads:
        per[step_of.get(r.task_id, r.task_id)].append(r)
    steps = []
    for step, rs in sorted(per.items()):
        links: dict[tuple[str, str, bool, str], list[DataReadRecord]] = defaultdict(list)
        for r in rs:
            links[(r.source, r.node, r.local, r.via)].append(r)
        steps.append({"step": step, **_sum(rs), "links": sorted(
            ({"source": s, "node": n, "local": loc, "via": via, **_sum(lr)}
             for (s, n, loc, via), lr in links.items()),
            key=lambda x: (-x["bytes"], x["source"], x["node"]))})
    return {"run": run.id, **_sum(reads), "steps": steps}
