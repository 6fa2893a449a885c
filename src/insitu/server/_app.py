"""The ASGI application and the process that serves it."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request

from insitu.errors import UserError
from insitu.server import _domain, _problems
from insitu.server._access import API
from insitu.server._metrics import Metrics, Nodes
from insitu.server._packages import DEFAULT_MAX_PACKAGE
from insitu.server._routes import metrics_router, router
from insitu.server._routes_quotas import router as quotas_router
from insitu.server._routes_read import read_router
from insitu.server._routes_schedules import router as schedules_router
from insitu.store import Store

if TYPE_CHECKING:
    from insitu.notebooks import NotebookManager
    from insitu.server._oidc import OIDCConfig
    from insitu.server._supervisor import Supervisor

log = logging.getLogger("insitu.server")
API_THREADS = 8  # requests handled at once per process; the store keeps as many connections
_READS = frozenset({"GET", "HEAD", "OPTIONS"})


def routers() -> list[APIRouter]:
    """Every router the app serves (each route in them has a rule in ``_access.ACCESS``)."""
    from insitu.server._auth_routes import auth_router
    from insitu.server._routes_endpoints import router as endpoints_router
    from insitu.server._routes_models import router as models_router
    from insitu.server._routes_notebooks import router as notebooks_router
    from insitu.server._routes_notebooks import ws_router as notebooks_ws_router
    from insitu.server._routes_runs import runs_router

    return [router, runs_router, read_router, models_router, quotas_router, schedules_router,
            notebooks_router, notebooks_ws_router, auth_router, endpoints_router,
            metrics_router]


def create_app(store: Store, *, nodes: Nodes | None = None, gpu_metrics: bool = True,
               api_only: bool = False, oidc: OIDCConfig | None = None,
               backend: str = "local", max_package: int = DEFAULT_MAX_PACKAGE,
               supervisor: Supervisor | None = None,
               clock_file: str | None = None, ui: bool = True,
               notebooks: NotebookManager | None = None) -> FastAPI:
    """The API over ``store`` (opened, schema at head). The app never reads the database but
    through ``store``. ``nodes`` gives the backend's node inventory (node capacity in
    ``/metrics``); ``gpu_metrics`` reads this machine's GPUs through NVML where it can.
    ``api_only`` marks the app of a worker process (``--workers``): it serves the API and
    runs no background work (``app.state.api_only``). ``oidc``: browser login through that
    provider (see ``_oidc``). Accepted runs are for ``backend``; ``supervisor``, if given, is
    told when one is written (it also finds them on its own). ``clock_file``: where the
    schedules' routes read "now", as the schedule loop does (``--clock-file``, for tests).
    ``ui``: serve the dashboard (``insitu.ui``) at ``/`` beside the API.
    ``notebooks``: the manager of the notebook servers this process runs (none in an
    API-only worker: its notebook routes say so)."""
    from insitu import __version__
    from insitu.server._oidc import Provider
    from insitu.server._remote_runs import PackageFiles
    from insitu.server._schedules import Clock

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if notebooks is not None:  # in uvicorn's graceful shutdown, before it re-raises
            import anyio.to_thread  # the signal that stopped it and the process ends

            await anyio.to_thread.run_sync(notebooks.close)

    app = FastAPI(title="insitu", version=__version__, openapi_url=f"{API}/openapi.json",
                  lifespan=lifespan,
                  docs_url=f"{API}/docs", redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None,
                  description="The insitu platform API. Every error is an RFC 9457 problem "
                              "document; every change is in the audit log.")
    app.state.store = store
    app.state.api_only = api_only
    app.state.backend = backend
    app.state.max_package = max_package
    app.state.supervisor = supervisor
    app.state.notebooks = notebooks
    app.state.package_files = PackageFiles(store)
    app.state.clock = Clock(clock_file)
    app.state.oidc = Provider(oidc) if oidc is not None else None
    app.state.metrics = Metrics(store, __version__, nodes=nodes, gpus=gpu_metrics)
    app.state.metrics.install(app)
    from insitu._config import load_config
    from insitu.server._endpoint_metrics import EndpointCollector, EndpointMetrics

    app.state.endpoint_metrics = EndpointMetrics(app.state.metrics.registry)
    app.state.metrics.register(EndpointCollector(store, load_config().home))
    for r in routers():
        app.include_router(r)
    if ui:
        from insitu.ui import mount

        mount(app)
    app.add_middleware(_Threads, tokens=API_THREADS)

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


class _Threads:
    """Runs the routes (which run in threads) in at most ``tokens`` threads at once: as many
    as the store keeps connections, so no request waits for one or opens one per query, and
    no more (more threads would only contend for the interpreter)."""

    def __init__(self, app: Any, tokens: int) -> None:
        self.app = app
        self.tokens = tokens
        self.set = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.set:  # the limiter belongs to the running event loop
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.tokens
            self.set = True
        await self.app(scope, receive, send)


def serve(store: Store, *, host: str = "127.0.0.1", port: int = 8420,
          log_level: str = "info", workers: int = 1, nodes: Nodes | None = None,
          oidc: OIDCConfig | None = None, backend: str = "local",
          max_package: int = DEFAULT_MAX_PACKAGE, supervisor: Supervisor | None = None,
          clock_file: str | None = None, schedule_interval: float = 5.0,
          **uvicorn_options: Any) -> None:
    """Serve the API until interrupted (SIGINT/SIGTERM stop it gracefully), firing the
    schedules' ticks meanwhile (every ``schedule_interval`` s, by the system clock or, for
    tests, by the time written in ``clock_file``).

    ``workers > 1`` serves the API from that many processes (uvicorn's process manager), each
    with its own connections to the database (``store`` must be an :class:`SQLStore`) and
    each serving the API only (:func:`worker_app`); work the server does besides answering
    requests stays in this process. Their request metrics are merged through a directory of
    prometheus-client's multiprocess mode, removed at the end."""
    from insitu.server._schedule_loop import ScheduleLoop
    from insitu.server._schedules import Clock

    # idle keep-alive connections stay open longer than a client's pause between calls, so
    # a client reusing one does not race the server closing it
    uvicorn_options.setdefault("timeout_keep_alive", 75)
    settings = {"oidc": oidc, "backend": backend, "max_package": max_package,
                "clock_file": clock_file}  # the routes read the loop's clock
    schedules = ScheduleLoop(store, backend=backend, clock=Clock(clock_file),
                             interval=schedule_interval)
    schedules.start()
    from insitu._config import load_config
    from insitu.notebooks import NotebookManager

    notebooks = NotebookManager(store, load_config().home / "notebooks",
                                clock=Clock(clock_file).now)
    notebooks.begin()
    try:
        _serve(store, host, port, log_level, workers, nodes, settings, supervisor,
               uvicorn_options, notebooks if workers <= 1 else None)
    finally:
        notebooks.close()
        schedules.stop()


def _serve(store: Store, host: str, port: int, log_level: str, workers: int,
           nodes: Nodes | None, settings: dict[str, Any], supervisor: Supervisor | None,
           uvicorn_options: dict[str, Any], notebooks: NotebookManager | None = None) -> None:
    import uvicorn

    if workers <= 1:
        uvicorn.run(create_app(store, nodes=nodes, supervisor=supervisor,
                               notebooks=notebooks, **settings),
                    host=host, port=port, log_level=log_level, **uvicorn_options)
        return
    url = getattr(store, "url", None)
    if not isinstance(url, str):
        raise UserError("several workers need a database they can each open",
                        hint="give --db a database URL, or serve with --workers 1")
    tmp = tempfile.mkdtemp(prefix="insitu-metrics-")
    oidc = settings["oidc"]
    env = {_DB_ENV: url, "PROMETHEUS_MULTIPROC_DIR": tmp,
           _SETTINGS_ENV: json.dumps({**settings,
                                      "oidc": dataclasses.asdict(oidc) if oidc else None})}
    if nodes is not None:
        env[_NODES_ENV] = f"{nodes.__module__}:{nodes.__qualname__}"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the workers are new processes: they read these at start
    try:
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, host=host,
                    port=port, log_level=log_level, **uvicorn_options)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(tmp, ignore_errors=True)


_DB_ENV = "INSITU_SERVER_WORKER_DB_URL"
_NODES_ENV = "INSITU_SERVER_WORKER_NODES"
_SETTINGS_ENV = "INSITU_SERVER_WORKER_SETTINGS"


def worker_app() -> FastAPI:
    """The app of one worker process of ``serve(workers=N)``: the API only."""
    from insitu.store import open_store

    nodes = None
    if os.environ.get(_NODES_ENV):
        module, _, name = os.environ[_NODES_ENV].partition(":")
        nodes = getattr(importlib.import_module(module), name)
    from insitu.server._oidc import OIDCConfig

    settings = json.loads(os.environ.get(_SETTINGS_ENV) or "{}")
    if settings.get("oidc"):
        settings["oidc"] = OIDCConfig(**settings["oidc"])
    return create_app(open_store(os.environ[_DB_ENV], pool_size=API_THREADS), nodes=nodes,
                      api_only=True, **settings)
