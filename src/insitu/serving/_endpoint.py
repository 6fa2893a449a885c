"""An endpoint: one served model (its stable version from an alias or a number), its
traffic policy, batching, autoscaling, per-replica resources and payload logging; and the
live object that answers requests through replicas. Nothing here knows HTTP or auth: the
``insitu serve`` app and the platform server both put their own doors in front of it."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from insitu.errors import UserError
from insitu.serving import _wire
from insitu.serving._autoscale import Autoscaling
from insitu.serving._errors import BadInput, TooLarge, UnknownModel
from insitu.serving._metrics import Metrics
from insitu.serving._payloads import PayloadLog, PayloadLogging
from insitu.serving._pool import Fleet, Pool
from insitu.serving._registry import runtime_class
from insitu.serving._replica import ReplicaSpec
from insitu.serving._traffic import Traffic, mirror, route

if False:  # pragma: no cover - typing only
    from insitu.store import Store


@dataclass(frozen=True, kw_only=True)
class Batching:
    """Adaptive batching: up to ``max_batch_size`` requests stacked into one ``predict``,
    a batch waiting at most ``max_latency_ms`` to fill (0: take what is queued, never wait).
    On wherever the runtime can batch, unless ``enabled=False``."""

    enabled: bool = True
    max_batch_size: int = 32
    max_latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or not 0 <= self.max_latency_ms <= 10_000:
            raise UserError("max batch size must be at least 1 and max latency 0 to 10000 ms",
                            hint="e.g. --max-batch-size 32 --max-latency-ms 2")


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What each replica may use. ``memory`` (bytes) is enforced on resident memory; ``cpu``
    and ``gpu`` are what a scheduler reserves when it places replicas."""

    memory: int | None = None
    cpu: float | None = None
    gpu: float | None = None


@dataclass(frozen=True, kw_only=True)
class EndpointSpec:
    """What to serve and how (plain data)."""

    model: str                                   # "fraud@champion", "fraud:3" or "fraud"
    name: str | None = None                      # the served name; the model's by default
    traffic: Traffic = field(default_factory=Traffic)
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    batching: Batching = field(default_factory=Batching)
    resources: Resources = field(default_factory=Resources)
    payloads: PayloadLogging = field(default_factory=PayloadLogging)
    max_body_bytes: int = 16 * 1024 * 1024

    @property
    def model_name(self) -> str:
        return self.model.split("@", 1)[0].rsplit(":", 1)[0]

    @property
    def alias(self) -> str | None:
        return self.model.split("@", 1)[1] if "@" in self.model else None

    @property
    def served_name(self) -> str:
        return self.name or self.model_name


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    version: int | None


def _error(status: int, message: str) -> Answer:
    return Answer(status, orjson.dumps({"error": message}), None)


class Endpoint:
    """The live endpoint: resolves its versions in the registry, keeps a pool of replicas
    per version, routes each request by its traffic policy, mirrors shadows, logs payloads
    and counts metrics. Use from one event loop: ``await start()``, ``await infer(...)``,
    ``promote()``/``rollback()``/``set_traffic()``, ``await close()``."""

    def __init__(self, spec: EndpointSpec, *, store: Store | None = None,
                 clock: Callable[[], float] = time.monotonic, logdir: str | None = None,
                 metrics: Metrics | None = None, project: str = "default") -> None:
        from insitu._config import load_config
        from insitu.models import get_version
        from insitu.store import open_store

        self.spec = spec
        self.project = project  # whose registry the model's name is looked up in
        self.store = store or open_store()
        self.clock = clock
        cfg = load_config()
        self._artifacts_url = cfg.artifacts_url
        self._home = str(cfg.home)
        mv = get_version(spec.model, store=self.store, project=project)
        self.name = spec.served_name
        self.model = mv.name
        self.stable = mv.version
        self.traffic = spec.traffic
        self._specs: dict[int, ReplicaSpec] = {}
        for v in {self.stable, *self.traffic.versions()}:
            self._spec(v)  # every version resolves, with a runtime, before anything starts
        self.rundir = tempfile.mkdtemp(prefix="insitu-serve-")
        self.logdir = logdir or os.path.join(
            self._home, "serving", f"{self.name}-{time.strftime('%Y%m%d-%H%M%S')}-"
            f"{os.getpid()}")
        self.fleet = Fleet(sorted({s.flavor for s in self._specs.values()}), self.rundir,
                           self.logdir, clock=clock)
        self.fleet.on_change = self._count_replicas
        self.metrics = metrics or Metrics()
        self.payloads = PayloadLog(self.name, spec.payloads)
        self._background: set[asyncio.Task[Any]] = set()
        self._children: dict[int, tuple[Any, Any, Any]] = {}
        self._counters: dict[tuple[int, int], Any] = {}

    # -- versions ---------------------------------------------------------------------
    def _spec(self, version: int) -> ReplicaSpec:
        if version in self._specs:
            return self._specs[version]
        from insitu.models import get_version

        mv = get_version(f"{self.model}:{version}", store=self.store,
                         project=self.project)
        flavor = mv.flavor
        runtime_class(flavor, what=f"model {mv.name}:{mv.version}")
        b = self.spec.batching
        s = ReplicaSpec(model=mv.name, version=mv.version, flavor=flavor,
                        output=mv.record.output, artifacts_url=self._artifacts_url,
                        home=self._home, max_batch_size=b.max_batch_size,
                        max_latency_ms=b.max_latency_ms, batching=b.enabled)
        self._specs[version] = s
        return s

    def _policy(self, version: int) -> Autoscaling:
        """The endpoint's policy for versions in its traffic; a version asked for only by
        number, or left by a promote or rollback, scales to zero after a minute."""
        if version == self.stable or version in self.traffic.versions():
            return self.spec.autoscaling
        return replace(self.spec.autoscaling, min_replicas=0, idle_seconds=60.0)

    def pool(self, version: int) -> Pool:
        return self.fleet.pool(self._spec(version), self._policy(version),
                               self.spec.resources.memory)

    def _retune(self) -> None:
        for p in self.fleet.pools.values():
            p.policy = self._policy(p.spec.version)

    def versions(self) -> list[int]:
        return sorted({self.stable, *self.traffic.versions()})

    async def start(self, *, warm: bool = True) -> None:
        """Start the warm process and the replicas the policy wants now."""
        await self.fleet.start()
        for v in self.versions():
            pool = self.pool(v)
            if warm and pool.policy.min_replicas > 0:
                pool.spawn()

    # -- requests ---------------------------------------------------------------------
    def _version_of(self, name: str, version: str | None) -> int | None:
        if name != self.name:
            raise UnknownModel(f"no model named {name!r} is served here",
                               hint=f"this server serves {self.name!r}")
        if version is None:
            return None
        try:
            v = int(version)
        except ValueError:
            raise UnknownModel(f"model {name!r} has no version {version!r}",
                               hint="versions are numbers, e.g. /versions/3/") from None
        try:
            self._spec(v)
        except UserError as e:
            raise UnknownModel(e.message, hint=e.hint) from None
        return v

    async def infer(self, name: str, body: bytes, *, version: str | None = None,
                    v1: bool = False, header: str | None = None) -> Answer:
        """Answer one request body (OIP v2 JSON, or v1 ``instances`` if ``v1``)."""
        t0 = time.perf_counter()
        try:
            pinned = self._version_of(name, version)
        except UnknownModel as e:
            return _error(404, str(e))
        if len(body) > self.spec.max_body_bytes:
            e2 = TooLarge(f"the request body is {len(body)} bytes, over this endpoint's limit "
                          f"of {self.spec.max_body_bytes}",
                          hint="send fewer rows per request, or raise --max-body-bytes")
            return _error(e2.status, str(e2))
        t = self.traffic
        if pinned is not None:
            chosen = pinned
        elif t.canary is None and not t.routes:
            chosen = self.stable
        else:
            chosen = route(t, self.stable, header, random.random())
        kind = _wire.V1 if v1 else _wire.V2
        answer = await self._call(chosen, kind, body, t0)
        if pinned is None and t.shadow is not None:
            shadow = mirror(t, random.random())
            if shadow is not None and shadow != chosen:
                task = asyncio.get_running_loop().create_task(self._shadow(shadow, kind, body))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        return answer

    def _series(self, version: int) -> tuple[Any, Any, Any]:
        """The (latency, batch, queue) metric children of a version (looked up once)."""
        got = self._children.get(version)
        if got is None:
            labels = (self.name, self.model, str(version))
            m = self.metrics
            got = self._children[version] = (m.latency.labels(*labels),
                                             m.batch.labels(*labels), m.queue.labels(*labels))
        return got

    async def _call(self, version: int, kind: int, body: bytes, t0: float) -> Answer:
        labels = (self.name, self.model, str(version))
        m = self.metrics
        latency, batch, queue = self._series(version)
        try:
            reply = await self.pool(version).call(kind, body)
            status, out = reply.status, reply.body
            if reply.batch:
                batch.observe(reply.batch)
                queue.observe(reply.wait_us / 1e6)
        except UserError as e:
            status, out = getattr(e, "status", 400), orjson.dumps({"error": str(e)})
        except Exception as e:  # noqa: BLE001 - the process stays up; the caller is told
            status = getattr(e, "status", 500)
            out = orjson.dumps({"error": str(e) or type(e).__name__})
        dt = time.perf_counter() - t0
        key = (version, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = m.requests.labels(*labels, str(status))
        counter.inc()
        if status >= 400:
            m.errors.labels(*labels, str(status)).inc()
        latency.observe(dt)
        if self.payloads.wanted():
            self.payloads.record(model=self.model, version=version, request=body,
                                 response=out, status=status, latency_ms=dt * 1000)
        return Answer(status, out, version)

    async def _shadow(self, version: int, kind: int, body: bytes) -> None:
        t0 = time.perf_counter()
        try:
            reply = await self.pool(version).call(kind, body)
            status, out = reply.status, reply.body
        except Exception as e:  # noqa: BLE001 - a shadow's failure never reaches a caller
            status, out = getattr(e, "status", 500), orjson.dumps({"error": str(e)})
        self.metrics.shadow.labels(self.name, self.model, str(version), str(status)).inc()
        self.payloads.record(model=self.model, version=version, request=body, response=out,
                             status=status, latency_ms=(time.perf_counter() - t0) * 1000,
                             kind="shadow")

    async def metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        v = self._version_of(name, version)
        pool = self.pool(v if v is not None else self.stable)
        if pool.metadata is None and pool.load_error is None and pool.ready_count == 0:
            await pool._pick()  # starts one (from zero) and waits for it
        if pool.metadata is None:
            from insitu.serving._errors import ModelFailed

            raise ModelFailed(pool.load_error or "the model is not loaded")
        meta = dict(pool.metadata)
        meta["name"] = self.name
        meta["versions"] = [str(x) for x in self.versions()]
        return meta

    def ready(self, name: str, version: str | None = None) -> bool:
        """Can it answer now or after a scale from zero (no failed load)?"""
        v = self._version_of(name, version)
        pool = self.pool(v if v is not None else self.stable)
        return pool.load_error is None

    # -- traffic ----------------------------------------------------------------------
    def set_traffic(self, traffic: Traffic) -> None:
        """Route by a new policy; its versions must exist and have a runtime."""
        for v in traffic.versions():
            try:
                self._spec(v)
            except UserError as e:
                raise BadInput(e.message, hint=e.hint) from None
        self.traffic = traffic
        self._retune()

    def promote(self) -> int:
        """Make the canary the stable version: the alias moves to it in the registry (one
        atomic write), then all traffic goes to it. Returns the new stable version."""
        from insitu.models import set_alias

        canary = self.traffic.canary
        if canary is None:
            raise UserError("there is no canary to promote",
                            hint="start one with --canary NAME:VERSION --percent 10")
        if self.spec.alias:
            set_alias(self.model, self.spec.alias, canary, store=self.store,
                      project=self.project)
        self.stable = canary
        self.traffic = self.traffic.without_canary()
        self._retune()
        return canary

    def rollback(self) -> int:
        """Send all traffic back to the stable version (the alias does not move)."""
        if self.traffic.canary is None:
            raise UserError("there is no canary to roll back")
        self.traffic = self.traffic.without_canary()
        self._retune()
        return self.stable

    def describe(self) -> dict[str, Any]:
        """The endpoint's state: versions, traffic, replicas and their deaths."""
        t = self.traffic
        return {
            "name": self.name, "model": self.model, "ref": self.spec.model,
            "stable": self.stable,
            "traffic": {"canary": t.canary, "percent": t.percent, "shadow": t.shadow,
                        "shadow_percent": t.shadow_percent, "header": t.header,
                        "routes": t.routes},
            "versions": {str(ref): {"ready": p.ready_count, "live": p.live_count,
                                    "in_flight": p.inflight, "load_error": p.load_error,
                                    "deaths": p.deaths[-20:],
                                    "cold_starts": [round(c, 4) for c in p.cold_starts[-20:]],
                                    "replicas": {r.id: {"pid": r.pid, "state": r.state,
                                                        "log": self.fleet.log(r.id)}
                                                 for r in p.replicas.values()}}
                         for ref, p in self.fleet.pools.items()},
            "logs": self.logdir,
        }

    def _count_replicas(self) -> None:
        for p in self.fleet.pools.values():
            self.metrics.replicas.labels(self.name, p.spec.model, str(p.spec.version)).set(
                p.ready_count)

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        await self.fleet.close()
        self.payloads.close()
        shutil.rmtree(self.rundir, ignore_errors=True)
