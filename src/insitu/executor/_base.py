"""The Executor interface: launch an attempt on a chosen node and report what happened.

Contract for every executor:

- ``nodes()`` describes the machines it can run on (used for placement and for
  rejecting requests no node can satisfy).
- ``launch(req)`` starts one attempt and returns without waiting. The attempt runs
  the step function in a process of its own, with ``req.timeout`` and
  ``req.memory_limit`` enforced (on resident memory, never address space:
  :mod:`insitu.executor._memory`), stdout/stderr written to ``req.stdout_path`` and
  ``req.stderr_path`` on the engine's machine (copied back if it ran elsewhere),
  and its result written as JSON to ``req.result_path`` (atomically) before it exits.
- ``poll(timeout)`` blocks up to ``timeout`` seconds and returns the attempts that
  ended since the last call, each exactly once, as :class:`AttemptExit`.
- ``cancel(key)`` stops an attempt; it is still reported by ``poll`` (``cancelled``).
- ``close()`` stops every attempt still running. If the engine process dies, the
  executor's workers are stopped too; none lives on unobserved.
- One executor serves one engine, from one thread.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class GpuInfo:
    index: int
    model: str
    memory: int | None = None


@dataclass(frozen=True, kw_only=True)
class NodeInfo:
    name: str
    cpu: float
    memory: int
    gpus: tuple[GpuInfo, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LaunchRequest:
    key: str                      # unique per attempt within a run: "task#attempt"
    run_id: str
    task_id: str
    attempt: int
    step: str
    function: dict[str, Any]      # the spec's function entry
    args: dict[str, Any]          # concrete refs, see insitu.engine._refs
    env: dict[str, str]
    node: str
    gpu_ids: tuple[int, ...] = ()
    memory_limit: int | None = None
    timeout: float | None = None
    result_path: str
    stdout_path: str
    stderr_path: str
    artifacts_url: str
    materialize_dir: str
    metrics_path: str = ""        # the attempt's tracking journal (see insitu.tracking)
    trial: dict[str, Any] | None = None   # for a tuning trial: how to reach its study
    # a distributed step (a gang): one entry per rank, rank 0 first, each
    # {"rank", "node", "gpu_ids"}; the executor starts one process per rank (see
    # insitu.executor._gang) and reports the gang's end as one AttemptExit
    ranks: tuple[dict[str, Any], ...] = ()
    collective_timeout: float | None = None
    rank: int | None = None       # set in the request of one rank's process


@dataclass(frozen=True, kw_only=True)
class AttemptExit:
    key: str
    pid: int | None
    exit_code: int | None         # None when killed by a signal
    signal: int | None
    peak_memory: int | None       # bytes, peak resident memory
    cpu_time: float | None        # seconds
    started_at: float
    ended_at: float
    timed_out: bool = False
    cancelled: bool = False
    result: dict[str, Any] | None = None   # what the worker wrote, None if it wrote nothing
    node: str | None = None
    reason: str | None = None     # why an attempt was lost, when the executor knows
    # memory (see insitu.executor._memory): how the limit was enforced ("cgroup-v2",
    # "cgroup-v1", "watchdog"; None without a limit), whether the attempt was stopped at
    # it, and the size of the allocation it was making then, when that could be seen
    memory_enforcement: str | None = None
    oom_killed: bool = False
    allocation: int | None = None
    # a gang: how each rank ended (see insitu.executor._gang.rank_record), and the rank
    # whose failure ended the gang (None when every rank succeeded)
    ranks: tuple[dict[str, Any], ...] = ()
    failed_rank: int | None = None


class Executor(abc.ABC):
    name: str = "executor"

    @abc.abstractmethod
    def nodes(self) -> list[NodeInfo]: ...

    def prepare(self, functions: list[dict[str, Any]]) -> None:  # noqa: B027 - optional
        """Warm up for a run that will call these functions (e.g. import them once)."""

    def use_code(self, root: str) -> None:  # noqa: B027 - optional
        """Attempts from now on start in the folder ``root`` (a run's code package) and
        import from it first. Executors whose workers take the engine's working directory
        and ``PYTHONPATH`` when they start, which the caller sets too, need do nothing."""

    @abc.abstractmethod
    def launch(self, req: LaunchRequest) -> None: ...

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[AttemptExit]: ...

    @abc.abstractmethod
    def cancel(self, key: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...
