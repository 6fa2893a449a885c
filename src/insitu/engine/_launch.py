"""Launching: the queues of ready tasks, placement next to their data, and the attempts
that run. A launched attempt is recorded running (and flushed) before the executor
starts it."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from insitu.datasets import shards_in
from insitu.engine._locality import Busy
from insitu.engine._paths import log_path, metrics_path, result_path
from insitu.engine._placement import Placement, Request
from insitu.engine._status import STALE_AFTER_S
from insitu.executor import LaunchRequest
from insitu.store import AttemptRecord, TaskRecord
from insitu.store._states import AttemptState as A
from insitu.store._states import TaskState as T

if TYPE_CHECKING:
    from insitu.engine._loop import RunLoop


@dataclasses.dataclass
class Running:
    task_id: str
    attempt: AttemptRecord
    placement: Placement
    request: Request


class Launcher:
    """What is ready to run, per step, and what runs. Steps are offered the free resources
    by their ``priority`` (higher first), then in spec order."""

    def __init__(self, loop: RunLoop) -> None:
        self.loop = loop

        def priority(sid: str) -> int:
            return int((loop.steps[sid].get("constraints") or {}).get("priority") or 0)

        # tasks whose inputs are ready, per step (by priority, then spec order), waiting for
        # resources
        order = sorted(loop.order, key=lambda sid: -priority(sid))  # stable: spec order on ties
        self.ready: dict[str, collections.deque[str]] = {sid: collections.deque()
                                                         for sid in order}
        self.ready_set: set[str] = set()
        self.waiting_on_others = False  # ready work waits for what other engines hold
        self.fresh: list[str] = []          # made ready since the last cache lookup
        self.running_per_step: dict[str, int] = {}
        self.requests: dict[str, Request] = {}

    def queued(self, tid: str) -> bool:
        return tid in self.ready_set

    def make_ready(self, tid: str) -> None:
        loop = self.loop
        if tid not in self.ready_set:
            t = loop.tasks[tid]
            if t.ready_at is None:
                loop.move(tid, ready_at=time.time())
            self.ready[t.step_id].append(tid)
            self.ready_set.add(tid)
            if tid not in loop.args_cache:
                self.fresh.append(tid)

    def launch_ready(self, now: float) -> None:
        self.waiting_on_others = False
        if not self.ready_set:
            return
        loop = self.loop
        if self.fresh:
            fresh, self.fresh = self.fresh, []
            for tid in fresh:
                if tid not in loop.args_cache:
                    loop.args_for(loop.tasks[tid])
            loop.lookup_cache([tid for tid in fresh if loop.tasks[tid].state == T.PENDING])
        quota = loop.quota
        if quota.active(now) or quota.mine:  # register the ready tasks' claims, admit
            want = {}
            for sid, queue in self.ready.items():
                if loop.failing and sid != loop.exit_step:
                    continue
                base = self.requests.get(sid) or loop.resources(loop.steps[sid], loop.params)
                self.requests[sid] = base
                claim = gang_claim(base, loop.steps[sid])
                mp = (loop.steps[sid].get("map") or {}).get("max_parallel")
                room = len(queue) if mp is None else mp - self.running_per_step.get(sid, 0)
                pending = [tid for tid in queue if loop.tasks[tid].state == T.PENDING]
                # only what could start now claims quota (a map's items past max_parallel
                # would hold quota they cannot use)
                want.update({tid: claim for tid in pending[:max(0, room)]})
            quota.sync(want)
        with self._shared_nodes(now) as shared:
            launches: list[LaunchRequest] = []
            loop.locality.new_pass()
            for sid, queue in self.ready.items():
                if not queue or (loop.failing and sid != loop.exit_step):
                    continue
                launches += self._launch_step(sid, queue, now)
            if launches:  # the attempts are recorded as running before they start
                if shared is not None:  # in the transaction that saw the others
                    shared.upsert(*loop.dirty)
                    loop.dirty = []
                else:
                    loop.flush()
        # ready work that other engines' attempts keep out: look again soon
        self.waiting_on_others = bool(self.ready_set) and loop.placer.others_hold()
        for lr in launches:
            loop.executor.launch(lr)

    @contextlib.contextmanager
    def _shared_nodes(self, now: float) -> Iterator[Any]:
        """The nodes are shared with every other engine of this store (runs started from
        two terminals, or by a server): a pass places its attempts around what the others
        run, and records them, in one exclusive transaction, so that no two engines hand
        out the same CPU, memory or GPU. A store without transactions: this engine alone."""
        loop = self.loop
        if not hasattr(loop.store, "exclusive"):
            yield None
            return
        with loop.store.exclusive() as tx:
            loop.placer.set_others(tx.running_elsewhere(loop.run_id, now - STALE_AFTER_S))
            yield tx

    def _launch_step(self, sid: str, queue: collections.deque[str], now: float
                     ) -> list[LaunchRequest]:
        """Launch what fits of one step's ready queue, in order.

        Two passes: first every task that can run next to its data (or reads none), so a
        node with room serves the tasks whose data it holds before others'; then the
        tasks whose holders are all busy, each of which waits for a holder or moves its
        data (:class:`WaitOrMove`). Tasks left waiting keep their place at the front.
        """
        loop = self.loop
        placer = loop.placer
        step = loop.steps[sid]
        mp = (step.get("map") or {}).get("max_parallel")
        base = self.requests.get(sid) or loop.resources(step, loop.params)
        self.requests[sid] = base
        launches: list[LaunchRequest] = []
        deferred: list[tuple[str, Request]] = []  # their holders are busy
        full = False
        workers = int((step.get("train") or {}).get("workers") or 1)

        def place(tid: str, req: Request) -> Placement | None:
            t = loop.tasks[tid]
            over = loop.quota.blocked(tid)
            if over is not None:  # its project's quota: wait, and say which and by how much
                if t.pending_reason != over:
                    loop.move(tid, pending_reason=over)
                return None
            name = f"{t.run_id}/{tid}/{t.attempts + 1}"
            placement = placer.place_gang(req, workers, name) if workers > 1 else \
                placer.place(req, name)
            if isinstance(placement, str):  # nothing fits now: say why, once
                if t.pending_reason != placement:
                    loop.move(tid, pending_reason=placement)
                return None
            return placement

        def launch(tid: str, req: Request, placement: Placement) -> None:
            loop.locality.placed(tid)
            self.ready_set.discard(tid)
            launches.append(self._start_attempt(loop.tasks[tid], step, req, placement, now))

        def capped() -> bool:
            return mp is not None and self.running_per_step.get(sid, 0) >= mp

        while queue and not full:
            tid = queue[0]
            t = loop.tasks[tid]
            if t.state != T.PENDING:  # e.g. served from the cache meanwhile
                queue.popleft()
                self.ready_set.discard(tid)
                continue
            if t.map_index is not None and capped():
                break
            req = base
            inputs = data_inputs(loop.args_for(t)[0])
            if inputs:  # place it next to what it reads
                req = dataclasses.replace(base, inputs=inputs)
            placement = place(tid, req)
            if placement is None:
                full = True
                break
            queue.popleft()
            if inputs and not placer.nearest(placement.node, inputs):
                placer.release(placement)  # a holder may have room later in this pass
                deferred.append((tid, req))
                continue
            launch(tid, req, placement)
        waiting: list[str] = []
        for tid, req in deferred:
            placement = None if full or capped() else place(tid, req)
            if placement is None:
                full = True
                waiting.append(tid)
                continue
            why = loop.locality.decide(tid, req, placement, self.busy(now), now)
            if why is not None:  # better to wait for the data's node than to move it
                placer.release(placement)
                if loop.tasks[tid].pending_reason != why:
                    loop.move(tid, pending_reason=why)
                waiting.append(tid)
                continue
            launch(tid, req, placement)
        queue.extendleft(reversed(waiting))
        return launches

    def busy(self, now: float) -> list[Busy]:
        loop = self.loop
        return [Busy(r.placement.node, loop.tasks[r.task_id].step_id,
                     r.attempt.started_at or now) for r in loop.running.values()]

    def _start_attempt(self, t: TaskRecord, step: dict[str, Any], req: Request,
                       placement: Placement, now: float) -> LaunchRequest:
        loop = self.loop
        cfg = loop.cfg
        args, key = loop.args_for(t)
        n = t.attempts + 1
        att = AttemptRecord(run_id=t.run_id, task_id=t.id, number=n, state=A.RUNNING,
                            node=placement.node, started_at=now, placement=placement.as_dict())
        loop.record(att)
        loop.move(t.id, T.RUNNING, attempts=n, cache_key=key, node=placement.node,
                  started_at=t.started_at or now, resources=dataclasses.asdict(req),
                  not_before=None, pending_reason=None)
        lkey = f"{t.id}#{n}"
        loop.running[lkey] = Running(t.id, att, placement, req)
        self.running_per_step[t.step_id] = self.running_per_step.get(t.step_id, 0) + 1
        rp = result_path(cfg, t.run_id, t.id, n)
        return LaunchRequest(
            key=lkey, run_id=t.run_id, task_id=t.id, attempt=n, step=t.step_id,
            function=step["function"], args=args, env=step.get("env") or {},
            node=placement.node, gpu_ids=placement.gpu_ids, memory_limit=req.memory,
            timeout=step.get("timeout"), result_path=str(rp),
            stdout_path=str(log_path(cfg, t.run_id, t.id, n, "out")),
            stderr_path=str(log_path(cfg, t.run_id, t.id, n, "err")),
            artifacts_url=loop.artifacts.url,
            materialize_dir=str(cfg.home / "materialized"),
            metrics_path=str(metrics_path(cfg, t.run_id, t.id, n)),
            trial=loop.tuner(t.step_id).trial_info(t.id) if step.get("tune") else None,
            ranks=tuple({"rank": i, "node": p.node, "gpu_ids": p.gpu_ids}
                        for i, p in enumerate(placement.ranks)),
            collective_timeout=(step.get("train") or {}).get("collective_timeout"))

    def finished(self, key: str) -> Running | None:
        """The attempt ``key`` ended: free its place. None if it is not known (any more)."""
        loop = self.loop
        r = loop.running.pop(key, None)
        if r is None:
            return None
        loop.placer.release(r.placement)
        self.running_per_step[loop.tasks[r.task_id].step_id] -= 1
        loop.quota.release(r.task_id)
        return r

    def forget_dead_nodes(self) -> None:
        """After an attempt was lost with its worker, drop nodes the executor no longer has,
        so that its retry goes to a node that is alive."""
        loop = self.loop
        alive = {n.name for n in loop.executor.nodes()}
        gone = loop.placer.names() - alive
        if not gone or not alive:
            return
        keys = list(loop.running)
        kept = loop.placer.drop_nodes(gone, [(loop.running[k].request, loop.running[k].placement)
                                             for k in keys])
        for i, k in enumerate(keys):
            if i in kept:
                loop.running[k].placement = kept[i]


def gang_claim(req: Request, step: dict[str, Any]) -> Request:
    """What a step claims of its project's quota: a distributed step, all its workers."""
    n = int((step.get("train") or {}).get("workers") or 1)
    if n == 1:
        return req
    return dataclasses.replace(req, cpu=req.cpu * n, memory=req.memory * n, gpu=req.gpu * n)


def data_inputs(args: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """(data id, bytes) of the shards and stored artifacts a task's arguments read."""
    out: dict[str, int] = {}

    def walk(c: Any) -> None:
        if not isinstance(c, dict):
            return
        if "value" in c:
            for s in shards_in(c["value"]):
                out[f"{s['dataset']}/{s['shard']}"] = int(s.get("size", 0))
        elif "ref" in c:
            ref = c["ref"]
            refs = ref["items"] if ref.get("kind") == "list" else \
                list(ref["items"].values()) if ref.get("kind") == "dict" else [ref]
            for r in refs:
                if r.get("kind") == "blob":
                    out[f"artifact/{r['digest']}"] = int(r.get("size", 0))
        for key in ("list",):
            for x in c.get(key, []):
                walk(x)
        for x in c.get("dict", {}).values():
            walk(x)

    for c in args.values():
        walk(c)
    return tuple(sorted(out.items()))
