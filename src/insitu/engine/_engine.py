"""The engine: runs a PipelineSpec to completion, one state change at a time.

Rules it keeps (see DESIGN.md):
- every state change of a run, task or attempt is written to the store *before*
  it is acted on (an attempt is recorded as running before it is launched);
- killing the engine at any instant and resuming loses no finished work and
  runs no finished step again (a finished attempt's result file is adopted);
- a failed task stops new launches; running attempts finish and are recorded;
  the exit handler, if any, then runs with the final status.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from insitu._config import Config, load_config
from insitu._units import format_bytes, parse_cpu, parse_gpu, parse_memory
from insitu.artifacts import ArtifactStore, digests_of
from insitu.datasets import shards_in
from insitu.datasets._registry import holders, with_cached_copy
from insitu.engine import _outcome
from insitu.engine._locality import Busy, WaitOrMove
from insitu.engine._params import bind_params
from insitu.engine._paths import log_path, metrics_path, result_path
from insitu.engine._placement import Placement, Placer, Request, describe, with_constraints
from insitu.engine._refs import cache_key, concretize, condition_steps, evaluate, upstream_steps
from insitu.errors import ResourceError, UserError
from insitu.executor import AttemptExit, Executor, LaunchRequest, read_result
from insitu.store import (
    AttemptRecord,
    CacheEntry,
    DataReadRecord,
    Record,
    RunRecord,
    Store,
    TaskRecord,
)
from insitu.store import _records as S

Progress = Callable[["RunLoop"], None]
HEARTBEAT_S = 1.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def resolve_resources(step: dict[str, Any], params: dict[str, Any]) -> Request:
    """The step's resource request with parameter refs replaced by their (parsed) values."""
    res = step["resources"]

    def val(key: str) -> Any:
        v = res.get(key)
        if isinstance(v, dict):
            v = params[v["param"]]
        return v

    where = f"step '{step['id']}'"
    try:
        cpu = parse_cpu(val("cpu") or 1.0)
        mem_v = val("memory")
        memory = parse_memory(mem_v) if mem_v else 2 * 1024**3
        gpu = parse_gpu(val("gpu") or 0)
    except UserError as e:
        raise ResourceError(f"{where}: {e.message}", hint=e.hint) from None
    gt = val("gpu_type")
    return with_constraints(
        Request(cpu=cpu, memory=memory, gpu=gpu, gpu_type=gt if isinstance(gt, str) else None,
                restartable=step["retries"]["max"] > 0), step)


def describe_request(r: Request) -> str:
    s = f"{r.cpu:g} CPU, {format_bytes(r.memory)} memory"
    if r.gpu:
        s += f", {r.gpu:g} GPU" + (f" of type {r.gpu_type}" if r.gpu_type else "")
    return s


class Engine:
    """Submits and runs pipelines against one store and one executor."""

    def __init__(self, store: Store, executor: Executor, *, config: Config | None = None,
                 progress: Progress | None = None) -> None:
        self.store = store
        self.executor = executor
        self.config = config or load_config()
        self.artifacts = ArtifactStore(self.config.artifacts_url)
        self.progress = progress

    def submit(self, spec: dict[str, Any], params: dict[str, Any], *, no_cache: bool = False,
               from_text: bool = False) -> RunRecord:
        """Check ``params`` and resources against ``spec``, then record a pending run.

        ``spec`` comes from ``compile`` or from :func:`insitu.spec.load_spec`, which
        validate it against the schema.
        """
        values = bind_params(spec, params, from_text=from_text)
        self.check_resources(spec, values)
        run = RunRecord(id=new_run_id(), pipeline=spec["name"], state=S.RUN_PENDING, spec=spec,
                        params=values, created_at=time.time(), no_cache=no_cache,
                        backend=self.executor.name)
        tasks = [TaskRecord(run_id=run.id, id=s["id"], step_id=s["id"], state=S.TASK_PENDING,
                            seq=i) for i, s in enumerate(spec["steps"])]
        self.store.put(run, *tasks)
        return run

    def check_resources(self, spec: dict[str, Any], params: dict[str, Any]) -> None:
        """Refuse, before anything runs, requests that are malformed or that no node could
        ever satisfy; every such step is listed, then what the nodes have."""
        nodes = self.executor.nodes()
        placer = Placer(nodes)
        problems: list[str] = []
        hints: list[str] = []
        too_big = False
        for s in spec["steps"]:
            try:
                req = resolve_resources(s, params)
            except ResourceError as e:
                problems.append(e.message)
                hints.append(e.hint or "")
                continue
            why = placer.impossible(req)
            if why:
                too_big = True
                loc = s.get("location") or {}
                at = f" ({os.path.basename(loc['file'])}:{loc.get('line')})" \
                    if loc.get("file") else ""
                problems.append(f"step '{s['id']}'{at} asks for {describe_request(req)}: {why}")
        if not problems:
            return
        if too_big:
            problems.append("available: " + "; ".join(describe(n) for n in nodes))
            hints.append("lower the step's request (@insitu.step(...) or .options(...)), or "
                         "run on a backend with bigger nodes")
        raise ResourceError(
            f"cannot run pipeline '{spec['name']}':\n" + "\n".join(f"  - {p}" for p in problems),
            hint="; ".join(dict.fromkeys(h for h in hints if h)))

    def execute(self, run_id: str) -> RunRecord:
        """Run (or resume) a run until it ends; return its final record."""
        run = self.store.get_run(run_id)
        loop = RunLoop(self, run)
        return loop.run()


@dataclasses.dataclass
class _Running:
    task_id: str
    attempt: AttemptRecord
    placement: Placement
    request: Request


class RunLoop:
    """The state of one run while the engine drives it."""

    def __init__(self, engine: Engine, run: RunRecord) -> None:
        self.engine = engine
        self.store = engine.store
        self.executor = engine.executor
        self.cfg = engine.config
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
        self.running: dict[str, _Running] = {}
        # tasks whose inputs are ready, per step in spec order, waiting for resources
        self.ready: dict[str, collections.deque[str]] = {sid: collections.deque()
                                                         for sid in self.order}
        self.ready_set: set[str] = set()
        self.fresh: list[str] = []          # made ready since the last cache lookup
        self.backoff: list[tuple[float, str]] = []  # (not_before, task) heap of retries
        self.args_cache: dict[str, tuple[dict[str, Any], str | None]] = {}
        self.failures: dict[str, int] = {}
        self.items: dict[str, list[str]] = {}
        self.items_left: dict[str, int] = {}   # per map: items not yet done
        self.tuners: dict[str, Any] = {}       # tuning step -> TuneController
        self.running_per_step: dict[str, int] = {}
        self.failing = False
        self.cancelling = False
        self.dirty: list[Record] = []
        self.placer = Placer(self.executor.nodes())
        # where the spec's dataset shards live now: replicas and copies cached since
        for shard_id, nodes in holders(self.store, shards_in(self.spec)).items():
            for node in nodes:
                self.placer.note_data(shard_id, node)
        self.locality = WaitOrMove(self.placer)
        self.requests: dict[str, Request] = {}
        self._last_beat = 0.0
        self.started = time.time()
        self.cache_hits = 0
        self.changes = 0

    # -- persistence --------------------------------------------------------------
    def _set_task(self, t: TaskRecord) -> None:
        self.changes += 1
        self.tasks[t.id] = t
        self.dirty.append(t)

    def flush(self) -> None:
        if self.dirty:
            self.store.put(*self.dirty)
            self.dirty = []

    def _update(self, task_id: str, **changes: Any) -> TaskRecord:
        t = dataclasses.replace(self.tasks[task_id], **changes)
        self._set_task(t)
        return t

    # -- lifecycle ----------------------------------------------------------------
    def run(self) -> RunRecord:
        run = self.run_rec
        if run.state == S.RUN_SUCCEEDED:
            return run
        for t in self.store.list_tasks(run.id):
            self.tasks[t.id] = t
            if t.map_index is not None:
                self.items.setdefault(t.step_id, []).append(t.id)
        self._recover()
        now = time.time()
        self.run_rec = dataclasses.replace(
            run, state=S.RUN_RUNNING, started_at=run.started_at or now, ended_at=None,
            engine_pid=os.getpid(), engine_host=socket.gethostname(), heartbeat_at=now,
            cancel_requested=False, error=None)
        self.dirty.append(self.run_rec)
        self.flush()
        for d in ("logs", "results", "metrics"):
            (self.cfg.run_dir(run.id) / d).mkdir(parents=True, exist_ok=True)
        self.executor.prepare([s["function"] for s in self.spec["steps"]])
        try:
            self._drive()
        except KeyboardInterrupt:
            self.cancelling = True
            self._drain()
        except BaseException:
            self._drain()
            raise
        return self._finish()

    def _drive(self) -> None:
        while True:
            before = -1
            while before != self.changes:  # until scheduling settles
                before = self.changes
                self._schedule()
            self.flush()
            self._notify()
            if not self.running and not self._waiting():
                return
            exits = self.executor.poll(self._poll_timeout())
            if exits:  # recorded by the flush at the top of the loop, before anything acts
                self._handle_exits(exits)
            self._beat()
            if self.cancelling:
                self._drain()
                return

    def _drain(self) -> None:
        """Stop every running attempt and record how each ended."""
        for key in list(self.running):
            self.executor.cancel(key)
        deadline = time.time() + 30
        while self.running and time.time() < deadline:
            try:
                exits = self.executor.poll(0.5)
            except KeyboardInterrupt:
                continue
            self._handle_exits(exits, cancelled=True)
            self.flush()
        for key in list(self.running):  # never reported: lost with the executor
            self._handle_exits([AttemptExit(key=key, pid=None, exit_code=None, signal=None,
                                            peak_memory=None, cpu_time=None,
                                            started_at=time.time(), ended_at=time.time(),
                                            cancelled=True)], cancelled=True)
        self.flush()

    def _finish(self) -> RunRecord:
        now = time.time()
        failed = [t.id for t in self.tasks.values() if t.state == S.TASK_FAILED]
        if self.cancelling:
            state = S.RUN_CANCELLED
            for t in list(self.tasks.values()):
                if t.state in (S.TASK_PENDING, S.TASK_RUNNING):
                    self._update(t.id, state=S.TASK_CANCELLED, ended_at=now)
        elif failed:
            state = S.RUN_FAILED
        else:
            state = S.RUN_SUCCEEDED
        err = {"failed_steps": failed} if failed else None
        self.run_rec = dataclasses.replace(self.run_rec, state=state, ended_at=now,
                                           heartbeat_at=now, error=err)
        self.dirty.append(self.run_rec)
        self.flush()
        self._notify(final=True)
        return self.run_rec

    def _notify(self, final: bool = False) -> None:
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
        self.run_rec = dataclasses.replace(self.run_rec, heartbeat_at=now,
                                           cancel_requested=fresh.cancel_requested)
        self.dirty.append(self.run_rec)
        self.flush()

    def _poll_timeout(self) -> float:
        if self.backoff and not self.failing:
            return max(0.0, min(self.backoff[0][0] - time.time(), HEARTBEAT_S))
        if self.locality.since:  # a task waits for its data's node: look again soon
            return 0.2
        return HEARTBEAT_S if self.running else 0.0

    def _waiting(self) -> bool:
        """Is some task waiting only for its retry backoff?"""
        return bool(self.backoff) and not (self.failing or self.cancelling)

    # -- recovery -------------------------------------------------------------------
    def _recover(self) -> None:
        """Make a run resumable: adopt finished results, mark lost attempts, reopen tasks."""
        now = time.time()
        for a in self.store.list_attempts(self.run_rec.id):
            if a.state != S.ATT_RUNNING:
                continue
            res = read_result(str(result_path(self.cfg, a.run_id, a.task_id, a.number)))
            out = res.get("output") if res and res.get("ok") else None
            self._ingest(a)
            if out is not None and all(self.engine.artifacts.exists(d) for d in digests_of(out)):
                self.dirty.append(dataclasses.replace(a, state=S.ATT_SUCCEEDED, ended_at=now))
                self._succeed(a.task_id, out, now)
            else:
                self.dirty.append(dataclasses.replace(
                    a, state=S.ATT_LOST, ended_at=now,
                    error={"kind": "lost", "message": "the engine stopped while it ran"}))
        tuned = {s for s, spec in self.steps.items() if spec.get("tune")}
        for t in list(self.tasks.values()):
            if t.step_id in tuned and t.map_index is not None and t.state in (
                    S.TASK_FAILED, S.TASK_PRUNED, S.TASK_CANCELLED):
                continue  # the study already knows how this trial ended
            reopen = (
                t.id == self.exit_step  # it runs again, with the new final status
                or t.state in (S.TASK_FAILED, S.TASK_CANCELLED)
                or (t.state == S.TASK_RUNNING and t.map_size is None))
            if reopen:
                self._update(t.id, state=S.TASK_PENDING, error=None, not_before=None)
        for step_id, items in self.items.items():  # reopen partly failed maps
            parent = self.tasks[step_id]
            if parent.state != S.TASK_SUCCEEDED and any(
                    self.tasks[i].state not in S.TASK_DONE for i in items):
                self._update(step_id, state=S.TASK_RUNNING)
        for sid in tuned:
            if self.tasks[sid].state == S.TASK_PENDING and sid in self.items:
                self._update(sid, state=S.TASK_RUNNING)
            if self.tasks[sid].state == S.TASK_RUNNING:
                self._tuner(sid)
        for tid in sorted((t.id for t in self.tasks.values()
                           if t.map_index is not None and t.state == S.TASK_PENDING),
                          key=lambda i: self.tasks[i].seq):
            self._make_ready(tid)

    # -- scheduling -------------------------------------------------------------------
    def _step_state(self, step_id: str) -> str:
        return self.tasks[step_id].state

    def _outputs(self, step_id: str) -> dict[str, Any]:
        out = self.tasks[step_id].output
        assert out is not None, step_id
        return out

    def _value_of(self, ref: dict[str, Any]) -> Any:
        c = concretize(ref, self.params, self._outputs)
        from insitu.executor._worker import resolve

        return resolve(c, self.engine.artifacts, str(self.cfg.home / "materialized"))

    def _status(self) -> dict[str, Any]:
        failed = [t.id for t in self.tasks.values() if t.state == S.TASK_FAILED]
        return {"run_id": self.run_rec.id, "pipeline": self.spec["name"],
                "state": S.RUN_FAILED if failed else S.RUN_SUCCEEDED, "failed_steps": failed}

    def _schedule(self) -> None:
        now = time.time()
        for sid in self.order:
            t = self.tasks[sid]
            if t.state != S.TASK_PENDING or sid in self.ready_set or t.not_before is not None:
                continue  # not pending, already queued, or waiting in the retry backoff
            if sid == self.exit_step:
                others = [self.tasks[o] for o in self.order if o != sid]
                if self.cancelling or any(o.state not in S.TASK_TERMINAL for o in others) and not (
                        self.failing and not self.running):
                    continue
                self._make_ready(sid)
                continue
            if self.failing or self.cancelling:
                continue
            dep_states = {self._step_state(d) for d in self.deps[sid]}
            if dep_states - S.TASK_TERMINAL or dep_states & {S.TASK_FAILED, S.TASK_CANCELLED}:
                continue
            step = self.steps[sid]
            if S.TASK_SKIPPED in dep_states or not evaluate(step.get("when"), self._value_of):
                self._update(sid, state=S.TASK_SKIPPED, ended_at=now)
                continue
            if step.get("tune"):
                self._tuner(sid)
                self._update(sid, state=S.TASK_RUNNING, started_at=t.started_at or now)
            elif step.get("map"):
                self._expand(sid, now)
            else:
                self._make_ready(sid)
        for tuner in self.tuners.values():
            if self.tasks[tuner.sid].state == S.TASK_RUNNING:
                tuner.fill(now)
        while self.backoff and self.backoff[0][0] <= now:
            self._make_ready(heapq.heappop(self.backoff)[1])
        if self.ready_set and not self.cancelling:
            self._launch_ready(now)

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
            self._update(sid, state=S.TASK_FAILED, ended_at=now, error={
                "kind": "user", "message": f"step '{sid}' maps over a value that is not a list",
                "hint": "map over a list (or a step output that is a list)"})
            self.failing = True
            return
        seq0 = max(t.seq for t in self.tasks.values()) + 1
        ids = []
        for i in range(n):
            tid = f"{sid}[{i}]"
            ids.append(tid)
            if tid not in self.tasks:
                self._set_task(TaskRecord(run_id=self.run_rec.id, id=tid, step_id=sid,
                                          state=S.TASK_PENDING, seq=seq0 + i, map_index=i))
        self.items[sid] = ids
        if n == 0:
            self._update(sid, state=S.TASK_SUCCEEDED, map_size=0, started_at=now, ended_at=now,
                         output={"kind": "list", "items": []})
            return
        self._update(sid, state=S.TASK_RUNNING, map_size=n, started_at=now)
        for tid in ids:
            self._make_ready(tid)

    def _tuner(self, sid: str) -> Any:
        if sid not in self.tuners:
            from insitu.engine._tuning import TuneController

            self.tuners[sid] = TuneController(self, sid)
        return self.tuners[sid]

    def _make_ready(self, tid: str) -> None:
        if tid not in self.ready_set:
            t = self.tasks[tid]
            if t.ready_at is None:
                self._update(tid, ready_at=time.time())
            self.ready[t.step_id].append(tid)
            self.ready_set.add(tid)
            if tid not in self.args_cache:
                self.fresh.append(tid)

    def _args_for(self, t: TaskRecord) -> tuple[dict[str, Any], str | None]:
        if t.id in self.args_cache:
            return self.args_cache[t.id]
        step = self.steps[t.step_id]
        status = self._status() if t.step_id == self.exit_step else None
        args = {k: concretize(r, self.params, self._outputs, status)
                for k, r in step["args"].items()}
        if t.map_index is not None and step.get("tune"):
            for k, v in self._tuner(t.step_id).params(t.id).items():
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

    def _lookup_cache(self, tids: list[str]) -> list[str]:
        """Serve cache hits among ``tids``; return those that must run."""
        if not tids:
            return []
        keys = {tid: self._args_for(self.tasks[tid])[1] for tid in tids}
        wanted = [k for k in keys.values() if k]
        if not wanted:
            return tids
        entries = self.store.get_cache(wanted)
        stale: list[str] = []
        rest = []
        now = time.time()
        for tid in tids:
            k = keys[tid]
            e = entries.get(k) if k else None
            if e is not None and all(self.engine.artifacts.exists(d)
                                     for d in digests_of(e.output)):
                self._update(tid, state=S.TASK_CACHED, cache_key=k, output=e.output,
                             started_at=now, ended_at=now, error=None)
                self.cache_hits += 1
                self._after_done(tid, now)
                tuner = self.tuners.get(self.tasks[tid].step_id)
                if tuner is not None:
                    tuner.cached(tid, e.output, e)
                    tuner.maybe_finish(now)
            else:
                if e is not None:
                    stale.append(e.key)
                rest.append(tid)
        if stale:
            self.store.delete_cache(stale)
        return rest

    def _launch_ready(self, now: float) -> None:
        if self.fresh:
            fresh, self.fresh = self.fresh, []
            for tid in fresh:
                if tid in self.args_cache:
                    continue
                self._args_for(self.tasks[tid])
            self._lookup_cache([tid for tid in fresh
                                if self.tasks[tid].state == S.TASK_PENDING])
        launches: list[LaunchRequest] = []
        self.locality.new_pass()
        for sid, queue in self.ready.items():
            if not queue or (self.failing and sid != self.exit_step):
                continue
            launches += self._launch_step(sid, queue, now)
        if launches:
            self.flush()  # the attempts are recorded as running before they start
            for lr in launches:
                self.executor.launch(lr)

    def _launch_step(self, sid: str, queue: collections.deque[str], now: float
                     ) -> list[LaunchRequest]:
        """Launch what fits of one step's ready queue, in order.

        Two passes: first every task that can run next to its data (or reads none), so a
        node with room serves the tasks whose data it holds before others'; then the
        tasks whose holders are all busy, each of which waits for a holder or moves its
        data (:class:`WaitOrMove`). Tasks left waiting keep their place at the front.
        """
        step = self.steps[sid]
        mp = (step.get("map") or {}).get("max_parallel")
        base = self.requests.get(sid) or resolve_resources(step, self.params)
        self.requests[sid] = base
        launches: list[LaunchRequest] = []
        deferred: list[tuple[str, Request]] = []  # their holders are busy
        full = False

        def place(tid: str, req: Request) -> Placement | None:
            t = self.tasks[tid]
            placement = self.placer.place(req, f"{t.run_id}/{tid}/{t.attempts + 1}")
            if isinstance(placement, str):  # nothing fits now: say why, once
                if t.pending_reason != placement:
                    self._update(tid, pending_reason=placement)
                return None
            return placement

        def launch(tid: str, req: Request, placement: Placement) -> None:
            self.locality.placed(tid)
            self.ready_set.discard(tid)
            launches.append(self._start_attempt(self.tasks[tid], step, req, placement, now))

        def capped() -> bool:
            return mp is not None and self.running_per_step.get(sid, 0) >= mp

        while queue and not full:
            tid = queue[0]
            t = self.tasks[tid]
            if t.state != S.TASK_PENDING:  # e.g. served from the cache meanwhile
                queue.popleft()
                self.ready_set.discard(tid)
                continue
            if t.map_index is not None and capped():
                break
            req = base
            inputs = _data_inputs(self._args_for(t)[0])
            if inputs:  # place it next to what it reads
                req = dataclasses.replace(base, inputs=inputs)
            placement = place(tid, req)
            if placement is None:
                full = True
                break
            queue.popleft()
            if inputs and not self.placer.nearest(placement.node, inputs):
                self.placer.release(placement)  # a holder may have room later in this pass
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
            why = self.locality.decide(tid, req, placement, self._busy(), now)
            if why is not None:  # better to wait for the data's node than to move it
                self.placer.release(placement)
                if self.tasks[tid].pending_reason != why:
                    self._update(tid, pending_reason=why)
                waiting.append(tid)
                continue
            launch(tid, req, placement)
        queue.extendleft(reversed(waiting))
        return launches

    def _busy(self) -> list[Busy]:
        now = time.time()
        return [Busy(r.placement.node, self.tasks[r.task_id].step_id, r.attempt.started_at or now)
                for r in self.running.values()]

    def _start_attempt(self, t: TaskRecord, step: dict[str, Any], req: Request,
                       placement: Placement, now: float) -> LaunchRequest:
        args, key = self._args_for(t)
        n = t.attempts + 1
        att = AttemptRecord(run_id=t.run_id, task_id=t.id, number=n, state=S.ATT_RUNNING,
                            node=placement.node, started_at=now, placement=placement.as_dict())
        self.dirty.append(att)
        self._update(t.id, state=S.TASK_RUNNING, attempts=n, cache_key=key, node=placement.node,
                     started_at=t.started_at or now, resources=dataclasses.asdict(req),
                     not_before=None, pending_reason=None)
        lkey = f"{t.id}#{n}"
        self.running[lkey] = _Running(t.id, att, placement, req)
        self.running_per_step[t.step_id] = self.running_per_step.get(t.step_id, 0) + 1
        rp = result_path(self.cfg, t.run_id, t.id, n)
        return LaunchRequest(
            key=lkey, run_id=t.run_id, task_id=t.id, attempt=n, step=t.step_id,
            function=step["function"], args=args, env=step.get("env") or {},
            node=placement.node, gpu_ids=placement.gpu_ids, memory_limit=req.memory,
            timeout=step.get("timeout"), result_path=str(rp),
            stdout_path=str(log_path(self.cfg, t.run_id, t.id, n, "out")),
            stderr_path=str(log_path(self.cfg, t.run_id, t.id, n, "err")),
            artifacts_url=self.engine.artifacts.url,
            materialize_dir=str(self.cfg.home / "materialized"),
            metrics_path=str(metrics_path(self.cfg, t.run_id, t.id, n)),
            trial=self._tuner(t.step_id).trial_info(t.id) if step.get("tune") else None)

    # -- outcomes -------------------------------------------------------------------
    def _handle_exits(self, exits: list[AttemptExit], *, cancelled: bool = False) -> None:
        for ex in exits:
            r = self.running.pop(ex.key, None)
            if r is None:
                continue
            self.placer.release(r.placement)
            t = self.tasks[r.task_id]
            self.running_per_step[t.step_id] -= 1
            step = self.steps[t.step_id]
            if cancelled and not ex.cancelled and (ex.result is None or not ex.result.get("ok")):
                ex = dataclasses.replace(ex, cancelled=True)
            err = _outcome.classify(ex, memory_limit=r.request.memory,
                                    timeout=step.get("timeout"))
            att = dataclasses.replace(
                r.attempt, pid=ex.pid, ended_at=ex.ended_at,
                started_at=ex.started_at if ex.pid else r.attempt.started_at,
                exit_code=ex.exit_code,
                peak_memory=ex.peak_memory, cpu_time=ex.cpu_time, error=err,
                node=ex.node or r.attempt.node,
                state=S.ATT_SUCCEEDED if err is None else
                S.ATT_CANCELLED if err["kind"] == "cancelled" else
                S.ATT_PRUNED if err["kind"] == "pruned" else S.ATT_FAILED)
            self.dirty.append(att)
            if err and err["kind"] == "lost" and ex.pid is None:
                self._forget_dead_nodes()
            logged = self._ingest(att)
            tuner = self.tuners.get(t.step_id)
            if err is None:
                assert ex.result is not None
                self.locality.finished(t.step_id, ex.ended_at - (att.started_at or ex.ended_at))
                out = ex.result["output"]
                self._succeed(t.id, out, ex.ended_at)
                if tuner is not None:
                    tuner.succeeded(t.id, out, logged)
                    tuner.maybe_finish(ex.ended_at)
                continue
            if err["kind"] == "pruned" and tuner is not None:
                self._update(t.id, state=S.TASK_PRUNED, ended_at=ex.ended_at, error=err)
                tuner.pruned(t.id, logged)
                tuner.maybe_finish(ex.ended_at)
                continue
            if err["kind"] == "cancelled":
                self._update(t.id, state=S.TASK_CANCELLED, ended_at=ex.ended_at, error=err)
                continue
            fails = self.failures.get(t.id, 0) + 1
            self.failures[t.id] = fails
            retry = step["retries"]
            if not self.cancelling and _outcome.should_retry(
                    err, failures=fails, max_retries=retry["max"],
                    retry_on=retry.get("retry_on", [])):
                when = time.time() + _outcome.backoff(retry, fails)
                self._update(t.id, state=S.TASK_PENDING, error=err, not_before=when)
                heapq.heappush(self.backoff, (when, t.id))
                continue
            self._update(t.id, state=S.TASK_FAILED, ended_at=ex.ended_at, error=err)
            if tuner is not None:  # a failed trial fails the run only past max_failed
                tuner.trial_failed(t.id, err)
                tuner.maybe_finish(ex.ended_at)
                continue
            if t.map_index is not None:
                self._update(t.step_id, state=S.TASK_FAILED, ended_at=ex.ended_at,
                             error={"kind": "item_failed", "item": t.id,
                                    "message": f"item {t.id} failed"})
            self.failing = True

    def _forget_dead_nodes(self) -> None:
        """After an attempt was lost with its worker, drop nodes the executor no longer has,
        so that its retry goes to a node that is alive."""
        alive = {n.name for n in self.executor.nodes()}
        gone = self.placer.names() - alive
        if not gone or not alive:
            return
        keys = list(self.running)
        kept = self.placer.drop_nodes(gone, [(self.running[k].request, self.running[k].placement)
                                             for k in keys])
        for i, k in enumerate(keys):
            if i in kept:
                self.running[k].placement = kept[i]

    def _ingest(self, a: AttemptRecord) -> list[Record]:
        """Move what the attempt logged (metrics, params, artifacts) into the store."""
        from insitu.tracking import read_journal

        recs = read_journal(str(metrics_path(self.cfg, a.run_id, a.task_id, a.number)),
                            run_id=a.run_id, task_id=a.task_id, attempt=a.number)
        self.dirty += recs
        for r in recs:  # a shard read on a node stays there (a replica or its cached copy)
            if isinstance(r, DataReadRecord):
                self.placer.note_data(r.shard, r.node)
                if r.via == "transfer":
                    self.locality.moved(r.bytes, r.seconds)
                if not r.local and r.path:  # later runs find the copy through the registry
                    rec = with_cached_copy(self.store, r.shard, r.node, r.path)
                    if rec is not None:
                        self.dirty.append(rec)
        return recs

    def _succeed(self, tid: str, out: dict[str, Any], when: float) -> None:
        t = self._update(tid, state=S.TASK_SUCCEEDED, output=out, ended_at=when, error=None)
        if t.node:  # its output now lives where it was made: downstream readers go there
            for d in digests_of(out):
                self.placer.note_data(f"artifact/{d}", t.node)
        step = self.steps[t.step_id]
        if t.cache_key and step["cache"]:
            self.dirty.append(CacheEntry(key=t.cache_key, step=step["name"], output=out,
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
            left = sum(self.tasks[i].state not in S.TASK_DONE for i in items)
        else:
            left -= 1
        self.items_left[t.step_id] = left
        if parent.state == S.TASK_RUNNING and left == 0:
            self._update(t.step_id, state=S.TASK_SUCCEEDED, ended_at=when, error=None,
                         output={"kind": "list", "items": [self.tasks[i].output for i in items]})




__all__ = ["Engine", "RunLoop", "describe_request", "engine_alive", "new_run_id",
           "resolve_resources"]


def engine_alive(run: RunRecord, *, stale_after: float = 15.0) -> bool:
    """Is an engine still driving ``run``? (its process exists and its heartbeat is fresh)"""
    if run.state not in (S.RUN_RUNNING, S.RUN_PENDING) or run.engine_pid is None:
        return False
    if run.heartbeat_at is None or time.time() - run.heartbeat_at > stale_after:
        return False
    if run.engine_host == socket.gethostname():
        try:
            os.kill(run.engine_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _data_inputs(args: dict[str, Any]) -> tuple[tuple[str, int], ...]:
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
