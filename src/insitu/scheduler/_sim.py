"""Trace-driven simulation: packing mode (the ATC'23 FGD protocol) and online mode.

Packing: shuffle the tasks with the seed, grow (by sampling tasks again) or cut the list until
its GPU request is ``grow`` (1.3) times the cluster's GPU capacity; tasks arrive one by one and
never leave; the figure of merit is the allocated share of milli-GPU capacity at the end.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from insitu.scheduler._model import Node, Request
from insitu.scheduler._state import ClusterState
from insitu.scheduler._workload import Workload


@dataclass(frozen=True, kw_only=True)
class PackingResult:
    policy: str
    seed: int
    tasks: int
    placed: int
    allocated_milli: int
    capacity_milli: int
    seconds: float
    curve: tuple[tuple[float, float], ...] = field(default=())  # (arrived, allocated) shares

    @property
    def share(self) -> float:
        return self.allocated_milli / self.capacity_milli

    @property
    def unallocated_milli(self) -> int:
        return self.capacity_milli - self.allocated_milli

    @property
    def rate(self) -> float:
        return self.tasks / self.seconds if self.seconds > 0 else float("inf")


def gpu_capacity(nodes: Sequence[Node]) -> int:
    return 1000 * sum(1 for n in nodes for g in n.gpus if not g.mig)


def packing_tasks(requests: Sequence[Request], capacity_milli: int, seed: int,
                  grow: float = 1.3) -> list[Request]:
    """The arrival list of the protocol: shuffled, then grown or cut to ``grow`` x capacity."""
    rng = np.random.default_rng(seed)
    base = [requests[i] for i in rng.permutation(len(requests))]
    target = grow * capacity_milli
    total = sum(r.total_gpu_milli for r in base)
    out = list(base)
    if total < target:
        while total < target:
            r = base[int(rng.integers(len(base)))]
            out.append(r)
            total += r.total_gpu_milli
    else:
        while out and total - out[-1].total_gpu_milli >= target:
            total -= out.pop().total_gpu_milli
    return [replace(r, name=f"t{k}") if r.name != f"t{k}" else r for k, r in enumerate(out)]


def run_packing(nodes: Sequence[Node], requests: Sequence[Request], *, policy: str, seed: int,
                grow: float = 1.3, points: int = 60, explain: bool = True) -> PackingResult:
    """One run of the packing protocol for one policy and seed.

    ``explain=False`` skips the "why pending" text of unplaced tasks (it changes no placement,
    only the time taken); keep it on when measuring placements per second.
    """
    cap = gpu_capacity(nodes)
    arrivals = packing_tasks(requests, cap, seed, grow)
    st = ClusterState(nodes, policy=policy, seed=seed,
                      workload=Workload.from_requests(list(requests)))
    st.explain_pending = explain
    step = max(1, len(arrivals) // points)
    curve = []
    arrived = 0
    placed = 0
    t0 = time.perf_counter()
    for k, r in enumerate(arrivals):
        d = st.place_one(r)
        placed += d.placed
        arrived += r.total_gpu_milli
        if k % step == 0 or k == len(arrivals) - 1:
            curve.append((arrived / cap, st.allocated_gpu_milli() / cap))
    secs = time.perf_counter() - t0
    return PackingResult(policy=policy, seed=seed, tasks=len(arrivals), placed=placed,
                         allocated_milli=st.allocated_gpu_milli(), capacity_milli=cap,
                         seconds=secs, curve=tuple(curve))


def scale_cluster(nodes: Sequence[Node], target: int) -> list[Node]:
    """The node list repeated (names suffixed) until it has ``target`` nodes."""
    out: list[Node] = []
    k = 0
    while len(out) < target:
        for n in nodes:
            if len(out) >= target:
                break
            out.append(replace(n, name=f"{n.name}-x{k}"))
        k += 1
    return out


@dataclass(frozen=True, kw_only=True)
class OfflinePacking:
    """The best of a few offline packings of one protocol run's arrivals: a share the optimum
    reaches at least, so with an upper bound it brackets the limit of any policy."""

    share: float
    order: str  # how the tasks were sorted
    policy: str  # which policy placed them in that order


def offline_packing(nodes: Sequence[Node], requests: Sequence[Request], *, seed: int,
                    grow: float = 1.3) -> OfflinePacking:
    """Place the arrivals of ``packing_tasks(requests, ..., seed, grow)`` knowing them all in
    advance: sorted by GPU (largest first), by dominant share of GPU and CPU, or in arrival order
    (where sorting does not help, as with many shared GPUs), each placed by the ``insitu`` and
    ``fgd`` policies; the best share found. It is a real packing, so the offline optimum (and
    any upper bound) is at least this, and it is at least ``insitu``'s online share."""
    cap = gpu_capacity(nodes)
    arrivals = packing_tasks(requests, cap, seed, grow)
    cpu_per_milli = sum(n.cpu for n in nodes) * 1000 / max(1, cap)
    orders = {
        "GPU, largest first": lambda r: (-r.total_gpu_milli, -r.cpu_milli, -r.memory),
        "dominant share of GPU and CPU, largest first": lambda r: (
            -max(r.total_gpu_milli, r.cpu_milli / cpu_per_milli), -r.total_gpu_milli),
        "arrival order": None,
    }
    best: OfflinePacking | None = None
    for order, key in orders.items():
        ranked = arrivals if key is None else sorted(arrivals, key=key)
        for policy in ("insitu", "fgd"):
            st = ClusterState(nodes, policy=policy, seed=seed,
                              workload=Workload.from_requests(list(requests)))
            st.explain_pending = False
            for r in ranked:
                st.place_one(r)
            share = st.allocated_gpu_milli() / cap
            if best is None or share > best.share:
                best = OfflinePacking(share=share, order=order, policy=policy)
    assert best is not None
    return best
