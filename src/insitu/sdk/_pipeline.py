"""``@insitu.pipeline`` and compilation of a traced pipeline into a PipelineSpec."""

from __future__ import annotations

import base64
import copy
import inspect
import json
import os
import sys
import traceback
import typing
from collections.abc import Callable
from dataclasses import replace
from typing import Any, overload

from insitu._units import parse_cpu, parse_gpu, parse_memory
from insitu.errors import Problem, UserError, ValidationError
from insitu.sdk._handles import Handle, NotJSONable, Param, _const, refs_in, refs_in_condition
from insitu.sdk._step import Step, StepOptions, fingerprint
from insitu.sdk._trace import StepCall, Trace, end_trace, start_trace
from insitu.spec import SPEC_VERSION

_TYPES: dict[Any, str] = {int: "int", float: "float", str: "str", bool: "bool", list: "list",
                          dict: "dict"}


class Pipeline:
    """A function decorated with :func:`pipeline`. :meth:`compile` returns its PipelineSpec."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None,
                 description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.signature = inspect.signature(fn)

    def compile(self, params: dict[str, Any] | None = None, /, **values: Any
                ) -> dict[str, Any]:
        """Trace the pipeline with these parameter values (defaults for the others) and
        return its spec; raise :class:`ValidationError` with every problem found."""
        return compile_pipeline(self, {**(params or {}), **values})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UserError(
            f"pipeline '{self.name}' cannot be called directly",
            hint=f"run it with `insitu.run({self.fn.__name__}, param=value)` or "
                 f"`insitu run FILE:{self.name}`")

    def __repr__(self) -> str:
        return f"<insitu.pipeline {self.name}>"


@overload
def pipeline(fn: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = ..., description: str | None = ...,
             ) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(fn: Any = None, /, *, name: str | None = None,
             description: str | None = None) -> Any:
    """Declare a pipeline: a function whose body wires steps together.

    Its parameters are the pipeline's parameters; annotate them (``int``, ``float``,
    ``str``, ``bool``, ``list``, ``dict``) and give defaults where useful.
    """
    if fn is not None:
        return Pipeline(fn, name, description)
    return lambda f: Pipeline(f, name, description)


def _param_type(annotation: Any) -> str | None:
    if annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool, "list": list,
                      "dict": dict}.get(annotation.split("[")[0], annotation)
    origin = typing.get_origin(annotation) or annotation
    if origin is typing.Any:
        return "any"
    return _TYPES.get(origin)


def compile_pipeline(p: Pipeline, params: dict[str, Any] | None = None, *,
                     from_text: bool = False, require: bool = False) -> dict[str, Any]:
    """Trace ``p`` with these parameter values and return its PipelineSpec.

    The pipeline body sees each parameter's value: given here, else its default. A
    required parameter with no value stays a placeholder (:class:`Param`) unless
    ``require``, when it is an error as it is for a run. ``from_text``: the values are
    CLI strings (``-p n=5``). The spec records the values in ``values``.
    Raises :class:`ParameterError` for unknown or mistyped values and
    :class:`ValidationError` listing every problem of the pipeline.
    """
    from insitu.spec._params import bind_declared

    src_file = _abs(_source_file(p.fn))
    src_line = _line(p.fn)
    problems: list[Problem] = []
    declared: list[dict[str, Any]] = []
    for pname, par in p.signature.parameters.items():
        if par.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            problems.append(Problem(message=f"pipeline parameters cannot be *args/**kwargs "
                                    f"({pname})", file=src_file, line=src_line))
            continue
        ptype = _param_type(par.annotation)
        if ptype is None:
            problems.append(Problem(
                message=f"parameter '{pname}' has type {par.annotation!r}, which a pipeline "
                        "parameter cannot have", file=src_file, line=src_line,
                hint="use int, float, str, bool, list or dict"))
            ptype = "any"
        entry: dict[str, Any] = {"name": pname, "type": ptype,
                                 "required": par.default is inspect.Parameter.empty}
        if par.default is not inspect.Parameter.empty:
            try:
                entry["default"] = _const(par.default)
            except NotJSONable as e:
                problems.append(Problem(message=f"default of parameter '{pname}': {e}",
                                        file=src_file, line=src_line))
                entry["required"] = True
        declared.append(entry)
    values = bind_declared(p.name, declared, dict(params or {}), from_text=from_text,
                           require=require)
    handles: dict[str, Any] = {e["name"]: copy.deepcopy(values[e["name"]]) if e["name"] in values
                               else Param(e["name"], type=e["type"]) for e in declared}
    params_spec = [dict(e) for e in declared]

    trace = Trace(pipeline=p.name)
    token = start_trace(trace)
    try:
        p.fn(**handles)
    except Exception as e:  # the pipeline body itself failed while being traced
        file, line = _user_frame(e, src_file)
        msg = e.message if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        hint = e.hint if isinstance(e, UserError) else None
        trace.problem(f"the pipeline body failed while being defined: {msg}", file=file,
                      line=line, hint=hint)
    finally:
        end_trace(token)
    problems += trace.problems

    steps = []
    known = {c.step_id for c in trace.calls}
    param_names = {x["name"] for x in params_spec}
    exit_calls = [c for c in trace.calls if c.exit_handler]
    for extra in exit_calls[1:]:
        problems.append(Problem(message="a pipeline can have only one exit handler",
                                file=extra.file, line=extra.line, step=extra.step_id))
    if not trace.calls and not problems:
        problems.append(Problem(message="the pipeline calls no step", file=src_file,
                                line=src_line, hint="call @insitu.step functions in its body"))
    refs: dict[int, dict[str, Any]] = {}  # one reference (one pickle) per function
    for call in trace.calls:
        steps.append(_step_spec(call, known, param_names, problems, refs))
    if problems:
        problems.sort(key=lambda pr: (pr.file or "", pr.line or 0))
        raise ValidationError(problems, pipeline=p.name)
    spec = {
        "spec_version": SPEC_VERSION,
        "name": p.name,
        "description": p.description,
        "source": {"module": _module_of(p.fn),
                   "file": src_file if src_file and os.path.isfile(src_file) else None,
                   "qualname": p.fn.__qualname__, "fingerprint": fingerprint(p.fn)},
        "parameters": params_spec,
        "values": values,
        "steps": steps,
    }
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as e:  # a value that slipped past the checks above
        raise ValidationError([Problem(
            message=f"the spec cannot be written as JSON: {e}", file=src_file, line=src_line,
            hint="pass JSON values (numbers, strings, lists, dicts) to steps and options")],
            pipeline=p.name) from None
    return spec


def _step_spec(call: StepCall, known: set[str], param_names: set[str],
               problems: list[Problem], refs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    step: Step[Any, Any] = call.step
    o = step.opts
    dfile, dline = step.defined_at

    def bad(msg: str, hint: str | None = None, *, at_def: bool = True) -> None:
        problems.append(Problem(message=msg, file=dfile if at_def else call.file,
                                line=dline if at_def else call.line, step=call.step_id,
                                hint=hint))

    if id(step.fn) not in refs:
        try:
            refs[id(step.fn)] = function_ref(step.fn)
        except Exception as e:  # cloudpickle: something the function refers to
            bad(f"step function {step.fn.__qualname__} has no file a worker could import, and "
                f"it cannot be sent by value: {type(e).__name__}: {e}",
                "create that object inside the step function, or move the step into a .py "
                "module and import it")
            refs[id(step.fn)] = {"module": None, "file": None,
                                 "qualname": step.fn.__qualname__, "fingerprint": ""}
    function = dict(refs[id(step.fn)])
    if "<locals>" in step.fn.__qualname__ and "pickled" not in function:
        bad(f"step function {step.fn.__qualname__} is defined inside another function",
            "define step functions at the top level of a module so workers can import them")
    for opt in ("retries", "retry_on", "backoff", "backoff_factor", "max_backoff", "timeout",
                "cache", "cache_version", "env", "node_selector", "affinity", "anti_affinity",
                "tolerations", "priority", "spot"):
        if _contains_handle(getattr(o, opt)):
            bad(f"{opt}= is given {getattr(o, opt)!r}, which has no value while the pipeline "
                "is compiled", "give a constant or a pipeline parameter with a value (a step's "
                "output is known only at run time)")
            o = replace(o, **{opt: getattr(StepOptions(), opt)})
    constraints = _constraints(o, bad)
    if call.tune is not None:
        try:
            json.dumps(call.tune, allow_nan=False)
        except (TypeError, ValueError):
            bad_opts = sorted(k for k, v in call.tune.items() if _contains_handle(v))
            bad(f"insitu.tune's {', '.join(bad_opts) or 'options'} must be known when the "
                "pipeline is compiled (a constant or a parameter with a value)",
                "pass a constant; a step's output is known only at run time", at_def=False)
            call.tune = {k: (None if _contains_handle(v) else v) for k, v in call.tune.items()}
        # the values of seed, timeout and the counts are checked by insitu.tune itself

    def quantity(label: str, value: Any, parse: Callable[[Any], Any]) -> Any:
        if isinstance(value, Handle):
            ref = value._ref()
            if "param" not in ref:
                bad(f"{label} can come from a pipeline parameter, not from a step output")
            return ref
        if value is None:
            return None
        try:
            return parse(value)
        except UserError as e:
            bad(e.message, e.hint)
            return None

    resources = {
        "cpu": quantity("cpu", o.cpu, parse_cpu),
        "memory": quantity("memory", o.memory, parse_memory),
        "gpu": quantity("gpu", o.gpu, parse_gpu),
        "gpu_type": o.gpu_type._ref() if isinstance(o.gpu_type, Handle) else o.gpu_type,
    }
    if resources["gpu_type"] is not None and not isinstance(resources["gpu_type"], str | dict):
        bad(f"gpu_type must be a string such as 'A100', got {o.gpu_type!r}")
        resources["gpu_type"] = None
    retry_on = []
    for exc in o.retry_on:
        if isinstance(exc, type) and issubclass(exc, BaseException):
            retry_on.append(f"{exc.__module__}.{exc.__qualname__}")
        else:
            bad(f"retry_on must list exception classes, got {exc!r}",
                "e.g. retry_on=(ConnectionError, TimeoutError)")
    if not isinstance(o.retries, int) or isinstance(o.retries, bool) or o.retries < 0:
        bad(f"retries must be a whole number >= 0, got {o.retries!r}")
    if o.timeout is not None and (not isinstance(o.timeout, int | float) or o.timeout <= 0):
        bad(f"timeout must be a positive number of seconds, got {o.timeout!r}")
    train = _train_options(o, bad)
    if not isinstance(o.env, dict) or not all(isinstance(k, str) for k in o.env):
        bad(f"env must be a dict of strings, got {o.env!r}")
    for r in [r for ref in call.args.values() for r in refs_in(ref)] + refs_in_condition(
            call.when) + (refs_in(call.map["over"]) if call.map else []):
        if "output" in r and r["output"] not in known:
            bad(f"uses the output of unknown step '{r['output']}'", at_def=False)
        if "param" in r and r["param"] not in param_names:
            bad(f"uses unknown parameter '{r['param']}'", at_def=False)
    name = step.name
    if not _valid_id(call.step_id):
        bad(f"step name {name!r} may use only letters, digits, '_', '-' and '.'",
            "rename it with @insitu.step(name=...) or .options(name=...)")
    out: dict[str, Any] = {
        "id": call.step_id,
        "name": name,
        "function": function,
        "args": call.args,
        "map": call.map,
        "resources": resources,
        "retries": {"max": o.retries if isinstance(o.retries, int) else 0,
                    "backoff": float(o.backoff), "backoff_factor": float(o.backoff_factor),
                    "max_backoff": float(o.max_backoff), "retry_on": retry_on},
        "timeout": float(o.timeout) if isinstance(o.timeout, int | float) else None,
        "cache": bool(o.cache),
        "cache_version": str(o.cache_version),
        "env": {str(k): str(v) for k, v in o.env.items()} if isinstance(o.env, dict) else {},
        "when": call.when,
        "exit_handler": call.exit_handler,
        "tune": call.tune,
        "location": {"file": call.file, "line": call.line},
    }
    if constraints:
        out["constraints"] = constraints
    if train:
        out["train"] = train
    return out


def _train_options(o: StepOptions, bad: Callable[..., None]) -> dict[str, Any] | None:
    """The spec's ``train`` entry of a distributed step (``workers`` > 1), else None."""
    w = o.workers
    if isinstance(w, bool) or not isinstance(w, int) or w < 1:
        bad(f"workers must be a whole number >= 1, got {w!r}",
            "e.g. @insitu.step(workers=4): four processes, each with the step's resources")
        return None
    mr = o.max_restarts
    if isinstance(mr, bool) or not isinstance(mr, int) or mr < 0:
        bad(f"max_restarts must be a whole number >= 0, got {mr!r}")
        mr = 3
    ct = o.collective_timeout
    if isinstance(ct, bool) or not isinstance(ct, int | float) or ct <= 0:
        bad(f"collective_timeout must be a positive number of seconds, got {ct!r}")
        ct = 300.0
    if w == 1:
        return None
    return {"workers": w, "max_restarts": mr, "collective_timeout": float(ct)}


_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _constraints(o: Any, bad: Callable[..., None]) -> dict[str, Any]:
    """The step's placement constraints as spec data; each malformed one is a problem."""
    out: dict[str, Any] = {}
    if o.node_selector is not None:
        sel = o.node_selector
        if not isinstance(sel, dict) or not all(
                isinstance(k, str) and k and isinstance(v, str | int) and not isinstance(v, bool)
                for k, v in sel.items()):
            bad(f"node_selector must map label names to values, got {sel!r}",
                'e.g. node_selector={"zone": "a"}')
        elif sel:
            out["node_selector"] = {k: str(v) for k, v in sel.items()}
    for name in ("affinity", "anti_affinity"):
        aff = getattr(o, name)
        if aff is None:
            continue
        ok = isinstance(aff, dict) and all(isinstance(k, str) and k for k in aff)
        rules: dict[str, list[str]] = {}
        if ok:
            for k, v in aff.items():
                vals = [v] if isinstance(v, str) else v
                if not isinstance(vals, list | tuple | set) or not vals or not all(
                        isinstance(x, str) for x in vals):
                    ok = False
                    break
                rules[k] = sorted(vals)
        if not ok:
            bad(f"{name} must map label names to a value or a list of values, got {aff!r}",
                f'e.g. {name}={{"zone": ["a", "b"]}}')
        elif rules:
            out[name] = rules
    tols = o.tolerations
    if isinstance(tols, str):
        tols = [tols]
    if not isinstance(tols, list | tuple) or not all(isinstance(t, str) for t in tols):
        bad(f"tolerations must be a list of taints, got {o.tolerations!r}",
            'e.g. tolerations=["gpu=reserved:NoSchedule"]')
    else:
        good = []
        for t in tols:
            body, colon, effect = t.partition(":")
            key = body.partition("=")[0]
            if t != "*" and (not key or (colon and effect not in _EFFECTS)):
                bad(f"toleration {t!r} is not KEY[=VALUE][:EFFECT]",
                    f'e.g. "gpu=reserved:NoSchedule"; EFFECT is one of {", ".join(_EFFECTS)}, '
                    'or "*" to tolerate every taint')
            else:
                good.append(t)
        if good:
            out["tolerations"] = good
    if not isinstance(o.priority, int) or isinstance(o.priority, bool):
        bad(f"priority must be a whole number (higher runs first), got {o.priority!r}")
    elif o.priority:
        out["priority"] = o.priority
    if o.spot is not None and not isinstance(o.spot, bool):
        bad(f"spot must be True (may run on spot nodes), False (never) or None (when the "
            f"step has retries), got {o.spot!r}")
    elif o.spot is not None:
        out["spot"] = o.spot
    return out


def _contains_handle(value: object) -> bool:
    if isinstance(value, Handle):
        return True
    if isinstance(value, list | tuple | set):
        return any(_contains_handle(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_handle(v) for v in value.values())
    return False


def _source_file(fn: Callable[..., Any]) -> str | None:
    try:
        return inspect.getsourcefile(fn)
    except TypeError:
        return None


def _by_value(fn: Callable[..., Any], module: str | None, file: str | None) -> bool:
    """Must ``fn`` travel by value? Yes when a worker could not import it: defined in
    ``__main__`` without a Python file (a notebook cell, ``python -c``, stdin, a REPL)."""
    if module is not None:
        return False
    if file is None or file.startswith("<") or not os.path.isfile(file):
        return True
    return f"{os.sep}ipykernel_" in file or not file.endswith(".py")


def function_ref(fn: Callable[..., Any]) -> dict[str, Any]:
    """The spec's reference to a step function: by module/file and name, or by value."""
    module = _module_of(fn)
    raw = _source_file(fn) or getattr(getattr(fn, "__code__", None), "co_filename", None)
    file = raw if raw and raw.startswith("<") else _abs(raw)
    ref: dict[str, Any] = {"module": module, "file": file, "qualname": fn.__qualname__,
                           "fingerprint": fingerprint(fn)}
    if _by_value(fn, module, file):
        import cloudpickle

        ref["pickled"] = base64.b64encode(cloudpickle.dumps(fn)).decode("ascii")
        ref["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    return ref


def _valid_id(s: str) -> bool:
    import re

    return re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", s) is not None


def _module_of(fn: Callable[..., Any]) -> str | None:
    mod = fn.__module__
    if mod == "__main__" or mod.startswith("_insitu_user_"):
        return None
    return mod


def _abs(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def _line(fn: Callable[..., Any]) -> int | None:
    try:
        return inspect.getsourcelines(fn)[1]
    except (OSError, TypeError):
        return None


def _user_frame(e: BaseException, default_file: str | None) -> tuple[str | None, int | None]:
    frames = traceback.extract_tb(e.__traceback__)
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    user = [f for f in frames if not os.path.abspath(f.filename).startswith(pkg)]
    if user:
        return user[-1].filename, user[-1].lineno
    return default_file, None


__all__ = ["Pipeline", "compile_pipeline", "pipeline"]
