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
  fewest non-restartable victims, then lowest priorities, then least GPU. A queue within its
  nominal quota may also reclaim from queues of its cohort that borrow, whatever their priority.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from insitu._units import parse_memory
from insitu.errors import NotFound, ResourceError
from insitu.scheduler._model import Decision, Placement, Request
from insitu.scheduler._state import ClusterState

RESOURCES = ("cpu", "memory", "gpu")
INF = float("inf")


def _amounts(q: Mapping[str, object] | None, *, default: float, what: str) -> dict[str, float]:
    out = dict.fromkeys(RESOURCES, default)
    for k, v in (q or {}).items():
        if k not in RESOURCES:
            raise ResourceError(f"{what}: unknown resource {k!r}",
                                hint=f"use {', '.join(RESOURCES)}")
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


def _demand(r: Request) -> dict[str, float]:
    return {"cpu": float(r.cpu_milli), "memory": float(r.memory), "gpu": float(r.total_gpu_milli)}


class QueueScheduler:
    """Queues in front of a :class:`ClusterState`. Not thread-safe; pure and deterministic."""

    def __init__(self, cluster: ClusterState, queues: Sequence[Queue]) -> None:
        self.cluster = cluster
        self.queues = {q.name: q for q in queues}
        self.nominal = {q.name: _amounts(q.quota, default=INF, what=f"queue {q.name!r} quota")
                        for q in queues}
        for q in queues:  # quota given for some resources only: the others are unlimited
            for r in RESOURCES:
                if r not in q.quota:
                    self.nominal[q.name][r] = INF
        self.borrow = {q.name: _amounts(q.borrowing_limit, default=INF,
                                        what=f"queue {q.name!r} borrowing_limit")
                       for q in queues}
        self.lend = {q.name: _amounts(q.lending_limit, default=INF,
                                      what=f"queue {q.name!r} lending_limit") for q in queues}
        self.usage = {q.name: dict.fromkeys(RESOURCES, 0.0) for q in queues}
        self.pending: list[Request] = []
        self.running: dict[str, Request] = {}
        self._seq = 0
        self._fresh: set[str] = set()
        self._freed = False
        self._order: dict[str, int] = {}
        self.total = {"cpu": float(cluster.cpu_cap.sum()), "memory": float(cluster.mem_cap.sum()),
                      "gpu": float(max(1, cluster.gpu_capacity))}

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

    def dominant_share(self, queue: str) -> float:
        u = self.usage[queue]
        return max(u[r] / self.total[r] for r in RESOURCES)

    def schedule(self) -> list[Decision]:
        """One pass over the pending work; a decision for each request it considered.

        When nothing finished since the last pass, work that already failed cannot fit now
        (the cluster only filled up), so only newly submitted work is considered.
        """
        units = self._units()
        if not self._freed:
            units = [u for u in units if any(r.name in self._fresh for r in u)]
        self._fresh.clear()
        self._freed = False
        by_queue: dict[str, list[list[Request]]] = {}
        for u in units:
            by_queue.setdefault(u[0].queue, []).append(u)
        for lst in by_queue.values():
            lst.sort(key=lambda u: (-u[0].priority, self._order[u[0].name]), reverse=True)
        out: list[Decision] = []
        failed: dict[tuple, str] = {}
        while by_queue:
            q = min(by_queue, key=lambda q: (-by_queue[q][-1][0].priority,
                                             self.dominant_share(q),
                                             self._order[by_queue[q][-1][0].name]))
            unit = by_queue[q].pop()
            if not by_queue[q]:
                del by_queue[q]
            key = _shape(unit)
            if key in failed:
                out.extend(Decision(request=r, reason=failed[key]) for r in unit)
                continue
            ds = self._try(unit)
            out.extend(ds)
            if not ds[0].placed and key is not None:
                failed[key] = ds[0].reason or ""
        self.pending = [r for r in self.pending if r.name not in self.running]
        return out

    # ------------------------------------------------------------------ internals
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
        d = _demand(r)
        for k in RESOURCES:
            self.usage[r.queue][k] += sign * d[k]

    def quota_problem(self, queue: str, demand: Mapping[str, float]) -> str | None:
        """Why ``demand`` more in ``queue`` would break its quota; ``None`` if it may run."""
        nom, use = self.nominal[queue], self.usage[queue]
        cohort = self.queues[queue].cohort
        for k in RESOURCES:
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

    def _try(self, unit: list[Request]) -> list[Decision]:
        head = unit[0]
        if head.gang is not None and len(unit) < head.gang_size:
            why = (f"gang {head.gang!r} has {len(unit)} of its {head.gang_size} members; it is "
                   "placed only when all are submitted")
            return [Decision(request=r, reason=why) for r in unit]
        total = dict.fromkeys(RESOURCES, 0.0)
        for r in unit:
            for k, v in _demand(r).items():
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
        if len(unit) == 1:
            pre = self._preempt(head)
            if pre is not None:
                return [pre]
        return decisions

    def _victim_ok(self, preemptor: Request, v: Request) -> bool:
        if v.priority < preemptor.priority:
            return True
        # reclaim: the preemptor's queue is within its nominal quota and v's queue borrows
        q, p = self.queues[preemptor.queue], self.queues[v.queue]
        if q.cohort is None or q.cohort != p.cohort or v.queue == preemptor.queue:
            return False
        if v.priority > preemptor.priority:
            return False
        d = _demand(preemptor)
        within = all(self.usage[preemptor.queue][k] + d[k] <= self.nominal[preemptor.queue][k]
                     for k in RESOURCES)
        borrowing = any(self.usage[v.queue][k] > self.nominal[v.queue][k] for k in RESOURCES)
        return within and borrowing

    def _preempt(self, req: Request) -> Decision | None:
        st = self.cluster
        smask = st.static_mask(req)
        by_node: dict[int, list[Request]] = {}
        for name, r in self.running.items():
            if self._victim_ok(req, r):
                by_node.setdefault(st.index[st.placements[name].node], []).append(r)
        best: tuple[tuple[int, int, int], int, list[Request]] | None = None
        for i in sorted(by_node):
            if not smask[i]:
                continue
            cands = sorted(by_node[i], key=lambda v: (not v.restartable, v.priority,
                                                      v.total_gpu_milli, self._order[v.name]))
            saved: list[tuple[Request, Placement]] = []
            chosen: list[Request] = []
            idx = np.array([i])
            for v in cands:
                saved.append((v, st.placements[v.name]))
                st.release(v.name)
                chosen.append(v)
                if st.fits(req, idx)[0]:
                    break
            fit = bool(st.fits(req, idx)[0])
            for _v, p in reversed(saved):
                st.reserve(p)
            if not fit:
                continue
            # keep only the victims needed (drop those whose release was not required)
            cost = (sum(not v.restartable for v in chosen), sum(v.priority for v in chosen),
                    sum(v.total_gpu_milli for v in chosen))
            if best is None or cost < best[0]:
                best = (cost, i, chosen)
        if best is None:
            return None
        _, i, victims = best
        for v in victims:
            self.finish(v.name)
            self.pending.append(v)  # evicted work waits again (restartable or not)
        d = st.place_on(req, i)
        if d.placement is None:  # pragma: no cover - the release above made room
            return d
        self.running[req.name] = req
        self._charge(req, +1)
        return Decision(request=req, placement=d.placement,
                        preempted=tuple(v.name for v in victims))


def _shape(unit: list[Request]) -> tuple | None:
    """Units with the same shape fail alike within one pass (no one frees anything meanwhile)."""
    r = unit[0]
    if len(unit) > 1 or r.inputs or r.spread is not None:
        return None
    return (r.queue, r.priority, r.cpu_milli, r.memory, r.gpu_count, r.gpu_milli, r.gpu_types,
            r.mig_profile, tuple(sorted(r.node_selector.items())),
            tuple(sorted(r.affinity.items())), r.tolerations, r.restartable)


def _fmt(k: str, v: float) -> str:
    if v == INF:
        return "unlimited"
    if k == "memory":
        from insitu._units import format_bytes

        return format_bytes(v)
    return f"{v / 1000:g}"
