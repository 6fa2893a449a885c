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
