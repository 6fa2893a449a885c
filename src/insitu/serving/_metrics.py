"""Prometheus metrics of serving, per endpoint, model and version, in a registry of their
own (so several servers in one process do not clash)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LAT = (.0005, .001, .002, .004, .008, .016, .032, .064, .128, .256, .512, 1.0, 2.5, 5, 10)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("endpoint", "model", "version")
        r = self.registry
        self.requests = Counter("insitu_serving_requests", "Inference requests answered",
                                (*labels, "code"), registry=r)
        self.errors = Counter("insitu_serving_errors", "Inference requests answered with an "
                              "error", (*labels, "code"), registry=r)
        self.latency = Histogram("insitu_serving_request_seconds", "Time to answer, seen by "
                                 "the front process", labels, buckets=_LAT, registry=r)
        self.batch = Histogram("insitu_serving_batch_size", "Rows' requests predicted in one "
                               "call, per request", labels, buckets=_BATCH, registry=r)
        self.queue = Histogram("insitu_serving_queue_seconds", "Time a request waited in its "
                               "replica before predict", labels, buckets=_LAT, registry=r)
        self.replicas = Gauge("insitu_serving_replicas", "Replicas ready", labels, registry=r)
        self.shadow = Counter("insitu_serving_shadow_requests", "Requests mirrored to a "
                              "shadow version", (*labels, "code"), registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
