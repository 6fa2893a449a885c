"""Prometheus metrics of the server (prometheus-client), each app with a registry of its own.

- ``insitu_api_requests_total{method,route,status}`` and ``insitu_api_request_seconds``
  (histogram, by method and route template), measured around every request;
- ``insitu_runs{project,state}``: runs per project and state, read from the store when
  scraped;
- ``insitu_build_info{version}``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from insitu.store import Store

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StoreCollector(Collector):
    def __init__(self, store: Store, version: str) -> None:
        self.store = store
        self.version = version

    def collect(self) -> Iterator[GaugeMetricFamily | InfoMetricFamily]:
        runs = GaugeMetricFamily("insitu_runs", "Runs per project and state",
                                 labels=["project", "state"])
        for (project, state), n in sorted(self.store.count_runs().items()):
            runs.add_metric([project, state], n)
        yield runs
        yield InfoMetricFamily("insitu_build", "The insitu version serving",
                               value={"version": self.version})


class Metrics:
    def __init__(self, store: Store, version: str) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("insitu_api_requests", "API requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("insitu_api_request_seconds", "API request latency",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self.registry.register(_StoreCollector(store, version))

    def install(self, app: FastAPI) -> None:
        @app.middleware("http")
        async def measure(request: Request,
                          call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            t0 = time.perf_counter()
            response = await call_next(request)
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            self.seconds.labels(request.method, route).observe(time.perf_counter() - t0)
            self.requests.labels(request.method, route, str(response.status_code)).inc()
            return response

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
