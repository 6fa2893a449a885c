"""Tracking outside a run: an in-memory record of what a step logged.

``step.fn(...)`` called in a test or a notebook runs the plain function; its
``insitu.log_metric`` / ``log_params`` / ``log_artifact`` / ``report`` calls go to the
innermost :func:`capture` block, or, outside any, to a process-wide record that keeps
the latest records only. Nothing is written to disk or to the store.
"""

from __future__ import annotations

import contextlib
import contextvars
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_KEEP = 10_000  # records kept by the process-wide record outside any capture block


@dataclass
class Logged:
    """What the code run inside ``with insitu.testing.capture() as logged:`` logged.

    ``metrics``: name -> values in the order logged; ``params``: name -> last value;
    ``artifacts``: name -> path given to ``log_artifact``; ``reports``: (step, value) of
    each ``insitu.report``. :meth:`series` gives (step, value) pairs of one metric.
    """

    metrics: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, pathlib.Path] = field(default_factory=dict)
    reports: list[tuple[int, float]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    prune_at: int | None = None
    # the tracking functions' bookkeeping, as for a real attempt
    steps: dict[str, int] = field(default_factory=dict, repr=False)
    trial: dict[str, Any] | None = field(default=None, repr=False)
    artifacts_url: str | None = field(default=None, repr=False)
    _bounded: bool = field(default=False, repr=False)

    def series(self, name: str) -> list[tuple[int, float]]:
        """Every (step, value) logged for metric ``name``."""
        return [(r["step"], r["value"]) for r in self.records
                if r["t"] == "metric" and r["name"] == name]

    def last(self, name: str) -> float:
        """The last value logged for metric ``name`` (``KeyError`` if none was)."""
        return self.metrics[name][-1]

    def write(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        t = rec["t"]
        if t == "metric":
            self.metrics.setdefault(rec["name"], []).append(rec["value"])
        elif t == "param":
            self.params[rec["name"]] = rec["value"]
        elif t == "artifact":
            self.artifacts[rec["name"]] = pathlib.Path(rec["path"])
        if self._bounded and len(self.records) > _KEEP:
            del self.records[: len(self.records) - _KEEP]
            for values in self.metrics.values():
                del values[:-_KEEP]

    def should_prune(self, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return self.prune_at is not None and step >= self.prune_at


_outside = Logged(_bounded=True)
_current: contextvars.ContextVar[Logged | None] = contextvars.ContextVar("insitu_capture",
                                                                         default=None)


def collector() -> Logged:
    """Where tracking calls made outside a run go now."""
    return _current.get() or _outside


@contextlib.contextmanager
def capture(*, prune_at: int | None = None) -> Iterator[Logged]:
    """Record what code run in the block logs, for a test to read::

        with insitu.testing.capture() as logged:
            assert train.fn(lr=0.1) > 0.5
        assert logged.metrics["loss"][-1] < 1.0
        assert logged.params == {"lr": 0.1}

    ``prune_at``: ``insitu.report(value, step)`` raises :class:`insitu.TrialPruned` from
    that step on, to test a step's early-stopping path.
    """
    logged = Logged(prune_at=prune_at)
    token = _current.set(logged)
    try:
        yield logged
    finally:
        _current.reset(token)
