"""Endpoints on an insitu server, from Python: a registered model of the project served by
the server, behind its API and its tokens.

Owns nothing but the Python face of ``insitu.client``'s endpoint calls, on the server that
``insitu login`` (or ``INSITU_SERVER``/``INSITU_TOKEN``) names, in its project (or
``project=``). May import: client, errors.

    import insitu
    ep = insitu.endpoints.create("fraud", model="fraud@champion", min_replicas=0,
                                 max_replicas=4, cpu=1, memory="1GiB")
    insitu.endpoints.get("fraud")["status"]["state"]       # waiting / starting / running
    insitu.endpoints.url("fraud")                          # + /v2/models/fraud/infer
    insitu.endpoints.delete("fraud")
"""

from __future__ import annotations

from typing import Any

from insitu.client import _endpoints as _E
from insitu.client._http import Client
from insitu.errors import UserError

__all__ = ["create", "delete", "get", "list", "logs", "promote", "rollback", "traffic",
           "update", "url"]

_list = list


def _client(project: str | None) -> Client:
    import dataclasses

    from insitu.client import resolve

    creds = resolve()
    if creds is None:
        raise UserError("endpoints live on an insitu server, and no server is configured",
                        hint="log in to one: insitu login http://HOST:8420 (or set "
                             "INSITU_SERVER and INSITU_TOKEN); to serve on this machine "
                             "use insitu.serving.Server")
    if project:
        creds = dataclasses.replace(creds, project=project)
    return Client(creds)


def create(name: str, model: str, *, project: str | None = None, **settings: Any
           ) -> dict[str, Any]:
    """Serve ``model`` (``NAME@ALIAS``, ``NAME:VERSION`` or ``NAME``, of the project) as
    endpoint ``name``. Settings: ``replicas`` or ``min_replicas``/``max_replicas``, ``cpu``,
    ``memory``, ``gpu`` (per replica), ``canary``/``canary_percent``, ``shadow``/
    ``shadow_percent``, ``target_concurrency``, ``idle_seconds``, ``payloads`` (a share)."""
    with _client(project) as c:
        return _E.create(c, name, model, **settings)


def list(*, project: str | None = None) -> _list[dict[str, Any]]:  # noqa: A001
    """The project's endpoints, each with its status."""
    with _client(project) as c:
        return _E.list_endpoints(c)


def get(name: str, *, project: str | None = None) -> dict[str, Any]:
    """The endpoint, its status and, when it runs, its replicas."""
    with _client(project) as c:
        return _E.get(c, name)


def update(name: str, model: str | None = None, *, project: str | None = None,
           **settings: Any) -> dict[str, Any]:
    """Change the model or settings (the server restarts the endpoint with them)."""
    with _client(project) as c:
        return _E.update(c, name, model, **settings)


def traffic(name: str, *, project: str | None = None, **policy: Any) -> dict[str, Any]:
    """Move traffic live: ``canary``/``percent``, ``shadow``/``shadow_percent``, ``header``
    with ``routes``."""
    with _client(project) as c:
        return _E.traffic(c, name, **policy)


def promote(name: str, *, project: str | None = None) -> dict[str, Any]:
    with _client(project) as c:
        return _E.promote(c, name)


def rollback(name: str, *, project: str | None = None) -> dict[str, Any]:
    with _client(project) as c:
        return _E.rollback(c, name)


def delete(name: str, *, project: str | None = None) -> None:
    with _client(project) as c:
        _E.delete(c, name)


def logs(name: str, *, project: str | None = None, tail: int = 200, payloads: int = 0
         ) -> dict[str, Any]:
    with _client(project) as c:
        return _E.logs(c, name, tail=tail, payloads=payloads)


def url(name: str, *, project: str | None = None) -> str:
    with _client(project) as c:
        return _E.url(c, name)
