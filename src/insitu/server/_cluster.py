"""The cluster as the API shows it: nodes with what is allocated on each, the attempts
running now (allocations), and the work that waits with the scheduler's reasons.

Nodes are this server's machine (its inventory, as the local backend places on it) and every
node a running attempt was placed on. Totals per node count every project's work, so
capacity adds up; which run holds what is shown only for projects the caller may see.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from insitu.engine import shown_state
from insitu.server._access import Principal
from insitu.store import RunRecord, Store
from insitu.store import _records as S


def _live_runs(store: Store) -> list[RunRecord]:
    runs = [*store.list_runs(state=S.RUN_RUNNING), *store.list_runs(state=S.RUN_PENDING)]
    return [r for r in runs if shown_state(r) != S.INTERRUPTED]


def _this_node() -> dict[str, Any] | None:
    try:
        from insitu.executor._local import local_node

        n = local_node()
    except Exception:  # noqa: BLE001 - a bad INSITU_NODE_* setting: no inventory to show
        return None
    return {"name": n.name, "cpu": n.cpu, "memory": n.memory,
            "gpus": [{"index": g.index, "model": g.model, "memory": g.memory} for g in n.gpus],
            "labels": dict(n.labels), "source": "server"}


def cluster(store: Store, who: Principal) -> dict[str, Any]:
    """Nodes (capacity, allocated, free), allocations and pending work."""
    now = time.time()
    nodes: dict[str, dict[str, Any]] = {}
    here = _this_node()
    if here is not None:
        nodes[here["name"]] = here
    used: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    allocations: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for run in _live_runs(store):
        visible = who.role_in(run.project) is not None
        tasks = {t.id: t for t in store.list_tasks(run.id)}
        for a in store.list_attempts(run.id):
            if a.state != S.ATT_RUNNING:
                continue
            p = a.placement or {}
            node = str(p.get("node") or a.node or "?")
            gpus = len(p.get("gpu_ids") or []) or 0
            u = used[node]
            u["cpu"] += float(p.get("cpu") or 0)
            u["memory"] += float(p.get("memory") or 0)
            u["gpus"] += gpus
            u["gpu_share"] += float(p.get("gpu_share") or 0)
            u["attempts"] += 1
            nodes.setdefault(node, {"name": node, "cpu": None, "memory": None, "gpus": [],
                                    "labels": {}, "source": "attempts"})
            if visible:
                allocations.append({"project": run.project, "run_id": run.id,
                                    "task_id": a.task_id, "attempt": a.number, "node": node,
                                    "cpu": p.get("cpu"), "memory": p.get("memory"),
                                    "gpu_ids": p.get("gpu_ids") or [],
                                    "gpu_share": p.get("gpu_share"),
                                    "started_at": a.started_at,
                                    "running_s": now - a.started_at if a.started_at else None})
        for t in tasks.values():
            if t.state != S.TASK_PENDING or t.ready_at is None:
                continue  # waiting for its inputs is not the cluster's doing
            if not visible:
                continue
            res = t.resources or _asked(run, t.step_id)
            pending.append({"project": run.project, "run_id": run.id, "task_id": t.id,
                            "step": t.step_id, "reason": t.pending_reason,
                            "waiting_s": now - t.ready_at, "cpu": res.get("cpu"),
                            "memory": res.get("memory"), "gpu": res.get("gpu"),
                            "gpu_type": res.get("gpu_type"), "priority": res.get("priority")})
    _endpoints(store, who, used, allocations, nodes)
    out_nodes = []
    for name, n in sorted(nodes.items()):
        u = used.get(name, {})
        alloc = {"cpu": u.get("cpu", 0.0), "memory": int(u.get("memory", 0)),
                 "gpus": int(u.get("gpus", 0)), "gpu_share": u.get("gpu_share", 0.0),
                 "attempts": int(u.get("attempts", 0))}
        free = {"cpu": None if n["cpu"] is None else n["cpu"] - alloc["cpu"],
                "memory": None if n["memory"] is None else n["memory"] - alloc["memory"],
                "gpus": None if n["cpu"] is None else len(n["gpus"]) - alloc["gpus"]}
        out_nodes.append({**n, "allocated": alloc, "free": free})
    pending.sort(key=lambda p: -p["waiting_s"])
    return {"nodes": out_nodes, "allocations": allocations, "pending": pending}


def _asked(run: Any, step_id: str) -> dict[str, Any]:
    """What a step that has not run yet asks for (per attempt), from its run's spec."""
    import dataclasses

    from insitu.engine import resolve_resources
    from insitu.errors import InsituError

    step = next((s for s in run.spec.get("steps", []) if s.get("id") == step_id), None)
    if step is None:
        return {}
    try:
        return dataclasses.asdict(resolve_resources(step, run.params))
    except (InsituError, KeyError, TypeError, ValueError):
        return {}


def _endpoints(store: Store, who: Principal, used: dict[str, dict[str, float]],
               allocations: list[dict[str, Any]], nodes: dict[str, dict[str, Any]]) -> None:
    """What placed endpoints reserve (every project's counts; shown for those the caller
    sees), as allocations with ``endpoint`` instead of a run."""
    from insitu.store import EndpointStatusRecord

    for s in store.select(EndpointStatusRecord):
        p = s.placement or {}
        if not p or s.state not in ("starting", "running"):
            continue
        node = str(p.get("node") or s.node or "?")
        u = used[node]
        u["cpu"] += float(p.get("cpu") or 0)
        u["memory"] += float(p.get("memory") or 0)
        u["gpus"] += len(p.get("gpus") or [])
        u["gpu_share"] += float(p.get("gpu_milli") or 0) / 1000
        nodes.setdefault(node, {"name": node, "cpu": None, "memory": None, "gpus": [],
                                "labels": {}, "source": "endpoints"})
        if who.role_in(s.project) is not None:
            allocations.append({"project": s.project, "endpoint": s.name, "node": node,
                                "cpu": p.get("cpu"), "memory": p.get("memory"),
                                "gpu_ids": p.get("gpus") or [],
                                "gpu_share": float(p.get("gpu_milli") or 0) / 1000,
                                "started_at": s.started_at, "pid": s.pid})
