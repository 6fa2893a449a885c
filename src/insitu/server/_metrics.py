"""Prometheus metrics of the server (prometheus-client), each app with a registry of its own.

Measured around every request (a plain ASGI middleware):

- ``insitu_api_requests_total{method,route,status}``, ``insitu_api_request_seconds``
  (histogram, by method and route template).

Read from the database at each scrape, each family with one aggregate query whatever the
number of runs (see the monitoring aggregates of :class:`~insitu.store.Store`):

- ``insitu_runs{project,state}``, ``insitu_steps{project,state}``;
- ``insitu_step_duration_seconds{project,state}`` and ``insitu_step_queue_wait_seconds
  {project}`` (histograms over every step recorded: ready -> started, started -> ended);
- ``insitu_queue_depth{project}``: steps ready but waiting for resources;
- ``insitu_node_allocated_{cpu_cores,memory_bytes,gpus}`` by node (and GPU type), and
  ``insitu_project_allocated_*`` by project: what running steps hold (their recorded request);
  ``insitu_node_capacity_*`` when the server knows its backend's nodes;
- ``insitu_quota_limit{project,resource}``, ``insitu_quota_used{project,resource}`` and
  ``insitu_quota_waiting_steps{project}``: each project's quota, what its admitted steps hold
  of it, and how many steps wait for it;
- ``insitu_engines{project,status}`` (live or stale) and
  ``insitu_engine_heartbeat_age_seconds{project}``: the age of the newest heartbeat;
- ``insitu_build_info{version}``.

From NVML (nvidia-ml-py), only where the server's machine has NVIDIA GPUs and a driver:
``insitu_gpu_utilization_ratio``, ``insitu_gpu_memory_used_bytes`` and
``insitu_gpu_memory_total_bytes`` by ``host``, ``gpu`` (index) and ``model``. Elsewhere they
are absent, never zero.

Other parts of the server add families with :meth:`Metrics.register` (a prometheus-client
``Collector``).

With several worker processes (``insitu server --workers N``) the request metrics are shared
through ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode), so any worker's
``/metrics`` shows every worker's requests.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from insitu.executor import NodeInfo
from insitu.store import ClaimRecord, QuotaRecord, Store

log = logging.getLogger("insitu.server")

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STEP_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0,
                86400.0)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)
ENGINE_STALE_S = 15.0  # as insitu.engine's STALE_AFTER_S: an older heartbeat is a gone engine

Nodes = Callable[[], Sequence[NodeInfo]]
GPU_METRICS = ("insitu_gpu_utilization_ratio", "insitu_gpu_memory_used_bytes",
               "insitu_gpu_memory_total_bytes")  # present only where NVML sees GPUs


def _histogram(name: str, doc: str, labels: list[str], buckets: Sequence[float],
               data: dict[tuple[str, ...], Any]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for key, h in sorted(data.items()):
        fam.add_metric(list(key), [(_le(b), c) for b, c in zip(buckets, h.counts, strict=True)]
                       + [("+Inf", h.count)], sum_value=h.total)
    return fam


def _le(b: float) -> str:
    return repr(float(b))


class _StoreCollector(Collector):
    def __init__(self, store: Store, version: str, nodes: Nodes | None,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.version = version
        self.nodes = nodes
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        store = self.store
        runs = GaugeMetricFamily("insitu_runs", "Runs per project and state",
                                 labels=["project", "state"])
        for (project, state), n in sorted(store.count_runs().items()):
            runs.add_metric([project, state], n)
        yield runs
        steps = GaugeMetricFamily("insitu_steps", "Steps (tasks: a map's items each count) "
                                  "per project and state", labels=["project", "state"])
        for (project, state), n in sorted(store.count_tasks().items()):
            steps.add_metric([project, state], n)
        yield steps
        depth = GaugeMetricFamily("insitu_queue_depth", "Steps ready to run (inputs "
                                  "available) but waiting for resources, per project",
                                  labels=["project"])
        for project, n in sorted(store.queue_depth().items()):
            depth.add_metric([project], n)
        yield depth
        yield _histogram("insitu_step_duration_seconds", "How long steps ran (first start to "
                         "end, retries included), per project and final state",
                         ["project", "state"], STEP_BUCKETS,
                         store.task_time_histogram("run", STEP_BUCKETS))
        yield _histogram("insitu_step_queue_wait_seconds", "How long steps waited from ready "
                         "(inputs available) to started, per project", ["project"],
                         WAIT_BUCKETS, store.task_time_histogram("queue_wait", WAIT_BUCKETS))
        now = self.clock()
        yield from self._allocation(now)
        live = GaugeMetricFamily("insitu_engines", "Engine processes of pending or running "
                                 "runs, live (heartbeat within 15 s) or stale",
                                 labels=["project", "status"])
        age = GaugeMetricFamily("insitu_engine_heartbeat_age_seconds", "Seconds since the "
                                "newest engine heartbeat of the project's pending or running "
                                "runs", labels=["project"])
        for project, hb in sorted(store.engine_heartbeats(
                alive_since=now - ENGINE_STALE_S).items()):
            live.add_metric([project, "live"], hb.live)
            live.add_metric([project, "stale"], hb.stale)
            if hb.newest is not None:
                age.add_metric([project], max(0.0, now - hb.newest))
        yield live
        yield age
        yield from self._quotas()
        yield InfoMetricFamily("insitu_build", "The insitu version serving",
                               value={"version": self.version})

    def _quotas(self) -> Iterator[Metric]:
        from insitu.engine._quota import WAITING, use_of

        limit = GaugeMetricFamily("insitu_quota_limit", "A project's quota per resource "
                                  "(cpu: cores, memory: bytes, gpu: GPUs of any type, "
                                  "gpu:TYPE: of one type)", labels=["project", "resource"])
        used = GaugeMetricFamily("insitu_quota_used", "What the project's admitted steps hold "
                                 "of each resource of its quota", labels=["project",
                                                                          "resource"])
        waiting = GaugeMetricFamily("insitu_quota_waiting_steps", "Steps waiting for the "
                                    "project's quota", labels=["project"])
        claims: dict[str, list[ClaimRecord]] = {}
        for c in self.store.select(ClaimRecord):
            claims.setdefault(c.project, []).append(c)
        for q in sorted(self.store.select(QuotaRecord), key=lambda q: q.project):
            mine = claims.get(q.project, [])
            use = use_of(c for c in mine if c.state != WAITING)
            for resource, amount in sorted(q.quota.items()):
                limit.add_metric([q.project, resource], amount)
                used.add_metric([q.project, resource], use.get(resource, 0.0))
            waiting.add_metric([q.project], sum(c.state == WAITING for c in mine))
        yield from (limit, used, waiting)

    def _allocation(self, now: float) -> Iterator[Metric]:
        inventory: Sequence[NodeInfo] = ()
        if self.nodes is not None:
            try:
                inventory = self.nodes()
            except Exception:  # noqa: BLE001 - capacity is left out; allocations still shown
                log.warning("could not read the backend's nodes for /metrics", exc_info=True)
        models = {n.name: sorted({g.model for g in n.gpus}) for n in inventory}

        def gpu_type(node: str, requested: str | None) -> str:
            if requested:
                return requested
            known = models.get(node) or []
            return known[0] if len(known) == 1 else "any"

        alloc = self.store.allocated(alive_since=now - ENGINE_STALE_S)
        node_cpu: dict[str, float] = {n.name: 0.0 for n in inventory}
        node_mem: dict[str, int] = {n.name: 0 for n in inventory}
        node_gpu: dict[tuple[str, str], float] = {
            (n.name, m): 0.0 for n in inventory for m in models[n.name]}
        proj_cpu: dict[str, float] = {}
        proj_mem: dict[str, int] = {}
        proj_gpu: dict[tuple[str, str], float] = {}
        for (project, node, requested), a in alloc.items():
            node_cpu[node] = node_cpu.get(node, 0.0) + a.cpu
            node_mem[node] = node_mem.get(node, 0) + a.memory
            proj_cpu[project] = proj_cpu.get(project, 0.0) + a.cpu
            proj_mem[project] = proj_mem.get(project, 0) + a.memory
            if a.gpu:
                kind = gpu_type(node, requested)
                node_gpu[node, kind] = node_gpu.get((node, kind), 0.0) + a.gpu
                proj_gpu[project, kind] = proj_gpu.get((project, kind), 0.0) + a.gpu
        yield _gauge("insitu_node_allocated_cpu_cores", "CPU cores held by running steps, "
                     "per node", ["node"], node_cpu)
        yield _gauge("insitu_node_allocated_memory_bytes", "Memory held by running steps, "
                     "per node", ["node"], node_mem)
        yield _gauge("insitu_node_allocated_gpus", "GPUs (fractions for shared ones) held by "
                     "running steps, per node and GPU type", ["node", "gpu_type"], node_gpu)
        yield _gauge("insitu_project_allocated_cpu_cores", "CPU cores held by the project's "
                     "running steps", ["project"], proj_cpu)
        yield _gauge("insitu_project_allocated_memory_bytes", "Memory held by the project's "
                     "running steps", ["project"], proj_mem)
        yield _gauge("insitu_project_allocated_gpus", "GPUs held by the project's running "
                     "steps, per GPU type", ["project", "gpu_type"], proj_gpu)
        if inventory:
            yield _gauge("insitu_node_capacity_cpu_cores", "CPU cores of each node",
                         ["node"], {n.name: n.cpu for n in inventory})
            yield _gauge("insitu_node_capacity_memory_bytes", "Memory of each node",
                         ["node"], {n.name: n.memory for n in inventory})
            caps: dict[tuple[str, str], int] = {}
            for n in inventory:
                for g in n.gpus:
                    caps[n.name, g.model] = caps.get((n.name, g.model), 0) + 1
            yield _gauge("insitu_node_capacity_gpus", "GPUs of each node, per GPU type",
                         ["node", "gpu_type"], caps)


def _gauge(name: str, doc: str, labels: list[str],
           values: dict[Any, float] | dict[Any, int]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, doc, labels=labels)
    for key, v in sorted(values.items()):
        fam.add_metric(list(key) if isinstance(key, tuple) else [key], v)
    return fam


class GpuCollector(Collector):
    """GPU utilisation and memory of this machine's NVIDIA GPUs, read through NVML at each
    scrape. Without nvidia-ml-py, a driver or a GPU it yields nothing (the metrics are absent,
    never zero); why is logged once."""

    def __init__(self, nvml: Any = None) -> None:
        self.host = socket.gethostname()
        self.nvml: Any = None
        self.reason = ""
        try:
            if nvml is None:
                nvml = importlib.import_module("pynvml")  # nvidia-ml-py
            nvml.nvmlInit()
            if nvml.nvmlDeviceGetCount() == 0:
                self.reason = "NVML sees no GPU"
            else:
                self.nvml = nvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed"
        except Exception as e:  # noqa: BLE001 - NVMLError: no driver / library / device
            self.reason = f"NVML is not usable here ({e})"
        if self.nvml is None:
            log.info("no GPU metrics: %s", self.reason)

    def collect(self) -> Iterator[Metric]:
        nvml = self.nvml
        if nvml is None:
            return
        labels = ["host", "gpu", "model"]
        util = GaugeMetricFamily(GPU_METRICS[0], "Share of the last sample period the GPU "
                                 "was busy (NVML), 0 to 1", labels=labels)
        used = GaugeMetricFamily(GPU_METRICS[1], "GPU memory in use (NVML)", labels=labels)
        total = GaugeMetricFamily(GPU_METRICS[2], "GPU memory (NVML)", labels=labels)
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                h = nvml.nvmlDeviceGetHandleByIndex(i)
                name = nvml.nvmlDeviceGetName(h)
                key = [self.host, str(i), name.decode() if isinstance(name, bytes) else name]
                util.add_metric(key, nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0)
                mem = nvml.nvmlDeviceGetMemoryInfo(h)
                used.add_metric(key, float(mem.used))
                total.add_metric(key, float(mem.total))
        except Exception:  # noqa: BLE001 - a GPU fallen off the bus: show none rather than fail
            log.warning("could not read GPU metrics through NVML", exc_info=True)
            return
        yield from (util, used, total)


class _Measure:
    """A plain ASGI middleware (cheaper per request than ``@app.middleware``)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.seconds = metrics.seconds
        self.requests = metrics.requests

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.seconds.labels(method, route).observe(time.perf_counter() - t0)
            self.requests.labels(method, route, str(status[0])).inc()


class Metrics:
    def __init__(self, store: Store, version: str, *, nodes: Nodes | None = None,
                 gpus: bool = True, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("insitu_api_requests", "API requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("insitu_api_request_seconds", "API request latency",
                                 ["method", "route"], buckets=_BUCKETS, registry=self.registry)
        self._scraped = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers: merge their files
            from prometheus_client import multiprocess

            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scraped)
        self.register(_StoreCollector(store, version, nodes, clock))
        if gpus:
            self.register(GpuCollector())

    def register(self, collector: Collector) -> None:
        """Add a family of metrics, collected at each scrape."""
        self._scraped.register(collector)

    def install(self, app: FastAPI) -> None:
        """Measure every HTTP request ``app`` answers."""
        app.add_middleware(_Measure, metrics=self)

    def render(self) -> Response:
        return Response(generate_latest(self._scraped), media_type=CONTENT_TYPE_LATEST)

