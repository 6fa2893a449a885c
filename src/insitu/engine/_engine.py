"""The engine: submits runs, checks their requests, and drives each with a :class:`RunLoop`.

See ``_loop.py`` for the rules a run follows, ``_rules.py`` for the decisions (retries,
resume), ``_moves.py`` for the allowed state changes and ``_outcome.py`` for how an
attempt's end is classified.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from insitu._config import Config, load_config
from insitu._units import format_bytes, parse_cpu, parse_gpu, parse_memory
from insitu.artifacts import ArtifactStore
from insitu.engine._loop import RunLoop
from insitu.engine._params import bind_params
from insitu.engine._placement import Placement, Placer, Request, describe, with_constraints
from insitu.engine._signals import stop_signals
from insitu.errors import ResourceError, UserError
from insitu.executor import Executor
from insitu.store import RunRecord, Store, TaskRecord
from insitu.store import _records as S
from insitu.train._context import check_torch

Progress = Callable[[RunLoop], None]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def resolve_resources(step: dict[str, Any], params: dict[str, Any]) -> Request:
    """The step's resource request with parameter refs replaced by their (parsed) values."""
    res = step["resources"]

    def val(key: str) -> Any:
        v = res.get(key)
        if isinstance(v, dict):
            v = params[v["param"]]
        return v

    where = f"step '{step['id']}'"
    try:
        cpu = parse_cpu(val("cpu") or 1.0)
        mem_v = val("memory")
        memory = parse_memory(mem_v) if mem_v else 2 * 1024**3
        gpu = parse_gpu(val("gpu") or 0)
    except UserError as e:
        raise ResourceError(f"{where}: {e.message}", hint=e.hint) from None
    gt = val("gpu_type")
    return with_constraints(
        Request(cpu=cpu, memory=memory, gpu=gpu, gpu_type=gt if isinstance(gt, str) else None,
                restartable=step["retries"]["max"] > 0), step)


def gang_impossible(placer: Placer, req: Request, workers: int) -> str | None:
    """Why no empty cluster could hold ``workers`` copies of ``req`` as one gang."""
    if isinstance(Placer(placer.infos).place_gang(req, workers), Placement):
        return None
    most = placer.largest_gang(req, workers)
    return (f"a gang of {workers} workers never fits this cluster; the largest gang of "
            f"this request that fits is {most} worker{'s' if most != 1 else ''} "
            f"(use workers={most}, or ask less per worker)")


def describe_request(r: Request) -> str:
    s = f"{r.cpu:g} CPU, {format_bytes(r.memory)} memory"
    if r.gpu:
        s += f", {r.gpu:g} GPU" + (f" of type {r.gpu_type}" if r.gpu_type else "")
    return s


class Engine:
    """Submits and runs pipelines against one store and one executor."""

    def __init__(self, store: Store, executor: Executor, *, config: Config | None = None,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.executor = executor
        self.config = config or load_config()
        self.artifacts = ArtifactStore(self.config.artifacts_url)
        self.progress = progress

    def submit(self, spec: dict[str, Any], params: dict[str, Any], *, no_cache: bool = False,
               from_text: bool = False) -> RunRecord:
        """Check ``params`` and resources against ``spec``, then record a pending run.

        ``spec`` comes from ``compile`` or from :func:`insitu.spec.load_spec`, which
        validate it against the schema.
        """
        values = bind_params(spec, params, from_text=from_text)
        self.check_resources(spec, values)
        run = RunRecord(id=new_run_id(), pipeline=spec["name"], state=S.RUN_PENDING, spec=spec,
                        params=values, created_at=time.time(), no_cache=no_cache,
                        backend=self.executor.name)
        tasks = [TaskRecord(run_id=run.id, id=s["id"], step_id=s["id"], state=S.TASK_PENDING,
                            seq=i) for i, s in enumerate(spec["steps"])]
        self.store.put(run, *tasks)
        return run

    def check_resources(self, spec: dict[str, Any], params: dict[str, Any]) -> None:
        """Refuse, before anything runs, requests that are malformed or that no node could
        ever satisfy; every such step is listed, then what the nodes have. A distributed
        step needs PyTorch here and a cluster that can hold its whole gang."""
        if any(s.get("train") for s in spec["steps"]):
            check_torch()
            if self.executor.name != "local":
                raise ResourceError(
                    f"pipeline '{spec['name']}' has distributed steps (workers > 1), which "
                    f"run on the local executor only for now, not on {self.executor.name}",
                    hint="run it without a cluster (the local executor), or with workers=1")
        nodes = self.executor.nodes()
        placer = Placer(nodes)
        problems: list[str] = []
        hints: list[str] = []
        too_big = False
        for s in spec["steps"]:
            try:
                req = resolve_resources(s, params)
            except ResourceError as e:
                problems.append(e.message)
                hints.append(e.hint or "")
                continue
            why = placer.impossible(req)
            workers = int((s.get("train") or {}).get("workers") or 1)
            if not why and workers > 1:
                why = gang_impossible(placer, req, workers)
            if why:
                too_big = True
                loc = s.get("location") or {}
                at = f" ({os.path.basename(loc['file'])}:{loc.get('line')})" \
                    if loc.get("file") else ""
                problems.append(f"step '{s['id']}'{at} asks for {describe_request(req)}: {why}")
        if not problems:
            return
        if too_big:
            problems.append("available: " + "; ".join(describe(n) for n in nodes))
            hints.append("lower the step's request (@insitu.step(...) or .options(...)), or "
                         "run on a backend with bigger nodes")
        raise ResourceError(
            f"cannot run pipeline '{spec['name']}':\n" + "\n".join(f"  - {p}" for p in problems),
            hint="; ".join(dict.fromkeys(h for h in hints if h)))

    def execute(self, run_id: str, *, reopen: bool = True) -> RunRecord:
        """Run (or resume) a run until it ends; return its final record.

        ``reopen=False``: a run that has ended (say, cancelled before this engine took it)
        is returned as it is instead of being resumed.

        On the main thread, Ctrl-C and SIGTERM cancel the run: the handler only sets a
        flag, which the loop reads between two steps of its own (never mid-write)."""
        run = self.store.get_run(run_id)
        with stop_signals() as stop:
            loop = RunLoop(self, run, stop=stop, resources=resolve_resources, reopen=reopen)
            return loop.run()


__all__ = ["Engine", "RunLoop", "describe_request", "new_run_id", "resolve_resources"]
