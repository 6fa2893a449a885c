"""The tracing context: records step calls while a ``@pipeline`` function runs."""

from __future__ import annotations

import contextvars
import os
import sys
from dataclasses import dataclass, field
from typing import Any

from insitu.errors import Problem

_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def caller_location() -> tuple[str | None, int | None]:
    """File and line of the first frame outside the insitu package."""
    f = sys._getframe(1)
    while f is not None:
        fn = os.path.abspath(f.f_code.co_filename)
        if not fn.startswith(_PKG_DIR + os.sep) and "importlib" not in fn:
            return fn, f.f_lineno
        f = f.f_back  # type: ignore[assignment]
    return None, None


@dataclass
class StepCall:
    step_id: str
    name: str
    step: Any  # the Step object (with options already merged)
    args: dict[str, dict[str, Any]]
    map: dict[str, Any] | None
    when: dict[str, Any] | None
    exit_handler: bool
    file: str | None
    line: int | None
    tune: dict[str, Any] | None = None


@dataclass
class Trace:
    pipeline: str
    calls: list[StepCall] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    # per nesting depth: conditions of the current If/Elif chain, or None when no chain is open
    chains: dict[int, list[dict[str, Any]] | None] = field(default_factory=dict)
    _ids: dict[str, int] = field(default_factory=dict)

    def new_id(self, name: str) -> str:
        n = self._ids.get(name, 0) + 1
        self._ids[name] = n
        return name if n == 1 else f"{name}-{n}"

    def current_when(self) -> dict[str, Any] | None:
        if not self.conditions:
            return None
        if len(self.conditions) == 1:
            return self.conditions[0]
        return {"op": "and", "args": list(self.conditions)}

    def problem(self, message: str, *, file: str | None = None, line: int | None = None,
                step: str | None = None, hint: str | None = None) -> None:
        self.problems.append(Problem(message=message, file=file, line=line, step=step, hint=hint))


_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("insitu_trace",
                                                                         default=None)


def current_trace() -> Trace | None:
    return _current.get()


def start_trace(trace: Trace) -> contextvars.Token[Trace | None]:
    return _current.set(trace)


def end_trace(token: contextvars.Token[Trace | None]) -> None:
    _current.reset(token)
