"""A run's step graph as the API shows it: each step of the run's spec with the steps it
takes inputs from (its edges), what it asks for, and its tasks counted by state (a map's
items are counted, never listed, so a 1,000-item map is one node with counts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from insitu.engine import shown_state, shown_task_state
from insitu.server._domain import _run
from insitu.store import Store


def _outputs(ref: Any, into: set[str]) -> None:
    """The steps whose outputs a spec reference (or a condition) reads."""
    if isinstance(ref, dict):
        if isinstance(ref.get("output"), str):
            into.add(ref["output"])
        for v in ref.values():
            _outputs(v, into)
    elif isinstance(ref, list):
        for v in ref:
            _outputs(v, into)


def graph(store: Store, project: str, run_id: str) -> dict[str, Any]:
    """The run's steps with their edges and task counts by state, and the run's state."""
    run = _run(store, project, run_id)
    state = shown_state(run)
    counts: dict[str, Counter[str]] = {}
    items: Counter[str] = Counter()
    for t in store.list_tasks(run.id):
        if t.map_index is not None:
            items[t.step_id] += 1
        elif t.map_size is not None:
            continue  # a map's parent: its items say how it goes
        counts.setdefault(t.step_id, Counter())[shown_task_state(state, t.state)] += 1
    steps = []
    ids = {s["id"] for s in run.spec.get("steps", [])}
    for s in run.spec.get("steps", []):
        deps: set[str] = set()
        _outputs(s.get("args"), deps)
        _outputs(s.get("map"), deps)
        _outputs(s.get("when"), deps)
        steps.append({"id": s["id"], "name": s.get("name", s["id"]),
                      "after": sorted(d for d in deps if d in ids and d != s["id"]),
                      "map": s.get("map") is not None, "items": items.get(s["id"], 0),
                      "tune": s.get("tune") is not None, "cache": bool(s.get("cache")),
                      "exit_handler": bool(s.get("exit_handler")),
                      "resources": s.get("resources") or {},
                      "retries": (s.get("retries") or {}).get("max", 0),
                      "counts": dict(counts.get(s["id"], {}))})
    return {"run_id": run.id, "state": state, "steps": steps}
