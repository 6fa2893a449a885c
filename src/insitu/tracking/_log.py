"""The step-side half of tracking: append records to the attempt's journal."""

from __future__ import annotations

import json
import math
import os
import pathlib
import time
from typing import IO, Any

from insitu.errors import UserError
from insitu.tracking._capture import Logged, collector


class TrialPruned(BaseException):  # noqa: N818 - a signal, like optuna.TrialPruned
    """Raised by :func:`report` when the tuner stops an unpromising trial early.

    A ``BaseException`` so that a step's ``except Exception`` does not swallow it.
    """


class _Context:
    def __init__(self, path: str, artifacts_url: str, trial: dict[str, Any] | None) -> None:
        self.path = path
        self.artifacts_url = artifacts_url
        self.trial = trial
        self.file: IO[str] | None = None
        self.steps: dict[str, int] = {}
        self.reports: dict[int, float] = {}
        # a rank of a distributed step: every line says which (all ranks share the journal)
        rank = os.environ.get("INSITU_RANK")
        self.rank = int(rank) if rank else None

    def write(self, rec: dict[str, Any]) -> None:
        if self.rank is not None:
            rec = {**rec, "rank": self.rank}
        if self.file is None:
            self.file = open(self.path, "a", buffering=1)  # noqa: SIM115 - kept for the attempt
        self.file.write(json.dumps(rec) + "\n")


_ctx: _Context | None = None


def begin(path: str, artifacts_url: str, trial: dict[str, Any] | None = None) -> None:
    """Called by the worker before the step runs."""
    global _ctx
    _ctx = _Context(path, artifacts_url, trial)


def _context(what: str) -> _Context | Logged:
    """The running attempt's journal; outside a run, the in-memory record
    (:func:`insitu.testing.capture`)."""
    if _ctx is not None:
        return _ctx
    from insitu.sdk._trace import current_trace

    if current_trace() is not None:
        raise UserError(f"insitu.{what} was called while the pipeline is being defined",
                        hint="call it inside a function decorated with @insitu.step; the "
                             "pipeline body only wires steps together")
    return collector()


def _number(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"metric {name!r} must be a number, got {value!r}",
                        hint="log numbers; log text with insitu.log_params") from None
    if math.isnan(v) or math.isinf(v):
        raise UserError(f"metric {name!r} is {v}", hint="log finite numbers")
    return v


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Append ``value`` to the series ``name`` (``step`` defaults to 0, 1, 2, ...)."""
    ctx = _context("log_metric")
    if step is None:
        step = ctx.steps.get(name, -1) + 1
    ctx.steps[name] = max(int(step), ctx.steps.get(name, -1))
    ctx.write({"t": "metric", "name": str(name), "value": _number(name, value),
               "step": int(step), "ts": time.time()})


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Log several metrics at the same step."""
    for k, v in metrics.items():
        log_metric(k, v, step)


def log_params(params: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Record parameters (JSON values) of this step, e.g. ``log_params(lr=0.1, depth=4)``."""
    ctx = _context("log_params")
    for k, v in {**(params or {}), **kwargs}.items():
        try:
            json.dumps(v)
        except TypeError:
            v = repr(v)
        ctx.write({"t": "param", "name": str(k), "value": v})


def log_artifact(path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
    """Store a file or directory with the run (by content hash); returns its output ref."""
    from insitu.artifacts import dump
    from insitu.artifacts._store import artifact_store

    ctx = _context("log_artifact")
    p = pathlib.Path(path)
    if not p.exists():
        raise UserError(f"insitu.log_artifact: {p} does not exist",
                        hint="pass the path of a file or directory the step wrote")
    if isinstance(ctx, Logged):  # outside a run: remember the path, store nothing
        ctx.write({"t": "artifact", "name": name or p.name, "path": str(p.resolve())})
        return {"path": str(p.resolve())}
    ref = dump(p, artifact_store(ctx.artifacts_url), step="log_artifact")
    ctx.write({"t": "artifact", "name": name or p.name, "ref": ref})
    return ref


def report(value: float, step: int) -> None:
    """Report an intermediate objective value of a tuning trial at ``step``.

    Raises :class:`TrialPruned` when the tuner's early stopping decides the trial is
    not promising; outside a trial it only logs the value as the metric ``objective``.
    """
    ctx = _context("report")
    v = _number("objective", value)
    log_metric("objective", v, step)
    if isinstance(ctx, Logged):
        if ctx.should_prune(int(step), v):
            raise TrialPruned(f"pruned at step {step} (value {v:g}; capture(prune_at=...))")
        return
    if ctx.trial is None:
        return
    from insitu.tune._study import should_prune

    ctx.reports[int(step)] = v
    if should_prune(ctx.trial, ctx.reports):
        ctx.write({"t": "pruned", "step": int(step), "value": v})
        raise TrialPruned(f"pruned at step {step} (value {v:g})")
