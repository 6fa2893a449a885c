"""Routes that run code on the server: code packages, submitting, resuming and deleting
runs. Thin, like ``_routes.py``: access is decided by ``_access.ACCESS``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import Field

from insitu.server import _packages, _remote_runs
from insitu.server._access import API
from insitu.server._routes import Text, _client, _store, _who, _Write, authorize

runs_router = APIRouter(prefix=API, dependencies=[Depends(authorize)])


class RunIn(_Write):
    spec: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)
    package: Text | None = Field(default=None, max_length=80)
    no_cache: bool = False
    labels: dict[str, Any] = Field(default_factory=dict)


def _wake(request: Request) -> None:
    """A pending run is written: the supervisor looks now rather than at its next tick."""
    sup = getattr(request.app.state, "supervisor", None)
    if sup is not None:
        sup.wake()


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        _packages.check_size(int(declared), limit)
    chunks: list[bytes] = []
    got = 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > limit:
            _packages.check_size(got, limit)
        chunks.append(chunk)
    return b"".join(chunks)


@runs_router.put("/projects/{project}/packages/{digest}", status_code=201,
                 responses={200: {"description": "the package existed already"}})
async def put_package(request: Request, project: str, digest: str) -> Response:
    """Upload a code package (a zip; body of Content-Type application/zip)."""
    _packages.parse_digest(digest)
    limit: int = request.app.state.max_package
    data = await _body(request, limit)
    view, new = await run_in_threadpool(_put, request, project, digest, data, limit)
    return JSONResponse(view, status_code=201 if new else 200)


def _put(request: Request, project: str, digest: str, data: bytes, limit: int
         ) -> tuple[dict[str, Any], bool]:
    from insitu.server._domain import _project, audit

    store = _store(request)
    _project(store, project)
    view, new = _packages.put_package(store, project, digest, data, limit=limit)
    if new:
        store.put(audit(_who(request), "package.put", project=project,
                        obj=f"package/{view['digest']}", client=_client(request),
                        detail={"size": view["size"]}))
    return view, new


@runs_router.get("/projects/{project}/packages/{digest}")
def get_package(request: Request, project: str, digest: str) -> dict[str, Any]:
    from insitu.server._domain import _project

    _project(_store(request), project)
    return _packages.describe(_packages.get_package(_store(request), digest))


@runs_router.post("/projects/{project}/runs", status_code=201)
def submit_run(request: Request, project: str, body: RunIn) -> dict[str, Any]:
    view = _remote_runs.submit(
        _store(request), _who(request), project, spec=body.spec, params=body.params,
        package=body.package, no_cache=body.no_cache, labels=body.labels,
        backend=request.app.state.backend, client=_client(request),
        files_of=request.app.state.package_files)
    _wake(request)
    return view


class RerunIn(_Write):
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="parameters to change; the others are the "
                                               "run's")


@runs_router.post("/projects/{project}/runs/{run_id}/rerun", status_code=201)
def rerun_run(request: Request, project: str, run_id: str, body: RerunIn) -> dict[str, Any]:
    """A new run of this run's spec and code package with edited parameters."""
    view = _remote_runs.rerun(
        _store(request), _who(request), project, run_id, params=body.params,
        backend=request.app.state.backend, client=_client(request),
        files_of=request.app.state.package_files)
    _wake(request)
    return view


@runs_router.post("/projects/{project}/runs/{run_id}/resume")
def resume_run(request: Request, project: str, run_id: str) -> dict[str, Any]:
    view = _remote_runs.resume(_store(request), _who(request), project, run_id,
                               _client(request))
    _wake(request)
    return view


@runs_router.delete("/projects/{project}/runs/{run_id}", status_code=204)
def delete_run(request: Request, project: str, run_id: str) -> Response:
    _remote_runs.delete(_store(request), _who(request), project, run_id, _client(request))
    return Response(status_code=204)
