"""The Python API over runs: run a pipeline, look up runs, read outputs."""

from __future__ import annotations

from typing import Any

from insitu._config import Config, load_config
from insitu.client import RemoteRun, connect
from insitu.errors import StepFailed, UserError, not_found
from insitu.store import (
    AttemptRecord,
    DataReadRecord,
    RunRecord,
    Store,
    TaskRecord,
    open_store,
)
from insitu.store import _records as S


class Run:
    """A read-only view of one run. ``refresh()`` re-reads it from the store."""

    def __init__(self, record: RunRecord, store: Store, config: Config) -> None:
        self._rec = record
        self._store = store
        self._config = config

    @property
    def id(self) -> str:
        return self._rec.id

    @property
    def pipeline(self) -> str:
        return self._rec.pipeline

    @property
    def state(self) -> str:
        """As every command shows it: a run whose engine is gone is ``interrupted``."""
        from insitu.engine import shown_state

        return shown_state(self._rec)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._rec.params)

    @property
    def record(self) -> RunRecord:
        return self._rec

    def refresh(self) -> Run:
        self._rec = self._store.get_run(self._rec.id)
        return self

    def tasks(self) -> list[TaskRecord]:
        return self._store.list_tasks(self.id)

    def attempts(self, step: str | None = None) -> list[AttemptRecord]:
        return self._store.list_attempts(self.id, step)

    def data_reads(self, step: str | None = None) -> list[DataReadRecord]:
        """Every shard read by the run's attempts (or one step's): bytes, node, local or
        moved and from where (see ``insitu show``)."""
        reads = self._store.select(DataReadRecord, run_id=self.id)
        if step is None:
            return reads
        steps = {t.id: t.step_id for t in self.tasks()}
        if step not in steps.values():
            raise not_found("step", step, set(steps.values()), where=f"run {self.id}")
        return [r for r in reads if steps.get(r.task_id) == step]

    def task(self, step: str) -> TaskRecord:
        tasks = {t.id: t for t in self.tasks()}
        if step not in tasks:
            raise not_found("step", step, tasks, where=f"run {self.id}")
        return tasks[step]

    def output(self, step: str) -> Any:
        """The value a step returned (a list for a ``map``); files come back as ``Path``."""
        from insitu.artifacts import ArtifactStore, load

        t = self.task(step)
        if t.state not in S.TASK_DONE or t.output is None:
            raise UserError(f"step {step!r} of run {self.id} is {t.state} and has no output",
                            hint=f"see `insitu show {self.id}`")
        return load(t.output, ArtifactStore(self._config.artifacts_url),
                    materialize_dir=str(self._config.home / "materialized"))

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.pipeline} {self.state}>"


def first_failure(tasks: list[TaskRecord]) -> TaskRecord | None:
    """The failed task that caused a run's failure (a map's failing item, not the map)."""
    failed = [t for t in tasks if t.state == S.TASK_FAILED
              and (t.error or {}).get("kind") != "item_failed"]
    return min(failed, key=lambda t: t.ended_at or 0.0) if failed else None


def _open(home: str | None) -> tuple[Store, Config]:
    cfg = load_config(home)
    return open_store(cfg.db_url), cfg


def get_run(run_id: str, *, home: str | None = None) -> Run | RemoteRun:
    """The run with this id (or unique id prefix); on the server when one is configured
    (``INSITU_SERVER``, or ``insitu login``)."""
    client = connect(home)
    if client is not None:
        from insitu.client._runs import get_view

        return RemoteRun(get_view(client, run_id), client)
    store, cfg = _open(home)
    return Run(store.get_run(run_id), store, cfg)


def list_runs(*, pipeline: str | None = None, state: str | None = None,
              limit: int | None = 100, home: str | None = None) -> list[Run] | list[RemoteRun]:
    """Runs, newest first (of the server's project when a server is configured)."""
    client = connect(home)
    if client is not None:
        from insitu.client._runs import list_views

        return [RemoteRun(v, client) for v in list_views(client, pipeline=pipeline,
                                                          state=state, limit=limit)]
    store, cfg = _open(home)
    return [Run(r, store, cfg) for r in store.list_runs(pipeline=pipeline, state=state,
                                                        limit=limit)]


def run(pipeline: Any, params: dict[str, Any] | None = None, *, no_cache: bool = False,
        home: str | None = None, raise_on_failure: bool = True, **kwargs: Any
        ) -> Run | RemoteRun:
    """Run a pipeline here and now (local executor) and return the finished run; with a
    server configured (``INSITU_SERVER``, or ``insitu login``) it is submitted there, with
    its code, and this waits until it has ended there.

    ``pipeline`` is a ``@pipeline`` function or a ``"FILE[:PIPELINE]"`` string;
    parameters come as ``params={...}`` or keyword arguments, and the pipeline body
    sees their values (``range(n)``, ``if mode == "fast":``). Steps defined in a
    notebook cell or an interactive session travel by value to the workers. If a step fails, raises
    :class:`~insitu.errors.StepFailed` naming it (``raise_on_failure=False`` returns
    the failed run instead).
    """
    from insitu.engine import Engine
    from insitu.executor import LocalExecutor
    from insitu.sdk import Pipeline, compile_pipeline, load_pipeline

    p = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
    if not isinstance(p, Pipeline):
        raise UserError(f"insitu.run needs a @pipeline function, got {p!r}")
    values = {**(params or {}), **kwargs}
    spec = compile_pipeline(p, values, require=True)  # the body sees these values
    client = connect(home)
    if client is not None:
        return _run_remote(client, spec, values, no_cache=no_cache,
                           raise_on_failure=raise_on_failure)
    store, cfg = _open(home)
    executor = LocalExecutor()
    try:
        engine = Engine(store, executor, config=cfg)
        rec = engine.submit(spec, values, no_cache=no_cache)
        rec = engine.execute(rec.id)
    finally:
        executor.close()
    result = Run(rec, store, cfg)
    if raise_on_failure and rec.state == S.RUN_FAILED:
        first = first_failure(result.tasks())
        err = (first.error or {}) if first else {}
        raise StepFailed(
            f"run {rec.id} failed: step '{first.id if first else '?'}': "
            f"{err.get('type', '')} {err.get('message', '')}".strip(),
            step=first.id if first else "?", error=err,
            hint=f"see `insitu explain {rec.id}`")
    return result


def _run_remote(client: Any, spec: dict[str, Any], values: dict[str, Any], *, no_cache: bool,
                raise_on_failure: bool) -> RemoteRun:
    """Submit to the server, wait for the end, raise like a local run on failure."""
    from insitu.client import submit, wait
    from insitu.client._runs import task_records

    view, _ = submit(client, spec, values, no_cache=no_cache)
    view = wait(client, view["id"])
    result = RemoteRun(view, client)
    if raise_on_failure and view["state"] == S.RUN_FAILED:
        first = first_failure(task_records(view["id"], view.get("tasks") or []))
        err = (first.error or {}) if first else {}
        raise StepFailed(
            f"run {view['id']} failed on {client.server}: step "
            f"'{first.id if first else '?'}': "
            f"{err.get('type', '')} {err.get('message', '')}".strip(),
            step=first.id if first else "?", error=err,
            hint=f"see `insitu explain {view['id']}`")
    return result
