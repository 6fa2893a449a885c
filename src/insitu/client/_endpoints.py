"""Endpoints on a server, from Python and the CLI: a registered model served by the server,
behind its API (``/api/v1/projects/{project}/endpoints``). Each function takes a
:class:`Client` (its project) and returns the API's JSON view."""

from __future__ import annotations

from typing import Any

from insitu.client._http import Client
from insitu.errors import UserError


def _version(c: Client, model: str, value: str | int, what: str) -> int:
    """A version of ``model``'s registered model: 4, "4", "NAME:4" or "NAME@ALIAS" (looked
    up in the server's registry)."""
    base = model.split("@", 1)[0].rsplit(":", 1)[0]
    text = str(value)
    if "@" in text:
        name, alias = text.split("@", 1)
        if name and name != base:
            raise UserError(f"{what} {text!r} names model {name!r}; this endpoint serves "
                            f"{base!r}", hint=f"give a version of {base}, e.g. {base}:2")
        doc = c.get(c.in_project("models", base))
        for v in doc.get("versions", []):
            if alias in v.get("aliases", []):
                return int(v["version"])
        raise UserError(f"model {base!r} has no alias {alias!r}",
                        hint=f"see its aliases with insitu models show {base}")
    name, _, num = text.rpartition(":")
    if name and name != base:
        raise UserError(f"{what} {text!r} names model {name!r}; this endpoint serves {base!r}",
                        hint=f"give a version of {base}, e.g. {base}:2")
    try:
        v = int(num)
    except ValueError:
        raise UserError(f"{what} {text!r} is not a version",
                        hint=f"e.g. {base}:2 or {base}@challenger") from None
    if v < 1:
        raise UserError(f"{what} {text!r} is not a version (versions start at 1)")
    return v


def settings(c: Client, model: str, *, replicas: int | None = None,
             min_replicas: int | None = None, max_replicas: int | None = None,
             cpu: float | None = None, memory: int | str | None = None,
             gpu: float | None = None, canary: str | int | None = None,
             canary_percent: float | None = None, shadow: str | int | None = None,
             shadow_percent: float | None = None, target_concurrency: float | None = None,
             idle_seconds: float | None = None, payloads: float | None = None
             ) -> dict[str, Any]:
    """The API's settings for these arguments (only those given)."""
    from insitu._units import parse_memory

    out: dict[str, Any] = {}
    if replicas is not None:
        if min_replicas is not None or max_replicas is not None:
            raise UserError("give --replicas N, or --min and --max, not both",
                            hint="e.g. --replicas 2, or --min 0 --max 8")
        min_replicas = max_replicas = replicas
    for key, value in (("min_replicas", min_replicas), ("max_replicas", max_replicas),
                       ("cpu", cpu), ("gpu", gpu), ("target_concurrency", target_concurrency),
                       ("idle_seconds", idle_seconds)):
        if value is not None:
            out[key] = value
    if memory is not None:
        out["memory"] = parse_memory(memory, what="--memory") if isinstance(memory, str) \
            else int(memory)
    traffic: dict[str, Any] = {}
    if canary is not None:
        traffic["canary"] = _version(c, model, canary, "--canary")
        traffic["percent"] = 10.0 if canary_percent is None else canary_percent
    elif canary_percent is not None:
        raise UserError("a canary percentage without a canary",
                        hint="name the canary version, e.g. --canary fraud:4")
    if shadow is not None:
        traffic["shadow"] = _version(c, model, shadow, "--shadow")
        if shadow_percent is not None:
            traffic["shadow_percent"] = shadow_percent
    if traffic:
        out["traffic"] = traffic
    if payloads is not None:
        out["payloads"] = {"sample": payloads}
    return out


def create(c: Client, name: str, model: str, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = c.post(c.in_project("endpoints"),
                                 {"name": name, "model": model, **settings(c, model, **kw)})
    return doc


def list_endpoints(c: Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = c.get(c.in_project("endpoints"))
    return out


def get(c: Client, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = c.get(c.in_project("endpoints", name))
    return doc


def update(c: Client, name: str, model: str | None = None, **kw: Any) -> dict[str, Any]:
    current = model or get(c, name)["model"]
    body = settings(c, current, **kw)
    if model is not None:
        body["model"] = model
    doc: dict[str, Any] = c.patch(c.in_project("endpoints", name), body)
    return doc


def traffic(c: Client, name: str, *, canary: str | int | None = None, percent: float = 10.0,
            shadow: str | int | None = None, shadow_percent: float = 100.0,
            header: str | None = None, routes: dict[str, str | int] | None = None
            ) -> dict[str, Any]:
    model = get(c, name)["model"]
    body: dict[str, Any] = {
        "canary": _version(c, model, canary, "--canary") if canary is not None else None,
        "percent": percent if canary is not None else 0.0,
        "shadow": _version(c, model, shadow, "--shadow") if shadow is not None else None,
        "shadow_percent": shadow_percent, "header": header,
        "routes": {k: _version(c, model, v, "--route") for k, v in (routes or {}).items()}}
    doc: dict[str, Any] = c.put(c.in_project("endpoints", name, "traffic"), body)
    return doc


def promote(c: Client, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = c.post(c.in_project("endpoints", name, "promote"))
    return doc


def rollback(c: Client, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = c.post(c.in_project("endpoints", name, "rollback"))
    return doc


def delete(c: Client, name: str) -> None:
    c.delete(c.in_project("endpoints", name))


def logs(c: Client, name: str, *, tail: int = 200, payloads: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = c.get(c.in_project("endpoints", name, "logs"), tail=tail,
                                payloads=payloads or None)
    return doc


def url(c: Client, name: str) -> str:
    """The endpoint's base URL for OIP v2 (``URL/v2/models/NAME/infer``); send the same
    token (``Authorization: Bearer ...``)."""
    return f"{c.server.rstrip('/')}{c.in_project('endpoints', name)}"
