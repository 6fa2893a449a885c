"""Runs submitted to the server: accepting one (its code package and file refs checked),
resuming one, deleting one. Each change is written with its audit record; an accepted or
resumed run is ``pending`` and supervised, and the supervisor gives it to an engine."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from insitu.engine import engine_alive, shown_state
from insitu.engine._moves import move
from insitu.errors import Conflict, UserError
from insitu.server import _domain as D
from insitu.server import _packages
from insitu.server._access import Principal
from insitu.server._submit import accept_run
from insitu.spec import validate_spec
from insitu.store import Store
from insitu.store._states import INTERRUPTED, RUN_TERMINAL
from insitu.store._states import RunState as R


class PackageFiles:
    """The member paths of packages, by digest (a package never changes: cached)."""

    def __init__(self, store: Store, size: int = 256) -> None:
        self.store = store
        self.size = size
        self._known: dict[str, frozenset[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, digest: str) -> frozenset[str]:
        with self._lock:
            found = self._known.get(digest)
        if found is not None:
            return found
        files = frozenset(_packages.get_package(self.store, digest).files)
        with self._lock:
            if len(self._known) >= self.size:
                self._known.pop(next(iter(self._known)))
            self._known[digest] = files
        return files


class ValidSpecs:
    """Specs already found valid, by the SHA-256 of their canonical JSON: checking one
    against the schema costs ~20 ms, and the same pipeline is submitted again and again
    (sweeps over parameters, schedules)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._seen: dict[str, None] = {}
        self._lock = threading.Lock()

    def check(self, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            key = hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":"),
                                            allow_nan=False).encode()).hexdigest()
        except (TypeError, ValueError):
            key = None
        with self._lock:
            if key is not None and key in self._seen:
                return spec
        spec = validate_spec(spec, source="the submitted spec")
        if key is not None:
            with self._lock:
                if len(self._seen) >= self.size:
                    self._seen.pop(next(iter(self._seen)))
                self._seen[key] = None
        return spec


_valid = ValidSpecs()


def _relative(ref: dict[str, Any] | None) -> str | None:
    """The package-relative file a function ref names, if it names one."""
    if not ref or ref.get("pickled"):
        return None
    f = ref.get("file")
    if not isinstance(f, str) or not f or f.startswith("<") or os.path.isabs(f):
        return None
    return f


def check_refs(spec: dict[str, Any], package: str | None,
               files: frozenset[str] | None) -> None:
    """Every relative ``file`` of the spec's steps (and its source) is in the package."""
    refs = [(f"step '{s.get('id')}'", s.get("function")) for s in spec.get("steps", [])]
    refs.append(("the pipeline's source", spec.get("source")))
    for what, ref in refs:
        f = _relative(ref)
        if f is None:
            continue
        if _packages._bad_member(f):
            raise UserError(f"{what} names the file {f!r}, which is not a path inside a code "
                            "package", hint="submit with the insitu client, which writes "
                                            "paths relative to the pipeline's folder")
        if package is None or files is None:
            raise UserError(f"{what} names the file {f!r} relative to a code package, but "
                            "the submission has no package",
                            hint='upload the package (PUT .../packages/DIGEST) and give its '
                                 'digest as "package" (the insitu client does both)')
        if f not in files:
            shown = ", ".join(sorted(files)[:10]) + (" ..." if len(files) > 10 else "")
            raise UserError(f"{what} needs the file {f!r}, which is not in code package "
                            f"{package} (it holds: {shown or 'nothing'})",
                            hint="keep the step's code in a file under the pipeline's folder "
                                 "(the folder the client packages) and submit again")


def check_package(spec: dict[str, Any], package: str | None,
                  files_of: Callable[[str], frozenset[str]]) -> str | None:
    """The digest (``sha256:<hex>``) of the code package ``package`` names, or None without
    one, once the package is known to exist and to hold every package-relative file the
    spec names; a run submission and a schedule are checked alike."""
    digest = _packages.parse_digest(package) if package is not None else None
    files = files_of(digest) if digest is not None else None
    check_refs(spec, digest, files)
    return digest


def check_priority(labels: dict[str, Any]) -> None:
    """A run's ``priority`` label orders its steps waiting for the project's quota (higher
    first): a whole number."""
    p = labels.get("priority")
    if p is not None and (isinstance(p, bool) or not isinstance(p, int)
                          or not -1_000_000 <= p <= 1_000_000):
        raise UserError(f"the run's priority must be a whole number from -1000000 to "
                        f"1000000, got {p!r}",
                        hint='send "labels": {"priority": 10} (higher runs first; default 0)')


def submit(store: Store, who: Principal, project: str, *, spec: dict[str, Any],
           params: dict[str, Any], package: str | None, no_cache: bool,
           labels: dict[str, Any], backend: str, client: str | None,
           files_of: Callable[[str], frozenset[str]]) -> dict[str, Any]:
    """Accept a run (written, pending, before this returns) and return its view."""
    D._project(store, project)
    check_priority(labels)
    spec = _valid.check(spec)
    digest = check_package(spec, package, files_of)
    if digest is not None:
        labels = {**labels, "package": digest}
    run = accept_run(store, who, project, spec=spec, params=params, backend=backend,
                     labels=labels, no_cache=no_cache, audit_client=client)
    return {**D.run_view(run), "tasks": [
        {"id": s["id"], "step": s["id"], "state": "pending", "attempts": 0, "node": None,
         "started_at": None, "ended_at": None, "error": None} for s in spec["steps"]]}


def rerun(store: Store, who: Principal, project: str, run_id: str, *,
          params: dict[str, Any], backend: str, client: str | None,
          files_of: Callable[[str], frozenset[str]]) -> dict[str, Any]:
    """Accept a new run of run ``run_id``'s pipeline and code package, its parameters
    those of that run with ``params`` over them (the pipeline traced again in a child
    process when a value changes: see ``_retrace.py``); labelled ``rerun_of``. The checks
    and the writing are :func:`submit`'s: a bad parameter is refused (nothing written)
    naming it."""
    from insitu.server import _retrace

    run = D._run(store, project, run_id)
    labels: dict[str, Any] = {"rerun_of": run.id}
    if "priority" in (run.labels or {}):
        labels["priority"] = run.labels["priority"]
    package = (run.labels or {}).get("package")
    spec = run.spec
    values = {**run.params, **params}
    if _retrace.changed(spec, params):  # its steps were built from the old values
        spec = _retrace.retrace(store, spec, values,
                                _packages.parse_digest(package) if package else None)
    return submit(store, who, project, spec=spec, params=values, package=package,
                  no_cache=run.no_cache, labels=labels, backend=backend, client=client,
                  files_of=files_of)


def resume(store: Store, who: Principal, project: str, run_id: str,
           client: str | None) -> dict[str, Any]:
    """Make a failed, cancelled or interrupted run pending again, for the supervisor."""
    run = D._run(store, project, run_id)
    shown = shown_state(run)
    if run.state == R.SUCCEEDED:
        raise Conflict(f"run {run.id} has succeeded; there is nothing to resume",
                       hint="submit the pipeline again to run it anew")
    if shown != INTERRUPTED and run.state not in RUN_TERMINAL:
        raise Conflict(f"run {run.id} is still {shown}",
                       hint="wait for it to end, or cancel it first")
    if run.state == R.RUNNING and run.supervised and engine_alive(run):
        raise Conflict(f"run {run.id} is still running", hint="wait for it to end")
    again = move(run, R.PENDING, supervised=True, engine_pid=None, engine_host=None,
                 cancel_requested=False, ended_at=None)
    store.put(again, D.audit(who, "run.resume", project=project, obj=f"run/{run.id}",
                             client=client, detail={"from": shown}))
    return D.get_run(store, project, run.id)


def delete(store: Store, who: Principal, project: str, run_id: str,
           client: str | None) -> None:
    run = D._run(store, project, run_id)
    if run.state not in RUN_TERMINAL:
        raise Conflict(f"run {run.id} is still {shown_state(run)}",
                       hint=f"cancel it first (POST /api/v1/projects/{project}/runs/"
                            f"{run.id}/cancel), then delete it")
    store.delete_run(run.id)
    store.put(D.audit(who, "run.delete", project=project, obj=f"run/{run.id}", client=client,
                      detail={"pipeline": run.pipeline}))


