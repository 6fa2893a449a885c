"""Endpoints on the server: checks, the stored settings, and the domain functions of the
endpoint routes (create, list, show, update, delete, traffic).

An endpoint is a registered model of its project served by a process the server runs
(``_endpoint_runner``); its settings (``EndpointRecord.config``) turn into the serving
package's :class:`~insitu.serving.EndpointSpec` through :func:`spec_of`, the one place
that knows both shapes. Every change is audited in the transaction that writes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insitu.errors import Conflict, NotFound, UserError
from insitu.server._access import Principal
from insitu.server._domain import _project, audit, check_name
from insitu.store import EndpointRecord, EndpointStatusRecord, ModelRecord, Store

if TYPE_CHECKING:
    from insitu.serving import EndpointSpec

DEFAULT_CPU = 0.5            # CPUs reserved per replica when none are asked for
_CONFIG_KEYS = ("min_replicas", "max_replicas", "target_concurrency", "idle_seconds", "cpu",
                "memory", "gpu", "traffic", "batching", "payloads", "max_body_bytes")


# -- settings -------------------------------------------------------------------------------

def spec_of(rec: EndpointRecord) -> EndpointSpec:
    """The serving spec of a stored endpoint (raises UserError for bad settings)."""
    from insitu.serving import (
        Autoscaling,
        Batching,
        EndpointSpec,
        PayloadLogging,
        Resources,
        Traffic,
    )

    c = rec.config
    t = dict(c.get("traffic") or {})
    t["routes"] = {str(k): int(v) for k, v in (t.get("routes") or {}).items()}
    b = c.get("batching") or {}
    p = c.get("payloads") or {}
    return EndpointSpec(
        model=rec.model, name=rec.name, traffic=Traffic(**t),
        autoscaling=Autoscaling(min_replicas=int(c.get("min_replicas", 1)),
                                max_replicas=int(c.get("max_replicas", 1)),
                                target_concurrency=float(c.get("target_concurrency", 16.0)),
                                idle_seconds=float(c.get("idle_seconds", 300.0))),
        batching=Batching(**b),
        resources=Resources(memory=c.get("memory"), cpu=c.get("cpu"), gpu=c.get("gpu")),
        payloads=PayloadLogging(sample=float(p.get("sample", 0.0)),
                                max_bytes=int(p.get("max_bytes", 64 * 1024))),
        max_body_bytes=int(c.get("max_body_bytes", 16 * 2**20)))


def reserved(rec: EndpointRecord) -> dict[str, float]:
    """What the endpoint reserves on its node: its per-replica resources times its most
    replicas (what it may grow to)."""
    c = rec.config
    n = int(c.get("max_replicas", 1))
    cpu = c.get("cpu")
    return {"cpu": (DEFAULT_CPU if cpu is None else float(cpu)) * n,
            "memory": int(c.get("memory") or 0) * n, "gpu": float(c.get("gpu") or 0) * n}


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(config) - set(_CONFIG_KEYS))
    if unknown:
        raise UserError(f"unknown endpoint setting(s): {', '.join(unknown)}",
                        hint=f"settings are {', '.join(_CONFIG_KEYS)}")
    for key in ("cpu", "gpu"):
        v = config.get(key)
        if v is not None and not (isinstance(v, int | float) and 0 < v <= 4096):
            raise UserError(f"{key} per replica {v!r} is out of range",
                            hint=f"give a positive number, e.g. --{key} 0.5")
    mem = config.get("memory")
    if mem is not None and not (isinstance(mem, int) and mem >= 16 * 2**20):
        raise UserError(f"memory per replica {mem!r} is too small",
                        hint="give at least 16 MiB, e.g. --memory 512MiB")
    return config


def _versions_exist(store: Store, rec: EndpointRecord) -> None:
    """The model (of this project), its version and every version in the traffic exist,
    each with a runtime installed here, before anything is written."""
    from insitu.models import get_version
    from insitu.serving._registry import runtime_class

    spec = spec_of(rec)
    name = spec.model_name
    if not store.select(ModelRecord, project=rec.project, name=name):
        have = sorted(m.name for m in store.select(ModelRecord, project=rec.project))
        raise NotFound(f"project {rec.project!r} has no model {name!r}",
                       hint=("its models: " + ", ".join(have[:20])) if have else
                       "register one first (insitu models ls lists them)")
    mv = get_version(rec.model, store=store, project=rec.project)
    for v in {mv.version, *spec.traffic.versions()}:
        got = get_version(f"{name}:{v}", store=store, project=rec.project)
        runtime_class(got.flavor, what=f"model {name}:{v}")


# -- where its process listens --------------------------------------------------------------

def socket_path(home: Path, project: str, name: str) -> str:
    """The Unix socket of an endpoint's serving process: in a directory only the server's
    user may enter (nothing listens on the network); short, as socket paths must be."""
    key = hashlib.sha256(f"{project}/{name}".encode()).hexdigest()[:16]
    base = Path(home) / "ep"
    if len(str(base)) > 80:
        base = Path(tempfile.gettempdir()) / f"insitu-ep-{os.getuid()}"
    return str(base / f"{key}.sock")


def endpoint_dir(home: Path, project: str, name: str) -> Path:
    """Where an endpoint's logs (its process's and each replica's) and payloads are kept."""
    return Path(home) / "endpoints" / project / name


# -- the API's calls ------------------------------------------------------------------------

def _endpoint(store: Store, project: str, name: str) -> EndpointRecord:
    _project(store, project)
    found = store.select(EndpointRecord, project=project, name=name)
    if not found:
        raise NotFound(f"project {project!r} has no endpoint {name!r}",
                       hint=f"list them with GET /api/v1/projects/{project}/endpoints "
                            "(insitu endpoints ls)")
    return found[0]


def view(store: Store, rec: EndpointRecord, status: EndpointStatusRecord | None = None
         ) -> dict[str, Any]:
    if status is None:
        got = store.select(EndpointStatusRecord, project=rec.project, name=rec.name)
        status = got[0] if got else None
    d = dataclasses.asdict(rec)
    d["reserved"] = reserved(rec)
    d["path"] = f"/api/v1/projects/{rec.project}/endpoints/{rec.name}"
    if status is None or status.generation != rec.generation:
        d["status"] = {"state": "pending", "reason": "not placed yet", "restarts": 0,
                       "pid": None, "node": None, "placement": {}, "started_at": None}
    else:
        s = dataclasses.asdict(status)
        for k in ("project", "name", "generation"):
            s.pop(k)
        d["status"] = s
    return d


def create(store: Store, who: Principal, project: str, *, name: str, model: str,
           config: dict[str, Any], client: str | None, fits: Any = None) -> dict[str, Any]:
    """Write a new endpoint (the server starts it). ``fits(rec)`` returns why it can never
    be placed on any node, or "" (then it is written, and waits if the nodes are busy)."""
    _project(store, project)
    check_name("endpoint", name)
    now = time.time()
    rec = EndpointRecord(project=project, name=name, model=model,
                         config=_check_config(dict(config)), created_at=now, updated_at=now,
                         created_by=who.user, generation=1)
    _versions_exist(store, rec)
    if fits is not None:
        why = fits(rec)
        if why:
            raise UserError(f"endpoint {name!r} cannot be placed on any node of this server: "
                            f"{why}", hint="ask for less per replica (--cpu, --memory, --gpu) "
                                           "or fewer replicas (--max)")
    try:
        store.insert(rec, audit(who, "endpoint.create", project=project,
                                obj=f"endpoint/{name}", client=client,
                                detail={"model": model, "config": rec.config}))
    except Conflict:
        raise Conflict(f"project {project!r} has an endpoint {name!r} already",
                       hint="choose another name, or delete it first "
                            f"(insitu endpoints delete {name})") from None
    return view(store, rec)


def list_endpoints(store: Store, project: str) -> list[dict[str, Any]]:
    _project(store, project)
    status = {s.name: s for s in store.select(EndpointStatusRecord, project=project)}
    return [view(store, e, status.get(e.name))
            for e in sorted(store.select(EndpointRecord, project=project),
                            key=lambda e: e.name)]


def get(store: Store, project: str, name: str) -> dict[str, Any]:
    return view(store, _endpoint(store, project, name))


def update(store: Store, who: Principal, project: str, name: str, *, model: str | None,
           config: dict[str, Any], client: str | None, fits: Any = None) -> dict[str, Any]:
    """Change the model reference or settings; the server restarts the endpoint with them."""
    rec = _endpoint(store, project, name)
    merged = {**rec.config, **{k: v for k, v in config.items()}}
    new = dataclasses.replace(rec, model=model or rec.model, config=_check_config(merged),
                              updated_at=time.time(), generation=rec.generation + 1)
    _versions_exist(store, new)
    if fits is not None and (why := fits(new)):
        raise UserError(f"endpoint {name!r} cannot be placed on any node of this server: "
                        f"{why}", hint="ask for less per replica or fewer replicas")
    store.put(new, audit(who, "endpoint.update", project=project, obj=f"endpoint/{name}",
                         client=client, detail={"model": new.model, "changed": config}))
    return view(store, new)


def record_traffic(store: Store, who: Principal, project: str, name: str, *, action: str,
                   traffic: dict[str, Any], model: str | None, client: str | None
                   ) -> EndpointRecord:
    """Keep a traffic change (applied live by the caller) so a restart serves the same;
    the generation stays, so the server does not restart the endpoint for it."""
    rec = _endpoint(store, project, name)
    new = dataclasses.replace(rec, model=model or rec.model,
                              config={**rec.config, "traffic": traffic}, updated_at=time.time())
    store.put(new, audit(who, f"endpoint.{action}", project=project, obj=f"endpoint/{name}",
                         client=client, detail={"traffic": traffic, "model": new.model}))
    return new


def delete(store: Store, who: Principal, project: str, name: str, client: str | None) -> None:
    """Delete the endpoint; the server stops its process (its logs stay on disk)."""
    _endpoint(store, project, name)
    store.delete(EndpointRecord, project=project, name=name)
    store.put(audit(who, "endpoint.delete", project=project, obj=f"endpoint/{name}",
                    client=client))


def record_of(store: Store, project: str, name: str) -> EndpointRecord:
    return _endpoint(store, project, name)


def _tail_lines(path: Path, n: int, *, chunk: int = 4 * 2**20) -> list[str]:
    """The last ``n`` whole lines of a file (read from its last ``chunk`` bytes)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            start = max(0, f.tell() - chunk)
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    if start > 0 and lines:
        lines = lines[1:]  # a line cut by the start of the chunk
    return lines[-n:]


def logs(home: Path, project: str, name: str, *, tail: int, payloads: int) -> dict[str, Any]:
    """The last ``tail`` lines of the serving process's log and of each replica's log
    (kept on disk after the endpoint is gone), and the newest ``payloads`` payload rows."""
    where = endpoint_dir(home, project, name)
    replicas = {}
    for f in sorted((where / "replicas").glob("**/*.log")):
        replicas[str(f.relative_to(where / "replicas"))] = _tail_lines(f, tail)
    out: dict[str, Any] = {"endpoint": _tail_lines(where / "endpoint.log", tail),
                           "replicas": replicas, "dir": str(where)}
    if payloads:
        import orjson

        rows: list[dict[str, Any]] = []
        for f in sorted((where / "payloads" / name).glob("*.jsonl"), reverse=True):
            for line in reversed(_tail_lines(f, payloads)):
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    continue  # a line being written
            if len(rows) >= payloads:
                break
        out["payloads"] = sorted(rows[:payloads], key=lambda r: r.get("time") or 0)
    return out
