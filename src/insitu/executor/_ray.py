"""The Ray executor: each attempt runs as a Ray task pinned to the node insitu chose.

How an attempt runs: :meth:`RayExecutor.launch` submits a Ray task with hard node
affinity (``NodeAffinitySchedulingStrategy(node_id, soft=False)``), ``max_retries=0``
(insitu's engine does the retrying) and ``num_cpus=0``: insitu's scheduler already
placed the attempt against the node's capacity, and a second, Ray-side accounting
would only hold attempts pending where nobody can see why. Inside the task, the
attempt runs in a fresh child process (``_worker.run_attempt``: the memory limit on
resident memory as the local executor enforces it, :mod:`insitu.executor._memory`, with
the same cgroup or watchdog on the node; stdout/stderr captured, the step called through the error
boundary, the output stored in the artifact store, the result JSON written); the
child dies with its Ray worker (``PR_SET_PDEATHSIG``). The task reaps it and
returns its exit status, peak resident memory (and whether it was stopped at its
limit), CPU time, result and logs, and the executor
writes logs and result to the engine-side paths in the request: the engine's
machine keeps every attempt's logs, whatever Ray does with its workers. A fresh
process per attempt is why the Ray worker itself can be reused (no ``max_calls=1``).

Timeouts and cancellation are enforced here (``ray.cancel(ref, force=True)``), and
reported as ``timed_out`` / ``cancelled``. A task whose worker or node died is
reported with ``result=None`` and no exit code, which the engine classifies as a
lost worker and retries. A task's timeout counts from its launch. If the engine's
process dies, Ray stops its job's workers, and each attempt's process dies with its worker.

Nodes are Ray's alive nodes: name from the ``insitu.node/<name>`` resource (else
the Ray node id), CPU, memory and GPUs from its resources, labels from Ray's node
labels plus ``insitu.dev/data-dir`` (the node's ``INSITU_DATA_DIR``, asked once
per node) and ``insitu.dev/ray-node-id``.

Artifacts: the artifact store URL is used as is on every node. On the local
multi-node cluster (:mod:`insitu.executor._ray_cluster`) all nodes share this
machine's filesystem, so a local directory works; on a real cluster it must be a
URL every node can reach (a shared filesystem, s3, ...). Likewise the step's code
must be importable on every node.

Logs reach the engine when the attempt ends (there is no live tail on Ray).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import select
import shutil
import sys
import tempfile
import time
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from insitu.errors import UserError
from insitu.executor._base import AttemptExit, Executor, GpuInfo, LaunchRequest, NodeInfo
from insitu.executor._memory import (
    ENFORCEMENT_ENV,
    MODES,
    SAMPLE_INTERVAL,
    Guard,
    MemoryEnforcer,
    note_oom,
)
from insitu.executor._ray_cluster import LocalRayCluster
from insitu.executor._ray_connect import RayUnreachable, alive_nodes, connect_to
from insitu.executor._worker import write_result

NODE_RESOURCE = "insitu.node/"
DATA_DIR_LABEL = "insitu.dev/data-dir"
NODE_ID_LABEL = "insitu.dev/ray-node-id"
HOSTNAME_LABEL = "insitu.dev/hostname"
TRANSFER_LABEL = "insitu.dev/transfer"


def _local_cluster() -> LocalRayCluster | None:
    local = LocalRayCluster.load()
    return local if local is not None and local.running() else None


def connect(address: str | None, *, working_dir: str | None = None) -> str:
    """Connect this process to the Ray cluster at ``address`` (else ``RAY_ADDRESS``, else
    the local cluster ``insitu cluster up`` started); ``working_dir``: a folder Ray ships
    to the nodes as the working directory of this driver's tasks.

    Raises :class:`RayUnreachable` (a :class:`~insitu.errors.UserError`) naming the
    address when there is none or it does not answer. Reuses an existing connection.
    """
    local = _local_cluster()
    addr = address or os.environ.get("RAY_ADDRESS") or (local.address if local else None)
    if not addr:
        raise RayUnreachable(
            "no Ray cluster address given",
            hint="pass --address HOST:PORT, set RAY_ADDRESS, or start a local cluster with "
                 "`insitu cluster up --local 3`")
    env = local.ray_env if local is not None and local.address == addr else None
    return connect_to(addr, env, working_dir=working_dir)


def _node_name(n: dict[str, Any]) -> str:
    for r in n.get("Resources", {}):
        if r.startswith(NODE_RESOURCE):
            return str(r[len(NODE_RESOURCE):])
    return str(n["NodeID"])


def _pinned(node_id: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


@ray.remote(num_cpus=0, max_retries=0)
def _node_facts() -> dict[str, str]:
    time.sleep(0.3)  # long enough that a concurrent probe needs (and so starts) a worker too
    return {"data_dir": os.environ.get("INSITU_DATA_DIR", "")}


@ray.remote(num_cpus=0)
class _TransferService:
    """One per node (a detached actor): serves the node's shards to the other nodes
    (:mod:`insitu.datasets._transfer`), on the node's own address."""

    def __init__(self) -> None:
        from insitu.datasets._transfer import TransferServer, serve_roots

        data = os.environ.get("INSITU_DATA_DIR") or None
        cache = os.environ.get("INSITU_SHARD_CACHE") or (
            os.path.join(data, ".shard-cache") if data else None)
        self.server = TransferServer(ray.util.get_node_ip_address(), serve_roots(data, cache))
        self.url = self.server.start()

    def address(self) -> str:
        return self.url


# The attempt's process: dies with the Ray worker that started it, then runs the attempt
# exactly as the local executor does (run_attempt never returns).
_CHILD = """\
import ctypes, os, pickle, sys
ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
if os.getppid() != int(sys.argv[2]):
    os._exit(75)
if sys.argv[3]:  # the attempt's memory cgroup
    try:
        with open(sys.argv[3] + "/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    except OSError as e:
        print(f"insitu: could not enter the memory cgroup {sys.argv[3]}: {e}", file=sys.stderr)
with open(sys.argv[1], "rb") as f:
    req = pickle.load(f)
cwd = req.env.get("INSITU_DRIVER_CWD")
if cwd and os.path.isdir(cwd):
    os.chdir(cwd)
from insitu.executor._worker import run_attempt
run_attempt(req)
"""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


_enforcer: MemoryEnforcer | None = None   # one per Ray worker process


def _wait(pid: int, guard: Guard) -> tuple[int, Any]:
    """Wait for the attempt's process, looking at its memory while it runs."""
    fd = os.pidfd_open(pid)
    try:
        while not select.select([fd], [], [], SAMPLE_INTERVAL if guard.active else None)[0]:
            guard.check()
    finally:
        os.close(fd)
    _, status, usage = os.wait4(pid, 0)
    return status, usage


@ray.remote(num_cpus=0, max_retries=0)
def _attempt_task(req: LaunchRequest, pythonpath: str, memory: str,
                  shipped_code: bool = False) -> dict[str, Any]:
    """``shipped_code``: the run's code came with this task as its Ray working directory
    (``RayExecutor.use_code``): the attempt starts there and imports from it first."""
    global _enforcer
    if _enforcer is None or _enforcer.requested != memory:
        _enforcer = MemoryEnforcer(memory)
    guard = _enforcer.guard(req.memory_limit)
    work = tempfile.mkdtemp(prefix="insitu-attempt-")
    if shipped_code:
        here = os.getcwd()
        pythonpath = os.pathsep.join(filter(None, [here, pythonpath]))
        req = dataclasses.replace(req, env={**req.env, "INSITU_DRIVER_CWD": here})
    try:
        local = dataclasses.replace(req, result_path=f"{work}/result.json",
                                    stdout_path=f"{work}/out", stderr_path=f"{work}/err")
        with open(f"{work}/req.pkl", "wb") as f:
            pickle.dump(local, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
        started = time.time()
        pid = os.posix_spawn(sys.executable, [sys.executable, "-c", _CHILD, f"{work}/req.pkl",
                                              str(os.getpid()), str(guard.cgroup or "")], env)
        guard.attach(pid)
        status, usage = _wait(pid, guard)
        ended = time.time()
        mem = guard.finish(usage.ru_maxrss * 1024)
        if mem.oom:
            note_oom(local.stderr_path, req.memory_limit, mem.peak, mem.enforcement,
                     mem.allocation)
        result = None
        if os.path.exists(local.result_path):
            try:
                with open(local.result_path) as f:
                    result = json.load(f)
            except ValueError:
                result = None
        return {"pid": pid, "node_id": ray.get_runtime_context().get_node_id(),
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "peak_memory": mem.peak, "oom": mem.oom, "allocation": mem.allocation,
                "enforcement": mem.enforcement,
                "cpu_time": usage.ru_utime + usage.ru_stime,
                "started_at": started, "ended_at": ended, "result": result,
                "stdout": _read(local.stdout_path), "stderr": _read(local.stderr_path)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclasses.dataclass
class _Attempt:
    req: LaunchRequest
    ref: Any
    launched: float
    stopped: str | None = None   # "timeout" or "cancel" once force-cancelled


class RayExecutor(Executor):
    """Runs attempts as Ray tasks on a Ray cluster (see the module docstring).

    ``address`` is ``HOST:PORT`` of the head (None: ``RAY_ADDRESS``, else the cluster
    ``insitu cluster up`` started). The first look at
    a node starts ``warm_workers`` Ray workers there (Ray keeps idle ones up to its
    ``num_workers_soft_limit``, which the local cluster raises). Connecting
    happens here, so an unreachable cluster fails before anything is launched. The
    process stays connected to Ray after :meth:`close` (``ray.shutdown()`` ends it).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, warm_workers: int = 2,
                 memory_enforcement: str | None = None, code: str | None = None) -> None:
        self.memory_enforcement = memory_enforcement or os.environ.get(ENFORCEMENT_ENV) or "auto"
        if self.memory_enforcement not in MODES:
            raise UserError(f"unknown memory enforcement {self.memory_enforcement!r}",
                            hint=f"use one of {', '.join(MODES)}")
        self._code = code  # see use_code
        self.address = connect(address, working_dir=code)
        self.warm_workers = warm_workers
        self._running: dict[str, _Attempt] = {}
        self._ready: list[AttemptExit] = []
        self._ids: dict[str, str] = {}            # node name -> Ray node id
        self._facts: dict[str, dict[str, str]] = {}  # Ray node id -> what the node says
        self._transfer: dict[str, str] = {}  # node name -> its transfer service URL
        self._pythonpath = os.pathsep.join(
            filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))

    def use_code(self, root: str) -> None:
        """``root`` becomes the Ray job's working directory: Ray copies it to each node that
        runs an attempt (once per content), where attempts start in it and import from it
        first, so a run's code package reaches nodes that share no disk with the engine.
        (Ray takes a folder to upload only when a driver connects: this reconnects, unless
        the executor was made with ``code=root``.)"""
        if root != self._code:
            self._code = root
            self.address = connect(self.address, working_dir=root)

    # -- nodes ----------------------------------------------------------------------
    def nodes(self) -> list[NodeInfo]:
        raw = alive_nodes()
        self._ask_facts([n["NodeID"] for n in raw if n["NodeID"] not in self._facts])
        out = []
        self._ids, self._transfer = {}, {}
        for n in raw:
            res = n.get("Resources", {})
            name = _node_name(n)
            self._ids[name] = n["NodeID"]
            model = next((k.split(":", 1)[1] for k in res if k.startswith("accelerator_type:")),
                         "gpu")
            gpus = tuple(GpuInfo(index=i, model=model) for i in range(int(res.get("GPU", 0))))
            labels = {k: str(v) for k, v in (n.get("Labels") or {}).items()
                      if not k.startswith("ray.io/")}
            labels[NODE_ID_LABEL] = n["NodeID"]
            labels[HOSTNAME_LABEL] = str(n.get("NodeManagerHostname", ""))
            data_dir = self._facts.get(n["NodeID"], {}).get("data_dir")
            if data_dir:
                labels[DATA_DIR_LABEL] = data_dir
            transfer = self._facts.get(n["NodeID"], {}).get("transfer")
            if transfer:
                labels[TRANSFER_LABEL] = transfer
                self._transfer[name] = transfer
            out.append(NodeInfo(name=name, cpu=float(res.get("CPU", 0)),
                                memory=int(res.get("memory", 0)), gpus=gpus, labels=labels))
        return sorted(out, key=lambda i: i.name)

    def _ask_facts(self, node_ids: list[str], timeout: float = 60) -> None:
        """Ask each node for its data directory, ``warm_workers`` times at once: this also
        starts that many Ray workers there, so concurrent attempts need not wait for one."""
        refs = {_node_facts.options(scheduling_strategy=_pinned(i)).remote(): i
                for _ in range(max(1, self.warm_workers)) for i in node_ids}
        if not refs:
            return
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in done:
            try:
                self._facts[refs[ref]] = ray.get(ref)
            except ray.exceptions.RayError:
                pass
        for ref in set(refs) - set(done):
            ray.cancel(ref, force=True)
        self._start_transfer(node_ids, timeout)

    def _start_transfer(self, node_ids: list[str], timeout: float) -> None:
        """Start (or find) each node's transfer service and note its URL. A node whose
        service does not answer gets none: its shards are then read by path."""
        refs = {}
        for i in node_ids:
            actor = _TransferService.options(  # type: ignore[attr-defined]
                name=f"insitu-transfer-{i}", namespace="insitu", lifetime="detached",
                get_if_exists=True, scheduling_strategy=_pinned(i)).remote()
            refs[actor.address.remote()] = i
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in done:
            try:
                self._facts.setdefault(refs[ref], {})["transfer"] = ray.get(ref)
            except ray.exceptions.RayError:
                pass

    def node_id(self, name: str) -> str | None:
        """The Ray node id of the node insitu calls ``name``."""
        if name not in self._ids:
            self.nodes()
        return self._ids.get(name)

    # -- attempts -------------------------------------------------------------------
    def launch(self, req: LaunchRequest) -> None:
        node_id = self.node_id(req.node)
        if node_id is None:
            now = time.time()
            self._lost_note(req, f"no alive Ray node is named {req.node!r}")
            self._ready.append(AttemptExit(key=req.key, pid=None, exit_code=None, signal=None,
                                           peak_memory=None, cpu_time=None, started_at=now,
                                           ended_at=now, result=None, node=req.node))
            return
        env = dict(req.env)
        env.setdefault("INSITU_DRIVER_CWD", os.getcwd())
        if self._transfer:
            env.setdefault("INSITU_TRANSFER", json.dumps(self._transfer))
        ref = _attempt_task.options(
            scheduling_strategy=_pinned(node_id), name=f"insitu:{req.key}",
        ).remote(dataclasses.replace(req, env=env), self._pythonpath, self.memory_enforcement,
                 self._code is not None)
        self._running[req.key] = _Attempt(req=req, ref=ref, launched=time.time())

    def cancel(self, key: str) -> None:
        self._stop(key, "cancel")

    def _stop(self, key: str, why: str) -> None:
        a = self._running.get(key)
        if a is None or a.stopped:
            return
        a.stopped = why
        ray.cancel(a.ref, force=True)

    def _enforce_timeouts(self) -> float:
        """Stop attempts past their timeout; return seconds until the next one is due."""
        now = time.time()
        nxt = float("inf")
        for key, a in list(self._running.items()):
            if a.req.timeout is None or a.stopped:
                continue
            due = a.launched + a.req.timeout
            if now >= due:
                self._stop(key, "timeout")
            else:
                nxt = min(nxt, due - now)
        return nxt

    def poll(self, timeout: float) -> list[AttemptExit]:
        out, self._ready = self._ready, []
        end = time.monotonic() + timeout
        while True:
            nxt = self._enforce_timeouts()
            refs = {a.ref: k for k, a in self._running.items()}
            left = max(0.0, end - time.monotonic())
            wait = 0.0 if out else min(left, nxt)
            if not refs:
                time.sleep(wait)
                return out
            done, _ = ray.wait(list(refs), num_returns=1, timeout=wait)
            if done:
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
                out += [self._finish(self._running.pop(refs[r])) for r in done]
            if out or time.monotonic() >= end:
                return out

    def _finish(self, a: _Attempt) -> AttemptExit:
        req = a.req
        try:
            r: dict[str, Any] | None = ray.get(a.ref)
            why = ""
        except ray.exceptions.RayError as e:
            r, why = None, f"{type(e).__name__}: {str(e).strip()[:2000]}"
        now = time.time()
        if r is not None:  # the logs, whatever the outcome
            for path, data in ((req.stdout_path, r["stdout"]), (req.stderr_path, r["stderr"])):
                with open(path, "ab") as f:
                    f.write(data)
        if r is not None and a.stopped and not (r["result"] or {}).get("ok"):
            r = None  # stopped: its process may have been killed before its Ray worker was
        if r is None:
            if not a.stopped:
                self._lost_note(req, f"the Ray task was lost ({why})")
                self._ids.clear()  # its node may be gone: look the nodes up again
            return AttemptExit(key=req.key, pid=None, exit_code=None, signal=None,
                               peak_memory=None, cpu_time=None, started_at=a.launched,
                               ended_at=now, timed_out=a.stopped == "timeout",
                               cancelled=a.stopped == "cancel", result=None, node=req.node)
        if r["result"] is not None:
            write_result(req.result_path, r["result"])
        return AttemptExit(key=req.key, pid=r["pid"], exit_code=r["exit_code"],
                           signal=r["signal"], peak_memory=r["peak_memory"],
                           cpu_time=r["cpu_time"], started_at=r["started_at"],
                           ended_at=r["ended_at"], result=r["result"], node=req.node,
                           memory_enforcement=r["enforcement"], oom_killed=r["oom"],
                           allocation=r["allocation"])

    @staticmethod
    def _lost_note(req: LaunchRequest, message: str) -> None:
        try:
            with open(req.stderr_path, "a") as f:
                f.write(f"insitu: {message}\n")
        except OSError:
            pass

    def close(self) -> None:
        for key in list(self._running):
            self._stop(key, "cancel")
        refs = [a.ref for a in self._running.values()]
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=10)
        self._running.clear()
        self._ready.clear()
