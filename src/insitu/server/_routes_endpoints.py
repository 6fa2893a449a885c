"""The routes of endpoints (``/api/v1/projects/{project}/endpoints``): settings through
``_endpoints``, and the door to each endpoint's serving process: the OIP v2 and KServe v1
requests under ``.../endpoints/{name}/v2/...`` and ``.../v1/...`` are passed, with their
bodies untouched, to the process's Unix socket. Access rules are in ``_access.ACCESS``
(viewers call the model; editors change endpoints).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from insitu._config import load_config
from insitu.errors import InsituError, NotFound, TooLarge, Unavailable, UserError
from insitu.server import _endpoints as E
from insitu.server._access import API
from insitu.server._endpoint_runner import never_fits
from insitu.server._routes import Text, _client, _store, _who, _Write, authorize
from insitu.store import EndpointStatusRecord


class TrafficIn(_Write):
    canary: int | None = Field(default=None, ge=1)
    percent: float = 0.0
    shadow: int | None = Field(default=None, ge=1)
    shadow_percent: float = 100.0
    header: Text | None = Field(default=None, max_length=100)
    routes: dict[str, int] = Field(default_factory=dict)


class BatchingIn(_Write):
    enabled: bool = True
    max_batch_size: int = 32
    max_latency_ms: float = 0.0


class PayloadsIn(_Write):
    sample: float = 0.0
    max_bytes: int = 64 * 1024


class SettingsIn(_Write):
    min_replicas: int | None = Field(default=None, ge=0, le=64)
    max_replicas: int | None = Field(default=None, ge=1, le=64)
    target_concurrency: float | None = Field(default=None, gt=0)
    idle_seconds: float | None = Field(default=None, gt=0)
    cpu: float | None = Field(default=None, gt=0, description="CPUs per replica")
    memory: int | None = Field(default=None, description="bytes per replica (a limit)")
    gpu: float | None = Field(default=None, gt=0, description="GPUs per replica")
    traffic: TrafficIn | None = None
    batching: BatchingIn | None = None
    payloads: PayloadsIn | None = None
    max_body_bytes: int | None = Field(default=None, ge=1)

    def config(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"name", "model"})


class EndpointIn(SettingsIn):
    name: Text = Field(max_length=63)
    model: Text = Field(max_length=300, examples=["fraud@champion"])


class EndpointChange(SettingsIn):
    model: Text | None = Field(default=None, max_length=300)


router = APIRouter(prefix=f"{API}/projects/{{project}}/endpoints",
                   dependencies=[Depends(authorize)], tags=["endpoints"])


def _wake(request: Request) -> None:
    sup = getattr(request.app.state, "supervisor", None)
    if sup is not None:
        sup.wake()


@router.post("", status_code=201)
def create(request: Request, project: str, body: EndpointIn) -> dict[str, Any]:
    out = E.create(_store(request), _who(request), project, name=body.name, model=body.model,
                   config=body.config(), client=_client(request), fits=never_fits)
    _wake(request)
    return out


@router.get("")
def endpoints(request: Request, project: str) -> list[dict[str, Any]]:
    return E.list_endpoints(_store(request), project)


@router.get("/{name}")
def endpoint(request: Request, project: str, name: str) -> dict[str, Any]:
    """The endpoint, its status and (when it runs) its replicas as its process sees them."""
    out = E.get(_store(request), project, name)
    if out["status"]["state"] == "running":
        try:
            with httpx.Client(transport=httpx.HTTPTransport(
                    uds=E.socket_path(load_config().home, project, name)),
                    base_url="http://endpoint", timeout=10) as c:
                out["live"] = c.get("/admin/endpoint").json()
        except (httpx.HTTPError, ValueError):
            out["live"] = None
    return out


@router.patch("/{name}")
def update(request: Request, project: str, name: str, body: EndpointChange) -> dict[str, Any]:
    """Change the model or settings; the endpoint is restarted with them."""
    out = E.update(_store(request), _who(request), project, name, model=body.model,
                   config=body.config(), client=_client(request), fits=never_fits)
    _wake(request)
    return out


@router.delete("/{name}", status_code=204)
def delete(request: Request, project: str, name: str) -> Response:
    E.delete(_store(request), _who(request), project, name, _client(request))
    _wake(request)
    return Response(status_code=204)


@router.get("/{name}/logs")
def logs(request: Request, project: str, name: str,
         tail: int = Query(default=200, ge=1, le=100_000),
         payloads: int = Query(default=0, ge=0, le=10_000)) -> dict[str, Any]:
    """The tail of the serving process's log and of each replica's, and with ``payloads``
    the newest logged payloads."""
    E.get(_store(request), project, name)
    return E.logs(load_config().home, project, name, tail=tail, payloads=payloads)


# -- traffic: applied live by the serving process, kept in the database for restarts --------

async def _admin(project: str, name: str, method: str, path: str,
                 body: dict[str, Any] | None = None) -> dict[str, Any]:
    import aiohttp

    sock = E.socket_path(load_config().home, project, name)
    try:
        async with _session(sock).request(method, f"http://endpoint{path}",
                                          json=body) as r:
            status, raw = r.status, await r.read()
    except (aiohttp.ClientError, OSError):
        await _drop_session(sock)
        raise Unavailable(f"endpoint {name!r} is not running now, so its traffic cannot "
                          "change", hint=f"see why with insitu endpoints show {name}") from None
    doc: dict[str, Any] = json.loads(raw)
    if status >= 400:
        raise UserError(str(doc.get("error")))
    return doc


@router.put("/{name}/traffic")
async def traffic(request: Request, project: str, name: str, body: TrafficIn
                  ) -> dict[str, Any]:
    """Move traffic between versions (canary, shadow, A/B routes), with no restart."""
    t = body.model_dump()
    E.get(_store(request), project, name)
    await _admin(project, name, "PUT", "/admin/traffic", t)
    E.record_traffic(_store(request), _who(request), project, name, action="traffic",
                     traffic=t, model=None, client=_client(request))
    return E.get(_store(request), project, name)


@router.post("/{name}/promote")
async def promote(request: Request, project: str, name: str) -> dict[str, Any]:
    """The canary becomes the stable version (the alias moves to it in the registry)."""
    rec = E.record_of(_store(request), project, name)
    doc = await _admin(project, name, "POST", "/admin/promote")
    stable = int(doc.get("stable") or 0)
    model = rec.model if "@" in rec.model else f"{rec.model.rsplit(':', 1)[0]}:{stable}"
    t = {**(rec.config.get("traffic") or {}), "canary": None, "percent": 0.0}
    E.record_traffic(_store(request), _who(request), project, name, action="promote",
                     traffic=t, model=model, client=_client(request))
    return E.get(_store(request), project, name)


@router.post("/{name}/rollback")
async def rollback(request: Request, project: str, name: str) -> dict[str, Any]:
    """All traffic back to the stable version."""
    rec = E.record_of(_store(request), project, name)
    await _admin(project, name, "POST", "/admin/rollback")
    t = {**(rec.config.get("traffic") or {}), "canary": None, "percent": 0.0}
    E.record_traffic(_store(request), _who(request), project, name, action="rollback",
                     traffic=t, model=None, client=_client(request))
    return E.get(_store(request), project, name)


# -- the door to the model ------------------------------------------------------------------

_SESSIONS: dict[str, Any] = {}   # socket path -> aiohttp session (its connections kept)
_DROP = frozenset({"authorization", "cookie", "host", "content-length", "connection",
                   "transfer-encoding", "accept-encoding", "keep-alive"})


def _session(path: str) -> Any:
    """The pooled client of one endpoint's socket (aiohttp: measured here at about 0.45 ms
    a request over a Unix socket, where httpx's async client took about 7 ms)."""
    import aiohttp

    s = _SESSIONS.get(path)
    if s is None or s.closed:
        s = _SESSIONS[path] = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=path, limit=256),
            timeout=aiohttp.ClientTimeout(total=300, connect=5), auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"))
    return s


async def _drop_session(path: str) -> None:
    s = _SESSIONS.pop(path, None)
    if s is not None:
        await s.close()


def _why_not(request: Request, project: str, name: str) -> InsituError:
    """Why an endpoint's process did not answer: it does not exist, or its state."""
    try:
        E.get(_store(request), project, name)
    except NotFound as e:
        return e
    got = _store(request).select(EndpointStatusRecord, project=project, name=name)
    state = got[0].state if got else "pending"
    why = f" ({got[0].reason.splitlines()[0]})" if got and got[0].reason else ""
    return Unavailable(f"endpoint {name!r} is {state}{why}, not answering now",
                       hint=f"insitu endpoints show {name} says why; try again shortly")


MAX_BODY = 256 * 2**20   # the most the server reads of one request to an endpoint


async def _body(request: Request) -> bytes:
    """The request's body, refused (413) past :data:`MAX_BODY` before it is all read; the
    endpoint applies its own, usually lower, limit."""
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise TooLarge(f"the request body is over the server's limit of {MAX_BODY} bytes "
                           "for a request to an endpoint", size=size, limit=MAX_BODY,
                           hint="send fewer rows per request")
        parts.append(chunk)
    return b"".join(parts)


async def _proxy(request: Request, project: str, name: str, path: str) -> Response:
    import aiohttp

    t0 = time.perf_counter()
    headers = {k: v for k, v in request.headers.items() if k not in _DROP}
    body = await _body(request)
    sock = E.socket_path(load_config().home, project, name)
    for again in (True, False):
        try:
            async with _session(sock).request(request.method, f"http://endpoint{path}",
                                              data=body, headers=headers) as r:
                status, raw = r.status, await r.read()
                ctype = r.headers.get("content-type", "application/json")
                version = r.headers.get("x-insitu-version")
            break
        except (aiohttp.ClientError, OSError):
            # its process restarted (the kept connections are dead) or is not there
            await _drop_session(sock)
            if not (again and os.path.exists(sock)):
                raise _why_not(request, project, name) from None
    out = {"content-type": ctype}
    if version:
        out["x-insitu-version"] = version
    metrics = getattr(request.app.state, "endpoint_metrics", None)
    if metrics is not None:
        metrics.observe(project, name, status, time.perf_counter() - t0)
    return Response(raw, status, headers=out)


@router.api_route("/{name}/v2/{path:path}", methods=["GET", "POST"],
                  include_in_schema=True)
async def oip(request: Request, project: str, name: str, path: str) -> Response:
    """Open Inference Protocol v2 (REST) of the endpoint: ``v2/models/{model}/infer``,
    metadata, ready, ``v2/health/live``; the model's name is the endpoint's."""
    return await _proxy(request, project, name, f"/v2/{path}")


@router.post("/{name}/v1/{path:path}")
async def kserve_v1(request: Request, project: str, name: str, path: str) -> Response:
    """KServe v1: ``v1/models/{model}:predict``."""
    return await _proxy(request, project, name, f"/v1/{path}")
