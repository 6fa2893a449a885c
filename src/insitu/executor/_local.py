"""The local executor: attempts run as processes on this machine, forked by a fork server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import psutil

from insitu._units import parse_memory
from insitu.errors import ResourceError
from insitu.executor._base import AttemptExit, Executor, GpuInfo, LaunchRequest, NodeInfo
from insitu.executor._gang import Gang, is_gang, rank_requests
from insitu.executor._memory import MODES, MemoryEnforcer

LOCAL_NODE = "local"


def local_node() -> NodeInfo:
    """This machine's inventory. ``INSITU_NODE_CPUS``, ``INSITU_NODE_MEMORY`` and
    ``INSITU_NODE_GPUS`` (e.g. ``"A100:2,T4:1"``) override what is detected."""
    cpus = os.environ.get("INSITU_NODE_CPUS")
    try:
        cpu = float(cpus) if cpus else float(len(os.sched_getaffinity(0)))
    except ValueError:
        raise ResourceError(f"INSITU_NODE_CPUS={cpus!r} is not a number") from None
    mem_env = os.environ.get("INSITU_NODE_MEMORY")
    memory = parse_memory(mem_env, what="INSITU_NODE_MEMORY") if mem_env else \
        psutil.virtual_memory().total
    gpus = _gpus_from_env(os.environ.get("INSITU_NODE_GPUS"))
    if gpus is None:
        gpus = _detect_gpus()
    return NodeInfo(name=LOCAL_NODE, cpu=cpu, memory=memory, gpus=tuple(gpus),
                    labels={"insitu.dev/hostname": os.uname().nodename})


def _gpus_from_env(value: str | None) -> list[GpuInfo] | None:
    if value is None:
        return None
    out: list[GpuInfo] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        model, _, count = part.partition(":")
        try:
            n = int(count or "1")
        except ValueError:
            raise ResourceError(f"INSITU_NODE_GPUS={value!r}: bad count in {part!r}",
                                hint='write e.g. INSITU_NODE_GPUS="A100:2,T4:1"') from None
        out += [GpuInfo(index=len(out) + i, model=model) for i in range(n)]
    return out


def _detect_gpus() -> list[GpuInfo]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        text = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in text.strip().splitlines():
        idx, name, mem = (x.strip() for x in line.split(","))
        gpus.append(GpuInfo(index=int(idx), model=name, memory=int(float(mem)) * 1024**2))
    return gpus


class LocalExecutor(Executor):
    """Runs each attempt in its own process on this machine (see ``_forkserver``).

    ``memory_enforcement``: "auto" (a cgroup per attempt where the machine allows it, else
    the watchdog), "watchdog", or None to follow ``INSITU_MEMORY_ENFORCEMENT``
    (see :mod:`insitu.executor._memory`)."""

    name = "local"

    def __init__(self, *, memory_enforcement: str | None = None) -> None:
        if memory_enforcement is not None and memory_enforcement not in MODES:
            raise ResourceError(f"unknown memory enforcement {memory_enforcement!r}",
                                hint=f"use one of {', '.join(MODES)}")
        MemoryEnforcer(memory_enforcement)  # a bad INSITU_MEMORY_ENFORCEMENT fails here
        self._memory = memory_enforcement or ""
        self._node = local_node()
        self._proc: subprocess.Popen[bytes] | None = None
        self._tx: Connection | None = None
        self._rx: Connection | None = None
        self._pending: dict[str, LaunchRequest] = {}
        self._pids: dict[str, int] = {}
        self._preload: list[dict[str, Any]] = []
        self._gangs: dict[str, Gang] = {}      # a distributed step's attempt, by its key
        self._gang_of: dict[str, str] = {}     # a rank's key -> its gang's key
        # the server starts at the first launch: a run with nothing to launch (all of it
        # cached) never pays for it, nor for importing the pipeline's modules a second time

    def nodes(self) -> list[NodeInfo]:
        return [self._node]

    def start(self) -> None:
        """Start the fork server now rather than at the first launch: an engine kept warm
        for runs to come pays its start-up before a run arrives."""
        self._start()

    def use_code(self, root: str) -> None:
        if self._tx is not None:  # a server started later takes it from our cwd and env
            self._tx.send(("code", root))

    def _start(self) -> None:
        if self._proc is not None:
            return
        r1, w1 = os.pipe()  # engine -> server
        r2, w2 = os.pipe()  # server -> engine
        env = dict(os.environ)
        src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                   else "")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "insitu.executor._forkserver", str(r1), str(w2),
             self._memory],
            pass_fds=(r1, w2), start_new_session=True, env=env, close_fds=True)
        os.close(r1)
        os.close(w2)
        self._tx = Connection(w1, readable=False)
        self._rx = Connection(r2, writable=False)
        if self._preload:
            self._tx.send(("preload", self._preload))
            self._preload = []

    def prepare(self, functions: list[dict[str, Any]]) -> None:
        """Note the functions the server imports once, when it starts (or now, if it runs)."""
        if self._tx is not None:
            self._tx.send(("preload", functions))
        else:
            self._preload = list(functions)

    def launch(self, req: LaunchRequest) -> None:
        self._start()
        assert self._tx is not None
        if is_gang(req):  # one process per rank, all started now (see _gang)
            ranks = rank_requests(req)
            self._gangs[req.key] = Gang(req, ranks)
            for r in ranks:
                self._gang_of[r.key] = req.key
                self._pending[r.key] = r
            for r in ranks:
                self._tx.send(("launch", r))
            return
        self._pending[req.key] = req
        self._tx.send(("launch", req))

    def cancel(self, key: str) -> None:
        gang = self._gangs.get(key)
        if gang is not None:
            gang.cancelled = True
            for k in gang.keys:
                self.cancel(k)
            return
        if self._tx is not None and key in self._pending:
            self._tx.send(("cancel", key))

    def _rank_ended(self, ex: AttemptExit) -> AttemptExit | None:
        """A rank's exit: stop the rest of its gang if it failed; the gang's exit once
        every rank has ended."""
        gkey = self._gang_of.pop(ex.key)
        gang = self._gangs[gkey]
        for k in gang.add(ex):
            if self._tx is not None and k in self._pending:
                self._tx.send(("cancel", k))
        if not gang.done:
            return None
        del self._gangs[gkey]
        self._pids.pop(gkey, None)
        return gang.exit()

    def poll(self, timeout: float) -> list[AttemptExit]:
        if self._rx is None:
            return []
        out: list[AttemptExit] = []
        end = time.monotonic() + timeout
        wait = timeout
        while self._rx.poll(wait):
            try:
                msg = self._rx.recv()
            except EOFError:
                out += self._lost_all()
                break
            if msg[0] == "started":
                self._pids[msg[1]] = msg[2]
                if msg[1].endswith("@0") and msg[1] in self._gang_of:  # a gang: rank 0's pid
                    self._pids[self._gang_of[msg[1]]] = msg[2]
                wait = 0 if out else max(0.0, end - time.monotonic())
                continue
            wait = 0
            (_, key, pid, code, sig, peak, cpu, t0, t1, timed_out, cancelled, oom, alloc,
             enforcement) = msg
            req = self._pending.pop(key)
            self._pids.pop(key, None)
            ex = AttemptExit(key=key, pid=pid, exit_code=code, signal=sig,
                             peak_memory=peak, cpu_time=cpu, started_at=t0, ended_at=t1,
                             timed_out=timed_out, cancelled=cancelled,
                             result=read_result(req.result_path), node=LOCAL_NODE,
                             memory_enforcement=enforcement, oom_killed=oom,
                             allocation=alloc)
            if key in self._gang_of:
                gex = self._rank_ended(ex)
                if gex is None:
                    wait = max(0.0, end - time.monotonic()) if not out else 0
                    continue
                ex = gex
            out.append(ex)
        return out

    def _lost_all(self) -> list[AttemptExit]:
        now = time.time()
        out = []
        for k, r in self._pending.items():
            ex = AttemptExit(key=k, pid=self._pids.get(k), exit_code=None, signal=None,
                             peak_memory=None, cpu_time=None, started_at=now, ended_at=now,
                             result=read_result(r.result_path), node=LOCAL_NODE)
            if k in self._gang_of:
                gex = self._rank_ended(ex)
                if gex is not None:
                    out.append(gex)
            else:
                out.append(ex)
        self._pending.clear()
        self._rx = None
        return out

    def pid_of(self, key: str) -> int | None:
        return self._pids.get(key)

    def close(self) -> None:
        if self._proc is None:
            return
        try:
            assert self._tx is not None
            self._tx.send(("stop",))
            self._tx.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._rx is not None:
            self._rx.close()
        self._proc = None
        self._tx = self._rx = None


def read_result(path: str) -> dict[str, Any] | None:
    """The result an attempt wrote, or None if it wrote none (or an unreadable one)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
