"""The engine's side of a tuning step: ask Optuna for trials, run them as tasks, tell results.

One :class:`TuneController` per tuning step of a run. Each trial is an item task
(``step[n]``) with a :class:`~insitu.store.TrialRecord` written in the same transaction,
so the store alone holds the study. The controller asks and tells an in-memory Optuna
study rebuilt from those records; after a resume, unfinished trials run again with
their recorded parameters and new ones are asked until the budget is spent.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from insitu.artifacts import ArtifactStore, dump, load
from insitu.store import MetricRecord, Record, Store, TaskRecord, TrialRecord
from insitu.store._states import TaskState as T
from insitu.tune._space import distributions
from insitu.tune._study import add_finished, frozen, new_study


class TuneHost(Protocol):
    """What a tuning step needs of the run that drives it (the run loop provides it)."""

    @property
    def store(self) -> Store: ...
    @property
    def artifacts(self) -> ArtifactStore: ...
    @property
    def tasks(self) -> Mapping[str, TaskRecord]: ...
    @property
    def steps(self) -> Mapping[str, dict[str, Any]]: ...
    @property
    def run_id(self) -> str: ...
    @property
    def stopping(self) -> bool: ...
    def items_of(self, sid: str) -> list[str]: ...
    def move(self, tid: str, to: T | None = None, **changes: Any) -> TaskRecord: ...
    def add_task(self, t: TaskRecord) -> None: ...
    def make_ready(self, tid: str) -> None: ...
    def record(self, *recs: Record) -> None: ...
    def stop_launching(self) -> None: ...


class TuneController:
    def __init__(self, loop: TuneHost, sid: str) -> None:
        self.loop = loop
        self.sid = sid
        self.cfg: dict[str, Any] = loop.steps[sid]["tune"]
        self.run_id = loop.run_id
        self.dists = distributions(self.cfg["space"])
        self.study = new_study(self.cfg)
        self.started = time.time()
        self.stopped = False
        self.errors: list[str] = []
        self.budget = self.cfg["max_trials"]
        if self.cfg["algorithm"] == "grid":
            from insitu.tune._space import grid

            size = 1
            for values in grid(self.cfg["space"]).values():
                size *= len(values)
            self.budget = min(self.budget, size)
        self.records: dict[str, TrialRecord] = {}   # task id -> its trial
        self.asked: dict[str, int] = {}             # task id -> Optuna number (asked here)
        old = loop.store.select(TrialRecord, run_id=self.run_id, step_id=sid)
        add_finished(self.study, old, self.dists)   # a resumed study keeps what it knew
        for rec in old:
            self.records[rec.task_id] = rec

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def failed(self) -> int:
        return sum(r.state == "fail" for r in self.records.values())

    @property
    def completed(self) -> int:
        return sum(r.state == "complete" for r in self.records.values())

    def params(self, tid: str) -> dict[str, Any]:
        return self.records[tid].params

    def trial_info(self, tid: str) -> dict[str, Any]:
        return {"db_url": getattr(self.loop.store, "url", ""), "run_id": self.run_id,
                "step_id": self.sid, "number": self.records[tid].number,
                "cfg": {k: self.cfg.get(k) for k in ("goal", "algorithm", "space",
                                                     "early_stopping", "seed",
                                                     "startup_trials", "warmup_steps")}}

    def items(self) -> list[str]:
        return self.loop.items_of(self.sid)

    def active(self) -> int:
        return sum(self.loop.tasks[t].state in (T.PENDING, T.RUNNING)
                   for t in self.items())

    def _record(self, tid: str, **changes: Any) -> None:
        rec = dataclasses.replace(self.records[tid], **changes)
        self.records[tid] = rec
        self.loop.record(rec)

    # -- asking ------------------------------------------------------------------------
    def fill(self, now: float) -> None:
        """Ask for new trials while there is room and budget."""
        timeout = self.cfg.get("timeout")
        if timeout and now - self.started > timeout:
            self.stopped = True
        while (not self.stopped and not self.loop.stopping
               and self.active() < self.cfg["parallel"] and len(self.items()) < self.budget):
            trial = self.study.ask(self.dists)
            number = len(self.items())
            tid = f"{self.sid}[{number}]"
            self.asked[tid] = trial.number
            self.records[tid] = TrialRecord(run_id=self.run_id, step_id=self.sid,
                                            number=number, task_id=tid, state="running",
                                            params=dict(trial.params))
            self.loop.record(self.records[tid])
            seq = max(t.seq for t in self.loop.tasks.values()) + 1
            self.loop.add_task(TaskRecord(run_id=self.run_id, id=tid, step_id=self.sid,
                                          state=T.PENDING, seq=seq, map_index=number))
            self.items().append(tid)
            self.loop.make_ready(tid)
        self.maybe_finish(now)

    # -- telling -----------------------------------------------------------------------
    def _tell(self, tid: str, state: str, value: float | None = None,
              intermediate: dict[str, float] | None = None) -> None:
        self._record(tid, state=state, value=value,
                     intermediate=intermediate or self.records[tid].intermediate)
        if tid in self.asked:
            import optuna

            ts = getattr(optuna.trial.TrialState, state.upper())
            self.study.tell(self.asked[tid], value if state == "complete" else None, state=ts)
        else:  # a trial asked before a resume: add it as finished
            self.study.add_trial(frozen(self.records[tid], self.dists))

    def objective(self, out: dict[str, Any], logged: Sequence[Record]) -> float | None:
        metric = self.cfg["metric"]
        value: Any = None
        if out.get("kind") == "inline":
            value = out["value"]
        elif out.get("kind") == "blob" and out.get("serializer") in ("json", "pickle"):
            value = load(out, self.loop.artifacts)
        if isinstance(value, dict):
            value = value.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        series = [r for r in logged if isinstance(r, MetricRecord) and r.name == metric]
        return series[-1].value if series else None

    @staticmethod
    def _reports(logged: Sequence[Record]) -> dict[str, float]:
        return {str(r.step): r.value for r in logged
                if isinstance(r, MetricRecord) and r.name == "objective"}

    def succeeded(self, tid: str, out: dict[str, Any], logged: Sequence[Record]) -> None:
        value = self.objective(out, logged)
        if value is None:
            self._tell(tid, "fail")
            if self.completed == 0:  # say so now, not after the whole budget
                self._give_up(
                    f"trial {self.records[tid].number} of tuning step '{self.sid}' finished "
                    f"without the metric '{self.cfg['metric']}'",
                    hint=f"make the step return a number, or a dict with key "
                         f"'{self.cfg['metric']}', or call insitu.log_metric("
                         f"'{self.cfg['metric']}', value) in it")
            return
        self._tell(tid, "complete", value, self._reports(logged))

    def pruned(self, tid: str, logged: Sequence[Record]) -> None:
        reports = self._reports(logged)
        self._tell(tid, "pruned", None, reports)
        at = max((int(k) for k in reports), default=None)
        if at is not None:  # say where it stopped: the step of its last report
            err = self.loop.tasks[tid].error or {"kind": "pruned"}
            self.loop.move(tid, error={**err, "step": at,
                                       "message": f"pruned at step {at} by the tuner"})

    def trial_failed(self, tid: str, err: dict[str, Any]) -> None:
        self._tell(tid, "fail")
        self.errors.append(f"{err.get('type') or err.get('kind')}: {err.get('message', '')}"
                           .strip())
        mf = self.cfg.get("max_failed")
        if mf and self.failed >= mf and not self.stopped:
            cause, n = collections.Counter(self.errors).most_common(1)[0]
            self._give_up(f"tuning step '{self.sid}' stopped after {self.failed} failed trials "
                          f"(max_failed={mf}); common cause, in {n} of them: {cause}",
                          hint=f"see `insitu explain {self.run_id}` and "
                               f"`insitu logs {self.run_id} {self.sid}`")

    def _give_up(self, message: str, *, hint: str) -> None:
        self.stopped = True
        for tid in self.items():
            if self.loop.tasks[tid].state == T.PENDING:
                self.loop.move(tid, T.CANCELLED, ended_at=time.time())
        self.loop.move(self.sid, T.FAILED, ended_at=time.time(),
                       error={"kind": "tuning", "message": message, "hint": hint})
        self.loop.stop_launching()

    def maybe_finish(self, now: float) -> None:
        parent = self.loop.tasks[self.sid]
        if parent.state != T.RUNNING or self.active():
            return
        if not self.stopped and len(self.items()) < self.budget:
            return
        done = [r for r in self.records.values() if r.state == "complete"]
        if not done:
            cause = collections.Counter(self.errors).most_common(1)
            self._give_up(f"no trial of tuning step '{self.sid}' completed"
                          + (f"; common cause: {cause[0][0]}" if cause else ""),
                          hint=f"see `insitu explain {self.run_id}`")
            return
        pick = max if self.cfg["goal"] == "maximize" else min
        best = pick(done, key=lambda r: (r.value, -r.number))
        store = self.loop.artifacts
        result = {"best_params": best.params, "best_value": best.value,
                  "best_trial": best.number, "n_trials": len(self.records),
                  "study": f"{self.run_id}/{self.sid}"}
        items = {k: dump(v, store) for k, v in result.items()}
        best_out = self.loop.tasks[best.task_id].output
        assert best_out is not None
        items["best_output"] = best_out
        self.loop.move(self.sid, T.SUCCEEDED, ended_at=now, error=None,
                       map_size=len(self.items()), output={"kind": "dict", "items": items})
