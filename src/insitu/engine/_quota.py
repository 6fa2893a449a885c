"""Quota admission on real runs, shared by every engine through the database.

Contracts:

- A project with a quota (:class:`~insitu.store.QuotaRecord`) admits a ready task only
  through a *claim* (:class:`~insitu.store.ClaimRecord`) in the database. Every engine (one
  per run, whoever started it) registers its ready tasks' claims and runs *admission passes*
  inside one exclusive transaction (:meth:`~insitu.store.SQLStore.exclusive`), so two engines
  never admit against the same free quota. A project without a quota is not limited.
- A pass (:func:`decide`) is one :class:`~insitu.scheduler.QueueScheduler` pass: one queue
  per project with a quota, over a virtual cluster per cohort whose capacity is the sum of
  its projects' quotas (a project without a cohort has its own). Admitted claims are placed
  first (they run); waiting ones are considered by priority (the run's label ``priority``,
  higher first), then dominant-resource fairness between the projects of a cohort, then age.
  A project may borrow its cohort's idle quota within the limits; a project within its own
  quota reclaims borrowed capacity by preempting borrowing work, restartable work
  (retries > 0) first: the victims' claims become ``evicted``, their engines stop those
  attempts, which end as lost (no retry used up) and run again once admitted.
- A waiting claim's reason names the quota and by how much, e.g. ``project vision uses 4 of
  its 4 A100 and the step asks for 2 more; cohort research has 2 idle A100 it may borrow,
  limited to 1 by its lending limit``; it becomes the task's pending reason (``insitu why``).
- Admitted claims count until their attempt ends. Claims of runs that ended, or whose engine
  stopped beating for :data:`STALE_S`, are dropped by the next pass of any engine.
- A quota lowered below current use stops nothing that runs: new work waits until use is
  back under it (the API refuses such a change unless asked to ``force`` it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from insitu._units import format_bytes
from insitu.store import ClaimRecord, QuotaRecord

if TYPE_CHECKING:
    from insitu.engine._loop import RunLoop
    from insitu.engine._placement import Request

WAITING, ADMITTED, EVICTED = "waiting", "admitted", "evicted"
STALE_S = 30.0     # a claim whose run's engine has not beaten for this long is dropped
POLL_S = 0.5       # how often an engine with claims looks at the shared state
CHECK_S = 2.0      # how often an engine without claims looks whether its project got a quota
COHORT_LABEL = "insitu.dev/cohort"
ANY_GPU = "gpu"    # the model of a cohort node's devices for steps that name no quota's model
_BIG_CPU = 1_000_000.0         # cores: "no CPU quota" on a virtual cohort node
_BIG_MEMORY = 1 << 50         # bytes (1 PiB)
_BIG_GPUS = 64                 # devices per model for a cohort where some project has no limit


def use_of(claims: Iterable[ClaimRecord]) -> dict[str, float]:
    """What ``claims`` amount to, in a quota's units and keys: ``cpu`` cores, ``memory``
    bytes, ``gpu`` GPUs of any type, ``gpu:<TYPE>`` GPUs of one type."""
    use: dict[str, float] = {"cpu": 0.0, "memory": 0.0, "gpu": 0.0}
    for c in claims:
        use["cpu"] += c.cpu / 1000
        use["memory"] += c.memory
        use["gpu"] += c.gpu / 1000
        if c.gpu and c.gpu_type:
            use[f"gpu:{c.gpu_type}"] = use.get(f"gpu:{c.gpu_type}", 0.0) + c.gpu / 1000
    return use


def claim_name(c: ClaimRecord) -> str:
    return f"{c.run_id}/{c.task_id}"


def _group(q: QuotaRecord) -> str:
    return q.cohort if q.cohort else f"~{q.project}"


def _unit(k: str) -> str:
    return {"cpu": "CPU", "memory": "memory", "gpu": "GPU"}.get(k, k[4:])


def _amount(k: str, v: float) -> str:
    """Scheduler units (milli, bytes) as a user writes them."""
    if v == math.inf:
        return "unlimited"
    return format_bytes(int(v)) if k == "memory" else f"{v / 1000:g}"


def _cohort_node(group: str, quotas: list[QuotaRecord], running: list[ClaimRecord]) -> Any:
    """A virtual node holding a cohort's capacity: the sum of its projects' quotas (or, where
    running work already uses more, that much)."""
    from insitu.scheduler import Gpu, Node

    def total(key: str, big: float) -> float:
        vals = [q.quota.get(key) for q in quotas]
        return big if any(v is None for v in vals) else float(sum(float(v or 0) for v in vals))

    used_cpu = sum(c.cpu for c in running) / 1000
    used_mem = sum(c.memory for c in running)
    cpu = max(total("cpu", _BIG_CPU), used_cpu)
    memory = int(max(total("memory", _BIG_MEMORY), used_mem))
    models = sorted({k[4:] for q in quotas for k in q.quota if k.startswith("gpu:")}
                    | {c.gpu_type for c in running if c.gpu_type and c.gpu})
    gpus: list[Any] = []
    for m in models:
        want = total(f"gpu:{m}", _BIG_GPUS)
        used = sum(c.gpu for c in running if c.gpu_type == m) / 1000
        n = math.ceil(max(min(want, _BIG_GPUS), used))
        gpus += [Gpu(model=m) for _ in range(n)]
    # steps asking for no model, or one no quota names, go to devices of the model "gpu"
    anyn = total("gpu", _BIG_GPUS)
    used_any = sum(c.gpu for c in running if not c.gpu_type or c.gpu_type not in models) / 1000
    rest = math.ceil(max(min(anyn, _BIG_GPUS), used_any, 0))
    gpus += [Gpu(model=ANY_GPU) for _ in range(rest)]
    return Node(name=group, cpu=max(cpu, 0.001), memory=max(memory, 1), gpus=tuple(gpus),
                labels={COHORT_LABEL: group})


def _request(c: ClaimRecord, group: str, models: set[str]) -> Any:
    from insitu.scheduler import Request as SRequest

    typed: tuple[str, ...] = ()
    if c.gpu:
        typed = (c.gpu_type,) if c.gpu_type and c.gpu_type in models else (ANY_GPU,)
    return SRequest(name=claim_name(c), cpu=c.cpu / 1000, memory=c.memory, gpu=c.gpu / 1000,
                    gpu_types=typed, node_selector={COHORT_LABEL: group}, priority=c.priority,
                    queue=c.project, restartable=c.restartable)


def _queue(q: QuotaRecord) -> Any:
    from insitu.scheduler import Queue

    return Queue(name=q.project, quota=dict(q.quota), cohort=q.cohort,
                 borrowing_limit=dict(q.borrowing_limit) or None,
                 lending_limit=dict(q.lending_limit) or None)


def decide(quotas: Iterable[QuotaRecord], claims: Iterable[ClaimRecord]) -> list[ClaimRecord]:
    """One admission pass: the claims whose state or reason changed.

    Claims of projects without a quota are admitted as they are.
    """
    import dataclasses

    from insitu.scheduler import ClusterState, QueueScheduler

    by_project = {q.project: q for q in quotas}
    claims = list(claims)
    changed: list[ClaimRecord] = []
    free = [c for c in claims if c.project not in by_project]
    for c in free:
        if c.state == WAITING:
            changed.append(dataclasses.replace(c, state=ADMITTED, reason=None))
    mine = [c for c in claims if c.project in by_project]
    if not mine:
        return changed
    groups: dict[str, list[QuotaRecord]] = {}
    for q in by_project.values():
        groups.setdefault(_group(q), []).append(q)
    running = [c for c in mine if c.state != WAITING]
    nodes = [_cohort_node(g, qs, [c for c in running if _group(by_project[c.project]) == g])
             for g, qs in sorted(groups.items())]
    models = {g.model for n in nodes for g in n.gpus} - {ANY_GPU}
    sched = QueueScheduler(ClusterState(nodes), [_queue(q) for q in by_project.values()])
    for c in running:
        sched.admit_running(_request(c, _group(by_project[c.project]), models))
    waiting = [c for c in mine if c.state == WAITING]
    reqs = {claim_name(c): _request(c, _group(by_project[c.project]), models) for c in waiting}
    sched.submit(*reqs.values())
    decisions = {d.request.name: d for d in sched.schedule()}
    named = {claim_name(c): c for c in mine}
    for name, d in decisions.items():
        c = named[name]
        if d.placed:
            changed.append(dataclasses.replace(c, state=ADMITTED, reason=None, by=None))
            for v in d.preempted:
                victim = named[v]
                q = by_project[victim.project]
                why = (f"preempted: project {c.project} reclaims the capacity project "
                       f"{victim.project} borrowed in cohort {q.cohort}")
                changed.append(dataclasses.replace(victim, state=EVICTED, reason=why, by=name))
        else:
            why = explain(sched, by_project, c, reqs[name], d.reason)
            if why != c.reason:
                changed.append(dataclasses.replace(c, reason=why))
    return changed


def explain(sched: Any, quotas: Mapping[str, QuotaRecord], c: ClaimRecord, req: Any,
            fallback: str | None) -> str:
    """Why the claim waits, in words: which quota, and by how much."""
    from insitu.scheduler._queues import _demand

    p = c.project
    cohort = quotas[p].cohort
    demand = _demand(req, sched.resources)
    nom, use = sched.nominal[p], sched.usage[p]
    # a model's GPUs first: the most specific quota a step is over
    for k in sorted(sched.resources, key=lambda k: not k.startswith("gpu:")):
        if demand[k] <= 0 or use[k] + demand[k] <= nom[k]:
            continue
        u = _unit(k)
        head = (f"project {p} uses {_amount(k, use[k])} of its {_amount(k, nom[k])} {u} and "
                f"the step asks for {_amount(k, demand[k])} more")
        if cohort is None:
            return f"{head}; it is in no cohort, so it cannot borrow"
        borrowed_now = max(0.0, use[k] - nom[k])
        limit = sched.borrow[p][k]
        if use[k] + demand[k] - nom[k] > limit:
            return (f"{head}; it may borrow at most {_amount(k, limit)} {u} (its borrowing "
                    f"limit) and borrows {_amount(k, borrowed_now)}")
        idle = lendable = taken = 0.0
        limited = 0
        for o, q in quotas.items():
            if o == p or q.cohort != cohort:
                continue
            spare = max(0.0, sched.nominal[o][k] - sched.usage[o][k])
            idle += spare
            if sched.lend[o][k] < spare:
                limited += 1
            lendable += min(spare, sched.lend[o][k])
            taken += max(0.0, sched.usage[o][k] - sched.nominal[o][k])
        text = f"{head}; cohort {cohort} has {_amount(k, idle)} idle {u} it may borrow"
        if limited:
            text += (f", limited to {_amount(k, lendable)} by "
                     f"{'its' if limited == 1 else 'their'} lending limit")
        if taken + borrowed_now > 0:
            text += (f", of which {_amount(k, min(lendable, taken + borrowed_now))} "
                     "is already borrowed")
        return text
    if cohort is not None:
        return (f"project {p} is within its quota, but cohort {cohort}'s capacity is lent to "
                "other projects; it waits for that work to end or be reclaimed")
    return fallback or f"project {p} waits for its quota"


class QuotaGate:
    """One run's side of admission: its claims, and the passes it runs."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop
        self.store = loop.store
        self.run_id = loop.run_rec.id
        self.project = loop.run_rec.project
        labels = loop.run_rec.labels or {}
        try:
            self.priority = int(labels.get("priority") or 0)
        except (TypeError, ValueError):
            self.priority = 0
        self.supported = hasattr(self.store, "exclusive")
        self.mine: dict[str, ClaimRecord] = {}
        self.want: dict[str, Request] = {}
        self.preempted: dict[str, str] = {}    # attempt key -> why it was stopped
        self._active = False
        self._checked = 0.0
        self._passed = 0.0

    # -- whether this run's project is limited ------------------------------------------
    def active(self, now: float | None = None) -> bool:
        """Has this run's project a quota? (Looked up at most every :data:`CHECK_S`.)"""
        if not self.supported:
            return False
        now = time.time() if now is None else now
        if now - self._checked >= CHECK_S:
            self._checked = now
            self._active = bool(self.store.select(QuotaRecord, project=self.project))
        return self._active

    def waiting(self) -> bool:
        """Does a ready task of this run wait for its quota?"""
        return any(c.state == WAITING for c in self.mine.values())

    def blocked(self, tid: str) -> str | None:
        """Why ``tid`` may not start now (its claim waits), or None if it may."""
        c = self.mine.get(tid)
        if c is None:  # no claim: limited only if the project has a quota
            return "waiting for quota admission" if self._active else None
        if c.state == ADMITTED:
            return None
        return c.reason or "waiting for quota admission"

    # -- passes ------------------------------------------------------------------------
    def sync(self, want: Mapping[str, Request] | None = None, *, force: bool = False) -> None:
        """Register claims for ``want`` (ready task -> request), drop this run's waiting
        claims no longer wanted, then run a pass, unless one ran within :data:`POLL_S` and
        nothing new is asked."""
        now = time.time()
        if want is not None:
            self.want = dict(want)
        fresh = [t for t in self.want if t not in self.mine]
        if not force and not fresh and now - self._passed < POLL_S:
            return
        if not self.active(now) and not self.mine:
            return
        self._passed = now
        from insitu.store._states import RunState as R

        new = [ClaimRecord(run_id=self.run_id, task_id=tid, project=self.project,
                           state=WAITING, created_at=now, cpu=round(r.cpu * 1000),
                           memory=r.memory, gpu=round(r.gpu * 1000), gpu_type=r.gpu_type,
                           priority=self.priority, restartable=r.restartable)
               for tid, r in self.want.items() if tid not in self.mine and self._active]
        with self.store.exclusive() as tx:  # type: ignore[attr-defined]
            tx.put(*new)
            claims = tx.claims()
            runs = tx.runs(c.run_id for c in claims)
            gone = []
            busy = {r.task_id for r in self.loop.running.values()}
            for c in claims:
                state, beat = runs.get(c.run_id, (None, None))
                if c.run_id == self.run_id:
                    if c.task_id not in busy and (c.task_id not in self.want
                                                  or c.state == EVICTED):
                        # started and ended, served from the cache, ...; or evicted before
                        # it started (it claims again, waiting)
                        gone.append(c)
                elif state != R.RUNNING or beat is None or now - beat > STALE_S:
                    gone.append(c)
            tx.delete((c.run_id, c.task_id) for c in gone)
            dropped = {claim_name(c) for c in gone}
            claims = [c for c in claims if claim_name(c) not in dropped]
            changed = decide(tx.quotas(), claims)
            tx.put(*changed)
        latest = {claim_name(c): c for c in claims} | {claim_name(c): c for c in changed}
        self.mine = {c.task_id: c for c in latest.values() if c.run_id == self.run_id}
        self._evict()

    def _evict(self) -> None:
        """Stop this run's attempts whose claims were evicted (reclaimed by another
        project); they end as lost and wait again."""
        loop = self.loop
        for key, r in list(loop.running.items()):
            c = self.mine.get(r.task_id)
            if c is not None and c.state == EVICTED and key not in self.preempted:
                self.preempted[key] = c.reason or "preempted"
                loop.executor.cancel(key)

    def release(self, tid: str) -> None:
        """``tid``'s attempt ended: its claim no longer counts; run a pass so that others'
        waiting work is admitted now."""
        if self.mine.pop(tid, None) is None:
            return
        with self.store.exclusive() as tx:  # type: ignore[attr-defined]
            tx.delete([(self.run_id, tid)])
        self.want.pop(tid, None)
        self.sync(force=True)

    def close(self) -> None:
        """The run stops: drop all of its claims."""
        if not self.mine and not self.active():
            return
        with self.store.exclusive() as tx:  # type: ignore[attr-defined]
            tx.delete((c.run_id, c.task_id) for c in tx.claims(self.project)
                      if c.run_id == self.run_id)
        self.mine.clear()
        self.want.clear()


__all__ = ["ADMITTED", "EVICTED", "POLL_S", "STALE_S", "WAITING", "QuotaGate", "decide",
           "explain"]
