"""The ASGI application and the process that serves it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request

from insitu.server import _domain, _problems
from insitu.server._access import API
from insitu.server._metrics import Metrics
from insitu.server._packages import DEFAULT_MAX_PACKAGE
from insitu.server._routes import metrics_router, router
from insitu.server._routes_quotas import router as quotas_router
from insitu.server._routes_read import read_router
from insitu.server._routes_schedules import router as schedules_router
from insitu.store import Store

if TYPE_CHECKING:
    from insitu.server._oidc import OIDCConfig
    from insitu.server._supervisor import Supervisor

log = logging.getLogger("insitu.server")
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def routers() -> list[APIRouter]:
    """Every router the app serves (each route in them has a rule in ``_access.ACCESS``)."""
    from insitu.server._auth_routes import auth_router
    from insitu.server._routes_runs import runs_router

    return [router, runs_router, read_router, quotas_router, schedules_router, auth_router,
            metrics_router]


def create_app(store: Store, *, oidc: OIDCConfig | None = None, backend: str = "local",
               max_package: int = DEFAULT_MAX_PACKAGE,
               supervisor: Supervisor | None = None) -> FastAPI:
    """The API over ``store`` (opened, schema at head). The app never reads the database but
    through ``store``. ``oidc``: browser login through that provider (see ``_oidc``).
    Accepted runs are for ``backend``; ``supervisor``, if given, is told when one is written
    (it also finds them on its own)."""
    from insitu import __version__
    from insitu.server._oidc import Provider
    from insitu.server._remote_runs import PackageFiles

    app = FastAPI(title="insitu", version=__version__, openapi_url=f"{API}/openapi.json",
                  docs_url=f"{API}/docs", redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="The insitu platform API. Every error is an RFC 9457 problem "
                              "document; every change is in the audit log.")
    app.state.store = store
    app.state.backend = backend
    app.state.max_package = max_package
    app.state.supervisor = supervisor
    app.state.package_files = PackageFiles(store)
    app.state.metrics = Metrics(store, __version__)
    app.state.metrics.install(app)
    for r in routers():
        app.include_router(r)
    app.state.oidc = Provider(oidc) if oidc is not None else None

    def on_error(request: Request, status: int) -> None:
        """Refused or failed changes go to the audit log too (nothing else was written)."""
        if request.method in _READS:
            return
        who = getattr(request.state, "principal", None)
        route = getattr(request.scope.get("route"), "path", request.url.path)
        try:
            store.put(_domain.audit(
                who, f"{request.method} {route}",
                outcome="denied" if status in (401, 403) else "error",
                project=request.path_params.get("project"), obj=request.url.path,
                client=request.client.host if request.client else None,
                detail={"status": status}))
        except Exception:  # noqa: BLE001 - the answer matters more than its audit line
            log.exception("could not write the audit record of a failed request")

    _problems.install(app, on_error)
    return app


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 8420,
          log_level: str = "info", oidc: OIDCConfig | None = None,
          backend: str = "local", max_package: int = DEFAULT_MAX_PACKAGE,
          supervisor: Supervisor | None = None, clock_file: str | None = None,
          schedule_interval: float = 5.0, **uvicorn_options: Any) -> None:
    """Serve the API until interrupted (SIGINT/SIGTERM stop it gracefully), firing the
    schedules' ticks meanwhile (every ``schedule_interval`` s, by the system clock or, for
    tests, by the time written in ``clock_file``)."""
    import uvicorn

    from insitu.server._schedule_loop import ScheduleLoop
    from insitu.server._schedules import Clock

    app = create_app(store, oidc=oidc, backend=backend, max_package=max_package,
                     supervisor=supervisor)
    app.state.clock = Clock(clock_file)
    schedules = ScheduleLoop(store, backend=backend, clock=app.state.clock,
                             interval=schedule_interval)
    # idle keep-alive connections stay open longer than a client's pause between calls, so
    # a client reusing one does not race the server closing it
    uvicorn_options.setdefault("timeout_keep_alive", 75)
    schedules.start()
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options)
    finally:
        schedules.stop()
