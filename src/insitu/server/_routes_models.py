"""Changes to a project's model registry over the API: register a run's step output as a
new version, point an alias at a version, remove an alias, delete a version.

Rules: registering and moving or removing aliases need ``editor``; deleting a version needs
``owner`` (as deleting a run does). The run registered from must be of the same project. A
version is checked and numbered by :func:`insitu.models.register`, as the CLI does locally;
an alias move is written with its audit record in one transaction.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import Field

from insitu.errors import NotFound
from insitu.models import _registry as registry
from insitu.server import _catalog
from insitu.server._access import API
from insitu.server._domain import _run, audit
from insitu.server._routes import Text, _client, _store, _who, _Write, authorize
from insitu.store import AliasRecord

router = APIRouter(prefix=API, dependencies=[Depends(authorize)])
NAME = Path(max_length=200)
ALIAS = Path(max_length=200)  # a Path() of its own: one shared by two parameters names one
VERSION = Path(ge=1, le=2**31 - 1)


class VersionIn(_Write):
    run: Text = Field(max_length=64)
    step: Text = Field(max_length=300)
    alias: Text | None = Field(default=None, max_length=200)
    description: Text = Field(default="", max_length=10_000)
    tags: dict[Text, Text] = Field(default_factory=dict)


class AliasIn(_Write):
    version: int = Field(ge=1, le=2**31 - 1)


@router.post("/projects/{project}/models/{name}/versions", status_code=201,
             summary="Register a run's step output as the model's next version")
def register(request: Request, project: str, body: VersionIn, name: str = NAME
             ) -> dict[str, Any]:
    store = _store(request)
    run = _run(store, project, body.run)  # another project's run is not found
    mv = registry.register(name, run=run.id, step=body.step, description=body.description,
                           tags=dict(body.tags), alias=body.alias, store=store)
    store.put(audit(_who(request), "model.register", project=project,
                    obj=f"model/{name}/{mv.version}", client=_client(request),
                    detail={"run": run.id, "step": body.step, "alias": body.alias}))
    return _catalog.version_view(mv.record, list(mv.aliases))


@router.put("/projects/{project}/models/{name}/aliases/{alias}",
            summary="Point an alias at a version (moved atomically)")
def set_alias(request: Request, project: str, body: AliasIn, name: str = NAME,
              alias: str = ALIAS) -> dict[str, Any]:
    store = _store(request)
    _catalog._model(store, project, name)
    registry._check_name("alias", alias)
    mv = registry.get_version(f"{name}:{body.version}", store=store, project=project)
    store.put(AliasRecord(name=name, alias=alias, version=mv.version, updated_at=time.time(),
                          project=project),
              audit(_who(request), "model.alias", project=project, obj=f"model/{name}",
                    client=_client(request), detail={"alias": alias, "version": mv.version}))
    return _catalog.get_model_version(store, project, name, mv.version)


@router.delete("/projects/{project}/models/{name}/aliases/{alias}", status_code=204,
               summary="Remove an alias")
def delete_alias(request: Request, project: str, name: str = NAME, alias: str = ALIAS
                 ) -> Response:
    store = _store(request)
    _catalog._model(store, project, name)
    if not store.select(AliasRecord, project=project, name=name, alias=alias):
        raise NotFound(f"model {name!r} has no alias {alias!r}",
                       hint=f"see its aliases with GET {API}/projects/{project}/models/{name}")
    store.delete(AliasRecord, project=project, name=name, alias=alias)
    store.put(audit(_who(request), "model.unalias", project=project, obj=f"model/{name}",
                    client=_client(request), detail={"alias": alias}))
    return Response(status_code=204)


@router.delete("/projects/{project}/models/{name}/versions/{version}", status_code=204,
               summary="Delete a version (refused while an alias points at it)")
def delete_version(request: Request, project: str, name: str = NAME,
                   version: int = VERSION) -> Response:
    store = _store(request)
    _catalog._model(store, project, name)
    registry.delete_version(name, version, store=store, project=project)
    store.put(audit(_who(request), "model.delete", project=project,
                    obj=f"model/{name}/{version}", client=_client(request)))
    return Response(status_code=204)
