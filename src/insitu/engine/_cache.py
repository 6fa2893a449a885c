"""Cache hits keep what the original attempt logged."""

from __future__ import annotations

import dataclasses
from typing import Any

from insitu.store import CacheEntry, LoggedArtifact, MetricRecord, ParamRecord, Record, Store


def carry_over(store: Store, run_id: str, hits: list[tuple[str, CacheEntry]]
               ) -> dict[str, list[Record]]:
    """For each (task, entry) served from the cache in run ``run_id``: copies of what the
    entry's original task logged (metrics, params, artifacts of the attempt that succeeded),
    made the task's own. The caller stores them."""
    out: dict[str, list[Record]] = {}
    by_run: dict[str, list[tuple[str, CacheEntry]]] = {}
    for tid, e in hits:
        by_run.setdefault(e.run_id, []).append((tid, e))
    classes: tuple[type[Any], ...] = (MetricRecord, ParamRecord, LoggedArtifact)
    for origin, group in by_run.items():
        wanted = {e.task_id for _, e in group}
        done = {t.id: t.attempts for t in store.list_tasks(origin) if t.id in wanted}
        logged: dict[str, list[Any]] = {}
        for cls in classes:
            for r in store.select(cls, run_id=origin):
                # params have no attempt; metrics and artifacts: the last one's
                if r.task_id in wanted and getattr(r, "attempt", done.get(r.task_id)) \
                        == done.get(r.task_id):
                    logged.setdefault(r.task_id, []).append(r)
        for tid, e in group:
            out[tid] = [dataclasses.replace(r, run_id=run_id, task_id=tid)
                        for r in logged.get(e.task_id, [])]
    return out


__all__ = ["carry_over"]
