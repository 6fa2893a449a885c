"""The running work of a queue scheduler as columns, so that preemption can find its victims
with array operations instead of a loop over every running request.

Contract: :meth:`RunningTable.add` and :meth:`RunningTable.remove` are called exactly when a
request starts and stops running (the scheduler does it where it charges quota), and the
request's placement exists when it is added. Rows are reused after removal.
"""

from __future__ import annotations

import numpy as np

from insitu.scheduler._model import Request

_COLUMNS = {"active": bool, "node": np.int64, "cpu": np.float64, "mem": np.float64,
            "gpu": np.float64, "prio": np.int64, "restart": bool, "single": bool,
            "queue": np.int64}


class RunningTable:
    """One row per running request: its node, CPU, memory, milli-GPU, priority, whether it is
    restartable and outside any gang, and its queue (as an index into ``queue_id``)."""

    active: np.ndarray
    node: np.ndarray
    cpu: np.ndarray
    mem: np.ndarray
    gpu: np.ndarray
    prio: np.ndarray
    restart: np.ndarray
    single: np.ndarray
    queue: np.ndarray

    def __init__(self, queues: list[str]) -> None:
        self.queue_id = {q: k for k, q in enumerate(queues)}
        self.names: list[str | None] = []
        self.slot: dict[str, int] = {}
        self._free: list[int] = []
        for col, dtype in _COLUMNS.items():
            setattr(self, col, np.zeros(0, dtype=dtype))
        self._grow(64)

    def _grow(self, size: int) -> None:
        old = len(self.names)
        for col, dtype in _COLUMNS.items():
            new = np.zeros(size, dtype=dtype)
            new[:old] = getattr(self, col)
            setattr(self, col, new)
        self.names.extend([None] * (size - old))
        self._free.extend(range(size - 1, old - 1, -1))

    def add(self, r: Request, node: int) -> None:
        if not self._free:
            self._grow(2 * len(self.names))
        k = self._free.pop()
        self.slot[r.name] = k
        self.names[k] = r.name
        self.active[k] = True
        self.node[k] = node
        self.cpu[k] = r.cpu_milli
        self.mem[k] = r.memory
        self.gpu[k] = r.total_gpu_milli
        self.prio[k] = r.priority
        self.restart[k] = r.restartable
        self.single[k] = r.gang is None
        self.queue[k] = self.queue_id[r.queue]

    def remove(self, name: str) -> None:
        k = self.slot.pop(name)
        self.active[k] = False
        self.names[k] = None
        self._free.append(k)
