"""GPU fragmentation measures of node states, vectorised over rows.

A row is one node state: free milli-GPU per GPU ``gf`` (``-1`` for no GPU), free CPU milli and
the node's GPU model index. Both measures return milli-GPU expected to be unusable by the
workload's typical tasks, weighted by their popularity.

- :func:`fgd_frag` is the measure of FGD (Weng et al., "Beware of Fragmentation", ATC'23): for a
  task that fits the node, the free GPU on GPUs with less free than it asks; for a task that does
  not fit (CPU, type, too few GPUs), all free GPU of the node.
- :func:`fill_frag` is insitu's: for each typical task, how many copies of it the node could still
  host, limited by GPUs *and* CPU together, and the free GPU those copies would leave unused. It
  sees that eight free GPUs behind twenty free cores are mostly stranded, where FGD counts them as
  usable as long as one task fits.
"""

from __future__ import annotations

import numpy as np

from insitu.scheduler._workload import WorkloadArrays


def _common(gf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = np.where(gf > 0, gf, 0)
    return g, g.sum(axis=1)


def fgd_frag(gf: np.ndarray, cpu: np.ndarray, model: np.ndarray,
             w: WorkloadArrays) -> np.ndarray:
    g, total = _common(gf)
    if len(w.p) == 0:
        return total * w.cpu_share
    dd = w.dvals
    lt = gf[:, :, None] < dd  # invalid GPUs (-1) are < d but contribute g = 0
    s = (g[:, :, None] * lt).sum(axis=1)  # (r, D) free GPU on GPUs too small for d
    c = (gf[:, :, None] >= dd).sum(axis=1)  # (r, D) GPUs with at least d free
    fit = (cpu[:, None] >= w.cpu) & w.allowed[model] & (c[:, w.didx] >= w.n)
    per = np.where(fit, s[:, w.didx], total[:, None])
    return per @ w.p + total * w.cpu_share


def fill_frag(gf: np.ndarray, cpu: np.ndarray, model: np.ndarray,
              w: WorkloadArrays) -> np.ndarray:
    g, total = _common(gf)
    if len(w.p) == 0:
        return total.astype(np.float64)
    dd = w.dvals
    slots = (g[:, :, None] // dd).sum(axis=1)  # (r, D) copies of a d-milli task GPUs allow
    whole = (gf >= 1000).sum(axis=1)
    gslots = np.where(w.d >= 1000, whole[:, None] // np.maximum(w.n, 1), slots[:, w.didx])
    cslots = w.cpu_copies(cpu[:, None])
    hosted = np.minimum(gslots, cslots) * w.allowed[model]
    unusable = total[:, None] - hosted * w.demand
    return unusable @ w.p


def fill_delta(gf: np.ndarray, cpu: np.ndarray, model: np.ndarray, w: WorkloadArrays,
               cpu_milli: int, gpu_count: int, gpu_milli: int, gpu_allowed: np.ndarray,
               waste_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Growth of :func:`fill_frag` when a request is placed, per node, fast.

    Returns ``(delta, gpu)``: for a fractional request the best GPU per node and the delta there
    (``inf`` where no GPU fits); else ``gpu`` is -1. The request's own GPU, the same on every
    node, is left out (deltas are compared across nodes only). Only the GPU that changes is
    recomputed, through a table of ``free // d`` per free value.
    """
    m, g = gf.shape
    if len(w.p) == 0:
        return np.zeros(m), np.full(m, -1)
    wd = w.p * w.demand
    allowed = w.allowed[model]  # (m, K)
    gcl = np.clip(gf, 0, None)
    tab = w.qtab[gcl]  # (m, G, D)
    slots = tab.sum(axis=1)  # (m, D)
    whole = (gf >= 1000).sum(axis=1)
    n = np.maximum(w.n, 1)
    is_whole = w.d >= 1000

    def hosted(sl: np.ndarray, wh: np.ndarray, c: np.ndarray) -> np.ndarray:
        gs = np.where(is_whole, wh[..., None] // n, sl[..., w.didx])
        return np.minimum(gs, w.cpu_copies(c[..., None]))

    v_before = (hosted(slots, whole, cpu) * allowed) @ wd
    cpu_after = cpu - cpu_milli
    if gpu_count and gpu_milli < 1000:
        ok = (gf >= gpu_milli) & gpu_allowed
        after_free = np.clip(gf - gpu_milli, 0, None)
        sl = slots[:, None, :] - tab + w.qtab[after_free]  # (m, G, D)
        wh = whole[:, None] - (gf >= 1000)  # (m, G)
        v_after = (hosted(sl, wh, np.repeat(cpu_after[:, None], g, axis=1))
                   * allowed[:, None, :]) @ wd
        frag = v_before[:, None] - v_after + 1e-6 * gcl  # best fit among equals
        if waste_weight:
            frag = frag + waste_weight * (w.waste[after_free] - w.waste[gcl])
        frag = np.where(ok, frag, np.inf)
        best = frag.argmin(axis=1)
        return frag[np.arange(m), best], best
    if gpu_count:
        ok = (gf >= 1000) & gpu_allowed
        take = ok & (np.cumsum(ok, axis=1) <= gpu_count)
        after_free = np.where(take, 0, gcl)
        sl = w.qtab[after_free].sum(axis=1)
        wh = whole - take.sum(axis=1)
    else:
        sl, wh = slots, whole
    v_after = (hosted(sl, wh, cpu_after) * allowed) @ wd
    return v_before - v_after, np.full(m, -1)
