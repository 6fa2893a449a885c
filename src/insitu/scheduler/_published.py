"""The published baselines, as the ATC'23 FGD paper's simulator runs them.

Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
Gradient Descent" (ATC'23) compare FGD with Random, DotProd, GpuClustering, GpuPacking and BestFit
in a Kubernetes scheduler simulator. These plugins follow that simulator's rules, so that our
comparison is with the policies the paper measured:

- every plugin gives each feasible node an *integer* score from 0 to 100 (truncated, as the
  Kubernetes scheduling framework's scores are integers); the scheduler takes the highest and
  breaks ties uniformly at random. The integer rounding matters: FGD's score is
  ``int(100 * sigmoid(drop of fragmentation / 1000))``, so nodes whose fragmentation changes by
  similar amounts tie and are picked at random;
- CPU and GPU capacities are normalised by the largest node of the simulator (128 cores,
  8 GPUs), not by the node's own capacity;
- within the chosen node a shared (fractional) request goes to the fullest GPU that still fits
  (lowest index on ties), except that FGD picks the GPU whose integer score is highest (lowest
  index on ties) and Random picks a fitting GPU at random; whole-GPU requests take the free GPUs
  of lowest index.

``typical`` tasks (the workload's most popular request shapes covering 95% of tasks, CPU-only
ones included) are what FGD's fragmentation measure weighs against.
"""

from __future__ import annotations

import numpy as np

from insitu.scheduler._frag import fgd_frag
from insitu.scheduler._model import Request
from insitu.scheduler._plugin import ClusterView, Scored, ScorePlugin
from insitu.scheduler._workload import Workload, WorkloadArrays

#: the simulator's largest node: what CPU and GPU amounts are divided by
MAX_CPU_MILLI = 128_000
MAX_GPU_MILLI = 8_000


def _free_gpu(st: ClusterView, idx: np.ndarray) -> np.ndarray:
    return np.clip(st.gfree[idx], 0, None).sum(axis=1).astype(np.int64)


def sigmoid_score(drop: np.ndarray) -> np.ndarray:
    """FGD's integer node score for a drop of fragmentation (milli-GPU): 0..100, 50 for none."""
    return np.trunc(1.0 / (1.0 + np.exp(-drop / 1000.0)) * 100.0)


class PublishedFgd(ScorePlugin):
    """FGD: the drop of the node's fragmentation measure, squashed to an integer score; for a
    shared request the GPU with the best integer score, lowest index first."""

    name = "fgd"

    def __init__(self, workload: Workload | None = None) -> None:
        self.workload = workload
        self.w: WorkloadArrays | None = None

    def prepare(self, st: ClusterView, workload: Workload | None) -> None:
        self.w = WorkloadArrays(self.workload or workload or Workload.generic(), st.models)

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        assert self.w is not None
        gf = st.gfree[idx]
        cpu = st.cpu_free[idx]
        model = st.node_model[idx]
        before = fgd_frag(gf, cpu, model, self.w)
        cpu_after = cpu - req.cpu_milli
        m, g = gf.shape
        if req.gpu_count == 1 and req.gpu_milli < 1000:
            ok = (gf >= req.gpu_milli) & st.gpu_ok(req, idx)
            rows = np.repeat(gf[:, None, :], g, axis=1)  # (node, option, gpu)
            rows[:, np.arange(g), np.arange(g)] -= req.gpu_milli
            after = fgd_frag(rows.reshape(m * g, g), np.repeat(cpu_after, g),
                             np.repeat(model, g), self.w).reshape(m, g)
            s = np.where(ok, sigmoid_score(before[:, None] - after), -1.0)
            gpu = s.argmax(axis=1)  # the first GPU with the highest integer score
            return s[np.arange(m), gpu], gpu
        if req.gpu_count:
            ok = (gf >= 1000) & st.gpu_ok(req, idx)
            take = ok & (np.cumsum(ok, axis=1) <= req.gpu_count)
            gf = gf - 1000 * take
        return sigmoid_score(before - fgd_frag(gf, cpu_after, model, self.w)), None


class PublishedBestFit(ScorePlugin):
    """BestFit: ``int(100 * (1 - (free CPU after / 128 cores + free GPU after / 8 GPUs) / 2))``."""

    name = "best_fit"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        cpu = (st.cpu_free[idx] - req.cpu_milli) / MAX_CPU_MILLI
        gpu = (_free_gpu(st, idx) - req.total_gpu_milli) / MAX_GPU_MILLI
        return np.trunc((1.0 - (0.5 * cpu + 0.5 * gpu)) * 100.0), None


class PublishedDotProd(ScorePlugin):
    """DotProd (Tetris): ``int(100 * (1 - <free, request> / 2))`` with both vectors (CPU, total
    GPU) divided by the largest node's capacity: the smallest alignment wins."""

    name = "dot_prod"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        dot = (st.cpu_free[idx] / MAX_CPU_MILLI) * (req.cpu_milli / MAX_CPU_MILLI) \
            + (_free_gpu(st, idx) / MAX_GPU_MILLI) * (req.total_gpu_milli / MAX_GPU_MILLI)
        return np.trunc(100.0 * (1.0 - dot / 2.0)), None


class PublishedGpuPacking(ScorePlugin):
    """GpuPacking, from high to low: a request that fits on partly used GPUs (100 minus a tenth
    of their free percent, at least 50); one that needs free GPUs of a node in use (50 minus
    how many, at least 33); a node whose GPUs are all free (33 minus their number). CPU-only
    requests score 0 everywhere."""

    name = "gpu_packing"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        m = len(idx)
        if not req.gpu_count:
            return np.zeros(m), None
        gf = st.gfree[idx].astype(np.int64)
        valid = gf >= 0
        full = (gf == 1000).sum(axis=1)
        ngpu = valid.sum(axis=1)
        all_free = full == ngpu
        # the GPUs it would use: fitting ones, least free first (stable: lowest index on ties)
        order = np.argsort(np.where(valid, gf, 10**6), axis=1, kind="stable")
        sf = np.take_along_axis(gf, order, axis=1)
        fit = sf >= req.gpu_milli
        use = fit & (np.cumsum(fit, axis=1) <= req.gpu_count)
        free_used = (use & (sf == 1000)).sum(axis=1)
        pct = (np.where(use, sf, 0) * 100 // 1000).sum(axis=1)
        shared = np.maximum(100 - pct // 10, 50)
        on_used = np.maximum(50 - free_used, 33)
        idle = np.maximum(33 - full, full)
        s = np.where(all_free, idle, np.where(free_used > 0, on_used, shared))
        return s.astype(np.float64), None


class PublishedGpuClustering(ScorePlugin):
    """GpuClustering: requests of the same kind (shared GPU, or k whole GPUs) together. A node
    running only that kind scores 75-100, one running it among others 50-75, an idle node
    25-50, a node running other kinds 0-25; within a band, fewer free GPUs score higher.
    CPU-only requests score 0 everywhere."""

    name = "gpu_clustering"

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        m = len(idx)
        if not req.gpu_count:
            return np.zeros(m), None
        mine = _kind(req.gpu_count, req.gpu_milli)
        same = np.zeros(m, dtype=bool)
        kinds = np.zeros(m, dtype=np.int64)
        seen: dict[str, np.ndarray] = {}
        for total, hosts in st.milli_hosts.items():
            if total <= 0:
                continue
            kind = "share" if total < 1000 else f"{total // 1000}-gpu"
            h = hosts[idx] > 0
            seen[kind] = seen[kind] | h if kind in seen else h
        for kind, h in seen.items():
            kinds += h
            if kind == mine:
                same |= h
        base = np.where(same, np.where(kinds == 1, 75, 50), np.where(kinds == 0, 25, 0))
        left = _free_gpu(st, idx)
        return (25 * (MAX_GPU_MILLI - left) // MAX_GPU_MILLI + base).astype(np.float64), None


def _kind(count: int, milli: int) -> str:
    return "share" if count == 1 and milli < 1000 else f"{count}-gpu"


class PublishedRandom(ScorePlugin):
    """Random: a feasible node at random, and a fitting GPU in it at random."""

    name = "random"

    def node_local(self, req: Request) -> bool:
        return False

    def score(self, st: ClusterView, req: Request, idx: np.ndarray) -> Scored:
        s = st.rng.random(len(idx))
        if req.gpu_count == 1 and req.gpu_milli < 1000:
            ok = (st.gfree[idx] >= req.gpu_milli) & st.gpu_ok(req, idx)
            gpu = np.where(ok, st.rng.random(ok.shape), -1.0).argmax(axis=1)
            return s, gpu
        return s, None


