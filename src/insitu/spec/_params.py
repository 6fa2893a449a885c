"""Binding pipeline parameters: CLI strings or Python values, checked against the spec.

A spec records the values its pipeline body was traced with (``spec["values"]``): the
steps, their arguments and options were built from them, so a run of that spec uses
exactly those values, and another value for one of them is refused with the command
that compiles the spec again.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from typing import Any

from insitu.errors import ParameterError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _convert(name: str, ptype: str, value: Any, from_text: bool) -> Any:
    out = _convert_value(name, ptype, value, from_text)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError):
        raise ParameterError(f"parameter '{name}' is {value!r}, which is not a JSON value",
                             hint="pass numbers, strings, booleans, lists and dicts of them; "
                                  "make anything else in a step") from None
    return out


def _convert_value(name: str, ptype: str, value: Any, from_text: bool) -> Any:
    if from_text and isinstance(value, str):
        try:
            if ptype == "int":
                return int(value)
            if ptype == "float":
                return _finite(name, float(value))
            if ptype == "bool":
                v = value.strip().lower()
                if v in _TRUE | _FALSE:
                    return v in _TRUE
                raise ValueError(value)
            if ptype in ("list", "dict"):
                out = json.loads(value)
                if not isinstance(out, list if ptype == "list" else dict):
                    raise ValueError(value)
                return out
            if ptype == "any":
                try:
                    return json.loads(value)
                except json.JSONDecodeError:
                    return value
            return value
        except ParameterError:
            raise
        except ValueError:
            example = {"int": "3", "float": "0.5", "bool": "true", "list": "'[1, 2]'",
                       "dict": "'{\"a\": 1}'"}.get(ptype, "x")
            raise ParameterError(
                f"parameter '{name}' expects {ptype}, got {value!r}",
                hint=f"pass e.g. -p {name}={example}") from None
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
          "list": lambda v: isinstance(v, list | tuple), "dict": lambda v: isinstance(v, dict),
          "any": lambda v: True}[ptype]
    if not ok(value):
        raise ParameterError(f"parameter '{name}' expects {ptype}, got {value!r} "
                             f"({type(value).__name__})",
                             hint=f"pass a value of type {ptype}")
    if ptype == "float":
        return _finite(name, float(value))
    if ptype == "list":
        return list(value)
    return value


def _finite(name: str, v: float) -> float:
    if math.isnan(v) or math.isinf(v):
        raise ParameterError(f"parameter '{name}' is {v}, which a pipeline parameter cannot be",
                             hint=f"pass a finite number, e.g. -p {name}=0.5")
    return v


def bind_params(spec: dict[str, Any], given: dict[str, Any], *, from_text: bool = False
                ) -> dict[str, Any]:
    """Check ``given`` against the spec's parameters; return every parameter's value.

    Values the spec was compiled with are fixed. Raises :class:`ParameterError` listing
    every unknown, missing, mistyped or changed one.
    """
    fixed = spec.get("values") or {}
    out = bind_declared(spec["name"], spec["parameters"], given, from_text=from_text,
                        defaults=fixed)
    changed = [n for n in given if n in fixed and n in out and out[n] != fixed[n]]
    if changed:
        now = ", ".join(f"{n}={fixed[n]!r}" for n in changed)
        want = " ".join(f"-p {n}={_text(given[n])}" for n in changed)
        src = spec.get("source") or {}
        if src.get("file") and not src.get("pickled") and os.path.exists(src["file"]):
            target = f"{src['file']}:{spec['name']}"
            hint = (f"run the source with the new value: `insitu run {target} {want}`, or "
                    f"compile it again: `insitu compile {target} {want} -o spec.json`")
        else:
            hint = (f"compile the pipeline again with the new value (in Python: "
                    f"insitu.run(pipeline, {', '.join(f'{n}=...' for n in changed)}))")
        raise ParameterError(
            f"this spec of pipeline '{spec['name']}' was compiled with {now}: its steps were "
            f"built from {'that value' if len(changed) == 1 else 'those values'}, so it runs "
            f"only with {'it' if len(changed) == 1 else 'them'}", hint=hint)
    return out


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def bind_declared(pipeline: str, declared_list: list[dict[str, Any]], given: dict[str, Any], *,
                  from_text: bool = False, defaults: dict[str, Any] | None = None,
                  require: bool = True) -> dict[str, Any]:
    """Values for the declared parameters (spec entries): given ones converted and checked,
    the others from ``defaults`` or their declared default. A required parameter with no
    value is a problem when ``require``, else left out."""
    declared = {p["name"]: p for p in declared_list}
    problems: list[str] = []
    out: dict[str, Any] = {}
    for name in given:
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            tip = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown parameter '{name}'{tip}")
    for name, p in declared.items():
        if name in given:
            try:
                out[name] = _convert(name, p["type"], given[name], from_text)
            except ParameterError as e:
                problems.append(f"{e.message} ({e.hint})")
        elif defaults and name in defaults:
            out[name] = defaults[name]
        elif "default" in p:
            out[name] = p["default"]
        elif require:
            problems.append(f"missing required parameter '{name}' ({p['type']})")
    if problems:
        params = ", ".join(p["name"] + ": " + p["type"] + (f" = {p['default']!r}"
                           if "default" in p else "") for p in declared_list) or "none"
        raise ParameterError(
            f"bad parameters for pipeline '{pipeline}': " + "; ".join(problems),
            hint=f"its parameters are: {params}; pass them as -p name=value "
                 "(in Python: insitu.run(pipeline, name=value))")
    return out


def parse_cli_params(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"cannot read parameter {pair!r}",
                                 hint="write -p name=value, e.g. -p epochs=10")
        if name in out and out[name] != value:
            raise ParameterError(f"parameter '{name}' is given twice (-p {name}={out[name]} "
                                 f"-p {name}={value})", hint=f"give -p {name}=... once")
        out[name] = value
    return out
