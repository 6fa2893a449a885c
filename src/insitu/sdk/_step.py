"""``@insitu.step``: a plain function plus how to run it."""

from __future__ import annotations

import ast
import contextlib
import difflib
import functools
import hashlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Generic, ParamSpec, TypeVar, overload

from insitu.errors import Problem, StepOutsidePipeline, UserError
from insitu.sdk._handles import Handle, NotJSONable, Output, Param, RunStatus, to_ref
from insitu.sdk._trace import Trace, caller_location, current_trace

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_CPU = 1.0
DEFAULT_MEMORY = "2GiB"


@dataclass(frozen=True, kw_only=True)
class StepOptions:
    """How a step runs. Resources may be constants or pipeline parameters."""

    name: str | None = None
    cpu: Any = DEFAULT_CPU
    memory: Any = DEFAULT_MEMORY
    gpu: Any = 0
    gpu_type: Any = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    backoff: float = 1.0
    backoff_factor: float = 2.0
    max_backoff: float = 60.0
    timeout: float | None = None
    cache: bool = True
    cache_version: str = ""
    env: dict[str, str] = field(default_factory=dict)
    # where the step may run (checked by the scheduler, reported by `insitu why`)
    node_selector: Any = None
    affinity: Any = None
    anti_affinity: Any = None
    tolerations: Any = ()
    priority: Any = 0
    spot: Any = None
    # distributed training (see docs/training.md): the step runs as a gang of ``workers``
    # processes, each with the resources above; a lost rank restarts the gang from its
    # last checkpoint, at most ``max_restarts`` times
    workers: Any = 1
    max_restarts: Any = 3
    collective_timeout: Any = 300.0


_OPTION_NAMES = {f.name for f in fields(StepOptions)}


_ALIASES = {"retry": "retries", "mem": "memory", "memory_limit": "memory", "cpus": "cpu",
            "gpus": "gpu", "num_gpus": "gpu", "num_cpus": "cpu", "selector": "node_selector",
            "toleration": "tolerations", "preemptible": "spot",
            "num_workers": "workers", "world_size": "workers", "nodes": "workers"}


def _option_error(problem: Problem) -> UserError:
    return UserError(f"{problem.file}:{problem.line}: {problem.message}", hint=problem.hint)


def _unknown_options(options: dict[str, Any], at: tuple[str | None, int | None]
                     ) -> Problem | None:
    unknown = sorted(set(options) - _OPTION_NAMES)
    if not unknown:
        return None
    tips = []
    for u in unknown:
        close = [_ALIASES[u]] if u in _ALIASES else \
            difflib.get_close_matches(u, sorted(_OPTION_NAMES), n=1, cutoff=0.5)
        tips.append(f"{u}= (did you mean {close[0]}=?)" if close else f"{u}=")
    return Problem(message=f"unknown step option{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(tips)}", file=at[0], line=at[1],
                   hint=f"step options are: {', '.join(sorted(_OPTION_NAMES))}")


def fingerprint(fn: Callable[..., Any]) -> str:
    """A hash of the function's source code (its bytecode when the source is unavailable,
    as for ``python -c`` or stdin): what a step's cache key knows of its code. Decorators are
    left out: resources and retries given there are not part of the code."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        with contextlib.suppress(SyntaxError, IndexError):  # e.g. a lambda's line
            node = ast.parse(src).body[0]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
                src = "".join(src.splitlines(keepends=True)[node.lineno - 1:])
        data = src.encode()
    except (OSError, TypeError):
        data = _code_bytes(fn.__code__)
    return hashlib.sha256(data).hexdigest()[:32]


def _code_bytes(code: types.CodeType) -> bytes:
    """The bytecode, names and constants of ``code`` and its nested functions; nothing that
    changes from one process to the next (no addresses, no file names or line numbers)."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for c in code.co_consts:
        parts.append(_code_bytes(c) if isinstance(c, types.CodeType) else repr(c).encode())
    return b"\0".join(parts)


class Step(Generic[P, R]):
    """A function decorated with :func:`step`.

    Inside a ``@pipeline`` function, calling it records a step and returns a
    handle to its future output. ``step.fn`` is the undecorated function.
    """

    def __init__(self, fn: Callable[P, R], options: StepOptions,
                 defined_at: tuple[str | None, int | None]) -> None:
        self.fn = fn
        self.opts = options
        self.defined_at = defined_at
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    @property
    def name(self) -> str:
        return self.opts.name or self.fn.__name__

    def with_options(self, **overrides: Any) -> Step[P, R]:
        """A copy of this step with some options replaced (see :meth:`options`)."""
        at = caller_location()
        problem = _unknown_options(overrides, at)
        if problem is not None:
            trace = current_trace()
            if trace is None:
                raise _option_error(problem)
            trace.problems.append(problem)  # reported with every other problem
            overrides = {k: v for k, v in overrides.items() if k in _OPTION_NAMES}
        if "retry_on" in overrides:
            overrides["retry_on"] = _as_tuple(overrides["retry_on"])
        return Step(self.fn, replace(self.opts, **overrides), at)

    # ``train.options(memory="8GiB")(x)``: per-call overrides
    def options(self, **overrides: Any) -> Step[P, R]:  # noqa: D401
        """Per-call overrides, e.g. ``train.options(memory="8GiB", name="train_big")(x)``."""
        return self.with_options(**overrides)

    def __call__(self, *args: Any, **kwargs: Any) -> R:
        # typed loosely on purpose: inside a pipeline, arguments are handles to future values
        trace = current_trace()
        if trace is None:
            file, line = caller_location()
            raise StepOutsidePipeline(
                f"step '{self.name}' was called outside a pipeline at {file}:{line}",
                hint=f"call it inside a function decorated with @insitu.pipeline, or call "
                     f"{self.fn.__name__}.fn(...) to run the plain function (in a test, "
                     f"`with insitu.testing.capture() as logged: {self.fn.__name__}.fn(...)` "
                     f"records what it logs in logged.metrics / logged.params)",
            )
        return self._record(trace, args, kwargs)  # type: ignore[return-value]

    def map(self, items: Any, /, *, max_parallel: int | None = None, **kwargs: Any) -> Output:
        """Fan out: one task per element of ``items`` (a list, a parameter, or a step output).

        The element goes to the function's first parameter; ``kwargs`` go to every task.
        Returns a handle to the list of outputs, in order.
        """
        trace = current_trace()
        if trace is None:
            file, line = caller_location()
            raise StepOutsidePipeline(
                f"step '{self.name}'.map was called outside a pipeline at {file}:{line}",
                hint="call it inside a function decorated with @insitu.pipeline",
            )
        return self._record(trace, (), kwargs, map_over=items, max_parallel=max_parallel)

    def _record(self, trace: Trace, args: Iterable[Any], kwargs: dict[str, Any], *,
                map_over: Any = None, max_parallel: int | None = None,
                exit_handler: bool = False, tune: dict[str, Any] | None = None) -> Output:
        from insitu.sdk._trace import StepCall

        file, line = caller_location()
        step_id = trace.new_id(self.name)
        bound: dict[str, dict[str, Any]] = {}
        map_spec = None
        params = list(self.signature.parameters)
        args = tuple(args)
        if map_over is not None or max_parallel is not None:
            if not params:
                trace.problem(f"{self.name}.map needs a function with at least one parameter",
                              file=file, line=line, step=step_id)
            else:
                if isinstance(map_over, range):
                    map_over = list(map_over)
                try:
                    over = to_ref(map_over)
                except NotJSONable as e:
                    trace.problem(f"cannot map over this value: {e}", file=file, line=line,
                                  step=step_id, hint="map over a list of JSON values, a "
                                  "parameter, or another step's output")
                    over = {"const": []}
                if isinstance(map_over, Param) and not map_over._path \
                        and map_over.type not in ("list", "any"):
                    trace.problem(f"{self.name}.map needs a list, but parameter "
                                  f"'{map_over.name}' is declared {map_over.type}", file=file,
                                  line=line, step=step_id,
                                  hint=f"declare it `{map_over.name}: list`, or map over a list "
                                       f"built from it, e.g. list(range({map_over.name}))")
                elif not isinstance(map_over, Handle) and "const" in over \
                        and not isinstance(over["const"], list):
                    trace.problem(f"{self.name}.map needs a list, got {map_over!r}", file=file,
                                  line=line, step=step_id,
                                  hint=f"give one item per task, e.g. {self.name}.map("
                                       f"list(range({map_over!r})))"
                                  if isinstance(map_over, int) and not isinstance(map_over, bool)
                                  else "give a list with one item per task")
                if max_parallel is not None and (not isinstance(max_parallel, int)
                                                 or max_parallel < 1):
                    trace.problem(f"max_parallel must be a positive int, got {max_parallel!r}",
                                  file=file, line=line, step=step_id)
                    max_parallel = None
                map_spec = {"arg": params[0], "over": over, "max_parallel": max_parallel}
                kwargs = {params[0]: None, **kwargs}
        if exit_handler and "status" in self.signature.parameters and "status" not in kwargs:
            kwargs = {**kwargs, "status": RunStatus()}
        try:
            ba = self.signature.bind(*args, **kwargs)
        except TypeError as e:
            hint = None
            takes = list(self.signature.parameters)
            for k in kwargs:
                if k not in takes:
                    close = difflib.get_close_matches(k, takes, n=1, cutoff=0.5)
                    if close:
                        hint = f"did you mean {close[0]}=? ({self.fn.__name__} takes " \
                               f"{', '.join(takes)})"
                        break
            trace.problem(f"bad arguments for {self.fn.__name__}{self.signature}: {e}",
                          file=file, line=line, step=step_id, hint=hint)
            ba = None
        if ba is not None:
            for pname, value in ba.arguments.items():
                kind = self.signature.parameters[pname].kind
                if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                    trace.problem(f"steps cannot take *args or **kwargs ({pname})", file=file,
                                  line=line, step=step_id, hint="name every parameter")
                    continue
                if map_spec is not None and pname == map_spec["arg"]:
                    continue
                try:
                    bound[pname] = to_ref(value)
                except NotJSONable as e:
                    trace.problem(
                        f"argument '{pname}': {e}", file=file, line=line, step=step_id,
                        hint="pass JSON values (numbers, strings, lists, dicts) as constants; "
                             "produce anything else in a step and pass its output")
        trace.calls.append(StepCall(
            step_id=step_id, name=self.name, step=self, args=bound, map=map_spec,
            when=trace.current_when(), exit_handler=exit_handler, file=file, line=line,
            tune=tune))
        return Output(step_id, mapped=map_spec is not None)

    def __repr__(self) -> str:
        return f"<insitu.step {self.name}>"


def _as_tuple(v: Any) -> tuple[Any, ...]:
    if v is None:
        return ()
    if isinstance(v, list | tuple):
        return tuple(v)
    return (v,)


@overload
def step(fn: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(*, name: str | None = ..., cpu: Any = ..., memory: Any = ..., gpu: Any = ...,
         gpu_type: Any = ..., retries: int = ..., retry_on: Any = ..., backoff: float = ...,
         backoff_factor: float = ..., max_backoff: float = ..., timeout: float | None = ...,
         cache: bool = ..., cache_version: str = ..., env: dict[str, str] | None = ...,
         node_selector: dict[str, str] | None = ..., affinity: dict[str, Any] | None = ...,
         anti_affinity: dict[str, Any] | None = ..., tolerations: Any = ...,
         priority: int = ..., spot: bool | None = ...,
         ) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(fn: Any = None, /, **options: Any) -> Any:
    """Declare a pipeline step.

    Options: ``cpu`` (cores, default 1), ``memory`` (e.g. ``"2GiB"``, the default;
    the step is stopped if it uses more), ``gpu`` (a count or a fraction of one GPU),
    ``gpu_type``, ``retries`` (extra attempts), ``retry_on`` (exception types that
    are retried; default: any exception), ``backoff``/``backoff_factor``/``max_backoff``
    (seconds between attempts, growing exponentially), ``timeout`` (seconds per attempt),
    ``cache`` (default on), ``cache_version`` (change it to invalidate), ``env``.

    Where it may run (the scheduler's constraints, explained by ``insitu why``):
    ``node_selector`` (``{"zone": "a"}``: labels a node must have), ``affinity``
    (``{"zone": ["a", "b"]}``: a label must be one of these values), ``anti_affinity``
    (``{"insitu.dev/node": ["node-3"]}``: must not be), ``tolerations``
    (``["gpu=reserved:NoSchedule"]``: node taints it accepts), ``priority`` (for the
    scheduler's queues: higher is placed first), ``spot`` (True: may run on spot nodes;
    False: never; default: only when it has retries).

    Any option may take a pipeline parameter's value; a misspelt one is an error at
    the decorator's line, with the nearest name.
    """
    if options.get("env") is None:
        options.pop("env", None)
    if "retry_on" in options:
        options["retry_on"] = _as_tuple(options["retry_on"])

    def wrap(f: Callable[..., Any]) -> Step[Any, Any]:
        problem = _unknown_options(options, caller_location())
        if problem is not None:
            raise _option_error(problem)
        if not callable(f):
            raise TypeError("@insitu.step decorates a function")
        code = getattr(f, "__code__", None)
        file = inspect.getsourcefile(f) or (code.co_filename if code else None)
        return Step(f, StepOptions(**options), (file, _first_line(f)))

    if fn is not None:
        return wrap(fn)
    return wrap


def _first_line(f: Callable[..., Any]) -> int | None:
    try:
        return inspect.getsourcelines(f)[1]
    except (OSError, TypeError):  # no source (python -c, stdin): the code knows its line
        code = getattr(f, "__code__", None)
        return code.co_firstlineno if code else None
