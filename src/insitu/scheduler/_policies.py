"""insitu's score plugins, and the policies by name (insitu's default and the published baselines).

A policy is an ordered list of ``(plugin, weight)`` (:class:`~insitu.scheduler._plugin.Policy`).
Each plugin scores the candidate nodes that passed every filter (higher is better); the policy
adds the weighted scores and the cluster picks the best node, breaking exact ties at random with
its seeded generator, or, for the published baselines, by one random order of the nodes drawn
from the seed (``ties="order"``). A plugin may also choose the GPU on each node (for a shared,
fractional request); otherwise the fullest GPU that still fits is used (best fit).

A plugin whose score for a node depends only on that node's state and the request shape is
``node_local``; policies made only of such plugins let the cluster cache scores per request shape
and recompute only the nodes that changed, which is what makes placement fast.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from insitu.errors import UserError
from insitu.scheduler._frag import fgd_frag, fill_delta, fill_frag
from insitu.scheduler._model import Request
from insitu.scheduler._plugin import ClusterView, Policy, Scored, ScorePlugin
from insitu.scheduler._published import (
    PublishedBestFit,
    PublishedDotProd,
    PublishedFgd,
    PublishedGpuClustering,
    PublishedGpuPacking,
    PublishedRandom,
)
from insitu.scheduler._workload import Workload, WorkloadArrays, cpu_pressure, own_cpu_weight

GiB = 1024**3


def _after(st: ClusterView, req: Request, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Free CPU, memory and GPU (total milli) of nodes ``idx`` after placing ``req``."""
    cpu = st.cpu_free[idx] - req.cpu_milli
    mem = st.mem_free[idx] - req.memory
    gpu = np.clip(st.gfree[idx], 0, None).sum(axis=1) - req.total_gpu_milli
    return cpu, mem, gpu


def _gcap(st: ClusterView, idx: np.ndarray) -> np.ndarray:
    return np.maximum(st.gcap[idx].sum(axis=1), 1)


class FirstFit(ScorePlugin):
    name = "first_fit"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        return -idx.astype(np.float64), None


class LeastAllocated(ScorePlugin):
    """kube-scheduler's default: the node with the most free resources (share of capacity)."""

    name = "least_allocated"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        cpu, mem, gpu = _after(st, req, idx)
        s = cpu / st.cpu_cap[idx] + mem / st.mem_cap[idx]
        if req.gpu_count:
            return (s + gpu / _gcap(st, idx)) / 3, None
        return s / 2, None


class CpuSpread(LeastAllocated):
    """:class:`LeastAllocated`, weighted by how scarce CPU is for the workload: 1 where the
    typical task mix runs out of CPU before GPU, 0 where it runs out of GPU first (see
    :func:`~insitu.scheduler._workload.own_cpu_weight`). Spreading keeps free CPU next to free
    GPUs where CPU binds (openb ``cpu300``: +2 points); where it does not, it only breaks up
    nodes that whole multi-GPU tasks need (openb ``multigpu30`` to ``50``: -0.2 to -0.4)."""

    name = "cpu_spread"

    def __init__(self) -> None:
        self.factor = 1.0

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:
        w = workload or Workload.generic()
        self.factor = own_cpu_weight(cpu_pressure(w, float(st.cpu_cap.sum()),
                                                  float(st.gpu_capacity)))

    def applies(self, req: Request) -> bool:
        return self.factor > 0

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        s, _ = super().score(st, req, idx)
        return s * self.factor, None


class BestFit(ScorePlugin):
    """The node with the least free CPU and GPU left after the placement (shares of capacity)."""

    name = "best_fit"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        cpu, _, gpu = _after(st, req, idx)
        return -(cpu / st.cpu_cap[idx] + gpu / _gcap(st, idx)), None


class _FragScore(ScorePlugin):
    """Minus the growth of a fragmentation measure; evaluates every GPU for a shared request."""

    measure: Callable[..., np.ndarray] = staticmethod(fgd_frag)

    def __init__(self, workload: Workload | None = None) -> None:
        self.workload = workload
        self.w: WorkloadArrays | None = None

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:
        w = self.workload or workload or Workload.generic()
        self.w = WorkloadArrays(w, st.models)

    def _frag(self, gf: np.ndarray, cpu: np.ndarray, model: np.ndarray) -> np.ndarray:
        assert self.w is not None
        return type(self).measure(gf, cpu, model, self.w)

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        gf = st.gfree[idx]
        cpu = st.cpu_free[idx]
        model = st.node_model[idx]
        before = self._frag(gf, cpu, model)
        cpu_after = cpu - req.cpu_milli
        m, g = gf.shape
        if req.gpu_count and req.gpu_milli < 1000:
            ok = (gf >= req.gpu_milli) & st.gpu_ok(req, idx)
            rows = np.repeat(gf[:, None, :], g, axis=1)  # (m, option, gpu)
            rows[:, np.arange(g), np.arange(g)] -= req.gpu_milli
            after = self._frag(rows.reshape(m * g, g), np.repeat(cpu_after, g),
                               np.repeat(model, g)).reshape(m, g)
            # among equal fragmentation, the fullest GPU (best fit)
            after = after + 1e-6 * np.where(ok, gf, 0)
            after = np.where(ok, after, np.inf)
            gpu = after.argmin(axis=1)
            return before - after[np.arange(m), gpu], gpu
        if req.gpu_count:
            ok = (gf >= 1000) & st.gpu_ok(req, idx)
            take = ok & (np.cumsum(ok, axis=1) <= req.gpu_count)
            gf = gf - 1000 * take
        return before - self._frag(gf, cpu_after, model), None


class FillScore(_FragScore):
    name = "fill_frag"
    measure = staticmethod(fill_frag)

    def __init__(self, workload: Workload | None = None, waste_weight: float = 0.0) -> None:
        super().__init__(workload)
        self.waste_weight = waste_weight

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:
        super().prepare(st, workload)
        assert self.w is not None
        w = self.workload or workload or Workload.generic()
        self.w.set_cpu_pressure(cpu_pressure(w, float(st.cpu_cap.sum()),
                                             float(st.gpu_capacity)))

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        assert self.w is not None
        delta, gpu = fill_delta(st.gfree[idx], st.cpu_free[idx], st.node_model[idx], self.w,
                                req.cpu_milli, req.gpu_count, req.gpu_milli,
                                st.gpu_ok(req, idx), self.waste_weight)
        return -delta, (gpu if req.gpu_count and req.gpu_milli < 1000 else None)


class Locality(ScorePlugin):
    """Minus the price of pulling the request's inputs to the node: per input not held
    there, a fixed ``remote_read`` (opening a transfer, reading over the network) plus
    GiB x link price. With the default weights a node holding the data wins over a less
    loaded one; a holder that has no room is skipped by the filters, so work never waits
    for it."""

    name = "locality"
    remote_read = 2.0

    def applies(self, req: Request) -> bool:
        return bool(req.inputs)

    def node_local(self, req: Request) -> bool:
        return not req.inputs

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        cost = np.zeros(len(idx))
        for inp in req.inputs:
            holders = st.shard_nodes.get(inp.shard)
            gib = inp.size / GiB
            if holders is None or not holders.any():
                cost += gib * req.link.remote  # nobody holds it: the same for every node
                continue
            zones = np.zeros(len(st.zones), dtype=bool)
            zones[st.zone[holders]] = True
            price = np.where(zones[st.zone[idx]], req.link.same_zone, req.link.cross_zone)
            cost += np.where(holders[idx], 0.0, gib * price + self.remote_read)
        return -cost, None


class Spread(ScorePlugin):
    """Minus the replicas of the same serving set already on the node."""

    name = "spread"

    def applies(self, req: Request) -> bool:
        return req.spread is not None

    def node_local(self, req: Request) -> bool:
        return req.spread is None

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        if req.spread is None or req.spread not in st.spread_counts:
            return np.zeros(len(idx)), None
        return -st.spread_counts[req.spread][idx].astype(np.float64), None


class SpotForRestartable(ScorePlugin):
    """Restartable work prefers spot nodes (cheaper), leaving on-demand ones to the rest."""

    name = "spot"

    def applies(self, req: Request) -> bool:
        return req.restartable

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        if not req.restartable:
            return np.zeros(len(idx)), None
        return st.spot[idx].astype(np.float64), None


def _default() -> Policy:
    return Policy("insitu", [(FillScore(), 1.0), (CpuSpread(), 100.0), (BestFit(), 1e-3),
                             (Locality(), 50.0), (Spread(), 10_000.0),
                             (SpotForRestartable(), 100.0)])


POLICIES: dict[str, Callable[[], Policy]] = {
    "insitu": _default,
    # the ATC'23 FGD paper's baselines, as its simulator runs them (see _published)
    "fgd": lambda: Policy("fgd", [(PublishedFgd(), 1.0)], ties="order"),
    "random": lambda: Policy("random", [(PublishedRandom(), 1.0)]),
    "best_fit": lambda: Policy("best_fit", [(PublishedBestFit(), 1.0)], ties="order"),
    "dot_prod": lambda: Policy("dot_prod", [(PublishedDotProd(), 1.0)], ties="order"),
    "gpu_packing": lambda: Policy("gpu_packing", [(PublishedGpuPacking(), 1.0)], ties="order"),
    "gpu_clustering": lambda: Policy("gpu_clustering", [(PublishedGpuClustering(), 1.0)],
                                     ties="order"),
    # two more common heuristics
    "first_fit": lambda: Policy("first_fit", [(FirstFit(), 1.0)]),
    "least_allocated": lambda: Policy("least_allocated", [(LeastAllocated(), 1.0)]),
}
#: the policies the ATC'23 paper published results for, by our name and the paper's
PUBLISHED = {"random": "Random", "dot_prod": "DotProd", "gpu_clustering": "GpuClustering",
             "gpu_packing": "GpuPacking", "best_fit": "BestFit", "fgd": "FGD"}
ALIASES = {"default": "insitu"}


def get_policy(policy: object) -> Policy:
    """A fresh policy by name (``"default"``/``"insitu"``, ``"fgd"``, ...) or a :class:`Policy`."""
    if isinstance(policy, Policy):
        return policy
    name = ALIASES.get(str(policy), str(policy))
    make = POLICIES.get(name)
    if make is None:
        raise UserError(f"unknown policy {policy!r}",
                        hint=f"use one of {', '.join(POLICIES)}")
    return make()
