"""Resource accounting for the nodes an executor offers: what fits where, right now.

Contract: ``place(req)`` returns a :class:`Placement` and reserves it, or ``None``
when nothing fits now; ``release`` gives it back; ``impossible(req)`` explains a
request that no node could ever satisfy (checked before a run starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from insitu._units import format_bytes
from insitu.executor import NodeInfo


@dataclass(frozen=True, kw_only=True)
class Request:
    cpu: float
    memory: int
    gpu: float = 0.0
    gpu_type: str | None = None


@dataclass(frozen=True, kw_only=True)
class Placement:
    node: str
    cpu: float
    memory: int
    gpu_ids: tuple[int, ...] = ()
    gpu_share: float = 0.0   # for a fractional request: the share of gpu_ids[0]

    def as_dict(self) -> dict[str, object]:
        return {"node": self.node, "cpu": self.cpu, "memory": self.memory,
                "gpu_ids": list(self.gpu_ids), "gpu_share": self.gpu_share}


@dataclass
class _NodeState:
    info: NodeInfo
    cpu: float
    memory: int
    gpu_free: dict[int, float] = field(default_factory=dict)  # index -> free fraction


class Placer:
    def __init__(self, nodes: list[NodeInfo]) -> None:
        self.nodes = [
            _NodeState(n, n.cpu, n.memory, {g.index: 1.0 for g in n.gpus}) for n in nodes]

    def _gpus_ok(self, st: _NodeState, req: Request) -> tuple[int, ...] | None:
        if req.gpu <= 0:
            return ()
        ids = [g.index for g in st.info.gpus
               if req.gpu_type is None or req.gpu_type.lower() in g.model.lower()]
        if req.gpu < 1:  # a share of one GPU: the fullest one that still fits (packing)
            fits = [i for i in ids if st.gpu_free[i] >= req.gpu - 1e-9]
            if not fits:
                return None
            return (min(fits, key=lambda i: (st.gpu_free[i], i)),)
        whole = [i for i in ids if st.gpu_free[i] >= 1.0 - 1e-9]
        n = int(req.gpu)
        return tuple(whole[:n]) if len(whole) >= n else None

    def place(self, req: Request) -> Placement | None:
        for st in self.nodes:
            if st.cpu + 1e-9 < req.cpu or st.memory < req.memory:
                continue
            gpus = self._gpus_ok(st, req)
            if gpus is None:
                continue
            st.cpu -= req.cpu
            st.memory -= req.memory
            share = req.gpu if 0 < req.gpu < 1 else 0.0
            for i in gpus:
                st.gpu_free[i] -= share or 1.0
            return Placement(node=st.info.name, cpu=req.cpu, memory=req.memory, gpu_ids=gpus,
                             gpu_share=share)
        return None

    def release(self, p: Placement) -> None:
        for st in self.nodes:
            if st.info.name == p.node:
                st.cpu += p.cpu
                st.memory += p.memory
                for i in p.gpu_ids:
                    st.gpu_free[i] += p.gpu_share or 1.0
                return

    def impossible(self, req: Request) -> str | None:
        """Why no node could ever run ``req`` (on an empty cluster), or None if one can."""
        fresh = Placer([s.info for s in self.nodes])
        if fresh.place(req) is not None:
            return None
        return "available: " + "; ".join(describe(s.info) for s in self.nodes)


def describe(n: NodeInfo) -> str:
    if n.gpus:
        models: dict[str, int] = {}
        for g in n.gpus:
            models[g.model] = models.get(g.model, 0) + 1
        gpus = ", ".join(f"{c} x {m}" for m, c in models.items())
    else:
        gpus = "no GPUs"
    return f"node '{n.name}' has {n.cpu:g} CPUs, {format_bytes(n.memory)} memory, {gpus}"
