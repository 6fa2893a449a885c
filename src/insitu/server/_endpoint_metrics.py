"""Endpoint metrics on the server's ``/metrics``.

Measured at the server's door to each endpoint (the proxy hop included):
``insitu_endpoint_requests_total{project,endpoint,code}`` and
``insitu_endpoint_request_seconds{project,endpoint}`` (histogram). Read at each scrape:
``insitu_endpoints{project,state}`` from the database, and
``insitu_endpoint_replicas{project,endpoint,version}`` (ready replicas) from each running
endpoint's process. The serving process's own families (batch sizes, queue wait, per
version) stay on its socket and are not repeated here.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from insitu.server._endpoints import socket_path
from insitu.store import EndpointRecord, EndpointStatusRecord, Store

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            10.0)


class EndpointMetrics:
    """The request families, counted by the proxy (``observe``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("insitu_endpoint_requests", "requests to endpoints, by "
                                "answer code", ["project", "endpoint", "code"],
                                registry=registry)
        self.seconds = Histogram("insitu_endpoint_request_seconds", "latency of endpoint "
                                 "requests at the server (proxy included)",
                                 ["project", "endpoint"], buckets=_BUCKETS, registry=registry)

    def observe(self, project: str, name: str, code: int, seconds: float) -> None:
        self.requests.labels(project, name, str(code)).inc()
        self.seconds.labels(project, name).observe(seconds)


class EndpointCollector(Collector):
    """Endpoints by state, and each running endpoint's ready replicas."""

    def __init__(self, store: Store, home: Path) -> None:
        self.store = store
        self.home = home

    def collect(self) -> Iterator[Metric]:
        import httpx

        wanted = {(e.project, e.name) for e in self.store.select(EndpointRecord)}
        status = {(s.project, s.name): s for s in self.store.select(EndpointStatusRecord)}
        fam = GaugeMetricFamily("insitu_endpoints", "endpoints by state",
                                labels=["project", "state"])
        for (project, state), n in sorted(Tally(
                (k[0], status[k].state if k in status else "pending") for k in wanted).items()):
            fam.add_metric([project, state], n)
        yield fam
        reps = GaugeMetricFamily("insitu_endpoint_replicas", "ready replicas of each running "
                                 "endpoint, by version", labels=["project", "endpoint",
                                                                 "version"])
        for key in sorted(wanted):
            s = status.get(key)
            if s is None or s.state != "running":
                continue
            try:
                with httpx.Client(transport=httpx.HTTPTransport(
                        uds=socket_path(self.home, *key)), base_url="http://endpoint",
                        timeout=2) as c:
                    doc: dict[str, Any] = c.get("/admin/endpoint").json()
            except (httpx.HTTPError, ValueError):
                continue
            for ref, v in sorted((doc.get("versions") or {}).items()):
                reps.add_metric([key[0], key[1], str(ref).rsplit(":", 1)[-1]],
                                float(v.get("ready") or 0))
        yield reps
