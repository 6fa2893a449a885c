"""Binding pipeline parameters: CLI strings or Python values, checked against the spec."""

from __future__ import annotations

import difflib
import json
from typing import Any

from insitu.errors import ParameterError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


def _convert(name: str, ptype: str, value: Any, from_text: bool) -> Any:
    if from_text and isinstance(value, str):
        try:
            if ptype == "int":
                return int(value)
            if ptype == "float":
                return float(value)
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
        return float(value)
    if ptype == "list":
        return list(value)
    return value


def bind_params(spec: dict[str, Any], given: dict[str, Any], *, from_text: bool = False
                ) -> dict[str, Any]:
    """Check ``given`` against the spec's parameters; return every parameter's value.

    Raises :class:`ParameterError` listing every unknown, missing or mistyped one.
    """
    declared = {p["name"]: p for p in spec["parameters"]}
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
        elif "default" in p:
            out[name] = p["default"]
        else:
            problems.append(f"missing required parameter '{name}' ({p['type']})")
    if problems:
        params = ", ".join(f"{p['name']}: {p['type']}" + (f" = {p['default']!r}"
                           if "default" in p else "") for p in spec["parameters"]) or "none"
        raise ParameterError(
            f"bad parameters for pipeline '{spec['name']}': " + "; ".join(problems),
            hint=f"its parameters are: {params}; pass them as -p name=value")
    return out


def parse_cli_params(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ParameterError(f"cannot read parameter {pair!r}",
                                 hint="write -p name=value, e.g. -p epochs=10")
        out[name.strip()] = value
    return out
