"""The engine's side of a tuning step: ask Optuna for trials, run them as tasks, tell results.

One :class:`TuneController` per tuning step of a run. Its trials are the step's item
tasks (``step[n]`` for trial number ``n``); their parameters come from the study, so a
resumed run re-runs unfinished trials with the same parameters and asks for new ones
until the budget is spent.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from insitu.artifacts import dump, load
from insitu.store import MetricRecord, Record, TaskRecord
from insitu.store import _records as S
from insitu.tune._space import distributions
from insitu.tune._study import create_study

if TYPE_CHECKING:
    from insitu.engine._engine import RunLoop


class TuneController:
    def __init__(self, loop: RunLoop, sid: str) -> None:
        self.loop = loop
        self.sid = sid
        self.cfg: dict[str, Any] = loop.steps[sid]["tune"]
        self.name = f"{loop.run_rec.id}/{sid}"
        self.db_url = loop.store.url if hasattr(loop.store, "url") else ""
        self.study = create_study(self.name, self.db_url, self.cfg)
        self.dists = distributions(self.cfg["space"])
        self.started = time.time()
        self.stopped = False
        self.failed = 0
        self.errors: list[str] = []
        self.completed = 0
        self.budget = self.cfg["max_trials"]
        if self.cfg["algorithm"] == "grid":
            from insitu.tune._space import grid

            size = 1
            for values in grid(self.cfg["space"]).values():
                size *= len(values)
            self.budget = min(self.budget, size)
        self.params: dict[str, dict[str, Any]] = {}
        self.trial_ids: dict[str, int] = {}
        for tr in self.study.trials:  # a resumed study: keep what it already knows
            tid = f"{sid}[{tr.number}]"
            self.params[tid] = tr.params
            self.trial_ids[tid] = tr._trial_id
            if tr.state.name == "COMPLETE":
                self.completed += 1
            elif tr.state.name == "FAIL":
                self.failed += 1

    # -- what the engine asks ---------------------------------------------------------
    def trial_info(self, tid: str) -> dict[str, Any]:
        return {"storage": self.db_url, "study": self.name, "trial_id": self.trial_ids[tid],
                "early_stopping": self.cfg.get("early_stopping")}

    def items(self) -> list[str]:
        return self.loop.items.setdefault(self.sid, [])

    def active(self) -> int:
        return sum(self.loop.tasks[t].state in (S.TASK_PENDING, S.TASK_RUNNING)
                   for t in self.items())

    def fill(self, now: float) -> None:
        """Ask for new trials while there is room and budget."""
        timeout = self.cfg.get("timeout")
        if timeout and now - self.started > timeout:
            self.stopped = True
        while (not self.stopped and not self.loop.failing and not self.loop.cancelling
               and self.active() < self.cfg["parallel"] and len(self.items()) < self.budget):
            trial = self.study.ask(self.dists)
            tid = f"{self.sid}[{trial.number}]"
            self.params[tid] = trial.params
            self.trial_ids[tid] = trial._trial_id
            seq = max(t.seq for t in self.loop.tasks.values()) + 1
            self.loop._set_task(TaskRecord(run_id=self.loop.run_rec.id, id=tid,
                                           step_id=self.sid, state=S.TASK_PENDING, seq=seq,
                                           map_index=trial.number))
            self.items().append(tid)
            self.loop._make_ready(tid)
        self.maybe_finish(now)

    def objective(self, tid: str, out: dict[str, Any], logged: Sequence[Record]
                  ) -> float | None:
        metric = self.cfg["metric"]
        value: Any = None
        if out.get("kind") == "inline":
            value = out["value"]
        elif out.get("kind") == "blob" and out.get("serializer") in ("json", "pickle"):
            value = load(out, self.loop.engine.artifacts)
        if isinstance(value, dict):
            value = value.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        series = [r for r in logged if isinstance(r, MetricRecord) and r.name == metric]
        return series[-1].value if series else None

    def succeeded(self, tid: str, out: dict[str, Any], logged: Sequence[Record]) -> None:
        number = self.loop.tasks[tid].map_index
        value = self.objective(tid, out, logged)
        if value is None:
            self.study.tell(number, state=_state("FAIL"))
            if self.completed == 0:  # say so now, not after the whole budget
                self._give_up(
                    f"trial {number} of tuning step '{self.sid}' finished without the metric "
                    f"'{self.cfg['metric']}'",
                    hint=f"make the step return a number, or a dict with key "
                         f"'{self.cfg['metric']}', or call insitu.log_metric("
                         f"'{self.cfg['metric']}', value) in it")
                return
            self.failed += 1
            return
        self.study.tell(number, value)
        self.completed += 1

    def cached(self, tid: str, out: dict[str, Any], entry: Any) -> None:
        """A trial served from the cache: tell the study what the cached run measured."""
        logged = self.loop.store.select(MetricRecord, run_id=entry.run_id,
                                        task_id=entry.task_id)
        self.succeeded(tid, out, logged)

    def pruned(self, tid: str) -> None:
        self.study.tell(self.loop.tasks[tid].map_index, state=_state("PRUNED"))

    def trial_failed(self, tid: str, err: dict[str, Any]) -> None:
        self.study.tell(self.loop.tasks[tid].map_index, state=_state("FAIL"))
        self.failed += 1
        self.errors.append(f"{err.get('type') or err.get('kind')}: {err.get('message', '')}"
                           .strip())
        mf = self.cfg.get("max_failed")
        if mf and self.failed >= mf and not self.stopped:
            cause, n = collections.Counter(self.errors).most_common(1)[0]
            self._give_up(f"tuning step '{self.sid}' stopped after {self.failed} failed trials "
                          f"(max_failed={mf}); common cause, in {n} of them: {cause}",
                          hint=f"see `insitu explain {self.loop.run_rec.id}` and "
                               f"`insitu logs {self.loop.run_rec.id} {self.sid}`")

    def _give_up(self, message: str, *, hint: str) -> None:
        self.stopped = True
        for tid in self.items():
            if self.loop.tasks[tid].state == S.TASK_PENDING:
                self.loop._update(tid, state=S.TASK_CANCELLED, ended_at=time.time())
        self.loop._update(self.sid, state=S.TASK_FAILED, ended_at=time.time(),
                          error={"kind": "tuning", "message": message, "hint": hint})
        self.loop.failing = True

    def maybe_finish(self, now: float) -> None:
        parent = self.loop.tasks[self.sid]
        if parent.state != S.TASK_RUNNING or self.active():
            return
        if not self.stopped and len(self.items()) < self.budget:
            return
        complete = [t for t in self.study.trials if t.state.name == "COMPLETE"]
        if not complete:
            cause = collections.Counter(self.errors).most_common(1)
            self._give_up(f"no trial of tuning step '{self.sid}' completed"
                          + (f"; common cause: {cause[0][0]}" if cause else ""),
                          hint=f"see `insitu explain {self.loop.run_rec.id}`")
            return
        best = self.study.best_trial
        best_tid = f"{self.sid}[{best.number}]"
        store = self.loop.engine.artifacts
        result = {"best_params": best.params, "best_value": best.value,
                  "best_trial": best.number, "n_trials": len(self.study.trials),
                  "study": self.name}
        items = {k: dump(v, store) for k, v in result.items()}
        best_out = self.loop.tasks[best_tid].output
        assert best_out is not None
        items["best_output"] = best_out
        self.loop._update(self.sid, state=S.TASK_SUCCEEDED, ended_at=now, error=None,
                          map_size=len(self.items()), output={"kind": "dict", "items": items})


def _state(name: str) -> Any:
    import optuna

    return getattr(optuna.trial.TrialState, name)
