"""Score plugins and the policies built from them.

A policy is an ordered list of ``(plugin, weight)``. Each plugin scores the candidate nodes that
passed every filter (higher is better); the policy adds the weighted scores and the cluster picks
the best node, breaking exact ties at random with its seeded generator. A plugin may also choose
the GPU on each node (for a shared, fractional request); otherwise the fullest GPU that still
fits is used (best fit).

A plugin whose score for a node depends only on that node's state and the request shape is
``node_local``; policies made only of such plugins let the cluster cache scores per request shape
and recompute only the nodes that changed, which is what makes placement fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from insitu.errors import UserError
from insitu.scheduler._explain import Filter
from insitu.scheduler._frag import fgd_frag, fill_delta, fill_frag
from insitu.scheduler._model import Request
from insitu.scheduler._workload import Workload, WorkloadArrays, cpu_pressure, own_cpu_weight

if TYPE_CHECKING:
    from insitu.scheduler._state import ClusterState

GiB = 1024**3
Scored = tuple[np.ndarray, np.ndarray | None]


class ScorePlugin:
    """Scores nodes ``idx`` (all feasible) for ``req``; may pick a GPU per node (or ``None``).

    ``node_local(req)``: the score of a node depends only on that node's state and the request's
    resource shape (so it may be cached); ``applies(req)``: the plugin has anything to say.
    """

    name = "score"

    def node_local(self, req: Request) -> bool:
        return True

    def applies(self, req: Request) -> bool:
        return True

    def prepare(self, st: ClusterState, workload: Workload | None) -> None:  # noqa: B027
        """Called once when the policy is bound to a cluster."""

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        raise NotImplementedError


def bestfit_gpu(st: ClusterState, req: Request, idx: np.ndarray) -> np.ndarray:
    """For a fractional request: per node, the fullest GPU that fits (lowest index on ties)."""
    gf = st.gfree[idx]
    ok = (gf >= req.gpu_milli) & st.gpu_ok(req, idx)
    return np.where(ok, gf, 10**6).argmin(axis=1)


def _after(st: ClusterState, req: Request, idx: np.ndarray) -> tuple[np.ndarray, ...]:
    """Free CPU, memory and GPU (total milli) of nodes ``idx`` after placing ``req``."""
    cpu = st.cpu_free[idx] - req.cpu_milli
    mem = st.mem_free[idx] - req.memory
    gpu = np.clip(st.gfree[idx], 0, None).sum(axis=1) - req.total_gpu_milli
    return cpu, mem, gpu


def _gcap(st: ClusterState, idx: np.ndarray) -> np.ndarray:
    return np.maximum(st.gcap[idx].sum(axis=1), 1)


class RandomScore(ScorePlugin):
    name = "random"

    def node_local(self, req: Request) -> bool:
        return False

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        return st.rng.random(len(idx)), None


class FirstFit(ScorePlugin):
    name = "first_fit"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        return -idx.astype(np.float64), None


class LeastAllocated(ScorePlugin):
    """kube-scheduler's default: the node with the most free resources (share of capacity)."""

    name = "least_allocated"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
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

    def prepare(self, st: ClusterState, workload: Workload | None) -> None:
        w = workload or Workload.generic()
        self.factor = own_cpu_weight(cpu_pressure(w, float(st.cpu_cap.sum()),
                                                  float(st.gpu_capacity)))

    def applies(self, req: Request) -> bool:
        return self.factor > 0

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        s, _ = super().score(st, req, idx)
        return s * self.factor, None


class BestFit(ScorePlugin):
    """The node with the least free CPU and GPU left after the placement (shares of capacity)."""

    name = "best_fit"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        cpu, _, gpu = _after(st, req, idx)
        return -(cpu / st.cpu_cap[idx] + gpu / _gcap(st, idx)), None


class DotProd(ScorePlugin):
    """Tetris-style alignment as in the FGD paper's baseline: the smallest dot product of the
    node's free (CPU, memory, GPU), as shares of capacity, with the request's."""

    name = "dot_prod"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        gc = _gcap(st, idx)
        free_gpu = np.clip(st.gfree[idx], 0, None).sum(axis=1)
        dot = (st.cpu_free[idx] / st.cpu_cap[idx]) * (req.cpu_milli / st.cpu_cap[idx]) \
            + (st.mem_free[idx] / st.mem_cap[idx]) * (req.memory / st.mem_cap[idx]) \
            + (free_gpu / gc) * (req.total_gpu_milli / gc)
        return -dot, None


class GpuPacking(ScorePlugin):
    """Prefer a GPU already in use, then a free GPU on a node in use, then an idle node."""

    name = "gpu_packing"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        gf = st.gfree[idx]
        used_node = ((gf >= 0) & (gf < 1000)).any(axis=1) | (st.cpu_free[idx] < st.cpu_cap[idx])
        if not req.gpu_count:
            return used_node.astype(np.float64), None
        gpu = bestfit_gpu(st, req, idx) if req.gpu_milli < 1000 else None
        if gpu is not None:
            partial = gf[np.arange(len(idx)), gpu] < 1000
            return 2.0 * partial + used_node, gpu
        return used_node.astype(np.float64), None


class GpuClustering(ScorePlugin):
    """Put tasks with the same GPU request together: prefer nodes already running one."""

    name = "gpu_clustering"

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        hosts = st.milli_hosts.get(req.total_gpu_milli)
        if hosts is None:
            return np.zeros(len(idx)), None
        return (hosts[idx] > 0).astype(np.float64), None


class _FragScore(ScorePlugin):
    """Minus the growth of a fragmentation measure; evaluates every GPU for a shared request."""

    measure: Callable[..., np.ndarray] = staticmethod(fgd_frag)

    def __init__(self, workload: Workload | None = None) -> None:
        self.workload = workload
        self.w: WorkloadArrays | None = None

    def prepare(self, st: ClusterState, workload: Workload | None) -> None:
        w = self.workload or workload or Workload.generic()
        self.w = WorkloadArrays(w, st.models)

    def _frag(self, gf: np.ndarray, cpu: np.ndarray, model: np.ndarray) -> np.ndarray:
        assert self.w is not None
        return type(self).measure(gf, cpu, model, self.w)

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
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


class FgdScore(_FragScore):
    name = "fgd"
    measure = staticmethod(fgd_frag)


class FillScore(_FragScore):
    name = "fill_frag"
    measure = staticmethod(fill_frag)

    def __init__(self, workload: Workload | None = None, waste_weight: float = 0.0) -> None:
        super().__init__(workload)
        self.waste_weight = waste_weight

    def prepare(self, st: ClusterState, workload: Workload | None) -> None:
        super().prepare(st, workload)
        assert self.w is not None
        w = self.workload or workload or Workload.generic()
        self.w.set_cpu_pressure(cpu_pressure(w, float(st.cpu_cap.sum()),
                                             float(st.gpu_capacity)))

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
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

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
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

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        if req.spread is None or req.spread not in st.spread_counts:
            return np.zeros(len(idx)), None
        return -st.spread_counts[req.spread][idx].astype(np.float64), None


class SpotForRestartable(ScorePlugin):
    """Restartable work prefers spot nodes (cheaper), leaving on-demand ones to the rest."""

    name = "spot"

    def applies(self, req: Request) -> bool:
        return req.restartable

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> Scored:
        if not req.restartable:
            return np.zeros(len(idx)), None
        return st.spot[idx].astype(np.float64), None


class Policy:
    """Weighted score plugins, and extra filter plugins; see the module docstring.

    ``filters`` run after the built-in ones (taints, selector, affinity, spot, GPU type). A filter
    must be static: its answer may depend on the node's fixed attributes and the request, not on
    what is placed, as its masks are cached per request shape; its reasons join "why pending".
    """

    def __init__(self, name: str, plugins: Sequence[tuple[ScorePlugin, float]],
                 filters: Sequence[Filter] = ()) -> None:
        self.name = name
        self.plugins = list(plugins)
        self.filters = list(filters)

    def node_local(self, req: Request) -> bool:
        return all(p.node_local(req) for p, _ in self.plugins)

    def prepare(self, st: ClusterState, workload: Workload | None) -> None:
        for p, _ in self.plugins:
            p.prepare(st, workload)

    def score(self, st: ClusterState, req: Request, idx: np.ndarray) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
        total = np.zeros(len(idx))
        gpu: np.ndarray | None = None
        for p, w in self.plugins:
            if not p.applies(req):
                continue
            s, g = p.score(st, req, idx)
            if w != 1.0:
                s = s * w
            total += s
            if gpu is None and g is not None:
                gpu = g
        if gpu is None:
            if req.gpu_count and req.gpu_milli < 1000:
                gpu = bestfit_gpu(st, req, idx)
            else:
                gpu = np.full(len(idx), -1, dtype=np.int64)
        return total, gpu


def _default() -> Policy:
    return Policy("insitu", [(FillScore(), 1.0), (CpuSpread(), 100.0), (BestFit(), 1e-3),
                             (Locality(), 50.0), (Spread(), 10_000.0),
                             (SpotForRestartable(), 100.0)])


POLICIES: dict[str, Callable[[], Policy]] = {
    "insitu": _default,
    "fgd": lambda: Policy("fgd", [(FgdScore(), 1.0)]),
    "fgd_bf": lambda: Policy("fgd_bf", [(FgdScore(), 1.0), (BestFit(), 1e-3)]),
    "random": lambda: Policy("random", [(RandomScore(), 1.0)]),
    "first_fit": lambda: Policy("first_fit", [(FirstFit(), 1.0)]),
    "best_fit": lambda: Policy("best_fit", [(BestFit(), 1.0)]),
    "least_allocated": lambda: Policy("least_allocated", [(LeastAllocated(), 1.0)]),
    "dot_prod": lambda: Policy("dot_prod", [(DotProd(), 1.0)]),
    "gpu_packing": lambda: Policy("gpu_packing", [(GpuPacking(), 1.0)]),
    "gpu_clustering": lambda: Policy("gpu_clustering", [(GpuClustering(), 1.0)]),
}
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
