"""The lifecycle of the notebooks a platform server runs: place, start, watch, cull, stop.

A notebook is long-running work: ``start`` reserves its CPU, memory and GPU share on the
server's node through :class:`insitu.engine._placement.Placer`, in the store's exclusive
transaction that engines place their attempts in, around what their running attempts and
other running notebooks hold (``ClaimsTx.running_elsewhere``); the record of a running
notebook carries its placement and a heartbeat, so engines in turn place around it. One
that does not fit waits, with the scheduler's reason, and is placed when room frees.

A thread (:meth:`NotebookManager.tick`, every ``interval`` s) beats the running notebooks'
heartbeats, enforces their memory limit on their kernels (:mod:`._kernels`), stops the
idle ones (no kernel activity and no open connection for ``idle_s``, by ``clock``, an
injectable clock) and places the waiting ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from insitu._units import format_bytes
from insitu.errors import Conflict, InsituError, NotFound, UserError
from insitu.notebooks import _jupyter as J
from insitu.notebooks import _kernels as K
from insitu.notebooks._env import ensure_env
from insitu.store import NotebookRecord, Store

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
STALE_AFTER_S = 15.0  # as engines: a heartbeat older than this holds nothing
TOUCH_EVERY_S = 10.0


def view(rec: NotebookRecord, server_url: str = "") -> dict[str, Any]:
    """What the API shows of a notebook (never its server's token or socket)."""
    url = f"{server_url}{J.base_url(rec.project, rec.name)}lab" if rec.state == "running" \
        else None
    return {"project": rec.project, "name": rec.name, "state": rec.state, "cpu": rec.cpu,
            "memory": rec.memory, "gpu": rec.gpu, "near": rec.near, "idle_s": rec.idle_s,
            "placement": rec.placement, "url": url, "reason": rec.reason, "oom": rec.oom,
            "created_at": rec.created_at, "started_at": rec.started_at,
            "active_at": rec.active_at, "created_by": rec.created_by,
            "environment": rec.detail.get("environment"), "home": rec.detail.get("home")}


class NotebookManager:
    """The notebooks of one server process. Thread-safe: routes call it from their threads,
    its own thread ticks."""

    def __init__(self, store: Store, root: Path, *, clock: Callable[[], float] = time.time,
                 interval: float = 1.0, memory_interval: float = 0.1,
                 node: Any = None) -> None:
        from insitu.executor import local_node

        self.store = store
        self.root = root
        self.clock = clock
        self.interval = interval
        self.memory_interval = memory_interval
        self.node = node or local_node()
        self._lock = threading.RLock()
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._peaks: dict[tuple[str, str], int] = {}
        self._limits: dict[tuple[str, str], int] = {}  # of the running ones: the watch's
        self._touched: dict[tuple[str, str], float] = {}
        self._starting: set[tuple[str, str]] = set()  # being placed and started now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- paths ------------------------------------------------------------------------
    def _dir(self, project: str, name: str) -> Path:
        return self.root / project / name

    # -- lifecycle --------------------------------------------------------------------
    def begin(self) -> None:
        """Take over: notebooks recorded as running by a server before this one are
        stopped (their processes, if still alive, ended), then start ticking."""
        for rec in [*self.store.select(NotebookRecord, state="running"),
                    *self.store.select(NotebookRecord, state="starting")]:
            if J.alive(rec.pid) and rec.sock and Path(rec.sock).exists():
                with contextlib.suppress(OSError):
                    os.killpg(rec.pid or 0, signal.SIGKILL)
            self.store.put(replace(rec, state="stopped", placement=None, sock=None,
                                   secret=None, pid=None,
                                   reason="stopped: the server restarted"))
        self._thread = threading.Thread(target=self._run, name="notebooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the watch and every notebook this server runs (when the server stops)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for proc in list(self._procs.values()):  # all at once: each then stops in a moment
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
        for (project, name) in list(self._procs):
            with contextlib.suppress(Exception):
                self.stop(project, name, reason="stopped: the server shut down")

    def get(self, project: str, name: str) -> NotebookRecord:
        found = self.store.select(NotebookRecord, project=project, name=name)
        if not found:
            raise NotFound(f"no notebook {name!r} in project {project!r}",
                           hint=f"list them with `insitu notebook ls --project {project}`")
        rec: NotebookRecord = found[0]
        return rec

    def list(self, project: str) -> list[NotebookRecord]:
        return list(self.store.select(NotebookRecord, project=project))

    def start(self, project: str, name: str, *, cpu: float, memory: int, gpu: float = 0.0,
              near: str | None = None, idle_s: float = 3600.0,
              user: str | None = None) -> NotebookRecord:
        """Place and start a notebook (or start a stopped one again, with the resources
        given now); a running one is returned as it is. One that does not fit is
        recorded as waiting, with the scheduler's reason, and started when room frees."""
        if not NAME.match(name):
            raise UserError(f"notebook name {name!r} is not allowed",
                            hint="use up to 63 lower-case letters, digits and '-', starting "
                                 "with a letter or digit (e.g. 'explore')")
        for what, v in (("cpu", cpu), ("memory", memory), ("gpu", gpu), ("idle", idle_s)):
            if not (v >= 0) or v != v or v == float("inf"):
                raise UserError(f"notebook {what} {v!r} is not a finite number >= 0",
                                hint=f"give e.g. --{what} 1")
        if cpu <= 0 or memory <= 0:
            raise UserError("a notebook needs some CPU and memory",
                            hint="give e.g. --cpu 1 --memory 2GiB")
        with self._lock:
            old = self.store.select(NotebookRecord, project=project, name=name)
            if old and old[0].state in ("starting", "running") \
                    and (project, name) in self._procs:
                rec: NotebookRecord = old[0]
                return rec
            if (project, name) in self._starting:
                raise Conflict(f"notebook {name!r} is being started",
                               hint=f"see `insitu notebook show {name}`")
            now = time.time()
            base = old[0] if old else NotebookRecord(
                project=project, name=name, state="waiting", cpu=cpu, memory=memory,
                created_at=now, created_by=user)
            rec = replace(base, state="waiting", cpu=cpu, memory=memory, gpu=gpu, near=near,
                          idle_s=idle_s, reason="not placed yet", placement=None, oom=None)
            self._starting.add((project, name))
        try:  # not under the lock: the watch goes on while a server starts
            return self._try_start(rec)
        finally:
            with self._lock:
                self._starting.discard((project, name))

    def _request(self, rec: NotebookRecord, placer: Any) -> Any:
        """The scheduler's request; ``--near``'s shards as its inputs, their replicas'
        nodes noted as holders, so it goes where the data is when that node can take it."""
        from insitu.engine._placement import Request

        inputs: list[tuple[str, int]] = []
        if rec.near:
            from insitu.store import ShardRecord

            for s in self.store.select(ShardRecord, dataset=rec.near):
                data_id = f"{s.dataset}/{s.shard}"
                inputs.append((data_id, int(s.size or 0)))
                for r in s.replicas:
                    if r.get("node"):
                        placer.note_data(data_id, r["node"])
        return Request(cpu=rec.cpu, memory=rec.memory, gpu=rec.gpu, inputs=tuple(inputs))

    def _try_start(self, rec: NotebookRecord) -> NotebookRecord:
        """Place ``rec`` and start its process, or record why it waits."""
        from insitu.engine._placement import Placer

        placer = Placer([self.node])
        req = self._request(rec, placer)
        if not hasattr(self.store, "exclusive"):
            raise InsituError("notebooks need a store with transactions (SQLStore)")
        with self.store.exclusive() as tx:
            placer.set_others(tx.running_elsewhere("", time.time() - STALE_AFTER_S))
            placed = placer.place(req, f"notebook/{rec.project}/{rec.name}")
            if isinstance(placed, str):
                rec = replace(rec, state="waiting", reason=placed)
            else:
                rec = replace(rec, state="starting", placement=placed.as_dict(), reason=None,
                              heartbeat_at=time.time(), started_at=time.time(),
                              active_at=self.clock())
            tx.upsert(rec)
        if rec.state == "starting":
            try:
                rec = self._launch(rec)
            except BaseException as e:
                rec = replace(rec, state="stopped", placement=None, sock=None, secret=None,
                              pid=None, reason=f"failed to start: {e}")
                self.store.put(rec)
                raise
        return rec

    def _launch(self, rec: NotebookRecord) -> NotebookRecord:
        d = self._dir(rec.project, rec.name)
        home, run = d / "home", d / "run"
        home.mkdir(parents=True, exist_ok=True)
        run.mkdir(parents=True, exist_ok=True)
        os.chmod(run, 0o700)
        python = ensure_env(d / "env")
        sock = run / "jupyter.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        secret = secrets.token_urlsafe(32)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INSITU_TOKEN", "JUPYTER_TOKEN"))}
        env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(run / "jupyter"),
                   JUPYTER_CONFIG_DIR=str(run / "config"), VIRTUAL_ENV=str(d / "env"),
                   PATH=f"{d / 'env' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                   INSITU_PROJECT=rec.project, INSITU_NOTEBOOK=rec.name)
        gpus = (rec.placement or {}).get("gpu_ids") or []
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        cpus = max(1, int(rec.cpu + 0.999))
        for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[k] = str(cpus)
        log = run / "server.log"
        proc = J.launch(python, sock=sock, secret=secret, project=rec.project,
                        name=rec.name, home=home, log=log, env=env)
        with self._lock:
            self._procs[(rec.project, rec.name)] = proc
        self._peaks[(rec.project, rec.name)] = 0
        self._limits[(rec.project, rec.name)] = rec.memory
        try:
            J.wait_ready(proc, sock, secret, J.base_url(rec.project, rec.name), log)
        except BaseException:
            self._end(proc)
            self._procs.pop((rec.project, rec.name), None)
            raise
        rec = replace(rec, state="running", sock=str(sock), secret=secret, pid=proc.pid,
                      heartbeat_at=time.time(),
                      detail={**rec.detail, "environment": str(d / "env"), "home": str(home),
                              "log": str(log)})
        with self._lock:
            if self._procs.get((rec.project, rec.name)) is not proc:
                raise InsituError(f"notebook {rec.name!r} was stopped while it started")
            self.store.put(rec)
        return rec

    @staticmethod
    def _end(proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM (jupyter-server shuts its kernels down), SIGKILL to the group after 10 s."""
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def stop(self, project: str, name: str, *, reason: str = "stopped") -> NotebookRecord:
        """Stop its server and kernels and free its resources; its home and environment
        stay. A waiting notebook stops waiting."""
        with self._lock:
            rec = self.get(project, name)
            proc = self._procs.pop((project, name), None)
            if proc is not None:
                self._end(proc)
            elif J.alive(rec.pid):
                with contextlib.suppress(OSError):
                    os.killpg(rec.pid or 0, signal.SIGKILL)
            rec = replace(rec, state="stopped", placement=None, sock=None, secret=None,
                          pid=None, reason=reason)
            self.store.put(rec)
            return rec

    def delete(self, project: str, name: str) -> None:
        """Stop it and remove it, its home and its environment."""
        with self._lock:
            self.stop(project, name)
            self.store.delete(NotebookRecord, project=project, name=name)
            shutil.rmtree(self._dir(project, name), ignore_errors=True)

    def touch(self, project: str, name: str) -> None:
        """A request went through the proxy: the notebook is in use (for culling). Written
        at most every :data:`TOUCH_EVERY_S` per notebook (JupyterLab polls often)."""
        now = self.clock()
        if now - self._touched.get((project, name), -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[(project, name)] = now
        with self._lock:
            found = self.store.select(NotebookRecord, project=project, name=name)
            if found and found[0].state == "running":
                self.store.put(replace(found[0], active_at=self.clock()))

    # -- the watch --------------------------------------------------------------------
    def _run(self) -> None:
        last_tick = 0.0
        while not self._stop.wait(self.memory_interval):
            try:
                self.check_memory()
                if time.monotonic() - last_tick >= self.interval:
                    last_tick = time.monotonic()
                    self.tick()
            except Exception:  # noqa: BLE001 - the watch must go on; the log says why
                import logging

                logging.getLogger("insitu.notebooks").exception("notebook watch failed")

    def check_memory(self) -> None:
        """Stop the largest kernel of each notebook over its memory limit."""
        for key, proc in list(self._procs.items()):
            if proc.poll() is not None:
                continue
            own, kernels = K.kernels(proc.pid)
            total = own + sum(k.resident for k in kernels)
            self._peaks[key] = max(self._peaks.get(key, 0), total)
            if not kernels or total < self._limits.get(key, total + 1):
                continue  # the usual case: no database read
            with self._lock:
                found = self.store.select(NotebookRecord, project=key[0], name=key[1])
                if not found or found[0].state != "running" or not kernels:
                    continue
                rec = found[0]
                if total < rec.memory:
                    continue
                victim = max(kernels, key=lambda k: k.resident)
                K.stop(victim)
                peak = self._peaks[key]
                more = f"{-(-max(rec.memory * 2, peak + peak // 2) // 2**30)}GiB"
                oom = {"kernel": victim.id, "peak": peak, "limit": rec.memory,
                       "kernel_resident": victim.resident, "at": time.time(),
                       "message": (f"a kernel of notebook {rec.name} ran out of memory: "
                                   f"{format_bytes(peak)} held at peak, limit "
                                   f"{format_bytes(rec.memory)}; the kernel was stopped, "
                                   "the notebook server is still up"),
                       "fix": (f"insitu notebook stop {rec.name} --project {rec.project} && "
                               f"insitu notebook start {rec.name} --project {rec.project} "
                               f"--cpu {rec.cpu:g} --memory {more}"
                               + (f" --gpu {rec.gpu:g}" if rec.gpu else ""))}
                self.store.put(replace(rec, oom=oom))
                self._peaks[key] = 0
            if rec.sock and rec.secret:
                J.forget_kernel(rec.sock, rec.secret, J.base_url(*key), victim.id)

    def tick(self) -> None:
        """Heartbeats, the notebooks whose server died, idle culling, the waiting ones."""
        now = self.clock()
        for key, proc in list(self._procs.items()):
            with self._lock:
                found = self.store.select(NotebookRecord, project=key[0], name=key[1])
                if not found or found[0].state not in ("starting", "running") \
                        or self._procs.get(key) is not proc:
                    continue
                rec = found[0]
                if rec.state == "starting":  # its server is not up yet: hold its place
                    self.store.put(replace(rec, heartbeat_at=time.time()))
                    continue
                if proc.poll() is not None:
                    self._procs.pop(key, None)
                    self.store.put(replace(rec, state="stopped", placement=None, sock=None,
                                           secret=None, pid=None,
                                           reason=f"its server exited (code {proc.returncode})"))
                    continue
                st = J.status(rec.sock or "", rec.secret or "", J.base_url(*key)) or {}
                active = rec.active_at or 0.0
                if st.get("last_activity"):
                    with contextlib.suppress(ValueError):
                        active = max(active, datetime.fromisoformat(
                            st["last_activity"].replace("Z", "+00:00")).timestamp())
                rec = replace(rec, heartbeat_at=time.time(), active_at=active)
                self.store.put(rec)
            if rec.idle_s and not st.get("connections") and now - active >= rec.idle_s:
                self.stop(*key, reason=f"culled: idle for {rec.idle_s:g} s (no kernel "
                                       "activity and no open connection)")
        for rec in self.store.select(NotebookRecord, state="waiting"):
            key = (rec.project, rec.name)
            with self._lock:
                fresh = self.store.select(NotebookRecord, project=rec.project, name=rec.name)
                if not fresh or fresh[0].state != "waiting" or key in self._starting:
                    continue
                self._starting.add(key)
            try:
                with contextlib.suppress(Exception):
                    self._try_start(fresh[0])
            finally:
                with self._lock:
                    self._starting.discard(key)

    def raise_if_running(self, project: str, name: str) -> None:
        rec = self.get(project, name)
        if rec.state == "running":
            raise Conflict(f"notebook {name!r} is running",
                           hint=f"stop it first: insitu notebook stop {name}")
