"""The HTTP face of one endpoint for ``insitu serve``: Open Inference Protocol v2 over REST,
KServe v1 ``:predict``, ``/metrics``, and the traffic controls under ``/admin`` (loopback
only by default, like the server itself).

The infer routes are plain ASGI, in front of Starlette's router: a request body goes to a
replica untouched, so the front process pays for HTTP and routing only. Every error is an
OIP error body ``{"error": "..."}`` with its status; the process stays up.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from insitu.errors import UserError
from insitu.serving._endpoint import Answer, Endpoint
from insitu.serving._traffic import Traffic

_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_V1 = re.compile(r"^/v1/models/([^/:]+):predict$")
VERSION_HEADER = "x-insitu-version"
_JSON = [(b"content-type", b"application/json")]


def _json(doc: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status, media_type="application/json")


def _err(e: BaseException) -> Response:
    status = int(getattr(e, "status", 400 if isinstance(e, UserError) else 500))
    return _json({"error": str(e)}, status)


def create_app(endpoint: Endpoint, *, start: bool = True) -> Any:
    """The ASGI app serving ``endpoint`` (started and closed with the app's lifespan)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if start:
            await endpoint.start()
        try:
            yield
        finally:
            await endpoint.close()

    async def live(_: Request) -> Response:
        return _json({"live": True})

    async def ready(_: Request) -> Response:
        ok = endpoint.ready(endpoint.name)
        return _json({"ready": ok}, 200 if ok else 503)

    async def server_meta(_: Request) -> Response:
        from importlib.metadata import version

        return _json({"name": "insitu", "version": version("insitu"), "extensions": []})

    async def model_meta(req: Request) -> Response:
        try:
            return _json(await endpoint.metadata(req.path_params["name"],
                                                 req.path_params.get("version")))
        except Exception as e:  # noqa: BLE001 - answered as an OIP error
            return _err(e)

    async def model_ready(req: Request) -> Response:
        try:
            ok = endpoint.ready(req.path_params["name"], req.path_params.get("version"))
        except Exception as e:  # noqa: BLE001
            return _err(e)
        return _json({"name": req.path_params["name"], "ready": ok}, 200 if ok else 503)

    async def metrics(_: Request) -> Response:
        return Response(endpoint.metrics.render(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    async def describe(_: Request) -> Response:
        return _json(endpoint.describe())

    async def traffic(req: Request) -> Response:
        try:
            doc = orjson.loads(await req.body())
            if not isinstance(doc, dict):
                raise UserError("send a JSON object")
            fields = {"canary", "percent", "shadow", "shadow_percent", "header", "routes"}
            unknown = set(doc) - fields
            if unknown:
                raise UserError(f"unknown field(s) {', '.join(sorted(unknown))}",
                                hint="fields: " + ", ".join(sorted(fields)))
            endpoint.set_traffic(Traffic(**doc))
        except orjson.JSONDecodeError as e:
            return _json({"error": f"the body is not JSON: {e}"}, 400)
        except (UserError, TypeError) as e:
            return _json({"error": str(e)}, 400)
        return _json(endpoint.describe()["traffic"])

    async def promote(_: Request) -> Response:
        try:
            return _json({"stable": endpoint.promote()})
        except UserError as e:
            return _json({"error": str(e)}, 409)

    async def rollback(_: Request) -> Response:
        try:
            return _json({"stable": endpoint.rollback()})
        except UserError as e:
            return _json({"error": str(e)}, 409)

    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready),
        Route("/v2", server_meta),
        Route("/v2/models/{name}", model_meta),
        Route("/v2/models/{name}/versions/{version}", model_meta),
        Route("/v2/models/{name}/ready", model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready),
        Route("/metrics", metrics),
        Route("/admin/endpoint", describe),
        Route("/admin/traffic", traffic, methods=["PUT"]),
        Route("/admin/promote", promote, methods=["POST"]),
        Route("/admin/rollback", rollback, methods=["POST"]),
    ]
    inner = Starlette(routes=routes, lifespan=lifespan)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            m = _INFER.match(path)
            m1 = None if m else _V1.match(path)
            if m or m1:
                body = await _body(receive, endpoint.spec.max_body_bytes)
                header = None
                h = endpoint.traffic.header
                if h:
                    hb = h.encode()
                    header = next((v.decode("latin-1") for k, v in scope["headers"]
                                   if k == hb), None)
                if body is None:
                    ans = Answer(413, orjson.dumps({"error": (
                        f"the request body is over this endpoint's limit of "
                        f"{endpoint.spec.max_body_bytes} bytes; send fewer rows per request, "
                        "or raise --max-body-bytes")}), None)
                elif m:
                    ans = await endpoint.infer(m.group(1), body, version=m.group(2),
                                               header=header)
                else:
                    assert m1 is not None
                    ans = await endpoint.infer(m1.group(1), body, v1=True, header=header)
                headers = list(_JSON)
                if ans.version is not None:
                    headers.append((VERSION_HEADER.encode(),
                                    f"{endpoint.model}:{ans.version}".encode()))
                headers.append((b"content-length", str(len(ans.body)).encode()))
                await send({"type": "http.response.start", "status": ans.status,
                            "headers": headers})
                await send({"type": "http.response.body", "body": ans.body})
                return
        await inner(scope, receive, send)

    return app


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it is over ``limit`` (the rest is not kept)."""
    chunks = []
    size = 0
    more = True
    while more:
        msg = await receive()
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        more = msg.get("more_body", False)
    if size > limit:
        return None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
