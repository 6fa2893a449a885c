"""insitu.scheduler: where each attempt runs. A pure library: no I/O, no clock, deterministic.

Key contracts (what callers may rely on):

- :class:`ClusterState` holds the free resources of a cluster and the placements reserved on it.
  ``place(requests) -> list[Decision]`` places requests in order and reserves what each takes;
  ``release(placement_or_name)`` gives it back; ``explain(request) -> str`` says why a request
  fits nowhere now ("" if it fits). Same nodes, policy, seed and calls give the same decisions.
  Not thread-safe: one owner (the engine) calls it.
- A :class:`Decision` has either a :class:`Placement` (node, GPU indices, milli-GPU per GPU or a
  MIG partition) or ``reason``, the "why pending" text summed over nodes, e.g. ``0 of 1,213 nodes
  fit: 900 have fewer than 2 free GPUs; 300 have taint gpu=reserved:NoSchedule that the step does
  not tolerate (add tolerations=["gpu=reserved:NoSchedule"]); 13 have V100, the step asks for
  T4``; ``never`` is true when no node could hold it even empty.
- Requests of one ``gang`` are placed all-or-nothing; a non-``restartable`` request never lands on
  a spot node; a placement never over-commits a node's CPU or memory or a GPU's 1000 milli-GPU.
- Records (:class:`Node`, :class:`Request`, :class:`Placement`, :class:`Decision`) are frozen.
- Mistakes in what is asked raise :class:`insitu.errors.ResourceError` (or :class:`TraceError`
  for a bad trace file) with the fix; an unplaceable request is a Decision, never an exception.
- :class:`QueueScheduler` adds queues on top: quotas with cohort borrowing and lending limits,
  dominant-resource fairness, priorities, preemption (cheapest victims, restartable first),
  gangs and backfill.

For the engine, per attempt::

    from insitu.scheduler import ClusterState, Node, Request
    cluster = ClusterState([Node.build("laptop", cpu=8, memory="32GiB", gpus=1,
                                       gpu_model="RTX4090")])
    d = cluster.place([Request(name="run1/train/1", cpu=2.0, memory=4 * 2**30, gpu=0.5)])[0]
    if d.placed:
        ...  # launch the attempt on d.placement.node, GPUs d.placement.gpus
        cluster.release(d.placement)  # when the attempt ends
    else:
        print(d.reason)  # what `insitu why` shows
"""

from typing import TYPE_CHECKING, Any

from insitu.scheduler._mig import MigProfile
from insitu.scheduler._model import (
    DataInput,
    Decision,
    Gpu,
    LinkPrices,
    Node,
    Placement,
    Request,
    Taint,
    Toleration,
)
from insitu.scheduler._plugin import Filter, Policy, ScorePlugin
from insitu.scheduler._policies import POLICIES, get_policy
from insitu.scheduler._state import ClusterState
from insitu.scheduler._trace import Task, TraceError, load_nodes, load_tasks
from insitu.scheduler._workload import TaskShape, Workload

if TYPE_CHECKING:
    from insitu.scheduler._bound import Bound, packing_bound
    from insitu.scheduler._queues import Queue, QueueScheduler
    from insitu.scheduler._sim import OfflinePacking, PackingResult, offline_packing, run_packing

# the simulator, the bound (SciPy) and queues load on first use: the engine needs none of them
_LAZY = {"Bound": "_bound", "packing_bound": "_bound", "Queue": "_queues",
         "QueueScheduler": "_queues", "PackingResult": "_sim", "run_packing": "_sim",
         "OfflinePacking": "_sim", "offline_packing": "_sim"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"insitu.scheduler.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'insitu.scheduler' has no attribute {name!r}")


__all__ = [
    "POLICIES",
    "Bound",
    "ClusterState",
    "DataInput",
    "Decision",
    "Filter",
    "Gpu",
    "LinkPrices",
    "MigProfile",
    "Node",
    "OfflinePacking",
    "PackingResult",
    "Placement",
    "Policy",
    "Queue",
    "QueueScheduler",
    "Request",
    "ScorePlugin",
    "Taint",
    "Task",
    "TaskShape",
    "Toleration",
    "TraceError",
    "Workload",
    "get_policy",
    "load_nodes",
    "load_tasks",
    "offline_packing",
    "packing_bound",
    "run_packing",
]
