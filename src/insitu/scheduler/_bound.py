"""An upper bound on the GPU share any policy can allocate for a packing run.

Nodes are pooled by type (same CPU, memory, GPU count and model) and tasks by shape; the MILP
chooses how many tasks of each shape go to each node type, within the pooled CPU, memory,
milli-GPU and whole-GPU capacity of the type, at most as many as arrived, maximising the
milli-GPU placed. Every real packing (online or offline) is a feasible point of it, so its optimum,
or HiGHS's dual bound when the time limit stops it first, bounds every policy from above. The LP
relaxation is solved first; the MILP runs only when the LP leaves room to tighten.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insitu.scheduler._model import Node, Request


@dataclass(frozen=True, kw_only=True)
class Bound:
    share: float  # upper bound on the allocated share of milli-GPU capacity
    optimal: bool  # the MILP was solved to optimality
    lp: bool  # the LP relaxation's value (the MILP was not needed, or gave nothing better)


def packing_bound(nodes: Sequence[Node], arrivals: Sequence[Request], *,
                  time_limit: float = 10.0) -> Bound:
    from scipy.optimize import Bounds, LinearConstraint, milp

    ntype: Counter[tuple[int, int, int, str]] = Counter(
        (round(n.cpu * 1000), n.memory, sum(1 for g in n.gpus if not g.mig),
         n.gpus[0].model if n.gpus else "") for n in nodes)
    tshape: Counter[tuple[int, int, int, int, tuple[str, ...]]] = Counter(
        (r.cpu_milli, r.memory, r.gpu_count, r.gpu_milli, tuple(r.gpu_types))
        for r in arrivals if r.mig_profile is None)
    types = list(ntype)
    shapes = [s for s in tshape if s[2] > 0]  # CPU-only tasks place no GPU: they only compete
    cpu_only = [s for s in tshape if s[2] == 0]
    cap = 1000 * sum(t[2] * ntype[t] for t in types)
    var: list[tuple[int, int]] = []
    for si, (c, m, n, _d, spec) in enumerate(shapes):
        for ti, (tc, tm, tg, model) in enumerate(types):
            if c <= tc and m <= tm and n <= tg and (not spec or model in spec):
                var.append((si, ti))
    if not var or cap == 0:
        return Bound(share=0.0, optimal=True, lp=False)
    del cpu_only  # placing them never raises GPU share; the bound may leave them out
    nv = len(var)
    obj = np.array([-shapes[s][2] * shapes[s][3] for s, _ in var], dtype=np.float64)
    rows, lo, hi = [], [], []
    for si in range(len(shapes)):
        rows.append([1.0 if s == si else 0.0 for s, _ in var])
        lo.append(0)
        hi.append(tshape[shapes[si]])
    for ti, (tc, tm, tg, _) in enumerate(types):
        k = ntype[types[ti]]
        sel = [1.0 if t == ti else 0.0 for _, t in var]
        rows.append([sel[j] * shapes[var[j][0]][0] for j in range(nv)])
        hi.append(k * tc)
        rows.append([sel[j] * shapes[var[j][0]][1] for j in range(nv)])
        hi.append(k * tm)
        rows.append([sel[j] * shapes[var[j][0]][2] * shapes[var[j][0]][3] for j in range(nv)])
        hi.append(k * tg * 1000)
        rows.append([sel[j] * shapes[var[j][0]][2] * (shapes[var[j][0]][3] >= 1000)
                     for j in range(nv)])
        hi.append(k * tg)
        lo.extend([0, 0, 0, 0])
    a = np.array(rows)
    cons = LinearConstraint(a, np.array(lo, float), np.array(hi, float))
    lp = milp(obj, constraints=cons, bounds=Bounds(0, np.inf))
    lp_share = min(1.0, -lp.fun / cap) if lp.x is not None else 1.0
    if lp_share >= 1.0 - 1e-9 or time_limit <= 0:  # integrality cannot tighten a full bound
        return Bound(share=lp_share, optimal=False, lp=True)
    res = milp(obj, constraints=LinearConstraint(a, np.array(lo, float), np.array(hi, float)),
               integrality=np.ones(nv), bounds=Bounds(0, np.inf),
               options={"time_limit": time_limit, "disp": False})
    if res.x is not None or getattr(res, "mip_dual_bound", None) is not None:
        dual = getattr(res, "mip_dual_bound", None)
        best = -dual if dual is not None and np.isfinite(dual) else -res.fun
        return Bound(share=min(lp_share, best / cap), optimal=res.status == 0, lp=False)
    return Bound(share=lp_share, optimal=False, lp=True)
