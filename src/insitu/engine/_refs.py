"""Refs at run time: resolving spec refs to concrete ones, conditions, and cache keys.

A *concrete ref* is what a worker receives for an argument: ``{"value": v}``,
``{"ref": output_ref, "path": [...]}``, ``{"list": [...]}`` or ``{"dict": {...}}``.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable
from typing import Any

from insitu.artifacts import content_id

Lookup = Callable[[str], dict[str, Any]]  # step id -> output ref


def concretize(ref: dict[str, Any], params: dict[str, Any], outputs: Lookup,
               status: dict[str, Any] | None = None) -> dict[str, Any]:
    if "const" in ref:
        return {"value": ref["const"]}
    if "param" in ref:
        v = params[ref["param"]]
        for k in ref.get("path", []):
            v = v[k]
        return {"value": v}
    if "output" in ref:
        out = outputs(ref["output"])
        path = list(ref.get("path", []))
        if out.get("kind") == "list" and path and isinstance(path[0], int):
            out, path = out["items"][path[0]], path[1:]
        if out.get("kind") == "inline":
            v = out["value"]
            for k in path:
                v = v[k]
            return {"value": v}
        c: dict[str, Any] = {"ref": out}
        if path:
            c["path"] = path
        return c
    if "list" in ref:
        return {"list": [concretize(r, params, outputs, status) for r in ref["list"]]}
    if "dict" in ref:
        return {"dict": {k: concretize(r, params, outputs, status)
                         for k, r in ref["dict"].items()}}
    if "status" in ref:
        return {"value": status}
    raise ValueError(f"unknown ref {ref!r}")


def identity(c: dict[str, Any]) -> Any:
    """What a concrete ref contributes to a cache key: values, or content ids of artifacts.

    A dataset shard inside a value counts by its name and content hash only: where its
    replicas live (and its cached copies) changes as data moves, its content does not.
    """
    if "value" in c:
        return {"v": _content_of(c["value"])}
    if "list" in c:
        return [identity(x) for x in c["list"]]
    if "dict" in c:
        return {k: identity(x) for k, x in sorted(c["dict"].items())}
    return {"a": content_id(c["ref"]), "p": c.get("path", [])}


def _content_of(v: Any) -> Any:
    if isinstance(v, dict):
        if {"dataset", "shard", "digest"} <= set(v):  # a shard descriptor
            return {"dataset": v["dataset"], "shard": v["shard"], "digest": v["digest"]}
        return {k: _content_of(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_content_of(x) for x in v]
    return v


def cache_key(step: dict[str, Any], args: dict[str, dict[str, Any]]) -> str:
    """The step's code (its fingerprint and qualified name), its ``cache_version`` and the
    content of its arguments. Resources, retries, timeouts and placement are not in it."""
    payload = {
        "fn": step["function"]["fingerprint"],
        "q": step["function"]["qualname"],
        "cv": step.get("cache_version", ""),
        "args": {k: identity(v) for k, v in sorted(args.items())},
    }
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.sha256(data).hexdigest()


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge, "in": lambda a, b: a in b,
}


def evaluate(cond: dict[str, Any] | None, value_of: Callable[[dict[str, Any]], Any]) -> bool:
    """Evaluate a spec condition; ``value_of`` turns a spec ref into its value."""
    if cond is None:
        return True
    op = cond["op"]
    if op == "and":
        return all(evaluate(c, value_of) for c in cond["args"])
    if op == "not":
        return not evaluate(cond["args"][0], value_of)
    if op == "truthy":
        return bool(value_of(cond["left"]))
    return bool(_OPS[op](value_of(cond["left"]), value_of(cond["right"])))


def upstream_steps(ref: dict[str, Any]) -> set[str]:
    if "output" in ref:
        return {ref["output"]}
    if "list" in ref:
        return set().union(*(upstream_steps(r) for r in ref["list"])) if ref["list"] else set()
    if "dict" in ref:
        vals = list(ref["dict"].values())
        return set().union(*(upstream_steps(r) for r in vals)) if vals else set()
    return set()


def condition_steps(cond: dict[str, Any] | None) -> set[str]:
    if not cond:
        return set()
    out: set[str] = set()
    for key in ("left", "right"):
        if key in cond:
            out |= upstream_steps(cond[key])
    for c in cond.get("args", []):
        out |= condition_steps(c)
    return out
