"""Filters, and the "why pending" explanation summed over nodes.

Each node that does not fit is counted once, under the first check it fails, in this order:
taints, node selector, affinity, spot, GPU type, then capacity (can never fit), then free GPUs,
CPU, memory. Groups are listed by count, largest first, as in::

    0 of 1,213 nodes fit: 900 have fewer than 2 free GPUs; 300 have taint
    gpu=reserved:NoSchedule that the step does not tolerate (add
    tolerations=["gpu=reserved:NoSchedule"]); 13 have V100, the step asks for T4
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from insitu._units import format_bytes
from insitu.scheduler._mig import MIG_MODELS, find_start
from insitu.scheduler._model import Request
from insitu.scheduler._plugin import ClusterView, Filter, Groups


def _by_key(idx: np.ndarray, key: Callable[[int], str | None]) -> Groups:
    groups: dict[str, list[int]] = {}
    for i in idx:
        k = key(int(i))
        if k is not None:
            groups.setdefault(k, []).append(int(i))
    return [(k, np.array(v, dtype=np.int64)) for k, v in groups.items()]


class TaintToleration(Filter):
    name = "taints"

    def _untolerated(self, st: ClusterView, req: Request, i: int) -> str | None:
        for t in st.nodes[i].taints:
            if t.effect == "PreferNoSchedule":
                continue
            if not any(tol.tolerates(t) for tol in req.tolerations):
                return str(t)
        return None

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        m = np.ones(len(st.nodes), dtype=bool)
        if not st.tainted:
            return m
        for i in st.tainted:
            nd = st.nodes[i]
            if nd.taints and self._untolerated(st, req, i) is not None:
                m[i] = False
        return m

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        out = _by_key(idx, lambda i: self._untolerated(st, req, i))
        return [(f'{{have}} taint {t} that the step does not tolerate '
                 f'(add tolerations=["{t}"])', v) for t, v in out]


class NodeSelector(Filter):
    name = "node_selector"

    def _missing(self, st: ClusterView, req: Request, i: int) -> str | None:
        labels = st.nodes[i].labels
        for k, v in sorted(req.node_selector.items()):
            if labels.get(k) != v:
                return f"{k}={v}"
        return None

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        if not req.node_selector:
            return np.ones(len(st.nodes), dtype=bool)
        return np.array([self._missing(st, req, i) is None for i in range(len(st.nodes))])

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        out = _by_key(idx, lambda i: self._missing(st, req, i))
        return [(f"{{have}} no label {lab} (the step's node_selector asks for it)", v)
                for lab, v in out]


class NodeAffinity(Filter):
    name = "affinity"

    def _missing(self, st: ClusterView, req: Request, i: int) -> str | None:
        labels = st.nodes[i].labels
        for k, vals in sorted(req.affinity.items()):
            if labels.get(k) not in vals:
                return f"{k} in ({', '.join(vals)})"
        return None

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        if not req.affinity:
            return np.ones(len(st.nodes), dtype=bool)
        return np.array([self._missing(st, req, i) is None for i in range(len(st.nodes))])

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        out = _by_key(idx, lambda i: self._missing(st, req, i))
        return [(f"{{have}} no label {cond} (the step's affinity asks for it)", v)
                for cond, v in out]


class SpotOnlyRestartable(Filter):
    name = "spot"

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        if req.restartable:
            return np.ones(len(st.nodes), dtype=bool)
        return ~st.spot

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        return [("{are} spot nodes and the step is not restartable "
                 "(set restartable=True to allow spot nodes)", idx)]


class GpuType(Filter):
    name = "gpu_type"

    def _bad(self, st: ClusterView, req: Request, i: int) -> str | None:
        if not (req.gpu_count or req.mig_profile):
            return None
        nd = st.nodes[i]
        if not nd.gpus:
            return "{have} no GPUs"
        if req.mig_profile is not None:
            ok = any(g.mig and req.mig_profile in MIG_MODELS.get(g.model, {})
                     and (not req.gpu_types or g.model in req.gpu_types) for g in nd.gpus)
            return None if ok else (f"{{have}} no GPU in MIG mode that offers "
                                    f"{req.mig_profile}")
        if not any(not g.mig for g in nd.gpus):
            return "{have} only GPUs in MIG mode, the step asks for whole or shared GPUs"
        if req.gpu_types and not any(g.model in req.gpu_types and not g.mig for g in nd.gpus):
            return f"{{have}} {nd.gpus[0].model}, the step asks for {' or '.join(req.gpu_types)}"
        return None

    def mask(self, st: ClusterView, req: Request) -> np.ndarray:
        if not (req.gpu_count or req.mig_profile):
            return np.ones(len(st.nodes), dtype=bool)
        if req.mig_profile is None and not st.mig_gpus:
            return np.asarray(st.gpu_ok(req).any(axis=1))
        return np.array([self._bad(st, req, i) is None for i in range(len(st.nodes))])

    def reasons(self, st: ClusterView, req: Request, idx: np.ndarray) -> Groups:
        return _by_key(idx, lambda i: self._bad(st, req, i))


STATIC_FILTERS: tuple[Filter, ...] = (TaintToleration(), NodeSelector(), NodeAffinity(),
                                      SpotOnlyRestartable(), GpuType())


def _cores(milli: int) -> str:
    return f"{milli / 1000:g}"


def _gpu_phrase(req: Request) -> str:
    if req.gpu_milli < 1000:
        return f"{{have}} no GPU with {req.gpu_milli / 1000:g} of a GPU free"
    if req.gpu_count == 1:
        return "{have} no free GPU"
    return f"{{have}} fewer than {req.gpu_count} free GPUs"


def _dynamic(st: ClusterView, req: Request, idx: np.ndarray) -> tuple[Groups, np.ndarray]:
    """Groups for nodes ``idx`` (which pass the static filters); and which could ever fit."""
    groups: Groups = []
    left = idx
    # capacity: could the node hold the request if it were empty?
    cap_checks: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = []
    if req.gpu_count:
        cap_checks.append((
            f"{{have}} fewer than {req.gpu_count} GPU{'s' if req.gpu_count > 1 else ''} in total"
            f"{' of the allowed types' if req.gpu_types else ''}",
            lambda ix: (st.gpu_ok(req, ix) & (st.gcap[ix] >= req.gpu_milli)).sum(axis=1)
            >= req.gpu_count))
    cap_checks.append((f"{{have}} fewer than {_cores(req.cpu_milli)} CPUs in total",
                       lambda ix: st.cpu_cap[ix] >= req.cpu_milli))
    cap_checks.append((f"{{have}} less than {format_bytes(req.memory)} of memory in total",
                       lambda ix: st.mem_cap[ix] >= req.memory))
    for text, check in cap_checks:
        if len(left) == 0:
            break
        ok = check(left)
        if (~ok).any():
            groups.append((text, left[~ok]))
        left = left[ok]
    possible = left
    if req.mig_profile is not None:
        still = []
        for i in left:
            fits_any = False
            for (n, _g), used in st.mig_gpus.items():
                if n == i:
                    prof = MIG_MODELS[st.nodes[n].gpus[_g].model].get(req.mig_profile)
                    if prof is not None and find_start(used, prof) is not None:
                        fits_any = True
            if not fits_any:
                still.append(int(i))
        if still:
            groups.append((f"{{have}} no free slot for a {req.mig_profile} partition",
                           np.array(still, dtype=np.int64)))
        left = np.array([i for i in left if int(i) not in set(still)], dtype=np.int64)
    elif req.gpu_count and len(left):
        good = (st.gfree[left] >= req.gpu_milli) & st.gpu_ok(req, left)
        ok = good.sum(axis=1) >= req.gpu_count
        if (~ok).any():
            groups.append((_gpu_phrase(req), left[~ok]))
        left = left[ok]
    if len(left):
        ok = st.cpu_free[left] >= req.cpu_milli
        if (~ok).any():
            groups.append((f"{{have}} less than {_cores(req.cpu_milli)} free CPUs", left[~ok]))
        left = left[ok]
    if len(left):
        ok = st.mem_free[left] >= req.memory
        if (~ok).any():
            groups.append((f"{{have}} less than {format_bytes(req.memory)} of free memory",
                           left[~ok]))
    return groups, possible


def _phrase(count: int, text: str) -> str:
    one = count == 1
    text = text.replace("{are} spot nodes", "is a spot node" if one else "are spot nodes")
    text = text.replace("{have}", "has" if one else "have").replace("{are}", "is" if one
                                                                     else "are")
    return f"{count:,} {text}"


def explain(st: ClusterView, req: Request,
            filters: Sequence[Filter] = ()) -> tuple[str, bool]:
    """``(text, never)``: why ``req`` fits on no node now, and whether it never could;
    ``filters``: the policy's own filters, checked after the built-in ones."""
    n = len(st.nodes)
    left = np.arange(n)
    groups: Groups = []
    for f in (*STATIC_FILTERS, *filters):
        ok = f.mask(st, req)[left]
        if (~ok).any():
            groups.extend(f.reasons(st, req, left[~ok]))
        left = left[ok]
    dyn, possible = _dynamic(st, req, left)
    groups.extend(dyn)
    counted = sum(len(v) for _, v in groups)
    fit = n - counted
    if fit > 0:
        return "", False
    merged: dict[str, int] = {}
    for text, nodes in groups:
        merged[text] = merged.get(text, 0) + len(nodes)
    order = sorted(merged, key=lambda t: -merged[t])  # stable: check order among equals
    parts = [_phrase(merged[t], t) for t in order]
    head = f"0 of {n:,} node{'s' if n != 1 else ''} fit{'s' if n == 1 else ''}: "
    never = len(possible) == 0
    tail = "; it can never be placed on this cluster, even when empty" if never else ""
    return head + "; ".join(parts) + tail, never
