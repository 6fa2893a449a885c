"""Runs on the server: submitting one (with its code package), following it, and reading it
back as the same records the local commands show (built from the API's JSON)."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from insitu.client._http import Client
from insitu.client._package import Package, send_code
from insitu.errors import UserError
from insitu.store import AttemptRecord, RunRecord, TaskRecord
from insitu.store import _records as S

_RUN_FIELDS = {f.name for f in dataclasses.fields(RunRecord)}
_TASK_FIELDS = {f.name for f in dataclasses.fields(TaskRecord)}
_ATTEMPT_FIELDS = {f.name for f in dataclasses.fields(AttemptRecord)}
_ITEM = re.compile(r"^(.*)\[(\d+)\]$")


# -- records from the API's JSON ------------------------------------------------------------

def run_record(view: Mapping[str, Any]) -> RunRecord:
    """A run's API view as a RunRecord (its state is the state the server shows)."""
    d = {k: v for k, v in view.items() if k in _RUN_FIELDS}
    d.setdefault("spec", {})
    d.setdefault("params", {})
    d.setdefault("pipeline", "")
    d.setdefault("created_at", 0.0)
    d["engine_pid"] = None  # the server already said whether its engine is alive
    return RunRecord(**d)


def task_records(run_id: str, steps: list[Mapping[str, Any]]) -> list[TaskRecord]:
    """The tasks of a run from ``GET .../steps`` (or a run view's ``tasks``), in order; a
    map's size is its number of items."""
    items: dict[str, int] = {}
    out = []
    for i, s in enumerate(steps):
        d = {k: v for k, v in s.items() if k in _TASK_FIELDS}
        tid = str(s["id"])
        step = s.get("step") or s.get("step_id")
        m = _ITEM.match(tid)
        if d.get("map_index") is None and m and (step is None or m.group(1) == step):
            d["map_index"] = int(m.group(2))
        d.update(run_id=run_id, id=tid, step_id=str(step or (m.group(1) if m else tid)),
                 state=str(s.get("state")), seq=i, attempts=int(s.get("attempts") or 0))
        if d.get("map_index") is not None:
            items[d["step_id"]] = items.get(d["step_id"], 0) + 1
        out.append(d)
    return [TaskRecord(**{**d, "map_size": d.get("map_size") or
                          (items.get(d["id"]) if d.get("map_index") is None else None)})
            for d in out]


def attempt_records(run_id: str, task_id: str, rows: list[Mapping[str, Any]]
                    ) -> list[AttemptRecord]:
    return [AttemptRecord(**{**{k: v for k, v in r.items() if k in _ATTEMPT_FIELDS},
                             "run_id": run_id, "task_id": task_id}) for r in rows]


# -- reading ---------------------------------------------------------------------------------

def get_view(client: Client, run_id: str) -> dict[str, Any]:
    view: dict[str, Any] = client.get(client.in_project("runs", run_id))
    return view


def get_steps(client: Client, run_id: str) -> list[TaskRecord]:
    return task_records(run_id, client.get(client.in_project("runs", run_id, "steps")))


def get_attempts(client: Client, run_id: str, tasks: list[TaskRecord]) -> list[AttemptRecord]:
    out: list[AttemptRecord] = []
    for t in tasks:
        if t.attempts:
            rows = client.get(client.in_project("runs", run_id, "steps", t.id, "attempts"))
            out += attempt_records(run_id, t.id, rows)
    return out


def list_views(client: Client, *, pipeline: str | None = None, state: str | None = None,
               limit: int | None = 100) -> list[dict[str, Any]]:
    """Runs of the client's project, newest first, following the pages up to ``limit``."""
    out: list[dict[str, Any]] = []
    cursor = None
    while limit is None or len(out) < limit:
        page = client.get(client.in_project("runs"), pipeline=pipeline, state=state,
                          limit=min(500, (limit - len(out)) if limit else 500),
                          cursor=cursor)
        out += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return out


# -- submitting and following ----------------------------------------------------------------

def submit(client: Client, spec: dict[str, Any], params: dict[str, Any], *,
           no_cache: bool = False, labels: dict[str, Any] | None = None,
           modules: Mapping[str, ModuleType | None] | None = None
           ) -> tuple[dict[str, Any], Package | None]:
    """Package the spec's code, upload the package if the server lacks it, submit the run;
    return the run's view and the package."""
    sent, pkg = send_code(client, spec, modules=modules)
    view: dict[str, Any] = client.post(client.in_project("runs"), {
        "spec": sent, "params": params, "package": pkg.digest if pkg else None,
        "no_cache": no_cache, "labels": dict(labels or {})})
    return view, pkg


def wait(client: Client, run_id: str, *, poll_s: float = 0.5,
         on_update: Callable[[dict[str, Any]], None] | None = None,
         timeout_s: float | None = None) -> dict[str, Any]:
    """Poll the run until it has ended; ``on_update(view)`` sees each view (with its
    ``tasks``). Returns the final view."""
    start = time.monotonic()
    while True:
        view = get_view(client, run_id)
        if on_update is not None:
            on_update(view)
        if view["state"] in S.RUN_TERMINAL:
            return view
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise UserError(f"run {run_id} did not end within {timeout_s:g} s "
                            f"(it is {view['state']})",
                            hint=f"it goes on on the server: insitu show {run_id}")
        time.sleep(poll_s)


class RemoteRun:
    """A read-only view of a run on the server; ``refresh()`` reads it again."""

    def __init__(self, view: dict[str, Any], client: Client) -> None:
        self._view = view
        self._client = client

    @property
    def id(self) -> str:
        return str(self._view["id"])

    @property
    def pipeline(self) -> str:
        return str(self._view["pipeline"])

    @property
    def state(self) -> str:
        return str(self._view["state"])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._view.get("params") or {})

    @property
    def project(self) -> str:
        return str(self._view.get("project") or self._client.project)

    @property
    def server(self) -> str:
        return self._client.server

    @property
    def record(self) -> RunRecord:
        return run_record(self._view)

    def refresh(self) -> RemoteRun:
        self._view = get_view(self._client, self.id)
        return self

    def tasks(self) -> list[TaskRecord]:
        return get_steps(self._client, self.id)

    def attempts(self, step: str | None = None) -> list[AttemptRecord]:
        tasks = self.tasks()
        if step is not None:
            tasks = [t for t in tasks if t.id == step or t.step_id == step]
        return get_attempts(self._client, self.id, tasks)

    def task(self, step: str) -> TaskRecord:
        from insitu.errors import not_found

        tasks = {t.id: t for t in self.tasks()}
        if step not in tasks:
            raise not_found("step", step, tasks, where=f"run {self.id}")
        return tasks[step]

    def output(self, step: str) -> Any:
        """Outputs stay in the server's artifact store; this client cannot read them."""
        self.task(step)
        raise UserError(f"run {self.id} ran on the server {self.server}: its outputs are in "
                        "the server's artifact store, which this client does not read",
                        hint="read them where the server runs (insitu.get_run there), or "
                             "log what you need with insitu.log_metric / log_artifact")

    def logs(self, step: str, *, attempt: int | None = None, stream: str = "stdout") -> str:
        """The whole text a step's attempt wrote to ``stream`` (stdout or stderr)."""
        return "".join(read_log(self._client, self.id, step, attempt=attempt, stream=stream))

    def __repr__(self) -> str:
        return f"<RemoteRun {self.id} {self.pipeline} {self.state} on {self.server}>"


def read_log(client: Client, run_id: str, step: str, *, attempt: int | None = None,
             stream: str = "stdout", offset: int = 0, rank: int = 0) -> list[str]:
    """The chunks of a step's log (of one rank of a distributed step) from ``offset`` to
    its current end (``GET .../logs``)."""
    chunks: list[str] = []
    while True:
        page = client.get(client.in_project("runs", run_id, "logs"), step=step,
                          attempt=attempt, stream=stream, offset=offset, rank=rank or None)
        if page.get("text"):
            chunks.append(page["text"])
        nxt = int(page.get("next_offset", offset))
        if page.get("eof", True) or nxt <= offset:
            return chunks
        offset = nxt
