"""The routes of notebooks (``/api/v1/projects/{project}/notebooks``) and the proxy to each
notebook's own jupyter-server (HTTP, and the kernels' WebSockets), which listens on a unix
socket with a token only this server knows. Every request through the proxy is checked
against the project's roles first (``_access.ACCESS``); the notebook's token is added on
the way in and the caller's credentials never reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import anyio.to_thread
import httpx
from fastapi import APIRouter, Depends, Request, Response, WebSocket
from pydantic import Field

from insitu.errors import InsituError, NotFound, UserError
from insitu.server import _domain as D
from insitu.server import _sessions as S
from insitu.server._access import ACCESS, API, check
from insitu.server._routes import Text, _client, _store, _who, _Write, authorize
from insitu.store import NotebookRecord

PREFIX = f"{API}/projects/{{project}}/notebooks"
PROXY = f"{PREFIX}/{{name}}/{{path:path}}"
PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_HOP = {"host", "authorization", "cookie", "content-length", "connection", "keep-alive",
        "transfer-encoding", "upgrade", "origin", "te", "trailer", "proxy-authorization"}
_HOP_BACK = {"content-length", "content-encoding", "transfer-encoding", "connection",
             "set-cookie", "keep-alive"}


class NotebookIn(_Write):
    name: Text = Field(max_length=63)
    cpu: float = Field(default=1.0, gt=0, le=1024)
    memory: Text = Field(default="2GiB", max_length=40, examples=["8GiB"])
    gpu: float = Field(default=0.0, ge=0, le=64)
    near: Text | None = Field(default=None, max_length=200)
    idle: float = Field(default=3600.0, ge=0, description="seconds idle before it is "
                                                           "stopped; 0: never")


def _manager(request: Request | WebSocket) -> Any:
    m = getattr(request.app.state, "notebooks", None)
    if m is None:
        raise InsituError("this server process does not run notebooks",
                          hint="notebooks are served by `insitu server` with --workers 1")
    return m


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


router = APIRouter(prefix=PREFIX, dependencies=[Depends(authorize)], tags=["notebooks"])


@router.get("")
def ls(request: Request, project: str) -> list[dict[str, Any]]:
    from insitu.notebooks import view

    return [view(r, _base(request)) for r in _manager(request).list(project)]


@router.post("", status_code=201)
def start(request: Request, project: str, body: NotebookIn) -> dict[str, Any]:
    from insitu._units import parse_memory
    from insitu.notebooks import view

    memory = parse_memory(body.memory, what="memory")
    who = _who(request)
    rec = _manager(request).start(project, body.name, cpu=body.cpu, memory=memory,
                                  gpu=body.gpu, near=body.near, idle_s=body.idle,
                                  user=who.user)
    _store(request).put(D.audit(who, "notebook.start", project=project,
                                obj=f"notebook/{body.name}", client=_client(request),
                                detail={"cpu": body.cpu, "memory": memory, "gpu": body.gpu,
                                        "state": rec.state}))
    return view(rec, _base(request))


@router.get("/{name}")
def show(request: Request, project: str, name: str) -> dict[str, Any]:
    from insitu.notebooks import view

    return view(_manager(request).get(project, name), _base(request))


@router.post("/{name}/stop")
def stop(request: Request, project: str, name: str) -> dict[str, Any]:
    from insitu.notebooks import view

    rec = _manager(request).stop(project, name, reason="stopped by " + _who(request).user)
    _store(request).put(D.audit(_who(request), "notebook.stop", project=project,
                                obj=f"notebook/{name}", client=_client(request)))
    return view(rec, _base(request))


@router.delete("/{name}", status_code=204)
def delete(request: Request, project: str, name: str) -> Response:
    _manager(request).delete(project, name)
    _store(request).put(D.audit(_who(request), "notebook.delete", project=project,
                                obj=f"notebook/{name}", client=_client(request)))
    return Response(status_code=204)


def _running(request: Request | WebSocket, project: str, name: str) -> NotebookRecord:
    rec: NotebookRecord = _manager(request).get(project, name)
    if rec.state != "running" or not rec.sock or not rec.secret:
        raise NotFound(f"notebook {name!r} is {rec.state}, not running",
                       hint=f"start it: insitu notebook start {name} --project {project}")
    return rec


@router.api_route("/{name}/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
async def proxy(request: Request, project: str, name: str, path: str) -> Response:
    """The notebook's JupyterLab and its REST API, for the project's editors."""
    rec = await anyio.to_thread.run_sync(_running, request, project, name)
    await anyio.to_thread.run_sync(_manager(request).touch, project, name)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
    headers["authorization"] = f"token {rec.secret}"
    url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    transport = httpx.AsyncHTTPTransport(uds=rec.sock)
    async with httpx.AsyncClient(transport=transport, base_url="http://notebook",
                                 timeout=120) as c:
        try:
            r = await c.request(request.method, url, headers=headers,
                                content=await request.body())
        except httpx.TransportError as e:
            raise InsituError(f"notebook {name!r} did not answer: {e}",
                              hint=f"see `insitu notebook show {name}`") from None
    back = {k: v for k, v in r.headers.items() if k.lower() not in _HOP_BACK}
    return Response(r.content, status_code=r.status_code, headers=back)


# -- WebSockets (kernels' channels, terminals) ---------------------------------------------

ws_router = APIRouter()


def _authorize_ws(ws: WebSocket) -> None:
    """The same decision as ``authorize``, for a WebSocket: a token in the Authorization
    header, or a login session's cookie from a page of this server (same Origin)."""
    rule = ACCESS[("WS", PROXY)]
    store = ws.app.state.store
    header, cookie = ws.headers.get("authorization"), ws.cookies.get(S.COOKIE)
    if header is None and cookie:
        origin, host = ws.headers.get("origin", ""), ws.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise UserError("a WebSocket with a session cookie must come from this server's "
                            "pages", hint="open the notebook from the server's own URL")
        who = S.identify(store, cookie)
    else:
        who = D.authenticate(store, header)
    check(rule, who, ws.path_params.get("project"))


@ws_router.websocket(PROXY)
async def proxy_ws(ws: WebSocket, project: str, name: str, path: str) -> None:
    from websockets.asyncio.client import unix_connect
    from websockets.exceptions import ConnectionClosed

    try:
        await anyio.to_thread.run_sync(_authorize_ws, ws)
        rec = await anyio.to_thread.run_sync(_running, ws, project, name)
    except UserError:
        await ws.close(code=1008)  # before accept: the client sees HTTP 403
        return
    await anyio.to_thread.run_sync(_manager(ws).touch, project, name)
    url = "ws://notebook" + ws.url.path + (f"?{ws.url.query}" if ws.url.query else "")
    protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")
                 if p.strip()]
    try:
        up = await unix_connect(rec.sock, url, max_size=None,
                                additional_headers={"Authorization": f"token {rec.secret}"},
                                subprotocols=protocols or None)
    except (OSError, Exception):  # noqa: BLE001 - the notebook refused or is gone
        await ws.close(code=1011)
        return
    await ws.accept(subprotocol=up.subprotocol)

    async def downstream() -> None:
        async for msg in up:
            if isinstance(msg, bytes):
                await ws.send_bytes(msg)
            else:
                await ws.send_text(msg)

    async def upstream() -> None:
        while True:
            m = await ws.receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("bytes") is not None:
                await up.send(m["bytes"])
            elif m.get("text") is not None:
                await up.send(m["text"])

    tasks = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except ConnectionClosed:
        pass
    finally:
        for t in tasks:
            t.cancel()
        await up.close()
        with contextlib.suppress(Exception):
            await ws.close()
