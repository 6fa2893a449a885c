"""The engine's rules: pure functions from what happened to what must change.

Each rule states the situation it handles and returns *effects*, plain data that the
run loop carries out (``insitu.engine._loop``) through the one point that checks the
table of moves and writes to the store before anything acts. No rule touches the store,
an executor or a clock; each is tested alone with tables of cases.

Retry budgets (decided here, documented in docs/running.md):

- a task may fail ``retries`` times and still be retried; the count is of its *stored*
  attempts in state ``failed`` numbered above ``TaskRecord.retries_from``;
- an attempt whose worker vanished (error kind ``lost``) or whose engine vanished
  (state ``lost``) uses up no retry; such attempts are retried up to ``LOST_LIMIT``
  times in a row, so a step that kills its own worker still ends;
- resume gives a task that had *failed* a fresh budget (``retries_from`` moves to its
  last attempt): the user asked for another try. A task caught mid-retry by a kill or a
  cancel keeps the budget it had used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from insitu.engine import _outcome
from insitu.store import AttemptRecord, TaskRecord
from insitu.store._states import TASK_DONE, TASK_TERMINAL
from insitu.store._states import AttemptState as A
from insitu.store._states import ErrorKind as K
from insitu.store._states import TaskState as T

LOST_LIMIT = 3  # lost attempts of one task in a row before it fails


# -- effects --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Move:
    """Move a task to ``to`` with these field changes."""

    task: str
    to: T
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Succeed:
    """The task succeeded with ``output``: record it, its cache entry, and what follows."""

    task: str
    output: dict[str, Any]
    at: float


@dataclasses.dataclass(frozen=True)
class Retry:
    """Back to pending, not launched before ``at``."""

    task: str
    at: float
    error: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Tell:
    """Tell the task's tuner how the trial ended: ``succeeded``, ``pruned`` or ``failed``."""

    task: str
    verdict: str
    error: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class StopLaunching:
    """A task failed for good: launch nothing new but the exit handler."""


@dataclasses.dataclass(frozen=True)
class EndAttempt:
    """Record how an attempt ended."""

    attempt: AttemptRecord
    to: A
    changes: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MakeReady:
    task: str


@dataclasses.dataclass(frozen=True)
class StartTuner:
    step: str


Effect = Move | Succeed | Retry | Tell | StopLaunching | EndAttempt | MakeReady | StartTuner


# -- rule: an attempt ended -----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Exit:
    """What is known when an attempt ends."""

    task: TaskRecord
    error: dict[str, Any] | None      # from _outcome.classify; None: it succeeded
    output: dict[str, Any] | None
    at: float                         # when it ended
    retry: dict[str, Any]             # the step's retry policy
    history: Sequence[AttemptRecord]  # the task's stored attempts, this one included
    tuned: bool = False               # a trial of a tuning step
    cancelling: bool = False
    now: float = 0.0
    restarts: int | None = None       # a distributed step: its max_restarts


def gang_restarts(task: TaskRecord, history: Iterable[AttemptRecord]) -> int:
    """How many of a gang's attempts since its budget was last reset lost a rank (a rank
    killed, crashed, or missing from a collective); preemptions and engine stops not
    counted."""
    return sum(1 for a in history if a.number > task.retries_from and a.state == A.FAILED
               and (a.error or {}).get("kind") == K.LOST
               and not (a.error or {}).get("preempted"))


def on_gang_lost(x: Exit) -> list[Effect] | None:
    """A gang lost a rank: restart it whole at once (from its latest checkpoint, which the
    step loads) while ``max_restarts`` allows; past it, fail saying so. A preempted gang
    is requeued without using the budget. None when the rule
    does not apply (not a gang, not a lost rank, or the run is being cancelled)."""
    err = x.error
    if x.restarts is None or err is None or err["kind"] != K.LOST or x.cancelling:
        return None
    if err.get("preempted"):  # its capacity was taken back: requeued, no budget used
        return [Retry(x.task.id, x.now, err)]
    used = gang_restarts(x.task, x.history)
    if used <= x.restarts:
        return [Retry(x.task.id, x.now, {**err, "restart": used})]
    err = {**err, "restarts": x.restarts,
           "message": f"{err['message']}; the gang was already restarted {x.restarts} "
                      f"time{'s' if x.restarts != 1 else ''} (max_restarts={x.restarts}), "
                      "so it is not restarted again",
           "hint": "find why the rank was lost in its log (insitu logs RUN STEP --rank N); "
                   "raise the budget with @insitu.step(max_restarts=...) if losses are "
                   "expected (spot nodes), then `insitu resume` the run"}
    effects: list[Effect] = [Move(x.task.id, T.FAILED, {"ended_at": x.at, "error": err})]
    if x.tuned:
        return [*effects, Tell(x.task.id, "failed", err)]
    return [*effects, StopLaunching()]


def attempt_state(error: dict[str, Any] | None) -> A:
    """The state an attempt ends in, from its error."""
    if error is None:
        return A.SUCCEEDED
    return {K.CANCELLED: A.CANCELLED, K.PRUNED: A.PRUNED}.get(error["kind"], A.FAILED)


def counted_failures(task: TaskRecord, history: Iterable[AttemptRecord]) -> tuple[int, int]:
    """(failures that use up a retry, lost attempts in a row at the end) since the task's
    budget was last reset."""
    failures = lost_run = 0
    for a in sorted(history, key=lambda a: a.number):
        if a.number <= task.retries_from:
            continue
        lost = a.state == A.LOST or (a.error or {}).get("kind") == K.LOST
        if lost:
            lost_run += 1
        elif a.state == A.FAILED:
            failures += 1
            lost_run = 0
        else:
            lost_run = 0
    return failures, lost_run


def on_exit(x: Exit) -> list[Effect]:
    """An attempt of ``x.task`` ended: succeed, retry, or end the task."""
    t, err = x.task, x.error
    if err is None:
        assert x.output is not None
        out: list[Effect] = [Succeed(t.id, x.output, x.at)]
        return out + ([Tell(t.id, "succeeded")] if x.tuned else [])
    kind = err["kind"]
    if kind == K.PRUNED and x.tuned:
        return [Move(t.id, T.PRUNED, {"ended_at": x.at, "error": err}),
                Tell(t.id, "pruned")]
    if kind == K.CANCELLED:
        return [Move(t.id, T.CANCELLED, {"ended_at": x.at, "error": err})]
    gang = on_gang_lost(x)
    if gang is not None:
        return gang
    failures, lost_run = counted_failures(t, x.history)
    if not x.cancelling and (kind != K.LOST or lost_run < LOST_LIMIT) and _outcome.should_retry(
            err, failures=failures, max_retries=x.retry["max"],
            retry_on=x.retry.get("retry_on", [])):
        wait = _outcome.backoff(x.retry, max(failures, 1))
        return [Retry(t.id, x.now + wait, err)]
    effects: list[Effect] = [Move(t.id, T.FAILED, {"ended_at": x.at, "error": err})]
    if x.tuned:  # a failed trial fails the run only past max_failed (the tuner decides)
        return [*effects, Tell(t.id, "failed", err)]
    if t.map_index is not None:
        effects.append(Move(t.step_id, T.FAILED, {
            "ended_at": x.at, "error": {"kind": K.ITEM_FAILED.value, "item": t.id,
                                        "message": f"item {t.id} failed"}}))
    return [*effects, StopLaunching()]


# -- rule: a task's inputs settled ------------------------------------------------------------

WAIT, SKIP, READY, EXPAND, TUNE = "wait", "skip", "ready", "expand", "tune"


def on_inputs(dep_states: Iterable[str], *, condition: Callable[[], bool], is_map: bool,
              is_tune: bool, stopping: bool) -> str:
    """What a pending step (not the exit handler) does once nothing it waits on may change:
    ``wait`` (an input is not final, or the run is stopping), ``skip``, or start as a
    plain task (``ready``), a map (``expand``) or a tuning study (``tune``).
    ``condition`` is asked only when every input is there."""
    deps = set(dep_states)
    if stopping or deps - TASK_TERMINAL or deps & {T.FAILED, T.CANCELLED}:
        return WAIT
    if T.SKIPPED in deps or not condition():
        return SKIP
    return TUNE if is_tune else EXPAND if is_map else READY


# -- rule: the exit handler is due -------------------------------------------------------------

def exit_handler_due(others: Iterable[str], *, failing: bool, cancelling: bool,
                     running: bool) -> bool:
    """The exit handler runs once every other step is final, or once a failure stopped
    launches and nothing runs any more; never while the run is being cancelled."""
    if cancelling:
        return False
    return all(s in TASK_TERMINAL for s in others) or (failing and not running)


# -- rule: recovery on resume ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Recovery:
    """What a resumed run finds in the store."""

    tasks: Sequence[TaskRecord]
    attempts: Sequence[AttemptRecord]
    adoptable: Callable[[AttemptRecord], dict[str, Any] | None]  # a finished result, or None
    exit_step: str | None
    tuned: frozenset[str]
    now: float


def on_resume(r: Recovery) -> list[Effect]:
    """Adopt the results of attempts that finished while no engine watched; mark the other
    running attempts lost; reopen what did not finish (see the module doc for budgets)."""
    effects: list[Effect] = []
    states = {t.id: t.state for t in r.tasks}
    for a in r.attempts:
        if a.state != A.RUNNING:
            continue
        out = r.adoptable(a)
        if out is not None:
            effects += [EndAttempt(a, A.SUCCEEDED, {"ended_at": r.now}),
                        Succeed(a.task_id, out, r.now)]
            states[a.task_id] = T.SUCCEEDED
        else:
            effects.append(EndAttempt(a, A.LOST, {"ended_at": r.now, "error": {
                "kind": K.LOST.value, "message": "the engine stopped while it ran"}}))
    items: dict[str, list[str]] = {}
    for t in r.tasks:
        if t.map_index is not None:
            items.setdefault(t.step_id, []).append(t.id)
    for t in r.tasks:
        st = states[t.id]
        if t.step_id in r.tuned and t.map_index is not None and st in (
                T.FAILED, T.PRUNED, T.CANCELLED):
            continue  # the study already knows how this trial ended
        if t.id == r.exit_step or st in (T.FAILED, T.CANCELLED) or (
                st == T.RUNNING and t.map_size is None):
            changes: dict[str, Any] = {"error": None, "not_before": None}
            if st == T.FAILED:
                changes["retries_from"] = t.attempts  # a fresh retry budget
            states[t.id] = T.PENDING
            effects.append(Move(t.id, T.PENDING, changes))
        elif st == T.PENDING and t.not_before is not None:
            # caught in its retry backoff: it runs again now, with the budget it has used
            effects.append(Move(t.id, T.PENDING, {"not_before": None}))
    for step_id, ids in items.items():  # reopen partly failed maps and studies
        if states[step_id] != T.SUCCEEDED and any(states[i] not in TASK_DONE for i in ids):
            states[step_id] = T.RUNNING
            effects.append(Move(step_id, T.RUNNING))
    for sid in sorted(r.tuned):
        if states[sid] == T.PENDING and sid in items:
            states[sid] = T.RUNNING
            effects.append(Move(sid, T.RUNNING))
        if states[sid] == T.RUNNING:
            effects.append(StartTuner(sid))
    for t in sorted(r.tasks, key=lambda t: t.seq):
        if t.map_index is not None and states[t.id] == T.PENDING:
            effects.append(MakeReady(t.id))
    return effects


__all__ = ["EXPAND", "LOST_LIMIT", "READY", "SKIP", "TUNE", "WAIT", "EndAttempt", "Exit",
           "MakeReady", "Move", "Recovery", "Retry", "StartTuner", "StopLaunching", "Succeed",
           "Tell", "attempt_state", "counted_failures", "exit_handler_due", "gang_restarts",
           "on_exit", "on_gang_lost",
           "on_inputs", "on_resume"]
