"""Conditional branches (If / Elif / Else) and the exit handler."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from insitu.errors import StepOutsidePipeline
from insitu.sdk._handles import as_condition
from insitu.sdk._trace import Trace, caller_location, current_trace


def _trace_or_raise(what: str) -> Trace:
    t = current_trace()
    if t is None:
        file, line = caller_location()
        raise StepOutsidePipeline(
            f"{what} used outside a pipeline at {file}:{line}",
            hint="use it inside a function decorated with @insitu.pipeline",
        )
    return t


class _Branch:
    _kind = "If"

    def __init__(self, condition: object = None) -> None:
        self._condition = condition
        self._trace: Trace | None = None
        self._expr: dict[str, Any] | None = None

    def _enter_expr(self, trace: Trace, depth: int) -> dict[str, Any] | None:
        cond = as_condition(self._condition).expr
        trace.chains[depth] = [cond]
        return cond

    def __enter__(self) -> None:
        t = self._trace = _trace_or_raise(f"insitu.{self._kind}")
        depth = len(t.conditions)
        try:
            self._expr = self._enter_expr(t, depth)
        except Exception as e:  # collect the problem, keep tracing
            file, line = caller_location()
            t.problem(str(e), file=file, line=line)
            self._expr = {"op": "truthy", "left": {"const": False}}
        t.conditions.append(self._expr)  # type: ignore[arg-type]

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._trace is not None
        self._trace.conditions.pop()


class If(_Branch):
    """``with insitu.If(cond):`` steps inside run only when ``cond`` holds at run time.

    ``cond`` compares a step output or a parameter with a value (``acc > 0.9``,
    ``mode == "full"``, ``label.is_in(["a", "b"])``), or is a handle tested for truth.
    """


class Elif(_Branch):
    """``with insitu.Elif(cond):`` right after an If/Elif block: runs when no earlier branch did
    and ``cond`` holds."""

    _kind = "Elif"

    def _enter_expr(self, trace: Trace, depth: int) -> dict[str, Any] | None:
        chain = trace.chains.get(depth)
        if not chain:
            raise ValueError(f"insitu.{self._kind} must follow an insitu.If or insitu.Elif block")
        cond = as_condition(self._condition).expr
        expr = {"op": "and", "args": [*({"op": "not", "args": [c]} for c in chain), cond]}
        chain.append(cond)
        return expr


class Else(Elif):
    """``with insitu.Else():`` right after an If/Elif block: runs when no earlier branch did."""

    _kind = "Else"

    def __init__(self) -> None:
        super().__init__(None)

    def _enter_expr(self, trace: Trace, depth: int) -> dict[str, Any] | None:
        chain = trace.chains.get(depth)
        if not chain:
            raise ValueError("insitu.Else must follow an insitu.If or insitu.Elif block")
        trace.chains[depth] = None
        return {"op": "and", "args": [{"op": "not", "args": [c]} for c in chain]}


def on_exit(step: Any, *args: Any, **kwargs: Any) -> None:
    """Register ``step`` as the pipeline's exit handler.

    It runs after every other step has finished, whether the run succeeded or
    failed. If the step function has a parameter named ``status`` it receives
    ``{"run_id": ..., "state": "succeeded"|"failed", "failed_steps": [...]}``.
    """
    t = _trace_or_raise("insitu.on_exit")
    step._record(t, args, kwargs, exit_handler=True)
