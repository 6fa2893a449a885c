"""The allowed moves between states, declared once, and the one function that makes them.

Every change of a run's, task's or attempt's state goes through :func:`move`, which
refuses a move the table does not list (a bug in insitu, never a user error). Writing a
record without changing its state (a note such as ``pending_reason``) is always allowed.
Read a row as: from this state, a record may move to these states, for these reasons.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from insitu.errors import InternalError
from insitu.store import AttemptRecord, RunRecord, TaskRecord
from insitu.store._states import AttemptState as A
from insitu.store._states import RunState as R
from insitu.store._states import TaskState as T

RUN_MOVES: Mapping[str, frozenset[str]] = {
    R.PENDING: frozenset({R.RUNNING,        # an engine starts it
                          R.CANCELLED}),    # cancelled before any engine ran it
    R.RUNNING: frozenset({R.SUCCEEDED, R.FAILED, R.CANCELLED,
                          R.PENDING}),      # its engine is gone; resumed on a server
    R.FAILED: frozenset({R.RUNNING,         # resumed
                         R.PENDING}),       # resumed on a server: waits for an engine
    R.CANCELLED: frozenset({R.RUNNING, R.PENDING}),  # resumed (locally; on a server)
    R.SUCCEEDED: frozenset(),
}

TASK_MOVES: Mapping[str, frozenset[str]] = {
    T.PENDING: frozenset({
        T.RUNNING,     # an attempt starts; a map expands; a tuning step starts asking
        T.CACHED,      # its cache key has an entry whose bytes exist
        T.SUCCEEDED,   # resume adopts a finished attempt's result; a map of no items
        T.SKIPPED,     # its condition is false, or an upstream step was skipped
        T.FAILED,      # a map over a value that is not a list; a tuning step gives up
        T.CANCELLED,   # the run is cancelled; a tuning step stops asking
    }),
    T.RUNNING: frozenset({
        T.SUCCEEDED, T.FAILED, T.CANCELLED,
        T.PRUNED,      # a trial stopped by the tuner
        T.PENDING,     # its attempt failed and is retried; or resume reopens it
    }),
    T.FAILED: frozenset({T.PENDING}),       # resumed (with a fresh retry budget)
    T.CANCELLED: frozenset({T.PENDING}),    # resumed
    T.SUCCEEDED: frozenset({T.PENDING}),    # only the exit handler: it runs again on resume
    T.SKIPPED: frozenset({T.PENDING}),      # only the exit handler
    T.CACHED: frozenset(),
    T.PRUNED: frozenset(),
}

ATTEMPT_MOVES: Mapping[str, frozenset[str]] = {
    A.RUNNING: frozenset({A.SUCCEEDED, A.FAILED, A.LOST, A.CANCELLED, A.PRUNED}),
    **{s: frozenset() for s in A if s != A.RUNNING},
}

_TABLES: dict[type, Mapping[str, frozenset[str]]] = {
    RunRecord: RUN_MOVES, TaskRecord: TASK_MOVES, AttemptRecord: ATTEMPT_MOVES}

Rec = TypeVar("Rec", RunRecord, TaskRecord, AttemptRecord)


class IllegalMove(InternalError):
    """A state change the table does not allow."""


def allowed(kind: type, old: str, new: str) -> bool:
    return old == new or new in _TABLES[kind].get(old, frozenset())


def move(rec: Rec, to: str | None = None, **changes: Any) -> Rec:
    """``rec`` with ``changes`` applied and its state set to ``to`` (checked against the
    table); ``to=None`` keeps the state."""
    if "state" in changes:
        raise IllegalMove("change a state with move(rec, to), not as a field")
    if to is not None and not allowed(type(rec), rec.state, to):
        name = getattr(rec, "id", None) or \
            f"{getattr(rec, 'task_id', '')}#{getattr(rec, 'number', '')}"
        raise IllegalMove(f"{type(rec).__name__} {name}: {rec.state} -> {to} is not an "
                          "allowed move")
    if to is not None:
        changes["state"] = to
    return dataclasses.replace(rec, **changes)


def unchanged(run: RunRecord) -> dict[str, Any]:
    """The columns a guarded write (``Store.put_if``) of ``run`` expects still as read: every
    writer of a run (an engine starting or beating, a user cancelling) changes one of them."""
    return {"state": run.state, "engine_pid": run.engine_pid,
            "heartbeat_at": run.heartbeat_at, "cancel_requested": run.cancel_requested}


__all__ = ["ATTEMPT_MOVES", "RUN_MOVES", "TASK_MOVES", "IllegalMove", "allowed", "move",
           "unchanged"]
