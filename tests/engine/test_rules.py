"""The engine's rules and its table of moves, alone: no processes, no store, no clock."""

from __future__ import annotations

from typing import Any

import pytest

from insitu.engine import _rules
from insitu.engine._moves import ATTEMPT_MOVES, RUN_MOVES, TASK_MOVES, IllegalMove, allowed, move
from insitu.engine._rules import (
    EndAttempt,
    Exit,
    MakeReady,
    Move,
    Recovery,
    Retry,
    StartTuner,
    StopLaunching,
    Succeed,
    Tell,
    counted_failures,
    exit_handler_due,
    on_exit,
    on_inputs,
    on_resume,
)
from insitu.store import AttemptRecord, RunRecord, TaskRecord
from insitu.store._states import AttemptState as A
from insitu.store._states import RunState as R
from insitu.store._states import TaskState as T

RETRY = {"max": 2, "backoff": 1.0, "backoff_factor": 2.0, "retry_on": []}
OUT = {"kind": "inline", "value": 1}


def task(tid: str = "s", state: str = T.RUNNING, **kw: Any) -> TaskRecord:
    return TaskRecord(run_id="r", id=tid, step_id=kw.pop("step_id", tid.split("[")[0]),
                      state=state, **kw)


def att(n: int, state: str = A.FAILED, kind: str | None = "user", tid: str = "s"
        ) -> AttemptRecord:
    return AttemptRecord(run_id="r", task_id=tid, number=n, state=state,
                         error={"kind": kind} if kind else None)


def err(kind: str) -> dict[str, Any]:
    return {"kind": kind, "message": kind}


# -- the stored states keep their strings -----------------------------------------------------

def test_state_values_are_the_stored_strings() -> None:
    assert [s.value for s in T] == ["pending", "running", "succeeded", "cached", "failed",
                                    "skipped", "cancelled", "pruned"]
    assert [s.value for s in R] == ["pending", "running", "succeeded", "failed", "cancelled"]
    assert [s.value for s in A] == ["running", "succeeded", "failed", "lost", "cancelled",
                                    "pruned"]
    assert T.PENDING == "pending" and T.CACHED == "cached"


# -- the table of moves ----------------------------------------------------------------------

@pytest.mark.parametrize(("kind", "old", "new", "ok"), [
    (TaskRecord, T.PENDING, T.RUNNING, True),
    (TaskRecord, T.PENDING, T.CACHED, True),
    (TaskRecord, T.RUNNING, T.PENDING, True),      # a retry
    (TaskRecord, T.FAILED, T.PENDING, True),       # resume
    (TaskRecord, T.SUCCEEDED, T.PENDING, True),    # the exit handler runs again on resume
    (TaskRecord, T.SUCCEEDED, T.FAILED, False),
    (TaskRecord, T.CACHED, T.RUNNING, False),
    (TaskRecord, T.PRUNED, T.PENDING, False),
    (TaskRecord, T.FAILED, T.SUCCEEDED, False),
    (TaskRecord, T.PENDING, T.PRUNED, False),
    (TaskRecord, T.SKIPPED, T.SKIPPED, True),      # a note, not a move
    (RunRecord, R.PENDING, R.RUNNING, True),
    (RunRecord, R.FAILED, R.RUNNING, True),        # resume
    (RunRecord, R.SUCCEEDED, R.RUNNING, False),
    (RunRecord, R.PENDING, R.SUCCEEDED, False),
    (AttemptRecord, A.RUNNING, A.LOST, True),
    (AttemptRecord, A.LOST, A.RUNNING, False),
    (AttemptRecord, A.SUCCEEDED, A.FAILED, False),
])
def test_table_of_moves(kind: type, old: str, new: str, ok: bool) -> None:
    assert allowed(kind, old, new) is ok


def test_every_state_has_a_row() -> None:
    assert set(TASK_MOVES) == set(T) and set(RUN_MOVES) == set(R)
    assert set(ATTEMPT_MOVES) == set(A)


def test_move_refuses_what_the_table_does_not_list() -> None:
    t = task(state=T.SUCCEEDED)
    with pytest.raises(IllegalMove, match="succeeded -> running"):
        move(t, T.RUNNING)
    with pytest.raises(IllegalMove):
        move(t, state=T.RUNNING)  # not around the table
    assert move(t, pending_reason="x").pending_reason == "x"
    assert move(task(state=T.PENDING), T.CACHED, cached_from="r0/s").state == T.CACHED


# -- rule: an attempt ended ------------------------------------------------------------------

def exit_(error: dict[str, Any] | None, *, history: list[AttemptRecord] | None = None,
          tuned: bool = False, cancelling: bool = False, t: TaskRecord | None = None,
          retry: dict[str, Any] | None = None) -> list[Any]:
    return on_exit(Exit(task=t or task(), error=error, output=OUT if error is None else None,
                        at=5.0, retry=retry or RETRY, history=history or [], tuned=tuned,
                        cancelling=cancelling, now=100.0))


CASES: list[tuple[str, dict[str, Any], list[Any]]] = [
    ("success", dict(error=None), [Succeed("s", OUT, 5.0)]),
    ("trial success", dict(error=None, tuned=True),
     [Succeed("s", OUT, 5.0), Tell("s", "succeeded")]),
    ("first failure is retried after the base backoff",
     dict(error=err("user"), history=[att(1)]), [Retry("s", 101.0, err("user"))]),
    ("second failure waits twice as long",
     dict(error=err("user"), history=[att(1), att(2)]), [Retry("s", 102.0, err("user"))]),
    ("third failure: the budget of 2 is spent",
     dict(error=err("user"), history=[att(1), att(2), att(3)]),
     [Move("s", T.FAILED, {"ended_at": 5.0, "error": err("user")}), StopLaunching()]),
    ("lost attempts use up no retry",
     dict(error=err("lost"), history=[att(1), att(2), att(3, kind="lost")],
          t=task(attempts=3)), [Retry("s", 102.0, err("lost"))]),
    ("engine-lost attempts use up no retry either",
     dict(error=err("user"), history=[att(1, A.LOST, "lost"), att(2, A.LOST, "lost"), att(3)]),
     [Retry("s", 101.0, err("user"))]),
    ("three lost in a row end the task", dict(
        error=err("lost"), history=[att(1, kind="lost"), att(2, kind="lost"),
                                    att(3, kind="lost")]),
     [Move("s", T.FAILED, {"ended_at": 5.0, "error": err("lost")}), StopLaunching()]),
    ("failures before a resume's fresh budget do not count",
     dict(error=err("user"), history=[att(1), att(2), att(3), att(4)],
          t=task(retries_from=3)), [Retry("s", 101.0, err("user"))]),
    ("an oom is never retried", dict(error=err("oom"), history=[att(1, kind="oom")]),
     [Move("s", T.FAILED, {"ended_at": 5.0, "error": err("oom")}), StopLaunching()]),
    ("no retry while cancelling", dict(error=err("user"), history=[att(1)], cancelling=True),
     [Move("s", T.FAILED, {"ended_at": 5.0, "error": err("user")}), StopLaunching()]),
    ("cancelled", dict(error=err("cancelled")),
     [Move("s", T.CANCELLED, {"ended_at": 5.0, "error": err("cancelled")})]),
    ("pruned trial", dict(error=err("pruned"), tuned=True),
     [Move("s", T.PRUNED, {"ended_at": 5.0, "error": err("pruned")}), Tell("s", "pruned")]),
    ("failed trial: the tuner decides, launches go on",
     dict(error=err("user"), tuned=True, history=[att(1)], retry={**RETRY, "max": 0}),
     [Move("s", T.FAILED, {"ended_at": 5.0, "error": err("user")}),
      Tell("s", "failed", err("user"))]),
    ("a failed map item fails its map", dict(
        error=err("user"), history=[att(1, tid="m[2]")], retry={**RETRY, "max": 0},
        t=task("m[2]", map_index=2)),
     [Move("m[2]", T.FAILED, {"ended_at": 5.0, "error": err("user")}),
      Move("m", T.FAILED, {"ended_at": 5.0, "error": {"kind": "item_failed", "item": "m[2]",
                                                       "message": "item m[2] failed"}}),
      StopLaunching()]),
]


@pytest.mark.parametrize(("name", "kw", "expected"), CASES, ids=[c[0] for c in CASES])
def test_attempt_exit(name: str, kw: dict[str, Any], expected: list[Any]) -> None:
    assert exit_(**kw) == expected


def test_retry_on_names_the_exceptions_retried() -> None:
    policy = {**RETRY, "retry_on": ["ConnectionError"]}
    user = {"kind": "user", "mro": ["KeyError", "LookupError", "Exception"]}
    assert isinstance(exit_(user, history=[att(1)], retry=policy)[0], Move)
    user["mro"] = ["ConnectionError", "OSError", "Exception"]
    assert isinstance(exit_(user, history=[att(1)], retry=policy)[0], Retry)


@pytest.mark.parametrize(("history", "retries_from", "expected"), [
    ([], 0, (0, 0)),
    ([att(1), att(2, kind="lost")], 0, (1, 1)),
    ([att(1, kind="lost"), att(2), att(3, kind="lost"), att(4, A.LOST, "lost")], 0, (1, 2)),
    ([att(1), att(2), att(3, A.SUCCEEDED, None)], 0, (2, 0)),
    ([att(1), att(2), att(3)], 2, (1, 0)),
    ([att(1, A.CANCELLED, "cancelled")], 0, (0, 0)),
])
def test_counted_failures(history: list[AttemptRecord], retries_from: int,
                          expected: tuple[int, int]) -> None:
    assert counted_failures(task(retries_from=retries_from), history) == expected


# -- rule: inputs settled --------------------------------------------------------------------

@pytest.mark.parametrize(("deps", "cond", "kind", "stopping", "expected"), [
    ([], True, "plain", False, "ready"),
    ([T.SUCCEEDED, T.CACHED], True, "plain", False, "ready"),
    ([T.SUCCEEDED, T.RUNNING], True, "plain", False, "wait"),
    ([T.PENDING], True, "plain", False, "wait"),
    ([T.FAILED], True, "plain", False, "wait"),
    ([T.CANCELLED], True, "plain", False, "wait"),
    ([T.SKIPPED, T.SUCCEEDED], True, "plain", False, "skip"),
    ([T.SUCCEEDED], False, "plain", False, "skip"),
    ([T.SUCCEEDED], True, "map", False, "expand"),
    ([T.SUCCEEDED], True, "tune", False, "tune"),
    ([T.SUCCEEDED], True, "plain", True, "wait"),
])
def test_inputs_settled(deps: list[str], cond: bool, kind: str, stopping: bool,
                        expected: str) -> None:
    asked: list[bool] = []

    def condition() -> bool:
        asked.append(True)
        return cond

    got = on_inputs(deps, condition=condition, is_map=kind == "map", is_tune=kind == "tune",
                    stopping=stopping)
    assert got == expected
    if expected == "wait":
        assert not asked, "the condition is read only once every input is there"


# -- rule: the exit handler is due -----------------------------------------------------------

@pytest.mark.parametrize(("others", "failing", "cancelling", "running", "due"), [
    ([T.SUCCEEDED, T.CACHED, T.SKIPPED], False, False, False, True),
    ([T.SUCCEEDED, T.RUNNING], False, False, True, False),
    ([T.FAILED, T.PENDING], True, False, True, False),   # wait for what runs to finish
    ([T.FAILED, T.PENDING], True, False, False, True),   # nothing runs: report the failure
    ([T.SUCCEEDED], False, True, False, False),          # never while cancelling
    ([], False, False, False, True),
])
def test_exit_handler_due(others: list[str], failing: bool, cancelling: bool, running: bool,
                          due: bool) -> None:
    assert exit_handler_due(others, failing=failing, cancelling=cancelling,
                            running=running) is due


# -- rule: recovery on resume ----------------------------------------------------------------

def recover(tasks: list[TaskRecord], attempts: list[AttemptRecord], *,
            results: dict[str, dict[str, Any]] | None = None, exit_step: str | None = None,
            tuned: frozenset[str] = frozenset()) -> list[Any]:
    res = results or {}
    return on_resume(Recovery(tasks=tasks, attempts=attempts,
                              adoptable=lambda a: res.get(f"{a.task_id}#{a.number}"),
                              exit_step=exit_step, tuned=tuned, now=9.0))


def test_resume_adopts_a_finished_result_and_marks_the_rest_lost() -> None:
    a1 = att(1, A.RUNNING, None, tid="a")
    b1 = att(1, A.RUNNING, None, tid="b")
    got = recover([task("a", attempts=1), task("b", attempts=1)], [a1, b1],
                  results={"a#1": OUT})
    assert got == [
        EndAttempt(a1, A.SUCCEEDED, {"ended_at": 9.0}), Succeed("a", OUT, 9.0),
        EndAttempt(b1, A.LOST, {"ended_at": 9.0, "error": {
            "kind": "lost", "message": "the engine stopped while it ran"}}),
        Move("b", T.PENDING, {"error": None, "not_before": None}),
    ]


def test_resume_gives_a_failed_task_a_fresh_budget_and_a_running_one_none() -> None:
    got = recover([task("f", T.FAILED, attempts=3), task("r", T.RUNNING, attempts=2),
                   task("c", T.CANCELLED, attempts=1), task("ok", T.SUCCEEDED, attempts=1),
                   task("x", T.SUCCEEDED)], [], exit_step="x")
    assert got == [
        Move("f", T.PENDING, {"error": None, "not_before": None, "retries_from": 3}),
        Move("r", T.PENDING, {"error": None, "not_before": None}),
        Move("c", T.PENDING, {"error": None, "not_before": None}),
        Move("x", T.PENDING, {"error": None, "not_before": None}),  # runs again
    ]


def test_resume_runs_a_task_caught_in_its_backoff_with_the_budget_it_used() -> None:
    got = recover([task("b", T.PENDING, attempts=2, not_before=50.0),
                   task("m", T.RUNNING, map_size=1),
                   task("m[0]", T.PENDING, map_index=0, attempts=1, not_before=50.0)], [])
    assert got == [Move("b", T.PENDING, {"not_before": None}),
                   Move("m[0]", T.PENDING, {"not_before": None}), Move("m", T.RUNNING),
                   MakeReady("m[0]")]


def test_resume_reopens_a_partly_failed_map_and_requeues_its_items() -> None:
    tasks = [task("m", T.FAILED, map_size=2, seq=0),
             task("m[0]", T.SUCCEEDED, map_index=0, seq=1),
             task("m[1]", T.FAILED, map_index=1, seq=2, attempts=1)]
    got = recover(tasks, [])
    assert got == [
        Move("m", T.PENDING, {"error": None, "not_before": None, "retries_from": 0}),
        Move("m[1]", T.PENDING, {"error": None, "not_before": None, "retries_from": 1}),
        Move("m", T.RUNNING),
        MakeReady("m[1]"),
    ]


def test_resume_keeps_finished_trials_of_a_study() -> None:
    tasks = [task("t", T.RUNNING, seq=0),
             task("t[0]", T.PRUNED, map_index=0, seq=1),
             task("t[1]", T.FAILED, map_index=1, seq=2),
             task("t[2]", T.PENDING, map_index=2, seq=3)]
    got = recover(tasks, [], tuned=frozenset({"t"}))
    assert got == [Move("t", T.PENDING, {"error": None, "not_before": None}),
                   Move("t", T.RUNNING), StartTuner("t"), MakeReady("t[2]")]


def test_every_rule_effect_is_a_move_the_table_allows() -> None:
    """Apply the moves of every attempt-exit case to its task: none is refused."""
    for _, kw, _ in CASES:
        t = kw.get("t") or task()
        for e in exit_(**kw):
            if isinstance(e, Move) and e.task == t.id:
                move(t, e.to, **e.changes)
            elif isinstance(e, Retry):
                move(t, T.PENDING, not_before=e.at)


def test_rules_module_imports_no_io() -> None:
    """Rules read facts and return effects: they import no clock, store, executor or os."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(_rules))
    imported = {n.module if isinstance(n, ast.ImportFrom) else a.name
                for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                for a in n.names}
    assert imported <= {"__future__", "dataclasses", "collections.abc", "typing",
                        "insitu.engine", "insitu.store", "insitu.store._states"}, imported
