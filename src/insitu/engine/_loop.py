"""The run loop: gather events, apply the rules, carry out their effects.

Rules it keeps (see DESIGN.md):
- every state change of a run, task or attempt goes through :meth:`RunLoop.apply`
  (tasks) or ``_moves.move`` (runs, attempts), which check the table of allowed moves,
  and is written to the store *before* it is acted on (an attempt is recorded as
  running before it is launched);
- killing the engine at any instant and resuming loses no finished work and runs no
  finished step again (a finished attempt's result file is adopted);
- a failed task stops new launches; running attempts finish and are recorded; the exit
  handler, if any, then runs with the final status;
- a signal (Ctrl-C, SIGTERM) only sets a flag (``stop``); the loop sees it between two
  steps of its own and cancels the run.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from insitu.artifacts import digests_of
from insitu.datasets import shards_in
from insitu.datasets._registry import holders, with_cached_copy
from insitu.engine import _moves, _outcome, _rules
from insitu.engine._cache import carry_over
from insitu.engine._launch import Launcher
from insitu.engine._locality import WaitOrMove
from insitu.engine._paths import metrics_path, result_path
from insitu.engine._placement import Placer, Request
from insitu.engine._quota import POLL_S, QuotaGate
from insitu.engine._refs import cache_key, concretize, condition_steps, evaluate, upstream_steps
from insitu.engine._tuning import TuneController
from insitu.errors import InternalError
from insitu.executor import AttemptExit, read_result
from insitu.store import (
    AttemptRecord,
    CacheEntry,
    DataReadRecord,
    Record,
    RunRecord,
    TaskRecord,
)
from insitu.store._states import RUN_TERMINAL, TASK_DONE, TASK_TERMINAL
from insitu.store._states import AttemptState as A
from insitu.store._states import ErrorKind as K
from insitu.store._states import RunState as R
from insitu.store._states import TaskState as T

if TYPE_CHECKING:
    from insitu.engine._engine import Engine
    from insitu.engine._launch import Running

HEARTBEAT_S = 1.0
DRAIN_S = 30.0  # how long a cancelled run waits for its attempts to report their end


class RunLoop:
    """The state of one run while the engine drives it."""

    def __init__(self, engine: Engine, run: RunRecord, *,
                 resources: Callable[[dict[str, Any], dict[str, Any]], Request],
                 stop: Callable[[], bool] = lambda: False, reopen: bool = True) -> None:
        self.engine = engine
        self.reopen = reopen  # run an ended run again (resume); False: leave it ended
        self.resources = resources  # a step's request, from its spec and the run's params
        self.store = engine.store
        self.executor = engine.executor
        self.artifacts = engine.artifacts
        self.cfg = engine.config
        self.stop_requested = stop
        self.run_rec = run
        self.spec = run.spec
        self.params = run.params
        self.steps = {s["id"]: s for s in self.spec["steps"]}
        self.order = [s["id"] for s in self.spec["steps"]]
        self.exit_step = next((s["id"] for s in self.spec["steps"] if s.get("exit_handler")),
                              None)
        self.deps: dict[str, set[str]] = {}
        for s in self.spec["steps"]:
            d: set[str] = set()
            for ref in s["args"].values():
                d |= upstream_steps(ref)
            if s.get("map"):
                d |= upstream_steps(s["map"]["over"])
            d |= condition_steps(s.get("when"))
            self.deps[s["id"]] = d
        self.tasks: dict[str, TaskRecord] = {}
        self.running: dict[str, Running] = {}
        self.backoff: list[tuple[float, str]] = []  # (not_before, task) heap of retries
        self.args_cache: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.items: dict[str, list[str]] = {}
        self.items_left: dict[str, int] = {}   # per map: items not yet done
        self.tuners: dict[str, TuneController] = {}
        self.failing = False
        self.cancelling = False
        self.dirty: list[Record] = []
        self.placer = Placer(self.executor.nodes())
        # where the spec's dataset shards live now: replicas and copies cached since
        for shard_id, nodes in holders(self.store, shards_in(self.spec)).items():
            for node in nodes:
                self.placer.note_data(shard_id, node)
        self.locality = WaitOrMove(self.placer)
        self.launcher = Launcher(self)
        self.quota = QuotaGate(self)
        self._last_beat = 0.0
        self.started = time.time()
        self.cache_hits = 0
        self.changes = 0

    # -- the one point where task states change -------------------------------------------
    @property
    def run_id(self) -> str:
        return self.run_rec.id

    @property
    def stopping(self) -> bool:
        return self.failing or self.cancelling

    def move(self, tid: str, to: T | None = None, **changes: Any) -> TaskRecord:
        """Change a task (its state checked against the table); written at the next flush,
        which comes before anything acts on it."""
        t = _moves.move(self.tasks[tid], to, **changes)
        self.changes += 1
        self.tasks[tid] = t
        self.dirty.append(t)
        return t

    def stop_launching(self) -> None:
        """A task failed for good: launch nothing new but the exit handler."""
        self.failing = True

    def add_task(self, t: TaskRecord) -> None:
        """A new task (a map's item, a study's trial), recorded pending."""
        assert t.id not in self.tasks and t.state == T.PENDING
        self.changes += 1
        self.tasks[t.id] = t
        self.dirty.append(t)

    def record(self, *recs: Record) -> None:
        """Records that are not state changes (trials, metrics, cache entries)."""
        self.dirty.extend(recs)

    def _end_attempt(self, a: AttemptRecord, to: A, **changes: Any) -> AttemptRecord:
        a = _moves.move(a, to, **changes)
        self.dirty.append(a)
        return a

    def _set_run(self, to: R | None = None, **changes: Any) -> None:
        self.run_rec = _moves.move(self.run_rec, to, **changes)
        self.dirty.append(self.run_rec)

    def flush(self) -> None:
        if self.dirty:
            self.store.put(*self.dirty)
            self.dirty = []

    def apply(self, effects: list[_rules.Effect]) -> None:
        """Carry out the rules' effects, in order."""
        for e in effects:
            if isinstance(e, _rules.Move):
                self.move(e.task, e.to, **e.changes)
            elif isinstance(e, _rules.Succeed):
                self._succeed(e.task, e.output, e.at)
            elif isinstance(e, _rules.Retry):
                self.move(e.task, T.PENDING, error=e.error, not_before=e.at)
                heapq.heappush(self.backoff, (e.at, e.task))
            elif isinstance(e, _rules.StopLaunching):
                self.stop_launching()
            elif isinstance(e, _rules.EndAttempt):
                self._end_attempt(e.attempt, e.to, **e.changes)
            elif isinstance(e, _rules.MakeReady):
                self.make_ready(e.task)
            elif isinstance(e, _rules.StartTuner):
                self.tuner(e.step)
            elif isinstance(e, _rules.Tell):
                raise AssertionError("Tell is carried out by _handle_exit")

    # -- lifecycle ----------------------------------------------------------------------
    def run(self) -> RunRecord:
        run = self.run_rec
        if run.state == R.SUCCEEDED or (run.state in RUN_TERMINAL and not self.reopen):
            return run
        for t in self.store.list_tasks(run.id):
            self.tasks[t.id] = t
            if t.map_index is not None:
                self.items.setdefault(t.step_id, []).append(t.id)
        self._recover()
        self.quota.close()  # claims a stopped engine of this run left behind
        if not self._start():
            return self.run_rec
        for d in ("logs", "results", "metrics"):
            (self.cfg.run_dir(run.id) / d).mkdir(parents=True, exist_ok=True)
        self.executor.prepare([s["function"] for s in self.spec["steps"]])
        try:
            self._drive()
        except KeyboardInterrupt:  # raised by code other than ours (our handler sets a flag)
            self.cancelling = True
            self._drain()
        except BaseException:
            self._drain()
            raise
        finally:
            self.quota.close()
        return self._finish()

    def _start(self) -> bool:
        """Mark the run running, guarded against a cancel that came since it was read: a
        run cancelled meanwhile is left ended (False); a cancel asked before is kept."""
        for _ in range(100):
            seen = self.run_rec
            ended = seen.state in RUN_TERMINAL
            asked = seen.cancel_requested and not ended  # an ended run's request is over
            now = time.time()
            self._set_run(R.RUNNING, started_at=seen.started_at or now, ended_at=None,
                          engine_pid=os.getpid(), engine_host=socket.gethostname(),
                          heartbeat_at=now, cancel_requested=asked, error=None)
            if self.store.put_if(seen.id, _moves.unchanged(seen), *self.dirty):
                self.dirty = []
                self.cancelling = self.cancelling or asked
                return True
            self.dirty = [r for r in self.dirty if not isinstance(r, RunRecord)]
            self.run_rec = self.store.get_run(seen.id)
            if self.run_rec.state in RUN_TERMINAL and not ended:
                return False  # cancelled before it started
        raise InternalError(f"run {self.run_rec.id} kept changing while its engine started")

    def _drive(self) -> None:
        while True:
            if self.stop_requested():
                self.cancelling = True
            if self.cancelling:
                self._drain()
                return
            before = -1
            while before != self.changes:  # until scheduling settles
                before = self.changes
                self._schedule()
            self.flush()
            self._notify()
            if not self.running and not self._waiting():
                return
            exits = self.executor.poll(self._poll_timeout())
            for ex in exits:  # recorded by the flush at the top of the loop, before acting
                self._handle_exit(ex)
            if self.quota.mine:  # others' passes may have admitted or evicted our work
                self.quota.sync()
            self._beat()

    def _drain(self) -> None:
        """Stop every running attempt and record how each ended."""
        for key in list(self.running):
            self.executor.cancel(key)
        deadline = time.time() + DRAIN_S
        while self.running and time.time() < deadline:
            for ex in self.executor.poll(0.5):
                self._handle_exit(ex, cancelled=True)
            self.flush()
        for key in list(self.running):  # never reported: lost with the executor
            now = time.time()
            self._handle_exit(AttemptExit(key=key, pid=None, exit_code=None, signal=None,
                                          peak_memory=None, cpu_time=None, started_at=now,
                                          ended_at=now, cancelled=True), cancelled=True)
        self.flush()

    def _finish(self) -> RunRecord:
        now = time.time()
        failed = [t.id for t in self.tasks.values() if t.state == T.FAILED]
        if self.cancelling:
            state = R.CANCELLED
            for t in list(self.tasks.values()):
                if t.state in (T.PENDING, T.RUNNING):
                    self.move(t.id, T.CANCELLED, ended_at=now)
        elif failed:
            state = R.FAILED
        else:
            state = R.SUCCEEDED
        self._set_run(state, ended_at=now, heartbeat_at=now,
                      error={"failed_steps": failed} if failed else None)
        self.flush()
        self._notify()
        return self.run_rec

    def _notify(self) -> None:
        if self.engine.progress is not None:
            self.engine.progress(self)

    def _beat(self) -> None:
        now = time.time()
        if now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        fresh = self.store.get_run(self.run_rec.id)
        if fresh.cancel_requested:
            self.cancelling = True
        self._set_run(heartbeat_at=now, cancel_requested=fresh.cancel_requested)
        if self.store.put_if(fresh.id, {"cancel_requested": fresh.cancel_requested},
                             *self.dirty):
            self.dirty = []
        else:  # a cancel asked between the read and the write: keep it
            self.cancelling = True
            self._set_run(cancel_requested=True)
            self.flush()

    def _poll_timeout(self) -> float:
        if self.quota.mine or self.launcher.waiting_on_others:  # decided by others: look soon
            wait = POLL_S
            if self.backoff and not self.failing:
                wait = min(wait, max(0.0, self.backoff[0][0] - time.time()))
            return wait
        if self.backoff and not self.failing:
            return max(0.0, min(self.backoff[0][0] - time.time(), HEARTBEAT_S))
        if self.locality.since:  # a task waits for its data's node: look again soon
            return 0.2
        return HEARTBEAT_S if self.running else 0.0

    def _waiting(self) -> bool:
        """Is some task waiting for its retry backoff, its project's quota, or room that
        other engines' attempts hold?"""
        return (bool(self.backoff) or self.quota.waiting() or self.launcher.waiting_on_others) \
            and not self.stopping

    # -- recovery -------------------------------------------------------------------------
    def _adoptable(self, a: AttemptRecord) -> dict[str, Any] | None:
        res = read_result(str(result_path(self.cfg, a.run_id, a.task_id, a.number)))
        out = res.get("output") if res and res.get("ok") else None
        if out is not None and all(self.artifacts.exists(d) for d in digests_of(out)):
            return dict(out)
        return None

    def _recover(self) -> None:
        """Make a run resumable (rule :func:`~insitu.engine._rules.on_resume`)."""
        attempts = self.store.list_attempts(self.run_rec.id)
        for a in attempts:
            if a.state == A.RUNNING:
                self._ingest(a)  # what it logged before the engine stopped
        self.apply(_rules.on_resume(_rules.Recovery(
            tasks=list(self.tasks.values()), attempts=attempts, adoptable=self._adoptable,
            exit_step=self.exit_step, tuned=frozenset(s for s, spec in self.steps.items()
                                                      if spec.get("tune")),
            now=time.time())))

    # -- scheduling -----------------------------------------------------------------------
    def _outputs(self, step_id: str) -> dict[str, Any]:
        out = self.tasks[step_id].output
        assert out is not None, step_id
        return out

    def _value_of(self, ref: dict[str, Any]) -> Any:
        c = concretize(ref, self.params, self._outputs)
        from insitu.executor._worker import resolve

        return resolve(c, self.artifacts, str(self.cfg.home / "materialized"))

    def _status(self) -> dict[str, Any]:
        failed = [t.id for t in self.tasks.values() if t.state == T.FAILED]
        return {"run_id": self.run_rec.id, "pipeline": self.spec["name"],
                "state": R.FAILED.value if failed else R.SUCCEEDED.value,
                "failed_steps": failed}

    def _schedule(self) -> None:
        now = time.time()
        for sid in self.order:
            t = self.tasks[sid]
            if t.state != T.PENDING or self.launcher.queued(sid) or t.not_before is not None:
                continue  # not pending, already queued, or waiting in the retry backoff
            if sid == self.exit_step:
                if _rules.exit_handler_due([self.tasks[o].state for o in self.order if o != sid],
                                           failing=self.failing, cancelling=self.cancelling,
                                           running=bool(self.running)):
                    self.make_ready(sid)
                continue
            step = self.steps[sid]

            def condition(step: dict[str, Any] = step) -> bool:
                return evaluate(step.get("when"), self._value_of)

            decision = _rules.on_inputs(
                [self.tasks[d].state for d in self.deps[sid]], condition=condition,
                is_map=bool(step.get("map")), is_tune=bool(step.get("tune")),
                stopping=self.stopping)
            if decision == _rules.SKIP:
                self.move(sid, T.SKIPPED, ended_at=now)
            elif decision == _rules.TUNE:  # map_size: the budget, so progress counts to it
                self.move(sid, T.RUNNING, started_at=t.started_at or now,
                          map_size=self.tuner(sid).budget)
            elif decision == _rules.EXPAND:
                self._expand(sid, now)
            elif decision == _rules.READY:
                self.make_ready(sid)
        for tuner in self.tuners.values():
            if self.tasks[tuner.sid].state == T.RUNNING:
                tuner.fill(now)
        while self.backoff and self.backoff[0][0] <= now:
            self.make_ready(heapq.heappop(self.backoff)[1])
        if not self.cancelling:
            self.launcher.launch_ready(now)

    def _expand(self, sid: str, now: float) -> None:
        step = self.steps[sid]
        over = concretize(step["map"]["over"], self.params, self._outputs)
        if "value" in over:
            values = over["value"]
            n = len(values) if isinstance(values, list) else -1
        elif "ref" in over and over["ref"].get("kind") == "list" and not over.get("path"):
            n = len(over["ref"]["items"])
        else:
            values = self._value_of(step["map"]["over"])
            n = len(values) if isinstance(values, list | tuple) else -1
        if n < 0:
            self.move(sid, T.FAILED, ended_at=now, error={
                "kind": K.USER.value,
                "message": f"step '{sid}' maps over a value that is not a list",
                "hint": "map over a list (or a step output that is a list)"})
            self.failing = True
            return
        seq0 = max(t.seq for t in self.tasks.values()) + 1
        ids = []
        for i in range(n):
            tid = f"{sid}[{i}]"
            ids.append(tid)
            if tid not in self.tasks:
                self.add_task(TaskRecord(run_id=self.run_rec.id, id=tid, step_id=sid,
                                         state=T.PENDING, seq=seq0 + i, map_index=i))
        self.items[sid] = ids
        if n == 0:
            self.move(sid, T.SUCCEEDED, map_size=0, started_at=now, ended_at=now,
                      output={"kind": "list", "items": []})
            return
        self.move(sid, T.RUNNING, map_size=n, started_at=now)
        for tid in ids:
            self.make_ready(tid)

    def tuner(self, sid: str) -> TuneController:
        if sid not in self.tuners:
            self.tuners[sid] = TuneController(self, sid)
        return self.tuners[sid]

    def items_of(self, sid: str) -> list[str]:
        return self.items.setdefault(sid, [])

    def make_ready(self, tid: str) -> None:
        self.launcher.make_ready(tid)

    def args_for(self, t: TaskRecord) -> tuple[dict[str, Any], str | None]:
        if t.id in self.args_cache:
            return self.args_cache[t.id]
        step = self.steps[t.step_id]
        status = self._status() if t.step_id == self.exit_step else None
        args = {k: concretize(r, self.params, self._outputs, status)
                for k, r in step["args"].items()}
        if t.map_index is not None and step.get("tune"):
            for k, v in self.tuner(t.step_id).params(t.id).items():
                args[k] = {"value": v}
        elif t.map_index is not None:
            args[step["map"]["arg"]] = self._item_arg(step, t.map_index)
        use_cache = step["cache"] and not self.run_rec.no_cache and t.step_id != self.exit_step
        key = cache_key(step, args) if use_cache else None
        self.args_cache[t.id] = (args, key)
        return args, key

    def _item_arg(self, step: dict[str, Any], i: int) -> dict[str, Any]:
        over = concretize(step["map"]["over"], self.params, self._outputs)
        if "value" in over:
            return {"value": over["value"][i]}
        ref = over["ref"]
        if ref.get("kind") == "list" and not over.get("path"):
            item = ref["items"][i]
            return {"value": item["value"]} if item.get("kind") == "inline" else {"ref": item}
        return {"ref": ref, "path": [*over.get("path", []), i]}

    def lookup_cache(self, tids: list[str]) -> list[str]:
        """Serve cache hits among ``tids``; return those that must run."""
        if not tids:
            return []
        keys = {tid: self.args_for(self.tasks[tid])[1] for tid in tids}
        wanted = [k for k in keys.values() if k]
        if not wanted:
            return tids
        entries = self.store.get_cache(wanted)
        stale: list[str] = []
        rest = []
        now = time.time()
        hits: list[tuple[str, CacheEntry]] = []
        for tid in tids:
            k = keys[tid]
            e = entries.get(k) if k else None
            if e is not None and all(self.artifacts.exists(d) for d in digests_of(e.output)):
                hits.append((tid, e))
            else:
                if e is not None:
                    stale.append(e.key)
                rest.append(tid)
        logged = carry_over(self.store, self.run_id, hits)
        for copies in logged.values():
            self.record(*copies)
        for tid, e in hits:
            self.move(tid, T.CACHED, cache_key=e.key, output=e.output, started_at=now,
                      ended_at=now, error=None, cached_from=f"{e.run_id}/{e.task_id}")
            self.cache_hits += 1
            self._after_done(tid, now)
            tuner = self.tuners.get(self.tasks[tid].step_id)
            if tuner is not None:
                tuner.succeeded(tid, e.output, logged.get(tid, []))
                tuner.maybe_finish(now)
        if stale:
            self.store.delete_cache(stale)
        return rest

    # -- outcomes -----------------------------------------------------------------------
    def _handle_exit(self, ex: AttemptExit, *, cancelled: bool = False) -> None:
        r = self.launcher.finished(ex.key)
        if r is None:
            return
        t = self.tasks[r.task_id]
        step = self.steps[t.step_id]
        if cancelled and not ex.cancelled and (ex.result is None or not ex.result.get("ok")):
            ex = dataclasses.replace(ex, cancelled=True)
        err = _outcome.classify(ex, memory_limit=r.request.memory, timeout=step.get("timeout"))
        why = self.quota.preempted.pop(ex.key, None)
        if why is not None and not cancelled and (err or {}).get("kind") == K.CANCELLED:
            # its borrowed capacity was reclaimed: it runs again (no retry used up)
            err = {"kind": K.LOST.value, "message": why, "preempted": True}
        enforcement = getattr(ex, "memory_enforcement", None)
        att = self._end_attempt(
            r.attempt, _rules.attempt_state(err), pid=ex.pid, ended_at=ex.ended_at,
            started_at=ex.started_at if ex.pid else r.attempt.started_at,
            exit_code=ex.exit_code, peak_memory=ex.peak_memory, cpu_time=ex.cpu_time,
            error=err, node=ex.node or r.attempt.node,
            limits={"memory": r.request.memory, "enforcement": enforcement},
            placement=_outcome.with_ranks(r.attempt.placement, ex))
        if err and err["kind"] == K.LOST and ex.pid is None:
            self.launcher.forget_dead_nodes()
        logged = self._ingest(att)
        history: list[AttemptRecord] = []
        if err is not None and err["kind"] not in (K.CANCELLED, K.PRUNED):
            self.flush()  # the budget is counted from the stored attempts
            history = self.store.list_attempts(self.run_id, t.id)
        elif err is None:
            self.locality.finished(t.step_id, ex.ended_at - (att.started_at or ex.ended_at))
        tuner = self.tuners.get(t.step_id)
        effects = _rules.on_exit(_rules.Exit(
            task=t, error=err, output=ex.result["output"] if err is None and ex.result else None,
            at=ex.ended_at, retry=step["retries"], history=history, tuned=tuner is not None,
            cancelling=self.cancelling, now=time.time(),
            restarts=(step.get("train") or {}).get("max_restarts")))
        self.apply([e for e in effects if not isinstance(e, _rules.Tell)])
        for e in effects:
            if isinstance(e, _rules.Tell) and tuner is not None:
                if e.verdict == "succeeded":
                    tuner.succeeded(t.id, ex.result["output"] if ex.result else {}, logged)
                elif e.verdict == "pruned":
                    tuner.pruned(t.id, logged)
                else:
                    tuner.trial_failed(t.id, e.error or {})
                tuner.maybe_finish(ex.ended_at)

    def _ingest(self, a: AttemptRecord) -> list[Record]:
        """Move what the attempt logged (metrics, params, artifacts) into the store."""
        from insitu.tracking import read_journal

        recs = read_journal(str(metrics_path(self.cfg, a.run_id, a.task_id, a.number)),
                            run_id=a.run_id, task_id=a.task_id, attempt=a.number)
        self.record(*recs)
        for r in recs:  # a shard read on a node stays there (a replica or its cached copy)
            if isinstance(r, DataReadRecord):
                self.placer.note_data(r.shard, r.node)
                if r.via == "transfer":
                    self.locality.moved(r.bytes, r.seconds)
                if not r.local and r.path:  # later runs find the copy through the registry
                    rec = with_cached_copy(self.store, r.shard, r.node, r.path)
                    if rec is not None:
                        self.record(rec)
        return recs

    def _succeed(self, tid: str, out: dict[str, Any], when: float) -> None:
        t = self.move(tid, T.SUCCEEDED, output=out, ended_at=when, error=None)
        if t.node:  # its output now lives where it was made: downstream readers go there
            for d in digests_of(out):
                self.placer.note_data(f"artifact/{d}", t.node)
        step = self.steps[t.step_id]
        if t.cache_key and step["cache"]:
            self.record(CacheEntry(key=t.cache_key, step=step["name"], output=out,
                                   run_id=t.run_id, task_id=t.id, created_at=when))
        self._after_done(tid, when)

    def _after_done(self, tid: str, when: float) -> None:
        t = self.tasks[tid]
        if t.map_index is None or self.steps[t.step_id].get("tune"):
            return
        parent = self.tasks[t.step_id]
        items = self.items.get(t.step_id, [])
        left = self.items_left.get(t.step_id)
        if left is None:  # counted once, then kept up to date
            left = sum(self.tasks[i].state not in TASK_DONE for i in items)
        else:
            left -= 1
        self.items_left[t.step_id] = left
        if parent.state == T.RUNNING and left == 0:
            self.move(t.step_id, T.SUCCEEDED, ended_at=when, error=None,
                      output={"kind": "list", "items": [self.tasks[i].output for i in items]})


__all__ = ["HEARTBEAT_S", "RunLoop", "TASK_TERMINAL"]
