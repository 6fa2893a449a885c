"""Accepting a run: its records are written, with the audit record, before the API answers.

An accepted run is ``pending`` in the database and nothing else; the server's supervisor
picks pending runs up and gives each to an engine process (see ``_supervisor.py``). The
same function accepts runs submitted over the API and runs made by a schedule's tick.
"""

from __future__ import annotations

import time
from typing import Any

from insitu.engine import bind_params
from insitu.engine._engine import new_run_id
from insitu.server._access import Principal
from insitu.store import Record, RunRecord, Store, TaskRecord
from insitu.store._states import RunState, TaskState


def run_records(spec: dict[str, Any], values: dict[str, Any], *, project: str,
                backend: str, labels: dict[str, Any] | None = None,
                no_cache: bool = False, run_id: str | None = None,
                now: float | None = None, supervised: bool = True
                ) -> tuple[RunRecord, list[TaskRecord]]:
    """The records of a new pending run of ``spec`` with bound parameter ``values``
    (``supervised``: the server's supervisor gives it to an engine)."""
    run = RunRecord(id=run_id or new_run_id(), pipeline=spec["name"], state=RunState.PENDING,
                    spec=spec, params=values, created_at=time.time() if now is None else now,
                    no_cache=no_cache, backend=backend, labels=dict(labels or {}),
                    project=project, supervised=supervised)
    tasks = [TaskRecord(run_id=run.id, id=s["id"], step_id=s["id"], state=TaskState.PENDING,
                        seq=i) for i, s in enumerate(spec["steps"])]
    return run, tasks


def accept_run(store: Store, who: Principal | None, project: str, *, spec: dict[str, Any],
               params: dict[str, Any], backend: str, labels: dict[str, Any] | None = None,
               no_cache: bool = False, also: list[Record] | None = None,
               audit_client: str | None = None) -> RunRecord:
    """Check ``params`` against ``spec`` and write the pending run, its tasks, the audit
    record and ``also`` in one transaction; return the run. Raises the parameter errors
    :func:`insitu.engine.bind_params` raises (nothing is written then)."""
    from insitu.server._domain import audit

    values = bind_params(spec, params)
    run, tasks = run_records(spec, values, project=project, backend=backend, labels=labels,
                             no_cache=no_cache)
    store.put(run, *tasks, *(also or ()),
              audit(who, "run.submit", project=project, obj=f"run/{run.id}",
                    client=audit_client, detail={"pipeline": run.pipeline,
                                                 **({"labels": run.labels}
                                                    if run.labels else {})}))
    return run
