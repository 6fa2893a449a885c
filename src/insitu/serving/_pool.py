"""The replicas of one model version, seen from the front process.

:class:`Pool` routes each request to the ready replica with the fewest requests in flight,
starts a replica when none is ready (the request waits for it: scale from zero), retries a
request whose replica died under it on another one (predict has no side effects), and
replaces replicas that die. :class:`Fleet` owns the warm process and every pool, and runs
the autoscaler. Everything here runs on the front's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import orjson

from insitu.serving import _wire
from insitu.serving._autoscale import Autoscaling, desired
from insitu.serving._errors import ModelFailed
from insitu.serving._replica import ReplicaSpec
from insitu.serving._warm import WarmProcess

LOAD_RETRY_SECONDS = 5.0   # after a failed load, requests get that error for this long
START_TIMEOUT = 120.0
RETRIES = 1                # a request whose replica died is sent to another this often


class Lost(Exception):
    """The replica died with the request in flight."""


class Reply:
    __slots__ = ("status", "body", "batch", "wait_us")

    def __init__(self, status: int, body: bytes, batch: int, wait_us: int) -> None:
        self.status = status
        self.body = body
        self.batch = batch
        self.wait_us = wait_us


class Replica(asyncio.Protocol):
    def __init__(self, pool: Pool, rid: str) -> None:
        self.pool = pool
        self.id = rid
        self.pid: int | None = None
        self.state = "starting"   # starting, ready, draining, gone
        self.inflight: dict[int, asyncio.Future[Reply]] = {}
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[dict[str, Any]] = \
            asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._n = 0
        self.started = time.perf_counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buf += data
        for rid, code, batch, wait, body in _wire.split(self._buf):
            if rid == 0:
                if not self.ready.done():
                    self.ready.set_result({"status": code, **orjson.loads(body)})
                continue
            fut = self.inflight.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result(Reply(code, body, batch, wait))
        if self.state == "draining" and not self.inflight and self.transport:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "gone"
        if not self.ready.done():
            self.ready.set_result({"status": 500, "error": f"replica {self.id} closed before "
                                   "it was ready; see its log"})
        for fut in self.inflight.values():
            if not fut.done():
                fut.set_exception(Lost())
        self.inflight.clear()
        self.pool.lost(self)

    def send(self, kind: int, body: bytes) -> asyncio.Future[Reply]:
        self._n += 1
        rid = self._n
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.inflight[rid] = fut
        assert self.transport is not None
        self.transport.write(_wire.frame(rid, kind, body))
        return fut

    def drain(self) -> None:
        self.state = "draining"
        if not self.inflight and self.transport is not None:
            self.transport.close()


class Pool:
    """The replicas of one model version."""

    def __init__(self, fleet: Fleet, spec: ReplicaSpec, policy: Autoscaling,
                 memory: int | None) -> None:
        self.fleet = fleet
        self.spec = spec
        self.policy = policy
        self.memory = memory
        self.replicas: dict[str, Replica] = {}
        self.metadata: dict[str, Any] | None = None
        self.load_error: str | None = None
        self._load_error_at = 0.0
        self.inflight = 0
        self.last_request = fleet.clock()
        self.last_scale_up = fleet.clock()
        self._changed = asyncio.Event()
        self.deaths: list[dict[str, Any]] = []   # replicas that died (not asked to stop)
        self.cold_starts: list[float] = []       # seconds from spawn to ready

    # -- requests ---------------------------------------------------------------------
    async def call(self, kind: int, body: bytes) -> Reply:
        self.last_request = self.fleet.clock()
        self.inflight += 1
        try:
            tries = 0
            while tries <= RETRIES:
                replica = await self._pick()
                try:
                    return await replica.send(kind, body)
                except Lost:  # its replica died: another one answers
                    # (a warm process that dies kills its replicas before it can be seen
                    # dead: give it a moment, so that its death does not count as a try)
                    await asyncio.sleep(0.05)
                    if not self.fleet.warm.alive:  # all its replicas died with it
                        self.fleet.doom_all()
                        continue
                    tries += 1
            raise ModelFailed(f"replicas of {self.spec.ref} died with the request in flight "
                              f"{RETRIES + 1} times{await self._cause()}",
                              hint="see the replicas' logs")
        finally:
            self.inflight -= 1
            self.last_request = self.fleet.clock()

    async def _cause(self) -> str:
        """The cause of the last death, when the warm process reports it soon."""
        deadline = time.monotonic() + 2.0
        seen = len(self.deaths)
        while time.monotonic() < deadline:
            if self.deaths and (len(self.deaths) > seen or self.deaths[-1].get("cause")):
                break
            await asyncio.sleep(0.02)
        cause = self.deaths[-1].get("cause") if self.deaths else None
        return f"; the last one was {cause}" if cause else ""

    async def _pick(self) -> Replica:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            best = None
            for r in self.replicas.values():
                if r.state == "ready" and (best is None or len(r.inflight) < len(best.inflight)):
                    best = r
            if best is not None:
                return best
            if self.load_error and time.monotonic() - self._load_error_at < \
                    LOAD_RETRY_SECONDS:
                raise ModelFailed(self.load_error, hint="see the replica's log")
            if not any(r.state == "starting" for r in self.replicas.values()):
                if not self.fleet.warm.alive:
                    await self.fleet.ensure_warm()
                self.spawn()
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise ModelFailed(f"no replica of {self.spec.ref} became ready within "
                                  f"{START_TIMEOUT:.0f} s", hint="see the replicas' logs")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    # -- replicas ---------------------------------------------------------------------
    @property
    def ready_count(self) -> int:
        return sum(r.state == "ready" for r in self.replicas.values())

    @property
    def live_count(self) -> int:
        return sum(r.state in ("starting", "ready") for r in self.replicas.values())

    def spawn(self) -> Replica:
        self.last_scale_up = self.fleet.clock()
        replica = self.fleet.new_replica(self)
        self.replicas[replica.id] = replica
        return replica

    async def connect(self, replica: Replica) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_unix_connection(lambda: replica, self.fleet.socket(replica.id))
            meta = await replica.ready
        except OSError as e:
            meta = {"status": 500, "error": f"could not reach replica {replica.id}: {e}"}
        if meta.pop("status") != 200:
            self.load_error = str(meta.get("error"))
            self._load_error_at = time.monotonic()
            replica.state = "gone"
            self.replicas.pop(replica.id, None)
        else:
            self.load_error = None
            self.metadata = meta
            if replica.state == "starting":
                replica.state = "ready"
                self.cold_starts.append(time.perf_counter() - replica.started)
        self._changed.set()
        self.fleet.changed()

    def lost(self, replica: Replica) -> None:
        self.replicas.pop(replica.id, None)
        self._changed.set()
        self.fleet.changed()

    def exited(self, replica_id: str, msg: dict[str, Any], asked: bool) -> None:
        if not asked:
            self.deaths.append(msg)
        r = self.replicas.pop(replica_id, None)
        if r is not None and r.transport is not None:
            r.transport.close()
        self._changed.set()

    def scale(self) -> None:
        """One autoscaler step."""
        now = self.fleet.clock()
        live = [r for r in self.replicas.values() if r.state in ("starting", "ready")]
        want = desired(self.policy, current=len(live), in_flight=self.inflight,
                       idle_for=now - self.last_request,
                       since_scale_up=now - self.last_scale_up)
        if self.load_error and time.monotonic() - self._load_error_at < LOAD_RETRY_SECONDS:
            return
        for _ in range(want - len(live)):
            self.spawn()
        if want < len(live):
            victims = sorted((r for r in live if r.state == "ready"),
                             key=lambda r: len(r.inflight))[: len(live) - want]
            for r in victims:
                self.fleet.asked_to_stop.add(r.id)
                r.drain()

    def close(self) -> None:
        for r in list(self.replicas.values()):
            self.fleet.asked_to_stop.add(r.id)
            if r.transport is not None:
                r.transport.close()


class Fleet:
    """The warm process, the pools of every version served, and the autoscaler's loop."""

    def __init__(self, flavors: list[str], rundir: str, logdir: str, *,
                 clock: Callable[[], float] = time.monotonic, tick: float = 0.05) -> None:
        self.rundir = rundir      # the replicas' sockets (a short path: Unix socket names
        self.logdir = logdir      # are short); their logs, kept after the server stops
        os.makedirs(logdir, exist_ok=True)
        self.clock = clock
        self.tick = tick
        self.flavors = flavors
        self.warm = self._new_warm()
        self.warm_restarts = 0
        self._warm_lock = asyncio.Lock()
        self.pools: dict[str, Pool] = {}
        self._by_replica: dict[str, Replica] = {}
        self.asked_to_stop: set[str] = set()
        self._n = 0
        self._task: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None

    def doom_all(self) -> None:
        """The warm process died, so did every replica it forked: route to none of them."""
        for r in self._by_replica.values():
            r.state = "gone"

    def _new_warm(self) -> WarmProcess:
        warm = WarmProcess(self.flavors, os.path.join(self.logdir, "warm.log"))
        warm.on_started = self._started
        warm.on_exit = self._exited
        return warm

    async def ensure_warm(self) -> None:
        """Start a new warm process if the last one died (its replicas died with it)."""
        async with self._warm_lock:
            if self.warm.alive:
                return
            old = self.warm
            await asyncio.get_running_loop().run_in_executor(None, old.close)
            for rid, r in list(self._by_replica.items()):  # no exit will be reported
                r.pool.exited(rid, {"id": rid, "cause": "its warm process died"},
                              rid in self.asked_to_stop)
            self._by_replica.clear()
            self.asked_to_stop.clear()
            print("insitu: the warm process of the replicas died; starting another",
                  flush=True)
            self.warm = self._new_warm()
            self.warm_restarts += 1
            await self.warm.start()

    async def start(self) -> None:
        await self.warm.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def pool(self, spec: ReplicaSpec, policy: Autoscaling, memory: int | None) -> Pool:
        if spec.ref not in self.pools:
            self.pools[spec.ref] = Pool(self, spec, policy, memory)
        return self.pools[spec.ref]

    def socket(self, rid: str) -> str:
        return os.path.join(self.rundir, f"{rid}.sock")

    def log(self, rid: str) -> str:
        return os.path.join(self.logdir, f"{rid}.log")

    def new_replica(self, pool: Pool) -> Replica:
        self._n += 1
        rid = f"{pool.spec.model}-{pool.spec.version}-r{self._n}"
        r = Replica(pool, rid)
        self._by_replica[rid] = r
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket(rid))
        self.warm.spawn(rid, asdict(pool.spec), self.socket(rid), self.log(rid), pool.memory)
        return r

    def _started(self, rid: str, pid: int) -> None:
        r = self._by_replica.get(rid)
        if r is not None:
            r.pid = pid
            asyncio.get_running_loop().create_task(r.pool.connect(r))

    def _exited(self, msg: dict[str, Any]) -> None:
        rid = msg["id"]
        r = self._by_replica.pop(rid, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket(rid))
        asked = rid in self.asked_to_stop
        self.asked_to_stop.discard(rid)
        if r is not None:
            if msg.get("error"):  # it never started: like a failed load, not retried at once
                r.pool.load_error = str(msg["error"])
                r.pool._load_error_at = time.monotonic()
                msg["cause"] = msg["error"]
            elif msg.get("oom"):
                from insitu._units import format_bytes

                msg["cause"] = (f"stopped at its memory limit of {format_bytes(msg.get('limit'))}"
                                f" (peak {format_bytes(msg.get('peak'))})")
            else:
                code = msg.get("code") or 0
                msg["cause"] = (f"killed by signal {-code}" if code < 0 else
                                f"exited with code {code}")
            r.pool.exited(rid, msg, asked)
        self.changed()

    def changed(self) -> None:
        self.on_change()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            if not self.warm.alive:
                try:
                    await self.ensure_warm()
                except Exception as e:  # noqa: BLE001 - tried again on the next tick
                    print(f"insitu: could not start the warm process: {e}", flush=True)
                    continue
            for pool in list(self.pools.values()):
                try:
                    pool.scale()
                except Exception as e:  # noqa: BLE001 - keep scaling the others
                    print(f"insitu: autoscaler: {e}")
            self.changed()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for p in self.pools.values():
            p.close()
        await asyncio.get_running_loop().run_in_executor(None, self.warm.close)
