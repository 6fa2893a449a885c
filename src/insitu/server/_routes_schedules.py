"""The routes of schedules (``/api/v1/projects/{project}/schedules``): each reads its inputs
and calls one function of ``_schedules``. Access rules are in ``_access.ACCESS``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from insitu.server import _schedules as S
from insitu.server._access import API
from insitu.server._routes import Text, _client, _store, _who, _Write, authorize


def _now(request: Request) -> float:
    """The scheduler's clock: the one the loop reads, so views and backfills agree."""
    clock: S.Clock = getattr(request.app.state, "clock", None) or S.Clock()
    return clock.now()


def _backend(request: Request) -> str:
    return str(getattr(request.app.state, "backend", "local"))


class ScheduleIn(_Write):
    name: Text = Field(max_length=63)
    spec: dict[str, Any]
    package: Text | None = Field(default=None, max_length=80,
                                 description="digest of the code package, or null when "
                                             "the spec's functions are by value")
    params: dict[str, Any] = Field(default_factory=dict)
    cron: Text = Field(max_length=200, examples=["0 3 * * *"])
    timezone: Text = Field(default="UTC", max_length=100, examples=["Europe/Berlin"])
    catchup: Text = Field(default="latest", max_length=20,
                          description="after downtime: latest, all or none")
    max_concurrent: int = Field(default=1)
    paused: bool = False


class BackfillIn(_Write):
    start: Text = Field(alias="from", max_length=60, examples=["2026-03-01"])
    end: Text = Field(alias="to", max_length=60, examples=["2026-03-07T23:59"])


router = APIRouter(prefix=f"{API}/projects/{{project}}/schedules",
                   dependencies=[Depends(authorize)], tags=["schedules"])


@router.post("", status_code=201)
def create(request: Request, project: str, body: ScheduleIn) -> dict[str, Any]:
    return S.create(_store(request), _who(request), project, name=body.name, spec=body.spec,
                    package=body.package, params=body.params, cron=body.cron,
                    tz=body.timezone, catchup=body.catchup,
                    max_concurrent=body.max_concurrent, paused=body.paused,
                    now=_now(request), client=_client(request),
                    files_of=request.app.state.package_files)


@router.get("")
def schedules(request: Request, project: str) -> list[dict[str, Any]]:
    return S.list_schedules(_store(request), project, _now(request))


@router.get("/{name}")
def schedule(request: Request, project: str, name: str,
             ticks: int = Query(default=20, ge=0, le=1000)) -> dict[str, Any]:
    """The schedule and its newest ``ticks`` ticks (fired, or skipped and why)."""
    return S.get(_store(request), project, name, _now(request), ticks=ticks)


@router.post("/{name}/pause")
def pause(request: Request, project: str, name: str) -> dict[str, Any]:
    return S.set_paused(_store(request), _who(request), project, name, True, _now(request),
                        _client(request))


@router.post("/{name}/resume")
def resume(request: Request, project: str, name: str) -> dict[str, Any]:
    return S.set_paused(_store(request), _who(request), project, name, False, _now(request),
                        _client(request))


@router.delete("/{name}", status_code=204)
def delete(request: Request, project: str, name: str) -> Response:
    S.delete(_store(request), _who(request), project, name, _client(request))
    return Response(status_code=204)


@router.post("/{name}/backfill")
def backfill(request: Request, project: str, name: str, body: BackfillIn) -> dict[str, Any]:
    return S.backfill(_store(request), _who(request), project, name, start=body.start,
                      end=body.end, backend=_backend(request), now=_now(request),
                      client=_client(request))
