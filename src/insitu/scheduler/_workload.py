"""The typical tasks of a workload, which fragmentation measures weigh against.

A fragmentation measure asks "how much free GPU could the tasks we expect still use?". The
expected tasks are the most common request shapes (CPU, GPU count, milli-GPU, allowed types) of a
trace, each with its share of tasks, covering ``coverage`` of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insitu.scheduler._model import Request


@dataclass(frozen=True, kw_only=True)
class TaskShape:
    cpu_milli: int
    gpu_count: int
    gpu_milli: int
    gpu_types: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Typical task shapes and their popularity (shares summing to 1)."""

    shapes: tuple[TaskShape, ...]
    shares: tuple[float, ...]

    @classmethod
    def from_requests(cls, requests: Sequence[Request], *, coverage: float = 0.95) -> Workload:
        c = Counter(TaskShape(cpu_milli=r.cpu_milli, gpu_count=r.gpu_count,
                              gpu_milli=r.gpu_milli, gpu_types=tuple(sorted(r.gpu_types)))
                    for r in requests if r.mig_profile is None)
        total = sum(c.values())
        shapes, shares, acc = [], [], 0
        for shape, k in sorted(c.items(), key=lambda kv: (-kv[1], repr(kv[0]))):
            shapes.append(shape)
            shares.append(k)
            acc += k
            if acc >= coverage * total:
                break
        s = float(sum(shares))
        return cls(shapes=tuple(shapes), shares=tuple(x / s for x in shares))

    @classmethod
    def generic(cls) -> Workload:
        """A stand-in when no trace is known: whole GPUs and common fractions, 4-8 cores each."""
        shapes = (TaskShape(cpu_milli=8000, gpu_count=1, gpu_milli=1000),
                  TaskShape(cpu_milli=4000, gpu_count=1, gpu_milli=500),
                  TaskShape(cpu_milli=4000, gpu_count=1, gpu_milli=250),
                  TaskShape(cpu_milli=16000, gpu_count=2, gpu_milli=1000),
                  TaskShape(cpu_milli=4000, gpu_count=0, gpu_milli=0))
        return cls(shapes=shapes, shares=(0.4, 0.2, 0.15, 0.1, 0.15))


def cpu_pressure(w: Workload, cpu_capacity: float, gpu_capacity: float) -> float:
    """CPU the typical task mix asks per milli-GPU it asks, relative to the CPU the cluster has
    per milli-GPU: below 1, the mix runs out of GPU before CPU; above 1, of CPU first.

    Over the openb variants it ranges from 0.70 (``multigpu50``) to 1.19 (``cpu300``)."""
    cpu = sum(p * s.cpu_milli for s, p in zip(w.shapes, w.shares, strict=True))
    gpu = sum(p * s.gpu_count * s.gpu_milli for s, p in zip(w.shapes, w.shares, strict=True))
    if gpu <= 0 or cpu_capacity <= 0 or gpu_capacity <= 0:
        return 1.0
    return (cpu / cpu_capacity) / (gpu / gpu_capacity)


#: below this CPU pressure a node's free CPU is shared by the whole task mix; above ``PRESSURE_HI``
#: every copy of a task needs its own CPU (see :meth:`WorkloadArrays.set_cpu_pressure`)
PRESSURE_LO = 0.85
PRESSURE_HI = 0.95


def own_cpu_weight(pressure: float) -> float:
    """0 below ``PRESSURE_LO``, 1 above ``PRESSURE_HI``, linear between."""
    return min(1.0, max(0.0, (pressure - PRESSURE_LO) / (PRESSURE_HI - PRESSURE_LO)))


class WorkloadArrays:
    """The workload as arrays aligned with one cluster's GPU models."""

    def __init__(self, w: Workload, models: Sequence[str]) -> None:
        gpu = [k for k, s in enumerate(w.shapes) if s.gpu_count > 0]
        self.cpu_share = float(sum(w.shares[k] for k in range(len(w.shapes)) if k not in gpu))
        sh = [w.shapes[k] for k in gpu]
        self.p = np.array([w.shares[k] for k in gpu], dtype=np.float64)
        self.cpu = np.array([s.cpu_milli for s in sh], dtype=np.int64)
        self.n = np.array([s.gpu_count for s in sh], dtype=np.int64)
        self.d = np.array([s.gpu_milli for s in sh], dtype=np.int64)
        self.dvals = np.unique(self.d) if len(sh) else np.array([1000], dtype=np.int64)
        self.didx = np.searchsorted(self.dvals, self.d)
        self.demand = (self.n * self.d).astype(np.float64)
        #: CPU milli one copy of each shape is charged when counting the copies a node's free
        #: CPU allows (its own request until :meth:`set_cpu_pressure` says otherwise)
        self.cpu_div = np.maximum(self.cpu, 1).astype(np.float64)
        # qtab[f, j]: copies of a task asking dvals[j] milli-GPU that f free milli-GPU hold
        self.qtab = (np.arange(1001)[:, None] // np.maximum(self.dvals, 1)).astype(np.int64)
        # waste[f]: what stays unused of f free milli-GPU on one GPU when it is filled as
        # fully as the typical shared requests allow (an unbounded knapsack over their sizes)
        reach = np.zeros(1001, dtype=bool)
        reach[0] = True
        for d in {int(x) for x in self.d if 0 < x <= 1000}:
            for f in range(d, 1001):
                if reach[f - d]:
                    reach[f] = True
        best = np.maximum.accumulate(np.where(reach, np.arange(1001), 0))
        self.waste = (np.arange(1001) - best).astype(np.float64)
        # allowed[model_index, k]; row -1 (no GPU) is all False
        self.allowed = np.zeros((len(models) + 1, len(sh)), dtype=bool)
        for k, s in enumerate(sh):
            for m, name in enumerate(models):
                self.allowed[m, k] = not s.gpu_types or name in s.gpu_types

    def set_cpu_pressure(self, pressure: float) -> None:
        """Charge each copy, when counting the copies free CPU allows, a blend of its own CPU
        request and its GPU demand times the mix's mean CPU per milli-GPU.

        Where CPU is scarce (``pressure`` above ``PRESSURE_HI``) every copy needs its own CPU.
        Where it is not (below ``PRESSURE_LO``), the CPU a node keeps is shared by the whole mix
        of tasks that will come, CPU-light and CPU-heavy ones alike; charging every shape its own
        CPU then overstates stranding and steers work away from nodes with little CPU per GPU,
        which left up to half a point of GPU unallocated on multi-GPU-heavy openb variants. A
        shape still needs its own CPU for one copy to fit (see :meth:`cpu_copies`).
        """
        if not len(self.p):
            return
        lam = own_cpu_weight(pressure)
        mean = float(self.p @ self.cpu) / max(float(self.p @ self.demand), 1e-9)
        self.cpu_div = np.maximum(lam * self.cpu + (1.0 - lam) * self.demand * mean, 1.0)

    def cpu_copies(self, cpu: np.ndarray) -> np.ndarray:
        """Copies of each shape (last axis) that free CPU ``cpu`` (``(..., 1)``) allows."""
        return np.where(cpu >= self.cpu, cpu // self.cpu_div, 0)
