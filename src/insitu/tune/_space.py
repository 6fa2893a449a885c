"""Search spaces: JSON descriptions of each parameter's distribution, and their checks."""

from __future__ import annotations

import math
from typing import Any

from insitu.errors import UserError


def _bounds(fn: str, low: Any, high: Any) -> None:
    """Refuse bounds that are not finite numbers, naming the call and where it is."""
    for label, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            from insitu.sdk._trace import caller_location

            file, line = caller_location()
            at = f" at {file}:{line}" if file else ""
            raise UserError(f"insitu.tune.{fn}(low, high){at}: {label} must be a finite "
                            f"number, got {v!r}",
                            hint=f"write e.g. insitu.tune.{fn}(0.001, 0.1)")


def uniform(low: float, high: float) -> dict[str, Any]:
    """A float drawn uniformly from [low, high]."""
    _bounds("uniform", low, high)
    return {"type": "float", "low": float(low), "high": float(high), "log": False}


def loguniform(low: float, high: float) -> dict[str, Any]:
    """A float drawn log-uniformly from [low, high] (low > 0)."""
    _bounds("loguniform", low, high)
    return {"type": "float", "low": float(low), "high": float(high), "log": True}


def integer(low: int, high: int, *, log: bool = False) -> dict[str, Any]:
    """An integer in [low, high]."""
    _bounds("integer", low, high)
    if int(low) != low or int(high) != high:
        raise UserError(f"insitu.tune.integer({low!r}, {high!r}): bounds must be whole numbers",
                        hint="use insitu.tune.uniform for a float range")
    return {"type": "int", "low": int(low), "high": int(high), "log": bool(log)}


def choice(values: list[Any]) -> dict[str, Any]:
    """One of ``values`` (JSON values)."""
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise UserError(f"insitu.tune.choice needs a list of values, got {values!r}",
                        hint='write e.g. insitu.tune.choice(["adam", "sgd"])')
    return {"type": "choice", "values": list(values)}


def check_space(space: Any, *, step: str) -> list[str]:
    """Every problem with ``space`` (empty list if it is valid)."""
    if not isinstance(space, dict) or not space:
        return [f"the search space of '{step}' is empty or not a dict",
                ]
    problems = []
    for name, d in space.items():
        where = f"search space '{name}'"
        if isinstance(d, list):
            d = space[name] = choice(d)
        if not isinstance(d, dict) or d.get("type") not in ("float", "int", "choice"):
            problems.append(f"{where}: {d!r} is not a distribution (use insitu.tune.uniform, "
                            "loguniform, integer or choice, or a list of choices)")
            continue
        if d["type"] == "choice":
            if not d.get("values"):
                problems.append(f"{where}: choice() needs at least one value")
            continue
        low, high = d.get("low"), d.get("high")
        if not all(isinstance(x, int | float) and math.isfinite(x) for x in (low, high)):
            problems.append(f"{where}: low and high must be finite numbers")
        elif low >= high:  # type: ignore[operator]
            problems.append(f"{where}: low ({low}) must be below high ({high})")
        elif d.get("log") and low <= 0:  # type: ignore[operator]
            problems.append(f"{where}: a log scale needs low > 0, got {low}")
    return problems


def distributions(space: dict[str, Any]) -> dict[str, Any]:
    """Optuna distributions for a (checked) space."""
    import optuna.distributions as od

    out: dict[str, Any] = {}
    for name, d in space.items():
        if d["type"] == "float":
            out[name] = od.FloatDistribution(d["low"], d["high"], log=d["log"])
        elif d["type"] == "int":
            out[name] = od.IntDistribution(d["low"], d["high"], log=d["log"])
        else:
            out[name] = od.CategoricalDistribution(d["values"])
    return out


def grid(space: dict[str, Any]) -> dict[str, list[Any]]:
    """The grid a grid search walks: choices as given; numbers at 5 points (ints: all, if few)."""
    import numpy as np

    out: dict[str, list[Any]] = {}
    for name, d in space.items():
        if d["type"] == "choice":
            out[name] = list(d["values"])
        elif d["type"] == "int" and d["high"] - d["low"] < 10:
            out[name] = list(range(d["low"], d["high"] + 1))
        elif d["log"]:
            out[name] = [float(x) for x in np.geomspace(d["low"], d["high"], 5)]
        else:
            pts = np.linspace(d["low"], d["high"], 5)
            out[name] = [int(round(x)) for x in pts] if d["type"] == "int" else \
                [float(x) for x in pts]
    return out


def raise_if_invalid(space: Any, *, step: str) -> None:
    problems = check_space(space, step=step)
    if problems:
        raise UserError("; ".join(problems),
                        hint='give e.g. space={"lr": insitu.tune.loguniform(1e-4, 1e-1), '
                             '"depth": insitu.tune.integer(2, 8)}')
