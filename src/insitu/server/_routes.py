"""The routes of ``/api/v1``: each reads its inputs, calls one domain function, and returns
what it returns. Who may call a route is not decided here but in ``_access.ACCESS``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from insitu.errors import InternalError, UserError
from insitu.server import _domain as D
from insitu.server import _sessions as S
from insitu.server._access import ACCESS, API, PUBLIC, Principal, check
from insitu.server._encode import json_response
from insitu.store import Store


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def authorize(request: Request) -> Principal | None:
    """The one place access is decided, from the route table."""
    for where, values in (("path", request.path_params.values()),
                          ("query", request.query_params.values())):
        if any("\x00" in str(v) for v in values):
            raise UserError(f"the request's {where} contains a NUL character",
                            hint="remove the \\x00 from the URL")
    path = getattr(request.scope.get("route"), "path", None)
    rule = ACCESS.get((request.method, path or ""))
    if rule is None:
        raise InternalError(f"route {request.method} {path} has no access rule")
    if rule == PUBLIC:
        return None
    header, cookie = request.headers.get("authorization"), request.cookies.get(S.COOKIE)
    if header is None and cookie:  # a browser's login session (see _sessions)
        who = request.state.principal = S.identify(_store(request), cookie)
        S.check_csrf(cookie, request.method, request.headers.get(S.CSRF_HEADER))
    else:
        who = D.authenticate(_store(request), header)
    request.state.principal = who
    check(rule, who, request.path_params.get("project"))
    return who


def _who(request: Request) -> Principal:
    who: Principal = request.state.principal
    return who


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("contains a NUL character")
    return v


Text = Annotated[str, AfterValidator(_no_nul)]


class _Write(BaseModel):
    """A request body: unknown fields are refused, text may not hold NUL characters."""

    model_config = ConfigDict(extra="forbid")


class ProjectIn(_Write):
    name: Text = Field(max_length=63)
    description: Text = Field(default="", max_length=2000)
    owner: Text | None = Field(default=None, max_length=63)


class MemberIn(_Write):
    role: Text = Field(max_length=20)


class UserIn(_Write):
    name: Text = Field(max_length=63)
    admin: bool = False
    service: bool = False
    email: Text | None = Field(default=None, max_length=300)


class TokenIn(_Write):
    name: Text = Field(default="", max_length=200)
    user: Text | None = Field(default=None, max_length=63)
    project: Text | None = Field(default=None, max_length=63)
    expires_in_days: float = Field(default=90.0)


router = APIRouter(prefix=API, dependencies=[Depends(authorize)])
metrics_router = APIRouter(dependencies=[Depends(authorize)])


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus metrics (text format); scrape with an administrator's token."""
    rendered: Response = request.app.state.metrics.render()
    return rendered


@router.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/whoami")
def whoami(request: Request) -> dict[str, Any]:
    who = _who(request)
    return {"user": who.user, "admin": who.admin, "token": who.token, "scope": who.scope,
            "projects": {p: who.role_in(p) for p in who.roles if who.role_in(p)}}


@router.get("/projects")
def projects(request: Request) -> list[dict[str, Any]]:
    return D.list_projects(_store(request), _who(request))


@router.post("/projects", status_code=201)
def create_project(request: Request, body: ProjectIn) -> dict[str, Any]:
    return D.create_project(_store(request), _who(request), body.name, body.description,
                            body.owner, _client(request))


@router.get("/projects/{project}")
def project(request: Request, project: str) -> dict[str, Any]:
    return D.get_project(_store(request), _who(request), project)


@router.delete("/projects/{project}", status_code=204)
def delete_project(request: Request, project: str) -> Response:
    D.delete_project(_store(request), _who(request), project, _client(request))
    return Response(status_code=204)


@router.get("/projects/{project}/members")
def members(request: Request, project: str) -> list[dict[str, Any]]:
    return D.list_members(_store(request), project)


@router.put("/projects/{project}/members/{user}")
def set_member(request: Request, project: str, user: str, body: MemberIn) -> dict[str, Any]:
    return D.set_member(_store(request), _who(request), project, user, body.role,
                        _client(request))


@router.delete("/projects/{project}/members/{user}", status_code=204)
def remove_member(request: Request, project: str, user: str) -> Response:
    D.remove_member(_store(request), _who(request), project, user, _client(request))
    return Response(status_code=204)


@router.get("/projects/{project}/runs", response_model=dict[str, Any])
def runs(request: Request, project: str, pipeline: str | None = None,
         state: str | None = None, limit: int = Query(default=50, ge=1, le=500),
         cursor: str | None = Query(default=None, max_length=200),
         until: float | None = Query(default=None, ge=0, le=1e11,
                                     description="only runs created before this time "
                                                 "(epoch seconds)"),
         schedule: str | None = Query(default=None, max_length=100,
                                      description="only the runs this schedule made")
         ) -> Response:
    return json_response(D.list_runs(_store(request), project, pipeline=pipeline, state=state,
                                     limit=limit, cursor=cursor, until=until,
                                     schedule=schedule))


@router.get("/projects/{project}/runs/{run_id}", response_model=dict[str, Any])
def run(request: Request, project: str, run_id: str) -> Response:
    return json_response(D.get_run(_store(request), project, run_id))


@router.post("/projects/{project}/runs/{run_id}/cancel")
def cancel(request: Request, project: str, run_id: str) -> dict[str, Any]:
    return D.cancel_run(_store(request), _who(request), project, run_id, _client(request))


@router.get("/projects/{project}/audit")
def project_audit(request: Request, project: str, user: str | None = None,
                  action: str | None = None, since: float | None = None,
                  until: float | None = None,
                  cursor: str | None = Query(default=None, max_length=60),
                  limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    return D.list_audit(_store(request), project=project, user=user, action=action,
                        since=since, until=until, cursor=cursor, limit=limit)


@router.get("/users")
def users(request: Request) -> list[dict[str, Any]]:
    return D.list_users(_store(request))


@router.post("/users", status_code=201)
def create_user(request: Request, body: UserIn) -> dict[str, Any]:
    return D.create_user(_store(request), _who(request), body.name, body.admin, body.service,
                         body.email, _client(request))


@router.get("/tokens")
def tokens(request: Request) -> list[dict[str, Any]]:
    return D.list_tokens(_store(request), _who(request))


@router.post("/tokens", status_code=201)
def create_token(request: Request, body: TokenIn) -> dict[str, Any]:
    return D.create_token(_store(request), _who(request), name=body.name, user=body.user,
                          project=body.project, expires_in_days=body.expires_in_days,
                          client=_client(request))


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(request: Request, token_id: str) -> Response:
    D.revoke_token(_store(request), _who(request), token_id, _client(request))
    return Response(status_code=204)


@router.get("/audit")
def audit(request: Request, project: str | None = None, user: str | None = None,
          action: str | None = None, since: float | None = None, until: float | None = None,
          cursor: str | None = Query(default=None, max_length=60),
          limit: int = Query(default=100, ge=1, le=1000)) -> dict[str, Any]:
    return D.list_audit(_store(request), project=project, user=user, action=action,
                        since=since, until=until, cursor=cursor, limit=limit)
