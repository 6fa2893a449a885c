"""Queues over a cluster: quotas, cohort borrowing, DRF, priorities, preemption, gangs, backfill.

Contracts:

- Each :class:`Queue` has a nominal quota per resource (``cpu`` cores, ``memory`` bytes, ``gpu``
  GPUs). A queue may always use up to its nominal quota. Beyond it, it may borrow, at most its
  ``borrowing_limit``, from the unused quota of the other queues of its ``cohort``, each of which
  lends at most its ``lending_limit``. A queue without a cohort never exceeds its quota.
- A scheduling pass (:meth:`QueueScheduler.schedule`) considers pending work by priority (high
  first), then dominant-resource fairness (the queue with the smallest dominant share first),
  then submission order. Work that cannot start does not block smaller work behind it
  (backfill); it keeps its place for the next pass.
- A gang (requests sharing ``gang``) is considered only once all ``gang_size`` members are
  submitted, and is placed all-or-nothing: no member ever holds resources while another waits,
  so gangs cannot deadlock each other.
- Preemption: a single request that does not fit may evict running work of strictly lower
  priority (never equal or higher), choosing the node whose victim set is cheapest:
  fewest non-restartable victims, then lowest priorities, then least GPU. On a node, victims
  are released cheapest first until the request fits; those whose release turns out not to be
  needed are kept. A queue within its nominal quota may also reclaim from queues of its cohort
  that borrow, whatever their priority.
- Gang preemption: a complete gang that does not fit may evict such work (strictly lower than
  every member's priority, or reclaim as above) to fit *all* its members at once. Victims are
  released tentatively, cheapest first (restartable, then lowest priority, then least GPU),
  until the whole gang fits; then each victim whose release was not needed is taken back. If the
  gang does not fit even with every allowed victim gone, nothing is evicted (all-or-nothing).
- Reservation (backfill without starvation): a unit (gang or single request) that could not
  start while work behind it did (it was *passed over* by backfill) in ``reserve_after``
  passes in a row, for lack of room rather than quota, gets a reservation if none is held:
  for each member, largest first, the allowed node that needs the least freed to fit it
  (shortfall of CPU, memory and GPU as shares of the node), counting what earlier members were
  given. Until the unit starts, no other work is placed on the reserved nodes (they drain as
  their work finishes), and the unit is tried first in every pass, on any node, or on its
  reserved nodes as planned. Once all the work on its reserved nodes has finished, it fits there,
  so it starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from insitu._units import parse_memory
from insitu.errors import NotFound, ResourceError
from insitu.scheduler._model import Decision, Placement, Request
from insitu.scheduler._running import RunningTable
from insitu.scheduler._state import ClusterState

RESOURCES = ("cpu", "memory", "gpu")
INF = float("inf")


def _typed(k: str) -> bool:
    """``gpu:A100``: GPUs of one model (a request asking for that model only is charged)."""
    return k.startswith("gpu:") and len(k) > 4


def _amounts(q: Mapping[str, object] | None, *, default: float, what: str,
             keys: Sequence[str] = RESOURCES) -> dict[str, float]:
    out = dict.fromkeys(keys, default)
    for k, v in (q or {}).items():
        if k not in RESOURCES and not _typed(k):
            raise ResourceError(f"{what}: unknown resource {k!r}",
                                hint=f"use {', '.join(RESOURCES)} or gpu:MODEL (e.g. gpu:A100)")
        if k == "memory":
            out[k] = float(parse_memory(v, what=f"{what} memory")) if v != 0 else 0.0
        else:
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise ResourceError(f"{what}: {k} must be a number >= 0, not {v!r}",
                                    hint=f"e.g. {{'{k}': 8}}")
            out[k] = float(v) * 1000  # cores and GPUs in milli
    return out


@dataclass(frozen=True, kw_only=True)
class Queue:
    """A tenant's queue: nominal ``quota`` (``{"cpu": 64, "memory": "256GiB", "gpu": 8}``; a
    resource left out has no quota, i.e. unlimited), ``cohort`` to borrow from and lend to,
    ``borrowing_limit`` and ``lending_limit`` per resource (left out: unlimited)."""

    name: str
    quota: Mapping[str, object] = field(default_factory=dict)
    cohort: str | None = None
    borrowing_limit: Mapping[str, object] | None = None
    lending_limit: Mapping[str, object] | None = None


def _demand(r: Request, keys: Sequence[str] = RESOURCES) -> dict[str, float]:
    d = dict.fromkeys(keys, 0.0)
    d.update(cpu=float(r.cpu_milli), memory=float(r.memory), gpu=float(r.total_gpu_milli))
    if len(r.gpu_types) == 1 and f"gpu:{r.gpu_types[0]}" in d:
        d[f"gpu:{r.gpu_types[0]}"] = float(r.total_gpu_milli)
    return d


class QueueScheduler:
    """Queues in front of a :class:`ClusterState`. Not thread-safe; pure and deterministic."""

    def __init__(self, cluster: ClusterState, queues: Sequence[Queue], *,
                 reserve_after: int = 3) -> None:
        if reserve_after < 1:
            raise ResourceError(f"reserve_after must be at least 1, not {reserve_after}",
                                hint="give the passes a unit may be passed over, e.g. 3")
        self.cluster = cluster
        self.reserve_after = reserve_after
        #: times each waiting unit (gang name or request name) was passed over in a row
        self.passed_over: dict[str, int] = {}
        #: the unit holding the reservation, and its plan: member name -> node name
        self.reserved_for: str | None = None
        self.reservation: dict[str, str] = {}
        self.queues = {q.name: q for q in queues}
        #: the resources accounted: cpu, memory, gpu, and gpu:MODEL for each model a quota or
        #: limit names
        self.resources: tuple[str, ...] = RESOURCES + tuple(sorted(
            {k for q in queues for m in (q.quota, q.borrowing_limit, q.lending_limit)
             for k in (m or {}) if _typed(k)}))
        res = self.resources
        self.nominal = {q.name: _amounts(q.quota, default=INF, what=f"queue {q.name!r} quota",
                                         keys=res) for q in queues}
        for q in queues:  # quota given for some resources only: the others are unlimited
            for r in res:
                if r not in q.quota:
                    self.nominal[q.name][r] = INF
        self.borrow = {q.name: _amounts(q.borrowing_limit, default=INF, keys=res,
                                        what=f"queue {q.name!r} borrowing_limit")
                       for q in queues}
        self.lend = {q.name: _amounts(q.lending_limit, default=INF, keys=res,
                                      what=f"queue {q.name!r} lending_limit") for q in queues}
        self.usage = {q.name: dict.fromkeys(res, 0.0) for q in queues}
        #: queues with no quota and no cohort: never quota-blocked
        self._free_queues = {q.name for q in queues if q.cohort is None
                             and all(v == INF for v in self.nominal[q.name].values())}
        self._shapes: dict[str, tuple | None] = {}
        self.pending: list[Request] = []
        self.running: dict[str, Request] = {}
        self._table = RunningTable([q.name for q in queues])
        self._seq = 0
        self._fresh: set[str] = set()
        self._freed = False
        self._order: dict[str, int] = {}
        self.total = {"cpu": float(cluster.cpu_cap.sum()), "memory": float(cluster.mem_cap.sum()),
                      "gpu": float(max(1, cluster.gpu_capacity))}
        for k in res[len(RESOURCES):]:  # a model's devices, in milli-GPU
            self.total[k] = float(max(1000, 1000 * sum(
                g.model == k[4:] for n in cluster.nodes for g in n.gpus)))

    # ------------------------------------------------------------------ public
    def submit(self, *requests: Request) -> None:
        for r in requests:
            if r.queue not in self.queues:
                raise NotFound(f"request {r.name!r} names unknown queue {r.queue!r}",
                               hint=f"use one of {', '.join(sorted(self.queues))}")
            self._order[r.name] = self._seq
            self._seq += 1
            self.pending.append(r)
            self._fresh.add(r.name)

    def finish(self, name: str) -> None:
        """The request ``name`` ended: release its placement and its quota."""
        r = self.running.pop(name, None)
        if r is None:
            raise NotFound(f"request {name!r} is not running", hint="finish only running work")
        self.cluster.release(name)
        self._charge(r, -1)
        self._freed = True

    def admit_running(self, r: Request) -> bool:
        """``r`` already runs (it was admitted by an earlier pass of another scheduler over
        the same queues): place it and charge its queue, without checking quotas. Returns
        whether it found room; if not, its queue is charged all the same."""
        if r.queue not in self.queues:
            raise NotFound(f"request {r.name!r} names unknown queue {r.queue!r}",
                           hint=f"use one of {', '.join(sorted(self.queues))}")
        self._order[r.name] = self._seq
        self._seq += 1
        d = self.cluster.place_one(r)
        if d.placed:
            self.running[r.name] = r
            self._charge(r, +1)
            return True
        for k, v in _demand(r, self.resources).items():
            self.usage[r.queue][k] += v
        return False

    def dominant_share(self, queue: str) -> float:
        u = self.usage[queue]
        return max(u[r] / self.total[r] for r in self.resources)

    def schedule(self) -> list[Decision]:
        """One pass over the pending work; a decision for each request it considered.

        When nothing finished since the last pass, work that already failed cannot fit now
        (the cluster only filled up), so only newly submitted work is considered.
        """
        units = self._units()
        out: list[Decision] = []
        first: list[list[Request]] = []
        if self.reserved_for is not None:
            first = [u for u in units if _key(u) == self.reserved_for]
            units = [u for u in units if _key(u) != self.reserved_for]
            if not first:  # pragma: no cover - a reserved unit leaves only by starting
                self._drop_reservation()
        skipped: list[list[Request]] = []  # failed before, nothing freed since: not retried
        if not self._freed:
            skipped = [u for u in units if not any(r.name in self._fresh for r in u)]
            units = [u for u in units if any(r.name in self._fresh for r in u)]
        self._fresh.clear()
        self._freed = False
        for u in first:
            ds = self._try_reserved(u)
            out.extend(ds)
        by_queue: dict[str, list[list[Request]]] = {}
        for u in units:
            by_queue.setdefault(u[0].queue, []).append(u)
        for lst in by_queue.values():
            lst.sort(key=lambda u: (-u[0].priority, self._order[u[0].name]), reverse=True)
        failed: dict[tuple, str] = {}
        # with explanations off, a unit at least as large as one that failed this pass (same
        # static constraints and queue, no higher priority) fails too: not tried again
        frontier: dict[tuple, list[tuple[int, int, int, int, int]]] = {}
        dominance = not self.cluster.explain_pending
        shares = {q: self.dominant_share(q) for q in by_queue}
        # units that could not start for lack of room (those not retried, submitted earlier,
        # wait ahead of everything tried now)
        waiting = [u for u in skipped if _complete(u) and not self._quota_blocked(u)]
        while by_queue:
            q = min(by_queue, key=lambda q: (-by_queue[q][-1][0].priority, shares[q],
                                             self._order[by_queue[q][-1][0].name]))
            unit = by_queue[q].pop()
            if not by_queue[q]:
                del by_queue[q]
            key = self._shape(unit)
            if key is not None and (key in failed or dominance and _dominated(
                    frontier.get(key[0]), key[1])):
                reason = failed.get(key, "no node fits now (explanations are off)")
                out.extend(Decision(request=r, reason=reason) for r in unit)
                waiting.append(unit)
                continue
            ds = self._try(unit)
            out.extend(ds)
            if ds[0].placed:
                shares = {q: self.dominant_share(q) for q in by_queue}
                self.passed_over.pop(_key(unit), None)
                for w in waiting:  # work behind them started: they were passed over
                    k = _key(w)
                    self.passed_over[k] = self.passed_over.get(k, 0) + 1
                waiting.clear()
            else:
                if key is not None:
                    failed[key] = ds[0].reason or ""
                    if dominance:
                        _add_failed(frontier.setdefault(key[0], []), key[1])
                if not self._quota_blocked(unit) and _complete(unit):
                    waiting.append(unit)
        if self.reserved_for is None:
            for u in self._units():
                if self.passed_over.get(_key(u), 0) >= self.reserve_after and _complete(u) \
                        and u[0].name not in self.running:
                    self._reserve(u)
                    break
        self.pending = [r for r in self.pending if r.name not in self.running]
        return out

    # ------------------------------------------------------------------ internals
    def _shape(self, unit: list[Request]) -> tuple | None:
        """``(constraints, sizes)`` of a single request: units of the same shape fail alike
        within one pass (no one frees anything meanwhile); ``None`` for others."""
        name = unit[0].name
        if len(unit) == 1 and name in self._shapes:
            return self._shapes[name]
        shape = _shape(unit)
        if len(unit) == 1:
            self._shapes[name] = shape
        return shape

    def _requeue(self, v: Request) -> None:
        """Evicted work waits again (once: it may still be listed if it started this pass)."""
        if not any(r.name == v.name for r in self.pending):
            self.pending.append(v)
        self._fresh.add(v.name)

    def _quota_blocked(self, unit: list[Request]) -> bool:
        if unit[0].queue in self._free_queues:
            return False
        total = dict.fromkeys(self.resources, 0.0)
        for r in unit:
            for k, v in _demand(r, self.resources).items():
                total[k] += v
        return self.quota_problem(unit[0].queue, total) is not None

    def _reserve(self, unit: list[Request]) -> None:
        """Reserve for ``unit`` the nodes that need the least freed to fit it (see the module
        docstring); no reservation if no set of nodes could ever hold it."""
        st = self.cluster
        cpu = st.cpu_free.astype(np.float64)
        mem = st.mem_free.astype(np.float64)
        gfree = np.clip(st.gfree, 0, None)
        whole = (gfree >= 1000).sum(axis=1).astype(np.float64)
        best_gpu = gfree.max(axis=1).astype(np.float64)
        cap_cpu = st.cpu_cap.astype(np.float64)
        cap_mem = st.mem_cap.astype(np.float64)
        cap_gpus = (st.gcap >= 1000).sum(axis=1).astype(np.float64)
        ngpu = np.maximum(cap_gpus, 1)
        plan: dict[str, str] = {}
        for r in sorted(unit, key=lambda r: (-r.total_gpu_milli, -r.cpu_milli, r.name)):
            ok = st.static_mask(r) & (cap_cpu >= r.cpu_milli) & (cap_mem >= r.memory)
            short = np.maximum(0, r.cpu_milli - cpu) / np.maximum(st.cpu_cap, 1) \
                + np.maximum(0, r.memory - mem) / np.maximum(st.mem_cap, 1)
            if r.gpu_count:
                need = r.gpu_count if r.gpu_milli >= 1000 else 1
                ok &= cap_gpus >= need
                if r.gpu_milli >= 1000:
                    short = short + np.maximum(0, r.gpu_count - whole) / ngpu
                else:
                    short = short + np.maximum(0, r.gpu_milli - best_gpu) / 1000 / ngpu
            if r.mig_profile is not None or not ok.any():
                return
            i = int(np.flatnonzero(ok)[np.argmin(short[ok])])
            plan[r.name] = st.nodes[i].name
            cpu[i] -= r.cpu_milli
            mem[i] -= r.memory
            cap_cpu[i] -= r.cpu_milli
            cap_mem[i] -= r.memory
            if r.gpu_count:
                taken = r.gpu_count if r.gpu_milli >= 1000 else 1
                cap_gpus[i] -= taken
                whole[i] -= taken
                if r.gpu_milli < 1000:
                    best_gpu[i] -= r.gpu_milli
        self.reserved_for = _key(unit)
        self.reservation = plan
        st.hold(sorted(set(plan.values())))

    def _drop_reservation(self) -> None:
        self.reserved_for = None
        self.reservation = {}
        self.cluster.hold(None)

    def _try_reserved(self, unit: list[Request]) -> list[Decision]:
        """The reserved unit: anywhere (held nodes included), else on its planned nodes."""
        st = self.cluster
        held = st.held
        st.held = None
        try:
            ds = self._try(unit, preempt=False)
            if not ds[0].placed and not self._quota_blocked(unit):
                planned = self._place_planned(unit)
                if planned is not None:
                    ds = planned
            if not ds[0].placed and _complete(unit):
                ds = self._try(unit)  # preemption, with the hold lifted
        finally:
            st.held = held
        if ds[0].placed:
            self.passed_over.pop(_key(unit), None)
            self._drop_reservation()
        return ds

    def _place_planned(self, unit: list[Request]) -> list[Decision] | None:
        st = self.cluster
        done: list[Decision] = []
        for r in unit:
            node = self.reservation.get(r.name)
            d = st.place_on(r, node) if node is not None else None
            if d is None or not d.placed:
                for x in done:
                    assert x.placement is not None
                    st.release(x.placement)
                return None
            done.append(d)
        for r in unit:
            self.running[r.name] = r
            self._charge(r, +1)
        return done

    def _units(self) -> list[list[Request]]:
        units: list[list[Request]] = []
        gangs: dict[str, list[Request]] = {}
        for r in self.pending:
            if r.gang is None:
                units.append([r])
            else:
                if r.gang not in gangs:
                    gangs[r.gang] = []
                    units.append(gangs[r.gang])
                gangs[r.gang].append(r)
        return units

    def _charge(self, r: Request, sign: int) -> None:
        """``r`` starts (+1) or stops (-1) running: its quota and the running table."""
        d = _demand(r, self.resources)
        for k in self.resources:
            self.usage[r.queue][k] += sign * d[k]
        if sign > 0:
            st = self.cluster
            self._shapes.pop(r.name, None)
            self._table.add(r, st.index[st.placements[r.name].node])
        else:
            self._table.remove(r.name)

    def quota_problem(self, queue: str, demand: Mapping[str, float]) -> str | None:
        """Why ``demand`` more in ``queue`` would break its quota; ``None`` if it may run."""
        if queue in self._free_queues:
            return None
        nom, use = self.nominal[queue], self.usage[queue]
        cohort = self.queues[queue].cohort
        for k in self.resources:
            want = use[k] + demand[k]
            if want <= nom[k]:
                continue
            if cohort is None:
                return (f"queue {queue!r} would use {_fmt(k, want)} of its {_fmt(k, nom[k])} "
                        f"{k} quota (it has no cohort to borrow from)")
            borrowed = want - nom[k]
            if borrowed > self.borrow[queue][k]:
                return (f"queue {queue!r} would borrow {_fmt(k, borrowed)} {k}, more than its "
                        f"borrowing_limit of {_fmt(k, self.borrow[queue][k])}")
            lendable = 0.0
            others_borrowed = 0.0
            for p, q in self.queues.items():
                if p == queue or q.cohort != cohort:
                    continue
                unused = max(0.0, self.nominal[p][k] - self.usage[p][k])
                lendable += min(unused, self.lend[p][k])
                others_borrowed += max(0.0, self.usage[p][k] - self.nominal[p][k])
            free = lendable - others_borrowed
            if borrowed > free:
                left = max(0.0, free - max(0.0, use[k] - nom[k]))
                return (f"queue {queue!r} is at its {k} quota ({_fmt(k, nom[k])}) and cohort "
                        f"{cohort!r} has {_fmt(k, left)} {k} left to lend")
        return None

    def _try(self, unit: list[Request], *, preempt: bool = True) -> list[Decision]:
        head = unit[0]
        if head.gang is not None and len(unit) < head.gang_size:
            why = (f"gang {head.gang!r} has {len(unit)} of its {head.gang_size} members; it is "
                   "placed only when all are submitted")
            return [Decision(request=r, reason=why) for r in unit]
        total = dict.fromkeys(self.resources, 0.0)
        for r in unit:
            for k, v in _demand(r, self.resources).items():
                total[k] += v
        problem = self.quota_problem(head.queue, total)
        if problem is not None:
            return [Decision(request=r, reason=problem) for r in unit]
        decisions = self.cluster.place(unit)
        if all(d.placed for d in decisions):
            for r in unit:
                self.running[r.name] = r
                self._charge(r, +1)
            return decisions
        if preempt and len(unit) == 1:
            pre = self._preempt(head)
            if pre is not None:
                return [pre]
        elif preempt:
            pres = self._preempt_gang(unit, total)
            if pres is not None:
                return pres
        return decisions

    def _victim_mask(self, preemptor: Request, demand: Mapping[str, float] | None = None, *,
                     singles: bool = True) -> np.ndarray:
        """Rows of the running table that ``preemptor`` (asking ``demand`` in all, its own by
        default) may evict: strictly lower priority, or, when its queue stays within its nominal
        quota, no higher priority in another queue of its cohort that borrows (reclaim).
        ``singles``: leave out members of running gangs (a single request never splits one)."""
        t = self._table
        base = t.active & t.single if singles else t.active
        mask = base & (t.prio < preemptor.priority)
        q = self.queues[preemptor.queue]
        if q.cohort is None:
            return mask
        d = demand or _demand(preemptor, self.resources)
        if not all(self.usage[preemptor.queue][k] + d.get(k, 0.0)
                   <= self.nominal[preemptor.queue][k] for k in self.resources):
            return mask
        lenders = [t.queue_id[p] for p, pq in self.queues.items()
                   if p != preemptor.queue and pq.cohort == q.cohort
                   and any(self.usage[p][k] > self.nominal[p][k] for k in self.resources)]
        if lenders:
            mask |= base & (t.prio <= preemptor.priority) & np.isin(t.queue, lenders)
        return mask

    def _preempt(self, req: Request) -> Decision | None:
        """Evict the cheapest victim set on one node that lets ``req`` fit there (exact).

        Nodes are tried in order of a lower bound on their cost (at least one non-restartable
        victim where the restartable ones cannot free enough; at least the GPU it lacks), and
        the search stops once no untried node can be cheaper than the best set found, so a full
        cluster costs a few exact trials rather than one per node. Of equally cheap nodes, the
        one tried first wins (smallest bound, then lowest index).
        """
        st = self.cluster
        t = self._table
        sel = np.flatnonzero(self._victim_mask(req))
        if not len(sel):
            return None
        n = len(st.nodes)
        node_of = t.node[sel]
        restart = t.restart[sel]
        vcpu, vmem, vgpu = t.cpu[sel], t.mem[sel], t.gpu[sel]
        gfree = np.clip(st.gfree, 0, None).sum(axis=1).astype(np.float64)

        def enough(m: np.ndarray) -> np.ndarray:
            """Per node: could freeing the victims ``m`` make enough room (necessary)?"""
            def add(w: np.ndarray) -> np.ndarray:
                return np.bincount(node_of[m], weights=w[m], minlength=n)
            return ((st.cpu_free + add(vcpu) >= req.cpu_milli)
                    & (st.mem_free + add(vmem) >= req.memory)
                    & (gfree + add(vgpu) >= req.total_gpu_milli))

        allowed = st.static_mask(req).copy()
        if st.held is not None:
            allowed &= ~st.held
        allowed &= np.bincount(node_of, minlength=n) > 0
        cand = np.flatnonzero(allowed & enough(np.ones(len(sel), dtype=bool)))
        if not len(cand):
            return None
        needs_firm = ~enough(restart)[cand]
        short = np.maximum(0.0, req.total_gpu_milli - gfree[cand])
        order = np.lexsort((cand, short, needs_firm))
        best: tuple[tuple[int, int, int], int, list[Request]] | None = None
        for k in order.tolist():
            i = int(cand[k])
            if best is not None and (int(needs_firm[k]), 0, int(short[k])) >= best[0]:
                break  # no later node can cost less (a tie goes to the node tried first)
            on_node = [self.running[str(t.names[j])] for j in sel[node_of == i].tolist()]
            chosen = self._victims_on(req, i, on_node)
            if chosen is None:
                continue
            cost = (sum(not v.restartable for v in chosen), sum(v.priority for v in chosen),
                    sum(v.total_gpu_milli for v in chosen))
            if best is None or cost < best[0]:
                best = (cost, i, chosen)
        if best is None:
            return None
        _, i, victims = best
        for v in victims:
            self.finish(v.name)
            self._requeue(v)  # evicted work waits again (restartable or not)
        d = st.place_on(req, i)
        if d.placement is None:  # pragma: no cover - the release above made room
            return d
        self.running[req.name] = req
        self._charge(req, +1)
        return Decision(request=req, placement=d.placement,
                        preempted=tuple(v.name for v in victims))

    def _victims_on(self, req: Request, i: int, on_node: list[Request]) -> list[Request] | None:
        """The victims on node ``i`` to evict for ``req``: released cheapest first until it
        fits, then each one not needed is taken back; ``None`` if it never fits. The cluster is
        left as it was."""
        st = self.cluster
        idx = np.array([i])
        cands = sorted(on_node, key=lambda v: (not v.restartable, v.priority,
                                               v.total_gpu_milli, self._order[v.name]))
        saved: list[tuple[Request, Placement]] = []
        fit = False
        for v in cands:
            saved.append((v, st.placements[v.name]))
            st.release(v.name)
            if st.fits(req, idx)[0]:
                fit = True
                break
        chosen = [v for v, _ in saved]
        if fit:
            for v, p in reversed(saved[:-1]):  # take back the victims it does not need
                st.reserve(p)
                if st.fits(req, idx)[0]:
                    chosen.remove(v)
                else:
                    st.release(v.name)
        for v, p in reversed(saved):
            if v in chosen:
                st.reserve(p)
        return chosen if fit else None


    def _preempt_gang(self, unit: list[Request],
                      demand: Mapping[str, float]) -> list[Decision] | None:
        """Evict the cheapest set of allowed victims that lets the whole gang fit, or nothing."""
        st = self.cluster
        low = min(unit, key=lambda r: r.priority)
        groups: dict[str, list[Request]] = {}  # a running gang is evicted whole, or not at all
        for r in self.running.values():
            groups.setdefault(r.gang if r.gang is not None else r.name, []).append(r)
        allowed = {self._table.names[k]
                   for k in np.flatnonzero(self._victim_mask(low, demand, singles=False))}
        cands = [g for g in groups.values() if all(r.name in allowed for r in g)]
        if not cands:
            return None
        cands.sort(key=lambda g: (sum(not v.restartable for v in g), max(v.priority for v in g),
                                  sum(v.total_gpu_milli for v in g), self._order[g[0].name]))
        saved: list[tuple[list[Request], list[Placement]]] = []

        def fits() -> bool:
            ds = st.place(unit)
            if all(d.placed for d in ds):
                for d in ds:
                    assert d.placement is not None
                    st.release(d.placement)
                return True
            return False

        ok = False
        for g in cands:
            ps = [st.placements[v.name] for v in g]
            saved.append((g, ps))
            for p in ps:
                st.release(p)
            if fits():
                ok = True
                break
        if not ok:
            for _g, ps in reversed(saved):
                for p in ps:
                    st.reserve(p)
            return None
        needed: list[list[Request]] = []
        for g, ps in reversed(saved[:-1]):  # take back each victim the gang does not need
            for p in ps:
                st.reserve(p)
            if not fits():
                for p in ps:
                    st.release(p)
                needed.append(g)
        needed.append(saved[-1][0])
        ds = st.place(unit)
        if not all(d.placed for d in ds):  # pragma: no cover - it fitted in this very state
            for g, ps in saved:
                if g in needed:
                    for p in ps:
                        st.reserve(p)
            return None
        evicted = [v for g in needed for v in g]
        for v in evicted:  # the cluster already released them: only the books remain
            del self.running[v.name]
            self._charge(v, -1)
            self._requeue(v)
        self._freed = True
        for r in unit:
            self.running[r.name] = r
            self._charge(r, +1)
        victims = tuple(sorted(v.name for v in evicted))
        return [Decision(request=d.request, placement=d.placement, preempted=victims
                         if k == 0 else ()) for k, d in enumerate(ds)]


def _key(unit: list[Request]) -> str:
    return unit[0].gang if unit[0].gang is not None else unit[0].name


def _complete(unit: list[Request]) -> bool:
    return unit[0].gang is None or len(unit) >= max(r.gang_size for r in unit)


def _shape(unit: list[Request]) -> tuple | None:
    r = unit[0]
    if len(unit) > 1 or r.inputs or r.spread is not None or r.mig_profile is not None:
        return None
    return ((r.queue, r.gpu_types, tuple(sorted(r.node_selector.items())),
             tuple(sorted(r.affinity.items())), r.tolerations, r.restartable, r.gpu_count > 0),
            (-r.priority, r.cpu_milli, r.memory, r.gpu_count, r.gpu_milli))


def _dominated(frontier: list[tuple[int, int, int, int, int]] | None,
               size: tuple[int, int, int, int, int]) -> bool:
    """Is ``size`` (-priority, CPU, memory, GPUs, milli-GPU each) at least some failed size in
    every part? A larger request of no higher priority (fewer victims) cannot fit either."""
    return frontier is not None and any(all(a <= b for a, b in zip(f, size, strict=True))
                                        for f in frontier)


def _add_failed(frontier: list[tuple[int, int, int, int, int]],
                size: tuple[int, int, int, int, int]) -> None:
    frontier[:] = [f for f in frontier if not all(a <= b for a, b in zip(size, f, strict=True))]
    frontier.append(size)


def _fmt(k: str, v: float) -> str:
    if v == INF:
        return "unlimited"
    if k == "memory":
        from insitu._units import format_bytes

        return format_bytes(v)
    return f"{v / 1000:g}"
